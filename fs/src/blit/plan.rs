//! The blit's first step: every directory object a tree reaches, read into memory.
//!
//! An LMDB read transaction must stay on one thread, so the parallel step cannot read the
//! database itself. Reading the objects is cheap next to creating the files (one B-tree
//! lookup per distinct directory, straight from the memory map), and doing it first means
//! a damaged tree is refused before anything exists on disk.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::{Path, PathBuf};

use mossfs_db::{DirEntry, NodeKind, Query, TreeHash};

use super::{BlitError, MAX_DEPTH, child_path, state_root};

/// The tree to blit, in memory.
pub(super) struct Plan {
    /// The root directory object.
    pub root: TreeHash,
    /// Every distinct directory object reachable from the root, with its entries.
    pub dirs: HashMap<TreeHash, Vec<DirEntry>>,
    /// Entries to create: every occurrence, so a directory object used twice counts twice.
    pub total: u64,
}

impl Plan {
    /// Reads the tree `root` from one snapshot, checking every name.
    pub fn read(q: &impl Query, root: TreeHash) -> Result<Plan, BlitError> {
        let mut plan = Plan {
            root,
            dirs: HashMap::new(),
            total: 0,
        };
        plan.add_subtree(q, root, state_root())?;
        Ok(plan)
    }

    /// Adds the directory object `hash`, found at `path`, and everything below it. An
    /// incremental commit reads only the subtrees it adds this way.
    pub fn add_subtree(
        &mut self,
        q: &impl Query,
        hash: TreeHash,
        path: PathBuf,
    ) -> Result<(), BlitError> {
        // Depth first, so that a loop hits the depth limit before it can fan out.
        let mut stack = vec![(hash, path, 0usize)];
        while let Some((hash, path, depth)) = stack.pop() {
            if depth > MAX_DEPTH {
                return Err(BlitError::TooDeep { path });
            }
            let entries = match self.dirs.entry(hash) {
                Entry::Occupied(known) => known.into_mut(),
                Entry::Vacant(slot) => slot.insert(read_dir(q, hash, &path)?),
            };
            self.total = self.total.saturating_add(entries.len() as u64);
            for entry in entries.iter() {
                if let NodeKind::Directory(child) = entry.node.kind {
                    stack.push((child, child_path(&path, &entry.name), depth + 1));
                }
            }
        }
        Ok(())
    }
}

pub(super) fn read_dir(
    q: &impl Query,
    hash: TreeHash,
    path: &Path,
) -> Result<Vec<DirEntry>, BlitError> {
    let tree_error = |source| BlitError::Tree {
        path: path.to_owned(),
        source,
    };
    let entries = q
        .tree(hash)
        .and_then(|view| view.entries(hash))
        .map_err(tree_error)?;
    for entry in &entries {
        if !is_file_name(&entry.name) {
            return Err(BlitError::BadName {
                path: path.to_owned(),
                name: String::from_utf8_lossy(&entry.name).into_owned(),
            });
        }
    }
    Ok(entries)
}

/// One path component: what `*at` calls can create without walking anywhere.
pub(super) fn is_file_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != b"."
        && name != b".."
        && !name.iter().any(|&b| b == b'/' || b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_single_components_are_file_names() {
        for good in [&b"a"[..], b"...", b".hidden", b"a b", &[b'x'; 255]] {
            assert!(is_file_name(good), "{good:?}");
        }
        for bad in [&b""[..], b".", b"..", b"a/b", b"/", b"a\0", &[b'x'; 256]] {
            assert!(!is_file_name(bad), "{bad:?}");
        }
    }
}
