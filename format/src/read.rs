//! The stone reader: metadata first, then the content as a stream of verified assets.
//!
//! ```no_run
//! # fn main() -> Result<(), mossfs_format::DecodeError> {
//! # let file = std::io::empty();
//! let mut reader = mossfs_format::Reader::new(file)?;
//! let stone = reader.read_metadata()?;      // meta, layout, index; stops at the content
//! if let Some(mut content) = reader.content(&stone)? {
//!     while let Some(mut asset) = content.next_asset()? {
//!         std::io::copy(&mut asset, &mut std::io::sink())?;
//!         asset.finish()?;                  // the xxh3-128 of the bytes matched
//!     }
//!     content.finish()?;                    // sizes and the payload checksum matched
//! }
//! # Ok(()) }
//! ```
//!
//! Nothing is allocated from a declared size. Metadata bodies are read through `take`, so a
//! header that lies about its size costs only the bytes that really follow, and each kind
//! has a hard limit. Content is never held in memory: it streams through zstd, bounded by
//! the declared plain size, and is split into assets by the index as it passes.

use std::io::{self, BufReader, Read};

use xxhash_rust::xxh3::Xxh3;

use std::collections::HashSet;

use crate::delta::{self, DeltaRecord, Method, Preamble, RecordHeader};
use crate::error::{DecodeError, RecordError};
use crate::hash::{AssetHash, AssetHasher};
use crate::header::{self, ArchiveHeader, FileType};
use crate::index::{self, IndexEntry};
use crate::layout::{self, EntryKind, LayoutEntry};
use crate::meta::{self, Meta, MetaRecord};
use crate::payload::{self, Compression, PayloadHeader, PayloadKind};

/// The largest metadata payload (stored or plain) we hold in memory: 64 MiB. Upstream's
/// biggest packages have layouts of a few megabytes. Decoded records take up to six times
/// their encoded size (an 8-byte meta record becomes a 48-byte one), and a payload of a few
/// kilobytes can decompress to the limit, so the limit is what bounds the memory a hostile
/// stone of any size can make a reader take: at 1 GiB, a 90 KB stone took 6 GiB.
pub const MAX_METADATA_SIZE: u64 = 64 << 20;

/// The most plain bytes of records a repository index may hold in all, whatever budget the
/// caller gives: 1 GiB. Each package's records are a payload of their own, so an index can
/// outgrow [`MAX_METADATA_SIZE`]; callers bound it further by the size they downloaded.
pub const MAX_INDEX_SIZE: u64 = 1 << 30;

/// Upstream writes zstd with a window log of 31, so a decoder must allow that.
pub const MAX_WINDOW_LOG: u32 = 31;

/// One payload as found in the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadInfo {
    /// Offset of its header in the file.
    pub offset: u64,
    /// The header as declared.
    pub header: PayloadHeader,
}

/// Everything but the content, decoded and verified.
#[derive(Debug, Clone, Default)]
pub struct Stone {
    /// The archive header; `None` only for `Stone::default()`.
    pub header: Option<ArchiveHeader>,
    /// Every payload read so far, in file order, unknown ones included.
    pub payloads: Vec<PayloadInfo>,
    /// Meta records in file order.
    pub meta: Vec<MetaRecord>,
    /// Layout entries in file order.
    pub layout: Vec<LayoutEntry>,
    /// Index entries in file order.
    pub index: Vec<IndexEntry>,
    /// The raw attributes payload body, if any.
    pub attributes: Option<Vec<u8>>,
    /// The content payload's header, if the stone has one.
    pub content: Option<PayloadInfo>,
    /// The delta payload's header, if this is a delta stone (DESIGN.md §11). It takes the
    /// content's place: last, streamed, never held whole in memory.
    pub delta: Option<PayloadInfo>,
}

impl Stone {
    /// The typed meta, with the package name required.
    pub fn typed_meta(&self) -> Result<Meta, meta::MetaError> {
        Meta::from_records(&self.meta)
    }

    /// The package name, if the meta has one, for error messages.
    pub fn name(&self) -> Option<&str> {
        self.meta.iter().find_map(|r| match (&r.tag, &r.value) {
            (meta::MetaTag::Name, meta::MetaValue::String(s)) => Some(s.as_str()),
            _ => None,
        })
    }

    /// Checks that a binary package is whole before anything trusts it: every reader of a
    /// package (install, extract, the store, `inspect --check`) calls this after
    /// [`Reader::read_metadata`].
    ///
    /// Payload kind and compression bytes are covered by no checksum, so one flipped byte
    /// can turn the layout into an "unknown" payload that is skipped, and the package
    /// would install as empty (and an upgrade to it would delete the package's files).
    /// So a binary package must have exactly one meta payload; an index or content
    /// needs a layout; an index needs content and content an index; every layout file
    /// needs an index entry and every index entry a layout file; and a payload of a kind
    /// the package needs must use a compression this reader knows. A package with no
    /// files at all legitimately has only its meta: upstream omits an empty layout.
    /// Other file types (indexes, deltas) have rules of their own and pass through.
    pub fn check_structure(&self) -> Result<(), DecodeError> {
        if self.header.is_none_or(|h| h.file_type != FileType::Binary) {
            return Ok(());
        }
        for info in &self.payloads {
            let needed = matches!(
                info.header.kind,
                PayloadKind::Meta | PayloadKind::Layout | PayloadKind::Index | PayloadKind::Content
            );
            if let (true, Compression::Unknown(byte)) = (needed, info.header.compression) {
                return Err(DecodeError::UnknownCompression {
                    kind: info.header.kind,
                    offset: info.offset,
                    compression: byte,
                });
            }
        }
        let has = |kind| self.payloads.iter().any(|p| p.header.kind == kind);
        let missing = |kind, because| DecodeError::MissingPayload { kind, because };
        if !has(PayloadKind::Meta) {
            return Err(missing(
                PayloadKind::Meta,
                "every package carries exactly one",
            ));
        }
        let (index, content) = (has(PayloadKind::Index), has(PayloadKind::Content));
        if (index || content) && !has(PayloadKind::Layout) {
            return Err(missing(
                PayloadKind::Layout,
                "it has an index or content, which only a layout can place",
            ));
        }
        if index && !content {
            return Err(missing(PayloadKind::Content, "it has an index"));
        }
        if content && !index {
            return Err(missing(PayloadKind::Index, "it has content"));
        }
        self.check_assets()?;
        let used: std::collections::HashSet<_> = self
            .layout
            .iter()
            .filter_map(|e| match e.kind {
                EntryKind::Regular(hash) => Some(hash),
                _ => None,
            })
            .collect();
        if let Some(entry) = self.index.iter().find(|e| !used.contains(&e.digest)) {
            return Err(DecodeError::UnusedAsset {
                package: self.name().map(str::to_owned),
                hash: entry.digest,
            });
        }
        Ok(())
    }

    /// Checks that every regular file in the layout has an index entry, so that unpacking
    /// the content yields every asset the layout needs. Part of [`Stone::check_structure`];
    /// on its own for a delta stone, whose structure that check leaves to the delta reader.
    pub fn check_assets(&self) -> Result<(), DecodeError> {
        let listed: std::collections::HashSet<_> = self.index.iter().map(|e| e.digest).collect();
        for entry in &self.layout {
            if let EntryKind::Regular(hash) = entry.kind
                && !listed.contains(&hash)
            {
                return Err(DecodeError::MissingAsset {
                    package: self.name().map(str::to_owned),
                    path: entry.path.to_string(),
                    hash,
                });
            }
        }
        Ok(())
    }
}

/// What [`Reader::read_index_with`] returns: every package's meta records, and the
/// extension payload's record count and body, when there is one.
pub type IndexWithExtension = (Vec<Vec<MetaRecord>>, Option<(u32, Vec<u8>)>);

/// A reader over one stone.
pub struct Reader<R> {
    inner: R,
    header: ArchiveHeader,
    /// Bytes consumed so far, for error offsets.
    offset: u64,
    /// Payloads whose headers have been read.
    seen: u16,
    /// The content payload was handed out; the rest of the archive follows it.
    content_taken: bool,
    /// A delta stone's layout payload, plain: the prefix its index may be compressed
    /// against.
    layout_plain: Option<Vec<u8>>,
}

impl<R: Read> Reader<R> {
    /// Reads and validates the archive header.
    pub fn new(mut inner: R) -> Result<Self, DecodeError> {
        let mut bytes = [0u8; header::LEN];
        let found = read_full(&mut inner, &mut bytes)?;
        if found == 0 {
            return Err(DecodeError::Empty);
        }
        if found < header::LEN {
            // A file too short to even hold the magic is still "not a stone".
            if found < 4 || bytes[..4] != header::MAGIC {
                let mut magic = [0u8; 4];
                magic[..found.min(4)].copy_from_slice(&bytes[..found.min(4)]);
                return Err(DecodeError::BadMagic { found: magic });
            }
            return Err(DecodeError::Truncated {
                what: "archive header",
                offset: 0,
                expected: header::LEN as u64,
                found: found as u64,
            });
        }
        let header = ArchiveHeader::decode(&bytes)?;
        Ok(Reader {
            inner,
            header,
            offset: header::LEN as u64,
            seen: 0,
            content_taken: false,
            layout_plain: None,
        })
    }

    /// The archive header.
    pub fn header(&self) -> ArchiveHeader {
        self.header
    }

    /// Reads every payload up to the content (or to the end, if there is none), verifying
    /// checksums and decoding records. The reader is left at the start of the content body.
    pub fn read_metadata(&mut self) -> Result<Stone, DecodeError> {
        let mut stone = Stone {
            header: Some(self.header),
            ..Stone::default()
        };
        let mut seen_kinds = Vec::new();
        while let Some(info) = self.next_payload_header()? {
            stone.payloads.push(info);
            let kind = info.header.kind;
            if kind == PayloadKind::Content {
                stone.content = Some(info);
                return Ok(stone);
            }
            if kind == PayloadKind::Delta {
                stone.delta = Some(info);
                return Ok(stone);
            }
            if matches!(
                kind,
                PayloadKind::Meta
                    | PayloadKind::Layout
                    | PayloadKind::Index
                    | PayloadKind::Attributes
            ) {
                if seen_kinds.contains(&kind) {
                    return Err(DecodeError::DuplicatePayload {
                        kind,
                        offset: info.offset,
                    });
                }
                seen_kinds.push(kind);
            }
            self.read_metadata_payload(info, &mut stone)?;
        }
        Ok(stone)
    }

    /// Reads a repository index (file type 3): every meta payload, one per package, in
    /// archive order. Other known kinds and unknown kinds are skipped by their size; a content
    /// payload is refused, since an index never carries one. `plain_limit` bounds the sum of
    /// the declared plain sizes, so a hostile index cannot make the reader hold more than the
    /// caller allows, whatever its payload count says.
    pub fn read_index(&mut self, plain_limit: u64) -> Result<Vec<Vec<MetaRecord>>, DecodeError> {
        self.read_index_with(plain_limit, None)
            .map(|(packages, _)| packages)
    }

    /// [`Reader::read_index`], also returning the body of the first uncompressed payload
    /// of kind `extension` (with its record count), which `read_index` skips. An index
    /// carries mossfs's own lists this way (its delta offers), where upstream's reader,
    /// which skips payload kinds it does not know, never sees them. The body counts
    /// against `plain_limit` and must pass its checksum.
    pub fn read_index_with(
        &mut self,
        plain_limit: u64,
        extension: Option<u8>,
    ) -> Result<IndexWithExtension, DecodeError> {
        let mut packages = Vec::new();
        let mut extra = None;
        // One decompression context for every payload (one per package).
        let mut decompressor = None;
        let mut plain_total: u64 = 0;
        while let Some(info) = self.next_payload_header()? {
            let header = info.header;
            match header.kind {
                PayloadKind::Content => {
                    return Err(DecodeError::ContentInIndex {
                        offset: info.offset,
                    });
                }
                PayloadKind::Meta if !matches!(header.compression, Compression::Unknown(_)) => {}
                PayloadKind::Unknown(kind)
                    if Some(kind) == extension
                        && extra.is_none()
                        && header.compression == Compression::None =>
                {
                    plain_total = plain_total.saturating_add(header.stored_size);
                    if plain_total > plain_limit.min(MAX_INDEX_SIZE) {
                        return Err(DecodeError::PayloadTooLarge {
                            kind: header.kind,
                            offset: info.offset,
                            size: plain_total,
                            limit: plain_limit.min(MAX_INDEX_SIZE),
                        });
                    }
                    extra = Some((header.records, self.read_body(info)?));
                    continue;
                }
                _ => {
                    self.skip_body(info)?;
                    continue;
                }
            }
            plain_total = plain_total.saturating_add(header.plain_size);
            for size in [header.stored_size, plain_total] {
                if size > plain_limit.min(MAX_INDEX_SIZE) {
                    return Err(DecodeError::PayloadTooLarge {
                        kind: PayloadKind::Meta,
                        offset: info.offset,
                        size,
                        limit: plain_limit.min(MAX_INDEX_SIZE),
                    });
                }
            }
            if header.version != 1 {
                return Err(DecodeError::UnsupportedPayloadVersion {
                    kind: PayloadKind::Meta,
                    offset: info.offset,
                    version: header.version,
                });
            }
            let body = self.read_body(info)?;
            let plain = decompress_with(&mut decompressor, &body, info)?;
            let records =
                meta::decode_all(&plain).map_err(|(index, reason)| DecodeError::BadRecord {
                    kind: PayloadKind::Meta,
                    index,
                    package: None,
                    reason,
                })?;
            if records.len() as u64 != u64::from(header.records) {
                return Err(DecodeError::RecordCount {
                    kind: PayloadKind::Meta,
                    offset: info.offset,
                    declared: header.records,
                    found: records.len() as u64,
                });
            }
            packages.push(records);
        }
        let mut probe = [0u8; 1];
        if read_full(&mut self.inner, &mut probe)? != 0 {
            return Err(DecodeError::TrailingData { extra: 1 });
        }
        Ok((packages, extra))
    }

    fn read_metadata_payload(
        &mut self,
        info: PayloadInfo,
        stone: &mut Stone,
    ) -> Result<(), DecodeError> {
        let PayloadInfo { offset, header } = info;
        let kind = header.kind;
        let known = matches!(
            kind,
            PayloadKind::Meta | PayloadKind::Layout | PayloadKind::Index | PayloadKind::Attributes
        );
        if !known || matches!(header.compression, Compression::Unknown(_)) {
            return self.skip_body(info);
        }
        // A delta stone's index may be compressed against its layout (version 2).
        let against_layout = kind == PayloadKind::Index
            && header.version == crate::write::INDEX_AGAINST_LAYOUT
            && header.compression == Compression::Zstd
            && self.header.file_type == FileType::Delta;
        if header.version != 1 && !against_layout {
            return Err(DecodeError::UnsupportedPayloadVersion {
                kind,
                offset,
                version: header.version,
            });
        }
        for size in [header.stored_size, header.plain_size] {
            if size > MAX_METADATA_SIZE {
                return Err(DecodeError::PayloadTooLarge {
                    kind,
                    offset,
                    size,
                    limit: MAX_METADATA_SIZE,
                });
            }
        }
        let body = self.read_body(info)?;
        let plain = if against_layout {
            let prefix =
                self.layout_plain
                    .as_deref()
                    .ok_or(DecodeError::UnsupportedPayloadVersion {
                        kind,
                        offset,
                        version: header.version,
                    })?;
            decompress_against(&body, prefix, info)?
        } else {
            decompress(&body, info)?
        };
        if kind == PayloadKind::Layout && self.header.file_type == FileType::Delta {
            self.layout_plain = Some(plain.clone());
        }
        let package = stone.name().map(str::to_owned);
        let bad = |(index, reason): (u64, RecordError)| DecodeError::BadRecord {
            kind,
            index,
            package: package.clone(),
            reason,
        };
        let found = match kind {
            PayloadKind::Meta => {
                stone.meta = meta::decode_all(&plain).map_err(bad)?;
                stone.meta.len()
            }
            PayloadKind::Layout => {
                stone.layout = layout::decode_all(&plain).map_err(bad)?;
                stone.layout.len()
            }
            PayloadKind::Index => {
                stone.index = index::decode_all(&plain).map_err(bad)?;
                stone.index.len()
            }
            _ => {
                stone.attributes = Some(plain);
                return Ok(());
            }
        } as u64;
        if found != u64::from(header.records) {
            return Err(DecodeError::RecordCount {
                kind,
                offset,
                declared: header.records,
                found,
            });
        }
        Ok(())
    }

    /// Returns the content stream, positioned at the content body, or `None` if the stone
    /// has no content payload. `stone` must be what [`Reader::read_metadata`] returned.
    pub fn content(&mut self, stone: &Stone) -> Result<Option<Content<'_, R>>, DecodeError> {
        let Some(info) = stone.content else {
            return Ok(None);
        };
        if self.content_taken {
            return Ok(None);
        }
        self.content_taken = true;
        Content::new(self, info, &stone.index).map(Some)
    }

    /// Returns the delta records as a stream, positioned at the delta payload's body, or
    /// `None` if the stone has none. `stone` must be what [`Reader::read_metadata`]
    /// returned.
    pub fn deltas(&mut self, stone: &Stone) -> Result<Option<Deltas<'_, R>>, DecodeError> {
        let Some(info) = stone.delta else {
            return Ok(None);
        };
        if self.content_taken {
            return Ok(None);
        }
        self.content_taken = true;
        Deltas::new(self, info, stone).map(Some)
    }

    /// Reads the rest of the archive after the content: only payloads that do not matter
    /// (unknown kinds) may follow. Checks the declared payload count and trailing bytes.
    pub fn finish(mut self) -> Result<(), DecodeError> {
        while let Some(info) = self.next_payload_header()? {
            match info.header.kind {
                PayloadKind::Unknown(_) => self.skip_body(info)?,
                kind @ (PayloadKind::Content | PayloadKind::Delta) => {
                    return Err(DecodeError::DuplicatePayload {
                        kind,
                        offset: info.offset,
                    });
                }
                kind => {
                    return Err(DecodeError::PayloadAfterContent {
                        kind,
                        offset: info.offset,
                    });
                }
            }
        }
        let mut probe = [0u8; 1];
        if read_full(&mut self.inner, &mut probe)? != 0 {
            return Err(DecodeError::TrailingData { extra: 1 });
        }
        Ok(())
    }

    fn next_payload_header(&mut self) -> Result<Option<PayloadInfo>, DecodeError> {
        if self.seen == self.header.payload_count {
            return Ok(None);
        }
        let mut bytes = [0u8; payload::LEN];
        let found = read_full(&mut self.inner, &mut bytes)?;
        if found == 0 {
            return Err(DecodeError::MissingPayloads {
                declared: self.header.payload_count,
                found: self.seen,
            });
        }
        if found < payload::LEN {
            return Err(DecodeError::Truncated {
                what: "payload header",
                offset: self.offset,
                expected: payload::LEN as u64,
                found: found as u64,
            });
        }
        let info = PayloadInfo {
            offset: self.offset,
            header: PayloadHeader::decode(&bytes),
        };
        // Offsets saturate: a content header may have claimed up to u64::MAX bytes.
        self.offset = self.offset.saturating_add(payload::LEN as u64);
        self.seen += 1;
        if info.header.compression == Compression::None
            && info.header.stored_size != info.header.plain_size
        {
            return Err(DecodeError::SizeMismatch {
                kind: info.header.kind,
                offset: info.offset,
                stored: info.header.stored_size,
                plain: info.header.plain_size,
            });
        }
        Ok(Some(info))
    }

    /// Reads a body whose stored size has already been checked against the limit. The
    /// buffer grows only as bytes really arrive.
    fn read_body(&mut self, info: PayloadInfo) -> Result<Vec<u8>, DecodeError> {
        let size = info.header.stored_size;
        let mut body = Vec::with_capacity(size.min(1 << 20) as usize);
        let found = (&mut self.inner).take(size).read_to_end(&mut body)? as u64;
        self.offset = self.offset.saturating_add(found);
        if found < size {
            return Err(truncated_body(info, found));
        }
        let computed = xxhash_rust::xxh3::xxh3_64(&body);
        if computed != info.header.checksum {
            return Err(DecodeError::BadChecksum {
                kind: info.header.kind,
                offset: info.offset,
                expected: info.header.checksum,
                computed,
            });
        }
        Ok(body)
    }

    /// Skips a payload we do not decode, without holding it in memory.
    fn skip_body(&mut self, info: PayloadInfo) -> Result<(), DecodeError> {
        let size = info.header.stored_size;
        let found = io::copy(&mut (&mut self.inner).take(size), &mut io::sink())?;
        self.offset = self.offset.saturating_add(found);
        if found < size {
            return Err(truncated_body(info, found));
        }
        Ok(())
    }
}

fn truncated_body(info: PayloadInfo, found: u64) -> DecodeError {
    DecodeError::Truncated {
        what: "payload body",
        offset: info.offset.saturating_add(payload::LEN as u64),
        expected: info.header.stored_size,
        found,
    }
}

/// Decompresses a metadata body, refusing more output than the header declared.
fn decompress(body: &[u8], info: PayloadInfo) -> Result<Vec<u8>, DecodeError> {
    let PayloadInfo { offset, header } = info;
    let kind = header.kind;
    if header.compression == Compression::None {
        return Ok(body.to_vec());
    }
    let decoder = zstd_decoder(body).map_err(|source| DecodeError::Decompress {
        kind,
        offset,
        source,
    })?;
    let mut plain = Vec::with_capacity(header.plain_size.min(body.len() as u64 * 16) as usize);
    decoder
        .take(header.plain_size + 1)
        .read_to_end(&mut plain)
        .map_err(|source| DecodeError::Decompress {
            kind,
            offset,
            source,
        })?;
    exact_size(plain, kind, offset, header.plain_size)
}

/// Decompresses a payload body made with `prefix` as a raw zstd prefix, into a buffer of
/// exactly the declared plain size (already bounded by the caller).
fn decompress_against(
    body: &[u8],
    prefix: &[u8],
    info: PayloadInfo,
) -> Result<Vec<u8>, DecodeError> {
    let PayloadInfo { offset, header } = info;
    let kind = header.kind;
    let error = |code: usize| DecodeError::Decompress {
        kind,
        offset,
        source: io::Error::other(zstd::zstd_safe::get_error_name(code)),
    };
    let mut dctx = zstd::zstd_safe::DCtx::create();
    dctx.ref_prefix(prefix).map_err(error)?;
    let capacity = usize::try_from(header.plain_size).unwrap_or(usize::MAX);
    let mut plain = Vec::with_capacity(capacity);
    dctx.decompress(&mut plain, body).map_err(error)?;
    exact_size(plain, kind, offset, header.plain_size)
}

/// Like [`decompress`], reusing one bulk context (made on first use) across payloads. The
/// output buffer is the declared plain size, which the caller has bounded.
fn decompress_with(
    context: &mut Option<zstd::bulk::Decompressor<'static>>,
    body: &[u8],
    info: PayloadInfo,
) -> Result<Vec<u8>, DecodeError> {
    let PayloadInfo { offset, header } = info;
    let kind = header.kind;
    if header.compression == Compression::None {
        return Ok(body.to_vec());
    }
    let error = |source| DecodeError::Decompress {
        kind,
        offset,
        source,
    };
    let decompressor = match context {
        Some(d) => d,
        None => {
            let mut d = zstd::bulk::Decompressor::new().map_err(error)?;
            d.set_parameter(zstd::zstd_safe::DParameter::WindowLogMax(MAX_WINDOW_LOG))
                .map_err(error)?;
            context.insert(d)
        }
    };
    let capacity = usize::try_from(header.plain_size).unwrap_or(usize::MAX);
    let plain = decompressor.decompress(body, capacity).map_err(error)?;
    exact_size(plain, kind, offset, header.plain_size)
}

fn zstd_decoder<R: Read>(
    inner: R,
) -> io::Result<zstd::stream::read::Decoder<'static, BufReader<R>>> {
    let mut decoder = zstd::stream::read::Decoder::new(inner)?;
    decoder.window_log_max(MAX_WINDOW_LOG)?;
    Ok(decoder)
}

/// Reads until `buf` is full or the input ends; returns how much was read. Unlike
/// `read_exact`, the end of the input is not an error: the caller sees how much it got.
pub fn read_full(inner: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match inner.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Hashes the stored bytes as they pass, so the payload checksum costs no second pass.
struct Checksummed<R> {
    inner: R,
    hasher: Xxh3,
    count: u64,
}

impl<R: Read> Read for Checksummed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

type StoredBody<'r, R> = Checksummed<io::Take<&'r mut R>>;

/// Where the plain content bytes come from: zstd or the stored bytes themselves.
enum Plain<'r, R: Read> {
    Zstd(zstd::stream::read::Decoder<'static, BufReader<StoredBody<'r, R>>>),
    Stored(StoredBody<'r, R>),
}

impl<'r, R: Read> Plain<'r, R> {
    fn stored(&mut self) -> &mut StoredBody<'r, R> {
        match self {
            Plain::Zstd(decoder) => decoder.get_mut().get_mut(),
            Plain::Stored(body) => body,
        }
    }

    /// Stored bytes consumed so far.
    fn stored_count(&self) -> u64 {
        match self {
            Plain::Zstd(decoder) => decoder.get_ref().get_ref().count,
            Plain::Stored(body) => body.count,
        }
    }
}

impl<R: Read> Read for Plain<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Plain::Zstd(decoder) => decoder.read(buf),
            Plain::Stored(body) => body.read(buf),
        }
    }
}

/// The content payload, streamed and split into assets through the index.
pub struct Content<'r, R: Read> {
    plain: Plain<'r, R>,
    info: PayloadInfo,
    /// Index entries sorted by start offset.
    entries: Vec<IndexEntry>,
    next: usize,
    /// Plain bytes consumed so far.
    position: u64,
    /// The asset being read: its entry, bytes left, and running hash.
    current: Option<(IndexEntry, u64, AssetHasher)>,
    stored_offset_base: u64,
}

impl<'r, R: Read> Content<'r, R> {
    fn new(
        reader: &'r mut Reader<R>,
        info: PayloadInfo,
        index: &[IndexEntry],
    ) -> Result<Self, DecodeError> {
        let PayloadInfo { offset, header } = info;
        let kind = PayloadKind::Content;
        if header.version != 1 {
            return Err(DecodeError::UnsupportedPayloadVersion {
                kind,
                offset,
                version: header.version,
            });
        }
        let mut entries = index.to_vec();
        entries.sort_by_key(|e| (e.start, e.end));
        entries.dedup();
        let mut previous_end = 0;
        for entry in &entries {
            if entry.start > entry.end || entry.end > header.plain_size {
                return Err(DecodeError::IndexOutOfRange {
                    hash: entry.digest,
                    start: entry.start,
                    end: entry.end,
                    plain: header.plain_size,
                });
            }
            if entry.start < previous_end {
                return Err(DecodeError::IndexOverlap {
                    hash: entry.digest,
                    start: entry.start,
                    previous_end,
                });
            }
            previous_end = entry.end;
        }
        let stored_offset_base = reader.offset;
        // The declared size is not trusted yet (it may be u64::MAX); `finish` checks it.
        reader.offset = reader.offset.saturating_add(header.stored_size);
        let body = Checksummed {
            inner: (&mut reader.inner).take(header.stored_size),
            hasher: Xxh3::new(),
            count: 0,
        };
        let plain = match header.compression {
            Compression::None => Plain::Stored(body),
            Compression::Zstd => {
                Plain::Zstd(
                    zstd_decoder(body).map_err(|source| DecodeError::Decompress {
                        kind,
                        offset,
                        source,
                    })?,
                )
            }
            Compression::Unknown(_) => {
                return Err(DecodeError::Decompress {
                    kind,
                    offset,
                    source: io::Error::new(io::ErrorKind::Unsupported, "unknown compression"),
                });
            }
        };
        Ok(Content {
            plain,
            info,
            entries,
            next: 0,
            position: 0,
            current: None,
            stored_offset_base,
        })
    }

    /// The content payload's header.
    pub fn info(&self) -> PayloadInfo {
        self.info
    }

    /// The next asset, in content order. An asset dropped before it is finished is still
    /// drained and verified here.
    pub fn next_asset(&mut self) -> Result<Option<Asset<'_, 'r, R>>, DecodeError> {
        self.finish_current()?;
        let Some(&entry) = self.entries.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        let gap = entry.start - self.position;
        self.discard(gap)?;
        self.current = Some((entry, entry.len(), AssetHasher::new()));
        Ok(Some(Asset { content: self }))
    }

    /// Drains the rest of the content and checks the plain size and the payload checksum.
    /// Call it after the last asset; until it returns `Ok`, a bad checksum may go unseen.
    pub fn finish(mut self) -> Result<(), DecodeError> {
        self.finish_current()?;
        let kind = PayloadKind::Content;
        let offset = self.info.offset;
        let declared = self.info.header.plain_size;
        let rest = declared - self.position;
        self.discard(rest)?;
        // One byte more than declared is a lie about the size (or a bomb).
        let mut probe = [0u8; 1];
        let extra =
            read_full(&mut self.plain, &mut probe).map_err(|source| self.decode_error(source))?;
        if extra != 0 {
            return Err(DecodeError::PlainSizeMismatch {
                kind,
                offset,
                declared,
                found: declared + 1,
            });
        }
        // zstd may stop before the end of the stored bytes; what is left still counts.
        let body = self.plain.stored();
        io::copy(body, &mut io::sink())?;
        if body.count < self.info.header.stored_size {
            return Err(DecodeError::Truncated {
                what: "content payload",
                offset: self.stored_offset_base,
                expected: self.info.header.stored_size,
                found: body.count,
            });
        }
        let computed = body.hasher.digest();
        if computed != self.info.header.checksum {
            return Err(DecodeError::BadChecksum {
                kind,
                offset,
                expected: self.info.header.checksum,
                computed,
            });
        }
        Ok(())
    }

    fn finish_current(&mut self) -> Result<(), DecodeError> {
        let Some((entry, left, _)) = self.current else {
            return Ok(());
        };
        // Callers usually read the whole asset, so the buffer is rarely needed.
        let mut buf = if left > 0 {
            vec![0u8; 64 * 1024]
        } else {
            Vec::new()
        };
        let mut left = left;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = self.read_current(&mut buf[..want])?;
            left -= n as u64;
        }
        let (_, _, hasher) = self.current.take().expect("checked above");
        let computed = hasher.finish();
        if computed != entry.digest {
            return Err(DecodeError::BadDigest {
                expected: entry.digest,
                computed,
                start: entry.start,
                end: entry.end,
            });
        }
        Ok(())
    }

    /// Reads from the current asset; an early end of the stream is a truncation.
    fn read_current(&mut self, buf: &mut [u8]) -> Result<usize, DecodeError> {
        let Some((_, left, _)) = &self.current else {
            return Ok(0);
        };
        let want = (*left).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = loop {
            match self.plain.read(&mut buf[..want]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.decode_error(e)),
            }
        };
        if n == 0 {
            return Err(self.short_content());
        }
        let (_, left, hasher) = self.current.as_mut().expect("checked above");
        *left -= n as u64;
        hasher.update(&buf[..n]);
        self.position += n as u64;
        Ok(n)
    }

    fn discard(&mut self, mut count: u64) -> Result<(), DecodeError> {
        let mut buf = [0u8; 8192];
        while count > 0 {
            let want = count.min(buf.len() as u64) as usize;
            let n = self
                .plain
                .read(&mut buf[..want])
                .map_err(|e| self.decode_error(e))?;
            if n == 0 {
                return Err(self.short_content());
            }
            count -= n as u64;
            self.position += n as u64;
        }
        Ok(())
    }

    fn short_content(&self) -> DecodeError {
        DecodeError::PlainSizeMismatch {
            kind: PayloadKind::Content,
            offset: self.info.offset,
            declared: self.info.header.plain_size,
            found: self.position,
        }
    }

    /// Classifies a read error: a short stored body is a truncation, anything else a bad
    /// zstd stream.
    fn decode_error(&self, source: io::Error) -> DecodeError {
        let found = self.plain.stored_count();
        let expected = self.info.header.stored_size;
        if source.kind() == io::ErrorKind::UnexpectedEof && found < expected {
            return DecodeError::Truncated {
                what: "content payload",
                offset: self.stored_offset_base,
                expected,
                found,
            };
        }
        DecodeError::Decompress {
            kind: PayloadKind::Content,
            offset: self.info.offset,
            source,
        }
    }
}

/// One asset's bytes, streamed out of the content. Read it, then call [`Asset::finish`].
pub struct Asset<'c, 'r, R: Read> {
    content: &'c mut Content<'r, R>,
}

impl<R: Read> Asset<'_, '_, R> {
    /// The index entry: the asset's name and where it sits.
    pub fn entry(&self) -> IndexEntry {
        self.content
            .current
            .as_ref()
            .expect("an asset exists only while current")
            .0
    }

    /// Reads whatever the caller left unread and verifies the xxh3-128.
    pub fn finish(self) -> Result<(), DecodeError> {
        self.content.finish_current()
    }

    /// Like `read`, but with the typed error.
    pub fn read_checked(&mut self, buf: &mut [u8]) -> Result<usize, DecodeError> {
        self.content.read_current(buf)
    }
}

impl<R: Read> Read for Asset<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.content.read_current(buf).map_err(io::Error::other)
    }
}

/// Reads a whole stone and verifies everything, its structure
/// ([`Stone::check_structure`]) and every asset digest included, without keeping the
/// content. Returns the decoded metadata.
///
/// For a delta stone, every record is checked: its fixed part, that its frame declares the
/// record's target size, and for a whole record that it decodes to its target's hash. A
/// patch can only be applied against its bases, which a stone alone does not carry, named
/// by their position in the old package's index, which it does not carry either.
pub fn verify<R: Read>(inner: R) -> Result<Stone, DecodeError> {
    let mut reader = Reader::new(inner)?;
    let stone = reader.read_metadata()?;
    if let Some(mut content) = reader.content(&stone)? {
        while let Some(asset) = content.next_asset()? {
            asset.finish()?;
        }
        content.finish()?;
    }
    if let Some(mut deltas) = reader.deltas(&stone)? {
        let mut index = 0;
        while let Some(record) = deltas.next_record()? {
            let checked = match record.header.method() {
                Method::Whole => record.apply(&[], &[], &mut |_, _| Ok(())),
                Method::Patch => record.check_frame(),
            };
            checked.map_err(|source| DecodeError::Delta {
                index,
                source: Box::new(source),
            })?;
            index += 1;
        }
        deltas.finish()?;
    }
    reader.finish()?;
    // Last, so that a framing fault (a payload after the content, a wrong payload count)
    // is named as such rather than as the payload it hid.
    stone.check_structure()?;
    Ok(stone)
}

/// The delta payload, streamed record by record (DESIGN.md §11, layout in
/// [`crate::delta`]). Each record's frame is read into memory, bounded by what remains of
/// the payload; nothing is allocated from a declared size before the bytes arrive.
pub struct Deltas<'r, R: Read> {
    body: StoredBody<'r, R>,
    info: PayloadInfo,
    preamble: Preamble,
    index: Vec<IndexEntry>,
    seen: HashSet<AssetHash>,
    read: u32,
    package: Option<String>,
}

impl<'r, R: Read> Deltas<'r, R> {
    fn new(
        reader: &'r mut Reader<R>,
        info: PayloadInfo,
        stone: &Stone,
    ) -> Result<Self, DecodeError> {
        let PayloadInfo { offset, header } = info;
        let kind = PayloadKind::Delta;
        if header.version != delta::PAYLOAD_VERSION {
            // Versions 1 and 2 named bases by hash; they are refused by name, so that the
            // message says what to do rather than "unsupported".
            if (1..delta::PAYLOAD_VERSION).contains(&header.version) {
                return Err(DecodeError::DeltaVersion {
                    offset,
                    version: header.version,
                    supported: delta::PAYLOAD_VERSION,
                });
            }
            return Err(DecodeError::UnsupportedPayloadVersion {
                kind,
                offset,
                version: header.version,
            });
        }
        if header.compression != Compression::None {
            return Err(DecodeError::Decompress {
                kind,
                offset,
                source: io::Error::new(
                    io::ErrorKind::Unsupported,
                    "a delta payload is stored uncompressed; its frames are compressed",
                ),
            });
        }
        reader.offset = reader.offset.saturating_add(header.stored_size);
        let mut body = Checksummed {
            inner: (&mut reader.inner).take(header.stored_size),
            hasher: Xxh3::new(),
            count: 0,
        };
        let mut bytes = [0u8; delta::PREAMBLE_LEN];
        let found = read_full(&mut body, &mut bytes)?;
        if found < delta::PREAMBLE_LEN {
            return Err(truncated_body(info, found as u64));
        }
        Ok(Deltas {
            body,
            info,
            preamble: Preamble::decode(&bytes),
            index: stone.index.clone(),
            seen: HashSet::new(),
            read: 0,
            package: stone.name().map(str::to_owned),
        })
    }

    /// Which package the delta starts from and which it stands for.
    pub fn preamble(&self) -> Preamble {
        self.preamble
    }

    /// The delta payload's header.
    pub fn info(&self) -> PayloadInfo {
        self.info
    }

    /// The next record, checked: known method, sane window and sizes, a frame that fits in
    /// the payload, a target the index lists and no other record rebuilds.
    pub fn next_record(&mut self) -> Result<Option<DeltaRecord>, DecodeError> {
        if self.read == self.info.header.records {
            return Ok(None);
        }
        let index = u64::from(self.read);
        let bad = |reason| DecodeError::BadRecord {
            kind: PayloadKind::Delta,
            index,
            package: self.package.clone(),
            reason,
        };
        // The length prefix: a varint of at most 10 bytes, read a byte at a time.
        let mut prefix = Vec::with_capacity(10);
        loop {
            let mut byte = [0u8; 1];
            if read_full(&mut self.body, &mut byte)? == 0 {
                return Err(self.truncated());
            }
            prefix.push(byte[0]);
            if byte[0] & 0x80 == 0 || prefix.len() == 10 {
                break;
            }
        }
        let (len, _) = delta::header_len(&prefix).map_err(bad)?;
        let left = self.info.header.stored_size - self.body.count;
        if len > left {
            return Err(self.truncated());
        }
        // At most MAX_HEADER_LEN and at most what the payload still holds.
        let mut fixed = vec![0u8; len as usize];
        if read_full(&mut self.body, &mut fixed)? < fixed.len() {
            return Err(self.truncated());
        }
        let left = self.info.header.stored_size - self.body.count;
        let header = RecordHeader::decode(&fixed, &self.index, left).map_err(bad)?;
        for target in &header.targets {
            if !self.seen.insert(target.hash) {
                return Err(DecodeError::DeltaDuplicate {
                    index,
                    hash: target.hash,
                });
            }
        }
        let mut frame = Vec::with_capacity(header.frame_len.min(1 << 20) as usize);
        let got = (&mut self.body)
            .take(header.frame_len)
            .read_to_end(&mut frame)? as u64;
        if got < header.frame_len {
            return Err(self.truncated());
        }
        self.read += 1;
        Ok(Some(DeltaRecord { header, frame }))
    }

    fn truncated(&self) -> DecodeError {
        truncated_body(self.info, self.body.count)
    }

    /// Checks that every declared record was read, nothing follows them, and the payload
    /// checksum matches.
    pub fn finish(mut self) -> Result<(), DecodeError> {
        while self.next_record()?.is_some() {}
        let extra = io::copy(&mut self.body, &mut io::sink())?;
        if extra > 0 {
            return Err(DecodeError::DeltaTrailing {
                offset: self.info.offset,
                records: self.info.header.records,
                extra,
            });
        }
        if self.body.count < self.info.header.stored_size {
            return Err(self.truncated());
        }
        let computed = self.body.hasher.digest();
        if computed != self.info.header.checksum {
            return Err(DecodeError::BadChecksum {
                kind: PayloadKind::Delta,
                offset: self.info.offset,
                expected: self.info.header.checksum,
                computed,
            });
        }
        Ok(())
    }
}

/// A payload whose plain bytes are not exactly the size its header declared is refused:
/// the header is what bounded the buffer, and a stone that lies about it is damaged.
fn exact_size(
    plain: Vec<u8>,
    kind: PayloadKind,
    offset: u64,
    declared: u64,
) -> Result<Vec<u8>, DecodeError> {
    if plain.len() as u64 != declared {
        return Err(DecodeError::PlainSizeMismatch {
            kind,
            offset,
            declared,
            found: plain.len() as u64,
        });
    }
    Ok(plain)
}
