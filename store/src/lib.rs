//! The content store and the stone cache (DESIGN.md §4, §6.1, §6.2, §6.5).
//!
//! Every installed regular file is a hardlink to one *asset*: a file in the store named by
//! the xxh3-128 of its bytes. This crate owns those files and the cached `.stone` files they
//! are unpacked from, and nothing else: it never writes below `/usr`, never touches the
//! database, and never decides which assets are still needed (the caller says so in
//! [`Store::gc`]).
//!
//! ```text
//! ROOT/.moss/                      the directory given to Store::open
//!   assets/
//!     .tmp/                        named writes in progress; each is flock'ed by its writer
//!     99/99aa06d3…497f             a canonical asset
//!     99/99aa06d3…497f-0755-0-0    a variant: same bytes, other mode/uid/gid
//!   cache/
//!     .tmp/
//!     <sha256 hex>.stone           a cached stone, named by its package id
//! ```
//!
//! Rules this crate keeps:
//! - **Nothing partially written is visible under its final name** (§6.1). Every file is
//!   written with no name or a temp name under `.tmp/`, verified, given its metadata, and
//!   only then linked or renamed into place. Ingest writes nameless `O_TMPFILE` files
//!   where the file system allows, which a killed process cannot leave behind; everything
//!   else leaves at worst temp files, which the next [`Store::open`] removes.
//! - **An asset under its final name never changes inode** once placed, because blitted
//!   trees hardlink to it. Links and renames into place refuse to replace (`linkat`,
//!   `RENAME_NOREPLACE`); only [`Store::repair_asset`] replaces a file, and only one that
//!   failed its hash.
//! - **Durable by what was written** (§6.2). A commit makes exactly the assets of the
//!   packages it unpacked durable with [`Store::sync_assets`], many `fdatasync`s at once, and
//!   never the whole file system (see [`durable`]). Files written one at a time (cached
//!   stones, variants, repairs) are synced before they get their name.
//! - **Many writers may share a store.** Temp names are unique per process, thread and call,
//!   and recovery only removes temp files whose writer no longer holds their lock.
//!
//! A hardlink shares its mode and owner with every other link to the same inode, so one
//! asset can only serve layout entries with identical permissions. The canonical asset
//! gets the metadata of the first layout entry that uses it; [`Store::linkable`] makes a
//! *variant* copy for any other (mode, uid, gid).
//!
//! Map:
//! - [`error`]: the error type, [`StoreError`].
//! - `asset`: asset names, lookups, variants and listing.
//! - `cache`: the stone cache.
//! - [`durable`]: making exactly what a change wrote durable, per file system.
//! - `ingest`: unpacking stones into assets, and repairing one asset.
//! - `unpack`: the pipeline behind ingest: one thread decompresses, others write.
//! - `direct`: reading and writing large files past the page cache (`O_DIRECT`).
//! - `stats`: what an ingest did ([`IngestStats`]).
//! - `delta`: rebuilding a package's assets from a delta stone, with its fallback rule.
//! - `draft`: new asset files before they have a name, and publishing them.
//! - `shard`: the 256 shard folders, and which of them exist.
//! - `verify`: re-hashing assets.
//! - `gc`: removing what the caller no longer references.
//! - `temp`: temp files and crash recovery.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(missing_docs)]

mod asset;
mod cache;
mod delta;
mod direct;
mod draft;
pub mod durable;
pub mod error;
mod gc;
mod generated;
mod ingest;
pub mod make_delta;
mod shard;
mod stats;
mod temp;
mod unpack;
mod verify;

use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use mossfs_format::AssetHash;
use rustix::fs::{Mode, OFlags};

use durable::FsKind;

pub use cache::{CachedStone, PendingStone, stone_id};
pub use delta::DeltaApplied;
pub use error::StoreError;
pub use gc::GcStats;
pub use stats::IngestStats;
pub use verify::AssetCheck;

/// Results of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Name of the temp folder inside `assets/` and `cache/`.
const TMP: &str = ".tmp";

/// Buffer size for streaming file bytes: large enough that a syscall moves a lot of data,
/// small enough to allocate per call.
const BUF_SIZE: usize = 256 * 1024;

/// An open content store. Cheap to share between threads (`&Store` is all any operation
/// needs), and safe to use from several processes on the same directory.
#[derive(Debug)]
pub struct Store {
    assets_dir: PathBuf,
    cache_dir: PathBuf,
    assets_tmp_dir: PathBuf,
    cache_tmp_dir: PathBuf,
    assets: OwnedFd,
    assets_tmp: OwnedFd,
    cache: OwnedFd,
    cache_tmp: OwnedFd,
    /// Only root may chown, so only root stores owners in asset metadata.
    is_root: bool,
    recovered: usize,
    /// Shard folders known to exist.
    shards: shard::Shards,
    /// Whether new assets are anonymous or named temp files.
    draft_kind: draft::DraftKind,
    /// The kind of the store's file system, found on first use.
    fs_kind: OnceLock<FsKind>,
}

impl Store {
    /// Opens the store in `moss_dir` (normally `ROOT/.moss`), creating its folders as
    /// needed, and removes temp files left behind by a killed process (see
    /// [`Store::recovered_temp_files`]). Temp files of live writers are left alone.
    pub fn open(moss_dir: &Path) -> Result<Store> {
        let assets_dir = moss_dir.join("assets");
        let cache_dir = moss_dir.join("cache");
        let assets_tmp_dir = assets_dir.join(TMP);
        let cache_tmp_dir = cache_dir.join(TMP);
        for dir in [&assets_tmp_dir, &cache_tmp_dir] {
            fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.clone(),
                source,
            })?;
        }
        let assets_tmp = open_dir(&assets_tmp_dir)?;
        let cache_tmp = open_dir(&cache_tmp_dir)?;
        let mut recovered = temp::recover(&assets_tmp, &assets_tmp_dir)?;
        recovered += temp::recover(&cache_tmp, &cache_tmp_dir)?;
        Ok(Store {
            assets: open_dir(&assets_dir)?,
            cache: open_dir(&cache_dir)?,
            assets_tmp,
            cache_tmp,
            assets_dir,
            cache_dir,
            assets_tmp_dir,
            cache_tmp_dir,
            is_root: rustix::process::geteuid().is_root(),
            recovered,
            shards: shard::Shards::new(),
            draft_kind: draft::DraftKind::new(),
            fs_kind: OnceLock::new(),
        })
    }

    /// Opens an existing store without creating, writing or recovering anything: for
    /// commands that only read, which must work on a read-only root and leave no trace.
    /// Temp files of a killed writer are left to the next [`Store::open`]. The store can
    /// still unpack packages (a mount does, lazily) where its file system allows writes.
    pub fn open_read(moss_dir: &Path) -> Result<Store> {
        let assets_dir = moss_dir.join("assets");
        let cache_dir = moss_dir.join("cache");
        let assets_tmp_dir = assets_dir.join(TMP);
        let cache_tmp_dir = cache_dir.join(TMP);
        Ok(Store {
            assets: open_dir(&assets_dir)?,
            cache: open_dir(&cache_dir)?,
            assets_tmp: open_dir(&assets_tmp_dir)?,
            cache_tmp: open_dir(&cache_tmp_dir)?,
            assets_dir,
            cache_dir,
            assets_tmp_dir,
            cache_tmp_dir,
            is_root: rustix::process::geteuid().is_root(),
            recovered: 0,
            shards: shard::Shards::new(),
            draft_kind: draft::DraftKind::new(),
            fs_kind: OnceLock::new(),
        })
    }

    /// How many leftover temp files [`Store::open`] removed.
    pub fn recovered_temp_files(&self) -> usize {
        self.recovered
    }

    /// The `assets/` folder.
    pub fn assets_dir(&self) -> &Path {
        &self.assets_dir
    }

    /// The `cache/` folder.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// Makes the canonical files of `hashes` durable, with their names (their shard
    /// folders and `assets/`), many at a time, as [`durable::sync_change`] does on the
    /// store's file system.
    /// DESIGN.md §6.2: a commit calls it with the assets of the packages it unpacked, before
    /// it blits a tree that links to them and before it records them as unpacked. Whoever
    /// wrote them (this process, or a mount that unpacked them lazily), only they are
    /// waited for, never the rest of the file system.
    pub fn sync_assets(&self, hashes: &[AssetHash]) -> Result<()> {
        if self.fs_kind() == FsKind::Volatile || hashes.is_empty() {
            return Ok(());
        }
        let (files, dirs) = self.asset_change(hashes);
        durable::sync_change(self.fs_kind(), &files, &dirs, &self.assets_dir)?;
        Ok(())
    }

    /// What making the canonical files of `hashes` durable takes: their paths, and the
    /// folders whose entries they changed (their shard folders and `assets/`). A commit
    /// hands these to the sync of the tree it blits (`mossfs_fs::blit::sync_tree`), so the
    /// new assets and the tree that links to them are made durable in one pass, with one
    /// journal commit (or one `syncfs`) instead of two; [`Store::sync_assets`] syncs them
    /// alone.
    pub fn asset_change(&self, hashes: &[AssetHash]) -> (Vec<PathBuf>, Vec<PathBuf>) {
        if hashes.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let mut hashes = hashes.to_vec();
        hashes.sort_unstable();
        hashes.dedup();
        let files: Vec<PathBuf> = hashes.iter().map(|&h| self.asset_path(h)).collect();
        let mut dirs: Vec<PathBuf> = hashes
            .iter()
            .map(|&h| self.assets_dir.join(asset::shard(h)))
            .collect();
        dirs.dedup();
        dirs.push(self.assets_dir.clone());
        (files, dirs)
    }

    /// The kind of file system the store is on, which says how to make writes durable.
    pub(crate) fn fs_kind(&self) -> FsKind {
        *self.fs_kind.get_or_init(|| FsKind::of(&self.assets))
    }

    /// `fdatasync` of a file about to get its name, unless nothing survives a reboot here.
    pub(crate) fn sync_data(&self, file: &std::fs::File) -> std::io::Result<()> {
        if self.fs_kind() == FsKind::Volatile {
            return Ok(());
        }
        file.sync_data()
    }

    /// `fsync` of a store folder whose entries changed.
    pub(crate) fn sync_dir(&self, dir: &OwnedFd, path: &Path) -> Result<()> {
        if self.fs_kind() == FsKind::Volatile {
            return Ok(());
        }
        rustix::fs::fsync(dir).map_err(|e| StoreError::Sync {
            path: path.to_owned(),
            source: e.into(),
        })
    }
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| StoreError::OpenDir {
        path: path.to_owned(),
        source: e.into(),
    })
}
