//! Applying delta stones (DESIGN.md §11) into real stores on disk: the rebuilt assets are
//! the same files, bytes and modes as an ingest of the full stone gives, and every failure
//! is one that falls back to the full stone, places nothing that failed its hash, and
//! leaves a store where the full stone then ingests to the same result.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use common::{TestFile, build_stone, cache_bytes, file, store, temp_files};
use mossfs_format::delta::make::{self, Options};
use mossfs_format::{
    AssetHash, DeltaRecord, FileType, IndexEntry, Method, PackageId, Preamble, Reader, RecordError,
    RecordHeader, Writer, WriterOptions,
};
use mossfs_store::{Store, StoreError};

/// Bytes that compress, differ from run to run of `seed`, and look like a binary.
fn noise(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761) | 1;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if i % 7 == 0 {
                (x >> 24) as u8
            } else {
                (i % 61) as u8
            }
        })
        .collect()
}

fn edited(bytes: &[u8], at: usize, insert: &[u8]) -> Vec<u8> {
    let mut out = bytes[..at].to_vec();
    out.extend_from_slice(insert);
    out.extend_from_slice(&bytes[at..]);
    out
}

/// A version pair with everything a delta meets: a file changed in place, a soname that
/// changed its version, an unchanged file, a removed file, a new file, a new empty file,
/// a file that shrinks to nothing, a tiny changed file, and an executable's mode.
fn pair() -> (Vec<TestFile>, Vec<TestFile>) {
    let lib = noise(1, 300_000);
    let tool = noise(2, 80_000);
    let doc = noise(3, 20_000);
    let gone = noise(4, 5_000);
    let shrinks = noise(5, 9_000);
    let old = vec![
        file("bin/tool", &tool, 0o755),
        file("lib/libfoo.so.1.2.3", &lib, 0o755),
        file("share/doc/README", &doc, 0o644),
        file("share/gone", &gone, 0o644),
        file("share/shrinks", &shrinks, 0o644),
        file("share/tiny", b"version 1\n", 0o644),
    ];
    let new = vec![
        file("bin/tool", &edited(&tool, 40_000, b"a new option"), 0o755),
        file("lib/libfoo.so.1.2.4", &edited(&lib, 1000, b"1.2.4"), 0o755),
        file("share/doc/README", &doc, 0o644),
        file("share/new", &noise(6, 30_000), 0o600),
        file("share/empty", b"", 0o644),
        file("share/shrinks", b"", 0o644),
        file("share/tiny", b"version 2\n", 0o644),
    ];
    (old, new)
}

fn read_stone(bytes: &[u8]) -> (mossfs_format::Stone, HashMap<AssetHash, Vec<u8>>) {
    let mut reader = Reader::new(bytes).unwrap();
    let stone = reader.read_metadata().unwrap();
    let mut assets = HashMap::new();
    let mut content = reader.content(&stone).unwrap().unwrap();
    while let Some(mut asset) = content.next_asset().unwrap() {
        let digest = asset.entry().digest;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut asset, &mut bytes).unwrap();
        assets.insert(digest, bytes);
    }
    content.finish().unwrap();
    (stone, assets)
}

/// A delta stone from `old` to `new` with one record per target, so that a test can lie
/// about one target's record.
fn build_delta(old: &[u8], new: &[u8]) -> (Vec<u8>, Vec<DeltaRecord>) {
    build(old, new, false)
}

/// A delta stone from `old` to `new`, made as `mossfs delta` makes it (with `grouped`,
/// small targets are tried as one record), or with one record per target.
fn build(old: &[u8], new: &[u8], grouped: bool) -> (Vec<u8>, Vec<DeltaRecord>) {
    let (old_stone, old_assets) = read_stone(old);
    let (new_stone, new_assets) = read_stone(new);
    let pairings = make::choose_bases(
        &old_stone.layout,
        &old_stone.index,
        &new_stone.layout,
        &new_stone.index,
    );
    let options = Options::default();
    let units = if grouped {
        make::units(&pairings, &options)
    } else {
        (0..pairings.len())
            .map(|i| make::Unit { pairings: vec![i] })
            .collect()
    };
    let old_bytes = |h: AssetHash| old_assets.get(&h).map(Vec::as_slice);
    let new_bytes = |h: AssetHash| new_assets.get(&h).map(Vec::as_slice);
    let records: Vec<DeltaRecord> = units
        .iter()
        .flat_map(|unit| {
            make::best(
                &old_stone.index,
                &pairings,
                unit,
                &old_bytes,
                &new_bytes,
                &options,
            )
            .unwrap()
        })
        .collect();
    (write_delta(&new_stone, &records), records)
}

fn write_delta(new: &mossfs_format::Stone, records: &[DeltaRecord]) -> Vec<u8> {
    let options = WriterOptions {
        level: 3,
        threads: 0,
    };
    let mut writer = Writer::new(Cursor::new(Vec::new()), FileType::Delta, options).unwrap();
    writer.add_meta(&new.meta).unwrap();
    writer.add_layout(&new.layout).unwrap();
    writer.add_index(&new.index).unwrap();
    let preamble = Preamble {
        from: PackageId([1; 32]),
        to: PackageId([2; 32]),
        to_size: 999,
    };
    writer.add_delta(&preamble, records).unwrap();
    writer.finish().unwrap().into_inner()
}

/// Every canonical asset of a store: bytes and permission bits.
fn contents(store: &Store) -> BTreeMap<AssetHash, (Vec<u8>, u32)> {
    store
        .list_assets()
        .unwrap()
        .into_iter()
        .map(|h| {
            let path = store.asset_path(h);
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
            (h, (std::fs::read(&path).unwrap(), mode))
        })
        .collect()
}

/// A store holding the old package, ingested from its full stone, and the paths of the
/// new full stone and the delta, written beside it.
struct Setup {
    dir: tempfile::TempDir,
    store: Store,
    new_full: Vec<u8>,
    delta: PathBuf,
    /// The old package's index, in which the delta's records name their bases.
    old_index: Vec<IndexEntry>,
}

fn setup(delta_bytes: impl FnOnce(&[u8], &[u8]) -> Vec<u8>) -> Setup {
    let (old_files, new_files) = pair();
    let old_full = build_stone("foo", &old_files);
    let new_full = build_stone("foo", &new_files);
    let (dir, store) = store();
    let cached = cache_bytes(&store, dir.path(), "old.stone", &old_full);
    store.ingest(&cached.id).unwrap();
    let delta = dir.path().join("foo.delta.stone");
    std::fs::write(&delta, delta_bytes(&old_full, &new_full)).unwrap();
    Setup {
        dir,
        store,
        new_full,
        delta,
        old_index: read_stone(&old_full).0.index,
    }
}

/// What a store holds after ingesting the old and then the new full stone.
fn reference() -> BTreeMap<AssetHash, (Vec<u8>, u32)> {
    let (old_files, new_files) = pair();
    let (dir, store) = store();
    for (name, files) in [("old.stone", &old_files), ("new.stone", &new_files)] {
        let cached = cache_bytes(&store, dir.path(), name, &build_stone("foo", files));
        store.ingest(&cached.id).unwrap();
    }
    contents(&store)
}

/// After a failed apply: nothing half-made is left, the assets are what they were, and the
/// full stone ingests to the reference.
fn falls_back(setup: &Setup, err: &StoreError, before: &BTreeMap<AssetHash, (Vec<u8>, u32)>) {
    assert!(err.falls_back_to_full_stone(), "{err}");
    assert!(temp_files(&setup.store).is_empty());
    for (hash, (bytes, _)) in contents(&setup.store) {
        assert_eq!(
            AssetHash::of(&bytes),
            hash,
            "an asset that fails its hash was placed"
        );
        if !before.contains_key(&hash) {
            panic!("asset {hash} was placed by a delta that failed its first pass");
        }
    }
    let cached = cache_bytes(&setup.store, setup.dir.path(), "new.stone", &setup.new_full);
    setup.store.ingest(&cached.id).unwrap();
    let mut after = contents(&setup.store);
    // The damaged-base test leaves its damaged file; compare everything else.
    after.retain(|h, (bytes, _)| AssetHash::of(bytes) == *h);
    let mut want = reference();
    want.retain(|h, _| after.contains_key(h));
    assert_eq!(after.len(), want.len());
    assert_eq!(after, want);
}

fn only(setup: &Setup) -> BTreeMap<AssetHash, (Vec<u8>, u32)> {
    contents(&setup.store)
}

#[test]
fn a_delta_rebuilds_exactly_what_the_full_stone_unpacks() {
    let setup = setup(|old, new| build_delta(old, new).0);
    let applied = setup
        .store
        .apply_delta(&setup.delta, &setup.old_index)
        .unwrap();
    assert_eq!(applied.preamble.to, PackageId([2; 32]));
    assert_eq!(applied.stone.name(), Some("foo"));
    // New: tool, libfoo, new, empty, tiny. README is shared. shrinks → empty is the empty
    // asset, counted once.
    assert_eq!((applied.written, applied.present), (5, 1));
    rebuilt_the_full_stones_assets_and_again_writes_nothing(&setup);
}

/// The store holds what the full stone unpacks and no temp file, and applying the delta
/// again is free: everything is there.
fn rebuilt_the_full_stones_assets_and_again_writes_nothing(setup: &Setup) {
    assert_eq!(contents(&setup.store), reference());
    assert!(temp_files(&setup.store).is_empty());
    let again = setup
        .store
        .apply_delta(&setup.delta, &setup.old_index)
        .unwrap();
    assert_eq!((again.written, again.present), (0, 6));
}

#[test]
fn a_grouped_delta_rebuilds_exactly_what_the_full_stone_unpacks() {
    let setup = setup(|old, new| {
        let (bytes, records) = build(old, new, true);
        // Every target here is small: they are tried as one group, which wins, so one
        // record rebuilds all five against both bases.
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0].header.targets.len(), 5);
        assert_eq!(records[0].header.bases.len(), 2);
        bytes
    });
    let applied = setup
        .store
        .apply_delta(&setup.delta, &setup.old_index)
        .unwrap();
    assert_eq!((applied.written, applied.present), (5, 1));
    rebuilt_the_full_stones_assets_and_again_writes_nothing(&setup);
}

#[test]
fn bases_are_chosen_by_path_then_by_version_stripped_name() {
    let (old_files, new_files) = pair();
    let old_full = build_stone("foo", &old_files);
    let old_index = read_stone(&old_full).0.index;
    let (_, records) = build_delta(&old_full, &build_stone("foo", &new_files));
    let by_target: HashMap<AssetHash, RecordHeader> = records
        .iter()
        .map(|r| (r.header.targets[0].hash, r.header.clone()))
        .collect();
    let bases_of = |new: usize| {
        let r = &by_target[&new_files[new].hash()];
        r.resolve_bases(&old_index)
            .unwrap()
            .iter()
            .map(|b| (b.hash, b.size))
            .collect::<Vec<_>>()
    };
    // bin/tool: same path.
    assert_eq!(bases_of(0), vec![(old_files[0].hash(), 80_000)]);
    // lib/libfoo.so.1.2.4 from lib/libfoo.so.1.2.3.
    assert_eq!(bases_of(1), vec![(old_files[1].hash(), 300_000)]);
    // Unrelated new data, the empty file and a tiny file are whole.
    for new in [3, 4, 6] {
        assert_eq!(
            by_target[&new_files[new].hash()].method(),
            Method::Whole,
            "{}",
            new_files[new].path
        );
    }
    // The patches are far smaller than the files.
    for new in [0, 1] {
        let r = &by_target[&new_files[new].hash()];
        assert!(
            r.frame_len < 200,
            "{}: {} bytes",
            new_files[new].path,
            r.frame_len
        );
    }
    // The unchanged README has no record.
    assert!(!by_target.contains_key(&new_files[2].hash()));
}

#[test]
fn a_missing_base_is_refused_before_anything_is_written() {
    let setup = setup(|old, new| build_delta(old, new).0);
    // An empty store: no base is here.
    let (_dir, empty) = store();
    let err = empty
        .apply_delta(&setup.delta, &setup.old_index)
        .unwrap_err();
    assert!(matches!(err, StoreError::DeltaBaseMissing { .. }), "{err}");
    assert!(err.falls_back_to_full_stone());
    assert!(empty.list_assets().unwrap().is_empty());
}

#[test]
fn a_store_without_the_unchanged_files_is_refused_as_incomplete() {
    // Only the patched bases are here; the unchanged README is not.
    let setup = setup(|old, new| build_delta(old, new).0);
    let (old_files, _) = pair();
    std::fs::remove_file(setup.store.asset_path(old_files[2].hash())).unwrap();
    let before = only(&setup);
    let err = setup
        .store
        .apply_delta(&setup.delta, &setup.old_index)
        .unwrap_err();
    assert!(
        matches!(err, StoreError::DeltaIncomplete { missing, count: 1, .. } if missing == old_files[2].hash()),
        "{err}"
    );
    falls_back(&setup, &err, &before);
}

#[test]
fn a_damaged_base_is_named_and_nothing_built_on_it_is_placed() {
    let setup = setup(|old, new| build_delta(old, new).0);
    let (old_files, new_files) = pair();
    let base = setup.store.asset_path(old_files[1].hash());
    let mut bytes = std::fs::read(&base).unwrap();
    bytes[5] ^= 1;
    std::fs::write(&base, &bytes).unwrap();
    let err = setup
        .store
        .apply_delta(&setup.delta, &setup.old_index)
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::DeltaBaseDamaged { base, .. } if *base == old_files[1].hash()),
        "{err}"
    );
    assert!(!setup.store.has_asset(new_files[1].hash()));
    // Records before the damaged one may have placed verified assets; none is wrong.
    for (hash, (bytes, _)) in only(&setup) {
        if hash != old_files[1].hash() {
            assert_eq!(AssetHash::of(&bytes), hash);
        }
    }
    // The fallback: the full stone still ingests everything the package needs.
    let cached = cache_bytes(&setup.store, setup.dir.path(), "new.stone", &setup.new_full);
    setup.store.ingest(&cached.id).unwrap();
    for f in &new_files {
        assert_eq!(
            std::fs::read(setup.store.asset_path(f.hash())).unwrap(),
            f.bytes
        );
    }
}

#[test]
fn a_damaged_delta_is_refused_before_anything_is_written() {
    let setup = setup(|old, new| {
        let mut delta = build_delta(old, new).0;
        let last = delta.len() - 3;
        delta[last] ^= 0x40;
        delta
    });
    let before = only(&setup);
    let err = setup
        .store
        .apply_delta(&setup.delta, &setup.old_index)
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Delta { source, .. }
            if matches!(**source, mossfs_format::DecodeError::BadChecksum { .. })),
        "{err}"
    );
    falls_back(&setup, &err, &before);
}

#[test]
fn a_record_that_rebuilds_other_bytes_is_refused_by_hash() {
    // A well-formed delta that lies: the tiny file's record decodes to bytes of the right
    // length that hash to something else.
    let setup = setup(|old, new| {
        let (_, mut records) = build_delta(old, new);
        let (new_stone, _) = read_stone(new);
        let target = AssetHash::of(b"version 2\n");
        let record = records
            .iter_mut()
            .find(|r| r.header.targets[0].hash == target)
            .unwrap();
        let forged = make::record(
            &[],
            &[make::Bytes {
                hash: target,
                position: 0,
                bytes: b"version 3\n",
            }],
            3,
        )
        .unwrap();
        record.frame = forged.frame;
        record.header.frame_len = record.frame.len() as u64;
        write_delta(&new_stone, &records)
    });
    let err = setup
        .store
        .apply_delta(&setup.delta, &setup.old_index)
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::DeltaRecord { source, .. }
            if matches!(**source, mossfs_format::ApplyError::Hash { .. })),
        "{err}"
    );
    assert!(!setup.store.has_asset(AssetHash::of(b"version 2\n")));
    assert!(!setup.store.has_asset(AssetHash::of(b"version 3\n")));
    assert!(temp_files(&setup.store).is_empty());
    for (hash, (bytes, _)) in only(&setup) {
        assert_eq!(AssetHash::of(&bytes), hash);
    }
    let cached = cache_bytes(&setup.store, setup.dir.path(), "new.stone", &setup.new_full);
    setup.store.ingest(&cached.id).unwrap();
    assert_eq!(contents(&setup.store), reference());
}

#[test]
fn a_full_stone_given_as_a_delta_is_refused() {
    let setup = setup(|old, new| build_delta(old, new).0);
    let full = setup.dir.path().join("new.stone");
    std::fs::write(&full, &setup.new_full).unwrap();
    let err = setup
        .store
        .apply_delta(&full, &setup.old_index)
        .unwrap_err();
    assert!(matches!(err, StoreError::NotADelta { .. }), "{err}");
    assert!(err.falls_back_to_full_stone());
}

#[test]
fn a_delta_applied_against_another_packages_index_falls_back() {
    let setup = setup(|old, new| build_delta(old, new).0);
    let before = only(&setup);
    // An index too short for the positions the records name: refused by position, in the
    // first pass.
    let err = setup.store.apply_delta(&setup.delta, &[]).unwrap_err();
    assert!(
        matches!(&err, StoreError::DeltaRecord { source, .. }
        if matches!(**source, mossfs_format::ApplyError::Bases {
            source: RecordError::DeltaBasePosition { entries: 0, .. },
            ..
        })),
        "{err}"
    );
    assert_eq!(only(&setup), before);
    falls_back(&setup, &err, &before);
}

#[test]
fn bases_named_by_a_reordered_index_do_not_rebuild_anything() {
    // The same assets in another order: every position names an asset the store holds and
    // that hashes to its name, but not the one the patch was made against. The targets'
    // hashes refuse every record made on them.
    let setup = setup(|old, new| build_delta(old, new).0);
    let mut other = setup.old_index.clone();
    other.reverse();
    let err = setup.store.apply_delta(&setup.delta, &other).unwrap_err();
    assert!(
        matches!(&err, StoreError::DeltaRecord { source, .. }
            if matches!(**source,
                mossfs_format::ApplyError::Hash { .. }
                | mossfs_format::ApplyError::Decompress { .. }
                | mossfs_format::ApplyError::Size { .. })),
        "{err}"
    );
    for (hash, (bytes, _)) in only(&setup) {
        assert_eq!(AssetHash::of(&bytes), hash, "a wrong asset was placed");
    }
    falls_back_after_placing_only_verified(&setup, &err);
}

/// Like [`falls_back`] for a failure in the second pass: records before the failing one
/// may have placed verified assets, so the store may have grown, but only by assets the
/// new package has.
fn falls_back_after_placing_only_verified(setup: &Setup, err: &StoreError) {
    assert!(err.falls_back_to_full_stone(), "{err}");
    assert!(temp_files(&setup.store).is_empty());
    let cached = cache_bytes(&setup.store, setup.dir.path(), "new.stone", &setup.new_full);
    setup.store.ingest(&cached.id).unwrap();
    assert_eq!(contents(&setup.store), reference());
}
