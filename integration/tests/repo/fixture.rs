//! A root, a repository folder beside it, and the steps every repository test shares.

use std::path::{Path, PathBuf};
use std::process::Output;

use mossfs_integration::corpus::SourceEntry;
use mossfs_integration::mossfs;
use mossfs_integration::nginx::Nginx;

use crate::common::{TestRoot, error_line, file, meta, text};

/// A root and a repository folder to publish into.
pub struct Repo {
    pub root: TestRoot,
    /// The folder nginx serves (and file:// points at).
    pub served: PathBuf,
    /// `keys/k.key` and `keys/k.pub`.
    pub key: PathBuf,
    pub public: PathBuf,
}

impl Repo {
    pub fn new() -> Repo {
        let root = TestRoot::new();
        let served = root.scratch("served");
        let keys = root.scratch("keys");
        let out = run_bare(&["keygen".as_ref(), keys.join("k").as_os_str()]);
        assert!(out.status.success(), "keygen: {}", text(&out.stderr));
        Repo {
            key: keys.join("k.key"),
            public: keys.join("k.pub"),
            served,
            root,
        }
    }

    /// Packs a package into `served/pool/` whose one file `usr/share/NAME/data` holds
    /// `bytes`; its path.
    pub fn stone(&self, name: &str, version: &str, release: u64, bytes: &[u8]) -> PathBuf {
        let mut m = meta(name, version);
        m.release = release;
        let entries: Vec<SourceEntry> = vec![file(&format!("share/{name}/data"), bytes.to_vec())];
        let built = self.root.stone(&m, entries);
        let pool = self.served.join("pool");
        std::fs::create_dir_all(&pool).unwrap();
        let dest = pool.join(format!("{name}-{version}-{release}.stone"));
        std::fs::copy(&built, &dest).unwrap();
        dest
    }

    /// `mossfs index served --sign key ARGS`, asserting success.
    pub fn publish(&self, extra: &[&str]) -> String {
        let mut args: Vec<&std::ffi::OsStr> = vec!["index".as_ref(), self.served.as_os_str()];
        args.extend(["--sign".as_ref(), self.key.as_os_str()]);
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        let out = run_bare(&args);
        assert!(out.status.success(), "index: {}", text(&out.stderr));
        text(&out.stdout)
    }

    /// `repo add NAME URI --key PUB --priority N`.
    pub fn add(&self, name: &str, uri: &str, priority: u64) {
        self.root.ok(&[
            "repo",
            "add",
            name,
            uri,
            "--priority",
            &priority.to_string(),
            "--key",
            self.public.to_str().unwrap(),
        ]);
    }

    /// The names and repositories of `list available`.
    pub fn available(&self) -> Vec<String> {
        self.root
            .ok(&["list", "available"])
            .lines()
            .map(|l| {
                let mut parts = l.split_whitespace();
                let name = parts.next().unwrap_or_default().to_owned();
                let _version = parts.next();
                format!("{name} {}", parts.next().unwrap_or_default())
            })
            .collect()
    }

    /// Files in the stone cache, partial downloads included (recursively).
    pub fn cache_files(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(&self.root.moss().join("cache"), &mut out);
        out.sort();
        out
    }

    pub fn fail(&self, args: &[&str]) -> String {
        self.root.fail(args)
    }
}

fn walk(dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
}

/// Runs mossfs without `--root`.
pub fn run_bare(args: &[&std::ffi::OsStr]) -> Output {
    mossfs().args(args).output().expect("mossfs runs")
}

/// Runs mossfs without `--root`, expecting one clean error line.
pub fn fail_bare(args: &[&std::ffi::OsStr]) -> String {
    error_line(&run_bare(args))
}

/// Serves `repo.served`, or skips (outside CI) when nginx is missing.
pub fn serve(repo: &Repo, extra: &str) -> Option<Nginx> {
    Nginx::start(&repo.served, extra)
}

/// The sha256 of a file, hex.
pub fn sha256(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap();
    sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Requests for paths ending in `suffix`.
pub fn count(nginx: &Nginx, suffix: &str) -> usize {
    nginx
        .requests()
        .iter()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|u| u.ends_with(suffix))
        })
        .count()
}
