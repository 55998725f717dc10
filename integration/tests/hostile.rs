//! Hostile stones against a real root (issue 3 §5, DESIGN.md §6.3 and §6.4): path
//! traversal, a file beneath a symlink that points out of the tree, and stones whose sizes
//! lie or that end early. None of them may write outside the tree, and each must fail with
//! one clear line while the root keeps its state, its tree and its state list.
//!
//! The writer cannot make most of these (its `RelPath` refuses `..`), so the stones are
//! forged: an honest stone from the real writer supplies meta, index and content, and the
//! part under test is replaced by hand-encoded bytes, stored uncompressed with an honest
//! checksum so that only the lie under test is left for the reader.

mod common;

use std::fs;
use std::path::Path;

use common::forge::{
    PAYLOAD, RawStone, honest_with, own_bytes, regular, symlink, with_layout, without_files,
    write_forged,
};
use common::{
    PIZZA, Snapshot, TestRoot, assert_same, assert_tree_matches, file, meta, sample, snapshot,
    statuses,
};
use mossfs_format::{AssetHash, IndexEntry, PayloadKind, header, payload};

/// A root with italian-pizza installed, and what a refusal must leave alone.
struct Guarded {
    root: TestRoot,
    system: Snapshot,
    states: Vec<common::StateRow>,
    /// Everything beside the root in its temporary directory, where `..` would land.
    beside: Snapshot,
}

impl Guarded {
    fn new() -> Guarded {
        let root = TestRoot::new();
        root.install(&[&sample(PIZZA)]);
        // Make the scratch folders now, so that "beside" does not change by their making.
        root.scratch("forged");
        root.scratch("stones");
        Guarded {
            system: root.system(),
            states: root.states(),
            beside: Self::beside(&root),
            root,
        }
    }

    fn beside(root: &TestRoot) -> Snapshot {
        let parent = root.path().parent().unwrap().to_owned();
        snapshot(&parent)
            .into_iter()
            .filter(|(p, _)| {
                !p.starts_with("root") && !p.starts_with("forged") && !p.starts_with("stones")
            })
            .collect()
    }

    /// Installs `stone`, expects a refusal, checks that nothing changed, and returns the
    /// error line.
    fn refused(&self, stone: &Path) -> String {
        let line = self.root.fail(&["install".as_ref(), stone.as_os_str()]);
        self.unchanged(&line);
        line
    }

    fn unchanged(&self, what: &str) {
        assert_same(&self.system, &self.root.system(), what);
        assert_eq!(self.root.states(), self.states, "{what}");
        assert_same(&self.beside, &Self::beside(&self.root), what);
        assert!(
            !self.root.moss().join("root/staging/usr").exists(),
            "{what}"
        );
        assert_tree_matches(&self.root.usr(), &[&sample(PIZZA)]);
    }
}

#[test]
fn layout_paths_that_leave_the_tree_are_refused_before_anything_is_written() {
    let guarded = Guarded::new();
    let root = &guarded.root;
    let hash = AssetHash::of(PAYLOAD);
    let cases = [
        ("dotdot", "../escape", "the path has a `..` component"),
        (
            "deep",
            "share/../../../escape",
            "the path has a `..` component",
        ),
        ("absolute", "/tmp/escape", "the path is absolute"),
        ("empty", "share//escape", "the path has an empty component"),
    ];
    for (name, path, reason) in cases {
        let stone = with_layout(
            root,
            name,
            &[regular(hash, "share/honest"), regular(hash, path)],
        );
        assert_eq!(
            guarded.refused(&stone),
            format!(
                "error: cannot read {}: package {name}: layout record 1: path `{path}` is \
                 refused: {reason}",
                stone.display()
            )
        );
        // A symlink placed at such a path is refused the same way.
        let stone = with_layout(root, name, &[symlink("honest", path)]);
        assert_eq!(
            guarded.refused(&stone),
            format!(
                "error: cannot read {}: package {name}: layout record 0: path `{path}` is \
                 refused: {reason}",
                stone.display()
            )
        );
    }
    assert!(!Path::new("/tmp/escape").exists());
}

#[test]
fn a_file_beneath_a_symlink_out_of_the_tree_lands_nowhere() {
    let guarded = Guarded::new();
    let root = &guarded.root;
    let outside = tempfile::tempdir().unwrap();
    let hash = AssetHash::of(PAYLOAD);
    let target = outside.path().to_str().unwrap().to_owned();
    let escapes = [
        ("absolute", target.clone()),
        (
            "relative",
            "../../../../../../../../../..".to_owned() + &target,
        ),
        ("climbing", "../..".to_owned()),
        ("looping", "a".to_owned()),
    ];
    for (name, link_text) in &escapes {
        let stone = with_layout(root, name, &[symlink(link_text, "a"), regular(hash, "a/x")]);
        // The record below the symlink is left out of the tree and named as a conflict,
        // at the symlink.
        assert_eq!(
            guarded.refused(&stone),
            format!(
                "error: 1 path conflict (first: usr/a, shipped by {name}); stage it with \
                 --stage --allow-conflicts to inspect it"
            )
        );
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0, "{name}");

        // Staged for inspection it is recorded, but it can never be committed.
        let out = root.ok(&[
            "install".as_ref(),
            "--stage".as_ref(),
            "--allow-conflicts".as_ref(),
            stone.as_os_str(),
        ]);
        assert!(
            out.contains("has conflicts and cannot be committed"),
            "{out}"
        );
        let id = root.states().last().unwrap().id;
        let line = root.fail(&["commit"]);
        assert!(
            line.contains(&format!("'mossfs mount --state {id} DIR'")),
            "{line}"
        );
        root.ok(&["state", "remove", &id.to_string()]);
        guarded.unchanged(name);
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0, "{name}");
    }

    // Across packages: one ships the symlink (harmless on its own), another a file below.
    let pointer = without_files(root, "pointer", &[symlink(&target, "share/evil")]);
    let out = root.install(&[&pointer]);
    assert!(out.starts_with("state "), "{out}");
    assert_eq!(
        fs::read_link(root.usr().join("share/evil")).unwrap(),
        outside.path()
    );
    let before = root.system();
    let states = root.states();
    let below = with_layout(root, "below", &[regular(hash, "share/evil/x")]);
    let line = root.fail(&["install".as_ref(), below.as_os_str()]);
    assert!(line.contains("shipped by pointer and below"), "{line}");
    assert_same(&before, &root.system(), "after the refusal");
    assert_eq!(root.states(), states);
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn a_symlinked_directory_inside_the_tree_is_followed() {
    let root = TestRoot::new();
    let hash = AssetHash::of(PAYLOAD);
    // lib64 -> lib, and a file shipped as lib64/libx.so: it is lib/libx.so on disk.
    let stone = with_layout(
        &root,
        "multilib",
        &[
            symlink("lib", "lib64"),
            regular(hash, "lib64/libx.so"),
            symlink("/usr/lib", "lib32"),
            regular(hash, "lib32/liby.so"),
        ],
    );
    root.install(&[&stone]);
    assert_eq!(
        fs::read_link(root.usr().join("lib64")).unwrap(),
        Path::new("lib")
    );
    assert_eq!(fs::read(root.usr().join("lib/libx.so")).unwrap(), PAYLOAD);
    assert_eq!(fs::read(root.usr().join("lib/liby.so")).unwrap(), PAYLOAD);
    assert_eq!(
        root.ok(&["owner", "/usr/lib/libx.so"]),
        "/usr/lib/libx.so is owned by multilib-1-1\n"
    );
    root.ok(&["verify"]);
}

#[test]
fn an_index_that_lies_about_sizes_is_refused() {
    let guarded = Guarded::new();
    let root = &guarded.root;
    let lies = [
        ("huge", Some(0), 1 << 60),
        ("beyond", None, 1),
        ("reversed", Some(10), 2),
    ];
    for (name, start, end) in lies {
        let bytes = own_bytes(name);
        let hash = AssetHash::of(&bytes);
        let mut raw = honest_with(root, name, &bytes);
        let (start, end) = match start {
            Some(start) => (start, end),
            None => (0, bytes.len() as u64 + end),
        };
        let index = mossfs_format::index::encode_all(&[IndexEntry {
            start,
            end,
            digest: hash,
        }]);
        raw.replace(PayloadKind::Index, 1, index);
        let stone = write_forged(root, name, &raw.bytes());
        let line = guarded.refused(&stone);
        assert!(
            line.starts_with(&format!(
                "error: cannot unpack {name}-1-1 from {}: ",
                stone.display()
            )),
            "{line}"
        );
        assert!(
            line.contains(&hash.to_string()),
            "the asset is named: {line}"
        );
    }
    root.ok(&["verify"]);
}

#[test]
fn an_index_that_lies_about_an_asset_the_store_already_has_is_refused() {
    let root = TestRoot::new();
    // The store gets the honest bytes from an honest package first.
    let honest_stone = root.stone(
        &meta("honest", "1"),
        vec![file("share/honest", PAYLOAD.to_vec())],
    );
    root.install(&[&honest_stone]);
    let system = root.system();
    let states = root.states();
    let hash = AssetHash::of(PAYLOAD);
    let mut raw = honest_with(&root, "liar", PAYLOAD);
    let index = mossfs_format::index::encode_all(&[IndexEntry {
        start: 0,
        end: 1 << 40,
        digest: hash,
    }]);
    raw.replace(PayloadKind::Index, 1, index);
    let stone = write_forged(&root, "liar", &raw.bytes());
    let line = root.fail(&["install".as_ref(), stone.as_os_str()]);
    assert_same(&system, &root.system(), "after the lie");
    assert_eq!(root.states(), states);
    assert_eq!(
        line,
        format!(
            "error: package liar-1-1 declares 1099511627776 bytes for asset {hash}, which has \
             29; its stone's index is wrong"
        )
    );
    root.ok(&["verify"]);
}

#[test]
fn payload_headers_that_lie_about_sizes_are_refused() {
    let guarded = Guarded::new();
    let root = &guarded.root;
    type Lie = fn(&mut RawStone);
    let lies: [(&str, Lie, &str); 5] = [
        (
            "hugelayout",
            |raw| raw.payload(PayloadKind::Layout).0.plain_size = u64::MAX,
            "layout payload at offset ",
        ),
        (
            "manyrecords",
            |raw| raw.payload(PayloadKind::Layout).0.records = u32::MAX,
            "layout payload at offset ",
        ),
        (
            "hugecontent",
            |raw| raw.payload(PayloadKind::Content).0.plain_size = 1 << 62,
            "content payload at offset ",
        ),
        (
            "hugestored",
            |raw| raw.payload(PayloadKind::Content).0.stored_size = 1 << 62,
            "content payload at offset ",
        ),
        (
            "smallcontent",
            |raw| raw.payload(PayloadKind::Content).0.plain_size = 3,
            "outside the 3 bytes of content",
        ),
    ];
    for (name, lie, expected) in lies {
        let mut raw = honest_with(root, name, &own_bytes(name));
        lie(&mut raw);
        let stone = write_forged(root, name, &raw.bytes());
        let line = guarded.refused(&stone);
        assert!(line.contains(expected), "{name}: {line}");
    }
    root.ok(&["verify"]);
}

#[test]
fn a_truncated_stone_is_refused() {
    let guarded = Guarded::new();
    let root = &guarded.root;
    let big: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let stone = root.stone(
        &meta("cut", "1"),
        vec![
            file("share/cut/big", big),
            file("share/cut/small", b"small".to_vec()),
        ],
    );
    let bytes = fs::read(&stone).unwrap();
    let raw = RawStone::parse(&bytes);
    let content_at = bytes.len() - raw.payloads.last().unwrap().1.len();
    let cuts = [
        ("in the archive header", 10),
        ("in the meta payload", header::LEN + payload::LEN + 3),
        ("before the content body", content_at),
        (
            "in the content",
            content_at + (bytes.len() - content_at) / 2,
        ),
        ("one byte short", bytes.len() - 1),
    ];
    for (what, len) in cuts {
        let cut = write_forged(root, "cut", &bytes[..len]);
        let line = guarded.refused(&cut);
        assert!(
            line.contains("truncated") || line.contains("declares"),
            "{what}: {line}"
        );
        assert!(
            line.contains(&cut.display().to_string()),
            "{what}: the stone is named: {line}"
        );
    }
    root.ok(&["verify"]);
    // The whole stone still installs afterwards.
    let out = root.install(&[&stone]);
    assert!(out.starts_with("state "), "{out}");
    assert_eq!(statuses(&root.states()).last().unwrap().1, "active");
    assert_tree_matches(&root.usr(), &[&sample(PIZZA), &stone]);
}

#[test]
fn an_incremental_commit_never_follows_a_symlink_of_the_tree_it_changes() {
    let root = TestRoot::new();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().to_str().unwrap();
    // Version 1 ships share/evil as a symlink out of the tree; version 2 makes it a
    // directory with a file in it. Each commit changes an archived tree in place, so the
    // one that installs version 2 starts from a tree where share/evil is that symlink.
    let v1 = root.stone(
        &meta("shifty", "1"),
        vec![
            common::link("share/evil", target),
            file("bin/shifty", b"1".to_vec()),
        ],
    );
    let v2 = root.stone(
        &meta("shifty", "2"),
        vec![
            file("share/evil/x", b"must land in the tree".to_vec()),
            file("bin/shifty", b"2".to_vec()),
        ],
    );
    let other = root.stone(&meta("other", "1"), vec![file("bin/other", b"o".to_vec())]);
    root.install(&[&v1]);
    root.install(&[&other]);
    let out = root.install(&[&v2]);
    assert!(
        out.contains("paths changed from the archived tree of state 1"),
        "{out}"
    );
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    assert_tree_matches(&root.usr(), &[&v2, &other]);

    // And back: state 3's tree, where share/evil is a directory, becomes state 1's.
    root.ok(&["state", "activate", "2"]);
    let out = root.ok(&["state", "activate", "1"]);
    assert!(out.contains("from the archived tree of state 3"), "{out}");
    assert_tree_matches(&root.usr(), &[&v1]);
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    root.ok(&["verify"]);
}
