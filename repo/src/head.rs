//! The heads of remote stones: their first bytes, up to the content (DESIGN.md §3, §7, §8).
//!
//! Writers put the meta, layout and index payloads before the content, so the *head* of a
//! stone (the archive header, every payload before the content, and the content's payload
//! header) is enough to know the package's files, their modes and their sizes: a candidate's
//! tree can be built and mounted from heads alone, before any package body is downloaded.
//!
//! [`fetch_head`] reads a head with one Range request of [`FIRST_RANGE`] bytes, and more
//! only when the payload headers say the head is longer. A server that ignores Range is
//! read only as far as needed ([`Transport::get_range`]). The head's sha256 ([`digest`])
//! is what a candidate records, so that the full stone downloaded later can be held to the
//! exact bytes the candidate was built from ([`check_head`]).
//!
//! This module parses nothing beyond sizes and kinds: the caller decodes the head with
//! `mossfs_format::Reader`, which verifies every payload's checksum.

use std::io::Read;
use std::path::Path;

use mossfs_format::{ArchiveHeader, FileType, PayloadHeader, PayloadKind};
use sha2::{Digest, Sha256};

use crate::RepoError;
use crate::transport::Transport;

/// The first request's length: the head of a small package (its meta, layout and index
/// are a few hundred bytes per file) in one round trip, without paying for much content.
pub const FIRST_RANGE: u64 = 8 * 1024;

/// The smallest extension asked for when the first range was short, so that a large
/// layout costs few round trips.
const MIN_EXTENSION: u64 = 64 * 1024;

/// The longest head accepted: a few upstream layouts of several megabytes fit, a hostile
/// header declaring gigabytes of metadata does not.
pub const MAX_HEAD: u64 = 256 << 20;

/// How much of a stone a prefix shows to be its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadLen {
    /// The head is this many bytes, all of them in the prefix.
    Complete(u64),
    /// The prefix is too short: the head is at least this many bytes.
    AtLeast(u64),
}

/// Why a prefix cannot be a package's head.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeadError {
    /// The archive header is damaged, or not a stone's.
    #[error("{0}")]
    Header(#[from] mossfs_format::DecodeError),
    /// A stone of another file type (a delta, an index) where a package was expected.
    #[error("it is a {0} stone, not a binary package")]
    NotAPackage(&'static str),
    /// Payload headers that declare more metadata than any package has.
    #[error("its payload headers declare a head longer than {MAX_HEAD} bytes")]
    TooLong,
    /// The head would end past the stone's size in the index.
    #[error("its head ({head} bytes) is longer than the whole stone ({size} bytes)")]
    PastEnd {
        /// The head's length.
        head: u64,
        /// The stone's size.
        size: u64,
    },
}

/// Walks the archive header and the payload headers in `prefix`: where the head ends, or
/// how many bytes are needed to know. Pure, and checked before every slice.
pub fn head_len(prefix: &[u8]) -> Result<HeadLen, HeadError> {
    let header = mossfs_format::header::LEN;
    let Some(bytes) = prefix.get(..header) else {
        return Ok(HeadLen::AtLeast(header as u64));
    };
    let bytes: &[u8; 32] = bytes.try_into().expect("sliced to the header's length");
    let archive = ArchiveHeader::decode(bytes)?;
    if archive.file_type != FileType::Binary {
        return Err(HeadError::NotAPackage(archive.file_type.name()));
    }
    let payload = mossfs_format::payload::LEN as u64;
    let mut offset = header as u64;
    for _ in 0..archive.payload_count {
        let end = offset.checked_add(payload).ok_or(HeadError::TooLong)?;
        if end > MAX_HEAD {
            return Err(HeadError::TooLong);
        }
        let Some(bytes) = prefix.get(offset as usize..end as usize) else {
            return Ok(HeadLen::AtLeast(end));
        };
        let bytes: &[u8; 32] = bytes.try_into().expect("sliced to a payload header");
        let info = PayloadHeader::decode(bytes);
        if matches!(info.kind, PayloadKind::Content | PayloadKind::Delta) {
            return Ok(HeadLen::Complete(end));
        }
        offset = end
            .checked_add(info.stored_size)
            .filter(|&o| o <= MAX_HEAD)
            .ok_or(HeadError::TooLong)?;
    }
    // A package without content (nothing but meta, say) is all head.
    if (prefix.len() as u64) < offset {
        return Ok(HeadLen::AtLeast(offset));
    }
    Ok(HeadLen::Complete(offset))
}

/// The sha256 of a head: what a candidate records of the bytes it was built from.
pub fn digest(head: &[u8]) -> [u8; 32] {
    Sha256::digest(head).into()
}

/// Fetches the head of the stone at `uri`, whose whole size is `size` (from the index):
/// one Range request of [`FIRST_RANGE`] bytes, extended while the payload headers say the
/// head is longer. `name` is the package, for messages.
pub fn fetch_head(
    transport: &Transport,
    name: &str,
    uri: &str,
    size: u64,
) -> Result<Vec<u8>, RepoError> {
    let bad = |source: HeadError| RepoError::BadHead {
        name: name.to_owned(),
        uri: uri.to_owned(),
        source: Box::new(source),
    };
    let fetch_err = |source| RepoError::Fetch {
        uri: uri.to_owned(),
        source,
    };
    let mut bytes = transport
        .get_range(uri, 0, FIRST_RANGE.min(size))
        .map_err(fetch_err)?;
    loop {
        match head_len(&bytes).map_err(bad)? {
            HeadLen::Complete(len) if len > size => {
                return Err(bad(HeadError::PastEnd { head: len, size }));
            }
            HeadLen::Complete(len) => {
                bytes.truncate(len as usize);
                return Ok(bytes);
            }
            HeadLen::AtLeast(len) => {
                let have = bytes.len() as u64;
                if len > size {
                    return Err(bad(HeadError::PastEnd { head: len, size }));
                }
                let want = (len - have).max(MIN_EXTENSION).min(size - have);
                let more = transport.get_range(uri, have, want).map_err(fetch_err)?;
                if more.is_empty() {
                    return Err(RepoError::SizeMismatch {
                        name: name.to_owned(),
                        expected: size,
                        found: have,
                    });
                }
                bytes.extend_from_slice(&more);
            }
        }
    }
}

/// Reads the head of a local stone (a cached one): the same bytes [`fetch_head`] gets.
pub fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    let mut chunk = FIRST_RANGE;
    loop {
        let have = bytes.len() as u64;
        (&mut file).take(chunk).read_to_end(&mut bytes)?;
        let at_end = (bytes.len() as u64) < have + chunk;
        match head_len(&bytes) {
            Ok(HeadLen::Complete(len)) => {
                bytes.truncate(len as usize);
                return Ok(bytes);
            }
            Ok(HeadLen::AtLeast(len)) if !at_end => chunk = (len - have).max(MIN_EXTENSION),
            Ok(HeadLen::AtLeast(_)) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the stone ends inside its head",
                ));
            }
            Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        }
    }
}

/// Whether the stone at `path` begins with exactly the head whose sha256 is `expected`,
/// `len` bytes long: the full download is the package the candidate was built from.
pub fn check_head(path: &Path, len: u64, expected: &[u8; 32]) -> std::io::Result<bool> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let read = std::io::copy(&mut (&mut file).take(len), &mut hasher)?;
    Ok(read == len && <[u8; 32]>::from(hasher.finalize()) == *expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An archive header for `count` payloads of file type `kind`.
    fn archive(count: u16, kind: u8) -> Vec<u8> {
        let mut h = vec![0, b'm', b'o', b's'];
        h.extend_from_slice(&count.to_be_bytes()); // payload count
        h.extend_from_slice(&[
            0, 0, 1, 0, 0, 2, 0, 0, 3, 0, 0, 4, 0, 0, 5, 0, 0, 6, 0, 0, 7,
        ]); // integrity pattern
        h.push(kind); // file type
        h.extend_from_slice(&1u32.to_be_bytes()); // format version
        h
    }

    /// A payload header of `kind` with `stored` body bytes.
    fn payload(kind: u8, stored: u64) -> Vec<u8> {
        let mut p = stored.to_be_bytes().to_vec(); // stored size
        p.extend_from_slice(&stored.to_be_bytes()); // plain size
        p.extend_from_slice(&[0; 8]); // checksum (not looked at here)
        p.extend_from_slice(&1u32.to_be_bytes()); // records
        p.extend_from_slice(&1u16.to_be_bytes()); // payload version
        p.push(kind); // kind
        p.push(1); // compression: none
        p
    }

    #[test]
    fn head_ends_after_the_content_header() {
        let mut s = archive(3, 1);
        s.extend(payload(1, 10)); // meta
        s.extend([7; 10]);
        s.extend(payload(3, 5)); // layout
        s.extend([7; 5]);
        s.extend(payload(2, 1000)); // content
        assert_eq!(head_len(&s).unwrap(), HeadLen::Complete(32 + 42 + 37 + 32));
        assert_eq!(head_len(&s[..40]).unwrap(), HeadLen::AtLeast(64));
        assert_eq!(head_len(&s[..70]).unwrap(), HeadLen::AtLeast(32 + 42 + 32));
        assert_eq!(head_len(&s[..10]).unwrap(), HeadLen::AtLeast(32));
    }

    #[test]
    fn a_package_without_content_is_all_head() {
        let mut s = archive(1, 1);
        s.extend(payload(1, 4));
        assert_eq!(head_len(&s).unwrap(), HeadLen::AtLeast(68));
        s.extend([1; 4]);
        assert_eq!(head_len(&s).unwrap(), HeadLen::Complete(68));
    }

    #[test]
    fn lying_sizes_and_other_file_types_are_refused() {
        let mut s = archive(2, 1);
        s.extend(payload(1, u64::MAX - 10));
        assert!(matches!(head_len(&s), Err(HeadError::TooLong)));
        let s = archive(1, 3);
        assert!(matches!(head_len(&s), Err(HeadError::NotAPackage(_))));
        let mut s = archive(1, 1);
        s[1] = b'x';
        assert!(matches!(head_len(&s), Err(HeadError::Header(_))));
    }
}
