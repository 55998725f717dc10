//! The checksum file: what a client fetches first (DESIGN.md §8, upstream issue #199).
//!
//! It is a stone-framed file so that every moss tool recognises it: the 32-byte archive
//! header (file type 3, repository), then one payload of kind [`CHECKSUM_KIND`] and, when
//! signed, one of kind [`SIGNATURE_KIND`]. Both kinds are unknown to upstream's reader,
//! which skips them by size. Payloads are stored uncompressed with their xxh3 checksum.
//!
//! ```text
//! checksum body   u8 algorithm (1 = sha256) | u8 length | length bytes of the digest
//!                 u64 index size | u64 version | u64 expiry (unix seconds)   (big-endian)
//! signature body  32 bytes Ed25519 public key | 64 bytes signature
//! ```
//!
//! The signature covers [`SIGNING_CONTEXT`] followed by the checksum body, so it binds the
//! index's digest, its size, the version and the expiry at once: one signature vouches for
//! the index and, through it, for every package hash in it.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use mossfs_format::{ArchiveHeader, Compression, FileType, PayloadHeader, PayloadKind};

/// The payload kind of the checksum body, outside upstream's range.
pub const CHECKSUM_KIND: u8 = 0x40;
/// The payload kind of the signature.
pub const SIGNATURE_KIND: u8 = 0x41;
/// Prefixed to the checksum body before signing, so a signature over it can never be
/// replayed as a signature over anything else.
pub const SIGNING_CONTEXT: &[u8] = b"mossfs checksum file v1\0";
/// The file name of the checksum file next to `name`.
pub fn file_name(name: &str) -> String {
    format!("{name}.checksum")
}

/// A digest algorithm the checksum names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// SHA-256, 32 bytes.
    Sha256,
}

impl Algorithm {
    fn to_byte(self) -> u8 {
        match self {
            Algorithm::Sha256 => 1,
        }
    }
    fn len(self) -> usize {
        match self {
            Algorithm::Sha256 => 32,
        }
    }
}

/// A typed checksum: the algorithm and the raw digest bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// Which algorithm.
    pub algorithm: Algorithm,
    /// The raw digest, `algorithm`'s length.
    pub bytes: Vec<u8>,
}

impl Digest {
    /// The SHA-256 of `data`.
    pub fn sha256(data: &[u8]) -> Digest {
        use sha2::Digest as _;
        Digest {
            algorithm: Algorithm::Sha256,
            bytes: sha2::Sha256::digest(data).to_vec(),
        }
    }
}

/// What the checksum file says about its index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    /// The index's digest.
    pub digest: Digest,
    /// The index's size in bytes.
    pub size: u64,
    /// Only goes up from one publication to the next.
    pub version: u64,
    /// Unix seconds after which the file must not be trusted.
    pub expires: u64,
}

/// A decoded checksum file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChecksumFile {
    /// The statement.
    pub checksum: Checksum,
    /// The exact body bytes that were signed (after [`SIGNING_CONTEXT`]).
    body: Vec<u8>,
    /// The signer's key and signature, when signed.
    pub signature: Option<(VerifyingKey, Signature)>,
}

/// Why a checksum file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChecksumError {
    /// Not a stone-framed file, or not a repository file.
    #[error("not a checksum file: {0}")]
    NotChecksumFile(String),
    /// Cut short or with bytes that do not add up.
    #[error("the checksum file is damaged: {0}")]
    Damaged(&'static str),
    /// An algorithm this mossfs does not know.
    #[error("the checksum file uses digest algorithm {0}, which this mossfs does not know")]
    UnknownAlgorithm(u8),
}

impl Checksum {
    fn encode_body(&self) -> Vec<u8> {
        let mut body = vec![
            self.digest.algorithm.to_byte(),
            self.digest.bytes.len() as u8,
        ];
        body.extend_from_slice(&self.digest.bytes);
        body.extend_from_slice(&self.size.to_be_bytes());
        body.extend_from_slice(&self.version.to_be_bytes());
        body.extend_from_slice(&self.expires.to_be_bytes());
        body
    }

    /// Encodes the checksum file, signed with `key` when one is given.
    pub fn encode(&self, key: Option<&SigningKey>) -> Vec<u8> {
        let body = self.encode_body();
        let mut payloads = vec![(CHECKSUM_KIND, body.clone())];
        if let Some(key) = key {
            let signature = key.sign(&signed_message(&body));
            let mut sig = key.verifying_key().to_bytes().to_vec();
            sig.extend_from_slice(&signature.to_bytes());
            payloads.push((SIGNATURE_KIND, sig));
        }
        let header = ArchiveHeader {
            payload_count: payloads.len() as u16,
            file_type: FileType::Repository,
        };
        let mut out = header.encode().to_vec();
        for (kind, body) in payloads {
            let header = PayloadHeader {
                stored_size: body.len() as u64,
                plain_size: body.len() as u64,
                checksum: xxhash_rust::xxh3::xxh3_64(&body),
                records: 1,
                version: 1,
                kind: PayloadKind::from_byte(kind),
                compression: Compression::None,
            };
            out.extend_from_slice(&header.encode());
            out.extend_from_slice(&body);
        }
        out
    }
}

fn signed_message(body: &[u8]) -> Vec<u8> {
    let mut message = SIGNING_CONTEXT.to_vec();
    message.extend_from_slice(body);
    message
}

/// A cursor that refuses to read past the end.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ChecksumError> {
        if n > self.0.len() {
            return Err(ChecksumError::Damaged("it ends early"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u64(&mut self) -> Result<u64, ChecksumError> {
        let bytes: [u8; 8] = self
            .take(8)?
            .try_into()
            .map_err(|_| ChecksumError::Damaged("a short integer"))?;
        Ok(u64::from_be_bytes(bytes))
    }
}

impl ChecksumFile {
    /// Decodes a checksum file; checks its framing, not its signature.
    pub fn decode(bytes: &[u8]) -> Result<ChecksumFile, ChecksumError> {
        let mut cursor = Cursor(bytes);
        let head: [u8; 32] = cursor
            .take(32)
            .map_err(|_| ChecksumError::NotChecksumFile("shorter than a header".into()))?
            .try_into()
            .map_err(|_| ChecksumError::Damaged("a short header"))?;
        let header = ArchiveHeader::decode(&head)
            .map_err(|e| ChecksumError::NotChecksumFile(e.to_string()))?;
        if header.file_type != FileType::Repository {
            return Err(ChecksumError::NotChecksumFile(format!(
                "file type {}",
                header.file_type.name()
            )));
        }
        let mut body = None;
        let mut signature = None;
        for _ in 0..header.payload_count {
            let raw: [u8; 32] = cursor
                .take(32)?
                .try_into()
                .map_err(|_| ChecksumError::Damaged("a short payload header"))?;
            let payload = PayloadHeader::decode(&raw);
            let len = usize::try_from(payload.stored_size)
                .map_err(|_| ChecksumError::Damaged("an absurd payload size"))?;
            let data = cursor.take(len)?;
            if xxhash_rust::xxh3::xxh3_64(data) != payload.checksum {
                return Err(ChecksumError::Damaged("a payload fails its checksum"));
            }
            if payload.compression != Compression::None {
                return Err(ChecksumError::Damaged("a compressed payload"));
            }
            match payload.kind.to_byte() {
                CHECKSUM_KIND if body.is_none() => body = Some(data.to_vec()),
                SIGNATURE_KIND if signature.is_none() => {
                    let (key, sig) = data.split_at_checked(32).ok_or(ChecksumError::Damaged(
                        "a signature payload of the wrong size",
                    ))?;
                    let key: [u8; 32] = key
                        .try_into()
                        .map_err(|_| ChecksumError::Damaged("a short public key"))?;
                    let sig: [u8; 64] = sig
                        .try_into()
                        .map_err(|_| ChecksumError::Damaged("a signature of the wrong size"))?;
                    let key = VerifyingKey::from_bytes(&key)
                        .map_err(|_| ChecksumError::Damaged("a malformed public key"))?;
                    signature = Some((key, Signature::from_bytes(&sig)));
                }
                CHECKSUM_KIND | SIGNATURE_KIND => {
                    return Err(ChecksumError::Damaged("a payload given twice"));
                }
                _ => {}
            }
        }
        if !cursor.0.is_empty() {
            return Err(ChecksumError::Damaged("bytes after the last payload"));
        }
        let body = body.ok_or(ChecksumError::Damaged("no checksum payload"))?;
        let mut c = Cursor(&body);
        let algorithm = match c.take(1)?[0] {
            1 => Algorithm::Sha256,
            other => return Err(ChecksumError::UnknownAlgorithm(other)),
        };
        let len = usize::from(c.take(1)?[0]);
        if len != algorithm.len() {
            return Err(ChecksumError::Damaged("a digest of the wrong length"));
        }
        let digest = Digest {
            algorithm,
            bytes: c.take(len)?.to_vec(),
        };
        let checksum = Checksum {
            digest,
            size: c.u64()?,
            version: c.u64()?,
            expires: c.u64()?,
        };
        if !c.0.is_empty() {
            return Err(ChecksumError::Damaged("bytes after the expiry"));
        }
        Ok(ChecksumFile {
            checksum,
            body,
            signature,
        })
    }

    /// Whether the file is signed by exactly `key`, with a valid signature.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), SignatureProblem> {
        let Some((signer, signature)) = &self.signature else {
            return Err(SignatureProblem::Unsigned);
        };
        if signer != key {
            return Err(SignatureProblem::OtherKey(crate::hex(signer.as_bytes())));
        }
        key.verify(&signed_message(&self.body), signature)
            .map_err(|_| SignatureProblem::BadSignature)
    }
}

/// Why a signature is not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureProblem {
    /// No signature at all.
    Unsigned,
    /// Signed by another key (hex).
    OtherKey(String),
    /// The signature does not match the body.
    BadSignature,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checksum {
        Checksum {
            digest: Digest::sha256(b"index"),
            size: 5,
            version: 7,
            expires: 1_900_000_000,
        }
    }

    #[test]
    fn round_trip_unsigned_and_signed() {
        let plain = ChecksumFile::decode(&sample().encode(None)).unwrap();
        assert_eq!(plain.checksum, sample());
        assert!(plain.signature.is_none());
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let signed = ChecksumFile::decode(&sample().encode(Some(&key))).unwrap();
        assert_eq!(signed.checksum, sample());
        assert_eq!(signed.verify(&key.verifying_key()), Ok(()));
        let other = SigningKey::from_bytes(&[8u8; 32]).verifying_key();
        assert!(matches!(
            signed.verify(&other),
            Err(SignatureProblem::OtherKey(_))
        ));
        assert_eq!(plain.verify(&other), Err(SignatureProblem::Unsigned));
    }

    #[test]
    fn a_changed_version_breaks_the_signature() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let mut bytes = sample().encode(Some(&key));
        // Header 32 + payload header 32 + algorithm, length, 32 digest bytes, 8 size bytes:
        // the version's last byte sits at 32 + 32 + 2 + 32 + 8 + 7.
        let at = 32 + 32 + 2 + 32 + 8 + 7;
        bytes[at] ^= 1;
        // Re-seal the payload checksum so only the signature can catch it.
        let body = bytes[64..64 + 58].to_vec();
        bytes[48..56].copy_from_slice(&xxhash_rust::xxh3::xxh3_64(&body).to_be_bytes());
        let file = ChecksumFile::decode(&bytes).unwrap();
        assert_eq!(file.checksum.version, 6);
        assert_eq!(
            file.verify(&key.verifying_key()),
            Err(SignatureProblem::BadSignature)
        );
    }

    #[test]
    fn truncated_and_foreign_files_are_refused() {
        let bytes = sample().encode(None);
        for cut in [0, 10, 40, bytes.len() - 1] {
            assert!(ChecksumFile::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert_eq!(
            ChecksumFile::decode(&extra),
            Err(ChecksumError::Damaged("bytes after the last payload"))
        );
    }
}
