//! Running one trigger command in a namespace container (DESIGN.md §10).
//!
//! Three processes, each started fresh with `execve`, so that no namespace is set up after
//! `fork` in a threaded program (mossfs runs rayon and FUSE threads):
//!
//! ```text
//! mossfs ──spawn──▶ helper "outer"   PR_SET_PDEATHSIG=KILL; unshare(mount, PID, IPC, UTS, net);
//!                    │                enforces the time limit; kills "init" when it expires
//!                    └─spawn──▶ helper "init"   PID 1 of the new PID namespace, PDEATHSIG=KILL:
//!                                │   builds the root step by step, pivot_root, drops the
//!                                │   capabilities that could undo the container
//!                                └─spawn──▶ the trigger's program, clean environment
//! ```
//!
//! The helpers are the mossfs binary itself, started with [`HELPER_ARG`]; the binary calls
//! [`helper_main`] first thing. When "init" exits, the kernel kills every process left in
//! its PID namespace and waits for them, so a trigger cannot leave a daemon behind, and the
//! mount namespace (with the overlay and every bind) dies with it: nothing is mounted on
//! the host at any time. A kill of mossfs reaches "outer" and then "init" through
//! `PR_SET_PDEATHSIG`.
//!
//! The root is a fresh tmpfs on the isolation directory, holding only: `/usr` (an overlay
//! whose lower layer is the staging tree and whose upper layer collects every write, or a
//! read-only bind for system triggers), `/etc` (a bind of `ROOT/etc`, read-only unless asked),
//! a fresh `/proc` with `/proc/sys` read-only, a tmpfs `/tmp`, a tmpfs `/dev` with `null`,
//! `zero`, `full`, `random` and `urandom`, and the root links into `usr`. The network
//! namespace has only a loopback device, down. The program runs with `PATH=/usr/sbin:/usr/bin`,
//! `LANG=C`, umask 022, stdin `/dev/null`, stdout and stderr into the log, and no other
//! descriptor; its capability bounding set lacks `CAP_SYS_ADMIN` (so it cannot remount
//! `/etc` writable or unmount the overlay), `CAP_MKNOD`, `CAP_SYS_MODULE`, `CAP_SYS_RAWIO`,
//! `CAP_SYS_PTRACE`, `CAP_SYS_TIME`, `CAP_SYS_BOOT` and `CAP_NET_ADMIN`.
//!
//! Why an overlay: every regular file of the staging tree is a hardlink to a store asset
//! shared by every state, so `echo x >> /usr/lib/libfoo.so` in a plain bind would change
//! them all. Through the overlay, the kernel copies the file up first; the lower file, and
//! so the store, is never written. `metacopy`, `redirect_dir` and `index` are off, so the
//! upper layer holds whole files and nothing refers back into the lower one.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::plan::Action;

mod helper;
mod rootfs;

pub use helper::helper_main;

/// The first argument that makes the mossfs binary act as a container helper.
pub const HELPER_ARG: &str = "__mossfs-container";

/// Where the container's `/usr` comes from.
#[derive(Debug, Clone)]
pub enum UsrView {
    /// An overlay: `lower` is read, every write lands in `upper`. `upper` and `work` must be
    /// empty or left by an earlier run over the same `lower`, on one file system.
    Overlay {
        /// The staging tree.
        lower: PathBuf,
        /// Collects what triggers write.
        upper: PathBuf,
        /// Overlayfs's scratch directory.
        work: PathBuf,
    },
    /// A read-only bind, for system triggers on a root whose `/usr` is already live: the
    /// state's `/usr` is what transaction triggers and packages made, and its files are
    /// the store's.
    ReadOnly(PathBuf),
}

/// A container to run trigger commands in.
#[derive(Debug, Clone)]
pub struct Container {
    /// The mossfs binary, which acts as the helper.
    pub helper: PathBuf,
    /// An empty directory the new root is mounted on (`.moss/root/isolation`).
    pub isolation: PathBuf,
    /// The `/usr` view.
    pub usr: UsrView,
    /// `ROOT/etc`; an empty `/etc` when it does not exist.
    pub etc: PathBuf,
    /// Whether `/etc` is writable (system triggers).
    pub etc_writable: bool,
    /// How long one command may run; at most [`MAX_TIME_LIMIT`] is used.
    pub time_limit: Duration,
}

/// The longest a trigger command may run, whatever it is given: a week. A longer limit
/// would never be reached, and this keeps the deadline's arithmetic and the limit's trip
/// through the helper's arguments (in milliseconds) in range.
pub const MAX_TIME_LIMIT: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It exited with this status.
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
    /// It ran past the time limit and was killed, with everything it started.
    TimedOut(Duration),
    /// It could not be started (not found, not executable).
    NotStarted(String),
    /// The container could not be built; the step and what failed.
    Setup(String),
}

impl Outcome {
    /// Whether the command succeeded.
    pub fn success(&self) -> bool {
        *self == Outcome::Exited(0)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Exited(code) => write!(f, "exited with status {code}"),
            Outcome::Signaled(sig) => write!(f, "was killed by signal {sig}"),
            Outcome::TimedOut(limit) => write!(
                f,
                "was still running after {} s and was killed",
                limit.as_secs_f64()
            ),
            Outcome::NotStarted(why) => write!(f, "could not start: {why}"),
            Outcome::Setup(why) => {
                write!(f, "could not run: the container could not be built: {why}")
            }
        }
    }
}

/// Why a command could not be run at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The helper could not be started.
    #[error("cannot start the container helper {}", .helper.display())]
    Spawn {
        /// The helper binary.
        helper: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The status pipe or the log could not be used.
    #[error("cannot talk to the container helper")]
    Pipe(#[source] std::io::Error),
    /// A path that cannot be passed to overlayfs (it holds ',' or ':').
    #[error("cannot use {} in an overlay mount: it contains ',' or ':'", .0.display())]
    OverlayPath(PathBuf),
}

impl Container {
    /// Runs one action in a fresh container; its output goes to `log`.
    pub fn run(&self, action: &Action, log: &File) -> Result<Outcome, RunError> {
        if let UsrView::Overlay { lower, upper, work } = &self.usr {
            for p in [lower, upper, work] {
                if p.as_os_str()
                    .as_bytes()
                    .iter()
                    .any(|&b| b == b',' || b == b':')
                {
                    return Err(RunError::OverlayPath(p.clone()));
                }
            }
        }
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| RunError::Pipe(e.into()))?;
        let mut args = vec![
            OsString::from(HELPER_ARG),
            OsString::from("outer"),
            OsString::from(write.as_raw_fd().to_string()),
        ];
        args.extend(self.encode(action));
        let mut command = Command::new(&self.helper);
        command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(RunError::Pipe)?)
            .stderr(log.try_clone().map_err(RunError::Pipe)?);
        let write_fd = write.as_raw_fd();
        // SAFETY: the closure runs between fork and exec and makes only async-signal-safe
        // system calls (prctl, fcntl), allocating nothing.
        unsafe {
            command.pre_exec(move || {
                rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
                // The status pipe is the one descriptor the helper inherits.
                let fd = std::os::fd::BorrowedFd::borrow_raw(write_fd);
                rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|source| RunError::Spawn {
            helper: self.helper.clone(),
            source,
        })?;
        drop(write);
        let mut status = String::new();
        let read_result = File::from(read).read_to_string(&mut status);
        let exit = child.wait().map_err(RunError::Pipe)?;
        read_result.map_err(RunError::Pipe)?;
        Ok(parse_status(&status).unwrap_or_else(|| {
            Outcome::Setup(format!("the helper ended ({exit}) without saying how"))
        }))
    }

    fn encode(&self, action: &Action) -> Vec<OsString> {
        let mut out: Vec<OsString> = vec![
            self.time_limit
                .min(MAX_TIME_LIMIT)
                .as_millis()
                .to_string()
                .into(),
            self.isolation.clone().into(),
        ];
        match &self.usr {
            UsrView::Overlay { lower, upper, work } => {
                out.extend([
                    "overlay".into(),
                    lower.clone().into(),
                    upper.clone().into(),
                    work.clone().into(),
                ]);
            }
            UsrView::ReadOnly(usr) => {
                out.extend(["readonly".into(), usr.clone().into(), "".into(), "".into()]);
            }
        }
        out.push(self.etc.clone().into());
        out.push(if self.etc_writable { "rw" } else { "ro" }.into());
        match action {
            Action::Run { program, args } => {
                out.push("run".into());
                out.push(program.into());
                out.extend(args.iter().map(OsString::from));
            }
            Action::Delete { paths } => {
                out.push("delete".into());
                out.extend(paths.iter().map(OsString::from));
            }
        }
        out
    }
}

/// Runs one action directly on the host (system triggers when the root is `/`), with the
/// same clean environment and time limit, and the child killed if mossfs dies.
pub fn run_on_host(action: &Action, log: &File, time_limit: Duration) -> Result<Outcome, RunError> {
    match action {
        Action::Delete { paths } => {
            let mut log = log;
            Ok(delete_paths(Path::new("/"), paths, &mut log))
        }
        Action::Run { program, args } => {
            let mut command = Command::new(program);
            command
                .args(args)
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin")
                .env("LANG", "C")
                .current_dir("/")
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(RunError::Pipe)?)
                .stderr(log.try_clone().map_err(RunError::Pipe)?);
            // SAFETY: only prctl and close_range between fork and exec, both
            // async-signal-safe.
            unsafe {
                command.pre_exec(|| {
                    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
                    cloexec_above_stderr()
                });
            }
            let child = match command.spawn() {
                Ok(child) => child,
                Err(e) => return Ok(Outcome::NotStarted(format!("{program}: {e}"))),
            };
            Ok(wait_limited(child, time_limit))
        }
    }
}

/// Marks every descriptor from 3 up close-on-exec, so that nothing mossfs holds (its LMDB
/// file has no `O_CLOEXEC`) reaches a trigger. Async-signal-safe: one system call.
fn cloexec_above_stderr() -> std::io::Result<()> {
    // SAFETY: close_range only changes descriptor flags; it touches no memory.
    let rc = unsafe { libc::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as i32) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Waits for `child` up to `limit`, killing it at the limit.
fn wait_limited(mut child: std::process::Child, limit: Duration) -> Outcome {
    let pid = rustix::process::Pid::from_child(&child);
    let limit = limit.min(MAX_TIME_LIMIT);
    let deadline = Instant::now() + limit;
    if let Ok(pidfd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let timeout = rustix::time::Timespec {
                tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            let mut fds = [rustix::event::PollFd::new(
                &pidfd,
                rustix::event::PollFlags::IN,
            )];
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(0) => {
                    let _ = rustix::process::pidfd_send_signal(&pidfd, Signal::KILL);
                    let _ = child.wait();
                    return Outcome::TimedOut(limit);
                }
                Ok(_) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => break,
            }
        }
    }
    match child.wait() {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => Outcome::Exited(code),
            (None, Some(sig)) => Outcome::Signaled(sig),
            _ => Outcome::Setup(format!("unexpected status {status}")),
        },
        Err(e) => Outcome::Setup(format!("cannot wait for the command: {e}")),
    }
}

fn parse_status(text: &str) -> Option<Outcome> {
    let line = text.lines().next()?;
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    Some(match word {
        "exit" => Outcome::Exited(rest.parse().ok()?),
        "signal" => Outcome::Signaled(rest.parse().ok()?),
        "timeout" => Outcome::TimedOut(Duration::from_millis(rest.parse().ok()?)),
        "notstarted" => Outcome::NotStarted(rest.to_owned()),
        "setup" => Outcome::Setup(rest.to_owned()),
        _ => return None,
    })
}

/// A `delete` handler: removes each path below `root` (files, links, or whole folders).
/// A path that is already gone is not an error.
fn delete_paths(root: &Path, paths: &[String], log: &mut dyn Write) -> Outcome {
    for path in paths {
        let Some(rel) = path.strip_prefix('/') else {
            let _ = writeln!(log, "delete: {path} is not an absolute path");
            return Outcome::Exited(1);
        };
        if rel.split('/').any(|c| c == "..") {
            let _ = writeln!(log, "delete: {path} contains '..'");
            return Outcome::Exited(1);
        }
        let target = root.join(rel);
        let result = match std::fs::symlink_metadata(&target) {
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&target),
            Ok(_) => std::fs::remove_file(&target),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            let _ = writeln!(log, "delete: cannot delete {path}: {e}");
            return Outcome::Exited(1);
        }
    }
    Outcome::Exited(0)
}

#[cfg(test)]
mod tests {
    use super::helper::status_line;
    use super::*;

    #[test]
    fn status_lines_round_trip() {
        for outcome in [
            Outcome::Exited(3),
            Outcome::Signaled(9),
            Outcome::TimedOut(Duration::from_millis(1500)),
            Outcome::NotStarted("x: not found".into()),
            Outcome::Setup("mount /proc: EPERM".into()),
        ] {
            assert_eq!(parse_status(&status_line(&outcome)), Some(outcome));
        }
        assert_eq!(parse_status(""), None);
    }

    #[test]
    fn delete_refuses_relative_and_dotdot_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = Vec::new();
        assert_eq!(
            delete_paths(dir.path(), &["usr/x".into()], &mut log),
            Outcome::Exited(1)
        );
        assert_eq!(
            delete_paths(dir.path(), &["/usr/../x".into()], &mut log),
            Outcome::Exited(1)
        );
        std::fs::create_dir_all(dir.path().join("usr/a/b")).expect("mkdir");
        assert_eq!(
            delete_paths(dir.path(), &["/usr/a".into(), "/usr/gone".into()], &mut log),
            Outcome::Exited(0)
        );
        assert!(!dir.path().join("usr/a").exists());
    }
}
