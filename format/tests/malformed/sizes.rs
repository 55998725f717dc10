//! Declared sizes that lie, checksums that do not match, and an asset whose bytes changed.

use mossfs_format::payload;
use mossfs_format::{
    AssetHash, Compression, DecodeError, EntryKind, PayloadKind, Reader, index, layout, read,
};

use super::forge::*;

// ---------------------------------------------------------------------------------------
// Sizes that lie.
// ---------------------------------------------------------------------------------------

#[test]
fn metadata_stored_size_bigger_than_the_file() {
    let mut stone = raw();
    let body_at = stone.body_offset(PayloadKind::Index);
    let real = stone.payloads[2].body.len() as u64;
    let rest = real + (payload::LEN + stone.payloads[3].body.len()) as u64;
    stone.payload(PayloadKind::Index).header.stored_size = 1 << 25;
    let err = reject(&stone.bytes());
    let DecodeError::Truncated {
        what,
        offset,
        expected,
        found,
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (what, offset, expected, found),
        ("payload body", body_at, 1 << 25, rest)
    );
}

#[test]
fn metadata_stored_size_smaller_than_the_body() {
    let mut stone = raw();
    let offset = stone.offset(1);
    let layout = stone.payload(PayloadKind::Layout);
    layout.header.stored_size -= 1;
    let expected = layout.header.checksum;
    let computed = xxhash_rust::xxh3::xxh3_64(&layout.body[..layout.body.len() - 1]);
    let err = reject(&stone.bytes());
    let DecodeError::BadChecksum {
        kind,
        offset: at,
        expected: e,
        computed: c,
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (kind, at, e, c),
        (PayloadKind::Layout, offset, expected, computed)
    );
}

#[test]
fn metadata_stored_size_smaller_with_a_matching_checksum() {
    // The checksum covers exactly the short body, so only zstd can notice the cut frame.
    let mut stone = raw();
    let offset = stone.offset(1);
    let layout = stone.payload(PayloadKind::Layout);
    layout.header.stored_size -= 1;
    layout.header.checksum = xxhash_rust::xxh3::xxh3_64(&layout.body[..layout.body.len() - 1]);
    let err = reject(&stone.bytes());
    assert!(
        matches!(err, DecodeError::Decompress { kind: PayloadKind::Layout, offset: at, .. } if at == offset),
        "{err:?}"
    );
}

#[test]
fn metadata_that_would_decompress_past_the_limit_is_refused_before_it_is() {
    // A few kilobytes of zstd can claim and reach the limit, and decoded records take up
    // to six times their bytes, so the declared plain size is what bounds a reader's memory.
    let mut stone = raw();
    stone.payload(PayloadKind::Meta).header.plain_size = read::MAX_METADATA_SIZE + 1;
    let err = reject(&stone.bytes());
    assert!(
        matches!(
            err,
            DecodeError::PayloadTooLarge {
                kind: PayloadKind::Meta,
                offset: 32,
                size,
                limit: read::MAX_METADATA_SIZE
            } if size == read::MAX_METADATA_SIZE + 1
        ),
        "{err:?}"
    );
}

#[test]
fn metadata_stored_size_beyond_the_limit() {
    let mut stone = raw();
    stone.payload(PayloadKind::Meta).header.stored_size = u64::MAX;
    let err = reject(&stone.bytes());
    assert!(
        matches!(
            err,
            DecodeError::PayloadTooLarge {
                kind: PayloadKind::Meta,
                offset: 32,
                size: u64::MAX,
                limit: read::MAX_METADATA_SIZE
            }
        ),
        "{err:?}"
    );
}

#[test]
fn content_stored_size_bigger_than_the_file() {
    let mut stone = raw();
    let body_at = stone.body_offset(PayloadKind::Content);
    let real = stone.payloads[3].body.len() as u64;
    stone.payload(PayloadKind::Content).header.stored_size = real + 1000;
    let err = reject(&stone.bytes());
    let DecodeError::Truncated {
        what,
        offset,
        expected,
        found,
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (what, offset, expected, found),
        ("content payload", body_at, real + 1000, real)
    );
}

/// Fixed: `Content::new` added the declared stored size to the reader's offset unchecked, so
/// a content header claiming `u64::MAX` bytes overflowed (a panic in debug builds).
#[test]
fn content_stored_size_of_u64_max_does_not_overflow() {
    let mut stone = raw();
    let body_at = stone.body_offset(PayloadKind::Content);
    let real = stone.payloads[3].body.len() as u64;
    stone.payload(PayloadKind::Content).header.stored_size = u64::MAX;
    let err = reject(&stone.bytes());
    let DecodeError::Truncated {
        what,
        offset,
        expected,
        found,
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (what, offset, expected, found),
        ("content payload", body_at, u64::MAX, real)
    );
}

/// The same lie through the streaming API: the caller gives up on the content and asks
/// the reader to finish, so the next payload header is read at a saturated offset.
#[test]
fn finishing_after_abandoning_a_huge_content_does_not_overflow() {
    let mut stone = raw();
    let content = stone.payload(PayloadKind::Content);
    // The content's body is now an empty unknown payload and one stray byte.
    let unknown = RawPayload::stored(PayloadKind::Unknown(42), 0, b"");
    content.body = unknown.header.encode().to_vec();
    content.body.push(0xee);
    content.header.stored_size = u64::MAX;
    stone.header[5] = 5; // the unknown payload "inside" the content counts as a fifth
    let bytes = stone.bytes();
    let mut reader = Reader::new(bytes.as_slice()).expect("header");
    let metadata = reader.read_metadata().expect("metadata");
    drop(reader.content(&metadata).expect("content"));
    let err = reader.finish().expect_err("a byte is left over");
    assert!(
        matches!(err, DecodeError::TrailingData { extra: 1 }),
        "{err:?}"
    );
}

#[test]
fn content_stored_size_smaller_than_the_body() {
    let mut stone = raw();
    let offset = stone.offset(3);
    stone.payload(PayloadKind::Content).header.stored_size -= 1;
    let err = reject(&stone.bytes());
    // The frame is cut short but every declared byte was present: a bad stream, not a cut file.
    let DecodeError::Decompress {
        kind,
        offset: at,
        source,
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!((kind, at), (PayloadKind::Content, offset));
    assert_eq!(source.kind(), std::io::ErrorKind::UnexpectedEof);
}

#[test]
fn metadata_plain_size_smaller_than_the_body() {
    let mut stone = raw();
    let offset = stone.offset(1);
    let layout = stone.payload(PayloadKind::Layout);
    let plain = layout.header.plain_size;
    layout.header.plain_size = plain - 1;
    let err = reject(&stone.bytes());
    let DecodeError::PlainSizeMismatch {
        kind,
        offset: at,
        declared,
        found,
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (kind, at, declared, found),
        (PayloadKind::Layout, offset, plain - 1, plain)
    );
}

#[test]
fn metadata_plain_size_bigger_than_the_body() {
    let mut stone = raw();
    let offset = stone.offset(2);
    let index = stone.payload(PayloadKind::Index);
    let plain = index.header.plain_size;
    index.header.plain_size = plain + 7;
    let err = reject(&stone.bytes());
    let DecodeError::PlainSizeMismatch {
        kind,
        offset: at,
        declared,
        found,
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (kind, at, declared, found),
        (PayloadKind::Index, offset, plain + 7, plain)
    );
}

#[test]
fn metadata_plain_size_huge() {
    let mut stone = raw();
    stone.payload(PayloadKind::Meta).header.plain_size = 1 << 40;
    let err = reject(&stone.bytes());
    assert!(
        matches!(
            err,
            DecodeError::PayloadTooLarge {
                kind: PayloadKind::Meta,
                offset: 32,
                size: 1_099_511_627_776,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn content_plain_size_smaller_than_the_stream() {
    // Drop the last asset from the index, so the content has an unclaimed tail, then
    // declare one byte less than the stream really holds.
    let nano = nano();
    let mut stone = RawStone::parse(&nano.bytes);
    let kept = &nano.index[..2];
    let tail = nano.index[2];
    assert!(tail.is_empty(), "the empty file is last");
    let index = stone.payload(PayloadKind::Index);
    index.set_plain(&index::encode_all(kept));
    index.header.records = 2;
    // The empty file's layout entry would now lack its asset; point it at the binary.
    let mut entries = nano.layout.clone();
    for entry in &mut entries {
        if entry.kind == EntryKind::Regular(tail.digest) {
            entry.kind = EntryKind::Regular(kept[1].digest);
        }
    }
    stone
        .payload(PayloadKind::Layout)
        .set_plain(&layout::encode_all(&entries));
    let offset = stone.offset(3);
    let content = stone.payload(PayloadKind::Content);
    let plain = content.header.plain_size;
    assert_eq!(plain, kept[1].end);
    // Two more bytes in the stream than declared: one unclaimed byte, then one too many.
    let mut bytes = content.plain();
    bytes.extend_from_slice(b"xy");
    content.set_plain(&bytes);
    content.header.plain_size = plain + 1;
    let err = reject(&stone.bytes());
    let DecodeError::PlainSizeMismatch {
        kind,
        offset: at,
        declared,
        found,
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (kind, at, declared, found),
        (PayloadKind::Content, offset, plain + 1, plain + 2)
    );
}

#[test]
fn content_plain_size_bigger_than_the_stream() {
    let nano = nano();
    let mut stone = RawStone::parse(&nano.bytes);
    let offset = stone.offset(3);
    let content = stone.payload(PayloadKind::Content);
    let plain = content.header.plain_size;
    content.header.plain_size = plain + 10;
    let err = reject(&stone.bytes());
    let DecodeError::PlainSizeMismatch {
        kind,
        offset: at,
        declared,
        found,
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (kind, at, declared, found),
        (PayloadKind::Content, offset, plain + 10, plain)
    );
}

#[test]
fn uncompressed_payload_whose_sizes_differ() {
    let mut stone = raw();
    let offset = stone.offset(2);
    let index = stone.payload(PayloadKind::Index);
    let plain = index.plain();
    *index = RawPayload::stored(PayloadKind::Index, index.header.records, &plain);
    index.header.plain_size += 1;
    let err = reject(&stone.bytes());
    let DecodeError::SizeMismatch {
        kind,
        offset: at,
        stored,
        plain: p,
    } = err
    else {
        panic!("{err:?}")
    };
    let len = plain.len() as u64;
    assert_eq!(
        (kind, at, stored, p),
        (PayloadKind::Index, offset, len, len + 1)
    );
}

#[test]
fn uncompressed_payloads_are_read() {
    let nano = nano();
    let mut stone = RawStone::parse(&nano.bytes);
    for payload in &mut stone.payloads {
        let plain = payload.plain();
        *payload = RawPayload::stored(payload.header.kind, payload.header.records, &plain);
    }
    let read = accept(&stone.bytes());
    assert_eq!(read.layout, nano.layout);
    assert!(
        read.payloads
            .iter()
            .all(|p| p.header.compression == Compression::None)
    );
}

#[test]
fn unsupported_payload_version() {
    let mut stone = raw();
    stone.payload(PayloadKind::Layout).header.version = 2;
    let offset = stone.offset(1);
    let err = reject(&stone.bytes());
    assert!(
        matches!(err, DecodeError::UnsupportedPayloadVersion { kind: PayloadKind::Layout, offset: at, version: 2 } if at == offset),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Checksums and digests.
// ---------------------------------------------------------------------------------------

#[test]
fn bad_checksum_in_each_payload_kind() {
    for kind in [
        PayloadKind::Meta,
        PayloadKind::Layout,
        PayloadKind::Index,
        PayloadKind::Content,
    ] {
        let mut stone = raw();
        let offset = stone.offset(stone.position(kind));
        let payload = stone.payload(kind);
        let computed = payload.header.checksum;
        payload.header.checksum ^= 1 << 33;
        let expected = payload.header.checksum;
        let err = reject(&stone.bytes());
        let DecodeError::BadChecksum {
            kind: k,
            offset: at,
            expected: e,
            computed: c,
        } = err
        else {
            panic!("{kind}: {err:?}")
        };
        assert_eq!((k, at, e, c), (kind, offset, expected, computed));
    }
}

#[test]
fn bad_asset_digest() {
    // Flip one byte of the README and make the payload checksum honest again: only the
    // asset's xxh3-128 can tell.
    let nano = nano();
    let readme = nano.index[0];
    let mut stone = RawStone::parse(&nano.bytes);
    let content = stone.payload(PayloadKind::Content);
    let mut plain = content.plain();
    plain[(readme.start + 100) as usize] ^= 0x01;
    let computed = AssetHash::of(&plain[readme.start as usize..readme.end as usize]);
    content.set_plain(&plain);
    let err = reject(&stone.bytes());
    let DecodeError::BadDigest {
        expected,
        computed: c,
        start,
        end,
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (expected, c, start, end),
        (readme.digest, computed, readme.start, readme.end)
    );
}
