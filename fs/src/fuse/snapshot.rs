//! The database snapshots a mount serves from: a few read transactions, one per thread.
//!
//! A mount reads directory objects straight from LMDB's memory map for its whole life, so
//! it must hold a read transaction that long: the pages of its trees then stay put even if
//! the state is removed and garbage collected meanwhile. An LMDB read transaction may move
//! between threads but not be used by two at once, and one shared behind a lock would
//! serialise every `lookup`. So the mount opens its transactions up front (one for the
//! serving thread and one for the rare others, such as unpacks naming a path in a message)
//! and each thread keeps to the slot it first got; a slot's lock is only contended when two
//! threads land on the same one. Every transaction is checked to see the same root for the state, so
//! they all serve the same tree (trees are content-addressed: same hash, same bytes).

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use mossfs_db::{Db, DbError, Query, ReadTxn, State, StateId};
use parking_lot::Mutex;

use super::error::MountError;

pub(crate) struct Snapshots {
    slots: Box<[Mutex<ReadTxn>]>,
}

impl Snapshots {
    /// Opens `count` transactions that all see `state`, and returns the state as read.
    pub(crate) fn open(
        db: &Db,
        state: StateId,
        count: usize,
    ) -> Result<(Snapshots, State), MountError> {
        let db_error = |source: DbError| match source {
            DbError::NoState(state) => MountError::NoState { state },
            source => MountError::Database { state, source },
        };
        let first = db.read().map_err(db_error)?;
        let record = first.state(state).map_err(db_error)?;
        let mut slots = vec![Mutex::new(first)];
        while slots.len() < count.max(1) {
            let txn = db.read().map_err(db_error)?;
            if txn.state(state).map_err(db_error)?.root != record.root {
                return Err(MountError::StateChanged { state });
            }
            slots.push(Mutex::new(txn));
        }
        let snapshots = Snapshots {
            slots: slots.into_boxed_slice(),
        };
        Ok((snapshots, record))
    }

    /// Runs `f` with this thread's transaction.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&ReadTxn) -> R) -> R {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static SLOT: Cell<Option<usize>> = const { Cell::new(None) };
        }
        let slot = SLOT.with(|slot| match slot.get() {
            Some(index) => index,
            None => {
                let index = NEXT.fetch_add(1, Ordering::Relaxed);
                slot.set(Some(index));
                index
            }
        });
        let txn = self.slots[slot % self.slots.len()].lock();
        f(&txn)
    }
}
