//! The stone format, version 1: read, verify and write `.stone` archives.
//!
//! This crate owns the bytes of DESIGN.md §3 and nothing else. It never touches the file
//! system: readers take any [`std::io::Read`], writers any `Write + Seek`, and the caller
//! decides where bytes come from and go. That keeps every other crate honest about its own
//! side effects, and lets the fuzzer drive the reader from memory.
//!
//! A stone is an archive header followed by payloads:
//!
//! ```text
//! [archive header 32B] ([payload header 32B][body: stored_size bytes])*
//!                       meta, layout, index ... content (the "megablob") last
//! ```
//!
//! The reader is built for hostile input. Every declared size is checked against a limit
//! before anything is allocated, zstd output is bounded by the declared plain size, every
//! payload checksum is verified, and every asset is hashed as it streams past. Nothing here
//! panics on archive data; `unwrap` is denied outside tests.
//!
//! Map:
//! - [`header`]: the archive header and its file type.
//! - [`payload`]: payload headers, kinds and compression.
//! - [`meta`], [`layout`], [`index`]: one module per record kind, each with `decode`/`encode`.
//! - [`delta`]: delta records: their bytes, applying them, and making them.
//! - [`path`]: [`RelPath`], the only way a layout path enters the program.
//! - [`read`]: [`Reader`], which yields the metadata and then streams the content as assets.
//! - [`write`]: [`Writer`], which emits payloads in upstream's order.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(missing_docs)]

pub mod delta;
pub mod error;
pub mod hash;
pub mod header;
pub mod index;
pub mod layout;
pub mod meta;
pub mod path;
pub mod payload;
pub mod read;
mod record;
pub mod write;

pub use delta::{ApplyError, DeltaRecord, Method, Preamble, RecordHeader};
pub use error::{DecodeError, RecordError};
pub use hash::{AssetHash, AssetHasher, PackageId};
pub use header::{ArchiveHeader, FileType};
pub use index::IndexEntry;
pub use layout::{EntryKind, LayoutEntry};
pub use meta::{Meta, MetaRecord, MetaTag, MetaValue, Relation, RelationKind};
pub use path::{PathError, RelPath};
pub use payload::{Compression, PayloadHeader, PayloadKind};
pub use read::{Asset, Content, Deltas, Reader, Stone, read_full};
pub use write::{ContentSource, DEFAULT_LEVEL, Writer, WriterOptions, layout_index};
