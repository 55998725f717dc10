//! The blit against its floor and its peer, on a 50,000-entry tree:
//! `cargo test --release -p mossfs-fs --test blit bench -- --ignored --nocapture`.
//!
//! The floor is a serial loop of bare `mkdirat`/`linkat`/`symlinkat` over the same tree,
//! with no modes, owners or checks; the peer is `cp -al` of a blitted copy. Each round runs
//! the three in a rotated order and the best of five rounds counts, because the file
//! system is shared and its journal makes single runs noisy.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::time::Instant;

use mossfs_db::{Node, NodeKind, Query, TreeHash};
use mossfs_fs::blit::remove_tree;
use mossfs_store::Store;
use mossfs_store::durable::sync_whole_fs;

use crate::fixture::{Fixture, check_tree, file, symlink};

/// A tree shaped like a distribution's /usr: `top` directories of `sub` subdirectories,
/// each with `files` files and `links` symlinks, over `assets` distinct assets.
fn synthetic(
    top: usize,
    sub: usize,
    files: usize,
    links: usize,
    assets: usize,
) -> (Vec<Vec<u8>>, Vec<(String, Node)>) {
    let contents: Vec<Vec<u8>> = (0..assets)
        .map(|i| format!("asset number {i}\n").repeat(1 + i % 7).into_bytes())
        .collect();
    let mut entries = Vec::new();
    for t in 0..top {
        for s in 0..sub {
            for f in 0..files {
                let bytes = &contents[(t * sub * files + s * files + f) % assets];
                entries.push(file(
                    &format!("t{t:03}/s{s:03}/file{f:03}"),
                    0o644,
                    (0, 0),
                    bytes,
                ));
            }
            for l in 0..links {
                entries.push(symlink(
                    &format!("t{t:03}/s{s:03}/link{l:03}"),
                    &format!("file{l:03}"),
                    (0, 0),
                ));
            }
        }
    }
    (contents, entries)
}

/// The floor: one serial `mkdirat`/`linkat`/`symlinkat` per entry, no modes, no owners.
fn raw_loop(q: &impl Query, store: &Store, dir: &std::os::fd::OwnedFd, hash: TreeHash) -> u64 {
    use rustix::fs::{AtFlags, CWD, Mode, OFlags};
    let entries = q.tree(hash).unwrap().entries(hash).unwrap();
    let mut n = 0;
    for entry in entries {
        let name = &entry.name[..];
        match entry.node.kind {
            NodeKind::Directory(child) => {
                rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o755)).unwrap();
                let sub = rustix::fs::openat(
                    dir,
                    name,
                    OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .unwrap();
                n += 1 + raw_loop(q, store, &sub, child);
            }
            NodeKind::Regular { asset, .. } => {
                rustix::fs::linkat(CWD, store.asset_path(asset), dir, name, AtFlags::empty())
                    .unwrap();
                n += 1;
            }
            NodeKind::Symlink(ref text) => {
                rustix::fs::symlinkat(OsStr::from_bytes(text), dir, name).unwrap();
                n += 1;
            }
            _ => unreachable!(),
        }
    }
    n
}

#[test]
#[ignore = "benchmark; run with --release --ignored --nocapture"]
fn bench_blit_50k_entries() {
    const ROUNDS: usize = 5;
    let fixture = Fixture::new();
    // 40 x 25 directories of 40 files and 9 symlinks: 1,040 dirs + 49,000 = 50,040 entries.
    let (contents, entries) = synthetic(40, 25, 40, 9, 4000);
    fixture.add_assets(&contents);
    let root = fixture.tree(&entries);
    sync_whole_fs(fixture.store.assets_dir()).unwrap();
    let runs = fixture.dir.path().join("runs");
    fs::create_dir(&runs).unwrap();
    // The reference tree that cp -al copies.
    let reference = runs.join("reference");
    let total = fixture.blit(root, &reference).unwrap().entries;

    // Each round runs the three in a rotated order, so none always follows another.
    let mut times: [Vec<f64>; 3] = Default::default();
    let mut cpu = [0.0f64; 3];
    for round in 0..ROUNDS {
        for which in (0..3).map(|k| (k + round) % 3) {
            let target = runs.join(format!("{which}-{round}"));
            sync_whole_fs(&runs).unwrap();
            let cpu_start = cpu_seconds();
            let start = Instant::now();
            match which {
                0 => {
                    fs::create_dir(&target).unwrap();
                    let q = fixture.db.read().unwrap();
                    let fd = rustix::fs::open(
                        &target,
                        rustix::fs::OFlags::DIRECTORY,
                        rustix::fs::Mode::empty(),
                    )
                    .unwrap();
                    assert_eq!(raw_loop(&q, &fixture.store, &fd, root), total);
                }
                1 => assert_eq!(fixture.blit(root, &target).unwrap().entries, total),
                _ => {
                    let status = std::process::Command::new("cp")
                        .arg("-al")
                        .arg(&reference)
                        .arg(&target)
                        .status()
                        .unwrap();
                    assert!(status.success());
                }
            }
            times[which].push(start.elapsed().as_secs_f64());
            cpu[which] += cpu_seconds() - cpu_start;
        }
    }
    check_tree(&fixture, &runs.join("1-0"), &entries);
    let rate = |secs: f64| total as f64 / secs;
    let best: Vec<f64> = times
        .iter()
        .map(|t| t.iter().copied().fold(f64::MAX, f64::min))
        .collect();
    println!(
        "blit bench: {total} entries, best of {ROUNDS} rounds, {} rayon threads",
        rayon::current_num_threads()
    );
    let names = ["raw loop (floor)", "mossfs blit", "cp -al"];
    for (i, name) in names.iter().enumerate() {
        let all: Vec<String> = times[i].iter().map(|t| format!("{t:.3}")).collect();
        println!(
            "  {name:<17} {:>9.0} entries/s  best {:.3} s  cpu/run {:.3} s  runs {}",
            rate(best[i]),
            best[i],
            cpu[i] / ROUNDS as f64,
            all.join(" ")
        );
    }
    println!(
        "  blit / raw loop: {:.2}x   blit / cp -al: {:.2}x",
        best[0] / best[1],
        best[2] / best[1]
    );

    // Removal: remove_tree against rm -rf, on trees of the same shape.
    let (mut ours, mut theirs) = (f64::MAX, f64::MAX);
    for round in 0..ROUNDS {
        sync_whole_fs(&runs).unwrap();
        let start = Instant::now();
        remove_tree(&runs.join(format!("1-{round}"))).unwrap();
        ours = ours.min(start.elapsed().as_secs_f64());
        sync_whole_fs(&runs).unwrap();
        let start = Instant::now();
        let status = std::process::Command::new("rm")
            .arg("-rf")
            .arg(runs.join(format!("2-{round}")))
            .status()
            .unwrap();
        theirs = theirs.min(start.elapsed().as_secs_f64());
        assert!(status.success());
        remove_tree(&runs.join(format!("0-{round}"))).unwrap();
    }
    println!(
        "  remove_tree {:>9.0} entries/s, rm -rf {:>9.0} entries/s ({:.2}x)",
        rate(ours),
        rate(theirs),
        theirs / ours
    );
}

/// User and system CPU time of this process and its reaped children, in seconds, from
/// `/proc/self/stat` (in USER_HZ ticks, which Linux fixes at 100).
fn cpu_seconds() -> f64 {
    let stat = fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    // Fields 14 to 17 of proc(5): utime, stime, cutime, cstime; `fields[0]` is field 3.
    let ticks: u64 = fields[11..15]
        .iter()
        .map(|f| f.parse::<u64>().unwrap())
        .sum();
    ticks as f64 / 100.0
}
