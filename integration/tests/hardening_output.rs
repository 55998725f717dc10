//! Issue 7, defects 14 and 15: what mossfs prints. Names from outside are quoted for people
//! and kept whole for programs, and each message that used to mislead now says what
//! happened and what to do. Every test runs the real binary on a fresh temporary root.

mod common;

use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{TestRoot, error_line, file, link, meta, text};
use mossfs_format::RelPath;
use mossfs_fs::fuse;
use mossfs_integration::corpus::SourceEntry;

/// A newline that would forge a line, and an escape sequence that would recolour the
/// terminal.
const FORGER: &[u8] = b"bin/evil\nstate 99 active\x1b[31m";
/// Two names that differ only in a byte that is not UTF-8: both used to print as U+FFFD.
const BAD_FF: &[u8] = b"bin/bad\xff";
const BAD_FE: &[u8] = b"bin/bad\xfe";

fn odd_file(at: &[u8], bytes: &str) -> SourceEntry {
    let path = RelPath::new(at.to_vec()).expect("a valid layout path");
    SourceEntry::bytes(path, bytes.as_bytes().to_vec(), 0o644)
}

/// A package whose names hold a newline, an escape sequence and bytes that are not UTF-8.
fn odd_stone(root: &TestRoot) -> PathBuf {
    root.stone(
        &meta("odd", "1"),
        vec![
            odd_file(FORGER, "forger"),
            odd_file(BAD_FF, "ff"),
            odd_file(BAD_FE, "fe"),
            SourceEntry::symlink(
                RelPath::new(b"bin/pointer".to_vec()).unwrap(),
                b"to\n\x1b[2Jelsewhere".to_vec(),
            ),
            file("bin/plain", "plain"),
        ],
    )
}

/// No line of `out` carries a raw escape character or starts with the forged text.
fn assert_no_forgery(out: &str, what: &str) {
    assert!(!out.contains('\x1b'), "{what} printed a raw escape: {out}");
    assert!(
        !out.lines().any(|l| l.starts_with("state 99 active")),
        "{what} printed a forged line: {out}"
    );
}

#[test]
fn defect_14_inspect_quotes_odd_names_and_json_keeps_every_byte() {
    let root = TestRoot::new();
    let stone = odd_stone(&root);
    let inspect = |json: bool| {
        let mut command = mossfs_integration::mossfs();
        command.arg("inspect").arg(&stone);
        if json {
            command.arg("--json");
        }
        let output = command.output().expect("mossfs runs");
        assert!(output.status.success(), "{}", text(&output.stderr));
        text(&output.stdout)
    };
    let out = inspect(false);
    assert_no_forgery(&out, "inspect");
    assert!(
        out.contains(r#""bin/evil\nstate 99 active\u{1b}[31m""#),
        "{out}"
    );
    assert!(out.contains(r#""bin/bad\xff""#), "{out}");
    assert!(out.contains(r#""bin/bad\xfe""#), "{out}");
    assert!(
        out.contains(r#"bin/pointer -> "to\n\u{1b}[2Jelsewhere""#),
        "{out}"
    );
    assert!(
        out.contains(" bin/plain "),
        "a plain name stays bare: {out}"
    );

    let out = inspect(true);
    let json: serde_json::Value = serde_json::from_str(&out).expect("inspect --json is JSON");
    let layout = json[0]["layout"].as_array().expect("a layout array");
    let path_of = |entry: &serde_json::Value| -> Vec<u8> {
        match &entry["path"] {
            serde_json::Value::String(s) => s.as_bytes().to_vec(),
            other => hex_decode(other["bytes"].as_str().expect("a string or {bytes}")),
        }
    };
    let paths: Vec<Vec<u8>> = layout.iter().map(path_of).collect();
    for expected in [FORGER, BAD_FF, BAD_FE, b"bin/plain"] {
        assert!(
            paths.iter().any(|p| p == expected),
            "{} missing from {out}",
            String::from_utf8_lossy(expected)
        );
    }
    let ff = layout
        .iter()
        .find(|e| path_of(e) == BAD_FF)
        .expect("the 0xff entry");
    assert_eq!(
        ff["path"],
        serde_json::json!({ "bytes": "62696e2f626164ff" })
    );
    let pointer = layout
        .iter()
        .find(|e| e["path"] == "bin/pointer")
        .expect("the symlink");
    assert_eq!(pointer["target"], "to\n\u{1b}[2Jelsewhere");
}

#[test]
fn defect_14_info_state_diff_and_state_show_quote_odd_names() {
    let root = TestRoot::new();
    let plain = root.stone(&meta("plain", "1"), vec![file("share/plain", "p")]);
    root.install(&[&plain]);
    let odd = odd_stone(&root);
    root.install(&[&odd]);

    let out = root.ok(&["info", "odd", "--files"]);
    assert_no_forgery(&out, "info --files");
    let files: Vec<&str> = out.lines().filter(|l| l.contains("/usr/")).collect();
    assert_eq!(
        files,
        [
            r#""/usr/bin/bad\xfe""#,
            r#""/usr/bin/bad\xff""#,
            r#""/usr/bin/evil\nstate 99 active\u{1b}[31m""#,
            "/usr/bin/plain",
            r#"/usr/bin/pointer -> "to\n\u{1b}[2Jelsewhere""#,
        ],
        "{out}"
    );

    let out = root.ok(&["state", "diff", "1", "2"]);
    assert_no_forgery(&out, "state diff");
    // One line per changed path (bin and its five entries), and the count.
    assert_eq!(out.lines().count(), 7, "{out}");
    assert!(out.contains(r#"+ "usr/bin/bad\xff"  [odd]"#), "{out}");
    assert!(out.contains(r#"+ "usr/bin/bad\xfe"  [odd]"#), "{out}");

    // The same odd names from two packages: a conflict that `state show` lists.
    let rival = root.stone(
        &meta("rival", "1"),
        vec![odd_file(FORGER, "rival"), odd_file(BAD_FF, "rival")],
    );
    let out = root.ok(&[
        "install".as_ref(),
        "--stage".as_ref(),
        "--allow-conflicts".as_ref(),
        rival.as_os_str(),
    ]);
    assert_no_forgery(&out, "install --stage");
    let out = root.ok(&["state", "show", "3"]);
    assert_no_forgery(&out, "state show");
    assert!(
        out.contains(r#"    "usr/bin/evil\nstate 99 active\u{1b}[31m""#),
        "{out}"
    );
    assert!(out.contains(r#"    "usr/bin/bad\xff""#), "{out}");
    // The refusal names the first conflict the same way, on one line.
    let line = root.fail(&["commit", "3"]);
    assert!(line.contains(r#"first: "usr/bin/bad\xff""#), "{line}");
}

#[test]
fn defect_14_owner_accepts_any_path_bytes() {
    let root = TestRoot::new();
    let odd = odd_stone(&root);
    root.install(&[&odd]);
    let out = root.ok(&[
        OsStr::from_bytes(b"owner"),
        OsStr::from_bytes(b"/usr/bin/bad\xff"),
    ]);
    assert_eq!(out, "\"/usr/bin/bad\\xff\" is owned by odd-1-1\n");
    let out = root.ok(&[
        OsStr::from_bytes(b"owner"),
        OsStr::from_bytes(b"/usr/bin/bad\xfe"),
    ]);
    assert_eq!(out, "\"/usr/bin/bad\\xfe\" is owned by odd-1-1\n");
    let line = root.fail(&[
        OsStr::from_bytes(b"owner"),
        OsStr::from_bytes(b"/usr/bin/\xfd"),
    ]);
    assert_eq!(line, r#"error: no package ships "/usr/bin/\xfd""#);
}

#[test]
fn defect_15_owner_normalises_paths_and_follows_the_root_links() {
    let root = TestRoot::new();
    let base = root.stone(
        &meta("base", "1"),
        vec![file("bin/nano", "nano"), file("lib/ld.so", "ld")],
    );
    root.install(&[&base]);
    assert_eq!(
        fs::read_link(root.path().join("lib64")).unwrap(),
        Path::new("usr/lib"),
        "the root link this test follows"
    );
    for asked in [
        "/usr/bin/nano",
        "//usr//bin///nano",
        "/usr/./bin/./nano",
        "/usr/lib/../bin/nano",
        "/usr/../usr/bin/nano",
        "/../usr/bin/nano",
        "/bin/nano",
        "bin/nano",
        "usr/bin/nano",
    ] {
        let out = root.ok(&["owner", asked]);
        assert_eq!(out, "/usr/bin/nano is owned by base-1-1\n", "{asked}");
    }
    // `..` after a symlink climbs from where it led, as in the kernel: /lib64/.. is /usr.
    for asked in ["/lib64/ld.so", "/lib/ld.so", "/lib64/../lib/./ld.so"] {
        let out = root.ok(&["owner", asked]);
        assert_eq!(out, "/usr/lib/ld.so is owned by base-1-1\n", "{asked}");
    }
    let line = root.fail(&["owner", "/etc/passwd"]);
    assert_eq!(
        line,
        "error: /etc/passwd is not below /usr, and packages ship files only there"
    );
    let line = root.fail(&["owner", "/usr/bin/../nope"]);
    assert_eq!(line, "error: no package ships /usr/bin/../nope");
}

#[test]
fn defect_15_state_remove_takes_a_state_named_twice_once() {
    let root = TestRoot::new();
    let a = root.stone(&meta("a", "1"), vec![file("share/a", "a")]);
    let b = root.stone(&meta("b", "1"), vec![file("share/b", "b")]);
    root.install(&[&a]);
    root.install(&[&b]);
    assert!(root.path().join(".moss/root/1/usr").exists());
    let out = root.ok(&["state", "remove", "1", "1"]);
    assert_eq!(out.matches("removed state 1").count(), 1, "{out}");
    assert_eq!(
        common::statuses(&root.states()),
        [(2, "active")],
        "state 1 is gone, state 2 untouched"
    );
    assert!(!root.path().join(".moss/root/1").exists());
}

#[test]
fn defect_15_commit_of_a_committed_state_points_to_state_activate() {
    let root = TestRoot::new();
    let a = root.stone(&meta("a", "1"), vec![file("share/a", "a")]);
    let b = root.stone(&meta("b", "1"), vec![file("share/b", "b")]);
    root.install(&[&a]);
    root.install(&[&b]);
    let before = root.system();
    let line = root.fail(&["commit", "1"]);
    assert_eq!(
        line,
        "error: state 1 is not a candidate: it was committed before; to make it live again, \
         run 'mossfs state activate 1'"
    );
    assert_eq!(root.active(), Some(2));
    common::assert_same(&before, &root.system(), "after the refusal");
    // What the message says works.
    root.ok(&["state", "activate", "1"]);
    assert_eq!(root.active(), Some(1));
}

#[test]
fn defect_15_a_staged_candidate_with_conflicts_suggests_no_commit() {
    let root = TestRoot::new();
    let a = root.stone(&meta("a", "1"), vec![file("bin/x", "a")]);
    let b = root.stone(&meta("b", "1"), vec![file("bin/x", "b")]);
    let out = root.ok(&[
        "install".as_ref(),
        "--stage".as_ref(),
        "--allow-conflicts".as_ref(),
        a.as_os_str(),
        b.as_os_str(),
    ]);
    assert!(!out.contains("mossfs commit"), "{out}");
    assert!(out.contains("cannot be committed"), "{out}");
    assert!(out.contains("'mossfs state remove 1'"), "{out}");
    // And what it suggests instead works: the candidate goes.
    root.ok(&["state", "remove", "1"]);
    assert!(root.states().is_empty());
}

#[test]
fn defect_15_a_conflict_below_a_symlink_is_reported_at_the_symlink() {
    let root = TestRoot::new();
    let pointer = root.stone(&meta("pointer", "1"), vec![link("etc2", "/etc")]);
    let below = root.stone(
        &meta("below", "1"),
        vec![file("etc2/passwd", "x"), file("etc2/group", "y")],
    );
    let line = root.fail(&["install".as_ref(), pointer.as_os_str(), below.as_os_str()]);
    assert!(
        line.starts_with("error: 1 path conflict (first: usr/etc2, shipped by pointer and below)"),
        "{line}"
    );
    let out = root.ok(&[
        "install".as_ref(),
        "--stage".as_ref(),
        "--allow-conflicts".as_ref(),
        pointer.as_os_str(),
        below.as_os_str(),
    ]);
    let listed: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("  conflicts"))
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .collect();
    assert_eq!(
        listed,
        [
            "    usr/etc2",
            "      pointer-1-1: symlink 777 -> /etc",
            "      below-1-1: directory 755",
        ],
        "{out}"
    );
}

#[test]
fn defect_15_the_debug_view_shows_a_symlink_and_what_lies_below_it_apart() {
    let root = TestRoot::new();
    let pointer = root.stone(&meta("pointer", "1"), vec![link("etc2", "/etc")]);
    let below = root.stone(
        &meta("below", "1"),
        vec![file("etc2/passwd", "x"), file("etc2/sub/group", "y")],
    );
    root.ok(&[
        "install".as_ref(),
        "--stage".as_ref(),
        "--allow-conflicts".as_ref(),
        pointer.as_os_str(),
        below.as_os_str(),
    ]);
    let at = root.scratch("mnt");
    let Some(server) = mount(&root, &["--state", "1", "--debug-view"], &at) else {
        return;
    };
    let conflict = at.join(".mossfs/conflicts/usr/etc2");
    let mut names: Vec<_> = fs::read_dir(&conflict)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["below", "pointer"]);
    assert_eq!(
        fs::read_link(conflict.join("pointer")).unwrap(),
        Path::new("/etc")
    );
    assert_eq!(fs::read(conflict.join("below/passwd")).unwrap(), b"x");
    assert_eq!(fs::read(conflict.join("below/sub/group")).unwrap(), b"y");
    // The tree itself shows the symlink, and nothing where it would lead.
    assert_eq!(
        fs::read_link(at.join("usr/etc2")).unwrap(),
        Path::new("/etc")
    );
    let output = mossfs_integration::mossfs()
        .arg("umount")
        .arg(&at)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    wait_for("the server to exit", || gone(server.pid));
}

#[test]
fn defect_15_lib64_through_slash_resolves_like_lib64_to_lib() {
    for target in ["lib", "../usr/lib", "/lib", "/usr/lib"] {
        let root = TestRoot::new();
        let base = root.stone(
            &meta("base", "1"),
            vec![link("lib64", target), file("lib/ld.so", "ld")],
        );
        let libx = root.stone(&meta("libx", "1"), vec![file("lib64/libx.so", "x")]);
        let out = root.install(&[&base, &libx]);
        assert!(out.starts_with("state 1 active"), "{target}: {out}");
        assert_eq!(
            fs::read(root.usr().join("lib/libx.so")).unwrap(),
            b"x",
            "{target}"
        );
        assert_eq!(
            fs::read_link(root.usr().join("lib64")).unwrap(),
            Path::new(target)
        );
    }
}

#[test]
fn defect_15_usage_errors_exit_2_as_the_readme_says() {
    for args in [
        &["state", "remove"][..],
        &["frobnicate"],
        &["state", "show", "not-a-number"],
    ] {
        let output = mossfs_integration::mossfs().args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(text(&output.stderr).starts_with("error: "), "{args:?}");
    }
    // A failed command is 1, as before.
    let root = TestRoot::new();
    let output = root.run(&["owner", "/usr/bin/x"]);
    error_line(&output);
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("the README");
    assert!(
        readme.contains("| 2 | the command line is wrong"),
        "README.md must document exit status 2"
    );
    assert!(
        !readme.contains("The exit status is 1."),
        "README.md says 1"
    );
}

#[test]
fn defect_15_a_detached_mount_that_still_serves_names_its_server() {
    let root = TestRoot::new();
    let a = root.stone(&meta("a", "1"), vec![file("share/a", "held open")]);
    let b = root.stone(&meta("b", "1"), vec![file("share/b", "b")]);
    root.install(&[&a]);
    root.install(&[&b]);
    let at = root.scratch("mnt");
    let Some(server) = mount(&root, &["--state", "1"], &at) else {
        return;
    };
    let pid = server.pid;

    let held = File::open(at.join("usr/share/a")).expect("a file through the mount");
    let output = mossfs_integration::mossfs()
        .arg("umount")
        .arg(&at)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    wait_for("the mount to detach", || {
        fuse::find_mount(&at).unwrap().is_none()
    });
    assert!(!gone(pid), "the open file keeps the server serving");

    let line = root.fail(&["state", "remove", "1"]);
    assert!(!line.contains("mossfs umount"), "{line}");
    assert!(line.contains("was detached"), "{line}");
    assert!(line.contains(&format!("'kill {pid}'")), "{line}");
    assert!(root.path().join(".moss/root/1/usr").exists());
    let out = root.ok(&["state", "prune", "--keep", "0"]);
    assert!(out.contains(&format!("server (pid {pid})")), "{out}");
    let out = root.ok(&["state", "show", "1"]);
    assert!(
        out.contains(&format!("detached; its server (pid {pid})")),
        "{out}"
    );

    // Closing the file ends the server, as the message says, and the state goes.
    drop(held);
    wait_for("the server to exit", || gone(pid));
    drop(server);
    root.ok(&["state", "remove", "1"]);
    assert_eq!(common::statuses(&root.states()), [(2, "active")]);
}

/// Starts `mossfs mount ARGS AT` in the background, or `None` (with the reason printed)
/// where FUSE cannot be used outside CI; under `CI=true` that fails the test.
fn mount(root: &TestRoot, args: &[&str], at: &Path) -> Option<Server> {
    let mut command: Vec<&OsStr> = vec!["mount".as_ref()];
    command.extend(args.iter().map(OsStr::new));
    command.push(at.as_os_str());
    let output = root.run(&command);
    if !output.status.success() {
        let why = text(&output.stderr);
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("FUSE is required under CI: {why}");
        }
        eprintln!("skipping: cannot mount here: {why}");
        return None;
    }
    let stdout = text(&output.stdout);
    let pid: u32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("server: pid "))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no server pid in {stdout}"));
    Some(Server {
        at: at.to_owned(),
        pid,
    })
}

/// The mount server this test started: on a failed test, detach its mount and stop it.
struct Server {
    at: PathBuf,
    pid: u32,
}

impl Drop for Server {
    fn drop(&mut self) {
        if fuse::find_mount(&self.at).is_ok_and(|m| m.is_some()) {
            let _ = fuse::unmount(&self.at);
        }
        if !gone(self.pid) {
            let pid = rustix::process::Pid::from_raw(self.pid as i32).expect("a pid");
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }
}

/// Polls until `done`, failing after a generous deadline.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether a process is gone, or a zombie nobody reaped yet.
fn gone(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

fn hex_decode(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digits"))
        .collect()
}
