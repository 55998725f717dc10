//! Refusals that change nothing (file conflicts, missing dependencies, declared
//! conflicts, dry runs), and candidates: staged, committed, or conflicted and refused.

use std::fs;
use std::path::PathBuf;

use crate::common::{
    self, PINEAPPLE, PIZZA, Snapshot, TestRoot, assert_same, assert_tree_matches, dir, file, link,
    meta, relations, sample, snapshot, statuses,
};
use mossfs_format::AssetHash;
use mossfs_integration::corpus::noise;

/// Two packages shipping different bytes at `bin/tool`, one shipping a file where the
/// other has a directory, and a root with the first of each installed.
fn conflicting(root: &TestRoot) -> (PathBuf, PathBuf, PathBuf) {
    let one = root.stone(
        &meta("one", "1"),
        vec![file("bin/tool", b"one".to_vec()), dir("share/thing", 0o755)],
    );
    let two = root.stone(&meta("two", "1"), vec![file("bin/tool", b"two".to_vec())]);
    let three = root.stone(
        &meta("three", "1"),
        vec![file("share/thing", b"3".to_vec())],
    );
    root.install(&[&one]);
    (one, two, three)
}

/// The names in the stone cache.
fn cached_stones(root: &TestRoot) -> Vec<std::ffi::OsString> {
    let mut names: Vec<_> = fs::read_dir(root.moss().join("cache"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name.as_encoded_bytes().ends_with(b".stone"))
        .collect();
    names.sort();
    names
}

#[test]
fn a_file_conflict_fails_and_changes_nothing() {
    let root = TestRoot::new();
    let (one, two, three) = conflicting(&root);
    let before = root.system();
    let states = root.states();
    let cached = cached_stones(&root);

    assert_eq!(
        root.fail(&["install".as_ref(), two.as_os_str()]),
        "error: 1 path conflict (first: usr/bin/tool, shipped by one and two); \
         stage it with --stage --allow-conflicts to inspect it"
    );
    assert_eq!(
        root.fail(&["install".as_ref(), three.as_os_str()]),
        "error: 1 path conflict (first: usr/share/thing, shipped by one and three); \
         stage it with --stage --allow-conflicts to inspect it"
    );
    assert_same(&before, &root.system(), "after refused conflicts");
    assert_eq!(root.states(), states);
    assert_eq!(
        cached_stones(&root),
        cached,
        "a refused stone is not cached"
    );
    assert_eq!(root.state_id_file().as_deref(), Some("1"));
    assert_tree_matches(&root.usr(), &[&one]);
    assert!(!root.moss().join("root/staging/usr").exists());
}

#[test]
fn an_unsatisfied_dependency_fails_and_changes_nothing() {
    let root = TestRoot::new();
    let base = root.stone(&meta("base", "1"), vec![file("bin/base", b"base".to_vec())]);
    root.install(&[&base]);
    let before = root.system();
    let states = root.states();

    let mut needy = meta("needy", "1");
    needy.depends = relations(&["soname(libfoo.so.1(x86_64))", "name(base)"]);
    let needy = root.stone(&needy, vec![file("bin/needy", b"needs libfoo".to_vec())]);
    let output = root.run(&["install".as_ref(), needy.as_os_str()]);
    let stone = needy.file_name().unwrap().to_str().unwrap();
    assert_eq!(
        common::error_line(&output),
        format!(
            "error: cannot install {stone}: no set of packages satisfies it, so nothing was \
             changed; why, from what was asked down to what blocks it:"
        )
    );
    assert_eq!(
        common::error_details(&output),
        [
            "needy 1-1 (given on the command line) cannot be installed because there are no viable options:",
            "└─ needy 1-1 (given on the command line) would require",
            "   └─ soname(libfoo.so.1(x86_64)), for which no candidates were found.",
        ]
    );
    assert!(
        common::text(&output.stderr)
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("hint: ") && l.contains("mossfs repo update")),
        "the last line says how to look further: {}",
        common::text(&output.stderr)
    );
    assert_same(&before, &root.system(), "after a missing dependency");
    assert_eq!(root.states(), states);

    // With a provider in the same transaction it goes through, and the provider cannot
    // then be removed alone.
    let mut libfoo = meta("libfoo", "1");
    libfoo.provides = relations(&["soname(libfoo.so.1(x86_64))"]);
    let libfoo = root.stone(&libfoo, vec![file("lib/libfoo.so.1", b"\x7fELF".to_vec())]);
    root.install(&[&needy, &libfoo]);
    assert_tree_matches(&root.usr(), &[&base, &needy, &libfoo]);
    let before = root.system();
    // Without a terminal to ask on, and without -y, the packages that need it are named.
    assert_eq!(
        root.fail(&["remove", "libfoo"]),
        "error: removing libfoo also removes the package that needs it: needy (needs \
         soname(libfoo.so.1(x86_64)) from libfoo); run the command again with -y to remove \
         them too, or name them"
    );
    assert_eq!(
        root.fail(&["remove", "base"]),
        "error: removing base also removes the package that needs it: needy (needs \
         name(base) from base); run the command again with -y to remove them too, or name them"
    );
    assert_same(&before, &root.system(), "after refused removals");
    root.ok(&["remove", "needy", "libfoo"]);
    assert_tree_matches(&root.usr(), &[&base]);
}

#[test]
fn italian_pizza_refuses_pineapple() {
    let pizza = sample(PIZZA);
    let pineapple = sample(PINEAPPLE);
    // What blocks it, however the two arrive: the last line of the explanation.
    let blocked = "      └─ pineapple (declared conflict: name(pineapple)), which conflicts with any \
                   installable versions previously reported";
    let refused = |root: &TestRoot, stones: &[&std::path::Path]| {
        let mut args = vec!["install".as_ref()];
        args.extend(stones.iter().map(|s| s.as_os_str()));
        let output = root.run(&args);
        let line = common::error_line(&output);
        assert!(
            line.ends_with(
                ": no set of packages satisfies it, so nothing was changed; why, from what was \
                 asked down to what blocks it:"
            ),
            "{line}"
        );
        let details = common::error_details(&output);
        assert_eq!(details[0], "The following packages are incompatible");
        assert_eq!(
            details.last().map(|l| l.trim_start()),
            Some(blocked.trim_start()),
            "{details:#?}"
        );
        details
    };

    let root = TestRoot::new();
    root.install(&[&pizza]);
    let before = root.system();
    let details = refused(&root, &[&pineapple]);
    assert!(
        details.contains(&"   └─ italian-pizza 1-1 (installed) would constrain".to_owned()),
        "{details:#?}"
    );
    assert_same(&before, &root.system(), "pizza kept");
    assert_eq!(statuses(&root.states()), [(1, "active")]);

    let root = TestRoot::new();
    root.install(&[&pineapple]);
    refused(&root, &[&pizza]);
    assert_tree_matches(&root.usr(), &[&pineapple]);

    let root = TestRoot::new();
    refused(&root, &[&pizza, &pineapple]);
    assert!(!root.usr().exists());
}

#[test]
fn dry_run_changes_nothing() {
    let root = TestRoot::new();
    let pizza = sample(PIZZA);
    root.install(&[&pizza]);
    let before = root.system();
    let stone = root.stone(&meta("extra", "1"), vec![file("bin/extra", b"x".to_vec())]);
    let out = root.ok(&["install".as_ref(), "--dry-run".as_ref(), stone.as_os_str()]);
    assert!(
        out.starts_with("would record a state: install extra-1-1\n"),
        "{out}"
    );
    assert!(
        out.ends_with("\nchanges:\n  install extra-1-1\ndownload: 0 packages, 0 B\n"),
        "{out}"
    );
    let stone_name = stone.file_name().unwrap().to_str().unwrap();
    assert!(
        out.contains(&format!(
            "\n  extra 1-1 (explicit, requested as {stone_name}, "
        )),
        "{out}"
    );
    assert!(
        out.contains("\n  italian-pizza 1-1 (explicit, requested as "),
        "{out}"
    );
    assert_same(&before, &root.system(), "after a dry run");
    assert_eq!(statuses(&root.states()), [(1, "active")]);
}

#[test]
fn a_staged_candidate_writes_no_tree_until_committed() {
    let root = TestRoot::new();
    let pizza = sample(PIZZA);
    root.install(&[&pizza]);
    let before = root.system();
    let extra = root.stone(
        &meta("extra", "1"),
        vec![file("bin/extra", b"extra".to_vec()), link("bin/x", "extra")],
    );

    let out = root.ok(&["install".as_ref(), "--stage".as_ref(), extra.as_os_str()]);
    assert!(
        out.starts_with("staged state 2 (install extra-1-1): "),
        "{out}"
    );
    assert!(out.contains("commit it with 'mossfs commit 2'"), "{out}");
    assert_same(&before, &root.system(), "after staging");
    assert_eq!(root.state_id_file().as_deref(), Some("1"));
    assert_eq!(statuses(&root.states()), [(1, "active"), (2, "candidate")]);
    assert!(!root.moss().join("root/staging/usr").exists());

    let out = root.ok(&["commit"]);
    assert!(
        out.starts_with("state 2 active (install extra-1-1): "),
        "{out}"
    );
    assert_tree_matches(&root.usr(), &[&pizza, &extra]);
    assert_eq!(root.state_id_file().as_deref(), Some("2"));
    assert_eq!(statuses(&root.states()), [(1, "committed"), (2, "active")]);

    // remove --stage likewise.
    let out = root.ok(&["remove", "--stage", "extra"]);
    assert!(out.starts_with("staged state 3 (remove extra): "), "{out}");
    assert_tree_matches(&root.usr(), &[&pizza, &extra]);
    root.ok(&["commit", "3"]);
    assert_tree_matches(&root.usr(), &[&pizza]);
    assert_eq!(
        root.fail(&["commit"]),
        "error: there is no candidate state to commit; stage one with 'mossfs install --stage'"
    );
}

#[test]
fn a_conflicted_candidate_is_recorded_but_never_committed() {
    let root = TestRoot::new();
    let (one, two, _) = conflicting(&root);
    let before = root.system();

    let out = root.ok(&[
        "install".as_ref(),
        "--stage".as_ref(),
        "--allow-conflicts".as_ref(),
        two.as_os_str(),
    ]);
    let tool_one = AssetHash::of(b"one");
    let tool_two = AssetHash::of(b"two");
    let listing = format!(
        "  conflicts (1):\n    usr/bin/tool\n      one-1-1: file 644 3 bytes, {tool_one}\n      \
         two-1-1: file 644 3 bytes, {tool_two}\n"
    );
    assert!(
        out.starts_with("staged state 2 (install two-1-1): "),
        "{out}"
    );
    assert!(
        out.ends_with(&format!(
            "{listing}state 2 has conflicts and cannot be committed; inspect them with \
             'mossfs mount --state 2 --debug-view DIR', drop it with 'mossfs state remove 2'\n"
        )),
        "{out}"
    );
    assert_eq!(statuses(&root.states()), [(1, "active"), (2, "conflicts")]);
    let show = root.ok(&["state", "show", "2"]);
    assert!(show.starts_with("state 2\n"), "{show}");
    assert!(show.contains("  status   Candidate\n"), "{show}");
    assert!(
        show.contains("    one-1-1\n    two-1-1\n") || show.contains("    two-1-1\n    one-1-1\n"),
        "{show}"
    );
    assert!(show.ends_with(&listing), "{show}");

    let refusal = "error: 1 path conflict (first: usr/bin/tool, shipped by one and two); \
                   inspect it with 'mossfs mount --state 2 DIR'";
    let output = root.run(&["commit"]);
    assert_eq!(common::error_line(&output), refusal);
    assert_eq!(root.fail(&["state", "activate", "2"]), refusal);
    assert_same(&before, &root.system(), "after refused commits");
    assert_eq!(statuses(&root.states()), [(1, "active"), (2, "conflicts")]);
    assert_tree_matches(&root.usr(), &[&one]);
}

#[test]
fn a_full_disk_fails_cleanly_and_changes_nothing() {
    let Some(root) = TestRoot::on_small_fs(8 << 20) else {
        return;
    };
    let base = root.stone(&meta("base", "1"), vec![file("bin/base", b"base".to_vec())]);
    root.install(&[&base]);
    let before = root.system();
    let store = store_files(&root);
    let states = root.states();
    let free = root.free_bytes();

    // Too large to keep in the cache: the first write of the install fails.
    let noisy = root.stone(
        &meta("noisy", "1"),
        vec![file("share/noise", noise(1, 12 << 20))],
    );
    // Small enough to cache, but its content unpacks to more than the disk holds.
    let zeros = root.stone(
        &meta("zeros", "1"),
        vec![file("share/zeros", vec![0; 12 << 20])],
    );
    for stone in [&noisy, &zeros] {
        let line = root.fail(&["install".as_ref(), stone.as_os_str()]);
        assert!(line.contains("No space left on device"), "{line}");
        assert!(
            line.ends_with(
                "; the file system is full; free some space, then run the command again"
            ),
            "{line}"
        );
        assert_same(&before, &root.system(), "after a full disk");
        assert_eq!(root.states(), states);
        assert_eq!(root.state_id_file().as_deref(), Some("1"));
        assert!(!root.moss().join("root/staging/usr").exists());
        for temp in ["cache/.tmp", "assets/.tmp"] {
            let left = fs::read_dir(root.moss().join(temp)).map_or(0, |dir| dir.count());
            assert_eq!(left, 0, "{temp} after a full disk");
        }
        // The half-unpacked assets and the cached stone went with the failed change.
        assert_same(&store, &store_files(&root), "the store after a full disk");
    }

    // Nothing is left for gc, and the space is back (but for the database's growth); the
    // root takes the next install.
    assert_eq!(root.ok(&["gc"]), NOTHING_TO_COLLECT);
    let lost = free.saturating_sub(root.free_bytes());
    assert!(lost <= 64 << 10, "{lost} bytes still used");
    let next = root.stone(&meta("next", "1"), vec![file("bin/next", b"next".to_vec())]);
    root.install(&[&next]);
    assert_tree_matches(&root.usr(), &[&base, &next]);
}

/// What `mossfs gc` says when a failed change left nothing behind.
const NOTHING_TO_COLLECT: &str = "gc: 0 packages and 0 directory objects forgotten, 0 assets and 0 stones removed, 0 B reclaimed\n";

/// The store's assets and cached stones, without its folders for unfinished files.
fn store_files(root: &TestRoot) -> Snapshot {
    let mut files = snapshot(&root.moss().join("assets"));
    files.extend(
        snapshot(&root.moss().join("cache"))
            .into_iter()
            .map(|(path, snap)| (PathBuf::from("cache").join(path), snap)),
    );
    files.retain(|path, _| !path.components().any(|c| c.as_os_str() == ".tmp"));
    files
}

#[test]
fn a_stone_found_damaged_while_unpacking_leaves_nothing_behind() {
    let root = TestRoot::new();
    let base = root.stone(&meta("base", "1"), vec![file("bin/base", b"base".to_vec())]);
    root.install(&[&base]);
    let before = root.system();
    let store = store_files(&root);
    let states = root.states();

    // Incompressible content, so that the last bytes of the file are the content's own:
    // the stone's head checks out, and the damage is found only while unpacking.
    let good = root.stone(
        &meta("damaged", "1"),
        vec![
            file("share/damaged/a", noise(7, 256 << 10)),
            file("share/damaged/b", noise(8, 256 << 10)),
        ],
    );
    let mut bytes = fs::read(&good).unwrap();
    let at = bytes.len() - 1000;
    bytes[at] ^= 0xff;
    let damaged = root.scratch("damaged").join("damaged.stone");
    fs::write(&damaged, bytes).unwrap();

    let line = root.fail(&["install".as_ref(), damaged.as_os_str()]);
    assert!(line.contains("damaged.stone"), "{line}");
    assert_same(&before, &root.system(), "after a damaged stone");
    assert_same(
        &store,
        &store_files(&root),
        "the store after a damaged stone",
    );
    assert_eq!(root.states(), states);
    assert_eq!(root.ok(&["gc"]), NOTHING_TO_COLLECT);
    assert!(root.ok(&["list", "installed"]).starts_with("base "));
}
