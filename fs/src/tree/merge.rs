//! Merging placed records into directory objects, bottom-up, in one pass.
//!
//! Records arrive sorted in tree order (see [`super::place`]). A stack holds the open
//! directories from the root down to the current location: a location that is not below
//! the top closes it, which encodes and stores its object and hands the hash to its
//! parent, so every child is stored before its parent. Each object holds its entries in
//! bytewise order because siblings arrive in that order.

use mossfs_db::{DirEntry, TreeHash, WriteTxn, tree};

use super::conflict::{Decision, PendingConflict, decide, dir_conflict, leaf_conflict};
use super::input::Inputs;
use super::place::{Placed, Placement, key_to_path};
use super::resolve::Origin;
use super::{TreeError, implied_dir};

/// No package, for `beneath` of a directory nothing has been placed in yet.
const NONE: u32 = u32::MAX;

struct OpenDir {
    /// The record whose key this directory's key is a prefix of; `None` for the root.
    anchor: Option<Placed>,
    /// Length of this directory's key.
    len: usize,
    name: Vec<u8>,
    record: Option<Origin>,
    pending: Option<PendingConflict>,
    /// The first package by priority that ships this directory's location.
    own: u32,
    /// The first package by priority that ships anything below it.
    beneath: u32,
    children: Vec<DirEntry>,
}

/// The merged tree: its root, entry count and conflicts (unsorted).
pub(crate) struct Merged {
    pub(crate) root: TreeHash,
    pub(crate) entries: u64,
    pub(crate) conflicts: Vec<mossfs_db::Conflict>,
    /// Every path that two or more packages ship, with those packages by priority.
    pub(crate) shared: Vec<(Vec<u8>, Vec<u32>)>,
}

struct Merge<'t, 'db, 'i, 'p> {
    txn: &'t mut WriteTxn<'db>,
    inputs: &'i Inputs<'p>,
    placement: &'i Placement,
    stack: Vec<OpenDir>,
    /// Emptied child lists, reused so that each directory does not allocate anew.
    spare: Vec<Vec<DirEntry>>,
    entries: u64,
    conflicts: Vec<mossfs_db::Conflict>,
    shared: Vec<(Vec<u8>, Vec<u32>)>,
}

/// Builds and stores every directory object.
pub(crate) fn merge(
    txn: &mut WriteTxn<'_>,
    inputs: &Inputs<'_>,
    placement: &Placement,
) -> Result<Merged, TreeError> {
    let mut m = Merge {
        txn,
        inputs,
        placement,
        stack: vec![OpenDir {
            anchor: None,
            len: 0,
            name: Vec::new(),
            record: None,
            pending: None,
            own: NONE,
            beneath: NONE,
            children: Vec::new(),
        }],
        spare: Vec::new(),
        entries: 0,
        conflicts: Vec::new(),
        shared: Vec::new(),
    };
    let placed = &placement.placed;
    let mut start = 0;
    while start < placed.len() {
        let key = placement.key(&placed[start]);
        let mut end = start + 1;
        while end < placed.len() && placement.key(&placed[end]) == key {
            end += 1;
        }
        let has_children = placed
            .get(end)
            .is_some_and(|next| is_below(placement.key(next), key));
        m.add(&placed[start..end], key, has_children)?;
        start = end;
    }
    while m.stack.len() > 1 {
        m.close()?;
    }
    let root = m.stack.pop().expect("the root is never closed early");
    let root = m.store(&root.children, b"")?;
    Ok(Merged {
        root,
        entries: m.entries,
        conflicts: m.conflicts,
        shared: m.shared,
    })
}

/// Whether `key` lies below the directory `dir` (the root is the empty key).
fn is_below(key: &[u8], dir: &[u8]) -> bool {
    dir.is_empty() || (key.len() > dir.len() && key[dir.len()] == 0 && key.starts_with(dir))
}

impl Merge<'_, '_, '_, '_> {
    fn top_key(&self) -> &[u8] {
        let top = self.stack.last().expect("the root stays on the stack");
        match &top.anchor {
            Some(anchor) => &self.placement.key(anchor)[..top.len],
            None => b"",
        }
    }

    /// Adds the records at one location.
    fn add(&mut self, group: &[Placed], key: &[u8], has_children: bool) -> Result<(), TreeError> {
        while self.stack.len() > 1 && !is_below(key, self.top_key()) {
            self.close()?;
        }
        // Open the parents that no record names: they are implied.
        let anchor = group[0];
        let top_len = self.stack.last().expect("root").len;
        let mut from = if top_len == 0 { 0 } else { top_len + 1 };
        while let Some(at) = key[from..].iter().position(|&b| b == 0) {
            let end = from + at;
            self.open(anchor, end, &key[from..end], None, None, NONE);
            from = end + 1;
        }
        let name = &key[from..];
        let own = anchor.origin.package;
        if group.len() > 1 {
            // In priority order, so equal packages are neighbours.
            let mut owners: Vec<u32> = group.iter().map(|p| p.origin.package).collect();
            owners.dedup();
            if owners.len() > 1 {
                self.shared.push((key_to_path(key), owners));
            }
        }
        match decide(self.inputs, group, has_children) {
            Decision::Leaf { shown, conflict } => {
                if let Some(origins) = conflict {
                    let conflict = leaf_conflict(self.inputs, key_to_path(key), &origins);
                    self.conflicts.push(conflict);
                }
                let node = self.inputs.node(shown, None);
                let top = self.stack.last_mut().expect("root");
                top.beneath = top.beneath.min(own);
                top.children.push(DirEntry {
                    name: name.to_vec(),
                    node,
                });
                self.entries += 1;
            }
            Decision::Dir { record, conflict } => {
                self.open(anchor, key.len(), name, record, conflict, own);
            }
        }
        Ok(())
    }

    fn open(
        &mut self,
        anchor: Placed,
        len: usize,
        name: &[u8],
        record: Option<Origin>,
        pending: Option<PendingConflict>,
        own: u32,
    ) {
        self.stack.push(OpenDir {
            anchor: Some(anchor),
            len,
            name: name.to_vec(),
            record,
            pending,
            own,
            beneath: NONE,
            children: self.spare.pop().unwrap_or_default(),
        });
    }

    /// Stores the top directory and enters it into its parent.
    fn close(&mut self) -> Result<(), TreeError> {
        let key = self.top_key().to_vec();
        let mut dir = self.stack.pop().expect("never called on the root");
        let hash = self.store(&dir.children, &key)?;
        dir.children.clear();
        self.spare.push(std::mem::take(&mut dir.children));
        let node = match dir.record {
            Some(record) => self.inputs.node(record, Some(hash)),
            None => implied_dir(hash),
        };
        if let Some(pending) = dir.pending {
            let conflict = dir_conflict(self.inputs, key_to_path(&key), pending, hash, dir.beneath);
            self.conflicts.push(conflict);
        }
        let parent = self.stack.last_mut().expect("the root stays on the stack");
        parent.beneath = parent.beneath.min(dir.own).min(dir.beneath);
        parent.children.push(DirEntry {
            name: dir.name,
            node,
        });
        self.entries += 1;
        Ok(())
    }

    fn store(&mut self, children: &[DirEntry], key: &[u8]) -> Result<TreeHash, TreeError> {
        self.txn
            .put_tree(&tree::encode(children))
            .map_err(|source| TreeError::Store {
                path: key_to_path(key),
                source,
            })
    }
}
