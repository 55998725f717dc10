//! Content hashes. An asset is named by the xxh3-128 of its bytes (DESIGN.md §1).

use std::fmt;
use std::str::FromStr;

/// The xxh3-128 of one regular file's bytes, the name of an asset in the store.
///
/// Stones carry it as a big-endian u128; it is printed as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AssetHash(pub u128);

impl AssetHash {
    /// The hash of the empty file, which every package with an empty file carries.
    pub const EMPTY: AssetHash = AssetHash(0x99aa06d3014798d86001c324468d497f);

    /// Hashes a whole buffer in one go.
    pub fn of(bytes: &[u8]) -> Self {
        AssetHash(xxhash_rust::xxh3::xxh3_128(bytes))
    }

    /// The big-endian bytes, as stored in layout and index records.
    pub fn to_be_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// The inverse of [`AssetHash::to_be_bytes`].
    pub fn from_be_bytes(bytes: [u8; 16]) -> Self {
        AssetHash(u128::from_be_bytes(bytes))
    }
}

impl fmt::Display for AssetHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for AssetHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AssetHash({self})")
    }
}

/// Why a string is not an asset hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an asset hash (expected 32 hex digits)")]
pub struct ParseHashError(pub String);

impl FromStr for AssetHash {
    type Err = ParseHashError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParseHashError(s.to_owned()));
        }
        u128::from_str_radix(s, 16)
            .map(AssetHash)
            .map_err(|_| ParseHashError(s.to_owned()))
    }
}

/// An incremental xxh3-128, for hashing assets while they stream.
#[derive(Clone, Default)]
pub struct AssetHasher(xxhash_rust::xxh3::Xxh3);

impl AssetHasher {
    /// A hasher with nothing fed in yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds more bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The hash of everything fed in.
    pub fn finish(&self) -> AssetHash {
        AssetHash(self.0.digest128())
    }

    /// Hashes everything `reader` yields, through a buffer of at most `buf_size` bytes;
    /// returns the hash and the length. Callers open the file; this crate only reads.
    pub fn of_reader(
        mut reader: impl std::io::Read,
        buf_size: usize,
    ) -> std::io::Result<(AssetHash, u64)> {
        let mut buf = vec![0u8; buf_size.max(1)];
        let mut hasher = AssetHasher::new();
        let mut len = 0u64;
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return Ok((hasher.finish(), len)),
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    len += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_hash_matches_upstream() {
        assert_eq!(AssetHash::of(b""), AssetHash::EMPTY);
        assert_eq!(
            AssetHash::EMPTY.to_string(),
            "99aa06d3014798d86001c324468d497f"
        );
    }

    #[test]
    fn parse_round_trips_and_rejects_junk() {
        let h = AssetHash::of(b"hello");
        assert_eq!(h.to_string().parse::<AssetHash>(), Ok(h));
        assert!("xyz".parse::<AssetHash>().is_err());
        assert!(
            "+9aa06d3014798d86001c324468d497f"
                .parse::<AssetHash>()
                .is_err()
        );
    }

    #[test]
    fn a_reader_hashes_like_one_shot_whatever_the_buffer() {
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        for buf in [1, 7, 4096, 1 << 20] {
            assert_eq!(
                AssetHasher::of_reader(bytes.as_slice(), buf).unwrap(),
                (AssetHash::of(&bytes), 10_000)
            );
        }
    }

    #[test]
    fn incremental_equals_one_shot() {
        let mut hasher = AssetHasher::new();
        hasher.update(b"hel");
        hasher.update(b"lo");
        assert_eq!(hasher.finish(), AssetHash::of(b"hello"));
    }
}

/// A package's identity: the sha256 of its whole `.stone` file (DESIGN.md §1).
///
/// The format crate only names it; computing it is the store's job, since that needs the
/// file.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PackageId(pub [u8; 32]);

impl fmt::Display for PackageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for PackageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PackageId({self})")
    }
}

/// Why a string is not a package id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a package id (expected 64 hex digits)")]
pub struct ParsePackageIdError(pub String);

impl FromStr for PackageId {
    type Err = ParsePackageIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParsePackageIdError(s.to_owned());
        if s.len() != 64 || !s.is_ascii() {
            return Err(err());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| err())?;
        }
        Ok(PackageId(out))
    }
}

#[cfg(test)]
mod package_id_tests {
    use super::*;

    #[test]
    fn package_id_round_trips_through_hex() {
        let text = "13e2bce256b183ee0c721bd6cc438be8dcebf95850c8d851801e4ce000195d94";
        let id: PackageId = text.parse().unwrap();
        assert_eq!(id.to_string(), text);
        assert!("13e2".parse::<PackageId>().is_err());
        assert!(text.replace('1', "g").parse::<PackageId>().is_err());
    }
}
