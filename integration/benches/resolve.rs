//! `cargo bench -p mossfs-integration --bench resolve [-- --packages N --closure N
//! --installed N --updates N --stones N --stone-kib N --runs N --work DIR --keep]`
//!
//! The figures of issue 10, section 5, each printed with its peer or budget from the same
//! run and the ratio. Every mossfs figure is the wall time of the real release binary,
//! process start included:
//!
//! - **(a) Solving** over a synthetic repository of `--packages` (50,000) packages with
//!   realistic provider fan-out, published with `mossfs index`, added with `repo add` and
//!   loaded with `repo update` over `file://` (see `package_meta` for its shape: sonames,
//!   pkgconfig names and binaries, ten binary names with 50 providers each, popular
//!   libraries everything needs). `install --dry-run` of a package whose closure
//!   is `--closure` (500) packages, with warm caches, against its 50 ms budget; then, with
//!   `--installed` (2,000) packages installed and a second repository of higher priority
//!   offering `--updates` (200) of them at a newer release, `sync --dry-run` against its
//!   200 ms budget. The floor beside them is `mossfs list installed` on the same root: a
//!   process start, the root opened, a database read.
//! - **(b) Pipelined install**: `install` of `--stones` (200) packages of `--stone-kib`
//!   (1024) KiB each from nginx on a fresh root (downloaded and unpacked at once), against
//!   two steps: `mossfs fetch` into the cache, then the same `install`; and against `curl
//!   --parallel --parallel-max 4` into a folder, then `install` of those files. Target: at
//!   most 0.7x the two steps' sum.
//!
//! Each timed command runs `--runs` (3) times after a warm-up and the best run counts. (b)
//! needs nginx (`nginx-light`) and curl; without them it is skipped with a reason.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mossfs_format::{Meta, RelPath, Relation};
use mossfs_integration::bench::{Result, best, ms, run, secs};
use mossfs_integration::corpus::{FAST, SourceEntry, noise, pack_entries};
use mossfs_integration::mossfs_bin;
use mossfs_integration::nginx::Nginx;
use rayon::prelude::*;

struct Options {
    packages: usize,
    closure: usize,
    installed: usize,
    updates: usize,
    stones: usize,
    stone_kib: usize,
    runs: usize,
    work: Option<PathBuf>,
    /// Leave the work folder behind (its path is printed), to profile against its roots.
    keep: bool,
}

fn options() -> Result<Options> {
    let mut o = Options {
        packages: 50_000,
        closure: 500,
        installed: 2_000,
        updates: 200,
        stones: 200,
        stone_kib: 1024,
        runs: 3,
        work: None,
        keep: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--packages" => o.packages = value()?.parse()?,
            "--closure" => o.closure = value()?.parse()?,
            "--installed" => o.installed = value()?.parse()?,
            "--updates" => o.updates = value()?.parse()?,
            "--stones" => o.stones = value()?.parse()?,
            "--stone-kib" => o.stone_kib = value()?.parse()?,
            "--runs" => o.runs = value()?.parse()?,
            "--work" => o.work = Some(value()?.into()),
            "--keep" => o.keep = true,
            "--bench" => {}
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    if o.closure > o.installed
        || o.installed + TOOLS * TOOL_FAN_OUT > o.packages
        || o.updates > o.installed
    {
        return Err(
            "need closure <= installed, installed + 500 <= packages and updates <= installed"
                .into(),
        );
    }
    Ok(o)
}

/// How many packages provide each `binary(tool-K)`.
const TOOL_FAN_OUT: usize = 50;
/// How many such tool names the chain needs.
const TOOLS: usize = 10;
/// The popular libraries every package needs (think libc, zlib, openssl): the first
/// packages of the chain.
const POPULAR: usize = 20;

fn name(i: usize) -> String {
    format!("p{i:05}")
}

/// Package `i` of the synthetic universe, in three parts:
///
/// - below `chain`, one closure: each package needs the soname of the one before it, the
///   pkgconfig name of the one at half its index, a popular library's soname and one of
///   `TOOLS` binaries, so installing package `k < chain` pulls in exactly `0..=k` and a
///   provider of each tool it reaches;
/// - the next `TOOLS * TOOL_FAN_OUT` packages provide those binaries, 50 providers each,
///   needing only a popular library: the solver picks one among 50 for each;
/// - the rest need three packages of the chain each (by soname, pkgconfig and a popular
///   library), which gives the reverse fan-out of a real distribution.
///
/// Every package provides its name, a soname, a pkgconfig name and a binary.
fn package_meta(i: usize, chain: usize, release: u64) -> Meta {
    let relation = |t: String| Relation::parse(&t).expect("benchmark relations parse");
    let soname = |k: usize| relation(format!("soname(lib{}.so.1(x86_64))", name(k)));
    let tools_end = chain + TOOLS * TOOL_FAN_OUT;
    let n = name(i);
    let mut depends = Vec::new();
    let mut provides = vec![
        soname(i),
        relation(format!("pkgconfig({n})")),
        relation(format!("binary({n})")),
    ];
    if i == 0 {
    } else if i < chain {
        depends.push(soname(i - 1));
        depends.push(relation(format!("pkgconfig({})", name(i / 2))));
        depends.push(soname(i % POPULAR.min(i)));
        depends.push(relation(format!("binary(tool-{})", i % TOOLS)));
    } else if i < tools_end {
        depends.push(soname(i % POPULAR));
        provides.push(relation(format!("binary(tool-{})", (i - chain) % TOOLS)));
    } else {
        depends.push(soname((i * 7919) % chain));
        depends.push(relation(format!(
            "pkgconfig({})",
            name((i * 104_729) % chain)
        )));
        depends.push(soname(i % POPULAR));
    }
    Meta {
        name: n.clone(),
        version: format!("1.{release}"),
        release,
        build_release: 1,
        architecture: "x86_64".into(),
        summary: format!("Synthetic package {i}"),
        description: format!("{n}, one of a synthetic distribution for the solver benchmark."),
        homepage: format!("https://example.org/{n}"),
        source_id: n.clone(),
        licenses: vec!["MIT".into()],
        depends,
        provides,
        ..Meta::default()
    }
}

/// Packs `indices` into `dir` (256 subfolders), each with one file of `content` bytes.
fn make_stones(
    dir: &Path,
    indices: &[usize],
    content: usize,
    meta: impl Fn(usize) -> Meta + Sync,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    indices
        .par_iter()
        .map(|&i| {
            let meta = meta(i);
            let shard = dir.join(format!("{:02x}", i % 256));
            std::fs::create_dir_all(&shard)?;
            let path = RelPath::new(format!("share/{}/r{}", meta.name, meta.release))
                .expect("a valid path");
            let entries = vec![SourceEntry::bytes(
                path,
                noise(i as u64 * 31 + meta.release, content),
                0o644,
            )];
            pack_entries(&shard, &meta, entries, FAST)
        })
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(Into::into)
}

/// A `mossfs` command on `root`.
fn on(mossfs: &Path, root: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(mossfs);
    command.args(args).arg("--root").arg(root);
    command
}

/// The number of entries of the JSON array `field` in `text`, counted without a JSON
/// library: every package object has one `"explicit":` key.
fn count_key(text: &str, key: &str) -> usize {
    text.matches(&format!("\"{key}\":")).count()
}

fn solving(o: &Options, mossfs: &Path, work: &Path, key: &Path) -> Result<()> {
    let repo = work.join("universe");
    let started = Instant::now();
    let all: Vec<usize> = (0..o.packages).collect();
    make_stones(&repo.join("pool"), &all, 64, |i| {
        package_meta(i, o.installed, 1)
    })?;
    run(Command::new(mossfs)
        .arg("index")
        .arg(&repo)
        .arg("--sign")
        .arg(key))?;
    let root = work.join("root");
    std::fs::create_dir_all(&root)?;
    let uri = format!("file://{}/stone.index", repo.display());
    run(&mut on(mossfs, &root, &["repo", "add", "main", &uri]))?;
    run(&mut on(mossfs, &root, &["repo", "update"]))?;
    eprintln!(
        "made, indexed and loaded {} packages in {}",
        o.packages,
        secs(started.elapsed())
    );

    // install --dry-run of a closure of `closure` packages.
    let target = name(o.closure - 1);
    let plan = run(&mut on(
        mossfs,
        &root,
        &["--json", "install", "--dry-run", &target],
    ))?;
    let closure = count_key(&plan, "explicit");
    let install = best(
        o.runs,
        || Ok(()),
        || {
            run(&mut on(mossfs, &root, &["install", "--dry-run", &target]))?;
            Ok(())
        },
    )?;

    // `installed` packages installed, then `updates` of them offered at a newer release.
    let started = Instant::now();
    run(&mut on(mossfs, &root, &["install", &name(o.installed - 1)]))?;
    eprintln!(
        "installed {} packages in {}",
        o.installed,
        secs(started.elapsed())
    );
    let step = o.installed / o.updates.max(1);
    let updated: Vec<usize> = (0..o.updates).map(|k| k * step).collect();
    let upd = work.join("updates");
    make_stones(&upd.join("pool"), &updated, 64, |i| {
        package_meta(i, o.installed, 2)
    })?;
    run(Command::new(mossfs)
        .arg("index")
        .arg(&upd)
        .arg("--sign")
        .arg(key))?;
    let uri = format!("file://{}/stone.index", upd.display());
    run(&mut on(
        mossfs,
        &root,
        &["repo", "add", "updates", &uri, "--priority", "20"],
    ))?;
    run(&mut on(mossfs, &root, &["repo", "update"]))?;
    let plan = run(&mut on(mossfs, &root, &["--json", "sync", "--dry-run"]))?;
    let changes = count_key(&plan, "change");
    let sync = best(
        o.runs,
        || Ok(()),
        || {
            run(&mut on(mossfs, &root, &["sync", "--dry-run"]))?;
            Ok(())
        },
    )?;
    let floor = best(
        o.runs,
        || Ok(()),
        || {
            run(&mut on(mossfs, &root, &["list", "installed"]))?;
            Ok(())
        },
    )?;
    println!(
        "(a) over {} available packages; floor: list installed of {} packages {}",
        o.packages,
        o.installed,
        ms(floor)
    );
    println!(
        "    install --dry-run, closure of {closure} packages   {}   budget 50 ms -> {:.2}x the budget",
        ms(install),
        install.as_secs_f64() / 0.050
    );
    println!(
        "    sync --dry-run, {} installed, {changes} changes   {}   budget 200 ms -> {:.2}x the budget",
        o.installed,
        ms(sync),
        sync.as_secs_f64() / 0.200
    );
    Ok(())
}

fn pipelined(o: &Options, mossfs: &Path, work: &Path, key: &Path) -> Result<()> {
    let Some(nginx) = Nginx::start(work, "") else {
        println!("(b) skipped: nginx is not installed");
        return Ok(());
    };
    if !mossfs_integration::bench::has_tool("curl") {
        println!("(b) skipped: curl is not installed");
        return Ok(());
    }
    let dir = work.join("pipe");
    let indices: Vec<usize> = (0..o.stones).collect();
    let stones = make_stones(&dir.join("pool"), &indices, o.stone_kib * 1024, |i| {
        let mut m = package_meta(i, o.stones, 1);
        m.name = format!("dl{i:05}");
        m.depends.clear();
        m.provides.clear();
        m
    })?;
    run(Command::new(mossfs)
        .arg("index")
        .arg(&dir)
        .arg("--sign")
        .arg(key))?;
    let total: u64 = stones
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    let names: Vec<String> = indices.iter().map(|i| format!("dl{i:05}")).collect();
    let index_url = nginx.url("pipe/stone.index");

    // A fresh root with the repository added and updated, for every run: untimed.
    let roots = work.join("roots");
    let mut n = 0;
    let root = std::cell::RefCell::new(PathBuf::new());
    let mut fresh = || -> Result<()> {
        n += 1;
        let path = roots.join(n.to_string());
        std::fs::create_dir_all(&path)?;
        run(&mut on(mossfs, &path, &["repo", "add", "pipe", &index_url]))?;
        run(&mut on(mossfs, &path, &["repo", "update"]))?;
        *root.borrow_mut() = path;
        Ok(())
    };
    let install = |root: &Path| -> Result<()> {
        let mut args = vec!["install"];
        args.extend(names.iter().map(String::as_str));
        run(&mut on(mossfs, root, &args))?;
        Ok(())
    };

    let one_step = best(o.runs, &mut fresh, || install(&root.borrow()))?;
    // Two steps: fetch into the cache, then the same install (which finds every stone
    // cached).
    let mut fetch_time = Duration::MAX;
    let mut then_install = Duration::MAX;
    for _ in 0..o.runs.max(1) + 1 {
        fresh()?;
        let path = root.borrow().clone();
        let mut args = vec!["fetch", "--jobs", "4"];
        args.extend(names.iter().map(String::as_str));
        let started = Instant::now();
        run(&mut on(mossfs, &path, &args))?;
        let fetched = started.elapsed();
        let started = Instant::now();
        install(&path)?;
        let installed = started.elapsed();
        if fetched + installed < fetch_time.saturating_add(then_install) {
            fetch_time = fetched;
            then_install = installed;
        }
    }
    // curl into a folder, then install of the files.
    let curl_out = work.join("curl");
    let mut curl = Command::new("curl");
    curl.args(["-sf", "--parallel", "--parallel-max", "4"]);
    let mut files = Vec::new();
    for stone in &stones {
        let rel = stone.strip_prefix(work)?.to_string_lossy().into_owned();
        let file = curl_out.join(stone.file_name().unwrap_or_default());
        curl.arg(nginx.url(&rel)).arg("-o").arg(&file);
        files.push(file);
    }
    let mut curl_time = Duration::MAX;
    let mut local_install = Duration::MAX;
    for _ in 0..o.runs.max(1) + 1 {
        let _ = std::fs::remove_dir_all(&curl_out);
        std::fs::create_dir_all(&curl_out)?;
        let path = roots.join(format!("local{n}"));
        n += 1;
        std::fs::create_dir_all(&path)?;
        let started = Instant::now();
        run(&mut curl)?;
        let fetched = started.elapsed();
        let mut command = Command::new(mossfs);
        command.arg("install").args(&files).arg("--root").arg(&path);
        let started = Instant::now();
        run(&mut command)?;
        let installed = started.elapsed();
        if fetched + installed < curl_time.saturating_add(local_install) {
            curl_time = fetched;
            local_install = installed;
        }
    }
    let mib = total as f64 / (1 << 20) as f64;
    println!(
        "(b) {} stones, {mib:.0} MiB from nginx: install (pipelined) {}",
        o.stones,
        secs(one_step)
    );
    let two = fetch_time + then_install;
    println!(
        "    mossfs fetch {} + install {} = {}   -> {:.2}x the two steps (target <= 0.7x)",
        secs(fetch_time),
        secs(then_install),
        secs(two),
        one_step.as_secs_f64() / two.as_secs_f64()
    );
    let two = curl_time + local_install;
    println!(
        "    curl --parallel {} + install FILES {} = {}   -> {:.2}x the two steps",
        secs(curl_time),
        secs(local_install),
        secs(two),
        one_step.as_secs_f64() / two.as_secs_f64()
    );
    Ok(())
}

fn main() -> Result<()> {
    let o = options()?;
    let work = match &o.work {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    let mossfs = mossfs_bin();
    let key = work.path().join("k");
    run(Command::new(&mossfs).arg("keygen").arg(&key))?;
    let key = work.path().join("k.key");
    solving(&o, &mossfs, work.path(), &key)?;
    pipelined(&o, &mossfs, work.path(), &key)?;
    if o.keep {
        eprintln!("kept {}", work.keep().display());
    }
    Ok(())
}
