//! Stones that lie. Each test starts from a valid stone made by the real `Writer` (or
//! hand-assembles the part the writer cannot express), breaks exactly one thing, and asserts
//! the exact `DecodeError` the reader gives, with its key fields.
//!
//! The reader must refuse every one of them without panicking, without allocating from a
//! declared size and without decompressing more than the header declared (STYLE.md §11).
//!
//! Map:
//! - [`forge`]: the honest stones and the raw parts tests lie about.
//! - [`framing`]: the archive header and truncation.
//! - [`sizes`]: stored and plain sizes, checksums, digests.
//! - [`payloads`]: unknown kinds and compressions, misplaced and repeated payloads.
//! - [`records`]: record counts and the meta, layout and index decoders.
//! - [`bombs`]: zstd bombs in metadata and content.
//! - [`structure`]: packages missing a payload they need, or with assets no file uses.
//! - [`index`]: repository indexes and the fields upstream requires.

// A test crate root looks for modules beside itself; these live in `malformed/`.
#[path = "malformed/bombs.rs"]
mod bombs;
#[path = "malformed/forge.rs"]
mod forge;
#[path = "malformed/framing.rs"]
mod framing;
#[path = "malformed/index.rs"]
mod index;
#[path = "malformed/payloads.rs"]
mod payloads;
#[path = "malformed/records.rs"]
mod records;
#[path = "malformed/sizes.rs"]
mod sizes;
#[path = "malformed/structure.rs"]
mod structure;
