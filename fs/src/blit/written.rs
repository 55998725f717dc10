//! What a blit or an incremental commit changed on disk, and making exactly that durable
//! (DESIGN.md §6.2; the per-file-system reasoning is in [`mossfs_store::durable`]).
//!
//! The blit records, as it goes, every directory whose entries it changed, every regular
//! file it created with its own inode (empty files, copies), and how many entries it
//! created that cannot be opened to be synced (symlinks, device nodes, fifos, sockets).
//! Hardlinks of store assets need nothing of their own: their bytes were made durable with
//! the store's, and their names are entries of recorded directories. [`sync_tree`] then
//! syncs those, and nothing else, unless the file system makes that unsafe.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use mossfs_store::durable::{self, FsKind, SyncError, Synced};
use rustix::fs::{Mode, OFlags};

use super::BlitError;

/// A ledger of what a blit wrote, filled through [`super::BlitOptions::written`].
/// Paths are as in the state (`usr/bin`), so one ledger serves any target.
#[derive(Debug, Default)]
pub struct Written {
    inner: Mutex<Ledger>,
}

#[derive(Debug, Default, Clone)]
struct Ledger {
    dirs: Vec<PathBuf>,
    files: Vec<PathBuf>,
    unopenable: u64,
    /// Files and directories outside the tree, as full paths: the store's new assets and
    /// their folders, made durable in the same pass ([`Written::outside`]).
    outside_files: Vec<PathBuf>,
    outside_dirs: Vec<PathBuf>,
}

/// How [`sync_tree`] made a tree durable, for tests and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeSync {
    /// Nothing: the file system keeps nothing across a reboot.
    Nothing,
    /// The recorded files' data written out, then one commit of the file system's journal
    /// (see [`mossfs_store::durable`]), which carries every directory change with it.
    Journal {
        /// Files whose data was written out.
        files: usize,
    },
    /// Each recorded file and directory on its own.
    Each {
        /// Directories synced.
        dirs: usize,
        /// Files synced.
        files: usize,
    },
    /// One `syncfs`: the file system has no journal and the tree holds entries that cannot
    /// be synced one by one, or the tree is large and little else is dirty.
    WholeFileSystem,
}

impl Written {
    /// An empty ledger.
    pub fn new() -> Written {
        Written::default()
    }

    fn with(&self, f: impl FnOnce(&mut Ledger)) {
        // A panic elsewhere cannot leave a Vec half pushed; keep what is there.
        let mut ledger = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut ledger);
    }

    /// A directory whose entries or own metadata changed (by the blit, or by whoever edits
    /// the tree after it, such as the triggers' output being folded in).
    pub fn dir(&self, path: &Path) {
        self.with(|l| l.dirs.push(path.to_owned()));
    }

    /// A regular file created with an inode of its own (by the blit, or by whoever edits
    /// the tree after it), whose bytes must be made durable too.
    pub fn file(&self, path: PathBuf) {
        self.with(|l| l.files.push(path));
    }

    /// Files and directories outside the tree (full paths, on the tree's file system) that
    /// [`sync_tree`] makes durable with it: a commit's new store assets and their folders
    /// (`Store::asset_change`). Nothing names the tree from the live `/usr` before the
    /// exchange, so the tree's links may be written before the assets they link to are
    /// durable, as long as both are before the exchange; one pass then costs one journal
    /// commit, or one `syncfs`, instead of two.
    pub fn outside(&self, files: Vec<PathBuf>, dirs: Vec<PathBuf>) {
        self.with(|l| {
            l.outside_files.extend(files);
            l.outside_dirs.extend(dirs);
        });
    }

    /// Entries that cannot be opened, so cannot be synced one by one.
    pub fn unopenable(&self, count: u64) {
        self.with(|l| l.unopenable += count);
    }

    /// The directories recorded so far, as in the state (`usr/bin`), sorted, each once.
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs = self
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .dirs
            .clone();
        dirs.sort_unstable();
        dirs.dedup();
        dirs
    }
}

/// Makes what `written` records of the tree in `target` durable, and `target` itself with
/// its entries (a commit writes `.stateID` there after the blit), together with what it
/// records outside the tree ([`Written::outside`]). DESIGN.md §6.2: call it after
/// [`super::blit`] or [`super::apply`] and before the exchange. On a file system
/// without a journal a tree with symlinks or nodes needs one `syncfs` instead, because
/// nothing else writes their inodes (see [`mossfs_store::durable`]).
pub fn sync_tree(target: &Path, written: &Written) -> Result<TreeSync, BlitError> {
    let error = |e: SyncError| BlitError::Sync {
        path: e.path,
        source: e.source,
    };
    let fd = rustix::fs::open(
        target,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| BlitError::Sync {
        path: target.to_owned(),
        source: e.into(),
    })?;
    let ledger = std::mem::take(&mut *written.inner.lock().unwrap_or_else(|e| e.into_inner()));
    let kind = FsKind::of(&fd);
    match kind {
        FsKind::Volatile => return Ok(TreeSync::Nothing),
        FsKind::Unjournaled if ledger.unopenable > 0 => {
            durable::sync_whole_fs(target).map_err(error)?;
            return Ok(TreeSync::WholeFileSystem);
        }
        FsKind::Journaled | FsKind::Logged | FsKind::Unjournaled => {}
    }
    let on_disk = |path: &PathBuf| match path.strip_prefix(super::state_root()) {
        Ok(rest) if rest.as_os_str().is_empty() => target.to_owned(),
        Ok(rest) => target.join(rest),
        // Every recorded path starts at the state root; anything else is a bug here.
        Err(_) => target.join(path),
    };
    let mut files: Vec<PathBuf> = ledger.files.iter().map(on_disk).collect();
    files.extend(ledger.outside_files);
    let mut dirs: Vec<PathBuf> = ledger.dirs.iter().map(on_disk).collect();
    dirs.extend(ledger.outside_dirs);
    dirs.push(target.to_owned());
    dirs.sort_unstable();
    dirs.dedup();
    // Nothing names the staging tree from the live one until the exchange, so the order
    // of these syncs among themselves does not matter: all of them end before it.
    Ok(
        match durable::sync_change(kind, &files, &dirs, target).map_err(error)? {
            Synced::Nothing => TreeSync::Nothing,
            Synced::Journal => TreeSync::Journal { files: files.len() },
            Synced::Each => TreeSync::Each {
                dirs: dirs.len(),
                files: files.len(),
            },
            Synced::WholeFileSystem => TreeSync::WholeFileSystem,
        },
    )
}
