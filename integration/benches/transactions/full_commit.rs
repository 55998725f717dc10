//! Figure (a): a full commit against the floor and `cp -al`.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::floor::Snapshot;
use super::{Bench, Result, SMALL, Stones, blitted, install_args, secs, thousands, timed, verdict};

/// Figure (a). Returns a root with the bulk packages installed and the small one not.
pub fn figure(bench: &Bench, stones: &Stones) -> Result<PathBuf> {
    let mut tree_entries = 0;
    let install = bench.best(|_| {
        let root = bench.fresh_root("a-install")?;
        let (time, out) = bench.mossfs(&root, &install_args(&stones.bulk, false))?;
        tree_entries = blitted(&out)?;
        Ok(time)
    })?;
    let (mut stage, mut commit) = (Duration::MAX, Duration::MAX);
    bench.best(|run| {
        let root = bench.fresh_root("a-stage")?;
        let (staged, _) = bench.mossfs(&root, &install_args(&stones.bulk, true))?;
        let (committed, _) = bench.mossfs(&root, &["commit".as_ref()])?;
        if run > 0 {
            (stage, commit) = (stage.min(staged), commit.min(committed));
        }
        Ok(staged + committed)
    })?;
    bench.discard(&bench.path("a-stage"))?;

    // A root where every asset is already in the store: its commits only blit and swap.
    let root = bench.path("a-install");
    let floor_tree = Snapshot::of(&root.join("usr"), &root.join(".moss/assets"))?;
    if floor_tree.entries.len() as u64 != tree_entries {
        return Err(format!(
            "the walk found {} entries, mossfs blitted {tree_entries}",
            floor_tree.entries.len()
        )
        .into());
    }
    // A still copy for `cp -al`, since the root's own `usr` is swapped by every commit.
    let reference = bench.path("a-reference");
    timed(
        Command::new("cp")
            .arg("-al")
            .arg(root.join("usr"))
            .arg(&reference),
    )?;
    let small = [stones.small.clone()];
    let mut small_installed = false;
    let (mut best, mut reblit_entries) = ([Duration::MAX; 3], 0);
    for round in 0..=bench.runs {
        for which in (0..3).map(|k| (k + round) % 3) {
            let time = match which {
                0 => {
                    let stage = if small_installed {
                        vec!["remove".as_ref(), "--stage".as_ref(), SMALL.as_ref()]
                    } else {
                        install_args(&small, true)
                    };
                    bench.mossfs(&root, &stage)?;
                    let (time, out) = bench.mossfs(&root, &["commit".as_ref()])?;
                    small_installed = !small_installed;
                    reblit_entries = blitted(&out)?;
                    bench.drop_archives(&root)?;
                    time
                }
                1 => {
                    let target = bench.path("a-floor");
                    fs::create_dir(&target)?;
                    rustix::fs::sync();
                    let started = Instant::now();
                    floor_tree.replay(&target)?;
                    let time = started.elapsed();
                    bench.discard(&target)?;
                    time
                }
                _ => {
                    let target = bench.path("a-cp");
                    let mut cp = Command::new("cp");
                    let (time, _) = timed(cp.arg("-al").arg(&reference).arg(&target))?;
                    bench.discard(&target)?;
                    time
                }
            };
            if round > 0 {
                best[which] = best[which].min(time);
            }
        }
    }
    if small_installed {
        bench.mossfs(&root, &["remove".as_ref(), SMALL.as_ref()])?;
        bench.drop_archives(&root)?;
    }
    bench.discard(&reference)?;

    let rate = |entries: u64, time: Duration| entries as f64 / time.as_secs_f64();
    let floor = rate(tree_entries, best[1]);
    println!();
    println!(
        "(a) full commit: {} layout entries in {} packages = {} tree entries \
         ({} regular files linked from the store, {} created fresh)",
        thousands(stones.layout_entries),
        stones.bulk.len(),
        thousands(tree_entries as usize),
        thousands(floor_tree.linked),
        thousands(floor_tree.fresh)
    );
    println!(
        "  {:<62} {:>8} {:>12} {:>9}",
        "", "time", "entries/s", "vs floor"
    );
    let line = |what: &str, entries: u64, time: Duration| {
        let r = rate(entries, time);
        println!(
            "  {what:<62} {:>8} {:>12} {:>8.2}x",
            secs(time),
            thousands(r as usize),
            r / floor
        );
    };
    line(
        "floor: serial mkdirat/linkat/symlinkat loop, no sync",
        tree_entries,
        best[1],
    );
    line("cp -al of the blitted tree", tree_entries, best[2]);
    line(
        "mossfs commit, assets in store (blit+sync+swap)  [target]",
        reblit_entries,
        best[0],
    );
    line(
        "mossfs install, fresh root (the whole command)",
        tree_entries,
        install,
    );
    // Staging writes no tree, so its rate would compare nothing with the floor.
    println!(
        "  {:<62} {:>8}",
        "  of which install --stage (cache stones, record state)",
        secs(stage)
    );
    line(
        "  of which commit (unpack, blit, sync, swap)",
        tree_entries,
        commit,
    );
    println!(
        "  target: mossfs commit >= 0.80x the floor: {:.2}x {}",
        rate(reblit_entries, best[0]) / floor,
        verdict(
            rate(reblit_entries, best[0]) >= 0.8 * floor,
            stones.layout_entries,
        )
    );
    Ok(root)
}
