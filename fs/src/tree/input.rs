//! The packages a tree is built from, as read from the database: layouts in priority
//! order, and each asset's size from the indexes. Turns a layout record into the [`Node`]
//! the tree stores.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use mossfs_db::{Node, NodeKind, Query, TreeHash};
use mossfs_format::{AssetHash, EntryKind, LayoutEntry, PackageId};

use super::TreeError;
use super::resolve::Origin;

/// Asset hashes are already uniformly random, so hashing them again (SipHash) is wasted
/// time on a 250,000-entry build: fold the 128 bits instead.
#[derive(Default)]
struct FoldHasher(u64);

impl Hasher for FoldHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 ^= (n as u64) ^ ((n >> 64) as u64);
    }
}

type AssetSizes = HashMap<AssetHash, u64, BuildHasherDefault<FoldHasher>>;

/// Everything read from the database for one build.
pub(crate) struct Inputs<'p> {
    pub(crate) ids: &'p [PackageId],
    pub(crate) layouts: Vec<Vec<LayoutEntry>>,
    /// The size of each regular file, by package and record; 0 for everything else.
    sizes: Vec<Vec<u64>>,
}

impl<'p> Inputs<'p> {
    /// Reads every package's layout and index, and looks up every regular file's size.
    ///
    /// Sizes are looked up here, one package at a time in a map of that package's own
    /// index, which stays in cache; a lookup per record in one map of every asset, in tree
    /// order, would miss the cache at nearly every record of a large state. A layout that
    /// names an asset from another package's index is still accepted.
    pub(crate) fn read(q: &impl Query, ids: &'p [PackageId]) -> Result<Self, TreeError> {
        let mut layouts = Vec::with_capacity(ids.len());
        let mut indexes = Vec::with_capacity(ids.len());
        for &package in ids {
            let layout = q
                .layout(&package)
                .map_err(|source| TreeError::Layout { package, source })?;
            let index: AssetSizes = q
                .index(&package)
                .map_err(|source| TreeError::Index { package, source })?
                .into_iter()
                .map(|entry| (entry.digest, entry.len()))
                .collect();
            layouts.push(layout);
            indexes.push(index);
        }
        let mut sizes = Vec::with_capacity(ids.len());
        for (package, layout) in layouts.iter().enumerate() {
            let own = &indexes[package];
            let mut package_sizes = Vec::with_capacity(layout.len());
            for entry in layout {
                let size = match &entry.kind {
                    EntryKind::Regular(asset) => own
                        .get(asset)
                        .or_else(|| indexes.iter().find_map(|index| index.get(asset)))
                        .copied()
                        .ok_or_else(|| TreeError::MissingAsset {
                            package: ids[package],
                            path: entry.path.clone(),
                            asset: *asset,
                        })?,
                    _ => 0,
                };
                package_sizes.push(size);
            }
            sizes.push(package_sizes);
        }
        Ok(Inputs {
            ids,
            layouts,
            sizes,
        })
    }

    /// The layout record an origin names.
    pub(crate) fn entry(&self, origin: Origin) -> &LayoutEntry {
        &self.layouts[origin.package as usize][origin.entry as usize]
    }

    /// The package an origin belongs to.
    pub(crate) fn package(&self, origin: Origin) -> PackageId {
        self.ids[origin.package as usize]
    }

    /// The node a record becomes; a directory record needs its object's hash.
    pub(crate) fn node(&self, origin: Origin, dir: Option<TreeHash>) -> Node {
        let entry = self.entry(origin);
        let kind = match &entry.kind {
            EntryKind::Regular(asset) => NodeKind::Regular {
                asset: *asset,
                size: self.sizes[origin.package as usize][origin.entry as usize],
            },
            EntryKind::Symlink(text) => NodeKind::Symlink(text.clone()),
            EntryKind::Directory => {
                NodeKind::Directory(dir.expect("a directory record is given its object"))
            }
            EntryKind::CharDevice => NodeKind::CharDevice,
            EntryKind::BlockDevice => NodeKind::BlockDevice,
            EntryKind::Fifo => NodeKind::Fifo,
            EntryKind::Socket => NodeKind::Socket,
        };
        Node {
            mode: entry.mode,
            uid: entry.uid,
            gid: entry.gid,
            owner: Some(self.package(origin)),
            kind,
        }
    }
}

/// Whether two records put the same thing at a path: then two packages may share it.
pub(crate) fn same(a: &LayoutEntry, b: &LayoutEntry) -> bool {
    a.kind == b.kind && a.mode == b.mode && a.uid == b.uid && a.gid == b.gid
}
