//! Content-addressed directory objects (DESIGN.md §5).
//!
//! A directory object is the sorted list of its entries, encoded so that a reader can
//! binary-search it straight out of LMDB's memory map without decoding the rest:
//!
//! ```text
//! u32 count
//! u32 offset[count]          where each entry starts, from the start of the object
//! entry*                     sorted by name (bytewise)
//!
//! entry: u16 name length, name, u32 mode, u32 uid, u32 gid, u8 owner flag, [32-byte owner],
//!        u8 kind, then by kind: regular u128 asset + u64 size; symlink u16 length + text;
//!        directory u128 tree hash; devices, fifos and sockets nothing
//! ```
//!
//! An object is named by the xxh3-128 of its bytes, so two states that share a directory
//! share its object, and a diff can skip equal subtrees by comparing hashes.

use std::fmt;

use mossfs_format::{AssetHash, PackageId};

use crate::DbError;
use crate::codec::Reader;

/// The name of a directory object: xxh3-128 of its encoding.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TreeHash(pub u128);

impl TreeHash {
    /// Hashes an encoded object.
    pub fn of(bytes: &[u8]) -> Self {
        TreeHash(xxhash_rust::xxh3::xxh3_128(bytes))
    }
}

impl fmt::Display for TreeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for TreeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TreeHash({self})")
    }
}

/// What a tree entry is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NodeKind {
    /// A regular file: its asset and size.
    Regular {
        /// The asset holding its bytes.
        asset: AssetHash,
        /// Its length in bytes.
        size: u64,
    },
    /// A symlink and its link text.
    Symlink(Vec<u8>),
    /// A directory and its object.
    Directory(TreeHash),
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A named pipe.
    Fifo,
    /// A socket.
    Socket,
}

impl NodeKind {
    fn tag(&self) -> u8 {
        match self {
            NodeKind::Regular { .. } => 1,
            NodeKind::Symlink(_) => 2,
            NodeKind::Directory(_) => 3,
            NodeKind::CharDevice => 4,
            NodeKind::BlockDevice => 5,
            NodeKind::Fifo => 6,
            NodeKind::Socket => 7,
        }
    }

    /// A short name for people.
    pub fn name(&self) -> &'static str {
        match self {
            NodeKind::Regular { .. } => "file",
            NodeKind::Symlink(_) => "symlink",
            NodeKind::Directory(_) => "directory",
            NodeKind::CharDevice => "char device",
            NodeKind::BlockDevice => "block device",
            NodeKind::Fifo => "fifo",
            NodeKind::Socket => "socket",
        }
    }
}

/// Everything about an entry but its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Node {
    /// Full `st_mode`, type bits included.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// The package that ships it; `None` for directories no package names.
    pub owner: Option<PackageId>,
    /// What it is.
    pub kind: NodeKind,
}

/// One named entry of a directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DirEntry {
    /// The name within its directory: one path component.
    pub name: Vec<u8>,
    /// The rest.
    pub node: Node,
}

/// Encodes entries, which must be sorted by name without duplicates, into an object.
pub fn encode(entries: &[DirEntry]) -> Vec<u8> {
    debug_assert!(
        entries.windows(2).all(|w| w[0].name < w[1].name),
        "entries sorted and unique"
    );
    let count = u32::try_from(entries.len()).expect("a directory has fewer than 2^32 entries");
    let mut body = Vec::new();
    let mut offsets = Vec::with_capacity(entries.len());
    let table = 4 + 4 * entries.len();
    for entry in entries {
        offsets.push(u32::try_from(table + body.len()).expect("a directory object is below 4 GiB"));
        encode_entry(entry, &mut body);
    }
    let mut out = Vec::with_capacity(table + body.len());
    out.extend_from_slice(&count.to_be_bytes());
    for offset in offsets {
        out.extend_from_slice(&offset.to_be_bytes());
    }
    out.extend_from_slice(&body);
    out
}

fn encode_entry(entry: &DirEntry, out: &mut Vec<u8>) {
    let name_len = u16::try_from(entry.name.len()).expect("names are at most 255 bytes");
    out.extend_from_slice(&name_len.to_be_bytes());
    out.extend_from_slice(&entry.name);
    let node = &entry.node;
    out.extend_from_slice(&node.mode.to_be_bytes());
    out.extend_from_slice(&node.uid.to_be_bytes());
    out.extend_from_slice(&node.gid.to_be_bytes());
    match node.owner {
        Some(id) => {
            out.push(1);
            out.extend_from_slice(&id.0);
        }
        None => out.push(0),
    }
    out.push(node.kind.tag());
    match &node.kind {
        NodeKind::Regular { asset, size } => {
            out.extend_from_slice(&asset.to_be_bytes());
            out.extend_from_slice(&size.to_be_bytes());
        }
        NodeKind::Symlink(text) => {
            let len = u16::try_from(text.len()).expect("link text is below 64 KiB");
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(text);
        }
        NodeKind::Directory(hash) => out.extend_from_slice(&hash.0.to_be_bytes()),
        NodeKind::CharDevice | NodeKind::BlockDevice | NodeKind::Fifo | NodeKind::Socket => {}
    }
}

/// A directory object read in place, without decoding entries until asked.
#[derive(Clone, Copy)]
pub struct DirView<'a> {
    bytes: &'a [u8],
    count: usize,
}

impl<'a> DirView<'a> {
    /// Checks the header and offset table of an encoded object.
    pub fn new(hash: TreeHash, bytes: &'a [u8]) -> Result<Self, DbError> {
        let corrupt = || DbError::CorruptTree { hash };
        let count = bytes.get(..4).ok_or_else(corrupt)?;
        let count = u32::from_be_bytes([count[0], count[1], count[2], count[3]]) as usize;
        let table_end = count
            .checked_mul(4)
            .and_then(|n| n.checked_add(4))
            .ok_or_else(corrupt)?;
        if table_end > bytes.len() {
            return Err(corrupt());
        }
        Ok(DirView { bytes, count })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the directory is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn offset(&self, index: usize) -> usize {
        let at = 4 + 4 * index;
        let b = &self.bytes[at..at + 4];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
    }

    /// The name of entry `index` (< len), without decoding the rest of it.
    pub fn name(&self, index: usize) -> Option<&'a [u8]> {
        let at = self.offset(index);
        let len = self.bytes.get(at..at + 2)?;
        let len = u16::from_be_bytes([len[0], len[1]]) as usize;
        self.bytes.get(at + 2..at + 2 + len)
    }

    /// Decodes entry `index` (< len).
    pub fn entry(&self, index: usize) -> Option<DirEntry> {
        let mut r = Reader(self.bytes.get(self.offset(index)..)?);
        let name_len = r.u16()? as usize;
        let name = r.take(name_len)?.to_vec();
        let mode = r.u32()?;
        let uid = r.u32()?;
        let gid = r.u32()?;
        let owner = match r.u8()? {
            0 => None,
            _ => Some(PackageId(r.take(32)?.try_into().ok()?)),
        };
        let kind = match r.u8()? {
            1 => NodeKind::Regular {
                asset: AssetHash(r.u128()?),
                size: r.u64()?,
            },
            2 => {
                let len = r.u16()? as usize;
                NodeKind::Symlink(r.take(len)?.to_vec())
            }
            3 => NodeKind::Directory(TreeHash(r.u128()?)),
            4 => NodeKind::CharDevice,
            5 => NodeKind::BlockDevice,
            6 => NodeKind::Fifo,
            7 => NodeKind::Socket,
            _ => return None,
        };
        Some(DirEntry {
            name,
            node: Node {
                mode,
                uid,
                gid,
                owner,
                kind,
            },
        })
    }

    /// The directory object of entry `index` (< len) when it is a directory, reading only
    /// its name length, owner flag, kind and hash: walks that only descend (such as the
    /// sealed check of a tree on disk) skip decoding every file. `None` for a damaged entry.
    pub fn child_dir(&self, index: usize) -> Option<Option<TreeHash>> {
        let mut r = Reader(self.bytes.get(self.offset(index)..)?);
        let name_len = r.u16()? as usize;
        r.take(name_len + 12)?; // name, mode, uid, gid
        if r.u8()? != 0 {
            r.take(32)?; // owner
        }
        Some(match r.u8()? {
            3 => Some(TreeHash(r.u128()?)),
            1..=7 => None,
            _ => return None,
        })
    }

    /// Finds an entry by name with a binary search: O(log n) names read, one entry decoded.
    pub fn find(&self, name: &[u8]) -> Option<(usize, DirEntry)> {
        let index = self.position(name)?;
        Some((index, self.entry(index)?))
    }

    /// The index of the entry called `name`, by a binary search that decodes nothing.
    pub fn position(&self, name: &[u8]) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.name(mid)?.cmp(name) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// Decodes every entry; a damaged one ends the list with an error.
    pub fn entries(&self, hash: TreeHash) -> Result<Vec<DirEntry>, DbError> {
        (0..self.count)
            .map(|i| self.entry(i).ok_or(DbError::CorruptTree { hash }))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, bytes: &[u8]) -> DirEntry {
        DirEntry {
            name: name.as_bytes().to_vec(),
            node: Node {
                mode: 0o100644,
                uid: 0,
                gid: 0,
                owner: Some(PackageId([7; 32])),
                kind: NodeKind::Regular {
                    asset: AssetHash::of(bytes),
                    size: bytes.len() as u64,
                },
            },
        }
    }

    #[test]
    fn encodes_and_finds_every_entry() {
        let mut entries: Vec<_> = (0..1000)
            .map(|i| file(&format!("f{i:04}"), &[i as u8]))
            .collect();
        entries.push(DirEntry {
            name: b"link".to_vec(),
            node: Node {
                mode: 0o120777,
                uid: 0,
                gid: 0,
                owner: None,
                kind: NodeKind::Symlink(b"f0001".to_vec()),
            },
        });
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let bytes = encode(&entries);
        let hash = TreeHash::of(&bytes);
        let view = DirView::new(hash, &bytes).unwrap();
        assert_eq!(view.len(), entries.len());
        assert_eq!(view.entries(hash).unwrap(), entries);
        for (i, entry) in entries.iter().enumerate() {
            assert_eq!(view.find(&entry.name), Some((i, entry.clone())));
        }
        assert_eq!(view.find(b"nope"), None);
        assert_eq!(view.find(b""), None);
    }

    #[test]
    fn child_dir_reads_only_what_a_descending_walk_needs() {
        let dir = |name: &str, owner: Option<PackageId>, hash: u128| DirEntry {
            name: name.as_bytes().to_vec(),
            node: Node {
                mode: 0o040755,
                uid: 0,
                gid: 0,
                owner,
                kind: NodeKind::Directory(TreeHash(hash)),
            },
        };
        let entries = vec![
            dir("a", None, 1),
            file("b", b"x"),
            dir("c", Some(PackageId([3; 32])), u128::MAX),
        ];
        let bytes = encode(&entries);
        let hash = TreeHash::of(&bytes);
        let view = DirView::new(hash, &bytes).unwrap();
        assert_eq!(view.child_dir(0), Some(Some(TreeHash(1))));
        assert_eq!(view.child_dir(1), Some(None));
        assert_eq!(view.child_dir(2), Some(Some(TreeHash(u128::MAX))));
        for cut in 0..bytes.len() {
            if let Ok(view) = DirView::new(hash, &bytes[..cut]) {
                for i in 0..view.len() {
                    let _ = view.child_dir(i);
                }
            }
        }
    }

    #[test]
    fn damaged_objects_are_errors_not_panics() {
        let bytes = encode(&[file("a", b"x"), file("b", b"y")]);
        let hash = TreeHash::of(&bytes);
        for cut in 0..bytes.len() {
            if let Ok(view) = DirView::new(hash, &bytes[..cut]) {
                let _ = view.entries(hash);
                let _ = view.find(b"b");
            }
        }
        let mut huge = bytes.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            DirView::new(hash, &huge),
            Err(DbError::CorruptTree { .. })
        ));
    }
}
