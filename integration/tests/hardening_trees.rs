//! Issue 7, defects 1 to 4: what mossfs does to trees it did not make, and to the trees it
//! keeps. Each test is named after its defect and failed on the code before its fix.
//!
//! - Defect 1: a commit refuses while a file system is mounted below `ROOT/usr`, every tree
//!   removal stays on its own file system, and a state is forgotten only once its tree is
//!   gone (orphans are cleaned by the next `state prune` or `gc`).
//! - Defect 2: a `usr` that no mossfs state made is never swapped out unless the user says
//!   `--take-over-usr`, and a dry run says what would happen.
//! - Defect 3: `.moss`, the store, the cache and the archived trees are `0700`, so an old
//!   setuid binary is not runnable by other users.
//! - Defect 4: the root links follow what the state ships (`lib64 -> usr/lib64`), and a
//!   link or directory the user made is reported, never silently rewritten.
//!
//! Every root is a fresh temporary directory; the mounts are real tmpfs mounts, made and
//! removed by the tests. A test that cannot mount fails under `CI=true` and is skipped,
//! saying why, elsewhere.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use mossfs_integration::corpus::SourceEntry;

/// `nobody` on every distribution this runs on.
const NOBODY: u32 = 65534;

/// Runs `program` as `nobody` (its supplementary groups are the test's, root's: `0700`
/// gives a group nothing either): its stdout, or the error `execve` gave.
fn run_as_nobody(program: &Path) -> Result<String, std::io::Error> {
    let output = Command::new(program)
        .uid(NOBODY)
        .gid(NOBODY)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()?;
    assert!(output.status.success(), "{program:?}: {output:?}");
    Ok(text(&output.stdout))
}

/// Gives `dir` and every parent below `/tmp` mode `0755`: the test's temporary directory
/// is `0700`, which alone would keep `nobody` out of everything in it.
fn open_to_others(root: &TestRoot) {
    let top = root.path();
    for dir in [top.parent().expect("the temporary directory"), &top] {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .mode()
        & 0o7777
}

/// A package whose one file is a setuid-root shell script printing `says`.
fn setuid_tool(root: &TestRoot, version: &str, says: &str) -> PathBuf {
    root.stone(
        &meta("tool", version),
        vec![SourceEntry::bytes(
            path("bin/tool"),
            format!("#!/bin/sh\necho {says}\n").into_bytes(),
            0o4755,
        )],
    )
}

/// Every store file of the asset with these bytes (the canonical one and its variants).
fn asset_files(root: &TestRoot, stone: &Path) -> Vec<PathBuf> {
    let read = read_stone(stone);
    let hash = *read.assets.keys().next().expect("one asset");
    let canonical = root.asset_file(hash);
    let shard = canonical.parent().expect("a shard folder");
    let name = hash.to_string();
    let mut found: Vec<PathBuf> = fs::read_dir(shard)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&name))
        })
        .collect();
    found.sort();
    found
}

#[test]
fn defect_03_an_old_setuid_binary_is_not_runnable_by_other_users() {
    let root = TestRoot::new();
    open_to_others(&root);
    let old = setuid_tool(&root, "1", "old");
    let new = setuid_tool(&root, "2", "new");
    root.install(&[&old]);
    root.install(&[&new]);

    // The live one is runnable by anyone: the path itself is open to `nobody`.
    let live = root.usr().join("bin/tool");
    assert_eq!(mode_of(&live), 0o4755);
    assert_eq!(run_as_nobody(&live).unwrap(), "new\n");

    // The old one is still on disk, in the archived tree of state 1 and in the store...
    let archived = root.moss().join("root/1/usr/bin/tool");
    assert_eq!(mode_of(&archived), 0o4755);
    let assets = asset_files(&root, &old);
    assert!(!assets.is_empty(), "the old asset is kept for rollback");
    // ... but nobody else can reach it.
    for old in assets.iter().chain([&archived]) {
        let err = run_as_nobody(old).expect_err("the old setuid binary ran as nobody");
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::PermissionDenied,
            "{}",
            old.display()
        );
    }
    for dir in ["", "assets", "cache", "root"] {
        assert_eq!(mode_of(&root.moss().join(dir)), 0o700, ".moss/{dir}");
    }
}

#[test]
fn defect_03_a_root_made_before_the_rule_is_fixed_when_a_writer_opens_it() {
    let root = TestRoot::new();
    let tool = setuid_tool(&root, "1", "one");
    root.install(&[&tool]);
    // As an earlier mossfs left it.
    for dir in ["", "assets", "cache", "root"] {
        fs::set_permissions(root.moss().join(dir), fs::Permissions::from_mode(0o755)).unwrap();
    }
    // A reader changes nothing.
    root.ok(&["state", "list"]);
    assert_eq!(mode_of(&root.moss()), 0o755);
    // A writer that has nothing to do still closes the folders.
    root.ok(&["gc"]);
    for dir in ["", "assets", "cache", "root"] {
        assert_eq!(mode_of(&root.moss().join(dir)), 0o700, ".moss/{dir}");
    }
    // And the system itself is as it was.
    assert_eq!(root.state_id_file().as_deref(), Some("1"));
    assert_eq!(
        fs::read(root.path().join("bin/tool")).unwrap(),
        b"#!/bin/sh\necho one\n"
    );
}
