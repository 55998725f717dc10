//! Which states are mounted right now, so that no command removes a state a live mount
//! serves.
//!
//! A mount reads its directories from an LMDB snapshot of its own, which outlives the
//! state's removal, but its file bytes come from the store, and `gc` deletes the assets of
//! removed states. So every mount server registers itself while it serves:
//!
//! ```text
//! ROOT/.moss/mounts/<pid>.state   "<state id>\n<mount point>\n", flocked by its server
//! ROOT/.moss/mounts/               flocked itself: the gate, ordering registering against
//!                                  removing
//! ```
//!
//! The server holds an exclusive `flock` on its registration for its whole life, so a
//! registration whose lock is free belongs to a server that died (even by SIGKILL), is
//! ignored, and is deleted by whoever notices. The gate closes the one race left: a server
//! holds it from registering until its snapshot is open, and a removal holds it from
//! reading the registrations until its transaction is committed. Either the removal sees
//! the mount, or the mount finds the state already gone.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use mossfs_db::StateId;
use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use super::error::{EngineError, Result};

/// A mount that is being served right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveMount {
    /// The state it serves.
    pub state: StateId,
    /// Where it is mounted.
    pub mountpoint: PathBuf,
    /// The server's process id.
    pub pid: u32,
}

impl LiveMount {
    /// Whether the mount is still attached at its mount point. A server whose mount was
    /// detached (`umount -l`, which `mossfs umount` does) keeps serving until the last
    /// file opened through it is closed, and only killing it ends that sooner.
    pub fn attached(&self) -> bool {
        mossfs_fs::fuse::find_mount(&self.mountpoint)
            .is_ok_and(|entry| entry.is_some_and(|entry| entry.is_mossfs()))
    }
}

/// The gate, held until dropped. `None` inside means the root is read-only: nothing can
/// remove a state there, so there is nothing to order.
pub struct Gate {
    dir: PathBuf,
    lock: Option<OwnedFd>,
}

impl Gate {
    /// Waits for the gate of the root at `root`.
    pub fn take(root: &Path) -> Result<Gate> {
        let dir = root.join(".moss/mounts");
        let error = |source: io::Error| EngineError::Mounts {
            path: dir.clone(),
            source,
        };
        match fs::create_dir_all(&dir) {
            Err(e) if e.kind() == io::ErrorKind::ReadOnlyFilesystem => {
                return Ok(Gate { dir, lock: None });
            }
            result => result.map_err(error)?,
        }
        // The folder itself is the lock, so taking it writes nothing, even on a full disk.
        let gate = rustix::fs::open(
            &dir,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| error(e.into()))?;
        rustix::fs::flock(&gate, FlockOperation::LockExclusive).map_err(|e| error(e.into()))?;
        Ok(Gate {
            dir,
            lock: Some(gate),
        })
    }

    /// Registers this process as the server of `state` at `mountpoint`, until the
    /// registration is dropped.
    pub fn register(&self, state: StateId, mountpoint: &Path) -> Result<Registration> {
        if self.lock.is_none() {
            return Ok(Registration { path: None });
        }
        let path = self.dir.join(format!("{}.state", std::process::id()));
        let error = |source: io::Error| EngineError::Mounts {
            path: path.clone(),
            source,
        };
        // A previous server with this pid died without cleaning up: its file is stale.
        let _ = fs::remove_file(&path);
        let file = match File::options().create_new(true).write(true).open(&path) {
            Ok(file) => file,
            // A read-only root: nothing can remove a state there, so there is nothing to
            // guard against.
            Err(e) if e.kind() == io::ErrorKind::ReadOnlyFilesystem => {
                return Ok(Registration { path: None });
            }
            Err(e) => return Err(error(e)),
        };
        let registration = Registration {
            path: Some((path.clone(), file)),
        };
        if let Some((_, file)) = &registration.path {
            rustix::fs::flock(file, FlockOperation::LockExclusive).map_err(|e| error(e.into()))?;
            let mut out = file;
            // The mount point's own bytes: a lossy copy would name another path.
            let record = [
                format!("{}\n", state.0).as_bytes(),
                mountpoint.as_os_str().as_bytes(),
                b"\n",
            ]
            .concat();
            out.write_all(&record).map_err(error)?;
        }
        Ok(registration)
    }

    /// The mounts being served now, read while the gate is held so none can appear
    /// before the caller's transaction is committed.
    pub fn live(&self) -> Result<Vec<LiveMount>> {
        live_in(&self.dir, self.lock.is_some())
    }
}

/// A server's registration; dropping it removes the file, then frees the lock.
pub struct Registration {
    path: Option<(PathBuf, File)>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some((path, _lock)) = &self.path {
            let _ = fs::remove_file(path);
        }
    }
}

/// The mount of `state` among `mounts`, if it is mounted.
pub fn mount_of(mounts: &[LiveMount], state: StateId) -> Option<&LiveMount> {
    mounts.iter().find(|mount| mount.state == state)
}

/// The mounts being served now, for display: no gate, so it never waits.
pub fn live(root: &Path) -> Result<Vec<LiveMount>> {
    live_in(&root.join(".moss/mounts"), false)
}

/// Only a holder of the gate may delete stale registrations: without it, a registration
/// just created and not yet locked would look stale.
fn live_in(dir: &Path, clean: bool) -> Result<Vec<LiveMount>> {
    let error = |path: &Path, source: io::Error| EngineError::Mounts {
        path: path.to_owned(),
        source,
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(error(dir, e)),
    };
    let mut mounts = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| error(dir, e))?.path();
        if path.extension().is_none_or(|ext| ext != "state") {
            continue;
        }
        let file = match File::open(&path) {
            Ok(file) => file,
            // Its server unmounted between the listing and now.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(error(&path, e)),
        };
        if !held(&file).map_err(|e| error(&path, e))? {
            if clean {
                let _ = fs::remove_file(&path);
            }
            continue;
        }
        let mut text = Vec::new();
        (&file)
            .read_to_end(&mut text)
            .map_err(|e| error(&path, e))?;
        let pid = path
            .file_stem()
            .and_then(|stem| stem.to_str()?.parse().ok());
        if let Some(mount) = pid.and_then(|pid| parse(&text, pid)) {
            mounts.push(mount);
        }
    }
    mounts.sort_by(|a, b| (a.state, &a.mountpoint).cmp(&(b.state, &b.mountpoint)));
    Ok(mounts)
}

/// Whether a live server holds the lock on `file`.
fn held(file: &File) -> io::Result<bool> {
    match rustix::fs::flock(file.as_fd(), FlockOperation::NonBlockingLockShared) {
        Ok(()) => {
            rustix::fs::flock(file.as_fd(), FlockOperation::Unlock)?;
            Ok(false)
        }
        Err(Errno::WOULDBLOCK) => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// A registration being written may be incomplete; its server still holds the gate, so
/// only a display can see it, and skipping it there is right.
fn parse(text: &[u8], pid: u32) -> Option<LiveMount> {
    let cut = text.iter().position(|&b| b == b'\n')?;
    let state = std::str::from_utf8(&text[..cut]).ok()?;
    let mountpoint = text[cut + 1..].strip_suffix(b"\n")?;
    Some(LiveMount {
        state: StateId(state.parse().ok()?),
        mountpoint: PathBuf::from(OsStr::from_bytes(mountpoint)),
        pid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registration_is_live_until_dropped() {
        let root = tempfile::tempdir().unwrap();
        let gate = Gate::take(root.path()).unwrap();
        let registration = gate.register(StateId(7), Path::new("/mnt/x")).unwrap();
        let expected = vec![LiveMount {
            state: StateId(7),
            mountpoint: PathBuf::from("/mnt/x"),
            pid: std::process::id(),
        }];
        assert_eq!(gate.live().unwrap(), expected);
        assert_eq!(live(root.path()).unwrap(), expected);
        drop(registration);
        assert_eq!(gate.live().unwrap(), Vec::new());
        let left = fs::read_dir(root.path().join(".moss/mounts")).unwrap();
        assert_eq!(left.count(), 0);
    }

    #[test]
    fn a_mount_point_that_is_not_utf8_is_registered_as_it_is() {
        let root = tempfile::tempdir().unwrap();
        let gate = Gate::take(root.path()).unwrap();
        let at = Path::new(OsStr::from_bytes(b"/mnt/odd\xff\nname"));
        let _registration = gate.register(StateId(3), at).unwrap();
        let live = gate.live().unwrap();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].mountpoint, at);
    }

    #[test]
    fn a_registration_nobody_holds_is_stale_and_removed() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(".moss/mounts");
        fs::create_dir_all(&dir).unwrap();
        let stale = dir.join("999999.state");
        fs::write(&stale, "3\n/mnt/gone\n").unwrap();
        assert_eq!(live(root.path()).unwrap(), Vec::new());
        assert!(stale.exists(), "only the gate's holder cleans up");
        assert_eq!(Gate::take(root.path()).unwrap().live().unwrap(), Vec::new());
        assert!(!stale.exists());
    }
}
