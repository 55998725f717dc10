//! The directories no directory object describes: the mount's root and the debug view.
//!
//! ```text
//! MNT/                         synthetic, r-xr-xr-x
//!   usr/                       the state's root directory object (mode 0755, as a blit)
//!   .mossfs/                   only with the debug view
//!     conflicts/usr/<path>/    one directory per conflicted path, mirroring it below usr
//!       <package>              each contender, as that package ships it
//! ```
//!
//! A conflicted path `usr/bin/tool` shipped differently by `a` and `b` shows up as
//! `.mossfs/conflicts/usr/bin/tool/a` and `.../tool/b`: regular files with each one's
//! bytes (read from the store, unpacked on first read like any other file), symlinks with
//! each one's text, directories with each one's tree, so `diff` and `ls -l` compare them
//! directly. A path that is both conflicted and the parent of another conflicted path holds
//! both its contenders and the next component; a contender whose name is already taken gets
//! `~2`, `~3`, ... appended.
//!
//! Everything here is built when the mount starts, from the state's list of conflicts: it
//! costs O(conflicts), never a walk of the tree. Its entries get their inode numbers then,
//! before any tree entry, so the root is always inode 1.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use mossfs_db::{Conflict, Node, NodeKind, Query, TreeHash};
use mossfs_format::PackageId;
use parking_lot::Mutex;

use super::inode::{Inode, Inodes, ROOT_INO};
use super::snapshot::Snapshots;

/// The name of the debug view's control directory at the mount's root.
pub const CONTROL_DIR: &str = ".mossfs";

/// The extended attribute that names an entry's package in the debug view.
pub const OWNER_XATTR: &str = "user.mossfs.owner";

/// One entry of a synthetic directory.
pub(crate) struct SynthEntry {
    pub name: Vec<u8>,
    pub ino: u64,
    /// The tree node it shows, for `usr` and contenders; `None` for synthetic directories.
    pub node: Option<Node>,
}

/// A synthetic directory: its entries, sorted by name.
pub(crate) struct SynthDir {
    pub entries: Vec<SynthEntry>,
}

impl SynthDir {
    pub(crate) fn find(&self, name: &[u8]) -> Option<(usize, &SynthEntry)> {
        let index = self
            .entries
            .binary_search_by(|entry| entry.name.as_slice().cmp(name))
            .ok()?;
        Some((index, &self.entries[index]))
    }
}

/// Every synthetic directory of a mount.
pub(crate) struct Synthetic {
    dirs: Vec<SynthDir>,
}

#[derive(Default)]
struct Trie {
    children: BTreeMap<Vec<u8>, Trie>,
    nodes: Vec<(Vec<u8>, Node)>,
}

impl Trie {
    fn dir(&mut self, name: &[u8]) -> &mut Trie {
        self.children.entry(name.to_vec()).or_default()
    }
}

impl Synthetic {
    /// Numbers the root (and, with `debug`, the control directory) in `inodes`, which
    /// must be empty. `names` gives the name a contender's directory entry takes.
    pub(crate) fn build(
        inodes: &Inodes,
        root: TreeHash,
        conflicts: &[Conflict],
        debug: bool,
        names: impl Fn(Option<PackageId>) -> String,
    ) -> Synthetic {
        let mut top = Trie::default();
        top.nodes.push((
            b"usr".to_vec(),
            Node {
                mode: 0o040000 | crate::blit::ROOT_MODE,
                uid: 0,
                gid: 0,
                owner: None,
                kind: NodeKind::Directory(root),
            },
        ));
        if debug {
            let mirror = top
                .dir(CONTROL_DIR.as_bytes())
                .dir(b"conflicts")
                .dir(b"usr");
            for conflict in conflicts {
                let mut dir = &mut *mirror;
                for component in conflict
                    .path
                    .split(|&b| b == b'/')
                    .filter(|c| !c.is_empty())
                {
                    dir = dir.dir(component);
                }
                for node in &conflict.contenders {
                    dir.nodes
                        .push((names(node.owner).into_bytes(), node.clone()));
                }
            }
        }
        let mut synthetic = Synthetic { dirs: Vec::new() };
        let root = synthetic.add(inodes, ROOT_INO, 0, top);
        debug_assert_eq!(root, ROOT_INO, "the root is numbered first");
        synthetic
    }

    fn add(&mut self, inodes: &Inodes, parent: u64, slot: usize, trie: Trie) -> u64 {
        let index = self.dirs.len();
        let ino = inodes.push(Inode::synthetic(parent, slot, index));
        self.dirs.push(SynthDir {
            entries: Vec::new(),
        });
        let mut taken: BTreeSet<Vec<u8>> = trie.children.keys().cloned().collect();
        let mut items: BTreeMap<Vec<u8>, Option<Node>> = trie
            .children
            .keys()
            .map(|name| (name.clone(), None))
            .collect();
        for (name, node) in trie.nodes {
            let mut unique = name.clone();
            let mut n = 2;
            while !taken.insert(unique.clone()) {
                unique = [name.as_slice(), format!("~{n}").as_bytes()].concat();
                n += 1;
            }
            items.insert(unique, Some(node));
        }
        let mut children = trie.children;
        let mut entries = Vec::with_capacity(items.len());
        for (slot, (name, node)) in items.into_iter().enumerate() {
            let child = match &node {
                Some(node) => inodes.push_node(ino, slot, node),
                None => {
                    let sub = children
                        .remove(&name)
                        .expect("every unnamed item is a child");
                    self.add(inodes, ino, slot, sub)
                }
            };
            entries.push(SynthEntry {
                name,
                ino: child,
                node,
            });
        }
        self.dirs[index].entries = entries;
        ino
    }

    /// Synthetic directory number `index`.
    pub(crate) fn dir(&self, index: u32) -> Option<&SynthDir> {
        self.dirs.get(index as usize)
    }
}

/// `name-version` of each owner package, read once per package.
#[derive(Default)]
pub(crate) struct Labels {
    cache: Mutex<HashMap<PackageId, Vec<u8>>>,
}

impl Labels {
    /// The label of `package`, or its id when the database no longer knows it.
    pub(crate) fn get(&self, snapshots: &Snapshots, package: PackageId) -> Vec<u8> {
        if let Some(label) = self.cache.lock().get(&package) {
            return label.clone();
        }
        let label = snapshots
            .with(|txn| txn.package(&package))
            .ok()
            .flatten()
            .map(|record| format!("{}-{}", record.meta.name, record.meta.version))
            .unwrap_or_else(|| package.to_string())
            .into_bytes();
        self.cache.lock().insert(package, label.clone());
        label
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mossfs_format::AssetHash;

    fn contender(owner: u8, bytes: &[u8]) -> Node {
        Node {
            mode: 0o100644,
            uid: 0,
            gid: 0,
            owner: Some(PackageId([owner; 32])),
            kind: NodeKind::Regular {
                asset: AssetHash::of(bytes),
                size: bytes.len() as u64,
            },
        }
    }

    fn names(owner: Option<PackageId>) -> String {
        match owner {
            Some(PackageId([1, ..])) => "a".into(),
            Some(_) => "lib".into(),
            None => "unowned".into(),
        }
    }

    #[test]
    fn conflicts_mirror_their_paths() {
        let conflicts = [
            Conflict {
                path: b"lib".to_vec(),
                contenders: vec![contender(1, b"x"), contender(2, b"y")],
            },
            Conflict {
                path: b"lib/lib".to_vec(),
                contenders: vec![contender(1, b"x")],
            },
        ];
        let inodes = Inodes::default();
        let view = Synthetic::build(&inodes, TreeHash(7), &conflicts, true, names);
        let root = view.dir(0).unwrap();
        let names_of = |dir: &SynthDir| -> Vec<String> {
            dir.entries
                .iter()
                .map(|e| String::from_utf8(e.name.clone()).unwrap())
                .collect()
        };
        assert_eq!(names_of(root), [".mossfs", "usr"]);
        let mut dir = root;
        for name in [".mossfs", "conflicts", "usr", "lib"] {
            let (_, entry) = dir.find(name.as_bytes()).unwrap();
            let inode = inodes.get(entry.ino).unwrap();
            let super::super::inode::Kind::Synthetic { dir: index } = inode.kind else {
                panic!("{name} is a synthetic directory");
            };
            dir = view.dir(index).unwrap();
        }
        // "lib" is both the next component and a contender's name.
        assert_eq!(names_of(dir), ["a", "lib", "lib~2"]);
        assert!(dir.find(b"lib").unwrap().1.node.is_none());
        assert!(dir.find(b"lib~2").unwrap().1.node.is_some());
    }

    #[test]
    fn the_plain_view_is_just_usr() {
        let inodes = Inodes::default();
        let view = Synthetic::build(&inodes, TreeHash(7), &[], false, names);
        assert_eq!(view.dir(0).unwrap().entries.len(), 1);
        assert_eq!(inodes.len(), 2);
    }
}
