//! Real FUSE mounts of real states (issue 4, DESIGN.md §7).
//!
//! Each test builds a root in a temp dir the way the engine does ([`fixture`]), mounts a
//! state with `mossfs_fs::fuse`, and checks what the kernel shows; the reference for
//! fidelity is the blit of the same state. [`lifecycle`] covers unmounting, dead servers
//! and signals with servers in child processes; [`cli`] runs the real `mossfs mount` and
//! `mossfs umount`.
//!
//! FUSE is required: under `CI=true` a test that cannot mount fails; elsewhere it prints
//! why and passes. Waits poll the mount table or read a child's "ready" line, never sleep.

#[path = "mount/cli.rs"]
mod cli;
#[path = "mount/fixture.rs"]
mod fixture;
#[path = "mount/lifecycle.rs"]
mod lifecycle;

use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{DirEntryExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use mossfs_db::{Query, StateId};
use mossfs_fs::fuse::{self, FsOptions, MossFs, MountError, ReadMode};
use mossfs_integration::corpus::SourceEntry;
use mossfs_store::Store;

use fixture::*;

#[test]
fn every_state_mounts_exactly_as_it_blits() {
    let mut root = Root::new();
    let files = files_state(&root);
    let linked = symlinked_dirs_state(&root);
    let staged_package = root.package(
        "staged",
        vec![
            file("bin/staged", noise(2, 100_000), 0o755),
            file("share/staged/a", "a", 0o644),
        ],
    );
    let staged = root.state(&[staged_package]);
    assert!(!root.store.has_asset(mossfs_format::AssetHash::of(b"a")));
    for (store_reads, state) in [false, true]
        .into_iter()
        .flat_map(|m| [(m, files), (m, linked), (m, staged)])
    {
        let Some(mount) = root.mount_with(state, false, store_reads) else {
            return;
        };
        // The first walk unpacks the staged package, which the blit then needs.
        let mounted = snapshot(mount.mountpoint());
        let blitted = root.blit(state);
        assert_same_trees(&mount.mountpoint().join("usr"), &blitted);
        assert_eq!(
            mounted
                .keys()
                .filter(|p| p.components().count() == 1)
                .count(),
            1,
            "only usr/ at the top"
        );
        let stats = mount.stats();
        if std::thread::available_parallelism().is_ok_and(|n| n.get() > 1) {
            assert!(
                stats.bursts >= 1,
                "the walk's requests were polled for: {stats:?}"
            );
        }
        if state == staged && !store_reads {
            assert_eq!(stats.unpacks, 1);
        }
        match mount.read_mode() {
            ReadMode::Passthrough => {
                assert_eq!(stats.reads, 0, "passthrough reads never reach the server")
            }
            ReadMode::Store => assert!(stats.reads > 0 && stats.opens <= 1, "{stats:?}"),
        }
        mount.unmount().unwrap();
    }
    let tree = snapshot(&root.blit(linked));
    assert!(
        tree.contains_key(Path::new("lib/libb.so")) && tree.contains_key(Path::new("share/real/y"))
    );
}

#[test]
fn inodes_are_per_path_and_stable() {
    let mut root = Root::new();
    let package = root.package(
        "twins",
        vec![file("a", "same", 0o644), file("b", "same", 0o644)],
    );
    root.unpack(&[package]);
    let state = root.state(&[package]);
    let Some(mount) = root.mount(state, false) else {
        return;
    };
    let usr = mount.mountpoint().join("usr");
    let (a, b) = (
        fs::metadata(usr.join("a")).unwrap(),
        fs::metadata(usr.join("b")).unwrap(),
    );
    assert_ne!(a.ino(), b.ino());
    assert_eq!((a.nlink(), b.nlink()), (1, 1));
    let listed: Vec<u64> = fs::read_dir(&usr)
        .unwrap()
        .map(|e| e.unwrap().ino())
        .collect();
    assert_eq!(listed, [a.ino(), b.ino()]);
    assert_eq!(fs::metadata(usr.join("a")).unwrap().ino(), a.ino());
}

#[test]
fn the_kernel_caches_entries_listings_and_misses() {
    let mut root = Root::new();
    let files = files_state(&root);
    let Some(mount) = root.mount(files, false) else {
        return;
    };
    let dir = mount.mountpoint().join("usr/share/tools");
    let first: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let before = mount.stats();
    let second: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    for name in &second {
        fs::symlink_metadata(dir.join(name)).unwrap();
    }
    assert_eq!(first, second);
    assert_eq!(
        mount.stats().readdirs,
        before.readdirs,
        "the listing came from the page cache"
    );
    assert_eq!(
        mount.stats().lookups,
        before.lookups,
        "readdirplus primed every entry"
    );
    for _ in 0..3 {
        assert_eq!(
            fs::metadata(dir.join("missing")).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }
    assert_eq!(
        mount.stats().lookups,
        before.lookups + 1,
        "a miss is cached too"
    );
    let link = dir.join("link");
    for _ in 0..3 {
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("data.txt"));
    }
    assert_eq!(
        mount.stats().readlinks,
        before.readlinks + 1,
        "a link's text stays in the page cache"
    );
    assert!(
        mount.stats().opendirs <= 1,
        "opendir is answered ENOSYS once, or directories open with FOPEN_CACHE_DIR: {:?}",
        mount.stats()
    );
    assert_eq!(
        mount.stats().getattrs,
        before.getattrs,
        "attributes are cached"
    );
    // With passthrough, one open and one release (sent without waiting) per open file.
    let data = dir.join("data.txt");
    for _ in 0..2 {
        assert_eq!(fs::read(&data).unwrap(), b"data\n");
    }
    if mount.read_mode() == ReadMode::Passthrough {
        let deadline = Instant::now() + Duration::from_secs(10);
        while mount.stats().releases < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let stats = mount.stats();
        assert_eq!((stats.opens, stats.releases), (2, 2), "{stats:?}");
    }

    // Served from the store: one open at most (then ENOSYS), and pages read once.
    drop(mount);
    let Some(mount) = root.mount_with(files, false, true) else {
        return;
    };
    let big = mount.mountpoint().join("usr/share/tools/big.bin");
    assert!(fs::read(&big).unwrap() == noise(1, 3 << 20));
    let before = mount.stats();
    assert!(fs::read(&big).unwrap() == noise(1, 3 << 20));
    assert_eq!(mount.stats().reads, before.reads, "the page cache was kept");
    assert!(mount.stats().opens <= 1, "{:?}", mount.stats());
}

#[test]
fn a_staged_package_is_unpacked_on_first_read_without_blocking_others() {
    unpacks_on_first_read(false);
}

#[test]
fn a_staged_package_is_unpacked_on_first_read_served_from_the_store() {
    unpacks_on_first_read(true);
}

fn unpacks_on_first_read(store_reads: bool) {
    let mut root = Root::new();
    let slow = root.package(
        "slow",
        vec![
            file("share/slow/a", noise(3, 200_000), 0o644),
            file("share/slow/b", "b", 0o644),
        ],
    );
    let many: Vec<SourceEntry> = (0..16)
        .map(|i| file(&format!("share/many/{i}"), noise(10 + i, 50_000), 0o644))
        .collect();
    let many = root.package("many", many);
    let fast = root.package("fast", vec![file("share/fast/small", "small", 0o644)]);
    root.unpack(&[fast]);
    let state = root.state(&[slow, many, fast]);
    // The unpack of 'slow' reads its cached stone from a pipe, so it lasts until the test
    // writes the stone.
    let cached = root.store.cached_path(&slow);
    let stone = fs::read(&cached).unwrap();
    fs::remove_file(&cached).unwrap();
    let fifo = rustix::fs::Mode::from_raw_mode(0o600);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &cached,
        rustix::fs::FileType::Fifo,
        fifo,
        0,
    )
    .unwrap();
    let Some(mount) = root.mount_with(state, false, store_reads) else {
        return;
    };
    let usr = mount.mountpoint().join("usr");
    let readers: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|name| {
            let path = usr.join("share/slow").join(name);
            std::thread::spawn(move || fs::read(path).unwrap())
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while mount.stats().unpacking == 0 {
        assert!(Instant::now() < deadline, "the unpack never started");
        std::thread::yield_now();
    }
    assert_eq!(fs::read(usr.join("share/fast/small")).unwrap(), b"small");
    assert_eq!(
        mount.stats().unpacking,
        1,
        "'fast' was served while 'slow' was unpacking"
    );
    std::io::Write::write_all(
        &mut fs::OpenOptions::new().write(true).open(&cached).unwrap(),
        &stone,
    )
    .unwrap();
    let read: Vec<Vec<u8>> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    assert!(read[0] == noise(3, 200_000) && read[1] == b"b");
    assert_eq!(
        (mount.stats().unpacks, mount.stats().unpacking),
        (1, 0),
        "two readers, one unpack"
    );

    // Sixteen readers of one staged package share one unpack.
    let readers: Vec<_> = (0..16u64)
        .map(|i| {
            let path = usr.join(format!("share/many/{i}"));
            std::thread::spawn(move || (i, fs::read(path).unwrap()))
        })
        .collect();
    for reader in readers {
        let (i, bytes) = reader.join().unwrap();
        assert!(bytes == noise(10 + i, 50_000), "share/many/{i}");
    }
    assert_eq!(mount.stats().unpacks, 2);
}

#[test]
fn a_package_whose_stone_is_gone_reads_as_eio() {
    let mut root = Root::new();
    let package = root.package("lost", vec![file("share/lost", "lost", 0o644)]);
    let state = root.state(&[package]);
    fs::remove_file(root.store.cached_path(&package)).unwrap();
    let Some(mount) = root.mount(state, false) else {
        return;
    };
    let error = fs::read(mount.mountpoint().join("usr/share/lost")).unwrap_err();
    assert_eq!(error.raw_os_error(), Some(5), "{error}");
    assert_eq!(
        fs::metadata(mount.mountpoint().join("usr/share/lost"))
            .unwrap()
            .len(),
        4
    );
}

#[test]
fn every_write_fails_with_erofs() {
    let mut root = Root::new();
    let files = files_state(&root);
    let Some(mount) = root.mount(files, false) else {
        return;
    };
    let usr = mount.mountpoint().join("usr");
    let tool = usr.join("bin/tool");
    let attempts: Vec<(&str, std::io::Result<()>)> = vec![
        ("create", File::create(usr.join("new")).map(drop)),
        (
            "open for writing",
            fs::OpenOptions::new().write(true).open(&tool).map(drop),
        ),
        (
            "truncate",
            fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&tool)
                .map(drop),
        ),
        ("mkdir", fs::create_dir(usr.join("dir"))),
        ("unlink", fs::remove_file(&tool)),
        ("rmdir", fs::remove_dir(usr.join("share/tools/private"))),
        ("rename", fs::rename(&tool, usr.join("bin/renamed"))),
        (
            "chmod",
            fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o777)),
        ),
        ("symlink", std::os::unix::fs::symlink("x", usr.join("link"))),
        ("link", fs::hard_link(&tool, usr.join("bin/hard"))),
        (
            "mkfifo",
            rustix::fs::mknodat(
                rustix::fs::CWD,
                usr.join("fifo"),
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o644),
                0,
            )
            .map_err(Into::into),
        ),
        (
            "setxattr",
            rustix::fs::lsetxattr(&tool, "user.x", b"1", rustix::fs::XattrFlags::empty())
                .map_err(Into::into),
        ),
        (
            "create excl",
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(usr.join("x"))
                .map(drop),
        ),
    ];
    for (what, result) in attempts {
        let error = result.expect_err(what);
        assert_eq!(error.raw_os_error(), Some(EROFS), "{what}: {error}");
    }
    assert_eq!(fs::read(&tool).unwrap(), b"#!/bin/sh\necho tool\n");
}

#[test]
fn a_directory_of_100000_entries_lists_with_stable_offsets() {
    let mut root = Root::new();
    let names: Vec<String> = (0..100_000).map(|i| format!("f{i:06}")).collect();
    let entries = names
        .iter()
        .map(|n| file(&format!("share/wide/{n}"), "", 0o644))
        .collect();
    let package = root.package("wide", entries);
    root.unpack(&[package]);
    let state = root.state(&[package]);
    let Some(mount) = root.mount(state, false) else {
        return;
    };
    let dir = mount.mountpoint().join("usr/share/wide");
    let listed = raw_listing(&dir, None);
    assert_eq!(listed.len(), 100_002, "100,000 entries, . and ..");
    let files: Vec<&str> = listed
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| n.starts_with('f'))
        .collect();
    assert_eq!(files, names.iter().map(String::as_str).collect::<Vec<_>>());
    // Resuming at any entry's cookie continues right after it, cold cache or warm.
    for at in [0, 1, 2, 777, 50_000, 99_999, 100_000] {
        let (name, cookie) = &listed[at];
        let rest = raw_listing(&dir, Some(*cookie));
        assert_eq!(rest.len(), listed.len() - at - 1, "after {name}");
        assert_eq!(rest.first(), listed.get(at + 1), "after {name}");
    }
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 100_000);
}

#[test]
fn parallel_readers_all_get_their_bytes() {
    let mut root = Root::new();
    let entries: Vec<SourceEntry> = (0..64u64)
        .map(|i| {
            file(
                &format!("share/par/{i}"),
                noise(100 + i, (i as usize * 4099) % 300_000),
                0o644,
            )
        })
        .collect();
    let package = root.package("par", entries);
    root.unpack(&[package]);
    let state = root.state(&[package]);
    for store_reads in [false, true] {
        let Some(mount) = root.mount_with(state, false, store_reads) else {
            return;
        };
        read_in_parallel(&mount.mountpoint().join("usr/share/par"));
    }
}

fn read_in_parallel(dir: &Path) {
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let dir = dir.to_owned();
            std::thread::spawn(move || {
                for k in 0..64u64 {
                    let i = (k * 7 + t * 13) % 64;
                    let mut bytes = Vec::new();
                    File::open(dir.join(i.to_string()))
                        .unwrap()
                        .read_to_end(&mut bytes)
                        .unwrap();
                    assert!(
                        bytes == noise(100 + i, (i as usize * 4099) % 300_000),
                        "file {i}"
                    );
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn conflicts_show_in_the_debug_view_and_nowhere_else() {
    let mut root = Root::new();
    let alpha = root.package(
        "alpha",
        vec![
            file("bin/tool", "alpha\n", 0o755),
            file("share/doc/alpha/x", "x", 0o644),
            SourceEntry::symlink(path("share/link"), "a"),
        ],
    );
    let beta = root.package(
        "beta",
        vec![
            file("bin/tool", "beta tool\n", 0o755),
            SourceEntry::symlink(path("share/link"), "b"),
        ],
    );
    root.unpack(&[alpha, beta]);
    let state = root.state(&[alpha, beta]);
    let conflicts = root.db.read().unwrap().state(state).unwrap().conflicts;
    assert_eq!(conflicts.len(), 2);

    let Some(plain) = root.mount(state, false) else {
        return;
    };
    let top: Vec<_> = fs::read_dir(plain.mountpoint())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(top, ["usr"]);
    assert_eq!(
        fs::metadata(plain.mountpoint().join(".mossfs"))
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    let tool = plain.mountpoint().join("usr/bin/tool");
    assert_eq!(
        fs::read(&tool).unwrap(),
        b"alpha\n",
        "the first package wins"
    );
    let error = rustix::fs::lgetxattr(&tool, "user.mossfs.owner", &mut [0u8; 64]).unwrap_err();
    assert_eq!(error.raw_os_error(), EOPNOTSUPP);
    let error = rustix::fs::llistxattr(&tool, &mut [0u8; 64]).unwrap_err();
    assert_eq!(error.raw_os_error(), EOPNOTSUPP);
    plain.unmount().unwrap();

    let Some(debug) = root.mount(state, true) else {
        return;
    };
    let mnt = debug.mountpoint();
    let top: Vec<_> = fs::read_dir(mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(top, [".mossfs", "usr"]);
    let contenders = mnt.join(".mossfs/conflicts/usr/bin/tool");
    assert_eq!(fs::read(contenders.join("alpha")).unwrap(), b"alpha\n");
    assert_eq!(fs::read(contenders.join("beta")).unwrap(), b"beta tool\n");
    let links = mnt.join(".mossfs/conflicts/usr/share/link");
    assert_eq!(fs::read_link(links.join("alpha")).unwrap(), Path::new("a"));
    assert_eq!(fs::read_link(links.join("beta")).unwrap(), Path::new("b"));
    let owner = |at: &str| -> Result<String, i32> {
        let mut buf = [0u8; 64];
        rustix::fs::lgetxattr(mnt.join(at), "user.mossfs.owner", &mut buf)
            .map(|n| String::from_utf8(buf[..n].to_vec()).unwrap())
            .map_err(|e| e.raw_os_error())
    };
    assert_eq!(owner("usr/bin/tool"), Ok("alpha-1".into()));
    assert_eq!(owner("usr/share/doc/alpha/x"), Ok("alpha-1".into()));
    assert_eq!(
        owner(".mossfs/conflicts/usr/bin/tool/beta"),
        Ok("beta-1".into())
    );
    assert_eq!(
        owner("usr/share"),
        Err(ENODATA),
        "an implied directory has no owner"
    );
    let mut names = [0u8; 64];
    let n = rustix::fs::llistxattr(mnt.join("usr/bin/tool"), &mut names).unwrap();
    assert_eq!(&names[..n], b"user.mossfs.owner\0");
}

#[test]
fn statfs_reports_the_store_file_system_and_the_entry_count() {
    let mut root = Root::new();
    let files = files_state(&root);
    let Some(mount) = root.mount(files, false) else {
        return;
    };
    let mounted = rustix::fs::statvfs(mount.mountpoint()).unwrap();
    let store = rustix::fs::statvfs(root.store.assets_dir()).unwrap();
    assert_eq!(
        (mounted.f_blocks, mounted.f_bsize),
        (store.f_blocks, store.f_bsize)
    );
    assert_eq!(
        mounted.f_files,
        root.entries(files) + 2,
        "the state's entries, the root and usr"
    );
    assert_eq!(mounted.f_namemax, 255);
}

#[test]
fn mounting_refuses_bad_mount_points_and_missing_states() {
    let mut root = Root::new();
    let package = root.package("one", vec![file("one", "1", 0o644)]);
    let state = root.state(&[package]);
    let store = || Store::open(&root.path().join(".moss")).unwrap();
    let missing = MossFs::new(&root.db, store(), StateId(99), FsOptions::default()).err();
    assert!(
        matches!(missing, Some(MountError::NoState { state: StateId(99) })),
        "{missing:?}"
    );
    let full = root.mountpoint();
    fs::write(full.join("x"), "x").unwrap();
    let cases = [
        (root.path().join("nope"), "missing"),
        (full.clone(), "not empty"),
        (full.join("x"), "a file"),
    ];
    for (at, what) in cases {
        let error = fuse::spawn(root.server(state, false), &at)
            .err()
            .expect(what);
        let expected = match what {
            "missing" => matches!(error, MountError::MissingMountPoint { .. }),
            "not empty" => matches!(error, MountError::NotEmpty { .. }),
            _ => matches!(error, MountError::NotADirectory { .. }),
        };
        assert!(expected, "{what}: {error:?}");
    }
    let error = fuse::unmount(&full).unwrap_err();
    assert!(matches!(error, MountError::NotMounted { .. }), "{error:?}");
    let error = fuse::unmount(Path::new("/proc")).unwrap_err();
    assert!(
        matches!(&error, MountError::NotMossfs { fs_type, .. } if fs_type == "proc"),
        "{error:?}"
    );
}
