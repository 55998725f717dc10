//! Bad stones get a clear error naming the stone, and leave no asset under its final name
//! that fails its hash, and no temp file (DESIGN.md §6.1, §6.4).

mod common;

use common::*;
use mossfs_format::{AssetHash, DecodeError, PayloadKind};
use mossfs_store::{AssetCheck, StoreError};

fn files() -> Vec<TestFile> {
    vec![
        file(
            "share/first",
            b"the first asset, which comes out fine",
            0o644,
        ),
        file(
            "share/second",
            b"the second asset, which a test damages",
            0o644,
        ),
    ]
}

/// The parts of the `StoreError::Stone` that `result` must be.
fn stone_error<T: std::fmt::Debug>(
    result: Result<T, StoreError>,
) -> (mossfs_format::PackageId, std::path::PathBuf, DecodeError) {
    match result {
        Err(StoreError::Stone { id, path, source }) => (id, path, *source),
        other => panic!("expected a Stone error, got {other:?}"),
    }
}

/// Asserts that the store holds exactly `expected`, each intact, and no temp files.
fn assert_only(store: &mossfs_store::Store, expected: &[AssetHash]) {
    let mut expected = expected.to_vec();
    expected.sort();
    assert_eq!(store.list_assets().unwrap(), expected);
    for &hash in &expected {
        assert_eq!(store.verify_asset(hash).unwrap(), AssetCheck::Ok);
    }
    assert!(temp_files(store).is_empty(), "{:?}", temp_files(store));
}

#[test]
fn a_damaged_asset_fails_its_digest_and_is_not_placed() {
    let (dir, store) = store();
    let files = files();
    let (mut stone, content_at) = build_plain_stone("damaged", &files, 0);
    // Flip a byte inside the second asset and keep the payload checksum valid, so only the
    // asset's own digest can notice.
    let second_at = content_at + files[0].bytes.len() + 4;
    stone[second_at] ^= 0xff;
    fix_content_checksum(&mut stone, content_at);
    let cached = cache_bytes(&store, dir.path(), "damaged.stone", &stone);

    let (id, path, source) = stone_error(store.ingest(&cached.id));
    assert_eq!((id, path), (cached.id, cached.path));
    match source {
        DecodeError::BadDigest { expected, .. } => assert_eq!(expected, files[1].hash()),
        other => panic!("expected BadDigest, got {other:?}"),
    }
    // The first asset was verified and may stay; the damaged one must not exist.
    assert!(!store.has_asset(files[1].hash()));
    assert_only(&store, &[files[0].hash()]);
}

#[test]
fn a_bad_payload_checksum_is_reported_after_the_assets() {
    let (dir, store) = store();
    let files = files();
    // Four filler bytes after the first asset belong to no asset: damaging one leaves every
    // digest intact, and only the payload checksum can tell.
    let (mut stone, content_at) = build_plain_stone("filler", &files, 4);
    stone[content_at + files[0].bytes.len() + 1] ^= 0x01;
    let cached = cache_bytes(&store, dir.path(), "filler.stone", &stone);

    let error = store.ingest(&cached.id).unwrap_err();
    let message = error.to_string();
    let (id, _, source) = stone_error::<()>(Err(error));
    assert_eq!(id, cached.id);
    assert!(
        matches!(
            source,
            DecodeError::BadChecksum {
                kind: PayloadKind::Content,
                ..
            }
        ),
        "expected a content BadChecksum, got {source:?}"
    );
    assert!(
        message.contains(&cached.id.to_string()),
        "the error names the package and the cached file: {message}"
    );
    assert!(message.contains(&cached.path.display().to_string()));
    // Both assets hashed correctly, so both may be kept.
    assert_only(&store, &[files[0].hash(), files[1].hash()]);
}

#[test]
fn a_truncated_stone_is_refused_without_leftovers() {
    let (dir, store) = store();
    let full = build_stone("cut", &files());
    let cached = cache_bytes(&store, dir.path(), "cut.stone", &full[..full.len() - 10]);
    match stone_error(store.ingest(&cached.id)).2 {
        DecodeError::Truncated {
            what: "content payload",
            expected,
            found,
            ..
        } => assert_eq!(expected - found, 10),
        other => panic!("expected a truncated content error, got {other:?}"),
    }
    let kept: Vec<_> = store.list_assets().unwrap();
    assert_only(&store, &kept);
}

#[test]
fn a_layout_naming_an_unindexed_asset_is_refused_before_any_write() {
    let (dir, store) = store();
    let files = files();
    let (stone, _) = build_plain_stone("liar", &files[..1], 0);
    // Take the layout of a stone that also names the second file, but keep this stone's
    // index and content: the layout now needs an asset no index entry provides.
    let (donor, _) = build_plain_stone("liar", &files, 0);
    let lying = splice_layout(&donor, &stone);
    let cached = cache_bytes(&store, dir.path(), "liar.stone", &lying);
    match stone_error(store.ingest(&cached.id)).2 {
        DecodeError::MissingAsset { hash, .. } => assert_eq!(hash, files[1].hash()),
        other => panic!("expected MissingAsset, got {other:?}"),
    }
    assert_only(&store, &[]);
}

#[test]
fn not_a_stone_at_all() {
    let (dir, store) = store();
    let cached = cache_bytes(&store, dir.path(), "junk.stone", b"#!/bin/sh\necho hi\n");
    match stone_error(store.ingest(&cached.id)).2 {
        DecodeError::BadMagic { found } => assert_eq!(&found, b"#!/b"),
        other => panic!("expected BadMagic, got {other:?}"),
    }
}

/// Payloads of a stone as (offset, total length) pairs, header included.
fn payloads(stone: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 32;
    while at < stone.len() {
        let stored = u64::from_be_bytes(stone[at..at + 8].try_into().unwrap()) as usize;
        out.push((at, 32 + stored));
        at += 32 + stored;
    }
    out
}

/// `base` with its layout payload (the second) replaced by the one from `donor`.
fn splice_layout(donor: &[u8], base: &[u8]) -> Vec<u8> {
    let (d_at, d_len) = payloads(donor)[1];
    let (b_at, b_len) = payloads(base)[1];
    let mut out = base[..b_at].to_vec();
    out.extend_from_slice(&donor[d_at..d_at + d_len]);
    out.extend_from_slice(&base[b_at + b_len..]);
    out
}
