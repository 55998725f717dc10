//! Fuzz target: arbitrary bytes as the body of a delta payload (DESIGN.md §11).
//!
//! Invariant: a malformed delta may fail, but never panic, hang or allocate without bound
//! (a record may declare at most `delta::MAX_PATCH_PAIR` bytes, and nothing is allocated
//! from a frame length before its bytes arrive). Beyond that:
//! - records that decode re-encode to the same body;
//! - the reader, given the body inside a real delta stone whose index lists every target,
//!   refuses whatever the decoder refuses;
//! - applying any record, against a fixed base for patches, either fails with a typed
//!   error or writes exactly its target size of bytes that hash to its target.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mossfs_format::payload::PayloadHeader;
use mossfs_format::{
    ArchiveHeader, AssetHash, Compression, DecodeError, FileType, Method, PayloadKind, delta,
    index, layout_index, read,
};

/// A delta stone holding an index of `targets` and `body` as its delta payload.
fn stone_around(targets: &[(AssetHash, u64)], records: u32, body: &[u8]) -> Vec<u8> {
    let archive = ArchiveHeader {
        payload_count: 2,
        file_type: FileType::Delta,
    };
    let index_body = index::encode_all(&layout_index(targets.iter().copied()));
    let mut out = archive.encode().to_vec();
    for (kind, records, body) in [
        (
            PayloadKind::Index,
            targets.len() as u32,
            index_body.as_slice(),
        ),
        (PayloadKind::Delta, records, body),
    ] {
        let header = PayloadHeader {
            stored_size: body.len() as u64,
            plain_size: body.len() as u64,
            checksum: xxhash_rust::xxh3::xxh3_64(body),
            records,
            version: 1,
            kind,
            compression: Compression::None,
        };
        out.extend_from_slice(&header.encode());
        out.extend_from_slice(body);
    }
    out
}

fuzz_target!(|body: &[u8]| {
    let decoded = delta::decode_all(body);
    if let Ok((preamble, records)) = &decoded {
        assert_eq!(
            delta::encode_all(preamble, records),
            body,
            "re-encoding changed the body"
        );
        let base: Vec<u8> = body.iter().rev().copied().collect();
        for record in records {
            let mut out = Vec::new();
            let given =
                matches!(record.header.method, Method::Patch { .. }).then_some(base.as_slice());
            if record.apply(given, &mut out).is_ok() {
                assert_eq!(out.len() as u64, record.header.target_size);
                assert_eq!(AssetHash::of(&out), record.header.target);
            }
        }
    }
    let (targets, count) = match &decoded {
        Ok((_, records)) => (
            records
                .iter()
                .map(|r| (r.header.target, r.header.target_size))
                .collect::<Vec<_>>(),
            records.len() as u32,
        ),
        Err(_) => (Vec::new(), 0),
    };
    let verdict = read::verify(stone_around(&targets, count, body).as_slice());
    match (&decoded, &verdict) {
        (Err(_), Err(_)) | (Ok(_), Ok(_)) => {}
        // The reader also decodes whole frames and refuses duplicates.
        (Ok(_), Err(DecodeError::Delta { .. } | DecodeError::DeltaDuplicate { .. })) => {}
        (decoded, verdict) => {
            panic!(
                "the decoder said {:?}, the reader said {verdict:?}",
                decoded.as_ref().map(|(_, r)| r.len())
            )
        }
    }
});
