//! Mounting, serving and unmounting.
//!
//! - [`spawn`] mounts and serves on background threads; the [`Mount`] handle unmounts.
//! - [`run`] mounts and serves until the mount goes away: `umount`, `mossfs umount`, or
//!   SIGINT, SIGTERM or SIGHUP, which detach it. A second signal stops waiting for open
//!   files to be closed.
//! - [`unmount`] detaches any mossfs mount, including one whose server died and left a
//!   "Transport endpoint is not connected" directory, and refuses other file systems.
//!
//! As root, the mount is made here with `mount(2)` on a `/dev/fuse` fd (type
//! [`FS_TYPE`], source `mossfs`, read-only, nosuid, nodev, `default_permissions` so the
//! kernel checks modes, `allow_other` so every user can browse it), and fuser only
//! serves that fd: fuser's own mount guard would unmount the *path* when serving ends,
//! which could hit a newer mount made there meanwhile. Without root, fuser mounts through
//! `fusermount3`.
//!
//! Readiness is exact: `mount(2)` and the INIT exchange have both completed when [`spawn`]
//! returns, so the first request is answered at once. Unmounting is always lazy
//! (`MNT_DETACH`): the mount point is free at once, and files still open below it are
//! served until they are closed.

use std::ffi::CString;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

use fuser::{Config, MountOption, Session, SessionACL};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags};

use super::awake::{Awake, Serving};
use super::signal::Forwarder;
use super::{Inner, MossFs, MountError, ReadMode, Stats, THREADS};

/// The file system type of a mossfs mount in `/proc/self/mountinfo`.
pub const FS_TYPE: &str = "fuse.mossfs";
const SOURCE: &str = "mossfs";
const DEV_FUSE: &str = "/dev/fuse";

enum Event {
    Ended,
    Signal,
}

/// A mounted state, served by background threads. Dropping it unmounts without waiting.
pub struct Mount {
    path: PathBuf,
    dev: u64,
    inner: Arc<Inner>,
    server: Option<JoinHandle<io::Result<()>>>,
    events: (Sender<Event>, Receiver<Event>),
}

impl Mount {
    /// The mount point, absolute.
    pub fn mountpoint(&self) -> &Path {
        &self.path
    }

    /// How file bytes are served, as negotiated with the kernel.
    pub fn read_mode(&self) -> ReadMode {
        self.inner.reads.mode()
    }

    /// Requests served so far.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// Detaches the mount and waits until the kernel has let go of it: at once, unless
    /// files below it are still open, which are served until they are closed.
    pub fn unmount(mut self) -> Result<(), MountError> {
        self.detach()?;
        self.join()
    }

    /// Waits until the mount is unmounted by someone else.
    pub fn wait(mut self) -> Result<(), MountError> {
        self.join()
    }

    /// Whether the mount point still shows this mount (not a newer one, not the bare
    /// directory after an unmount).
    fn is_mounted(&self) -> bool {
        self.server
            .as_ref()
            .is_some_and(|server| !server.is_finished())
            && std::fs::metadata(&self.path).is_ok_and(|m| m.dev() == self.dev)
    }

    fn detach(&self) -> Result<(), MountError> {
        if self.is_mounted() {
            detach(&self.path)?;
        }
        Ok(())
    }

    fn join(&mut self) -> Result<(), MountError> {
        let Some(server) = self.server.take() else {
            return Ok(());
        };
        let path = self.path.clone();
        match server.join() {
            Ok(result) => result.map_err(|source| MountError::Mount { path, source }),
            Err(_) => Err(MountError::Mount {
                path,
                source: io::Error::other("a serving thread panicked"),
            }),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = self.detach();
    }
}

/// How serving ended. Once the file system is unmounted the kernel answers a read of
/// `/dev/fuse` with ENODEV, which fuser takes as the end; but when a lazy unmount's last
/// open file closes while a reply is in flight, the kernel may tear the connection down as
/// aborted and answer ECONNABORTED instead (seen in CI on Linux 6.x, with passthrough). The
/// mount is gone either way and nothing is left to serve, so both are a clean end.
fn served(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::CONNABORTED.raw_os_error()) => Ok(()),
        other => other,
    }
}

/// Mounts `fs` at `mountpoint`, an empty directory, and serves it on background threads.
/// Returns once the kernel has completed its first exchange with the server.
pub fn spawn(fs: MossFs, mountpoint: &Path) -> Result<Mount, MountError> {
    spawn_with(fs, mountpoint, channel())
}

fn spawn_with(
    fs: MossFs,
    mountpoint: &Path,
    events: (Sender<Event>, Receiver<Event>),
) -> Result<Mount, MountError> {
    let path = check_mountpoint(mountpoint)?;
    let inner = Arc::clone(&fs.inner);
    let mut config = Config::default();
    config.n_threads = Some(THREADS);
    // Only used with more than one thread: each then reads its own clone of the fd.
    config.clone_fd = true;
    let mount_error = |source| MountError::Mount {
        path: path.clone(),
        source,
    };
    let session = if rustix::process::geteuid().is_root() {
        let dev = open_dev_fuse()?;
        let data = format!(
            "fd={},rootmode=40000,user_id=0,group_id=0,default_permissions,allow_other",
            std::os::fd::AsRawFd::as_raw_fd(&dev)
        );
        let data = CString::new(data).expect("no NUL in mount options");
        let flags = MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV;
        rustix::mount::mount(SOURCE, &path, FS_TYPE, flags, data.as_c_str())
            .map_err(|e| mount_error(e.into()))?;
        Session::from_fd(fs, dev, SessionACL::All, config).map_err(|source| {
            let _ = detach(&path);
            mount_error(source)
        })?
    } else {
        open_dev_fuse()?;
        config.mount_options = vec![
            MountOption::RO,
            MountOption::FSName(SOURCE.into()),
            MountOption::Subtype("mossfs".into()),
            MountOption::DefaultPermissions,
        ];
        Session::new(fs, &path, &config).map_err(mount_error)?
    };
    let awake = session
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .and_then(Awake::start);
    if let Some(awake) = &awake {
        let _ = inner.awake.set(Arc::clone(awake));
    }
    // Moved into the serving thread, which stops the watcher when it ends, or when it
    // could not be started.
    let awake = Serving(awake);
    let ended = events.0.clone();
    let server = std::thread::Builder::new()
        .name("mossfs-serve".into())
        .spawn(move || {
            let _awake = awake;
            let result = served(session.run());
            let _ = ended.send(Event::Ended);
            result
        })
        .map_err(|source| {
            let _ = detach(&path);
            MountError::Threads {
                path: path.clone(),
                source,
            }
        })?;
    let mut mount = Mount {
        path,
        dev: 0,
        inner,
        server: Some(server),
        events,
    };
    // Only now: the kernel asks the server for the root's attributes.
    match std::fs::metadata(&mount.path) {
        Ok(meta) => mount.dev = meta.dev(),
        Err(source) => {
            let _ = detach(&mount.path);
            return Err(MountError::Mount {
                path: mount.path.clone(),
                source,
            });
        }
    }
    Ok(mount)
}

/// Mounts `fs` and serves it until it is unmounted, calling `ready` once it is mounted.
///
/// While it runs, SIGINT, SIGTERM and SIGHUP detach the mount instead of killing the
/// process. Files still open below it are served until they are closed; a second signal
/// stops waiting for them. The old handlers are restored on return.
pub fn run(fs: MossFs, mountpoint: &Path, ready: impl FnOnce(&Mount)) -> Result<(), MountError> {
    let events = channel();
    // Handlers first: a signal must never find the mount made and nobody to detach it.
    let forwarder = Forwarder::start(events.0.clone(), || Event::Signal)
        .map_err(|source| MountError::Signals { source })?;
    let mut mount = match spawn_with(fs, mountpoint, events) {
        Ok(mount) => mount,
        Err(e) => {
            forwarder.stop();
            return Err(e);
        }
    };
    ready(&mount);
    let mut signalled = false;
    let result = loop {
        match mount.events.1.recv() {
            Ok(Event::Signal) if !signalled => {
                signalled = true;
                if let Err(e) = mount.detach() {
                    break Err(e);
                }
            }
            // A second signal: stop waiting for open files; the process is leaving.
            Ok(Event::Signal) => break Ok(()),
            Ok(Event::Ended) | Err(_) => break mount.join(),
        }
    };
    forwarder.stop();
    result
}

/// Unmounts the mossfs mount at `mountpoint` lazily: the mount point is free at once,
/// even if the server died or files below it are open. Refuses anything not mossfs.
pub fn unmount(mountpoint: &Path) -> Result<(), MountError> {
    let entry = find_mount(mountpoint)?.ok_or_else(|| MountError::NotMounted {
        path: mountpoint.to_owned(),
    })?;
    if !entry.is_mossfs() {
        return Err(MountError::NotMossfs {
            path: entry.mount_point,
            fs_type: entry.fs_type,
        });
    }
    detach(&entry.mount_point)
}

fn detach(path: &Path) -> Result<(), MountError> {
    match rustix::mount::unmount(path, UnmountFlags::DETACH) {
        Ok(()) => Ok(()),
        Err(Errno::PERM) => fusermount(path),
        Err(e) => Err(MountError::Unmount {
            path: path.to_owned(),
            source: e.into(),
        }),
    }
}

/// Without root, only the setuid helper may unmount.
fn fusermount(path: &Path) -> Result<(), MountError> {
    let unmount_error = |source| MountError::Unmount {
        path: path.to_owned(),
        source,
    };
    for helper in ["fusermount3", "fusermount"] {
        match std::process::Command::new(helper)
            .args(["-u", "-z"])
            .arg(path)
            .status()
        {
            Ok(status) if status.success() => return Ok(()),
            Ok(status) => {
                return Err(unmount_error(io::Error::other(format!(
                    "{helper} -u -z failed: {status}"
                ))));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(unmount_error(e)),
        }
    }
    Err(unmount_error(io::Error::from(
        io::ErrorKind::PermissionDenied,
    )))
}

fn open_dev_fuse() -> Result<std::os::fd::OwnedFd, MountError> {
    rustix::fs::open(DEV_FUSE, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| MountError::NoFuse { source: e.into() })
}

/// Checks that FUSE can be used: `/dev/fuse` opens.
pub fn check_available() -> Result<(), MountError> {
    open_dev_fuse().map(drop)
}

/// Checks that `path` can take a mount (an empty directory, not already a mossfs mount)
/// and returns it absolute.
pub fn check_mountpoint(path: &Path) -> Result<PathBuf, MountError> {
    if find_mount(path)?.is_some_and(|entry| entry.is_mossfs()) {
        // The kernel keeps answering from its caches after the server died; statfs is
        // never cached, so it tells a live server from a dead one.
        return Err(match rustix::fs::statvfs(path) {
            Err(Errno::NOTCONN) => MountError::DeadMount {
                path: path.to_owned(),
            },
            _ => MountError::AlreadyMounted {
                path: path.to_owned(),
            },
        });
    }
    let error = |source: io::Error| match source.raw_os_error() {
        Some(code) if code == Errno::NOTCONN.raw_os_error() => MountError::DeadMount {
            path: path.to_owned(),
        },
        _ if source.kind() == io::ErrorKind::NotFound => MountError::MissingMountPoint {
            path: path.to_owned(),
        },
        _ => MountError::MountPoint {
            path: path.to_owned(),
            source,
        },
    };
    let meta = std::fs::metadata(path).map_err(error)?;
    if !meta.is_dir() {
        return Err(MountError::NotADirectory {
            path: path.to_owned(),
        });
    }
    if std::fs::read_dir(path).map_err(error)?.next().is_some() {
        return Err(MountError::NotEmpty {
            path: path.to_owned(),
        });
    }
    std::fs::canonicalize(path).map_err(error)
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// Its type, `fuse.mossfs` for ours.
    pub fs_type: String,
    /// Its source, `mossfs` for ours.
    pub source: String,
}

impl MountEntry {
    /// Whether mossfs made it.
    pub fn is_mossfs(&self) -> bool {
        self.fs_type == FS_TYPE || (self.fs_type.starts_with("fuse") && self.source == SOURCE)
    }
}

/// The topmost mount at `path`, if any. Works on a dead mount, whose root cannot be
/// examined: only its parent is resolved.
pub fn find_mount(path: &Path) -> Result<Option<MountEntry>, MountError> {
    let absolute = absolute(path);
    let table = std::fs::read("/proc/self/mountinfo")
        .map_err(|source| MountError::MountTable { source })?;
    Ok(parse_mountinfo(&table)
        .into_iter()
        .rev()
        .find(|entry| entry.mount_point == absolute))
}

/// `path` with its parent resolved, but not itself: a dead mount point cannot be stat'ed.
fn absolute(path: &Path) -> PathBuf {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    match std::fs::canonicalize(parent) {
        Ok(parent) => parent.join(name),
        Err(_) => path.to_owned(),
    }
}

fn parse_mountinfo(table: &[u8]) -> Vec<MountEntry> {
    let mut entries = Vec::new();
    for line in table.split(|&b| b == b'\n') {
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        let Some(separator) = fields.iter().position(|f| *f == b"-") else {
            continue;
        };
        let (Some(mount_point), Some(fs_type), Some(source)) = (
            fields.get(4),
            fields.get(separator + 1),
            fields.get(separator + 2),
        ) else {
            continue;
        };
        entries.push(MountEntry {
            mount_point: PathBuf::from(std::ffi::OsStr::from_bytes(&unescape(mount_point))),
            fs_type: String::from_utf8_lossy(&unescape(fs_type)).into_owned(),
            source: String::from_utf8_lossy(&unescape(source)).into_owned(),
        });
    }
    entries
}

/// Undoes the kernel's octal escapes (`\040` for a space, ...).
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                let value = d
                    .iter()
                    .fold(0u32, |n, digit| n * 8 + u32::from(digit - b'0'));
                out.push(value as u8);
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_are_parsed_and_unescaped() {
        let table =
            b"36 35 98:0 / /mnt/a\\040b rw,noatime master:1 - fuse.mossfs mossfs ro,user_id=0\n\
                      37 35 98:0 / /mnt/c rw shared:2 master:3 - ext4 /dev/vda rw\n";
        let entries = parse_mountinfo(table);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].mount_point, Path::new("/mnt/a b"));
        assert!(entries[0].is_mossfs());
        assert_eq!(entries[1].fs_type, "ext4");
        assert!(!entries[1].is_mossfs());
    }
}
