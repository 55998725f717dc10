//! `mossfs delta OLD.stone NEW.stone -o OUT.stone`: a delta stone that rebuilds NEW's
//! assets from OLD's (DESIGN.md §11).
//!
//! The work is `mossfs_store::make_delta`, shared with `mossfs index --deltas N`; this
//! command sets up the thread pool and prints the summary.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Instant;

use mossfs_format::delta::make;
use mossfs_store::make_delta::{Options, make_delta};

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
    /// Threads for making records, up to 256 [default: every core].
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::pack::MAX_THREADS)))]
    pub threads: Option<u32>,
}

/// Runs the command and prints a one-line summary.
pub fn run(args: &Args, out: &mut dyn Write) -> Result<(), CliError> {
    let started = Instant::now();
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
    let made = pool.install(|| make_delta(&args.old, &args.new, &args.output, &options))?;
    crate::ui::step("make delta");
    writeln!(
        out,
        "delta {} {} -> {} into {}: {} assets rebuilt by {} records ({} patches, {} whole), {} assets unchanged; {}, {:.1}% of the full stone ({}), in {}",
        quote::text(&made.name),
        quote::text(&made.old_version),
        quote::text(&made.new_version),
        quote::name(std::os::unix::ffi::OsStrExt::as_bytes(
            args.output.as_os_str()
        )),
        made.rebuilt,
        made.records,
        made.patches,
        made.records - made.patches,
        made.unchanged,
        units::bytes(made.size),
        100.0 * made.size as f64 / made.preamble.to_size.max(1) as f64,
        units::bytes(made.preamble.to_size),
        units::duration(started.elapsed()),
    )?;
    Ok(())
}
