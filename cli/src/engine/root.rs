//! A managed root: its paths, its lock, and start-up recovery (DESIGN.md §4, §6.2).
//!
//! ```text
//! ROOT/usr/                   the live tree; usr/.stateID names its state
//! ROOT/.moss/                 0700, like assets/, cache/ and root/ (`PRIVATE_DIRS`)
//! ROOT/.moss/db/              LMDB
//! ROOT/.moss/assets/, cache/  the store
//! ROOT/.moss/root/staging/    where a commit blits the next /usr
//! ROOT/.moss/root/<id>/usr    archived trees of earlier states
//! ROOT/.moss/lock             one writer at a time
//! ROOT/.moss/mounts/          live mounts and their log (`super::mounts`)
//! ```
//!
//! Recovery runs whenever a writer opens the root. The exchange of `/usr` is the commit
//! point, so `usr/.stateID` is the truth: if the database disagrees (a process died after
//! the exchange and before the database was updated), the database is brought in line and
//! the old tree left in staging is archived. Whatever else is in staging is debris from a
//! commit that never reached its commit point, and is removed, and so is the state that
//! commit was for, if an `install` or `remove` recorded it for itself (`Status::InFlight`):
//! nobody asked for it as a candidate, and committing it later would undo whatever
//! changed since.
//!
//! Readers never recover, and never write: they open the database and the store read-only,
//! so they work on a read-only root and leave no trace on a root that has no `.moss`. They
//! still report the truth after a crash, because [`Root::live_state`] asks `usr/.stateID`
//! too, and they say that the database is behind ([`Root::pending`]).

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use mossfs_db::{Db, Query, StateId, Status};
use mossfs_fs::sysroot::{self, Lock};
use mossfs_store::Store;

use super::error::{EngineError, Result};

/// The folders of `.moss` that hold package files (`.moss` itself, the store, the stone
/// cache and the archived trees), parents first. They are `0700`: an archived tree or an
/// asset may be an old setuid binary that an upgrade replaced, and no other user may reach
/// it there (DESIGN.md §6.6). Roots made before this rule are fixed when a writer opens them.
const PRIVATE_DIRS: [&str; 4] = ["", "assets", "cache", "root"];

/// How the folders in `ROOT/.moss/root` that keep a taken-over `usr` begin.
pub const UNMANAGED_PREFIX: &str = "unmanaged-";

/// The mode of [`PRIVATE_DIRS`].
const PRIVATE_MODE: u32 = 0o700;

/// Creates `dir` (its parent must exist) as `0700`, or gives an existing one that mode.
fn make_private(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let error = |source| EngineError::Io {
        path: dir.to_owned(),
        source,
    };
    match std::fs::DirBuilder::new().mode(PRIVATE_MODE).create(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(error(e)),
        _ => {}
    }
    // Not through a symlink someone put in its place: the mode is for this folder.
    let meta = std::fs::symlink_metadata(dir).map_err(error)?;
    if !meta.is_dir() {
        return Err(error(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "exists and is not a directory",
        )));
    }
    if meta.permissions().mode() & 0o7777 != PRIVATE_MODE {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PRIVATE_MODE))
            .map_err(error)?;
    }
    Ok(())
}

/// What is at `ROOT/usr` before a commit replaces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveUsr {
    /// Nothing: the first commit moves its tree there.
    Absent,
    /// An empty directory, which a commit replaces and removes: nothing is lost.
    Empty,
    /// A tree mossfs made for this state; a commit archives it.
    Managed(StateId),
    /// Something mossfs did not make, and why it says so. A commit refuses to replace it
    /// unless the user asks to take it over, and then keeps it.
    Unmanaged(&'static str),
}

/// Whether a writer holds `ROOT/.moss/lock` right now; asked without creating the file or
/// taking the lock (a shared lock is tried and given back at once).
fn writer_busy(lock: &Path) -> bool {
    use rustix::fs::{FlockOperation, Mode, OFlags};
    let Ok(fd) = rustix::fs::open(lock, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) else {
        return false;
    };
    match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockShared) {
        Ok(()) => false,
        Err(e) => e == rustix::io::Errno::WOULDBLOCK,
    }
}

/// An open root.
pub struct Root {
    /// The root directory (`--root`).
    pub path: PathBuf,
    /// The database.
    pub db: Db,
    /// The content store.
    pub store: Store,
    /// What recovery did when the root was opened, for people.
    pub recovered: Vec<String>,
    /// Whether and how commits run triggers; commands set it from their flags.
    pub triggers: super::triggers::Options,
    /// The user asked to take over a `usr` that mossfs does not manage
    /// (`--take-over-usr`); without it a commit refuses to replace one (DESIGN.md §6.7).
    pub take_over_usr: bool,
    /// For a reader: what the database does not know yet, because a commit was cut short
    /// (or is finishing) after its commit point; for people.
    pub pending: Option<String>,
    /// The next commit's base, looked for ahead; dropped (and waited for) before the lock.
    pub(super) base: super::commit::BaseSearch,
    _lock: Option<Lock>,
}

impl Root {
    /// Opens a root that exists for writing: takes the lock (saying so if it has to wait),
    /// then recovers. A directory with no `.moss` is refused, untouched: only an install
    /// makes a root ([`Root::create`]), so a mistyped `--root` given to `remove`, `gc` or
    /// `state prune` leaves nothing behind.
    pub fn open_write(path: &Path) -> Result<Root> {
        if !path.join(".moss/db").is_dir() {
            return Err(EngineError::NotARoot(path.to_owned()));
        }
        Root::create(path)
    }

    /// Opens for writing like [`Root::open_write`], making `.moss` first if there is none.
    pub fn create(path: &Path) -> Result<Root> {
        let moss = path.join(".moss");
        // `create_dir_all` of a regular file says "File exists", which names no problem.
        if std::fs::metadata(path).is_ok_and(|m| !m.is_dir()) {
            return Err(EngineError::Io {
                path: path.to_owned(),
                source: std::io::ErrorKind::NotADirectory.into(),
            });
        }
        std::fs::create_dir_all(path).map_err(|source| EngineError::Io {
            path: path.to_owned(),
            source,
        })?;
        // `.moss` first, so nothing below it is reachable while the rest is made.
        for dir in PRIVATE_DIRS {
            make_private(&moss.join(dir))?;
        }
        let mounts = moss.join("mounts");
        std::fs::create_dir_all(&mounts).map_err(|source| EngineError::Io {
            path: mounts,
            source,
        })?;
        let lock = Lock::acquire(&moss.join("lock"), || {
            eprintln!(
                "waiting for another mossfs process to finish with {} ...",
                path.display()
            );
        })?;
        let mut root = Root::assemble(path, lock)?;
        root.recover()?;
        Ok(root)
    }

    /// Opens for reading: no lock, no recovery, and nothing written or created. Readers
    /// never block, and work on a read-only root.
    pub fn open_read(path: &Path) -> Result<Root> {
        let moss = path.join(".moss");
        if !moss.join("db").is_dir() {
            return Err(EngineError::NotARoot(path.to_owned()));
        }
        let mut root = Root::with(
            path,
            Db::open_read(&moss.join("db"))?,
            Store::open_read(&moss)?,
            None,
        );
        let snapshot = root.db.read()?;
        let in_db = snapshot.active()?;
        if let Some(live) = root.live_state(&snapshot)?
            && Some(live) != in_db
        {
            let recorded = in_db.map_or("no state".to_owned(), |id| format!("state {id}"));
            let why = if writer_busy(&moss.join("lock")) {
                "a commit is finishing"
            } else {
                "a commit was cut short after its exchange; any command that writes, such as 'mossfs gc', records it"
            };
            root.pending = Some(format!(
                "usr/.stateID says state {live} is live, but the database still records {recorded} as active: {why}; showing state {live} as active"
            ));
        }
        drop(snapshot);
        Ok(root)
    }

    /// The state that is really live. The exchange of `/usr` is the commit point, so this
    /// is the state `usr/.stateID` names whenever the database knows it, even if the
    /// database has not been told yet that it is active (a crash between the two, which
    /// only the next writer mends); otherwise the database's active state.
    pub fn live_state(&self, q: &impl Query) -> Result<Option<StateId>> {
        let in_db = q.active()?;
        match sysroot::read_state_id(&self.usr()).map(StateId) {
            Some(disk) if Some(disk) != in_db => match q.state(disk) {
                Ok(_) => Ok(Some(disk)),
                Err(mossfs_db::DbError::NoState(_)) => Ok(in_db),
                Err(e) => Err(e.into()),
            },
            _ => Ok(in_db),
        }
    }

    /// A writer's root: the database and store opened for writing, under `lock`.
    fn assemble(path: &Path, lock: Lock) -> Result<Root> {
        let moss = path.join(".moss");
        let db = Db::open(&moss.join("db"))?;
        let store = Store::open(&moss)?;
        let removed = store.recovered_temp_files();
        let mut root = Root::with(path, db, store, Some(lock));
        if removed > 0 {
            root.recovered
                .push(format!("removed {removed} unfinished store files"));
        }
        Ok(root)
    }

    /// A root of these parts, with nothing recovered, asked for or pending yet.
    fn with(path: &Path, db: Db, store: Store, lock: Option<Lock>) -> Root {
        Root {
            path: path.to_owned(),
            db,
            store,
            recovered: Vec::new(),
            take_over_usr: false,
            triggers: super::triggers::Options::default(),
            pending: None,
            base: Default::default(),
            _lock: lock,
        }
    }

    /// Starts looking for the base of the commit this command will make, on a thread of
    /// its own (see [`super::commit::BaseSearch`]). Only for a root opened for writing, by
    /// a command that commits a new state; without it, the commit looks itself.
    pub fn look_for_base(&self) {
        if self._lock.is_none() {
            return;
        }
        // The same root for the thread, under this handle's lock: it takes none itself.
        if let Ok(store) = Store::open_read(&self.path.join(".moss")) {
            let mut helper = Root::with(&self.path, self.db.clone(), store, None);
            helper.base = self.base.sharing();
            self.base.start(helper);
        }
    }

    /// `ROOT/usr`.
    pub fn usr(&self) -> PathBuf {
        self.path.join("usr")
    }

    /// `ROOT/.moss/root/staging`.
    pub fn staging(&self) -> PathBuf {
        self.path.join(".moss/root/staging")
    }

    /// `ROOT/.moss/root/staging/usr`.
    pub fn staging_usr(&self) -> PathBuf {
        self.staging().join("usr")
    }

    /// `ROOT/.moss/root/<id>`, which holds the archived `usr` of a state.
    pub fn archive(&self, id: StateId) -> PathBuf {
        self.path.join(format!(".moss/root/{id}"))
    }

    fn recover(&mut self) -> Result<()> {
        let on_disk = sysroot::read_state_id(&self.usr()).map(StateId);
        let txn = self.db.read()?;
        let in_db = txn.active()?;
        let known = match on_disk {
            Some(id) => txn.state(id).ok(),
            None => None,
        };
        drop(txn);
        // Whether the dead process got past the exchange: then staging holds the tree
        // that was live before, which is never debris.
        let exchanged = known.is_some() && on_disk != in_db;
        if let (Some(disk), Some(state)) = (on_disk, known)
            && in_db != Some(disk)
        {
            // The exchange happened; finish what the dead process started.
            let mut txn = self.db.write()?;
            let mut state = state;
            state.status = Status::Committed;
            txn.put_state(&state)?;
            txn.set_active(Some(disk))?;
            txn.commit()?;
            self.recovered
                .push(format!("completed the commit of state {disk}"));
        }
        let staged = self.staging_usr();
        if staged.exists() {
            let old = sysroot::read_state_id(&staged).map(StateId);
            match old {
                // The old tree, exchanged out but not yet archived.
                Some(old) if exchanged && Some(old) == in_db => {
                    self.archive_tree(old, &staged)?;
                    self.recovered
                        .push(format!("archived the tree of state {old}"));
                }
                // A usr that no state made, taken over: kept, never removed.
                _ if exchanged => {
                    let kept = self.archive_unmanaged(&staged)?;
                    self.recovered.push(format!(
                        "kept the usr that mossfs took over at {}",
                        kept.display()
                    ));
                }
                _ => {
                    mossfs_fs::blit::remove_tree(&staged)?;
                    self.recovered
                        .push("removed an unfinished staging tree".to_owned());
                }
            }
        }
        let staging = self.staging();
        if staging.exists() {
            mossfs_fs::blit::remove_tree(&staging)?;
        }
        self.drop_in_flight(on_disk)?;
        if on_disk.is_some() {
            // A commit killed before this step left links to make. What the links found
            // that the user must act on is said by commits, not by every writer.
            for note in sysroot::ensure_root_links(&self.path)? {
                if !note.is_warning() {
                    self.recovered.push(note.to_string());
                }
            }
        }
        Ok(())
    }

    /// Forgets the states that an `install` or `remove` recorded for itself and died
    /// before committing (the one that went live was completed above). A state someone
    /// mounted meanwhile stays until it is unmounted: its mount reads the store.
    fn drop_in_flight(&mut self, on_disk: Option<StateId>) -> Result<()> {
        let leftovers: Vec<StateId> = self
            .db
            .read()?
            .state_heads()?
            .into_iter()
            .filter(|s| s.status == Status::InFlight && Some(s.id) != on_disk)
            .map(|s| s.id)
            .collect();
        if leftovers.is_empty() {
            return Ok(());
        }
        let gate = super::mounts::Gate::take(&self.path)?;
        let mounted = gate.live()?;
        let mut txn = self.db.write()?;
        let mut dropped = Vec::new();
        for id in leftovers {
            if super::mounts::mount_of(&mounted, id).is_none() {
                txn.remove_state(id)?;
                dropped.push(id);
            }
        }
        txn.commit()?;
        for id in dropped {
            self.recovered.push(format!(
                "removed state {id}, which an interrupted install or remove left uncommitted"
            ));
        }
        Ok(())
    }

    /// The first file system mounted at or below `ROOT/usr`, or below the trees in
    /// `ROOT/.moss/root` that commits rewrite and prune removes, with the tree it is in. A
    /// tree mossfs took over (`unmanaged-*`) is never written or removed, so a mount in it
    /// is no concern.
    pub fn mount_in_trees(&self) -> Result<Option<(PathBuf, PathBuf)>> {
        let usr = self.usr();
        if let Some(first) = sysroot::mounts_below(&usr)?.into_iter().next() {
            return Ok(Some((first, usr)));
        }
        let trees = self.path.join(".moss/root");
        let kept = std::fs::canonicalize(&trees)
            .unwrap_or_else(|_| trees.clone())
            .join(UNMANAGED_PREFIX);
        let kept = kept.as_os_str().as_bytes();
        Ok(sysroot::mounts_below(&trees)?
            .into_iter()
            .find(|point| !point.as_os_str().as_bytes().starts_with(kept))
            .map(|point| (point, trees)))
    }

    /// Removes the archived tree of state `id`, if it has one, without leaving its file
    /// system. Its `.stateID` goes first, so a removal cut short never leaves a tree that a
    /// commit would take for that state's. Callers forget the state only after this
    /// succeeds (DESIGN.md §6.5).
    pub fn remove_archive(&self, id: StateId) -> Result<()> {
        let slot = self.archive(id);
        if let Some(mountpoint) = sysroot::mounts_below(&slot)?.into_iter().next() {
            return Err(EngineError::ArchiveMounted {
                state: id,
                mountpoint,
            });
        }
        let marker = slot.join("usr").join(sysroot::STATE_ID_FILE);
        match std::fs::remove_file(&marker) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(EngineError::Io {
                    path: marker,
                    source: e,
                });
            }
            _ => {}
        }
        mossfs_fs::blit::remove_tree(&slot)?;
        Ok(())
    }

    /// Trees in `ROOT/.moss/root` named after a state the database does not have: left by
    /// a removal that failed or was killed before mossfs removed trees before forgetting
    /// states. Staging and taken-over trees are not among them.
    pub fn orphan_trees(&self, known: &HashSet<StateId>) -> Result<Vec<PathBuf>> {
        let dir = self.path.join(".moss/root");
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(EngineError::Io { path: dir, source }),
        };
        let mut orphans = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| EngineError::Io {
                path: dir.clone(),
                source,
            })?;
            let id = entry.file_name().to_str().and_then(|n| n.parse().ok());
            if let Some(id) = id
                && !known.contains(&StateId(id))
            {
                orphans.push(entry.path());
            }
        }
        orphans.sort();
        Ok(orphans)
    }

    /// Removes the trees of [`Root::orphan_trees`], each only if nothing is mounted in it;
    /// one line per tree, saying what was done.
    pub fn remove_orphan_trees(&self, known: &HashSet<StateId>) -> Result<Vec<String>> {
        let mut notes = Vec::new();
        for tree in self.orphan_trees(known)? {
            if let Some(point) = sysroot::mounts_below(&tree)?.into_iter().next() {
                notes.push(format!(
                    "kept the orphaned tree {}: {} is mounted inside it; unmount it to have it removed",
                    tree.display(),
                    point.display()
                ));
                continue;
            }
            mossfs_fs::blit::remove_tree(&tree)?;
            notes.push(format!(
                "removed the orphaned tree {}: no state records it",
                tree.display()
            ));
        }
        Ok(notes)
    }

    /// What `ROOT/usr` is now, and so what a commit would do with it.
    pub fn live_usr(&self) -> Result<LiveUsr> {
        let usr = self.usr();
        let meta = match std::fs::symlink_metadata(&usr) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LiveUsr::Absent),
            Err(source) => return Err(EngineError::Io { path: usr, source }),
        };
        if !meta.is_dir() {
            return Ok(LiveUsr::Unmanaged("it is not a directory"));
        }
        match sysroot::read_state_id(&usr).map(StateId) {
            Some(id) if self.db.read()?.state(id).is_ok() => Ok(LiveUsr::Managed(id)),
            Some(_) => Ok(LiveUsr::Unmanaged(
                "its .stateID names a state this root's database does not have",
            )),
            None => {
                let mut entries = std::fs::read_dir(&usr).map_err(|source| EngineError::Io {
                    path: usr.clone(),
                    source,
                })?;
                if entries.next().is_none() {
                    Ok(LiveUsr::Empty)
                } else {
                    Ok(LiveUsr::Unmanaged("it has no .stateID"))
                }
            }
        }
    }

    /// Where the next taken-over `usr` is kept: `ROOT/.moss/root/unmanaged-<n>/usr`, with
    /// the lowest `n` whose `usr` is free, so the first one is always `unmanaged-1`.
    pub fn unmanaged_slot(&self) -> PathBuf {
        (1u64..)
            .map(|n| {
                self.path
                    .join(format!(".moss/root/{UNMANAGED_PREFIX}{n}/usr"))
            })
            .find(|usr| std::fs::symlink_metadata(usr).is_err())
            .expect("some number is free")
    }

    /// Keeps a `usr` that no mossfs state made (the root's original tree, taken over with
    /// `--take-over-usr`) instead of deleting someone else's files; nothing ever removes
    /// it. Returns where it is now.
    pub fn archive_unmanaged(&self, tree: &Path) -> Result<PathBuf> {
        let kept = self.unmanaged_slot();
        let slot = kept.parent().expect("the slot holds usr");
        std::fs::create_dir_all(slot).map_err(|source| EngineError::Io {
            path: slot.to_owned(),
            source,
        })?;
        sysroot::rename_durable(tree, &kept)?;
        Ok(kept)
    }

    /// Moves a tree to the archive slot of its state, replacing any older copy there.
    pub fn archive_tree(&self, id: StateId, tree: &Path) -> Result<()> {
        let slot = self.archive(id);
        let usr = slot.join("usr");
        if usr.exists() {
            mossfs_fs::blit::remove_tree(&usr)?;
        }
        std::fs::create_dir_all(&slot).map_err(|source| EngineError::Io {
            path: slot.clone(),
            source,
        })?;
        sysroot::rename_durable(tree, &usr)?;
        Ok(())
    }
}
