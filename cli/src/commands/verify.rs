//! `mossfs verify [--repair]`: re-hash every asset the database references, check every
//! path of the active tree on disk against its state, list the paths no package owns, and
//! check every archived tree the same way (issue 7, defects 5 and 6).
//!
//! Repair re-unpacks damaged assets from their cached stones (a package that came by
//! delta first gets its full stone from its repository again), then re-blits the whole
//! active state and exchanges it in, because a damaged file in `/usr` may be a hardlink
//! to a damaged asset that the repair replaced; the re-blit also leaves out every path no
//! package owns. Last, every archived tree is checked again: one that still holds a
//! damaged inode (a repaired asset is a new file, so archives keep the old one) is
//! removed, and unowned paths are removed from the others, so `state activate` can never
//! bring the damage back.

use std::collections::HashMap;
use std::io::Write;

use mossfs_db::Query;
use mossfs_format::{AssetHash, PackageId};
use mossfs_fs::sysroot;
use mossfs_store::AssetCheck;

use super::{RootArg, print_commit, progress};
use crate::engine::audit::{self, ArchiveFate, Audit};
use crate::engine::{EngineError, Mode, Result, Root, commit_state};
use crate::progress::{Bar, Unit};
use crate::units::count;

/// Arguments of `mossfs verify`.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Mend what is found: re-unpack damaged assets, re-blit the active tree, and remove
    /// damaged archived trees and paths no package owns.
    #[arg(long)]
    pub repair: bool,
    #[command(flatten)]
    pub root: RootArg,
}

/// The problems `verify` found.
#[derive(Debug, thiserror::Error)]
#[error("verify found {}; run 'mossfs verify --repair'", found(*.assets, *.paths, *.unowned, *.archives))]
pub struct Damaged {
    assets: usize,
    paths: usize,
    unowned: usize,
    archives: usize,
}

/// "1 damaged asset, 2 damaged paths and 1 path no package owns".
fn found(assets: usize, paths: usize, unowned: usize, archives: usize) -> String {
    let mut parts = Vec::new();
    if assets > 0 {
        parts.push(count(assets, "damaged asset"));
    }
    if paths > 0 {
        parts.push(count(paths, "damaged path"));
    }
    if unowned > 0 {
        parts.push(format!("{} no package owns", count(unowned, "path")));
    }
    if archives > 0 {
        parts.push(count(archives, "damaged archived tree"));
    }
    match parts.len() {
        0 => "no damage".to_owned(),
        1 => parts.remove(0),
        n => {
            let last = parts.remove(n - 1);
            format!("{} and {last}", parts.join(", "))
        }
    }
}

/// What an asset check found, in words.
fn describe_asset(check: &AssetCheck) -> String {
    match check {
        AssetCheck::Ok => "intact".to_owned(),
        AssetCheck::Missing => "is missing from the store".to_owned(),
        AssetCheck::Corrupt { path, computed } => format!(
            "is damaged: {} holds other bytes (they hash to {computed})",
            path.display()
        ),
    }
}

/// Runs `mossfs verify`.
pub fn verify(args: &VerifyArgs, out: &mut dyn Write) -> Result<(), VerifyError> {
    let root = if args.repair {
        Root::open_write(&args.root.root)?
    } else {
        Root::open_read(&args.root.root)?
    };
    super::report_recovery(&root);
    let snapshot = root.db.read()?;

    // Every asset of every recorded, unpacked package, and one cached stone to mend it from.
    let mut sources: HashMap<AssetHash, PackageId> = HashMap::new();
    // And their sizes, for the progress bar.
    let mut sizes: HashMap<AssetHash, u64> = HashMap::new();
    for record in snapshot.packages()? {
        if record.unpacked {
            for entry in snapshot.index(&record.id)? {
                sources.entry(entry.digest).or_insert(record.id);
                sizes.insert(entry.digest, entry.len());
            }
        }
    }
    let bar = Bar::new("verify", sizes.values().sum(), Unit::Bytes);
    // In hash order, so that two runs print the same report.
    let mut sources: Vec<(AssetHash, PackageId)> = sources.into_iter().collect();
    sources.sort_unstable_by_key(|&(hash, _)| hash);
    let mut bad_assets = Vec::new();
    for (n, (hash, package)) in sources.iter().enumerate() {
        bar.inc(sizes.get(hash).copied().unwrap_or(0));
        bar.message(format!("{}/{} assets", n + 1, sources.len()));
        match root.store.verify_asset(*hash).map_err(EngineError::from)? {
            AssetCheck::Ok => {}
            problem => {
                writeln!(out, "asset {hash} {}", describe_asset(&problem))?;
                bad_assets.push((*hash, *package));
            }
        }
    }

    drop(bar);
    let active = root.live_state(&snapshot)?;
    let mut live = Audit::default();
    if let Some(id) = active {
        let state = snapshot.state(id)?;
        live = audit::audit(&root, &snapshot, state.root, &root.usr())?;
        for damage in &live.damaged {
            writeln!(out, "usr/{} {}", shown(&damage.path), damage.problem)?;
        }
        for stray in &live.unowned {
            writeln!(
                out,
                "usr/{}: {}",
                shown(&stray.path),
                audit::describe_unowned(stray)
            )?;
        }
    }
    // A mount point is reported, but it is not the tree's damage and repair leaves it.
    let unowned = live.unowned.iter().filter(|u| !u.mount_point).count();

    // Archived trees, which `state activate` and incremental commits reuse.
    let mut bad_archives = 0;
    for state in snapshot.states()? {
        let usr = root.archive(state.id).join("usr");
        if Some(state.id) == active || sysroot::read_state_id(&usr) != Some(state.id.0) {
            continue;
        }
        let archived = audit::audit(&root, &snapshot, state.root, &usr)?;
        if !archived.is_clean() {
            bad_archives += 1;
            writeln!(
                out,
                "archived tree of state {}: {}, {} no package owns",
                state.id,
                count(archived.damaged.len(), "damaged path"),
                count(archived.unowned.len(), "path")
            )?;
        }
    }
    let summary = found(bad_assets.len(), live.damaged.len(), unowned, bad_archives);
    match active {
        Some(id) => writeln!(
            out,
            "checked {} and {} of state {id}: {summary}",
            count(sources.len(), "asset"),
            count(live.checked as usize, "path"),
        )?,
        None => writeln!(
            out,
            "checked {} (no state is active): {summary}",
            count(sources.len(), "asset")
        )?,
    }
    drop(snapshot);
    if bad_assets.is_empty() && live.damaged.is_empty() && unowned == 0 && bad_archives == 0 {
        return Ok(());
    }
    if !args.repair {
        return Err(VerifyError::Damaged(Damaged {
            assets: bad_assets.len(),
            paths: live.damaged.len(),
            unowned,
            archives: bad_archives,
        }));
    }
    let mut refetched = std::collections::HashSet::new();
    for (hash, package) in &bad_assets {
        // A package that came by delta is mended from its full stone, fetched again.
        if refetched.insert(*package) {
            match super::by_delta::refetch_full(&root, package) {
                Ok(true) => writeln!(
                    out,
                    "fetched the full stone of package {package} from its repository"
                )?,
                Ok(false) => {}
                Err(why) => eprintln!(
                    "note: cannot fetch the full stone of package {package} ({why}); repairing from the cache"
                ),
            }
        }
        root.store
            .repair_asset(*hash, package)
            .map_err(EngineError::from)?;
        writeln!(out, "repaired asset {hash} from package {package}")?;
    }
    if let Some(id) = active
        && (!bad_assets.is_empty() || !live.damaged.is_empty() || unowned > 0)
    {
        let progress = progress("re-blit");
        let report = commit_state(&root, id, Mode::Reblit, progress.as_deref())?;
        print_commit(out, &report, "repair").map_err(EngineError::from)?;
    }
    repair_archives(&root, active, out)?;
    Ok(())
}

/// Checks every archived tree again, now that the assets are mended: removes the damaged
/// ones and what no package owns from the others.
fn repair_archives(
    root: &Root,
    active: Option<mossfs_db::StateId>,
    out: &mut dyn Write,
) -> Result<(), VerifyError> {
    let snapshot = root.db.read()?;
    for state in snapshot.states()? {
        if Some(state.id) == active {
            continue;
        }
        match audit::prepare_archive(root, &snapshot, state.head(), true)? {
            ArchiveFate::Dropped { damaged } => writeln!(
                out,
                "removed the archived tree of state {}: {}; activating it will blit it again",
                state.id,
                count(damaged, "damaged path")
            )?,
            ArchiveFate::Reusable { removed } if removed > 0 => writeln!(
                out,
                "removed {} that no package owns from the archived tree of state {}",
                count(removed, "path"),
                state.id
            )?,
            ArchiveFate::Mounted => writeln!(
                out,
                "left the archived tree of state {} alone: a file system is mounted inside it",
                state.id
            )?,
            _ => {}
        }
    }
    Ok(())
}

/// A tree path for people.
fn shown(path: &[u8]) -> std::borrow::Cow<'_, str> {
    crate::quote::name(path)
}

/// Why verify failed: an error, or damage that was found and not repaired.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Verification itself failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Damage was found.
    #[error(transparent)]
    Damaged(Damaged),
}

impl From<std::io::Error> for VerifyError {
    fn from(e: std::io::Error) -> Self {
        VerifyError::Engine(e.into())
    }
}

impl From<mossfs_db::DbError> for VerifyError {
    fn from(e: mossfs_db::DbError) -> Self {
        VerifyError::Engine(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_verify_found_reads_as_a_sentence() {
        assert_eq!(found(0, 0, 0, 0), "no damage");
        assert_eq!(found(1, 0, 0, 0), "1 damaged asset");
        assert_eq!(
            found(0, 2, 1, 0),
            "2 damaged paths and 1 path no package owns"
        );
        assert_eq!(
            found(2, 1, 3, 1),
            "2 damaged assets, 1 damaged path, 3 paths no package owns and 1 damaged archived tree"
        );
        assert_eq!(
            describe_asset(&AssetCheck::Missing),
            "is missing from the store"
        );
    }
}
