//! Test helpers shared by the end-to-end tests and benchmarks.
