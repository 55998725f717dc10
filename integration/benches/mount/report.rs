//! Printing the figures as tables, each time beside its peer and the ratio.

use std::time::Duration;

use super::large::Large;
use super::{Figures, MIB, Stats, WALK};

fn header(title: &str, sizes: &[Figures]) {
    println!("{title}");
    print!("  {:<60}", "");
    for size in sizes {
        print!(" {:>22}", format!("{} entries", thousands(size.entries)));
    }
    println!();
}

fn row(label: &str, sizes: &[Figures], cell: impl Fn(&Figures) -> String) {
    print!("  {label:<60}");
    for size in sizes {
        print!(" {:>22}", cell(size));
    }
    println!();
}

/// A time and its ratio to `base`, or "skipped" for a peer that did not run.
fn versus(time: Duration, base: Duration) -> String {
    if time == Duration::MAX {
        return "skipped".to_owned();
    }
    format!("{} {:>6.2}x", ms(time), ratio(time, base))
}

fn ratio(time: Duration, base: Duration) -> f64 {
    time.as_secs_f64() / base.as_secs_f64()
}

pub(crate) fn print_a(sizes: &[Figures]) {
    header(
        "(a) mount to first listing: from starting `mossfs mount` to `ls -l MNT/usr/bin` answered",
        sizes,
    );
    row(
        "mossfs mount + ls -l usr/bin, back to back  [target]",
        sizes,
        |f| ms(f.listing[0]),
    );
    row("  of which mossfs mount (returns once ready)", sizes, |f| {
        ms(f.listing[1])
    });
    row("  of which ls -l usr/bin", sizes, |f| {
        format!(
            "{} ({} entries)",
            ms(f.listing[0].saturating_sub(f.listing[1])),
            thousands(f.bin_entries)
        )
    });
    row(
        "in process: MossFs::new + spawn + list and stat usr/bin",
        sizes,
        |f| ms(f.listing[2]),
    );
    row(
        "peer: squashfuse -f + ls -l bin; ratio to mossfs mount + ls",
        sizes,
        |f| versus(f.listing[3], f.listing[0]),
    );
    let worst = sizes.iter().map(|f| f.listing[0]).max().unwrap_or_default();
    println!(
        "  target: under 50 ms at every size: worst {} {}\n",
        ms(worst),
        verdict(worst < Duration::from_millis(50))
    );
}

pub(crate) fn print_b(sizes: &[Figures]) {
    header(
        &format!(
            "(b) full metadata walk: find DIR -printf '{}' > /dev/null",
            WALK.trim_end()
        ),
        sizes,
    );
    row("paths walked: ext4 / mossfs / squashfuse", sizes, |f| {
        format!(
            "{}/{}/{}",
            thousands(f.walked[0]),
            thousands(f.walked[1]),
            thousands(f.walked[2])
        )
    });
    let lines = [
        "ext4: ROOT/usr blitted by mossfs install, warm caches",
        "mossfs: a fresh mount each run  [target]",
        "squashfuse: a fresh mount of mksquashfs ROOT/usr each run",
        "mossfs: the same mount walked again (kernel caches warm)",
    ];
    for (k, label) in lines.iter().enumerate() {
        row(label, sizes, |f| versus(f.walk[k], f.walk[0]));
    }
    for f in sizes {
        let vs_ext4 = ratio(f.walk[1], f.walk[0]);
        let vs_squash = ratio(f.walk[1], f.walk[2]);
        println!(
            "  target at {}: mossfs <= 1.3x ext4: {vs_ext4:.2}x {}; faster than squashfuse: {}",
            thousands(f.entries),
            verdict(vs_ext4 <= 1.3),
            if f.walk[2] == Duration::MAX {
                "skipped".to_owned()
            } else {
                format!("{vs_squash:.2}x its time {}", verdict(vs_squash < 1.0))
            }
        );
    }
    println!();
}

pub(crate) fn print_c_small(sizes: &[Figures]) {
    header(
        "(c) small files: find DIR/share -type f -exec cat {} + > /dev/null",
        sizes,
    );
    row("regular files under usr/share", sizes, |f| {
        format!("{} ({})", thousands(f.small_files.0), mib(f.small_files.1))
    });
    let lines = [
        "ext4: ROOT/usr/share, warm caches",
        "mossfs: fresh `mossfs mount` each run, reads as it reports",
        "mossfs: fresh in-process mount, reads served from the store",
        "squashfuse: a fresh mount each run",
    ];
    for (k, label) in lines.iter().enumerate() {
        row(label, sizes, |f| versus(f.small[k], f.small[0]));
    }
    row("`mossfs mount` reports reads:", sizes, |f| f.reads.clone());
    for f in sizes {
        let vs_ext4 = ratio(f.small[1], f.small[0]);
        println!(
            "  target at {}: `mossfs mount` <= 1.5x ext4: {vs_ext4:.2}x {}",
            thousands(f.entries),
            verdict(vs_ext4 <= 1.5)
        );
    }
    for f in sizes {
        println!("  fidelity at {}: {}", thousands(f.entries), f.fidelity);
    }
    println!();
}

/// The requests a fresh mount was sent by (b)'s walk and by (c)'s small reads, by opcode.
pub(crate) fn print_requests(sizes: &[Figures]) {
    header(
        "requests to a fresh in-process mount: (b)'s walk / (c)'s small reads",
        sizes,
    );
    type Count = fn(&Stats) -> u64;
    let opcodes: [(&str, Count); 9] = [
        ("lookup", |s| s.lookups),
        ("readdir(plus)", |s| s.readdirs),
        ("readlink", |s| s.readlinks),
        ("getattr", |s| s.getattrs),
        ("opendir", |s| s.opendirs),
        ("open", |s| s.opens),
        ("read", |s| s.reads),
        ("release (sent without waiting)", |s| s.releases),
        ("polled bursts (not requests)", |s| s.bursts),
    ];
    for (label, count) in opcodes {
        row(label, sizes, |f| match &f.requests {
            Some([walk, small]) => {
                format!(
                    "{}/{}",
                    thousands(count(walk) as usize),
                    thousands(count(small) as usize)
                )
            }
            None => "skipped".to_owned(),
        });
    }
    println!();
}

pub(crate) fn print_c_large(large: &Large) {
    let total = large.files as u64 * large.mib * MIB;
    println!(
        "(c) large files: {} files of {} MiB read in order with 1 MiB reads, MB/s and speed vs ext4",
        large.files, large.mib
    );
    println!(
        "  {:<60} {:>22} {:>22}",
        "", "cold (evicted first)", "warm (page cache)"
    );
    let rate = |time: Duration, base: Duration| {
        format!(
            "{:.0} MB/s {:>5.2}x",
            total as f64 / 1e6 / time.as_secs_f64(),
            base.as_secs_f64() / time.as_secs_f64()
        )
    };
    let lines = [
        "ext4: ROOT/usr/share/big".to_owned(),
        format!("mossfs mount, reads: {}  [target]", large.reads),
        "mossfs in process, reads served from the store".to_owned(),
    ];
    for (k, label) in lines.iter().enumerate() {
        println!(
            "  {label:<60} {:>22} {:>22}",
            rate(large.cold[k], large.cold[0]),
            rate(large.warm[k], large.warm[0])
        );
    }
    let speed = |times: &[Duration; 3]| ratio(times[0], times[1]);
    let (cold, warm) = (speed(&large.cold), speed(&large.warm));
    println!(
        "  target: >= 0.9x ext4 with passthrough: cold {cold:.2}x {}, warm {warm:.2}x {}{}\n",
        verdict(cold >= 0.9),
        verdict(warm >= 0.9),
        if large.reads == "kernel passthrough" {
            ""
        } else {
            " (but passthrough is not in use here)"
        }
    );
}

pub(crate) fn print_d(sizes: &[Figures]) {
    header(
        "(d) mossfs server memory (VmRSS of the pid `mossfs mount` prints), fresh mount",
        sizes,
    );
    let lines = [
        "after mounting",
        "after a full walk (find)  [target]",
        "after also reading every file under usr/share",
        "peak (VmHWM)",
        "after a full walk, anonymous (RssAnon; the rest: LMDB map)",
    ];
    for (k, label) in lines.iter().enumerate() {
        row(label, sizes, |f| mib(f.memory[k] * 1024));
    }
    if let Some(largest) = sizes.iter().max_by_key(|f| f.entries) {
        let rss = largest.memory[1] * 1024;
        println!(
            "  target: under 64 MiB at {} entries after a full walk: {} {}\n",
            thousands(largest.entries),
            mib(rss),
            verdict(rss < 64 * MIB)
        );
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "(met)" } else { "(MISSED)" }
}

fn ms(time: Duration) -> String {
    format!("{:.1} ms", time.as_secs_f64() * 1e3)
}

pub(crate) fn secs(time: Duration) -> String {
    format!("{:.2} s", time.as_secs_f64())
}

pub(crate) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

/// `48000` as `48,000`.
pub(crate) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
