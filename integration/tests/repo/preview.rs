//! Previews before download (issue 10 §3): `sync --stage` and `install --stage` read only
//! the heads of new repository stones, the candidate mounts at once, a read in the mount
//! downloads exactly the package it needs, and the commit downloads the rest, writing the
//! tree that was browsed. A repository that lies (a head other than the stone's, a stone
//! other than its hash) gets the commit refused, the active state intact. Bytes and
//! requests are counted in nginx's access log.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mossfs_fs::fuse;
use mossfs_integration::corpus::SourceEntry;
use mossfs_integration::nginx::{Nginx, in_ci};

use crate::common::{assert_same, dir, file, link, meta, snapshot};
use crate::fixture::*;

/// Bytes that zstd cannot shrink, so a package's body dwarfs its head.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Publishes `name` at `version` into `served/pool/NAME.stone` (one URI per name, as a
/// mirror that replaces files would): two files of noise, a symlink, an empty directory
/// with an unusual mode, and an executable. Returns its path.
fn publish(repo: &Repo, name: &str, version: &str, release: u64) -> PathBuf {
    let mut m = meta(name, version);
    m.release = release;
    let seed = release * 1000 + name.bytes().map(u64::from).sum::<u64>();
    let entries: Vec<SourceEntry> = vec![
        file(&format!("share/{name}/a"), noise(seed, 120_000)),
        file(&format!("share/{name}/b"), noise(seed + 1, 80_000)),
        SourceEntry::bytes(
            crate::common::path(&format!("bin/{name}")),
            format!("#!/bin/sh\necho {name} {version}\n").into_bytes(),
            0o755,
        ),
        link(&format!("share/{name}/current"), "a"),
        dir(&format!("share/{name}/empty-{version}"), 0o700),
    ];
    let built = repo.root.stone(&m, entries);
    let pool = repo.served.join("pool");
    fs::create_dir_all(&pool).unwrap();
    let dest = pool.join(format!("{name}.stone"));
    fs::copy(&built, &dest).unwrap();
    dest
}

/// One request for a stone, from nginx's access log.
#[derive(Debug)]
struct Hit {
    uri: String,
    status: u16,
    bytes: u64,
    range: Option<String>,
}

/// Every request for a `.stone` so far, waiting (until a deadline) for at least `least`:
/// nginx logs a request whose client hung up once it notices.
fn stone_hits(nginx: &Nginx, least: usize) -> Vec<Hit> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let hits: Vec<Hit> = nginx
            .requests()
            .iter()
            .filter_map(|line| {
                let mut f = line.split_whitespace();
                let (_, uri, status, bytes) = (f.next()?, f.next()?, f.next()?, f.next()?);
                let range = f.next().filter(|r| *r != "-").map(str::to_owned);
                uri.ends_with(".stone").then(|| Hit {
                    uri: uri.to_owned(),
                    status: status.parse().unwrap_or(0),
                    bytes: bytes.parse().unwrap_or(0),
                    range,
                })
            })
            .collect();
        if hits.len() >= least || Instant::now() > deadline {
            return hits;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Full-body downloads (no Range) among `hits`, by URI.
fn full_downloads(hits: &[Hit]) -> Vec<&str> {
    let mut out: Vec<&str> = hits
        .iter()
        .filter(|h| h.range.is_none() && h.status == 200)
        .map(|h| h.uri.as_str())
        .collect();
    out.sort_unstable();
    out
}

/// Whether FUSE mounts can be made here: fails under CI when not, skips elsewhere.
fn fuse_or_skip() -> bool {
    match fuse::check_available() {
        Ok(()) => true,
        Err(e) if in_ci() => panic!("FUSE is required under CI: {e}"),
        Err(e) => {
            eprintln!("skipped: FUSE is unavailable ({e})");
            false
        }
    }
}

/// Unmounts on drop, whatever the test did.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = fuse::unmount(&self.0);
    }
}

/// A repository over nginx with `alpha`, `beta` and `gamma` at release 1, installed, and
/// release 2 of each published and refreshed: a `sync` has three upgrades to make.
fn upgraded(extra: &str) -> Option<(Repo, Nginx, Vec<PathBuf>)> {
    let repo = Repo::new();
    let names = ["alpha", "beta", "gamma"];
    for name in names {
        publish(&repo, name, "1", 1);
    }
    repo.publish(&[]);
    let nginx = serve(&repo, extra)?;
    repo.add("main", &nginx.url("stone.index"), 10);
    repo.root.ok(&["repo", "update"]);
    repo.root.ok(&["install", "alpha", "beta", "gamma"]);
    let stones: Vec<PathBuf> = names
        .iter()
        .map(|name| publish(&repo, name, "2", 2))
        .collect();
    repo.publish(&[]);
    repo.root.ok(&["repo", "update"]);
    Some((repo, nginx, stones))
}

/// The live tree, without `.stateID`, which the commit writes and the mount does not show.
fn live_tree(repo: &Repo) -> crate::common::Snapshot {
    let mut tree = snapshot(&repo.root.usr());
    tree.remove(Path::new(".stateID"));
    tree
}

fn cached(repo: &Repo, stone: &Path) -> PathBuf {
    repo.root
        .moss()
        .join(format!("cache/{}.stone", sha256(stone)))
}

/// The whole flow: a staged sync fetches heads only; the candidate mounts; one read
/// downloads one package; browsing everything downloads the rest; the commit downloads
/// nothing more and writes exactly the tree that was browsed.
#[test]
fn staged_sync_reads_heads_and_the_mount_shows_what_the_commit_writes() {
    let Some((repo, nginx, stones)) = upgraded("") else {
        return;
    };
    let before = stone_hits(&nginx, 3).len();
    let staged = repo.root.ok(&["sync", "--stage"]);
    assert!(staged.contains("staged state"), "{staged}");

    // Only heads: one ranged request per package, each a small part of its stone.
    let hits = stone_hits(&nginx, before + 3);
    let new = &hits[before..];
    assert_eq!(new.len(), 3, "{new:?}");
    let whole: u64 = stones.iter().map(|s| fs::metadata(s).unwrap().len()).sum();
    let fetched: u64 = new.iter().map(|h| h.bytes).sum();
    for hit in new {
        assert_eq!(hit.status, 206, "{hit:?}");
        assert!(
            hit.range
                .as_deref()
                .is_some_and(|r| r.starts_with("bytes=0-")),
            "{hit:?}"
        );
    }
    assert!(
        fetched * 20 < whole,
        "heads cost {fetched} of {whole} bytes: not under 5%"
    );
    for stone in &stones {
        assert!(
            !cached(&repo, stone).exists(),
            "a body was cached while staging"
        );
    }

    if !fuse_or_skip() {
        return;
    }
    let mnt = repo.root.scratch("mnt");
    let _unmount = Unmount(mnt.clone());
    let mounted = repo
        .root
        .ok(&["mount".as_ref(), "--candidate".as_ref(), mnt.as_os_str()]);
    assert!(mounted.contains("mounted state"), "{mounted}");

    // Listing and stat need no body at all.
    let names: Vec<String> = fs::read_dir(mnt.join("usr/share/beta"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert_eq!(
        fs::metadata(mnt.join("usr/share/beta/a")).unwrap().len(),
        120_000
    );
    assert_eq!(
        stone_hits(&nginx, 0).len(),
        before + 3,
        "a listing downloaded something"
    );

    // One read downloads exactly one package: alpha's.
    let bytes = fs::read(mnt.join("usr/share/alpha/b")).unwrap();
    assert_eq!(
        bytes,
        noise(
            2000 + "alpha".bytes().map(u64::from).sum::<u64>() + 1,
            80_000
        )
    );
    let hits = stone_hits(&nginx, before + 4);
    assert_eq!(
        full_downloads(&hits[before..]),
        ["/pool/alpha.stone"],
        "{hits:?}"
    );
    assert!(cached(&repo, &stones[0]).exists());
    assert!(!cached(&repo, &stones[1]).exists());

    // Browsing everything downloads the rest, once each.
    let browsed = snapshot(&mnt.join("usr"));
    repo.root.ok(&["umount".as_ref(), mnt.as_os_str()]);
    let hits = stone_hits(&nginx, before + 6);
    assert_eq!(
        full_downloads(&hits[before..]),
        ["/pool/alpha.stone", "/pool/beta.stone", "/pool/gamma.stone"]
    );

    // The commit downloads nothing more and writes what was browsed.
    let committed = repo.root.ok(&["commit"]);
    assert!(committed.contains("alpha"), "{committed}");
    assert_eq!(
        stone_hits(&nginx, 0).len(),
        before + 6,
        "the commit downloaded again"
    );
    assert_same(
        &browsed,
        &live_tree(&repo),
        "mounted candidate vs committed tree",
    );
    assert!(repo.root.usr().join("share/gamma/empty-2").is_dir());
}

/// Without a mount, the commit downloads every body, checked, and writes the tree; a
/// server that ignores Range (it answers 200 with the whole body) still stages.
#[test]
fn a_server_ignoring_range_still_stages_and_the_commit_downloads_the_rest() {
    let Some((repo, nginx, stones)) = upgraded("max_ranges 0;") else {
        return;
    };
    let before = stone_hits(&nginx, 3).len();
    let staged = repo.root.ok(&["sync", "--stage"]);
    assert!(staged.contains("staged state"), "{staged}");
    let hits = stone_hits(&nginx, before + 3);
    assert_eq!(hits.len(), before + 3, "{hits:?}");
    for hit in &hits[before..] {
        assert_eq!(hit.status, 200, "nginx was to ignore Range: {hit:?}");
    }
    for stone in &stones {
        assert!(!cached(&repo, stone).exists());
    }
    let candidate = repo.root.states().last().unwrap().id;
    repo.root.ok(&["commit", &candidate.to_string()]);
    assert_eq!(repo.root.active(), Some(candidate));
    for (stone, name) in stones.iter().zip(["alpha", "beta", "gamma"]) {
        assert_eq!(
            fs::read(cached(&repo, stone)).unwrap(),
            fs::read(stone).unwrap()
        );
        let script = fs::read_to_string(repo.root.usr().join(format!("bin/{name}"))).unwrap();
        assert_eq!(script, format!("#!/bin/sh\necho {name} 2\n"));
    }
    crate::common::assert_tree_matches(
        &repo.root.usr(),
        &stones.iter().map(PathBuf::as_path).collect::<Vec<_>>(),
    );
}

/// A repository that lies between staging and commit: the commit is refused with one
/// line saying what and what to do, and the active state, its tree and the cache are as
/// they were.
#[test]
fn a_lying_repository_gets_the_commit_refused_and_the_active_state_kept() {
    let Some((repo, _nginx, stones)) = upgraded("") else {
        return;
    };
    let active = repo.root.active();
    let tree = live_tree(&repo);

    // 1. The head served while staging is not the stone the index names: stage while
    // the file is an older stone (the index still names release 2), then put release 2
    // back. Its sha256 is right, its head is not the one the candidate was built from.
    let alpha = &stones[0];
    let real = fs::read(alpha).unwrap();
    let mut other = meta("alpha", "9");
    other.release = 2;
    let impostor = repo.root.stone(
        &other,
        vec![
            file("share/alpha/a", noise(7, 150_000)),
            file("share/alpha/x", b"x".to_vec()),
        ],
    );
    fs::copy(&impostor, alpha).unwrap();
    repo.root.ok(&["sync", "--stage"]);
    fs::write(alpha, &real).unwrap();
    let candidate = repo.root.states().last().unwrap().id;
    let err = repo.root.fail(&["commit", &candidate.to_string()]);
    eprintln!("refused: {err}");
    assert!(
        err.contains(&format!("cannot commit state {candidate}"))
            && err.contains("differ from the head the candidate was built from")
            && err.contains("mossfs repo update"),
        "{err}"
    );
    assert_eq!(repo.root.active(), active);
    assert_same(&tree, &live_tree(&repo), "live tree after a refused commit");
    assert!(
        !cached(&repo, alpha).exists(),
        "a stone with the wrong head was cached"
    );
    // Dropping the candidate and collecting garbage forgets what that head said.
    repo.root.ok(&["state", "remove", &candidate.to_string()]);
    repo.root.ok(&["gc"]);

    // 2. The head is right but the body is not the index's: a byte near the end of beta
    // changes after staging.
    let beta = &stones[1];
    let beta_sha = sha256(beta);
    repo.root.ok(&["sync", "--stage"]);
    let mut bytes = fs::read(beta).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 0xff;
    fs::write(beta, &bytes).unwrap();
    let candidate = repo.root.states().last().unwrap().id;
    let err = repo.root.fail(&["commit", &candidate.to_string()]);
    eprintln!("refused: {err}");
    assert!(
        err.contains(&format!("cannot commit state {candidate}"))
            && err.contains("sha256")
            && err.contains("nothing was kept"),
        "{err}"
    );
    assert_eq!(repo.root.active(), active);
    assert_same(&tree, &live_tree(&repo), "live tree after a refused commit");
    let cache: Vec<String> = repo.cache_files();
    assert!(
        !cache
            .iter()
            .any(|f| f.contains(&beta_sha[..16]) || f.ends_with(".unchecked")),
        "{cache:?}"
    );
}

/// `install --stage NAME` from a `file://` repository reads the heads from the start of
/// the files, caches no body, and the commit installs exactly the packages' files.
#[test]
fn install_stage_from_a_file_repository_reads_heads_and_commits_whole() {
    let repo = Repo::new();
    let stones = [
        publish(&repo, "alpha", "1", 1),
        publish(&repo, "beta", "1", 1),
    ];
    repo.publish(&[]);
    repo.add(
        "main",
        &format!("file://{}/stone.index", repo.served.display()),
        10,
    );
    repo.root.ok(&["repo", "update"]);
    let staged = repo.root.ok(&["install", "--stage", "alpha", "beta"]);
    assert!(staged.contains("staged state 1"), "{staged}");
    assert!(repo.cache_files().is_empty(), "{:?}", repo.cache_files());
    assert!(!repo.root.usr().exists());
    repo.root.ok(&["commit", "1"]);
    assert_eq!(repo.root.active(), Some(1));
    for stone in &stones {
        assert_eq!(
            fs::read(cached(&repo, stone)).unwrap(),
            fs::read(stone).unwrap()
        );
    }
    crate::common::assert_tree_matches(
        &repo.root.usr(),
        &stones.iter().map(PathBuf::as_path).collect::<Vec<_>>(),
    );
}

/// While one package downloads slowly for a read in the mount, a read of another
/// package's file is downloaded and served: no lock is held across a download.
#[test]
fn a_slow_download_in_the_mount_blocks_no_other_package() {
    let slow = "location = /pool/alpha.stone { limit_rate 40k; }";
    let Some((repo, _nginx, stones)) = upgraded(slow) else {
        return;
    };
    repo.root.ok(&["sync", "--stage"]);
    if !fuse_or_skip() {
        return;
    }
    let mnt = repo.root.scratch("mnt");
    let _unmount = Unmount(mnt.clone());
    repo.root
        .ok(&["mount".as_ref(), "--candidate".as_ref(), mnt.as_os_str()]);
    let alpha_file = mnt.join("usr/share/alpha/a");
    let alpha = std::thread::spawn(move || fs::read(alpha_file).map(|b| b.len()));
    // Wait until alpha's body is on its way: its partial download exists.
    let part = repo
        .root
        .moss()
        .join(format!("cache/.partial/{}.part", sha256(&stones[0])));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !part.exists() {
        assert!(Instant::now() < deadline, "alpha's download never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let beta = fs::read(mnt.join("usr/share/beta/a")).unwrap();
    assert_eq!(beta.len(), 120_000);
    assert!(
        !alpha.is_finished(),
        "alpha finished first: the test proves nothing at this speed"
    );
    assert_eq!(alpha.join().unwrap().unwrap(), 120_000);
    repo.root.ok(&["umount".as_ref(), mnt.as_os_str()]);
}
