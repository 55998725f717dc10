//! Looking after the store: the stone cache, crash recovery, verify and repair, and
//! garbage collection.

mod common;

use std::collections::HashSet;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;

use common::*;
use mossfs_format::{AssetHash, PackageId};
use mossfs_store::{AssetCheck, CachedStone, GcStats, Store, StoreError};

const BASH_COMPLETION_ID: &str = "13e2bce256b183ee0c721bd6cc438be8dcebf95850c8d851801e4ce000195d94";

#[test]
fn caching_names_a_stone_by_its_sha256_once() {
    let (_dir, store) = store();
    let cached = store.cache_stone(&upstream(BASH_COMPLETION)).unwrap();
    let id: PackageId = BASH_COMPLETION_ID.parse().unwrap();
    assert_eq!(
        cached,
        CachedStone {
            id,
            path: store.cached_path(&id),
            size: 168_864,
        }
    );
    assert!(store.is_cached(&id));
    assert_eq!(
        std::fs::read(&cached.path).unwrap(),
        std::fs::read(upstream(BASH_COMPLETION)).unwrap()
    );
    let inode = std::fs::metadata(&cached.path).unwrap().ino();
    assert_eq!(
        store.cache_stone(&upstream(BASH_COMPLETION)).unwrap(),
        cached
    );
    assert_eq!(
        std::fs::metadata(&cached.path).unwrap().ino(),
        inode,
        "kept as it was"
    );
    assert_eq!(store.list_cached().unwrap(), vec![id]);
    assert!(temp_files(&store).is_empty());
    assert!(!store.is_cached(&PackageId([0; 32])));
}

#[test]
fn stones_kept_together_are_cached_whole_and_one_already_there_is_left() {
    let (_dir, store) = store();
    let first = store.cache_stone(&upstream(PINEAPPLE)).unwrap();
    let inode = std::fs::metadata(&first.path).unwrap().ino();
    let names = [BASH_COMPLETION, ITALIAN_PIZZA, PINEAPPLE];
    let pending: Vec<_> = names
        .iter()
        .map(|name| store.copy_stone(&upstream(name)).unwrap())
        .collect();
    let ids: Vec<PackageId> = pending.iter().map(|p| p.id).collect();
    let kept = store.keep_stones(pending).unwrap();
    assert_eq!(
        kept.iter().map(|k| k.id).collect::<Vec<_>>(),
        ids,
        "in order"
    );
    for (cached, name) in kept.iter().zip(names) {
        assert_eq!(cached.path, store.cached_path(&cached.id));
        assert_eq!(
            std::fs::read(&cached.path).unwrap(),
            std::fs::read(upstream(name)).unwrap(),
            "{name}"
        );
        assert_eq!(
            std::fs::metadata(&cached.path).unwrap().mode() & 0o7777,
            0o644,
            "{name}"
        );
    }
    assert_eq!(
        std::fs::metadata(&first.path).unwrap().ino(),
        inode,
        "a stone already cached is kept as it was"
    );
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(store.list_cached().unwrap(), sorted);
    assert!(temp_files(&store).is_empty());
    assert!(store.keep_stones(Vec::new()).unwrap().is_empty());
}

#[test]
fn a_batch_with_one_copy_gone_caches_none_of_them() {
    let (_dir, store) = store();
    let good = store.copy_stone(&upstream(BASH_COMPLETION)).unwrap();
    let lost = store.copy_stone(&upstream(ITALIAN_PIZZA)).unwrap();
    // Whatever took it, the copy is not there to be made durable: nothing may get a name.
    std::fs::remove_file(lost.path()).unwrap();
    let lost_path = lost.path();
    match store.keep_stones(vec![good, lost]) {
        Err(StoreError::WriteCache { from, path, source }) => {
            assert_eq!(from, upstream(ITALIAN_PIZZA));
            assert_eq!(path, lost_path);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected WriteCache, got {other:?}"),
    }
    assert_eq!(store.list_cached().unwrap(), Vec::<PackageId>::new());
    assert!(temp_files(&store).is_empty(), "the copies are removed");
}

#[test]
fn caching_a_missing_file_names_it() {
    let (dir, store) = store();
    let missing = dir.path().join("nope.stone");
    match store.cache_stone(&missing) {
        Err(StoreError::ReadStone { path, source }) => {
            assert_eq!(path, missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected ReadStone, got {other:?}"),
    }
    assert!(temp_files(&store).is_empty());
}

#[test]
fn open_removes_temp_files_left_by_a_killed_writer_but_not_a_live_ones() {
    let dir = tempfile::tempdir().unwrap();
    let moss = dir.path().join(".moss");
    let store = Store::open(&moss).unwrap();
    assert_eq!(store.recovered_temp_files(), 0);
    let asset_tmp = store.assets_dir().join(".tmp");
    let cache_tmp = store.cache_dir().join(".tmp");
    std::fs::write(asset_tmp.join("4242-4242-0"), b"half an asset").unwrap();
    std::fs::write(asset_tmp.join("4242-4242-1"), b"").unwrap();
    std::fs::write(cache_tmp.join("4242-4242-2"), b"half a stone").unwrap();
    // A writer in another process holds its temp file locked until it is placed.
    let live_path = asset_tmp.join("4343-4343-0");
    let live = std::fs::File::create(&live_path).unwrap();
    rustix::fs::flock(&live, rustix::fs::FlockOperation::LockExclusive).unwrap();

    let reopened = Store::open(&moss).unwrap();
    assert_eq!(reopened.recovered_temp_files(), 3);
    assert_eq!(temp_files(&reopened), vec![live_path.clone()]);

    drop(live);
    assert_eq!(Store::open(&moss).unwrap().recovered_temp_files(), 1);
    assert!(temp_files(&reopened).is_empty());
}

#[test]
fn a_read_only_open_creates_nothing_and_recovers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let moss = dir.path().join(".moss");
    assert!(matches!(
        Store::open_read(&moss),
        Err(StoreError::OpenDir { .. })
    ));
    assert!(!moss.exists(), "a reader created the store");

    let store = Store::open(&moss).unwrap();
    let stale = store.assets_dir().join(".tmp/4242-4242-0");
    std::fs::write(&stale, b"half an asset").unwrap();
    let reader = Store::open_read(&moss).unwrap();
    assert_eq!(reader.recovered_temp_files(), 0);
    assert!(stale.exists(), "only a writer's open recovers");

    // A dry run names a stone as the cache would, without caching it.
    let (id, size) = mossfs_store::stone_id(&upstream(BASH_COMPLETION)).unwrap();
    assert_eq!(id, BASH_COMPLETION_ID.parse().unwrap());
    assert_eq!(size, 168_864);
    assert!(!reader.is_cached(&id));
}

/// Overwrites the first bytes of `path` in place, so its links see the damage too.
fn damage(path: &std::path::Path) {
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(0)).unwrap();
    file.write_all(b"XXXX").unwrap();
}

fn largest_asset(store: &Store) -> AssetHash {
    store
        .list_assets()
        .unwrap()
        .into_iter()
        .max_by_key(|&h| std::fs::metadata(store.asset_path(h)).unwrap().len())
        .unwrap()
}

#[test]
fn verify_finds_a_corrupt_canonical_asset_and_repair_mends_it() {
    let (_dir, store) = store();
    let id = store.cache_stone(&upstream(BASH_COMPLETION)).unwrap().id;
    store.ingest(&id).unwrap();
    let hash = largest_asset(&store);
    let canonical = store.asset_path(hash);
    let mode = std::fs::metadata(&canonical).unwrap().mode();
    let variant = store.linkable(hash, 0o600, 0, 0).unwrap();

    damage(&canonical);
    let damaged = AssetHash::of(&std::fs::read(&canonical).unwrap());
    assert_eq!(
        store.verify_asset(hash).unwrap(),
        AssetCheck::Corrupt {
            path: canonical.clone(),
            computed: damaged,
        }
    );

    store.repair_asset(hash, &id).unwrap();
    assert_eq!(store.verify_asset(hash).unwrap(), AssetCheck::Ok);
    assert_eq!(std::fs::metadata(&canonical).unwrap().mode(), mode);
    assert!(!variant.exists(), "variants of a corrupt asset are dropped");
    assert_eq!(store.linkable(hash, 0o600, 0, 0).unwrap(), variant);
    assert_eq!(store.verify_asset(hash).unwrap(), AssetCheck::Ok);
    assert!(temp_files(&store).is_empty());
}

#[test]
fn verify_checks_variants_and_repair_keeps_a_good_canonical_file() {
    let (_dir, store) = store();
    let id = store.cache_stone(&upstream(BASH_COMPLETION)).unwrap().id;
    store.ingest(&id).unwrap();
    let hash = largest_asset(&store);
    let canonical = store.asset_path(hash);
    let inode = std::fs::metadata(&canonical).unwrap().ino();
    let variant = store.linkable(hash, 0o600, 0, 0).unwrap();
    damage(&variant);
    assert!(matches!(
        store.verify_asset(hash).unwrap(),
        AssetCheck::Corrupt { path, .. } if path == variant
    ));
    store.repair_asset(hash, &id).unwrap();
    assert_eq!(std::fs::metadata(&canonical).unwrap().ino(), inode);
    assert!(!variant.exists());
    assert_eq!(store.verify_asset(hash).unwrap(), AssetCheck::Ok);
}

#[test]
fn a_missing_asset_is_reported_and_restored() {
    let (_dir, store) = store();
    let id = store.cache_stone(&upstream(BASH_COMPLETION)).unwrap().id;
    store.ingest(&id).unwrap();
    let hash = largest_asset(&store);
    let mode = std::fs::metadata(store.asset_path(hash)).unwrap().mode();
    std::fs::remove_file(store.asset_path(hash)).unwrap();
    assert_eq!(store.verify_asset(hash).unwrap(), AssetCheck::Missing);
    assert!(!store.has_asset(hash));
    store.repair_asset(hash, &id).unwrap();
    assert_eq!(store.verify_asset(hash).unwrap(), AssetCheck::Ok);
    assert_eq!(
        std::fs::metadata(store.asset_path(hash)).unwrap().mode(),
        mode,
        "a restored asset gets its layout's metadata"
    );
}

#[test]
fn repair_from_a_stone_without_the_asset_is_refused() {
    let (_dir, store) = store();
    let id = store.cache_stone(&upstream(ITALIAN_PIZZA)).unwrap().id;
    let absent = AssetHash::of(b"not in pizza");
    match store.repair_asset(absent, &id) {
        Err(StoreError::AssetNotInStone { hash, id: from, .. }) => {
            assert_eq!((hash, from), (absent, id));
        }
        other => panic!("expected AssetNotInStone, got {other:?}"),
    }
    assert!(store.list_assets().unwrap().is_empty());
}

#[test]
fn gc_removes_exactly_what_is_not_kept() {
    let (dir, store) = store();
    let a = [
        file("bin/a", b"only in a", 0o755),
        file("share/shared", b"shared by a and b", 0o644),
    ];
    let b = [
        file("share/shared", b"shared by a and b", 0o644),
        file("share/b", b"only in b, and somewhat longer", 0o644),
    ];
    let stone_a = cache_bytes(&store, dir.path(), "a.stone", &build_stone("a", &a));
    let stone_b = cache_bytes(&store, dir.path(), "b.stone", &build_stone("b", &b));
    store.ingest_many(&[stone_a.id, stone_b.id]).unwrap();
    let only_b = b[1].hash();
    let variant = store.linkable(only_b, 0o600, 0, 0).unwrap();
    let kept_variant = store.linkable(a[0].hash(), 0o700, 0, 0).unwrap();

    let keep_assets: HashSet<_> = a.iter().map(|f| f.hash()).collect();
    let keep_stones = HashSet::from([stone_a.id]);
    let stats = store.gc(&keep_assets, &keep_stones).unwrap();
    assert_eq!(
        stats,
        GcStats {
            assets_removed: 1,
            variants_removed: 1,
            stones_removed: 1,
            bytes_freed: 2 * b[1].bytes.len() as u64 + stone_b.size,
        }
    );
    let mut expected: Vec<_> = keep_assets.iter().copied().collect();
    expected.sort();
    assert_eq!(store.list_assets().unwrap(), expected);
    assert_eq!(store.list_cached().unwrap(), vec![stone_a.id]);
    assert!(!variant.exists());
    assert!(kept_variant.exists());
    assert!(
        !store.asset_path(only_b).parent().unwrap().exists(),
        "the emptied shard folder is gone"
    );

    // An asset still linked from elsewhere (an archived tree) frees nothing when removed.
    let outside = dir.path().join("linked");
    std::fs::hard_link(store.asset_path(a[0].hash()), &outside).unwrap();
    let stats = store.gc(&HashSet::new(), &HashSet::new()).unwrap();
    let shared = a[1].bytes.len() as u64;
    let kept_variant_len = a[0].bytes.len() as u64;
    assert_eq!(
        stats,
        GcStats {
            assets_removed: 2,
            variants_removed: 1,
            stones_removed: 1,
            bytes_freed: shared + kept_variant_len + stone_a.size,
        }
    );
    assert!(store.list_assets().unwrap().is_empty());
    assert!(store.list_cached().unwrap().is_empty());
    assert_eq!(std::fs::read(&outside).unwrap(), a[0].bytes);
    // The store still works after everything was collected.
    assert_eq!(
        store
            .ingest(&stone_a.id)
            .map_err(|e| e.to_string())
            .unwrap_err(),
        {
            format!(
                "package {} is not in the stone cache (expected {}); add its stone again",
                stone_a.id,
                store.cached_path(&stone_a.id).display()
            )
        }
    );
    store.sync_assets(&[]).unwrap();
}
