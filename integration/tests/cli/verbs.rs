//! `--root/-D` in every position and moss's short verbs, through the binary: each spelling
//! must do the same thing to the same root.

use std::path::Path;

use mossfs_integration::mossfs;

use crate::common::{TestRoot, file, meta, text};

/// Runs the binary with exactly `args` (no `--root` added) and returns stdout.
fn run_ok(args: &[&str]) -> String {
    let output = mossfs().args(args).output().expect("mossfs runs");
    assert!(
        output.status.success(),
        "mossfs {args:?} failed: {}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

fn p(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

#[test]
fn root_before_or_after_the_command_and_short_verbs_change_the_same_root() {
    let root = TestRoot::new();
    let r = root.path();
    let nano = root.stone(&meta("nano", "1"), vec![file("bin/nano", "nano 1")]);
    let vim = root.stone(&meta("vim", "1"), vec![file("bin/vim", "vim 1")]);

    // moss's spelling: `-D ROOT it FILE`.
    let out = run_ok(&["-D", p(&r), "it", p(&nano)]);
    assert!(
        out.starts_with("state 1 active (install nano-1-1)"),
        "{out}"
    );
    // The long one, root first.
    run_ok(&["--root", p(&r), "install", p(&vim)]);
    assert_eq!(
        std::fs::read(r.join("usr/bin/vim")).expect("vim installed"),
        b"vim 1"
    );
    // Every way to ask for the installed packages answers the same.
    let expected = run_ok(&["list", "installed", "--root", p(&r)]);
    assert!(
        expected.contains("nano 1-1") && expected.contains("vim 1-1"),
        "{expected}"
    );
    for args in [
        vec!["li", "-D", p(&r)],
        vec!["--directory", p(&r), "li"],
        vec!["list", "li", "--directory", p(&r)],
        vec!["list", "-D", p(&r), "installed"],
    ] {
        assert_eq!(run_ok(&args), expected, "{args:?}");
    }
    // `rm` removes, root given last.
    let out = run_ok(&["rm", "vim", "-D", p(&r)]);
    assert!(out.starts_with("state 3 active (remove vim)"), "{out}");
    assert!(!r.join("usr/bin/vim").exists());
    assert!(r.join("usr/bin/nano").exists());
}

#[test]
fn root_is_accepted_by_commands_that_do_not_manage_one() {
    let root = TestRoot::new();
    let nano = root.stone(&meta("nano", "1"), vec![file("bin/nano", "nano 1")]);
    // inspect and extract accept it and leave the root alone.
    let out = run_ok(&["-D", "/nonexistent-root", "inspect", p(&nano)]);
    assert!(out.contains("nano"), "{out}");
    let dest = root.scratch("extracted");
    run_ok(&[
        "extract",
        p(&nano),
        "-o",
        p(&dest),
        "--root",
        "/nonexistent-root",
    ]);
    assert_eq!(
        std::fs::read(dest.join("bin/nano")).expect("extracted"),
        b"nano 1"
    );
    assert!(!Path::new("/nonexistent-root").exists());
    // umount parses it and reaches the real check of the mount point.
    let output = mossfs()
        .args(["umount", "--root", p(&root.path()), p(&dest)])
        .output()
        .expect("mossfs runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("is not a mount point"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn search_file_names_paths_and_packages_of_the_active_state() {
    let root = TestRoot::new();
    let nano = root.stone(
        &meta("nano", "1"),
        vec![file("bin/nano", "n"), file("share/nano/nanorc", "rc")],
    );
    let vim = root.stone(&meta("vim", "1"), vec![file("bin/vim", "v")]);
    root.install(&[&nano, &vim]);
    for pattern in ["/usr/bin/nano", "bin/nano", "/bin/nano"] {
        assert_eq!(
            root.ok(&["search-file", pattern]),
            "/usr/bin/nano from nano\n",
            "{pattern}"
        );
    }
    // Implicit directories (`share/nano`) belong to no package and are not listed.
    assert_eq!(
        root.ok(&["sf", "nano"]),
        "/usr/bin/nano from nano\n/usr/share/nano/nanorc from nano\n"
    );
    assert_eq!(root.ok(&["sf", "emacs"]), "");
    // A package no longer in the active state is not searched.
    root.ok(&["remove", "vim"]);
    assert_eq!(root.ok(&["sf", "bin/vim"]), "");
}

#[test]
fn state_active_shows_the_live_state_and_refuses_on_a_fresh_root() {
    let root = TestRoot::new();
    let nano = root.stone(&meta("nano", "1"), vec![file("bin/nano", "n")]);
    std::fs::create_dir_all(root.moss()).expect("a .moss");
    root.install(&[&nano]);
    let vim = root.stone(&meta("vim", "1"), vec![file("bin/vim", "v")]);
    root.install(&[&vim]);
    root.ok(&["state", "activate", "1"]);
    let active = root.ok(&["state", "active"]);
    assert_eq!(active, root.ok(&["state", "show", "1"]));
    assert!(active.starts_with("state 1 (active)"), "{active}");

    let fresh = TestRoot::new();
    let nano = fresh.stone(&meta("nano", "1"), vec![file("bin/nano", "n")]);
    fresh.ok(&["install", "--stage", p(&nano)]);
    let err = fresh.fail(&["state", "active"]);
    assert!(err.contains("no state is active yet"), "{err}");
}

#[test]
fn version_names_the_crate_version_and_full_adds_the_build() {
    let short = run_ok(&["version"]);
    let version = env!("CARGO_PKG_VERSION");
    assert!(short.starts_with(&format!("mossfs {version} (")), "{short}");
    let full = run_ok(&["version", "--full"]);
    for field in ["commit", "compiler  rustc", "target", "features  stone-v1"] {
        assert!(full.contains(field), "{field}: {full}");
    }
}

#[test]
fn verbose_shows_each_step_with_its_time_on_stderr_only() {
    let root = TestRoot::new();
    let nano = root.stone(&meta("nano", "1"), vec![file("bin/nano", "n")]);
    let quiet = root.run(&["install", p(&nano)]);
    assert!(quiet.status.success());
    assert_eq!(text(&quiet.stderr), "", "no -v, no log");
    let vim = root.stone(&meta("vim", "1"), vec![file("bin/vim", "v")]);
    let loud = root.run(&["-v", "install", p(&vim)]);
    assert!(loud.status.success());
    let stderr = text(&loud.stderr);
    // Every step of an install and a commit, in order, each with a time in seconds.
    let steps = [
        "check stones",
        "open root",
        "hash and copy stones",
        "plan",
        "record state",
        "ingest",
        "blit",
        "exchange",
        "archive",
        "db",
        "total",
    ];
    let mut at = 0;
    for step in steps {
        let needle = format!("INFO {step}: ");
        let found = stderr[at..]
            .find(&needle)
            .unwrap_or_else(|| panic!("no step {step:?} after byte {at}: {stderr}"));
        at += found + needle.len();
        let seconds = stderr[at..].split_whitespace().next().expect("a time");
        seconds
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("{step}: {seconds:?} is not seconds"));
    }
    // stdout is the same summary line as without -v.
    assert!(text(&loud.stdout).starts_with("state 2 active (install vim-1-1)"));

    // MOSSFS_LOG sets the level too, and --log wins over it.
    let output = root
        .command(&["li"])
        .env("MOSSFS_LOG", "info")
        .output()
        .expect("runs");
    assert!(
        text(&output.stderr).contains("INFO total: "),
        "{}",
        text(&output.stderr)
    );
    let output = root
        .command(&["--log", "error", "li"])
        .env("MOSSFS_LOG", "info")
        .output()
        .expect("runs");
    assert_eq!(text(&output.stderr), "");
    // A filter that does not parse is refused before anything runs.
    let output = root
        .command(&["rm", "nano"])
        .env("MOSSFS_LOG", "mossfs=[")
        .output()
        .expect("runs");
    let line = crate::common::error_line(&output);
    assert!(
        line.contains("invalid log filter `mossfs=[` (from MOSSFS_LOG)"),
        "{line}"
    );
    assert!(
        root.usr().join("bin/nano").exists(),
        "the remove did not run"
    );
}
