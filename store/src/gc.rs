//! Garbage collection: removing assets and stones nothing references any more
//! (DESIGN.md §6.5).
//!
//! The store cannot know what is referenced; the caller says what to keep, after removing
//! the database references. Removing in that order means a crash in between leaves
//! garbage, never a reference to a missing file.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use mossfs_format::{AssetHash, PackageId};

use crate::asset::{parse_name, shard, sorted_dir_files};
use crate::{Result, Store, StoreError};

/// What a garbage collection removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Canonical assets removed.
    pub assets_removed: u64,
    /// Variants removed (with their canonical asset, or orphaned).
    pub variants_removed: u64,
    /// Cached stones removed.
    pub stones_removed: u64,
    /// Bytes given back to the file system: the sizes of removed files that had no other
    /// link. An asset still linked from an archived tree frees nothing yet.
    pub bytes_freed: u64,
}

impl Store {
    /// Removes every asset (with its variants) whose hash is not in `keep_assets`, and
    /// every cached stone whose package is not in `keep_stones`. Empty shard folders go
    /// too. Run it under the writer lock, after the database stopped referencing them.
    pub fn gc(
        &self,
        keep_assets: &HashSet<AssetHash>,
        keep_stones: &HashSet<PackageId>,
    ) -> Result<GcStats> {
        let mut stats = GcStats::default();
        let mut shards = BTreeSet::new();
        self.walk_assets(|file| {
            if !keep_assets.contains(&file.hash)
                && stats.remove_asset(&file.path, file.variant)?
                && let Some(shard) = file.path.parent()
            {
                shards.insert(shard.to_owned());
            }
            Ok(())
        })?;
        // A folder that is not empty (or was just reused) stays.
        for shard in &shards {
            let _ = fs::remove_dir(shard);
        }
        for id in self.list_cached()? {
            if !keep_stones.contains(&id) {
                stats.remove_stone(&self.cached_path(&id))?;
            }
        }
        Ok(stats)
    }

    /// Removes exactly the assets `assets` (with their variants) and the cached stones of
    /// `stones`: what a change that failed before its commit point wrote for itself, which
    /// the caller has checked nothing else references. [`Store::gc`]'s counterpart for a
    /// known set, so it reads only the shard folders those assets live in, each once.
    pub fn forget(&self, assets: &HashSet<AssetHash>, stones: &[PackageId]) -> Result<GcStats> {
        let mut stats = GcStats::default();
        let shards: BTreeSet<String> = assets.iter().map(|&hash| shard(hash)).collect();
        for shard in shards {
            let dir = self.assets_dir.join(shard);
            for path in sorted_dir_files(&dir)? {
                let parsed = path.file_name().and_then(|n| parse_name(n.as_bytes()));
                if let Some((_, variant)) = parsed.filter(|(hash, _)| assets.contains(hash)) {
                    stats.remove_asset(&path, variant)?;
                }
            }
            let _ = fs::remove_dir(&dir);
        }
        for id in stones {
            stats.remove_stone(&self.cached_path(id))?;
        }
        Ok(stats)
    }
}

impl GcStats {
    /// Removes one asset file and counts it; whether it was there to remove.
    fn remove_asset(&mut self, path: &Path, variant: bool) -> Result<bool> {
        let Some(freed) = remove(path)? else {
            return Ok(false);
        };
        self.bytes_freed += freed;
        if variant {
            self.variants_removed += 1;
        } else {
            self.assets_removed += 1;
        }
        Ok(true)
    }

    /// Removes one cached stone and counts it.
    fn remove_stone(&mut self, path: &Path) -> Result<()> {
        if let Some(freed) = remove(path)? {
            self.bytes_freed += freed;
            self.stones_removed += 1;
        }
        Ok(())
    }
}

/// Removes one file; returns the bytes freed, or `None` if it was already gone.
fn remove(path: &Path) -> Result<Option<u64>> {
    let error = |source| StoreError::Remove {
        path: path.to_owned(),
        source,
    };
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(error(e)),
    };
    match fs::remove_file(path) {
        Ok(()) => Ok(Some(if meta.nlink() == 1 { meta.len() } else { 0 })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(error(e)),
    }
}
