//! The blit against real trees: directory objects in a real LMDB, assets ingested into a
//! real store from real stones, blitted into temp dirs and compared path by path.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Mutex;

use mossfs_db::{DbError, DirEntry, Node, NodeKind, TreeHash, tree};
use mossfs_format::{AssetHash, EntryKind, Reader};
use mossfs_fs::blit::{
    BlitError, BlitOptions, BlitProgress, BlitStats, Op, TreeSync, Written, blit, remove_tree,
    sync_tree,
};
use mossfs_store::durable::FsKind;

#[path = "blit/bench.rs"]
mod bench;
#[path = "blit/fixture.rs"]
mod fixture;

use fixture::*;

#[test]
fn blits_every_kind_with_its_mode_and_owner() {
    let fixture = Fixture::new();
    let outside = tempfile::tempdir().unwrap();
    let entries = sample_entries(outside.path());
    fixture.add_assets(&assets_of(&entries, SAMPLE_BYTES));
    let root = fixture.tree(&entries);

    let reports = Mutex::new(Vec::new());
    let progress = |p: BlitProgress| reports.lock().unwrap().push(p);
    let options = BlitOptions {
        set_owner: true,
        progress: Some(&progress),
        written: None,
    };
    let target = fixture.staging();
    let q = fixture.db.read().unwrap();
    let stats = blit(&q, root, &fixture.store, &target, &options).unwrap();

    check_tree(&fixture, &target, &entries);
    // bin, share, share/doc, share/sgid, ro, ro/inner, ro/inner/deeper, private, sticky, dev;
    // share/sgid/inside is group-writable, so a copy.
    assert_eq!(
        stats,
        BlitStats {
            dirs: 10,
            files: 11,
            symlinks: 3,
            others: 4,
            copied_fallbacks: 1,
            entries: 28,
        }
    );
    let reports = reports.into_inner().unwrap();
    assert_eq!(
        reports.last(),
        Some(&BlitProgress {
            done: 28,
            total: 28
        }),
        "the last report says everything is done"
    );
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn empty_files_are_fresh_inodes_never_links() {
    let fixture = Fixture::new();
    let entries = vec![
        file("a/empty", 0o644, (0, 0), b""),
        file("b/empty", 0o644, (0, 0), b""),
        file("c/empty", 0o755, (0, 0), b""),
    ];
    let root = fixture.tree(&entries);
    fixture.blit(root, &fixture.staging()).unwrap();
    let inodes: BTreeSet<u64> = ["a", "b", "c"]
        .iter()
        .map(|d| {
            let meta = fs::metadata(fixture.staging().join(d).join("empty")).unwrap();
            assert_eq!((meta.len(), meta.nlink()), (0, 1));
            meta.ino()
        })
        .collect();
    assert_eq!(inodes.len(), 3, "three empty files, three inodes");
    assert!(
        !fixture.store.has_asset(AssetHash::EMPTY),
        "the empty file needs nothing from the store"
    );
    check_tree(&fixture, &fixture.staging(), &entries);
}

#[test]
fn bash_completion_matches_its_layout() {
    let fixture = Fixture::new();
    let path = stones().join("bash-completion-2.11-1-1-x86_64.stone");
    let cached = fixture.store.cache_stone(&path).unwrap();
    fixture.store.ingest(&cached.id).unwrap();
    let stone = Reader::new(fs::File::open(&path).unwrap())
        .unwrap()
        .read_metadata()
        .unwrap();
    assert_eq!(stone.layout.len(), 745);
    let sizes: HashMap<AssetHash, u64> = stone
        .index
        .iter()
        .map(|e| (e.digest, e.end - e.start))
        .collect();
    let entries: Vec<(String, Node)> = stone
        .layout
        .iter()
        .map(|entry| {
            let kind = match &entry.kind {
                EntryKind::Regular(hash) => NodeKind::Regular {
                    asset: *hash,
                    size: sizes[hash],
                },
                EntryKind::Symlink(text) => NodeKind::Symlink(text.clone()),
                other => panic!("bash-completion ships no {}", other.name()),
            };
            let node = node(entry.mode, entry.uid, entry.gid, kind);
            (entry.path.to_string(), node)
        })
        .collect();
    let root = fixture.tree(&entries);

    let target = fixture.staging();
    let stats = fixture.blit(root, &target).unwrap();
    check_tree(&fixture, &target, &entries);
    let implicit_dirs = walk(&target).len() as u64 - 745;
    assert_eq!((stats.files, stats.symlinks, stats.others), (474, 271, 0));
    assert_eq!(stats.dirs, implicit_dirs);
    assert_eq!(stats.entries, 745 + implicit_dirs);
    let example = target.join("share/bash-completion/completions/7za");
    assert_eq!(fs::read_link(example).unwrap(), Path::new("7z"));
}

#[test]
fn a_symlink_in_the_tree_is_never_followed() {
    let fixture = Fixture::new();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("keep"), b"keep").unwrap();
    let outside_mode = fs::metadata(outside.path()).unwrap().mode();
    let outside_text = outside.path().to_string_lossy().into_owned();
    let entries = vec![
        // A symlink to a directory outside, sorted before a directory of the same shape:
        // had the blit resolved names as paths, `x/...` would have landed outside.
        symlink("lib64", &outside_text, (0, 0)),
        file("lib/libc.so", 0o755, (0, 0), b"libc"),
        symlink("x", &outside_text, (0, 0)),
        symlink("x-keep", &format!("{outside_text}/keep"), (0, 0)),
        file("y/z", 0o644, (0, 0), b"z"),
    ];
    fixture.add_assets(&[b"libc".to_vec(), b"z".to_vec()]);
    let root = fixture.tree(&entries);
    let target = fixture.staging();
    fixture.blit(root, &target).unwrap();
    check_tree(&fixture, &target, &entries);
    let outside_now: Vec<_> = fs::read_dir(outside.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside_now, vec![OsStr::new("keep").to_owned()]);
    assert_eq!(fs::read(outside.path().join("keep")).unwrap(), b"keep");
    assert_eq!(
        fs::metadata(outside.path()).unwrap().mode(),
        outside_mode,
        "the outside directory's mode was not touched through the link"
    );
}

#[test]
fn a_target_that_exists_is_refused_even_as_a_symlink() {
    let fixture = Fixture::new();
    let outside = tempfile::tempdir().unwrap();
    let root = fixture.tree(&[file("f", 0o644, (0, 0), b"")]);
    let target = fixture.staging();
    std::os::unix::fs::symlink(outside.path(), &target).unwrap();
    let err = fixture.blit(root, &target).unwrap_err();
    match &err {
        BlitError::Target { op, path, source } => {
            assert_eq!(*op, Op::Mkdir);
            assert_eq!(path, &target);
            assert_eq!(source.kind(), std::io::ErrorKind::AlreadyExists);
        }
        other => panic!("expected Target, got {other:?}"),
    }
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn a_missing_asset_names_the_path_and_the_hash() {
    let fixture = Fixture::new();
    let entries = vec![
        file("bin/nano", 0o755, (0, 0), b"nano, never ingested"),
        file("bin/other", 0o755, (0, 0), b"nor this"),
    ];
    let root = fixture.tree(&entries);
    let err = fixture.blit(root, &fixture.staging()).unwrap_err();
    let BlitError::MissingAsset { hash, path } = &err else {
        panic!("expected MissingAsset, got {err:?}");
    };
    assert_eq!(*hash, AssetHash::of(b"nano, never ingested"));
    assert_eq!(path, Path::new("usr/bin/nano"));
    assert_eq!(
        err.to_string(),
        format!(
            "asset {hash} for usr/bin/nano is missing from the store; run 'mossfs verify --repair'"
        )
    );
}

#[test]
fn a_damaged_tree_is_refused_before_anything_is_created() {
    for bad in [&b".."[..], b".", b"a/b", b"", b"nul\0"] {
        let fixture = Fixture::new();
        let entry = DirEntry {
            name: bad.to_vec(),
            node: node(LNK | 0o777, 0, 0, NodeKind::Symlink(b"/etc".to_vec())),
        };
        let inner = {
            let mut txn = fixture.db.write().unwrap();
            let inner = txn.put_tree(&tree::encode(&[entry])).unwrap();
            let sub = DirEntry {
                name: b"sub".to_vec(),
                node: node(DIR | 0o755, 0, 0, NodeKind::Directory(inner)),
            };
            let root = txn.put_tree(&tree::encode(&[sub])).unwrap();
            txn.commit().unwrap();
            root
        };
        let err = fixture.blit(inner, &fixture.staging()).unwrap_err();
        match &err {
            BlitError::BadName { path, name } => {
                assert_eq!(path, Path::new("usr/sub"));
                assert_eq!(name.as_bytes(), bad);
            }
            other => panic!("expected BadName for {bad:?}, got {other:?}"),
        }
        assert!(!fixture.staging().exists(), "nothing was created");
    }

    let fixture = Fixture::new();
    let missing = TreeHash(42);
    let root = fixture.tree(&[]);
    let sub = DirEntry {
        name: b"gone".to_vec(),
        node: node(DIR | 0o755, 0, 0, NodeKind::Directory(missing)),
    };
    let mut txn = fixture.db.write().unwrap();
    let with_gone = txn.put_tree(&tree::encode(&[sub])).unwrap();
    txn.commit().unwrap();
    assert_ne!(root, with_gone);
    let err = fixture.blit(with_gone, &fixture.staging()).unwrap_err();
    match &err {
        BlitError::Tree {
            path,
            source: DbError::CorruptTree { hash },
        } => {
            assert_eq!(path, Path::new("usr/gone"));
            assert_eq!(*hash, missing);
        }
        other => panic!("expected Tree, got {other:?}"),
    }
    assert!(!fixture.staging().exists());
}

#[test]
fn link_limit_falls_back_to_a_copy() {
    let fixture = Fixture::new();
    let bytes = b"a popular license text".to_vec();
    fixture.add_assets(std::slice::from_ref(&bytes));
    let hash = AssetHash::of(&bytes);
    let asset = fixture.store.asset_path(hash);
    // Use up the asset's links, then give one back: the blit gets exactly one link.
    let hog = fixture.dir.path().join("hog");
    fs::create_dir(&hog).unwrap();
    let mut made = 0u32;
    loop {
        match fs::hard_link(&asset, hog.join(made.to_string())) {
            Ok(()) => made += 1,
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::MLINK.raw_os_error()) => break,
            Err(e) => panic!("{e}"),
        }
        if made > 200_000 {
            eprintln!("this file system has no link limit; nothing to test");
            return;
        }
    }
    fs::remove_file(hog.join((made - 1).to_string())).unwrap();

    let entries = vec![
        file("a", 0o644, (0, 0), &bytes),
        file("b", 0o644, (0, 0), &bytes),
        file("c", 0o644, (0, 0), &bytes),
    ];
    let root = fixture.tree(&entries);
    let target = fixture.staging();
    let stats = fixture.blit(root, &target).unwrap();
    assert_eq!((stats.files, stats.copied_fallbacks), (3, 2));
    let asset_ino = fs::metadata(&asset).unwrap().ino();
    let linked = ["a", "b", "c"]
        .iter()
        .filter(|name| {
            let meta = fs::metadata(target.join(name)).unwrap();
            assert_eq!(fs::read(target.join(name)).unwrap(), bytes);
            assert_eq!(meta.mode(), REG | 0o644);
            meta.ino() == asset_ino
        })
        .count();
    assert_eq!(linked, 1);
    remove_tree(&hog).unwrap();
}

#[test]
fn a_file_others_may_write_gets_a_copy_of_its_own() {
    // Linked, a 0666 file would let any user rewrite the store's only copy of its bytes,
    // and with it the 0644 file of another package that shares them.
    let fixture = Fixture::new();
    let bytes = b"shared bytes".to_vec();
    fixture.add_assets(std::slice::from_ref(&bytes));
    let entries = vec![
        file("private", 0o644, (0, 0), &bytes),
        file("everyone", 0o666, (0, 0), &bytes),
        file("group", 0o664, (0, 0), &bytes),
    ];
    let root = fixture.tree(&entries);
    let target = fixture.staging();
    let stats = fixture.blit(root, &target).unwrap();
    check_tree(&fixture, &target, &entries);
    assert_eq!((stats.files, stats.copied_fallbacks), (3, 2));
    let canonical = fs::metadata(fixture.store.asset_path(AssetHash::of(&bytes))).unwrap();
    let ino = |name: &str| fs::metadata(target.join(name)).unwrap().ino();
    assert_ne!(ino("everyone"), canonical.ino());
    assert_ne!(ino("group"), canonical.ino());
    assert_ne!(ino("everyone"), ino("group"));
    fs::write(target.join("everyone"), b"rewritten").unwrap();
    assert_eq!(
        fs::read(fixture.store.asset_path(AssetHash::of(&bytes))).unwrap(),
        bytes
    );
    assert_eq!(fs::read(target.join("private")).unwrap(), bytes);
}

#[test]
fn a_deep_and_wide_tree_comes_out_whole() {
    let fixture = Fixture::new();
    let contents: Vec<Vec<u8>> = (0..50).map(|i| format!("asset {i}").into_bytes()).collect();
    fixture.add_assets(&contents);
    let mut entries = Vec::new();
    // Wide: one directory with more entries than one chunk.
    for i in 0..1500 {
        let bytes = &contents[i % contents.len()];
        entries.push(file(&format!("wide/f{i:04}"), 0o644, (0, 0), bytes));
    }
    // Deep: 120 levels, with a file and a symlink at each.
    let mut path = String::from("deep");
    for level in 0..120 {
        path.push_str(&format!("/d{level}"));
        entries.push(file(
            &format!("{path}/f"),
            0o644,
            (0, 0),
            &contents[level % 50],
        ));
        entries.push(symlink(&format!("{path}/up"), "..", (0, 0)));
    }
    // The same directory object in two places.
    for twin in ["twin1", "twin2"] {
        entries.push(file(&format!("{twin}/same"), 0o644, (0, 0), &contents[0]));
    }
    let root = fixture.tree(&entries);
    let stats = fixture.blit(root, &fixture.staging()).unwrap();
    check_tree(&fixture, &fixture.staging(), &entries);
    assert_eq!(stats.files, 1500 + 120 + 2);
    assert_eq!(stats.dirs, 1 + 1 + 120 + 2);
}

#[test]
fn a_tree_as_deep_as_a_path_can_be_is_blitted_and_removed() {
    // A file 2,047 directories down, and beside it a directory 2,048 levels deep: both
    // 4,095-byte paths, the longest a layout may hold. The blit and the removal recurse
    // once per level on rayon's threads, whose default 2 MiB stacks a tree 1,000 levels
    // deep overflowed.
    let fixture = Fixture::new();
    let bytes = b"at the bottom".to_vec();
    fixture.add_assets(std::slice::from_ref(&bytes));
    let deep = format!("{}f", "d/".repeat(2047));
    let deepest = format!("{}e", "d/".repeat(2047));
    let entries = [
        file(&deep, 0o644, (0, 0), &bytes),
        dir(&deepest, 0o755, (0, 0)),
    ];
    // The fixture's own tree builder recurses too; it gets a stack of its own, so that
    // what runs on the test's thread and rayon's is the blit alone.
    let root = std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn_scoped(s, || fixture.tree(&entries))
            .unwrap()
            .join()
            .unwrap()
    });
    let target = fixture.staging();
    let stats = fixture.blit(root, &target).unwrap();
    assert_eq!((stats.files, stats.dirs), (1, 2048));
    // The whole path is past PATH_MAX; from the target, the rest fits.
    let top = fs::File::open(&target).unwrap();
    let bottom = rustix::fs::openat(
        &top,
        deep.as_str(),
        rustix::fs::OFlags::RDONLY,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    assert_eq!(
        std::io::read_to_string(fs::File::from(bottom))
            .unwrap()
            .as_bytes(),
        bytes
    );
    // Removed as recovery removes staging: from the folder that holds `usr`.
    let staging = target.parent().unwrap();
    remove_tree(staging).unwrap();
    assert!(!staging.exists());
}

#[test]
fn a_tree_deeper_than_any_package_makes_is_refused_not_overflowed() {
    // Only something other than mossfs can nest directories this deep in a root.
    let dir = tempfile::tempdir().unwrap();
    let top = dir.path().join("tree");
    fs::create_dir(&top).unwrap();
    let mut fd = rustix::fs::open(
        &top,
        rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    for _ in 0..2100 {
        rustix::fs::mkdirat(&fd, "d", rustix::fs::Mode::from_raw_mode(0o755)).unwrap();
        fd = rustix::fs::openat(
            &fd,
            "d",
            rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
    }
    drop(fd);
    let err = remove_tree(&top).unwrap_err();
    assert!(
        matches!(err, mossfs_fs::blit::RemoveError::TooDeep { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("rm -rf"), "{err}");
    // From 100 levels down, the rest is within reach; then the whole is.
    let middle = top.join(["d"; 100].join("/"));
    remove_tree(&middle).unwrap();
    remove_tree(&top).unwrap();
    assert!(!top.exists());
}

/// The kind of file system the test's temp dir is on, which decides how a tree is synced.
fn fs_kind(path: &Path) -> FsKind {
    FsKind::of(std::fs::File::open(path).unwrap())
}

#[test]
fn sync_tree_syncs_exactly_what_the_blit_wrote() {
    let fixture = Fixture::new();
    // Without symlinks or nodes every file system is synced entry by entry: the root,
    // a, a/b and c (4 directories), and the two empty files (fresh inodes); the linked
    // file needs nothing of its own.
    let entries = [
        file("a/b/empty", 0o644, (0, 0), b""),
        file("a/linked", 0o644, (0, 0), b"linked bytes"),
        file("c/empty", 0o600, (0, 0), b""),
    ];
    fixture.add_assets(&assets_of(&entries, &[b"linked bytes"]));
    let root = fixture.tree(&entries);
    let written = Written::new();
    let options = BlitOptions {
        written: Some(&written),
        ..BlitOptions::default()
    };
    let target = fixture.staging();
    let q = fixture.db.read().unwrap();
    blit(&q, root, &fixture.store, &target, &options).unwrap();
    drop(q);
    let recorded: Vec<String> = written
        .dirs()
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    assert_eq!(recorded, ["usr", "usr/a", "usr/a/b", "usr/c"]);
    let kind = fs_kind(&target);
    let expected = match kind {
        FsKind::Volatile => TreeSync::Nothing,
        FsKind::Journaled => TreeSync::Journal { files: 2 },
        FsKind::Logged | FsKind::Unjournaled => TreeSync::Each { dirs: 4, files: 2 },
    };
    assert_eq!(sync_tree(&target, &written).unwrap(), expected);
    // The ledger is spent: a second sync only has the target itself left.
    let again = match kind {
        FsKind::Volatile => TreeSync::Nothing,
        FsKind::Journaled => TreeSync::Journal { files: 0 },
        FsKind::Logged | FsKind::Unjournaled => TreeSync::Each { dirs: 1, files: 0 },
    };
    assert_eq!(sync_tree(&target, &written).unwrap(), again);
}

#[test]
fn a_tree_with_symlinks_needs_syncfs_only_without_a_journal() {
    let fixture = Fixture::new();
    let entries = [
        file("bin/tool", 0o755, (0, 0), b"tool"),
        symlink("bin/alias", "tool", (0, 0)),
    ];
    fixture.add_assets(&assets_of(&entries, &[b"tool"]));
    let root = fixture.tree(&entries);
    let written = Written::new();
    let options = BlitOptions {
        written: Some(&written),
        ..BlitOptions::default()
    };
    let target = fixture.staging();
    let q = fixture.db.read().unwrap();
    blit(&q, root, &fixture.store, &target, &options).unwrap();
    drop(q);
    let expected = match fs_kind(&target) {
        FsKind::Volatile => TreeSync::Nothing,
        FsKind::Unjournaled => TreeSync::WholeFileSystem,
        FsKind::Journaled => TreeSync::Journal { files: 0 },
        FsKind::Logged => TreeSync::Each { dirs: 2, files: 0 },
    };
    assert_eq!(sync_tree(&target, &written).unwrap(), expected);
}

#[test]
fn sync_tree_names_a_missing_tree() {
    let fixture = Fixture::new();
    let missing = fixture.dir.path().join("nope");
    match sync_tree(&missing, &Written::new()).unwrap_err() {
        BlitError::Sync { path, source } => {
            assert_eq!(path, missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Sync, got {other:?}"),
    }
}

#[test]
fn remove_tree_removes_read_only_dirs_and_never_follows_symlinks() {
    let sandbox = tempfile::tempdir().unwrap();
    let outside = sandbox.path().join("outside");
    fs::create_dir_all(outside.join("sub")).unwrap();
    fs::write(outside.join("sub/keep"), b"keep").unwrap();
    fs::write(outside.join("file"), b"keep").unwrap();

    let tree = sandbox.path().join("staging/usr");
    fs::create_dir_all(tree.join("a/b/c")).unwrap();
    fs::write(tree.join("a/b/c/f"), b"x").unwrap();
    fs::write(tree.join("a/f"), b"x").unwrap();
    std::os::unix::fs::symlink(&outside, tree.join("a/to-outside")).unwrap();
    std::os::unix::fs::symlink(outside.join("sub"), tree.join("a/b/to-sub")).unwrap();
    std::os::unix::fs::symlink(outside.join("file"), tree.join("to-file")).unwrap();
    for (dir, mode) in [("a/b/c", 0o555), ("a/b", 0o000), ("a", 0o500)] {
        fs::set_permissions(tree.join(dir), fs::Permissions::from_mode(mode)).unwrap();
    }
    fs::create_dir(tree.join("sticky")).unwrap();
    fs::set_permissions(tree.join("sticky"), fs::Permissions::from_mode(0o1777)).unwrap();

    remove_tree(&tree).unwrap();
    assert!(!tree.exists());
    assert!(
        sandbox.path().join("staging").is_dir(),
        "only the tree went"
    );
    assert_eq!(fs::read(outside.join("sub/keep")).unwrap(), b"keep");
    assert_eq!(fs::read(outside.join("file")).unwrap(), b"keep");

    // Missing: nothing to do. A symlink: the link goes, its target stays.
    remove_tree(&tree).unwrap();
    let link = sandbox.path().join("link");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    remove_tree(&link).unwrap();
    assert!(fs::symlink_metadata(&link).is_err());
    assert_eq!(fs::read(outside.join("sub/keep")).unwrap(), b"keep");
}

/// Builds a tree whose read-only directories block removal for anyone but root, with
/// symlinks to a read-only directory outside, and removes it.
fn remove_read_only_tree(sandbox: &Path) {
    let outside = sandbox.join("outside");
    fs::create_dir_all(outside.join("sub")).unwrap();
    fs::write(outside.join("sub/keep"), b"keep").unwrap();
    fs::set_permissions(outside.join("sub"), fs::Permissions::from_mode(0o555)).unwrap();
    let tree = sandbox.join("staging/usr");
    fs::create_dir_all(tree.join("a/b/c")).unwrap();
    fs::write(tree.join("a/b/c/f"), b"x").unwrap();
    fs::write(tree.join("a/b/g"), b"x").unwrap();
    std::os::unix::fs::symlink(outside.join("sub"), tree.join("a/b/c/to-sub")).unwrap();
    std::os::unix::fs::symlink(outside.join("sub"), tree.join("a/to-sub")).unwrap();
    // Innermost first: once `a/b` is 0000 nothing below it can be reached.
    for (dir, mode) in [("a/b/c", 0o555), ("a/b", 0o000), ("a", 0o500)] {
        fs::set_permissions(tree.join(dir), fs::Permissions::from_mode(mode)).unwrap();
    }
    remove_tree(&tree).unwrap();
    assert!(fs::symlink_metadata(&tree).is_err(), "the tree is gone");
    assert!(sandbox.join("staging").is_dir(), "only the tree went");
    assert_eq!(fs::read(outside.join("sub/keep")).unwrap(), b"keep");
    let sub = fs::metadata(outside.join("sub")).unwrap();
    assert_eq!(
        sub.mode() & 0o7777,
        0o555,
        "nothing was chmod'ed through a link"
    );
}

#[test]
fn remove_tree_empties_read_only_dirs_without_root() {
    if rustix::process::geteuid().is_root() {
        // Root ignores modes, so the code that matters runs in a child as nobody.
        let sandbox = run_as_nobody("remove_tree_as_child");
        assert!(!sandbox.path().join("staging/usr").exists());
    } else {
        remove_read_only_tree(tempfile::tempdir().unwrap().path());
    }
}

#[test]
#[ignore = "run as nobody by remove_tree_empties_read_only_dirs_without_root"]
fn remove_tree_as_child() {
    remove_read_only_tree(&child_sandbox());
}

/// A blit without root: no owners are set, and read-only directories must still be
/// filled, which only works because they get their mode after their children.
fn blit_read_only_dirs() {
    let me = (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    let fixture = Fixture::new_in(&child_sandbox());
    let entries = vec![
        dir("ro", 0o555, me),
        file("ro/a", 0o444, me, b"read only a"),
        dir("ro/inner", 0o500, me),
        file("ro/inner/b", 0o400, me, b"read only b"),
        file("ro/inner/empty", 0o400, me, b""),
        symlink("ro/inner/link", "b", me),
        dir("ro/inner/deeper", 0o555, me),
        file("ro/inner/deeper/c", 0o444, me, b"read only a"),
        dir("sgid", 0o2775, me),
        file("sgid/x", 0o664, me, b"group data"),
        dir("sticky", 0o1777, me),
        special("fifo", 0o010000, 0o640, NodeKind::Fifo),
    ];
    let entries: Vec<_> = entries
        .into_iter()
        .map(|(path, mut node)| {
            (node.uid, node.gid) = me;
            (path, node)
        })
        .collect();
    fixture.add_assets(&assets_of(&entries, SAMPLE_BYTES));
    let root = fixture.tree(&entries);
    let options = BlitOptions::default();
    assert!(!options.set_owner, "only root sets owners");
    let q = fixture.db.read().unwrap();
    let stats = blit(&q, root, &fixture.store, &fixture.staging(), &options).unwrap();
    assert_eq!((stats.dirs, stats.files, stats.others), (5, 5, 1));
    check_tree(&fixture, &fixture.staging(), &entries);
    remove_tree(&fixture.staging()).unwrap();
    assert!(!fixture.staging().exists());
}

#[test]
fn blit_fills_read_only_dirs_without_root() {
    if rustix::process::geteuid().is_root() {
        run_as_nobody("blit_as_child");
    } else {
        blit_read_only_dirs();
    }
}

#[test]
#[ignore = "run as nobody by blit_fills_read_only_dirs_without_root"]
fn blit_as_child() {
    blit_read_only_dirs();
}

#[test]
fn remove_tree_removes_a_blitted_tree() {
    let fixture = Fixture::new();
    let outside = tempfile::tempdir().unwrap();
    let entries = sample_entries(outside.path());
    fixture.add_assets(&assets_of(&entries, SAMPLE_BYTES));
    let root = fixture.tree(&entries);
    fixture.blit(root, &fixture.staging()).unwrap();
    let tool = fixture.store.asset_path(AssetHash::of(SAMPLE_BYTES[0]));
    let links_before = fs::metadata(&tool).unwrap().nlink();
    remove_tree(&fixture.staging()).unwrap();
    assert!(!fixture.staging().exists());
    assert_eq!(fs::metadata(&tool).unwrap().nlink(), links_before - 1);
    assert!(outside.path().is_dir());
}
