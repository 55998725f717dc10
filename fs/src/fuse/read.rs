//! Serving file bytes: kernel passthrough when available, `pread` on store files otherwise,
//! and lazy materialization of staged packages in both cases.
//!
//! **Passthrough.** `open` opens the store file and registers it with the kernel
//! (`FUSE_DEV_IOC_BACKING_OPEN`); every read, `mmap` included, then goes from the kernel
//! straight to the store file and its page cache, and never reaches this process. The
//! kernel insists that all open handles of one inode share one backing file, so a backing
//! id is kept per inode while any handle holds it (a weak reference per inode, a strong
//! one per handle, dropped in `release`). The open reply carries `FOPEN_NOFLUSH` and never
//! `FOPEN_KEEP_CACHE`, which with passthrough makes the user's `open` fail with `EIO`.
//! Empty files take no backing file: nothing is ever read from them.
//!
//! **From the store.** When passthrough is not negotiated (not root, kernel before 6.9) or
//! the kernel refuses a store file, `open` answers `ENOSYS`: the kernel then opens every
//! file without asking, with `FOPEN_KEEP_CACHE`, so a file's pages are read from us once
//! for the life of the mount. Reads `pread` the asset; open store files are kept in an LRU
//! of [`OPEN_FILES`], keyed by asset, so a file read in many requests is opened once.
//!
//! **Lazy materialization.** A missing asset means the owning package is staged but not
//! unpacked. The request (open or read) is parked and the package is unpacked with
//! [`mossfs_store::Store::ingest`] on a thread of its own; requests for files of the same
//! package queue behind that one unpack, and are answered from that thread when it ends.
//! The serving threads never wait, so other packages' files are served meanwhile. A failed
//! unpack is logged and answered `EIO`; the next read tries again. A package staged from a
//! repository's heads has no cached stone: that thread first has the mount's fetch hook
//! ([`super::FetchPackage`]) download it, and a failed download is answered the same way.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::num::NonZeroUsize;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Weak};

use fuser::{BackingId, Errno, FileHandle, FopenFlags, ReplyData, ReplyOpen};
use lru::LruCache;
use mossfs_format::{AssetHash, PackageId};
use mossfs_store::StoreError;
use parking_lot::Mutex;

use super::inode::Inode;
use super::{Inner, ServeError, bump};

/// Store files kept open for reads served from the store.
pub const OPEN_FILES: usize = 256;

/// How a mount serves file bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// The kernel reads store files directly; no read reaches the server.
    Passthrough,
    /// The server reads store files and hands the bytes to the kernel, which caches them.
    Store,
}

impl fmt::Display for ReadMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReadMode::Passthrough => "kernel passthrough",
            ReadMode::Store => "served from the store",
        })
    }
}

const STORE: u8 = 0;
const PASSTHROUGH: u8 = 1;

type Waiter = Box<dyn FnOnce(bool) + Send>;

#[derive(Default)]
struct Backing {
    by_handle: HashMap<u64, (u64, Arc<BackingId>)>,
    by_inode: HashMap<u64, Weak<BackingId>>,
    next_fh: u64,
}

impl Backing {
    fn hold(&mut self, ino: u64, id: Arc<BackingId>) -> u64 {
        self.next_fh += 1;
        self.by_handle.insert(self.next_fh, (ino, id));
        self.next_fh
    }

    /// A new handle on the backing file that open handles of `ino` already use.
    fn shared(&mut self, ino: u64) -> Option<(u64, Arc<BackingId>)> {
        let id = self.by_inode.get(&ino).and_then(Weak::upgrade)?;
        Some((self.hold(ino, Arc::clone(&id)), id))
    }
}

/// Everything reads need besides the tree.
pub(crate) struct Reads {
    mode: AtomicU8,
    /// The kernel treats `ENOSYS` from `open` as "never ask again" (Linux 4.19+).
    pub(crate) no_open: AtomicBool,
    files: Mutex<LruCache<AssetHash, Arc<File>>>,
    backing: Mutex<Backing>,
    pending: Mutex<HashMap<PackageId, Vec<Waiter>>>,
}

impl Default for Reads {
    fn default() -> Self {
        Reads {
            mode: AtomicU8::new(STORE),
            no_open: AtomicBool::new(false),
            files: Mutex::new(LruCache::new(
                NonZeroUsize::new(OPEN_FILES).expect("not zero"),
            )),
            backing: Mutex::default(),
            pending: Mutex::default(),
        }
    }
}

impl Reads {
    pub(crate) fn mode(&self) -> ReadMode {
        match self.mode.load(Ordering::Relaxed) {
            PASSTHROUGH => ReadMode::Passthrough,
            _ => ReadMode::Store,
        }
    }

    pub(crate) fn set_mode(&self, mode: ReadMode) {
        let value = match mode {
            ReadMode::Passthrough => PASSTHROUGH,
            ReadMode::Store => STORE,
        };
        self.mode.store(value, Ordering::Relaxed);
    }
}

impl Inner {
    pub(crate) fn open(self: &Arc<Self>, ino: u64, reply: ReplyOpen) {
        self.request(&self.counters.opens);
        let Some(inode) = self.inodes.get(ino) else {
            return reply.error(Errno::ENOENT);
        };
        let Some((asset, size)) = inode.kind.asset() else {
            return reply.error(Errno::EINVAL);
        };
        match self.reads.mode() {
            ReadMode::Store => self.open_cached(reply),
            ReadMode::Passthrough if size == 0 => {
                reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE)
            }
            ReadMode::Passthrough => self.open_passthrough(ino, inode, asset, reply, true),
        }
    }

    /// Lets the kernel open the file itself and cache its pages; reads come to us.
    fn open_cached(&self, reply: ReplyOpen) {
        if self.reads.no_open.load(Ordering::Relaxed) {
            reply.error(Errno::ENOSYS);
        } else {
            reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE);
        }
    }

    fn open_passthrough(
        self: &Arc<Self>,
        ino: u64,
        inode: Inode,
        asset: AssetHash,
        reply: ReplyOpen,
        may_unpack: bool,
    ) {
        if let Some(id) = self.reads.backing.lock().shared(ino) {
            return reply.opened_passthrough(FileHandle(id.0), FopenFlags::FOPEN_NOFLUSH, &id.1);
        }
        // The store file is opened and registered without the lock: both are system calls,
        // and `release` on the other threads must not wait for them.
        let file = match self.store.open_asset(asset) {
            Ok(file) => file,
            Err(missing @ StoreError::AssetMissing { .. }) if may_unpack => {
                let inner = Arc::clone(self);
                return self.materialize(ino, &inode, missing, move |ok| {
                    if ok {
                        inner.open_passthrough(ino, inode, asset, reply, false);
                    } else {
                        reply.error(Errno::EIO);
                    }
                });
            }
            Err(source) => {
                self.log(ServeError::Asset {
                    path: self.path_of(ino),
                    source,
                });
                return reply.error(Errno::EIO);
            }
        };
        let registered = reply.open_backing(&file);
        drop(file);
        match registered {
            Ok(id) => {
                let mut backing = self.reads.backing.lock();
                // Another open of this inode may have registered it meanwhile; the kernel
                // wants one backing file per inode, so theirs wins and ours is closed.
                let (fh, id) = match backing.shared(ino) {
                    Some(theirs) => (theirs.0, theirs.1),
                    None => {
                        let id = Arc::new(id);
                        backing.by_inode.insert(ino, Arc::downgrade(&id));
                        (backing.hold(ino, Arc::clone(&id)), id)
                    }
                };
                drop(backing);
                reply.opened_passthrough(FileHandle(fh), FopenFlags::FOPEN_NOFLUSH, &id);
            }
            Err(source) => {
                self.reads.set_mode(ReadMode::Store);
                self.log(ServeError::Passthrough { source });
                // This open is served from the store like every later one.
                self.open_cached(reply);
            }
        }
    }

    pub(crate) fn release(&self, fh: u64) {
        let released = {
            let mut backing = self.reads.backing.lock();
            let released = backing.by_handle.remove(&fh);
            if let Some((ino, id)) = &released
                && Arc::strong_count(id) == 1
            {
                backing.by_inode.remove(ino);
            }
            released
        };
        // Dropped outside the lock: it closes the backing file in the kernel.
        drop(released);
    }

    pub(crate) fn read(self: &Arc<Self>, ino: u64, offset: u64, size: u32, reply: ReplyData) {
        self.request(&self.counters.reads);
        let Some(inode) = self.inodes.get(ino) else {
            return reply.error(Errno::ENOENT);
        };
        let Some((asset, len)) = inode.kind.asset() else {
            return reply.error(Errno::EISDIR);
        };
        if offset >= len {
            return reply.data(&[]);
        }
        let want = (len - offset).min(u64::from(size)) as usize;
        self.read_asset(ino, inode, asset, offset, want, reply, true);
    }

    #[allow(clippy::too_many_arguments)]
    fn read_asset(
        self: &Arc<Self>,
        ino: u64,
        inode: Inode,
        asset: AssetHash,
        offset: u64,
        want: usize,
        reply: ReplyData,
        may_unpack: bool,
    ) {
        let cached = self.reads.files.lock().get(&asset).cloned();
        let file = match cached {
            Some(file) => file,
            None => match self.store.open_asset(asset) {
                Ok(file) => {
                    let file = Arc::new(file);
                    self.reads.files.lock().put(asset, Arc::clone(&file));
                    file
                }
                Err(missing @ StoreError::AssetMissing { .. }) if may_unpack => {
                    let inner = Arc::clone(self);
                    return self.materialize(ino, &inode, missing, move |ok| {
                        if ok {
                            inner.read_asset(ino, inode, asset, offset, want, reply, false);
                        } else {
                            reply.error(Errno::EIO);
                        }
                    });
                }
                Err(source) => {
                    self.log(ServeError::Asset {
                        path: self.path_of(ino),
                        source,
                    });
                    return reply.error(Errno::EIO);
                }
            },
        };
        let mut buf = vec![0; want];
        let mut filled = 0;
        while filled < want {
            match file.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    self.log(ServeError::Read {
                        path: self.path_of(ino),
                        asset,
                        source,
                    });
                    return reply.error(Errno::EIO);
                }
            }
        }
        reply.data(&buf[..filled]);
    }

    /// Unpacks the package that ships `inode`, then calls `then(succeeded)` from the
    /// unpacking thread. Callers for the same package share one unpack.
    fn materialize(
        self: &Arc<Self>,
        ino: u64,
        inode: &Inode,
        missing: StoreError,
        then: impl FnOnce(bool) + Send + 'static,
    ) {
        let Some(package) = self.inodes.owner(inode) else {
            self.log(ServeError::Asset {
                path: self.path_of(ino),
                source: missing,
            });
            return then(false);
        };
        {
            let mut pending = self.reads.pending.lock();
            if let Some(waiters) = pending.get_mut(&package) {
                waiters.push(Box::new(then));
                return;
            }
            pending.insert(package, vec![Box::new(then)]);
        }
        bump(&self.counters.unpacks);
        bump(&self.counters.unpacking);
        let inner = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("mossfs-unpack".into())
            .spawn(move || {
                let ok = inner.fetch_stone(&package)
                    && match inner.store.ingest(&package) {
                        Ok(_) => true,
                        Err(source) => {
                            inner.log(ServeError::Ingest { package, source });
                            false
                        }
                    };
                inner.finish_unpack(package, ok);
            });
        if let Err(source) = spawned {
            self.log(ServeError::Thread { package, source });
            self.finish_unpack(package, false);
        }
    }

    /// Has the fetch hook put the stone of `package` in the cache, if it is not there;
    /// says whether the unpack can go on.
    fn fetch_stone(&self, package: &PackageId) -> bool {
        let Some(fetch) = &self.fetch else {
            return true;
        };
        if self.store.is_cached(package) {
            return true;
        }
        match fetch.fetch(package) {
            Ok(()) => true,
            Err(source) => {
                self.log(ServeError::Fetch {
                    package: *package,
                    source,
                });
                false
            }
        }
    }

    fn finish_unpack(&self, package: PackageId, ok: bool) {
        let waiters = self
            .reads
            .pending
            .lock()
            .remove(&package)
            .unwrap_or_default();
        self.counters.unpacking.fetch_sub(1, Ordering::Relaxed);
        for waiter in waiters {
            waiter(ok);
        }
    }
}
