//! The hook that lets a mount serve a candidate whose package bodies are not downloaded
//! yet (DESIGN.md §7, lazy materialization over the network; issue 10 §3).
//!
//! The mount only knows the store: it unpacks a package from its cached stone on first
//! read. A candidate staged from a repository was recorded from the stones' heads alone,
//! so its stones may not be cached at all. Whoever mounts it can pass a [`FetchPackage`]
//! ([`super::FsOptions::fetch`]); before unpacking a package whose stone is not cached,
//! the unpacking thread asks it to put that stone in the cache, checked. The fs crate
//! stays below the repositories: it never knows where a stone comes from or how it is
//! checked, and the command line implements the hook with the repository client.

use mossfs_format::PackageId;

/// Any error a fetch can give; the mount logs it and answers `EIO`.
pub type FetchError = Box<dyn std::error::Error + Send + Sync>;

/// Puts a package's stone in the store's cache, whole and checked, when a mount needs it.
///
/// Called on the mount's unpacking thread for that package, one call per package at a
/// time, while other requests go on being served: an implementation may block for as long
/// as the download takes, and must not hold anything that other packages' reads wait for.
pub trait FetchPackage: Send + Sync {
    /// Makes the stone of `package` cached, or says why it cannot.
    fn fetch(&self, package: &PackageId) -> Result<(), FetchError>;
}
