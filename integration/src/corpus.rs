//! Corpus generators: sets of `.stone` packages for benchmarks and end-to-end tests.
//!
//! Benchmarks need many packages that install together without conflicts, and they need
//! them on demand, since nothing this size belongs in the repository. This module makes
//! them with the format crate's real [`mossfs_format::Writer`], so every stone here is one
//! that `mossfs_format::read::verify` accepts. It writes only below the output directory
//! it is given, and it never touches a mossfs root, a store or a database.
//!
//! Map:
//! - [`pack`]: [`pack_entries`], the one place a list of [`SourceEntry`] values becomes a
//!   stone. Both generators below go through it.
//! - [`synthetic`]: a deterministic corpus of any size ([`SyntheticSpec`]), plus the tiny
//!   package of the "one package changes" benchmark ([`small_package`]).
//! - [`debian`]: this machine's installed Debian packages, one stone each, made of the
//!   real files under `/usr` (read only, never written).
//!
//! The `mkcorpus` binary is a thin command line over these three.

pub mod debian;
pub mod pack;
pub mod synthetic;

pub use debian::{debian, debian_packages};
pub use pack::{SourceEntry, SourceKind, is_valid_name, pack_entries};
pub use synthetic::{SyntheticSpec, small_package, synthetic};

use std::io;

use mossfs_format::WriterOptions;

/// The writer options the generators use unless told otherwise: zstd level 3, compressed
/// on the calling thread. Level 3 keeps a 250,000-entry corpus to seconds; packages are
/// compressed in parallel, one per rayon worker, instead of one stone over many threads.
///
/// Determinism: `threads: 0` uses zstd's single-threaded path, which is byte-identical
/// from run to run. Measured with libzstd as bundled by zstd-sys here, multithreaded output
/// was also identical across runs and across 1, 2 and 4 workers, but differs from
/// `threads: 0`; zstd documents only the former, so the generators default to 0.
pub const FAST: WriterOptions = WriterOptions {
    level: 3,
    threads: 0,
};

/// `len` deterministic bytes that no compressor can shrink (xorshift64), for tests that
/// need content of a real size: unpacking that takes a while, a disk that fills up.
/// Different seeds give different bytes.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// An I/O failure, with what was being done when it happened.
///
/// The generators return `io::Result` so that callers can use `?` anywhere; this error
/// travels inside the `io::Error` (same kind as the cause) so that the path or package
/// still reaches the message. The cause is kept as the source, not glued into the text.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct CorpusError {
    /// What was being done, naming the path or package.
    pub what: String,
    /// What went wrong.
    #[source]
    pub source: io::Error,
}

/// Wraps an I/O error with what was being done, for `map_err`.
fn context(what: impl FnOnce() -> String) -> impl FnOnce(io::Error) -> io::Error {
    move |source| {
        io::Error::new(
            source.kind(),
            CorpusError {
                what: what(),
                source,
            },
        )
    }
}

/// A refusal of the caller's input, which has no I/O cause.
fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what)
}

/// Checks shared by the generators' tests.
#[cfg(test)]
mod testing {
    use std::collections::HashMap;
    use std::fs::File;
    use std::io::BufReader;
    use std::path::PathBuf;

    use mossfs_format::{EntryKind, Stone};

    /// Reads and fully verifies every stone, content digests included.
    pub fn verify_all(paths: &[PathBuf]) -> Vec<Stone> {
        paths
            .iter()
            .map(|path| {
                let file = File::open(path).expect("the stone was just written");
                mossfs_format::read::verify(BufReader::new(file))
                    .unwrap_or_else(|e| panic!("{} does not verify: {e}", path.display()))
            })
            .collect()
    }

    /// Asserts that the stones install together: no file or symlink path in two packages,
    /// and nothing below another package's file or symlink.
    pub fn assert_conflict_free(stones: &[Stone]) {
        let mut leaves: HashMap<Vec<u8>, &str> = HashMap::new();
        for stone in stones {
            let name = stone.name().expect("every generated stone is named");
            for entry in &stone.layout {
                if entry.kind != EntryKind::Directory {
                    let earlier = leaves.insert(entry.path.as_bytes().to_vec(), name);
                    assert_eq!(earlier, None, "{} is in two packages", entry.path);
                }
            }
        }
        for stone in stones {
            for entry in &stone.layout {
                let mut parent = entry.path.parent();
                while let Some(dir) = parent {
                    let owner = leaves.get(dir.as_bytes());
                    assert_eq!(owner, None, "{} lies below a non-directory", entry.path);
                    parent = dir.parent();
                }
            }
        }
    }
}
