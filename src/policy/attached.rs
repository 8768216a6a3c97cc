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

use serde_json::Value;

use super::{
    is_dns1123_subdomain, is_label_value, path_of, placeholders, quote_short, show_value,
    KindPolicy, Mutation, Violation,
};

/// The label that ties AttachedResources and Deployments to a workload (SPEC 3.1, 5.2).
pub const WORKLOAD_LABEL: &str = "tether.dev/workload";

/// Group, version and kind of an attached object, as API discovery needs them (rule 7).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Gvk {
    /// API group; `""` for the core group (`apiVersion: v1`).
    pub group: String,
    /// API version, e.g. `v2`.
    pub version: String,
    /// Kind exactly as written, e.g. `HorizontalPodAutoscaler`.
    pub kind: String,
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
    let (group, version) = match api_version.split_once('/') {
        None => ("", api_version),
        Some((g, v)) => {
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
/// use tether::policy::{object_gvk, Gvk};
/// let spec = json!({"object": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler"}});
/// assert_eq!(
///     object_gvk(&spec),
///     Some(Gvk { group: "autoscaling".into(), version: "v2".into(), kind: "HorizontalPodAutoscaler".into() })
/// );
/// ```
pub fn object_gvk(spec: &Value) -> Option<Gvk> {
    let object = spec.get("object")?;
    let api_version = object.get("apiVersion")?.as_str()?;
    let kind = object.get("kind")?.as_str()?;
    if kind.is_empty() {
        return None;
    }
    let (group, version) = parse_api_version(api_version)?;
    Some(Gvk {
        group: group.to_string(),
        version: version.to_string(),
        kind: kind.to_string(),
    })
}

/// `None` for absent and `null`, which every rule here treats alike.
fn present(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
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
/// use tether::policy::attached::is_unset_reference;
/// assert!(is_unset_reference(&json!({})));
/// assert!(is_unset_reference(&json!({"kind": "", "name": ""})));
/// assert!(!is_unset_reference(&json!({"name": ""})));
/// assert!(!is_unset_reference(&json!({"kind": "Deployment", "name": ""})));
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
                .all(|k| matches!(k.as_str(), "apiVersion" | "kind" | "name"))
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
fn valid_workload_name(spec: &Value) -> Option<&str> {
    let name = spec.pointer("/workloadRef/name")?.as_str()?;
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
/// use tether::policy::{summarize, validate_spec, KindPolicy};
/// let spec = json!({
///     "workloadRef": {"name": "payments-worker"},
///     "object": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
///                "spec": {"scaleTargetRef": {}, "minReplicas": 2, "maxReplicas": 10}}
/// });
/// assert!(validate_spec(Some(&spec), &KindPolicy::default()).is_empty());
///
/// let spec = json!({"workloadRef": {"name": "w"}, "object": {"apiVersion": "apps/v1", "kind": "Deployment"}});
/// let (code, message) = summarize(&validate_spec(Some(&spec), &KindPolicy::default()));
/// assert_eq!(code, 403);
/// assert!(message.starts_with("spec.object.kind: kind \"Deployment\" may not be attached"));
/// ```
pub fn validate_spec(spec: Option<&Value>, kinds: &KindPolicy) -> Vec<Violation> {
    let mut out = Vec::new();
    let Some(spec) = present(spec) else {
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
    match present(spec.get("object")) {
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
    let Some(wref) = present(spec.get("workloadRef")) else {
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
    match present(wref.get("name")) {
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
    // Rule 1: apiVersion.
    const API_VERSION_HELP: &str =
        "write \"<version>\" for the core group (e.g. \"v1\") or \"<group>/<version>\" \
         (e.g. \"autoscaling/v2\")";
    match present(object.get("apiVersion")) {
        None => out.push(Violation::malformed(
            "spec.object.apiVersion",
            format!("required: {API_VERSION_HELP}"),
        )),
        Some(Value::String(s)) if s.is_empty() => out.push(Violation::malformed(
            "spec.object.apiVersion",
            format!("required: {API_VERSION_HELP}"),
        )),
        Some(Value::String(s)) => {
            if parse_api_version(s).is_none() {
                out.push(Violation::malformed(
                    "spec.object.apiVersion",
                    format!(
                        "{} is not a valid apiVersion: {API_VERSION_HELP}",
                        quote_short(s, 70)
                    ),
                ));
            }
        }
        Some(other) => out.push(Violation::malformed(
            "spec.object.apiVersion",
            format!(
                "must be a string, got {}: {API_VERSION_HELP}",
                show_value(other)
            ),
        )),
    }

    // Rules 1 and 3: kind.
    match present(object.get("kind")) {
        None => out.push(kind_required()),
        Some(Value::String(s)) if s.trim().is_empty() => out.push(kind_required()),
        Some(Value::String(s)) => {
            let group = object
                .get("apiVersion")
                .and_then(Value::as_str)
                .and_then(parse_api_version)
                .map(|(group, _)| group);
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
    match present(object.get("metadata")) {
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
                if present(meta.get(key)).is_some() {
                    out.push(Violation::forbidden(
                        path_of(&["spec", "object", "metadata", key]),
                        message,
                    ));
                }
            }
        }
    }

    // Rules 4 and 5: fields under spec.object.spec.
    match present(object.get("spec")) {
        None => {}
        Some(inner) if !inner.is_object() => out.push(Violation::malformed(
            "spec.object.spec",
            format!("must be an object, got {}", show_value(inner)),
        )),
        Some(inner) => {
            if let Some(v) = check_min_replicas(present(inner.get("minReplicas"))) {
                out.push(v);
            }
            if let Some(v) = present(inner.get("scaleTargetRef")) {
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
            if let Some(v) = present(inner.pointer("/selector/matchLabels")) {
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
/// use tether::policy::validate_update;
/// let old = json!({"spec": {"workloadRef": {"name": "a"}}});
/// let new = json!({"spec": {"workloadRef": {"name": "b"}}});
/// assert_eq!(validate_update(&old, &old), vec![]);
/// assert!(validate_update(&old, &new)[0].message.starts_with("is immutable (was \"a\", now \"b\")"));
/// ```
pub fn validate_update(old: &Value, new: &Value) -> Vec<Violation> {
    const PTR: &str = "/spec/workloadRef/name";
    let before = present(old.pointer(PTR));
    let after = present(new.pointer(PTR));
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
/// use tether::policy::workload_label_patch;
/// let obj = json!({"metadata": {"name": "hpa"}, "spec": {"workloadRef": {"name": "web"}}});
/// let m = workload_label_patch(&obj);
/// assert_eq!(
///     serde_json::to_value(&m.patch).unwrap(),
///     json!([{"op": "add", "path": "/metadata/labels", "value": {"tether.dev/workload": "web"}}])
/// );
/// assert_eq!(m.warnings, vec!["tether: set label tether.dev/workload=web"]);
/// ```
pub fn workload_label_patch(obj: &Value) -> Mutation {
    use json_patch::jsonptr::PointerBuf;
    use json_patch::{AddOperation, Patch, PatchOperation};

    let Some(name) = obj.get("spec").and_then(valid_workload_name) else {
        return Mutation::default();
    };
    let add = |tokens: &[&str], value: Value| {
        Patch(vec![PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(tokens.iter().copied()),
            value,
        })])
    };
    let labels_object = || {
        let mut m = serde_json::Map::new();
        m.insert(WORKLOAD_LABEL.to_string(), Value::String(name.to_string()));
        Value::Object(m)
    };
    let set_warning = format!("tether: set label {WORKLOAD_LABEL}={name}");
    let patch = match present(obj.get("metadata")) {
        None => {
            let mut meta = serde_json::Map::new();
            meta.insert("labels".to_string(), labels_object());
            add(&["metadata"], Value::Object(meta))
        }
        Some(Value::Object(meta)) => match present(meta.get("labels")) {
            None => add(&["metadata", "labels"], labels_object()),
            Some(Value::Object(labels)) => match labels.get(WORKLOAD_LABEL) {
                Some(Value::String(current)) if current == name => return Mutation::default(),
                Some(current) => {
                    let patch = add(
                        &["metadata", "labels", WORKLOAD_LABEL],
                        Value::String(name.to_string()),
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
                    Value::String(name.to_string()),
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
mod tests {
    use super::*;
    use crate::policy::{summarize, Severity};
    use serde_json::json;

    /// `(field, severity)` of each violation.
    type Found = Vec<(String, Severity)>;

    fn good_object() -> Value {
        json!({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "spec": {"scaleTargetRef": {}, "minReplicas": 2, "maxReplicas": 10}
        })
    }

    fn spec_with_object(object: Value) -> Value {
        json!({"workloadRef": {"name": "payments-worker"}, "object": object})
    }

    /// `(field, severity)` of each violation, for compact table assertions.
    fn fields(spec: Option<&Value>) -> Found {
        validate_spec(spec, &KindPolicy::default())
            .into_iter()
            .map(|v| (v.field, v.severity))
            .collect()
    }

    fn m(f: &str) -> (String, Severity) {
        (f.to_string(), Severity::Malformed)
    }

    fn f(f: &str) -> (String, Severity) {
        (f.to_string(), Severity::Forbidden)
    }

    #[test]
    fn good_spec_passes() {
        assert_eq!(fields(Some(&spec_with_object(good_object()))), vec![]);
        // The SPEC 3.1 example with null sentinel and the PDB/KEDA/VPA shapes.
        let cases = [
            json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                   "spec": {"scaleTargetRef": null, "maxReplicas": 3}}),
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                   "spec": {"selector": {"matchLabels": {}}, "maxUnavailable": 1}}),
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                   "spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "Exists"}]}}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"labels": {"v": "{{ .Version }}"}},
                   "data": {"x": "{{.Namespace}}-{{ .WorkloadName }}-{{ .DeploymentName }}"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": null}}),
        ];
        for object in cases {
            assert_eq!(
                fields(Some(&spec_with_object(object.clone()))),
                vec![],
                "{object}"
            );
        }
    }

    #[test]
    fn spec_shape_table() {
        let cases: Vec<(Option<Value>, Found)> = vec![
            (None, vec![m("spec.workloadRef.name"), m("spec.object")]),
            (
                Some(Value::Null),
                vec![m("spec.workloadRef.name"), m("spec.object")],
            ),
            (
                Some(json!({})),
                vec![m("spec.workloadRef.name"), m("spec.object")],
            ),
            (Some(json!("x")), vec![m("spec")]),
            (Some(json!([])), vec![m("spec")]),
            (
                Some(json!({"workloadRef": {"name": "w"}, "object": null})),
                vec![m("spec.object")],
            ),
            (
                Some(json!({"workloadRef": {"name": "w"}, "object": "HPA"})),
                vec![m("spec.object")],
            ),
            (
                Some(json!({"workloadRef": {"name": "w"}, "object": []})),
                vec![m("spec.object")],
            ),
            (
                Some(json!({"workloadRef": {"name": "w"}, "object": {}})),
                vec![m("spec.object.apiVersion"), m("spec.object.kind")],
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(fields(spec.as_ref()), want, "{spec:?}");
        }
    }

    #[test]
    fn workload_ref_table() {
        let long = "a".repeat(64);
        let cases: Vec<(Value, Found)> = vec![
            (json!(null), vec![m("spec.workloadRef.name")]),
            (json!({}), vec![m("spec.workloadRef.name")]),
            (json!({"name": null}), vec![m("spec.workloadRef.name")]),
            (json!({"name": ""}), vec![m("spec.workloadRef.name")]),
            (json!({"name": 5}), vec![m("spec.workloadRef.name")]),
            (
                json!({"name": "Payments"}),
                vec![m("spec.workloadRef.name")],
            ),
            (
                json!({"name": "pay_ments"}),
                vec![m("spec.workloadRef.name")],
            ),
            (json!({"name": "-pay"}), vec![m("spec.workloadRef.name")]),
            (json!({"name": "a..b"}), vec![m("spec.workloadRef.name")]),
            (json!({"name": long}), vec![m("spec.workloadRef.name")]),
            (json!("payments"), vec![m("spec.workloadRef")]),
            (json!({"name": "payments-worker"}), vec![]),
            (json!({"name": "payments.worker"}), vec![]),
            (json!({"name": "a".repeat(63)}), vec![]),
        ];
        for (wref, want) in cases {
            let spec = json!({"workloadRef": wref, "object": good_object()});
            assert_eq!(fields(Some(&spec)), want, "{wref}");
        }
        let spec = json!({"object": good_object()});
        assert_eq!(fields(Some(&spec)), vec![m("spec.workloadRef.name")]);
    }

    #[test]
    fn workload_ref_messages() {
        let msg = |wref: Value| {
            let spec = json!({"workloadRef": wref, "object": good_object()});
            validate_spec(Some(&spec), &KindPolicy::default())[0].to_string()
        };
        assert_eq!(
            msg(json!({})),
            "spec.workloadRef.name: required: name the workload to attach to (the \
             tether.dev/workload label value of its Deployments)"
        );
        assert_eq!(
            msg(json!({"name": "Pay"})),
            "spec.workloadRef.name: \"Pay\" is not a valid workload name: use at most 63 \
             lowercase letters, digits, '-' and '.', starting and ending with a letter or \
             digit (it becomes the tether.dev/workload label value)"
        );
        assert!(msg(json!({"name": "a".repeat(64)})).contains("(64 characters)"));
        assert_eq!(
            msg(json!({"name": 5})),
            "spec.workloadRef.name: must be a string, got 5"
        );
        assert_eq!(
            msg(json!(["x"])),
            "spec.workloadRef: must be an object like {name: <workload>}, got [\"x\"]"
        );
    }

    #[test]
    fn api_version_and_kind_table() {
        let cases: Vec<(Value, Value, Found)> = vec![
            (json!("v1"), json!("ConfigMap"), vec![]),
            (
                json!("autoscaling/v2"),
                json!("HorizontalPodAutoscaler"),
                vec![],
            ),
            (json!("keda.sh/v1alpha1"), json!("ScaledObject"), vec![]),
            (
                json!(null),
                json!("ConfigMap"),
                vec![m("spec.object.apiVersion")],
            ),
            (
                json!(""),
                json!("ConfigMap"),
                vec![m("spec.object.apiVersion")],
            ),
            (
                json!("a/b/c"),
                json!("ConfigMap"),
                vec![m("spec.object.apiVersion")],
            ),
            (
                json!("/v1"),
                json!("ConfigMap"),
                vec![m("spec.object.apiVersion")],
            ),
            (
                json!("apps/"),
                json!("ConfigMap"),
                vec![m("spec.object.apiVersion")],
            ),
            (
                json!("Apps/v1"),
                json!("ConfigMap"),
                vec![m("spec.object.apiVersion")],
            ),
            (
                json!(" v1"),
                json!("ConfigMap"),
                vec![m("spec.object.apiVersion")],
            ),
            (
                json!(2),
                json!("ConfigMap"),
                vec![m("spec.object.apiVersion")],
            ),
            (json!("v1"), json!(null), vec![m("spec.object.kind")]),
            (json!("v1"), json!(""), vec![m("spec.object.kind")]),
            (json!("v1"), json!("  "), vec![m("spec.object.kind")]),
            (json!("v1"), json!(["Pod"]), vec![m("spec.object.kind")]),
            (json!("v1"), json!("Pod"), vec![f("spec.object.kind")]),
            (json!("v1"), json!(" pod "), vec![f("spec.object.kind")]),
            (
                json!("apps/v1"),
                json!(" Deployment "),
                vec![f("spec.object.kind")],
            ),
            (
                json!("apps/v1"),
                json!("DEPLOYMENT"),
                vec![f("spec.object.kind")],
            ),
            (
                json!("batch/v1"),
                json!("CronJob"),
                vec![f("spec.object.kind")],
            ),
            // Not a kind, but not banned: discovery (rule 7, the caller's) rejects it.
            (json!("v1"), json!("  hpa "), vec![]),
            (
                json!(""),
                json!("Job"),
                vec![m("spec.object.apiVersion"), f("spec.object.kind")],
            ),
        ];
        for (api_version, kind, want) in cases {
            let mut object = json!({"apiVersion": api_version, "kind": kind});
            if let Some(map) = object.as_object_mut() {
                map.retain(|_, v| !v.is_null());
            }
            let spec = spec_with_object(object);
            assert_eq!(fields(Some(&spec)), want, "{api_version} {kind}");
        }
    }

    #[test]
    fn api_version_message() {
        let spec = spec_with_object(json!({"apiVersion": "a/b/c", "kind": "X"}));
        assert_eq!(
            validate_spec(Some(&spec), &KindPolicy::default())[0].to_string(),
            "spec.object.apiVersion: \"a/b/c\" is not a valid apiVersion: write \"<version>\" \
             for the core group (e.g. \"v1\") or \"<group>/<version>\" (e.g. \"autoscaling/v2\")"
        );
    }

    #[test]
    fn allow_list_mode() {
        let kinds = KindPolicy::new(["Pod"], Some(["HorizontalPodAutoscaler", "Pod"]));
        let check = |kind: &str| {
            let spec = spec_with_object(json!({"apiVersion": "v1", "kind": kind}));
            validate_spec(Some(&spec), &kinds)
                .into_iter()
                .map(|v| (v.field, v.severity))
                .collect::<Vec<_>>()
        };
        assert_eq!(check("horizontalpodautoscaler"), vec![]);
        assert_eq!(check("Pod"), vec![f("spec.object.kind")]);
        assert_eq!(check("ConfigMap"), vec![f("spec.object.kind")]);
    }

    #[test]
    fn metadata_table() {
        let cases: Vec<(Value, Found)> = vec![
            (json!(null), vec![]),
            (json!({}), vec![]),
            (json!({"labels": {"a": "b"}, "annotations": {}}), vec![]),
            (json!({"name": null, "namespace": null}), vec![]),
            (json!({"name": "x"}), vec![f("spec.object.metadata.name")]),
            (json!({"name": ""}), vec![f("spec.object.metadata.name")]),
            (
                json!({"namespace": "other"}),
                vec![f("spec.object.metadata.namespace")],
            ),
            (
                json!({"generateName": "x-"}),
                vec![f("spec.object.metadata.generateName")],
            ),
            (
                json!({"namespace": "n", "name": "x"}),
                vec![
                    f("spec.object.metadata.name"),
                    f("spec.object.metadata.namespace"),
                ],
            ),
            (json!("x"), vec![m("spec.object.metadata")]),
        ];
        for (meta, want) in cases {
            let spec = spec_with_object(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}),
            );
            assert_eq!(fields(Some(&spec)), want, "{meta}");
        }
    }

    #[test]
    fn min_replicas_table() {
        let field = "spec.object.spec.minReplicas";
        let cases: Vec<(Value, Found)> = vec![
            (json!(null), vec![]),
            (json!(1), vec![]),
            (json!(2), vec![]),
            (json!(2.0), vec![]),
            (json!(u64::MAX), vec![]),
            (json!(0), vec![f(field)]),
            (json!(0.0), vec![f(field)]),
            (json!(-0.0), vec![f(field)]),
            (json!(-1), vec![m(field)]),
            (json!(-1.0), vec![m(field)]),
            (json!(0.5), vec![m(field)]),
            (json!(1.5), vec![m(field)]),
            (json!("0"), vec![m(field)]),
            (json!("2"), vec![m(field)]),
            (json!(true), vec![m(field)]),
            (json!(false), vec![m(field)]),
            (json!({}), vec![m(field)]),
            (json!([1]), vec![m(field)]),
        ];
        for (value, want) in cases {
            let spec = spec_with_object(json!({
                "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "spec": {"minReplicas": value, "maxReplicas": 3}
            }));
            assert_eq!(fields(Some(&spec)), want, "{value}");
        }
        // Absent is fine too.
        let spec = spec_with_object(json!({"apiVersion": "v1", "kind": "X", "spec": {}}));
        assert_eq!(fields(Some(&spec)), vec![]);
    }

    #[test]
    fn min_replicas_messages() {
        let msg = |value: Value| {
            let spec = spec_with_object(
                json!({"apiVersion": "v1", "kind": "X", "spec": {"minReplicas": value}}),
            );
            validate_spec(Some(&spec), &KindPolicy::default())[0].to_string()
        };
        assert_eq!(
            msg(json!(0)),
            "spec.object.spec.minReplicas: must not be 0: attached resources may not scale a \
             workload to zero; set it to 1 or more, or remove it"
        );
        assert_eq!(
            msg(json!("0")),
            "spec.object.spec.minReplicas: must be a whole number of at least 1, got \"0\""
        );
        assert_eq!(
            msg(json!(-1)),
            "spec.object.spec.minReplicas: must be a whole number of at least 1, got -1"
        );
    }

    #[test]
    fn object_spec_shape() {
        for inner in [json!("x"), json!([]), json!(3)] {
            let spec = spec_with_object(json!({"apiVersion": "v1", "kind": "X", "spec": inner}));
            assert_eq!(fields(Some(&spec)), vec![m("spec.object.spec")], "{inner}");
        }
        let spec = spec_with_object(json!({"apiVersion": "v1", "kind": "X", "spec": null}));
        assert_eq!(fields(Some(&spec)), vec![]);
    }

    #[test]
    fn scale_target_ref_sentinels() {
        let field = "spec.object.spec.scaleTargetRef";
        let cases: Vec<(Option<Value>, Found)> = vec![
            (None, vec![]),
            (Some(json!(null)), vec![]),
            (Some(json!({})), vec![]),
            (Some(json!({"name": "web"})), vec![f(field)]),
            (Some(json!({"name": ""})), vec![f(field)]),
            (
                Some(json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"})),
                vec![f(field)],
            ),
            (Some(json!([])), vec![f(field)]),
            (Some(json!(["web"])), vec![f(field)]),
            (Some(json!("web")), vec![f(field)]),
            (Some(json!("")), vec![f(field)]),
            (Some(json!(0)), vec![f(field)]),
            (Some(json!(false)), vec![f(field)]),
        ];
        for (value, want) in cases {
            let mut inner = json!({"maxReplicas": 3});
            if let (Some(v), Some(map)) = (value.clone(), inner.as_object_mut()) {
                map.insert("scaleTargetRef".into(), v);
            }
            let spec = spec_with_object(json!({
                "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "spec": inner
            }));
            assert_eq!(fields(Some(&spec)), want, "{value:?}");
        }
    }

    #[test]
    fn match_labels_sentinels() {
        let field = "spec.object.spec.selector.matchLabels";
        let cases: Vec<(Value, Found)> = vec![
            (json!({}), vec![]),
            (json!(null), vec![]),
            (json!("app=web"), vec![]), // a string selector is some other kind's business
            (json!({"matchLabels": null}), vec![]),
            (json!({"matchLabels": {}}), vec![]),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Exists"}]}),
                vec![],
            ),
            (json!({"matchLabels": {}, "matchExpressions": []}), vec![]),
            (json!({"matchLabels": {"app": "web"}}), vec![f(field)]),
            (json!({"matchLabels": []}), vec![f(field)]),
            (json!({"matchLabels": "app=web"}), vec![f(field)]),
        ];
        for (selector, want) in cases {
            let spec = spec_with_object(json!({
                "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                "spec": {"selector": selector}
            }));
            assert_eq!(fields(Some(&spec)), want, "{selector}");
        }
        // Only spec.object.spec.selector is tether's: a nested one is left alone.
        let spec = spec_with_object(json!({
            "apiVersion": "v1", "kind": "X",
            "spec": {"template": {"selector": {"matchLabels": {"a": "b"}}}}
        }));
        assert_eq!(fields(Some(&spec)), vec![]);
    }

    #[test]
    fn sentinel_messages_say_how_to_opt_in_and_out() {
        let spec = spec_with_object(json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "spec": {"scaleTargetRef": {"name": "web"}, "selector": {"matchLabels": {"a": "b"}}}
        }));
        let vs = validate_spec(Some(&spec), &KindPolicy::default());
        assert_eq!(
            vs.iter().map(Violation::to_string).collect::<Vec<_>>(),
            vec![
                "spec.object.spec.scaleTargetRef: tether owns this field, so it may only be {} \
                 or null (got {\"name\":\"web\"}): set it to {} to have tether point it at each \
                 target Deployment, or remove it to leave it unset",
                "spec.object.spec.selector.matchLabels: tether owns this field, so it may only \
                 be {} or null (got {\"a\":\"b\"}): set it to {} to have tether fill in each \
                 target Deployment's selector labels, or remove it to leave it unset",
            ]
        );
    }

    #[test]
    fn placeholders_everywhere_with_paths() {
        let spec = spec_with_object(json!({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"labels": {"tether.dev/x": "{{ .Foo }}"}},
            "spec": {
                "maxReplicas": 3,
                "metrics": [
                    {"resource": {"name": "cpu"}},
                    {"resource": {"name": "{{ .Version"}}
                ]
            }
        }));
        let vs = validate_spec(Some(&spec), &KindPolicy::default());
        let got: Vec<_> = vs.iter().map(|v| (v.field.as_str(), v.severity)).collect();
        assert_eq!(
            got,
            vec![
                (
                    "spec.object.metadata.labels[\"tether.dev/x\"]",
                    Severity::Malformed
                ),
                (
                    "spec.object.spec.metrics[1].resource.name",
                    Severity::Malformed
                ),
            ]
        );
        assert!(vs[1].message.starts_with("unclosed \"{{\" at byte 0"));
        // Keys are not templates.
        let spec =
            spec_with_object(json!({"apiVersion": "v1", "kind": "X", "data": {"{{ .Foo }}": "x"}}));
        assert_eq!(fields(Some(&spec)), vec![]);
    }

    #[test]
    fn every_violation_reported_and_summarized() {
        let spec = json!({
            "workloadRef": {"name": "Web"},
            "object": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "x"}
            }
        });
        let vs = validate_spec(Some(&spec), &KindPolicy::default());
        assert_eq!(vs.len(), 3);
        assert_eq!(
            summarize(&vs),
            (
                400,
                "spec.workloadRef.name: \"Web\" is not a valid workload name: use at most 63 \
                 lowercase letters, digits, '-' and '.', starting and ending with a letter or \
                 digit (it becomes the tether.dev/workload label value); spec.object.kind: kind \
                 \"Deployment\" may not be attached: it is in --banned-kinds (env \
                 BANNED_KINDS); workloads cannot be attached, attach a resource that refers to \
                 the workload instead, or ask your platform team to change the setting; \
                 spec.object.metadata.name: must not be set: tether names each copy itself \
                 (one per Deployment version); remove it"
                    .to_string()
            )
        );
        // Without the malformed one, the same deny is a 403.
        let spec = json!({
            "workloadRef": {"name": "web"},
            "object": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}}
        });
        assert_eq!(
            summarize(&validate_spec(Some(&spec), &KindPolicy::default())).0,
            403
        );
    }

    #[test]
    fn parse_api_version_table() {
        let cases = [
            ("v1", Some(("", "v1"))),
            ("apps/v1", Some(("apps", "v1"))),
            ("autoscaling/v2", Some(("autoscaling", "v2"))),
            ("autoscaling.k8s.io/v1", Some(("autoscaling.k8s.io", "v1"))),
            ("keda.sh/v1alpha1", Some(("keda.sh", "v1alpha1"))),
            ("", None),
            ("/", None),
            ("/v1", None),
            ("apps/", None),
            ("a/b/c", None),
            ("V1", None),
            ("apps/V1", None),
            ("apps /v1", None),
            ("apps/v1 ", None),
            ("my_group/v1", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_api_version(s), want, "{s:?}");
        }
    }

    #[test]
    fn object_gvk_table() {
        let gvk = |g: &str, v: &str, k: &str| {
            Some(Gvk {
                group: g.into(),
                version: v.into(),
                kind: k.into(),
            })
        };
        let cases = [
            (
                json!({"object": {"apiVersion": "v1", "kind": "ConfigMap"}}),
                gvk("", "v1", "ConfigMap"),
            ),
            (
                json!({"object": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler"}}),
                gvk("autoscaling", "v2", "HorizontalPodAutoscaler"),
            ),
            (
                json!({"object": {"apiVersion": "a/b/c", "kind": "X"}}),
                None,
            ),
            (json!({"object": {"apiVersion": "v1", "kind": ""}}), None),
            (json!({"object": {"apiVersion": "v1"}}), None),
            (json!({"object": {"kind": "X"}}), None),
            (json!({"object": {"apiVersion": 1, "kind": "X"}}), None),
            (json!({}), None),
            (json!(null), None),
        ];
        for (spec, want) in cases {
            assert_eq!(object_gvk(&spec), want, "{spec}");
        }
    }

    #[test]
    fn update_table() {
        let obj = |name: Value| json!({"spec": {"workloadRef": {"name": name}}});
        let cases: Vec<(Value, Value, Option<&str>)> = vec![
            (obj(json!("a")), obj(json!("a")), None),
            (json!({}), json!({}), None),
            (obj(json!(null)), json!({"spec": {}}), None),
            (
                obj(json!("a")),
                obj(json!("b")),
                Some(
                    "spec.workloadRef.name: is immutable (was \"a\", now \"b\"): an \
                      AttachedResource belongs to one workload; to attach to another, delete \
                      this AttachedResource and create a new one",
                ),
            ),
            (
                obj(json!("a")),
                json!({"spec": {}}),
                Some(
                    "spec.workloadRef.name: is immutable (was \"a\", now unset): an \
                      AttachedResource belongs to one workload; to attach to another, delete \
                      this AttachedResource and create a new one",
                ),
            ),
            (
                json!({"spec": {}}),
                obj(json!(5)),
                Some(
                    "spec.workloadRef.name: is immutable (was unset, now 5): an \
                      AttachedResource belongs to one workload; to attach to another, delete \
                      this AttachedResource and create a new one",
                ),
            ),
        ];
        for (old, new, want) in cases {
            let got = validate_update(&old, &new);
            match want {
                None => assert_eq!(got, vec![], "{old} → {new}"),
                Some(msg) => {
                    assert_eq!(got.len(), 1);
                    assert_eq!(got[0].severity, Severity::Forbidden);
                    assert_eq!(got[0].to_string(), msg);
                }
            }
        }
    }

    #[test]
    fn workload_label_patch_table() {
        let wref = json!({"workloadRef": {"name": "web"}});
        let cases: Vec<(Value, Value, Vec<&str>)> = vec![
            (
                json!({"metadata": {"name": "a"}, "spec": wref}),
                json!([{"op": "add", "path": "/metadata/labels", "value": {"tether.dev/workload": "web"}}]),
                vec!["tether: set label tether.dev/workload=web"],
            ),
            (
                json!({"metadata": {"name": "a", "labels": null}, "spec": wref}),
                json!([{"op": "add", "path": "/metadata/labels", "value": {"tether.dev/workload": "web"}}]),
                vec!["tether: set label tether.dev/workload=web"],
            ),
            (
                json!({"spec": wref}),
                json!([{"op": "add", "path": "/metadata", "value": {"labels": {"tether.dev/workload": "web"}}}]),
                vec!["tether: set label tether.dev/workload=web"],
            ),
            (
                json!({"metadata": {"labels": {"team": "x"}}, "spec": wref}),
                json!([{"op": "add", "path": "/metadata/labels/tether.dev~1workload", "value": "web"}]),
                vec!["tether: set label tether.dev/workload=web"],
            ),
            (
                json!({"metadata": {"labels": {"tether.dev/workload": "old"}}, "spec": wref}),
                json!([{"op": "add", "path": "/metadata/labels/tether.dev~1workload", "value": "web"}]),
                vec!["tether: changed label tether.dev/workload from \"old\" to \"web\" to match spec.workloadRef.name"],
            ),
            (
                json!({"metadata": {"labels": {"tether.dev/workload": "web"}}, "spec": wref}),
                json!([]),
                vec![],
            ),
            // Nothing to label from: validation denies instead.
            (json!({"metadata": {}, "spec": {}}), json!([]), vec![]),
            (json!({"metadata": {}}), json!([]), vec![]),
            (json!({"metadata": {}, "spec": {"workloadRef": {"name": ""}}}), json!([]), vec![]),
            (json!({"metadata": {}, "spec": {"workloadRef": {"name": "Bad_Name"}}}), json!([]), vec![]),
            (json!({"metadata": {}, "spec": {"workloadRef": {"name": 3}}}), json!([]), vec![]),
            (json!({"metadata": {"labels": "x"}, "spec": wref}), json!([]), vec![]),
        ];
        for (obj, want_patch, want_warnings) in cases {
            let m = workload_label_patch(&obj);
            assert_eq!(serde_json::to_value(&m.patch).unwrap(), want_patch, "{obj}");
            assert_eq!(m.warnings, want_warnings, "{obj}");
            assert_eq!(m.is_empty(), want_warnings.is_empty());
            // The patch applies, and afterwards the label is right and nothing else changed.
            let mut doc = obj.clone();
            json_patch::patch(&mut doc, &m.patch).unwrap();
            if !m.is_empty() {
                assert_eq!(
                    doc.pointer("/metadata/labels/tether.dev~1workload"),
                    Some(&json!("web"))
                );
                assert_eq!(doc["spec"], obj["spec"]);
                assert!(workload_label_patch(&doc).is_empty(), "idempotent: {doc}");
            }
        }
    }
}
