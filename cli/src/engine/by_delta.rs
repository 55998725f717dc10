//! Getting a repository package into the store by delta when its repository offers one
//! (DESIGN.md §11), and the full stone otherwise.
//!
//! [`get`] is the one decision, per package: among the deltas the last refresh kept for
//! the package's repository ([`mossfs_repo::deltas::offers`]), take the smallest one that
//! starts from a package this root knows and whose every asset is in the store; download
//! it (verified against the sha256 and size the signed index gives); check that it stands
//! for exactly the full stone the index names (package id and size); look up the old
//! package's index in the database (the delta's records name their bases by position in
//! it); rebuild the new assets with
//! [`Store::apply_delta`](mossfs_store::Store::apply_delta), which re-hashes each base it
//! reads, holds at most one record (its bases and targets) in memory and checks every
//! target's xxh3-128; and copy the delta into the cache under the full stone's id, as a delta given
//! on the command line is. Any failure on that path (a missing or damaged base, a wrong
//! hash, a malformed delta, a download error) gives `None` after one note on stderr, and
//! the caller downloads the full stone as it would have anyway. A failed attempt leaves
//! at most verified assets in the store, which `gc` removes if nothing uses them.
//!
//! Installs and syncs call it while they fetch; the commit of a candidate staged from
//! stones' heads calls it too ([`crate::engine::preview`]), with what the candidate
//! recorded of the package ([`Staged`]), which the delta must carry exactly.

use std::path::{Path, PathBuf};

use mossfs_db::Query;
use mossfs_format::{IndexEntry, LayoutEntry, Meta, PackageId};
use mossfs_repo::deltas::Offer;
use mossfs_repo::fetch::{self, Job};
use mossfs_repo::transport::{self, Transport};

use crate::engine::{LoadedStone, Root};

/// The folder, inside the stone cache, where deltas are downloaded before they are
/// applied and copied into the cache proper.
const DOWNLOADS: &str = ".deltas";

/// The delta to use for the package `meta` (as the index of repository `repo` gives it),
/// if any: the smallest offer to it from a package the root knows whose assets are all
/// present. Reads only the database, the store and the kept offer list.
pub fn choose(root: &Root, repo: &str, meta: &Meta) -> Option<Offer> {
    let hash = meta.hash.as_deref()?;
    let snapshot = root.db.read().ok()?;
    mossfs_repo::deltas::offers(&root.path, repo)
        .into_iter()
        .filter(|offer| offer.to == hash)
        .filter(|offer| {
            let Some(from) = package_id(&offer.from) else {
                return false;
            };
            matches!(snapshot.package(&from), Ok(Some(_)))
                && snapshot.index(&from).is_ok_and(|index| {
                    !index.is_empty() && index.iter().all(|e| root.store.has_asset(e.digest))
                })
        })
        .min_by_key(|offer| offer.size)
}

/// Gets the repository package `meta` into the store by delta, or says once why not and
/// returns `None`, so that the caller fetches the full stone (see the module docs).
/// `staged`, for a package of a candidate staged from its head, is what the candidate
/// recorded of it: a delta that would rebuild anything else is not used.
pub fn get<'s>(
    root: &'s Root,
    repo: &str,
    meta: &Meta,
    staged: Option<&Staged>,
) -> Option<LoadedStone<'s>> {
    let offer = choose(root, repo, meta)?;
    let dir = root.store.cache_dir().join(DOWNLOADS);
    let dest = dir.join(format!("{}.delta", offer.sha256));
    let result = by_delta(root, meta, staged, &offer, &dir, &dest);
    let _ = std::fs::remove_file(&dest);
    let _ = std::fs::remove_dir(&dir);
    match result {
        Ok(stone) => Some(stone),
        Err(why) => {
            eprintln!(
                "note: {}: the delta from the repository cannot be used ({why}); downloading the full stone instead",
                crate::quote::text(&meta.full_name())
            );
            None
        }
    }
}

fn by_delta<'s>(
    root: &'s Root,
    meta: &Meta,
    staged: Option<&Staged>,
    offer: &Offer,
    dir: &Path,
    dest: &Path,
) -> Result<LoadedStone<'s>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let job = Job {
        name: meta.name.clone(),
        uri: offer.uri.clone(),
        sha256: offer.sha256.clone(),
        size: offer.size,
        dest: dest.to_owned(),
    };
    let transport = Transport::new(transport::default_idle());
    let path: PathBuf = fetch::fetch_all(
        std::slice::from_ref(&job),
        &transport,
        &fetch::Options::default(),
        &|_| {},
    )
    .pop()
    .ok_or("the download did not run")?
    .map_err(|e| chain(&e))?;
    crate::ui::step("download delta");
    // Records name their bases by position in the old package's index, which the
    // database holds for every package this root knows.
    let from = package_id(&offer.from).ok_or("the index names no valid package it starts from")?;
    let old = crate::engine::plan::old_index(&root.db, &path, &from).map_err(|e| chain(&e))?;
    let (_, preamble) = root.store.check_delta(&path, &old).map_err(|e| chain(&e))?;
    let wanted = meta.hash.as_deref().and_then(package_id);
    if Some(preamble.to) != wanted || Some(preamble.to_size) != meta.size {
        return Err(format!(
            "it rebuilds package {} ({} bytes), not the one the index names",
            preamble.to, preamble.to_size
        ));
    }
    if Some(preamble.from) != package_id(&offer.from) {
        return Err(format!(
            "it starts from package {}, not the one the index names",
            preamble.from
        ));
    }
    let stone = LoadedStone::load(&path, &root.store, &root.db).map_err(|e| chain(&e))?;
    if let Some(staged) = staged {
        staged.check(&stone)?;
    }
    root.store.apply_delta(&path, &old).map_err(|e| chain(&e))?;
    crate::ui::step("apply delta");
    Ok(stone)
}

/// What a candidate staged from a stone's head recorded of one package (DESIGN.md §7):
/// its metadata, layout and index as the full stone's head gave them. A delta used to get
/// that package at the commit must carry exactly these, so that the tree committed is the
/// one that was staged, previewed and diffed; the delta's sha256 (from the signed index)
/// and every target's xxh3-128 then stand where the head's digest stood for a full stone.
pub struct Staged {
    /// The package's metadata, as its stone's head gave it.
    pub meta: Meta,
    /// Its layout.
    pub layout: Vec<LayoutEntry>,
    /// Its index.
    pub index: Vec<IndexEntry>,
}

impl Staged {
    /// Refuses a delta whose metadata, layout or index differ from what was staged.
    fn check(&self, stone: &LoadedStone<'_>) -> Result<(), String> {
        let differs = if stone.meta != self.meta {
            "metadata"
        } else if stone.layout != self.layout {
            "layout"
        } else if stone.index != self.index {
            "index"
        } else {
            return Ok(());
        };
        Err(format!(
            "its {differs} differs from the one the candidate was staged from"
        ))
    }
}

/// The bytes the packages in `wanted` (meta and repository) take to download: with the
/// deltas [`choose`] would take, and with full stones only.
pub fn download_sizes<'m>(
    root: &Root,
    wanted: impl IntoIterator<Item = (&'m str, &'m Meta)>,
) -> (u64, u64) {
    let mut with = 0u64;
    let mut without = 0u64;
    for (repo, meta) in wanted {
        let full = meta.size.unwrap_or(0);
        if meta
            .hash
            .as_deref()
            .and_then(package_id)
            .is_some_and(|id| root.store.is_cached(&id))
        {
            continue;
        }
        without += full;
        with += choose(root, repo, meta).map_or(full, |offer| offer.size.min(full));
    }
    (with, without)
}

pub(crate) fn package_id(hex: &str) -> Option<PackageId> {
    mossfs_repo::unhex(hex)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(PackageId)
}

/// An error and its causes on one line.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use mossfs_format::{EntryKind, LayoutEntry, Meta, PackageId, RelPath};

    use super::Staged;
    use crate::engine::LoadedStone;

    fn link(text: &str) -> LayoutEntry {
        LayoutEntry {
            uid: 0,
            gid: 0,
            mode: 0o120777,
            tag: 0,
            kind: EntryKind::Symlink(text.as_bytes().to_vec()),
            path: RelPath::new("lib/libfoo.so.1").unwrap(),
        }
    }

    fn staged() -> Staged {
        Staged {
            meta: Meta {
                name: "foo".into(),
                ..Meta::default()
            },
            layout: vec![link("libfoo.so.1.1.0")],
            index: Vec::new(),
        }
    }

    fn delta(meta: Meta, layout: Vec<LayoutEntry>) -> LoadedStone<'static> {
        LoadedStone::without_copy(
            PathBuf::from("foo.delta"),
            PackageId([7; 32]),
            1,
            meta,
            layout,
            Vec::new(),
        )
    }

    /// A delta is used at the commit of a staged candidate only if it carries what the
    /// candidate was staged from, whatever it rebuilds.
    #[test]
    fn a_delta_must_carry_the_staged_metadata_and_layout() {
        let staged = staged();
        assert_eq!(
            staged.check(&delta(staged.meta.clone(), staged.layout.clone())),
            Ok(())
        );
        let relinked = staged.check(&delta(staged.meta.clone(), vec![link("libfoo.so.1.0.0")]));
        assert_eq!(
            relinked,
            Err("its layout differs from the one the candidate was staged from".to_owned())
        );
        let renamed = Meta {
            name: "bar".into(),
            ..staged.meta.clone()
        };
        let other = staged.check(&delta(renamed, staged.layout.clone()));
        assert!(other.is_err_and(|e| e.starts_with("its metadata differs")));
    }
}
