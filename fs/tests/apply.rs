//! The incremental commit: a blit of tree A, changed in place by `blit::apply` into tree B,
//! must be indistinguishable from a fresh blit of B.

#![allow(dead_code)]

#[path = "blit/fixture.rs"]
mod fixture;

use fixture::{Fixture, check_tree, dir, file, symlink};
use mossfs_db::Node;
use mossfs_fs::blit::{BlitOptions, Written, apply};

const ASSETS: [&[u8]; 4] = [b"alpha\n", b"beta beta\n", b"", b"#!/bin/sh\necho gamma\n"];

fn assets() -> Vec<Vec<u8>> {
    ASSETS.iter().map(|a| a.to_vec()).collect()
}

/// Blits `a`, applies the change to `b`, and checks the result against `b`.
fn check_transition(a: &[(String, Node)], b: &[(String, Node)]) {
    let fixture = Fixture::new();
    fixture.add_assets(&assets());
    let (root_a, root_b) = (fixture.tree(a), fixture.tree(b));
    let target = fixture.staging();
    fixture.blit(root_a, &target).unwrap();
    check_tree(&fixture, &target, a);
    let q = fixture.db.read().unwrap();
    apply(
        &q,
        root_a,
        root_b,
        &fixture.store,
        &target,
        &BlitOptions::default(),
    )
    .unwrap();
    check_tree(&fixture, &target, b);
}

fn base() -> Vec<(String, Node)> {
    vec![
        file("bin/tool", 0o755, (0, 0), ASSETS[3]),
        file("share/doc/a", 0o644, (0, 0), ASSETS[0]),
        file("share/doc/empty", 0o644, (0, 0), ASSETS[2]),
        symlink("lib64", "lib", (0, 0)),
        file("lib/libx.so.1", 0o755, (0, 0), ASSETS[1]),
        symlink("lib/libx.so", "libx.so.1", (0, 0)),
        dir("share/empty", 0o700, (0, 0)),
    ]
}

fn without(entries: &[(String, Node)], path: &str) -> Vec<(String, Node)> {
    entries
        .iter()
        .filter(|(p, _)| p != path && !p.starts_with(&format!("{path}/")))
        .cloned()
        .collect()
}

fn with(entries: &[(String, Node)], extra: (String, Node)) -> Vec<(String, Node)> {
    let mut out = without(entries, &extra.0);
    out.push(extra);
    out
}

#[test]
fn files_added_removed_and_changed() {
    let a = base();
    let b = with(
        &with(
            &without(&a, "share/doc/a"),
            file("share/doc/b", 0o644, (0, 0), ASSETS[1]),
        ),
        file("bin/tool", 0o755, (0, 0), ASSETS[0]),
    );
    check_transition(&a, &b);
    check_transition(&b, &a);
}

#[test]
fn apply_records_exactly_the_directories_whose_entries_changed() {
    let a = base();
    let b = with(
        &with(
            &without(&a, "share/doc/a"),
            file("bin/new", 0o755, (0, 0), ASSETS[1]),
        ),
        file("opt/x/file", 0o644, (0, 0), ASSETS[0]),
    );
    let fixture = Fixture::new();
    fixture.add_assets(&assets());
    let (root_a, root_b) = (fixture.tree(&a), fixture.tree(&b));
    let target = fixture.staging();
    fixture.blit(root_a, &target).unwrap();
    let written = Written::new();
    let options = BlitOptions {
        written: Some(&written),
        ..BlitOptions::default()
    };
    let q = fixture.db.read().unwrap();
    apply(&q, root_a, root_b, &fixture.store, &target, &options).unwrap();
    check_tree(&fixture, &target, &b);
    let recorded: Vec<String> = written
        .dirs()
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    // Not lib, share or share/empty: nothing in them changed.
    assert_eq!(
        recorded,
        ["usr", "usr/bin", "usr/opt", "usr/opt/x", "usr/share/doc"]
    );
}

#[test]
fn a_mode_change_relinks_instead_of_touching_the_shared_inode() {
    let a = base();
    let b = with(&a, file("lib/libx.so.1", 0o644, (0, 0), ASSETS[1]));
    check_transition(&a, &b);
    check_transition(&b, &a);
}

#[test]
fn whole_subtrees_come_and_go() {
    let a = base();
    let b = without(&a, "share");
    let c = with(
        &with(&a, file("share/new/deep/x", 0o600, (0, 0), ASSETS[0])),
        dir("share/new/deep/empty", 0o755, (0, 0)),
    );
    check_transition(&a, &b);
    check_transition(&b, &a);
    check_transition(&a, &c);
    check_transition(&c, &a);
}

#[test]
fn a_directory_becomes_a_file_and_back() {
    let a = base();
    let b = with(&a, file("share/doc", 0o644, (0, 0), ASSETS[0]));
    check_transition(&a, &b);
    check_transition(&b, &a);
}

#[test]
fn symlinks_and_directory_modes_change_in_place() {
    let a = base();
    let b = with(
        &with(&a, symlink("lib64", "lib/../lib", (0, 0))),
        dir("share/empty", 0o755, (1, 1)),
    );
    check_transition(&a, &b);
    check_transition(&b, &a);
}

#[test]
fn random_transitions_match_a_fresh_blit() {
    // A small name space, so that random trees collide in every way: a path that is a
    // file in one and a directory in the other, shared subtrees, modes that differ.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let names = ["a", "b", "c"];
    let random_tree = |next: &mut dyn FnMut() -> u64| {
        let mut entries: Vec<(String, Node)> = Vec::new();
        for _ in 0..(next() % 12) {
            let depth = 1 + next() % 3;
            let path: Vec<&str> = (0..depth).map(|_| names[(next() % 3) as usize]).collect();
            let path = path.join("/");
            // Skip paths that would sit below a leaf already chosen, or above one.
            if entries.iter().any(|(p, _)| {
                path.starts_with(&format!("{p}/"))
                    || p.starts_with(&format!("{path}/"))
                    || *p == path
            }) {
                continue;
            }
            let entry = match next() % 4 {
                0 => symlink(&path, names[(next() % 3) as usize], (0, 0)),
                1 => dir(
                    &path,
                    if next().is_multiple_of(2) {
                        0o755
                    } else {
                        0o700
                    },
                    (0, 0),
                ),
                _ => file(
                    &path,
                    if next().is_multiple_of(2) {
                        0o644
                    } else {
                        0o755
                    },
                    (0, 0),
                    ASSETS[(next() % 4) as usize],
                ),
            };
            entries.push(entry);
        }
        entries
    };
    for _ in 0..24 {
        let a = random_tree(&mut next);
        let b = random_tree(&mut next);
        check_transition(&a, &b);
    }
}
