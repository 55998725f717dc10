//! What every benchmark needs around its measurements: running a peer command, keeping the
//! best of a few timed runs, and printing times the same way in every table.

use std::error::Error;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A benchmark stops at the first failure, whatever its kind, and prints it.
pub type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// Runs a command and returns its stdout; a failure carries its stderr, so a peer that
/// cannot run says why instead of yielding a meaningless time.
pub fn run(command: &mut Command) -> Result<String> {
    let out = command
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The best of `runs` timed runs of `f`, each after an untimed `prepare`, with one warm-up
/// first: the best run is the one least disturbed by the rest of the machine.
pub fn best(
    runs: usize,
    mut prepare: impl FnMut() -> Result<()>,
    mut f: impl FnMut() -> Result<()>,
) -> Result<Duration> {
    prepare()?;
    f()?;
    let mut best = Duration::MAX;
    for _ in 0..runs.max(1) {
        prepare()?;
        let started = Instant::now();
        f()?;
        best = best.min(started.elapsed());
    }
    Ok(best)
}

/// `0.123 s`.
pub fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

/// `12.3 ms`.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Whether `tool` can be started at all: a missing peer is named before any figure is
/// taken, rather than failing halfway through a run.
pub fn has_tool(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Refuses a benchmark whose peers or helpers are not on PATH, naming the first missing.
pub fn require_tools(tools: &[&str]) -> Result<()> {
    match tools.iter().find(|tool| !has_tool(tool)) {
        Some(tool) => Err(format!("the benchmark needs `{tool}` on PATH").into()),
        None => Ok(()),
    }
}
