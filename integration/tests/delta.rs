//! End-to-end tests of delta stones (issue 12, DESIGN.md §11) through the real binary:
//! `mossfs delta` makes one, `inspect` shows and checks it, `install` applies it, and a
//! system updated by the delta is identical to one updated by the full stone, down to the
//! package id and size in the database. Every refusal changes nothing, and the full stone
//! then gives the same system.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{TestRoot, assert_same, file, link, meta};
use mossfs_integration::corpus::{SourceEntry, noise};
use serde_json::Value;

fn exec(at: &str, bytes: Vec<u8>) -> SourceEntry {
    SourceEntry::bytes(common::path(at), bytes, 0o755)
}

fn edited(bytes: &[u8], at: usize, insert: &[u8]) -> Vec<u8> {
    let mut out = bytes[..at].to_vec();
    out.extend_from_slice(insert);
    out.extend_from_slice(&bytes[at..]);
    out
}

/// Compressible bytes that look like a binary: noise every few bytes.
fn binary(seed: u64, len: usize) -> Vec<u8> {
    let n = noise(seed, len);
    n.iter()
        .enumerate()
        .map(|(i, b)| if i % 5 == 0 { *b } else { (i % 53) as u8 })
        .collect()
}

/// Two versions of one package: a soname that changes its version (with its link), an
/// executable changed in place, an unchanged file, a removed file, a new file, a new empty
/// file and a file that shrinks to nothing.
fn versions(root: &TestRoot) -> (PathBuf, PathBuf) {
    let lib = binary(1, 200_000);
    let tool = binary(2, 60_000);
    let old = root.stone(
        &meta("foo", "1.0"),
        vec![
            exec("bin/foo", tool.clone()),
            exec("lib/libfoo.so.1.0.0", lib.clone()),
            link("lib/libfoo.so.1", "libfoo.so.1.0.0"),
            file("share/foo/README", binary(3, 10_000)),
            file("share/foo/removed", binary(4, 3_000)),
            file("share/foo/shrinks", binary(5, 4_000)),
        ],
    );
    let new = root.stone(
        &meta("foo", "1.1"),
        vec![
            exec("bin/foo", edited(&tool, 30_000, b"--new-flag")),
            exec("lib/libfoo.so.1.1.0", edited(&lib, 500, b"1.1.0")),
            link("lib/libfoo.so.1", "libfoo.so.1.1.0"),
            file("share/foo/README", binary(3, 10_000)),
            file("share/foo/added", binary(6, 7_000)),
            file("share/foo/empty", Vec::new()),
            file("share/foo/shrinks", Vec::new()),
        ],
    );
    (old, new)
}

fn make_delta(root: &TestRoot, old: &Path, new: &Path) -> PathBuf {
    let out = root.scratch("deltas").join("foo.delta.stone");
    let mut command = mossfs_integration::mossfs();
    let output = command
        .arg("delta")
        .arg(old)
        .arg(new)
        .arg("-o")
        .arg(&out)
        .output()
        .expect("mossfs runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = String::from_utf8_lossy(&output.stdout);
    assert!(
        line.starts_with("delta foo 1.0-1 -> 1.1-1 into ")
            && line
                .contains("4 assets rebuilt by 1 records (1 patches, 0 whole), 1 assets unchanged"),
        "{line}"
    );
    out
}

fn plain(args: &[&std::ffi::OsStr]) -> std::process::Output {
    mossfs_integration::mossfs()
        .args(args)
        .output()
        .expect("mossfs runs")
}

fn info(root: &TestRoot) -> String {
    root.ok(&["info", "foo"])
}

#[test]
fn a_system_updated_by_a_delta_is_identical_to_one_updated_by_the_full_stone() {
    let by_delta = TestRoot::new();
    let (old, new) = versions(&by_delta);
    let delta = make_delta(&by_delta, &old, &new);
    let full = fs::metadata(&new).unwrap().len();
    let small = fs::metadata(&delta).unwrap().len();
    assert!(small * 5 < full, "delta {small} B vs full stone {full} B");

    by_delta.install(&[&old]);
    // A dry run checks the delta and changes nothing, not even the store.
    let before = common::snapshot(&by_delta.moss().join("assets"));
    let out = by_delta.ok(&["install".as_ref(), "--dry-run".as_ref(), delta.as_os_str()]);
    assert!(
        out.contains("would record a state: upgrade foo-1.1-1"),
        "{out}"
    );
    assert_same(
        &before,
        &common::snapshot(&by_delta.moss().join("assets")),
        "store after a dry run",
    );
    let out = by_delta.install(&[&delta]);
    assert!(out.contains("upgrade foo-1.1-1"), "{out}");

    let by_stone = TestRoot::new();
    by_stone.install(&[&old]);
    by_stone.install(&[&new]);

    assert_same(
        &by_stone.system(),
        &by_delta.system(),
        "delta against full stone",
    );
    // The same package id and stone size: the database cannot tell them apart either.
    assert_eq!(info(&by_delta), info(&by_stone));
    let verified = by_delta.ok(&["verify"]);
    assert!(
        verified.ends_with("paths of state 2: no damage\n"),
        "{verified}"
    );

    // The delta is cached under the full stone's id until the full stone itself is given,
    // which takes its place.
    let id = info(&by_delta)
        .lines()
        .find_map(|l| l.strip_prefix("package id").map(|s| s.trim().to_owned()))
        .unwrap();
    let cached = by_delta.moss().join("cache").join(format!("{id}.stone"));
    assert_eq!(fs::metadata(&cached).unwrap().len(), small);
    let out = by_delta.install(&[&new]);
    assert!(out.contains("reinstall foo-1.1-1"), "{out}");
    assert_eq!(fs::read(&cached).unwrap(), fs::read(&new).unwrap());
}

#[test]
fn inspect_shows_and_checks_the_records() {
    let root = TestRoot::new();
    let (old, new) = versions(&root);
    let delta = make_delta(&root, &old, &new);
    let output = plain(&["inspect".as_ref(), "--check".as_ref(), delta.as_os_str()]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("header: stone v1, delta archive, 4 payloads"),
        "{text}"
    );
    // Every file here is small, so the four are one record against both bases.
    assert!(
        text.contains("delta: 1 records rebuilding 4 assets"),
        "{text}"
    );
    assert_eq!(text.matches("\n  patch ").count(), 1, "{text}");
    assert_eq!(text.matches("\n    target ").count(), 4, "{text}");
    assert_eq!(text.matches("\n    base ").count(), 2, "{text}");
    assert!(
        text.contains("check: ok (every payload checksum and 1 delta records verified"),
        "{text}"
    );

    let output = plain(&["inspect".as_ref(), "--json".as_ref(), delta.as_os_str()]);
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    let d = &json[0]["delta"];
    let records = d["records"].as_array().unwrap();
    assert_eq!(records.len(), 1);
    let patch = records.iter().find(|r| r["method"] == "patch").unwrap();
    assert_eq!(patch["targets"].as_array().unwrap().len(), 4);
    // Bases are named by their position in the old package's index (its five assets).
    let positions: Vec<u64> = patch["bases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions.len(), 2);
    assert!(positions.iter().all(|&p| p < 5), "{positions:?}");
    assert_ne!(positions[0], positions[1]);
    assert!(patch["window_log"].as_u64().unwrap() >= 10);
    // The delta names the full stone it stands for: the id a full install records.
    root.install(&[&new]);
    let id = info(&root)
        .lines()
        .find_map(|l| l.strip_prefix("package id").map(|s| s.trim().to_owned()))
        .unwrap();
    assert_eq!(d["to"], id.as_str());

    // A damaged delta fails the check and names the delta payload.
    let mut bytes = fs::read(&delta).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x10;
    let damaged = root.scratch("deltas").join("damaged.stone");
    fs::write(&damaged, bytes).unwrap();
    let output = plain(&["inspect".as_ref(), "--check".as_ref(), damaged.as_os_str()]);
    let line = common::error_line(&output);
    assert!(line.contains("damaged.stone failed the check"), "{line}");
    assert!(line.contains("delta"), "{line}");
}

#[test]
fn a_delta_without_its_bases_is_refused_and_the_full_stone_gives_the_same_system() {
    let root = TestRoot::new();
    let (old, new) = versions(&root);
    let delta = make_delta(&root, &old, &new);
    // Something else is installed; none of the bases is here.
    let other = root.stone(&meta("bar", "1"), vec![file("share/bar", b"bar".to_vec())]);
    root.install(&[&other]);
    let before = root.system();
    let states = root.states().len();
    // A dry run refuses it the same way, since it checks the delta against the store.
    for dry_run in [true, false] {
        let mut words = vec!["install".as_ref(), delta.as_os_str()];
        if dry_run {
            words.push("--dry-run".as_ref());
        }
        let line = root.fail(&words);
        // The old package is unknown here, so is its index, in which the records name
        // their bases.
        assert!(
            line.contains("whose index this root does not hold"),
            "{line}"
        );
        assert!(
            line.ends_with("install the package's full stone instead; nothing was changed"),
            "{line}"
        );
    }
    assert_same(&before, &root.system(), "after a refused delta");
    assert_eq!(root.states().len(), states);

    // The fallback.
    root.install(&[&new]);
    let reference = TestRoot::new();
    reference.install(&[&other]);
    reference.install(&[&new]);
    assert_same(
        &reference.system(),
        &root.system(),
        "full stone after a refused delta",
    );
}

#[test]
fn a_delta_of_an_older_payload_version_is_refused_by_name() {
    let root = TestRoot::new();
    let (old, new) = versions(&root);
    let delta = make_delta(&root, &old, &new);
    root.install(&[&old]);
    // Version 2 named bases by hash; the bytes after the header no longer mean that.
    let mut raw = common::forge::RawStone::parse(&fs::read(&delta).unwrap());
    raw.payload(mossfs_format::PayloadKind::Delta).0.version = 2;
    let forged = root.scratch("deltas").join("v2.stone");
    fs::write(&forged, raw.bytes()).unwrap();
    let before = root.system();
    let states = root.states().len();
    let line = root.fail(&["install".as_ref(), forged.as_os_str()]);
    assert!(
        line.contains("is version 2, which this mossfs no longer reads"),
        "{line}"
    );
    assert!(line.contains("use the full stone"), "{line}");
    assert_same(&before, &root.system(), "after a refused delta");
    assert_eq!(root.states().len(), states);
    // The full stone still installs.
    root.install(&[&new]);
}

#[test]
fn a_damaged_base_is_refused_and_the_full_stone_gives_the_same_system() {
    let root = TestRoot::new();
    let (old, new) = versions(&root);
    let delta = make_delta(&root, &old, &new);
    root.install(&[&old]);
    // Damage the old library in the store (and so in /usr, which links to it).
    let lib = root.usr().join("lib/libfoo.so.1.0.0");
    let mut bytes = fs::read(&lib).unwrap();
    bytes[100] ^= 0xff;
    fs::write(&lib, &bytes).unwrap();
    let before = root.system();
    let states = root.states().len();
    let line = root.fail(&["install".as_ref(), delta.as_os_str()]);
    assert!(line.contains("is damaged"), "{line}");
    assert!(
        line.contains("install the package's full stone instead"),
        "{line}"
    );
    assert_same(&before, &root.system(), "after a damaged base");
    assert_eq!(root.states().len(), states);

    root.install(&[&new]);
    let reference = TestRoot::new();
    reference.install(&[&old]);
    reference.install(&[&new]);
    assert_same(
        &reference.system(),
        &root.system(),
        "full stone after a damaged base",
    );
}

#[test]
fn delta_refuses_inputs_it_cannot_pair() {
    let root = TestRoot::new();
    let (old, new) = versions(&root);
    let other = root.stone(&meta("bar", "1"), vec![file("share/bar", b"bar".to_vec())]);
    let out = root.scratch("deltas").join("never.stone");
    let line = common::error_line(&plain(&[
        "delta".as_ref(),
        old.as_os_str(),
        other.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]));
    assert!(
        line.contains("a delta is made between two versions of one package"),
        "{line}"
    );
    let delta = make_delta(&root, &old, &new);
    let line = common::error_line(&plain(&[
        "delta".as_ref(),
        delta.as_os_str(),
        new.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]));
    assert!(
        line.contains("is a delta stone, not a package with content"),
        "{line}"
    );
    assert!(!out.exists());
}

#[test]
fn verify_repair_mends_files_of_a_package_installed_from_a_delta() {
    let root = TestRoot::new();
    let (old, new) = versions(&root);
    let delta = make_delta(&root, &old, &new);
    root.install(&[&old]);
    root.install(&[&delta]);
    let reference = TestRoot::new();
    reference.install(&[&old]);
    reference.install(&[&new]);
    // A patched file (rebuilt from the delta against its base) and an unchanged one
    // (taken from the old package's cached stone).
    for at in ["bin/foo", "share/foo/README"] {
        let path = root.usr().join(at);
        let mut bytes = fs::read(&path).unwrap();
        bytes[10] ^= 0xff;
        fs::write(&path, bytes).unwrap();
    }
    let line = root.fail(&["verify"]);
    assert!(line.contains("damaged"), "{line}");
    let out = root.ok(&["verify", "--repair"]);
    assert_eq!(out.matches("repaired asset").count(), 2, "{out}");
    assert_same(&reference.system(), &root.system(), "after repair");
}
