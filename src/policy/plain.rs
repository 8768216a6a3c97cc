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

use crate::borrowed_json::Value;
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use serde_json::{Map, Value as Json};

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

fn target_field() -> String {
    path_of(&["metadata", "labels", TARGET_LABEL])
}

/// The target label's value: `Ok(None)` when the object is not labelled, a Malformed
/// violation when the value cannot be a Deployment name.
fn target_of<'v>(obj: &'v Value<'_>) -> Result<Option<&'v str>, Violation> {
    let Some(value) = super::present(super::at(obj, &["metadata", "labels", TARGET_LABEL])) else {
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
        Value::Object(map) => match super::present(map.get("name")) {
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
/// use tether::borrowed_json::Value;
/// use tether::policy::plan_injection;
/// let pdb = Value::from(json!({"metadata": {"labels": {"tether.dev/target": "web"}}, "spec": {"maxUnavailable": 1}}));
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
    match super::present(obj.get("spec")) {
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
/// use tether::borrowed_json::Value;
/// use tether::policy::inject;
/// let hpa = Value::from(json!({"metadata": {"labels": {"tether.dev/target": "web"}}, "spec": {"maxReplicas": 3}}));
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
        m.insert("apiVersion".into(), Json::String("apps/v1".into()));
        m.insert("kind".into(), Json::String("Deployment".into()));
        m.insert("name".into(), Json::String(target.to_string()));
        Json::Object(m)
    };
    let match_labels = |labels: &BTreeMap<String, String>| {
        Json::Object(
            labels
                .iter()
                .map(|(k, v)| (k.clone(), Json::String(v.clone())))
                .collect(),
        )
    };
    let selector_object = |labels: &BTreeMap<String, String>| {
        let mut m = Map::new();
        m.insert("matchLabels".into(), match_labels(labels));
        Json::Object(m)
    };
    let add = |tokens: &[&str], value: Json| {
        PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(tokens.iter().copied()),
            value,
        })
    };

    let mut ops = Vec::new();
    let mut warnings = Vec::new();
    let spec = super::present(obj.get("spec"));
    if spec.is_none() {
        // One op creates spec with everything in it; separate ops would replace each other.
        let mut new_spec = Map::new();
        if let Some(field) = plan.scale_ref {
            new_spec.insert(field.to_string(), reference());
        }
        if let Some(labels) = labels {
            new_spec.insert("selector".into(), selector_object(labels));
        }
        ops.push(add(&["spec"], Json::Object(new_spec)));
    } else {
        if let Some(field) = plan.scale_ref {
            ops.push(add(&["spec", field], reference()));
        }
        if let Some(labels) = labels {
            if super::present(spec.and_then(|s| s.get("selector"))).is_none() {
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
mod tests;
