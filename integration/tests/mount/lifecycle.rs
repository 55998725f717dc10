//! The life of a mount: unmounting while files are open, a server killed with SIGKILL,
//! a foreground server stopped with SIGTERM. Servers that must die run in a child
//! process: this test binary again, with [`CHILD`] set, running only
//! [`serve_in_a_child_process`]. Also the quick figures of `measure_mount_and_walk`.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Instant;

use mossfs_db::{Db, StateId};
use mossfs_format::PackageId;
use mossfs_fs::fuse::{self, FsOptions, MossFs, MountError};
use mossfs_store::Store;

use super::fixture::*;

/// Set in a child process: `<root>\t<state>\t<mountpoint>\t<spawn|run>`.
const CHILD: &str = "MOSSFS_MOUNT_TEST_CHILD";
/// What a child server prints once it is mounted (libtest may have begun the line).
const READY: &str = "MOSSFS-READY";

#[test]
fn unmount_works_while_a_file_is_open() {
    let mut root = Root::new();
    let files = files_state(&root);
    let Some(mount) = root.mount(files, false) else {
        return;
    };
    let path = mount.mountpoint().to_owned();
    let mut open = File::open(path.join("usr/share/tools/big.bin")).unwrap();
    fuse::unmount(&path).unwrap();
    assert_eq!(fuse::find_mount(&path).unwrap(), None);
    assert_eq!(
        fs::read_dir(&path).unwrap().count(),
        0,
        "the mount point is free at once"
    );
    let mut bytes = Vec::new();
    open.read_to_end(&mut bytes).unwrap();
    assert!(bytes == noise(1, 3 << 20), "an open file is still served");
    drop(open);
    mount.wait().unwrap();
}

/// Runs a mount in this process when [`CHILD`] says so; passes trivially otherwise.
#[test]
fn serve_in_a_child_process() {
    let Ok(spec) = std::env::var(CHILD) else {
        return;
    };
    let [root, state, mountpoint, how]: [&str; 4] =
        spec.split('\t').collect::<Vec<_>>().try_into().unwrap();
    let moss = Path::new(root).join(".moss");
    let db = Db::open(&moss.join("db")).unwrap();
    let fs = MossFs::new(
        &db,
        Store::open(&moss).unwrap(),
        StateId(state.parse().unwrap()),
        FsOptions::default(),
    )
    .unwrap();
    if how == "run" {
        fuse::run(fs, Path::new(mountpoint), |mount| {
            println!("\n{READY} {}", mount.read_mode())
        })
        .unwrap();
        println!("unmounted");
    } else {
        let _mount = fuse::spawn(fs, Path::new(mountpoint)).unwrap();
        println!("\n{READY}");
        loop {
            std::thread::park();
        }
    }
}

/// Starts [`serve_in_a_child_process`] and waits for its [`READY`] line.
fn child_server(root: &mut Root, state: StateId, how: &str) -> Option<ChildServer> {
    if no_mount_here() {
        return None;
    }
    let mountpoint = root.mountpoint();
    let spec = format!(
        "{}\t{}\t{}\t{how}",
        root.path().display(),
        state.0,
        mountpoint.display()
    );
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "lifecycle::serve_in_a_child_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, spec)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with(READY) {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the child server exited before it was ready"
        );
    }
    Some(ChildServer {
        child,
        mountpoint,
        out,
    })
}

/// A server in a child process. However the test ends, the child is killed and reaped and
/// its mount detached.
struct ChildServer {
    child: Child,
    mountpoint: PathBuf,
    out: BufReader<ChildStdout>,
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        // Both are no-ops for a child already reaped and a mount already gone.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fuse::unmount(&self.mountpoint);
    }
}

#[test]
fn a_mount_whose_server_died_is_cleared_by_unmount() {
    let mut root = Root::new();
    let files = files_state(&root);
    let Some(mut server) = child_server(&mut root, files, "spawn") else {
        return;
    };
    let mountpoint = server.mountpoint.clone();
    assert_eq!(
        fs::read(mountpoint.join("usr/share/tools/data.txt")).unwrap(),
        b"data\n"
    );
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    // What the kernel cached still answers; anything that needs the server fails.
    let error = fs::metadata(mountpoint.join("usr/never-looked-up")).unwrap_err();
    assert_eq!(error.raw_os_error(), Some(ENOTCONN), "{error}");
    let statfs = rustix::fs::statvfs(&mountpoint).map(drop);
    assert_eq!(statfs.map_err(|e| e.raw_os_error()), Err(ENOTCONN));
    let error = fuse::check_mountpoint(&mountpoint).unwrap_err();
    assert!(matches!(error, MountError::DeadMount { .. }), "{error:?}");
    assert!(
        fuse::find_mount(&mountpoint)
            .unwrap()
            .is_some_and(|m| m.is_mossfs())
    );
    fuse::unmount(&mountpoint).unwrap();
    assert_eq!(fuse::find_mount(&mountpoint).unwrap(), None);
    assert_eq!(fs::read_dir(&mountpoint).unwrap().count(), 0);
}

#[test]
fn sigterm_unmounts_a_foreground_mount_cleanly() {
    let mut root = Root::new();
    let files = files_state(&root);
    let Some(mut server) = child_server(&mut root, files, "run") else {
        return;
    };
    let mountpoint = server.mountpoint.clone();
    assert_eq!(
        fs::read(mountpoint.join("usr/bin/tool")).unwrap(),
        b"#!/bin/sh\necho tool\n"
    );
    let pid = rustix::process::Pid::from_child(&server.child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = server.child.wait().unwrap();
    let mut rest = String::new();
    server.out.read_to_string(&mut rest).unwrap();
    assert!(status.success(), "{status}: {rest}");
    assert!(rest.contains("unmounted"), "{rest}");
    assert_eq!(fuse::find_mount(&mountpoint).unwrap(), None);
    assert_eq!(fs::read_dir(&mountpoint).unwrap().count(), 0);
}

/// Quick figures, not a timed test: `cargo test --release -p mossfs-integration --test mount
/// -- --ignored --nocapture` (`MOSSFS_MEASURE_ENTRIES` sets the state size, 50,000 by
/// default). Prints mount-to-first-listing, a full metadata walk against the blitted tree
/// on the temp dir's file system, and the server's RSS after the walk.
#[test]
#[ignore]
fn measure_mount_and_walk() {
    let entries = std::env::var("MOSSFS_MEASURE_ENTRIES").map_or(50_000, |v| v.parse().unwrap());
    let mut root = Root::new();
    let out = root.path().join("corpus");
    let stones = mossfs_integration::corpus::synthetic(
        &out,
        &mossfs_integration::corpus::SyntheticSpec::new(entries),
    )
    .unwrap();
    let packages: Vec<PackageId> = stones.iter().map(|stone| root.add_stone(stone)).collect();
    root.unpack(&packages);
    let state = root.state(&packages);
    let blitted = root.blit(state);
    println!("state of {} entries", root.entries(state));

    let mountpoint = root.mountpoint();
    let started = Instant::now();
    let Ok(mount) = fuse::spawn(root.server(state, false), &mountpoint) else {
        return;
    };
    let mounted = started.elapsed();
    let bin = mountpoint.join("usr/bin");
    // What `ls -l` does: list, then stat every entry.
    let mut listed = 0;
    for entry in fs::read_dir(&bin).unwrap() {
        fs::symlink_metadata(entry.unwrap().path()).unwrap();
        listed += 1;
    }
    let first_listing = started.elapsed();
    println!(
        "mount: {:.2} ms; mount to first `ls -l usr/bin` ({listed} entries): {:.2} ms; reads: {}",
        mounted.as_secs_f64() * 1e3,
        first_listing.as_secs_f64() * 1e3,
        mount.read_mode()
    );
    mount.unmount().unwrap();

    let find = |dir: &Path| {
        let started = Instant::now();
        let output = Command::new("find")
            .arg(dir)
            .args(["-printf", "%p %s %m %u %l\n"])
            .output()
            .unwrap();
        assert!(output.status.success());
        (
            started.elapsed(),
            output.stdout.iter().filter(|&&b| b == b'\n').count(),
        )
    };
    let (native, native_lines) = find(&blitted);
    let Some(server) = child_server(&mut root, state, "spawn") else {
        return;
    };
    let mountpoint = server.mountpoint.clone();
    let (fused, fused_lines) = find(&mountpoint.join("usr"));
    assert_eq!(native_lines, fused_lines);
    let status = fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap_or("VmRSS: ?")
        .to_owned();
    let (warm, _) = find(&mountpoint.join("usr"));
    println!(
        "find -printf over {fused_lines} paths: blit {:.1} ms, fresh mount {:.1} ms ({:.2}x), warm mount {:.1} ms; server {rss}",
        native.as_secs_f64() * 1e3,
        fused.as_secs_f64() * 1e3,
        fused.as_secs_f64() / native.as_secs_f64(),
        warm.as_secs_f64() * 1e3,
    );
    drop(server);
}
