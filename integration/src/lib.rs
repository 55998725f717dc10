//! Test helpers shared by the end-to-end tests and benchmarks.

pub mod bench;
pub mod binary;
pub mod corpus;
pub mod nginx;

pub use binary::{mossfs, mossfs_bin};
