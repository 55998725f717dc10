//! Checking a blitted tree on disk against its state: the live `/usr` for `verify`, and
//! archived trees before a commit reuses them (issue 7, defects 5 and 6).
//!
//! Every path of the state is compared with what is on disk: type, mode, owner, link text,
//! size, and for a regular file that is not a hardlink of its store asset, its bytes. Paths
//! the state does not have are listed apart ([`mossfs_fs::blit::unowned`]).
//!
//! An archived tree is trusted only after this check. A commit that reuses a state's own
//! archive checks it whole, and one that builds on another state's archive removes what no
//! package owns first, so a state's contents never depend on which archive was reused:
//! [`prepare_archive`] decides both.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use mossfs_db::{Node, NodeKind, Query, StateHead, TreeHash};
use mossfs_format::{AssetHash, AssetHasher};
use mossfs_fs::blit::{self, Unowned};
use mossfs_fs::sysroot;

use super::error::{EngineError, Result};
use super::root::Root;

/// What is wrong with one path of a state on disk.
#[derive(Debug)]
pub enum Problem {
    /// The path is not there.
    Missing(io::Error),
    /// Another type of file is there.
    Type {
        /// `st_mode` found.
        found: u32,
        /// What the state has.
        expected: &'static str,
    },
    /// Other permission bits.
    Mode {
        /// Found.
        found: u32,
        /// In the state.
        expected: u32,
    },
    /// Another owner (checked only when running as root, who can set it).
    Owner {
        /// uid and gid found.
        found: (u32, u32),
        /// uid and gid in the state.
        expected: (u32, u32),
    },
    /// A symlink to somewhere else.
    Link {
        /// Link text found.
        found: Vec<u8>,
        /// Link text in the state.
        expected: Vec<u8>,
    },
    /// A regular file of another size.
    Size {
        /// Bytes found.
        found: u64,
        /// Bytes in the state.
        expected: u64,
    },
    /// A regular file with other bytes.
    Content {
        /// What its bytes hash to.
        found: AssetHash,
        /// The asset the state names.
        expected: AssetHash,
    },
    /// The path could not be read to check it.
    Unreadable(io::Error),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Missing(e) => write!(f, "is missing ({e})"),
            Problem::Type { found, expected } => {
                write!(
                    f,
                    "is a {}, but its package ships a {expected}",
                    type_name(*found)
                )
            }
            Problem::Mode { found, expected } => {
                write!(
                    f,
                    "has mode {found:o}, but its package ships mode {expected:o}"
                )
            }
            Problem::Owner { found, expected } => write!(
                f,
                "is owned by {}:{}, but its package ships it owned by {}:{}",
                found.0, found.1, expected.0, expected.1
            ),
            Problem::Link { found, expected } => write!(
                f,
                "points to {}, but its package ships a link to {}",
                String::from_utf8_lossy(found),
                String::from_utf8_lossy(expected)
            ),
            Problem::Size { found, expected } => write!(
                f,
                "holds {found} bytes, but its package ships {expected} bytes"
            ),
            Problem::Content { found, expected } => write!(
                f,
                "holds other bytes than its package ships (they hash to {found}, not {expected})"
            ),
            Problem::Unreadable(e) => write!(f, "cannot be read to check it ({e})"),
        }
    }
}

/// A damaged path.
#[derive(Debug)]
pub struct Damage {
    /// Relative to `/usr`.
    pub path: Vec<u8>,
    /// What is wrong.
    pub problem: Problem,
}

/// What one tree on disk looks like next to its state.
#[derive(Debug, Default)]
pub struct Audit {
    /// Paths of the state that were checked.
    pub checked: u64,
    /// Paths of the state that differ on disk.
    pub damaged: Vec<Damage>,
    /// Paths on disk that the state does not have, mount points included.
    pub unowned: Vec<Unowned>,
}

impl Audit {
    /// Nothing damaged and nothing unowned.
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty() && self.unowned.is_empty()
    }
}

/// Checks the tree in `dir` (a `usr`) against the state tree `tree`.
pub fn audit(root: &Root, q: &impl Query, tree: TreeHash, dir: &Path) -> Result<Audit> {
    let mut audit = Audit {
        unowned: blit::unowned(q, tree, dir)?,
        ..Audit::default()
    };
    let check_owner = rustix::process::geteuid().is_root();
    mossfs_fs::walk::walk(q, tree, |path, node| {
        audit.checked += 1;
        if let Some(problem) = check_path(root, dir, path, node, check_owner) {
            audit.damaged.push(Damage {
                path: path.to_vec(),
                problem,
            });
        }
        Ok::<(), EngineError>(())
    })?;
    Ok(audit)
}

/// What [`prepare_archive`] did with an archived tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFate {
    /// There is no intact archive of the state (none, or its `.stateID` names another).
    Absent,
    /// Fit to reuse, after removing this many paths that no package owns.
    Reusable {
        /// Unowned paths removed.
        removed: usize,
    },
    /// Damaged, and removed: a commit of the state blits it afresh.
    Dropped {
        /// Damaged paths found.
        damaged: usize,
    },
    /// Another file system is mounted inside it: left alone, and not reused, since
    /// nothing may be removed across file systems.
    Mounted,
}

impl ArchiveFate {
    /// Whether a commit may build on the archive.
    pub fn reusable(self) -> bool {
        matches!(self, ArchiveFate::Reusable { .. })
    }
}

/// Makes the archived tree of `state` fit to be reused by a commit, or says why not.
///
/// What no package owns is removed from it in place: that only brings the archive closer
/// to its state, so a crash halfway leaves nothing wrong. Without `whole`, a tree sealed
/// by the commit that blitted it ([`mossfs_db::Query::tree_seal`]) is listed only in the
/// directories changed since the seal, and otherwise costs one `stat` per directory: a
/// name can only appear in a directory by changing it, which moves its ctime past the
/// seal ([`mossfs_fs::blit::unowned_since`]). This holds wherever the tree was meanwhile:
/// live as `/usr`, where anyone with root may have written into it, or archived. With `whole`, every path is
/// checked as well, and an archive with any damage is removed, so the commit blits
/// instead: `state activate` and `verify --repair` do that, since a repaired asset leaves
/// its old, damaged inode in every archive that linked it.
pub fn prepare_archive(
    root: &Root,
    q: &impl Query,
    state: StateHead,
    whole: bool,
) -> Result<ArchiveFate> {
    let usr = root.archive(state.id).join("usr");
    if sysroot::read_state_id(&usr) != Some(state.id.0) {
        return Ok(ArchiveFate::Absent);
    }
    // Without `whole`, only paths no package owns matter, and a tree sealed by the commit
    // that blitted it needs listing only where it changed since (issue 13 §2).
    let unowned = match q.tree_seal(state.id)? {
        Some(nanos) if !whole => {
            blit::unowned_since(q, state.root, &usr, blit::Seal(nanos), root.base.helpers())?
        }
        _ => blit::unowned(q, state.root, &usr)?,
    };
    if unowned.iter().any(|u| u.mount_point) {
        return Ok(ArchiveFate::Mounted);
    }
    if whole {
        let damaged = audit(root, q, state.root, &usr)?.damaged.len();
        if damaged > 0 {
            blit::remove_tree(&root.archive(state.id))?;
            return Ok(ArchiveFate::Dropped { damaged });
        }
    }
    let removed = remove_unowned(&usr, &unowned)?;
    Ok(ArchiveFate::Reusable { removed })
}

/// Removes the listed unowned paths below `usr`, each with what is below it, except
/// mount points; returns how many were removed.
fn remove_unowned(usr: &Path, unowned: &[Unowned]) -> Result<usize> {
    let mut removed = 0;
    for stray in unowned.iter().filter(|u| !u.inside && !u.mount_point) {
        blit::remove_tree(&usr.join(OsStr::from_bytes(&stray.path)))?;
        removed += 1;
    }
    Ok(removed)
}

/// Compares one path on disk with its tree entry; `None` when it matches.
fn check_path(
    root: &Root,
    usr: &Path,
    path: &[u8],
    node: &Node,
    check_owner: bool,
) -> Option<Problem> {
    let full = usr.join(OsStr::from_bytes(path));
    let meta = match std::fs::symlink_metadata(&full) {
        Ok(m) => m,
        Err(e) => return Some(Problem::Missing(e)),
    };
    if meta.mode() & 0o170000 != node.mode & 0o170000 {
        return Some(Problem::Type {
            found: meta.mode(),
            expected: node.kind.name(),
        });
    }
    let is_symlink = matches!(node.kind, NodeKind::Symlink(_));
    if !is_symlink && meta.mode() & 0o7777 != node.mode & 0o7777 {
        return Some(Problem::Mode {
            found: meta.mode() & 0o7777,
            expected: node.mode & 0o7777,
        });
    }
    if check_owner && (meta.uid(), meta.gid()) != (node.uid, node.gid) {
        return Some(Problem::Owner {
            found: (meta.uid(), meta.gid()),
            expected: (node.uid, node.gid),
        });
    }
    match &node.kind {
        NodeKind::Symlink(text) => match std::fs::read_link(&full) {
            Ok(found) if found.as_os_str().as_bytes() == text.as_slice() => None,
            Ok(found) => Some(Problem::Link {
                found: found.as_os_str().as_bytes().to_vec(),
                expected: text.clone(),
            }),
            Err(e) => Some(Problem::Unreadable(e)),
        },
        NodeKind::Regular { asset, size } => {
            if meta.len() != *size {
                return Some(Problem::Size {
                    found: meta.len(),
                    expected: *size,
                });
            }
            // A hardlink of the asset is right by construction (the asset is verified
            // on its own); anything else is hashed.
            let store_ino = std::fs::metadata(root.store.asset_path(*asset))
                .map(|m| (m.dev(), m.ino()))
                .ok();
            if store_ino == Some((meta.dev(), meta.ino())) {
                return None;
            }
            match hash_file(&full) {
                Ok(found) if found == *asset => None,
                Ok(found) => Some(Problem::Content {
                    found,
                    expected: *asset,
                }),
                Err(e) => Some(Problem::Unreadable(e)),
            }
        }
        _ => None,
    }
}

fn hash_file(path: &Path) -> io::Result<AssetHash> {
    AssetHasher::of_reader(std::fs::File::open(path)?, 256 * 1024).map(|(hash, _)| hash)
}

/// What a file type is called, from `st_mode`.
pub fn type_name(mode: u32) -> &'static str {
    match mode & 0o170000 {
        0o100000 => "regular file",
        0o040000 => "directory",
        0o120000 => "symlink",
        0o020000 => "char device",
        0o060000 => "block device",
        0o010000 => "fifo",
        0o140000 => "socket",
        _ => "file of unknown type",
    }
}

/// How verify names an unowned path, loudly for a setuid or setgid file.
pub fn describe_unowned(stray: &Unowned) -> String {
    if stray.mount_point {
        return "another file system is mounted here; it was not checked".to_owned();
    }
    let kind = type_name(stray.mode);
    if stray.is_setid() {
        let bits = match stray.mode & 0o6000 {
            0o6000 => "setuid and setgid",
            0o4000 => "setuid",
            _ => "setgid",
        };
        let whose = if stray.mode & 0o4000 != 0 {
            "owner's"
        } else {
            "group's"
        };
        return format!(
            "WARNING: no package owns this {bits} {kind} (mode {:o}): whoever may run it \
             gains its {whose} rights",
            stray.mode & 0o7777
        );
    }
    format!("no package owns this {kind}")
}
