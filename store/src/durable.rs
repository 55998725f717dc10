//! Durability that costs what a change wrote (DESIGN.md §6.2).
//!
//! A state change must be on disk before it becomes the live `/usr`, but only *its* files
//! and names: `syncfs` would also wait for every byte that any other program left dirty
//! on the same file system (3 GB from a `dd` made a 0.3 s install take 3–5 s). So the
//! commit flushes exactly what it wrote, with three kinds of call, many at a time:
//!
//! - `fdatasync` of every file whose bytes it wrote (new assets, cached stones, copies):
//!   the data and the size, without timestamps;
//! - `fsync` of every directory whose entries it changed (shard folders, the cache, every
//!   directory of the staging tree the blit created or changed);
//! - the exchange then fsyncs the two parents it renamed in (`fs::sysroot::exchange`).
//!
//! Each call waits only for its own file's dirty pages, and the calls run in parallel so
//! that the device's cache flushes they end with are merged by the block layer.
//!
//! # Why the order is safe, per file system
//!
//! The order is: asset and stone data, then the store's folders, then (after the blit)
//! the staging tree's new files and directories, then the exchange, then the parents of
//! the exchange. What each file system needs on top of that:
//!
//! - **ext4 with a journal** (`data=ordered`, the default): every name and inode change
//!   (mkdir, link, symlink, chmod, rename) goes into the running journal transaction in
//!   the order it was made, and `fsync` of a directory commits the transaction that holds
//!   its last change, with everything before it. So once the staging tree's directories
//!   are fsynced, the symlinks and device nodes created in them (which cannot be opened
//!   and fsynced themselves) and the link counts of the assets are on disk too. The data
//!   of new files is not journaled, hence the `fdatasync` of each before anything links
//!   to it. The exchange is one journaled rename: after a crash it either happened or not.
//! - **xfs**: a metadata-only log with the same shape. `fsync` forces the log up to the
//!   inode's last change, and the log is written in order, so the same reasoning holds.
//! - **btrfs**: `fsync` of a directory writes its new entries and the inodes they name
//!   to the log tree (and falls back to a full transaction commit where the log cannot
//!   describe a change), and a later transaction commit or log replay keeps the order.
//!   A transaction commit does not write other files' dirty data.
//! - **ext2, ext3 or ext4 without a journal** (what `/proc/fs/jbd2` shows): nothing orders
//!   metadata, and a crash always ends in a full `fsck`. `fsync` of a file writes its data
//!   and its inode, `fsync` of a directory its entry blocks and inode; `fsck` repairs the
//!   link counts of hardlinked assets from the entries it finds. But a symlink's or a
//!   device node's new inode is written by nothing a process can call on it alone: `fsck`
//!   would drop the entry and the new `/usr` would lose it. So on such a file system a
//!   tree that created symlinks or nodes still falls back to one `syncfs` (see
//!   [`FsKind::Unjournaled`]); files and directories alone never do.
//! - **tmpfs, ramfs**: nothing survives a reboot, so nothing is synced.
//! - **anything else** is treated as unjournaled: the safe choice.
//!
//! Any call here may fail with the file system's error (`EIO` after a failed writeback);
//! the caller must then not go on to the exchange.

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rustix::fs::{Mode, OFlags};

/// How many syncs run at once. They mostly wait for the device, not the CPU, so more run
/// than there are cores: the block layer then merges their cache flushes.
const SYNC_THREADS: usize = 16;

/// What a file system promises about the order of metadata writes, which decides how a
/// change is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    /// tmpfs or ramfs: nothing is kept across a reboot, so there is nothing to sync.
    Volatile,
    /// A journal or log writes metadata changes in the order they were made (ext4 with a
    /// journal, xfs, btrfs): syncing the directories a change touched makes every name and
    /// inode created in them durable, symlinks included.
    Journaled,
    /// No journal, or a file system not known to have one: each file and directory must
    /// be synced on its own, and entries that cannot be opened (symlinks, device nodes)
    /// need a `syncfs`.
    Unjournaled,
}

const EXT_MAGIC: i64 = 0xEF53;
const XFS_MAGIC: i64 = 0x5846_5342;
const BTRFS_MAGIC: i64 = 0x9123_683E;
const TMPFS_MAGIC: i64 = 0x0102_1994;
const RAMFS_MAGIC: i64 = 0x8584_58f6;

impl FsKind {
    /// The kind of the file system that holds `fd`. Anything unknown, or an ext file
    /// system whose journal cannot be seen, counts as [`FsKind::Unjournaled`].
    pub fn of(fd: impl AsFd) -> FsKind {
        let Ok(stat) = rustix::fs::fstatfs(&fd) else {
            return FsKind::Unjournaled;
        };
        #[allow(clippy::unnecessary_cast, reason = "f_type is i64 or u32 per target")]
        match stat.f_type as i64 {
            XFS_MAGIC | BTRFS_MAGIC => FsKind::Journaled,
            TMPFS_MAGIC | RAMFS_MAGIC => FsKind::Volatile,
            EXT_MAGIC if ext_has_journal(&fd) => FsKind::Journaled,
            _ => FsKind::Unjournaled,
        }
    }
}

/// Whether the ext file system holding `fd` has a journal: the kernel lists every jbd2
/// journal as `/proc/fs/jbd2/<device>-<inode>`.
fn ext_has_journal(fd: &impl AsFd) -> bool {
    let Ok(stat) = rustix::fs::fstat(fd) else {
        return false;
    };
    let dev = stat.st_dev;
    let uevent = format!(
        "/sys/dev/block/{}:{}/uevent",
        rustix::fs::major(dev),
        rustix::fs::minor(dev)
    );
    let Ok(text) = std::fs::read_to_string(uevent) else {
        return false;
    };
    let Some(name) = text.lines().find_map(|l| l.strip_prefix("DEVNAME=")) else {
        return false;
    };
    let prefix = format!("{}-", name.rsplit('/').next().unwrap_or(name));
    std::fs::read_dir("/proc/fs/jbd2").is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(&prefix))
    })
}

/// A sync that failed: the change may not be on disk, so the caller must stop before
/// anything depends on it.
#[derive(Debug, thiserror::Error)]
#[error("cannot make {} durable", path.display())]
pub struct SyncError {
    /// The file or directory.
    pub path: PathBuf,
    /// What the kernel said.
    #[source]
    pub source: io::Error,
}

/// `fdatasync` of every file in `files`, many at a time: their bytes and size. A symlink
/// is never followed.
pub fn sync_files(files: &[PathBuf]) -> Result<(), SyncError> {
    parallel(files, |path| rustix::fs::fdatasync(&open_file(path)?))
}

/// `fsync` of every file in `files`, many at a time: bytes and the whole inode, for a file
/// system without a journal to carry the inode (see [`FsKind::Unjournaled`]).
pub fn sync_files_fully(files: &[PathBuf]) -> Result<(), SyncError> {
    parallel(files, |path| rustix::fs::fsync(&open_file(path)?))
}

fn open_file(path: &Path) -> rustix::io::Result<std::os::fd::OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// `fsync` of every directory in `dirs`, many at a time, so their entries are durable.
pub fn sync_dirs(dirs: &[PathBuf]) -> Result<(), SyncError> {
    parallel(dirs, |path| {
        let fd = rustix::fs::open(
            path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        rustix::fs::fsync(&fd)
    })
}

/// `syncfs` of the file system holding `path`: the fallback for what cannot be synced
/// one by one (see the module doc).
pub fn sync_whole_fs(path: &Path) -> Result<(), SyncError> {
    let error = |e: rustix::io::Errno| SyncError {
        path: path.to_owned(),
        source: e.into(),
    };
    let fd = rustix::fs::open(
        path,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(error)?;
    rustix::fs::syncfs(&fd).map_err(error)
}

/// Runs `sync` on every path from up to [`SYNC_THREADS`] threads; the first error wins.
fn parallel(
    paths: &[PathBuf],
    sync: impl Fn(&Path) -> rustix::io::Result<()> + Sync,
) -> Result<(), SyncError> {
    let next = AtomicUsize::new(0);
    let work = || -> Result<(), SyncError> {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(path) = paths.get(i) else {
                return Ok(());
            };
            sync(path).map_err(|e| {
                // Stop the other threads early: the change is failing anyway.
                next.store(paths.len(), Ordering::Relaxed);
                SyncError {
                    path: path.clone(),
                    source: e.into(),
                }
            })?;
        }
    };
    let threads = paths.len().min(SYNC_THREADS);
    if threads <= 1 {
        return work();
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut result = work();
        for handle in handles {
            let joined = handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            if result.is_ok() {
                result = joined;
            }
        }
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_directories_sync_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for i in 0..40 {
            let path = dir.path().join(format!("f{i}"));
            std::fs::write(&path, b"bytes").unwrap();
            files.push(path);
        }
        sync_files(&files).unwrap();
        sync_dirs(&[dir.path().to_owned()]).unwrap();
        files.push(dir.path().join("gone"));
        let err = sync_files(&files).unwrap_err();
        assert_eq!(err.path, dir.path().join("gone"));
        assert_eq!(err.source.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_symlink_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("real"), b"x").unwrap();
        std::os::unix::fs::symlink("real", dir.path().join("link")).unwrap();
        let err = sync_files(&[dir.path().join("link")]).unwrap_err();
        assert_eq!(err.source.raw_os_error(), Some(libc_eloop()));
    }

    fn libc_eloop() -> i32 {
        rustix::io::Errno::LOOP.raw_os_error()
    }

    #[test]
    #[allow(clippy::unnecessary_cast, reason = "f_type is i64 or u32 per target")]
    fn the_kind_of_a_tmpfs_and_of_the_temp_dir_is_known() {
        // /dev/shm is a tmpfs wherever it exists.
        if let Ok(fd) = std::fs::File::open("/dev/shm")
            && rustix::fs::fstatfs(&fd).is_ok_and(|s| s.f_type as i64 == TMPFS_MAGIC)
        {
            assert_eq!(FsKind::of(&fd), FsKind::Volatile);
        }
        let dir = tempfile::tempdir().unwrap();
        let fd = std::fs::File::open(dir.path()).unwrap();
        let kind = FsKind::of(&fd);
        match rustix::fs::fstatfs(&fd).unwrap().f_type as i64 {
            XFS_MAGIC | BTRFS_MAGIC => assert_eq!(kind, FsKind::Journaled),
            TMPFS_MAGIC => assert_eq!(kind, FsKind::Volatile),
            EXT_MAGIC => {
                // ext4 also says in sysfs which task runs its journal, "<none>" without one.
                let dev = rustix::fs::fstat(&fd).unwrap().st_dev;
                let uevent = std::fs::read_to_string(format!(
                    "/sys/dev/block/{}:{}/uevent",
                    rustix::fs::major(dev),
                    rustix::fs::minor(dev)
                ))
                .unwrap_or_default();
                let name = uevent.lines().find_map(|l| l.strip_prefix("DEVNAME="));
                if let Some(task) = name.and_then(|n| {
                    std::fs::read_to_string(format!("/sys/fs/ext4/{n}/journal_task")).ok()
                }) {
                    let journaled = task.trim() != "<none>";
                    assert_eq!(
                        kind == FsKind::Journaled,
                        journaled,
                        "journal task {task:?}"
                    );
                }
            }
            _ => assert_eq!(kind, FsKind::Unjournaled),
        }
    }
}
