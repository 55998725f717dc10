//! Assets: where they live, how to find them, and the variants that let one asset serve
//! layout entries with different permissions or owners.
//!
//! A canonical asset lives at `assets/<h[0..2]>/<h>`, `h` being the 32 lowercase hex digits
//! of its xxh3-128. Its variants sit beside it as `<h>-<perm>-<uid>-<gid>` (perm as 4 octal
//! digits): full copies, because a hardlink cannot have its own mode.
//!
//! One level of 256 shard folders, as in git and OSTree: a whole system's few hundred
//! thousand assets make about a thousand per folder, which ext4's hashed directories look
//! up as fast as ten. A second level (65,536 folders) would cost a new folder, an inode
//! and a 4 KiB block, for nearly every asset of the first packages unpacked into a fresh
//! store, which made ingesting on ext4 several times slower.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use mossfs_format::AssetHash;
use rustix::fs::{AtFlags, Mode, OFlags, Stat};
use rustix::io::Errno;

use crate::temp::TempFile;
use crate::{Result, Store, StoreError};

/// The permission bits and owner an asset file carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AssetMeta {
    /// `mode & 0o7777`.
    pub perm: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

impl AssetMeta {
    /// What an asset gets when no layout entry says otherwise.
    pub(crate) const DEFAULT: AssetMeta = AssetMeta {
        perm: 0o644,
        uid: 0,
        gid: 0,
    };

    pub(crate) fn of(stat: &Stat) -> AssetMeta {
        AssetMeta {
            perm: stat.st_mode & 0o7777,
            uid: stat.st_uid,
            gid: stat.st_gid,
        }
    }
}

/// The number of the shard folder of `hash`: its first byte.
pub(crate) fn shard_index(hash: AssetHash) -> usize {
    (hash.0 >> 120) as usize
}

/// `ab`: the shard folder of an asset, relative to `assets/`.
pub(crate) fn shard(hash: AssetHash) -> String {
    format!("{:02x}", shard_index(hash))
}

/// `ab/abcd…`: the canonical asset, relative to `assets/`.
pub(crate) fn rel_path(hash: AssetHash) -> String {
    format!("{}/{hash}", shard(hash))
}

fn variant_rel_path(hash: AssetHash, meta: AssetMeta) -> String {
    let AssetMeta { perm, uid, gid } = meta;
    format!("{}/{hash}-{perm:04o}-{uid}-{gid}", shard(hash))
}

/// One file found in the store by [`Store::walk_assets`].
pub(crate) struct AssetFile {
    /// The asset it holds (by name).
    pub hash: AssetHash,
    /// Whether it is a variant rather than the canonical file.
    pub variant: bool,
    /// Its full path.
    pub path: PathBuf,
}

/// Parses a store file name: `<h>` or `<h>-…`. Anything else is not the store's.
pub(crate) fn parse_name(name: &[u8]) -> Option<(AssetHash, bool)> {
    let (hex, variant) = match name.get(32) {
        None => (name, false),
        Some(b'-') => (&name[..32], true),
        Some(_) => return None,
    };
    let hash = std::str::from_utf8(hex).ok()?.parse().ok()?;
    // Only our own lowercase spelling; an uppercase twin would be a second file.
    (hex.len() == 32 && hex.iter().all(|b| !b.is_ascii_uppercase())).then_some((hash, variant))
}

fn is_shard_name(name: &OsString) -> bool {
    let name = name.as_bytes();
    name.len() == 2 && name.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Store {
    /// Where the canonical asset `hash` lives (or would live).
    pub fn asset_path(&self, hash: AssetHash) -> PathBuf {
        self.assets_dir.join(rel_path(hash))
    }

    /// Whether the canonical asset `hash` is in the store.
    pub fn has_asset(&self, hash: AssetHash) -> bool {
        self.stat_asset(&rel_path(hash)).is_ok()
    }

    /// Opens the canonical asset `hash` for reading, e.g. to serve it through FUSE.
    pub fn open_asset(&self, hash: AssetHash) -> Result<File> {
        let rel = rel_path(hash);
        rustix::fs::openat(
            &self.assets,
            rel.as_str(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map(File::from)
        .map_err(|e| self.asset_error(hash, &rel, e))
    }

    /// Whether a tree may hardlink a store file for a file of permission bits `perm`: not
    /// when its group or others may write it. Through such a link any user could rewrite
    /// the store's one copy of those bytes, and with it every tree and every later install
    /// that shares them; those files get a copy of their own.
    pub fn may_link(perm: u32) -> bool {
        perm & 0o022 == 0
    }

    /// A store file holding `hash` with exactly this permission bits (`perm & 0o7777`) and
    /// owner, ready to be hardlinked into a tree (for a `perm` that [`Store::may_link`]): the canonical asset when its metadata
    /// matches, otherwise a variant, made on first use. When not running as root, owners
    /// cannot be set, so `uid` and `gid` are ignored in the comparison.
    pub fn linkable(&self, hash: AssetHash, perm: u32, uid: u32, gid: u32) -> Result<PathBuf> {
        let want = AssetMeta {
            perm: perm & 0o7777,
            uid,
            gid,
        };
        let rel = rel_path(hash);
        let canonical = self
            .stat_asset(&rel)
            .map_err(|e| self.asset_error(hash, &rel, e))?;
        if self.matches(&canonical, want) {
            return Ok(self.assets_dir.join(rel));
        }
        let variant = variant_rel_path(hash, want);
        let replace = match self.stat_asset(&variant) {
            Ok(stat) if self.matches(&stat, want) => return Ok(self.assets_dir.join(variant)),
            Ok(_) => true,
            Err(Errno::NOENT) => false,
            Err(e) => return Err(self.asset_error(hash, &variant, e)),
        };
        self.make_variant(hash, &rel, &variant, want, replace)?;
        Ok(self.assets_dir.join(variant))
    }

    /// Copies the canonical asset into a variant with other metadata, through a temp file.
    fn make_variant(
        &self,
        hash: AssetHash,
        rel: &str,
        variant: &str,
        meta: AssetMeta,
        replace: bool,
    ) -> Result<()> {
        let owner = self.owner(hash, meta)?;
        let mut source = self.open_asset(hash)?;
        let read_error = |source: io::Error| StoreError::ReadAsset {
            hash,
            path: self.assets_dir.join(rel),
            source,
        };
        let expected = source.metadata().map_err(read_error)?.len();
        let mut temp = TempFile::create(&self.assets_tmp, &self.assets_tmp_dir)?;
        let write_error =
            |path: PathBuf| move |source: io::Error| StoreError::WriteAsset { hash, path, source };
        // std uses copy_file_range here, so the bytes need not pass through us.
        let copied = io::copy(&mut source, temp.file()).map_err(write_error(temp.path()))?;
        if copied != expected {
            return Err(read_error(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("copied {copied} of {expected} bytes"),
            )));
        }
        temp.set_metadata(meta.perm, owner)
            .map_err(write_error(temp.path()))?;
        // Durable before it has a name: a commit links this inode into its tree, and only
        // syncs that tree's directories (DESIGN.md §6.2).
        self.sync_data(temp.file_ref())
            .map_err(write_error(temp.path()))?;
        temp.place(&self.assets, variant, replace)
            .map_err(write_error(self.assets_dir.join(variant)))?;
        Ok(())
    }

    /// The owner to give a new asset file: `None` when we cannot chown (not root).
    pub(crate) fn owner(&self, hash: AssetHash, meta: AssetMeta) -> Result<Option<(u32, u32)>> {
        if !self.is_root {
            return Ok(None);
        }
        if meta.uid == u32::MAX || meta.gid == u32::MAX {
            return Err(StoreError::InvalidOwner {
                hash,
                uid: meta.uid,
                gid: meta.gid,
            });
        }
        Ok(Some((meta.uid, meta.gid)))
    }

    fn matches(&self, stat: &Stat, want: AssetMeta) -> bool {
        let have = AssetMeta::of(stat);
        have.perm == want.perm && (!self.is_root || (have.uid, have.gid) == (want.uid, want.gid))
    }

    /// Stats a store file, refusing anything but a regular file.
    pub(crate) fn stat_asset(&self, rel: &str) -> rustix::io::Result<Stat> {
        let stat = rustix::fs::statat(&self.assets, rel, AtFlags::SYMLINK_NOFOLLOW)?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(Errno::NOENT);
        }
        Ok(stat)
    }

    fn asset_error(&self, hash: AssetHash, rel: &str, e: Errno) -> StoreError {
        let path = self.assets_dir.join(rel);
        match e {
            Errno::NOENT | Errno::LOOP => StoreError::AssetMissing { hash, path },
            e => StoreError::ReadAsset {
                hash,
                path,
                source: e.into(),
            },
        }
    }

    /// The variants of `hash` present in the store.
    pub(crate) fn variants(&self, hash: AssetHash) -> Result<Vec<PathBuf>> {
        let dir = self.assets_dir.join(shard(hash));
        let prefix = format!("{hash}-");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StoreError::OpenDir { path: dir, source }),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| StoreError::OpenDir {
                path: dir.clone(),
                source,
            })?;
            if entry.file_name().as_bytes().starts_with(prefix.as_bytes()) {
                out.push(entry.path());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every canonical asset in the store, sorted.
    pub fn list_assets(&self) -> Result<Vec<AssetHash>> {
        let mut out = Vec::new();
        self.walk_assets(|file| {
            if !file.variant {
                out.push(file.hash);
            }
            Ok(())
        })?;
        out.sort();
        Ok(out)
    }

    /// Calls `f` for every asset file (canonical or variant) in the store. Files and
    /// folders with other names, `.tmp` among them, are not the store's and are skipped.
    pub(crate) fn walk_assets(&self, mut f: impl FnMut(AssetFile) -> Result<()>) -> Result<()> {
        for shard in sorted_dir(&self.assets_dir)? {
            for path in sorted_dir_files(&shard)? {
                let Some(name) = path.file_name() else {
                    continue;
                };
                if let Some((hash, variant)) = parse_name(name.as_bytes()) {
                    f(AssetFile {
                        hash,
                        variant,
                        path,
                    })?;
                }
            }
        }
        Ok(())
    }
}

/// The shard folders (two lowercase hex digits) in `dir`, sorted.
fn sorted_dir(dir: &std::path::Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in read_dir(dir)? {
        if is_shard_name(&entry.file_name()) && entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

pub(crate) fn sorted_dir_files(dir: &std::path::Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<_> = read_dir(dir)?
        .into_iter()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .collect();
    out.sort();
    Ok(out)
}

fn read_dir(dir: &std::path::Path) -> Result<Vec<fs::DirEntry>> {
    let error = |source| StoreError::OpenDir {
        path: dir.to_owned(),
        source,
    };
    match fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.map_err(error)).collect(),
        // A shard removed by a concurrent gc is simply empty.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let hash = AssetHash::EMPTY;
        assert_eq!(rel_path(hash), "99/99aa06d3014798d86001c324468d497f");
        assert_eq!(shard(AssetHash(7)), "00");
        let meta = AssetMeta {
            perm: 0o755,
            uid: 1,
            gid: 2,
        };
        let variant = variant_rel_path(hash, meta);
        assert_eq!(variant, "99/99aa06d3014798d86001c324468d497f-0755-1-2");
        let name = variant.rsplit('/').next().unwrap();
        assert_eq!(parse_name(name.as_bytes()), Some((hash, true)));
        assert_eq!(parse_name(hash.to_string().as_bytes()), Some((hash, false)));
        assert_eq!(
            parse_name(b"99AA06D3014798D86001C324468D497F"),
            None,
            "uppercase is not our spelling"
        );
        assert_eq!(parse_name(b"99aa06d3014798d86001c324468d497"), None);
        assert_eq!(parse_name(b"99aa06d3014798d86001c324468d497fx"), None);
    }
}
