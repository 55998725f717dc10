//! The real `mossfs mount` and `mossfs umount`, on roots built by the fixture.
//!
//! `MOSSFS_TEST_BIN` may name another `mossfs` binary to run instead of the workspace's.

use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mossfs_db::StateId;
use mossfs_fs::fuse;

use super::fixture::*;

fn cli() -> Command {
    match std::env::var_os("MOSSFS_TEST_BIN") {
        Some(bin) => Command::new(bin),
        None => mossfs_integration::mossfs(),
    }
}

fn mossfs(root: &Root, args: &[&OsStr]) -> Output {
    cli()
        .args(args)
        .arg("--root")
        .arg(root.path())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The one line of a failed command's stderr.
fn error_line(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "expected a failure: {}",
        text(&output.stdout)
    );
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr.trim_end().to_owned()
}

/// Detaches a mount point however a test ends; the background server then exits.
struct Unmount<'a>(&'a Path);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let _ = fuse::unmount(self.0);
    }
}

/// Mounts candidate `state` in the background and returns the server's pid.
fn mount_in_background(root: &Root, state: &str, mountpoint: &Path) -> u32 {
    mount_in_background_as(root, state, "candidate", mountpoint)
}

/// Mounts `state`, which `mount` should call `what`, in the background and returns the
/// server's pid.
fn mount_in_background_as(root: &Root, state: &str, what: &str, mountpoint: &Path) -> u32 {
    let output = mossfs(
        root,
        &[
            "mount".as_ref(),
            "--state".as_ref(),
            state.as_ref(),
            mountpoint.as_ref(),
        ],
    );
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        format!("mounted state {state} ({what}) at {}", mountpoint.display())
    );
    assert!(
        ["reads: kernel passthrough", "reads: served from the store"].contains(&lines[1]),
        "{stdout}"
    );
    assert_eq!(
        lines[3],
        format!("unmount with: mossfs umount {}", mountpoint.display())
    );
    let pid = lines[2]
        .strip_prefix("server: pid ")
        .and_then(|rest| rest.split(',').next());
    pid.and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {stdout}"))
}

/// Whether a process is gone: reaped, or a zombie whose every thread has exited.
///
/// A SIGKILLed leader turns zombie while its other threads may still be exiting and still
/// hold the `/dev/fuse` descriptor, so the mount is only dead once the task list is down to
/// the leader alone.
fn gone(pid: u32) -> bool {
    let zombie = match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => return true,
    };
    let threads = fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |tasks| tasks.count());
    zombie && threads <= 1
}

fn wait_until_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gone(pid) {
        assert!(Instant::now() < deadline, "server {pid} is still running");
        std::thread::yield_now();
    }
}

/// Also: the server polls through a burst of requests and sleeps once it ends.
#[test]
fn mount_serves_in_the_background_until_umount() {
    let mut root = Root::new();
    let files = files_state(&root);
    if no_mount_here() {
        return;
    }
    let mountpoint = root.mountpoint();
    let _unmount = Unmount(&mountpoint);
    let pid = mount_in_background(&root, &files.0.to_string(), &mountpoint);
    // Ready means mounted: no waiting needed.
    assert!(
        fuse::find_mount(&mountpoint)
            .unwrap()
            .is_some_and(|m| m.is_mossfs())
    );
    assert_eq!(
        fs::read(mountpoint.join("usr/share/tools/data.txt")).unwrap(),
        b"data\n"
    );
    let log = root.path().join(".moss/mounts/mount.log");
    assert!(text(&fs::read(&log).unwrap()).contains("serving in the foreground"));

    // The server polls through a burst of requests, then sleeps: polling stops two
    // windows (4 ms) after the last request at most. A server that kept polling would burn
    // about all of the half second.
    assert!(walk(&mountpoint.join("usr")) > 700);
    std::thread::sleep(Duration::from_millis(100));
    let before = serving_cpu(pid);
    std::thread::sleep(Duration::from_millis(500));
    let idle = serving_cpu(pid) - before;
    assert!(idle <= 2, "the idle server used {idle} ticks of CPU");
    assert_eq!(
        fs::read(mountpoint.join("usr/share/tools/link")).unwrap(),
        b"data\n"
    );

    let output = cli().arg("umount").arg(&mountpoint).output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        format!("unmounted {}\n", mountpoint.display())
    );
    assert_eq!(fuse::find_mount(&mountpoint).unwrap(), None);
    wait_until_gone(pid);
}

#[test]
fn umount_clears_a_mount_whose_server_was_killed() {
    let mut root = Root::new();
    let files = files_state(&root);
    if no_mount_here() {
        return;
    }
    let mountpoint = root.mountpoint();
    let _unmount = Unmount(&mountpoint);
    let pid = mount_in_background(&root, &files.0.to_string(), &mountpoint);
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    wait_until_gone(pid.as_raw_nonzero().get() as u32);

    let again = mossfs(
        &root,
        &[
            "mount".as_ref(),
            "--state".as_ref(),
            "1".as_ref(),
            mountpoint.as_ref(),
        ],
    );
    let expected = format!(
        "error: {} is a mount whose server died; clear it with 'mossfs umount {}'",
        mountpoint.display(),
        mountpoint.display()
    );
    assert_eq!(error_line(&again), expected);
    // Its registration died with it: the state is no longer held.
    let removed = mossfs(&root, &["state".as_ref(), "remove".as_ref(), "1".as_ref()]);
    assert!(removed.status.success(), "{}", text(&removed.stderr));
    let output = cli().arg("umount").arg(&mountpoint).output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(fuse::find_mount(&mountpoint).unwrap(), None);
    assert_eq!(fs::read_dir(&mountpoint).unwrap().count(), 0);
}

#[test]
fn a_foreground_mount_unmounts_on_sigterm() {
    let mut root = Root::new();
    let files = files_state(&root);
    if no_mount_here() {
        return;
    }
    let mountpoint = root.mountpoint();
    let _unmount = Unmount(&mountpoint);
    let mut child = cli()
        .args([
            "mount",
            "--foreground",
            "--state",
            &files.0.to_string(),
            "--root",
        ])
        .arg(root.path())
        .arg(&mountpoint)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("reads: ") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "mossfs mount exited early"
        );
    }
    assert_eq!(
        fs::read(mountpoint.join("usr/bin/tool")).unwrap(),
        b"#!/bin/sh\necho tool\n"
    );
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(status.success(), "{status}");
    assert!(
        rest.ends_with(&format!("unmounted {}\n", mountpoint.display())),
        "{rest}"
    );
    assert_eq!(fuse::find_mount(&mountpoint).unwrap(), None);
}

#[test]
fn mount_errors_are_one_line_with_what_to_do() {
    let mut root = Root::new();
    let files = files_state(&root);
    if no_mount_here() {
        return;
    }
    let state = files.0.to_string();
    let missing = root.path().join("nope");
    let full = root.mountpoint();
    fs::write(full.join("x"), "x").unwrap();
    let empty = root.mountpoint();
    let mount = |args: &[&OsStr]| error_line(&mossfs(&root, &[&["mount".as_ref()], args].concat()));
    assert_eq!(
        mount(&["--state".as_ref(), state.as_ref(), missing.as_ref()]),
        format!(
            "error: mount point {} does not exist; create it with 'mkdir -p {}'",
            missing.display(),
            missing.display()
        )
    );
    assert_eq!(
        mount(&["--state".as_ref(), state.as_ref(), full.as_ref()]),
        format!(
            "error: mount point {} is not empty; mount on an empty directory",
            full.display()
        )
    );
    assert_eq!(
        mount(&["--state".as_ref(), "99".as_ref(), empty.as_ref()]),
        "error: state 99 does not exist; see 'mossfs state list'"
    );
    assert_eq!(
        mount(&[empty.as_ref()]),
        format!(
            "error: {} has no active state yet; mount a staged one with --candidate, or pick one with --state (see 'mossfs state list')",
            root.path().display()
        )
    );
    let output = cli().arg("umount").arg(&empty).output().unwrap();
    assert_eq!(
        error_line(&output),
        format!("error: {} is not a mount point", empty.display())
    );
}

#[test]
fn a_mounted_state_is_neither_removed_nor_pruned() {
    let mut root = Root::new();
    if no_mount_here() {
        return;
    }
    let commit = |id: StateId| {
        let commit = mossfs(&root, &["commit".as_ref(), id.to_string().as_ref()]);
        assert!(commit.status.success(), "{}", text(&commit.stderr));
    };
    // Each candidate is staged on the state active at the time, so it can be committed.
    let files = files_state(&root);
    commit(files);
    commit(root.state(&[root.add_stone(&sample_stone("pineapple-1-1-1-x86_64.stone"))]));
    let mountpoint = root.mountpoint();
    let _unmount = Unmount(&mountpoint);
    let pid = mount_in_background_as(&root, &files.to_string(), "archived", &mountpoint);
    let id = files.to_string();

    let show = mossfs(&root, &["state".as_ref(), "show".as_ref(), id.as_ref()]);
    assert!(
        text(&show.stdout).contains(&format!("  mounted  {}\n", mountpoint.display())),
        "{}",
        text(&show.stdout)
    );
    let refused = mossfs(&root, &["state".as_ref(), "remove".as_ref(), id.as_ref()]);
    assert_eq!(
        error_line(&refused),
        format!(
            "error: state {id} is mounted at {}; unmount it first with 'mossfs umount {}'",
            mountpoint.display(),
            mountpoint.display()
        )
    );
    let prune = mossfs(
        &root,
        &[
            "state".as_ref(),
            "prune".as_ref(),
            "--keep".as_ref(),
            "0".as_ref(),
        ],
    );
    assert!(prune.status.success(), "{}", text(&prune.stderr));
    assert_eq!(
        text(&prune.stdout),
        format!(
            "kept state {id}: it is mounted at {}\nnothing to prune\n",
            mountpoint.display()
        )
    );
    // gc keeps the state's files, so the mount still reads them.
    let gc = mossfs(&root, &["gc".as_ref()]);
    assert!(gc.status.success(), "{}", text(&gc.stderr));
    assert_eq!(
        fs::read(mountpoint.join("usr/share/tools/data.txt")).unwrap(),
        b"data\n"
    );

    let output = cli().arg("umount").arg(&mountpoint).output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    wait_until_gone(pid);
    let removed = mossfs(&root, &["state".as_ref(), "remove".as_ref(), id.as_ref()]);
    assert!(removed.status.success(), "{}", text(&removed.stderr));
    assert!(!root.path().join(format!(".moss/root/{id}")).exists());
}

/// CPU time (user + system, in clock ticks) of the server's serving thread.
fn serving_cpu(pid: u32) -> u64 {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    let serving = tasks
        .flatten()
        .find(|task| {
            fs::read_to_string(task.path().join("comm")).is_ok_and(|c| c.trim() == "fuser-0")
        })
        .unwrap_or_else(|| panic!("server {pid} has no serving thread"));
    let stat = fs::read_to_string(serving.path().join("stat")).unwrap();
    let fields: Vec<u64> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|n| n.parse().unwrap())
        .collect();
    fields.iter().sum()
}

/// Every entry below `dir`, without following symlinks: one request per listing page,
/// lookup and link text on a fresh mount.
fn walk(dir: &Path) -> usize {
    let mut seen = 0;
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        seen += 1;
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            seen += walk(&entry.path());
        } else if kind.is_symlink() {
            fs::read_link(entry.path()).unwrap();
        }
    }
    seen
}
