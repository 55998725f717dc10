//! `mkcorpus`: writes a benchmark corpus of `.stone` packages into a directory.
//!
//! A thin command line over `mossfs_integration::corpus`; see that module for what each
//! corpus contains. After writing, it reads back each stone's metadata (not the content)
//! and prints the totals, so the figures come from the stones, not from the generator.
//!
//! ```text
//! mkcorpus debian --out DIR [--limit N]
//! mkcorpus synthetic --out DIR --entries N [--packages P] [--seed S] [--file-size BYTES]
//!                    [--small-package NAME [--small-version V]]
//! ```

use std::error::Error;
use std::fs::File;
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use mossfs_format::{EntryKind, Reader, WriterOptions};
use mossfs_integration::corpus::{self, SyntheticSpec};

#[derive(Parser)]
#[command(about = "Write a corpus of .stone packages for mossfs benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pack this machine's installed Debian packages (their files under /usr), one stone each.
    Debian {
        /// Directory to write `<name>.stone` files into.
        #[arg(long)]
        out: PathBuf,
        /// Stop after this many non-empty packages, in name order.
        #[arg(long)]
        limit: Option<usize>,
        #[command(flatten)]
        writer: WriterArgs,
    },
    /// Generate a deterministic synthetic corpus.
    Synthetic {
        /// Directory to write `<name>.stone` files into.
        #[arg(long)]
        out: PathBuf,
        /// Layout entries across all the bulk packages.
        #[arg(long)]
        entries: usize,
        /// Number of bulk packages [default: entries / 500, at least 1].
        #[arg(long)]
        packages: Option<usize>,
        /// Seed for every byte of content.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Average regular file size in bytes.
        #[arg(long, default_value_t = 512)]
        file_size: u64,
        /// Also write a tiny five-entry package with this name.
        #[arg(long)]
        small_package: Option<String>,
        /// Version of the tiny package; another version changes its bytes.
        #[arg(long, default_value = "1", requires = "small_package")]
        small_version: String,
        #[command(flatten)]
        writer: WriterArgs,
    },
}

#[derive(Args)]
struct WriterArgs {
    /// zstd level.
    #[arg(long, default_value_t = corpus::FAST.level)]
    level: i32,
    /// zstd worker threads per stone; 0 compresses on the packing thread, which keeps the
    /// output byte-identical across runs.
    #[arg(long, default_value_t = corpus::FAST.threads)]
    threads: u32,
}

impl WriterArgs {
    fn options(&self) -> WriterOptions {
        WriterOptions {
            level: self.level,
            threads: self.threads,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let started = Instant::now();
    let (out, written) = match cli.command {
        Command::Debian { out, limit, writer } => {
            let written = corpus::debian(&out, limit, writer.options());
            (out, written)
        }
        Command::Synthetic {
            out,
            entries,
            packages,
            seed,
            file_size,
            small_package,
            small_version,
            writer,
        } => {
            let spec = SyntheticSpec {
                packages,
                seed,
                file_size,
                small_package,
                small_version,
                options: writer.options(),
                ..SyntheticSpec::new(entries)
            };
            let written = corpus::synthetic(&out, &spec);
            (out, written)
        }
    };
    let elapsed = started.elapsed();
    let result = written.and_then(|paths| Totals::of(&paths));
    match result {
        Ok(totals) => match totals.print(&out, elapsed.as_secs_f64()) {
            // A reader that stopped early (`| head`) is not a failure.
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
                eprintln!("error: writing the summary: {e}");
                ExitCode::FAILURE
            }
            _ => ExitCode::SUCCESS,
        },
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// What the written stones hold, read back from their metadata.
#[derive(Default)]
struct Totals {
    packages: u64,
    entries: u64,
    regular: u64,
    symlinks: u64,
    directories: u64,
    assets: u64,
    content_bytes: u64,
    stone_bytes: u64,
}

impl Totals {
    fn of(paths: &[PathBuf]) -> io::Result<Totals> {
        let mut totals = Totals::default();
        for path in paths {
            let file = File::open(path)?;
            totals.stone_bytes += file.metadata()?.len();
            let stone = Reader::new(BufReader::new(file))
                .and_then(|mut reader| reader.read_metadata())
                .map_err(|e| io::Error::other(format!("reading {}: {e}", path.display())))?;
            totals.packages += 1;
            totals.entries += stone.layout.len() as u64;
            for entry in &stone.layout {
                match entry.kind {
                    EntryKind::Regular(_) => totals.regular += 1,
                    EntryKind::Symlink(_) => totals.symlinks += 1,
                    EntryKind::Directory => totals.directories += 1,
                    _ => {}
                }
            }
            totals.assets += stone.index.len() as u64;
            totals.content_bytes += stone.content.map_or(0, |c| c.header.plain_size);
        }
        Ok(totals)
    }

    fn print(&self, out: &Path, seconds: f64) -> io::Result<()> {
        let mut stdout = io::stdout().lock();
        writeln!(
            stdout,
            "wrote {} packages to {} in {seconds:.2}s",
            self.packages,
            out.display()
        )?;
        writeln!(
            stdout,
            "  entries: {} ({} regular, {} symlinks, {} directories)",
            self.entries, self.regular, self.symlinks, self.directories
        )?;
        writeln!(
            stdout,
            "  assets:  {} unique per package, {} bytes ({}) before compression",
            self.assets,
            self.content_bytes,
            human(self.content_bytes)
        )?;
        writeln!(
            stdout,
            "  stones:  {} bytes ({}) on disk",
            self.stone_bytes,
            human(self.stone_bytes)
        )
    }
}

fn human(bytes: u64) -> String {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    format!("{mib:.1} MiB")
}

/// The error and its causes on one line.
fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}
