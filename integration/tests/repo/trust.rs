//! Freshness and trust: what a refresh costs when nothing changed, and every refusal
//! (rollback, freeze, signatures, mix-and-match) leaving the previous index in use.

use std::fs;

use crate::fixture::*;

/// A served, signed repository with one package, added and updated once.
fn updated() -> Option<(Repo, mossfs_integration::nginx::Nginx)> {
    let repo = Repo::new();
    repo.stone("hello", "1", 1, b"one\n");
    repo.publish(&[]);
    let nginx = serve(&repo, "")?;
    repo.add("main", &nginx.url("stone.index"), 1);
    repo.root.ok(&["repo", "update"]);
    Some((repo, nginx))
}

/// What the root holds for the repository: its offer and its kept files.
fn snapshot(repo: &Repo) -> (Vec<String>, Vec<u8>, String) {
    (
        repo.available(),
        fs::read(repo.root.moss().join("repo/main/stone.index")).unwrap(),
        repo.root.ok(&["info", "hello"]),
    )
}

#[test]
fn an_unchanged_repository_costs_one_request_of_its_checksum_file() {
    let Some((repo, nginx)) = updated() else {
        return;
    };
    let before = nginx.requests().len();
    let out = repo.root.ok(&["repo", "update"]);
    assert!(out.starts_with("main: up to date"), "{out}");
    let after = nginx.requests();
    let new: Vec<&String> = after[before..].iter().collect();
    assert_eq!(new.len(), 1, "{new:?}");
    assert!(
        new[0].starts_with("GET /stone.index.checksum 200"),
        "{new:?}"
    );
    // A republished index is fetched: the checksum file, then the index.
    repo.stone("hello", "2", 2, b"two\n");
    repo.publish(&[]);
    let out = repo.root.ok(&["repo", "update"]);
    assert!(out.starts_with("main: updated"), "{out}");
    assert_eq!(count(&nginx, "/stone.index.checksum"), 3);
    assert_eq!(count(&nginx, "/stone.index"), 2);
}

#[test]
fn a_replayed_older_index_is_a_rollback() {
    let Some((repo, _nginx)) = updated() else {
        return;
    };
    let old_sum = fs::read(repo.served.join("stone.index.checksum")).unwrap();
    let old_index = fs::read(repo.served.join("stone.index")).unwrap();
    // Versions are unix seconds at least one above the last; wait for a higher one anyway.
    repo.stone("hello", "2", 2, b"two\n");
    repo.publish(&[]);
    repo.root.ok(&["repo", "update"]);
    let before = snapshot(&repo);
    fs::write(repo.served.join("stone.index.checksum"), old_sum).unwrap();
    fs::write(repo.served.join("stone.index"), old_index).unwrap();
    let err = repo.fail(&["repo", "update"]);
    assert!(
        err.contains("older than version") && err.contains("rollback"),
        "{err}"
    );
    assert!(err.contains("previous index stays in use"), "{err}");
    assert_eq!(snapshot(&repo), before);
}

#[test]
fn an_expired_checksum_file_is_a_freeze() {
    let Some((repo, _nginx)) = updated() else {
        return;
    };
    let before = snapshot(&repo);
    repo.stone("hello", "2", 2, b"two\n");
    repo.publish(&["--expires", "0"]);
    let err = repo.fail(&["repo", "update"]);
    assert!(
        err.contains("expired at 20") && err.contains("UTC"),
        "{err}"
    );
    assert!(err.contains("stale or frozen"), "{err}");
    assert_eq!(snapshot(&repo), before);
}

#[test]
fn unsigned_badly_signed_and_differently_keyed_indexes_are_refused() {
    let Some((repo, _nginx)) = updated() else {
        return;
    };
    let before = snapshot(&repo);
    repo.stone("hello", "2", 2, b"two\n");
    let sum_path = repo.served.join("stone.index.checksum");

    // Unsigned.
    let out = run_bare(&["index".as_ref(), repo.served.as_os_str()]);
    assert!(out.status.success());
    let err = repo.fail(&["repo", "update"]);
    assert!(err.contains("is unsigned but a key is configured"), "{err}");
    assert_eq!(snapshot(&repo), before);

    // Another key.
    let other = repo.root.scratch("other");
    assert!(
        run_bare(&["keygen".as_ref(), other.join("o").as_os_str()])
            .status
            .success()
    );
    let out = run_bare(&[
        "index".as_ref(),
        repo.served.as_os_str(),
        "--sign".as_ref(),
        other.join("o.key").as_os_str(),
    ]);
    assert!(out.status.success());
    let err = repo.fail(&["repo", "update"]);
    assert!(
        err.contains("is signed by key") && err.contains("not the configured one"),
        "{err}"
    );
    assert_eq!(snapshot(&repo), before);

    // The right key, one bit of the signature flipped (the last byte of the file), with
    // the payload's own checksum re-sealed so only the signature can catch it.
    repo.publish(&[]);
    let mut bytes = fs::read(&sum_path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let sig_header = bytes.len() - 96 - 32;
    let body = bytes[sig_header + 32..].to_vec();
    bytes[sig_header + 16..sig_header + 24]
        .copy_from_slice(&xxhash_rust::xxh3::xxh3_64(&body).to_be_bytes());
    fs::write(&sum_path, &bytes).unwrap();
    let err = repo.fail(&["repo", "update"]);
    assert!(err.contains("has a bad signature"), "{err}");
    assert_eq!(snapshot(&repo), before);

    // Without a key configured the repository is used, and listed as unsigned.
    let plain = Repo::new();
    plain.root.ok(&[
        "repo",
        "add",
        "open",
        &format!("file://{}/stone.index", repo.served.display()),
    ]);
    repo.publish(&[]);
    plain.root.ok(&["repo", "update"]);
    assert!(
        plain
            .root
            .ok(&["repo", "list"])
            .contains("open priority 0 enabled unsigned")
    );
}

#[test]
fn an_index_that_does_not_match_its_checksum_file_is_refused() {
    let Some((repo, nginx)) = updated() else {
        return;
    };
    let before = snapshot(&repo);
    repo.stone("hello", "2", 2, b"two\n");
    repo.publish(&[]);
    // Same size, one byte changed: the sha256 differs.
    let index = repo.served.join("stone.index");
    let mut bytes = fs::read(&index).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    fs::write(&index, &bytes).unwrap();
    let err = repo.fail(&["repo", "update"]);
    assert!(
        err.contains("does not match its checksum file (sha256"),
        "{err}"
    );
    assert_eq!(snapshot(&repo), before);
    // Longer than signed: the download stops at the signed size.
    bytes.extend_from_slice(&[0u8; 4096]);
    fs::write(&index, &bytes).unwrap();
    let err = repo.fail(&["repo", "update"]);
    assert!(err.contains("longer than the"), "{err}");
    assert_eq!(snapshot(&repo), before);
    // Gone: a 404, named.
    fs::remove_file(&index).unwrap();
    let err = repo.fail(&["repo", "update"]);
    assert!(
        err.contains("cannot fetch") && err.contains("not found"),
        "{err}"
    );
    // Updating is what reads the index, so the advice is the URI, not another update.
    assert!(err.ends_with("check the repository's URI ('mossfs repo list'); a wrong one is replaced with 'mossfs repo remove' and 'mossfs repo add'"), "{err}");
    assert_eq!(snapshot(&repo), before);
    drop(nginx);
}
