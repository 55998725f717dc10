//! Removing a tree the blit made: cleaning staging after a failed or killed commit, and
//! pruning archived trees (DESIGN.md §4, §6).
//!
//! Such a tree may hold symlinks to anywhere, so removal works like the blit: relative to
//! directory fds opened with `O_NOFOLLOW`, one name at a time. A symlink is unlinked, never
//! followed, and nothing outside the tree is touched. Subdirectories are removed in
//! parallel, like the blit creates them.
//!
//! A removal never leaves its own file system, like `rm --one-file-system`: every directory
//! it opens must be on the same mount as the directory holding the tree (the same device
//! and, where the kernel says, the same mount id, so a bind mount of the same file system
//! counts too). A mount point found inside is [`RemoveError::MountPoint`], and nothing of
//! the mounted file system is touched. A tree archived before mossfs refused commits with
//! mounts below `/usr` can hold one (DESIGN.md §6.5).
//!
//! Read-only directories (packages ship `0555` ones) need no help when running as root,
//! which bypasses permission checks. Anyone else can only empty a directory they may
//! read, search and write, so each directory of the tree is given `0700` before its
//! entries are touched; the caller's directories above the tree are never changed.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, StatxFlags};
use rustix::io::Errno;

use super::MAX_DEPTH;

/// What a directory of the tree needs, for its owner, to be emptied.
const REMOVABLE_MODE: u32 = 0o700;

/// Why a tree could not be removed entirely. What was removed before stays removed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoveError {
    /// A syscall on an entry failed.
    #[error("cannot {op} {} while removing a tree", path.display())]
    Io {
        /// What was being done, e.g. "remove directory".
        op: &'static str,
        /// The entry.
        path: PathBuf,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// Another file system is mounted inside the tree; the removal stopped there.
    #[error(
        "{} is a mount point inside a tree being removed; nothing on that file system was touched; unmount it (umount {}) and run the command again",
        path.display(),
        path.display()
    )]
    MountPoint {
        /// The mount point.
        path: PathBuf,
    },
    /// Directories nested deeper than any tree mossfs makes; the removal stopped there.
    #[error(
        "{} is nested deeper than any tree mossfs makes inside a tree being removed; remove it by hand (rm -rf {}) and run the command again",
        path.display(),
        path.display()
    )]
    TooDeep {
        /// Where the limit was reached.
        path: PathBuf,
    },
}

fn error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> RemoveError + 'a {
    move |e| RemoveError::Io {
        op,
        path: path.to_owned(),
        source: e.into(),
    }
}

/// Which mount a directory is on: its device, and the kernel's mount id where it has one
/// (Linux 5.8), which also tells a bind mount of the same file system apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MountId {
    dev: (u32, u32),
    mnt_id: Option<u64>,
}

impl MountId {
    fn of(fd: BorrowedFd<'_>, path: &Path) -> Result<MountId, RemoveError> {
        let stat = rustix::fs::statx(
            fd,
            c"",
            AtFlags::EMPTY_PATH,
            StatxFlags::TYPE | StatxFlags::MNT_ID,
        )
        .map_err(error("stat", path))?;
        Ok(MountId {
            dev: (stat.stx_dev_major, stat.stx_dev_minor),
            mnt_id: (stat.stx_mask & StatxFlags::MNT_ID.bits() != 0).then_some(stat.stx_mnt_id),
        })
    }
}

/// Removes `path` and everything below it, without following any symlink inside it. A
/// missing `path` is not an error, so cleaning up is idempotent. If `path` itself is a
/// symlink, the link is removed, not what it points to. Directories leading to `path` are
/// the caller's and are opened normally.
pub fn remove_tree(path: &Path) -> Result<(), RemoveError> {
    let invalid = |why: &str| RemoveError::Io {
        op: "remove",
        path: path.to_owned(),
        source: io::Error::new(io::ErrorKind::InvalidInput, why.to_owned()),
    };
    let name = path
        .file_name()
        .ok_or_else(|| invalid("no final path component"))?;
    let name = CString::new(name.as_bytes()).map_err(|_| invalid("NUL in path"))?;
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let parent_fd = match rustix::fs::open(
        parent,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(error("open directory", parent)(e)),
    };
    let remover = Remover {
        is_root: rustix::process::geteuid().is_root(),
        mount: MountId::of(parent_fd.as_fd(), parent)?,
    };
    super::deep_stack(|| remover.remove_entry(parent_fd.as_fd(), &name, path, None, 0))
}

struct Remover {
    /// Root bypasses permissions, so never needs to change a mode.
    is_root: bool,
    /// The mount of the directory holding the tree: every directory removed must be on it.
    mount: MountId,
}

impl Remover {
    /// Removes `name` from `parent`, whatever it is. `is_dir` is what `getdents` said, if
    /// it said anything.
    fn remove_entry(
        &self,
        parent: BorrowedFd<'_>,
        name: &CStr,
        path: &Path,
        is_dir: Option<bool>,
        depth: usize,
    ) -> Result<(), RemoveError> {
        let is_dir = match is_dir {
            Some(is_dir) => is_dir,
            None => match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) => FileType::from_raw_mode(stat.st_mode) == FileType::Directory,
                Err(Errno::NOENT) => return Ok(()),
                Err(e) => return Err(error("stat", path)(e)),
            },
        };
        if is_dir {
            // The deepest tree a blit makes sits two levels below what is removed
            // (`.moss/root/<id>` holds `usr`, which holds the tree).
            if depth > MAX_DEPTH + 2 {
                return Err(RemoveError::TooDeep {
                    path: path.to_owned(),
                });
            }
            if let Some(dir) = self.open_dir(parent, name, path)? {
                self.remove_contents(dir, path, depth)?;
            }
            unlink(parent, name, AtFlags::REMOVEDIR, path)
        } else {
            unlink(parent, name, AtFlags::empty(), path)
        }
    }

    /// Opens a directory of the tree to empty it, never through a symlink, and makes sure
    /// its entries can be removed.
    fn open_dir(
        &self,
        parent: BorrowedFd<'_>,
        name: &CStr,
        path: &Path,
    ) -> Result<Option<OwnedFd>, RemoveError> {
        let open = || crate::dirfd::open_child_dir(parent, name);
        let dir = match open() {
            Ok(dir) => dir,
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::ACCESS) if !self.is_root => {
                // Unreadable (`0000`, say). An O_PATH fd needs no permission and pins this
                // very directory: its /proc/self/fd link reaches that inode even if the name
                // were swapped for a symlink, which `fchmodat` on the name cannot promise.
                let pinned = rustix::fs::openat(
                    parent,
                    name,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(error("open directory", path))?;
                // Another file system's root keeps its mode.
                self.same_mount(pinned.as_fd(), path)?;
                let magic = format!("/proc/self/fd/{}", pinned.as_raw_fd());
                rustix::fs::chmod(magic.as_str(), Mode::from_raw_mode(REMOVABLE_MODE))
                    .map_err(error("change mode of", path))?;
                open().map_err(error("open directory", path))?
            }
            Err(e) => return Err(error("open directory", path)(e)),
        };
        self.same_mount(dir.as_fd(), path)?;
        if !self.is_root {
            let stat = rustix::fs::fstat(&dir).map_err(error("stat", path))?;
            if stat.st_mode & REMOVABLE_MODE != REMOVABLE_MODE {
                rustix::fs::fchmod(&dir, Mode::from_raw_mode(REMOVABLE_MODE))
                    .map_err(error("change mode of", path))?;
            }
        }
        Ok(Some(dir))
    }

    /// Refuses a directory on another mount than the tree's: a mount point.
    fn same_mount(&self, dir: BorrowedFd<'_>, path: &Path) -> Result<(), RemoveError> {
        if MountId::of(dir, path)? == self.mount {
            Ok(())
        } else {
            Err(RemoveError::MountPoint {
                path: path.to_owned(),
            })
        }
    }

    /// Removes every entry of `dir`.
    fn remove_contents(&self, dir: OwnedFd, path: &Path, depth: usize) -> Result<(), RemoveError> {
        let mut reader = Dir::new(dir).map_err(error("read directory", path))?;
        let mut subdirs = Vec::new();
        let mut others = Vec::new();
        while let Some(entry) = reader.read() {
            let entry = entry.map_err(error("read directory", path))?;
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            match entry.file_type() {
                FileType::Directory => subdirs.push((name.to_owned(), Some(true))),
                FileType::Unknown => subdirs.push((name.to_owned(), None)),
                _ => others.push(name.to_owned()),
            }
        }
        let fd = reader.fd().map_err(error("read directory", path))?;
        for name in &others {
            unlink(fd, name, AtFlags::empty(), &child(path, name))?;
        }
        subdirs.par_iter().try_for_each(|(name, is_dir)| {
            self.remove_entry(fd, name, &child(path, name), *is_dir, depth + 1)
        })
    }
}

/// `unlinkat`; an entry already gone is fine.
fn unlink(
    parent: BorrowedFd<'_>,
    name: &CStr,
    flags: AtFlags,
    path: &Path,
) -> Result<(), RemoveError> {
    match rustix::fs::unlinkat(parent, name, flags) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        // Something is mounted on it (a file can be a bind mount's target too).
        Err(Errno::BUSY) => Err(RemoveError::MountPoint {
            path: path.to_owned(),
        }),
        Err(e) if flags.contains(AtFlags::REMOVEDIR) => Err(error("remove directory", path)(e)),
        Err(e) => Err(error("remove", path)(e)),
    }
}

fn child(path: &Path, name: &CStr) -> PathBuf {
    path.join(OsStr::from_bytes(name.to_bytes()))
}
