//! States: numbered package selections and the tree they make (DESIGN.md §1, §5).

use mossfs_format::PackageId;

use crate::codec::{Reader, put_bytes};
use crate::tree::{Node, TreeHash};

/// A state's number. Numbers only grow; a removed state's number is never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StateId(pub u64);

impl std::fmt::Display for StateId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Whether a state has ever been written to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Recorded, never committed: it can be mounted, diffed, committed or dropped.
    Candidate,
    /// Committed at least once. Whether it is the active one is kept separately.
    Committed,
}

/// One package in a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Selection {
    /// The package.
    pub package: PackageId,
    /// Asked for by name, as opposed to pulled in as a dependency.
    pub explicit: bool,
}

/// Two or more packages that want different things at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The path below `/usr`.
    pub path: Vec<u8>,
    /// Each contender's entry, the one the tree shows first.
    pub contenders: Vec<Node>,
}

/// A file that a transaction trigger wrote into a state's tree (DESIGN.md §10): its tree
/// entry has no package owner, and this says which trigger made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// The path below `/usr`.
    pub path: Vec<u8>,
    /// The trigger's name.
    pub trigger: String,
}

/// A recorded state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// Its number.
    pub id: StateId,
    /// Seconds since the Unix epoch.
    pub created: u64,
    /// What made it, for people: "install nano", "remove vim".
    pub summary: String,
    /// Candidate or committed.
    pub status: Status,
    /// The state it was derived from.
    pub parent: Option<StateId>,
    /// The packages, sorted by id.
    pub selections: Vec<Selection>,
    /// The root directory object (the tree's `/usr`).
    pub root: TreeHash,
    /// Number of entries in the tree, directories included.
    pub entries: u64,
    /// Conflicts found when the tree was built. A state with any can never be committed.
    pub conflicts: Vec<Conflict>,
    /// Files its transaction triggers wrote, sorted by path; empty until it is committed.
    pub generated: Vec<Generated>,
}

impl State {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.push(1); // record version
        out.extend_from_slice(&self.id.0.to_be_bytes());
        out.extend_from_slice(&self.created.to_be_bytes());
        put_bytes(&mut out, self.summary.as_bytes());
        out.push(match self.status {
            Status::Candidate => 0,
            Status::Committed => 1,
        });
        out.extend_from_slice(&self.parent.map_or(u64::MAX, |p| p.0).to_be_bytes());
        out.extend_from_slice(&self.root.0.to_be_bytes());
        out.extend_from_slice(&self.entries.to_be_bytes());
        out.extend_from_slice(&(self.selections.len() as u32).to_be_bytes());
        for s in &self.selections {
            out.extend_from_slice(&s.package.0);
            out.push(u8::from(s.explicit));
        }
        out.extend_from_slice(&(self.conflicts.len() as u32).to_be_bytes());
        for c in &self.conflicts {
            put_bytes(&mut out, &c.path);
            // Contenders are stored as a one-directory object each: it already knows how to
            // encode a node, and names are not needed.
            let entries: Vec<_> = c
                .contenders
                .iter()
                .enumerate()
                .map(|(i, node)| crate::tree::DirEntry {
                    name: (i as u32).to_be_bytes().to_vec(),
                    node: node.clone(),
                })
                .collect();
            put_bytes(&mut out, &crate::tree::encode(&entries));
        }
        // Added after version 1 records were first written: an older record simply ends
        // here, and reads back with nothing generated.
        out.extend_from_slice(&(self.generated.len() as u32).to_be_bytes());
        for g in &self.generated {
            put_bytes(&mut out, &g.path);
            put_bytes(&mut out, g.trigger.as_bytes());
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<State> {
        let mut r = Reader(bytes);
        if r.u8()? != 1 {
            return None;
        }
        let id = StateId(r.u64()?);
        let created = r.u64()?;
        let summary = String::from_utf8(r.bytes()?.to_vec()).ok()?;
        let status = match r.u8()? {
            0 => Status::Candidate,
            _ => Status::Committed,
        };
        let parent = match r.u64()? {
            u64::MAX => None,
            p => Some(StateId(p)),
        };
        let root = TreeHash(r.u128()?);
        let entries = r.u64()?;
        let count = r.u32()? as usize;
        let mut selections = Vec::with_capacity(count.min(bytes.len() / 33));
        for _ in 0..count {
            let package = PackageId(r.take(32)?.try_into().ok()?);
            selections.push(Selection {
                package,
                explicit: r.u8()? != 0,
            });
        }
        let count = r.u32()? as usize;
        let mut conflicts = Vec::with_capacity(count.min(bytes.len()));
        for _ in 0..count {
            let path = r.bytes()?.to_vec();
            let object = r.bytes()?;
            let hash = TreeHash::of(object);
            let view = crate::tree::DirView::new(hash, object).ok()?;
            let contenders = view
                .entries(hash)
                .ok()?
                .into_iter()
                .map(|e| e.node)
                .collect();
            conflicts.push(Conflict { path, contenders });
        }
        let mut generated = Vec::new();
        if !r.0.is_empty() {
            let count = r.u32()? as usize;
            generated.reserve(count.min(r.0.len() / 8));
            for _ in 0..count {
                let path = r.bytes()?.to_vec();
                let trigger = String::from_utf8(r.bytes()?.to_vec()).ok()?;
                generated.push(Generated { path, trigger });
            }
        }
        Some(State {
            id,
            created,
            summary,
            status,
            parent,
            selections,
            root,
            entries,
            conflicts,
            generated,
        })
    }
}
