//! `mossfs state list | show | diff | activate | prune | remove`.

use std::io::Write;

use mossfs_db::{Conflict, NodeKind, Query, StateId, Status};

use super::{RootArg, print_commit, progress, report_recovery};
use crate::engine::{EngineError, Mode, Result, Root, commit_state, mounts};

/// `mossfs state ...`.
#[derive(clap::Subcommand, Debug)]
pub enum StateCommand {
    /// List every recorded state.
    List(RootOnly),
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
        triggers: super::triggers::TriggerArgs,
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
        StateCommand::Diff { a, b, root } => {
            diff(&Root::open_read(&root.root)?, StateId(*a), StateId(*b), out)
        }
        StateCommand::Activate { id, triggers, root } => {
            let mut root = Root::open_write(&root.root)?;
            report_recovery(&root);
            root.triggers = triggers.options();
            let summary = format!("activate state {id}");
            let progress = progress("blit");
            let report = commit_state(&root, StateId(*id), Mode::Switch, progress.as_deref())?;
            print_commit(out, &report, &summary)?;
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
    writeln!(
        out,
        "{:>5}  {:<10}  {:>8}  {:>8}  {:<19}  summary",
        "state", "status", "packages", "entries", "created"
    )?;
    for state in snapshot.states()? {
        let status = match (Some(state.id) == active, state.status) {
            (true, _) => "active",
            (false, Status::Committed) => "committed",
            (false, Status::Candidate) if state.conflicts.is_empty() => "candidate",
            (false, Status::Candidate) => "conflicts",
        };
        writeln!(
            out,
            "{:>5}  {:<10}  {:>8}  {:>8}  {:<19}  {}",
            state.id.0,
            status,
            state.selections.len(),
            state.entries,
            format_time(state.created),
            state.summary
        )?;
    }
    Ok(())
}

fn show(root: &Root, id: StateId, out: &mut dyn Write) -> Result<()> {
    let snapshot = root.db.read()?;
    let state = snapshot.state(id)?;
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
    let name = |id: Option<mossfs_format::PackageId>| -> Result<String> {
        Ok(match id {
            Some(id) => snapshot
                .package(&id)?
                .map_or_else(|| id.to_string(), |r| r.meta.name),
            None => "-".to_owned(),
        })
    };
    let mut shown = 0;
    for change in &changes {
        // A path whose only change is the package that ships it (an upgrade that kept the
        // file as it was) does not differ on disk.
        if let (Some(o), Some(n)) = (&change.old, &change.new)
            && mossfs_fs::blit::same_on_disk(o, n)
        {
            continue;
        }
        shown += 1;
        let path = String::from_utf8_lossy(&change.path);
        let (mark, owners) = match (&change.old, &change.new) {
            (None, Some(n)) => ("+", name(n.owner)?),
            (Some(o), None) => ("-", name(o.owner)?),
            (Some(o), Some(n)) => {
                let (before, after) = (name(o.owner)?, name(n.owner)?);
                if before == after {
                    ("~", after)
                } else {
                    ("~", format!("{before} -> {after}"))
                }
            }
            (None, None) => continue,
        };
        writeln!(out, "{mark} usr/{path}  [{owners}]")?;
    }
    writeln!(
        out,
        "{} paths differ between state {a} and state {b}",
        shown
    )?;
    Ok(())
}

fn prune(root: &Root, keep: usize, out: &mut dyn Write) -> Result<()> {
    report_recovery(root);
    let gate = mounts::Gate::take(&root.path)?;
    let mounted = gate.live()?;
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
    let mut doomed = Vec::new();
    for id in committed.into_iter().skip(keep) {
        match mounts::mount_of(&mounted, id) {
            Some(mount) => writeln!(
                out,
                "kept state {id}: it is mounted at {}",
                mount.mountpoint.display()
            )?,
            None => doomed.push(id),
        }
    }
    remove_gated(root, gate, &mounted, &doomed, out)?;
    if doomed.is_empty() {
        writeln!(out, "nothing to prune")?;
    }
    Ok(())
}

fn remove(root: &Root, ids: &[StateId], out: &mut dyn Write) -> Result<()> {
    let gate = mounts::Gate::take(&root.path)?;
    let mounted = gate.live()?;
    remove_gated(root, gate, &mounted, ids, out)
}

/// Removes states while `gate` keeps new mounts from registering, so none can join
/// `mounted` (read under that gate) between the check and the commit; their archived
/// trees go after that.
fn remove_gated(
    root: &Root,
    gate: mounts::Gate,
    mounted: &[mounts::LiveMount],
    ids: &[StateId],
    out: &mut dyn Write,
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
    for id in ids {
        let slot = root.archive(*id);
        if slot.exists() {
            mossfs_fs::blit::remove_tree(&slot)?;
        }
        writeln!(out, "removed state {id}")?;
    }
    if !ids.is_empty() {
        writeln!(
            out,
            "run 'mossfs gc' to reclaim the space their packages used"
        )?;
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
