//! `mossfs state list | show | diff | activate | prune | remove`.

use std::io::Write;

use mossfs_db::{Conflict, NodeKind, Query, StateId, Status};

use super::documents::{self, StateRow};
use super::{RootArg, print_commit, progress, report_recovery};
use crate::engine::{EngineError, Mode, Result, Root, commit_state, mounts};
use crate::progress::{Bar, Unit};

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
        #[command(flatten)]
        root: RootArg,
    },
    /// Remove old committed states, keeping the newest ones and the active one.
    Prune {
        /// How many committed states to keep besides the active one.
        #[arg(long, default_value_t = 10)]
        keep: usize,
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
        StateCommand::List(args) => list(&Root::open_read(&args.root.root)?, out),
        StateCommand::Show { id, root } => show(&Root::open_read(&root.root)?, StateId(*id), out),
        StateCommand::Active(args) => {
            let root = Root::open_read(&args.root.root)?;
            let active = root.db.read()?.active()?;
            show(&root, active.ok_or(EngineError::NoActiveState)?, out)
        }
        StateCommand::Diff { a, b, root } => {
            diff(&Root::open_read(&root.root)?, StateId(*a), StateId(*b), out)
        }
        StateCommand::Activate { id, root } => {
            let root = Root::open_write(&root.root)?;
            report_recovery(&root);
            let summary = format!("activate state {id}");
            let (state, previous) = {
                let snapshot = root.db.read()?;
                let state = snapshot.state(StateId(*id))?;
                (state, documents::active_selections(&snapshot)?)
            };
            let progress = progress("blit");
            let report = commit_state(&root, StateId(*id), Mode::Switch, progress.as_deref())?;
            if crate::ui::json() {
                let snapshot = root.db.read()?;
                let mut document =
                    documents::switch(&snapshot, "activate", &state, &previous, &report)?;
                document.summary = summary;
                crate::ui::print_json(out, &document)?;
            } else {
                print_commit(out, &report, &summary)?;
            }
            Ok(())
        }
        StateCommand::Prune { keep, root } => prune(&Root::open_write(&root.root)?, *keep, out),
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

fn list(root: &Root, out: &mut dyn Write) -> Result<()> {
    let snapshot = root.db.read()?;
    let active = snapshot.active()?;
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
            row.summary
        )?;
    }
    for row in rows.iter().filter(|r| !r.mounted.is_empty()) {
        writeln!(
            out,
            "* state {} is mounted at {}",
            row.id,
            row.mounted.join(", ")
        )?;
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
            row: StateRow::new(&state, snapshot.active()?, &mounts, size),
            tree: state.root.to_string(),
            packages: documents::Package::all(&snapshot, &state.selections)?,
            conflict_paths: documents::conflicts(&snapshot, &state.conflicts)?,
        };
        crate::ui::print_json(out, &document)?;
        return Ok(());
    }
    let active = snapshot.active()? == Some(id);
    writeln!(out, "state {id}{}", if active { " (active)" } else { "" })?;
    writeln!(out, "  created  {}", format_time(state.created))?;
    writeln!(out, "  summary  {}", state.summary)?;
    writeln!(out, "  status   {:?}", state.status)?;
    if let Some(parent) = state.parent {
        writeln!(out, "  parent   {parent}")?;
    }
    writeln!(out, "  entries  {}", state.entries)?;
    writeln!(out, "  tree     {}", state.root)?;
    for mount in mounts::live(&root.path)? {
        if mount.state == id {
            writeln!(out, "  mounted  {}", mount.mountpoint.display())?;
        }
    }
    writeln!(out, "  packages ({}):", state.selections.len())?;
    for s in &state.selections {
        let record = snapshot
            .package(&s.package)?
            .ok_or(mossfs_db::DbError::NoPackage(s.package))?;
        let how = if s.explicit { "" } else { " (dependency)" };
        writeln!(
            out,
            "    {}-{}-{}{how}",
            record.meta.name, record.meta.version, record.meta.release
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
        writeln!(out, "    usr/{}", String::from_utf8_lossy(&conflict.path))?;
        for node in &conflict.contenders {
            let owner = match node.owner {
                Some(id) => q
                    .package(&id)?
                    .map_or_else(|| id.to_string(), |r| r.meta.full_name()),
                None => "(implicit directory)".to_owned(),
            };
            writeln!(
                out,
                "      {owner}: {} {:o}{}",
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
        NodeKind::Symlink(text) => format!(" -> {}", String::from_utf8_lossy(text)),
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
        rows.push(DiffRow {
            path: format!("/usr/{}", String::from_utf8_lossy(&change.path)),
            change: kind,
            old_package,
            new_package,
        });
    }
    if crate::ui::json() {
        let document = Diff {
            from: a.0,
            to: b.0,
            count: rows.len(),
            paths: rows,
        };
        crate::ui::print_json(out, &document)?;
        return Ok(());
    }
    for row in &rows {
        let mark = match row.change {
            "added" => "+",
            "removed" => "-",
            _ => "~",
        };
        let dash = "-".to_owned();
        let owners = match row.change {
            "added" => row.new_package.clone().unwrap_or(dash),
            "removed" => row.old_package.clone().unwrap_or(dash),
            _ => {
                let before = row.old_package.as_ref().unwrap_or(&dash);
                let after = row.new_package.as_ref().unwrap_or(&dash);
                if before == after {
                    after.clone()
                } else {
                    format!("{before} -> {after}")
                }
            }
        };
        writeln!(out, "{mark} {}  [{owners}]", &row.path[1..])?;
    }
    writeln!(
        out,
        "{} paths differ between state {a} and state {b}",
        rows.len()
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
    path: String,
    /// `added`, `removed` or `changed`.
    change: &'static str,
    /// The package that shipped it in the old state (null for an implicit directory).
    old_package: Option<String>,
    /// The package that ships it in the new state.
    new_package: Option<String>,
}

fn prune(root: &Root, keep: usize, out: &mut dyn Write) -> Result<()> {
    report_recovery(root);
    let snapshot = root.db.read()?;
    let active = snapshot.active()?;
    let mut committed: Vec<StateId> = snapshot
        .states()?
        .into_iter()
        .filter(|s| s.status == Status::Committed && Some(s.id) != active)
        .map(|s| s.id)
        .collect();
    drop(snapshot);
    committed.sort_by(|a, b| b.cmp(a));
    let old: Vec<StateId> = committed.into_iter().skip(keep).collect();
    // Asked before the gate is taken, so that no mount waits on a person; what was agreed
    // to is checked again under the gate.
    let unmounted: Vec<StateId> = {
        let mounted = mounts::live(&root.path)?;
        old.iter()
            .copied()
            .filter(|id| mounts::mount_of(&mounted, *id).is_none())
            .collect()
    };
    if !unmounted.is_empty()
        && !crate::ui::confirm(&format!(
            "prune removes {} (keeping the active state and the {keep} newest); continue?",
            name_states(&unmounted)
        ))?
    {
        return Err(EngineError::Cancelled);
    }
    let gate = mounts::Gate::take(&root.path)?;
    let mounted = gate.live()?;
    let mut removal = documents::Removal::default();
    let mut doomed = Vec::new();
    for id in old {
        match documents::KeptMounted::new(&mounted, id) {
            Some(kept) => removal.kept_mounted.push(kept),
            None if unmounted.contains(&id) => doomed.push(id),
            None => {}
        }
    }
    remove_gated(root, gate, &mounted, &doomed)?;
    removal.removed = doomed.iter().map(|id| id.0).collect();
    print_removal(&removal, out)
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

fn remove(root: &Root, ids: &[StateId], out: &mut dyn Write) -> Result<()> {
    if ids.len() > 1 && !crate::ui::confirm(&format!("remove {}?", name_states(ids)))? {
        return Err(EngineError::Cancelled);
    }
    let gate = mounts::Gate::take(&root.path)?;
    let mounted = gate.live()?;
    remove_gated(root, gate, &mounted, ids)?;
    let removal = documents::Removal {
        removed: ids.iter().map(|id| id.0).collect(),
        kept_mounted: Vec::new(),
    };
    print_removal(&removal, out)
}

fn print_removal(removal: &documents::Removal, out: &mut dyn Write) -> Result<()> {
    if crate::ui::json() {
        crate::ui::print_json(out, removal)?;
        return Ok(());
    }
    for kept in &removal.kept_mounted {
        writeln!(
            out,
            "kept state {}: it is mounted at {}",
            kept.state, kept.mountpoint
        )?;
    }
    for id in &removal.removed {
        writeln!(out, "removed state {id}")?;
    }
    if removal.removed.is_empty() {
        writeln!(out, "nothing to prune")?;
    } else {
        writeln!(
            out,
            "run 'mossfs gc' to reclaim the space their packages used"
        )?;
    }
    Ok(())
}

/// Removes states while `gate` keeps new mounts from registering, so none can join
/// `mounted` (read under that gate) between the check and the commit; their archived
/// trees go after that.
fn remove_gated(
    root: &Root,
    gate: mounts::Gate,
    mounted: &[mounts::LiveMount],
    ids: &[StateId],
) -> Result<()> {
    let mut txn = root.db.write()?;
    let active = txn.active()?;
    for id in ids {
        if Some(*id) == active {
            return Err(EngineError::RemoveActive(*id));
        }
        if let Some(mount) = mounts::mount_of(mounted, *id) {
            return Err(EngineError::RemoveMounted {
                state: *id,
                mountpoint: mount.mountpoint.clone(),
            });
        }
        txn.state(*id)?;
        txn.remove_state(*id)?;
    }
    txn.commit()?;
    drop(gate);
    // Database first, then files (DESIGN.md §6.5).
    let bar = Bar::new("remove", ids.len() as u64, Unit::Items("archived trees"));
    for id in ids {
        bar.message(format!("state {id}"));
        let slot = root.archive(*id);
        if slot.exists() {
            mossfs_fs::blit::remove_tree(&slot)?;
        }
        bar.inc(1);
    }
    Ok(())
}

/// UTC date and time, without pulling in a date library for one format.
pub fn format_time(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
