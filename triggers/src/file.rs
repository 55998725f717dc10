//! Trigger files as upstream writes them (DESIGN.md §10), read from a tree.
//!
//! ```yaml
//! name: depmod
//! description: Rebuild the module dependency tables
//! after: ldconfig            # or before:, each one trigger name, as upstream has it
//! inhibitors:
//!   paths: [/etc/moss/no-depmod]
//!   environment: [MOSSFS_NO_DEPMOD]
//! handlers:
//!   depmod: { run: /usr/sbin/depmod, args: [-a, $(version)] }
//!   cleanup: { delete: [/usr/lib/modules/$(version)/stale] }
//! paths:
//!   /usr/lib/modules/(version:*)/kernel:
//!     handlers: [depmod]
//!     type: directory        # optional: directory or symlink
//! ```
//!
//! Upstream silently drops a file it cannot parse and ignores `type` and `inhibitors`;
//! here a bad file is an error that names it, and both filters apply.
//!
//! Files are read as the container will see them: the directory that holds `usr` is
//! opened as a root (`openat2` with `RESOLVE_IN_ROOT`), so an absolute symlink in the new
//! tree resolves inside it and never reaches a host file.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use serde::Deserialize;

use crate::error::TriggerError;
use crate::pattern::Pattern;

/// Which set of triggers, and so where their files live and when they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `usr/share/moss/triggers/tx.d`: run in a container on the new tree before the swap.
    Transaction,
    /// `usr/share/moss/triggers/sys.d`: run after the swap, on the system.
    System,
}

impl Scope {
    /// The folder of this scope's files, relative to the directory that holds `usr`.
    pub fn dir(self) -> &'static str {
        match self {
            Scope::Transaction => "usr/share/moss/triggers/tx.d",
            Scope::System => "usr/share/moss/triggers/sys.d",
        }
    }

    /// A word for people.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Transaction => "transaction",
            Scope::System => "system",
        }
    }
}

/// The largest trigger file read: upstream's are a few hundred bytes.
pub const MAX_FILE_LEN: u64 = 1 << 20;

/// The kind of entry a path rule asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathKind {
    /// Only directories match.
    Directory,
    /// Only symlinks match.
    Symlink,
}

/// What a handler does.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Handler {
    /// Runs a program (no shell) with arguments.
    Run {
        /// The program: an absolute path inside the container, or a name found on `PATH`.
        run: String,
        /// Its arguments.
        #[serde(default)]
        args: Vec<String>,
    },
    /// Deletes paths inside the container.
    Delete {
        /// The paths.
        delete: Vec<String>,
    },
}

/// Conditions that skip a trigger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Inhibitors {
    /// Paths that, when they exist (`/usr/…` in the new tree, anything else on the root),
    /// skip the trigger.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Environment variables that, when set and not empty in mossfs's own environment,
    /// skip the trigger.
    #[serde(default)]
    pub environment: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct RawPath {
    handlers: Vec<String>,
    #[serde(rename = "type")]
    kind: Option<PathKind>,
}

#[derive(Debug, Deserialize)]
struct RawTrigger {
    name: String,
    #[serde(default)]
    description: String,
    before: Option<String>,
    after: Option<String>,
    inhibitors: Option<Inhibitors>,
    handlers: BTreeMap<String, Handler>,
    paths: BTreeMap<String, RawPath>,
}

/// One pattern of a trigger and what it starts.
#[derive(Debug, Clone)]
pub struct PathRule {
    /// The compiled pattern.
    pub pattern: Pattern,
    /// Names of handlers of the same trigger, each known to exist.
    pub handlers: Vec<String>,
    /// The kind of entry that must be at a matching path, if any.
    pub kind: Option<PathKind>,
}

/// A parsed and checked trigger.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// Its unique name.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// Triggers this one runs before.
    pub before: Vec<String>,
    /// Triggers this one runs after.
    pub after: Vec<String>,
    /// What skips it.
    pub inhibitors: Inhibitors,
    /// Its patterns, in the order of their text.
    pub paths: Vec<PathRule>,
    /// Its handlers by name.
    pub handlers: BTreeMap<String, Handler>,
    /// The file it came from, relative to the directory that holds `usr`.
    pub file: PathBuf,
}

impl Trigger {
    /// Parses and checks one file's text; `file` only names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Trigger, TriggerError> {
        let raw: RawTrigger =
            serde_saphyr::from_str(text).map_err(|source| TriggerError::Parse {
                file: file.to_owned(),
                // One line: the parser's message may carry a drawn snippet.
                message: source
                    .to_string()
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join(" "),
            })?;
        if raw.name.is_empty() {
            return Err(TriggerError::Invalid {
                file: file.to_owned(),
                reason: "its name is empty".to_owned(),
            });
        }
        for (name, handler) in &raw.handlers {
            let empty = match handler {
                Handler::Run { run, .. } => run.is_empty(),
                Handler::Delete { delete } => delete.is_empty(),
            };
            if empty {
                return Err(TriggerError::Invalid {
                    file: file.to_owned(),
                    reason: format!("handler '{name}' has nothing to run or delete"),
                });
            }
        }
        let mut paths = Vec::with_capacity(raw.paths.len());
        for (text, rule) in raw.paths {
            let pattern = Pattern::new(&text).map_err(|source| TriggerError::Pattern {
                file: file.to_owned(),
                pattern: shortened(&text),
                source,
            })?;
            if let Some(handler) = rule
                .handlers
                .iter()
                .find(|h| !raw.handlers.contains_key(*h))
            {
                return Err(TriggerError::UnknownHandler {
                    file: file.to_owned(),
                    pattern: text,
                    handler: handler.clone(),
                });
            }
            paths.push(PathRule {
                pattern,
                handlers: rule.handlers,
                kind: rule.kind,
            });
        }
        Ok(Trigger {
            name: raw.name,
            description: raw.description,
            before: raw.before.into_iter().collect(),
            after: raw.after.into_iter().collect(),
            inhibitors: raw.inhibitors.unwrap_or_default(),
            paths,
            handlers: raw.handlers,
            file: file.to_owned(),
        })
    }
}

/// Reads every `*.yaml` (and `*.yml`) file of `scope` below `root` (the directory that
/// holds `usr`), in name order. A missing folder means no triggers. Two triggers with one
/// name are an error naming both files.
pub fn load(root: &Path, scope: Scope) -> Result<Vec<Trigger>, TriggerError> {
    let root_fd = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| TriggerError::Read {
        file: root.to_owned(),
        source: e.into(),
    })?;
    let dir = match open_in_root(&root_fd, scope.dir(), OFlags::DIRECTORY) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(Vec::new()),
        Err(e) => {
            return Err(TriggerError::Read {
                file: PathBuf::from(scope.dir()),
                source: e.into(),
            });
        }
    };
    let mut names = Vec::new();
    let entries = rustix::fs::Dir::read_from(&dir).map_err(|e| TriggerError::Read {
        file: PathBuf::from(scope.dir()),
        source: e.into(),
    })?;
    for entry in entries {
        let entry = entry.map_err(|e| TriggerError::Read {
            file: PathBuf::from(scope.dir()),
            source: e.into(),
        })?;
        let name = entry.file_name().to_bytes();
        if name.ends_with(b".yaml") || name.ends_with(b".yml") {
            names.push(String::from_utf8_lossy(name).into_owned());
        }
    }
    names.sort();
    let mut triggers: Vec<Trigger> = Vec::with_capacity(names.len());
    for name in names {
        let rel = format!("{}/{name}", scope.dir());
        let file = PathBuf::from(&rel);
        let text = read_in_root(&root_fd, &rel).map_err(|source| TriggerError::Read {
            file: file.clone(),
            source,
        })?;
        let trigger = Trigger::parse(&text, &file)?;
        if let Some(first) = triggers.iter().find(|t| t.name == trigger.name) {
            return Err(TriggerError::DuplicateName {
                name: trigger.name,
                first: first.file.clone(),
                second: file,
            });
        }
        triggers.push(trigger);
    }
    Ok(triggers)
}

fn open_in_root(root: &OwnedFd, path: &str, extra: OFlags) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat2(
        root,
        path,
        OFlags::RDONLY | OFlags::CLOEXEC | extra,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
}

fn read_in_root(root: &OwnedFd, path: &str) -> std::io::Result<String> {
    let fd = open_in_root(root, path, OFlags::empty())?;
    let mut file = std::fs::File::from(fd);
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut text = String::new();
    (&mut file)
        .take(MAX_FILE_LEN + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_FILE_LEN {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_FILE_LEN} bytes"),
        ));
    }
    Ok(text)
}

/// Pattern text as an error shows it: a refused pattern can be up to a whole trigger file
/// long, and the message must stay one line.
fn shortened(text: &str) -> String {
    const SHOWN: usize = 80;
    match text.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPMOD: &str = r#"
name: depmod
description: Rebuild module tables
after: ldconfig
inhibitors:
  paths:
    - /etc/no-depmod
handlers:
  depmod:
    run: /usr/sbin/depmod
    args: ["-a", "$(version)"]
  clean:
    delete: ["/usr/lib/modules/$(version)/old"]
paths:
  "/usr/lib/modules/(version:*)/kernel":
    handlers:
      - depmod
    type: directory
"#;

    #[test]
    fn upstream_style_file_parses() {
        let t = Trigger::parse(DEPMOD, Path::new("x.yaml")).expect("parses");
        assert_eq!(t.name, "depmod");
        assert_eq!(t.after, vec!["ldconfig".to_owned()]);
        assert!(t.before.is_empty());
        assert_eq!(t.inhibitors.paths, vec!["/etc/no-depmod".to_owned()]);
        assert_eq!(t.paths.len(), 1);
        assert_eq!(t.paths[0].kind, Some(PathKind::Directory));
        assert_eq!(
            t.handlers["depmod"],
            Handler::Run {
                run: "/usr/sbin/depmod".into(),
                args: vec!["-a".into(), "$(version)".into()]
            }
        );
        assert!(matches!(t.handlers["clean"], Handler::Delete { .. }));
    }

    #[test]
    fn a_trigger_named_y_is_a_name_not_a_boolean() {
        let text = "name: x\nafter: y\nhandlers:\n  h: { run: /bin/true }\npaths:\n  /usr/x:\n    handlers: [h]\n";
        let t = Trigger::parse(text, Path::new("x.yaml")).expect("parses");
        assert_eq!(t.after, vec!["y".to_owned()]);
    }

    #[test]
    fn unknown_handler_names_the_file_and_handler() {
        let text = DEPMOD.replace("      - depmod", "      - depmodd");
        match Trigger::parse(&text, Path::new("tx.d/k.yaml")) {
            Err(TriggerError::UnknownHandler { file, handler, .. }) => {
                assert_eq!(file, Path::new("tx.d/k.yaml"));
                assert_eq!(handler, "depmodd");
            }
            other => panic!("expected UnknownHandler, got {other:?}"),
        }
    }

    #[test]
    fn an_overlong_pattern_is_refused_in_one_short_line() {
        let long = format!("/usr/{}", "**".repeat(5000));
        let text = format!(
            "name: x\nhandlers:\n  h: {{ run: /bin/true }}\npaths:\n  ? \"{long}\"\n  : handlers: [h]\n"
        );
        let err = Trigger::parse(&text, Path::new("tx.d/long.yaml")).expect_err("refused");
        match &err {
            TriggerError::Pattern {
                pattern, source, ..
            } => {
                assert_eq!(
                    *source,
                    crate::pattern::PatternError::TooLong { len: long.len() }
                );
                assert!(pattern.starts_with("/usr/**") && pattern.ends_with('…'));
            }
            other => panic!("expected Pattern, got {other:?}"),
        }
        assert!(err.to_string().len() < 200, "{err}");
    }

    #[test]
    fn unparsable_text_is_an_error_naming_the_file() {
        let err =
            Trigger::parse("name: [unclosed", Path::new("tx.d/bad.yaml")).expect_err("refused");
        assert!(
            matches!(err, TriggerError::Parse { ref file, .. } if file == Path::new("tx.d/bad.yaml"))
        );
        assert!(err.to_string().contains("tx.d/bad.yaml"));
    }

    #[test]
    fn a_handler_with_neither_run_nor_delete_is_refused() {
        let text =
            "name: a\nhandlers:\n  h:\n    exec: /bin/true\npaths:\n  /usr/x:\n    handlers: [h]\n";
        assert!(matches!(
            Trigger::parse(text, Path::new("a.yaml")),
            Err(TriggerError::Parse { .. })
        ));
    }

    #[test]
    fn files_load_in_order_and_symlinks_stay_inside_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tx = dir.path().join(Scope::Transaction.dir());
        std::fs::create_dir_all(&tx).expect("mkdir");
        std::fs::write(tx.join("b.yaml"), DEPMOD).expect("write");
        std::fs::write(
            tx.join("a.yaml"),
            "name: a\nhandlers:\n  h: { run: /bin/true }\npaths:\n  /usr/x:\n    handlers: [h]\n",
        )
        .expect("write");
        std::fs::write(tx.join("ignored.txt"), "junk").expect("write");
        let names: Vec<_> = load(dir.path(), Scope::Transaction)
            .expect("loads")
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["a", "depmod"]);

        // An absolute link resolves inside the root: to ROOT/etc/host.yaml, not /etc.
        let outside = dir.path().join("etc");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::os::unix::fs::symlink("/etc/host.yaml", tx.join("c.yaml")).expect("symlink");
        assert!(matches!(
            load(dir.path(), Scope::Transaction),
            Err(TriggerError::Read { ref file, .. }) if file.ends_with("c.yaml")
        ));
    }

    #[test]
    fn a_missing_folder_means_no_triggers() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(load(dir.path(), Scope::System).expect("loads").is_empty());
    }
}
