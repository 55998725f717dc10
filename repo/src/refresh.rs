//! `repo update`: refreshing one repository through its checksum file (DESIGN.md §8).
//!
//! The checks run in a fixed order, as TUF's client workflow does, and each failure is its
//! own [`RepoError`] variant:
//!
//! 1. fetch the checksum file (a few hundred bytes, at most [`CHECKSUM_LIMIT`]);
//! 2. signature: with a key configured, unsigned, badly signed and differently keyed files
//!    are refused;
//! 3. freeze: an expired file is refused;
//! 4. rollback: a version lower than the last one accepted is refused;
//! 5. unchanged (same version and digest as last time, and the verified copy still on
//!    disk): done, after one request;
//! 6. fetch the index, never more bytes than the checksum file names, and compare its
//!    sha256 and size (mix-and-match);
//! 7. decode it and check every entry (name, URI inside the repository, 64-hex sha256);
//! 8. keep the verified files in `ROOT/.moss/repo/<id>/` (temp name, then rename; the
//!    index's delta list, checked in step 7, as `deltas.json`) and
//!    replace the repository's offer and what was seen in one database transaction.
//!
//! Nothing is written before step 8, so a refusal or a killed process leaves the previous
//! offer in use. A root-index repository runs steps 1 to 5 on the root index, resolves its
//! version to a history, and then runs steps 1, 2 and 6 to 8 on that history's index
//! (histories are immutable, so their own checksum files need not be fresh).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use mossfs_db::{AvailableQuery, Db, RepoSeen};
use mossfs_format::{FileType, Meta, Reader};

use crate::RepoError;
use crate::checksum::{self, ChecksumFile, SignatureProblem};
use crate::config::{Repo, Source};
use crate::root_index::{self, RootIndex};
use crate::transport::Transport;

/// The most bytes a checksum file may have.
pub const CHECKSUM_LIMIT: u64 = 64 * 1024;
/// The most bytes a root index may have.
pub const ROOT_INDEX_LIMIT: u64 = 16 * 1024 * 1024;
/// The largest package size an index may claim (1 TiB): beyond it the entry is refused.
pub const MAX_PACKAGE_SIZE: u64 = 1 << 40;

/// What a refresh did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing changed; only the checksum file was read.
    Unchanged {
        /// The version in use.
        version: u64,
    },
    /// A new index is in use.
    Updated {
        /// Its version.
        version: u64,
        /// Packages it offers.
        packages: usize,
    },
}

/// Where a repository's verified files are kept.
pub fn state_dir(root: &Path, repo: &str) -> PathBuf {
    root.join(".moss/repo").join(repo)
}

/// Refreshes `repo` into `db`. The caller holds the root's lock.
pub fn refresh(
    root: &Path,
    db: &Db,
    repo: &Repo,
    transport: &Transport,
) -> Result<Outcome, RepoError> {
    let key = repo
        .key
        .as_deref()
        .map(crate::keys::parse_public)
        .transpose()?;
    let seen = db.read()?.repo_seen(&repo.id)?;
    let dir = state_dir(root, &repo.id);
    match &repo.source {
        Source::Direct { uri } => {
            let (sum, sum_bytes) =
                trusted_checksum(transport, repo, uri, key.as_ref(), seen.as_ref(), true)?;
            if unchanged(&sum, seen.as_ref(), &dir.join(INDEX_FILE)) {
                return Ok(Outcome::Unchanged {
                    version: sum.checksum.version,
                });
            }
            let index = fetch_checked(repo, transport, uri, &sum)?;
            let (packages, offers) = decode_index(repo, uri, base_of(uri), &index)?;
            let kept = Kept {
                offers: &offers,
                index: &index,
                checksum: &sum_bytes,
                root_index: None,
            };
            commit(db, repo, &dir, &sum, kept, &packages, key.is_some())
        }
        Source::Root {
            base_uri,
            channel,
            version,
            arch,
        } => {
            let base = base_uri.trim_end_matches('/');
            let root_uri = format!("{base}/{channel}/{}", root_index::FILE_NAME);
            let (sum, sum_bytes) = trusted_checksum(
                transport,
                repo,
                &root_uri,
                key.as_ref(),
                seen.as_ref(),
                true,
            )?;
            if unchanged(&sum, seen.as_ref(), &dir.join(INDEX_FILE)) {
                return Ok(Outcome::Unchanged {
                    version: sum.checksum.version,
                });
            }
            let root_bytes = fetch_checked(repo, transport, &root_uri, &sum)?;
            let bad_root = |reason: String| RepoError::RootIndex {
                uri: root_uri.clone(),
                reason,
            };
            let root_index = RootIndex::parse(&root_bytes).map_err(bad_root)?;
            let resolved = root_index.resolve(version).map_err(bad_root)?;
            if !root_index::SUPPORTED_FORMATS.contains(&resolved.format.as_str()) {
                return Err(bad_root(format!(
                    "{version} is history {} in format {}, which this mossfs cannot read; update mossfs",
                    resolved.history, resolved.format
                )));
            }
            if !root_index::valid_id(channel) || !root_index::valid_id(arch) {
                return Err(bad_root("channel and arch must be plain names".into()));
            }
            let index_uri = format!(
                "{base}/{channel}/history/{}/{arch}/{}",
                resolved.history,
                crate::publish::INDEX_NAME
            );
            let (index_sum, _) =
                trusted_checksum(transport, repo, &index_uri, key.as_ref(), None, false)?;
            let index = fetch_checked(repo, transport, &index_uri, &index_sum)?;
            let (packages, offers) = decode_index(repo, &index_uri, format!("{base}/"), &index)?;
            let kept = Kept {
                offers: &offers,
                index: &index,
                checksum: &sum_bytes,
                root_index: Some(&root_bytes),
            };
            commit(db, repo, &dir, &sum, kept, &packages, key.is_some())
        }
    }
}

const INDEX_FILE: &str = "stone.index";

fn unchanged(sum: &ChecksumFile, seen: Option<&RepoSeen>, kept: &Path) -> bool {
    seen.is_some_and(|s| {
        s.version == sum.checksum.version
            && s.digest == sum.checksum.digest.bytes
            && s.size == sum.checksum.size
    }) && kept.is_file()
}

/// Steps 1 to 4: fetch the checksum file for `uri` and check signature, expiry and
/// version.
fn trusted_checksum(
    transport: &Transport,
    repo: &Repo,
    uri: &str,
    key: Option<&VerifyingKey>,
    seen: Option<&RepoSeen>,
    fresh: bool,
) -> Result<(ChecksumFile, Vec<u8>), RepoError> {
    let sum_uri = checksum_uri(uri);
    let bytes =
        transport
            .get(&sum_uri, CHECKSUM_LIMIT)
            .map_err(|source| RepoError::FetchIndex {
                repo: repo.id.clone(),
                uri: sum_uri.clone(),
                source,
            })?;
    let sum = ChecksumFile::decode(&bytes).map_err(|source| RepoError::Checksum {
        repo: repo.id.clone(),
        source,
    })?;
    if let Some(key) = key {
        sum.verify(key).map_err(|problem| match problem {
            SignatureProblem::Unsigned => RepoError::Unsigned {
                repo: repo.id.clone(),
            },
            SignatureProblem::OtherKey(found) => RepoError::OtherKey {
                repo: repo.id.clone(),
                found,
            },
            SignatureProblem::BadSignature => RepoError::BadSignature {
                repo: repo.id.clone(),
            },
        })?;
    }
    if fresh && sum.checksum.expires <= crate::now() {
        return Err(RepoError::Expired {
            repo: repo.id.clone(),
            expires: sum.checksum.expires,
            expired: utc_date(sum.checksum.expires),
        });
    }
    if let Some(seen) = seen
        && sum.checksum.version < seen.version
    {
        return Err(RepoError::Rollback {
            repo: repo.id.clone(),
            seen: seen.version,
            found: sum.checksum.version,
        });
    }
    Ok((sum, bytes))
}

/// The checksum file's URI next to `uri`.
pub fn checksum_uri(uri: &str) -> String {
    let (dir, name) = uri.rsplit_once('/').unwrap_or(("", uri));
    format!("{dir}/{}", checksum::file_name(name))
}

/// Step 6.
fn fetch_checked(
    repo: &Repo,
    transport: &Transport,
    uri: &str,
    sum: &ChecksumFile,
) -> Result<Vec<u8>, RepoError> {
    let bytes = transport
        .get(uri, sum.checksum.size)
        .map_err(|source| match source {
            crate::transport::TransportError::TooLong { limit } => RepoError::IndexMismatch {
                repo: repo.id.clone(),
                what: format!("it is longer than the {limit} bytes signed"),
            },
            source => RepoError::FetchIndex {
                repo: repo.id.clone(),
                uri: uri.to_owned(),
                source,
            },
        })?;
    if bytes.len() as u64 != sum.checksum.size {
        return Err(RepoError::IndexMismatch {
            repo: repo.id.clone(),
            what: format!("{} bytes, not {}", bytes.len(), sum.checksum.size),
        });
    }
    let digest = checksum::Digest::sha256(&bytes);
    if digest != sum.checksum.digest {
        return Err(RepoError::IndexMismatch {
            repo: repo.id.clone(),
            what: format!(
                "sha256 {}, not {}",
                crate::hex(&digest.bytes),
                crate::hex(&sum.checksum.digest.bytes)
            ),
        });
    }
    Ok(bytes)
}

/// The folder of an index URI, with its trailing `/`: what its relative URIs resolve
/// against and must stay inside.
fn base_of(uri: &str) -> String {
    match uri.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/"),
        None => String::new(),
    }
}

/// Resolves a package URI from an index at `index_uri` against it, and refuses one that
/// leaves `base` (a `..` too many, another host, an absolute path, escapes).
pub fn resolve_uri(index_uri: &str, base: &str, rel: &str) -> Result<String, String> {
    if rel.is_empty() {
        return Err("an empty URI".into());
    }
    if rel.contains('\\') || rel.contains('\0') || rel.contains('?') || rel.contains('#') {
        return Err(format!("'{rel}' has characters a package path never needs"));
    }
    let lower = rel.to_ascii_lowercase();
    if lower.contains("%2e") || lower.contains("%2f") || lower.contains("%5c") {
        return Err(format!(
            "'{rel}' hides a path separator or dot in an escape"
        ));
    }
    let joined = if rel.contains("://") {
        rel.to_owned()
    } else if rel.starts_with('/') {
        return Err(format!("'{rel}' is an absolute path"));
    } else {
        format!("{}{rel}", base_of(index_uri))
    };
    // Split off scheme and authority, then normalise the path's dot segments.
    let (scheme, rest) = joined
        .split_once("://")
        .ok_or_else(|| format!("'{joined}' has no scheme"))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut parts: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!("'{rel}' climbs above the server's root"));
                }
            }
            s => parts.push(s),
        }
    }
    let resolved = format!("{scheme}://{authority}/{}", parts.join("/"));
    if !resolved.starts_with(base) {
        return Err(format!("'{rel}' leaves the repository ({base})"));
    }
    Ok(resolved)
}

/// Step 7: every entry typed and checked; URIs resolved to absolute ones.
fn decode_index(
    repo: &Repo,
    index_uri: &str,
    base: String,
    bytes: &[u8],
) -> Result<(Vec<Meta>, Vec<crate::deltas::Offer>), RepoError> {
    let bad_index = |source| RepoError::BadIndex {
        repo: repo.id.clone(),
        source,
    };
    let mut reader = Reader::new(bytes).map_err(bad_index)?;
    if reader.header().file_type != FileType::Repository {
        return Err(RepoError::BadEntry {
            repo: repo.id.clone(),
            index: 0,
            reason: format!(
                "the file is a {} stone, not a repository index",
                reader.header().file_type.name()
            ),
        });
    }
    // An index's records are at most a few hundred times its compressed size.
    let budget = (bytes.len() as u64).saturating_mul(64).max(1 << 20);
    let (entries, extension) = reader
        .read_index_with(budget, Some(crate::deltas::DELTAS_KIND))
        .map_err(bad_index)?;
    let mut names = BTreeSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for (i, records) in entries.iter().enumerate() {
        let bad = |reason: String| RepoError::BadEntry {
            repo: repo.id.clone(),
            index: i,
            reason,
        };
        let mut meta = Meta::from_records(records).map_err(|e| bad(e.to_string()))?;
        if !names.insert(meta.name.clone()) {
            return Err(bad(format!("{} is listed twice", meta.name)));
        }
        let (Some(uri), Some(hash), Some(size)) = (&meta.uri, &meta.hash, meta.size) else {
            return Err(bad(format!("{} lacks a URI, hash or size", meta.name)));
        };
        if hash.len() != 64 || crate::unhex(hash).is_none() {
            return Err(bad(format!("{}: '{hash}' is not a sha256", meta.name)));
        }
        if size > MAX_PACKAGE_SIZE {
            return Err(bad(format!(
                "{} claims an absurd size of {size} bytes",
                meta.name
            )));
        }
        let resolved =
            resolve_uri(index_uri, &base, uri).map_err(|r| bad(format!("{}: {r}", meta.name)))?;
        meta.hash = Some(hash.to_ascii_lowercase());
        meta.uri = Some(resolved);
        out.push(meta);
    }
    let offers = match extension {
        Some((count, body)) => decode_offers(repo, index_uri, &base, &out, count, &body)?,
        None => Vec::new(),
    };
    Ok((out, offers))
}

/// Step 7 for the index's delta list ([`crate::deltas`]): each delta must rebuild a
/// package the index lists, name a sha256, claim a sane size and stay inside the
/// repository; its URI is resolved like a package's. A damaged list refuses the index,
/// as a damaged package entry does: the signature covers both.
fn decode_offers(
    repo: &Repo,
    index_uri: &str,
    base: &str,
    packages: &[Meta],
    count: u32,
    body: &[u8],
) -> Result<Vec<crate::deltas::Offer>, RepoError> {
    let bad = |reason: String| RepoError::BadEntry {
        repo: repo.id.clone(),
        index: packages.len(),
        reason: format!("the delta list: {reason}"),
    };
    let hashes: BTreeSet<&str> = packages.iter().filter_map(|m| m.hash.as_deref()).collect();
    let mut offers = crate::deltas::decode(body, count).map_err(bad)?;
    for offer in &mut offers {
        if !hashes.contains(offer.to.as_str()) {
            return Err(bad(format!(
                "a delta to package {}, which the index does not list",
                offer.to
            )));
        }
        if offer.size > MAX_PACKAGE_SIZE {
            return Err(bad(format!(
                "a delta claims an absurd size of {} bytes",
                offer.size
            )));
        }
        offer.uri = resolve_uri(index_uri, base, &offer.uri).map_err(bad)?;
    }
    Ok(offers)
}

/// The verified files a refresh keeps in `.moss/repo/<id>/`.
struct Kept<'a> {
    index: &'a [u8],
    /// The index's delta list, checked and resolved.
    offers: &'a [crate::deltas::Offer],
    /// The checksum file that was checked first (the root index's, for a root index).
    checksum: &'a [u8],
    root_index: Option<&'a [u8]>,
}

/// Step 8. The checksum file is written last: what it names is already in place.
fn commit(
    db: &Db,
    repo: &Repo,
    dir: &Path,
    sum: &ChecksumFile,
    kept: Kept<'_>,
    packages: &[Meta],
    signed: bool,
) -> Result<Outcome, RepoError> {
    std::fs::create_dir_all(dir).map_err(|source| RepoError::Io {
        path: dir.to_owned(),
        source,
    })?;
    crate::publish::write_atomic(&dir.join(INDEX_FILE), kept.index)?;
    crate::deltas::keep(dir, kept.offers)?;
    let first = match kept.root_index {
        Some(bytes) => {
            crate::publish::write_atomic(&dir.join(root_index::FILE_NAME), bytes)?;
            root_index::FILE_NAME
        }
        None => INDEX_FILE,
    };
    crate::publish::write_atomic(&dir.join(checksum::file_name(first)), kept.checksum)?;
    let mut txn = db.write()?;
    txn.replace_available(&repo.id, repo.priority, packages)?;
    txn.set_repo_seen(
        &repo.id,
        Some(&RepoSeen {
            version: sum.checksum.version,
            expires: sum.checksum.expires,
            digest: sum.checksum.digest.bytes.clone(),
            size: sum.checksum.size,
            refreshed: crate::now(),
            signed,
        }),
    )?;
    txn.commit()?;
    Ok(Outcome::Updated {
        version: sum.checksum.version,
        packages: packages.len(),
    })
}

/// Forgets a repository's offer, what was seen of it, and its kept files.
pub fn forget(root: &Path, db: &Db, repo: &str) -> Result<(), RepoError> {
    let mut txn = db.write()?;
    txn.replace_available(repo, 0, &[])?;
    txn.set_repo_seen(repo, None)?;
    txn.commit()?;
    let dir = state_dir(root, repo);
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(RepoError::Io {
            path: dir,
            source: e,
        }),
        _ => Ok(()),
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` for unix seconds.
pub fn utc_date(secs: u64) -> String {
    format!("{} UTC", crate::utc_time(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_stay_inside_the_repository() {
        let index = "http://h/repo/main/history/1/x86_64/stone.index";
        let base = "http://h/repo/";
        assert_eq!(
            resolve_uri(index, base, "../../../pool/a.stone").unwrap(),
            "http://h/repo/main/pool/a.stone"
        );
        for bad in [
            "../../../../../x.stone",
            "../../../../../../../../x.stone",
            "http://evil/repo/a.stone",
            "/etc/passwd",
            "%2e%2e/x",
            "a.stone?x",
        ] {
            assert!(resolve_uri(index, base, bad).is_err(), "{bad}");
        }
        let direct = "file:///srv/r/stone.index";
        assert_eq!(
            resolve_uri(direct, &base_of(direct), "p/a.stone").unwrap(),
            "file:///srv/r/p/a.stone"
        );
        assert!(resolve_uri(direct, &base_of(direct), "../a.stone").is_err());
    }

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_date(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }
}
