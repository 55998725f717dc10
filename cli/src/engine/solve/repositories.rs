//! The packages the enabled repositories offer, as a source for the solver (DESIGN.md §8,
//! §9): each question is one lookup in the `available` tables, by name or by provider, so
//! a solve reads only the candidates it asks about, never the whole offer.

use std::sync::Arc;

use mossfs_db::{Available, AvailableQuery};
use mossfs_format::{PackageId, Relation, RelationKind};

use super::{Candidate, Origin, Source};
use crate::engine::error::Result;

/// The offer of every enabled repository, read through one database snapshot.
pub struct Repositories<'q, Q> {
    q: &'q Q,
}

impl<'q, Q: AvailableQuery> Repositories<'q, Q> {
    /// The offer as `q` sees it.
    pub fn new(q: &'q Q) -> Self {
        Repositories { q }
    }
}

impl<Q: AvailableQuery> Source for Repositories<'_, Q> {
    fn providers(&self, relation: &Relation) -> Result<Vec<Candidate>> {
        let mut found = if relation.kind == RelationKind::Name {
            self.q.available(&relation.target)?
        } else {
            Vec::new()
        };
        found.extend(self.q.available_providers(&relation.to_string())?);
        Ok(found.into_iter().filter_map(candidate).collect())
    }
}

/// A package a repository offers as a candidate, named by its stone's sha256 as every
/// package is; an entry without one cannot be fetched and checked, so it is no candidate.
fn candidate(item: Available) -> Option<Candidate> {
    let id = item
        .meta
        .hash
        .as_deref()
        .and_then(mossfs_repo::unhex)
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())?;
    Some(Candidate {
        id: PackageId(id),
        meta: Arc::new(item.meta),
        origin: Origin::Repository {
            id: item.repo,
            priority: item.priority,
        },
    })
}
