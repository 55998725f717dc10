//! Delta records (DESIGN.md §11): how a delta stone rebuilds a package's new assets from
//! assets already in the store.
//!
//! A delta stone has file type 2. It carries the new package's meta, layout and index
//! payloads unchanged, then, last and in place of the content, one payload of kind 7
//! (`delta`, compression `none`, **version 3**). Its record count is the number of records.
//! Upstream uses kinds 1–6 (6 is its writer's scratch kind), so 7 collides with nothing.
//! Fixed-width integers are big-endian, as everywhere in the format; `varint` is an
//! unsigned LEB128 of at most 10 bytes, in its shortest form.
//!
//! ```text
//! delta payload body, version 3
//!   preamble (72 bytes)
//!     0   32  from:    the package id (sha256 of the stone) the delta starts from
//!    32   32  to:      the package id of the full stone it stands for
//!    64    8  to size: that full stone's size in bytes
//!   then the records; each is
//!     varint  H: the length of the record header that follows (at most 4 MiB)
//!     H bytes record header:
//!       u8      window log the frame was made with (10..=31)
//!       varint  T: how many assets the frame rebuilds (1..=65536)
//!       varint  B: how many old assets its prefix is made of (0..=65536; 0 means whole)
//!       T ×     varint  position of a target in this stone's index payload; the target's
//!                       xxh3-128 and length are that index entry's
//!       B ×     varint  position of a base in the OLD package's index payload; the
//!                       base's xxh3-128 and length are that entry's
//!       varint  frame length
//!     one zstd frame of `frame length` bytes, declaring its content size
//! ```
//!
//! A record rebuilds its **targets** (in order, their bytes concatenated) from one frame.
//! With bases (a **patch**) the frame was compressed with the bases' bytes, concatenated in
//! order, as a raw prefix (`ZSTD_CCtx_refPrefix`) and long-distance matching; it decodes
//! only against the same prefix. Without bases (a **whole** record) the targets were
//! compressed alone. A record of many small targets lets zstd match what the new files
//! share with each other and with every old file of the record, as a whole-package
//! `--patch-from` does, while big files keep a record each. Naming a target by its index
//! position costs a byte or two instead of the 24 bytes of a hash and a length that the
//! index already holds. Bases are named the same way, by their position in the index of
//! the package the delta starts from (the preamble's `from`), which whoever applies a delta
//! already has: a database holds the index of every installed package, and `mossfs delta
//! OLD NEW` has the old stone. A record's bases are therefore resolved against that index
//! ([`RecordHeader::resolve_bases`]) rather than when the record is read; a position the
//! old index lacks is [`RecordError::DeltaBasePosition`], and a store file that does not
//! hash to its entry is refused when it is read. Versions 1 (a 64-byte fixed header per
//! single-target record) and 2 (bases named by a 16-byte hash and a length) are no longer
//! read, and refused by name ([`crate::DecodeError::DeltaVersion`]).
//!
//! Applying a record holds at most its frame, its bases and its targets in memory: memory
//! is bounded by the record, which writers keep under [`make::DEFAULT_PAIR_LIMIT`], never
//! by the package (a whole-package `--patch-from` holds the entire old package). A whole
//! record of one target is decoded as a stream.
//!
//! A delta is hostile input like any stone. Records are checked before anything is
//! allocated from them: the header length, counts, window log and varints must be sane,
//! every position must name an index entry, bases plus targets must stay below
//! [`MAX_PATCH_PAIR`] (a single whole target below [`MAX_WHOLE_ASSET`]), the frame must fit
//! in what remains of the payload, and the frame's own content size must equal the
//! targets' total. Output is bounded by that total, and every target must hash to its name.
//!
//! Map: this file holds the records and their bytes; `apply` rebuilds assets from one
//! ([`DeltaRecord::apply`]); [`make`] encodes records and chooses bases.

mod apply;
pub mod make;

pub use apply::ApplyError;

use crate::error::RecordError;
use crate::hash::{AssetHash, PackageId};
use crate::index::IndexEntry;
use crate::record::Cursor;

/// The delta payload's version: 3, records of many targets named by their position in
/// the new index, and bases by theirs in the old package's index.
pub const PAYLOAD_VERSION: u16 = 3;

/// Length of the preamble at the start of a delta payload.
pub const PREAMBLE_LEN: usize = 72;

/// The longest record header a reader accepts (65536 target and 65536 base positions of
/// at most 10 bytes each fit).
pub const MAX_HEADER_LEN: u64 = 4 << 20;

/// The most targets, and the most bases, one record may name.
pub const MAX_RECORD_ASSETS: u64 = 1 << 16;

/// The smallest window log zstd knows.
pub const MIN_WINDOW_LOG: u8 = 10;

/// The largest window log a record may declare: zstd's limit on 64-bit machines, and what
/// a 1 GiB record needs.
pub const MAX_WINDOW_LOG: u8 = 31;

/// The largest bases plus targets a record decoded in one piece may declare: applying one
/// holds them all in memory. Writers stay far below this ([`make::DEFAULT_PAIR_LIMIT`]);
/// the limit is what a reader refuses outright.
pub const MAX_PATCH_PAIR: u64 = 1 << 30;

/// The largest asset a whole record of one target may declare. Such a frame is decoded
/// as a stream, so this bounds output, not memory.
pub const MAX_WHOLE_ASSET: u64 = 1 << 40;

/// How a record rebuilds its assets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// A zstd frame made with old assets (the bases) as a raw prefix.
    Patch,
    /// The targets compressed alone.
    Whole,
}

impl Method {
    /// A short name for people and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Method::Patch => "patch",
            Method::Whole => "whole",
        }
    }
}

/// The preamble of a delta payload: which package the delta starts from and which it
/// stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preamble {
    /// The package (sha256 of its stone) whose assets the patches use as bases.
    pub from: PackageId,
    /// The package (sha256 of its full stone) the delta rebuilds.
    pub to: PackageId,
    /// The size of that full stone, so that a package installed from a delta is recorded
    /// exactly as one installed from its full stone.
    pub to_size: u64,
}

impl Preamble {
    /// Decodes the preamble bytes.
    pub fn decode(bytes: &[u8; PREAMBLE_LEN]) -> Self {
        let mut from = [0u8; 32];
        let mut to = [0u8; 32];
        let mut size = [0u8; 8];
        from.copy_from_slice(&bytes[..32]);
        to.copy_from_slice(&bytes[32..64]);
        size.copy_from_slice(&bytes[64..]);
        Preamble {
            from: PackageId(from),
            to: PackageId(to),
            to_size: u64::from_be_bytes(size),
        }
    }

    /// Encodes the preamble.
    pub fn encode(&self) -> [u8; PREAMBLE_LEN] {
        let mut out = [0u8; PREAMBLE_LEN];
        out[..32].copy_from_slice(&self.from.0);
        out[32..64].copy_from_slice(&self.to.0);
        out[64..].copy_from_slice(&self.to_size.to_be_bytes());
        out
    }
}

/// An asset a record rebuilds: an entry of the stone's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    /// Its position in the index payload.
    pub position: u32,
    /// Its xxh3-128, from that index entry.
    pub hash: AssetHash,
    /// Its length, from that index entry.
    pub size: u64,
}

/// An old asset a patch's prefix is made of: an entry of the old package's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Base {
    /// Its position in the old package's index payload: how a record names it.
    pub position: u32,
    /// Its xxh3-128, from that index entry.
    pub hash: AssetHash,
    /// Its length, from that index entry.
    pub size: u64,
}

/// A record's header, checked: everything but the frame bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordHeader {
    /// The window log the frame was made with.
    pub window_log: u8,
    /// The assets the frame rebuilds, in order.
    pub targets: Vec<Target>,
    /// The positions, in the old package's index, of the old assets whose bytes,
    /// concatenated in order, are the frame's prefix; empty for a whole record. See
    /// [`RecordHeader::resolve_bases`].
    pub bases: Vec<u32>,
    /// The frame's length.
    pub frame_len: u64,
}

/// Reads an unsigned LEB128 in its shortest form.
fn varint(cursor: &mut Cursor<'_>) -> Result<u64, RecordError> {
    let mut value = 0u64;
    for i in 0..10 {
        let byte = cursor.u8()?;
        let bits = u64::from(byte & 0x7f);
        if i == 9 && byte > 1 {
            return Err(RecordError::DeltaVarint);
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            if byte == 0 && i > 0 {
                return Err(RecordError::DeltaVarint);
            }
            return Ok(value);
        }
    }
    Err(RecordError::DeltaVarint)
}

/// Appends `value` as an unsigned LEB128.
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads a record's length prefix from the start of `bytes`: the header length and how
/// many bytes the prefix took.
pub fn header_len(bytes: &[u8]) -> Result<(u64, usize), RecordError> {
    let mut cursor = Cursor::new(bytes);
    let len = varint(&mut cursor)?;
    if len > MAX_HEADER_LEN {
        return Err(RecordError::DeltaTooLarge {
            size: len,
            limit: MAX_HEADER_LEN,
        });
    }
    Ok((len, bytes.len() - cursor.remaining()))
}

impl RecordHeader {
    /// The method: patch when the record names bases.
    pub fn method(&self) -> Method {
        if self.bases.is_empty() {
            Method::Whole
        } else {
            Method::Patch
        }
    }

    /// The targets' total length: what the frame decodes to.
    pub fn target_size(&self) -> u64 {
        self.targets
            .iter()
            .fold(0u64, |sum, t| sum.saturating_add(t.size))
    }

    /// The record's bases, looked up in the index of the package the delta starts from,
    /// and checked: every position must name an entry, and bases plus targets must stay
    /// below [`MAX_PATCH_PAIR`], since applying the record holds them all.
    pub fn resolve_bases(&self, old_index: &[IndexEntry]) -> Result<Vec<Base>, RecordError> {
        let mut total = self.target_size();
        let mut out = Vec::with_capacity(self.bases.len());
        for &position in &self.bases {
            let entry = old_index
                .get(position as usize)
                .ok_or(RecordError::DeltaBasePosition {
                    position: u64::from(position),
                    entries: old_index.len() as u64,
                })?;
            total = total.saturating_add(entry.len());
            out.push(Base {
                position,
                hash: entry.digest,
                size: entry.len(),
            });
        }
        if total > MAX_PATCH_PAIR {
            return Err(RecordError::DeltaTooLarge {
                size: total,
                limit: MAX_PATCH_PAIR,
            });
        }
        Ok(out)
    }

    /// Whether the frame is decoded as a stream (one whole target) rather than in one
    /// piece.
    pub fn streams(&self) -> bool {
        self.bases.is_empty() && self.targets.len() == 1
    }

    /// Decodes and checks a record header (the `H` bytes after the length prefix) against
    /// the stone's index. `left` is how many payload bytes follow it, which the frame must
    /// fit in. Base positions are checked later, against the old package's index
    /// ([`RecordHeader::resolve_bases`]), which a stone alone does not carry.
    pub fn decode(bytes: &[u8], index: &[IndexEntry], left: u64) -> Result<Self, RecordError> {
        let mut cursor = Cursor::new(bytes);
        let window_log = cursor.u8()?;
        if !(MIN_WINDOW_LOG..=MAX_WINDOW_LOG).contains(&window_log) {
            return Err(RecordError::DeltaWindowLog {
                log: window_log,
                max: MAX_WINDOW_LOG,
            });
        }
        let count = |cursor: &mut Cursor<'_>, min: u64| {
            let n = varint(cursor)?;
            if n < min || n > MAX_RECORD_ASSETS {
                return Err(RecordError::DeltaCount {
                    count: n,
                    max: MAX_RECORD_ASSETS,
                });
            }
            Ok(n)
        };
        let target_count = count(&mut cursor, 1)?;
        let base_count = count(&mut cursor, 0)?;
        // Every target and every base takes at least one byte, so nothing is allocated
        // beyond what the header really holds.
        let mut targets = Vec::with_capacity((target_count as usize).min(cursor.remaining()));
        for _ in 0..target_count {
            let position = varint(&mut cursor)?;
            let entry = usize::try_from(position)
                .ok()
                .and_then(|p| index.get(p))
                .ok_or(RecordError::DeltaPosition {
                    position,
                    entries: index.len() as u64,
                })?;
            targets.push(Target {
                position: position as u32,
                hash: entry.digest,
                size: entry.len(),
            });
        }
        let mut bases = Vec::with_capacity((base_count as usize).min(cursor.remaining()));
        for _ in 0..base_count {
            let position = varint(&mut cursor)?;
            let position = u32::try_from(position).map_err(|_| RecordError::DeltaBasePosition {
                position,
                entries: u64::from(u32::MAX),
            })?;
            bases.push(position);
        }
        let frame_len = varint(&mut cursor)?;
        if !cursor.is_empty() {
            return Err(RecordError::DeltaReserved);
        }
        let header = RecordHeader {
            window_log,
            targets,
            bases,
            frame_len,
        };
        // Bases are added to this when they are resolved.
        let (size, limit) = if header.streams() {
            (header.target_size(), MAX_WHOLE_ASSET)
        } else {
            (header.target_size(), MAX_PATCH_PAIR)
        };
        if size > limit {
            return Err(RecordError::DeltaTooLarge { size, limit });
        }
        if frame_len > left {
            return Err(RecordError::Short {
                needed: frame_len,
                left,
            });
        }
        Ok(header)
    }

    /// Encodes the header, without its length prefix.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.window_log];
        put_varint(&mut out, self.targets.len() as u64);
        put_varint(&mut out, self.bases.len() as u64);
        for target in &self.targets {
            put_varint(&mut out, u64::from(target.position));
        }
        for &base in &self.bases {
            put_varint(&mut out, u64::from(base));
        }
        put_varint(&mut out, self.frame_len);
        out
    }
}

/// One record: its header and its frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaRecord {
    /// The header; `header.frame_len == frame.len()`.
    pub header: RecordHeader,
    /// The zstd frame.
    pub frame: Vec<u8>,
}

impl DeltaRecord {
    /// The record's bytes in a payload: length prefix, header, frame.
    pub fn encode(&self) -> Vec<u8> {
        let header = RecordHeader {
            frame_len: self.frame.len() as u64,
            ..self.header.clone()
        }
        .encode();
        let mut out = Vec::with_capacity(header.len() + 3 + self.frame.len());
        put_varint(&mut out, header.len() as u64);
        out.extend_from_slice(&header);
        out.extend_from_slice(&self.frame);
        out
    }
}

/// Decodes a whole delta payload body held in memory, against the stone's index: the
/// preamble and every record. For the fuzzer and tests; the reader streams records
/// instead.
pub fn decode_all(
    body: &[u8],
    index: &[IndexEntry],
) -> Result<(Preamble, Vec<DeltaRecord>), (u64, RecordError)> {
    let mut cursor = Cursor::new(body);
    let preamble = Preamble::decode(&cursor.array().map_err(|e| (0, e))?);
    let mut records = Vec::new();
    while !cursor.is_empty() {
        let at = (records.len() as u64, ());
        let fail = |e| (at.0, e);
        let rest = cursor.take(cursor.remaining()).map_err(fail)?;
        let (len, used) = header_len(rest).map_err(fail)?;
        let mut inner = Cursor::new(&rest[used..]);
        if len > inner.remaining() as u64 {
            return Err(fail(RecordError::Short {
                needed: len,
                left: inner.remaining() as u64,
            }));
        }
        let fixed = inner.take(len as usize).map_err(fail)?;
        let header = RecordHeader::decode(fixed, index, inner.remaining() as u64).map_err(fail)?;
        // frame_len <= remaining was checked, so it fits in usize.
        let frame = inner
            .take(header.frame_len as usize)
            .map_err(fail)?
            .to_vec();
        records.push(DeltaRecord { header, frame });
        cursor = inner;
    }
    Ok((preamble, records))
}

/// Encodes a preamble and records into a payload body.
pub fn encode_all(preamble: &Preamble, records: &[DeltaRecord]) -> Vec<u8> {
    let mut out = preamble.encode().to_vec();
    for record in records {
        out.extend_from_slice(&record.encode());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> Vec<IndexEntry> {
        crate::layout_index([(AssetHash(7), 100), (AssetHash(8), 50)])
    }

    fn old_index() -> Vec<IndexEntry> {
        crate::layout_index([(AssetHash(9), 200), (AssetHash(10), 300)])
    }

    fn header(log: u8, positions: &[u64], bases: &[u64], frame: u64) -> Vec<u8> {
        let mut b = vec![log];
        put_varint(&mut b, positions.len() as u64);
        put_varint(&mut b, bases.len() as u64);
        for &p in positions {
            put_varint(&mut b, p);
        }
        for &base in bases {
            put_varint(&mut b, base);
        }
        put_varint(&mut b, frame);
        b
    }

    #[test]
    fn a_record_header_round_trips_and_takes_targets_from_the_index() {
        let bytes = header(20, &[1, 0], &[1, 0], 30);
        let decoded = RecordHeader::decode(&bytes, &index(), 30).unwrap();
        assert_eq!(decoded.method(), Method::Patch);
        assert_eq!(decoded.targets[0].hash, AssetHash(8));
        assert_eq!(decoded.targets[1].size, 100);
        assert_eq!(decoded.target_size(), 150);
        let bases = decoded.resolve_bases(&old_index()).unwrap();
        assert_eq!(
            bases,
            vec![
                Base {
                    position: 1,
                    hash: AssetHash(10),
                    size: 300
                },
                Base {
                    position: 0,
                    hash: AssetHash(9),
                    size: 200
                }
            ]
        );
        assert_eq!(decoded.encode(), bytes);
        // Two targets, two bases and the frame length in 8 bytes, against the 42 that
        // version 2 took and the 128 of two version-1 headers.
        assert_eq!(bytes.len(), 8);
    }

    #[test]
    fn varints_are_shortest_and_bounded() {
        for value in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(varint(&mut Cursor::new(&out)).unwrap(), value);
        }
        let refused = |bytes: &[u8]| varint(&mut Cursor::new(bytes)).unwrap_err();
        assert_eq!(refused(&[0x80, 0x00]), RecordError::DeltaVarint);
        assert_eq!(refused(&[0xff; 11]), RecordError::DeltaVarint);
        let mut overflow = vec![0xff; 9];
        overflow.push(0x02);
        assert_eq!(refused(&overflow), RecordError::DeltaVarint);
        assert!(matches!(refused(&[0x80]), RecordError::Short { .. }));
    }

    #[test]
    fn hostile_record_headers_are_refused_by_name() {
        let check =
            |bytes: Vec<u8>, left| RecordHeader::decode(&bytes, &index(), left).unwrap_err();
        assert_eq!(
            check(header(40, &[0], &[], 1), 1),
            RecordError::DeltaWindowLog { log: 40, max: 31 }
        );
        assert_eq!(
            check(header(9, &[0], &[], 1), 1),
            RecordError::DeltaWindowLog { log: 9, max: 31 }
        );
        assert_eq!(
            check(header(20, &[], &[], 1), 1),
            RecordError::DeltaCount {
                count: 0,
                max: MAX_RECORD_ASSETS
            }
        );
        let mut many = vec![20];
        put_varint(&mut many, u64::MAX);
        assert_eq!(
            check(many, 1),
            RecordError::DeltaCount {
                count: u64::MAX,
                max: MAX_RECORD_ASSETS
            }
        );
        assert_eq!(
            check(header(20, &[2], &[], 1), 1),
            RecordError::DeltaPosition {
                position: 2,
                entries: 2
            }
        );
        let resolved = |bytes: Vec<u8>, old: &[IndexEntry]| {
            RecordHeader::decode(&bytes, &index(), 1)
                .unwrap()
                .resolve_bases(old)
                .unwrap_err()
        };
        assert_eq!(
            resolved(header(20, &[0], &[2], 1), &old_index()),
            RecordError::DeltaBasePosition {
                position: 2,
                entries: 2
            }
        );
        assert_eq!(
            resolved(header(20, &[0], &[0], 1), &[]),
            RecordError::DeltaBasePosition {
                position: 0,
                entries: 0
            }
        );
        let huge = crate::layout_index([(AssetHash(9), MAX_PATCH_PAIR)]);
        assert_eq!(
            resolved(header(20, &[0], &[0], 1), &huge),
            RecordError::DeltaTooLarge {
                size: MAX_PATCH_PAIR + 100,
                limit: MAX_PATCH_PAIR
            }
        );
        assert!(matches!(
            check(header(20, &[0], &[u64::from(u32::MAX) + 1], 1), 1),
            RecordError::DeltaBasePosition { .. }
        ));
        assert_eq!(
            check(header(20, &[0], &[0], u64::MAX), 5),
            RecordError::Short {
                needed: u64::MAX,
                left: 5
            }
        );
        let mut trailing = header(20, &[0], &[], 1);
        trailing.push(0);
        assert_eq!(check(trailing, 1), RecordError::DeltaReserved);
        assert!(matches!(
            check(header(20, &[0, 1], &[0], 1)[..4].to_vec(), 1),
            RecordError::Short { .. }
        ));
        let mut long = Vec::new();
        put_varint(&mut long, MAX_HEADER_LEN + 1);
        assert_eq!(
            header_len(&long).unwrap_err(),
            RecordError::DeltaTooLarge {
                size: MAX_HEADER_LEN + 1,
                limit: MAX_HEADER_LEN
            }
        );
    }
}
