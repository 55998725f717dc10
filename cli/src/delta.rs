//! `mossfs delta OLD.stone NEW.stone -o OUT.stone`: a delta stone that rebuilds NEW's
//! assets from OLD's (DESIGN.md §11).
//!
//! The steps, in order: read both stones' metadata and choose a base for every asset NEW
//! has and OLD lacks (`mossfs_format::delta::make::choose_bases`); read both stones whole,
//! verifying every byte and hashing each file with sha256 (its package id), keeping in
//! memory only the assets that are bases or targets; make one record per target on every
//! core, each kept as a patch only if smaller than the whole frame and applied once before
//! it is kept; write the delta stone to a temporary file, read it back through the
//! verifying reader, and only then rename it into place. OUT is never a partial or
//! unchecked stone.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use mossfs_format::delta::make::{self, Options, Pairing};
use mossfs_format::{
    AssetHash, DecodeError, DeltaRecord, FileType, Method, PackageId, Preamble, Reader, Stone,
    Writer, WriterOptions,
};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::error::CliError;
use crate::{quote, units};

/// Arguments of `mossfs delta`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The package the delta starts from (its assets are the bases).
    #[arg(value_name = "OLD.stone")]
    pub old: PathBuf,
    /// The package the delta rebuilds.
    #[arg(value_name = "NEW.stone")]
    pub new: PathBuf,
    /// Where to write the delta stone.
    #[arg(short, long, value_name = "OUT.stone")]
    pub output: PathBuf,
    /// zstd level of the patches and whole frames.
    #[arg(long, default_value_t = make::DEFAULT_LEVEL,
          value_parser = clap::value_parser!(i32).range(1..=22))]
    pub level: i32,
    /// Patch only pairs whose base and target together fit in this many MiB; larger
    /// assets are stored whole, so applying any record needs about this much memory.
    #[arg(long, value_name = "MIB", default_value_t = make::DEFAULT_PAIR_LIMIT >> 20,
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub pair_limit: u64,
    /// Threads for making records [default: every core].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub threads: Option<u32>,
}

/// Why a delta cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
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
}

/// A stone read whole: its metadata, its package id and the assets asked for.
struct Loaded {
    stone: Stone,
    id: PackageId,
    size: u64,
    assets: HashMap<AssetHash, Vec<u8>>,
}

/// Runs the command and prints a one-line summary.
pub fn run(args: &Args, out: &mut dyn Write) -> Result<(), CliError> {
    let started = Instant::now();
    let old_meta = read_metadata(&args.old)?;
    let new_meta = read_metadata(&args.new)?;
    let (old_name, new_name) = (package_name(&old_meta), package_name(&new_meta));
    if old_name != new_name {
        return Err(DeltaError::DifferentPackages {
            old_path: args.old.clone(),
            old: old_name,
            new_path: args.new.clone(),
            new: new_name,
        }
        .into());
    }
    let pairings = make::choose_bases(
        &old_meta.layout,
        &old_meta.index,
        &new_meta.layout,
        &new_meta.index,
    );
    let bases: HashSet<AssetHash> = pairings
        .iter()
        .filter_map(|p| p.base.map(|(hash, _)| hash))
        .collect();
    let targets: HashSet<AssetHash> = pairings.iter().map(|p| p.target).collect();
    crate::ui::step("choose bases");
    let old = load(&args.old, &bases)?;
    let new = load(&args.new, &targets)?;
    crate::ui::step("read stones");

    let threads = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |n| n as usize,
    );
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| CliError::Write {
            path: args.output.clone(),
            source: io::Error::other(e),
        })?;
    let options = Options {
        level: args.level,
        pair_limit: args.pair_limit << 20,
    };
    let records = pool.install(|| make_records(&pairings, &old.assets, &new.assets, &options))?;
    crate::ui::step("make records");
    let preamble = Preamble {
        from: old.id,
        to: new.id,
        to_size: new.size,
    };
    let writer_options = WriterOptions {
        level: mossfs_format::DEFAULT_LEVEL,
        threads: 0,
    };
    crate::pack::write_atomically(&args.output, |file| {
        write_delta(file, &new.stone, &preamble, &records, writer_options)
    })?;
    crate::ui::step("write and check");

    let written = std::fs::metadata(&args.output).map_or(0, |m| m.len());
    let patches = records
        .iter()
        .filter(|r| matches!(r.header.method, Method::Patch { .. }))
        .count();
    let unique: HashSet<AssetHash> = new.stone.index.iter().map(|e| e.digest).collect();
    writeln!(
        out,
        "delta {} {} -> {} into {}: {} records ({patches} patches, {} whole), {} assets unchanged; {}, {:.1}% of the full stone ({}), in {}",
        quote::text(&new_name),
        quote::text(&version_of(&old.stone)),
        quote::text(&version_of(&new.stone)),
        quote::name(std::os::unix::ffi::OsStrExt::as_bytes(
            args.output.as_os_str()
        )),
        records.len(),
        records.len() - patches,
        unique.len() - records.len(),
        units::bytes(written),
        100.0 * written as f64 / new.size.max(1) as f64,
        units::bytes(new.size),
        units::duration(started.elapsed()),
    )?;
    Ok(())
}

/// One record per pairing, on the current rayon pool, in the pairings' order.
pub fn make_records(
    pairings: &[Pairing],
    old: &HashMap<AssetHash, Vec<u8>>,
    new: &HashMap<AssetHash, Vec<u8>>,
    options: &Options,
) -> Result<Vec<DeltaRecord>, DeltaError> {
    pairings
        .par_iter()
        .map(|pairing| {
            let target = pairing.target;
            let bytes = new.get(&target).ok_or_else(|| DeltaError::Record {
                target,
                source: io::Error::other("the new stone's content lacks it"),
            })?;
            let base = pairing
                .base
                .and_then(|(hash, _)| old.get(&hash))
                .map(Vec::as_slice);
            make::best(base, bytes, options).map_err(|source| DeltaError::Record { target, source })
        })
        .collect()
}

/// Writes the delta stone, then reads it back through the verifying reader.
fn write_delta(
    file: &File,
    new: &Stone,
    preamble: &Preamble,
    records: &[DeltaRecord],
    options: WriterOptions,
) -> io::Result<()> {
    let mut writer = Writer::new(BufWriter::new(file), FileType::Delta, options)?;
    writer.add_meta(&new.meta)?;
    writer.add_layout(&new.layout)?;
    writer.add_index(&new.index)?;
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

fn read_metadata(path: &Path) -> Result<Stone, CliError> {
    let stone = crate::inspect::load(path, false)?;
    match stone.header.map(|h| h.file_type) {
        Some(FileType::Binary) => Ok(stone),
        other => Err(DeltaError::NotAPackage {
            path: path.to_owned(),
            kind: other.map_or("unknown", FileType::name),
        }
        .into()),
    }
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
fn load(path: &Path, keep: &HashSet<AssetHash>) -> Result<Loaded, CliError> {
    let file = File::open(path).map_err(|source| CliError::Open {
        path: path.to_owned(),
        source,
    })?;
    let mut hashing = Hashing {
        inner: BufReader::with_capacity(256 * 1024, file),
        hasher: Sha256::new(),
        count: 0,
    };
    let failed = |source| CliError::Check {
        path: path.to_owned(),
        payload: crate::error::payload_of(&source),
        source,
    };
    let (stone, assets) = read_assets(&mut hashing, keep).map_err(failed)?;
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
        while let Some(mut asset) = content.next_asset()? {
            let digest = asset.entry().digest;
            if keep.contains(&digest) && !assets.contains_key(&digest) {
                let mut bytes = Vec::new();
                let mut buf = vec![0u8; 256 * 1024];
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
