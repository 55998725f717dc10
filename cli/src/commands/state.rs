//! `mossfs state list | show | diff | activate | prune | remove`.

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use mossfs_db::{Conflict, NodeKind, Query, StateId, Status};
use mossfs_fs::sysroot;

use super::{RootArg, print_commit, progress, report_recovery};
use crate::engine::{EngineError, Mode, Result, Root, commit_state, mounts};
use crate::quote;

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
        /// Replace a `usr` that mossfs did not make, keeping it in `.moss/root/unmanaged-N/usr`.
        #[arg(long)]
        take_over_usr: bool,
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
        StateCommand::Diff { a, b, root } => {
            diff(&open_read(&root.root)?, StateId(*a), StateId(*b), out)
        }
        StateCommand::Activate {
            id,
            take_over_usr,
            root,
        } => {
            let mut root = Root::open_write(&root.root)?;
            root.take_over_usr = *take_over_usr;
            report_recovery(&root);
            let summary = format!("activate state {id}");
            let progress = progress("blit");
            let report = commit_state(&root, StateId(*id), Mode::Switch, progress.as_deref())?;
            print_commit(out, &report, &summary)?;
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
            (false, Status::InFlight) => "in-flight",
        };
        writeln!(
            out,
            "{:>5}  {:<10}  {:>8}  {:>8}  {:<19}  {}",
            state.id.0,
            status,
            state.selections.len(),
            state.entries,
            format_time(state.created),
            quote::text(&state.summary)
        )?;
    }
    Ok(())
}

fn show(root: &Root, id: StateId, out: &mut dyn Write) -> Result<()> {
    let snapshot = root.db.read()?;
    let state = snapshot.state(id)?;
    let active = root.live_state(&snapshot)? == Some(id);
    writeln!(out, "state {id}{}", if active { " (active)" } else { "" })?;
    writeln!(out, "  created  {}", format_time(state.created))?;
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
        let path = [b"usr/", &change.path[..]].concat();
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

fn prune(root: &Root, keep: usize, candidates: bool, out: &mut dyn Write) -> Result<()> {
    report_recovery(root);
    let gate = mounts::Gate::take(&root.path)?;
    let mounted = gate.live()?;
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
    let mut doomed = Vec::new();
    for id in chosen.into_iter().skip(keep) {
        match mounts::mount_of(&mounted, id) {
            Some(mount) if mount.attached() => writeln!(
                out,
                "kept state {id}: it is mounted at {}",
                quote::name(mount.mountpoint.as_os_str().as_bytes())
            )?,
            Some(mount) => writeln!(
                out,
                "kept state {id}: its mount at {} was detached, but its server (pid {}) still serves files that are open",
                quote::name(mount.mountpoint.as_os_str().as_bytes()),
                mount.pid
            )?,
            None => match sysroot::mounts_below(&root.archive(id))?.first() {
                Some(point) => writeln!(
                    out,
                    "kept state {id}: {} is mounted inside its archived tree; unmount it to prune the state",
                    quote::name(point.as_os_str().as_bytes())
                )?,
                None => doomed.push(id),
            },
        }
    }
    remove_gated(root, gate, &mounted, &doomed, out)?;
    let orphans = remove_orphans(root, out)?;
    if doomed.is_empty() && orphans == 0 {
        writeln!(out, "nothing to prune")?;
    }
    Ok(())
}

/// Removes the archived trees no state records, printing a line for each; how many.
pub fn remove_orphans(root: &Root, out: &mut dyn Write) -> Result<usize> {
    let known: HashSet<StateId> = root.db.read()?.states()?.iter().map(|s| s.id).collect();
    let notes = root.remove_orphan_trees(&known)?;
    for note in &notes {
        writeln!(out, "{note}")?;
    }
    Ok(notes.len())
}

fn remove(root: &Root, ids: &[StateId], out: &mut dyn Write) -> Result<()> {
    let gate = mounts::Gate::take(&root.path)?;
    let mounted = gate.live()?;
    remove_gated(root, gate, &mounted, ids, out)
}

/// Removes states while `gate` keeps new mounts from registering, so none can join
/// `mounted` (read under that gate) before the states are gone. Every state is checked
/// before anything is removed; then each state's archived tree is removed, and only then
/// the state forgotten (DESIGN.md §6.5), so a tree that cannot be removed keeps its state.
fn remove_gated(
    root: &Root,
    gate: mounts::Gate,
    mounted: &[mounts::LiveMount],
    ids: &[StateId],
    out: &mut dyn Write,
) -> Result<()> {
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
    for id in &unique {
        root.remove_archive(*id)?;
        let mut txn = root.db.write()?;
        txn.remove_state(*id)?;
        txn.commit()?;
        writeln!(out, "removed state {id}")?;
    }
    drop(gate);
    if !unique.is_empty() {
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
