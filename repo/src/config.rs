//! Repository configuration: `ROOT/usr/share/moss/repo.d/*` (vendor) and
//! `ROOT/etc/moss/repo.d/*` (admin), merged by file stem with `/etc` winning (DESIGN.md §8).
//!
//! Each file maps repository ids to their settings, in YAML (`.yaml`/`.yml`) or KDL
//! (`.kdl`); when one folder has both for a stem, the KDL file wins, as upstream does.
//! mossfs writes KDL, one file per repository named after its id:
//!
//! ```kdl
//! volatile {
//!     description "AerynOS volatile"
//!     uri "https://packages.example.org/volatile/x86_64/stone.index"
//!     priority 10
//!     active #true
//!     key "5b3f…"            // mossfs: the Ed25519 key its checksum files must carry
//! }
//! ```
//!
//! or, for a root index, `base-uri`, `channel` (default `main`), `version`
//! (`stream/NAME`, `tag/NAME` or `history/ID`) and `arch` (default `x86_64`) in place of
//! `uri`. Unknown keys are ignored, as upstream's serde reader does.
//!
//! Order: higher `priority` first; equal priorities go by id, ascending, so the order never
//! depends on the file system.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::RepoError;

/// The admin folder, under the root.
pub const ADMIN_DIR: &str = "etc/moss/repo.d";
/// The vendor folder, under the root.
pub const VENDOR_DIR: &str = "usr/share/moss/repo.d";

/// Where a repository's index comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A `stone.index` URI.
    Direct {
        /// The index.
        uri: String,
    },
    /// A root index.
    Root {
        /// The repository's base URI.
        base_uri: String,
        /// The channel folder.
        channel: String,
        /// `stream/NAME`, `tag/NAME` or `history/ID`.
        version: String,
        /// The architecture folder.
        arch: String,
    },
}

/// One configured repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    /// Its id: every character other than alphanumerics and `-` mapped to `_`.
    pub id: String,
    /// Free text.
    pub description: String,
    /// Higher wins.
    pub priority: u64,
    /// Whether it is used.
    pub active: bool,
    /// Where its index is.
    pub source: Source,
    /// The public key (hex) its checksum files must be signed with.
    pub key: Option<String>,
    /// The file it was read from.
    pub origin: PathBuf,
}

/// The longest repository name: its id names a file (`<id>.kdl`), which must stay within
/// a file name's 255 bytes whatever characters the name has.
pub const MAX_REPO_NAME: usize = 60;

/// Upstream's id mapping.
pub fn make_id(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[derive(Default)]
struct Fields {
    description: Option<String>,
    uri: Option<String>,
    base_uri: Option<String>,
    channel: Option<String>,
    version: Option<String>,
    arch: Option<String>,
    priority: Option<u64>,
    active: Option<bool>,
    key: Option<String>,
}

impl Fields {
    fn into_repo(self, id: &str, origin: &Path) -> Result<Repo, RepoError> {
        let bad = |reason: String| RepoError::Config {
            path: origin.to_owned(),
            reason: format!("repository {id}: {reason}"),
        };
        let source = match (self.uri, self.base_uri) {
            (Some(uri), None) => Source::Direct { uri },
            (None, Some(base_uri)) => Source::Root {
                base_uri,
                channel: self.channel.unwrap_or_else(|| "main".into()),
                version: self.version.ok_or_else(|| {
                    bad("base-uri needs a version (stream/NAME, tag/NAME or history/ID)".into())
                })?,
                arch: self.arch.unwrap_or_else(|| "x86_64".into()),
            },
            (Some(_), Some(_)) => return Err(bad("give uri or base-uri, not both".into())),
            (None, None) => return Err(bad("no uri or base-uri".into())),
        };
        Ok(Repo {
            id: make_id(id),
            description: self.description.unwrap_or_default(),
            priority: self.priority.ok_or_else(|| bad("no priority".into()))?,
            active: self.active.unwrap_or(true),
            source,
            key: self.key,
            origin: origin.to_owned(),
        })
    }

    fn set(&mut self, key: &str, value: Value) -> Result<(), String> {
        let text = |v: Value| match v {
            Value::Text(s) => Ok(s),
            _ => Err(format!("{key} must be text")),
        };
        match key {
            "description" => self.description = Some(text(value)?),
            "uri" => self.uri = Some(text(value)?),
            "base-uri" | "base_uri" => self.base_uri = Some(text(value)?),
            "channel" => self.channel = Some(text(value)?),
            "version" => self.version = Some(text(value)?),
            "arch" => self.arch = Some(text(value)?),
            "key" => self.key = Some(text(value)?),
            "priority" => match value {
                Value::Int(n) => {
                    self.priority = Some(
                        u64::try_from(n).map_err(|_| "priority must be 0 or more".to_string())?,
                    )
                }
                _ => return Err("priority must be a whole number".into()),
            },
            "active" => match value {
                Value::Bool(b) => self.active = Some(b),
                _ => return Err("active must be true or false".into()),
            },
            _ => {}
        }
        Ok(())
    }
}

enum Value {
    Text(String),
    Int(i128),
    Bool(bool),
    Other,
}

fn parse_kdl(text: &str, origin: &Path) -> Result<Vec<Repo>, RepoError> {
    let bad = |reason: String| RepoError::Config {
        path: origin.to_owned(),
        reason,
    };
    let doc = kdl::KdlDocument::parse(text).map_err(|e| bad(format!("not KDL: {e}")))?;
    let mut out = Vec::new();
    for node in doc.nodes() {
        let id = node.name().value();
        let mut fields = Fields::default();
        for child in node.children().map(|d| d.nodes()).unwrap_or_default() {
            let value = match child.entries().first().map(|e| e.value()) {
                Some(kdl::KdlValue::String(s)) => Value::Text(s.clone()),
                Some(kdl::KdlValue::Integer(n)) => Value::Int(*n),
                Some(kdl::KdlValue::Bool(b)) => Value::Bool(*b),
                _ => Value::Other,
            };
            fields
                .set(child.name().value(), value)
                .map_err(|r| bad(format!("repository {id}: {r}")))?;
        }
        out.push(fields.into_repo(id, origin)?);
    }
    Ok(out)
}

fn parse_yaml(text: &str, origin: &Path) -> Result<Vec<Repo>, RepoError> {
    use yaml_rust2::Yaml;
    let bad = |reason: String| RepoError::Config {
        path: origin.to_owned(),
        reason,
    };
    let docs =
        yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| bad(format!("not YAML: {e}")))?;
    let mut out = Vec::new();
    for doc in docs {
        let Yaml::Hash(map) = doc else {
            return Err(bad("expected a map of repository ids".into()));
        };
        for (id, settings) in map {
            let Yaml::String(id) = id else {
                return Err(bad("a repository id that is not text".into()));
            };
            let Yaml::Hash(settings) = settings else {
                return Err(bad(format!("repository {id}: expected a map of settings")));
            };
            let mut fields = Fields::default();
            for (key, value) in settings {
                let Yaml::String(key) = key else { continue };
                let value = match value {
                    Yaml::String(s) => Value::Text(s),
                    Yaml::Integer(n) => Value::Int(i128::from(n)),
                    Yaml::Boolean(b) => Value::Bool(b),
                    _ => Value::Other,
                };
                fields
                    .set(&key, value)
                    .map_err(|r| bad(format!("repository {id}: {r}")))?;
            }
            out.push(fields.into_repo(&id, origin)?);
        }
    }
    Ok(out)
}

/// The files of one folder by stem, KDL winning over YAML.
fn files_by_stem(dir: &Path) -> Result<BTreeMap<String, PathBuf>, RepoError> {
    let mut out: BTreeMap<String, PathBuf> = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(source) => {
            return Err(RepoError::Io {
                path: dir.to_owned(),
                source,
            });
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let (Some(stem), Some(ext)) = (path.file_stem(), path.extension()) else {
            continue;
        };
        let stem = stem.to_string_lossy().into_owned();
        match ext.to_str() {
            Some("kdl") => {
                out.insert(stem, path);
            }
            Some("yaml" | "yml") => {
                let kdl = out
                    .get(&stem)
                    .is_some_and(|p| p.extension().is_some_and(|e| e == "kdl"));
                if !kdl {
                    out.insert(stem, path);
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Every configured repository, merged, in priority order (higher first, then by id).
pub fn load(root: &Path) -> Result<Vec<Repo>, RepoError> {
    let mut stems = files_by_stem(&root.join(VENDOR_DIR))?;
    stems.extend(files_by_stem(&root.join(ADMIN_DIR))?);
    let mut repos: BTreeMap<String, Repo> = BTreeMap::new();
    for path in stems.values() {
        let text = std::fs::read_to_string(path).map_err(|source| RepoError::Io {
            path: path.clone(),
            source,
        })?;
        let list = if path.extension().is_some_and(|e| e == "kdl") {
            parse_kdl(&text, path)?
        } else {
            parse_yaml(&text, path)?
        };
        for repo in list {
            repos.insert(repo.id.clone(), repo);
        }
    }
    let mut list: Vec<Repo> = repos.into_values().collect();
    list.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id)));
    Ok(list)
}

fn quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The KDL text of one repository.
pub fn to_kdl(repo: &Repo) -> String {
    let mut out = format!("{} {{\n", repo.id);
    let mut line = |key: &str, value: String| out.push_str(&format!("    {key} {value}\n"));
    line("description", quote(&repo.description));
    match &repo.source {
        Source::Direct { uri } => line("uri", quote(uri)),
        Source::Root {
            base_uri,
            channel,
            version,
            arch,
        } => {
            line("base-uri", quote(base_uri));
            line("channel", quote(channel));
            line("version", quote(version));
            line("arch", quote(arch));
        }
    }
    line("priority", repo.priority.to_string());
    line(
        "active",
        if repo.active { "#true" } else { "#false" }.into(),
    );
    if let Some(key) = &repo.key {
        line("key", quote(key));
    }
    out.push_str("}\n");
    out
}

/// Writes `repo` to `ROOT/etc/moss/repo.d/<id>.kdl`, replacing a YAML file of that stem.
pub fn save(root: &Path, repo: &Repo) -> Result<PathBuf, RepoError> {
    let dir = root.join(ADMIN_DIR);
    std::fs::create_dir_all(&dir).map_err(|source| RepoError::Io {
        path: dir.clone(),
        source,
    })?;
    let path = dir.join(format!("{}.kdl", repo.id));
    crate::publish::write_atomic(&path, to_kdl(repo).as_bytes())?;
    for ext in ["yaml", "yml"] {
        let _ = std::fs::remove_file(dir.join(format!("{}.{ext}", repo.id)));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_kdl_merge_and_order() {
        let root = tempfile::tempdir().unwrap();
        let vendor = root.path().join(VENDOR_DIR);
        let admin = root.path().join(ADMIN_DIR);
        std::fs::create_dir_all(&vendor).unwrap();
        std::fs::create_dir_all(&admin).unwrap();
        std::fs::write(
            vendor.join("main.yaml"),
            "volatile:\n  description: v\n  uri: https://x/stone.index\n  priority: 0\nb.x:\n  base-uri: https://y\n  version: stream/unstable\n  priority: 5\n",
        )
        .unwrap();
        std::fs::write(
            vendor.join("other.yaml"),
            "a:\n  uri: file:///a/stone.index\n  priority: 5\n",
        )
        .unwrap();
        // Admin file of the same stem overrides the whole vendor file.
        std::fs::write(
            admin.join("other.kdl"),
            "a {\n uri \"file:///b/stone.index\"\n priority 5\n active #false\n}\n",
        )
        .unwrap();
        let repos = load(root.path()).unwrap();
        let ids: Vec<&str> = repos.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "b_x", "volatile"]);
        assert!(!repos[0].active);
        assert_eq!(
            repos[0].source,
            Source::Direct {
                uri: "file:///b/stone.index".into()
            }
        );
        assert!(
            matches!(&repos[1].source, Source::Root { channel, arch, .. } if channel == "main" && arch == "x86_64")
        );
        // What save writes reads back the same.
        let path = save(root.path(), &repos[1]).unwrap();
        let again = parse_kdl(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
        assert_eq!(again[0].source, repos[1].source);
        assert_eq!(again[0].priority, 5);
    }

    #[test]
    fn bad_files_name_the_problem() {
        let err = parse_yaml("x:\n  uri: u\n", Path::new("f.yaml")).unwrap_err();
        assert!(err.to_string().contains("no priority"), "{err}");
        let err = parse_kdl("x { priority -1\n uri \"u\" }", Path::new("f.kdl")).unwrap_err();
        assert!(err.to_string().contains("0 or more"), "{err}");
    }
}
