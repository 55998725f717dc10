//! The candidate order (DESIGN.md §8): which of the packages of one name the solver tries
//! first. It tries them in this order and takes the first that leads to a solution, so
//! the order is what makes an `install` leave installed packages alone and a `sync`
//! move to the best available ones.

use std::cmp::Ordering;

use super::{Candidate, Origin};

/// How candidates of one name are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Local stones, then installed packages, then repositories: what an `install` or a
    /// `remove` does, so that an installed package stays as it is unless the request needs
    /// it to change.
    KeepInstalled,
    /// Local stones, then repositories, then installed packages that no repository offers
    /// any more: what a `sync` does, so that it moves every package to its best candidate,
    /// back down too when a repository is removed or its priority lowered.
    Best,
}

/// The tier of an origin under `policy`: lower is tried first.
fn tier(origin: &Origin, policy: Policy) -> u8 {
    match (origin, policy) {
        (Origin::Local, _) => 0,
        (Origin::Installed, Policy::KeepInstalled) => 1,
        (Origin::Repository { .. }, Policy::KeepInstalled) => 2,
        (Origin::Repository { .. }, Policy::Best) => 1,
        (Origin::Installed, Policy::Best) => 2,
    }
}

/// `Less` when `a` is to be tried before `b`: by tier, then repository priority (higher
/// first; equal priorities by repository id), then source release and build release
/// (higher first). The package id breaks the last tie, so the order never depends on
/// the order sources answered in.
pub fn compare(a: &Candidate, b: &Candidate, policy: Policy) -> Ordering {
    let priority = |c: &Candidate| match &c.origin {
        Origin::Repository { priority, .. } => *priority,
        _ => 0,
    };
    let repo = |c: &Candidate| match &c.origin {
        Origin::Repository { id, .. } => Some(id.clone()),
        _ => None,
    };
    tier(&a.origin, policy)
        .cmp(&tier(&b.origin, policy))
        .then_with(|| priority(b).cmp(&priority(a)))
        .then_with(|| repo(a).cmp(&repo(b)))
        .then_with(|| b.meta.release.cmp(&a.meta.release))
        .then_with(|| b.meta.build_release.cmp(&a.meta.build_release))
        .then_with(|| a.id.0.cmp(&b.id.0))
}

/// Of two origins of one package (the same stone, installed and offered by a
/// repository), the one it ranks by: the better one under `policy`.
pub fn better(a: Origin, b: Origin, policy: Policy) -> Origin {
    let rank = |o: &Origin| {
        (
            tier(o, policy),
            std::cmp::Reverse(match o {
                Origin::Repository { priority, .. } => *priority,
                _ => 0,
            }),
        )
    };
    if rank(&b) < rank(&a) { b } else { a }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mossfs_format::{Meta, PackageId};

    use super::*;

    fn candidate(n: u8, release: u64, build: u64, origin: Origin) -> Candidate {
        Candidate {
            id: PackageId([n; 32]),
            meta: Arc::new(Meta {
                name: "nano".into(),
                release,
                build_release: build,
                ..Meta::default()
            }),
            origin,
        }
    }

    fn repo(id: &str, priority: u64) -> Origin {
        Origin::Repository {
            id: id.into(),
            priority,
        }
    }

    fn sorted(mut all: Vec<Candidate>, policy: Policy) -> Vec<u8> {
        all.sort_by(|a, b| compare(a, b, policy));
        all.iter().map(|c| c.id.0[0]).collect()
    }

    #[test]
    fn local_and_installed_come_first_then_priority_beats_release() {
        let all = vec![
            candidate(1, 9, 1, repo("low", 1)),
            candidate(2, 3, 1, repo("high", 10)),
            candidate(3, 2, 1, Origin::Installed),
            candidate(4, 1, 1, Origin::Local),
            candidate(5, 3, 2, repo("high", 10)),
        ];
        assert_eq!(sorted(all.clone(), Policy::KeepInstalled), [4, 3, 5, 2, 1]);
        assert_eq!(sorted(all, Policy::Best), [4, 5, 2, 1, 3]);
    }

    #[test]
    fn equal_priorities_go_by_repository_id() {
        let all = vec![
            candidate(1, 9, 1, repo("b", 5)),
            candidate(2, 1, 1, repo("a", 5)),
        ];
        assert_eq!(sorted(all, Policy::Best), [2, 1]);
    }

    #[test]
    fn an_installed_package_a_repository_offers_ranks_as_either() {
        let keep = better(Origin::Installed, repo("r", 3), Policy::KeepInstalled);
        assert_eq!(keep, Origin::Installed);
        let best = better(Origin::Installed, repo("r", 3), Policy::Best);
        assert_eq!(best, repo("r", 3));
    }
}
