//! Figure (c), large files: one package of large noise files in a root of its own, read
//! in order through `mossfs mount`, through an in-process mount serving from the store,
//! and natively, cold and warm.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mossfs_db::{Db, Query};
use mossfs_format::{Meta, RelPath};
use mossfs_integration::corpus::{self, FAST, SourceEntry, SourceKind};

use super::report::secs;
use super::{Bench, Corpus, MIB, Result, timed};

/// Figure (c), large files.
pub(crate) struct Large {
    pub(crate) files: usize,
    pub(crate) mib: u64,
    pub(crate) reads: String,
    /// Cold, then warm: ext4, `mossfs mount`, in-process mount serving from the store.
    pub(crate) cold: [Duration; 3],
    pub(crate) warm: [Duration; 3],
}

pub(crate) fn large_reads(bench: &Bench, files: usize, file_mib: u64) -> Result<Large> {
    let started = Instant::now();
    let sources = bench.path("big-sources");
    fs::create_dir(&sources)?;
    let mut entries = Vec::new();
    for k in 0..files {
        let path = sources.join(format!("f{k}"));
        write_noise(&path, k as u64 + 1, file_mib * MIB)?;
        entries.push(SourceEntry {
            path: RelPath::new(format!("share/big/f{k}"))?,
            kind: SourceKind::File(path),
            mode: 0o644,
            uid: 0,
            gid: 0,
        });
    }
    let meta = Meta {
        name: "big".to_owned(),
        version: "1".to_owned(),
        release: 1,
        build_release: 1,
        architecture: "x86_64".to_owned(),
        ..Meta::default()
    };
    let stone = corpus::pack_entries(&bench.path("big-stones"), &meta, entries, FAST)?;
    fs::remove_dir_all(&sources)?;
    let root = bench.path("big");
    fs::create_dir(&root)?;
    timed(
        Command::new(&bench.bin)
            .arg("install")
            .arg("--root")
            .arg(&root)
            .arg(&stone),
    )?;
    println!(
        "large files: {files} of {file_mib} MiB packed and installed in {}",
        secs(started.elapsed())
    );
    let db = Db::open(&root.join(".moss/db"))?;
    let state = db
        .read()?
        .active()?
        .ok_or("mossfs install left no active state")?;
    let corpus = Corpus {
        root: root.clone(),
        image: None,
        db,
        state,
    };
    let (cli, served) = bench.mount(&root)?;
    let store = bench.mount_in_process(&corpus, true)?;
    let names: Vec<String> = (0..files).map(|k| format!("usr/share/big/f{k}")).collect();
    let paths = |base: &Path| -> Vec<PathBuf> { names.iter().map(|n| base.join(n)).collect() };
    let native = paths(&root);
    let contenders = [native.clone(), paths(&cli.at), paths(&store.at)];
    let expected = files as u64 * file_mib * MIB;
    let mut warm = [Duration::MAX; 3];
    let cold: [Duration; 3] = bench.rounds(|run, which| {
        // Evicting the native files evicts the store files: they are the same inodes.
        evict(&native)?;
        evict(&contenders[which])?;
        let cold = read_all(&contenders[which], expected)?;
        let again = read_all(&contenders[which], expected)?;
        if run > 0 {
            warm[which] = warm[which].min(again);
        }
        Ok(cold)
    })?;
    Ok(Large {
        files,
        mib: file_mib,
        reads: served.reads,
        cold,
        warm,
    })
}

/// Writes `len` bytes that do not compress.
fn write_noise(path: &Path, seed: u64, len: u64) -> Result<()> {
    let mut file = io::BufWriter::new(File::create(path)?);
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut chunk = vec![0u8; MIB as usize];
    for _ in 0..len.div_ceil(MIB) {
        for word in chunk.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        file.write_all(&chunk)?;
    }
    Ok(file.into_inner()?.sync_all()?)
}

/// Drops the files' clean pages from the page cache.
fn evict(paths: &[PathBuf]) -> Result<()> {
    for path in paths {
        let file = File::open(path)?;
        rustix::fs::fadvise(&file, 0, None::<NonZeroU64>, rustix::fs::Advice::DontNeed)?;
    }
    Ok(())
}

/// Reads the files in order with 1 MiB reads; checks that `expected` bytes came.
fn read_all(paths: &[PathBuf], expected: u64) -> Result<Duration> {
    let mut buf = vec![0u8; MIB as usize];
    let started = Instant::now();
    let mut total = 0u64;
    for path in paths {
        let mut file = File::open(path)?;
        loop {
            match file.read(&mut buf)? {
                0 => break,
                n => total += n as u64,
            }
        }
    }
    let elapsed = started.elapsed();
    if total != expected {
        return Err(format!("read {total} bytes, expected {expected}").into());
    }
    Ok(elapsed)
}
