//! `mossfs list installed`, `mossfs info NAME` and `mossfs owner PATH`: questions about
//! the active state, answered from the database; `owner` also reads the root's own links
//! (`/lib64`), which are not in any state's tree.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use mossfs_db::{DirEntry, NodeKind, Query, ReadTxn, State, TreeHash};
use mossfs_format::{EntryKind, PackageId, RelPath};
use mossfs_fs::tree::MAX_HOPS;

use super::documents::Package;
use super::{RootArg, report_recovery};
use crate::engine::{EngineError, Result, Root};
use crate::error::CliError;
use crate::quote;

/// `mossfs list ...`.
#[derive(clap::Subcommand, Debug)]
pub enum ListCommand {
    /// Packages in the active state.
    #[command(visible_alias = "li")]
    Installed(ListInstalledArgs),
    /// Packages the enabled repositories offer, best repository first.
    #[command(visible_alias = "la")]
    Available(ListAvailableArgs),
    /// What `sync` would change, without changing anything.
    #[command(visible_alias = "ls")]
    Sync(ListSyncArgs),
}

/// Arguments of `mossfs list sync` (also `mossfs ls`).
#[derive(clap::Args, Debug)]
pub struct ListSyncArgs {
    #[command(flatten)]
    pub root: RootArg,
}

/// Arguments of `mossfs list installed` (also `mossfs li`).
#[derive(clap::Args, Debug)]
pub struct ListInstalledArgs {
    /// Only the packages that were asked for, not those pulled in as dependencies.
    #[arg(short, long)]
    pub explicit: bool,
    #[command(flatten)]
    pub root: RootArg,
}

/// Arguments of `mossfs list available`.
#[derive(clap::Args, Debug)]
pub struct ListAvailableArgs {
    #[command(flatten)]
    pub root: RootArg,
}

/// Arguments of `mossfs info`.
#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// An installed package's name.
    pub name: String,
    /// Also list the package's files.
    #[arg(long)]
    pub files: bool,
    #[command(flatten)]
    pub root: RootArg,
}

/// Arguments of `mossfs owner`.
#[derive(clap::Args, Debug)]
pub struct OwnerArgs {
    /// A path, such as /usr/bin/nano, /bin/nano or bin/nano (below /usr); any bytes.
    pub path: PathBuf,
    #[command(flatten)]
    pub root: RootArg,
}

/// The live state (see [`Root::live_state`]).
fn active_state(root: &Root, snapshot: &ReadTxn) -> Result<State> {
    let id = root
        .live_state(snapshot)?
        .ok_or(EngineError::NoActiveState)?;
    Ok(snapshot.state(id)?)
}

/// Opens the root for a question, and says if the database is behind `usr`.
fn open(path: &std::path::Path) -> Result<Root> {
    let root = Root::open_read(path)?;
    report_recovery(&root);
    Ok(root)
}

/// Runs `mossfs list installed` or `mossfs list available`.
pub fn list(command: &ListCommand, out: &mut dyn Write) -> std::result::Result<(), CliError> {
    match command {
        ListCommand::Installed(args) => list_installed(args, out).map_err(CliError::from),
        ListCommand::Available(args) => super::repo::list_available(&args.root, out),
        ListCommand::Sync(args) => super::install::sync(
            &super::install::SyncArgs {
                update: false,
                change: super::install::ChangeArgs {
                    stage: false,
                    dry_run: true,
                    take_over_usr: false,
                    triggers: Default::default(),
                    root: args.root.clone(),
                },
            },
            out,
        )
        .map_err(CliError::from),
    }
}

fn list_installed(args: &ListInstalledArgs, out: &mut dyn Write) -> Result<()> {
    let root = open(&args.root.root)?;
    let snapshot = root.db.read()?;
    let state = active_state(&root, &snapshot)?;
    let selections: Vec<_> = state
        .selections
        .iter()
        .filter(|s| s.explicit || !args.explicit)
        .cloned()
        .collect();
    let packages = Package::all(&snapshot, &selections)?;
    if crate::ui::json() {
        crate::ui::print_json(out, &packages)?;
        return Ok(());
    }
    for p in packages {
        writeln!(
            out,
            "{} {}-{}  {}",
            quote::text(&p.name),
            quote::text(&p.version),
            p.release,
            quote::text(&p.summary)
        )?;
    }
    Ok(())
}

fn find_installed(snapshot: &ReadTxn, state: &State, name: &str) -> Result<PackageId> {
    for s in &state.selections {
        if snapshot
            .package(&s.package)?
            .is_some_and(|r| r.meta.name == name)
        {
            return Ok(s.package);
        }
    }
    Err(EngineError::NotInstalled {
        name: name.to_owned(),
    })
}

/// Runs `mossfs info`: the installed package, then what the repositories offer of it.
pub fn info(args: &InfoArgs, out: &mut dyn Write) -> std::result::Result<(), CliError> {
    let root = open(&args.root.root)?;
    if crate::ui::json() {
        let available = super::repo::available_docs(&root.db, &args.name)?;
        return match info_installed(args, &root, &available, out) {
            // Only offered: the name and the offers, without the installed package's fields.
            Err(EngineError::NotInstalled { .. } | EngineError::NoActiveState)
                if !available.is_empty() =>
            {
                crate::ui::print_json(
                    out,
                    &OfferedDoc {
                        name: &args.name,
                        available,
                    },
                )?;
                Ok(())
            }
            other => other.map_err(CliError::from),
        };
    }
    let installed = info_installed(args, &root, &[], out);
    match installed {
        Err(EngineError::NotInstalled { .. } | EngineError::NoActiveState) => {
            if super::repo::print_available(&root.db, &args.name, out)? {
                Ok(())
            } else {
                Err(installed.expect_err("matched an error").into())
            }
        }
        Err(e) => Err(e.into()),
        Ok(()) => {
            super::repo::print_available(&root.db, &args.name, out)?;
            Ok(())
        }
    }
}

/// `available` goes into the JSON document only; the human form prints the offers after.
fn info_installed(
    args: &InfoArgs,
    root: &Root,
    available: &[super::repo::AvailableDoc],
    out: &mut dyn Write,
) -> Result<()> {
    let snapshot = root.db.read()?;
    let state = active_state(root, &snapshot)?;
    let id = find_installed(&snapshot, &state, &args.name)?;
    let record = snapshot
        .package(&id)?
        .ok_or(mossfs_db::DbError::NoPackage(id))?;
    let meta = &record.meta;
    if crate::ui::json() {
        let files = if args.files {
            let mut layout = snapshot.layout(&id)?;
            layout.sort_by(|a, b| a.path.cmp(&b.path));
            Some(
                layout
                    .iter()
                    .map(|entry| FileDoc {
                        path: super::documents::usr_path(entry.path.as_bytes()),
                        target: match &entry.kind {
                            EntryKind::Symlink(text) => Some(quote::json(text)),
                            _ => None,
                        },
                    })
                    .collect(),
            )
        } else {
            None
        };
        let strings =
            |list: &[mossfs_format::Relation]| list.iter().map(|r| r.to_string()).collect();
        let explicit = state
            .selections
            .iter()
            .any(|s| s.package == id && s.explicit);
        let document = InfoDoc {
            package: Package::new(&record, explicit),
            build_release: meta.build_release,
            homepage: meta.homepage.clone(),
            architecture: meta.architecture.clone(),
            licenses: meta.licenses.clone(),
            depends: strings(&meta.depends),
            provides: strings(&meta.provides),
            conflicts: strings(&meta.conflicts),
            stone_size: record.stone_size,
            files,
            available,
        };
        crate::ui::print_json(out, &document)?;
        return Ok(());
    }
    writeln!(out, "name          {}", quote::text(&meta.name))?;
    writeln!(
        out,
        "version       {}-{} (build {})",
        quote::text(&meta.version),
        meta.release,
        meta.build_release
    )?;
    for (label, value) in [
        ("summary", &meta.summary),
        ("homepage", &meta.homepage),
        ("architecture", &meta.architecture),
    ] {
        if !value.is_empty() {
            writeln!(out, "{label:<13} {}", quote::text(value))?;
        }
    }
    if !meta.licenses.is_empty() {
        writeln!(
            out,
            "license       {}",
            quote::text(&meta.licenses.join(", "))
        )?;
    }
    for (label, list) in [
        ("depends", &meta.depends),
        ("provides", &meta.provides),
        ("conflicts", &meta.conflicts),
    ] {
        for relation in list.iter() {
            writeln!(out, "{label:<13} {}", quote::text(&relation.to_string()))?;
        }
    }
    writeln!(out, "package id    {id}")?;
    writeln!(out, "stone size    {} bytes", record.stone_size)?;
    if args.files {
        let mut layout = snapshot.layout(&id)?;
        layout.sort_by(|a, b| a.path.cmp(&b.path));
        for entry in layout {
            let shown = [b"/usr/", entry.path.as_bytes()].concat();
            match &entry.kind {
                EntryKind::Symlink(text) => {
                    writeln!(out, "{} -> {}", quote::name(&shown), quote::name(text))?
                }
                _ => writeln!(out, "{}", quote::name(&shown))?,
            }
        }
    }
    Ok(())
}

/// Runs `mossfs owner`.
pub fn owner(args: &OwnerArgs, out: &mut dyn Write) -> Result<()> {
    let root = open(&args.root.root)?;
    let snapshot = root.db.read()?;
    let state = active_state(&root, &snapshot)?;
    let asked = || quote::name(args.path.as_os_str().as_bytes()).into_owned();
    let (path, entry) = match locate(&snapshot, state.root, &root.path, &args.path)? {
        Located::Found(path, entry) => (path, entry),
        Located::Missing => return Err(EngineError::NoOwner(asked())),
        Located::OutsideUsr => return Err(EngineError::OutsideUsr(asked())),
    };
    let shown = [b"/usr/", path.as_bytes()].concat();
    let Some(owner) = entry.node.owner else {
        // A file a transaction trigger wrote belongs to the state, by way of its trigger.
        let generated = state.generated.iter().find(|g| g.path == path.as_bytes());
        let Some(generated) = generated else {
            return Err(EngineError::NoOwner(asked()));
        };
        if crate::ui::json() {
            let document = GeneratedDoc {
                path: quote::json(&shown),
                asked: quote::json(args.path.as_os_str().as_bytes()),
                trigger: generated.trigger.clone(),
                state: state.id.0,
            };
            crate::ui::print_json(out, &document)?;
            return Ok(());
        }
        writeln!(
            out,
            "{} was generated by transaction trigger {} of state {}",
            quote::name(&shown),
            quote::text(&generated.trigger),
            state.id
        )?;
        return Ok(());
    };
    let record = snapshot
        .package(&owner)?
        .ok_or(mossfs_db::DbError::NoPackage(owner))?;
    if crate::ui::json() {
        let document = OwnerDoc {
            path: quote::json(&shown),
            asked: quote::json(args.path.as_os_str().as_bytes()),
            package: record.meta.name.clone(),
            full_name: record.meta.full_name(),
            id: owner.to_string(),
        };
        crate::ui::print_json(out, &document)?;
        return Ok(());
    }
    writeln!(
        out,
        "{} is owned by {}",
        quote::name(&shown),
        quote::text(&record.meta.full_name())
    )?;
    Ok(())
}

/// `info --json`: the package's fields as `list installed --json` has them, and the rest
/// of its metadata.
#[derive(Debug, serde::Serialize)]
struct InfoDoc<'a> {
    #[serde(flatten)]
    package: Package,
    build_release: u64,
    homepage: String,
    architecture: String,
    licenses: Vec<String>,
    depends: Vec<String>,
    provides: Vec<String>,
    conflicts: Vec<String>,
    stone_size: u64,
    /// With `--files`: every path of its layout.
    #[serde(skip_serializing_if = "Option::is_none")]
    files: Option<Vec<FileDoc>>,
    /// What the repositories offer under the same name, best first.
    available: &'a [super::repo::AvailableDoc],
}

/// `info --json` of a package that is not installed but offered.
#[derive(Debug, serde::Serialize)]
struct OfferedDoc<'a> {
    name: &'a str,
    available: Vec<super::repo::AvailableDoc>,
}

/// One path of a package's layout.
#[derive(Debug, serde::Serialize)]
struct FileDoc {
    path: serde_json::Value,
    /// For a symlink, its text.
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<serde_json::Value>,
}

/// `owner --json`.
#[derive(Debug, serde::Serialize)]
struct OwnerDoc {
    /// Where the entry really is, symlinked directories resolved.
    path: serde_json::Value,
    /// The path as it was asked.
    asked: serde_json::Value,
    package: String,
    full_name: String,
    id: String,
}

/// `owner --json` for a file a transaction trigger wrote: no package owns it.
#[derive(Debug, serde::Serialize)]
struct GeneratedDoc {
    /// Where the entry really is, symlinked directories resolved.
    path: serde_json::Value,
    /// The path as it was asked.
    asked: serde_json::Value,
    /// The transaction trigger that wrote it.
    trigger: String,
    /// The state whose commit ran the trigger.
    state: u64,
}

/// Where a path lands, as far as the active state's tree can tell.
enum Located {
    /// The entry, and where it really is below `/usr`.
    Found(RelPath, DirEntry),
    /// The path leads into `/usr`, but the tree has nothing there.
    Missing,
    /// The path leads somewhere other than `/usr`.
    OutsideUsr,
}

/// Looks `path` up as the kernel would walk it in the root, without touching `/usr` on
/// disk: `/usr` comes from the state's tree, the links at the top of the root (`/lib64`,
/// `/bin`) are read where they are, `.`, `..` and repeated slashes mean what they mean in
/// a walk, and symlinked directories are followed on the way (`lib64/x` when
/// `lib64 -> lib`), but not a final symlink, as `ls -l` shows it. A relative path is taken
/// below `/usr` (`bin/nano`), unless it starts with `usr/`.
fn locate(q: &impl Query, tree: TreeHash, root: &Path, path: &Path) -> Result<Located> {
    let bytes = path.as_os_str().as_bytes();
    let mut todo: VecDeque<Vec<u8>> = split(bytes).collect();
    if !bytes.starts_with(b"/") && todo.front().is_none_or(|first| first != b"usr") {
        todo.push_front(b"usr".to_vec());
    }
    // The walk so far, from `/`: empty at the top, then `usr` and what lies below it.
    let mut at: Vec<Vec<u8>> = Vec::new();
    let mut hops = 0;
    while let Some(name) = todo.pop_front() {
        match &name[..] {
            b"" | b"." => continue,
            b".." => {
                at.pop();
                continue;
            }
            _ => {}
        }
        if at.is_empty() && name != b"usr" {
            // Outside `/usr` only the root's own links lead back into it.
            let Ok(target) = std::fs::read_link(root.join(OsStr::from_bytes(&name))) else {
                return Ok(Located::OutsideUsr);
            };
            hops += 1;
            if hops > MAX_HOPS {
                return Ok(Located::Missing);
            }
            prepend(&mut todo, target.as_os_str().as_bytes());
            continue;
        }
        at.push(name);
        if todo.is_empty() || at.len() == 1 {
            // The last component is not followed; `/usr` itself is a directory.
            continue;
        }
        let Some((_, entry)) = lookup(q, tree, &at)? else {
            return Ok(Located::Missing);
        };
        match entry.node.kind {
            NodeKind::Directory(_) => {}
            NodeKind::Symlink(text) => {
                hops += 1;
                if hops > MAX_HOPS {
                    return Ok(Located::Missing);
                }
                at.pop();
                if text.starts_with(b"/") {
                    at.clear();
                }
                prepend(&mut todo, &text);
            }
            _ => return Ok(Located::Missing),
        }
    }
    if at.is_empty() {
        return Ok(Located::OutsideUsr);
    }
    Ok(match lookup(q, tree, &at)? {
        Some((path, entry)) => Located::Found(path, entry),
        None => Located::Missing,
    })
}

/// The entry at `at` (`usr` and the components below it) and its path below `/usr`, if
/// there is one.
fn lookup(q: &impl Query, tree: TreeHash, at: &[Vec<u8>]) -> Result<Option<(RelPath, DirEntry)>> {
    match RelPath::new(at[1..].join(&b'/')) {
        Ok(path) => Ok(q.lookup(tree, &path)?.map(|entry| (path, entry))),
        // `/usr` itself, or a name no tree can hold.
        Err(_) => Ok(None),
    }
}

fn split(bytes: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    bytes.split(|&b| b == b'/').map(<[u8]>::to_vec)
}

/// Puts a symlink's text in front of what is left to walk; an absolute text starts over
/// from `/` (the caller clears the walk so far).
fn prepend(todo: &mut VecDeque<Vec<u8>>, text: &[u8]) {
    for part in split(text).collect::<Vec<_>>().into_iter().rev() {
        todo.push_front(part);
    }
}
