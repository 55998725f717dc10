//! The delta records of a delta stone (DESIGN.md §11), for `mossfs inspect`.
//!
//! The records sit in the last payload, so showing them reads the whole file; frames are
//! read past, never kept. Their checks (`inspect --check`) are the verifying reader's.
//! A record names its bases by position in the index of the package the delta starts
//! from, which the delta stone does not carry, so bases are shown by that position.

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::Path;

use mossfs_format::{Preamble, Reader, RecordHeader, Stone};
use serde_json::{Value, json};

use crate::error::CliError;
use crate::units;

/// What a delta payload says: where it starts from, what it rebuilds, and each record.
pub struct Records {
    /// The preamble.
    pub preamble: Preamble,
    /// Every record's fixed part, in order.
    pub records: Vec<RecordHeader>,
}

/// The delta records of `stone`, read from `path`; `None` for a stone without any.
pub fn read(path: &Path, stone: &Stone) -> Result<Option<Records>, CliError> {
    if stone.delta.is_none() {
        return Ok(None);
    }
    let failed = |source| CliError::Read {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(|source| CliError::Open {
        path: path.to_owned(),
        source,
    })?;
    let mut reader = Reader::new(BufReader::with_capacity(256 * 1024, file)).map_err(failed)?;
    let stone = reader.read_metadata().map_err(failed)?;
    let Some(mut deltas) = reader.deltas(&stone).map_err(failed)? else {
        return Ok(None);
    };
    let preamble = deltas.preamble();
    let mut records = Vec::new();
    while let Some(record) = deltas.next_record().map_err(failed)? {
        records.push(record.header);
    }
    Ok(Some(Records { preamble, records }))
}

/// The text form: a summary line, then one line per record and one per asset it names.
pub fn text(out: &mut dyn Write, delta: &Records) -> Result<(), CliError> {
    let frames: u64 = delta.records.iter().map(|r| r.frame_len).sum();
    let targets: usize = delta.records.iter().map(|r| r.targets.len()).sum();
    writeln!(
        out,
        "delta: {} records rebuilding {targets} assets, {} of frames",
        delta.records.len(),
        units::bytes(frames)
    )?;
    writeln!(out, "  from package {}", delta.preamble.from)?;
    writeln!(out, "  to package   {}", delta.preamble.to)?;
    for r in &delta.records {
        writeln!(
            out,
            "  {:<5} {:>4} targets {:>10} B  {:>3} bases  frame {:>10} B  window 2^{}",
            r.method().name(),
            r.targets.len(),
            r.target_size(),
            r.bases.len(),
            r.frame_len,
            r.window_log
        )?;
        for t in &r.targets {
            writeln!(out, "    target {} {:>10} B", t.hash, t.size)?;
        }
        for b in &r.bases {
            writeln!(out, "    base   #{b} of the old package's index")?;
        }
    }
    Ok(())
}

/// The JSON form: `{ "from", "to", "records": [ { "method", "targets": [ { "hash",
/// "size" } ], "bases": [ { "position" } ], "target_size", "frame_size", "window_log" } ]
/// }`; a base's position is in the old package's index.
pub fn json(delta: &Records) -> Value {
    let records: Vec<Value> = delta
        .records
        .iter()
        .map(|r| {
            let targets: Vec<Value> = r
                .targets
                .iter()
                .map(|t| json!({ "hash": t.hash.to_string(), "size": t.size }))
                .collect();
            let bases: Vec<Value> = r.bases.iter().map(|b| json!({ "position": b })).collect();
            json!({
                "method": r.method().name(),
                "targets": targets,
                "bases": bases,
                "target_size": r.target_size(),
                "frame_size": r.frame_len,
                "window_log": r.window_log,
            })
        })
        .collect();
    json!({
        "from": delta.preamble.from.to_string(),
        "to": delta.preamble.to.to_string(),
        "records": records,
    })
}
