//! Keeping the serving thread awake through a burst of requests.
//!
//! A request costs the server a few microseconds; what makes it slow is the wakeup before
//! it. The kernel queues the request and wakes the server, which sleeps in `read` on
//! `/dev/fuse`, and when the server's CPU went idle meanwhile that wakeup crosses CPUs and
//! leaves an idle state (on a VM, a halted vCPU, which costs an exit to the host). A walk
//! or a `cat` of many small files is thousands of such requests back to back.
//!
//! So once a request arrives, `/dev/fuse` is switched to non-blocking and the serving loop
//! polls it (fuser retries `EAGAIN` at once), and a watcher thread switches it back to
//! blocking once [`WINDOW`] has passed without a request. A busy mount thus answers from a
//! thread that is already running, and an idle one sleeps: a burst costs one CPU for its
//! length plus at most two windows. With one CPU, polling would only take time from the
//! process waiting for the answer, so it is off.
//!
//! The switch is only ever a matter of speed: a request that finds the fd blocking wakes
//! the server as before, and the request that woke it turns polling on again.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use rustix::fs::OFlags;

/// How long the server polls after the last request. A walk's requests come at most a
/// few hundred microseconds apart (the time a program takes to go through one listing);
/// anything longer is a pause worth sleeping through.
const WINDOW: Duration = Duration::from_millis(2);

/// The switch between polling and sleeping, shared by the serving thread (through
/// [`Awake::request`]) and the watcher.
pub(super) struct Awake {
    /// A duplicate of the session's `/dev/fuse` fd: the flag belongs to the open file, so
    /// setting it here changes how the serving loop's reads behave.
    fd: OwnedFd,
    start: Instant,
    /// Nanoseconds from `start` to the last request.
    last: AtomicU64,
    polling: AtomicBool,
    /// Held for every change of the flag, of `polling` and of `ended`, so that they agree
    /// and the watcher, which waits on `changed`, misses none.
    switch: Mutex<()>,
    changed: Condvar,
    ended: AtomicBool,
    /// Times polling was turned on, for tests and benchmarks.
    bursts: AtomicU64,
}

impl Awake {
    /// Starts the watcher for the session whose fd `fd` duplicates. `None` on a single
    /// CPU, or when the thread cannot be started (the mount then works as without it).
    pub(super) fn start(fd: OwnedFd) -> Option<Arc<Awake>> {
        if std::thread::available_parallelism().is_ok_and(|n| n.get() < 2) {
            return None;
        }
        let awake = Arc::new(Awake {
            fd,
            start: Instant::now(),
            last: AtomicU64::new(0),
            polling: AtomicBool::new(false),
            switch: Mutex::new(()),
            changed: Condvar::new(),
            ended: AtomicBool::new(false),
            bursts: AtomicU64::new(0),
        });
        let watcher = Arc::clone(&awake);
        std::thread::Builder::new()
            .name("mossfs-awake".into())
            .spawn(move || watcher.watch())
            .ok()?;
        Some(awake)
    }

    /// Notes a request; the first of a burst turns polling on.
    pub(super) fn request(&self) {
        self.last.store(self.now(), Ordering::Relaxed);
        if self.polling.load(Ordering::Relaxed) {
            return;
        }
        let _switch = self.switch.lock();
        if !self.polling.load(Ordering::Relaxed) && self.set_polling(true) {
            self.polling.store(true, Ordering::Relaxed);
            self.bursts.fetch_add(1, Ordering::Relaxed);
            self.changed.notify_one();
        }
    }

    pub(super) fn bursts(&self) -> u64 {
        self.bursts.load(Ordering::Relaxed)
    }

    fn watch(&self) {
        let mut switch = self.switch.lock();
        while !self.ended.load(Ordering::Relaxed) {
            if !self.polling.load(Ordering::Relaxed) {
                self.changed.wait(&mut switch);
                continue;
            }
            let idle = self.idle();
            if idle < WINDOW {
                self.changed.wait_for(&mut switch, WINDOW - idle);
                continue;
            }
            // A request since the check only means one more wakeup.
            if self.set_polling(false) {
                self.polling.store(false, Ordering::Relaxed);
            }
        }
    }

    fn idle(&self) -> Duration {
        Duration::from_nanos(self.now().saturating_sub(self.last.load(Ordering::Relaxed)))
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Turns `O_NONBLOCK` on or off; `false` if the kernel refused, which leaves the
    /// serving loop as it was.
    fn set_polling(&self, on: bool) -> bool {
        let Ok(flags) = rustix::fs::fcntl_getfl(&self.fd) else {
            return false;
        };
        let flags = if on {
            flags | OFlags::NONBLOCK
        } else {
            flags - OFlags::NONBLOCK
        };
        rustix::fs::fcntl_setfl(&self.fd, flags).is_ok()
    }
}

/// Held by the serving thread: stops the watcher when serving ends, or when the thread
/// could not be started and its closure is dropped. The fd is closed with the last handle.
pub(super) struct Serving(pub(super) Option<Arc<Awake>>);

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(awake) = &self.0 {
            let _switch = awake.switch.lock();
            awake.ended.store(true, Ordering::Relaxed);
            awake.changed.notify_one();
        }
    }
}
