//! Unpacking the content of several cached stones into the store, in parallel, with a
//! progress bar of the bytes (and their rate) over one line per package in flight.

use mossfs_db::Query;
use mossfs_format::PackageId;
use rayon::prelude::*;

use super::error::Result;
use super::root::Root;
use crate::progress::{Bar, Unit};

/// Ingests `pending` into the store as `Store::ingest_many` does (sorted, deduplicated, one
/// package per core, stopping at the first error), drawing progress when it is shown.
pub fn unpack(root: &Root, pending: &[PackageId]) -> Result<()> {
    let mut ids = pending.to_vec();
    ids.sort();
    ids.dedup();
    // What each package brings, by name and content bytes, for the bars.
    let snapshot = root.db.read()?;
    let mut work = Vec::with_capacity(ids.len());
    for id in &ids {
        let bytes: u64 = snapshot.index(id)?.iter().map(|e| e.len()).sum();
        let name = snapshot
            .package(id)?
            .map_or_else(|| id.to_string(), |r| r.meta.full_name());
        work.push((*id, name, bytes));
    }
    drop(snapshot);
    let total = Bar::new("unpack", work.iter().map(|w| w.2).sum(), Unit::Bytes);
    work.par_iter().try_for_each(|(id, name, bytes)| {
        let _line = Bar::spinner("", name.clone());
        root.store.ingest(id)?;
        total.inc(*bytes);
        Ok(())
    })
}
