//! Turning a list of entries into one stone, the way upstream's boulder lays it out.
//!
//! Callers describe what a package ships as [`SourceEntry`] values; a regular file's bytes
//! come from memory or from a file on disk that is read twice (once to hash, once to
//! compress). This module dedupes the assets by xxh3-128, orders the index largest first
//! (a stable sort, so the empty file is last and ties keep layout order), and writes
//! `<out>/<name>.stone` through a temporary name, so a failed run never leaves a stone
//! that looks finished. It refuses input that could not install on its own: two entries
//! at one path, or an entry below a file or symlink of the same package.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read};
use std::path::{Path, PathBuf};

use mossfs_format::{
    AssetHash, AssetHasher, ContentSource, EntryKind, FileType, IndexEntry, LayoutEntry, Meta,
    RelPath, Writer, WriterOptions, layout_index,
};

use super::{context, invalid};

/// One thing a package ships.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEntry {
    /// Where it goes, relative to `/usr`.
    pub path: RelPath,
    /// What it is, and where its bytes come from.
    pub kind: SourceKind,
    /// Permission bits (`0o7777`); type bits are ignored and taken from `kind`.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// A regular file whose bytes are held in memory.
    Bytes(Vec<u8>),
    /// A regular file whose bytes are read from this file when packing.
    File(PathBuf),
    /// A symlink and its link text, stored as is.
    Symlink(Vec<u8>),
    /// A directory; upstream lists only empty ones, parents being implied.
    Directory,
}

impl SourceEntry {
    /// A regular file owned by root, with its bytes in memory.
    pub fn bytes(path: RelPath, bytes: Vec<u8>, mode: u32) -> Self {
        Self::root_owned(path, SourceKind::Bytes(bytes), mode)
    }

    /// A symlink owned by root, mode `0o777` as Linux reports it.
    pub fn symlink(path: RelPath, target: impl Into<Vec<u8>>) -> Self {
        Self::root_owned(path, SourceKind::Symlink(target.into()), 0o777)
    }

    /// A directory owned by root.
    pub fn directory(path: RelPath, mode: u32) -> Self {
        Self::root_owned(path, SourceKind::Directory, mode)
    }

    fn root_owned(path: RelPath, kind: SourceKind, mode: u32) -> Self {
        SourceEntry {
            path,
            kind,
            mode,
            uid: 0,
            gid: 0,
        }
    }
}

/// Whether `name` can name a package and its file: an ASCII letter or digit, then letters,
/// digits and `+ - . _`, at most 200 bytes. Debian's own rule is stricter (lowercase,
/// no `_`), so every Debian name passes.
pub fn is_valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    let Some(first) = bytes.next() else {
        return false;
    };
    name.len() <= 200
        && first.is_ascii_alphanumeric()
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"+-._".contains(&b))
}

/// Writes `entries` as the stone `<out>/<meta.name>.stone` and returns its path.
///
/// The layout keeps the order of `entries`. Fails with `InvalidInput` for a bad name, two
/// entries at one path, an entry below a non-directory of this package, or an unusable
/// link text; with the file's own error when a source file cannot be read.
pub fn pack_entries(
    out: &Path,
    meta: &Meta,
    entries: Vec<SourceEntry>,
    options: WriterOptions,
) -> io::Result<PathBuf> {
    let name = meta.name.as_str();
    if !is_valid_name(name) {
        return Err(invalid(format!("`{name}` is not a valid package name")));
    }
    check_tree(name, &entries)?;

    let mut assets = Assets::default();
    let mut unique = Vec::new();
    let mut layout = Vec::with_capacity(entries.len());
    for entry in entries {
        let kind = match entry.kind {
            SourceKind::Bytes(bytes) => {
                let hash = AssetHash::of(&bytes);
                let len = bytes.len() as u64;
                assets.add(hash, len, Asset::Memory(bytes), &mut unique);
                EntryKind::Regular(hash)
            }
            SourceKind::File(file) => {
                let (hash, len) = hash_file(&file)?;
                assets.add(hash, len, Asset::Disk(file), &mut unique);
                EntryKind::Regular(hash)
            }
            SourceKind::Symlink(text) => {
                if text.is_empty() || text.contains(&0) || text.len() > usize::from(u16::MAX) {
                    return Err(invalid(format!(
                        "{name}: symlink {} has an empty, NUL-bearing or oversized link text",
                        entry.path
                    )));
                }
                EntryKind::Symlink(text)
            }
            SourceKind::Directory => EntryKind::Directory,
        };
        layout.push(LayoutEntry {
            uid: entry.uid,
            gid: entry.gid,
            mode: kind.mode_bits() | (entry.mode & 0o7777),
            tag: 0,
            kind,
            path: entry.path,
        });
    }
    // Stable, so ties keep layout order and the empty file (size 0) comes last.
    unique.sort_by_key(|&(_, len)| std::cmp::Reverse(len));
    let index = layout_index(unique);

    fs::create_dir_all(out).map_err(context(|| format!("creating {}", out.display())))?;
    let path = out.join(format!("{name}.stone"));
    let partial = out.join(format!(".{name}.stone.partial"));
    let written = write_stone(&partial, meta, &layout, &index, &assets, options)
        .and_then(|()| fs::rename(&partial, &path));
    if let Err(e) = written {
        // Best effort: the error being reported matters more than a leftover partial file.
        let _ = fs::remove_file(&partial);
        return Err(context(|| format!("writing {}", path.display()))(e));
    }
    Ok(path)
}

/// Payloads in upstream's order. Like boulder, a package without regular files gets no
/// index and no content, and one without entries gets no layout.
fn write_stone(
    path: &Path,
    meta: &Meta,
    layout: &[LayoutEntry],
    index: &[IndexEntry],
    assets: &Assets,
    options: WriterOptions,
) -> io::Result<()> {
    let file = File::create(path)?;
    let mut writer = Writer::new(BufWriter::new(file), FileType::Binary, options)?;
    writer.add_meta(&meta.to_records())?;
    if !layout.is_empty() {
        writer.add_layout(layout)?;
    }
    if !index.is_empty() {
        writer.add_index(index)?;
        writer.add_content(index, assets)?;
    }
    writer.finish()?.into_inner().map_err(|e| e.into_error())?;
    Ok(())
}

/// Refuses duplicate paths and entries below a file or symlink of the same package, which
/// would make the package conflict with itself.
fn check_tree(name: &str, entries: &[SourceEntry]) -> io::Result<()> {
    let mut seen = HashSet::with_capacity(entries.len());
    let mut leaves = HashSet::new();
    for entry in entries {
        if !seen.insert(entry.path.as_bytes()) {
            return Err(invalid(format!("{name}: {} is listed twice", entry.path)));
        }
        if !matches!(entry.kind, SourceKind::Directory) {
            leaves.insert(entry.path.as_bytes());
        }
    }
    for entry in entries {
        let bytes = entry.path.as_bytes();
        let below_leaf = bytes
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'/')
            .any(|(cut, _)| leaves.contains(&bytes[..cut]));
        if below_leaf {
            return Err(invalid(format!(
                "{name}: {} lies below a file or symlink of the same package",
                entry.path
            )));
        }
    }
    Ok(())
}

/// Streams a file once to learn its name as an asset and its length.
fn hash_file(path: &Path) -> io::Result<(AssetHash, u64)> {
    let read = || -> io::Result<(AssetHash, u64)> {
        let mut file = File::open(path)?;
        let mut hasher = AssetHasher::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut len = 0u64;
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            hasher.update(&buf[..n]);
            len += n as u64;
        }
        Ok((hasher.finish(), len))
    };
    read().map_err(context(|| format!("hashing {}", path.display())))
}

/// Where one unique asset's bytes are.
#[derive(Debug)]
enum Asset {
    Memory(Vec<u8>),
    Disk(PathBuf),
}

/// The unique assets of one package, by name; the writer pulls them in index order.
#[derive(Debug, Default)]
struct Assets(HashMap<AssetHash, Asset>);

impl Assets {
    /// Keeps the first source of each asset, and notes it in `unique` in layout order.
    fn add(&mut self, hash: AssetHash, len: u64, asset: Asset, unique: &mut Vec<(AssetHash, u64)>) {
        if let Entry::Vacant(slot) = self.0.entry(hash) {
            slot.insert(asset);
            unique.push((hash, len));
        }
    }
}

impl ContentSource for Assets {
    fn open(&self, entry: &IndexEntry) -> io::Result<Box<dyn Read + '_>> {
        match self.0.get(&entry.digest) {
            Some(Asset::Memory(bytes)) => Ok(Box::new(bytes.as_slice())),
            Some(Asset::Disk(path)) => {
                let file = File::open(path)
                    .map_err(context(|| format!("reopening {}", path.display())))?;
                Ok(Box::new(file))
            }
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no asset {} was hashed", entry.digest),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::FAST;
    use crate::corpus::testing::verify_all;

    fn path(text: &str) -> RelPath {
        RelPath::new(text).unwrap()
    }

    fn meta(name: &str) -> Meta {
        Meta {
            name: name.to_owned(),
            version: "1".to_owned(),
            release: 1,
            ..Meta::default()
        }
    }

    #[test]
    fn packs_memory_and_disk_files_deduped_largest_first() {
        let dir = tempfile::tempdir().unwrap();
        let on_disk = dir.path().join("big");
        fs::write(&on_disk, vec![7u8; 5000]).unwrap();
        let entries = vec![
            SourceEntry::bytes(path("share/a"), b"small".to_vec(), 0o644),
            SourceEntry::bytes(path("share/empty"), Vec::new(), 0o600),
            SourceEntry {
                path: path("bin/big"),
                kind: SourceKind::File(on_disk),
                mode: 0o104755,
                uid: 1,
                gid: 2,
            },
            SourceEntry::bytes(path("share/b"), vec![7u8; 5000], 0o644),
            SourceEntry::bytes(path("share/c"), b"middle size".to_vec(), 0o644),
            SourceEntry::symlink(path("share/link"), "a"),
            SourceEntry::directory(path("share/void"), 0o700),
        ];
        let written = pack_entries(&dir.path().join("out"), &meta("demo"), entries, FAST).unwrap();
        assert_eq!(written, dir.path().join("out/demo.stone"));
        let stone = verify_all(&[written]).remove(0);

        // Four unique assets: big (deduped with share/b), middle, small, then empty.
        let lens: Vec<u64> = stone.index.iter().map(IndexEntry::len).collect();
        assert_eq!(lens, [5000, 11, 5, 0]);
        assert_eq!(stone.index[3].digest, AssetHash::EMPTY);
        assert_eq!(stone.index[0].digest, AssetHash::of(&[7u8; 5000]));

        let paths: Vec<String> = stone.layout.iter().map(|e| e.path.to_string()).collect();
        let expected = [
            "share/a",
            "share/empty",
            "bin/big",
            "share/b",
            "share/c",
            "share/link",
            "share/void",
        ];
        assert_eq!(paths, expected);
        let big = &stone.layout[2];
        assert_eq!((big.mode, big.uid, big.gid), (0o104755, 1, 2));
        assert_eq!(stone.layout[1].mode, 0o100600);
        assert_eq!(stone.layout[5].kind, EntryKind::Symlink(b"a".to_vec()));
        assert_eq!(stone.layout[5].mode, 0o120777);
        assert_eq!(stone.layout[6].kind, EntryKind::Directory);
        assert_eq!(stone.layout[6].mode, 0o040700);
        assert_eq!(stone.typed_meta().unwrap().name, "demo");
        // No partial file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path().join("out")).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_package_without_files_has_no_index_or_content() {
        let dir = tempfile::tempdir().unwrap();
        let entries = vec![SourceEntry::symlink(path("lib64"), "lib")];
        let written = pack_entries(dir.path(), &meta("links"), entries, FAST).unwrap();
        let stone = verify_all(&[written]).remove(0);
        assert!(stone.index.is_empty());
        assert!(stone.content.is_none());
        assert_eq!(stone.layout.len(), 1);
    }

    #[test]
    fn refuses_entries_that_conflict_within_the_package() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "twice",
                vec![
                    SourceEntry::bytes(path("bin/x"), b"1".to_vec(), 0o755),
                    SourceEntry::symlink(path("bin/x"), "y"),
                ],
                "twice: bin/x is listed twice",
            ),
            (
                "below",
                vec![
                    SourceEntry::symlink(path("lib"), "lib64"),
                    SourceEntry::bytes(path("lib/libc.so"), b"1".to_vec(), 0o644),
                ],
                "below: lib/libc.so lies below a file or symlink of the same package",
            ),
            (
                "Bad/name",
                Vec::new(),
                "`Bad/name` is not a valid package name",
            ),
            (
                "nul",
                vec![SourceEntry::symlink(path("bin/x"), "a\0b")],
                "nul: symlink bin/x has an empty, NUL-bearing or oversized link text",
            ),
        ];
        for (name, entries, message) in cases {
            let err = pack_entries(dir.path(), &meta(name), entries, FAST).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name}");
            assert_eq!(err.to_string(), message);
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_missing_source_file_names_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        let entries = vec![SourceEntry {
            path: path("bin/gone"),
            kind: SourceKind::File(gone.clone()),
            mode: 0o755,
            uid: 0,
            gid: 0,
        }];
        let err = pack_entries(dir.path(), &meta("gone"), entries, FAST).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(err.to_string(), format!("hashing {}", gone.display()));
    }

    #[test]
    fn names_follow_the_documented_rule() {
        for good in ["a", "libc6", "g++-12", "python3.11", "x_y", "A1"] {
            assert!(is_valid_name(good), "{good}");
        }
        let long = "a".repeat(201);
        for bad in ["", "-a", ".hidden", "a/b", "a b", "é", long.as_str()] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }
}
