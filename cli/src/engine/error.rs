//! The transaction engine's errors. Each says what happened and, where there is one, what
//! to do next; the binary prints the chain on one line.

use std::path::PathBuf;

use mossfs_db::StateId;

/// Why a transaction did not happen. In every case the active state is unchanged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The root has no `.moss` yet and the command only reads.
    #[error("{} is not a mossfs root (no .moss folder); install something first", .0.display())]
    NotARoot(PathBuf),
    /// A stone could not be read.
    #[error("cannot read {}", path.display())]
    Stone {
        /// The stone.
        path: PathBuf,
        /// Why.
        #[source]
        source: mossfs_format::DecodeError,
    },
    /// A stone's metadata is unusable.
    #[error("{}: {source}", path.display())]
    Meta {
        /// The stone.
        path: PathBuf,
        /// Why.
        #[source]
        source: mossfs_format::meta::MetaError,
    },
    /// A file could not be opened or read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A stone given on the command line could not be unpacked into the store: its
    /// content is damaged or lies about its sizes, which only reading it shows.
    #[error("cannot unpack {package} from {}", path.display())]
    Unpack {
        /// The stone as given.
        path: PathBuf,
        /// The package, `name-version-release`.
        package: String,
        /// What the store found (boxed: it is large, and this path is cold).
        #[source]
        source: Box<mossfs_store::StoreError>,
    },
    /// A package's index gives an asset a size other than the one its bytes have.
    #[error(
        "package {package} declares {declared} bytes for asset {hash}, which has {found}; its stone's index is wrong"
    )]
    AssetSize {
        /// The package, `name-version-release`.
        package: String,
        /// The asset.
        hash: mossfs_format::AssetHash,
        /// The size its index gives.
        declared: u64,
        /// The size of the asset's bytes.
        found: u64,
    },
    /// Two stones given at once install the same package name.
    #[error("two stones both install package {name}; give one")]
    DuplicateName {
        /// The name.
        name: String,
    },
    /// `remove NAME` for a package that is not in the state.
    #[error("package {name} is not installed; see 'mossfs list installed'")]
    NotInstalled {
        /// The name.
        name: String,
    },
    /// A package's dependency has no provider in the new state.
    #[error(
        "{package} depends on {relation}, which no package in the new state provides; add a stone that provides it"
    )]
    MissingDependency {
        /// Who needs it.
        package: String,
        /// What is needed.
        relation: String,
    },
    /// Removing a package would break another's dependency.
    #[error(
        "cannot remove {removed}: {package} depends on {relation}, which only it provides; remove {package} too"
    )]
    NeededBy {
        /// What is being removed.
        removed: String,
        /// Who needs it.
        package: String,
        /// What is needed.
        relation: String,
    },
    /// A package declares a conflict with another in the new state.
    #[error(
        "{package} conflicts with {other} (it declares conflicts: {relation}); the two cannot be installed together"
    )]
    DeclaredConflict {
        /// The package declaring the conflict.
        package: String,
        /// The package it conflicts with.
        other: String,
        /// The declared relation.
        relation: String,
    },
    /// Packages ship different things at the same paths.
    #[error(
        "{count} path{} conflict (first: usr/{first}, shipped by {packages}){}",
        if *count == 1 { "" } else { "s" },
        match state {
            Some(id) => format!("; inspect it with 'mossfs mount --state {id} DIR'"),
            None => "; stage it with --stage --allow-conflicts to inspect it".to_owned(),
        }
    )]
    FileConflicts {
        /// How many paths conflict.
        count: usize,
        /// The first one.
        first: String,
        /// The packages at the first one.
        packages: String,
        /// The recorded candidate, if one was recorded.
        state: Option<StateId>,
    },
    /// The state asked for is the active one already.
    #[error("state {0} is already active")]
    AlreadyActive(StateId),
    /// The active state cannot be removed.
    #[error("state {0} is active and cannot be removed; activate another state first")]
    RemoveActive(StateId),
    /// A mounted state cannot be removed: its files would vanish under the mount at the
    /// next `gc`.
    #[error(
        "state {state} is mounted at {}; unmount it first with 'mossfs umount {}'",
        .mountpoint.display(),
        .mountpoint.display()
    )]
    RemoveMounted {
        /// The state.
        state: StateId,
        /// Where it is mounted.
        mountpoint: PathBuf,
    },
    /// The registry of live mounts could not be read or written.
    #[error("cannot use the mount registry {}", .path.display())]
    Mounts {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No candidate to commit.
    #[error("there is no candidate state to commit; stage one with 'mossfs install --stage'")]
    NoCandidate,
    /// No state is active yet.
    #[error("no state is active yet; install something first")]
    NoActiveState,
    /// A path is not in the tree.
    #[error("no package ships {0}")]
    NoOwner(String),
    /// A trigger file of the new tree is unusable: nothing was swapped.
    #[error("cannot use the triggers of the new tree")]
    TriggerFile(#[from] mossfs_triggers::TriggerError),
    /// A trigger could not be started at all.
    #[error("cannot run a trigger")]
    TriggerRun(#[from] mossfs_triggers::RunError),
    /// A trigger failed. A transaction trigger refuses the commit; a system trigger ran
    /// after the swap, which stays.
    #[error("{0}")]
    TriggerFailed(Box<TriggerFailure>),
    /// A trigger wrote something a state cannot hold.
    #[error("a transaction trigger made /usr/{path}: {reason}; the commit was refused")]
    TriggerOutput {
        /// Relative to `/usr`.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Printing failed (a closed pipe is not reported as a failure).
    #[error("cannot write output")]
    Output(#[from] std::io::Error),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] mossfs_db::DbError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] mossfs_store::StoreError),
    /// Building a tree failed.
    #[error(transparent)]
    Tree(#[from] mossfs_fs::tree::TreeError),
    /// The blit failed.
    #[error("cannot write the new tree")]
    Blit(#[from] mossfs_fs::blit::BlitError),
    /// A tree could not be removed.
    #[error(transparent)]
    Remove(#[from] mossfs_fs::blit::RemoveError),
    /// A root-level step failed.
    #[error(transparent)]
    Root(#[from] mossfs_fs::sysroot::RootError),
}

/// The engine's result type.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// A trigger that failed, for [`EngineError::TriggerFailed`].
#[derive(Debug)]
pub struct TriggerFailure {
    /// `transaction`, `system`, or `exec`.
    pub scope: &'static str,
    /// The trigger's name.
    pub trigger: String,
    /// The command as run.
    pub command: String,
    /// How it ended.
    pub outcome: String,
    /// Where its output is.
    pub log: PathBuf,
    /// The log's last lines.
    pub tail: String,
}

impl std::fmt::Display for TriggerFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let consequence = match self.scope {
            "transaction" => "the commit was refused and the previous state stays active",
            "system" => {
                "the new state is active; run the system triggers again with 'mossfs triggers run'"
            }
            _ => "nothing was kept",
        };
        write!(
            f,
            "{} trigger '{}' failed: '{}' ended with {}; {consequence}; its output is in {}",
            self.scope,
            self.trigger,
            self.command,
            self.outcome,
            self.log.display()
        )?;
        if !self.tail.is_empty() {
            write!(f, ", ending:\n{}", self.tail)?;
        }
        Ok(())
    }
}
