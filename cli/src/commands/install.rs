//! `mossfs install`, `mossfs remove` and `mossfs commit`.

use std::io::Write;

use rayon::prelude::*;
use std::path::PathBuf;

use mossfs_db::{Query, Status};
use mossfs_store::StoreError;

use super::{RootArg, print_commit, progress, report_recovery};
use crate::engine::{
    EngineError, LoadedStone, Mode, Plan, Result, Root, commit_state, forget_unreached,
    record_state,
};

/// Arguments of `mossfs install`.
#[derive(clap::Args, Debug)]
pub struct InstallArgs {
    /// Local `.stone` files. A stone whose package name is installed replaces it.
    #[arg(required = true, value_name = "FILE.stone")]
    pub stones: Vec<PathBuf>,
    /// Record a candidate state without writing any tree; see `mossfs mount` and `commit`.
    #[arg(long)]
    pub stage: bool,
    /// Record the candidate even if packages conflict at some paths, to inspect them.
    #[arg(long, requires = "stage")]
    pub allow_conflicts: bool,
    /// Show what would happen and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub triggers: super::triggers::TriggerArgs,
    #[command(flatten)]
    pub root: RootArg,
}

/// Arguments of `mossfs remove`.
#[derive(clap::Args, Debug)]
pub struct RemoveArgs {
    /// Package names.
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
    /// Record a candidate state without writing any tree.
    #[arg(long)]
    pub stage: bool,
    /// Show what would happen and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub triggers: super::triggers::TriggerArgs,
    #[command(flatten)]
    pub root: RootArg,
}

/// Arguments of `mossfs commit`.
#[derive(clap::Args, Debug)]
pub struct CommitArgs {
    /// The candidate state; the newest candidate if omitted.
    pub id: Option<u64>,
    #[command(flatten)]
    pub triggers: super::triggers::TriggerArgs,
    #[command(flatten)]
    pub root: RootArg,
}

fn base_plan(root: &Root) -> Result<Plan> {
    let snapshot = root.db.read()?;
    match snapshot.active()? {
        Some(id) => Plan::from_selections(&snapshot, &snapshot.state(id)?.selections),
        None => Ok(Plan::from_selections(&snapshot, &[])?),
    }
}

/// Runs `mossfs install`.
pub fn install(args: &InstallArgs, out: &mut dyn Write) -> Result<()> {
    // A missing or broken stone is refused before the root is touched. Each stone is
    // independent of the others: one per core.
    args.stones
        .par_iter()
        .try_for_each(|path| LoadedStone::check(path))?;
    let mut root = Root::open_write(&args.root.root)?;
    report_recovery(&root);
    root.triggers = args.triggers.options();
    let mut stones = args
        .stones
        .par_iter()
        .map(|path| LoadedStone::load(path, &root.store))
        .collect::<Result<Vec<_>>>()?;
    let mut plan = base_plan(&root)?;
    plan.install(&stones)?;
    plan.check(&[])?;
    finish(
        &root,
        plan,
        &mut stones,
        args.stage,
        args.allow_conflicts,
        args.dry_run,
        out,
    )
}

/// Runs `mossfs remove`.
pub fn remove(args: &RemoveArgs, out: &mut dyn Write) -> Result<()> {
    let mut root = Root::open_write(&args.root.root)?;
    report_recovery(&root);
    root.triggers = args.triggers.options();
    let mut plan = base_plan(&root)?;
    let removed = plan.remove(&args.names)?;
    plan.check(&removed)?;
    finish(&root, plan, &mut [], args.stage, false, args.dry_run, out)
}

fn finish(
    root: &Root,
    plan: Plan,
    stones: &mut [LoadedStone],
    stage: bool,
    allow_conflicts: bool,
    dry_run: bool,
    out: &mut dyn Write,
) -> Result<()> {
    if dry_run {
        writeln!(out, "would record a state: {}", plan.summary)?;
        for (name, (id, meta, explicit)) in &plan.packages {
            let how = if *explicit { "explicit" } else { "dependency" };
            writeln!(
                out,
                "  {name} {}-{} ({how}, {id})",
                meta.version, meta.release
            )?;
        }
        return Ok(());
    }
    let state = record_state(root, &plan, stones, allow_conflicts)?;
    if stage {
        writeln!(
            out,
            "staged state {} ({}): {} entries; browse it with 'mossfs mount --state {} DIR', commit it with 'mossfs commit {}'",
            state.id, state.summary, state.entries, state.id, state.id
        )?;
        if !state.conflicts.is_empty() {
            let snapshot = root.db.read()?;
            super::state::print_conflicts(&snapshot, &state.conflicts, out)?;
            writeln!(
                out,
                "state {} has conflicts and cannot be committed",
                state.id
            )?;
        }
        return Ok(());
    }
    let progress = progress("blit");
    let report = match commit_state(root, state.id, Mode::Switch, progress.as_deref()) {
        Ok(report) => report,
        Err(error) => {
            // The refusal matters more than tidying up: a candidate left behind is clutter.
            let _ = forget_unreached(root, state.id);
            return Err(name_stone(error, stones));
        }
    };
    print_commit(out, &report, &state.summary)?;
    Ok(())
}

/// Names the stone as given, and its package, when the store could not unpack it; the
/// store only knows the copy in its cache.
fn name_stone(error: EngineError, stones: &[LoadedStone]) -> EngineError {
    let EngineError::Store(source) = error else {
        return error;
    };
    let id = match &source {
        StoreError::Stone { id, .. }
        | StoreError::NoContent { id, .. }
        | StoreError::AssetNotInStone { id, .. } => *id,
        _ => return EngineError::Store(source),
    };
    match stones.iter().find(|stone| stone.id == id) {
        Some(stone) => EngineError::Unpack {
            path: stone.path.clone(),
            package: stone.meta.full_name(),
            source: Box::new(source),
        },
        None => EngineError::Store(source),
    }
}

/// Runs `mossfs commit`.
pub fn commit(args: &CommitArgs, out: &mut dyn Write) -> Result<()> {
    let mut root = Root::open_write(&args.root.root)?;
    report_recovery(&root);
    root.triggers = args.triggers.options();
    let snapshot = root.db.read()?;
    let id = match args.id {
        Some(id) => mossfs_db::StateId(id),
        None => snapshot
            .states()?
            .iter()
            .rev()
            .find(|s| s.status == Status::Candidate)
            .map(|s| s.id)
            .ok_or(EngineError::NoCandidate)?,
    };
    let state = snapshot.state(id)?;
    if !state.conflicts.is_empty() {
        super::state::print_conflicts(&snapshot, &state.conflicts, out)?;
    }
    drop(snapshot);
    let progress = progress("blit");
    let report = commit_state(&root, id, Mode::Switch, progress.as_deref())?;
    print_commit(out, &report, &state.summary)?;
    Ok(())
}
