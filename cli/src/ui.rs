//! What every command shares about talking to people and programs: the global flags
//! (`--json`, `-v`, `--log`, `-y`), JSON documents on stdout, and the confirmation prompt.
//!
//! The flags are set once, in `main`, before any command runs, and read from here by the
//! commands that care, so a flag typed anywhere on the line reaches every command without
//! threading it through each signature.

use std::io::{self, BufRead, IsTerminal, Write};
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

/// Whether `-y/--yes-all` was given: for the questions a command must not answer by itself
/// when nobody is there to ask (a cascading removal refuses instead).
pub fn yes_all() -> bool {
    globals().yes_all
}

/// Prints `value` as the run's one JSON document, pretty and newline-terminated.
pub fn print_json(out: &mut dyn Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(io::Error::from)?;
    writeln!(out)
}

/// Why the logging flags were refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid log filter `{filter}` (from {from}); use error, warn, info, debug, trace or a filter such as `mossfs=debug`"
)]
pub struct LogFilterError {
    /// What was given.
    pub filter: String,
    /// `--log` or `MOSSFS_LOG`.
    pub from: &'static str,
    /// The parser's complaint.
    #[source]
    pub source: tracing_subscriber::filter::ParseError,
}

/// Sends `tracing` events to stderr: the level comes from `--log`, else `MOSSFS_LOG`, else
/// `info` for mossfs with `-v` (every step and its time), else warnings only.
pub fn init_logging() -> Result<(), LogFilterError> {
    use tracing_subscriber::EnvFilter;
    let (filter, from) = match (&globals().log, std::env::var("MOSSFS_LOG")) {
        (Some(filter), _) => (filter.clone(), "--log"),
        (None, Ok(filter)) if !filter.is_empty() => (filter, "MOSSFS_LOG"),
        _ if globals().verbose => ("warn,mossfs=info".to_owned(), "-v"),
        _ => ("warn".to_owned(), "the default"),
    };
    let env_filter = EnvFilter::try_new(&filter).map_err(|source| LogFilterError {
        filter: filter.clone(),
        from,
        source,
    })?;
    tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(|| crate::progress::Stderr)
        .with_timer(tracing_subscriber::fmt::time::uptime())
        .with_target(false)
        .with_ansi(io::stderr().is_terminal())
        .init();
    Ok(())
}

/// Marks the end of a step of the run: with `-v` (or `--log info`), logs its name and how
/// long it took since the previous step ended, or since the run began.
pub fn step(name: &str) {
    use std::sync::Mutex;
    use std::time::Instant;
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    let now = Instant::now();
    let started = START.get_or_init(Instant::now);
    let mut last = LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let since = last.replace(now).unwrap_or(*started);
    tracing::info!(
        "{name}: {:.3} s",
        now.saturating_duration_since(since).as_secs_f64()
    );
}

static START: OnceLock<std::time::Instant> = OnceLock::new();

/// Starts the clock that [`step`] measures from; `main` calls it first thing.
pub fn start_clock() {
    START.get_or_init(std::time::Instant::now);
}

/// Logs the run's total time, under `-v`.
pub fn finish() {
    let started = START.get_or_init(std::time::Instant::now);
    tracing::info!("total: {:.3} s", started.elapsed().as_secs_f64());
}

/// Asks `question` on the terminal and returns whether the answer was yes. Without a
/// terminal on both stdin and stderr (a script, a pipe, CI) nothing is asked and the answer
/// is yes, as it was before the prompt existed; `-y/--yes-all` answers yes everywhere.
/// `--json` never asks either: its caller is a program.
pub fn confirm(question: &str) -> io::Result<bool> {
    let interactive = io::stdin().is_terminal() && io::stderr().is_terminal();
    if globals().yes_all || globals().json || !interactive {
        return Ok(true);
    }
    let mut err = io::stderr().lock();
    write!(err, "{question} [y/N] ")?;
    err.flush()?;
    let mut answer = String::new();
    io::stdin().lock().read_line(&mut answer)?;
    Ok(is_yes(&answer))
}

fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_y_and_yes_are_yes() {
        for yes in ["y", "Y\n", " yes ", "YES"] {
            assert!(super::is_yes(yes), "{yes:?}");
        }
        for no in ["", "\n", "n", "no", "yep", "ja"] {
            assert!(!super::is_yes(no), "{no:?}");
        }
    }
}
