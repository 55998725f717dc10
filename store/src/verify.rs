//! Re-hashing assets, to find the ones a disk, a bug or a person has damaged.
//!
//! An asset is named by its xxh3-128, so checking one needs nothing but its bytes. The
//! canonical file and every variant are checked, since each may be linked into a tree.

use std::fs::File;

use std::path::{Path, PathBuf};

use mossfs_format::{AssetHash, AssetHasher};

use crate::{BUF_SIZE, Result, Store, StoreError};

/// The state of one asset in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssetCheck {
    /// The canonical file and all variants hash to the asset's name.
    Ok,
    /// There is no canonical file.
    Missing,
    /// A file holding the asset has other bytes; repair it with [`Store::repair_asset`].
    Corrupt {
        /// The first bad file: the canonical one, or a variant.
        path: PathBuf,
        /// What its bytes hash to.
        computed: AssetHash,
    },
}

impl Store {
    /// Re-hashes the canonical file of `hash` and each of its variants.
    pub fn verify_asset(&self, hash: AssetHash) -> Result<AssetCheck> {
        if self.stat_asset(&crate::asset::rel_path(hash)).is_err() {
            return Ok(AssetCheck::Missing);
        }
        let canonical = self.asset_path(hash);
        let mut files = vec![canonical];
        files.extend(self.variants(hash)?);
        for path in files {
            let computed = self.hash_file(hash, &path)?;
            if computed != hash {
                return Ok(AssetCheck::Corrupt { path, computed });
            }
        }
        Ok(AssetCheck::Ok)
    }

    /// The xxh3-128 of the file at `path`, a store file holding `hash`.
    pub(crate) fn hash_file(&self, hash: AssetHash, path: &Path) -> Result<AssetHash> {
        let error = |source| StoreError::ReadAsset {
            hash,
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(error)?;
        let size = file.metadata().map_err(error)?.len();
        // Most assets are small; do not allocate the full buffer for them.
        let buf = (size as usize).clamp(1, BUF_SIZE);
        AssetHasher::of_reader(file, buf)
            .map(|(found, _)| found)
            .map_err(error)
    }
}
