//! Assets that no package ships: files transaction triggers wrote (DESIGN.md §10).
//!
//! A generated file enters the store like any asset, named by the xxh3-128 of its bytes,
//! so the state that records it can be blitted, mounted, verified and rolled back to like
//! any other. What keeps it from garbage collection is the tree that names it.

use std::path::Path;

use mossfs_format::AssetHash;

use crate::asset::AssetMeta;
use crate::{Result, Store, StoreError};

impl Store {
    /// Copies the file at `path` into the store as a canonical asset (`rw-r--r--`, root's),
    /// unless the store already has those bytes. Returns its hash and size. The caller
    /// syncs the store before anything links to it.
    pub fn put_file(&self, path: &Path) -> Result<(AssetHash, u64)> {
        let bytes = std::fs::read(path).map_err(|source| StoreError::ReadAsset {
            hash: AssetHash(0),
            path: path.to_owned(),
            source,
        })?;
        let hash = AssetHash::of(&bytes);
        let size = bytes.len() as u64;
        if self.has_asset(hash) {
            return Ok((hash, size));
        }
        let meta = AssetMeta {
            perm: 0o644,
            uid: 0,
            gid: 0,
        };
        let owner = self.owner(hash, meta)?;
        let draft = self.new_draft(meta.perm, owner)?;
        let write_error = |source| StoreError::WriteAsset {
            hash,
            path: self.asset_path(hash),
            source,
        };
        draft.write_all(&bytes).map_err(write_error)?;
        draft.set_metadata(meta.perm, owner).map_err(write_error)?;
        draft.publish(self, hash).map_err(write_error)?;
        Ok((hash, size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_file_becomes_an_asset_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join(".moss")).expect("store");
        let file = dir.path().join("ld.so.cache");
        std::fs::write(&file, b"cache bytes").expect("write");
        let (hash, size) = store.put_file(&file).expect("put");
        assert_eq!((hash, size), (AssetHash::of(b"cache bytes"), 11));
        assert_eq!(
            std::fs::read(store.asset_path(hash)).expect("asset"),
            b"cache bytes"
        );
        // Again: the asset there stays, with its inode.
        let inode =
            |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).expect("stat"));
        let before = inode(&store.asset_path(hash));
        assert_eq!(store.put_file(&file).expect("put again"), (hash, size));
        assert_eq!(inode(&store.asset_path(hash)), before);
        assert!(matches!(
            store.put_file(&dir.path().join("missing")),
            Err(StoreError::ReadAsset { .. })
        ));
    }
}
