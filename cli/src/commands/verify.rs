//! `mossfs verify [--repair]`: re-hash every asset the database references, and check
//! every path of the active tree on disk against its state.
//!
//! Repair re-unpacks damaged assets from their cached stones, then re-blits the whole
//! active state and exchanges it in, because a damaged file in `/usr` may be a hardlink
//! to a damaged asset that the repair replaced.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use mossfs_db::{Node, NodeKind, Query};
use mossfs_format::{AssetHash, AssetHasher, PackageId};
use mossfs_store::AssetCheck;

use super::{RootArg, print_commit, progress};
use crate::engine::{EngineError, Mode, Result, Root, commit_state};
use crate::progress::{Bar, Unit};

/// Arguments of `mossfs verify`.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Mend what is found: re-unpack damaged assets and re-blit the active tree.
    #[arg(long)]
    pub repair: bool,
    #[command(flatten)]
    pub root: RootArg,
}

/// The problems `verify` found.
#[derive(Debug, thiserror::Error)]
#[error(
    "verify found {assets} damaged asset(s) and {paths} damaged path(s); run 'mossfs verify --repair'"
)]
pub struct Damaged {
    assets: usize,
    paths: usize,
}

/// Runs `mossfs verify`.
pub fn verify(args: &VerifyArgs, out: &mut dyn Write) -> Result<(), VerifyError> {
    let root = if args.repair {
        Root::open_write(&args.root.root)?
    } else {
        Root::open_read(&args.root.root)?
    };
    super::report_recovery(&root);
    let snapshot = root.db.read()?;

    // Every asset of every recorded, unpacked package, and one cached stone to mend it from.
    let mut sources: HashMap<AssetHash, PackageId> = HashMap::new();
    // And their sizes, for the progress bar.
    let mut sizes: HashMap<AssetHash, u64> = HashMap::new();
    for record in snapshot.packages()? {
        if record.unpacked {
            for entry in snapshot.index(&record.id)? {
                sources.entry(entry.digest).or_insert(record.id);
                sizes.insert(entry.digest, entry.len());
            }
        }
    }
    let bar = Bar::new("verify", sizes.values().sum(), Unit::Bytes);
    let mut bad_assets = Vec::new();
    for (n, (hash, package)) in sources.iter().enumerate() {
        bar.inc(sizes.get(hash).copied().unwrap_or(0));
        bar.message(format!("{}/{} assets", n + 1, sources.len()));
        match root.store.verify_asset(*hash).map_err(EngineError::from)? {
            AssetCheck::Ok => {}
            problem => {
                writeln!(out, "asset {hash}: {problem:?}")?;
                bad_assets.push((*hash, *package));
            }
        }
    }

    drop(bar);
    let mut bad_paths = 0usize;
    let active = root.live_state(&snapshot)?;
    if let Some(id) = active {
        let state = snapshot.state(id)?;
        let usr = root.usr();
        mossfs_fs::walk::walk(&snapshot, state.root, |path, node| {
            if let Some(problem) = check_path(&root, &usr, path, node) {
                writeln!(out, "usr/{}: {problem}", String::from_utf8_lossy(path))?;
                bad_paths += 1;
            }
            Ok::<(), EngineError>(())
        })
        .map_err(VerifyError::Engine)?;
    }
    writeln!(
        out,
        "checked {} assets and the tree of state {}: {} damaged asset(s), {bad_paths} damaged path(s)",
        sources.len(),
        active.map_or("-".to_owned(), |a| a.to_string()),
        bad_assets.len()
    )?;
    drop(snapshot);
    if bad_assets.is_empty() && bad_paths == 0 {
        return Ok(());
    }
    if !args.repair {
        return Err(VerifyError::Damaged(Damaged {
            assets: bad_assets.len(),
            paths: bad_paths,
        }));
    }
    for (hash, package) in &bad_assets {
        root.store
            .repair_asset(*hash, package)
            .map_err(EngineError::from)?;
        writeln!(out, "repaired asset {hash} from package {package}")?;
    }
    if let Some(id) = active {
        let progress = progress("re-blit");
        let report = commit_state(&root, id, Mode::Reblit, progress.as_deref())?;
        print_commit(out, &report, "repair").map_err(EngineError::from)?;
    }
    Ok(())
}

/// Why verify failed: an error, or damage that was found and not repaired.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Verification itself failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Damage was found.
    #[error(transparent)]
    Damaged(Damaged),
}

impl From<std::io::Error> for VerifyError {
    fn from(e: std::io::Error) -> Self {
        VerifyError::Engine(e.into())
    }
}

impl From<mossfs_db::DbError> for VerifyError {
    fn from(e: mossfs_db::DbError) -> Self {
        VerifyError::Engine(e.into())
    }
}

/// Compares one path on disk with its tree entry; `None` when it matches.
fn check_path(root: &Root, usr: &Path, path: &[u8], node: &Node) -> Option<String> {
    let full = usr.join(std::ffi::OsStr::from_bytes(path));
    let meta = match std::fs::symlink_metadata(&full) {
        Ok(m) => m,
        Err(e) => return Some(format!("missing ({e})")),
    };
    if meta.mode() & 0o170000 != node.mode & 0o170000 {
        return Some(format!(
            "is a {:o} file type, expected {}",
            meta.mode() & 0o170000,
            node.kind.name()
        ));
    }
    let is_symlink = matches!(node.kind, NodeKind::Symlink(_));
    if !is_symlink && meta.mode() & 0o7777 != node.mode & 0o7777 {
        return Some(format!(
            "mode {:o}, expected {:o}",
            meta.mode() & 0o7777,
            node.mode & 0o7777
        ));
    }
    if rustix::process::geteuid().is_root() && (meta.uid(), meta.gid()) != (node.uid, node.gid) {
        return Some(format!(
            "owner {}:{}, expected {}:{}",
            meta.uid(),
            meta.gid(),
            node.uid,
            node.gid
        ));
    }
    match &node.kind {
        NodeKind::Symlink(text) => match std::fs::read_link(&full) {
            Ok(found) if found.as_os_str().as_encoded_bytes() == text.as_slice() => None,
            Ok(found) => Some(format!(
                "links to {}, expected {}",
                found.display(),
                String::from_utf8_lossy(text)
            )),
            Err(e) => Some(format!("unreadable link ({e})")),
        },
        NodeKind::Regular { asset, size } => {
            if meta.len() != *size {
                return Some(format!("{} bytes, expected {size}", meta.len()));
            }
            // A hardlink to the asset is right by construction (the asset is verified
            // separately); anything else is re-hashed.
            let store_ino = std::fs::metadata(root.store.asset_path(*asset))
                .map(|m| (m.dev(), m.ino()))
                .ok();
            if store_ino == Some((meta.dev(), meta.ino())) {
                return None;
            }
            match hash_file(&full) {
                Ok(found) if found == *asset => None,
                Ok(found) => Some(format!("content hashes to {found}, expected {asset}")),
                Err(e) => Some(format!("unreadable ({e})")),
            }
        }
        _ => None,
    }
}

fn hash_file(path: &Path) -> std::io::Result<AssetHash> {
    AssetHasher::of_reader(std::fs::File::open(path)?, 256 * 1024).map(|(hash, _)| hash)
}
