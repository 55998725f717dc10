//! [`CliError`]: every way a command can fail, and [`report`], the one line a person sees.
//!
//! Variants carry the file they were working on and keep the cause as a `#[source]`, so
//! the message is built from the chain, never glued into strings: `report` joins it on one
//! line and adds, where there is one, what to do next. A broken pipe is not a failure: it
//! means the reader (`head`, `less`) has seen enough.

use std::error::Error;
use std::io;
use std::path::PathBuf;

use mossfs_format::DecodeError;
use mossfs_fs::dirfd::DirError;
use mossfs_fs::extract::ExtractError;

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// An input file cannot be opened.
    #[error("cannot open {}", .path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A stone's metadata cannot be read.
    #[error("cannot read {}", .path.display())]
    Read {
        /// The stone.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: DecodeError,
    },
    /// `inspect --check` found a problem.
    #[error("{} failed the check{}", .path.display(), payload_note(.payload))]
    Check {
        /// The stone.
        path: PathBuf,
        /// The payload at fault, when the cause's own message does not say.
        payload: Option<&'static str>,
        /// The first problem found.
        #[source]
        source: DecodeError,
    },
    /// The directory to pack cannot be walked or read.
    #[error("cannot read {}", .path.display())]
    Scan {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The directory to pack holds something a stone cannot carry.
    #[error(
        "cannot pack {}: it is a {kind}, and stones hold regular files, symlinks and directories",
        .path.display()
    )]
    Unpackable {
        /// The entry.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// A name in the directory to pack cannot be a layout path (it is too long).
    #[error("cannot pack {}", .path.display())]
    BadPath {
        /// The entry.
        path: PathBuf,
        /// Why the layout refuses it.
        #[source]
        source: mossfs_format::PathError,
    },
    /// A line of the metadata file is wrong.
    #[error("{}:{line}: {problem}", .path.display())]
    MetaFile {
        /// The metadata file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// A required metadata field is missing.
    #[error("the package has no {field}")]
    MissingMeta {
        /// The field.
        field: &'static str,
    },
    /// A version that cannot stand on one line of output, or in a stone's file name.
    #[error(
        "the version {version:?} is refused: a version is 1 to 255 bytes with no `/`, whitespace or control characters"
    )]
    BadVersion {
        /// The version given.
        version: String,
    },
    /// The package name breaks the naming rule, which the message states.
    #[error(transparent)]
    BadName(#[from] mossfs_format::meta::NameError),
    /// A metadata value is invalid.
    #[error("invalid {field} `{value}`: {reason}")]
    BadMeta {
        /// The field.
        field: &'static str,
        /// The value given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// The output stone cannot be written.
    #[error("cannot write {}", .path.display())]
    Write {
        /// The output.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The extraction directory cannot be created or opened.
    #[error(transparent)]
    Dir(#[from] DirError),
    /// A stone cannot be extracted.
    #[error("cannot extract {}", .path.display())]
    Extract {
        /// The stone.
        path: PathBuf,
        /// Why.
        #[source]
        source: ExtractError,
    },
    /// The demo's sandbox cannot be set up.
    #[error("cannot set up the demo sandbox")]
    Sandbox(#[source] io::Error),
    /// A command the demo spells out does not parse: the demo and the command line
    /// disagree, which is a bug of this build.
    #[error("the demo's command does not parse: {0}")]
    DemoCommand(String),
    /// The demo's extracted tree differs from the sample it packed.
    #[error("the extracted tree differs from the sample at `{path}`: {difference}")]
    DemoMismatch {
        /// The first path that differs.
        path: String,
        /// How.
        difference: String,
    },
    /// Standard output is gone or full.
    #[error("cannot write to standard output")]
    Output(#[from] io::Error),
    /// A root-managing command failed; the active state is unchanged.
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    /// `verify` found damage, or could not finish.
    #[error(transparent)]
    Verify(#[from] crate::commands::verify::VerifyError),
    /// `delta` cannot make a delta from these stones.
    #[error(transparent)]
    Delta(#[from] mossfs_store::make_delta::MakeDeltaError),
    /// `mount` or `umount` failed.
    #[error(transparent)]
    Mount(#[from] crate::commands::mount::MountCommandError),
    /// `mossfs man` could not write a page.
    #[error(transparent)]
    Man(#[from] crate::docs::ManError),
    /// `--log` or `MOSSFS_LOG` is not a filter.
    #[error(transparent)]
    Log(#[from] crate::ui::LogFilterError),
    /// A repository command failed; the previous index stays in use.
    #[error(transparent)]
    Repo(#[from] mossfs_repo::RepoError),
}

fn payload_note(payload: &Option<&'static str>) -> String {
    payload.map_or_else(String::new, |p| format!(" in its {p} payload"))
}

/// The payload a decode error is about, for the variants whose message does not name it.
pub fn payload_of(err: &DecodeError) -> Option<&'static str> {
    match err {
        DecodeError::BadDigest { .. } => Some("content"),
        DecodeError::IndexOutOfRange { .. } | DecodeError::IndexOverlap { .. } => Some("index"),
        DecodeError::MissingAsset { .. } => Some("layout"),
        _ => None,
    }
}

impl CliError {
    /// Whether the reader of our output went away, which ends a run successfully.
    pub fn is_broken_pipe(&self) -> bool {
        self.caused_by(&[io::ErrorKind::BrokenPipe])
    }

    /// Whether an I/O error of one of `kinds` is anywhere in the chain.
    fn caused_by(&self, kinds: &[io::ErrorKind]) -> bool {
        chain(self).any(|e| {
            e.downcast_ref::<io::Error>()
                .is_some_and(|io| kinds.contains(&io.kind()))
        })
    }

    /// Lines that explain the error below its one-line report: why no set of packages
    /// satisfies a request.
    pub fn details(&self) -> Option<&str> {
        match self {
            CliError::Engine(crate::engine::EngineError::Unsolvable { explanation, .. }) => {
                Some(explanation)
            }
            _ => None,
        }
    }

    /// What to do about it, when there is something better than "read the message".
    pub fn hint(&self) -> Option<&'static str> {
        // Whatever was being written, a full disk is what the person must fix.
        if self.caused_by(&[io::ErrorKind::StorageFull, io::ErrorKind::QuotaExceeded]) {
            return Some("the file system is full; free some space, then run the command again");
        }
        match self {
            CliError::Open { source, .. } | CliError::Scan { source, .. }
                if source.kind() == io::ErrorKind::NotFound =>
            {
                Some("check the path")
            }
            CliError::Read {
                source: DecodeError::BadMagic { .. } | DecodeError::Empty,
                ..
            }
            | CliError::Engine(crate::engine::EngineError::Stone {
                source: DecodeError::BadMagic { .. } | DecodeError::Empty,
                ..
            }) => Some("is it a .stone file?"),
            CliError::Read {
                source: DecodeError::Io(e),
                ..
            } if e.kind() == io::ErrorKind::IsADirectory => {
                Some("give the path of a .stone file, not of a directory")
            }
            CliError::Read { .. } | CliError::Check { .. } => {
                Some("the file is damaged or was cut short; fetch or build it again")
            }
            CliError::Engine(crate::engine::EngineError::Store(e))
                if e.falls_back_to_full_stone() =>
            {
                Some("install the package's full stone instead; nothing was changed")
            }
            CliError::MetaFile { .. } => Some("see \"Metadata file\" in README.md"),
            CliError::Engine(crate::engine::EngineError::Preview { .. }) => Some(
                "drop the candidate ('mossfs state remove ID', then 'mossfs gc'), run 'mossfs repo update' and stage the change again",
            ),
            CliError::MissingMeta { field: "name" } => {
                Some("pass --name NAME, or put `name = NAME` in the --meta file")
            }
            CliError::MissingMeta { field: "version" } => {
                Some("pass --version VERSION, or put `version = VERSION` in the --meta file")
            }
            CliError::Write { .. } => {
                Some("check that the output's directory exists and is writable")
            }
            CliError::Extract { source, .. } => match source {
                ExtractError::Dir(DirError::Exists { .. }) => {
                    Some("extract into an empty directory; nothing is ever overwritten")
                }
                ExtractError::Dir(DirError::Symlink { .. })
                | ExtractError::BeneathNonDirectory { .. }
                | ExtractError::Duplicate { .. } => Some(
                    "the stone is broken or hostile; nothing was written outside the directory",
                ),
                ExtractError::Decode(_) => {
                    Some("the file is damaged or was cut short; fetch or build it again")
                }
                _ => None,
            },
            _ => None,
        }
    }
}

/// The error and its causes, outermost first.
fn chain<'a>(err: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(err), |e: &&'a (dyn Error + 'static)| (*e).source())
}

/// `error: <what happened>: <why>: <deeper why>; <what to do>`, on one line. A cause whose
/// text its parent already printed (thiserror's `{source}` in a message, advice after it or
/// not) is shown once.
pub fn report(err: &CliError) -> String {
    let mut line = String::from("error: ");
    let mut shown = String::new();
    for cause in chain(err) {
        let text = cause.to_string();
        if text.is_empty() || shown.contains(&text) {
            continue;
        }
        if !shown.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
        shown = text;
    }
    if let Some(hint) = err.hint() {
        line.push_str("; ");
        line.push_str(hint);
    }
    // Names inside messages come from outside: a newline or an escape sequence in one must
    // neither start a second line nor reach the terminal.
    let mut report = crate::quote::text(&line.replace('\n', " ")).into_owned();
    // An explanation that takes several lines follows, each indented and quoted alike.
    for detail in err.details().into_iter().flat_map(str::lines) {
        report.push_str("\n  ");
        report.push_str(&crate::quote::text(detail));
    }
    // Something nobody offers is most often something the local copy of an index does not
    // know yet: say what would find it, below the explanation that named it.
    if err
        .details()
        .is_some_and(|details| details.to_lowercase().contains("no candidates were found"))
    {
        report.push_str(
            "\nhint: if a repository should offer what has no candidates, run 'mossfs repo update', \
             or look for it with 'mossfs search'",
        );
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_is_one_line_with_a_hint() {
        let err = CliError::Open {
            path: "x.stone".into(),
            source: io::Error::from(io::ErrorKind::NotFound),
        };
        assert_eq!(
            report(&err),
            "error: cannot open x.stone: entity not found; check the path"
        );
    }

    #[test]
    fn a_cause_already_in_its_parent_message_is_not_repeated() {
        let source = DecodeError::Io(io::Error::other("disk on fire"));
        let err = CliError::Read {
            path: "x.stone".into(),
            source,
        };
        let line = report(&err);
        assert_eq!(line.matches("disk on fire").count(), 1, "{line}");
        assert!(line.starts_with("error: cannot read x.stone: read failed: disk on fire"));
    }

    #[test]
    fn a_broken_pipe_is_recognised_through_the_chain() {
        let err = CliError::Output(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(err.is_broken_pipe());
        let err = CliError::Output(io::Error::from(io::ErrorKind::StorageFull));
        assert!(!err.is_broken_pipe());
    }

    #[test]
    fn a_full_disk_deep_in_the_chain_says_to_free_space() {
        let err = CliError::Write {
            path: "out.stone".into(),
            source: io::Error::from_raw_os_error(28),
        };
        assert!(
            report(&err).ends_with(
                "No space left on device (os error 28); \
                 the file system is full; free some space, then run the command again"
            ),
            "{}",
            report(&err)
        );
    }
}
