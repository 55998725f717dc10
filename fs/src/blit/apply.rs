//! The incremental commit: turning a blitted tree of one state into another's, in place,
//! touching only the paths that differ.
//!
//! A commit that blitted the whole tree would cost O(tree) for a one-package change. The
//! engine instead takes the archived tree of an earlier state (moved into staging first, so
//! a crash leaves only staging debris), and this module applies the difference between the
//! two trees, found top-down by [`crate::diff::diff`] in O(change). Added directories are
//! filled with the blit's own code, so both paths create entries identically.
//!
//! Regular files are never changed in place: their inode is a store asset shared with
//! other trees, so a file whose content or metadata changed is unlinked and linked again
//! from the store file that carries the right mode and owner. Directories and symlinks
//! belong to this tree alone and have their metadata changed directly. Directory modes are
//! applied last, deepest first, as in the full blit.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use mossfs_db::{DirEntry, Node, NodeKind, Query, TreeHash};
use mossfs_store::Store;
use rustix::fs::{AtFlags, Gid, Mode, OFlags, Uid};

use super::create::{Blitter, io_error, open_dir};
use super::plan::Plan;
use super::{BlitError, BlitOptions, BlitStats, Op, child_path, remove_tree, state_root};

/// Changes the tree in `target`, which must be a blit of `old`, into a blit of `new`.
/// Returns the entries created, and in `entries` the number of paths that changed.
pub fn apply(
    q: &impl Query,
    old: TreeHash,
    new: TreeHash,
    store: &Store,
    target: &Path,
    options: &BlitOptions,
) -> Result<BlitStats, BlitError> {
    let changes = crate::diff::diff(q, old, new).map_err(|source| BlitError::Diff { source })?;
    // Every subtree that will be created whole is read up front, as the full blit does.
    let mut plan = Plan {
        root: new,
        dirs: HashMap::new(),
        total: 0,
    };
    for change in &changes {
        let old_is_dir = change
            .old
            .as_ref()
            .is_some_and(|n| matches!(n.kind, NodeKind::Directory(_)));
        if let Some(NodeKind::Directory(hash)) = change.new.as_ref().map(|n| &n.kind)
            && !old_is_dir
        {
            plan.add_subtree(q, *hash, usr_path(&change.path))?;
        }
    }
    let blitter = Blitter::new(&plan, store, options);
    let root = rustix::fs::open(
        target,
        OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| BlitError::Target {
        op: Op::OpenDir,
        path: target.to_owned(),
        source: e.into(),
    })?;
    let mut dirs = DirCache { root, open: None };
    let mut stats = BlitStats::default();
    let mut skip: Option<Vec<u8>> = None;
    let mut dir_modes = Vec::new();
    for change in &changes {
        if let Some(prefix) = &skip {
            if change.path.starts_with(prefix) {
                continue;
            }
            skip = None;
        }
        let (parent, name) = match change.path.iter().rposition(|&b| b == b'/') {
            Some(cut) => (&change.path[..cut], &change.path[cut + 1..]),
            None => (&b""[..], &change.path[..]),
        };
        let parent_path = if parent.is_empty() {
            state_root()
        } else {
            usr_path(parent)
        };
        let old_is_dir = change
            .old
            .as_ref()
            .is_some_and(|n| matches!(n.kind, NodeKind::Directory(_)));
        let new_is_dir = change
            .new
            .as_ref()
            .is_some_and(|n| matches!(n.kind, NodeKind::Directory(_)));
        if let (Some(o), Some(n)) = (&change.old, &change.new)
            && same_on_disk(o, n)
        {
            // Only the owning package changed (an upgrade that kept this file as it was).
            continue;
        }
        if old_is_dir && new_is_dir {
            // Only the directory's own metadata changed; its contents are listed apart.
            if let Some(node) = &change.new {
                dir_modes.push((change.path.clone(), node.clone()));
            }
            continue;
        }
        let dir = dirs.get(parent, &parent_path)?;
        blitter.record(|w| w.dir(&parent_path));
        if change.old.is_some() {
            if old_is_dir {
                remove_tree(&target.join(OsStr::from_bytes(&change.path)))?;
            } else {
                rustix::fs::unlinkat(dir, name, AtFlags::empty())
                    .map_err(|e| io_error(Op::Unlink, &child_path(&parent_path, name), None, e))?;
            }
        }
        if let Some(node) = &change.new {
            let entry = DirEntry {
                name: name.to_vec(),
                node: node.clone(),
            };
            match node.kind {
                NodeKind::Directory(hash) => {
                    stats += super::deep_stack(|| blitter.subdir(dir, &entry, hash, &parent_path))?
                }
                _ => blitter.leaf(dir, &entry, &parent_path, &mut stats)?,
            }
        }
        if old_is_dir || new_is_dir {
            let mut prefix = change.path.clone();
            prefix.push(b'/');
            skip = Some(prefix);
        }
    }
    for (path, node) in dir_modes.iter().rev() {
        let (parent, name) = match path.iter().rposition(|&b| b == b'/') {
            Some(cut) => (&path[..cut], &path[cut + 1..]),
            None => (&b""[..], &path[..]),
        };
        let parent_path = if parent.is_empty() {
            state_root()
        } else {
            usr_path(parent)
        };
        let dir = dirs.get(parent, &parent_path)?;
        let path = usr_path(path);
        blitter.record(|w| w.dir(&path));
        let fd = open_dir(dir, name).map_err(|e| io_error(Op::OpenDir, &path, None, e))?;
        // The directory already exists with its old owner, so the blit's shortcut (skip the
        // chown when the creator already owns it) does not apply: owner first, then mode.
        if options.set_owner {
            rustix::fs::fchown(
                &fd,
                Some(Uid::from_raw(node.uid)),
                Some(Gid::from_raw(node.gid)),
            )
            .map_err(|e| io_error(Op::Chown, &path, None, e))?;
        }
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(node.mode & 0o7777))
            .map_err(|e| io_error(Op::Chmod, &path, None, e))?;
    }
    stats.entries = changes.len() as u64;
    Ok(stats)
}

/// Whether two entries look the same on disk: everything but the owning package, and for
/// directories everything but their contents (listed as changes of their own).
pub fn same_on_disk(old: &Node, new: &Node) -> bool {
    let kinds_match = match (&old.kind, &new.kind) {
        (NodeKind::Directory(_), NodeKind::Directory(_)) => true,
        (a, b) => a == b,
    };
    kinds_match && (old.mode, old.uid, old.gid) == (new.mode, new.uid, new.gid)
}

fn usr_path(path: &[u8]) -> PathBuf {
    child_path(&state_root(), path)
}

/// The directory fd of the last parent used: changes come in walk order, so consecutive
/// changes mostly share a parent. Every step is opened with `O_NOFOLLOW`.
struct DirCache {
    root: OwnedFd,
    open: Option<(Vec<u8>, OwnedFd)>,
}

impl DirCache {
    fn get(&mut self, parent: &[u8], parent_path: &Path) -> Result<&OwnedFd, BlitError> {
        if parent.is_empty() {
            return Ok(&self.root);
        }
        if self.open.as_ref().is_none_or(|(p, _)| p != parent) {
            let mut fd: Option<OwnedFd> = None;
            for component in parent.split(|&b| b == b'/') {
                let next = open_dir(fd.as_ref().unwrap_or(&self.root), component)
                    .map_err(|e| io_error(Op::OpenDir, parent_path, None, e))?;
                fd = Some(next);
            }
            let fd = fd.expect("a non-empty parent has a component");
            self.open = Some((parent.to_vec(), fd));
        }
        Ok(&self.open.as_ref().expect("just filled").1)
    }
}
