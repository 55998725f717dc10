//! The unpack pipeline's memory budget, which ingest also uses to size small stones: a
//! leaf, so that `ingest` → `unpack` → `unpack::queue` import one way.

/// Bytes per buffer: a batch of small assets, or one part of a large asset.
pub(crate) const BUFFER: usize = 1 << 20;
/// Buffers in flight per writer thread, besides the one being filled.
pub(crate) const BUFFERS_PER_WRITER: usize = 4;

/// Assets from this size up are written with `O_DIRECT`, bypassing the page cache (see
/// `Draft::bypass_cache`). Below it, a direct write's wait for the device costs more than
/// the copy into the page cache it saves.
pub(crate) const DIRECT_MIN: usize = 64 << 10;

/// What `O_DIRECT` needs lined up, in memory and in the file, on every device we expect:
/// a page, which is also every common logical block size.
pub(crate) const DIRECT_ALIGN: usize = 4096;

/// One of the pipeline's buffers: [`BUFFER`] bytes that start on a [`DIRECT_ALIGN`]
/// boundary, so that a large asset's parts, which fill whole buffers from offsets that
/// are multiples of [`BUFFER`], can be written with `O_DIRECT` straight from it.
pub(crate) struct Buffer {
    bytes: Vec<u8>,
    start: usize,
}

impl Buffer {
    pub(crate) fn new() -> Buffer {
        let bytes = vec![0; BUFFER + DIRECT_ALIGN];
        // Never more than the slack; if the address could not be aligned the window is
        // merely unaligned, and a direct write of it falls back to the page cache.
        let start = bytes.as_ptr().align_offset(DIRECT_ALIGN).min(DIRECT_ALIGN);
        Buffer { bytes, start }
    }
}

impl std::ops::Deref for Buffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes[self.start..self.start + BUFFER]
    }
}

impl std::ops::DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..self.start + BUFFER]
    }
}
