//! Applying a delta record: rebuilding one asset from its frame (and, for a patch, its
//! base), with the output bounded by the record's target size and hashed against it.

use std::io::{self, Read, Write};

use super::{DeltaRecord, Method};
use crate::hash::{AssetHash, AssetHasher};

/// Why a record could not rebuild its asset.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// A patch was applied without a base, or with a base of the wrong length or hash.
    #[error(
        "the patch for {target} needs base {expected} ({expected_size} bytes), but was given {found}"
    )]
    WrongBase {
        /// The asset being rebuilt.
        target: AssetHash,
        /// The base the record names.
        expected: AssetHash,
        /// Its length.
        expected_size: u64,
        /// What was given instead (`none`, or a length and hash).
        found: String,
    },
    /// zstd refused the frame.
    #[error("the frame for {target} does not decode: {reason}")]
    Decompress {
        /// The asset being rebuilt.
        target: AssetHash,
        /// What zstd said.
        reason: String,
    },
    /// The frame decodes to another length than the record says.
    #[error("the frame for {target} decodes to {found} bytes, the record says {expected}")]
    Size {
        /// The asset being rebuilt.
        target: AssetHash,
        /// The record's target size.
        expected: u64,
        /// Bytes produced (for an overrun: at least this many).
        found: u64,
    },
    /// The rebuilt bytes do not hash to the target.
    #[error("the rebuilt bytes hash to {computed}, but the record names them {target}")]
    Hash {
        /// The record's target.
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
    /// Checks that the frame declares exactly the record's target size, before anything is
    /// decoded or allocated for it.
    pub fn check_frame(&self) -> Result<(), ApplyError> {
        let target = self.header.target;
        match zstd::zstd_safe::get_frame_content_size(&self.frame) {
            Ok(Some(size)) if size == self.header.target_size => Ok(()),
            Ok(Some(size)) => Err(ApplyError::Size {
                target,
                expected: self.header.target_size,
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

    /// Rebuilds the asset into `out`, hashing it on the way. A patch needs its base's bytes,
    /// which are checked against the record's base hash and size first. `out` receives
    /// bytes before the final hash check: write it somewhere that becomes visible only
    /// after this returns `Ok`.
    pub fn apply(&self, base: Option<&[u8]>, out: &mut dyn Write) -> Result<(), ApplyError> {
        self.check_frame()?;
        match self.header.method {
            Method::Patch {
                base: want,
                base_size,
            } => {
                let base = match base {
                    Some(bytes)
                        if bytes.len() as u64 == base_size && AssetHash::of(bytes) == want =>
                    {
                        bytes
                    }
                    other => {
                        return Err(ApplyError::WrongBase {
                            target: self.header.target,
                            expected: want,
                            expected_size: base_size,
                            found: match other {
                                None => "none".into(),
                                Some(b) => {
                                    format!("{} bytes hashing to {}", b.len(), AssetHash::of(b))
                                }
                            },
                        });
                    }
                };
                let plain = self.decode_patch(base)?;
                self.finish(&plain, out)
            }
            Method::Whole => self.decode_whole(out),
        }
    }

    /// One-shot decode against the prefix into a buffer of exactly the target size: zstd
    /// cannot write past it. The capacity comes from the record, bounded by
    /// [`super::MAX_PATCH_PAIR`] and checked against the frame's own content size; its
    /// pages are only touched as zstd really writes them.
    fn decode_patch(&self, base: &[u8]) -> Result<Vec<u8>, ApplyError> {
        let target = self.header.target;
        let zstd_error = |code: usize| ApplyError::Decompress {
            target,
            reason: zstd::zstd_safe::get_error_name(code).to_owned(),
        };
        let size = usize::try_from(self.header.target_size).map_err(|_| ApplyError::Size {
            target,
            expected: self.header.target_size,
            found: 0,
        })?;
        let mut dctx = zstd::zstd_safe::DCtx::create();
        dctx.ref_prefix(base).map_err(zstd_error)?;
        let mut plain = Vec::with_capacity(size);
        let n = dctx
            .decompress(&mut plain, &self.frame)
            .map_err(zstd_error)?;
        if n as u64 != self.header.target_size {
            return Err(ApplyError::Size {
                target,
                expected: self.header.target_size,
                found: n as u64,
            });
        }
        Ok(plain)
    }

    fn finish(&self, plain: &[u8], out: &mut dyn Write) -> Result<(), ApplyError> {
        let target = self.header.target;
        let computed = AssetHash::of(plain);
        if computed != target {
            return Err(ApplyError::Hash { target, computed });
        }
        out.write_all(plain)
            .map_err(|source| ApplyError::Write { target, source })
    }

    /// Streams a whole frame through zstd with the recorded window as the limit, never
    /// producing more than the target size plus one byte.
    fn decode_whole(&self, out: &mut dyn Write) -> Result<(), ApplyError> {
        let target = self.header.target;
        let zstd_error = |e: io::Error| ApplyError::Decompress {
            target,
            reason: e.to_string(),
        };
        let mut decoder =
            zstd::stream::read::Decoder::with_buffer(self.frame.as_slice()).map_err(zstd_error)?;
        decoder
            .window_log_max(u32::from(self.header.window_log))
            .map_err(zstd_error)?;
        let mut limited = decoder.take(self.header.target_size.saturating_add(1));
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
            if produced > self.header.target_size {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|source| ApplyError::Write { target, source })?;
        }
        if produced != self.header.target_size {
            return Err(ApplyError::Size {
                target,
                expected: self.header.target_size,
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
    use crate::delta::RecordHeader;

    #[test]
    fn a_lying_frame_is_refused_before_decoding() {
        let plain = b"hello hello hello".to_vec();
        let frame = zstd::bulk::compress(&plain, 3).unwrap();
        let record = DeltaRecord {
            header: RecordHeader {
                method: Method::Whole,
                window_log: 10,
                target: AssetHash::of(&plain),
                target_size: 5,
                frame_len: frame.len() as u64,
            },
            frame,
        };
        assert!(matches!(
            record.apply(None, &mut Vec::new()),
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
            garbage.apply(None, &mut Vec::new()),
            Err(ApplyError::Decompress { .. })
        ));
    }
}
