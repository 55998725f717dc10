//! Deciding what one path shows when several records land on it, and naming the conflict
//! when they disagree (DESIGN.md §5, issue 3 §3).
//!
//! The rules:
//! - records that put the same thing at a path (kind, asset or link text, mode, uid, gid)
//!   do not conflict; the first package by priority owns the entry;
//! - anything else from two packages at one path conflicts: different kinds, contents or
//!   metadata, two directory records with different mode, uid or gid, and a file, symlink
//!   or device where another package has a directory, explicit or implied by children;
//! - a record below a symlink that cannot be followed conflicts with that symlink, at the
//!   symlink's location: the package needs a directory where the other ships the link.
//!
//! A conflict is a value, never a refusal here: the tree is still built so that a
//! candidate can be mounted and inspected. It shows the first contender by priority, except
//! that a directory always wins over a non-directory, so that what lies below stays
//! visible. Contenders are listed in priority order, each with its owner.

use mossfs_db::{Conflict, DirEntry, Node, TreeHash, WriteTxn, tree};
use mossfs_format::EntryKind;

use super::input::{Inputs, same};
use super::place::{Placed, Unplaced};
use super::resolve::Origin;
use super::{TreeError, implied_dir};

/// What a location shows.
pub(crate) enum Decision {
    /// A single non-directory entry.
    Leaf {
        shown: Origin,
        /// Every contender, if they disagree.
        conflict: Option<Vec<Origin>>,
    },
    /// A directory, from a record or implied by what lies below it.
    Dir {
        /// The record that supplies mode and ownership, if any package ships one.
        record: Option<Origin>,
        /// Finished once the directory's object (and so its hash) is known.
        conflict: Option<PendingConflict>,
    },
}

/// A conflict at a directory, waiting for the directory's object.
pub(crate) struct PendingConflict {
    contenders: Vec<Origin>,
    /// No package ships a record for the directory; its children imply it.
    implied: bool,
}

/// Decides one location from its records (sorted by priority, never empty).
pub(crate) fn decide(inputs: &Inputs<'_>, group: &[Placed], has_children: bool) -> Decision {
    let first = group[0].origin;
    let first_dir = group
        .iter()
        .map(|p| p.origin)
        .find(|&o| inputs.entry(o).kind == EntryKind::Directory);
    if first_dir.is_none() && !has_children {
        let shown = inputs.entry(first);
        let agree = group.iter().all(|p| same(inputs.entry(p.origin), shown));
        return Decision::Leaf {
            shown: first,
            conflict: (!agree).then(|| contenders(inputs, group)),
        };
    }
    let agree = match first_dir {
        Some(dir) => {
            let dir = inputs.entry(dir);
            group.iter().all(|p| same(inputs.entry(p.origin), dir))
        }
        None => false, // a non-directory record with children below it
    };
    Decision::Dir {
        record: first_dir,
        conflict: (!agree).then(|| PendingConflict {
            contenders: contenders(inputs, group),
            implied: first_dir.is_none(),
        }),
    }
}

/// Every package's record at a location, once per package and distinct record.
fn contenders(inputs: &Inputs<'_>, group: &[Placed]) -> Vec<Origin> {
    let mut out: Vec<Origin> = Vec::with_capacity(group.len());
    for placed in group {
        let origin = placed.origin;
        let entry = inputs.entry(origin);
        let repeat = out
            .iter()
            .any(|o| o.package == origin.package && same(inputs.entry(*o), entry));
        if !repeat {
            out.push(origin);
        }
    }
    out
}

/// Names a conflict between non-directories.
pub(crate) fn leaf_conflict(inputs: &Inputs<'_>, path: Vec<u8>, origins: &[Origin]) -> Conflict {
    let contenders = origins.iter().map(|&o| inputs.node(o, None)).collect();
    Conflict { path, contenders }
}

/// Names a conflict at a directory once its object is stored. An implied directory is
/// shown as owned by the first package, by priority, that ships anything below it.
pub(crate) fn dir_conflict(
    inputs: &Inputs<'_>,
    path: Vec<u8>,
    pending: PendingConflict,
    hash: TreeHash,
    beneath: u32,
) -> Conflict {
    let mut nodes = Vec::with_capacity(pending.contenders.len() + 1);
    for &origin in &pending.contenders {
        nodes.push((origin.package, inputs.node(origin, Some(hash))));
    }
    if pending.implied {
        let node = Node {
            owner: inputs.ids.get(beneath as usize).copied(),
            ..super::implied_dir(hash)
        };
        nodes.push((beneath, node));
    }
    nodes.sort_by_key(|(package, _)| *package);
    Conflict {
        path,
        contenders: nodes.into_iter().map(|(_, node)| node).collect(),
    }
}

/// Names the records that sit below symlinks which cannot be followed: one conflict at
/// each such symlink, at the symlink's own location, because that is where packages
/// disagree (one ships a link that leads out of `/usr`, another needs a directory there).
/// The symlink comes first; then, for each package by priority that ships anything below
/// it, the directory that package needs at that location, holding what it ships below, so
/// that a person (and the mount's conflict view) sees both sides where they really are.
pub(crate) fn unplaced_conflicts(
    txn: &mut WriteTxn<'_>,
    inputs: &Inputs<'_>,
    mut unplaced: Vec<Unplaced>,
) -> Result<Vec<Conflict>, TreeError> {
    let components = |path: &[u8]| {
        path.split(|&b| b == b'/')
            .map(<[u8]>::to_vec)
            .collect::<Vec<_>>()
    };
    unplaced.sort_by(|a, b| {
        (&a.location, a.entry.package)
            .cmp(&(&b.location, b.entry.package))
            .then_with(|| components(&a.below).cmp(&components(&b.below)))
            .then(a.entry.cmp(&b.entry))
    });
    let mut out = Vec::new();
    for at_link in unplaced.chunk_by(|a, b| a.location == b.location) {
        let location = &at_link[0].location;
        let mut contenders = vec![inputs.node(at_link[0].symlink, None)];
        for package in at_link.chunk_by(|a, b| a.entry.package == b.entry.package) {
            let records: Vec<(&[u8], Origin)> =
                package.iter().map(|u| (&u.below[..], u.entry)).collect();
            let hash = store_below(txn, inputs, location, &records)?;
            contenders.push(Node {
                owner: Some(inputs.package(package[0].entry)),
                ..implied_dir(hash)
            });
        }
        out.push(Conflict {
            path: location.clone(),
            contenders,
        });
    }
    Ok(out)
}

/// Stores the directory objects for one package's records below a location (paths relative
/// to it, sorted component by component) and returns the top one's hash. A directory no
/// record names is implied and owned by the package.
fn store_below(
    txn: &mut WriteTxn<'_>,
    inputs: &Inputs<'_>,
    location: &[u8],
    records: &[(&[u8], Origin)],
) -> Result<TreeHash, TreeError> {
    let mut entries = Vec::new();
    let mut rest = records;
    while let Some(&(path, first)) = rest.first() {
        let head = first_component(path);
        let n = rest
            .iter()
            .take_while(|(p, _)| first_component(p) == head)
            .count();
        let (group, tail) = rest.split_at(n);
        rest = tail;
        let mut record = None;
        let mut deeper = Vec::new();
        for &(path, origin) in group {
            match path.get(head.len() + 1..) {
                Some(below) => deeper.push((below, origin)),
                None => {
                    record.get_or_insert(origin);
                }
            }
        }
        let is_dir = record.is_some_and(|o| inputs.entry(o).kind == EntryKind::Directory);
        let node = match record {
            Some(origin) if !is_dir && deeper.is_empty() => inputs.node(origin, None),
            _ => {
                let hash = store_below(txn, inputs, location, &deeper)?;
                match record {
                    Some(origin) if is_dir => inputs.node(origin, Some(hash)),
                    _ => Node {
                        owner: Some(inputs.package(first)),
                        ..implied_dir(hash)
                    },
                }
            }
        };
        entries.push(DirEntry {
            name: head.to_vec(),
            node,
        });
    }
    txn.put_tree(&tree::encode(&entries))
        .map_err(|source| TreeError::Store {
            path: location.to_vec(),
            source,
        })
}

fn first_component(path: &[u8]) -> &[u8] {
    path.split(|&b| b == b'/').next().unwrap_or_default()
}
