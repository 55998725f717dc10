//! The 256 shard folders assets live in (`assets/ab/`), and which of them are known to
//! exist.
//!
//! A fresh store has none, and the first ingest needs them all. Creating each on demand
//! and remembering that it exists costs one `mkdirat` per folder per
//! [`Store`](crate::Store), instead of a failed rename and a `mkdirat` per asset.
//!
//! What is remembered is only a hint: a concurrent gc (in this process or another) may
//! remove an empty shard folder at any time. Whoever then fails to place a file in it
//! with `ENOENT` calls [`Shards::forget`] and creates it again.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use mossfs_format::AssetHash;
use rustix::fs::Mode;
use rustix::io::Errno;

use crate::asset::{shard, shard_index};

/// The shard folders found by [`Shards::scan`].
pub(crate) struct Present([u64; 4]);

impl Present {
    /// Whether the shard folder of `hash` existed when scanned.
    pub(crate) fn has_shard_of(&self, hash: AssetHash) -> bool {
        let index = shard_index(hash);
        self.0[index / 64] & 1 << (index % 64) != 0
    }
}

/// `ab` (two lowercase hex digits) as a shard number.
fn parse_shard(name: &[u8]) -> Option<usize> {
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(usize::from(b - b'0')),
        b'a'..=b'f' => Some(usize::from(b - b'a' + 10)),
        _ => None,
    };
    match name {
        &[high, low] => Some(digit(high)? << 4 | digit(low)?),
        _ => None,
    }
}

/// One bit per shard folder, set once it is known to exist.
pub(crate) struct Shards([AtomicU64; 256 / 64]);

impl std::fmt::Debug for Shards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let known: u32 = self
            .0
            .iter()
            .map(|word| word.load(Ordering::Relaxed).count_ones())
            .sum();
        write!(f, "Shards {{ known: {known} }}")
    }
}

impl Shards {
    pub(crate) fn new() -> Shards {
        Shards(std::array::from_fn(|_| AtomicU64::new(0)))
    }

    fn bit(&self, hash: AssetHash) -> (&AtomicU64, u64) {
        let index = shard_index(hash);
        (&self.0[index / 64], 1 << (index % 64))
    }

    /// Makes sure the shard folder of `hash` exists below `assets`, unless it is already
    /// known to. Safe against other writers creating it at the same time.
    pub(crate) fn ensure(&self, assets: &OwnedFd, hash: AssetHash) -> io::Result<()> {
        let (word, mask) = self.bit(hash);
        if word.load(Ordering::Relaxed) & mask != 0 {
            return Ok(());
        }
        match rustix::fs::mkdirat(assets, shard(hash).as_str(), Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {
                word.fetch_or(mask, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Lists the shard folders that exist now (remembering them), so that a caller can tell
    /// that every asset of a missing shard is missing without looking it up. A shard made
    /// right after the listing only means that its new assets are found later, when
    /// placing them fails with `EEXIST`.
    pub(crate) fn scan(&self, assets_dir: &Path) -> io::Result<Present> {
        let mut present = Present([0; 4]);
        for entry in std::fs::read_dir(assets_dir)? {
            let name = entry?.file_name();
            let Some(index) = parse_shard(name.as_bytes()) else {
                continue;
            };
            present.0[index / 64] |= 1 << (index % 64);
            self.0[index / 64].fetch_or(1 << (index % 64), Ordering::Relaxed);
        }
        Ok(present)
    }

    /// Forgets that the shard folder of `hash` exists, after it turned out not to.
    pub(crate) fn forget(&self, hash: AssetHash) {
        let (word, mask) = self.bit(hash);
        word.fetch_and(!mask, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::OFlags;

    #[test]
    fn ensure_creates_a_shard_once_and_again_after_forget() {
        let dir = tempfile::tempdir().unwrap();
        let fd = rustix::fs::open(dir.path(), OFlags::DIRECTORY, Mode::empty()).unwrap();
        let shards = Shards::new();
        let hash = AssetHash(0xab_u128 << 120 | 42);
        let path = dir.path().join("ab");
        shards.ensure(&fd, hash).unwrap();
        assert!(path.is_dir(), "{} was made", path.display());
        // Known now: removing it behind the set's back is not noticed...
        std::fs::remove_dir(&path).unwrap();
        shards.ensure(&fd, hash).unwrap();
        assert!(!path.exists());
        // ...until the writer that trips over it says so.
        shards.forget(hash);
        shards.ensure(&fd, hash).unwrap();
        assert!(path.is_dir());
        // An existing folder, made by someone else, is fine.
        let other = AssetHash(0x01_u128 << 120);
        std::fs::create_dir(dir.path().join("01")).unwrap();
        shards.ensure(&fd, other).unwrap();
    }

    #[test]
    fn scan_finds_shard_folders_only() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["00", "ab", "ff", ".tmp", "AB", "abc", "g0"] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        let shards = Shards::new();
        let present = shards.scan(dir.path()).unwrap();
        let found: Vec<usize> = (0..256)
            .filter(|&i| present.has_shard_of(AssetHash((i as u128) << 120 | 7)))
            .collect();
        assert_eq!(found, vec![0x00, 0xab, 0xff]);
        assert_eq!(format!("{shards:?}"), "Shards { known: 3 }");
    }
}
