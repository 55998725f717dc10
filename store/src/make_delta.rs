//! Making a delta stone between two versions of a package (DESIGN.md §11): what
//! `mossfs delta` and a publisher's `mossfs index --deltas N` both call.
//!
//! The steps, in order: read both stones' metadata and choose a base for every asset NEW
//! has and OLD lacks (`mossfs_format::delta::make::choose_bases`); read both stones whole,
//! verifying every byte and hashing each file with sha256 (its package id), keeping in
//! memory only the assets that are bases or targets; make one record per target on the
//! current rayon pool, each kept as a patch only if smaller than the whole frame and
//! applied once before it is kept; write the delta stone to a temporary file beside the
//! output, read it back through the verifying reader, **apply every record of the bytes
//! written** against the old assets and check every target hash, check that every asset
//! of NEW is either rebuilt or already in OLD, and only then rename it into place. The
//! output is never a partial or unchecked stone, so a publisher never serves one.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use mossfs_format::delta::make::{self, Pairing};
use mossfs_format::{
    AssetHash, DecodeError, DeltaRecord, FileType, IndexEntry, Method, PackageId, Preamble, Reader,
    Stone, Writer, WriterOptions,
};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

pub use mossfs_format::delta::make::Options;

/// Why a delta cannot be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MakeDeltaError {
    /// An input cannot be opened or read.
    #[error("cannot read {}", .path.display())]
    Open {
        /// The stone.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// An input is not a valid stone, or fails its checks.
    #[error("{} is not a valid stone", .path.display())]
    Stone {
        /// The stone.
        path: PathBuf,
        /// The first problem found.
        #[source]
        source: DecodeError,
    },
    /// An input is not a binary package with content.
    #[error("{} is a {kind} stone, not a package with content; a delta is made between two full packages", .path.display())]
    NotAPackage {
        /// The stone.
        path: PathBuf,
        /// Its file type.
        kind: &'static str,
    },
    /// The two inputs are different packages.
    #[error("{} is package {old} and {} is package {new}; a delta is made between two versions of one package", .old_path.display(), .new_path.display())]
    DifferentPackages {
        /// OLD.
        old_path: PathBuf,
        /// Its name.
        old: String,
        /// NEW.
        new_path: PathBuf,
        /// Its name.
        new: String,
    },
    /// A record could not be made, or did not rebuild its target when test-applied.
    #[error("cannot make the record for asset {target}")]
    Record {
        /// The asset.
        target: AssetHash,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The output cannot be written, or the stone written does not apply.
    #[error("cannot write {}", .path.display())]
    Write {
        /// The output.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// What [`make_delta`] wrote.
#[derive(Debug, Clone)]
pub struct Made {
    /// The package's name.
    pub name: String,
    /// OLD's `version-release`.
    pub old_version: String,
    /// NEW's `version-release`.
    pub new_version: String,
    /// The packages it goes between, and NEW's size.
    pub preamble: Preamble,
    /// Records in the delta.
    pub records: usize,
    /// Assets the records rebuild (a record may rebuild several).
    pub rebuilt: usize,
    /// Records that are patches (the rest are whole frames).
    pub patches: usize,
    /// Assets of NEW that OLD already has, so need no record.
    pub unchanged: usize,
    /// The delta stone's size.
    pub size: u64,
}

/// A stone read whole: its metadata, its package id and the assets asked for.
struct Loaded {
    stone: Stone,
    id: PackageId,
    size: u64,
    assets: HashMap<AssetHash, Vec<u8>>,
}

/// Makes the delta stone that rebuilds `new`'s assets from `old`'s and writes it to
/// `output` (see the module docs). Records are made on the current rayon pool.
pub fn make_delta(
    old: &Path,
    new: &Path,
    output: &Path,
    options: &Options,
) -> Result<Made, MakeDeltaError> {
    let old_meta = read_metadata(old)?;
    let new_meta = read_metadata(new)?;
    let (old_name, new_name) = (package_name(&old_meta), package_name(&new_meta));
    if old_name != new_name {
        return Err(MakeDeltaError::DifferentPackages {
            old_path: old.to_owned(),
            old: old_name,
            new_path: new.to_owned(),
            new: new_name,
        });
    }
    let pairings = make::choose_bases(
        &old_meta.layout,
        &old_meta.index,
        &new_meta.layout,
        &new_meta.index,
    );
    let bases: HashSet<AssetHash> = pairings
        .iter()
        .filter_map(|p| p.base.map(|b| b.hash))
        .collect();
    let targets: HashSet<AssetHash> = pairings.iter().map(|p| p.target).collect();
    let old_loaded = load(old, &bases)?;
    let new_loaded = load(new, &targets)?;
    let records = make_records(
        &old_meta.index,
        &pairings,
        &old_loaded.assets,
        &new_loaded.assets,
        options,
    )?;
    let preamble = Preamble {
        from: old_loaded.id,
        to: new_loaded.id,
        to_size: new_loaded.size,
    };
    let old_digests: HashSet<AssetHash> = old_loaded.stone.index.iter().map(|e| e.digest).collect();
    write_atomically(output, |file| {
        write_delta(file, &new_loaded.stone, &preamble, &records, options.level)?;
        check_applies(
            file,
            &old_meta.index,
            &old_loaded.assets,
            &old_digests,
            &new_loaded.stone,
        )
    })?;
    let size = std::fs::metadata(output).map_or(0, |m| m.len());
    let patches = records
        .iter()
        .filter(|r| r.header.method() == Method::Patch)
        .count();
    let unique: HashSet<AssetHash> = new_loaded.stone.index.iter().map(|e| e.digest).collect();
    Ok(Made {
        name: new_name,
        old_version: version_of(&old_loaded.stone),
        new_version: version_of(&new_loaded.stone),
        preamble,
        records: records.len(),
        rebuilt: rebuilt_count(&records),
        patches,
        unchanged: unique.len() - rebuilt_count(&records),
        size,
    })
}

/// The records for the pairings, on the current rayon pool, one unit at a time
/// ([`make::units`]: big targets alone, small ones tried as groups), in the pairings' order.
/// `old_index` is the old package's index, by whose positions records name their bases.
pub fn make_records(
    old_index: &[IndexEntry],
    pairings: &[Pairing],
    old: &HashMap<AssetHash, Vec<u8>>,
    new: &HashMap<AssetHash, Vec<u8>>,
    options: &Options,
) -> Result<Vec<DeltaRecord>, MakeDeltaError> {
    let units = make::units(pairings, options);
    let made: Vec<Vec<DeltaRecord>> = units
        .par_iter()
        .map(|unit| {
            let old_bytes = |h: AssetHash| old.get(&h).map(Vec::as_slice);
            let new_bytes = |h: AssetHash| new.get(&h).map(Vec::as_slice);
            make::best(old_index, pairings, unit, &old_bytes, &new_bytes, options).map_err(
                |source| MakeDeltaError::Record {
                    target: pairings[unit.pairings[0]].target,
                    source,
                },
            )
        })
        .collect::<Result<_, _>>()?;
    Ok(made.into_iter().flatten().collect())
}

fn rebuilt_count(records: &[DeltaRecord]) -> usize {
    records.iter().map(|r| r.header.targets.len()).sum()
}

/// Writes through a temporary file beside `output`, synced, then renamed.
fn write_atomically(
    output: &Path,
    write: impl FnOnce(&File) -> io::Result<()>,
) -> Result<(), MakeDeltaError> {
    let failed = |source| MakeDeltaError::Write {
        path: output.to_owned(),
        source,
    };
    let dir = match output.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = output
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&temp)?;
        write(&file)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        file.sync_all()?;
        std::fs::rename(&temp, output)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map_err(failed)
}

/// Writes the delta stone, then reads it back through the verifying reader. Its meta,
/// layout and index payloads are compressed at the records' level (19 by default, not
/// the writer's 9): they are a large share of a small delta, and tiny to compress; the
/// index is compressed against the layout, which names the same hashes.
fn write_delta(
    file: &File,
    new: &Stone,
    preamble: &Preamble,
    records: &[DeltaRecord],
    level: i32,
) -> io::Result<()> {
    let options = WriterOptions { level, threads: 0 };
    let mut writer = Writer::new(BufWriter::new(file), FileType::Delta, options)?;
    writer.add_meta(&new.meta)?;
    writer.add_layout(&new.layout)?;
    writer.add_index_against_layout(&new.index, &new.layout)?;
    writer.add_delta(preamble, records)?;
    let mut buffered = writer.finish()?;
    buffered.flush()?;
    drop(buffered);
    let mut file = file;
    file.seek(SeekFrom::Start(0))?;
    mossfs_format::read::verify(BufReader::new(file)).map_err(|e| {
        io::Error::other(format!(
            "the delta stone just written does not read back: {e}"
        ))
    })?;
    Ok(())
}

/// Applies every record of the delta stone in `file` against the old package's assets
/// (its bases looked up in `old_index`, as an installer will) and checks each target's hash, and checks that every asset of the new package is
/// rebuilt by a record or already in the old one: the delta is known to work before
/// anyone is offered it.
fn check_applies(
    file: &File,
    old_index: &[IndexEntry],
    old: &HashMap<AssetHash, Vec<u8>>,
    old_digests: &HashSet<AssetHash>,
    new: &Stone,
) -> io::Result<()> {
    let mut file = file;
    file.seek(SeekFrom::Start(0))?;
    let failed = |e: &dyn std::fmt::Display| {
        io::Error::other(format!("the delta stone just written does not apply: {e}"))
    };
    let mut reader = Reader::new(BufReader::new(file)).map_err(|e| failed(&e))?;
    let stone = reader.read_metadata().map_err(|e| failed(&e))?;
    let mut deltas = reader
        .deltas(&stone)
        .map_err(|e| failed(&e))?
        .ok_or_else(|| failed(&"it has no delta payload"))?;
    let mut rebuilt = HashSet::new();
    while let Some(record) = deltas.next_record().map_err(|e| failed(&e))? {
        let bases = record
            .header
            .resolve_bases(old_index)
            .map_err(|e| failed(&e))?
            .iter()
            .map(|b| {
                old.get(&b.hash)
                    .map(Vec::as_slice)
                    .ok_or_else(|| failed(&format!("base {} is not in the old package", b.hash)))
            })
            .collect::<io::Result<Vec<&[u8]>>>()?;
        record
            .apply(old_index, &bases, &mut |_, _| Ok(()))
            .map_err(|e| failed(&e))?;
        rebuilt.extend(record.header.targets.iter().map(|t| t.hash));
    }
    deltas.finish().map_err(|e| failed(&e))?;
    if let Some(missing) = new
        .index
        .iter()
        .find(|e| !rebuilt.contains(&e.digest) && !old_digests.contains(&e.digest))
    {
        return Err(failed(&format!(
            "asset {} is neither rebuilt nor in the old package",
            missing.digest
        )));
    }
    Ok(())
}

fn read_metadata(path: &Path) -> Result<Stone, MakeDeltaError> {
    let file = File::open(path).map_err(|source| MakeDeltaError::Open {
        path: path.to_owned(),
        source,
    })?;
    let failed = |source| MakeDeltaError::Stone {
        path: path.to_owned(),
        source,
    };
    let mut reader = Reader::new(BufReader::new(file)).map_err(failed)?;
    let file_type = reader.header().file_type;
    let stone = reader.read_metadata().map_err(failed)?;
    if file_type != FileType::Binary {
        return Err(MakeDeltaError::NotAPackage {
            path: path.to_owned(),
            kind: file_type.name(),
        });
    }
    Ok(stone)
}

fn package_name(stone: &Stone) -> String {
    stone.name().unwrap_or("(unnamed)").to_owned()
}

fn version_of(stone: &Stone) -> String {
    stone
        .typed_meta()
        .map(|m| format!("{}-{}", m.version, m.release))
        .unwrap_or_else(|_| "?".into())
}

/// Reads a stone whole, verifying it, hashing the file with sha256, and keeping the bytes
/// of the assets in `keep`.
fn load(path: &Path, keep: &HashSet<AssetHash>) -> Result<Loaded, MakeDeltaError> {
    let file = File::open(path).map_err(|source| MakeDeltaError::Open {
        path: path.to_owned(),
        source,
    })?;
    let mut hashing = Hashing {
        inner: BufReader::with_capacity(crate::BUF_SIZE, file),
        hasher: Sha256::new(),
        count: 0,
    };
    let (stone, assets) =
        read_assets(&mut hashing, keep).map_err(|source| MakeDeltaError::Stone {
            path: path.to_owned(),
            source,
        })?;
    Ok(Loaded {
        stone,
        id: PackageId(hashing.hasher.finalize().into()),
        size: hashing.count,
        assets,
    })
}

fn read_assets(
    input: &mut impl Read,
    keep: &HashSet<AssetHash>,
) -> Result<(Stone, HashMap<AssetHash, Vec<u8>>), DecodeError> {
    let mut reader = Reader::new(input)?;
    let stone = reader.read_metadata()?;
    stone.check_structure()?;
    let mut assets = HashMap::new();
    if let Some(mut content) = reader.content(&stone)? {
        let mut buf = vec![0u8; crate::BUF_SIZE];
        while let Some(mut asset) = content.next_asset()? {
            let digest = asset.entry().digest;
            if keep.contains(&digest) && !assets.contains_key(&digest) {
                let mut bytes = Vec::new();
                loop {
                    let n = asset.read_checked(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    bytes.extend_from_slice(&buf[..n]);
                }
                asset.finish()?;
                assets.insert(digest, bytes);
            } else {
                asset.finish()?;
            }
        }
        content.finish()?;
    }
    reader.finish()?;
    Ok((stone, assets))
}

/// Hashes the stone's bytes as the reader consumes them: the package id costs no second
/// read.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}
