//! Index records (DESIGN.md §3): where each unique file's bytes sit in the content.

use crate::error::RecordError;
use crate::hash::AssetHash;
use crate::record::Cursor;

/// Length of an index record.
pub const LEN: usize = 32;

/// One asset's byte range in the decompressed content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IndexEntry {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// The xxh3-128 of those bytes.
    pub digest: AssetHash,
}

impl IndexEntry {
    /// The asset's length in bytes; a reversed range counts as empty here and is refused
    /// by the reader before it is used.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether this is an empty asset.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn decode(cursor: &mut Cursor<'_>) -> Result<Self, RecordError> {
        Ok(IndexEntry {
            start: cursor.u64()?,
            end: cursor.u64()?,
            digest: AssetHash(cursor.u128()?),
        })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.start.to_be_bytes());
        out.extend_from_slice(&self.end.to_be_bytes());
        out.extend_from_slice(&self.digest.to_be_bytes());
    }
}

/// Decodes a whole index payload body.
pub fn decode_all(body: &[u8]) -> Result<Vec<IndexEntry>, (u64, RecordError)> {
    let mut cursor = Cursor::new(body);
    let mut out = Vec::with_capacity(body.len() / LEN);
    while !cursor.is_empty() {
        let index = out.len() as u64;
        out.push(IndexEntry::decode(&mut cursor).map_err(|e| (index, e))?);
    }
    Ok(out)
}

/// Encodes entries into a payload body.
pub fn encode_all(entries: &[IndexEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * LEN);
    for entry in entries {
        entry.encode(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_empty_asset_record() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0u64.to_be_bytes()); // start
        bytes.extend_from_slice(&0u64.to_be_bytes()); // end
        bytes.extend_from_slice(&AssetHash::EMPTY.to_be_bytes()); // xxh3-128
        let entries = decode_all(&bytes).unwrap();
        assert_eq!(
            entries,
            vec![IndexEntry {
                start: 0,
                end: 0,
                digest: AssetHash::EMPTY
            }]
        );
        assert_eq!(encode_all(&entries), bytes);
        assert!(matches!(
            decode_all(&bytes[..31]),
            Err((0, RecordError::Short { .. }))
        ));
    }
}
