//! The stone cache: `cache/<package id>.stone` (DESIGN.md §4).
//!
//! Stones given on the command line are copied here so that the store can unpack them
//! later (commit, lazy materialization, repair) even if the original file is gone. The
//! package id, the sha256 of the whole file, is computed during the copy, so a stone is
//! read once. A caller that must look at a stone before deciding to keep it reads the
//! copy ([`PendingStone`]): its id, its metadata and its content are then the same bytes,
//! however the original changes meanwhile.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use mossfs_format::{PackageId, read_full};
use sha2::{Digest, Sha256};

use crate::direct::{self, Buffer};
use crate::durable::{self, FsKind};
use crate::temp::TempFile;
use crate::{BUF_SIZE, Result, Store, StoreError};

/// A stone in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedStone {
    /// The package id: sha256 of the file.
    pub id: PackageId,
    /// Where the cached copy lives.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

/// A stone copied into the cache's temporary folder and hashed on the way, not cached
/// yet: [`PendingStone::keep`] puts it in the cache, dropping it removes the copy.
pub struct PendingStone<'s> {
    store: &'s Store,
    from: PathBuf,
    temp: TempFile<'s>,
    /// The package id: sha256 of the bytes copied.
    pub id: PackageId,
    /// Their number.
    pub size: u64,
}

/// The package id (sha256) and size of the stone at `path`, read once and written
/// nowhere: what a dry run needs to name a package without touching the cache.
pub fn stone_id(path: &Path) -> Result<(PackageId, u64)> {
    let read_error = |source| StoreError::ReadStone {
        path: path.to_owned(),
        source,
    };
    let mut source = File::open(path).map_err(read_error)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BUF_SIZE];
    let mut size = 0u64;
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((PackageId(hasher.finalize().into()), size))
}

impl Store {
    /// Copies the stone at `path` into the cache, returning its package id. The copy goes
    /// through a temp file and is renamed into place, so a cached stone is always whole. A
    /// stone already cached is left as it is. The stone is not decoded here; a corrupt one
    /// is caught by [`Store::ingest`].
    pub fn cache_stone(&self, path: &Path) -> Result<CachedStone> {
        self.copy_stone(path)?.keep()
    }

    /// Copies the stone at `path` next to the cache and hashes it, in one read; see
    /// [`PendingStone`].
    pub fn copy_stone(&self, path: &Path) -> Result<PendingStone<'_>> {
        let read_error = |source| StoreError::ReadStone {
            path: path.to_owned(),
            source,
        };
        let mut source = File::open(path).map_err(read_error)?;
        let len = source.metadata().map_err(read_error)?.len();
        let temp = TempFile::create(&self.cache_tmp, &self.cache_tmp_dir)?;
        let write_error = |source| StoreError::WriteCache {
            from: path.to_owned(),
            path: temp.path(),
            source,
        };
        // The copy is read back only for its head, and once more by the unpack: not worth
        // a second copy of every byte in fresh page-cache pages (see `direct`).
        let copy = temp.file_ref();
        let direct = direct::bypasses(self.fs_kind(), len);
        if direct {
            direct::bypass_cache(copy);
        }
        let mut hasher = Sha256::new();
        let mut buf = Buffer::new();
        let mut size = 0u64;
        loop {
            let n = read_full(&mut source, &mut buf).map_err(read_error)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            if direct {
                direct::write_block_at(copy, &mut buf, n, size)
            } else {
                copy.write_all_at(&buf[..n], size)
            }
            .map_err(write_error)?;
            size += n as u64;
        }
        if direct {
            // The last block was padded; callers read the copy with ordinary reads.
            copy.set_len(size)
                .and_then(|()| direct::use_cache(copy))
                .map_err(write_error)?;
        } else {
            // The copy must be durable before it is kept; its writeback can start now,
            // while the other stones are still being copied and the plan is made.
            durable::start_writeback(copy, self.fs_kind());
        }
        Ok(PendingStone {
            store: self,
            from: path.to_owned(),
            temp,
            id: PackageId(hasher.finalize().into()),
            size,
        })
    }

    /// Where the stone of package `id` is (or would be) cached.
    pub fn cached_path(&self, id: &PackageId) -> PathBuf {
        self.cache_dir.join(file_name(*id))
    }

    /// Whether the stone of package `id` is cached.
    pub fn is_cached(&self, id: &PackageId) -> bool {
        fs::symlink_metadata(self.cached_path(id)).is_ok_and(|m| m.is_file())
    }

    /// Every package whose stone is cached, sorted.
    pub fn list_cached(&self) -> Result<Vec<PackageId>> {
        let error = |source| StoreError::OpenDir {
            path: self.cache_dir.clone(),
            source,
        };
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.cache_dir).map_err(error)? {
            let entry = entry.map_err(error)?;
            if let Some(id) = parse_file_name(&entry.file_name())
                && entry.file_type().is_ok_and(|t| t.is_file())
            {
                out.push(id);
            }
        }
        out.sort();
        Ok(out)
    }
}

impl PendingStone<'_> {
    /// The copy, to read. It is the caller's to seek: reads through it move its offset.
    pub fn file(&self) -> &File {
        self.temp.file_ref()
    }

    /// Where the copy is, until it is kept or dropped.
    pub fn path(&self) -> PathBuf {
        self.temp.path()
    }

    /// Puts the copy in the cache. A stone already cached is left as it is: the same
    /// sha256 is the same stone. A delta cached under this id (it has another size) is
    /// replaced.
    pub fn keep(self) -> Result<CachedStone> {
        let mut kept = self.store.keep_stones(vec![self])?;
        Ok(kept
            .pop()
            .expect("keep_stones keeps every copy it is given"))
    }
}

impl Store {
    /// Puts every copy in `pending` in the cache, as [`PendingStone::keep`] does one, and
    /// returns them in the same order. Each must have been made by this store.
    ///
    /// The order is that of DESIGN.md §6.1–§6.2, for all of them at once instead of one by
    /// one: every copy's bytes are durable, then they get their names, then one `fsync` of
    /// `cache/` makes the names durable. So a name never reaches the disk before its bytes,
    /// and the whole batch is durable before this returns, which is before the caller
    /// records the state that needs the stones. One by one, each stone cost an `fdatasync`
    /// and an `fsync` of `cache/`, that is two journal commits or cache flushes, waited for
    /// from at most one thread per core: 400 of them for 200 stones. Together, the bytes
    /// are written out as [`durable::sync_change`] writes a change's files (on an ordered
    /// journal, all queued at once and one commit; elsewhere many syncs at a time), and the
    /// names cost one more `fsync`.
    pub fn keep_stones(&self, pending: Vec<PendingStone<'_>>) -> Result<Vec<CachedStone>> {
        // A stone cached already (the same sha256, the same size) was made durable when it
        // was kept: its copy is dropped unsynced, and reinstalling it syncs nothing here.
        let mut kept: Vec<Option<CachedStone>> = Vec::with_capacity(pending.len());
        let mut fresh = Vec::new();
        for stone in pending {
            let path = self.cached_path(&stone.id);
            if fs::symlink_metadata(&path).is_ok_and(|m| m.is_file() && m.len() == stone.size) {
                kept.push(Some(CachedStone {
                    id: stone.id,
                    path,
                    size: stone.size,
                }));
            } else {
                kept.push(None);
                fresh.push(stone);
            }
        }
        if !fresh.is_empty() {
            self.sync_pending(&fresh)?;
            let mut placed = fresh.into_iter();
            for slot in kept.iter_mut().filter(|slot| slot.is_none()) {
                if let Some(stone) = placed.next() {
                    *slot = Some(self.place_stone(stone)?);
                }
            }
            self.sync_dir(&self.cache, &self.cache_dir)?;
        }
        Ok(kept.into_iter().flatten().collect())
    }

    /// Gives each copy its mode and makes its bytes durable, all at once; their temp names
    /// need not be durable, only the final names are (by the caller, after
    /// [`Store::place_stone`]).
    fn sync_pending(&self, pending: &[PendingStone<'_>]) -> Result<()> {
        for stone in pending {
            stone
                .temp
                .set_metadata(0o644, None)
                .map_err(|source| StoreError::WriteCache {
                    from: stone.from.clone(),
                    path: stone.temp.path(),
                    source,
                })?;
        }
        if self.fs_kind() == FsKind::Volatile {
            return Ok(());
        }
        let temps: Vec<PathBuf> = pending.iter().map(|s| s.temp.path()).collect();
        durable::sync_change(self.fs_kind(), &temps, &[], &self.cache_tmp_dir).map_err(|e| {
            let from = pending
                .iter()
                .find(|s| s.temp.path() == e.path)
                .map_or_else(|| e.path.clone(), |s| s.from.clone());
            StoreError::WriteCache {
                from,
                path: e.path,
                source: e.source,
            }
        })?;
        Ok(())
    }

    /// Renames a synced copy to its name in `cache/`. A stone already cached is left as it
    /// is: the same sha256 is the same stone.
    fn place_stone(&self, stone: PendingStone<'_>) -> Result<CachedStone> {
        let PendingStone {
            store: _,
            from,
            temp,
            id,
            size,
        } = stone;
        let name = file_name(id);
        let dest = self.cache_dir.join(&name);
        // A file of another size under this name is not this stone: a package installed
        // from a delta caches the delta under the full stone's id. The full stone, once
        // given, takes its place, since only it can restore every asset on its own.
        let other_size = fs::symlink_metadata(&dest).is_ok_and(|m| m.len() != size);
        temp.place(&self.cache, &name, other_size)
            .map_err(|source| StoreError::WriteCache {
                from,
                path: dest.clone(),
                source,
            })?;
        Ok(CachedStone {
            id,
            path: dest,
            size,
        })
    }
}

pub(crate) fn file_name(id: PackageId) -> String {
    format!("{id}.stone")
}

/// `<64 lowercase hex>.stone` back to its package id; anything else is not ours.
pub(crate) fn parse_file_name(name: &std::ffi::OsStr) -> Option<PackageId> {
    let hex = name.to_str()?.strip_suffix(".stone")?;
    let id: PackageId = hex.parse().ok()?;
    (id.to_string() == hex).then_some(id)
}
