//! The 32-byte archive header (DESIGN.md §3).
//!
//! Following upstream, the frame is read version-agnostically first: the magic, then the
//! version at offset 28, and only then the version-specific bytes 4–27.

use crate::error::DecodeError;

/// The first four bytes of every stone.
pub const MAGIC: [u8; 4] = *b"\0mos";

/// The only format version there is.
pub const VERSION: u32 = 1;

/// The fixed pattern at bytes 6–26 that guards against corruption.
pub const INTEGRITY: [u8; 21] = [
    0, 0, 1, 0, 0, 2, 0, 0, 3, 0, 0, 4, 0, 0, 5, 0, 0, 6, 0, 0, 7,
];

/// Length of the archive header.
pub const LEN: usize = 32;

/// What kind of archive this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    /// A binary package.
    Binary,
    /// A delta between two packages.
    Delta,
    /// A repository index (`stone.index`).
    Repository,
    /// A build manifest.
    BuildManifest,
    /// A type this reader does not know; its payloads are still readable.
    Unknown(u8),
}

impl FileType {
    /// The byte stored at offset 27.
    pub fn to_byte(self) -> u8 {
        match self {
            FileType::Binary => 1,
            FileType::Delta => 2,
            FileType::Repository => 3,
            FileType::BuildManifest => 4,
            FileType::Unknown(b) => b,
        }
    }

    /// The inverse of [`FileType::to_byte`].
    pub fn from_byte(b: u8) -> Self {
        match b {
            1 => FileType::Binary,
            2 => FileType::Delta,
            3 => FileType::Repository,
            4 => FileType::BuildManifest,
            other => FileType::Unknown(other),
        }
    }

    /// A short name for people and JSON.
    pub fn name(self) -> &'static str {
        match self {
            FileType::Binary => "binary",
            FileType::Delta => "delta",
            FileType::Repository => "repository",
            FileType::BuildManifest => "build-manifest",
            FileType::Unknown(_) => "unknown",
        }
    }
}

/// A decoded archive header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveHeader {
    /// How many payloads follow.
    pub payload_count: u16,
    /// What kind of archive this is.
    pub file_type: FileType,
}

impl ArchiveHeader {
    /// Decodes and validates the 32 header bytes.
    pub fn decode(bytes: &[u8; LEN]) -> Result<Self, DecodeError> {
        let magic: [u8; 4] = [bytes[0], bytes[1], bytes[2], bytes[3]];
        if magic != MAGIC {
            return Err(DecodeError::BadMagic { found: magic });
        }
        let version = u32::from_be_bytes([bytes[28], bytes[29], bytes[30], bytes[31]]);
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        if bytes[6..27] != INTEGRITY {
            return Err(DecodeError::BadIntegrity);
        }
        Ok(ArchiveHeader {
            payload_count: u16::from_be_bytes([bytes[4], bytes[5]]),
            file_type: FileType::from_byte(bytes[27]),
        })
    }

    /// Encodes the header.
    pub fn encode(&self) -> [u8; LEN] {
        let mut out = [0u8; LEN];
        out[0..4].copy_from_slice(&MAGIC);
        out[4..6].copy_from_slice(&self.payload_count.to_be_bytes());
        out[6..27].copy_from_slice(&INTEGRITY);
        out[27] = self.file_type.to_byte();
        out[28..32].copy_from_slice(&VERSION.to_be_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header of upstream's bash-completion stone, row by row.
    const BASH_COMPLETION: [u8; 32] = [
        0x00, 0x6d, 0x6f, 0x73, // magic "\0mos"
        0x00, 0x04, // four payloads
        0, 0, 1, 0, 0, 2, 0, 0, 3, 0, 0, 4, 0, 0, 5, 0, 0, 6, 0, 0, 7,    // integrity
        0x01, // binary package
        0x00, 0x00, 0x00, 0x01, // version 1
    ];

    #[test]
    fn decodes_upstream_header_and_round_trips() {
        let header = ArchiveHeader::decode(&BASH_COMPLETION).unwrap();
        assert_eq!(header.payload_count, 4);
        assert_eq!(header.file_type, FileType::Binary);
        assert_eq!(header.encode(), BASH_COMPLETION);
    }

    #[test]
    fn rejects_bad_magic_version_and_pattern() {
        let mut bad = BASH_COMPLETION;
        bad[1] = b'M';
        assert!(matches!(
            ArchiveHeader::decode(&bad),
            Err(DecodeError::BadMagic { .. })
        ));
        let mut bad = BASH_COMPLETION;
        bad[31] = 2;
        assert!(matches!(
            ArchiveHeader::decode(&bad),
            Err(DecodeError::UnsupportedVersion(2))
        ));
        let mut bad = BASH_COMPLETION;
        bad[10] = 9;
        assert!(matches!(
            ArchiveHeader::decode(&bad),
            Err(DecodeError::BadIntegrity)
        ));
    }
}
