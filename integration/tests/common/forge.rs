//! Forged stones: an honest stone from the real writer supplies meta, index and content,
//! and the part under test is replaced by hand-encoded bytes, stored uncompressed with an
//! honest checksum so that only the lie under test is left for the reader. The writer
//! cannot make these itself: its `RelPath` refuses `..` and the reserved `.stateID`.

use std::fs;
use std::path::PathBuf;

use mossfs_format::payload::{self, PayloadHeader};
use mossfs_format::{AssetHash, Compression, PayloadKind, header};

use super::{TestRoot, file, meta};

/// A stone split into its parts, trusting the sizes of a stone the real writer made.
pub struct RawStone {
    pub header: [u8; header::LEN],
    pub payloads: Vec<(PayloadHeader, Vec<u8>)>,
}

impl RawStone {
    pub fn parse(bytes: &[u8]) -> RawStone {
        let header: [u8; header::LEN] = bytes[..header::LEN].try_into().unwrap();
        let count = u16::from_be_bytes([header[4], header[5]]);
        let mut at = header::LEN;
        let mut payloads = Vec::new();
        for _ in 0..count {
            let raw: [u8; payload::LEN] = bytes[at..at + payload::LEN].try_into().unwrap();
            let head = PayloadHeader::decode(&raw);
            at += payload::LEN;
            let end = at + head.stored_size as usize;
            payloads.push((head, bytes[at..end].to_vec()));
            at = end;
        }
        assert_eq!(
            at,
            bytes.len(),
            "a stone the writer made has nothing after it"
        );
        RawStone { header, payloads }
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut out = self.header.to_vec();
        for (head, body) in &self.payloads {
            out.extend_from_slice(&head.encode());
            out.extend_from_slice(body);
        }
        out
    }

    pub fn payload(&mut self, kind: PayloadKind) -> &mut (PayloadHeader, Vec<u8>) {
        self.payloads
            .iter_mut()
            .find(|(head, _)| head.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} payload"))
    }

    /// Removes the payload of `kind`, and counts the payloads again in the header.
    pub fn remove(&mut self, kind: PayloadKind) {
        self.payloads.retain(|(head, _)| head.kind != kind);
        let count = u16::try_from(self.payloads.len()).expect("a few payloads");
        self.header[4..6].copy_from_slice(&count.to_be_bytes());
    }

    /// Replaces a payload's body with `plain`, stored uncompressed, sizes and checksum
    /// honest.
    pub fn replace(&mut self, kind: PayloadKind, records: u32, plain: Vec<u8>) {
        let (head, body) = self.payload(kind);
        head.compression = Compression::None;
        head.stored_size = plain.len() as u64;
        head.plain_size = plain.len() as u64;
        head.records = records;
        head.checksum = xxhash_rust::xxh3::xxh3_64(&plain);
        *body = plain;
    }
}

/// One layout record as upstream encodes it (DESIGN.md §3), with any path at all.
pub fn record(file_type: u8, mode: u32, source: &[u8], target: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0u32.to_be_bytes()); // uid
    out.extend_from_slice(&0u32.to_be_bytes()); // gid
    out.extend_from_slice(&mode.to_be_bytes()); // st_mode, type bits included
    out.extend_from_slice(&0u32.to_be_bytes()); // tag
    out.extend_from_slice(&(source.len() as u16).to_be_bytes()); // source length
    out.extend_from_slice(&(target.len() as u16).to_be_bytes()); // target length
    out.push(file_type); // 1 regular, 2 symlink, 3 directory
    out.extend_from_slice(&[0; 11]); // padding
    out.extend_from_slice(source); // hash or link text
    out.extend_from_slice(target); // path below /usr
    out
}

pub fn regular(hash: AssetHash, path: &str) -> Vec<u8> {
    record(1, 0o100644, &hash.to_be_bytes(), path.as_bytes())
}

pub fn symlink(target: &str, path: &str) -> Vec<u8> {
    record(2, 0o120777, target.as_bytes(), path.as_bytes())
}

/// The bytes every forged stone ships.
pub const PAYLOAD: &[u8] = b"the bytes of a forged package";

/// The bytes of package `name`'s one file: its own, so that the store does not hold them
/// yet and installing it has to read its content.
pub fn own_bytes(name: &str) -> Vec<u8> {
    format!("the bytes of package {name}").into_bytes()
}

/// An honest stone named `name` with one file holding `bytes`, split into parts.
pub fn honest_with(root: &TestRoot, name: &str, bytes: &[u8]) -> RawStone {
    let stone = root.stone(&meta(name, "1"), vec![file("share/honest", bytes.to_vec())]);
    RawStone::parse(&fs::read(stone).unwrap())
}

/// An honest stone named `name` whose one file holds [`PAYLOAD`].
pub fn honest(root: &TestRoot, name: &str) -> RawStone {
    honest_with(root, name, PAYLOAD)
}

/// `name`'s honest stone with its layout replaced by `records`.
pub fn with_layout(root: &TestRoot, name: &str, records: &[Vec<u8>]) -> PathBuf {
    let mut raw = honest(root, name);
    raw.replace(PayloadKind::Layout, records.len() as u32, records.concat());
    write_forged(root, name, &raw.bytes())
}

/// A package of symlinks and directories only: `name`'s honest meta, with `records` as
/// its layout and no index or content, as upstream writes a package without files.
pub fn without_files(root: &TestRoot, name: &str, records: &[Vec<u8>]) -> PathBuf {
    let mut raw = honest(root, name);
    raw.replace(PayloadKind::Layout, records.len() as u32, records.concat());
    raw.remove(PayloadKind::Index);
    raw.remove(PayloadKind::Content);
    write_forged(root, name, &raw.bytes())
}

pub fn write_forged(root: &TestRoot, name: &str, bytes: &[u8]) -> PathBuf {
    let at = root.scratch("forged").join(format!("{name}.stone"));
    fs::write(&at, bytes).unwrap();
    at
}
