//! Deterministic mutation testing of the reader: thousands of damaged copies of upstream's
//! sample stones go through [`read::verify`], which must return, `Ok` or `Err`, and never
//! panic. It is the stable, always-run cousin of the `fuzz/` targets.
//!
//! Damage is applied at four depths, because a checksum stops most byte flips at
//! `BadChecksum` before any record decoder sees them:
//! - file bytes: flips, fills, cuts, duplicated and deleted ranges;
//! - payload header fields: sizes, counts, kinds and compression set to telling values;
//! - plain bytes: a payload is decompressed, damaged, recompressed and resealed, so the
//!   damage reaches the meta, layout and index decoders and the asset digests;
//! - structure: payloads dropped, repeated or swapped.
//!
//! Every mutation is drawn from its own seed, so a failure names the seed that replays it.

use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};

use mossfs_format::payload::{self, PayloadHeader};
use mossfs_format::{Compression, DecodeError, PayloadKind, header, read};

const STONES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/testdata/stones");

fn sample(name: &str) -> Vec<u8> {
    let path = format!("{STONES}/{name}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// xorshift64*: small, fast and the same on every machine.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        // Zero is xorshift's one fixed point; mix the seed so neighbouring seeds diverge.
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform enough in `0..n`; `n` must be positive.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

// ---------------------------------------------------------------------------------------
// A sample stone in parts.
// ---------------------------------------------------------------------------------------

#[derive(Clone)]
struct RawPayload {
    header: PayloadHeader,
    body: Vec<u8>,
}

impl RawPayload {
    fn plain(&self) -> Vec<u8> {
        match self.header.compression {
            Compression::Zstd => zstd::stream::decode_all(self.body.as_slice()).expect("zstd"),
            _ => self.body.clone(),
        }
    }

    /// New plain bytes with honest sizes and checksum, so the damage gets past them.
    fn set_plain(&mut self, plain: &[u8]) {
        self.body = match self.header.compression {
            Compression::Zstd => zstd::bulk::compress(plain, 1).expect("zstd"),
            _ => plain.to_vec(),
        };
        self.header.stored_size = self.body.len() as u64;
        self.header.plain_size = plain.len() as u64;
        self.header.checksum = xxhash_rust::xxh3::xxh3_64(&self.body);
    }
}

#[derive(Clone)]
struct RawStone {
    header: [u8; header::LEN],
    payloads: Vec<RawPayload>,
}

impl RawStone {
    /// Splits a valid stone, trusting its sizes.
    fn parse(bytes: &[u8]) -> Self {
        let header: [u8; header::LEN] = bytes[..header::LEN].try_into().expect("32 bytes");
        let mut at = header::LEN;
        let mut payloads = Vec::new();
        while at < bytes.len() {
            let raw: [u8; payload::LEN] = bytes[at..at + payload::LEN].try_into().expect("32");
            let header = PayloadHeader::decode(&raw);
            at += payload::LEN;
            let end = at + header.stored_size as usize;
            payloads.push(RawPayload {
                header,
                body: bytes[at..end].to_vec(),
            });
            at = end;
        }
        RawStone { header, payloads }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = self.header.to_vec();
        for payload in &self.payloads {
            out.extend_from_slice(&payload.header.encode());
            out.extend_from_slice(&payload.body);
        }
        out
    }

    fn recount(&mut self) {
        let count = u16::try_from(self.payloads.len()).expect("few payloads");
        self.header[4..6].copy_from_slice(&count.to_be_bytes());
    }

    /// The same stone without its content: cheap to verify, and the layout and index
    /// decoders still see every record.
    fn metadata_only(&self) -> Self {
        let mut stone = self.clone();
        stone
            .payloads
            .retain(|p| p.header.kind != PayloadKind::Content);
        stone.recount();
        stone
    }
}

// ---------------------------------------------------------------------------------------
// Mutations. Each returns a description that, with its seed, replays it.
// ---------------------------------------------------------------------------------------

const INTERESTING_U64: [u64; 10] = [
    0,
    1,
    31,
    32,
    0xff,
    0xffff,
    0x7fff_ffff,
    u32::MAX as u64,
    1 << 30,
    u64::MAX,
];

/// One byte-level mutation of `bytes`.
fn mutate_bytes(rng: &mut Rng, bytes: &mut Vec<u8>) -> String {
    if bytes.is_empty() {
        let n = 1 + rng.below(16);
        bytes.extend((0..n).map(|_| rng.byte()));
        return format!("filled the empty buffer with {n} random bytes");
    }
    let len = bytes.len();
    let at = rng.below(len);
    match rng.below(9) {
        0 => {
            let bit = rng.below(8);
            bytes[at] ^= 1 << bit;
            format!("flipped bit {bit} of byte {at}")
        }
        1 => {
            bytes[at] = 0;
            format!("set byte {at} to 0x00")
        }
        2 => {
            bytes[at] = 0xff;
            format!("set byte {at} to 0xff")
        }
        3 => {
            let b = rng.byte();
            bytes[at] = b;
            format!("set byte {at} to {b:#04x}")
        }
        4 => {
            bytes.truncate(at);
            format!("truncated to {at} of {len} bytes")
        }
        5 => {
            let n = 1 + rng.below((len - at).min(256));
            let copy = bytes[at..at + n].to_vec();
            let to = rng.below(len + 1);
            bytes.splice(to..to, copy);
            format!("duplicated {n} bytes from {at} to {to}")
        }
        6 => {
            let n = 1 + rng.below((len - at).min(256));
            bytes.drain(at..at + n);
            format!("deleted {n} bytes at {at}")
        }
        7 => {
            let n = 1 + rng.below(16);
            let junk: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
            bytes.splice(at..at, junk);
            format!("inserted {n} random bytes at {at}")
        }
        _ => {
            let value = rng.pick(&INTERESTING_U64);
            let width = rng.pick(&[2usize, 4, 8]);
            let be = value.to_be_bytes();
            let n = width.min(len - at);
            bytes[at..at + n].copy_from_slice(&be[8 - width..8 - width + n]);
            format!("wrote {value:#x} as {width} big-endian bytes at {at}")
        }
    }
}

/// One to three stacked byte mutations.
fn mutate_some(rng: &mut Rng, bytes: &mut Vec<u8>) -> String {
    let n = 1 + rng.below(3);
    (0..n)
        .map(|_| mutate_bytes(rng, bytes))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Sets one payload header field to a value chosen to lie.
fn mutate_header(rng: &mut Rng, stone: &mut RawStone) -> String {
    let i = rng.below(stone.payloads.len());
    let header = &mut stone.payloads[i].header;
    let real_stored = header.stored_size;
    let real_plain = header.plain_size;
    let sizes = [
        0,
        1,
        real_stored.wrapping_sub(1),
        real_stored + 1,
        real_plain.wrapping_sub(1),
        real_plain + 1,
        real_plain * 2,
        u32::MAX as u64,
        1 << 30,
        (1 << 30) + 1,
        u64::MAX,
    ];
    let what = match rng.below(7) {
        0 => {
            header.stored_size = rng.pick(&sizes);
            format!("stored size {}", header.stored_size)
        }
        1 => {
            header.plain_size = rng.pick(&sizes);
            format!("plain size {}", header.plain_size)
        }
        2 => {
            let r = header.records;
            header.records = rng.pick(&[0, 1, r.wrapping_sub(1), r + 1, u32::MAX]);
            format!("records {}", header.records)
        }
        3 => {
            header.version = rng.pick(&[0, 2, u16::MAX]);
            format!("version {}", header.version)
        }
        4 => {
            header.kind = PayloadKind::from_byte(rng.byte() % 8);
            format!("kind {}", header.kind)
        }
        5 => {
            header.compression = Compression::from_byte(rng.byte() % 4);
            format!("compression {}", header.compression)
        }
        _ => {
            header.checksum = rng.next();
            format!("checksum {:#x}", header.checksum)
        }
    };
    format!("payload {i} header: {what}")
}

/// Damages a payload's plain bytes and reseals it, so the damage reaches the decoders.
fn mutate_plain(rng: &mut Rng, stone: &mut RawStone, kinds: &[PayloadKind]) -> String {
    let candidates: Vec<usize> = (0..stone.payloads.len())
        .filter(|&i| kinds.contains(&stone.payloads[i].header.kind))
        .collect();
    let i = rng.pick(&candidates);
    let payload = &mut stone.payloads[i];
    let mut plain = payload.plain();
    let what = mutate_some(rng, &mut plain);
    payload.set_plain(&plain);
    let mut note = String::new();
    if rng.below(5) == 0 {
        payload.header.records = rng.next() as u32 % 1024;
        note = format!(", records {}", payload.header.records);
    }
    format!("{} plain bytes: {what}{note}", payload.header.kind)
}

/// Drops, repeats or swaps payloads, sometimes fixing the declared count.
fn mutate_structure(rng: &mut Rng, stone: &mut RawStone) -> String {
    let n = stone.payloads.len();
    let i = rng.below(n);
    let j = rng.below(n);
    let what = match rng.below(3) {
        0 => {
            stone.payloads.remove(i);
            format!("dropped payload {i}")
        }
        1 => {
            let copy = stone.payloads[i].clone();
            stone.payloads.insert(j, copy);
            format!("repeated payload {i} at {j}")
        }
        _ => {
            stone.payloads.swap(i, j);
            format!("swapped payloads {i} and {j}")
        }
    };
    if rng.below(2) == 0 {
        stone.recount();
        format!("{what}, recounted")
    } else {
        what
    }
}

// ---------------------------------------------------------------------------------------
// The driver.
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Depth {
    /// Raw file bytes.
    File,
    /// Payload header fields.
    Header,
    /// Plain bytes of the metadata payloads.
    Metadata,
    /// Plain bytes of the content.
    Content,
    /// Whole payloads.
    Structure,
}

fn variant(err: &DecodeError) -> &'static str {
    match err {
        DecodeError::BadMagic { .. } => "BadMagic",
        DecodeError::UnsupportedVersion(_) => "UnsupportedVersion",
        DecodeError::BadIntegrity => "BadIntegrity",
        DecodeError::Truncated { .. } => "Truncated",
        DecodeError::MissingPayloads { .. } => "MissingPayloads",
        DecodeError::TrailingData { .. } => "TrailingData",
        DecodeError::UnsupportedPayloadVersion { .. } => "UnsupportedPayloadVersion",
        DecodeError::PayloadTooLarge { .. } => "PayloadTooLarge",
        DecodeError::BadChecksum { .. } => "BadChecksum",
        DecodeError::Decompress { .. } => "Decompress",
        DecodeError::PlainSizeMismatch { .. } => "PlainSizeMismatch",
        DecodeError::SizeMismatch { .. } => "SizeMismatch",
        DecodeError::BadRecord { .. } => "BadRecord",
        DecodeError::RecordCount { .. } => "RecordCount",
        DecodeError::DuplicatePayload { .. } => "DuplicatePayload",
        DecodeError::PayloadAfterContent { .. } => "PayloadAfterContent",
        DecodeError::IndexOutOfRange { .. } => "IndexOutOfRange",
        DecodeError::IndexOverlap { .. } => "IndexOverlap",
        DecodeError::BadDigest { .. } => "BadDigest",
        DecodeError::MissingAsset { .. } => "MissingAsset",
        DecodeError::Io(_) => "Io",
        _ => "other",
    }
}

/// What the reader said about a batch of mutants.
#[derive(Default)]
struct Tally {
    ok: usize,
    errors: BTreeMap<&'static str, usize>,
    panics: Vec<String>,
}

impl Tally {
    fn count(&self, name: &str) -> usize {
        self.errors.get(name).copied().unwrap_or(0)
    }

    fn refused(&self) -> usize {
        self.errors.values().sum()
    }
}

/// Applies `count` mutations at `depth` to `base` and verifies each mutant.
fn run(name: &str, base: &RawStone, depth: Depth, count: u64, tally: &mut Tally) {
    let salt = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    for i in 0..count {
        let seed = salt ^ ((depth as u64) << 56) ^ i;
        let mut rng = Rng::new(seed);
        let mut stone = base.clone();
        let (bytes, what) = match depth {
            Depth::File => {
                let mut bytes = stone.bytes();
                let what = mutate_some(&mut rng, &mut bytes);
                (bytes, what)
            }
            Depth::Header => {
                let what = mutate_header(&mut rng, &mut stone);
                (stone.bytes(), what)
            }
            Depth::Metadata => {
                let kinds = [PayloadKind::Meta, PayloadKind::Layout, PayloadKind::Index];
                let what = mutate_plain(&mut rng, &mut stone, &kinds);
                (stone.bytes(), what)
            }
            Depth::Content => {
                let what = mutate_plain(&mut rng, &mut stone, &[PayloadKind::Content]);
                (stone.bytes(), what)
            }
            Depth::Structure => {
                let what = mutate_structure(&mut rng, &mut stone);
                (stone.bytes(), what)
            }
        };
        match panic::catch_unwind(AssertUnwindSafe(|| read::verify(bytes.as_slice()))) {
            Ok(Ok(_)) => tally.ok += 1,
            Ok(Err(err)) => *tally.errors.entry(variant(&err)).or_default() += 1,
            Err(_) => tally.panics.push(format!(
                "{name}, {depth:?} mutation {i} (seed {seed:#018x}): {what}"
            )),
        }
    }
}

fn report(name: &str, tally: &Tally) {
    eprintln!("{name}: {} accepted, {:?}", tally.ok, tally.errors);
    assert!(
        tally.panics.is_empty(),
        "{} mutants of {name} made the reader panic; replay with these seeds:\n{}",
        tally.panics.len(),
        tally.panics.join("\n")
    );
    assert!(tally.ok > 0, "{name}: no mutant was accepted");
    assert!(tally.refused() > 0, "{name}: no mutant was refused");
    assert!(
        tally.count("BadRecord") > 0,
        "{name}: no mutant reached a record decoder"
    );
}

fn mutate_small(file: &str) {
    let base = RawStone::parse(&sample(file));
    let mut tally = Tally::default();
    run(file, &base, Depth::File, 1500, &mut tally);
    run(file, &base, Depth::Header, 500, &mut tally);
    run(file, &base, Depth::Metadata, 1500, &mut tally);
    run(file, &base, Depth::Content, 100, &mut tally);
    run(file, &base, Depth::Structure, 300, &mut tally);
    report(file, &tally);
    // A tiny stone's damage surfaces in many ways; make sure the checks past the
    // checksum are exercised, not just the checksum.
    for name in ["BadChecksum", "PlainSizeMismatch", "RecordCount"] {
        assert!(tally.count(name) > 0, "{file}: no {name}");
    }
}

#[test]
fn italian_pizza_survives_mutation() {
    mutate_small("italian-pizza-1-1-1-x86_64.stone");
}

#[test]
fn pineapple_survives_mutation() {
    mutate_small("pineapple-1-1-1-x86_64.stone");
}

/// bash-completion is 168 KB with 872 KB of content, so most of its mutants drop the
/// content and go after the 745 layout and 474 index records instead.
#[test]
fn bash_completion_survives_mutation() {
    let file = "bash-completion-2.11-1-1-x86_64.stone";
    let full = RawStone::parse(&sample(file));
    let metadata = full.metadata_only();
    let mut tally = Tally::default();
    run(file, &full, Depth::File, 100, &mut tally);
    run(file, &full, Depth::Header, 100, &mut tally);
    run(file, &full, Depth::Content, 8, &mut tally);
    run(file, &metadata, Depth::File, 800, &mut tally);
    run(file, &metadata, Depth::Header, 300, &mut tally);
    run(file, &metadata, Depth::Metadata, 2000, &mut tally);
    run(file, &metadata, Depth::Structure, 200, &mut tally);
    report(file, &tally);
    for name in ["BadChecksum", "BadDigest", "MissingAsset"] {
        assert!(tally.count(name) > 0, "{file}: no {name}");
    }
}
