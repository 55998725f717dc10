//! `mossfs extract FILE.stone... -o DIR`: unpack stones into a plain directory.
//!
//! The work, and every safety rule with it, lives in `mossfs_fs::extract`: entries are
//! created below DIR through directory descriptors, nothing existing is replaced, and no
//! symlink is ever followed (DESIGN.md §6.3). This command creates DIR if needed, runs one
//! extraction per stone, in the order given, and prints one line for each.

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::time::Instant;

use mossfs_fs::dirfd::DirFd;
use mossfs_fs::extract::{ExtractOptions, extract};

use crate::error::CliError;
use crate::units;

/// Arguments of `mossfs extract`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The stones to unpack, in order; later ones may not replace what earlier ones made.
    #[arg(required = true, value_name = "FILE.stone")]
    pub files: Vec<PathBuf>,
    /// The directory to unpack into; created if missing. It plays the role of /usr.
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
}

/// Runs the command.
pub fn run(args: &Args, out: &mut dyn Write) -> Result<(), CliError> {
    std::fs::create_dir_all(&args.output).map_err(|source| CliError::Write {
        path: args.output.clone(),
        source,
    })?;
    let root = DirFd::open(&args.output)?;
    let options = ExtractOptions::for_current_user();
    for path in &args.files {
        let started = Instant::now();
        let file = File::open(path).map_err(|source| CliError::Open {
            path: path.clone(),
            source,
        })?;
        let input = BufReader::with_capacity(256 * 1024, file);
        let stats = extract(input, &root, options).map_err(|source| CliError::Extract {
            path: path.clone(),
            source,
        })?;
        writeln!(
            out,
            "extracted {} into {}: {} files ({}), {} symlinks, {} directories, in {}",
            stats.package.as_deref().unwrap_or("(unnamed)"),
            args.output.display(),
            stats.files,
            units::bytes(stats.bytes),
            stats.symlinks,
            stats.directories,
            units::duration(started.elapsed()),
        )?;
    }
    Ok(())
}
