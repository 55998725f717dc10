//! `mossfs mount` and `mossfs umount` (issue 4, DESIGN.md §7): any state, browsed read-only
//! through FUSE, served by `mossfs_fs::fuse`.
//!
//! The subcommand must be called `mount`: the background server is this binary run again as
//! `mossfs mount --foreground ...`.
//!
//! **Background by default.** `mount` checks everything it can first (the root, the state,
//! the mount point, `/dev/fuse`) so that mistakes are reported by the command itself. Then it
//! starts the server: the same binary with `--foreground` and a hidden `--ready-fd`, in a
//! session of its own (`setsid`), with its working directory at `/`, stdin from `/dev/null`,
//! and stdout and stderr appended to `ROOT/.moss/mounts/mount.log`. The server writes
//! `ready <mode> <pid>` on that socket once the kernel has mounted it and completed the first
//! exchange, or `error <message>` if it failed first; the command waits for that line (at
//! most [`READY_WITHIN`]) and prints it. There is no polling and no guessing.
//!
//! **Foreground.** `--foreground` serves in this process until the mount goes away:
//! `mossfs umount`, or Ctrl-C, SIGTERM or SIGHUP, which unmount it cleanly.
//!
//! The root is opened for reading: no lock is taken, so a mount never waits for a writer
//! and never blocks one. The server registers the state it serves (`engine::mounts`) for
//! as long as it serves it, so that `state remove` and `prune` leave that state alone.

use std::error::Error;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use mossfs_db::{Query, StateId, Status};
use mossfs_fs::fuse::{self, FsOptions, MossFs, MountError, ReadMode};

use super::RootArg;
use crate::engine::mounts::Gate;
use crate::engine::{EngineError, Root};

/// How long `mount` waits for its background server to be ready. Mounting is O(1) in the
/// size of the state, so anything near this is a hung server.
pub const READY_WITHIN: Duration = Duration::from_secs(10);

/// `mossfs mount`.
#[derive(clap::Args, Debug)]
pub struct MountArgs {
    /// The state to mount; the default is the active state.
    #[arg(long, value_name = "ID", conflicts_with = "candidate")]
    pub state: Option<u64>,
    /// Mount the newest candidate state instead of the active one.
    #[arg(long)]
    pub candidate: bool,
    /// Add .mossfs/conflicts/ (every contender of a conflicted path, side by side) and the
    /// user.mossfs.owner xattr (the package that ships each path).
    #[arg(long)]
    pub debug_view: bool,
    /// Serve in this process until unmounted; Ctrl-C or SIGTERM unmounts cleanly.
    #[arg(long)]
    pub foreground: bool,
    /// Internal: the socket on which a background server reports that it is ready.
    #[arg(long, hide = true, value_name = "FD")]
    pub ready_fd: Option<RawFd>,
    #[command(flatten)]
    pub root: RootArg,
    /// Where to mount: an empty directory.
    pub mountpoint: PathBuf,
}

/// `mossfs umount`.
#[derive(clap::Args, Debug)]
pub struct UmountArgs {
    /// A mossfs mount point.
    pub mountpoint: PathBuf,
}

/// Why `mount` or `umount` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MountCommandError {
    /// The root could not be opened or read.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Mounting or unmounting failed.
    #[error(transparent)]
    Fuse(#[from] MountError),
    /// `mount` without `--state` on a root where nothing was committed yet.
    #[error(
        "{} has no active state yet; mount a staged one with --candidate, or pick one with --state (see 'mossfs state list')",
        .root.display()
    )]
    NoActiveState {
        /// The root.
        root: PathBuf,
    },
    /// `mount --candidate` with no candidate recorded.
    #[error("{} has no candidate state; stage one with 'mossfs install --stage FILE.stone'", .root.display())]
    NoCandidate {
        /// The root.
        root: PathBuf,
    },
    /// The background server could not be started.
    #[error("cannot start the mount server {}", .exe.display())]
    Spawn {
        /// The binary.
        exe: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The background server failed before it was ready, and said why.
    #[error("the mount server failed: {message}")]
    Server {
        /// Its one-line error.
        message: String,
    },
    /// The background server exited without saying why.
    #[error("the mount server exited ({status}) before it was ready; see {}", .log.display())]
    ServerExited {
        /// How it ended.
        status: ExitStatus,
        /// Its log.
        log: PathBuf,
    },
    /// The background server did not answer in time; it was stopped.
    #[error("the mount server was not ready within {} s and was stopped; see {}", READY_WITHIN.as_secs(), .log.display())]
    NotReady {
        /// Its log.
        log: PathBuf,
    },
    /// Talking to the background server failed.
    #[error("cannot talk to the mount server")]
    Socket(#[source] io::Error),
    /// `--ready-fd` is not an open descriptor.
    #[error("--ready-fd {0} is not an open descriptor (it is for mossfs itself)")]
    BadReadyFd(RawFd),
    /// Printing failed.
    #[error("cannot write output")]
    Output(#[from] io::Error),
}

type Result<T, E = MountCommandError> = std::result::Result<T, E>;

/// The state to mount, with how to describe it.
struct Target {
    id: StateId,
    what: &'static str,
    /// Said last: a candidate with transaction triggers does not show their output yet.
    note: Option<String>,
}

/// Runs `mossfs mount`.
pub fn mount(args: &MountArgs, out: &mut dyn Write) -> Result<()> {
    let mut ready = match args.ready_fd {
        Some(fd) => Some(ready_socket(fd)?),
        None => None,
    };
    let result = mount_inner(args, &mut ready, out);
    if let (Err(error), Some(mut socket)) = (&result, ready) {
        // The waiting command prints this line; the log keeps the full error too.
        let _ = writeln!(socket, "error {}", one_line(error));
    }
    result
}

fn mount_inner(
    args: &MountArgs,
    ready: &mut Option<UnixStream>,
    out: &mut dyn Write,
) -> Result<()> {
    let root = Root::open_read(&args.root.root)?;
    super::report_recovery(&root);
    let target = resolve_state(&root, args)?;
    fuse::check_available()?;
    let mountpoint = fuse::check_mountpoint(&args.mountpoint)?;
    if !args.foreground {
        return background(args, &root.path, &target, &mountpoint, out);
    }
    let Root { db, store, .. } = root;
    let label = mountpoint.display().to_string();
    let pid = std::process::id();
    // Through tracing like every diagnostic, so MOSSFS_LOG and --log reach the server's
    // log (ROOT/.moss/mounts/mount.log in the background) too.
    let log: fuse::Log = Arc::new(move |error| {
        tracing::warn!("mossfs[{pid}] {label}: {}", one_line(error));
    });
    // A candidate staged from a repository's heads downloads a package on its first read.
    let fetch = crate::engine::preview::RepoFetcher::new(db.clone(), store.cache_dir().to_owned());
    let options = FsOptions {
        debug_view: args.debug_view,
        log: Some(log),
        fetch: Some(Arc::new(fetch)),
        ..FsOptions::default()
    };
    // Registered before the snapshot opens, under the gate: see `engine::mounts`.
    let gate = Gate::take(&args.root.root)?;
    let _registration = gate.register(target.id, &mountpoint)?;
    let fs = MossFs::new(&db, store, target.id, options)?;
    drop(gate);
    let mut printed = Ok(());
    fuse::run(fs, &mountpoint, |mount| {
        let mode = mount.read_mode();
        if let Some(mut socket) = ready.take() {
            let word = if mode == ReadMode::Passthrough {
                "passthrough"
            } else {
                "store"
            };
            let _ = writeln!(socket, "ready {word} {}", std::process::id());
        }
        printed = announce(out, &target, &mountpoint, mode).and_then(|()| {
            writeln!(
                out,
                "serving in the foreground; Ctrl-C or 'mossfs umount {}' unmounts",
                mountpoint.display()
            )?;
            if let Some(note) = &target.note {
                writeln!(out, "{note}")?;
            }
            out.flush()
        });
    })?;
    printed?;
    writeln!(out, "unmounted {}", mountpoint.display())?;
    Ok(())
}

/// Runs `mossfs umount`.
pub fn umount(args: &UmountArgs, out: &mut dyn Write) -> Result<()> {
    fuse::unmount(&args.mountpoint)?;
    writeln!(out, "unmounted {}", args.mountpoint.display())?;
    Ok(())
}

fn resolve_state(root: &Root, args: &MountArgs) -> Result<Target> {
    let txn = root.db.read().map_err(EngineError::from)?;
    let active = root.live_state(&txn)?;
    let id = match (args.state, args.candidate) {
        (Some(id), _) => StateId(id),
        (None, true) => txn
            .states()
            .map_err(EngineError::from)?
            .iter()
            .filter(|state| state.status == Status::Candidate)
            .map(|state| state.id)
            .max()
            .ok_or_else(|| MountCommandError::NoCandidate {
                root: root.path.clone(),
            })?,
        (None, false) => active.ok_or_else(|| MountCommandError::NoActiveState {
            root: root.path.clone(),
        })?,
    };
    let state = match txn.state(id) {
        Ok(state) => state,
        Err(mossfs_db::DbError::NoState(state)) => return Err(MountError::NoState { state }.into()),
        Err(e) => return Err(EngineError::from(e).into()),
    };
    let what = match state.status {
        _ if active == Some(id) => "active",
        Status::Candidate => "candidate",
        Status::InFlight => "being committed",
        Status::Committed => "archived",
    };
    // Transaction triggers run when a state is committed; until then nothing of theirs is
    // in its tree (DESIGN.md §10).
    let has_triggers = mossfs_format::RelPath::new("share/moss/triggers/tx.d")
        .ok()
        .map(|dir| txn.lookup(state.root, &dir))
        .transpose()
        .map_err(EngineError::from)?
        .flatten()
        .is_some();
    let note = (state.status == Status::Candidate && has_triggers && state.generated.is_empty())
        .then(|| {
        format!(
            "note: state {id} is a candidate: its transaction triggers run when it is committed, so no file they generate is shown yet"
        )
    });
    Ok(Target { id, what, note })
}

fn announce(
    out: &mut dyn Write,
    target: &Target,
    mountpoint: &Path,
    mode: ReadMode,
) -> io::Result<()> {
    writeln!(
        out,
        "mounted state {} ({}) at {}",
        target.id,
        target.what,
        mountpoint.display()
    )?;
    writeln!(out, "reads: {mode}")
}

/// Starts the server in the background and waits for its first word.
fn background(
    args: &MountArgs,
    root: &Path,
    target: &Target,
    mountpoint: &Path,
    out: &mut dyn Write,
) -> Result<()> {
    let exe = std::env::current_exe().map_err(|source| MountCommandError::Spawn {
        exe: PathBuf::from("mossfs"),
        source,
    })?;
    let spawn_error = |source| MountCommandError::Spawn {
        exe: exe.clone(),
        source,
    };
    let root = std::fs::canonicalize(root).map_err(spawn_error)?;
    let (log_path, log) = open_log(&root);
    let (ours, theirs) = UnixStream::pair().map_err(MountCommandError::Socket)?;
    let fd = theirs.as_raw_fd();
    let mut command = Command::new(&exe);
    command
        .args([
            "mount",
            "--foreground",
            "--state",
            &target.id.to_string(),
            "--ready-fd",
            &fd.to_string(),
        ])
        .arg("--root")
        .arg(&root)
        .args(args.debug_view.then_some("--debug-view"))
        .arg(mountpoint)
        .current_dir("/")
        .stdin(Stdio::null());
    match log {
        Some(log) => {
            command
                .stdout(log.try_clone().map_err(spawn_error)?)
                .stderr(log);
        }
        None => {
            command.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    // SAFETY: between fork and exec the closure only makes two async-signal-safe system
    // calls and touches no memory of the parent but the copied descriptor number.
    unsafe {
        command.pre_exec(move || {
            rustix::process::setsid()?;
            // The one descriptor the server inherits on purpose.
            rustix::io::fcntl_setfd(BorrowedFd::borrow_raw(fd), rustix::io::FdFlags::empty())?;
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(spawn_error)?;
    drop(theirs);
    ours.set_read_timeout(Some(READY_WITHIN))
        .map_err(MountCommandError::Socket)?;
    let mut line = String::new();
    match BufReader::new(&ours).read_line(&mut line) {
        Ok(_) if line.starts_with("ready ") => {
            let words: Vec<&str> = line.split_whitespace().collect();
            let mode = if words.get(1) == Some(&"passthrough") {
                ReadMode::Passthrough
            } else {
                ReadMode::Store
            };
            announce(out, target, mountpoint, mode)?;
            let pid = words.get(2).copied().unwrap_or("?");
            writeln!(out, "server: pid {pid}, log {}", log_path.display())?;
            writeln!(out, "unmount with: mossfs umount {}", mountpoint.display())?;
            if let Some(note) = &target.note {
                writeln!(out, "{note}")?;
            }
            Ok(())
        }
        Ok(_) if line.starts_with("error ") => {
            let _ = child.wait();
            Err(MountCommandError::Server {
                message: line["error ".len()..].trim_end().to_owned(),
            })
        }
        Ok(_) => {
            let status = child.wait().map_err(MountCommandError::Socket)?;
            Err(MountCommandError::ServerExited {
                status,
                log: log_path,
            })
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            let _ = child.kill();
            let _ = child.wait();
            // It may have mounted just before it was stopped.
            let _ = fuse::unmount(mountpoint);
            Err(MountCommandError::NotReady { log: log_path })
        }
        Err(e) => Err(MountCommandError::Socket(e)),
    }
}

/// `ROOT/.moss/mounts/mount.log`, opened for appending; `None` if it cannot be, in which
/// case the server's messages are dropped rather than failing the mount.
fn open_log(root: &Path) -> (PathBuf, Option<File>) {
    let dir = root.join(".moss/mounts");
    let path = dir.join("mount.log");
    let file = std::fs::create_dir_all(&dir)
        .and_then(|()| OpenOptions::new().create(true).append(true).open(&path))
        .ok();
    (path, file)
}

fn ready_socket(fd: RawFd) -> Result<UnixStream> {
    if fd < 0 {
        return Err(MountCommandError::BadReadyFd(fd));
    }
    // SAFETY: the descriptor is only borrowed to check that it is open.
    let open = rustix::io::fcntl_getfd(unsafe { BorrowedFd::borrow_raw(fd) }).is_ok();
    if !open {
        return Err(MountCommandError::BadReadyFd(fd));
    }
    // SAFETY: it is open, and the parent `mossfs mount` passed it for this process alone.
    Ok(UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// The error and its causes on one line, each cause once.
fn one_line(error: &(dyn Error + 'static)) -> String {
    let mut line = String::new();
    let mut cause = Some(error);
    while let Some(error) = cause {
        let text = error.to_string();
        if !line.ends_with(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        cause = error.source();
    }
    line.replace('\n', " ")
}
