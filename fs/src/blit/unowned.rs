//! Paths on disk that a state's tree does not have (issue 7, defect 5).
//!
//! A blitted tree holds exactly its state's paths and `.stateID`. Anything else was put
//! there by hand: a file planted in `/usr`, or one left behind in an archived tree. `verify`
//! reports such paths, `verify --repair` drops them with the re-blit, and a commit removes
//! them from an archived tree before it builds on it, so that a state's contents never
//! depend on which archive was reused.
//!
//! The walk reads the disk and the tree side by side, one directory at a time: a
//! `getdents` per directory and one directory object from the database, no `stat` for a
//! path the tree has. It descends only into directories the tree has too, opened with
//! `O_NOFOLLOW`, and never into another file system: a mount point is reported, not
//! walked, and nothing below it can be removed by anyone who trusts this list. Inside a
//! directory no package owns, it looks further only for setuid and setgid files, since
//! those are what a person must hear about loudly.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use mossfs_db::{NodeKind, Query, TreeHash};
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};

use super::create::io_error;
use super::plan::read_dir;
use super::{BlitError, Op, child_path, state_root};
use crate::dirfd::open_child_dir;

/// Deeper than any real path (as in the blit's plan); reaching it means a loop.
const MAX_DEPTH: usize = 2048;

/// A path on disk that the tree does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unowned {
    /// Relative to the walked directory, like a tree path (`bin/evil`).
    pub path: Vec<u8>,
    /// `st_mode` as found, type bits included.
    pub mode: u32,
    /// Another file system is mounted here. It was not walked, and removing what is
    /// below it would reach into that file system: callers must leave it alone.
    pub mount_point: bool,
    /// Found inside a directory that is itself unowned (reported for its setuid or setgid
    /// bit); removing that directory removes this too.
    pub inside: bool,
}

impl Unowned {
    /// A regular file with the setuid or setgid bit: whoever can run it gains its owner's
    /// or group's rights.
    pub fn is_setid(&self) -> bool {
        self.mode & 0o170000 == 0o100000 && self.mode & 0o6000 != 0
    }
}

/// Lists what `dir` holds that the tree `root` does not, sorted by path, leaving out the
/// top-level `.stateID` that every blitted tree has. `dir` must be a blit of some tree
/// (a live `/usr` or an archived one); paths where disk and tree disagree about the type
/// are not listed here, since the path itself is owned (`verify` reports them as damage).
pub fn unowned(q: &impl Query, root: TreeHash, dir: &Path) -> Result<Vec<Unowned>, BlitError> {
    let top = rustix::fs::open(
        dir,
        OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| BlitError::Target {
        op: Op::OpenDir,
        path: dir.to_owned(),
        source: e.into(),
    })?;
    let dev = rustix::fs::fstat(&top)
        .map_err(|e| io_error(Op::Stat, &state_root(), None, e))?
        .st_dev;
    let mut walk = Walk {
        dev,
        found: Vec::new(),
    };
    walk.owned(q, top, root, &mut Vec::new(), 0)?;
    walk.found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(walk.found)
}

struct Walk {
    /// The file system of the walked tree.
    dev: u64,
    found: Vec<Unowned>,
}

impl Walk {
    /// A directory the tree has: every name the tree lacks is unowned.
    fn owned(
        &mut self,
        q: &impl Query,
        fd: OwnedFd,
        hash: TreeHash,
        path: &mut Vec<u8>,
        depth: usize,
    ) -> Result<(), BlitError> {
        let shown = shown_path(path);
        if depth > MAX_DEPTH {
            return Err(BlitError::TooDeep { path: shown });
        }
        // Entries of a directory object are sorted bytewise by name.
        let entries = read_dir(q, hash, &shown)?;
        let in_tree = |name: &[u8]| {
            entries
                .binary_search_by(|e| e.name.as_slice().cmp(name))
                .ok()
                .map(|i| &entries[i].node.kind)
        };
        let (dir, names) = list(fd, &shown)?;
        let fd = dir.fd().map_err(|e| io_error(Op::List, &shown, None, e))?;
        for (name, file_type) in names {
            if path.is_empty() && name == mossfs_format::path::RESERVED {
                continue;
            }
            let len = path.len();
            enter(path, &name);
            match in_tree(&name) {
                None => self.stray(fd, &name, path, false, depth)?,
                Some(NodeKind::Directory(child)) if file_type != FileType::Symlink => {
                    match open_child_dir(fd, name.as_slice()) {
                        Ok(child_fd) => {
                            if self.other_fs(&child_fd, path)? {
                                self.found.push(Unowned {
                                    path: path.clone(),
                                    mode: 0o040000,
                                    mount_point: true,
                                    inside: false,
                                });
                            } else {
                                self.owned(q, child_fd, *child, path, depth + 1)?;
                            }
                        }
                        // Not a directory on disk: damage, which `verify` reports.
                        Err(rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => {}
                        Err(e) => return Err(io_error(Op::OpenDir, &shown_path(path), None, e)),
                    }
                }
                Some(_) => {}
            }
            path.truncate(len);
        }
        Ok(())
    }

    /// A name the tree lacks, at `path`: listed, and if it is a directory, searched for
    /// setuid and setgid files.
    fn stray(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        path: &mut Vec<u8>,
        inside: bool,
        depth: usize,
    ) -> Result<(), BlitError> {
        if depth > MAX_DEPTH {
            return Err(BlitError::TooDeep {
                path: shown_path(path),
            });
        }
        let stat = match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            // Gone while we looked: nothing to report.
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e) => return Err(io_error(Op::Stat, &shown_path(path), None, e)),
        };
        let mode = stat.st_mode;
        let is_dir = mode & 0o170000 == 0o040000;
        let mount_point = is_dir && stat.st_dev != self.dev;
        let entry = Unowned {
            path: path.clone(),
            mode,
            mount_point,
            inside,
        };
        if !inside || entry.is_setid() || mount_point {
            self.found.push(entry);
        }
        if !is_dir || mount_point {
            return Ok(());
        }
        let fd = match open_child_dir(parent, name) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => return Ok(()),
            Err(e) => return Err(io_error(Op::OpenDir, &shown_path(path), None, e)),
        };
        let shown = shown_path(path);
        let (dir, names) = list(fd, &shown)?;
        let fd = dir.fd().map_err(|e| io_error(Op::List, &shown, None, e))?;
        for (child, _) in names {
            let len = path.len();
            enter(path, &child);
            self.stray(fd, &child, path, true, depth + 1)?;
            path.truncate(len);
        }
        Ok(())
    }

    fn other_fs(&self, fd: &OwnedFd, path: &[u8]) -> Result<bool, BlitError> {
        let stat =
            rustix::fs::fstat(fd).map_err(|e| io_error(Op::Stat, &shown_path(path), None, e))?;
        Ok(stat.st_dev != self.dev)
    }
}

/// The names in a directory, `.` and `..` left out, with their types as `getdents` gives
/// them; the stream keeps the directory open for the caller.
type Listing = (Dir, Vec<(Vec<u8>, FileType)>);

fn list(fd: OwnedFd, shown: &Path) -> Result<Listing, BlitError> {
    let fail = |e| io_error(Op::List, shown, None, e);
    let mut dir = Dir::new(fd).map_err(fail)?;
    let mut names = Vec::new();
    while let Some(entry) = dir.read() {
        let entry = entry.map_err(fail)?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push((name.to_vec(), entry.file_type()));
        }
    }
    Ok((dir, names))
}

fn enter(path: &mut Vec<u8>, name: &[u8]) {
    if !path.is_empty() {
        path.push(b'/');
    }
    path.extend_from_slice(name);
}

/// `usr/…`, for messages.
fn shown_path(path: &[u8]) -> PathBuf {
    if path.is_empty() {
        state_root()
    } else {
        child_path(&state_root(), path)
    }
}
