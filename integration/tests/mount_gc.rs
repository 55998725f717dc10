//! A mount stays correct while other states are committed and `mossfs gc` runs (issue 4,
//! section 7): an asset or cached stone that any recorded state uses is never collected,
//! so a mounted state, active or candidate, keeps showing every byte its packages shipped.
//!
//! Everything runs the real binary on a root in a temp dir: `install`, `remove`, `state
//! remove`, `commit`, `gc`, and `mossfs mount` with its server in the background. What a
//! mount shows is checked against the stones themselves, decoded with the format reader:
//! every path, type, mode, owner, link text and byte, and nothing else but the directories
//! the paths imply. FUSE is required: under `CI=true` a test that cannot mount fails;
//! elsewhere it prints why and passes. Waits poll the mount table or a counter until a
//! deadline, never sleep.

#[path = "mount/fixture.rs"]
#[allow(dead_code)]
mod fixture;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mossfs_db::{Db, Query};
use mossfs_format::{AssetHash, EntryKind, LayoutEntry, Meta, PackageId, Reader};
use mossfs_fs::fuse;
use mossfs_integration::corpus::{FAST, SourceEntry, pack_entries};
use mossfs_store::Store;
use tempfile::TempDir;

use fixture::{file, no_mount_here, noise, owned, path};

const DEADLINE: Duration = Duration::from_secs(30);

#[test]
fn a_mounted_state_reads_correctly_while_another_is_committed_and_gc_runs() {
    if no_mount_here() {
        return;
    }
    let root = TestRoot::new();
    let (a, b, x) = (root.stone("a"), root.stone("b"), root.stone("x"));
    root.ok(&["install".as_ref(), a.as_os_str(), b.as_os_str()]);
    let (mounted, line) = root.mount(&[]);
    assert_eq!(
        line,
        format!("mounted state 1 (active) at {}", mounted.at.display())
    );
    let shipped = Arc::new(Shipped::by(&[&a, &b]));
    let usr = mounted.at.join("usr");
    assert_shows(&usr, &shipped);

    // A reader goes on reading every file of state 1 while the root moves on.
    let stop = Arc::new(AtomicBool::new(false));
    let passes = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (usr, shipped) = (usr.clone(), Arc::clone(&shipped));
        let (stop, passes) = (Arc::clone(&stop), Arc::clone(&passes));
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                assert_bytes(&usr, &shipped);
                passes.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    // State 2 drops package b; x lives only in state 3, which is then removed, so gc has
    // exactly one package, one asset and one stone to collect.
    root.ok(&["remove".as_ref(), "b".as_ref()]);
    root.ok(&["install".as_ref(), x.as_os_str()]);
    root.ok(&["remove".as_ref(), "x".as_ref()]);
    root.ok(&["state".as_ref(), "remove".as_ref(), "3".as_ref()]);
    let gc = root.ok(&["gc".as_ref()]);
    assert!(gc.starts_with("gc: 1 packages and "), "{gc}");
    assert!(gc.contains(", 1 assets and 1 stones removed, "), "{gc}");
    // A whole pass that began after gc ended.
    let target = passes.load(Ordering::SeqCst) + 2;
    let deadline = Instant::now() + DEADLINE;
    while passes.load(Ordering::SeqCst) < target && !reader.is_finished() {
        assert!(Instant::now() < deadline, "the reader stalled");
        std::thread::yield_now();
    }
    stop.store(true, Ordering::SeqCst);
    reader.join().expect("the reader saw every byte of state 1");

    // What state 1 uses is all still there; only x's asset and stone are gone.
    let ids = root.package_ids();
    assert_eq!(ids.keys().collect::<Vec<_>>(), ["a", "b"]);
    let store = root.store();
    let shipped_x = Shipped::by(&[&x]);
    for hash in shipped.assets.keys() {
        assert!(
            store.has_asset(*hash),
            "asset {hash} of state 1 was collected"
        );
    }
    for hash in shipped_x.assets.keys() {
        assert!(!store.has_asset(*hash), "x's asset {hash} was kept");
    }
    let cached: BTreeSet<PackageId> = store.list_cached().unwrap().into_iter().collect();
    assert_eq!(cached, ids.values().copied().collect());

    assert_shows(&usr, &shipped);
    // A fresh mount has nothing cached in the kernel: every byte comes from the store.
    let (again, line) = root.mount(&["--state".as_ref(), "1".as_ref()]);
    assert_eq!(
        line,
        format!("mounted state 1 (archived) at {}", again.at.display())
    );
    assert_shows(&again.at.join("usr"), &shipped);
    again.unmount();
    mounted.unmount();
}

#[test]
fn a_mounted_candidate_survives_another_commit_and_gc_and_unpacks_on_first_read() {
    if no_mount_here() {
        return;
    }
    let root = TestRoot::new();
    let (a, c, d) = (root.stone("a"), root.stone("c"), root.stone("d"));
    root.ok(&["install".as_ref(), a.as_os_str()]);
    root.ok(&["install".as_ref(), "--stage".as_ref(), c.as_os_str()]);
    let (mounted, line) = root.mount(&["--candidate".as_ref()]);
    assert_eq!(
        line,
        format!("mounted state 2 (candidate) at {}", mounted.at.display())
    );
    let shipped = Shipped::by(&[&a, &c]);
    let staged_only = Shipped::by(&[&c]);

    // Another state is committed, then gc runs, before anything of c was read.
    root.ok(&["install".as_ref(), d.as_os_str()]);
    let gc = root.ok(&["gc".as_ref()]);
    assert!(gc.starts_with("gc: 0 packages and "), "{gc}");
    assert!(gc.contains(", 0 assets and 0 stones removed, "), "{gc}");
    let ids = root.package_ids();
    assert_eq!(ids.keys().collect::<Vec<_>>(), ["a", "c", "d"]);
    let store = root.store();
    assert!(
        store.is_cached(&ids["c"]),
        "the candidate's stone was collected"
    );
    for hash in staged_only.assets.keys() {
        assert!(!store.has_asset(*hash), "c was unpacked before it was read");
    }

    // The first reads unpack c from its cached stone.
    assert_shows(&mounted.at.join("usr"), &shipped);
    for hash in staged_only.assets.keys() {
        assert!(store.has_asset(*hash), "reading c did not unpack {hash}");
    }

    // The mounted candidate itself can be committed, once the state it was staged on is
    // active again (committed on top of d, it would silently drop d); the mount does not
    // notice.
    root.ok(&["state".as_ref(), "activate".as_ref(), "1".as_ref()]);
    let committed = root.ok(&["commit".as_ref(), "2".as_ref()]);
    assert!(committed.starts_with("state 2 active"), "{committed}");
    assert_shows(&mounted.at.join("usr"), &shipped);
    assert_eq!(
        fs::read(root.path().join("usr/share/c/big")).unwrap(),
        noise(16, 500_000)
    );
    mounted.unmount();
}

/// A root in a temp dir, the stones of this file's packages, and the real binary.
struct TestRoot {
    dir: TempDir,
}

impl TestRoot {
    fn new() -> TestRoot {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("root")).unwrap();
        fs::create_dir(dir.path().join("stones")).unwrap();
        TestRoot { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Packs package `name` (see [`entries`]) and returns its stone.
    fn stone(&self, name: &str) -> PathBuf {
        let meta = Meta {
            name: name.into(),
            version: "1".into(),
            release: 1,
            build_release: 1,
            architecture: "x86_64".into(),
            ..Meta::default()
        };
        pack_entries(&self.dir.path().join("stones"), &meta, entries(name), FAST).unwrap()
    }

    /// Runs `mossfs ARGS --root ROOT`, asserts success, returns stdout.
    fn ok(&self, args: &[&OsStr]) -> String {
        let output = mossfs_integration::mossfs()
            .args(args)
            .arg("--root")
            .arg(self.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "mossfs {args:?}: {stdout}{stderr}");
        stdout
    }

    /// `mossfs mount ARGS` on a fresh mount point; returns the guard and the first line.
    fn mount(&self, args: &[&OsStr]) -> (Mounted, String) {
        let at = tempfile::tempdir_in(self.dir.path()).unwrap().keep();
        let mut command = vec!["mount".as_ref()];
        command.extend_from_slice(args);
        command.push(at.as_os_str());
        let output = mossfs_integration::mossfs()
            .args(&command)
            .arg("--root")
            .arg(self.path())
            .output()
            .unwrap();
        // The guard comes first, so that even a half-made mount is undone.
        let mut mounted = Mounted { at, pid: None };
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "mossfs mount: {stdout}{stderr}");
        mounted.pid = stdout
            .lines()
            .find_map(|l| l.strip_prefix("server: pid "))
            .and_then(|rest| rest.split(',').next()?.parse().ok());
        assert!(mounted.pid.is_some(), "no server pid in {stdout}");
        // `mossfs mount` returns once the mount is ready; the table must already show it.
        let entry = fuse::find_mount(&mounted.at).unwrap();
        assert!(
            entry.is_some_and(|e| e.is_mossfs()),
            "not mounted: {stdout}"
        );
        let first = stdout.lines().next().unwrap_or_default().to_owned();
        (mounted, first)
    }

    /// Package ids by name, from the database.
    fn package_ids(&self) -> BTreeMap<String, PackageId> {
        let db = Db::open(&self.path().join(".moss/db")).unwrap();
        let packages = db.read().unwrap().packages().unwrap();
        packages.into_iter().map(|p| (p.meta.name, p.id)).collect()
    }

    fn store(&self) -> Store {
        Store::open(&self.path().join(".moss")).unwrap()
    }
}

/// What each package ships: files of several sizes, modes and owners, symlinks, an empty
/// file and directory, and in `a` and `b` the same bytes at two paths.
fn entries(name: &str) -> Vec<SourceEntry> {
    let common = "shared by a and b\n";
    match name {
        "a" => vec![
            file("bin/a", noise(1, 70_000), 0o755),
            file("lib/liba.so.1", noise(2, 300_000), 0o644),
            SourceEntry::symlink(path("lib/liba.so"), "liba.so.1"),
            file("share/a/common", common, 0o644),
            owned(file("share/a/owned", "owned\n", 0o640), 1000, 100),
            file("share/a/empty", "", 0o644),
            owned(SourceEntry::directory(path("share/a/private"), 0o700), 5, 6),
        ],
        "b" => vec![
            file("bin/b", noise(3, 120_000), 0o4755),
            file("share/b/data", noise(4, 2 << 20), 0o644),
            file("share/b/common", common, 0o644),
            SourceEntry::symlink(path("share/b/to-a"), "../a/common"),
        ],
        "c" => vec![
            file("bin/c", noise(15, 10_000), 0o755),
            file("share/c/big", noise(16, 500_000), 0o644),
            SourceEntry::symlink(path("share/c/link"), "big"),
        ],
        "d" => vec![file("share/d/file", noise(20, 1000), 0o644)],
        "x" => vec![file("share/x/only", noise(30, 50_000), 0o644)],
        other => panic!("no package {other}"),
    }
}

/// A mount made by `mossfs mount`. [`Mounted::unmount`] checks that it goes away; a drop
/// (a failed test) still detaches it and waits for the server.
struct Mounted {
    at: PathBuf,
    pid: Option<u32>,
}

impl Mounted {
    /// `mossfs umount`, then the mount table and the server are polled until both are gone.
    fn unmount(mut self) {
        let output = mossfs_integration::mossfs()
            .arg("umount")
            .arg(&self.at)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let deadline = Instant::now() + DEADLINE;
        while fuse::find_mount(&self.at).unwrap().is_some() {
            assert!(
                Instant::now() < deadline,
                "{} is still mounted",
                self.at.display()
            );
            std::thread::yield_now();
        }
        if let Some(pid) = self.pid.take() {
            while !gone(pid) {
                assert!(Instant::now() < deadline, "server {pid} is still running");
                std::thread::yield_now();
            }
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if fuse::find_mount(&self.at).is_ok_and(|m| m.is_some()) {
            let _ = fuse::unmount(&self.at);
        }
        if let Some(pid) = self.pid {
            let deadline = Instant::now() + DEADLINE;
            while !gone(pid) && Instant::now() < deadline {
                std::thread::yield_now();
            }
        }
    }
}

/// Whether a process is gone, or a zombie nobody reaped yet.
fn gone(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// What some stones put in `/usr`, decoded from the stones: every layout entry by path,
/// and every asset's bytes by hash.
struct Shipped {
    entries: BTreeMap<PathBuf, LayoutEntry>,
    assets: HashMap<AssetHash, Vec<u8>>,
}

impl Shipped {
    fn by(stones: &[&Path]) -> Shipped {
        let mut shipped = Shipped {
            entries: BTreeMap::new(),
            assets: HashMap::new(),
        };
        for stone in stones {
            let mut reader = Reader::new(BufReader::new(File::open(stone).unwrap())).unwrap();
            let decoded = reader.read_metadata().unwrap();
            for entry in &decoded.layout {
                let at = PathBuf::from(OsStr::from_bytes(entry.path.as_bytes()));
                assert!(shipped.entries.insert(at, entry.clone()).is_none());
            }
            if let Some(mut content) = reader.content(&decoded).unwrap() {
                while let Some(mut asset) = content.next_asset().unwrap() {
                    let mut bytes = Vec::new();
                    asset.read_to_end(&mut bytes).unwrap();
                    shipped.assets.insert(asset.entry().digest, bytes);
                    asset.finish().unwrap();
                }
                content.finish().unwrap();
            }
        }
        shipped
    }

    /// The bytes of a regular file's asset.
    fn bytes(&self, hash: AssetHash) -> &[u8] {
        match self.assets.get(&hash) {
            Some(bytes) => bytes,
            None if hash == AssetHash::EMPTY => &[],
            None => panic!("no asset {hash} in the stones"),
        }
    }
}

/// Asserts that `usr` shows exactly what was shipped: each entry's type, mode, owner, link
/// text and bytes, and besides them only the directories their paths imply.
fn assert_shows(usr: &Path, shipped: &Shipped) {
    let implied: BTreeSet<&Path> = shipped
        .entries
        .keys()
        .flat_map(|p| p.ancestors().skip(1))
        .collect();
    let mut seen = BTreeSet::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(usr.join(&dir)).unwrap() {
            let rel = dir.join(entry.unwrap().file_name());
            let meta = fs::symlink_metadata(usr.join(&rel)).unwrap();
            match shipped.entries.get(&rel) {
                Some(expected) => {
                    assert_eq!(
                        (meta.mode(), meta.uid(), meta.gid()),
                        (expected.mode, expected.uid, expected.gid),
                        "{}",
                        rel.display()
                    );
                    assert_entry(usr, &rel, &expected.kind, shipped);
                }
                None => assert!(
                    meta.is_dir() && implied.contains(rel.as_path()),
                    "{} was never shipped",
                    rel.display()
                ),
            }
            if meta.is_dir() {
                stack.push(rel.clone());
            }
            seen.insert(rel);
        }
    }
    let missing: Vec<_> = shipped
        .entries
        .keys()
        .filter(|p| !seen.contains(*p))
        .collect();
    assert!(missing.is_empty(), "not shown: {missing:?}");
}

/// Reads every shipped file and link through `usr` and compares it with the stones.
fn assert_bytes(usr: &Path, shipped: &Shipped) {
    for (rel, entry) in &shipped.entries {
        assert_entry(usr, rel, &entry.kind, shipped);
    }
}

fn assert_entry(usr: &Path, rel: &Path, kind: &EntryKind, shipped: &Shipped) {
    let full = usr.join(rel);
    match kind {
        EntryKind::Regular(hash) => {
            let bytes = fs::read(&full).unwrap_or_else(|e| panic!("{}: {e}", rel.display()));
            assert!(bytes == shipped.bytes(*hash), "{} differs", rel.display());
        }
        EntryKind::Symlink(text) => {
            let target = fs::read_link(&full).unwrap();
            assert_eq!(target.into_os_string(), OsString::from_vec(text.clone()));
        }
        EntryKind::Directory => assert!(fs::symlink_metadata(&full).unwrap().is_dir()),
        other => panic!("{}: no {other:?} in these packages", rel.display()),
    }
}
