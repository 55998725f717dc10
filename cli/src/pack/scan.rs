//! Walking the directory to pack: every entry below it, in sorted path order, with what
//! `lstat` says about it and, for regular files, the xxh3-128 of their bytes.
//!
//! Symlinks are recorded, never followed, and files are opened with `O_NOFOLLOW`, so a link
//! in the tree cannot pull outside bytes into the stone. Hashing runs on a rayon pool, one
//! file per task. The `demo` uses the same walk to compare the extracted tree with the
//! sample it packed.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use mossfs_format::{AssetHash, AssetHasher, RelPath};
use rayon::prelude::*;

use crate::error::CliError;

/// One entry below the packed directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its path relative to the packed directory.
    pub path: RelPath,
    /// The full `st_mode`, type bits included.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// What it is.
    pub kind: Kind,
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A regular file: its size and, once [`scan`] returns, its hash.
    File {
        /// Bytes.
        size: u64,
        /// The xxh3-128 of the bytes.
        hash: AssetHash,
    },
    /// A symlink and its link text.
    Symlink(Vec<u8>),
    /// A directory, and whether it has no entries.
    Dir {
        /// No entries below it.
        empty: bool,
    },
}

/// Walks `root` (which is not itself an entry) and hashes every regular file on `pool`.
/// Entries come in sorted order, component by component, each directory before what it
/// holds.
pub fn scan(root: &Path, pool: &rayon::ThreadPool) -> Result<Vec<Entry>, CliError> {
    let mut entries = Vec::new();
    let mut stack: Vec<RelPath> = children(root, None)?;
    while let Some(path) = stack.pop() {
        let full = root.join(path.as_os_str());
        let meta = std::fs::symlink_metadata(&full).map_err(|source| CliError::Scan {
            path: full.clone(),
            source,
        })?;
        let file_type = meta.file_type();
        let kind = if file_type.is_file() {
            Kind::File {
                size: meta.len(),
                hash: AssetHash(0),
            }
        } else if file_type.is_symlink() {
            let target = std::fs::read_link(&full).map_err(|source| CliError::Scan {
                path: full.clone(),
                source,
            })?;
            Kind::Symlink(target.into_os_string().into_vec())
        } else if file_type.is_dir() {
            let below = children(root, Some(&path))?;
            let empty = below.is_empty();
            stack.extend(below);
            Kind::Dir { empty }
        } else {
            return Err(CliError::Unpackable {
                path: full,
                kind: special_kind(&file_type),
            });
        };
        entries.push(Entry {
            path,
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            kind,
        });
    }
    pool.install(|| {
        entries
            .par_iter_mut()
            .try_for_each(|entry| -> Result<(), CliError> {
                let Kind::File { size, hash } = &mut entry.kind else {
                    return Ok(());
                };
                let full = root.join(entry.path.as_os_str());
                (*hash, *size) = hash_file(&full).map_err(|source| CliError::Scan {
                    path: full.clone(),
                    source,
                })?;
                Ok(())
            })
    })?;
    Ok(entries)
}

/// The entries of one directory, sorted in reverse so that popping yields them in order.
fn children(root: &Path, dir: Option<&RelPath>) -> Result<Vec<RelPath>, CliError> {
    let full = dir.map_or_else(|| root.to_owned(), |d| root.join(d.as_os_str()));
    let read = |source| CliError::Scan {
        path: full.clone(),
        source,
    };
    let mut names = Vec::new();
    for item in std::fs::read_dir(&full).map_err(read)? {
        names.push(item.map_err(read)?.file_name().into_vec());
    }
    names.sort_unstable_by(|a, b| b.cmp(a));
    names
        .into_iter()
        .map(|name| {
            let path = match dir {
                Some(d) => d.join(&name),
                None => RelPath::new(name.clone()),
            };
            path.map_err(|source| CliError::BadPath {
                path: full.join(OsStr::from_bytes(&name)),
                source,
            })
        })
        .collect()
}

/// Opens a file to pack without following a symlink that replaced it since the walk.
pub fn open_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

/// The xxh3-128 and length of a file's bytes.
fn hash_file(path: &Path) -> io::Result<(AssetHash, u64)> {
    AssetHasher::of_reader(open_nofollow(path)?, 128 * 1024)
}

fn special_kind(file_type: &std::fs::FileType) -> &'static str {
    if file_type.is_fifo() {
        "fifo"
    } else if file_type.is_socket() {
        "socket"
    } else if file_type.is_char_device() {
        "character device"
    } else if file_type.is_block_device() {
        "block device"
    } else {
        "special file"
    }
}
