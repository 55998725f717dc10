//! A corpus of real files: this machine's installed Debian packages, one stone each.
//!
//! Synthetic bytes say nothing about how real binaries, libraries and documentation
//! compress and dedupe; the files dpkg installed here do, and nobody on this project wrote
//! them. This module asks `dpkg-query` what is installed and `dpkg -L` what each package
//! owns, and reads those files under `/usr` (read only: it never writes outside the output
//! directory). What it takes from each package:
//!
//! - paths below `/usr/`, with that prefix removed; paths elsewhere (`/etc`, `/var`, the
//!   merged-usr `/bin` aliases) are left out, as are paths `RelPath` refuses;
//! - regular files (real bytes), symlinks (link text as is), and directories only when no
//!   other entry of the package lies below them, as upstream's boulder does;
//! - uid, gid and permission bits from `lstat`. Paths that no longer exist, cannot be
//!   read, are devices, fifos or sockets, or lie below a symlink (reached through a
//!   directory symlink on disk) are skipped.
//!
//! **Conflicts.** Debian packages sometimes list the same file (diversions, `dpkg-divert`,
//! files moved between packages). So that the generated set installs together, a file or
//! symlink path is kept only in the first package, by sorted name, that lists it; later
//! packages lose it, and a package left with nothing is skipped altogether. Directories
//! may be shared freely. `--limit N` takes the first N packages by name that still have
//! entries, so a limited corpus is a prefix of the full one.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use mossfs_format::{Meta, RelPath, WriterOptions};
use rayon::prelude::*;

use super::context;
use super::pack::{SourceEntry, SourceKind, is_valid_name, pack_entries};

/// Packages listed per parallel step; claims are settled in name order between steps.
const BATCH: usize = 32;

/// One installed package, as `dpkg-query` reports it.
#[derive(Debug, Clone)]
struct Installed {
    /// The name `dpkg -L` understands (`libc6:amd64` for multi-arch packages).
    query: String,
    /// The Debian name, then the stone's: made valid and unique by [`list_installed`].
    name: String,
    version: String,
    architecture: String,
    summary: String,
}

/// Packs the installed packages into `out`, one `<name>.stone` each, and returns their
/// paths in name order. `limit` stops after that many non-empty packages.
///
/// Fails with `NotFound` when `dpkg-query` is not installed.
pub fn debian(
    out: &Path,
    limit: Option<usize>,
    options: WriterOptions,
) -> io::Result<Vec<PathBuf>> {
    let installed = list_installed()?;
    let limit = limit.unwrap_or(usize::MAX);
    let mut claimed: HashSet<RelPath> = HashSet::new();
    let mut chosen: Vec<(Installed, Vec<SourceEntry>)> = Vec::new();
    for batch in installed.chunks(BATCH) {
        if chosen.len() >= limit {
            break;
        }
        let scanned = batch.par_iter().map(scan).collect::<io::Result<Vec<_>>>()?;
        for (package, candidates) in batch.iter().zip(scanned) {
            if chosen.len() >= limit {
                break;
            }
            let entries = claim(candidates, &mut claimed);
            if !entries.is_empty() {
                chosen.push((package.clone(), entries));
            }
        }
    }
    chosen
        .into_par_iter()
        .map(|(package, entries)| {
            let meta = Meta {
                name: package.name,
                version: package.version,
                release: 1,
                build_release: 1,
                architecture: package.architecture,
                summary: package.summary,
                ..Meta::default()
            };
            pack_entries(out, &meta, entries, options)
        })
        .collect()
}

/// Packs only the installed packages named (Debian names), one stone each, in name order;
/// a name that is not installed is an error. Unlike [`debian`], paths under the merged-usr
/// aliases (`/bin`, `/sbin`, `/lib`, `/lib64`, when each is a symlink into `usr`) are taken
/// as the `/usr` paths they are, so that `libc-bin` brings `/sbin/ldconfig` as
/// `usr/sbin/ldconfig`: a root made of these stones runs what the packages really ship.
pub fn debian_packages(
    out: &Path,
    names: &[&str],
    options: WriterOptions,
) -> io::Result<Vec<PathBuf>> {
    let installed = list_installed()?;
    let mut claimed: HashSet<RelPath> = HashSet::new();
    let mut written = Vec::new();
    for name in names {
        let package = installed
            .iter()
            .find(|p| p.query == *name || p.name == *name)
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("{name} is not installed"))
            })?;
        let entries = claim(scan_with(package, true)?, &mut claimed);
        let meta = Meta {
            name: package.name.clone(),
            version: package.version.clone(),
            release: 1,
            build_release: 1,
            architecture: package.architecture.clone(),
            summary: package.summary.clone(),
            ..Meta::default()
        };
        written.push(pack_entries(out, &meta, entries, options)?);
    }
    Ok(written)
}

/// `/bin/x` as `usr/bin/x` when `/bin` is a symlink to `usr/bin` (merged usr).
fn alias_of(line: &[u8]) -> Option<Vec<u8>> {
    for alias in ["bin", "sbin", "lib", "lib64"] {
        let prefix = format!("/{alias}/");
        if let Some(rest) = line.strip_prefix(prefix.as_bytes()) {
            let target = fs::read_link(Path::new("/").join(alias)).ok()?;
            let target = target.as_os_str().as_bytes();
            let target = target.strip_prefix(b"/").unwrap_or(target);
            let under = target.strip_prefix(b"usr/")?;
            let mut out = under.to_vec();
            out.push(b'/');
            out.extend_from_slice(rest);
            return Some(out);
        }
    }
    None
}

/// Every installed package, sorted by Debian name, then architecture.
fn list_installed() -> io::Result<Vec<Installed>> {
    let format = "${db:Status-Abbrev}\t${binary:Package}\t${Package}\t${Version}\t\
                  ${Architecture}\t${binary:Summary}\n";
    let stdout = run(Command::new("dpkg-query").args(["-W", "-f", format]))?;
    let text = String::from_utf8_lossy(&stdout);
    let mut installed: Vec<Installed> = text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let [status, query, name, version, architecture, summary] = fields[..] else {
                return None;
            };
            // "ii " is installed; anything else (config files only, half installed) is not.
            status.starts_with("ii").then(|| Installed {
                query: query.to_owned(),
                name: name.to_owned(),
                version: version.to_owned(),
                architecture: architecture.to_owned(),
                summary: summary.to_owned(),
            })
        })
        .collect();
    installed.sort_by(|a, b| (&a.name, &a.architecture).cmp(&(&b.name, &b.architecture)));
    // The same name for two architectures gets the architecture appended to the second.
    let mut taken = HashSet::new();
    for package in &mut installed {
        let base = sanitize(&package.name);
        let mut unique = base.clone();
        let mut n = 1;
        while !taken.insert(unique.clone()) {
            unique = if n == 1 {
                sanitize(&format!("{base}-{}", package.architecture))
            } else {
                format!("{base}-{n}")
            };
            n += 1;
        }
        package.name = unique;
    }
    Ok(installed)
}

/// A Debian name as a valid package name: lowercase, with anything outside
/// `[a-z0-9+._-]` replaced by `-`.
fn sanitize(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(200)
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        out.insert(0, 'p');
        out.truncate(200);
    }
    debug_assert!(is_valid_name(&out), "{out}");
    out
}

/// The package's usable entries under `/usr`, sorted by path, before cross-package claims.
fn scan(package: &Installed) -> io::Result<Vec<SourceEntry>> {
    scan_with(package, false)
}

/// [`scan`], taking merged-usr alias paths as their `/usr` paths when `aliases` is set.
fn scan_with(package: &Installed, aliases: bool) -> io::Result<Vec<SourceEntry>> {
    let stdout = run(Command::new("dpkg").arg("-L").arg(&package.query))?;
    let mut seen = HashSet::new();
    // Whether each directory on the way down is a real directory, not a symlink.
    let mut real_dirs: HashMap<Vec<u8>, bool> = HashMap::new();
    let mut entries = Vec::new();
    for line in stdout.split(|&b| b == b'\n') {
        // Diversion notes and "does not contain any files" do not start with a slash.
        let aliased = if aliases { alias_of(line) } else { None };
        let Some(rel) = aliased.as_deref().or_else(|| line.strip_prefix(b"/usr/")) else {
            continue;
        };
        let Ok(path) = RelPath::new(rel) else {
            continue;
        };
        if !seen.insert(path.clone()) || !below_real_dirs(&path, &mut real_dirs) {
            continue;
        }
        let on_disk = Path::new("/usr").join(path.as_os_str());
        let Ok(stat) = fs::symlink_metadata(&on_disk) else {
            continue;
        };
        let kind = if stat.is_file() {
            if File::open(&on_disk).is_err() {
                continue;
            }
            SourceKind::File(on_disk)
        } else if stat.is_symlink() {
            match fs::read_link(&on_disk) {
                Ok(target) => SourceKind::Symlink(target.into_os_string().into_vec()),
                Err(_) => continue,
            }
        } else if stat.is_dir() {
            SourceKind::Directory
        } else {
            continue;
        };
        entries.push(SourceEntry {
            path,
            kind,
            mode: stat.mode() & 0o7777,
            uid: stat.uid(),
            gid: stat.gid(),
        });
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

/// Whether every parent of `path` below `/usr` is a directory on disk, so that the path
/// names itself and not something reached through a symlink another package owns.
fn below_real_dirs(path: &RelPath, cache: &mut HashMap<Vec<u8>, bool>) -> bool {
    let bytes = path.as_bytes();
    bytes
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'/')
        .all(|(cut, _)| {
            let parent = &bytes[..cut];
            *cache.entry(parent.to_vec()).or_insert_with(|| {
                let on_disk = Path::new("/usr").join(OsStr::from_bytes(parent));
                fs::symlink_metadata(on_disk).is_ok_and(|m| m.is_dir())
            })
        })
}

/// Keeps the files and symlinks no earlier package claimed (claiming them), then the
/// directories that are empty within what is kept.
fn claim(candidates: Vec<SourceEntry>, claimed: &mut HashSet<RelPath>) -> Vec<SourceEntry> {
    let (dirs, leaves): (Vec<_>, Vec<_>) = candidates
        .into_iter()
        .partition(|e| matches!(e.kind, SourceKind::Directory));
    let mut kept: Vec<SourceEntry> = leaves
        .into_iter()
        .filter(|e| claimed.insert(e.path.clone()))
        .collect();
    let mut parents: HashSet<&[u8]> = HashSet::new();
    for path in kept
        .iter()
        .map(|e| &e.path)
        .chain(dirs.iter().map(|e| &e.path))
    {
        let bytes = path.as_bytes();
        for (cut, _) in bytes.iter().enumerate().filter(|&(_, &b)| b == b'/') {
            parents.insert(&bytes[..cut]);
        }
    }
    let empty: Vec<SourceEntry> = dirs
        .iter()
        .filter(|d| !parents.contains(d.path.as_bytes()))
        .cloned()
        .collect();
    kept.extend(empty);
    kept.sort_by(|a, b| a.path.cmp(&b.path));
    kept
}

/// Runs a command to completion and returns its stdout; a failure names the command.
fn run(command: &mut Command) -> io::Result<Vec<u8>> {
    let shown = format!("{command:?}");
    let output = command
        .output()
        .map_err(context(|| format!("running {shown}")))?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "{shown} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(output.stdout)
}

#[cfg(test)]
mod tests {
    use mossfs_format::{AssetHash, EntryKind};

    use super::*;
    use crate::corpus::FAST;
    use crate::corpus::testing::{assert_conflict_free, verify_all};

    fn file(path: &str, kind: SourceKind) -> SourceEntry {
        SourceEntry {
            path: RelPath::new(path).unwrap(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
        }
    }

    #[test]
    fn packs_the_first_installed_packages_from_real_files() {
        let dir = tempfile::tempdir().unwrap();
        let paths = match debian(dir.path(), Some(3), FAST) {
            Err(e)
                if e.kind() == io::ErrorKind::NotFound && e.to_string().contains("dpkg-query") =>
            {
                eprintln!("skipped: dpkg-query is not installed ({e})");
                return;
            }
            other => other.unwrap(),
        };
        assert_eq!(paths.len(), 3);
        let stones = verify_all(&paths);
        assert_conflict_free(&stones);
        let names: Vec<_> = stones
            .iter()
            .map(|s| s.name().unwrap().to_owned())
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        for (path, stone) in paths.iter().zip(&stones) {
            let meta = stone.typed_meta().unwrap();
            assert_eq!(
                path.file_name().unwrap().to_str(),
                Some(&*format!("{}.stone", meta.name))
            );
            assert!(!meta.version.is_empty() && !meta.architecture.is_empty());
            assert_eq!(meta.release, 1);
            // A few entries match the real files, byte for byte and link for link.
            for entry in stone.layout.iter().take(20) {
                let real = Path::new("/usr").join(entry.path.as_os_str());
                match &entry.kind {
                    EntryKind::Regular(hash) => {
                        assert_eq!(*hash, AssetHash::of(&fs::read(&real).unwrap()), "{real:?}")
                    }
                    EntryKind::Symlink(text) => {
                        assert_eq!(fs::read_link(&real).unwrap().as_os_str().as_bytes(), text)
                    }
                    EntryKind::Directory => assert!(fs::symlink_metadata(&real).unwrap().is_dir()),
                    other => panic!("{real:?} is a {}", other.name()),
                }
                let stat = fs::symlink_metadata(&real).unwrap();
                assert_eq!(entry.mode, stat.mode(), "{real:?}");
            }
        }
    }

    #[test]
    fn a_path_goes_to_the_first_package_and_dirs_only_when_empty() {
        let mut claimed = HashSet::new();
        let first = claim(
            vec![
                file("share/a", SourceKind::Bytes(b"1".to_vec())),
                file("share", SourceKind::Directory),
                file("share/empty", SourceKind::Directory),
            ],
            &mut claimed,
        );
        let paths = |entries: &[SourceEntry]| -> Vec<String> {
            entries.iter().map(|e| e.path.to_string()).collect()
        };
        assert_eq!(paths(&first), ["share/a", "share/empty"]);
        let second = claim(
            vec![
                file("share", SourceKind::Directory),
                file("share/a", SourceKind::Bytes(b"2".to_vec())),
                file("share/b", SourceKind::Symlink(b"a".to_vec())),
            ],
            &mut claimed,
        );
        assert_eq!(paths(&second), ["share/b"]);
        // A package whose only file was taken keeps the directory, now empty for it.
        let third = claim(
            vec![
                file("share", SourceKind::Directory),
                file("share/b", SourceKind::Bytes(b"3".to_vec())),
            ],
            &mut claimed,
        );
        assert_eq!(paths(&third), ["share"]);
    }

    #[test]
    fn sanitized_names_are_valid() {
        assert_eq!(sanitize("libstdc++6"), "libstdc++6");
        assert_eq!(sanitize("Foo Bar"), "foo-bar");
        assert_eq!(sanitize("+x"), "p+x");
        assert!(is_valid_name(&sanitize("ü")));
    }
}
