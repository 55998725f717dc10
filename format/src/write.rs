//! The stone writer. It emits payloads in upstream's order (Meta, Layout, Index, Content),
//! zstd-compresses every body, and streams the content through a multithreaded zstd
//! encoder straight into the output, then seeks back to fill in the content header. No
//! temporary file, and nothing larger than one metadata payload is held in memory.

use std::io::{self, Read, Seek, SeekFrom, Write};

use xxhash_rust::xxh3::Xxh3;

use crate::delta::{DeltaRecord, Preamble};
use crate::hash::AssetHasher;
use crate::header::{self, ArchiveHeader, FileType};
use crate::index::{self, IndexEntry};
use crate::layout::{self, LayoutEntry};
use crate::meta::{self, MetaRecord};
use crate::payload::{self, Compression, PayloadHeader, PayloadKind};

/// The default zstd level: 9, the last level before the curve goes flat. Upstream uses 18,
/// which costs about 20 times as much time for a stone 5–12% smaller.
///
/// Measured with `cargo bench -p mossfs-integration --bench format -- --levels` (and
/// `--sweep 15,16,17`): the time of `mossfs pack`, content compressed on 2 cores, best of
/// 2–3 runs on a busy 2-core VM (times ±30%).
///
/// ```text
///        binaries: 1200 files of /usr/lib/x86_64-linux-gnu   docs: 5000 files of /usr/share
///        170.2 MiB of unique content                         66.5 MiB, much of it gzipped
/// level  pack time   stone      vs level 9                   pack time   stone
///     1     0.29s    68.5 MiB   +23%                            0.14s    34.2 MiB
///     3     0.44s    61.1 MiB   +9.5%                           0.14s    31.5 MiB
///     6     1.05s    57.5 MiB   +3.0%                           0.23s    30.8 MiB
///     9     1.66s    55.8 MiB    =                              0.41s    30.4 MiB
///    12     4.31s    55.4 MiB   -0.7%                           0.59s    30.3 MiB
///    15    10.5 s    55.1 MiB   -1.3%
///    16    13.4 s    53.3 MiB   -4.5%
///    17    21.7 s    51.3 MiB   -8.1%
///    18    32.5 s    49.3 MiB   -11.6%                          8.7 s    29.3 MiB
///    19    40.8 s    49.1 MiB   -12.0%                         10.4 s    29.2 MiB
/// ```
///
/// Up to 9, each step buys 3–10% for under twice the time. From 9 to 15 the stone barely
/// shrinks (1.3%) while the time grows sixfold. Only zstd's optimal parsers (16 and up) shrink
/// it again, at 8–25 times the time of level 9. At 9, `mossfs pack` runs as fast as
/// `tar -c | zstd -T0 -9` on the same tree. `zstd -d` speed (about 1.1 GB/s on the binaries,
/// 2 GB/s on the docs) did not depend on the level. Packagers who want upstream's sizes can
/// pass `--level 18`.
pub const DEFAULT_LEVEL: i32 = 9;

/// How to write.
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// zstd level for every payload.
    pub level: i32,
    /// zstd worker threads for the content; 0 compresses on the calling thread.
    pub threads: u32,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            level: DEFAULT_LEVEL,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        }
    }
}

/// The version of an index payload compressed against the layout payload's plain body
/// ([`Writer::add_index_against_layout`]); only a delta stone carries one.
pub const INDEX_AGAINST_LAYOUT: u16 = 2;

/// Supplies the bytes of each asset when the content is written.
pub trait ContentSource {
    /// Opens the bytes named by `entry`; the writer reads exactly `entry.len()` bytes.
    fn open(&self, entry: &IndexEntry) -> io::Result<Box<dyn Read + '_>>;
}

/// Writes one stone.
pub struct Writer<W: Write + Seek> {
    out: W,
    file_type: FileType,
    payloads: u16,
    options: WriterOptions,
    /// One compression context for every metadata payload: a repository index has one
    /// payload per package, and a fresh context each time cost more than the compression.
    compressor: Option<zstd::bulk::Compressor<'static>>,
}

impl<W: Write + Seek> Writer<W> {
    /// Starts an archive; the header is completed by [`Writer::finish`].
    pub fn new(mut out: W, file_type: FileType, options: WriterOptions) -> io::Result<Self> {
        let placeholder = ArchiveHeader {
            payload_count: 0,
            file_type,
        };
        out.write_all(&placeholder.encode())?;
        Ok(Writer {
            out,
            file_type,
            payloads: 0,
            options,
            compressor: None,
        })
    }

    /// Adds the meta payload.
    pub fn add_meta(&mut self, records: &[MetaRecord]) -> io::Result<()> {
        self.add_records(PayloadKind::Meta, records.len(), &meta::encode_all(records))
    }

    /// Adds the layout payload.
    pub fn add_layout(&mut self, entries: &[LayoutEntry]) -> io::Result<()> {
        self.add_records(
            PayloadKind::Layout,
            entries.len(),
            &layout::encode_all(entries),
        )
    }

    /// Adds the index payload.
    pub fn add_index(&mut self, entries: &[IndexEntry]) -> io::Result<()> {
        self.add_records(
            PayloadKind::Index,
            entries.len(),
            &index::encode_all(entries),
        )
    }

    /// Adds the index payload of a delta stone, version 2: one zstd frame made with the
    /// layout payload's plain body (`layout`, which must be what [`Writer::add_layout`]
    /// wrote) as a raw prefix. Every regular file's hash is in both payloads, and hashes do
    /// not compress, so this stores each hash once: a third of a small delta's metadata.
    pub fn add_index_against_layout(
        &mut self,
        entries: &[IndexEntry],
        layout: &[LayoutEntry],
    ) -> io::Result<()> {
        use zstd::zstd_safe::{CCtx, CParameter};
        let zstd_error = |code: usize| io::Error::other(zstd::zstd_safe::get_error_name(code));
        let plain = index::encode_all(entries);
        let prefix = layout::encode_all(layout);
        let mut cctx = CCtx::create();
        cctx.set_parameter(CParameter::CompressionLevel(self.options.level))
            .map_err(zstd_error)?;
        cctx.set_parameter(CParameter::ContentSizeFlag(true))
            .map_err(zstd_error)?;
        cctx.ref_prefix(&prefix).map_err(zstd_error)?;
        let mut stored = Vec::with_capacity(zstd::zstd_safe::compress_bound(plain.len()));
        cctx.compress2(&mut stored, &plain).map_err(zstd_error)?;
        let header = PayloadHeader {
            stored_size: stored.len() as u64,
            plain_size: plain.len() as u64,
            checksum: xxhash_rust::xxh3::xxh3_64(&stored),
            records: u32::try_from(entries.len())
                .map_err(|_| io::Error::other("more than 2^32 records"))?,
            version: INDEX_AGAINST_LAYOUT,
            kind: PayloadKind::Index,
            compression: Compression::Zstd,
        };
        self.out.write_all(&header.encode())?;
        self.out.write_all(&stored)?;
        self.bump()
    }

    /// Adds a payload of a kind outside upstream's range, stored uncompressed with its
    /// checksum: a list of mossfs's own that upstream's reader skips by its size (an
    /// index's delta offers). [`crate::Reader::read_index_with`] reads it back.
    pub fn add_extension(&mut self, kind: u8, records: u32, body: &[u8]) -> io::Result<()> {
        let header = PayloadHeader {
            stored_size: body.len() as u64,
            plain_size: body.len() as u64,
            checksum: xxhash_rust::xxh3::xxh3_64(body),
            records,
            version: 1,
            kind: PayloadKind::from_byte(kind),
            compression: Compression::None,
        };
        self.out.write_all(&header.encode())?;
        self.out.write_all(body)?;
        self.bump()
    }

    fn add_records(&mut self, kind: PayloadKind, count: usize, plain: &[u8]) -> io::Result<()> {
        let compressor = match &mut self.compressor {
            Some(c) => c,
            None => self
                .compressor
                .insert(zstd::bulk::Compressor::new(self.options.level)?),
        };
        let stored = compressor.compress(plain)?;
        let header = PayloadHeader {
            stored_size: stored.len() as u64,
            plain_size: plain.len() as u64,
            checksum: xxhash_rust::xxh3::xxh3_64(&stored),
            records: u32::try_from(count)
                .map_err(|_| io::Error::other("more than 2^32 records"))?,
            version: 1,
            kind,
            compression: Compression::Zstd,
        };
        self.out.write_all(&header.encode())?;
        self.out.write_all(&stored)?;
        self.bump()
    }

    /// Adds the content payload: the bytes of every index entry, in index order, as one zstd
    /// stream. The index must be contiguous from 0, as [`layout_index`] builds it. Each
    /// source must yield exactly its length and hash to its name, or the write fails.
    pub fn add_content(
        &mut self,
        index: &[IndexEntry],
        source: &dyn ContentSource,
    ) -> io::Result<()> {
        let header_at = self.out.stream_position()?;
        self.out.write_all(&[0u8; payload::LEN])?;
        let plain_size = index.iter().map(IndexEntry::len).sum::<u64>();
        let counted = Counted {
            inner: &mut self.out,
            hasher: Xxh3::new(),
            count: 0,
        };
        let mut encoder = zstd::stream::write::Encoder::new(counted, self.options.level)?;
        if self.options.threads > 0 {
            encoder.multithread(self.options.threads)?;
        }
        encoder.include_checksum(false)?;
        encoder.include_contentsize(true)?;
        encoder.set_pledged_src_size(Some(plain_size))?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut expected_start = 0;
        for entry in index {
            if entry.start != expected_start || entry.end < entry.start {
                return Err(io::Error::other(format!(
                    "index entry {} is not contiguous (starts at {}, expected {expected_start})",
                    entry.digest, entry.start
                )));
            }
            expected_start = entry.end;
            let mut reader = source.open(entry)?.take(entry.len());
            let mut hasher = AssetHasher::new();
            let mut copied = 0u64;
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                hasher.update(&buf[..n]);
                encoder.write_all(&buf[..n])?;
                copied += n as u64;
            }
            if copied != entry.len() || hasher.finish() != entry.digest {
                return Err(io::Error::other(format!(
                    "the bytes of asset {} changed while packing ({copied} of {} bytes read)",
                    entry.digest,
                    entry.len()
                )));
            }
        }
        let counted = encoder.finish()?;
        let header = PayloadHeader {
            stored_size: counted.count,
            plain_size,
            checksum: counted.hasher.digest(),
            records: 0,
            version: 1,
            kind: PayloadKind::Content,
            compression: Compression::Zstd,
        };
        let end = self.out.stream_position()?;
        self.out.seek(SeekFrom::Start(header_at))?;
        self.out.write_all(&header.encode())?;
        self.out.seek(SeekFrom::Start(end))?;
        self.bump()
    }

    /// Adds the delta payload of a delta stone (DESIGN.md §11): the preamble and the
    /// records, stored uncompressed since every frame already is. Goes last, in place of
    /// the content.
    pub fn add_delta(&mut self, preamble: &Preamble, records: &[DeltaRecord]) -> io::Result<()> {
        let preamble = preamble.encode();
        let mut hasher = Xxh3::new();
        hasher.update(&preamble);
        let mut size = preamble.len() as u64;
        let mut encoded = Vec::with_capacity(records.len());
        for record in records {
            let bytes = record.encode();
            hasher.update(&bytes);
            size += bytes.len() as u64;
            encoded.push(bytes);
        }
        let header = PayloadHeader {
            stored_size: size,
            plain_size: size,
            checksum: hasher.digest(),
            records: u32::try_from(records.len())
                .map_err(|_| io::Error::other("more than 2^32 records"))?,
            version: crate::delta::PAYLOAD_VERSION,
            kind: PayloadKind::Delta,
            compression: Compression::None,
        };
        self.out.write_all(&header.encode())?;
        self.out.write_all(&preamble)?;
        for bytes in &encoded {
            self.out.write_all(bytes)?;
        }
        self.bump()
    }

    fn bump(&mut self) -> io::Result<()> {
        self.payloads = self
            .payloads
            .checked_add(1)
            .ok_or_else(|| io::Error::other("more than 65535 payloads"))?;
        Ok(())
    }

    /// Completes the archive header and returns the output, flushed.
    pub fn finish(mut self) -> io::Result<W> {
        let end = self.out.stream_position()?;
        self.out.seek(SeekFrom::Start(0))?;
        let header = ArchiveHeader {
            payload_count: self.payloads,
            file_type: self.file_type,
        };
        let bytes: [u8; header::LEN] = header.encode();
        self.out.write_all(&bytes)?;
        self.out.seek(SeekFrom::Start(end))?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Builds the index for a set of unique assets, given in content order: contiguous byte
/// ranges from 0. Upstream puts the largest files first and the empty file last; callers
/// choose the order.
pub fn layout_index(assets: impl IntoIterator<Item = (crate::AssetHash, u64)>) -> Vec<IndexEntry> {
    let mut start = 0;
    assets
        .into_iter()
        .map(|(digest, len)| {
            let entry = IndexEntry {
                start,
                end: start + len,
                digest,
            };
            start = entry.end;
            entry
        })
        .collect()
}

/// Counts and hashes what passes to the output: the stored size and checksum.
struct Counted<W> {
    inner: W,
    hasher: Xxh3,
    count: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Assets held in memory, for tests and small tools.
impl ContentSource for std::collections::HashMap<crate::AssetHash, Vec<u8>> {
    fn open(&self, entry: &IndexEntry) -> io::Result<Box<dyn Read + '_>> {
        let bytes = self.get(&entry.digest).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no asset {}", entry.digest),
            )
        })?;
        Ok(Box::new(bytes.as_slice()))
    }
}
