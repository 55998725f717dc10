//! Building a state's tree from package layouts (DESIGN.md §5, issue 3 §3).
//!
//! A tree is content-addressed directory objects in the database ([`mossfs_db::tree`]).
//! [`build`] merges the layouts of a state's packages into one tree, stores every directory
//! object, and returns the root's hash with the conflicts it found. It is the only place
//! where layouts meet: symlinked directories are resolved here, and conflicts are found
//! here, so that the blit, the mount, `diff` and `verify` all see one answer.
//!
//! This module reads and writes the database only; it never touches files. Conflicts come
//! back as values, and the tree is built even when there are some, so that a candidate can
//! be mounted and inspected (it can never be committed: that is the caller's rule).
//!
//! The steps, one module each:
//! 1. `input`: read each layout and index; an asset's size comes from the index.
//! 2. `resolve`: collect every symlink of every package first, so that where a record
//!    lands does not depend on package order; then resolve `lib64/libfoo.so` to
//!    `lib/libfoo.so` when `lib64 -> lib`.
//! 3. `place`: give each record its resolved location and sort them in tree order.
//! 4. `conflict`: decide what each location shows and name disagreements.
//! 5. `merge`: write directory objects bottom-up in a single pass.
//!
//! Rules a caller can rely on:
//! - every parent directory is implied, mode `0o040755`, uid and gid 0, no owner, unless
//!   some package ships a record for it, which then supplies mode, uid, gid and owner;
//! - the same packages in the same priority order always give the same root hash;
//! - entries in an object are sorted bytewise by name;
//! - the first package in `packages` wins wherever one entry must be shown for a
//!   conflicted path, except that a directory always beats a non-directory;
//! - conflict paths are relative to `/usr` and resolved: a file shipped as
//!   `lib64/libfoo.so` under `lib64 -> lib` conflicts at `lib/libfoo.so`.
//!
//! Symlink semantics, decided here once for every consumer:
//! - every symlink can redirect what is shipped below it; a record lands wherever the
//!   kernel would put it if the symlink had been created first;
//! - the directory a symlink points at need not be shipped: what lands in it implies it;
//! - a symlink pointing at a file sends records below that file, which is then a
//!   file-versus-directory conflict at the file's path;
//! - a record below a symlink that cannot be followed (a target outside `/usr`, a loop or
//!   a chain of more than [`MAX_HOPS`]) is left out of the tree and reported as a conflict
//!   at the symlink's location: the symlink first, then, for each package that ships
//!   something below it, a directory holding what that package ships there;
//! - where packages disagree about a symlink, the first one by priority is followed, and
//!   the disagreement is a conflict; a symlink against a directory record shows the
//!   directory, while records below still follow the symlink, so that placement never
//!   depends on package order.

mod conflict;
mod edit;
mod incremental;
mod input;
mod merge;
mod place;
mod resolve;

use mossfs_db::{BuildIndex, Conflict, DbError, Node, NodeKind, StateId, TreeHash, WriteTxn};
use mossfs_format::{AssetHash, PackageId, RelPath};

pub use edit::{Edit, edit};
pub use resolve::{MAX_HOPS, MAX_RESOLVED_LEN};

/// Mode of a directory that no package ships a record for.
pub const IMPLIED_DIR_MODE: u32 = 0o040755;

/// A stored tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltTree {
    /// The root directory object, the tree's `/usr`.
    pub root: TreeHash,
    /// Every entry below the root, directories included.
    pub entries: u64,
    /// Paths where packages disagree, sorted by path. The tree is stored even so.
    pub conflicts: Vec<Conflict>,
    /// What the next build can start from, to be stored with the state; `None` for a tree
    /// with conflicts, which the next build makes from every layout again.
    pub index: Option<BuildIndex>,
}

/// Why a tree could not be built or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError {
    /// A package's layout could not be read.
    #[error("cannot read the layout of package {package}")]
    Layout {
        /// The package.
        package: PackageId,
        /// What the database said.
        #[source]
        source: DbError,
    },
    /// A package's index could not be read.
    #[error("cannot read the index of package {package}")]
    Index {
        /// The package.
        package: PackageId,
        /// What the database said.
        #[source]
        source: DbError,
    },
    /// A layout names an asset that no index lists, so its size is unknown.
    #[error(
        "package {package} ships /usr/{path} as asset {asset}, which no package's index lists; reinstall the package"
    )]
    MissingAsset {
        /// The package.
        package: PackageId,
        /// The record's path.
        path: RelPath,
        /// The asset.
        asset: AssetHash,
    },
    /// A directory object could not be stored.
    #[error("cannot store the directory object for /usr/{}", String::from_utf8_lossy(.path))]
    Store {
        /// The directory, relative to `/usr`.
        path: Vec<u8>,
        /// What the database said.
        #[source]
        source: DbError,
    },
    /// A directory object could not be read.
    #[error("cannot read the directory object for /usr/{}", String::from_utf8_lossy(.path))]
    Read {
        /// The directory, relative to `/usr`.
        path: Vec<u8>,
        /// What the database said.
        #[source]
        source: DbError,
    },
    /// A record lands on the reserved `usr/.stateID` through a symlink (the reader already
    /// refuses a layout that names it): the state marker every commit writes would clash
    /// with it.
    #[error(
        "package {package} places an entry at /usr/.stateID through a symlink; that path is reserved for the id of the state a tree belongs to"
    )]
    Reserved {
        /// The package whose entry the tree shows there.
        package: String,
    },
    /// Deeper than any tree [`build`] makes: the database is damaged.
    #[error(
        "the tree below /usr/{} is deeper than any path allows; the database is damaged, run 'mossfs verify'",
        String::from_utf8_lossy(.path)
    )]
    TooDeep {
        /// Where the walk stopped.
        path: Vec<u8>,
    },
}

/// Merges the layouts of `packages` into one tree and stores it.
///
/// `packages` are in priority order: the first wins where one entry must be shown for a
/// conflicted path. Every directory object is written with `put_tree`, children before
/// parents; objects that already exist (shared with other states) are not written again.
pub fn build(txn: &mut WriteTxn<'_>, packages: &[PackageId]) -> Result<BuiltTree, TreeError> {
    let inputs = input::Inputs::read(&*txn, packages)?;
    let links = resolve::Symlinks::collect(&inputs.layouts);
    let mut trace = Some(std::collections::HashSet::new());
    let mut placement = place::place(&inputs, &links, &mut trace);
    let unplaced = std::mem::take(&mut placement.unplaced);
    let merged = merge::merge(txn, &inputs, &placement)?;
    refuse_reserved(&*txn, merged.root)?;
    let mut conflicts = merged.conflicts;
    for found in conflict::unplaced_conflicts(txn, &inputs, unplaced)? {
        // A symlink that a directory record also claims conflicts there already: one
        // conflict per path, with every contender.
        match conflicts.iter_mut().find(|c| c.path == found.path) {
            Some(known) => {
                for node in found.contenders {
                    if !known.contenders.contains(&node) {
                        known.contenders.push(node);
                    }
                }
            }
            None => conflicts.push(found),
        }
    }
    conflicts.sort_by(|a, b| a.path.cmp(&b.path));
    let index = (conflicts.is_empty() && links.settled).then(|| {
        let mut footprint: Vec<Vec<u8>> = trace.unwrap_or_default().into_iter().collect();
        footprint.sort();
        let mut shared: Vec<(Vec<u8>, Vec<PackageId>)> = merged
            .shared
            .into_iter()
            .map(|(path, owners)| (path, owners.iter().map(|&p| packages[p as usize]).collect()))
            .collect();
        shared.sort();
        BuildIndex {
            root: merged.root,
            entries: merged.entries,
            packages: packages.to_vec(),
            shared,
            footprint,
        }
    });
    Ok(BuiltTree {
        root: merged.root,
        entries: merged.entries,
        conflicts,
        index,
    })
}

/// Builds the tree of `packages` as [`build`] does, from the tree of state `parent` and
/// the layouts of the packages that differ, when the parent left a record of its build
/// and the change cannot move what other packages ship (issue 13 §2): the cost then
/// follows the change, not the root. Otherwise, and wherever the change meets a conflict,
/// it builds from every layout, so the answer is always [`build`]'s.
pub fn build_on(
    txn: &mut WriteTxn<'_>,
    parent: Option<StateId>,
    packages: &[PackageId],
) -> Result<BuiltTree, TreeError> {
    if let Some(parent) = parent
        && let Some(built) = incremental::build_on(txn, parent, packages)
    {
        return Ok(built);
    }
    build(txn, packages)
}

/// Builds the tree of `packages` from the build `base` describes and the layouts of the
/// packages that differ, as [`build_on`] does; `None` when only [`build`] can give the
/// answer (a conflict, a symlink that moves what stays, or `base`'s tree is gone).
pub fn build_incremental(
    txn: &mut WriteTxn<'_>,
    base: &BuildIndex,
    packages: &[PackageId],
) -> Option<BuiltTree> {
    incremental::build(txn, base, packages)
}

/// Refuses a tree whose root holds [`mossfs_format::path::RESERVED`]. No layout can name
/// it, but a symlink to the root (`x -> .`) can still send a record there.
fn refuse_reserved(q: &impl mossfs_db::Query, root: TreeHash) -> Result<(), TreeError> {
    let read = |source| TreeError::Read {
        path: Vec::new(),
        source,
    };
    let entries = q.tree(root).and_then(|v| v.entries(root)).map_err(read)?;
    let Some(entry) = entries
        .iter()
        .find(|e| e.name == mossfs_format::path::RESERVED)
    else {
        return Ok(());
    };
    let package = match entry.node.owner {
        Some(id) => q
            .package(&id)
            .ok()
            .flatten()
            .map_or_else(|| id.to_string(), |r| r.meta.name),
        None => "(none)".to_owned(),
    };
    Err(TreeError::Reserved { package })
}

/// A directory that no package names: `rwxr-xr-x`, root's, owned by nobody.
pub(crate) fn implied_dir(hash: TreeHash) -> Node {
    Node {
        mode: IMPLIED_DIR_MODE,
        uid: 0,
        gid: 0,
        owner: None,
        kind: NodeKind::Directory(hash),
    }
}
