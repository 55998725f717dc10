//! Where triggers meet a commit (DESIGN.md §10, issue 11).
//!
//! - [`before_exchange`]: after the blit, before `/usr` is swapped, the transaction triggers
//!   of a state being committed for the first time run in a container over the staging
//!   tree. A bad trigger file or a failing trigger refuses the commit: the staging tree is
//!   discarded and the live state is untouched. What they wrote (the overlay's upper
//!   layer) is ingested into the store, linked into the staging tree in place of what it
//!   replaces, and recorded in the state's tree as entries no package owns, so that the
//!   mount, `state diff`, `verify`, gc and a later rollback all see exactly the disk.
//!   A state that was committed before already carries them, so its triggers never run
//!   again; nor do those of a candidate whose commit was killed between its triggers and
//!   the swap, since its tree already holds their output.
//! - [`after_exchange`]: the system triggers of the now-live tree, on the host when the
//!   root is `/`, otherwise in the same container with `ROOT/etc` writable and `/usr`
//!   read-only. They cannot be undone; a failure is reported and `mossfs triggers run`
//!   runs them again.
//!
//! Every command's output goes to `.moss/triggers/<state>.log`.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::collections::BTreeMap;

use mossfs_db::{Generated, Node, NodeKind, State, StateId, Status, TreeHash};
use mossfs_fs::{blit, tree};
use mossfs_triggers::upper::Change;
use mossfs_triggers::{Container, Job, Scope, UsrView};

use super::error::{EngineError, Result};
use super::root::Root;

/// How a command treats triggers.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Run no triggers at all (`--skip-triggers`).
    pub skip: bool,
    /// How long one trigger command may run.
    pub time_limit: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            skip: false,
            time_limit: Duration::from_secs(300),
        }
    }
}

/// The log of `id`'s triggers.
pub fn log_path(root: &Root, id: StateId) -> PathBuf {
    root.path.join(format!(".moss/triggers/{id}.log"))
}

fn open_log(root: &Root, id: StateId, append: bool) -> Result<File> {
    let path = log_path(root, id);
    let io = |source| EngineError::Io {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(append)
        .write(true)
        .truncate(!append)
        .read(true)
        .open(&path)
        .map_err(io)
}

fn helper() -> Result<PathBuf> {
    std::env::current_exe().map_err(|source| EngineError::Io {
        path: PathBuf::from("/proc/self/exe"),
        source,
    })
}

/// Opens the log of state `id` for the triggers of `scope` and notes the skipped ones;
/// `None` when nothing is to run, so that a change without triggers writes no log. The
/// transaction triggers start the log, the system triggers add to it.
fn start_log(
    root: &Root,
    id: StateId,
    scope: Scope,
    plan: &mossfs_triggers::Plan,
) -> Result<Option<File>> {
    if plan.jobs.is_empty() && plan.skipped.is_empty() {
        return Ok(None);
    }
    let kind = match scope {
        Scope::Transaction => "transaction",
        Scope::System => "system",
    };
    let mut log = open_log(root, id, scope == Scope::System)?;
    for skipped in &plan.skipped {
        let _ = writeln!(
            log,
            "== {kind} trigger {} skipped: {}",
            skipped.trigger, skipped.because
        );
    }
    Ok((!plan.jobs.is_empty()).then_some(log))
}

/// A container whose `/usr` is an overlay of `lower`, writes landing in `scratch/upper`
/// (returned), so that nothing a trigger does reaches `lower`'s files, which are
/// hardlinks into the store.
pub fn overlay_container(
    root: &Root,
    lower: PathBuf,
    scratch: &Path,
    time_limit: Duration,
) -> Result<(Container, PathBuf)> {
    let upper = scratch.join("upper");
    let work = scratch.join("work");
    let isolation = root.path.join(".moss/root/isolation");
    for dir in [&upper, &work, &isolation] {
        std::fs::create_dir_all(dir).map_err(|source| EngineError::Io {
            path: dir.clone(),
            source,
        })?;
    }
    let container = Container {
        helper: helper()?,
        isolation,
        usr: UsrView::Overlay {
            lower,
            upper: upper.clone(),
            work,
        },
        etc: root.path.join("etc"),
        etc_writable: false,
        time_limit,
    };
    Ok((container, upper))
}

/// Plans the triggers of `scope` for the tree below `tree_root` (the directory holding
/// `usr`); inhibitor paths outside `/usr` are looked up on the managed root.
fn plan_for(root: &Root, tree_root: &Path, scope: Scope) -> Result<mossfs_triggers::Plan> {
    let triggers = mossfs_triggers::load(tree_root, scope)?;
    if triggers.is_empty() {
        return Ok(mossfs_triggers::Plan::default());
    }
    let paths = mossfs_triggers::tree_paths(tree_root).map_err(|source| EngineError::Io {
        path: tree_root.join("usr"),
        source,
    })?;
    let exists = |p: &str| {
        let rel = p.trim_start_matches('/');
        let base = if rel == "usr" || rel.starts_with("usr/") {
            tree_root
        } else {
            root.path.as_path()
        };
        std::fs::symlink_metadata(base.join(rel)).is_ok()
    };
    let env = |v: &str| std::env::var_os(v).is_some_and(|value| !value.is_empty());
    Ok(mossfs_triggers::plan(&triggers, &paths, &exists, &env)?)
}

/// Runs the jobs in order; the first failure is an error naming the trigger, its command,
/// how it ended and the last lines of the log.
fn run_jobs(
    root: &Root,
    id: StateId,
    scope: Scope,
    jobs: &[Job],
    log: &mut File,
    run: &dyn Fn(
        &Job,
        &File,
    ) -> std::result::Result<mossfs_triggers::Outcome, mossfs_triggers::RunError>,
    after: &mut dyn FnMut(&Job) -> Result<()>,
) -> Result<()> {
    for job in jobs {
        let _ = writeln!(
            log,
            "== {} trigger {} ({}): {}",
            scope.name(),
            job.trigger,
            job.handler,
            job.action
        );
        let _ = log.flush();
        let started = std::time::Instant::now();
        let outcome = run(job, log)?;
        let _ = writeln!(
            log,
            "== {outcome} ({:.1} ms)",
            started.elapsed().as_secs_f64() * 1000.0
        );
        if !outcome.success() {
            return Err(EngineError::TriggerFailed(Box::new(
                super::error::TriggerFailure {
                    scope: scope.name(),
                    trigger: job.trigger.clone(),
                    command: job.action.to_string(),
                    outcome: outcome.to_string(),
                    log: log_path(root, id),
                    tail: tail(log, 8),
                },
            )));
        }
        after(job)?;
    }
    Ok(())
}

/// The last `lines` lines of the log, without the runner's own `==` lines.
fn tail(log: &mut File, lines: usize) -> String {
    let mut text = String::new();
    let len = log.seek(SeekFrom::End(0)).unwrap_or(0);
    let _ = log.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)));
    let _ = log.read_to_string(&mut text);
    let kept: Vec<&str> = text.lines().filter(|l| !l.starts_with("== ")).collect();
    kept[kept.len().saturating_sub(lines)..].join("\n")
}

/// Runs `state`'s transaction triggers over the staging tree and folds what they wrote
/// into it. Returns the state's new tree (root, entries) when they wrote anything.
/// Only a state never committed (a candidate, or the in-flight state of an `install` or
/// `remove`) runs them: a committed state's tree already holds their output.
pub fn before_exchange(root: &Root, state: &State, options: Options) -> Result<Option<Output>> {
    // A candidate with generated files already ran its triggers on this very tree, and a
    // kill came before the swap: their output is in its tree, and running them again on
    // top of it would apply them twice (`echo x >> file`).
    if options.skip || state.status == Status::Committed || !state.generated.is_empty() {
        return Ok(None);
    }
    let staging = root.staging();
    let result = run_transaction(root, state, options, &staging);
    if result.is_err() {
        // The previous state stays live; nothing of this attempt is kept.
        if staging.exists() {
            let _ = blit::remove_tree(&staging);
        }
    }
    result
}

fn run_transaction(
    root: &Root,
    state: &State,
    options: Options,
    staging: &Path,
) -> Result<Option<Output>> {
    let plan = plan_for(root, staging, Scope::Transaction)?;
    let Some(mut log) = start_log(root, state.id, Scope::Transaction, &plan)? else {
        return Ok(None);
    };
    let (container, upper) =
        overlay_container(root, root.staging_usr(), staging, options.time_limit)?;
    // Which trigger wrote each path: the last one whose run changed it in the upper layer.
    let mut seen = signatures(&upper)?;
    let mut writer: BTreeMap<Vec<u8>, String> = BTreeMap::new();
    run_jobs(
        root,
        state.id,
        Scope::Transaction,
        &plan.jobs,
        &mut log,
        &|job, log| container.run(&job.action, log),
        &mut |job| {
            let now = signatures(&upper)?;
            for (path, sig) in &now {
                if seen.get(path) != Some(sig) {
                    writer.insert(path.clone(), job.trigger.clone());
                }
            }
            seen = now;
            Ok(())
        },
    )?;
    let changes = mossfs_triggers::upper::changes(&upper).map_err(|source| EngineError::Io {
        path: upper.clone(),
        source,
    })?;
    if changes.is_empty() {
        return Ok(None);
    }
    let edits = absorb(root, &root.staging_usr(), &changes)?;
    let mut txn = root.db.write()?;
    let (tree_root, entries) = tree::edit(&mut txn, state.root, state.entries, &edits)?;
    txn.commit()?;
    let files = changes
        .iter()
        .filter(|c| matches!(c, Change::File { .. } | Change::Symlink { .. }))
        .map(|c| Generated {
            path: c.path().to_vec(),
            trigger: writer
                .get(c.path())
                .cloned()
                .unwrap_or_else(|| plan.jobs[0].trigger.clone()),
        })
        .collect();
    Ok(Some(Output {
        root: tree_root,
        entries,
        files,
    }))
}

/// What transaction triggers made of a state's tree.
pub struct Output {
    /// The new tree.
    pub root: TreeHash,
    /// Its number of entries.
    pub entries: u64,
    /// The files and links they wrote, by trigger.
    pub files: Vec<Generated>,
}

/// What identifies each entry's content in the upper layer, to tell which run changed it.
/// Inode, mtime and ctime in nanoseconds, and size.
type Signature = (u64, i64, i64, u64);

fn signatures(upper: &Path) -> Result<BTreeMap<Vec<u8>, Signature>> {
    use std::os::unix::fs::MetadataExt;
    let io = |source| EngineError::Io {
        path: upper.to_owned(),
        source,
    };
    let mut out = BTreeMap::new();
    for change in mossfs_triggers::upper::changes(upper).map_err(io)? {
        let meta =
            std::fs::symlink_metadata(upper.join(OsStr::from_bytes(change.path()))).map_err(io)?;
        out.insert(
            change.path().to_vec(),
            (
                meta.ino(),
                meta.mtime_nsec() + meta.mtime() * 1_000_000_000,
                meta.ctime_nsec() + meta.ctime() * 1_000_000_000,
                meta.size(),
            ),
        );
    }
    Ok(out)
}

/// Copies the upper layer into the store and the staging tree, and returns the matching
/// tree edits. Store first, synced, before anything links to it; the staging tree is
/// synced before the exchange by the caller's order.
fn absorb(root: &Root, staged: &Path, changes: &[Change]) -> Result<Vec<(Vec<u8>, tree::Edit)>> {
    let rel = |p: &[u8]| String::from_utf8_lossy(p).into_owned();
    let mut assets = Vec::with_capacity(changes.len());
    for change in changes {
        match change {
            Change::File { source, .. } => assets.push(Some(root.store.put_file(source)?)),
            Change::Special { path } => {
                return Err(EngineError::TriggerOutput {
                    path: rel(path),
                    reason: "a device, fifo or socket, which a state cannot hold",
                });
            }
            _ => assets.push(None),
        }
    }
    let hashes: Vec<_> = assets.iter().flatten().map(|(hash, _)| *hash).collect();
    root.store.sync_assets(&hashes)?;
    // What the edits below change in the staging tree, to be made durable before the
    // exchange: the directories whose entries change, and the symlinks made.
    let written = blit::Written::new();
    let mut edits = Vec::with_capacity(changes.len());
    for (change, asset) in changes.iter().zip(assets) {
        let target = staged.join(OsStr::from_bytes(change.path()));
        // The ledger takes paths as the state names them (`usr/…`), which `sync_tree` maps
        // onto `staged` itself, whether the root was given as a relative path or not.
        let in_state = Path::new("usr").join(OsStr::from_bytes(change.path()));
        let io = |source| EngineError::Io {
            path: target.clone(),
            source,
        };
        if let Some(parent) = in_state.parent() {
            written.dir(parent);
        }
        let edit = match change {
            Change::Removed { .. } => {
                remove_any(&target)?;
                tree::Edit::Remove
            }
            Change::Directory {
                mode,
                uid,
                gid,
                opaque,
                ..
            } => {
                let is_dir = std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir());
                if *opaque || !is_dir {
                    remove_any(&target)?;
                    std::fs::create_dir(&target).map_err(io)?;
                }
                std::os::unix::fs::lchown(&target, Some(*uid), Some(*gid)).map_err(io)?;
                std::fs::set_permissions(
                    &target,
                    std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777),
                )
                .map_err(io)?;
                written.dir(&in_state);
                tree::Edit::Directory {
                    mode: *mode,
                    uid: *uid,
                    gid: *gid,
                    opaque: *opaque,
                }
            }
            Change::File { mode, uid, gid, .. } => {
                let (asset, size) = asset.expect("every file change was put in the store");
                remove_any(&target)?;
                if mossfs_store::Store::may_link(*mode) {
                    let from = root.store.linkable(asset, mode & 0o7777, *uid, *gid)?;
                    std::fs::hard_link(&from, &target).map_err(io)?;
                } else {
                    // A copy of its own, as the blit gives such a file.
                    std::fs::copy(root.store.asset_path(asset), &target).map_err(io)?;
                    std::os::unix::fs::lchown(&target, Some(*uid), Some(*gid)).map_err(io)?;
                    std::fs::set_permissions(
                        &target,
                        std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777),
                    )
                    .map_err(io)?;
                    written.file(in_state.clone());
                }
                tree::Edit::Put(Node {
                    mode: *mode,
                    uid: *uid,
                    gid: *gid,
                    owner: None,
                    kind: NodeKind::Regular { asset, size },
                })
            }
            Change::Symlink {
                target: text,
                uid,
                gid,
                ..
            } => {
                remove_any(&target)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(text), &target).map_err(io)?;
                written.unopenable(1);
                std::os::unix::fs::lchown(&target, Some(*uid), Some(*gid)).map_err(io)?;
                tree::Edit::Put(Node {
                    mode: 0o120777,
                    uid: *uid,
                    gid: *gid,
                    owner: None,
                    kind: NodeKind::Symlink(text.clone()),
                })
            }
            Change::Special { .. } => unreachable!("refused above"),
        };
        edits.push((change.path().to_vec(), edit));
    }
    blit::sync_tree(staged, &written)?;
    Ok(edits)
}

fn remove_any(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(blit::remove_tree(path)?),
        Ok(_) => std::fs::remove_file(path).map_err(|source| EngineError::Io {
            path: path.to_owned(),
            source,
        }),
        Err(_) => Ok(()),
    }
}

/// Runs the system triggers of the live tree of state `id`. The exchange has happened, so
/// a failure only reports: the caller says how to run them again.
pub fn after_exchange(root: &Root, id: StateId, options: Options) -> Result<()> {
    if options.skip {
        return Ok(());
    }
    let plan = plan_for(root, &root.path, Scope::System)?;
    let Some(mut log) = start_log(root, id, Scope::System, &plan)? else {
        return Ok(());
    };
    let on_host = root.path.canonicalize().is_ok_and(|p| p == Path::new("/"));
    if on_host {
        return run_jobs(
            root,
            id,
            Scope::System,
            &plan.jobs,
            &mut log,
            &|job, log| mossfs_triggers::run_on_host(&job.action, log, options.time_limit),
            &mut |_| Ok(()),
        );
    }
    let isolation = root.path.join(".moss/root/isolation");
    // System triggers write the root's /etc (users, tmpfiles): it must be there to bind.
    for dir in [&isolation, &root.path.join("etc")] {
        std::fs::create_dir_all(dir).map_err(|source| EngineError::Io {
            path: dir.clone(),
            source,
        })?;
    }
    let container = Container {
        helper: helper()?,
        isolation,
        usr: UsrView::ReadOnly(root.usr()),
        etc: root.path.join("etc"),
        etc_writable: true,
        time_limit: options.time_limit,
    };
    run_jobs(
        root,
        id,
        Scope::System,
        &plan.jobs,
        &mut log,
        &|job, log| container.run(&job.action, log),
        &mut |_| Ok(()),
    )
}
