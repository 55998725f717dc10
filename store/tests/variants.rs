//! One asset, several permissions: the canonical file keeps the metadata of the first
//! layout entry, and `linkable` makes variants for the rest without touching it.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::*;
use mossfs_format::AssetHash;
use mossfs_store::{Store, StoreError};

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn ingest_tools() -> (tempfile::TempDir, Store, Vec<TestFile>) {
    let (dir, store) = store();
    let files = vec![
        file("bin/tool", b"#!/bin/sh\necho tool\n", 0o755),
        file("bin/tool-suid", b"#!/bin/sh\necho tool\n", 0o4755),
        file("share/doc", b"documentation", 0o640).owned_by(1000, 100),
    ];
    let stone = build_stone("tools", &files);
    let cached = cache_bytes(&store, dir.path(), "tools.stone", &stone);
    store.ingest(&cached.id).unwrap();
    (dir, store, files)
}

#[test]
fn canonical_assets_take_the_first_entry_and_variants_the_rest() {
    let (_dir, store, files) = ingest_tools();
    let tool = files[0].hash();
    let canonical = store.asset_path(tool);
    let before = std::fs::metadata(&canonical).unwrap();
    assert_eq!(before.mode() & 0o7777, 0o755);
    assert_eq!((before.uid(), before.gid()), (0, 0));
    if is_root() {
        let doc = std::fs::metadata(store.asset_path(files[2].hash())).unwrap();
        assert_eq!(doc.mode() & 0o7777, 0o640);
        assert_eq!((doc.uid(), doc.gid()), (1000, 100));
    }

    // Same metadata: the canonical file itself. Type bits in `perm` are ignored.
    assert_eq!(store.linkable(tool, 0o755, 0, 0).unwrap(), canonical);
    assert_eq!(store.linkable(tool, 0o100755, 0, 0).unwrap(), canonical);

    let suid = store.linkable(tool, 0o4755, 0, 0).unwrap();
    assert_eq!(
        suid.file_name().unwrap().to_str().unwrap(),
        format!("{tool}-4755-0-0")
    );
    let meta = std::fs::metadata(&suid).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o4755, "setuid survives the chown");
    assert_ne!(meta.ino(), before.ino());
    assert_eq!(std::fs::read(&suid).unwrap(), files[0].bytes);

    if is_root() {
        let owned = store.linkable(tool, 0o700, 1000, 1000).unwrap();
        let meta = std::fs::metadata(&owned).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o700);
        assert_eq!((meta.uid(), meta.gid()), (1000, 1000));
    }

    // Asking again reuses the variant.
    assert_eq!(store.linkable(tool, 0o4755, 0, 0).unwrap(), suid);
    assert_eq!(std::fs::metadata(&suid).unwrap().ino(), meta.ino());

    // The canonical file is untouched by all of this.
    let after = std::fs::metadata(&canonical).unwrap();
    assert_eq!(
        (
            after.ino(),
            after.mode(),
            after.uid(),
            after.gid(),
            after.nlink()
        ),
        (before.ino(), before.mode(), before.uid(), before.gid(), 1)
    );
    // Variants are not canonical assets.
    let mut expected = vec![tool, files[2].hash()];
    expected.sort();
    assert_eq!(store.list_assets().unwrap(), expected);
    assert!(temp_files(&store).is_empty());
}

#[test]
fn a_variant_whose_metadata_drifted_is_made_again() {
    let (_dir, store, files) = ingest_tools();
    let tool = files[0].hash();
    let variant = store.linkable(tool, 0o644, 0, 0).unwrap();
    std::fs::set_permissions(&variant, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(store.linkable(tool, 0o644, 0, 0).unwrap(), variant);
    let meta = std::fs::metadata(&variant).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o644);
    assert_eq!(std::fs::read(&variant).unwrap(), files[0].bytes);
}

#[test]
fn linkable_refuses_missing_assets_and_unsettable_owners() {
    let (_dir, store, files) = ingest_tools();
    let absent = AssetHash::of(b"never ingested");
    match store.linkable(absent, 0o644, 0, 0) {
        Err(StoreError::AssetMissing { hash, path }) => {
            assert_eq!(hash, absent);
            assert_eq!(path, store.asset_path(absent));
        }
        other => panic!("expected AssetMissing, got {other:?}"),
    }
    if is_root() {
        let tool = files[0].hash();
        match store.linkable(tool, 0o755, u32::MAX, 0) {
            Err(StoreError::InvalidOwner { hash, uid, .. }) => {
                assert_eq!((hash, uid), (tool, u32::MAX));
            }
            other => panic!("expected InvalidOwner, got {other:?}"),
        }
    }
}
