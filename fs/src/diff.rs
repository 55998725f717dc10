//! What changed between two trees, for `mossfs state diff` and incremental work
//! (DESIGN.md §5: fast diffs).
//!
//! Two trees are compared top-down. Directory objects are content-addressed, so two equal
//! hashes mean two equal subtrees, which are skipped without being read: the cost is
//! proportional to what changed, not to the tree.

use std::cmp::Ordering;

use mossfs_db::{DirView, Node, NodeKind, Query, TreeHash};

use crate::tree::TreeError;
use crate::walk::{damaged, enter, read, walk_below};

/// How a path changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// Only in the new tree.
    Added,
    /// Only in the old tree.
    Removed,
    /// In both, with a different kind, content, metadata or owner.
    Changed,
}

/// One changed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Relative to `/usr`, without a leading slash.
    pub path: Vec<u8>,
    /// How it changed.
    pub kind: ChangeKind,
    /// The entry before, unless added.
    pub old: Option<Node>,
    /// The entry after, unless removed.
    pub new: Option<Node>,
}

/// Lists every path that differs between the trees `old` and `new`.
///
/// An added or removed directory is listed with everything below it. A directory whose
/// contents changed but whose own mode, uid, gid and owner did not is not listed itself.
/// When a path changes between a directory and something else, the path is `Changed`, and
/// what was or is below it is `Removed` or `Added`. The list is in walk order (see
/// [`crate::walk::walk`]): a directory before its contents, siblings bytewise.
pub fn diff<Q: Query + ?Sized>(
    q: &Q,
    old: TreeHash,
    new: TreeHash,
) -> Result<Vec<Change>, TreeError> {
    let mut out = Vec::new();
    if old != new {
        diff_dirs(q, old, new, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}

/// Two directory objects being compared, and how far.
struct Pair<'q> {
    a: DirView<'q>,
    b: DirView<'q>,
    old: TreeHash,
    new: TreeHash,
    i: usize,
    j: usize,
    /// Length of the directory's path in the buffer.
    len: usize,
}

impl<'q> Pair<'q> {
    fn open<Q: Query + ?Sized>(
        q: &'q Q,
        old: TreeHash,
        new: TreeHash,
        path: &[u8],
    ) -> Result<Self, TreeError> {
        Ok(Pair {
            a: read(q, old, path)?,
            b: read(q, new, path)?,
            old,
            new,
            i: 0,
            j: 0,
            len: path.len(),
        })
    }
}

/// Merges two sorted directories, descending into changed subdirectories with an explicit
/// stack, so that no tree, however deep, can exhaust the thread's stack.
fn diff_dirs<Q: Query + ?Sized>(
    q: &Q,
    old: TreeHash,
    new: TreeHash,
    path: &mut Vec<u8>,
    out: &mut Vec<Change>,
) -> Result<(), TreeError> {
    let mut stack = vec![Pair::open(q, old, new, path)?];
    while let Some(top) = stack.last_mut() {
        let (more_a, more_b) = (top.i < top.a.len(), top.j < top.b.len());
        if !more_a && !more_b {
            stack.pop();
            continue;
        }
        path.truncate(top.len);
        let order = match (more_a, more_b) {
            (true, true) => {
                name(&top.a, top.old, top.i, path)?.cmp(name(&top.b, top.new, top.j, path)?)
            }
            (true, false) => Ordering::Less,
            _ => Ordering::Greater,
        };
        let old_entry = if order.is_le() {
            top.i += 1;
            Some(
                top.a
                    .entry(top.i - 1)
                    .ok_or_else(|| damaged(top.old, path))?,
            )
        } else {
            None
        };
        let new_entry = if order.is_ge() {
            top.j += 1;
            Some(
                top.b
                    .entry(top.j - 1)
                    .ok_or_else(|| damaged(top.new, path))?,
            )
        } else {
            None
        };
        match (old_entry, new_entry) {
            (Some(o), Some(n)) => {
                enter(path, &o.name)?;
                if let Some((a, b)) = changed(q, o.node, n.node, path, out)? {
                    stack.push(Pair::open(q, a, b, path)?);
                }
            }
            (Some(o), None) => {
                enter(path, &o.name)?;
                listed(q, ChangeKind::Removed, o.node, path, out)?;
            }
            (None, Some(n)) => {
                enter(path, &n.name)?;
                listed(q, ChangeKind::Added, n.node, path, out)?;
            }
            (None, None) => unreachable!("one side always advances"),
        }
    }
    Ok(())
}

fn name<'v>(
    view: &DirView<'v>,
    hash: TreeHash,
    index: usize,
    path: &[u8],
) -> Result<&'v [u8], TreeError> {
    view.name(index).ok_or_else(|| damaged(hash, path))
}

/// Compares one path present in both trees; returns the two directory objects to
/// compare next when the path is a directory on both sides with different contents.
fn changed<Q: Query + ?Sized>(
    q: &Q,
    old: Node,
    new: Node,
    path: &mut Vec<u8>,
    out: &mut Vec<Change>,
) -> Result<Option<(TreeHash, TreeHash)>, TreeError> {
    if old == new {
        return Ok(None);
    }
    match (&old.kind, &new.kind) {
        (NodeKind::Directory(a), NodeKind::Directory(b)) => {
            let (a, b) = (*a, *b);
            let same_meta = old.mode == new.mode
                && old.uid == new.uid
                && old.gid == new.gid
                && old.owner == new.owner;
            if !same_meta {
                out.push(Change {
                    path: path.clone(),
                    kind: ChangeKind::Changed,
                    old: Some(old),
                    new: Some(new),
                });
            }
            Ok((a != b).then_some((a, b)))
        }
        (old_kind, new_kind) => {
            let below_old = dir_hash(old_kind);
            let below_new = dir_hash(new_kind);
            out.push(Change {
                path: path.clone(),
                kind: ChangeKind::Changed,
                old: Some(old),
                new: Some(new),
            });
            if let Some(hash) = below_old {
                below(q, ChangeKind::Removed, hash, path, out)?;
            }
            if let Some(hash) = below_new {
                below(q, ChangeKind::Added, hash, path, out)?;
            }
            Ok(None)
        }
    }
}

fn dir_hash(kind: &NodeKind) -> Option<TreeHash> {
    match kind {
        NodeKind::Directory(hash) => Some(*hash),
        _ => None,
    }
}

/// Lists a path present on one side only, and everything below it.
fn listed<Q: Query + ?Sized>(
    q: &Q,
    kind: ChangeKind,
    node: Node,
    path: &mut Vec<u8>,
    out: &mut Vec<Change>,
) -> Result<(), TreeError> {
    let dir = dir_hash(&node.kind);
    out.push(one_sided(kind, path, node));
    match dir {
        Some(hash) => below(q, kind, hash, path, out),
        None => Ok(()),
    }
}

fn below<Q: Query + ?Sized>(
    q: &Q,
    kind: ChangeKind,
    dir: TreeHash,
    path: &mut Vec<u8>,
    out: &mut Vec<Change>,
) -> Result<(), TreeError> {
    walk_below(q, dir, path, &mut |p: &[u8], node: &Node| {
        out.push(one_sided(kind, p, node.clone()));
        Ok::<_, TreeError>(())
    })
}

fn one_sided(kind: ChangeKind, path: &[u8], node: Node) -> Change {
    let (old, new) = match kind {
        ChangeKind::Removed => (Some(node), None),
        _ => (None, Some(node)),
    };
    Change {
        path: path.to_vec(),
        kind,
        old,
        new,
    }
}
