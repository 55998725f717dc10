//! `mossfs state list | show | diff | activate | prune | remove`.

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use mossfs_db::{Conflict, NodeKind, Query, StateId, Status};
use mossfs_fs::sysroot;

use super::documents::{self, StateRow};
use super::{RootArg, print_commit, progress, report_recovery};
use crate::engine::{EngineError, Mode, Result, Root, commit_state, mounts};
use crate::progress::{Bar, Unit};
use crate::quote;

/// `mossfs state ...`.
#[derive(clap::Subcommand, Debug)]
pub enum StateCommand {
    /// List every recorded state.
    List(RootOnly),
    /// Show the active state, as `state show` does.
    Active(RootOnly),
    /// Show one state: its packages and conflicts.
    Show {
        /// The state.
        id: u64,
        #[command(flatten)]
        root: RootArg,
    },
    /// List paths added, removed and changed between two states.
    Diff {
        /// The old state.
        a: u64,
        /// The new state.
        b: u64,
        #[command(flatten)]
        root: RootArg,
    },
    /// Make a recorded state the live one (roll back or forward).
    Activate {
        /// The state.
        id: u64,
        /// Replace a `usr` that mossfs did not make, keeping it in `.moss/root/unmanaged-N/usr`.
        #[arg(long)]
        take_over_usr: bool,
        #[command(flatten)]
        triggers: super::triggers::TriggerArgs,
        #[command(flatten)]
        root: RootArg,
    },
    /// Remove old committed states, keeping the newest ones and the active one; or, with
    /// --candidates, every candidate instead.
    Prune {
        /// How many committed states to keep besides the active one.
        #[arg(long, default_value_t = 10)]
        keep: usize,
        /// Remove every candidate state (staged, never committed) and leave committed
        /// states alone.
        #[arg(long, conflicts_with = "keep")]
        candidates: bool,
        #[command(flatten)]
        root: RootArg,
    },
    /// Remove states (never the active one).
    Remove {
        /// The states.
        #[arg(required = true)]
        ids: Vec<u64>,
        #[command(flatten)]
        root: RootArg,
    },
}

/// Just `--root`.
#[derive(clap::Args, Debug)]
pub struct RootOnly {
    #[command(flatten)]
    pub root: RootArg,
}

/// Runs a `state` subcommand.
pub fn run(command: &StateCommand, out: &mut dyn Write) -> Result<()> {
    match command {
        StateCommand::List(args) => list(&open_read(&args.root.root)?, out),
        StateCommand::Show { id, root } => show(&open_read(&root.root)?, StateId(*id), out),
        StateCommand::Active(args) => {
            let root = open_read(&args.root.root)?;
            let active = root.live_state(&root.db.read()?)?;
            show(&root, active.ok_or(EngineError::NoActiveState)?, out)
        }
        StateCommand::Diff { a, b, root } => {
            diff(&open_read(&root.root)?, StateId(*a), StateId(*b), out)
        }
        StateCommand::Activate {
            id,
            take_over_usr,
            triggers,
            root,
        } => {
            let mut root = Root::open_write(&root.root)?;
            root.take_over_usr = *take_over_usr;
            report_recovery(&root);
            root.triggers = triggers.options();
            let summary = format!("activate state {id}");
            // What was active, for the document; the state itself is read after the
            // commit, so that its refusals come first, as without --json.
            let previous = documents::active_selections(&root.db.read()?)?;
            let progress = progress("blit");
            let report = commit_state(&root, StateId(*id), Mode::Switch, progress.as_deref())?;
            if crate::ui::json() {
                super::commit_notes(&report);
                let snapshot = root.db.read()?;
                let state = snapshot.state(StateId(*id))?;
                let mut document =
                    documents::switch(&snapshot, "activate", &state, &previous, &report)?;
                document.summary = summary;
                crate::ui::print_json(out, &document)?;
            } else {
                print_commit(out, &report, &summary)?;
            }
            Ok(())
        }
        StateCommand::Prune {
            keep,
            candidates,
            root,
        } => prune(&Root::open_write(&root.root)?, *keep, *candidates, out),
        StateCommand::Remove { ids, root } => {
            let root = Root::open_write(&root.root)?;
            remove(
                &root,
                &ids.iter().map(|i| StateId(*i)).collect::<Vec<_>>(),
                out,
            )
        }
    }
}

/// Opens the root for reading, and says if the database is behind `usr`.
fn open_read(path: &std::path::Path) -> Result<Root> {
    let root = Root::open_read(path)?;
    report_recovery(&root);
    Ok(root)
}

fn list(root: &Root, out: &mut dyn Write) -> Result<()> {
    let snapshot = root.db.read()?;
    let active = root.live_state(&snapshot)?;
    let mounts = mounts::live(&root.path)?;
    let states = snapshot.states()?;
    let sizes = documents::own_sizes(&snapshot, &states)?;
    let rows: Vec<StateRow> = states
        .iter()
        .map(|s| StateRow::new(s, active, &mounts, sizes.get(&s.id).copied().unwrap_or(0)))
        .collect();
    if crate::ui::json() {
        crate::ui::print_json(out, &rows)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:>5}  {:<10}  {:>8}  {:>8}  {:>10}  {:<19}  summary",
        "state", "status", "packages", "entries", "own size", "created"
    )?;
    for row in &rows {
        let mark = if row.mounted.is_empty() { "" } else { "*" };
        writeln!(
            out,
            "{:>5}  {:<10}  {:>8}  {:>8}  {:>10}  {:<19}  {}",
            row.id,
            format!("{}{mark}", row.status),
            row.packages,
            row.entries,
            crate::units::bytes(row.own_size),
            row.created_utc,
            quote::text(&row.summary)
        )?;
    }
    for row in rows.iter().filter(|r| !r.mounted.is_empty()) {
        let at: Vec<String> = mounts
            .iter()
            .filter(|m| m.state.0 == row.id)
            .map(|m| quote::name(m.mountpoint.as_os_str().as_bytes()).into_owned())
            .collect();
        writeln!(out, "* state {} is mounted at {}", row.id, at.join(", "))?;
    }
    Ok(())
}

fn show(root: &Root, id: StateId, out: &mut dyn Write) -> Result<()> {
    let snapshot = root.db.read()?;
    let state = snapshot.state(id)?;
    if crate::ui::json() {
        let mounts = mounts::live(&root.path)?;
        let states = snapshot.states()?;
        let size = documents::own_sizes(&snapshot, &states)?
            .get(&id)
            .copied()
            .unwrap_or(0);
        let document = documents::StateShow {
            row: StateRow::new(&state, root.live_state(&snapshot)?, &mounts, size),
            tree: state.root.to_string(),
            packages: documents::Package::all(&snapshot, &state.selections)?,
            conflict_paths: documents::conflicts(&snapshot, &state.conflicts)?,
        };
        crate::ui::print_json(out, &document)?;
        return Ok(());
    }
    let active = root.live_state(&snapshot)? == Some(id);
    writeln!(out, "state {id}{}", if active { " (active)" } else { "" })?;
    writeln!(out, "  created  {}", mossfs_repo::utc_time(state.created))?;
    writeln!(out, "  summary  {}", quote::text(&state.summary))?;
    writeln!(out, "  status   {:?}", state.status)?;
    if let Some(parent) = state.parent {
        writeln!(out, "  parent   {parent}")?;
    }
    writeln!(out, "  entries  {}", state.entries)?;
    writeln!(out, "  tree     {}", state.root)?;
    for mount in mounts::live(&root.path)? {
        if mount.state == id {
            let at = quote::name(mount.mountpoint.as_os_str().as_bytes());
            if mount.attached() {
                writeln!(out, "  mounted  {at}")?;
            } else {
                writeln!(
                    out,
                    "  mounted  {at}, detached; its server (pid {}) still serves files that are open",
                    mount.pid
                )?;
            }
        }
    }
    writeln!(out, "  packages ({}):", state.selections.len())?;
    for s in &state.selections {
        let record = snapshot
            .package(&s.package)?
            .ok_or(mossfs_db::DbError::NoPackage(s.package))?;
        let how = match (s.explicit, &s.reason) {
            (true, _) => String::new(),
            (false, mossfs_db::Reason::Unknown) => " (dependency)".to_owned(),
            (false, reason) => format!(" (dependency: {reason})"),
        };
        writeln!(
            out,
            "    {}",
            quote::text(&(record.meta.full_name() + &how))
        )?;
    }
    if state.conflicts.is_empty() {
        writeln!(out, "  conflicts: none")?;
    } else {
        print_conflicts(&snapshot, &state.conflicts, out)?;
    }
    Ok(())
}

/// Prints each conflicted path with every contender and its package.
pub fn print_conflicts(q: &impl Query, conflicts: &[Conflict], out: &mut dyn Write) -> Result<()> {
    writeln!(out, "  conflicts ({}):", conflicts.len())?;
    for conflict in conflicts {
        let path = [b"usr/", &conflict.path[..]].concat();
        writeln!(out, "    {}", quote::name(&path))?;
        for node in &conflict.contenders {
            let owner = match node.owner {
                Some(id) => q
                    .package(&id)?
                    .map_or_else(|| id.to_string(), |r| r.meta.full_name()),
                None => "(implicit directory)".to_owned(),
            };
            writeln!(
                out,
                "      {}: {} {:o}{}",
                quote::text(&owner),
                node.kind.name(),
                node.mode & 0o7777,
                describe(&node.kind)
            )?;
        }
    }
    Ok(())
}

fn describe(kind: &NodeKind) -> String {
    match kind {
        NodeKind::Regular { asset, size } => format!(" {size} bytes, {asset}"),
        NodeKind::Symlink(text) => format!(" -> {}", quote::name(text)),
        _ => String::new(),
    }
}

fn diff(root: &Root, a: StateId, b: StateId, out: &mut dyn Write) -> Result<()> {
    let snapshot = root.db.read()?;
    let (old, new) = (snapshot.state(a)?, snapshot.state(b)?);
    let changes = mossfs_fs::diff::diff(&snapshot, old.root, new.root)?;
    // An implicit directory belongs to no package.
    let name = |id: Option<mossfs_format::PackageId>| -> Result<Option<String>> {
        Ok(match id {
            Some(id) => Some(
                snapshot
                    .package(&id)?
                    .map_or_else(|| id.to_string(), |r| r.meta.name),
            ),
            None => None,
        })
    };
    let mut rows = Vec::new();
    for change in &changes {
        // A path whose only change is the package that ships it (an upgrade that kept the
        // file as it was) does not differ on disk.
        if let (Some(o), Some(n)) = (&change.old, &change.new)
            && mossfs_fs::blit::same_on_disk(o, n)
        {
            continue;
        }
        let (kind, old_package, new_package) = match (&change.old, &change.new) {
            (None, Some(n)) => ("added", None, name(n.owner)?),
            (Some(o), None) => ("removed", name(o.owner)?, None),
            (Some(o), Some(n)) => ("changed", name(o.owner)?, name(n.owner)?),
            (None, None) => continue,
        };
        rows.push((change.path.clone(), kind, old_package, new_package));
    }
    if crate::ui::json() {
        let document = Diff {
            from: a.0,
            to: b.0,
            count: rows.len(),
            paths: rows
                .into_iter()
                .map(|(path, change, old_package, new_package)| DiffRow {
                    path: documents::usr_path(&path),
                    change,
                    old_package,
                    new_package,
                })
                .collect(),
        };
        crate::ui::print_json(out, &document)?;
        return Ok(());
    }
    let shown = rows.len();
    for (path, kind, old_package, new_package) in rows {
        let dash = "-".to_owned();
        let (mark, owners) = match kind {
            "added" => ("+", new_package.unwrap_or(dash)),
            "removed" => ("-", old_package.unwrap_or(dash)),
            _ => {
                let before = old_package.unwrap_or_else(|| dash.clone());
                let after = new_package.unwrap_or(dash);
                if before == after {
                    ("~", after)
                } else {
                    ("~", format!("{before} -> {after}"))
                }
            }
        };
        let path = [b"usr/", &path[..]].concat();
        writeln!(
            out,
            "{mark} {}  [{}]",
            quote::name(&path),
            quote::text(&owners)
        )?;
    }
    writeln!(
        out,
        "{} paths differ between state {a} and state {b}",
        shown
    )?;
    Ok(())
}

/// `state diff --json`.
#[derive(Debug, serde::Serialize)]
struct Diff {
    from: u64,
    to: u64,
    count: usize,
    paths: Vec<DiffRow>,
}

/// One path of `state diff`.
#[derive(Debug, serde::Serialize)]
struct DiffRow {
    /// `/usr/...`.
    path: serde_json::Value,
    /// `added`, `removed` or `changed`.
    change: &'static str,
    /// The package that shipped it in the old state (null for an implicit directory).
    old_package: Option<String>,
    /// The package that ships it in the new state.
    new_package: Option<String>,
}

fn prune(root: &Root, keep: usize, candidates: bool, out: &mut dyn Write) -> Result<()> {
    report_recovery(root);
    let snapshot = root.db.read()?;
    let active = snapshot.active()?;
    // With --candidates, every state never committed: staged ones, and (only while it is
    // mounted, since recovery drops the rest) one an interrupted command left.
    let (wanted, keep) = if candidates {
        (Status::Candidate, 0)
    } else {
        (Status::Committed, keep)
    };
    let mut chosen: Vec<StateId> = snapshot
        .states()?
        .into_iter()
        .filter(|s| {
            Some(s.id) != active
                && (s.status == wanted || (candidates && s.status == Status::InFlight))
        })
        .map(|s| s.id)
        .collect();
    drop(snapshot);
    chosen.sort_by(|a, b| b.cmp(a));
    let chosen: Vec<StateId> = chosen.into_iter().skip(keep).collect();
    // Asked before the gate is taken, so that no mount waits on a person. The writer lock
    // keeps the states as they are; mounts are checked again under the gate.
    let which = if candidates {
        "every candidate".to_owned()
    } else {
        format!("keeping the active state and the {keep} newest")
    };
    if !chosen.is_empty()
        && !crate::ui::confirm(&format!(
            "prune removes {} ({which}), except any that is mounted; continue?",
            name_states(&chosen)
        ))?
    {
        return Err(EngineError::Cancelled);
    }
    let gate = mounts::Gate::take(&root.path)?;
    let mounted = gate.live()?;
    let mut removal = documents::Removal::default();
    let mut doomed = Vec::new();
    for id in chosen {
        let kept = |mountpoint: &std::path::Path, reason: String| documents::Kept {
            state: id.0,
            mountpoint: quote::json(mountpoint.as_os_str().as_bytes()),
            reason,
        };
        match mounts::mount_of(&mounted, id) {
            Some(mount) if mount.attached() => removal.kept.push(kept(
                &mount.mountpoint,
                format!(
                    "it is mounted at {}",
                    quote::name(mount.mountpoint.as_os_str().as_bytes())
                ),
            )),
            Some(mount) => removal.kept.push(kept(
                &mount.mountpoint,
                format!(
                    "its mount at {} was detached, but its server (pid {}) still serves files that are open",
                    quote::name(mount.mountpoint.as_os_str().as_bytes()),
                    mount.pid
                ),
            )),
            None => match sysroot::mounts_below(&root.archive(id))?.first() {
                Some(point) => removal.kept.push(kept(
                    point,
                    format!(
                        "{} is mounted inside its archived tree; unmount it to prune the state",
                        quote::name(point.as_os_str().as_bytes())
                    ),
                )),
                None => doomed.push(id),
            },
        }
    }
    remove_gated(root, gate, &mounted, &doomed)?;
    removal.removed = doomed.iter().map(|id| id.0).collect();
    removal.orphans = remove_orphans(root)?;
    print_removal(&removal, true, out)
}

/// "state 4", "states 3, 4 and 7".
fn name_states(ids: &[StateId]) -> String {
    let mut sorted = ids.to_vec();
    sorted.sort();
    let words: Vec<String> = sorted.iter().map(ToString::to_string).collect();
    match words.as_slice() {
        [one] => format!("state {one}"),
        [rest @ .., last] => format!("states {} and {last}", rest.join(", ")),
        [] => "no state".to_owned(),
    }
}

/// Removes the archived trees no state records; a line for each, for people.
pub fn remove_orphans(root: &Root) -> Result<Vec<String>> {
    let known: HashSet<StateId> = root.db.read()?.states()?.iter().map(|s| s.id).collect();
    Ok(root
        .remove_orphan_trees(&known)?
        .iter()
        .map(ToString::to_string)
        .collect())
}

fn remove(root: &Root, ids: &[StateId], out: &mut dyn Write) -> Result<()> {
    if ids.len() > 1 && !crate::ui::confirm(&format!("remove {}?", name_states(ids)))? {
        return Err(EngineError::Cancelled);
    }
    let gate = mounts::Gate::take(&root.path)?;
    let mounted = gate.live()?;
    let removed = remove_gated(root, gate, &mounted, ids)?;
    let removal = documents::Removal {
        removed: removed.iter().map(|id| id.0).collect(),
        ..documents::Removal::default()
    };
    print_removal(&removal, false, out)
}

/// What a removal did, as text or as its `--json` document.
fn print_removal(removal: &documents::Removal, prune: bool, out: &mut dyn Write) -> Result<()> {
    if crate::ui::json() {
        crate::ui::print_json(out, removal)?;
        return Ok(());
    }
    for kept in &removal.kept {
        writeln!(out, "kept state {}: {}", kept.state, kept.reason)?;
    }
    for id in &removal.removed {
        writeln!(out, "removed state {id}")?;
    }
    if !removal.removed.is_empty() {
        writeln!(
            out,
            "run 'mossfs gc' to reclaim the space their packages used"
        )?;
    }
    for note in &removal.orphans {
        writeln!(out, "{note}")?;
    }
    if prune && removal.removed.is_empty() && removal.orphans.is_empty() {
        writeln!(out, "nothing to prune")?;
    }
    Ok(())
}

/// Removes states while `gate` keeps new mounts from registering, so none can join
/// `mounted` (read under that gate) before the states are gone. Every state is checked
/// before anything is removed; then each state's archived tree is removed, and only then
/// the state forgotten (DESIGN.md §6.5), so a tree that cannot be removed keeps its state.
/// Returns the states removed, each once.
fn remove_gated(
    root: &Root,
    gate: mounts::Gate,
    mounted: &[mounts::LiveMount],
    ids: &[StateId],
) -> Result<Vec<StateId>> {
    let mut unique = Vec::with_capacity(ids.len());
    for id in ids {
        if !unique.contains(id) {
            unique.push(*id);
        }
    }
    let snapshot = root.db.read()?;
    let active = snapshot.active()?;
    for id in &unique {
        if Some(*id) == active {
            return Err(EngineError::RemoveActive(*id));
        }
        if let Some(mount) = mounts::mount_of(mounted, *id) {
            return Err(if mount.attached() {
                EngineError::RemoveMounted {
                    state: *id,
                    mountpoint: mount.mountpoint.clone(),
                }
            } else {
                EngineError::RemoveDetached {
                    state: *id,
                    mountpoint: mount.mountpoint.clone(),
                    pid: mount.pid,
                }
            });
        }
        snapshot.state(*id)?;
        if let Some(mountpoint) = sysroot::mounts_below(&root.archive(*id))?
            .into_iter()
            .next()
        {
            return Err(EngineError::ArchiveMounted {
                state: *id,
                mountpoint,
            });
        }
    }
    drop(snapshot);
    let bar = Bar::new("remove", unique.len() as u64, Unit::Items("states"));
    for id in &unique {
        bar.message(format!("state {id}"));
        root.remove_archive(*id)?;
        let mut txn = root.db.write()?;
        txn.remove_state(*id)?;
        txn.commit()?;
        bar.inc(1);
    }
    drop(gate);
    Ok(unique)
}
