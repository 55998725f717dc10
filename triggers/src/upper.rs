//! What transaction triggers wrote: the upper layer of the `/usr` overlay, read back as a
//! list of changes to the staging tree (DESIGN.md §10).
//!
//! Overlayfs records a deletion as a whiteout (a character device 0:0) and a folder whose
//! lower contents are hidden (deleted and made again) as an opaque folder
//! (`trusted.overlay.opaque = y`). Everything else in the upper layer is a whole new
//! entry: a file written or changed (copied up), a link, a folder made or whose metadata
//! changed. With `metacopy` off, a copied-up file holds all its bytes.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// One change under `/usr`, with its path relative to `/usr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The entry at this path is gone.
    Removed {
        /// Relative to `/usr`.
        path: Vec<u8>,
    },
    /// A folder, new or changed. When `opaque`, nothing of the old folder's contents
    /// remains but what later changes below it add.
    Directory {
        /// Relative to `/usr`.
        path: Vec<u8>,
        /// Full `st_mode`.
        mode: u32,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
        /// Whether it hides the old contents.
        opaque: bool,
    },
    /// A regular file, new or rewritten; its bytes are at `source` in the upper layer.
    File {
        /// Relative to `/usr`.
        path: Vec<u8>,
        /// Where its bytes are now.
        source: PathBuf,
        /// Full `st_mode`.
        mode: u32,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
    },
    /// A symlink, new or changed.
    Symlink {
        /// Relative to `/usr`.
        path: Vec<u8>,
        /// Its link text.
        target: Vec<u8>,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
    },
    /// A device, fifo or socket: not something a state can hold.
    Special {
        /// Relative to `/usr`.
        path: Vec<u8>,
    },
}

impl Change {
    /// The path, relative to `/usr`.
    pub fn path(&self) -> &[u8] {
        match self {
            Change::Removed { path }
            | Change::Directory { path, .. }
            | Change::File { path, .. }
            | Change::Symlink { path, .. }
            | Change::Special { path } => path,
        }
    }
}

/// Reads the upper layer at `upper`, parents before children, siblings by name.
pub fn changes(upper: &Path) -> std::io::Result<Vec<Change>> {
    let mut out = Vec::new();
    walk(upper, Vec::new(), &mut out)?;
    Ok(out)
}

fn walk(dir: &Path, rel: Vec<u8>, out: &mut Vec<Change>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let mut path = rel.clone();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(entry.file_name().as_bytes());
        let full = entry.path();
        let meta = std::fs::symlink_metadata(&full)?;
        let kind = meta.file_type();
        if kind.is_char_device() && meta.rdev() == 0 {
            out.push(Change::Removed { path });
        } else if kind.is_dir() {
            let opaque = is_opaque(&full);
            out.push(Change::Directory {
                path: path.clone(),
                mode: meta.mode(),
                uid: meta.uid(),
                gid: meta.gid(),
                opaque,
            });
            walk(&full, path, out)?;
        } else if kind.is_file() {
            out.push(Change::File {
                path,
                source: full,
                mode: meta.mode(),
                uid: meta.uid(),
                gid: meta.gid(),
            });
        } else if kind.is_symlink() {
            let target = std::fs::read_link(&full)?.as_os_str().as_bytes().to_vec();
            out.push(Change::Symlink {
                path,
                target,
                uid: meta.uid(),
                gid: meta.gid(),
            });
        } else {
            out.push(Change::Special { path });
        }
    }
    Ok(())
}

fn is_opaque(dir: &Path) -> bool {
    let mut value = [0u8; 4];
    matches!(
        rustix::fs::lgetxattr(dir, "trusted.overlay.opaque", &mut value),
        Ok(1) if value[0] == b'y'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_links_and_folders_are_read_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let up = dir.path();
        std::fs::create_dir_all(up.join("lib/x")).expect("mkdir");
        std::fs::write(up.join("lib/ld.so.cache"), b"cache").expect("write");
        std::os::unix::fs::symlink("ld.so.cache", up.join("lib/link")).expect("symlink");
        let got: Vec<_> = changes(up)
            .expect("reads")
            .iter()
            .map(|c| String::from_utf8_lossy(c.path()).into_owned())
            .collect();
        assert_eq!(got, ["lib", "lib/ld.so.cache", "lib/link", "lib/x"]);
    }
}
