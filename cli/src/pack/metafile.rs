//! Package metadata for `mossfs pack`, from flags and from a metadata file.
//!
//! The file is plain `key = value` lines, documented in README.md ("Metadata file"):
//!
//! ```text
//! # comments and blank lines are ignored
//! name = hello
//! version = 1.0
//! release = 1
//! license = MIT            # repeatable: license, depends, provides, conflicts
//! license = Apache-2.0
//! provides = binary(hello)
//! ```
//!
//! The value is the rest of the line after the first `=`, trimmed; a `#` starts a comment
//! only at the start of a line, so values may contain it. The flags and the file fill the
//! same [`MetaFields`]: the file is read first, then every flag given replaces the file's
//! value, and a repeatable flag given at least once replaces the file's whole list. Checks
//! (required fields, relation syntax) happen once, in [`MetaFields::into_meta`].

use std::path::Path;

use mossfs_format::{Meta, Relation};

use crate::error::CliError;

/// Package metadata as typed by a person, not yet checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
#[command(next_help_heading = "Package metadata (override the --meta file)")]
pub struct MetaFields {
    /// Package name (required).
    #[arg(long)]
    pub name: Option<String>,
    /// Upstream version (required).
    #[arg(long)]
    pub version: Option<String>,
    /// Source release number [default: 1].
    #[arg(long)]
    pub release: Option<u64>,
    /// Build release number [default: 1].
    #[arg(long)]
    pub build_release: Option<u64>,
    /// One-line summary.
    #[arg(long)]
    pub summary: Option<String>,
    /// Longer description.
    #[arg(long)]
    pub description: Option<String>,
    /// Project home page.
    #[arg(long)]
    pub homepage: Option<String>,
    /// Architecture [default: this machine's, e.g. x86_64].
    #[arg(long)]
    pub architecture: Option<String>,
    /// SPDX license; repeat for several.
    #[arg(long = "license", value_name = "LICENSE")]
    pub licenses: Vec<String>,
    /// A runtime dependency, `kind(target)` or a bare package name; repeatable.
    #[arg(long, value_name = "RELATION")]
    pub depends: Vec<String>,
    /// Something the package provides, e.g. `binary(hello)`; repeatable.
    #[arg(long, value_name = "RELATION")]
    pub provides: Vec<String>,
    /// Something the package cannot be installed with, e.g. `name(pico)`; repeatable.
    #[arg(long, value_name = "RELATION")]
    pub conflicts: Vec<String>,
}

const KEYS: &str = "name, version, release, build-release, summary, description, homepage, \
                    architecture, license, depends, provides, conflicts";

impl MetaFields {
    /// Reads a metadata file.
    pub fn read_file(path: &Path) -> Result<MetaFields, CliError> {
        let text = std::fs::read_to_string(path).map_err(|source| CliError::Open {
            path: path.to_owned(),
            source,
        })?;
        MetaFields::parse(&text).map_err(|(line, problem)| CliError::MetaFile {
            path: path.to_owned(),
            line,
            problem,
        })
    }

    /// Parses the text of a metadata file; an error names its line, from 1.
    pub fn parse(text: &str) -> Result<MetaFields, (usize, String)> {
        let mut fields = MetaFields::default();
        for (n, line) in text.lines().enumerate() {
            let number = n + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err((number, format!("expected `key = value`, found `{line}`")));
            };
            let (key, value) = (key.trim(), value.trim().to_owned());
            if value.is_empty() {
                return Err((number, format!("`{key}` has no value")));
            }
            let once = |slot: &mut Option<String>| {
                if slot.replace(value.clone()).is_some() {
                    return Err((number, format!("`{key}` is set twice")));
                }
                Ok(())
            };
            let number_once = |slot: &mut Option<u64>| {
                let parsed = value
                    .parse()
                    .map_err(|_| (number, format!("`{key}` must be a whole number")))?;
                if slot.replace(parsed).is_some() {
                    return Err((number, format!("`{key}` is set twice")));
                }
                Ok(())
            };
            match key {
                "name" => once(&mut fields.name)?,
                "version" => once(&mut fields.version)?,
                "summary" => once(&mut fields.summary)?,
                "description" => once(&mut fields.description)?,
                "homepage" => once(&mut fields.homepage)?,
                "architecture" => once(&mut fields.architecture)?,
                "release" => number_once(&mut fields.release)?,
                "build-release" => number_once(&mut fields.build_release)?,
                "license" => fields.licenses.push(value),
                "depends" => fields.depends.push(value),
                "provides" => fields.provides.push(value),
                "conflicts" => fields.conflicts.push(value),
                other => {
                    return Err((number, format!("unknown key `{other}` (known: {KEYS})")));
                }
            }
        }
        Ok(fields)
    }

    /// These fields, with every field set in `flags` taking its place.
    pub fn overridden_by(self, flags: &MetaFields) -> MetaFields {
        let list = |mine: Vec<String>, theirs: &Vec<String>| {
            if theirs.is_empty() {
                mine
            } else {
                theirs.clone()
            }
        };
        MetaFields {
            name: flags.name.clone().or(self.name),
            version: flags.version.clone().or(self.version),
            release: flags.release.or(self.release),
            build_release: flags.build_release.or(self.build_release),
            summary: flags.summary.clone().or(self.summary),
            description: flags.description.clone().or(self.description),
            homepage: flags.homepage.clone().or(self.homepage),
            architecture: flags.architecture.clone().or(self.architecture),
            licenses: list(self.licenses, &flags.licenses),
            depends: list(self.depends, &flags.depends),
            provides: list(self.provides, &flags.provides),
            conflicts: list(self.conflicts, &flags.conflicts),
        }
    }

    /// Checks the fields and fills in defaults.
    pub fn into_meta(self) -> Result<Meta, CliError> {
        let required = |value: Option<String>, field| {
            value
                .filter(|v| !v.trim().is_empty())
                .ok_or(CliError::MissingMeta { field })
        };
        let relations = |list: Vec<String>, field| -> Result<Vec<Relation>, CliError> {
            list.into_iter()
                .map(|text| {
                    Relation::parse(&text).map_err(|reason| CliError::BadMeta {
                        field,
                        value: text,
                        reason,
                    })
                })
                .collect()
        };
        let name = required(self.name, "name")?;
        mossfs_format::meta::check_name(&name)?;
        // Upstream refuses a package without a summary, description or source id, so each
        // gets a default from what the user did give.
        let given = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
        let summary = given(self.summary).unwrap_or_else(|| name.clone());
        let description = given(self.description).unwrap_or_else(|| summary.clone());
        Ok(Meta {
            source_id: name.clone(),
            name,
            version: checked_version(required(self.version, "version")?)?,
            release: self.release.unwrap_or(1),
            build_release: self.build_release.unwrap_or(1),
            architecture: self
                .architecture
                .unwrap_or_else(|| std::env::consts::ARCH.to_owned()),
            summary,
            description,
            homepage: self.homepage.unwrap_or_default(),
            licenses: self.licenses,
            depends: relations(self.depends, "depends")?,
            provides: relations(self.provides, "provides")?,
            conflicts: relations(self.conflicts, "conflicts")?,
            ..Meta::default()
        })
    }
}

/// The version as given, unless it is empty, longer than a name may be, or holds what
/// would break a line of output or a file name (whitespace, control characters, `/`):
/// upstream's versions are like `2.11` or `1.2.3+git20240101`, far inside this rule.
fn checked_version(version: String) -> Result<String, CliError> {
    let refused = version.is_empty()
        || version.len() > mossfs_format::meta::MAX_NAME_LEN
        || version
            .chars()
            .any(|c| c == '/' || c.is_whitespace() || c.is_control());
    if refused {
        Err(CliError::BadVersion { version })
    } else {
        Ok(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_comments_and_repeats() {
        let text = "# hello\n\nname = hello\nversion= 1.0 \nrelease=3\n\
                    license = MIT\nlicense = Apache-2.0\nsummary = says # hello\n";
        let fields = MetaFields::parse(text).unwrap();
        assert_eq!(fields.name.as_deref(), Some("hello"));
        assert_eq!(fields.version.as_deref(), Some("1.0"));
        assert_eq!(fields.release, Some(3));
        assert_eq!(fields.licenses, ["MIT", "Apache-2.0"]);
        assert_eq!(fields.summary.as_deref(), Some("says # hello"));
    }

    #[test]
    fn refuses_unknown_keys_repeats_and_junk_with_the_line() {
        assert!(
            matches!(MetaFields::parse("name = a\nnmae = b"), Err((2, p)) if p.contains("unknown key `nmae`"))
        );
        assert!(
            matches!(MetaFields::parse("name = a\nname = b"), Err((2, p)) if p.contains("set twice"))
        );
        assert!(
            matches!(MetaFields::parse("release = one"), Err((1, p)) if p.contains("whole number"))
        );
        assert!(
            matches!(MetaFields::parse("just words"), Err((1, p)) if p.contains("key = value"))
        );
        assert!(matches!(MetaFields::parse("name ="), Err((1, p)) if p.contains("no value")));
    }

    #[test]
    fn flags_override_the_file_and_lists_are_replaced_whole() {
        let file = MetaFields::parse("name = a\nversion = 1\nlicense = MIT\ndepends = x").unwrap();
        let flags = MetaFields {
            version: Some("2".into()),
            licenses: vec!["GPL-2.0".into()],
            ..MetaFields::default()
        };
        let meta = file.overridden_by(&flags).into_meta().unwrap();
        assert_eq!((meta.name.as_str(), meta.version.as_str()), ("a", "2"));
        assert_eq!(meta.licenses, ["GPL-2.0"]);
        assert_eq!(meta.depends, [Relation::name("x")]);
        assert_eq!((meta.release, meta.build_release), (1, 1));
    }

    #[test]
    fn name_and_version_are_required_and_relations_checked() {
        let err = MetaFields::default().into_meta().unwrap_err();
        assert!(matches!(err, CliError::MissingMeta { field: "name" }));
        let fields = MetaFields::parse("name = a\nversion = 1\nprovides = bogus(x)").unwrap();
        let err = fields.into_meta().unwrap_err();
        assert!(matches!(
            err,
            CliError::BadMeta {
                field: "provides",
                ..
            }
        ));
    }
}
