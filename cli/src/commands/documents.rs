//! The `--json` documents: one typed struct per answer, serialized by serde, so that field
//! names are spelled once and stay stable. Every command that takes `--json` prints exactly
//! one of these on stdout, and nothing else there (README.md "Output for scripts" shows
//! each with an example).
//!
//! Field conventions: package ids, asset and tree hashes are lowercase hex strings; times
//! are seconds since the Unix epoch (`created`) with a UTC text form beside them
//! (`created_utc`); sizes are bytes; paths are absolute (`/usr/...`), and a path or link
//! text keeps every byte as [`crate::quote::json`] writes it (a string, or `{"bytes": hex}`
//! when it is not UTF-8).

use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;

use mossfs_db::{Conflict, NodeKind, PackageRecord, Query, Selection, State, StateId, Status};
use mossfs_format::{AssetHash, PackageId};
use serde::Serialize;
use serde_json::Value;

use crate::engine::mounts::LiveMount;
use crate::engine::{Result, change::Change};
use crate::quote;

/// A package of a state, as `state show`, `list installed` and plans name it.
#[derive(Debug, Serialize)]
pub struct Package {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its release number.
    pub release: u64,
    /// The sha256 of the stone.
    pub id: String,
    /// Asked for by name, rather than pulled in as a dependency.
    pub explicit: bool,
    /// One line about it.
    pub summary: String,
}

impl Package {
    /// From a database record and how the state selects it.
    pub fn new(record: &PackageRecord, explicit: bool) -> Package {
        Package {
            name: record.meta.name.clone(),
            version: record.meta.version.clone(),
            release: record.meta.release,
            id: record.id.to_string(),
            explicit,
            summary: record.meta.summary.clone(),
        }
    }

    /// Every package of `selections`, sorted by name.
    pub fn all(q: &impl Query, selections: &[Selection]) -> Result<Vec<Package>> {
        let mut packages = Vec::with_capacity(selections.len());
        for s in selections {
            let record = q
                .package(&s.package)?
                .ok_or(mossfs_db::DbError::NoPackage(s.package))?;
            packages.push(Package::new(&record, s.explicit));
        }
        packages.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(packages)
    }
}

/// `candidate`, `conflicts` (a candidate that can never be committed), `in-flight` (a
/// commit under way, or one an interrupted command left), `committed`, or `active`.
pub fn status_word(state: &State, active: Option<StateId>) -> &'static str {
    match (Some(state.id) == active, state.status) {
        (true, _) => "active",
        (false, Status::Committed) => "committed",
        (false, Status::Candidate) if state.conflicts.is_empty() => "candidate",
        (false, Status::Candidate) => "conflicts",
        (false, Status::InFlight) => "in-flight",
    }
}

/// One row of `state list --json`.
#[derive(Debug, Serialize)]
pub struct StateRow {
    /// The state id.
    pub id: u64,
    /// See [`status_word`].
    pub status: &'static str,
    /// Whether it is the live `/usr`.
    pub active: bool,
    /// Where it is mounted now (empty when it is not).
    pub mounted: Vec<Value>,
    /// How many packages it selects.
    pub packages: usize,
    /// Entries in its tree, directories included.
    pub entries: u64,
    /// Bytes on disk that only this state holds: see [`own_sizes`].
    pub own_size: u64,
    /// Seconds since the epoch.
    pub created: u64,
    /// The same, as `YYYY-MM-DD HH:MM:SS` UTC.
    pub created_utc: String,
    /// What made it, in one short line.
    pub summary: String,
    /// The state it was derived from.
    pub parent: Option<u64>,
    /// How many paths its packages fight over (0 for anything committable).
    pub conflicts: usize,
}

/// The mount points of `id` among `mounts`.
pub fn mountpoints(mounts: &[LiveMount], id: StateId) -> Vec<Value> {
    mounts
        .iter()
        .filter(|m| m.state == id)
        .map(|m| quote::json(m.mountpoint.as_os_str().as_bytes()))
        .collect()
}

/// `/usr/<path>` for a path below `/usr`, every byte kept.
pub fn usr_path(path: &[u8]) -> Value {
    quote::json(&[b"/usr/", path].concat())
}

impl StateRow {
    /// One state's row.
    pub fn new(
        state: &State,
        active: Option<StateId>,
        mounts: &[LiveMount],
        own_size: u64,
    ) -> StateRow {
        StateRow {
            id: state.id.0,
            status: status_word(state, active),
            active: Some(state.id) == active,
            mounted: mountpoints(mounts, state.id),
            packages: state.selections.len(),
            entries: state.entries,
            own_size,
            created: state.created,
            created_utc: mossfs_repo::utc_time(state.created),
            summary: state.summary.clone(),
            parent: state.parent.map(|p| p.0),
            conflicts: state.conflicts.len(),
        }
    }
}

/// How many bytes on disk belong to each state alone: the unpacked assets and the cached
/// stones that no other state uses, which is what `state remove ID` followed by `gc` would
/// free. Archived trees are hardlinks to those assets and add only their directories,
/// which are not counted.
pub fn own_sizes(q: &impl Query, states: &[State]) -> Result<HashMap<StateId, u64>> {
    // How many states select each package, and which assets each package brings.
    let mut users: HashMap<PackageId, u32> = HashMap::new();
    for state in states {
        for s in &state.selections {
            *users.entry(s.package).or_default() += 1;
        }
    }
    let mut records: HashMap<PackageId, PackageRecord> = HashMap::new();
    let mut assets: HashMap<PackageId, Vec<(AssetHash, u64)>> = HashMap::new();
    let mut asset_states: HashMap<AssetHash, HashSet<StateId>> = HashMap::new();
    for package in users.keys() {
        let Some(record) = q.package(package)? else {
            continue;
        };
        if record.unpacked {
            let index: Vec<(AssetHash, u64)> = q
                .index(package)?
                .into_iter()
                .map(|e| (e.digest, e.len()))
                .collect();
            assets.insert(*package, index);
        }
        records.insert(*package, record);
    }
    for state in states {
        for s in &state.selections {
            for (hash, _) in assets.get(&s.package).into_iter().flatten() {
                asset_states.entry(*hash).or_default().insert(state.id);
            }
        }
    }
    let mut sizes = HashMap::new();
    for state in states {
        let mut counted: HashSet<AssetHash> = HashSet::new();
        let mut bytes = 0u64;
        for s in &state.selections {
            if users.get(&s.package) == Some(&1)
                && let Some(record) = records.get(&s.package)
            {
                bytes = bytes.saturating_add(record.stone_size);
            }
            for (hash, len) in assets.get(&s.package).into_iter().flatten() {
                let alone = asset_states.get(hash).is_some_and(|set| set.len() == 1);
                if alone && counted.insert(*hash) {
                    bytes = bytes.saturating_add(*len);
                }
            }
        }
        sizes.insert(state.id, bytes);
    }
    Ok(sizes)
}

/// `state show --json` (and `state active --json`).
#[derive(Debug, Serialize)]
pub struct StateShow {
    /// The row `state list` has for it.
    #[serde(flatten)]
    pub row: StateRow,
    /// The root directory object of its tree.
    pub tree: String,
    /// Every package, sorted by name.
    pub packages: Vec<Package>,
    /// Every conflicted path with its contenders.
    pub conflict_paths: Vec<ConflictDoc>,
}

/// One conflicted path.
#[derive(Debug, Serialize)]
pub struct ConflictDoc {
    /// `/usr/...`.
    pub path: Value,
    /// What each package wants there.
    pub contenders: Vec<Contender>,
}

/// One package's claim on a conflicted path.
#[derive(Debug, Serialize)]
pub struct Contender {
    /// `name-version-release`, or null for an implicit directory.
    pub package: Option<String>,
    /// What the node is, as `NodeKind::name` spells it (`file`, `symlink`, `directory`, ...).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Permission bits.
    pub mode: u32,
    /// For a regular file, its size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// For a regular file, its asset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
    /// For a symlink, its text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Value>,
}

/// The conflicts of a state, as documents.
pub fn conflicts(q: &impl Query, conflicts: &[Conflict]) -> Result<Vec<ConflictDoc>> {
    let mut docs = Vec::with_capacity(conflicts.len());
    for conflict in conflicts {
        let mut contenders = Vec::new();
        for node in &conflict.contenders {
            let package = match node.owner {
                Some(id) => Some(
                    q.package(&id)?
                        .map_or_else(|| id.to_string(), |r| r.meta.full_name()),
                ),
                None => None,
            };
            let (size, asset, target) = match &node.kind {
                NodeKind::Regular { asset, size } => (Some(*size), Some(asset.to_string()), None),
                NodeKind::Symlink(text) => (None, None, Some(quote::json(text))),
                _ => (None, None, None),
            };
            contenders.push(Contender {
                package,
                kind: node.kind.name(),
                mode: node.mode & 0o7777,
                size,
                asset,
                target,
            });
        }
        docs.push(ConflictDoc {
            path: usr_path(&conflict.path),
            contenders,
        });
    }
    Ok(docs)
}

/// A state change's document: what was asked, what the new state holds, and what the
/// commit did. `--dry-run` prints it with no `state` and no `commit`.
#[derive(Debug, Serialize)]
pub struct StateChange {
    /// `install`, `remove`, `commit` or `activate`.
    pub action: &'static str,
    /// Whether anything was done: false for `--dry-run`.
    pub applied: bool,
    /// The one-line summary recorded with the state.
    pub summary: String,
    /// What the change downloads: repository packages whose stones are not cached yet.
    pub download: crate::engine::fetch::Download,
    /// Package by package, what changes relative to the active state.
    pub changes: Vec<ChangeDoc>,
    /// Every package of the new state, sorted by name.
    pub packages: Vec<Package>,
    /// The state recorded (null for a dry run).
    pub state: Option<u64>,
    /// Whether the state was only recorded as a candidate (`--stage`).
    pub staged: bool,
    /// Conflicted paths of a staged candidate.
    pub conflict_paths: Vec<ConflictDoc>,
    /// What the commit did (null when nothing was committed).
    pub commit: Option<CommitDoc>,
}

/// One package's change.
#[derive(Debug, Serialize)]
pub struct ChangeDoc {
    /// `install`, `upgrade`, `reinstall` or `remove`.
    pub change: &'static str,
    /// The package name.
    pub name: String,
    /// `version-release` before, if it was installed.
    pub from: Option<String>,
    /// `version-release` after, unless removed.
    pub to: Option<String>,
}

impl From<&Change> for ChangeDoc {
    fn from(change: &Change) -> ChangeDoc {
        ChangeDoc {
            change: change.verb.word(),
            name: change.name.clone(),
            from: change.from.clone(),
            to: change.to.clone(),
        }
    }
}

/// What a commit did.
#[derive(Debug, Serialize)]
pub struct CommitDoc {
    /// The state now active.
    pub state: u64,
    /// Entries written (or paths changed, with `base`); 0 when an archive was reused.
    pub blitted: u64,
    /// Whether the state's own archived tree was reused.
    pub reused_archive: bool,
    /// The state whose archived tree was changed into this one.
    pub base: Option<u64>,
    /// Packages unpacked into the store on the way.
    pub unpacked: usize,
    /// Where a `usr` that mossfs did not make was kept, when the commit took it over.
    pub took_over: Option<Value>,
    /// Wall time in seconds.
    pub seconds: f64,
}

impl From<&crate::engine::CommitReport> for CommitDoc {
    fn from(report: &crate::engine::CommitReport) -> CommitDoc {
        CommitDoc {
            state: report.id.0,
            blitted: report.blitted,
            reused_archive: report.reused_archive,
            base: report.base.map(|b| b.0),
            unpacked: report.unpacked,
            took_over: report
                .took_over
                .as_ref()
                .map(|p| quote::json(p.as_os_str().as_bytes())),
            seconds: report.elapsed.as_secs_f64(),
        }
    }
}

/// What `state remove` and `state prune` did.
#[derive(Debug, Default, Serialize)]
pub struct Removal {
    /// The states removed.
    pub removed: Vec<u64>,
    /// States a prune left in place because of a mount.
    pub kept: Vec<Kept>,
    /// What a prune said about archived trees no state records, which it removed.
    pub orphans: Vec<String>,
}

/// A state a prune kept.
#[derive(Debug, Serialize)]
pub struct Kept {
    /// The state.
    pub state: u64,
    /// The mount that keeps it: its own mount point, or one inside its archived tree.
    pub mountpoint: Value,
    /// Why, for people.
    pub reason: String,
}

impl Package {
    /// From a plan's entry.
    pub fn planned(id: &PackageId, meta: &mossfs_format::Meta, explicit: bool) -> Package {
        Package {
            name: meta.name.clone(),
            version: meta.version.clone(),
            release: meta.release,
            id: id.to_string(),
            explicit,
            summary: meta.summary.clone(),
        }
    }
}

/// Package by package, how the state `to` differs from the state `from` (none: an empty
/// root), for commits and activations, which are not planned from a request.
pub fn changes_between(
    q: &impl Query,
    from: &[Selection],
    to: &[Selection],
) -> Result<Vec<ChangeDoc>> {
    use std::collections::BTreeMap;
    let by_name = |selections: &[Selection]| -> Result<BTreeMap<String, (PackageId, String)>> {
        let mut map = BTreeMap::new();
        for s in selections {
            if let Some(record) = q.package(&s.package)? {
                let version = crate::engine::change::version_of(&record.meta);
                map.insert(record.meta.name, (record.id, version));
            }
        }
        Ok(map)
    };
    let (old, new) = (by_name(from)?, by_name(to)?);
    let mut changes = Vec::new();
    for (name, (id, version)) in &new {
        match old.get(name) {
            None => changes.push(ChangeDoc {
                change: "install",
                name: name.clone(),
                from: None,
                to: Some(version.clone()),
            }),
            Some((old_id, old_version)) if old_id != id => changes.push(ChangeDoc {
                change: "upgrade",
                name: name.clone(),
                from: Some(old_version.clone()),
                to: Some(version.clone()),
            }),
            Some(_) => {}
        }
    }
    for (name, (_, version)) in &old {
        if !new.contains_key(name) {
            changes.push(ChangeDoc {
                change: "remove",
                name: name.clone(),
                from: Some(version.clone()),
                to: None,
            });
        }
    }
    Ok(changes)
}

/// The document of a commit or an activation of a recorded state, whose previous active
/// state had `previous` as its packages.
pub fn switch(
    q: &impl Query,
    action: &'static str,
    state: &State,
    previous: &[Selection],
    report: &crate::engine::CommitReport,
) -> Result<StateChange> {
    Ok(StateChange {
        action,
        applied: true,
        summary: state.summary.clone(),
        // Its packages were fetched when it was recorded.
        download: crate::engine::fetch::Download::default(),
        changes: changes_between(q, previous, &state.selections)?,
        packages: Package::all(q, &state.selections)?,
        state: Some(state.id.0),
        staged: false,
        conflict_paths: Vec::new(),
        commit: Some(report.into()),
    })
}

/// The packages of the state active now (none on a fresh root).
pub fn active_selections(q: &impl Query) -> Result<Vec<Selection>> {
    Ok(match q.active()? {
        Some(id) => q.state(id)?.selections,
        None => Vec::new(),
    })
}
