//! Mutating plain objects labelled `tether.dev/target: <deployment>` (SPEC 5.3).
//!
//! Which fields are filled in, by `(group, kind)`:
//!
//! | group                 | kind                      | field                        |
//! |-----------------------|---------------------------|------------------------------|
//! | `autoscaling`         | `HorizontalPodAutoscaler` | `spec.scaleTargetRef`        |
//! | `keda.sh`             | `ScaledObject`            | `spec.scaleTargetRef`        |
//! | `autoscaling.k8s.io`  | `VerticalPodAutoscaler`   | `spec.targetRef`             |
//! | `policy`              | `PodDisruptionBudget`     | `spec.selector.matchLabels`  |
//!
//! (any version; group and kind compared exactly, as the API server sends them.)
//!
//! For these four kinds a field is filled in when it is absent, `null`, or "empty": a
//! reference with no (or an empty) `name`, a `matchLabels` that is `{}`. One exception: a
//! PDB selector that has `matchExpressions` but no `matchLabels` key is left alone, since
//! adding labels would silently narrow a selector the user wrote; write `matchLabels: {}`
//! to ask for them anyway.
//!
//! Any other labelled kind is only touched where it asks explicitly: `spec.scaleTargetRef`
//! present as `null`, `{}` or with an empty name, and `spec.selector.matchLabels` present as
//! `null` or `{}`. Absent fields are never added to a kind tether does not know, because it
//! cannot know the kind has them (a CRD with a structural schema would prune or reject them).
//!
//! Wrong shapes (a `scaleTargetRef` that is a string, a `spec` that is an array) are
//! Malformed for the four kinds and ignored for others (the API server's schema decides).

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use serde_json::{Map, Value};

use super::{is_dns1123_subdomain, path_of, quote_short, show_value, Mutation, Violation};

/// The opt-in label; its value is the target Deployment's name.
pub const TARGET_LABEL: &str = "tether.dev/target";

/// Which fields tether fills in for a kind; see the module docs for the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetFields {
    /// Name of the workload reference under `spec` (`scaleTargetRef`, or `targetRef` for a
    /// VPA), or `None` when the kind has none.
    pub scale_ref: Option<&'static str>,
    /// Whether the kind has `spec.selector.matchLabels` to fill.
    pub selector: bool,
    /// One of the four known kinds: absent fields are filled too. Otherwise only explicit
    /// `null`/`{}`/empty-name fields are.
    pub known: bool,
}

/// The fields tether fills in for objects of this group and kind.
///
/// ```
/// use tether::policy::target_fields;
/// assert_eq!(target_fields("autoscaling.k8s.io", "VerticalPodAutoscaler").scale_ref, Some("targetRef"));
/// assert!(target_fields("policy", "PodDisruptionBudget").selector);
/// assert!(!target_fields("example.com", "Widget").known);
/// ```
pub fn target_fields(group: &str, kind: &str) -> TargetFields {
    let known = |scale_ref, selector| TargetFields {
        scale_ref,
        selector,
        known: true,
    };
    match (group, kind) {
        ("autoscaling", "HorizontalPodAutoscaler") | ("keda.sh", "ScaledObject") => {
            known(Some("scaleTargetRef"), false)
        }
        ("autoscaling.k8s.io", "VerticalPodAutoscaler") => known(Some("targetRef"), false),
        ("policy", "PodDisruptionBudget") => known(None, true),
        _ => TargetFields {
            scale_ref: Some("scaleTargetRef"),
            selector: true,
            known: false,
        },
    }
}

/// What [`inject`] will fill in for an object, so the caller knows whether it must look up
/// the target Deployment's selector first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectionPlan {
    /// The target Deployment (the label value); empty when the object is not labelled.
    pub target: String,
    /// The reference field under `spec` to set (`scaleTargetRef` / `targetRef`), if any.
    pub scale_ref: Option<&'static str>,
    /// Whether `spec.selector.matchLabels` will be set: the caller must then pass the
    /// Deployment's `spec.selector.matchLabels` to [`inject`].
    pub selector: bool,
}

impl InjectionPlan {
    /// Nothing to fill in.
    pub fn is_empty(&self) -> bool {
        self.scale_ref.is_none() && !self.selector
    }
}

fn present(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

fn target_field() -> String {
    path_of(&["metadata", "labels", TARGET_LABEL])
}

/// The target label's value: `Ok(None)` when the object is not labelled, a Malformed
/// violation when the value cannot be a Deployment name.
fn target_of(obj: &Value) -> Result<Option<&str>, Violation> {
    let Some(value) = present(
        obj.pointer("/metadata/labels")
            .and_then(|l| l.get(TARGET_LABEL)),
    ) else {
        return Ok(None);
    };
    let Some(name) = value.as_str() else {
        return Err(Violation::malformed(
            target_field(),
            format!("must be a string, got {}", show_value(value)),
        ));
    };
    if name.is_empty() {
        return Err(Violation::malformed(
            target_field(),
            "must name the Deployment to target: set it to the Deployment's name, or remove \
             the label to opt out",
        ));
    }
    if !is_dns1123_subdomain(name) {
        return Err(Violation::malformed(
            target_field(),
            format!(
                "{} is not a valid Deployment name: use lowercase letters, digits, '-' and \
                 '.', starting and ending with a letter or digit; set it to the name of the \
                 Deployment to target",
                quote_short(name, 70)
            ),
        ));
    }
    Ok(Some(name))
}

/// Whether a reference field needs filling; `Err` for a wrong shape on a known kind.
fn ref_needed(v: Option<&Value>, field: &str, known: bool) -> Result<bool, Violation> {
    let Some(v) = v else {
        return Ok(known);
    };
    match v {
        Value::Null => Ok(true),
        Value::Object(map) => match present(map.get("name")) {
            None => Ok(true),
            Some(Value::String(name)) => Ok(name.is_empty()),
            Some(other) if known => Err(Violation::malformed(
                format!("spec.{field}.name"),
                format!(
                    "must be a string, got {}: set it to the Deployment's name, or remove it \
                     to have tether fill it in",
                    show_value(other)
                ),
            )),
            Some(_) => Ok(false),
        },
        other if known => Err(Violation::malformed(
            format!("spec.{field}"),
            format!(
                "must be an object like {{apiVersion: apps/v1, kind: Deployment, name: <name>}}, \
                 got {}: fix it, or remove it to have tether fill it in",
                show_value(other)
            ),
        )),
        _ => Ok(false),
    }
}

/// Whether `spec.selector.matchLabels` needs filling; `Err` for a wrong shape on a known kind.
fn selector_needed(selector: Option<&Value>, known: bool) -> Result<bool, Violation> {
    let Some(selector) = selector else {
        return Ok(known);
    };
    let map = match selector {
        Value::Null => return Ok(known),
        Value::Object(map) => map,
        other if known => {
            return Err(Violation::malformed(
                "spec.selector",
                format!(
                    "must be an object like {{matchLabels: {{...}}}}, got {}: fix it, or \
                     remove it to have tether fill it in",
                    show_value(other)
                ),
            ))
        }
        _ => return Ok(false),
    };
    match map.get("matchLabels") {
        None => {
            let has_expressions = map
                .get("matchExpressions")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
            Ok(known && !has_expressions)
        }
        Some(Value::Null) => Ok(true),
        Some(Value::Object(labels)) => Ok(labels.is_empty()),
        Some(other) if known => Err(Violation::malformed(
            "spec.selector.matchLabels",
            format!(
                "must be an object of labels, got {}: fix it, or set it to {{}} to have tether \
                 fill it in",
                show_value(other)
            ),
        )),
        Some(_) => Ok(false),
    }
}

/// Decides what [`inject`] will fill in (SPEC 5.3), and checks the target label. An object
/// without the label has not opted in and gets an empty plan. Every violation is reported.
///
/// ```
/// use serde_json::json;
/// use tether::policy::plan_injection;
/// let pdb = json!({"metadata": {"labels": {"tether.dev/target": "web"}}, "spec": {"maxUnavailable": 1}});
/// let plan = plan_injection("policy", "PodDisruptionBudget", &pdb).unwrap();
/// assert!(plan.selector); // look up Deployment "web" and pass its matchLabels to inject()
/// assert_eq!(plan.target, "web");
/// ```
pub fn plan_injection(
    group: &str,
    kind: &str,
    obj: &Value,
) -> Result<InjectionPlan, Vec<Violation>> {
    let mut violations = Vec::new();
    let target = match target_of(obj) {
        Ok(Some(t)) => t.to_string(),
        Ok(None) => {
            return Ok(InjectionPlan {
                target: String::new(),
                scale_ref: None,
                selector: false,
            })
        }
        Err(v) => {
            violations.push(v);
            String::new()
        }
    };
    let fields = target_fields(group, kind);
    let mut plan = InjectionPlan {
        target,
        scale_ref: None,
        selector: false,
    };
    match present(obj.get("spec")) {
        None => {
            if fields.known {
                plan.scale_ref = fields.scale_ref;
                plan.selector = fields.selector;
            }
        }
        Some(Value::Object(spec)) => {
            if let Some(field) = fields.scale_ref {
                match ref_needed(spec.get(field), field, fields.known) {
                    Ok(true) => plan.scale_ref = Some(field),
                    Ok(false) => {}
                    Err(v) => violations.push(v),
                }
            }
            if fields.selector {
                match selector_needed(spec.get("selector"), fields.known) {
                    Ok(needed) => plan.selector = needed,
                    Err(v) => violations.push(v),
                }
            }
        }
        Some(other) => {
            if fields.known {
                violations.push(Violation::malformed(
                    "spec",
                    format!("must be an object, got {}", show_value(other)),
                ));
            }
        }
    }
    if violations.is_empty() {
        Ok(plan)
    } else {
        Err(violations)
    }
}

/// One warning line: no control characters (the API server drops warnings with
/// newlines), at most `max` characters.
fn warning_line(s: String, max: usize) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.chars().count() <= max {
        clean
    } else {
        let mut cut: String = clean.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

const WARNING_MAX: usize = 200;

/// Builds the JSON Patch and warnings that fill in an object's target fields (SPEC 5.3).
///
/// `namespace` is the request's namespace (for messages). `selector` is the target
/// Deployment's `spec.selector.matchLabels`, looked up by the caller when
/// [`plan_injection`] says `selector`; `None` means the Deployment was not found, which
/// denies only when the selector is actually needed. The patch is valid RFC 6902 against
/// `obj` (it creates `spec` and `spec.selector` when they are missing).
///
/// ```
/// use serde_json::json;
/// use tether::policy::inject;
/// let hpa = json!({"metadata": {"labels": {"tether.dev/target": "web"}}, "spec": {"maxReplicas": 3}});
/// let m = inject("autoscaling", "HorizontalPodAutoscaler", &hpa, "shop", None).unwrap();
/// assert_eq!(
///     serde_json::to_value(&m.patch).unwrap(),
///     json!([{"op": "add", "path": "/spec/scaleTargetRef",
///             "value": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}}])
/// );
/// assert_eq!(m.warnings, vec!["tether: set spec.scaleTargetRef to Deployment \"web\""]);
/// ```
pub fn inject(
    group: &str,
    kind: &str,
    obj: &Value,
    namespace: &str,
    selector: Option<&BTreeMap<String, String>>,
) -> Result<Mutation, Vec<Violation>> {
    let plan = plan_injection(group, kind, obj)?;
    if plan.is_empty() {
        return Ok(Mutation::default());
    }
    let target = plan.target.as_str();
    let deployment = if namespace.is_empty() {
        format!("Deployment {target:?}")
    } else {
        format!("Deployment \"{namespace}/{target}\"")
    };

    let labels = if plan.selector {
        match selector {
            None => {
                return Err(vec![Violation::forbidden(
                    target_field(),
                    format!(
                        "{deployment} not found: tether copies its spec.selector.matchLabels \
                         into spec.selector.matchLabels; create the Deployment first (or fix \
                         the label), or set spec.selector.matchLabels yourself"
                    ),
                )])
            }
            Some(labels) if labels.is_empty() => {
                return Err(vec![Violation::forbidden(
                    target_field(),
                    format!(
                        "{deployment} has no spec.selector.matchLabels to copy (it selects \
                         with matchExpressions only); set spec.selector yourself"
                    ),
                )])
            }
            Some(labels) => Some(labels),
        }
    } else {
        None
    };

    let reference = || {
        let mut m = Map::new();
        m.insert("apiVersion".into(), Value::String("apps/v1".into()));
        m.insert("kind".into(), Value::String("Deployment".into()));
        m.insert("name".into(), Value::String(target.to_string()));
        Value::Object(m)
    };
    let match_labels = |labels: &BTreeMap<String, String>| {
        Value::Object(
            labels
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        )
    };
    let selector_object = |labels: &BTreeMap<String, String>| {
        let mut m = Map::new();
        m.insert("matchLabels".into(), match_labels(labels));
        Value::Object(m)
    };
    let add = |tokens: &[&str], value: Value| {
        PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(tokens.iter().copied()),
            value,
        })
    };

    let mut ops = Vec::new();
    let mut warnings = Vec::new();
    let spec = present(obj.get("spec"));
    if spec.is_none() {
        // One op creates spec with everything in it; separate ops would replace each other.
        let mut new_spec = Map::new();
        if let Some(field) = plan.scale_ref {
            new_spec.insert(field.to_string(), reference());
        }
        if let Some(labels) = labels {
            new_spec.insert("selector".into(), selector_object(labels));
        }
        ops.push(add(&["spec"], Value::Object(new_spec)));
    } else {
        if let Some(field) = plan.scale_ref {
            ops.push(add(&["spec", field], reference()));
        }
        if let Some(labels) = labels {
            if present(spec.and_then(|s| s.get("selector"))).is_none() {
                ops.push(add(&["spec", "selector"], selector_object(labels)));
            } else {
                ops.push(add(
                    &["spec", "selector", "matchLabels"],
                    match_labels(labels),
                ));
            }
        }
    }
    if let Some(field) = plan.scale_ref {
        warnings.push(warning_line(
            format!("tether: set spec.{field} to Deployment {target:?}"),
            WARNING_MAX,
        ));
    }
    if let Some(labels) = labels {
        let shown = labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        warnings.push(warning_line(
            format!(
                "tether: set spec.selector.matchLabels to Deployment {target:?}'s selector {shown}"
            ),
            WARNING_MAX,
        ));
    }
    Ok(Mutation {
        patch: Patch(ops),
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Severity;
    use proptest::prelude::*;
    use serde_json::json;

    /// `(field, severity)` of each violation.
    type Found = Vec<(String, Severity)>;
    /// `(group, kind, spec, scale_ref, selector)`.
    type PlanRow = (
        &'static str,
        &'static str,
        Option<Value>,
        Option<&'static str>,
        bool,
    );

    fn labelled(spec: Option<Value>) -> Value {
        let mut obj =
            json!({"metadata": {"name": "x", "labels": {"tether.dev/target": "web", "team": "a"}}});
        if let (Some(spec), Some(map)) = (spec, obj.as_object_mut()) {
            map.insert("spec".into(), spec);
        }
        obj
    }

    fn web_ref() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"})
    }

    fn selector() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app".to_string(), "web".to_string()),
            ("tier".to_string(), "fe".to_string()),
        ])
    }

    fn selector_json() -> Value {
        json!({"app": "web", "tier": "fe"})
    }

    /// Applies `inject` and returns the patched object (or the violations' fields).
    fn run(group: &str, kind: &str, obj: &Value) -> Result<(Value, Vec<String>), Found> {
        let sel = selector();
        match inject(group, kind, obj, "shop", Some(&sel)) {
            Ok(m) => {
                let mut doc = obj.clone();
                json_patch::patch(&mut doc, &m.patch).expect("patch must apply");
                Ok((doc, m.warnings))
            }
            Err(vs) => Err(vs.into_iter().map(|v| (v.field, v.severity)).collect()),
        }
    }

    #[test]
    fn target_fields_table() {
        let cases = [
            (
                "autoscaling",
                "HorizontalPodAutoscaler",
                Some("scaleTargetRef"),
                false,
                true,
            ),
            (
                "keda.sh",
                "ScaledObject",
                Some("scaleTargetRef"),
                false,
                true,
            ),
            (
                "autoscaling.k8s.io",
                "VerticalPodAutoscaler",
                Some("targetRef"),
                false,
                true,
            ),
            ("policy", "PodDisruptionBudget", None, true, true),
            (
                "policy",
                "poddisruptionbudget",
                Some("scaleTargetRef"),
                true,
                false,
            ),
            ("keda.sh", "ScaledJob", Some("scaleTargetRef"), true, false),
            ("", "ConfigMap", Some("scaleTargetRef"), true, false),
        ];
        for (g, k, scale_ref, selector, known) in cases {
            assert_eq!(
                target_fields(g, k),
                TargetFields {
                    scale_ref,
                    selector,
                    known
                },
                "{g} {k}"
            );
        }
    }

    #[test]
    fn hpa_scale_target_ref_table() {
        let warn = vec!["tether: set spec.scaleTargetRef to Deployment \"web\"".to_string()];
        let cases: Vec<(Option<Value>, Value, Vec<String>)> = vec![
            // spec absent / null: created.
            (None, json!({"scaleTargetRef": web_ref()}), warn.clone()),
            (
                Some(json!(null)),
                json!({"scaleTargetRef": web_ref()}),
                warn.clone(),
            ),
            // field absent, null, {}, empty or missing name: filled.
            (
                Some(json!({"maxReplicas": 3})),
                json!({"maxReplicas": 3, "scaleTargetRef": web_ref()}),
                warn.clone(),
            ),
            (
                Some(json!({"scaleTargetRef": null})),
                json!({"scaleTargetRef": web_ref()}),
                warn.clone(),
            ),
            (
                Some(json!({"scaleTargetRef": {}})),
                json!({"scaleTargetRef": web_ref()}),
                warn.clone(),
            ),
            (
                Some(json!({"scaleTargetRef": {"name": ""}})),
                json!({"scaleTargetRef": web_ref()}),
                warn.clone(),
            ),
            (
                Some(json!({"scaleTargetRef": {"name": null}})),
                json!({"scaleTargetRef": web_ref()}),
                warn.clone(),
            ),
            (
                Some(json!({"scaleTargetRef": {"kind": "StatefulSet", "apiVersion": "apps/v1"}})),
                json!({"scaleTargetRef": web_ref()}),
                warn.clone(),
            ),
            // A name set: left alone.
            (
                Some(
                    json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db"}}),
                ),
                json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db"}}),
                vec![],
            ),
            // An HPA has no selector to fill, even when asked.
            (
                Some(json!({"scaleTargetRef": {"name": "x"}, "selector": {"matchLabels": {}}})),
                json!({"scaleTargetRef": {"name": "x"}, "selector": {"matchLabels": {}}}),
                vec![],
            ),
        ];
        for (spec, want_spec, want_warnings) in cases {
            let obj = labelled(spec.clone());
            let (doc, warnings) = run("autoscaling", "HorizontalPodAutoscaler", &obj).unwrap();
            let mut want = obj.clone();
            want["spec"] = want_spec;
            assert_eq!(doc, want, "{spec:?}");
            assert_eq!(warnings, want_warnings, "{spec:?}");
            // Idempotent: a second pass changes nothing.
            let again =
                inject("autoscaling", "HorizontalPodAutoscaler", &doc, "shop", None).unwrap();
            assert!(again.is_empty(), "{doc}");
        }
    }

    #[test]
    fn keda_and_vpa() {
        let obj = labelled(Some(json!({"scaleTargetRef": {}, "minReplicaCount": 0})));
        let (doc, _) = run("keda.sh", "ScaledObject", &obj).unwrap();
        assert_eq!(
            doc["spec"],
            json!({"scaleTargetRef": web_ref(), "minReplicaCount": 0})
        );

        let obj = labelled(Some(json!({"updatePolicy": {"updateMode": "Auto"}})));
        let (doc, warnings) = run("autoscaling.k8s.io", "VerticalPodAutoscaler", &obj).unwrap();
        assert_eq!(
            doc["spec"],
            json!({"targetRef": web_ref(), "updatePolicy": {"updateMode": "Auto"}})
        );
        assert_eq!(
            warnings,
            vec!["tether: set spec.targetRef to Deployment \"web\""]
        );
        // A VPA's scaleTargetRef means nothing to tether.
        let obj = labelled(Some(
            json!({"targetRef": {"name": "db"}, "scaleTargetRef": {}}),
        ));
        let (doc, _) = run("autoscaling.k8s.io", "VerticalPodAutoscaler", &obj).unwrap();
        assert_eq!(doc, obj);
    }

    #[test]
    fn pdb_selector_table() {
        let warn = vec![
            "tether: set spec.selector.matchLabels to Deployment \"web\"'s selector app=web,tier=fe"
                .to_string(),
        ];
        let filled = json!({"matchLabels": selector_json()});
        let cases: Vec<(Option<Value>, Value, Vec<String>)> = vec![
            (None, json!({"selector": filled}), warn.clone()),
            (Some(json!(null)), json!({"selector": filled}), warn.clone()),
            (
                Some(json!({"maxUnavailable": 1})),
                json!({"maxUnavailable": 1, "selector": filled}),
                warn.clone(),
            ),
            (
                Some(json!({"selector": null})),
                json!({"selector": filled}),
                warn.clone(),
            ),
            (
                Some(json!({"selector": {}})),
                json!({"selector": filled}),
                warn.clone(),
            ),
            (
                Some(json!({"selector": {"matchLabels": null}})),
                json!({"selector": filled}),
                warn.clone(),
            ),
            (
                Some(json!({"selector": {"matchLabels": {}}})),
                json!({"selector": filled}),
                warn.clone(),
            ),
            (
                Some(
                    json!({"selector": {"matchLabels": {}, "matchExpressions": [{"key": "a", "operator": "Exists"}]}}),
                ),
                json!({"selector": {"matchLabels": selector_json(), "matchExpressions": [{"key": "a", "operator": "Exists"}]}}),
                warn.clone(),
            ),
            (
                Some(json!({"selector": {"matchExpressions": []}})),
                json!({"selector": {"matchLabels": selector_json(), "matchExpressions": []}}),
                warn.clone(),
            ),
            // The user's own selector: left alone.
            (
                Some(json!({"selector": {"matchLabels": {"app": "other"}}})),
                json!({"selector": {"matchLabels": {"app": "other"}}}),
                vec![],
            ),
            (
                Some(
                    json!({"selector": {"matchExpressions": [{"key": "a", "operator": "Exists"}]}}),
                ),
                json!({"selector": {"matchExpressions": [{"key": "a", "operator": "Exists"}]}}),
                vec![],
            ),
        ];
        for (spec, want_spec, want_warnings) in cases {
            let obj = labelled(spec.clone());
            let (doc, warnings) = run("policy", "PodDisruptionBudget", &obj).unwrap();
            let mut want = obj.clone();
            want["spec"] = want_spec;
            assert_eq!(doc, want, "{spec:?}");
            assert_eq!(warnings, want_warnings, "{spec:?}");
            let sel = selector();
            assert!(
                inject("policy", "PodDisruptionBudget", &doc, "shop", Some(&sel))
                    .unwrap()
                    .is_empty()
            );
        }
    }

    #[test]
    fn generic_kinds_only_explicit_sentinels() {
        let cases: Vec<(Option<Value>, Option<Value>)> = vec![
            // (spec, expected spec after; None = unchanged)
            (None, None),
            (Some(json!({})), None),
            (Some(json!({"selector": {}})), None),
            (Some(json!({"selector": null})), None),
            (Some(json!({"scaleTargetRef": {"name": "x"}})), None),
            (Some(json!({"scaleTargetRef": "x"})), None),
            (Some(json!({"selector": {"matchLabels": "x"}})), None),
            (Some(json!({"selector": "app=web"})), None),
            (Some(json!("weird")), None),
            (
                Some(json!({"scaleTargetRef": {}})),
                Some(json!({"scaleTargetRef": web_ref()})),
            ),
            (
                Some(json!({"scaleTargetRef": null})),
                Some(json!({"scaleTargetRef": web_ref()})),
            ),
            (
                Some(json!({"scaleTargetRef": {"name": ""}})),
                Some(json!({"scaleTargetRef": web_ref()})),
            ),
            (
                Some(json!({"selector": {"matchLabels": {}}})),
                Some(json!({"selector": {"matchLabels": selector_json()}})),
            ),
            (
                Some(json!({"selector": {"matchLabels": null}, "scaleTargetRef": {}})),
                Some(
                    json!({"selector": {"matchLabels": selector_json()}, "scaleTargetRef": web_ref()}),
                ),
            ),
        ];
        for (spec, want_spec) in cases {
            let obj = labelled(spec.clone());
            let (doc, warnings) = run("example.com", "Widget", &obj).unwrap();
            match want_spec {
                None => {
                    assert_eq!(doc, obj, "{spec:?}");
                    assert!(warnings.is_empty());
                }
                Some(s) => {
                    let mut want = obj.clone();
                    want["spec"] = s;
                    assert_eq!(doc, want, "{spec:?}");
                    assert!(!warnings.is_empty());
                }
            }
        }
    }

    #[test]
    fn known_kind_shape_errors() {
        let cases: Vec<(&str, &str, Value, Found)> = vec![
            (
                "autoscaling",
                "HorizontalPodAutoscaler",
                json!("x"),
                vec![("spec".into(), Severity::Malformed)],
            ),
            (
                "autoscaling",
                "HorizontalPodAutoscaler",
                json!([]),
                vec![("spec".into(), Severity::Malformed)],
            ),
            (
                "autoscaling",
                "HorizontalPodAutoscaler",
                json!({"scaleTargetRef": ["web"]}),
                vec![("spec.scaleTargetRef".into(), Severity::Malformed)],
            ),
            (
                "autoscaling",
                "HorizontalPodAutoscaler",
                json!({"scaleTargetRef": "web"}),
                vec![("spec.scaleTargetRef".into(), Severity::Malformed)],
            ),
            (
                "autoscaling",
                "HorizontalPodAutoscaler",
                json!({"scaleTargetRef": {"name": 3}}),
                vec![("spec.scaleTargetRef.name".into(), Severity::Malformed)],
            ),
            (
                "autoscaling.k8s.io",
                "VerticalPodAutoscaler",
                json!({"targetRef": "web"}),
                vec![("spec.targetRef".into(), Severity::Malformed)],
            ),
            (
                "policy",
                "PodDisruptionBudget",
                json!({"selector": "app=web"}),
                vec![("spec.selector".into(), Severity::Malformed)],
            ),
            (
                "policy",
                "PodDisruptionBudget",
                json!({"selector": {"matchLabels": ["app"]}}),
                vec![("spec.selector.matchLabels".into(), Severity::Malformed)],
            ),
        ];
        for (g, k, spec, want) in cases {
            let obj = labelled(Some(spec.clone()));
            assert_eq!(run(g, k, &obj).unwrap_err(), want, "{spec}");
        }
        let obj = labelled(Some(json!({"scaleTargetRef": "web"})));
        assert_eq!(
            plan_injection("autoscaling", "HorizontalPodAutoscaler", &obj).unwrap_err()[0]
                .to_string(),
            "spec.scaleTargetRef: must be an object like {apiVersion: apps/v1, kind: Deployment, \
             name: <name>}, got \"web\": fix it, or remove it to have tether fill it in"
        );
    }

    #[test]
    fn target_label_table() {
        let field = "metadata.labels[\"tether.dev/target\"]".to_string();
        let cases: Vec<(Value, Result<&str, ()>)> = vec![
            (json!("web"), Ok("web")),
            (json!("web.v2"), Ok("web.v2")),
            (json!(""), Err(())),
            (json!("Web"), Err(())),
            (json!("web_1"), Err(())),
            (json!("-web"), Err(())),
            (json!(7), Err(())),
        ];
        for (value, want) in cases {
            let obj = json!({"metadata": {"labels": {"tether.dev/target": value}}, "spec": {}});
            let got = plan_injection("autoscaling", "HorizontalPodAutoscaler", &obj);
            match want {
                Ok(t) => assert_eq!(got.unwrap().target, t),
                Err(()) => {
                    let vs = got.unwrap_err();
                    assert_eq!(vs.len(), 1, "{value}");
                    assert_eq!(vs[0].field, field);
                    assert_eq!(vs[0].severity, Severity::Malformed);
                }
            }
        }
        let obj = json!({"metadata": {"labels": {"tether.dev/target": "Web"}}});
        assert_eq!(
            plan_injection("autoscaling", "HorizontalPodAutoscaler", &obj).unwrap_err()[0]
                .to_string(),
            "metadata.labels[\"tether.dev/target\"]: \"Web\" is not a valid Deployment name: use \
             lowercase letters, digits, '-' and '.', starting and ending with a letter or digit; \
             set it to the name of the Deployment to target"
        );
        // Bad label and bad shape: both reported.
        let obj = json!({"metadata": {"labels": {"tether.dev/target": ""}}, "spec": {"scaleTargetRef": 1}});
        let vs = plan_injection("autoscaling", "HorizontalPodAutoscaler", &obj).unwrap_err();
        assert_eq!(
            vs.iter().map(|v| v.field.as_str()).collect::<Vec<_>>(),
            vec![
                "metadata.labels[\"tether.dev/target\"]",
                "spec.scaleTargetRef"
            ]
        );
    }

    #[test]
    fn unlabelled_objects_are_untouched() {
        for obj in [
            json!({}),
            json!({"metadata": {}}),
            json!({"metadata": {"labels": {"a": "b"}}}),
        ] {
            let plan = plan_injection("policy", "PodDisruptionBudget", &obj).unwrap();
            assert!(plan.is_empty());
            assert!(inject("policy", "PodDisruptionBudget", &obj, "shop", None)
                .unwrap()
                .is_empty());
        }
    }

    #[test]
    fn plan_table() {
        let cases: Vec<PlanRow> = vec![
            (
                "autoscaling",
                "HorizontalPodAutoscaler",
                None,
                Some("scaleTargetRef"),
                false,
            ),
            (
                "autoscaling",
                "HorizontalPodAutoscaler",
                Some(json!({"scaleTargetRef": {"name": "a"}})),
                None,
                false,
            ),
            ("policy", "PodDisruptionBudget", None, None, true),
            (
                "policy",
                "PodDisruptionBudget",
                Some(json!({"selector": {"matchLabels": {"a": "b"}}})),
                None,
                false,
            ),
            ("x.io", "Thing", None, None, false),
            (
                "x.io",
                "Thing",
                Some(json!({"selector": {"matchLabels": {}}})),
                None,
                true,
            ),
        ];
        for (g, k, spec, scale_ref, selector) in cases {
            let plan = plan_injection(g, k, &labelled(spec.clone())).unwrap();
            assert_eq!(
                plan,
                InjectionPlan {
                    target: "web".into(),
                    scale_ref,
                    selector
                },
                "{g} {k} {spec:?}"
            );
        }
    }

    #[test]
    fn missing_deployment() {
        let obj = labelled(Some(json!({"maxUnavailable": 1})));
        let vs = inject("policy", "PodDisruptionBudget", &obj, "shop", None).unwrap_err();
        assert_eq!(vs.len(), 1);
        assert_eq!(vs[0].severity, Severity::Forbidden);
        assert_eq!(
            vs[0].to_string(),
            "metadata.labels[\"tether.dev/target\"]: Deployment \"shop/web\" not found: tether \
             copies its spec.selector.matchLabels into spec.selector.matchLabels; create the \
             Deployment first (or fix the label), or set spec.selector.matchLabels yourself"
        );
        // An HPA does not need the Deployment to exist.
        let obj = labelled(None);
        assert!(inject("autoscaling", "HorizontalPodAutoscaler", &obj, "shop", None).is_ok());
        // A Deployment that selects with matchExpressions only has nothing to copy.
        let empty = BTreeMap::new();
        let vs = inject(
            "policy",
            "PodDisruptionBudget",
            &labelled(None),
            "",
            Some(&empty),
        )
        .unwrap_err();
        assert_eq!(
            vs[0].to_string(),
            "metadata.labels[\"tether.dev/target\"]: Deployment \"web\" has no \
             spec.selector.matchLabels to copy (it selects with matchExpressions only); set \
             spec.selector yourself"
        );
    }

    #[test]
    fn patch_paths_are_exact() {
        let sel = selector();
        let m = inject(
            "policy",
            "PodDisruptionBudget",
            &labelled(Some(json!({"selector": {}}))),
            "shop",
            Some(&sel),
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&m.patch).unwrap(),
            json!([{"op": "add", "path": "/spec/selector/matchLabels", "value": selector_json()}])
        );
        let m = inject(
            "x.io",
            "Thing",
            &labelled(Some(
                json!({"scaleTargetRef": null, "selector": {"matchLabels": null}}),
            )),
            "shop",
            Some(&sel),
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&m.patch).unwrap(),
            json!([
                {"op": "add", "path": "/spec/scaleTargetRef", "value": web_ref()},
                {"op": "add", "path": "/spec/selector/matchLabels", "value": selector_json()}
            ])
        );
        assert_eq!(m.warnings.len(), 2);
    }

    #[test]
    fn warnings_are_single_short_lines() {
        let mut sel = BTreeMap::new();
        sel.insert("a\nb".to_string(), "x".repeat(300));
        let m = inject(
            "policy",
            "PodDisruptionBudget",
            &labelled(None),
            "shop",
            Some(&sel),
        )
        .unwrap();
        assert_eq!(m.warnings.len(), 1);
        let w = &m.warnings[0];
        assert!(!w.chars().any(char::is_control), "{w}");
        assert_eq!(w.chars().count(), WARNING_MAX);
        assert!(w.ends_with('…'));
    }

    fn ref_value() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            Just(None),
            Just(Some(json!(null))),
            Just(Some(json!({}))),
            Just(Some(json!({"name": ""}))),
            Just(Some(json!({"name": "db", "kind": "StatefulSet"}))),
            Just(Some(json!("web"))),
        ]
    }

    fn selector_value() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            Just(None),
            Just(Some(json!(null))),
            Just(Some(json!({}))),
            Just(Some(json!({"matchLabels": null}))),
            Just(Some(json!({"matchLabels": {}}))),
            Just(Some(json!({"matchLabels": {"a": "b"}}))),
            Just(Some(
                json!({"matchExpressions": [{"key": "a", "operator": "Exists"}]})
            )),
            Just(Some(json!({"matchLabels": "x"}))),
            Just(Some(json!("app=web"))),
        ]
    }

    fn spec_value() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            Just(None),
            Just(Some(json!(null))),
            Just(Some(json!([]))),
            (ref_value(), ref_value(), selector_value()).prop_map(|(r, t, s)| {
                let mut m = Map::new();
                m.insert("maxReplicas".into(), json!(3));
                for (k, v) in [("scaleTargetRef", r), ("targetRef", t), ("selector", s)] {
                    if let Some(v) = v {
                        m.insert(k.into(), v);
                    }
                }
                Some(Value::Object(m))
            }),
        ]
    }

    proptest! {
        /// Whatever the shape: either a deny, or a patch that applies to the object, only
        /// touches `spec`, and leaves nothing to do on a second pass.
        #[test]
        fn inject_patches_apply_and_are_idempotent(
            spec in spec_value(),
            which in 0usize..5,
            found in any::<bool>(),
        ) {
            let (g, k) = [
                ("autoscaling", "HorizontalPodAutoscaler"),
                ("keda.sh", "ScaledObject"),
                ("autoscaling.k8s.io", "VerticalPodAutoscaler"),
                ("policy", "PodDisruptionBudget"),
                ("example.com", "Widget"),
            ][which];
            let obj = labelled(spec);
            let sel = selector();
            let sel = found.then_some(&sel);
            if let Ok(m) = inject(g, k, &obj, "shop", sel) {
                let mut doc = obj.clone();
                prop_assert!(json_patch::patch(&mut doc, &m.patch).is_ok());
                prop_assert_eq!(&doc["metadata"], &obj["metadata"]);
                prop_assert!(m.warnings.len() >= m.patch.0.len());
                prop_assert_eq!(m.warnings.is_empty(), m.patch.0.is_empty());
                let again = inject(g, k, &doc, "shop", sel);
                prop_assert!(again.is_ok_and(|m| m.is_empty()), "{}", doc);
            }
        }
    }
}
