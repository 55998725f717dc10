//! The root-managing commands. Each one opens the root, asks the engine, and prints; none
//! of them decides durability or order, which is the engine's job.

pub mod gc;
pub mod install;
pub mod mount;
pub mod query;
pub mod repo;
pub mod state;
pub mod verify;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use mossfs_fs::blit::BlitProgress;

use crate::engine::{CommitReport, Root};

/// The option every root command takes.
#[derive(clap::Args, Debug, Clone)]
pub struct RootArg {
    /// The system root to manage.
    #[arg(long, global = true, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
}

/// Prints what recovery did when the root was opened.
pub fn report_recovery(root: &Root) {
    for note in &root.recovered {
        eprintln!("recovered: {note}");
    }
}

/// A progress callback for long steps, drawn on stderr only when it is a terminal.
pub fn progress(label: &'static str) -> Option<Box<dyn Fn(BlitProgress) + Sync>> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    Some(Box::new(move |p: BlitProgress| {
        eprint!("\r{label}: {}/{} entries", p.done, p.total)
    }))
}

/// The one-line summary of a state change.
pub fn print_commit(
    out: &mut dyn Write,
    report: &CommitReport,
    summary: &str,
) -> std::io::Result<()> {
    if std::io::stderr().is_terminal() {
        eprint!("\r\x1b[K");
    }
    let how = match (report.reused_archive, report.base) {
        (true, _) => "archived tree reused".to_owned(),
        (false, Some(base)) => format!(
            "{} paths changed from the archived tree of state {base}",
            report.blitted
        ),
        (false, None) => format!("{} entries blitted", report.blitted),
    };
    let unpacked = match report.unpacked {
        0 => String::new(),
        n => format!(", {n} package{} unpacked", if n == 1 { "" } else { "s" }),
    };
    writeln!(
        out,
        "state {} active ({summary}): {how}{unpacked} in {:.2} s",
        report.id,
        report.elapsed.as_secs_f64()
    )
}
