//! The one place where user-supplied text is made safe to show: cut to a fixed length and
//! stripped of control characters before it reaches a deny message, a warning, a plain-text
//! HTTP answer or a log field.
//!
//! Why both: a review may carry megabytes in a name, a username or a field tether quotes back,
//! and the API server stores `status.message` in its audit log and shows it to the user;
//! control characters (newlines, ESC, NUL, U+2028/U+2029, bidi overrides) in a message or a
//! text-format log line forge lines or terminal output. Every control character becomes a
//! space, so words stay apart and the text stays one line.

use std::borrow::Cow;

/// Longest `status.message` tether sends (characters). The SPEC caps a deny at 20 violations,
/// each naming its field; 8 KiB leaves room for all of them with short quotes.
pub const MAX_MESSAGE: usize = 8 * 1024;

/// Longest identifier (uid, name, namespace, username, kind…) in a log line.
pub const MAX_FIELD: usize = 256;

/// Longest quote of an input value or of a parser error (which may quote the input).
pub const MAX_DETAIL: usize = 300;

/// What a cut string ends with, so a reader knows it was cut.
pub const ELLIPSIS: char = '…';

/// Characters that must never reach a message or a log line: C0 and C1 controls (NUL, ESC,
/// `\n`, DEL…), the Unicode line and paragraph separators, and the bidirectional overrides
/// and isolates that can make a terminal show text in a different order than it is.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}'
        )
}

/// `s` cut to at most `max` characters (the last one then being `…`) with every unsafe
/// character replaced by a space. Borrows when nothing had to change, which is the common
/// case, so the hot path does not allocate.
pub fn clean(s: &str, max: usize) -> Cow<'_, str> {
    let max = max.max(1);
    // Nearly every field is short printable ASCII: no character can be unsafe and (bytes
    // being at least characters) none cut. A byte test the compiler vectorises settles it.
    if s.len() <= max && printable_ascii(s) {
        return Cow::Borrowed(s);
    }
    // One pass finds the byte offset of the cut (char-boundary safe) and whether anything
    // needs replacing; only then do we allocate.
    let mut cut_at = None;
    let mut dirty = false;
    for (n, (i, c)) in s.char_indices().enumerate() {
        if n == max - 1 {
            // Room for one more character: the whole rest fits only if this is the last one.
            if s[i..].chars().nth(1).is_some() {
                cut_at = Some(i);
                break;
            }
        }
        dirty |= is_unsafe(c);
    }
    if cut_at.is_none() && !dirty {
        return Cow::Borrowed(s);
    }
    let kept = &s[..cut_at.unwrap_or(s.len())];
    let mut out = String::with_capacity(kept.len() + ELLIPSIS.len_utf8());
    out.extend(kept.chars().map(|c| if is_unsafe(c) { ' ' } else { c }));
    if cut_at.is_some() {
        out.push(ELLIPSIS);
    }
    Cow::Owned(out)
}

/// Whether every byte of `s` is printable ASCII (0x20..=0x7e). No early exit: a plain
/// reduction over all the bytes is one the compiler vectorises (16 bytes an instruction
/// or so), where `all` tests them one by one; callers bound `s` first.
fn printable_ascii(s: &str) -> bool {
    s.bytes()
        .fold(0u8, |bad, b| bad | u8::from(!(0x20..0x7f).contains(&b)))
        == 0
}

/// [`clean`] for an owned string, without a copy when it was already clean.
pub fn clean_owned(s: String, max: usize) -> String {
    match clean(&s, max) {
        Cow::Borrowed(_) => s,
        Cow::Owned(o) => o,
    }
}

/// Longest single violation in a deny message, so one huge quote cannot push the other
/// violations out of [`MAX_MESSAGE`].
pub const MAX_VIOLATION: usize = 1024;

/// `s` as a quoted, escaped string for a message, cut to [`MAX_DETAIL`] first.
pub fn quoted(s: &str) -> String {
    format!("{:?}", clean(s, MAX_DETAIL))
}

/// A log field: an identifier cut to [`MAX_FIELD`].
pub fn field(s: &str) -> Cow<'_, str> {
    clean(s, MAX_FIELD)
}

/// The first `max` bytes of `s`, or all of `s`; never splits a character. For limits counted
/// in bytes (Kubernetes name parts, Events API fields, condition messages).
pub fn cut_bytes(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `s` unchanged when it fits in `max` bytes, else cut so that it ends with `...` within
/// `max` bytes (status condition messages).
pub fn cut_bytes_marked(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    format!("{}...", cut_bytes(s, max.saturating_sub(3)))
}

/// A string quoted for a message, cut to `max` characters so one absurd value cannot bloat
/// a deny message; control characters come out escaped (`{:?}`), unlike [`quoted`], which
/// turns them into spaces.
pub fn quote_short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        format!("{s:?}")
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut:?}{ELLIPSIS}")
    }
}

/// Longest rendering of a JSON value in a message, in characters.
const MAX_SHOWN_VALUE: usize = 60;

/// A JSON value rendered for a message (compact, cut to [`MAX_SHOWN_VALUE`] characters).
pub fn show_value(v: &impl std::fmt::Display) -> String {
    let s = v.to_string();
    if s.chars().count() <= MAX_SHOWN_VALUE {
        s
    } else {
        let cut: String = s.chars().take(MAX_SHOWN_VALUE).collect();
        format!("{cut}{ELLIPSIS}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&str, usize, &str)] = &[
            ("plain", 10, "plain"),
            ("", 10, ""),
            ("exactly10!", 10, "exactly10!"),
            ("eleven chrs", 10, "eleven ch…"),
            ("a\nb", 10, "a b"),
            ("nul\0esc\u{1b}[31m", 20, "nul esc [31m"),
            ("ls\u{2028}ps\u{2029}", 10, "ls ps "),
            ("bidi\u{202E}txt\u{2066}", 20, "bidi txt "),
            ("del\u{7f}c1\u{85}", 20, "del c1 "),
            // Multi-byte characters are counted and cut as characters, never mid-byte.
            ("ééééé", 3, "éé…"),
            ("日本語テキスト", 4, "日本語…"),
            ("🦀🦀", 1, "…"),
            ("x", 0, "x"),
            // Edges of the printable-ASCII fast path: `~` and space are kept, tab and DEL not.
            ("~ ok ~", 6, "~ ok ~"),
            ("tab\there", 20, "tab here"),
            ("\u{7f}", 1, " "),
        ];
        crate::table_test::each(cases, |(input, max, want)| {
            assert_eq!(clean(input, *max), *want, "{input:?} max {max}");
            assert!(clean(input, *max).chars().count() <= (*max).max(1));
        });
    }

    #[test]
    fn quoted_is_cut_and_escaped() {
        assert_eq!(quoted("a\"b"), "\"a\\\"b\"");
        assert_eq!(quoted("x\ny"), "\"x y\"");
        let q = quoted(&"d".repeat(2_000_000));
        assert_eq!(q.chars().count(), MAX_DETAIL + 2);
    }

    #[test]
    fn printable_ascii_tests_every_byte_at_every_place() {
        // Every ASCII byte and a non-ASCII character, first, last and around the
        // 16- and 32-byte marks of a vectorised loop, in strings of several lengths.
        let odd: Vec<String> = (0u8..0x80)
            .map(|b| char::from(b).to_string())
            .chain(["é".to_string(), "\u{2028}".to_string()])
            .collect();
        for len in [1, 15, 16, 17, 33, 70] {
            for at in [0, 7, 15, 16, 31, 32, len - 1] {
                if at >= len {
                    continue;
                }
                for c in &odd {
                    let s = format!("{}{c}{}", "a".repeat(at), "b".repeat(len - 1 - at));
                    let want = s.bytes().all(|b| (0x20..0x7f).contains(&b));
                    assert_eq!(printable_ascii(&s), want, "{s:?}");
                }
            }
        }
        assert!(printable_ascii(""));
    }

    #[test]
    fn clean_input_is_borrowed() {
        assert!(matches!(clean("alice", 256), Cow::Borrowed("alice")));
        let s = "x".repeat(256);
        assert!(matches!(clean(&s, 256), Cow::Borrowed(_)));
    }

    #[test]
    fn megabytes_are_cut_quickly() {
        // The inputs: a 2 MB domain, a 2.5 MB username.
        let big = "d".repeat(2_000_000);
        let out = clean(&big, MAX_MESSAGE);
        assert_eq!(out.chars().count(), MAX_MESSAGE);
        assert!(out.ends_with(ELLIPSIS));
        let user = format!("{}\n{}", "u".repeat(1_250_000), "v".repeat(1_250_000));
        assert_eq!(field(&user).chars().count(), MAX_FIELD);
        assert_eq!(clean_owned(user, 5), "uuuu…");
    }

    #[test]
    fn quote_and_show() {
        assert_eq!(quote_short("ab", 5), "\"ab\"");
        assert_eq!(quote_short("a\nb", 5), "\"a\\nb\"");
        assert_eq!(quote_short("abcdef", 3), "\"abc\"…");
        assert_eq!(show_value(&serde_json::json!([1])), "[1]");
        assert_eq!(
            show_value(&serde_json::json!("x".repeat(70))),
            format!("\"{}…", "x".repeat(59))
        );
    }

    #[test]
    fn byte_cuts_keep_characters_whole() {
        assert_eq!(cut_bytes("abc", 10), "abc");
        assert_eq!(cut_bytes("abcdef", 3), "abc");
        assert_eq!(cut_bytes("aé", 2), "a"); // é is 2 bytes: not split
        assert_eq!(cut_bytes_marked("abc", 3), "abc");
        assert_eq!(cut_bytes_marked("abcdef", 5), "ab...");
        assert_eq!(cut_bytes_marked("ééé", 6), "ééé");
        assert_eq!(cut_bytes_marked("éééé", 6), "é...");
    }
}
