//! `mossfs list installed`, `mossfs info NAME` and `mossfs owner PATH`: questions about
//! the active state, answered from the database alone.

use std::io::Write;

use mossfs_db::{DirEntry, NodeKind, Query, ReadTxn, State, TreeHash};
use mossfs_format::{EntryKind, PackageId, RelPath};

use super::RootArg;
use crate::engine::{EngineError, Result, Root};
use crate::error::CliError;

/// `mossfs list ...`.
#[derive(clap::Subcommand, Debug)]
pub enum ListCommand {
    /// Packages in the active state.
    Installed {
        #[command(flatten)]
        root: RootArg,
    },
    /// Packages the enabled repositories offer, best repository first.
    Available {
        #[command(flatten)]
        root: RootArg,
    },
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

/// Runs `mossfs list installed` or `mossfs list available`.
pub fn list(command: &ListCommand, out: &mut dyn Write) -> std::result::Result<(), CliError> {
    match command {
        ListCommand::Installed { root } => list_installed(root, out).map_err(CliError::from),
        ListCommand::Available { root } => super::repo::list_available(root, out),
    }
}

fn list_installed(root: &RootArg, out: &mut dyn Write) -> Result<()> {
    let root = Root::open_read(&root.root)?;
    let snapshot = root.db.read()?;
    let state = active_state(&snapshot)?;
    let mut rows = Vec::new();
    for s in &state.selections {
        let record = snapshot
            .package(&s.package)?
            .ok_or(mossfs_db::DbError::NoPackage(s.package))?;
        rows.push((
            record.meta.name.clone(),
            format!("{}-{}", record.meta.version, record.meta.release),
            record.meta.summary,
        ));
    }
    rows.sort();
    for (name, version, summary) in rows {
        writeln!(out, "{name} {version}  {summary}")?;
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
    let root = Root::open_read(&args.root.root)?;
    let installed = info_installed(args, &root, out);
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

fn info_installed(args: &InfoArgs, root: &Root, out: &mut dyn Write) -> Result<()> {
    let snapshot = root.db.read()?;
    let state = active_state(&snapshot)?;
    let id = find_installed(&snapshot, &state, &args.name)?;
    let record = snapshot
        .package(&id)?
        .ok_or(mossfs_db::DbError::NoPackage(id))?;
    let meta = &record.meta;
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
    writeln!(out, "/usr/{path} is owned by {}", record.meta.full_name())?;
    Ok(())
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
