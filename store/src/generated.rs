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
