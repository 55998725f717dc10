//! Unpacking one stone into a plain directory, as `mossfs extract` does.
//!
//! This is the simplest way a stone becomes files: no store, no database, no state. It
//! follows DESIGN.md §6.3 all the same. Every entry is created through [`DirFd`] below the
//! root, so no symlink is ever followed, and the layout is planned before anything is
//! written: duplicate paths, and entries beneath something the layout makes a symlink or a
//! file, are refused while the directory is still untouched.
//!
//! The content streams once. The layout maps each asset to the paths that use it; the first
//! path is written from the stream, and the others are copied from that first file through
//! its open descriptor (plain copies, never hardlinks, so the result is an ordinary tree).
//! Ownership is applied only when asked, which means when running as root.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use mossfs_format::{AssetHash, DecodeError, EntryKind, LayoutEntry, Reader, RelPath, Stone};

use crate::dirfd::{Attrs, DEFAULT_DIR_MODE, DirError, DirFd};

/// How to extract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractOptions {
    /// Give entries the uid and gid from the layout; only root may.
    pub owners: bool,
}

impl ExtractOptions {
    /// Owners are applied exactly when the process runs as root.
    pub fn for_current_user() -> Self {
        ExtractOptions {
            owners: rustix::process::geteuid().is_root(),
        }
    }
}

/// What one extraction created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractStats {
    /// The package name from the meta payload, if it has one.
    pub package: Option<String>,
    /// Regular files written.
    pub files: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Directories the layout lists explicitly.
    pub directories: u64,
    /// Bytes written to regular files, duplicates included.
    pub bytes: u64,
}

/// Why a stone could not be extracted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// The stone itself is broken or hostile.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Creating something below the root failed, or would have left it.
    #[error(transparent)]
    Dir(#[from] DirError),
    /// An entry lies beneath a path that the layout makes a non-directory.
    #[error(
        "package {package}: `{path}` lies beneath `{ancestor}`, which the layout makes a {kind}; refusing to write through it"
    )]
    BeneathNonDirectory {
        /// The package.
        package: String,
        /// The entry.
        path: RelPath,
        /// The non-directory above it.
        ancestor: RelPath,
        /// What the ancestor is.
        kind: &'static str,
    },
    /// The layout lists one path twice.
    #[error("package {package}: the layout lists `{path}` more than once")]
    Duplicate {
        /// The package.
        package: String,
        /// The path.
        path: RelPath,
    },
    /// Devices, fifos and sockets do not belong in a plain directory extraction.
    #[error("package {package}: `{path}` is a {kind}, which extract does not create")]
    Unsupported {
        /// The package.
        package: String,
        /// The entry.
        path: RelPath,
        /// Its kind.
        kind: &'static str,
    },
    /// The content ended without the asset a layout entry needs.
    #[error("package {package}: `{path}` needs asset {hash}, which the content does not hold")]
    MissingContent {
        /// The package.
        package: String,
        /// The first path that needs it.
        path: RelPath,
        /// The asset.
        hash: AssetHash,
    },
    /// Writing file bytes failed.
    #[error("cannot write {}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
}

/// Reads the stone from `input` and recreates its layout below `root`. Nothing that exists
/// is replaced. Every payload checksum and asset digest is verified on the way; an asset
/// whose digest is wrong is removed again before the error is returned.
pub fn extract<R: Read>(
    input: R,
    root: &DirFd,
    options: ExtractOptions,
) -> Result<ExtractStats, ExtractError> {
    let mut reader = Reader::new(input)?;
    let stone = reader.read_metadata()?;
    stone.check_structure()?;
    let plan = Plan::new(&stone)?;
    let mut stats = ExtractStats {
        package: stone.name().map(str::to_owned),
        ..ExtractStats::default()
    };
    let owner = |entry: &LayoutEntry| options.owners.then_some((entry.uid, entry.gid));

    let mut parents = ParentCache::default();
    for entry in &plan.directories {
        root.create_dir_all_beneath(&entry.path, DEFAULT_DIR_MODE)?;
        stats.directories += 1;
    }
    for (entry, target) in &plan.symlinks {
        let parent = parents.get(root, &entry.path)?;
        let name = entry.path.file_name();
        parent.symlink(target, name)?;
        if let Some((uid, gid)) = owner(entry) {
            parent.set_symlink_owner(name, uid, gid)?;
        }
        stats.symlinks += 1;
    }

    let mut pending = plan.files;
    let mut buf = vec![0u8; 256 * 1024];
    if let Some(mut content) = reader.content(&stone)? {
        while let Some(mut asset) = content.next_asset()? {
            let Some(entries) = pending.remove(&asset.entry().digest) else {
                continue; // unused by the layout, or a second range with the same name
            };
            let (first, rest) = entries
                .split_first()
                .expect("the plan lists at least one path per asset");
            let parent = parents.get(root, &first.path)?;
            let name = first.path.file_name();
            let mut file = parent.create_file(name, 0o600)?;
            let shown = root.path().join(first.path.as_os_str());
            let written = copy_asset(&mut asset, &mut file, &mut buf, &shown)
                .and_then(|size| asset.finish().map(|()| size).map_err(ExtractError::from));
            let size = match written {
                Ok(size) => size,
                Err(err) => {
                    // Best effort: the bytes are wrong or incomplete, so the file must go.
                    let _ = rustix::fs::unlinkat(parent, name, rustix::fs::AtFlags::empty());
                    return Err(err);
                }
            };
            parent.set_file_attrs(name, &file, file_attrs(first, options))?;
            stats.files += 1;
            stats.bytes += size;
            for other in rest {
                let parent = parents.get(root, &other.path)?;
                let name = other.path.file_name();
                let mut copy = parent.create_file(name, 0o600)?;
                let shown = root.path().join(other.path.as_os_str());
                file.seek(SeekFrom::Start(0))
                    .and_then(|_| io::copy(&mut file, &mut copy))
                    .map_err(|source| ExtractError::Write {
                        path: shown,
                        source,
                    })?;
                parent.set_file_attrs(name, &copy, file_attrs(other, options))?;
                stats.files += 1;
                stats.bytes += size;
            }
        }
        content.finish()?;
    }
    reader.finish()?;
    if let Some((hash, entries)) = pending.into_iter().next() {
        return Err(ExtractError::MissingContent {
            package: plan.package,
            path: entries[0].path.clone(),
            hash,
        });
    }

    // Modes last and deepest first, so a read-only directory does not block its children.
    for entry in plan.directories.iter().rev() {
        let dir = root.open_dir_beneath(&entry.path)?;
        dir.set_attrs(Attrs {
            mode: entry.mode,
            owner: owner(entry),
        })?;
    }
    Ok(stats)
}

fn file_attrs(entry: &LayoutEntry, options: ExtractOptions) -> Attrs {
    Attrs {
        mode: entry.mode,
        owner: options.owners.then_some((entry.uid, entry.gid)),
    }
}

/// Streams one asset into `file`, keeping decode errors and write errors apart.
fn copy_asset(
    asset: &mut mossfs_format::Asset<'_, '_, impl Read>,
    file: &mut File,
    buf: &mut [u8],
    path: &Path,
) -> Result<u64, ExtractError> {
    let mut total = 0;
    loop {
        let n = asset.read_checked(buf)?;
        if n == 0 {
            return Ok(total);
        }
        file.write_all(&buf[..n])
            .map_err(|source| ExtractError::Write {
                path: path.to_owned(),
                source,
            })?;
        total += n as u64;
    }
}

/// The layout, checked and sorted into what is created when.
struct Plan<'s> {
    package: String,
    directories: Vec<&'s LayoutEntry>,
    symlinks: Vec<(&'s LayoutEntry, &'s [u8])>,
    /// Each asset and the entries that use it, in layout order.
    files: HashMap<AssetHash, Vec<&'s LayoutEntry>>,
}

impl<'s> Plan<'s> {
    fn new(stone: &'s Stone) -> Result<Self, ExtractError> {
        let package = stone.name().unwrap_or("(unnamed)").to_owned();
        let mut kinds: HashMap<&RelPath, &EntryKind> = HashMap::new();
        for entry in &stone.layout {
            if kinds.insert(&entry.path, &entry.kind).is_some() {
                return Err(ExtractError::Duplicate {
                    package,
                    path: entry.path.clone(),
                });
            }
        }
        let mut plan = Plan {
            package,
            directories: Vec::new(),
            symlinks: Vec::new(),
            files: HashMap::new(),
        };
        let mut checked: HashSet<RelPath> = HashSet::new();
        for entry in &stone.layout {
            plan.check_ancestors(entry, &kinds, &mut checked)?;
            match &entry.kind {
                EntryKind::Regular(hash) => plan.files.entry(*hash).or_default().push(entry),
                EntryKind::Symlink(target) => plan.symlinks.push((entry, target)),
                EntryKind::Directory => plan.directories.push(entry),
                other => {
                    return Err(ExtractError::Unsupported {
                        package: plan.package,
                        path: entry.path.clone(),
                        kind: other.name(),
                    });
                }
            }
        }
        plan.directories.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(plan)
    }

    /// Every ancestor of `entry` must be a directory, listed or implicit.
    fn check_ancestors(
        &self,
        entry: &LayoutEntry,
        kinds: &HashMap<&RelPath, &EntryKind>,
        checked: &mut HashSet<RelPath>,
    ) -> Result<(), ExtractError> {
        let mut ancestor = entry.path.parent();
        while let Some(path) = ancestor {
            if checked.contains(&path) {
                return Ok(());
            }
            if let Some(kind) = kinds.get(&path)
                && **kind != EntryKind::Directory
            {
                return Err(ExtractError::BeneathNonDirectory {
                    package: self.package.clone(),
                    path: entry.path.clone(),
                    ancestor: path,
                    kind: kind.name(),
                });
            }
            ancestor = path.parent();
            checked.insert(path);
        }
        Ok(())
    }
}

/// The directory of the last entry written. Assets arrive by size, not by path, but
/// neighbours still share parents often enough to save the walk.
#[derive(Default)]
struct ParentCache {
    last: Option<(RelPath, DirFd)>,
}

impl ParentCache {
    /// The parent directory of `path`, created if missing; the root for top-level entries.
    fn get<'a>(&'a mut self, root: &'a DirFd, path: &RelPath) -> Result<&'a DirFd, DirError> {
        let Some(parent) = path.parent() else {
            return Ok(root);
        };
        let hit = matches!(&self.last, Some((cached, _)) if *cached == parent);
        if !hit {
            let dir = root.create_dir_all_beneath(&parent, DEFAULT_DIR_MODE)?;
            self.last = Some((parent, dir));
        }
        Ok(&self.last.as_ref().expect("filled above").1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::Cursor;
    use std::os::unix::fs::MetadataExt;

    use mossfs_format::{FileType, Meta, Writer, WriterOptions, layout_index};

    fn entry(path: &str, mode: u32, kind: EntryKind) -> LayoutEntry {
        LayoutEntry {
            uid: 0,
            gid: 0,
            mode: kind.mode_bits() | mode,
            tag: 0,
            kind,
            path: RelPath::new(path).unwrap(),
        }
    }

    fn file(path: &str, mode: u32, bytes: &[u8]) -> LayoutEntry {
        entry(path, mode, EntryKind::Regular(AssetHash::of(bytes)))
    }

    /// A stone in memory, its content made of `assets`, written by the real writer.
    fn stone(layout: &[LayoutEntry], assets: &[&[u8]]) -> Vec<u8> {
        let meta = Meta {
            name: "test".into(),
            version: "1".into(),
            ..Meta::default()
        };
        let bytes: HashMap<AssetHash, Vec<u8>> = assets
            .iter()
            .map(|a| (AssetHash::of(a), a.to_vec()))
            .collect();
        let index = layout_index(assets.iter().map(|a| (AssetHash::of(a), a.len() as u64)));
        let options = WriterOptions {
            level: 3,
            threads: 0,
        };
        let mut writer = Writer::new(Cursor::new(Vec::new()), FileType::Binary, options).unwrap();
        writer.add_meta(&meta.to_records()).unwrap();
        writer.add_layout(layout).unwrap();
        writer.add_index(&index).unwrap();
        writer.add_content(&index, &bytes).unwrap();
        writer.finish().unwrap().into_inner()
    }

    fn sandbox() -> (tempfile::TempDir, DirFd) {
        let sandbox = tempfile::tempdir().unwrap();
        std::fs::create_dir(sandbox.path().join("root")).unwrap();
        let root = DirFd::open(sandbox.path().join("root")).unwrap();
        (sandbox, root)
    }

    const NO_OWNERS: ExtractOptions = ExtractOptions { owners: false };

    #[test]
    fn recreates_files_duplicates_symlinks_and_directories() {
        let layout = [
            file("bin/tool", 0o755, b"#!/bin/sh\n"),
            file("share/a", 0o644, b"same"),
            file("share/b/c", 0o600, b"same"),
            file("share/empty", 0o644, b""),
            entry("share/link", 0o777, EntryKind::Symlink(b"a".to_vec())),
            entry("share/locked", 0o500, EntryKind::Directory),
            entry("share/locked/inner", 0o750, EntryKind::Directory),
        ];
        let bytes = stone(&layout, &[b"#!/bin/sh\n", b"same", b""]);
        let (_sandbox, root) = sandbox();
        let stats = extract(bytes.as_slice(), &root, NO_OWNERS).unwrap();
        assert_eq!(
            stats,
            ExtractStats {
                package: Some("test".into()),
                files: 4,
                symlinks: 1,
                directories: 2,
                bytes: 10 + 4 + 4,
            }
        );
        let at = |p: &str| root.path().join(p);
        assert_eq!(std::fs::read(at("share/b/c")).unwrap(), b"same");
        assert_eq!(std::fs::read(at("share/empty")).unwrap(), b"");
        assert_eq!(std::fs::metadata(at("bin/tool")).unwrap().mode(), 0o100755);
        assert_eq!(std::fs::metadata(at("share/b/c")).unwrap().mode(), 0o100600);
        assert_eq!(std::fs::metadata(at("share/b")).unwrap().mode(), 0o040755);
        assert_eq!(
            std::fs::metadata(at("share/locked")).unwrap().mode(),
            0o040500
        );
        assert_eq!(
            std::fs::read_link(at("share/link")).unwrap().as_os_str(),
            "a"
        );
        // Duplicates are copies, not hardlinks.
        assert_eq!(std::fs::metadata(at("share/a")).unwrap().nlink(), 1);
    }

    #[test]
    fn refuses_a_file_beneath_a_symlink_before_writing_anything() {
        let layout = [
            entry("a", 0o777, EntryKind::Symlink(b"/etc".to_vec())),
            file("a/passwd", 0o644, b"root::0:0::/:/bin/sh\n"),
            file("z", 0o644, b"z"),
        ];
        let bytes = stone(&layout, &[b"root::0:0::/:/bin/sh\n", b"z"]);
        let (_sandbox, root) = sandbox();
        let err = extract(bytes.as_slice(), &root, NO_OWNERS).unwrap_err();
        assert!(
            matches!(&err, ExtractError::BeneathNonDirectory { path, ancestor, kind: "symlink", .. }
                if path.as_bytes() == b"a/passwd" && ancestor.as_bytes() == b"a"),
            "{err:?}"
        );
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    }

    #[test]
    fn never_follows_a_symlink_already_in_the_root() {
        let outside = tempfile::tempdir().unwrap();
        let (_sandbox, root) = sandbox();
        std::os::unix::fs::symlink(outside.path(), root.path().join("a")).unwrap();
        let bytes = stone(&[file("a/passwd", 0o644, b"x")], &[b"x"]);
        let err = extract(bytes.as_slice(), &root, NO_OWNERS).unwrap_err();
        assert!(
            matches!(&err, ExtractError::Dir(DirError::Symlink { path }) if path == &root.path().join("a")),
            "{err:?}"
        );
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn refuses_duplicate_paths_and_devices() {
        let (_sandbox, root) = sandbox();
        let twice = [file("x", 0o644, b"1"), file("x", 0o644, b"1")];
        let err = extract(stone(&twice, &[b"1"]).as_slice(), &root, NO_OWNERS).unwrap_err();
        assert!(matches!(err, ExtractError::Duplicate { .. }), "{err:?}");
        let fifo = [entry("p", 0o644, EntryKind::Fifo)];
        let err = extract(stone(&fifo, &[]).as_slice(), &root, NO_OWNERS).unwrap_err();
        assert!(
            matches!(err, ExtractError::Unsupported { kind: "fifo", .. }),
            "{err:?}"
        );
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_corrupt_stone_is_a_decode_error() {
        let mut bytes = stone(&[file("x", 0o644, b"hello")], &[b"hello"]);
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let (_sandbox, root) = sandbox();
        let err = extract(bytes.as_slice(), &root, NO_OWNERS).unwrap_err();
        assert!(matches!(err, ExtractError::Decode(_)), "{err:?}");
        assert!(!root.path().join("x").exists());
    }
}
