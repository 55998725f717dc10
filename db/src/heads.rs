//! Packages recorded from their heads alone (DESIGN.md §7, §8; issue 10 §3).
//!
//! | name | key | value |
//! |---|---|---|
//! | `heads` | package id | stone URI, stone size, head length, sha256 of the head |
//!
//! A staged change from a repository records each new package from the first bytes of its
//! stone (meta, layout, index), without downloading its body. Such a package has a record
//! here for as long as its body is not in the cache: where to get it, its size, and what
//! the bytes the candidate was built from hash to. The package id is the index's sha256 of
//! the whole stone, so the full download is checked against both: its sha256 against the
//! id, its head against this record.

use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, WithoutTls};
use mossfs_format::PackageId;

use crate::codec::{self, Reader};
use crate::{DbError, Query, Result, WriteTxn, lmdb};

/// What a package recorded from its head needs for its body to be fetched and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The stone's absolute URI.
    pub uri: String,
    /// The stone's size, from the index.
    pub size: u64,
    /// How many bytes the head is: the archive header, every payload before the content,
    /// and the content's payload header.
    pub len: u64,
    /// The sha256 of those bytes.
    pub digest: [u8; 32],
}

pub(crate) type Table = Database<'static, Bytes, Bytes>;

pub(crate) fn open(env: &Env<WithoutTls>) -> heed::Result<Table> {
    let wtxn = env.write_txn()?;
    Ok(env
        .create_databases_and_commit(wtxn, |opener, wtxn| -> heed::Result<_> {
            Ok(CommitOrAbort::<_, ()>::Commit(
                opener.create_database(wtxn, Some("heads"))?,
            ))
        })?
        .unwrap_commit())
}

/// The table of a database opened for reading only; `None` if no writer that knows heads
/// has opened it yet, which reads as no package recorded from its head.
pub(crate) fn open_existing(env: &Env<WithoutTls>) -> heed::Result<Option<Table>> {
    let rtxn = env.read_txn()?;
    Ok(env
        .open_databases_and_commit(rtxn, |opener, rtxn| -> heed::Result<_> {
            Ok(CommitOrAbort::<_, ()>::Commit(
                opener.open_database(rtxn, Some("heads"))?,
            ))
        })?
        .unwrap_commit())
}

fn encode(head: &Head) -> Vec<u8> {
    let mut out = vec![1];
    codec::put_bytes(&mut out, head.uri.as_bytes());
    out.extend_from_slice(&head.size.to_be_bytes());
    out.extend_from_slice(&head.len.to_be_bytes());
    out.extend_from_slice(&head.digest);
    out
}

fn decode(bytes: &[u8]) -> Option<Head> {
    let mut r = Reader(bytes);
    if r.u8()? != 1 {
        return None;
    }
    Some(Head {
        uri: String::from_utf8(r.bytes()?.to_vec()).ok()?,
        size: r.u64()?,
        len: r.u64()?,
        digest: r.take(32)?.try_into().ok()?,
    })
}

/// Reads of the heads table, for both kinds of transaction.
pub trait HeadQuery: Query {
    /// The head record of package `id`: `Some` while its body is not downloaded.
    fn head(&self, id: &PackageId) -> Result<Option<Head>> {
        let Some(table) = self.db().heads else {
            return Ok(None);
        };
        let Some(bytes) = table.get(self.txn(), &id.0).map_err(lmdb("read head"))? else {
            return Ok(None);
        };
        decode(bytes).map(Some).ok_or_else(|| DbError::Corrupt {
            what: format!("head of package {id}"),
        })
    }
}

impl<T: Query> HeadQuery for T {}

impl WriteTxn<'_> {
    /// Records that package `id` was recorded from its head, and how to get its body.
    pub fn put_head(&mut self, id: &PackageId, head: &Head) -> Result<()> {
        let table = self.db.heads.ok_or_else(|| DbError::Corrupt {
            what: "the heads table of a database opened for reading".into(),
        })?;
        table
            .put(&mut self.txn, &id.0, &encode(head))
            .map_err(lmdb("write head"))
    }

    /// Forgets the head record of package `id`: its body is in the cache, checked.
    pub fn remove_head(&mut self, id: &PackageId) -> Result<()> {
        if let Some(table) = self.db.heads {
            table
                .delete(&mut self.txn, &id.0)
                .map_err(lmdb("remove head"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Db;

    #[test]
    fn put_read_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let id = PackageId([7; 32]);
        let head = Head {
            uri: "http://127.0.0.1/pool/a.stone".into(),
            size: 1234,
            len: 300,
            digest: [9; 32],
        };
        let mut w = db.write().unwrap();
        w.put_head(&id, &head).unwrap();
        w.commit().unwrap();
        assert_eq!(db.read().unwrap().head(&id).unwrap(), Some(head));
        let mut w = db.write().unwrap();
        w.remove_head(&id).unwrap();
        w.commit().unwrap();
        assert_eq!(db.read().unwrap().head(&id).unwrap(), None);
    }
}
