//! Changing a stored tree in place of a rebuild: what transaction triggers wrote becomes
//! part of the state's tree (DESIGN.md §10).
//!
//! Only the directories on the path to a change get new objects; every other object is
//! shared with the tree the edit started from, as between any two states.

use std::collections::BTreeMap;

use mossfs_db::{DirEntry, Node, NodeKind, Query, TreeHash, WriteTxn, tree};

use super::{TreeError, implied_dir};

/// One change, at a path relative to `/usr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Nothing is at this path any more.
    Remove,
    /// A non-directory entry, replacing whatever was there.
    Put(Node),
    /// A directory with this mode and owner; its old contents stay unless `opaque`.
    Directory {
        /// Full `st_mode`.
        mode: u32,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
        /// Whether the old contents are dropped.
        opaque: bool,
    },
}

#[derive(Default)]
struct Group<'a> {
    own: Option<&'a Edit>,
    below: Vec<(&'a [u8], &'a Edit)>,
}

/// Applies `edits` (paths relative to `/usr`, parents before children) to the tree at
/// `root` and stores the result. Returns the new root and its number of entries.
pub fn edit(
    txn: &mut WriteTxn<'_>,
    root: TreeHash,
    edits: &[(Vec<u8>, Edit)],
) -> Result<(TreeHash, u64), TreeError> {
    let list: Vec<(&[u8], &Edit)> = edits.iter().map(|(p, e)| (p.as_slice(), e)).collect();
    let root = edit_dir(txn, Some(root), &list, &mut Vec::new())?;
    let entries = count(&*txn, root)?;
    Ok((root, entries))
}

fn edit_dir(
    txn: &mut WriteTxn<'_>,
    hash: Option<TreeHash>,
    edits: &[(&[u8], &Edit)],
    at: &mut Vec<u8>,
) -> Result<TreeHash, TreeError> {
    let mut entries: BTreeMap<Vec<u8>, Node> = match hash {
        Some(hash) => read(&*txn, hash, at)?
            .into_iter()
            .map(|e| (e.name, e.node))
            .collect(),
        None => BTreeMap::new(),
    };
    let mut groups: BTreeMap<&[u8], Group<'_>> = BTreeMap::new();
    for &(path, edit) in edits {
        match path.iter().position(|&b| b == b'/') {
            None => groups.entry(path).or_default().own = Some(edit),
            Some(slash) => groups
                .entry(&path[..slash])
                .or_default()
                .below
                .push((&path[slash + 1..], edit)),
        }
    }
    for (name, group) in groups {
        let old = entries.get(name).cloned();
        let len = at.len();
        if !at.is_empty() {
            at.push(b'/');
        }
        at.extend_from_slice(name);
        let new = match group.own {
            Some(Edit::Remove) => None,
            Some(Edit::Put(node)) => Some(node.clone()),
            Some(Edit::Directory {
                mode,
                uid,
                gid,
                opaque,
            }) => {
                let keep = match (&old, opaque) {
                    (
                        Some(Node {
                            kind: NodeKind::Directory(h),
                            ..
                        }),
                        false,
                    ) => Some(*h),
                    _ => None,
                };
                let child = edit_dir(txn, keep, &group.below, at)?;
                Some(Node {
                    mode: *mode,
                    uid: *uid,
                    gid: *gid,
                    owner: old.as_ref().and_then(|n| n.owner),
                    kind: NodeKind::Directory(child),
                })
            }
            None => {
                let (keep, node) = match old {
                    Some(node) => match node.kind {
                        NodeKind::Directory(h) => (Some(h), Some(node)),
                        _ => (None, None),
                    },
                    None => (None, None),
                };
                let child = edit_dir(txn, keep, &group.below, at)?;
                let mut node = node.unwrap_or_else(|| implied_dir(child));
                node.kind = NodeKind::Directory(child);
                Some(node)
            }
        };
        at.truncate(len);
        match new {
            Some(node) => entries.insert(name.to_vec(), node),
            None => entries.remove(name),
        };
    }
    let list: Vec<DirEntry> = entries
        .into_iter()
        .map(|(name, node)| DirEntry { name, node })
        .collect();
    txn.put_tree(&tree::encode(&list))
        .map_err(|source| TreeError::Store {
            path: at.clone(),
            source,
        })
}

fn read(q: &impl Query, hash: TreeHash, at: &[u8]) -> Result<Vec<DirEntry>, TreeError> {
    let error = |source| TreeError::Read {
        path: at.to_vec(),
        source,
    };
    q.tree(hash).map_err(error)?.entries(hash).map_err(error)
}

fn count(q: &impl Query, root: TreeHash) -> Result<u64, TreeError> {
    let mut total = 0;
    let mut stack = vec![root];
    while let Some(hash) = stack.pop() {
        for entry in read(q, hash, b"")? {
            total += 1;
            if let NodeKind::Directory(child) = entry.node.kind {
                stack.push(child);
            }
        }
    }
    Ok(total)
}
