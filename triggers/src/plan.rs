//! From triggers and the paths of a new tree to the ordered list of commands to run
//! (DESIGN.md §10).
//!
//! A trigger fires once for every distinct expanded command among the paths that match its
//! patterns; a trigger whose patterns match nothing, or that an inhibitor skips, runs
//! nothing. Triggers run in the order `before`/`after` give, ties broken by name, so the
//! same tree always gives the same plan. A name in `before`/`after` that no loaded trigger
//! has is ignored: it belongs to a package that is not installed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use crate::error::TriggerError;
use crate::file::{Handler, PathKind, Trigger};
use crate::pattern::{Captures, substitute};

/// What kind of entry a path of the tree is, for `type:` filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Directory,
    /// A symlink.
    Symlink,
    /// Anything else.
    Other,
}

/// One command of one trigger, ready to run.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Job {
    /// The trigger's name.
    pub trigger: String,
    /// The handler's name within it.
    pub handler: String,
    /// What to do, with every `$(name)` replaced.
    pub action: Action,
}

/// A handler with its captures substituted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// Run `program` with `args`, no shell.
    Run {
        /// The program.
        program: String,
        /// Its arguments.
        args: Vec<String>,
    },
    /// Delete these paths.
    Delete {
        /// The paths.
        paths: Vec<String>,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (head, rest) = match self {
            Action::Run { program, args } => (program.as_str(), args),
            Action::Delete { paths } => ("delete", paths),
        };
        f.write_str(head)?;
        for arg in rest {
            if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || c == '\'') {
                write!(f, " '{}'", arg.replace('\'', "'\\''"))?;
            } else {
                write!(f, " {arg}")?;
            }
        }
        Ok(())
    }
}

fn expand(handler: &Handler, captures: &Captures) -> Action {
    match handler {
        Handler::Run { run, args } => Action::Run {
            program: substitute(run, captures),
            args: args.iter().map(|a| substitute(a, captures)).collect(),
        },
        Handler::Delete { delete } => Action::Delete {
            paths: delete.iter().map(|p| substitute(p, captures)).collect(),
        },
    }
}

/// Orders triggers by `before`/`after`; a cycle is an error naming the triggers on it.
pub fn order(triggers: &[Trigger]) -> Result<Vec<&Trigger>, TriggerError> {
    let index: BTreeMap<&str, usize> = triggers
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), i))
        .collect();
    // edges[a] holds b when a runs before b.
    let mut edges: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); triggers.len()];
    for (i, t) in triggers.iter().enumerate() {
        for name in &t.before {
            if let Some(&j) = index.get(name.as_str()) {
                edges[i].insert(j);
            }
        }
        for name in &t.after {
            if let Some(&j) = index.get(name.as_str()) {
                edges[j].insert(i);
            }
        }
    }
    let mut incoming = vec![0usize; triggers.len()];
    for targets in &edges {
        for &j in targets {
            incoming[j] += 1;
        }
    }
    // Ready triggers by name, so ties are broken the same way every time.
    let mut ready: BTreeSet<(&str, usize)> = (0..triggers.len())
        .filter(|&i| incoming[i] == 0)
        .map(|i| (triggers[i].name.as_str(), i))
        .collect();
    let mut ordered = Vec::with_capacity(triggers.len());
    while let Some(next) = ready.pop_first() {
        let i = next.1;
        ordered.push(&triggers[i]);
        for &j in &edges[i] {
            incoming[j] -= 1;
            if incoming[j] == 0 {
                ready.insert((triggers[j].name.as_str(), j));
            }
        }
    }
    if ordered.len() == triggers.len() {
        return Ok(ordered);
    }
    // Every trigger left has a predecessor that is also left: walking predecessors must
    // come back to a trigger already seen, and the walk from there is a cycle.
    let left: Vec<usize> = (0..triggers.len()).filter(|&i| incoming[i] > 0).collect();
    let predecessor = |j: usize| {
        left.iter()
            .copied()
            .find(|&i| edges[i].contains(&j))
            .expect("a trigger left over has a predecessor left over")
    };
    let mut path = vec![left[0]];
    loop {
        let prev = predecessor(*path.last().expect("path is never empty"));
        if let Some(at) = path.iter().position(|&p| p == prev) {
            let mut cycle: Vec<usize> = path[at..].to_vec();
            cycle.reverse();
            // Start at the first name, so the message is the same however it was found.
            let first = (0..cycle.len())
                .min_by_key(|&i| &triggers[cycle[i]].name)
                .expect("a cycle is never empty");
            cycle.rotate_left(first);
            return Err(TriggerError::Cycle {
                names: cycle.iter().map(|&i| triggers[i].name.clone()).collect(),
                files: cycle
                    .iter()
                    .map(|&i| format!("/{}", triggers[i].file.display()))
                    .collect(),
            });
        }
        path.push(prev);
    }
}

/// Why a trigger was skipped, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The trigger.
    pub trigger: String,
    /// The inhibitor that skipped it.
    pub because: String,
}

/// The commands to run, in order, and what inhibitors skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Commands in run order.
    pub jobs: Vec<Job>,
    /// Triggers that matched but were inhibited.
    pub skipped: Vec<Skipped>,
}

/// Plans the commands for `paths` (absolute, such as `/usr/lib/libc.so.6`, with their
/// kinds). `exists` answers inhibitor paths; `env` answers inhibitor variables.
pub fn plan(
    triggers: &[Trigger],
    paths: &[(Vec<u8>, EntryKind)],
    exists: &dyn Fn(&str) -> bool,
    env: &dyn Fn(&str) -> bool,
) -> Result<Plan, TriggerError> {
    let mut out = Plan::default();
    for trigger in order(triggers)? {
        let mut jobs: Vec<Job> = Vec::new();
        for (path, kind) in paths {
            for rule in &trigger.paths {
                let wanted = match rule.kind {
                    None => true,
                    Some(PathKind::Directory) => *kind == EntryKind::Directory,
                    Some(PathKind::Symlink) => *kind == EntryKind::Symlink,
                };
                if !wanted {
                    continue;
                }
                let Some(captures) = rule.pattern.matches(path) else {
                    continue;
                };
                for name in &rule.handlers {
                    let handler = &trigger.handlers[name];
                    let job = Job {
                        trigger: trigger.name.clone(),
                        handler: name.clone(),
                        action: expand(handler, &captures),
                    };
                    if !jobs.contains(&job) {
                        jobs.push(job);
                    }
                }
            }
        }
        if jobs.is_empty() {
            continue;
        }
        let inhibitor = trigger
            .inhibitors
            .paths
            .iter()
            .find(|p| exists(p))
            .map(|p| format!("{p} exists"))
            .or_else(|| {
                trigger
                    .inhibitors
                    .environment
                    .iter()
                    .find(|v| env(v))
                    .map(|v| format!("{v} is set"))
            });
        match inhibitor {
            Some(because) => out.skipped.push(Skipped {
                trigger: trigger.name.clone(),
                because,
            }),
            None => out.jobs.extend(jobs),
        }
    }
    Ok(out)
}

/// Every path below `root/usr`, as `/usr/…`, with its kind, sorted; symlinks are not
/// followed. `root/usr` itself is included.
pub fn tree_paths(root: &Path) -> std::io::Result<Vec<(Vec<u8>, EntryKind)>> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = vec![(b"/usr".to_vec(), EntryKind::Directory)];
    let mut stack = vec![(root.join("usr"), b"/usr".to_vec())];
    while let Some((dir, name)) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let mut path = name.clone();
            path.push(b'/');
            path.extend_from_slice(entry.file_name().as_bytes());
            let kind = if kind.is_dir() {
                stack.push((entry.path(), path.clone()));
                EntryKind::Directory
            } else if kind.is_symlink() {
                EntryKind::Symlink
            } else {
                EntryKind::Other
            };
            out.push((path, kind));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger(name: &str, extra: &str, pattern: &str, run: &str) -> Trigger {
        let text = format!(
            "name: {name}\n{extra}handlers:\n  h:\n    run: {run}\n    args: [\"$(v)\"]\npaths:\n  \"{pattern}\":\n    handlers: [h]\n"
        );
        Trigger::parse(&text, Path::new(&format!("{name}.yaml"))).expect("parses")
    }

    fn paths(list: &[(&str, EntryKind)]) -> Vec<(Vec<u8>, EntryKind)> {
        list.iter()
            .map(|(p, k)| (p.as_bytes().to_vec(), *k))
            .collect()
    }

    #[test]
    fn fires_once_per_distinct_capture() {
        let t = trigger("dep", "", "/usr/lib/modules/(v:*)/**", "depmod");
        let p = paths(&[
            ("/usr/lib/modules/6.1/a.ko", EntryKind::Other),
            ("/usr/lib/modules/6.1/b.ko", EntryKind::Other),
            ("/usr/lib/modules/6.2/a.ko", EntryKind::Other),
            ("/usr/lib/other", EntryKind::Other),
        ]);
        let plan = plan(&[t], &p, &|_| false, &|_| false).expect("plans");
        let args: Vec<_> = plan.jobs.iter().map(|j| j.action.to_string()).collect();
        assert_eq!(args, ["depmod 6.1", "depmod 6.2"]);
    }

    #[test]
    fn a_trigger_that_matches_nothing_does_not_run() {
        let t = trigger("dep", "", "/usr/lib/modules/(v:*)/**", "depmod");
        let p = paths(&[("/usr/bin/x", EntryKind::Other)]);
        assert!(
            plan(&[t], &p, &|_| false, &|_| false)
                .expect("plans")
                .jobs
                .is_empty()
        );
    }

    #[test]
    fn type_filters_apply() {
        let text = "name: t\nhandlers:\n  h: { run: x }\npaths:\n  \"/usr/(v:*)\":\n    handlers: [h]\n    type: symlink\n";
        let t = Trigger::parse(text, Path::new("t.yaml")).expect("parses");
        let p = paths(&[("/usr/a", EntryKind::Other), ("/usr/b", EntryKind::Symlink)]);
        let plan = plan(&[t], &p, &|_| false, &|_| false).expect("plans");
        assert_eq!(plan.jobs.len(), 1);
    }

    #[test]
    fn before_and_after_order_triggers() {
        let a = trigger("a", "after: c\n", "/usr/(v:x)", "a");
        let b = trigger("b", "before: a\n", "/usr/(v:x)", "b");
        let c = trigger("c", "", "/usr/(v:x)", "c");
        let all = [a, b, c];
        let names: Vec<_> = order(&all)
            .expect("orders")
            .into_iter()
            .map(|t| t.name.as_str())
            .collect();
        // b before a, c before a; b and c by name.
        assert_eq!(names, ["b", "c", "a"]);
    }

    #[test]
    fn a_cycle_names_its_triggers() {
        let a = trigger("a", "after: b\n", "/usr/x", "a");
        let b = trigger("b", "after: c\n", "/usr/x", "b");
        let c = trigger("c", "after: a\n", "/usr/x", "c");
        let d = trigger("d", "after: a\n", "/usr/x", "d");
        match order(&[a, b, c, d]) {
            Err(TriggerError::Cycle { mut names, .. }) => {
                names.sort();
                assert_eq!(names, ["a", "b", "c"]);
            }
            other => panic!("expected a cycle, got {other:?}"),
        }
    }

    #[test]
    fn inhibitors_skip_a_matching_trigger() {
        let text = "name: t\ninhibitors:\n  paths: [/etc/stop]\n  environment: [NO_T]\nhandlers:\n  h: { run: x }\npaths:\n  /usr/a:\n    handlers: [h]\n";
        let t = Trigger::parse(text, Path::new("t.yaml")).expect("parses");
        let p = paths(&[("/usr/a", EntryKind::Other)]);
        let by_path = plan(std::slice::from_ref(&t), &p, &|p| p == "/etc/stop", &|_| {
            false
        })
        .expect("plans");
        assert!(by_path.jobs.is_empty());
        assert_eq!(by_path.skipped[0].because, "/etc/stop exists");
        let by_env =
            plan(std::slice::from_ref(&t), &p, &|_| false, &|v| v == "NO_T").expect("plans");
        assert!(by_env.jobs.is_empty());
        let runs = plan(&[t], &p, &|_| false, &|_| false).expect("plans");
        assert_eq!(runs.jobs.len(), 1);
    }
}
