//! AdmissionReview v1 in, AdmissionReview v1 out.
//!
//! The request and response mirror `kube::core::admission` (same field names, and kube's own
//! `Operation` and `Status` types), with three deliberate differences:
//! - the objects are kept as untyped JSON ([`crate::borrowed_json::Value`], which borrows its
//!   strings from the body): the policy works on arbitrary kinds, and parsing into
//!   `DynamicObject` first would reject an object with, say, a numeric label *before* we know
//!   the uid, turning a clear per-field deny into an opaque webhook failure;
//! - parsing happens in two stages. Stage one only checks the envelope (`apiVersion`, `kind`,
//!   `request.uid`) and leaves the request as raw JSON; anything wrong there is not a v1
//!   AdmissionReview and gets HTTP 400. Stage two parses the request; a problem there is
//!   answered as an AdmissionReview *with the uid* and a 400 status naming the field, which
//!   the API server shows to the user;
//! - the request borrows its names (uid, kind, resource, name, namespace, user) from the body
//!   instead of copying them into owned strings.

use std::borrow::Cow;
use std::collections::BTreeMap;

use kube::core::admission::Operation;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use thiserror::Error;

use crate::authz::Extra;

pub const API_VERSION: &str = "admission.k8s.io/v1";
pub const KIND: &str = "AdmissionReview";

/// Why a body is not a v1 AdmissionReview (HTTP 400, plain text).
#[derive(Debug, Error, PartialEq)]
pub enum EnvelopeError {
    #[error("body is not valid JSON: {0}; send an admission.k8s.io/v1 AdmissionReview")]
    NotJson(String),
    #[error("body is not a JSON object; send an admission.k8s.io/v1 AdmissionReview")]
    NotObject,
    #[error("apiVersion is {0:?}; tether only speaks admission.k8s.io/v1 (set admissionReviewVersions: [v1] in the webhook configuration)")]
    WrongApiVersion(String),
    #[error("kind is {0:?}; expected AdmissionReview")]
    WrongKind(String),
    #[error("request is missing; an AdmissionReview sent to a webhook must carry a request")]
    MissingRequest,
    #[error("request.uid is missing or empty; the API server always sets it")]
    MissingUid,
}

/// The request part of a review could not be read; answered with the uid and status 400.
#[derive(Debug, Error, PartialEq)]
#[error("request.{path}: {detail}")]
pub struct RequestError {
    pub path: String,
    pub detail: String,
}

/// An AdmissionReview v1 request (see module docs for how it differs from kube's type).
/// `requestKind`, `requestResource` and `options` are not read by any handler, so they are
/// skipped unparsed (serde ignores unknown fields) rather than built and dropped.
///
/// The strings a handler reads on every request borrow from the body when they hold no JSON
/// escape (always, for the names the API server sends): no allocation, no copy, nothing to
/// free. An escaped string is unescaped into an owned one; the value is the same either way.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest<'a> {
    #[serde(borrow)]
    pub uid: Cow<'a, str>,
    #[serde(borrow)]
    pub kind: Gvk<'a>,
    #[serde(borrow)]
    pub resource: Gvr<'a>,
    #[serde(default)]
    pub sub_resource: Option<String>,
    #[serde(default, borrow)]
    pub name: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "optional_text")]
    pub namespace: Option<Cow<'a, str>>,
    pub operation: Operation,
    #[serde(default, borrow)]
    pub user_info: UserInfo<'a>,
    /// Without `metadata.managedFields` and the annotations tether does not read (see
    /// [`lean_object`]).
    #[serde(default, borrow, deserialize_with = "lean_object")]
    pub object: Option<Object<'a>>,
    #[serde(default, borrow, deserialize_with = "lean_object")]
    pub old_object: Option<Object<'a>>,
    #[serde(default, deserialize_with = "null_as_false")]
    pub dry_run: bool,
}

/// `request.kind` (and `requestKind`): kube's `GroupVersionKind`, borrowed.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Gvk<'a> {
    #[serde(borrow)]
    pub group: Cow<'a, str>,
    #[serde(borrow)]
    pub version: Cow<'a, str>,
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
}

/// `request.resource`: kube's `GroupVersionResource`, borrowed.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Gvr<'a> {
    #[serde(borrow)]
    pub group: Cow<'a, str>,
    #[serde(borrow)]
    pub version: Cow<'a, str>,
    #[serde(borrow)]
    pub resource: Cow<'a, str>,
}

/// `request.userInfo` (authentication.k8s.io/v1 UserInfo), every string borrowed from the
/// body when it has no escape: the access checks and their cache probes take these parts as
/// they are ([`crate::authz::Identity`]); only an answer the cache keeps copies them.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UserInfo<'a> {
    #[serde(default, borrow)]
    pub username: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "optional_text")]
    pub uid: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "texts_or_null")]
    pub groups: Vec<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "extra_or_null")]
    pub extra: Extra<'a>,
}

/// A string, borrowed from the body when it has no escapes. serde borrows a `Cow<str>` only
/// when it is a field's own type; inside an `Option`, a `Vec` or a map it would always copy,
/// so those hold this instead. Transparent, so a parse error's path still names a map key.
#[derive(Deserialize)]
#[serde(transparent)]
#[repr(transparent)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// A list of [`Text`]s, handed on as the `Cow`s they wrap (same layout, so std's in-place
/// `collect` keeps the allocation).
struct Texts<'a>(Vec<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Texts<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let texts = Vec::<Text<'a>>::deserialize(d)?;
        Ok(Texts(texts.into_iter().map(|t| t.0).collect()))
    }
}

/// An optional [`Text`].
fn optional_text<'de: 'a, 'a, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    Ok(Option::<Text<'a>>::deserialize(d)?.map(|t| t.0))
}

/// `groups`: a list of strings; `null` is none.
fn texts_or_null<'de: 'a, 'a, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<Cow<'a, str>>, D::Error> {
    Ok(Option::<Texts<'a>>::deserialize(d)?
        .map(|t| t.0)
        .unwrap_or_default())
}

/// `extra`: a map of string lists; `null` is none. A later duplicate key wins, as in a
/// `BTreeMap`'s own deserializer.
fn extra_or_null<'de: 'a, 'a, D: serde::Deserializer<'de>>(d: D) -> Result<Extra<'a>, D::Error> {
    struct ExtraMap<'a>(Extra<'a>);
    impl<'de: 'a, 'a> Deserialize<'de> for ExtraMap<'a> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_map(ExtraVisitor(std::marker::PhantomData))
        }
    }
    struct ExtraVisitor<'a>(std::marker::PhantomData<Extra<'a>>);
    impl<'de: 'a, 'a> serde::de::Visitor<'de> for ExtraVisitor<'a> {
        type Value = ExtraMap<'a>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut extra = Extra::new();
            while let Some((key, values)) = map.next_entry::<Text<'a>, Texts<'a>>()? {
                extra.insert(key.0, values.0);
            }
            Ok(ExtraMap(extra))
        }
    }
    Ok(Option::<ExtraMap<'a>>::deserialize(d)?
        .map(|e| e.0)
        .unwrap_or_default())
}

fn null_as_false<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(false))
}

/// The only annotation any handler reads. The others, kubectl's escaped
/// `last-applied-configuration` above all, are skipped unparsed.
fn read_annotation(key: &str) -> bool {
    key == crate::stamp::STAMP_ANNOTATION
}

/// Reads `object`/`oldObject` in the same pass as the rest of the review, leaving out what no
/// handler reads: `metadata.managedFields` (often most of the object's bytes) and the values of
/// unread annotations. Both are scanned, not built: no allocation per string or map entry.
/// What is kept borrows its strings from the body ([`crate::borrowed_json`]).
/// Everything else, malformed shapes included, is kept exactly as sent, so the policy still
/// sees (and explains) a numeric label or a string where metadata should be. An
/// `annotations` map stays present (possibly empty) so patches still know whether to create it.
pub fn lean_object<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Object<'de>>, D::Error> {
    struct Opt;
    impl<'de> serde::de::Visitor<'de> for Opt {
        type Value = Option<Object<'de>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object or null")
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: serde::Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(Lean(Level::Object)).map(Some)
        }
    }
    d.deserialize_option(Opt)
}

/// An object of a review, as the handlers see it.
pub type Object<'a> = crate::borrowed_json::Value<'a>;

#[derive(Clone, Copy, PartialEq)]
enum Level {
    Object,
    Metadata,
    Annotations,
}

/// Builds the levels that skip something by hand; everything below them is a plain
/// [`crate::borrowed_json::Value`].
struct Lean(Level);

impl<'de> serde::de::DeserializeSeed<'de> for Lean {
    type Value = Object<'de>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Object<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Lean {
    type Value = Object<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Object<'de>, A::Error> {
        use crate::borrowed_json::{Key, Map, Value};
        use serde::de::IgnoredAny;
        let mut entries = Vec::new();
        while let Some(key) = map.next_key_seed(Key)? {
            let value = match (self.0, key.as_ref()) {
                (Level::Object, "metadata") => map.next_value_seed(Lean(Level::Metadata))?,
                (Level::Metadata, "managedFields") => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
                (Level::Metadata, "annotations") => {
                    map.next_value_seed(Lean(Level::Annotations))?
                }
                (Level::Annotations, k) if !read_annotation(k) => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
                _ => map.next_value::<Value<'de>>()?,
            };
            entries.push((key, value));
        }
        Ok(Value::Object(Map::from_entries(entries)))
    }
    // Anything but an object at these levels is kept as it is.
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Object<'de>, A::Error> {
        crate::borrowed_json::ValueVisitor.visit_seq(seq)
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Object<'de>, E> {
        crate::borrowed_json::ValueVisitor.visit_bool(v)
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Object<'de>, E> {
        crate::borrowed_json::ValueVisitor.visit_i64(v)
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Object<'de>, E> {
        crate::borrowed_json::ValueVisitor.visit_u64(v)
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Object<'de>, E> {
        crate::borrowed_json::ValueVisitor.visit_f64(v)
    }
    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Object<'de>, E> {
        crate::borrowed_json::ValueVisitor.visit_borrowed_str(v)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Object<'de>, E> {
        crate::borrowed_json::ValueVisitor.visit_str(v)
    }
    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Object<'de>, E> {
        crate::borrowed_json::ValueVisitor.visit_string(v)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Object<'de>, E> {
        crate::borrowed_json::ValueVisitor.visit_unit()
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<Object<'de>, E> {
        crate::borrowed_json::ValueVisitor.visit_none()
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "apiVersion", default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(borrow, default)]
    request: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct UidOnly {
    #[serde(default)]
    uid: Option<Value>,
}

/// A review whose envelope is valid: we know the uid, whatever else is wrong.
pub struct Parsed<'a> {
    pub uid: Cow<'a, str>,
    /// Boxed where serde builds it: the request (about 400 bytes) then moves from the parse
    /// to the handlers as a pointer. Moved by value, each of its several moves wrote it again
    /// to stack memory that the rest of a request had pushed out of the CPU's cache.
    pub request: Result<Box<AdmissionRequest<'a>>, RequestError>,
}

/// Parses an AdmissionReview body in the two stages described in the module docs.
pub fn parse(body: &[u8]) -> Result<Parsed<'_>, EnvelopeError> {
    // Happy path: one pass straight into the typed review. Only when that fails do we take
    // the staged path below, which exists to produce the precise error.
    // UTF-8 is checked once for the whole body: `from_slice` checks every string on its own,
    // which costs more than the check itself on short strings. A body that is not UTF-8
    // takes the staged path, which names the problem.
    let fast = std::str::from_utf8(body).map(serde_json::from_str::<FastReview>);
    if let Ok(Ok(r)) = fast {
        if r.api_version == API_VERSION && r.kind == KIND && !r.request.uid.is_empty() {
            return Ok(Parsed {
                uid: r.request.uid.clone(),
                request: Ok(r.request),
            });
        }
    }
    parse_staged(body)
}

#[derive(Deserialize)]
struct FastReview<'a> {
    // Borrowed when unescaped (always, for the real values): no allocation to compare them.
    #[serde(rename = "apiVersion", borrow)]
    api_version: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    request: Box<AdmissionRequest<'a>>,
}

/// Parser errors may quote the input (control characters included): cut and cleaned.
fn cut(s: String) -> String {
    crate::text::clean_owned(s, crate::text::MAX_DETAIL)
}

fn parse_staged(body: &[u8]) -> Result<Parsed<'_>, EnvelopeError> {
    // serde would happily read a struct from a JSON array; an AdmissionReview is an object.
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') | None => {}
        Some(_) => {
            return Err(
                // `Value`, not `IgnoredAny`: it enforces serde_json's depth limit, so 100k
                // '[' are reported as too deep rather than as truncated.
                match serde_json::from_slice::<Value>(body) {
                    Ok(_) => EnvelopeError::NotObject,
                    Err(e) => EnvelopeError::NotJson(cut(e.to_string())),
                },
            );
        }
    }
    let env: Envelope<'_> =
        serde_json::from_slice(body).map_err(|e| EnvelopeError::NotJson(cut(e.to_string())))?;
    match env.api_version.as_deref() {
        Some(API_VERSION) => {}
        other => {
            return Err(EnvelopeError::WrongApiVersion(cut(other
                .unwrap_or("")
                .to_string())))
        }
    }
    match env.kind.as_deref() {
        Some(KIND) => {}
        other => {
            return Err(EnvelopeError::WrongKind(cut(other
                .unwrap_or("")
                .to_string())))
        }
    }
    let raw = match env.request {
        Some(r) if r.get() != "null" => r,
        _ => return Err(EnvelopeError::MissingRequest),
    };
    let uid = match serde_json::from_str::<UidOnly>(raw.get()) {
        Ok(UidOnly {
            uid: Some(Value::String(s)),
        }) => s,
        // A duplicate key fails the struct; read it leniently (last one wins) so the answer
        // still carries the uid and names the real problem.
        Err(_) => match serde_json::from_str::<Value>(raw.get()) {
            Ok(Value::Object(m)) => match m.get("uid") {
                Some(Value::String(s)) => s.clone(),
                _ => String::new(),
            },
            _ => String::new(),
        },
        _ => String::new(),
    };
    if uid.is_empty() {
        return Err(EnvelopeError::MissingUid);
    }
    let de = &mut serde_json::Deserializer::from_str(raw.get());
    let request = serde_path_to_error::deserialize::<_, Box<AdmissionRequest>>(de).map_err(|e| {
        let path = e.path().to_string();
        RequestError {
            path: cut(path),
            detail: cut(e.into_inner().to_string()),
        }
    });
    Ok(Parsed {
        uid: uid.into(),
        request,
    })
}

/// What the API server gets back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionResponse {
    pub uid: String,
    pub allowed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<kube::core::Status>,
    /// base64 of the JSON Patch (RFC 6902) bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub audit_annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionReviewOut {
    pub api_version: String,
    pub kind: String,
    pub response: AdmissionResponse,
}

impl AdmissionReviewOut {
    pub fn new(response: AdmissionResponse) -> Self {
        Self {
            api_version: API_VERSION.to_string(),
            kind: KIND.to_string(),
            response,
        }
    }
}

impl AdmissionResponse {
    /// Appends `AdmissionReviewOut::new(self)` as JSON: the same bytes serde_json writes for
    /// it (tested), without its per-byte escaping of every string (see
    /// [`crate::json_escape`]).
    pub fn write_review(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        AnswerParts {
            uid: &self.uid,
            allowed: self.allowed,
            status: self.status.as_ref(),
            patch: self.patch.as_deref(),
            patch_type: self.patch_type.as_deref(),
            audit_annotations: self
                .audit_annotations
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
            warnings: self.warnings.iter().map(String::as_str),
        }
        .write_review(out)
    }
}

/// The parts of an [`AdmissionResponse`], borrowed: what the answer to every admission
/// request is written from ([`crate::admission::Decision::write_review`]), without building
/// the owned response and its map first.
pub(crate) struct AnswerParts<'a, A, W> {
    pub uid: &'a str,
    pub allowed: bool,
    pub status: Option<&'a kube::core::Status>,
    pub patch: Option<&'a str>,
    pub patch_type: Option<&'a str>,
    /// In key order, as the response's `BTreeMap` iterates.
    pub audit_annotations: A,
    pub warnings: W,
}

impl<'a, A, W> AnswerParts<'a, A, W>
where
    A: Iterator<Item = (&'a str, &'a str)>,
    W: Iterator<Item = &'a str>,
{
    /// Appends the AdmissionReview carrying this response, byte for byte what
    /// [`AdmissionResponse::write_review`] writes for the owned response.
    pub fn write_review(self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        use crate::json_escape::push_quoted;
        out.extend_from_slice(br#"{"apiVersion":""#);
        out.extend_from_slice(API_VERSION.as_bytes());
        out.extend_from_slice(br#"","kind":""#);
        out.extend_from_slice(KIND.as_bytes());
        out.extend_from_slice(br#"","response":{"uid":"#);
        push_quoted(out, self.uid);
        out.extend_from_slice(if self.allowed {
            br#","allowed":true"#
        } else {
            br#","allowed":false"#
        });
        if let Some(status) = self.status {
            // Denials only; kube's type, written by serde as it defines it.
            out.extend_from_slice(br#","status":"#);
            serde_json::to_writer(&mut *out, status)?;
        }
        if let Some(patch) = self.patch {
            out.extend_from_slice(br#","patch":"#);
            push_quoted(out, patch);
        }
        if let Some(patch_type) = self.patch_type {
            out.extend_from_slice(br#","patchType":"#);
            push_quoted(out, patch_type);
        }
        let mut audit = false;
        for (i, (k, v)) in self.audit_annotations.enumerate() {
            out.extend_from_slice(if i == 0 {
                br#","auditAnnotations":{"#
            } else {
                b","
            });
            push_quoted(out, k);
            out.push(b':');
            push_quoted(out, v);
            audit = true;
        }
        if audit {
            out.push(b'}');
        }
        let mut warnings = false;
        for (i, w) in self.warnings.enumerate() {
            out.extend_from_slice(if i == 0 { br#","warnings":["# } else { b"," });
            push_quoted(out, w);
            warnings = true;
        }
        if warnings {
            out.push(b']');
        }
        out.extend_from_slice(b"}}");
        Ok(())
    }
}

/// The API server keeps 4096 characters of warnings in all, drops any warning with a newline
/// and truncates long ones; we make each warning one short clean line, and keep the total in
/// budget so that nothing is dropped silently by the server.
pub fn sanitize_warnings(warnings: Vec<String>) -> Vec<String> {
    sanitize_warnings_within(warnings, MAX_WARNINGS_TOTAL)
}

/// What the API server keeps of all warnings together.
pub const MAX_WARNINGS_TOTAL: usize = 4096;

/// [`sanitize_warnings`] with a smaller total, leaving room for warnings added later.
pub fn sanitize_warnings_within(warnings: Vec<String>, max_all: usize) -> Vec<String> {
    const MAX_ONE: usize = 256;
    let max_all = max_all.min(MAX_WARNINGS_TOTAL);
    let mut out = Vec::with_capacity(warnings.len());
    let mut total = 0usize;
    for w in warnings {
        // Cut first (cheap on megabytes), then trim what cleaning turned into spaces.
        let line = crate::text::clean_owned(w, MAX_ONE + 64);
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let line = crate::text::clean_owned(trimmed.to_string(), MAX_ONE);
        if total + line.len() > max_all {
            break;
        }
        total += line.len();
        out.push(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const GOOD: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{
        "uid":"705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind":{"group":"tether.dev","version":"v1alpha1","kind":"AttachedResource"},
        "resource":{"group":"tether.dev","version":"v1alpha1","resource":"attachedresources"},
        "requestKind":{"group":"tether.dev","version":"v1alpha1","kind":"AttachedResource"},
        "requestResource":{"group":"tether.dev","version":"v1alpha1","resource":"attachedresources"},
        "name":"worker-hpa","namespace":"payments","operation":"CREATE",
        "userInfo":{"username":"alice","uid":"u-1","groups":["devs","system:authenticated"],"extra":{"scopes":["a","b"]}},
        "object":{"apiVersion":"tether.dev/v1alpha1","kind":"AttachedResource","metadata":{"name":"worker-hpa"}},
        "oldObject":null,"dryRun":true,"options":{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1"}}}"#;

    #[test]
    fn a_body_that_is_not_utf8_is_refused_by_the_staged_path() {
        // The fast path reads the body as `str`; bytes that are not UTF-8 must still get the
        // parser's own message (the staged path), never a panic or an allow.
        let body = GOOD.replace("worker-hpa\"}}", "worker-\u{1}\"}}");
        let mut bytes = body.into_bytes();
        let at = bytes.iter().position(|&b| b == 1).unwrap();
        bytes[at] = 0xff;
        match parse(&bytes) {
            Err(EnvelopeError::NotJson(m)) => {
                assert!(m.starts_with("invalid unicode code point at line 9"), "{m}")
            }
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("a body that is not UTF-8 was accepted"),
        }
    }

    #[test]
    fn parses_a_real_shaped_review() {
        let p = parse(GOOD.as_bytes()).unwrap();
        assert_eq!(p.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
        let r = p.request.unwrap();
        assert_eq!(r.kind.kind, "AttachedResource");
        assert!(matches!(r.operation, Operation::Create));
        assert!(r.dry_run);
        assert_eq!(r.user_info.extra["scopes"], vec!["a", "b"]);
        assert_eq!(r.namespace.as_deref(), Some("payments"));
        assert!(r.old_object.is_none());
    }

    #[test]
    fn request_strings_borrow_from_the_body_unless_escaped() {
        let borrowed = |c: &Cow<'_, str>| matches!(c, Cow::Borrowed(_));
        let r = parse(GOOD.as_bytes()).unwrap().request.unwrap();
        let plain = [
            &r.uid,
            &r.kind.group,
            &r.kind.kind,
            &r.resource.resource,
            &r.name,
            r.namespace.as_ref().unwrap(),
            &r.user_info.username,
            r.user_info.uid.as_ref().unwrap(),
            &r.user_info.groups[0],
            &r.user_info.groups[1],
            r.user_info.extra.keys().next().unwrap(),
            &r.user_info.extra["scopes"][0],
        ];
        assert!(plain.into_iter().all(borrowed), "{r:?}");
        // The same values written with escapes: unescaped into owned strings, equal values.
        let body = GOOD
            .replace(
                r#""namespace":"payments""#,
                r#""namespace":"pay\u006dents""#,
            )
            .replace(r#""username":"alice""#, r#""username":"al\u0069ce""#)
            .replace(r#""uid":"u-1""#, r#""uid":"u\/1""#)
            .replace(
                r#""name":"worker-hpa","namespace""#,
                r#""name":"worker\u002dhpa","namespace""#,
            )
            .replace(r#"["devs","#, r#"["d\u0065vs","#)
            .replace(r#"{"scopes":["a","#, r#"{"sc\u006fpes":["\u0061","#);
        let e = parse(body.as_bytes()).unwrap().request.unwrap();
        let extra_key = e.user_info.extra.keys().next().unwrap();
        let escaped = [
            (e.namespace.as_ref().unwrap(), "payments"),
            (&e.user_info.username, "alice"),
            (e.user_info.uid.as_ref().unwrap(), "u/1"),
            (&e.name, "worker-hpa"),
            (&e.user_info.groups[0], "devs"),
            (extra_key, "scopes"),
            (&e.user_info.extra["scopes"][0], "a"),
        ];
        for (got, want) in escaped {
            assert_eq!(got, want);
            assert!(!borrowed(got), "{want} was written with an escape");
        }
        assert!(borrowed(&e.uid));
        assert!(borrowed(&e.user_info.groups[1]));
        assert!(borrowed(&e.user_info.extra["scopes"][1]));
    }

    #[test]
    fn user_info_groups_and_extra_shapes() {
        // (userInfo as sent, groups, extra) as the access reviews will see them.
        type Want = (
            &'static [&'static str],
            &'static [(&'static str, &'static [&'static str])],
        );
        let cases: &[(&str, Want)] = &[
            (r#"{"username":"a"}"#, (&[], &[])),
            (r#"{"username":"a","groups":null,"extra":null}"#, (&[], &[])),
            (r#"{"groups":[],"extra":{}}"#, (&[], &[])),
            (r#"{"groups":["b","a","b"]}"#, (&["b", "a", "b"], &[])),
            (
                r#"{"extra":{"z":["1"],"a":[],"z":["2","3"]}}"#,
                (&[], &[("a", &[]), ("z", &["2", "3"])]),
            ),
            (
                r#"{"extra":{"x\"y":["\n"]},"groups":["\u00e9"]}"#,
                (&["\u{e9}"], &[("x\"y", &["\n"])]),
            ),
        ];
        crate::table_test::each(cases, |(user_info, (groups, extra))| {
            let body = GOOD.replace(
                r#"{"username":"alice","uid":"u-1","groups":["devs","system:authenticated"],"extra":{"scopes":["a","b"]}}"#,
                user_info,
            );
            let r = parse(body.as_bytes()).unwrap().request.unwrap();
            assert_eq!(r.user_info.groups, *groups, "{user_info}");
            let got: Vec<(&str, Vec<&str>)> = r
                .user_info
                .extra
                .iter()
                .map(|(k, vs)| (k.as_ref(), vs.iter().map(AsRef::as_ref).collect()))
                .collect();
            let want: Vec<(&str, Vec<&str>)> =
                extra.iter().map(|(k, vs)| (*k, vs.to_vec())).collect();
            assert_eq!(got, want, "{user_info}");
        });
    }

    #[test]
    fn user_info_of_the_wrong_shape_names_the_field() {
        let cases: &[(&str, &str, &str)] = &[
            (
                r#"{"groups":"devs"}"#,
                "userInfo.groups",
                "expected a sequence",
            ),
            (
                r#"{"groups":[1]}"#,
                "userInfo.groups[0]",
                "expected a string",
            ),
            (
                r#"{"groups":[null]}"#,
                "userInfo.groups[0]",
                "expected a string",
            ),
            (r#"{"extra":["a"]}"#, "userInfo.extra", "expected a map"),
            (
                r#"{"extra":{"k":"v"}}"#,
                "userInfo.extra.k",
                "expected a sequence",
            ),
            (
                r#"{"extra":{"k":null}}"#,
                "userInfo.extra.k",
                "expected a sequence",
            ),
            (
                r#"{"extra":{"k":[2]}}"#,
                "userInfo.extra.k[0]",
                "expected a string",
            ),
        ];
        crate::table_test::each(cases, |(user_info, path, want)| {
            let body = GOOD.replace(
                r#"{"username":"alice","uid":"u-1","groups":["devs","system:authenticated"],"extra":{"scopes":["a","b"]}}"#,
                user_info,
            );
            let e = parse(body.as_bytes()).unwrap().request.unwrap_err();
            assert_eq!(e.path, *path, "{user_info}: {e}");
            assert!(e.to_string().contains(want), "{user_info}: {e}");
        });
    }

    #[test]
    fn envelope_errors_table() {
        let cases: &[(&str, &str)] = &[
            ("not json", "body is not valid JSON"),
            ("[]", "body is not a JSON object"),
            ("", "body is not valid JSON"),
            ("{\"apiVersion\":", "body is not valid JSON"),
            (
                r#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}"#,
                "tether only speaks admission.k8s.io/v1",
            ),
            (
                r#"{"kind":"AdmissionReview","request":{"uid":"x"}}"#,
                "apiVersion is \"\"",
            ),
            (
                r#"{"apiVersion":"admission.k8s.io/v1","kind":"Pod","request":{"uid":"x"}}"#,
                "expected AdmissionReview",
            ),
            (
                r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
                "request is missing",
            ),
            (
                r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}"#,
                "request is missing",
            ),
            (
                r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}"#,
                "request.uid is missing",
            ),
            (
                r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":""}}"#,
                "request.uid is missing",
            ),
            (
                r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":7}}"#,
                "request.uid is missing",
            ),
        ];
        crate::table_test::each(cases, |(body, want)| {
            let err = match parse(body.as_bytes()) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("{body} parsed"),
            };
            assert!(err.contains(want), "{body}: {err}");
        });
    }

    #[test]
    fn request_errors_keep_uid_and_name_the_field() {
        let body = GOOD.replace("\"CREATE\"", "\"EXPLODE\"");
        let p = parse(body.as_bytes()).unwrap();
        assert_eq!(p.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
        let e = p.request.unwrap_err();
        assert_eq!(e.path, "operation");
        let body = GOOD.replace(
            "\"groups\":[\"devs\",\"system:authenticated\"]",
            "\"groups\":\"devs\"",
        );
        let e = parse(body.as_bytes()).unwrap().request.unwrap_err();
        assert_eq!(e.path, "userInfo.groups", "{e}");
    }

    #[test]
    fn objects_skip_managed_fields_and_unread_annotations_only() {
        // (object as sent, object as the handlers see it)
        let stamp = crate::stamp::STAMP_ANNOTATION;
        let cases = [
            (
                json!({"metadata": {"name": "a", "managedFields": [{"manager": "kubectl"}],
                    "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"x\":1}",
                                    stamp: "v1:k:abc"},
                    "labels": {"x": "y"}}, "spec": {"k": [1, 2.5, null, true]}}),
                json!({"metadata": {"name": "a", "annotations": {stamp: "v1:k:abc"},
                    "labels": {"x": "y"}}, "spec": {"k": [1, 2.5, null, true]}}),
            ),
            // The map stays, empty, so a patch adds to it rather than creating it.
            (
                json!({"metadata": {"annotations": {"other": "x"}}}),
                json!({"metadata": {"annotations": {}}}),
            ),
            // Malformed shapes are kept for the policy to explain.
            (json!({"metadata": "nope"}), json!({"metadata": "nope"})),
            (
                json!({"metadata": {"annotations": [1], "labels": {"n": 3}}}),
                json!({"metadata": {"annotations": [1], "labels": {"n": 3}}}),
            ),
            // Only metadata at the top is special; a nested `managedFields` is data.
            (
                json!({"spec": {"metadata": {"managedFields": 1}}}),
                json!({"spec": {"metadata": {"managedFields": 1}}}),
            ),
            (json!(7), json!(7)),
            (json!([{"a": 1}]), json!([{"a": 1}])),
        ];
        crate::table_test::each(cases, |(sent, seen)| {
            let body = GOOD.replace(
                r#""object":{"apiVersion":"tether.dev/v1alpha1","kind":"AttachedResource","metadata":{"name":"worker-hpa"}}"#,
                &format!(r#""object":{sent}"#),
            );
            let r = parse(body.as_bytes()).unwrap().request.unwrap();
            assert_eq!(r.object.as_ref().map(Object::to_json), Some(seen), "{sent}");
        });
        let r = parse(GOOD.as_bytes()).unwrap().request.unwrap();
        assert_eq!(r.old_object, None);
    }

    #[test]
    fn warnings_are_one_clean_line_and_bounded() {
        let w = sanitize_warnings(vec![
            "a\nb".into(),
            "  ".into(),
            "x".repeat(1000),
            "\u{7}bell".into(),
        ]);
        assert_eq!(w[0], "a b");
        assert_eq!(w[1].chars().count(), 256);
        assert_eq!(w[2], "bell");
        let many = sanitize_warnings(vec!["y".repeat(200); 100]);
        assert!(many.iter().map(|s| s.len()).sum::<usize>() <= 4096);
        assert_eq!(many.len(), 20);
    }

    fn response(allowed: bool) -> AdmissionResponse {
        AdmissionResponse {
            uid: "705ab4f5-6393-11e8-b7cc-42010a800002".into(),
            allowed,
            status: None,
            patch: None,
            patch_type: None,
            audit_annotations: BTreeMap::new(),
            warnings: Vec::new(),
        }
    }

    fn serde_bytes(r: &AdmissionResponse) -> String {
        serde_json::to_string(&AdmissionReviewOut::new(r.clone())).unwrap()
    }

    fn written(r: &AdmissionResponse) -> String {
        let mut out = Vec::new();
        r.write_review(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_written_answer_is_what_serde_writes() {
        let audit = |d: &str, r: &str| {
            BTreeMap::from([
                ("decision".to_string(), d.to_string()),
                ("reason".to_string(), r.to_string()),
            ])
        };
        let denied = AdmissionResponse {
            status: Some(kube::core::Status {
                status: Some(kube::core::response::StatusSummary::Failure),
                code: 403,
                message: "user \"bob\" may not create horizontalpodautoscalers.autoscaling".into(),
                reason: "Forbidden".into(),
                metadata: None,
                details: None,
            }),
            audit_annotations: audit("denied", "access_denied"),
            ..response(false)
        };
        let patched = AdmissionResponse {
            patch: Some("W3sib3AiOiJhZGQiLCJwYXRoIjoiL3NwZWMifV0=".into()),
            patch_type: Some("JSONPatch".into()),
            audit_annotations: audit("allowed", "mutated"),
            warnings: vec!["tether runs standalone (no cluster)".into(), "two".into()],
            ..response(true)
        };
        let escapes = AdmissionResponse {
            uid: "u\"\\\n\u{1}é".into(),
            audit_annotations: BTreeMap::from([("k\t".to_string(), "v\u{7f}".to_string())]),
            warnings: vec!["a \"quoted\" name".into()],
            ..response(true)
        };
        let cases = vec![
            ("allowed, nothing else", response(true)),
            ("denied, bare", response(false)),
            ("denied with a status", denied),
            ("patch, audit, two warnings", patched),
            ("escapes everywhere", escapes),
        ];
        crate::table_test::each(cases, |(name, r)| {
            assert_eq!(written(&r), serde_bytes(&r), "{name}");
        });
        assert_eq!(
            written(&response(true)),
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","allowed":true}}"#
        );
    }

    proptest::proptest! {
        #[test]
        fn any_answer_is_written_as_serde_writes_it(
            uid in "\\PC{0,40}",
            allowed: bool,
            audit in proptest::collection::btree_map("[a-z\"\\\\\\x00-\\x1f]{0,8}", "\\PC{0,12}", 0..3),
            warnings in proptest::collection::vec("(\\PC|[\\x00-\\x1f])*", 0..3),
            patch in proptest::option::of("[A-Za-z0-9+/=]{0,60}"),
        ) {
            let r = AdmissionResponse {
                uid,
                audit_annotations: audit,
                warnings,
                patch_type: patch.as_ref().map(|_| "JSONPatch".to_string()),
                patch,
                ..response(allowed)
            };
            proptest::prop_assert_eq!(written(&r), serde_bytes(&r));
        }

        #[test]
        fn any_user_info_reads_back_as_serde_json_wrote_it(
            groups in proptest::collection::vec("(\\PC|[\\x00-\\x1f\"\\\\])*", 0..4),
            extra in proptest::collection::btree_map(
                "(\\PC|[\"\\\\])*",
                proptest::collection::vec("(\\PC|[\\x00-\\x1f])*", 0..3),
                0..3,
            ),
        ) {
            let user_info = json!({"username": "u", "groups": &groups, "extra": &extra});
            let body = GOOD.replace(
                r#"{"username":"alice","uid":"u-1","groups":["devs","system:authenticated"],"extra":{"scopes":["a","b"]}}"#,
                &user_info.to_string(),
            );
            let r = parse(body.as_bytes()).unwrap().request.unwrap();
            proptest::prop_assert_eq!(&r.user_info.groups, &groups);
            let got: BTreeMap<String, Vec<String>> = r
                .user_info
                .extra
                .iter()
                .map(|(k, vs)| (k.to_string(), vs.iter().map(|v| v.to_string()).collect()))
                .collect();
            proptest::prop_assert_eq!(got, extra);
        }
    }
}
