//! Path patterns with named captures (DESIGN.md §10).
//!
//! A pattern is matched against a whole absolute path such as `/usr/lib/modules/6.1/kernel`:
//!
//! | text | matches |
//! |---|---|
//! | `*` | any run of bytes within one path component (no `/`) |
//! | `**` | any run of bytes, across components |
//! | `?` | one byte other than `/` |
//! | `(name:sub)` | what `sub` matches, remembered as `name` |
//! | `\x` | the byte `x` itself |
//! | anything else | itself: `libstdc++`, `(` without `name:`, `.` |
//!
//! Upstream turns patterns into regular expressions without escaping the literal text, so a
//! `+` or `.` in a file name changes the meaning; here every byte that is not one of the
//! forms above stands for itself.
//!
//! Matching is a backtracking walk over a flat token list with a memo of the
//! (token, position) pairs that already failed, so it costs at most tokens × length²
//! steps, whatever the pattern: a trigger file cannot make a commit spin on the
//! exponential backtracking a naive glob matcher falls into.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

/// Why pattern text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// A `(name:` without its closing `)`.
    #[error("the capture '{name}' is not closed with ')'")]
    Unclosed {
        /// The capture's name.
        name: String,
    },
    /// Two captures with one name.
    #[error("the capture name '{name}' is used twice")]
    DuplicateCapture {
        /// The name.
        name: String,
    },
    /// A `\` at the very end.
    #[error("the pattern ends with a lone '\\'")]
    TrailingEscape,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Byte(u8),
    One,
    Star,
    DoubleStar,
    Open(usize),
    Close(usize),
}

/// A compiled pattern.
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    tokens: Vec<Token>,
    names: Vec<String>,
    /// The literal bytes every match starts with: most paths of a tree are rejected on
    /// these alone, without the matcher's memo.
    prefix: Vec<u8>,
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.text)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The values a match captured, by name.
pub type Captures = BTreeMap<String, String>;

impl Pattern {
    /// Compiles pattern text.
    pub fn new(text: &str) -> Result<Pattern, PatternError> {
        let bytes = text.as_bytes();
        let mut tokens = Vec::new();
        let mut names: Vec<String> = Vec::new();
        // Open captures, innermost last: (index into names).
        let mut open: Vec<usize> = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => {
                    let next = *bytes.get(i + 1).ok_or(PatternError::TrailingEscape)?;
                    tokens.push(Token::Byte(next));
                    i += 2;
                }
                b'*' if bytes.get(i + 1) == Some(&b'*') => {
                    tokens.push(Token::DoubleStar);
                    i += 2;
                }
                b'*' => {
                    tokens.push(Token::Star);
                    i += 1;
                }
                b'?' => {
                    tokens.push(Token::One);
                    i += 1;
                }
                b'(' => match capture_name(&bytes[i + 1..]) {
                    Some(name) => {
                        if names.iter().any(|n| n == name) {
                            return Err(PatternError::DuplicateCapture {
                                name: name.to_owned(),
                            });
                        }
                        names.push(name.to_owned());
                        open.push(names.len() - 1);
                        tokens.push(Token::Open(names.len() - 1));
                        i += 1 + name.len() + 1;
                    }
                    None => {
                        tokens.push(Token::Byte(b'('));
                        i += 1;
                    }
                },
                b')' if !open.is_empty() => {
                    let index = open.pop().expect("checked non-empty");
                    tokens.push(Token::Close(index));
                    i += 1;
                }
                other => {
                    tokens.push(Token::Byte(other));
                    i += 1;
                }
            }
        }
        if let Some(&index) = open.last() {
            return Err(PatternError::Unclosed {
                name: names[index].clone(),
            });
        }
        let prefix = tokens
            .iter()
            .map_while(|t| match t {
                Token::Byte(b) => Some(*b),
                _ => None,
            })
            .collect();
        Ok(Pattern {
            text: text.to_owned(),
            tokens,
            names,
            prefix,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The names this pattern captures, in the order they open.
    pub fn capture_names(&self) -> &[String] {
        &self.names
    }

    /// Matches a whole path; on success, returns what each capture took.
    ///
    /// A capture that takes bytes that are not UTF-8 is given with U+FFFD in their place:
    /// the value only ever becomes a command argument.
    pub fn matches(&self, path: &[u8]) -> Option<Captures> {
        if !path.starts_with(&self.prefix) {
            return None;
        }
        let mut spans = vec![(0usize, 0usize); self.names.len()];
        let mut failed = HashSet::new();
        if !self.walk(0, 0, path, &mut spans, &mut failed) {
            return None;
        }
        Some(
            self.names
                .iter()
                .zip(spans)
                .map(|(name, (start, end))| {
                    (
                        name.clone(),
                        String::from_utf8_lossy(&path[start..end]).into_owned(),
                    )
                })
                .collect(),
        )
    }

    /// Whether tokens from `t` on match `path[at..]`. The success of a call does not depend
    /// on the capture spans recorded so far, which is why a failure can be memoised.
    fn walk(
        &self,
        t: usize,
        at: usize,
        path: &[u8],
        spans: &mut [(usize, usize)],
        failed: &mut HashSet<(usize, usize)>,
    ) -> bool {
        let Some(token) = self.tokens.get(t) else {
            return at == path.len();
        };
        if failed.contains(&(t, at)) {
            return false;
        }
        let found = match token {
            Token::Byte(b) => {
                path.get(at) == Some(b) && self.walk(t + 1, at + 1, path, spans, failed)
            }
            Token::One => {
                path.get(at).is_some_and(|&b| b != b'/')
                    && self.walk(t + 1, at + 1, path, spans, failed)
            }
            Token::Star => {
                let end = path[at..]
                    .iter()
                    .position(|&b| b == b'/')
                    .map_or(path.len(), |p| at + p);
                (at..=end)
                    .rev()
                    .any(|to| self.walk(t + 1, to, path, spans, failed))
            }
            Token::DoubleStar => (at..=path.len())
                .rev()
                .any(|to| self.walk(t + 1, to, path, spans, failed)),
            Token::Open(index) => {
                let saved = spans[*index].0;
                spans[*index].0 = at;
                let ok = self.walk(t + 1, at, path, spans, failed);
                if !ok {
                    spans[*index].0 = saved;
                }
                ok
            }
            Token::Close(index) => {
                let saved = spans[*index].1;
                spans[*index].1 = at;
                let ok = self.walk(t + 1, at, path, spans, failed);
                if !ok {
                    spans[*index].1 = saved;
                }
                ok
            }
        };
        if !found {
            failed.insert((t, at));
        }
        found
    }
}

/// The name of a capture that opens at `rest` (just after its `(`): letters, digits, `_`
/// and `-`, then `:`.
fn capture_name(rest: &[u8]) -> Option<&str> {
    let len = rest
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))?;
    if len == 0 || rest[len] != b':' {
        return None;
    }
    std::str::from_utf8(&rest[..len]).ok()
}

/// Replaces every `$(name)` in `text` with its captured value. A `$(name)` the match did not
/// capture is left as written, as upstream does.
pub fn substitute(text: &str, captures: &Captures) -> String {
    let mut out = text.to_owned();
    for (name, value) in captures {
        out = out.replace(&format!("$({name})"), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(pattern: &str, path: &str) -> Option<Vec<(String, String)>> {
        Pattern::new(pattern)
            .expect("test patterns compile")
            .matches(path.as_bytes())
            .map(|c| c.into_iter().collect())
    }

    #[test]
    fn a_kernel_version_is_captured() {
        assert_eq!(
            caps(
                "/usr/lib/modules/(version:*)/kernel",
                "/usr/lib/modules/6.6.7-267.current/kernel"
            ),
            Some(vec![("version".into(), "6.6.7-267.current".into())])
        );
    }

    #[test]
    fn star_stays_within_one_component() {
        assert!(caps("/usr/lib/*.so", "/usr/lib/libfoo.so").is_some());
        assert!(caps("/usr/lib/*.so", "/usr/lib/x/libfoo.so").is_none());
        assert!(caps("/usr/lib/**.so", "/usr/lib/x/libfoo.so").is_some());
        assert!(caps("/usr/lib/**", "/usr/lib/a/b/c").is_some());
    }

    #[test]
    fn question_mark_is_one_byte_but_not_a_slash() {
        assert!(caps("/usr/lib?", "/usr/lib6").is_some());
        assert!(caps("/usr/lib?", "/usr/lib").is_none());
        assert!(caps("/usr?lib", "/usr/lib").is_none());
    }

    #[test]
    fn literal_text_is_literal() {
        // Upstream would read '+' and '.' as regular-expression syntax.
        assert!(caps("/usr/lib/libstdc++.so", "/usr/lib/libstdc++.so").is_some());
        assert!(caps("/usr/lib/libstdc++.so", "/usr/lib/libstdccc.so").is_none());
        assert!(caps("/usr/lib/a.b", "/usr/lib/axb").is_none());
        assert!(caps("/usr/(x)", "/usr/(x)").is_some());
        assert!(caps("/usr/\\*", "/usr/*").is_some());
        assert!(caps("/usr/\\*", "/usr/a").is_none());
    }

    #[test]
    fn captures_nest_and_take_subpatterns() {
        assert_eq!(
            caps(
                "/usr/share/(dir:icons/(theme:*))/index.theme",
                "/usr/share/icons/hicolor/index.theme"
            ),
            Some(vec![
                ("dir".into(), "icons/hicolor".into()),
                ("theme".into(), "hicolor".into())
            ])
        );
    }

    #[test]
    fn the_whole_path_must_match() {
        assert!(caps("/usr/lib", "/usr/lib/x").is_none());
        assert!(caps("/usr/lib/x", "/usr/lib").is_none());
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert_eq!(
            Pattern::new("/usr/(v:*"),
            Err(PatternError::Unclosed { name: "v".into() })
        );
        assert_eq!(
            Pattern::new("/(v:*)/(v:*)"),
            Err(PatternError::DuplicateCapture { name: "v".into() })
        );
        assert_eq!(Pattern::new("/usr\\"), Err(PatternError::TrailingEscape));
    }

    #[test]
    fn many_double_stars_on_a_long_path_finish() {
        let pattern = Pattern::new(&"**a".repeat(30)).expect("compiles");
        let path = "b".repeat(400);
        assert!(pattern.matches(path.as_bytes()).is_none());
    }

    #[test]
    fn substitution_replaces_every_occurrence() {
        let captures: Captures = [("version".to_owned(), "6.1".to_owned())].into();
        assert_eq!(
            substitute("-a $(version) $(version) $(other)", &captures),
            "-a 6.1 6.1 $(other)"
        );
    }
}
