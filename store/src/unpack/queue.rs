//! The writers' side of the unpacking pipeline: the queue of jobs the producer fills,
//! the bounded pool of buffers, and turning each verified asset into a published file.
//!
//! Everything here runs on any thread, the producer's included: a producer that runs out
//! of buffers takes the next job itself.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use mossfs_format::AssetHash;

use crate::direct::{self, Buffer};
use crate::draft::Draft;
use crate::stats::IngestStats;
use crate::temp::Placed;
use crate::{Result, Store, StoreError};

/// Buffers in flight per writer thread, besides the one being filled: what bounds the
/// pipeline's memory.
const BUFFERS_PER_WRITER: usize = 4;

/// The permission bits and owner a new asset file gets.
#[derive(Clone, Copy)]
pub(super) struct Target {
    pub hash: AssetHash,
    pub perm: u32,
    pub owner: Option<(u32, u32)>,
}

/// A large asset being written in parts, in any order, by any thread.
pub(super) struct Large<'s> {
    target: Target,
    len: u64,
    /// Taken out when the asset is published.
    draft: Mutex<Option<Draft<'s>>>,
    /// Parts not yet written, plus one until the producer has verified the whole asset.
    pending: AtomicUsize,
}

impl<'s> Large<'s> {
    pub(super) fn new(target: Target, len: u64, draft: Draft<'s>) -> Large<'s> {
        Large {
            target,
            len,
            draft: Mutex::new(Some(draft)),
            pending: AtomicUsize::new(1),
        }
    }

    /// Counts one more part to be written before the asset can be published.
    pub(super) fn add_part(&self) {
        self.pending.fetch_add(1, Ordering::AcqRel);
    }
}

pub(super) enum Piece<'s> {
    /// A whole asset, verified.
    Whole {
        target: Target,
        range: Range<usize>,
        /// Written with `O_DIRECT`: `range` starts on a block, and the buffer has room
        /// after it to pad it to one.
        direct: bool,
    },
    /// Bytes of a large asset, to be written at `offset`.
    Part {
        large: Arc<Large<'s>>,
        offset: u64,
        range: Range<usize>,
    },
}

/// A buffer and what to write from it.
pub(super) struct Job<'s> {
    pub buf: Buffer,
    pub pieces: Vec<Piece<'s>>,
}

/// Why the producer stopped early.
pub(super) enum Stop {
    /// The stone is bad (or an owner cannot be set): report this.
    Error(StoreError),
    /// A writer failed (its error is kept in the queue) or panicked.
    WriterFailed,
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Stop {
        Stop::Error(e)
    }
}

struct State<'s> {
    jobs: VecDeque<Job<'s>>,
    free: Vec<Buffer>,
    buffers: usize,
    /// No more jobs will come.
    closed: bool,
    /// The first write error; once set, everyone stops.
    failed: Option<StoreError>,
    /// A thread panicked; everyone stops, and the scope re-raises the panic.
    aborted: bool,
}

impl State<'_> {
    fn stopped(&self) -> bool {
        self.failed.is_some() || self.aborted
    }
}

/// What the producer and the writers share.
pub(super) struct Queue<'s> {
    pub store: &'s Store,
    state: Mutex<State<'s>>,
    changed: Condvar,
    max_buffers: usize,
    /// No writer threads: jobs run on the producer as they are submitted.
    inline: bool,
    written: AtomicU64,
    present: AtomicU64,
    bytes_written: AtomicU64,
}

/// Closes the queue when the thread that holds it is done, even by panicking, so that
/// nobody waits forever for jobs or buffers that will not come.
pub(super) struct CloseOnDrop<'q, 's>(pub &'q Queue<'s>);

impl Drop for CloseOnDrop<'_, '_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.closed = true;
        state.aborted |= std::thread::panicking();
        drop(state);
        self.0.changed.notify_all();
    }
}

impl<'s> Queue<'s> {
    pub(super) fn new(store: &'s Store, writers: usize) -> Queue<'s> {
        Queue {
            store,
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                free: Vec::new(),
                buffers: 0,
                closed: false,
                failed: None,
                aborted: false,
            }),
            changed: Condvar::new(),
            max_buffers: 1 + BUFFERS_PER_WRITER * writers.max(1),
            inline: writers == 0,
            written: AtomicU64::new(0),
            present: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<'s>> {
        // Nothing panics while holding the lock; a poisoned one is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'g>(&self, state: MutexGuard<'g, State<'s>>) -> MutexGuard<'g, State<'s>> {
        self.changed
            .wait(state)
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A free buffer. When all are in use, runs a queued job instead of waiting.
    pub(super) fn buffer(&self) -> Result<Buffer, Stop> {
        let mut state = self.lock();
        loop {
            if state.stopped() {
                return Err(Stop::WriterFailed);
            }
            if let Some(buf) = state.free.pop() {
                return Ok(buf);
            }
            if state.buffers < self.max_buffers {
                state.buffers += 1;
                drop(state);
                return Ok(Buffer::new());
            }
            if let Some(job) = state.jobs.pop_front() {
                drop(state);
                self.run(job);
                state = self.lock();
                continue;
            }
            state = self.wait(state);
        }
    }

    /// Gives back a buffer that carried no job.
    pub(super) fn recycle(&self, buf: Buffer) {
        self.lock().free.push(buf);
        self.changed.notify_all();
    }

    /// Queues a job for the writers, or with none runs it here and now.
    pub(super) fn submit(&self, job: Job<'s>) -> Result<(), Stop> {
        if self.inline {
            self.run(job);
            if self.lock().stopped() {
                return Err(Stop::WriterFailed);
            }
            return Ok(());
        }
        let mut state = self.lock();
        if state.stopped() {
            return Err(Stop::WriterFailed);
        }
        state.jobs.push_back(job);
        drop(state);
        // Only writers wait for jobs; the producer, which might wait for a buffer, is here.
        self.changed.notify_one();
        Ok(())
    }

    /// Records a write error met on the producer's side.
    pub(super) fn fail(&self, e: StoreError) -> Stop {
        self.lock().failed.get_or_insert(e);
        self.changed.notify_all();
        Stop::WriterFailed
    }

    /// Runs jobs until the queue is closed and empty, or everyone stops.
    pub(super) fn serve(&self) {
        let mut state = self.lock();
        loop {
            if state.stopped() {
                return;
            }
            if let Some(job) = state.jobs.pop_front() {
                drop(state);
                self.run(job);
                state = self.lock();
                continue;
            }
            if state.closed {
                return;
            }
            state = self.wait(state);
        }
    }

    /// The first write error, or what was written.
    pub(super) fn finish(self) -> Result<IngestStats> {
        let state = self
            .state
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = state.failed {
            return Err(e);
        }
        Ok(IngestStats {
            written: self.written.into_inner(),
            present: self.present.into_inner(),
            bytes_written: self.bytes_written.into_inner(),
        })
    }

    /// Writes one job's pieces, then gives its buffer back, or records the error.
    fn run(&self, job: Job<'s>) {
        let Job { mut buf, pieces } = job;
        let mut result = Ok(());
        for piece in pieces {
            result = match piece {
                Piece::Whole {
                    target,
                    range,
                    direct,
                } => self.write_whole(target, &mut buf[range.start..], range.len(), direct),
                Piece::Part {
                    large,
                    offset,
                    range,
                } => self.write_part(&large, offset, &mut buf[range.start..], range.len()),
            };
            if result.is_err() {
                break;
            }
        }
        let mut state = self.lock();
        match result {
            Ok(()) => state.free.push(buf),
            Err(e) => {
                state.failed.get_or_insert(e);
            }
        }
        drop(state);
        self.changed.notify_all();
    }

    /// Writes the asset in the first `len` bytes of `buf`; with `direct`, the rest of
    /// `buf` is room for the padding of a direct write.
    fn write_whole(&self, target: Target, buf: &mut [u8], len: usize, direct: bool) -> Result<()> {
        let store = self.store;
        let draft = store.new_draft(target.perm, target.owner)?;
        let error = |source| StoreError::WriteAsset {
            hash: target.hash,
            path: draft.path(store),
            source,
        };
        if direct {
            direct::bypass_cache(draft.file());
            direct::write_block_at(draft.file(), buf, len, 0)
                .and_then(|()| draft.file().set_len(len as u64))
                .map_err(error)?;
        } else if len > 0 {
            draft.write_all(&buf[..len]).map_err(error)?;
        }
        draft
            .set_metadata(target.perm, target.owner)
            .map_err(error)?;
        self.publish(draft, target.hash, len as u64)
    }

    /// Writes the first `len` bytes of `buf` at `offset`; the rest of `buf` is room for
    /// the padding of a direct write.
    fn write_part(&self, large: &Large<'s>, offset: u64, buf: &mut [u8], len: usize) -> Result<()> {
        {
            let draft = large.draft.lock().unwrap_or_else(PoisonError::into_inner);
            let draft = draft
                .as_ref()
                .expect("a large asset is published only after all its parts");
            direct::write_block_at(draft.file(), buf, len, offset).map_err(|source| {
                StoreError::WriteAsset {
                    hash: large.target.hash,
                    path: draft.path(self.store),
                    source,
                }
            })?;
        }
        self.done(large)
    }

    /// Counts off one share of a large asset (a written part, or the producer's
    /// verification); whoever counts off the last one publishes it.
    pub(super) fn done(&self, large: &Large<'s>) -> Result<()> {
        if large.pending.fetch_sub(1, Ordering::AcqRel) != 1 {
            return Ok(());
        }
        let draft = large
            .draft
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .expect("published once, by the last share");
        let Target { hash, perm, owner } = large.target;
        // A large asset (over one buffer) is worth a head start on its writeback, which
        // then overlaps the rest of the unpack instead of the sync at the end of it.
        crate::durable::start_writeback(draft.file(), self.store.fs_kind());
        // The last part was padded to a whole block.
        draft
            .file()
            .set_len(large.len)
            .and_then(|()| draft.set_metadata(perm, owner))
            .map_err(|source| StoreError::WriteAsset {
                hash,
                path: draft.path(self.store),
                source,
            })?;
        self.publish(draft, hash, large.len)
    }

    fn publish(&self, draft: Draft<'_>, hash: AssetHash, len: u64) -> Result<()> {
        let placed = draft
            .publish(self.store, hash)
            .map_err(|source| StoreError::WriteAsset {
                hash,
                path: self.store.asset_path(hash),
                source,
            })?;
        match placed {
            Placed::New => {
                self.written.fetch_add(1, Ordering::Relaxed);
                self.bytes_written.fetch_add(len, Ordering::Relaxed);
            }
            Placed::AlreadyThere => {
                self.present.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}
