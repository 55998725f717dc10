//! What the states still reference: the one answer both `mossfs gc` and a failed change's
//! clean-up ([`super::commit::forget_unreached`]) act on, so that neither can delete a file
//! the other would keep.

use std::collections::HashSet;

use mossfs_db::{NodeKind, Query, State, TreeHash, WriteTxn};
use mossfs_format::{AssetHash, PackageId};

use super::Result;

/// What the states reach through their trees and selections.
pub struct Reach {
    /// Every directory object some state's tree holds, or the tree its packages alone
    /// make (its build index's root, before triggers added to it), which the next build
    /// starts from.
    pub trees: HashSet<TreeHash>,
    /// Assets the trees name for files no package owns: what transaction triggers wrote.
    pub unowned: HashSet<AssetHash>,
    /// Every package some state selects.
    pub selected: HashSet<PackageId>,
}

/// Walks the trees of `states`, each directory object once.
pub fn reach(q: &WriteTxn<'_>, states: &[State]) -> Result<Reach> {
    let selected = states
        .iter()
        .flat_map(|s| s.selections.iter().map(|sel| sel.package))
        .collect();
    let mut trees = HashSet::new();
    let mut unowned = HashSet::new();
    let mut stack: Vec<_> = states.iter().map(|s| s.root).collect();
    for state in states {
        if let Some(index) = q.build_index(state.id)? {
            stack.push(index.root);
        }
    }
    while let Some(hash) = stack.pop() {
        if !trees.insert(hash) {
            continue;
        }
        let view = q.tree(hash)?;
        for entry in view.entries(hash)? {
            match entry.node.kind {
                NodeKind::Directory(child) => stack.push(child),
                NodeKind::Regular { asset, .. } if entry.node.owner.is_none() => {
                    unowned.insert(asset);
                }
                _ => {}
            }
        }
    }
    Ok(Reach {
        trees,
        unowned,
        selected,
    })
}
