//! Issue 7, the defects that `verify` and the readers of a stone own, each tested on a real
//! root with the real binary: 5 (paths no package owns), 6 (repair of archived trees),
//! 7 (the reserved `usr/.stateID`), 11 (one flipped header byte), 13 (package names),
//! 16 (the owner of a 0755 directory), and the first part of 14 (`verify` speaks in
//! sentences). Every test is named after its defect.
//!
//! A refusal must leave the root as it was: the tree under `usr`, the state list and
//! `.stateID` are compared before and after.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::forge::{PAYLOAD, RawStone, honest, regular, symlink, with_layout, write_forged};
use common::{TestRoot, assert_same, assert_tree_matches, error_line, file, meta, text};
use mossfs_format::{AssetHash, PayloadKind};
use mossfs_integration::mossfs;

/// A refusal that must change nothing: the system and the state list are as before.
fn refused_unchanged(root: &TestRoot, args: &[&std::ffi::OsStr]) -> String {
    let system = root.system();
    let states = root.states();
    let line = root.fail(args);
    assert_same(&system, &root.system(), &line);
    assert_eq!(root.states(), states, "{line}");
    assert!(!root.moss().join("root/staging/usr").exists(), "{line}");
    line
}

fn install_args(stone: &Path) -> Vec<&std::ffi::OsStr> {
    vec!["install".as_ref(), stone.as_os_str()]
}

/// `mossfs ARGS` outside any root; must fail with one error line, which is returned.
fn fails(args: &[&std::ffi::OsStr]) -> String {
    let output = mossfs().args(args).output().expect("mossfs runs");
    error_line(&output)
}

fn runs(command: &mut Command) -> String {
    let output = command.output().expect("mossfs runs");
    assert!(
        output.status.success(),
        "{command:?}: {}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

// ---------------------------------------------------------------------------------------
// Defect 7: a package may not ship the reserved usr/.stateID.
// ---------------------------------------------------------------------------------------

#[test]
fn defect_7_a_package_may_not_ship_the_state_marker() {
    let root = TestRoot::new();
    let base = root.stone(&meta("base", "1"), vec![file("share/base/a", "a")]);
    root.install(&[&base]);
    let hash = AssetHash::of(PAYLOAD);
    let stone = with_layout(
        &root,
        "marker",
        &[regular(hash, "share/honest"), regular(hash, ".stateID")],
    );
    let reason = "path `.stateID` is refused: usr/.stateID is reserved for the id of the \
                  state a tree belongs to; no package may ship it";

    let line = refused_unchanged(&root, &install_args(&stone));
    assert_eq!(
        line,
        format!(
            "error: cannot read {}: package marker: layout record 1: {reason}",
            stone.display()
        )
    );
    assert_eq!(root.state_id_file().as_deref(), Some("1"));
    // A staged install is refused the same way, and so are the other readers.
    let line = refused_unchanged(
        &root,
        &["install".as_ref(), "--stage".as_ref(), stone.as_os_str()],
    );
    assert!(line.ends_with(reason), "{line}");
    let line = fails(&["inspect".as_ref(), "--check".as_ref(), stone.as_os_str()]);
    assert!(line.contains(reason), "{line}");
    let out = root.scratch("extracted");
    let line = fails(&[
        "extract".as_ref(),
        stone.as_os_str(),
        "-o".as_ref(),
        out.join("x").as_os_str(),
    ]);
    assert!(line.contains(reason), "{line}");
    assert!(!out.join("x/.stateID").exists());

    // Nor may a record land there through a symlink to the top of the tree.
    let sneaky = with_layout(
        &root,
        "sneaky",
        &[
            regular(hash, "share/honest"),
            symlink(".", "up"),
            regular(hash, "up/.stateID"),
        ],
    );
    let line = refused_unchanged(&root, &install_args(&sneaky));
    assert_eq!(
        line,
        "error: package sneaky places an entry at /usr/.stateID through a symlink; that path \
         is reserved for the id of the state a tree belongs to"
    );

    // `pack` refuses to make such a stone in the first place.
    let tree = root.scratch("tree");
    fs::create_dir_all(tree.join("share")).unwrap();
    fs::write(tree.join("share/ok"), "ok").unwrap();
    fs::write(tree.join(".stateID"), "7").unwrap();
    let packed = root.scratch("packed").join("marker.stone");
    let line = fails(&[
        "pack".as_ref(),
        tree.as_os_str(),
        "-o".as_ref(),
        packed.as_os_str(),
        "--name".as_ref(),
        "marker".as_ref(),
        "--version".as_ref(),
        "1".as_ref(),
    ]);
    assert_eq!(
        line,
        format!(
            "error: cannot pack {}: usr/.stateID is reserved for the id of the state a tree \
             belongs to; no package may ship it",
            tree.join(".stateID").display()
        )
    );
    assert!(!packed.exists());
    // Deeper down the name is an ordinary file name.
    fs::remove_file(tree.join(".stateID")).unwrap();
    fs::write(tree.join("share/.stateID"), "just a file").unwrap();
    runs(
        mossfs()
            .args([
                "pack".as_ref(),
                tree.as_os_str(),
                "-o".as_ref(),
                packed.as_os_str(),
            ])
            .args(["--name", "deep", "--version", "1"]),
    );
    root.install(&[&packed]);
    assert_eq!(
        fs::read(root.usr().join("share/.stateID")).unwrap(),
        b"just a file"
    );
    assert_eq!(root.state_id_file().as_deref(), Some("2"));
    let out = root.ok(&["verify"]);
    assert!(out.contains(": no damage"), "{out}");
}

// ---------------------------------------------------------------------------------------
// Defect 11: one corrupted header byte must not install an empty package.
// ---------------------------------------------------------------------------------------

/// `stone` with the kind byte of its payload of `kind` set to `byte`; every checksum is
/// still right, since none covers that byte.
fn flip_kind(root: &TestRoot, stone: &Path, kind: PayloadKind, byte: u8, name: &str) -> PathBuf {
    let mut raw = RawStone::parse(&fs::read(stone).unwrap());
    raw.payload(kind).0.kind = PayloadKind::from_byte(byte);
    write_forged(root, name, &raw.bytes())
}

#[test]
fn defect_11_a_flipped_layout_kind_does_not_install_an_empty_package() {
    let root = TestRoot::new();
    let v1 = root.stone(
        &meta("victim", "1"),
        vec![file("share/victim/a", "one"), file("share/victim/b", "two")],
    );
    root.install(&[&v1]);
    let v2 = root.stone(
        &meta("victim", "2"),
        vec![file("share/victim/a", "uno"), file("share/victim/b", "dos")],
    );
    let broken = flip_kind(&root, &v2, PayloadKind::Layout, 0x33, "victim-2");
    let damaged = "the package has no layout payload, but it has an index or content, which \
                   only a layout can place; the stone is damaged";

    // The upgrade is refused before anything is recorded: the old files stay.
    let line = refused_unchanged(&root, &install_args(&broken));
    assert_eq!(
        line,
        format!("error: cannot read {}: {damaged}", broken.display())
    );
    assert_tree_matches(&root.usr(), &[&v1]);
    assert_eq!(fs::read(root.usr().join("share/victim/a")).unwrap(), b"one");

    // `inspect --check` and `extract` refuse it too; `extract` writes nothing.
    let line = fails(&["inspect".as_ref(), "--check".as_ref(), broken.as_os_str()]);
    assert!(line.contains(damaged), "{line}");
    let out = root.scratch("extract").join("x");
    let line = fails(&[
        "extract".as_ref(),
        broken.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert!(line.contains(damaged), "{line}");
    assert!(!out.join("share").exists());

    // Each other payload the package needs, flipped, is refused as well.
    for (kind, byte, missing) in [
        (PayloadKind::Meta, 0x21, "meta"),
        (PayloadKind::Index, 0x05, "index"),
        (PayloadKind::Content, 0x07, "content"),
    ] {
        let broken = flip_kind(&root, &v2, kind, byte, &format!("flip-{missing}"));
        let line = refused_unchanged(&root, &install_args(&broken));
        assert!(
            line.contains(&format!("the package has no {missing} payload")),
            "{kind}: {line}"
        );
    }
    // The honest upgrade still goes through.
    root.install(&[&v2]);
    assert_tree_matches(&root.usr(), &[&v2]);
}

// ---------------------------------------------------------------------------------------
// Defect 13: package names are checked at pack and install.
// ---------------------------------------------------------------------------------------

const NAME_RULE: &str = "(a package name is 1 to 255 bytes, not `.` or `..`, with no `/`, \
                         whitespace or control characters)";

/// An honest stone whose meta payload names the package `name`.
fn named(root: &TestRoot, label: &str, name: &str) -> PathBuf {
    let mut raw = honest(root, "honest");
    let mut meta = meta("honest", "1");
    meta.name = name.to_owned();
    let records = meta.to_records();
    raw.replace(
        PayloadKind::Meta,
        records.len() as u32,
        mossfs_format::meta::encode_all(&records),
    );
    write_forged(root, label, &raw.bytes())
}

#[test]
fn defect_13_package_names_are_checked_at_pack_and_install() {
    let root = TestRoot::new();
    let base = root.stone(&meta("base", "1"), vec![file("share/base/a", "a")]);
    root.install(&[&base]);
    let tree = root.scratch("tree");
    fs::create_dir_all(tree.join("share")).unwrap();
    fs::write(tree.join("share/f"), "f").unwrap();
    let long = "n".repeat(300);
    let cases = [
        ("dotdot", "..", "package name \"..\" is refused"),
        ("dot", ".", "package name \".\" is refused"),
        ("slash", "a/b", "package name \"a/b\" is refused"),
        ("newline", "a\nb", "package name \"a\\nb\" is refused"),
        (
            "escape",
            "x\u{1b}[31m",
            "package name \"x\\u{1b}[31m\" is refused",
        ),
        ("space", "a b", "package name \"a b\" is refused"),
        ("long", long.as_str(), "is 300 bytes long"),
    ];
    for (label, name, says) in cases {
        let stone = named(&root, label, name);
        let line = refused_unchanged(&root, &install_args(&stone));
        assert!(line.contains(says), "{label}: {line}");
        assert!(line.contains(NAME_RULE), "{label}: {line}");
        assert!(
            line.starts_with(&format!("error: {}: ", stone.display())),
            "{label}: {line}"
        );

        let out = root.scratch("packed").join(format!("{label}.stone"));
        let line = fails(&[
            "pack".as_ref(),
            tree.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
            "--name".as_ref(),
            name.as_ref(),
            "--version".as_ref(),
            "1".as_ref(),
        ]);
        assert!(
            line.contains(says) && line.contains(NAME_RULE),
            "{label}: {line}"
        );
        assert!(!out.exists(), "{label}");
    }
    // A debug view of the conflicts would have listed these names as folders.
    assert!(!root.moss().join("cache").read_dir().unwrap().any(|e| {
        let name = e.unwrap().file_name();
        name == ".." || name == "."
    }));
}

// ---------------------------------------------------------------------------------------
// Defect 16: pack keeps the owner of a 0755 directory that root does not own.
// ---------------------------------------------------------------------------------------

#[test]
fn defect_16_pack_keeps_the_owner_of_a_plain_directory() {
    let root = TestRoot::new();
    let tree = root.scratch("tree");
    let owned = tree.join("share/owned");
    fs::create_dir_all(owned.join("deeper")).unwrap();
    fs::write(owned.join("deeper/f"), "f").unwrap();
    fs::write(tree.join("share/plain"), "p").unwrap();
    for dir in [&owned, &owned.join("deeper")] {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::os::unix::fs::chown(&owned, Some(1000), Some(1001)).unwrap();
    std::os::unix::fs::lchown(owned.join("deeper"), None, Some(1002)).unwrap();
    let stone = root.scratch("packed").join("owned.stone");
    runs(
        mossfs()
            .args([
                "pack".as_ref(),
                tree.as_os_str(),
                "-o".as_ref(),
                stone.as_os_str(),
            ])
            .args(["--name", "owned", "--version", "1"]),
    );

    let owner = |path: &Path| {
        let m = fs::symlink_metadata(path).unwrap();
        (m.mode(), m.uid(), m.gid())
    };
    let out = root.scratch("extract").join("x");
    runs(mossfs().args([
        "extract".as_ref(),
        stone.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]));
    root.install(&[&stone]);
    for top in [out.clone(), root.usr()] {
        assert_eq!(
            owner(&top.join("share/owned")),
            (0o040755, 1000, 1001),
            "{}",
            top.display()
        );
        assert_eq!(owner(&top.join("share/owned/deeper")), (0o040755, 0, 1002));
        // A 0755 directory that root owns is still implied, as upstream's boulder leaves it.
        assert_eq!(owner(&top.join("share")), (0o040755, 0, 0));
    }
    let inspect = runs(mossfs().args(["inspect".as_ref(), stone.as_os_str()]));
    assert!(!inspect.contains("share\n"), "{inspect}");
}

// ---------------------------------------------------------------------------------------
// Defect 5: verify reports files no package owns, and no commit carries them.
// ---------------------------------------------------------------------------------------

/// Plants what no package ships below `usr`: a setuid binary, a directory holding a
/// setgid one, and a plain file. Returns the paths, relative to `usr`.
fn plant(usr: &Path) -> [&'static str; 3] {
    fs::write(usr.join("bin/planted"), "#!/bin/sh\necho gotcha\n").unwrap();
    fs::set_permissions(usr.join("bin/planted"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::create_dir_all(usr.join("share/stray")).unwrap();
    fs::write(usr.join("share/stray/inner"), "inner").unwrap();
    fs::set_permissions(
        usr.join("share/stray/inner"),
        fs::Permissions::from_mode(0o2755),
    )
    .unwrap();
    fs::write(usr.join("share/base/note"), "a note").unwrap();
    ["bin/planted", "share/stray", "share/base/note"]
}

fn base_stone(root: &TestRoot) -> PathBuf {
    root.stone(
        &meta("base", "1"),
        vec![file("bin/base", "#!/bin/sh\n"), file("share/base/a", "a")],
    )
}

#[test]
fn defect_5_verify_reports_unowned_paths_and_repair_removes_them() {
    let root = TestRoot::new();
    let base = base_stone(&root);
    root.install(&[&base]);
    let planted = plant(&root.usr());

    let output = root.run(&["verify"]);
    assert_eq!(
        error_line(&output),
        "error: verify found 4 paths no package owns; run 'mossfs verify --repair'"
    );
    let report = text(&output.stdout);
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(
        lines[..4],
        [
            "usr/bin/planted: WARNING: no package owns this setuid regular file (mode 4755): \
             whoever may run it gains its owner's rights",
            "usr/share/base/note: no package owns this regular file",
            "usr/share/stray: no package owns this directory",
            "usr/share/stray/inner: WARNING: no package owns this setgid regular file \
             (mode 2755): whoever may run it gains its group's rights",
        ],
        "{report}"
    );
    assert!(
        lines[4].ends_with("of state 1: 4 paths no package owns"),
        "{report}"
    );
    // Nothing was changed by looking.
    for path in planted {
        assert!(root.usr().join(path).exists(), "{path}");
    }

    let out = root.ok(&["verify", "--repair"]);
    assert!(out.contains("state 1 active (repair): "), "{out}");
    for path in planted {
        assert!(!root.usr().join(path).exists(), "{path} is still there");
    }
    assert_tree_matches(&root.usr(), &[&base]);
    let out = root.ok(&["verify"]);
    assert!(out.ends_with("of state 1: no damage\n"), "{out}");
}

#[test]
fn defect_5_a_commit_from_an_archived_tree_never_carries_an_unowned_path() {
    let root = TestRoot::new();
    let base = base_stone(&root);
    let one = root.stone(&meta("one", "1"), vec![file("share/one/f", "1")]);
    let two = root.stone(&meta("two", "1"), vec![file("share/two/f", "2")]);
    root.install(&[&base]); // state 1
    let planted = plant(&root.usr());
    // State 2 is blitted whole; state 1's tree, planted files and all, is archived.
    root.install(&[&one]);
    let archived = root.moss().join("root/1/usr");
    for path in planted {
        assert!(
            archived.join(path).exists(),
            "{path} was archived with state 1"
        );
    }
    // verify sees the archive too.
    let output = root.run(&["verify"]);
    assert_eq!(
        error_line(&output),
        "error: verify found 1 damaged archived tree; run 'mossfs verify --repair'"
    );
    assert!(
        text(&output.stdout)
            .contains("archived tree of state 1: 0 damaged paths, 4 paths no package owns\n"),
        "{}",
        text(&output.stdout)
    );

    // State 3 is built from state 1's archive: the planted paths must not come along.
    let out = root.install(&[&two]);
    assert!(
        out.contains("from the archived tree of state 1"),
        "state 3 builds on the archive: {out}"
    );
    for path in planted {
        assert!(
            !root.usr().join(path).exists(),
            "{path} was carried into state 3"
        );
    }
    assert_tree_matches(&root.usr(), &[&base, &one, &two]);
    let out = root.ok(&["verify"]);
    assert!(out.ends_with("of state 3: no damage\n"), "{out}");

    // Planted in an archive that is reused as it is (a rollback), it is removed first.
    let archive2 = root.moss().join("root/2/usr");
    fs::write(archive2.join("bin/planted"), "again").unwrap();
    fs::set_permissions(
        archive2.join("bin/planted"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    let out = root.ok(&["state", "activate", "2"]);
    assert!(out.contains("archived tree reused"), "{out}");
    assert!(!root.usr().join("bin/planted").exists());
    assert_tree_matches(&root.usr(), &[&base, &one]);

    // Planted in an archive that nothing reuses yet, `verify --repair` removes it and
    // leaves the live tree alone.
    let archive3 = root.moss().join("root/3/usr");
    fs::write(archive3.join("share/planted"), "later").unwrap();
    let live = root.system();
    let out = root.ok(&["verify", "--repair"]);
    assert!(
        out.ends_with("removed 1 path that no package owns from the archived tree of state 3\n"),
        "{out}"
    );
    assert!(
        !out.contains("active (repair)"),
        "the live tree was clean: {out}"
    );
    assert!(!archive3.join("share/planted").exists());
    assert!(archive3.join("share/two/f").exists());
    assert_same(&live, &root.system(), "verify --repair of an archive only");
    let out = root.ok(&["verify"]);
    assert!(out.ends_with("of state 2: no damage\n"), "{out}");
}

// ---------------------------------------------------------------------------------------
// Defect 6: repair mends archived trees too, and activate re-checks an archive.
// ---------------------------------------------------------------------------------------

#[test]
fn defect_6_repair_drops_archived_trees_that_share_a_damaged_asset() {
    let root = TestRoot::new();
    let bytes = b"the bytes every state shares".to_vec();
    let shared = root.stone(
        &meta("shared", "1"),
        vec![file("share/shared/f", bytes.clone())],
    );
    let one = root.stone(&meta("one", "1"), vec![file("share/one/f", "1")]);
    let two = root.stone(&meta("two", "1"), vec![file("share/two/f", "2")]);
    root.install(&[&shared]); // state 1
    root.install(&[&one]); // state 2: state 1 archived
    root.install(&[&two]); // state 3, built on state 1's archive; state 2 archived
    let archived = root.moss().join("root/2/usr/share/shared/f");
    assert!(archived.exists());

    // Damage the asset in place: every tree that links it sees the damage.
    let asset = root.asset_file(AssetHash::of(&bytes));
    let mut damaged = bytes.clone();
    damaged[0] = b'T';
    fs::OpenOptions::new()
        .write(true)
        .open(&asset)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &damaged[..1]))
        .unwrap();
    assert_eq!(fs::read(&archived).unwrap(), damaged);

    let out = root.ok(&["verify", "--repair"]);
    assert!(out.contains("repaired asset "), "{out}");
    assert!(out.contains("state 3 active (repair): "), "{out}");
    assert!(
        out.contains(
            "removed the archived tree of state 2: 1 damaged path; activating it will blit \
             it again"
        ),
        "{out}"
    );
    assert!(!root.moss().join("root/2").exists());
    assert_eq!(fs::read(root.usr().join("share/shared/f")).unwrap(), bytes);

    // Rolling back to state 2 blits it afresh: the damage does not come back.
    root.ok(&["state", "activate", "2"]);
    assert_eq!(fs::read(root.usr().join("share/shared/f")).unwrap(), bytes);
    assert_tree_matches(&root.usr(), &[&shared, &one]);
    let out = root.ok(&["verify"]);
    assert!(out.ends_with("of state 2: no damage\n"), "{out}");
}

#[test]
fn defect_6_activate_rechecks_an_archive_before_reusing_it() {
    let root = TestRoot::new();
    let shared = root.stone(&meta("shared", "1"), vec![file("share/shared/f", "shared")]);
    let one = root.stone(&meta("one", "1"), vec![file("share/one/f", "1")]);
    root.install(&[&shared]); // state 1
    root.install(&[&one]); // state 2: state 1 archived
    // Damage state 1's archive behind mossfs's back: another inode, other bytes.
    let archived = root.moss().join("root/1/usr/share/shared/f");
    fs::remove_file(&archived).unwrap();
    fs::write(&archived, "tampered").unwrap();
    fs::set_permissions(&archived, fs::Permissions::from_mode(0o644)).unwrap();

    let out = root.ok(&["state", "activate", "1"]);
    assert!(!out.contains("archived tree reused"), "{out}");
    assert_eq!(
        fs::read(root.usr().join("share/shared/f")).unwrap(),
        b"shared"
    );
    assert_tree_matches(&root.usr(), &[&shared]);
    let out = root.ok(&["verify"]);
    assert!(out.ends_with("of state 1: no damage\n"), "{out}");
}

/// A tmpfs mounted at `at`, unmounted on drop; `None` (with the reason printed) where it
/// cannot be mounted, which fails the test under `CI=true`.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path) -> Option<Tmpfs> {
        match rustix::mount::mount(
            "mossfs-test",
            at,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            c"size=1m",
        ) {
            Ok(()) => Some(Tmpfs(at.to_owned())),
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("cannot mount a tmpfs ({e}); CI must run this test")
            }
            Err(e) => {
                eprintln!("skipped: cannot mount a tmpfs ({e}); run as root");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

#[test]
fn defect_5_verify_never_walks_into_another_file_system() {
    let root = TestRoot::new();
    let base = base_stone(&root);
    root.install(&[&base]);
    let at = root.usr().join("share/mnt");
    fs::create_dir(&at).unwrap();
    let Some(_mounted) = Tmpfs::mount(&at) else {
        return;
    };
    fs::write(at.join("precious"), "not mossfs's").unwrap();
    fs::set_permissions(at.join("precious"), fs::Permissions::from_mode(0o4755)).unwrap();
    // The mount point is named, its contents are not walked, and it is not damage.
    let out = root.ok(&["verify"]);
    assert_eq!(
        out.lines().next(),
        Some("usr/share/mnt: another file system is mounted here; it was not checked"),
        "{out}"
    );
    assert!(!out.contains("precious"), "{out}");
    assert!(out.ends_with("of state 1: no damage\n"), "{out}");
    assert_eq!(fs::read(at.join("precious")).unwrap(), b"not mossfs's");

    // Mounted over a directory the state has, it is named too, and what the state ships
    // there is missing as far as anyone can see.
    let base_dir = root.usr().join("share/base");
    let Some(_over) = Tmpfs::mount(&base_dir) else {
        return;
    };
    fs::write(base_dir.join("hidden"), "not walked").unwrap();
    let output = root.run(&["verify"]);
    assert_eq!(
        error_line(&output),
        "error: verify found 2 damaged paths; run 'mossfs verify --repair'"
    );
    let out = text(&output.stdout);
    // The tmpfs's own root replaces the directory: its mode is the tmpfs's.
    assert!(
        out.contains("usr/share/base has mode 1777, but its package ships mode 755\n"),
        "{out}"
    );
    assert!(
        out.contains("usr/share/base: another file system is mounted here; it was not checked\n"),
        "{out}"
    );
    assert!(out.contains("usr/share/base/a is missing ("), "{out}");
    assert!(
        !out.contains("hidden") && !out.contains("precious"),
        "{out}"
    );
}
