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

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use rustix::fs::Mode;
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};
use rustix::process::Signal;

use crate::plan::Action;

/// The first argument that makes the mossfs binary act as a container helper.
pub const HELPER_ARG: &str = "__mossfs-container";

/// Devices bound into the container's `/dev`.
const DEVICES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];

/// Root links made inside the container, as on a managed root.
const ROOT_LINKS: [(&str, &str); 4] = [
    ("bin", "usr/bin"),
    ("sbin", "usr/sbin"),
    ("lib", "usr/lib"),
    ("lib64", "usr/lib"),
];

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
    /// How long one command may run.
    pub time_limit: Duration,
}

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
            Outcome::Exited(code) => write!(f, "exit status {code}"),
            Outcome::Signaled(sig) => write!(f, "killed by signal {sig}"),
            Outcome::TimedOut(limit) => {
                write!(f, "still running after {} s, killed", limit.as_secs_f64())
            }
            Outcome::NotStarted(why) => write!(f, "could not start: {why}"),
            Outcome::Setup(why) => write!(f, "the container could not be built: {why}"),
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
            self.time_limit.as_millis().to_string().into(),
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
    let deadline = Instant::now() + limit;
    if let Ok(pidfd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let timeout = rustix::time::Timespec {
                tv_sec: left.as_secs() as i64,
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

/// The helper's side. Call first thing in `main`: when the process was started as a
/// container helper, this does the helper's work and returns its exit code; otherwise it
/// returns `None` at once.
pub fn helper_main() -> Option<ExitCode> {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).map(OsString::as_os_str) != Some(OsStr::new(HELPER_ARG)) {
        return None;
    }
    let Some(spec) = Spec::decode(&args[2..]) else {
        eprintln!("mossfs: {HELPER_ARG} is internal: it takes arguments only mossfs writes");
        return Some(ExitCode::from(2));
    };
    // Whatever mossfs leaked stops here; only the status pipe goes on to "init".
    if let Err(e) = cloexec_above_stderr() {
        eprintln!("mossfs: cannot mark descriptors close-on-exec: {e}");
        return Some(ExitCode::from(2));
    }
    // SAFETY: mossfs gave this descriptor number for the status pipe and nothing else in
    // this fresh process owns it.
    let status = unsafe { File::from(OwnedFd::from_raw_fd(spec.status_fd)) };
    if spec.stage == "outer"
        && let Err(e) = rustix::io::fcntl_setfd(status.as_fd(), rustix::io::FdFlags::empty())
    {
        let _ = writeln!(&status, "setup keep the status pipe: {e}");
        return Some(ExitCode::SUCCESS);
    }
    let outcome = match spec.stage.as_str() {
        "outer" => outer(&spec),
        _ => init(&spec, &status),
    };
    if let Some(outcome) = outcome {
        let _ = writeln!(&status, "{outcome}");
    }
    Some(ExitCode::SUCCESS)
}

struct Spec {
    stage: String,
    status_fd: i32,
    raw: Vec<OsString>,
    limit: Duration,
    isolation: PathBuf,
    usr_mode: String,
    usr: [PathBuf; 3],
    etc: PathBuf,
    etc_writable: bool,
    action: Action,
}

impl Spec {
    fn decode(args: &[OsString]) -> Option<Spec> {
        let text = |i: usize| args.get(i).and_then(|a| a.to_str()).map(str::to_owned);
        let path = |i: usize| args.get(i).map(PathBuf::from);
        let kind = text(10)?;
        let rest: Vec<String> = args
            .get(11..)?
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let action = match kind.as_str() {
            "run" => Action::Run {
                program: rest.first()?.clone(),
                args: rest[1..].to_vec(),
            },
            "delete" => Action::Delete { paths: rest },
            _ => return None,
        };
        Some(Spec {
            stage: text(0)?,
            status_fd: text(1)?.parse().ok()?,
            raw: args.get(2..)?.to_vec(),
            limit: Duration::from_millis(text(2)?.parse().ok()?),
            isolation: path(3)?,
            usr_mode: text(4)?,
            usr: [path(5)?, path(6)?, path(7)?],
            etc: path(8)?,
            etc_writable: text(9)? == "rw",
            action,
        })
    }
}

/// A status line for the parent.
struct Line(String);

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// "outer": new namespaces, then "init" as PID 1, watched against the time limit.
fn outer(spec: &Spec) -> Option<Line> {
    // The parent may have died between fork and prctl.
    if rustix::process::getppid().is_none() {
        return Some(Line("setup parent: mossfs is gone".into()));
    }
    let flags = rustix::thread::UnshareFlags::NEWNS
        | rustix::thread::UnshareFlags::NEWPID
        | rustix::thread::UnshareFlags::NEWIPC
        | rustix::thread::UnshareFlags::NEWUTS
        | rustix::thread::UnshareFlags::NEWNET;
    // SAFETY: this process is single-threaded (fresh from execve) and the flags do not
    // include FILES, the case `unshare_unsafe` warns about.
    if let Err(e) = unsafe { rustix::thread::unshare_unsafe(flags) } {
        return Some(Line(format!(
            "setup unshare (mount, PID, IPC, UTS, network namespaces): {e}"
        )));
    }
    let mut command = Command::new("/proc/self/exe");
    command
        .arg(HELPER_ARG)
        .arg("init")
        .arg(spec.status_fd.to_string());
    command.args(&spec.raw);
    // SAFETY: only prctl between fork and exec.
    unsafe {
        command.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            Ok(())
        });
    }
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return Some(Line(format!("setup spawn init: {e}"))),
    };
    match wait_limited(child, spec.limit) {
        // "init" wrote its own line.
        Outcome::Exited(_) => None,
        Outcome::TimedOut(limit) => Some(Line(format!("timeout {}", limit.as_millis()))),
        other => Some(Line(format!("setup init: {other}"))),
    }
}

fn step(what: &str) -> impl Fn(rustix::io::Errno) -> String + '_ {
    move |e| format!("setup {what}: {e}")
}

/// "init": PID 1. Builds the root, runs the action, reaps, reports.
fn init(spec: &Spec, status: &File) -> Option<Line> {
    match build_root(spec) {
        Ok(()) => {}
        Err(line) => return Some(Line(line)),
    }
    match &spec.action {
        Action::Delete { paths } => {
            let mut log = std::io::stderr();
            Some(Line(status_line(&delete_paths(
                Path::new("/"),
                paths,
                &mut log,
            ))))
        }
        Action::Run { program, args } => {
            if let Err(e) = drop_capabilities() {
                return Some(Line(format!("setup drop capabilities: {e}")));
            }
            if let Err(e) = rustix::io::fcntl_setfd(status.as_fd(), rustix::io::FdFlags::CLOEXEC) {
                return Some(Line(format!("setup close status pipe: {e}")));
            }
            rustix::process::umask(Mode::from_raw_mode(0o022));
            let child = Command::new(program)
                .args(args)
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin")
                .env("LANG", "C")
                .current_dir("/")
                .stdin(Stdio::null())
                .spawn();
            let child = match child {
                Ok(child) => child,
                Err(e) => return Some(Line(format!("notstarted {program}: {e}"))),
            };
            let pid = rustix::process::Pid::from_child(&child);
            // As PID 1, reap everything until the trigger itself ends.
            loop {
                match rustix::process::waitpid(None, rustix::process::WaitOptions::empty()) {
                    Ok(Some((reaped, st))) if reaped == pid => {
                        let outcome = if let Some(code) = st.exit_status() {
                            Outcome::Exited(code)
                        } else if let Some(sig) = st.terminating_signal() {
                            Outcome::Signaled(sig)
                        } else {
                            Outcome::Setup("unexpected wait status".into())
                        };
                        return Some(Line(status_line(&outcome)));
                    }
                    Ok(_) => continue,
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => return Some(Line(format!("setup wait: {e}"))),
                }
            }
        }
    }
}

fn status_line(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Exited(code) => format!("exit {code}"),
        Outcome::Signaled(sig) => format!("signal {sig}"),
        Outcome::TimedOut(limit) => format!("timeout {}", limit.as_millis()),
        Outcome::NotStarted(why) => format!("notstarted {why}"),
        Outcome::Setup(why) => format!("setup {why}"),
    }
}

fn build_root(spec: &Spec) -> Result<(), String> {
    let iso = &spec.isolation;
    let at = |rel: &str| iso.join(rel);
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(step("make the mount tree private"))?;
    rustix::mount::mount(
        "mossfs",
        iso,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        Some(c"mode=0755,size=4m"),
    )
    .map_err(step("mount the root tmpfs"))?;
    for dir in ["usr", "etc", "proc", "tmp", "dev"] {
        rustix::fs::mkdir(at(dir), Mode::from_raw_mode(0o755))
            .map_err(step("create a root folder"))?;
    }
    for (name, target) in ROOT_LINKS {
        rustix::fs::symlink(target, at(name)).map_err(step("create a root link"))?;
    }
    match spec.usr_mode.as_str() {
        "overlay" => {
            let [lower, upper, work] = &spec.usr;
            let mut data = OsString::from("lowerdir=");
            data.push(lower);
            data.push(",upperdir=");
            data.push(upper);
            data.push(",workdir=");
            data.push(work);
            data.push(",redirect_dir=off,index=off,metacopy=off,xino=off");
            let data = std::ffi::CString::new(data.as_bytes())
                .map_err(|_| "setup mount the /usr overlay: a path holds a NUL byte".to_owned())?;
            rustix::mount::mount(
                "overlay",
                at("usr"),
                "overlay",
                MountFlags::empty(),
                Some(data.as_c_str()),
            )
            .map_err(step("mount the /usr overlay"))?;
        }
        _ => {
            rustix::mount::mount_bind(&spec.usr[0], at("usr")).map_err(step("bind /usr"))?;
            rustix::mount::mount_remount(
                at("usr"),
                MountFlags::BIND | MountFlags::RDONLY | MountFlags::NODEV,
                "",
            )
            .map_err(step("make /usr read-only"))?;
        }
    }
    if spec.etc.is_dir() {
        rustix::mount::mount_bind(&spec.etc, at("etc")).map_err(step("bind /etc"))?;
        if !spec.etc_writable {
            rustix::mount::mount_remount(
                at("etc"),
                MountFlags::BIND | MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV,
                "",
            )
            .map_err(step("make /etc read-only"))?;
        }
    }
    rustix::mount::mount(
        "proc",
        at("proc"),
        "proc",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        None,
    )
    .map_err(step("mount /proc"))?;
    for rel in ["proc/sys", "proc/sysrq-trigger"] {
        // A kernel without magic SysRq has no sysrq-trigger.
        if !at(rel).exists() {
            continue;
        }
        rustix::mount::mount_bind(at(rel), at(rel)).map_err(step("bind /proc/sys"))?;
        rustix::mount::mount_remount(
            at(rel),
            MountFlags::BIND | MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV,
            "",
        )
        .map_err(step("make /proc/sys read-only"))?;
    }
    rustix::mount::mount(
        "tmpfs",
        at("tmp"),
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        Some(c"mode=1777"),
    )
    .map_err(step("mount /tmp"))?;
    rustix::mount::mount(
        "tmpfs",
        at("dev"),
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        Some(c"mode=0755,size=64k"),
    )
    .map_err(step("mount /dev"))?;
    for dev in DEVICES {
        let target = at(&format!("dev/{dev}"));
        File::create(&target).map_err(|e| format!("setup create /dev/{dev}: {e}"))?;
        rustix::mount::mount_bind(format!("/dev/{dev}"), &target).map_err(step("bind a device"))?;
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        rustix::fs::symlink(target, at(&format!("dev/{name}")))
            .map_err(step("create a /dev link"))?;
    }
    rustix::system::sethostname(b"mossfs-trigger").map_err(step("set the host name"))?;
    rustix::process::chdir(iso).map_err(step("enter the new root"))?;
    rustix::process::pivot_root(".", ".").map_err(step("pivot_root"))?;
    rustix::mount::unmount(".", UnmountFlags::DETACH).map_err(step("detach the host root"))?;
    rustix::process::chdir("/").map_err(step("enter /"))?;
    rustix::mount::mount_remount(
        "/",
        MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV,
        "",
    )
    .map_err(step("make the root read-only"))?;
    Ok(())
}

/// Capabilities the trigger must not have: each could undo or see past the container.
fn drop_capabilities() -> rustix::io::Result<()> {
    use rustix::thread::CapabilitySet as C;
    for cap in [
        C::SYS_ADMIN,
        C::MKNOD,
        C::SYS_MODULE,
        C::SYS_RAWIO,
        C::SYS_PTRACE,
        C::SYS_TIME,
        C::SYS_BOOT,
        C::NET_ADMIN,
    ] {
        rustix::thread::remove_capability_from_bounding_set(cap)?;
    }
    Ok(())
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
