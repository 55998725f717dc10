//! Finding and listing entries: the answers to `lookup`, `readdir`, `readlink` and the
//! xattr requests, from the inode table, the snapshot's directory objects and the
//! synthetic view. [`super::ops`] turns them into replies.
//!
//! `readdir` offsets are the entry's index in its listing plus 3 (after `.` and `..`), so
//! an offset the kernel hands back always resumes at the same entry: listings never change
//! while mounted. A lookup that finds nothing is answered with node id 0, which the kernel
//! caches as a negative entry for as long as a positive one.

use std::time::SystemTime;

use fuser::{Errno, FileAttr};
use mossfs_db::{DbError, NodeKind, Query};

use super::inode::{Inode, Kind};
use super::view::OWNER_XATTR;
use super::{Inner, ServeError};

/// Entries prepared per listing request: more than a reply of the largest size the kernel
/// asks for (32 KiB) holds, since each entry takes at least 32 bytes of it.
const LIST_BATCH: usize = 1024;

impl Inner {
    pub(crate) fn attr(&self, ino: u64, inode: &Inode) -> FileAttr {
        inode.attr(ino, self.time)
    }

    /// A lookup that found nothing, cached by the kernel for [`TTL`] (node id 0).
    pub(crate) fn negative(&self) -> FileAttr {
        Inode::synthetic(0, 0, 0).attr(0, SystemTime::UNIX_EPOCH)
    }

    pub(crate) fn tree_error(&self, ino: u64, source: DbError) -> Errno {
        self.log(ServeError::Tree {
            path: self.path_of(ino),
            source,
        });
        Errno::EIO
    }

    pub(crate) fn lookup(&self, parent: u64, name: &[u8]) -> Result<Option<(u64, Inode)>, Errno> {
        let dir = self.inodes.get(parent).ok_or(Errno::ENOENT)?;
        match dir.kind {
            Kind::Synthetic { dir } => {
                let synthetic = self.synthetic.dir(dir).ok_or(Errno::EIO)?;
                let Some((_, entry)) = synthetic.find(name) else {
                    return Ok(None);
                };
                Ok(self.inodes.get(entry.ino).map(|inode| (entry.ino, inode)))
            }
            Kind::Directory { .. } => {
                let tree = dir.kind.tree().expect("a directory has a tree");
                let found = self
                    .snapshots
                    .with(|txn| {
                        let view = txn.tree(tree)?;
                        let Some(slot) = view.position(name) else {
                            return Ok(None);
                        };
                        let first = self.inodes.children(parent, tree, &view)?;
                        Ok(Some(first + slot as u64))
                    })
                    .map_err(|source| self.tree_error(parent, source))?;
                Ok(found.and_then(|ino| Some((ino, self.inodes.get(ino)?))))
            }
            _ => Err(Errno::ENOTDIR),
        }
    }

    /// Lists directory `ino` from `offset`, calling `add(ino, next offset, name, inode)`
    /// until it answers that the reply is full.
    pub(crate) fn list(
        &self,
        ino: u64,
        offset: u64,
        mut add: impl FnMut(u64, u64, &[u8], &Inode) -> bool,
    ) -> Result<(), Errno> {
        self.request(&self.counters.readdirs);
        let dir = self.inodes.get(ino).ok_or(Errno::ENOENT)?;
        let parent = u64::from(dir.parent);
        let mut index = offset;
        while index < 2 {
            let (entry_ino, name): (u64, &[u8]) = if index == 0 {
                (ino, b".")
            } else {
                (parent, b"..")
            };
            let inode = self.inodes.get(entry_ino).ok_or(Errno::EIO)?;
            if add(entry_ino, index + 1, name, &inode) {
                return Ok(());
            }
            index += 1;
        }
        let start = usize::try_from(index - 2).map_err(|_| Errno::EINVAL)?;
        match dir.kind {
            Kind::Synthetic { dir } => {
                let synthetic = self.synthetic.dir(dir).ok_or(Errno::EIO)?;
                for (slot, entry) in synthetic.entries.iter().enumerate().skip(start) {
                    let inode = self.inodes.get(entry.ino).ok_or(Errno::EIO)?;
                    if add(entry.ino, slot as u64 + 3, &entry.name, &inode) {
                        break;
                    }
                }
                Ok(())
            }
            Kind::Directory { .. } => {
                let tree = dir.kind.tree().expect("a directory has a tree");
                self.snapshots
                    .with(|txn| {
                        let view = txn.tree(tree)?;
                        if start >= view.len() {
                            return Ok(());
                        }
                        let first = self.inodes.children(ino, tree, &view)?;
                        // More than one reply holds; copied in one lock, named in place.
                        let end = view.len().min(start + LIST_BATCH);
                        let inodes = self.inodes.range(first, start..end);
                        for (slot, inode) in (start..end).zip(&inodes) {
                            let name =
                                view.name(slot).ok_or(DbError::CorruptTree { hash: tree })?;
                            if add(first + slot as u64, slot as u64 + 3, name, inode) {
                                break;
                            }
                        }
                        Ok(())
                    })
                    .map_err(|source| self.tree_error(ino, source))
            }
            _ => Err(Errno::ENOTDIR),
        }
    }

    pub(crate) fn readlink(&self, ino: u64) -> Result<Vec<u8>, Errno> {
        let inode = self.inodes.get(ino).ok_or(Errno::ENOENT)?;
        if !matches!(inode.kind, Kind::Symlink { .. }) {
            return Err(Errno::EINVAL);
        }
        let parent = self.inodes.get(u64::from(inode.parent)).ok_or(Errno::EIO)?;
        let node = match parent.kind {
            Kind::Synthetic { dir } => self
                .synthetic
                .dir(dir)
                .and_then(|d| d.entries.get(inode.slot as usize))
                .and_then(|entry| entry.node.clone()),
            _ => {
                let tree = parent.kind.tree().ok_or(Errno::EIO)?;
                self.snapshots
                    .with(|txn| txn.tree(tree).map(|view| view.entry(inode.slot as usize)))
                    .map_err(|source| self.tree_error(u64::from(inode.parent), source))?
                    .map(|entry| entry.node)
            }
        };
        match node.map(|node| node.kind) {
            Some(NodeKind::Symlink(text)) => Ok(text),
            _ => Err(Errno::EIO),
        }
    }

    pub(crate) fn xattr(&self, ino: u64, name: &[u8]) -> Result<Vec<u8>, Errno> {
        let inode = self.inodes.get(ino).ok_or(Errno::ENOENT)?;
        match self.inodes.owner(&inode) {
            Some(owner) if name == OWNER_XATTR.as_bytes() => {
                Ok(self.labels.get(&self.snapshots, owner))
            }
            _ => Err(Errno::NO_XATTR),
        }
    }

    pub(crate) fn xattr_names(&self, ino: u64) -> Result<Vec<u8>, Errno> {
        let inode = self.inodes.get(ino).ok_or(Errno::ENOENT)?;
        Ok(match self.inodes.owner(&inode) {
            Some(_) => [OWNER_XATTR.as_bytes(), b"\0"].concat(),
            None => Vec::new(),
        })
    }
}
