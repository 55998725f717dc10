//! Previews of remote changes before download (DESIGN.md §7, §8; issue 10 §3).
//!
//! `install --stage` and `sync --stage` record a candidate from the *heads* of the new
//! stones only (meta, layout and index: `mossfs_repo::head`), so the candidate's tree is
//! whole, mountable and diffable while not one package body has been downloaded. Each such
//! package gets a head record in the database (`mossfs_db::Head`): its URI, its size, and
//! the sha256 of the head it was built from.
//!
//! Its body is downloaded later, by whichever needs it first:
//! - the mount, on the first read of one of its files ([`RepoFetcher`], the hook
//!   `mossfs_fs::fuse::FetchPackage`), which downloads that package alone;
//! - the commit ([`complete`], at the start of `commit_state`), which downloads whatever
//!   remains.
//!
//! The commit first takes a delta instead of a full stone where the repository offers one
//! that applies here ([`by_delta`], the way installs and syncs take; what the staging's
//! plan counted `with deltas`), and uses it only if it carries exactly the metadata,
//! layout and index the candidate was staged from; any failure falls back to the full
//! stone, with one note.
//!
//! A full stone is downloaded under a temporary name, checked against the index's
//! sha256 (`mossfs_repo::fetch`) and against the head the candidate was built from
//! ([`mossfs_repo::head::check_head`]), and only then named as the cached stone, where
//! the store unpacks it. A stone that fails either check is deleted; a commit refuses, and
//! the state that was active stays active and intact. The head record goes once the commit
//! has checked the cached stone.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use mossfs_db::{Db, Head, HeadQuery, Query, State};
use mossfs_format::PackageId;
use mossfs_fs::fuse::{FetchError, FetchPackage};
use mossfs_repo::RepoError;
use mossfs_repo::fetch::{self, Job};
use mossfs_repo::head;
use mossfs_repo::transport::{self, Transport};

use super::by_delta;
use super::error::{EngineError, Result};
use super::plan::{LoadedStone, Plan};
use super::root::Root;
use super::solve::{self, Origin};
use crate::progress::{Bar, Unit};

/// Head requests in flight at once: each is one small request, so latency, not
/// bandwidth, is what parallelism hides.
const PARALLEL_HEADS: usize = 8;

/// One package the plan takes from a repository, as its head shows it.
struct Headed {
    stone: LoadedStone<'static>,
    /// `Some` when its body is not cached: what the database records of it.
    head: Option<Head>,
}

/// Stages what `plan` takes from a repository from its stones' heads, then plans again
/// with `replan`, given those packages as a local source (as `install` does after a full
/// download): the same packages, with the reasons the solve gave. Records a head record
/// for every package whose body is not cached, before the caller records the state, so
/// that no recorded state ever has a package with neither a cached stone nor a way to get
/// one. Returns the new plan and the packages, for `record_state`.
pub fn stage_heads(
    root: &Root,
    plan: Plan,
    replan: impl FnOnce(&dyn solve::Source) -> Result<Plan>,
) -> Result<(Plan, Vec<LoadedStone<'static>>)> {
    let wanted: Vec<mossfs_format::Meta> = plan
        .packages
        .values()
        .filter(|chosen| matches!(chosen.candidate.origin, Origin::Repository { .. }))
        .map(|chosen| (*chosen.candidate.meta).clone())
        .collect();
    if wanted.is_empty() {
        return Ok((plan, Vec::new()));
    }
    let transport = Transport::new(transport::default_idle());
    let bar = Bar::new("heads", wanted.len() as u64, Unit::Items("packages"));
    let headed = in_parallel(&wanted, |meta| {
        let headed = headed(root, &transport, meta);
        bar.inc(1);
        headed
    })?;
    drop(bar);
    crate::ui::step("fetch heads");
    let mut txn = root.db.write()?;
    for item in &headed {
        if let Some(head) = &item.head {
            txn.put_head(&item.stone.id, head)?;
        }
    }
    txn.commit()?;
    let mut local = solve::Packages::new();
    let mut stones = Vec::with_capacity(headed.len());
    for item in headed {
        local.add(item.stone.candidate());
        stones.push(item.stone);
    }
    let plan = replan(&local)?;
    crate::ui::step("plan again");
    Ok((plan, stones))
}

/// Runs `work` on every item, [`PARALLEL_HEADS`] at a time; the results in item order,
/// or the first error.
fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    work: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<Result<R>>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL_HEADS.min(items.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let result = work(item);
                    let failed = result.is_err();
                    if let Ok(mut slot) = slots[i].lock() {
                        *slot = Some(result);
                    }
                    if failed {
                        // The first error is the answer: stop handing out work.
                        next.store(items.len(), Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let mut out = Vec::with_capacity(items.len());
    for slot in slots {
        match slot.into_inner().ok().flatten() {
            Some(result) => out.push(result?),
            // Left undone after another item failed; that failure was returned first.
            None => continue,
        }
    }
    Ok(out)
}

/// The package the index entry `meta` names, from the cheapest source that has it: the
/// database (recorded before), the cached stone's head, or a Range request for its head.
fn headed(root: &Root, transport: &Transport, meta: &mossfs_format::Meta) -> Result<Headed> {
    let name = meta.name.clone();
    let not_available = || EngineError::from(RepoError::NotAvailable(name.clone()));
    let (Some(uri), Some(sha256), Some(size)) = (&meta.uri, &meta.hash, meta.size) else {
        return Err(not_available());
    };
    let id = mossfs_repo::unhex(sha256)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(PackageId)
        .ok_or_else(not_available)?;
    let path = PathBuf::from(uri);
    {
        let snapshot = root.db.read()?;
        let record = snapshot.package(&id)?;
        // Recorded already (staged before, or installed once), and its body is either in
        // the store, in the cache, or to be fetched by its head record: no byte needs
        // fetching now. Otherwise (its cached stone was collected since) its head is read
        // again below, so that the commit knows where to get its body.
        let reachable = match &record {
            Some(r) => r.unpacked || root.store.is_cached(&id) || snapshot.head(&id)?.is_some(),
            None => false,
        };
        if let Some(record) = record.filter(|_| reachable) {
            let stone = LoadedStone::without_copy(
                path,
                id,
                record.stone_size,
                record.meta,
                snapshot.layout(&id)?,
                snapshot.index(&id)?,
            );
            return Ok(Headed { stone, head: None });
        }
    }
    let cached = root.store.cached_path(&id);
    let (bytes, head) = if root.store.is_cached(&id) {
        let bytes = head::read_head(&cached).map_err(|source| EngineError::Io {
            path: cached.clone(),
            source,
        })?;
        (bytes, None)
    } else {
        let bytes = head::fetch_head(transport, &name, uri, size)?;
        let record = Head {
            uri: uri.clone(),
            size,
            len: bytes.len() as u64,
            digest: head::digest(&bytes),
        };
        (bytes, Some(record))
    };
    let stone = LoadedStone::read_head(path, id, size, &bytes)?;
    Ok(Headed { stone, head })
}

/// Downloads the stone of `package` into `cache` (the store's cache folder), checked
/// against its sha256 (the package id) and against the head the candidate was built from;
/// a stone that fails either check is deleted. Safe to call while the stone is cached:
/// then it only checks the head.
fn fetch_checked(
    cache: &Path,
    transport: &Transport,
    package: &PackageId,
    name: &str,
    record: &Head,
) -> std::result::Result<(), RepoError> {
    let sha256 = package.to_string();
    let cached = cache.join(format!("{sha256}.stone"));
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| RepoError::Io { path, source }
    };
    let downloaded = if cached.is_file() {
        cached.clone()
    } else {
        // Not under its cached name until the head is checked too: the store unpacks
        // whatever it finds there.
        let job = Job {
            name: name.to_owned(),
            uri: record.uri.clone(),
            sha256,
            size: record.size,
            dest: cache.join(format!("{package}.stone.unchecked")),
        };
        let options = fetch::Options {
            parallel: 1,
            ..fetch::Options::default()
        };
        let mut results =
            fetch::fetch_all(std::slice::from_ref(&job), transport, &options, &|_| {});
        results
            .pop()
            .unwrap_or_else(|| Err(RepoError::NotAvailable(name.to_owned())))?
    };
    if !head::check_head(&downloaded, record.len, &record.digest).map_err(io(&downloaded))? {
        // A stone under its cached name matched the index's sha256 when it was put
        // there: it is that package's, and the candidate is what is wrong. Only an
        // unchecked download is deleted.
        if downloaded != cached {
            let _ = std::fs::remove_file(&downloaded);
        }
        return Err(RepoError::HeadChanged {
            name: name.to_owned(),
        });
    }
    if downloaded != cached {
        std::fs::rename(&downloaded, &cached).map_err(io(&cached))?;
        mossfs_store::durable::sync_dirs(&[cache.to_owned()]).map_err(|e| RepoError::Io {
            path: e.path,
            source: e.source,
        })?;
    }
    Ok(())
}

/// The package's name, for messages.
fn name_of(q: &impl Query, package: &PackageId) -> Result<String> {
    Ok(q.package(package)?
        .map_or_else(|| package.to_string(), |r| r.meta.full_name()))
}

/// Downloads and checks every package of `state` that was recorded from its head, then
/// forgets their head records: the start of a commit, before anything is unpacked. A
/// download that fails, or does not match the index's sha256 or the head the candidate
/// was built from, refuses the commit; nothing else has been touched.
pub fn complete(root: &Root, state: &State) -> Result<()> {
    let snapshot = root.db.read()?;
    let mut todo = Vec::new();
    for selection in &state.selections {
        if let Some(record) = snapshot.head(&selection.package)? {
            todo.push((
                selection.package,
                name_of(&snapshot, &selection.package)?,
                record,
            ));
        }
    }
    drop(snapshot);
    if todo.is_empty() {
        return Ok(());
    }
    let todo = by_delta(root, todo)?;
    if todo.is_empty() {
        crate::ui::step("download the rest");
        return Ok(());
    }
    let transport = Transport::new(transport::default_idle());
    let total = todo.iter().map(|(_, _, r)| r.size).sum();
    let bar = Bar::new("download", total, Unit::Bytes);
    let cache = root.store.cache_dir().to_owned();
    let refuse = |source: RepoError| EngineError::Preview {
        state: state.id,
        source: Box::new(source),
    };
    in_parallel(&todo, |(package, name, record)| {
        fetch_checked(&cache, &transport, package, name, record).map_err(refuse)?;
        bar.inc(record.size);
        Ok(())
    })?;
    drop(bar);
    let mut txn = root.db.write()?;
    for (package, _, _) in &todo {
        txn.remove_head(package)?;
    }
    txn.commit()?;
    crate::ui::step("download the rest");
    Ok(())
}

/// Gets by delta, where a repository offers one that applies here, every package of
/// `todo` whose stone is not cached yet ([`by_delta::get`], the one way installs and syncs
/// take too), checked to rebuild exactly the metadata, layout and index the candidate was
/// staged from. Each one that arrives is cached (the delta under its full stone's id, as
/// an install by delta leaves it) and its head record forgotten at once, since the head
/// check of a full stone does not apply to a delta. Returns the packages left for full
/// stones: those with no usable delta, each of whose failures has said so once.
fn by_delta(
    root: &Root,
    todo: Vec<(PackageId, String, Head)>,
) -> Result<Vec<(PackageId, String, Head)>> {
    let mut rest = Vec::with_capacity(todo.len());
    for item in todo {
        let (package, _, _) = &item;
        if root.store.is_cached(package) {
            rest.push(item);
            continue;
        }
        let snapshot = root.db.read()?;
        let hex = package.to_string();
        let offered = snapshot
            .package(package)?
            .map(|record| mossfs_db::AvailableQuery::available(&snapshot, &record.meta.name))
            .transpose()?
            .unwrap_or_default()
            .into_iter()
            .find(|a| a.meta.hash.as_deref() == Some(hex.as_str()));
        let (Some(offered), Some(record)) = (offered, snapshot.package(package)?) else {
            rest.push(item);
            continue;
        };
        let staged = by_delta::Staged {
            meta: record.meta,
            layout: snapshot.layout(package)?,
            index: snapshot.index(package)?,
        };
        drop(snapshot);
        let Some(stone) = by_delta::get(root, &offered.repo, &offered.meta, Some(&staged)) else {
            rest.push(item);
            continue;
        };
        LoadedStone::keep_all(&root.store, &mut [stone])?;
        let mut txn = root.db.write()?;
        txn.remove_head(package)?;
        txn.commit()?;
    }
    Ok(rest)
}

/// The mount's hook ([`FetchPackage`]): downloads a package recorded from its head on the
/// first read of one of its files. It reads the database through snapshots of its own and
/// writes only the store's cache, as the mount's unpacking does; the head record stays
/// for the commit to check and forget.
pub struct RepoFetcher {
    db: Db,
    cache: PathBuf,
    transport: Transport,
}

impl RepoFetcher {
    /// A fetcher for the root whose database is `db` and whose stone cache is `cache`.
    pub fn new(db: Db, cache: PathBuf) -> RepoFetcher {
        RepoFetcher {
            db,
            cache,
            transport: Transport::new(transport::default_idle()),
        }
    }
}

impl FetchPackage for RepoFetcher {
    fn fetch(&self, package: &PackageId) -> std::result::Result<(), FetchError> {
        let snapshot = self.db.read()?;
        let Some(record) = snapshot.head(package)? else {
            return Err(format!(
                "package {package} has no cached stone and was not staged from a repository"
            )
            .into());
        };
        let name = name_of(&snapshot, package)?;
        drop(snapshot);
        fetch_checked(&self.cache, &self.transport, package, &name, &record)?;
        Ok(())
    }
}
