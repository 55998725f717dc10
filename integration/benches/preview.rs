//! `cargo bench -p mossfs-integration --bench preview [-- --packages N --work DIR]`
//!
//! Previews before download (issue 10 §5): a staged `sync` of `--packages` (200) updated
//! packages served by a real nginx on loopback, against downloading the same stones in
//! full with `mossfs fetch` in the same run.
//!
//! - **Bytes**: what nginx sent for `.stone` requests (its access log's `$body_bytes_sent`)
//!   during `sync --stage`, against during `mossfs fetch` of the 200 new stones. Target:
//!   under 5%.
//! - **Time to a browsable candidate**: `sync --stage`, then `mount --candidate`, then
//!   `ls -lR` of the whole mounted `usr` (every entry's attributes; no file body is read),
//!   against `mossfs fetch -o DIR --jobs 4` of the 200 stones.
//! - For reference, the `commit` that follows (it downloads the 200 bodies, checks each
//!   against its sha256 and the head the candidate was built from, unpacks, blits).
//!
//! Packages are realistic in shape rather than in bytes: 4 to 40 files each, a symlink and
//! an empty directory, content of 4 bits of entropy per byte (zstd about halves it, as it
//! does binaries), 64 KiB to 1 MiB per package. It needs nginx (`nginx-light`) and FUSE;
//! without them it says why and stops.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mossfs_format::{Meta, RelPath};
use mossfs_integration::bench::{Result, run, secs};
use mossfs_integration::corpus::{FAST, SourceEntry, pack_entries};
use mossfs_integration::mossfs_bin;
use mossfs_integration::nginx::Nginx;
use rayon::prelude::*;

struct Options {
    packages: usize,
    work: Option<PathBuf>,
}

fn options() -> Result<Options> {
    let mut o = Options {
        packages: 200,
        work: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--packages" => o.packages = value()?.parse()?,
            "--work" => o.work = Some(value()?.into()),
            "--bench" => {}
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    Ok(o)
}

/// Bytes of 4 bits of entropy each: zstd about halves them.
fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'a' + (x & 15) as u8
        })
        .collect()
}

fn name(i: usize) -> String {
    format!("pkg{i:04}")
}

/// Package `i` at `release`: 4 to 40 files sharing 64 KiB to 1 MiB of content.
fn make_stones(dir: &Path, count: usize, release: u64) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    (0..count)
        .into_par_iter()
        .map(|i| {
            let meta = Meta {
                name: name(i),
                version: format!("{release}.0"),
                release,
                build_release: 1,
                architecture: "x86_64".into(),
                summary: format!("package {i} for the preview benchmark"),
                licenses: vec!["MIT".into()],
                ..Meta::default()
            };
            let files = 4 + i % 37;
            let total = (64 << 10) + (i * 7919 % 16) * (60 << 10);
            let path = |p: String| RelPath::new(p).expect("a valid path");
            let mut entries: Vec<SourceEntry> = (0..files)
                .map(|f| {
                    SourceEntry::bytes(
                        path(format!("lib/{}/module-{f:02}.so", name(i))),
                        content(release * 1_000_000 + (i * 100 + f) as u64, total / files),
                        0o755,
                    )
                })
                .collect();
            entries.push(SourceEntry::symlink(
                path(format!("lib/{}/current.so", name(i))),
                "module-00.so",
            ));
            entries.push(SourceEntry::directory(
                path(format!("share/{}/empty", name(i))),
                0o700,
            ));
            let out = dir.join(format!("{:02x}", i % 256));
            std::fs::create_dir_all(&out)?;
            pack_entries(&out, &meta, entries, FAST)
        })
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(Into::into)
}

fn timed(command: &mut Command) -> Result<Duration> {
    let started = Instant::now();
    run(command)?;
    Ok(started.elapsed())
}

/// Bytes nginx sent for `.stone` requests from log line `from` on, and how many requests.
fn stone_bytes(nginx: &Nginx, from: usize) -> (u64, usize) {
    let lines = nginx.requests();
    let mut bytes = 0;
    let mut count = 0;
    for line in lines.iter().skip(from) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1).is_some_and(|u| u.ends_with(".stone")) {
            bytes += fields
                .get(3)
                .and_then(|b| b.parse::<u64>().ok())
                .unwrap_or(0);
            count += 1;
        }
    }
    (bytes, count)
}

fn main() -> Result<()> {
    let o = options()?;
    let work = match &o.work {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    let mossfs = mossfs_bin();
    let served = work.path().join("served");
    let root = work.path().join("root");
    std::fs::create_dir_all(&root)?;
    let key = work.path().join("k");
    run(Command::new(&mossfs).arg("keygen").arg(&key))?;
    let secret = work.path().join("k.key");
    let public = work.path().join("k.pub");
    let mossfs_root = |args: &[&str]| {
        let mut c = Command::new(&mossfs);
        c.args(args).arg("--root").arg(&root);
        c
    };

    let started = Instant::now();
    make_stones(&served.join("v1"), o.packages, 1)?;
    run(Command::new(&mossfs)
        .arg("index")
        .arg(&served)
        .arg("--sign")
        .arg(&secret))?;
    let Some(nginx) = Nginx::start(&served, "") else {
        println!("skipped: nginx is not installed");
        return Ok(());
    };
    if let Err(e) = mossfs_fs::fuse::check_available() {
        println!("skipped: FUSE is unavailable ({e})");
        return Ok(());
    }
    let index = nginx.url("stone.index");
    run(&mut mossfs_root(&[
        "repo",
        "add",
        "main",
        &index,
        "--key",
        public.to_str().ok_or("a UTF-8 temp path")?,
    ]))?;
    run(&mut mossfs_root(&["repo", "update"]))?;
    let names: Vec<String> = (0..o.packages).map(name).collect();
    let mut install = vec!["install"];
    install.extend(names.iter().map(String::as_str));
    run(&mut mossfs_root(&install))?;
    let new = make_stones(&served.join("v2"), o.packages, 2)?;
    run(Command::new(&mossfs)
        .arg("index")
        .arg(&served)
        .arg("--sign")
        .arg(&secret))?;
    run(&mut mossfs_root(&["repo", "update"]))?;
    let whole: u64 = new
        .iter()
        .map(|s| std::fs::metadata(s).map(|m| m.len()))
        .sum::<std::io::Result<u64>>()?;
    eprintln!(
        "set up {} packages installed and {} updates published in {}",
        o.packages,
        new.len(),
        secs(started.elapsed())
    );

    // The preview: stage, mount, browse.
    let mark = nginx.requests().len();
    let stage = timed(&mut mossfs_root(&["sync", "--stage"]))?;
    let (head_bytes, head_requests) = stone_bytes(&nginx, mark);
    let mnt = work.path().join("mnt");
    std::fs::create_dir_all(&mnt)?;
    let mnt_text = mnt.to_str().ok_or("a UTF-8 temp path")?.to_owned();
    let mount = timed(&mut mossfs_root(&["mount", "--candidate", &mnt_text]))?;
    let browse = timed(
        Command::new("ls")
            .arg("-lR")
            .arg(mnt.join("usr"))
            .stdout(Stdio::null()),
    );
    let (browse_bytes, _) = stone_bytes(&nginx, mark);
    let _ = run(Command::new(&mossfs).arg("umount").arg(&mnt));
    let browse = browse?;
    let preview = stage + mount + browse;

    // The peer: the same stones in full.
    let mark = nginx.requests().len();
    let out = work.path().join("full");
    let mut fetch = vec!["fetch", "-o", out.to_str().ok_or("a UTF-8 temp path")?];
    fetch.extend(names.iter().map(String::as_str));
    fetch.extend(["--jobs", "4"]);
    let full = timed(&mut mossfs_root(&fetch))?;
    let (full_bytes, full_requests) = stone_bytes(&nginx, mark);

    // For reference: the commit that downloads the rest.
    let mark = nginx.requests().len();
    let commit = timed(&mut mossfs_root(&["commit"]))?;
    let (commit_bytes, _) = stone_bytes(&nginx, mark);

    let n = new.len();
    println!(
        "staged sync of {n} updated packages from nginx (stones {:.0} KiB on average, {} in all)",
        whole as f64 / n as f64 / 1024.0,
        mib(whole)
    );
    println!(
        "  bytes   heads {} in {head_requests} requests (+{} while browsing)   full stones {} in {full_requests} requests   -> {:.2}% (target under 5%)",
        mib(head_bytes),
        mib(browse_bytes - head_bytes),
        mib(full_bytes),
        100.0 * head_bytes as f64 / full_bytes as f64
    );
    println!(
        "  time    sync --stage {} + mount {} + ls -lR {} = {}   mossfs fetch --jobs 4 {}   -> {:.2}x",
        secs(stage),
        secs(mount),
        secs(browse),
        secs(preview),
        secs(full),
        preview.as_secs_f64() / full.as_secs_f64()
    );
    println!(
        "  then    commit {} (downloads {} of bodies, checks, unpacks, blits)",
        secs(commit),
        mib(commit_bytes)
    );
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1 << 20) as f64)
}
