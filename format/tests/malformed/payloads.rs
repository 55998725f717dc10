//! Payloads the reader does not know, and known payloads in the wrong place or twice.

use mossfs_format::{Compression, DecodeError, PayloadKind};

use super::forge::*;

// ---------------------------------------------------------------------------------------
// Payloads the reader does not know, and payloads in the wrong place.
// ---------------------------------------------------------------------------------------

#[test]
fn unknown_payload_kinds_are_skipped() {
    let nano = nano();
    let mut stone = RawStone::parse(&nano.bytes);
    stone.payloads.insert(
        1,
        RawPayload::zstd(PayloadKind::Unknown(42), 3, b"from the future"),
    );
    // After the content, too: the reader's finish skips them.
    stone.payloads.push(RawPayload::stored(
        PayloadKind::Unknown(200),
        0,
        b"a trailer",
    ));
    stone.recount();
    let read = accept(&stone.bytes());
    let kinds: Vec<_> = read.payloads.iter().map(|p| p.header.kind).collect();
    assert_eq!(
        kinds,
        [
            PayloadKind::Meta,
            PayloadKind::Unknown(42),
            PayloadKind::Layout,
            PayloadKind::Index,
            PayloadKind::Content
        ]
    );
    assert_eq!(read.layout, nano.layout);
}

#[test]
fn unknown_compression_is_skipped() {
    let mut stone = raw();
    let mut attributes = RawPayload::zstd(PayloadKind::Attributes, 1, b"xattrs");
    attributes.header.compression = Compression::Unknown(9);
    stone.payloads.insert(3, attributes.clone());
    stone.recount();
    let read = accept(&stone.bytes());
    assert_eq!(read.attributes, None);
    assert_eq!(read.payloads[3].header.compression, Compression::Unknown(9));

    // The same payload with a compression the reader knows is kept.
    attributes.header.compression = Compression::Zstd;
    let mut stone = raw();
    stone.payloads.insert(3, attributes);
    stone.recount();
    assert_eq!(
        accept(&stone.bytes()).attributes.as_deref(),
        Some(&b"xattrs"[..])
    );
}

#[test]
fn payload_after_content() {
    let mut stone = raw();
    let layout = stone.payloads.remove(1);
    stone.payloads.push(layout);
    let offset = stone.offset(3);
    let err = reject(&stone.bytes());
    assert!(
        matches!(err, DecodeError::PayloadAfterContent { kind: PayloadKind::Layout, offset: at } if at == offset),
        "{err:?}"
    );
}

#[test]
fn trailing_garbage() {
    let mut stone = raw();
    stone.trailing = b"garbage".to_vec();
    let err = reject(&stone.bytes());
    assert!(
        matches!(err, DecodeError::TrailingData { extra: 1 }),
        "{err:?}"
    );
}

#[test]
fn fewer_payloads_declared_than_present() {
    let mut stone = raw();
    stone.header[5] = 3;
    let err = reject(&stone.bytes());
    assert!(
        matches!(err, DecodeError::TrailingData { extra: 1 }),
        "{err:?}"
    );
}

#[test]
fn duplicate_meta() {
    let mut stone = raw();
    let again = stone.payloads[0].clone();
    stone.payloads.insert(1, again);
    stone.recount();
    let offset = stone.offset(1);
    let err = reject(&stone.bytes());
    assert!(
        matches!(err, DecodeError::DuplicatePayload { kind: PayloadKind::Meta, offset: at } if at == offset),
        "{err:?}"
    );
}

#[test]
fn duplicate_content() {
    let mut stone = raw();
    let again = stone.payloads[3].clone();
    stone.payloads.push(again);
    stone.recount();
    let offset = stone.offset(4);
    let err = reject(&stone.bytes());
    assert!(
        matches!(err, DecodeError::DuplicatePayload { kind: PayloadKind::Content, offset: at } if at == offset),
        "{err:?}"
    );
}
