//! The floor of figure (a): a blitted tree recreated by a serial syscall loop.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, Mode, OFlags};

use super::Result;

/// A blitted tree as a flat list in depth-first order, ready to be recreated by the floor.
pub struct Snapshot {
    /// Every entry below the root, parents before children.
    pub entries: Vec<Entry>,
    /// Regular files that are links of a store file.
    pub linked: usize,
    /// Regular files that are not (the empty file, which mossfs creates anew each time).
    pub fresh: usize,
}

pub struct Entry {
    /// Directories between the tree's root and this entry.
    depth: usize,
    name: OsString,
    kind: Kind,
}

pub enum Kind {
    Directory,
    /// A hardlink of this store file.
    Link(PathBuf),
    Symlink(OsString),
    /// A regular file that is no store file's link (the empty file): created fresh.
    Fresh,
}

impl Snapshot {
    /// Walks `usr` once, sorted, skipping `.stateID` (mossfs's marker, not a tree entry);
    /// regular files are matched to the store file they are a link of by inode.
    pub fn of(usr: &Path, assets: &Path) -> Result<Snapshot> {
        let mut store = HashMap::new();
        let mut stack = vec![assets.to_owned()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir)? {
                let entry = entry?;
                let meta = entry.metadata()?;
                if meta.is_dir() {
                    stack.push(entry.path());
                } else {
                    store.insert(meta.ino(), entry.path());
                }
            }
        }
        let mut snapshot = Snapshot {
            entries: Vec::new(),
            linked: 0,
            fresh: 0,
        };
        snapshot.walk(usr, 0, &store)?;
        Ok(snapshot)
    }

    fn walk(&mut self, dir: &Path, depth: usize, store: &HashMap<u64, PathBuf>) -> Result<()> {
        let mut names: Vec<OsString> = fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for name in names {
            if depth == 0 && name == ".stateID" {
                continue;
            }
            let path = dir.join(&name);
            let meta = fs::symlink_metadata(&path)?;
            let kind = if meta.is_dir() {
                Kind::Directory
            } else if meta.is_symlink() {
                Kind::Symlink(fs::read_link(&path)?.into_os_string())
            } else if let Some(source) = store.get(&meta.ino()) {
                self.linked += 1;
                Kind::Link(source.clone())
            } else {
                self.fresh += 1;
                Kind::Fresh
            };
            let is_dir = matches!(kind, Kind::Directory);
            self.entries.push(Entry { depth, name, kind });
            if is_dir {
                self.walk(&path, depth + 1, store)?;
            }
        }
        Ok(())
    }

    /// The floor: one serial syscall per entry into the empty directory `target`, with no
    /// modes, owners, checks or sync.
    pub fn replay(&self, target: &Path) -> Result<()> {
        let open = |dir: &OwnedFd, name: &OsStr| {
            let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC;
            rustix::fs::openat(dir, name, flags, Mode::empty())
        };
        let mut stack = vec![rustix::fs::open(
            target,
            OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?];
        for entry in &self.entries {
            stack.truncate(entry.depth + 1);
            let dir = stack.last().expect("the target stays on the stack");
            let name = entry.name.as_os_str();
            match &entry.kind {
                Kind::Directory => {
                    rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o755))?;
                    let child = open(dir, name)?;
                    stack.push(child);
                }
                Kind::Link(source) => rustix::fs::linkat(CWD, source, dir, name, AtFlags::empty())?,
                Kind::Symlink(text) => rustix::fs::symlinkat(text.as_bytes(), dir, name)?,
                Kind::Fresh => {
                    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC;
                    rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o644))?;
                }
            }
        }
        Ok(())
    }
}
