//! The forge: honest stones made by the real writer, split into parts a test can lie
//! about, and put back together.

use std::collections::HashMap;
use std::io::Cursor;

use mossfs_format::payload::{self, PayloadHeader};
use mossfs_format::{
    AssetHash, Compression, DecodeError, EntryKind, FileType, IndexEntry, LayoutEntry, Meta,
    MetaRecord, PayloadKind, RelPath, Relation, Stone, Writer, WriterOptions, header, layout_index,
    read,
};

/// The package name every test stone carries; errors must name it.
pub(crate) const NAME: &str = "nano";

// ---------------------------------------------------------------------------------------
// Raw stones: a valid stone split into parts that a test can lie about.
// ---------------------------------------------------------------------------------------

/// One payload: the header as declared (possibly a lie) and the body as stored.
#[derive(Clone, Debug)]
pub(crate) struct RawPayload {
    pub(crate) header: PayloadHeader,
    pub(crate) body: Vec<u8>,
}

impl RawPayload {
    /// An honest zstd payload around `plain`.
    pub(crate) fn zstd(kind: PayloadKind, records: u32, plain: &[u8]) -> Self {
        let mut payload = RawPayload {
            header: PayloadHeader {
                stored_size: 0,
                plain_size: 0,
                checksum: 0,
                records,
                version: 1,
                kind,
                compression: Compression::Zstd,
            },
            body: Vec::new(),
        };
        payload.set_plain(plain);
        payload
    }

    /// An honest uncompressed payload around `plain`.
    pub(crate) fn stored(kind: PayloadKind, records: u32, plain: &[u8]) -> Self {
        let mut payload = RawPayload::zstd(kind, records, plain);
        payload.header.compression = Compression::None;
        payload.set_plain(plain);
        payload
    }

    /// The decompressed body of an honest payload.
    pub(crate) fn plain(&self) -> Vec<u8> {
        match self.header.compression {
            Compression::Zstd => zstd::stream::decode_all(self.body.as_slice()).expect("zstd"),
            _ => self.body.clone(),
        }
    }

    /// Replaces the plain bytes, and makes sizes and checksum honest again (not the count).
    pub(crate) fn set_plain(&mut self, plain: &[u8]) {
        self.body = match self.header.compression {
            Compression::Zstd => zstd::bulk::compress(plain, 3).expect("zstd"),
            _ => plain.to_vec(),
        };
        self.header.stored_size = self.body.len() as u64;
        self.header.plain_size = plain.len() as u64;
        self.reseal();
    }

    /// Recomputes the checksum, so that only the lie under test is left for the reader.
    pub(crate) fn reseal(&mut self) {
        self.header.checksum = xxhash_rust::xxh3::xxh3_64(&self.body);
    }
}

/// A whole stone as parts. `header` is kept as bytes so tests can damage it freely.
#[derive(Clone, Debug)]
pub(crate) struct RawStone {
    pub(crate) header: [u8; header::LEN],
    pub(crate) payloads: Vec<RawPayload>,
    pub(crate) trailing: Vec<u8>,
}

impl RawStone {
    /// Splits a stone this test wrote, trusting its sizes.
    pub(crate) fn parse(bytes: &[u8]) -> Self {
        let header: [u8; header::LEN] = bytes[..header::LEN].try_into().expect("32 bytes");
        let count = u16::from_be_bytes([header[4], header[5]]);
        let mut at = header::LEN;
        let mut payloads = Vec::new();
        for _ in 0..count {
            let bytes_of_header: [u8; payload::LEN] =
                bytes[at..at + payload::LEN].try_into().expect("32 bytes");
            let header = PayloadHeader::decode(&bytes_of_header);
            at += payload::LEN;
            let end = at + header.stored_size as usize;
            payloads.push(RawPayload {
                header,
                body: bytes[at..end].to_vec(),
            });
            at = end;
        }
        RawStone {
            header,
            payloads,
            trailing: bytes[at..].to_vec(),
        }
    }

    pub(crate) fn bytes(&self) -> Vec<u8> {
        let mut out = self.header.to_vec();
        for payload in &self.payloads {
            out.extend_from_slice(&payload.header.encode());
            out.extend_from_slice(&payload.body);
        }
        out.extend_from_slice(&self.trailing);
        out
    }

    /// Makes the archive header's payload count match the payloads again.
    pub(crate) fn recount(&mut self) {
        let count = u16::try_from(self.payloads.len()).expect("few payloads");
        self.header[4..6].copy_from_slice(&count.to_be_bytes());
    }

    /// File offset of payload `i`'s header.
    pub(crate) fn offset(&self, i: usize) -> u64 {
        let before: usize = self.payloads[..i]
            .iter()
            .map(|p| payload::LEN + p.body.len())
            .sum();
        (header::LEN + before) as u64
    }

    pub(crate) fn position(&self, kind: PayloadKind) -> usize {
        self.payloads
            .iter()
            .position(|p| p.header.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} payload"))
    }

    pub(crate) fn payload(&mut self, kind: PayloadKind) -> &mut RawPayload {
        let i = self.position(kind);
        &mut self.payloads[i]
    }

    /// File offset of the first body byte of the payload of `kind`.
    pub(crate) fn body_offset(&self, kind: PayloadKind) -> u64 {
        self.offset(self.position(kind)) + payload::LEN as u64
    }
}

// ---------------------------------------------------------------------------------------
// The honest stone every test starts from.
// ---------------------------------------------------------------------------------------

/// Bytes of `len` that zstd cannot shrink, so the content spans several zstd reads.
pub(crate) fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

/// A stone as written, with what went into it.
pub(crate) struct Written {
    pub(crate) bytes: Vec<u8>,
    pub(crate) layout: Vec<LayoutEntry>,
    pub(crate) index: Vec<IndexEntry>,
    pub(crate) assets: HashMap<AssetHash, Vec<u8>>,
}

pub(crate) fn entry(kind: EntryKind, mode: u32, path: &str) -> LayoutEntry {
    LayoutEntry {
        uid: 0,
        gid: 0,
        mode: kind.mode_bits() | mode,
        tag: 0,
        kind,
        path: RelPath::new(path).expect("valid test path"),
    }
}

pub(crate) fn nano_meta() -> Vec<MetaRecord> {
    Meta {
        name: NAME.into(),
        version: "8.0".into(),
        release: 1,
        build_release: 1,
        architecture: "x86_64".into(),
        summary: "a small editor".into(),
        licenses: vec!["GPL-3.0-or-later".into()],
        depends: vec![Relation::parse("soname(libc.so.6(x86_64))").expect("relation")],
        ..Meta::default()
    }
    .to_records()
}

/// Writes a stone with the given files: regular files name their bytes, and the index lists
/// each distinct asset once, in first-seen order.
pub(crate) fn write_stone(meta: &[MetaRecord], files: &[(&str, Option<&[u8]>)]) -> Written {
    let mut assets = HashMap::new();
    let mut order = Vec::new();
    let mut layout = Vec::new();
    for (path, bytes) in files {
        match bytes {
            Some(bytes) => {
                let hash = AssetHash::of(bytes);
                if assets.insert(hash, bytes.to_vec()).is_none() {
                    order.push((hash, bytes.len() as u64));
                }
                layout.push(entry(EntryKind::Regular(hash), 0o644, path));
            }
            None => layout.push(entry(EntryKind::Directory, 0o755, path)),
        }
    }
    layout.push(entry(
        EntryKind::Symlink(b"nano".to_vec()),
        0o777,
        "bin/rnano",
    ));
    let index = layout_index(order);
    let options = WriterOptions {
        level: 3,
        threads: 0,
    };
    let mut writer =
        Writer::new(Cursor::new(Vec::new()), FileType::Binary, options).expect("writer");
    writer.add_meta(meta).expect("meta");
    writer.add_layout(&layout).expect("layout");
    writer.add_index(&index).expect("index");
    writer.add_content(&index, &assets).expect("content");
    let bytes = writer.finish().expect("finish").into_inner();
    Written {
        bytes,
        layout,
        index,
        assets,
    }
}

/// Meta, layout, index and content: a README of noise, a compressible binary, a copy of
/// the README, an empty file, a directory and a symlink.
pub(crate) fn nano() -> Written {
    let readme = noise(6000, 7);
    let binary = b"nano binary ".repeat(200);
    write_stone(
        &nano_meta(),
        &[
            ("share/doc/nano/README", Some(&readme)),
            ("bin/nano", Some(&binary)),
            ("share/nano", None),
            ("share/nano/README.copy", Some(&readme)),
            ("share/nano/empty", Some(b"")),
        ],
    )
}

pub(crate) fn raw() -> RawStone {
    RawStone::parse(&nano().bytes)
}

/// The reader's verdict on `bytes`, which must be a refusal.
pub(crate) fn reject(bytes: &[u8]) -> DecodeError {
    read::verify(bytes).expect_err("the reader must refuse this stone")
}

pub(crate) fn accept(bytes: &[u8]) -> Stone {
    read::verify(bytes).unwrap_or_else(|e| panic!("the reader must accept this stone: {e}"))
}

#[test]
fn the_honest_stone_reads_back() {
    let nano = nano();
    let stone = accept(&nano.bytes);
    assert_eq!(stone.typed_meta().expect("meta").name, NAME);
    assert_eq!(stone.layout, nano.layout);
    assert_eq!(stone.index, nano.index);
    assert_eq!(nano.index.len(), 3, "README, binary and the empty file");
    assert_eq!(nano.assets.len(), 3);
}
