//! Issue 7, defects 8, 9, 10, 12 and 17: candidates, dry runs, readers after a crash, a
//! full disk under the database, and read-only roots. Each test is named after its defect,
//! runs the real binary on a fresh root, and failed before the fix.
//!
//! - **8.** A killed `install` leaves no candidate that a later `commit` applies; a
//!   candidate staged on a state that is no longer active is refused; `state prune
//!   --candidates` drops candidates.
//! - **9.** `--dry-run` writes nothing, on a root that has no `.moss` or one that has.
//! - **10.** After a kill between the exchange and the database update, readers show the
//!   state that is live, and say that the database is behind.
//! - **12.** A full disk during the database commit says the disk is full and what to do,
//!   and changes nothing.
//! - **17.** On a read-only root (a read-only bind mount), every command that only reads
//!   works, and `mount` serves the state.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{
    Snapshot, TestRoot, assert_same, assert_tree_matches, error_line, file, link, meta, snapshot,
    statuses, text,
};

/// `small` and `med` of the reproductions: one file, and a few hundred.
fn small_and_med(root: &TestRoot) -> (PathBuf, PathBuf) {
    let small = root.stone(
        &meta("small", "1"),
        vec![file("bin/small", b"#!/bin/sh\necho small\n".to_vec())],
    );
    let mut entries: Vec<_> = (0..300)
        .map(|i| file(&format!("share/med/{}/{i}", i % 10), format!("med {i}\n")))
        .collect();
    entries.push(file("bin/med", b"med".to_vec()));
    entries.push(link("bin/med-link", "med"));
    let med = root.stone(&meta("med", "1"), entries);
    (small, med)
}

/// Runs `mossfs ARGS --root AT`, for a root seen through another path.
fn mossfs_at(at: &Path, args: &[&str]) -> Output {
    mossfs_integration::mossfs()
        .args(args)
        .arg("--root")
        .arg(at)
        .output()
        .unwrap()
}

/// Runs `mossfs ARGS --root ROOT` with `MOSSFS_FAULT=step` and asserts it was killed.
fn killed_at(root: &TestRoot, step: &str, args: &[&OsStr]) {
    let output = root
        .command(args)
        .env("MOSSFS_FAULT", step)
        .output()
        .unwrap();
    assert_eq!(
        output.status.signal(),
        Some(9),
        "expected SIGKILL at {step}: {} {}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

#[test]
fn defect_08_killed_install_candidate_is_not_committed() {
    let root = TestRoot::new();
    let (small, med) = small_and_med(&root);
    root.install(&[&small]);
    killed_at(&root, "ingest", &["install".as_ref(), med.as_os_str()]);
    // What the dead command left is no candidate, and a reader says so.
    assert_eq!(statuses(&root.states()), [(1, "active"), (2, "in-flight")]);

    // The next writer drops it, and says so.
    let output = root.run(&["remove", "small"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        text(&output.stderr),
        "recovered: removed state 2, which an interrupted install or remove left uncommitted\n"
    );
    assert_eq!(statuses(&root.states()), [(1, "committed"), (3, "active")]);

    // So a bare commit has nothing to apply, and small stays removed.
    assert_eq!(
        root.fail(&["commit"]),
        "error: there is no candidate state to commit; stage one with 'mossfs install --stage'"
    );
    assert_eq!(
        root.fail(&["commit", "2"]),
        "error: state 2 does not exist; see 'mossfs state list'"
    );
    assert_tree_matches(&root.usr(), &[]);
    assert_eq!(root.state_id_file().as_deref(), Some("3"));
    assert_eq!(root.ok(&["list", "installed"]), "");

    // The same for a killed remove.
    root.install(&[&med]);
    let before = root.system();
    killed_at(&root, "blit", &["remove", "med"].map(OsStr::new));
    let output = root.run(&["gc"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        text(&output.stderr),
        "recovered: removed an unfinished staging tree\n\
         recovered: removed state 5, which an interrupted install or remove left uncommitted\n"
    );
    let line = root.fail(&["commit"]);
    assert!(line.contains("there is no candidate state"), "{line}");
    assert_same(&before, &root.system(), "after a killed remove");
    assert_tree_matches(&root.usr(), &[&med]);
}

#[test]
fn defect_08_stale_candidate_is_refused_and_pruned() {
    let root = TestRoot::new();
    let (small, med) = small_and_med(&root);
    root.install(&[&small]);
    let staged = root.ok(&["install".as_ref(), "--stage".as_ref(), med.as_os_str()]);
    assert!(
        staged.starts_with("staged state 2 (install med-1-1)"),
        "{staged}"
    );
    root.ok(&["remove", "small"]);
    let before = root.system();
    let rows = root.states();
    assert_eq!(
        statuses(&rows),
        [(1, "committed"), (2, "candidate"), (3, "active")]
    );

    // State 2 holds small: committing it would bring small back behind the user's back.
    let refusal = "error: state 2 was staged on state 1, but state 3 is active now: \
                   committing it would undo what changed since; stage the change again, or \
                   drop it with 'mossfs state remove 2' ('mossfs state prune --candidates' \
                   drops every candidate)";
    assert_eq!(root.fail(&["commit"]), refusal);
    assert_eq!(root.fail(&["commit", "2"]), refusal);
    assert_eq!(root.fail(&["state", "activate", "2"]), refusal);
    assert_same(&before, &root.system(), "after refused commits");
    assert_eq!(root.states(), rows);
    assert_tree_matches(&root.usr(), &[]);

    // Back on its base, the candidate is fine to commit again.
    root.ok(&["state", "activate", "1"]);
    let out = root.ok(&["commit", "2"]);
    assert!(
        out.starts_with("state 2 active (install med-1-1): "),
        "{out}"
    );
    assert_tree_matches(&root.usr(), &[&small, &med]);

    // prune --candidates drops candidates and nothing else.
    root.ok(&["install".as_ref(), "--stage".as_ref(), small.as_os_str()]);
    root.ok(&["remove", "--stage", "med"]);
    assert_eq!(
        statuses(&root.states()),
        [
            (1, "committed"),
            (2, "active"),
            (3, "committed"),
            (4, "candidate"),
            (5, "candidate")
        ]
    );
    let out = root.ok(&["state", "prune", "--candidates"]);
    assert_eq!(
        out,
        "removed state 5\nremoved state 4\n\
         run 'mossfs gc' to reclaim the space their packages used\n"
    );
    assert_eq!(
        statuses(&root.states()),
        [(1, "committed"), (2, "active"), (3, "committed")]
    );
    assert_eq!(
        root.ok(&["state", "prune", "--candidates"]),
        "nothing to prune\n"
    );
    assert_tree_matches(&root.usr(), &[&small, &med]);
}

/// Every path below `top` with its type, mode, owner and bytes, leaving out LMDB's lock
/// file: its reader table is shared memory that any reader touches.
fn everything(top: &Path) -> Snapshot {
    let mut all = snapshot(top);
    all.remove(Path::new(".moss/db/lock.mdb"));
    all
}

#[test]
fn defect_09_dry_run_writes_nothing() {
    let root = TestRoot::new();
    let (small, med) = small_and_med(&root);

    // A root with no .moss: nothing may appear, not even the folder.
    let out = root.ok(&["install".as_ref(), "--dry-run".as_ref(), small.as_os_str()]);
    assert!(
        out.starts_with("would record a state: install small-1-1\n  small 1-1 (explicit, "),
        "{out}"
    );
    let line = root.fail(&["remove", "--dry-run", "small"]);
    assert_eq!(
        line,
        "error: package small is not installed; see 'mossfs list installed'"
    );
    // Nor may a reader, or a writer that needs a root to exist.
    let commands: [&[&str]; 9] = [
        &["state", "list"],
        &["list", "installed"],
        &["verify"],
        &["remove", "small"],
        &["commit"],
        &["gc"],
        &["state", "prune", "--candidates"],
        &["state", "activate", "1"],
        &["verify", "--repair"],
    ];
    for args in commands {
        assert_eq!(
            root.fail(args),
            format!(
                "error: {} is not a mossfs root (no .moss folder); install something first",
                root.path().display()
            ),
            "{args:?}"
        );
    }
    let left: Vec<_> = fs::read_dir(root.path()).unwrap().collect();
    assert!(left.is_empty(), "the root holds {left:?}");

    // A managed root: every file, the database's included, stays as it was.
    root.install(&[&small]);
    let before = everything(&root.path());
    let out = root.ok(&["install".as_ref(), "--dry-run".as_ref(), med.as_os_str()]);
    assert!(
        out.starts_with("would record a state: install med-1-1\n  med 1-1 (explicit, "),
        "{out}"
    );
    assert!(out.contains("\n  small 1-1 (explicit, "), "{out}");
    let out = root.ok(&["remove", "--dry-run", "small"]);
    assert_eq!(
        out,
        "would record a state: remove small\nchanges:\n  remove small-1-1\n\
         download: 0 packages, 0 B\n"
    );
    assert_same(&before, &everything(&root.path()), "after dry runs");
    assert_eq!(statuses(&root.states()), [(1, "active")]);
}

#[test]
fn defect_10_readers_report_the_live_state_after_a_crash() {
    let root = TestRoot::new();
    let (small, med) = small_and_med(&root);
    root.install(&[&small]);
    killed_at(&root, "exchange", &["install".as_ref(), med.as_os_str()]);
    assert_eq!(root.state_id_file().as_deref(), Some("2"));
    assert_tree_matches(&root.usr(), &[&small, &med]);

    let note = "note: usr/.stateID says state 2 is live, but the database still records \
                state 1 as active: a commit was cut short after its exchange; any command \
                that writes, such as 'mossfs gc', records it; showing state 2 as active\n";
    let read = |args: &[&str]| {
        let output = root.run(args);
        assert!(output.status.success(), "{args:?}: {output:?}");
        assert_eq!(text(&output.stderr), note, "{args:?}");
        text(&output.stdout)
    };
    let rows = common::parse_states(&read(&["state", "list", "--json"]));
    assert_eq!(statuses(&rows), [(1, "committed"), (2, "active")]);
    assert!(read(&["state", "show", "2"]).starts_with("state 2 (active)\n"));
    let installed = read(&["list", "installed"]);
    assert!(installed.starts_with("med 1-1 "), "{installed}");
    assert!(installed.contains("\nsmall 1-1 "), "{installed}");
    assert_eq!(
        read(&["owner", "/usr/bin/med"]),
        "/usr/bin/med is owned by med-1-1\n"
    );
    assert!(read(&["info", "med"]).starts_with("name          med\n"));
    let verify = read(&["verify"]);
    assert!(
        verify.ends_with("paths of state 2: no damage\n"),
        "{verify}"
    );
    // So does a mount of the active state.
    mount_and_look(&root.path(), &root.scratch("mnt"), 2, |usr| {
        assert_eq!(fs::read(usr.join("bin/med")).unwrap(), b"med");
    });
    // The plan of a dry run starts from what is live, too.
    let plan = read(&["remove", "--dry-run", "small"]);
    assert!(plan.contains("\n  med 1-1 "), "{plan}");

    // The next writer records it, and the note goes away.
    let output = root.run(&["gc"]);
    assert!(output.status.success(), "{output:?}");
    assert!(
        text(&output.stderr).starts_with("recovered: completed the commit of state 2\n"),
        "{output:?}"
    );
    let output = root.run(&["state", "list", "--json"]);
    assert_eq!(text(&output.stderr), "");
    assert_eq!(
        statuses(&common::parse_states(&text(&output.stdout))),
        [(1, "committed"), (2, "active")]
    );
}

/// A file of `bytes` zeros, written for real so that tmpfs counts every page.
fn fill(at: &Path, bytes: u64) {
    let mut out = fs::File::create(at).unwrap();
    let block = vec![0u8; 64 << 10];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        if out.write_all(&block[..n]).is_err() {
            break;
        }
        left -= n as u64;
    }
}

#[test]
fn defect_12_full_disk_during_the_database_commit_says_so() {
    let Some(root) = TestRoot::on_small_fs(16 << 20) else {
        return;
    };
    let (small, _) = small_and_med(&root);
    root.install(&[&small]);
    // Thousands of paths of one empty file: a stone of a few KiB whose state needs far
    // more database pages than that.
    let wide = root.stone(
        &meta("wide", "1"),
        (0..6000)
            .map(|i| {
                file(
                    &format!("share/wide/{}/{i}-with-a-longish-name", i % 300),
                    "",
                )
            })
            .collect(),
    );
    let stone_size = fs::metadata(&wide).unwrap().len();
    assert!(stone_size < 64 << 10, "{stone_size}");
    let before = root.system();
    let states = root.states();
    let installed = root.ok(&["list", "installed"]);

    // Leave room for the stone's copy in the cache, and not for the database's pages.
    let filler = root.path().join("filler");
    fill(
        &filler,
        root.free_bytes().saturating_sub(stone_size + (128 << 10)),
    );
    let output = root.run(&["install".as_ref(), wide.as_os_str()]);
    let line = error_line(&output);
    assert!(
        line.starts_with(&format!(
            "error: cannot write the database at {}: No space left on device",
            root.moss().join("db").display()
        )),
        "{line}"
    );
    assert!(
        line.ends_with("; the file system is full; free some space, then run the command again"),
        "{line}"
    );
    assert_same(&before, &root.system(), "after a full disk");
    assert_eq!(root.states(), states);
    // LMDB may have written pages past the end before the disk filled up, but never the
    // meta page that would make them part of the database.
    assert_eq!(root.ok(&["list", "installed"]), installed);
    assert_eq!(root.state_id_file().as_deref(), Some("1"));

    // Once there is room, the same install works.
    fs::remove_file(&filler).unwrap();
    root.install(&[&wide]);
    assert_tree_matches(&root.usr(), &[&small, &wide]);
}

/// A read-only bind mount of a root, undone on drop.
struct ReadOnlyView {
    at: PathBuf,
}

impl ReadOnlyView {
    /// `None` (with the reason printed) where bind mounts are not allowed, which fails
    /// the test under `CI=true`.
    fn of(root: &TestRoot) -> Option<ReadOnlyView> {
        let at = root.scratch("read-only-root");
        let made = rustix::mount::mount_bind(root.path(), &at).and_then(|()| {
            let view = ReadOnlyView { at: at.clone() };
            rustix::mount::mount_remount(
                &at,
                rustix::mount::MountFlags::BIND | rustix::mount::MountFlags::RDONLY,
                c"",
            )
            .map(|()| view)
        });
        match made {
            Ok(view) => Some(view),
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("cannot make a read-only bind mount ({e}); CI must run this test")
            }
            Err(e) => {
                eprintln!("skipped: cannot make a read-only bind mount ({e}); run as root");
                None
            }
        }
    }
}

impl Drop for ReadOnlyView {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.at, rustix::mount::UnmountFlags::DETACH);
    }
}

#[test]
fn defect_17_readers_work_on_a_read_only_root() {
    let root = TestRoot::new();
    let (small, med) = small_and_med(&root);
    root.install(&[&small]);
    root.install(&[&med]);
    root.ok(&["remove", "--stage", "small"]);
    let Some(view) = ReadOnlyView::of(&root) else {
        return;
    };
    assert_eq!(
        fs::write(view.at.join("probe"), "x").map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ReadOnlyFilesystem)
    );
    let before = everything(&root.path());
    let on = |at: &Path, args: &[&str]| {
        let output = mossfs_at(at, args);
        assert!(
            output.status.success(),
            "{args:?} on {}: {}{}",
            at.display(),
            text(&output.stdout),
            text(&output.stderr)
        );
        assert_eq!(text(&output.stderr), "", "{args:?}");
        text(&output.stdout)
    };
    let commands: [&[&str]; 9] = [
        &["state", "list"],
        &["state", "show", "2"],
        &["state", "diff", "1", "3"],
        &["list", "installed"],
        &["info", "med", "--files"],
        &["owner", "/usr/bin/small"],
        &["verify"],
        &["remove", "--dry-run", "med"],
        &["install", "--dry-run", small.to_str().unwrap()],
    ];
    for args in commands {
        // The same answers as on the writable root.
        assert_eq!(on(&view.at, args), on(&root.path(), args), "{args:?}");
    }

    // A writer fails with a clear error and writes nothing.
    let output = mossfs_at(&view.at, &["remove", "med"]);
    let line = error_line(&output);
    assert!(line.contains("Read-only file system"), "{line}");

    // mount serves the state from the read-only root.
    mount_and_look(&view.at, &root.scratch("mnt"), 2, |usr| {
        assert_eq!(
            fs::read(usr.join("bin/small")).unwrap(),
            fs::read(root.usr().join("bin/small")).unwrap()
        );
        assert_eq!(
            fs::read_link(usr.join("bin/med-link")).unwrap(),
            Path::new("med")
        );
    });
    assert_same(
        &before,
        &everything(&root.path()),
        "after readers on a read-only view",
    );
}

/// `mossfs mount --root AT MOUNTPOINT` (the live state), which must say it mounted state
/// `live` as the active one; `look` gets the mounted `usr`; then `mossfs umount`. Without
/// `/dev/fuse` this part is skipped, except under `CI=true`, where it fails.
fn mount_and_look(at: &Path, mountpoint: &Path, live: u64, look: impl FnOnce(&Path)) {
    if !Path::new("/dev/fuse").exists() {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "CI must run the mount part: /dev/fuse is missing"
        );
        eprintln!("skipped the mount part: /dev/fuse is missing");
        return;
    }
    let output = mossfs_at(at, &["mount", mountpoint.to_str().unwrap()]);
    let _guard = Unmount(mountpoint);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(
        stdout.starts_with(&format!(
            "mounted state {live} (active) at {}\n",
            mountpoint.display()
        )),
        "{stdout}"
    );
    look(&mountpoint.join("usr"));
    let output = mossfs_integration::mossfs()
        .arg("umount")
        .arg(mountpoint)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
}

/// Detaches a mount point however the test ends.
struct Unmount<'a>(&'a Path);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let _ = mossfs_fs::fuse::unmount(self.0);
    }
}
