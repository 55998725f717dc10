//! Recording states and committing them (DESIGN.md §6.2).
//!
//! The commit order, and what a kill at each step leaves behind:
//!
//! | step | then | a kill here leaves |
//! |---|---|---|
//! | `ingest` | packages unpacked | the old state active; assets are garbage at worst |
//! | `blit` | staging/usr written, `.stateID` in it, what the blit wrote and the new assets synced in one pass, the packages recorded as unpacked | the old state active; staging is removed at next start |
//! | `triggers` | transaction triggers ran in their container; their output is in staging, the store and the state's tree | the old state active; staging is removed at next start |
//! | `exchange` | `renameat2(RENAME_EXCHANGE)` of staging/usr and usr | **the new state live**: the next start marks it active in the DB and archives the old tree |
//! | `archive` | old tree moved to `.moss/root/<old>/usr` (a taken-over `usr` to `unmanaged-N/usr`) | the new state live; the DB is brought in line at next start, and the old tree archived or kept |
//! | `db` | state marked committed and active, its tree's seal recorded | done, but root links may be missing; next start makes them |
//!
//! A kill before `db` leaves the new tree without a seal ([`mossfs_db::Query::tree_seal`]):
//! a later commit built on it then lists it whole, as it would any tree it cannot vouch for.
//!
//! Before the first step, [`check_commit`] refuses a commit that would carry a mount out of
//! `/usr` or replace a `usr` mossfs did not make (DESIGN.md §6.5, §6.7).
//!
//! Setting `MOSSFS_FAULT=<step>` kills the process with SIGKILL right after that step, so
//! tests can prove every row of this table.

use std::collections::HashSet;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use mossfs_db::{Query, State, StateId, Status, TreeHash};
use mossfs_format::PackageId;
use mossfs_fs::{blit, sysroot, tree};

use super::error::{EngineError, Result};
use super::plan::{LoadedStone, Plan};
use super::root::{LiveUsr, Root};
use super::{audit, garbage};

/// Marks the end of a commit step: logged with its time under `-v`, and killed with
/// SIGKILL here if `MOSSFS_FAULT` names it (a real crash, with no destructors and no
/// cleanup, for the crash-safety tests).
pub fn fault_point(step: &'static str) {
    crate::ui::step(step);
    if std::env::var("MOSSFS_FAULT").is_ok_and(|v| v == step) {
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}

/// Records the plan as a state and caches its new stones. With conflicts, the state is
/// recorded only when `allow_conflicts` is set; otherwise nothing is recorded and nothing
/// cached: the tree is built, and conflicts found, before any stone is copied.
///
/// `status` is [`Status::Candidate`] for a state staged for later, or
/// [`Status::InFlight`] for one the caller commits right away: if the caller dies before
/// its commit point, the next writer drops it (`Root` recovery). Either way the state
/// records the active state it was built on, its parent, and can only be committed while
/// that is still the active state.
pub fn record_state(
    root: &Root,
    plan: &Plan,
    stones: &mut [LoadedStone],
    allow_conflicts: bool,
    status: Status,
) -> Result<Recorded> {
    let parent = root.db.read()?.active()?;
    let (selections, order) = plan.selections();
    let mut txn = root.db.write()?;
    let mut added = Vec::new();
    let mut copied = Vec::new();
    for stone in stones.iter() {
        if txn.package(&stone.id)?.is_none() {
            txn.put_package(&stone.record(), &stone.layout, &stone.index)?;
            added.push(stone.id);
            if stone.is_copy() && !root.store.is_cached(&stone.id) {
                copied.push(stone.id);
            }
        }
    }
    // From the parent's tree and the packages that change, when the parent's build left
    // a record of itself (issue 13 §2); from every layout otherwise.
    let built = tree::build_on(&mut txn, parent, &order)?;
    if !built.conflicts.is_empty() && !allow_conflicts {
        return Err(conflict_error(&txn, &built.conflicts, None)?);
    }
    // Cached before the state that needs them is committed; readers never wait for this
    // transaction, and writers already wait for the root's lock. Should caching or the
    // transaction fail, the stones it copied in go with it.
    let kept = LoadedStone::keep_all(&root.store, stones);
    match kept.and_then(|()| record(txn, plan, parent, selections, built, status)) {
        Ok(state) => Ok(Recorded {
            state,
            added,
            copied,
        }),
        Err(e) => {
            let _ = root.store.forget(&HashSet::new(), &copied);
            Err(e)
        }
    }
}

/// What [`record_state`] recorded: the state, and the packages the database did not hold
/// before it, which only this state selects.
pub struct Recorded {
    /// The state.
    pub state: State,
    /// Its packages that were new to the database.
    pub added: Vec<PackageId>,
    /// Of those, the ones whose stones this command copied into the cache from the
    /// command line. A downloaded stone stays cached whatever happens next, as it does
    /// when a download fails: fetching it again would cost more than keeping it.
    copied: Vec<PackageId>,
}

/// The state's own record, in `txn`, committed.
fn record(
    mut txn: mossfs_db::WriteTxn<'_>,
    plan: &Plan,
    parent: Option<StateId>,
    selections: Vec<mossfs_db::Selection>,
    built: tree::BuiltTree,
    status: Status,
) -> Result<State> {
    let id = txn.next_state_id()?;
    let state = State {
        id,
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        summary: plan.summary.clone(),
        status,
        parent,
        selections,
        root: built.root,
        entries: built.entries,
        conflicts: built.conflicts,
        generated: Vec::new(),
    };
    txn.put_state(&state)?;
    if let Some(index) = &built.index {
        txn.put_build_index(id, index)?;
    }
    txn.commit()?;
    Ok(state)
}

/// Forgets the state an install or remove recorded for itself, after its commit failed
/// before the commit point: bad input changes nothing (DESIGN.md §6.4), so a stone whose
/// content turns out damaged, or a disk that fills up while unpacking, leaves no trace.
/// With the state go the directory objects only its tree held, the packages it brought
/// that no other state selects, the stones this command copied into the cache for them
/// (downloads stay, see [`Recorded`]), and the assets only those packages name: another
/// package's or a trigger output's stay (the same reach `mossfs gc` keeps). A state that went live (its
/// `.stateID` is in `usr`) is kept, for recovery to finish. A state someone mounted
/// meanwhile is kept too: removing it would pull its files from under the mount.
pub fn forget_unreached(root: &Root, recorded: &Recorded) -> Result<()> {
    let id = recorded.state.id;
    // Only a definite answer lets the state go: a `.stateID` that cannot be read might be
    // this state's, live, and recovery must find it with everything it needs.
    match sysroot::try_read_state_id(&root.usr()) {
        Ok(Some(live)) if live == id.0 => return Ok(()),
        Err(_) => return Ok(()),
        Ok(_) => {}
    }
    let gate = super::mounts::Gate::take(&root.path)?;
    if super::mounts::mount_of(&gate.live()?, id).is_some() {
        return Ok(());
    }
    let mut txn = root.db.write()?;
    if txn.active()? == Some(id) {
        return Ok(());
    }
    // What its transaction triggers wrote belongs to no package: found in its tree.
    let mut assets = match txn.state(id) {
        Ok(state) => garbage::reach(&txn, &[state])?.unowned,
        Err(_) => HashSet::new(),
    };
    txn.remove_state(id)?;
    let reach = garbage::reach(&txn, &txn.states()?)?;
    let mut forgotten = Vec::new();
    for package in &recorded.added {
        if reach.selected.contains(package) {
            continue;
        }
        assets.extend(txn.index(package)?.into_iter().map(|e| e.digest));
        txn.remove_package(package)?;
        forgotten.push(*package);
    }
    // The directory objects only its tree held; they are content-addressed, so any other
    // state's are in the reach and stay.
    for hash in txn.tree_hashes()? {
        if !reach.trees.contains(&hash) {
            txn.remove_tree(hash)?;
        }
    }
    let mut keep = reach.unowned;
    for record in txn.packages()? {
        keep.extend(txn.index(&record.id)?.into_iter().map(|e| e.digest));
    }
    // The stones first, which also gives a full disk back the room the database needs to
    // write: no state but this one needs them, and installing the package again caches
    // its stone again. The assets only after the database stops naming them, so that a
    // crash in between leaves garbage, never a package whose files are gone.
    let copies: Vec<_> = recorded
        .copied
        .iter()
        .filter(|p| forgotten.contains(p))
        .copied()
        .collect();
    root.store.forget(&HashSet::new(), &copies)?;
    txn.commit()?;
    assets.retain(|asset| !keep.contains(asset));
    root.store.forget(&assets, &[])?;
    Ok(())
}

/// What must hold before any commit writes anything: nothing is mounted below
/// `ROOT/usr` or in the trees a commit rewrites, and `ROOT/usr` is mossfs's own, absent, or
/// to be taken over as the user asked (DESIGN.md §6.7). Returns what `usr` is now. Install
/// and remove ask before they record a state, so a refusal leaves nothing behind;
/// [`commit_state`] asks again.
pub fn check_commit(root: &Root) -> Result<LiveUsr> {
    if let Some((mountpoint, tree)) = root.mount_in_trees()? {
        return Err(EngineError::MountedBelow { mountpoint, tree });
    }
    let live = root.live_usr()?;
    if let LiveUsr::Unmanaged(why) = live
        && !root.take_over_usr
    {
        return Err(EngineError::UnmanagedUsr {
            usr: root.usr(),
            why,
            kept: root.unmanaged_slot(),
        });
    }
    Ok(live)
}

/// The one-line refusal for a state with file conflicts.
pub fn conflict_error(
    q: &impl Query,
    conflicts: &[mossfs_db::Conflict],
    state: Option<StateId>,
) -> Result<EngineError> {
    let first = &conflicts[0];
    let mut names = Vec::new();
    for node in &first.contenders {
        if let Some(id) = node.owner {
            let name = q
                .package(&id)?
                .map_or_else(|| id.to_string(), |r| r.meta.name);
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    Ok(EngineError::FileConflicts {
        count: conflicts.len(),
        first: crate::quote::name(&[b"usr/", &first.path[..]].concat()).into_owned(),
        packages: names.join(" and "),
        state,
    })
}

/// What a commit did, for the one-line summary.
pub struct CommitReport {
    /// The state now active.
    pub id: StateId,
    /// Entries written to disk (0 when an archived tree was reused).
    pub blitted: u64,
    /// Whether the state's own archived tree was reused instead of blitting.
    pub reused_archive: bool,
    /// The state whose archived tree was changed into this one, when the commit was
    /// incremental; `blitted` then counts the paths that changed.
    pub base: Option<StateId>,
    /// Packages unpacked into the store on the way.
    pub unpacked: usize,
    /// Where the `usr` that mossfs took over is kept now, when it took one over.
    pub took_over: Option<std::path::PathBuf>,
    /// Root links re-pointed for this state, or left alone because mossfs did not make them.
    pub links: Vec<sysroot::LinkNote>,
    /// Wall time of the whole commit.
    pub elapsed: std::time::Duration,
}

/// How a commit treats the state that is already live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Switch to another state; the old tree is archived for instant rollback.
    Switch,
    /// Re-blit the active state from the store (repair): never reuse an archive, and
    /// delete the damaged tree that comes out of the exchange instead of archiving it.
    Reblit,
}

/// Makes state `id` the live `/usr`, in the order of the table above.
pub fn commit_state(
    root: &Root,
    id: StateId,
    mode: Mode,
    progress: Option<&(dyn Fn(blit::BlitProgress) + Sync)>,
) -> Result<CommitReport> {
    let started = Instant::now();
    let live = check_commit(root)?;
    let snapshot = root.db.read()?;
    let mut state = snapshot.state(id)?;
    if !state.conflicts.is_empty() {
        return Err(conflict_error(&snapshot, &state.conflicts, Some(id))?);
    }
    let previous = snapshot.active()?;
    // A state that was never committed holds its parent's packages plus one change; on
    // any other state it would silently undo everything that happened since.
    if state.status != Status::Committed && state.parent != previous {
        return Err(EngineError::StaleCandidate {
            state: id,
            base: state.parent,
            active: previous,
        });
    }
    if mode == Mode::Switch
        && previous == Some(id)
        && sysroot::read_state_id(&root.usr()) == Some(id.0)
    {
        return Err(EngineError::AlreadyActive(id));
    }

    // Bodies of packages staged from their heads, checked, before anything else is done.
    drop(snapshot);
    super::preview::complete(root, &state)?;
    let snapshot = root.db.read()?;

    // Assets first. They are made durable with the tree that links to them, in one pass
    // before the exchange (`blit::Written::outside`), and recorded as unpacked only then.
    let mut pending = Vec::new();
    for s in &state.selections {
        if !snapshot.package(&s.package)?.is_some_and(|r| r.unpacked) {
            pending.push(s.package);
        }
    }
    drop(snapshot);
    let mut assets = Vec::new();
    if !pending.is_empty() {
        super::unpack::unpack(root, &pending)?;
        assets = check_sizes(root, &pending)?;
    }
    fault_point("ingest");

    // The next tree, in staging.
    let staging = root.staging();
    if staging.exists() {
        blit::remove_tree(&staging)?;
    }
    std::fs::create_dir_all(&staging).map_err(|source| EngineError::Io {
        path: staging.clone(),
        source,
    })?;
    let staged = root.staging_usr();
    let archived = root.archive(id).join("usr");
    // An archive is reused only once it is checked whole: `verify --repair` mends the
    // store, but an archive may still hold a damaged inode or a planted file.
    let reused_archive = mode == Mode::Switch
        && audit::prepare_archive(root, &root.db.read()?, state.head(), true)?.reusable();
    let mut base_id = None;
    let blitted = if reused_archive {
        // No blit to carry the new assets (there are none unless the store lost them).
        root.store.sync_assets(&assets)?;
        sysroot::rename_durable(&archived, &staged)?;
        let _ = std::fs::remove_dir(root.archive(id));
        0
    } else {
        let snapshot = root.db.read()?;
        let written = blit::Written::new();
        // Durable exactly these assets, whoever wrote them, and nothing else on the
        // file system: with the tree, below.
        let (files, dirs) = root.store.asset_change(&assets);
        written.outside(files, dirs);
        let options = blit::BlitOptions {
            progress,
            written: Some(&written),
            ..blit::BlitOptions::default()
        };
        let base = match (mode, root.base.take(&snapshot)) {
            (Mode::Reblit, _) => None,
            // Found while the command planned; a base must be another state's tree.
            (Mode::Switch, Some(found)) => match found? {
                Some((base, _)) if base == id => newest_archive(root, &snapshot, Some(id))?,
                found => found,
            },
            (Mode::Switch, None) => newest_archive(root, &snapshot, Some(id))?,
        };
        base_id = base.map(|(b, _)| b);
        let stats = match base {
            // Turn an archived tree into this one: O(change), not O(tree).
            Some((base_id, base_root)) => {
                sysroot::rename_durable(&root.archive(base_id).join("usr"), &staged)?;
                let _ = std::fs::remove_dir(root.archive(base_id));
                blit::apply(
                    &snapshot,
                    base_root,
                    state.root,
                    &root.store,
                    &staged,
                    &options,
                )?
            }
            None => blit::blit(&snapshot, state.root, &root.store, &staged, &options)?,
        };
        sysroot::write_state_id(&staged, id.0)?;
        blit::sync_tree(&staged, &written)?;
        stats.entries
    };
    // Staging now holds exactly the state's tree (a reused archive was checked whole just
    // above); whatever changes a directory of it from here on, transaction triggers
    // included, gives that directory a later ctime, which the next commit built on this
    // tree lists. Recorded with the commit's last transaction: a tree whose commit did
    // not finish has no seal, and is listed whole.
    let seal = blit::Seal::now();
    if !pending.is_empty() {
        let mut txn = root.db.write()?;
        for package in &pending {
            txn.set_unpacked(package, true)?;
        }
        txn.commit()?;
    }
    fault_point("blit");

    // Transaction triggers, on the staging tree (DESIGN.md §10). Their output is in the
    // state's tree before the commit point, so recovery after a kill finds it there.
    if let Some(output) = super::triggers::before_exchange(root, &state, root.triggers)? {
        state.root = output.root;
        state.entries = output.entries;
        state.generated = output.files;
        let mut txn = root.db.write()?;
        txn.put_state(&state)?;
        txn.commit()?;
    }
    fault_point("triggers");

    // The commit point.
    sysroot::exchange(&staged, &root.usr())?;
    fault_point("exchange");

    let mut took_over = None;
    if staged.exists() {
        match live {
            LiveUsr::Managed(_) if mode == Mode::Reblit => blit::remove_tree(&staged)?,
            LiveUsr::Managed(old) => root.archive_tree(old, &staged)?,
            LiveUsr::Empty => std::fs::remove_dir(&staged).map_err(|source| EngineError::Io {
                path: staged.clone(),
                source,
            })?,
            LiveUsr::Unmanaged(_) | LiveUsr::Absent => {
                took_over = Some(root.archive_unmanaged(&staged)?);
            }
        }
    }
    fault_point("archive");

    let mut txn = root.db.write()?;
    state.status = Status::Committed;
    txn.put_state(&state)?;
    txn.set_tree_seal(id, seal.0)?;
    txn.set_active(Some(id))?;
    txn.commit()?;
    fault_point("db");

    let links = sysroot::ensure_root_links(&root.path)?;
    // System triggers: after the swap, which they cannot undo.
    if mode == Mode::Switch {
        super::triggers::after_exchange(root, id, root.triggers)?;
        crate::ui::step("system triggers");
    }
    Ok(CommitReport {
        id,
        blitted,
        reused_archive,
        base: base_id,
        unpacked: pending.len(),
        links,
        took_over,
        elapsed: started.elapsed(),
    })
}

/// Holds every index entry of freshly unpacked packages to the size of the asset file in
/// the store. Ingest skips the assets the store already has without reading the stone's
/// content, so an index lying about one of them would otherwise put a size the file does
/// not have into the tree, and from there into every blit, mount and verify.
/// Returns every asset it checked, for the commit to make durable.
fn check_sizes(
    root: &Root,
    packages: &[mossfs_format::PackageId],
) -> Result<Vec<mossfs_format::AssetHash>> {
    let snapshot = root.db.read()?;
    let mut checked = Vec::new();
    for package in packages {
        for entry in snapshot.index(package)? {
            let path = root.store.asset_path(entry.digest);
            let found = std::fs::metadata(&path)
                .map_err(|source| EngineError::Io {
                    path: path.clone(),
                    source,
                })?
                .len();
            if found != entry.len() {
                let name = snapshot
                    .package(package)?
                    .map_or_else(|| package.to_string(), |r| r.meta.full_name());
                return Err(EngineError::AssetSize {
                    package: name,
                    hash: entry.digest,
                    declared: entry.len(),
                    found,
                });
            }
            checked.push(entry.digest);
        }
    }
    Ok(checked)
}

/// An archived state and its tree root: the base of an incremental commit.
type Base = (StateId, TreeHash);

/// The newest intact archived tree other than `id`'s, with its tree root: the base of an
/// incremental commit. Archived trees are only ever written by a commit, and their
/// `.stateID` says which state they are. Whatever no package owns is removed from the
/// base first, so that the new state never carries it (issue 7, defect 5).
fn newest_archive(root: &Root, q: &impl Query, id: Option<StateId>) -> Result<Option<Base>> {
    // States come oldest first, by id.
    for state in q.state_heads()?.into_iter().rev() {
        if Some(state.id) != id && audit::prepare_archive(root, q, state, false)?.reusable() {
            return Ok(Some((state.id, state.root)));
        }
    }
    Ok(None)
}

/// The base of the next commit ([`newest_archive`]), looked for on a thread of its own from
/// the moment a command that will commit holds the root ([`Root::look_for_base`]), so that
/// it runs while the command plans and records its state. Preparing the base is a `stat`
/// of every directory of a sealed archive: about a third of a one-package change at
/// 250,000 entries, now spent on the other core.
///
/// What it finds still holds when the commit takes it: archives change only under the
/// root's lock, and nothing a command does before its commit touches them. Dropping the
/// search waits for its thread, which may be removing planted files from an archive: that
/// ends before the lock is released.
///
/// A commit that reaches the search before it is done helps with its `stat`s
/// ([`blit::Helpers`]) rather than wait.
#[derive(Default)]
pub struct BaseSearch {
    thread: Mutex<Option<JoinHandle<Result<Option<Base>>>>>,
    helpers: blit::Helpers,
}

impl BaseSearch {
    /// Starts looking, on `helper`: a handle on the same root that takes no lock, made
    /// with [`BaseSearch::sharing`].
    pub(super) fn start(&self, helper: Root) {
        // The audit of an archive walks it by recursion, one frame per level: the main
        // thread's room (8 MiB), not a spawned thread's default 2 MiB.
        let spawned = std::thread::Builder::new()
            .name("mossfs-base".into())
            .stack_size(8 << 20)
            .spawn(move || newest_archive(&helper, &helper.db.read()?, None));
        // Without a thread, the commit looks for its base itself.
        if let (Ok(handle), Ok(mut slot)) = (spawned, self.thread.lock()) {
            *slot = Some(handle);
        }
    }

    /// A search for the thread's handle on the root: the checks it runs take help from
    /// this one's commit.
    pub(super) fn sharing(&self) -> BaseSearch {
        BaseSearch {
            thread: Mutex::default(),
            helpers: self.helpers.clone(),
        }
    }

    /// Where the checks of archives find help.
    pub(super) fn helpers(&self) -> &blit::Helpers {
        &self.helpers
    }

    /// What the search found, helping it to finish through `q`; `None` if none was
    /// started.
    fn take(&self, q: &impl Query) -> Option<Result<Option<Base>>> {
        let handle = self.thread.lock().ok()?.take()?;
        if !handle.is_finished() {
            self.helpers.help(q);
        }
        Some(
            handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
        )
    }
}

impl Drop for BaseSearch {
    fn drop(&mut self) {
        let handle = self.thread.get_mut().map(Option::take);
        if let Ok(Some(handle)) = handle {
            let _ = handle.join();
        }
    }
}
