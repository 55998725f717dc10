//! Durability that costs what a change wrote (DESIGN.md §6.2).
//!
//! A state change must be on disk before it becomes the live `/usr`, but only *its* files
//! and names: `syncfs` would also wait for every byte that any other program left dirty
//! on the same file system (3 GB from a `dd` made a 0.3 s install take 3–5 s). So the
//! commit flushes exactly what it wrote: the files whose bytes it wrote (new assets,
//! cached stones, copies) and the directories whose entries it changed (shard folders, the
//! cache, every directory of the staging tree the blit created or changed); the exchange
//! then fsyncs the two parents it renamed in (`fs::sysroot::exchange`). [`sync_change`]
//! does it in the cheapest way each file system allows, many files at a time:
//!
//! - with one ordered journal (ext4 with a journal, xfs): `sync_file_range` writes each
//!   file's pages and waits for them, with no cache flush and no journal commit; then one
//!   change to a directory of ours (its mtime) and one `fsync` of it commit the journal
//!   with every earlier change in it, behind one cache flush. An `fdatasync` per file would
//!   cost a journal commit or a cache flush each, and under a streaming writer each of
//!   those waits for that writer's data (on this VM's loop-mounted ext4, for the host's
//!   fsync of the whole image);
//! - otherwise (btrfs, and file systems without a journal): `fdatasync` (or `fsync`) of
//!   every file and `fsync` of every directory; or, for a change of thousands of files
//!   while little else is dirty (a fresh install), one `syncfs`, which then costs less than
//!   thousands of cache flushes (see [`sync_change`]).
//!
//! # Why the order is safe, per file system
//!
//! The order is: the cached stones' data, then their names in `cache/` (both before the
//! state that needs them is recorded); then, after the blit, in one pass, the new assets'
//! data, the store's folders and the staging tree's new files and directories; then the
//! exchange, then the parents of the exchange. The assets need not be durable before the
//! blit links to them: nothing names the staging tree from the live one until the
//! exchange, and a kill before it removes staging and drops the state, so only "both before
//! the exchange" matters, and one pass costs one journal commit (or one `syncfs`) instead
//! of two. What each file system needs on top of that:
//!
//! - **ext4 with a journal** (`data=ordered`, the default): every name and inode change
//!   (mkdir, link, symlink, chmod, rename, the block allocations and size updates that
//!   writeback makes) goes into the running journal transaction, and a transaction commits
//!   with every one before it. `fsync` of an inode commits the transaction of its last
//!   change; the barrier's mtime was changed after every file's writeback ended (unwritten
//!   extents are converted before a page leaves writeback), so its transaction holds all of
//!   them. The commit starts with a cache flush, which makes the data written before it
//!   durable too. So the symlinks and device nodes of the staging tree (which cannot be
//!   opened and fsynced themselves) and the link counts of the assets are on disk as well.
//!   The exchange is one journaled rename: after a crash it either happened or not.
//! - **xfs**: a metadata-only log with the same shape: every transaction goes into one
//!   committed-item list, and forcing the log up to the barrier's last change writes every
//!   checkpoint up to it, in order, after a cache flush. Writeback logs the size updates
//!   before the pages leave writeback, so the same reasoning holds.
//! - **btrfs**: `fsync` logs one inode at a time in the log tree, so every file and every
//!   directory is synced on its own: a directory's `fsync` writes its new entries and the
//!   inodes they name (and falls back to a full transaction commit where the log cannot
//!   describe a change). A transaction commit does not write other files' dirty data.
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
//! Assets from 64 KiB up and the cached copies of stones given on the command line are
//! written with `O_DIRECT` (`direct`): their bytes are on the device (or in its cache)
//! when the write returns, so the syncs above find no dirty pages of theirs, and
//! what is left is the same as for any other file: their inodes (size, allocation) and
//! the device's cache, which the `fsync`, the journal commit or the `syncfs` still
//! flushes. Nothing in the order changes.
//!
//! Any call here may fail with the file system's error (`EIO` after a failed writeback);
//! the caller must then not go on to the exchange.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
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
    /// One journal or log writes every metadata change in the order it was made (ext4
    /// with a journal, xfs): committing it once, after the files' data is written, makes
    /// every name and inode of the change durable, symlinks included.
    Journaled,
    /// A log per inode (btrfs): each file and directory is synced on its own, and a
    /// directory's `fsync` also logs the inodes its new entries name.
    Logged,
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
            XFS_MAGIC => FsKind::Journaled,
            BTRFS_MAGIC => FsKind::Logged,
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

/// How [`sync_change`] made a change durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synced {
    /// Nothing to do: the file system keeps nothing across a reboot.
    Nothing,
    /// Files written out, then one journal commit.
    Journal,
    /// Every file and directory on its own.
    Each,
    /// One `syncfs`: the change was large and little else was dirty.
    WholeFileSystem,
}

/// Below this many files and directories, a change is always synced one by one.
const BULK_MIN: usize = 1024;

/// Other programs' dirty bytes that one more per-file sync is worth: above
/// `changed * DIRTY_PER_SYNC` bytes dirty in the whole system, `syncfs` would wait longer
/// than the syncs of the change one by one (each ends with a cache flush, a few
/// milliseconds; at a few hundred MB/s that is about this much writeback).
const DIRTY_PER_SYNC: u64 = 256 * 1024;

/// Makes a change durable on a file system of `kind`: the bytes and sizes of `files`,
/// and the entries of `dirs`. `barrier` is a directory of the change (the store's
/// `assets/`, the staging tree's root): on a journaled file system its mtime is set and it
/// is fsynced last, which commits the journal once for everything (see the module doc).
///
/// Without one ordered journal, each file and directory costs a cache flush, so a change
/// of thousands (a fresh install) takes one `syncfs` instead when the system holds less
/// dirty data than those flushes are worth (`Dirty` + `Writeback` in `/proc/meminfo`): the
/// choice is made per change, by what it wrote and what else is waiting.
pub fn sync_change(
    kind: FsKind,
    files: &[PathBuf],
    dirs: &[PathBuf],
    barrier: &Path,
) -> Result<Synced, SyncError> {
    let changed = files.len() + dirs.len();
    let bulk = || changed >= BULK_MIN && dirty_bytes() < changed as u64 * DIRTY_PER_SYNC;
    match kind {
        FsKind::Volatile => Ok(Synced::Nothing),
        FsKind::Journaled => {
            write_out(files)?;
            commit_journal(barrier)?;
            Ok(Synced::Journal)
        }
        FsKind::Logged | FsKind::Unjournaled if bulk() => {
            sync_whole_fs(barrier)?;
            Ok(Synced::WholeFileSystem)
        }
        FsKind::Logged => {
            sync_files(files)?;
            sync_dirs(dirs)?;
            Ok(Synced::Each)
        }
        FsKind::Unjournaled => {
            sync_files_fully(files)?;
            sync_dirs(dirs)?;
            Ok(Synced::Each)
        }
    }
}

/// Bytes waiting to be written in the whole system (`Dirty` + `Writeback`); unknown
/// counts as a lot, which keeps the per-file path.
fn dirty_bytes() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/meminfo") else {
        return u64::MAX;
    };
    let mut total = 0u64;
    for line in text.lines() {
        if let Some(rest) = line
            .strip_prefix("Dirty:")
            .or_else(|| line.strip_prefix("Writeback:"))
        {
            let kib = rest.trim().trim_end_matches("kB").trim();
            match kib.parse::<u64>() {
                Ok(kib) => total = total.saturating_add(kib.saturating_mul(1024)),
                Err(_) => return u64::MAX,
            }
        }
    }
    total
}

/// Writes every dirty page of each file to the device and waits for it, without a journal
/// commit or a cache flush (`sync_file_range`). A first pass only starts the writes, so
/// that all of them are queued at once behind whatever else the device is doing, and the
/// second waits for each.
fn write_out(files: &[PathBuf]) -> Result<(), SyncError> {
    parallel(files, |path| {
        sync_file_range(&open_file(path)?, libc::SYNC_FILE_RANGE_WRITE)
    })?;
    parallel(files, |path| {
        sync_file_range(
            &open_file(path)?,
            libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER,
        )
    })
}

/// Starts writing the dirty pages of `fd` to the device and returns without waiting
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`): for a large file written early in a change,
/// so that its writeback overlaps the rest of the change instead of being waited for all
/// at once by the sync at its end. Only a head start: it promises nothing, so a failure
/// is left for that sync to report (a failed writeback marks the file, and the sync sees
/// it), and it is skipped where nothing survives a reboot.
pub fn start_writeback(fd: &impl AsFd, kind: FsKind) {
    if kind != FsKind::Volatile {
        let _ = sync_file_range_raw(fd.as_fd().as_raw_fd(), libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// `sync_file_range(fd, 0, 0, flags)`: the whole file.
fn sync_file_range(fd: &std::os::fd::OwnedFd, flags: libc::c_uint) -> rustix::io::Result<()> {
    sync_file_range_raw(fd.as_raw_fd(), flags)
}

/// [`sync_file_range`] of a descriptor the caller keeps open for the call.
fn sync_file_range_raw(fd: std::os::fd::RawFd, flags: libc::c_uint) -> rustix::io::Result<()> {
    // SAFETY: every caller passes the raw descriptor of an fd it borrows for the whole
    // call, and the call takes no pointers. rustix has no wrapper for this syscall.
    let done = unsafe { libc::sync_file_range(fd, 0, 0, flags) };
    if done == 0 {
        Ok(())
    } else {
        Err(rustix::io::Errno::from_raw_os_error(
            io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        ))
    }
}

/// Changes the mtime of `dir`, then fsyncs it: on a file system with one ordered journal
/// that commits every metadata change made before, behind one cache flush.
fn commit_journal(dir: &Path) -> Result<(), SyncError> {
    let error = |e: rustix::io::Errno| SyncError {
        path: dir.to_owned(),
        source: e.into(),
    };
    let fd = rustix::fs::open(
        dir,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(error)?;
    let now = rustix::fs::Timespec {
        tv_sec: 0,
        tv_nsec: rustix::fs::UTIME_NOW,
    };
    let times = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        last_modification: now,
    };
    rustix::fs::futimens(&fd, &times).map_err(error)?;
    rustix::fs::fsync(&fd).map_err(error)
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
    fn a_change_syncs_on_every_kind_and_names_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, vec![7u8; 100_000]).unwrap();
        let files = [file];
        let dirs = [dir.path().to_owned()];
        let kinds = [
            FsKind::Volatile,
            FsKind::Journaled,
            FsKind::Logged,
            FsKind::Unjournaled,
        ];
        for kind in kinds {
            let how = sync_change(kind, &files, &dirs, dir.path()).unwrap();
            let expected = match kind {
                FsKind::Volatile => Synced::Nothing,
                FsKind::Journaled => Synced::Journal,
                // Two paths are far below a bulk change.
                FsKind::Logged | FsKind::Unjournaled => Synced::Each,
            };
            assert_eq!(how, expected);
        }
        let gone = [dir.path().join("gone")];
        for kind in &kinds[1..] {
            let err = sync_change(*kind, &gone, &dirs, dir.path()).unwrap_err();
            assert_eq!(err.path, gone[0], "{kind:?}");
        }
        // The journal barrier is a directory of ours: a missing one is named.
        let err = sync_change(FsKind::Journaled, &[], &[], &gone[0]).unwrap_err();
        assert_eq!(err.path, gone[0]);
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
            XFS_MAGIC => assert_eq!(kind, FsKind::Journaled),
            BTRFS_MAGIC => assert_eq!(kind, FsKind::Logged),
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
