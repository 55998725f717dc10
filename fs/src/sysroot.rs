//! The system root's own syscalls: the writer lock, the atomic `/usr` exchange, the
//! `.stateID` marker, directory fsyncs, the root links, and which file systems are mounted
//! inside a tree (DESIGN.md §4, §6.2, §6.5).
//!
//! Everything here works on directory fds, so a path is resolved once and the same
//! directory is acted on throughout. The transaction engine in `cli` decides the order;
//! this module only makes each step atomic and durable.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags, RenameFlags};

/// Where a root step failed.
#[derive(Debug, thiserror::Error)]
#[error("{operation} {path}: {source}")]
pub struct RootError {
    /// What was being done.
    pub operation: &'static str,
    /// The path it was done to.
    pub path: PathBuf,
    /// What the kernel said.
    #[source]
    pub source: io::Error,
}

fn err<'a>(
    operation: &'static str,
    path: &'a Path,
) -> impl FnOnce(rustix::io::Errno) -> RootError + 'a {
    move |e| RootError {
        operation,
        path: path.to_owned(),
        source: e.into(),
    }
}

fn io_err<'a>(operation: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> RootError + 'a {
    move |source| RootError {
        operation,
        path: path.to_owned(),
        source,
    }
}

/// The name of the file in `usr` that records which state it is.
pub const STATE_ID_FILE: &str = ".stateID";

/// An exclusive `flock` on `ROOT/.moss/lock`, held until dropped. Readers never take it.
pub struct Lock {
    _fd: OwnedFd,
}

impl Lock {
    /// Takes the lock, calling `waiting` once if another process holds it, then blocking.
    pub fn acquire(path: &Path, waiting: impl FnOnce()) -> Result<Lock, RootError> {
        if let Some(lock) = Lock::try_acquire(path)? {
            return Ok(lock);
        }
        waiting();
        let fd = Lock::open(path)?;
        rustix::fs::flock(&fd, FlockOperation::LockExclusive).map_err(err("lock", path))?;
        Ok(Lock { _fd: fd })
    }

    /// Takes the lock only if it is free.
    pub fn try_acquire(path: &Path) -> Result<Option<Lock>, RootError> {
        let fd = Lock::open(path)?;
        match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(Lock { _fd: fd })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(err("lock", path)(e)),
        }
    }

    fn open(path: &Path) -> Result<OwnedFd, RootError> {
        rustix::fs::open(
            path,
            OFlags::CREATE | OFlags::RDWR | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(err("open lock", path))
    }
}

fn open_dir(path: &Path) -> Result<OwnedFd, RootError> {
    rustix::fs::open(
        path,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(err("open", path))
}

/// Fsyncs a directory, so that renames inside it are durable.
pub fn fsync_dir(path: &Path) -> Result<(), RootError> {
    let fd = open_dir(path)?;
    rustix::fs::fsync(&fd).map_err(err("fsync", path))
}

/// Swaps `staged` (a directory) with `live` atomically: afterwards `live` holds what was
/// staged and `staged` holds the old tree. If `live` does not exist yet, `staged` simply
/// moves there. Both parents are fsynced. This is the commit point (DESIGN.md §6.2).
pub fn exchange(staged: &Path, live: &Path) -> Result<(), RootError> {
    let split = |p: &Path| -> Result<(PathBuf, std::ffi::OsString), RootError> {
        match (p.parent(), p.file_name()) {
            (Some(parent), Some(name)) => Ok((parent.to_owned(), name.to_owned())),
            _ => Err(RootError {
                operation: "exchange",
                path: p.to_owned(),
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "needs a parent directory and a name",
                ),
            }),
        }
    };
    let (staged_parent, staged_name) = split(staged)?;
    let (live_parent, live_name) = split(live)?;
    let staged_dir = open_dir(&staged_parent)?;
    let live_dir = open_dir(&live_parent)?;
    let live_exists = rustix::fs::statat(&live_dir, &live_name, AtFlags::SYMLINK_NOFOLLOW).is_ok();
    let flags = if live_exists {
        RenameFlags::EXCHANGE
    } else {
        RenameFlags::NOREPLACE
    };
    rustix::fs::renameat_with(&staged_dir, &staged_name, &live_dir, &live_name, flags)
        .map_err(err("exchange", live))?;
    rustix::fs::fsync(&live_dir).map_err(err("fsync", &live_parent))?;
    rustix::fs::fsync(&staged_dir).map_err(err("fsync", &staged_parent))?;
    Ok(())
}

/// Moves a directory to a new name in the same file system and fsyncs both parents.
pub fn rename_durable(from: &Path, to: &Path) -> Result<(), RootError> {
    std::fs::rename(from, to).map_err(io_err("rename", from))?;
    for dir in [from.parent(), to.parent()].into_iter().flatten() {
        fsync_dir(dir)?;
    }
    Ok(())
}

/// Writes `usr/.stateID` (decimal, no newline, as upstream does) through a temporary
/// file, so the marker is never seen half written.
pub fn write_state_id(usr: &Path, id: u64) -> Result<(), RootError> {
    let tmp = usr.join(".stateID.next");
    let path = usr.join(STATE_ID_FILE);
    let mut file = File::create(&tmp).map_err(io_err("create", &tmp))?;
    file.write_all(id.to_string().as_bytes())
        .map_err(io_err("write", &tmp))?;
    file.sync_all().map_err(io_err("fsync", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
    Ok(())
}

/// Reads `usr/.stateID`; `None` if it is missing, unreadable or not a number.
pub fn read_state_id(usr: &Path) -> Option<u64> {
    try_read_state_id(usr).ok().flatten()
}

/// Reads `usr/.stateID`, telling a file that is not there (or names no state: `None`)
/// from one that could not be read (an error), for a caller that must not take "could
/// not read" for "not this state".
pub fn try_read_state_id(usr: &Path) -> std::io::Result<Option<u64>> {
    match std::fs::read_to_string(usr.join(STATE_ID_FILE)) {
        Ok(text) => Ok(text.trim().parse().ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Where the kernel lists this process's mounts.
const MOUNTINFO: &str = "/proc/self/mountinfo";

/// Every mount point at or below `path`, shallowest first, as `/proc/self/mountinfo`
/// lists them. A file system mounted inside `ROOT/usr` moves with the tree when `usr` is
/// exchanged, and a tree being removed must not be emptied into another file system, so
/// commits and removals ask this first (DESIGN.md §6.5). A missing `path` has none.
pub fn mounts_below(path: &Path) -> Result<Vec<PathBuf>, RootError> {
    let real = match std::fs::canonicalize(path) {
        Ok(real) => real,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("resolve", path)(e)),
    };
    let table = std::fs::read(MOUNTINFO).map_err(io_err("read", Path::new(MOUNTINFO)))?;
    let mut found: Vec<PathBuf> = table
        .split(|b| *b == b'\n')
        .filter_map(|line| line.split(|b| *b == b' ').nth(4))
        .map(|field| PathBuf::from(std::ffi::OsString::from_vec(unescape_mountinfo(field))))
        .filter(|point| point.starts_with(&real))
        .collect();
    found.sort_by_key(|p| p.components().count());
    found.dedup();
    Ok(found)
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape_mountinfo(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                let value = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

/// The links a merged-`/usr` root keeps at its top level, with every target mossfs ever
/// gives each one, the usual first. Upstream moss makes `bin sbin lib lib64 lib32`, with
/// `lib64 -> usr/lib`; mossfs points `lib64` at `usr/lib64` when the state ships one (so
/// `/lib64/ld-linux-x86-64.so.2` resolves for a package that puts it there), and makes
/// `lib32` only when the state ships `usr/lib32`. [`root_links`] picks one per name.
pub const ROOT_LINKS: [(&str, &[&str]); 5] = [
    ("bin", &["usr/bin"]),
    ("sbin", &["usr/sbin"]),
    ("lib", &["usr/lib"]),
    ("lib64", &["usr/lib", "usr/lib64"]),
    ("lib32", &["usr/lib32"]),
];

/// The root links for the tree in `usr`: each name of [`ROOT_LINKS`] with its target.
/// `lib64` points to `usr/lib64` when `usr` has that entry (a directory, or a package's
/// own `lib64 -> lib` link), else to `usr/lib`; `lib32` is made only when `usr/lib32`
/// exists. The live `usr` is exactly the state's tree, so reading it is reading the state.
pub fn root_links(usr: &Path) -> Vec<(&'static str, &'static str)> {
    let ships = |name: &str| std::fs::symlink_metadata(usr.join(name)).is_ok();
    let mut links = Vec::new();
    for (name, targets) in ROOT_LINKS {
        let target = match name {
            "lib64" if ships("lib64") => "usr/lib64",
            "lib32" if !ships("lib32") => continue,
            _ => targets[0],
        };
        links.push((name, target));
    }
    links
}

/// A root link that [`ensure_root_links`] re-pointed or left alone, for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkNote {
    /// A link mossfs made for an earlier state now points where this state needs it.
    Repointed {
        /// The link, `ROOT/<name>`.
        name: &'static str,
        /// Where it pointed.
        from: PathBuf,
        /// Where it points now.
        to: &'static str,
    },
    /// A link mossfs never makes in this form: someone else made it, so it stays.
    Foreign {
        /// The link, `ROOT/<name>`.
        name: &'static str,
        /// Where it points.
        text: PathBuf,
        /// Where mossfs would point it.
        wanted: &'static str,
    },
    /// A real directory or file where the link belongs: not mossfs's to remove.
    NotALink {
        /// The entry, `ROOT/<name>`.
        name: &'static str,
        /// Whether it is a directory.
        is_dir: bool,
        /// Where the link would point.
        wanted: &'static str,
    },
}

impl LinkNote {
    /// Whether the person should act on it; a re-pointed link is only news.
    pub fn is_warning(&self) -> bool {
        !matches!(self, LinkNote::Repointed { .. })
    }
}

impl std::fmt::Display for LinkNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkNote::Repointed { name, from, to } => write!(
                f,
                "root link {name} now points to {to} (it pointed to {}), to match what the state ships",
                from.display()
            ),
            LinkNote::Foreign { name, text, wanted } => write!(
                f,
                "root link {name} points to {}, not to {wanted} as mossfs would make it; left as it is (remove it to let mossfs manage it)",
                text.display()
            ),
            LinkNote::NotALink {
                name,
                is_dir,
                wanted,
            } => write!(
                f,
                "{name} at the top of the root is a real {}, not a link to {wanted}; left as it is, so what the state ships in {wanted} is not found through it (move its contents away and remove it to let mossfs link it)",
                if *is_dir { "directory" } else { "file" }
            ),
        }
    }
}

/// `text` as a path below the root, lexically: `.` and empty components dropped, `..`
/// taken back (never above the root), and an absolute link read from the root, as it
/// resolves on the booted system. `/usr/lib64` and `./usr/lib64` are `usr/lib64`.
fn below_root(text: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    for part in text.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    parts
}

/// Points the root links of [`root_links`] into `usr`, never replacing what mossfs did
/// not make. For each name: a missing entry gets the link; a link already resolving to the
/// target (in any spelling) is kept; a link in a form mossfs makes for that name (an earlier
/// state's `lib64 -> usr/lib`) is re-pointed atomically (a new link under a temporary name,
/// renamed over the old one); any other link, and a real directory or file, is left alone
/// and reported. Returns the notes, re-pointed links first.
pub fn ensure_root_links(root: &Path) -> Result<Vec<LinkNote>, RootError> {
    let dir = open_dir(root)?;
    let mut notes = Vec::new();
    let mut changed = false;
    for (name, target) in root_links(&root.join("usr")) {
        let managed = ROOT_LINKS
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(&[][..], |(_, targets)| *targets);
        match rustix::fs::readlinkat(&dir, name, Vec::new()) {
            Ok(text) if below_root(text.as_bytes()) == below_root(target.as_bytes()) => continue,
            Ok(text) if managed.iter().any(|m| m.as_bytes() == text.as_bytes()) => {
                notes.push(LinkNote::Repointed {
                    name,
                    from: PathBuf::from(std::ffi::OsStr::from_bytes(text.as_bytes())),
                    to: target,
                });
            }
            Ok(text) => {
                notes.push(LinkNote::Foreign {
                    name,
                    text: PathBuf::from(std::ffi::OsStr::from_bytes(text.as_bytes())),
                    wanted: target,
                });
                continue;
            }
            Err(rustix::io::Errno::NOENT) => {}
            Err(rustix::io::Errno::INVAL) => {
                let is_dir = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir());
                notes.push(LinkNote::NotALink {
                    name,
                    is_dir,
                    wanted: target,
                });
                continue;
            }
            Err(e) => return Err(err("readlink", &root.join(name))(e)),
        }
        let tmp = format!(".{name}.next");
        let _ = rustix::fs::unlinkat(&dir, &tmp, AtFlags::empty());
        rustix::fs::symlinkat(target, &dir, &tmp).map_err(err("symlink", &root.join(&tmp)))?;
        rustix::fs::renameat(&dir, &tmp, &dir, name).map_err(err("rename", &root.join(name)))?;
        changed = true;
    }
    // Every command that opens a root for writing comes here, most with every link in
    // place: only a change needs the `fsync` (under load, one costs milliseconds).
    if changed {
        rustix::fs::fsync(dir.as_fd()).map_err(err("fsync", root))?;
    }
    notes.sort_by_key(LinkNote::is_warning);
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchange_swaps_and_moves() {
        let dir = tempfile::tempdir().unwrap();
        let staged = dir.path().join("staging");
        let live = dir.path().join("usr");
        std::fs::create_dir(&staged).unwrap();
        std::fs::write(staged.join("new"), b"").unwrap();
        // No live tree yet: a plain move.
        exchange(&staged, &live).unwrap();
        assert!(live.join("new").exists() && !staged.exists());
        std::fs::create_dir(&staged).unwrap();
        std::fs::write(staged.join("newer"), b"").unwrap();
        exchange(&staged, &live).unwrap();
        assert!(live.join("newer").exists() && staged.join("new").exists());
    }

    #[test]
    fn state_id_round_trips_and_root_links_are_made() {
        let dir = tempfile::tempdir().unwrap();
        let usr = dir.path().join("usr");
        std::fs::create_dir(&usr).unwrap();
        assert_eq!(read_state_id(&usr), None);
        write_state_id(&usr, 42).unwrap();
        assert_eq!(std::fs::read_to_string(usr.join(".stateID")).unwrap(), "42");
        assert_eq!(read_state_id(&usr), Some(42));
        std::fs::create_dir(dir.path().join("sbin")).unwrap();
        let notes = ensure_root_links(dir.path()).unwrap();
        assert_eq!(
            notes,
            vec![LinkNote::NotALink {
                name: "sbin",
                is_dir: true,
                wanted: "usr/sbin"
            }]
        );
        assert_eq!(
            std::fs::read_link(dir.path().join("lib64")).unwrap(),
            Path::new("usr/lib")
        );
        assert!(dir.path().join("sbin").is_dir());
        assert!(std::fs::symlink_metadata(dir.path().join("lib32")).is_err());
    }

    #[test]
    fn root_links_follow_the_tree_and_spare_foreign_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/lib64")).unwrap();
        std::fs::create_dir_all(root.join("usr/lib32")).unwrap();
        std::os::unix::fs::symlink("usr/lib", root.join("lib64")).unwrap();
        std::os::unix::fs::symlink("/usr/bin", root.join("bin")).unwrap();
        std::os::unix::fs::symlink("/opt/lib", root.join("lib")).unwrap();
        let notes = ensure_root_links(root).unwrap();
        assert_eq!(
            notes,
            vec![
                LinkNote::Repointed {
                    name: "lib64",
                    from: "usr/lib".into(),
                    to: "usr/lib64"
                },
                LinkNote::Foreign {
                    name: "lib",
                    text: "/opt/lib".into(),
                    wanted: "usr/lib"
                },
            ]
        );
        let link = |name: &str| std::fs::read_link(root.join(name)).unwrap();
        assert_eq!(link("lib64"), Path::new("usr/lib64"));
        assert_eq!(link("lib32"), Path::new("usr/lib32"));
        // Equivalent spellings are kept as they are, silently.
        assert_eq!(link("bin"), Path::new("/usr/bin"));
        assert_eq!(link("lib"), Path::new("/opt/lib"));
        assert_eq!(
            below_root(b"./usr/../usr//lib64/"),
            below_root(b"/usr/lib64")
        );
        assert_eq!(below_root(b"../../usr/lib"), below_root(b"usr/lib"));
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo(br"/a\040b\134c\012"), b"/a b\\c\n");
        assert_eq!(unescape_mountinfo(br"/plain\09"), br"/plain\09");
    }

    #[test]
    fn the_root_file_system_is_below_slash_and_a_missing_path_has_no_mounts() {
        let all = mounts_below(Path::new("/")).unwrap();
        assert_eq!(all.first().map(PathBuf::as_path), Some(Path::new("/")));
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            mounts_below(&dir.path().join("gone")).unwrap(),
            Vec::<PathBuf>::new()
        );
    }

    #[test]
    fn a_second_lock_waits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = Lock::try_acquire(&path).unwrap().unwrap();
        assert!(Lock::try_acquire(&path).unwrap().is_none());
        drop(held);
        assert!(Lock::try_acquire(&path).unwrap().is_some());
    }
}
