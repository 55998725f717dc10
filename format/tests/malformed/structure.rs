//! Issue 7, defect 11: one corrupted header byte must not make an empty package.
//!
//! Payload kind and compression bytes are covered by no checksum. Flipping one of them used
//! to make the payload "unknown", skipped by its size, and the stone read as a package with
//! no files: `inspect --check` said ok and `install` recorded 0 entries, so an upgrade to
//! it deleted the package's files. A binary package is now checked whole
//! (`Stone::check_structure`) by every reader, before anything trusts it.

use mossfs_format::layout;
use mossfs_format::{Compression, DecodeError, EntryKind, PayloadKind, Reader};

use super::forge::*;

/// The nano stone with one payload's kind byte set to `byte`.
fn with_kind(kind: PayloadKind, byte: u8) -> Vec<u8> {
    let mut stone = raw();
    stone.payload(kind).header.kind = PayloadKind::from_byte(byte);
    stone.bytes()
}

fn missing(bytes: &[u8]) -> PayloadKind {
    match reject(bytes) {
        DecodeError::MissingPayload { kind, .. } => kind,
        other => panic!("expected a missing payload, got {other:?}"),
    }
}

#[test]
fn defect_11_a_flipped_layout_kind_is_refused() {
    assert_eq!(
        missing(&with_kind(PayloadKind::Layout, 77)),
        PayloadKind::Layout
    );
    // The metadata reader the installer uses refuses it too, before the content.
    let bytes = with_kind(PayloadKind::Layout, 77);
    let stone = Reader::new(bytes.as_slice())
        .and_then(|mut r| r.read_metadata())
        .expect("the framing itself is intact");
    assert!(stone.layout.is_empty(), "the layout was skipped as unknown");
    let err = stone.check_structure().expect_err("refused");
    assert_eq!(
        err.to_string(),
        "the package has no layout payload, but it has an index or content, which only a \
         layout can place; the stone is damaged"
    );
}

#[test]
fn defect_11_every_other_flipped_kind_is_refused() {
    assert_eq!(missing(&with_kind(PayloadKind::Meta, 0)), PayloadKind::Meta);
    // Index turned into attributes: content without an index.
    assert_eq!(
        missing(&with_kind(PayloadKind::Index, 5)),
        PayloadKind::Index
    );
    // Content turned unknown: an index without content.
    assert_eq!(
        missing(&with_kind(PayloadKind::Content, 9)),
        PayloadKind::Content
    );
}

#[test]
fn defect_11_an_unknown_compression_on_a_needed_payload_is_refused() {
    for kind in [PayloadKind::Meta, PayloadKind::Layout, PayloadKind::Index] {
        let mut stone = raw();
        let at = stone.offset(stone.position(kind));
        stone.payload(kind).header.compression = Compression::Unknown(3);
        match reject(&stone.bytes()) {
            DecodeError::UnknownCompression {
                kind: found,
                offset,
                compression: 3,
            } => assert_eq!((found, offset), (kind, at)),
            other => panic!("{kind}: {other:?}"),
        }
    }
}

#[test]
fn defect_11_an_index_entry_no_layout_entry_uses_is_refused() {
    let nano = nano();
    let mut stone = RawStone::parse(&nano.bytes);
    // Drop bin/nano, the only user of its asset, as a lost layout record would.
    let binary = nano
        .layout
        .iter()
        .find(|e| e.path.as_bytes() == b"bin/nano")
        .expect("nano ships bin/nano")
        .clone();
    let kept: Vec<_> = nano
        .layout
        .iter()
        .filter(|e| e.path != binary.path)
        .cloned()
        .collect();
    let payload = stone.payload(PayloadKind::Layout);
    payload.header.records = kept.len() as u32;
    payload.set_plain(&layout::encode_all(&kept));
    let EntryKind::Regular(hash) = binary.kind else {
        panic!("bin/nano is a file")
    };
    match reject(&stone.bytes()) {
        DecodeError::UnusedAsset {
            package: Some(package),
            hash: found,
        } => assert_eq!((package.as_str(), found), (NAME, hash)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn defect_11_a_package_without_files_is_only_its_meta() {
    // Upstream's writer omits an empty layout, and a package without regular files has no
    // index or content: both are whole.
    let mut stone = raw();
    stone.payloads.truncate(1);
    stone.recount();
    let read = accept(&stone.bytes());
    assert!(read.layout.is_empty() && read.index.is_empty());

    let links = write_stone(&nano_meta(), &[]);
    let mut stone = RawStone::parse(&links.bytes);
    stone
        .payloads
        .retain(|p| matches!(p.header.kind, PayloadKind::Meta | PayloadKind::Layout));
    stone.recount();
    assert_eq!(accept(&stone.bytes()).layout.len(), 1, "the symlink");
}
