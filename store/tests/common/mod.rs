//! Helpers shared by the store's integration tests: the upstream sample stones, stones
//! built with the real writer, and stones whose content is stored uncompressed so that a
//! test can damage exactly one byte of one asset.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use mossfs_format::{
    AssetHash, Compression, EntryKind, FileType, IndexEntry, LayoutEntry, MetaRecord, MetaTag,
    PayloadHeader, PayloadKind, Reader, RelPath, Writer, WriterOptions, layout_index,
};
use mossfs_store::{CachedStone, Store};

pub const BASH_COMPLETION: &str = "bash-completion-2.11-1-1-x86_64.stone";
pub const ITALIAN_PIZZA: &str = "italian-pizza-1-1-1-x86_64.stone";
pub const PINEAPPLE: &str = "pineapple-1-1-1-x86_64.stone";

pub fn upstream(name: &str) -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/testdata/stones"
    ))
    .join(name)
}

/// A fresh `.moss` folder and a store opened on it.
pub fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join(".moss")).unwrap();
    (dir, store)
}

/// One regular file of a test stone.
#[derive(Clone)]
pub struct TestFile {
    pub path: &'static str,
    pub bytes: Vec<u8>,
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
}

pub fn file(path: &'static str, bytes: &[u8], perm: u32) -> TestFile {
    TestFile {
        path,
        bytes: bytes.to_vec(),
        perm,
        uid: 0,
        gid: 0,
    }
}

impl TestFile {
    pub fn hash(&self) -> AssetHash {
        AssetHash::of(&self.bytes)
    }

    pub fn owned_by(mut self, uid: u32, gid: u32) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }
}

fn layout(files: &[TestFile]) -> Vec<LayoutEntry> {
    files
        .iter()
        .map(|f| LayoutEntry {
            uid: f.uid,
            gid: f.gid,
            mode: 0o100000 | f.perm,
            tag: 0,
            kind: EntryKind::Regular(f.hash()),
            path: RelPath::new(f.path).unwrap(),
        })
        .collect()
}

/// The unique assets of `files`, first occurrence first.
fn unique(files: &[TestFile]) -> Vec<(AssetHash, Vec<u8>)> {
    let mut seen = Vec::<(AssetHash, Vec<u8>)>::new();
    for f in files {
        if !seen.iter().any(|(h, _)| *h == f.hash()) {
            seen.push((f.hash(), f.bytes.clone()));
        }
    }
    seen
}

fn options() -> WriterOptions {
    WriterOptions {
        level: 1,
        threads: 0,
    }
}

fn metadata_only(name: &str, files: &[TestFile], index: &[IndexEntry]) -> Writer<Cursor<Vec<u8>>> {
    let mut writer = Writer::new(Cursor::new(Vec::new()), FileType::Binary, options()).unwrap();
    writer
        .add_meta(&[MetaRecord::string(MetaTag::Name, name)])
        .unwrap();
    writer.add_layout(&layout(files)).unwrap();
    writer.add_index(index).unwrap();
    writer
}

/// A well-formed stone, zstd content and all, built by the real writer.
pub fn build_stone(name: &str, files: &[TestFile]) -> Vec<u8> {
    let assets = unique(files);
    let index = layout_index(assets.iter().map(|(h, b)| (*h, b.len() as u64)));
    let source: HashMap<AssetHash, Vec<u8>> = assets.into_iter().collect();
    let mut writer = metadata_only(name, files, &index);
    writer.add_content(&index, &source).unwrap();
    writer.finish().unwrap().into_inner()
}

/// A stone whose content payload is stored uncompressed, with `filler` bytes (not part of
/// any asset) after the first asset. Returns the stone and the offset of the content body,
/// where the plain bytes start; the checksum is correct.
pub fn build_plain_stone(name: &str, files: &[TestFile], filler: usize) -> (Vec<u8>, usize) {
    let assets = unique(files);
    let mut plain = Vec::new();
    let mut index = Vec::new();
    for (i, (hash, bytes)) in assets.iter().enumerate() {
        let start = plain.len() as u64;
        plain.extend_from_slice(bytes);
        index.push(IndexEntry {
            start,
            end: plain.len() as u64,
            digest: *hash,
        });
        if i == 0 {
            plain.extend(std::iter::repeat_n(0xaa, filler));
        }
    }
    let mut bytes = metadata_only(name, files, &index)
        .finish()
        .unwrap()
        .into_inner();
    let header = PayloadHeader {
        stored_size: plain.len() as u64,
        plain_size: plain.len() as u64,
        checksum: xxhash_rust::xxh3::xxh3_64(&plain),
        records: 0,
        version: 1,
        kind: PayloadKind::Content,
        compression: Compression::None,
    };
    bytes.extend_from_slice(&header.encode());
    let content_at = bytes.len();
    bytes.extend_from_slice(&plain);
    // The archive header counts payloads at bytes 4..6; the writer saw three.
    let count = u16::from_be_bytes([bytes[4], bytes[5]]) + 1;
    bytes[4..6].copy_from_slice(&count.to_be_bytes());
    (bytes, content_at)
}

/// Rewrites the checksum of the content payload (the last one) after its body was edited.
pub fn fix_content_checksum(stone: &mut [u8], content_at: usize) {
    let checksum = xxhash_rust::xxh3::xxh3_64(&stone[content_at..]);
    let header_at = content_at - 32;
    stone[header_at + 16..header_at + 24].copy_from_slice(&checksum.to_be_bytes());
}

/// Writes `bytes` to a file in `dir` and caches it.
pub fn cache_bytes(store: &Store, dir: &Path, name: &str, bytes: &[u8]) -> CachedStone {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    store.cache_stone(&path).unwrap()
}

/// The unique asset hashes a stone's index lists.
pub fn index_of(stone: &Path) -> Vec<AssetHash> {
    let mut reader = Reader::new(std::fs::File::open(stone).unwrap()).unwrap();
    let mut hashes: Vec<_> = reader
        .read_metadata()
        .unwrap()
        .index
        .iter()
        .map(|e| e.digest)
        .collect();
    hashes.sort();
    hashes.dedup();
    hashes
}

/// The layout of a stone, in file order.
pub fn layout_of(stone: &Path) -> Vec<LayoutEntry> {
    let mut reader = Reader::new(std::fs::File::open(stone).unwrap()).unwrap();
    reader.read_metadata().unwrap().layout
}

/// Names left in the store's temp folders.
pub fn temp_files(store: &Store) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in [store.assets_dir(), store.cache_dir()] {
        for entry in std::fs::read_dir(dir.join(".tmp")).unwrap() {
            out.push(entry.unwrap().path());
        }
    }
    out
}
