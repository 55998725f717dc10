//! Symlinked directories: where a layout path really lands (DESIGN.md §5).
//!
//! A package may ship `lib64 -> lib` while another ships `lib64/libfoo.so`; on a real file
//! system that file is `lib/libfoo.so`, so the tree must say so too, or the blit and the
//! mount would disagree with what the kernel does. This module owns that one question and
//! nothing else: it never looks at files, directories or conflicts.
//!
//! The set of symlinks is computed once from every package before any entry is placed, so
//! the answer does not depend on package order. Resolution follows POSIX path walking,
//! lexically and inside the tree only:
//! - a relative target is taken from the symlink's parent, `.` and empty components are
//!   skipped, and `..` climbs one resolved directory; `..` above `/usr` reaches `/`, from
//!   where the rest is read as an absolute target (`lib64 -> ../usr/lib` is `lib`);
//! - an absolute target must lead into `/usr`: either through `/usr` itself, or through
//!   one of the links the root keeps into it ([`ROOT_LINKS`]: `/lib` is `/usr/lib`); any
//!   other absolute target (`/etc`) cannot be followed without leaving the tree;
//! - symlinks met inside a target are followed too (chains), at most [`MAX_HOPS`] of them
//!   per path, as Linux's `MAXSYMLINKS`, which also ends loops;
//! - a target may not lead to a path longer than [`MAX_PATH_LEN`], so that no chain of
//!   hostile targets can blow up memory. The rest of the layout path is then appended, so a
//!   resolved path is at most [`MAX_RESOLVED_LEN`] bytes.
//!
//! Paths here are `/`-separated bytes without a leading slash, relative to `/usr`.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use mossfs_format::path::MAX_PATH_LEN;
use mossfs_format::{EntryKind, LayoutEntry};

use crate::sysroot::ROOT_LINKS;

/// The most symlinks one path may pass through, as Linux's `MAXSYMLINKS`.
pub const MAX_HOPS: u32 = 40;

/// The longest path resolution can produce: a target's directory, a slash, and the rest of
/// a layout path.
pub const MAX_RESOLVED_LEN: usize = 2 * MAX_PATH_LEN + 1;

/// How many times symlink locations are recomputed: a symlink may sit below another one,
/// and moves with it. Real layouts settle after one round; hostile ones stop here.
pub(crate) const MAX_ROUNDS: usize = 8;

/// Where an entry came from: the package's place in priority order, and the record's
/// place in that package's layout. Ordering by it is ordering by priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Origin {
    pub(crate) package: u32,
    pub(crate) entry: u32,
}

/// Why a symlink cannot be followed inside the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unresolvable {
    /// A target that leads outside `/usr`, absolute or through `..`.
    Outside,
    /// More than [`MAX_HOPS`] symlinks: a loop, or a chain too long to trust.
    Loop,
    /// The resolved path would be longer than any path may be.
    TooLong,
}

/// A path that runs into a symlink which cannot be followed.
#[derive(Debug)]
pub(crate) struct Failure<'p> {
    /// The symlink the path runs into, first by priority at its location, when the build
    /// knows its origin.
    pub(crate) symlink: Option<Origin>,
    /// Where that symlink sits (resolved).
    pub(crate) location: Vec<u8>,
    /// The components of the parent path beyond the symlink, possibly empty.
    pub(crate) rest: &'p [u8],
    /// Why it cannot be followed. A conflict has no field for it yet; the unit tests
    /// below check it.
    #[allow(dead_code)]
    pub(crate) reason: Unresolvable,
}

/// Where symlinks sit, by resolved location: every package's, while a whole tree is
/// built ([`Symlinks`]), or a stored tree's, while one is changed (`incremental`).
pub(crate) trait Links {
    /// The symlink at `location`, if there is one: its origin when this build knows it,
    /// and its target.
    fn link(&self, location: &[u8]) -> Option<(Option<Origin>, Cow<'_, [u8]>)>;
}

/// The locations resolution looked at that a change of symlinks could disturb: every
/// location where a symlink was found on a layout path, and every location looked up
/// while following a target. A location a layout path only passes through as a directory
/// is not kept: it is a directory of the tree, and a symlink cannot appear there without a
/// conflict. `None` records nothing (a build that keeps no record).
pub(crate) type Trace = Option<HashSet<Vec<u8>>>;

fn note(trace: &mut Trace, location: &[u8]) {
    if let Some(keys) = trace
        && !keys.contains(location)
    {
        keys.insert(location.to_vec());
    }
}

/// Every symlink of every package, keyed by where it really sits.
pub(crate) struct Symlinks<'a> {
    map: HashMap<Vec<u8>, (Origin, &'a [u8])>,
    /// Whether the locations settled: a symlink's location is where its own path
    /// resolves to. Hostile layouts may never settle; such a tree is always built whole.
    pub(crate) settled: bool,
}

impl Links for Symlinks<'_> {
    fn link(&self, location: &[u8]) -> Option<(Option<Origin>, Cow<'_, [u8]>)> {
        self.map
            .get(location)
            .map(|&(origin, target)| (Some(origin), Cow::Borrowed(target)))
    }
}

impl<'a> Symlinks<'a> {
    /// Collects the symlinks of all layouts, in priority order: where two packages put
    /// different symlinks at one place (a conflict reported elsewhere), the first one's
    /// target is the one followed.
    pub(crate) fn collect(layouts: &'a [Vec<LayoutEntry>]) -> Self {
        let mut links = Vec::new();
        for (package, layout) in layouts.iter().enumerate() {
            for (entry, record) in layout.iter().enumerate() {
                if let EntryKind::Symlink(target) = &record.kind {
                    let origin = Origin {
                        package: package as u32,
                        entry: entry as u32,
                    };
                    links.push((origin, record.path.as_bytes(), target.as_slice()));
                }
            }
        }
        let mut current = Symlinks {
            map: HashMap::with_capacity(links.len()),
            settled: false,
        };
        for &(origin, path, target) in &links {
            current.map.entry(path.to_vec()).or_insert((origin, target));
        }
        // A symlink below another symlink lives where that one points: recompute every
        // location with the previous round's answer until nothing moves.
        let mut location = Vec::new();
        for _ in 0..MAX_ROUNDS {
            let mut next = HashMap::with_capacity(links.len());
            for &(origin, path, target) in &links {
                let (parent, name) = split_parent(path);
                if resolve_parent(&current, &mut None, parent, &mut location).is_err() {
                    continue;
                }
                join(&mut location, name);
                next.entry(location.clone()).or_insert((origin, target));
            }
            if next == current.map {
                current.settled = true;
                break;
            }
            current.map = next;
        }
        current
    }

    /// Whether any symlink exists at all, so that callers can skip resolution.
    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Resolves a directory path from a layout (the parent of an entry, possibly empty)
    /// into `out`, following every symlink on the way.
    #[cfg(test)]
    pub(crate) fn resolve_parent<'p>(
        &self,
        raw: &'p [u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Failure<'p>> {
        resolve_parent(self, &mut None, raw, out)
    }
}

/// Resolves a directory path from a layout (the parent of an entry, possibly empty) into
/// `out`, following every symlink of `links` on the way, and notes in `trace` what a
/// change of symlinks could disturb.
pub(crate) fn resolve_parent<'p>(
    links: &impl Links,
    trace: &mut Trace,
    raw: &'p [u8],
    out: &mut Vec<u8>,
) -> Result<(), Failure<'p>> {
    out.clear();
    if raw.is_empty() {
        return Ok(());
    }
    let mut hops = 0;
    let mut consumed = 0;
    for component in raw.split(|&b| b == b'/') {
        consumed += component.len() + 1;
        let before = out.len();
        // No length check here: a layout path is short, and each target is bounded.
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(component);
        if let Some((symlink, target)) = links.link(out.as_slice()) {
            note(trace, out);
            let location = out.clone();
            out.truncate(before);
            if let Err(reason) = follow(links, trace, &target, out, &mut hops) {
                return Err(Failure {
                    symlink,
                    location,
                    rest: raw.get(consumed..).unwrap_or_default(),
                    reason,
                });
            }
        }
    }
    Ok(())
}

/// Replaces `out` (the symlink's parent) with where `target` leads.
fn follow(
    links: &impl Links,
    trace: &mut Trace,
    target: &[u8],
    out: &mut Vec<u8>,
    hops: &mut u32,
) -> Result<(), Unresolvable> {
    *hops += 1;
    if *hops > MAX_HOPS {
        return Err(Unresolvable::Loop);
    }
    match target.strip_prefix(b"/") {
        Some(absolute) => walk_from_slash(links, trace, absolute, out, hops),
        None => walk(links, trace, target, out, hops),
    }
}

/// Replaces `out` with where `absolute` (a path from `/`, without the leading slash)
/// leads, which must be into `/usr`.
fn walk_from_slash(
    links: &impl Links,
    trace: &mut Trace,
    absolute: &[u8],
    out: &mut Vec<u8>,
    hops: &mut u32,
) -> Result<(), Unresolvable> {
    let (link, rest) = below_usr(absolute).ok_or(Unresolvable::Outside)?;
    out.clear();
    walk(links, trace, link, out, hops)?;
    walk(links, trace, rest, out, hops)
}

/// Applies relative `components` to the resolved directory in `out`.
fn walk(
    links: &impl Links,
    trace: &mut Trace,
    components: &[u8],
    out: &mut Vec<u8>,
    hops: &mut u32,
) -> Result<(), Unresolvable> {
    let mut next = 0;
    for component in components.split(|&b| b == b'/') {
        next += component.len() + 1;
        match component {
            b"" | b"." => {}
            b".." => {
                if out.is_empty() {
                    // Above `/usr` is `/`: what follows is read from there.
                    let rest = components.get(next..).unwrap_or_default();
                    return walk_from_slash(links, trace, rest, out, hops);
                }
                pop(out);
            }
            name => {
                let before = out.len();
                push(out, name)?;
                note(trace, out);
                if let Some((_, target)) = links.link(out.as_slice()) {
                    out.truncate(before);
                    follow(links, trace, &target, out, hops)?;
                }
            }
        }
    }
    Ok(())
}

/// What a path from `/` means below `/usr`, as a directory below `/usr` (empty for `/usr`
/// itself) and the rest to walk from there; `None` if it leads elsewhere. `.`, `..` and
/// empty components before the first name stay at `/`, as they do in the kernel, and a
/// root link (`/lib`) leads where it points in `/usr`.
fn below_usr(mut absolute: &[u8]) -> Option<(&'static [u8], &[u8])> {
    loop {
        let (head, tail) = match absolute.iter().position(|&b| b == b'/') {
            Some(at) => (&absolute[..at], Some(&absolute[at + 1..])),
            None => (absolute, None),
        };
        match head {
            b"usr" => return Some((b"", tail.unwrap_or_default())),
            b"" | b"." | b".." => absolute = tail?,
            _ => {
                // The first target is the one a state without its own `usr/lib64` gets;
                // resolving through the shipped `lib64` would need the finished tree.
                let (_, targets) = ROOT_LINKS
                    .iter()
                    .find(|(name, _)| name.as_bytes() == head)?;
                let inside = targets.first()?.strip_prefix("usr/")?;
                return Some((inside.as_bytes(), tail.unwrap_or_default()));
            }
        }
    }
}

/// Splits a layout path into its parent (empty at the top) and its last component.
pub(crate) fn split_parent(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(at) => (&path[..at], &path[at + 1..]),
        None => (&[], path),
    }
}

/// Appends one component.
pub(crate) fn join(out: &mut Vec<u8>, name: &[u8]) {
    if !out.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
}

/// Appends one component while following a target, refusing paths longer than any path
/// may be.
fn push(out: &mut Vec<u8>, name: &[u8]) -> Result<(), Unresolvable> {
    if out.len() + 1 + name.len() > MAX_PATH_LEN {
        return Err(Unresolvable::TooLong);
    }
    if !out.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    Ok(())
}

fn pop(out: &mut Vec<u8>) {
    let cut = out.iter().rposition(|&b| b == b'/').unwrap_or(0);
    out.truncate(cut);
}

#[cfg(test)]
mod tests {
    use super::*;
    use mossfs_format::RelPath;

    fn link(path: &str, target: &str) -> LayoutEntry {
        LayoutEntry {
            uid: 0,
            gid: 0,
            mode: 0o120777,
            tag: 0,
            kind: EntryKind::Symlink(target.as_bytes().to_vec()),
            path: RelPath::new(path).unwrap(),
        }
    }

    fn resolve(links: &Symlinks<'_>, raw: &str) -> Result<String, (String, Unresolvable)> {
        let mut out = Vec::new();
        match links.resolve_parent(raw.as_bytes(), &mut out) {
            Ok(()) => Ok(String::from_utf8(out).unwrap()),
            Err(f) => Err((String::from_utf8(f.location).unwrap(), f.reason)),
        }
    }

    #[test]
    fn follows_relative_absolute_and_chained_targets() {
        let layouts = vec![vec![
            link("lib64", "lib"),
            link("a/b/up", "../../share/x"),
            link("abs", "/usr/lib/"),
            link("abs2", "//./../usr/./share"),
            link("c1", "c2"),
            link("c2", "c3/deep"),
            link("dot", "."),
        ]];
        let links = Symlinks::collect(&layouts);
        assert_eq!(resolve(&links, "lib64"), Ok("lib".into()));
        assert_eq!(resolve(&links, "lib64/gcc"), Ok("lib/gcc".into()));
        assert_eq!(resolve(&links, "a/b/up/y"), Ok("share/x/y".into()));
        assert_eq!(resolve(&links, "abs/z"), Ok("lib/z".into()));
        assert_eq!(resolve(&links, "abs2"), Ok("share".into()));
        assert_eq!(resolve(&links, "c1"), Ok("c3/deep".into()));
        assert_eq!(resolve(&links, "dot/dot/lib64"), Ok("lib".into()));
        assert_eq!(resolve(&links, ""), Ok("".into()));
    }

    #[test]
    fn refuses_escapes_outside_targets_and_loops() {
        let layouts = vec![vec![
            link("up", "../x"),
            link("upetc", "../../etc"),
            link("etc", "/etc"),
            link("root", "/"),
            link("loop1", "loop2"),
            link("loop2", "loop1"),
            link("self", "self/more"),
        ]];
        let links = Symlinks::collect(&layouts);
        assert_eq!(
            resolve(&links, "up/a"),
            Err(("up".into(), Unresolvable::Outside))
        );
        assert_eq!(
            resolve(&links, "upetc"),
            Err(("upetc".into(), Unresolvable::Outside))
        );
        assert_eq!(
            resolve(&links, "etc"),
            Err(("etc".into(), Unresolvable::Outside))
        );
        assert_eq!(
            resolve(&links, "root"),
            Err(("root".into(), Unresolvable::Outside))
        );
        assert_eq!(
            resolve(&links, "x/loop1"),
            Ok("x/loop1".into()),
            "a symlink elsewhere is not in the way"
        );
        assert_eq!(
            resolve(&links, "loop1"),
            Err(("loop1".into(), Unresolvable::Loop))
        );
        assert_eq!(
            resolve(&links, "self"),
            Err(("self".into(), Unresolvable::Loop))
        );
    }

    #[test]
    fn targets_through_slash_and_the_root_links_resolve_as_on_disk() {
        // Issue 7, defect 15: each of these is `lib` on a merged-/usr root.
        let layouts = vec![vec![
            link("a", "../usr/lib"),
            link("b", "/lib"),
            link("c", "../../../usr/./lib/"),
            link("d", "../bin/x"),
            link("e", "/sbin"),
        ]];
        let links = Symlinks::collect(&layouts);
        assert_eq!(resolve(&links, "a/z"), Ok("lib/z".into()));
        assert_eq!(resolve(&links, "b/z"), Ok("lib/z".into()));
        assert_eq!(resolve(&links, "c/z"), Ok("lib/z".into()));
        assert_eq!(resolve(&links, "d"), Ok("bin/x".into()));
        assert_eq!(resolve(&links, "e"), Ok("sbin".into()));
    }

    #[test]
    fn a_symlink_below_a_symlink_moves_with_it() {
        // `lib64/inner` really sits at `lib/inner`, whichever package ships what.
        let layouts = vec![
            vec![link("lib64/inner", "../share")],
            vec![link("lib64", "lib")],
        ];
        let links = Symlinks::collect(&layouts);
        assert_eq!(resolve(&links, "lib64/inner/x"), Ok("share/x".into()));
        assert_eq!(resolve(&links, "lib/inner"), Ok("share".into()));
    }

    #[test]
    fn hostile_targets_cannot_grow_paths_without_bound() {
        let layouts = vec![vec![link("a", &"y/".repeat(3000))]];
        let links = Symlinks::collect(&layouts);
        assert_eq!(
            resolve(&links, "a/q"),
            Err(("a".into(), Unresolvable::TooLong))
        );
    }
}
