//! Delta records (DESIGN.md §11): how a delta stone rebuilds a package's new assets from
//! assets already in the store, one file at a time.
//!
//! A delta stone has file type 2. It carries the new package's meta, layout and index
//! payloads unchanged, then, last and in place of the content, one payload of kind 7
//! (`delta`, compression `none`, version 1). Its record count is the number of records.
//! Upstream uses kinds 1–6 (6 is its writer's scratch kind), so 7 collides with nothing.
//! All integers are big-endian, as everywhere in the format.
//!
//! ```text
//! delta payload body
//!   preamble (72 bytes)
//!     0   32  from:    the package id (sha256 of the stone) the delta starts from
//!    32   32  to:      the package id of the full stone it stands for
//!    64    8  to size: that full stone's size in bytes
//!   then one record per asset of the new package that the old package lacks:
//!     0    1  method: 1 patch, 2 whole
//!     1    1  window log the frame was made with (10..=31)
//!     2    6  zero
//!     8    8  target size: the asset's length in bytes
//!    16    8  base size: the base asset's length (0 for whole)
//!    24    8  frame length
//!    32   16  target: xxh3-128 of the asset
//!    48   16  base: xxh3-128 of the base asset (0 for whole)
//!    64    n  one zstd frame of `frame length` bytes, with its content size
//! ```
//!
//! A **patch** frame was compressed with the base asset's bytes as a raw prefix
//! (`ZSTD_CCtx_refPrefix`) and long-distance matching; it decodes only with the same base
//! referenced as a prefix. A **whole** frame is the asset compressed alone, used when no
//! base is close enough or the patch is not smaller. Applying a record holds at most the
//! frame, the base and the target in memory: memory is bounded by one asset pair, never by
//! the package (a whole-package `--patch-from` holds the entire old package).
//!
//! A delta is hostile input like any stone. Records are checked before anything is
//! allocated from them: the method and window log must be known, sizes must stay below
//! [`MAX_PATCH_PAIR`] / [`MAX_WHOLE_ASSET`], the frame must fit in what remains of the
//! payload, and the frame's own content size must equal the record's target size. Output
//! is bounded by the target size, and the result must hash to the target.
//!
//! Map: this file holds the records and their bytes; `apply` rebuilds an asset from one
//! ([`DeltaRecord::apply`]); [`make`] encodes records and chooses bases.

mod apply;
pub mod make;

pub use apply::ApplyError;

use crate::error::RecordError;
use crate::hash::{AssetHash, PackageId};
use crate::record::Cursor;

/// Length of the preamble at the start of a delta payload.
pub const PREAMBLE_LEN: usize = 72;

/// Length of a record's fixed part, before its frame.
pub const RECORD_HEADER_LEN: usize = 64;

/// The smallest window log zstd knows.
pub const MIN_WINDOW_LOG: u8 = 10;

/// The largest window log a record may declare: zstd's limit on 64-bit machines, and what
/// a 1 GiB pair needs.
pub const MAX_WINDOW_LOG: u8 = 31;

/// The largest base plus target a patch record may declare: applying one holds both in
/// memory. Writers stay far below this ([`make::DEFAULT_PAIR_LIMIT`]); the limit is what a
/// reader refuses outright.
pub const MAX_PATCH_PAIR: u64 = 1 << 30;

/// The largest asset a whole record may declare. Whole frames are decoded as a stream, so
/// this bounds output, not memory.
pub const MAX_WHOLE_ASSET: u64 = 1 << 40;

/// How a record rebuilds its asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// A zstd frame made with the base asset as a raw prefix.
    Patch {
        /// The base asset's xxh3-128.
        base: AssetHash,
        /// The base asset's length.
        base_size: u64,
    },
    /// The asset compressed alone.
    Whole,
}

impl Method {
    /// The byte stored at offset 0 of a record.
    pub fn to_byte(self) -> u8 {
        match self {
            Method::Patch { .. } => 1,
            Method::Whole => 2,
        }
    }

    /// A short name for people and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Method::Patch { .. } => "patch",
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

/// A record's fixed part, checked: everything but the frame bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordHeader {
    /// Patch (with its base) or whole.
    pub method: Method,
    /// The window log the frame was made with.
    pub window_log: u8,
    /// The asset this record rebuilds.
    pub target: AssetHash,
    /// Its length.
    pub target_size: u64,
    /// The frame's length.
    pub frame_len: u64,
}

impl RecordHeader {
    /// Decodes and checks the 64 fixed bytes. `left` is how many payload bytes follow them,
    /// which the frame must fit in.
    pub fn decode(bytes: &[u8; RECORD_HEADER_LEN], left: u64) -> Result<Self, RecordError> {
        let mut cursor = Cursor::new(bytes);
        let method = cursor.u8()?;
        let window_log = cursor.u8()?;
        let reserved = cursor.array::<6>()?;
        let target_size = cursor.u64()?;
        let base_size = cursor.u64()?;
        let frame_len = cursor.u64()?;
        let target = AssetHash(cursor.u128()?);
        let base = AssetHash(cursor.u128()?);
        if reserved != [0; 6] {
            return Err(RecordError::DeltaReserved);
        }
        if !(MIN_WINDOW_LOG..=MAX_WINDOW_LOG).contains(&window_log) {
            return Err(RecordError::DeltaWindowLog {
                log: window_log,
                max: MAX_WINDOW_LOG,
            });
        }
        let method = match method {
            1 => {
                let pair = base_size.saturating_add(target_size);
                if pair > MAX_PATCH_PAIR {
                    return Err(RecordError::DeltaTooLarge {
                        size: pair,
                        limit: MAX_PATCH_PAIR,
                    });
                }
                Method::Patch { base, base_size }
            }
            2 => {
                if base_size != 0 || base != AssetHash(0) {
                    return Err(RecordError::DeltaReserved);
                }
                if target_size > MAX_WHOLE_ASSET {
                    return Err(RecordError::DeltaTooLarge {
                        size: target_size,
                        limit: MAX_WHOLE_ASSET,
                    });
                }
                Method::Whole
            }
            other => return Err(RecordError::DeltaMethod(other)),
        };
        if frame_len > left {
            return Err(RecordError::Short {
                needed: frame_len,
                left,
            });
        }
        Ok(RecordHeader {
            method,
            window_log,
            target,
            target_size,
            frame_len,
        })
    }

    /// Encodes the fixed part.
    pub fn encode(&self) -> [u8; RECORD_HEADER_LEN] {
        let (base, base_size) = match self.method {
            Method::Patch { base, base_size } => (base, base_size),
            Method::Whole => (AssetHash(0), 0),
        };
        let mut out = [0u8; RECORD_HEADER_LEN];
        out[0] = self.method.to_byte();
        out[1] = self.window_log;
        out[8..16].copy_from_slice(&self.target_size.to_be_bytes());
        out[16..24].copy_from_slice(&base_size.to_be_bytes());
        out[24..32].copy_from_slice(&self.frame_len.to_be_bytes());
        out[32..48].copy_from_slice(&self.target.to_be_bytes());
        out[48..64].copy_from_slice(&base.to_be_bytes());
        out
    }
}

/// One record: its fixed part and its frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaRecord {
    /// The fixed part; `header.frame_len == frame.len()`.
    pub header: RecordHeader,
    /// The zstd frame.
    pub frame: Vec<u8>,
}

/// Decodes a whole delta payload body held in memory: the preamble and every record. For
/// the fuzzer and tests; the reader streams records instead.
pub fn decode_all(body: &[u8]) -> Result<(Preamble, Vec<DeltaRecord>), (u64, RecordError)> {
    let mut cursor = Cursor::new(body);
    let preamble = Preamble::decode(&cursor.array().map_err(|e| (0, e))?);
    let mut records = Vec::new();
    while !cursor.is_empty() {
        let index = records.len() as u64;
        let fixed = cursor
            .array::<RECORD_HEADER_LEN>()
            .map_err(|e| (index, e))?;
        let header =
            RecordHeader::decode(&fixed, cursor.remaining() as u64).map_err(|e| (index, e))?;
        // frame_len <= remaining was checked, so it fits in usize.
        let frame = cursor
            .take(header.frame_len as usize)
            .map_err(|e| (index, e))?
            .to_vec();
        records.push(DeltaRecord { header, frame });
    }
    Ok((preamble, records))
}

/// Encodes a preamble and records into a payload body.
pub fn encode_all(preamble: &Preamble, records: &[DeltaRecord]) -> Vec<u8> {
    let mut out = preamble.encode().to_vec();
    for record in records {
        out.extend_from_slice(&record.header.encode());
        out.extend_from_slice(&record.frame);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record_bytes(method: u8, log: u8, target_size: u64, base_size: u64, frame: u64) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[0] = method; // method
        b[1] = log; // window log
        b[8..16].copy_from_slice(&target_size.to_be_bytes()); // target size
        b[16..24].copy_from_slice(&base_size.to_be_bytes()); // base size
        b[24..32].copy_from_slice(&frame.to_be_bytes()); // frame length
        b[32..48].copy_from_slice(&7u128.to_be_bytes()); // target hash
        b[48..64].copy_from_slice(&9u128.to_be_bytes()); // base hash
        b
    }

    #[test]
    fn a_record_header_round_trips() {
        let bytes = record_bytes(1, 20, 100, 200, 30);
        let header = RecordHeader::decode(&bytes, 30).unwrap();
        assert_eq!(
            header.method,
            Method::Patch {
                base: AssetHash(9),
                base_size: 200
            }
        );
        assert_eq!(header.target, AssetHash(7));
        assert_eq!(header.encode(), bytes);
    }

    #[test]
    fn hostile_record_headers_are_refused_by_name() {
        let check = |bytes: [u8; 64], left| RecordHeader::decode(&bytes, left).unwrap_err();
        assert_eq!(
            check(record_bytes(3, 20, 1, 1, 1), 1),
            RecordError::DeltaMethod(3)
        );
        assert_eq!(
            check(record_bytes(1, 40, 1, 1, 1), 1),
            RecordError::DeltaWindowLog { log: 40, max: 31 }
        );
        assert_eq!(
            check(record_bytes(1, 9, 1, 1, 1), 1),
            RecordError::DeltaWindowLog { log: 9, max: 31 }
        );
        assert_eq!(
            check(record_bytes(1, 20, u64::MAX, 1, 1), 1),
            RecordError::DeltaTooLarge {
                size: u64::MAX,
                limit: MAX_PATCH_PAIR
            }
        );
        assert_eq!(
            check(record_bytes(1, 20, 1, 1, u64::MAX), 5),
            RecordError::Short {
                needed: u64::MAX,
                left: 5
            }
        );
        // A whole record must not name a base.
        assert_eq!(
            check(record_bytes(2, 20, 1, 1, 1), 1),
            RecordError::DeltaReserved
        );
        let mut reserved = record_bytes(1, 20, 1, 1, 1);
        reserved[4] = 1;
        assert_eq!(check(reserved, 1), RecordError::DeltaReserved);
    }
}
