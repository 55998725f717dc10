//! The command line as people and scripts use it (issue 9), end to end through the real
//! binary on real roots: moss's flags and short verbs, `--json` documents, summaries, the
//! confirmation prompt, progress bars on a pseudo-terminal, completions and man pages.
//!
//! Map:
//! - [`verbs`]: `--root/-D` anywhere, short verbs, `search-file`, `state active`, `version`.
//! - [`docs`]: completion scripts and man pages load and render.
//! - [`json`]: every `--json` document, parsed, against the text output.
//! - [`summaries`]: one short line per state change, whatever the number of packages.
//! - [`terminal`]: progress bars and prompts on a real pseudo-terminal, none in pipes.

mod common;

#[path = "cli/docs.rs"]
mod docs;
#[path = "cli/json.rs"]
mod json;
#[path = "cli/summaries.rs"]
mod summaries;
#[path = "cli/terminal.rs"]
mod terminal;
#[path = "cli/verbs.rs"]
mod verbs;
