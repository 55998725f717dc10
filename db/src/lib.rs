//! The mossfs database: one LMDB environment (through heed) holding packages, layouts,
//! providers, states and content-addressed trees (DESIGN.md §5).
//!
//! This crate knows record shapes and nothing about files: it never touches the store,
//! never builds a tree (that is `fs`), and never prints. Readers get a snapshot that never
//! blocks and never sees half a write; there is one writer at a time, which LMDB enforces
//! across processes.
//!
//! Named databases:
//!
//! | name | key | value |
//! |---|---|---|
//! | `meta` | text | schema version, active state, next state id, `seal/<id>`: when state `id`'s blitted tree was sealed ([`Query::tree_seal`]) |
//! | `packages` | package id | stone size, flags, meta records (stone encoding) |
//! | `layouts` | package id | layout records (stone encoding) |
//! | `indexes` | package id | index records (stone encoding): each asset's size |
//! | `providers` | `kind(target)` | package ids (sorted duplicates) |
//! | `states` | state id (u64 BE) | [`State`] |
//! | `trees` | tree hash | directory object ([`tree`]) |
//! | `staging` | state id (u64 BE) | [`BuildIndex`]: what the next tree build starts from |
//! | `available`, `available_providers`, `repositories` | see [`available`] | |
//! | `heads` | package id | see [`heads`]: packages recorded from their stones' heads |
#![deny(missing_docs)]

mod available;
mod codec;
pub mod heads;
pub mod staging;
pub mod state;
pub mod tree;

use std::path::{Path, PathBuf};

use heed::byteorder::BigEndian;
use heed::types::{Bytes, Str, U64};
use heed::{CommitOrAbort, Database, DatabaseFlags, Env, EnvOpenOptions, RoTxn, RwTxn, WithoutTls};
use mossfs_format::{IndexEntry, LayoutEntry, Meta, PackageId, RelPath};

pub use available::{Available, AvailableQuery, RepoSeen};
pub use heads::{Head, HeadQuery};
pub use staging::BuildIndex;
pub use state::{Conflict, Generated, Reason, Selection, State, StateHead, StateId, Status};
pub use tree::{DirEntry, DirView, Node, NodeKind, TreeHash};

/// The schema this build reads and writes. Bump it when a record shape changes.
/// 2: states record why each package is selected ([`Reason`]); version 1 records are
/// still read, so an older database is moved up on the first write open.
pub const SCHEMA_VERSION: u64 = 2;

const MAP_SIZE: usize = 1 << 36;

/// Everything that can go wrong in the database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The environment could not be opened.
    #[error("cannot open the database at {path}: {source}")]
    Open {
        /// The database directory.
        path: PathBuf,
        /// What LMDB said.
        #[source]
        source: heed::Error,
    },
    /// Written by a newer mossfs.
    #[error(
        "the database at {path} has schema version {found}, but this mossfs understands only up to {SCHEMA_VERSION}; use a newer mossfs"
    )]
    NewerSchema {
        /// The database directory.
        path: PathBuf,
        /// The version found.
        found: u64,
    },
    /// An LMDB operation failed.
    #[error("database {operation} failed: {source}")]
    Lmdb {
        /// What was being done.
        operation: &'static str,
        /// What LMDB said.
        #[source]
        source: heed::Error,
    },
    /// A directory object is missing or damaged.
    #[error("tree object {hash} is missing or damaged; run 'mossfs verify'")]
    CorruptTree {
        /// The object's hash.
        hash: TreeHash,
    },
    /// A record could not be decoded.
    #[error("the database record for {what} is damaged")]
    Corrupt {
        /// Which record.
        what: String,
    },
    /// A package that is not recorded.
    #[error("package {0} is not in the database")]
    NoPackage(PackageId),
    /// A state that is not recorded.
    #[error("state {0} does not exist; see 'mossfs state list'")]
    NoState(StateId),
    /// The file system holding the database is full, so a write could not be made
    /// durable; nothing of the transaction was kept.
    #[error("cannot write the database at {path}: {source}")]
    Full {
        /// The database directory.
        path: PathBuf,
        /// The kernel's word for it: always "no space left on device" (LMDB reports a
        /// write cut short by a full disk as EIO, which says nothing useful).
        #[source]
        source: std::io::Error,
    },
    /// The root is read-only, or the database may not be written by this user, and the
    /// command needs to write.
    #[error("cannot write the database at {path}: {source}")]
    ReadOnly {
        /// The database directory.
        path: PathBuf,
        /// What the kernel said.
        #[source]
        source: std::io::Error,
    },
}

type Result<T, E = DbError> = std::result::Result<T, E>;

fn lmdb(operation: &'static str) -> impl FnOnce(heed::Error) -> DbError {
    move |source| DbError::Lmdb { operation, source }
}

/// Below this much free space, an I/O error while writing the database is a full disk.
/// LMDB turns a write cut short into EIO, and a write is cut short when the disk fills
/// up, so after one the file system has less than one write's worth (a few pages) left.
const NEARLY_FULL: u64 = 1 << 20;

/// Says whether a failed write of the database at `dir` was a full disk: ENOSPC or EDQUOT
/// outright, or EIO on a file system that has (almost) no space left.
fn full_disk(dir: &Path, source: &heed::Error) -> bool {
    let heed::Error::Io(io) = source else {
        return false;
    };
    match io.raw_os_error() {
        Some(code) if code == rustix::io::Errno::NOSPC.raw_os_error() => true,
        Some(code) if code == rustix::io::Errno::DQUOT.raw_os_error() => true,
        Some(code) if code == rustix::io::Errno::IO.raw_os_error() => {
            rustix::fs::statvfs(dir).is_ok_and(|stat| {
                // Root may use the blocks reserved for it; others may not.
                let blocks = if rustix::process::geteuid().is_root() {
                    stat.f_bfree
                } else {
                    stat.f_bavail
                };
                blocks.saturating_mul(stat.f_frsize) < NEARLY_FULL
            })
        }
        _ => false,
    }
}

/// Turns a failed write (a commit) into [`DbError::Full`] when the disk is full, and into
/// [`DbError::ReadOnly`] on a read-only file system.
fn write_error(dir: &Path, operation: &'static str) -> impl FnOnce(heed::Error) -> DbError {
    move |source| {
        if full_disk(dir, &source) {
            return DbError::Full {
                path: dir.to_owned(),
                source: std::io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error()),
            };
        }
        let denied = [rustix::io::Errno::ROFS, rustix::io::Errno::ACCESS].map(|e| e.raw_os_error());
        match &source {
            heed::Error::Io(io) if io.raw_os_error().is_some_and(|c| denied.contains(&c)) => {
                DbError::ReadOnly {
                    path: dir.to_owned(),
                    source: std::io::Error::new(io.kind(), io.to_string()),
                }
            }
            _ => DbError::Lmdb { operation, source },
        }
    }
}

/// A recorded package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageRecord {
    /// The sha256 of its stone.
    pub id: PackageId,
    /// Its metadata.
    pub meta: Meta,
    /// The stone's size in bytes.
    pub stone_size: u64,
    /// Whether its content has been unpacked into the store.
    pub unpacked: bool,
}

impl PackageRecord {
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![1, u8::from(self.unpacked)];
        out.extend_from_slice(&self.stone_size.to_be_bytes());
        out.extend_from_slice(&mossfs_format::meta::encode_all(&self.meta.to_records()));
        out
    }

    fn decode(id: PackageId, bytes: &[u8]) -> Option<Self> {
        let mut r = codec::Reader(bytes);
        if r.u8()? != 1 {
            return None;
        }
        let unpacked = r.u8()? != 0;
        let stone_size = r.u64()?;
        let records = mossfs_format::meta::decode_all(r.0).ok()?;
        let meta = Meta::from_records(&records).ok()?;
        Some(PackageRecord {
            id,
            meta,
            stone_size,
            unpacked,
        })
    }
}

/// The open database. Cheap to clone: the environment is shared.
#[derive(Clone)]
pub struct Db {
    /// The environment's directory, to name in errors and to ask how full its disk is.
    dir: PathBuf,
    env: Env<WithoutTls>,
    meta: Database<'static, Str, Bytes>,
    packages: Database<'static, Bytes, Bytes>,
    layouts: Database<'static, Bytes, Bytes>,
    indexes: Database<'static, Bytes, Bytes>,
    providers: Database<'static, Bytes, Bytes>,
    states: Database<'static, U64<BigEndian>, Bytes>,
    trees: Database<'static, Bytes, Bytes>,
    /// `None` only when opened for reading before any writer made them.
    available: Option<available::Tables>,
    /// `None` when opened for reading: only a writer builds trees.
    staging: Option<Database<'static, U64<BigEndian>, Bytes>>,
    /// `None` only when opened for reading before any writer made it.
    heads: Option<heads::Table>,
}

impl Db {
    /// Opens (creating if needed) the environment in `dir` and checks its schema.
    pub fn open(dir: &Path) -> Result<Db> {
        let open_err = |source| DbError::Open {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| open_err(heed::Error::Io(e)))?;
        // SAFETY: the environment is a memory map of files under ROOT/.moss/db that only
        // mossfs writes, always through LMDB; heed refuses a second open in one process.
        let env = unsafe {
            EnvOpenOptions::new()
                .read_txn_without_tls()
                .map_size(MAP_SIZE)
                .max_dbs(16)
                .max_readers(1024)
                .open(dir)
        }
        .map_err(open_err)?;
        let _ = env.clear_stale_readers();
        let wtxn = env.write_txn().map_err(open_err)?;
        let commit_err = |source| match write_error(dir, "open")(source) {
            DbError::Lmdb { source, .. } => open_err(source),
            other => other,
        };
        type Dbs = (
            Database<'static, Str, Bytes>,
            Database<'static, Bytes, Bytes>,
            Database<'static, Bytes, Bytes>,
            Database<'static, Bytes, Bytes>,
            Database<'static, Bytes, Bytes>,
            Database<'static, U64<BigEndian>, Bytes>,
            Database<'static, Bytes, Bytes>,
        );
        let (meta, packages, layouts, indexes, providers, states, trees): Dbs = env
            .create_databases_and_commit(wtxn, |opener, wtxn| -> heed::Result<_> {
                let providers = opener
                    .database_options()
                    .types::<Bytes, Bytes>()
                    .name("providers")
                    .flags(DatabaseFlags::DUP_SORT)
                    .create(wtxn)?;
                Ok(CommitOrAbort::<_, ()>::Commit((
                    opener.create_database(wtxn, Some("meta"))?,
                    opener.create_database(wtxn, Some("packages"))?,
                    opener.create_database(wtxn, Some("layouts"))?,
                    opener.create_database(wtxn, Some("indexes"))?,
                    providers,
                    opener.create_database(wtxn, Some("states"))?,
                    opener.create_database(wtxn, Some("trees"))?,
                )))
            })
            .map_err(commit_err)?
            .unwrap_commit();
        let available = Some(available::Tables::open(&env).map_err(open_err)?);
        let staging = Some(staging::open(&env).map_err(open_err)?);
        let heads = Some(heads::open(&env).map_err(open_err)?);
        let db = Db {
            dir: dir.to_owned(),
            env,
            meta,
            packages,
            layouts,
            indexes,
            providers,
            states,
            trees,
            available,
            staging,
            heads,
        };
        let mut txn = db.write()?;
        match txn.meta_u64("schema")? {
            None => txn.set_meta_u64("schema", SCHEMA_VERSION)?,
            Some(found) if found > SCHEMA_VERSION => {
                return Err(DbError::NewerSchema {
                    path: dir.to_owned(),
                    found,
                });
            }
            Some(found) if found < SCHEMA_VERSION => txn.set_meta_u64("schema", SCHEMA_VERSION)?,
            Some(_) => {}
        }
        txn.commit()?;
        Ok(db)
    }

    /// Opens the existing environment in `dir` for reading only, and writes nothing to it.
    /// LMDB still registers the reader in its shared lock file, so that a writer in
    /// another process never reuses pages this snapshot reads; on a read-only file system
    /// it reads without one, which is safe because nothing can write there either. This
    /// is what every command that only reads uses, so that it works on a read-only root
    /// and a dry run leaves no trace.
    pub fn open_read(dir: &Path) -> Result<Db> {
        let open_err = |source| DbError::Open {
            path: dir.to_owned(),
            source,
        };
        if !dir.join("data.mdb").is_file() {
            return Err(open_err(heed::Error::Io(std::io::Error::from(
                std::io::ErrorKind::NotFound,
            ))));
        }
        // SAFETY: as in `open`; READ_ONLY only narrows what this process may do.
        let env = unsafe {
            EnvOpenOptions::new()
                .read_txn_without_tls()
                .map_size(MAP_SIZE)
                .max_dbs(16)
                .max_readers(1024)
                .flags(heed::EnvFlags::READ_ONLY)
                .open(dir)
        }
        .map_err(open_err)?;
        let rtxn = env.read_txn().map_err(open_err)?;
        type Dbs = (
            Option<Database<'static, Str, Bytes>>,
            Option<Database<'static, Bytes, Bytes>>,
            Option<Database<'static, Bytes, Bytes>>,
            Option<Database<'static, Bytes, Bytes>>,
            Option<Database<'static, Bytes, Bytes>>,
            Option<Database<'static, U64<BigEndian>, Bytes>>,
            Option<Database<'static, Bytes, Bytes>>,
        );
        let opened: Dbs = env
            .open_databases_and_commit(rtxn, |opener, rtxn| -> heed::Result<_> {
                let providers = opener
                    .database_options()
                    .types::<Bytes, Bytes>()
                    .name("providers")
                    .flags(DatabaseFlags::DUP_SORT)
                    .open(rtxn)?;
                Ok(CommitOrAbort::<_, ()>::Commit((
                    opener.open_database(rtxn, Some("meta"))?,
                    opener.open_database(rtxn, Some("packages"))?,
                    opener.open_database(rtxn, Some("layouts"))?,
                    opener.open_database(rtxn, Some("indexes"))?,
                    providers,
                    opener.open_database(rtxn, Some("states"))?,
                    opener.open_database(rtxn, Some("trees"))?,
                )))
            })
            .map_err(open_err)?
            .unwrap_commit();
        let (
            Some(meta),
            Some(packages),
            Some(layouts),
            Some(indexes),
            Some(providers),
            Some(states),
            Some(trees),
        ) = opened
        else {
            return Err(DbError::Corrupt {
                what: format!("the table list of {}", dir.display()),
            });
        };
        let available = available::Tables::open_existing(&env).map_err(open_err)?;
        let heads = heads::open_existing(&env).map_err(open_err)?;
        let db = Db {
            dir: dir.to_owned(),
            env,
            meta,
            packages,
            layouts,
            indexes,
            providers,
            states,
            trees,
            available,
            staging: None,
            heads,
        };
        match db.read()?.meta_u64("schema")? {
            Some(found) if found > SCHEMA_VERSION => Err(DbError::NewerSchema {
                path: dir.to_owned(),
                found,
            }),
            _ => Ok(db),
        }
    }

    /// A consistent snapshot for reading. It never blocks and may be held by another
    /// thread (the FUSE server holds one for the life of a mount).
    pub fn read(&self) -> Result<ReadTxn> {
        let txn = self.env.clone().static_read_txn().map_err(lmdb("read"))?;
        Ok(ReadTxn {
            db: self.clone(),
            txn,
        })
    }

    /// The one write transaction; waits for any other writer, in any process.
    pub fn write(&self) -> Result<WriteTxn<'_>> {
        let txn = self
            .env
            .write_txn()
            .map_err(write_error(&self.dir, "write"))?;
        Ok(WriteTxn { db: self, txn })
    }
}

/// The `meta` key of state `id`'s tree seal.
fn seal_key(id: StateId) -> String {
    format!("seal/{}", id.0)
}

/// Read operations, shared by both kinds of transaction.
pub trait Query {
    /// The database.
    fn db(&self) -> &Db;
    /// The underlying transaction.
    fn txn(&self) -> &RoTxn<'_, WithoutTls>;

    /// A number in the `meta` table.
    fn meta_u64(&self, key: &str) -> Result<Option<u64>> {
        let value = self
            .db()
            .meta
            .get(self.txn(), key)
            .map_err(lmdb("read meta"))?;
        value
            .map(|v| {
                v.try_into()
                    .map(u64::from_be_bytes)
                    .map_err(|_| DbError::Corrupt {
                        what: format!("meta key {key}"),
                    })
            })
            .transpose()
    }

    /// A package's record.
    fn package(&self, id: &PackageId) -> Result<Option<PackageRecord>> {
        let Some(bytes) = self
            .db()
            .packages
            .get(self.txn(), &id.0)
            .map_err(lmdb("read package"))?
        else {
            return Ok(None);
        };
        PackageRecord::decode(*id, bytes)
            .map(Some)
            .ok_or_else(|| DbError::Corrupt {
                what: format!("package {id}"),
            })
    }

    /// Every recorded package.
    fn packages(&self) -> Result<Vec<PackageRecord>> {
        let mut out = Vec::new();
        for item in self
            .db()
            .packages
            .iter(self.txn())
            .map_err(lmdb("list packages"))?
        {
            let (key, bytes) = item.map_err(lmdb("list packages"))?;
            let id = PackageId(key.try_into().map_err(|_| DbError::Corrupt {
                what: "a package key".into(),
            })?);
            out.push(
                PackageRecord::decode(id, bytes).ok_or_else(|| DbError::Corrupt {
                    what: format!("package {id}"),
                })?,
            );
        }
        Ok(out)
    }

    /// A package's layout.
    fn layout(&self, id: &PackageId) -> Result<Vec<LayoutEntry>> {
        let bytes = self
            .db()
            .layouts
            .get(self.txn(), &id.0)
            .map_err(lmdb("read layout"))?
            .ok_or(DbError::NoPackage(*id))?;
        mossfs_format::layout::decode_all(bytes).map_err(|_| DbError::Corrupt {
            what: format!("layout of {id}"),
        })
    }

    /// A package's index: the assets it needs and their sizes.
    fn index(&self, id: &PackageId) -> Result<Vec<IndexEntry>> {
        let bytes = self
            .db()
            .indexes
            .get(self.txn(), &id.0)
            .map_err(lmdb("read index"))?
            .ok_or(DbError::NoPackage(*id))?;
        mossfs_format::index::decode_all(bytes).map_err(|_| DbError::Corrupt {
            what: format!("index of {id}"),
        })
    }

    /// The packages that provide `relation` (its text form, e.g. `soname(libz.so.1)`).
    fn providers(&self, relation: &str) -> Result<Vec<PackageId>> {
        let Some(iter) = self
            .db()
            .providers
            .get_duplicates(self.txn(), relation.as_bytes())
            .map_err(lmdb("read providers"))?
        else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for item in iter {
            let (_, value) = item.map_err(lmdb("read providers"))?;
            out.push(PackageId(value.try_into().map_err(|_| {
                DbError::Corrupt {
                    what: format!("provider {relation}"),
                }
            })?));
        }
        Ok(out)
    }

    /// A state.
    fn state(&self, id: StateId) -> Result<State> {
        let bytes = self
            .db()
            .states
            .get(self.txn(), &id.0)
            .map_err(lmdb("read state"))?
            .ok_or(DbError::NoState(id))?;
        State::decode(bytes).ok_or_else(|| DbError::Corrupt {
            what: format!("state {id}"),
        })
    }

    /// Every state, oldest first.
    fn states(&self) -> Result<Vec<State>> {
        self.each_state(State::decode)
    }

    /// Every state's [`StateHead`], oldest first, without decoding the rest of each.
    fn state_heads(&self) -> Result<Vec<StateHead>> {
        self.each_state(State::decode_head)
    }

    /// Every state record, oldest first, read with `decode`: a record it refuses is
    /// corrupt.
    fn each_state<T>(&self, decode: fn(&[u8]) -> Option<T>) -> Result<Vec<T>> {
        let mut out = Vec::new();
        for item in self
            .db()
            .states
            .iter(self.txn())
            .map_err(lmdb("list states"))?
        {
            let (id, bytes) = item.map_err(lmdb("list states"))?;
            out.push(decode(bytes).ok_or_else(|| DbError::Corrupt {
                what: format!("state {id}"),
            })?);
        }
        Ok(out)
    }

    /// When the tree that a commit blitted for state `id` was sealed, in nanoseconds since
    /// the Unix epoch: every directory of that tree changed later has a later ctime. `None`
    /// when no commit of the state finished (or an older mossfs made it).
    fn tree_seal(&self, id: StateId) -> Result<Option<u64>> {
        self.meta_u64(&seal_key(id))
    }

    /// The active state, if any has been committed.
    fn active(&self) -> Result<Option<StateId>> {
        Ok(self.meta_u64("active")?.map(StateId))
    }

    /// A directory object, read in place from the memory map.
    fn tree(&self, hash: TreeHash) -> Result<DirView<'_>> {
        let bytes = self
            .db()
            .trees
            .get(self.txn(), &hash.0.to_be_bytes())
            .map_err(lmdb("read tree"))?
            .ok_or(DbError::CorruptTree { hash })?;
        DirView::new(hash, bytes)
    }

    /// Whether a directory object is stored.
    fn has_tree(&self, hash: TreeHash) -> Result<bool> {
        Ok(self
            .db()
            .trees
            .get(self.txn(), &hash.0.to_be_bytes())
            .map_err(lmdb("read tree"))?
            .is_some())
    }

    /// Every stored directory object's hash, for garbage collection.
    fn tree_hashes(&self) -> Result<Vec<TreeHash>> {
        let mut out = Vec::new();
        for item in self
            .db()
            .trees
            .iter(self.txn())
            .map_err(lmdb("list trees"))?
        {
            let (key, _) = item.map_err(lmdb("list trees"))?;
            let key: [u8; 16] = key.try_into().map_err(|_| DbError::Corrupt {
                what: "a tree key".into(),
            })?;
            out.push(TreeHash(u128::from_be_bytes(key)));
        }
        Ok(out)
    }

    /// Follows `path` from a root directory object, without following symlinks.
    fn lookup(&self, root: TreeHash, path: &RelPath) -> Result<Option<DirEntry>> {
        let mut dir = root;
        let mut components = path.components().peekable();
        while let Some(name) = components.next() {
            let Some((_, entry)) = self.tree(dir)?.find(name) else {
                return Ok(None);
            };
            if components.peek().is_none() {
                return Ok(Some(entry));
            }
            match entry.node.kind {
                NodeKind::Directory(child) => dir = child,
                _ => return Ok(None),
            }
        }
        Ok(None)
    }
}

/// A read snapshot.
pub struct ReadTxn {
    db: Db,
    txn: RoTxn<'static, WithoutTls>,
}

impl Query for ReadTxn {
    fn db(&self) -> &Db {
        &self.db
    }
    fn txn(&self) -> &RoTxn<'_, WithoutTls> {
        &self.txn
    }
}

/// The write transaction. Dropping it without [`WriteTxn::commit`] discards every change.
pub struct WriteTxn<'db> {
    db: &'db Db,
    txn: RwTxn<'db>,
}

impl Query for WriteTxn<'_> {
    fn db(&self) -> &Db {
        self.db
    }
    fn txn(&self) -> &RoTxn<'_, WithoutTls> {
        &self.txn
    }
}

impl WriteTxn<'_> {
    /// Makes every change durable and visible at once.
    /// A full disk is [`DbError::Full`], and nothing of the transaction is kept.
    pub fn commit(self) -> Result<()> {
        self.txn
            .commit()
            .map_err(write_error(&self.db.dir, "commit"))
    }

    fn set_meta_u64(&mut self, key: &str, value: u64) -> Result<()> {
        self.db
            .meta
            .put(&mut self.txn, key, &value.to_be_bytes())
            .map_err(lmdb("write meta"))
    }

    /// Records when the tree a commit blitted for state `id` was sealed (see
    /// [`Query::tree_seal`]); written in the transaction that marks the commit done.
    pub fn set_tree_seal(&mut self, id: StateId, nanos: u64) -> Result<()> {
        self.set_meta_u64(&seal_key(id), nanos)
    }

    /// Overwrites the schema version, so tests can play a database from the future.
    #[doc(hidden)]
    pub fn set_schema_for_test(&mut self, version: u64) -> Result<()> {
        self.set_meta_u64("schema", version)
    }

    /// Records a package: its meta, layout and index, and its providers.
    pub fn put_package(
        &mut self,
        record: &PackageRecord,
        layout: &[LayoutEntry],
        index: &[IndexEntry],
    ) -> Result<()> {
        let id = &record.id.0;
        let db = self.db;
        db.packages
            .put(&mut self.txn, id, &record.encode())
            .map_err(lmdb("write package"))?;
        db.layouts
            .put(
                &mut self.txn,
                id,
                &mossfs_format::layout::encode_all(layout),
            )
            .map_err(lmdb("write layout"))?;
        db.indexes
            .put(&mut self.txn, id, &mossfs_format::index::encode_all(index))
            .map_err(lmdb("write index"))?;
        for provider in record.meta.all_provides() {
            db.providers
                .put(&mut self.txn, provider.to_string().as_bytes(), id)
                .map_err(lmdb("write provider"))?;
        }
        Ok(())
    }

    /// Marks a package's content as unpacked into the store (or not).
    pub fn set_unpacked(&mut self, id: &PackageId, unpacked: bool) -> Result<()> {
        let mut record = self.package(id)?.ok_or(DbError::NoPackage(*id))?;
        if record.unpacked != unpacked {
            record.unpacked = unpacked;
            self.db
                .packages
                .put(&mut self.txn, &id.0, &record.encode())
                .map_err(lmdb("write package"))?;
        }
        Ok(())
    }

    /// Forgets a package: its record, layout, index and providers.
    pub fn remove_package(&mut self, id: &PackageId) -> Result<()> {
        let Some(record) = self.package(id)? else {
            return Ok(());
        };
        let db = self.db;
        for provider in record.meta.all_provides() {
            db.providers
                .delete_one_duplicate(&mut self.txn, provider.to_string().as_bytes(), &id.0)
                .map_err(lmdb("remove provider"))?;
        }
        db.packages
            .delete(&mut self.txn, &id.0)
            .map_err(lmdb("remove package"))?;
        db.layouts
            .delete(&mut self.txn, &id.0)
            .map_err(lmdb("remove layout"))?;
        db.indexes
            .delete(&mut self.txn, &id.0)
            .map_err(lmdb("remove index"))?;
        self.remove_head(id)?;
        Ok(())
    }

    /// Hands out the next state number.
    pub fn next_state_id(&mut self) -> Result<StateId> {
        let next = self.meta_u64("next-state")?.unwrap_or(1);
        // A state record says "no parent" with u64::MAX, so that number is never handed
        // out; only a damaged counter gets there.
        if next == u64::MAX {
            return Err(DbError::Corrupt {
                what: "the next state number".to_owned(),
            });
        }
        self.set_meta_u64("next-state", next + 1)?;
        Ok(StateId(next))
    }

    /// Records or replaces a state.
    pub fn put_state(&mut self, state: &State) -> Result<()> {
        self.db
            .states
            .put(&mut self.txn, &state.id.0, &state.encode())
            .map_err(lmdb("write state"))
    }

    /// Forgets a state and its staging record. Its trees stay until garbage collection.
    pub fn remove_state(&mut self, id: StateId) -> Result<bool> {
        self.forget_build_index(id)?;
        self.db
            .meta
            .delete(&mut self.txn, &seal_key(id))
            .map_err(lmdb("remove tree seal"))?;
        self.db
            .states
            .delete(&mut self.txn, &id.0)
            .map_err(lmdb("remove state"))
    }

    /// Records what the build of state `id`'s tree leaves for the next build.
    pub fn put_build_index(&mut self, id: StateId, index: &BuildIndex) -> Result<()> {
        let Some(staging) = self.db.staging else {
            return Ok(());
        };
        staging
            .put(&mut self.txn, &id.0, &index.encode())
            .map_err(lmdb("write staging record"))
    }

    /// Forgets what the build of state `id`'s tree left, so that the next build starts
    /// from every layout; the benchmarks measure that build against the incremental one.
    pub fn forget_build_index(&mut self, id: StateId) -> Result<()> {
        if let Some(staging) = self.db.staging {
            staging
                .delete(&mut self.txn, &id.0)
                .map_err(lmdb("remove staging record"))?;
        }
        Ok(())
    }

    /// What the build of state `id`'s tree left for the next build, if it left anything
    /// (a state recorded with conflicts, or by an older mossfs, has none). A damaged
    /// record reads as none: the next build then starts from every layout.
    pub fn build_index(&self, id: StateId) -> Result<Option<BuildIndex>> {
        let Some(staging) = self.db.staging else {
            return Ok(None);
        };
        let bytes = staging
            .get(&self.txn, &id.0)
            .map_err(lmdb("read staging record"))?;
        Ok(bytes.and_then(BuildIndex::decode))
    }

    /// Sets (or clears) the active state.
    pub fn set_active(&mut self, id: Option<StateId>) -> Result<()> {
        match id {
            Some(id) => self.set_meta_u64("active", id.0),
            None => {
                self.db
                    .meta
                    .delete(&mut self.txn, "active")
                    .map_err(lmdb("write meta"))?;
                Ok(())
            }
        }
    }

    /// Stores an encoded directory object under its hash; storing it twice is free.
    pub fn put_tree(&mut self, bytes: &[u8]) -> Result<TreeHash> {
        let hash = TreeHash::of(bytes);
        let key = hash.0.to_be_bytes();
        if self
            .db
            .trees
            .get(&self.txn, &key)
            .map_err(lmdb("read tree"))?
            .is_none()
        {
            self.db
                .trees
                .put(&mut self.txn, &key, bytes)
                .map_err(lmdb("write tree"))?;
        }
        Ok(hash)
    }

    /// Removes a directory object (garbage collection).
    pub fn remove_tree(&mut self, hash: TreeHash) -> Result<()> {
        self.db
            .trees
            .delete(&mut self.txn, &hash.0.to_be_bytes())
            .map_err(lmdb("remove tree"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_at_the_no_parent_marker_is_damage_not_a_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path()).expect("opens");
        let mut txn = db.write().expect("writes");
        txn.set_meta_u64("next-state", u64::MAX - 1).expect("sets");
        assert_eq!(
            txn.next_state_id().expect("one left"),
            StateId(u64::MAX - 1)
        );
        let err = txn.next_state_id().expect_err("u64::MAX is not a state");
        assert!(matches!(err, DbError::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("damaged"), "{err}");
    }
}
