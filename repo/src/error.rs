//! The crate's error type: one variant per failure a caller (or a person) can act on, as the
//! TUF client workflow teaches: expired, rolled back, badly signed and mismatched are each
//! their own case.

use std::path::PathBuf;

use crate::checksum::ChecksumError;
use crate::config::MAX_REPO_NAME;
use crate::transport::TransportError;

/// Everything that can go wrong with repositories.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A key file or key text that is not a key.
    #[error("{what} is not a key: {reason}")]
    BadKey {
        /// The file or text.
        what: String,
        /// Why.
        reason: String,
    },
    /// A stone that cannot be read while indexing.
    #[error("cannot index {}: {source}", path.display())]
    ReadStone {
        /// The stone.
        path: PathBuf,
        /// What the reader found.
        #[source]
        source: mossfs_format::DecodeError,
    },
    /// A stone that lacks a field upstream requires.
    #[error("cannot index {}: its meta has no {field}, which upstream moss requires; repack it with 'mossfs pack'", path.display())]
    MissingField {
        /// The stone.
        path: PathBuf,
        /// The field's name.
        field: String,
    },
    /// A stone whose meta cannot be typed.
    #[error("cannot index {}: {source}", path.display())]
    BadMeta {
        /// The stone.
        path: PathBuf,
        /// Why.
        #[source]
        source: mossfs_format::meta::MetaError,
    },
    /// Two stones of one package with the same source release.
    #[error("package {name} has two stones with release {release}: {} and {}; remove one", first.display(), second.display())]
    DuplicateRelease {
        /// The package name.
        name: String,
        /// The release both have.
        release: u64,
        /// One stone.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
    /// More packages than one index can hold (a stone has at most 65,535 payloads).
    #[error("{count} packages do not fit one index, which holds at most 65535")]
    TooManyPackages {
        /// How many.
        count: usize,
    },
    /// `--history ID` for a history that is already published.
    #[error("history {id} is already published at {}; histories are immutable, pick a new id", path.display())]
    HistoryExists {
        /// The id.
        id: String,
        /// Its index.
        path: PathBuf,
    },
    /// A root index that cannot be used.
    #[error("root index {uri}: {reason}")]
    RootIndex {
        /// Where it came from.
        uri: String,
        /// Why.
        reason: String,
    },
    /// A repository configuration file that cannot be used.
    #[error("{}: {reason}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A repository name that is not configured.
    #[error("no repository named {0}; see 'mossfs repo list'")]
    UnknownRepo(String),
    /// `repo add` for a name that cannot be one: empty, or too long for its file's name.
    #[error("a repository name must have 1 to {MAX_REPO_NAME} characters; '{0}' cannot be one")]
    BadRepoName(String),
    /// `repo add` for a name already configured.
    #[error("a repository named {0} is already configured; remove it first or pick another name")]
    RepoExists(String),
    /// A URI that cannot be used.
    #[error("{uri}: {reason}")]
    BadUri {
        /// The URI.
        uri: String,
        /// Why.
        reason: String,
    },
    /// A download failed.
    #[error("cannot fetch {uri}: {source}; {}", fetch_advice(source))]
    Fetch {
        /// What was fetched.
        uri: String,
        /// Why.
        #[source]
        source: TransportError,
    },
    /// A repository's checksum file or index could not be fetched: unlike a stone, which
    /// can vanish when the repository moves on, these are where the configuration says.
    #[error(
        "repository {repo}: cannot fetch {uri}: {source}; {}",
        index_advice(source)
    )]
    FetchIndex {
        /// The repository.
        repo: String,
        /// What was fetched.
        uri: String,
        /// Why.
        #[source]
        source: TransportError,
    },
    /// A checksum file that cannot be read.
    #[error("repository {repo}: {source}")]
    Checksum {
        /// The repository.
        repo: String,
        /// Why.
        #[source]
        source: ChecksumError,
    },
    /// A key is configured and the checksum file is not signed.
    #[error(
        "repository {repo} is unsigned but a key is configured for it; refused, the previous index stays in use"
    )]
    Unsigned {
        /// The repository.
        repo: String,
    },
    /// Signed, but not by the configured key.
    #[error(
        "repository {repo} is signed by key {found}, not the configured one; refused, the previous index stays in use"
    )]
    OtherKey {
        /// The repository.
        repo: String,
        /// The key that signed it (hex).
        found: String,
    },
    /// The signature does not verify.
    #[error("repository {repo} has a bad signature; refused, the previous index stays in use")]
    BadSignature {
        /// The repository.
        repo: String,
    },
    /// A version lower than one already seen: a replayed old index.
    #[error(
        "repository {repo} offers version {found}, older than version {seen} already seen (a rollback); refused, the previous index stays in use"
    )]
    Rollback {
        /// The repository.
        repo: String,
        /// The highest version seen.
        seen: u64,
        /// The version offered.
        found: u64,
    },
    /// An expired checksum file: a frozen mirror.
    #[error(
        "repository {repo} expired at {expired} (unix time {expires}); the mirror is stale or frozen: try again later or ask its publisher to re-sign it"
    )]
    Expired {
        /// The repository.
        repo: String,
        /// The expiry, unix seconds.
        expires: u64,
        /// The expiry, as a UTC date.
        expired: String,
    },
    /// The index's bytes do not match its checksum file.
    #[error(
        "repository {repo}: the index does not match its checksum file ({what}); refused, the previous index stays in use"
    )]
    IndexMismatch {
        /// The repository.
        repo: String,
        /// What differs.
        what: String,
    },
    /// An index that does not decode.
    #[error("repository {repo}: the index is damaged: {source}")]
    BadIndex {
        /// The repository.
        repo: String,
        /// Why.
        #[source]
        source: mossfs_format::DecodeError,
    },
    /// An index entry that cannot be used.
    #[error("repository {repo}: index entry {index}: {reason}")]
    BadEntry {
        /// The repository.
        repo: String,
        /// Its position.
        index: usize,
        /// Why.
        reason: String,
    },
    /// A package no enabled repository offers.
    #[error(
        "no enabled repository offers {0}; run 'mossfs repo update' or see 'mossfs list available'"
    )]
    NotAvailable(String),
    /// A downloaded stone whose sha256 is not the index's.
    #[error(
        "{name}: the download's sha256 is {found}, but the index says {expected}; nothing was kept"
    )]
    HashMismatch {
        /// The package.
        name: String,
        /// What the index says.
        expected: String,
        /// What arrived.
        found: String,
    },
    /// A downloaded stone of the wrong size.
    #[error(
        "{name}: the download is {found} bytes, but the index says {expected}; nothing unverified was kept under its name"
    )]
    SizeMismatch {
        /// The package.
        name: String,
        /// What the index says.
        expected: u64,
        /// What arrived.
        found: u64,
    },
    /// A stone whose first bytes are not a package's head (DESIGN.md §3).
    #[error("{name}: the head of {uri} is not a package's: {source}")]
    BadHead {
        /// The package.
        name: String,
        /// Where it was read.
        uri: String,
        /// What is wrong.
        #[source]
        source: Box<crate::head::HeadError>,
    },
    /// A full download whose head is not the one a candidate was built from: the
    /// repository served other bytes for the same package.
    #[error(
        "{name}: the downloaded stone's meta, layout or index differ from the head the candidate was built from; the repository changed under it, nothing was kept"
    )]
    HeadChanged {
        /// The package.
        name: String,
    },
    /// The database failed.
    #[error(transparent)]
    Db(#[from] mossfs_db::DbError),
}

/// What a person can do about a failed download: a file the server no longer has usually
/// means the local copy of the index is older than the repository, anything else is the
/// server or the way to it.
fn fetch_advice(error: &TransportError) -> &'static str {
    match error {
        TransportError::NotFound => {
            "the repository may have changed since its index was read: run 'mossfs repo update', then try again"
        }
        TransportError::Write(_) => "free some space, then try again",
        _ => {
            "check that the server is up and the URI is right ('mossfs repo list'), then try again"
        }
    }
}

/// What a person can do when a repository's own files cannot be fetched: a file that is
/// not there means the configured URI is wrong, since updating is what reads it.
fn index_advice(error: &TransportError) -> &'static str {
    match error {
        TransportError::NotFound => {
            "check the repository's URI ('mossfs repo list'); a wrong one is replaced with 'mossfs repo remove' and 'mossfs repo add'"
        }
        other => fetch_advice(other),
    }
}
