//! Delta offers: which delta stones a repository publishes, and where a client keeps
//! them (DESIGN.md §8, §11).
//!
//! `mossfs index --deltas N` lists its deltas **inside `stone.index`**, as one payload of
//! kind [`DELTAS_KIND`] (uncompressed, with its xxh3 checksum) after the packages' meta
//! payloads. The index's checksum file covers every byte of the index, so its signature
//! vouches for each delta's sha256 as it does for each package's. Upstream's reader skips
//! payload kinds it does not know by their size and turns only meta payloads into
//! packages, so an upstream moss reads the same index unchanged. (A meta tag would not do:
//! upstream's older readers refuse a meta tag they do not know.)
//!
//! ```text
//! deltas payload body: one record per delta, records = their count
//!   0   32  to:     sha256 of the full stone the delta rebuilds (a package's hash)
//!  32   32  from:   sha256 of the stone whose assets it patches
//!  64   32  sha256 of the delta stone itself
//!  96    8  its size in bytes (big-endian)
//! 104    2  URI length n (big-endian), then n bytes of URI, relative to the index
//! ```
//!
//! A refresh checks the list against the index (each `to` must be a package it lists,
//! each URI must stay inside the repository) and keeps it, with absolute URIs, in
//! `ROOT/.moss/repo/<id>/deltas.json` beside the verified index. An install reads it
//! there ([`offers`]); a missing or unreadable file only means no deltas.

use std::path::Path;

use serde_json::{Value, json};

/// The payload kind of the delta list in `stone.index`, beside the checksum file's kinds.
pub const DELTAS_KIND: u8 = 0x42;

/// Where a refresh keeps the checked list, in the repository's state folder.
pub const FILE_NAME: &str = "deltas.json";

/// The longest URI a record may carry.
const MAX_URI: usize = 4096;

/// One delta a repository offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The package (sha256 of its full stone, lowercase hex) the delta rebuilds.
    pub to: String,
    /// The package (sha256 hex) whose assets it patches.
    pub from: String,
    /// The delta stone's sha256, lowercase hex.
    pub sha256: String,
    /// Its size.
    pub size: u64,
    /// Its URI: relative to the index as published, absolute once a refresh resolved it.
    pub uri: String,
}

/// Encodes the payload body.
pub fn encode(offers: &[Offer]) -> Vec<u8> {
    let mut out = Vec::new();
    for offer in offers {
        for hex in [&offer.to, &offer.from, &offer.sha256] {
            let bytes = crate::unhex(hex).unwrap_or_default();
            let mut fixed = [0u8; 32];
            let n = bytes.len().min(32);
            fixed[..n].copy_from_slice(&bytes[..n]);
            out.extend_from_slice(&fixed);
        }
        out.extend_from_slice(&offer.size.to_be_bytes());
        let uri = offer.uri.as_bytes();
        out.extend_from_slice(&(uri.len().min(MAX_URI) as u16).to_be_bytes());
        out.extend_from_slice(&uri[..uri.len().min(MAX_URI)]);
    }
    out
}

/// Decodes the payload body of `count` records; the reason on malformed bytes.
pub fn decode(body: &[u8], count: u32) -> Result<Vec<Offer>, String> {
    let mut rest = body;
    let mut take = |n: usize| -> Result<&[u8], String> {
        if rest.len() < n {
            return Err("the delta list ends inside a record".into());
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let mut offers = Vec::new();
    for _ in 0..count {
        let to = crate::hex(take(32)?);
        let from = crate::hex(take(32)?);
        let sha256 = crate::hex(take(32)?);
        let size = u64::from_be_bytes(
            take(8)?
                .try_into()
                .map_err(|_| "a short size".to_string())?,
        );
        let len = u16::from_be_bytes(
            take(2)?
                .try_into()
                .map_err(|_| "a short URI length".to_string())?,
        );
        if usize::from(len) > MAX_URI {
            return Err(format!("a URI of {len} bytes"));
        }
        let uri = std::str::from_utf8(take(usize::from(len))?)
            .map_err(|_| "a URI that is not UTF-8".to_string())?
            .to_owned();
        offers.push(Offer {
            to,
            from,
            sha256,
            size,
            uri,
        });
    }
    if !rest.is_empty() {
        return Err(format!(
            "{} bytes after the last of {count} records",
            rest.len()
        ));
    }
    Ok(offers)
}

/// Keeps a refresh's checked offers in `dir`, or removes the file when there are none.
pub fn keep(dir: &Path, offers: &[Offer]) -> Result<(), crate::RepoError> {
    let path = dir.join(FILE_NAME);
    if offers.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(crate::RepoError::Io { path, source: e })
            }
            _ => Ok(()),
        };
    }
    let list: Vec<Value> = offers
        .iter()
        .map(|o| {
            json!({
                "to": o.to, "from": o.from, "sha256": o.sha256, "size": o.size, "uri": o.uri,
            })
        })
        .collect();
    let bytes = serde_json::to_vec_pretty(&json!({ "deltas": list })).unwrap_or_default();
    crate::publish::write_atomic(&path, &bytes)
}

/// The offers kept by the last refresh of repository `repo` under `root`. Anything
/// unreadable counts as no offer: a delta is only ever an optimisation.
pub fn offers(root: &Path, repo: &str) -> Vec<Offer> {
    let path = crate::refresh::state_dir(root, repo).join(FILE_NAME);
    let Ok(bytes) = std::fs::read(&path) else {
        return Vec::new();
    };
    let Ok(doc) = serde_json::from_slice::<Value>(&bytes) else {
        return Vec::new();
    };
    let Some(list) = doc.get("deltas").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|v| {
            let text = |k: &str| v.get(k)?.as_str().map(str::to_owned);
            Some(Offer {
                to: text("to")?,
                from: text("from")?,
                sha256: text("sha256")?,
                size: v.get("size")?.as_u64()?,
                uri: text("uri")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_damage_is_named() {
        let offers = vec![
            Offer {
                to: "ab".repeat(32),
                from: "cd".repeat(32),
                sha256: "ef".repeat(32),
                size: 1234,
                uri: "deltas/x.delta".into(),
            },
            Offer {
                to: "01".repeat(32),
                from: "23".repeat(32),
                sha256: "45".repeat(32),
                size: 0,
                uri: String::new(),
            },
        ];
        let body = encode(&offers);
        assert_eq!(decode(&body, 2).unwrap(), offers);
        assert!(decode(&body, 3).unwrap_err().contains("ends inside"));
        assert!(decode(&body, 1).unwrap_err().contains("after the last"));
        assert!(decode(&body[..body.len() - 1], 2).is_err());
    }

    /// The list rides in the index as a payload `read_index` skips (as upstream's reader
    /// does) and `read_index_with` returns, checksum checked.
    #[test]
    fn the_list_rides_in_the_index_beside_the_packages() {
        use mossfs_format::{FileType, MetaRecord, Reader, Writer, WriterOptions};
        let meta = mossfs_format::Meta {
            name: "a".into(),
            version: "1".into(),
            release: 1,
            ..mossfs_format::Meta::default()
        }
        .to_records();
        let offers = vec![Offer {
            to: "ab".repeat(32),
            from: "cd".repeat(32),
            sha256: "ef".repeat(32),
            size: 99,
            uri: "deltas/a.delta".into(),
        }];
        let mut bytes = std::io::Cursor::new(Vec::new());
        let mut writer =
            Writer::new(&mut bytes, FileType::Repository, WriterOptions::default()).unwrap();
        writer.add_meta(&meta).unwrap();
        writer
            .add_extension(DELTAS_KIND, 1, &encode(&offers))
            .unwrap();
        writer.finish().unwrap();
        let bytes = bytes.into_inner();
        let plain: Vec<Vec<MetaRecord>> = Reader::new(&bytes[..])
            .unwrap()
            .read_index(1 << 20)
            .unwrap();
        assert_eq!(plain, vec![meta.clone()]);
        let (packages, extension) = Reader::new(&bytes[..])
            .unwrap()
            .read_index_with(1 << 20, Some(DELTAS_KIND))
            .unwrap();
        assert_eq!(packages, vec![meta]);
        let (count, body) = extension.unwrap();
        assert_eq!(decode(&body, count).unwrap(), offers);
        // A flipped byte in the list fails the payload's checksum.
        let mut damaged = bytes.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert!(
            Reader::new(&damaged[..])
                .unwrap()
                .read_index_with(1 << 20, Some(DELTAS_KIND))
                .is_err()
        );
    }
}
