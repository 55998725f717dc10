//! `cargo bench -p mossfs-integration --bench delta [-- --pairs NAME=OLD:NEW,... --debs DIR --work DIR --runs N]`
//!
//! Delta stones (issue 12, DESIGN.md §11) on real version pairs that no one here wrote:
//! successive Debian bookworm / bookworm-security versions of a few packages. For each pair
//! it prints, in the same run, the size, the time to make and the time and peak memory
//! (VmHWM, from `/usr/bin/time`) to apply:
//!
//! - the **full new stone** (`mossfs pack`), applied as `mossfs install NEW.stone` on a root
//!   holding the old version: the baseline;
//! - the **mossfs delta** (`mossfs delta OLD NEW`), applied as `mossfs install DELTA.stone`
//!   on the same kind of root;
//! - the seed notes' method, **whole-package `zstd -19 --long=31 --patch-from`** of the old
//!   package's tar onto the new one's, applied with `zstd -d --long=31 --patch-from`;
//! - **only the changed files**, as a tar compressed with `zstd -19 --long=31`.
//!
//! and the totals over the set. The roots updated by the delta and by the full stone are
//! compared with `diff -r`, and the bench fails if they differ.
//!
//! Getting the pairs: `apt-get download NAME=VERSION` into `--debs` (skipped when the
//! `.deb` is already there), `dpkg-deb -x`, then the directories a merged-/usr system
//! links into `/usr` (`bin`, `sbin`, `lib`, `lib64`) are moved into `usr/`, and `usr/` is
//! packed with `mossfs pack`. Files outside `/usr` (`/etc`, `/var`) are left out, as a
//! stone has no place for them.

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mossfs_integration::bench::{run, secs};
use mossfs_integration::mossfs_bin;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// Successive versions found in bookworm and bookworm-security in December 2026.
const PAIRS: &str = "libssl3=3.0.20-1~deb12u2:3.0.22-1~deb12u2,\
                     openssl=3.0.20-1~deb12u2:3.0.22-1~deb12u2,\
                     libc6=2.36-9+deb12u7:2.36-9+deb12u14,\
                     systemd=252.38-1~deb12u1:252.39-1~deb12u2";

struct Options {
    pairs: Vec<(String, String, String)>,
    debs: PathBuf,
    work: Option<PathBuf>,
    runs: usize,
}

fn options() -> Result<Options> {
    let mut pairs = PAIRS.to_owned();
    let mut debs = std::env::temp_dir().join("mossfs-delta-bench-debs");
    let mut work = None;
    let mut runs = 3;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--pairs" => pairs = value()?,
            "--debs" => debs = value()?.into(),
            "--work" => work = Some(value()?.into()),
            "--runs" => runs = value()?.parse()?,
            "--bench" => {}
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let pairs = pairs
        .split(',')
        .map(|p| {
            let (name, versions) = p.trim().split_once('=').ok_or("NAME=OLD:NEW")?;
            let (old, new) = versions.split_once(':').ok_or("NAME=OLD:NEW")?;
            Ok((name.to_owned(), old.to_owned(), new.to_owned()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Options {
        pairs,
        debs,
        work,
        runs,
    })
}

/// Runs a command under `/usr/bin/time`: its wall time and peak resident memory.
fn measured(program: &Path, args: &[&std::ffi::OsStr], work: &Path) -> Result<(Duration, u64)> {
    let report = work.join("time.out");
    let started = Instant::now();
    run(Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&report)
        .arg(program)
        .args(args))?;
    let elapsed = started.elapsed();
    let kib: u64 = fs::read_to_string(&report)?.trim().parse()?;
    Ok((elapsed, kib * 1024))
}

fn size(path: &Path) -> Result<u64> {
    Ok(fs::metadata(path)?.len())
}

fn mib(n: u64) -> String {
    format!("{:.2} MiB", n as f64 / (1 << 20) as f64)
}

/// The `.deb` of `name=version` in `debs`, downloaded if missing.
fn deb(debs: &Path, name: &str, version: &str) -> Result<PathBuf> {
    fs::create_dir_all(debs)?;
    let found = |debs: &Path| -> Result<Option<PathBuf>> {
        // apt writes an epoch's colon as %3a.
        let version = version.replace(':', "%3a");
        for entry in fs::read_dir(debs)? {
            let path = entry?.path();
            let file = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if file.starts_with(&format!("{name}_{version}_")) && file.ends_with(".deb") {
                return Ok(Some(path));
            }
        }
        Ok(None)
    };
    if let Some(path) = found(debs)? {
        return Ok(path);
    }
    run(Command::new("apt-get")
        .args(["download", "-q"])
        .arg(format!("{name}={version}"))
        .current_dir(debs))?;
    found(debs)?.ok_or_else(|| {
        format!(
            "apt-get did not leave {name}={version} in {}",
            debs.display()
        )
        .into()
    })
}

/// Extracts a `.deb` and merges the root's `/usr` links into `usr/`; returns `usr/`'s
/// parent.
fn extract(deb: &Path, into: &Path) -> Result<PathBuf> {
    if into.exists() {
        fs::remove_dir_all(into)?;
    }
    fs::create_dir_all(into)?;
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(into))?;
    fs::create_dir_all(into.join("usr"))?;
    for top in ["bin", "sbin", "lib", "lib64"] {
        let from = into.join(top);
        if fs::symlink_metadata(&from).is_ok_and(|m| m.is_dir()) {
            let to = into.join("usr").join(top);
            fs::create_dir_all(&to)?;
            run(Command::new("cp").arg("-a").arg(from.join(".")).arg(&to))?;
            fs::remove_dir_all(&from)?;
        }
    }
    Ok(into.to_owned())
}

/// A reproducible tar of `dir/usr`, or of the listed paths below `dir`.
fn tar(dir: &Path, out: &Path, list: Option<&Path>) -> Result<()> {
    let mut command = Command::new("tar");
    command
        .args([
            "--sort=name",
            "--mtime=@0",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "-cf",
        ])
        .arg(out)
        .arg("-C")
        .arg(dir);
    match list {
        Some(list) => command.arg("-T").arg(list),
        None => command.arg("usr"),
    };
    run(&mut command)?;
    Ok(())
}

/// Regular files below `dir/usr` that are new or differ from `old/usr`'s, relative to
/// `dir`; and the total size of the new package's files.
fn changed_files(old: &Path, new: &Path) -> Result<(Vec<PathBuf>, usize, u64)> {
    let mut changed = Vec::new();
    let mut total = 0usize;
    let mut bytes = 0u64;
    let mut stack = vec![PathBuf::from("usr")];
    while let Some(rel) = stack.pop() {
        for entry in fs::read_dir(new.join(&rel))? {
            let entry = entry?;
            let rel = rel.join(entry.file_name());
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(rel);
            } else if kind.is_file() {
                total += 1;
                let now = fs::read(new.join(&rel))?;
                bytes += now.len() as u64;
                if fs::read(old.join(&rel)).ok().as_deref() != Some(now.as_slice()) {
                    changed.push(rel);
                }
            }
        }
    }
    changed.sort();
    Ok((changed, total, bytes))
}

#[derive(Default, Clone, Copy)]
struct Row {
    size: u64,
    make: Duration,
    apply: Duration,
    peak: u64,
}

fn best(rows: impl IntoIterator<Item = (Duration, u64)>) -> (Duration, u64) {
    rows.into_iter()
        .fold((Duration::MAX, 0), |(t, m), (t2, m2)| {
            (t.min(t2), m.max(m2))
        })
}

fn main() -> Result<()> {
    let options = options()?;
    let temp;
    let work = match &options.work {
        Some(dir) => {
            fs::create_dir_all(dir)?;
            dir.clone()
        }
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_owned()
        }
    };
    let mossfs = mossfs_bin();
    let zstd = PathBuf::from("zstd");
    println!(
        "delta bench: {} pairs, best of {} applies, work in {}",
        options.pairs.len(),
        options.runs,
        work.display()
    );
    let mut totals = [Row::default(); 4];
    let mut max_peak = [0u64; 4];
    for (name, old_version, new_version) in &options.pairs {
        let pair_dir = work.join(name);
        fs::create_dir_all(&pair_dir)?;
        let old_dir = extract(
            &deb(&options.debs, name, old_version)?,
            &pair_dir.join("old"),
        )?;
        let new_dir = extract(
            &deb(&options.debs, name, new_version)?,
            &pair_dir.join("new"),
        )?;
        let mut stones = Vec::new();
        for (dir, version) in [(&old_dir, old_version), (&new_dir, new_version)] {
            let out = pair_dir.join(format!("{name}-{version}.stone"));
            run(Command::new(&mossfs)
                .arg("pack")
                .arg(dir.join("usr"))
                .arg("-o")
                .arg(&out)
                .args(["--name", name, "--version", version]))?;
            stones.push(out);
        }
        let (old_stone, new_stone) = (&stones[0], &stones[1]);

        // mossfs delta.
        let delta = pair_dir.join(format!("{name}.delta.stone"));
        let (make, make_peak) = measured(
            &mossfs,
            &[
                "delta".as_ref(),
                old_stone.as_os_str(),
                new_stone.as_os_str(),
                "-o".as_ref(),
                delta.as_os_str(),
            ],
            &work,
        )?;
        // Applying: the full stone and the delta, each on a fresh root holding the old
        // version.
        let install =
            |stone: &Path, label: &str, run_no: usize| -> Result<(Duration, u64, PathBuf)> {
                let root = pair_dir.join(format!("root-{label}-{run_no}"));
                if root.exists() {
                    fs::remove_dir_all(&root)?;
                }
                run(Command::new(&mossfs)
                    .arg("install")
                    .arg("--root")
                    .arg(&root)
                    .arg(old_stone))?;
                run(&mut Command::new("sync"))?;
                let (t, m) = measured(
                    &mossfs,
                    &[
                        "install".as_ref(),
                        "--root".as_ref(),
                        root.as_os_str(),
                        stone.as_os_str(),
                    ],
                    &work,
                )?;
                Ok((t, m, root))
            };
        let mut full_runs = Vec::new();
        let mut delta_runs = Vec::new();
        let mut roots = Vec::new();
        for n in 0..options.runs {
            let (t, m, r) = install(new_stone, "full", n)?;
            full_runs.push((t, m));
            roots.push(r);
            let (t, m, r) = install(&delta, "delta", n)?;
            delta_runs.push((t, m));
            roots.push(r);
        }
        let identical = Command::new("diff")
            .args(["-r", "--no-dereference"])
            .arg(roots[0].join("usr"))
            .arg(roots[1].join("usr"))
            .output()?
            .status
            .success();
        if !identical {
            return Err(format!("{name}: the root updated by the delta differs from the one updated by the full stone").into());
        }
        for root in &roots {
            fs::remove_dir_all(root)?;
        }
        let (full_apply, full_peak) = best(full_runs);
        let (delta_apply, delta_peak) = best(delta_runs);

        // zstd --patch-from of the whole package, the seed's method.
        let old_tar = pair_dir.join("old.tar");
        let new_tar = pair_dir.join("new.tar");
        tar(&old_dir, &old_tar, None)?;
        tar(&new_dir, &new_tar, None)?;
        let patch = pair_dir.join("patch.zst");
        let patch_from = format!("--patch-from={}", old_tar.display());
        let (patch_make, _) = measured(
            &zstd,
            &[
                "-q".as_ref(),
                "-f".as_ref(),
                "-19".as_ref(),
                "--long=31".as_ref(),
                patch_from.as_ref(),
                new_tar.as_os_str(),
                "-o".as_ref(),
                patch.as_os_str(),
            ],
            &work,
        )?;
        let rebuilt = pair_dir.join("rebuilt.tar");
        let mut patch_runs = Vec::new();
        for _ in 0..options.runs {
            patch_runs.push(measured(
                &zstd,
                &[
                    "-q".as_ref(),
                    "-f".as_ref(),
                    "-d".as_ref(),
                    "--long=31".as_ref(),
                    patch_from.as_ref(),
                    patch.as_os_str(),
                    "-o".as_ref(),
                    rebuilt.as_os_str(),
                ],
                &work,
            )?);
        }
        let (patch_apply, patch_peak) = best(patch_runs);
        if fs::read(&rebuilt)? != fs::read(&new_tar)? {
            return Err(format!("{name}: zstd --patch-from did not rebuild the tar").into());
        }

        // Only the changed files, compressed together.
        let (changed, total_files, plain) = changed_files(&old_dir, &new_dir)?;
        let list = pair_dir.join("changed.list");
        let text: String = changed
            .iter()
            .map(|p| format!("{}\n", p.display()))
            .collect();
        fs::write(&list, text)?;
        let changed_tar = pair_dir.join("changed.tar");
        tar(&new_dir, &changed_tar, Some(&list))?;
        let changed_zst = pair_dir.join("changed.tar.zst");
        let (changed_make, _) = measured(
            &zstd,
            &[
                "-q".as_ref(),
                "-f".as_ref(),
                "-19".as_ref(),
                "--long=31".as_ref(),
                changed_tar.as_os_str(),
                "-o".as_ref(),
                changed_zst.as_os_str(),
            ],
            &work,
        )?;

        let rows = [
            Row {
                size: size(new_stone)?,
                make: Duration::ZERO,
                apply: full_apply,
                peak: full_peak,
            },
            Row {
                size: size(&delta)?,
                make,
                apply: delta_apply,
                peak: delta_peak,
            },
            Row {
                size: size(&patch)?,
                make: patch_make,
                apply: patch_apply,
                peak: patch_peak,
            },
            Row {
                size: size(&changed_zst)?,
                make: changed_make,
                apply: Duration::ZERO,
                peak: 0,
            },
        ];
        let labels = [
            "full new stone: mossfs install NEW.stone",
            "mossfs delta: mossfs install DELTA.stone",
            "zstd -19 --long=31 --patch-from (whole)",
            "only changed files, tar | zstd -19 --long=31",
        ];
        println!();
        println!(
            "{name} {old_version} -> {new_version}: {} of {total_files} files changed, {} of files in the new version; making the delta peaked at {}",
            changed.len(),
            mib(plain),
            mib(make_peak)
        );
        println!(
            "  {:<46} {:>11} {:>8} {:>10} {:>10} {:>8} {:>11}",
            "", "size", "vs full", "make", "apply", "vs full", "apply peak"
        );
        for (i, (label, row)) in labels.iter().zip(rows).enumerate() {
            let vs = row.size as f64 / rows[0].size as f64;
            let make = if i == 0 {
                "(pack)".to_owned()
            } else {
                secs(row.make)
            };
            let (apply, apply_vs, peak) = if i == 3 {
                ("-".to_owned(), "-".to_owned(), "-".to_owned())
            } else {
                (
                    secs(row.apply),
                    format!(
                        "{:.2}x",
                        row.apply.as_secs_f64() / rows[0].apply.as_secs_f64()
                    ),
                    mib(row.peak),
                )
            };
            println!(
                "  {label:<46} {:>11} {vs:>7.3}x {make:>10} {apply:>10} {apply_vs:>8} {peak:>11}",
                mib(row.size)
            );
            totals[i].size += row.size;
            totals[i].make += row.make;
            totals[i].apply += row.apply;
            max_peak[i] = max_peak[i].max(row.peak);
        }
        println!(
            "  mossfs delta / whole-package --patch-from: {:.3}x the size",
            rows[1].size as f64 / rows[2].size as f64
        );
    }
    println!();
    println!("totals over the set (apply peak: the largest of any pair)");
    let names = [
        "full new stones",
        "mossfs deltas",
        "zstd --patch-from",
        "only changed files",
    ];
    for (i, name) in names.iter().enumerate() {
        println!(
            "  {name:<20} {:>11} {:>7.3}x of full   make {:>10}   apply {:>10}   peak {:>11}",
            mib(totals[i].size),
            totals[i].size as f64 / totals[0].size as f64,
            secs(totals[i].make),
            secs(totals[i].apply),
            mib(max_peak[i])
        );
    }
    println!(
        "  mossfs deltas / whole-package --patch-from: {:.3}x the size (target <= 1.0x); \
         delta apply / full-stone install: {:.2}x the time (target <= 1.0x); \
         largest delta apply peak {} (target <= 256 MiB)",
        totals[1].size as f64 / totals[2].size as f64,
        totals[1].apply.as_secs_f64() / totals[0].apply.as_secs_f64(),
        mib(max_peak[1])
    );
    Ok(())
}
