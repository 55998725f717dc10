//! Deltas published in a repository and used by `sync` (issue 12 §2 and §3), through a
//! real nginx on a loopback port: `mossfs index --deltas 1` makes and lists the delta,
//! `sync` downloads it instead of the full stone (the bytes are counted in nginx's access
//! log), and the system it commits is identical, path by path, attribute by attribute and
//! byte by byte, to one updated from the full stone. Every way the delta can fail (a
//! damaged base asset in the store, a delta whose bytes do not rebuild their targets, a
//! wrong sha256, a delta missing from the server) falls back to the full stone, says so
//! once, and gives that same system. `verify --repair` of a package that came by delta
//! fetches its full stone.
//!
//! nginx is required: under `CI=true` a test that cannot start it fails; elsewhere it
//! prints why and passes.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::forge::RawStone;
use common::{Snapshot, TestRoot, assert_same, file, link, meta, text};
use mossfs_format::PayloadKind;
use mossfs_integration::corpus::{SourceEntry, noise};
use mossfs_integration::nginx::Nginx;

fn exec(at: &str, bytes: Vec<u8>) -> SourceEntry {
    SourceEntry::bytes(common::path(at), bytes, 0o755)
}

/// Compressible bytes that look like a binary: noise every few bytes.
fn binary(seed: u64, len: usize) -> Vec<u8> {
    noise(seed, len)
        .iter()
        .enumerate()
        .map(|(i, b)| if i % 5 == 0 { *b } else { (i % 53) as u8 })
        .collect()
}

fn edited(bytes: &[u8], at: usize, insert: &[u8]) -> Vec<u8> {
    let mut out = bytes[..at].to_vec();
    out.extend_from_slice(insert);
    out.extend_from_slice(&bytes[at..]);
    out
}

/// The library of version 1.0, a base of the delta.
fn old_library() -> Vec<u8> {
    binary(1, 300_000)
}

/// Releases 1 and 2 of `foo` in `served/pool/`: a soname whose version changes, an
/// executable changed in place, an unchanged file, a removed one, a new one, a new empty
/// one and one that shrinks to nothing.
fn publish_versions(publisher: &TestRoot, served: &Path) -> (PathBuf, PathBuf) {
    let lib = old_library();
    let tool = binary(2, 80_000);
    let mut old_meta = meta("foo", "1.0");
    old_meta.release = 1;
    let mut new_meta = meta("foo", "1.1");
    new_meta.release = 2;
    let old = publisher.stone(
        &old_meta,
        vec![
            exec("bin/foo", tool.clone()),
            exec("lib/libfoo.so.1.0.0", lib.clone()),
            link("lib/libfoo.so.1", "libfoo.so.1.0.0"),
            file("share/foo/README", binary(3, 10_000)),
            file("share/foo/removed", binary(4, 3_000)),
            file("share/foo/shrinks", binary(5, 4_000)),
        ],
    );
    let new = publisher.stone(
        &new_meta,
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
    let pool = served.join("pool");
    fs::create_dir_all(&pool).unwrap();
    let (old_at, new_at) = (pool.join("foo-1.0-1.stone"), pool.join("foo-1.1-2.stone"));
    fs::copy(&old, &old_at).unwrap();
    fs::copy(&new, &new_at).unwrap();
    (old_at, new_at)
}

/// `mossfs index SERVED --deltas 1`; its stdout.
fn index(served: &Path) -> String {
    let out = mossfs_integration::mossfs()
        .arg("index")
        .arg(served)
        .args(["--deltas", "1"])
        .output()
        .expect("mossfs runs");
    assert!(out.status.success(), "index: {}", text(&out.stderr));
    text(&out.stdout)
}

/// The one delta stone under `served/deltas/`.
fn delta_file(served: &Path) -> PathBuf {
    let mut found: Vec<PathBuf> = fs::read_dir(served.join("deltas"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "delta"))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found.pop().unwrap()
}

/// A client root with release 1 installed from its stone and the repository added.
fn client(old: &Path, nginx: &Nginx) -> TestRoot {
    let root = TestRoot::new();
    root.install(&[old]);
    root.ok(&["repo", "add", "main", &nginx.url("stone.index")]);
    root.ok(&["repo", "update"]);
    root
}

/// Body bytes nginx sent for requests whose path ends in `suffix`, from log line `from`.
fn bytes_sent(nginx: &Nginx, from: usize, suffix: &str) -> u64 {
    nginx.requests()[from..]
        .iter()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let _method = parts.next()?;
            let uri = parts.next()?;
            let _status = parts.next()?;
            let bytes: u64 = parts.next()?.parse().ok()?;
            uri.ends_with(suffix).then_some(bytes)
        })
        .sum()
}

/// `sync` on `root`, asserting success; its output.
fn sync(root: &TestRoot) -> Output {
    let out = root.run(&["sync"]);
    assert!(
        out.status.success(),
        "sync: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("upgrade foo"),
        "{}",
        text(&out.stdout)
    );
    out
}

/// What a fallback must look like: one note, naming the package, and nothing else on
/// stderr that is not a progress line.
fn assert_one_fallback_note(out: &Output, why: &str) {
    let stderr = text(&out.stderr);
    let notes: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("downloading the full stone instead"))
        .collect();
    assert_eq!(notes.len(), 1, "{stderr}");
    assert!(notes[0].starts_with("note: foo-1.1-2"), "{stderr}");
    assert!(notes[0].contains(why), "expected '{why}' in: {stderr}");
}

/// The system, and what the database records of the installed package (without what the
/// repositories offer).
fn system_and_info(root: &TestRoot) -> (Snapshot, String) {
    let info = root.ok(&["info", "foo"]);
    let installed = info
        .split("available:")
        .next()
        .unwrap_or_default()
        .to_owned();
    (root.system(), installed)
}

#[test]
fn sync_takes_the_delta_and_every_failure_falls_back_to_the_same_system() {
    let publisher = TestRoot::new();
    let served = publisher.scratch("served");
    let (old, new) = publish_versions(&publisher, &served);
    let published = index(&served);
    assert!(published.starts_with("indexed 1 package "), "{published}");
    assert!(
        published.contains("delta foo 1.0-1 -> 1.1-2: "),
        "{published}"
    );
    let delta = delta_file(&served);
    let good_delta = fs::read(&delta).unwrap();
    let full_size = fs::metadata(&new).unwrap().len();
    let Some(nginx) = Nginx::start(&served, "") else {
        return;
    };

    // By delta: the dry run shows both figures, the sync downloads only the delta.
    let by_delta = client(&old, &nginx);
    let planned = by_delta.ok(&["sync", "--dry-run"]);
    let figure = planned
        .lines()
        .find(|l| l.starts_with("download: "))
        .unwrap_or_else(|| panic!("{planned}"));
    assert!(figure.ends_with(" with deltas)"), "{figure}");
    let (without, with) = figure
        .split_once(", ")
        .and_then(|(_, sizes)| sizes.strip_suffix(" with deltas)"))
        .and_then(|sizes| sizes.split_once(" ("))
        .unwrap_or_else(|| panic!("{figure}"));
    assert_ne!(with, without, "{figure}");
    let start = nginx.requests().len();
    let out = sync(&by_delta);
    assert!(
        !text(&out.stderr).contains("full stone instead"),
        "{}",
        text(&out.stderr)
    );
    let delta_bytes = bytes_sent(&nginx, start, ".delta");
    assert_eq!(
        bytes_sent(&nginx, start, ".stone"),
        0,
        "{:?}",
        nginx.requests()
    );
    assert_eq!(delta_bytes, good_delta.len() as u64);
    assert!(
        delta_bytes * 5 < full_size,
        "the delta ({delta_bytes} B) is not much smaller than the full stone ({full_size} B)"
    );
    let expected = system_and_info(&by_delta);

    // The same update from the full stone, given by hand: the same system and database.
    let by_hand = TestRoot::new();
    by_hand.install(&[&old]);
    by_hand.install(&[&new]);
    let reference = system_and_info(&by_hand);
    assert_same(&reference.0, &expected.0, "delta against full stone");
    assert_eq!(reference.1, expected.1);

    let falls_back = |root: &TestRoot, why: &str| {
        let start = nginx.requests().len();
        let out = sync(root);
        assert_one_fallback_note(&out, why);
        assert_eq!(
            bytes_sent(&nginx, start, ".stone"),
            full_size,
            "{:?}",
            nginx.requests()
        );
        let got = system_and_info(root);
        assert_same(&expected.0, &got.0, why);
        assert_eq!(expected.1, got.1);
    };

    // A damaged base asset in the store: the delta is fetched, the base fails its hash.
    let damaged_base = client(&old, &nginx);
    let base = damaged_base.asset_file(mossfs_format::AssetHash::of(&old_library()));
    let mut bytes = fs::read(&base).unwrap();
    bytes[1000] ^= 0xff;
    fs::write(&base, &bytes).unwrap();
    falls_back(&damaged_base, "is damaged");

    // The delta on the server has other bytes than the index's sha256.
    let mut wrong = good_delta.clone();
    let middle = wrong.len() / 2;
    wrong[middle] ^= 0x01;
    fs::write(&delta, &wrong).unwrap();
    falls_back(&client(&old, &nginx), "sha256");

    // The delta is missing from the server.
    fs::remove_file(&delta).unwrap();
    falls_back(&client(&old, &nginx), "not found");

    // A delta listed with its true sha256 whose patch does not rebuild its target: the
    // payload checksum is honest, so only applying it finds the lie.
    fs::write(&delta, corrupt_a_patch(&good_delta)).unwrap();
    let republished = index(&served);
    assert!(republished.contains(", kept from before"), "{republished}");
    falls_back(&client(&old, &nginx), "does not rebuild asset");
}

/// The delta stone with one byte flipped in the middle of its first patch frame, the
/// delta payload's checksum recomputed.
fn corrupt_a_patch(delta: &[u8]) -> Vec<u8> {
    let mut raw = RawStone::parse(delta);
    let (head, body) = raw.payload(PayloadKind::Delta);
    let records = head.records;
    let mut body = body.clone();
    // The layout in format/src/delta.rs: a 72-byte preamble, then per record a varint
    // header length, the header (window log, varint target and base counts, a varint per
    // target, a varint per base (its position in the old package's index), the varint
    // frame length) and the frame.
    fn varint(bytes: &[u8], at: &mut usize) -> usize {
        let mut value = 0usize;
        let mut shift = 0;
        loop {
            let byte = bytes[*at];
            *at += 1;
            value |= usize::from(byte & 0x7f) << shift;
            shift += 7;
            if byte < 0x80 {
                return value;
            }
        }
    }
    let mut at = 72;
    loop {
        assert!(at < body.len(), "the delta has a patch");
        let header_len = varint(&body, &mut at);
        let frame_at = at + header_len;
        let mut h = at + 1;
        let targets = varint(&body, &mut h);
        let bases = varint(&body, &mut h);
        for _ in 0..targets {
            varint(&body, &mut h);
        }
        for _ in 0..bases {
            varint(&body, &mut h);
        }
        let frame_len = varint(&body, &mut h);
        if bases > 0 {
            body[frame_at + frame_len / 2] ^= 0x55;
            break;
        }
        at = frame_at + frame_len;
    }
    raw.replace(PayloadKind::Delta, records, body);
    raw.bytes()
}

#[test]
fn verify_repair_of_a_package_that_came_by_delta_fetches_its_full_stone() {
    let publisher = TestRoot::new();
    let served = publisher.scratch("served");
    let (old, new) = publish_versions(&publisher, &served);
    index(&served);
    let Some(nginx) = Nginx::start(&served, "") else {
        return;
    };
    let root = client(&old, &nginx);
    sync(&root);
    let id = root
        .ok(&["info", "foo"])
        .lines()
        .find_map(|l| l.strip_prefix("package id").map(|s| s.trim().to_owned()))
        .unwrap();
    let cached = root.moss().join("cache").join(format!("{id}.stone"));
    assert_ne!(fs::read(&cached).unwrap(), fs::read(&new).unwrap());

    // Damage the changed executable, rebuilt from a patch.
    let tool = root.usr().join("bin/foo");
    let mut bytes = fs::read(&tool).unwrap();
    bytes[10] ^= 0xff;
    fs::write(&tool, &bytes).unwrap();
    let found = root.run(&["verify"]);
    assert_eq!(found.status.code(), Some(1), "{}", text(&found.stdout));
    let start = nginx.requests().len();
    let repaired = root.ok(&["verify", "--repair"]);
    assert!(
        repaired.contains(&format!(
            "fetched the full stone of package {id} from its repository"
        )),
        "{repaired}"
    );
    assert_eq!(
        bytes_sent(&nginx, start, ".stone"),
        fs::metadata(&new).unwrap().len()
    );
    assert_eq!(fs::read(&cached).unwrap(), fs::read(&new).unwrap());
    let verified = root.ok(&["verify"]);
    assert!(verified.contains("no damage"), "{verified}");
}

/// `sync --stage --dry-run`, `sync --stage`, then `commit`, on `root`: the plan the dry
/// run printed, the commit's output, and the body bytes nginx sent during the commit for
/// stones and for deltas.
fn stage_and_commit(root: &TestRoot, nginx: &Nginx) -> (String, Output, u64, u64) {
    let planned = root.ok(&["sync", "--stage", "--dry-run"]);
    let staged = root.ok(&["sync", "--stage"]);
    assert!(staged.starts_with("staged state "), "{staged}");
    let start = nginx.requests().len();
    let out = root.run(&["commit"]);
    assert!(
        out.status.success(),
        "commit: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let stones = bytes_sent(nginx, start, ".stone");
    let deltas = bytes_sent(nginx, start, ".delta");
    (planned, out, stones, deltas)
}

#[test]
fn the_commit_of_a_staged_sync_takes_the_delta_and_falls_back_to_the_same_system() {
    let publisher = TestRoot::new();
    let served = publisher.scratch("served");
    let (old, new) = publish_versions(&publisher, &served);
    index(&served);
    let delta = delta_file(&served);
    let good_delta = fs::read(&delta).unwrap();
    let full_size = fs::metadata(&new).unwrap().len();
    let Some(nginx) = Nginx::start(&served, "") else {
        return;
    };
    let by_hand = TestRoot::new();
    by_hand.install(&[&old]);
    by_hand.install(&[&new]);
    let reference = system_and_info(&by_hand);

    // The staging reads only the head and promises the delta; the commit keeps the promise.
    let root = client(&old, &nginx);
    let (planned, out, stones, deltas) = stage_and_commit(&root, &nginx);
    let figure = planned
        .lines()
        .find(|l| l.starts_with("download: "))
        .unwrap_or_else(|| panic!("{planned}"));
    assert!(figure.ends_with(" with deltas)"), "{figure}");
    assert!(
        !text(&out.stderr).contains("full stone instead"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(stones, 0, "{:?}", nginx.requests());
    assert_eq!(deltas, good_delta.len() as u64, "{:?}", nginx.requests());
    let got = system_and_info(&root);
    assert_same(
        &reference.0,
        &got.0,
        "staged commit by delta against full stone",
    );
    assert_eq!(reference.1, got.1);

    // A delta listed with its true sha256 whose patch does not rebuild its target: the
    // commit says so once, downloads the full stone and commits the same system.
    fs::write(&delta, corrupt_a_patch(&good_delta)).unwrap();
    index(&served);
    let root = client(&old, &nginx);
    let (_, out, stones, _) = stage_and_commit(&root, &nginx);
    assert_one_fallback_note(&out, "does not rebuild asset");
    assert_eq!(stones, full_size, "{:?}", nginx.requests());
    let got = system_and_info(&root);
    assert_same(&reference.0, &got.0, "staged commit after a failed delta");
    assert_eq!(reference.1, got.1);
}
