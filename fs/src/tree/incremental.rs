//! Building a state's tree from its parent's tree and the packages that change (issue 13
//! §2), instead of from every layout.
//!
//! The parent's build left a [`BuildIndex`]: its tree as the packages made it, every path
//! that several packages ship (the tree names one owner), and the locations where
//! resolving a path met a symlink or followed a target. A change is applied when all of
//! this holds, and otherwise the caller builds the whole tree:
//! - the packages that stay keep their order, so every untouched path shows what it did;
//! - no symlink appears, vanishes or changes where a path that stays was resolved
//!   through it (the footprint), or where the parent's tree has a directory: then every
//!   record of a package that stays lands where it landed before;
//! - at every path the change touches, what remains agrees: no conflict, no file with
//!   something below it, no record below a symlink that leads nowhere. Conflicts are the
//!   whole build's to name, so the incremental build never names one.
//!
//! Only the directories on the way to a changed path get new objects, as with `edit`.
//! Any failure to read the database also hands over to the whole build, which reports it.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};

use mossfs_db::{BuildIndex, DirEntry, Node, NodeKind, Query, StateId, TreeHash, WriteTxn, tree};
use mossfs_format::{AssetHash, EntryKind, LayoutEntry, PackageId};

use super::resolve::{self, Links, MAX_ROUNDS, Origin, Trace, join, split_parent};
use super::{BuiltTree, implied_dir};

/// The deepest change applied here, in directory levels.
const MAX_DEPTH: usize = 64;

/// Why the change is left to the whole build; never shown, the whole build decides.
struct Whole;

type Step<T> = Result<T, Whole>;

/// The tree's symlinks, read from the stored tree as resolution asks, with the change's
/// own symlinks laid over them (`None`: none there any more).
struct TreeLinks<'q, Q: Query> {
    q: &'q Q,
    root: TreeHash,
    overlay: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// Directory objects already found, by path.
    dirs: RefCell<HashMap<Vec<u8>, Option<TreeHash>>>,
    failed: Cell<bool>,
}

impl<Q: Query> TreeLinks<'_, Q> {
    /// The stored node at `location`, if any.
    fn node(&self, location: &[u8]) -> Option<Node> {
        let (parent, name) = split_parent(location);
        let dir = self.dir(parent)?;
        match self.q.tree(dir) {
            Ok(view) => view.find(name).map(|(_, entry)| entry.node),
            Err(_) => {
                self.failed.set(true);
                None
            }
        }
    }

    /// The directory object at `path`, if the stored tree has a directory there.
    fn dir(&self, path: &[u8]) -> Option<TreeHash> {
        if path.is_empty() {
            return Some(self.root);
        }
        if let Some(known) = self.dirs.borrow().get(path) {
            return *known;
        }
        let found = match self.node(path) {
            Some(Node {
                kind: NodeKind::Directory(hash),
                ..
            }) => Some(hash),
            _ => None,
        };
        self.dirs.borrow_mut().insert(path.to_vec(), found);
        found
    }

    /// The symlink target the stored tree has at `location`.
    fn stored_link(&self, location: &[u8]) -> Option<Vec<u8>> {
        match self.node(location) {
            Some(Node {
                kind: NodeKind::Symlink(target),
                ..
            }) => Some(target),
            _ => None,
        }
    }
}

impl<Q: Query> Links for TreeLinks<'_, Q> {
    fn link(&self, location: &[u8]) -> Option<(Option<Origin>, Cow<'_, [u8]>)> {
        let target = match self.overlay.get(location) {
            Some(target) => target.clone(),
            None => self.stored_link(location),
        };
        target.map(|t| (None, Cow::Owned(t)))
    }
}

/// What a node shows apart from its owner and, for a directory, its object.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Proto {
    mode: u32,
    uid: u32,
    gid: u32,
    /// `None` for a directory.
    kind: Option<NodeKind>,
}

impl Proto {
    fn of_node(node: &Node) -> Proto {
        Proto {
            mode: node.mode,
            uid: node.uid,
            gid: node.gid,
            kind: match node.kind {
                NodeKind::Directory(_) => None,
                ref other => Some(other.clone()),
            },
        }
    }

    fn node(&self, owner: PackageId, dir: Option<TreeHash>) -> Node {
        Node {
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            owner: Some(owner),
            kind: match (&self.kind, dir) {
                (Some(kind), _) => kind.clone(),
                (None, Some(hash)) => NodeKind::Directory(hash),
                (None, None) => unreachable!("a directory is always given its object"),
            },
        }
    }
}

/// What the change does at one location.
#[derive(Default)]
struct Touch {
    /// A package that goes had a record here.
    removed: bool,
    /// Records of packages that come, by priority.
    added: Vec<(u32, Proto)>,
}

struct Splice<'t, 'db> {
    txn: &'t mut WriteTxn<'db>,
    priority: &'t HashMap<PackageId, u32>,
    packages: &'t [PackageId],
    removed: &'t HashSet<PackageId>,
    shared: BTreeMap<Vec<u8>, Vec<PackageId>>,
    /// Directory objects to store once the whole change is known to apply: one that
    /// falls back to the whole build, or a directory that ends up empty and goes, leaves
    /// no object behind for garbage collection to find.
    pending: Vec<Vec<u8>>,
}

/// Builds the tree of `packages` from state `parent`'s build, or `None` when the whole
/// tree must be built (see the module documentation).
pub(crate) fn build_on(
    txn: &mut WriteTxn<'_>,
    parent: StateId,
    packages: &[PackageId],
) -> Option<BuiltTree> {
    let base = txn.build_index(parent).ok()??;
    build(txn, &base, packages)
}

/// Builds the tree of `packages` from the build `base` describes, or `None` when the
/// whole tree must be built. Garbage collection may have taken `base`'s tree (it keeps
/// the trees of states, and triggers may have changed a state's): then `None` too.
pub(crate) fn build(
    txn: &mut WriteTxn<'_>,
    base: &BuildIndex,
    packages: &[PackageId],
) -> Option<BuiltTree> {
    if !txn.has_tree(base.root).ok()? {
        return None;
    }
    build_from(txn, base, packages).ok()
}

fn build_from(
    txn: &mut WriteTxn<'_>,
    base: &BuildIndex,
    packages: &[PackageId],
) -> Step<BuiltTree> {
    let priority: HashMap<PackageId, u32> = packages
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i as u32))
        .collect();
    let old: HashSet<PackageId> = base.packages.iter().copied().collect();
    if priority.len() != packages.len() || old.len() != base.packages.len() {
        return Err(Whole);
    }
    // The packages that stay must keep their order.
    let stay_old = base.packages.iter().filter(|p| priority.contains_key(p));
    let stay_new = packages.iter().filter(|p| old.contains(p));
    if !stay_old.eq(stay_new) {
        return Err(Whole);
    }
    let removed: HashSet<PackageId> = base
        .packages
        .iter()
        .filter(|p| !priority.contains_key(p))
        .copied()
        .collect();
    let added: Vec<(u32, PackageId)> = packages
        .iter()
        .enumerate()
        .filter(|(_, p)| !old.contains(p))
        .map(|(i, &p)| (i as u32, p))
        .collect();
    let shared: BTreeMap<Vec<u8>, Vec<PackageId>> = base.shared.iter().cloned().collect();
    let footprint: HashSet<Vec<u8>> = base.footprint.iter().cloned().collect();

    // Read what changes before anything is written.
    let mut gone = Vec::new();
    for &package in &removed {
        gone.push(txn.layout(&package).map_err(|_| Whole)?);
    }
    let mut coming = Vec::new();
    for &(prio, package) in &added {
        let layout = txn.layout(&package).map_err(|_| Whole)?;
        let sizes: HashMap<AssetHash, u64> = txn
            .index(&package)
            .map_err(|_| Whole)?
            .into_iter()
            .map(|e| (e.digest, e.len()))
            .collect();
        coming.push((prio, package, layout, sizes));
    }

    let mut touched: BTreeMap<Vec<u8>, Touch> = BTreeMap::new();
    let (new_root, delta, index_trace) = {
        let mut links = TreeLinks {
            q: &*txn,
            root: base.root,
            overlay: HashMap::new(),
            dirs: RefCell::new(HashMap::new()),
            failed: Cell::new(false),
        };
        // What goes sits where the parent's build put it.
        let mut gone_links = Vec::new();
        let mut location = Vec::new();
        for layout in &gone {
            let mut last = None;
            for record in layout {
                place(&links, &mut None, record, &mut last, &mut location)?;
                touched.entry(location.clone()).or_default().removed = true;
                if matches!(record.kind, EntryKind::Symlink(_)) {
                    gone_links.push(location.clone());
                }
            }
        }
        for location in &gone_links {
            let owners = owners(&links, &shared, location);
            if owners.iter().all(|o| removed.contains(o)) {
                links.overlay.insert(location.clone(), None);
            }
        }
        // Where the new symlinks sit, settled as the whole build settles them.
        let new_links: Vec<(&[u8], &[u8])> = coming
            .iter()
            .flat_map(|(_, _, layout, _)| layout)
            .filter_map(|r| match &r.kind {
                EntryKind::Symlink(target) => Some((r.path.as_bytes(), target.as_slice())),
                _ => None,
            })
            .collect();
        let base_overlay = links.overlay.clone();
        let mut at: Vec<Vec<u8>> = new_links.iter().map(|(p, _)| p.to_vec()).collect();
        let mut settled = new_links.is_empty();
        for _ in 0..MAX_ROUNDS {
            if settled {
                break;
            }
            links.overlay = lay_over(&base_overlay, &at, &new_links);
            let mut next = Vec::with_capacity(at.len());
            for (path, _) in &new_links {
                let (parent, name) = split_parent(path);
                let mut location = Vec::new();
                resolve::resolve_parent(&links, &mut None, parent, &mut location)
                    .map_err(|_| Whole)?;
                join(&mut location, name);
                next.push(location);
            }
            settled = next == at;
            at = next;
        }
        if !settled {
            return Err(Whole);
        }
        links.overlay = lay_over(&base_overlay, &at, &new_links);
        // A symlink that changes must not lie where anything that stays was resolved.
        for location in gone_links.iter().chain(&at) {
            let before = links.stored_link(location);
            let after = links.link(location).map(|(_, t)| t.into_owned());
            if before != after && (footprint.contains(location) || links.dir(location).is_some()) {
                return Err(Whole);
            }
        }
        // What comes lands where the new symlinks send it.
        let mut trace: Trace = Some(HashSet::new());
        for (prio, _, layout, sizes) in &coming {
            let mut last = None;
            for record in layout {
                place(&links, &mut trace, record, &mut last, &mut location)?;
                if location == mossfs_format::path::RESERVED {
                    return Err(Whole);
                }
                let kind = match &record.kind {
                    EntryKind::Regular(asset) => Some(NodeKind::Regular {
                        asset: *asset,
                        size: *sizes.get(asset).ok_or(Whole)?,
                    }),
                    EntryKind::Symlink(text) => Some(NodeKind::Symlink(text.clone())),
                    EntryKind::Directory => None,
                    EntryKind::CharDevice => Some(NodeKind::CharDevice),
                    EntryKind::BlockDevice => Some(NodeKind::BlockDevice),
                    EntryKind::Fifo => Some(NodeKind::Fifo),
                    EntryKind::Socket => Some(NodeKind::Socket),
                };
                touched.entry(location.clone()).or_default().added.push((
                    *prio,
                    Proto {
                        mode: record.mode,
                        uid: record.uid,
                        gid: record.gid,
                        kind,
                    },
                ));
            }
        }
        if links.failed.get() {
            return Err(Whole);
        }
        // The splice recurses once per directory level; the deepest paths are the whole
        // build's, whose merge keeps its own stack.
        if touched
            .keys()
            .any(|path| path.iter().filter(|&&b| b == b'/').count() > MAX_DEPTH)
        {
            return Err(Whole);
        }
        drop(links);
        let list: Vec<(&[u8], &Touch)> = touched.iter().map(|(p, t)| (p.as_slice(), t)).collect();
        let mut splice = Splice {
            txn,
            priority: &priority,
            packages,
            removed: &removed,
            shared,
            pending: Vec::new(),
        };
        let (mut root, delta, full) = splice.dir(Some(base.root), &list, &mut Vec::new())?;
        if !full {
            root = splice.store(&[]);
        }
        for object in &splice.pending {
            splice.txn.put_tree(object).map_err(|_| Whole)?;
        }
        let mut footprint: Vec<Vec<u8>> = footprint
            .into_iter()
            .chain(trace.unwrap_or_default())
            .collect();
        footprint.sort();
        footprint.dedup();
        (root, delta, (splice.shared, footprint))
    };
    let entries = base.entries.checked_add_signed(delta).ok_or(Whole)?;
    let (shared, footprint) = index_trace;
    Ok(BuiltTree {
        root: new_root,
        entries,
        conflicts: Vec::new(),
        index: Some(BuildIndex {
            root: new_root,
            entries,
            packages: packages.to_vec(),
            shared: shared.into_iter().collect(),
            footprint,
        }),
    })
}

/// The symlinks after the change: `removed` (the ones that go, as `None`), then the new
/// ones at their locations, the first by priority wherever two meet.
fn lay_over(
    removed: &HashMap<Vec<u8>, Option<Vec<u8>>>,
    locations: &[Vec<u8>],
    links: &[(&[u8], &[u8])],
) -> HashMap<Vec<u8>, Option<Vec<u8>>> {
    let mut overlay = removed.clone();
    let mut placed = HashSet::new();
    for (location, (_, target)) in locations.iter().zip(links) {
        if placed.insert(location.as_slice()) {
            overlay.insert(location.clone(), Some(target.to_vec()));
        }
    }
    overlay
}

/// Resolves a record's location into `out`; a record below a symlink that leads
/// nowhere is a conflict, which only the whole build names.
/// Layouts list a directory's records together, so the last parent's resolution is kept
/// (`last`: the raw parent and where it leads) and reused while it repeats.
fn place(
    links: &impl Links,
    trace: &mut Trace,
    record: &LayoutEntry,
    last: &mut Option<(Vec<u8>, Vec<u8>)>,
    out: &mut Vec<u8>,
) -> Step<()> {
    let (parent, name) = split_parent(record.path.as_bytes());
    match last {
        Some((raw, resolved)) if raw == parent => {
            out.clear();
            out.extend_from_slice(resolved);
        }
        _ => {
            resolve::resolve_parent(links, trace, parent, out).map_err(|_| Whole)?;
            *last = Some((parent.to_vec(), out.clone()));
        }
    }
    join(out, name);
    Ok(())
}

/// The packages that ship `location` in the parent's tree.
fn owners<Q: Query>(
    links: &TreeLinks<'_, Q>,
    shared: &BTreeMap<Vec<u8>, Vec<PackageId>>,
    location: &[u8],
) -> Vec<PackageId> {
    match shared.get(location) {
        Some(owners) => owners.clone(),
        None => links
            .node(location)
            .and_then(|n| n.owner)
            .into_iter()
            .collect(),
    }
}

impl Splice<'_, '_> {
    /// Applies `items` (paths relative to this directory, sorted) to the directory object
    /// `hash` at `at`; returns the new object, how many entries below it were added
    /// (or removed, negative), and whether it holds anything.
    fn dir(
        &mut self,
        hash: Option<TreeHash>,
        items: &[(&[u8], &Touch)],
        at: &mut Vec<u8>,
    ) -> Step<(TreeHash, i64, bool)> {
        let mut entries: BTreeMap<Vec<u8>, Node> = match hash {
            Some(hash) => self
                .txn
                .tree(hash)
                .and_then(|v| v.entries(hash))
                .map_err(|_| Whole)?
                .into_iter()
                .map(|e| (e.name, e.node))
                .collect(),
            None => BTreeMap::new(),
        };
        let mut delta = 0i64;
        let mut rest = items;
        while let Some(&(first, _)) = rest.first() {
            let head = first.split(|&b| b == b'/').next().unwrap_or_default();
            let n = rest
                .iter()
                .take_while(|(p, _)| p.split(|&b| b == b'/').next() == Some(head))
                .count();
            let (group, tail) = rest.split_at(n);
            rest = tail;
            let mut own = None;
            let mut below = Vec::new();
            for &(path, touch) in group {
                match path.get(head.len() + 1..) {
                    Some(deeper) => below.push((deeper, touch)),
                    None => own = Some(touch),
                }
            }
            let len = at.len();
            join(at, head);
            let old = entries.get(head).cloned();
            let new = self.entry(old.as_ref(), own, &below, at, &mut delta)?;
            at.truncate(len);
            delta += i64::from(new.is_some()) - i64::from(old.is_some());
            match new {
                Some(node) => entries.insert(head.to_vec(), node),
                None => entries.remove(head),
            };
        }
        let list: Vec<DirEntry> = entries
            .into_iter()
            .map(|(name, node)| DirEntry { name, node })
            .collect();
        // An empty object is stored only by a caller that keeps the directory.
        if list.is_empty() {
            return Ok((TreeHash::of(&tree::encode(&[])), delta, false));
        }
        Ok((self.store(&list), delta, true))
    }

    /// The hash of a directory object, stored with the rest once the change applies.
    fn store(&mut self, list: &[DirEntry]) -> TreeHash {
        let bytes = tree::encode(list);
        let hash = TreeHash::of(&bytes);
        self.pending.push(bytes);
        hash
    }

    /// What one location becomes; `delta` gains what changed below it.
    fn entry(
        &mut self,
        old: Option<&Node>,
        own: Option<&Touch>,
        below: &[(&[u8], &Touch)],
        at: &[u8],
        delta: &mut i64,
    ) -> Step<Option<Node>> {
        let old_dir = match old {
            Some(Node {
                kind: NodeKind::Directory(hash),
                ..
            }) => Some(*hash),
            _ => None,
        };
        let Some(touch) = own else {
            // Only something below changes: the node stays, with a new object.
            if old.is_some() && old_dir.is_none() {
                return Err(Whole); // a file with something below it
            }
            let mut at = at.to_vec();
            let (hash, below_delta, full) = self.dir(old_dir, below, &mut at)?;
            *delta += below_delta;
            return Ok(match old {
                Some(node) if node.owner.is_some() || full => Some(Node {
                    kind: NodeKind::Directory(if full { hash } else { self.store(&[]) }),
                    ..node.clone()
                }),
                None if full => Some(implied_dir(hash)),
                _ => None, // an implied directory with nothing left below
            });
        };
        // The records that remain here, by priority, and the one thing they show.
        let mut records: Vec<(u32, PackageId)> = Vec::new();
        let mut proto: Option<Proto> = None;
        if let Some(node) = old {
            let owners = match self.shared.get(at) {
                Some(owners) => owners.clone(),
                None => node.owner.into_iter().collect(),
            };
            for owner in owners {
                if !self.removed.contains(&owner) {
                    let prio = *self.priority.get(&owner).ok_or(Whole)?;
                    records.push((prio, owner));
                    proto = Some(Proto::of_node(node));
                }
            }
        }
        for (prio, added) in &touch.added {
            match &proto {
                Some(shown) if shown != added => return Err(Whole), // a conflict
                Some(_) => {}
                None => proto = Some(added.clone()),
            }
            records.push((*prio, self.packages[*prio as usize]));
        }
        records.sort();
        records.dedup();
        let is_dir = proto.as_ref().is_some_and(|p| p.kind.is_none());
        // What lies below, if this is (or may stay) a directory.
        let (hash, full) = if below.is_empty() {
            match old_dir {
                Some(hash) => {
                    let full = !self.txn.tree(hash).map_err(|_| Whole)?.is_empty();
                    (Some(hash), full)
                }
                None => (None, false),
            }
        } else {
            let mut at = at.to_vec();
            let (hash, below_delta, full) = self.dir(old_dir, below, &mut at)?;
            *delta += below_delta;
            (Some(hash), full)
        };
        let owners: Vec<PackageId> = records.iter().map(|&(_, p)| p).collect();
        let mut distinct = owners.clone();
        distinct.dedup();
        if distinct.len() > 1 {
            self.shared.insert(at.to_vec(), distinct);
        } else {
            self.shared.remove(at);
        }
        let Some(proto) = proto.filter(|_| !records.is_empty()) else {
            // No record left: an implied directory if anything remains below.
            return Ok(match hash {
                Some(hash) if full => Some(implied_dir(hash)),
                _ => None,
            });
        };
        let owner = records[0].1;
        if is_dir {
            let hash = match hash {
                Some(hash) if full => hash,
                _ => self.store(&[]),
            };
            Ok(Some(proto.node(owner, Some(hash))))
        } else if full {
            Err(Whole) // a file with something below it
        } else {
            Ok(Some(proto.node(owner, None)))
        }
    }
}
