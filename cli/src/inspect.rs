//! `mossfs inspect FILE... [--check] [--json]`: what a stone holds, for people or programs.
//!
//! Without `--check` only the metadata is read (it sits in the first few kilobytes, DESIGN.md
//! §3); with it, the whole file is verified through `mossfs_format::read::verify`, every
//! payload checksum and every asset digest, and the first problem stops the run. The text
//! form is printed stone by stone; `--json` prints one document for the whole invocation, an
//! array with one object per stone (see [`json`]).

mod delta;
mod json;

use std::fs::File;
use std::io::{BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use mossfs_format::{EntryKind, Reader, Stone};

use crate::error::CliError;
use crate::quote;

/// Arguments of `mossfs inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The stones to inspect.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Verify everything, every content digest included; stop at the first problem.
    #[arg(long)]
    pub check: bool,
    /// Print one JSON document: an array with one object per stone.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn run(args: &Args, out: &mut dyn Write) -> Result<(), CliError> {
    let mut documents = Vec::new();
    for (n, path) in args.files.iter().enumerate() {
        let stone = load(path, args.check)?;
        let records = delta::read(path, &stone)?;
        if args.json {
            let mut document = json::stone(path, &stone, args.check);
            document["delta"] = records
                .as_ref()
                .map_or(serde_json::Value::Null, delta::json);
            documents.push(document);
        } else {
            if n > 0 {
                writeln!(out)?;
            }
            text(out, path, &stone)?;
            if let Some(records) = &records {
                delta::text(out, records)?;
            }
            if args.check {
                check_line(out, &stone, records.as_ref())?;
            }
        }
    }
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &documents).map_err(std::io::Error::from)?;
        writeln!(out)?;
    }
    Ok(())
}

/// Reads a stone's metadata, or with `check` verifies the whole file.
pub fn load(path: &Path, check: bool) -> Result<Stone, CliError> {
    let file = File::open(path).map_err(|source| CliError::Open {
        path: path.to_owned(),
        source,
    })?;
    let input = BufReader::with_capacity(256 * 1024, file);
    if check {
        mossfs_format::read::verify(input).map_err(|source| CliError::Check {
            path: path.to_owned(),
            payload: crate::error::payload_of(&source),
            source,
        })
    } else {
        Reader::new(input)
            .and_then(|mut reader| reader.read_metadata())
            .map_err(|source| CliError::Read {
                path: path.to_owned(),
                source,
            })
    }
}

fn text(out: &mut dyn Write, path: &Path, stone: &Stone) -> Result<(), CliError> {
    writeln!(out, "file: {}", quote::name(path.as_os_str().as_bytes()))?;
    if let Some(header) = stone.header {
        writeln!(
            out,
            "header: stone v1, {} archive, {} payloads",
            header.file_type.name(),
            header.payload_count
        )?;
    }
    writeln!(out, "payloads:")?;
    writeln!(
        out,
        "  {:<11} {:<11} {:>12} {:>12} {:>8}  checksum",
        "kind", "compression", "stored", "plain", "records"
    )?;
    for payload in &stone.payloads {
        let h = payload.header;
        writeln!(
            out,
            "  {:<11} {:<11} {:>12} {:>12} {:>8}  {:016x}",
            h.kind.to_string(),
            h.compression.to_string(),
            h.stored_size,
            h.plain_size,
            h.records,
            h.checksum
        )?;
    }
    writeln!(out, "meta:")?;
    for record in &stone.meta {
        writeln!(
            out,
            "  {}: {}",
            record.tag.name(),
            quote::text(&record.value.to_string())
        )?;
    }
    writeln!(out, "layout: {} entries", stone.layout.len())?;
    for entry in &stone.layout {
        write!(
            out,
            "  {:<9} {:06o} {}:{} {}",
            entry.kind.name(),
            entry.mode,
            entry.uid,
            entry.gid,
            quote::name(entry.path.as_bytes())
        )?;
        match &entry.kind {
            EntryKind::Regular(hash) => writeln!(out, " {hash}")?,
            EntryKind::Symlink(target) => writeln!(out, " -> {}", quote::name(target))?,
            _ => writeln!(out)?,
        }
    }
    Ok(())
}

fn check_line(
    out: &mut dyn Write,
    stone: &Stone,
    records: Option<&delta::Records>,
) -> Result<(), CliError> {
    match records {
        None => writeln!(
            out,
            "check: ok (every payload checksum and {} asset digests verified)",
            stone.index.len()
        )?,
        Some(delta) => {
            let whole = delta
                .records
                .iter()
                .filter(|r| r.method() == mossfs_format::Method::Whole)
                .count();
            writeln!(
                out,
                "check: ok (every payload checksum and {} delta records verified: {whole} whole \
                 records decoded and hashed; {} patches declare their targets' total size and are \
                 checked against their bases when applied)",
                delta.records.len(),
                delta.records.len() - whole
            )?
        }
    }
    Ok(())
}
