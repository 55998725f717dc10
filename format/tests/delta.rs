//! Delta stones (DESIGN.md §11): what the writer writes the reader gives back, and deltas
//! that lie are refused with the exact error, without panicking and without allocating
//! from a declared size.

use std::collections::HashMap;
use std::io::Cursor;

use mossfs_format::delta::make::{self, Options};
use mossfs_format::delta::{self, MAX_PATCH_PAIR};
use mossfs_format::payload::PayloadHeader;
use mossfs_format::{
    AssetHash, Compression, DecodeError, DeltaRecord, EntryKind, FileType, LayoutEntry, Method,
    PackageId, PayloadKind, Preamble, Reader, RecordError, RelPath, Writer, WriterOptions,
    layout_index, read,
};

fn entry(path: &str, hash: AssetHash) -> LayoutEntry {
    LayoutEntry {
        uid: 0,
        gid: 0,
        mode: 0o100644,
        tag: 0,
        kind: EntryKind::Regular(hash),
        path: RelPath::new(path).unwrap(),
    }
}

fn base() -> Vec<u8> {
    (0..50_000u32)
        .flat_map(|i| (i * 31 % 977).to_be_bytes())
        .collect()
}

fn target() -> Vec<u8> {
    let mut t = base();
    t.splice(7000..7000, b"inserted".iter().copied());
    t
}

const PREAMBLE: Preamble = Preamble {
    from: PackageId([0xaa; 32]),
    to: PackageId([0xbb; 32]),
    to_size: 12345,
};

/// An honest delta stone: one patch and one whole record, with the raw parts a test can
/// lie about. Returns the stone and the offset of the delta payload's header.
fn honest() -> (Vec<u8>, usize, Vec<DeltaRecord>) {
    let new = target();
    let small = b"a small new file".to_vec();
    let records = vec![
        make::best(Some(&base()), &new, &Options::default()).unwrap(),
        make::best(None, &small, &Options::default()).unwrap(),
    ];
    assert!(matches!(records[0].header.method, Method::Patch { .. }));
    let index = layout_index([
        (AssetHash::of(&new), new.len() as u64),
        (AssetHash::of(&small), small.len() as u64),
    ]);
    let layout = vec![
        entry("lib/libx.so.2", AssetHash::of(&new)),
        entry("share/small", AssetHash::of(&small)),
    ];
    let options = WriterOptions {
        level: 3,
        threads: 0,
    };
    let mut writer = Writer::new(Cursor::new(Vec::new()), FileType::Delta, options).unwrap();
    writer
        .add_meta(&[mossfs_format::MetaRecord::string(
            mossfs_format::MetaTag::Name,
            "x",
        )])
        .unwrap();
    writer.add_layout(&layout).unwrap();
    writer.add_index(&index).unwrap();
    let before = writer.finish().unwrap().into_inner().len();
    // Write again, this time with the delta, to know where it starts.
    let mut writer = Writer::new(Cursor::new(Vec::new()), FileType::Delta, options).unwrap();
    writer
        .add_meta(&[mossfs_format::MetaRecord::string(
            mossfs_format::MetaTag::Name,
            "x",
        )])
        .unwrap();
    writer.add_layout(&layout).unwrap();
    writer.add_index(&index).unwrap();
    writer.add_delta(&PREAMBLE, &records).unwrap();
    (writer.finish().unwrap().into_inner(), before, records)
}

/// Replaces the delta payload's body and header fields, keeping the checksum honest.
fn with_body(stone: &[u8], at: usize, body: &[u8], records: u32) -> Vec<u8> {
    let mut out = stone[..at].to_vec();
    let header = PayloadHeader {
        stored_size: body.len() as u64,
        plain_size: body.len() as u64,
        checksum: xxhash_rust::xxh3::xxh3_64(body),
        records,
        version: 1,
        kind: PayloadKind::Delta,
        compression: Compression::None,
    };
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(body);
    out
}

fn body_of(stone: &[u8], at: usize) -> Vec<u8> {
    stone[at + 32..].to_vec()
}

#[test]
fn a_delta_stone_round_trips_and_applies() {
    let (stone, _, records) = honest();
    let checked = read::verify(stone.as_slice()).unwrap();
    assert_eq!(checked.header.unwrap().file_type, FileType::Delta);
    assert!(checked.content.is_none());
    assert_eq!(checked.delta.unwrap().header.records, 2);

    let mut reader = Reader::new(stone.as_slice()).unwrap();
    let meta = reader.read_metadata().unwrap();
    let mut deltas = reader.deltas(&meta).unwrap().unwrap();
    assert_eq!(deltas.preamble(), PREAMBLE);
    let mut read_back = Vec::new();
    while let Some(record) = deltas.next_record().unwrap() {
        read_back.push(record);
    }
    deltas.finish().unwrap();
    reader.finish().unwrap();
    assert_eq!(read_back, records);

    let bases: HashMap<AssetHash, Vec<u8>> = [(AssetHash::of(&base()), base())].into();
    let mut out = Vec::new();
    let patch = &read_back[0];
    let Method::Patch { base: b, .. } = patch.header.method else {
        panic!("not a patch")
    };
    patch.apply(Some(&bases[&b]), &mut out).unwrap();
    assert_eq!(out, target());
}

fn first_error(stone: &[u8]) -> DecodeError {
    read::verify(stone).unwrap_err()
}

#[test]
fn a_hostile_window_log_is_refused_by_name() {
    let (stone, at, _) = honest();
    let mut body = body_of(&stone, at);
    body[delta::PREAMBLE_LEN + 1] = 40; // first record's window log
    let err = first_error(&with_body(&stone, at, &body, 2));
    assert!(
        matches!(
            err,
            DecodeError::BadRecord {
                kind: PayloadKind::Delta,
                index: 0,
                reason: RecordError::DeltaWindowLog { log: 40, max: 31 },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn an_absurd_size_is_refused_before_anything_is_allocated() {
    let (stone, at, _) = honest();
    let mut body = body_of(&stone, at);
    let r = delta::PREAMBLE_LEN;
    body[r + 8..r + 16].copy_from_slice(&u64::MAX.to_be_bytes()); // target size
    let err = first_error(&with_body(&stone, at, &body, 2));
    assert!(
        matches!(
            err,
            DecodeError::BadRecord {
                reason: RecordError::DeltaTooLarge {
                    limit: MAX_PATCH_PAIR,
                    ..
                },
                ..
            }
        ),
        "{err}"
    );
    // A frame longer than the payload.
    let mut body = body_of(&stone, at);
    body[r + 24..r + 32].copy_from_slice(&(1u64 << 50).to_be_bytes()); // frame length
    let err = first_error(&with_body(&stone, at, &body, 2));
    assert!(
        matches!(
            err,
            DecodeError::BadRecord {
                reason: RecordError::Short { needed, .. },
                ..
            } if needed == 1 << 50
        ),
        "{err}"
    );
}

#[test]
fn an_unknown_method_is_refused() {
    let (stone, at, _) = honest();
    let mut body = body_of(&stone, at);
    body[delta::PREAMBLE_LEN] = 9;
    let err = first_error(&with_body(&stone, at, &body, 2));
    assert!(
        matches!(
            err,
            DecodeError::BadRecord {
                reason: RecordError::DeltaMethod(9),
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_frame_that_lies_about_its_size_is_refused() {
    let (stone, at, records) = honest();
    let mut body = body_of(&stone, at);
    // The whole record is the second; its target size is one more than its frame makes,
    // and the index entry's length does not matter to the record check.
    let second = delta::PREAMBLE_LEN + delta::RECORD_HEADER_LEN + records[0].frame.len();
    let size = records[1].header.target_size + 1;
    body[second + 8..second + 16].copy_from_slice(&size.to_be_bytes());
    let err = first_error(&with_body(&stone, at, &body, 2));
    assert!(
        matches!(&err, DecodeError::Delta { index: 1, source }
            if matches!(**source, mossfs_format::ApplyError::Size { .. })),
        "{err}"
    );
}

#[test]
fn records_that_do_not_match_the_count_are_refused() {
    let (stone, at, _) = honest();
    let body = body_of(&stone, at);
    // One record declared, two present: the rest is trailing.
    let err = first_error(&with_body(&stone, at, &body, 1));
    assert!(
        matches!(err, DecodeError::DeltaTrailing { records: 1, .. }),
        "{err}"
    );
    // Three declared, two present: the payload ends inside the third.
    let err = first_error(&with_body(&stone, at, &body, 3));
    assert!(
        matches!(
            err,
            DecodeError::Truncated {
                what: "payload body",
                ..
            }
        ),
        "{err}"
    );
    // Cut inside the first frame.
    let cut = &body[..delta::PREAMBLE_LEN + delta::RECORD_HEADER_LEN + 3];
    let err = first_error(&with_body(&stone, at, cut, 2));
    assert!(
        matches!(
            err,
            DecodeError::BadRecord {
                reason: RecordError::Short { .. },
                ..
            }
        ),
        "{err}"
    );
    // Shorter than the preamble.
    let err = first_error(&with_body(&stone, at, &body[..10], 0));
    assert!(matches!(err, DecodeError::Truncated { .. }), "{err}");
}

#[test]
fn a_record_for_an_asset_outside_the_index_or_twice_is_refused() {
    let (stone, at, records) = honest();
    let mut body = body_of(&stone, at);
    let r = delta::PREAMBLE_LEN;
    body[r + 32..r + 48].copy_from_slice(&7u128.to_be_bytes()); // target hash
    let err = first_error(&with_body(&stone, at, &body, 2));
    assert!(
        matches!(err, DecodeError::DeltaNotIndexed { index: 0, hash } if hash == AssetHash(7)),
        "{err}"
    );
    let mut twice = delta::encode_all(&PREAMBLE, &records);
    let first = records[0].clone();
    twice.extend_from_slice(&first.header.encode());
    twice.extend_from_slice(&first.frame);
    let err = first_error(&with_body(&stone, at, &twice, 3));
    assert!(
        matches!(err, DecodeError::DeltaDuplicate { index: 2, .. }),
        "{err}"
    );
}

#[test]
fn a_damaged_checksum_and_a_compressed_delta_payload_are_refused() {
    let (mut stone, at, _) = honest();
    let last = stone.len() - 1;
    stone[last] ^= 1;
    let err = first_error(&stone);
    assert!(
        matches!(
            err,
            DecodeError::BadChecksum {
                kind: PayloadKind::Delta,
                ..
            } | DecodeError::Delta { .. }
        ),
        "{err}"
    );
    let (mut stone, _, _) = honest();
    stone[at + 31] = Compression::Zstd.to_byte();
    let err = first_error(&stone);
    assert!(
        matches!(
            err,
            DecodeError::Decompress {
                kind: PayloadKind::Delta,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn the_in_memory_decoder_agrees_with_the_stream() {
    let (stone, at, records) = honest();
    let (preamble, decoded) = delta::decode_all(&body_of(&stone, at)).unwrap();
    assert_eq!(preamble, PREAMBLE);
    assert_eq!(decoded, records);
    assert!(matches!(
        delta::decode_all(&[0u8; 10]),
        Err((0, RecordError::Short { .. }))
    ));
}
