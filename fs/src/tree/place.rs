//! Placing every layout record at its resolved location, in tree order.
//!
//! Locations are kept in one byte arena instead of one allocation per record, with
//! components separated by NUL instead of `/`. No name contains NUL, so sorting those keys
//! bytewise sorts paths component by component: a directory comes right before everything
//! below it, and siblings are in bytewise order, which is exactly the order in which the
//! merge writes directory objects bottom-up.

use rayon::slice::ParallelSliceMut;

use super::input::Inputs;
use super::resolve::{Origin, Symlinks, Trace, join, resolve_parent, split_parent};

/// One record at its location.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Placed {
    start: usize,
    len: u32,
    pub(crate) origin: Origin,
}

/// A record below a symlink that cannot be followed: it has no place in the tree.
#[derive(Debug)]
pub(crate) struct Unplaced {
    /// Where the symlink sits (resolved).
    pub(crate) location: Vec<u8>,
    /// The record's path below the symlink: the rest of its parent, and its name.
    pub(crate) below: Vec<u8>,
    /// The symlink in the way.
    pub(crate) symlink: Origin,
    /// The record.
    pub(crate) entry: Origin,
}

/// Every record, placed and sorted, plus the ones that could not be placed.
pub(crate) struct Placement {
    keys: Vec<u8>,
    /// Sorted by location, then by priority.
    pub(crate) placed: Vec<Placed>,
    pub(crate) unplaced: Vec<Unplaced>,
}

impl Placement {
    /// The NUL-separated location of a placed record.
    pub(crate) fn key(&self, placed: &Placed) -> &[u8] {
        &self.keys[placed.start..placed.start + placed.len as usize]
    }
}

/// Resolves where each record lands and sorts the result; `trace` collects what a later
/// change of symlinks could disturb.
pub(crate) fn place(inputs: &Inputs<'_>, links: &Symlinks<'_>, trace: &mut Trace) -> Placement {
    let records: usize = inputs.layouts.iter().map(Vec::len).sum();
    let bytes: usize = inputs
        .layouts
        .iter()
        .flatten()
        .map(|e| e.path.as_bytes().len())
        .sum();
    let mut keys = Vec::with_capacity(bytes + bytes / 8);
    let mut placed = Vec::with_capacity(records);
    let mut unplaced = Vec::new();

    // Layouts list a directory's records together, so resolving each distinct parent once
    // in a row saves nearly every lookup.
    let mut last_parent: Option<&[u8]> = None;
    let mut resolved = Ok(Vec::new());
    for (package, layout) in inputs.layouts.iter().enumerate() {
        for (entry, record) in layout.iter().enumerate() {
            let origin = Origin {
                package: package as u32,
                entry: entry as u32,
            };
            let (parent, name) = split_parent(record.path.as_bytes());
            if links.is_empty() {
                let start = keys.len();
                push_key(&mut keys, parent, name);
                placed.push(Placed {
                    start,
                    len: (keys.len() - start) as u32,
                    origin,
                });
                continue;
            }
            if last_parent != Some(parent) {
                last_parent = Some(parent);
                let mut out = resolved.unwrap_or_default();
                resolved = match resolve_parent(links, trace, parent, &mut out) {
                    Ok(()) => Ok(out),
                    Err(failure) => Err((
                        failure
                            .symlink
                            .expect("every symlink of a whole build has an origin"),
                        failure.location,
                        failure.rest,
                    )),
                };
            }
            match &resolved {
                Ok(location) => {
                    let start = keys.len();
                    push_key(&mut keys, location, name);
                    placed.push(Placed {
                        start,
                        len: (keys.len() - start) as u32,
                        origin,
                    });
                }
                Err((symlink, location, rest)) => {
                    let mut below = rest.to_vec();
                    join(&mut below, name);
                    unplaced.push(Unplaced {
                        location: location.clone(),
                        below,
                        symlink: *symlink,
                        entry: origin,
                    });
                }
            }
        }
    }
    // A stable merge sort: records come in priority order, which it keeps for equal keys,
    // and each layout is already sorted by path (upstream writes them so), which it turns
    // into a merge of a few long runs.
    placed.par_sort_by(|a, b| {
        let ka = &keys[a.start..a.start + a.len as usize];
        let kb = &keys[b.start..b.start + b.len as usize];
        ka.cmp(kb)
    });
    Placement {
        keys,
        placed,
        unplaced,
    }
}

fn push_key(keys: &mut Vec<u8>, parent: &[u8], name: &[u8]) {
    let start = keys.len();
    keys.extend_from_slice(parent);
    if !parent.is_empty() {
        keys.push(b'/');
    }
    keys.extend_from_slice(name);
    for b in &mut keys[start..] {
        if *b == b'/' {
            *b = 0;
        }
    }
}

/// A NUL-separated key as a `/`-separated path, for people and for conflicts.
pub(crate) fn key_to_path(key: &[u8]) -> Vec<u8> {
    key.iter().map(|&b| if b == 0 { b'/' } else { b }).collect()
}
