//! The FUSE view of a state (DESIGN.md §7): any recorded state, mounted read-only and
//! served straight from its directory objects in the database and its assets in the store.
//!
//! This module owns the server ([`MossFs`]), mounting and unmounting ([`spawn`], [`run`],
//! [`unmount`]) and the debug view. It reads the database through one snapshot held for
//! the mount's life and reads the store; the only thing it ever writes is assets, through
//! [`Store::ingest`], when a staged package is first read. It never prints: failures
//! while serving go to the [`FsOptions::log`] callback.
//!
//! # What the mount shows
//!
//! The mount point holds `usr/`, the state's tree, so that `diff -r ROOT/usr MNT/usr`
//! compares a live root with a state; with the debug view it also holds `.mossfs/` (see
//! [`view`]). Everything below `usr` matches a blit of the state in path, type, mode, uid,
//! gid, size, link text and bytes. Times are the state's creation time. A directory's size
//! is 4096. Nothing is ever written (`usr/.stateID` is written by a commit, not the blit,
//! so it is not in the mount either).
//!
//! # Map
//!
//! - `inode`: the inode table; `snapshot`: the database snapshots; `awake`: polling
//!   through bursts of requests;
//!   [`view`]: the root and the debug view; `entries`: lookups and listings;
//!   `read`: file bytes and lazy materialization; `ops`: the FUSE operations;
//!   `mount`: mounting and unmounting; `signal`: signals for [`run`];
//!   `error`: what can go wrong.
//!
//! # Decisions
//!
//! - **Inodes: one per path, `nlink` 1, directories included, generation 0.** Numbers are given lazily,
//!   in one block per directory the first time the kernel looks into it, and are never
//!   reused or forgotten (see `inode`). Files with the same content do not share an inode, unlike the blit's
//!   hardlinks, so that an inode's parent and name are unique and the kernel's dentry cache
//!   never aliases two paths. `nlink` 1 on directories tells `find` and `fts` that the
//!   subdirectory count is unknown, as on btrfs, rather than making the mount read every
//!   child directory to count them.
//! - **Mounting is O(1)** in the size of the state: it reads the state record, opens the
//!   snapshots and numbers the root and the debug view (O(conflicts)). Nothing walks the
//!   tree; `statfs` reports the entry count the state recorded.
//! - **Kernel caching is all on**, because the tree never changes while mounted: entries
//!   and attributes live for a day, lookups of missing names are cached as negative
//!   entries for as long, `readdirplus` is always used (never the `auto` heuristic), so a
//!   listing primes every child's attributes, directory listings stay in the page cache
//!   (`FOPEN_CACHE_DIR`, or `opendir` answered `ENOSYS` so the kernel stops asking), as do
//!   symlink texts (`FUSE_CACHE_SYMLINKS`) and file pages (no `FUSE_AUTO_INVAL_DATA`).
//!   Directory operations may run in parallel in the kernel (`FUSE_PARALLEL_DIROPS`).
//! - **One serving thread.** Every request the server answers takes microseconds and never
//!   waits: unpacks and downloads run on threads of their own (`read`). What a request
//!   costs is the wakeups around it. The kernel wakes the longest-sleeping reader of
//!   `/dev/fuse`, so with several serving threads every request wakes a cold, sleeping
//!   thread; one thread that has just answered often finds the next request already
//!   queued and does not sleep at all. Measured in alternating runs on a loaded 2-core
//!   machine, one thread beat four on a fresh walk in every pairing (1.1x to 1.5x
//!   faster), and on reading every small file in two of three (up to 2.3x; the third
//!   lost by 7%); two threads were no better than one. The price: a request that stalls
//!   (a page fault on a cold database page) delays the ones behind it.
//! - **Polling through a burst** (`awake`). Once requests come, the serving thread polls
//!   `/dev/fuse` instead of sleeping in it, until none has come for 2 ms: the wakeup of a
//!   thread whose CPU went idle was a third of what a request cost. On the 2-core VM a
//!   fresh walk of 48,000 entries went from 0.97 s to 0.67 s (ext4: 0.35 s), and reading
//!   every small file from 1.47 s to 1.09 s (medians of paired runs). An idle mount still
//!   sleeps, and with one CPU polling is off.
//! - **Reads** (`read`) use kernel passthrough when the kernel offers it and we are root
//!   (Linux 6.9+): `open` hands the kernel the store file and no read reaches us.
//!   Otherwise (or with [`FsOptions::store_reads`]) `open` is answered `ENOSYS`, so the
//!   kernel stops sending opens at all and keeps the page cache; reads are served with
//!   `pread` on store files kept open in an LRU. [`Mount::read_mode`] says which one is in
//!   use.
//! - **Lazy materialization.** A file whose asset is missing is read after unpacking its
//!   package's cached stone with [`Store::ingest`]. That runs on its own thread, one per
//!   package at a time, and the request is answered from there, so the serving threads
//!   never wait and reads of other packages go on. A package staged from a repository's
//!   heads has no cached stone yet: [`FsOptions::fetch`] downloads it first, on that same
//!   thread ([`FetchPackage`]).
//! - **Read-only.** The mount is `MS_RDONLY`; every writing operation that still reaches
//!   the server is answered `EROFS`.
//! - **Extended attributes.** Without the debug view `getxattr` and `listxattr` answer
//!   `ENOSYS` once, so the kernel answers every later call itself (`EOPNOTSUPP`) and `ls
//!   -l` costs no round trip for them. With it, every entry has
//!   [`view::OWNER_XATTR`] = `name-version` of the package that ships it.

mod awake;
mod entries;
mod error;
mod fetch;
mod inode;
mod mount;
mod ops;
mod read;
mod signal;
mod snapshot;
pub mod view;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use mossfs_db::{Db, Query, StateId};
use mossfs_format::PackageId;
use mossfs_store::Store;

pub use error::{MountError, ServeError};
pub use fetch::{FetchError, FetchPackage};
pub use mount::{
    FS_TYPE, Mount, MountEntry, check_available, check_mountpoint, find_mount, run, spawn, unmount,
};
pub use read::ReadMode;

use inode::{Inodes, Kind};
use snapshot::Snapshots;
use view::{Labels, Synthetic};

/// Threads serving requests (see "One serving thread" above).
const THREADS: usize = 1;

/// Database snapshots: one for the serving thread, one for the rare others (unpacks, which
/// only name paths in messages), so that they do not take the server's.
const SNAPSHOTS: usize = 2;

/// How long the kernel may trust an entry, an attribute or a negative lookup.
const TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Where serving errors go.
pub type Log = Arc<dyn Fn(&ServeError) + Send + Sync>;

/// How to serve a state.
#[derive(Clone, Default)]
pub struct FsOptions {
    /// Show `.mossfs/` and the owner xattr ([`view`]).
    pub debug_view: bool,
    /// Called for every failure the kernel only sees as `EIO`. `None` drops them.
    pub log: Option<Log>,
    /// Serve reads from the store even where kernel passthrough is available, to compare
    /// the two or to test the fallback.
    pub store_reads: bool,
    /// Downloads a package whose stone is not cached, before its first read unpacks it
    /// (a candidate staged from a repository's heads; see [`FetchPackage`]).
    pub fetch: Option<Arc<dyn FetchPackage>>,
}

/// Request counts since the mount started, for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// `lookup` requests.
    pub lookups: u64,
    /// `readdir` and `readdirplus` requests.
    pub readdirs: u64,
    /// `open` requests for files.
    pub opens: u64,
    /// `read` requests (none with passthrough).
    pub reads: u64,
    /// `getattr` requests (the kernel asks again only when an attribute's TTL has run out).
    pub getattrs: u64,
    /// `readlink` requests (one per symlink while `FUSE_CACHE_SYMLINKS` keeps the text).
    pub readlinks: u64,
    /// `opendir` requests (one at most when the kernel accepts `ENOSYS` for good).
    pub opendirs: u64,
    /// `release` requests for files; the kernel sends them without waiting for the answer.
    pub releases: u64,
    /// Packages unpacked on first read.
    pub unpacks: u64,
    /// Unpacks running right now.
    pub unpacking: u64,
    /// Entries numbered so far, the root and the debug view included.
    pub inodes: u64,
    /// Bursts of requests the server polled for (see "Polling through a burst" in the module doc).
    pub bursts: u64,
}

#[derive(Default)]
struct Counters {
    lookups: AtomicU64,
    readdirs: AtomicU64,
    opens: AtomicU64,
    reads: AtomicU64,
    getattrs: AtomicU64,
    readlinks: AtomicU64,
    opendirs: AtomicU64,
    releases: AtomicU64,
    unpacks: AtomicU64,
    unpacking: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The state behind a mount, shared by the serving threads and unpacking threads.
struct Inner {
    state: StateId,
    entries: u64,
    time: SystemTime,
    snapshots: Snapshots,
    inodes: Inodes,
    synthetic: Synthetic,
    labels: Labels,
    store: Store,
    debug_view: bool,
    log: Option<Log>,
    store_reads: bool,
    fetch: Option<Arc<dyn FetchPackage>>,
    reads: read::Reads,
    /// The kernel treats `ENOSYS` from `opendir` as "never ask again".
    no_opendir: AtomicBool,
    counters: Counters,
    /// Set once mounted, unless polling is off ([`awake`]).
    awake: OnceLock<Arc<awake::Awake>>,
}

/// A FUSE server for one state. Hand it to [`spawn`] or [`run`].
pub struct MossFs {
    inner: Arc<Inner>,
}

impl MossFs {
    /// Prepares to serve `state` from `db` and `store`. Opens the database snapshots the
    /// mount keeps for its life; reads nothing else of the tree.
    pub fn new(
        db: &Db,
        store: Store,
        state: StateId,
        options: FsOptions,
    ) -> Result<MossFs, MountError> {
        let (snapshots, record) = Snapshots::open(db, state, SNAPSHOTS)?;
        let inodes = Inodes::default();
        let names = |owner: Option<PackageId>| match owner {
            None => "unowned".to_owned(),
            Some(id) => snapshots
                .with(|txn| txn.package(&id))
                .ok()
                .flatten()
                .map_or_else(|| id.to_string(), |record| record.meta.name),
        };
        let synthetic = Synthetic::build(
            &inodes,
            record.root,
            &record.conflicts,
            options.debug_view,
            names,
        );
        let inner = Inner {
            state,
            // The root, `usr` and the debug view are not counted by the state.
            entries: record.entries + inodes.len() as u64,
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(record.created),
            snapshots,
            inodes,
            synthetic,
            labels: Labels::default(),
            store,
            debug_view: options.debug_view,
            log: options.log,
            store_reads: options.store_reads,
            fetch: options.fetch,
            reads: read::Reads::default(),
            no_opendir: AtomicBool::new(false),
            counters: Counters::default(),
            awake: OnceLock::new(),
        };
        Ok(MossFs {
            inner: Arc::new(inner),
        })
    }

    /// The state it serves.
    pub fn state(&self) -> StateId {
        self.inner.state
    }
}

impl Inner {
    fn log(&self, error: ServeError) {
        if let Some(log) = &self.log {
            log(&error);
        }
    }

    fn stats(&self) -> Stats {
        let c = &self.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Stats {
            lookups: get(&c.lookups),
            readdirs: get(&c.readdirs),
            opens: get(&c.opens),
            reads: get(&c.reads),
            getattrs: get(&c.getattrs),
            readlinks: get(&c.readlinks),
            opendirs: get(&c.opendirs),
            releases: get(&c.releases),
            unpacks: get(&c.unpacks),
            unpacking: get(&c.unpacking),
            inodes: self.inodes.len() as u64,
            bursts: self.awake.get().map_or(0, |awake| awake.bursts()),
        }
    }

    /// Counts a request the kernel is waiting for, and keeps the server polling while
    /// they keep coming.
    fn request(&self, counter: &AtomicU64) {
        bump(counter);
        if let Some(awake) = self.awake.get() {
            awake.request();
        }
    }

    /// The path of an entry below the mount point, for messages: `/usr/bin/nano`.
    fn path_of(&self, mut ino: u64) -> String {
        let mut components = Vec::new();
        while ino != inode::ROOT_INO {
            let Some(inode) = self.inodes.get(ino) else {
                break;
            };
            let parent = u64::from(inode.parent);
            let name = match self.inodes.get(parent).map(|p| p.kind) {
                Some(Kind::Synthetic { dir }) => self
                    .synthetic
                    .dir(dir)
                    .and_then(|d| d.entries.get(inode.slot as usize))
                    .map(|entry| entry.name.clone()),
                Some(kind) => kind.tree().and_then(|tree| {
                    self.snapshots.with(|txn| {
                        let view = txn.tree(tree).ok()?;
                        view.name(inode.slot as usize).map(<[u8]>::to_vec)
                    })
                }),
                None => None,
            };
            components.push(name.unwrap_or_else(|| b"?".to_vec()));
            ino = parent;
        }
        let mut path = String::new();
        for component in components.iter().rev() {
            path.push('/');
            path.push_str(&String::from_utf8_lossy(component));
        }
        if path.is_empty() {
            path.push('/');
        }
        path
    }
}
