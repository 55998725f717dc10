//! `mossfs demo`: the main job on built-in sample data, in a throwaway sandbox.
//!
//! It writes a small tree that is compiled into the binary (an executable, a symlink, a
//! duplicate file, an empty file, an empty directory and a private one), then runs the real
//! commands on it, one printed step at a time: `pack`, `inspect --check`, `extract`, and a
//! comparison of the extracted tree with the sample. Then the whole story of a managed root,
//! in a sandbox root: install version 1, publish version 2 in a repository and find it there,
//! make a delta from version 1 to version 2 and stage
//! version 2 from it as a candidate, mount the candidate
//! and compare it with the live `/usr`, commit it, roll back, and unmount. Nothing outside
//! the sandbox (a fresh temporary directory) is touched.

use std::io::Write;
use std::path::Path;

use mossfs_format::{DEFAULT_LEVEL, RelPath};
use mossfs_fs::dirfd::{Attrs, DEFAULT_DIR_MODE, DirFd};

use crate::error::CliError;
use crate::pack::scan::{self, Entry};
use crate::pack::{self, MetaFields};
use crate::{extract, inspect};

/// Arguments of `mossfs demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep the sandbox afterwards and print where it is.
    #[arg(long)]
    pub keep: bool,
}

/// One entry of the sample tree.
enum Sample {
    File(&'static str, u32, &'static [u8]),
    Symlink(&'static str, &'static str),
    Dir(&'static str, u32),
}

const README: &[u8] = b"hello: the smallest package mossfs can think of.\n";

/// The sample package, as it would sit below /usr.
const SAMPLE: &[Sample] = &[
    Sample::File(
        "bin/hello",
        0o755,
        b"#!/bin/sh\necho 'hello from a stone'\n",
    ),
    Sample::Symlink("bin/hi", "hello"),
    Sample::File("share/hello/greeting.txt", 0o644, b"Hello, world!\n"),
    Sample::File("share/hello/README", 0o644, README),
    Sample::File("share/doc/hello/README", 0o644, README),
    Sample::File("share/hello/empty", 0o644, b""),
    Sample::Dir("share/hello/plugins", 0o755),
    Sample::Dir("lib/hello/private", 0o700),
    Sample::File("lib/hello/private/key", 0o600, b"not really a secret\n"),
];

/// Runs the demo.
pub fn run(args: &Args, out: &mut dyn Write) -> Result<(), CliError> {
    let sandbox = tempfile::Builder::new()
        .prefix("mossfs-demo-")
        .tempdir()
        .map_err(CliError::Sandbox)?;
    let usr = sandbox.path().join("usr");
    let stone = sandbox.path().join("hello-1.0-1-1.stone");
    let extracted = sandbox.path().join("extracted");
    writeln!(
        out,
        "mossfs demo: pack, inspect and extract a built-in sample tree in {}",
        sandbox.path().display()
    )?;

    step(out, 1, "write the sample tree")?;
    write_sample(&usr)?;
    writeln!(
        out,
        "wrote {} entries to {}",
        SAMPLE.len() + 1,
        usr.display()
    )?;

    step(out, 2, "mossfs pack usr -o hello-1.0-1-1.stone")?;
    let pack_args = sample_pack_args(&usr, &stone, "1.0");
    pack::run(&pack_args, out)?;

    step(out, 3, "mossfs inspect --check hello-1.0-1-1.stone")?;
    let inspect_args = inspect::Args {
        files: vec![stone.clone()],
        check: true,
        json: false,
    };
    inspect::run(&inspect_args, out)?;

    step(out, 4, "mossfs extract hello-1.0-1-1.stone -o extracted")?;
    let extract_args = extract::Args {
        files: vec![stone],
        output: extracted.clone(),
    };
    extract::run(&extract_args, out)?;

    step(out, 5, "compare the extracted tree with the sample")?;
    let compared = compare(&usr, &extracted)?;
    writeln!(
        out,
        "identical: {compared} entries with the same types, modes, owners, link texts and bytes"
    )?;

    story(sandbox.path(), out)?;

    if args.keep {
        let kept = sandbox.keep();
        writeln!(out, "\nsandbox kept at {}", kept.display())?;
    } else {
        writeln!(out, "\nsandbox removed (pass --keep to look around in it)")?;
    }
    Ok(())
}

/// `mossfs pack DIR -o OUT --name hello --version VERSION ...` for the sample package.
fn sample_pack_args(dir: &Path, output: &Path, version: &str) -> pack::Args {
    pack::Args {
        dir: dir.to_owned(),
        output: output.to_owned(),
        meta: None,
        level: DEFAULT_LEVEL,
        threads: None,
        fields: MetaFields {
            name: Some("hello".into()),
            version: Some(version.into()),
            summary: Some("The mossfs demo package".into()),
            licenses: vec!["MPL-2.0".into()],
            provides: vec!["binary(hello)".into()],
            ..MetaFields::default()
        },
    }
}

/// Steps in the whole demo.
const STEPS: usize = 17;

fn step(out: &mut dyn Write, n: usize, what: &str) -> Result<(), CliError> {
    writeln!(out, "\n[{n}/{STEPS}] {what}")?;
    out.flush()?;
    Ok(())
}

/// Writes [`SAMPLE`] below `usr` with exact modes, through the same safe primitives the
/// extractor uses.
fn write_sample(usr: &Path) -> Result<(), CliError> {
    std::fs::create_dir(usr).map_err(CliError::Sandbox)?;
    let root = DirFd::open(usr)?;
    let rel = |path: &str| RelPath::new(path).expect("sample paths are valid");
    let parent_of = |path: &RelPath| match path.parent() {
        Some(parent) => root.create_dir_all_beneath(&parent, DEFAULT_DIR_MODE),
        None => DirFd::open(usr),
    };
    for sample in SAMPLE {
        match *sample {
            Sample::File(path, mode, bytes) => {
                let path = rel(path);
                let parent = parent_of(&path)?;
                let name = path.file_name();
                let mut file = parent.create_file(name, 0o600)?;
                file.write_all(bytes).map_err(CliError::Sandbox)?;
                parent.set_file_attrs(name, &file, Attrs { mode, owner: None })?;
            }
            Sample::Symlink(path, target) => {
                let path = rel(path);
                parent_of(&path)?.symlink(target.as_bytes(), path.file_name())?;
            }
            Sample::Dir(path, mode) => {
                let path = rel(path);
                parent_of(&path)?.create_dir(path.file_name(), mode)?;
            }
        }
    }
    // A manual of 64 KiB that does not compress, the same in both versions: what a delta
    // saves, since only the greeting and the news change between 1.0 and 2.0.
    let parent = parent_of(&rel("share/doc/hello/manual"))?;
    let mut file = parent.create_file("manual".as_ref(), 0o600)?;
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let manual: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[3]
        })
        .collect();
    file.write_all(&manual).map_err(CliError::Sandbox)?;
    parent.set_file_attrs(
        "manual".as_ref(),
        &file,
        Attrs {
            mode: 0o644,
            owner: None,
        },
    )?;
    Ok(())
}

/// Walks both trees and returns how many entries they share, or the first difference.
fn compare(expected: &Path, found: &Path) -> Result<usize, CliError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .map_err(|e| CliError::Sandbox(std::io::Error::other(e)))?;
    let expected = scan::scan(expected, &pool)?;
    let found = scan::scan(found, &pool)?;
    for (want, got) in expected.iter().zip(&found) {
        if want != got {
            return Err(mismatch(want, describe(want), describe(got)));
        }
    }
    if let Some(extra) = found.get(expected.len()) {
        return Err(mismatch(extra, "nothing".into(), describe(extra)));
    }
    if let Some(missing) = expected.get(found.len()) {
        return Err(mismatch(missing, describe(missing), "nothing".into()));
    }
    Ok(expected.len())
}

fn describe(entry: &Entry) -> String {
    format!(
        "{} {:06o} {}:{} {:?}",
        entry.path, entry.mode, entry.uid, entry.gid, entry.kind
    )
}

fn mismatch(at: &Entry, want: String, got: String) -> CliError {
    CliError::DemoMismatch {
        path: at.path.to_string(),
        difference: format!("expected {want}, found {got}"),
    }
}

/// The managed-root half of the demo: install, stage an upgrade, preview it through FUSE,
/// commit, roll back, unmount.
fn story(sandbox: &Path, out: &mut dyn Write) -> Result<(), CliError> {
    use crate::commands::{RootArg, install, mount, state};

    let root = sandbox.join("root");
    let mnt = sandbox.join("mnt");
    std::fs::create_dir_all(&mnt).map_err(CliError::Sandbox)?;
    let root_arg = || RootArg { root: root.clone() };
    let v1 = sandbox.join("hello-1.0-1-1.stone");
    let v2_tree = sandbox.join("usr-2.0");
    let v2 = sandbox.join("hello-2.0-2-1.stone");

    step(
        out,
        6,
        "make version 2.0: a new greeting, a NEWS file, no empty file",
    )?;
    write_sample(&v2_tree)?;
    let new_greeting = b"Hello again, from version 2.0!\n";
    std::fs::write(v2_tree.join("share/hello/greeting.txt"), new_greeting)
        .map_err(CliError::Sandbox)?;
    std::fs::write(
        v2_tree.join("share/hello/NEWS"),
        b"2.0: a friendlier greeting\n",
    )
    .map_err(CliError::Sandbox)?;
    std::fs::remove_file(v2_tree.join("share/hello/empty")).map_err(CliError::Sandbox)?;
    let mut v2_args = sample_pack_args(&v2_tree, &v2, "2.0");
    // A repository orders releases, not version strings.
    v2_args.fields.release = Some(2);
    pack::run(&v2_args, out)?;

    // A repository published as upstream's `moss index` does (with the detached checksum
    // file) and served from the file system; a web server is the same to mossfs
    // (`http://`, `https://`).
    let repo = sandbox.join("repo");
    std::fs::create_dir_all(&repo).map_err(CliError::Sandbox)?;
    let run = |words: &[&std::ffi::OsStr], out: &mut dyn Write| crate::run_words(words, out);
    let os = |text: &'static str| std::ffi::OsStr::new(text);
    let in_root = |words: &[&'static str], out: &mut dyn Write| {
        let mut all = vec![os("-D"), root.as_os_str()];
        all.extend(words.iter().map(|w| os(w)));
        run(&all, out)
    };
    let index_uri = format!("file://{}/stone.index", repo.display());
    step(
        out,
        7,
        &format!("publish 1.0: mossfs index repo, mossfs repo add demo {index_uri}"),
    )?;
    std::fs::copy(&v1, repo.join("hello-1.0-1-1.stone")).map_err(CliError::Sandbox)?;
    run(&[os("index"), repo.as_os_str()], out)?;
    run(
        &[
            os("-D"),
            root.as_os_str(),
            os("repo"),
            os("add"),
            os("demo"),
            std::ffi::OsStr::new(&index_uri),
        ],
        out,
    )?;
    in_root(&["repo", "update"], out)?;

    step(
        out,
        8,
        "mossfs install hello (by name, from the repository)",
    )?;
    in_root(&["install", "hello"], out)?;

    step(
        out,
        9,
        "publish 2.0 with a delta from 1.0: mossfs index repo --deltas 1, repo update, search",
    )?;
    std::fs::copy(&v2, repo.join("hello-2.0-2-1.stone")).map_err(CliError::Sandbox)?;
    run(
        &[os("index"), repo.as_os_str(), os("--deltas"), os("1")],
        out,
    )?;
    in_root(&["repo", "update"], out)?;
    in_root(&["search", "hello"], out)?;

    step(
        out,
        10,
        "mossfs sync --dry-run (the bytes to download, with and without the delta)",
    )?;
    in_root(&["sync", "--dry-run"], out)?;

    // Only the head of 2.0's stone is read: its meta, layout and index. The candidate's
    // tree is whole from those; a file's bytes come when the mount first reads it.
    step(out, 11, "mossfs sync --stage (reads only the stone's head)")?;
    in_root(&["sync", "--stage"], out)?;

    step(out, 12, "mossfs mount --candidate mnt")?;
    let mount_args = mount::MountArgs {
        state: None,
        candidate: true,
        debug_view: false,
        foreground: false,
        ready_fd: None,
        root: root_arg(),
        mountpoint: mnt.clone(),
    };
    let mounted = match mount::mount(&mount_args, out) {
        Ok(()) => Some(Unmount(mnt.clone())),
        Err(err) => {
            writeln!(
                out,
                "skipped: cannot mount here ({err}); the rest of the story goes on"
            )?;
            None
        }
    };

    step(out, 13, "compare the live /usr with the mounted candidate")?;
    state::run(
        &state::StateCommand::Diff {
            a: 1,
            b: 2,
            root: root_arg(),
        },
        out,
    )?;
    let live = root.join("usr/share/hello/greeting.txt");
    let read = |path: &Path| std::fs::read_to_string(path).map_err(CliError::Sandbox);
    let show_live = |out: &mut dyn Write| -> Result<(), CliError> {
        let text = read(&live)?;
        writeln!(
            out,
            "live      usr/share/hello/greeting.txt: {}",
            text.trim_end()
        )?;
        Ok(())
    };
    show_live(out)?;
    if mounted.is_some() {
        let preview = read(&mnt.join("usr/share/hello/greeting.txt"))?;
        writeln!(
            out,
            "candidate usr/share/hello/greeting.txt: {}",
            preview.trim_end()
        )?;
        if preview.as_bytes() != new_greeting {
            return Err(demo_mismatch(
                "usr/share/hello/greeting.txt",
                "the candidate's greeting",
            ));
        }
    }

    step(out, 14, "mossfs commit")?;
    install::commit(
        &install::CommitArgs {
            triggers: Default::default(),
            id: None,
            take_over_usr: false,
            root: root_arg(),
        },
        out,
    )?;
    show_live(out)?;
    if read(&live)?.as_bytes() != new_greeting {
        return Err(demo_mismatch(
            "usr/share/hello/greeting.txt",
            "the committed greeting",
        ));
    }

    step(out, 15, "mossfs state activate 1 (roll back)")?;
    state::run(
        &state::StateCommand::Activate {
            triggers: Default::default(),
            id: 1,
            take_over_usr: false,
            root: root_arg(),
        },
        out,
    )?;
    show_live(out)?;

    step(out, 16, "mossfs state list")?;
    state::run(
        &state::StateCommand::List(state::RootOnly { root: root_arg() }),
        out,
    )?;

    step(out, 17, "mossfs umount mnt")?;
    match mounted {
        Some(guard) => {
            // The guard's own unmount, when it drops, then finds nothing to do.
            mount::umount(
                &mount::UmountArgs {
                    mountpoint: guard.0.clone(),
                },
                out,
            )?;
        }
        None => writeln!(out, "nothing was mounted")?,
    }
    Ok(())
}

fn demo_mismatch(path: &str, what: &str) -> CliError {
    CliError::DemoMismatch {
        path: path.to_owned(),
        difference: format!("{what} is not what was packed"),
    }
}

/// Unmounts the demo's mount if a step fails before the last one, so the demo never
/// leaves a mount behind.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = mossfs_fs::fuse::unmount(&self.0);
    }
}
