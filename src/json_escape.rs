//! The inside of a JSON string, escaped byte for byte as serde_json escapes it, for the JSON
//! that tether writes by hand: the log line and the admission answer (every request), the
//! canonical form that stamps are signed over, and quoted keys in field paths.
//!
//! serde_json looks every byte up in a table (about eight instructions a byte). Nearly
//! everything tether writes needs no escape at all, so [`write_escaped`] first tests the
//! whole string eight bytes at a time, and writes a clean string in one piece.

use std::fmt::{self, Write};

/// Whether serde_json escapes this byte inside a string: control characters, `"` and `\`.
#[inline]
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Whether any byte of `bytes` needs an escape, tested eight bytes at a time in a `u64`
/// (the strings are mostly short: vector code only pays off after a hundred bytes or so).
/// A lane's high bit is set by `x - 0x01…01 & !x` when the lane was zero, after XOR with
/// `"` or `\`, and by `x - 0x20…20 & !x` when it was below 0x20; a borrow can also set
/// lanes above a set one, which does not matter for "any".
#[inline]
fn any_needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES << 7;
    let Some(last) = bytes.len().checked_sub(8) else {
        return bytes.iter().any(|&b| needs_escape(b));
    };
    let zero_lane = |x: u64| x.wrapping_sub(ONES) & !x;
    let test = |chunk: &[u8]| {
        let Ok(lanes) = <[u8; 8]>::try_from(chunk) else {
            return 0; // unreachable: every chunk has eight bytes
        };
        let x = u64::from_le_bytes(lanes);
        (x.wrapping_sub(ONES * 0x20) & !x)
            | zero_lane(x ^ (ONES * u64::from(b'"')))
            | zero_lane(x ^ (ONES * u64::from(b'\\')))
    };
    // The last eight bytes (overlapping the last whole chunk) stand in for the remainder.
    let found = bytes
        .chunks_exact(8)
        .fold(test(&bytes[last..]), |f, c| f | test(c));
    found & HIGH != 0
}

/// Writes `s` escaped as the inside of a JSON string (no quotes), exactly as serde_json
/// would: `\"`, `\\`, `\b \f \n \r \t`, other control characters as `\u00xx`; everything
/// else, non-ASCII included, as is.
///
/// Inlined: the test and the one write of a clean string (a field name, a uid) are a few
/// dozen instructions, which a call and its register saves nearly doubled.
#[inline]
pub fn write_escaped<W: Write + ?Sized>(w: &mut W, s: &str) -> fmt::Result {
    if !any_needs_escape(s.as_bytes()) {
        return w.write_str(s);
    }
    write_escaped_slow(w, s)
}

/// [`write_escaped`] of a string with something to escape.
#[inline(never)]
fn write_escaped_slow<W: Write + ?Sized>(w: &mut W, s: &str) -> fmt::Result {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !needs_escape(b) {
            continue;
        }
        // `b` is ASCII, so both slices end on character boundaries.
        w.write_str(&s[start..i])?;
        match b {
            b'"' => w.write_str("\\\"")?,
            b'\\' => w.write_str("\\\\")?,
            b'\n' => w.write_str("\\n")?,
            b'\r' => w.write_str("\\r")?,
            b'\t' => w.write_str("\\t")?,
            0x08 => w.write_str("\\b")?,
            0x0c => w.write_str("\\f")?,
            b => write!(w, "\\u{b:04x}")?,
        }
        start = i + 1;
    }
    w.write_str(&s[start..])
}

/// Appends `s` as a quoted JSON string.
pub fn push_quoted(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    // Writing into a Vec cannot fail.
    let _ = write_escaped(&mut VecText(out), s);
    out.push(b'"');
}

/// Appends `s` as a quoted JSON string to text.
pub fn push_quoted_str(out: &mut String, s: &str) {
    out.push('"');
    // Writing into a String cannot fail.
    let _ = write_escaped(out, s);
    out.push('"');
}

/// A `Vec<u8>` taking `fmt::Write` text.
struct VecText<'a>(&'a mut Vec<u8>);

impl Write for VecText<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn quoted(s: &str) -> String {
        let mut out = Vec::new();
        push_quoted(&mut out, s);
        String::from_utf8(out).expect("escaping keeps UTF-8")
    }

    #[test]
    fn table() {
        let long_clean = "a".repeat(70);
        let quote_at_40 = format!("{}\"{}", "b".repeat(40), "c".repeat(30));
        let cases: &[(&str, &str, String)] = &[
            ("empty", "", r#""""#.into()),
            (
                "plain",
                "alice@example.com",
                r#""alice@example.com""#.into(),
            ),
            ("quote and backslash", r#"a"b\c"#, r#""a\"b\\c""#.into()),
            (
                "short escapes",
                "\u{8}\u{c}\n\r\t",
                r#""\b\f\n\r\t""#.into(),
            ),
            ("other controls", "\u{0}\u{1f}", r#""\u0000\u001f""#.into()),
            (
                "DEL and non-ASCII are kept",
                "\u{7f}é€😀",
                "\"\u{7f}é€😀\"".into(),
            ),
            (
                "longer than a vector",
                &long_clean,
                format!("\"{long_clean}\""),
            ),
            (
                "escape after a clean vector's worth",
                &quote_at_40,
                format!("\"{}\\\"{}\"", "b".repeat(40), "c".repeat(30)),
            ),
            ("escape last", "abc\"", r#""abc\"""#.into()),
            // Twelve bytes: the escape is only in the overlapping last eight.
            (
                "escape in the tail",
                "abcdefghijk\n",
                r#""abcdefghijk\n""#.into(),
            ),
            (
                "eight bytes, escape first",
                "\tbcdefgh",
                r#""\tbcdefgh""#.into(),
            ),
        ];
        crate::table_test::each(cases, |(name, input, want)| {
            assert_eq!(&quoted(input), want, "{name}");
        });
    }

    proptest! {
        /// Byte for byte what serde_json writes, for any string.
        #[test]
        fn same_bytes_as_serde_json(s in "(\\PC|[\\x00-\\x1f\"\\\\]){0,100}") {
            prop_assert_eq!(quoted(&s), serde_json::to_string(&s).unwrap());
            let mut text = String::new();
            push_quoted_str(&mut text, &s);
            prop_assert_eq!(text, serde_json::to_string(&s).unwrap());
        }
    }
}
