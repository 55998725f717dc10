//! The inode table: the numbers the kernel knows, handed out lazily and never reused.
//!
//! A tree entry has no number of its own in the database, so the mount gives one to each
//! path the first time the kernel meets its directory (a `lookup` in it or a listing of
//! it). An entry is identified by its parent's number and its *slot*, its index in the
//! parent's listing (the sorted directory object, or a synthetic directory of the debug
//! view). The object is immutable, so `(parent, slot)` names one path for the life of the
//! mount, and the table needs no names at all: they stay in LMDB's memory map.
//!
//! **Numbers come in blocks, one per directory.** The first time a tree directory is
//! touched, all of its entries are numbered at once, consecutively, so entry `slot` of a
//! directory is `first + slot`. The table then keeps one map entry per directory, not per
//! path, and a listing or a lookup finds every child's number with one map probe and
//! plain arithmetic, instead of a hash probe (and, the first time, a write lock) per
//! entry. The price is that a lookup of one name numbers its siblings too; they cost 56
//! bytes each, and a listing, which is what `ls`, `find` and shells do first, numbers
//! them anyway.
//!
//! Memory: one [`Inode`] is 56 bytes, plus about 16 bytes per directory for its block, so
//! a full walk of 250,000 entries costs under 15 MiB. The table never shrinks: `forget` is
//! ignored, so a number stays valid however long the kernel keeps it, and memory is
//! bounded by the directories the mount has seen.

use std::collections::HashMap;
use std::time::SystemTime;

use fuser::{FileAttr, FileType, INodeNo};
use mossfs_db::{DbError, DirView, Node, NodeKind, TreeHash};
use mossfs_format::{AssetHash, PackageId};
use parking_lot::RwLock;

/// The number of the mount's root directory.
pub(crate) const ROOT_INO: u64 = 1;

/// Directories report this size, a block as a small ext4 directory shows; nothing reads it.
const DIR_SIZE: u64 = 4096;

/// `st_blksize`: the unit `cp` and `cat` size their buffers by.
const BLOCK_SIZE: u32 = 4096;

/// A 128-bit hash split in two, so that an [`Inode`] is aligned to 8 bytes, not 16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hash128([u64; 2]);

impl Hash128 {
    fn new(value: u128) -> Self {
        Hash128([(value >> 64) as u64, value as u64])
    }

    fn get(self) -> u128 {
        (u128::from(self.0[0]) << 64) | u128::from(self.0[1])
    }
}

/// What an inode is, in the fewest bytes that answer `getattr`, `open` and `readdir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A file and the asset holding its bytes.
    Regular {
        asset: Hash128,
        size: u64,
    },
    /// A symlink; its text is read again from the parent's listing by `readlink`.
    Symlink {
        len: u16,
    },
    /// A directory of the state's tree.
    Directory {
        tree: Hash128,
    },
    /// A directory of the debug view, by index into [`super::view::Synthetic`].
    Synthetic {
        dir: u32,
    },
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

impl Kind {
    /// The asset of a regular file.
    pub(crate) fn asset(&self) -> Option<(AssetHash, u64)> {
        match *self {
            Kind::Regular { asset, size } => Some((AssetHash(asset.get()), size)),
            _ => None,
        }
    }

    /// The directory object of a tree directory.
    pub(crate) fn tree(&self) -> Option<TreeHash> {
        match *self {
            Kind::Directory { tree } => Some(TreeHash(tree.get())),
            _ => None,
        }
    }

    fn file_type(&self) -> FileType {
        match self {
            Kind::Regular { .. } => FileType::RegularFile,
            Kind::Symlink { .. } => FileType::Symlink,
            Kind::Directory { .. } | Kind::Synthetic { .. } => FileType::Directory,
            Kind::CharDevice => FileType::CharDevice,
            Kind::BlockDevice => FileType::BlockDevice,
            Kind::Fifo => FileType::NamedPipe,
            Kind::Socket => FileType::Socket,
        }
    }
}

/// No package owns this entry (implied directories, the debug view).
const NO_OWNER: u32 = u32::MAX;

/// One numbered entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Inode {
    /// The directory it was found in; the root is its own parent.
    pub parent: u32,
    /// Its index in the parent's listing.
    pub slot: u32,
    /// Full `st_mode`.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    owner: u32,
    pub kind: Kind,
}

impl Inode {
    /// A directory of the debug view (or the mount's root): read-only, root's.
    pub(crate) fn synthetic(parent: u64, slot: usize, dir: usize) -> Inode {
        Inode {
            parent: narrow(parent),
            slot: narrow(slot as u64),
            mode: 0o040555,
            uid: 0,
            gid: 0,
            owner: NO_OWNER,
            kind: Kind::Synthetic {
                dir: narrow(dir as u64),
            },
        }
    }

    /// The attributes the kernel caches. Times are the state's creation time: a tree has
    /// no other, and a blit's times are those of the store's files, which differ per root.
    pub(crate) fn attr(&self, ino: u64, time: SystemTime) -> FileAttr {
        let size = match self.kind {
            Kind::Regular { size, .. } => size,
            Kind::Symlink { len } => u64::from(len),
            Kind::Directory { .. } | Kind::Synthetic { .. } => DIR_SIZE,
            _ => 0,
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: time,
            mtime: time,
            ctime: time,
            crtime: time,
            kind: self.kind.file_type(),
            // Linux symlinks are always rwxrwxrwx, whatever the layout said.
            perm: match self.kind {
                Kind::Symlink { .. } => 0o777,
                _ => (self.mode & 0o7777) as u16,
            },
            nlink: 1,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: BLOCK_SIZE,
            flags: 0,
        }
    }
}

/// Inode numbers are stored in 32 bits; four billion entries is beyond any state.
fn narrow(value: u64) -> u32 {
    u32::try_from(value).expect("fewer than 2^32 inodes and entries per directory")
}

fn kind_of(kind: &NodeKind) -> Kind {
    match kind {
        NodeKind::Regular { asset, size } => Kind::Regular {
            asset: Hash128::new(asset.0),
            size: *size,
        },
        // Link text is at most 4095 bytes on Linux; a longer one is reported as that long.
        NodeKind::Symlink(text) => Kind::Symlink {
            len: u16::try_from(text.len()).unwrap_or(u16::MAX),
        },
        NodeKind::Directory(tree) => Kind::Directory {
            tree: Hash128::new(tree.0),
        },
        NodeKind::CharDevice => Kind::CharDevice,
        NodeKind::BlockDevice => Kind::BlockDevice,
        NodeKind::Fifo => Kind::Fifo,
        NodeKind::Socket => Kind::Socket,
    }
}

#[derive(Default)]
struct Table {
    /// `inodes[ino - 1]`.
    inodes: Vec<Inode>,
    /// The number of entry 0 of each tree directory numbered so far.
    first_child: HashMap<u32, u32>,
    owners: Vec<PackageId>,
    owner_index: HashMap<PackageId, u32>,
}

impl Table {
    fn owner(&mut self, id: Option<PackageId>) -> u32 {
        let Some(id) = id else { return NO_OWNER };
        if let Some(&index) = self.owner_index.get(&id) {
            return index;
        }
        let index = narrow(self.owners.len() as u64);
        self.owners.push(id);
        self.owner_index.insert(id, index);
        index
    }

    fn push(&mut self, inode: Inode) -> u64 {
        self.inodes.push(inode);
        self.inodes.len() as u64
    }

    fn inode(&self, parent: u32, slot: u32, node: &Node, owner: u32) -> Inode {
        Inode {
            parent,
            slot,
            mode: node.mode,
            uid: node.uid,
            gid: node.gid,
            owner,
            kind: kind_of(&node.kind),
        }
    }
}

/// The table, shared by the serving threads.
#[derive(Default)]
pub(crate) struct Inodes {
    table: RwLock<Table>,
}

impl Inodes {
    /// Adds an entry whose number must be known up front (the root, the debug view).
    pub(crate) fn push(&self, inode: Inode) -> u64 {
        self.table.write().push(inode)
    }

    /// Adds a tree node as a fixed entry (`usr`, a conflict's contender).
    pub(crate) fn push_node(&self, parent: u64, slot: usize, node: &Node) -> u64 {
        let mut table = self.table.write();
        let owner = table.owner(node.owner);
        let inode = table.inode(narrow(parent), narrow(slot as u64), node, owner);
        table.push(inode)
    }

    /// The entry numbered `ino`.
    pub(crate) fn get(&self, ino: u64) -> Option<Inode> {
        let index = usize::try_from(ino.checked_sub(1)?).ok()?;
        self.table.read().inodes.get(index).copied()
    }

    /// Entries `slots` of a numbered directory (see [`Inodes::children`]), in one lock.
    pub(crate) fn range(&self, first: u64, slots: std::ops::Range<usize>) -> Vec<Inode> {
        let table = self.table.read();
        let start = (first as usize - 1).saturating_add(slots.start);
        let end = (first as usize - 1).saturating_add(slots.end);
        table
            .inodes
            .get(start..end)
            .map(<[Inode]>::to_vec)
            .unwrap_or_default()
    }

    /// The number of entry 0 of tree directory `dir` (listed by `view`, whose object is
    /// `tree`), numbering all of its entries on first sight. Entry `slot` is `first + slot`.
    pub(crate) fn children(
        &self,
        dir: u64,
        tree: TreeHash,
        view: &DirView<'_>,
    ) -> Result<u64, DbError> {
        let key = narrow(dir);
        if let Some(&first) = self.table.read().first_child.get(&key) {
            return Ok(u64::from(first));
        }
        // Decoded before taking the lock, so other threads keep serving meanwhile.
        let nodes = (0..view.len())
            .map(|slot| view.entry(slot).map(|entry| entry.node))
            .collect::<Option<Vec<Node>>>()
            .ok_or(DbError::CorruptTree { hash: tree })?;
        let mut table = self.table.write();
        // Another thread may have numbered it between the two locks.
        if let Some(&first) = table.first_child.get(&key) {
            return Ok(u64::from(first));
        }
        let first = narrow(table.inodes.len() as u64 + 1);
        table.inodes.reserve(nodes.len());
        for (slot, node) in nodes.iter().enumerate() {
            let owner = table.owner(node.owner);
            let inode = table.inode(key, narrow(slot as u64), node, owner);
            table.push(inode);
        }
        table.first_child.insert(key, first);
        Ok(u64::from(first))
    }

    /// The package that ships an entry.
    pub(crate) fn owner(&self, inode: &Inode) -> Option<PackageId> {
        if inode.owner == NO_OWNER {
            return None;
        }
        self.table.read().owners.get(inode.owner as usize).copied()
    }

    /// How many entries have a number so far.
    pub(crate) fn len(&self) -> usize {
        self.table.read().inodes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(owner: u8) -> Node {
        Node {
            mode: 0o100644,
            uid: 1,
            gid: 2,
            owner: Some(PackageId([owner; 32])),
            kind: NodeKind::Regular {
                asset: AssetHash(u128::MAX - 5),
                size: 7,
            },
        }
    }

    #[test]
    fn an_inode_stays_small() {
        assert!(std::mem::size_of::<Inode>() <= 56);
    }

    #[test]
    fn numbers_come_in_one_block_per_directory_and_are_stable() {
        use mossfs_db::DirEntry;
        use mossfs_db::tree::encode as encode_dir;
        let entries: Vec<DirEntry> = (1..=3u8)
            .map(|k| DirEntry {
                name: vec![b'a' + k],
                node: file(k),
            })
            .collect();
        let bytes = encode_dir(&entries);
        let tree = TreeHash(7);
        let view = DirView::new(tree, &bytes).unwrap();
        let inodes = Inodes::default();
        assert_eq!(inodes.push(Inode::synthetic(1, 0, 0)), ROOT_INO);
        let first = inodes.children(ROOT_INO, tree, &view).unwrap();
        assert_eq!(first, 2);
        assert_eq!(inodes.children(ROOT_INO, tree, &view).unwrap(), first);
        assert_eq!(inodes.len(), 4);
        let inode = inodes.get(first + 1).unwrap();
        assert_eq!((inode.parent, inode.slot), (1, 1));
        assert_eq!(inode.kind.asset(), Some((AssetHash(u128::MAX - 5), 7)));
        assert_eq!(inodes.owner(&inode), Some(PackageId([2; 32])));
        assert_eq!(
            inodes.range(first, 1..3),
            vec![inode, inodes.get(first + 2).unwrap()]
        );
        assert_eq!(inodes.get(0), None);
        assert_eq!(inodes.get(99), None);
        let attr = inode.attr(first + 1, SystemTime::UNIX_EPOCH);
        assert_eq!((attr.size, attr.perm, attr.uid, attr.gid), (7, 0o644, 1, 2));
    }
}
