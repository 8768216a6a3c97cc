//! End to end through the admission chain: tether's real `serve` (cluster mode, running as
//! its service account under the chart's RBAC) behind the fake API server, which calls its
//! webhooks as registered by the chart's rendered webhook configurations. No kubectl: alice
//! writes with the kube client, as kubectl would over HTTP.

mod common;
#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;
#[path = "support/tether_cluster.rs"]
mod tether_cluster;

use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{json, Value};
use tether_cluster::*;

fn atr_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("tether.dev", "v1alpha1", "AttachedResource"),
        "attachedresources",
    )
}

fn attached(name: &str, object: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "tether.dev/v1alpha1", "kind": "AttachedResource",
        "metadata": {"name": name},
        "spec": {"workloadRef": {"name": "worker"}, "object": object}
    }))
    .unwrap()
}

fn pdb_object() -> Value {
    json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "spec": {"maxUnavailable": 1}})
}

fn deployment(ns: &str, name: &str, version: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns,
                     "labels": {"tether.dev/workload": "worker", "tether.dev/version": version}},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}}
    })
}

fn status_of(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// How kubectl prints a failed create (APISERVER.md section 6, `pkg/cmd/util/helpers.go`).
fn kubectl_create_error(s: &kube::core::Status, file: &str) -> String {
    if s.reason.is_empty() {
        format!(
            "Error from server: error when creating {file:?}: {}",
            s.message
        )
    } else {
        format!(
            "Error from server ({}): error when creating {file:?}: {}",
            s.reason, s.message
        )
    }
}

async fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_creates_an_attached_resource_mutated_and_validated_by_tether_and_reconciled_under_chart_rbac(
) {
    let c = TetherCluster::start(&["--controllers", "attached", "--lease-duration", "2s"]).await;
    c.add_namespace("payments");
    c.fake.insert(deployment("payments", "worker-v1", "v1"));
    let atrs = Api::<DynamicObject>::namespaced_with(c.alice().await, "payments", &atr_resource());

    let created = atrs
        .create(&PostParams::default(), &attached("guard", pdb_object()))
        .await
        .unwrap_or_else(|e| panic!("create denied: {e}\ntether log:\n{}", c.tether.logs()));
    assert_eq!(
        created
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("tether.dev/workload"))
            .map(String::as_str),
        Some("worker"),
        "the mutating webhook's label is stored"
    );

    let calls = c.fake.admission_calls();
    let names: Vec<&str> = calls.iter().map(|a| a.webhook.as_str()).collect();
    assert_eq!(
        names,
        [
            "attachedresources.mutate.tether.dev",
            "attachedresources.validate.tether.dev"
        ]
    );
    for call in &calls {
        assert!(call.error.is_none(), "{call:?}");
        assert_eq!(call.url.split('?').nth(1), Some("timeout=10s"));
        assert!(
            call.url
                .starts_with("https://tether.tether-system.svc:443/"),
            "{}",
            call.url
        );
        assert_eq!(call.review["request"]["userInfo"]["username"], ALICE);
        assert_eq!(call.response.as_ref().unwrap()["response"]["allowed"], true);
    }
    assert_eq!(calls[0].review["request"]["operation"], "CREATE");

    // The leader reconciles: a PDB copy for worker-v1, written by tether's service account,
    // with nothing refused by the chart's RBAC.
    wait_for("the PDB copy", Duration::from_secs(20), || {
        !c.fake.list_all("poddisruptionbudgets").is_empty()
    })
    .await;
    let copy_writes: Vec<_> = c
        .fake
        .writes()
        .into_iter()
        .filter(|r| r.path.contains("/poddisruptionbudgets/"))
        .collect();
    assert!(!copy_writes.is_empty());
    assert!(
        copy_writes.iter().all(|r| r.user == TETHER_USER),
        "{copy_writes:?}"
    );
    assert_eq!(
        c.fake.forbidden(),
        Vec::<(String, String, String)>::new(),
        "tether log:\n{}",
        c.tether.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banned_kind_is_denied_with_the_kubectl_message_and_kube_system_is_not_sent() {
    let c = TetherCluster::start(&["--controllers", "none"]).await;
    c.add_namespace("payments");
    c.fake.insert(deployment("payments", "worker-v1", "v1"));
    let atrs = Api::<DynamicObject>::namespaced_with(c.alice().await, "payments", &atr_resource());
    let banned = json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {}});
    let s = status_of(
        atrs.create(&PostParams::default(), &attached("bad", banned.clone()))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        kubectl_create_error(&s, "x.yaml"),
        "Error from server (Forbidden): error when creating \"x.yaml\": admission webhook \
         \"attachedresources.validate.tether.dev\" denied the request: spec.object.kind: kind \
         \"Deployment\" may not be attached: it is in --banned-kinds (env BANNED_KINDS); \
         workloads cannot be attached, attach a resource that refers to the workload instead, \
         or ask your platform team to change the setting"
    );
    assert_eq!(s.code, 403);
    assert!(c.fake.list_all("attachedresources").is_empty());

    // kube-system is excluded by every webhook's namespaceSelector: stored unseen.
    c.fake.clear_admission_calls();
    let sys =
        Api::<DynamicObject>::namespaced_with(c.alice().await, "kube-system", &atr_resource());
    sys.create(&PostParams::default(), &attached("sys", banned))
        .await
        .unwrap();
    assert_eq!(c.fake.admission_calls(), vec![]);
    assert_eq!(c.fake.list_all("attachedresources").len(), 1);
}

/// Rewrites the stored chart ClusterRole `tether`, each rule passed through `edit`.
fn chart_rbac_without(fake: &fake_apiserver::FakeApiServer, mut edit: impl FnMut(&mut Value)) {
    let mut role = fake
        .get(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            None,
            "tether",
        )
        .unwrap();
    for rule in role["rules"].as_array_mut().unwrap() {
        edit(rule);
    }
    fake.insert(role);
}

fn drop_verb(rule: &mut Value, resources: Value, verb: &str) {
    if rule["resources"] == resources {
        let verbs: Vec<Value> = rule["verbs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| *v != verb)
            .cloned()
            .collect();
        rule["verbs"] = Value::Array(verbs);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_removed_from_the_chart_cluster_role_denies_admission_through_the_access_review() {
    let fake = fake_with_chart_rbac().await;
    chart_rbac_without(&fake, |r| {
        drop_verb(r, json!(["poddisruptionbudgets"]), "create")
    });
    let c = TetherCluster::start_on(fake, &["--controllers", "none"]).await;
    c.add_namespace("payments");
    c.fake.insert(deployment("payments", "worker-v1", "v1"));
    let atrs = Api::<DynamicObject>::namespaced_with(c.alice().await, "payments", &atr_resource());
    let s = status_of(
        atrs.create(&PostParams::default(), &attached("guard", pdb_object()))
            .await
            .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        s.message,
        "admission webhook \"attachedresources.validate.tether.dev\" denied the request: \
         tether's service account \"system:serviceaccount:tether-system:tether\" may not create \
         poddisruptionbudgets.policy in namespace \"payments\"; tether needs create, delete, get, \
         list and patch on every kind it copies: add the kind to the chart's attachableKinds \
         (RBAC) or ask the platform team"
    );
    assert!(c.fake.list_all("attachedresources").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_the_controller_needs_removed_from_the_chart_shows_as_a_403_to_tether() {
    let fake = fake_with_chart_rbac().await;
    chart_rbac_without(&fake, |r| {
        drop_verb(
            r,
            json!(["attachedresources/status", "appdomains/status"]),
            "patch",
        )
    });
    let c = TetherCluster::start_on(
        fake,
        &["--controllers", "attached", "--lease-duration", "2s"],
    )
    .await;
    c.add_namespace("payments");
    c.fake.insert(deployment("payments", "worker-v1", "v1"));
    let atrs = Api::<DynamicObject>::namespaced_with(c.alice().await, "payments", &atr_resource());
    atrs.create(&PostParams::default(), &attached("guard", pdb_object()))
        .await
        .unwrap();
    wait_for("tether's status patch to be refused", Duration::from_secs(20), || {
        c.fake.forbidden().iter().any(|(method, path, msg)| {
            method == "PATCH"
                && path == "/apis/tether.dev/v1alpha1/namespaces/payments/attachedresources/guard/status"
                && msg == "attachedresources.tether.dev \"guard\" is forbidden: User \"system:serviceaccount:tether-system:tether\" cannot patch resource \"attachedresources/status\" in API group \"tether.dev\" in the namespace \"payments\""
        })
    })
    .await;
    let stored = c
        .fake
        .get(
            "tether.dev",
            "v1alpha1",
            "attachedresources",
            Some("payments"),
            "guard",
        )
        .unwrap();
    assert!(
        stored.get("status").is_none(),
        "no status was written: {stored}"
    );
}
