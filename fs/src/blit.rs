//! The blit: turning a state's tree into a real directory of hardlinks (DESIGN.md §1, §6).
//!
//! A commit writes the next `/usr` into `ROOT/.moss/root/staging/usr` with [`blit`], makes
//! exactly what it wrote durable with [`sync_tree`], and only then swaps it in. Because the state's tree is
//! already built (content-addressed directory objects, DESIGN.md §5), the blit is a plain
//! walk: no layout is read, no path is resolved, nothing is decided here.
//!
//! It runs in two steps, plan then act:
//! 1. **Plan** (`plan`): the directory objects reachable from the root are read from one
//!    database snapshot into memory, on the calling thread (an LMDB read transaction may not
//!    be shared between threads). Every name is checked to be one path component, so a
//!    damaged tree is refused before anything is created.
//! 2. **Act** (`create`): the tree is created in parallel, split by directory. Each
//!    directory's files are created in chunks and its subdirectories as separate tasks, so
//!    both deep and wide trees spread over rayon's threads. Every creation is relative to a
//!    directory fd that the blit itself created and opened with `O_NOFOLLOW`, and names
//!    are single components, so a symlink from a tree is never followed.
//!
//! Regular files are hardlinks of store assets that already carry the right mode and
//! owner ([`Store::linkable`]), so a file costs one `linkat` and its inode is never
//! touched. The empty file is created fresh instead: every package ships empty files and
//! one shared inode would soon hit the link limit (`EMLINK`). Any other file that hits the
//! limit is copied. Directories are created `0700` and get their mode after their
//! children, so a read-only directory can be filled.
//!
//! [`blit`] never removes anything and never prints. On error the target is left as it
//! is; the transaction engine removes staging with [`remove_tree`], which also prunes
//! archived trees (module `remove`). [`unowned`] lists what a blitted tree holds that its
//! state does not, for `verify` and for the engine before it reuses an archived tree
//! (module `unowned`).
//!
//! This module does not use the [`crate::dirfd::DirFd`] type: the blit creates only what it
//! plans, inside directories it has just made, and reports paths as they are in the state
//! (`usr/bin/nano`), with the asset that was being linked. It does share `dirfd`'s
//! syscalls for opening a child directory and creating a file, which carry the whole
//! never-follow-a-symlink policy, so that policy lives in one place.

mod apply;
mod create;
mod deep;
mod plan;
mod remove;
mod unowned;
mod written;

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::ops::{Add, AddAssign};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use mossfs_db::{DbError, Query, TreeHash};
use mossfs_format::AssetHash;
use mossfs_store::{Store, StoreError};

pub use apply::{apply, same_on_disk};
pub(crate) use deep::{MAX_DEPTH, deep_stack};
pub use remove::{RemoveError, remove_tree};
pub use unowned::{Helpers, Seal, Unowned, unowned, unowned_since};
pub use written::{TreeSync, Written, sync_tree};

/// Mode of the blitted root itself (`/usr`), which no directory object describes.
pub const ROOT_MODE: u32 = 0o755;

/// How far the blit has got, reported to [`BlitOptions::progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlitProgress {
    /// Entries created so far.
    pub done: u64,
    /// Entries in the tree, every directory included (the root excepted).
    pub total: u64,
}

/// How to blit.
#[derive(Clone, Copy)]
pub struct BlitOptions<'a> {
    /// Give every entry the uid and gid of its tree entry. Only root may; the default is
    /// whether the process runs as root.
    pub set_owner: bool,
    /// Called now and then from worker threads while the blit runs, and once at the end
    /// with `done == total`. It should be cheap: it runs on the blit's threads.
    pub progress: Option<&'a (dyn Fn(BlitProgress) + Sync)>,
    /// Where to record what the blit wrote, for [`sync_tree`] to make exactly that
    /// durable. `None` records nothing.
    pub written: Option<&'a Written>,
}

impl Default for BlitOptions<'_> {
    fn default() -> Self {
        BlitOptions {
            set_owner: rustix::process::geteuid().is_root(),
            progress: None,
            written: None,
        }
    }
}

impl fmt::Debug for BlitOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlitOptions")
            .field("set_owner", &self.set_owner)
            .field("progress", &self.progress.is_some())
            .field("written", &self.written.is_some())
            .finish()
    }
}

/// What a blit created. The target directory itself is not counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlitStats {
    /// Directories created.
    pub dirs: u64,
    /// Regular files created: hardlinks, fresh empty files and copies.
    pub files: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Devices, fifos and sockets created.
    pub others: u64,
    /// Files copied instead of linked: their asset had reached the file system's link
    /// limit, or others than their owner may write them (`Store::may_link`).
    pub copied_fallbacks: u64,
    /// Everything created: `dirs + files + symlinks + others`.
    pub entries: u64,
}

impl Add for BlitStats {
    type Output = BlitStats;

    fn add(self, other: BlitStats) -> BlitStats {
        BlitStats {
            dirs: self.dirs + other.dirs,
            files: self.files + other.files,
            symlinks: self.symlinks + other.symlinks,
            others: self.others + other.others,
            copied_fallbacks: self.copied_fallbacks + other.copied_fallbacks,
            entries: self.entries + other.entries,
        }
    }
}

impl AddAssign for BlitStats {
    fn add_assign(&mut self, other: BlitStats) {
        *self = *self + other;
    }
}

/// The syscall a blit step was making, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// `mkdirat`.
    Mkdir,
    /// `openat` of a directory.
    OpenDir,
    /// `linkat` from the store.
    Link,
    /// Copying an asset after `linkat` hit the link limit.
    Copy,
    /// `openat(O_CREAT | O_EXCL)` of a new file.
    CreateFile,
    /// `symlinkat`.
    Symlink,
    /// `mknodat`.
    Mknod,
    /// `fchown` / `fchownat`.
    Chown,
    /// `fchmod` / `fchmodat`.
    Chmod,
    /// `unlinkat` of an entry the new state no longer has.
    Unlink,
    /// `fstat` / `fstatat`.
    Stat,
    /// `getdents` of a directory.
    List,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Mkdir => "create directory",
            Op::OpenDir => "open directory",
            Op::Link => "hardlink",
            Op::Copy => "copy",
            Op::CreateFile => "create file",
            Op::Symlink => "create symlink",
            Op::Mknod => "create node",
            Op::Chown => "change owner of",
            Op::Chmod => "change mode of",
            Op::Unlink => "remove",
            Op::Stat => "inspect",
            Op::List => "list",
        })
    }
}

/// Why a blit failed. Entry paths are as in the state, `usr/` first (`usr/bin/nano`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlitError {
    /// The target directory could not be created or opened; it must not exist yet.
    #[error("cannot {op} blit target {}", path.display())]
    Target {
        /// What was being done.
        op: Op,
        /// The target as given.
        path: PathBuf,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// A directory object could not be read from the database.
    #[error("cannot read the tree of {}", path.display())]
    Tree {
        /// The directory it describes.
        path: PathBuf,
        /// What the database said.
        #[source]
        source: DbError,
    },
    /// A tree entry's name is not one path component: the tree is damaged or hostile.
    #[error("tree entry {name:?} in {} is not a file name; run 'mossfs verify'", path.display())]
    BadName {
        /// The directory holding it.
        path: PathBuf,
        /// The name, lossily as text.
        name: String,
    },
    /// The tree nests deeper than any real path can.
    #[error("the tree is nested too deeply at {}; run 'mossfs verify'", path.display())]
    TooDeep {
        /// Where the limit was reached.
        path: PathBuf,
    },
    /// A file's asset is not in the store.
    #[error(
        "asset {hash} for {} is missing from the store; run 'mossfs verify --repair'",
        path.display()
    )]
    MissingAsset {
        /// The asset.
        hash: AssetHash,
        /// The file that needs it.
        path: PathBuf,
    },
    /// The store could not hand out a linkable copy of an asset.
    #[error("cannot prepare asset {hash} for {}", path.display())]
    Store {
        /// The asset.
        hash: AssetHash,
        /// The file that needs it.
        path: PathBuf,
        /// What the store said (boxed: it is large, and this path is cold).
        #[source]
        source: Box<StoreError>,
    },
    /// An owner the kernel would read as "unchanged" (`-1`).
    #[error("{} has owner {uid}:{gid}, which cannot be set", path.display())]
    InvalidOwner {
        /// The entry.
        path: PathBuf,
        /// Its uid.
        uid: u32,
        /// Its gid.
        gid: u32,
    },
    /// A syscall on an entry failed.
    #[error("cannot {op} {}{}", path.display(), for_asset(asset))]
    Io {
        /// What was being done.
        op: Op,
        /// The entry.
        path: PathBuf,
        /// The asset being linked or copied, if any.
        asset: Option<AssetHash>,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// The two trees of an incremental commit could not be compared.
    #[error("cannot compare the old and new trees")]
    Diff {
        /// Why.
        #[source]
        source: crate::tree::TreeError,
    },
    /// A subtree the new state no longer has could not be removed.
    #[error(transparent)]
    Remove(#[from] RemoveError),
    /// A file or directory of the blitted tree could not be made durable.
    #[error("cannot sync {} to disk", path.display())]
    Sync {
        /// The file, directory or tree.
        path: PathBuf,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
}

fn for_asset(asset: &Option<AssetHash>) -> String {
    asset.map_or_else(String::new, |hash| format!(" (asset {hash})"))
}

/// `usr/…`: how entry paths appear in messages.
fn state_root() -> PathBuf {
    PathBuf::from("usr")
}

fn child_path(parent: &Path, name: &[u8]) -> PathBuf {
    parent.join(OsStr::from_bytes(name))
}

/// Creates `target`, which must not exist, and fills it with the tree `root` read through
/// `q`, linking files from `store`.
///
/// The store's assets must be durable before the exchange (DESIGN.md §6.2): already
/// (`Store::sync_assets`), or with the tree, named to [`Written::outside`]. The result is
/// not durable until [`sync_tree`]. On error, whatever was created stays;
/// remove it with [`remove_tree`]. Nothing is created when the tree itself is unreadable
/// or damaged.
pub fn blit(
    q: &impl Query,
    root: TreeHash,
    store: &Store,
    target: &Path,
    options: &BlitOptions,
) -> Result<BlitStats, BlitError> {
    let plan = plan::Plan::read(q, root)?;
    create::Blitter::new(&plan, store, options).run(target)
}
