//! `mossfs pack DIR -o OUT.stone`: build a stone from a directory that plays `/usr`.
//!
//! The steps, in order: gather the metadata (the `--meta` file, then the flags over it),
//! walk and hash the tree ([`scan`]), turn it into a layout and an index the way upstream's
//! boulder does (DESIGN.md §3), then write Meta, Layout, Index and Content with
//! `mossfs_format::Writer`, compressing on every core. The stone is written to a temporary
//! file beside OUT and renamed into place once complete and synced, so OUT is either the
//! old file or the whole new one (DESIGN.md §6.1), never a partial stone.

mod metafile;
pub mod scan;

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use mossfs_format::{
    AssetHash, ContentSource, DEFAULT_LEVEL, EntryKind, FileType, IndexEntry, LayoutEntry, Meta,
    Writer, WriterOptions, layout_index,
};

pub use self::metafile::MetaFields;
use self::scan::{Entry, Kind};
use crate::error::CliError;
use crate::units;

/// Arguments of `mossfs pack`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The directory to pack; its contents become the package's files below /usr.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Where to write the stone.
    #[arg(short, long, value_name = "OUT.stone")]
    pub output: PathBuf,
    /// A metadata file of `key = value` lines (see README.md); flags override it.
    #[arg(long, value_name = "FILE")]
    pub meta: Option<PathBuf>,
    /// zstd level for every payload.
    #[arg(long, default_value_t = DEFAULT_LEVEL, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i32).range(-7..=22))]
    pub level: i32,
    /// Threads for hashing and compression, up to 256 [default: every core].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_THREADS)))]
    pub threads: Option<u32>,
    /// Package metadata.
    #[command(flatten)]
    pub fields: MetaFields,
}

/// The most threads `--threads` may ask for. Each is a real thread with its own stack and
/// zstd context: 100,000 of them ran the machine out of memory, panicked in one thread's
/// setup and left the rest running. zstd itself stops at 256 workers.
pub const MAX_THREADS: u32 = 256;

/// Runs the command and prints a one-line summary.
pub fn run(args: &Args, out: &mut dyn Write) -> Result<(), CliError> {
    let started = Instant::now();
    let fields = match &args.meta {
        Some(path) => MetaFields::read_file(path)?.overridden_by(&args.fields),
        None => args.fields.clone(),
    };
    let meta = fields.into_meta()?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads as usize)
        .build()
        .map_err(|e| CliError::Scan {
            path: args.dir.clone(),
            source: io::Error::other(e),
        })?;
    let entries = scan::scan(&args.dir, &pool)?;
    let package = Package::new(&args.dir, &entries);
    let options = WriterOptions {
        level: args.level,
        threads,
    };
    write_atomically(&args.output, |file| package.write(&meta, file, options))?;

    let written = std::fs::metadata(&args.output).map_or(0, |m| m.len());
    writeln!(
        out,
        "packed {} into {}: {} entries, {} unique files, {} -> {}, in {}",
        meta.full_name(),
        args.output.display(),
        package.layout.len(),
        package.index.len(),
        units::bytes(package.content_size()),
        units::bytes(written),
        units::duration(started.elapsed()),
    )?;
    Ok(())
}

/// What goes into the stone, apart from the meta.
struct Package {
    layout: Vec<LayoutEntry>,
    index: Vec<IndexEntry>,
    source: TreeSource,
}

impl Package {
    /// Layout records for every file and symlink, and for directories that are empty or
    /// not `0755` and owned by root; the index holds each unique file once, largest first, so the empty file
    /// comes last, as upstream's boulder orders it.
    fn new(root: &Path, entries: &[Entry]) -> Package {
        let mut layout = Vec::with_capacity(entries.len());
        let mut unique: Vec<(AssetHash, u64)> = Vec::new();
        let mut paths: HashMap<AssetHash, PathBuf> = HashMap::new();
        for entry in entries {
            let kind = match &entry.kind {
                Kind::File { size, hash } => {
                    if !paths.contains_key(hash) {
                        paths.insert(*hash, root.join(entry.path.as_os_str()));
                        unique.push((*hash, *size));
                    }
                    EntryKind::Regular(*hash)
                }
                Kind::Symlink(target) => EntryKind::Symlink(target.clone()),
                Kind::Dir { empty } => {
                    // Only what an implied directory would be anyway may be left out:
                    // 0755 and owned by root (issue 7, defect 16).
                    let implied = entry.mode & 0o7777 == 0o755 && (entry.uid, entry.gid) == (0, 0);
                    if !*empty && implied {
                        continue;
                    }
                    EntryKind::Directory
                }
            };
            layout.push(LayoutEntry {
                uid: entry.uid,
                gid: entry.gid,
                mode: entry.mode,
                tag: 0,
                kind,
                path: entry.path.clone(),
            });
        }
        // Stable: files of equal size keep their path order.
        unique.sort_by_key(|&(_, size)| std::cmp::Reverse(size));
        Package {
            layout,
            index: layout_index(unique),
            source: TreeSource { paths },
        }
    }

    fn content_size(&self) -> u64 {
        self.index.iter().map(IndexEntry::len).sum()
    }

    /// Writes the payloads in upstream's order; like boulder, a package without paths has
    /// no layout, and one without regular files no index or content.
    fn write(&self, meta: &Meta, file: &File, options: WriterOptions) -> io::Result<()> {
        let out = BufWriter::with_capacity(1 << 20, file);
        let mut writer = Writer::new(out, FileType::Binary, options)?;
        writer.add_meta(&meta.to_records())?;
        if !self.layout.is_empty() {
            writer.add_layout(&self.layout)?;
        }
        if !self.index.is_empty() {
            writer.add_index(&self.index)?;
            writer.add_content(&self.index, &self.source)?;
        }
        writer.finish()?.into_inner().map_err(io::Error::from)?;
        Ok(())
    }
}

/// Writes `output` through a temporary file in the same directory, synced and renamed
/// into place only when `write` succeeded. On failure the temporary file is removed.
pub fn write_atomically(
    output: &Path,
    write: impl FnOnce(&File) -> io::Result<()>,
) -> Result<(), CliError> {
    let failed = |source| CliError::Write {
        path: output.to_owned(),
        source,
    };
    let dir = match output.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = output.file_name().unwrap_or(output.as_os_str());
    let temp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(failed)?;
    write(temp.as_file()).map_err(failed)?;
    temp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .and_then(|()| temp.as_file().sync_all())
        .map_err(failed)?;
    temp.persist(output).map_err(|e| failed(e.error))?;
    Ok(())
}

/// The bytes of each unique file, read again from the tree when the writer asks.
struct TreeSource {
    paths: HashMap<AssetHash, PathBuf>,
}

/// A file to pack could not be read; the path rides along inside the `io::Error`.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {}", .path.display())]
struct SourceError {
    path: PathBuf,
    #[source]
    source: io::Error,
}

impl ContentSource for TreeSource {
    fn open(&self, entry: &IndexEntry) -> io::Result<Box<dyn Read + '_>> {
        let path = self.paths.get(&entry.digest).ok_or_else(|| {
            io::Error::other(format!("no file in the tree has hash {}", entry.digest))
        })?;
        let file = scan::open_nofollow(path).map_err(|source| {
            io::Error::other(SourceError {
                path: path.clone(),
                source,
            })
        })?;
        Ok(Box::new(file))
    }
}
