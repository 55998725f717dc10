//! What a person at a terminal sees: progress bars drawn and cleared on a real
//! pseudo-terminal (and nothing of them in a pipe), and the confirmation prompt of
//! removals that take more than was named.
//!
//! The pty is opened with `posix_openpt` (rustix), the binary gets the child side as its
//! stdin, stdout and stderr, as a shell would give it, and everything it writes is read
//! from the parent side until the child side closes.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
use rustix::termios::{Winsize, tcsetwinsize};

use crate::common::{TestRoot, file, meta, text};

/// Runs `command` on a fresh 40x120 pseudo-terminal, typing `input` into it, and returns
/// its exit status and everything it wrote to the terminal.
fn on_a_terminal(mut command: Command, input: &[u8]) -> (ExitStatus, String) {
    let master: OwnedFd = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("posix_openpt");
    grantpt(&master).expect("grantpt");
    unlockpt(&master).expect("unlockpt");
    let name = ptsname(&master, Vec::new()).expect("ptsname");
    let child_side: File = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc_o_noctty())
        .open(Path::new(name.to_str().expect("pty names are ASCII")))
        .expect("open the pty's child side");
    tcsetwinsize(
        &child_side,
        Winsize {
            ws_row: 40,
            ws_col: 120,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .expect("set the window size");
    command
        .stdin(Stdio::from(child_side.try_clone().expect("dup")))
        .stdout(Stdio::from(child_side.try_clone().expect("dup")))
        .stderr(Stdio::from(child_side));
    let mut child = command.spawn().expect("mossfs runs");
    // The command now holds the only child-side descriptors: when it exits, reads of the
    // parent side end (EIO).
    drop(command);
    let mut writer = File::from(master.try_clone().expect("dup"));
    writer.write_all(input).expect("type the input");
    let mut reader = File::from(master);
    let drain = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
        all
    });
    let status = child.wait().expect("wait");
    let bytes = drain.join().expect("the reader thread");
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// `O_NOCTTY`: the test process must not adopt the pty as its controlling terminal.
fn libc_o_noctty() -> i32 {
    rustix::fs::OFlags::NOCTTY.bits() as i32
}

/// A root with one small state and stones for more.
fn root_with_stones() -> (TestRoot, Vec<std::path::PathBuf>) {
    let root = TestRoot::new();
    let stones = (0..3)
        .map(|i| {
            let entries = (0..400)
                .map(|f| file(&format!("share/p{i}/f{f}"), format!("file {f} of {i}")))
                .collect();
            root.stone(&meta(&format!("p{i}"), "1"), entries)
        })
        .collect();
    (root, stones)
}

#[test]
fn bars_are_drawn_and_cleared_on_a_terminal_and_the_summary_stays() {
    let (root, stones) = root_with_stones();
    let (status, screen) = on_a_terminal(
        root.command(&[
            "install",
            &stones[0].display().to_string(),
            &stones[1].display().to_string(),
        ]),
        b"",
    );
    assert!(status.success(), "{screen}");
    // The bars were drawn: the blit's entries, the unpack's bytes, the caching of stones.
    for drawn in ["entries", "unpack", "cache", "blit", "["] {
        assert!(screen.contains(drawn), "{drawn:?} never drawn: {screen:?}");
    }
    // ... and cleared: each clear is a carriage return and an erase of the line.
    let clear = "\r\x1b[2K";
    let last_clear = screen
        .rfind(clear)
        .unwrap_or_else(|| panic!("never cleared: {screen:?}"));
    // What stays on the screen after the last clear is the summary line alone.
    let rest = &screen[last_clear + clear.len()..];
    let rest = rest.trim_start_matches(|c| {
        c == '\r' || c == '\n' || c == '\x1b' || c == '[' || c == 'A' || c == 'K' || c == 'J'
    });
    assert!(
        rest.starts_with("state 1 active (install 2 packages (p0, p1)): "),
        "after the bars: {rest:?}"
    );
    assert_eq!(rest.trim_end().lines().count(), 1, "{rest:?}");
    assert!(
        !rest.contains("entries ("),
        "a bar was left behind: {rest:?}"
    );
}

#[test]
fn verbose_steps_are_written_whole_between_the_bars() {
    let (root, stones) = root_with_stones();
    let (status, screen) = on_a_terminal(
        root.command(&["-v", "install", &stones[2].display().to_string()]),
        b"",
    );
    assert!(status.success(), "{screen}");
    let cleared = without_escapes(&screen);
    for step in ["hash and copy stones", "ingest", "blit", "total"] {
        let line = cleared
            .split(['\r', '\n'])
            .find(|l| l.contains(&format!("INFO {step}: ")))
            .unwrap_or_else(|| panic!("no {step} line: {screen:?}"));
        let time = line
            .rsplit_once(": ")
            .map(|(_, t)| t.trim_end())
            .and_then(|t| t.strip_suffix(" s"))
            .unwrap_or_else(|| panic!("torn line {line:?}"));
        time.parse::<f64>()
            .unwrap_or_else(|_| panic!("torn line {line:?}"));
    }
}

/// The text of terminal output without its escape sequences (colours, cursor moves, line
/// erases): `ESC [` up to the final letter.
fn without_escapes(screen: &str) -> String {
    let mut out = String::with_capacity(screen.len());
    let mut chars = screen.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.clone().next() == Some('[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

#[test]
fn pipes_get_no_progress_at_all() {
    let (root, stones) = root_with_stones();
    let output = root.run(&["install", &stones[0].display().to_string()]);
    assert!(output.status.success());
    assert_eq!(text(&output.stderr), "", "nothing on a piped stderr");
    let out = text(&output.stdout);
    assert!(
        out.starts_with("state 1 active (install p0-1-1): "),
        "{out}"
    );
    assert!(!out.contains('\x1b') && !out.contains('\r'), "{out:?}");
    // verify and gc, which draw bars on a terminal, stay quiet in a pipe too.
    for args in [&["verify"][..], &["gc"]] {
        let output = root.run(args);
        assert!(output.status.success(), "{args:?}");
        assert_eq!(text(&output.stderr), "", "{args:?}");
        assert!(!text(&output.stdout).contains('\x1b'), "{args:?}");
    }
}

#[test]
fn removing_several_states_asks_on_a_terminal_and_no_changes_nothing() {
    let (root, stones) = root_with_stones();
    for stone in &stones {
        root.install(&[stone]);
    }
    let before = root.states();
    let (status, screen) = on_a_terminal(root.command(&["state", "remove", "1", "2"]), b"n\n");
    assert_eq!(status.code(), Some(1), "{screen}");
    assert!(
        screen.contains("remove states 1 and 2? [y/N] "),
        "{screen:?}"
    );
    assert!(
        screen.contains("error: cancelled; nothing was changed"),
        "{screen:?}"
    );
    assert_eq!(root.states(), before);
    assert!(
        root.moss().join("root/2/usr").exists(),
        "the archived tree is still there"
    );

    let (status, screen) = on_a_terminal(root.command(&["state", "prune", "--keep", "0"]), b"y\n");
    assert!(status.success(), "{screen}");
    assert!(
        screen.contains("prune removes states 1 and 2 (keeping the active state and the 0 newest), except any that is mounted; continue? [y/N] "),
        "{screen:?}"
    );
    assert!(screen.contains("removed state 1"), "{screen:?}");
    assert_eq!(root.states().len(), 1);

    // gc asks too; a no keeps the directory objects of the removed states.
    let (status, screen) = on_a_terminal(root.command(&["gc"]), b"n\n");
    assert_eq!(status.code(), Some(1), "{screen}");
    assert!(
        screen.contains("directory objects no state uses"),
        "{screen:?}"
    );
    // -y answers for the person: nothing is asked, and the same objects go.
    let (status, screen) = on_a_terminal(root.command(&["gc", "-y"]), b"");
    assert!(status.success(), "{screen}");
    assert!(!screen.contains("[y/N]"), "{screen:?}");
    let cleared = screen.replace("\x1b[2K", "");
    let line = cleared
        .split(['\r', '\n'])
        .find(|l| l.starts_with("gc: "))
        .unwrap_or_else(|| panic!("no gc line: {screen:?}"));
    assert!(line.starts_with("gc: 0 packages and "), "{line}");
    assert!(
        !line.starts_with("gc: 0 packages and 0 directory"),
        "{line}"
    );
}

#[test]
fn fetch_draws_its_bars_on_a_terminal_and_clears_them() {
    let (root, stones) = root_with_stones();
    // An unsigned repository over file:// holding two of the stones.
    let served = root.scratch("served");
    for stone in &stones[..2] {
        std::fs::copy(stone, served.join(stone.file_name().unwrap())).unwrap();
    }
    root.ok(&["index", &served.display().to_string()]);
    let uri = format!("file://{}/stone.index", served.display());
    root.ok(&["repo", "add", "main", &uri]);
    root.ok(&["repo", "update"]);
    let out = root.scratch("fetched");
    let (status, screen) = on_a_terminal(
        root.command(&["fetch", "p0", "p1", "-o", &out.display().to_string()]),
        b"",
    );
    assert!(status.success(), "{screen}");
    // The total bar was drawn, with its bytes.
    assert!(screen.contains("fetch ["), "never drawn: {screen:?}");
    assert!(screen.contains("KiB"), "no bytes shown: {screen:?}");
    let clear = "\r\x1b[2K";
    let last_clear = screen
        .rfind(clear)
        .unwrap_or_else(|| panic!("never cleared: {screen:?}"));
    // After the last clear: the lines of what was fetched and the summary, no bar.
    let rest = without_escapes(&screen[last_clear + clear.len()..]);
    let lines: Vec<&str> = rest
        .split(['\r', '\n'])
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 3, "{rest:?}");
    assert!(lines[0].starts_with("fetched p0 ("), "{rest:?}");
    assert!(lines[1].starts_with("fetched p1 ("), "{rest:?}");
    assert!(lines[2].starts_with("fetched 2 packages, "), "{rest:?}");
    assert!(!rest.contains('['), "a bar was left behind: {rest:?}");
    // A pipe gets no bar at all.
    std::fs::remove_dir_all(&out).unwrap();
    let output = root.run(&["fetch", "p0", "-o", &out.display().to_string()]);
    assert!(output.status.success());
    assert_eq!(text(&output.stderr), "", "nothing on a piped stderr");
}
