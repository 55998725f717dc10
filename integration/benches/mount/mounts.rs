//! Mounting, and undoing every mount: `mossfs mount` in the background, an in-process
//! [`fuse::spawn`], and `squashfuse -f` as a child, each behind a [`Mounted`] guard.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use mossfs_fs::fuse::{self, FsOptions, MossFs};
use mossfs_store::Store;

use super::{Bench, Corpus, PREFIX, Result};

/// How long a mount or an unmount may take before the benchmark gives up on it.
const PATIENCE: Duration = Duration::from_secs(10);

impl Bench {
    /// `mossfs mount --root ROOT MNT`, untimed, on a fresh mount point.
    pub(crate) fn mount(&self, root: &Path) -> Result<(Mounted, Served)> {
        let at = self.mountpoint()?;
        let output = self.mount_command(root, &at).output()?;
        Mounted::by_cli(self, at, &output)
    }

    pub(crate) fn mount_command(&self, root: &Path, at: &Path) -> Command {
        let mut command = Command::new(&self.bin);
        command.arg("mount").arg("--root").arg(root).arg(at);
        command
    }

    /// Mounts `state` in this process, serving reads from the store.
    pub(crate) fn mount_in_process(&self, corpus: &Corpus, store_reads: bool) -> Result<Mounted> {
        let at = self.mountpoint()?;
        let store = Store::open(&corpus.root.join(".moss"))?;
        let options = FsOptions {
            store_reads,
            ..FsOptions::default()
        };
        let fs = MossFs::new(&corpus.db, store, corpus.state, options)?;
        let mount = fuse::spawn(fs, &at)?;
        Ok(Mounted {
            at,
            server: Server::InProcess(Some(mount)),
        })
    }

    /// `squashfuse -f IMAGE MNT` as a child; returns once the mount shows in the table.
    pub(crate) fn squashfuse(&self, image: &Path) -> Result<Mounted> {
        let at = self.mountpoint()?;
        let child = Command::new("squashfuse")
            .arg("-f")
            .arg(image)
            .arg(&at)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()?;
        let mut mounted = Mounted {
            at,
            server: Server::Squashfuse(child),
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            let entry = fuse::find_mount(&mounted.at)?;
            if entry.is_some_and(|e| e.fs_type == "fuse.squashfuse") {
                return Ok(mounted);
            }
            if let Server::Squashfuse(child) = &mut mounted.server
                && let Some(status) = child.try_wait()?
            {
                return Err(format!("squashfuse exited ({status}) before mounting").into());
            }
            if Instant::now() > deadline {
                return Err(format!("squashfuse did not mount within {PATIENCE:?}").into());
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

/// A mount the benchmark made. Dropping it unmounts and waits for its server to end, so
/// that no mount outlives the run and no server competes with the next figure.
pub(crate) struct Mounted {
    pub(crate) at: PathBuf,
    server: Server,
}

enum Server {
    /// `mossfs mount` in the background, and its server's pid once known.
    Cli {
        bin: PathBuf,
        pid: Option<u32>,
    },
    InProcess(Option<fuse::Mount>),
    Squashfuse(Child),
}

/// What `mossfs mount` printed about its server.
pub(crate) struct Served {
    pub(crate) pid: u32,
    /// "kernel passthrough" or "served from the store".
    pub(crate) reads: String,
}

impl Mounted {
    /// The requests an in-process mount has served so far; `None` for other servers.
    pub(crate) fn stats(&self) -> Option<fuse::Stats> {
        match &self.server {
            Server::InProcess(Some(mount)) => Some(mount.stats()),
            _ => None,
        }
    }

    /// Adopts a mount made by `mossfs mount`, whose output is `output`. The guard exists
    /// before the output is checked, so even a half-made mount is undone.
    pub(crate) fn by_cli(bench: &Bench, at: PathBuf, output: &Output) -> Result<(Mounted, Served)> {
        let mut mounted = Mounted {
            at,
            server: Server::Cli {
                bin: bench.bin.clone(),
                pid: None,
            },
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(format!("mossfs mount failed: {stdout}{stderr}").into());
        }
        let pid = stdout
            .lines()
            .find_map(|line| line.strip_prefix("server: pid "))
            .and_then(|rest| rest.split(',').next())
            .and_then(|pid| pid.parse().ok())
            .ok_or_else(|| format!("no server pid in: {stdout}"))?;
        let reads = stdout
            .lines()
            .find_map(|line| line.strip_prefix("reads: "))
            .ok_or_else(|| format!("no read mode in: {stdout}"))?
            .to_owned();
        mounted.server = Server::Cli {
            bin: bench.bin.clone(),
            pid: Some(pid),
        };
        Ok((mounted, Served { pid, reads }))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let quiet = |command: &mut Command| {
            let _ = command.stdout(Stdio::null()).stderr(Stdio::null()).status();
        };
        match &mut self.server {
            Server::Cli { bin, pid } => {
                quiet(Command::new(&*bin).arg("umount").arg(&self.at));
                if fuse::find_mount(&self.at).is_ok_and(|m| m.is_some()) {
                    quiet(Command::new("umount").arg("-l").arg(&self.at));
                }
                if let Some(pid) = *pid {
                    let deadline = Instant::now() + PATIENCE;
                    while !gone(pid) && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
            Server::InProcess(mount) => {
                if let Some(mount) = mount.take() {
                    let _ = mount.unmount();
                }
            }
            Server::Squashfuse(child) => {
                quiet(Command::new("umount").arg("-l").arg(&self.at));
                let deadline = Instant::now() + PATIENCE;
                while child.try_wait().is_ok_and(|s| s.is_none()) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Whether a process is gone, or a zombie its new parent has not reaped yet.
fn gone(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// Unmounts whatever an earlier, killed run left mounted in a work directory of ours.
pub(crate) fn clear_stale_mounts(parent: &Path) -> Result<()> {
    let parent = fs::canonicalize(parent)?;
    let table = fs::read_to_string("/proc/self/mountinfo")?;
    for line in table.lines() {
        let Some(at) = line.split(' ').nth(4).map(PathBuf::from) else {
            continue;
        };
        let ours = at.strip_prefix(&parent).ok().and_then(|rest| {
            let first = rest.components().next()?;
            first
                .as_os_str()
                .to_str()?
                .starts_with(PREFIX)
                .then_some(())
        });
        if ours.is_some() {
            println!("clearing a mount left by an earlier run: {}", at.display());
            Command::new("umount").arg("-l").arg(&at).status()?;
        }
    }
    Ok(())
}
