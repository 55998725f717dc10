//! What can go wrong: [`MountError`] when mounting or unmounting, returned to the caller;
//! [`ServeError`] while serving, which the kernel only sees as an errno and which is
//! therefore handed to the mount's log callback with its full context.

use std::io;
use std::path::PathBuf;

use mossfs_db::{DbError, StateId};
use mossfs_format::{AssetHash, PackageId};
use mossfs_store::StoreError;

/// Why a state could not be mounted or unmounted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MountError {
    /// The state is not recorded.
    #[error("state {state} does not exist; see 'mossfs state list'")]
    NoState {
        /// The state asked for.
        state: StateId,
    },
    /// The state could not be read.
    #[error("cannot read state {state} from the database")]
    Database {
        /// The state.
        state: StateId,
        /// What the database said.
        #[source]
        source: DbError,
    },
    /// The state was replaced while the mount opened its snapshots.
    #[error("state {state} changed while it was being mounted; try again")]
    StateChanged {
        /// The state.
        state: StateId,
    },
    /// The mount point does not exist.
    #[error("mount point {} does not exist; create it with 'mkdir -p {}'", .path.display(), .path.display())]
    MissingMountPoint {
        /// The mount point.
        path: PathBuf,
    },
    /// The mount point is not a directory.
    #[error("mount point {} is not a directory", .path.display())]
    NotADirectory {
        /// The mount point.
        path: PathBuf,
    },
    /// The mount point has something in it.
    #[error("mount point {} is not empty; mount on an empty directory", .path.display())]
    NotEmpty {
        /// The mount point.
        path: PathBuf,
    },
    /// The mount point is a mount whose server is gone.
    #[error(
        "{} is a mount whose server died; clear it with 'mossfs umount {}'",
        .path.display(),
        .path.display()
    )]
    DeadMount {
        /// The mount point.
        path: PathBuf,
    },
    /// A mossfs mount is already there.
    #[error(
        "{} is already a mossfs mount; unmount it with 'mossfs umount {}'",
        .path.display(),
        .path.display()
    )]
    AlreadyMounted {
        /// The mount point.
        path: PathBuf,
    },
    /// The mount point could not be examined.
    #[error("cannot use {} as a mount point", .path.display())]
    MountPoint {
        /// The mount point.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `/dev/fuse` is missing or cannot be opened.
    #[error("FUSE is not available: load the fuse module (modprobe fuse) or install fuse3")]
    NoFuse {
        /// What opening `/dev/fuse` said.
        #[source]
        source: io::Error,
    },
    /// The kernel refused the mount, or the first exchange with it failed.
    #[error("cannot mount at {}", .path.display())]
    Mount {
        /// The mount point.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The serving threads could not be started.
    #[error("cannot start the threads serving {}", .path.display())]
    Threads {
        /// The mount point.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `/proc/self/mountinfo` could not be read.
    #[error("cannot read the mount table /proc/self/mountinfo")]
    MountTable {
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Nothing is mounted there.
    #[error("{} is not a mount point", .path.display())]
    NotMounted {
        /// The path.
        path: PathBuf,
    },
    /// Something else than mossfs is mounted there, which mossfs leaves alone.
    #[error("{} is a {fs_type} mount, not a mossfs one; use umount(8)", .path.display())]
    NotMossfs {
        /// The mount point.
        path: PathBuf,
        /// Its file system type.
        fs_type: String,
    },
    /// The kernel refused to unmount.
    #[error("cannot unmount {}", .path.display())]
    Unmount {
        /// The mount point.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Signals could not be set up for a foreground mount.
    #[error("cannot set up SIGINT and SIGTERM handling")]
    Signals {
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// A failure while serving a request. The kernel is answered `EIO`; this says why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// A staged package could not be unpacked on first read.
    #[error("cannot unpack package {package} from its cached stone to serve its files")]
    Ingest {
        /// The package.
        package: PackageId,
        /// What the store said.
        #[source]
        source: StoreError,
    },
    /// A package recorded from its stone's head could not be downloaded (or its download
    /// did not check out) on first read.
    #[error("cannot download package {package} to serve its files")]
    Fetch {
        /// The package.
        package: PackageId,
        /// What the fetch hook said.
        #[source]
        source: super::fetch::FetchError,
    },
    /// An entry's asset is not in the store and no package can provide it.
    #[error("cannot open the bytes of {path}")]
    Asset {
        /// The entry, as seen in the mount.
        path: String,
        /// What the store said.
        #[source]
        source: StoreError,
    },
    /// Reading an asset failed.
    #[error("cannot read asset {asset} for {path}")]
    Read {
        /// The entry, as seen in the mount.
        path: String,
        /// The asset.
        asset: AssetHash,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A directory object could not be read.
    #[error("cannot read the directory {path}")]
    Tree {
        /// The directory, as seen in the mount.
        path: String,
        /// What the database said.
        #[source]
        source: DbError,
    },
    /// Kernel passthrough was negotiated but refused a store file (for example a store on
    /// a stacked file system); reads are served from the store from then on.
    #[error("kernel passthrough refused a store file; serving reads from the store from now on")]
    Passthrough {
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// A worker thread for unpacking could not be started.
    #[error("cannot start a thread to unpack package {package}")]
    Thread {
        /// The package.
        package: PackageId,
        /// Why.
        #[source]
        source: io::Error,
    },
}
