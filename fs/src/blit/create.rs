//! The blit's second step: creating the planned tree, in parallel, relative to directory
//! fds (DESIGN.md §6.3).
//!
//! Each directory is one task. It creates its files, symlinks and nodes in chunks, and its
//! subdirectories as tasks of their own, through `rayon::join`, so a deep tree and a wide
//! directory both keep every thread busy. A task owns the `OwnedFd` of the directory it
//! fills and hands `&OwnedFd` to the tasks it spawns; rayon's scoping guarantees that the
//! fd outlives them, and dropping it closes it.
//!
//! Safety against symlinks: every directory the blit descends into is one it has just
//! created with `mkdirat` and opened with `O_NOFOLLOW`, and every name is a single
//! component (checked by the plan). The target is created fresh, so nothing else writes
//! into it while the blit runs.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use mossfs_db::{DirEntry, Node, NodeKind, TreeHash};
use mossfs_format::AssetHash;
use mossfs_store::{Store, StoreError};
use rayon::prelude::*;
use rustix::fs::{AtFlags, CWD, FileType, Gid, Mode, OFlags, Uid};
use rustix::io::Errno;

use super::plan::Plan;
use super::{
    BlitError, BlitOptions, BlitProgress, BlitStats, Op, ROOT_MODE, Written, child_path, state_root,
};
use crate::dirfd::{create_child_file, open_child_dir, valid_owner};

/// Entries one task creates in a row: large enough that task overhead vanishes, small
/// enough that one huge directory still spreads over every thread.
const LEAF_CHUNK: usize = 256;

/// Entries between two progress reports.
const PROGRESS_STEP: u64 = 1024;

/// Mode of a directory while it is being filled; its own mode comes after its children.
const FILLING_MODE: u32 = 0o700;

/// Mode a new file or node is created with, before it gets its own.
const NEW_FILE_MODE: u32 = 0o600;

/// The state of one blit, shared by its tasks.
pub(super) struct Blitter<'a> {
    plan: &'a Plan,
    store: &'a Store,
    set_owner: bool,
    /// Who owns what this process creates: `(euid, egid)`. Entries already owned that way
    /// need no `chown`, which spares one syscall per entry when running as root.
    creator: (u32, u32),
    progress: Option<&'a (dyn Fn(BlitProgress) + Sync)>,
    pub(super) written: Option<&'a Written>,
    done: AtomicU64,
}

impl<'a> Blitter<'a> {
    pub fn new(plan: &'a Plan, store: &'a Store, options: &BlitOptions<'a>) -> Self {
        Blitter {
            plan,
            store,
            set_owner: options.set_owner,
            creator: (
                rustix::process::geteuid().as_raw(),
                rustix::process::getegid().as_raw(),
            ),
            progress: options.progress,
            written: options.written,
            done: AtomicU64::new(0),
        }
    }

    /// Creates `target` and the whole tree below it.
    /// Notes what was written in the caller's ledger, if it keeps one.
    pub(super) fn record(&self, f: impl FnOnce(&Written)) {
        if let Some(written) = self.written {
            f(written);
        }
    }

    pub fn run(&self, target: &Path) -> Result<BlitStats, BlitError> {
        super::deep_stack(|| self.run_here(target))
    }

    fn run_here(&self, target: &Path) -> Result<BlitStats, BlitError> {
        let root = self.create_target(target)?;
        let path = state_root();
        self.record(|w| w.dir(&path));
        let mut stats = self.fill(&root, self.plan.root, &path)?;
        self.set_attrs(&root, ROOT_MODE, (0, 0), &path)?;
        stats.entries = stats.dirs + stats.files + stats.symlinks + stats.others;
        if let Some(progress) = self.progress {
            progress(BlitProgress {
                done: self.done.load(Ordering::Relaxed),
                total: self.plan.total,
            });
        }
        Ok(stats)
    }

    /// Makes the empty target. Its parent is the caller's choice and is opened normally;
    /// from here on, everything is relative to the fd returned.
    fn create_target(&self, target: &Path) -> Result<OwnedFd, BlitError> {
        let error = |op| {
            move |e: Errno| BlitError::Target {
                op,
                path: target.to_owned(),
                source: e.into(),
            }
        };
        let name = target.file_name().ok_or_else(|| BlitError::Target {
            op: Op::Mkdir,
            path: target.to_owned(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "no final path component"),
        })?;
        let parent = match target.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let parent = rustix::fs::open(
            parent,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(error(Op::OpenDir))?;
        rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(FILLING_MODE))
            .map_err(error(Op::Mkdir))?;
        let root = open_dir(&parent, name.as_bytes()).map_err(error(Op::OpenDir))?;
        // A setgid parent passes on its group and its setgid bit. Drop both, so that every
        // entry is created as `creator` and only entries that differ need a chown.
        rustix::fs::fchmod(&root, Mode::from_raw_mode(FILLING_MODE)).map_err(error(Op::Chmod))?;
        if self.set_owner {
            let (uid, gid) = self.creator;
            rustix::fs::fchown(&root, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                .map_err(error(Op::Chown))?;
        }
        Ok(root)
    }

    /// Fills the open directory `dir` with the entries of the object `hash`.
    fn fill(&self, dir: &OwnedFd, hash: TreeHash, path: &Path) -> Result<BlitStats, BlitError> {
        let entries = self
            .plan
            .dirs
            .get(&hash)
            .expect("the plan holds every directory object it reaches");
        let mut leaves = Vec::with_capacity(entries.len());
        let mut subdirs = Vec::new();
        for entry in entries {
            match entry.node.kind {
                NodeKind::Directory(child) => subdirs.push((entry, child)),
                _ => leaves.push(entry),
            }
        }
        let (leaves, subdirs) = rayon::join(
            || {
                leaves
                    .par_chunks(LEAF_CHUNK)
                    .map(|chunk| self.leaves(dir, chunk, path))
                    .try_reduce(BlitStats::default, |a, b| Ok(a + b))
            },
            || {
                subdirs
                    .par_iter()
                    .map(|&(entry, child)| self.subdir(dir, entry, child, path))
                    .try_reduce(BlitStats::default, |a, b| Ok(a + b))
            },
        );
        Ok(leaves? + subdirs?)
    }

    /// Creates, fills, then gives its mode and owner to one subdirectory.
    pub(super) fn subdir(
        &self,
        parent: &OwnedFd,
        entry: &DirEntry,
        hash: TreeHash,
        parent_path: &Path,
    ) -> Result<BlitStats, BlitError> {
        let path = child_path(parent_path, &entry.name);
        let name = &entry.name[..];
        rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(FILLING_MODE))
            .map_err(|e| io_error(Op::Mkdir, &path, None, e))?;
        let dir = open_dir(parent, name).map_err(|e| io_error(Op::OpenDir, &path, None, e))?;
        self.record(|w| {
            w.dir(parent_path);
            w.dir(&path);
        });
        let mut stats = self.fill(&dir, hash, &path)?;
        let node = &entry.node;
        self.set_attrs(&dir, node.mode, (node.uid, node.gid), &path)?;
        stats.dirs += 1;
        self.tick(1);
        Ok(stats)
    }

    fn leaves(
        &self,
        dir: &OwnedFd,
        chunk: &[&DirEntry],
        dir_path: &Path,
    ) -> Result<BlitStats, BlitError> {
        let mut stats = BlitStats::default();
        for entry in chunk {
            self.leaf(dir, entry, dir_path, &mut stats)?;
        }
        self.tick(chunk.len() as u64);
        Ok(stats)
    }

    /// Creates one entry that is not a directory.
    pub(super) fn leaf(
        &self,
        dir: &OwnedFd,
        entry: &DirEntry,
        dir_path: &Path,
        stats: &mut BlitStats,
    ) -> Result<(), BlitError> {
        let name = &entry.name[..];
        let node = &entry.node;
        let path = || child_path(dir_path, name);
        match &node.kind {
            NodeKind::Regular { asset, size } => {
                if *size == 0 || *asset == AssetHash::EMPTY {
                    self.create_empty(dir, name, node, &path)?;
                } else if self.link(dir, name, *asset, node, &path)? == Linked::Copied {
                    stats.copied_fallbacks += 1;
                }
                stats.files += 1;
            }
            NodeKind::Symlink(text) => {
                rustix::fs::symlinkat(OsStr::from_bytes(text), dir, name)
                    .map_err(|e| io_error(Op::Symlink, &path(), None, e))?;
                if let Some((uid, gid)) = self.owner_change((node.uid, node.gid), &path)? {
                    rustix::fs::chownat(dir, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| io_error(Op::Chown, &path(), None, e))?;
                }
                self.record(|w| w.unopenable(1));
                stats.symlinks += 1;
            }
            NodeKind::CharDevice | NodeKind::BlockDevice | NodeKind::Fifo | NodeKind::Socket => {
                self.mknod(dir, name, node, &path)?;
                self.record(|w| w.unopenable(1));
                stats.others += 1;
            }
            NodeKind::Directory(_) => unreachable!("fill() hands directories to subdir()"),
        }
        Ok(())
    }

    /// Hardlinks the store file that carries `node`'s mode and owner; copies it when the
    /// file has reached the link limit, or when others than its owner may write it
    /// ([`Store::may_link`]).
    fn link(
        &self,
        dir: &OwnedFd,
        name: &[u8],
        asset: AssetHash,
        node: &Node,
        path: &dyn Fn() -> PathBuf,
    ) -> Result<Linked, BlitError> {
        if !Store::may_link(node.mode) {
            if !self.store.has_asset(asset) {
                return Err(BlitError::MissingAsset {
                    hash: asset,
                    path: path(),
                });
            }
            self.copy(dir, name, asset, &self.store.asset_path(asset), node, path)?;
            return Ok(Linked::Copied);
        }
        let source = self
            .store
            .linkable(asset, node.mode & 0o7777, node.uid, node.gid)
            .map_err(|e| match e {
                StoreError::AssetMissing { .. } => BlitError::MissingAsset {
                    hash: asset,
                    path: path(),
                },
                source => BlitError::Store {
                    hash: asset,
                    path: path(),
                    source: Box::new(source),
                },
            })?;
        // The old path is our own store; without AT_SYMLINK_FOLLOW nothing is followed.
        match rustix::fs::linkat(CWD, &source, dir, name, AtFlags::empty()) {
            Ok(()) => Ok(Linked::Linked),
            Err(Errno::MLINK) => {
                self.copy(dir, name, asset, &source, node, path)?;
                Ok(Linked::Copied)
            }
            Err(e) => Err(io_error(Op::Link, &path(), Some(asset), e)),
        }
    }

    /// A private copy of an asset, for when its inode has no links to spare. `io::copy`
    /// uses `copy_file_range`, so the bytes may not even pass through memory.
    fn copy(
        &self,
        dir: &OwnedFd,
        name: &[u8],
        asset: AssetHash,
        source: &Path,
        node: &Node,
        path: &dyn Fn() -> PathBuf,
    ) -> Result<(), BlitError> {
        let error = |source: io::Error| BlitError::Io {
            op: Op::Copy,
            path: path(),
            asset: Some(asset),
            source,
        };
        let mut from = File::open(source).map_err(error)?;
        let mut to = create_child_file(dir, name, NEW_FILE_MODE)
            .map(File::from)
            .map_err(|e| error(e.into()))?;
        io::copy(&mut from, &mut to).map_err(error)?;
        self.set_attrs(&to, node.mode, (node.uid, node.gid), &path())?;
        self.record(|w| w.file(path()));
        Ok(())
    }

    /// Every package ships empty files; one shared inode would hit the link limit.
    fn create_empty(
        &self,
        dir: &OwnedFd,
        name: &[u8],
        node: &Node,
        path: &dyn Fn() -> PathBuf,
    ) -> Result<(), BlitError> {
        let file = create_child_file(dir, name, NEW_FILE_MODE)
            .map_err(|e| io_error(Op::CreateFile, &path(), None, e))?;
        self.set_attrs(&file, node.mode, (node.uid, node.gid), &path())?;
        self.record(|w| w.file(path()));
        Ok(())
    }

    /// Devices (always `rdev` 0: a tree records no device numbers), fifos and sockets.
    fn mknod(
        &self,
        dir: &OwnedFd,
        name: &[u8],
        node: &Node,
        path: &dyn Fn() -> PathBuf,
    ) -> Result<(), BlitError> {
        let file_type = match node.kind {
            NodeKind::CharDevice => FileType::CharacterDevice,
            NodeKind::BlockDevice => FileType::BlockDevice,
            NodeKind::Fifo => FileType::Fifo,
            NodeKind::Socket => FileType::Socket,
            _ => unreachable!("leaf() passes only devices, fifos and sockets"),
        };
        rustix::fs::mknodat(dir, name, file_type, new_mode(), 0)
            .map_err(|e| io_error(Op::Mknod, &path(), None, e))?;
        if let Some((uid, gid)) = self.owner_change((node.uid, node.gid), path)? {
            rustix::fs::chownat(dir, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| io_error(Op::Chown, &path(), None, e))?;
        }
        // Not a symlink (we just made it), so following the name is safe; a node cannot be
        // opened for fchmod without side effects (a fifo blocks, a device wakes up).
        rustix::fs::chmodat(dir, name, perm(node.mode), AtFlags::empty())
            .map_err(|e| io_error(Op::Chmod, &path(), None, e))
    }

    /// Owner first, then mode: `chown` clears setuid and setgid.
    pub(super) fn set_attrs(
        &self,
        fd: impl AsFd,
        mode: u32,
        owner: (u32, u32),
        path: &Path,
    ) -> Result<(), BlitError> {
        if let Some((uid, gid)) = self.owner_change(owner, &|| path.to_owned())? {
            rustix::fs::fchown(&fd, Some(uid), Some(gid))
                .map_err(|e| io_error(Op::Chown, path, None, e))?;
        }
        rustix::fs::fchmod(&fd, perm(mode)).map_err(|e| io_error(Op::Chmod, path, None, e))
    }

    /// The `chown` an entry needs, if any.
    fn owner_change(
        &self,
        (uid, gid): (u32, u32),
        path: &dyn Fn() -> PathBuf,
    ) -> Result<Option<(Uid, Gid)>, BlitError> {
        if !self.set_owner || (uid, gid) == self.creator {
            return Ok(None);
        }
        match valid_owner(uid, gid) {
            Some(owner) => Ok(Some(owner)),
            None => Err(BlitError::InvalidOwner {
                path: path(),
                uid,
                gid,
            }),
        }
    }

    fn tick(&self, n: u64) {
        let before = self.done.fetch_add(n, Ordering::Relaxed);
        if let Some(progress) = self.progress
            && before / PROGRESS_STEP != (before + n) / PROGRESS_STEP
        {
            progress(BlitProgress {
                done: before + n,
                total: self.plan.total,
            });
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Linked {
    Linked,
    Copied,
}

pub(super) fn open_dir(parent: &OwnedFd, name: &[u8]) -> rustix::io::Result<OwnedFd> {
    open_child_dir(parent, name)
}

fn perm(mode: u32) -> Mode {
    Mode::from_raw_mode(mode & 0o7777)
}

fn new_mode() -> Mode {
    Mode::from_raw_mode(NEW_FILE_MODE)
}

pub(super) fn io_error(op: Op, path: &Path, asset: Option<AssetHash>, errno: Errno) -> BlitError {
    BlitError::Io {
        op,
        path: path.to_owned(),
        asset,
        source: errno.into(),
    }
}
