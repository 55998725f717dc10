//! Installing from a repository, pipelined (issue 10 §2): each package is unpacked into the
//! store while the others still download, everything is committed as one state, a server
//! dying midway changes nothing, and every plan shows the bytes it downloads.

use std::fs;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use mossfs_format::{AssetHash, Relation};

use crate::common::{file, meta};
use crate::fixture::*;

/// Incompressible bytes, so a stone is as big as its content.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    mossfs_integration::corpus::noise(seed, len)
}

/// Polls until `check` holds or 30 s pass.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Publishes `name` into `served/pool/NAME.stone`, its one file `usr/share/NAME/data`
/// holding `bytes`, needing `depends`; its path.
fn publish(repo: &Repo, name: &str, bytes: &[u8], depends: &[&str]) -> PathBuf {
    let mut m = meta(name, "1");
    m.depends = depends
        .iter()
        .map(|d| Relation::parse(d).unwrap())
        .collect();
    let built = repo.root.stone(
        &m,
        vec![file(&format!("share/{name}/data"), bytes.to_vec())],
    );
    let pool = repo.served.join("pool");
    fs::create_dir_all(&pool).unwrap();
    let dest = pool.join(format!("{name}.stone"));
    fs::copy(&built, &dest).unwrap();
    dest
}

fn size(path: &PathBuf) -> u64 {
    fs::metadata(path).unwrap().len()
}

fn json(repo: &Repo, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = repo.root.ok(&all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
}

/// While the slow package is still arriving (nginx sends it at 256 KiB/s), the fast one's
/// content is already an asset in the store: it was unpacked while the other downloaded.
/// The install then commits both as one state.
#[test]
fn each_package_is_unpacked_while_the_others_still_download() {
    let repo = Repo::new();
    let fast_bytes = noise(64 * 1024, 1);
    let slow_bytes = noise(1536 * 1024, 2);
    publish(&repo, "fast", &fast_bytes, &[]);
    let slow = publish(&repo, "slow", &slow_bytes, &[]);
    publish(&repo, "app", b"app\n", &["name(fast)", "name(slow)"]);
    repo.publish(&[]);
    let Some(nginx) = serve(&repo, "location = /pool/slow.stone { limit_rate 256k; }") else {
        return;
    };
    repo.add("main", &nginx.url("stone.index"), 1);
    repo.root.ok(&["repo", "update"]);
    let states_before = repo.root.states().len();

    let fast_asset = repo.root.asset_file(AssetHash::of(&fast_bytes));
    let slow_asset = repo.root.asset_file(AssetHash::of(&slow_bytes));
    let slow_cached = repo
        .root
        .moss()
        .join(format!("cache/{}.stone", sha256(&slow)));
    let child = repo
        .root
        .command(&["install", "app"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the fast package's asset in the store", || {
        fast_asset.exists()
    });
    assert!(
        !slow_cached.exists() && !slow_asset.exists(),
        "the slow package finished before the fast one was unpacked: no overlap shown"
    );
    // And no state yet: the state is recorded once everything is in the store.
    assert_eq!(repo.root.states().len(), states_before);
    let output = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(out.contains("download: 3 packages"), "{out}");
    assert!(
        out.contains("install 3 packages (app, fast, slow)"),
        "{out}"
    );
    assert_eq!(repo.root.states().len(), states_before + 1);
    let usr = repo.root.usr();
    assert_eq!(fs::read(usr.join("share/fast/data")).unwrap(), fast_bytes);
    assert_eq!(fs::read(usr.join("share/slow/data")).unwrap(), slow_bytes);
    assert_eq!(fs::read(usr.join("share/app/data")).unwrap(), b"app\n");
    // The store's copy is the one the tree links to.
    assert!(slow_asset.exists());
    // `verify` finds every asset whole and every package recorded as unpacked.
    repo.root.ok(&["verify"]);
}

/// The server dies while the install downloads: the install fails with a message naming
/// the download, records no state, and leaves the tree as it was. Once the server is back,
/// the same install resumes the download and succeeds.
#[test]
fn a_server_dying_midway_leaves_the_previous_state_intact() {
    let repo = Repo::new();
    publish(&repo, "base", b"base 1\n", &[]);
    publish(&repo, "lib", &noise(16 * 1024, 3), &[]);
    let big = publish(&repo, "big", &noise(3 << 20, 4), &[]);
    publish(&repo, "app", b"app\n", &["name(lib)", "name(big)"]);
    repo.publish(&[]);
    let Some(mut nginx) = serve(&repo, "location = /pool/big.stone { limit_rate 512k; }") else {
        return;
    };
    repo.add("main", &nginx.url("stone.index"), 1);
    repo.root.ok(&["repo", "update"]);
    repo.root.ok(&["install", "base"]);
    let states = repo.root.ok(&["state", "list"]);
    let active = repo.root.active();
    let tree = repo.root.system();

    let partial = repo
        .root
        .moss()
        .join(format!("cache/.partial/{}.part", sha256(&big)));
    let child = repo
        .root
        .command(&["install", "app"])
        .env("MOSSFS_NET_TIMEOUT", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("part of the big stone", || {
        fs::metadata(&partial).is_ok_and(|m| m.len() >= 512 * 1024)
    });
    nginx.kill();
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success());
    let err = crate::common::error_line(&output);
    assert!(
        err.contains("cannot fetch") && err.contains("big.stone"),
        "{err}"
    );
    // Nothing recorded, nothing committed: the same states, the same active one, the
    // same tree.
    assert_eq!(repo.root.ok(&["state", "list"]), states);
    assert_eq!(repo.root.active(), active);
    assert_eq!(repo.root.system(), tree);
    assert!(!repo.root.usr().join("share/app").exists());

    // Back up: the download resumes where it stopped, and the install goes through.
    let have = fs::metadata(&partial).unwrap().len();
    nginx.restart();
    let done = repo.root.ok(&["install", "app"]);
    assert!(
        done.contains("install 3 packages (app, big, lib)"),
        "{done}"
    );
    let resumed = nginx
        .requests()
        .into_iter()
        .rfind(|l| l.contains("/pool/big.stone"))
        .unwrap();
    assert!(
        resumed.contains(" 206 ") && resumed.ends_with(&format!("bytes={have}-")),
        "{resumed}"
    );
    assert_eq!(
        fs::read(repo.root.usr().join("share/base/data")).unwrap(),
        b"base 1\n"
    );
}

/// Every plan says what it downloads: the repository packages whose stones are not cached
/// yet, by their index sizes. A stone already fetched is not counted again, a removal
/// downloads nothing, and `--json` has the figure as `download`.
#[test]
fn plans_show_the_bytes_to_download() {
    let repo = Repo::new();
    let lib = publish(&repo, "lib", &noise(10_000, 5), &[]);
    let app = publish(&repo, "app", &noise(20_000, 6), &["name(lib)"]);
    repo.publish(&[]);
    repo.add(
        "main",
        &format!("file://{}/stone.index", repo.served.display()),
        1,
    );
    repo.root.ok(&["repo", "update"]);

    let both = size(&lib) + size(&app);
    let plan = json(&repo, &["install", "--dry-run", "app"]);
    assert_eq!(
        plan["download"],
        serde_json::json!({"packages": 2, "bytes": both, "with_deltas": both}),
        "{plan}"
    );
    let text = repo.root.ok(&["install", "--dry-run", "app"]);
    let last = text.lines().last().unwrap();
    assert!(last.starts_with("download: 2 packages, "), "{text}");

    // lib fetched into the cache: only app remains to download.
    repo.root.ok(&["fetch", "lib"]);
    let plan = json(&repo, &["install", "--dry-run", "app"]);
    assert_eq!(
        plan["download"],
        serde_json::json!({"packages": 1, "bytes": size(&app), "with_deltas": size(&app)}),
        "{plan}"
    );

    // The real install reports the same figure, planned before it downloaded.
    let done = json(&repo, &["install", "app"]);
    assert_eq!(done["applied"], true);
    assert_eq!(
        done["download"],
        serde_json::json!({"packages": 1, "bytes": size(&app), "with_deltas": size(&app)}),
        "{done}"
    );
    let removal = repo.root.ok(&["remove", "--dry-run", "app"]);
    assert!(
        removal.ends_with("download: 0 packages, 0 B\n"),
        "{removal}"
    );

    // A newer release: sync's plan counts its stone.
    let newer = {
        let mut m = meta("lib", "2");
        m.release = 2;
        let built = repo
            .root
            .stone(&m, vec![file("share/lib/data", noise(30_000, 7))]);
        let dest = repo.served.join("pool/lib-2.stone");
        fs::copy(&built, &dest).unwrap();
        fs::remove_file(&lib).unwrap();
        dest
    };
    repo.publish(&[]);
    repo.root.ok(&["repo", "update"]);
    let plan = json(&repo, &["sync", "--dry-run"]);
    assert_eq!(
        plan["download"],
        serde_json::json!({"packages": 1, "bytes": size(&newer), "with_deltas": size(&newer)}),
        "{plan}"
    );
    let shown = repo.root.ok(&["list", "sync"]);
    assert!(shown.contains("download: 1 package, "), "{shown}");
}
