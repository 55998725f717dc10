//! The root-managing commands. Each one opens the root, asks the engine, and prints; none
//! of them decides durability or order, which is the engine's job.

pub mod by_delta;
pub mod documents;
pub mod gc;
pub mod install;
pub mod mount;
pub mod query;
pub mod repo;
pub mod search_file;
pub mod state;
pub mod triggers;
pub mod verify;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use mossfs_fs::blit::BlitProgress;

use crate::engine::{CommitReport, Root};
use crate::progress::{Bar, Unit};

/// The option every root command takes. It is global: `mossfs --root R install x` and
/// `mossfs install x --root R` mean the same, and `-D/--directory` is upstream moss's
/// spelling of it. The top-level command flattens it too, so every subcommand accepts it
/// (clap hands the value typed anywhere to every level that declares it).
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct RootArg {
    /// The system root to manage.
    #[arg(
        long,
        short = 'D',
        visible_alias = "directory",
        global = true,
        default_value = "/",
        value_name = "DIR",
        value_hint = clap::ValueHint::DirPath
    )]
    pub root: PathBuf,
}

/// Prints what recovery did when the root was opened, or, for a reader, what the
/// database has not caught up with yet.
pub fn report_recovery(root: &Root) {
    for note in &root.recovered {
        eprintln!("recovered: {note}");
    }
    if let Some(note) = &root.pending {
        eprintln!("note: {note}");
    }
}

/// A progress callback for the blit: a bar of entries and their rate, drawn on stderr only
/// when it is a terminal, and cleared when the callback is dropped.
pub fn progress(label: &'static str) -> Option<Box<dyn Fn(BlitProgress) + Sync>> {
    if !crate::progress::enabled() {
        return None;
    }
    // Made at the first report, which brings the total, and cleared at the last, so that
    // the steps after the blit do not show a finished bar.
    let bar: Mutex<Option<Bar>> = Mutex::new(None);
    Some(Box::new(move |p: BlitProgress| {
        let mut bar = bar.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if p.done >= p.total {
            *bar = None;
            return;
        }
        bar.get_or_insert_with(|| Bar::new(label, p.total, Unit::Items("entries")))
            .set(p.done);
    }))
}

/// Tells on stderr what the commit noticed about the root links; `--json` runs print
/// these too, since they go to stderr.
pub fn commit_notes(report: &CommitReport) {
    for note in &report.links {
        let label = if note.is_warning() { "warning" } else { "note" };
        eprintln!("{label}: {note}");
    }
}

/// The one-line summary of a state change.
pub fn print_commit(
    out: &mut dyn Write,
    report: &CommitReport,
    summary: &str,
) -> std::io::Result<()> {
    if let Some(kept) = &report.took_over {
        writeln!(
            out,
            "took over the usr that mossfs did not make: it is kept in {} (see 'Taking over a usr' in README.md)",
            kept.display()
        )?;
    }
    commit_notes(report);
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
        "state {} active ({}): {how}{unpacked} in {:.2} s",
        report.id,
        crate::quote::text(summary),
        report.elapsed.as_secs_f64()
    )
}
