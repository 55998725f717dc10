//! Paths on disk that a state's tree does not have (issue 7, defect 5).
//!
//! A blitted tree holds exactly its state's paths and `.stateID`. Anything else was put
//! there by hand: a file planted in `/usr`, or one left behind in an archived tree. `verify`
//! reports such paths, `verify --repair` drops them with the re-blit, and a commit removes
//! them from an archived tree before it builds on it, so that a state's contents never
//! depend on which archive was reused.
//!
//! The walk reads the disk and the tree side by side, one directory at a time: a
//! `getdents` per directory and one directory object from the database, no `stat` for a
//! path the tree has. It descends only into directories the tree has too, opened with
//! `O_NOFOLLOW`, and never into another file system: a mount point is reported, not
//! walked, and nothing below it can be removed by anyone who trusts this list. Inside a
//! directory no package owns, it looks further only for setuid and setgid files, since
//! those are what a person must hear about loudly.
//!
//! [`unowned_since`] is the same walk over a tree sealed by the commit that blitted it
//! (issue 13 §2): it lists only the directories whose ctime is not before the seal, and
//! for the rest only `stat`s the directories the tree has. A name can only be added to a
//! directory by changing that directory, which sets its ctime to the current time, and no
//! system call sets a ctime to anything else; so a directory whose ctime is before the seal
//! holds exactly what the blit left in it. The seal is read from the coarse wall clock,
//! which is what file systems stamp ctimes with (ext4, xfs, btrfs, tmpfs; with multigrain
//! timestamps, a ctime is never below it), so any change after the seal has a ctime at or
//! after it. They are compared to the millisecond where the file system keeps more than
//! whole seconds, and to the second where it does not (see [`Seal`]). Only a wall clock
//! stepped back between the seal and the change could hide one; a clock now behind the
//! seal is seen, and the whole tree is then listed.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use mossfs_db::{NodeKind, Query, TreeHash};
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};

use super::create::io_error;
use super::plan::{is_file_name, read_dir};
use super::{BlitError, MAX_DEPTH, Op, child_path, state_root};
use crate::dirfd::open_child_dir;

/// File systems whose directories have 2 links plus one per subdirectory (ext2/3/4 below
/// 65,000 subdirectories, then 1; xfs; tmpfs). btrfs, for one, always says 1. On these, a
/// sealed directory's link count says how many subdirectories the walk must find in its
/// tree object, and that a directory with 2 links has none to descend into.
const COUNTING_FS: [i64; 3] = [0xEF53, 0x5846_5342, 0x0102_1994];

/// A path on disk that the tree does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unowned {
    /// Relative to the walked directory, like a tree path (`bin/evil`).
    pub path: Vec<u8>,
    /// `st_mode` as found, type bits included.
    pub mode: u32,
    /// Another file system is mounted here. It was not walked, and removing what is
    /// below it would reach into that file system: callers must leave it alone.
    pub mount_point: bool,
    /// Found inside a directory that is itself unowned (reported for its setuid or setgid
    /// bit); removing that directory removes this too.
    pub inside: bool,
}

impl Unowned {
    /// A regular file with the setuid or setgid bit: whoever can run it gains its owner's
    /// or group's rights.
    pub fn is_setid(&self) -> bool {
        self.mode & 0o170000 == 0o100000 && self.mode & 0o6000 != 0
    }
}

/// Lists what `dir` holds that the tree `root` does not, sorted by path, leaving out the
/// top-level `.stateID` that every blitted tree has. `dir` must be a blit of some tree
/// (a live `/usr` or an archived one); paths where disk and tree disagree about the type
/// are not listed here, since the path itself is owned (`verify` reports them as damage).
pub fn unowned(q: &impl Query, root: TreeHash, dir: &Path) -> Result<Vec<Unowned>, BlitError> {
    scan(q, root, dir, None, &Helpers::default())
}

/// When the commit that blitted a tree finished writing it: a time by the coarse wall
/// clock, in nanoseconds since the Unix epoch. Every directory of that tree changed since
/// has a ctime at or after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seal(pub u64);

impl Seal {
    /// Now, by the clock ctimes are stamped with (`CLOCK_REALTIME_COARSE`): a finer clock
    /// can run ahead of the stamp a change made right after it gets.
    pub fn now() -> Seal {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
        let nanos = i128::from(now.tv_sec) * 1_000_000_000 + i128::from(now.tv_nsec);
        Seal(u64::try_from(nanos).unwrap_or(0))
    }

    /// Whether a directory with this ctime was last changed before the seal.
    ///
    /// A file system stores a ctime truncated to its granularity, so a change made just
    /// after the seal may read as a little before it: the two are compared truncated to a
    /// unit that is a multiple of the granularity. File systems that keep sub-second
    /// ctimes keep nanoseconds, microseconds or 100 ns (ext4 with large inodes, xfs, btrfs,
    /// tmpfs, f2fs, NTFS over the network), all of which divide a millisecond. A ctime
    /// with no nanoseconds may come from a file system that keeps whole seconds (ext4 with
    /// 128-byte inodes), and is compared to the second. Since a commit takes milliseconds,
    /// comparing to the second would list every directory it wrote in its last second,
    /// which at 250,000 entries is 5,000 names in `usr/bin` alone.
    fn before(self, sec: i64, nsec: i64) -> bool {
        let (ctime, seal) = if nsec == 0 {
            (i128::from(sec), i128::from(self.0 / 1_000_000_000))
        } else {
            let ms = i128::from(sec) * 1_000 + i128::from(nsec) / 1_000_000;
            (ms, i128::from(self.0 / 1_000_000))
        };
        ctime < seal
    }
}

/// What [`unowned`] finds, for a tree sealed at `seal` (see the module comment): the top
/// directory and every directory changed since the seal are listed, and the others are
/// only `stat`ed, so the cost follows the number of directories and what changed since,
/// not the number of files. A wall clock now behind the seal lists everything.
///
/// Other threads may take part through `helpers` ([`Helpers::help`]).
pub fn unowned_since(
    q: &impl Query,
    root: TreeHash,
    dir: &Path,
    seal: Seal,
    helpers: &Helpers,
) -> Result<Vec<Unowned>, BlitError> {
    scan(q, root, dir, (Seal::now() >= seal).then_some(seal), helpers)
}

/// A way for other threads to take part in the [`unowned_since`] check running now: its
/// `stat`s are most of a one-package commit at 250,000 entries, and a commit whose own
/// work is done has nothing better to do with its thread. Each directory still to be
/// looked into is a piece of work any thread with a read transaction can take (tree
/// objects never change, so every transaction sees the same ones).
#[derive(Clone, Default)]
pub struct Helpers(Arc<Mutex<Option<Arc<Shared>>>>);

impl Helpers {
    /// Works on the check running now, if there is one, until none of its work is left to
    /// take. What it finds, or the first error, goes to the thread that runs the check.
    pub fn help(&self, q: &impl Query) {
        let running = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(shared) = running {
            shared.work(q);
        }
    }

    fn publish(&self, shared: Option<Arc<Shared>>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = shared;
    }
}

/// The work of one sealed check, shared by the threads doing it.
struct Shared {
    pool: Mutex<Pool>,
    /// Signalled when work is added, and when the last busy thread finishes.
    changed: Condvar,
    dev: u64,
    seal: Option<Seal>,
    counts_subdirs: bool,
}

#[derive(Default)]
struct Pool {
    /// Taken from the end: depth first, so few directories are held open at once.
    items: Vec<Item>,
    /// Threads working on an item now.
    busy: usize,
    found: Vec<Unowned>,
    failed: Option<BlitError>,
}

/// A directory that is in the tree, unchanged since the seal, and has subdirectories.
struct Item {
    /// The directory it is in: it is opened only when taken.
    at: Arc<OwnedFd>,
    name: Vec<u8>,
    hash: TreeHash,
    subdirs: Option<u64>,
    path: Vec<u8>,
    depth: usize,
}

impl Shared {
    /// Takes items until none is left and no thread is busy, which may add more; what it
    /// finds goes to the pool with each item.
    fn work(&self, q: &impl Query) {
        let walk = &mut Walk::new(self.dev, self.seal, self.counts_subdirs);
        let lock = || self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        let mut pool = lock();
        loop {
            if pool.failed.is_some() {
                break;
            }
            let Some(item) = pool.items.pop() else {
                if pool.busy == 0 {
                    break;
                }
                pool = self
                    .changed
                    .wait(pool)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            };
            pool.busy += 1;
            drop(pool);
            let result = walk.item(q, item);
            pool = lock();
            pool.busy -= 1;
            if let Err(e) = result {
                pool.failed.get_or_insert(e);
            }
            let added = walk.queue.len();
            pool.items.append(&mut walk.queue);
            // Handed over with the item, so nothing is found after the last thread is done.
            pool.found.append(&mut walk.found);
            if added > 1 || pool.busy == 0 || pool.failed.is_some() {
                self.changed.notify_all();
            }
        }
        self.changed.notify_all();
    }
}

fn scan(
    q: &impl Query,
    root: TreeHash,
    dir: &Path,
    seal: Option<Seal>,
    helpers: &Helpers,
) -> Result<Vec<Unowned>, BlitError> {
    let top = rustix::fs::open(
        dir,
        OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| BlitError::Target {
        op: Op::OpenDir,
        path: dir.to_owned(),
        source: e.into(),
    })?;
    let dev = rustix::fs::fstat(&top)
        .map_err(|e| io_error(Op::Stat, &state_root(), None, e))?
        .st_dev;
    let counts_subdirs = seal.is_some()
        && rustix::fs::fstatfs(&top).is_ok_and(|fs| COUNTING_FS.contains(&{ fs.f_type }));
    let mut walk = Walk::new(dev, seal, counts_subdirs);
    walk.owned(q, top, root, &mut Vec::new(), 0)?;
    if !walk.queue.is_empty() {
        let shared = Arc::new(Shared {
            pool: Mutex::new(Pool {
                items: std::mem::take(&mut walk.queue),
                ..Pool::default()
            }),
            changed: Condvar::new(),
            dev,
            seal,
            counts_subdirs,
        });
        helpers.publish(Some(Arc::clone(&shared)));
        shared.work(q);
        helpers.publish(None);
        // Every helper has handed over what it found: no thread is busy.
        let mut pool = shared.pool.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = pool.failed.take() {
            return Err(e);
        }
        walk.found.append(&mut pool.found);
    }
    walk.found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(walk.found)
}

struct Walk {
    /// The file system of the walked tree.
    dev: u64,
    /// Directories changed before this are not listed.
    seal: Option<Seal>,
    /// The file system gives a directory 2 links plus one per subdirectory.
    counts_subdirs: bool,
    found: Vec<Unowned>,
    /// Directories to look into, for [`Shared::work`] to hand out.
    queue: Vec<Item>,
}

impl Walk {
    fn new(dev: u64, seal: Option<Seal>, counts_subdirs: bool) -> Walk {
        Walk {
            dev,
            seal,
            counts_subdirs,
            found: Vec::new(),
            queue: Vec::new(),
        }
    }

    /// Opens the item's directory and looks into it as [`Walk::sealed`] does.
    fn item(&mut self, q: &impl Query, mut item: Item) -> Result<(), BlitError> {
        let fd = match open_child_dir(item.at.as_fd(), item.name.as_slice()) {
            Ok(fd) => Arc::new(fd),
            // Replaced since its `stat`: a change of its parent, which a later check lists.
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => return Ok(()),
            Err(rustix::io::Errno::LOOP) => return Ok(()),
            Err(e) => return Err(io_error(Op::OpenDir, &shown_path(&item.path), None, e)),
        };
        drop(item.at);
        self.sealed(q, fd, item.hash, item.subdirs, &mut item.path, item.depth)
    }

    /// A directory the tree has: every name the tree lacks is unowned.
    fn owned(
        &mut self,
        q: &impl Query,
        fd: OwnedFd,
        hash: TreeHash,
        path: &mut Vec<u8>,
        depth: usize,
    ) -> Result<(), BlitError> {
        let shown = shown_path(path);
        if depth > MAX_DEPTH {
            return Err(BlitError::TooDeep { path: shown });
        }
        // Entries of a directory object are sorted bytewise by name.
        let entries = read_dir(q, hash, &shown)?;
        let in_tree = |name: &[u8]| {
            entries
                .binary_search_by(|e| e.name.as_slice().cmp(name))
                .ok()
                .map(|i| &entries[i].node.kind)
        };
        let (dir, names) = list(fd, &shown)?;
        let fd = dir.fd().map_err(|e| io_error(Op::List, &shown, None, e))?;
        // This directory, for the queued subdirectories to be opened in.
        let mut shared: Option<Arc<OwnedFd>> = None;
        for (name, file_type) in names {
            if path.is_empty() && name == mossfs_format::path::RESERVED {
                continue;
            }
            let len = path.len();
            enter(path, &name);
            match in_tree(&name) {
                None => self.stray(fd, &name, path, false, depth)?,
                Some(NodeKind::Directory(child)) if file_type != FileType::Symlink => {
                    let stat =
                        match rustix::fs::statat(fd, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
                            Ok(stat) => stat,
                            // Gone since the listing: damage, which `verify` reports.
                            Err(rustix::io::Errno::NOENT) => {
                                path.truncate(len);
                                continue;
                            }
                            Err(e) => return Err(io_error(Op::Stat, &shown_path(path), None, e)),
                        };
                    if stat.st_mode & 0o170000 != 0o040000 {
                        // Not a directory on disk: damage too.
                    } else if stat.st_dev != self.dev {
                        self.mount_point(path);
                    } else if self.changed(&stat) {
                        match open_child_dir(fd, name.as_slice()) {
                            Ok(child_fd) => self.owned(q, child_fd, *child, path, depth + 1)?,
                            // Replaced since the stat: a change of this directory, which a
                            // later walk lists.
                            Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => {}
                            Err(rustix::io::Errno::LOOP) => {}
                            Err(e) => {
                                return Err(io_error(Op::OpenDir, &shown_path(path), None, e));
                            }
                        }
                    } else if self.subdirs(&stat) != Some(0) {
                        // Opened when taken, so that few directories are open at once.
                        let at = match &shared {
                            Some(at) => Arc::clone(at),
                            None => {
                                let dup = rustix::io::fcntl_dupfd_cloexec(fd, 0)
                                    .map_err(|e| io_error(Op::OpenDir, &shown, None, e))?;
                                Arc::clone(shared.insert(Arc::new(dup)))
                            }
                        };
                        self.queue.push(Item {
                            at,
                            name: name.clone(),
                            hash: *child,
                            subdirs: self.subdirs(&stat),
                            path: path.clone(),
                            depth: depth + 1,
                        });
                    }
                }
                Some(_) => {}
            }
            path.truncate(len);
        }
        Ok(())
    }

    /// A name the tree lacks, at `path`: listed, and if it is a directory, searched for
    /// setuid and setgid files.
    fn stray(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        path: &mut Vec<u8>,
        inside: bool,
        depth: usize,
    ) -> Result<(), BlitError> {
        if depth > MAX_DEPTH {
            return Err(BlitError::TooDeep {
                path: shown_path(path),
            });
        }
        let stat = match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            // Gone while we looked: nothing to report.
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e) => return Err(io_error(Op::Stat, &shown_path(path), None, e)),
        };
        let mode = stat.st_mode;
        let is_dir = mode & 0o170000 == 0o040000;
        let mount_point = is_dir && stat.st_dev != self.dev;
        let entry = Unowned {
            path: path.clone(),
            mode,
            mount_point,
            inside,
        };
        if !inside || entry.is_setid() || mount_point {
            self.found.push(entry);
        }
        if !is_dir || mount_point {
            return Ok(());
        }
        let fd = match open_child_dir(parent, name) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => return Ok(()),
            Err(e) => return Err(io_error(Op::OpenDir, &shown_path(path), None, e)),
        };
        let shown = shown_path(path);
        let (dir, names) = list(fd, &shown)?;
        let fd = dir.fd().map_err(|e| io_error(Op::List, &shown, None, e))?;
        for (child, _) in names {
            let len = path.len();
            enter(path, &child);
            self.stray(fd, &child, path, true, depth + 1)?;
            path.truncate(len);
        }
        Ok(())
    }

    /// Whether a directory must be listed: always without a seal, else when it changed
    /// at or after the seal.
    fn changed(&self, stat: &rustix::fs::Stat) -> bool {
        self.seal
            .is_none_or(|seal| !seal.before(stat.st_ctime, stat.st_ctime_nsec as i64))
    }

    /// How many subdirectories a directory has, by its link count, where the file system
    /// counts them.
    fn subdirs(&self, stat: &rustix::fs::Stat) -> Option<u64> {
        let links = stat.st_nlink;
        (self.counts_subdirs && links >= 2).then(|| links - 2)
    }

    fn mount_point(&mut self, path: &[u8]) {
        self.found.push(Unowned {
            path: path.to_vec(),
            mode: 0o040000,
            mount_point: true,
            inside: false,
        });
    }

    /// A directory the tree has, unchanged since the seal: its names are the tree's, so
    /// only its subdirectories are looked at, each with one `stat` and no listing. Those
    /// that changed are listed; those that did not are queued to be looked into, when
    /// they have subdirectories, by whichever thread takes them ([`Shared::work`]).
    ///
    /// `subdirs` is how many subdirectories the directory has on disk, when its link
    /// count says so: names unchanged since the blit are the tree's, so the scan of its
    /// tree object stops once it has seen that many.
    fn sealed(
        &mut self,
        q: &impl Query,
        fd: Arc<OwnedFd>,
        hash: TreeHash,
        subdirs: Option<u64>,
        path: &mut Vec<u8>,
        depth: usize,
    ) -> Result<(), BlitError> {
        let shown = shown_path(path);
        if depth > MAX_DEPTH {
            return Err(BlitError::TooDeep { path: shown });
        }
        let corrupt = |source| BlitError::Tree {
            path: shown.clone(),
            source,
        };
        let view = q.tree(hash).map_err(corrupt)?;
        let mut seen = 0;
        for index in 0..view.len() {
            if subdirs.is_some_and(|n| seen >= n) {
                break;
            }
            let damaged = || corrupt(mossfs_db::DbError::CorruptTree { hash });
            let Some(child) = view.child_dir(index).ok_or_else(damaged)? else {
                continue;
            };
            seen += 1;
            let name = view.name(index).ok_or_else(damaged)?;
            if !is_file_name(name) {
                return Err(BlitError::BadName {
                    path: shown,
                    name: String::from_utf8_lossy(name).into_owned(),
                });
            }
            let len = path.len();
            enter(path, name);
            let stat = match rustix::fs::statat(&*fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) => Some(stat),
                // Missing: damage, which `verify` reports.
                Err(rustix::io::Errno::NOENT) => None,
                Err(e) => return Err(io_error(Op::Stat, &shown_path(path), None, e)),
            };
            match stat {
                // Not a directory on disk: damage too.
                Some(stat) if stat.st_mode & 0o170000 != 0o040000 => {}
                Some(stat) if stat.st_dev != self.dev => self.mount_point(path),
                Some(stat) if self.changed(&stat) => match open_child_dir(fd.as_fd(), name) {
                    Ok(child_fd) => self.owned(q, child_fd, child, path, depth + 1)?,
                    // Replaced since the stat: a change of this directory, which a later
                    // walk lists.
                    Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => {}
                    Err(rustix::io::Errno::LOOP) => {}
                    Err(e) => return Err(io_error(Op::OpenDir, &shown_path(path), None, e)),
                },
                Some(stat) if self.subdirs(&stat) != Some(0) => self.queue.push(Item {
                    at: Arc::clone(&fd),
                    name: name.to_vec(),
                    hash: child,
                    subdirs: self.subdirs(&stat),
                    path: path.clone(),
                    depth: depth + 1,
                }),
                _ => {}
            }
            path.truncate(len);
        }
        Ok(())
    }
}

/// The names in a directory, `.` and `..` left out, with their types as `getdents` gives
/// them; the stream keeps the directory open for the caller.
type Listing = (Dir, Vec<(Vec<u8>, FileType)>);

fn list(fd: OwnedFd, shown: &Path) -> Result<Listing, BlitError> {
    let fail = |e| io_error(Op::List, shown, None, e);
    let mut dir = Dir::new(fd).map_err(fail)?;
    let mut names = Vec::new();
    while let Some(entry) = dir.read() {
        let entry = entry.map_err(fail)?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push((name.to_vec(), entry.file_type()));
        }
    }
    Ok((dir, names))
}

fn enter(path: &mut Vec<u8>, name: &[u8]) {
    if !path.is_empty() {
        path.push(b'/');
    }
    path.extend_from_slice(name);
}

/// `usr/…`, for messages.
fn shown_path(path: &[u8]) -> PathBuf {
    if path.is_empty() {
        state_root()
    } else {
        child_path(&state_root(), path)
    }
}
