//! Ed25519 key pairs for signing checksum files (`mossfs keygen`).
//!
//! `ed25519-dalek` is the Rust ecosystem's reference Ed25519 (dalek-cryptography, audited,
//! constant-time, used by rustls' own tooling and by TUF's Rust client), and a raw 32-byte
//! key is all mossfs needs: no key format with comments or passwords to parse. Both halves
//! are stored as one line of hex; the secret file is created mode 0600.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::RepoError;

/// Makes a new key pair from the operating system's random source and writes the secret
/// to `secret` (refusing to overwrite one) and the public key to `public`.
pub fn generate(secret: &Path, public: &Path) -> Result<VerifyingKey, RepoError> {
    let key = SigningKey::generate(&mut rand_core::OsRng);
    let write = |path: &Path, text: String, mode: u32| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|source| RepoError::Io {
                path: path.to_owned(),
                source,
            })
    };
    write(secret, format!("{}\n", crate::hex(&key.to_bytes())), 0o600)?;
    write(
        public,
        format!("{}\n", crate::hex(key.verifying_key().as_bytes())),
        0o644,
    )?;
    Ok(key.verifying_key())
}

/// Reads a secret key written by [`generate`].
pub fn read_secret(path: &Path) -> Result<SigningKey, RepoError> {
    let bytes = read_hex32(path)?;
    Ok(SigningKey::from_bytes(&bytes))
}

/// Parses a public key: a file written by [`generate`], or its 64 hex digits inline.
pub fn parse_public(text_or_path: &str) -> Result<VerifyingKey, RepoError> {
    let bytes = match crate::unhex(text_or_path).and_then(|b| <[u8; 32]>::try_from(b).ok()) {
        Some(bytes) => bytes,
        None => read_hex32(Path::new(text_or_path))?,
    };
    VerifyingKey::from_bytes(&bytes).map_err(|_| RepoError::BadKey {
        what: text_or_path.to_owned(),
        reason: "not a valid Ed25519 public key".into(),
    })
}

fn read_hex32(path: &Path) -> Result<[u8; 32], RepoError> {
    let text = std::fs::read_to_string(path).map_err(|source| RepoError::Io {
        path: path.to_owned(),
        source,
    })?;
    crate::unhex(&text)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| RepoError::BadKey {
            what: path.display().to_string(),
            reason: "expected one line of 64 hex digits, as 'mossfs keygen' writes".into(),
        })
}
