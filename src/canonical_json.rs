//! One canonical JSON form for hashing and signing: object keys sorted, no whitespace, and
//! integral floats written as integers, so the result survives the API server re-encoding an
//! object (it decodes `2.0` as the integer 2 and does not keep key order).
//!
//! ```
//! use serde_json::json;
//! use tether::borrowed_json::Value;
//! let mut out = String::new();
//! let v = Value::from(json!({"b": 2.0, "a": [true, null, 2.5]}));
//! tether::canonical_json::write(&v, &mut out);
//! assert_eq!(out, r#"{"a":[true,null,2.5],"b":2}"#);
//! ```

use std::fmt::Write as _;

use crate::borrowed_json::Value;

/// Appends the canonical form of `v` to `out`.
pub fn write(v: &Value<'_>, out: &mut String) {
    match v {
        Value::Object(map) => {
            // Objects iterate in key order (see `borrowed_json`): the canonical order.
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                crate::json_escape::push_quoted_str(out, k);
                out.push(':');
                write(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        Value::Number(n) => match n.as_f64() {
            // Below 2^53 an integral f64 is exactly an integer.
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 => {
                let _ = write!(out, "{}", f as i64);
            }
            _ => out.push_str(&n.to_string()),
        },
        Value::String(s) => crate::json_escape::push_quoted_str(out, s),
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn canonical_forms() {
        let rows = vec![
            (
                json!({"b": 1, "a": {"d": [], "c": {}}}),
                r#"{"a":{"c":{},"d":[]},"b":1}"#,
            ),
            (
                json!({"x": 2.0, "y": 2.5, "z": -0.0}),
                r#"{"x":2,"y":2.5,"z":0}"#,
            ),
            // Keys and strings escaped as serde_json escapes them.
            (
                json!({"q\"k": "a\\b\n\u{1}é", "t": "\t"}),
                r#"{"q\"k":"a\\b\n\u0001é","t":"\t"}"#,
            ),
            (json!([null, true, "s"]), r#"[null,true,"s"]"#),
        ];
        crate::table_test::each(rows, |(v, want)| {
            let mut out = String::new();
            super::write(&(&v).into(), &mut out);
            assert_eq!(out, want);
        });
    }
}
