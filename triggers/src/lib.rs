//! Triggers: commands a package asks to run when paths matching its patterns are in a new
//! state (DESIGN.md §10).
//!
//! - [`file`] reads upstream's YAML trigger files from a tree (`tx.d` and `sys.d`);
//! - [`pattern`] matches paths against patterns with named captures such as
//!   `/usr/lib/modules/(version:*)/kernel`;
//! - [`plan`] orders triggers by `before`/`after` and expands them, once per distinct
//!   command, into [`plan::Job`]s;
//! - [`container`] runs one job in a namespace container built from the staging tree;
//! - [`upper`] reads back what transaction triggers wrote.
//!
//! This crate never touches the database or the store: the engine in `cli` decides when
//! triggers run and what becomes of their output. It depends on `rustix` for the system
//! calls and `serde-saphyr` for YAML (a maintained, pure-Rust parser with limits on
//! nesting and size; `serde_yaml` is unmaintained).

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod container;
pub mod error;
pub mod file;
pub mod pattern;
pub mod plan;
pub mod upper;

pub use container::{
    Container, MAX_TIME_LIMIT, Outcome, RunError, UsrView, helper_main, run_on_host,
};
pub use error::TriggerError;
pub use file::{Scope, Trigger, load};
pub use plan::{Action, EntryKind, Job, Plan, plan, tree_paths};
