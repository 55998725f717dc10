//! Rebuilding a package's assets from a delta stone and the assets already in the store
//! (DESIGN.md §11).
//!
//! [`Store::apply_delta`] is what an installer calls once it has a delta stone on disk
//! (fetched from a repository, or given by hand), with the index of the package the delta
//! starts from: records name their bases by position in it (`mossfs_format::delta`), and
//! the caller has it in its database. Where the store works alone (lazy unpacking and
//! repair of a package whose cached stone is a delta), it reads that index from the old
//! package's cached stone ([`Store::cached_index`]). It works in two passes over the delta,
//! which is small:
//!
//! 1. **Check, writing nothing.** Every record is read and checked by the format reader,
//!    every base position must name an entry of the old index, every base a record names
//!    must be in the store (unless all its targets are), and
//!    every asset of the new package must either have a record or already be in the
//!    store. A delta that cannot finish is refused here, before any file is made.
//! 2. **Rebuild.** For each record with a target the store lacks: read each of its bases
//!    whole and hash it again (a store file could have been damaged since it was placed),
//!    apply the record (the output is bounded by its targets' sizes and each target is
//!    hashed against its name), write each missing target into a temp file with the
//!    metadata of the first layout entry using it, and only then place it under its name.
//!    Memory is bounded by one record: its bases, its targets and its frame, never the
//!    package.
//!
//! **Fallback.** Every error from [`Store::apply_delta`] means the same to a caller: fetch
//! the full stone and ingest it instead ([`StoreError::falls_back_to_full_stone`]). Nothing
//! a failed call leaves behind is wrong: an asset is only ever placed once it hashed to its
//! name, so at worst a few verified assets wait for the next `gc`, exactly as after an
//! interrupted ingest, and no state, tree or cached stone is touched.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;

use mossfs_format::{
    AssetHash, DecodeError, DeltaRecord, EntryKind, FileType, IndexEntry, PackageId, Preamble,
    Reader, Stone,
};

use crate::asset::{AssetMeta, rel_path};
use crate::temp::TempFile;
use crate::{Result, Store, StoreError};

/// What [`Store::apply_delta`] did.
#[derive(Debug, Clone)]
pub struct DeltaApplied {
    /// Which package the delta starts from and which full stone it stands for.
    pub preamble: Preamble,
    /// The new package's metadata (meta, layout, index), as the full stone has it.
    pub stone: Stone,
    /// Assets this call rebuilt and placed.
    pub written: u64,
    /// Assets of the new package that were already in the store.
    pub present: u64,
    /// Bytes of the assets this call placed.
    pub bytes_written: u64,
}

impl StoreError {
    /// Whether this error, returned by [`Store::apply_delta`], is one where the caller
    /// should fetch the full stone instead. Every delta failure is: a malformed delta, a
    /// missing or damaged base, a record that does not rebuild its target, and also an I/O
    /// error, since the full stone does not depend on the bases.
    pub fn falls_back_to_full_stone(&self) -> bool {
        matches!(
            self,
            StoreError::Delta { .. }
                | StoreError::NotADelta { .. }
                | StoreError::DeltaOldIndex { .. }
                | StoreError::DeltaBaseMissing { .. }
                | StoreError::DeltaBaseDamaged { .. }
                | StoreError::DeltaIncomplete { .. }
                | StoreError::DeltaRecord { .. }
                | StoreError::ReadAsset { .. }
                | StoreError::AssetMissing { .. }
        )
    }
}

impl Store {
    /// Rebuilds into the store every asset of the package the delta stone at `path`
    /// stands for, from the assets already here. `old_index` is the index of the package
    /// the delta starts from, in its payload's order, in which records name their bases.
    /// See the module docs for the order of steps and the fallback rule. Safe to run beside
    /// ingests and other applies.
    pub fn apply_delta(&self, path: &Path, old_index: &[IndexEntry]) -> Result<DeltaApplied> {
        let (stone, preamble) = self.check_delta(path, old_index)?;
        let metas = first_use_metas(&stone);
        let error = |source| StoreError::Delta {
            path: path.to_owned(),
            source: Box::new(source),
        };
        let mut reader = open(path)?;
        let stone_again = reader.read_metadata().map_err(error)?;
        let mut deltas =
            reader
                .deltas(&stone_again)
                .map_err(error)?
                .ok_or_else(|| StoreError::NotADelta {
                    path: path.to_owned(),
                })?;
        let unique: HashSet<AssetHash> = stone.index.iter().map(|e| e.digest).collect();
        let mut applied = DeltaApplied {
            preamble,
            stone: stone.clone(),
            written: 0,
            present: 0,
            bytes_written: 0,
        };
        while let Some(record) = deltas.next_record().map_err(error)? {
            let wanted: Vec<bool> = record
                .header
                .targets
                .iter()
                .map(|t| !self.has_asset(t.hash))
                .collect();
            if !wanted.contains(&true) {
                continue;
            }
            for (target, size) in self.rebuild(path, old_index, &record, &wanted, &|hash| {
                metas.get(&hash).copied().unwrap_or(AssetMeta::DEFAULT)
            })? {
                let _ = target;
                applied.written += 1;
                applied.bytes_written += size;
            }
        }
        deltas.finish().map_err(error)?;
        reader.finish().map_err(error)?;
        // Every asset was either rebuilt or present; check once more that none vanished
        // (a concurrent gc), so the caller never links to a missing file.
        if let Some(&missing) = unique.iter().find(|&&h| !self.has_asset(h)) {
            return Err(StoreError::DeltaIncomplete {
                path: path.to_owned(),
                missing,
                count: 1,
            });
        }
        applied.present = (unique.len() as u64).saturating_sub(applied.written);
        Ok(applied)
    }

    /// The first pass of [`Store::apply_delta`], on its own: reads every record and checks
    /// that the delta can finish in this store (every patch's bases are in `old_index` and
    /// here, and every asset of the new package is rebuilt by a record or already here),
    /// writing nothing. An installer calls it while planning, to refuse a delta before
    /// recording a state.
    pub fn check_delta(&self, path: &Path, old_index: &[IndexEntry]) -> Result<(Stone, Preamble)> {
        let error = |source| StoreError::Delta {
            path: path.to_owned(),
            source: Box::new(source),
        };
        let mut reader = open(path)?;
        if reader.header().file_type != FileType::Delta {
            return Err(StoreError::NotADelta {
                path: path.to_owned(),
            });
        }
        let stone = reader.read_metadata().map_err(error)?;
        stone.check_assets().map_err(error)?;
        let Some(mut deltas) = reader.deltas(&stone).map_err(error)? else {
            return Err(StoreError::NotADelta {
                path: path.to_owned(),
            });
        };
        let preamble = deltas.preamble();
        let mut rebuilt = HashSet::new();
        while let Some(record) = deltas.next_record().map_err(error)? {
            rebuilt.extend(record.header.targets.iter().map(|t| t.hash));
            let Some(target) = record
                .header
                .targets
                .iter()
                .find(|t| !self.has_asset(t.hash))
            else {
                continue;
            };
            let bases = resolve_bases(path, old_index, &record)?;
            if let Some(base) = bases.iter().find(|b| !self.has_asset(b.hash)) {
                return Err(StoreError::DeltaBaseMissing {
                    path: path.to_owned(),
                    base: base.hash,
                    target: target.hash,
                });
            }
        }
        deltas.finish().map_err(error)?;
        reader.finish().map_err(error)?;
        let missing: Vec<AssetHash> = stone
            .index
            .iter()
            .map(|e| e.digest)
            .filter(|h| !rebuilt.contains(h) && !self.has_asset(*h))
            .collect();
        if let Some(&first) = missing.first() {
            return Err(StoreError::DeltaIncomplete {
                path: path.to_owned(),
                missing: first,
                count: missing.len(),
            });
        }
        Ok((stone, preamble))
    }

    /// Repairs `hash` for a package whose cached stone is a delta: from the delta's record
    /// for it, against its base in the store; or, when the delta has no record for it (the
    /// file did not change), from the stone of the package the delta starts from, if that
    /// is cached. `meta` is the damaged file's metadata, if it is still there.
    pub(crate) fn repair_from_delta(
        &self,
        hash: AssetHash,
        id: mossfs_format::PackageId,
        path: &Path,
        meta: Option<AssetMeta>,
    ) -> Result<()> {
        let error = |source| StoreError::Stone {
            id,
            path: path.to_owned(),
            source: Box::new(source),
        };
        let mut reader = open(path)?;
        let stone = reader.read_metadata().map_err(error)?;
        let meta = meta.unwrap_or_else(|| {
            first_use_metas(&stone)
                .get(&hash)
                .copied()
                .unwrap_or(AssetMeta::DEFAULT)
        });
        let Some(mut deltas) = reader.deltas(&stone).map_err(error)? else {
            return Err(StoreError::NotADelta {
                path: path.to_owned(),
            });
        };
        let from = deltas.preamble().from;
        while let Some(record) = deltas.next_record().map_err(error)? {
            let wanted: Vec<bool> = record
                .header
                .targets
                .iter()
                .map(|t| t.hash == hash)
                .collect();
            if !wanted.contains(&true) {
                continue;
            }
            // Only a patch needs the old index.
            let old_index = if record.header.bases.is_empty() {
                Vec::new()
            } else {
                self.cached_index(path, &from)?
            };
            self.rebuild_into(
                path,
                &old_index,
                &record,
                &wanted,
                &|_| meta,
                &mut |temp, target| self.replace_asset(temp, target),
            )?;
            return self.remove_variants(hash, false);
        }
        // An unchanged file: the old package's stone has it.
        if self.is_cached(&from) {
            return self.repair_asset(hash, &from);
        }
        Err(StoreError::AssetNotInStone {
            hash,
            id,
            path: path.to_owned(),
        })
    }

    /// Applies one record and places each wanted target the store lacks under its name,
    /// with the metadata `meta_of` gives; returns the targets placed and their sizes.
    fn rebuild(
        &self,
        path: &Path,
        old_index: &[IndexEntry],
        record: &DeltaRecord,
        wanted: &[bool],
        meta_of: &dyn Fn(AssetHash) -> AssetMeta,
    ) -> Result<Vec<(AssetHash, u64)>> {
        let mut placed = Vec::new();
        self.rebuild_into(
            path,
            old_index,
            record,
            wanted,
            meta_of,
            &mut |temp, target| {
                let rel = rel_path(target);
                let size = temp.file_ref().metadata().map_or(0, |m| m.len());
                let new = temp.place(&self.assets, &rel, false).map_err(|source| {
                    StoreError::WriteAsset {
                        hash: target,
                        path: self.assets_dir.join(&rel),
                        source,
                    }
                })?;
                if new == crate::temp::Placed::New {
                    placed.push((target, size));
                }
                Ok(())
            },
        )?;
        Ok(placed)
    }

    /// Applies one record: reads and re-hashes its bases, rebuilds each wanted target into
    /// a temp file with its metadata, and hands each to `finish` only once it hashed to its
    /// name. Memory is bounded by the record: its bases and targets, never the package.
    fn rebuild_into(
        &self,
        path: &Path,
        old_index: &[IndexEntry],
        record: &DeltaRecord,
        wanted: &[bool],
        meta_of: &dyn Fn(AssetHash) -> AssetMeta,
        finish: &mut dyn FnMut(TempFile<'_>, AssetHash) -> Result<()>,
    ) -> Result<()> {
        let targets = &record.header.targets;
        let first = targets.first().map_or(AssetHash(0), |t| t.hash);
        let bases = resolve_bases(path, old_index, record)?
            .iter()
            .map(|b| self.read_base(path, b.hash, b.size, first))
            .collect::<Result<Vec<_>>>()?;
        let given: Vec<&[u8]> = bases.iter().map(Vec::as_slice).collect();
        let record_error = |target, source| StoreError::DeltaRecord {
            path: path.to_owned(),
            target,
            source: Box::new(source),
        };
        let prepare = |target: AssetHash| -> Result<TempFile<'_>> {
            let meta = meta_of(target);
            let owner = self.owner(target, meta)?;
            let temp = TempFile::create(&self.assets_tmp, &self.assets_tmp_dir)?;
            temp.set_metadata(meta.perm, owner)
                .map_err(|source| StoreError::WriteAsset {
                    hash: target,
                    path: temp.path(),
                    source,
                })?;
            Ok(temp)
        };
        if record.header.streams() {
            // One whole target, decoded as a stream into its temp file, which is placed
            // only once the whole of it hashed to its name.
            if !wanted.first().copied().unwrap_or(false) {
                return Ok(());
            }
            let mut temp = prepare(first)?;
            let file = temp.file();
            record
                .apply(old_index, &[], &mut |_, bytes| file.write_all(bytes))
                .map_err(|source| record_error(first, source))?;
            return finish(temp, first);
        }
        // Decoded in one piece: every target has hashed to its name before the first
        // call, so each is written and placed as it comes, one temp file at a time.
        let mut failed: Option<StoreError> = None;
        let result = record.apply(old_index, &given, &mut |i, bytes| {
            if !wanted.get(i).copied().unwrap_or(false) {
                return Ok(());
            }
            let target = targets[i].hash;
            let done = prepare(target).and_then(|mut temp| {
                temp.file()
                    .write_all(bytes)
                    .map_err(|source| StoreError::WriteAsset {
                        hash: target,
                        path: temp.path(),
                        source,
                    })?;
                finish(temp, target)
            });
            done.map_err(|e| {
                failed = Some(e);
                std::io::Error::other("stopped")
            })
        });
        if let Some(e) = failed {
            return Err(e);
        }
        result.map_err(|source| record_error(first, source))
    }

    /// Reads a base asset whole and hashes it again: a damaged store file must not become
    /// the base of a new one (the patch would fail its hash anyway, but this names the
    /// culprit).
    fn read_base(
        &self,
        path: &Path,
        base: AssetHash,
        base_size: u64,
        target: AssetHash,
    ) -> Result<Vec<u8>> {
        let file = self.open_asset(base).map_err(|e| match e {
            StoreError::AssetMissing { .. } => StoreError::DeltaBaseMissing {
                path: path.to_owned(),
                base,
                target,
            },
            other => other,
        })?;
        let read_error = |source| StoreError::ReadAsset {
            hash: base,
            path: self.asset_path(base),
            source,
        };
        // The record's base size is bounded by the format reader; read one byte more to
        // see a file that grew.
        let mut bytes = Vec::new();
        file.take(base_size.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        let computed = AssetHash::of(&bytes);
        if bytes.len() as u64 != base_size || computed != base {
            return Err(StoreError::DeltaBaseDamaged {
                path: self.asset_path(base),
                base,
                computed,
            });
        }
        Ok(bytes)
    }
}

/// A record's bases, looked up in the old package's index; a position it lacks (the delta
/// was made from another package) is the record's error, and falls back.
fn resolve_bases(
    path: &Path,
    old_index: &[IndexEntry],
    record: &DeltaRecord,
) -> Result<Vec<mossfs_format::delta::Base>> {
    let target = record
        .header
        .targets
        .first()
        .map_or(AssetHash(0), |t| t.hash);
    record
        .header
        .resolve_bases(old_index)
        .map_err(|source| StoreError::DeltaRecord {
            path: path.to_owned(),
            target,
            source: Box::new(mossfs_format::delta::ApplyError::Bases { target, source }),
        })
}

impl Store {
    /// The index of package `from`, read from its cached stone (a full stone or a delta:
    /// both carry it), for the delta at `path` that starts from it: what the store
    /// consults when no database hands it the index (lazy unpacking and repair of a
    /// package whose cached stone is a delta).
    pub fn cached_index(&self, path: &Path, from: &PackageId) -> Result<Vec<IndexEntry>> {
        match self.open_stone(from) {
            Ok(open) => Ok(open.stone.index),
            Err(StoreError::StoneNotCached { .. }) => Err(StoreError::DeltaOldIndex {
                path: path.to_owned(),
                from: *from,
            }),
            Err(other) => Err(other),
        }
    }
}

fn open(path: &Path) -> Result<Reader<BufReader<File>>> {
    let file = File::open(path).map_err(|source| StoreError::Delta {
        path: path.to_owned(),
        source: Box::new(DecodeError::Io(source)),
    })?;
    Reader::new(BufReader::with_capacity(256 * 1024, file)).map_err(|source| StoreError::Delta {
        path: path.to_owned(),
        source: Box::new(source),
    })
}

/// The metadata each asset gets as a canonical file: that of the first layout entry using
/// it, as ingest gives it.
fn first_use_metas(stone: &Stone) -> HashMap<AssetHash, AssetMeta> {
    let mut metas = HashMap::new();
    for entry in &stone.layout {
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
