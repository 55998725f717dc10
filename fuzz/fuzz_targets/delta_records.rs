//! Fuzz target: arbitrary bytes as the body of a delta payload (DESIGN.md §11).
//!
//! Invariant: a malformed delta may fail, but never panic, hang or allocate without bound
//! (a record may declare at most `delta::MAX_PATCH_PAIR` bytes, and nothing is allocated
//! from a frame length before its bytes arrive). Beyond that:
//! - records that decode re-encode to the same body;
//! - the reader, given the body inside a real delta stone with the same index, refuses
//!   whatever the decoder refuses;
//! - applying any record, against a small old index (whose first entry is a fixed base,
//!   the others sized from the input) and that base's bytes for each of its bases, either
//!   fails with a typed error or writes, for every target, exactly its size of bytes that
//!   hash to it; it never succeeds for a record whose base positions the old index lacks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mossfs_format::payload::PayloadHeader;
use mossfs_format::{
    ArchiveHeader, AssetHash, Compression, DecodeError, FileType, PayloadKind, delta, index,
    layout_index, read,
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
            version: if kind == PayloadKind::Delta {
                delta::PAYLOAD_VERSION
            } else {
                1
            },
            kind,
            compression: Compression::None,
        };
        out.extend_from_slice(&header.encode());
        out.extend_from_slice(body);
    }
    out
}

/// A fixed index of a few assets with sizes from the first bytes, so that records can
/// name real positions.
fn index_for(body: &[u8]) -> Vec<mossfs_format::IndexEntry> {
    layout_index(
        body.iter()
            .take(4)
            .enumerate()
            .map(|(i, &b)| (AssetHash(i as u128 + 1), u64::from(b) * 37)),
    )
}

fuzz_target!(|body: &[u8]| {
    let index = index_for(body);
    let decoded = delta::decode_all(body, &index);
    if let Ok((preamble, records)) = &decoded {
        assert_eq!(
            delta::encode_all(preamble, records),
            body,
            "re-encoding changed the body"
        );
        let base: Vec<u8> = body.iter().rev().copied().collect();
        let old_index = layout_index(
            std::iter::once((AssetHash::of(&base), base.len() as u64)).chain(
                body.iter()
                    .skip(4)
                    .take(2)
                    .enumerate()
                    .map(|(i, &b)| (AssetHash(i as u128 + 100), u64::from(b) * 41)),
            ),
        );
        for record in records {
            let given: Vec<&[u8]> = record
                .header
                .bases
                .iter()
                .map(|_| base.as_slice())
                .collect();
            let mut out = vec![Vec::new(); record.header.targets.len()];
            let applied = record.apply(&old_index, &given, &mut |i, b| {
                out[i].extend_from_slice(b);
                Ok(())
            });
            if applied.is_ok() {
                assert!(record.header.resolve_bases(&old_index).is_ok());
                for (bytes, target) in out.iter().zip(&record.header.targets) {
                    assert_eq!(bytes.len() as u64, target.size);
                    assert_eq!(AssetHash::of(bytes), target.hash);
                }
            }
        }
    }
    let (entries, count) = match &decoded {
        Ok((_, records)) => (
            index.iter().map(|e| (e.digest, e.len())).collect::<Vec<_>>(),
            records.len() as u32,
        ),
        Err(_) => (index.iter().map(|e| (e.digest, e.len())).collect(), 0),
    };
    let verdict = read::verify(stone_around(&entries, count, body).as_slice());
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
