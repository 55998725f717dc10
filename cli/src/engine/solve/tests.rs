//! The solver on packages held in memory: the real resolvo, the real adapter and the
//! real candidate order, with metadata written as upstream writes it. The solver does
//! no I/O, so these need no root; the end-to-end tests in `integration/tests/solver.rs`
//! run the same solves through the binary on real roots.

use std::collections::HashSet;
use std::sync::Arc;

use mossfs_db::Reason;
use mossfs_format::{Meta, PackageId, Relation};

use super::*;
use crate::engine::error::EngineError;

/// A package: `name`, source release, what it depends on, provides and conflicts with
/// (written `kind(target)`), from `origin`. The id is derived from all of it.
fn pkg(name: &str, release: u64, depends: &[&str], provides: &[&str], origin: Origin) -> Candidate {
    pkg_with(name, release, depends, provides, &[], origin)
}

fn pkg_with(
    name: &str,
    release: u64,
    depends: &[&str],
    provides: &[&str],
    conflicts: &[&str],
    origin: Origin,
) -> Candidate {
    let parse = |all: &[&str]| -> Vec<Relation> {
        all.iter().map(|t| Relation::parse(t).unwrap()).collect()
    };
    let mut id = [0u8; 32];
    let key = format!("{name}-{release}-{origin:?}-{depends:?}");
    for (i, b) in key.bytes().enumerate() {
        id[i % 32] = id[i % 32].wrapping_mul(31).wrapping_add(b);
    }
    Candidate {
        id: PackageId(id),
        meta: Arc::new(Meta {
            name: name.into(),
            version: format!("{release}.0"),
            release,
            build_release: 1,
            depends: parse(depends),
            provides: parse(provides),
            conflicts: parse(conflicts),
            ..Meta::default()
        }),
        origin,
    }
}

fn repo(priority: u64) -> Origin {
    Origin::Repository {
        id: format!("repo{priority}"),
        priority,
    }
}

fn installed(c: &Candidate, explicit: bool) -> Installed {
    Installed {
        candidate: Candidate {
            origin: Origin::Installed,
            ..c.clone()
        },
        explicit,
        reason: if explicit {
            Reason::Requested(c.meta.name.clone())
        } else {
            Reason::Unknown
        },
    }
}

fn ask(text: &str) -> Request {
    Request {
        want: Want::Provider(Relation::parse(text).unwrap()),
        words: text.into(),
    }
}

/// Solves with `available` as the one repository source.
fn run(
    installed: &[Installed],
    requests: &[Request],
    available: &[Candidate],
    keep: Keep,
    policy: Policy,
    forbidden: &[&str],
) -> Result<Solution> {
    let mut packages = Packages::new();
    for c in available {
        packages.add(c.clone());
    }
    let forbidden: HashSet<String> = forbidden.iter().map(|s| s.to_string()).collect();
    solve(&Problem {
        asked: "test",
        installed,
        requests,
        forbidden: &forbidden,
        keep,
        policy,
        sources: &[&packages],
    })
}

fn install(installed: &[Installed], requests: &[Request], available: &[Candidate]) -> Solution {
    run(
        installed,
        requests,
        available,
        Keep::All,
        Policy::KeepInstalled,
        &[],
    )
    .unwrap()
}

/// `name release` of every chosen package.
fn picked(solution: &Solution) -> Vec<String> {
    solution
        .values()
        .map(|c| format!("{} {}", c.candidate.meta.name, c.candidate.meta.release))
        .collect()
}

#[test]
fn any_provider_satisfies_a_dependency_and_priority_picks_among_them() {
    let app = pkg(
        "app",
        1,
        &["soname(libz.so.1(x86_64))", "binary(sh)"],
        &[],
        repo(1),
    );
    let zlib = pkg("zlib", 9, &[], &["soname(libz.so.1(x86_64))"], repo(1));
    let zlib_ng = pkg("zlib-ng", 1, &[], &["soname(libz.so.1(x86_64))"], repo(5));
    let dash = pkg("dash", 1, &[], &["binary(sh)"], repo(1));
    let solution = install(&[], &[ask("app")], &[app, zlib, zlib_ng, dash]);
    assert_eq!(picked(&solution), ["app 1", "dash 1", "zlib-ng 1"]);
    assert!(solution["app"].explicit);
    assert_eq!(solution["app"].reason, Reason::Requested("app".into()));
    assert!(!solution["zlib-ng"].explicit);
    assert_eq!(
        solution["zlib-ng"].reason,
        Reason::Needed {
            by: "app".into(),
            relation: "soname(libz.so.1(x86_64))".into()
        }
    );
}

#[test]
fn a_request_by_provider_marks_its_provider_explicit() {
    let nano = pkg("nano", 1, &[], &["binary(nano)"], repo(1));
    let solution = install(&[], &[ask("binary(nano)")], &[nano]);
    assert_eq!(
        solution["nano"].reason,
        Reason::Requested("binary(nano)".into())
    );
}

#[test]
fn priority_beats_release_and_release_breaks_ties() {
    let old_high = pkg("tool", 1, &[], &[], repo(10));
    let new_low = pkg("tool", 7, &[], &[], repo(1));
    let solution = install(&[], &[ask("tool")], &[old_high.clone(), new_low.clone()]);
    assert_eq!(picked(&solution), ["tool 1"]);
    let newer = pkg("tool", 2, &[], &[], repo(10));
    let solution = install(&[], &[ask("tool")], &[old_high, new_low, newer]);
    assert_eq!(picked(&solution), ["tool 2"]);
}

#[test]
fn declared_conflicts_are_never_chosen_together() {
    // The best provider of libx conflicts with what is installed, so the other one wins.
    let app = pkg("app", 1, &["soname(libx.so.1)"], &[], repo(1));
    let fast = pkg_with(
        "libx-fast",
        1,
        &[],
        &["soname(libx.so.1)"],
        &["name(legacy)"],
        repo(9),
    );
    let slow = pkg("libx-slow", 1, &[], &["soname(libx.so.1)"], repo(1));
    let legacy = pkg("legacy", 1, &[], &[], repo(1));
    let base = [installed(&legacy, true)];
    let all = [app, fast, slow];
    let solution = install(&base, &[ask("app")], &all);
    assert_eq!(picked(&solution), ["app 1", "legacy 1", "libx-slow 1"]);
    // Without an alternative, the request is refused with the conflict explained.
    let Err(EngineError::Unsolvable { explanation, .. }) = run(
        &base,
        &[ask("libx-fast")],
        &all,
        Keep::All,
        Policy::KeepInstalled,
        &[],
    ) else {
        panic!("a conflict with an installed package must be refused");
    };
    assert!(
        explanation.contains("legacy (declared conflict: name(legacy))"),
        "{explanation}"
    );
    assert!(
        explanation.contains("legacy 1.0-1 (installed)"),
        "{explanation}"
    );
}

#[test]
fn a_conflict_on_a_provider_covers_every_package_that_provides_it() {
    let vim = pkg_with("vim", 1, &[], &["binary(vi)"], &["binary(vi)"], repo(1));
    let nvi = pkg("nvi", 1, &[], &["binary(vi)"], repo(1));
    let base = [installed(&nvi, true)];
    let result = run(
        &base,
        &[ask("vim")],
        &[vim],
        Keep::All,
        Policy::KeepInstalled,
        &[],
    );
    assert!(matches!(result, Err(EngineError::Unsolvable { .. })));
}

#[test]
fn one_package_per_name() {
    let a1 = pkg("a", 1, &[], &[], repo(1));
    let a2 = pkg("a", 2, &[], &["soname(liba.so.2)"], repo(1));
    let user = pkg("user", 1, &["soname(liba.so.2)"], &[], repo(1));
    let solution = install(&[], &[ask("a"), ask("user")], &[a1, a2, user]);
    assert_eq!(picked(&solution), ["a 2", "user 1"]);
}

#[test]
fn an_install_changes_installed_packages_only_when_it_must() {
    let lib1 = pkg("lib", 1, &[], &["soname(lib.so.1)"], repo(1));
    let lib2 = pkg(
        "lib",
        2,
        &[],
        &["soname(lib.so.1)", "soname(lib.so.2)"],
        repo(1),
    );
    let base = [
        installed(&lib1, false),
        installed(&pkg("top", 1, &["soname(lib.so.1)"], &[], repo(1)), true),
    ];
    // A newer lib is available, but nothing asks for it: lib stays.
    let other = pkg("other", 1, &["soname(lib.so.1)"], &[], repo(1));
    let solution = install(&base, &[ask("other")], &[lib1.clone(), lib2.clone(), other]);
    assert_eq!(picked(&solution), ["lib 1", "other 1", "top 1"]);
    assert_eq!(solution["lib"].candidate.origin, Origin::Installed);
    // A package that needs the new soname moves lib up, and only lib.
    let needy = pkg("needy", 1, &["soname(lib.so.2)"], &[], repo(1));
    let solution = install(&base, &[ask("needy")], &[lib1, lib2, needy]);
    assert_eq!(picked(&solution), ["lib 2", "needy 1", "top 1"]);
    assert!(!solution["lib"].explicit);
    assert!(solution["top"].explicit);
}

#[test]
fn the_best_policy_moves_up_and_back_down() {
    let v1 = pkg("tool", 1, &[], &[], repo(1));
    let v2 = pkg("tool", 2, &[], &[], repo(1));
    let on_v1 = [installed(&v1, true)];
    let best = |base: &[Installed], available: &[Candidate]| {
        picked(&run(base, &[], available, Keep::Explicit, Policy::Best, &[]).unwrap())
    };
    assert_eq!(best(&on_v1, &[v1.clone(), v2.clone()]), ["tool 2"]);
    // v2 installed, but its repository is gone: back to what is offered.
    let on_v2 = [installed(&v2, true)];
    assert_eq!(best(&on_v2, std::slice::from_ref(&v1)), ["tool 1"]);
    // Nothing offered at all: what is installed stays.
    assert_eq!(best(&on_v2, &[]), ["tool 2"]);
}

#[test]
fn a_cycle_resolves() {
    let a = pkg("a", 1, &["name(b)"], &[], repo(1));
    let b = pkg("b", 1, &["name(a)"], &[], repo(1));
    let solution = install(&[], &[ask("a")], &[a, b]);
    assert_eq!(picked(&solution), ["a 1", "b 1"]);
    assert_eq!(
        solution["b"].reason,
        Reason::Needed {
            by: "a".into(),
            relation: "name(b)".into()
        }
    );
}

#[test]
fn orphans_go_when_only_explicit_packages_are_kept() {
    let lib = pkg("lib", 1, &[], &[], repo(1));
    let app = pkg("app", 1, &["name(lib)"], &[], repo(1));
    let stray = pkg("stray", 1, &[], &[], repo(1));
    let base = [
        installed(&app, true),
        installed(&lib, false),
        installed(&stray, false),
    ];
    // An install keeps everything, and says that nothing needs stray.
    let kept = install(&base, &[], &[]);
    assert_eq!(picked(&kept), ["app 1", "lib 1", "stray 1"]);
    assert_eq!(kept["stray"].reason, Reason::Unneeded);
    // A removal keeps only what the explicit packages need.
    let left = run(&base, &[], &[], Keep::Explicit, Policy::KeepInstalled, &[]).unwrap();
    assert_eq!(picked(&left), ["app 1", "lib 1"]);
    let left = run(
        &base,
        &[],
        &[],
        Keep::Explicit,
        Policy::KeepInstalled,
        &["app"],
    )
    .unwrap();
    assert!(left.is_empty(), "{:?}", picked(&left));
}

#[test]
fn dependents_follow_the_chain_and_respect_alternatives() {
    let libfoo = pkg("libfoo", 1, &[], &["soname(libfoo.so.1)"], repo(1));
    let alt = pkg("altfoo", 1, &[], &["soname(libalt.so.1)"], repo(1));
    let needy = pkg("needy", 1, &["soname(libfoo.so.1)"], &[], repo(1));
    let top = pkg("top", 1, &["name(needy)"], &[], repo(1));
    let either = pkg("either", 1, &["soname(libalt.so.1)"], &[], repo(1));
    let base: Vec<Installed> = [&libfoo, &alt, &needy, &top, &either]
        .into_iter()
        .map(|c| installed(c, true))
        .collect();
    let names: HashSet<String> = ["libfoo".to_owned()].into();
    assert_eq!(
        dependents(&base, &names),
        [
            (
                "needy".into(),
                "soname(libfoo.so.1)".into(),
                "libfoo".into()
            ),
            ("top".into(), "name(needy)".into(), "needy".into())
        ]
    );
    assert!(dependents(&base, &["either".to_owned()].into()).is_empty());
}

#[test]
fn a_removal_that_breaks_an_explicit_package_is_explained() {
    let lib = pkg("lib", 1, &[], &[], repo(1));
    let app = pkg("app", 1, &["name(lib)"], &[], repo(1));
    let base = [installed(&app, true), installed(&lib, false)];
    let Err(EngineError::Unsolvable { explanation, .. }) = run(
        &base,
        &[],
        &[],
        Keep::Explicit,
        Policy::KeepInstalled,
        &["lib"],
    ) else {
        panic!("app needs lib");
    };
    assert!(explanation.contains("lib (being removed)"), "{explanation}");
}

#[test]
fn an_impossible_request_names_the_missing_provider_down_the_chain() {
    let app = pkg("app", 1, &["name(lib)"], &[], repo(1));
    let lib = pkg("lib", 1, &["pkgconfig(zlib)"], &[], repo(1));
    let Err(EngineError::Unsolvable { explanation, .. }) = run(
        &[],
        &[ask("app")],
        &[app, lib],
        Keep::All,
        Policy::KeepInstalled,
        &[],
    ) else {
        panic!("nothing provides pkgconfig(zlib)");
    };
    let lines: Vec<&str> = explanation.lines().map(str::trim_start).collect();
    assert_eq!(
        lines,
        [
            "app cannot be installed because there are no viable options:",
            "└─ app 1.0-1 (from repository repo1) would require",
            "└─ lib, which cannot be installed because there are no viable options:",
            "└─ lib 1.0-1 (from repository repo1) would require",
            "└─ pkgconfig(zlib), for which no candidates were found.",
        ],
        "{explanation}"
    );
}

/// A synthetic repository of `count` packages (plus an older release of every tenth),
/// each providing a soname, a pkgconfig name and a binary, and depending on up to three
/// packages below it through one of those (the one just below always, so the closure of
/// `pN` is N + 1 packages).
fn synthetic(count: usize) -> Vec<Candidate> {
    let mut all = Vec::with_capacity(count + count / 10);
    for i in 0..count {
        let mut depends = Vec::new();
        for (step, every) in [(1usize, 1usize), (7, 2), (31, 3)] {
            if i >= step && i % every == 0 {
                let j = i - step;
                depends.push(match j % 3 {
                    0 => format!("soname(lib{j}.so.1(x86_64))"),
                    1 => format!("pkgconfig(p{j})"),
                    _ => format!("binary(b{j})"),
                });
            }
        }
        let provides = [
            format!("soname(lib{i}.so.1(x86_64))"),
            format!("pkgconfig(p{i})"),
            format!("binary(b{i})"),
        ];
        let depends: Vec<&str> = depends.iter().map(String::as_str).collect();
        let provides: Vec<&str> = provides.iter().map(String::as_str).collect();
        all.push(pkg(&format!("p{i}"), 2, &depends, &provides, repo(1)));
        if i % 10 == 0 {
            all.push(pkg(&format!("p{i}"), 1, &depends, &provides, repo(1)));
        }
    }
    all
}

/// Not a check but figures: solves over synthetic repositories of 5,000 and 50,000
/// packages for a target whose closure is 500 packages, and a `sync`-style solve of
/// 2,000 installed packages of which 200 have updates.
/// Run with `cargo test --release -p mossfs-cli solve_time -- --ignored --nocapture`.
#[test]
#[ignore = "a benchmark; prints its figures"]
fn solve_time() {
    for count in [5_000usize, 50_000] {
        let all = synthetic(count);
        let mut packages = Packages::new();
        let started = std::time::Instant::now();
        for c in &all {
            packages.add(c.clone());
        }
        let indexed = started.elapsed();
        let forbidden = HashSet::new();
        let requests = [ask("p499")];
        let started = std::time::Instant::now();
        let solution = solve(&Problem {
            asked: "bench",
            installed: &[],
            requests: &requests,
            forbidden: &forbidden,
            keep: Keep::All,
            policy: Policy::KeepInstalled,
            sources: &[&packages],
        })
        .unwrap();
        let elapsed = started.elapsed();
        println!(
            "install p499 over {} candidates: {} packages chosen in {:.1} ms (indexing them in memory: {:.1} ms)",
            all.len(),
            solution.len(),
            elapsed.as_secs_f64() * 1e3,
            indexed.as_secs_f64() * 1e3
        );
        assert_eq!(solution.len(), 500);
    }
    // sync: 2,000 installed at release 1 (every one explicit), 200 of them with a release
    // 2 in the repository.
    let old = synthetic(2_000);
    let base: Vec<Installed> = old
        .iter()
        .filter(|c| c.meta.release == 2)
        .map(|c| {
            let mut c = c.clone();
            Arc::make_mut(&mut c.meta).release = 1;
            installed(&c, true)
        })
        .collect();
    let mut packages = Packages::new();
    for (i, p) in base.iter().enumerate() {
        let mut c = p.candidate.clone();
        c.origin = repo(1);
        if i % 10 == 0 {
            Arc::make_mut(&mut c.meta).release = 2;
            c.id.0[31] ^= 0xff;
        }
        packages.add(c);
    }
    let forbidden = HashSet::new();
    let started = std::time::Instant::now();
    let solution = solve(&Problem {
        asked: "bench",
        installed: &base,
        requests: &[],
        forbidden: &forbidden,
        keep: Keep::Explicit,
        policy: Policy::Best,
        sources: &[&packages],
    })
    .unwrap();
    let elapsed = started.elapsed();
    let moved = solution
        .values()
        .filter(|c| c.candidate.meta.release == 2)
        .count();
    println!(
        "sync over {} installed packages: {} moved in {:.1} ms",
        base.len(),
        moved,
        elapsed.as_secs_f64() * 1e3
    );
    assert_eq!(moved, 200);
}
