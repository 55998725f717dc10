//! Payload headers (DESIGN.md §3): the 32 bytes in front of every payload body.

use std::fmt;

/// Length of a payload header.
pub const LEN: usize = 32;

/// What a payload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadKind {
    /// Package metadata records.
    Meta,
    /// The concatenated file contents.
    Content,
    /// Layout records: the package's file system entries.
    Layout,
    /// Index records: where each asset sits in the content.
    Index,
    /// Attributes, kept as opaque bytes.
    Attributes,
    /// Delta records (kind 7, DESIGN.md §11): how a delta stone rebuilds its assets.
    Delta,
    /// A kind this reader does not know; skipped by its stored size.
    Unknown(u8),
}

impl PayloadKind {
    /// The byte stored at offset 30.
    pub fn to_byte(self) -> u8 {
        match self {
            PayloadKind::Meta => 1,
            PayloadKind::Content => 2,
            PayloadKind::Layout => 3,
            PayloadKind::Index => 4,
            PayloadKind::Attributes => 5,
            PayloadKind::Delta => 7,
            PayloadKind::Unknown(b) => b,
        }
    }

    /// The inverse of [`PayloadKind::to_byte`].
    pub fn from_byte(b: u8) -> Self {
        match b {
            1 => PayloadKind::Meta,
            2 => PayloadKind::Content,
            3 => PayloadKind::Layout,
            4 => PayloadKind::Index,
            5 => PayloadKind::Attributes,
            7 => PayloadKind::Delta,
            other => PayloadKind::Unknown(other),
        }
    }
}

impl fmt::Display for PayloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PayloadKind::Meta => f.write_str("meta"),
            PayloadKind::Content => f.write_str("content"),
            PayloadKind::Layout => f.write_str("layout"),
            PayloadKind::Index => f.write_str("index"),
            PayloadKind::Attributes => f.write_str("attributes"),
            PayloadKind::Delta => f.write_str("delta"),
            PayloadKind::Unknown(b) => write!(f, "unknown({b})"),
        }
    }
}

/// How a payload body is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Stored as is.
    None,
    /// One or more zstd frames.
    Zstd,
    /// A compression this reader does not know; the payload is skipped.
    Unknown(u8),
}

impl Compression {
    /// The byte stored at offset 31.
    pub fn to_byte(self) -> u8 {
        match self {
            Compression::None => 1,
            Compression::Zstd => 2,
            Compression::Unknown(b) => b,
        }
    }

    /// The inverse of [`Compression::to_byte`].
    pub fn from_byte(b: u8) -> Self {
        match b {
            1 => Compression::None,
            2 => Compression::Zstd,
            other => Compression::Unknown(other),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::None => f.write_str("none"),
            Compression::Zstd => f.write_str("zstd"),
            Compression::Unknown(b) => write!(f, "unknown({b})"),
        }
    }
}

/// A decoded payload header. Sizes are as declared, and not yet trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadHeader {
    /// Body bytes as stored.
    pub stored_size: u64,
    /// Body bytes after decompression.
    pub plain_size: u64,
    /// XXH3-64 of the stored body bytes.
    pub checksum: u64,
    /// Number of records in the body.
    pub records: u32,
    /// Payload format version, 1.
    pub version: u16,
    /// What the body holds.
    pub kind: PayloadKind,
    /// How the body is stored.
    pub compression: Compression,
}

impl PayloadHeader {
    /// Decodes the 32 header bytes. Nothing can be invalid at this stage: sizes are checked
    /// by the reader against what remains, and unknown kinds are kept.
    pub fn decode(b: &[u8; LEN]) -> Self {
        let u64_at = |i: usize| {
            u64::from_be_bytes([
                b[i],
                b[i + 1],
                b[i + 2],
                b[i + 3],
                b[i + 4],
                b[i + 5],
                b[i + 6],
                b[i + 7],
            ])
        };
        PayloadHeader {
            stored_size: u64_at(0),
            plain_size: u64_at(8),
            checksum: u64_at(16),
            records: u32::from_be_bytes([b[24], b[25], b[26], b[27]]),
            version: u16::from_be_bytes([b[28], b[29]]),
            kind: PayloadKind::from_byte(b[30]),
            compression: Compression::from_byte(b[31]),
        }
    }

    /// Encodes the header.
    pub fn encode(&self) -> [u8; LEN] {
        let mut out = [0u8; LEN];
        out[0..8].copy_from_slice(&self.stored_size.to_be_bytes());
        out[8..16].copy_from_slice(&self.plain_size.to_be_bytes());
        out[16..24].copy_from_slice(&self.checksum.to_be_bytes());
        out[24..28].copy_from_slice(&self.records.to_be_bytes());
        out[28..30].copy_from_slice(&self.version.to_be_bytes());
        out[30] = self.kind.to_byte();
        out[31] = self.compression.to_byte();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_upstream_meta_header() {
        // bash-completion's first payload header, field by field.
        let bytes: [u8; 32] = [
            0, 0, 0, 0, 0, 0, 0x01, 0x33, // stored size 307
            0, 0, 0, 0, 0, 0, 0x02, 0x0a, // plain size 522
            0xf7, 0x47, 0xb7, 0x60, 0x66, 0x22, 0x04, 0x45, // xxh3-64 checksum
            0, 0, 0, 11, // 11 records
            0, 1, // payload version 1
            1, // meta
            2, // zstd
        ];
        let header = PayloadHeader::decode(&bytes);
        assert_eq!(header.stored_size, 307);
        assert_eq!(header.plain_size, 522);
        assert_eq!(header.checksum, 0xf747b76066220445);
        assert_eq!(header.records, 11);
        assert_eq!(header.kind, PayloadKind::Meta);
        assert_eq!(header.compression, Compression::Zstd);
        assert_eq!(header.encode(), bytes);
    }

    #[test]
    fn unknown_kinds_survive_a_round_trip() {
        assert_eq!(PayloadKind::from_byte(77), PayloadKind::Unknown(77));
        assert_eq!(PayloadKind::Unknown(77).to_byte(), 77);
        assert_eq!(Compression::from_byte(9).to_byte(), 9);
    }
}
