//! `mossfs gc`: forget packages no state selects, drop directory objects no state
//! reaches, then delete the assets and cached stones nothing references. Database first,
//! files second (DESIGN.md §6.5), so a crash in between leaves garbage, never corruption.

use std::io::Write;

use mossfs_db::Query;

use super::RootArg;
use crate::engine::garbage::{self, Reach};
use crate::engine::{Result, Root};
use crate::progress::Bar;

/// Arguments of `mossfs gc`.
#[derive(clap::Args, Debug)]
pub struct GcArgs {
    #[command(flatten)]
    pub root: RootArg,
}

/// Runs `mossfs gc`.
pub fn gc(args: &GcArgs, out: &mut dyn Write) -> Result<()> {
    let root = Root::open_write(&args.root.root)?;
    super::report_recovery(&root);
    let spinner = Bar::spinner("gc", "finding what no state references");
    let mut txn = root.db.write()?;
    let Reach {
        trees: reachable,
        // Assets named by a tree: transaction triggers' output belongs to no package.
        unowned: mut keep_assets,
        selected,
    } = garbage::reach(&txn, &txn.states()?)?;
    let mut packages_removed = 0;
    for record in txn.packages()? {
        if !selected.contains(&record.id) {
            txn.remove_package(&record.id)?;
            packages_removed += 1;
        }
    }
    let mut trees_removed = 0;
    for hash in txn.tree_hashes()? {
        if !reachable.contains(&hash) {
            txn.remove_tree(hash)?;
            trees_removed += 1;
        }
    }
    for id in &selected {
        keep_assets.extend(txn.index(id)?.into_iter().map(|e| e.digest));
    }
    if packages_removed + trees_removed > 0
        && !crate::ui::confirm(&format!(
            "gc forgets {packages_removed} packages and {trees_removed} directory objects no state uses, and deletes their files; continue?"
        ))?
    {
        // Dropping the transaction undoes it.
        return Err(crate::engine::EngineError::Cancelled);
    }
    txn.commit()?;

    // Trees first, so the bytes the store reports freed are really free.
    for note in super::state::remove_orphans(&root)? {
        writeln!(out, "{note}")?;
    }
    spinner.message("deleting unreferenced assets and stones");
    let stats = root.store.gc(&keep_assets, &selected)?;
    drop(spinner);
    writeln!(
        out,
        "gc: {packages_removed} packages and {trees_removed} directory objects forgotten, {} assets and {} stones removed, {} reclaimed",
        stats.assets_removed,
        stats.stones_removed,
        human_bytes(stats.bytes_freed)
    )?;
    Ok(())
}

/// Bytes for people.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
