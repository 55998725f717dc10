//! A managed root: its paths, its lock, and start-up recovery (DESIGN.md §4, §6.2).
//!
//! ```text
//! ROOT/usr/                   the live tree; usr/.stateID names its state
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

use std::path::{Path, PathBuf};

use mossfs_db::{Db, Query, StateId, Status};
use mossfs_fs::sysroot::{self, Lock};
use mossfs_store::Store;

use super::error::{EngineError, Result};

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
    /// For a reader: what the database does not know yet, because a commit was cut short
    /// (or is finishing) after its commit point; for people.
    pub pending: Option<String>,
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
        for dir in [moss.join("root"), moss.join("mounts")] {
            std::fs::create_dir_all(&dir)
                .map_err(|source| EngineError::Io { path: dir, source })?;
        }
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
        let mut root = Root {
            path: path.to_owned(),
            db: Db::open_read(&moss.join("db"))?,
            store: Store::open_read(&moss)?,
            recovered: Vec::new(),
            pending: None,
            _lock: None,
        };
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
        let mut recovered = Vec::new();
        if store.recovered_temp_files() > 0 {
            recovered.push(format!(
                "removed {} unfinished store files",
                store.recovered_temp_files()
            ));
        }
        Ok(Root {
            path: path.to_owned(),
            db,
            store,
            recovered,
            pending: None,
            _lock: Some(lock),
        })
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
            match (sysroot::read_state_id(&staged).map(StateId), in_db) {
                // The old tree, exchanged out but not yet archived.
                (Some(old), Some(previous)) if old == previous && on_disk != Some(old) => {
                    self.archive_tree(old, &staged)?;
                    self.recovered
                        .push(format!("archived the tree of state {old}"));
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
            sysroot::ensure_root_links(&self.path)?;
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
            .states()?
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

    /// Keeps a `usr` that no mossfs state made (the root's original tree) instead of
    /// deleting someone else's files.
    pub fn archive_unmanaged(&self, tree: &Path) -> Result<()> {
        let slot = self
            .path
            .join(format!(".moss/root/unmanaged-{}", std::process::id()));
        std::fs::create_dir_all(&slot).map_err(|source| EngineError::Io {
            path: slot.clone(),
            source,
        })?;
        sysroot::rename_durable(tree, &slot.join("usr"))?;
        Ok(())
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
