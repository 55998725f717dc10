//! Install, remove, upgrade, rollback with `state activate`, prune and gc: each checked
//! against the stones' layouts, `.stateID`, the root links and what the binary prints.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::{
    BASH, PIZZA, TestRoot, assert_same, assert_tree_matches, dir, file, link, meta, read_stone,
    sample, statuses,
};
use mossfs_format::AssetHash;
use mossfs_integration::corpus::SourceEntry;

/// A package with every kind of entry and unusual permissions and owners.
fn assorted(root: &TestRoot) -> PathBuf {
    let owned = |mut entry: SourceEntry, mode: u32, uid: u32, gid: u32| {
        entry.mode = mode;
        entry.uid = uid;
        entry.gid = gid;
        entry
    };
    root.stone(
        &meta("assorted", "1"),
        vec![
            file("bin/tool", b"#!/bin/sh\necho tool\n".to_vec()),
            owned(file("bin/su-ish", b"setuid binary".to_vec()), 0o4755, 0, 0),
            owned(
                file("bin/group-ish", b"setgid binary".to_vec()),
                0o2711,
                0,
                50,
            ),
            owned(
                file("share/assorted/private", b"secret".to_vec()),
                0o600,
                1000,
                1000,
            ),
            // Same bytes as bin/tool, other permissions: one asset, two store files.
            owned(
                file(
                    "share/assorted/tool.copy",
                    b"#!/bin/sh\necho tool\n".to_vec(),
                ),
                0o444,
                0,
                0,
            ),
            file("share/assorted/empty", Vec::new()),
            file("share/assorted/other-empty", Vec::new()),
            link("bin/tool-link", "tool"),
            link("share/assorted/absolute", "/usr/bin/tool"),
            dir("share/assorted/void", 0o700),
            owned(dir("share/assorted/sticky", 0o1777), 0o1777, 0, 0),
            owned(dir("lib/assorted", 0o750), 0o750, 7, 8),
            owned(file("lib/assorted/lib.so", vec![0x7f; 3000]), 0o755, 7, 8),
        ],
    )
}

#[test]
fn install_lays_out_every_entry_of_every_stone() {
    let root = TestRoot::new();
    let assorted = assorted(&root);
    let bash = sample(BASH);
    let pizza = sample(PIZZA);
    let out = root.ok(&[
        "install".as_ref(),
        bash.as_os_str(),
        pizza.as_os_str(),
        assorted.as_os_str(),
    ]);
    assert!(out.starts_with("state 1 active (install "), "{out}");
    assert!(
        out.contains(" entries blitted, 3 packages unpacked in "),
        "{out}"
    );

    assert_tree_matches(&root.usr(), &[&bash, &pizza, &assorted]);
    assert_eq!(root.state_id_file().as_deref(), Some("1"));
    for (name, target) in [
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib"),
    ] {
        assert_eq!(
            fs::read_link(root.path().join(name)).unwrap(),
            Path::new(target),
            "{name}"
        );
    }
    // Through the root link, the way a shell would find it.
    assert_eq!(
        fs::read(root.path().join("bin/tool")).unwrap(),
        b"#!/bin/sh\necho tool\n"
    );

    let states = root.states();
    assert_eq!(statuses(&states), [(1, "active")]);
    assert_eq!(states[0].packages, 3);
    let layouts: usize = [&bash, &pizza, &assorted]
        .iter()
        .map(|s| read_stone(s).layout.len())
        .sum();
    // Implied parent directories are entries too.
    assert!(states[0].entries as usize > layouts, "{states:?}");

    assert_eq!(
        root.ok(&["list", "installed"]),
        "assorted 1-1  assorted for the tests\n\
         bash-completion 2.11-1  Programmable completion functions for bash\n\
         italian-pizza 1-1  A certain Italian pizza that hates pineapples\n"
    );
    let info = root.ok(&["info", "assorted", "--files"]);
    assert!(
        info.starts_with("name          assorted\nversion       1-1 (build 1)\n"),
        "{info}"
    );
    assert!(info.contains("\n/usr/bin/tool-link -> tool\n"), "{info}");
    assert!(info.contains("\n/usr/lib/assorted/lib.so\n"), "{info}");
    assert_eq!(
        root.ok(&["owner", "/usr/share/bash-completion/completions/7za"]),
        "/usr/share/bash-completion/completions/7za is owned by bash-completion-2.11-1\n"
    );
    assert_eq!(
        root.fail(&["owner", "/usr/share/nothing"]),
        "error: no package ships /usr/share/nothing"
    );
    assert_eq!(root.ok(&["verify"]).lines().count(), 1);
}

#[test]
fn remove_deletes_that_package_and_keeps_the_rest() {
    let root = TestRoot::new();
    let a = root.stone(
        &meta("alpha", "1"),
        vec![
            file("bin/alpha", b"alpha".to_vec()),
            file("share/common/alpha.txt", b"alpha doc".to_vec()),
            file("share/common/shared.txt", b"same bytes in both".to_vec()),
        ],
    );
    let b = root.stone(
        &meta("beta", "1"),
        vec![
            file("bin/beta", b"beta".to_vec()),
            file("share/common/beta.txt", b"beta doc".to_vec()),
            file(
                "share/common/shared-too.txt",
                b"same bytes in both".to_vec(),
            ),
        ],
    );
    root.install(&[&a, &b]);
    assert_tree_matches(&root.usr(), &[&a, &b]);

    let out = root.ok(&["remove", "alpha"]);
    assert!(out.starts_with("state 2 active (remove alpha): "), "{out}");
    assert_tree_matches(&root.usr(), &[&b]);
    assert!(!root.usr().join("bin/alpha").exists());
    assert_eq!(root.state_id_file().as_deref(), Some("2"));
    assert_eq!(statuses(&root.states()), [(1, "committed"), (2, "active")]);
    assert_eq!(
        root.ok(&["list", "installed"]),
        "beta 1-1  beta for the tests\n"
    );
    assert_eq!(
        root.fail(&["info", "alpha"]),
        "error: package alpha is not installed; see 'mossfs list installed'"
    );
    assert_eq!(
        root.fail(&["remove", "alpha"]),
        "error: package alpha is not installed; see 'mossfs list installed'"
    );
    assert_eq!(statuses(&root.states()), [(1, "committed"), (2, "active")]);
}

#[test]
fn upgrade_replaces_the_old_version() {
    let root = TestRoot::new();
    let v1 = root.stone(
        &meta("tool", "1"),
        vec![
            file("bin/tool", b"tool version 1".to_vec()),
            file("share/tool/only-in-1", b"old".to_vec()),
            file("share/tool/same", b"unchanged".to_vec()),
        ],
    );
    let v2 = root.stone(
        &meta("tool", "2"),
        vec![
            file("bin/tool", b"tool version 2".to_vec()),
            file("share/tool/only-in-2", b"new".to_vec()),
            file("share/tool/same", b"unchanged".to_vec()),
        ],
    );
    root.install(&[&v1]);
    let out = root.install(&[&v2]);
    assert!(
        out.starts_with("state 2 active (upgrade tool-2-1): "),
        "{out}"
    );
    assert_tree_matches(&root.usr(), &[&v2]);
    assert!(!root.usr().join("share/tool/only-in-1").exists());

    let states = root.states();
    assert_eq!(statuses(&states), [(1, "committed"), (2, "active")]);
    assert_eq!(states[1].summary, "upgrade tool-2-1");
    assert_eq!(states[1].packages, 1);
    assert_eq!(
        root.ok(&["list", "installed"]),
        "tool 2-1  tool for the tests\n"
    );
    assert_eq!(
        root.ok(&["state", "diff", "1", "2"]),
        // A file whose bytes and metadata did not change (`same`) is not listed, although
        // a new package id now ships it.
        "~ usr/bin/tool  [tool]\n\
         - usr/share/tool/only-in-1  [tool]\n\
         + usr/share/tool/only-in-2  [tool]\n\
         3 paths differ between state 1 and state 2\n"
    );
}

#[test]
fn rollback_and_forward_reuse_archived_trees() {
    let root = TestRoot::new();
    let a1 = root.stone(&meta("a", "1"), vec![file("bin/a", b"a one".to_vec())]);
    let a2 = root.stone(
        &meta("a", "2"),
        vec![file("bin/a", b"a two".to_vec()), link("bin/a2", "a")],
    );
    let b = root.stone(&meta("b", "1"), vec![file("share/b/readme", b"b".to_vec())]);
    root.install(&[&a1]);
    let one = root.system();
    root.install(&[&b]);
    let two = root.system();
    let out = root.install(&[&a2]);
    // Commits change the newest archived tree into the new one.
    assert!(
        out.starts_with("state 3 active (upgrade a-2-1): 5 paths changed from the archived tree of state 1, 1 package unpacked in "),
        "{out}"
    );
    let three = root.system();
    assert_tree_matches(&root.usr(), &[&a2, &b]);

    // State 1's archive became state 3; state 2's is the newest left.
    let out = root.ok(&["state", "activate", "1"]);
    assert!(
        out.starts_with("state 1 active (activate state 1): 3 paths changed from the archived tree of state 2 in "),
        "{out}"
    );
    assert_same(&one, &root.system(), "rolled back to state 1");
    assert_eq!(root.state_id_file().as_deref(), Some("1"));
    assert_eq!(
        statuses(&root.states()),
        [(1, "active"), (2, "committed"), (3, "committed")]
    );
    assert_tree_matches(&root.usr(), &[&a1]);

    // Forward again: the tree that was live a moment ago is reused as it is.
    let out = root.ok(&["state", "activate", "3"]);
    assert!(
        out.starts_with("state 3 active (activate state 3): archived tree reused in "),
        "{out}"
    );
    assert_same(&three, &root.system(), "forward again to state 3");
    assert_eq!(root.state_id_file().as_deref(), Some("3"));
    assert_eq!(root.active(), Some(3));

    let out = root.ok(&["state", "activate", "2"]);
    assert!(
        out.contains(" paths changed from the archived tree of state 1 in "),
        "{out}"
    );
    assert_same(&two, &root.system(), "back to state 2");

    // Without any archive, a state is blitted again from the database and the store.
    for entry in fs::read_dir(root.moss().join("root")).unwrap() {
        fs::remove_dir_all(entry.unwrap().path()).unwrap();
    }
    let entries = root.states()[2].entries;
    let out = root.ok(&["state", "activate", "3"]);
    assert!(
        out.starts_with(&format!(
            "state 3 active (activate state 3): {entries} entries blitted in "
        )),
        "{out}"
    );
    assert_same(&three, &root.system(), "state 3 blitted again");

    assert_eq!(
        root.fail(&["state", "activate", "3"]),
        "error: state 3 is already active"
    );
    assert_same(&three, &root.system(), "after a refused activate");
}

#[test]
fn prune_keeps_the_newest_and_the_active_state() {
    let root = TestRoot::new();
    for n in 1..=4 {
        let stone = root.stone(
            &meta(&format!("p{n}"), "1"),
            vec![file(&format!("bin/p{n}"), format!("p{n}").into_bytes())],
        );
        root.install(&[&stone]);
    }
    root.ok(&["state", "activate", "2"]);
    // Each commit consumes the newest archive and archives the tree it replaced.
    assert!(root.moss().join("root/4/usr").is_dir());

    let out = root.ok(&["state", "prune", "--keep", "1"]);
    assert_eq!(
        out,
        "removed state 3\nremoved state 1\nrun 'mossfs gc' to reclaim the space their packages used\n"
    );
    assert_eq!(statuses(&root.states()), [(2, "active"), (4, "committed")]);
    assert!(!root.moss().join("root/1").exists());
    assert!(!root.moss().join("root/3").exists());
    assert!(root.moss().join("root/4/usr").is_dir());
    assert_eq!(root.state_id_file().as_deref(), Some("2"));

    assert_eq!(
        root.ok(&["state", "prune", "--keep", "1"]),
        "nothing to prune\n"
    );
    assert_eq!(
        root.fail(&["state", "remove", "2"]),
        "error: state 2 is active and cannot be removed; activate another state first"
    );
    let out = root.ok(&["state", "activate", "4"]);
    assert!(out.contains("archived tree reused"), "{out}");
    assert_eq!(
        root.ok(&["state", "prune", "--keep", "0"]).lines().next(),
        Some("removed state 2")
    );
    assert_eq!(statuses(&root.states()), [(4, "active")]);
}

#[test]
fn gc_removes_what_no_state_references() {
    let root = TestRoot::new();
    let unique = b"only alpha ships these bytes".to_vec();
    let shared = b"both packages ship these bytes".to_vec();
    let a = root.stone(
        &meta("alpha", "1"),
        vec![
            file("share/alpha/unique", unique.clone()),
            file("share/alpha/shared", shared.clone()),
        ],
    );
    let b = root.stone(
        &meta("beta", "1"),
        vec![file("share/beta/shared", shared.clone())],
    );
    root.install(&[&a, &b]);
    root.ok(&["remove", "alpha"]);
    let unique_asset = root.asset_file(AssetHash::of(&unique));
    let shared_asset = root.asset_file(AssetHash::of(&shared));
    assert!(unique_asset.is_file() && shared_asset.is_file());

    // State 1 still selects alpha: nothing is garbage yet.
    assert_eq!(
        root.ok(&["gc"]),
        "gc: 0 packages and 0 directory objects forgotten, 0 assets and 0 stones removed, 0 B reclaimed\n"
    );
    assert!(unique_asset.is_file());

    root.ok(&["state", "prune", "--keep", "0"]);
    assert_eq!(statuses(&root.states()), [(2, "active")]);
    let cache = root.moss().join("cache");
    let stones_before = fs::read_dir(&cache).unwrap().count();
    let reclaimed = unique.len() as u64 + fs::metadata(&a).unwrap().len();
    let out = root.ok(&["gc"]);
    assert!(
        out.starts_with("gc: 1 packages and ")
            && out.ends_with(&format!(
                " directory objects forgotten, 1 assets and 1 stones removed, {reclaimed} B reclaimed\n"
            )),
        "{out}"
    );
    assert!(!unique_asset.exists(), "alpha's own asset is gone");
    assert_eq!(
        fs::read(&shared_asset).unwrap(),
        shared,
        "beta still needs this one"
    );
    assert_eq!(fs::read_dir(&cache).unwrap().count(), stones_before - 1);
    assert_tree_matches(&root.usr(), &[&b]);
    root.ok(&["verify"]);
    assert!(
        root.ok(&["gc"])
            .ends_with("0 assets and 0 stones removed, 0 B reclaimed\n")
    );
    // Beta can still be unpacked and blitted again from what is left.
    fs::remove_dir_all(root.usr().join("share")).unwrap();
    root.ok(&["verify", "--repair"]);
    assert_tree_matches(&root.usr(), &[&b]);
}
