//! The test root and what the mount tests share: a root built the way the engine builds
//! one (stones packed with the real writer, cached, recorded; trees built by
//! `mossfs_fs::tree::build`), sample states, tree snapshots, and the FUSE requirement.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::BufReader;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use mossfs_db::{Db, PackageRecord, Query, Selection, State, StateId, Status};
use mossfs_format::{Meta, PackageId, Reader, RelPath};
use mossfs_fs::blit::{BlitOptions, blit};
use mossfs_fs::fuse::{self, FsOptions, MossFs, Mount, MountError, ReadMode};
pub use mossfs_integration::corpus::noise;
use mossfs_integration::corpus::{FAST, SourceEntry, pack_entries};
use mossfs_store::Store;
use tempfile::TempDir;

pub const EROFS: i32 = 30;
pub const ENODATA: i32 = 61;
pub const EOPNOTSUPP: i32 = 95;
pub const ENOTCONN: i32 = 107;

/// A root with a database and a store, like `ROOT/.moss`.
pub struct Root {
    dir: TempDir,
    pub db: Db,
    pub store: Store,
    mounts: usize,
}

impl Root {
    pub fn new() -> Root {
        let dir = tempfile::tempdir().unwrap();
        let moss = dir.path().join(".moss");
        Root {
            db: Db::open(&moss.join("db")).unwrap(),
            store: Store::open(&moss).unwrap(),
            dir,
            mounts: 0,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Packs `entries` as package `name`, caches the stone and records it; not unpacked.
    pub fn package(&self, name: &str, entries: Vec<SourceEntry>) -> PackageId {
        let out = self.path().join("stones");
        fs::create_dir_all(&out).unwrap();
        let meta = Meta {
            name: name.into(),
            version: "1".into(),
            release: 1,
            build_release: 1,
            architecture: "x86_64".into(),
            ..Meta::default()
        };
        self.add_stone(&pack_entries(&out, &meta, entries, FAST).unwrap())
    }

    pub fn add_stone(&self, path: &Path) -> PackageId {
        let cached = self.store.cache_stone(path).unwrap();
        let mut reader = Reader::new(BufReader::new(File::open(path).unwrap())).unwrap();
        let stone = reader.read_metadata().unwrap();
        let record = PackageRecord {
            id: cached.id,
            meta: stone.typed_meta().unwrap(),
            stone_size: cached.size,
            unpacked: false,
        };
        let mut txn = self.db.write().unwrap();
        txn.put_package(&record, &stone.layout, &stone.index)
            .unwrap();
        txn.commit().unwrap();
        cached.id
    }

    pub fn unpack(&self, packages: &[PackageId]) {
        self.store.ingest_many(packages).unwrap();
    }

    /// Records a candidate state of `packages`, in priority order, built on the active
    /// state as `install --stage` records one (only then can it be committed).
    pub fn state(&self, packages: &[PackageId]) -> StateId {
        let mut txn = self.db.write().unwrap();
        let parent = txn.active().unwrap();
        let built = mossfs_fs::tree::build(&mut txn, packages).unwrap();
        let id = txn.next_state_id().unwrap();
        txn.put_state(&State {
            id,
            created: 1_700_000_000,
            summary: "test".into(),
            status: Status::Candidate,
            parent,
            selections: packages
                .iter()
                .map(|&package| Selection {
                    package,
                    explicit: true,
                    reason: mossfs_db::Reason::Unknown,
                })
                .collect(),
            root: built.root,
            entries: built.entries,
            conflicts: built.conflicts,
            generated: Vec::new(),
        })
        .unwrap();
        txn.commit().unwrap();
        id
    }

    pub fn entries(&self, state: StateId) -> u64 {
        self.db.read().unwrap().state(state).unwrap().entries
    }

    /// An empty directory to mount on.
    pub fn mountpoint(&mut self) -> PathBuf {
        self.mounts += 1;
        let path = self.path().join(format!("mnt{}", self.mounts));
        fs::create_dir(&path).unwrap();
        path
    }

    pub fn server(&self, state: StateId, debug_view: bool) -> MossFs {
        self.server_with(state, debug_view, false)
    }

    /// A server whose failures go to stderr; `store_reads` turns passthrough off.
    pub fn server_with(&self, state: StateId, debug_view: bool, store_reads: bool) -> MossFs {
        let store = Store::open(&self.path().join(".moss")).unwrap();
        let options = FsOptions {
            debug_view,
            log: Some(std::sync::Arc::new(|e| eprintln!("mossfs: {e}"))),
            store_reads,
            ..FsOptions::default()
        };
        MossFs::new(&self.db, store, state, options).unwrap()
    }

    /// Mounts `state`, or `None` when FUSE is unavailable outside CI.
    pub fn mount(&mut self, state: StateId, debug_view: bool) -> Option<Mount> {
        self.mount_with(state, debug_view, false)
    }

    /// [`Root::mount`], choosing how reads are served.
    pub fn mount_with(
        &mut self,
        state: StateId,
        debug_view: bool,
        store_reads: bool,
    ) -> Option<Mount> {
        let path = self.mountpoint();
        match fuse::spawn(self.server_with(state, debug_view, store_reads), &path) {
            Ok(mount) => {
                if store_reads {
                    assert_eq!(mount.read_mode(), ReadMode::Store);
                }
                Some(mount)
            }
            Err(error) => no_fuse(error),
        }
    }

    pub fn blit(&self, state: StateId) -> PathBuf {
        let target = self.path().join(format!("blit{}", state.0));
        if target.exists() {
            return target;
        }
        let txn = self.db.read().unwrap();
        let root = txn.state(state).unwrap().root;
        blit(&txn, root, &self.store, &target, &BlitOptions::default()).unwrap();
        target
    }
}

/// Fails under CI, skips elsewhere.
pub fn no_fuse<T>(error: MountError) -> Option<T> {
    let unavailable = matches!(error, MountError::NoFuse { .. } | MountError::Mount { .. });
    if !unavailable || std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "cannot mount: {error} ({:?})",
            std::error::Error::source(&error)
        );
    }
    eprintln!("skipping: FUSE is not usable here: {error}");
    None
}

pub fn path(text: &str) -> RelPath {
    RelPath::new(text).unwrap()
}

pub fn file(at: &str, bytes: impl Into<Vec<u8>>, mode: u32) -> SourceEntry {
    SourceEntry::bytes(path(at), bytes.into(), mode)
}

pub fn owned(mut entry: SourceEntry, uid: u32, gid: u32) -> SourceEntry {
    entry.uid = uid;
    entry.gid = gid;
    entry
}

/// Everything a blit and a mount must agree on, for one path.
#[derive(Debug, PartialEq, Eq)]
pub struct Seen {
    mode: u32,
    uid: u32,
    gid: u32,
    size: Option<u64>,
    link: Option<PathBuf>,
    bytes: Option<Vec<u8>>,
}

pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Seen> {
    pub fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Seen>) {
        let full = root.join(rel);
        let meta = fs::symlink_metadata(&full).unwrap();
        let kind = meta.file_type();
        out.insert(
            rel.to_owned(),
            Seen {
                mode: meta.mode(),
                uid: meta.uid(),
                gid: meta.gid(),
                size: (!kind.is_dir()).then_some(meta.len()),
                link: kind.is_symlink().then(|| fs::read_link(&full).unwrap()),
                bytes: kind.is_file().then(|| fs::read(&full).unwrap()),
            },
        );
        if kind.is_dir() {
            for entry in fs::read_dir(&full).unwrap() {
                walk(root, &rel.join(entry.unwrap().file_name()), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

pub fn assert_same_trees(mounted: &Path, blitted: &Path) {
    let (a, b) = (snapshot(mounted), snapshot(blitted));
    for (path, seen) in &b {
        assert_eq!(
            a.get(path),
            Some(seen),
            "{} differs from the blit",
            path.display()
        );
    }
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
}

pub fn sample_stone(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/stones")
        .join(name)
}

/// Files of every kind and mode, and the real bash-completion stone.
pub fn files_state(root: &Root) -> StateId {
    let tools = root.package(
        "tools",
        vec![
            file("bin/tool", "#!/bin/sh\necho tool\n", 0o755),
            file("bin/suid", "setuid", 0o4755),
            owned(file("share/tools/data.txt", "data\n", 0o640), 1000, 100),
            file("share/tools/empty", "", 0o600),
            file("share/tools/big.bin", noise(1, 3 << 20), 0o644),
            file("share/tools/with space & ünïcode", "odd name", 0o644),
            SourceEntry::symlink(path("share/tools/link"), "data.txt"),
            SourceEntry::symlink(path("share/tools/abs"), "/etc/passwd"),
            SourceEntry::symlink(path("share/tools/dangling"), "nowhere"),
            owned(
                SourceEntry::directory(path("share/tools/private"), 0o700),
                5,
                6,
            ),
            SourceEntry::directory(path("share/tools/locked"), 0o750),
            file("share/tools/locked/inside", "inside", 0o400),
        ],
    );
    let bash = root.add_stone(&sample_stone("bash-completion-2.11-1-1-x86_64.stone"));
    root.unpack(&[tools, bash]);
    root.state(&[tools, bash])
}

/// `lib64 -> lib` and `share/alt -> real`, with files shipped through both links.
pub fn symlinked_dirs_state(root: &Root) -> StateId {
    let base = root.package(
        "base",
        vec![
            SourceEntry::symlink(path("lib64"), "lib"),
            file("lib/liba.so", "liba", 0o755),
            file("share/real/x", "x", 0o644),
            SourceEntry::symlink(path("share/alt"), "real"),
        ],
    );
    let extra = root.package(
        "extra",
        vec![
            file("lib64/libb.so", "libb", 0o755),
            file("share/alt/y", "y", 0o644),
        ],
    );
    root.unpack(&[base, extra]);
    root.state(&[base, extra])
}

/// `(name, cookie of the next entry)` pairs from `getdents64`, starting at `from`.
pub fn raw_listing(dir: &Path, from: Option<u64>) -> Vec<(String, u64)> {
    let fd = rustix::fs::open(
        dir,
        rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    if let Some(cookie) = from {
        rustix::fs::seek(&fd, rustix::fs::SeekFrom::Start(cookie)).unwrap();
    }
    let mut buf = vec![std::mem::MaybeUninit::uninit(); 4096];
    let mut raw = rustix::fs::RawDir::new(&fd, &mut buf);
    let mut out = Vec::new();
    while let Some(entry) = raw.next() {
        let entry = entry.unwrap();
        out.push((
            entry.file_name().to_string_lossy().into_owned(),
            entry.next_entry_cookie(),
        ));
    }
    out
}

/// Whether mounting is impossible here (and allowed to be: outside CI). Tried once per
/// test process with a real mount of a one-file state, since `/dev/fuse` may open where
/// `mount(2)` is refused.
pub fn no_mount_here() -> bool {
    static PROBE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let probe = PROBE.get_or_init(|| {
        let mut root = Root::new();
        let package = root.package("probe", vec![file("probe", "probe", 0o644)]);
        let state = root.state(&[package]);
        let mountpoint = root.mountpoint();
        match fuse::spawn(root.server(state, false), &mountpoint) {
            Ok(mount) => mount.unmount().map_err(|e| e.to_string()),
            Err(error @ (MountError::NoFuse { .. } | MountError::Mount { .. })) => {
                Err(error.to_string())
            }
            Err(error) => panic!("the probe mount failed: {error:?}"),
        }
    });
    match probe {
        Ok(()) => false,
        Err(error) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("FUSE is required under CI: {error}")
        }
        Err(error) => {
            eprintln!("skipping: FUSE is not usable here: {error}");
            true
        }
    }
}
