//! Why trigger files are refused.

use std::path::PathBuf;

use crate::pattern::PatternError;

/// A trigger file, or the set of them, that cannot be used. Any of these refuses the state
/// change before anything is swapped (DESIGN.md §10).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TriggerError {
    /// A file or folder could not be read.
    #[error("cannot read trigger file /{}", .file.display())]
    Read {
        /// The file, relative to the root that holds `usr`.
        file: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// Not YAML, or not a trigger.
    #[error("cannot parse trigger file /{}: {message}", .file.display())]
    Parse {
        /// The file.
        file: PathBuf,
        /// What the parser said, with line and column.
        message: String,
    },
    /// Parsed, but makes no sense.
    #[error("trigger file /{} is not valid: {reason}", .file.display())]
    Invalid {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A pattern that cannot be compiled.
    #[error("trigger file /{} has a bad pattern '{pattern}'", .file.display())]
    Pattern {
        /// The file.
        file: PathBuf,
        /// The pattern text.
        pattern: String,
        /// What is wrong with it.
        #[source]
        source: PatternError,
    },
    /// A path rule names a handler the trigger does not define.
    #[error(
        "trigger file /{} maps '{pattern}' to handler '{handler}', which it does not define",
        .file.display()
    )]
    UnknownHandler {
        /// The file.
        file: PathBuf,
        /// The pattern.
        pattern: String,
        /// The missing handler.
        handler: String,
    },
    /// Two files define one trigger name.
    #[error(
        "trigger '{name}' is defined twice, in /{} and /{}",
        .first.display(),
        .second.display()
    )]
    DuplicateName {
        /// The name.
        name: String,
        /// The first file.
        first: PathBuf,
        /// The second file.
        second: PathBuf,
    },
    /// `before`/`after` form a cycle.
    #[error("triggers {} order each other in a cycle ({}); fix their before/after", .names.join(", "), .files.join(", "))]
    Cycle {
        /// The triggers on the cycle, in cycle order.
        names: Vec<String>,
        /// Their files.
        files: Vec<String>,
    },
}
