//! `mossfs index`: publishing a repository (DESIGN.md §8).
//!
//! Every `.stone` under a folder is hashed (sha256 of the whole file, the package id) and its
//! meta read from the first payloads; one package per name is kept, the highest source
//! release, and an equal release is refused with both files named. The index is a stone of
//! file type 3 with one meta payload per package in name order: the package's own meta plus
//! tag 14 (URI, relative to the index), 15 (sha256 hex) and 16 (size), which is what
//! upstream's `moss index` writes and reads. Next to it goes the checksum file
//! ([`crate::checksum`]), signed when a key is given.
//!
//! With `--deltas N`, each indexed package also gets a delta stone from each of up to N
//! earlier releases of it found in the folder (`OUT/deltas/<from>-<to>.delta`, named by
//! the two package ids), made by `mossfs_store::make_delta` and listed in the index as
//! [`crate::deltas`] describes, where upstream's reader skips them.
//!
//! Every file is written to a temporary name, synced and renamed, deltas first, then the
//! index, and the checksum file last: a client that sees the new checksum file always
//! finds the index it names and every delta that index lists.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use ed25519_dalek::SigningKey;
use mossfs_format::{FileType, Meta, Reader, Writer, WriterOptions};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::RepoError;
use crate::checksum::{self, Checksum, ChecksumFile};
use crate::root_index::{self, RootIndex};

/// The index's file name, as upstream names it.
pub const INDEX_NAME: &str = "stone.index";

/// How to publish.
#[derive(Debug, Clone)]
pub struct Options {
    /// Signs the checksum files.
    pub key: Option<SigningKey>,
    /// Seconds until the checksum files expire.
    pub expires_in: u64,
    /// Publish as a history under a root index instead of a plain index.
    pub history: Option<History>,
    /// Make deltas to each indexed package from up to this many earlier releases of it
    /// found in the folder, and list them in the index (0: none).
    pub deltas: usize,
    /// How delta records are made.
    pub delta_options: mossfs_store::make_delta::Options,
}

/// The folder under OUT that holds the delta stones, shared by every history.
pub const DELTAS_DIR: &str = "deltas";

/// Where a history goes: `OUT/<channel>/history/<id>/<arch>/stone.index`.
#[derive(Debug, Clone)]
pub struct History {
    /// Its id (upstream uses unix timestamps).
    pub id: String,
    /// The channel, `main` by default.
    pub channel: String,
    /// The architecture folder.
    pub arch: String,
    /// A stream to point at the new history.
    pub stream: Option<String>,
}

/// What was published.
#[derive(Debug, Clone)]
pub struct Report {
    /// The index written.
    pub index: PathBuf,
    /// Its size.
    pub index_size: u64,
    /// Packages in it.
    pub packages: usize,
    /// Stones left out because a higher release of their package exists.
    pub superseded: Vec<PathBuf>,
    /// `.stone` files left out because they are not binary packages (delta stones).
    pub not_packages: Vec<PathBuf>,
    /// The checksum file's version.
    pub version: u64,
    /// The root index, when a history was published.
    pub root_index: Option<PathBuf>,
    /// The deltas listed in the index.
    pub deltas: Vec<PublishedDelta>,
    /// Deltas not made or not listed, each with why (the full stone serves instead).
    pub skipped_deltas: Vec<String>,
}

/// One delta listed in an index.
#[derive(Debug, Clone)]
pub struct PublishedDelta {
    /// The delta stone.
    pub path: PathBuf,
    /// The package's name.
    pub name: String,
    /// `version-release` it starts from.
    pub from_version: String,
    /// `version-release` it rebuilds.
    pub to_version: String,
    /// Its size.
    pub size: u64,
    /// The full stone's size.
    pub full_size: u64,
    /// Whether an earlier run's delta stone was checked and kept.
    pub reused: bool,
}

struct Found {
    path: PathBuf,
    meta: Meta,
    sha256: String,
    size: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RepoError + '_ {
    move |source| RepoError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Indexes every stone under `dir` and writes the index under `out`.
pub fn index(dir: &Path, out: &Path, options: &Options) -> Result<Report, RepoError> {
    let dir = dir.canonicalize().map_err(io(dir))?;
    std::fs::create_dir_all(out).map_err(io(out))?;
    let out = out.canonicalize().map_err(io(out))?;
    let index_dir = match &options.history {
        None => out.clone(),
        Some(h) => {
            for (what, value) in [
                ("history id", &h.id),
                ("channel", &h.channel),
                ("arch", &h.arch),
            ] {
                if !root_index::valid_id(value) {
                    return Err(RepoError::BadUri {
                        uri: value.clone(),
                        reason: format!("a {what} must be one plain name"),
                    });
                }
            }
            let index_dir = out
                .join(&h.channel)
                .join("history")
                .join(&h.id)
                .join(&h.arch);
            let existing = index_dir.join(INDEX_NAME);
            if existing.exists() || root_has_history(&out.join(&h.channel), &h.id)? {
                return Err(RepoError::HistoryExists {
                    id: h.id.clone(),
                    path: existing,
                });
            }
            index_dir
        }
    };
    let mut paths = Vec::new();
    find_stones(&dir, &mut paths)?;
    paths.sort();
    let mut chosen: BTreeMap<String, Found> = BTreeMap::new();
    let mut superseded = Vec::new();
    let mut older: Vec<Found> = Vec::new();
    // Hashing and reading are per stone, so they run on every core; the choice below goes
    // in path order, so the result never depends on scheduling.
    let found: Vec<Option<Found>> = paths
        .par_iter()
        .map(|path| read_stone(path))
        .collect::<Result<_, _>>()?;
    let mut not_packages = Vec::new();
    for (path, found) in paths.iter().zip(found) {
        // A delta stone carries its new package's meta, but it is not that package.
        let Some(found) = found else {
            not_packages.push(path.clone());
            continue;
        };
        match chosen.get(&found.meta.name) {
            None => {}
            Some(prev) if prev.meta.release == found.meta.release => {
                return Err(RepoError::DuplicateRelease {
                    name: found.meta.name.clone(),
                    release: found.meta.release,
                    first: prev.path.clone(),
                    second: found.path,
                });
            }
            Some(prev) if prev.meta.release > found.meta.release => {
                superseded.push(found.path.clone());
                older.push(found);
                continue;
            }
            Some(_) => {}
        }
        if let Some(prev) = chosen.insert(found.meta.name.clone(), found) {
            superseded.push(prev.path.clone());
            older.push(prev);
        }
    }
    if chosen.len() > usize::from(u16::MAX) {
        return Err(RepoError::TooManyPackages {
            count: chosen.len(),
        });
    }
    std::fs::create_dir_all(&index_dir).map_err(io(&index_dir))?;
    let (deltas, skipped_deltas) = if options.deltas > 0 {
        make_deltas(&chosen, &older, &out.join(DELTAS_DIR), options)?
    } else {
        (Vec::new(), Vec::new())
    };
    let index_path = index_dir.join(INDEX_NAME);
    let mut bytes = std::io::Cursor::new(Vec::new());
    let mut writer = Writer::new(&mut bytes, FileType::Repository, WriterOptions::default())
        .map_err(io(&index_path))?;
    for found in chosen.values() {
        let mut meta = found.meta.clone();
        meta.uri = Some(relative(&index_dir, &found.path)?);
        meta.hash = Some(found.sha256.clone());
        meta.size = Some(found.size);
        writer
            .add_meta(&meta.to_records())
            .map_err(io(&index_path))?;
    }
    if !deltas.is_empty() {
        let offers: Vec<crate::deltas::Offer> = deltas
            .iter()
            .map(|made| {
                Ok(crate::deltas::Offer {
                    to: made.to.clone(),
                    from: made.from.clone(),
                    sha256: made.sha256.clone(),
                    size: made.published.size,
                    uri: relative(&index_dir, &made.published.path)?,
                })
            })
            .collect::<Result<_, RepoError>>()?;
        writer
            .add_extension(
                crate::deltas::DELTAS_KIND,
                u32::try_from(offers.len()).map_err(|_| RepoError::TooManyPackages {
                    count: offers.len(),
                })?,
                &crate::deltas::encode(&offers),
            )
            .map_err(io(&index_path))?;
    }
    writer.finish().map_err(io(&index_path))?;
    let bytes = bytes.into_inner();
    write_atomic(&index_path, &bytes)?;
    let version = publish_checksum(&index_path, &bytes, options)?;
    let root_index = match &options.history {
        None => None,
        Some(h) => {
            let channel_dir = out.join(&h.channel);
            let path = channel_dir.join(root_index::FILE_NAME);
            let mut root = match std::fs::read(&path) {
                Ok(b) => RootIndex::parse(&b).map_err(|reason| RepoError::RootIndex {
                    uri: path.display().to_string(),
                    reason,
                })?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => RootIndex::default(),
                Err(e) => return Err(io(&path)(e)),
            };
            root.add_history(&h.id, h.stream.as_deref());
            let root_bytes = root.to_bytes();
            write_atomic(&path, &root_bytes)?;
            publish_checksum(&path, &root_bytes, options)?;
            Some(path)
        }
    };
    Ok(Report {
        index: index_path,
        index_size: bytes.len() as u64,
        packages: chosen.len(),
        superseded,
        not_packages,
        version,
        root_index,
        deltas: deltas.into_iter().map(|d| d.published).collect(),
        skipped_deltas,
    })
}

/// A delta made (or kept) for the index, with the ids the index lists it under.
struct MadeDelta {
    published: PublishedDelta,
    to: String,
    from: String,
    sha256: String,
}

/// Makes the deltas to every chosen package from up to `options.deltas` of its earlier
/// releases in `older`, all pairs at once on rayon's pool (each pair's records in
/// parallel too). A delta is named by the two package ids, so one made by an earlier run
/// is kept when it still reads, verifies and names the same two packages; otherwise it
/// is made again. `make_delta` applies every record of what it wrote before naming it. A
/// delta that is not smaller than the full stone, or that cannot be made, is not listed
/// (and the reason is reported): the full stone serves instead.
fn make_deltas(
    chosen: &BTreeMap<String, Found>,
    older: &[Found],
    dir: &Path,
    options: &Options,
) -> Result<(Vec<MadeDelta>, Vec<String>), RepoError> {
    let mut pairs: Vec<(&Found, &Found)> = Vec::new();
    for new in chosen.values() {
        let mut earlier: Vec<&Found> = older
            .iter()
            .filter(|o| o.meta.name == new.meta.name && o.meta.release < new.meta.release)
            .collect();
        earlier.sort_by_key(|o| std::cmp::Reverse(o.meta.release));
        pairs.extend(
            earlier
                .into_iter()
                .take(options.deltas)
                .map(|old| (old, new)),
        );
    }
    if pairs.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let results: Vec<Result<MadeDelta, String>> = pairs
        .par_iter()
        .map(|(old, new)| make_one(old, new, dir, &options.delta_options))
        .collect();
    let mut made = Vec::new();
    let mut skipped = Vec::new();
    for result in results {
        match result {
            Ok(delta) => made.push(delta),
            Err(why) => skipped.push(why),
        }
    }
    Ok((made, skipped))
}

fn make_one(
    old: &Found,
    new: &Found,
    dir: &Path,
    options: &mossfs_store::make_delta::Options,
) -> Result<MadeDelta, String> {
    let path = dir.join(format!("{}-{}.delta", old.sha256, new.sha256));
    let label = format!(
        "{} {}-{} -> {}-{}",
        new.meta.name, old.meta.version, old.meta.release, new.meta.version, new.meta.release
    );
    let reused = existing_delta(&path, &old.sha256, &new.sha256);
    if !reused {
        mossfs_store::make_delta::make_delta(&old.path, &new.path, &path, options).map_err(
            |e| {
                let mut why = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    why.push_str(&format!(": {s}"));
                    source = s.source();
                }
                format!("no delta {label}: {why}")
            },
        )?;
    }
    let (sha256, size) = file_sha256(&path).map_err(|e| format!("no delta {label}: {e}"))?;
    if size >= new.size {
        let _ = std::fs::remove_file(&path);
        return Err(format!(
            "no delta {label}: it is {size} bytes, not smaller than the full stone's {}",
            new.size
        ));
    }
    Ok(MadeDelta {
        published: PublishedDelta {
            path,
            name: new.meta.name.clone(),
            from_version: format!("{}-{}", old.meta.version, old.meta.release),
            to_version: format!("{}-{}", new.meta.version, new.meta.release),
            size,
            full_size: new.size,
            reused,
        },
        to: new.sha256.clone(),
        from: old.sha256.clone(),
        sha256,
    })
}

/// Whether the delta stone at `path` reads and verifies, and goes from package `from` to
/// package `to` (sha256 hex).
fn existing_delta(path: &Path, from: &str, to: &str) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    if mossfs_format::read::verify(std::io::BufReader::new(file)).is_err() {
        return false;
    }
    let Ok(file) = File::open(path) else {
        return false;
    };
    let Ok(mut reader) = Reader::new(std::io::BufReader::new(file)) else {
        return false;
    };
    let Ok(stone) = reader.read_metadata() else {
        return false;
    };
    matches!(reader.deltas(&stone), Ok(Some(d))
        if crate::hex(&d.preamble().from.0) == from && crate::hex(&d.preamble().to.0) == to)
}

fn file_sha256(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher)?;
    Ok((crate::hex(&hasher.finalize()), size))
}

fn root_has_history(channel_dir: &Path, id: &str) -> Result<bool, RepoError> {
    let path = channel_dir.join(root_index::FILE_NAME);
    match std::fs::read(&path) {
        Ok(b) => Ok(RootIndex::parse(&b)
            .map_err(|reason| RepoError::RootIndex {
                uri: path.display().to_string(),
                reason,
            })?
            .has_history(id)),
        Err(_) => Ok(false),
    }
}

/// Writes the checksum file for `file` (whose bytes are `bytes`), with a version above the
/// one already there; returns the version.
fn publish_checksum(file: &Path, bytes: &[u8], options: &Options) -> Result<u64, RepoError> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let path = file.with_file_name(checksum::file_name(&name));
    let previous = std::fs::read(&path)
        .ok()
        .and_then(|b| ChecksumFile::decode(&b).ok())
        .map_or(0, |f| f.checksum.version);
    let now = crate::now();
    let version = now.max(previous.saturating_add(1));
    let sum = Checksum {
        digest: checksum::Digest::sha256(bytes),
        size: bytes.len() as u64,
        version,
        expires: now.saturating_add(options.expires_in),
    };
    write_atomic(&path, &sum.encode(options.key.as_ref()))?;
    Ok(version)
}

/// Writes through a temporary file in the same folder, synced, then renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RepoError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
    // A repository is served by a web server running as another user.
    temp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(io(path))?;
    temp.write_all(bytes).map_err(io(path))?;
    temp.as_file().sync_all().map_err(io(path))?;
    temp.persist(path).map_err(|e| io(path)(e.error))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn find_stones(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), RepoError> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io(&path))?;
        if kind.is_dir() {
            find_stones(&path, out)?;
        } else if kind.is_file() && path.extension().is_some_and(|e| e == "stone") {
            out.push(path);
        }
    }
    Ok(())
}

/// The stone's package, or `None` for a stone that is not a binary package (a delta).
fn read_stone(path: &Path) -> Result<Option<Found>, RepoError> {
    let mut file = File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    let file = File::open(path).map_err(io(path))?;
    let read_error = |source| RepoError::ReadStone {
        path: path.to_owned(),
        source,
    };
    let mut reader = Reader::new(std::io::BufReader::new(file)).map_err(read_error)?;
    if reader.header().file_type != FileType::Binary {
        return Ok(None);
    }
    let stone = reader.read_metadata().map_err(read_error)?;
    if let Some(tag) = mossfs_format::meta::missing_required(&stone.meta) {
        return Err(RepoError::MissingField {
            path: path.to_owned(),
            field: tag.name(),
        });
    }
    let meta = Meta::from_records(&stone.meta).map_err(|source| RepoError::BadMeta {
        path: path.to_owned(),
        source,
    })?;
    Ok(Some(Found {
        path: path.to_owned(),
        meta,
        sha256: crate::hex(&hasher.finalize()),
        size,
    }))
}

/// The path from folder `from` to file `to`, both absolute and canonical, with `/`: a
/// relative URI, so only of characters no URI or client escapes. A stone named otherwise
/// (`pkg 1#2?.stone`, bytes that are not UTF-8) is refused here, naming it, rather than
/// published as a URI that every client then refuses, taking the whole index with it.
fn relative(from: &Path, to: &Path) -> Result<String, RepoError> {
    let from: Vec<Component> = from.components().collect();
    let to_parts: Vec<Component> = to.components().collect();
    let common = from
        .iter()
        .zip(&to_parts)
        .take_while(|(a, b)| a == b)
        .count();
    let mut parts: Vec<String> = vec!["..".into(); from.len() - common];
    for part in &to_parts[common..] {
        let text = part.as_os_str().to_str().filter(|t| {
            t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._~+-".contains(&b))
        });
        match text {
            Some(text) => parts.push(text.to_owned()),
            None => {
                return Err(RepoError::BadUri {
                    uri: to.display().to_string(),
                    reason: "a repository path is letters, digits and '._~+-' only, which \
                             need no escaping in a URI; rename it"
                        .into(),
                });
            }
        }
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::relative;
    use std::path::Path;

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative(Path::new("/a/b"), Path::new("/a/b/c/d.stone")).unwrap(),
            "c/d.stone"
        );
        assert_eq!(
            relative(Path::new("/a/m/h/1/x"), Path::new("/a/pool/d.stone")).unwrap(),
            "../../../../pool/d.stone"
        );
        assert_eq!(
            relative(Path::new("/a"), Path::new("/a/x/nano-8.0_1+b2~rc.stone")).unwrap(),
            "x/nano-8.0_1+b2~rc.stone"
        );
    }

    #[test]
    fn a_path_a_uri_would_escape_is_refused() {
        // The folders above the index's are the publisher's own and may be named anyhow.
        assert!(relative(Path::new("/my repo/out"), Path::new("/my repo/out/a.stone")).is_ok());
        for name in [
            "sub dir/a.stone",
            "a#1.stone",
            "a?x.stone",
            "a%20.stone",
            "é.stone",
        ] {
            let to = Path::new("/r").join(name);
            assert!(relative(Path::new("/r"), &to).is_err(), "{name}");
        }
    }
}
