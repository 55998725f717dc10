//! What a state's tree build leaves for the next one, so that the next state's tree can be
//! built from this one and the packages that change (issue 13 §2), not from every layout.
//!
//! A tree records one owner per path; a path that several packages ship identically has
//! more. This record keeps those extra owners, the tree as it was built (before transaction
//! triggers added to it), and the places where resolving a path looked through a symlink,
//! which a change must not disturb for the old placement to stay valid. It is written
//! only for a tree without conflicts, in the transaction that records the state.

use heed::byteorder::BigEndian;
use heed::types::{Bytes, U64};
use heed::{CommitOrAbort, Database, Env, WithoutTls};
use mossfs_format::PackageId;

use crate::codec::{Reader, put_bytes};
use crate::tree::TreeHash;

/// The staging record of one state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildIndex {
    /// The root directory object as the packages alone make it.
    pub root: TreeHash,
    /// Entries below that root.
    pub entries: u64,
    /// The packages it was built from, in priority order.
    pub packages: Vec<PackageId>,
    /// Every path (relative to `/usr`, `/`-separated) that two or more packages ship, each
    /// with those packages, sorted by path. A path with one owner is found in the tree.
    pub shared: Vec<(Vec<u8>, Vec<PackageId>)>,
    /// Every location that resolving a layout path looked up and found a symlink at, or
    /// looked up while following a symlink's target, sorted. Adding or removing a symlink
    /// at one of them could move records of packages that do not change.
    pub footprint: Vec<Vec<u8>>,
}

impl BuildIndex {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.push(1); // record version
        out.extend_from_slice(&self.root.0.to_be_bytes());
        out.extend_from_slice(&self.entries.to_be_bytes());
        out.extend_from_slice(&(self.packages.len() as u32).to_be_bytes());
        for package in &self.packages {
            out.extend_from_slice(&package.0);
        }
        out.extend_from_slice(&(self.shared.len() as u32).to_be_bytes());
        for (path, owners) in &self.shared {
            put_bytes(&mut out, path);
            out.extend_from_slice(&(owners.len() as u32).to_be_bytes());
            for owner in owners {
                out.extend_from_slice(&owner.0);
            }
        }
        out.extend_from_slice(&(self.footprint.len() as u32).to_be_bytes());
        for key in &self.footprint {
            put_bytes(&mut out, key);
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<BuildIndex> {
        let mut r = Reader(bytes);
        if r.u8()? != 1 {
            return None;
        }
        let root = TreeHash(r.u128()?);
        let entries = r.u64()?;
        let count = r.u32()? as usize;
        let mut packages = Vec::with_capacity(count.min(bytes.len() / 32));
        for _ in 0..count {
            packages.push(PackageId(r.take(32)?.try_into().ok()?));
        }
        let count = r.u32()? as usize;
        let mut shared = Vec::with_capacity(count.min(bytes.len() / 8));
        for _ in 0..count {
            let path = r.bytes()?.to_vec();
            let n = r.u32()? as usize;
            let mut owners = Vec::with_capacity(n.min(bytes.len() / 32));
            for _ in 0..n {
                owners.push(PackageId(r.take(32)?.try_into().ok()?));
            }
            shared.push((path, owners));
        }
        let count = r.u32()? as usize;
        let mut footprint = Vec::with_capacity(count.min(bytes.len() / 4));
        for _ in 0..count {
            footprint.push(r.bytes()?.to_vec());
        }
        if !r.0.is_empty() {
            return None;
        }
        Some(BuildIndex {
            root,
            entries,
            packages,
            shared,
            footprint,
        })
    }
}

/// Opens (creating if needed) the `staging` table: state id → [`BuildIndex`].
pub(crate) fn open(
    env: &Env<WithoutTls>,
) -> heed::Result<Database<'static, U64<BigEndian>, Bytes>> {
    let wtxn = env.write_txn()?;
    Ok(env
        .create_databases_and_commit(wtxn, |opener, wtxn| -> heed::Result<_> {
            Ok(CommitOrAbort::<_, ()>::Commit(
                opener.create_database(wtxn, Some("staging"))?,
            ))
        })?
        .unwrap_commit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_index_survives_a_round_trip_and_damage_is_refused() {
        let index = BuildIndex {
            root: TreeHash(7),
            entries: 42,
            packages: vec![PackageId([2; 32]), PackageId([1; 32])],
            shared: vec![(
                b"share/doc".to_vec(),
                vec![PackageId([1; 32]), PackageId([2; 32])],
            )],
            footprint: vec![b"lib64".to_vec(), b"lib".to_vec()],
        };
        let bytes = index.encode();
        assert_eq!(BuildIndex::decode(&bytes), Some(index));
        assert_eq!(BuildIndex::decode(&bytes[..bytes.len() - 1]), None);
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(BuildIndex::decode(&longer), None);
    }
}
