//! Issue 7, defects 1 to 4: what mossfs does to trees it did not make, and to the trees it
//! keeps. Each test is named after its defect and failed on the code before its fix.
//!
//! - Defect 1: a commit refuses while a file system is mounted below `ROOT/usr`, every tree
//!   removal stays on its own file system, and a state is forgotten only once its tree is
//!   gone (orphans are cleaned by the next `state prune` or `gc`).
//! - Defect 2: a `usr` that no mossfs state made is never swapped out unless the user says
//!   `--take-over-usr`, and a dry run says what would happen.
//! - Defect 3: `.moss`, the store, the cache and the archived trees are `0700`, so an old
//!   setuid binary is not runnable by other users.
//! - Defect 4: the root links follow what the state ships (`lib64 -> usr/lib64`), and a
//!   link or directory the user made is reported, never silently rewritten.
//!
//! Every root is a fresh temporary directory; the mounts are real tmpfs mounts, made and
//! removed by the tests. A test that cannot mount fails under `CI=true` and is skipped,
//! saying why, elsewhere.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use mossfs_integration::corpus::SourceEntry;

/// `nobody` on every distribution this runs on.
const NOBODY: u32 = 65534;

/// Runs `program` as `nobody` (its supplementary groups are the test's, root's: `0700`
/// gives a group nothing either): its stdout, or the error `execve` gave.
fn run_as_nobody(program: &Path) -> Result<String, std::io::Error> {
    let output = Command::new(program)
        .uid(NOBODY)
        .gid(NOBODY)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()?;
    assert!(output.status.success(), "{program:?}: {output:?}");
    Ok(text(&output.stdout))
}

/// Gives `dir` and every parent below `/tmp` mode `0755`: the test's temporary directory
/// is `0700`, which alone would keep `nobody` out of everything in it.
fn open_to_others(root: &TestRoot) {
    let top = root.path();
    for dir in [top.parent().expect("the temporary directory"), &top] {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .mode()
        & 0o7777
}

/// A package whose one file is a setuid-root shell script printing `says`.
fn setuid_tool(root: &TestRoot, version: &str, says: &str) -> PathBuf {
    root.stone(
        &meta("tool", version),
        vec![SourceEntry::bytes(
            path("bin/tool"),
            format!("#!/bin/sh\necho {says}\n").into_bytes(),
            0o4755,
        )],
    )
}

/// Every store file of the asset with these bytes (the canonical one and its variants).
fn asset_files(root: &TestRoot, stone: &Path) -> Vec<PathBuf> {
    let read = read_stone(stone);
    let hash = *read.assets.keys().next().expect("one asset");
    let canonical = root.asset_file(hash);
    let shard = canonical.parent().expect("a shard folder");
    let name = hash.to_string();
    let mut found: Vec<PathBuf> = fs::read_dir(shard)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&name))
        })
        .collect();
    found.sort();
    found
}

#[test]
fn defect_03_an_old_setuid_binary_is_not_runnable_by_other_users() {
    let root = TestRoot::new();
    open_to_others(&root);
    let old = setuid_tool(&root, "1", "old");
    let new = setuid_tool(&root, "2", "new");
    root.install(&[&old]);
    root.install(&[&new]);

    // The live one is runnable by anyone: the path itself is open to `nobody`.
    let live = root.usr().join("bin/tool");
    assert_eq!(mode_of(&live), 0o4755);
    assert_eq!(run_as_nobody(&live).unwrap(), "new\n");

    // The old one is still on disk, in the archived tree of state 1 and in the store...
    let archived = root.moss().join("root/1/usr/bin/tool");
    assert_eq!(mode_of(&archived), 0o4755);
    let assets = asset_files(&root, &old);
    assert!(!assets.is_empty(), "the old asset is kept for rollback");
    // ... but nobody else can reach it.
    for old in assets.iter().chain([&archived]) {
        let err = run_as_nobody(old).expect_err("the old setuid binary ran as nobody");
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::PermissionDenied,
            "{}",
            old.display()
        );
    }
    for dir in ["", "assets", "cache", "root"] {
        assert_eq!(mode_of(&root.moss().join(dir)), 0o700, ".moss/{dir}");
    }
}

#[test]
fn defect_03_a_root_made_before_the_rule_is_fixed_when_a_writer_opens_it() {
    let root = TestRoot::new();
    let tool = setuid_tool(&root, "1", "one");
    root.install(&[&tool]);
    // As an earlier mossfs left it.
    for dir in ["", "assets", "cache", "root"] {
        fs::set_permissions(root.moss().join(dir), fs::Permissions::from_mode(0o755)).unwrap();
    }
    // A reader changes nothing.
    root.ok(&["state", "list"]);
    assert_eq!(mode_of(&root.moss()), 0o755);
    // A writer that has nothing to do still closes the folders.
    root.ok(&["gc"]);
    for dir in ["", "assets", "cache", "root"] {
        assert_eq!(mode_of(&root.moss().join(dir)), 0o700, ".moss/{dir}");
    }
    // And the system itself is as it was.
    assert_eq!(root.state_id_file().as_deref(), Some("1"));
    assert_eq!(
        fs::read(root.path().join("bin/tool")).unwrap(),
        b"#!/bin/sh\necho one\n"
    );
}

/// A package that ships the dynamic loader below `usr/lib64`, as x86_64 distributions
/// that keep `lib64` apart do.
fn loader(root: &TestRoot) -> PathBuf {
    root.stone(
        &meta("loader", "1"),
        vec![file("lib64/ld-linux-x86-64.so.2", "the loader")],
    )
}

fn link_text(root: &TestRoot, name: &str) -> PathBuf {
    fs::read_link(root.path().join(name)).unwrap_or_else(|e| panic!("ROOT/{name}: {e}"))
}

#[test]
fn defect_04_lib64_follows_what_the_state_ships() {
    let root = TestRoot::new();
    let base = root.stone(&meta("base", "1"), vec![file("lib/libc.so.6", "libc")]);
    root.install(&[&base]);
    assert_eq!(link_text(&root, "lib64"), Path::new("usr/lib"));

    // The state ships usr/lib64: /lib64/ld-linux-x86-64.so.2 must resolve.
    let loader = loader(&root);
    let output = root.run(&["install".as_ref(), loader.as_os_str()]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(link_text(&root, "lib64"), Path::new("usr/lib64"));
    assert_eq!(
        fs::read(root.path().join("lib64/ld-linux-x86-64.so.2")).unwrap(),
        b"the loader"
    );
    // mossfs made the old link, and says that it moved it.
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("note: root link lib64 now points to usr/lib64 (it pointed to usr/lib)"),
        "{stderr}"
    );
    assert!(!stderr.contains("warning"), "{stderr}");

    // Back without it, back to usr/lib; and rolling back follows too.
    root.ok(&["remove", "loader"]);
    assert_eq!(link_text(&root, "lib64"), Path::new("usr/lib"));
    root.ok(&["state", "activate", "2"]);
    assert_eq!(link_text(&root, "lib64"), Path::new("usr/lib64"));
    assert!(root.path().join("lib64/ld-linux-x86-64.so.2").is_file());
}

#[test]
fn defect_04_a_link_or_directory_the_user_made_is_reported_not_rewritten() {
    let root = TestRoot::new();
    let top = root.path();
    // What an admin set up before mossfs came: the usual lib64 link, a link of their own,
    // and a real sbin directory with a file in it.
    std::os::unix::fs::symlink("usr/lib64", top.join("lib64")).unwrap();
    std::os::unix::fs::symlink("/opt/mine/lib", top.join("lib")).unwrap();
    fs::create_dir(top.join("sbin")).unwrap();
    fs::write(top.join("sbin/admin-tool"), b"mine").unwrap();

    let loader = loader(&root);
    let output = root.run(&["install".as_ref(), loader.as_os_str()]);
    assert!(output.status.success(), "{output:?}");
    let stderr = text(&output.stderr);

    // lib64 -> usr/lib64 is what this state needs: kept, silently, and it resolves.
    assert_eq!(link_text(&root, "lib64"), Path::new("usr/lib64"));
    assert_eq!(
        fs::read(top.join("lib64/ld-linux-x86-64.so.2")).unwrap(),
        b"the loader"
    );
    assert!(!stderr.contains("lib64"), "{stderr}");
    // The admin's own link stays, and the warning names it.
    assert_eq!(link_text(&root, "lib"), Path::new("/opt/mine/lib"));
    assert!(
        stderr.contains(
            "warning: root link lib points to /opt/mine/lib, not to usr/lib as mossfs would make it; left as it is"
        ),
        "{stderr}"
    );
    // The real directory stays with its file, and the warning says so.
    assert_eq!(fs::read(top.join("sbin/admin-tool")).unwrap(), b"mine");
    assert!(
        stderr.contains(
            "warning: sbin at the top of the root is a real directory, not a link to usr/sbin"
        ),
        "{stderr}"
    );
    // bin was free: mossfs made it.
    assert_eq!(link_text(&root, "bin"), Path::new("usr/bin"));
    assert_eq!(root.state_id_file().as_deref(), Some("1"));
}

/// A mount made by a test, detached on drop.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

/// `None`, with the reason printed, where mounting is not allowed; a failure under
/// `CI=true`, where it must be.
fn mounted(at: &Path, result: rustix::io::Result<()>) -> Option<Mounted> {
    match result {
        Ok(()) => Some(Mounted(at.to_owned())),
        // Only a lack of privilege is a reason to skip; anything else is the test's bug.
        Err(e)
            if e != rustix::io::Errno::PERM || std::env::var("CI").is_ok_and(|v| v == "true") =>
        {
            panic!(
                "cannot mount at {} ({e}); CI must run this test",
                at.display()
            )
        }
        Err(e) => {
            eprintln!(
                "skipped: cannot mount at {} ({e}); run as root",
                at.display()
            );
            None
        }
    }
}

/// A fresh tmpfs at `at`, holding `f` = "precious".
fn tmpfs_with_a_file(at: &Path) -> Option<Mounted> {
    let guard = mounted(
        at,
        rustix::mount::mount(
            "mossfs-test",
            at,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            c"",
        ),
    )?;
    fs::write(at.join("f"), b"precious").unwrap();
    Some(guard)
}

/// A bind mount of `from` at `at`: the same file system, another mount.
fn bind(from: &Path, at: &Path) -> Option<Mounted> {
    mounted(at, rustix::mount::mount_bind(from, at))
}

/// Ships two empty directories for the tests to mount on, as the issue's `odd` does.
fn odd(root: &TestRoot) -> PathBuf {
    root.stone(
        &meta("odd", "1"),
        vec![
            file("share/odd/readme", "odd"),
            dir("share/odd/sticky", 0o755),
            dir("share/odd/bound", 0o755),
        ],
    )
}

fn small(root: &TestRoot) -> PathBuf {
    root.stone(&meta("small", "1"), vec![file("bin/small", "small")])
}

#[test]
fn defect_01_commit_refuses_mount_below_usr() {
    let root = TestRoot::new();
    let odd = odd(&root);
    let small = small(&root);
    root.install(&[&odd]);
    let sticky = root.usr().join("share/odd/sticky");
    let Some(_tmpfs) = tmpfs_with_a_file(&sticky) else {
        return;
    };
    let system = root.system();
    let states = root.states();

    let err = root.fail(&["install".as_ref(), small.as_os_str()]);
    let shown = fs::canonicalize(&sticky).unwrap();
    assert!(
        err.contains(&format!(
            "{} is mounted below {}",
            shown.display(),
            root.usr().display()
        )) && err.contains(&format!("unmount it (umount {})", shown.display())),
        "{err}"
    );
    // The same for every command that would commit; a staged candidate writes no tree.
    let err = root.fail(&["remove", "odd"]);
    assert!(err.contains("is mounted below"), "{err}");
    let staged = root.ok(&["install".as_ref(), "--stage".as_ref(), small.as_os_str()]);
    assert!(staged.starts_with("staged state 2 "), "{staged}");
    let err = root.fail(&["commit", "2"]);
    assert!(err.contains("is mounted below"), "{err}");
    root.ok(&["state", "remove", "2"]);

    // Nothing changed: the live tree, the mounted file and the states.
    assert_same(&system, &root.system(), "after the refusals");
    assert_eq!(fs::read(sticky.join("f")).unwrap(), b"precious");
    assert_eq!(root.states(), states);
    assert_eq!(root.state_id_file().as_deref(), Some("1"));

    drop(_tmpfs);
    root.install(&[&small]);
    assert_eq!(root.state_id_file().as_deref(), Some("3"));
}

#[test]
fn defect_01_prune_stays_on_its_file_system() {
    let root = TestRoot::new();
    let odd = odd(&root);
    let small = small(&root);
    root.install(&[&odd]);
    root.install(&[&small]);
    // State 1's tree, archived, with a file system mounted inside it: what a commit made
    // before commits refused mounts below usr, or an admin's bind mount.
    let archived = root.moss().join("root/1/usr/share/odd");
    let outside = root.scratch("outside");
    fs::write(outside.join("g"), b"kept").unwrap();
    let Some(tmpfs) = tmpfs_with_a_file(&archived.join("sticky")) else {
        return;
    };
    let Some(bound) = bind(&outside, &archived.join("bound")) else {
        return;
    };

    // A commit would build on that archived tree: refused, like a mount below usr.
    let err = root.fail(&["remove", "small"]);
    assert!(
        err.contains(&format!(
            "is mounted below {}; a commit may rewrite or remove the archived tree it is in; unmount it",
            root.moss().join("root").display()
        )),
        "{err}"
    );

    let out = root.ok(&["state", "prune", "--keep", "0"]);
    assert!(
        out.contains("kept state 1: ") && out.contains("is mounted inside its archived tree"),
        "{out}"
    );
    assert!(!out.contains("removed state"), "{out}");
    assert_eq!(fs::read(archived.join("sticky/f")).unwrap(), b"precious");
    assert_eq!(fs::read(outside.join("g")).unwrap(), b"kept");
    assert_eq!(
        statuses(&root.states()),
        [(1, "committed"), (2, "active")],
        "state 1 is kept with its tree"
    );
    let err = root.fail(&["state", "remove", "1"]);
    assert!(
        err.contains("cannot remove state 1: ")
            && err.contains("is mounted inside its archived tree; unmount it"),
        "{err}"
    );
    assert!(archived.join("readme").is_file());

    // The bind mount is the same file system (the same device): only the mount tells.
    drop(tmpfs);
    let out = root.ok(&["state", "prune", "--keep", "0"]);
    assert!(out.contains("kept state 1: "), "{out}");
    assert_eq!(fs::read(outside.join("g")).unwrap(), b"kept");

    drop(bound);
    let out = root.ok(&["state", "prune", "--keep", "0"]);
    assert!(out.contains("removed state 1"), "{out}");
    assert_eq!(statuses(&root.states()), [(2, "active")]);
    assert!(!root.moss().join("root/1").exists());
    assert_eq!(fs::read(outside.join("g")).unwrap(), b"kept");
}

#[test]
fn defect_01_tree_removal_stays_on_its_file_system() {
    // Below the commands' own checks, the removal itself never enters another mount.
    let root = TestRoot::new();
    let tree = root.scratch("tree");
    fs::create_dir_all(tree.join("a/mnt")).unwrap();
    fs::create_dir_all(tree.join("b/bound")).unwrap();
    fs::write(tree.join("a/file"), b"mine").unwrap();
    let outside = root.scratch("outside");
    fs::write(outside.join("g"), b"kept").unwrap();
    let Some(_tmpfs) = tmpfs_with_a_file(&tree.join("a/mnt")) else {
        return;
    };
    let Some(bound) = bind(&outside, &tree.join("b/bound")) else {
        return;
    };

    let err = mossfs_fs::blit::remove_tree(&tree).expect_err("a tree with mounts in it");
    assert!(
        err.to_string()
            .contains(" is a mount point inside a tree being removed"),
        "{err}"
    );
    assert_eq!(fs::read(tree.join("a/mnt/f")).unwrap(), b"precious");
    assert_eq!(fs::read(outside.join("g")).unwrap(), b"kept");

    let _tmpfs = _tmpfs;
    drop(bound);
    let err = mossfs_fs::blit::remove_tree(&tree).expect_err("the tmpfs is still there");
    assert!(err.to_string().contains("a/mnt is a mount point"), "{err}");
    assert_eq!(fs::read(tree.join("a/mnt/f")).unwrap(), b"precious");
    assert_eq!(fs::read(outside.join("g")).unwrap(), b"kept");
}

#[test]
fn defect_01_an_orphaned_tree_is_removed_by_prune_and_gc() {
    let root = TestRoot::new();
    for (name, at) in [("a", "bin/a"), ("b", "bin/b"), ("c", "bin/c")] {
        let stone = root.stone(&meta(name, "1"), vec![file(at, name)]);
        root.install(&[&stone]);
    }
    let trees = root.moss().join("root");
    // Each commit builds on the newest archived tree, so one is left: state 2's.
    assert!(trees.join("2/usr").is_dir());
    // Trees whose states an earlier failure forgot, and a taken-over usr, which no
    // cleanup ever touches.
    fs::rename(trees.join("2"), trees.join("11")).unwrap();
    fs::create_dir_all(trees.join("unmanaged-1/usr/bin")).unwrap();
    fs::write(trees.join("unmanaged-1/usr/bin/sh"), b"theirs").unwrap();

    let out = root.ok(&["state", "prune", "--keep", "5"]);
    assert!(
        out.contains(&format!(
            "removed the orphaned tree {}: no state records it",
            trees.join("11").display()
        )),
        "{out}"
    );
    assert!(!trees.join("11").exists());
    assert_eq!(
        statuses(&root.states()),
        [(1, "committed"), (2, "committed"), (3, "active")]
    );

    // One more, as if the removal of a state 12 was killed before its tree was gone.
    fs::create_dir_all(trees.join("12/usr/bin")).unwrap();
    fs::write(trees.join("12/usr/bin/left"), b"left").unwrap();
    fs::set_permissions(trees.join("12/usr/bin"), fs::Permissions::from_mode(0o555)).unwrap();
    let out = root.ok(&["gc"]);
    assert!(out.contains("removed the orphaned tree "), "{out}");
    assert!(!trees.join("12").exists());
    assert_eq!(
        fs::read(trees.join("unmanaged-1/usr/bin/sh")).unwrap(),
        b"theirs"
    );
    assert_eq!(root.state_id_file().as_deref(), Some("3"));
    let out = root.ok(&["state", "prune", "--keep", "5"]);
    assert_eq!(out, "nothing to prune\n");
}

/// A `usr` that some other system put there: what every `--root /` finds on a normal host.
fn foreign_usr(root: &TestRoot) {
    fs::create_dir_all(root.usr().join("bin")).unwrap();
    fs::write(root.usr().join("bin/bash"), b"sys").unwrap();
}

/// The stones in the cache, which a refused install must not have added.
fn cached_stones(root: &TestRoot) -> Vec<PathBuf> {
    fs::read_dir(root.moss().join("cache"))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "stone"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn defect_02_an_unmanaged_usr_is_not_taken_over_without_asking() {
    let root = TestRoot::new();
    let small = small(&root);
    foreign_usr(&root);
    let before = snapshot(&root.usr());
    let kept = root.moss().join("root/unmanaged-1/usr");

    let err = root.fail(&["install".as_ref(), small.as_os_str()]);
    assert!(
        err.contains(&format!(
            "{} is not managed by mossfs (it has no .stateID); a commit would replace it with a usr holding only the state's packages",
            root.usr().display()
        )) && err.contains("run the command again with --take-over-usr")
            && err.contains(&kept.display().to_string()),
        "{err}"
    );
    assert_same(&before, &snapshot(&root.usr()), "after the refusal");
    assert_eq!(root.states(), Vec::new(), "no state, not even a candidate");
    assert_eq!(cached_stones(&root), Vec::<PathBuf>::new());

    // A dry run says the same, and with the flag says what it would do.
    let dry = root.fail(&["install".as_ref(), "--dry-run".as_ref(), small.as_os_str()]);
    assert_eq!(dry, err);
    let dry = root.ok(&[
        "install".as_ref(),
        "--dry-run".as_ref(),
        "--take-over-usr".as_ref(),
        small.as_os_str(),
    ]);
    assert!(
        dry.starts_with(&format!(
            "would take over {} (it has no .stateID), keeping its tree in {}\n",
            root.usr().display(),
            kept.display()
        )),
        "{dry}"
    );
    assert_same(&before, &snapshot(&root.usr()), "after the dry runs");
    assert!(!kept.exists());

    // Asked for: the old tree is kept whole, and nothing removes it later.
    let out = root.ok(&[
        "install".as_ref(),
        "--take-over-usr".as_ref(),
        small.as_os_str(),
    ]);
    assert!(
        out.contains(&format!(
            "took over the usr that mossfs did not make: it is kept in {}",
            kept.display()
        )),
        "{out}"
    );
    assert_tree_matches(&root.usr(), &[&small]);
    assert_same(&before, &snapshot(&kept), "the kept tree");
    let odd = odd(&root);
    root.install(&[&odd]);
    root.ok(&["state", "prune", "--keep", "0"]);
    root.ok(&["gc"]);
    assert_same(
        &before,
        &snapshot(&kept),
        "the kept tree after prune and gc",
    );

    // Put back by hand as README.md says: mossfs does not manage that usr again until
    // asked to.
    let mossfs_usr = root.path().join("usr.mossfs");
    fs::rename(root.usr(), &mossfs_usr).unwrap();
    fs::rename(&kept, root.usr()).unwrap();
    let err = root.fail(&["remove", "odd"]);
    assert!(
        err.contains("is not managed by mossfs (it has no .stateID)"),
        "{err}"
    );
    assert!(err.contains("unmanaged-1/usr"), "{err}");
    let err = root.fail(&["state", "activate", "1"]);
    assert!(err.contains("is not managed by mossfs"), "{err}");
    assert_same(&before, &snapshot(&root.usr()), "the usr put back");
}

#[test]
fn defect_02_a_foreign_state_id_is_not_ours_and_an_empty_usr_is_nobodys() {
    // Upstream moss writes usr/.stateID too; its numbers mean nothing to this database.
    let root = TestRoot::new();
    let small = small(&root);
    foreign_usr(&root);
    fs::write(root.usr().join(".stateID"), b"5").unwrap();
    let err = root.fail(&["install".as_ref(), small.as_os_str()]);
    assert!(
        err.contains("is not managed by mossfs (its .stateID names a state this root's database does not have)"),
        "{err}"
    );
    assert_eq!(fs::read(root.usr().join("bin/bash")).unwrap(), b"sys");

    // An empty usr holds nothing to lose: replaced without a flag, and not kept.
    let empty = TestRoot::new();
    let small = empty.stone(&meta("small", "1"), vec![file("bin/small", "small")]);
    fs::create_dir(empty.usr()).unwrap();
    let out = empty.install(&[&small]);
    assert!(!out.contains("took over"), "{out}");
    assert_tree_matches(&empty.usr(), &[&small]);
    let trees: Vec<_> = fs::read_dir(empty.moss().join("root"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| name != "staging")
        .collect();
    assert_eq!(trees, Vec::<std::ffi::OsString>::new());
}

#[test]
fn defect_02_a_take_over_killed_after_the_exchange_keeps_the_old_usr() {
    let root = TestRoot::new();
    let small = small(&root);
    foreign_usr(&root);
    let before = snapshot(&root.usr());
    let status = root
        .command(&[
            "install".as_ref(),
            "--take-over-usr".as_ref(),
            small.as_os_str(),
        ])
        .env("MOSSFS_FAULT", "exchange")
        .status()
        .unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "killed after the exchange"
    );
    // The next writer finishes the commit, and keeps the old usr instead of removing it
    // as an unfinished staging tree.
    let output = root.run(&["gc"]);
    assert!(output.status.success(), "{output:?}");
    let kept = root.moss().join("root/unmanaged-1/usr");
    assert!(
        text(&output.stderr).contains(&format!(
            "recovered: kept the usr that mossfs took over at {}",
            kept.display()
        )),
        "{output:?}"
    );
    assert_same(&before, &snapshot(&kept), "the kept tree");
    assert_tree_matches(&root.usr(), &[&small]);
    assert_eq!(statuses(&root.states()), [(1, "active")]);
}
