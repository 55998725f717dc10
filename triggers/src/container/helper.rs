//! The helper processes: "outer" (namespaces and the time limit) and "init" (PID 1: the
//! root, the trigger, the reaping). See the module above for the whole picture.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use rustix::fs::Mode;
use rustix::process::Signal;

use super::{HELPER_ARG, Outcome, cloexec_above_stderr, delete_paths, wait_limited};
use crate::plan::Action;

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

pub(super) struct Spec {
    pub(super) stage: String,
    pub(super) status_fd: i32,
    pub(super) raw: Vec<OsString>,
    pub(super) limit: Duration,
    pub(super) isolation: PathBuf,
    pub(super) usr_mode: String,
    pub(super) usr: [PathBuf; 3],
    pub(super) etc: PathBuf,
    pub(super) etc_writable: bool,
    pub(super) action: Action,
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
            // Only a pipe mossfs opened above stdin, stdout and stderr; anything else is not
            // this helper being run by mossfs, and `from_raw_fd` must never see -1.
            status_fd: text(1)?.parse().ok().filter(|fd: &i32| *fd > 2)?,
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

/// "init": PID 1. Builds the root, runs the action, reaps, reports.
fn init(spec: &Spec, status: &File) -> Option<Line> {
    match super::rootfs::build_root(spec) {
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
            if let Err(e) = super::rootfs::drop_capabilities() {
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

pub(super) fn status_line(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Exited(code) => format!("exit {code}"),
        Outcome::Signaled(sig) => format!("signal {sig}"),
        Outcome::TimedOut(limit) => format!("timeout {}", limit.as_millis()),
        Outcome::NotStarted(why) => format!("notstarted {why}"),
        Outcome::Setup(why) => format!("setup {why}"),
    }
}
