//! Everything that turns packages and states into file systems (DESIGN.md §2).
//!
//! This crate owns the syscalls that create trees: building and diffing trees, conflict
//! detection, the blit into a staging directory, the FUSE server, and the plain extraction
//! behind `mossfs extract`. It reads stones through `mossfs-format`, assets through
//! `mossfs-store` and states through `mossfs-db`, and it never prints, parses arguments or
//! picks exit codes: that is the binary's job. Progress and conflicts come back as values.
//!
//! Everything it creates goes through [`dirfd::DirFd`], so that a hostile layout cannot
//! reach outside the root it was given (DESIGN.md §6.3).
//!
//! Map:
//! - [`dirfd`]: safe creation below a directory descriptor; no symlink is ever followed.
//! - [`extract`]: one stone into a plain directory.
//! - [`sysroot`]: the writer lock, the atomic `/usr` exchange, `.stateID` and root links.

pub mod blit;
pub mod diff;
pub mod dirfd;
pub mod extract;
pub mod fuse;
pub mod sysroot;
pub mod tree;
pub mod walk;
