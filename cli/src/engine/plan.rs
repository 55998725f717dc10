//! Planning: from what was asked to the package set of the next state, without side
//! effects (STYLE.md "plan, then act"). Every change is one solve ([`super::solve`]), so
//! refusals for missing dependencies and declared conflicts come from here, before
//! anything is written.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mossfs_db::{Db, DbError, PackageRecord, Query, Selection};
use mossfs_format::{IndexEntry, LayoutEntry, Meta, PackageId, Preamble, Reader};
use mossfs_store::{PendingStone, Store};

use super::change::{Change, Verb, summarize, version_of};
use super::error::{EngineError, Result};
use super::solve::{
    self, Candidate, Installed, Keep, Origin, Policy, Problem, Request, Solution, Source, Want,
};

/// A stone from the command line, copied next to the cache and read as far as its
/// metadata. Everything here comes from that copy, so the id, the metadata and the content
/// that will be unpacked are the same bytes, whatever happens to the original.
pub struct LoadedStone<'s> {
    /// Where it came from.
    pub path: PathBuf,
    /// The sha256 of the whole file.
    pub id: PackageId,
    /// Its size.
    pub size: u64,
    /// Typed metadata.
    pub meta: Meta,
    /// Its layout.
    pub layout: Vec<LayoutEntry>,
    /// Its index.
    pub index: Vec<IndexEntry>,
    /// The copy, until [`LoadedStone::keep_all`] caches it; dropped, it vanishes.
    copy: Option<PendingStone<'s>>,
    /// For a delta stone copied into a store, that store and the index of the package the
    /// delta starts from: `keep_all` rebuilds the delta's assets there before caching the copy.
    delta: Option<(&'s Store, Vec<IndexEntry>)>,
}

/// The index of the package a delta at `path` starts from, as the database holds it: the
/// delta's records name their bases by position in it. A package the database does not
/// know is the store's [`DeltaOldIndex`](mossfs_store::StoreError::DeltaOldIndex), which
/// falls back to the full stone like every other delta failure.
pub fn old_index(db: &Db, path: &Path, from: &PackageId) -> Result<Vec<IndexEntry>> {
    match db.read()?.index(from) {
        Ok(index) => Ok(index),
        Err(DbError::NoPackage(_)) => Err(mossfs_store::StoreError::DeltaOldIndex {
            path: path.to_owned(),
            from: *from,
        }
        .into()),
        Err(other) => Err(other.into()),
    }
}

/// The stone's metadata, checked: what [`LoadedStone`] keeps of it.
struct Metadata {
    meta: Meta,
    layout: Vec<LayoutEntry>,
    index: Vec<IndexEntry>,
    /// For a delta stone (DESIGN.md §11), which packages it goes between.
    delta: Option<Preamble>,
}

/// Opens a stone for reading, naming it in the error.
fn open(path: &Path) -> Result<File> {
    File::open(path).map_err(|source| EngineError::Io {
        path: path.to_owned(),
        source,
    })
}

impl<'s> LoadedStone<'s> {
    /// Reads the stone's meta, layout and index payloads in place and checks them, without
    /// writing anything: the early refusal of a bad stone, before a root is touched.
    pub fn check(path: &Path) -> Result<()> {
        let file = open(path)?;
        Self::metadata(path, &file).map(drop)
    }

    /// Reads the stone's metadata and hashes it, writing nothing: what a dry run shows.
    /// It has no copy, so [`LoadedStone::keep_all`] does nothing with it. A delta stone is
    /// checked against `root` (its store and database), when there is one, as `load`
    /// checks it: a dry run refuses a delta whose bases are missing just as the install
    /// would.
    pub fn inspect(path: &Path, root: Option<(&Store, &Db)>) -> Result<LoadedStone<'static>> {
        let file = open(path)?;
        let metadata = Self::metadata(path, &file)?;
        // A delta stands for its package's full stone, as in `load`.
        let (id, size) = match &metadata.delta {
            Some(preamble) => {
                if let Some((store, db)) = root {
                    store.check_delta(path, &old_index(db, path, &preamble.from)?)?;
                }
                (preamble.to, preamble.to_size)
            }
            None => mossfs_store::stone_id(path)?,
        };
        Ok(LoadedStone::from_metadata(
            path.to_owned(),
            id,
            size,
            metadata,
        ))
    }

    /// [`LoadedStone::without_copy`] from checked metadata; a delta's preamble is left out,
    /// since the package it stands for is named by `id` and `size`.
    fn from_metadata(
        path: PathBuf,
        id: PackageId,
        size: u64,
        metadata: Metadata,
    ) -> LoadedStone<'static> {
        let Metadata {
            meta,
            layout,
            index,
            delta: _,
        } = metadata;
        LoadedStone::without_copy(path, id, size, meta, layout, index)
    }

    /// A package with no copy for [`LoadedStone::keep_all`] to put in the cache: one a dry run
    /// inspects, one already cached, or one read from its stone's head alone (a repository's,
    /// staged before its body is downloaded: `engine::preview`, whose stone reaches the
    /// cache when it is downloaded, checked against the head it was read from).
    pub fn without_copy(
        path: PathBuf,
        id: PackageId,
        size: u64,
        meta: Meta,
        layout: Vec<LayoutEntry>,
        index: Vec<IndexEntry>,
    ) -> LoadedStone<'static> {
        LoadedStone {
            path,
            id,
            size,
            meta,
            layout,
            index,
            copy: None,
            delta: None,
        }
    }

    /// [`LoadedStone::without_copy`] from a stone head's bytes, decoded as any stone's metadata is:
    /// every payload checksum verified, the structure checked.
    pub fn read_head(
        path: PathBuf,
        id: PackageId,
        size: u64,
        head: &[u8],
    ) -> Result<LoadedStone<'static>> {
        let metadata = LoadedStone::metadata(&path, head)?;
        Ok(LoadedStone::from_metadata(path, id, size, metadata))
    }

    /// Copies the stone next to `store`'s cache, hashing it on the way (one read), then
    /// reads the metadata from the copy. A delta stone's old package is looked up in `db`.
    pub fn load(path: &Path, store: &'s Store, db: &Db) -> Result<LoadedStone<'s>> {
        let mut copy = store.copy_stone(path)?;
        let mut file = copy.file();
        file.seek(SeekFrom::Start(0))
            .map_err(|source| EngineError::Io {
                path: path.to_owned(),
                source,
            })?;
        let Metadata {
            meta,
            layout,
            index,
            delta,
        } = Self::metadata(path, file)?;
        let mut old = None;
        if let Some(preamble) = delta {
            // A delta stone stands for its package's full stone (DESIGN.md §11): it is
            // recorded and cached under that stone's id and size. Checking it here writes
            // nothing; its assets are rebuilt by `keep_all`, once the plan holds.
            let index = old_index(db, path, &preamble.from)?;
            store.check_delta(path, &index)?;
            copy.id = preamble.to;
            copy.size = preamble.to_size;
            old = Some((store, index));
        }
        Ok(LoadedStone {
            path: path.to_owned(),
            id: copy.id,
            size: copy.size,
            meta,
            layout,
            index,
            copy: Some(copy),
            delta: old,
        })
    }

    /// Reads the metadata of a stone already in the cache under `id` (one a download
    /// verified against its index's sha256 and size), without copying it: there is nothing
    /// for [`LoadedStone::keep_all`] to do.
    pub fn cached(path: &Path, id: PackageId, size: u64) -> Result<LoadedStone<'static>> {
        let metadata = Self::metadata(path, &open(path)?)?;
        Ok(LoadedStone::from_metadata(
            path.to_owned(),
            id,
            size,
            metadata,
        ))
    }

    /// Whether this is a stone given on the command line, copied for the cache: one that
    /// costs nothing to copy again, unlike a download.
    pub fn is_copy(&self) -> bool {
        self.copy.is_some()
    }

    /// Puts the copies of `stones` in `store`'s cache, where commits and lazy unpacking
    /// find them: all at once, so that their syncs are batched ([`Store::keep_stones`]).
    ///
    /// A delta's assets are rebuilt first, from the copy: one that cannot finish here is
    /// refused before anything is cached or its state is recorded (this runs inside the
    /// recording transaction), and what it placed are verified assets, garbage for gc at
    /// worst. The commit then finds every asset present.
    pub fn keep_all(store: &Store, stones: &mut [LoadedStone<'_>]) -> Result<()> {
        use rayon::prelude::*;
        stones.par_iter().try_for_each(|stone| -> Result<()> {
            if let (Some(copy), Some((store, old))) = (&stone.copy, &stone.delta) {
                store.apply_delta(&copy.path(), old)?;
            }
            Ok(())
        })?;
        let copies: Vec<PendingStone<'_>> =
            stones.iter_mut().filter_map(|s| s.copy.take()).collect();
        store.keep_stones(copies)?;
        Ok(())
    }

    /// Reads `source` (a stone, or the head of one) from its start.
    fn metadata(path: &Path, source: impl std::io::Read) -> Result<Metadata> {
        let stone_error = |source| EngineError::Stone {
            path: path.to_owned(),
            source,
        };
        let mut reader = Reader::new(BufReader::new(source)).map_err(stone_error)?;
        let stone = reader.read_metadata().map_err(stone_error)?;
        stone.check_structure().map_err(stone_error)?;
        let meta = stone.typed_meta().map_err(|source| EngineError::Meta {
            path: path.to_owned(),
            source,
        })?;
        let delta = reader
            .deltas(&stone)
            .map_err(stone_error)?
            .map(|deltas| deltas.preamble());
        Ok(Metadata {
            meta,
            delta,
            layout: stone.layout,
            index: stone.index,
        })
    }

    /// What the solver sees of it.
    pub fn candidate(&self) -> Candidate {
        Candidate {
            id: self.id,
            meta: Arc::new(self.meta.clone()),
            origin: Origin::Local,
        }
    }

    /// The database record for it.
    pub fn record(&self) -> PackageRecord {
        PackageRecord {
            id: self.id,
            meta: self.meta.clone(),
            stone_size: self.size,
            unpacked: false,
        }
    }
}

/// The packages of a state, as a solve starts from them.
pub fn installed(q: &impl Query, selections: &[Selection]) -> Result<Vec<Installed>> {
    selections
        .iter()
        .map(|s| {
            let record = q
                .package(&s.package)?
                .ok_or(mossfs_db::DbError::NoPackage(s.package))?;
            Ok(Installed {
                candidate: Candidate {
                    id: s.package,
                    meta: Arc::new(record.meta),
                    origin: Origin::Installed,
                },
                explicit: s.explicit,
                reason: s.reason.clone(),
            })
        })
        .collect()
}

/// The next state's package set, and what changed to get there.
pub struct Plan {
    /// Every package of the new state, by name, with why it is there.
    pub packages: Solution,
    /// What changes, package by package, relative to the state the plan started from.
    pub changes: Vec<Change>,
    /// For people, in one line: "install nano-1-1", "remove vim" (see [`summarize`]).
    pub summary: String,
}

impl Plan {
    /// The plan that takes `installed` to `packages`. A package asked for again as it is
    /// (`reinstalled`) is a change too, so that the state says what was asked.
    fn new(installed: &[Installed], packages: Solution, reinstalled: &HashSet<PackageId>) -> Plan {
        let before: HashMap<&str, &Candidate> = installed
            .iter()
            .map(|p| (p.candidate.meta.name.as_str(), &p.candidate))
            .collect();
        let mut changes = Vec::new();
        for (name, chosen) in &packages {
            let after = &chosen.candidate;
            let (verb, from) = match before.get(name.as_str()) {
                None => (Verb::Install, None),
                Some(old) if old.id == after.id && !reinstalled.contains(&after.id) => continue,
                Some(old) if old.id == after.id => (Verb::Reinstall, Some(&old.meta)),
                Some(old) => {
                    // Another build of equal release replaces the old one: an upgrade,
                    // as installing a newer stone of the same release always was.
                    let rank = |m: &Meta| (m.release, m.build_release);
                    if rank(&after.meta) < rank(&old.meta) {
                        (Verb::Downgrade, Some(&old.meta))
                    } else {
                        (Verb::Upgrade, Some(&old.meta))
                    }
                }
            };
            changes.push(Change {
                verb,
                name: name.clone(),
                from: from.map(|m| version_of(m)),
                to: Some(version_of(&after.meta)),
            });
        }
        for p in installed {
            if !packages.contains_key(&p.candidate.meta.name) {
                changes.push(Change {
                    verb: Verb::Remove,
                    name: p.candidate.meta.name.clone(),
                    from: Some(version_of(&p.candidate.meta)),
                    to: None,
                });
            }
        }
        changes.sort_by(|a, b| a.name.cmp(&b.name));
        let summary = summarize(&changes);
        Plan {
            packages,
            changes,
            summary,
        }
    }

    /// Installs `stones` and whatever `requests` name (`nano`, `binary(nano)`), with
    /// what they need, on top of `installed`, which all stay (DESIGN.md §9: an installed
    /// package changes only when the request needs it to). `sources` are what else the
    /// solver may choose from: a repository's available packages.
    pub fn install(
        installed: &[Installed],
        stones: &[LoadedStone],
        requests: &[Request],
        sources: &[&dyn Source],
    ) -> Result<Plan> {
        let mut seen = HashSet::new();
        for stone in stones {
            if !seen.insert(stone.meta.name.as_str()) {
                return Err(EngineError::DuplicateName {
                    name: stone.meta.name.clone(),
                });
            }
        }
        let mut local = solve::Packages::new();
        let mut all: Vec<Request> = Vec::new();
        for stone in stones {
            local.add(stone.candidate());
            let words = stone.path.file_name().map_or_else(
                || stone.path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            all.push(Request {
                want: Want::Package(stone.candidate()),
                words,
            });
        }
        all.extend(requests.iter().cloned());
        let mut everywhere: Vec<&dyn Source> = vec![&local];
        everywhere.extend(sources.iter().copied());
        let forbidden = HashSet::new();
        let asked = format!(
            "install {}",
            all.iter()
                .map(|r| r.words.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let packages = solve::solve(&Problem {
            asked: &asked,
            installed,
            requests: &all,
            forbidden: &forbidden,
            keep: Keep::All,
            policy: Policy::KeepInstalled,
            sources: &everywhere,
        })?;
        let reinstalled: HashSet<PackageId> = stones
            .iter()
            .map(|stone| stone.id)
            .filter(|id| installed.iter().any(|p| p.candidate.id == *id))
            .collect();
        Ok(Plan::new(installed, packages, &reinstalled))
    }

    /// Removes the packages `names` and `dependents` (those that need them, which the
    /// caller has shown and had confirmed), and the packages pulled in that nothing needs
    /// any more (orphans). Nothing new is chosen: the solve sees only `installed`.
    pub fn remove(
        installed: &[Installed],
        names: &[String],
        dependents: &[String],
    ) -> Result<Plan> {
        for name in names {
            if !installed.iter().any(|p| &p.candidate.meta.name == name) {
                return Err(EngineError::NotInstalled { name: name.clone() });
            }
        }
        let forbidden: HashSet<String> = names.iter().chain(dependents).cloned().collect();
        let asked = format!("remove {}", names.join(" "));
        let packages = solve::solve(&Problem {
            asked: &asked,
            installed,
            requests: &[],
            forbidden: &forbidden,
            keep: Keep::Explicit,
            policy: Policy::KeepInstalled,
            sources: &[],
        })?;
        Ok(Plan::new(installed, packages, &HashSet::new()))
    }

    /// Moves every installed package to its best candidate among `sources` and drops the
    /// orphans (DESIGN.md §9, `sync`): repositories by priority come before what is
    /// installed, so a package also moves *back* when its repository is removed or loses
    /// priority; one no source offers any more stays as it is.
    pub fn sync(installed: &[Installed], sources: &[&dyn Source]) -> Result<Plan> {
        let forbidden = HashSet::new();
        let packages = solve::solve(&Problem {
            asked: "sync",
            installed,
            requests: &[],
            forbidden: &forbidden,
            keep: Keep::Explicit,
            policy: Policy::Best,
            sources,
        })?;
        Ok(Plan::new(installed, packages, &HashSet::new()))
    }

    /// The selections of the new state, sorted by package id, and the package order for
    /// the tree build (by name, so the same set always builds the same tree).
    pub fn selections(&self) -> (Vec<Selection>, Vec<PackageId>) {
        let order: Vec<PackageId> = self.packages.values().map(|c| c.candidate.id).collect();
        let mut selections: Vec<Selection> = self
            .packages
            .values()
            .map(|c| Selection {
                package: c.candidate.id,
                explicit: c.explicit,
                reason: c.reason.clone(),
            })
            .collect();
        selections.sort();
        (selections, order)
    }
}
