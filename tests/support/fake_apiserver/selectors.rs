//! Label and field selectors, and the filter LIST/WATCH/DELETE-collection apply.

use super::*;

/// One label selector requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// Parses `a=b,c!=d,e,!f,g in (x,y),h notin (z)`.
pub(super) fn parse_label_selector(s: &str) -> Result<Vec<LabelReq>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, ch) in s.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    let mut reqs = Vec::new();
    for part in parts.into_iter().map(str::trim).filter(|p| !p.is_empty()) {
        let set = |rest: &str| -> Result<Vec<String>, String> {
            let inner = rest
                .trim()
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'));
            let inner = inner.ok_or_else(|| format!("bad set in label selector: {part:?}"))?;
            Ok(inner
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect())
        };
        let req = if let Some((k, rest)) = part.split_once(" notin ") {
            LabelReq::NotIn(k.trim().into(), set(rest)?)
        } else if let Some((k, rest)) = part.split_once(" in ") {
            LabelReq::In(k.trim().into(), set(rest)?)
        } else if let Some((k, v)) = part.split_once("!=") {
            LabelReq::NotEq(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
            LabelReq::Eq(k.trim().into(), v.trim().into())
        } else if let Some(k) = part.strip_prefix('!') {
            LabelReq::NotExists(k.trim().into())
        } else {
            LabelReq::Exists(part.into())
        };
        let key = match &req {
            LabelReq::Eq(k, _)
            | LabelReq::NotEq(k, _)
            | LabelReq::Exists(k)
            | LabelReq::NotExists(k) => k,
            LabelReq::In(k, _) | LabelReq::NotIn(k, _) => k,
        };
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(format!("unable to parse requirement: {part:?}"));
        }
        reqs.push(req);
    }
    Ok(reqs)
}

pub(super) fn label_matches(req: &LabelReq, labels: Option<&Map<String, Value>>) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    match req {
        LabelReq::Eq(k, v) => get(k) == Some(v.as_str()),
        LabelReq::NotEq(k, v) => get(k) != Some(v.as_str()),
        LabelReq::Exists(k) => get(k).is_some(),
        LabelReq::NotExists(k) => get(k).is_none(),
        LabelReq::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
        LabelReq::NotIn(k, vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
    }
}

/// A field selector requirement: dotted path, equal or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct FieldReq {
    pub(super) path: Vec<String>,
    pub(super) value: String,
    pub(super) negate: bool,
}

pub(super) fn parse_field_selector(s: &str) -> Result<Vec<FieldReq>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|part| {
            let (k, v, negate) = if let Some((k, v)) = part.split_once("!=") {
                (k, v, true)
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (k, v, false)
            } else {
                return Err(format!("invalid field selector: {part:?}"));
            };
            Ok(FieldReq {
                path: k.trim().split('.').map(str::to_string).collect(),
                value: v.trim().to_string(),
                negate,
            })
        })
        .collect()
}

pub(super) fn field_matches(req: &FieldReq, obj: &Value) -> bool {
    let actual = match get_path(obj, &req.path) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    (actual == req.value) != req.negate
}

/// Which objects a LIST/WATCH/DELETE-collection sees.
#[derive(Clone, Debug)]
pub(super) struct Filter {
    pub(super) group: String,
    pub(super) plural: String,
    pub(super) namespace: Option<String>,
    pub(super) labels: Vec<LabelReq>,
    pub(super) fields: Vec<FieldReq>,
}

impl Filter {
    pub(super) fn from_ctx(
        ctx: &Ctx,
        def: &ResourceDef,
        ns: Option<&str>,
    ) -> Result<Self, ApiError> {
        let labels = parse_label_selector(
            ctx.query
                .get("labelSelector")
                .map(String::as_str)
                .unwrap_or(""),
        )
        .map_err(|e| ApiError::bad_request(&e))?;
        let fields = parse_field_selector(
            ctx.query
                .get("fieldSelector")
                .map(String::as_str)
                .unwrap_or(""),
        )
        .map_err(|e| ApiError::bad_request(&e))?;
        Ok(Filter {
            group: def.group.clone(),
            plural: def.plural.clone(),
            namespace: ns.map(str::to_string),
            labels,
            fields,
        })
    }

    pub(super) fn matches(&self, group: &str, plural: &str, namespace: &str, obj: &Value) -> bool {
        let labels = meta(obj)
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object);
        group == self.group
            && plural == self.plural
            && self.namespace.as_deref().is_none_or(|ns| ns == namespace)
            && self.labels.iter().all(|r| label_matches(r, labels))
            && self.fields.iter().all(|r| field_matches(r, obj))
    }

    /// The event a watch with this filter sees for a change, as the apiserver's watch cache
    /// sends it: a MODIFIED that makes the object leave the selector is a DELETED carrying the
    /// previous state (at the new resourceVersion), one that makes it enter is an ADDED.
    pub(super) fn event_for(&self, rec: &WatchRec) -> Option<(&'static str, Value)> {
        let now = self.matches(&rec.group, &rec.plural, &rec.namespace, &rec.object);
        let before = rec
            .prev
            .as_ref()
            .map(|p| self.matches(&rec.group, &rec.plural, &rec.namespace, p));
        match (now, before) {
            (true, Some(false)) => Some(("ADDED", rec.object.clone())),
            (true, _) => Some((rec.kind, rec.object.clone())),
            (false, Some(true)) => {
                let mut old = rec.prev.clone().unwrap_or(Value::Null);
                let rv = meta_str(&rec.object, "resourceVersion")
                    .unwrap_or("")
                    .to_string();
                meta_mut(&mut old).insert("resourceVersion".into(), Value::String(rv));
                Some(("DELETED", old))
            }
            (false, _) => None,
        }
    }
}
