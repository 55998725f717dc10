//! Records that lie: counts, meta values, layout entries and index ranges.

use mossfs_format::{
    AssetHash, DecodeError, IndexEntry, MetaTag, PathError, PayloadKind, Reader, RecordError,
    index, layout, meta,
};

use super::forge::*;

// ---------------------------------------------------------------------------------------
// Record counts.
// ---------------------------------------------------------------------------------------

/// A header claiming four billion records must cost nothing: the count is only compared
/// with what the body really held. (If the reader allocated from it, this test would
/// abort or crawl instead of finishing in microseconds.)
#[test]
fn absurd_record_counts() {
    for (i, kind) in [PayloadKind::Meta, PayloadKind::Layout, PayloadKind::Index]
        .into_iter()
        .enumerate()
    {
        let mut stone = raw();
        let offset = stone.offset(i);
        let payload = stone.payload(kind);
        let real = u64::from(payload.header.records);
        payload.header.records = u32::MAX;
        let started = std::time::Instant::now();
        let err = reject(&stone.bytes());
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        let DecodeError::RecordCount {
            kind: k,
            offset: at,
            declared,
            found,
        } = err
        else {
            panic!("{kind}: {err:?}")
        };
        assert_eq!((k, at, declared, found), (kind, offset, u32::MAX, real));
    }
}

#[test]
fn zero_records_declared_for_a_full_layout() {
    let mut stone = raw();
    stone.payload(PayloadKind::Layout).header.records = 0;
    let err = reject(&stone.bytes());
    assert!(
        matches!(
            err,
            DecodeError::RecordCount {
                kind: PayloadKind::Layout,
                declared: 0,
                found: 6,
                ..
            }
        ),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Records that lie: meta.
// ---------------------------------------------------------------------------------------

/// One meta record, field by field.
fn meta_record(tag: u16, kind: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(value.len() as u32).to_be_bytes()); // value length
    out.extend_from_slice(&tag.to_be_bytes()); // tag
    out.push(kind); // primitive kind
    out.push(0); // padding
    out.extend_from_slice(value);
    out
}

/// The honest meta records, with `extra` appended as record number `nano_meta().len()`.
fn stone_with_meta_record(extra: &[u8]) -> (RawStone, u64) {
    let records = nano_meta();
    let mut plain = meta::encode_all(&records);
    plain.extend_from_slice(extra);
    let mut stone = raw();
    let payload = stone.payload(PayloadKind::Meta);
    payload.set_plain(&plain);
    payload.header.records += 1;
    (stone, records.len() as u64)
}

#[test]
fn invalid_utf8_in_a_meta_string() {
    let summary = MetaTag::Summary.to_u16();
    let (stone, at) = stone_with_meta_record(&meta_record(summary, 9, b"caf\xc3\x28\0"));
    let err = reject(&stone.bytes());
    assert!(
        matches!(
            &err,
            DecodeError::BadRecord {
                kind: PayloadKind::Meta,
                index,
                package: None,
                reason: RecordError::BadUtf8 { what: "a meta string" },
            } if *index == at
        ),
        "{err:?}"
    );
}

#[test]
fn invalid_utf8_in_a_relation() {
    let depends = MetaTag::Depends.to_u16();
    let (stone, at) = stone_with_meta_record(&meta_record(depends, 10, b"\x01libc\xff.so\0"));
    let err = reject(&stone.bytes());
    assert!(
        matches!(
            &err,
            DecodeError::BadRecord {
                kind: PayloadKind::Meta,
                index,
                package: None,
                reason: RecordError::BadUtf8 { what: "a relation" },
            } if *index == at
        ),
        "{err:?}"
    );
}

#[test]
fn relation_without_text() {
    let provides = MetaTag::Provides.to_u16();
    let (stone, at) = stone_with_meta_record(&meta_record(provides, 11, b"\x06\0"));
    let err = reject(&stone.bytes());
    assert!(
        matches!(&err, DecodeError::BadRecord { kind: PayloadKind::Meta, index, reason: RecordError::BadRelation, .. } if *index == at),
        "{err:?}"
    );
}

#[test]
fn meta_value_longer_than_the_payload() {
    let mut record = meta_record(MetaTag::Homepage.to_u16(), 9, b"https://");
    record[..4].copy_from_slice(&u32::MAX.to_be_bytes());
    let (stone, at) = stone_with_meta_record(&record);
    let err = reject(&stone.bytes());
    assert!(
        matches!(
            &err,
            DecodeError::BadRecord {
                kind: PayloadKind::Meta,
                index,
                reason: RecordError::Short { needed: 4_294_967_295, left: 8 },
                ..
            } if *index == at
        ),
        "{err:?}"
    );
}

#[test]
fn meta_integer_shorter_than_its_kind() {
    let (stone, at) = stone_with_meta_record(&meta_record(MetaTag::Release.to_u16(), 8, b"\x01"));
    let err = reject(&stone.bytes());
    assert!(
        matches!(
            &err,
            DecodeError::BadRecord {
                kind: PayloadKind::Meta,
                index,
                reason: RecordError::Short { needed: 8, left: 1 },
                ..
            } if *index == at
        ),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Records that lie: layout. Meta precedes layout, so every error names the package.
// ---------------------------------------------------------------------------------------

/// One layout record, field by field, for entries the real writer refuses to express.
fn layout_record(file_type: u8, mode: u32, source: &[u8], target: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0u32.to_be_bytes()); // uid
    out.extend_from_slice(&0u32.to_be_bytes()); // gid
    out.extend_from_slice(&mode.to_be_bytes()); // mode
    out.extend_from_slice(&0u32.to_be_bytes()); // tag
    out.extend_from_slice(&(source.len() as u16).to_be_bytes()); // source length
    out.extend_from_slice(&(target.len() as u16).to_be_bytes()); // target length
    out.push(file_type); // file type
    out.extend_from_slice(&[0; 11]); // padding
    out.extend_from_slice(source);
    out.extend_from_slice(target);
    out
}

/// The honest layout with `extra` appended as record number `layout.len()`.
fn stone_with_layout_record(extra: &[u8]) -> (RawStone, u64) {
    let nano = nano();
    let mut plain = layout::encode_all(&nano.layout);
    plain.extend_from_slice(extra);
    let mut stone = RawStone::parse(&nano.bytes);
    let payload = stone.payload(PayloadKind::Layout);
    payload.set_plain(&plain);
    payload.header.records += 1;
    (stone, nano.layout.len() as u64)
}

/// Reads a stone whose extra layout record must be refused, checks that the error names
/// the package and the entry's path, and returns the record error.
fn refused_layout_record(extra: &[u8], path_shown: &str) -> RecordError {
    let (stone, at) = stone_with_layout_record(extra);
    let err = reject(&stone.bytes());
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("package {NAME}: layout record {at}: ")),
        "{message}"
    );
    assert!(
        message.contains(&format!("`{path_shown}`")),
        "the message must name the path: {message}"
    );
    let DecodeError::BadRecord {
        kind: PayloadKind::Layout,
        index,
        package: Some(package),
        reason,
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!((index, package.as_str()), (at, NAME));
    reason
}

fn refused_target(target: &[u8], shown: &str, why: PathError) {
    let hash = AssetHash::EMPTY.to_be_bytes();
    let reason = refused_layout_record(&layout_record(1, 0o100644, &hash, target), shown);
    assert_eq!(
        reason,
        RecordError::BadPath {
            path: shown.to_owned(),
            reason: why
        }
    );
}

#[test]
fn parent_dir_in_a_target() {
    refused_target(
        b"../../etc/passwd",
        "../../etc/passwd",
        PathError::ParentDir,
    );
    refused_target(b"share/../../etc", "share/../../etc", PathError::ParentDir);
}

#[test]
fn absolute_target() {
    refused_target(b"/etc/passwd", "/etc/passwd", PathError::Absolute);
}

#[test]
fn nul_inside_a_target() {
    refused_target(b"bin/na\0no", "bin/na\0no", PathError::Nul);
}

#[test]
fn empty_component_in_a_target() {
    refused_target(b"bin//nano", "bin//nano", PathError::EmptyComponent);
    refused_target(b"bin/nano/", "bin/nano/", PathError::EmptyComponent);
}

#[test]
fn dot_component_and_empty_target() {
    refused_target(b"bin/./nano", "bin/./nano", PathError::CurrentDir);
    refused_target(b"\0\0", "", PathError::Empty);
}

/// Fixed: `BadHashLength` carried only the length, so the message could not say which
/// entry was broken.
#[test]
fn fifteen_byte_hash() {
    let hash = &AssetHash::EMPTY.to_be_bytes()[..15];
    let reason =
        refused_layout_record(&layout_record(1, 0o100644, hash, b"bin/nano2"), "bin/nano2");
    assert_eq!(
        reason,
        RecordError::BadHashLength {
            path: "bin/nano2".into(),
            len: 15
        }
    );
}

#[test]
fn symlink_without_a_target() {
    let reason = refused_layout_record(&layout_record(2, 0o120777, b"\0", b"bin/vi"), "bin/vi");
    assert_eq!(
        reason,
        RecordError::BadLinkTarget {
            path: "bin/vi".into()
        }
    );
}

#[test]
fn mode_contradicting_the_file_type() {
    let reason = refused_layout_record(&layout_record(3, 0o100755, b"", b"share/x"), "share/x");
    assert_eq!(
        reason,
        RecordError::ModeMismatch {
            path: "share/x".into(),
            mode: 0o100755,
            file_type: 3
        }
    );
}

#[test]
fn unknown_file_type() {
    let (stone, at) = stone_with_layout_record(&layout_record(8, 0o644, b"", b"dev/x"));
    let err = reject(&stone.bytes());
    assert!(
        matches!(
            &err,
            DecodeError::BadRecord {
                kind: PayloadKind::Layout,
                index,
                package: Some(p),
                reason: RecordError::UnknownFileType(8),
            } if *index == at && p == NAME
        ),
        "{err:?}"
    );
}

#[test]
fn layout_record_cut_short() {
    let record = layout_record(1, 0o100644, &AssetHash::EMPTY.to_be_bytes(), b"bin/x");
    let (stone, at) = stone_with_layout_record(&record[..record.len() - 2]);
    let err = reject(&stone.bytes());
    assert!(
        matches!(
            &err,
            DecodeError::BadRecord {
                kind: PayloadKind::Layout,
                index,
                reason: RecordError::Short { needed: 5, left: 3 },
                ..
            } if *index == at
        ),
        "{err:?}"
    );
}

#[test]
fn layout_before_meta_names_no_package() {
    let (mut stone, at) = stone_with_layout_record(&layout_record(
        1,
        0o100644,
        &AssetHash::EMPTY.to_be_bytes(),
        b"../x",
    ));
    stone.payloads.swap(0, 1);
    let err = reject(&stone.bytes());
    assert!(
        matches!(&err, DecodeError::BadRecord { kind: PayloadKind::Layout, index, package: None, .. } if *index == at),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("layout record"), "{err}");
}

#[test]
fn regular_file_whose_asset_is_not_indexed() {
    let missing = AssetHash::of(b"not in the index");
    let (stone, _) = stone_with_layout_record(&layout_record(
        1,
        0o100644,
        &missing.to_be_bytes(),
        b"bin/ghost",
    ));
    let err = reject(&stone.bytes());
    let message = err.to_string();
    let DecodeError::MissingAsset {
        package,
        path,
        hash,
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (package.as_deref(), path.as_str(), hash),
        (Some(NAME), "bin/ghost", missing)
    );
    assert!(
        message.starts_with("package nano: layout entry `bin/ghost`"),
        "{message}"
    );
}

// ---------------------------------------------------------------------------------------
// Records that lie: index.
// ---------------------------------------------------------------------------------------

/// The honest stone with its index replaced by `entries`.
fn stone_with_index(entries: &[IndexEntry]) -> RawStone {
    let mut stone = raw();
    let payload = stone.payload(PayloadKind::Index);
    payload.set_plain(&index::encode_all(entries));
    payload.header.records = entries.len() as u32;
    stone
}

#[test]
fn index_entry_past_the_content() {
    let nano = nano();
    let plain = nano.index.last().expect("entries").end;
    let mut entries = nano.index.clone();
    entries[1].end = plain + 1;
    let err = reject(&stone_with_index(&entries).bytes());
    let DecodeError::IndexOutOfRange {
        hash,
        start,
        end,
        plain: p,
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (hash, start, end, p),
        (entries[1].digest, entries[1].start, plain + 1, plain)
    );
}

#[test]
fn index_entry_reversed() {
    let nano = nano();
    let mut entries = nano.index.clone();
    entries[1].end = entries[1].start - 1;
    let err = reject(&stone_with_index(&entries).bytes());
    assert!(
        matches!(err, DecodeError::IndexOutOfRange { hash, start, end, .. }
            if hash == entries[1].digest && start == entries[1].start && end == start - 1),
        "{err:?}"
    );
}

#[test]
fn index_entry_at_u64_max() {
    let nano = nano();
    let mut entries = nano.index.clone();
    entries[2].start = u64::MAX;
    entries[2].end = u64::MAX;
    let err = reject(&stone_with_index(&entries).bytes());
    assert!(
        matches!(
            err,
            DecodeError::IndexOutOfRange {
                start: u64::MAX,
                end: u64::MAX,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn index_entries_overlapping() {
    let nano = nano();
    let mut entries = nano.index.clone();
    let previous_end = entries[0].end;
    entries[1].start = previous_end - 10;
    let err = reject(&stone_with_index(&entries).bytes());
    let DecodeError::IndexOverlap {
        hash,
        start,
        previous_end: p,
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (hash, start, p),
        (entries[1].digest, previous_end - 10, previous_end)
    );
}

#[test]
fn index_record_cut_short() {
    let nano = nano();
    let mut plain = index::encode_all(&nano.index);
    plain.truncate(plain.len() - 3);
    let mut stone = raw();
    stone.payload(PayloadKind::Index).set_plain(&plain);
    let err = reject(&stone.bytes());
    assert!(
        matches!(
            &err,
            DecodeError::BadRecord {
                kind: PayloadKind::Index,
                index: 2,
                package: Some(p),
                reason: RecordError::Short { needed: 16, left: 13 },
            } if p == NAME
        ),
        "{err:?}"
    );
}

/// Issue 7, defect 7: a package that shipped `usr/.stateID` made `verify` report damage
/// that `--repair` could not fix, and broke every commit from an archived tree.
#[test]
fn defect_7_the_reserved_state_marker_is_refused() {
    refused_target(b".stateID", ".stateID", PathError::Reserved);
    // Only at the top of /usr: deeper, the name is an ordinary file name.
    let hash = AssetHash::EMPTY.to_be_bytes();
    let (stone, _) =
        stone_with_layout_record(&layout_record(1, 0o100644, &hash, b"share/.stateID"));
    let read = Reader::new(stone.bytes().as_slice())
        .and_then(|mut r| r.read_metadata())
        .expect("an ordinary name deeper down");
    assert!(
        read.layout
            .iter()
            .any(|e| e.path.as_bytes() == b"share/.stateID")
    );
}
