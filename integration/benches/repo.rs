//! `cargo bench -p mossfs-integration --bench repo [-- --packages N --downloads N
//! --download-kib N --runs N --work DIR]`
//!
//! The repository figures of issue 8, section 5, each printed with its peer from the same
//! run and the ratio. Every mossfs figure is the wall time of the real release binary:
//!
//! - **(a) Index**: a synthetic repository of `--packages` (50,000) stones with realistic
//!   metadata (summary, description, homepage, license, three dependencies, two providers).
//!   The index's size per package against Debian's `Packages.xz` (about 140 B per package,
//!   the figure), and the time of `mossfs index --sign` against `sha256sum` of the
//!   same stones (the hashing floor every index pays).
//! - **(b) Full update** from nginx on a fresh root (fetch, verify, decode, load into LMDB)
//!   against `curl` downloading the same index and checksum file.
//! - **(c) No-op update**: the requests it makes (from nginx's access log; target one) and
//!   its time (target under 20 ms).
//! - **(d) Downloads**: `mossfs fetch -o DIR --jobs 4` of `--downloads` (200) stones of
//!   `--download-kib` (1024) KiB each, against `curl --parallel --parallel-max 4` of the
//!   same URLs; throughput ratio, target at least 0.9x.
//!
//! Each timed command runs `--runs` (3) times after a warm-up and the best run counts. It
//! needs nginx (`nginx-light`) and curl; without them (b) to (d) are skipped with a reason.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use mossfs_format::{Meta, RelPath, Relation};
use mossfs_integration::bench::{Result, best, run, secs};
use mossfs_integration::corpus::{FAST, SourceEntry, noise, pack_entries};
use mossfs_integration::mossfs_bin;
use mossfs_integration::nginx::Nginx;
use rayon::prelude::*;

/// Debian's `Packages.xz`, bytes per package (the figure).
const DEBIAN_BYTES_PER_PACKAGE: f64 = 140.0;

struct Options {
    packages: usize,
    downloads: usize,
    download_kib: usize,
    runs: usize,
    work: Option<PathBuf>,
}

fn options() -> Result<Options> {
    let mut o = Options {
        packages: 50_000,
        downloads: 200,
        download_kib: 1024,
        runs: 3,
        work: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--packages" => o.packages = value()?.parse()?,
            "--downloads" => o.downloads = value()?.parse()?,
            "--download-kib" => o.download_kib = value()?.parse()?,
            "--runs" => o.runs = value()?.parse()?,
            "--work" => o.work = Some(value()?.into()),
            "--bench" => {}
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    Ok(o)
}

const WORDS: &[&str] = &[
    "library",
    "tool",
    "fast",
    "small",
    "secure",
    "compression",
    "network",
    "parser",
    "daemon",
    "utility",
    "graphics",
    "audio",
    "terminal",
    "editor",
    "runtime",
    "bindings",
    "fonts",
    "kernel",
];

fn words(seed: usize, n: usize) -> String {
    (0..n)
        .map(|i| WORDS[(seed * 7 + i * 13) % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

fn package_meta(i: usize, n: usize) -> Meta {
    let name = format!("pkg{i:05}-{}", WORDS[i % WORDS.len()]);
    let dep = |k: usize| {
        format!(
            "pkg{:05}-{}",
            (i + k * 17) % n,
            WORDS[((i + k * 17) % n) % WORDS.len()]
        )
    };
    let relation = |t: String| Relation::parse(&t).expect("benchmark relations parse");
    Meta {
        version: format!("{}.{}.{}", i % 7, i % 13, i % 5),
        release: 1 + (i % 9) as u64,
        build_release: 1,
        architecture: "x86_64".into(),
        summary: format!("A {} for {}", words(i, 3), words(i + 1, 2)),
        description: format!(
            "{} provides {} and {}. It is maintained upstream and packaged for the tests.",
            name,
            words(i, 6),
            words(i + 3, 5)
        ),
        homepage: format!("https://example.org/projects/{name}"),
        source_id: name.clone(),
        licenses: vec!["MIT".into()],
        depends: vec![
            relation(format!("name({})", dep(1))),
            relation(format!("soname(libpkg{:05}.so.1(x86_64))", (i + 31) % n)),
            relation("soname(libc.so.6(x86_64))".into()),
        ],
        provides: vec![
            relation(format!("soname(libpkg{i:05}.so.1(x86_64))")),
            relation(format!("binary({name})")),
        ],
        name,
        ..Meta::default()
    }
}

fn make_stones(dir: &Path, count: usize, content: usize, prefix: &str) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    (0..count)
        .into_par_iter()
        .map(|i| {
            let mut meta = package_meta(i, count);
            meta.name = format!("{prefix}{}", meta.name);
            let shard = dir.join(format!("{:02x}", i % 256));
            std::fs::create_dir_all(&shard)?;
            let path = RelPath::new(format!("share/{}/data", meta.name)).expect("a valid path");
            let entries = vec![SourceEntry::bytes(path, noise(i as u64, content), 0o644)];
            pack_entries(&shard, &meta, entries, FAST)
        })
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(Into::into)
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
    let key_secret = work.path().join("k.key");
    let key_public = work.path().join("k.pub");

    // (a) Index.
    let repo = work.path().join("repo");
    let started = Instant::now();
    let stones = make_stones(&repo.join("pool"), o.packages, 200, "")?;
    eprintln!(
        "made {} stones in {}",
        stones.len(),
        secs(started.elapsed())
    );
    let index_time = best(
        o.runs,
        || Ok(()),
        || {
            run(Command::new(&mossfs)
                .arg("index")
                .arg(&repo)
                .arg("--sign")
                .arg(&key_secret))?;
            Ok(())
        },
    )?;
    let sha_time = best(
        o.runs,
        || Ok(()),
        || {
            run(Command::new("sh").arg("-c").arg(format!(
                "find {} -name '*.stone' -print0 | xargs -0 sha256sum > /dev/null",
                repo.display()
            )))?;
            Ok(())
        },
    )?;
    let index_size = std::fs::metadata(repo.join("stone.index"))?.len();
    let per_package = index_size as f64 / o.packages as f64;
    println!("(a) index of {} packages", o.packages);
    println!(
        "    size          {index_size} B, {per_package:.1} B per package; Debian Packages.xz {DEBIAN_BYTES_PER_PACKAGE} B -> {:.2}x",
        per_package / DEBIAN_BYTES_PER_PACKAGE
    );
    println!(
        "    mossfs index  {}   sha256sum of the stones {}   -> {:.2}x the hashing floor",
        secs(index_time),
        secs(sha_time),
        index_time.as_secs_f64() / sha_time.as_secs_f64()
    );

    let Some(nginx) = Nginx::start(work.path(), "") else {
        println!("(b)-(d) skipped: nginx is not installed");
        return Ok(());
    };
    if !mossfs_integration::bench::has_tool("curl") {
        println!("(b)-(d) skipped: curl is not installed");
        return Ok(());
    }

    // (b) Full update on a fresh root, against curl fetching the same two files.
    let roots = work.path().join("roots");
    let mut n = 0;
    let root = std::cell::RefCell::new(PathBuf::new());
    let index_url = nginx.url("repo/stone.index");
    let add = |root: &Path| -> Result<()> {
        run(Command::new(&mossfs)
            .args(["repo", "add", "main", &index_url, "--key"])
            .arg(&key_public)
            .arg("--root")
            .arg(root))?;
        Ok(())
    };
    let full = best(
        o.runs,
        || {
            n += 1;
            let fresh = roots.join(n.to_string());
            std::fs::create_dir_all(&fresh)?;
            add(&fresh)?;
            *root.borrow_mut() = fresh;
            Ok(())
        },
        || {
            run(Command::new(&mossfs)
                .args(["repo", "update", "--root"])
                .arg(&*root.borrow()))?;
            Ok(())
        },
    )?;
    let root = root.into_inner();
    let curl_index = best(
        o.runs,
        || Ok(()),
        || {
            run(Command::new("curl")
                .args(["-sf", "-o", "/dev/null", &index_url, "-o", "/dev/null"])
                .arg(format!("{index_url}.checksum")))?;
            Ok(())
        },
    )?;
    println!(
        "(b) full update  mossfs {}   curl of the index and checksum file {}   -> {:.2}x",
        secs(full),
        secs(curl_index),
        full.as_secs_f64() / curl_index.as_secs_f64()
    );

    // (c) No-op update.
    let before = nginx.requests().len();
    let noop = best(
        o.runs,
        || Ok(()),
        || {
            run(Command::new(&mossfs)
                .args(["repo", "update", "--root"])
                .arg(&root))?;
            Ok(())
        },
    )?;
    let requests = (nginx.requests().len() - before) as f64 / (o.runs + 1) as f64;
    println!(
        "(c) no-op update {:.1} ms, {requests:.0} request(s) per update; target 1 request and under 20 ms -> {:.2}x the time budget",
        noop.as_secs_f64() * 1000.0,
        noop.as_secs_f64() * 1000.0 / 20.0
    );

    // (d) Downloads.
    let dl = work.path().join("dl");
    let dl_stones = make_stones(&dl.join("pool"), o.downloads, o.download_kib * 1024, "dl")?;
    run(Command::new(&mossfs)
        .arg("index")
        .arg(&dl)
        .arg("--sign")
        .arg(&key_secret))?;
    let dl_root = work.path().join("dlroot");
    std::fs::create_dir_all(&dl_root)?;
    run(Command::new(&mossfs)
        .args(["repo", "add", "dl", &nginx.url("dl/stone.index"), "--root"])
        .arg(&dl_root))?;
    run(Command::new(&mossfs)
        .args(["repo", "update", "--root"])
        .arg(&dl_root))?;
    let total: u64 = dl_stones
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    let names: Vec<String> = (0..o.downloads)
        .map(|i| format!("dl{}", package_meta(i, o.downloads).name))
        .collect();
    let out = work.path().join("out");
    let fresh = |dir: &Path| -> Result<()> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        Ok(())
    };
    let mossfs_dl = best(
        o.runs,
        || fresh(&out),
        || {
            run(Command::new(&mossfs)
                .args(["fetch", "--jobs", "4", "-o"])
                .arg(&out)
                .args(&names)
                .arg("--root")
                .arg(&dl_root))?;
            Ok(())
        },
    )?;
    let curl_out = work.path().join("curl");
    let mut curl = Command::new("curl");
    curl.args(["-sf", "--parallel", "--parallel-max", "4"]);
    for stone in &dl_stones {
        let rel = stone
            .strip_prefix(work.path())?
            .to_string_lossy()
            .into_owned();
        let file = stone
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        curl.arg(nginx.url(&rel)).arg("-o").arg(curl_out.join(file));
    }
    let curl_dl = best(
        o.runs,
        || fresh(&curl_out),
        || {
            run(&mut curl)?;
            Ok(())
        },
    )?;
    let mib = total as f64 / (1 << 20) as f64;
    println!(
        "(d) {} stones, {mib:.0} MiB: mossfs fetch {} ({:.0} MiB/s)   curl --parallel {} ({:.0} MiB/s)   -> {:.2}x curl's throughput",
        o.downloads,
        secs(mossfs_dl),
        mib / mossfs_dl.as_secs_f64(),
        secs(curl_dl),
        mib / curl_dl.as_secs_f64(),
        curl_dl.as_secs_f64() / mossfs_dl.as_secs_f64()
    );
    Ok(())
}
