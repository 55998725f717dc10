//! Planning: from what was asked to the package set of the next state, without side
//! effects (STYLE.md "plan, then act"). Refusals for missing dependencies and declared
//! conflicts come from here, before anything is written.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use mossfs_db::{PackageRecord, Query, Selection};
use mossfs_format::{IndexEntry, LayoutEntry, Meta, PackageId, Reader, Relation};
use mossfs_store::{PendingStone, Store};

use super::change::{Change, Verb, summarize, version_of};
use super::error::{EngineError, Result};

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
    /// The copy, until [`LoadedStone::keep`] caches it; dropped, it vanishes.
    copy: Option<PendingStone<'s>>,
}

/// The stone's metadata, checked: what [`LoadedStone`] keeps of it.
struct Metadata {
    meta: Meta,
    layout: Vec<LayoutEntry>,
    index: Vec<IndexEntry>,
}

impl<'s> LoadedStone<'s> {
    /// Reads the stone's meta, layout and index payloads in place and checks them, without
    /// writing anything: the early refusal of a bad stone, before a root is touched.
    pub fn check(path: &Path) -> Result<()> {
        let file = File::open(path).map_err(|source| EngineError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::metadata(path, &file).map(drop)
    }

    /// Reads the stone's metadata and hashes it, writing nothing: what a dry run shows.
    /// It has no copy, so [`LoadedStone::keep`] does nothing with it.
    pub fn inspect(path: &Path) -> Result<LoadedStone<'static>> {
        let file = File::open(path).map_err(|source| EngineError::Io {
            path: path.to_owned(),
            source,
        })?;
        let Metadata {
            meta,
            layout,
            index,
        } = Self::metadata(path, &file)?;
        let (id, size) = mossfs_store::stone_id(path)?;
        Ok(LoadedStone {
            path: path.to_owned(),
            id,
            size,
            meta,
            layout,
            index,
            copy: None,
        })
    }

    /// Copies the stone next to `store`'s cache, hashing it on the way (one read), then
    /// reads the metadata from the copy.
    pub fn load(path: &Path, store: &'s Store) -> Result<LoadedStone<'s>> {
        let copy = store.copy_stone(path)?;
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
        } = Self::metadata(path, file)?;
        Ok(LoadedStone {
            path: path.to_owned(),
            id: copy.id,
            size: copy.size,
            meta,
            layout,
            index,
            copy: Some(copy),
        })
    }

    /// Puts the copy in the cache, where commits and lazy unpacking find it.
    pub fn keep(&mut self) -> Result<()> {
        if let Some(copy) = self.copy.take() {
            copy.keep()?;
        }
        Ok(())
    }

    fn metadata(path: &Path, file: &File) -> Result<Metadata> {
        let stone_error = |source| EngineError::Stone {
            path: path.to_owned(),
            source,
        };
        let mut reader = Reader::new(BufReader::new(file)).map_err(stone_error)?;
        let stone = reader.read_metadata().map_err(stone_error)?;
        stone.check_structure().map_err(stone_error)?;
        let meta = stone.typed_meta().map_err(|source| EngineError::Meta {
            path: path.to_owned(),
            source,
        })?;
        Ok(Metadata {
            meta,
            layout: stone.layout,
            index: stone.index,
        })
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

/// The next state's package set, and what changed to get there.
pub struct Plan {
    /// Every package of the new state, by name.
    pub packages: BTreeMap<String, (PackageId, Meta, bool)>,
    /// What changes, package by package, relative to the state the plan started from.
    pub changes: Vec<Change>,
    /// For people, in one line: "install nano-1-1", "remove vim" (see [`summarize`]).
    pub summary: String,
}

impl Plan {
    /// Starts from nothing: a root with no state.
    pub fn empty() -> Plan {
        Plan {
            packages: BTreeMap::new(),
            changes: Vec::new(),
            summary: String::new(),
        }
    }

    /// Starts from the packages of a state.
    pub fn from_selections(q: &impl Query, selections: &[Selection]) -> Result<Plan> {
        let mut packages = BTreeMap::new();
        for s in selections {
            let record = q
                .package(&s.package)?
                .ok_or(mossfs_db::DbError::NoPackage(s.package))?;
            packages.insert(
                record.meta.name.clone(),
                (s.package, record.meta, s.explicit),
            );
        }
        Ok(Plan {
            packages,
            changes: Vec::new(),
            summary: String::new(),
        })
    }

    /// Adds stones; a stone whose name is installed replaces it (an upgrade).
    pub fn install(&mut self, stones: &[LoadedStone]) -> Result<()> {
        let mut seen = HashMap::new();
        for stone in stones {
            if seen.insert(stone.meta.name.clone(), ()).is_some() {
                return Err(EngineError::DuplicateName {
                    name: stone.meta.name.clone(),
                });
            }
            let (verb, from) = match self.packages.get(&stone.meta.name) {
                Some((id, old, _)) if *id == stone.id => (Verb::Reinstall, Some(version_of(old))),
                Some((_, old, _)) => (Verb::Upgrade, Some(version_of(old))),
                None => (Verb::Install, None),
            };
            self.changes.push(Change {
                verb,
                name: stone.meta.name.clone(),
                from,
                to: Some(version_of(&stone.meta)),
            });
            self.packages.insert(
                stone.meta.name.clone(),
                (stone.id, stone.meta.clone(), true),
            );
        }
        self.summary = summarize(&self.changes);
        Ok(())
    }

    /// Removes packages by name; each must be present.
    pub fn remove(&mut self, names: &[String]) -> Result<Vec<Meta>> {
        let mut removed = Vec::new();
        for name in names {
            let (_, meta, _) = self
                .packages
                .remove(name)
                .ok_or_else(|| EngineError::NotInstalled { name: name.clone() })?;
            self.changes.push(Change {
                verb: Verb::Remove,
                name: name.clone(),
                from: Some(version_of(&meta)),
                to: None,
            });
            removed.push(meta);
        }
        self.summary = summarize(&self.changes);
        Ok(removed)
    }

    /// Checks dependencies and declared conflicts within the new set. `removed` names
    /// packages just taken out, so a broken dependency can say who broke it.
    pub fn check(&self, removed: &[Meta]) -> Result<()> {
        let mut provided: HashMap<Relation, Vec<&str>> = HashMap::new();
        for (name, (_, meta, _)) in &self.packages {
            for relation in meta.all_provides() {
                provided.entry(relation).or_default().push(name);
            }
        }
        for (name, (_, meta, _)) in &self.packages {
            for relation in &meta.depends {
                if provided.contains_key(relation) {
                    continue;
                }
                let culprit = removed
                    .iter()
                    .find(|m| m.all_provides().any(|p| &p == relation));
                return Err(match culprit {
                    Some(gone) => EngineError::NeededBy {
                        removed: gone.name.clone(),
                        package: name.clone(),
                        relation: relation.to_string(),
                    },
                    None => EngineError::MissingDependency {
                        package: name.clone(),
                        relation: relation.to_string(),
                    },
                });
            }
            for relation in &meta.conflicts {
                if let Some(others) = provided.get(relation)
                    && let Some(other) = others.iter().find(|o| **o != name.as_str())
                {
                    return Err(EngineError::DeclaredConflict {
                        package: name.clone(),
                        other: (*other).to_owned(),
                        relation: relation.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The selections of the new state, sorted by package id, and the package order for
    /// the tree build (by name, so the same set always builds the same tree).
    pub fn selections(&self) -> (Vec<Selection>, Vec<PackageId>) {
        let order: Vec<PackageId> = self.packages.values().map(|(id, _, _)| *id).collect();
        let mut selections: Vec<Selection> = self
            .packages
            .values()
            .map(|(id, _, explicit)| Selection {
                package: *id,
                explicit: *explicit,
            })
            .collect();
        selections.sort();
        (selections, order)
    }
}
