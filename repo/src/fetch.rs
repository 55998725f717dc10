//! Downloading stones (DESIGN.md §6.1, §8).
//!
//! Each download streams into `<dest>/.partial/<sha256>.part` while its sha256 is computed,
//! and is renamed to its final name only when its size and sha256 match the index: a stone
//! under its final name is always whole and verified. A partial file survives a killed run
//! and the next run resumes it with a Range request, re-hashing what it already has. A body
//! cut short, a timeout, a dropped connection and a 5xx are retried a few times with
//! backoff (resuming each time); a wrong hash is never retried, and its bytes are deleted.
//! A failed write (a full disk) deletes the partial file too, so nothing is left behind.
//! A stone's bytes are made durable before it gets its final name, and the destination
//! folder's entries after the last rename, as the store does for the stones it caches
//! (`Store::cache_stone`): a stone fetched into the cache is taken as it is by a later
//! install (the same sha256 is the same stone), so nothing else would ever sync it, and a
//! commit syncs only what it wrote itself (DESIGN.md §6.2). On tmpfs nothing is synced.
//!
//! Downloads run on a bounded number of threads; progress goes to a callback, and each
//! verified stone can be handed on as soon as it is named ([`fetch_each`]).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use mossfs_store::durable::{self, FsKind};
use sha2::{Digest, Sha256};

use crate::RepoError;
use crate::transport::{Sink, Transport, TransportError};

/// The folder of partial downloads, inside the destination.
pub const PARTIAL_DIR: &str = ".partial";

/// One stone to download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The package name, for messages.
    pub name: String,
    /// Its absolute URI.
    pub uri: String,
    /// Its sha256, lowercase hex.
    pub sha256: String,
    /// Its size.
    pub size: u64,
    /// Where it goes when verified.
    pub dest: PathBuf,
}

/// How downloads behave.
#[derive(Debug, Clone)]
pub struct Options {
    /// Downloads at once.
    pub parallel: usize,
    /// Attempts per download, the first included.
    pub attempts: u32,
    /// The first retry's delay; each later one doubles it.
    pub backoff: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            parallel: 4,
            attempts: 4,
            backoff: Duration::from_millis(250),
        }
    }
}

/// Progress of one download, reported as bytes arrive.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// Which job.
    pub job: &'a Job,
    /// Bytes held so far, resumed ones included.
    pub done: u64,
}

/// Downloads every job; the result of each, in job order.
pub fn fetch_all(
    jobs: &[Job],
    transport: &Transport,
    options: &Options,
    progress: &(dyn Fn(Progress) + Sync),
) -> Vec<Result<PathBuf, RepoError>> {
    fetch_each(jobs, transport, options, progress, &|_, _| {
        ControlFlow::Continue(())
    })
    .into_iter()
    .map(|slot| {
        slot.unwrap_or_else(|| {
            Err(RepoError::Io {
                path: PathBuf::new(),
                source: io::Error::other("a download thread died"),
            })
        })
    })
    .collect()
}

/// What [`fetch_each`] calls as each download ends: the job's index and its outcome; the
/// answer says whether further downloads may start.
pub type Done<'a> = dyn Fn(usize, &Result<PathBuf, RepoError>) -> ControlFlow<()> + Sync + 'a;

/// Downloads every job as [`fetch_all`] does, and hands each outcome to `done` (the job's
/// index, and the verified stone's path or the error) on the thread that downloaded it, as
/// soon as the stone has its final name, while the other downloads go on: the caller can put one package to use while the
/// next still arrives (DESIGN.md §8, "pipelined with unpacking"). `done` runs on the
/// download threads, so a slow `done` holds back a download slot; a caller with heavy work
/// sends it elsewhere. When `done` answers [`ControlFlow::Break`], no further download
/// starts; those already running finish. The result of each job, in job order; `None` for
/// a job that never started.
///
/// The names are made durable only once every download is over (one `fsync` per folder),
/// so `done` sees a stone whose bytes are durable but whose name may not be yet.
pub fn fetch_each(
    jobs: &[Job],
    transport: &Transport,
    options: &Options,
    progress: &(dyn Fn(Progress) + Sync),
    done: &Done<'_>,
) -> Vec<Option<Result<PathBuf, RepoError>>> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let results: Vec<Mutex<Option<Result<PathBuf, RepoError>>>> =
        jobs.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..options.parallel.clamp(1, jobs.len().max(1)) {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let result = fetch_one(job, transport, options, progress);
                    if done(i, &result).is_break() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    if let Ok(mut slot) = results[i].lock() {
                        *slot = Some(result);
                    }
                }
            });
        }
    });
    // An emptied partial folder is debris; one still holding a resumable download is not.
    for job in jobs {
        if let Some(dir) = partial_path(job).parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
    let mut results: Vec<Option<Result<PathBuf, RepoError>>> = results
        .into_iter()
        .map(|slot| slot.into_inner().ok().flatten())
        .collect();
    sync_names(&mut results);
    results
}

/// Makes the names of the stones fetched durable: one `fsync` per destination folder. A
/// folder that cannot be synced fails every download into it.
fn sync_names(results: &mut [Option<Result<PathBuf, RepoError>>]) {
    let mut dirs: Vec<PathBuf> = results
        .iter()
        .filter_map(|r| r.as_ref()?.as_ref().ok()?.parent().map(Path::to_path_buf))
        .collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        let volatile = std::fs::File::open(&dir).is_ok_and(|f| FsKind::of(&f) == FsKind::Volatile);
        if volatile {
            continue;
        }
        if let Err(e) = durable::sync_dirs(std::slice::from_ref(&dir)) {
            for result in results.iter_mut().flatten() {
                if result
                    .as_ref()
                    .is_ok_and(|p| p.parent() == Some(dir.as_path()))
                {
                    *result = Err(RepoError::Io {
                        path: e.path.clone(),
                        source: io::Error::new(e.source.kind(), e.source.to_string()),
                    });
                }
            }
        }
    }
}

/// The partial file of a job.
pub fn partial_path(job: &Job) -> PathBuf {
    let dir = job.dest.parent().unwrap_or(Path::new("."));
    dir.join(PARTIAL_DIR).join(format!("{}.part", job.sha256))
}

struct PartSink<'a> {
    file: File,
    hasher: Sha256,
    have: u64,
    job: &'a Job,
    progress: &'a (dyn Fn(Progress) + Sync),
}

impl Sink for PartSink<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.hasher.update(bytes);
        self.have += bytes.len() as u64;
        (self.progress)(Progress {
            job: self.job,
            done: self.have,
        });
        Ok(())
    }
    fn restart(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.hasher = Sha256::new();
        self.have = 0;
        Ok(())
    }
}

fn fetch_one(
    job: &Job,
    transport: &Transport,
    options: &Options,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<PathBuf, RepoError> {
    // A file already there counts only if it is the stone the index names; otherwise it
    // is replaced by the verified download.
    if job.dest.is_file() && file_sha256(&job.dest).is_ok_and(|h| h == job.sha256) {
        return Ok(job.dest.clone());
    }
    let part = partial_path(job);
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| RepoError::Io { path, source }
    };
    let part_dir = part.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(part_dir).map_err(io_err(part_dir))?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut sink = open_part(&part, job, progress).map_err(io_err(&part))?;
        let result = transport.download(&job.uri, sink.have, job.size, &mut sink);
        match result {
            Ok(total) if total == job.size => {
                let found = crate::hex(&sink.hasher.clone().finalize());
                if found != job.sha256 {
                    drop(sink);
                    let _ = std::fs::remove_file(&part);
                    return Err(RepoError::HashMismatch {
                        name: job.name.clone(),
                        expected: job.sha256.clone(),
                        found,
                    });
                }
                // The bytes before the name (see the module doc).
                if FsKind::of(&sink.file) != FsKind::Volatile {
                    sink.file.sync_data().map_err(io_err(&part))?;
                }
                drop(sink);
                std::fs::rename(&part, &job.dest).map_err(io_err(&job.dest))?;
                return Ok(job.dest.clone());
            }
            Ok(short) if attempt >= options.attempts => {
                return Err(RepoError::SizeMismatch {
                    name: job.name.clone(),
                    expected: job.size,
                    found: short,
                });
            }
            Ok(_) => {}
            Err(TransportError::TooLong { .. }) => {
                drop(sink);
                let _ = std::fs::remove_file(&part);
                return Err(RepoError::SizeMismatch {
                    name: job.name.clone(),
                    expected: job.size,
                    found: job.size.saturating_add(1),
                });
            }
            Err(TransportError::Write(source)) => {
                drop(sink);
                let _ = std::fs::remove_file(&part);
                return Err(RepoError::Io { path: part, source });
            }
            Err(source) if !source.is_transient() || attempt >= options.attempts => {
                drop(sink);
                remove_if_empty(&part);
                return Err(RepoError::Fetch {
                    uri: job.uri.clone(),
                    source,
                });
            }
            Err(_) => {}
        }
        std::thread::sleep(options.backoff * 2u32.saturating_pow(attempt - 1));
    }
}

fn file_sha256(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher)?;
    Ok(crate::hex(&hasher.finalize()))
}

/// A partial file with nothing in it is no help to a resume.
fn remove_if_empty(part: &Path) {
    if std::fs::metadata(part).is_ok_and(|m| m.len() == 0) {
        let _ = std::fs::remove_file(part);
    }
}

/// Opens the partial file for appending and hashes what it already holds; a partial file
/// longer than the package is started over.
fn open_part<'a>(
    part: &Path,
    job: &'a Job,
    progress: &'a (dyn Fn(Progress) + Sync),
) -> io::Result<PartSink<'a>> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(part)?;
    let mut hasher = Sha256::new();
    let mut have = 0u64;
    if file.metadata()?.len() > job.size {
        file.set_len(0)?;
    }
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        have += n as u64;
    }
    file.seek(SeekFrom::Start(have))?;
    Ok(PartSink {
        file,
        hasher,
        have,
        job,
        progress,
    })
}
