//! Building, walking and diffing trees on a real LMDB environment in a temporary directory,
//! from layouts recorded with `put_package` and from an upstream stone.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::time::Instant;

use mossfs_db::{
    BuildIndex, Conflict, Db, DbError, Node, NodeKind, PackageRecord, Query, TreeHash,
};
use mossfs_format::{
    AssetHash, EntryKind, IndexEntry, LayoutEntry, Meta, PackageId, Reader, RelPath,
};
use mossfs_fs::diff::{Change, ChangeKind, diff};
use mossfs_fs::tree::{BuiltTree, IMPLIED_DIR_MODE, TreeError, build, build_incremental};
use mossfs_fs::walk::walk;

const STONES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/testdata/stones");

/// One record of a hand-made layout.
enum Spec {
    File(&'static str, &'static [u8]),
    FileMode(&'static str, &'static [u8], u32),
    Dir(&'static str, u32, u32, u32),
    Link(&'static str, &'static str),
}
use Spec::*;

struct Fixture {
    _dir: tempfile::TempDir,
    db: Db,
    /// What every earlier build left for an incremental one.
    bases: std::cell::RefCell<Vec<BuildIndex>>,
    /// The packages that ship a symlink.
    linking: std::cell::RefCell<std::collections::HashSet<PackageId>>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        Fixture {
            _dir: dir,
            db,
            bases: Default::default(),
            linking: Default::default(),
        }
    }

    /// Records a package made of `specs`, named `name`, with id `[byte; 32]`.
    fn package(&self, byte: u8, specs: &[Spec]) -> PackageId {
        let layout: Vec<_> = specs.iter().map(layout_entry).collect();
        self.package_layout(byte, layout)
    }

    fn package_layout(&self, byte: u8, layout: Vec<LayoutEntry>) -> PackageId {
        let id = PackageId([byte; 32]);
        if layout
            .iter()
            .any(|e| matches!(e.kind, EntryKind::Symlink(_)))
        {
            self.linking.borrow_mut().insert(id);
        }
        let mut index: Vec<IndexEntry> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut offset = 0;
        for entry in &layout {
            if let EntryKind::Regular(hash) = entry.kind
                && seen.insert(hash)
            {
                // Sizes are what the tree takes from the index; content bytes are not needed.
                let len = (hash.0 % 1000) as u64;
                index.push(IndexEntry {
                    start: offset,
                    end: offset + len,
                    digest: hash,
                });
                offset += len;
            }
        }
        let record = PackageRecord {
            id,
            meta: Meta {
                name: format!("pkg{byte}"),
                version: "1".into(),
                release: 1,
                ..Meta::default()
            },
            stone_size: 0,
            unpacked: false,
        };
        let mut txn = self.db.write().unwrap();
        txn.put_package(&record, &layout, &index).unwrap();
        txn.commit().unwrap();
        id
    }

    /// Builds the tree of `packages` from every layout, and checks that an incremental
    /// build from each earlier build of this fixture either gives exactly the same tree or
    /// leaves it to the whole build, which it must only do around conflicts and moved
    /// symlinks.
    fn build(&self, packages: &[PackageId]) -> BuiltTree {
        let mut txn = self.db.write().unwrap();
        let built = build(&mut txn, packages).unwrap();
        txn.commit().unwrap();
        // In a transaction that is dropped, so that tests that count objects see only
        // the whole build's. The empty tree is a base too: every build is then also an
        // incremental install of all its packages at once.
        let deepest = self
            .listing(built.root)
            .keys()
            .map(|p| p.matches('/').count())
            .max()
            .unwrap_or(0);
        let mut txn = self.db.write().unwrap();
        let empty = build(&mut txn, &[]).unwrap().index.unwrap();
        for base in std::iter::once(&empty).chain(self.bases.borrow().iter()) {
            match build_incremental(&mut txn, base, packages) {
                Some(fast) => {
                    assert!(built.conflicts.is_empty(), "{:?}", built.conflicts);
                    assert_eq!(fast.root, built.root, "from {:?}", base.packages);
                    assert_eq!(fast.entries, built.entries);
                    let (fast, whole) = (fast.index.unwrap(), built.index.clone().unwrap());
                    assert_eq!(fast.shared, whole.shared);
                    assert_eq!(fast.packages, whole.packages);
                }
                // Where a symlink comes or goes, the incremental build may leave it to the
                // whole one (see `tree::build_incremental`); the property test below
                // checks how often it need not.
                None => assert!(
                    !built.conflicts.is_empty()
                        || deepest > 64
                        || packages
                            .iter()
                            .chain(&base.packages)
                            .any(|p| self.linking.borrow().contains(p))
                        || !base
                            .packages
                            .iter()
                            .filter(|p| packages.contains(p))
                            .eq(packages.iter().filter(|p| base.packages.contains(p))),
                    "an incremental build from {:?} to {packages:?} without conflicts or symlinked directories fell back",
                    base.packages
                ),
            }
        }
        drop(txn);
        if let Some(index) = &built.index {
            self.bases.borrow_mut().push(index.clone());
        }
        built
    }

    /// Every path of a tree with its node, checking that the walk visits each path once.
    fn listing(&self, root: TreeHash) -> BTreeMap<String, Node> {
        let snap = self.db.read().unwrap();
        let mut out = BTreeMap::new();
        walk(&snap, root, |path, node| {
            let path = String::from_utf8(path.to_vec()).unwrap();
            assert!(
                out.insert(path.clone(), node.clone()).is_none(),
                "{path} visited twice"
            );
            Ok::<_, TreeError>(())
        })
        .unwrap();
        out
    }

    fn objects(&self) -> usize {
        self.db.read().unwrap().tree_hashes().unwrap().len()
    }
}

fn layout_entry(spec: &Spec) -> LayoutEntry {
    let (path, mode, uid, gid, kind) = match *spec {
        File(path, bytes) => (
            path,
            0o100644,
            0,
            0,
            EntryKind::Regular(AssetHash::of(bytes)),
        ),
        FileMode(path, bytes, mode) => (path, mode, 0, 0, EntryKind::Regular(AssetHash::of(bytes))),
        Dir(path, mode, uid, gid) => (path, mode, uid, gid, EntryKind::Directory),
        Link(path, target) => (
            path,
            0o120777,
            0,
            0,
            EntryKind::Symlink(target.as_bytes().to_vec()),
        ),
    };
    LayoutEntry {
        uid,
        gid,
        mode,
        tag: 0,
        kind,
        path: RelPath::new(path).unwrap(),
    }
}

fn file_node(bytes: &[u8], mode: u32, owner: PackageId) -> Node {
    let asset = AssetHash::of(bytes);
    Node {
        mode,
        uid: 0,
        gid: 0,
        owner: Some(owner),
        kind: NodeKind::Regular {
            asset,
            size: (asset.0 % 1000) as u64,
        },
    }
}

fn link_node(target: &str, owner: PackageId) -> Node {
    Node {
        mode: 0o120777,
        uid: 0,
        gid: 0,
        owner: Some(owner),
        kind: NodeKind::Symlink(target.as_bytes().to_vec()),
    }
}

fn paths(listing: &BTreeMap<String, Node>) -> Vec<&str> {
    listing.keys().map(String::as_str).collect()
}

fn is_implied_dir(node: &Node) -> bool {
    node.mode == IMPLIED_DIR_MODE
        && node.uid == 0
        && node.gid == 0
        && node.owner.is_none()
        && matches!(node.kind, NodeKind::Directory(_))
}

fn conflict_paths(built: &BuiltTree) -> Vec<String> {
    built
        .conflicts
        .iter()
        .map(|c| String::from_utf8(c.path.clone()).unwrap())
        .collect()
}

#[test]
fn every_parent_directory_is_implied() {
    let fx = Fixture::new();
    let a = fx.package(
        1,
        &[File("bin/tool", b"tool"), File("share/doc/a/readme", b"hi")],
    );
    let built = fx.build(&[a]);
    assert_eq!(built.conflicts, vec![]);
    let listing = fx.listing(built.root);
    assert_eq!(
        paths(&listing),
        [
            "bin",
            "bin/tool",
            "share",
            "share/doc",
            "share/doc/a",
            "share/doc/a/readme"
        ]
    );
    assert_eq!(built.entries, 6);
    for dir in ["bin", "share", "share/doc", "share/doc/a"] {
        assert!(is_implied_dir(&listing[dir]), "{dir}: {:?}", listing[dir]);
    }
    assert_eq!(listing["bin/tool"], file_node(b"tool", 0o100644, a));
}

#[test]
fn explicit_directory_records_supply_mode_and_owner() {
    let fx = Fixture::new();
    let a = fx.package(
        1,
        &[
            Dir("share/secret", 0o040700, 5, 6),
            File("share/secret/x", b"x"),
            Dir("var/empty", 0o041777, 0, 0),
        ],
    );
    // B ships an identical record for `share/secret` and a file inside it.
    let b = fx.package(
        2,
        &[
            Dir("share/secret", 0o040700, 5, 6),
            File("share/secret/y", b"y"),
        ],
    );
    for order in [[a, b], [b, a]] {
        let built = fx.build(&order);
        assert_eq!(built.conflicts, vec![], "identical directory records agree");
        let listing = fx.listing(built.root);
        let secret = &listing["share/secret"];
        assert_eq!((secret.mode, secret.uid, secret.gid), (0o040700, 5, 6));
        assert_eq!(secret.owner, Some(order[0]), "the first package owns it");
        assert!(is_implied_dir(&listing["share"]));
        let empty = &listing["var/empty"];
        assert_eq!((empty.mode, empty.owner), (0o041777, Some(a)));
        let NodeKind::Directory(hash) = empty.kind else {
            panic!("{empty:?}")
        };
        assert!(fx.db.read().unwrap().tree(hash).unwrap().is_empty());
        assert_eq!(built.entries, 6);
    }
}

#[test]
fn differing_directory_records_conflict() {
    let fx = Fixture::new();
    let a = fx.package(1, &[Dir("etc", 0o040755, 0, 0)]);
    let b = fx.package(2, &[Dir("etc", 0o040700, 0, 0), File("etc/x", b"x")]);
    let built = fx.build(&[a, b]);
    assert_eq!(conflict_paths(&built), ["etc"]);
    let listing = fx.listing(built.root);
    let shown = &listing["etc"];
    assert_eq!((shown.mode, shown.owner), (0o040755, Some(a)), "first wins");
    let contenders = &built.conflicts[0].contenders;
    assert_eq!(
        contenders
            .iter()
            .map(|n| (n.mode, n.owner, n.kind.clone()))
            .collect::<Vec<_>>(),
        [
            (0o040755, Some(a), shown.kind.clone()),
            (0o040700, Some(b), shown.kind.clone())
        ]
    );
}

#[test]
fn lib64_symlink_redirects_files_from_another_package_in_either_order() {
    let fx = Fixture::new();
    let links = fx.package(1, &[Link("lib64", "lib"), File("lib/ld.so", b"ld")]);
    let libfoo = fx.package(
        2,
        &[
            File("lib64/libfoo.so", b"foo"),
            File("lib64/pkgconfig/foo.pc", b"pc"),
        ],
    );
    let mut roots = Vec::new();
    for order in [[links, libfoo], [libfoo, links]] {
        let built = fx.build(&order);
        assert_eq!(built.conflicts, vec![]);
        let listing = fx.listing(built.root);
        assert_eq!(
            paths(&listing),
            [
                "lib",
                "lib/ld.so",
                "lib/libfoo.so",
                "lib/pkgconfig",
                "lib/pkgconfig/foo.pc",
                "lib64"
            ]
        );
        assert_eq!(listing["lib64"], link_node("lib", links));
        assert_eq!(
            listing["lib/libfoo.so"],
            file_node(b"foo", 0o100644, libfoo)
        );
        assert_eq!(built.entries, 6);
        roots.push(built.root);
    }
    assert_eq!(roots[0], roots[1], "no shared path, so order cannot matter");

    // The target directory need not exist otherwise: it is implied by what lands in it.
    let fx = Fixture::new();
    let a = fx.package(1, &[Link("lib64", "lib")]);
    let b = fx.package(2, &[File("lib64/libfoo.so", b"foo")]);
    let built = fx.build(&[b, a]);
    assert_eq!(built.conflicts, vec![]);
    assert_eq!(
        paths(&fx.listing(built.root)),
        ["lib", "lib/libfoo.so", "lib64"]
    );
}

#[test]
fn dotdot_in_a_target_is_normalised() {
    let fx = Fixture::new();
    let a = fx.package(
        1,
        &[
            Link("lib/gcc", "../libexec/gcc"),
            Link("share/x/y/up", "../../../lib/"),
        ],
    );
    let b = fx.package(
        2,
        &[
            File("lib/gcc/cc1", b"cc1"),
            File("share/x/y/up/gcc/lto", b"lto"),
        ],
    );
    let built = fx.build(&[a, b]);
    assert_eq!(built.conflicts, vec![]);
    let listing = fx.listing(built.root);
    assert_eq!(
        paths(&listing),
        [
            "lib",
            "lib/gcc",
            "libexec",
            "libexec/gcc",
            "libexec/gcc/cc1",
            "libexec/gcc/lto",
            "share",
            "share/x",
            "share/x/y",
            "share/x/y/up"
        ]
    );
}

#[test]
fn absolute_usr_targets_map_into_the_tree() {
    let fx = Fixture::new();
    let a = fx.package(1, &[Link("lib64", "/usr/lib"), Link("sbin", "/usr/bin/")]);
    let b = fx.package(
        2,
        &[File("lib64/libc.so", b"c"), File("sbin/init", b"init")],
    );
    let built = fx.build(&[a, b]);
    assert_eq!(built.conflicts, vec![]);
    assert_eq!(
        paths(&fx.listing(built.root)),
        ["bin", "bin/init", "lib", "lib/libc.so", "lib64", "sbin"]
    );
}

#[test]
fn entries_below_a_symlink_that_leaves_the_tree_conflict() {
    let fx = Fixture::new();
    let a = fx.package(
        1,
        &[
            Link("etc", "/etc"),
            Link("up", "../../outside"),
            Link("loop1", "loop2"),
            Link("loop2", "loop1"),
        ],
    );
    let b = fx.package(
        2,
        &[
            File("etc/passwd", b"foo"),
            File("up/x/file", b"x"),
            File("loop1/f", b"f"),
            File("bin/fine", b"ok"),
        ],
    );
    let c = fx.package(3, &[File("etc/passwd", b"other")]);
    let built = fx.build(&[a, b, c]);
    // Issue 7, defect 15: each conflict is where the symlink is, not where the records
    // below it would have been.
    assert_eq!(conflict_paths(&built), ["etc", "loop1", "up"]);
    let etc = &built.conflicts[0];
    assert_eq!(etc.contenders.len(), 3, "{etc:?}");
    assert_eq!(etc.contenders[0], link_node("/etc", a));
    // Each other package needs a directory there, holding what it ships below.
    for (node, owner, bytes) in [
        (&etc.contenders[1], b, &b"foo"[..]),
        (&etc.contenders[2], c, &b"other"[..]),
    ] {
        assert_eq!(node.owner, Some(owner));
        let NodeKind::Directory(hash) = node.kind else {
            panic!("a directory: {node:?}")
        };
        let below = fx.listing(hash);
        assert_eq!(paths(&below), ["passwd"]);
        assert_eq!(below["passwd"], file_node(bytes, 0o100644, owner));
    }
    let up = &built.conflicts[2];
    assert_eq!(up.contenders[0], link_node("../../outside", a));
    let NodeKind::Directory(hash) = up.contenders[1].kind else {
        panic!("a directory: {up:?}")
    };
    assert_eq!(paths(&fx.listing(hash)), ["x", "x/file"]);
    // The tree holds the symlinks, never anything beneath them.
    let listing = fx.listing(built.root);
    assert_eq!(
        paths(&listing),
        ["bin", "bin/fine", "etc", "loop1", "loop2", "up"]
    );
    assert_eq!(built.entries, 6);
}

#[test]
fn chains_of_symlinks_are_followed() {
    let fx = Fixture::new();
    let a = fx.package(1, &[Link("a", "b"), Link("b", "c/d")]);
    let b = fx.package(2, &[File("a/f", b"f"), File("b/g", b"g")]);
    let built = fx.build(&[b, a]);
    assert_eq!(built.conflicts, vec![]);
    assert_eq!(
        paths(&fx.listing(built.root)),
        ["a", "b", "c", "c/d", "c/d/f", "c/d/g"]
    );
}

#[test]
fn identical_entries_are_shared_not_conflicts() {
    let fx = Fixture::new();
    let shared = [File("share/common", b"same"), Link("bin/sh", "bash")];
    let a = fx.package(1, &shared);
    let b = fx.package(2, &shared);
    for order in [[a, b], [b, a]] {
        let built = fx.build(&order);
        assert_eq!(built.conflicts, vec![]);
        let listing = fx.listing(built.root);
        assert_eq!(
            listing["share/common"],
            file_node(b"same", 0o100644, order[0])
        );
        assert_eq!(listing["bin/sh"], link_node("bash", order[0]));
        assert_eq!(built.entries, 4);
    }
}

#[test]
fn different_files_at_one_path_conflict_naming_both_packages() {
    let fx = Fixture::new();
    let a = fx.package(1, &[File("bin/tool", b"from a")]);
    let b = fx.package(2, &[File("bin/tool", b"from b")]);
    let c = fx.package(3, &[FileMode("bin/tool", b"from a", 0o100755)]);
    let built = fx.build(&[b, a]);
    assert_eq!(
        built.conflicts,
        [Conflict {
            path: b"bin/tool".to_vec(),
            contenders: vec![
                file_node(b"from b", 0o100644, b),
                file_node(b"from a", 0o100644, a)
            ],
        }]
    );
    assert_eq!(
        fx.listing(built.root)["bin/tool"],
        file_node(b"from b", 0o100644, b),
        "the first package is shown"
    );
    // The same bytes with another mode are a different thing too.
    let built = fx.build(&[a, c]);
    assert_eq!(conflict_paths(&built), ["bin/tool"]);
    assert_eq!(built.conflicts[0].contenders[1].mode, 0o100755);
    // A symlink against a file.
    let d = fx.package(4, &[Link("bin/tool", "other")]);
    let built = fx.build(&[a, d]);
    assert_eq!(
        built.conflicts[0].contenders,
        [file_node(b"from a", 0o100644, a), link_node("other", d)]
    );
}

#[test]
fn a_file_where_another_package_has_a_directory_conflicts() {
    let fx = Fixture::new();
    let a = fx.package(1, &[File("share/thing", b"file")]);
    let b = fx.package(2, &[File("share/thing/readme", b"readme")]);
    let built = fx.build(&[a, b]);
    assert_eq!(conflict_paths(&built), ["share/thing"]);
    let listing = fx.listing(built.root);
    // The directory is shown, with its children, so the candidate can be inspected.
    assert_eq!(
        paths(&listing),
        ["share", "share/thing", "share/thing/readme"]
    );
    let dir = &listing["share/thing"];
    assert!(is_implied_dir(dir));
    let contenders = &built.conflicts[0].contenders;
    assert_eq!(contenders[0], file_node(b"file", 0o100644, a));
    assert_eq!(
        contenders[1],
        Node {
            owner: Some(b),
            ..dir.clone()
        },
        "an implied directory is named by the package that ships what is below it"
    );

    // Against an explicit directory record, in the other priority order.
    let c = fx.package(3, &[Dir("share/thing", 0o040750, 0, 0)]);
    let built = fx.build(&[c, a]);
    assert_eq!(conflict_paths(&built), ["share/thing"]);
    let listing = fx.listing(built.root);
    let dir = &listing["share/thing"];
    assert_eq!((dir.mode, dir.owner), (0o040750, Some(c)));
    assert_eq!(
        built.conflicts[0].contenders,
        [dir.clone(), file_node(b"file", 0o100644, a)]
    );
}

#[test]
fn different_symlinks_at_one_path_conflict_and_the_first_is_followed() {
    let fx = Fixture::new();
    let a = fx.package(1, &[Link("lib64", "lib")]);
    let b = fx.package(2, &[Link("lib64", "lib32")]);
    let c = fx.package(3, &[File("lib64/x", b"x")]);
    let built = fx.build(&[b, a, c]);
    assert_eq!(conflict_paths(&built), ["lib64"]);
    let listing = fx.listing(built.root);
    assert!(listing.contains_key("lib32/x"));
    assert_eq!(listing["lib64"], link_node("lib32", b));
}

#[test]
fn a_symlink_to_a_file_puts_entries_below_a_file_which_conflicts() {
    let fx = Fixture::new();
    let a = fx.package(1, &[Link("lib64", "lib/ld.so"), File("lib/ld.so", b"ld")]);
    let b = fx.package(2, &[File("lib64/libfoo.so", b"foo")]);
    let built = fx.build(&[a, b]);
    assert_eq!(conflict_paths(&built), ["lib/ld.so"]);
    assert_eq!(
        built.conflicts[0].contenders[0],
        file_node(b"ld", 0o100644, a)
    );
}

#[test]
fn a_symlink_against_a_directory_record_conflicts_and_still_redirects() {
    let fx = Fixture::new();
    let a = fx.package(1, &[Link("lib64", "lib")]);
    let b = fx.package(2, &[Dir("lib64", 0o040755, 0, 0), File("lib64/x", b"x")]);
    let built = fx.build(&[a, b]);
    assert_eq!(conflict_paths(&built), ["lib64"]);
    let listing = fx.listing(built.root);
    // The directory wins the view, but files still follow the symlink, whatever the
    // order, so that the tree does not depend on it.
    assert_eq!(paths(&listing), ["lib", "lib/x", "lib64"]);
    assert_eq!(listing["lib64"].owner, Some(b));
    assert_eq!(
        built.conflicts[0].contenders,
        [link_node("lib", a), listing["lib64"].clone()]
    );
}

#[test]
fn a_symlink_shipped_below_another_symlink_moves_with_it() {
    let fx = Fixture::new();
    // `lib64/gcc` really sits at `lib/gcc`, and points at `../libexec/gcc` from there.
    let a = fx.package(1, &[Link("lib64/gcc", "../libexec/gcc")]);
    let b = fx.package(2, &[Link("lib64", "lib")]);
    let c = fx.package(3, &[File("lib/gcc/cc1", b"cc1")]);
    let built = fx.build(&[a, b, c]);
    assert_eq!(built.conflicts, vec![]);
    assert_eq!(
        paths(&fx.listing(built.root)),
        [
            "lib",
            "lib/gcc",
            "lib64",
            "libexec",
            "libexec/gcc",
            "libexec/gcc/cc1"
        ]
    );
}

#[test]
fn the_deepest_possible_path_builds_walks_and_diffs() {
    let fx = Fixture::new();
    let deep = vec!["d"; 2048].join("/");
    let layout = vec![LayoutEntry {
        uid: 0,
        gid: 0,
        mode: 0o100644,
        tag: 0,
        kind: EntryKind::Regular(AssetHash::of(b"deep")),
        path: RelPath::new(deep.clone()).unwrap(),
    }];
    let a = fx.package_layout(1, layout);
    let empty = fx.build(&[]);
    assert_eq!((empty.entries, empty.conflicts.len()), (0, 0));
    let built = fx.build(&[a]);
    assert_eq!(built.entries, 2048);
    let listing = fx.listing(built.root);
    assert!(listing.contains_key(&deep));
    let snap = fx.db.read().unwrap();
    let changes = diff(&snap, empty.root, built.root).unwrap();
    assert_eq!(changes.len(), 2048);
    assert!(changes.iter().all(|c| c.kind == ChangeKind::Added));
    assert_eq!(changes.last().unwrap().path, deep.as_bytes());
}

#[test]
fn same_inputs_give_the_same_root_hash() {
    let specs = [
        Link("lib64", "lib"),
        File("lib64/a", b"a"),
        Dir("etc/x", 0o040700, 1, 1),
        File("share/z", b"z"),
        File("share/a b", b"ab"),
        File("share-doc", b"-"),
        File("share/é", b"utf8"),
    ];
    let fx = Fixture::new();
    let a = fx.package(1, &specs);
    let b = fx.package(2, &[File("bin/b", b"b")]);
    let first = fx.build(&[a, b]);
    assert_eq!(fx.build(&[a, b]), first);
    let other = Fixture::new();
    other.package(1, &specs);
    other.package(2, &[File("bin/b", b"b")]);
    assert_eq!(other.build(&[a, b]), first, "a fresh database agrees");
    // Entries come out sorted bytewise: `share` before `share-doc` at the top, and within
    // `share`, `a b` before `z` before `é`.
    let listing: Vec<String> = {
        let mut out = Vec::new();
        let snap = fx.db.read().unwrap();
        walk(&snap, first.root, |p, _| {
            out.push(String::from_utf8(p.to_vec()).unwrap());
            Ok::<_, TreeError>(())
        })
        .unwrap();
        out
    };
    assert_eq!(
        listing,
        [
            "bin",
            "bin/b",
            "etc",
            "etc/x",
            "lib",
            "lib/a",
            "lib64",
            "share",
            "share/a b",
            "share/z",
            "share/é",
            "share-doc"
        ]
    );
}

/// Five packages, each with its own subtree, and a sixth that adds one file.
fn two_states(fx: &Fixture) -> (Vec<PackageId>, PackageId) {
    let mut base = Vec::new();
    for n in 1..=5u8 {
        let layout = (0..20)
            .map(|i| {
                let path = format!("share/p{n}/sub{}/f{i}", i % 4);
                let content = format!("{n}/{i}");
                LayoutEntry {
                    uid: 0,
                    gid: 0,
                    mode: 0o100644,
                    tag: 0,
                    kind: EntryKind::Regular(AssetHash::of(content.as_bytes())),
                    path: RelPath::new(path).unwrap(),
                }
            })
            .collect();
        base.push(fx.package_layout(n, layout));
    }
    let extra = fx.package(6, &[File("share/p6/file", b"new")]);
    (base, extra)
}

#[test]
fn an_incremental_build_stores_only_the_objects_its_tree_uses() {
    let fx = Fixture::new();
    let a = fx.package(1, &[File("share/a/x", b"a"), File("share/doc/a", b"d")]);
    let b = fx.package(2, &[File("share/b/y", b"b"), File("bin/b", b"b")]);
    let c = fx.package(3, &[File("share/c/deep/z", b"c")]);
    let mut txn = fx.db.write().unwrap();
    let first = build(&mut txn, &[a, b]).unwrap();
    txn.commit().unwrap();
    let before = fx.objects();
    // Remove `a` (its directories go) and add `c` (new ones come), in one change.
    let mut txn = fx.db.write().unwrap();
    let fast = build_incremental(&mut txn, first.index.as_ref().unwrap(), &[b, c])
        .expect("no conflict and no symlink: the change applies incrementally");
    txn.commit().unwrap();
    let whole = {
        let mut txn = fx.db.write().unwrap();
        build(&mut txn, &[b, c]).unwrap()
    };
    assert_eq!((fast.root, fast.entries), (whole.root, whole.entries));
    // Every object written is a directory of the new tree: root, share, share/c and
    // share/c/deep are new, bin and share/b are shared with the old tree, and the emptied
    // share/a leaves nothing behind.
    let snap = fx.db.read().unwrap();
    let mut reachable = std::collections::HashSet::new();
    for root in [first.root, fast.root] {
        let mut stack = vec![root];
        while let Some(hash) = stack.pop() {
            if reachable.insert(hash) {
                for entry in snap.tree(hash).unwrap().entries(hash).unwrap() {
                    if let NodeKind::Directory(child) = entry.node.kind {
                        stack.push(child);
                    }
                }
            }
        }
    }
    assert_eq!(fx.objects(), reachable.len(), "no object that no tree uses");
    assert_eq!(
        fx.objects(),
        before + 4,
        "root, share, share/c and share/c/deep"
    );
}

#[test]
fn two_states_share_every_untouched_directory_object() {
    let fx = Fixture::new();
    let (base, extra) = two_states(&fx);
    let first = fx.build(&base);
    // root, share, 5 × (p/ and 4 sub/)
    assert_eq!(fx.objects(), 2 + 5 * 5);
    let mut more = base.clone();
    more.push(extra);
    let second = fx.build(&more);
    assert_ne!(first.root, second.root);
    // Only the new root, the new `share` and `share/p6` are new objects.
    assert_eq!(fx.objects(), 2 + 5 * 5 + 3);
    assert_eq!(second.entries, first.entries + 2);
}

#[test]
fn diff_lists_exactly_the_changes_without_reading_equal_subtrees() {
    let fx = Fixture::new();
    let (base, extra) = two_states(&fx);
    let first = fx.build(&base);
    let mut more = base.clone();
    more.push(extra);
    let second = fx.build(&more);

    // Remove every object that the diff should not need: reading one would be an error.
    let listing = fx.listing(second.root);
    let dir_hash = |node: &Node| match node.kind {
        NodeKind::Directory(hash) => hash,
        _ => panic!("{node:?}"),
    };
    let mut needed = vec![first.root, second.root, dir_hash(&listing["share"])];
    needed.push(dir_hash(&listing["share/p6"]));
    needed.push(dir_hash(&fx.listing(first.root)["share"]));
    let mut txn = fx.db.write().unwrap();
    let mut removed = 0;
    for hash in txn.tree_hashes().unwrap() {
        if !needed.contains(&hash) {
            txn.remove_tree(hash).unwrap();
            removed += 1;
        }
    }
    assert_eq!(removed, 5 * 5, "every object below p1..p5 is gone");
    let added_dir = listing["share/p6"].clone();
    let added_file = listing["share/p6/file"].clone();
    let changes = diff(&txn, first.root, second.root).unwrap();
    assert_eq!(
        changes,
        [
            Change {
                path: b"share/p6".to_vec(),
                kind: ChangeKind::Added,
                old: None,
                new: Some(added_dir.clone()),
            },
            Change {
                path: b"share/p6/file".to_vec(),
                kind: ChangeKind::Added,
                old: None,
                new: Some(added_file.clone()),
            },
        ]
    );
    // And the other way round, with nothing read at all for equal roots.
    let back = diff(&txn, second.root, first.root).unwrap();
    assert_eq!(
        back.iter()
            .map(|c| (c.kind, c.old.clone()))
            .collect::<Vec<_>>(),
        [
            (ChangeKind::Removed, Some(added_dir)),
            (ChangeKind::Removed, Some(added_file))
        ]
    );
    assert_eq!(diff(&txn, TreeHash(1), TreeHash(1)).unwrap(), []);
    assert!(matches!(
        diff(&txn, TreeHash(1), TreeHash(2)),
        Err(TreeError::Read {
            source: DbError::CorruptTree { hash: TreeHash(1) },
            ..
        })
    ));
}

#[test]
fn diff_reports_changed_files_kinds_and_owners() {
    let fx = Fixture::new();
    let a1 = fx.package(
        1,
        &[
            File("bin/tool", b"v1"),
            File("share/doc/x", b"x"),
            File("etc/conf", b"c"),
        ],
    );
    let a2 = fx.package(
        2,
        &[
            File("bin/tool", b"v2"),
            Dir("share/doc", 0o040755, 0, 0),
            File("etc/conf/d", b"d"),
        ],
    );
    let old = fx.build(&[a1]);
    let new = fx.build(&[a2]);
    let snap = fx.db.read().unwrap();
    let changes = diff(&snap, old.root, new.root).unwrap();
    let summary: Vec<(String, ChangeKind)> = changes
        .iter()
        .map(|c| (String::from_utf8(c.path.clone()).unwrap(), c.kind))
        .collect();
    assert_eq!(
        summary,
        [
            ("bin/tool".into(), ChangeKind::Changed),
            ("etc/conf".into(), ChangeKind::Changed),
            ("etc/conf/d".into(), ChangeKind::Added),
            ("share/doc".into(), ChangeKind::Changed),
            ("share/doc/x".into(), ChangeKind::Removed),
        ]
    );
    assert_eq!(changes[0].old, Some(file_node(b"v1", 0o100644, a1)));
    assert_eq!(changes[0].new, Some(file_node(b"v2", 0o100644, a2)));
    // `share/doc` changed owner: implied before, a record of a2 now.
    assert_eq!(changes[3].old.as_ref().unwrap().owner, None);
    assert_eq!(changes[3].new.as_ref().unwrap().owner, Some(a2));
}

#[test]
fn walk_visits_every_entry_once_and_stops_on_error() {
    let fx = Fixture::new();
    let (base, _) = two_states(&fx);
    let built = fx.build(&base);
    let listing = fx.listing(built.root);
    assert_eq!(listing.len() as u64, built.entries);
    assert_eq!(built.entries, 1 + 5 * (1 + 4 + 20));

    #[derive(Debug)]
    enum Stop {
        Here,
        Tree(TreeError),
    }
    impl From<TreeError> for Stop {
        fn from(e: TreeError) -> Self {
            Stop::Tree(e)
        }
    }
    let snap = fx.db.read().unwrap();
    let mut seen = 0;
    let result = walk(&snap, built.root, |_, _| {
        seen += 1;
        if seen == 3 { Err(Stop::Here) } else { Ok(()) }
    });
    assert!(matches!(result, Err(Stop::Here)));
    assert_eq!(seen, 3);
    assert!(matches!(
        walk(&snap, TreeHash(7), |_, _| Ok::<_, Stop>(())),
        Err(Stop::Tree(TreeError::Read { .. }))
    ));
}

#[test]
fn a_layout_asset_missing_from_every_index_is_an_error() {
    let fx = Fixture::new();
    let id = PackageId([9; 32]);
    let record = PackageRecord {
        id,
        meta: Meta {
            name: "broken".into(),
            ..Meta::default()
        },
        stone_size: 0,
        unpacked: false,
    };
    let mut txn = fx.db.write().unwrap();
    txn.put_package(&record, &[layout_entry(&File("bin/x", b"x"))], &[])
        .unwrap();
    let err = build(&mut txn, &[id]).unwrap_err();
    assert!(
        matches!(&err, TreeError::MissingAsset { package, path, asset }
            if *package == id && path.as_bytes() == b"bin/x" && *asset == AssetHash::of(b"x")),
        "{err:?}"
    );
    let missing = PackageId([8; 32]);
    assert!(matches!(
        build(&mut txn, &[missing]),
        Err(TreeError::Layout { package, source: DbError::NoPackage(_) }) if package == missing
    ));
}

#[test]
fn the_upstream_bash_completion_stone_builds_cleanly() {
    let path = format!("{STONES}/bash-completion-2.11-1-1-x86_64.stone");
    let mut reader = Reader::new(BufReader::new(File::open(path).unwrap())).unwrap();
    let stone = reader.read_metadata().unwrap();
    let fx = Fixture::new();
    let id: PackageId = "13e2bce256b183ee0c721bd6cc438be8dcebf95850c8d851801e4ce000195d94"
        .parse()
        .unwrap();
    let record = PackageRecord {
        id,
        meta: stone.typed_meta().unwrap(),
        stone_size: 0,
        unpacked: false,
    };
    let mut txn = fx.db.write().unwrap();
    txn.put_package(&record, &stone.layout, &stone.index)
        .unwrap();
    let built = build(&mut txn, &[id]).unwrap();
    txn.commit().unwrap();
    assert_eq!(built.conflicts, vec![]);

    let listing = fx.listing(built.root);
    let mut dirs = std::collections::BTreeSet::new();
    for entry in &stone.layout {
        let mut parent = entry.path.parent();
        while let Some(p) = parent {
            dirs.insert(p.to_string());
            parent = p.parent();
        }
        let node = &listing[&entry.path.to_string()];
        assert_eq!(node.mode, entry.mode, "{}", entry.path);
        assert_eq!(node.owner, Some(id));
        match &entry.kind {
            EntryKind::Regular(asset) => {
                let size = stone
                    .index
                    .iter()
                    .find(|i| i.digest == *asset)
                    .unwrap()
                    .len();
                assert_eq!(
                    node.kind,
                    NodeKind::Regular {
                        asset: *asset,
                        size
                    }
                );
            }
            EntryKind::Symlink(text) => assert_eq!(node.kind, NodeKind::Symlink(text.clone())),
            other => panic!("no {other:?} in this stone"),
        }
    }
    assert_eq!(built.entries, 745 + dirs.len() as u64);
    assert_eq!(listing.len() as u64, built.entries);
    assert_eq!(
        listing["share/bash-completion/completions/7za"].kind,
        NodeKind::Symlink(b"7z".to_vec())
    );
}

/// A deterministic synthetic package set: `packages` packages of `per_package` records each,
/// spread over directories of ~50 entries: a tenth shared libraries under `lib64/` (which
/// `lib64 -> lib` redirects), a tenth symlinks to them, the rest files under `share/`.
fn synthetic(fx: &Fixture, packages: u8, per_package: usize) -> Vec<PackageId> {
    let mut ids = Vec::new();
    for n in 0..packages {
        let mut layout = Vec::with_capacity(per_package + 1);
        if n == 0 {
            layout.push(layout_entry(&Link("lib64", "lib")));
        }
        for i in 0..per_package {
            let (path, kind) = match i % 10 {
                0 => (
                    format!("lib64/p{n}/lib{i}.so.1"),
                    EntryKind::Regular(AssetHash::of(format!("{n}:{i}").as_bytes())),
                ),
                1 => (
                    format!("lib64/p{n}/lib{}.so", i - 1),
                    EntryKind::Symlink(format!("lib{}.so.1", i - 1).into_bytes()),
                ),
                _ => (
                    format!("share/p{n}/d{}/e{}/f{i}", i / 2500, (i / 50) % 50),
                    EntryKind::Regular(AssetHash::of(format!("{n}:{i}").as_bytes())),
                ),
            };
            let mode = match kind {
                EntryKind::Symlink(_) => 0o120777,
                _ => 0o100644,
            };
            layout.push(LayoutEntry {
                uid: 0,
                gid: 0,
                mode,
                tag: 0,
                kind,
                path: RelPath::new(path).unwrap(),
            });
        }
        // Upstream writers list a layout sorted by path.
        layout.sort_by(|a, b| a.path.cmp(&b.path));
        ids.push(fx.package_layout(n + 1, layout));
    }
    ids
}

#[test]
fn a_50000_entry_state_builds_correctly() {
    let fx = Fixture::new();
    let ids = synthetic(&fx, 10, 5000);
    let started = Instant::now();
    let built = fx.build(&ids);
    let took = started.elapsed();
    assert_eq!(built.conflicts, vec![]);
    // Per package: 5000 files; lib/pN; share/pN, 2 × d, 2 × 50 e. Plus lib, lib64, share.
    let dirs_per_package = 1 + 1 + 2 + 100;
    assert_eq!(built.entries, 10 * (5000 + dirs_per_package) + 3);
    let listing = fx.listing(built.root);
    assert_eq!(listing.len() as u64, built.entries);
    assert_eq!(
        listing["lib/p3/lib4990.so"].kind,
        NodeKind::Symlink(b"lib4990.so.1".to_vec())
    );
    assert!(!listing.keys().any(|p| p.starts_with("lib64/")));
    eprintln!("50,000-entry build: {took:?}");
}

/// Run with `cargo test --release -p mossfs-fs --test tree -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn measure_a_250000_entry_build() {
    let fx = Fixture::new();
    let ids = synthetic(&fx, 50, 5000);
    for round in ["cold", "warm", "warm", "warm"] {
        let started = Instant::now();
        let mut txn = fx.db.write().unwrap();
        let built = build(&mut txn, &ids).unwrap();
        let built_in = started.elapsed();
        txn.commit().unwrap();
        eprintln!(
            "{round}: {} entries built in {built_in:?} ({:?} with commit), {} objects",
            built.entries,
            started.elapsed(),
            fx.objects()
        );
    }
}

mod properties {
    //! Where a record lands must not depend on package order: only which contender is
    //! shown at a conflicted path, and who owns a shared entry, may. And a diff is exactly
    //! the difference of two full listings.
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    const NAMES: [&str; 5] = ["a", "b", "lib", "lib64", "f"];

    /// A symlink's target is a function of its name, so two symlinks at one place agree;
    /// between them these make chains, `..`, escapes, `/usr/` and outside targets.
    fn target(name: &str) -> &'static str {
        match name {
            "lib64" => "lib",
            "a" => "../b",
            "b" => "/usr/lib64/a",
            "lib" => "/lib",
            _ => "f/..",
        }
    }

    fn record() -> impl Strategy<Value = LayoutEntry> {
        (
            prop::collection::vec(prop::sample::select(&NAMES[..]), 1..4),
            0..4u8,
        )
            .prop_map(|(components, kind)| {
                let name = *components.last().unwrap();
                let (mode, kind) = match kind {
                    0 => (0o100644, EntryKind::Regular(AssetHash::of(b"x"))),
                    1 => (0o100600, EntryKind::Regular(AssetHash::of(b"y"))),
                    2 => (0o040700, EntryKind::Directory),
                    _ => (
                        0o120777,
                        EntryKind::Symlink(target(name).as_bytes().to_vec()),
                    ),
                };
                LayoutEntry {
                    uid: 0,
                    gid: 0,
                    mode,
                    tag: 0,
                    kind,
                    path: RelPath::new(components.join("/")).unwrap(),
                }
            })
    }

    fn summary(fx: &Fixture, built: &BuiltTree) -> (Vec<String>, BTreeSet<Vec<u8>>) {
        let listing = fx.listing(built.root);
        assert_eq!(listing.len() as u64, built.entries);
        for (path, node) in &listing {
            if let NodeKind::Symlink(_) = node.kind {
                let below = format!("{path}/");
                assert!(
                    !listing.keys().any(|p| p.starts_with(&below)),
                    "nothing lies below the symlink {path}"
                );
            }
        }
        let conflicts = built.conflicts.iter().map(|c| c.path.clone()).collect();
        (listing.into_keys().collect(), conflicts)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn placement_does_not_depend_on_package_order(
            layouts in prop::collection::vec(prop::collection::vec(record(), 0..8), 1..4)
        ) {
            let fx = Fixture::new();
            let ids: Vec<_> = layouts
                .into_iter()
                .enumerate()
                .map(|(n, layout)| fx.package_layout(n as u8 + 1, layout))
                .collect();
            let forward = fx.build(&ids);
            prop_assert_eq!(fx.build(&ids), forward.clone(), "deterministic");
            let mut reversed_ids = ids.clone();
            reversed_ids.reverse();
            let reversed = fx.build(&reversed_ids);
            prop_assert_eq!(summary(&fx, &forward), summary(&fx, &reversed));
            prop_assert_eq!(forward.entries, reversed.entries);
        }
    }

    fn packages(fx: &Fixture, first_byte: u8, layouts: Vec<Vec<LayoutEntry>>) -> Vec<PackageId> {
        layouts
            .into_iter()
            .enumerate()
            .map(|(n, layout)| fx.package_layout(first_byte + n as u8, layout))
            .collect()
    }

    fn components(path: &[u8]) -> Vec<&[u8]> {
        path.split(|&b| b == b'/').collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn diff_is_the_difference_of_two_listings(
            old in prop::collection::vec(prop::collection::vec(record(), 0..8), 1..3),
            new in prop::collection::vec(prop::collection::vec(record(), 0..8), 1..3),
            keep_first in any::<bool>(),
        ) {
            let fx = Fixture::new();
            let old_ids = packages(&fx, 1, old);
            let mut new_ids = packages(&fx, 10, new);
            if keep_first {
                // Often two states share a package, and so subtrees.
                new_ids.insert(0, old_ids[0]);
            }
            let (a, b) = (fx.build(&old_ids), fx.build(&new_ids));
            let (la, lb) = (fx.listing(a.root), fx.listing(b.root));
            let mut expected = Vec::new();
            let all: BTreeSet<&String> = la.keys().chain(lb.keys()).collect();
            for path in all {
                let (x, y) = (la.get(path), lb.get(path));
                let kind = match (x, y) {
                    (None, Some(_)) => ChangeKind::Added,
                    (Some(_), None) => ChangeKind::Removed,
                    (Some(x), Some(y)) if x == y => continue,
                    (Some(x), Some(y)) => {
                        let both_dirs = matches!(x.kind, NodeKind::Directory(_))
                            && matches!(y.kind, NodeKind::Directory(_));
                        let same_meta = (x.mode, x.uid, x.gid, x.owner) == (y.mode, y.uid, y.gid, y.owner);
                        if both_dirs && same_meta {
                            continue;
                        }
                        ChangeKind::Changed
                    }
                    (None, None) => unreachable!(),
                };
                expected.push(Change {
                    path: path.as_bytes().to_vec(),
                    kind,
                    old: x.cloned(),
                    new: y.cloned(),
                });
            }
            let snap = fx.db.read().unwrap();
            let mut changes = diff(&snap, a.root, b.root).unwrap();
            // Walk order: a directory before its contents, siblings bytewise.
            let walk_order = changes
                .windows(2)
                .all(|w| components(&w[0].path) < components(&w[1].path));
            prop_assert!(walk_order, "{:?}", changes);
            changes.sort_by(|x, y| x.path.cmp(&y.path));
            expected.sort_by(|x, y| x.path.cmp(&y.path));
            prop_assert_eq!(changes, expected);
        }
    }

    /// A record for the incremental builds: shared directories and some shared names, so
    /// that packages share paths, agree and disagree, plus symlinked directories
    /// (`lib64 -> lib`, `share/alt -> ../lib`) and symlinks to files.
    fn staged_record(package: u8) -> impl Strategy<Value = LayoutEntry> {
        const DIRS: [&str; 5] = ["lib", "lib64", "share", "alt", "doc"];
        (
            prop::collection::vec(prop::sample::select(&DIRS[..]), 0..3),
            0..6u8,
            0..8u8,
        )
            .prop_map(move |(mut components, leaf, kind)| {
                let own = format!("p{package}");
                let name = match leaf {
                    0 => "x",
                    1 => "alt",
                    2 => "lib64",
                    _ => own.as_str(),
                };
                components.push(name);
                let path = components.join("/");
                let (mode, kind) = match kind {
                    0 => (0o100644, EntryKind::Regular(AssetHash::of(b"x"))),
                    1 => (0o100644, EntryKind::Regular(AssetHash::of(path.as_bytes()))),
                    2 => (0o040755, EntryKind::Directory),
                    3 => (0o040700, EntryKind::Directory),
                    4 => {
                        let target = match name {
                            "lib64" => "lib",
                            "alt" => "../lib",
                            _ => "x",
                        };
                        (0o120777, EntryKind::Symlink(target.as_bytes().to_vec()))
                    }
                    _ => (0o100755, EntryKind::Regular(AssetHash::of(own.as_bytes()))),
                };
                LayoutEntry {
                    uid: 0,
                    gid: 0,
                    mode,
                    tag: 0,
                    kind,
                    path: RelPath::new(path).unwrap(),
                }
            })
    }

    fn pool() -> impl Strategy<Value = Vec<Vec<LayoutEntry>>> {
        (0..6u8)
            .map(|n| prop::collection::vec(staged_record(n), 0..6))
            .collect::<Vec<_>>()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Issue 13 §2: a state's tree built from its parent's and the packages that
        /// change is the tree built from every layout, over random sequences of installs
        /// and removals; and where it leaves the work to the whole build, the next change
        /// starts from that build.
        #[test]
        fn incremental_builds_match_whole_builds_over_installs_and_removals(
            layouts in pool(),
            steps in prop::collection::vec((any::<u8>(), any::<u8>()), 1..12),
        ) {
            let fx = Fixture::new();
            let ids = packages(&fx, 1, layouts);
            let mut installed: u8 = 0;
            let mut txn = fx.db.write().unwrap();
            let mut base = build(&mut txn, &[]).unwrap().index.unwrap();
            let mut applied = 0;
            for (add, remove) in steps {
                installed = (installed | (add & 0x3f)) & !(remove & !add & 0x3f);
                let set: Vec<PackageId> = (0..ids.len())
                    .filter(|n| installed & (1 << n) != 0)
                    .map(|n| ids[n])
                    .collect();
                let whole = build(&mut txn, &set).unwrap();
                match build_incremental(&mut txn, &base, &set) {
                    Some(fast) => {
                        applied += 1;
                        prop_assert!(whole.conflicts.is_empty(), "{:?}", whole.conflicts);
                        prop_assert_eq!(fast.root, whole.root);
                        prop_assert_eq!(fast.entries, whole.entries);
                        prop_assert!(fast.conflicts.is_empty());
                        let (fast, full) = (fast.index.unwrap(), whole.index.unwrap());
                        prop_assert_eq!(&fast.shared, &full.shared);
                        prop_assert_eq!(&fast.packages, &full.packages);
                        // What it remembers of symlinks covers what the whole build saw.
                        prop_assert!(full.footprint.iter().all(|k| fast.footprint.contains(k)));
                        base = fast;
                    }
                    None => {
                        if let Some(index) = whole.index {
                            base = index;
                        }
                    }
                }
            }
            let _ = applied;
        }
    }

    /// Over a fixed seeded run of the test above, most changes apply incrementally: the
    /// fallback is for conflicts and moved symlinks, not the common case.
    #[test]
    fn most_random_changes_apply_incrementally() {
        let fx = Fixture::new();
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let layouts =
            proptest::strategy::ValueTree::current(&pool().new_tree(&mut runner).unwrap());
        let ids = packages(&fx, 1, layouts);
        let mut txn = fx.db.write().unwrap();
        let mut base = build(&mut txn, &[]).unwrap().index.unwrap();
        let (mut applied, mut clean) = (0, 0);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // One package in or out per step, as a user's changes mostly are.
            let flip = (seed % ids.len() as u64) as usize;
            let mut set: Vec<PackageId> = base.packages.clone();
            match set.iter().position(|&p| p == ids[flip]) {
                Some(at) => {
                    set.remove(at);
                }
                None => set.push(ids[flip]),
            }
            set.sort();
            let whole = build(&mut txn, &set).unwrap();
            if whole.conflicts.is_empty() {
                clean += 1;
            }
            match build_incremental(&mut txn, &base, &set) {
                Some(fast) => {
                    applied += 1;
                    assert_eq!(fast.root, whole.root);
                    assert_eq!(fast.entries, whole.entries);
                    base = fast.index.unwrap();
                }
                None => match whole.index {
                    Some(index) => base = index,
                    // A state with conflicts leaves nothing; step from the set anyway.
                    None => {
                        base.packages = set;
                        base.root = TreeHash(0);
                    }
                },
            }
        }
        eprintln!("{applied} of 200 changes applied incrementally, {clean} without conflicts");
        assert!(
            clean > 20,
            "the run exercises trees without conflicts ({clean})"
        );
        assert!(
            applied * 2 > clean,
            "{applied} of {clean} changes without conflicts applied incrementally"
        );
    }
}
