//! Available packages: what the enabled repositories offer (DESIGN.md §5, §8).
//!
//! | name | key | value |
//! |---|---|---|
//! | `available` | name `\0` repository id | priority, repository id, meta records with URI, hash, size |
//! | `available_providers` | `kind(target)` | name `\0` repository id (sorted duplicates) |
//! | `repositories` | repository id | what the last refresh saw: version, expiry, index digest and size |
//!
//! They sit beside the installed packages in the same environment, so a lookup by name or
//! provider over every repository is one B-tree read, and a refresh replaces a
//! repository's whole offer in one transaction: readers see the old offer or the new one.

use heed::types::Bytes;
use heed::{CommitOrAbort, Database, DatabaseFlags, Env, WithoutTls};
use mossfs_format::Meta;

use crate::codec::{self, Reader};
use crate::{DbError, Query, Result, WriteTxn, lmdb};

/// The three tables.
#[derive(Clone)]
pub(crate) struct Tables {
    available: Database<'static, Bytes, Bytes>,
    providers: Database<'static, Bytes, Bytes>,
    repositories: Database<'static, Bytes, Bytes>,
}

impl Tables {
    pub(crate) fn open(env: &Env<WithoutTls>) -> heed::Result<Tables> {
        let wtxn = env.write_txn()?;
        type Dbs = (
            Database<'static, Bytes, Bytes>,
            Database<'static, Bytes, Bytes>,
            Database<'static, Bytes, Bytes>,
        );
        let (available, providers, repositories): Dbs = env
            .create_databases_and_commit(wtxn, |opener, wtxn| -> heed::Result<_> {
                let available = opener.create_database(wtxn, Some("available"))?;
                let providers = opener
                    .database_options()
                    .types::<Bytes, Bytes>()
                    .name("available_providers")
                    .flags(DatabaseFlags::DUP_SORT)
                    .create(wtxn)?;
                let repositories = opener.create_database(wtxn, Some("repositories"))?;
                Ok(CommitOrAbort::<_, ()>::Commit((
                    available,
                    providers,
                    repositories,
                )))
            })?
            .unwrap_commit();
        Ok(Tables {
            available,
            providers,
            repositories,
        })
    }

    /// The tables of a database opened for reading only; `None` if no writer of a build
    /// that knows repositories has opened it yet, which reads as nothing available.
    pub(crate) fn open_existing(env: &Env<WithoutTls>) -> heed::Result<Option<Tables>> {
        let rtxn = env.read_txn()?;
        type Dbs = (
            Option<Database<'static, Bytes, Bytes>>,
            Option<Database<'static, Bytes, Bytes>>,
            Option<Database<'static, Bytes, Bytes>>,
        );
        let opened: Dbs = env
            .open_databases_and_commit(rtxn, |opener, rtxn| -> heed::Result<_> {
                let providers = opener
                    .database_options()
                    .types::<Bytes, Bytes>()
                    .name("available_providers")
                    .flags(DatabaseFlags::DUP_SORT)
                    .open(rtxn)?;
                Ok(CommitOrAbort::<_, ()>::Commit((
                    opener.open_database(rtxn, Some("available"))?,
                    providers,
                    opener.open_database(rtxn, Some("repositories"))?,
                )))
            })?
            .unwrap_commit();
        Ok(match opened {
            (Some(available), Some(providers), Some(repositories)) => Some(Tables {
                available,
                providers,
                repositories,
            }),
            _ => None,
        })
    }
}

/// The tables for a write; every writer's open creates them.
fn tables_for_write(db: &crate::Db) -> Result<Tables> {
    db.available
        .clone()
        .ok_or_else(|| corrupt("the available tables of a database opened for reading"))
}

/// A package a repository offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Available {
    /// The repository's id.
    pub repo: String,
    /// The repository's priority when it was refreshed.
    pub priority: u64,
    /// The package's meta, with its URI, sha256 and size.
    pub meta: Meta,
}

/// What a refresh of one repository saw, for the next refresh's checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSeen {
    /// The highest checksum-file version accepted.
    pub version: u64,
    /// Its expiry, unix seconds.
    pub expires: u64,
    /// The index's digest.
    pub digest: Vec<u8>,
    /// The index's size.
    pub size: u64,
    /// When it was refreshed, unix seconds.
    pub refreshed: u64,
    /// Whether its checksum file was signed by the configured key.
    pub signed: bool,
}

fn key(name: &str, repo: &str) -> Vec<u8> {
    let mut k = name.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(repo.as_bytes());
    k
}

fn encode(item: &Available) -> Vec<u8> {
    let mut out = vec![1];
    out.extend_from_slice(&item.priority.to_be_bytes());
    codec::put_bytes(&mut out, item.repo.as_bytes());
    out.extend_from_slice(&mossfs_format::meta::encode_all(&item.meta.to_records()));
    out
}

fn decode(bytes: &[u8]) -> Option<Available> {
    let mut r = Reader(bytes);
    if r.u8()? != 1 {
        return None;
    }
    let priority = r.u64()?;
    let repo = String::from_utf8(r.bytes()?.to_vec()).ok()?;
    let records = mossfs_format::meta::decode_all(r.0).ok()?;
    Some(Available {
        repo,
        priority,
        meta: Meta::from_records(&records).ok()?,
    })
}

fn corrupt(what: impl Into<String>) -> DbError {
    DbError::Corrupt { what: what.into() }
}

/// Highest priority first, then by repository id.
fn order(list: &mut [Available]) {
    list.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then_with(|| a.repo.cmp(&b.repo))
            .then_with(|| a.meta.name.cmp(&b.meta.name))
    });
}

/// Reads of the available tables, for both kinds of transaction.
pub trait AvailableQuery: Query {
    /// Every repository's offer of package `name`, best first.
    fn available(&self, name: &str) -> Result<Vec<Available>> {
        let Some(tables) = &self.db().available else {
            return Ok(Vec::new());
        };
        let mut prefix = name.as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        for item in tables
            .available
            .prefix_iter(self.txn(), &prefix)
            .map_err(lmdb("read available"))?
        {
            let (_, value) = item.map_err(lmdb("read available"))?;
            out.push(decode(value).ok_or_else(|| corrupt(format!("available {name}")))?);
        }
        order(&mut out);
        Ok(out)
    }

    /// Every available package, by name, best repository first within a name.
    fn all_available(&self) -> Result<Vec<Available>> {
        let Some(tables) = &self.db().available else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for item in tables
            .available
            .iter(self.txn())
            .map_err(lmdb("read available"))?
        {
            let (key, value) = item.map_err(lmdb("read available"))?;
            out.push(
                decode(value).ok_or_else(|| {
                    corrupt(format!("available {}", String::from_utf8_lossy(key)))
                })?,
            );
        }
        out.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
        out.chunk_by_mut(|a, b| a.meta.name == b.meta.name)
            .for_each(order);
        Ok(out)
    }

    /// The available packages that provide `relation` (`kind(target)`), best first.
    fn available_providers(&self, relation: &str) -> Result<Vec<Available>> {
        let Some(tables) = &self.db().available else {
            return Ok(Vec::new());
        };
        let Some(iter) = tables
            .providers
            .get_duplicates(self.txn(), relation.as_bytes())
            .map_err(lmdb("read available providers"))?
        else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for item in iter {
            let (_, value) = item.map_err(lmdb("read available providers"))?;
            if let Some(bytes) = tables
                .available
                .get(self.txn(), value)
                .map_err(lmdb("read available"))?
            {
                out.push(decode(bytes).ok_or_else(|| corrupt(format!("provider {relation}")))?);
            }
        }
        order(&mut out);
        Ok(out)
    }

    /// What the last refresh of `repo` saw.
    fn repo_seen(&self, repo: &str) -> Result<Option<RepoSeen>> {
        let Some(tables) = &self.db().available else {
            return Ok(None);
        };
        let Some(bytes) = tables
            .repositories
            .get(self.txn(), repo.as_bytes())
            .map_err(lmdb("read repositories"))?
        else {
            return Ok(None);
        };
        let mut r = Reader(bytes);
        let seen = (|| {
            if r.u8()? != 1 {
                return None;
            }
            Some(RepoSeen {
                version: r.u64()?,
                expires: r.u64()?,
                size: r.u64()?,
                refreshed: r.u64()?,
                signed: r.u8()? != 0,
                digest: r.bytes()?.to_vec(),
            })
        })();
        seen.map(Some)
            .ok_or_else(|| corrupt(format!("repository {repo}")))
    }
}

impl<T: Query> AvailableQuery for T {}

impl WriteTxn<'_> {
    /// Replaces everything `repo` offers with `packages` (each meta carrying its URI, hash
    /// and size). An empty list forgets the repository's offer.
    pub fn replace_available(
        &mut self,
        repo: &str,
        priority: u64,
        packages: &[Meta],
    ) -> Result<()> {
        let tables = tables_for_write(self.db)?;
        let mut suffix = vec![0];
        suffix.extend_from_slice(repo.as_bytes());
        let mut old = Vec::new();
        for item in tables
            .available
            .iter(&self.txn)
            .map_err(lmdb("read available"))?
        {
            let (key, value) = item.map_err(lmdb("read available"))?;
            if key.ends_with(&suffix)
                && key.len() > suffix.len()
                && !key[..key.len() - suffix.len()].contains(&0)
            {
                old.push((key.to_vec(), decode(value)));
            }
        }
        for (key, item) in old {
            if let Some(item) = item {
                for provider in item.meta.all_provides() {
                    tables
                        .providers
                        .delete_one_duplicate(&mut self.txn, provider.to_string().as_bytes(), &key)
                        .map_err(lmdb("write available providers"))?;
                }
            }
            tables
                .available
                .delete(&mut self.txn, &key)
                .map_err(lmdb("write available"))?;
        }
        for meta in packages {
            let k = key(&meta.name, repo);
            let item = Available {
                repo: repo.to_owned(),
                priority,
                meta: meta.clone(),
            };
            tables
                .available
                .put(&mut self.txn, &k, &encode(&item))
                .map_err(lmdb("write available"))?;
            for provider in meta.all_provides() {
                tables
                    .providers
                    .put(&mut self.txn, provider.to_string().as_bytes(), &k)
                    .map_err(lmdb("write available providers"))?;
            }
        }
        Ok(())
    }

    /// Records what a refresh of `repo` saw; `None` forgets it.
    pub fn set_repo_seen(&mut self, repo: &str, seen: Option<&RepoSeen>) -> Result<()> {
        let table = tables_for_write(self.db)?.repositories;
        match seen {
            None => {
                table
                    .delete(&mut self.txn, repo.as_bytes())
                    .map_err(lmdb("write repositories"))?;
            }
            Some(s) => {
                let mut out = vec![1];
                for n in [s.version, s.expires, s.size, s.refreshed] {
                    out.extend_from_slice(&n.to_be_bytes());
                }
                out.push(u8::from(s.signed));
                codec::put_bytes(&mut out, &s.digest);
                table
                    .put(&mut self.txn, repo.as_bytes(), &out)
                    .map_err(lmdb("write repositories"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Db;

    fn meta(name: &str, provides: &str) -> Meta {
        Meta {
            name: name.into(),
            version: "1".into(),
            provides: vec![mossfs_format::Relation::parse(provides).unwrap()],
            uri: Some(format!("{name}.stone")),
            hash: Some("00".into()),
            size: Some(3),
            ..Meta::default()
        }
    }

    #[test]
    fn replace_lookup_and_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let mut w = db.write().unwrap();
        w.replace_available(
            "low",
            1,
            &[
                meta("nano", "binary(nano)"),
                meta("zlib", "soname(libz.so.1)"),
            ],
        )
        .unwrap();
        w.replace_available("high", 9, &[meta("nano", "binary(nano)")])
            .unwrap();
        w.commit().unwrap();
        let r = db.read().unwrap();
        let repos: Vec<String> = r
            .available("nano")
            .unwrap()
            .into_iter()
            .map(|a| a.repo)
            .collect();
        assert_eq!(repos, ["high", "low"]);
        assert_eq!(r.available_providers("binary(nano)").unwrap().len(), 2);
        assert_eq!(r.available_providers("name(zlib)").unwrap()[0].repo, "low");
        assert!(r.available("nan").unwrap().is_empty());
        drop(r);
        let mut w = db.write().unwrap();
        w.replace_available("low", 1, &[]).unwrap();
        w.commit().unwrap();
        let r = db.read().unwrap();
        assert_eq!(r.all_available().unwrap().len(), 1);
        assert!(
            r.available_providers("soname(libz.so.1)")
                .unwrap()
                .is_empty()
        );
    }
}
