//! Admission rules for `AttachedResource` (SPEC 3.1, 5.1, 5.2).
//!
//! Checks that need the cluster are the caller's: API discovery (rule 7; use
//! [`object_gvk`] for what to look up), access reviews (rules 8 and 10). Everything that can
//! be decided from the object alone is here, and every violation is reported at once.
//!
//! Choices where the SPEC is silent:
//! - "Set" means present and not `null`: `metadata: {name: null}` is as good as no name,
//!   `name: ""` is rejected (it would be ignored, and silently ignored input misleads).
//! - `spec.object.metadata.generateName` is rejected like `name`: tether names copies
//!   itself, so a generateName could only be ignored.
//! - `spec.object.spec.minReplicas`: `null` is absent; a whole number (`2`, also written
//!   `2.0`) of at least 1 passes; `0` (also `0.0`, `-0.0`) is Forbidden (rule 4: it is a
//!   policy); negatives, fractions, strings (`"0"`), booleans, objects are Malformed.
//! - Sentinel fields (rule 5) of any type other than `null`/`{}` (a name object, a string,
//!   an array, even `[]`) are Forbidden with the same opt-in/opt-out message: whatever the
//!   value, the fix is the same. `spec.object.spec.selector` that is not an object (some
//!   kinds use string selectors) is left alone; only `selector.matchLabels` is tether's.
//! - Placeholders are checked in every string value of `spec.object` (not in keys, as
//!   rendering only touches values); one violation per bad string.

use crate::borrowed_json::Value;

use super::{
    is_dns1123_subdomain, is_label_value, path_of, placeholders, quote_short, show_value,
    KindPolicy, Mutation, Violation,
};

/// Verbs tether's controller uses on every attached copy (SPEC 5.1.8): create and patch
/// (server-side apply), get, list (finding existing copies by label) and delete (pruning,
/// cleanup). Copies are never watched.
pub const TETHER_VERBS: [&str; 5] = ["create", "patch", "get", "list", "delete"];

/// The label that ties AttachedResources and Deployments to a workload (SPEC 3.1, 5.2).
pub const WORKLOAD_LABEL: &str = "tether.dev/workload";

/// Group, version and kind of an attached object, as API discovery needs them (rule 7),
/// borrowed from the object: the lookup is made while the object is at hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Gvk<'a> {
    /// API group; `""` for the core group (`apiVersion: v1`).
    pub group: &'a str,
    /// API version, e.g. `v2`.
    pub version: &'a str,
    /// Kind exactly as written, e.g. `HorizontalPodAutoscaler`.
    pub kind: &'a str,
}

/// Splits an `apiVersion` into `(group, version)`; the core group is `""`.
/// `None` when it is not `<version>` or `<group>/<version>` with a DNS-1123 subdomain group
/// and a DNS-1123 label version (what the API server accepts).
///
/// ```
/// use tether::policy::parse_api_version;
/// assert_eq!(parse_api_version("v1"), Some(("", "v1")));
/// assert_eq!(parse_api_version("autoscaling/v2"), Some(("autoscaling", "v2")));
/// assert_eq!(parse_api_version("a/b/c"), None);
/// assert_eq!(parse_api_version("/v1"), None);
/// ```
pub fn parse_api_version(api_version: &str) -> Option<(&str, &str)> {
    // A byte scan for the slash: `split_once` sets up a general searcher, which costs more
    // than the dozen bytes it looks at (three calls per admission request).
    let (group, version) = match api_version.bytes().position(|b| b == b'/') {
        None => ("", api_version),
        Some(slash) => {
            let (Some(g), Some(v)) = (api_version.get(..slash), api_version.get(slash + 1..))
            else {
                return None; // unreachable: an ASCII byte is on character boundaries
            };
            if !super::is_dns1123_subdomain(g) {
                return None;
            }
            (g, v)
        }
    };
    super::is_dns1123_label(version).then_some((group, version))
}

/// The GVK of `spec.object`, given the AttachedResource's `spec`; `None` when `apiVersion`
/// or `kind` is missing or malformed ([`validate_spec`] says why).
///
/// ```
/// use serde_json::json;
/// use tether::borrowed_json::Value;
/// use tether::policy::{object_gvk, Gvk};
/// let spec = Value::from(json!({"object": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler"}}));
/// assert_eq!(
///     object_gvk(&spec),
///     Some(Gvk { group: "autoscaling", version: "v2", kind: "HorizontalPodAutoscaler" })
/// );
/// ```
pub fn object_gvk<'a>(spec: &'a Value) -> Option<Gvk<'a>> {
    let object = spec.get("object")?;
    let api_version = object.get("apiVersion")?.as_str()?;
    let kind = object.get("kind")?.as_str()?;
    if kind.is_empty() {
        return None;
    }
    let (group, version) = parse_api_version(api_version)?;
    Some(Gvk {
        group,
        version,
        kind,
    })
}

fn is_empty_object(v: &Value) -> bool {
    v.as_object().is_some_and(|m| m.is_empty())
}

/// A `scaleTargetRef` that asks tether to fill it in: `{}`, or the zero value a typed Go
/// client writes for an unset reference struct (`kind` and `name` have no omitempty, so an
/// unset `ScaleTargetRef` serialises as `{"kind":"","name":""}`, `apiVersion` omitted or
/// empty). `null` is handled by the callers, like an absent field.
///
/// ```
/// use serde_json::json;
/// use tether::borrowed_json::Value;
/// use tether::policy::attached::is_unset_reference;
/// let unset = |v| is_unset_reference(&Value::from(v));
/// assert!(unset(json!({})));
/// assert!(unset(json!({"kind": "", "name": ""})));
/// assert!(!unset(json!({"name": ""})));
/// assert!(!unset(json!({"kind": "Deployment", "name": ""})));
/// ```
#[must_use]
pub fn is_unset_reference(v: &Value) -> bool {
    let Some(m) = v.as_object() else {
        return false;
    };
    let empty = |k: &str| m.get(k).and_then(Value::as_str) == Some("");
    m.is_empty()
        || (empty("kind")
            && empty("name")
            && m.keys()
                .all(|k| matches!(k, "apiVersion" | "kind" | "name"))
            && m.get("apiVersion").is_none_or(|a| a.as_str() == Some("")))
}

/// Why a workload name is unusable, or `None` when it is fine. It must be both a label value
/// (it becomes the `tether.dev/workload` label) and a DNS-1123 subdomain.
fn workload_name_problem(name: &str) -> Option<String> {
    if is_label_value(name) && is_dns1123_subdomain(name) {
        return None;
    }
    let len = name.chars().count();
    let detail = if len > 63 {
        format!(" ({len} characters)")
    } else {
        String::new()
    };
    Some(format!(
        "{} is not a valid workload name{detail}: use at most 63 lowercase letters, digits, \
         '-' and '.', starting and ending with a letter or digit (it becomes the \
         {WORKLOAD_LABEL} label value)",
        quote_short(name, 70)
    ))
}

/// The workload name if it is a usable one.
fn valid_workload_name<'v>(spec: &'v Value<'_>) -> Option<&'v str> {
    let name = super::at(spec, &["workloadRef", "name"])?.as_str()?;
    (!name.is_empty() && workload_name_problem(name).is_none()).then_some(name)
}

/// Validates an AttachedResource's `spec` (SPEC 5.1 rules 1–6, plus `spec.workloadRef.name`
/// and `spec.object` being required). Returns every violation, in a stable order
/// (workloadRef, then apiVersion, kind, metadata, spec fields, placeholders); empty means
/// admitted as far as the object alone can tell. Rules 7, 8 and 10 are the caller's;
/// on UPDATE also call [`validate_update`].
///
/// ```
/// use serde_json::json;
/// use tether::borrowed_json::Value;
/// use tether::policy::{summarize, validate_spec, KindPolicy};
/// let spec = Value::from(json!({
///     "workloadRef": {"name": "payments-worker"},
///     "object": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
///                "spec": {"scaleTargetRef": {}, "minReplicas": 2, "maxReplicas": 10}}
/// }));
/// assert!(validate_spec(Some(&spec), &KindPolicy::default()).is_empty());
///
/// let spec = Value::from(json!({"workloadRef": {"name": "w"}, "object": {"apiVersion": "apps/v1", "kind": "Deployment"}}));
/// let (code, message) = summarize(&validate_spec(Some(&spec), &KindPolicy::default()));
/// assert_eq!(code, 403);
/// assert!(message.starts_with("spec.object.kind: kind \"Deployment\" may not be attached"));
/// ```
pub fn validate_spec(spec: Option<&Value>, kinds: &KindPolicy) -> Vec<Violation> {
    let mut out = Vec::new();
    let Some(spec) = super::present(spec) else {
        out.push(workload_name_required());
        out.push(object_required());
        return out;
    };
    if !spec.is_object() {
        out.push(Violation::malformed(
            "spec",
            format!(
                "must be an object with workloadRef and object, got {}",
                show_value(spec)
            ),
        ));
        return out;
    }
    check_workload_ref(spec, &mut out);
    match super::present(spec.get("object")) {
        None => out.push(object_required()),
        Some(object) if !object.is_object() => out.push(Violation::malformed(
            "spec.object",
            format!(
                "must be an object (the resource to attach, with apiVersion and kind), got {}",
                show_value(object)
            ),
        )),
        Some(object) => check_object(object, kinds, &mut out),
    }
    out
}

fn workload_name_required() -> Violation {
    Violation::malformed(
        "spec.workloadRef.name",
        format!(
            "required: name the workload to attach to (the {WORKLOAD_LABEL} label value of \
             its Deployments)"
        ),
    )
}

fn object_required() -> Violation {
    Violation::malformed(
        "spec.object",
        "required: put the resource to attach here, with apiVersion and kind \
         (e.g. an autoscaling/v2 HorizontalPodAutoscaler)",
    )
}

fn check_workload_ref(spec: &Value, out: &mut Vec<Violation>) {
    let Some(wref) = super::present(spec.get("workloadRef")) else {
        out.push(workload_name_required());
        return;
    };
    if !wref.is_object() {
        out.push(Violation::malformed(
            "spec.workloadRef",
            format!(
                "must be an object like {{name: <workload>}}, got {}",
                show_value(wref)
            ),
        ));
        return;
    }
    match super::present(wref.get("name")) {
        None => out.push(workload_name_required()),
        Some(Value::String(name)) if name.is_empty() => out.push(workload_name_required()),
        Some(Value::String(name)) => {
            if let Some(problem) = workload_name_problem(name) {
                out.push(Violation::malformed("spec.workloadRef.name", problem));
            }
        }
        Some(other) => out.push(Violation::malformed(
            "spec.workloadRef.name",
            format!("must be a string, got {}", show_value(other)),
        )),
    }
}

fn check_object(object: &Value, kinds: &KindPolicy, out: &mut Vec<Violation>) {
    // Rule 1: apiVersion. Its group, when it parses, is kept for rule 3.
    let mut group = None;
    const API_VERSION_HELP: &str =
        "write \"<version>\" for the core group (e.g. \"v1\") or \"<group>/<version>\" \
         (e.g. \"autoscaling/v2\")";
    match super::present(object.get("apiVersion")) {
        None => out.push(Violation::malformed(
            "spec.object.apiVersion",
            format!("required: {API_VERSION_HELP}"),
        )),
        Some(Value::String(s)) if s.is_empty() => out.push(Violation::malformed(
            "spec.object.apiVersion",
            format!("required: {API_VERSION_HELP}"),
        )),
        Some(Value::String(s)) => match parse_api_version(s) {
            Some((g, _)) => group = Some(g),
            None => out.push(Violation::malformed(
                "spec.object.apiVersion",
                format!(
                    "{} is not a valid apiVersion: {API_VERSION_HELP}",
                    quote_short(s, 70)
                ),
            )),
        },
        Some(other) => out.push(Violation::malformed(
            "spec.object.apiVersion",
            format!(
                "must be a string, got {}: {API_VERSION_HELP}",
                show_value(other)
            ),
        )),
    }

    // Rules 1 and 3: kind.
    match super::present(object.get("kind")) {
        None => out.push(kind_required()),
        Some(Value::String(s)) if s.trim().is_empty() => out.push(kind_required()),
        Some(Value::String(s)) => {
            if let Err(message) = kinds.check_in(s, group) {
                out.push(Violation::forbidden("spec.object.kind", message));
            }
        }
        Some(other) => out.push(Violation::malformed(
            "spec.object.kind",
            format!(
                "must be a string like \"HorizontalPodAutoscaler\", got {}",
                show_value(other)
            ),
        )),
    }

    // Rule 2: metadata.name / namespace (and generateName).
    match super::present(object.get("metadata")) {
        None => {}
        Some(meta) if !meta.is_object() => out.push(Violation::malformed(
            "spec.object.metadata",
            format!("must be an object, got {}", show_value(meta)),
        )),
        Some(meta) => {
            let owned = [
                (
                    "name",
                    "must not be set: tether names each copy itself (one per Deployment \
                     version); remove it",
                ),
                (
                    "generateName",
                    "must not be set: tether names each copy itself (one per Deployment \
                     version); remove it",
                ),
                (
                    "namespace",
                    "must not be set: copies always go in the AttachedResource's namespace; \
                     remove it",
                ),
            ];
            for (key, message) in owned {
                if super::present(meta.get(key)).is_some() {
                    out.push(Violation::forbidden(
                        path_of(&["spec", "object", "metadata", key]),
                        message,
                    ));
                }
            }
        }
    }

    // Rules 4 and 5: fields under spec.object.spec.
    match super::present(object.get("spec")) {
        None => {}
        Some(inner) if !inner.is_object() => out.push(Violation::malformed(
            "spec.object.spec",
            format!("must be an object, got {}", show_value(inner)),
        )),
        Some(inner) => {
            if let Some(v) = check_min_replicas(super::present(inner.get("minReplicas"))) {
                out.push(v);
            }
            if let Some(v) = super::present(inner.get("scaleTargetRef")) {
                if !is_unset_reference(v) {
                    out.push(Violation::forbidden(
                        "spec.object.spec.scaleTargetRef",
                        format!(
                            "tether owns this field, so it may only be {{}} or null (got {}): \
                             set it to {{}} to have tether point it at each target Deployment, \
                             or remove it to leave it unset",
                            show_value(v)
                        ),
                    ));
                }
            }
            if let Some(v) = super::present(super::at(inner, &["selector", "matchLabels"])) {
                if !is_empty_object(v) {
                    out.push(Violation::forbidden(
                        "spec.object.spec.selector.matchLabels",
                        format!(
                            "tether owns this field, so it may only be {{}} or null (got {}): \
                             set it to {{}} to have tether fill in each target Deployment's \
                             selector labels, or remove it to leave it unset",
                            show_value(v)
                        ),
                    ));
                }
            }
        }
    }

    // Rule 6: placeholders in every string value.
    // Messages stop at MAX_LISTED (see `summarize`): past that, count instead of building a
    // violation per string, so a million bad strings cost a scan, not a million messages.
    let mut extra = 0usize;
    placeholders::check_value(object, "spec.object", &mut |path, err| {
        if out.len() <= super::MAX_LISTED {
            out.push(Violation::malformed(path, err.to_string()));
        } else {
            extra += 1;
        }
    });
    if extra > 0 {
        out.push(Violation::malformed(
            "spec.object",
            format!("{extra} more strings with invalid placeholders"),
        ));
    }
}

fn kind_required() -> Violation {
    Violation::malformed(
        "spec.object.kind",
        "required: set it to the kind of the resource to attach, e.g. \
         \"HorizontalPodAutoscaler\"",
    )
}

/// Rule 4. `v` is `None` when absent or null.
fn check_min_replicas(v: Option<&Value>) -> Option<Violation> {
    const FIELD: &str = "spec.object.spec.minReplicas";
    let v = v?;
    // The sign of a whole number, or None when `v` is not one. Integral floats count
    // (`2.0`, `0.0`, `-0.0`), as the API server decodes them as integers.
    let sign = match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(i.signum())
            } else if n.as_u64().is_some() {
                Some(1) // above i64::MAX: silly, but positive
            } else {
                n.as_f64()
                    .filter(|f| f.is_finite() && f.fract() == 0.0)
                    .map(|f| {
                        if f == 0.0 {
                            0
                        } else if f > 0.0 {
                            1
                        } else {
                            -1
                        }
                    })
            }
        }
        _ => None,
    };
    match sign {
        Some(1) => None,
        Some(0) => Some(Violation::forbidden(
            FIELD,
            "must not be 0: attached resources may not scale a workload to zero; set it to 1 \
             or more, or remove it",
        )),
        _ => Some(Violation::malformed(
            FIELD,
            format!(
                "must be a whole number of at least 1, got {}",
                show_value(v)
            ),
        )),
    }
}

/// Rule 9 for UPDATE: `spec.workloadRef.name` is immutable. `old` and `new` are the whole
/// AttachedResource objects (`request.oldObject`, `request.object`). Validate `new` with
/// [`validate_spec`] as well.
///
/// ```
/// use serde_json::json;
/// use tether::borrowed_json::Value;
/// use tether::policy::validate_update;
/// let old = Value::from(json!({"spec": {"workloadRef": {"name": "a"}}}));
/// let new = Value::from(json!({"spec": {"workloadRef": {"name": "b"}}}));
/// assert_eq!(validate_update(&old, &old), vec![]);
/// assert!(validate_update(&old, &new)[0].message.starts_with("is immutable (was \"a\", now \"b\")"));
/// ```
pub fn validate_update(old: &Value, new: &Value) -> Vec<Violation> {
    const PATH: &[&str] = &["spec", "workloadRef", "name"];
    let before = super::present(super::at(old, PATH));
    let after = super::present(super::at(new, PATH));
    if before == after {
        return Vec::new();
    }
    let show = |v: Option<&Value>| match v {
        None => "unset".to_string(),
        Some(Value::String(s)) => quote_short(s, 70),
        Some(other) => show_value(other),
    };
    vec![Violation::forbidden(
        "spec.workloadRef.name",
        format!(
            "is immutable (was {}, now {}): an AttachedResource belongs to one workload; to \
             attach to another, delete this AttachedResource and create a new one",
            show(before),
            show(after)
        ),
    )]
}

/// SPEC 5.2: the patch that labels an AttachedResource `tether.dev/workload:
/// <spec.workloadRef.name>` (so `kubectl get atr -l tether.dev/workload=...` works), with a
/// warning line when it changes anything.
///
/// Empty when the label is already right, and also when the name is missing or invalid:
/// the validating webhook then denies with a clear message, whereas an invalid label added
/// here would be rejected first by the API server with a confusing one.
///
/// ```
/// use serde_json::json;
/// use tether::borrowed_json::Value;
/// use tether::policy::workload_label_patch;
/// let obj = Value::from(json!({"metadata": {"name": "hpa"}, "spec": {"workloadRef": {"name": "web"}}}));
/// let m = workload_label_patch(&obj);
/// assert_eq!(
///     serde_json::to_value(&m.patch).unwrap(),
///     json!([{"op": "add", "path": "/metadata/labels", "value": {"tether.dev/workload": "web"}}])
/// );
/// assert_eq!(m.warnings, vec!["tether: set label tether.dev/workload=web"]);
/// ```
pub fn workload_label_patch(obj: &Value<'_>) -> Mutation {
    use json_patch::jsonptr::PointerBuf;
    use json_patch::{AddOperation, Patch, PatchOperation};
    // What the patch adds is new JSON, owned.
    use serde_json::Value as Json;

    let Some(name) = obj.get("spec").and_then(valid_workload_name) else {
        return Mutation::default();
    };
    let add = |tokens: &[&str], value: Json| {
        Patch(vec![PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(tokens.iter().copied()),
            value,
        })])
    };
    let labels_object = || {
        let mut m = serde_json::Map::new();
        m.insert(WORKLOAD_LABEL.to_string(), Json::String(name.to_string()));
        Json::Object(m)
    };
    let set_warning = format!("tether: set label {WORKLOAD_LABEL}={name}");
    let patch = match super::present(obj.get("metadata")) {
        None => {
            let mut meta = serde_json::Map::new();
            meta.insert("labels".to_string(), labels_object());
            add(&["metadata"], Json::Object(meta))
        }
        Some(Value::Object(meta)) => match super::present(meta.get("labels")) {
            None => add(&["metadata", "labels"], labels_object()),
            Some(Value::Object(labels)) => match labels.get(WORKLOAD_LABEL) {
                Some(Value::String(current)) if current == name => return Mutation::default(),
                Some(current) => {
                    let patch = add(
                        &["metadata", "labels", WORKLOAD_LABEL],
                        Json::String(name.to_string()),
                    );
                    let was = match current {
                        Value::String(s) => quote_short(s, 70),
                        other => show_value(other),
                    };
                    return Mutation {
                        patch,
                        warnings: vec![format!(
                            "tether: changed label {WORKLOAD_LABEL} from {was} to {name:?} to \
                             match spec.workloadRef.name"
                        )],
                    };
                }
                None => add(
                    &["metadata", "labels", WORKLOAD_LABEL],
                    Json::String(name.to_string()),
                ),
            },
            // Labels that are not a map cannot come from the API server; leave them to it.
            Some(_) => return Mutation::default(),
        },
        Some(_) => return Mutation::default(),
    };
    Mutation {
        patch,
        warnings: vec![set_warning],
    }
}

#[cfg(test)]
mod tests;
