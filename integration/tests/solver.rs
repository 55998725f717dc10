//! Resolution through the real binary on real roots (issue 10, part 1): dependencies
//! satisfied by providers of every kind, declared conflicts refused with an explanation,
//! impossible requests explained, removals that take the packages that
//! need them only after confirmation (on a real terminal, through `script`), and orphans.
//!
//! Repositories are not in this branch yet, so every candidate is a stone given on the
//! command line or an installed package; the solver's choices among repository packages
//! (priority, release, minimal change, `sync`'s policy) are tested on the same solver in
//! `cli/src/engine/solve/tests.rs`.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{
    TestRoot, assert_same, assert_tree_matches, error_details, error_line, file, meta, relations,
};
use mossfs_db::{Query, Reason};

/// A stone `name` 1 with one file of its own, and the given relations.
fn stone(
    root: &TestRoot,
    name: &str,
    depends: &[&str],
    provides: &[&str],
    conflicts: &[&str],
) -> PathBuf {
    let mut m = meta(name, "1");
    m.depends = relations(depends);
    m.provides = relations(provides);
    m.conflicts = relations(conflicts);
    root.stone(
        &m,
        vec![file(
            &format!("share/{name}/file"),
            name.as_bytes().to_vec(),
        )],
    )
}

fn args<'a>(first: &'a str, stones: &'a [&Path]) -> Vec<&'a std::ffi::OsStr> {
    let mut all = vec![first.as_ref()];
    all.extend(stones.iter().map(|s| s.as_os_str()));
    all
}

/// The package lines of `state show` for the active state.
fn shown_packages(root: &TestRoot) -> Vec<String> {
    let id = root.active().expect("an active state").to_string();
    let show = root.ok(&["state", "show", &id]);
    show.lines()
        .skip_while(|l| !l.starts_with("  packages ("))
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .map(|l| l.trim().to_owned())
        .collect()
}

#[test]
fn every_provider_kind_satisfies_a_dependency() {
    let root = TestRoot::new();
    let wanted = [
        "name(base)",
        "soname(libz.so.1(x86_64))",
        "pkgconfig(zlib)",
        "pkgconfig32(zlib)",
        "cmake(ZLIB)",
        "interpreter(/usr/lib64/ld-linux-x86-64.so.2(x86_64))",
        "python(six)",
        "binary(sh)",
        "sysbinary(init)",
    ];
    let app = stone(&root, "app", &wanted, &[], &[]);
    let base = stone(&root, "base", &[], &[], &[]);
    let zlib = stone(&root, "zlib", &[], &wanted[1..5], &[]);
    let misc = stone(&root, "misc", &[], &wanted[5..], &[]);

    // Each provider is needed: without misc, its first relation is what is missing.
    let output = root.run(&args("install", &[&app, &base, &zlib]));
    error_line(&output);
    let details = error_details(&output);
    assert!(
        details.last().unwrap().trim_start().starts_with(
            "└─ interpreter(/usr/lib64/ld-linux-x86-64.so.2(x86_64)), for which no candidates were found"
        ),
        "{details:#?}"
    );
    assert!(!root.usr().exists());

    // Providers installed first, then the package that needs them.
    root.install(&[&base, &zlib, &misc]);
    root.install(&[&app]);
    assert_tree_matches(&root.usr(), &[&app, &base, &zlib, &misc]);

    // A request by provider finds the installed package that provides it.
    let out = root.ok(&["install", "--dry-run", "binary(sh)"]);
    assert!(
        out.contains("\n  misc 1-1 (explicit, requested as binary(sh), "),
        "{out}"
    );
    let out = root.ok(&["install", "--dry-run", "pkgconfig32(zlib)"]);
    assert!(
        out.contains("\n  zlib 1-1 (explicit, requested as pkgconfig32(zlib), "),
        "{out}"
    );
    // A provider with a slash in it is a request, not a path.
    let out = root.ok(&["install", "--dry-run", wanted[5]]);
    assert!(
        out.contains(&format!(
            "\n  misc 1-1 (explicit, requested as {}, ",
            wanted[5]
        )),
        "{out}"
    );
    let output = root.run(&["install", "--dry-run", "binary(emacs)"]);
    assert_eq!(
        error_line(&output),
        "error: cannot install binary(emacs): no set of packages satisfies it, so nothing was \
         changed; why, from what was asked down to what blocks it:"
    );
    assert_eq!(
        error_details(&output),
        ["No candidates were found for binary(emacs)."]
    );
}

#[test]
fn a_conflict_with_a_provider_is_refused_with_the_chain_that_leads_to_it() {
    let root = TestRoot::new();
    let nvi = stone(&root, "nvi", &[], &["binary(vi)"], &[]);
    root.install(&[&nvi]);
    let before = root.system();
    let states = root.states();
    // vim conflicts with any other vi; it comes in through the editor that needs it.
    let vim = stone(
        &root,
        "vim",
        &[],
        &["binary(vi)", "binary(vim)"],
        &["binary(vi)"],
    );
    let editor = stone(&root, "editor", &["binary(vim)"], &[], &[]);
    let output = root.run(&args("install", &[&editor, &vim]));
    error_line(&output);
    let details: Vec<String> = error_details(&output)
        .iter()
        .map(|l| l.trim_start().to_owned())
        .collect();
    assert_eq!(details[0], "The following packages are incompatible");
    for expected in [
        "└─ nvi 1-1 (installed)",
        "└─ vim 1-1 (given on the command line) would constrain",
        "└─ nvi (declared conflict: binary(vi)), which conflicts with any installable versions previously reported",
    ] {
        assert!(
            details.iter().any(|l| l.ends_with(expected)),
            "no `{expected}` in {details:#?}"
        );
    }
    assert_same(&before, &root.system(), "after a refused conflict");
    assert_eq!(root.states(), states);
}

#[test]
fn an_impossible_request_is_explained() {
    let root = TestRoot::new();
    let top = stone(&root, "top", &["name(mid)"], &[], &[]);
    let mid = stone(&root, "mid", &["pkgconfig(gone)"], &[], &[]);
    let output = root.run(&args("install", &[&top, &mid]));
    error_line(&output);
    assert_eq!(
        error_details(&output),
        [
            "mid 1-1 (given on the command line) cannot be installed because there are no viable options:",
            "└─ mid 1-1 (given on the command line) would require",
            "   └─ pkgconfig(gone), for which no candidates were found.",
        ]
    );
    assert!(!root.usr().exists());
}

/// Runs `mossfs ARGS --root ROOT` on a real terminal (`script` gives it one), typing
/// `answer`; what the terminal showed, and whether the command succeeded.
fn on_terminal(root: &TestRoot, args: &[&str], answer: &str) -> (String, bool) {
    let mut line = vec![mossfs_integration::mossfs_bin().display().to_string()];
    line.extend(args.iter().map(|a| a.to_string()));
    line.push("--root".into());
    line.push(root.path().display().to_string());
    let mut child = Command::new("script")
        .args(["-qefc", &line.join(" "), "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux gives the command a terminal");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answer.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (common::text(&output.stdout), output.status.success())
}

#[test]
fn a_removal_takes_the_packages_that_need_it_only_when_confirmed() {
    let root = TestRoot::new();
    let base = stone(&root, "base", &[], &[], &[]);
    let libfoo = stone(&root, "libfoo", &[], &["soname(libfoo.so.1(x86_64))"], &[]);
    let needy = stone(&root, "needy", &["soname(libfoo.so.1(x86_64))"], &[], &[]);
    let top = stone(&root, "top", &["name(needy)"], &[], &[]);
    root.install(&[&base, &libfoo, &needy, &top]);
    let before = root.system();
    let states = root.states();

    // No terminal to ask on, no -y: refused, naming what would go and why.
    assert_eq!(
        root.fail(&["remove", "libfoo"]),
        "error: removing libfoo also removes the packages that need it: needy (needs \
         soname(libfoo.so.1(x86_64)) from libfoo), top (needs name(needy) from needy); run \
         the command again with -y to remove them too, or name them"
    );
    // A dry run shows the plan.
    let out = root.ok(&["remove", "--dry-run", "libfoo"]);
    assert!(
        out.starts_with(
            "would record a state: remove 3 packages (libfoo, needy, top)\n  base 1-1 (explicit, "
        ),
        "{out}"
    );
    assert!(
        out.ends_with(
            "\nchanges:\n  remove libfoo-1-1\n  remove needy-1-1\n  remove top-1-1\n\
             download: 0 packages, 0 B\n"
        ),
        "{out}"
    );
    // On a terminal, the person is asked; "no" changes nothing.
    let (shown, ok) = on_terminal(&root, &["remove", "libfoo"], "n\n");
    assert!(!ok, "{shown}");
    assert!(
        shown.contains(
            "removing libfoo also removes the packages that need it:\r\n  needy (needs \
             soname(libfoo.so.1(x86_64)) from libfoo)\r\n  top (needs name(needy) from needy)\r\n\
             remove them too? [y/N] "
        ),
        "{shown}"
    );
    assert!(
        shown.contains(
            "error: nothing was removed: you declined to remove the packages that need libfoo"
        ),
        "{shown}"
    );
    assert_same(&before, &root.system(), "after a declined removal");
    assert_eq!(root.states(), states);

    // "y" removes all three.
    let (shown, ok) = on_terminal(&root, &["remove", "libfoo"], "y\n");
    assert!(ok, "{shown}");
    assert!(
        shown.contains("(remove 3 packages (libfoo, needy, top))"),
        "{shown}"
    );
    assert_tree_matches(&root.usr(), &[&base]);

    // -y answers yes without asking.
    let root = TestRoot::new();
    let base = stone(&root, "base", &[], &[], &[]);
    let libfoo = stone(&root, "libfoo", &[], &["soname(libfoo.so.1(x86_64))"], &[]);
    let needy = stone(&root, "needy", &["soname(libfoo.so.1(x86_64))"], &[], &[]);
    root.install(&[&base, &libfoo, &needy]);
    root.ok(&["remove", "-y", "libfoo"]);
    assert_tree_matches(&root.usr(), &[&base]);
}

/// Marks `names` in the active state as pulled in, as an install from a repository records
/// them (this branch has no repositories yet to do it through the binary).
fn mark_automatic(root: &TestRoot, names: &[&str]) {
    let db = mossfs_db::Db::open(&root.moss().join("db")).unwrap();
    let mut txn = db.write().unwrap();
    let active = txn.active().unwrap().unwrap();
    let mut state = txn.state(active).unwrap();
    for s in &mut state.selections {
        let name = txn.package(&s.package).unwrap().unwrap().meta.name;
        if names.contains(&name.as_str()) {
            s.explicit = false;
            s.reason = Reason::Unknown;
        }
    }
    txn.put_state(&state).unwrap();
    txn.commit().unwrap();
}

#[test]
fn orphans_go_with_the_package_that_needed_them() {
    let root = TestRoot::new();
    let lib = stone(&root, "lib", &[], &["soname(lib.so.1)"], &[]);
    let deep = stone(&root, "deep", &[], &[], &[]);
    let app = stone(&root, "app", &["soname(lib.so.1)"], &[], &[]);
    let mid = stone(&root, "mid", &["name(deep)"], &[], &[]);
    let other = stone(&root, "other", &["name(mid)"], &[], &[]);
    root.install(&[&lib, &deep, &app, &mid, &other]);
    mark_automatic(&root, &["lib", "deep", "mid"]);

    // Any change records why each pulled-in package is there.
    let extra = stone(&root, "extra", &[], &[], &[]);
    root.install(&[&extra]);
    let shown = shown_packages(&root);
    assert_eq!(shown.len(), 6, "{shown:#?}");
    for line in [
        "app-1-1",
        "extra-1-1",
        "other-1-1",
        "deep-1-1 (dependency: needed by mid for name(deep))",
        "lib-1-1 (dependency: needed by app for soname(lib.so.1))",
        "mid-1-1 (dependency: needed by other for name(mid))",
    ] {
        assert!(shown.iter().any(|l| l == line), "no `{line}` in {shown:#?}");
    }

    // Removing app takes lib, which only app needed; removing other takes mid and, through
    // it, deep.
    root.ok(&["remove", "app"]);
    assert_tree_matches(&root.usr(), &[&deep, &mid, &other, &extra]);
    let out = root.ok(&["remove", "other"]);
    assert!(
        out.contains("(remove 3 packages (deep, mid, other))"),
        "{out}"
    );
    assert_tree_matches(&root.usr(), &[&extra]);
}
