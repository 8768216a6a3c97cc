//! Pure rendering of an AttachedResource's copies: [`render_copy`], the [`content_hash`] it
//! is applied with, the [`copy_up_to_date`] comparison that decides whether to re-apply, and
//! the [`ready_condition`]. No I/O here; the reconcile in the parent module does that.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::DynamicObject;
use kube::ResourceExt;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::{
    APPLIED_HASH_ANNOTATION, ATTACHED_LABEL, REASON_APPLIED, REASON_FAILED, REASON_NO_TARGETS,
    VERSION_LABEL,
};
use crate::crd::{Condition, TargetStatus};
use crate::policy::attached::WORKLOAD_LABEL;
use crate::policy::placeholders::{render_value, RenderError, Vars};

/// One target Deployment, reduced to what rendering needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub deployment: String,
    pub uid: String,
    pub version: String,
    /// The Deployment's `spec.selector.matchLabels` (empty when it has none).
    pub match_labels: BTreeMap<String, String>,
}

impl Target {
    /// The target for a Deployment; `None` when it has no name or uid.
    pub fn from_deployment(d: &Deployment) -> Option<Self> {
        let deployment = d.metadata.name.clone()?;
        let uid = d.metadata.uid.clone()?;
        let version = d
            .labels()
            .get(VERSION_LABEL)
            .filter(|v| !v.is_empty())
            .cloned()
            .unwrap_or_else(|| deployment.clone());
        let match_labels = d
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.clone())
            .unwrap_or_default();
        Some(Target {
            deployment,
            uid,
            version,
            match_labels,
        })
    }
}

/// Why one target's copy could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderFailure {
    #[error("spec.object must be a JSON object")]
    NotAnObject,
    #[error("spec.object.{0}")]
    Placeholder(RenderError),
    #[error("spec.object.spec.selector.matchLabels asks for the Deployment's selector labels, but Deployment {0} has no spec.selector.matchLabels (only matchExpressions?); set the selector explicitly")]
    NoMatchLabels(String),
}

/// `null` or `{}`: the "tether fills this in" sentinels.
fn is_sentinel(v: &Value) -> bool {
    v.is_null() || v.as_object().is_some_and(Map::is_empty)
}

/// Renders `spec.object` of AttachedResource `atr_name` in `namespace` (workload `workload`)
/// for one target: the complete object to server-side apply.
pub fn render_copy(
    object: &Value,
    atr_name: &str,
    namespace: &str,
    workload: &str,
    target: &Target,
) -> Result<Value, RenderFailure> {
    if !object.is_object() {
        return Err(RenderFailure::NotAnObject);
    }
    let vars = Vars {
        deployment_name: &target.deployment,
        version: &target.version,
        namespace,
        workload_name: workload,
    };
    let mut out = render_value(object, &vars).map_err(RenderFailure::Placeholder)?;
    let root = out.as_object_mut().ok_or(RenderFailure::NotAnObject)?;
    root.remove("status");

    if let Some(spec) = root.get_mut("spec").and_then(Value::as_object_mut) {
        if spec
            .get("scaleTargetRef")
            .is_some_and(|v| v.is_null() || crate::policy::attached::is_unset_reference(&v.into()))
        {
            spec.insert(
                "scaleTargetRef".into(),
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": target.deployment}),
            );
        }
        if let Some(selector) = spec.get_mut("selector").and_then(Value::as_object_mut) {
            if selector.get("matchLabels").is_some_and(is_sentinel) {
                if target.match_labels.is_empty() {
                    return Err(RenderFailure::NoMatchLabels(target.deployment.clone()));
                }
                selector.insert("matchLabels".into(), json!(target.match_labels));
            }
        }
    }

    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    let Some(meta) = meta.as_object_mut() else {
        return Err(RenderFailure::NotAnObject);
    };
    for f in [
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "managedFields",
        "generateName",
        "finalizers",
    ] {
        meta.remove(f);
    }
    meta.insert(
        "name".into(),
        Value::String(crate::naming::attached_name(
            &target.deployment,
            atr_name,
            workload,
            &target.version,
        )),
    );
    meta.insert("namespace".into(), Value::String(namespace.to_string()));
    let mut labels = meta
        .get("labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    labels.insert(ATTACHED_LABEL.into(), Value::String(atr_name.to_string()));
    labels.insert(WORKLOAD_LABEL.into(), Value::String(workload.to_string()));
    labels.insert(VERSION_LABEL.into(), Value::String(target.version.clone()));
    // Every label value must be valid, at most 63 characters (SPEC 6.1): names (up to 253)
    // and placeholders rendered into labels are shortened with a hash suffix.
    for v in labels.values_mut() {
        if let Value::String(s) = v {
            *s = crate::naming::label_value(s);
        }
    }
    meta.insert("labels".into(), Value::Object(labels));
    meta.insert(
        "ownerReferences".into(),
        json!([{
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": target.deployment,
            "uid": target.uid,
            "controller": true,
            "blockOwnerDeletion": true,
        }]),
    );
    Ok(out)
}

/// SHA-256 (hex) of the canonical JSON of `v` ([`crate::canonical_json`]): key order in the
/// input never changes the hash.
pub fn content_hash(v: &Value) -> String {
    let mut s = String::new();
    crate::canonical_json::write(&v.into(), &mut s);
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Whether the live copy is still what tether applied for `hash`, judged only from what the
/// API server preserves verbatim (SPEC 6): its [`APPLIED_HASH_ANNOTATION`], the generation
/// recorded after the last apply (the server moves it on every spec change, by anyone), the
/// owner reference to the target, and tether's labels. Never the copy's spec: list items of
/// built-in kinds come back without apiVersion/kind, and values come back normalised
/// (quantities, int-or-string, defaults), so comparing JSON would re-apply on every reconcile.
pub fn copy_up_to_date(
    live: &DynamicObject,
    rendered: &Value,
    hash: &str,
    recorded_generation: Option<i64>,
    owner_uid: &str,
) -> bool {
    let meta = &live.metadata;
    if meta.deletion_timestamp.is_some() {
        return false;
    }
    let annotated = live
        .annotations()
        .get(APPLIED_HASH_ANNOTATION)
        .map(String::as_str)
        == Some(hash);
    let generation_ok = recorded_generation.is_some() && meta.generation == recorded_generation;
    let owned = live
        .owner_references()
        .iter()
        .any(|o| o.uid == owner_uid && o.controller == Some(true));
    let labels_ok = rendered
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .is_none_or(|want| {
            want.iter()
                .all(|(k, v)| live.labels().get(k).map(String::as_str) == v.as_str())
        });
    annotated && generation_ok && owned && labels_ok
}

/// What tether last applied to one copy: the content hash and the generation the server
/// returned. Two records may exist: the AttachedResource's `status` (durable, but read from
/// the controller's store, which can lag behind tether's own status write) and the
/// reconciler's in-memory [`super::AppliedMemo`] (fresh, but lost on restart).
pub type Applied<'a> = (&'a str, Option<i64>);

/// The generation to record when the live copy is already what tether would apply, judged by
/// any one of the records; `None` means apply. Either record is trusted only through
/// [`copy_up_to_date`], so a copy edited by someone since (its generation moved) or applied
/// with other content is re-applied whichever record is stale.
pub fn already_applied(
    records: &[Option<Applied<'_>>],
    live: Option<&DynamicObject>,
    rendered: &Value,
    hash: &str,
    owner_uid: &str,
) -> Option<Option<i64>> {
    let live = live?;
    records.iter().flatten().find_map(|(h, generation)| {
        (*h == hash && copy_up_to_date(live, rendered, hash, *generation, owner_uid))
            .then_some(*generation)
    })
}

/// Sets `metadata.annotations[key]` on a rendered copy (whose `metadata` is an object);
/// annotations that are not an object (invalid anyway) are replaced.
pub(super) fn set_annotation(body: &mut Value, key: &str, value: &str) {
    let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let annotations = meta
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if !annotations.is_object() {
        *annotations = Value::Object(Map::new());
    }
    if let Some(a) = annotations.as_object_mut() {
        a.insert(key.to_string(), Value::String(value.to_string()));
    }
}

/// The `Ready` condition for these target entries.
pub fn ready_condition(
    targets: &[TargetStatus],
    extra_failures: &[String],
    namespace: &str,
    workload: &str,
    generation: Option<i64>,
) -> Condition {
    let failed: Vec<String> = targets
        .iter()
        .filter(|t| !t.applied)
        .map(|t| format!("{}: {}", t.deployment, t.message))
        .collect();
    let (status, reason, message) = if !failed.is_empty() || !extra_failures.is_empty() {
        let mut parts = Vec::new();
        if !failed.is_empty() {
            parts.push(format!(
                "{} of {} target(s) failed: {}",
                failed.len(),
                targets.len(),
                failed.join("; ")
            ));
        }
        parts.extend(extra_failures.iter().cloned());
        ("False", REASON_FAILED, parts.join("; "))
    } else if targets.is_empty() {
        (
            "False",
            REASON_NO_TARGETS,
            format!(
                "no Deployment in namespace {namespace} is labelled {WORKLOAD_LABEL}={workload}"
            ),
        )
    } else {
        (
            "True",
            REASON_APPLIED,
            format!("{} of {} target(s) applied", targets.len(), targets.len()),
        )
    };
    Condition {
        type_: "Ready".into(),
        status: status.into(),
        reason: reason.into(),
        message: crate::text::cut_bytes_marked(&message, 2048),
        last_transition_time: None,
        observed_generation: generation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn target() -> Target {
        Target {
            deployment: "web".into(),
            uid: "uid-1".into(),
            version: "v1".into(),
            match_labels: BTreeMap::from([("app".to_string(), "web".to_string())]),
        }
    }

    fn hpa(scale_target_ref: Value) -> Value {
        json!({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "ignored", "uid": "x", "resourceVersion": "9"},
            "spec": {"scaleTargetRef": scale_target_ref, "maxReplicas": 3},
            "status": {"currentReplicas": 1}
        })
    }

    // Golden: printf '%s' 'web/hpa/v1' | sha256sum | cut -c1-8  ->  b5cdef73
    const COPY_NAME: &str = "web-hpa-b5cdef73";

    #[rstest]
    #[case::null(Value::Null)]
    #[case::empty_object(json!({}))]
    // What a typed Go client writes for an unset ScaleTargetRef.
    #[case::typed_zero_value(json!({"kind": "", "name": ""}))]
    fn render_fills_the_scale_target_sentinel(#[case] sentinel: Value) {
        let out = render_copy(&hpa(sentinel), "hpa", "payments", "web", &target()).unwrap();
        assert_eq!(
            out["spec"]["scaleTargetRef"],
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"})
        );
        assert_eq!(out["metadata"]["name"], COPY_NAME);
        assert_eq!(out["metadata"]["namespace"], "payments");
        assert!(out.get("status").is_none());
        assert!(out["metadata"].get("uid").is_none());
        assert!(out["metadata"].get("resourceVersion").is_none());
        assert_eq!(out["metadata"]["labels"][ATTACHED_LABEL], "hpa");
        assert_eq!(out["metadata"]["labels"][VERSION_LABEL], "v1");
        assert_eq!(out["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    }

    #[test]
    fn render_keeps_an_explicit_scale_target() {
        let explicit = json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "other"});
        let out = render_copy(&hpa(explicit.clone()), "hpa", "payments", "web", &target()).unwrap();
        assert_eq!(out["spec"]["scaleTargetRef"], explicit);
    }

    #[rstest]
    #[case::not_an_object(json!([1]), RenderFailure::NotAnObject)]
    #[case::no_match_labels(
        json!({"kind": "PodDisruptionBudget", "spec": {"selector": {"matchLabels": {}}}}),
        RenderFailure::NoMatchLabels("web".into())
    )]
    fn render_failures(#[case] object: Value, #[case] want: RenderFailure) {
        let mut t = target();
        t.match_labels.clear();
        assert_eq!(
            render_copy(&object, "pdb", "payments", "web", &t),
            Err(want)
        );
    }

    // Golden values: the canonical text hashed with coreutils, e.g.
    // printf '%s' '{"a":1,"b":[true,null]}' | sha256sum
    #[rstest]
    #[case::keys_sorted(
        json!({"b": [true, null], "a": 1}),
        "1cc69c7fa23616ca2ec3ee70d24390a6225c8832db8a4c814c7e0e7f942f8668"
    )]
    #[case::integral_float_as_integer(
        json!({"replicas": 2.0}),
        "7beb3ba39c1d7ed5a349c65a1fe19dac1186e91ea8df92369d837b10c58f0a44"
    )]
    fn content_hash_golden(#[case] v: Value, #[case] want: &str) {
        assert_eq!(content_hash(&v), want);
    }

    fn live(hash: &str, generation: i64, owner: &str, version: &str) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {
                "name": COPY_NAME,
                "generation": generation,
                "annotations": {APPLIED_HASH_ANNOTATION: hash},
                "labels": {VERSION_LABEL: version},
                "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                    "uid": owner, "controller": true
                }]
            }
        }))
        .unwrap()
    }

    #[rstest]
    #[case::unchanged(live("h1", 4, "uid-1", "v1"), true)]
    #[case::other_hash(live("h0", 4, "uid-1", "v1"), false)]
    #[case::edited_by_someone(live("h1", 5, "uid-1", "v1"), false)]
    #[case::other_owner(live("h1", 4, "uid-2", "v1"), false)]
    #[case::label_changed(live("h1", 4, "uid-1", "v0"), false)]
    fn copy_up_to_date_table(#[case] live: DynamicObject, #[case] want: bool) {
        let rendered = json!({"metadata": {"labels": {VERSION_LABEL: "v1"}}});
        assert_eq!(
            copy_up_to_date(&live, &rendered, "h1", Some(4), "uid-1"),
            want
        );
    }

    // The status a reconcile reads can predate tether's own last apply (the store lags its
    // status write); the in-memory record then answers, and a stale one never hides drift.
    #[rstest]
    #[case::status_only(Some(("h1", Some(4))), None, Some(4), Some(Some(4)))]
    #[case::stale_status_fresh_memo(None, Some(("h1", Some(4))), Some(4), Some(Some(4)))]
    #[case::status_of_an_older_apply(Some(("h0", Some(3))), Some(("h1", Some(4))), Some(4), Some(Some(4)))]
    #[case::no_record(None, None, Some(4), None)]
    #[case::edited_since_both(Some(("h1", Some(4))), Some(("h1", Some(4))), Some(5), None)]
    #[case::memo_of_other_content(None, Some(("h0", Some(4))), Some(4), None)]
    #[case::no_live_copy(Some(("h1", Some(4))), Some(("h1", Some(4))), None, None)]
    fn already_applied_table(
        #[case] status: Option<Applied<'static>>,
        #[case] memo: Option<Applied<'static>>,
        #[case] live_generation: Option<i64>,
        #[case] want: Option<Option<i64>>,
    ) {
        let rendered = json!({"metadata": {"labels": {VERSION_LABEL: "v1"}}});
        let copy = live_generation.map(|g| live("h1", g, "uid-1", "v1"));
        assert_eq!(
            already_applied(&[status, memo], copy.as_ref(), &rendered, "h1", "uid-1"),
            want
        );
    }

    fn entry(deployment: &str, applied: bool) -> TargetStatus {
        TargetStatus {
            deployment: deployment.into(),
            applied,
            message: if applied {
                String::new()
            } else {
                "quota exceeded".into()
            },
            ..TargetStatus::default()
        }
    }

    #[rstest]
    #[case::no_targets(vec![], "False", REASON_NO_TARGETS,
        "no Deployment in namespace payments is labelled tether.dev/workload=web")]
    #[case::all_applied(vec![entry("a", true), entry("b", true)], "True", REASON_APPLIED,
        "2 of 2 target(s) applied")]
    #[case::one_failed(vec![entry("a", true), entry("b", false)], "False", REASON_FAILED,
        "1 of 2 target(s) failed: b: quota exceeded")]
    fn ready_condition_table(
        #[case] targets: Vec<TargetStatus>,
        #[case] status: &str,
        #[case] reason: &str,
        #[case] message: &str,
    ) {
        let c = ready_condition(&targets, &[], "payments", "web", Some(3));
        assert_eq!(
            (
                c.type_.as_str(),
                c.status.as_str(),
                c.reason.as_str(),
                c.message.as_str()
            ),
            ("Ready", status, reason, message)
        );
        assert_eq!(c.observed_generation, Some(3));
    }
}
