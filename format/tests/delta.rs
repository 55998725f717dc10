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
    PackageId, PayloadKind, Preamble, Reader, RecordError, RecordHeader, RelPath, Writer,
    WriterOptions, layout_index, read,
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

fn index_of(new: &[u8], small: &[u8]) -> Vec<mossfs_format::IndexEntry> {
    layout_index([
        (AssetHash::of(new), new.len() as u64),
        (AssetHash::of(small), small.len() as u64),
    ])
}

const SMALL: &[u8] = b"a small new file";

/// The old package's index: the base alone.
fn old_index() -> Vec<mossfs_format::IndexEntry> {
    let old = base();
    layout_index([(AssetHash::of(&old), old.len() as u64)])
}

fn bytes(data: &[u8], position: u32) -> make::Bytes<'_> {
    make::Bytes {
        hash: AssetHash::of(data),
        position,
        bytes: data,
    }
}

/// An honest delta stone: one patch and one whole record, with the raw parts a test can
/// lie about. Returns the stone and the offset of the delta payload's header.
fn honest() -> (Vec<u8>, usize, Vec<DeltaRecord>) {
    let new = target();
    let old = base();
    let level = Options::default().level;
    let records = vec![
        make::record(&[bytes(&old, 0)], &[bytes(&new, 0)], level).unwrap(),
        make::record(&[], &[bytes(SMALL, 1)], level).unwrap(),
    ];
    assert_eq!(records[0].header.method(), Method::Patch);
    let index = index_of(&new, SMALL);
    let layout = vec![
        entry("lib/libx.so.2", AssetHash::of(&new)),
        entry("share/small", AssetHash::of(SMALL)),
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
        version: delta::PAYLOAD_VERSION,
        kind: PayloadKind::Delta,
        compression: Compression::None,
    };
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(body);
    out
}

/// A record's bytes with its header as given (frame length included), not as the frame
/// says.
fn raw(header: &RecordHeader, frame: &[u8]) -> Vec<u8> {
    let header = header.encode();
    let mut out = Vec::new();
    delta::put_varint(&mut out, header.len() as u64);
    out.extend_from_slice(&header);
    out.extend_from_slice(frame);
    out
}

/// The delta body with the first record replaced by `first`.
fn body_with_first(records: &[DeltaRecord], first: Vec<u8>) -> Vec<u8> {
    let mut body = PREAMBLE.encode().to_vec();
    body.extend_from_slice(&first);
    for r in &records[1..] {
        body.extend_from_slice(&r.encode());
    }
    body
}

#[test]
fn a_delta_stone_round_trips_and_applies() {
    let (stone, _, records) = honest();
    let checked = read::verify(stone.as_slice()).unwrap();
    assert_eq!(checked.header.unwrap().file_type, FileType::Delta);
    assert!(checked.content.is_none());
    let info = checked.delta.unwrap().header;
    assert_eq!(info.records, 2);
    assert_eq!(info.version, 3);

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
    let old_index = old_index();
    let given: Vec<&[u8]> = patch
        .header
        .resolve_bases(&old_index)
        .unwrap()
        .iter()
        .map(|b| bases[&b.hash].as_slice())
        .collect();
    patch
        .apply(&old_index, &given, &mut |_, b| {
            out.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
    assert_eq!(out, target());
}

#[test]
fn a_record_of_several_targets_reads_back_and_rebuilds_each() {
    let new = target();
    let old = base();
    let record = make::record(&[bytes(&old, 0)], &[bytes(SMALL, 1), bytes(&new, 0)], 3).unwrap();
    let body = delta::encode_all(&PREAMBLE, std::slice::from_ref(&record));
    let (_, decoded) = delta::decode_all(&body, &index_of(&new, SMALL)).unwrap();
    assert_eq!(decoded, vec![record.clone()]);
    let mut out = vec![Vec::new(), Vec::new()];
    record
        .apply(&old_index(), &[&old], &mut |i, b| {
            out[i].extend_from_slice(b);
            Ok(())
        })
        .unwrap();
    assert_eq!(out, vec![SMALL.to_vec(), new]);
}

#[test]
fn a_delta_index_compressed_against_its_layout_reads_back_and_only_in_a_delta() {
    let new = target();
    let index = index_of(&new, SMALL);
    let layout = vec![
        entry("lib/libx.so.2", AssetHash::of(&new)),
        entry("share/small", AssetHash::of(SMALL)),
    ];
    let options = WriterOptions {
        level: 19,
        threads: 0,
    };
    let write = |file_type, against: bool| {
        let mut writer = Writer::new(Cursor::new(Vec::new()), file_type, options).unwrap();
        writer.add_layout(&layout).unwrap();
        if against {
            writer.add_index_against_layout(&index, &layout).unwrap();
        } else {
            writer.add_index(&index).unwrap();
        }
        writer.finish().unwrap().into_inner()
    };
    let against = write(FileType::Delta, true);
    let plain = write(FileType::Delta, false);
    // The two hashes are stored once: the index payload is smaller.
    assert!(
        against.len() < plain.len(),
        "{} vs {}",
        against.len(),
        plain.len()
    );
    let stone = Reader::new(against.as_slice())
        .unwrap()
        .read_metadata()
        .unwrap();
    assert_eq!(stone.index, index);
    assert_eq!(
        stone.payloads[1].header.version,
        mossfs_format::write::INDEX_AGAINST_LAYOUT
    );
    // A package stone never carries one.
    let binary = write(FileType::Binary, true);
    let err = Reader::new(binary.as_slice())
        .unwrap()
        .read_metadata()
        .unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::UnsupportedPayloadVersion {
                kind: PayloadKind::Index,
                version: 2,
                ..
            }
        ),
        "{err}"
    );
}

fn first_error(stone: &[u8]) -> DecodeError {
    read::verify(stone).unwrap_err()
}

#[test]
fn a_hostile_window_log_is_refused_by_name() {
    let (stone, at, records) = honest();
    let mut header = records[0].header.clone();
    header.window_log = 40;
    let body = body_with_first(&records, raw(&header, &records[0].frame));
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
fn a_base_the_old_index_lacks_or_too_large_is_refused_before_decoding() {
    let (_, _, records) = honest();
    let patch = &records[0];
    let base = base();
    let err = |old_index: &[mossfs_format::IndexEntry]| {
        patch
            .apply(old_index, &[&base], &mut |_, _| {
                panic!("nothing is written for a refused record")
            })
            .unwrap_err()
    };
    // Applied against another package's index: the position names nothing.
    assert!(
        matches!(
            err(&[]),
            delta::ApplyError::Bases {
                source: RecordError::DeltaBasePosition {
                    position: 0,
                    entries: 0
                },
                ..
            }
        ),
        "{}",
        err(&[])
    );
    // An old index whose entry would make the record hold more than a reader allows.
    let huge = layout_index([(AssetHash::of(&base), MAX_PATCH_PAIR)]);
    assert!(
        matches!(
            err(&huge),
            delta::ApplyError::Bases {
                source: RecordError::DeltaTooLarge {
                    limit: MAX_PATCH_PAIR,
                    ..
                },
                ..
            }
        ),
        "{}",
        err(&huge)
    );
    // An entry at that position of another hash: the bytes given do not match it.
    let other = layout_index([(AssetHash(1), base.len() as u64)]);
    assert!(
        matches!(err(&other), delta::ApplyError::WrongBase { .. }),
        "{}",
        err(&other)
    );
}

#[test]
fn an_absurd_size_is_refused_before_anything_is_allocated() {
    let (stone, at, records) = honest();
    // A frame longer than the payload.
    let mut header = records[0].header.clone();
    header.frame_len = 1 << 50;
    let body = body_with_first(&records, raw(&header, &records[0].frame));
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
    // A header length beyond the limit.
    let mut body = PREAMBLE.encode().to_vec();
    delta::put_varint(&mut body, delta::MAX_HEADER_LEN + 1);
    let err = first_error(&with_body(&stone, at, &body, 1));
    assert!(
        matches!(
            err,
            DecodeError::BadRecord {
                reason: RecordError::DeltaTooLarge { .. },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_record_without_targets_is_refused() {
    let (stone, at, records) = honest();
    let mut header = records[0].header.clone();
    header.targets.clear();
    let body = body_with_first(&records, raw(&header, &records[0].frame));
    let err = first_error(&with_body(&stone, at, &body, 2));
    assert!(
        matches!(
            err,
            DecodeError::BadRecord {
                reason: RecordError::DeltaCount { count: 0, .. },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_frame_that_lies_about_its_size_is_refused() {
    let (stone, at, records) = honest();
    // The whole record is the second; its frame makes one byte more than its target.
    let mut longer = SMALL.to_vec();
    longer.push(b'!');
    let frame = zstd::bulk::compress(&longer, 3).unwrap();
    let lying = DeltaRecord {
        header: records[1].header.clone(),
        frame,
    };
    let mut body = PREAMBLE.encode().to_vec();
    body.extend_from_slice(&records[0].encode());
    body.extend_from_slice(&lying.encode());
    let err = first_error(&with_body(&stone, at, &body, 2));
    assert!(
        matches!(&err, DecodeError::Delta { index: 1, source }
            if matches!(**source, mossfs_format::ApplyError::Size { .. })),
        "{err}"
    );
}

#[test]
fn records_that_do_not_match_the_count_are_refused() {
    let (stone, at, records) = honest();
    let body = delta::encode_all(&PREAMBLE, &records);
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
    let header_len = records[0].encode().len() - records[0].frame.len();
    let cut = &body[..delta::PREAMBLE_LEN + header_len + 3];
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
    let mut header = records[0].header.clone();
    header.targets[0].position = 5;
    let body = body_with_first(&records, raw(&header, &records[0].frame));
    let err = first_error(&with_body(&stone, at, &body, 2));
    assert!(
        matches!(
            err,
            DecodeError::BadRecord {
                index: 0,
                reason: RecordError::DeltaPosition {
                    position: 5,
                    entries: 2
                },
                ..
            }
        ),
        "{err}"
    );
    let mut twice = delta::encode_all(&PREAMBLE, &records);
    twice.extend_from_slice(&records[0].encode());
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
    // Version-1 and version-2 payloads (bases named by hash) are refused by name; an
    // unknown version is simply unsupported.
    for old in [1u16, 2] {
        let (mut stone, at, _) = honest();
        stone[at + 28..at + 30].copy_from_slice(&old.to_be_bytes());
        let err = first_error(&stone);
        assert!(
            matches!(
                err,
                DecodeError::DeltaVersion { version, supported: 3, .. } if version == old
            ),
            "{err}"
        );
        assert!(err.to_string().contains("full stone"), "{err}");
    }
    let (mut stone, at, _) = honest();
    stone[at + 28..at + 30].copy_from_slice(&9u16.to_be_bytes());
    assert!(matches!(
        first_error(&stone),
        DecodeError::UnsupportedPayloadVersion {
            kind: PayloadKind::Delta,
            version: 9,
            ..
        }
    ));
}

#[test]
fn the_in_memory_decoder_agrees_with_the_stream() {
    let (stone, at, records) = honest();
    let index = index_of(&target(), SMALL);
    let (preamble, decoded) = delta::decode_all(&stone[at + 32..], &index).unwrap();
    assert_eq!(preamble, PREAMBLE);
    assert_eq!(decoded, records);
    assert!(matches!(
        delta::decode_all(&[0u8; 10], &index),
        Err((0, RecordError::Short { .. }))
    ));
}
