//! Triggers end to end (issue 11): upstream's trigger files, run by the real binary in a
//! real namespace container, on roots made of real programs.
//!
//! The programs come from this machine: `busybox` (statically linked, from Debian's
//! `busybox-static`) packed as a stone gives triggers a shell, and the real Debian packages
//! `libc-bin` (whose `ldconfig` is static), `libc6` and `zlib1g`, packed by the corpus
//! generator, give `ldconfig` real libraries to index.
//!
//! Namespaces, overlayfs and FUSE are required: under `CI=true` a test that cannot get them
//! fails; elsewhere it prints why and passes without checking anything.

mod common;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestRoot, assert_same, file, link, meta, text};
use mossfs_format::AssetHash;
use mossfs_integration::corpus::{FAST, SourceEntry, debian_packages};

const BUSYBOX: &str = "/bin/busybox";

/// Applets the tests' triggers use, as links to busybox.
const APPLETS: [&str; 14] = [
    "sh", "echo", "cat", "sleep", "true", "ls", "touch", "kill", "nc", "mount", "id", "wc",
    "hostname", "rm",
];

/// Whether the machine gives what these tests need; under CI it must.
fn required(what: &str, ok: bool) -> bool {
    if ok {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} is not available; CI must run this test");
    }
    eprintln!("skipped: {what} is not available");
    false
}

/// A stone with busybox as `/usr/bin/busybox` and its applets beside it.
fn busybox(root: &TestRoot) -> Option<PathBuf> {
    let bytes = fs::read(BUSYBOX).ok();
    if !required("busybox (apt-get install busybox-static)", bytes.is_some()) {
        return None;
    }
    let mut entries = vec![SourceEntry::bytes(
        common::path("bin/busybox"),
        bytes.expect("checked"),
        0o755,
    )];
    for applet in APPLETS {
        entries.push(link(&format!("bin/{applet}"), "busybox"));
    }
    Some(root.stone(&meta("busybox", "1"), entries))
}

/// A package shipping one transaction trigger file (and maybe more files).
fn trigger_stone(root: &TestRoot, name: &str, yaml: &str, mut more: Vec<SourceEntry>) -> PathBuf {
    more.push(file(
        &format!("share/moss/triggers/tx.d/{name}.yaml"),
        yaml.as_bytes().to_vec(),
    ));
    root.stone(&meta(&format!("trigger-{name}"), "1"), more)
}

/// A trigger that runs one shell script for every path matching `pattern`.
fn shell_trigger(name: &str, extra: &str, pattern: &str, script: &str) -> String {
    format!(
        "name: {name}\ndescription: test\n{extra}handlers:\n  go:\n    run: /usr/bin/sh\n    args: [\"-c\", {script:?}]\npaths:\n  \"{pattern}\":\n    handlers: [go]\n"
    )
}

/// A root with busybox active, after checking that a container can be built here.
fn root_with_shell() -> Option<(TestRoot, PathBuf)> {
    let root = TestRoot::new();
    let bb = busybox(&root)?;
    root.install(&[&bb]);
    // --root before the command, which takes every argument after it.
    let probe = mossfs_integration::mossfs()
        .args(["triggers", "exec", "--root"])
        .arg(root.path())
        .args(["--", "/usr/bin/true"])
        .output()
        .expect("mossfs runs");
    let ok = probe.status.success();
    if !required(
        &format!(
            "a namespace container with overlayfs ({})",
            text(&probe.stderr).trim()
        ),
        ok,
    ) {
        return None;
    }
    Some((root, bb))
}

/// Pids of processes whose command line has `arg` as one argument.
fn processes_with(arg: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(cmdline) = fs::read(entry.path().join("cmdline"))
            && cmdline.split(|&b| b == 0).any(|a| a == arg.as_bytes())
        {
            found.push(pid);
        }
    }
    found
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Lines of this process's mount table that mention `path`.
fn mounts_below(path: &Path) -> Vec<String> {
    let needle = path.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_owned)
        .collect()
}

/// Hash of bytes as the store names them.
fn asset(bytes: &[u8]) -> AssetHash {
    AssetHash::of(bytes)
}

#[test]
fn a_capture_fires_once_per_version() {
    let Some((root, _)) = root_with_shell() else {
        return;
    };
    let modules = root.stone(
        &meta("kernel-modules", "1"),
        vec![
            file("lib/modules/6.1.0/kernel/a.ko", "a"),
            file("lib/modules/6.1.0/kernel/b.ko", "b"),
            file("lib/modules/6.2.0/kernel/a.ko", "a2"),
            file("lib/modules/README", "not a module"),
        ],
    );
    let yaml = "name: depmod\nhandlers:\n  go:\n    run: /usr/bin/sh\n    args: ['-c', 'echo \"$0\" >> /usr/share/depmod.ran', '$(version)']\npaths:\n  /usr/lib/modules/(version:*)/kernel/*:\n    handlers: [go]\n";
    let trig = trigger_stone(&root, "depmod", yaml, vec![]);
    root.ok(&[
        "install".as_ref(),
        "--stage".as_ref(),
        modules.as_os_str(),
        trig.as_os_str(),
    ]);
    // A candidate has no generated files yet, and its mount says so.
    let mountpoint = root.scratch("mnt");
    let output = root.run(&[
        "mount".as_ref(),
        "--candidate".as_ref(),
        mountpoint.as_os_str(),
    ]);
    if required(
        &format!("FUSE ({})", text(&output.stderr).trim()),
        output.status.success(),
    ) {
        let listed = mountpoint
            .join("usr/lib/modules/6.1.0/kernel/a.ko")
            .exists();
        let generated = mountpoint.join("usr/share/depmod.ran").exists();
        let _ = root.run(&["umount".as_ref(), mountpoint.as_os_str()]);
        let stdout = text(&output.stdout);
        assert!(
            stdout.contains(
                "note: state 2 is a candidate: its transaction triggers run when it is committed"
            ),
            "{stdout}"
        );
        assert!(listed && !generated);
    }
    root.ok(&["commit", "2"]);
    let ran = fs::read_to_string(root.usr().join("share/depmod.ran")).expect("the trigger ran");
    assert_eq!(ran, "6.1.0\n6.2.0\n");
    let log = fs::read_to_string(root.moss().join("triggers/2.log")).expect("a log per state");
    assert!(log.contains("transaction trigger depmod (go)"), "{log}");
}

#[test]
fn before_and_after_order_triggers_and_an_inhibitor_skips_one() {
    let Some((root, _)) = root_with_shell() else {
        return;
    };
    let a = shell_trigger(
        "a",
        "after: b\n",
        "/usr/lib/x",
        "echo a >> /usr/share/order",
    );
    let b = shell_trigger("b", "", "/usr/lib/x", "echo b >> /usr/share/order");
    let c = shell_trigger(
        "c",
        "before: b\ninhibitors:\n  paths: [/usr/share/no-c]\n",
        "/usr/lib/x",
        "echo c >> /usr/share/order",
    );
    let d = shell_trigger(
        "d",
        "inhibitors:\n  environment: [MOSSFS_TEST_NO_D]\n",
        "/usr/lib/x",
        "echo d >> /usr/share/order",
    );
    let stone = root.stone(
        &meta("ordered", "1"),
        vec![
            file("lib/x", "x"),
            file("share/no-c", ""),
            file("share/moss/triggers/tx.d/a.yaml", a),
            file("share/moss/triggers/tx.d/b.yaml", b),
            file("share/moss/triggers/tx.d/c.yaml", c),
            file("share/moss/triggers/tx.d/d.yaml", d),
        ],
    );
    let output = root
        .command(&["install".as_ref(), stone.as_os_str()])
        .env("MOSSFS_TEST_NO_D", "1")
        .output()
        .expect("mossfs runs");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let order = fs::read_to_string(root.usr().join("share/order")).expect("triggers ran");
    assert_eq!(order, "b\na\n");
    let log = fs::read_to_string(root.moss().join("triggers/2.log")).expect("log");
    assert!(
        log.contains("trigger c skipped: /usr/share/no-c exists"),
        "{log}"
    );
    assert!(
        log.contains("trigger d skipped: MOSSFS_TEST_NO_D is set"),
        "{log}"
    );
}

#[test]
fn bad_trigger_files_refuse_the_change_before_anything_is_swapped() {
    let Some((root, _)) = root_with_shell() else {
        return;
    };
    let before = root.system();
    let states = root.states();
    let x = shell_trigger("x", "after: y\n", "/usr/lib/x", "true");
    let y = shell_trigger("y", "after: x\n", "/usr/lib/x", "true");
    let cycle = root.stone(
        &meta("cycle", "1"),
        vec![
            file("lib/x", "x"),
            file("share/moss/triggers/tx.d/x.yaml", x),
            file("share/moss/triggers/tx.d/y.yaml", y),
        ],
    );
    let error = root.fail(&["install".as_ref(), cycle.as_os_str()]);
    assert!(
        error.contains("triggers x, y order each other in a cycle"),
        "{error}"
    );
    assert!(error.contains("tx.d/x.yaml"), "{error}");

    let unknown = trigger_stone(
        &root,
        "unknown",
        "name: unknown\nhandlers:\n  go: { run: /usr/bin/true }\npaths:\n  /usr/lib/x:\n    handlers: [gone]\n",
        vec![file("lib/x", "x")],
    );
    let error = root.fail(&["install".as_ref(), unknown.as_os_str()]);
    assert!(
        error.contains("/usr/share/moss/triggers/tx.d/unknown.yaml"),
        "{error}"
    );
    assert!(error.contains("handler 'gone'"), "{error}");

    let broken = trigger_stone(&root, "broken", "name: [unclosed", vec![]);
    let error = root.fail(&["install".as_ref(), broken.as_os_str()]);
    assert!(
        error.contains("cannot parse trigger file /usr/share/moss/triggers/tx.d/broken.yaml"),
        "{error}"
    );

    assert_same(&before, &root.system(), "refused installs");
    assert_eq!(root.states(), states);
    assert!(!root.moss().join("root/staging").exists());
}

#[test]
fn a_failing_hanging_or_killed_trigger_refuses_the_commit() {
    let Some((root, _)) = root_with_shell() else {
        return;
    };
    let states = root.states();
    let before = root.system();
    for (name, script, expect) in [
        (
            "fails",
            "echo about to fail; exit 3",
            "exited with status 3",
        ),
        (
            "hangs",
            "sleep 4711",
            "was still running after 1 s and was killed",
        ),
        ("killed", "kill -9 $$", "was killed by signal 9"),
    ] {
        let yaml = shell_trigger(name, "", "/usr/lib/x", script);
        let stone = trigger_stone(&root, name, &yaml, vec![file("lib/x", name)]);
        let started = Instant::now();
        let output = root.run(&[
            "install".as_ref(),
            stone.as_os_str(),
            "--trigger-timeout".as_ref(),
            "1".as_ref(),
        ]);
        assert!(!output.status.success(), "{name} was committed");
        let stderr = text(&output.stderr);
        assert!(stderr.starts_with("error: transaction trigger"), "{stderr}");
        assert!(
            stderr.contains(&format!("trigger '{name}' failed")),
            "{stderr}"
        );
        assert!(stderr.contains(script), "{stderr}");
        assert!(stderr.contains(expect), "{stderr}");
        assert!(
            stderr.contains("the previous state stays active"),
            "{stderr}"
        );
        if name == "fails" {
            // The last lines of the log come with the error.
            assert!(stderr.contains("about to fail"), "{stderr}");
        }
        if name == "hangs" {
            assert!(started.elapsed() < Duration::from_secs(20));
            assert!(
                processes_with("4711").is_empty(),
                "the hung trigger lives on"
            );
        }
        assert_same(&before, &root.system(), name);
        assert_eq!(root.states(), states, "{name}: a candidate was left behind");
        assert!(!root.moss().join("root/staging").exists(), "{name}");
    }
    assert!(mounts_below(&root.path()).is_empty());
    // --skip-triggers commits what a failing trigger refused.
    let yaml = shell_trigger("fails", "", "/usr/lib/x", "exit 3");
    let stone = trigger_stone(&root, "fails", &yaml, vec![file("lib/x", "fails")]);
    root.ok(&[
        "install".as_ref(),
        stone.as_os_str(),
        "--skip-triggers".as_ref(),
    ]);
    assert_eq!(
        fs::read(root.usr().join("lib/x")).expect("installed"),
        b"fails"
    );
}

#[test]
fn an_in_place_rewrite_changes_only_the_new_state() {
    let Some((root, _)) = root_with_shell() else {
        return;
    };
    let lib = root.stone(&meta("libfoo", "1"), vec![file("lib/libfoo.so", "hello\n")]);
    root.install(&[&lib]);
    let old = root.active().expect("active");
    let yaml = shell_trigger(
        "append",
        "",
        "/usr/lib/(name:*.so)",
        "echo x >> /usr/lib/libfoo.so",
    );
    let trig = trigger_stone(&root, "append", &yaml, vec![]);
    root.install(&[&trig]);
    assert_eq!(
        fs::read(root.usr().join("lib/libfoo.so")).expect("the new state's copy"),
        b"hello\nx\n"
    );
    assert_eq!(
        fs::read(root.asset_file(asset(b"hello\n"))).expect("the store asset"),
        b"hello\n",
        "the trigger wrote through a hardlink into the store"
    );
    let archived = root.moss().join(format!("root/{old}/usr/lib/libfoo.so"));
    assert_eq!(
        fs::read(&archived).expect("the old state's copy"),
        b"hello\n"
    );
    assert!(
        root.asset_file(asset(b"hello\nx\n")).exists(),
        "the output was not ingested"
    );
    let verify = root.ok(&["verify"]);
    assert!(verify.ends_with(": no damage\n"), "{verify}");
    // Rolling back brings the old bytes; forward again brings the generated ones.
    root.ok(&["state", "activate", &old.to_string()]);
    assert_eq!(
        fs::read(root.usr().join("lib/libfoo.so")).expect("rolled back"),
        b"hello\n"
    );
    let new = old + 1;
    root.ok(&["state", "activate", &new.to_string()]);
    assert_eq!(
        fs::read(root.usr().join("lib/libfoo.so")).expect("forward"),
        b"hello\nx\n"
    );
    // gc keeps an asset that only a generated entry names.
    root.ok(&["gc"]);
    assert!(
        root.asset_file(asset(b"hello\nx\n")).exists(),
        "gc removed generated output"
    );
    let verify = root.ok(&["verify"]);
    assert!(verify.ends_with(": no damage\n"), "{verify}");
}

#[test]
fn a_kill_between_the_triggers_and_the_swap_does_not_run_them_twice() {
    let Some((root, _)) = root_with_shell() else {
        return;
    };
    let lib = root.stone(&meta("libfoo", "1"), vec![file("lib/libfoo.so", "hello\n")]);
    root.install(&[&lib]);
    let before = root.system();
    let yaml = shell_trigger(
        "append",
        "",
        "/usr/lib/libfoo.so",
        "echo x >> /usr/lib/libfoo.so",
    );
    let trig = trigger_stone(&root, "append", &yaml, vec![]);
    let output = root
        .command(&["install".as_ref(), "--stage".as_ref(), trig.as_os_str()])
        .output()
        .expect("mossfs runs");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let killed = root
        .command(&["commit"])
        .env("MOSSFS_FAULT", "triggers")
        .output()
        .expect("mossfs runs");
    assert!(!killed.status.success(), "the fault point did not fire");
    assert_same(&before, &root.system(), "a commit killed before the swap");
    root.ok(&["commit"]);
    assert_eq!(
        fs::read(root.usr().join("lib/libfoo.so")).expect("committed"),
        b"hello\nx\n",
        "the triggers ran twice"
    );
    let verify = root.ok(&["verify"]);
    assert!(verify.ends_with(": no damage\n"), "{verify}");
}

#[test]
fn a_hostile_trigger_stays_inside() {
    let Some((root, _)) = root_with_shell() else {
        return;
    };
    let etc = root.path().join("etc");
    fs::create_dir_all(&etc).expect("etc");
    fs::write(etc.join("passwd"), "root:x:0:0::/root:/bin/sh\n").expect("passwd");
    let outside = root.scratch("outside");
    fs::write(outside.join("secret"), "host only").expect("secret");
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let script = format!(
        "r=/usr/share/hostile; \
         echo hacked >> /etc/passwd && echo etc-written >> $r; \
         touch /etc/new && echo etc-created >> $r; \
         mount -o remount,rw /etc && echo etc-remounted >> $r; \
         ls {outside} && echo outside-seen >> $r; \
         ls / > /usr/share/root-listing; \
         ls /proc/self/fd > /usr/share/fds; \
         echo hi | nc -w 1 127.0.0.1 {port} && echo network >> $r; \
         sleep 4712 & \
         echo done >> $r",
        outside = outside.display()
    );
    let yaml = shell_trigger("hostile", "", "/usr/lib/x", &script);
    let trig = trigger_stone(&root, "hostile", &yaml, vec![file("lib/x", "x")]);
    root.install(&[&trig]);
    let report = fs::read_to_string(root.usr().join("share/hostile")).expect("the trigger ran");
    assert_eq!(report, "done\n", "an attempt got through");
    let listing = fs::read_to_string(root.usr().join("share/root-listing")).expect("listing");
    let mut names: Vec<&str> = listing.split_whitespace().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "bin", "dev", "etc", "lib", "lib64", "proc", "sbin", "tmp", "usr"
        ]
    );
    assert_eq!(
        fs::read_to_string(etc.join("passwd")).expect("passwd"),
        "root:x:0:0::/root:/bin/sh\n"
    );
    assert!(!etc.join("new").exists());
    // Only stdin, stdout, stderr, and the folder `ls` itself opened: nothing of mossfs's
    // (its database above all) reaches a trigger.
    let fds = fs::read_to_string(root.usr().join("share/fds")).expect("fds");
    let fds: Vec<&str> = fds.split_whitespace().collect();
    assert_eq!(fds, ["0", "1", "2", "3"]);
    assert!(
        listener.accept().is_err(),
        "the trigger reached the host's network"
    );
    assert!(
        processes_with("4712").is_empty(),
        "a daemon outlived its trigger"
    );
    assert!(mounts_below(&root.path()).is_empty());
}

#[test]
fn sigkill_of_mossfs_while_a_trigger_runs_leaves_nothing() {
    let Some((root, _)) = root_with_shell() else {
        return;
    };
    let before = root.system();
    let yaml = shell_trigger("slow", "", "/usr/lib/x", "sleep 4713");
    let trig = trigger_stone(&root, "slow", &yaml, vec![file("lib/x", "x")]);
    let mut child = root
        .command(&["install".as_ref(), trig.as_os_str()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mossfs starts");
    wait_for("the trigger runs", Duration::from_secs(20), || {
        !processes_with("4713").is_empty()
    });
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    wait_for("the trigger is gone", Duration::from_secs(10), || {
        processes_with("4713").is_empty()
    });
    assert!(processes_with("__mossfs-container").iter().all(|pid| {
        fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| !String::from_utf8_lossy(&c).contains(&*root.path().to_string_lossy()))
            .unwrap_or(true)
    }));
    assert!(mounts_below(&root.path()).is_empty());
    assert_same(&before, &root.system(), "a killed commit");
    // The next run recovers: staging goes, and the install goes through.
    let output = root.run(&[
        "install".as_ref(),
        trig.as_os_str(),
        "--skip-triggers".as_ref(),
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("recovered"),
        "{}",
        text(&output.stderr)
    );
    assert!(root.usr().join("lib/x").exists());
}

#[test]
fn system_triggers_run_after_the_swap_and_again_on_request() {
    let Some((root, _)) = root_with_shell() else {
        return;
    };
    let before = root.active().expect("active");
    let script = "echo ran >> /etc/sys.log; touch /usr/lib/z 2>/dev/null && echo usr-written >> /etc/sys.log; test -e /etc/ok";
    let yaml = shell_trigger("sysusers", "", "/usr/lib/x", script);
    let stone = root.stone(
        &meta("with-system-trigger", "1"),
        vec![
            file("lib/x", "x"),
            file("share/moss/triggers/sys.d/sysusers.yaml", yaml),
        ],
    );
    let output = root.run(&["install".as_ref(), stone.as_os_str()]);
    assert!(
        !output.status.success(),
        "a failed system trigger must fail the command"
    );
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("system trigger 'sysusers' failed"),
        "{stderr}"
    );
    assert!(stderr.contains("exited with status 1"), "{stderr}");
    assert!(
        stderr.contains("run the system triggers again with 'mossfs triggers run'"),
        "{stderr}"
    );
    // The swap happened and stays.
    let after = root.active().expect("active");
    assert_ne!(after, before);
    assert!(root.usr().join("lib/x").exists());
    let log = root.path().join("etc/sys.log");
    assert_eq!(fs::read_to_string(&log).expect("/etc is writable"), "ran\n");
    assert!(
        !root.usr().join("lib/z").exists(),
        "/usr is writable for system triggers"
    );

    fs::write(root.path().join("etc/ok"), "").expect("etc/ok");
    let out = root.ok(&["triggers", "run"]);
    assert!(
        out.contains(&format!("system triggers of state {after} ran")),
        "{out}"
    );
    assert_eq!(fs::read_to_string(&log).expect("log"), "ran\nran\n");

    // Activating a state runs its system triggers, as upstream does.
    root.ok(&["state", "activate", &before.to_string()]);
    assert_eq!(fs::read_to_string(&log).expect("log"), "ran\nran\n");
    root.ok(&["state", "activate", &after.to_string()]);
    assert_eq!(fs::read_to_string(&log).expect("log"), "ran\nran\nran\n");
    root.ok(&["state", "activate", &before.to_string(), "--skip-triggers"]);
    root.ok(&["state", "activate", &after.to_string(), "--skip-triggers"]);
    assert_eq!(fs::read_to_string(&log).expect("log"), "ran\nran\nran\n");
}

/// The Debian packages of the ldconfig test; `None` (printed) where dpkg or one of them is
/// missing, which fails under CI.
fn debian_stones(root: &TestRoot) -> Option<Vec<PathBuf>> {
    let out = root.scratch("debian");
    let packed = debian_packages(&out, &["libc-bin", "libc6", "zlib1g"], FAST);
    if !required(
        &format!(
            "the Debian packages libc-bin, libc6 and zlib1g ({:?})",
            packed.as_ref().err()
        ),
        packed.is_ok(),
    ) {
        return None;
    }
    packed.ok()
}

#[test]
fn ldconfig_output_is_part_of_the_state() {
    let Some((root, _)) = root_with_shell() else {
        return;
    };
    let Some(debian) = debian_stones(&root) else {
        return;
    };
    let ldconfig = "name: ldconfig\ndescription: the dynamic linker's cache\nhandlers:\n  ldconfig:\n    run: /usr/sbin/ldconfig\n    args: [\"-X\", \"-C\", \"/usr/lib/ld.so.cache\"]\npaths:\n  \"/usr/lib/x86_64-linux-gnu/*.so*\":\n    handlers: [ldconfig]\n";
    let trig = trigger_stone(&root, "ldconfig", ldconfig, vec![]);
    let mut first: Vec<&Path> = debian.iter().map(PathBuf::as_path).collect();
    first.retain(|p| !p.to_string_lossy().contains("zlib1g"));
    first.push(&trig);
    root.install(&first);
    let one = root.active().expect("active");
    let cache = root.usr().join("lib/ld.so.cache");
    let cache_one = fs::read(&cache).expect("ldconfig wrote its cache");
    assert!(cache_one.starts_with(b"glibc-ld.so.cache"), "not a cache");
    let log = fs::read_to_string(root.moss().join(format!("triggers/{one}.log"))).expect("log");
    assert!(
        log.contains("/usr/sbin/ldconfig -X -C /usr/lib/ld.so.cache"),
        "{log}"
    );
    let verify = root.ok(&["verify"]);
    assert!(verify.ends_with(": no damage\n"), "{verify}");
    assert!(
        root.asset_file(asset(&cache_one)).exists(),
        "the cache is not in the store"
    );
    // No package owns the cache: `owner` names the trigger that made it, in both forms.
    assert_eq!(
        root.ok(&["owner", "/usr/lib/ld.so.cache"]),
        format!(
            "/usr/lib/ld.so.cache was generated by transaction trigger ldconfig of state {one}\n"
        )
    );
    let document: serde_json::Value =
        serde_json::from_str(&root.ok(&["--json", "owner", "lib/ld.so.cache"])).expect("JSON");
    assert_eq!(
        document,
        serde_json::json!({
            "path": "/usr/lib/ld.so.cache",
            "asked": "lib/ld.so.cache",
            "trigger": "ldconfig",
            "state": one,
        })
    );

    // A second state with another library has another cache.
    let zlib: Vec<&Path> = debian
        .iter()
        .filter(|p| p.to_string_lossy().contains("zlib1g"))
        .map(PathBuf::as_path)
        .collect();
    root.install(&zlib);
    let two = root.active().expect("active");
    let cache_two = fs::read(&cache).expect("the second cache");
    assert_ne!(cache_one, cache_two);
    assert!(
        cache_two.windows(7).any(|w| w == b"libz.so"),
        "libz is not in the new cache"
    );

    // The diff between the states shows the cache as changed.
    let diff = root.ok(&["state", "diff", &one.to_string(), &two.to_string()]);
    assert!(diff.contains("lib/ld.so.cache"), "{diff}");

    // A mount of the first state serves its own cache.
    let mountpoint = root.scratch("mnt");
    let output = root.run(&[
        "mount".as_ref(),
        "--state".as_ref(),
        one.to_string().as_ref(),
        mountpoint.as_os_str(),
    ]);
    if required(
        &format!("FUSE ({})", text(&output.stderr).trim()),
        output.status.success(),
    ) {
        let served = fs::read(mountpoint.join("usr/lib/ld.so.cache"));
        let _ = Command::new(mossfs_integration::mossfs_bin())
            .args(["umount".as_ref(), mountpoint.as_os_str()])
            .output();
        assert_eq!(served.expect("the mount serves the cache"), cache_one);
    }

    // Rolling back brings back the first state's cache, and verify agrees.
    root.ok(&["state", "activate", &one.to_string()]);
    assert_eq!(fs::read(&cache).expect("rolled back"), cache_one);
    let verify = root.ok(&["verify"]);
    assert!(verify.ends_with(": no damage\n"), "{verify}");
}
