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
    /// No set of packages satisfies the request: a dependency nobody provides, or
    /// packages that cannot be chosen together. The explanation is resolvo's: the chain
    /// of requirements and the conflict that blocks it, one step a line; the binary
    /// prints it below the error line.
    #[error(
        "cannot {asked}: no set of packages satisfies it, so nothing was changed; why, from what was asked down to what blocks it:"
    )]
    Unsolvable {
        /// The change asked for: `install needy.stone`, `remove libfoo`.
        asked: String,
        /// Several lines.
        explanation: String,
    },
    /// An `install` argument that is neither a stone nor a name or provider.
    #[error(
        "cannot install `{words}`: {problem}; give a .stone file, a package name, or a provider such as binary(nano)"
    )]
    BadRequest {
        /// The argument.
        words: String,
        /// Why it does not parse.
        problem: String,
    },
    /// The solver stopped without an answer, which only a failing source makes it do.
    #[error("the solver stopped without an answer")]
    SolveCancelled,
    /// `remove` would also remove packages that need the named ones, and there is no
    /// terminal to ask whether that is all right.
    #[error(
        "removing {asked} also removes {} that need{} it: {dependents}; run the command again with -y to remove them too, or name them",
        if *count == 1 { "the package" } else { "the packages" },
        if *count == 1 { "s" } else { "" }
    )]
    RemoveNeedsConfirmation {
        /// The packages named, comma-separated.
        asked: String,
        /// How many more would go.
        count: usize,
        /// Each, with the dependency that ties it to a removed package.
        dependents: String,
    },
    /// The person at the terminal said no.
    #[error("nothing was removed: you declined to remove the packages that need {asked}")]
    RemoveDeclined {
        /// The packages named, comma-separated.
        asked: String,
    },
    /// Packages ship different things at the same paths.
    #[error(
        "{count} path{} conflict (first: {first}, shipped by {packages}){}",
        if *count == 1 { "" } else { "s" },
        match state {
            Some(id) => format!("; inspect it with 'mossfs mount --state {id} DIR'"),
            None => "; stage it with --stage --allow-conflicts to inspect it".to_owned(),
        }
    )]
    FileConflicts {
        /// How many paths conflict.
        count: usize,
        /// The first one, `usr/...`, quoted for people.
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
    /// A state whose mount was detached is still served, for files opened through the
    /// mount before it was detached; there is no mount point left to unmount.
    #[error(
        "state {state} is still in use: its mount at {} was detached, but files opened through it are still open, and its server (pid {pid}) keeps serving them; close them, or stop the server with 'kill {pid}', then try again",
        .mountpoint.display()
    )]
    RemoveDetached {
        /// The state.
        state: StateId,
        /// Where it was mounted.
        mountpoint: PathBuf,
        /// The server still serving it.
        pid: u32,
    },
    /// `commit ID` of a state that was committed before: committing is for candidates,
    /// and going back to an earlier state is `state activate`.
    #[error(
        "state {0} is not a candidate: it was committed before; to make it live again, run 'mossfs state activate {0}'"
    )]
    CommitCommitted(StateId),
    /// `ROOT/usr` holds a tree mossfs did not make, and the user did not ask to take it
    /// over: replacing it would leave the system with only the state's packages.
    #[error(
        "{} is not managed by mossfs ({why}); a commit would replace it with a usr holding only the state's packages; if that is what you want, run the command again with --take-over-usr, and the old tree will be kept in {}",
        .usr.display(),
        .kept.display()
    )]
    UnmanagedUsr {
        /// `ROOT/usr`.
        usr: PathBuf,
        /// Why it is not mossfs's.
        why: &'static str,
        /// Where a take-over would keep it.
        kept: PathBuf,
    },
    /// A file system is mounted inside a tree a commit would move or rewrite: the exchange
    /// would carry it out of `/usr` with the old tree.
    #[error(
        "{} is mounted below {}; {}; unmount it (umount {}) and run the command again",
        .mountpoint.display(),
        .tree.display(),
        if .tree.ends_with("usr") {
            "a commit would move it out of /usr with the old tree"
        } else {
            "a commit may rewrite or remove the archived tree it is in"
        },
        .mountpoint.display()
    )]
    MountedBelow {
        /// The mount point.
        mountpoint: PathBuf,
        /// The tree it is in: `ROOT/usr` or `ROOT/.moss/root`.
        tree: PathBuf,
    },
    /// A file system is mounted inside a state's archived tree, so the tree cannot be
    /// removed without reaching into it; the state is kept.
    #[error(
        "cannot remove state {state}: {} is mounted inside its archived tree; unmount it (umount {}) and run the command again",
        .mountpoint.display(),
        .mountpoint.display()
    )]
    ArchiveMounted {
        /// The state.
        state: StateId,
        /// The mount point.
        mountpoint: PathBuf,
    },
    /// A repository could not give what the plan needs (a download failed or did not
    /// match its index); nothing was recorded.
    #[error(transparent)]
    Repo(Box<mossfs_repo::RepoError>),
    /// A package of a candidate staged from its stone's head could not be downloaded, or
    /// its download is not the package the candidate was built from; nothing was
    /// unpacked or written, and the active state is unchanged.
    #[error("cannot commit state {state}; it stays a candidate and the active state is unchanged")]
    Preview {
        /// The candidate.
        state: StateId,
        /// What the download found.
        #[source]
        source: Box<mossfs_repo::RepoError>,
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
    /// The person answered no to a confirmation; nothing was changed.
    #[error("cancelled; nothing was changed (pass -y to answer yes without being asked)")]
    Cancelled,
    /// A candidate built on a state that is no longer the active one: committing it
    /// would undo what changed since it was staged.
    #[error(
        "state {state} was staged on {}, but {} is active now: committing it would undo what changed since; stage the change again, or drop it with 'mossfs state remove {state}' ('mossfs state prune --candidates' drops every candidate)",
        .base.map_or("an empty root".to_owned(), |b| format!("state {b}")),
        .active.map_or("no state".to_owned(), |a| format!("state {a}"))
    )]
    StaleCandidate {
        /// The candidate.
        state: StateId,
        /// The state it was built on.
        base: Option<StateId>,
        /// The state active now.
        active: Option<StateId>,
    },
    /// No candidate to commit.
    #[error("there is no candidate state to commit; stage one with 'mossfs install --stage'")]
    NoCandidate,
    /// No state is active yet.
    #[error("no state is active yet; install something first")]
    NoActiveState,
    /// A path is not in the tree. The path as given, quoted for people.
    #[error("no package ships {0}")]
    NoOwner(String),
    /// A path leads somewhere other than `/usr`, where no package installs anything. The
    /// path as given, quoted for people.
    #[error("{0} is not below /usr, and packages ship files only there")]
    OutsideUsr(String),
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
            "{} trigger '{}' failed: '{}' {}; {consequence}; its output is in {}",
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

/// Boxed: a repository's error is large, and the engine's errors travel by value.
impl From<mossfs_repo::RepoError> for EngineError {
    fn from(e: mossfs_repo::RepoError) -> Self {
        EngineError::Repo(Box::new(e))
    }
}
