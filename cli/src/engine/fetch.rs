//! Getting what a plan takes from repositories into the store, pipelined (DESIGN.md §8):
//! each package's content is unpacked while the others still download, so an install
//! from a repository costs about the longer of the two, not their sum.
//!
//! ```text
//! download threads (mossfs_repo::fetch::fetch_each)     unpack (rayon, the caller's pool)
//! job 1 ──> cache/<sha256>.stone ── channel ──> into_store: metadata, Store::ingest
//! job 2 ──> ...                                 into_store ...
//! ```
//!
//! Nothing here records anything: the stones come back as [`LoadedStone`]s for the one
//! transaction that records the state, and the commit finds their assets already in the
//! store (it still syncs them, and marks the packages unpacked, in its own step). A failed
//! download or unpack stops new downloads and fails the whole fetch; what was already
//! placed is a verified cached stone or a verified asset, garbage for `gc` at worst, and
//! the previous state is untouched.
//!
//! [`into_store`] is the one step per package after its bytes arrived; a package fetched
//! another way (a delta, DESIGN.md §11) slots in there.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use mossfs_format::PackageId;
use mossfs_repo::RepoError;
use mossfs_repo::fetch::{self, Job};
use mossfs_repo::transport::{self, Transport};
use mossfs_store::Store;
use rayon::iter::{ParallelBridge, ParallelIterator};

use super::error::{EngineError, Result};
use super::plan::{LoadedStone, Plan};
use super::root::Root;
use super::solve::Origin;
use crate::progress::Bar;

/// What a plan downloads: the repository packages it takes whose stones are not in the
/// stone cache yet, by the sizes their indexes give. A struct, so that other figures of
/// the same download (the bytes with deltas, say) sit beside these without reshaping
/// the output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Download {
    /// Packages to download.
    pub packages: usize,
    /// Their bytes in all, as full stones.
    pub bytes: u64,
    /// Their bytes when each takes the delta its repository offers from a package whose
    /// assets are all here (equal to `bytes` when none does).
    pub with_deltas: u64,
}

impl Download {
    /// What `plan` downloads into `store` (every repository package, without a store: a
    /// dry run on a root not made yet).
    pub fn of(plan: &Plan, store: Option<&Store>) -> Download {
        let mut download = Download::default();
        for chosen in plan.packages.values() {
            let candidate = &chosen.candidate;
            if !matches!(candidate.origin, Origin::Repository { .. }) {
                continue;
            }
            if store.is_some_and(|store| store.is_cached(&candidate.id)) {
                continue;
            }
            download.packages += 1;
            download.bytes += candidate.meta.size.unwrap_or(0);
        }
        download.with_deltas = download.bytes;
        download
    }

    /// One line for people: `download: 3 packages, 1.2 MiB`, and what deltas make of it
    /// when they help: `download: 3 packages, 1.2 MiB (240 KiB with deltas)`.
    pub fn line(&self) -> String {
        let s = if self.packages == 1 { "" } else { "s" };
        let mut line = format!(
            "download: {} package{s}, {}",
            self.packages,
            crate::units::bytes(self.bytes)
        );
        if self.with_deltas < self.bytes {
            line.push_str(&format!(
                " ({} with deltas)",
                crate::units::bytes(self.with_deltas)
            ));
        }
        line
    }
}

/// Downloads `jobs` (stones of the store's cache, from `job_for`), `parallel` at a time,
/// and puts each into the store ([`into_store`]) as soon as it has arrived, while the
/// others still download. Returns the stones, in job order, for the state's recording.
/// Every failure is shown; the first (in job order, downloads before unpacks) is the
/// error, and no download starts after it.
pub fn fetch_into_store<'s>(
    root: &'s Root,
    jobs: &[Job],
    parallel: usize,
    progress: &(dyn Fn(fetch::Progress) + Sync),
) -> Result<Vec<LoadedStone<'s>>> {
    let transport = Transport::new(transport::default_idle());
    let options = fetch::Options {
        parallel: parallel.max(1),
        ..fetch::Options::default()
    };
    let failed = AtomicBool::new(false);
    let (arrived, arrivals) = mpsc::channel::<(usize, PathBuf)>();
    let (downloads, unpacked) = std::thread::scope(|scope| {
        let failed = &failed;
        let downloader = scope.spawn(move || {
            let done = move |i: usize, result: &std::result::Result<PathBuf, RepoError>| {
                // A failed download fails the whole fetch: start no other. A receiver
                // gone means the unpacking already gave up.
                let Ok(path) = result else {
                    failed.store(true, Ordering::Relaxed);
                    return ControlFlow::Break(());
                };
                if failed.load(Ordering::Relaxed) || arrived.send((i, path.clone())).is_err() {
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            };
            let results = fetch::fetch_each(jobs, &transport, &options, progress, &done);
            // Dropping the sender (inside `done`) ends the unpacking loop below.
            drop(done);
            results
        });
        let unpacked: Vec<(usize, Result<LoadedStone<'s>>)> = arrivals
            .into_iter()
            .par_bridge()
            .map(|(i, path)| {
                let result = into_store(root, &jobs[i], &path);
                if result.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                (i, result)
            })
            .collect();
        let downloads = downloader.join().unwrap_or_else(|_| {
            jobs.iter()
                .map(|_| {
                    Some(Err(RepoError::Io {
                        path: PathBuf::new(),
                        source: std::io::Error::other("the download thread died"),
                    }))
                })
                .collect()
        });
        (downloads, unpacked)
    });
    crate::ui::step("download and unpack");
    let mut stones: Vec<Option<LoadedStone<'s>>> = jobs.iter().map(|_| None).collect();
    let mut errors: Vec<EngineError> = Vec::new();
    for result in downloads.into_iter().flatten() {
        if let Err(e) = result {
            errors.push(e.into());
        }
    }
    let mut unpacked = unpacked;
    unpacked.sort_by_key(|(i, _)| *i);
    for (i, result) in unpacked {
        match result {
            Ok(stone) => stones[i] = Some(stone),
            Err(e) => errors.push(e),
        }
    }
    let mut errors = errors.into_iter();
    if let Some(first) = errors.next() {
        for other in errors {
            eprintln!(
                "{}",
                crate::error::report(&crate::error::CliError::from(other))
            );
        }
        return Err(first);
    }
    // Every job arrived and was unpacked, unless a download never started, which only a
    // failure causes; say so rather than record a state without it.
    stones
        .into_iter()
        .zip(jobs)
        .map(|(stone, job)| {
            stone.ok_or_else(|| {
                EngineError::from(RepoError::Io {
                    path: job.dest.clone(),
                    source: std::io::Error::other("the download of this stone never finished"),
                })
            })
        })
        .collect()
}

/// Puts the verified stone of `job`, now at `path` in the stone cache, into the store:
/// reads its metadata (for the state's recording) and unpacks its content. The one step
/// per package after its bytes arrived.
pub fn into_store<'s>(root: &'s Root, job: &Job, path: &Path) -> Result<LoadedStone<'s>> {
    let id = mossfs_repo::unhex(&job.sha256)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(PackageId)
        .ok_or_else(|| RepoError::NotAvailable(job.name.clone()))?;
    let stone = LoadedStone::cached(path, id, job.size)?;
    let _line = Bar::spinner("", stone.meta.full_name());
    root.store
        .ingest(&id)
        .map_err(|source| EngineError::Unpack {
            path: path.to_owned(),
            package: stone.meta.full_name(),
            source: Box::new(source),
        })?;
    Ok(stone)
}
