//! Store errors. Each variant names what it was working on (a stone, an asset, a path),
//! so the binary can print one line that says what broke, and keeps the cause as its
//! `#[source]`.

use std::io;
use std::path::PathBuf;

use mossfs_format::{AssetHash, DecodeError, PackageId};

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A store folder could not be created.
    #[error("cannot create store folder {}", path.display())]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A store folder could not be opened or listed.
    #[error("cannot read store folder {}", path.display())]
    OpenDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A temp file could not be created, or a stale one removed.
    #[error("cannot use temp file {}", path.display())]
    TempFile {
        /// The temp file or its folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A stone given to [`Store::cache_stone`](crate::Store::cache_stone) could not be read.
    #[error("cannot read stone {}", path.display())]
    ReadStone {
        /// The stone as given.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A stone could not be copied into the cache.
    #[error("cannot cache stone {} as {}", from.display(), path.display())]
    WriteCache {
        /// The stone as given.
        from: PathBuf,
        /// Where it was going.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A package was asked for that the cache does not hold.
    #[error("package {id} is not in the stone cache (expected {}); add its stone again", path.display())]
    StoneNotCached {
        /// The package.
        id: PackageId,
        /// Where its stone should be.
        path: PathBuf,
    },
    /// A cached stone is corrupt or cannot be read. Nothing it failed to deliver was placed
    /// in the store.
    #[error("stone {} (package {id}) is unusable", path.display())]
    Stone {
        /// The package.
        id: PackageId,
        /// The cached stone.
        path: PathBuf,
        /// What the reader found (boxed: it is large, and this path is cold).
        #[source]
        source: Box<DecodeError>,
    },
    /// A stone's index lists assets but it has no content payload to unpack them from.
    #[error("stone {} (package {id}) lists {missing} assets but has no content", path.display())]
    NoContent {
        /// The package.
        id: PackageId,
        /// The cached stone.
        path: PathBuf,
        /// Assets the store still needed from it.
        missing: usize,
    },
    /// Repair was asked to take an asset from a stone that does not carry it.
    #[error("asset {hash} is not in stone {} (package {id})", path.display())]
    AssetNotInStone {
        /// The asset.
        hash: AssetHash,
        /// The package.
        id: PackageId,
        /// The cached stone.
        path: PathBuf,
    },
    /// An asset was needed that the store does not hold.
    #[error("asset {hash} is missing from the store (expected {})", path.display())]
    AssetMissing {
        /// The asset.
        hash: AssetHash,
        /// Where it should be.
        path: PathBuf,
    },
    /// An asset (or a variant) could not be read.
    #[error("cannot read asset {hash} at {}", path.display())]
    ReadAsset {
        /// The asset.
        hash: AssetHash,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// An asset (or a variant) could not be written, given its metadata, or placed.
    #[error("cannot write asset {hash} to {}", path.display())]
    WriteAsset {
        /// The asset.
        hash: AssetHash,
        /// The file being written (a temp file, or the final name when placing it).
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A layout or caller asked for an owner that cannot be set (`-1` means "unchanged"
    /// to `chown`, so it cannot name an owner).
    #[error("asset {hash}: uid {uid} / gid {gid} cannot be set as an owner")]
    InvalidOwner {
        /// The asset.
        hash: AssetHash,
        /// The requested uid.
        uid: u32,
        /// The requested gid.
        gid: u32,
    },
    /// A file could not be removed during garbage collection.
    #[error("cannot remove {}", path.display())]
    Remove {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A file or folder could not be made durable: what was written may not survive a
    /// crash, so nothing may depend on it yet.
    #[error("cannot sync {} to disk", path.display())]
    Sync {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A delta stone is malformed or cannot be read. Fall back to the full stone.
    #[error("delta {} is unusable", path.display())]
    Delta {
        /// The delta stone.
        path: PathBuf,
        /// What the reader found.
        #[source]
        source: Box<DecodeError>,
    },
    /// A stone given as a delta is some other kind of stone.
    #[error("{} is not a delta stone", path.display())]
    NotADelta {
        /// The stone.
        path: PathBuf,
    },
    /// A patch's base asset is not in the store. Fall back to the full stone.
    #[error("delta {} patches asset {target} from asset {base}, which the store does not hold", path.display())]
    DeltaBaseMissing {
        /// The delta stone.
        path: PathBuf,
        /// The missing base.
        base: AssetHash,
        /// The asset it would rebuild.
        target: AssetHash,
    },
    /// The index of the package a delta starts from is not at hand (the database does not
    /// know the package, or, where the store works alone, its stone is not cached), so
    /// nothing can tell which old assets the delta's records name: they name bases by
    /// their position in that index. Fall back to the full stone.
    #[error("delta {} starts from package {from}, whose index this root does not hold, so the old assets its records patch are unknown", path.display())]
    DeltaOldIndex {
        /// The delta stone.
        path: PathBuf,
        /// The package it starts from.
        from: mossfs_format::PackageId,
    },
    /// A base asset in the store no longer hashes to its name. Fall back to the full
    /// stone, and run `verify --repair`.
    #[error("base asset {base} at {} is damaged (its bytes hash to {computed})", path.display())]
    DeltaBaseDamaged {
        /// The store file.
        path: PathBuf,
        /// Its name.
        base: AssetHash,
        /// What its bytes hash to.
        computed: AssetHash,
    },
    /// The new package needs assets that neither the delta nor the store has: the delta
    /// starts from a package that is not here. Fall back to the full stone.
    #[error("delta {} cannot rebuild asset {missing} ({count} assets in all): it has no record for it and the store does not hold it", path.display())]
    DeltaIncomplete {
        /// The delta stone.
        path: PathBuf,
        /// The first missing asset.
        missing: AssetHash,
        /// How many are missing.
        count: usize,
    },
    /// A record did not rebuild its asset. Fall back to the full stone.
    #[error("delta {} does not rebuild asset {target}", path.display())]
    DeltaRecord {
        /// The delta stone.
        path: PathBuf,
        /// The asset.
        target: AssetHash,
        /// Why.
        #[source]
        source: Box<mossfs_format::ApplyError>,
    },
}

impl From<crate::durable::SyncError> for StoreError {
    fn from(e: crate::durable::SyncError) -> StoreError {
        StoreError::Sync {
            path: e.path,
            source: e.source,
        }
    }
}
