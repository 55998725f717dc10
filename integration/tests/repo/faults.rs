//! Faulty and hostile servers: bodies cut short, wrong or too long; 404 and 500; a stall;
//! a server killed mid-download; hostile indexes; SIGKILL during update and fetch; a full
//! disk. Nothing unverified ever reaches the cache under its final name, and nothing panics.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mossfs_integration::nginx::Nginx;
use mossfs_repo::checksum::{Checksum, Digest};

use crate::common::TestRoot;
use crate::fixture::*;

/// Incompressible bytes, so a stone is as big as its content.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    mossfs_integration::corpus::noise(seed, len)
}

fn cached_names(repo: &Repo) -> Vec<String> {
    repo.cache_files()
        .into_iter()
        .filter(|n| n.ends_with(".stone"))
        .collect()
}

fn partials(repo: &Repo) -> Vec<String> {
    repo.cache_files()
        .into_iter()
        .filter(|n| n.ends_with(".part"))
        .collect()
}

/// Polls until `check` holds or 20 s pass.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn partial_len(repo: &Repo) -> u64 {
    let dir = repo.root.moss().join("cache/.partial");
    fs::read_dir(dir)
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .and_then(|e| e.metadata().ok())
        .map_or(0, |m| m.len())
}

fn spawn_fetch(repo: &Repo, name: &str) -> Child {
    repo.root
        .command(&["fetch", name])
        .env("MOSSFS_NET_TIMEOUT", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mossfs runs")
}

#[test]
fn lying_bodies_never_reach_the_cache() {
    let repo = Repo::new();
    let stone = repo.stone("hello", "1", 1, &noise(64 * 1024, 1));
    repo.publish(&[]);
    let Some(nginx) = serve(&repo, "") else {
        return;
    };
    repo.add("main", &nginx.url("stone.index"), 1);
    repo.root.ok(&["repo", "update"]);
    let good = fs::read(&stone).unwrap();

    // Same size, other bytes: refused at once, its bytes deleted, no retry.
    let mut wrong = good.clone();
    wrong[100] ^= 1;
    fs::write(&stone, &wrong).unwrap();
    let before = nginx.requests().len();
    let err = repo.fail(&["fetch", "hello"]);
    assert!(
        err.contains("sha256 is") && err.contains("but the index says"),
        "{err}"
    );
    assert_eq!(
        nginx.requests().len() - before,
        1,
        "a wrong hash is never retried"
    );
    assert!(cached_names(&repo).is_empty() && partials(&repo).is_empty());

    // Longer than the index says: refused, deleted.
    let mut longer = good.clone();
    longer.extend_from_slice(b"more");
    fs::write(&stone, &longer).unwrap();
    let err = repo.fail(&["fetch", "hello"]);
    assert!(err.contains("but the index says"), "{err}");
    assert!(cached_names(&repo).is_empty() && partials(&repo).is_empty());

    // Cut short: retried, then refused; what arrived waits, unnamed, for a resume.
    fs::write(&stone, &good[..good.len() / 2]).unwrap();
    let err = repo.fail(&["fetch", "hello"]);
    assert!(
        err.contains(&format!("is {} bytes", good.len() / 2)),
        "{err}"
    );
    assert!(cached_names(&repo).is_empty());
    // The server mends: the next run resumes from the half it has, with a Range request.
    fs::write(&stone, &good).unwrap();
    repo.root.ok(&["fetch", "hello"]);
    let last = nginx.requests().last().cloned().unwrap();
    assert!(
        last.ends_with(&format!("bytes={}-", good.len() / 2)),
        "{last}"
    );
    assert!(last.contains(" 206 "), "{last}");
    assert_eq!(cached_names(&repo), [format!("{}.stone", sha256(&stone))]);
    assert!(partials(&repo).is_empty());
}

#[test]
fn not_found_and_server_errors_are_named() {
    let repo = Repo::new();
    repo.stone("hello", "1", 1, b"one\n");
    repo.stone("gone", "1", 1, b"gone\n");
    repo.publish(&[]);
    let Some(nginx) = serve(&repo, "location = /pool/hello-1-1.stone { return 500; }") else {
        return;
    };
    repo.add("main", &nginx.url("stone.index"), 1);
    repo.root.ok(&["repo", "update"]);
    let err = repo.fail(&["fetch", "hello"]);
    assert!(err.contains("the server answered HTTP 500"), "{err}");
    // A 5xx is transient: four attempts.
    assert_eq!(count(&nginx, "/pool/hello-1-1.stone"), 4);
    fs::remove_file(repo.served.join("pool/gone-1-1.stone")).unwrap();
    let err = repo.fail(&["fetch", "gone"]);
    assert!(err.contains("gone-1-1.stone: not found"), "{err}");
    assert_eq!(
        count(&nginx, "/pool/gone-1-1.stone"),
        1,
        "a 404 is not retried"
    );
    assert!(repo.cache_files().is_empty(), "{:?}", repo.cache_files());
}

/// A backend behind nginx that serves files from `dir`, and while `stall` is set sends
/// the headers and half the body, then nothing more. `stalled` counts the stalled replies.
fn stalling_backend(dir: PathBuf, stall: Arc<AtomicBool>, stalled: Arc<AtomicUsize>) -> u16 {
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let dir = dir.clone();
            let stall = stall.clone();
            let stalled = stalled.clone();
            std::thread::spawn(move || {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request);
                let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let Ok(body) = fs::read(dir.join(path.trim_start_matches('/'))) else {
                    let _ =
                        stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                    return;
                };
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                let _ = stream.write_all(head.as_bytes());
                if stall.load(Ordering::SeqCst) {
                    let _ = stream.write_all(&body[..body.len() / 2]);
                    let _ = stream.flush();
                    stalled.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_secs(60));
                } else {
                    let _ = stream.write_all(&body);
                }
            });
        }
    });
    port
}

fn proxied(repo: &Repo, stall: &Arc<AtomicBool>, stalled: &Arc<AtomicUsize>) -> Option<Nginx> {
    let port = stalling_backend(repo.served.clone(), stall.clone(), stalled.clone());
    Nginx::start(
        &repo.served,
        &format!(
            "location / {{ proxy_pass http://127.0.0.1:{port}; proxy_buffering off; \
             proxy_read_timeout 120s; }}"
        ),
    )
}

#[test]
fn a_stalled_server_times_out_and_a_killed_fetch_resumes() {
    let repo = Repo::new();
    let stone = repo.stone("hello", "1", 1, &noise(256 * 1024, 2));
    repo.publish(&[]);
    let stall = Arc::new(AtomicBool::new(false));
    let stalled = Arc::new(AtomicUsize::new(0));
    let Some(nginx) = proxied(&repo, &stall, &stalled) else {
        return;
    };
    repo.add("main", &nginx.url("stone.index"), 1);
    repo.root.ok(&["repo", "update"]);

    // A stall mid-body: each attempt times out after the idle timeout, then it gives up.
    stall.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let output = repo
        .root
        .command(&["fetch", "hello"])
        .env("MOSSFS_NET_TIMEOUT", "1")
        .output()
        .unwrap();
    let err = crate::common::error_line(&output);
    assert!(err.contains("timed out"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(cached_names(&repo).is_empty());

    // SIGKILL during a stalled fetch: the half that arrived stays for the next run only.
    let mut child = spawn_fetch(&repo, "hello");
    wait_until("half the stone on disk", || {
        partial_len(&repo) >= 100 * 1024
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(cached_names(&repo).is_empty());
    stall.store(false, Ordering::SeqCst);
    repo.root.ok(&["fetch", "hello"]);
    assert_eq!(cached_names(&repo), [format!("{}.stone", sha256(&stone))]);
    assert!(partials(&repo).is_empty());
}

#[test]
fn a_sigkill_during_update_leaves_the_previous_index_in_use() {
    let repo = Repo::new();
    repo.stone("hello", "1", 1, b"one\n");
    repo.publish(&[]);
    let stall = Arc::new(AtomicBool::new(false));
    let stalled = Arc::new(AtomicUsize::new(0));
    let Some(nginx) = proxied(&repo, &stall, &stalled) else {
        return;
    };
    repo.add("main", &nginx.url("stone.index"), 1);
    repo.root.ok(&["repo", "update"]);
    let before = repo.available();
    let kept = fs::read(repo.root.moss().join("repo/main/stone.index")).unwrap();
    repo.stone("zlib", "1", 1, b"z\n");
    repo.publish(&[]);
    stall.store(true, Ordering::SeqCst);
    let seen = stalled.load(Ordering::SeqCst);
    let mut child = repo
        .root
        .command(&["repo", "update"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The checksum file is half sent and stalls; the process is killed inside the refresh.
    wait_until("the stalled checksum file", || {
        stalled.load(Ordering::SeqCst) > seen
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(repo.available(), before);
    assert_eq!(
        fs::read(repo.root.moss().join("repo/main/stone.index")).unwrap(),
        kept
    );
    let leftovers: Vec<_> = fs::read_dir(repo.root.moss().join("repo/main"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    // The verified index and its checksum file, and no temporary file.
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
    stall.store(false, Ordering::SeqCst);
    repo.root.ok(&["repo", "update"]);
    assert_eq!(repo.available(), ["hello [main]", "zlib [main]"]);
}

#[test]
fn a_server_killed_mid_download_is_resumed_after_its_restart() {
    let repo = Repo::new();
    let stone = repo.stone("big", "1", 1, &noise(3 << 20, 3));
    repo.publish(&[]);
    let Some(mut nginx) = serve(&repo, "location /pool/ { limit_rate 512k; }") else {
        return;
    };
    repo.add("main", &nginx.url("stone.index"), 1);
    repo.root.ok(&["repo", "update"]);
    let child = spawn_fetch(&repo, "big");
    wait_until("a partial download", || partial_len(&repo) >= 512 * 1024);
    nginx.kill();
    let output = child.wait_with_output().unwrap();
    let err = crate::common::error_line(&output);
    assert!(err.contains("cannot fetch"), "{err}");
    assert!(
        err.ends_with(
            "check that the server is up and the URI is right ('mossfs repo list'), then try again"
        ),
        "one line that says what to do, the cause not repeated after it: {err}"
    );
    assert!(cached_names(&repo).is_empty());
    let have = partial_len(&repo);
    assert!(have >= 512 * 1024, "{have}");
    nginx.restart();
    repo.root.ok(&["fetch", "big"]);
    let last = nginx.requests().last().cloned().unwrap();
    assert!(
        last.contains(" 206 ") && last.ends_with(&format!("bytes={have}-")),
        "{last}"
    );
    assert_eq!(cached_names(&repo), [format!("{}.stone", sha256(&stone))]);
}

/// Publishes a hand-made index with an unsigned checksum file.
fn publish_raw(dir: &Path, index: &[u8], version: u64) {
    fs::write(dir.join("stone.index"), index).unwrap();
    let sum = Checksum {
        digest: Digest::sha256(index),
        size: index.len() as u64,
        version,
        expires: mossfs_repo::now() + 3600,
    };
    fs::write(dir.join("stone.index.checksum"), sum.encode(None)).unwrap();
}

fn raw_index(entries: &[mossfs_format::Meta]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut writer = mossfs_format::Writer::new(
        &mut out,
        mossfs_format::FileType::Repository,
        mossfs_format::WriterOptions::default(),
    )
    .unwrap();
    for meta in entries {
        writer.add_meta(&meta.to_records()).unwrap();
    }
    writer.finish().unwrap();
    out.into_inner()
}

fn entry(name: &str, uri: &str, hash: &str, size: u64) -> mossfs_format::Meta {
    let mut m = crate::common::meta(name, "1");
    m.uri = Some(uri.into());
    m.hash = Some(hash.into());
    m.size = Some(size);
    m
}

#[test]
fn hostile_indexes_are_refused_and_change_nothing() {
    let root = TestRoot::new();
    let served = root.scratch("served/repo");
    let hash = "ab".repeat(32);
    publish_raw(
        &served,
        &raw_index(&[entry("good", "pool/good.stone", &hash, 10)]),
        1,
    );
    root.ok(&[
        "repo",
        "add",
        "raw",
        &format!("file://{}/stone.index", served.display()),
    ]);
    root.ok(&["repo", "update"]);
    let before = root.ok(&["list", "available"]);
    let header_lies = {
        // A header that declares 65535 packages over one real payload.
        let mut bytes = raw_index(&[entry("a", "pool/a.stone", &hash, 1)]);
        bytes[4..6].copy_from_slice(&u16::MAX.to_be_bytes());
        bytes
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            raw_index(&[entry("a", "../outside.stone", &hash, 1)]),
            "leaves the repository",
        ),
        (
            raw_index(&[entry("a", "http://evil.example/a.stone", &hash, 1)]),
            "leaves the repository",
        ),
        (
            raw_index(&[entry("a", "/etc/passwd", &hash, 1)]),
            "absolute path",
        ),
        (
            raw_index(&[entry("a", "pool/%2e%2e/x", &hash, 1)]),
            "escape",
        ),
        (
            raw_index(&[entry("a", "pool/a.stone", "zz", 1)]),
            "is not a sha256",
        ),
        (
            raw_index(&[entry("a", "pool/a.stone", &hash, u64::MAX)]),
            "absurd size",
        ),
        (
            raw_index(&[
                entry("a", "pool/a.stone", &hash, 1),
                entry("a", "pool/b.stone", &hash, 1),
            ]),
            "listed twice",
        ),
        (header_lies, "the index is damaged"),
        (
            b"\0mos garbage that is not a stone".to_vec(),
            "the index is damaged",
        ),
    ];
    for (i, (bytes, expected)) in cases.into_iter().enumerate() {
        publish_raw(&served, &bytes, 10 + i as u64);
        let err = root.fail(&["repo", "update"]);
        assert!(err.contains(expected), "{expected}: {err}");
        assert_eq!(root.ok(&["list", "available"]), before);
    }
    // A large index (20,000 packages, each with a provider) loads, and lookups work.
    let many: Vec<_> = (0..20_000u64)
        .map(|i| {
            let mut m = entry(
                &format!("pkg{i:05}"),
                &format!("pool/p{i}.stone"),
                &hash,
                1000 + i,
            );
            m.provides = crate::common::relations(&[&format!("soname(libp{i}.so.1(x86_64))")]);
            m
        })
        .collect();
    publish_raw(&served, &raw_index(&many), 100);
    let out = root.ok(&["repo", "update"]);
    assert!(out.contains("20000 packages"), "{out}");
    let info = root.ok(&["info", "pkg12345"]);
    assert!(
        info.contains("from raw (priority 0), download 13.0 KiB"),
        "{info}"
    );
    let found = root.ok(&["search", "libp777.so", "--provides=soname"]);
    assert!(found.starts_with("pkg00777 "), "{found}");
}

#[test]
fn a_full_disk_during_a_download_leaves_nothing_behind() {
    let Some(root) = TestRoot::on_small_fs(6 << 20) else {
        return;
    };
    let keys = root.scratch("keys");
    assert!(
        run_bare(&["keygen".as_ref(), keys.join("k").as_os_str()])
            .status
            .success()
    );
    let repo = Repo {
        served: root.scratch("served"),
        key: keys.join("k.key"),
        public: keys.join("k.pub"),
        root,
    };
    repo.stone("big", "1", 1, &noise(8 << 20, 4));
    let small = repo.stone("small", "1", 1, b"small\n");
    repo.publish(&[]);
    let Some(nginx) = serve(&repo, "") else {
        return;
    };
    repo.add("main", &nginx.url("stone.index"), 1);
    repo.root.ok(&["repo", "update"]);
    let err = repo.fail(&["fetch", "big"]);
    assert!(err.contains("the file system is full"), "{err}");
    assert!(repo.cache_files().is_empty(), "{:?}", repo.cache_files());
    repo.root.ok(&["fetch", "small"]);
    assert_eq!(cached_names(&repo), [format!("{}.stone", sha256(&small))]);
}

#[test]
fn a_wrong_file_in_the_output_folder_is_replaced_by_the_verified_stone() {
    let repo = Repo::new();
    let stone = repo.stone("hello", "1", 1, b"right\n");
    repo.publish(&[]);
    repo.add(
        "main",
        &format!("file://{}/stone.index", repo.served.display()),
        1,
    );
    repo.root.ok(&["repo", "update"]);
    let out = repo.root.scratch("out");
    fs::write(out.join("hello-1-1.stone"), b"not the stone").unwrap();
    repo.root
        .ok(&["fetch", "hello", "-o", out.to_str().unwrap()]);
    assert_eq!(sha256(&out.join("hello-1-1.stone")), sha256(&stone));
}

#[test]
fn a_repository_name_that_cannot_name_its_file_is_refused() {
    // An empty name was written to the hidden file `.kdl`, which `repo list` and
    // `repo remove` then never found.
    let root = TestRoot::new();
    let uri = "file:///srv/stone.index";
    for name in [String::new(), "r".repeat(61)] {
        let line = root.fail(&["repo", "add", &name, uri]);
        assert!(
            line.contains("a repository name must have 1 to 60 characters"),
            "{line}"
        );
    }
    let admin = root.path().join("etc/moss/repo.d");
    assert_eq!(fs::read_dir(&admin).map_or(0, |dir| dir.count()), 0);
    root.ok(&["repo", "add", &"r".repeat(60), uri]);
}

#[test]
fn a_repository_uri_no_update_could_reach_is_refused_when_added() {
    // These were accepted, and failed only at the next `repo update`.
    let root = TestRoot::new();
    for (uri, why) in [
        ("http://", "it names no host"),
        (
            "http://127.0.0.1:99999/stone.index",
            "its port is not a number from 1 to 65535",
        ),
        (
            "http://[::1/stone.index",
            "the IPv6 address has no closing ']'",
        ),
        (
            "ftp://example.org/stone.index",
            "use file:///ABSOLUTE/PATH, http:// or https://",
        ),
    ] {
        let line = root.fail(&["repo", "add", "r", uri]);
        assert_eq!(line, format!("error: {uri}: {why}"));
    }
    // A scheme in capitals is a scheme all the same, recorded as clients expect it.
    root.ok(&["repo", "add", "r", "HTTP://127.0.0.1:8080/stone.index"]);
    let config = fs::read_to_string(root.path().join("etc/moss/repo.d/r.kdl")).unwrap();
    assert!(
        config.contains("uri \"http://127.0.0.1:8080/stone.index\""),
        "{config}"
    );
}
