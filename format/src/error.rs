//! Decode errors. Each variant says where in the archive things went wrong, so that the
//! binary can name the file, the payload and the problem in one line.

use std::io;

use crate::hash::AssetHash;
use crate::path::PathError;
use crate::payload::PayloadKind;

/// Everything that can be wrong with a stone.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not one byte: a download or copy that never wrote anything, more often than not.
    #[error("the file is empty, not a stone archive")]
    Empty,
    /// The first four bytes are not `\0mos`.
    #[error("not a stone archive (bad magic {found:02x?})")]
    BadMagic {
        /// The bytes found instead.
        found: [u8; 4],
    },
    /// A format version this reader does not know.
    #[error("unsupported stone format version {0} (this reader knows version 1)")]
    UnsupportedVersion(u32),
    /// The 21-byte integrity pattern in the archive header is damaged.
    #[error("archive header is corrupt (integrity pattern mismatch)")]
    BadIntegrity,
    /// The file ended early.
    #[error("truncated {what} at offset {offset}: expected {expected} bytes, found {found}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Offset in the file where that thing starts.
        offset: u64,
        /// How many bytes it needed.
        expected: u64,
        /// How many bytes there were.
        found: u64,
    },
    /// The archive ended cleanly between payloads, but fewer than declared.
    #[error("archive declares {declared} payloads but holds only {found}")]
    MissingPayloads {
        /// Payload count in the archive header.
        declared: u16,
        /// Payloads actually present.
        found: u16,
    },
    /// Bytes follow the last declared payload.
    #[error("{extra}+ unexpected bytes after the last declared payload")]
    TrailingData {
        /// At least this many extra bytes.
        extra: u64,
    },
    /// A payload version other than 1.
    #[error("{kind} payload at offset {offset}: unsupported payload version {version}")]
    UnsupportedPayloadVersion {
        /// The payload's kind.
        kind: PayloadKind,
        /// Offset of its header.
        offset: u64,
        /// The version found.
        version: u16,
    },
    /// A known metadata payload larger than we are willing to hold in memory.
    #[error(
        "{kind} payload at offset {offset}: declared size {size} exceeds the limit of {limit} bytes"
    )]
    PayloadTooLarge {
        /// The payload's kind.
        kind: PayloadKind,
        /// Offset of its header.
        offset: u64,
        /// The declared (stored or plain) size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// XXH3-64 of the stored bytes differs from the header.
    #[error(
        "{kind} payload at offset {offset}: checksum mismatch (header says {expected:016x}, bytes hash to {computed:016x})"
    )]
    BadChecksum {
        /// The payload's kind.
        kind: PayloadKind,
        /// Offset of its header.
        offset: u64,
        /// Checksum from the header.
        expected: u64,
        /// Checksum of the bytes.
        computed: u64,
    },
    /// The body did not decompress.
    #[error("{kind} payload at offset {offset}: cannot decompress: {source}")]
    Decompress {
        /// The payload's kind.
        kind: PayloadKind,
        /// Offset of its header.
        offset: u64,
        /// What zstd said.
        #[source]
        source: io::Error,
    },
    /// The body decompressed to a size other than the declared plain size.
    #[error(
        "{kind} payload at offset {offset}: decompresses to {found} bytes, header declares {declared}"
    )]
    PlainSizeMismatch {
        /// The payload's kind.
        kind: PayloadKind,
        /// Offset of its header.
        offset: u64,
        /// Plain size from the header.
        declared: u64,
        /// Bytes produced (for an overrun: at least this many).
        found: u64,
    },
    /// An uncompressed payload whose stored and plain sizes differ.
    #[error(
        "{kind} payload at offset {offset}: uncompressed, but stored size {stored} differs from plain size {plain}"
    )]
    SizeMismatch {
        /// The payload's kind.
        kind: PayloadKind,
        /// Offset of its header.
        offset: u64,
        /// Stored size.
        stored: u64,
        /// Plain size.
        plain: u64,
    },
    /// One record could not be decoded.
    #[error("{}{kind} record {index}: {reason}", package_prefix(.package))]
    BadRecord {
        /// The payload's kind.
        kind: PayloadKind,
        /// The record's position, from 0.
        index: u64,
        /// The package's name, when the meta payload has been read.
        package: Option<String>,
        /// What is wrong with it.
        reason: RecordError,
    },
    /// The payload holds a different number of records than its header says.
    #[error(
        "{kind} payload at offset {offset}: header declares {declared} records, body holds {found}"
    )]
    RecordCount {
        /// The payload's kind.
        kind: PayloadKind,
        /// Offset of its header.
        offset: u64,
        /// Count from the header.
        declared: u32,
        /// Records decoded.
        found: u64,
    },
    /// Two payloads of a kind that may appear once.
    #[error("a second {kind} payload at offset {offset}")]
    DuplicatePayload {
        /// The payload's kind.
        kind: PayloadKind,
        /// Offset of the second one.
        offset: u64,
    },
    /// A content payload inside a repository index, which carries only meta payloads.
    #[error("content payload at offset {offset} inside a repository index, which holds only meta")]
    ContentInIndex {
        /// Offset of its header.
        offset: u64,
    },
    /// Metadata after the content, which a streaming reader cannot go back for.
    #[error(
        "{kind} payload at offset {offset} follows the content payload; writers put content last"
    )]
    PayloadAfterContent {
        /// The payload's kind.
        kind: PayloadKind,
        /// Offset of its header.
        offset: u64,
    },
    /// An index entry points outside the content.
    #[error(
        "index entry for {hash} spans bytes {start}..{end}, outside the {plain} bytes of content"
    )]
    IndexOutOfRange {
        /// The asset.
        hash: AssetHash,
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
        /// Plain size of the content.
        plain: u64,
    },
    /// Two index entries overlap.
    #[error(
        "index entry for {hash} at {start} overlaps the previous entry, which ends at {previous_end}"
    )]
    IndexOverlap {
        /// The asset.
        hash: AssetHash,
        /// Its first byte.
        start: u64,
        /// Where the previous entry ends.
        previous_end: u64,
    },
    /// An asset's bytes do not hash to its name.
    #[error("content bytes {start}..{end} hash to {computed}, but the index names them {expected}")]
    BadDigest {
        /// The index's hash.
        expected: AssetHash,
        /// The bytes' hash.
        computed: AssetHash,
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
    },
    /// A layout names a regular file that no index entry provides.
    #[error("{}layout entry `{path}` needs asset {hash}, which the index does not list", package_prefix(.package))]
    MissingAsset {
        /// The package's name, when known.
        package: Option<String>,
        /// The entry's path.
        path: String,
        /// The missing asset.
        hash: AssetHash,
    },
    /// A delta record that does not rebuild its asset.
    #[error("delta record {index}: {source}")]
    Delta {
        /// The record's position, from 0.
        index: u64,
        /// What is wrong with it.
        #[source]
        source: Box<crate::delta::ApplyError>,
    },
    /// A delta record rebuilds an asset the stone's index does not list.
    #[error("delta record {index} rebuilds asset {hash}, which the index does not list")]
    DeltaNotIndexed {
        /// The record's position, from 0.
        index: u64,
        /// The asset.
        hash: AssetHash,
    },
    /// Two delta records rebuild the same asset.
    #[error("delta record {index} rebuilds asset {hash} a second time")]
    DeltaDuplicate {
        /// The record's position, from 0.
        index: u64,
        /// The asset.
        hash: AssetHash,
    },
    /// A delta payload of an older version, which this reader no longer reads.
    #[error(
        "delta payload at offset {offset} is version {version}, which this mossfs no longer reads (it reads version {supported}, whose records name bases by their position in the old package's index); use the full stone, or remake the delta with `mossfs delta`"
    )]
    DeltaVersion {
        /// Offset of its header.
        offset: u64,
        /// The version found.
        version: u16,
        /// The version this reader reads.
        supported: u16,
    },
    /// A delta payload holds bytes after its declared records.
    #[error(
        "delta payload at offset {offset}: {extra} bytes follow its {records} declared records"
    )]
    DeltaTrailing {
        /// Offset of its header.
        offset: u64,
        /// The declared record count.
        records: u32,
        /// Bytes left over.
        extra: u64,
    },
    /// A binary package lacks a payload it needs, so it cannot be whole
    /// ([`crate::Stone::check_structure`]).
    #[error("the package has no {kind} payload, but {because}; the stone is damaged")]
    MissingPayload {
        /// The payload that is missing.
        kind: PayloadKind,
        /// Why the package needs it.
        because: &'static str,
    },
    /// A payload the package needs uses a compression this reader does not know, so its
    /// records would be skipped.
    #[error(
        "{kind} payload at offset {offset}: unknown compression {compression}; the package cannot be read without this payload"
    )]
    UnknownCompression {
        /// The payload's kind.
        kind: PayloadKind,
        /// Offset of its header.
        offset: u64,
        /// The compression byte found.
        compression: u8,
    },
    /// An index entry that no layout entry uses: the layout lost records.
    #[error("{}the index lists asset {hash}, which no layout entry uses", package_prefix(.package))]
    UnusedAsset {
        /// The package's name, when known.
        package: Option<String>,
        /// The asset.
        hash: AssetHash,
    },
    /// Reading failed underneath.
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
}

fn package_prefix(package: &Option<String>) -> String {
    match package {
        Some(name) => format!("package {name}: "),
        None => String::new(),
    }
}

/// What is wrong with one record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The record runs past the end of the payload.
    #[error("needs {needed} bytes, but only {left} remain in the payload")]
    Short {
        /// Bytes needed.
        needed: u64,
        /// Bytes left.
        left: u64,
    },
    /// A string is not UTF-8.
    #[error("{what} is not valid UTF-8")]
    BadUtf8 {
        /// Which string.
        what: &'static str,
    },
    /// A regular file's source is not a 16-byte hash.
    #[error("regular file `{path}`: its hash must be 16 bytes, found {len}")]
    BadHashLength {
        /// The entry's path.
        path: String,
        /// Length found.
        len: usize,
    },
    /// A layout file type outside 1..=7.
    #[error("unknown file type {0}")]
    UnknownFileType(u8),
    /// The mode's type bits disagree with the file type.
    #[error("path `{path}`: mode {mode:o} does not match file type {file_type}")]
    ModeMismatch {
        /// The entry's path.
        path: String,
        /// The mode.
        mode: u32,
        /// The declared file type.
        file_type: u8,
    },
    /// A layout path that could escape the tree.
    #[error("path `{path}` is refused: {reason}")]
    BadPath {
        /// The path as text.
        path: String,
        /// Why.
        reason: PathError,
    },
    /// A symlink with no target, or a NUL inside it.
    #[error("symlink `{path}` has an invalid target")]
    BadLinkTarget {
        /// The entry's path.
        path: String,
    },
    /// An integer tag whose value is not an integer.
    #[error("meta tag {tag} must be an integer")]
    NotAnInteger {
        /// The tag.
        tag: u16,
    },
    /// A dependency or provider record without its NUL-terminated text.
    #[error("a dependency or provider needs a kind byte and text")]
    BadRelation,
    /// A delta record's window log is outside what zstd allows.
    #[error("window log {log} is outside 10..={max}")]
    DeltaWindowLog {
        /// The declared log.
        log: u8,
        /// The largest allowed.
        max: u8,
    },
    /// A delta record declares more bytes than a reader will rebuild, or a longer header
    /// than a reader accepts.
    #[error("declares {size} bytes, more than the limit of {limit}")]
    DeltaTooLarge {
        /// The declared size (bases plus targets, or the header length).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A delta record names no target, or more targets or bases than a reader accepts.
    #[error(
        "names {count} targets or bases (a record has 1..={max} targets and at most {max} bases)"
    )]
    DeltaCount {
        /// The declared count.
        count: u64,
        /// The largest allowed.
        max: u64,
    },
    /// A delta record names a target by a position the index does not have.
    #[error("names target position {position}, but the index has {entries} entries")]
    DeltaPosition {
        /// The declared position.
        position: u64,
        /// The index's length.
        entries: u64,
    },
    /// A delta record names a base by a position the old package's index does not have:
    /// the delta was made from another package than the one it is applied against.
    #[error("names base position {position}, but the old package's index has {entries} entries")]
    DeltaBasePosition {
        /// The declared position.
        position: u64,
        /// The old index's length.
        entries: u64,
    },
    /// A varint that is longer than 10 bytes, overflows 64 bits, or is not in its
    /// shortest form.
    #[error("a varint is malformed (too long, too large, or not in its shortest form)")]
    DeltaVarint,
    /// A delta record header holds bytes after its frame length.
    #[error("the record header holds bytes after its frame length")]
    DeltaReserved,
}
