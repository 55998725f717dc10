//! End-to-end transactions on real temporary roots (issue 3 §5): install, remove, upgrade,
//! rollback, prune, gc, verify and repair, refusals that change nothing, staging, and the
//! writer lock. Every test runs the real `mossfs` binary on a fresh root and checks what a
//! person would see: the tree under `usr` entry by entry, `.stateID`, the root links, and
//! the binary's own output (`state list`, `list installed`, `info`, `owner`).
//!
//! Map:
//! - [`lifecycle`]: install, remove, upgrade, rollback, prune, gc.
//! - [`verify`]: damage found and repaired.
//! - [`refusals`]: conflicts, dependencies, dry runs and staged candidates.
//! - [`lock`]: one writer at a time; readers never wait.

mod common;

// A test crate root looks for modules beside itself; these live in `transactions/`.
#[path = "transactions/lifecycle.rs"]
mod lifecycle;
#[path = "transactions/lock.rs"]
mod lock;
#[path = "transactions/refusals.rs"]
mod refusals;
#[path = "transactions/verify.rs"]
mod verify;
