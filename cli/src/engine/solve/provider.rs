//! The adapter between mossfs's packages and resolvo: its `Interner` (ids for names,
//! packages and "version sets", and how to show each to people) and its
//! `DependencyProvider` (candidates of a name, their order, their dependencies).
//!
//! The mapping:
//! - a resolvo *name* is a package name, so resolvo's own rule of one candidate per name is
//!   mossfs's one package per name. A relation nobody provides gets a name of its own with
//!   no candidates, so resolvo reports it as "no candidates were found for soname(...)".
//! - a *version set* is a [`Matcher`] over the candidates of one name. A dependency is
//!   the union, over every package name with a provider, of "packages of this name that
//!   provide it": any provider satisfies it, whatever its name.
//! - a declared conflict is a *constraint* per other name: "if a package of this name is
//!   chosen, it does not provide the conflicting relation". A package's conflict with
//!   its own name is moot (one package per name), so it is skipped.
//!
//! Candidates are fetched lazily, per relation, from the [`Source`]s, so a solve over a
//! repository of tens of thousands of packages only reads what the request reaches.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::{self, Display};

use mossfs_format::{PackageId, Relation};
use resolvo::utils::{Pool, VersionSet};
use resolvo::{
    Candidates, Condition, ConditionId, ConditionalRequirement, Dependencies, DependencyProvider,
    HintDependenciesAvailable, Interner, KnownDependencies, NameId, Requirement, SolvableId,
    Solver, SolverCache, StringId, UnsolvableOrCancelled, VersionSetId, VersionSetUnionId,
};

use super::order::{self, Policy};
use super::{Candidate, Keep, Origin, Problem, Source, Want};
use crate::engine::error::{EngineError, Result};

/// A resolvo name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// A package name.
    Package(String),
    /// A relation no source provides.
    Missing(Relation),
}

/// Which candidates of one name a version set holds. Relations are numbered in
/// [`Provider::relations`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Matcher {
    /// Those that provide the relation.
    Provides(u32),
    /// Those that do not: a declared conflict with it.
    Excludes(u32),
    /// Exactly this one: a stone given on the command line.
    Exactly(SolvableId),
    /// Any: an installed package kept by name.
    Any,
    /// None: a package being removed.
    Nothing,
}

/// A candidate's place in [`Provider::candidates`].
#[derive(Debug, Clone, Copy)]
struct Slot(u32);

impl Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

impl VersionSet for Matcher {
    type V = Slot;
}

/// The state of one solve: everything interned so far, and the first source error.
struct Provider<'a> {
    pool: Pool<Matcher, Key>,
    policy: Policy,
    sources: &'a [&'a dyn Source],
    candidates: RefCell<Vec<Candidate>>,
    by_id: RefCell<HashMap<PackageId, SolvableId>>,
    relations: RefCell<Vec<Relation>>,
    relation_ids: RefCell<HashMap<Relation, u32>>,
    providers: RefCell<HashMap<u32, Vec<SolvableId>>>,
    /// A source failed: the solve is cancelled and this is the error.
    error: RefCell<Option<EngineError>>,
}

impl<'a> Provider<'a> {
    fn new(sources: &'a [&'a dyn Source], policy: Policy) -> Self {
        Provider {
            pool: Pool::new(),
            policy,
            sources,
            candidates: RefCell::default(),
            by_id: RefCell::default(),
            relations: RefCell::default(),
            relation_ids: RefCell::default(),
            providers: RefCell::default(),
            error: RefCell::default(),
        }
    }

    fn slot(&self, s: SolvableId) -> usize {
        self.pool.resolve_solvable(s).record.0 as usize
    }

    /// A copy of the candidate behind `s` (its metadata is shared, not copied).
    fn candidate(&self, s: SolvableId) -> Candidate {
        self.candidates.borrow()[self.slot(s)].clone()
    }

    /// The solvable of `candidate`, interned once per package id. A package two sources
    /// know (installed, and offered by a repository) ranks by the better origin.
    fn intern(&self, candidate: Candidate) -> SolvableId {
        if let Some(&s) = self.by_id.borrow().get(&candidate.id) {
            let slot = self.slot(s);
            let mut all = self.candidates.borrow_mut();
            let old = std::mem::replace(&mut all[slot].origin, Origin::Local);
            all[slot].origin = order::better(old, candidate.origin, self.policy);
            return s;
        }
        let name = self
            .pool
            .intern_package_name(Key::Package(candidate.meta.name.clone()));
        let mut all = self.candidates.borrow_mut();
        let slot = Slot(u32::try_from(all.len()).expect("fewer than 2^32 candidates"));
        let id = candidate.id;
        all.push(candidate);
        drop(all);
        let s = self.pool.intern_solvable(name, slot);
        self.by_id.borrow_mut().insert(id, s);
        s
    }

    fn relation_id(&self, relation: &Relation) -> u32 {
        if let Some(&id) = self.relation_ids.borrow().get(relation) {
            return id;
        }
        let mut all = self.relations.borrow_mut();
        let id = u32::try_from(all.len()).expect("fewer than 2^32 relations");
        all.push(relation.clone());
        self.relation_ids.borrow_mut().insert(relation.clone(), id);
        id
    }

    fn relation(&self, id: u32) -> Relation {
        self.relations.borrow()[id as usize].clone()
    }

    /// Every package any source has that provides `relation`, best first.
    fn providers_of(&self, relation: &Relation) -> Vec<SolvableId> {
        let id = self.relation_id(relation);
        if let Some(found) = self.providers.borrow().get(&id) {
            return found.clone();
        }
        let mut found = Vec::new();
        for source in self.sources {
            match source.providers(relation) {
                Ok(candidates) => found.extend(candidates.into_iter().map(|c| self.intern(c))),
                Err(error) => {
                    self.error.borrow_mut().get_or_insert(error);
                }
            }
        }
        found.sort_unstable();
        found.dedup();
        self.sort(&mut found);
        self.providers.borrow_mut().insert(id, found.clone());
        found
    }

    fn sort(&self, solvables: &mut [SolvableId]) {
        let all = self.candidates.borrow();
        solvables
            .sort_by(|&a, &b| order::compare(&all[self.slot(a)], &all[self.slot(b)], self.policy));
    }

    /// A dependency: any package that provides `relation`, whatever its name.
    fn requirement(&self, relation: &Relation) -> Requirement {
        let providers = self.providers_of(relation);
        let mut names: Vec<NameId> = Vec::new();
        for s in &providers {
            let name = self.pool.resolve_solvable(*s).name;
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let r = self.relation_id(relation);
        let mut sets = names
            .into_iter()
            .map(|name| self.pool.intern_version_set(name, Matcher::Provides(r)));
        match (sets.next(), sets.next()) {
            (None, _) => {
                let name = self
                    .pool
                    .intern_package_name(Key::Missing(relation.clone()));
                self.pool.intern_version_set(name, Matcher::Any).into()
            }
            (Some(one), None) => one.into(),
            (Some(first), Some(second)) => self
                .pool
                .intern_version_set_union(first, std::iter::once(second).chain(sets))
                .into(),
        }
    }

    fn matches(&self, matcher: Matcher, s: SolvableId) -> bool {
        match matcher {
            Matcher::Provides(r) | Matcher::Excludes(r) => {
                let provides = self.candidates.borrow()[self.slot(s)]
                    .provides(&self.relations.borrow()[r as usize]);
                provides == matches!(matcher, Matcher::Provides(_))
            }
            Matcher::Exactly(one) => s == one,
            Matcher::Any => true,
            Matcher::Nothing => false,
        }
    }

    fn package_name(&self, name: &str) -> NameId {
        self.pool.intern_package_name(Key::Package(name.to_owned()))
    }
}

/// How a package's origin reads in an explanation.
fn origin_text(origin: &Origin) -> String {
    match origin {
        Origin::Local => "given on the command line".to_owned(),
        Origin::Installed => "installed".to_owned(),
        Origin::Repository { id, .. } => format!("from repository {id}"),
    }
}

impl Interner for Provider<'_> {
    type NameId = NameId;
    type SolvableId = SolvableId;

    fn display_solvable(&self, solvable: SolvableId) -> impl Display + '_ {
        let c = self.candidate(solvable);
        format!(
            "{} {}-{} ({})",
            c.meta.name,
            c.meta.version,
            c.meta.release,
            origin_text(&c.origin)
        )
    }

    fn display_merged_solvables(&self, solvables: &[SolvableId]) -> impl Display + '_ {
        solvables
            .iter()
            .map(|&s| self.display_solvable(s).to_string())
            .collect::<Vec<_>>()
            .join(" | ")
    }

    fn display_name(&self, name: NameId) -> impl Display + '_ {
        match self.pool.resolve_package_name(name) {
            Key::Package(name) => name.clone(),
            Key::Missing(relation) => relation.to_string(),
        }
    }

    fn display_version_set(&self, version_set: VersionSetId) -> impl Display + '_ {
        let name = self.pool.resolve_version_set_package_name(version_set);
        let own = match self.pool.resolve_package_name(name) {
            Key::Package(name) => Some(Relation::name(name.clone())),
            Key::Missing(_) => None,
        };
        match *self.pool.resolve_version_set(version_set) {
            Matcher::Provides(r) if Some(self.relation(r)) == own => String::new(),
            Matcher::Provides(r) => format!("(provides {})", self.relation(r)),
            Matcher::Excludes(r) => format!("(declared conflict: {})", self.relation(r)),
            Matcher::Exactly(s) => {
                let c = self.candidate(s);
                format!(
                    "{}-{} ({})",
                    c.meta.version,
                    c.meta.release,
                    origin_text(&c.origin)
                )
            }
            Matcher::Any => String::new(),
            Matcher::Nothing => "(being removed)".to_owned(),
        }
    }

    fn display_string(&self, string_id: StringId) -> impl Display + '_ {
        self.pool.resolve_string(string_id)
    }

    fn version_set_name(&self, version_set: VersionSetId) -> NameId {
        self.pool.resolve_version_set_package_name(version_set)
    }

    fn solvable_name(&self, solvable: SolvableId) -> NameId {
        self.pool.resolve_solvable(solvable).name
    }

    fn version_sets_in_union(
        &self,
        version_set_union: VersionSetUnionId,
    ) -> impl Iterator<Item = VersionSetId> {
        self.pool.resolve_version_set_union(version_set_union)
    }

    fn resolve_condition(&self, condition: ConditionId) -> Condition {
        self.pool.resolve_condition(condition).clone()
    }
}

impl DependencyProvider for Provider<'_> {
    async fn filter_candidates(
        &self,
        candidates: &[SolvableId],
        version_set: VersionSetId,
        inverse: bool,
    ) -> Vec<SolvableId> {
        let matcher = *self.pool.resolve_version_set(version_set);
        candidates
            .iter()
            .copied()
            .filter(|&s| self.matches(matcher, s) != inverse)
            .collect()
    }

    async fn get_candidates(&self, name: NameId) -> Option<Candidates> {
        let Key::Package(text) = self.pool.resolve_package_name(name) else {
            return None;
        };
        let candidates: Vec<SolvableId> = self
            .providers_of(&Relation::name(text.clone()))
            .into_iter()
            .filter(|&s| self.pool.resolve_solvable(s).name == name)
            .collect();
        let favored = match self.policy {
            Policy::KeepInstalled => candidates
                .iter()
                .copied()
                .find(|&s| self.candidates.borrow()[self.slot(s)].origin == Origin::Installed),
            Policy::Best => None,
        };
        Some(Candidates {
            candidates,
            favored,
            hint_dependencies_available: HintDependenciesAvailable::All,
            ..Candidates::default()
        })
    }

    async fn sort_candidates(&self, _: &SolverCache<Self>, solvables: &mut [SolvableId]) {
        self.sort(solvables);
    }

    async fn get_dependencies(&self, solvable: SolvableId) -> Dependencies {
        let c = self.candidate(solvable);
        let requirements = c
            .meta
            .depends
            .iter()
            .map(|d| ConditionalRequirement::from(self.requirement(d)))
            .collect();
        let own = self.pool.resolve_solvable(solvable).name;
        let mut constrains = Vec::new();
        for relation in &c.meta.conflicts {
            let r = self.relation_id(relation);
            for s in self.providers_of(relation) {
                let name = self.pool.resolve_solvable(s).name;
                let set = self.pool.intern_version_set(name, Matcher::Excludes(r));
                if name != own && !constrains.contains(&set) {
                    constrains.push(set);
                }
            }
        }
        Dependencies::Known(KnownDependencies {
            requirements,
            constrains,
        })
    }

    fn should_cancel_with_value(&self) -> Option<Box<dyn std::any::Any>> {
        self.error
            .borrow()
            .is_some()
            .then(|| Box::new(()) as Box<dyn std::any::Any>)
    }
}

/// Runs resolvo on `problem` over `sources`: the chosen packages, in no particular order.
pub fn run(problem: &Problem, sources: &[&dyn Source]) -> Result<Vec<Candidate>> {
    let provider = Provider::new(sources, problem.policy);
    let mut requirements: Vec<ConditionalRequirement> = Vec::new();
    for request in problem.requests {
        let requirement = match &request.want {
            Want::Package(candidate) => {
                let s = provider.intern(candidate.clone());
                let name = provider.pool.resolve_solvable(s).name;
                provider
                    .pool
                    .intern_version_set(name, Matcher::Exactly(s))
                    .into()
            }
            Want::Provider(relation) => provider.requirement(relation),
        };
        requirements.push(requirement.into());
    }
    for package in problem.installed {
        let name = &package.candidate.meta.name;
        let kept = problem.keep == Keep::All || package.explicit;
        if kept && !problem.forbidden.contains(name) {
            let name = provider.package_name(name);
            requirements.push(provider.pool.intern_version_set(name, Matcher::Any).into());
        }
    }
    let mut names: Vec<&String> = problem.forbidden.iter().collect();
    names.sort();
    let constraints = names
        .into_iter()
        .map(|name| {
            let name = provider.package_name(name);
            provider.pool.intern_version_set(name, Matcher::Nothing)
        })
        .collect();
    let mut solver = Solver::new(provider);
    let outcome = solver.solve(
        resolvo::Problem::new()
            .requirements(requirements)
            .constraints(constraints),
    );
    if let Some(error) = solver.provider().error.borrow_mut().take() {
        return Err(error);
    }
    match outcome {
        Ok(chosen) => Ok(chosen
            .into_iter()
            .map(|s| solver.provider().candidate(s))
            .collect()),
        Err(UnsolvableOrCancelled::Unsolvable(conflict)) => {
            let explanation = conflict.display_user_friendly(&solver).to_string();
            Err(EngineError::Unsolvable {
                asked: problem.asked.to_owned(),
                explanation: explanation.trim_end().to_owned(),
            })
        }
        Err(UnsolvableOrCancelled::Cancelled(_)) => Err(EngineError::SolveCancelled),
    }
}
