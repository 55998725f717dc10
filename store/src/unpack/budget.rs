//! The unpack pipeline's memory budget, which ingest also uses to size small stones: a
//! leaf, so that `ingest` → `unpack` → `unpack::queue` import one way.

/// Bytes per buffer: a batch of small assets, or one part of a large asset.
pub(crate) const BUFFER: usize = 1 << 20;
/// Buffers in flight per writer thread, besides the one being filled.
pub(crate) const BUFFERS_PER_WRITER: usize = 4;
