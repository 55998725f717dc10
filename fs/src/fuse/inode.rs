//! The inode table: the numbers the kernel knows, handed out lazily and never reused.
//!
//! A tree entry has no number of its own in the database, so the mount gives one to each
//! path the first time the kernel meets it (a `lookup` or a `readdirplus` entry). An entry
//! is identified by its parent's number and its *slot*, its index in the parent's listing
//! (the sorted directory object, or a synthetic directory of the debug view). The object is
//! immutable, so `(parent, slot)` names one path for the life of the mount, and the table
//! needs no names at all: they stay in LMDB's memory map.
//!
//! Memory: one [`Inode`] is 56 bytes and one `(parent, slot) -> ino` map entry about 16
//! bytes plus the map's slack, so a full walk of 250,000 entries costs under 25 MiB. The
//! table never shrinks: `forget` is ignored, so a number stays valid however long the
//! kernel keeps it, and memory is bounded by the entries the mount has seen.

use std::collections::HashMap;
use std::time::SystemTime;

use fuser::{FileAttr, FileType, INodeNo};
use mossfs_db::{Node, NodeKind, TreeHash};
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
    children: HashMap<(u32, u32), u32>,
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
        let ino = self.inodes.len() as u64;
        // The root is its own parent, not its own child.
        if u64::from(inode.parent) != ino {
            self.children
                .insert((inode.parent, inode.slot), narrow(ino));
        }
        ino
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
        let inode = Inode {
            parent: narrow(parent),
            slot: narrow(slot as u64),
            mode: node.mode,
            uid: node.uid,
            gid: node.gid,
            owner: table.owner(node.owner),
            kind: kind_of(&node.kind),
        };
        table.push(inode)
    }

    /// The entry numbered `ino`.
    pub(crate) fn get(&self, ino: u64) -> Option<Inode> {
        let index = usize::try_from(ino.checked_sub(1)?).ok()?;
        self.table.read().inodes.get(index).copied()
    }

    /// The number of entry `slot` of directory `parent`, given a number on first sight.
    pub(crate) fn child(&self, parent: u64, slot: usize, node: &Node) -> (u64, Inode) {
        let key = (narrow(parent), narrow(slot as u64));
        {
            let table = self.table.read();
            if let Some(&ino) = table.children.get(&key) {
                return (u64::from(ino), table.inodes[ino as usize - 1]);
            }
        }
        let mut table = self.table.write();
        // Another thread may have numbered it between the two locks.
        if let Some(&ino) = table.children.get(&key) {
            return (u64::from(ino), table.inodes[ino as usize - 1]);
        }
        let inode = Inode {
            parent: key.0,
            slot: key.1,
            mode: node.mode,
            uid: node.uid,
            gid: node.gid,
            owner: table.owner(node.owner),
            kind: kind_of(&node.kind),
        };
        (table.push(inode), inode)
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
    fn numbers_are_stable_and_never_shared() {
        let inodes = Inodes::default();
        assert_eq!(inodes.push(Inode::synthetic(1, 0, 0)), ROOT_INO);
        let (a, inode) = inodes.child(1, 0, &file(1));
        let (b, _) = inodes.child(1, 1, &file(2));
        assert_ne!(a, b);
        assert_eq!(inodes.child(1, 0, &file(1)).0, a);
        assert_eq!(inodes.get(a), Some(inode));
        assert_eq!(inode.kind.asset(), Some((AssetHash(u128::MAX - 5), 7)));
        assert_eq!(inodes.owner(&inode), Some(PackageId([1; 32])));
        assert_eq!(inodes.get(0), None);
        assert_eq!(inodes.get(99), None);
        let attr = inode.attr(a, SystemTime::UNIX_EPOCH);
        assert_eq!((attr.size, attr.perm, attr.uid, attr.gid), (7, 0o644, 1, 2));
    }
}
