//! Repositories (DESIGN.md §8): publishing signed, versioned indexes, and consuming them.
//!
//! A repository is a folder of static files that any web server, object store or mirror can
//! serve: the stones, a `stone.index` listing them (upstream's format, file type 3), and
//! next to every index a small signed *checksum file* that names the index's sha256, its
//! size, a version that only goes up and an expiry. A client fetches the checksum file
//! first and the index only when it changed, so a refresh with nothing new is one tiny
//! request over any transport.
//!
//! ```text
//! publisher                               client (ROOT)
//! DIR/**/*.stone ── index ──> stone.index   etc/moss/repo.d/NAME.kdl   what to use
//!                              stone.index.checksum   .moss/repo/<id>/  last verified files
//!                                                     db: available packages, providers
//! ```
//!
//! This crate owns the repository files, the configuration and the downloads. It never
//! prints (progress is a callback), never takes the root's lock (the caller holds it), and
//! never installs: a fetched stone lands in the store's cache, where install finds it.
//!
//! Map:
//! - [`checksum`]: the checksum file, its encoding and its Ed25519 signature.
//! - [`keys`]: key pairs for signing.
//! - [`publish`]: `mossfs index`: building `stone.index`, the root index and checksum files.
//! - [`root_index`]: upstream's `moss-root-index.json` (streams, tags, histories).
//! - [`config`]: `repo.d` files, YAML and KDL, vendor and admin.
//! - [`transport`]: `file://` and `http(s)://` reads, ranged, bounded and timed.
//! - [`refresh`]: `repo update`: the trust checks, in a fixed order, and the atomic swap.
//! - [`fetch`]: downloading stones in parallel, resumable, verified before they are named.
//! - [`deltas`]: the delta offers an index carries, and where a client keeps them.
//! - [`head`]: the first bytes of a stone, up to its content: enough for a candidate's tree.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(missing_docs)]

pub mod checksum;
pub mod config;
pub mod deltas;
pub mod error;
pub mod fetch;
pub mod head;
pub mod keys;
pub mod publish;
pub mod refresh;
pub mod root_index;
pub mod transport;

pub use error::RepoError;

/// Lowercase hex of some bytes, as upstream writes package hashes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Parses lowercase or uppercase hex; `None` on any other character or an odd length.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) for unix seconds, without pulling in a date library for one
/// format: Howard Hinnant's civil-from-days, proleptic Gregorian. The one formatter of
/// times for people, here and in the command line.
pub fn utc_time(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Seconds since the epoch, now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
