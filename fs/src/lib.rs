//! Everything that turns packages and states into file systems (DESIGN.md §2).
//!
//! This crate owns the syscalls that create trees: building and diffing trees, conflict
//! detection, the blit into a staging directory, the FUSE server, and the plain extraction
//! behind `mossfs extract`. It reads stones through `mossfs-format`, assets through
//! `mossfs-store` and states through `mossfs-db`, and it never prints, parses arguments or
//! picks exit codes: that is the binary's job. Progress and conflicts come back as values.
//!
//! Nothing here follows a symlink that came from a package: the blit and the extraction
//! create every entry relative to directory fds they opened themselves with `O_NOFOLLOW`,
//! so a hostile layout cannot reach outside the root it was given (DESIGN.md §6.3).
//!
//! Map:
//! - [`tree`]: merging package layouts into content-addressed directory objects, with
//!   symlinked directories resolved and conflicts recorded as values (DESIGN.md §5).
//! - [`walk`] and [`diff`]: visiting a tree, and comparing two trees in O(change).
//! - [`blit`]: writing a tree into a staging directory from the store, in parallel.
//! - [`sysroot`]: the writer lock, the atomic `/usr` exchange, `.stateID` and root links.
//! - [`fuse`]: serving any state read-only through FUSE (DESIGN.md §7).
//! - [`dirfd`]: safe creation below a directory descriptor, for extraction.
//! - [`extract`]: one stone into a plain directory.

pub mod blit;
pub mod diff;
pub mod dirfd;
pub mod extract;
pub mod fuse;
pub mod sysroot;
pub mod tree;
pub mod walk;
