//! Crash safety (issue 3 §5, DESIGN.md §6.2): the real binary is killed with SIGKILL at
//! each step of a commit, through `MOSSFS_FAULT=<step>`, and from outside in the middle
//! of unpacking and of blitting. After every kill:
//! - before the exchange, the previous state is still active, on disk and in the database,
//!   and its tree is byte for byte what it was; after it, the new state is live, and
//!   becomes active in the database at the next command;
//! - the next writer recovers: staging is gone and no temp file is left in the store;
//! - no asset is lost (`mossfs verify` passes, every store file is still there), and the
//!   next install works.
//!
//! Readers do not recover (they never take the lock), so `state list` right after a kill
//! shows what the dead process left: the state it was committing is "in-flight", or, once
//! `usr` was exchanged, already the active one, since readers take the live state from
//! `usr/.stateID` (issue 7, defect 10). `gc` (a writer that changes nothing here) is the
//! "next command". The in-flight state of a command killed before the exchange is dropped
//! then: nobody staged it, and committing it later would undo whatever changed since
//! (issue 7, defect 8); the install is simply run again.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use mossfs_format::AssetHash;

use common::{TestRoot, assert_same, assert_tree_matches, dir, file, link, meta, statuses, text};
use mossfs_integration::corpus::{SourceEntry, noise};

/// The steps of a commit, in order, as `MOSSFS_FAULT` names them.
const STEPS: [&str; 5] = ["ingest", "blit", "exchange", "archive", "db"];

/// Steps after which the new tree is live.
fn after_exchange(step: &str) -> bool {
    matches!(step, "exchange" | "archive" | "db")
}

/// A root with two committed states (so that the archive of state 1 exists and the next
/// commit is incremental), the stones of both, and two more stones to install.
struct Scene {
    root: TestRoot,
    a: PathBuf,
    b: PathBuf,
    c: PathBuf,
    d: PathBuf,
}

impl Scene {
    fn new() -> Scene {
        let root = TestRoot::new();
        let a = root.stone(
            &meta("a", "1"),
            vec![
                file("bin/a", b"#!/bin/sh\necho a\n".to_vec()),
                file("share/a/data", vec![b'a'; 5000]),
                link("bin/a-link", "a"),
                dir("share/a/empty", 0o700),
            ],
        );
        let b = root.stone(
            &meta("b", "1"),
            vec![
                file("bin/b", b"b".to_vec()),
                file("share/b/empty-file", Vec::new()),
            ],
        );
        let c = root.stone(
            &meta("c", "1"),
            vec![
                file("bin/c", b"c, new in the crashed commit".to_vec()),
                file(
                    "share/c/data",
                    (0..20_000u32).map(|i| (i * 7) as u8).collect::<Vec<_>>(),
                ),
                link("share/c/to-a", "../a/data"),
            ],
        );
        let d = root.stone(
            &meta("d", "1"),
            vec![file("bin/d", b"d, after recovery".to_vec())],
        );
        root.install(&[&a]);
        root.install(&[&b]);
        Scene { root, a, b, c, d }
    }
}

/// Every file in the store, by path relative to `.moss`.
fn store_files(root: &TestRoot) -> BTreeSet<PathBuf> {
    ["assets", "cache"]
        .iter()
        .flat_map(|top| {
            common::snapshot(&root.moss().join(top))
                .into_iter()
                .filter(|(_, snap)| snap.bytes.is_some())
                .map(move |(path, _)| Path::new(top).join(path))
        })
        .collect()
}

fn temp_files(root: &TestRoot) -> Vec<PathBuf> {
    ["assets/.tmp", "cache/.tmp"]
        .iter()
        .flat_map(|tmp| fs::read_dir(root.moss().join(tmp)).into_iter().flatten())
        .map(|entry| entry.unwrap().path())
        .collect()
}

fn assert_killed(output: &Output, what: &str) {
    assert_eq!(
        output.status.signal(),
        Some(9),
        "{what}: expected SIGKILL, got {}; stdout: {} stderr: {}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// What the next writer must leave, whatever the kill left: staging gone, no temp file,
/// every store file still there, verify passing, the root links in place.
fn assert_recovered(root: &TestRoot, store_before: &BTreeSet<PathBuf>, what: &str) {
    // A finished commit may leave an empty staging folder; recovery removes even that.
    let staging = root.moss().join("root/staging");
    let left: Vec<_> = fs::read_dir(&staging).into_iter().flatten().collect();
    assert!(left.is_empty(), "{what}: staging holds {left:?}");
    assert_eq!(
        temp_files(root),
        Vec::<PathBuf>::new(),
        "{what}: temp files are left"
    );
    let now = store_files(root);
    let lost: Vec<_> = store_before.difference(&now).collect();
    assert!(lost.is_empty(), "{what}: store files lost: {lost:?}");
    let out = root.ok(&["verify"]);
    assert!(out.ends_with(": no damage\n"), "{what}: {out}");
    for name in ["bin", "sbin", "lib", "lib64"] {
        assert!(
            fs::symlink_metadata(root.path().join(name))
                .unwrap()
                .is_symlink(),
            "{what}: root link {name}"
        );
    }
}

#[test]
fn a_kill_at_each_step_of_a_commit_loses_nothing() {
    for step in STEPS {
        let scene = Scene::new();
        let root = &scene.root;
        let system = root.system();
        let store_before = store_files(root);
        assert!(
            root.moss().join("root/1/usr").is_dir(),
            "an archive to build on"
        );

        let output = root
            .command(&["install".as_ref(), scene.c.as_os_str()])
            .env("MOSSFS_FAULT", step)
            .output()
            .unwrap();
        assert_killed(&output, step);
        assert_eq!(
            text(&output.stdout),
            "",
            "{step}: no summary before the kill"
        );

        // What the dead process left, seen by a reader (which does not recover).
        let listed = root.run(&["state", "list", "--json"]);
        assert!(listed.status.success(), "{step}: {listed:?}");
        let rows = common::parse_states(&text(&listed.stdout));
        if after_exchange(step) {
            assert_eq!(root.state_id_file().as_deref(), Some("3"), "{step}");
            assert_tree_matches(&root.usr(), &[&scene.a, &scene.b, &scene.c]);
            // State 3 is live; before the last step only `usr` says so, and the reader
            // says the database is behind.
            assert_eq!(
                statuses(&rows),
                [(1, "committed"), (2, "committed"), (3, "active")],
                "{step}"
            );
            let behind = text(&listed.stderr).starts_with(
                "note: usr/.stateID says state 3 is live, but the database still records state 2 as active",
            );
            assert_eq!(behind, step != "db", "{step}: {listed:?}");
        } else {
            assert_eq!(root.state_id_file().as_deref(), Some("2"), "{step}");
            assert_same(&system, &root.system(), step);
            assert_eq!(
                statuses(&rows),
                [(1, "committed"), (2, "active"), (3, "in-flight")],
                "{step}"
            );
        }

        // The next writer recovers.
        let output = root.run(&["gc"]);
        assert!(output.status.success(), "{step}: {output:?}");
        let notes = text(&output.stderr);
        match step {
            "exchange" => assert_eq!(
                notes,
                "recovered: completed the commit of state 3\nrecovered: archived the tree of state 2\n",
                "{step}"
            ),
            "archive" => assert_eq!(
                notes, "recovered: completed the commit of state 3\n",
                "{step}"
            ),
            "blit" => assert_eq!(
                notes,
                "recovered: removed an unfinished staging tree\n\
                 recovered: removed state 3, which an interrupted install or remove left uncommitted\n",
                "{step}"
            ),
            "ingest" => assert_eq!(
                notes,
                "recovered: removed state 3, which an interrupted install or remove left uncommitted\n",
                "{step}"
            ),
            _ => assert_eq!(notes, "", "{step}"),
        }
        assert!(!root.moss().join("root/staging").exists(), "{step}");
        assert_recovered(root, &store_before, step);

        if after_exchange(step) {
            assert_eq!(
                statuses(&root.states()),
                [(1, "committed"), (2, "committed"), (3, "active")],
                "{step}"
            );
            assert_tree_matches(&root.usr(), &[&scene.a, &scene.b, &scene.c]);
            // The tree it replaced was archived, not lost: rolling back reuses it.
            let out = root.ok(&["state", "activate", "2"]);
            assert!(out.contains(": archived tree reused in "), "{step}: {out}");
            assert_same(&system, &root.system(), step);
            root.ok(&["state", "activate", "3"]);
        } else {
            assert_same(&system, &root.system(), step);
            assert_eq!(
                statuses(&root.states()),
                [(1, "committed"), (2, "active")],
                "{step}"
            );
            // Nothing is left to commit; the install runs again, as state 4.
            let line = root.fail(&["commit"]);
            assert!(
                line.contains("there is no candidate state"),
                "{step}: {line}"
            );
            let out = root.install(&[&scene.c]);
            assert!(
                out.starts_with("state 4 active (install c-1-1): "),
                "{step}: {out}"
            );
        }
        assert_tree_matches(&root.usr(), &[&scene.a, &scene.b, &scene.c]);
        let next = if after_exchange(step) { 4 } else { 5 };
        let out = root.install(&[&scene.d]);
        assert!(
            out.starts_with(&format!("state {next} active (install d-1-1): ")),
            "{step}: {out}"
        );
        assert_tree_matches(&root.usr(), &[&scene.a, &scene.b, &scene.c, &scene.d]);
        assert_recovered(root, &store_before, step);
    }
}

/// Spawns `install` of `stone`, waits until `ready` says the commit is under way, and
/// kills it with SIGKILL; whether the kill came in time is the caller's to check.
fn kill_when(root: &TestRoot, stone: &Path, ready: impl Fn() -> bool) -> Output {
    let mut child = root
        .command(&["install".as_ref(), stone.as_os_str()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "the commit never got under way");
        if child.try_wait().unwrap().is_some() {
            break;
        }
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

#[test]
fn an_outside_kill_while_unpacking_leaves_no_temp_file_behind() {
    let scene = Scene::new();
    let root = &scene.root;
    let system = root.system();
    let store_before = store_files(root);
    let contents: Vec<Vec<u8>> = (0..8).map(|i| noise(i + 1, 1 << 20)).collect();
    let hashes: Vec<AssetHash> = contents.iter().map(|c| AssetHash::of(c)).collect();
    let entries: Vec<SourceEntry> = contents
        .into_iter()
        .enumerate()
        .map(|(i, bytes)| file(&format!("share/big/{i}"), bytes))
        .collect();
    let big = root.stone(&meta("big", "1"), entries);

    // Killed once the first of the package's assets is in the store, and so while the
    // rest are being unpacked (new assets are anonymous files until they are complete).
    let output = kill_when(root, &big, || {
        hashes.iter().any(|h| root.asset_file(*h).exists())
    });
    if output.status.success() {
        // The machine outran the poll; nothing to prove this time.
        eprintln!("install finished before it could be killed");
        return;
    }
    assert_killed(&output, "unpacking");
    assert_eq!(root.state_id_file().as_deref(), Some("2"));
    assert_same(&system, &root.system(), "killed while unpacking");

    let output = root.run(&["gc"]);
    assert!(output.status.success(), "{output:?}");
    assert_recovered(root, &store_before, "killed while unpacking");
    // The dead install's state is gone; run again, the half-unpacked package is unpacked
    // again.
    assert_eq!(statuses(&root.states()), [(1, "committed"), (2, "active")]);
    let out = root.install(&[&big]);
    assert!(
        out.starts_with("state 4 active (install big-1-1): "),
        "{out}"
    );
    assert_tree_matches(&root.usr(), &[&scene.a, &scene.b, &big]);
}

#[test]
fn an_outside_kill_while_blitting_a_larger_tree_loses_nothing() {
    let scene = Scene::new();
    let root = &scene.root;
    let system = root.system();
    let store_before = store_files(root);
    let entries: Vec<SourceEntry> = (0..2000)
        .map(|i| {
            file(
                &format!("share/many/{}/{i}", i % 20),
                format!("file {i}").into_bytes(),
            )
        })
        .collect();
    let many = root.stone(&meta("many", "1"), entries);

    // Killed once the blit has begun to link this package's files.
    let staging = root.moss().join("root/staging/usr/share/many/0");
    let output = kill_when(root, &many, || {
        fs::read_dir(&staging).is_ok_and(|mut entries| entries.next().is_some())
    });
    if output.status.success() {
        eprintln!("install finished before it could be killed");
        return;
    }
    assert_killed(&output, "blitting");
    let live = root.state_id_file();
    match live.as_deref() {
        Some("2") => assert_same(&system, &root.system(), "killed before the exchange"),
        Some("3") => assert_tree_matches(&root.usr(), &[&scene.a, &scene.b, &many]),
        other => panic!("usr/.stateID is {other:?}"),
    }
    let output = root.run(&["gc"]);
    assert!(output.status.success(), "{output:?}");
    assert_recovered(root, &store_before, "killed while blitting");
    let active = if live.as_deref() == Some("2") {
        // The dead install's state is gone; it runs again.
        assert_eq!(statuses(&root.states()), [(1, "committed"), (2, "active")]);
        root.install(&[&many]);
        4
    } else {
        3
    };
    assert_eq!(root.active(), Some(active));
    assert_tree_matches(&root.usr(), &[&scene.a, &scene.b, &many]);
}
