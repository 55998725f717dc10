//! What the transaction, crash and hostile-stone tests share: a fresh root per test that
//! runs the real binary, small stones made on the spot, and snapshots of a tree to compare
//! before and after.
//!
//! Every root is a `TempDir`; nothing here touches the machine's `/usr`. A snapshot records
//! type, permission bits, owner, link text and bytes of every entry, so two snapshots are
//! equal only when a person could not tell the trees apart.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

pub mod forge;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mossfs_format::{AssetHash, EntryKind, LayoutEntry, Meta, Reader, RelPath, Relation};
use mossfs_integration::corpus::{FAST, SourceEntry, pack_entries};
use mossfs_integration::mossfs;
use tempfile::TempDir;

/// Upstream's sample stones.
pub const STONES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/testdata/stones");
/// 745 entries, made by upstream's older writer.
pub const BASH: &str = "bash-completion-2.11-1-1-x86_64.stone";
/// Declares `conflicts: name(pineapple)`.
pub const PIZZA: &str = "italian-pizza-1-1-1-x86_64.stone";
/// What italian-pizza refuses.
pub const PINEAPPLE: &str = "pineapple-1-1-1-x86_64.stone";

/// One of upstream's sample stones.
pub fn sample(name: &str) -> PathBuf {
    Path::new(STONES).join(name)
}

/// A layout path, for tests that write it by hand.
pub fn path(text: &str) -> RelPath {
    RelPath::new(text).expect("test paths are valid")
}

/// A regular file, mode 0644, owned by root.
pub fn file(at: &str, bytes: impl Into<Vec<u8>>) -> SourceEntry {
    SourceEntry::bytes(path(at), bytes.into(), 0o644)
}

/// A symlink.
pub fn link(at: &str, target: &str) -> SourceEntry {
    SourceEntry::symlink(path(at), target)
}

/// An empty directory.
pub fn dir(at: &str, mode: u32) -> SourceEntry {
    SourceEntry::directory(path(at), mode)
}

/// Package metadata: a name, a version, and relations written as upstream spells them
/// (`name(x)`, `soname(libfoo.so.1)`).
pub fn meta(name: &str, version: &str) -> Meta {
    Meta {
        name: name.to_owned(),
        version: version.to_owned(),
        release: 1,
        build_release: 1,
        architecture: "x86_64".to_owned(),
        summary: format!("{name} for the tests"),
        ..Meta::default()
    }
}

/// Parses relations for [`Meta`] fields.
pub fn relations(texts: &[&str]) -> Vec<Relation> {
    texts
        .iter()
        .map(|t| Relation::parse(t).expect("test relations parse"))
        .collect()
}

/// A fresh root in its own temporary directory, and a place beside it for stones.
pub struct TestRoot {
    dir: TempDir,
    /// The root is a tmpfs of its own, unmounted on drop.
    small: bool,
}

impl TestRoot {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        fs::create_dir(dir.path().join("root")).expect("the root directory");
        TestRoot { dir, small: false }
    }

    /// A root on a tmpfs of `bytes`, to fill up; stones and scratch stay outside it.
    /// `None` (with the reason printed) where tmpfs cannot be mounted, which fails the
    /// test under `CI=true`.
    pub fn on_small_fs(bytes: u64) -> Option<Self> {
        let mut root = TestRoot::new();
        let options = std::ffi::CString::new(format!("size={bytes},mode=0755")).expect("no NUL");
        match rustix::mount::mount(
            "mossfs-test",
            root.path(),
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            options.as_c_str(),
        ) {
            Ok(()) => {
                root.small = true;
                Some(root)
            }
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("cannot mount a tmpfs for the root ({e}); CI must run this test")
            }
            Err(e) => {
                eprintln!("skipped: cannot mount a tmpfs for the root ({e}); run as root");
                None
            }
        }
    }

    /// Free bytes on the root's file system.
    pub fn free_bytes(&self) -> u64 {
        let stat = rustix::fs::statvfs(self.path()).expect("statvfs of the root");
        stat.f_bavail * stat.f_frsize
    }

    /// The root (`--root`).
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// `ROOT/usr`.
    pub fn usr(&self) -> PathBuf {
        self.path().join("usr")
    }

    /// `ROOT/.moss`.
    pub fn moss(&self) -> PathBuf {
        self.path().join(".moss")
    }

    /// A directory outside the root, for stones and other test files.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let at = self.dir.path().join(name);
        fs::create_dir_all(&at).expect("a scratch directory");
        at
    }

    /// Packs a stone; each (name, version) gets its own folder, so versions do not clash.
    pub fn stone(&self, meta: &Meta, entries: Vec<SourceEntry>) -> PathBuf {
        let out = self.scratch(&format!("stones/{}-{}", meta.name, meta.version));
        pack_entries(&out, meta, entries, FAST).expect("the test stone packs")
    }

    /// A `mossfs` command with `--root` already given.
    pub fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut command = mossfs();
        command.args(args).arg("--root").arg(self.path());
        command
    }

    /// Runs `mossfs ARGS --root ROOT`.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.command(args).output().expect("mossfs runs")
    }

    /// Runs and asserts success; the stdout.
    pub fn ok<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "mossfs {:?} failed ({}): {}{}",
            args.iter().map(|a| a.as_ref()).collect::<Vec<_>>(),
            output.status,
            text(&output.stdout),
            text(&output.stderr)
        );
        text(&output.stdout)
    }

    /// Runs and asserts a clean failure: exit code 1 and exactly one `error:` line; that
    /// line.
    pub fn fail<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        let output = self.run(args);
        error_line(&output)
    }

    /// Installs stones and asserts success; the stdout.
    pub fn install(&self, stones: &[&Path]) -> String {
        let mut args: Vec<&OsStr> = vec!["install".as_ref()];
        args.extend(stones.iter().map(|s| s.as_os_str()));
        self.ok(&args)
    }

    /// `state list`, parsed.
    pub fn states(&self) -> Vec<StateRow> {
        parse_states(&self.ok(&["state", "list", "--json"]))
    }

    /// The active state as `state list` shows it.
    pub fn active(&self) -> Option<u64> {
        self.states()
            .iter()
            .find(|s| s.status == "active")
            .map(|s| s.id)
    }

    /// What `usr/.stateID` says.
    pub fn state_id_file(&self) -> Option<String> {
        fs::read_to_string(self.usr().join(".stateID")).ok()
    }

    /// Everything a person sees of the installed system: `usr` and the root links.
    pub fn system(&self) -> Snapshot {
        let mut all = snapshot(&self.usr());
        for name in ["bin", "sbin", "lib", "lib64"] {
            let at = self.path().join(name);
            if let Ok(meta) = fs::symlink_metadata(&at) {
                all.insert(PathBuf::from("..").join(name), Snap::of(&at, &meta));
            }
        }
        all
    }

    /// The canonical store file of an asset.
    pub fn asset_file(&self, hash: AssetHash) -> PathBuf {
        let h = hash.to_string();
        self.moss().join("assets").join(&h[..2]).join(&h)
    }
}

impl Drop for TestRoot {
    fn drop(&mut self) {
        if self.small {
            let _ = rustix::mount::unmount(self.path(), rustix::mount::UnmountFlags::DETACH);
        }
    }
}

/// One row of `state list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRow {
    pub id: u64,
    pub status: String,
    pub packages: u64,
    pub entries: u64,
    pub summary: String,
}

/// Parses `state list --json`: an array of objects with stable field names.
pub fn parse_states(out: &str) -> Vec<StateRow> {
    let rows: serde_json::Value =
        serde_json::from_str(out).unwrap_or_else(|e| panic!("state list --json: {e}: {out}"));
    let field = |row: &serde_json::Value, name: &str| -> serde_json::Value {
        row.get(name)
            .unwrap_or_else(|| panic!("no {name} in {row}"))
            .clone()
    };
    rows.as_array()
        .unwrap_or_else(|| panic!("not an array: {out}"))
        .iter()
        .map(|row| StateRow {
            id: field(row, "id").as_u64().expect("a state id"),
            status: field(row, "status").as_str().expect("a status").to_owned(),
            packages: field(row, "packages").as_u64().expect("a package count"),
            entries: field(row, "entries").as_u64().expect("an entry count"),
            summary: field(row, "summary")
                .as_str()
                .expect("a summary")
                .to_owned(),
        })
        .collect()
}

/// `(id, status)` of every state, for compact assertions.
pub fn statuses(rows: &[StateRow]) -> Vec<(u64, &str)> {
    rows.iter().map(|r| (r.id, r.status.as_str())).collect()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("mossfs prints UTF-8")
}

/// Asserts exit code 1 and exactly one `error:` line on stderr, and returns the line.
pub fn error_line(output: &Output) -> String {
    let stderr = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "expected a failure; stdout: {} stderr: {stderr}",
        text(&output.stdout)
    );
    // Indented lines below the error line explain it (why a request has no solution), and a
    // `hint:` line may close them.
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            !l.starts_with("recovered: ") && !l.starts_with("  ") && !l.starts_with("hint: ")
        })
        .collect();
    assert_eq!(errors.len(), 1, "not one error line: {stderr}");
    assert!(errors[0].starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    errors[0].to_owned()
}

/// The indented lines that explain the error line, without their indent.
pub fn error_details(output: &Output) -> Vec<String> {
    text(&output.stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .map(str::to_owned)
        .collect()
}

/// What one entry looks like to a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snap {
    /// `st_mode`, type bits included; permission bits are not compared for symlinks.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Link text of a symlink.
    pub link: Option<PathBuf>,
    /// Bytes of a regular file.
    pub bytes: Option<Vec<u8>>,
}

impl Snap {
    fn of(path: &Path, meta: &fs::Metadata) -> Snap {
        let kind = meta.mode() & 0o170000;
        let is_link = meta.file_type().is_symlink();
        Snap {
            mode: if is_link { kind } else { meta.mode() },
            uid: meta.uid(),
            gid: meta.gid(),
            link: is_link.then(|| fs::read_link(path).expect("a readable link")),
            bytes: meta
                .is_file()
                .then(|| fs::read(path).expect("a readable file")),
        }
    }
}

/// Every entry below a directory, by path relative to it, never following symlinks.
pub type Snapshot = BTreeMap<PathBuf, Snap>;

/// Snapshots a directory; an empty map if it does not exist.
pub fn snapshot(top: &Path) -> Snapshot {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(entries) = fs::read_dir(top.join(&rel)) else {
            continue;
        };
        for entry in entries {
            let entry = entry.expect("a readable directory");
            let rel = rel.join(entry.file_name());
            let full = top.join(&rel);
            let meta = fs::symlink_metadata(&full).expect("an entry that exists");
            if meta.is_dir() {
                stack.push(rel.clone());
            }
            out.insert(rel, Snap::of(&full, &meta));
        }
    }
    out
}

/// Asserts two snapshots are equal, naming the first difference instead of dumping both.
pub fn assert_same(before: &Snapshot, after: &Snapshot, what: &str) {
    for (path, snap) in before {
        match after.get(path) {
            None => panic!("{what}: {} disappeared", path.display()),
            Some(now) if now != snap => panic!(
                "{what}: {} changed from {snap:?} to {now:?}",
                path.display()
            ),
            Some(_) => {}
        }
    }
    for path in after.keys() {
        assert!(
            before.contains_key(path),
            "{what}: {} appeared",
            path.display()
        );
    }
}

/// A stone read back: its layout and the bytes of every asset.
pub struct ReadStone {
    pub meta: Meta,
    pub layout: Vec<LayoutEntry>,
    pub assets: HashMap<AssetHash, Vec<u8>>,
}

/// Reads a stone, content included, with the format crate's reader.
pub fn read_stone(stone: &Path) -> ReadStone {
    let file = File::open(stone).expect("the stone opens");
    let mut reader = Reader::new(BufReader::new(file)).expect("a stone");
    let read = reader.read_metadata().expect("its metadata");
    let mut assets = HashMap::new();
    if let Some(mut content) = reader.content(&read).expect("its content") {
        while let Some(mut asset) = content.next_asset().expect("an asset") {
            let mut bytes = Vec::new();
            asset.read_to_end(&mut bytes).expect("the asset's bytes");
            assets.insert(asset.entry().digest, bytes);
            asset.finish().expect("the asset's digest");
        }
        content.finish().expect("the end of the content");
    }
    ReadStone {
        meta: read.typed_meta().expect("typed meta"),
        layout: read.layout,
        assets,
    }
}

/// Asserts that `usr` is exactly the union of the stones' layouts: every entry has its
/// type, permission bits, owner, link text and bytes, and nothing else is there besides
/// `.stateID` and the directories that hold layout entries. The stones must not overlap.
pub fn assert_tree_matches(usr: &Path, stones: &[&Path]) {
    let mut expected: BTreeMap<PathBuf, Snap> = BTreeMap::new();
    for stone in stones {
        let read = read_stone(stone);
        for entry in &read.layout {
            let (link, bytes) = match &entry.kind {
                EntryKind::Regular(hash) => (None, Some(read.assets[hash].clone())),
                EntryKind::Symlink(text) => (
                    Some(PathBuf::from(OsStr::new(
                        std::str::from_utf8(text).expect("test link texts are UTF-8"),
                    ))),
                    None,
                ),
                _ => (None, None),
            };
            let symlink = matches!(entry.kind, EntryKind::Symlink(_));
            let snap = Snap {
                mode: if symlink {
                    entry.mode & 0o170000
                } else {
                    entry.mode
                },
                uid: entry.uid,
                gid: entry.gid,
                link,
                bytes,
            };
            let at = PathBuf::from(entry.path.as_os_str());
            let earlier = expected.insert(at.clone(), snap);
            assert!(earlier.is_none(), "{} is in two stones", at.display());
        }
    }
    let found = snapshot(usr);
    for (at, want) in &expected {
        let got = found
            .get(at)
            .unwrap_or_else(|| panic!("usr/{} is missing", at.display()));
        assert_eq!(got, want, "usr/{}", at.display());
    }
    for (at, got) in &found {
        if expected.contains_key(at) || at == Path::new(".stateID") {
            continue;
        }
        let holds_entries = expected.keys().any(|p| p.starts_with(at) && p != at);
        assert!(
            got.mode & 0o170000 == 0o040000 && holds_entries,
            "usr/{} is not in any layout",
            at.display()
        );
        assert_eq!(
            (got.mode, got.uid, got.gid),
            (0o040755, 0, 0),
            "implied directory usr/{}",
            at.display()
        );
    }
}
