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
//! commit that never reached its commit point, and is removed.

use std::path::{Path, PathBuf};

use mossfs_db::{Db, Query, StateId, Status};
use mossfs_fs::sysroot::{self, Lock};
use mossfs_store::Store;

use super::error::{EngineError, Result};

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
    _lock: Option<Lock>,
}

impl Root {
    /// Opens for writing: takes the lock (saying so if it has to wait), then recovers.
    pub fn open_write(path: &Path) -> Result<Root> {
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
        let mut root = Root::assemble(path, Some(lock))?;
        root.recover()?;
        Ok(root)
    }

    /// Opens for reading: no lock, no recovery. Readers never block.
    pub fn open_read(path: &Path) -> Result<Root> {
        if !path.join(".moss/db").is_dir() {
            return Err(EngineError::NotARoot(path.to_owned()));
        }
        Root::assemble(path, None)
    }

    fn assemble(path: &Path, lock: Option<Lock>) -> Result<Root> {
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
            triggers: super::triggers::Options::default(),
            _lock: lock,
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
        if on_disk.is_some() {
            sysroot::ensure_root_links(&self.path)?;
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
