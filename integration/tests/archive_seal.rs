//! Issue 13 §2: a commit seals the tree it blitted, and a later commit built on that tree
//! (once archived) lists only the directories changed since the seal instead of every
//! directory. What issue 7's defect 5 asks must still hold: nothing that no package owns is
//! carried into a new state, wherever and however deep it was put into the tree while the
//! tree was live or archived. A tree whose commit was cut short has no seal and is listed
//! whole. Each test runs the real binary on a real root.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

use common::{TestRoot, assert_tree_matches, file, meta, text};
use mossfs_db::{Query, StateId};

/// When the commit of state `id` sealed its tree, from the root's database.
fn seal(root: &TestRoot, id: u64) -> Option<u64> {
    let db = mossfs_db::Db::open_read(&root.moss().join("db")).unwrap();
    db.read().unwrap().tree_seal(StateId(id)).unwrap()
}

/// A package with files three directories down, and beside them.
fn deep(root: &TestRoot) -> PathBuf {
    root.stone(
        &meta("deep", "1"),
        vec![
            file("share/deep/a/b/c/f", "f"),
            file("share/deep/x/g", "g"),
            file("bin/deep", "#!/bin/sh\n"),
        ],
    )
}

/// Plants, below `usr`, a setuid file three unchanged directories down and a directory
/// beside owned files; returns the paths.
fn plant(usr: &Path) -> [&'static str; 2] {
    let setuid = usr.join("share/deep/a/b/c/planted");
    fs::write(&setuid, "#!/bin/sh\necho gotcha\n").unwrap();
    fs::set_permissions(&setuid, fs::Permissions::from_mode(0o4755)).unwrap();
    fs::create_dir(usr.join("share/deep/x/stray")).unwrap();
    ["share/deep/a/b/c/planted", "share/deep/x/stray"]
}

#[test]
fn issue_13_a_file_planted_deep_in_a_live_usr_is_not_carried_by_its_sealed_archive() {
    let root = TestRoot::new();
    let base = deep(&root);
    let one = root.stone(&meta("one", "1"), vec![file("share/one/f", "1")]);
    let two = root.stone(&meta("two", "1"), vec![file("share/two/f", "2")]);
    root.install(&[&base]); // state 1
    assert!(
        seal(&root, 1).is_some(),
        "the commit of state 1 sealed its tree"
    );
    let planted = plant(&root.usr());
    root.install(&[&one]); // state 2: blitted whole; state 1's tree archived, planted too
    for path in planted {
        assert!(root.moss().join("root/1/usr").join(path).exists(), "{path}");
    }
    // State 3 is built from state 1's sealed archive: the plants changed their
    // directories after the seal, so those directories are listed and cleaned.
    let out = root.install(&[&two]);
    assert!(
        out.contains("from the archived tree of state 1"),
        "state 3 builds on the archive: {out}"
    );
    for path in planted {
        assert!(!root.usr().join(path).exists(), "{path} was carried");
    }
    assert_tree_matches(&root.usr(), &[&base, &one, &two]);
    let out = root.ok(&["verify"]);
    assert!(out.ends_with("of state 3: no damage\n"), "{out}");
}

#[test]
fn issue_13_a_commit_cut_short_leaves_no_seal_and_its_tree_is_listed_whole() {
    let root = TestRoot::new();
    let base = deep(&root);
    let one = root.stone(&meta("one", "1"), vec![file("share/one/f", "1")]);
    let two = root.stone(&meta("two", "1"), vec![file("share/two/f", "2")]);
    let three = root.stone(&meta("three", "1"), vec![file("share/three/f", "3")]);
    root.install(&[&base]); // state 1
    // Killed after the exchange: state 2 is live, and the next writer completes its
    // commit, but nothing says when its tree was finished.
    let output = root
        .command(&["install".as_ref(), one.as_os_str()])
        .env("MOSSFS_FAULT", "archive")
        .output()
        .unwrap();
    assert_eq!(
        output.status.signal(),
        Some(9),
        "killed: {}",
        text(&output.stderr)
    );
    root.install(&[&two]); // state 3, built on state 1's archive
    assert_eq!(seal(&root, 2), None, "a commit cut short seals nothing");
    assert!(seal(&root, 3).is_some());
    let planted = plant(&root.moss().join("root/2/usr"));
    // State 4 is built from state 2's unsealed archive: listed whole, plants removed.
    let out = root.install(&[&three]);
    assert!(
        out.contains("from the archived tree of state 2"),
        "state 4 builds on state 2's archive: {out}"
    );
    for path in planted {
        assert!(!root.usr().join(path).exists(), "{path} was carried");
    }
    assert_tree_matches(&root.usr(), &[&base, &one, &two, &three]);
}
