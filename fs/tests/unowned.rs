//! `blit::unowned` against a real blitted tree (issue 7, defect 5): what a tree on disk
//! holds that its state does not, found without following a symlink, without descending
//! into a directory the state does not have (except to find setuid and setgid files), and
//! without listing the top-level `.stateID` that every blitted tree carries.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink as make_symlink};
use std::sync::atomic::{AtomicBool, Ordering};

use mossfs_fs::blit::{Helpers, Seal, Unowned, unowned, unowned_since};

#[path = "blit/fixture.rs"]
#[allow(dead_code)]
mod fixture;

use fixture::*;

fn stray(path: &str, mode: u32, inside: bool) -> Unowned {
    Unowned {
        path: path.as_bytes().to_vec(),
        mode,
        mount_point: false,
        inside,
    }
}

#[test]
fn defect_5_lists_exactly_what_the_state_does_not_have() {
    let fixture = Fixture::new();
    let outside = tempfile::tempdir().unwrap();
    let entries = vec![
        file("bin/tool", 0o755, (0, 0), b"tool"),
        file("share/doc/readme", 0o644, (0, 0), b"readme"),
        symlink("lib64", "lib", (0, 0)),
        dir("lib", 0o755, (0, 0)),
        // A symlink out of the tree: the walk must never follow it.
        symlink("share/out", outside.path().to_str().unwrap(), (0, 0)),
    ];
    fixture.add_assets(&[b"tool".to_vec(), b"readme".to_vec()]);
    let root = fixture.tree(&entries);
    let usr = fixture.staging();
    fixture.blit(root, &usr).unwrap();
    fs::write(usr.join(".stateID"), "1").unwrap();
    fs::write(outside.path().join("not-ours"), "beyond the symlink").unwrap();
    let q = fixture.db.read().unwrap();
    assert_eq!(unowned(&q, root, &usr).unwrap(), []);

    fs::write(usr.join("bin/evil"), "evil").unwrap();
    fs::set_permissions(usr.join("bin/evil"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::create_dir_all(usr.join("share/doc/stray/deeper")).unwrap();
    fs::write(usr.join("share/doc/stray/plain"), "plain").unwrap();
    fs::write(usr.join("share/doc/stray/deeper/sgid"), "sgid").unwrap();
    fs::set_permissions(
        usr.join("share/doc/stray/deeper/sgid"),
        fs::Permissions::from_mode(0o2711),
    )
    .unwrap();
    make_symlink("/", usr.join("lib/root-link")).unwrap();
    // A name deeper than the top is not the state marker.
    fs::write(usr.join("share/.stateID"), "9").unwrap();

    let found = unowned(&q, root, &usr).unwrap();
    assert_eq!(
        found,
        [
            stray("bin/evil", 0o104755, false),
            stray("lib/root-link", 0o120777, false),
            stray("share/.stateID", 0o100644, false),
            stray("share/doc/stray", 0o040755, false),
            stray("share/doc/stray/deeper/sgid", 0o102711, true),
        ]
    );
    assert!(found[0].is_setid() && found[4].is_setid() && !found[1].is_setid());
}

#[test]
fn defect_5_a_type_mismatch_is_damage_not_an_unowned_path() {
    let fixture = Fixture::new();
    let entries = vec![
        file("share/a/f", 0o644, (0, 0), b"f"),
        file("share/b", 0o644, (0, 0), b"b"),
    ];
    fixture.add_assets(&[b"f".to_vec(), b"b".to_vec()]);
    let root = fixture.tree(&entries);
    let usr = fixture.staging();
    fixture.blit(root, &usr).unwrap();
    // share/a becomes a symlink to a directory holding extra files; share/b a directory.
    fs::remove_dir_all(usr.join("share/a")).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    fs::write(elsewhere.path().join("extra"), "x").unwrap();
    make_symlink(elsewhere.path(), usr.join("share/a")).unwrap();
    fs::remove_file(usr.join("share/b")).unwrap();
    fs::create_dir(usr.join("share/b")).unwrap();
    let q = fixture.db.read().unwrap();
    assert_eq!(unowned(&q, root, &usr).unwrap(), []);
}

/// The ctime of `path`, in nanoseconds since the epoch.
fn ctime(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::symlink_metadata(path).unwrap();
    meta.ctime() as u64 * 1_000_000_000 + meta.ctime_nsec() as u64
}

/// A seal taken once the coarse clock has moved into a later second than every ctime in
/// `paths` (on a file system with whole-second ctimes they are compared to the second), as for a tree that a
/// commit finished a while before anyone touched it. Waits at most a second, for the clock.
fn seal_after(paths: &[&std::path::Path]) -> Seal {
    let last = paths.iter().map(|p| ctime(p)).max().unwrap() / 1_000_000_000;
    loop {
        let seal = Seal::now();
        if seal.0 / 1_000_000_000 > last {
            return seal;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn issue_13_a_sealed_tree_is_listed_only_where_it_changed_since_its_seal() {
    let fixture = Fixture::new();
    let entries = vec![
        file("bin/tool", 0o755, (0, 0), b"tool"),
        file("share/a/b/c/deep", 0o644, (0, 0), b"deep"),
        file("share/x/f", 0o644, (0, 0), b"f"),
        dir("lib", 0o755, (0, 0)),
    ];
    fixture.add_assets(&[b"tool".to_vec(), b"deep".to_vec(), b"f".to_vec()]);
    let root = fixture.tree(&entries);
    let usr = fixture.staging();
    fixture.blit(root, &usr).unwrap();
    fs::write(usr.join(".stateID"), "1").unwrap();
    // Written before the seal, as if by the blit: a sealed walk trusts it; that trust is
    // what lets it skip listing every directory.
    fs::write(usr.join("share/x/early"), "early").unwrap();
    let seal = seal_after(&[&usr.join("share/x"), &usr]);
    let q = fixture.db.read().unwrap();
    assert_eq!(
        unowned_since(&q, root, &usr, seal, &Helpers::default()).unwrap(),
        []
    );
    assert_eq!(
        unowned(&q, root, &usr).unwrap(),
        [stray("share/x/early", 0o100644, false)]
    );

    // After the seal, as into a live /usr or an archive: found at any depth, below
    // directories that did not change, and in directories no package owns.
    fs::write(usr.join("share/a/b/c/planted"), "p").unwrap();
    fs::set_permissions(
        usr.join("share/a/b/c/planted"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    fs::write(usr.join("lib/planted"), "p").unwrap();
    fs::create_dir_all(usr.join("top/inner")).unwrap();
    fs::write(usr.join("top/inner/sgid"), "s").unwrap();
    fs::set_permissions(
        usr.join("top/inner/sgid"),
        fs::Permissions::from_mode(0o2755),
    )
    .unwrap();
    // A changed mode is no new name: nothing to find.
    fs::set_permissions(usr.join("share/a"), fs::Permissions::from_mode(0o700)).unwrap();
    let after = [
        stray("lib/planted", 0o100644, false),
        stray("share/a/b/c/planted", 0o104755, false),
        stray("top", 0o040755, false),
        stray("top/inner/sgid", 0o102755, true),
    ];
    assert_eq!(
        unowned_since(&q, root, &usr, seal, &Helpers::default()).unwrap(),
        after
    );

    // A directory replaced by another of the same name, holding a planted file: its
    // parent changed, so it is listed, and so is the newcomer.
    fs::rename(usr.join("share/a/b"), usr.join("b-moved")).unwrap();
    fs::create_dir_all(usr.join("share/a/b/c")).unwrap();
    fs::write(usr.join("share/a/b/c/swapped-in"), "s").unwrap();
    let found = unowned_since(&q, root, &usr, seal, &Helpers::default()).unwrap();
    assert!(
        found.contains(&stray("b-moved", 0o040755, false))
            && found.contains(&stray("share/a/b/c/swapped-in", 0o100644, false)),
        "{found:?}"
    );
    assert_eq!(found.len(), 6, "{found:?}");

    // A wall clock now behind the seal proves nothing: everything is listed.
    let future = Seal(u64::MAX);
    assert_eq!(
        unowned_since(&q, root, &usr, future, &Helpers::default()).unwrap(),
        unowned(&q, root, &usr).unwrap()
    );
}

#[test]
fn issue_13_a_helping_thread_finds_the_same_as_the_check_alone() {
    let fixture = Fixture::new();
    // Wide and deep enough that the check queues hundreds of directories to hand out.
    let mut entries = Vec::new();
    for a in 0..40 {
        for b in 0..6 {
            entries.push(file(
                &format!("share/d{a}/e{b}/f/leaf"),
                0o644,
                (0, 0),
                b"x",
            ));
        }
    }
    fixture.add_assets(&[b"x".to_vec()]);
    let root = fixture.tree(&entries);
    let usr = fixture.staging();
    fixture.blit(root, &usr).unwrap();
    fs::write(usr.join(".stateID"), "1").unwrap();
    let seal = seal_after(&[&usr]);
    for (a, b) in [(0, 0), (17, 3), (39, 5)] {
        fs::write(usr.join(format!("share/d{a}/e{b}/f/planted")), "p").unwrap();
    }
    fs::create_dir(usr.join("share/d20/stray")).unwrap();
    let q = fixture.db.read().unwrap();
    let alone = unowned(&q, root, &usr).unwrap();
    assert_eq!(alone.len(), 4, "{alone:?}");

    let helpers = Helpers::default();
    let done = AtomicBool::new(false);
    let found = std::thread::scope(|scope| {
        scope.spawn(|| {
            let q = fixture.db.read().unwrap();
            while !done.load(Ordering::Relaxed) {
                helpers.help(&q);
            }
        });
        let found: Vec<_> = (0..20)
            .map(|_| unowned_since(&q, root, &usr, seal, &helpers))
            .collect();
        done.store(true, Ordering::Relaxed);
        found
    });
    for found in found {
        assert_eq!(found.unwrap(), alone);
    }
}

#[test]
fn issue_13_a_seal_is_compared_to_the_millisecond_where_ctimes_keep_it() {
    let fixture = Fixture::new();
    let entries = vec![
        file("share/a/f", 0o644, (0, 0), b"f"),
        file("share/b/g", 0o644, (0, 0), b"g"),
    ];
    fixture.add_assets(&[b"f".to_vec(), b"g".to_vec()]);
    let root = fixture.tree(&entries);
    let usr = fixture.staging();
    fixture.blit(root, &usr).unwrap();
    fs::write(usr.join(".stateID"), "1").unwrap();
    fs::write(usr.join("share/a/early"), "e").unwrap();
    if ctime(&usr.join("share/a")).is_multiple_of(1_000_000_000) {
        eprintln!("skipped: this file system keeps whole-second ctimes");
        return;
    }
    // A few ticks of the coarse clock after the last change, and usually in its second.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let seal = Seal::now();
    std::thread::sleep(std::time::Duration::from_millis(5));
    fs::write(usr.join("share/b/planted"), "p").unwrap();
    let q = fixture.db.read().unwrap();
    // What was written before the seal is trusted; what came after, in the same second
    // or not, is found.
    assert_eq!(
        unowned_since(&q, root, &usr, seal, &Helpers::default()).unwrap(),
        [stray("share/b/planted", 0o100644, false)]
    );
    assert_eq!(
        unowned(&q, root, &usr).unwrap(),
        [
            stray("share/a/early", 0o100644, false),
            stray("share/b/planted", 0o100644, false)
        ]
    );
}
