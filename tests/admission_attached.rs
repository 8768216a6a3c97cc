//! SPEC 5.1–5.3 end-to-end: the real server (standalone, with an RBAC file) over TLS, with
//! AdmissionReviews shaped exactly like the API server's.

mod common;

use base64::Engine;
use common::*;
use rstest::rstest;
use serde_json::{json, Value};

/// The shared RBAC fixture (also loaded by tests/adversarial.rs and the fuzz targets).
const RBAC: &str = include_str!("fixtures/rbac.yaml");

fn start(extra: &[&str]) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let rbac = dir.path().join("rbac.yaml");
    std::fs::write(&rbac, RBAC).unwrap();
    let mut args = vec!["--rbac-file", rbac.to_str().unwrap()];
    args.extend_from_slice(extra);
    (Server::start(&args), dir)
}

fn atr(name: &str, workload: &str, object: Value) -> Value {
    json!({
        "apiVersion": "tether.dev/v1alpha1",
        "kind": "AttachedResource",
        "metadata": {"name": name, "namespace": "payments", "uid": "11111111-2222-3333-4444-555555555555", "creationTimestamp": null},
        "spec": {"workloadRef": {"name": workload}, "object": object}
    })
}

fn hpa() -> Value {
    json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "spec": {"scaleTargetRef": {}, "minReplicas": 2, "maxReplicas": 10}
    })
}

fn atr_review(uid: &str, op: &str, obj: Option<Value>, old: Option<Value>) -> Value {
    review(
        uid,
        "tether.dev",
        "v1alpha1",
        "AttachedResource",
        "attachedresources",
        op,
        "payments",
        obj,
        old,
    )
}

async fn post(s: &Server, path: &str, body: &Value) -> Value {
    common::post(s, &format!("{path}?timeout=10s"), body).await
}

fn message(r: &Value) -> String {
    r["status"]["message"].as_str().unwrap_or("").to_string()
}

fn apply_patch(obj: &Value, resp: &Value) -> Value {
    assert_eq!(resp["patchType"], "JSONPatch");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(resp["patch"].as_str().unwrap())
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&raw).unwrap();
    let mut out = obj.clone();
    json_patch::patch(&mut out, &patch).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_create_is_allowed_labelled_and_audited() {
    let (s, _d) = start(&[]);
    let obj = atr("worker-hpa", "payments-worker", hpa());
    let mut rv = atr_review("c1", "CREATE", Some(obj.clone()), None);
    rv["request"]["userInfo"]["groups"] = json!(["devs", "system:authenticated"]);
    let v = post(&s, "/validate", &rv).await;
    assert_eq!(v["allowed"], true, "{v}");
    assert_eq!(v["auditAnnotations"]["decision"], "allowed");
    assert!(v.get("patch").is_none());

    let m = post(&s, "/mutate", &rv).await;
    assert_eq!(m["allowed"], true);
    let patched = apply_patch(&obj, &m);
    let mut want = obj.clone();
    want["metadata"]["labels"] = json!({"tether.dev/workload": "payments-worker"});
    assert_eq!(patched, want);
    let warnings: Vec<&str> = m["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("tether.dev/workload=payments-worker")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("access reviews from --rbac-file")),
        "{warnings:?}"
    );

    // dryRun is answered exactly like a real request.
    rv["request"]["dryRun"] = json!(true);
    let dry = post(&s, "/validate", &rv).await;
    assert_eq!(dry, v);
    // Existing labels: the patch adds one key, escaping the '/' per RFC 6901.
    let mut labelled = obj.clone();
    labelled["metadata"]["labels"] = json!({"team": "payments"});
    let rv = atr_review("c2", "CREATE", Some(labelled.clone()), None);
    let m = post(&s, "/mutate", &rv).await;
    let patched = apply_patch(&labelled, &m);
    assert_eq!(
        patched["metadata"]["labels"],
        json!({"team": "payments", "tether.dev/workload": "payments-worker"})
    );
}

/// One case per rule: (object, expected code, fragments that must all appear).
#[rstest]
#[case::not_an_object(json!("not an object"), 400, &["spec.object:"])]
#[case::no_api_version(
    json!({"kind": "HorizontalPodAutoscaler"}),
    400,
    &["spec.object.apiVersion:"]
)]
#[case::no_kind(json!({"apiVersion": "autoscaling/v2"}), 400, &["spec.object.kind:"])]
#[case::name_and_namespace_set(
    json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "x", "namespace": "y"}, "spec": {"maxReplicas": 2}}),
    403,
    &[
        "spec.object.metadata.name: must not be set",
        "spec.object.metadata.namespace: must not be set",
    ]
)]
#[case::banned_kind(
    json!({"apiVersion": "apps/v1", "kind": "Deployment"}),
    403,
    &["spec.object.kind:", "\"Deployment\"", "--banned-kinds (env BANNED_KINDS)"]
)]
// The ban is case-insensitive; discovery is not, and says what was meant.
#[case::banned_kind_lowercase(
    json!({"apiVersion": "apps/v1", "kind": "deployment"}),
    400,
    &[
        "\"deployment\" may not be attached",
        "--banned-kinds",
        "did you mean kind \"Deployment\"",
    ]
)]
#[case::min_replicas_zero(
    json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "spec": {"minReplicas": 0, "maxReplicas": 3}}),
    403,
    &["spec.object.spec.minReplicas: must not be 0"]
)]
#[case::scale_target_ref_set(
    json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "spec": {"scaleTargetRef": {"name": "web"}, "maxReplicas": 3}}),
    403,
    &["spec.object.spec.scaleTargetRef:", "{}", "remove it"]
)]
#[case::match_labels_set(
    json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "spec": {"selector": {"matchLabels": {"app": "x"}}}}),
    403,
    &["spec.object.spec.selector.matchLabels:"]
)]
#[case::unknown_placeholder(
    json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"labels": {"v": "{{ .Nope }}"}}, "spec": {"maxReplicas": 3}}),
    400,
    &["spec.object.metadata.labels.v:", "{{ .Nope }}", "{{ .DeploymentName }}"]
)]
#[case::unknown_kind(
    json!({"apiVersion": "example.com/v1", "kind": "Widget"}),
    400,
    &["spec.object.kind:", "\"Widget\"", "\"example.com/v1\""]
)]
#[case::cluster_scoped_kind(
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole"}),
    403,
    &["spec.object.kind: ClusterRole", "cluster-scoped"]
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_is_enforced_with_field_paths(
    #[case] object: Value,
    #[case] code: u16,
    #[case] fragments: &[&str],
) {
    let (s, _d) = start(&[]);
    let mut rv = atr_review("r1", "CREATE", Some(atr("a", "w", object.clone())), None);
    rv["request"]["userInfo"]["groups"] = json!(["devs"]);
    let v = post(&s, "/validate", &rv).await;
    assert_eq!(v["allowed"], false, "{object}: {v}");
    assert_eq!(v["status"]["code"], code, "{object}: {v}");
    assert_eq!(
        v["status"]["reason"],
        if code == 400 {
            "BadRequest"
        } else {
            "Forbidden"
        }
    );
    assert_eq!(v["auditAnnotations"]["decision"], "denied");
    let msg = message(&v);
    for f in fragments {
        assert!(msg.contains(f), "{f:?} not in {msg:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_violation_is_listed_and_workload_ref_is_required() {
    let (s, _d) = start(&[]);
    // Every violation is listed, not only the first.
    let object = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "fixed"},
        "spec": {"minReplicas": 0, "scaleTargetRef": {"name": "x"}}
    });
    let v = post(
        &s,
        "/validate",
        &atr_review("multi", "CREATE", Some(atr("a", "w", object)), None),
    )
    .await;
    let msg = message(&v);
    for f in [
        "spec.object.kind:",
        "spec.object.metadata.name:",
        "spec.object.spec.minReplicas:",
        "spec.object.spec.scaleTargetRef:",
    ] {
        assert!(msg.contains(f), "{f} missing from {msg}");
    }
    assert_eq!(msg.matches("; spec.").count(), 3, "{msg}");
    // workloadRef.name is required.
    let mut no_ref = atr("a", "w", hpa());
    no_ref["spec"]
        .as_object_mut()
        .unwrap()
        .remove("workloadRef");
    let v = post(
        &s,
        "/validate",
        &atr_review("noref", "CREATE", Some(no_ref), None),
    )
    .await;
    assert!(message(&v).contains("spec.workloadRef.name"), "{v}");
}

/// An AttachedResource whose template was built from a typed Go HPA: a client that
/// leaves `ScaleTargetRef` unset serialises its zero value `{"kind":"","name":""}`, and the
/// API server keeps it as is under `spec.object` (preserve-unknown-fields). It means "tether
/// fills this in", like `{}` and `null`: allowed, and the mutating webhook adds only the
/// workload label (the reference is filled in per copy by the controller).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_zero_value_scale_target_ref_in_a_template_is_allowed() {
    let (s, _d) = start(&[]);
    let object = json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "spec": {"scaleTargetRef": {"kind": "", "name": ""}, "minReplicas": 2, "maxReplicas": 10}
    });
    let mut rv = atr_review("tz1", "CREATE", Some(atr("a", "w", object.clone())), None);
    rv["request"]["userInfo"]["groups"] = json!(["devs"]);
    let v = post(&s, "/validate", &rv).await;
    assert_eq!(v["allowed"], true, "{v}");
    let v = post(&s, "/mutate", &rv).await;
    assert_eq!(v["allowed"], true, "{v}");
    let patched = apply_patch(&atr("a", "w", object.clone()), &v);
    assert_eq!(
        patched["spec"]["object"], object,
        "the template is left as written"
    );
    assert_eq!(patched["metadata"]["labels"]["tether.dev/workload"], "w");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_list_mode_still_applies_the_deny_list() {
    let (s, _d) = start(&["--allowed-kinds", "HorizontalPodAutoscaler,Pod"]);
    let mut ok = atr_review("a1", "CREATE", Some(atr("a", "w", hpa())), None);
    ok["request"]["userInfo"]["groups"] = json!(["devs"]);
    assert_eq!(post(&s, "/validate", &ok).await["allowed"], true);
    let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "spec": {"maxUnavailable": 1}});
    let v = post(
        &s,
        "/validate",
        &atr_review("a2", "CREATE", Some(atr("a", "w", pdb)), None),
    )
    .await;
    assert!(
        message(&v).contains("--allowed-kinds (env ALLOWED_KINDS)"),
        "{v}"
    );
    let pod = json!({"apiVersion": "v1", "kind": "Pod"});
    let v = post(
        &s,
        "/validate",
        &atr_review("a3", "CREATE", Some(atr("a", "w", pod)), None),
    )
    .await;
    assert!(message(&v).contains("--banned-kinds"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_identities_are_checked_and_named() {
    let (s, _d) = start(&[]);
    // bob has no binding at all.
    let mut rv = atr_review("u1", "CREATE", Some(atr("a", "w", hpa())), None);
    rv["request"]["userInfo"]["username"] = json!("bob");
    rv["request"]["userInfo"]["groups"] = json!(["system:authenticated"]);
    let v = post(&s, "/validate", &rv).await;
    assert_eq!(v["status"]["code"], 403);
    assert!(message(&v).starts_with("user \"bob\" may not create horizontalpodautoscalers.autoscaling in namespace \"payments\""), "{v}");
    assert_eq!(v["auditAnnotations"]["reason"], "access_denied");
    // alice may manage NetworkPolicies, tether's service account may not: all four verbs named.
    let np = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "spec": {"podSelector": {}}});
    let mut rv = atr_review("u2", "CREATE", Some(atr("a", "w", np)), None);
    rv["request"]["userInfo"]["groups"] = json!(["devs"]);
    let v = post(&s, "/validate", &rv).await;
    let msg = message(&v);
    assert_eq!(v["status"]["code"], 403, "{v}");
    assert!(!msg.contains("user \"alice\""), "{msg}");
    for verb in ["create", "patch", "get", "delete"] {
        let f = format!("tether's service account \"system:serviceaccount:tether-system:tether\" may not {verb} networkpolicies.networking.k8s.io in namespace \"payments\"");
        assert!(msg.contains(&f), "{f} not in {msg}");
    }
    assert!(msg.contains("attachableKinds"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_and_delete_follow_the_api_servers_shapes() {
    let (s, _d) = start(&[]);
    let old = atr("a", "payments-worker", hpa());
    // UPDATE that changes workloadRef.name is refused.
    let new = atr("a", "other-workload", hpa());
    let mut rv = atr_review("up1", "UPDATE", Some(new), Some(old.clone()));
    rv["request"]["userInfo"]["groups"] = json!(["devs"]);
    let v = post(&s, "/validate", &rv).await;
    assert_eq!(v["allowed"], false);
    assert!(message(&v).contains("spec.workloadRef.name"), "{v}");
    assert!(message(&v).contains("immutable"), "{v}");
    // A legitimate UPDATE checks the user's `update` verb: a user with create only is denied.
    let mut changed = old.clone();
    changed["spec"]["object"]["spec"]["maxReplicas"] = json!(20);
    let mut rv = atr_review("up2", "UPDATE", Some(changed.clone()), Some(old.clone()));
    rv["request"]["userInfo"]["groups"] = json!(["devs"]);
    assert_eq!(post(&s, "/validate", &rv).await["allowed"], true);
    rv["request"]["userInfo"]["groups"] = json!(["nobody"]);
    let v = post(&s, "/validate", &rv).await;
    assert!(
        message(&v).contains("may not update horizontalpodautoscalers.autoscaling"),
        "{v}"
    );
    // DELETE: object is null, oldObject carries the object; the user needs `delete`.
    let mut rv = atr_review("del1", "DELETE", None, Some(old.clone()));
    rv["request"]["userInfo"]["groups"] = json!(["devs"]);
    let v = post(&s, "/validate", &rv).await;
    assert_eq!(v["allowed"], true, "{v}");
    rv["request"]["userInfo"]["groups"] = json!(["nobody"]);
    let v = post(&s, "/validate", &rv).await;
    assert_eq!(v["allowed"], false);
    assert!(
        message(&v).contains(
            "may not delete horizontalpodautoscalers.autoscaling in namespace \"payments\""
        ),
        "{v}"
    );
    // Metadata-only UPDATE (the controller adding its finalizer) attaches nothing new.
    let mut fin = old.clone();
    fin["metadata"]["finalizers"] = json!(["tether.dev/cleanup"]);
    let rv = atr_review("up3", "UPDATE", Some(fin), Some(old));
    let v = post(&s, "/validate", &rv).await;
    assert_eq!(v["allowed"], true, "{v}");
}

/// A labelled HPA whose `scaleTargetRef` the user left out or wrote as `null` gets it filled
/// in. What the mutating webhook really receives for `scaleTargetRef: null` is the typed
/// zero value `{"kind":"","name":""}`: the API server decodes HPAs into Go structs, and
/// `scaleTargetRef` is a non-pointer struct whose `kind` and `name` have no omitempty. The
/// literal `null` case is kept to pin the documented sentinel, though a real API server never
/// sends it for an HPA.
#[rstest]
#[case::typed_zero_value_as_the_api_server_sends_it(json!({"kind": "", "name": ""}))]
#[case::null_never_sent_by_the_api_server_for_an_hpa(json!(null))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labelled_hpa_gets_its_scale_target_ref(#[case] scale_target_ref: Value) {
    let (s, _d) = start(&[]);
    let obj = json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"tether.dev/target": "web"}},
        "spec": {"scaleTargetRef": scale_target_ref, "minReplicas": 1, "maxReplicas": 4}
    });
    let rv = review(
        "p1",
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "CREATE",
        "shop",
        Some(obj.clone()),
        None,
    );
    let v = post(&s, "/mutate", &rv).await;
    assert_eq!(v["allowed"], true, "{v}");
    let patched = apply_patch(&obj, &v);
    assert_eq!(
        patched["spec"]["scaleTargetRef"],
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"})
    );
    assert!(
        v["warnings"][0]
            .as_str()
            .unwrap()
            .contains("spec.scaleTargetRef"),
        "{v}"
    );
    let m = s.metrics();
    assert_eq!(metric_value(&m, INJECTED_HPAS), Some(1.0), "{m}");
}

const INJECTED_HPAS: &str = r#"tether_admission_requests_total{decision="allowed",kind="HorizontalPodAutoscaler",operation="CREATE",reason="injected",webhook="mutate"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labelled_pdb_needs_the_deployment_and_unlabelled_objects_are_left_alone() {
    let (s, _d) = start(&[]);
    // A PDB needs the Deployment's selector; standalone has no cluster to read it from.
    let pdb = json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"tether.dev/target": "web"}},
        "spec": {"minAvailable": 1}
    });
    let rv = review(
        "p2",
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        "CREATE",
        "shop",
        Some(pdb),
        None,
    );
    let v = post(&s, "/mutate", &rv).await;
    assert_eq!(v["allowed"], false);
    assert!(message(&v).contains("\"shop/web\""), "{v}");
    // Unlabelled objects are left alone. (An input the API server never sends: it decodes
    // HPAs into Go structs, so `spec` would carry `scaleTargetRef: {"kind":"","name":""}`,
    // `maxReplicas: 0` and defaults. Without the label the spec is never looked at.)
    let plain = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "x"}, "spec": {}});
    let rv = review(
        "p3",
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "CREATE",
        "shop",
        Some(plain),
        None,
    );
    let v = post(&s, "/mutate", &rv).await;
    assert_eq!(v["allowed"], true);
    assert!(v.get("patch").is_none());
    let m = s.metrics();
    assert_eq!(
        metric_value(&m, INJECTED_HPAS).unwrap_or(0.0),
        0.0,
        "nothing was injected: {m}"
    );
}

/// Issue 11 defect 8 (SPEC 5.1.8): tether's own access review covers every verb the
/// controller uses on copies — create and patch (server-side apply), get, list (finding
/// existing copies) and delete — so admission never accepts an object the controller could
/// not reconcile. Here tether's account may do everything but `list` on HPAs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tethers_own_review_covers_every_verb_the_controller_uses() {
    const NO_LIST: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: attachable-no-list}
rules:
  - apiGroups: [autoscaling]
    resources: [horizontalpodautoscalers]
    verbs: [create, update, patch, get, watch, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: tether-attachable}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: attachable-no-list}
subjects:
  - {kind: ServiceAccount, name: tether, namespace: tether-system}
  - {kind: Group, apiGroup: rbac.authorization.k8s.io, name: devs}
"#;
    let dir = tempfile::tempdir().unwrap();
    let rbac = dir.path().join("rbac.yaml");
    std::fs::write(&rbac, NO_LIST).unwrap();
    let s = Server::start(&["--rbac-file", rbac.to_str().unwrap()]);
    let mut rv = atr_review("verbs1", "CREATE", Some(atr("a", "w", hpa())), None);
    rv["request"]["userInfo"]["groups"] = json!(["devs"]);
    let v = post(&s, "/validate", &rv).await;
    assert_eq!(v["allowed"], false, "{v}");
    assert_eq!(v["status"]["code"], 403, "{v}");
    let msg = message(&v);
    assert!(
        msg.contains("tether's service account \"system:serviceaccount:tether-system:tether\" may not list horizontalpodautoscalers.autoscaling in namespace \"payments\""),
        "{msg}"
    );
    for verb in ["create", "patch", "get", "delete"] {
        assert!(
            !msg.contains(&format!("may not {verb} ")),
            "{verb} is granted, so it must not be named: {msg}"
        );
    }
}
