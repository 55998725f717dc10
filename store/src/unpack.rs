//! The unpacking pipeline: the calling thread decompresses a stone's content and verifies
//! each asset, while writer threads turn verified assets into files (DESIGN.md §6.1).
//!
//! The content is one zstd stream, so only one thread can decompress it; what other
//! cores can do is create, write and publish the files, which costs about as much again.
//! The decompressing thread, the *producer*, reads each missing asset straight into a
//! buffer of [`BUFFER`] bytes: small assets are packed together, up to [`BATCH_ASSETS`]
//! per buffer, into one [`Job`]; an asset larger than a buffer gets its draft at once and
//! is sent in parts, which writers put in place with positioned writes, in any order.
//!
//! Rules:
//! - An asset enters a job only after the reader verified its xxh3-128. A large asset is
//!   published only once its digest was verified *and* every part written, by whichever
//!   thread finishes last ([`queue::Large`] counts them).
//! - At most a few buffers per writer exist, which bounds the memory in flight. A producer
//!   that finds none free runs the next job itself instead of waiting, so on a small
//!   machine no core idles: when writing is the slower half, both threads write.
//! - Assets from [`direct::DIRECT_MIN`] (64 KiB) up bypass the page cache (see
//!   [`direct`]): buffers start on a page, a large asset's parts sit at multiples of
//!   [`BUFFER`], and a whole asset that size is placed on a block with room to pad it to
//!   one; the draft is cut back to the asset's length before it is published. On the 2-core
//!   VM a fresh install of 200 Debian packages spent 71% of its samples copying 2.1 GB of
//!   assets into new page-cache pages; 88% of those bytes are in assets this size.
//! - A write error stops everyone, and the first one is returned. A bad stone stops the
//!   producer, but jobs already queued hold verified assets and are still written, as the
//!   one-thread unpack placed every asset before the bad byte. Drafts that are never
//!   published leave nothing: anonymous ones vanish on close, named ones are removed on
//!   drop.

mod queue;

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::Arc;

use mossfs_format::{Asset, AssetHash, Content, DecodeError};

use crate::asset::AssetMeta;
use crate::direct::{self, BUFFER, DIRECT_ALIGN};
use crate::stats::IngestStats;
use crate::{Result, Store, StoreError};
use queue::{CloseOnDrop, Job, Large, Piece, Queue, Stop, Target};

/// At most this many assets per batch, so that many tiny files still spread over writers.
const BATCH_ASSETS: usize = 64;

/// What one ingest unpacks: the assets the store lacks and the metadata each gets.
pub(crate) struct Plan<'a> {
    pub missing: HashSet<AssetHash>,
    pub metas: &'a HashMap<AssetHash, AssetMeta>,
    /// Writer threads besides the caller; 0 writes everything on the calling thread.
    pub writers: usize,
}

/// Unpacks every asset of `plan.missing` from `content`, then finishes the content (its
/// size and checksum). Returns what it wrote; assets that a concurrent writer placed
/// first count as present.
pub(crate) fn unpack<R: Read>(
    store: &Store,
    content: Content<'_, R>,
    plan: Plan<'_>,
    stone_error: &impl Fn(DecodeError) -> StoreError,
) -> Result<IngestStats> {
    let queue = Queue::new(store, plan.writers);
    let produced = std::thread::scope(|scope| {
        for _ in 0..plan.writers {
            scope.spawn(|| {
                let _close = CloseOnDrop(&queue);
                queue.serve();
            });
        }
        let produced = {
            let _close = CloseOnDrop(&queue);
            produce(&queue, content, plan, stone_error)
        };
        // Help with what is left; the writers end once the queue is empty.
        queue.serve();
        produced
    });
    let written = queue.finish();
    match produced {
        Err(Stop::Error(e)) => Err(e),
        Err(Stop::WriterFailed) | Ok(()) => written,
    }
}

/// An open batch of small assets: its job and how much of its buffer is used.
struct Batch<'s> {
    job: Job<'s>,
    filled: usize,
}

/// The producer: reads, verifies and hands out every missing asset, then checks the
/// rest of the content.
fn produce<'s, R: Read>(
    queue: &Queue<'s>,
    mut content: Content<'_, R>,
    plan: Plan<'_>,
    stone_error: &impl Fn(DecodeError) -> StoreError,
) -> Result<(), Stop> {
    let Plan {
        mut missing, metas, ..
    } = plan;
    let mut batch: Option<Batch<'s>> = None;
    let mut produce_all = || -> Result<(), Stop> {
        while let Some(mut asset) = content.next_asset().map_err(stone_error)? {
            let entry = asset.entry();
            let hash = entry.digest;
            // Present already, or listed twice and handled the first time.
            if !missing.remove(&hash) {
                continue;
            }
            let meta = metas.get(&hash).copied().unwrap_or(AssetMeta::DEFAULT);
            let target = Target {
                hash,
                perm: meta.perm,
                owner: queue.store.owner(hash, meta)?,
            };
            let len = entry.len();
            if len > BUFFER as u64 {
                produce_large(queue, asset, target, len, stone_error)?;
                continue;
            }
            let len = len as usize;
            let direct = direct::bypasses(queue.store.fs_kind(), len as u64);
            // A direct write starts on a block and is padded to one, which the batch
            // must leave room for.
            let place = |filled: usize| {
                if direct {
                    let start = filled.next_multiple_of(DIRECT_ALIGN);
                    (start, start + len.next_multiple_of(DIRECT_ALIGN))
                } else {
                    (filled, filled + len)
                }
            };
            let open = match batch.take() {
                Some(open)
                    if place(open.filled).1 <= BUFFER && open.job.pieces.len() < BATCH_ASSETS =>
                {
                    open
                }
                full => {
                    if let Some(full) = full {
                        queue.submit(full.job)?;
                    }
                    Batch {
                        job: Job {
                            buf: queue.buffer()?,
                            pieces: Vec::with_capacity(BATCH_ASSETS),
                        },
                        filled: 0,
                    }
                }
            };
            let open = batch.insert(open);
            let (start, end) = place(open.filled);
            let range = start..start + len;
            read_exact(&mut asset, &mut open.job.buf[range.clone()]).map_err(stone_error)?;
            asset.finish().map_err(stone_error)?;
            open.filled = end;
            open.job.pieces.push(Piece::Whole {
                target,
                range,
                direct,
            });
        }
        Ok(())
    };
    let result = produce_all();
    // Whatever is batched was verified: write it, even when the stone went bad later.
    if let Some(open) = batch {
        if open.job.pieces.is_empty() {
            queue.recycle(open.job.buf);
        } else {
            queue.submit(open.job)?;
        }
    }
    result?;
    content.finish().map_err(stone_error)?;
    Ok(())
}

/// Streams one asset larger than a buffer to a draft, in parts, and counts off the
/// producer's share of it once its digest is verified.
fn produce_large<R: Read>(
    queue: &Queue<'_>,
    mut asset: Asset<'_, '_, R>,
    target: Target,
    len: u64,
    stone_error: &impl Fn(DecodeError) -> StoreError,
) -> Result<(), Stop> {
    let draft = queue.store.new_draft(target.perm, target.owner)?;
    if direct::bypasses(queue.store.fs_kind(), len) {
        direct::bypass_cache(draft.file());
    }
    let large = Arc::new(Large::new(target, len, draft));
    let mut offset = 0;
    loop {
        let mut buf = queue.buffer()?;
        let n = match read_exact(&mut asset, &mut buf) {
            Ok(n) => n,
            Err(e) => {
                queue.recycle(buf);
                return Err(stone_error(e).into());
            }
        };
        if n == 0 {
            queue.recycle(buf);
            break;
        }
        large.add_part();
        let part = Piece::Part {
            large: Arc::clone(&large),
            offset,
            range: 0..n,
        };
        queue.submit(Job {
            buf,
            pieces: vec![part],
        })?;
        offset += n as u64;
    }
    asset.finish().map_err(stone_error)?;
    queue.done(&large).map_err(|e| queue.fail(e))
}

/// Reads until `buf` is full or the asset ends; returns how much was read.
fn read_exact<R: Read>(asset: &mut Asset<'_, '_, R>, buf: &mut [u8]) -> Result<usize, DecodeError> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = asset.read_checked(&mut buf[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}
