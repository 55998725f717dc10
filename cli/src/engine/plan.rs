//! Planning: from what was asked to the package set of the next state, without side
//! effects (STYLE.md "plan, then act"). Every change is one solve ([`super::solve`]), so
//! refusals for missing dependencies and declared conflicts come from here, before
//! anything is written.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mossfs_db::{PackageRecord, Query, Selection};
use mossfs_format::{IndexEntry, LayoutEntry, Meta, PackageId, Reader};
use mossfs_store::{PendingStone, Store};

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
        stone.check_assets().map_err(stone_error)?;
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

/// How one package changes from the live state to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// New in the state.
    Add,
    /// Gone from the state.
    Remove,
    /// Another package of the same name, with a higher (source, build) release.
    Upgrade,
    /// Another package of the same name, with a lower or equal release.
    Downgrade,
}

/// One line of a plan: a package that changes, before and after.
#[derive(Debug, Clone)]
pub struct Step {
    /// How it changes.
    pub change: Change,
    /// The package in the live state, if it is there.
    pub before: Option<Arc<Meta>>,
    /// The package in the next state, if it is there.
    pub after: Option<Arc<Meta>>,
}

impl Step {
    fn new(change: Change, before: Option<&Candidate>, after: Option<&Candidate>) -> Step {
        Step {
            change,
            before: before.map(|c| c.meta.clone()),
            after: after.map(|c| c.meta.clone()),
        }
    }
}

/// The next state's package set, and what changed to get there.
pub struct Plan {
    /// Every package of the new state, by name, with why it is there.
    pub packages: Solution,
    /// What changes, by name: the package before (if any) and after (if any).
    pub changes: Vec<Step>,
    /// For people: "install nano", "remove vim".
    pub summary: String,
}

impl Plan {
    fn new(installed: &[Installed], packages: Solution, summary: String) -> Plan {
        let before: HashMap<&str, &Candidate> = installed
            .iter()
            .map(|p| (p.candidate.meta.name.as_str(), &p.candidate))
            .collect();
        let mut changes = Vec::new();
        for (name, chosen) in &packages {
            let after = &chosen.candidate;
            match before.get(name.as_str()) {
                None => changes.push(Step::new(Change::Add, None, Some(after))),
                Some(old) if old.id == after.id => {}
                Some(old) => {
                    let rank = |m: &Meta| (m.release, m.build_release);
                    let change = if rank(&after.meta) > rank(&old.meta) {
                        Change::Upgrade
                    } else {
                        Change::Downgrade
                    };
                    changes.push(Step::new(change, Some(old), Some(after)));
                }
            }
        }
        for p in installed {
            if !packages.contains_key(&p.candidate.meta.name) {
                changes.push(Step::new(Change::Remove, Some(&p.candidate), None));
            }
        }
        let name = |step: &Step| {
            let meta = step.after.as_ref().or(step.before.as_ref());
            meta.map(|m| m.name.clone())
        };
        changes.sort_by_key(name);
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
        let before: HashMap<&str, PackageId> = installed
            .iter()
            .map(|p| (p.candidate.meta.name.as_str(), p.candidate.id))
            .collect();
        let mut words = Vec::new();
        for chosen in packages.values() {
            let asked = all.iter().any(|r| match &r.want {
                Want::Package(c) => c.id == chosen.candidate.id,
                Want::Provider(relation) => chosen.candidate.provides(relation),
            });
            if !asked {
                continue;
            }
            let verb = match before.get(chosen.candidate.meta.name.as_str()) {
                Some(id) if *id == chosen.candidate.id => "reinstall",
                Some(_) => "upgrade",
                None => "install",
            };
            words.push(format!("{verb} {}", chosen.candidate.meta.full_name()));
        }
        Ok(Plan::new(installed, packages, words.join(", ")))
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
        let mut summary = format!("remove {}", names.join(", "));
        let mut also: Vec<&str> = dependents.iter().map(String::as_str).collect();
        also.extend(
            installed
                .iter()
                .map(|p| p.candidate.meta.name.as_str())
                .filter(|n| !forbidden.contains(*n) && !packages.contains_key(*n)),
        );
        if !also.is_empty() {
            summary.push_str(&format!(" (and {})", also.join(", ")));
        }
        Ok(Plan::new(installed, packages, summary))
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
