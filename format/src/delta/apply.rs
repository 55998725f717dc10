//! Applying a delta record: rebuilding its assets from its frame (and, for a patch, its
//! bases), with the output bounded by the targets' sizes and each target hashed against
//! its name.

use std::io::{self, Read};

use super::DeltaRecord;
use crate::error::RecordError;
use crate::hash::{AssetHash, AssetHasher};
use crate::index::IndexEntry;

/// Why a record could not rebuild its assets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// A patch was applied without its bases, or with a base of the wrong length or hash.
    #[error(
        "the patch for {target} needs base {expected} ({expected_size} bytes), but was given {found}"
    )]
    WrongBase {
        /// The record's first target.
        target: AssetHash,
        /// The base the record names.
        expected: AssetHash,
        /// Its length.
        expected_size: u64,
        /// What was given instead (`none`, or a length and hash).
        found: String,
    },
    /// The record's bases are not in the old package's index, or with it exceed what a
    /// reader holds: the delta was made from another package.
    #[error("the patch for {target} cannot find its bases in the old package's index: it {source}")]
    Bases {
        /// The record's first target.
        target: AssetHash,
        /// What is wrong.
        #[source]
        source: RecordError,
    },
    /// zstd refused the frame.
    #[error("the frame for {target} does not decode: {reason}")]
    Decompress {
        /// The record's first target.
        target: AssetHash,
        /// What zstd said.
        reason: String,
    },
    /// The frame decodes to another length than the record says.
    #[error("the frame for {target} decodes to {found} bytes, the record says {expected}")]
    Size {
        /// The record's first target.
        target: AssetHash,
        /// The targets' total size.
        expected: u64,
        /// Bytes produced (for an overrun: at least this many).
        found: u64,
    },
    /// The rebuilt bytes do not hash to the target.
    #[error("the rebuilt bytes hash to {computed}, but the record names them {target}")]
    Hash {
        /// The target.
        target: AssetHash,
        /// The hash of what was rebuilt.
        computed: AssetHash,
    },
    /// Writing the rebuilt bytes failed.
    #[error("cannot write the rebuilt asset {target}: {source}")]
    Write {
        /// The asset being rebuilt.
        target: AssetHash,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl DeltaRecord {
    fn first_target(&self) -> AssetHash {
        self.header.targets.first().map_or(AssetHash(0), |t| t.hash)
    }

    /// Checks that the frame declares exactly the targets' total size, before anything is
    /// decoded or allocated for it.
    pub fn check_frame(&self) -> Result<(), ApplyError> {
        let target = self.first_target();
        let expected = self.header.target_size();
        match zstd::zstd_safe::get_frame_content_size(&self.frame) {
            Ok(Some(size)) if size == expected => Ok(()),
            Ok(Some(size)) => Err(ApplyError::Size {
                target,
                expected,
                found: size,
            }),
            Ok(None) => Err(ApplyError::Decompress {
                target,
                reason: "the frame does not declare its content size".into(),
            }),
            Err(_) => Err(ApplyError::Decompress {
                target,
                reason: "not a zstd frame".into(),
            }),
        }
    }

    /// Rebuilds the record's targets. `old_index` is the index of the package the delta
    /// starts from, in which the record's bases are looked up; `bases` are their bytes, in
    /// the record's order (none for a whole record), each checked against its index
    /// entry's hash and length first. `out` receives `(i, bytes)` for target `i`: for a record decoded in
    /// one piece, each target once and only after every target hashed to its name; for a
    /// single whole target, in chunks as they are decoded, before the final hash check, so
    /// write it somewhere that becomes visible only after this returns `Ok`.
    pub fn apply(
        &self,
        old_index: &[IndexEntry],
        bases: &[&[u8]],
        out: &mut dyn FnMut(usize, &[u8]) -> io::Result<()>,
    ) -> Result<(), ApplyError> {
        self.check_frame()?;
        let target = self.first_target();
        let named = self
            .header
            .resolve_bases(old_index)
            .map_err(|source| ApplyError::Bases { target, source })?;
        if bases.len() != named.len() {
            let expected = named.first().copied();
            return Err(ApplyError::WrongBase {
                target,
                expected: expected.map_or(AssetHash(0), |b| b.hash),
                expected_size: expected.map_or(0, |b| b.size),
                found: format!(
                    "{} bases where the record names {}",
                    bases.len(),
                    named.len()
                ),
            });
        }
        for (bytes, want) in bases.iter().zip(&named) {
            if bytes.len() as u64 != want.size || AssetHash::of(bytes) != want.hash {
                return Err(ApplyError::WrongBase {
                    target,
                    expected: want.hash,
                    expected_size: want.size,
                    found: format!("{} bytes hashing to {}", bytes.len(), AssetHash::of(bytes)),
                });
            }
        }
        if self.header.streams() {
            return self.decode_whole(&mut |bytes| out(0, bytes));
        }
        let plain = self.decode_at_once(bases)?;
        let mut at = 0usize;
        let mut pieces = Vec::with_capacity(self.header.targets.len());
        for t in &self.header.targets {
            // The sizes sum to plain.len(), checked by decode_at_once.
            let piece = &plain[at..at + t.size as usize];
            at += t.size as usize;
            let computed = AssetHash::of(piece);
            if computed != t.hash {
                return Err(ApplyError::Hash {
                    target: t.hash,
                    computed,
                });
            }
            pieces.push(piece);
        }
        for (i, (piece, t)) in pieces.into_iter().zip(&self.header.targets).enumerate() {
            out(i, piece).map_err(|source| ApplyError::Write {
                target: t.hash,
                source,
            })?;
        }
        Ok(())
    }

    /// One-shot decode against the bases as one prefix into a buffer of exactly the
    /// targets' total size: zstd cannot write past it. The capacity comes from the record,
    /// bounded by [`super::MAX_PATCH_PAIR`] and checked against the frame's own content
    /// size; its pages are only touched as zstd really writes them.
    fn decode_at_once(&self, bases: &[&[u8]]) -> Result<Vec<u8>, ApplyError> {
        let target = self.first_target();
        let expected = self.header.target_size();
        let zstd_error = |code: usize| ApplyError::Decompress {
            target,
            reason: zstd::zstd_safe::get_error_name(code).to_owned(),
        };
        let size = usize::try_from(expected).map_err(|_| ApplyError::Size {
            target,
            expected,
            found: 0,
        })?;
        let prefix: Vec<u8>;
        let prefix = match bases {
            [] => None,
            [one] => Some(*one),
            many => {
                prefix = many.concat();
                Some(prefix.as_slice())
            }
        };
        let mut dctx = zstd::zstd_safe::DCtx::create();
        if let Some(prefix) = prefix {
            dctx.ref_prefix(prefix).map_err(zstd_error)?;
        }
        let mut plain = Vec::with_capacity(size);
        let n = dctx
            .decompress(&mut plain, &self.frame)
            .map_err(zstd_error)?;
        if n as u64 != expected {
            return Err(ApplyError::Size {
                target,
                expected,
                found: n as u64,
            });
        }
        Ok(plain)
    }

    /// Streams a whole frame of one target through zstd with the recorded window as the
    /// limit, never producing more than the target size plus one byte.
    fn decode_whole(&self, out: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> Result<(), ApplyError> {
        let target = self.first_target();
        let expected = self.header.target_size();
        let zstd_error = |e: io::Error| ApplyError::Decompress {
            target,
            reason: e.to_string(),
        };
        let mut decoder =
            zstd::stream::read::Decoder::with_buffer(self.frame.as_slice()).map_err(zstd_error)?;
        decoder
            .window_log_max(u32::from(self.header.window_log))
            .map_err(zstd_error)?;
        let mut limited = decoder.take(expected.saturating_add(1));
        let mut hasher = AssetHasher::new();
        let mut buf = vec![0u8; 128 * 1024];
        let mut produced = 0u64;
        loop {
            let n = match limited.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(zstd_error(e)),
            };
            produced += n as u64;
            if produced > expected {
                break;
            }
            hasher.update(&buf[..n]);
            out(&buf[..n]).map_err(|source| ApplyError::Write { target, source })?;
        }
        if produced != expected {
            return Err(ApplyError::Size {
                target,
                expected,
                found: produced,
            });
        }
        let computed = hasher.finish();
        if computed != target {
            return Err(ApplyError::Hash { target, computed });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::{RecordHeader, Target};

    fn whole(plain: &[u8], frame: Vec<u8>, size: u64) -> DeltaRecord {
        DeltaRecord {
            header: RecordHeader {
                window_log: 10,
                targets: vec![Target {
                    position: 0,
                    hash: AssetHash::of(plain),
                    size,
                }],
                bases: Vec::new(),
                frame_len: frame.len() as u64,
            },
            frame,
        }
    }

    #[test]
    fn a_lying_frame_is_refused_before_decoding() {
        let plain = b"hello hello hello".to_vec();
        let frame = zstd::bulk::compress(&plain, 3).unwrap();
        let record = whole(&plain, frame, 5);
        let mut sink = |_: usize, _: &[u8]| Ok(());
        assert!(matches!(
            record.apply(&[], &[], &mut sink),
            Err(ApplyError::Size {
                expected: 5,
                found: 17,
                ..
            })
        ));
        let garbage = DeltaRecord {
            frame: vec![1, 2, 3, 4, 5, 6],
            ..record
        };
        assert!(matches!(
            garbage.apply(&[], &[], &mut sink),
            Err(ApplyError::Decompress { .. })
        ));
    }
}
