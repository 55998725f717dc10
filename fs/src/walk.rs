//! Walking a stored tree depth-first, for everything that needs every path of a state:
//! `verify`, the blit, `info --files`.
//!
//! The walk reads directory objects in place from the database's memory map, keeps one path
//! buffer, and uses an explicit stack, so neither deep trees nor damaged objects can exhaust
//! the thread's stack. It stops at [`MAX_RESOLVED_LEN`] bytes of path, deeper than any tree
//! [`crate::tree::build`] makes, which also ends a cycle in a damaged database.

use mossfs_db::{DbError, DirView, Node, NodeKind, Query, TreeHash};

use crate::tree::{MAX_RESOLVED_LEN, TreeError};

/// Calls `f` with every entry below `root` and its path relative to `/usr` (no leading
/// slash), depth-first and pre-order: a directory comes before its contents, and siblings
/// come in bytewise order. The root itself is not visited. The first error ends the walk.
pub fn walk<Q, E>(
    q: &Q,
    root: TreeHash,
    mut f: impl FnMut(&[u8], &Node) -> Result<(), E>,
) -> Result<(), E>
where
    Q: Query + ?Sized,
    E: From<TreeError>,
{
    walk_below(q, root, &mut Vec::new(), &mut f)
}

struct Frame<'q> {
    view: DirView<'q>,
    hash: TreeHash,
    next: usize,
    /// Length of the directory's own path in the buffer.
    len: usize,
}

/// Walks below the directory object `dir`, whose path is in `path`; `path` is restored
/// before returning.
pub(crate) fn walk_below<Q, E>(
    q: &Q,
    dir: TreeHash,
    path: &mut Vec<u8>,
    f: &mut impl FnMut(&[u8], &Node) -> Result<(), E>,
) -> Result<(), E>
where
    Q: Query + ?Sized,
    E: From<TreeError>,
{
    let base = path.len();
    let mut stack = vec![Frame {
        view: read(q, dir, path)?,
        hash: dir,
        next: 0,
        len: base,
    }];
    while let Some(frame) = stack.last_mut() {
        if frame.next == frame.view.len() {
            stack.pop();
            continue;
        }
        let index = frame.next;
        frame.next += 1;
        path.truncate(frame.len);
        let entry = frame
            .view
            .entry(index)
            .ok_or_else(|| damaged(frame.hash, path))?;
        enter(path, &entry.name)?;
        f(path, &entry.node)?;
        if let NodeKind::Directory(child) = entry.node.kind {
            stack.push(Frame {
                view: read(q, child, path)?,
                hash: child,
                next: 0,
                len: path.len(),
            });
        }
    }
    path.truncate(base);
    Ok(())
}

/// Appends a name to the path, refusing depths no built tree has.
pub(crate) fn enter(path: &mut Vec<u8>, name: &[u8]) -> Result<(), TreeError> {
    if path.len() + 1 + name.len() > MAX_RESOLVED_LEN {
        return Err(TreeError::TooDeep { path: path.clone() });
    }
    if !path.is_empty() {
        path.push(b'/');
    }
    path.extend_from_slice(name);
    Ok(())
}

/// Reads the object of the directory at `path`.
pub(crate) fn read<'q, Q: Query + ?Sized>(
    q: &'q Q,
    hash: TreeHash,
    path: &[u8],
) -> Result<DirView<'q>, TreeError> {
    q.tree(hash).map_err(|source| TreeError::Read {
        path: path.to_vec(),
        source,
    })
}

/// The error for an entry that does not decode.
pub(crate) fn damaged(hash: TreeHash, path: &[u8]) -> TreeError {
    TreeError::Read {
        path: path.to_vec(),
        source: DbError::CorruptTree { hash },
    }
}
