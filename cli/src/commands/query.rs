//! `mossfs list installed`, `mossfs info NAME` and `mossfs owner PATH`: questions about
//! the active state, answered from the database alone.

use std::io::Write;

use mossfs_db::{DirEntry, NodeKind, Query, ReadTxn, State, TreeHash};
use mossfs_format::{EntryKind, PackageId, RelPath};

use super::RootArg;
use super::documents::Package;
use crate::engine::{EngineError, Result, Root};

/// `mossfs list ...`.
#[derive(clap::Subcommand, Debug)]
pub enum ListCommand {
    /// Packages in the active state.
    #[command(visible_alias = "li")]
    Installed(ListInstalledArgs),
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
    /// A path, such as /usr/bin/nano or bin/nano.
    pub path: String,
    #[command(flatten)]
    pub root: RootArg,
}

fn active_state(snapshot: &ReadTxn) -> Result<State> {
    let id = snapshot.active()?.ok_or(EngineError::NoActiveState)?;
    Ok(snapshot.state(id)?)
}

/// Runs `mossfs list installed`.
pub fn list(command: &ListCommand, out: &mut dyn Write) -> Result<()> {
    let ListCommand::Installed(args) = command;
    let root = Root::open_read(&args.root.root)?;
    let snapshot = root.db.read()?;
    let state = active_state(&snapshot)?;
    let selections: Vec<_> = state
        .selections
        .iter()
        .filter(|s| s.explicit || !args.explicit)
        .copied()
        .collect();
    let packages = Package::all(&snapshot, &selections)?;
    if crate::ui::json() {
        crate::ui::print_json(out, &packages)?;
        return Ok(());
    }
    for p in packages {
        writeln!(out, "{} {}-{}  {}", p.name, p.version, p.release, p.summary)?;
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

/// Runs `mossfs info`.
pub fn info(args: &InfoArgs, out: &mut dyn Write) -> Result<()> {
    let root = Root::open_read(&args.root.root)?;
    let snapshot = root.db.read()?;
    let state = active_state(&snapshot)?;
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
                        path: format!("/usr/{}", entry.path),
                        target: match &entry.kind {
                            EntryKind::Symlink(text) => {
                                Some(String::from_utf8_lossy(text).into_owned())
                            }
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
        };
        crate::ui::print_json(out, &document)?;
        return Ok(());
    }
    writeln!(out, "name          {}", meta.name)?;
    writeln!(
        out,
        "version       {}-{} (build {})",
        meta.version, meta.release, meta.build_release
    )?;
    for (label, value) in [
        ("summary", &meta.summary),
        ("homepage", &meta.homepage),
        ("architecture", &meta.architecture),
    ] {
        if !value.is_empty() {
            writeln!(out, "{label:<13} {value}")?;
        }
    }
    if !meta.licenses.is_empty() {
        writeln!(out, "license       {}", meta.licenses.join(", "))?;
    }
    for (label, list) in [
        ("depends", &meta.depends),
        ("provides", &meta.provides),
        ("conflicts", &meta.conflicts),
    ] {
        for relation in list.iter() {
            writeln!(out, "{label:<13} {relation}")?;
        }
    }
    writeln!(out, "package id    {id}")?;
    writeln!(out, "stone size    {} bytes", record.stone_size)?;
    if args.files {
        let mut layout = snapshot.layout(&id)?;
        layout.sort_by(|a, b| a.path.cmp(&b.path));
        for entry in layout {
            match &entry.kind {
                EntryKind::Symlink(text) => writeln!(
                    out,
                    "/usr/{} -> {}",
                    entry.path,
                    String::from_utf8_lossy(text)
                )?,
                _ => writeln!(out, "/usr/{}", entry.path)?,
            }
        }
    }
    Ok(())
}

/// Runs `mossfs owner`.
pub fn owner(args: &OwnerArgs, out: &mut dyn Write) -> Result<()> {
    let root = Root::open_read(&args.root.root)?;
    let snapshot = root.db.read()?;
    let state = active_state(&snapshot)?;
    let text = args.path.trim_start_matches('/');
    let text = text.strip_prefix("usr/").unwrap_or(text);
    let path = RelPath::new(text).map_err(|_| EngineError::NoOwner(args.path.clone()))?;
    let (path, entry) = resolve(&snapshot, state.root, &path)?
        .ok_or_else(|| EngineError::NoOwner(args.path.clone()))?;
    let owner = entry
        .node
        .owner
        .ok_or_else(|| EngineError::NoOwner(args.path.clone()))?;
    let record = snapshot
        .package(&owner)?
        .ok_or(mossfs_db::DbError::NoPackage(owner))?;
    if crate::ui::json() {
        let document = OwnerDoc {
            path: format!("/usr/{path}"),
            asked: args.path.clone(),
            package: record.meta.name.clone(),
            full_name: record.meta.full_name(),
            id: owner.to_string(),
        };
        crate::ui::print_json(out, &document)?;
        return Ok(());
    }
    writeln!(out, "/usr/{path} is owned by {}", record.meta.full_name())?;
    Ok(())
}

/// `info --json`: the package's fields as `list installed --json` has them, and the rest
/// of its metadata.
#[derive(Debug, serde::Serialize)]
struct InfoDoc {
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
}

/// One path of a package's layout.
#[derive(Debug, serde::Serialize)]
struct FileDoc {
    path: String,
    /// For a symlink, its text.
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
}

/// `owner --json`.
#[derive(Debug, serde::Serialize)]
struct OwnerDoc {
    /// Where the entry really is, symlinked directories resolved.
    path: String,
    /// The path as it was asked.
    asked: String,
    package: String,
    full_name: String,
    id: String,
}

/// Looks `path` up in a tree, following symlinked directories on the way (`lib64/x` when
/// `lib64 -> lib`) but not a final symlink, as `ls -l` would show it. Returns the path
/// where the entry really is.
fn resolve(q: &impl Query, root: TreeHash, path: &RelPath) -> Result<Option<(RelPath, DirEntry)>> {
    let mut parts: Vec<Vec<u8>> = path.components().map(<[u8]>::to_vec).collect();
    let mut i = 0;
    let mut hops = 0;
    loop {
        let Ok(prefix) = RelPath::new(parts[..=i].join(&b'/')) else {
            return Ok(None);
        };
        let Some(entry) = q.lookup(root, &prefix)? else {
            return Ok(None);
        };
        if i + 1 == parts.len() {
            return Ok(Some((prefix, entry)));
        }
        match &entry.node.kind {
            NodeKind::Directory(_) => i += 1,
            NodeKind::Symlink(text) if hops < 40 => {
                hops += 1;
                let mut joined: Vec<Vec<u8>> = match text.strip_prefix(b"/usr/") {
                    Some(inside) => inside.split(|&b| b == b'/').map(<[u8]>::to_vec).collect(),
                    None if text.starts_with(b"/") => return Ok(None),
                    None => parts[..i]
                        .iter()
                        .cloned()
                        .chain(text.split(|&b| b == b'/').map(<[u8]>::to_vec))
                        .collect(),
                };
                joined.extend(parts[i + 1..].iter().cloned());
                let mut normal: Vec<Vec<u8>> = Vec::new();
                for part in joined {
                    match &part[..] {
                        b"" | b"." => {}
                        b".." => {
                            if normal.pop().is_none() {
                                return Ok(None);
                            }
                        }
                        _ => normal.push(part),
                    }
                }
                if normal.is_empty() {
                    return Ok(None);
                }
                parts = normal;
                i = 0;
            }
            _ => return Ok(None),
        }
    }
}
