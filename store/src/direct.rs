//! Writes that bypass the page cache (`O_DIRECT`), for the large files the store writes
//! once and does not read back soon: assets from [`DIRECT_MIN`] up (`unpack`) and the
//! copies of stones given on the command line (`cache`), which the ingest then reads once,
//! past the cache as well ([`BlockReader`]).
//!
//! Their bytes go from our buffer to the device instead of being copied into fresh
//! page-cache pages, which the commit's sync would then wait for anyway and which push out
//! pages other programs use. On the 2-core VM a fresh install of 200 Debian packages spent
//! most of its time filling such pages, which this VM backs with memory it must first get
//! back from its host (`dd` of 1.5 GB: 7.7 to 12 s buffered, 1.0 s direct).
//!
//! Where the file system refuses (`fcntl` failing, or a write answering `EINVAL`), writes
//! go through the page cache as before; where nothing survives a reboot there is no device
//! to bypass the cache for.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use rustix::fs::OFlags;
use rustix::io::{Errno, ReadWriteFlags};

use crate::FsKind;

/// Bytes per buffer: in the unpack, a batch of small assets or one part of a large asset;
/// one block of a stone copied or read.
pub(crate) const BUFFER: usize = 1 << 20;

/// Files from this size up are written with `O_DIRECT`. Below it, a direct write's wait
/// for the device costs more than the copy into the page cache it saves.
pub(crate) const DIRECT_MIN: usize = 64 << 10;

/// What `O_DIRECT` needs lined up, in memory and in the file, on every device we expect:
/// a page, which is also every common logical block size.
pub(crate) const DIRECT_ALIGN: usize = 4096;

/// Whether a file of `len` bytes on a file system of `kind` is written and read with
/// `O_DIRECT`.
pub(crate) fn bypasses(kind: FsKind, len: u64) -> bool {
    len >= DIRECT_MIN as u64 && kind != FsKind::Volatile
}

/// Whether the last page of `file`, `len` bytes long, is in the page cache: a sign that
/// the whole file is. A stone written through the cache (a download) still has its pages
/// there; one the store copied with `O_DIRECT` has none, except at its head, which is
/// read for the plan. The read asks the kernel not to wait for the device (`RWF_NOWAIT`),
/// and at the file's end its readahead has nothing more to fetch. Where the kernel cannot
/// say (a pipe, a file system without `RWF_NOWAIT`), the answer is yes: read through the
/// cache, as for any file.
pub(crate) fn is_cached(file: &File, len: u64) -> bool {
    if len == 0 {
        return true;
    }
    let last_page = (len - 1) / DIRECT_ALIGN as u64 * DIRECT_ALIGN as u64;
    let mut byte = [0u8; 1];
    !matches!(
        rustix::io::preadv2(
            file,
            &mut [io::IoSliceMut::new(&mut byte)],
            last_page,
            ReadWriteFlags::NOWAIT,
        ),
        Err(Errno::AGAIN)
    )
}

/// Makes `file`'s writes bypass the page cache. A file system that refuses keeps them
/// buffered, which is only slower.
pub(crate) fn bypass_cache(file: &File) {
    if let Ok(flags) = rustix::fs::fcntl_getfl(file) {
        let _ = rustix::fs::fcntl_setfl(file, flags | OFlags::DIRECT);
    }
}

/// Makes `file`'s reads and writes go through the page cache again, once its direct
/// writes are done and it is to be read in any size.
pub(crate) fn use_cache(file: &File) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(file)?;
    if flags.contains(OFlags::DIRECT) {
        rustix::fs::fcntl_setfl(file, flags - OFlags::DIRECT)?;
    }
    Ok(())
}

/// Writes `buf[..len]` at `offset`, padded with zeros up to a whole [`DIRECT_ALIGN`]
/// block from `buf`'s spare room, as `O_DIRECT` needs: `offset` and `buf`'s address must
/// be multiples of it. The caller cuts the file back to its length before anyone may see
/// it. When the kernel refuses the direct write (`EINVAL`: an alignment it does not take),
/// the file goes back to the page cache and the write is retried.
pub(crate) fn write_block_at(
    file: &File,
    buf: &mut [u8],
    len: usize,
    offset: u64,
) -> io::Result<()> {
    let padded = len.next_multiple_of(DIRECT_ALIGN).min(buf.len());
    buf[len..padded].fill(0);
    match file.write_all_at(&buf[..padded], offset) {
        Err(e) if e.raw_os_error() == Some(Errno::INVAL.raw_os_error()) => {
            let flags = rustix::fs::fcntl_getfl(file)?;
            if !flags.contains(OFlags::DIRECT) {
                return Err(e);
            }
            rustix::fs::fcntl_setfl(file, flags - OFlags::DIRECT)?;
            file.write_all_at(&buf[..padded], offset)
        }
        other => other,
    }
}

/// [`BUFFER`] bytes that start on a [`DIRECT_ALIGN`] boundary, so that a block read or
/// written at an offset that is a multiple of [`BUFFER`] (a large asset's parts, a
/// stone's blocks) can go to or come from the device straight from it.
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

/// Reads a file in blocks of [`BUFFER`] bytes, past the page cache when asked: a cached
/// stone the store wrote with `O_DIRECT` is not in the page cache ([`is_cached`]), and
/// reading it once through the cache would fill as many fresh pages as the copy saved.
/// Serves any size of read, as a `BufReader` does. It reads from the file's position
/// rather than at offsets, so that anything `read` works on (a pipe too) can be read.
pub(crate) struct BlockReader {
    file: File,
    buf: Buffer,
    /// What of `buf` is read and not handed out yet.
    start: usize,
    end: usize,
}

impl BlockReader {
    /// Reads `file` from its start; with `direct`, past the page cache.
    pub(crate) fn new(file: File, direct: bool) -> BlockReader {
        if direct {
            bypass_cache(&file);
        }
        BlockReader {
            file,
            buf: Buffer::new(),
            start: 0,
            end: 0,
        }
    }

    /// Reads the next block. When the kernel refuses a direct read (`EINVAL`: an
    /// alignment it does not take, or a position left unaligned by a short read), the
    /// file goes back to the page cache and the read is retried.
    fn next_block(&mut self) -> io::Result<usize> {
        loop {
            match (&self.file).read(&mut self.buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(Errno::INVAL.raw_os_error()) => {
                    let flags = rustix::fs::fcntl_getfl(&self.file)?;
                    if !flags.contains(OFlags::DIRECT) {
                        return Err(e);
                    }
                    rustix::fs::fcntl_setfl(&self.file, flags - OFlags::DIRECT)?;
                }
                other => return other,
            }
        }
    }
}

impl io::Read for BlockReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.start == self.end {
            let n = self.next_block()?;
            self.start = 0;
            self.end = n;
        }
        let n = out.len().min(self.end - self.start);
        out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::OwnedFd;

    use super::*;

    /// Reads of every size, past the cache and through it, give back the file: across
    /// block edges and at its unaligned end.
    #[test]
    fn a_block_reader_serves_reads_of_any_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        let bytes: Vec<u8> = (0..2 * BUFFER + 4099)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        std::fs::write(&path, &bytes).unwrap();
        for direct in [true, false] {
            let mut reader = BlockReader::new(File::open(&path).unwrap(), direct);
            let mut read = Vec::new();
            for size in [1, 7, 4096, BUFFER - 4104, BUFFER + 3, 5]
                .into_iter()
                .cycle()
            {
                let mut chunk = vec![0u8; size];
                let n = reader.read(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                read.extend_from_slice(&chunk[..n]);
            }
            assert!(read == bytes, "direct: {direct}");
        }
    }

    /// A pipe, which has no offsets and gives short reads, is read to its end as well:
    /// the mount may unpack from a stone that is still arriving. It counts as cached, so
    /// it is read as any file is, never with `O_DIRECT` (on a pipe, packet mode).
    #[test]
    fn a_block_reader_reads_a_pipe() {
        let (reader, mut writer) = std::io::pipe().unwrap();
        let reader = File::from(OwnedFd::from(reader));
        assert!(is_cached(&reader, BUFFER as u64));
        let bytes: Vec<u8> = (0..BUFFER + 12_345).map(|i| (i % 253) as u8).collect();
        let sent = bytes.clone();
        let feeder = std::thread::spawn(move || {
            for chunk in sent.chunks(1000) {
                writer.write_all(chunk).unwrap();
            }
        });
        let mut read = Vec::new();
        BlockReader::new(reader, false)
            .read_to_end(&mut read)
            .unwrap();
        feeder.join().unwrap();
        assert!(read == bytes);
    }

    /// A file written through the page cache reads as cached. One written past it does
    /// not, even after its head was read through the cache, as the plan reads a stone's.
    #[test]
    fn only_a_file_written_past_the_cache_reads_as_uncached() {
        let dir = tempfile::tempdir().unwrap();
        let len = 3 * BUFFER + 100;
        let through = dir.path().join("through");
        std::fs::write(&through, vec![7u8; len]).unwrap();
        assert!(is_cached(&File::open(&through).unwrap(), len as u64));

        let past = dir.path().join("past");
        let file = File::create_new(&past).unwrap();
        bypass_cache(&file);
        let mut buf = Buffer::new();
        let mut offset = 0;
        while offset < len {
            let n = BUFFER.min(len - offset);
            buf[..n].fill(9);
            write_block_at(&file, &mut buf, n, offset as u64).unwrap();
            offset += n;
        }
        file.set_len(len as u64).unwrap();
        use_cache(&file).unwrap();
        let mut head = [0u8; 4096];
        File::open(&past).unwrap().read_exact(&mut head).unwrap();
        assert_eq!(head, [9u8; 4096]);
        if FsKind::of(&file) == FsKind::Volatile {
            println!(
                "{}: tmpfs keeps every page in the cache",
                dir.path().display()
            );
            return;
        }
        assert!(!is_cached(&File::open(&past).unwrap(), len as u64));
    }
}
