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
/// `root`, which has `entries` entries, and stores the result. Returns the new root and
/// its number of entries; only what an edit removes or replaces is counted again.
pub fn edit(
    txn: &mut WriteTxn<'_>,
    root: TreeHash,
    entries: u64,
    edits: &[(Vec<u8>, Edit)],
) -> Result<(TreeHash, u64), TreeError> {
    let list: Vec<(&[u8], &Edit)> = edits.iter().map(|(p, e)| (p.as_slice(), e)).collect();
    let (root, delta) = edit_dir(txn, Some(root), &list, &mut Vec::new())?;
    let entries = entries
        .checked_add_signed(delta)
        .ok_or(TreeError::TooDeep { path: Vec::new() })?;
    Ok((root, entries))
}

/// Returns the new directory object and how many entries below it were added (positive)
/// or removed (negative).
fn edit_dir(
    txn: &mut WriteTxn<'_>,
    hash: Option<TreeHash>,
    edits: &[(&[u8], &Edit)],
    at: &mut Vec<u8>,
) -> Result<(TreeHash, i64), TreeError> {
    let mut delta: i64 = 0;
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
            Some(Edit::Remove) => {
                delta -= size(&*txn, &old)?;
                None
            }
            Some(Edit::Put(node)) => {
                delta += 1 - size(&*txn, &old)?;
                Some(node.clone())
            }
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
                if keep.is_none() {
                    // Made anew: the old entry, and all below it, goes.
                    delta += 1 - size(&*txn, &old)?;
                }
                let (child, below) = edit_dir(txn, keep, &group.below, at)?;
                delta += below;
                Some(Node {
                    mode: *mode,
                    uid: *uid,
                    gid: *gid,
                    owner: old.as_ref().and_then(|n| n.owner),
                    kind: NodeKind::Directory(child),
                })
            }
            None => {
                let (keep, node) = match &old {
                    Some(node) => match node.kind {
                        NodeKind::Directory(h) => (Some(h), Some(node.clone())),
                        _ => (None, None),
                    },
                    None => (None, None),
                };
                if keep.is_none() {
                    // An implied directory for what lies below, in place of whatever was.
                    delta += 1 - size(&*txn, &old)?;
                }
                let (child, below) = edit_dir(txn, keep, &group.below, at)?;
                delta += below;
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
    let hash = txn
        .put_tree(&tree::encode(&list))
        .map_err(|source| TreeError::Store {
            path: at.clone(),
            source,
        })?;
    Ok((hash, delta))
}

/// How many entries `old` stands for: itself and everything below it.
fn size(q: &impl Query, old: &Option<Node>) -> Result<i64, TreeError> {
    Ok(match old {
        None => 0,
        Some(Node {
            kind: NodeKind::Directory(h),
            ..
        }) => 1 + count(q, *h)? as i64,
        Some(_) => 1,
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

#[cfg(test)]
mod tests {
    use mossfs_db::Db;
    use mossfs_format::AssetHash;

    use super::*;

    fn file(byte: u8) -> Node {
        Node {
            mode: 0o100644,
            uid: 0,
            gid: 0,
            owner: None,
            kind: NodeKind::Regular {
                asset: AssetHash(u128::from(byte)),
                size: 1,
            },
        }
    }

    fn dir(txn: &mut WriteTxn<'_>, entries: Vec<(&str, Node)>) -> Node {
        let mut list: Vec<DirEntry> = entries
            .into_iter()
            .map(|(name, node)| DirEntry {
                name: name.as_bytes().to_vec(),
                node,
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        let hash = txn.put_tree(&tree::encode(&list)).expect("stored");
        implied_dir(hash)
    }

    /// Every path of the tree, with what it is, in order.
    fn listing(q: &impl Query, root: TreeHash) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut stack = vec![(root, String::new())];
        while let Some((hash, at)) = stack.pop() {
            for entry in read(q, hash, b"").expect("readable") {
                let path = format!("{at}{}", String::from_utf8_lossy(&entry.name));
                let what = match entry.node.kind {
                    NodeKind::Directory(child) => {
                        stack.push((child, format!("{path}/")));
                        format!("dir {:o}", entry.node.mode)
                    }
                    NodeKind::Regular { asset, .. } => format!("file {}", asset.0),
                    NodeKind::Symlink(t) => format!("link {}", String::from_utf8_lossy(&t)),
                    _ => "other".into(),
                };
                out.push((path, what));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn edits_change_only_what_they_name_and_keep_the_count() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let db = Db::open(tmp.path()).expect("db");
        let mut txn = db.write().expect("txn");
        let gone = dir(&mut txn, vec![("a", file(1)), ("b", file(2))]);
        let hidden = dir(&mut txn, vec![("old", file(3))]);
        let lib = dir(
            &mut txn,
            vec![("libfoo.so", file(4)), ("gone", gone), ("hidden", hidden)],
        );
        let NodeKind::Directory(root) = dir(&mut txn, vec![("lib", lib), ("bin", file(5))]).kind
        else {
            unreachable!("dir makes directories")
        };
        // lib, libfoo.so, gone, gone/a, gone/b, hidden, hidden/old, bin
        let edits = vec![
            (b"bin".to_vec(), Edit::Remove),
            (b"lib/gone".to_vec(), Edit::Remove),
            (
                b"lib/hidden".to_vec(),
                Edit::Directory {
                    mode: 0o40700,
                    uid: 0,
                    gid: 0,
                    opaque: true,
                },
            ),
            (b"lib/hidden/new".to_vec(), Edit::Put(file(6))),
            (b"lib/libfoo.so".to_vec(), Edit::Put(file(7))),
            (b"share/made/x".to_vec(), Edit::Put(file(8))),
        ];
        let (edited, entries) = edit(&mut txn, root, 8, &edits).expect("edits");
        assert_eq!(entries, count(&txn, edited).expect("counted"));
        assert_eq!(
            listing(&txn, edited),
            [
                ("lib".to_owned(), "dir 40755".to_owned()),
                ("lib/hidden".into(), "dir 40700".into()),
                ("lib/hidden/new".into(), "file 6".into()),
                ("lib/libfoo.so".into(), "file 7".into()),
                ("share".into(), "dir 40755".into()),
                ("share/made".into(), "dir 40755".into()),
                ("share/made/x".into(), "file 8".into()),
            ]
        );
        // The tree it started from is untouched.
        assert_eq!(count(&txn, root).expect("counted"), 8);
    }
}
