//! Upstream's root index, `<base>/<channel>/moss-root-index.json` (its PR #765, DESIGN §8).
//!
//! ```json
//! { "formats": { "v0": {} },
//!   "streams": { "unstable": { "format": "v0", "history": "1733000000" } },
//!   "tags":    { "2026.1": { "format": "v0", "history": "1733000000" } },
//!   "history": { "1733000000": { "format": "v0" } } }
//! ```
//!
//! Each history is `<base>/<channel>/history/<id>/<arch>/stone.index` and never changes
//! once published. A client names `stream/<name>`, `tag/<name>` or `history/<id>`, and
//! uses the history it resolves to only when it knows that history's format: a new format
//! is published as new histories that old clients never pick ("update forever"). Unknown
//! keys are kept as they are, so rewriting the file never loses what a newer tool added.

use serde_json::{Map, Value, json};

/// The index formats this mossfs reads.
pub const SUPPORTED_FORMATS: &[&str] = &["v0"];
/// The format `mossfs index` publishes.
pub const FORMAT: &str = "v0";
/// The root index's file name.
pub const FILE_NAME: &str = "moss-root-index.json";

/// A parsed root index, kept as JSON so that unknown keys survive a rewrite.
#[derive(Debug, Clone, PartialEq)]
pub struct RootIndex(Map<String, Value>);

/// What a version resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The history id.
    pub history: String,
    /// Its format.
    pub format: String,
}

impl Default for RootIndex {
    fn default() -> Self {
        let Value::Object(map) = json!({
            "formats": { FORMAT: {} },
            "streams": {},
            "tags": {},
            "history": {},
        }) else {
            unreachable!("a literal object")
        };
        RootIndex(map)
    }
}

impl RootIndex {
    /// Parses the file; it must be a JSON object.
    pub fn parse(bytes: &[u8]) -> Result<RootIndex, String> {
        match serde_json::from_slice::<Value>(bytes).map_err(|e| e.to_string())? {
            Value::Object(map) => Ok(RootIndex(map)),
            _ => Err("not a JSON object".into()),
        }
    }

    /// The file's bytes, pretty-printed with a final newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(&self.0).unwrap_or_default();
        out.push(b'\n');
        out
    }

    fn section(&self, name: &str) -> Option<&Map<String, Value>> {
        self.0.get(name).and_then(Value::as_object)
    }

    fn section_mut(&mut self, name: &str) -> &mut Map<String, Value> {
        let entry = self
            .0
            .entry(name.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        match entry {
            Value::Object(map) => map,
            _ => unreachable!("made an object just above"),
        }
    }

    /// Whether history `id` is listed.
    pub fn has_history(&self, id: &str) -> bool {
        self.section("history").is_some_and(|h| h.contains_key(id))
    }

    /// Lists history `id` in the current format and, when `stream` is given, points that
    /// stream at it. Earlier histories are left exactly as they were.
    pub fn add_history(&mut self, id: &str, stream: Option<&str>) {
        self.section_mut("formats")
            .entry(FORMAT.to_owned())
            .or_insert_with(|| json!({}));
        self.section_mut("history")
            .insert(id.to_owned(), json!({ "format": FORMAT }));
        if let Some(stream) = stream {
            self.section_mut("streams").insert(
                stream.to_owned(),
                json!({ "format": FORMAT, "history": id }),
            );
        }
    }

    /// Resolves `stream/<name>`, `tag/<name>` or `history/<id>` to a history and its format.
    pub fn resolve(&self, version: &str) -> Result<Resolved, String> {
        let (scope, name) = version.split_once('/').ok_or_else(|| {
            format!("version '{version}' is not stream/NAME, tag/NAME or history/ID")
        })?;
        let history = match scope {
            "stream" | "tag" => {
                let section = if scope == "stream" { "streams" } else { "tags" };
                self.section(section)
                    .and_then(|s| s.get(name))
                    .and_then(|v| v.get("history"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("it lists no {scope} named '{name}'"))?
                    .to_owned()
            }
            "history" => name.to_owned(),
            _ => return Err(format!("'{scope}' is not stream, tag or history")),
        };
        let format = self
            .section("history")
            .and_then(|h| h.get(&history))
            .and_then(|v| v.get("format"))
            .and_then(Value::as_str)
            .ok_or_else(|| format!("it lists no history '{history}'"))?
            .to_owned();
        if !valid_id(&history) {
            return Err(format!("history id '{history}' is not a plain name"));
        }
        Ok(Resolved { history, format })
    }

    /// The newest history (by numeric id, then by name) in a format this mossfs reads.
    pub fn newest_supported(&self) -> Option<Resolved> {
        let histories = self.section("history")?;
        histories
            .iter()
            .filter_map(|(id, v)| {
                let format = v.get("format")?.as_str()?;
                (SUPPORTED_FORMATS.contains(&format) && valid_id(id)).then(|| Resolved {
                    history: id.clone(),
                    format: format.to_owned(),
                })
            })
            .max_by(|a, b| {
                let key = |r: &Resolved| (r.history.parse::<u64>().ok(), r.history.clone());
                key(a).cmp(&key(b))
            })
    }
}

/// A history id, channel or arch must be one plain path component.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histories_streams_and_unknown_keys() {
        let text = br#"{"formats":{"v0":{},"v9":{"x":1}},"mirror-of":"a",
            "streams":{"unstable":{"format":"v9","history":"300"}},
            "tags":{},"history":{"100":{"format":"v0"},"300":{"format":"v9"}}}"#;
        let mut root = RootIndex::parse(text).unwrap();
        assert_eq!(root.newest_supported().unwrap().history, "100");
        assert_eq!(root.resolve("stream/unstable").unwrap().format, "v9");
        root.add_history("200", Some("unstable"));
        let again = RootIndex::parse(&root.to_bytes()).unwrap();
        assert_eq!(again.0.get("mirror-of"), Some(&json!("a")));
        assert_eq!(again.resolve("stream/unstable").unwrap().history, "200");
        assert_eq!(again.newest_supported().unwrap().history, "200");
        assert!(again.has_history("300"));
        assert!(again.resolve("history/../x").is_err());
        assert!(again.resolve("stream/none").is_err());
    }
}
