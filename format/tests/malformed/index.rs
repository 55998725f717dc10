//! Repository indexes (file type 3): one meta payload per package, read by
//! `Reader::read_index`, and the upstream-required fields `missing_required` names.

use std::io::Cursor;

use mossfs_format::meta::{MetaTag, missing_required};
use mossfs_format::{
    DecodeError, FileType, Meta, MetaRecord, PayloadKind, Reader, Writer, WriterOptions,
};

fn package(name: &str) -> Meta {
    Meta {
        name: name.into(),
        version: "1".into(),
        uri: Some(format!("pool/{name}.stone")),
        hash: Some("ab".repeat(32)),
        size: Some(7),
        ..Meta::default()
    }
}

fn index(packages: &[Meta]) -> Vec<u8> {
    let mut writer = Writer::new(
        Cursor::new(Vec::new()),
        FileType::Repository,
        WriterOptions::default(),
    )
    .unwrap();
    for meta in packages {
        writer.add_meta(&meta.to_records()).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

#[test]
fn every_meta_payload_is_a_package_in_order() {
    let bytes = index(&[package("a"), package("b")]);
    let entries = Reader::new(&bytes[..])
        .unwrap()
        .read_index(1 << 20)
        .unwrap();
    let names: Vec<String> = entries
        .iter()
        .map(|r| Meta::from_records(r).unwrap().name)
        .collect();
    assert_eq!(names, ["a", "b"]);
    let meta = Meta::from_records(&entries[1]).unwrap();
    assert_eq!(meta.uri.as_deref(), Some("pool/b.stone"));
    assert_eq!(meta.size, Some(7));
    assert_eq!(missing_required(&entries[0]), None);
}

#[test]
fn a_missing_required_field_is_named() {
    let full = package("a").to_records();
    for tag in mossfs_format::meta::UPSTREAM_REQUIRED {
        let without: Vec<MetaRecord> = full.iter().filter(|r| r.tag != tag).cloned().collect();
        assert_eq!(missing_required(&without), Some(tag));
    }
    // A release given as text is as good as missing: upstream reads it as an integer.
    let mut wrong = full.clone();
    for r in &mut wrong {
        if r.tag == MetaTag::Release {
            *r = MetaRecord::string(MetaTag::Release, "1");
        }
    }
    assert_eq!(missing_required(&wrong), Some(MetaTag::Release));
}

#[test]
fn a_content_payload_inside_an_index_is_refused() {
    // A binary stone of one (empty) file has a content payload after its meta.
    let mut writer = Writer::new(
        Cursor::new(Vec::new()),
        FileType::Repository,
        WriterOptions::default(),
    )
    .unwrap();
    writer.add_meta(&package("a").to_records()).unwrap();
    let entries = mossfs_format::layout_index([(mossfs_format::AssetHash::of(b""), 0)]);
    writer.add_index(&entries).unwrap();
    struct Empty;
    impl mossfs_format::ContentSource for Empty {
        fn open(
            &self,
            _: &mossfs_format::IndexEntry,
        ) -> std::io::Result<Box<dyn std::io::Read + '_>> {
            Ok(Box::new(std::io::empty()))
        }
    }
    writer.add_content(&entries, &Empty).unwrap();
    let bytes = writer.finish().unwrap().into_inner();
    let err = Reader::new(&bytes[..])
        .unwrap()
        .read_index(1 << 20)
        .unwrap_err();
    assert!(matches!(err, DecodeError::ContentInIndex { .. }), "{err:?}");
}

#[test]
fn the_plain_size_budget_bounds_the_whole_index() {
    let packages: Vec<Meta> = (0..50).map(|i| package(&format!("p{i}"))).collect();
    let bytes = index(&packages);
    let err = Reader::new(&bytes[..])
        .unwrap()
        .read_index(2000)
        .unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::PayloadTooLarge {
                kind: PayloadKind::Meta,
                limit: 2000,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_header_claiming_more_packages_and_trailing_bytes_are_refused() {
    let mut bytes = index(&[package("a")]);
    bytes[4..6].copy_from_slice(&u16::MAX.to_be_bytes());
    let err = Reader::new(&bytes[..])
        .unwrap()
        .read_index(1 << 20)
        .unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::MissingPayloads {
                declared: u16::MAX,
                found: 1
            }
        ),
        "{err:?}"
    );
    let mut bytes = index(&[package("a")]);
    bytes.push(0);
    let err = Reader::new(&bytes[..])
        .unwrap()
        .read_index(1 << 20)
        .unwrap_err();
    assert!(matches!(err, DecodeError::TrailingData { .. }), "{err:?}");
}
