//! What every command shares about talking to people and programs: the global flags
//! (`--json`, `-v`, `--log`, `-y`), JSON documents on stdout, and the confirmation prompt.
//!
//! The flags are set once, in `main`, before any command runs, and read from here by the
//! commands that care, so a flag typed anywhere on the line reaches every command without
//! threading it through each signature.

use std::io::{self, Write};
use std::sync::OnceLock;

use serde::Serialize;

/// The flags every command accepts, before or after the subcommand.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct GlobalArgs {
    /// Print one JSON document on stdout instead of text (state, list, info, owner,
    /// search-file, and every state change).
    #[arg(long, global = true)]
    pub json: bool,
    /// Show each step and how long it took, on stderr.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Log level or filter for diagnostics on stderr: error, warn, info, debug, trace, or a
    /// tracing filter such as `mossfs=debug`; overrides MOSSFS_LOG.
    #[arg(long, global = true, value_name = "FILTER")]
    pub log: Option<String>,
    /// Answer yes to every question (removals of more than was named: prune, gc, several
    /// states at once).
    #[arg(short = 'y', long = "yes-all", global = true)]
    pub yes_all: bool,
}

static GLOBALS: OnceLock<GlobalArgs> = OnceLock::new();

/// Records the global flags for the run; the first call wins.
pub fn set(globals: GlobalArgs) {
    let _ = GLOBALS.set(globals);
}

fn globals() -> &'static GlobalArgs {
    GLOBALS.get_or_init(GlobalArgs::default)
}

/// Whether `--json` was given.
pub fn json() -> bool {
    globals().json
}

/// Prints `value` as the run's one JSON document, pretty and newline-terminated.
pub fn print_json(out: &mut dyn Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(io::Error::from)?;
    writeln!(out)
}
