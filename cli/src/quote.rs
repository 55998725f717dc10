//! Names and text from outside (layout paths, link texts, package metadata, file names)
//! made safe to show: a name is bytes, and a hostile one may hold a newline that forges an
//! output line, an escape sequence that recolours the terminal, or bytes that are not
//! UTF-8 and would all turn into the same U+FFFD.
//!
//! One rule for every command that prints such a name for people:
//! - a plain name (printable characters, no space, quote or backslash) is shown as it is;
//! - any other name is shown in double quotes, with `\"`, `\\`, `\n`, `\t`, `\u{1b}`
//!   (Rust's escapes for characters that are not printable) and `\xff` for each byte that
//!   is not UTF-8.
//!
//! The quoted form tells distinct names apart: no two names print alike. For programs,
//! [`json`] keeps the exact bytes: a string when the name is UTF-8, otherwise
//! `{"bytes": "<hex>"}`.

use std::borrow::Cow;

use serde_json::{Value, json};

/// A name or path for people: as it is when plain, otherwise quoted and escaped.
pub fn name(bytes: &[u8]) -> Cow<'_, str> {
    let mut escaped = String::with_capacity(bytes.len() + 2);
    let mut quote = bytes.is_empty();
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid();
        let shown = escape(valid);
        quote |= shown.len() != valid.len() || valid.contains(' ');
        escaped.push_str(&shown);
        for byte in chunk.invalid() {
            quote = true;
            escaped.push_str(&format!("\\x{byte:02x}"));
        }
    }
    if !quote {
        // Every byte was plain, printable UTF-8.
        return String::from_utf8_lossy(bytes);
    }
    Cow::Owned(format!("\"{escaped}\""))
}

/// Free text for people (a summary, a metadata value): shown without quotes, but every
/// character that is not printable is escaped, so that it stays on its line and cannot
/// drive the terminal.
pub fn text(text: &str) -> Cow<'_, str> {
    // Quotes and backslashes need no escape here: the text is not quoted.
    let plain =
        |c: char| matches!(c, '\\' | '"' | '\'') || c.escape_debug().len() == 1 || combining(c);
    if text.chars().all(plain) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if plain(c) {
            out.push(c);
        } else {
            out.extend(c.escape_debug());
        }
    }
    Cow::Owned(out)
}

/// A name for programs, without loss: the string itself when it is UTF-8, otherwise
/// `{"bytes": "<lowercase hex of every byte>"}`.
pub fn json(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::from(text),
        Err(_) => json!({ "bytes": hex(bytes) }),
    }
}

/// Whether `c` is a combining mark, printable after another character (`e\u{301}`), which
/// Rust's escapes treat as unprintable only at the start of a string.
fn combining(c: char) -> bool {
    !c.is_control() && ['a', c].iter().collect::<String>().escape_debug().count() == 2
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Rust's debug escapes (which also cover `"` and `\`), except for `'`, which needs none
/// inside double quotes.
fn escape(valid: &str) -> Cow<'_, str> {
    let escaped = valid.escape_debug().to_string();
    if escaped.len() == valid.len() {
        return Cow::Borrowed(valid);
    }
    // `\'` only ever comes from a `'`: a backslash of the name is doubled.
    Cow::Owned(escaped.replace("\\'", "'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_shown_as_they_are() {
        assert_eq!(name(b"usr/bin/nano"), "usr/bin/nano");
        assert_eq!(
            name("share/caf\u{e9}/日本".as_bytes()),
            "share/caf\u{e9}/日本"
        );
        assert_eq!(name(b"it's"), "it's");
    }

    #[test]
    fn odd_names_are_quoted_and_escaped() {
        assert_eq!(name(b"a\nb"), r#""a\nb""#);
        assert_eq!(name(b"\x1b[31mred"), r#""\u{1b}[31mred""#);
        assert_eq!(name(b"two words"), r#""two words""#);
        assert_eq!(name(b"say \"hi\""), r#""say \"hi\"""#);
        assert_eq!(name(b"back\\slash"), r#""back\\slash""#);
        assert_eq!(name(b"it's\n"), r#""it's\n""#);
        assert_eq!(name(b""), r#""""#);
        assert_eq!(name("rl\u{202e}o".as_bytes()), r#""rl\u{202e}o""#);
    }

    #[test]
    fn bytes_that_are_not_utf8_stay_distinct() {
        assert_eq!(name(b"a\xffb"), r#""a\xffb""#);
        assert_eq!(name(b"a\xfeb"), r#""a\xfeb""#);
        // The text `\xff` is not the byte 0xff.
        assert_eq!(name(b"a\\xffb"), r#""a\\xffb""#);
        assert_ne!(name(b"a\xffb"), name("a\u{fffd}b".as_bytes()));
    }

    #[test]
    fn text_stays_on_its_line() {
        assert_eq!(text("Says hello, \"loudly\""), "Says hello, \"loudly\"");
        assert_eq!(text("one\ntwo\x1b[2J"), r"one\ntwo\u{1b}[2J");
        assert_eq!(text("cafe\u{301}"), "cafe\u{301}");
    }

    #[test]
    fn json_keeps_every_byte() {
        assert_eq!(json(b"bin/x"), Value::from("bin/x"));
        assert_eq!(json(b"a\nb"), Value::from("a\nb"));
        assert_eq!(json(b"a\xff"), json!({ "bytes": "61ff" }));
    }
}
