//! Fuzz target: arbitrary bytes as the plain body of one meta, layout or index payload.
//!
//! Invariant: a malformed stone may fail, but never panic, hang or allocate without bound.
//! Beyond that, two properties are checked, so a wrong answer counts as a crash too:
//! - records that decode re-encode to a body that decodes to the same records;
//! - the reader gives the same verdict as the decoder when the body arrives inside a real
//!   stone (an uncompressed payload with an honest checksum and record count).
//!
//! The first input byte picks the decoder; the rest is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mossfs_format::payload::PayloadHeader;
use mossfs_format::{
    ArchiveHeader, Compression, DecodeError, FileType, PayloadKind, index, layout, meta, read,
};

/// A stone holding `body` as its only payload, stored uncompressed.
fn stone_around(kind: PayloadKind, records: u32, body: &[u8]) -> Vec<u8> {
    let archive = ArchiveHeader {
        payload_count: 1,
        file_type: FileType::Binary,
    };
    let payload = PayloadHeader {
        stored_size: body.len() as u64,
        plain_size: body.len() as u64,
        checksum: xxhash_rust::xxh3::xxh3_64(body),
        records,
        version: 1,
        kind,
        compression: Compression::None,
    };
    let mut out = archive.encode().to_vec();
    out.extend_from_slice(&payload.encode());
    out.extend_from_slice(body);
    out
}

/// Decodes `body` with the decoder for `kind`, checks the re-encoding, and returns the
/// record count, or `None` if the decoder refused it.
fn decode(kind: PayloadKind, body: &[u8]) -> Option<usize> {
    match kind {
        PayloadKind::Meta => {
            let records = meta::decode_all(body).ok()?;
            let again = meta::decode_all(&meta::encode_all(&records));
            assert_eq!(
                again.as_ref(),
                Ok(&records),
                "meta re-encoding changed records"
            );
            Some(records.len())
        }
        PayloadKind::Layout => {
            let entries = layout::decode_all(body).ok()?;
            let again = layout::decode_all(&layout::encode_all(&entries));
            assert_eq!(
                again.as_ref(),
                Ok(&entries),
                "layout re-encoding changed entries"
            );
            Some(entries.len())
        }
        _ => {
            let entries = index::decode_all(body).ok()?;
            let again = index::decode_all(&index::encode_all(&entries));
            assert_eq!(
                again.as_ref(),
                Ok(&entries),
                "index re-encoding changed entries"
            );
            Some(entries.len())
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let kind = match selector % 3 {
        0 => PayloadKind::Meta,
        1 => PayloadKind::Layout,
        _ => PayloadKind::Index,
    };
    let decoded = decode(kind, body);
    let records = decoded.map_or(0, |n| u32::try_from(n).expect("records fit the body"));
    let verdict = read::verify(stone_around(kind, records, body).as_slice());
    match (decoded, verdict) {
        (Some(_), Ok(_)) | (None, Err(DecodeError::BadRecord { .. })) => {}
        // A layout alone names assets that no index lists.
        (Some(_), Err(DecodeError::MissingAsset { .. })) if kind == PayloadKind::Layout => {}
        (decoded, verdict) => {
            panic!("the decoder said {decoded:?}, the reader said {verdict:?}")
        }
    }
});
