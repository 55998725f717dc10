//! Resolution: every state change is one solve over installed, local and available
//! packages (DESIGN.md §9), done by `resolvo`, the CDCL solver of pixi and rattler.
//!
//! The roles, as in rattler's `rattler_solve`:
//! - a [`Source`] answers one question, "which packages provide this relation?", with
//!   [`Candidate`]s. [`Packages`] is the in-memory one, for the installed packages and the
//!   stones given on the command line; a repository client adds its own over its tables
//!   of available packages. The solver never does I/O other than through a source.
//! - [`provider`] maps packages, providers and conflicts onto resolvo's
//!   `DependencyProvider` and `Interner`: a package name is a resolvo name (so one package
//!   per name), a dependency is a union of "packages named N that provide it" over every
//!   name with a provider, and a declared conflict is a constraint that the other names
//!   may only be chosen in a version that does not provide the conflicting relation.
//! - [`order`] keeps the candidate order upstream uses: local stones and installed
//!   packages first, then repositories by priority, then source and build release.
//!
//! [`solve`] takes a [`Problem`] (what is installed, what is asked, what must go, and
//! how much may change) and gives the package set of the next state with, for each
//! package, whether it was asked for and why it is there ([`Reason`]). An impossible
//! request gives [`EngineError::Unsolvable`], with resolvo's explanation of the chain of
//! requirements and the conflict that blocks it.

mod order;
mod provider;
mod repositories;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use mossfs_db::Reason;
use mossfs_format::{Meta, PackageId, Relation, RelationKind};

use super::error::Result;

pub use order::Policy;
pub use repositories::Repositories;

/// Where a candidate comes from, which decides its place in the candidate order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A stone given on the command line.
    Local,
    /// A package of the live state.
    Installed,
    /// A package an enabled repository offers.
    Repository {
        /// The repository's id, which breaks ties between equal priorities.
        id: String,
        /// Its priority: higher wins, and priority beats release.
        priority: u64,
    },
}

/// One package the solver may choose.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The package (the sha256 of its stone).
    pub id: PackageId,
    /// Its metadata: name, releases, depends, provides, conflicts.
    pub meta: Arc<Meta>,
    /// Where it comes from.
    pub origin: Origin,
}

impl Candidate {
    /// Whether it provides `relation`; every package provides `name(<its name>)`.
    pub fn provides(&self, relation: &Relation) -> bool {
        (relation.kind == RelationKind::Name && relation.target == self.meta.name)
            || self.meta.provides.contains(relation)
    }
}

/// Something that knows packages: the installed ones, the stones on the command line, a
/// repository's available ones.
pub trait Source {
    /// Every package this source has that provides `relation`, including, for
    /// `name(N)`, every package named N.
    fn providers(&self, relation: &Relation) -> Result<Vec<Candidate>>;
}

/// A source held in memory, indexed by what each package provides.
#[derive(Default)]
pub struct Packages {
    candidates: Vec<Candidate>,
    ids: HashSet<PackageId>,
    by_relation: HashMap<Relation, Vec<usize>>,
}

impl Packages {
    /// An empty set.
    pub fn new() -> Packages {
        Packages::default()
    }

    /// Adds a package; one already held (same id) is not added twice.
    pub fn add(&mut self, candidate: Candidate) {
        if !self.ids.insert(candidate.id) {
            return;
        }
        let at = self.candidates.len();
        for relation in candidate.meta.all_provides() {
            self.by_relation.entry(relation).or_default().push(at);
        }
        self.candidates.push(candidate);
    }
}

impl Source for Packages {
    fn providers(&self, relation: &Relation) -> Result<Vec<Candidate>> {
        Ok(self
            .by_relation
            .get(relation)
            .map(|at| at.iter().map(|&i| self.candidates[i].clone()).collect())
            .unwrap_or_default())
    }
}

/// A package of the live state, as the next solve starts from it.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The package.
    pub candidate: Candidate,
    /// Asked for, or pulled in.
    pub explicit: bool,
    /// Why it is there now.
    pub reason: Reason,
}

/// What one request asks for.
#[derive(Debug, Clone)]
pub enum Want {
    /// This very package: a stone given on the command line.
    Package(Candidate),
    /// Any package that provides this: `nano`, `binary(nano)`, `soname(libz.so.1)`.
    Provider(Relation),
}

/// One thing the user asked for.
#[derive(Debug, Clone)]
pub struct Request {
    /// What it asks for.
    pub want: Want,
    /// The words the user gave, recorded as the reason of the package chosen for it.
    pub words: String,
}

/// Which installed packages the new state must keep by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Every one (an `install`: it never removes anything; an installed package changes
    /// only when the request needs it to).
    All,
    /// Only the explicit ones: a package pulled in that nothing needs any more is an
    /// orphan and goes (`remove`, `sync`).
    Explicit,
}

/// One solve.
pub struct Problem<'a> {
    /// What the change is, for an error: `install needy.stone`, `remove libfoo`.
    pub asked: &'a str,
    /// The packages of the live state.
    pub installed: &'a [Installed],
    /// What the user asked for.
    pub requests: &'a [Request],
    /// Package names that must not be in the new state (`remove`).
    pub forbidden: &'a HashSet<String>,
    /// What to keep of the installed packages.
    pub keep: Keep,
    /// How candidates of one name are ordered.
    pub policy: Policy,
    /// Everything the solver may choose from, besides the installed packages.
    pub sources: &'a [&'a dyn Source],
}

/// One package of a solution.
#[derive(Debug, Clone)]
pub struct Chosen {
    /// The package.
    pub candidate: Candidate,
    /// Asked for (now or earlier), as opposed to pulled in.
    pub explicit: bool,
    /// Why it is there.
    pub reason: Reason,
}

/// The package set of the next state, by name.
pub type Solution = BTreeMap<String, Chosen>;

/// Solves `problem`: the packages of the next state, or why there are none.
pub fn solve(problem: &Problem) -> Result<Solution> {
    let mut installed = Packages::new();
    for package in problem.installed {
        installed.add(package.candidate.clone());
    }
    let mut sources: Vec<&dyn Source> = vec![&installed];
    sources.extend(problem.sources.iter().copied());
    let chosen = provider::run(problem, &sources)?;
    Ok(explain_choices(problem, chosen))
}

/// Marks what was asked for, and gives every other package the first package (by name)
/// that needs it and the relation it needs.
fn explain_choices(problem: &Problem, chosen: Vec<Candidate>) -> Solution {
    let by_name: BTreeMap<&str, &Candidate> =
        chosen.iter().map(|c| (c.meta.name.as_str(), c)).collect();
    let mut reasons: HashMap<&str, (bool, Reason)> = HashMap::new();
    for request in problem.requests {
        let pick = match &request.want {
            Want::Package(wanted) => chosen.iter().find(|c| c.id == wanted.id),
            Want::Provider(relation) => match relation.kind {
                RelationKind::Name => by_name.get(relation.target.as_str()).copied(),
                _ => None,
            }
            .or_else(|| chosen.iter().find(|c| c.provides(relation))),
        };
        if let Some(c) = pick {
            reasons.insert(
                &c.meta.name,
                (true, Reason::Requested(request.words.clone())),
            );
        }
    }
    for old in problem.installed.iter().filter(|p| p.explicit) {
        if let Some(c) = by_name.get(old.candidate.meta.name.as_str()) {
            reasons
                .entry(&c.meta.name)
                .or_insert_with(|| (true, old.reason.clone()));
        }
    }
    // Who needs each relation, in name order: one pass over every dependency, so that
    // finding each package's first user is a few lookups, not a scan of every package
    // (quadratic, and most of a 2,000-package sync's time).
    let mut needed_by: HashMap<&Relation, Vec<&str>> = HashMap::new();
    for (by, user) in &by_name {
        for relation in &user.meta.depends {
            needed_by.entry(relation).or_default().push(by);
        }
    }
    for (name, candidate) in &by_name {
        if reasons.contains_key(name) {
            continue;
        }
        let own = Relation::name(*name);
        let first_user = std::iter::once(&own)
            .chain(&candidate.meta.provides)
            .filter_map(|relation| {
                needed_by
                    .get(relation)?
                    .iter()
                    .copied()
                    .find(|by| by != name)
            })
            .min();
        // That user's first dependency the candidate provides, as a scan would find it.
        let needed = first_user.and_then(|by| {
            let user = by_name.get(by)?;
            let relation = user.meta.depends.iter().find(|d| candidate.provides(d))?;
            Some(Reason::Needed {
                by: by.to_owned(),
                relation: relation.to_string(),
            })
        });
        reasons.insert(name, (false, needed.unwrap_or(Reason::Unneeded)));
    }
    chosen
        .iter()
        .map(|c| {
            let (explicit, reason) = reasons
                .remove(c.meta.name.as_str())
                .expect("every chosen package was given a reason above");
            (
                c.meta.name.clone(),
                Chosen {
                    candidate: c.clone(),
                    explicit,
                    reason,
                },
            )
        })
        .collect()
}

/// The installed packages that removing `names` takes with it: each needs, through its
/// dependencies, something only the removed packages provided. With the relation that
/// breaks, for people: `(package, relation, removed package)`.
pub fn dependents(
    installed: &[Installed],
    names: &HashSet<String>,
) -> Vec<(String, String, String)> {
    let mut gone: Vec<&Candidate> = installed
        .iter()
        .map(|p| &p.candidate)
        .filter(|c| names.contains(&c.meta.name))
        .collect();
    let mut left: Vec<&Candidate> = installed
        .iter()
        .map(|p| &p.candidate)
        .filter(|c| !names.contains(&c.meta.name))
        .collect();
    let mut out = Vec::new();
    loop {
        let broken = left.iter().enumerate().find_map(|(at, c)| {
            c.meta.depends.iter().find_map(|d| {
                let from = gone.iter().find(|g| g.provides(d))?;
                let still = left.iter().any(|o| o.provides(d));
                (!still).then(|| (at, d.to_string(), from.meta.name.clone()))
            })
        });
        let Some((at, relation, from)) = broken else {
            break;
        };
        let c = left.remove(at);
        out.push((c.meta.name.clone(), relation, from));
        gone.push(c);
    }
    out
}

#[cfg(test)]
mod tests;
