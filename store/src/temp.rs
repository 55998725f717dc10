//! Temp files, the only way bytes enter the store (DESIGN.md §6.1), and their recovery.
//!
//! A writer creates `<tmp>/<pid>-<tid>-<n>` with `O_EXCL`, takes an exclusive `flock` on it
//! and holds that lock until the file has been renamed into place or removed. A temp file
//! nobody holds a lock on is therefore left over from a killed process, whatever its pid
//! says (pids are reused, and may come from another pid namespace), and
//! [`recover`] removes it. The one race, recovery removing a file between its creation and
//! its lock, is caught by the writer: a locked file with no links left is abandoned and a
//! new name tried.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use crate::{Result, StoreError};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A file being written under a temp name; removed on drop unless placed.
pub(crate) struct TempFile<'d> {
    dir: BorrowedFd<'d>,
    dir_path: &'d Path,
    name: String,
    file: File,
    placed: bool,
}

/// What happened when a temp file was moved to its final name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placed {
    /// The file is now under its final name.
    New,
    /// Another writer got there first; ours was discarded.
    AlreadyThere,
}

impl<'d> TempFile<'d> {
    /// Creates and locks a new, empty temp file in `dir` (whose path is `dir_path`),
    /// readable only by its owner.
    pub(crate) fn create(dir: &'d OwnedFd, dir_path: &'d Path) -> Result<Self> {
        Self::create_with_mode(dir, dir_path, 0o600)
    }

    /// Like [`TempFile::create`], with the permission bits `mode` (less the umask) from the
    /// start, so that a file meant to end up with them needs no `fchmod`.
    pub(crate) fn create_with_mode(
        dir: &'d OwnedFd,
        dir_path: &'d Path,
        mode: u32,
    ) -> Result<Self> {
        let error = |name: &str, source: Errno| StoreError::TempFile {
            path: dir_path.join(name),
            source: source.into(),
        };
        loop {
            let name = unique_name();
            let fd = match rustix::fs::openat(
                dir,
                name.as_str(),
                OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::CLOEXEC,
                Mode::from_raw_mode(mode & 0o777),
            ) {
                Ok(fd) => fd,
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(error(&name, e)),
            };
            rustix::fs::flock(&fd, FlockOperation::LockExclusive).map_err(|e| error(&name, e))?;
            if rustix::fs::fstat(&fd)
                .map_err(|e| error(&name, e))?
                .st_nlink
                == 0
            {
                // Recovery removed it before we could lock it.
                continue;
            }
            return Ok(TempFile {
                dir: dir.as_fd(),
                dir_path,
                name,
                file: File::from(fd),
                placed: false,
            });
        }
    }

    /// The open file, for writing.
    pub(crate) fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// The open file (read and write), for positioned writes, `fstat` and reading back.
    pub(crate) fn file_ref(&self) -> &File {
        &self.file
    }

    /// The temp file's full path, for error messages.
    pub(crate) fn path(&self) -> PathBuf {
        self.dir_path.join(&self.name)
    }

    /// Sets the owner (when `owner` is given) and then the permission bits. The order
    /// matters: `chown` clears setuid and setgid bits.
    pub(crate) fn set_metadata(&self, perm: u32, owner: Option<(u32, u32)>) -> io::Result<()> {
        if let Some((uid, gid)) = owner {
            rustix::fs::fchown(
                &self.file,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )?;
        }
        rustix::fs::fchmod(&self.file, Mode::from_raw_mode(perm & 0o7777))?;
        Ok(())
    }

    /// Moves the file to `dest` below `dest_dir`, creating missing parent folders. With
    /// `replace` false an existing file wins and ours is discarded, so a placed file never
    /// changes inode under the links made to it.
    pub(crate) fn place(
        mut self,
        dest_dir: &OwnedFd,
        dest: &str,
        replace: bool,
    ) -> io::Result<Placed> {
        // A concurrent gc may remove an empty shard folder we just made; try again a few times.
        let mut attempts = 0;
        loop {
            let result = if replace {
                rustix::fs::renameat(self.dir, self.name.as_str(), dest_dir, dest)
            } else {
                rename_noreplace(self.dir, &self.name, dest_dir.as_fd(), dest)
            };
            match result {
                Ok(()) => {
                    self.placed = true;
                    return Ok(Placed::New);
                }
                Err(Errno::EXIST) if !replace => return Ok(Placed::AlreadyThere),
                Err(Errno::NOENT) if attempts < 8 => {
                    create_parents(dest_dir, dest)?;
                    attempts += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        if !self.placed {
            // Nothing useful to do if this fails: recovery will find the file later.
            let _ = rustix::fs::unlinkat(self.dir, self.name.as_str(), AtFlags::empty());
        }
    }
}

/// `renameat2(RENAME_NOREPLACE)`, or `linkat` + `unlinkat` on file systems without it;
/// both fail with `EEXIST` rather than replace.
fn rename_noreplace(
    dir: BorrowedFd<'_>,
    name: &str,
    dest_dir: BorrowedFd<'_>,
    dest: &str,
) -> rustix::io::Result<()> {
    match rustix::fs::renameat_with(dir, name, dest_dir, dest, RenameFlags::NOREPLACE) {
        Err(Errno::INVAL | Errno::NOSYS) => {
            rustix::fs::linkat(dir, name, dest_dir, dest, AtFlags::empty())?;
            rustix::fs::unlinkat(dir, name, AtFlags::empty())
        }
        other => other,
    }
}

/// Creates each missing folder on the way to `dest` (a relative path of `/`-separated
/// names), tolerating other writers creating them at the same time.
pub(crate) fn create_parents(dir: &OwnedFd, dest: &str) -> io::Result<()> {
    let mut end = 0;
    while let Some(slash) = dest[end..].find('/') {
        end += slash;
        match rustix::fs::mkdirat(dir, &dest[..end], Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        end += 1;
    }
    Ok(())
}

/// `<pid>-<tid>-<n>`. The tid is looked up once per thread; the pid is not cached, so a
/// forked child never repeats a name its parent used.
pub(crate) fn unique_name() -> String {
    thread_local! {
        static TID: i32 = rustix::thread::gettid().as_raw_nonzero().get();
    }
    let pid = rustix::process::getpid().as_raw_nonzero();
    let tid = TID.with(|tid| *tid);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{pid}-{tid}-{n}")
}

/// Removes every temp file in `dir` that no live writer holds locked, and returns how
/// many it removed. Files it may not open (a non-root store seeing another user's temp
/// file) are left alone, as are folders.
pub(crate) fn recover(dir: &OwnedFd, dir_path: &Path) -> Result<usize> {
    let list_error = |source: io::Error| StoreError::OpenDir {
        path: dir_path.to_owned(),
        source,
    };
    let mut removed = 0;
    for entry in std::fs::read_dir(dir_path).map_err(list_error)? {
        let entry = entry.map_err(list_error)?;
        let name = entry.file_name();
        let remove_error = |source: Errno| StoreError::TempFile {
            path: dir_path.join(&name),
            source: source.into(),
        };
        let stat = match rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(remove_error(e)),
        };
        match rustix::fs::FileType::from_raw_mode(stat.st_mode) {
            rustix::fs::FileType::RegularFile => {}
            rustix::fs::FileType::Directory => continue,
            // Not something a writer made, and not worth opening (a device might react).
            _ => {
                match rustix::fs::unlinkat(dir, &name, AtFlags::empty()) {
                    Ok(()) => removed += 1,
                    Err(Errno::NOENT) => {}
                    Err(e) => return Err(remove_error(e)),
                }
                continue;
            }
        }
        let fd = match rustix::fs::openat(
            dir,
            &name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            // Gone already (placed or removed by its writer), or not ours to judge.
            Err(Errno::NOENT | Errno::LOOP | Errno::ACCESS | Errno::PERM) => continue,
            Err(e) => return Err(remove_error(e)),
        };
        match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => continue,
            Err(e) => return Err(remove_error(e)),
        }
        // Holding the lock: no writer can be using this file. If its writer placed it in
        // the meantime the name is gone, and unique names are never reused by a live one.
        match rustix::fs::unlinkat(dir, &name, AtFlags::empty()) {
            Ok(()) => removed += 1,
            Err(Errno::NOENT) => {}
            Err(e) => return Err(remove_error(e)),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_dir() -> (tempfile::TempDir, OwnedFd) {
        let dir = tempfile::tempdir().unwrap();
        let fd = rustix::fs::open(
            dir.path(),
            OFlags::DIRECTORY | OFlags::RDONLY,
            Mode::empty(),
        )
        .unwrap();
        (dir, fd)
    }

    #[test]
    fn recovery_spares_a_locked_temp_file_and_removes_an_abandoned_one() {
        let (dir, fd) = tmp_dir();
        let live = TempFile::create(&fd, dir.path()).unwrap();
        std::fs::write(dir.path().join("123-456-7"), b"left by a killed writer").unwrap();
        assert_eq!(recover(&fd, dir.path()).unwrap(), 1);
        assert!(live.path().exists(), "a live writer's file must survive");
        assert!(!dir.path().join("123-456-7").exists());
        let path = live.path();
        drop(live);
        assert!(!path.exists(), "an unplaced temp file is removed on drop");
        assert_eq!(recover(&fd, dir.path()).unwrap(), 0);
    }

    #[test]
    fn place_creates_parents_and_never_replaces_unless_asked() {
        let (dir, fd) = tmp_dir();
        let mut first = TempFile::create(&fd, dir.path()).unwrap();
        io::Write::write_all(first.file(), b"first").unwrap();
        assert_eq!(first.place(&fd, "ab/cd/x", false).unwrap(), Placed::New);
        let mut second = TempFile::create(&fd, dir.path()).unwrap();
        io::Write::write_all(second.file(), b"second").unwrap();
        let second_path = second.path();
        assert_eq!(
            second.place(&fd, "ab/cd/x", false).unwrap(),
            Placed::AlreadyThere
        );
        assert!(!second_path.exists());
        assert_eq!(std::fs::read(dir.path().join("ab/cd/x")).unwrap(), b"first");
        let mut third = TempFile::create(&fd, dir.path()).unwrap();
        io::Write::write_all(third.file(), b"third").unwrap();
        assert_eq!(third.place(&fd, "ab/cd/x", true).unwrap(), Placed::New);
        assert_eq!(std::fs::read(dir.path().join("ab/cd/x")).unwrap(), b"third");
    }

    #[test]
    fn setuid_survives_because_chown_comes_first() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let (dir, fd) = tmp_dir();
        let temp = TempFile::create(&fd, dir.path()).unwrap();
        temp.set_metadata(0o4755, Some((1000, 1000))).unwrap();
        let stat = rustix::fs::fstat(&temp.file).unwrap();
        assert_eq!(stat.st_mode & 0o7777, 0o4755);
        assert_eq!((stat.st_uid, stat.st_gid), (1000, 1000));
    }
}
