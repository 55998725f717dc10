//! `mossfs install`, `mossfs remove` and `mossfs commit`.

use std::collections::HashSet;
use std::io::{BufRead, IsTerminal, Write};

use rayon::prelude::*;
use std::path::{Path, PathBuf};

use mossfs_db::{Query, Status};
use mossfs_format::Relation;
use mossfs_fs::sysroot;
use mossfs_store::StoreError;

use super::documents::{ChangeDoc, CommitDoc, Package, StateChange};
use super::{RootArg, print_commit, progress, report_recovery};
use crate::engine::change::Verb;
use crate::engine::fetch::{self, Download};
use crate::engine::plan::installed;
use crate::engine::preview;
use crate::engine::solve::{self, Installed, Origin, Repositories, Request, Want};
use crate::engine::{
    EngineError, LiveUsr, LoadedStone, Mode, Plan, Result, Root, check_commit, commit_state,
    forget_unreached, record_state,
};
use crate::progress::{Bar, Unit};
use crate::quote;

/// The flags every command that records a state change shares (install, remove, sync).
#[derive(clap::Args, Debug)]
pub struct ChangeArgs {
    /// Record a candidate state without writing any tree; see `mossfs mount` and `commit`.
    #[arg(long)]
    pub stage: bool,
    /// Show what would happen and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replace a `usr` that mossfs did not make, keeping it in `.moss/root/unmanaged-N/usr`.
    #[arg(long)]
    pub take_over_usr: bool,
    #[command(flatten)]
    pub triggers: super::triggers::TriggerArgs,
    #[command(flatten)]
    pub root: RootArg,
}

/// Arguments of `mossfs install`.
#[derive(clap::Args, Debug)]
pub struct InstallArgs {
    /// Local `.stone` files (a stone whose package name is installed replaces it), and
    /// package names or providers (`nano`, `binary(nano)`, `soname(libz.so.1(x86_64))`)
    /// that the stones given, the installed packages or the enabled repositories provide.
    #[arg(required = true, value_name = "NAME|PROVIDER|FILE.stone")]
    pub stones: Vec<PathBuf>,
    /// Record the candidate even if packages conflict at some paths, to inspect them.
    #[arg(long, requires = "stage")]
    pub allow_conflicts: bool,
    #[command(flatten)]
    pub change: ChangeArgs,
}

/// Arguments of `mossfs remove`.
#[derive(clap::Args, Debug)]
pub struct RemoveArgs {
    /// Package names.
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
    #[command(flatten)]
    pub change: ChangeArgs,
}

/// Arguments of `mossfs sync` (also `mossfs up`).
#[derive(clap::Args, Debug)]
pub struct SyncArgs {
    /// Refresh every enabled repository first (`repo update`).
    #[arg(short, long)]
    pub update: bool,
    #[command(flatten)]
    pub change: ChangeArgs,
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
    pub triggers: super::triggers::TriggerArgs,
    #[command(flatten)]
    pub root: RootArg,
}

/// The packages of the live state: what a change starts from.
fn base(root: &Root) -> Result<Vec<Installed>> {
    let snapshot = root.db.read()?;
    match root.live_state(&snapshot)? {
        Some(id) => installed(&snapshot, &snapshot.state(id)?.selections),
        None => Ok(Vec::new()),
    }
}

/// The base of a dry run: the root opened read-only, or nothing where there is no root
/// yet. A dry run writes nothing at all (DESIGN.md §6.7): no lock, no `.moss`, no cache.
fn dry_run_base(path: &Path) -> Result<(Vec<Installed>, Option<Root>)> {
    match Root::open_read(path) {
        Ok(root) => {
            report_recovery(&root);
            Ok((base(&root)?, Some(root)))
        }
        Err(EngineError::NotARoot(_)) => Ok((Vec::new(), None)),
        Err(e) => Err(e),
    }
}

/// Splits `install`'s arguments into stones (a name ending in `.stone`, or a path) and
/// requests by name or provider.
fn split_targets(targets: &[PathBuf]) -> Result<(Vec<PathBuf>, Vec<Request>)> {
    let mut stones = Vec::new();
    let mut requests = Vec::new();
    for target in targets {
        let text = target.to_string_lossy();
        // `interpreter(/usr/lib64/ld-linux-x86-64.so.2)` has a slash too, but a path
        // never looks like `kind(target)`.
        let is_stone = target.extension().is_some_and(|e| e == "stone")
            || (text.contains('/') && !text.ends_with(')'));
        if is_stone {
            stones.push(target.clone());
            continue;
        }
        let relation = Relation::parse(&text).map_err(|problem| EngineError::BadRequest {
            words: text.clone().into_owned(),
            problem,
        })?;
        requests.push(Request {
            want: Want::Provider(relation),
            words: text.into_owned(),
        });
    }
    Ok((stones, requests))
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
    let (paths, requests) = split_targets(&args.stones)?;
    // A missing or broken stone is refused before the root is touched. Each stone is
    // independent of the others: one per core.
    paths
        .par_iter()
        .try_for_each(|path| LoadedStone::check(path))?;
    crate::ui::step("check stones");
    if args.change.dry_run {
        let (installed, root) = dry_run_base(&args.change.root.root)?;
        let at = root.as_ref().map(|root| (&root.store, &root.db));
        let stones = paths
            .par_iter()
            .map(|path| LoadedStone::inspect(path, at))
            .collect::<Result<Vec<_>>>()?;
        let plan = match &root {
            Some(root) => {
                let snapshot = root.db.read()?;
                let offer = Repositories::new(&snapshot);
                Plan::install(&installed, &stones, &requests, &[&offer])?
            }
            None => Plan::install(&installed, &stones, &requests, &[])?,
        };
        let download = download_figure(root.as_ref(), &plan);
        if !args.change.stage {
            dry_run_check(root, &args.change.root.root, args.change.take_over_usr, out)?;
        }
        return print_plan("install", &plan, download, out);
    }
    let mut root = Root::create(&args.change.root.root)?;
    root.take_over_usr = args.change.take_over_usr;
    report_recovery(&root);
    root.triggers = args.change.triggers.options();
    if !args.change.stage {
        root.look_for_base();
    }
    crate::ui::step("open root");
    let sizes: u64 = paths
        .iter()
        .filter_map(|path| std::fs::metadata(path).ok())
        .map(|m| m.len())
        .sum();
    let bar = Bar::new("cache", sizes, Unit::Bytes);
    let mut stones = paths
        .par_iter()
        .map(|path| {
            let stone = LoadedStone::load(path, &root.store, &root.db)?;
            bar.inc(stone.size);
            Ok(stone)
        })
        .collect::<Result<Vec<_>>>()?;
    drop(bar);
    crate::ui::step("hash and copy stones");
    let installed = base(&root)?;
    let snapshot = root.db.read()?;
    let offer = Repositories::new(&snapshot);
    let plan = Plan::install(&installed, &stones, &requests, &[&offer])?;
    crate::ui::step("plan");
    // What the repositories give is fetched into the cache, then planned again as if its
    // stones had been given: the same packages, now local, with the reasons unchanged.
    drop(snapshot);
    let replan =
        |local: &dyn solve::Source| Plan::install(&installed, &stones, &requests, &[local]);
    // A staged change reads only the stones' heads; the bodies wait for the commit, and
    // `download` is what they will cost then.
    let download = download_figure(Some(&root), &plan);
    let (plan, fetched) = if args.change.stage {
        preview::stage_heads(&root, plan, replan)?
    } else {
        announce(download, out)?;
        fetch_chosen(&root, plan, replan)?
    };
    stones.extend(fetched);
    finish(
        &root,
        "install",
        (plan, download),
        &mut stones,
        args.change.stage,
        args.allow_conflicts,
        out,
    )
}

/// Gets what `plan` takes from a repository into the store (downloaded, checked against
/// the index as `fetch` does, and unpacked while the others still download; see
/// [`crate::engine::fetch`]), then plans again with `replan`, given those stones as a local
/// source: the same packages, now local, with the reasons the solve gave. Returns the new
/// plan and the downloaded stones, for the one transaction that records the state.
fn fetch_chosen<'s>(
    root: &'s Root,
    plan: Plan,
    replan: impl FnOnce(&dyn solve::Source) -> Result<Plan>,
) -> Result<(Plan, Vec<LoadedStone<'s>>)> {
    // A repository's candidate carries its meta as the index has it: URI, sha256, size.
    let wanted: Vec<(String, mossfs_format::Meta, bool)> = plan
        .packages
        .values()
        .filter_map(|chosen| match &chosen.candidate.origin {
            Origin::Repository { id, .. } => Some((
                id.clone(),
                (*chosen.candidate.meta).clone(),
                root.store.is_cached(&chosen.candidate.id),
            )),
            _ => None,
        })
        .collect();
    if wanted.is_empty() {
        return Ok((plan, Vec::new()));
    }
    // By delta where the repository offers one that applies here and the full stone is
    // not cached already; the rest, and every delta that fails, as full stones, each
    // unpacked as soon as it has arrived (a cached one without a download).
    let mut fetched = Vec::new();
    let mut full = Vec::new();
    for (repo, meta, cached) in wanted {
        if cached {
            full.push(meta);
            continue;
        }
        match crate::engine::by_delta::get(root, &repo, &meta, None) {
            Some(stone) => fetched.push(stone),
            None => full.push(meta),
        }
    }
    let jobs = full
        .into_iter()
        .map(|meta| super::repo::job_for(root, meta, None))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if !jobs.is_empty() {
        let meter = super::repo::Meter::new(&jobs);
        fetched.extend(fetch::fetch_into_store(root, &jobs, 4, &|p| {
            meter.update(p)
        })?);
    }
    let mut local = solve::Packages::new();
    for stone in &fetched {
        local.add(stone.candidate());
    }
    let plan = replan(&local)?;
    crate::ui::step("plan again");
    Ok((plan, fetched))
}

/// What `sync` says, dry or not, when every package is already where it would go.
const NOTHING_TO_SYNC: &str = "nothing to change: every package is at its best candidate";

/// Runs `mossfs sync`: every installed package to its best candidate, orphans out.
pub fn sync(args: &SyncArgs, out: &mut dyn Write) -> Result<()> {
    if args.change.dry_run {
        let (installed, root) = dry_run_base(&args.change.root.root)?;
        let plan = match &root {
            Some(root) => {
                let snapshot = root.db.read()?;
                Plan::sync(&installed, &[&Repositories::new(&snapshot)])?
            }
            None => Plan::sync(&installed, &[])?,
        };
        let download = download_figure(root.as_ref(), &plan);
        if !args.change.stage {
            dry_run_check(root, &args.change.root.root, args.change.take_over_usr, out)?;
        }
        if plan.changes.is_empty() && !crate::ui::json() {
            writeln!(out, "{NOTHING_TO_SYNC}")?;
            return Ok(());
        }
        return print_plan("sync", &plan, download, out);
    }
    let mut root = Root::open_write(&args.change.root.root)?;
    root.take_over_usr = args.change.take_over_usr;
    report_recovery(&root);
    root.triggers = args.change.triggers.options();
    if !args.change.stage {
        root.look_for_base();
    }
    crate::ui::step("open root");
    let installed = base(&root)?;
    let snapshot = root.db.read()?;
    let plan = Plan::sync(&installed, &[&Repositories::new(&snapshot)])?;
    drop(snapshot);
    crate::ui::step("plan");
    if plan.changes.is_empty() {
        writeln!(out, "{NOTHING_TO_SYNC}")?;
        return Ok(());
    }
    let replan = |local: &dyn solve::Source| Plan::sync(&installed, &[local]);
    let download = download_figure(Some(&root), &plan);
    let (plan, mut stones) = if args.change.stage {
        preview::stage_heads(&root, plan, replan)?
    } else {
        announce(download, out)?;
        fetch_chosen(&root, plan, replan)?
    };
    finish(
        &root,
        "sync",
        (plan, download),
        &mut stones,
        args.change.stage,
        false,
        out,
    )
}

/// Runs `mossfs remove`.
pub fn remove(args: &RemoveArgs, out: &mut dyn Write) -> Result<()> {
    if args.change.dry_run {
        let (installed, root) = dry_run_base(&args.change.root.root)?;
        let plan = plan_remove(&installed, &args.names, true)?;
        if !args.change.stage {
            dry_run_check(root, &args.change.root.root, args.change.take_over_usr, out)?;
        }
        return print_plan("remove", &plan, Download::default(), out);
    }
    let mut root = Root::open_write(&args.change.root.root)?;
    root.take_over_usr = args.change.take_over_usr;
    report_recovery(&root);
    root.triggers = args.change.triggers.options();
    if !args.change.stage {
        root.look_for_base();
    }
    crate::ui::step("open root");
    let plan = plan_remove(&base(&root)?, &args.names, crate::ui::yes_all())?;
    crate::ui::step("plan");
    finish(
        &root,
        "remove",
        (plan, Download::default()),
        &mut [],
        args.change.stage,
        false,
        out,
    )
}

/// Plans a removal. The packages that need the named ones go too, once the person agrees:
/// they are shown, and asked about on a terminal; `yes` (`-y/--yes-all`, or a dry run, which
/// changes nothing) agrees without asking; without a terminal the command refuses.
fn plan_remove(installed: &[Installed], names: &[String], yes: bool) -> Result<Plan> {
    let named: HashSet<String> = names.iter().cloned().collect();
    let dependents = solve::dependents(installed, &named);
    if !dependents.is_empty() {
        let asked = names.join(", ");
        let listed: Vec<String> = dependents
            .iter()
            .map(|(package, relation, from)| format!("{package} (needs {relation} from {from})"))
            .collect();
        if !yes {
            // The question goes where the person is: a terminal on stdin and stderr.
            if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
                return Err(EngineError::RemoveNeedsConfirmation {
                    asked,
                    count: dependents.len(),
                    dependents: quote::text(&listed.join(", ")).into_owned(),
                });
            }
            let mut tty = std::io::stderr().lock();
            writeln!(
                tty,
                "removing {} also removes the packages that need it:",
                quote::text(&asked)
            )?;
            for line in &listed {
                writeln!(tty, "  {}", quote::text(line))?;
            }
            write!(tty, "remove them too? [y/N] ")?;
            tty.flush()?;
            let mut answer = String::new();
            std::io::stdin().lock().read_line(&mut answer)?;
            if !matches!(answer.trim(), "y" | "Y" | "yes") {
                return Err(EngineError::RemoveDeclined { asked });
            }
        }
    }
    let also: Vec<String> = dependents
        .into_iter()
        .map(|(package, _, _)| package)
        .collect();
    Plan::remove(installed, names, &also)
}

/// The `--json` document of a plan, before anything is recorded.
fn plan_document(
    action: &'static str,
    plan: &Plan,
    download: Download,
    applied: bool,
    stage: bool,
) -> StateChange {
    StateChange {
        action,
        applied,
        summary: plan.summary.clone(),
        download,
        changes: plan.changes.iter().map(ChangeDoc::from).collect(),
        packages: plan
            .packages
            .values()
            .map(|chosen| {
                Package::planned(
                    &chosen.candidate.id,
                    &chosen.candidate.meta,
                    chosen.explicit,
                )
            })
            .collect(),
        state: None,
        staged: stage,
        conflict_paths: Vec::new(),
        commit: None,
    }
}

/// What a dry run prints: the state that would be recorded, what changes, and why each
/// package is there.
/// What a plan downloads, with deltas where its repositories offer ones that apply here
/// (a dry run on a root not made yet downloads every repository package whole).
fn download_figure(root: Option<&Root>, plan: &Plan) -> Download {
    let mut download = Download::of(plan, root.map(|r| &r.store));
    let Some(root) = root else {
        return download;
    };
    let wanted = plan
        .packages
        .values()
        .filter_map(|chosen| match &chosen.candidate.origin {
            Origin::Repository { id, .. } => Some((id.as_str(), &*chosen.candidate.meta)),
            _ => None,
        });
    let (with, _) = crate::engine::by_delta::download_sizes(root, wanted);
    download.with_deltas = with.min(download.bytes);
    download
}

fn print_plan(
    action: &'static str,
    plan: &Plan,
    download: Download,
    out: &mut dyn Write,
) -> Result<()> {
    if crate::ui::json() {
        crate::ui::print_json(out, &plan_document(action, plan, download, false, false))?;
        return Ok(());
    }
    writeln!(out, "would record a state: {}", quote::text(&plan.summary))?;
    for (name, chosen) in &plan.packages {
        let how = if chosen.explicit {
            "explicit"
        } else {
            "dependency"
        };
        writeln!(
            out,
            "  {} {}-{} ({how}, {}, {})",
            quote::text(name),
            quote::text(&chosen.candidate.meta.version),
            chosen.candidate.meta.release,
            quote::text(&chosen.reason.to_string()),
            chosen.candidate.id
        )?;
    }
    if !plan.changes.is_empty() {
        writeln!(out, "changes:")?;
    }
    for change in &plan.changes {
        let version = |v: &Option<String>| quote::text(v.as_deref().unwrap_or("")).into_owned();
        let name = quote::text(&change.name);
        let line = match change.verb {
            Verb::Install | Verb::Reinstall => {
                format!("{} {name}-{}", change.verb.word(), version(&change.to))
            }
            Verb::Remove => format!("remove {name}-{}", version(&change.from)),
            Verb::Upgrade | Verb::Downgrade => format!(
                "{} {name} {} -> {}",
                change.verb.word(),
                version(&change.from),
                version(&change.to)
            ),
        };
        writeln!(out, "  {line}")?;
    }
    writeln!(out, "{}", download.line())?;
    Ok(())
}

/// Before a real run downloads anything, what it downloads (the plan's last line in a dry
/// run); nothing when everything is local. Under `--json` the document has it instead.
fn announce(download: Download, out: &mut dyn Write) -> Result<()> {
    if download.packages > 0 && !crate::ui::json() {
        writeln!(out, "{}", download.line())?;
    }
    Ok(())
}

fn finish(
    root: &Root,
    action: &'static str,
    (plan, download): (Plan, Download),
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
    let recorded = record_state(root, &plan, stones, allow_conflicts, status)?;
    let state = &recorded.state;
    crate::ui::step("record state");
    let mut document = plan_document(action, &plan, download, true, stage);
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
            // The refusal matters more than tidying up, which is only said when it fails:
            // what is left behind is garbage for `mossfs gc`, never a broken state.
            if let Err(tidy) = forget_unreached(root, &recorded) {
                eprintln!(
                    "note: what this command wrote could not all be removed ({tidy}); 'mossfs gc' removes the rest"
                );
            }
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
    // A candidate has no archive of its own, which the search could be checking while the
    // commit reuses it.
    if state.status == Status::Candidate {
        root.look_for_base();
    }
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
