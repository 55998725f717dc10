//! Ingesting real stones: every asset lands under its name with the right bytes and
//! metadata, re-ingesting is free, and parallel or concurrent ingests agree.

mod common;

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use mossfs_format::{AssetHash, EntryKind, PackageId};
use mossfs_store::{AssetCheck, IngestStats, Store, StoreError};

#[test]
fn bash_completion_ingests_474_verified_assets_with_first_entry_metadata() {
    let (_dir, store) = store();
    let cached = store.cache_stone(&upstream(BASH_COMPLETION)).unwrap();
    let stats = store.ingest(&cached.id).unwrap();
    assert_eq!(
        stats,
        IngestStats {
            written: 474,
            present: 0,
            bytes_written: 872_279,
        }
    );

    let listed = store.list_assets().unwrap();
    assert_eq!(listed, index_of(&upstream(BASH_COMPLETION)));
    assert_eq!(listed.len(), 474);
    for &hash in &listed {
        let bytes = std::fs::read(store.asset_path(hash)).unwrap();
        assert_eq!(
            AssetHash::of(&bytes),
            hash,
            "asset {hash} re-hashes to its name"
        );
        assert_eq!(store.verify_asset(hash).unwrap(), AssetCheck::Ok);
    }

    let mut first = HashMap::new();
    for entry in layout_of(&upstream(BASH_COMPLETION)) {
        if let EntryKind::Regular(hash) = entry.kind {
            first.entry(hash).or_insert(entry);
        }
    }
    for (hash, entry) in first {
        let meta = std::fs::metadata(store.asset_path(hash)).unwrap();
        assert_eq!(meta.mode() & 0o7777, entry.permissions(), "{}", entry.path);
        assert_eq!((meta.uid(), meta.gid()), (entry.uid, entry.gid));
    }
    assert!(temp_files(&store).is_empty());

    let again = store.ingest(&cached.id).unwrap();
    assert_eq!(
        again,
        IngestStats {
            written: 0,
            present: 474,
            bytes_written: 0,
        }
    );
}

#[test]
fn sync_assets_syncs_exactly_the_named_assets_and_names_a_missing_one() {
    let (_dir, store) = store();
    let cached = store.cache_stone(&upstream(BASH_COMPLETION)).unwrap();
    store.ingest(&cached.id).unwrap();
    let assets = index_of(&upstream(BASH_COMPLETION));
    store.sync_assets(&assets).unwrap();
    store.sync_assets(&[]).unwrap();
    // An asset the store does not have cannot be made durable: the commit must stop.
    let absent = AssetHash::of(b"not in this store");
    let mut with_absent = assets.clone();
    with_absent.push(absent);
    match store.sync_assets(&with_absent).unwrap_err() {
        StoreError::Sync { path, source } => {
            assert_eq!(path, store.asset_path(absent));
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Sync, got {other:?}"),
    }
}

#[test]
fn tiny_upstream_stones_share_the_empty_asset() {
    let (_dir, store) = store();
    let pizza = store.cache_stone(&upstream(ITALIAN_PIZZA)).unwrap();
    let pineapple = store.cache_stone(&upstream(PINEAPPLE)).unwrap();
    assert_eq!(store.ingest(&pizza.id).unwrap().written, 1);
    let stats = store.ingest(&pineapple.id).unwrap();
    assert_eq!((stats.written, stats.present), (0, 1));
    assert_eq!(store.list_assets().unwrap(), vec![AssetHash::EMPTY]);
    assert_eq!(
        std::fs::read(store.asset_path(AssetHash::EMPTY)).unwrap(),
        b""
    );
}

#[test]
fn ingest_many_unpacks_several_stones_in_parallel() {
    let (dir, store) = store();
    let a = build_stone(
        "a",
        &[
            file("bin/a", b"only in a", 0o755),
            file("share/shared", b"shared by a and b", 0o644),
        ],
    );
    let b = build_stone(
        "b",
        &[
            file("share/shared", b"shared by a and b", 0o644),
            file("share/b", &vec![7u8; 300_000], 0o644),
        ],
    );
    let mut ids = vec![
        cache_bytes(&store, dir.path(), "a.stone", &a).id,
        cache_bytes(&store, dir.path(), "b.stone", &b).id,
    ];
    for name in [BASH_COMPLETION, ITALIAN_PIZZA, PINEAPPLE] {
        ids.push(store.cache_stone(&upstream(name)).unwrap().id);
    }
    ids.push(ids[0]); // a duplicate is ingested once
    let stats = store.ingest_many(&ids).unwrap();
    // 474 + 1 (the empty file, shared by pizza and pineapple) + 3 built.
    assert_eq!(stats.written, 478);
    // pineapple or pizza found the empty asset placed; a or b found the shared one.
    assert_eq!(stats.present, 2);
    assert_eq!(stats.bytes_written, 872_279 + 9 + 17 + 300_000);
    let assets = store.list_assets().unwrap();
    assert_eq!(assets.len(), 478);
    for hash in assets {
        assert_eq!(store.verify_asset(hash).unwrap(), AssetCheck::Ok);
    }
    assert!(temp_files(&store).is_empty());
}

#[test]
fn two_stores_on_one_folder_ingesting_the_same_stone_write_each_asset_once() {
    let dir = tempfile::tempdir().unwrap();
    let moss = dir.path().join(".moss");
    let id = Store::open(&moss)
        .unwrap()
        .cache_stone(&upstream(BASH_COMPLETION))
        .unwrap()
        .id;
    let moss = Arc::new(moss);
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let moss = Arc::clone(&moss);
            std::thread::spawn(move || Store::open(&moss).unwrap().ingest(&id).unwrap())
        })
        .collect();
    let stats: Vec<IngestStats> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    for s in &stats {
        assert_eq!(s.written + s.present, 474);
    }
    assert_eq!(stats[0].written + stats[1].written, 474);
    assert_eq!(stats[0].bytes_written + stats[1].bytes_written, 872_279);
    let store = Store::open(&moss).unwrap();
    assert_eq!(store.recovered_temp_files(), 0);
    assert_eq!(store.list_assets().unwrap().len(), 474);
}

#[test]
fn opening_the_store_during_an_ingest_does_not_disturb_it() {
    let dir = tempfile::tempdir().unwrap();
    let moss = Arc::new(dir.path().join(".moss"));
    let store = Store::open(&moss).unwrap();
    let id = store.cache_stone(&upstream(BASH_COMPLETION)).unwrap().id;
    let done = Arc::new(AtomicBool::new(false));
    // Recovery runs over and over while the ingest writes: it may only ever take a temp
    // file nobody holds, and the writer must cope with losing one it had not locked yet.
    let opener = {
        let (moss, done) = (Arc::clone(&moss), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut opens = 0;
            while !done.load(Ordering::Relaxed) {
                Store::open(&moss).unwrap();
                opens += 1;
            }
            opens
        })
    };
    let stats = store.ingest(&id);
    done.store(true, Ordering::Relaxed);
    assert!(opener.join().unwrap() > 0);
    assert_eq!(stats.unwrap().written, 474);
    for hash in store.list_assets().unwrap() {
        assert_eq!(store.verify_asset(hash).unwrap(), AssetCheck::Ok);
    }
    assert!(temp_files(&store).is_empty());
}

#[test]
fn ingesting_an_uncached_package_names_the_missing_stone() {
    let (_dir, store) = store();
    let id = PackageId([0x42; 32]);
    match store.ingest(&id) {
        Err(StoreError::StoneNotCached { id: got, path }) => {
            assert_eq!(got, id);
            assert_eq!(path, store.cached_path(&id));
        }
        other => panic!("expected StoneNotCached, got {other:?}"),
    }
}

#[test]
fn a_stone_without_content_but_with_index_entries_is_refused() {
    let (dir, store) = store();
    let (mut stone, content_at) = build_plain_stone("hollow", &[file("a", b"bytes", 0o644)], 0);
    // Drop the content payload entirely and declare one payload fewer.
    stone.truncate(content_at - 32);
    let count = u16::from_be_bytes([stone[4], stone[5]]) - 1;
    stone[4..6].copy_from_slice(&count.to_be_bytes());
    let cached = cache_bytes(&store, dir.path(), "hollow.stone", &stone);
    // The stone's structure is checked before its content is looked for (issue 7,
    // defect 11).
    match store.ingest(&cached.id) {
        Err(StoreError::Stone { id, source, .. }) => {
            assert_eq!(id, cached.id);
            assert!(
                matches!(
                    *source,
                    mossfs_format::DecodeError::MissingPayload {
                        kind: mossfs_format::PayloadKind::Content,
                        ..
                    }
                ),
                "{source:?}"
            );
        }
        other => panic!("expected a missing content payload, got {other:?}"),
    }
    assert!(store.list_assets().unwrap().is_empty());
}

/// Bytes that do not compress to nothing, so a large asset really is large in the stream.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut bytes: Vec<u8> = (0..len.div_ceil(8))
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect();
    bytes.truncate(len);
    bytes
}

/// Assets larger than one unpack buffer (1 MiB) are written in parts by several threads;
/// many small ones go in batches, those from 64 KiB up padded to a block for a direct
/// write. All must land whole, with the first entry's metadata.
#[test]
fn large_and_many_small_assets_land_whole_with_their_metadata() {
    let (dir, store) = store();
    let mut files = vec![
        file("lib/exactly-one-buffer", &noise(1 << 20, 1), 0o644),
        file("lib/one-byte-over", &noise((1 << 20) + 1, 2), 0o755),
        file("bin/large-setuid", &noise(2 << 20 | 12345, 3), 0o4755).owned_by(1000, 100),
        file("share/empty", b"", 0o600),
        // From 64 KiB, whole assets are written with O_DIRECT: on a block, padded to one.
        file("lib/direct-smallest", &noise(64 << 10, 4), 0o644),
        file("lib/direct-odd", &noise((64 << 10) + 1, 5), 0o644),
        file("lib/direct-larger", &noise(300_001, 6), 0o755),
    ];
    let small: Vec<&'static str> = (0..100)
        .map(|i| &*Box::leak(format!("share/small/{i}").into_boxed_str()))
        .collect();
    for (i, path) in small.iter().enumerate() {
        let perm = if i % 3 == 0 { 0o755 } else { 0o644 };
        files.push(file(path, &noise(i * 97 % 9_000, 100 + i as u64), perm));
    }
    let stone = build_stone("big", &files);
    let cached = cache_bytes(&store, dir.path(), "big.stone", &stone);
    // The canonical file of an asset listed twice (the empty one) has the first entry's mode.
    let mut unique: HashMap<AssetHash, &TestFile> = HashMap::new();
    for f in &files {
        unique.entry(f.hash()).or_insert(f);
    }
    let stats = store.ingest(&cached.id).unwrap();
    assert_eq!(stats.written, unique.len() as u64);
    assert_eq!(
        stats.bytes_written,
        unique.values().map(|f| f.bytes.len() as u64).sum::<u64>()
    );
    assert_eq!(stats.present, 0);

    let root = rustix::process::geteuid().is_root();
    for (hash, f) in &unique {
        let path = store.asset_path(*hash);
        assert_eq!(std::fs::read(&path).unwrap(), f.bytes, "{}", f.path);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o7777, f.perm, "{}", f.path);
        if root {
            assert_eq!((meta.uid(), meta.gid()), (f.uid, f.gid), "{}", f.path);
        }
    }
    assert!(temp_files(&store).is_empty());
    assert_eq!(
        store.ingest(&cached.id).unwrap(),
        IngestStats {
            written: 0,
            present: unique.len() as u64,
            bytes_written: 0,
        }
    );
}

/// A large asset whose digest fails is never published, although its parts were written.
#[test]
fn a_damaged_large_asset_is_not_placed() {
    let (dir, store) = store();
    let files = vec![
        file("share/first", b"small and fine", 0o644),
        file("share/large", &noise(3 << 20, 9), 0o644),
        file("share/after", b"never reached", 0o644),
    ];
    let (mut stone, content_at) = build_plain_stone("damaged", &files, 0);
    // The last byte of the large asset, read after all its parts went out.
    let last = content_at + files[0].bytes.len() + files[1].bytes.len() - 1;
    stone[last] ^= 0x01;
    fix_content_checksum(&mut stone, content_at);
    let cached = cache_bytes(&store, dir.path(), "damaged.stone", &stone);
    match store.ingest(&cached.id) {
        Err(StoreError::Stone { source, .. }) => match *source {
            mossfs_format::DecodeError::BadDigest { expected, .. } => {
                assert_eq!(expected, files[1].hash())
            }
            other => panic!("expected BadDigest, got {other:?}"),
        },
        other => panic!("expected a Stone error, got {other:?}"),
    }
    assert_eq!(store.list_assets().unwrap(), vec![files[0].hash()]);
    assert!(temp_files(&store).is_empty());
}

/// A write that fails stops the writers and the reader, and reports that asset; the
/// ingest neither hangs nor leaves temp files.
#[test]
fn a_failing_write_stops_the_ingest_and_names_the_asset() {
    let (_dir, store) = store();
    let cached = store.cache_stone(&upstream(BASH_COMPLETION)).unwrap();
    // A file where a shard folder should be: every asset of that shard fails with ENOTDIR.
    let blocked = index_of(&upstream(BASH_COMPLETION))[200];
    let shard = &blocked.to_string()[..2];
    std::fs::write(store.assets_dir().join(shard), b"not a folder").unwrap();
    match store.ingest(&cached.id) {
        Err(StoreError::WriteAsset { hash, path, source }) => {
            assert_eq!(&hash.to_string()[..2], shard);
            assert_eq!(path, store.asset_path(hash));
            assert_eq!(
                source.raw_os_error(),
                Some(rustix::io::Errno::NOTDIR.raw_os_error())
            );
        }
        other => panic!("expected WriteAsset, got {other:?}"),
    }
    assert!(temp_files(&store).is_empty());
    // Once the obstacle is gone, the same ingest completes.
    std::fs::remove_file(store.assets_dir().join(shard)).unwrap();
    let stats = store.ingest(&cached.id).unwrap();
    assert_eq!(stats.written + stats.present, 474);
    assert_eq!(store.list_assets().unwrap().len(), 474);
}

/// A stone given on the command line is copied into the cache past the page cache, in
/// blocks padded to a page and cut back to its length: the copy must still be the stone,
/// byte for byte, at every size around a block's edge, and readable in reads of any size
/// and place, as the plan reads a stone's head from it.
#[test]
fn a_cached_copy_is_the_stone_at_every_size_around_a_block() {
    use sha2::{Digest, Sha256};
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::FileExt;

    let (dir, store) = store();
    let sizes = [
        0,
        1,
        4095,
        4096,
        4097,
        (64 << 10) - 1,
        64 << 10,
        (64 << 10) + 1,
        1 << 20,
        (1 << 20) + 1,
        (3 << 20) + 777,
    ];
    for (i, len) in sizes.into_iter().enumerate() {
        let bytes = noise(len, 500 + i as u64);
        let path = dir.path().join(format!("{len}.stone"));
        std::fs::write(&path, &bytes).unwrap();
        let copy = store.copy_stone(&path).unwrap();
        assert_eq!(copy.size, len as u64);
        assert_eq!(copy.id, PackageId(Sha256::digest(&bytes).into()), "{len}");
        if len >= 4100 {
            let mut seven = [0u8; 7];
            copy.file().read_exact_at(&mut seven, 4093).unwrap();
            assert_eq!(seven, bytes[4093..4100], "{len}");
        }
        let mut file = copy.file();
        file.seek(SeekFrom::Start(0)).unwrap();
        let mut read = Vec::new();
        file.read_to_end(&mut read).unwrap();
        assert!(read == bytes, "the copy of {len} bytes differs");
        let cached = copy.keep().unwrap();
        assert!(std::fs::read(&cached.path).unwrap() == bytes, "{len}");
        assert_eq!(cached.size, len as u64);
    }
    assert!(temp_files(&store).is_empty());
}
