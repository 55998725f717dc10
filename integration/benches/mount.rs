//! `cargo bench -p mossfs-integration --bench mount [-- --quick --runs N --entries N --large N
//! --big-files N --big-mib N --only abcd --work DIR]`
//!
//! The mount figures of issue 4, section 8, each measured against its peer in the same run
//! and printed as a ratio. Each state is a synthetic corpus (`corpus::synthetic`) of
//! `--entries` (48,000) and `--large` (250,000) layout entries, installed into a fresh root
//! with the real `mossfs install`; its `ROOT/usr` is the blitted tree the mount is compared
//! with, and `mksquashfs ROOT/usr` makes the squashfuse peer's image.
//!
//! - **(a) Mount to first listing**: wall time from starting `mossfs mount` (which returns
//!   once the mount is ready, its server in the background) to `ls -l MNT/usr/bin` having
//!   answered, the two processes run back to back. Also in process (`MossFs::new`,
//!   `fuse::spawn`, then list and stat `usr/bin`, the database already open) and
//!   `squashfuse -f` + `ls -l` as a peer. Target: under 50 ms at both sizes.
//! - **(b) Full metadata walk** `find DIR -printf '%p %s %m %u %l\n' > /dev/null`: the
//!   blitted tree on ext4 with warm dentry and inode caches, a fresh `mossfs mount` each run
//!   (the kernel knows nothing of it; the database and store pages are warm), and a fresh
//!   `squashfuse` mount each run (its image warm). Targets: at most 1.3x ext4 (issue 13);
//!   faster than squashfuse.
//! - **(c) Reads.** Large: `--big-files` (4) files of `--big-mib` (128) MiB of noise in one
//!   package, installed into a root of their own, read in order with 1 MiB `read`s, cold
//!   (evicted with `posix_fadvise(DONTNEED)` first) and warm, through `mossfs mount` in the
//!   read mode it reports, through an in-process mount that serves reads from the store, and
//!   natively. Target: at least 0.9x native with passthrough. Small: every file under
//!   `usr/share` with `find DIR/share -type f -exec cat {} + > /dev/null`, on fresh mounts,
//!   against native (warm) and squashfuse. Target: at most 1.5x native (issue 13). Then a
//!   fresh mount is compared with the blit path by path: type, mode, uid, gid, size, link
//!   target and every byte must be equal, or the benchmark fails.
//! - **(d) Server memory**: VmRSS of the server pid that `mossfs mount` prints, after
//!   mounting, after a full walk and after reading every small file, and VmHWM. Target:
//!   under 64 MiB at 250,000 entries after a full walk.
//!
//! Page caches are not dropped (beyond the evictions of (c)), so every contender runs once
//! as a warm-up and then `--runs` (5) times in a rotated order, and the best run counts.
//! `--quick` scales everything down for a smoke test; `--only` picks figures. The sizes may
//! also come from `MOSSFS_BENCH_ENTRIES`, `MOSSFS_BENCH_LARGE` and `MOSSFS_BENCH_RUNS`;
//! arguments win. `squashfuse` and `mksquashfs` are optional: without them the peer rows
//! are skipped and the way to install them is printed.
//!
//! Nothing outside the work directory (a fresh temporary directory) is written. Every mount
//! is undone by a guard ([`Mounted`]) however the run ends; a run killed outright (Ctrl-C)
//! leaves its mounts, and the next run clears them before it starts.
//!
//! Map: this file runs the figures; `mounts` makes and undoes every mount; `large` is the
//! large-file half of (c); `report` prints the tables.

#[path = "mount/large.rs"]
mod large;
#[path = "mount/mounts.rs"]
mod mounts;
#[path = "mount/report.rs"]
mod report;

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mossfs_db::{Db, Query, StateId};
use mossfs_fs::fuse::Stats;
use mossfs_integration::corpus::{self, SyntheticSpec};
use mossfs_integration::mossfs_bin;

use large::large_reads;
use mounts::{Mounted, Served, clear_stale_mounts};
use report::{
    mib, print_a, print_b, print_c_large, print_c_small, print_d, print_requests, secs, thousands,
};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// The walk's output format, as in the issue.
const WALK: &str = "%p %s %m %u %l\n";
/// The prefix of every work directory, which the stale-mount sweep looks for.
const PREFIX: &str = "mossfs-bench-mount-";
const MIB: u64 = 1 << 20;

struct Options {
    runs: usize,
    entries: usize,
    large: usize,
    big_files: usize,
    big_mib: u64,
    work: Option<PathBuf>,
    only: String,
}

fn options() -> Result<Options> {
    let env = |name: &str| std::env::var(name).ok();
    let number = |text: Option<String>, default: usize| -> Result<usize> {
        Ok(text
            .map(|t| t.replace(['_', ','], "").parse())
            .transpose()?
            .unwrap_or(default))
    };
    let mut options = Options {
        runs: number(env("MOSSFS_BENCH_RUNS"), 5)?,
        entries: number(env("MOSSFS_BENCH_ENTRIES"), 48_000)?,
        large: number(env("MOSSFS_BENCH_LARGE"), 250_000)?,
        big_files: 4,
        big_mib: 128,
        work: None,
        only: "abcd".to_owned(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--quick" => {
                (options.runs, options.entries, options.large) = (1, 6_000, 30_000);
                (options.big_files, options.big_mib) = (2, 32);
            }
            "--runs" => options.runs = number(Some(value()?), 0)?.max(1),
            "--entries" => options.entries = number(Some(value()?), 0)?,
            "--large" => options.large = number(Some(value()?), 0)?,
            "--big-files" => options.big_files = number(Some(value()?), 0)?,
            "--big-mib" => options.big_mib = number(Some(value()?), 0)? as u64,
            "--work" => options.work = Some(value()?.into()),
            "--only" => options.only = value()?,
            "--bench" => {} // cargo passes it
            other => return Err(format!("unknown argument `{other}`").into()),
        }
    }
    Ok(options)
}

fn main() -> Result<()> {
    let options = options()?;
    mossfs_integration::bench::require_tools(&["find", "ls", "cat", "umount"])?;
    let squash = ["squashfuse", "mksquashfs"]
        .into_iter()
        .all(|tool| Command::new(tool).arg("--help").output().is_ok());
    let parent = options.work.clone().unwrap_or_else(std::env::temp_dir);
    clear_stale_mounts(&parent)?;
    let bench = Bench {
        bin: mossfs_bin(),
        work: tempfile::Builder::new()
            .prefix(PREFIX)
            .tempdir_in(&parent)?,
        runs: options.runs,
        squash,
        mounts: Default::default(),
    };
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "mossfs mount benchmarks: {}, best of {} runs after a warm-up; Linux {}, {} cores; \
         work dir {}",
        bench.bin.display(),
        options.runs,
        kernel.trim(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        bench.work.path().display()
    );
    if !squash {
        println!(
            "squashfuse or mksquashfs is missing: the squashfuse rows are skipped; \
             install them with `apt-get install squashfuse squashfs-tools`"
        );
    }
    let wants = |figure: char| options.only.contains(figure);
    let mut sizes = Vec::new();
    if wants('a') || wants('b') || wants('c') || wants('d') {
        for entries in [options.entries, options.large] {
            if entries > 0 {
                sizes.push(measure(&bench, entries, &wants)?);
            }
        }
    }
    let large = if wants('c') && options.big_files > 0 && options.big_mib > 0 {
        Some(large_reads(&bench, options.big_files, options.big_mib)?)
    } else {
        None
    };
    println!();
    if wants('a') {
        print_a(&sizes);
    }
    if wants('b') {
        print_b(&sizes);
    }
    if wants('c') {
        print_c_small(&sizes);
        if let Some(large) = &large {
            print_c_large(large);
        }
    }
    if wants('b') || wants('c') {
        print_requests(&sizes);
    }
    if wants('d') {
        print_d(&sizes);
    }
    Ok(())
}

/// The binary, the work directory and how many runs count.
struct Bench {
    bin: PathBuf,
    work: tempfile::TempDir,
    runs: usize,
    /// Whether `squashfuse` and `mksquashfs` are installed.
    squash: bool,
    /// Mount points made so far; each mount gets a fresh one.
    mounts: std::cell::Cell<usize>,
}

impl Bench {
    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// A fresh, empty directory to mount on.
    fn mountpoint(&self) -> Result<PathBuf> {
        let n = self.mounts.get();
        self.mounts.set(n + 1);
        let path = self.path("mnt").join(n.to_string());
        fs::create_dir_all(&path)?;
        Ok(path)
    }

    /// The best of a warm-up and `runs` rounds; `round` gets the round number (0 is the
    /// warm-up) and returns one time per contender, run in an order rotated each round.
    fn rounds<const N: usize>(
        &self,
        mut round: impl FnMut(usize, usize) -> Result<Duration>,
    ) -> Result<[Duration; N]> {
        let mut best = [Duration::MAX; N];
        for run in 0..=self.runs {
            for which in (0..N).map(|k| (k + run) % N) {
                let time = round(run, which)?;
                if run > 0 {
                    best[which] = best[which].min(time);
                }
            }
        }
        Ok(best)
    }
}

/// One synthetic state, installed; its image for squashfuse; its database, opened for
/// in-process mounts.
struct Corpus {
    root: PathBuf,
    image: Option<PathBuf>,
    db: Db,
    state: StateId,
}

fn corpus(bench: &Bench, entries: usize) -> Result<Corpus> {
    let name = format!("s{entries}");
    let started = Instant::now();
    let stones = corpus::synthetic(
        &bench.path(&format!("{name}-stones")),
        &SyntheticSpec::new(entries),
    )?;
    let written = started.elapsed();
    let root = bench.path(&name);
    fs::create_dir(&root)?;
    let mut install = Command::new(&bench.bin);
    install
        .arg("install")
        .arg("--root")
        .arg(&root)
        .args(&stones);
    let (installed, _) = timed(&mut install)?;
    let image = if bench.squash {
        let image = bench.path(&format!("{name}.sqfs"));
        let mut mksquashfs = Command::new("mksquashfs");
        mksquashfs
            .arg(root.join("usr"))
            .arg(&image)
            .args(["-noappend", "-quiet", "-no-progress"]);
        let (time, _) = timed(&mut mksquashfs)?;
        println!(
            "  mksquashfs {name}/usr: {} image in {}",
            mib(fs::metadata(&image)?.len()),
            secs(time)
        );
        Some(image)
    } else {
        None
    };
    let db = Db::open(&root.join(".moss/db"))?;
    let state = db
        .read()?
        .active()?
        .ok_or("mossfs install left no active state")?;
    println!(
        "corpus of {} layout entries: {} stones written in {}, `mossfs install` took {} (one run)",
        thousands(entries),
        stones.len(),
        secs(written),
        secs(installed)
    );
    Ok(Corpus {
        root,
        image,
        db,
        state,
    })
}

/// Figures (a), (b), (c small) and (d) at one size.
#[derive(Default)]
struct Figures {
    entries: usize,
    reads: String,
    /// (a): mount + `ls -l`, of which the mount; in process; squashfuse + `ls -l`.
    listing: [Duration; 4],
    bin_entries: usize,
    /// (b): ext4, fresh mount, squashfuse, the same mount again.
    walk: [Duration; 4],
    walked: [usize; 3],
    /// (c small): ext4, passthrough mount, in-process mount serving from the store, squashfuse.
    small: [Duration; 4],
    small_files: (usize, u64),
    /// (c): what the comparison of a fresh mount with the blit found.
    fidelity: String,
    /// Requests a fresh in-process mount (reads as `mossfs mount` serves them) was sent
    /// by (b)'s walk and by (c)'s small reads.
    requests: Option<[Stats; 2]>,
    /// (d): VmRSS after mount, after the walk, after the small reads; VmHWM; RssAnon
    /// after the walk. In KiB.
    memory: [u64; 5],
}

fn measure(bench: &Bench, entries: usize, wants: &dyn Fn(char) -> bool) -> Result<Figures> {
    let corpus = corpus(bench, entries)?;
    let usr = corpus.root.join("usr");
    let mut figures = Figures {
        entries,
        bin_entries: fs::read_dir(usr.join("bin"))?.count(),
        small_files: files_below(&usr.join("share"))?,
        ..Figures::default()
    };
    if wants('a') {
        figures.listing = listing(bench, &corpus)?;
    }
    if wants('b') {
        (figures.walk, figures.walked) = walks(bench, &corpus)?;
    }
    if wants('b') || wants('c') {
        figures.requests = Some(requests(bench, &corpus)?);
    }
    if wants('c') {
        figures.small = small_reads(bench, &corpus)?;
        let (mounted, _) = bench.mount(&corpus.root)?;
        let paths = same_tree(&usr, &mounted.at.join("usr"))?;
        figures.fidelity = format!(
            "{} paths, every type, mode, uid, gid, size, link target and byte equal to the blit",
            thousands(paths)
        );
    }
    let (mounted, served) = bench.mount(&corpus.root)?;
    figures.reads = served.reads.clone();
    if wants('d') {
        figures.memory = memory(&mounted, &served)?;
    }
    drop(mounted);
    Ok(figures)
}

/// Figure (a).
fn listing(bench: &Bench, corpus: &Corpus) -> Result<[Duration; 4]> {
    let bin = Path::new("usr/bin");
    let mut mount_only = Duration::MAX;
    let best: [Duration; 3] = bench.rounds(|run, which| {
        let started = Instant::now();
        let time = match which {
            0 => {
                let at = bench.mountpoint()?;
                let output = bench.mount_command(&corpus.root, &at).output()?;
                let mounted_in = started.elapsed();
                let (mounted, _) = Mounted::by_cli(bench, at, &output)?;
                run_quiet(Command::new("ls").arg("-l").arg(mounted.at.join(bin)))?;
                let time = started.elapsed();
                if run > 0 {
                    mount_only = mount_only.min(mounted_in);
                }
                time
            }
            1 => {
                let mounted = bench.mount_in_process(corpus, false)?;
                list_and_stat(&mounted.at.join(bin))?;
                started.elapsed()
            }
            _ => match &corpus.image {
                Some(image) => {
                    let mounted = bench.squashfuse(image)?;
                    run_quiet(Command::new("ls").arg("-l").arg(mounted.at.join("bin")))?;
                    started.elapsed()
                }
                None => Duration::MAX,
            },
        };
        Ok(time)
    })?;
    Ok([best[0], mount_only, best[1], best[2]])
}

/// Figure (b): ext4, a fresh mount, squashfuse, and the same mount walked again.
fn walks(bench: &Bench, corpus: &Corpus) -> Result<([Duration; 4], [usize; 3])> {
    let mut walked = [0; 3];
    let mut warm = Duration::MAX;
    let best: [Duration; 3] = bench.rounds(|run, which| {
        let count = run == 0;
        let (time, lines) = match which {
            0 => find(&corpus.root.join("usr"), count)?,
            1 => {
                let (mounted, _) = bench.mount(&corpus.root)?;
                let fresh = find(&mounted.at, count)?;
                let (again, _) = find(&mounted.at, false)?;
                if run > 0 {
                    warm = warm.min(again);
                }
                fresh
            }
            _ => match &corpus.image {
                Some(image) => find(&bench.squashfuse(image)?.at, count)?,
                None => (Duration::MAX, 0),
            },
        };
        if count {
            walked[which] = lines;
        }
        Ok(time)
    })?;
    Ok(([best[0], best[1], best[2], warm], walked))
}

/// The requests behind (b) and (c): a fresh in-process mount walked as in (b), and another
/// whose small files are read as in (c), both reading as `mossfs mount` does.
fn requests(bench: &Bench, corpus: &Corpus) -> Result<[Stats; 2]> {
    let walked = bench.mount_in_process(corpus, false)?;
    find(&walked.at, false)?;
    let read = bench.mount_in_process(corpus, false)?;
    cat_all(&read.at.join("usr/share"))?;
    let stats = |mounted: &Mounted| mounted.stats().ok_or("not an in-process mount");
    Ok([stats(&walked)?, stats(&read)?])
}

/// Figure (c), small files: ext4, a passthrough mount, an in-process mount serving reads
/// from the store, squashfuse; fresh mounts each run.
fn small_reads(bench: &Bench, corpus: &Corpus) -> Result<[Duration; 4]> {
    bench.rounds(|_, which| match which {
        0 => cat_all(&corpus.root.join("usr/share")),
        1 => cat_all(&bench.mount(&corpus.root)?.0.at.join("usr/share")),
        2 => cat_all(&bench.mount_in_process(corpus, true)?.at.join("usr/share")),
        _ => match &corpus.image {
            Some(image) => cat_all(&bench.squashfuse(image)?.at.join("share")),
            None => Ok(Duration::MAX),
        },
    })
}

/// Figure (d) on a fresh mount: VmRSS after mounting, after a full walk, after reading
/// every small file, the peak, and the anonymous part after the walk (VmRSS also counts
/// the pages of the database's memory map the server touched, which are page cache).
fn memory(mounted: &Mounted, served: &Served) -> Result<[u64; 5]> {
    let after_mount = status_kib(served.pid, "VmRSS")?;
    find(&mounted.at, false)?;
    let after_walk = status_kib(served.pid, "VmRSS")?;
    let anonymous = status_kib(served.pid, "RssAnon")?;
    cat_all(&mounted.at.join("usr/share"))?;
    let after_reads = status_kib(served.pid, "VmRSS")?;
    let peak = status_kib(served.pid, "VmHWM")?;
    Ok([after_mount, after_walk, after_reads, peak, anonymous])
}

/// `find DIR -printf WALK`, to /dev/null, or to a pipe whose lines are counted.
fn find(dir: &Path, count: bool) -> Result<(Duration, usize)> {
    let mut command = Command::new("find");
    command.arg(dir).args(["-printf", WALK]);
    if !count {
        return Ok((run_quiet(&mut command)?, 0));
    }
    let (time, stdout) = timed(&mut command)?;
    Ok((time, stdout.lines().count()))
}

/// `find DIR -type f -exec cat {} + > /dev/null`.
fn cat_all(dir: &Path) -> Result<Duration> {
    run_quiet(
        Command::new("find")
            .arg(dir)
            .args(["-type", "f", "-exec", "cat", "{}", "+"]),
    )
}

/// What `ls -l` asks of the file system: the listing, then every entry's attributes.
fn list_and_stat(dir: &Path) -> Result<usize> {
    let mut listed = 0;
    for entry in fs::read_dir(dir)? {
        fs::symlink_metadata(entry?.path())?;
        listed += 1;
    }
    Ok(listed)
}

/// Compares a mount of a state with its blit, path by path: type, mode, uid, gid, size
/// (directories excepted: the mount shows 4096), link target and every byte. Fails on the
/// first difference; returns how many paths matched. `usr/.stateID` is written by the
/// commit, not the blit, so it is only on disk.
fn same_tree(blit: &Path, mount: &Path) -> Result<usize> {
    use std::os::unix::fs::MetadataExt;
    let mut paths = 0;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let names = |dir: &Path| -> Result<Vec<std::ffi::OsString>> {
            let mut names = fs::read_dir(dir)?
                .map(|entry| Ok(entry?.file_name()))
                .collect::<Result<Vec<_>>>()?;
            names.retain(|name| !(rel.as_os_str().is_empty() && name == ".stateID"));
            names.sort();
            Ok(names)
        };
        let (on_disk, mounted) = (names(&blit.join(&rel))?, names(&mount.join(&rel))?);
        if on_disk != mounted {
            return Err(format!(
                "{}: the mount lists other names than the blit",
                rel.display()
            )
            .into());
        }
        for name in on_disk {
            let rel = rel.join(name);
            let (a, b) = (blit.join(&rel), mount.join(&rel));
            let (ma, mb) = (fs::symlink_metadata(&a)?, fs::symlink_metadata(&b)?);
            let differs = ma.mode() != mb.mode()
                || ma.uid() != mb.uid()
                || ma.gid() != mb.gid()
                || (!ma.is_dir() && ma.len() != mb.len())
                || (ma.is_symlink() && fs::read_link(&a)? != fs::read_link(&b)?)
                || (ma.is_file() && fs::read(&a)? != fs::read(&b)?);
            if differs {
                return Err(format!("{}: the mount differs from the blit", rel.display()).into());
            }
            if ma.is_dir() {
                stack.push(rel);
            }
            paths += 1;
        }
    }
    Ok(paths)
}

/// Regular files below `dir` and their total size.
fn files_below(dir: &Path) -> Result<(usize, u64)> {
    let (mut files, mut bytes) = (0, 0);
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                (files, bytes) = (files + 1, bytes + meta.len());
            }
        }
    }
    Ok((files, bytes))
}

/// A field of `/proc/PID/status` in KiB.
fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no {field} for pid {pid}").into())
}

/// Runs a command, fails on a non-zero exit, and returns its wall time and stdout.
fn timed(command: &mut Command) -> Result<(Duration, String)> {
    let started = Instant::now();
    let output = command.stdin(Stdio::null()).output()?;
    let elapsed = started.elapsed();
    check(command, &output)?;
    Ok((
        elapsed,
        String::from_utf8_lossy(&output.stdout).into_owned(),
    ))
}

/// Runs a command with its stdout on /dev/null; fails on a non-zero exit.
fn run_quiet(command: &mut Command) -> Result<Duration> {
    let started = Instant::now();
    let output = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    let elapsed = started.elapsed();
    check(command, &output)?;
    Ok(elapsed)
}

fn check(command: &Command, output: &Output) -> Result<()> {
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(format!("{command:?} failed ({}): {stderr}", output.status).into())
}
