//! Issue 12, part 1, end to end: reconcile-time policy. tether's real `serve` runs as its
//! service account under the chart's RBAC behind the faithful fake API server, which calls
//! tether's webhooks as the chart registers them (skipping kube-system and tether-system).
//!
//! - the kube-system reproduction: no copy, no write in a namespace the webhooks skip;
//! - an AttachedResource stored without a review: PolicyDenied/NotAdmitted, no copies, until
//!   an annotate sends it through the webhooks;
//! - key rotation: {k1} → {k1,k2} → {k2} (StampKeyRetired, copies left alone) → re-annotate;
//! - a policy change (ban list) applies at the next reconcile, with Event and metric;
//! - tether's own access revoked: PolicyDenied/TetherForbidden, not an apply loop.

mod common;
#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;
#[path = "support/tether_cluster.rs"]
mod tether_cluster;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{metric_value, Server};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{json, Value};
use tether_cluster::*;

const NS: &str = "payments";
const RECONCILED: &str = r#"tether_reconcile_total{controller="attached",result="success"}"#;
const FLAGS: &[&str] = &[
    "--controllers",
    "attached",
    "--leader-elect",
    "false",
    "--resync-interval",
    "1s",
];
const KEY1: &str = "k1-secret-0123456789abcdef0123456789abcdef";
const KEY2: &str = "k2-secret-0123456789abcdef0123456789abcdef";

fn atrs(client: kube::Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client,
        ns,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("tether.dev", "v1alpha1", "AttachedResource"),
            "attachedresources",
        ),
    )
}

fn deployment(ns: &str, name: &str, workload: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": {"tether.dev/workload": workload}},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}}
    })
}

fn hpa_atr(name: &str, workload: &str, scale_target: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "tether.dev/v1alpha1", "kind": "AttachedResource",
        "metadata": {"name": name},
        "spec": {"workloadRef": {"name": workload},
                 "object": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                            "spec": {"scaleTargetRef": scale_target, "minReplicas": 1, "maxReplicas": 3}}}
    }))
    .unwrap()
}

async fn wait_for(what: &str, c: &TetherCluster, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; tether log:\n{}",
            c.tether.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn reconciled(c: &TetherCluster) -> f64 {
    metric_value(&c.tether.metrics(), RECONCILED).unwrap_or(0.0)
}

async fn reconciles(c: &TetherCluster, n: f64, what: &str) {
    let start = reconciled(c);
    wait_for(what, c, || reconciled(c) >= start + n).await;
}

fn stored(c: &TetherCluster, ns: &str, name: &str) -> Value {
    c.fake
        .get(
            "tether.dev",
            "v1alpha1",
            "attachedresources",
            Some(ns),
            name,
        )
        .unwrap_or(Value::Null)
}

/// (status, reason, message) of condition `type_`.
fn condition(
    c: &TetherCluster,
    ns: &str,
    name: &str,
    type_: &str,
) -> Option<(String, String, String)> {
    stored(c, ns, name)["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|x| x["type"] == type_)
        .map(|x| {
            (
                x["status"].as_str().unwrap_or_default().to_string(),
                x["reason"].as_str().unwrap_or_default().to_string(),
                x["message"].as_str().unwrap_or_default().to_string(),
            )
        })
}

fn is_ready(c: &TetherCluster, ns: &str, name: &str) -> bool {
    condition(c, ns, name, "Ready").is_some_and(|(s, _, _)| s == "True")
        && condition(c, ns, name, "PolicyDenied").is_none()
}

fn denied_with(c: &TetherCluster, ns: &str, name: &str, reason: &str) -> bool {
    condition(c, ns, name, "PolicyDenied").is_some_and(|(s, r, _)| s == "True" && r == reason)
        && condition(c, ns, name, "Ready").is_some_and(|(s, r, _)| s == "False" && r == reason)
}

fn hpas_in(c: &TetherCluster, ns: &str) -> Vec<Value> {
    c.fake
        .list_all("horizontalpodautoscalers")
        .into_iter()
        .filter(|h| h["metadata"]["namespace"] == ns)
        .collect()
}

/// Writes tether made to paths under `/namespaces/<ns>/`.
fn tether_writes_in(c: &TetherCluster, ns: &str) -> Vec<String> {
    let needle = format!("/namespaces/{ns}/");
    c.fake
        .writes()
        .into_iter()
        .filter(|r| r.user == TETHER_USER && r.path.contains(&needle))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

fn denied_metric(c: &TetherCluster, reason: &str) -> f64 {
    metric_value(
        &c.tether.metrics(),
        &format!(r#"tether_policy_denied_total{{controller="attached",reason="{reason}"}}"#),
    )
    .unwrap_or(0.0)
}

fn warning_events_for(c: &TetherCluster, name: &str, reason: &str) -> usize {
    c.fake
        .list_all("events")
        .into_iter()
        .filter(|e| {
            e["type"] == "Warning"
                && e["reason"] == reason
                && (e["regarding"]["name"] == name || e["involvedObject"]["name"] == name)
        })
        .count()
}

fn keys_dir(dir: &Path, keys: &[(&str, &str)]) -> String {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    for (id, k) in keys {
        std::fs::write(dir.join(id), k).unwrap();
    }
    dir.display().to_string()
}

/// Stops tether and starts it again with `extra` (after the usual identity flags), pointing
/// the webhooks at the new process.
fn restart(c: &mut TetherCluster, extra: &[&str]) {
    let _ = c.tether.child.kill();
    let _ = c.tether.child.wait();
    let mut args = vec![
        "--pod-namespace",
        TETHER_NAMESPACE,
        "--service-account-name",
        TETHER_SA,
        "--pod-name",
        "tether-0",
    ];
    args.extend_from_slice(extra);
    c.tether = tokio::task::block_in_place(|| {
        Server::start_cluster_with_dns(&c.sa_kubeconfig, &[WEBHOOK_DNS], &args)
    });
    register_webhooks(&c.fake, &c.tether.ca, c.tether.addr);
}

async fn annotate_review(c: &TetherCluster, name: &str) {
    atrs(c.alice().await, NS)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"tether.dev/review": "2026-11-30T15:00:00Z"}}}),
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("annotate {name}: {e}\n{}", c.tether.logs()));
}

fn stamp_of(c: &TetherCluster, name: &str) -> String {
    stored(c, NS, name)["metadata"]["annotations"]["tether.dev/admitted"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The issue's reproduction: alice may manage AttachedResources in kube-system; the webhooks
/// skip kube-system, so her AttachedResource pointing a fixed scaleTargetRef at coredns
/// (forbidden by 5.1.5) is stored unreviewed. tether must create nothing there and write
/// nothing there, across resyncs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_system_attached_resources_get_no_copies_and_no_writes() {
    let c = TetherCluster::start(FLAGS).await;
    c.add_namespace(NS);
    c.fake.insert(deployment("kube-system", "coredns", "dns"));
    c.fake.insert(deployment(NS, "worker-v1", "worker"));
    c.fake.clear_admission_calls();
    atrs(c.alice().await, "kube-system")
        .create(
            &PostParams::default(),
            &hpa_atr(
                "hijack",
                "dns",
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "coredns"}),
            ),
        )
        .await
        .expect("kube-system is not reviewed, so the create is stored");
    assert!(
        c.fake.admission_calls().is_empty(),
        "the webhooks must skip kube-system: {:?}",
        c.fake
            .admission_calls()
            .iter()
            .map(|a| &a.url)
            .collect::<Vec<_>>()
    );
    // A control in a reviewed namespace proves the controller is running and reconciling.
    atrs(c.alice().await, NS)
        .create(
            &PostParams::default(),
            &hpa_atr("scaler", "worker", json!({})),
        )
        .await
        .unwrap();
    wait_for("payments/scaler Ready", &c, || is_ready(&c, NS, "scaler")).await;
    // Several resync rounds (both objects requeue every second).
    reconciles(&c, 6.0, "resyncs").await;
    assert_eq!(hpas_in(&c, NS).len(), 1);
    assert_eq!(hpas_in(&c, "kube-system"), Vec::<Value>::new());
    assert_eq!(tether_writes_in(&c, "kube-system"), Vec::<String>::new());
    let hijack = stored(&c, "kube-system", "hijack");
    assert_eq!(hijack["status"], Value::Null, "{hijack}");
    assert_eq!(hijack["metadata"]["finalizers"], Value::Null, "{hijack}");
}

/// Stored while the webhooks were not called (inserted straight into the store, as an
/// outage under failurePolicy Ignore would leave it): refused, no copies; an annotate goes
/// through the webhooks, gets the full review and a stamp, and the copies follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreviewed_attached_resource_is_refused_until_re_reviewed() {
    let c = TetherCluster::start(FLAGS).await;
    c.add_namespace(NS);
    c.fake.insert(deployment(NS, "worker-v1", "worker"));
    let mut raw = serde_json::to_value(hpa_atr("scaler", "worker", json!({}))).unwrap();
    raw["metadata"]["namespace"] = json!(NS);
    c.fake.insert(raw);
    wait_for("PolicyDenied/NotAdmitted", &c, || {
        denied_with(&c, NS, "scaler", "NotAdmitted")
    })
    .await;
    let (_, _, message) = condition(&c, NS, "scaler", "PolicyDenied").unwrap();
    assert!(message.contains("never reviewed"), "{message}");
    assert!(
        message.contains("tether.dev/review=<now> --overwrite"),
        "{message}"
    );
    assert!(message.ends_with("; no copies exist"), "{message}");
    reconciles(&c, 2.0, "resyncs while refused").await;
    assert_eq!(hpas_in(&c, NS), Vec::<Value>::new());
    assert!(denied_metric(&c, "NotAdmitted") >= 1.0);
    assert!(warning_events_for(&c, "scaler", "PolicyDenied") >= 1);

    annotate_review(&c, "scaler").await;
    assert!(stamp_of(&c, "scaler").starts_with("v1:k1:"));
    wait_for("Ready after the review", &c, || is_ready(&c, NS, "scaler")).await;
    assert_eq!(hpas_in(&c, NS).len(), 1);
}

/// Keys {k1} → {k1,k2}: old stamps verify, new admissions are signed k2. → {k2}: the k1
/// object is refused (StampKeyRetired) and its copy is left exactly as it was. A re-annotate
/// restamps it with k2 and it is served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_keeps_old_stamps_until_the_key_is_retired() {
    let dir = tempfile::tempdir().unwrap();
    let k1 = keys_dir(&dir.path().join("a"), &[("k1", KEY1)]);
    let mut flags = FLAGS.to_vec();
    flags.extend(["--admission-keys", k1.as_str()]);
    let mut c = TetherCluster::start(&flags).await;
    c.add_namespace(NS);
    c.fake.insert(deployment(NS, "worker-v1", "worker"));
    atrs(c.alice().await, NS)
        .create(
            &PostParams::default(),
            &hpa_atr("scaler", "worker", json!({})),
        )
        .await
        .unwrap();
    wait_for("scaler Ready", &c, || is_ready(&c, NS, "scaler")).await;
    assert!(stamp_of(&c, "scaler").starts_with("v1:k1:"));

    let both = keys_dir(&dir.path().join("b"), &[("k1", KEY1), ("k2", KEY2)]);
    let mut flags = FLAGS.to_vec();
    flags.extend(["--admission-keys", both.as_str()]);
    restart(&mut c, &flags);
    atrs(c.alice().await, NS)
        .create(
            &PostParams::default(),
            &hpa_atr("scaler2", "worker", json!({})),
        )
        .await
        .unwrap();
    assert!(stamp_of(&c, "scaler2").starts_with("v1:k2:"));
    wait_for("scaler2 Ready", &c, || is_ready(&c, NS, "scaler2")).await;
    reconciles(&c, 4.0, "resyncs under {k1,k2}").await;
    assert!(is_ready(&c, NS, "scaler"), "{}", stored(&c, NS, "scaler"));
    let copy_before = hpas_in(&c, NS)
        .into_iter()
        .find(|h| h["metadata"]["labels"]["tether.dev/attached-resource"] == "scaler")
        .expect("scaler's copy");

    let only2 = keys_dir(&dir.path().join("c"), &[("k2", KEY2)]);
    let mut flags = FLAGS.to_vec();
    flags.extend(["--admission-keys", only2.as_str()]);
    restart(&mut c, &flags);
    wait_for("scaler StampKeyRetired", &c, || {
        denied_with(&c, NS, "scaler", "StampKeyRetired")
    })
    .await;
    let (_, _, message) = condition(&c, NS, "scaler", "PolicyDenied").unwrap();
    assert!(
        message.contains("1 existing copy left in place"),
        "{message}"
    );
    reconciles(&c, 4.0, "resyncs under {k2}").await;
    let copy_after = hpas_in(&c, NS)
        .into_iter()
        .find(|h| h["metadata"]["labels"]["tether.dev/attached-resource"] == "scaler")
        .expect("scaler's copy is left in place");
    assert_eq!(
        copy_after["metadata"]["resourceVersion"],
        copy_before["metadata"]["resourceVersion"]
    );
    assert!(is_ready(&c, NS, "scaler2"));

    annotate_review(&c, "scaler").await;
    assert!(stamp_of(&c, "scaler").starts_with("v1:k2:"));
    wait_for("scaler Ready again", &c, || is_ready(&c, NS, "scaler")).await;
}

/// The audit: an admitted HPA AttachedResource with a copy; tether restarts with
/// HorizontalPodAutoscaler banned → refused at the next reconcile, with a Warning Event and
/// the metric, and the copy left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tightened_ban_list_applies_at_the_next_reconcile() {
    let mut c = TetherCluster::start(FLAGS).await;
    c.add_namespace(NS);
    c.fake.insert(deployment(NS, "worker-v1", "worker"));
    c.fake.insert(deployment(NS, "worker-v2", "worker"));
    atrs(c.alice().await, NS)
        .create(
            &PostParams::default(),
            &hpa_atr("scaler", "worker", json!({})),
        )
        .await
        .unwrap();
    wait_for("scaler Ready", &c, || is_ready(&c, NS, "scaler")).await;
    let before: Vec<Value> = hpas_in(&c, NS)
        .iter()
        .map(|h| h["metadata"]["resourceVersion"].clone())
        .collect();
    assert_eq!(before.len(), 2);

    let mut flags = FLAGS.to_vec();
    flags.extend(["--banned-kinds", "Pod,HorizontalPodAutoscaler"]);
    restart(&mut c, &flags);
    wait_for("scaler KindNotAllowed", &c, || {
        denied_with(&c, NS, "scaler", "KindNotAllowed")
    })
    .await;
    let (_, _, message) = condition(&c, NS, "scaler", "PolicyDenied").unwrap();
    assert!(message.contains("spec.object.kind"), "{message}");
    assert!(
        message.ends_with("2 existing copies left in place, not updated"),
        "{message}"
    );
    wait_for("a Warning Event", &c, || {
        warning_events_for(&c, "scaler", "PolicyDenied") >= 1
    })
    .await;
    reconciles(&c, 3.0, "resyncs while refused").await;
    assert!(denied_metric(&c, "KindNotAllowed") >= 2.0);
    let after: Vec<Value> = hpas_in(&c, NS)
        .iter()
        .map(|h| h["metadata"]["resourceVersion"].clone())
        .collect();
    assert_eq!(after, before, "the copies must be left untouched");
    // Refused and unchanged: no status write per resync either.
    c.fake.clear_requests();
    reconciles(&c, 3.0, "more resyncs").await;
    assert_eq!(tether_writes_in(&c, NS), Vec::<String>::new());
}

/// tether's own `delete` on HPAs revoked in the ClusterRole: refused with TetherForbidden
/// (naming the verb), not a failing apply loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_tether_access_is_a_policy_denial() {
    let mut flags = FLAGS.to_vec();
    flags.extend(["--access-review-cache-ttl", "0s"]);
    let c = TetherCluster::start(&flags).await;
    c.add_namespace(NS);
    c.fake.insert(deployment(NS, "worker-v1", "worker"));
    // Admitted while tether holds every verb; then `delete` on HPAs is revoked.
    let mut granted = c
        .fake
        .get(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            None,
            "tether",
        )
        .expect("the chart's ClusterRole");
    atrs(c.alice().await, NS)
        .create(
            &PostParams::default(),
            &hpa_atr("scaler", "worker", json!({})),
        )
        .await
        .unwrap();
    wait_for("scaler Ready", &c, || is_ready(&c, NS, "scaler")).await;
    for rule in granted["rules"].as_array_mut().unwrap() {
        if rule["apiGroups"] == json!(["autoscaling"]) {
            rule["verbs"] = json!(["create", "get", "list", "patch"]);
        }
    }
    c.fake.insert(granted);
    wait_for("scaler TetherForbidden", &c, || {
        denied_with(&c, NS, "scaler", "TetherForbidden")
    })
    .await;
    let (_, _, message) = condition(&c, NS, "scaler", "PolicyDenied").unwrap();
    assert!(
        message.contains(
            "may not delete horizontalpodautoscalers.autoscaling in namespace \"payments\""
        ),
        "{message}"
    );
    assert!(
        message.contains("1 existing copy left in place"),
        "{message}"
    );
    assert!(denied_metric(&c, "TetherForbidden") >= 1.0);
    assert_eq!(hpas_in(&c, NS).len(), 1);
}

/// The same for AppDomains: one stored in kube-system (never reviewed) naming another
/// install's domain gets no ClusterDomainClaim, no DomainMapping and no write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_system_appdomains_claim_and_map_nothing() {
    let fake = fake_with_chart_rbac().await;
    fake.add_knative_resources();
    let c = TetherCluster::start_on(
        fake,
        &[
            "--controllers",
            "domains",
            "--leader-elect",
            "false",
            "--resync-interval",
            "1s",
            "--domain-root",
            "apps.example.com",
            "--auto-create-domain-claims",
        ],
    )
    .await;
    c.fake.insert(json!({
        "apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "metadata": {"name": "runner", "namespace": "kube-system"}
    }));
    c.fake.clear_admission_calls();
    let api: Api<DynamicObject> = Api::namespaced_with(
        c.admin().await,
        "kube-system",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("tether.dev", "v1alpha1", "AppDomain"),
            "appdomains",
        ),
    );
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "apiVersion": "tether.dev/v1alpha1", "kind": "AppDomain",
            "metadata": {"name": "hijack", "namespace": "kube-system"},
            "spec": {"tenantId": "t", "extensionId": "e", "serviceRef": {"name": "runner"},
                     "domain": "shop.apps.example.com"}
        }))
        .unwrap(),
    )
    .await
    .expect("kube-system is not reviewed, so the create is stored");
    assert!(
        c.fake.admission_calls().is_empty(),
        "the webhooks must skip kube-system"
    );
    let domains = r#"tether_reconcile_total{controller="domains",result="success"}"#;
    let passes = || metric_value(&c.tether.metrics(), domains).unwrap_or(0.0);
    wait_for("three domains reconciles", &c, || passes() >= 3.0).await;
    assert_eq!(tether_writes_in(&c, "kube-system"), Vec::<String>::new());
    assert!(c.fake.list_all("clusterdomainclaims").is_empty());
    assert!(c.fake.list_all("domainmappings").is_empty());
    let stored = c
        .fake
        .get(
            "tether.dev",
            "v1alpha1",
            "appdomains",
            Some("kube-system"),
            "hijack",
        )
        .expect("stored");
    assert_eq!(stored["status"], Value::Null, "{stored}");
    assert_eq!(stored["metadata"]["finalizers"], Value::Null, "{stored}");
}
