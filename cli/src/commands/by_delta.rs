//! `verify --repair` of a package that came by delta (DESIGN.md §11): its full stone,
//! fetched from the repository that still offers it. The choice of a delta itself is the
//! engine's ([`crate::engine::by_delta`]), where installs, syncs and commits of staged
//! candidates all make it.

use mossfs_db::Query;
use mossfs_format::PackageId;

use crate::engine::Root;
use crate::engine::by_delta::chain;

/// For `verify --repair`: when package `id` came by delta (its cache holds the delta,
/// which can rebuild only the files that changed, and only while their bases are intact)
/// and an enabled repository still offers its full stone, downloads that stone into the
/// cache in the delta's place, so the repair reads every asset from the stone itself.
/// `Ok(false)` when the cache already holds the full stone or no repository offers it.
pub fn refetch_full(root: &Root, id: &PackageId) -> Result<bool, String> {
    let snapshot = root.db.read().map_err(|e| chain(&e))?;
    let Some(record) = snapshot.package(id).map_err(|e| chain(&e))? else {
        return Ok(false);
    };
    let cached = std::fs::metadata(root.store.cached_path(id)).map_or(0, |m| m.len());
    if cached == record.stone_size {
        return Ok(false);
    }
    let hex = id.to_string();
    let offered = mossfs_db::AvailableQuery::available(&snapshot, &record.meta.name)
        .map_err(|e| chain(&e))?
        .into_iter()
        .find(|a| a.meta.hash.as_deref() == Some(hex.as_str()));
    drop(snapshot);
    let Some(offered) = offered else {
        return Ok(false);
    };
    let job = super::repo::job_for(root, offered.meta, None).map_err(|e| chain(&e))?;
    super::repo::download(std::slice::from_ref(&job), 1).map_err(|e| chain(&e))?;
    Ok(true)
}
