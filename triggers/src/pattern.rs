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
//! Matching fills a table of which tokens match which rest of the path, from the last
//! token back, then reads the captures off it: tokens × length steps and no recursion,
//! whatever the pattern. A trigger file can make a commit neither spin on the exponential
//! backtracking a naive glob matcher falls into nor overflow its stack. Pattern text past
//! [`MAX_PATTERN_LEN`] bytes is refused, which bounds the table.

use std::collections::BTreeMap;
use std::fmt;

/// The longest pattern text accepted, in bytes: `PATH_MAX`. A path is never longer, and a
/// pattern names a few directories and wildcards; the bound keeps the matcher's table
/// (tokens × path length, a byte per cell) to 16 MiB at the very worst, for a path that
/// passes the pattern's cheap checks (its literal prefix, its length).
pub const MAX_PATTERN_LEN: usize = 4096;

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
    /// Longer than [`MAX_PATTERN_LEN`].
    #[error("the pattern is {len} bytes long; at most {MAX_PATTERN_LEN} are accepted")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
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
    /// these alone, without the matcher's table.
    prefix: Vec<u8>,
    /// The fewest bytes a match takes (one per literal byte and `?`), and whether it takes
    /// exactly that many (no `*` or `**`): a path of another length needs no table.
    min_len: usize,
    exact: bool,
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
        if bytes.len() > MAX_PATTERN_LEN {
            return Err(PatternError::TooLong { len: bytes.len() });
        }
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
        let min_len = tokens
            .iter()
            .filter(|t| matches!(t, Token::Byte(_) | Token::One))
            .count();
        let exact = !tokens
            .iter()
            .any(|t| matches!(t, Token::Star | Token::DoubleStar));
        Ok(Pattern {
            text: text.to_owned(),
            tokens,
            names,
            prefix,
            min_len,
            exact,
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
        if !path.starts_with(&self.prefix)
            || path.len() < self.min_len
            || (self.exact && path.len() != self.min_len)
        {
            return None;
        }
        let table = self.table(path);
        // Forward along the table: each wildcard takes the most it can while the rest still
        // matches, as a backtracking matcher that tries the longest run first would.
        let mut spans = vec![(0usize, 0usize); self.names.len()];
        let mut at = 0;
        if !table.ok(0, at) {
            return None;
        }
        for (t, token) in self.tokens.iter().enumerate() {
            match token {
                Token::Byte(_) | Token::One => at += 1,
                Token::Star | Token::DoubleStar => {
                    let end = match token {
                        Token::Star => component_end(path, at),
                        _ => path.len(),
                    };
                    // The table says the rest matches from one of these; `?` only to be safe.
                    at = (at..=end).rev().find(|&to| table.ok(t + 1, to))?;
                }
                Token::Open(index) => spans[*index].0 = at,
                Token::Close(index) => spans[*index].1 = at,
            }
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

    /// For every token `t` and position `at`, whether tokens from `t` on match
    /// `path[at..]`, filled from the last token back: each cell from at most two others.
    fn table(&self, path: &[u8]) -> Table {
        let width = path.len() + 1;
        let mut table = Table {
            width,
            cells: vec![false; (self.tokens.len() + 1) * width],
        };
        table.set(self.tokens.len(), path.len());
        for (t, token) in self.tokens.iter().enumerate().rev() {
            for at in (0..width).rev() {
                let byte = path.get(at).copied();
                let ok = match token {
                    Token::Byte(b) => byte == Some(*b) && table.ok(t + 1, at + 1),
                    Token::One => byte.is_some_and(|b| b != b'/') && table.ok(t + 1, at + 1),
                    // Either the run ends here, or it takes this byte and goes on.
                    Token::Star => {
                        table.ok(t + 1, at)
                            || (byte.is_some_and(|b| b != b'/') && table.ok(t, at + 1))
                    }
                    Token::DoubleStar => {
                        table.ok(t + 1, at) || (byte.is_some() && table.ok(t, at + 1))
                    }
                    Token::Open(_) | Token::Close(_) => table.ok(t + 1, at),
                };
                if ok {
                    table.set(t, at);
                }
            }
        }
        table
    }
}

/// [`Pattern::table`]'s answers, a row per token (and one past the last) of a cell per
/// position (and one past the end).
struct Table {
    width: usize,
    cells: Vec<bool>,
}

impl Table {
    fn ok(&self, t: usize, at: usize) -> bool {
        at < self.width && self.cells[t * self.width + at]
    }

    fn set(&mut self, t: usize, at: usize) {
        self.cells[t * self.width + at] = true;
    }
}

/// Where the path component that `at` is in ends: the next `/`, or the end of the path.
fn component_end(path: &[u8], at: usize) -> usize {
    path[at..]
        .iter()
        .position(|&b| b == b'/')
        .map_or(path.len(), |p| at + p)
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
    fn the_longest_patterns_match_on_a_small_stack() {
        // Patterns of the longest accepted length that a recursive matcher would walk one
        // frame per token, on a thread with the 2 MiB stack rayon's and std's threads get.
        let deep = [
            ("/".to_owned() + &"?".repeat(MAX_PATTERN_LEN - 1), 0),
            ("/".to_owned() + &"**".repeat((MAX_PATTERN_LEN - 1) / 2), 1),
            ("/".to_owned() + &"*?".repeat((MAX_PATTERN_LEN - 1) / 2), 2),
        ];
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                for (text, case) in deep {
                    let pattern = Pattern::new(&text).expect("the longest pattern compiles");
                    let path = match case {
                        0 => "/".to_owned() + &"a".repeat(MAX_PATTERN_LEN - 1),
                        1 => "/usr/lib".to_owned(),
                        _ => "/".to_owned() + &"a".repeat((MAX_PATTERN_LEN - 1) / 2),
                    };
                    assert!(pattern.matches(path.as_bytes()).is_some(), "case {case}");
                    assert!(pattern.matches(b"/").is_none() || case == 1, "case {case}");
                }
            })
            .expect("spawns")
            .join()
            .expect("no stack overflow");
        assert_eq!(
            Pattern::new(&"*".repeat(MAX_PATTERN_LEN + 1)),
            Err(PatternError::TooLong {
                len: MAX_PATTERN_LEN + 1
            })
        );
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
