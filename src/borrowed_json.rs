//! A JSON value that borrows its strings from the text it was parsed from.
//!
//! The admission path reads each review's object once and drops it with the request. Built as
//! a `serde_json::Value`, every key and string is copied into its own allocation and every
//! entry inserted into a `BTreeMap`, which costs more than scanning the JSON at all. This value
//! borrows every string that has no escape and keeps each object as one sorted `Vec`.
//!
//! It means exactly what a `serde_json::Value` (default features) means, so the policy reads
//! the same thing either way: an object iterates in key order, a later duplicate key replaces
//! an earlier one, numbers are `serde_json::Number`, and the conversions both ways lose nothing
//! (proptested against serde_json). Owned values (the controller's objects, tests) convert
//! with `From`, borrowing their strings.
//!
//! `serde_json_borrow` was the crate to use, but its objects keep duplicate keys in document
//! order (the first one wins a lookup) and cannot be built outside its own deserializer with a
//! key that was escaped, which the lean parse in `admission::review` needs.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Number;

/// A JSON value; see the module docs.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value<'a> {
    #[default]
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Value<'a>>),
    Object(Map<'a>),
}

/// A JSON object: entries sorted by key, keys unique.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Map<'a>(Vec<(Cow<'a, str>, Value<'a>)>);

type Entry<'a> = (Cow<'a, str>, Value<'a>);

impl<'a> Map<'a> {
    /// Entries in any order, duplicates included: sorted by key, a later duplicate kept.
    pub fn from_entries(mut entries: Vec<Entry<'a>>) -> Self {
        if !entries.windows(2).all(|w| w[0].0 < w[1].0) {
            // Stable, so equal keys stay in document order; `dedup_by` keeps the first of a run
            // and hands us the later one first: swapping keeps the later value, as serde_json.
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            entries.dedup_by(|later, kept| {
                let same = later.0 == kept.0;
                if same {
                    std::mem::swap(later, kept);
                }
                same
            });
        }
        Map(entries)
    }

    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        // Objects in reviews are small: comparing lengths first rejects most keys without
        // comparing bytes, which beats a binary search's ordered comparisons up to here.
        const SCAN: usize = 16;
        if self.0.len() <= SCAN {
            return self
                .0
                .iter()
                .find(|(k, _)| k.as_ref() == key)
                .map(|(_, v)| v);
        }
        self.0
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
            .map(|i| &self.0[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// In key order.
    pub fn iter(&self) -> Iter<'_, 'a> {
        self.into_iter()
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_ref())
    }
}

/// [`Map::iter`].
pub type Iter<'m, 'a> =
    std::iter::Map<std::slice::Iter<'m, Entry<'a>>, fn(&'m Entry<'a>) -> (&'m str, &'m Value<'a>)>;

impl<'m, 'a> IntoIterator for &'m Map<'a> {
    type Item = (&'m str, &'m Value<'a>);
    type IntoIter = Iter<'m, 'a>;
    fn into_iter(self) -> Self::IntoIter {
        fn pair<'m, 'a>(e: &'m Entry<'a>) -> (&'m str, &'m Value<'a>) {
            (e.0.as_ref(), &e.1)
        }
        self.0.iter().map(pair as fn(&'m Entry<'a>) -> _)
    }
}

impl<'a> Value<'a> {
    /// The value at `key` of an object; `None` for a missing key or when this is no object.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        self.as_object()?.get(key)
    }

    /// The value at a JSON Pointer (RFC 6901), as `serde_json::Value::pointer` finds it.
    pub fn pointer(&self, pointer: &str) -> Option<&Value<'a>> {
        if pointer.is_empty() {
            return Some(self);
        }
        let rest = pointer.strip_prefix('/')?;
        rest.split('/').try_fold(self, |v, token| {
            let token = if token.contains('~') {
                Cow::Owned(token.replace("~1", "/").replace("~0", "~"))
            } else {
                Cow::Borrowed(token)
            };
            match v {
                Value::Object(m) => m.get(&token),
                Value::Array(a) => array_index(&token).and_then(|i| a.get(i)),
                _ => None,
            }
        })
    }

    pub fn as_object(&self) -> Option<&Map<'a>> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&Vec<Value<'a>>> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Value::Object(_))
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The owned `serde_json::Value` with the same content.
    pub fn to_json(&self) -> serde_json::Value {
        self.into()
    }
}

/// An array index in a pointer: digits, no sign, no leading zero (serde_json's rule).
fn array_index(s: &str) -> Option<usize> {
    if s.starts_with('+') || (s.starts_with('0') && s.len() != 1) {
        return None;
    }
    s.parse().ok()
}

impl<'a> From<&'a serde_json::Value> for Value<'a> {
    fn from(v: &'a serde_json::Value) -> Self {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => Value::Number(n.clone()),
            serde_json::Value::String(s) => Value::String(Cow::Borrowed(s)),
            serde_json::Value::Array(a) => Value::Array(a.iter().map(Value::from).collect()),
            // Already sorted and unique.
            serde_json::Value::Object(m) => Value::Object(Map(m
                .iter()
                .map(|(k, v)| (Cow::Borrowed(k.as_str()), Value::from(v)))
                .collect())),
        }
    }
}

impl From<serde_json::Value> for Value<'static> {
    fn from(v: serde_json::Value) -> Self {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => Value::Number(n),
            serde_json::Value::String(s) => Value::String(Cow::Owned(s)),
            serde_json::Value::Array(a) => Value::Array(a.into_iter().map(Value::from).collect()),
            serde_json::Value::Object(m) => Value::Object(Map(m
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k), Value::from(v)))
                .collect())),
        }
    }
}

impl From<&Value<'_>> for serde_json::Value {
    fn from(v: &Value<'_>) -> Self {
        match v {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Number(n) => serde_json::Value::Number(n.clone()),
            Value::String(s) => serde_json::Value::String(s.to_string()),
            Value::Array(a) => serde_json::Value::Array(a.iter().map(Into::into).collect()),
            Value::Object(m) => serde_json::Value::Object(
                m.iter()
                    .map(|(k, v)| (k.to_string(), serde_json::Value::from(v)))
                    .collect(),
            ),
        }
    }
}

impl Serialize for Value<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Number(n) => n.serialize(s),
            Value::String(v) => s.serialize_str(v),
            Value::Array(a) => a.serialize(s),
            Value::Object(m) => {
                let mut out = s.serialize_map(Some(m.len()))?;
                for (k, v) in m {
                    out.serialize_entry(k, v)?;
                }
                out.end()
            }
        }
    }
}

/// Compact JSON, as `serde_json::Value` displays.
impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&serde_json::to_string(self).map_err(|_| fmt::Error)?)
    }
}

impl<'de> Deserialize<'de> for Value<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

/// Builds a [`Value`] from any JSON value; [`Visitor`] for callers that walk part of an
/// object themselves (the lean parse) and hand the rest here.
pub struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value<'de>, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value<'de>, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value<'de>, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value<'de>, E> {
        // What serde_json's own Value does (JSON text cannot hold a non-finite number).
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Value<'de>, E> {
        Ok(Value::String(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value<'de>, E> {
        Ok(Value::String(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Value<'de>, E> {
        Ok(Value::String(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Value<'de>, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value<'de>, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value<'de>, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value<'de>, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value<'de>, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key_seed(Key)? {
            entries.push((key, map.next_value()?));
        }
        Ok(Value::Object(Map::from_entries(entries)))
    }
}

/// An object key, borrowed when it has no escape.
pub struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parsed(text: &str) -> Value<'_> {
        serde_json::from_str(text).expect("test JSON parses")
    }

    #[test]
    fn means_what_serde_json_means() {
        // (JSON text, what serde_json's Value makes of it)
        let cases = [
            (r#"{"b":1,"a":2}"#, json!({"a": 2, "b": 1})),
            // A later duplicate replaces an earlier one, wherever it is.
            (r#"{"a":1,"b":2,"a":3}"#, json!({"a": 3, "b": 2})),
            (r#"{"a":{"x":1},"a":{"y":2}}"#, json!({"a": {"y": 2}})),
            (r#"{"\u0061":1,"a":2}"#, json!({"a": 2})),
            (r#"{"a":2,"\u0061":1}"#, json!({"a": 1})),
            (
                r#"[1,-2,2.5,null,true,"s\"q"]"#,
                json!([1, -2, 2.5, null, true, "s\"q"]),
            ),
            (r#"18446744073709551615"#, json!(18446744073709551615u64)),
            (r#"{}"#, json!({})),
            (r#""é\u00e9\ud83d\ude00""#, json!("éé😀")),
        ];
        crate::table_test::each(cases, |(text, want)| {
            let v = parsed(text);
            assert_eq!(v.to_json(), want, "{text}");
            assert_eq!(v.to_string(), want.to_string(), "{text}");
            assert_eq!(Value::from(&want), v, "{text}");
        });
    }

    #[test]
    fn strings_and_keys_borrow_unless_escaped() {
        let v = parsed(r#"{"plain":"text","esc\"aped":"a\nb"}"#);
        let m = v.as_object().unwrap();
        let keys: Vec<bool> =
            m.0.iter()
                .map(|(k, _)| matches!(k, Cow::Borrowed(_)))
                .collect();
        assert_eq!(keys, [false, true], "keys in order: esc\"aped, plain");
        assert!(matches!(
            m.get("plain"),
            Some(Value::String(Cow::Borrowed("text")))
        ));
        assert!(matches!(m.get("esc\"aped"), Some(Value::String(Cow::Owned(s))) if s == "a\nb"));
        assert_eq!(m.get("missing"), None);
        assert_eq!(v.get("plain").and_then(Value::as_str), Some("text"));
        assert_eq!(Value::String("x".into()).get("plain"), None);
    }

    #[test]
    fn pointer_finds_what_serde_json_finds() {
        let owned = json!({"a": {"b/c": [10, {"d~e": "x"}], "": 1}, "0": true});
        let v = Value::from(&owned);
        let pointers = [
            "",
            "/a",
            "/a/b~1c",
            "/a/b~1c/1/d~0e",
            "/a/b~1c/0",
            "/a/b~1c/01",
            "/a/b~1c/+1",
            "/a/b~1c/2",
            "/a/",
            "/0",
            "a",
            "/missing",
            "/a/b~1c/1/d~0e/deeper",
        ];
        crate::table_test::each(pointers, |p| {
            assert_eq!(
                v.pointer(p).map(Value::to_json).as_ref(),
                owned.pointer(p),
                "{p:?}"
            );
        });
    }

    #[test]
    fn lookups_find_every_key_in_small_and_large_objects() {
        for n in [0usize, 1, 2, 15, 16, 17, 40] {
            let owned: serde_json::Map<String, serde_json::Value> =
                (0..n).map(|i| (format!("k{i}"), json!(i))).collect();
            let owned = serde_json::Value::Object(owned);
            let v = Value::from(&owned);
            for i in 0..n {
                assert_eq!(v.get(&format!("k{i}")), Some(&Value::Number(i.into())));
            }
            for missing in ["", "k", "k-1", "kz", "k100"] {
                assert_eq!(v.get(missing), None, "{n} entries: {missing:?}");
            }
        }
    }

    #[test]
    fn nesting_is_bounded_like_serde_json() {
        let deep = "[".repeat(100_000);
        let err = serde_json::from_str::<Value<'_>>(&deep).unwrap_err();
        assert!(
            err.to_string().starts_with("recursion limit exceeded"),
            "{err}"
        );
    }

    fn any_json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(Into::into),
            any::<i64>().prop_map(Into::into),
            any::<u64>().prop_map(Into::into),
            (-1e9f64..1e9).prop_map(Into::into),
            "(\\PC|[\\x00-\\x1f\"\\\\])*".prop_map(Into::into),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Into::into),
                proptest::collection::vec(("[a-c\"\\\\é]{0,3}", inner), 0..6).prop_map(|kv| {
                    // Render duplicates too: build the text by hand below.
                    serde_json::Value::Array(
                        kv.into_iter()
                            .map(|(k, v)| json!({"k": k, "v": v}))
                            .collect(),
                    )
                }),
            ]
        })
    }

    /// Writes `v` as JSON text, turning every `[{"k":..,"v":..}, ..]` list made by
    /// [`any_json`] into an object with those entries in that order, duplicates included.
    fn text_of(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Array(items)
                if !items.is_empty()
                    && items.iter().all(|i| {
                        i.as_object()
                            .is_some_and(|o| o.len() == 2 && o.contains_key("k"))
                    }) =>
            {
                out.push('{');
                for (n, i) in items.iter().enumerate() {
                    if n > 0 {
                        out.push(',');
                    }
                    out.push_str(&i["k"].to_string());
                    out.push(':');
                    text_of(&i["v"], out);
                }
                out.push('}');
            }
            serde_json::Value::Array(items) => {
                out.push('[');
                for (n, i) in items.iter().enumerate() {
                    if n > 0 {
                        out.push(',');
                    }
                    text_of(i, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }

    proptest::proptest! {
        #[test]
        fn any_json_text_reads_as_serde_json_reads_it(v in any_json()) {
            let mut text = String::new();
            text_of(&v, &mut text);
            let theirs: serde_json::Value = serde_json::from_str(&text).unwrap();
            let ours: Value<'_> = serde_json::from_str(&text).unwrap();
            proptest::prop_assert_eq!(ours.to_json(), theirs.clone());
            proptest::prop_assert_eq!(ours.to_string(), theirs.to_string());
            proptest::prop_assert_eq!(&Value::from(&theirs), &ours);
            proptest::prop_assert_eq!(&Value::from(theirs.clone()), &ours);
        }
    }
}
