//! The system root's own syscalls: the writer lock, the atomic `/usr` exchange, the
//! `.stateID` marker, directory fsyncs and the root links (DESIGN.md §4, §6.2).
//!
//! Everything here works on directory fds, so a path is resolved once and the same
//! directory is acted on throughout. The transaction engine in `cli` decides the order;
//! this module only makes each step atomic and durable.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags, RenameFlags};

/// Where a root step failed.
#[derive(Debug, thiserror::Error)]
#[error("{operation} {path}: {source}")]
pub struct RootError {
    /// What was being done.
    pub operation: &'static str,
    /// The path it was done to.
    pub path: PathBuf,
    /// What the kernel said.
    #[source]
    pub source: io::Error,
}

fn err<'a>(
    operation: &'static str,
    path: &'a Path,
) -> impl FnOnce(rustix::io::Errno) -> RootError + 'a {
    move |e| RootError {
        operation,
        path: path.to_owned(),
        source: e.into(),
    }
}

fn io_err<'a>(operation: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> RootError + 'a {
    move |source| RootError {
        operation,
        path: path.to_owned(),
        source,
    }
}

/// The name of the file in `usr` that records which state it is.
pub const STATE_ID_FILE: &str = ".stateID";

/// An exclusive `flock` on `ROOT/.moss/lock`, held until dropped. Readers never take it.
pub struct Lock {
    _fd: OwnedFd,
}

impl Lock {
    /// Takes the lock, calling `waiting` once if another process holds it, then blocking.
    pub fn acquire(path: &Path, waiting: impl FnOnce()) -> Result<Lock, RootError> {
        if let Some(lock) = Lock::try_acquire(path)? {
            return Ok(lock);
        }
        waiting();
        let fd = Lock::open(path)?;
        rustix::fs::flock(&fd, FlockOperation::LockExclusive).map_err(err("lock", path))?;
        Ok(Lock { _fd: fd })
    }

    /// Takes the lock only if it is free.
    pub fn try_acquire(path: &Path) -> Result<Option<Lock>, RootError> {
        let fd = Lock::open(path)?;
        match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(Lock { _fd: fd })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(err("lock", path)(e)),
        }
    }

    fn open(path: &Path) -> Result<OwnedFd, RootError> {
        rustix::fs::open(
            path,
            OFlags::CREATE | OFlags::RDWR | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(err("open lock", path))
    }
}

fn open_dir(path: &Path) -> Result<OwnedFd, RootError> {
    rustix::fs::open(
        path,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(err("open", path))
}

/// Fsyncs a directory, so that renames inside it are durable.
pub fn fsync_dir(path: &Path) -> Result<(), RootError> {
    let fd = open_dir(path)?;
    rustix::fs::fsync(&fd).map_err(err("fsync", path))
}

/// Swaps `staged` (a directory) with `live` atomically: afterwards `live` holds what was
/// staged and `staged` holds the old tree. If `live` does not exist yet, `staged` simply
/// moves there. Both parents are fsynced. This is the commit point (DESIGN.md §6.2).
pub fn exchange(staged: &Path, live: &Path) -> Result<(), RootError> {
    let split = |p: &Path| -> Result<(PathBuf, std::ffi::OsString), RootError> {
        match (p.parent(), p.file_name()) {
            (Some(parent), Some(name)) => Ok((parent.to_owned(), name.to_owned())),
            _ => Err(RootError {
                operation: "exchange",
                path: p.to_owned(),
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "needs a parent directory and a name",
                ),
            }),
        }
    };
    let (staged_parent, staged_name) = split(staged)?;
    let (live_parent, live_name) = split(live)?;
    let staged_dir = open_dir(&staged_parent)?;
    let live_dir = open_dir(&live_parent)?;
    let live_exists = rustix::fs::statat(&live_dir, &live_name, AtFlags::SYMLINK_NOFOLLOW).is_ok();
    let flags = if live_exists {
        RenameFlags::EXCHANGE
    } else {
        RenameFlags::NOREPLACE
    };
    rustix::fs::renameat_with(&staged_dir, &staged_name, &live_dir, &live_name, flags)
        .map_err(err("exchange", live))?;
    rustix::fs::fsync(&live_dir).map_err(err("fsync", &live_parent))?;
    rustix::fs::fsync(&staged_dir).map_err(err("fsync", &staged_parent))?;
    Ok(())
}

/// Moves a directory to a new name in the same file system and fsyncs both parents.
pub fn rename_durable(from: &Path, to: &Path) -> Result<(), RootError> {
    std::fs::rename(from, to).map_err(io_err("rename", from))?;
    for dir in [from.parent(), to.parent()].into_iter().flatten() {
        fsync_dir(dir)?;
    }
    Ok(())
}

/// Writes `usr/.stateID` (decimal, no newline, as upstream does) through a temporary
/// file, so the marker is never seen half written.
pub fn write_state_id(usr: &Path, id: u64) -> Result<(), RootError> {
    let tmp = usr.join(".stateID.next");
    let path = usr.join(STATE_ID_FILE);
    let mut file = File::create(&tmp).map_err(io_err("create", &tmp))?;
    file.write_all(id.to_string().as_bytes())
        .map_err(io_err("write", &tmp))?;
    file.sync_all().map_err(io_err("fsync", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
    Ok(())
}

/// Reads `usr/.stateID`; `None` if it is missing or not a number.
pub fn read_state_id(usr: &Path) -> Option<u64> {
    std::fs::read_to_string(usr.join(STATE_ID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The links a merged-`/usr` root keeps at its top level, as upstream moss does.
pub const ROOT_LINKS: [(&str, &str); 4] = [
    ("bin", "usr/bin"),
    ("sbin", "usr/sbin"),
    ("lib", "usr/lib"),
    ("lib64", "usr/lib"),
];

/// Points `ROOT/bin`, `sbin`, `lib` and `lib64` into `usr`. A link is replaced atomically
/// (a new link under a temporary name, renamed over the old one); a real directory in its
/// place is left alone and reported, since it is not ours to remove.
pub fn ensure_root_links(root: &Path) -> Result<Vec<&'static str>, RootError> {
    let dir = open_dir(root)?;
    let mut skipped = Vec::new();
    for (name, target) in ROOT_LINKS {
        match rustix::fs::readlinkat(&dir, name, Vec::new()) {
            Ok(text) if text.as_bytes() == target.as_bytes() => continue,
            Ok(_) => {}
            Err(rustix::io::Errno::NOENT) => {}
            Err(rustix::io::Errno::INVAL) => {
                skipped.push(name);
                continue;
            }
            Err(e) => return Err(err("readlink", &root.join(name))(e)),
        }
        let tmp = format!(".{name}.next");
        let _ = rustix::fs::unlinkat(&dir, &tmp, AtFlags::empty());
        rustix::fs::symlinkat(target, &dir, &tmp).map_err(err("symlink", &root.join(&tmp)))?;
        rustix::fs::renameat(&dir, &tmp, &dir, name).map_err(err("rename", &root.join(name)))?;
    }
    rustix::fs::fsync(dir.as_fd()).map_err(err("fsync", root))?;
    Ok(skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchange_swaps_and_moves() {
        let dir = tempfile::tempdir().unwrap();
        let staged = dir.path().join("staging");
        let live = dir.path().join("usr");
        std::fs::create_dir(&staged).unwrap();
        std::fs::write(staged.join("new"), b"").unwrap();
        // No live tree yet: a plain move.
        exchange(&staged, &live).unwrap();
        assert!(live.join("new").exists() && !staged.exists());
        std::fs::create_dir(&staged).unwrap();
        std::fs::write(staged.join("newer"), b"").unwrap();
        exchange(&staged, &live).unwrap();
        assert!(live.join("newer").exists() && staged.join("new").exists());
    }

    #[test]
    fn state_id_round_trips_and_root_links_are_made() {
        let dir = tempfile::tempdir().unwrap();
        let usr = dir.path().join("usr");
        std::fs::create_dir(&usr).unwrap();
        assert_eq!(read_state_id(&usr), None);
        write_state_id(&usr, 42).unwrap();
        assert_eq!(std::fs::read_to_string(usr.join(".stateID")).unwrap(), "42");
        assert_eq!(read_state_id(&usr), Some(42));
        std::fs::create_dir(dir.path().join("sbin")).unwrap();
        let skipped = ensure_root_links(dir.path()).unwrap();
        assert_eq!(skipped, vec!["sbin"]);
        assert_eq!(
            std::fs::read_link(dir.path().join("lib64")).unwrap(),
            Path::new("usr/lib")
        );
        assert!(dir.path().join("sbin").is_dir());
    }

    #[test]
    fn a_second_lock_waits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = Lock::try_acquire(&path).unwrap().unwrap();
        assert!(Lock::try_acquire(&path).unwrap().is_none());
        drop(held);
        assert!(Lock::try_acquire(&path).unwrap().is_some());
    }
}
