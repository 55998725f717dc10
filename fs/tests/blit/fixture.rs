//! Builders and checks shared by the blit tests: a root with a real database and store,
//! trees written as directory objects from a list of paths, and a path-by-path comparison
//! of a blitted tree with the entries it came from.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::Cursor;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use mossfs_db::{Db, DirEntry, Node, NodeKind, TreeHash, WriteTxn, tree};
use mossfs_format::{
    AssetHash, EntryKind, FileType, LayoutEntry, Meta, RelPath, Writer, WriterOptions, layout_index,
};
use mossfs_fs::blit::{BlitError, BlitOptions, BlitStats, blit};
use mossfs_store::Store;
use tempfile::TempDir;

pub const S_IFMT: u32 = 0o170000;
pub const DIR: u32 = 0o040000;
pub const REG: u32 = 0o100000;
pub const LNK: u32 = 0o120000;

pub fn stones() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/testdata/stones"
    ))
}

/// A root with a database and a store, like `ROOT/.moss`.
pub struct Fixture {
    pub dir: TempDir,
    pub db: Db,
    pub store: Store,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::new_in(&std::env::temp_dir())
    }

    pub fn new_in(parent: &Path) -> Fixture {
        let dir = tempfile::tempdir_in(parent).unwrap();
        let moss = dir.path().join(".moss");
        let db = Db::open(&moss.join("db")).unwrap();
        let store = Store::open(&moss).unwrap();
        fs::create_dir_all(moss.join("root/staging")).unwrap();
        Fixture { dir, db, store }
    }

    /// Where a commit would blit.
    pub fn staging(&self) -> PathBuf {
        self.dir.path().join(".moss/root/staging/usr")
    }

    /// Puts `assets` into the store the real way: a stone, cached and ingested.
    pub fn add_assets(&self, assets: &[Vec<u8>]) {
        let mut bytes = HashMap::new();
        let mut order = Vec::new();
        let mut layout = Vec::new();
        for (i, asset) in assets.iter().enumerate() {
            let hash = AssetHash::of(asset);
            if bytes.insert(hash, asset.clone()).is_none() {
                order.push((hash, asset.len() as u64));
            }
            layout.push(LayoutEntry {
                uid: 0,
                gid: 0,
                mode: REG | 0o644,
                tag: 0,
                kind: EntryKind::Regular(hash),
                path: RelPath::new(format!("share/fixture/{i}")).unwrap(),
            });
        }
        let index = layout_index(order);
        let options = WriterOptions {
            level: 1,
            threads: 0,
        };
        let mut writer = Writer::new(Cursor::new(Vec::new()), FileType::Binary, options).unwrap();
        let meta = Meta {
            name: format!("fixture-{}", assets.len()),
            version: "1".into(),
            release: 1,
            build_release: 1,
            architecture: "x86_64".into(),
            ..Meta::default()
        };
        writer.add_meta(&meta.to_records()).unwrap();
        writer.add_layout(&layout).unwrap();
        writer.add_index(&index).unwrap();
        writer.add_content(&index, &bytes).unwrap();
        let stone = writer.finish().unwrap().into_inner();
        let path = self.dir.path().join("fixture.stone");
        fs::write(&path, stone).unwrap();
        let cached = self.store.cache_stone(&path).unwrap();
        self.store.ingest(&cached.id).unwrap();
    }

    /// Records `entries` as directory objects and returns the root's hash.
    pub fn tree(&self, entries: &[(String, Node)]) -> TreeHash {
        let mut root = Build::default();
        for (path, node) in entries {
            root.insert(path, node.clone());
        }
        let mut txn = self.db.write().unwrap();
        let hash = root.write(&mut txn);
        txn.commit().unwrap();
        hash
    }

    pub fn blit(&self, root: TreeHash, target: &Path) -> Result<BlitStats, BlitError> {
        let q = self.db.read().unwrap();
        blit(&q, root, &self.store, target, &BlitOptions::default())
    }
}

/// A directory being assembled from paths, with implicit parents.
#[derive(Default)]
pub struct Build {
    attrs: Option<(u32, u32, u32)>,
    entries: BTreeMap<Vec<u8>, Item>,
}

pub enum Item {
    Dir(Build),
    Leaf(Node),
}

impl Build {
    fn insert(&mut self, path: &str, node: Node) {
        let (parents, name) = match path.rsplit_once('/') {
            Some((parents, name)) => (parents.split('/').collect(), name),
            None => (Vec::new(), path),
        };
        let mut dir = self;
        for component in parents {
            dir = match dir
                .entries
                .entry(component.as_bytes().to_vec())
                .or_insert_with(|| Item::Dir(Build::default()))
            {
                Item::Dir(dir) => dir,
                Item::Leaf(_) => panic!("test tree: {path} lies under a non-directory"),
            };
        }
        let slot = dir.entries.entry(name.as_bytes().to_vec());
        match node.kind {
            NodeKind::Directory(_) => match slot.or_insert_with(|| Item::Dir(Build::default())) {
                Item::Dir(dir) => dir.attrs = Some((node.mode, node.uid, node.gid)),
                Item::Leaf(_) => panic!("test tree: {path} twice"),
            },
            _ => {
                slot.or_insert(Item::Leaf(node));
            }
        }
    }

    fn write(&self, txn: &mut WriteTxn<'_>) -> TreeHash {
        let entries: Vec<DirEntry> = self
            .entries
            .iter()
            .map(|(name, item)| DirEntry {
                name: name.clone(),
                node: match item {
                    Item::Leaf(node) => node.clone(),
                    Item::Dir(dir) => {
                        let (mode, uid, gid) = dir.attrs.unwrap_or((DIR | 0o755, 0, 0));
                        Node {
                            mode,
                            uid,
                            gid,
                            owner: None,
                            kind: NodeKind::Directory(dir.write(txn)),
                        }
                    }
                },
            })
            .collect();
        txn.put_tree(&tree::encode(&entries)).unwrap()
    }
}

pub fn node(mode: u32, uid: u32, gid: u32, kind: NodeKind) -> Node {
    Node {
        mode,
        uid,
        gid,
        owner: None,
        kind,
    }
}

pub fn file(path: &str, mode: u32, owner: (u32, u32), bytes: &[u8]) -> (String, Node) {
    let kind = NodeKind::Regular {
        asset: AssetHash::of(bytes),
        size: bytes.len() as u64,
    };
    (path.into(), node(REG | mode, owner.0, owner.1, kind))
}

pub fn symlink(path: &str, text: &str, owner: (u32, u32)) -> (String, Node) {
    let kind = NodeKind::Symlink(text.as_bytes().to_vec());
    (path.into(), node(LNK | 0o777, owner.0, owner.1, kind))
}

pub fn dir(path: &str, mode: u32, owner: (u32, u32)) -> (String, Node) {
    let kind = NodeKind::Directory(TreeHash(0));
    (path.into(), node(DIR | mode, owner.0, owner.1, kind))
}

pub fn special(path: &str, type_bits: u32, mode: u32, kind: NodeKind) -> (String, Node) {
    (path.into(), node(type_bits | mode, 0, 0, kind))
}

/// Every path below `root`, relative, without following symlinks.
pub fn walk(root: &Path) -> BTreeSet<String> {
    fn go(root: &Path, rel: &str, out: &mut BTreeSet<String>) {
        for entry in fs::read_dir(root.join(rel)).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            out.insert(path.clone());
            if entry.file_type().unwrap().is_dir() {
                go(root, &path, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    go(root, "", &mut out);
    out
}

/// Compares `target` with `entries` path by path: the exact set of paths, and for each
/// its type, mode, owner, link text, bytes, and that files are links of the store's assets.
pub fn check_tree(fixture: &Fixture, target: &Path, entries: &[(String, Node)]) {
    let mut expected: BTreeMap<String, Node> = BTreeMap::new();
    for (path, node) in entries {
        let mut parent = path.as_str();
        while let Some((up, _)) = parent.rsplit_once('/') {
            expected
                .entry(up.to_owned())
                .or_insert_with(node_for_implicit_dir);
            parent = up;
        }
        expected.insert(path.clone(), node.clone());
    }
    let found = walk(target);
    let wanted: BTreeSet<String> = expected.keys().cloned().collect();
    assert_eq!(found, wanted, "the blit created exactly the tree's paths");

    let root = fs::symlink_metadata(target).unwrap();
    assert_eq!(
        root.mode(),
        DIR | 0o755,
        "the root is a plain 0755 directory"
    );
    // Owned by root when the blit may set owners, by whoever ran it otherwise.
    let creator = (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    let root_owner = if creator.0 == 0 { (0, 0) } else { creator };
    assert_eq!((root.uid(), root.gid()), root_owner);

    for (path, node) in &expected {
        let full = target.join(path);
        let meta = fs::symlink_metadata(&full).unwrap();
        assert_eq!(meta.mode() & S_IFMT, node.mode & S_IFMT, "type of {path}");
        if meta.mode() & S_IFMT != LNK {
            assert_eq!(meta.mode() & 0o7777, node.mode & 0o7777, "mode of {path}");
        }
        assert_eq!(
            (meta.uid(), meta.gid()),
            (node.uid, node.gid),
            "owner of {path}"
        );
        match &node.kind {
            NodeKind::Regular { asset, size } => {
                let bytes = fs::read(&full).unwrap();
                assert_eq!(bytes.len() as u64, *size, "size of {path}");
                assert_eq!(AssetHash::of(&bytes), *asset, "bytes of {path}");
                if *size == 0 {
                    assert_eq!(meta.nlink(), 1, "{path}: the empty file is fresh");
                } else if !Store::may_link(node.mode) {
                    assert_eq!(meta.nlink(), 1, "{path}: others may write it, so a copy");
                } else {
                    let source = fixture
                        .store
                        .linkable(*asset, node.mode, node.uid, node.gid)
                        .unwrap();
                    let source = fs::metadata(source).unwrap();
                    assert_eq!(meta.ino(), source.ino(), "{path} is a link of its asset");
                }
            }
            NodeKind::Symlink(text) => {
                let link = fs::read_link(&full).unwrap();
                assert_eq!(link.as_os_str().as_bytes(), &text[..], "text of {path}");
            }
            NodeKind::Directory(_) => assert!(meta.is_dir()),
            NodeKind::CharDevice => {
                assert!(meta.file_type().is_char_device());
                assert_eq!(meta.rdev(), 0);
            }
            NodeKind::BlockDevice => assert!(meta.file_type().is_block_device()),
            NodeKind::Fifo => assert!(meta.file_type().is_fifo()),
            NodeKind::Socket => assert!(meta.file_type().is_socket()),
        }
    }
}

pub fn node_for_implicit_dir() -> Node {
    node(DIR | 0o755, 0, 0, NodeKind::Directory(TreeHash(0)))
}

pub fn sample_entries(outside: &Path) -> Vec<(String, Node)> {
    let root = (0, 0);
    let user = (1000, 100);
    vec![
        dir("bin", 0o755, root),
        file("bin/tool", 0o755, root, b"#!/bin/sh\necho tool\n"),
        file("bin/su-ish", 0o4755, root, b"setuid binary"),
        file("bin/sg-ish", 0o2755, (0, 5), b"setgid binary"),
        symlink("bin/tool2", "tool", root),
        // Same bytes as bin/tool with another mode and owner: a store variant.
        file("share/doc/tool.txt", 0o644, root, b"#!/bin/sh\necho tool\n"),
        file("share/doc/owned", 0o640, user, b"#!/bin/sh\necho tool\n"),
        file("share/empty", 0o644, root, b""),
        file("share/empty-owned", 0o600, user, b""),
        file("share/doc/empty-again", 0o644, root, b""),
        symlink("share/owned-link", "../bin/tool", user),
        symlink("share/outside", &outside.to_string_lossy(), root),
        dir("share/sgid", 0o2775, (0, 50)),
        file("share/sgid/inside", 0o664, (0, 50), b"group data"),
        dir("ro", 0o555, root),
        file("ro/a", 0o444, root, b"read only a"),
        dir("ro/inner", 0o500, user),
        file("ro/inner/b", 0o400, user, b"read only b"),
        dir("ro/inner/deeper", 0o555, root),
        dir("private", 0o700, user),
        dir("sticky", 0o1777, root),
        special("dev/null-ish", 0o020000, 0o620, NodeKind::CharDevice),
        special("dev/blk", 0o060000, 0o660, NodeKind::BlockDevice),
        special("dev/fifo", 0o010000, 0o600, NodeKind::Fifo),
        special("dev/sock", 0o140000, 0o755, NodeKind::Socket),
    ]
}

pub fn assets_of(entries: &[(String, Node)], all: &[&[u8]]) -> Vec<Vec<u8>> {
    let wanted: BTreeSet<AssetHash> = entries
        .iter()
        .filter_map(|(_, node)| match node.kind {
            NodeKind::Regular { asset, size } if size > 0 => Some(asset),
            _ => None,
        })
        .collect();
    all.iter()
        .filter(|bytes| wanted.contains(&AssetHash::of(bytes)))
        .map(|bytes| bytes.to_vec())
        .collect()
}

pub const SAMPLE_BYTES: &[&[u8]] = &[
    b"#!/bin/sh\necho tool\n",
    b"setuid binary",
    b"setgid binary",
    b"group data",
    b"read only a",
    b"read only b",
];

/// Set in the child that [`remove_tree_empties_read_only_dirs_without_root`] runs as an
/// unprivileged user: the sandbox to work in.
pub const SANDBOX_VAR: &str = "MOSSFS_BLIT_TEST_SANDBOX";
pub const NOBODY: u32 = 65534;

/// Runs the ignored test `child` of this binary as nobody, with a sandbox nobody owns,
/// and returns the sandbox for the caller to inspect.
pub fn run_as_nobody(child: &str) -> TempDir {
    let sandbox = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(sandbox.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", child, "--ignored", "--nocapture"])
        .env(SANDBOX_VAR, sandbox.path())
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && report.contains("1 passed"),
        "{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    sandbox
}

pub fn child_sandbox() -> PathBuf {
    let sandbox = std::env::var_os(SANDBOX_VAR).expect("run by the parent test");
    assert!(!rustix::process::geteuid().is_root());
    PathBuf::from(sandbox)
}
