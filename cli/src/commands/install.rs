//! `mossfs install`, `mossfs remove` and `mossfs commit`.

use std::io::Write;

use rayon::prelude::*;
use std::path::{Path, PathBuf};

use mossfs_db::{Query, Status};
use mossfs_fs::sysroot;
use mossfs_store::StoreError;

use super::documents::{ChangeDoc, CommitDoc, Package, StateChange};
use super::{RootArg, print_commit, progress, report_recovery};
use crate::engine::{
    EngineError, LiveUsr, LoadedStone, Mode, Plan, Result, Root, check_commit, commit_state,
    forget_unreached, record_state,
};
use crate::progress::{Bar, Unit};
use crate::quote;

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
    /// Replace a `usr` that mossfs did not make, keeping it in `.moss/root/unmanaged-N/usr`.
    #[arg(long)]
    pub take_over_usr: bool,
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
    /// Replace a `usr` that mossfs did not make, keeping it in `.moss/root/unmanaged-N/usr`.
    #[arg(long)]
    pub take_over_usr: bool,
    #[command(flatten)]
    pub root: RootArg,
}

/// Arguments of `mossfs commit`.
#[derive(clap::Args, Debug)]
pub struct CommitArgs {
    /// The candidate state; the newest candidate if omitted.
    pub id: Option<u64>,
    /// Replace a `usr` that mossfs did not make, keeping it in `.moss/root/unmanaged-N/usr`.
    #[arg(long)]
    pub take_over_usr: bool,
    #[command(flatten)]
    pub root: RootArg,
}

/// The packages of the live state: what a change starts from.
fn base_plan(root: &Root) -> Result<Plan> {
    let snapshot = root.db.read()?;
    match root.live_state(&snapshot)? {
        Some(id) => Plan::from_selections(&snapshot, &snapshot.state(id)?.selections),
        None => Ok(Plan::from_selections(&snapshot, &[])?),
    }
}

/// The base of a dry run: the root opened read-only, or nothing where there is no root
/// yet. A dry run writes nothing at all (DESIGN.md §6.7): no lock, no `.moss`, no cache.
fn dry_run_base(path: &Path) -> Result<(Plan, Option<Root>)> {
    match Root::open_read(path) {
        Ok(root) => {
            report_recovery(&root);
            Ok((base_plan(&root)?, Some(root)))
        }
        Err(EngineError::NotARoot(_)) => Ok((Plan::empty(), None)),
        Err(e) => Err(e),
    }
}

/// The refusals a real run would give before recording anything, given by a dry run
/// too: a mount in the trees, or a `usr` mossfs did not make (and, if the user asked to
/// take it over, where it would be kept).
fn dry_run_check(
    root: Option<Root>,
    path: &Path,
    take_over_usr: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let (live, kept) = match root {
        Some(mut root) => {
            root.take_over_usr = take_over_usr;
            (check_commit(&root)?, root.unmanaged_slot())
        }
        // No database: any `usr` with something in it is not one mossfs made.
        None => {
            let usr = path.join("usr");
            if let Some(mountpoint) = sysroot::mounts_below(&usr)?.into_iter().next() {
                return Err(EngineError::MountedBelow {
                    mountpoint,
                    tree: usr,
                });
            }
            let kept = path.join(".moss/root/unmanaged-1/usr");
            let live = match std::fs::read_dir(&usr) {
                Ok(mut entries) => match entries.next() {
                    Some(_) => LiveUsr::Unmanaged("it has no .stateID"),
                    None => LiveUsr::Empty,
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => LiveUsr::Absent,
                Err(_) => LiveUsr::Unmanaged("it is not a directory"),
            };
            if let LiveUsr::Unmanaged(why) = live
                && !take_over_usr
            {
                return Err(EngineError::UnmanagedUsr { usr, why, kept });
            }
            (live, kept)
        }
    };
    if let LiveUsr::Unmanaged(why) = live {
        let line = format!(
            "would take over {} ({why}), keeping its tree in {}",
            path.join("usr").display(),
            kept.display()
        );
        // stdout holds only the document under --json.
        if crate::ui::json() {
            eprintln!("note: {line}");
        } else {
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

/// Runs `mossfs install`.
pub fn install(args: &InstallArgs, out: &mut dyn Write) -> Result<()> {
    // A missing or broken stone is refused before the root is touched. Each stone is
    // independent of the others: one per core.
    args.stones
        .par_iter()
        .try_for_each(|path| LoadedStone::check(path))?;
    crate::ui::step("check stones");
    if args.dry_run {
        let stones = args
            .stones
            .par_iter()
            .map(|path| LoadedStone::inspect(path))
            .collect::<Result<Vec<_>>>()?;
        let (mut plan, root) = dry_run_base(&args.root.root)?;
        plan.install(&stones)?;
        plan.check(&[])?;
        if !args.stage {
            dry_run_check(root, &args.root.root, args.take_over_usr, out)?;
        }
        return print_plan("install", &plan, out);
    }
    let mut root = Root::create(&args.root.root)?;
    root.take_over_usr = args.take_over_usr;
    report_recovery(&root);
    crate::ui::step("open root");
    let sizes: u64 = args
        .stones
        .iter()
        .filter_map(|path| std::fs::metadata(path).ok())
        .map(|m| m.len())
        .sum();
    let bar = Bar::new("cache", sizes, Unit::Bytes);
    let mut stones = args
        .stones
        .par_iter()
        .map(|path| {
            let stone = LoadedStone::load(path, &root.store)?;
            bar.inc(stone.size);
            Ok(stone)
        })
        .collect::<Result<Vec<_>>>()?;
    drop(bar);
    crate::ui::step("hash and copy stones");
    let mut plan = base_plan(&root)?;
    plan.install(&stones)?;
    plan.check(&[])?;
    crate::ui::step("plan");
    finish(
        &root,
        "install",
        plan,
        &mut stones,
        args.stage,
        args.allow_conflicts,
        out,
    )
}

/// Runs `mossfs remove`.
pub fn remove(args: &RemoveArgs, out: &mut dyn Write) -> Result<()> {
    if args.dry_run {
        let (mut plan, root) = dry_run_base(&args.root.root)?;
        let removed = plan.remove(&args.names)?;
        plan.check(&removed)?;
        if !args.stage {
            dry_run_check(root, &args.root.root, args.take_over_usr, out)?;
        }
        return print_plan("remove", &plan, out);
    }
    let mut root = Root::open_write(&args.root.root)?;
    root.take_over_usr = args.take_over_usr;
    report_recovery(&root);
    crate::ui::step("open root");
    let mut plan = base_plan(&root)?;
    let removed = plan.remove(&args.names)?;
    plan.check(&removed)?;
    crate::ui::step("plan");
    finish(&root, "remove", plan, &mut [], args.stage, false, out)
}

/// The `--json` document of a plan, before anything is recorded.
fn plan_document(action: &'static str, plan: &Plan, applied: bool, stage: bool) -> StateChange {
    StateChange {
        action,
        applied,
        summary: plan.summary.clone(),
        changes: plan.changes.iter().map(ChangeDoc::from).collect(),
        packages: plan
            .packages
            .values()
            .map(|(id, meta, explicit)| Package::planned(id, meta, *explicit))
            .collect(),
        state: None,
        staged: stage,
        conflict_paths: Vec::new(),
        commit: None,
    }
}

/// What a dry run prints: the state that would be recorded.
fn print_plan(action: &'static str, plan: &Plan, out: &mut dyn Write) -> Result<()> {
    if crate::ui::json() {
        crate::ui::print_json(out, &plan_document(action, plan, false, false))?;
        return Ok(());
    }
    writeln!(out, "would record a state: {}", quote::text(&plan.summary))?;
    for (name, (id, meta, explicit)) in &plan.packages {
        let how = if *explicit { "explicit" } else { "dependency" };
        writeln!(
            out,
            "  {} {}-{} ({how}, {id})",
            quote::text(name),
            quote::text(&meta.version),
            meta.release
        )?;
    }
    Ok(())
}

fn finish(
    root: &Root,
    action: &'static str,
    plan: Plan,
    stones: &mut [LoadedStone],
    stage: bool,
    allow_conflicts: bool,
    out: &mut dyn Write,
) -> Result<()> {
    // A refusal of the commit comes before anything is recorded.
    if !stage {
        check_commit(root)?;
    }
    let status = if stage {
        Status::Candidate
    } else {
        Status::InFlight
    };
    let state = record_state(root, &plan, stones, allow_conflicts, status)?;
    crate::ui::step("record state");
    let mut document = plan_document(action, &plan, true, stage);
    document.state = Some(state.id.0);
    if stage && crate::ui::json() {
        let snapshot = root.db.read()?;
        document.conflict_paths = super::documents::conflicts(&snapshot, &state.conflicts)?;
        crate::ui::print_json(out, &document)?;
        return Ok(());
    }
    if stage {
        let summary = quote::text(&state.summary);
        if state.conflicts.is_empty() {
            writeln!(
                out,
                "staged state {} ({summary}): {} entries; browse it with 'mossfs mount --state {} DIR', commit it with 'mossfs commit {}'",
                state.id, state.entries, state.id, state.id
            )?;
            return Ok(());
        }
        // A candidate with conflicts is for inspection only: never suggest committing it.
        writeln!(
            out,
            "staged state {} ({summary}): {} entries, with conflicts",
            state.id, state.entries
        )?;
        let snapshot = root.db.read()?;
        super::state::print_conflicts(&snapshot, &state.conflicts, out)?;
        writeln!(
            out,
            "state {id} has conflicts and cannot be committed; inspect them with 'mossfs mount --state {id} --debug-view DIR', drop it with 'mossfs state remove {id}'",
            id = state.id
        )?;
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
    if crate::ui::json() {
        super::commit_notes(&report);
        document.commit = Some(CommitDoc::from(&report));
        crate::ui::print_json(out, &document)?;
    } else {
        print_commit(out, &report, &state.summary)?;
    }
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
    root.take_over_usr = args.take_over_usr;
    report_recovery(&root);
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
    // `commit` is for candidates; the active state is checked (and reported) by the
    // commit itself.
    if state.status == Status::Committed && snapshot.active()? != Some(id) {
        return Err(EngineError::CommitCommitted(id));
    }
    if !state.conflicts.is_empty() && !crate::ui::json() {
        super::state::print_conflicts(&snapshot, &state.conflicts, out)?;
    }
    let previous = super::documents::active_selections(&snapshot)?;
    drop(snapshot);
    let progress = progress("blit");
    let report = commit_state(&root, id, Mode::Switch, progress.as_deref())?;
    if crate::ui::json() {
        super::commit_notes(&report);
        let snapshot = root.db.read()?;
        let document = super::documents::switch(&snapshot, "commit", &state, &previous, &report)?;
        crate::ui::print_json(out, &document)?;
    } else {
        print_commit(out, &report, &state.summary)?;
    }
    Ok(())
}
