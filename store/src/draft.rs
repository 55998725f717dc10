//! Drafts: new asset files, written and given their metadata before they get a name
//! (DESIGN.md §6.1).
//!
//! Where the file system supports it, a draft is an *anonymous* file: `O_TMPFILE` in
//! `assets/.tmp`, which has no name at all until [`Draft::publish`] links it into place
//! with `linkat(fd, "", …, AT_EMPTY_PATH)`. That link fails with `EEXIST` instead of
//! replacing, so publication is atomic and never changes the inode of an asset already
//! there; and a crash leaves nothing behind to recover, since the kernel frees a file
//! that never got a name. Elsewhere (`O_TMPFILE` unsupported, or `linkat` on a bare fd
//! not allowed to this user) a draft is a named [`TempFile`], renamed into place with
//! `RENAME_NOREPLACE` and recovered after a crash as before. [`Store`] probes once which of
//! the two works.
//!
//! Drafts are created with their final permission bits, and the owner is set only when
//! the new file does not already have it, so the common asset (root-owned, `0644` or
//! `0755`, under umask `022`) costs no `fchown` or `fchmod`: only an `fstat` to check. An
//! asset meant for another owner starts with its owner's bits only, so that nobody but
//! root may read it before it has that owner.
//!
//! Only ingest uses drafts. Replacing an asset (repair) and making variants still go
//! through named temp files, since a link cannot replace a file.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};

use mossfs_format::AssetHash;
use rustix::fs::{AtFlags, Gid, Mode, OFlags, Uid};
use rustix::io::Errno;

use crate::asset::rel_path;
use crate::temp::{Placed, TempFile, create_parents};
use crate::{Result, Store, StoreError};

/// Which kind of draft a store makes; probed on first use.
pub(crate) struct DraftKind(AtomicU8);

const UNKNOWN: u8 = 0;
const ANONYMOUS: u8 = 1;
const NAMED: u8 = 2;

impl DraftKind {
    pub(crate) fn new() -> DraftKind {
        DraftKind(AtomicU8::new(UNKNOWN))
    }

    /// From now on, make named temp files only.
    pub(crate) fn use_named(&self) {
        self.0.store(NAMED, Ordering::Relaxed);
    }

    fn get(&self) -> u8 {
        self.0.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for DraftKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.get() {
            ANONYMOUS => "anonymous",
            NAMED => "named",
            _ => "unknown",
        })
    }
}

/// A new asset file that has no final name yet.
pub(crate) enum Draft<'s> {
    /// An `O_TMPFILE` file: no name at all.
    Anonymous(File),
    /// A locked temp file under `assets/.tmp`.
    Named(TempFile<'s>),
}

/// `O_TMPFILE` is unsupported by this kernel or file system.
fn unsupported(e: Errno) -> bool {
    matches!(
        e,
        Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOSYS
    )
}

impl Store {
    /// A new, empty draft for a file that will have the permission bits `perm` and, when
    /// given, the owner `owner`. It starts with as many of those bits as are safe before
    /// it has its owner (less the umask); [`Draft::set_metadata`] does the rest.
    pub(crate) fn new_draft(&self, perm: u32, owner: Option<(u32, u32)>) -> Result<Draft<'_>> {
        let perm = match owner {
            Some(owner) if owner != (0, 0) => perm & 0o700,
            _ => perm & 0o777,
        };
        if self.draft_kind.get() == UNKNOWN {
            self.probe_drafts();
        }
        if self.draft_kind.get() == ANONYMOUS {
            match self.open_anonymous(perm) {
                Ok(fd) => return Ok(Draft::Anonymous(File::from(fd))),
                Err(e) if unsupported(e) => self.draft_kind.use_named(),
                Err(e) => {
                    return Err(StoreError::TempFile {
                        path: self.assets_tmp_dir.clone(),
                        source: e.into(),
                    });
                }
            }
        }
        TempFile::create_with_mode(&self.assets_tmp, &self.assets_tmp_dir, perm).map(Draft::Named)
    }

    fn open_anonymous(&self, perm: u32) -> rustix::io::Result<std::os::fd::OwnedFd> {
        rustix::fs::openat(
            &self.assets_tmp,
            ".",
            OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(perm & 0o777),
        )
    }

    /// Finds out whether anonymous drafts work here: `O_TMPFILE` must be supported, and
    /// `linkat` of a bare fd allowed (it needs `CAP_DAC_READ_SEARCH` before Linux 6.10).
    /// The probe's link, under a temp name, is removed at once; if this process dies in
    /// between, recovery removes it as an unlocked temp file. A failure that says nothing
    /// about support (no fds or space left) decides nothing: this draft is named, and the
    /// next one probes again.
    fn probe_drafts(&self) {
        let kind = match self.open_anonymous(0o600) {
            Err(e) if unsupported(e) => NAMED,
            Err(_) => return,
            Ok(fd) => {
                let name = crate::temp::unique_name();
                let linked = rustix::fs::linkat(
                    &fd,
                    "",
                    &self.assets_tmp,
                    name.as_str(),
                    AtFlags::EMPTY_PATH,
                );
                let _ = rustix::fs::unlinkat(&self.assets_tmp, name.as_str(), AtFlags::empty());
                match linked {
                    Ok(()) => ANONYMOUS,
                    // Without the capability, the kernel acts as if the fd had no file.
                    Err(Errno::NOENT | Errno::PERM | Errno::ACCESS) => NAMED,
                    Err(e) if unsupported(e) => NAMED,
                    Err(_) => return,
                }
            }
        };
        // A concurrent probe, or a fallback decided meanwhile, wins: NAMED is sticky.
        let _ =
            self.draft_kind
                .0
                .compare_exchange(UNKNOWN, kind, Ordering::Relaxed, Ordering::Relaxed);
    }
}

impl Draft<'_> {
    pub(crate) fn file(&self) -> &File {
        match self {
            Draft::Anonymous(file) => file,
            Draft::Named(temp) => temp.file_ref(),
        }
    }

    /// Where the draft lives, for error messages: the temp file, or for an anonymous
    /// draft the folder it was made in.
    pub(crate) fn path(&self, store: &Store) -> PathBuf {
        match self {
            Draft::Anonymous(_) => store.assets_tmp_dir.clone(),
            Draft::Named(temp) => temp.path(),
        }
    }

    /// Appends `bytes`.
    pub(crate) fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        let mut file = self.file();
        file.write_all(bytes)
    }

    /// Gives the file the owner (when `owner` is given) and the permission bits of
    /// `meta`, with as few syscalls as the file allows. Owner first: `chown` clears the
    /// setuid and setgid bits.
    pub(crate) fn set_metadata(&self, perm: u32, owner: Option<(u32, u32)>) -> io::Result<()> {
        let file = self.file();
        let stat = rustix::fs::fstat(file)?;
        if let Some((uid, gid)) = owner
            && (stat.st_uid, stat.st_gid) != (uid, gid)
        {
            rustix::fs::fchown(file, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
        }
        // Created without setuid, setgid or sticky bits, so a chown changed no bit here.
        if stat.st_mode & 0o7777 != perm & 0o7777 {
            rustix::fs::fchmod(file, Mode::from_raw_mode(perm & 0o7777))?;
        }
        Ok(())
    }

    /// Gives the draft the canonical name of `hash`, unless a file already has it: then
    /// the draft is discarded and the file there stays, with its inode.
    pub(crate) fn publish(self, store: &Store, hash: AssetHash) -> io::Result<Placed> {
        let rel = rel_path(hash);
        store.shards.ensure(&store.assets, hash)?;
        match self {
            Draft::Named(temp) => temp.place(&store.assets, &rel, false),
            Draft::Anonymous(file) => {
                // A concurrent gc may remove the shard folder; make it again a few times.
                let mut attempts = 0;
                loop {
                    match rustix::fs::linkat(
                        &file,
                        "",
                        &store.assets,
                        rel.as_str(),
                        AtFlags::EMPTY_PATH,
                    ) {
                        Ok(()) => return Ok(Placed::New),
                        Err(Errno::EXIST) => return Ok(Placed::AlreadyThere),
                        Err(Errno::NOENT) if attempts < 8 => {
                            store.shards.forget(hash);
                            create_parents(&store.assets, &rel)?;
                            attempts += 1;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::Cursor;
    use std::os::unix::fs::MetadataExt;

    use mossfs_format::{
        EntryKind, FileType, LayoutEntry, MetaRecord, MetaTag, RelPath, Writer, WriterOptions,
        layout_index,
    };

    use super::*;
    use crate::stats::IngestStats;

    /// A fresh store; with `named`, one that makes named temp files only, as it does where
    /// `O_TMPFILE` is missing.
    fn store(named: bool) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join(".moss")).unwrap();
        if named {
            store.draft_kind.use_named();
        }
        (dir, store)
    }

    fn tmp_names(store: &Store) -> Vec<std::ffi::OsString> {
        std::fs::read_dir(&store.assets_tmp_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect()
    }

    fn draft_with<'s>(store: &'s Store, bytes: &[u8], perm: u32) -> Draft<'s> {
        let draft = store.new_draft(perm, None).unwrap();
        draft.write_all(bytes).unwrap();
        draft.set_metadata(perm, None).unwrap();
        draft
    }

    #[test]
    fn the_probe_picks_anonymous_drafts_where_o_tmpfile_works() {
        let (_dir, store) = store(false);
        let supported = store.open_anonymous(0o600).is_ok();
        let draft = store.new_draft(0o644, None).unwrap();
        assert_eq!(matches!(draft, Draft::Anonymous(_)), supported);
        let expected = if supported { "anonymous" } else { "named" };
        assert_eq!(format!("{:?}", store.draft_kind), expected);
        // An anonymous draft has no name to leave behind, and the probe left none either.
        if supported {
            assert!(tmp_names(&store).is_empty());
        }
    }

    #[test]
    fn publishing_never_replaces_and_mends_a_removed_shard() {
        for named in [false, true] {
            let (_dir, store) = store(named);
            let hash = AssetHash::of(b"first");
            let first = draft_with(&store, b"first", 0o644);
            assert_eq!(first.publish(&store, hash).unwrap(), Placed::New);
            let path = store.asset_path(hash);
            let inode = std::fs::metadata(&path).unwrap().ino();

            // Another writer's copy loses, and vanishes.
            let second = draft_with(&store, b"first", 0o755);
            assert_eq!(second.publish(&store, hash).unwrap(), Placed::AlreadyThere);
            let meta = std::fs::metadata(&path).unwrap();
            assert_eq!((meta.ino(), meta.mode() & 0o7777), (inode, 0o644));
            assert!(tmp_names(&store).is_empty(), "named: {named}");

            // A gc removed the shard folder behind the store's back: it is made again.
            std::fs::remove_file(&path).unwrap();
            std::fs::remove_dir(path.parent().unwrap()).unwrap();
            let third = draft_with(&store, b"first", 0o644);
            assert_eq!(third.publish(&store, hash).unwrap(), Placed::New);
            assert_eq!(std::fs::read(&path).unwrap(), b"first");
        }
    }

    #[test]
    fn an_unpublished_draft_leaves_nothing() {
        for named in [false, true] {
            let (_dir, store) = store(named);
            let draft = draft_with(&store, b"half an asset", 0o644);
            assert_eq!(matches!(draft, Draft::Named(_)), named);
            drop(draft);
            assert!(tmp_names(&store).is_empty(), "named: {named}");
            assert!(store.list_assets().unwrap().is_empty());
        }
    }

    #[test]
    fn drafts_get_setuid_and_owner_in_the_right_order() {
        for named in [false, true] {
            let (_dir, store) = store(named);
            let owner = store.is_root.then_some((1000, 100));
            let draft = store.new_draft(0o4750, owner).unwrap();
            if owner.is_some() {
                let stat = rustix::fs::fstat(draft.file()).unwrap();
                assert_eq!(stat.st_mode & 0o077, 0, "private until it has its owner");
            }
            draft.set_metadata(0o4750, owner).unwrap();
            let stat = rustix::fs::fstat(draft.file()).unwrap();
            assert_eq!(stat.st_mode & 0o7777, 0o4750, "setuid survives the chown");
            if let Some(owner) = owner {
                assert_eq!((stat.st_uid, stat.st_gid), owner);
            }
        }
    }

    /// The whole ingest, both drafts: many small assets in batches, a large one in parts.
    #[test]
    fn named_and_anonymous_drafts_ingest_alike() {
        let mut files: Vec<(String, Vec<u8>, u32)> = (0..40u32)
            .map(|i| {
                (
                    format!("share/{i}"),
                    i.to_be_bytes().repeat(i as usize),
                    0o644,
                )
            })
            .collect();
        let large: Vec<u8> = (0..(3 << 20) + 7)
            .map(|i: u32| ((i * 31) >> 3) as u8)
            .collect();
        files.push(("bin/large".into(), large, 0o4755));
        let layout: Vec<LayoutEntry> = files
            .iter()
            .map(|(path, bytes, perm)| LayoutEntry {
                uid: 0,
                gid: 0,
                mode: 0o100000 | perm,
                tag: 0,
                kind: EntryKind::Regular(AssetHash::of(bytes)),
                path: RelPath::new(path.as_str()).unwrap(),
            })
            .collect();
        let source: HashMap<AssetHash, Vec<u8>> = files
            .iter()
            .map(|(_, bytes, _)| (AssetHash::of(bytes), bytes.clone()))
            .collect();
        let index = layout_index(source.iter().map(|(h, b)| (*h, b.len() as u64)));
        let options = WriterOptions {
            level: 1,
            threads: 0,
        };
        let mut writer = Writer::new(Cursor::new(Vec::new()), FileType::Binary, options).unwrap();
        writer
            .add_meta(&[MetaRecord::string(MetaTag::Name, "both")])
            .unwrap();
        writer.add_layout(&layout).unwrap();
        writer.add_index(&index).unwrap();
        writer.add_content(&index, &source).unwrap();
        let stone = writer.finish().unwrap().into_inner();

        for named in [false, true] {
            let (dir, store) = store(named);
            let path = dir.path().join("both.stone");
            std::fs::write(&path, &stone).unwrap();
            let id = store.cache_stone(&path).unwrap().id;
            let stats = store.ingest(&id).unwrap();
            let bytes: u64 = source.values().map(|b| b.len() as u64).sum();
            assert_eq!(
                stats,
                IngestStats {
                    written: source.len() as u64,
                    present: 0,
                    bytes_written: bytes,
                }
            );
            for (_, bytes, perm) in &files {
                let asset = store.asset_path(AssetHash::of(bytes));
                assert_eq!(&std::fs::read(&asset).unwrap(), bytes);
                let mode = std::fs::metadata(&asset).unwrap().mode();
                assert_eq!(mode & 0o7777, *perm, "named: {named}");
            }
            assert!(tmp_names(&store).is_empty(), "named: {named}");
        }
    }
}
