//! A deterministic synthetic corpus, shaped like a distribution's `/usr`.
//!
//! Real package sets are too small to show how mossfs scales, and vary by machine; this one
//! is any size and the same everywhere. The same [`SyntheticSpec`] always gives
//! byte-identical stones: every package draws from its own random stream, seeded by the
//! spec's seed and the package's number, so the rayon schedule cannot change a byte, and
//! each stone is compressed on one thread (multithreaded zstd is not promised to match).
//!
//! Package `synth-NNNNN` ships, in this order:
//! - `bin/toolNNNNN`, so `bin/` is a parent shared by every package;
//! - `share/doc/pkgNNNNN/copyright`, one of eight licence texts shared by all packages;
//! - then, for each further entry, drawn at random: a regular file in `lib/pkgNNNNN/dK/`
//!   (binary-like bytes) or `share/pkgNNNNN/dK/` (text), about 40 entries per directory;
//!   about 10% symlinks to a file beside them; 2% more tools in `bin/`; 1% empty files;
//!   1% empty directories. About 5% of the files take their bytes from a pool shared by
//!   the whole corpus, so the store dedupes them across packages.
//!
//! File sizes average the spec's `file_size`: 98% are between 1 byte and that size, 2% are
//! 8 to 42 times it. No two packages share a file path, and none ships a directory symlink,
//! so the whole corpus installs together without a conflict.

use std::io;
use std::path::{Path, PathBuf};

use mossfs_format::{Meta, RelPath, WriterOptions};
use rayon::prelude::*;

use self::content::{Rng, binary, file_size, text};
use super::pack::{SourceEntry, is_valid_name, pack_entries};
use super::{FAST, invalid};

mod content;

/// Entries per package when the spec leaves the package count open.
pub const ENTRIES_PER_PACKAGE: usize = 500;

/// Entries in every directory `dK` before the next one starts.
const PER_DIRECTORY: usize = 40;

/// What to generate.
#[derive(Debug, Clone)]
pub struct SyntheticSpec {
    /// Layout entries across all the bulk packages (the small package is extra).
    pub entries: usize,
    /// How many packages share them; `None` means one per [`ENTRIES_PER_PACKAGE`].
    pub packages: Option<usize>,
    /// Changes every byte of content, not the shape.
    pub seed: u64,
    /// Average regular file size in bytes.
    pub file_size: u64,
    /// Also write [`small_package`] under this name.
    pub small_package: Option<String>,
    /// The small package's version; a different version changes its bytes.
    pub small_version: String,
    /// How to write each stone.
    pub options: WriterOptions,
}

impl SyntheticSpec {
    /// `entries` entries with every other setting at its default: 500 entries per
    /// package, seed 0, 512-byte files, no small package, [`FAST`] writing.
    pub fn new(entries: usize) -> Self {
        SyntheticSpec {
            entries,
            packages: None,
            seed: 0,
            file_size: 512,
            small_package: None,
            small_version: "1".to_owned(),
            options: FAST,
        }
    }

    /// The number of bulk packages: as asked, or one per 500 entries (at least one).
    pub fn package_count(&self) -> usize {
        match self.packages {
            Some(n) => n,
            None if self.entries == 0 => 0,
            None => (self.entries / ENTRIES_PER_PACKAGE).max(1),
        }
    }

    /// The entries of bulk package `number`, in layout order.
    fn count_for(&self, number: usize) -> usize {
        let packages = self.package_count();
        self.entries / packages + usize::from(number < self.entries % packages)
    }
}

/// Writes the corpus into `out` and returns the stones' paths: the bulk packages in
/// order, then the small package if the spec asks for one.
///
/// Fails with `InvalidInput` when there are more packages than entries (every package
/// ships at least one), or entries but no packages.
pub fn synthetic(out: &Path, spec: &SyntheticSpec) -> io::Result<Vec<PathBuf>> {
    let packages = spec.package_count();
    if packages > spec.entries || (packages == 0 && spec.entries > 0) {
        return Err(invalid(format!(
            "cannot split {} entries into {packages} packages of at least one entry",
            spec.entries
        )));
    }
    let pool = Pool::new(spec.seed, spec.file_size);
    let width = packages.to_string().len().max(5);
    let mut paths = (0..packages)
        .into_par_iter()
        .map(|number| {
            let tag = format!("{number:0width$}");
            let meta = Meta {
                name: format!("synth-{tag}"),
                version: "1.0".to_owned(),
                release: 1,
                build_release: 1,
                architecture: "x86_64".to_owned(),
                summary: format!("Synthetic benchmark package {number}"),
                ..Meta::default()
            };
            let entries = bulk_entries(spec, &pool, number, &tag);
            pack_entries(out, &meta, entries, spec.options)
        })
        .collect::<io::Result<Vec<_>>>()?;
    if let Some(name) = &spec.small_package {
        paths.push(small_package(out, name, &spec.small_version, spec.options)?);
    }
    Ok(paths)
}

/// Writes the five-entry package of the "one package changes" benchmark: `bin/NAME`,
/// `lib/NAME/libNAME.so.1` and a `libNAME.so` symlink to it, `share/NAME/README` and
/// `share/doc/NAME/copyright`. Its bytes depend on `name` and `version` only, so two
/// versions of it differ in every file but not in shape.
///
/// The name must not be one the bulk packages use for paths (`toolNNNNN`, `pkgNNNNN`).
pub fn small_package(
    out: &Path,
    name: &str,
    version: &str,
    options: WriterOptions,
) -> io::Result<PathBuf> {
    if !is_valid_name(name) {
        return Err(invalid(format!("`{name}` is not a valid package name")));
    }
    let seed = mossfs_format::AssetHash::of(format!("{name}\0{version}").as_bytes()).0 as u64;
    let mut rng = Rng::new(seed, SMALL_STREAM, 0);
    let path = |text: String| RelPath::new(text).expect("a valid name makes valid components");
    let soname = format!("lib{name}.so.1");
    let entries = vec![
        SourceEntry::bytes(path(format!("bin/{name}")), binary(&mut rng, 4000), 0o755),
        SourceEntry::bytes(
            path(format!("lib/{name}/{soname}")),
            binary(&mut rng, 9000),
            0o644,
        ),
        SourceEntry::symlink(path(format!("lib/{name}/lib{name}.so")), soname),
        SourceEntry::bytes(
            path(format!("share/{name}/README")),
            text(&mut rng, 700),
            0o644,
        ),
        SourceEntry::bytes(
            path(format!("share/doc/{name}/copyright")),
            text(&mut rng, 1500),
            0o644,
        ),
    ];
    let meta = Meta {
        name: name.to_owned(),
        version: version.to_owned(),
        release: 1,
        build_release: 1,
        architecture: "x86_64".to_owned(),
        summary: "Tiny package for the one-package-change benchmark".to_owned(),
        ..Meta::default()
    };
    pack_entries(out, &meta, entries, options)
}

/// The entries of one bulk package; see the module doc for the shape.
fn bulk_entries(spec: &SyntheticSpec, pool: &Pool, number: usize, tag: &str) -> Vec<SourceEntry> {
    let count = spec.count_for(number);
    let mut rng = Rng::new(spec.seed, PACKAGE_STREAM, number as u64);
    let path = |text: String| RelPath::new(text).expect("generated paths are well formed");
    let mut entries = Vec::with_capacity(count);
    if count > 0 {
        let len = file_size(&mut rng, spec.file_size);
        let bytes = binary(&mut rng, len);
        entries.push(SourceEntry::bytes(
            path(format!("bin/tool{tag}")),
            bytes,
            0o755,
        ));
    }
    if count > 1 {
        let licence = pool.licences[rng.below(pool.licences.len() as u64) as usize].clone();
        let copyright = path(format!("share/doc/pkg{tag}/copyright"));
        entries.push(SourceEntry::bytes(copyright, licence, 0o644));
    }
    // The last regular file written, by directory number, for symlinks to point at.
    let mut last_file: Option<(usize, String)> = None;
    for j in 2..count {
        let k = j / PER_DIRECTORY;
        let (dir, is_lib) = if k.is_multiple_of(2) {
            (format!("lib/pkg{tag}/d{k}"), true)
        } else {
            (format!("share/pkg{tag}/d{k}"), false)
        };
        let roll = rng.below(100);
        let target = last_file.as_ref().filter(|(dk, _)| *dk == k);
        let entry = match (roll, target) {
            (0..10, Some((_, target))) => {
                SourceEntry::symlink(path(format!("{dir}/l{j}")), target.as_bytes())
            }
            (10, _) => SourceEntry::directory(path(format!("share/pkg{tag}/empty{j}")), 0o755),
            (11..13, _) => {
                let len = file_size(&mut rng, spec.file_size);
                let bytes = binary(&mut rng, len);
                SourceEntry::bytes(path(format!("bin/tool{tag}-{j}")), bytes, 0o755)
            }
            (13, _) => SourceEntry::bytes(path(format!("{dir}/e{j}")), Vec::new(), 0o644),
            _ => {
                let name = if is_lib {
                    format!("f{j}.so")
                } else {
                    format!("f{j}.txt")
                };
                let bytes = if rng.below(100) < 5 {
                    pool.shared[rng.below(pool.shared.len() as u64) as usize].clone()
                } else {
                    let len = file_size(&mut rng, spec.file_size);
                    if is_lib {
                        binary(&mut rng, len)
                    } else {
                        text(&mut rng, len)
                    }
                };
                let entry = SourceEntry::bytes(path(format!("{dir}/{name}")), bytes, 0o644);
                last_file = Some((k, name));
                entry
            }
        };
        entries.push(entry);
    }
    entries
}

/// Contents that recur across the corpus, so that dedupe has something to find.
struct Pool {
    licences: Vec<Vec<u8>>,
    shared: Vec<Vec<u8>>,
}

impl Pool {
    fn new(seed: u64, average: u64) -> Self {
        let licences = (0..8)
            .map(|k| {
                let mut rng = Rng::new(seed, LICENCE_STREAM, k);
                let len = 1000 + rng.below(3000) as usize;
                text(&mut rng, len)
            })
            .collect();
        let shared = (0..64)
            .map(|k| {
                let mut rng = Rng::new(seed, SHARED_STREAM, k);
                let len = file_size(&mut rng, average);
                if k.is_multiple_of(2) {
                    binary(&mut rng, len)
                } else {
                    text(&mut rng, len)
                }
            })
            .collect();
        Pool { licences, shared }
    }
}

// One random stream per purpose, so that adding a draw to one never shifts another.
const PACKAGE_STREAM: u64 = 1;
const LICENCE_STREAM: u64 = 2;
const SHARED_STREAM: u64 = 3;
const SMALL_STREAM: u64 = 4;

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use mossfs_format::EntryKind;

    use super::*;
    use crate::corpus::testing::{assert_conflict_free, verify_all};

    fn spec() -> SyntheticSpec {
        SyntheticSpec {
            small_package: Some("hello".to_owned()),
            ..SyntheticSpec::new(2000)
        }
    }

    #[test]
    fn makes_verifying_conflict_free_stones_with_the_asked_entry_count() {
        let dir = tempfile::tempdir().unwrap();
        let paths = synthetic(dir.path(), &spec()).unwrap();
        let names: Vec<_> = paths.iter().map(|p| p.file_name().unwrap()).collect();
        assert_eq!(
            names,
            [
                "synth-00000.stone",
                "synth-00001.stone",
                "synth-00002.stone",
                "synth-00003.stone",
                "hello.stone"
            ]
        );
        let stones = verify_all(&paths);
        let entries: Vec<usize> = stones.iter().map(|s| s.layout.len()).collect();
        assert_eq!(entries, [500, 500, 500, 500, 5]);
        assert_conflict_free(&stones);

        // The shape the module doc promises, over the bulk packages.
        let layout: Vec<_> = stones[..4].iter().flat_map(|s| &s.layout).collect();
        let count = |f: &dyn Fn(&EntryKind) -> bool| layout.iter().filter(|e| f(&e.kind)).count();
        let symlinks = count(&|k| matches!(k, EntryKind::Symlink(_)));
        let dirs = count(&|k| matches!(k, EntryKind::Directory));
        let empty = count(&|k| *k == EntryKind::Regular(mossfs_format::AssetHash::EMPTY));
        assert!((120..=280).contains(&symlinks), "{symlinks} symlinks");
        assert!((5..=45).contains(&dirs), "{dirs} empty directories");
        assert!((5..=45).contains(&empty), "{empty} empty files");
        let in_bin = layout
            .iter()
            .filter(|e| e.path.as_bytes().starts_with(b"bin/"));
        assert!(in_bin.count() >= 4, "every package has a tool in bin/");

        // Contents recur across packages, so the store has something to dedupe.
        let mut seen = HashSet::new();
        let shared = stones[..4]
            .iter()
            .flat_map(|s| s.index.iter().map(|i| i.digest).collect::<HashSet<_>>())
            .filter(|digest| !seen.insert(*digest))
            .count();
        assert!(shared > 0, "no content is shared across packages");
    }

    #[test]
    fn the_same_spec_gives_byte_identical_stones() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let first = synthetic(a.path(), &spec()).unwrap();
        let second = synthetic(b.path(), &spec()).unwrap();
        for (x, y) in first.iter().zip(&second) {
            assert_eq!(
                std::fs::read(x).unwrap(),
                std::fs::read(y).unwrap(),
                "{x:?}"
            );
        }
        let reseeded = SyntheticSpec { seed: 1, ..spec() };
        let c = tempfile::tempdir().unwrap();
        let third = synthetic(c.path(), &reseeded).unwrap();
        assert_ne!(
            std::fs::read(&first[0]).unwrap(),
            std::fs::read(&third[0]).unwrap()
        );
    }

    #[test]
    fn a_new_small_version_changes_every_file_but_not_the_shape() {
        let dir = tempfile::tempdir().unwrap();
        let one = small_package(&dir.path().join("1"), "hello", "1", FAST).unwrap();
        let two = small_package(&dir.path().join("2"), "hello", "2", FAST).unwrap();
        let stones = verify_all(&[one, two]);
        let paths =
            |i: usize| -> Vec<_> { stones[i].layout.iter().map(|e| e.path.clone()).collect() };
        assert_eq!(paths(0), paths(1));
        let digests =
            |i: usize| -> HashSet<_> { stones[i].index.iter().map(|e| e.digest).collect() };
        assert!(digests(0).is_disjoint(&digests(1)));
        assert_eq!(stones[1].typed_meta().unwrap().version, "2");
    }

    #[test]
    fn refuses_more_packages_than_entries_and_bad_small_names() {
        let dir = tempfile::tempdir().unwrap();
        let too_many = SyntheticSpec {
            packages: Some(11),
            ..SyntheticSpec::new(10)
        };
        let err = synthetic(dir.path(), &too_many).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            err.to_string(),
            "cannot split 10 entries into 11 packages of at least one entry"
        );
        let err = small_package(dir.path(), "../up", "1", FAST).unwrap_err();
        assert_eq!(err.to_string(), "`../up` is not a valid package name");
        // Zero entries and no packages is an empty corpus, not an error.
        assert_eq!(
            synthetic(dir.path(), &SyntheticSpec::new(0)).unwrap(),
            Vec::<PathBuf>::new()
        );
    }
}
