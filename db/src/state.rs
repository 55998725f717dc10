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
    /// Recorded by an `install` or `remove` that is committing it right now. It is no one
    /// else's candidate: if that command dies before the exchange, the next writer drops
    /// it, so a killed command never leaves a state behind that a later `commit` applies.
    InFlight,
}

/// One package in a state.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Selection {
    /// The package.
    pub package: PackageId,
    /// Asked for by name, as opposed to pulled in as a dependency. `remove` drops the
    /// packages that are not explicit once nothing needs them (orphans), and `sync`
    /// re-solves from the explicit ones (DESIGN.md §9).
    pub explicit: bool,
    /// Why the package is there, for people.
    pub reason: Reason,
}

/// Why a package is in a state.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// Asked for: the words the request gave, such as `nano`, `binary(nano)` or a stone's
    /// file name.
    Requested(String),
    /// Pulled in: the package that needs it, and the dependency it satisfies.
    Needed {
        /// The package that depends on it, by name.
        by: String,
        /// The dependency, `kind(target)`.
        relation: String,
    },
    /// Kept although nothing needs it now: the change that recorded the state does not
    /// remove packages (an `install`); the next `remove` or `sync` drops it.
    Unneeded,
    /// Recorded before states kept reasons (record version 1).
    Unknown,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Requested(words) => write!(f, "requested as {words}"),
            Reason::Needed { by, relation } => write!(f, "needed by {by} for {relation}"),
            Reason::Unneeded => write!(f, "nothing needs it any more"),
            Reason::Unknown => write!(f, "no reason recorded"),
        }
    }
}

impl Reason {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Reason::Unknown => out.push(0),
            Reason::Requested(words) => {
                out.push(1);
                put_bytes(out, words.as_bytes());
            }
            Reason::Needed { by, relation } => {
                out.push(2);
                put_bytes(out, by.as_bytes());
                put_bytes(out, relation.as_bytes());
            }
            Reason::Unneeded => out.push(3),
        }
    }

    fn decode(r: &mut Reader) -> Option<Reason> {
        let text = |r: &mut Reader| String::from_utf8(r.bytes()?.to_vec()).ok();
        Some(match r.u8()? {
            0 => Reason::Unknown,
            1 => Reason::Requested(text(r)?),
            2 => Reason::Needed {
                by: text(r)?,
                relation: text(r)?,
            },
            3 => Reason::Unneeded,
            _ => return None,
        })
    }
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

/// What a walk over every state needs to pick one, read without decoding selections:
/// a command that looks at each state (recovery, the choice of an archived tree to build
/// on) then costs O(states), not O(states × packages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateHead {
    /// Its number.
    pub id: StateId,
    /// Where it is in its life.
    pub status: Status,
    /// The root directory object of its tree.
    pub root: TreeHash,
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
    /// Its [`StateHead`].
    pub fn head(&self) -> StateHead {
        StateHead {
            id: self.id,
            status: self.status,
            root: self.root,
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.push(2); // record version: 2 adds each selection's reason
        out.extend_from_slice(&self.id.0.to_be_bytes());
        out.extend_from_slice(&self.created.to_be_bytes());
        put_bytes(&mut out, self.summary.as_bytes());
        out.push(match self.status {
            Status::Candidate => 0,
            Status::Committed => 1,
            Status::InFlight => 2,
        });
        out.extend_from_slice(&self.parent.map_or(u64::MAX, |p| p.0).to_be_bytes());
        out.extend_from_slice(&self.root.0.to_be_bytes());
        out.extend_from_slice(&self.entries.to_be_bytes());
        out.extend_from_slice(&(self.selections.len() as u32).to_be_bytes());
        for s in &self.selections {
            out.extend_from_slice(&s.package.0);
            out.push(u8::from(s.explicit));
            s.reason.encode(&mut out);
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

    /// Reads only what [`StateHead`] holds, from the fixed start of the record.
    pub(crate) fn decode_head(bytes: &[u8]) -> Option<StateHead> {
        let mut r = Reader(bytes);
        if !(1..=2).contains(&r.u8()?) {
            return None;
        }
        let id = StateId(r.u64()?);
        r.u64()?; // created
        r.bytes()?; // summary
        let status = match r.u8()? {
            0 => Status::Candidate,
            1 => Status::Committed,
            2 => Status::InFlight,
            _ => return None,
        };
        r.u64()?; // parent
        let root = TreeHash(r.u128()?);
        Some(StateHead { id, status, root })
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<State> {
        let mut r = Reader(bytes);
        let version = r.u8()?;
        if !(1..=2).contains(&version) {
            return None;
        }
        let id = StateId(r.u64()?);
        let created = r.u64()?;
        let summary = String::from_utf8(r.bytes()?.to_vec()).ok()?;
        let status = match r.u8()? {
            0 => Status::Candidate,
            1 => Status::Committed,
            2 => Status::InFlight,
            _ => return None,
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
            let explicit = r.u8()? != 0;
            let reason = match version {
                1 => Reason::Unknown,
                _ => Reason::decode(&mut r)?,
            };
            selections.push(Selection {
                package,
                explicit,
                reason,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn state(selections: Vec<Selection>) -> State {
        State {
            id: StateId(3),
            created: 7,
            summary: "install nano".into(),
            status: Status::Committed,
            parent: Some(StateId(2)),
            selections,
            root: TreeHash(9),
            entries: 4,
            conflicts: Vec::new(),
            generated: vec![Generated {
                path: b"lib/ld.so.cache".to_vec(),
                trigger: "ldconfig".into(),
            }],
        }
    }

    #[test]
    fn every_reason_survives_a_round_trip() {
        let reasons = [
            Reason::Requested("binary(nano)".into()),
            Reason::Needed {
                by: "nano".into(),
                relation: "soname(libncursesw.so.6(x86_64))".into(),
            },
            Reason::Unneeded,
            Reason::Unknown,
        ];
        let selections = reasons
            .iter()
            .enumerate()
            .map(|(i, reason)| Selection {
                package: PackageId([i as u8; 32]),
                explicit: i == 0,
                reason: reason.clone(),
            })
            .collect();
        let state = state(selections);
        assert_eq!(State::decode(&state.encode()), Some(state));
    }

    #[test]
    fn a_head_reads_the_same_as_the_whole_record_and_refuses_damage() {
        for status in [Status::Candidate, Status::Committed, Status::InFlight] {
            let state = State {
                status,
                ..state(Vec::new())
            };
            let bytes = state.encode();
            assert_eq!(State::decode_head(&bytes), Some(state.head()));
            assert_eq!(state.head().root, TreeHash(9));
        }
        let bytes = state(Vec::new()).encode();
        let head_len = 1 + 8 + 8 + (4 + "install nano".len()) + 1 + 8 + 16;
        assert_eq!(State::decode_head(&bytes[..head_len - 1]), None);
        let mut bad_status = bytes.clone();
        bad_status[head_len - 25] = 9;
        assert_eq!(State::decode_head(&bad_status), None);
    }

    #[test]
    fn a_version_1_record_reads_with_unknown_reasons() {
        let mut bytes = state(Vec::new()).encode();
        // Rewrite as version 1: the same layout without reasons, and without the generated
        // files that later records end with (selection count, conflict count, one
        // generated entry: its count and two length-prefixed strings).
        bytes[0] = 1;
        let generated = 4 + (4 + b"lib/ld.so.cache".len()) + (4 + b"ldconfig".len());
        let count_at = bytes.len() - generated - 8;
        bytes[count_at..count_at + 4].copy_from_slice(&1u32.to_be_bytes());
        bytes.truncate(count_at + 4);
        bytes.extend_from_slice(&[5; 32]); // package id
        bytes.push(1); // explicit
        bytes.extend_from_slice(&0u32.to_be_bytes()); // no conflicts
        let decoded = State::decode(&bytes).expect("a version 1 record decodes");
        assert_eq!(
            decoded.selections,
            [Selection {
                package: PackageId([5; 32]),
                explicit: true,
                reason: Reason::Unknown,
            }]
        );
        assert!(decoded.generated.is_empty());
    }
}
