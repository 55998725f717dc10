//! SIGINT, SIGTERM and SIGHUP for a foreground mount, turned into messages.
//!
//! A signal handler may do almost nothing, and unmounting is not among it. So while
//! [`super::run`] serves, these signals get a handler that writes one byte to a socket (the
//! self-pipe trick, as `signal-hook` does); a thread reads the socket and sends a message
//! to the thread that owns the mount. Whichever thread the kernel picks to take the
//! signal, it ends up as the same message, so callers need not block signals anywhere.
//!
//! The socket pair lives as long as the process: a handler already running on another
//! thread when [`Forwarder::stop`] restores the old handlers may still write to it, and
//! must not hit a closed or reused descriptor. Only one forwarder runs at a time.

use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;

const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];
const SIGNALLED: u8 = 1;
const STOP: u8 = 0;

/// Where the handler writes; -1 when no forwarder runs.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
static RUNNING: AtomicBool = AtomicBool::new(false);
static SOCKETS: OnceLock<(UnixStream, UnixStream)> = OnceLock::new();

extern "C" fn on_signal(_signal: libc::c_int) {
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let byte = SIGNALLED;
        // SAFETY: write(2) is async-signal-safe; the buffer is a live local byte and the
        // descriptor is never closed (see the module docs). A full socket drops the byte,
        // which is fine: one pending byte already wakes the reader.
        unsafe { libc::write(fd, (&raw const byte).cast(), 1) };
    }
}

fn sockets() -> io::Result<&'static (UnixStream, UnixStream)> {
    if let Some(sockets) = SOCKETS.get() {
        return Ok(sockets);
    }
    let (reader, writer) = UnixStream::pair()?;
    writer.set_nonblocking(true)?;
    Ok(SOCKETS.get_or_init(|| (reader, writer)))
}

/// The handlers and the thread that forwards signals; [`Forwarder::stop`] ends both.
pub(crate) struct Forwarder {
    old: Vec<(libc::c_int, libc::sigaction)>,
    thread: Option<JoinHandle<()>>,
}

impl Forwarder {
    /// Installs the handlers and starts the thread that sends `message()` for each signal.
    pub(crate) fn start<M: Send + 'static>(
        to: Sender<M>,
        message: impl Fn() -> M + Send + 'static,
    ) -> io::Result<Forwarder> {
        if RUNNING.swap(true, Ordering::SeqCst) {
            return Err(io::Error::other(
                "another foreground mount already handles signals",
            ));
        }
        let mut forwarder = Forwarder {
            old: Vec::new(),
            thread: None,
        };
        let (reader, writer) = sockets()?;
        // Bytes left by a late handler of an earlier forwarder are not signals for this one.
        reader.set_nonblocking(true)?;
        while (&*reader).read(&mut [0u8; 64]).is_ok_and(|n| n > 0) {}
        reader.set_nonblocking(false)?;
        let reader = reader.try_clone()?;
        forwarder.thread = Some(
            std::thread::Builder::new()
                .name("mossfs-signals".into())
                .spawn(move || {
                    let mut byte = [0u8];
                    while let Ok(1) = (&reader).read(&mut byte) {
                        if byte[0] == STOP || to.send(message()).is_err() {
                            return;
                        }
                    }
                })?,
        );
        WAKE_FD.store(writer.as_raw_fd(), Ordering::SeqCst);
        for signal in SIGNALS {
            let mut action = MaybeUninit::<libc::sigaction>::zeroed();
            let mut old = MaybeUninit::<libc::sigaction>::zeroed();
            // SAFETY: both structs are zeroed (a valid sigaction: no flags, empty mask)
            // and then filled in; sigaction(2) only reads `action` and writes `old`.
            let code = unsafe {
                let action = action.as_mut_ptr();
                (*action).sa_sigaction =
                    on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
                (*action).sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut (*action).sa_mask);
                libc::sigaction(signal, action, old.as_mut_ptr())
            };
            if code != 0 {
                let error = io::Error::last_os_error();
                forwarder.stop();
                return Err(error);
            }
            // SAFETY: sigaction succeeded, so it filled `old`.
            forwarder.old.push((signal, unsafe { old.assume_init() }));
        }
        Ok(forwarder)
    }

    /// Restores the old handlers and ends the thread.
    pub(crate) fn stop(mut self) {
        for (signal, old) in self.old.drain(..) {
            // SAFETY: `old` is what sigaction(2) returned for this signal.
            unsafe { libc::sigaction(signal, &old, std::ptr::null_mut()) };
        }
        WAKE_FD.store(-1, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            if let Some((_, writer)) = SOCKETS.get() {
                // The socket only fills up under a flood of signals, which the thread drains.
                while let Err(e) = (&*writer).write(&[STOP]) {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        break;
                    }
                    std::thread::yield_now();
                }
            }
            let _ = thread.join();
        }
        RUNNING.store(false, Ordering::SeqCst);
    }
}
