//! Making delta records: choosing a base for each new asset, and encoding the record.
//!
//! Base choice follows swupd and OSTree (DESIGN.md §11): the old asset at the same path
//! first; then the old file whose path is the same once version numbers are taken out
//! (`libfoo.so.1.2.3` and `libfoo.so.1.2.4`, `python3.11/x.py` and `python3.12/x.py`),
//! the closest in size; then an old file of the same name anywhere, or of the same
//! extension within a quarter of its size. Files under [`MIN_PATCH_SIZE`] and pairs above
//! the pair limit are stored whole. A patch is kept only if its frame is smaller than the
//! asset compressed alone, and every record is applied once before it is returned, so a
//! record that does not rebuild its target never leaves this module.
//!
//! This module is pure: callers hand in bytes and decide where they come from, and they
//! decide the parallelism (each call is independent).

use std::collections::{HashMap, HashSet};
use std::io;

use super::{Base, DeltaRecord, MAX_WINDOW_LOG, MIN_WINDOW_LOG, RecordHeader, Target};
use crate::hash::AssetHash;
use crate::index::IndexEntry;
use crate::layout::{EntryKind, LayoutEntry};

/// Below this size an asset is stored whole: a patch frame's own overhead eats the gain,
/// as swupd's server found.
pub const MIN_PATCH_SIZE: u64 = 512;

/// By default a patch is made only when base plus target fit in 160 MiB, so applying any
/// record of a delta stays under 256 MiB of memory with its frame; bigger pairs are stored
/// whole and decoded as a stream.
pub const DEFAULT_PAIR_LIMIT: u64 = 160 << 20;

/// The zstd level of delta frames: 19, as the seed notes' `zstd -19 --patch-from`.
pub const DEFAULT_LEVEL: i32 = 19;

/// How to make records.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// zstd level for patches and whole frames.
    pub level: i32,
    /// The largest base plus target that is patched.
    pub pair_limit: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            level: DEFAULT_LEVEL,
            pair_limit: DEFAULT_PAIR_LIMIT,
        }
    }
}

/// One asset the delta must rebuild, and the base chosen for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pairing {
    /// The new asset.
    pub target: AssetHash,
    /// Its position in the new index: how a record names it.
    pub position: u32,
    /// Its length.
    pub target_size: u64,
    /// The old asset to patch against, if any is close enough.
    pub base: Option<Base>,
}

/// Chooses, for every asset of the new package that the old package lacks, the old asset
/// to patch against (see the module docs). The result is in the new index's order.
pub fn choose_bases(
    old_layout: &[LayoutEntry],
    old_index: &[IndexEntry],
    new_layout: &[LayoutEntry],
    new_index: &[IndexEntry],
) -> Vec<Pairing> {
    let old_sizes: HashMap<AssetHash, u64> =
        old_index.iter().map(|e| (e.digest, e.len())).collect();
    // A record names a base by its first position in the old index.
    let mut old_positions: HashMap<AssetHash, u32> = HashMap::new();
    for (position, entry) in old_index.iter().enumerate() {
        old_positions.entry(entry.digest).or_insert(position as u32);
    }
    let old_files: Vec<(&[u8], AssetHash, u64)> = old_layout
        .iter()
        .filter_map(|entry| match entry.kind {
            EntryKind::Regular(hash) => old_sizes
                .get(&hash)
                .map(|&size| (entry.path.as_bytes(), hash, size)),
            _ => None,
        })
        .collect();
    let by_path: HashMap<&[u8], (AssetHash, u64)> =
        old_files.iter().map(|&(p, h, s)| (p, (h, s))).collect();
    let mut by_key: HashMap<Vec<u8>, Vec<(AssetHash, u64)>> = HashMap::new();
    let mut by_name: HashMap<Vec<u8>, Vec<(AssetHash, u64)>> = HashMap::new();
    let mut by_ext: HashMap<&[u8], Vec<(AssetHash, u64)>> = HashMap::new();
    for &(path, hash, size) in &old_files {
        by_key
            .entry(versionless(path))
            .or_default()
            .push((hash, size));
        by_name
            .entry(versionless(file_name(path)))
            .or_default()
            .push((hash, size));
        by_ext
            .entry(extension(path))
            .or_default()
            .push((hash, size));
    }
    let new_sizes: HashMap<AssetHash, u64> =
        new_index.iter().map(|e| (e.digest, e.len())).collect();
    // The first path (in layout order) that uses each new asset picks its base.
    let mut paths: HashMap<AssetHash, &[u8]> = HashMap::new();
    for entry in new_layout {
        if let EntryKind::Regular(hash) = entry.kind {
            paths.entry(hash).or_insert(entry.path.as_bytes());
        }
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (position, entry) in new_index.iter().enumerate() {
        let target = entry.digest;
        if old_sizes.contains_key(&target) || !seen.insert(target) {
            continue;
        }
        let target_size = new_sizes.get(&target).copied().unwrap_or(0);
        let base = if target_size < MIN_PATCH_SIZE {
            None
        } else {
            paths
                .get(&target)
                .and_then(|path| pick(path, target_size, &by_path, &by_key, &by_name, &by_ext))
                .and_then(|(hash, size)| {
                    old_positions.get(&hash).map(|&position| Base {
                        position,
                        hash,
                        size,
                    })
                })
        };
        out.push(Pairing {
            target,
            position: position as u32,
            target_size,
            base,
        });
    }
    out
}

fn pick(
    path: &[u8],
    size: u64,
    by_path: &HashMap<&[u8], (AssetHash, u64)>,
    by_key: &HashMap<Vec<u8>, Vec<(AssetHash, u64)>>,
    by_name: &HashMap<Vec<u8>, Vec<(AssetHash, u64)>>,
    by_ext: &HashMap<&[u8], Vec<(AssetHash, u64)>>,
) -> Option<(AssetHash, u64)> {
    if let Some(&base) = by_path.get(path) {
        return Some(base);
    }
    let closest = |list: Option<&Vec<(AssetHash, u64)>>, within: Option<u64>| {
        list?
            .iter()
            .copied()
            .filter(|&(_, s)| within.is_none_or(|w| s.abs_diff(size) <= w))
            .min_by_key(|&(h, s)| (s.abs_diff(size), h))
    };
    closest(by_key.get(&versionless(path)), None)
        .or_else(|| closest(by_name.get(&versionless(file_name(path))), Some(size / 2)))
        .or_else(|| closest(by_ext.get(extension(path)), Some(size / 4)))
}

/// The path with every run of digits and dots that holds a digit replaced by `#`:
/// `lib/libfoo.so.1.2.3` → `lib/libfoo.so#`, `lib/python3.11/os.py` → `lib/python#/os.py`.
pub fn versionless(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let run = path[i..]
            .iter()
            .take_while(|b| b.is_ascii_digit() || **b == b'.')
            .count();
        if run > 0 && path[i..i + run].iter().any(u8::is_ascii_digit) {
            out.push(b'#');
            i += run;
        } else if run > 0 {
            out.extend_from_slice(&path[i..i + run]);
            i += run;
        } else {
            out.push(path[i]);
            i += 1;
        }
    }
    out
}

fn file_name(path: &[u8]) -> &[u8] {
    path.rsplit(|&b| b == b'/').next().unwrap_or(path)
}

/// The text after the file name's last dot, or nothing.
fn extension(path: &[u8]) -> &[u8] {
    let name = file_name(path);
    match name.iter().rposition(|&b| b == b'.') {
        Some(dot) if dot > 0 => &name[dot + 1..],
        _ => b"",
    }
}

/// `ceil(log2(n))`, clamped to the window logs zstd accepts.
fn window_log_for(n: u64, max: u8) -> u8 {
    let log = if n <= 1 {
        0
    } else {
        64 - (n - 1).leading_zeros()
    };
    (log as u8).clamp(MIN_WINDOW_LOG, max)
}

fn zstd_error(code: usize) -> io::Error {
    io::Error::other(zstd::zstd_safe::get_error_name(code))
}

/// An asset with its bytes, as a record is made from.
#[derive(Debug, Clone, Copy)]
pub struct Bytes<'a> {
    /// Its xxh3-128.
    pub hash: AssetHash,
    /// Its position in the new index (a target) or the old one (a base).
    pub position: u32,
    /// Its bytes.
    pub bytes: &'a [u8],
}

/// Compresses `targets`, concatenated, with `bases`, concatenated, as a raw prefix and
/// long-distance matching (or alone when there are no bases), the window covering both,
/// into one record.
pub fn record(bases: &[Bytes<'_>], targets: &[Bytes<'_>], level: i32) -> io::Result<DeltaRecord> {
    let joined;
    let src = match targets {
        [one] => one.bytes,
        many => {
            joined = many.iter().map(|t| t.bytes).collect::<Vec<_>>().concat();
            joined.as_slice()
        }
    };
    let prefix_joined;
    let prefix = match bases {
        [] => None,
        [one] => Some(one.bytes),
        many => {
            prefix_joined = many.iter().map(|b| b.bytes).collect::<Vec<_>>().concat();
            Some(prefix_joined.as_slice())
        }
    };
    let window_log = match prefix {
        // A whole frame never needs a window larger than its targets; 27 is zstd's own cap
        // for streaming decoders by default, and keeps a hostile-looking log out of honest
        // stones.
        None => window_log_for(src.len() as u64, 27),
        Some(p) => window_log_for(
            (p.len() as u64).saturating_add(src.len() as u64),
            MAX_WINDOW_LOG,
        ),
    };
    let frame = compress(src, prefix, window_log, level)?;
    Ok(DeltaRecord {
        header: RecordHeader {
            window_log,
            targets: targets
                .iter()
                .map(|t| Target {
                    position: t.position,
                    hash: t.hash,
                    size: t.bytes.len() as u64,
                })
                .collect(),
            bases: bases.iter().map(|b| b.position).collect(),
            frame_len: frame.len() as u64,
        },
        frame,
    })
}

fn compress(src: &[u8], prefix: Option<&[u8]>, window_log: u8, level: i32) -> io::Result<Vec<u8>> {
    use zstd::zstd_safe::{CCtx, CParameter};
    let mut cctx = CCtx::create();
    cctx.set_parameter(CParameter::CompressionLevel(level))
        .map_err(zstd_error)?;
    cctx.set_parameter(CParameter::WindowLog(u32::from(window_log)))
        .map_err(zstd_error)?;
    cctx.set_parameter(CParameter::ContentSizeFlag(true))
        .map_err(zstd_error)?;
    cctx.set_parameter(CParameter::ChecksumFlag(false))
        .map_err(zstd_error)?;
    if let Some(prefix) = prefix {
        cctx.set_parameter(CParameter::EnableLongDistanceMatching(true))
            .map_err(zstd_error)?;
        cctx.ref_prefix(prefix).map_err(zstd_error)?;
    }
    let mut frame = Vec::with_capacity(zstd::zstd_safe::compress_bound(src.len()));
    cctx.compress2(&mut frame, src).map_err(zstd_error)?;
    Ok(frame)
}

/// The record for one target: the patch when there is a base, the pair is within the
/// limit and the patch is smaller than the whole frame; the whole frame otherwise.
fn single(
    base: Option<Bytes<'_>>,
    target: Bytes<'_>,
    options: &Options,
) -> io::Result<DeltaRecord> {
    let whole = record(&[], &[target], options.level)?;
    match base {
        Some(base)
            if target.bytes.len() as u64 >= MIN_PATCH_SIZE
                && (base.bytes.len() as u64 + target.bytes.len() as u64) <= options.pair_limit =>
        {
            let patch = record(&[base], &[target], options.level)?;
            Ok(if patch.frame.len() < whole.frame.len() {
                patch
            } else {
                whole
            })
        }
        _ => Ok(whole),
    }
}

/// The encoded size of records in a payload.
fn encoded(records: &[DeltaRecord]) -> usize {
    records.iter().map(|r| r.encode().len()).sum()
}

/// One unit of work for [`best`]: a target alone, or a group of small targets that are
/// tried together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// Indexes into the pairings.
    pub pairings: Vec<usize>,
}

/// Splits the pairings into units: every target of at most [`GROUP_TARGET_MAX`] bytes
/// goes, in the pairings' order, into groups whose bases plus targets stay within
/// [`GROUP_LIMIT`] (and the pair limit); bigger targets stand alone. Each unit is made
/// independently, so callers may make them in parallel.
pub fn units(pairings: &[Pairing], options: &Options) -> Vec<Unit> {
    let limit = GROUP_LIMIT.min(options.pair_limit);
    let mut out = Vec::new();
    let mut group = Vec::new();
    let mut group_size = 0u64;
    for (i, p) in pairings.iter().enumerate() {
        let size = p.target_size + p.base.map_or(0, |b| b.size);
        if p.target_size > GROUP_TARGET_MAX || size > limit {
            out.push(Unit { pairings: vec![i] });
            continue;
        }
        if group_size + size > limit && !group.is_empty() {
            out.push(Unit {
                pairings: std::mem::take(&mut group),
            });
            group_size = 0;
        }
        group.push(i);
        group_size += size;
    }
    if !group.is_empty() {
        out.push(Unit { pairings: group });
    }
    out
}

/// Targets up to this size are tried in a group with other small targets: most files of a
/// package are small, and what they share (a new version string, a changed inline
/// function) is then stored once, as a whole-package `--patch-from` stores it.
pub const GROUP_TARGET_MAX: u64 = 1 << 20;

/// The level of a group's frame: at the default level or above, zstd's strongest (22,
/// `--ultra`), whose larger match tables find more in a prefix of many files (libc6's
/// changed files: 1.1% smaller than at 19), where a single pair gains nothing from them.
pub fn group_level(level: i32) -> i32 {
    if level >= DEFAULT_LEVEL {
        level.max(22)
    } else {
        level
    }
}

/// A group's bases plus targets stay within this, so applying one stays far below the
/// memory of a big single pair.
pub const GROUP_LIMIT: u64 = 32 << 20;

/// The records for one unit. A unit of one target gets its best single record; a group
/// gets one record for all its targets, against all their bases, if that encodes smaller
/// than the targets' single records, and the single records otherwise. `old` and `new`
/// give the bytes of an old and a new asset. Every record is applied once, its bases
/// looked up in `old_index` (the old package's index, as whoever applies it will), and its
/// outputs hashed before it is returned.
pub fn best<'a>(
    old_index: &[IndexEntry],
    pairings: &[Pairing],
    unit: &Unit,
    old: &dyn Fn(AssetHash) -> Option<&'a [u8]>,
    new: &dyn Fn(AssetHash) -> Option<&'a [u8]>,
    options: &Options,
) -> io::Result<Vec<DeltaRecord>> {
    let mut singles = Vec::with_capacity(unit.pairings.len());
    let mut targets = Vec::with_capacity(unit.pairings.len());
    let mut bases: Vec<Bytes<'a>> = Vec::new();
    for &i in &unit.pairings {
        let p = &pairings[i];
        let bytes = new(p.target).ok_or_else(|| {
            io::Error::other(format!("the new stone's content lacks {}", p.target))
        })?;
        let target = Bytes {
            hash: p.target,
            position: p.position,
            bytes,
        };
        let base = p.base.and_then(|b| {
            old(b.hash).map(|bytes| Bytes {
                hash: b.hash,
                position: b.position,
                bytes,
            })
        });
        singles.push(single(base, target, options)?);
        targets.push(target);
        if let Some(base) = base
            && !bases.iter().any(|b| b.hash == base.hash)
        {
            bases.push(base);
        }
    }
    let records = if targets.len() > 1 {
        let group = record(&bases, &targets, group_level(options.level))?;
        if group.encode().len() < encoded(&singles) {
            vec![group]
        } else {
            singles
        }
    } else {
        singles
    };
    for record in &records {
        let given: Vec<&[u8]> = record
            .header
            .bases
            .iter()
            .filter_map(|&p| bases.iter().find(|x| x.position == p).map(|x| x.bytes))
            .collect();
        record
            .apply(old_index, &given, &mut |_, _| Ok(()))
            .map_err(|e| {
                io::Error::other(format!(
                    "the record made for {} does not apply: {e}",
                    record.header.targets[0].hash
                ))
            })?;
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_numbers_are_taken_out_of_paths() {
        assert_eq!(versionless(b"lib/libfoo.so.1.2.3"), b"lib/libfoo.so#");
        assert_eq!(versionless(b"lib/libfoo.so.1.2.4"), b"lib/libfoo.so#");
        assert_eq!(versionless(b"lib/python3.11/os.py"), b"lib/python#/os.py");
        assert_eq!(versionless(b"share/doc/README"), b"share/doc/README");
        assert_eq!(extension(b"lib/a.so"), b"so");
        assert_eq!(extension(b"lib/.hidden"), b"");
    }

    fn regular(path: &str, hash: u128) -> LayoutEntry {
        LayoutEntry {
            uid: 0,
            gid: 0,
            mode: 0o100644,
            tag: 0,
            kind: EntryKind::Regular(AssetHash(hash)),
            path: crate::RelPath::new(path).unwrap(),
        }
    }

    #[test]
    fn bases_fall_back_from_path_to_version_to_name_to_extension() {
        let old_layout = [
            regular("bin/tool", 1),
            regular("lib/libfoo.so.1.2.3", 2),
            regular("share/a/notes.txt", 3),
            regular("share/a/data.bin", 4),
            regular("share/a/unchanged", 5),
        ];
        let old_index = crate::layout_index([
            (AssetHash(1), 5000),
            (AssetHash(2), 9000),
            (AssetHash(3), 2000),
            (AssetHash(4), 10_000),
            (AssetHash(5), 700),
        ]);
        let new_layout = [
            regular("bin/tool", 11),
            regular("lib/libfoo.so.1.2.4", 12),
            regular("share/b/notes.txt", 13),
            regular("share/b/other.bin", 14),
            regular("share/b/far.bin", 15),
            regular("share/b/odd.dat", 16),
            regular("share/b/tiny.bin", 17),
            regular("share/a/unchanged", 5),
        ];
        let new_index = crate::layout_index([
            (AssetHash(11), 5100),
            (AssetHash(12), 9100),
            (AssetHash(13), 2100),
            (AssetHash(14), 9000),
            (AssetHash(15), 30_000),
            (AssetHash(16), 10_000),
            (AssetHash(17), 100),
            (AssetHash(5), 700),
        ]);
        let pairings = choose_bases(&old_layout, &old_index, &new_layout, &new_index);
        let base = |target: u128| {
            pairings
                .iter()
                .find(|p| p.target == AssetHash(target))
                .map(|p| p.base.map(|b| b.hash.0))
        };
        assert_eq!(base(11), Some(Some(1)), "same path");
        assert_eq!(base(12), Some(Some(2)), "same path without the version");
        assert_eq!(base(13), Some(Some(3)), "same name elsewhere");
        assert_eq!(
            base(14),
            Some(Some(4)),
            "same extension, size within a quarter"
        );
        assert_eq!(
            base(15),
            Some(None),
            "same extension, but three times the size"
        );
        assert_eq!(base(16), Some(None), "nothing alike");
        assert_eq!(base(17), Some(None), "too small to patch");
        assert_eq!(base(5), None, "the old package has it: no record");
    }

    fn bytes(data: &[u8], position: u32) -> Bytes<'_> {
        Bytes {
            hash: AssetHash::of(data),
            position,
            bytes: data,
        }
    }

    /// An old index listing `bases` in order.
    fn index_of(bases: &[&[u8]]) -> Vec<IndexEntry> {
        crate::layout_index(bases.iter().map(|b| (AssetHash::of(b), b.len() as u64)))
    }

    fn rebuilt(record: &DeltaRecord, bases: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut out = vec![Vec::new(); record.header.targets.len()];
        let old_index = index_of(bases);
        record
            .apply(&old_index, bases, &mut |i, b| {
                out[i].extend_from_slice(b);
                Ok(())
            })
            .unwrap();
        out
    }

    #[test]
    fn a_patch_against_a_similar_base_is_small_and_applies() {
        let base: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i * 7919).to_le_bytes())
            .collect();
        let mut target = base.clone();
        target[1000] ^= 0xff;
        target.extend_from_slice(b"a new tail");
        let record = single(
            Some(bytes(&base, 0)),
            bytes(&target, 0),
            &Options::default(),
        )
        .unwrap();
        assert_eq!(record.header.method(), super::super::Method::Patch);
        assert!(
            record.frame.len() < 200,
            "patch of {} bytes",
            record.frame.len()
        );
        assert_eq!(rebuilt(&record, &[&base]), vec![target.clone()]);
        // Another base is refused by name.
        let err = record
            .apply(&index_of(&[&base]), &[&target], &mut |_, _| Ok(()))
            .unwrap_err();
        assert!(
            matches!(err, super::super::ApplyError::WrongBase { .. }),
            "{err}"
        );
    }

    #[test]
    fn an_unrelated_base_gives_a_whole_record() {
        let base = vec![0u8; 4096];
        let target: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let record = single(
            Some(bytes(&base, 0)),
            bytes(&target, 0),
            &Options::default(),
        )
        .unwrap();
        assert_eq!(record.header.method(), super::super::Method::Whole);
        assert_eq!(rebuilt(&record, &[]), vec![target]);
    }

    #[test]
    fn small_targets_that_share_new_bytes_become_one_record() {
        // Three old files, and three new ones that each gained the same 3 KiB of new,
        // incompressible text: a group stores it once, single patches three times.
        let noise: Vec<u8> = (0..3072u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
            .collect();
        let olds: Vec<Vec<u8>> = (0..3u8)
            .map(|k| (0..20_000u32).map(|i| (i % 251) as u8 ^ k).collect())
            .collect();
        let news: Vec<Vec<u8>> = olds
            .iter()
            .map(|o| [o.as_slice(), noise.as_slice()].concat())
            .collect();
        let pairings: Vec<Pairing> = (0..3)
            .map(|k| Pairing {
                target: AssetHash::of(&news[k]),
                position: k as u32,
                target_size: news[k].len() as u64,
                base: Some(Base {
                    position: k as u32,
                    hash: AssetHash::of(&olds[k]),
                    size: olds[k].len() as u64,
                }),
            })
            .collect();
        let options = Options::default();
        let units = units(&pairings, &options);
        assert_eq!(
            units,
            vec![Unit {
                pairings: vec![0, 1, 2]
            }]
        );
        let find = |list: &'static [Vec<u8>]| {
            move |h: AssetHash| {
                list.iter()
                    .find(|b| AssetHash::of(b) == h)
                    .map(Vec::as_slice)
            }
        };
        let olds: &'static [Vec<u8>] = Box::leak(olds.into_boxed_slice());
        let news_static: &'static [Vec<u8>] = Box::leak(news.clone().into_boxed_slice());
        let old_refs: Vec<&[u8]> = olds.iter().map(Vec::as_slice).collect();
        let records = best(
            &index_of(&old_refs),
            &pairings,
            &units[0],
            &find(olds),
            &find(news_static),
            &options,
        )
        .unwrap();
        assert_eq!(records.len(), 1, "one record for the group");
        let record = &records[0];
        assert_eq!(record.header.targets.len(), 3);
        assert_eq!(record.header.bases.len(), 3);
        assert!(
            record.frame.len() < 2 * noise.len(),
            "the shared bytes are stored once: {} bytes",
            record.frame.len()
        );
        let given: Vec<&[u8]> = olds.iter().map(Vec::as_slice).collect();
        assert_eq!(rebuilt(record, &given), news);
    }
}
