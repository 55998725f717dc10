//! `mossfs search-file PATTERN` (alias `sf`): which installed paths contain PATTERN, and
//! the package that ships each, as upstream moss's `search-file` answers it.
//!
//! The answer comes from the active state's tree, not from the packages' layouts, so it
//! names paths where they really are (a file shipped under `lib64/` shows in `lib/` when
//! `lib64 -> lib`) and never lists a file of a package that lost a conflict resolution.
//! Like upstream, a leading `/usr/` (or any tail of it, such as `/bin/nano`'s `/`) is
//! dropped from the pattern, since tree paths are relative to `/usr`.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io::Write;

use mossfs_db::Query;
use mossfs_format::PackageId;
use serde::Serialize;

use super::RootArg;
use crate::engine::{EngineError, Result, Root};

/// Arguments of `mossfs search-file`.
#[derive(clap::Args, Debug)]
pub struct SearchFileArgs {
    /// Part of a path, such as `bin/nano` or `/usr/share/man`; matched anywhere in the path.
    #[arg(value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub pattern: String,
    #[command(flatten)]
    pub root: RootArg,
}

/// One match, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct Hit {
    /// The absolute path, `/usr/...`, every byte kept (see `crate::quote::json`).
    pub path: serde_json::Value,
    /// The package's name.
    pub package: String,
    /// `name-version-release`.
    pub full_name: String,
    /// The path below `/usr`, for the text form.
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

/// The pattern as it is matched against paths relative to `/usr`.
pub fn normalize(pattern: &str) -> &str {
    let prefix = "/usr/";
    for i in 0..prefix.len() {
        if let Some(rest) = pattern.strip_prefix(&prefix[i..]) {
            return rest;
        }
    }
    pattern
}

/// Runs `mossfs search-file`.
pub fn search_file(args: &SearchFileArgs, out: &mut dyn Write) -> Result<()> {
    let root = Root::open_read(&args.root.root)?;
    let snapshot = root.db.read()?;
    let id = snapshot.active()?.ok_or(EngineError::NoActiveState)?;
    let state = snapshot.state(id)?;
    let needle = normalize(&args.pattern).as_bytes();
    let mut names: HashMap<PackageId, (String, String)> = HashMap::new();
    let mut hits = Vec::new();
    mossfs_fs::walk::walk(&snapshot, state.root, |path, node| -> Result<()> {
        let Some(owner) = node.owner else {
            return Ok(());
        };
        if !contains(path, needle) {
            return Ok(());
        }
        let (package, full_name) = match names.entry(owner) {
            Entry::Occupied(known) => known.get().clone(),
            Entry::Vacant(slot) => {
                let found = snapshot.package(&owner)?.map_or_else(
                    || (owner.to_string(), owner.to_string()),
                    |r| (r.meta.name.clone(), r.meta.full_name()),
                );
                slot.insert(found).clone()
            }
        };
        hits.push(Hit {
            path: super::documents::usr_path(path),
            package,
            full_name,
            bytes: path.to_vec(),
        });
        Ok(())
    })?;
    if crate::ui::json() {
        crate::ui::print_json(out, &hits)?;
    } else {
        for hit in &hits {
            let path = [b"/usr/", &hit.bytes[..]].concat();
            writeln!(
                out,
                "{} from {}",
                crate::quote::name(&path),
                crate::quote::text(&hit.package)
            )?;
        }
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_the_usr_prefix_is_dropped() {
        for pattern in [
            "/usr/bin/nano",
            "usr/bin/nano",
            "sr/bin/nano",
            "/bin/nano",
            "bin/nano",
        ] {
            assert_eq!(normalize(pattern), "bin/nano", "{pattern}");
        }
        assert_eq!(normalize("nano"), "nano");
    }

    #[test]
    fn matching_is_a_substring_of_bytes() {
        assert!(contains(b"bin/nano", b"n/na"));
        assert!(!contains(b"bin/nano", b"vim"));
    }
}
