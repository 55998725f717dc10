//! The FUSE operations: each request answered from the inode table, the snapshot's
//! directory objects or the synthetic view; reads are in [`super::read`].
//!
//! A bad request gets its errno early through `let ... else`. `readdir` offsets are the
//! entry's index in its listing plus 3 (after `.` and `..`), so an offset the kernel hands
//! back always resumes at the same entry: listings never change while mounted.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use fuser::{
    AccessFlags, CopyFileRangeFlags, Errno, FileAttr, FileHandle, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use mossfs_db::{DbError, NodeKind, Query};

use super::inode::{Inode, Kind};
use super::read::ReadMode;
use super::view::OWNER_XATTR;
use super::{Inner, MossFs, ServeError, TTL, bump};

const GENERATION: Generation = Generation(0);

impl Inner {
    fn attr(&self, ino: u64, inode: &Inode) -> FileAttr {
        inode.attr(ino, self.time)
    }

    /// A lookup that found nothing, cached by the kernel for [`TTL`] (node id 0).
    fn negative(&self) -> FileAttr {
        Inode::synthetic(0, 0, 0).attr(0, SystemTime::UNIX_EPOCH)
    }

    fn tree_error(&self, ino: u64, source: DbError) -> Errno {
        self.log(ServeError::Tree {
            path: self.path_of(ino),
            source,
        });
        Errno::EIO
    }

    fn lookup(&self, parent: u64, name: &[u8]) -> Result<Option<(u64, Inode)>, Errno> {
        let dir = self.inodes.get(parent).ok_or(Errno::ENOENT)?;
        match dir.kind {
            Kind::Synthetic { dir } => {
                let synthetic = self.synthetic.dir(dir).ok_or(Errno::EIO)?;
                let Some((_, entry)) = synthetic.find(name) else {
                    return Ok(None);
                };
                Ok(self.inodes.get(entry.ino).map(|inode| (entry.ino, inode)))
            }
            Kind::Directory { .. } => {
                let tree = dir.kind.tree().expect("a directory has a tree");
                let found = self
                    .snapshots
                    .with(|txn| txn.tree(tree).map(|view| view.find(name)))
                    .map_err(|source| self.tree_error(parent, source))?;
                Ok(found.map(|(slot, entry)| self.inodes.child(parent, slot, &entry.node)))
            }
            _ => Err(Errno::ENOTDIR),
        }
    }

    /// Lists directory `ino` from `offset`, calling `add(ino, next offset, name, inode)`
    /// until it answers that the reply is full.
    fn list(
        &self,
        ino: u64,
        offset: u64,
        mut add: impl FnMut(u64, u64, &[u8], &Inode) -> bool,
    ) -> Result<(), Errno> {
        bump(&self.counters.readdirs);
        let dir = self.inodes.get(ino).ok_or(Errno::ENOENT)?;
        let parent = u64::from(dir.parent);
        let mut index = offset;
        while index < 2 {
            let (entry_ino, name): (u64, &[u8]) = if index == 0 {
                (ino, b".")
            } else {
                (parent, b"..")
            };
            let inode = self.inodes.get(entry_ino).ok_or(Errno::EIO)?;
            if add(entry_ino, index + 1, name, &inode) {
                return Ok(());
            }
            index += 1;
        }
        let start = usize::try_from(index - 2).map_err(|_| Errno::EINVAL)?;
        match dir.kind {
            Kind::Synthetic { dir } => {
                let synthetic = self.synthetic.dir(dir).ok_or(Errno::EIO)?;
                for (slot, entry) in synthetic.entries.iter().enumerate().skip(start) {
                    let inode = self.inodes.get(entry.ino).ok_or(Errno::EIO)?;
                    if add(entry.ino, slot as u64 + 3, &entry.name, &inode) {
                        break;
                    }
                }
                Ok(())
            }
            Kind::Directory { .. } => {
                let tree = dir.kind.tree().expect("a directory has a tree");
                self.snapshots
                    .with(|txn| {
                        let view = txn.tree(tree)?;
                        for slot in start..view.len() {
                            let entry = view
                                .entry(slot)
                                .ok_or(DbError::CorruptTree { hash: tree })?;
                            let (child, inode) = self.inodes.child(ino, slot, &entry.node);
                            if add(child, slot as u64 + 3, &entry.name, &inode) {
                                break;
                            }
                        }
                        Ok(())
                    })
                    .map_err(|source| self.tree_error(ino, source))
            }
            _ => Err(Errno::ENOTDIR),
        }
    }

    fn readlink(&self, ino: u64) -> Result<Vec<u8>, Errno> {
        let inode = self.inodes.get(ino).ok_or(Errno::ENOENT)?;
        if !matches!(inode.kind, Kind::Symlink { .. }) {
            return Err(Errno::EINVAL);
        }
        let parent = self.inodes.get(u64::from(inode.parent)).ok_or(Errno::EIO)?;
        let node = match parent.kind {
            Kind::Synthetic { dir } => self
                .synthetic
                .dir(dir)
                .and_then(|d| d.entries.get(inode.slot as usize))
                .and_then(|entry| entry.node.clone()),
            _ => {
                let tree = parent.kind.tree().ok_or(Errno::EIO)?;
                self.snapshots
                    .with(|txn| txn.tree(tree).map(|view| view.entry(inode.slot as usize)))
                    .map_err(|source| self.tree_error(u64::from(inode.parent), source))?
                    .map(|entry| entry.node)
            }
        };
        match node.map(|node| node.kind) {
            Some(NodeKind::Symlink(text)) => Ok(text),
            _ => Err(Errno::EIO),
        }
    }

    fn xattr(&self, ino: u64, name: &[u8]) -> Result<Vec<u8>, Errno> {
        let inode = self.inodes.get(ino).ok_or(Errno::ENOENT)?;
        match self.inodes.owner(&inode) {
            Some(owner) if name == OWNER_XATTR.as_bytes() => {
                Ok(self.labels.get(&self.snapshots, owner))
            }
            _ => Err(Errno::NO_XATTR),
        }
    }

    fn xattr_names(&self, ino: u64) -> Result<Vec<u8>, Errno> {
        let inode = self.inodes.get(ino).ok_or(Errno::ENOENT)?;
        Ok(match self.inodes.owner(&inode) {
            Some(_) => [OWNER_XATTR.as_bytes(), b"\0"].concat(),
            None => Vec::new(),
        })
    }
}

/// Answers an xattr request: the size when asked for it, `ERANGE` when the buffer is short.
fn reply_sized(reply: ReplyXattr, data: &[u8], size: u32) {
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    if size == 0 {
        reply.size(len);
    } else if len > size {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(data);
    }
}

impl Filesystem for MossFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        let offered = config.capabilities();
        let wanted = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_CACHE_SYMLINKS;
        // All or nothing per call; each of these is optional.
        let _ = config.add_capabilities(wanted & offered);
        let inner = &self.inner;
        inner.reads.no_open.store(
            offered.contains(InitFlags::FUSE_NO_OPEN_SUPPORT),
            Ordering::Relaxed,
        );
        inner.no_opendir.store(
            offered.contains(InitFlags::FUSE_NO_OPENDIR_SUPPORT),
            Ordering::Relaxed,
        );
        if let Err(nearest) = config.set_max_readahead(u32::MAX) {
            let _ = config.set_max_readahead(nearest);
        }
        let _ = config.set_max_background(64);
        // Backing files need CAP_SYS_ADMIN; without it every open would fail over.
        let passthrough = rustix::process::geteuid().is_root()
            && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(1).is_ok();
        inner.reads.set_mode(if passthrough {
            ReadMode::Passthrough
        } else {
            ReadMode::Store
        });
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let inner = &self.inner;
        bump(&inner.counters.lookups);
        match inner.lookup(parent.0, name.as_bytes()) {
            Ok(Some((ino, inode))) => reply.entry(&TTL, &inner.attr(ino, &inode), GENERATION),
            Ok(None) => reply.entry(&TTL, &inner.negative(), GENERATION),
            Err(errno) => reply.error(errno),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.inner.inodes.get(ino.0) {
            Some(inode) => reply.attr(&TTL, &self.inner.attr(ino.0, &inode)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.inner.readlink(ino.0) {
            Ok(text) => reply.data(&text),
            Err(errno) => reply.error(errno),
        }
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if self.inner.no_opendir.load(Ordering::Relaxed) {
            // The kernel then opens every directory itself with FOPEN_CACHE_DIR.
            reply.error(Errno::ENOSYS);
        } else {
            reply.opened(
                FileHandle(0),
                FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
            );
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let listed = self.inner.list(ino.0, offset, |child, next, name, inode| {
            let kind = self.inner.attr(child, inode).kind;
            reply.add(INodeNo(child), next, kind, OsStr::from_bytes(name))
        });
        match listed {
            Ok(()) => reply.ok(),
            Err(errno) => reply.error(errno),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let inner = &self.inner;
        let listed = inner.list(ino.0, offset, |child, next, name, inode| {
            let attr = inner.attr(child, inode);
            reply.add(
                INodeNo(child),
                next,
                OsStr::from_bytes(name),
                &TTL,
                &attr,
                GENERATION,
            )
        });
        match listed {
            Ok(()) => reply.ok(),
            Err(errno) => reply.error(errno),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.inner.open(ino.0, reply);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.inner.read(ino.0, offset, size, reply);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Nothing to flush; the kernel stops sending flushes after this.
        reply.error(Errno::ENOSYS);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.inner.release(fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match rustix::fs::statvfs(self.inner.store.assets_dir()) {
            Ok(st) => reply.statfs(
                st.f_blocks,
                st.f_bfree,
                st.f_bavail,
                self.inner.entries,
                0,
                u32::try_from(st.f_bsize).unwrap_or(4096),
                255,
                u32::try_from(st.f_frsize).unwrap_or(4096),
            ),
            Err(errno) => reply.error(Errno::from_i32(errno.raw_os_error())),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if !self.inner.debug_view {
            // The kernel answers every later xattr call itself.
            return reply.error(Errno::ENOSYS);
        }
        match self.inner.xattr(ino.0, name.as_bytes()) {
            Ok(value) => reply_sized(reply, &value, size),
            Err(errno) => reply.error(errno),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        if !self.inner.debug_view {
            return reply.error(Errno::ENOSYS);
        }
        match self.inner.xattr_names(ino.0) {
            Ok(names) => reply_sized(reply, &names, size),
            Err(errno) => reply.error(errno),
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        match self.inner.inodes.get(ino.0) {
            Some(_) if mask.contains(AccessFlags::W_OK) => reply.error(Errno::EROFS),
            Some(_) => reply.ok(),
            None => reply.error(Errno::ENOENT),
        }
    }

    // Everything below writes, and the mount never changes.

    #[allow(clippy::too_many_arguments)]
    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(Errno::EROFS);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }
}
