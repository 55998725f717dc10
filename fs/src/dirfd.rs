//! [`DirFd`]: creating things below a root without ever leaving it.
//!
//! DESIGN.md §6.3: a hostile stone cannot write outside the tree. [`RelPath`] already refuses
//! `..`, absolute paths, NUL and empty components; this module closes the other door, the
//! symlink. Every operation here works relative to an open directory descriptor, one
//! component at a time, and opens each component with `O_NOFOLLOW`. A symlink where a
//! directory is expected is an error, never a detour, so a stone that ships `a -> /etc` and
//! then `a/passwd` is refused instead of writing `/etc/passwd`.
//!
//! The module owns no policy: it does not know about stones, stores or states. The extractor
//! and the blit build on it. Each wrapper is named after the syscall it issues and reports
//! the full path it was working on, so a message can say exactly where things went wrong.
//!
//! Ownership and modes are set through open descriptors (`fchown`, `fchmod`), and on
//! symlinks with `AT_SYMLINK_NOFOLLOW`, so setting attributes cannot follow a link either.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use mossfs_format::RelPath;
use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Uid};
use rustix::io::Errno;

/// Mode given to directories that a path needs but no record describes: `rwxr-xr-x`, the
/// mode DESIGN.md §3 calls the default.
pub const DEFAULT_DIR_MODE: u32 = 0o755;

/// What went wrong below a root. Every variant names the full path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirError {
    /// A symlink sits where a directory is needed; following it could leave the root.
    #[error("{} is a symlink; refusing to follow it", .path.display())]
    Symlink {
        /// The symlink.
        path: PathBuf,
    },
    /// Something other than a directory or symlink sits where a directory is needed.
    #[error("{} is not a directory", .path.display())]
    NotADirectory {
        /// The entry in the way.
        path: PathBuf,
    },
    /// The entry to create exists already; nothing is ever replaced here.
    #[error("{} already exists", .path.display())]
    Exists {
        /// The existing entry.
        path: PathBuf,
    },
    /// An owner that cannot be set: `u32::MAX` means "unchanged" to the kernel.
    #[error("{}: invalid owner {uid}:{gid}", .path.display())]
    InvalidOwner {
        /// The entry.
        path: PathBuf,
        /// The uid asked for.
        uid: u32,
        /// The gid asked for.
        gid: u32,
    },
    /// Any other failure of a syscall.
    #[error("cannot {op} {}", .path.display())]
    Io {
        /// What was being done, e.g. "create directory".
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
}

/// The owner and permission bits to give an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attrs {
    /// Permission bits, setuid, setgid and sticky included; type bits are ignored.
    pub mode: u32,
    /// `(uid, gid)`, or `None` to keep the creator's (what a non-root caller must do).
    pub owner: Option<(u32, u32)>,
}

/// An open directory, and the path it was reached by (for messages only).
#[derive(Debug)]
pub struct DirFd {
    fd: OwnedFd,
    path: PathBuf,
}

impl AsFd for DirFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl DirFd {
    /// Opens a directory the user named. Symlinks in `path` are followed: the user chose
    /// the root; only what lies below it is untrusted.
    pub fn open(path: impl AsRef<Path>) -> Result<DirFd, DirError> {
        let path = path.as_ref();
        let fd = rustix::fs::open(
            path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_error("open directory", path.to_owned(), e))?;
        Ok(DirFd {
            fd,
            path: path.to_owned(),
        })
    }

    /// The path this directory was reached by.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn child(&self, name: &[u8]) -> PathBuf {
        self.path.join(OsStr::from_bytes(name))
    }

    /// Opens the child directory `name` (one component), refusing a symlink.
    /// `openat(2)` with `O_DIRECTORY | O_NOFOLLOW`.
    pub fn open_dir(&self, name: &[u8]) -> Result<DirFd, DirError> {
        match self.openat_dir(name) {
            Ok(fd) => Ok(DirFd {
                fd,
                path: self.child(name),
            }),
            Err(e) => Err(self.classify_open_error(name, e)),
        }
    }

    fn openat_dir(&self, name: &[u8]) -> Result<OwnedFd, Errno> {
        open_child_dir(&self.fd, name)
    }

    /// Turns a failed directory open into the most useful error: what is in the way.
    fn classify_open_error(&self, name: &[u8], errno: Errno) -> DirError {
        let path = self.child(name);
        if errno == Errno::LOOP || errno == Errno::NOTDIR {
            let what = rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)
                .map(|st| FileType::from_raw_mode(st.st_mode));
            return match what {
                Ok(FileType::Symlink) => DirError::Symlink { path },
                _ => DirError::NotADirectory { path },
            };
        }
        io_error("open directory", path, errno)
    }

    /// Opens the directory at `path` below this one, component by component, refusing
    /// every symlink on the way.
    pub fn open_dir_beneath(&self, path: &RelPath) -> Result<DirFd, DirError> {
        self.walk(path, |dir, name| dir.open_dir(name))
    }

    /// Creates the child directory `name` and opens it. Its mode is set to exactly `mode`
    /// (the umask does not apply). `mkdirat(2)`.
    pub fn create_dir(&self, name: &[u8], mode: u32) -> Result<DirFd, DirError> {
        rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(mode & 0o7777))
            .map_err(|e| self.create_error("create directory", name, e))?;
        let dir = self.open_dir(name)?;
        dir.set_attrs(Attrs { mode, owner: None })?;
        Ok(dir)
    }

    /// Opens the directory at `path` below this one, creating whatever is missing with
    /// `mode`. Existing directories are kept as they are; a symlink or a file on the way is
    /// an error.
    pub fn create_dir_all_beneath(&self, path: &RelPath, mode: u32) -> Result<DirFd, DirError> {
        self.walk(path, |dir, name| match dir.openat_dir(name) {
            Ok(fd) => Ok(DirFd {
                fd,
                path: dir.child(name),
            }),
            Err(Errno::NOENT) => match dir.create_dir(name, mode) {
                // Someone else created it between our two calls: use theirs.
                Err(DirError::Exists { .. }) => dir.open_dir(name),
                other => other,
            },
            Err(e) => Err(dir.classify_open_error(name, e)),
        })
    }

    /// Applies `step` to each component of `path`, starting here.
    fn walk(
        &self,
        path: &RelPath,
        step: impl Fn(&DirFd, &[u8]) -> Result<DirFd, DirError>,
    ) -> Result<DirFd, DirError> {
        let mut current: Option<DirFd> = None;
        for name in path.components() {
            let next = step(current.as_ref().unwrap_or(self), name)?;
            current = Some(next);
        }
        Ok(current.expect("a RelPath has at least one component"))
    }

    /// Creates the regular file `name`, which must not exist, open for reading and writing.
    /// `mode` is filtered by the umask, as with `open(2)`; use [`DirFd::set_file_attrs`]
    /// for the exact bits. `openat(2)` with `O_CREAT | O_EXCL | O_NOFOLLOW`.
    pub fn create_file(&self, name: &[u8], mode: u32) -> Result<File, DirError> {
        create_child_file(&self.fd, name, mode)
            .map(File::from)
            .map_err(|e| self.create_error("create file", name, e))
    }

    /// Opens the regular file `name` for reading, refusing a symlink.
    /// `openat(2)` with `O_NOFOLLOW`.
    pub fn open_file(&self, name: &[u8]) -> Result<File, DirError> {
        rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map(File::from)
        .map_err(|e| match e {
            Errno::LOOP => DirError::Symlink {
                path: self.child(name),
            },
            e => io_error("open file", self.child(name), e),
        })
    }

    /// Creates the symlink `name` with the link text `target`, which is stored, never
    /// resolved. `symlinkat(2)`.
    pub fn symlink(&self, target: &[u8], name: &[u8]) -> Result<(), DirError> {
        rustix::fs::symlinkat(target, &self.fd, name)
            .map_err(|e| self.create_error("create symlink", name, e))
    }

    /// Hardlinks `source_name` in `source` as `name` here. A symlink is linked as itself,
    /// never followed. `linkat(2)` without `AT_SYMLINK_FOLLOW`.
    pub fn link_from(
        &self,
        source: &DirFd,
        source_name: &[u8],
        name: &[u8],
    ) -> Result<(), DirError> {
        rustix::fs::linkat(&source.fd, source_name, &self.fd, name, AtFlags::empty())
            .map_err(|e| self.create_error("create hardlink", name, e))
    }

    /// Sets this directory's owner, then its mode. `fchown(2)`, `fchmod(2)`.
    pub fn set_attrs(&self, attrs: Attrs) -> Result<(), DirError> {
        apply(&self.fd, attrs, &self.path)
    }

    /// Sets the owner, then the mode, of `file`, an open file created as `name` in this
    /// directory (the name is for messages). Owner first, because `fchown` clears setuid
    /// and setgid. `fchown(2)`, `fchmod(2)`.
    pub fn set_file_attrs(&self, name: &[u8], file: &File, attrs: Attrs) -> Result<(), DirError> {
        apply(file, attrs, &self.child(name))
    }

    /// Sets the owner of the symlink `name` itself. Symlinks have no mode of their own on
    /// Linux. `fchownat(2)` with `AT_SYMLINK_NOFOLLOW`.
    pub fn set_symlink_owner(&self, name: &[u8], uid: u32, gid: u32) -> Result<(), DirError> {
        let (uid, gid) = owner_ids(uid, gid, || self.child(name))?;
        rustix::fs::chownat(
            &self.fd,
            name,
            Some(uid),
            Some(gid),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| io_error("change owner of", self.child(name), e))
    }

    fn create_error(&self, op: &'static str, name: &[u8], errno: Errno) -> DirError {
        let path = self.child(name);
        if errno == Errno::EXIST {
            DirError::Exists { path }
        } else {
            io_error(op, path, errno)
        }
    }
}

fn apply(fd: impl AsFd, attrs: Attrs, path: &Path) -> Result<(), DirError> {
    if let Some((uid, gid)) = attrs.owner {
        let (uid, gid) = owner_ids(uid, gid, || path.to_owned())?;
        rustix::fs::fchown(&fd, Some(uid), Some(gid))
            .map_err(|e| io_error("change owner of", path.to_owned(), e))?;
    }
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(attrs.mode & 0o7777))
        .map_err(|e| io_error("change mode of", path.to_owned(), e))
}

fn owner_ids(uid: u32, gid: u32, path: impl Fn() -> PathBuf) -> Result<(Uid, Gid), DirError> {
    valid_owner(uid, gid).ok_or_else(|| DirError::InvalidOwner {
        path: path(),
        uid,
        gid,
    })
}

// The syscalls below are the whole of the symlink policy, shared with the blit, which
// wraps them in its own errors (paths as in the state) and its own policies.

/// Opens the child directory `name` (one component) of `parent`, never through a symlink:
/// a symlink there fails with `ELOOP` (or `ENOTDIR`).
pub(crate) fn open_child_dir(
    parent: impl AsFd,
    name: impl rustix::path::Arg,
) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Creates the regular file `name` in `parent`, open for reading and writing. It must not
/// exist, so nothing is replaced and no symlink is followed. `mode` is filtered by the
/// umask, as with `open(2)`.
pub(crate) fn create_child_file(
    parent: impl AsFd,
    name: &[u8],
    mode: u32,
) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode & 0o7777),
    )
}

/// The owner to pass to the kernel, or `None` for one that cannot be set: `u32::MAX` is
/// `-1`, which the kernel reads as "leave unchanged", and silently keeping the wrong owner
/// is worse than refusing.
pub(crate) fn valid_owner(uid: u32, gid: u32) -> Option<(Uid, Gid)> {
    (uid != u32::MAX && gid != u32::MAX).then(|| (Uid::from_raw(uid), Gid::from_raw(gid)))
}

fn io_error(op: &'static str, path: PathBuf, errno: Errno) -> DirError {
    DirError::Io {
        op,
        path,
        source: errno.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn rel(path: &str) -> RelPath {
        RelPath::new(path).unwrap()
    }

    /// A root inside a sandbox, with a secret directory beside it that must stay untouched.
    fn sandbox() -> (tempfile::TempDir, DirFd, PathBuf) {
        let sandbox = tempfile::tempdir().unwrap();
        let root = sandbox.path().join("root");
        let outside = sandbox.path().join("outside");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&outside).unwrap();
        let dir = DirFd::open(&root).unwrap();
        (sandbox, dir, outside)
    }

    #[test]
    fn creates_nested_directories_with_exact_modes() {
        let (_sandbox, root, _) = sandbox();
        let dir = root
            .create_dir_all_beneath(&rel("share/doc/x"), DEFAULT_DIR_MODE)
            .unwrap();
        assert_eq!(dir.path(), root.path().join("share/doc/x"));
        for path in ["share", "share/doc", "share/doc/x"] {
            let meta = std::fs::metadata(root.path().join(path)).unwrap();
            assert_eq!(meta.permissions().mode() & 0o7777, 0o755, "{path}");
        }
        // Existing directories are reused, not refused.
        root.create_dir_all_beneath(&rel("share/doc/y"), 0o700)
            .unwrap();
        let y = std::fs::metadata(root.path().join("share/doc/y")).unwrap();
        assert_eq!(y.permissions().mode() & 0o7777, 0o700);
    }

    #[test]
    fn refuses_to_walk_through_a_symlink() {
        let (_sandbox, root, outside) = sandbox();
        root.symlink(outside.as_os_str().as_bytes(), b"a").unwrap();
        let err = root
            .create_dir_all_beneath(&rel("a/b"), DEFAULT_DIR_MODE)
            .unwrap_err();
        assert!(
            matches!(&err, DirError::Symlink { path } if path == &root.path().join("a")),
            "{err:?}"
        );
        let err = root.open_dir_beneath(&rel("a")).unwrap_err();
        assert!(matches!(err, DirError::Symlink { .. }), "{err:?}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[test]
    fn refuses_a_file_where_a_directory_is_needed() {
        let (_sandbox, root, _) = sandbox();
        root.create_file(b"f", 0o644).unwrap();
        let err = root
            .create_dir_all_beneath(&rel("f/x"), DEFAULT_DIR_MODE)
            .unwrap_err();
        assert!(matches!(err, DirError::NotADirectory { .. }), "{err:?}");
    }

    #[test]
    fn never_replaces_or_writes_through_an_existing_entry() {
        let (_sandbox, root, outside) = sandbox();
        let target = outside.join("secret");
        std::fs::write(&target, b"keep").unwrap();
        root.symlink(target.as_os_str().as_bytes(), b"link")
            .unwrap();
        let err = root.create_file(b"link", 0o644).unwrap_err();
        assert!(matches!(err, DirError::Exists { .. }), "{err:?}");
        let err = root.open_file(b"link").unwrap_err();
        assert!(matches!(err, DirError::Symlink { .. }), "{err:?}");
        let err = root.symlink(b"x", b"link").unwrap_err();
        assert!(matches!(err, DirError::Exists { .. }), "{err:?}");
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    }

    #[test]
    fn files_get_exact_attributes_and_can_be_read_back() {
        let (_sandbox, root, _) = sandbox();
        let mut file = root.create_file(b"tool", 0o600).unwrap();
        file.write_all(b"#!/bin/sh\n").unwrap();
        let attrs = Attrs {
            mode: 0o100755,
            owner: None,
        };
        root.set_file_attrs(b"tool", &file, attrs).unwrap();
        let meta = std::fs::metadata(root.path().join("tool")).unwrap();
        assert_eq!(meta.mode(), 0o100755);
        let mut text = String::new();
        root.open_file(b"tool")
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "#!/bin/sh\n");
    }

    #[test]
    fn hardlinks_share_an_inode_and_symlinks_are_linked_as_themselves() {
        let (_sandbox, root, outside) = sandbox();
        root.create_file(b"a", 0o644).unwrap();
        let sub = root.create_dir(b"sub", 0o755).unwrap();
        sub.link_from(&root, b"a", b"b").unwrap();
        let a = std::fs::metadata(root.path().join("a")).unwrap();
        let b = std::fs::metadata(root.path().join("sub/b")).unwrap();
        assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));

        root.symlink(outside.as_os_str().as_bytes(), b"l").unwrap();
        sub.link_from(&root, b"l", b"l2").unwrap();
        let l2 = std::fs::symlink_metadata(root.path().join("sub/l2")).unwrap();
        assert!(l2.file_type().is_symlink());
    }

    #[test]
    fn refuses_the_owner_the_kernel_reads_as_unchanged() {
        let (_sandbox, root, _) = sandbox();
        let attrs = Attrs {
            mode: 0o755,
            owner: Some((u32::MAX, 0)),
        };
        let err = root.set_attrs(attrs).unwrap_err();
        assert!(
            matches!(err, DirError::InvalidOwner { uid: u32::MAX, .. }),
            "{err:?}"
        );
    }
}
