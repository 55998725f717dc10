//! The writer lock: a second writer waits and says so; a reader never waits.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::{self, PIZZA, TestRoot, file, meta, sample, statuses};

#[test]
fn a_second_writer_waits_for_the_lock_and_readers_do_not() {
    let root = TestRoot::new();
    let pizza = sample(PIZZA);
    root.install(&[&pizza]);
    let extra = root.stone(&meta("extra", "1"), vec![file("bin/extra", b"x".to_vec())]);

    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .open(root.moss().join("lock"))
        .unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();

    let mut writer = root
        .command(&["install".as_ref(), extra.as_os_str()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = writer.stderr.take().unwrap();
    let (lines, waiting) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let _ = lines.send(line.unwrap());
        }
    });
    let first = waiting
        .recv_timeout(Duration::from_secs(30))
        .expect("the second writer says it is waiting");
    assert_eq!(
        first,
        format!(
            "waiting for another mossfs process to finish with {} ...",
            root.path().display()
        )
    );
    assert!(
        writer.try_wait().unwrap().is_none(),
        "it waits, it does not fail"
    );

    // A reader answers while the lock is held.
    let mut reader = root
        .command(&["state", "list", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = reader.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "state list blocked on the writer lock"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success());
    let listed = common::parse_states(&common::text(&reader.wait_with_output().unwrap().stdout));
    assert_eq!(statuses(&listed), [(1, "active")]);
    assert!(writer.try_wait().unwrap().is_none(), "still waiting");
    assert_eq!(root.state_id_file().as_deref(), Some("1"));

    drop(lock);
    let output = writer.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(common::text(&output.stdout).starts_with("state 2 active (install extra-1-1): "));
    assert!(
        waiting.try_iter().next().is_none(),
        "nothing else on stderr"
    );
    assert_eq!(statuses(&root.states()), [(1, "committed"), (2, "active")]);
    assert_eq!(
        fs::read(root.usr().join("bin/extra")).unwrap(),
        b"x",
        "the writer finished its job"
    );
    // Hardlinked from the store, as every blitted file is.
    assert_eq!(
        root.usr().join("bin/extra").metadata().unwrap().ino(),
        root.asset_file(mossfs_format::AssetHash::of(b"x"))
            .metadata()
            .unwrap()
            .ino()
    );
}
