//! Unpacking a cached stone's content into assets (DESIGN.md §6.1), and putting back one
//! asset that went bad.
//!
//! The content is one zstd stream, so a stone is decompressed front to back on one thread,
//! while writer threads create the files (see `unpack`); [`Store::ingest_many`] spreads
//! stones over threads as well. Each asset the store lacks is verified by the reader (its
//! xxh3-128), written to a draft, given its metadata and only then its final name. Assets
//! already present are streamed past. When every asset is present the content is not even
//! opened, which makes re-installing free.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use mossfs_format::{Asset, AssetHash, DecodeError, EntryKind, PackageId, Reader, Stone};
use rayon::prelude::*;

use crate::asset::{AssetMeta, rel_path};
use crate::direct::{self, BUFFER, BlockReader};
use crate::stats::IngestStats;
use crate::temp::TempFile;
use crate::unpack::{Plan, unpack};
use crate::{BUF_SIZE, Result, Store, StoreError};

/// A cached stone opened for unpacking, its metadata read and checked.
pub(crate) struct OpenStone {
    id: PackageId,
    path: PathBuf,
    reader: Reader<BlockReader>,
    pub(crate) stone: Stone,
}

impl OpenStone {
    /// The metadata each asset gets as a canonical file: that of the first layout entry
    /// using it.
    fn metas(&self) -> HashMap<AssetHash, AssetMeta> {
        let mut metas = HashMap::new();
        for entry in &self.stone.layout {
            if let EntryKind::Regular(hash) = entry.kind {
                metas.entry(hash).or_insert(AssetMeta {
                    perm: entry.permissions(),
                    uid: entry.uid,
                    gid: entry.gid,
                });
            }
        }
        metas
    }
}

/// How many writer threads an unpack gets besides the caller: none for a handful of small
/// assets, where starting a thread costs more than it saves; otherwise one per spare
/// core, up to three.
fn writers_for(assets: usize, bytes: u64) -> usize {
    if assets < 16 && bytes < BUFFER as u64 {
        return 0;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.saturating_sub(1).clamp(1, 3)
}

fn stone_error(id: PackageId, path: &Path, source: DecodeError) -> StoreError {
    StoreError::Stone {
        id,
        path: path.to_owned(),
        source: Box::new(source),
    }
}

impl Store {
    /// Unpacks every asset of the cached stone `id` that the store lacks. A cached delta
    /// stone is applied instead ([`Store::apply_delta`]).
    ///
    /// The whole stone is verified on the way: every asset's digest, the content's size and
    /// the payload checksum. On error, no asset is left under its final name unless it
    /// hashed correctly, and this call's temp files are gone. Safe to run at the same time
    /// as other ingests of any stones, in this process or others.
    pub fn ingest(&self, id: &PackageId) -> Result<IngestStats> {
        let open = self.open_stone(id)?;
        let unique: HashSet<AssetHash> = open.stone.index.iter().map(|e| e.digest).collect();
        // In a fresh store most shard folders are missing, and so are all their assets:
        // no need to look each one up.
        let shards = self
            .shards
            .scan(&self.assets_dir)
            .map_err(|source| StoreError::OpenDir {
                path: self.assets_dir.clone(),
                source,
            })?;
        let missing: HashSet<AssetHash> = unique
            .iter()
            .copied()
            .filter(|&hash| !shards.has_shard_of(hash) || !self.has_asset(hash))
            .collect();
        let mut stats = IngestStats {
            present: (unique.len() - missing.len()) as u64,
            ..IngestStats::default()
        };
        if missing.is_empty() {
            return Ok(stats);
        }
        let metas = open.metas();
        let missing_bytes: u64 = open
            .stone
            .index
            .iter()
            .filter(|e| missing.contains(&e.digest))
            .map(|e| e.len())
            // The lengths are the stone's word, checked against its content only later.
            .fold(0, u64::saturating_add);
        let OpenStone {
            id,
            path,
            mut reader,
            stone,
        } = open;
        // A delta stone cached as its package's stone (an install from a delta) is rebuilt
        // from the store's own assets instead.
        if stone.delta.is_some() {
            let from = reader
                .deltas(&stone)
                .map_err(|source| stone_error(id, &path, source))?
                .map(|deltas| deltas.preamble().from)
                .ok_or_else(|| StoreError::NotADelta { path: path.clone() })?;
            drop(reader);
            let old_index = self.cached_index(&path, &from)?;
            let applied = self.apply_delta(&path, &old_index)?;
            return Ok(IngestStats {
                written: applied.written,
                present: applied.present,
                bytes_written: applied.bytes_written,
            });
        }
        let error = |source| stone_error(id, &path, source);
        let Some(content) = reader.content(&stone).map_err(error)? else {
            return Err(StoreError::NoContent {
                id,
                path,
                missing: missing.len(),
            });
        };
        let plan = Plan {
            writers: writers_for(missing.len(), missing_bytes),
            missing,
            metas: &metas,
        };
        stats += unpack(self, content, plan, &error)?;
        reader.finish().map_err(error)?;
        Ok(stats)
    }

    /// Ingests several cached stones in parallel. Stops at the first error; assets placed
    /// until then are valid and stay.
    pub fn ingest_many(&self, ids: &[PackageId]) -> Result<IngestStats> {
        let mut ids = ids.to_vec();
        ids.sort();
        ids.dedup();
        ids.par_iter()
            .map(|id| self.ingest(id))
            .try_reduce(IngestStats::default, |a, b| Ok(a + b))
    }

    /// Puts back asset `hash` from the cached stone `from`, after [`Store::verify_asset`]
    /// found it missing or corrupt. A canonical file that still hashes correctly is kept;
    /// otherwise it is unpacked again and replaces the bad one (keeping its mode and
    /// owner), and all its variants are removed so that they are made again from good
    /// bytes. With a good canonical file, only variants that fail their hash are removed.
    ///
    /// Links made earlier to a replaced file still point at the bad bytes: the caller has
    /// to relink them.
    pub fn repair_asset(&self, hash: AssetHash, from: &PackageId) -> Result<()> {
        let rel = rel_path(hash);
        let current = self.stat_asset(&rel).ok();
        if current.is_some() && self.hash_file(hash, &self.asset_path(hash))? == hash {
            return self.remove_variants(hash, true);
        }
        let open = self.open_stone(from)?;
        if open.stone.delta.is_some() {
            let meta = current.as_ref().map(AssetMeta::of);
            let path = open.path.clone();
            drop(open);
            return self.repair_from_delta(hash, *from, &path, meta);
        }
        if !open.stone.index.iter().any(|e| e.digest == hash) {
            return Err(StoreError::AssetNotInStone {
                hash,
                id: open.id,
                path: open.path,
            });
        }
        let meta = match &current {
            Some(stat) => AssetMeta::of(stat),
            None => open
                .metas()
                .get(&hash)
                .copied()
                .unwrap_or(AssetMeta::DEFAULT),
        };
        let OpenStone {
            id,
            path,
            mut reader,
            stone,
        } = open;
        let error = |source| stone_error(id, &path, source);
        let Some(mut content) = reader.content(&stone).map_err(error)? else {
            return Err(StoreError::NoContent {
                id,
                path,
                missing: 1,
            });
        };
        let mut buf = vec![0u8; BUF_SIZE];
        while let Some(asset) = content.next_asset().map_err(error)? {
            if asset.entry().digest != hash {
                continue;
            }
            let temp = self.write_asset(asset, meta, &mut buf, &error)?;
            self.replace_asset(temp, hash)?;
            // The asset's own digest was verified; the rest of the stone is not needed.
            return self.remove_variants(hash, false);
        }
        Err(StoreError::AssetNotInStone { hash, id, path })
    }

    /// Opens the cached stone `id` and reads its metadata, checking that its index
    /// covers every regular file of its layout.
    pub(crate) fn open_stone(&self, id: &PackageId) -> Result<OpenStone> {
        let path = self.cached_path(id);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::StoneNotCached { id: *id, path });
            }
            Err(e) => return Err(stone_error(*id, &path, DecodeError::Io(e))),
        };
        let error = |source| stone_error(*id, &path, source);
        // A stone whose bytes are not in the page cache (one the store copied past it) is
        // read past it too: through it, the read would fill as many fresh pages as the
        // copy saved.
        let len = file
            .metadata()
            .map_err(|e| error(DecodeError::Io(e)))?
            .len();
        let direct = direct::bypasses(self.fs_kind(), len) && !direct::is_cached(&file, len);
        let mut reader = Reader::new(BlockReader::new(file, direct)).map_err(error)?;
        let stone = reader.read_metadata().map_err(error)?;
        stone.check_structure().map_err(error)?;
        Ok(OpenStone {
            id: *id,
            path,
            reader,
            stone,
        })
    }

    /// Streams one asset into a new temp file, lets the reader verify its digest, and
    /// gives the file its metadata. Returns the file, ready to be placed.
    fn write_asset<R: Read>(
        &self,
        mut asset: Asset<'_, '_, R>,
        meta: AssetMeta,
        buf: &mut [u8],
        stone_error: &impl Fn(DecodeError) -> StoreError,
    ) -> Result<TempFile<'_>> {
        let hash = asset.entry().digest;
        let owner = self.owner(hash, meta)?;
        let mut temp = TempFile::create(&self.assets_tmp, &self.assets_tmp_dir)?;
        let temp_path = temp.path();
        let write_error = |source| StoreError::WriteAsset {
            hash,
            path: temp_path.clone(),
            source,
        };
        loop {
            let n = asset.read_checked(buf).map_err(stone_error)?;
            if n == 0 {
                break;
            }
            temp.file().write_all(&buf[..n]).map_err(write_error)?;
        }
        asset.finish().map_err(stone_error)?;
        temp.set_metadata(meta.perm, owner).map_err(write_error)?;
        Ok(temp)
    }

    /// Moves a repaired asset over the bad one (the one case where a file under its final
    /// name is replaced). Its bytes are durable before they get the name, and the name
    /// before this returns: links made from here on may be committed.
    pub(crate) fn replace_asset(&self, temp: TempFile<'_>, hash: AssetHash) -> Result<()> {
        let rel = rel_path(hash);
        let error = |source| StoreError::WriteAsset {
            hash,
            path: self.assets_dir.join(&rel),
            source,
        };
        self.sync_data(temp.file_ref()).map_err(error)?;
        temp.place(&self.assets, &rel, true).map_err(error)?;
        let shard = self.assets_dir.join(crate::asset::shard(hash));
        crate::durable::sync_dirs(&[shard])?;
        Ok(())
    }

    /// Removes the variants of `hash`: all of them, or with `only_bad` those whose bytes
    /// no longer hash to `hash`. [`Store::linkable`] makes them again on demand.
    pub(crate) fn remove_variants(&self, hash: AssetHash, only_bad: bool) -> Result<()> {
        for variant in self.variants(hash)? {
            if only_bad && self.hash_file(hash, &variant)? == hash {
                continue;
            }
            match std::fs::remove_file(&variant) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(StoreError::Remove {
                        path: variant,
                        source,
                    });
                }
            }
        }
        Ok(())
    }
}
