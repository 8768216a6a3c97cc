//! The AttachedResource reconciler (SPEC 6, 6.1) against the fake Kubernetes API server:
//! fan-out, version changes, pruning, finalizer cleanup, failure isolation, idempotence
//! (zero writes on a no-op), rendering, and the Controller end to end.
//!
//! `cargo test --test controller_attached -- --ignored --nocapture scale` times 1,000
//! AttachedResources × 3 versions.

#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_apiserver::{FakeApiServer, Fault};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use rstest::rstest;
use serde_json::{json, Value};
use tether::controller::attached::{
    self, render_copy, RenderFailure, Target, APPLIED_HASH_ANNOTATION, ATTACHED_LABEL, FINALIZER,
    VERSION_LABEL,
};
use tether::controller::{Context, Settings};
use tether::crd::AttachedResource;
use tether::discovery::ApiResolver;
use tether::metrics::Metrics;

const NS: &str = "payments";
const HPAS: &str = "horizontalpodautoscalers";
const PDBS: &str = "poddisruptionbudgets";

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

async fn setup() -> (FakeApiServer, Arc<Context>) {
    let fake = FakeApiServer::start().await;
    let ctx = context(&fake, Duration::from_secs(300)).await;
    (fake, ctx)
}

async fn context(fake: &FakeApiServer, resync: Duration) -> Arc<Context> {
    let client = fake.client().await;
    Arc::new(Context::new(
        client.clone(),
        Metrics::new(),
        Arc::new(ApiResolver::new(client)),
        Some("test".into()),
        Settings {
            resync,
            ..Settings::default()
        },
    ))
}

fn deployment_json(ns: &str, name: &str, workload: &str, version: Option<&str>) -> Value {
    let mut labels = json!({"tether.dev/workload": workload});
    if let Some(v) = version {
        labels[VERSION_LABEL] = json!(v);
    }
    let version = version.unwrap_or(name);
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "selector": {"matchLabels": {"app": workload, "version": version}},
            "template": {"metadata": {"labels": {"app": workload, "version": version}}}
        }
    })
}

/// Inserts a Deployment; returns the stored object (with its uid).
fn add_deployment(
    fake: &FakeApiServer,
    ns: &str,
    name: &str,
    workload: &str,
    version: Option<&str>,
) -> Value {
    fake.insert(deployment_json(ns, name, workload, version))
}

fn hpa_object() -> Value {
    json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"labels": {"team": "payments", "release": "{{ .Version }}"}},
        "spec": {"scaleTargetRef": {}, "minReplicas": 2, "maxReplicas": 10}
    })
}

fn pdb_object() -> Value {
    json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "spec": {"selector": {"matchLabels": {}}, "maxUnavailable": 1}
    })
}

fn add_atr(fake: &FakeApiServer, ns: &str, name: &str, workload: &str, object: Value) -> Value {
    fake.insert(json!({
        "apiVersion": "tether.dev/v1alpha1",
        "kind": "AttachedResource",
        "metadata": {"name": name, "namespace": ns, "labels": {"tether.dev/workload": workload}},
        "spec": {"workloadRef": {"name": workload}, "object": object}
    }))
}

fn get_atr(fake: &FakeApiServer, ns: &str, name: &str) -> Option<AttachedResource> {
    fake.get(
        "tether.dev",
        "v1alpha1",
        "attachedresources",
        Some(ns),
        name,
    )
    .map(|v| serde_json::from_value(v).expect("stored AttachedResource deserializes"))
}

async fn reconcile(
    fake: &FakeApiServer,
    ctx: &Arc<Context>,
    ns: &str,
    name: &str,
) -> Result<kube::runtime::controller::Action, attached::Error> {
    let obj = get_atr(fake, ns, name).expect("AttachedResource exists");
    attached::reconcile(Arc::new(obj), ctx.clone()).await
}

/// Copies of `plural` in `ns`, by name.
fn copies(fake: &FakeApiServer, plural: &str, ns: &str) -> BTreeMap<String, Value> {
    fake.list_all(plural)
        .into_iter()
        .filter(|o| o["metadata"]["namespace"] == ns)
        .map(|o| (o["metadata"]["name"].as_str().unwrap().to_string(), o))
        .collect()
}

fn ready(atr: &AttachedResource) -> (String, String, String) {
    let st = atr.status.as_ref().expect("status written");
    let c = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready condition");
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

fn counter(ctx: &Context, result: &str) -> u64 {
    ctx.metrics
        .reconcile_total
        .with_label_values(&[attached::NAME, result])
        .get()
}

// ---------------------------------------------------------------------------------------
// Fan-out
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn one_by_one_creates_a_rendered_copy_with_finalizer_and_status() {
    let (fake, ctx) = setup().await;
    let dep = add_deployment(&fake, NS, "worker-v1", "worker", Some("v1"));
    add_atr(&fake, NS, "worker-hpa", "worker", hpa_object());

    let action = reconcile(&fake, &ctx, NS, "worker-hpa")
        .await
        .expect("reconciles");
    assert_eq!(
        format!("{action:?}"),
        format!(
            "{:?}",
            kube::runtime::controller::Action::requeue(Duration::from_secs(300))
        )
    );

    let name = "worker-v1-worker-hpa-059daf4a".to_string();
    let hpas = copies(&fake, HPAS, NS);
    assert_eq!(hpas.keys().collect::<Vec<_>>(), [&name]);
    let hpa = &hpas[&name];
    assert_eq!(
        hpa["spec"]["scaleTargetRef"],
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "worker-v1"})
    );
    assert_eq!(hpa["spec"]["minReplicas"], 2);
    let labels = &hpa["metadata"]["labels"];
    assert_eq!(labels[ATTACHED_LABEL], "worker-hpa");
    assert_eq!(labels["tether.dev/workload"], "worker");
    assert_eq!(labels[VERSION_LABEL], "v1");
    assert_eq!(
        labels["team"], "payments",
        "the object's own labels are kept"
    );
    assert_eq!(
        labels["release"], "v1",
        "placeholders in labels are rendered"
    );
    assert_eq!(
        hpa["metadata"]["ownerReferences"],
        json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "worker-v1",
                "uid": dep["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}])
    );

    // Server-side apply with our field manager, forced.
    let applies: Vec<_> = fake
        .requests_matching("PATCH", "/apis/autoscaling/v2/")
        .into_iter()
        .filter(|r| r.content_type.as_deref() == Some("application/apply-patch+yaml"))
        .collect();
    assert_eq!(applies.len(), 1);
    assert_eq!(
        applies[0].query_param("fieldManager").as_deref(),
        Some("tether/payments/worker-hpa")
    );
    assert_eq!(applies[0].query_param("force").as_deref(), Some("true"));

    let atr = get_atr(&fake, NS, "worker-hpa").unwrap();
    assert_eq!(atr.metadata.finalizers, Some(vec![FINALIZER.to_string()]));
    let st = atr.status.clone().unwrap();
    assert_eq!(st.observed_generation, Some(1));
    assert_eq!(st.targets.len(), 1);
    let t = &st.targets[0];
    assert_eq!(
        (
            t.deployment.as_str(),
            t.version.as_str(),
            t.resource_name.as_str(),
            t.applied
        ),
        ("worker-v1", "v1", name.as_str(), true)
    );
    assert_eq!(t.last_applied_hash.len(), 64);
    assert!(t.message.is_empty());
    let (status, reason, message) = ready(&atr);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "AllTargetsApplied")
    );
    assert_eq!(message, "1 of 1 target(s) applied");
    assert!(st.conditions[0].last_transition_time.is_some());
    assert_eq!(counter(&ctx, "success"), 1);
    assert_eq!(counter(&ctx, "error"), 0);
    let text = ctx.metrics.render();
    assert!(
        text.contains("tether_reconcile_duration_seconds_count{controller=\"attached\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn one_by_n_renders_each_version_with_its_placeholders() {
    let (fake, ctx) = setup().await;
    for v in ["v1", "v2", "v3"] {
        add_deployment(&fake, NS, &format!("worker-{v}"), "worker", Some(v));
    }
    // A Deployment without a version label: its version is its name.
    add_deployment(&fake, NS, "worker-canary", "worker", None);
    // Another workload's Deployment is not a target.
    add_deployment(&fake, NS, "other-v1", "other", Some("v1"));
    let object = json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"annotations": {"note": "{{ .WorkloadName }}/{{ .Version }} in {{ .Namespace }} for {{ .DeploymentName }}"}},
        "spec": {"scaleTargetRef": null, "minReplicas": 1, "maxReplicas": 3}
    });
    add_atr(&fake, NS, "hpa", "worker", object);
    reconcile(&fake, &ctx, NS, "hpa").await.expect("reconciles");

    let hpas = copies(&fake, HPAS, NS);
    assert_eq!(hpas.len(), 4, "{:?}", hpas.keys());
    // Golden names (tests/naming_golden.rs): printf '%s' worker/hpa/$version | sha256sum | cut -c1-8
    for (dep, version, name) in [
        ("worker-v1", "v1", "worker-v1-hpa-243004dd"),
        ("worker-v2", "v2", "worker-v2-hpa-97f3b47f"),
        ("worker-v3", "v3", "worker-v3-hpa-6b38af06"),
        (
            "worker-canary",
            "worker-canary",
            "worker-canary-hpa-64dc11b9",
        ),
    ] {
        let copy = &hpas[name];
        assert_eq!(
            copy["metadata"]["annotations"]["note"],
            format!("worker/{version} in payments for {dep}")
        );
        assert_eq!(
            copy["spec"]["scaleTargetRef"]["name"], dep,
            "null sentinel injected"
        );
        assert_eq!(copy["metadata"]["labels"][VERSION_LABEL], version);
    }
    let st = get_atr(&fake, NS, "hpa").unwrap().status.unwrap();
    let deps: Vec<_> = st.targets.iter().map(|t| t.deployment.as_str()).collect();
    assert_eq!(
        deps,
        ["worker-canary", "worker-v1", "worker-v2", "worker-v3"]
    );
    assert!(st.targets.iter().all(|t| t.applied));
}

#[tokio::test]
async fn n_by_m_fans_out_every_resource_to_every_version_of_its_workload() {
    let (fake, ctx) = setup().await;
    for w in ["api", "worker"] {
        for v in ["v1", "v2", "v3"] {
            add_deployment(&fake, NS, &format!("{w}-{v}"), w, Some(v));
        }
    }
    // Same workload name in another namespace: not a target.
    add_deployment(&fake, "elsewhere", "api-v9", "api", Some("v9"));
    add_atr(&fake, NS, "api-hpa", "api", hpa_object());
    add_atr(&fake, NS, "api-pdb", "api", pdb_object());
    add_atr(&fake, NS, "worker-hpa", "worker", hpa_object());
    add_atr(&fake, NS, "worker-pdb", "worker", pdb_object());
    for atr in ["api-hpa", "api-pdb", "worker-hpa", "worker-pdb"] {
        reconcile(&fake, &ctx, NS, atr).await.expect("reconciles");
    }
    let hpas = copies(&fake, HPAS, NS);
    let pdbs = copies(&fake, PDBS, NS);
    assert_eq!((hpas.len(), pdbs.len()), (6, 6));
    assert!(copies(&fake, HPAS, "elsewhere").is_empty());
    // Golden names: printf '%s' "$w/$w-hpa/$v" | sha256sum | cut -c1-8 (and -pdb).
    for (w, v, hpa_name, pdb_name) in [
        (
            "api",
            "v1",
            "api-v1-api-hpa-a79db185",
            "api-v1-api-pdb-a654129b",
        ),
        (
            "api",
            "v2",
            "api-v2-api-hpa-1f412ab9",
            "api-v2-api-pdb-e2a0137e",
        ),
        (
            "api",
            "v3",
            "api-v3-api-hpa-4af7d0b4",
            "api-v3-api-pdb-c031eb52",
        ),
        (
            "worker",
            "v1",
            "worker-v1-worker-hpa-059daf4a",
            "worker-v1-worker-pdb-65487a87",
        ),
        (
            "worker",
            "v2",
            "worker-v2-worker-hpa-4323f3d7",
            "worker-v2-worker-pdb-88a8f2bd",
        ),
        (
            "worker",
            "v3",
            "worker-v3-worker-hpa-f5a84008",
            "worker-v3-worker-pdb-ded27e9b",
        ),
    ] {
        let dep = format!("{w}-{v}");
        let hpa = &hpas[hpa_name];
        assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], dep.as_str());
        let pdb = &pdbs[pdb_name];
        assert_eq!(
            pdb["spec"]["selector"]["matchLabels"],
            json!({"app": w, "version": v}),
            "matchLabels come from the Deployment's selector"
        );
        assert_eq!(
            pdb["metadata"]["labels"][ATTACHED_LABEL],
            format!("{w}-pdb")
        );
    }
}

#[tokio::test]
async fn no_targets_is_reported_in_status() {
    let (fake, ctx) = setup().await;
    add_atr(&fake, NS, "lonely", "ghost", hpa_object());
    reconcile(&fake, &ctx, NS, "lonely")
        .await
        .expect("no targets is not an error");
    let atr = get_atr(&fake, NS, "lonely").unwrap();
    let (status, reason, message) = ready(&atr);
    assert_eq!((status.as_str(), reason.as_str()), ("False", "NoTargets"));
    assert!(message.contains("tether.dev/workload=ghost"), "{message}");
    assert!(atr.status.unwrap().targets.is_empty());
}

// ---------------------------------------------------------------------------------------
// Changes
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_new_version_gets_a_copy_and_only_it_is_applied() {
    let (fake, ctx) = setup().await;
    add_deployment(&fake, NS, "worker-v1", "worker", Some("v1"));
    add_atr(&fake, NS, "hpa", "worker", hpa_object());
    reconcile(&fake, &ctx, NS, "hpa").await.unwrap();

    add_deployment(&fake, NS, "worker-v2", "worker", Some("v2"));
    fake.clear_requests();
    reconcile(&fake, &ctx, NS, "hpa").await.unwrap();
    let hpas = copies(&fake, HPAS, NS);
    assert!(hpas.contains_key("worker-v2-hpa-97f3b47f"));
    assert_eq!(hpas.len(), 2);
    let writes: Vec<String> = fake
        .writes()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        writes,
        [
            format!(
                "PATCH /apis/autoscaling/v2/namespaces/payments/horizontalpodautoscalers/{}",
                "worker-v2-hpa-97f3b47f"
            ),
            "PATCH /apis/tether.dev/v1alpha1/namespaces/payments/attachedresources/hpa/status"
                .to_string()
        ],
        "only the new copy is applied, then the status"
    );
}

#[tokio::test]
async fn a_version_that_stops_being_a_target_loses_its_copy() {
    let (fake, ctx) = setup().await;
    add_deployment(&fake, NS, "worker-v1", "worker", Some("v1"));
    let v2 = add_deployment(&fake, NS, "worker-v2", "worker", Some("v2"));
    add_atr(&fake, NS, "hpa", "worker", hpa_object());
    reconcile(&fake, &ctx, NS, "hpa").await.unwrap();
    assert_eq!(copies(&fake, HPAS, NS).len(), 2);

    // v2 leaves the workload (label removed): GC would not remove its copy, we must.
    let mut relabelled = v2.clone();
    relabelled["metadata"]["labels"] = json!({"app": "retired"});
    fake.insert(relabelled);
    reconcile(&fake, &ctx, NS, "hpa").await.unwrap();
    let hpas = copies(&fake, HPAS, NS);
    assert_eq!(
        hpas.keys().collect::<Vec<_>>(),
        [&"worker-v1-hpa-243004dd".to_string()]
    );
    let st = get_atr(&fake, NS, "hpa").unwrap().status.unwrap();
    assert_eq!(st.targets.len(), 1);
    assert_eq!(st.targets[0].deployment, "worker-v1");

    // A Deployment deleted outright: its copy goes too (here by our prune, GC off).
    fake.set_garbage_collection(false);
    let deps: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(ctx.client.clone(), NS);
    deps.delete("worker-v1", &DeleteParams::default())
        .await
        .unwrap();
    reconcile(&fake, &ctx, NS, "hpa").await.unwrap();
    assert!(copies(&fake, HPAS, NS).is_empty());
    let atr = get_atr(&fake, NS, "hpa").unwrap();
    assert_eq!(ready(&atr).1, "NoTargets");
}

#[tokio::test]
async fn selector_label_change_updates_the_copy() {
    let (fake, ctx) = setup().await;
    let dep = add_deployment(&fake, NS, "worker-v1", "worker", Some("v1"));
    add_atr(&fake, NS, "pdb", "worker", pdb_object());
    reconcile(&fake, &ctx, NS, "pdb").await.unwrap();
    let name = "worker-v1-pdb-420b31d8".to_string();
    let before = copies(&fake, PDBS, NS)[&name]["spec"]["selector"]["matchLabels"].clone();
    assert_eq!(before, json!({"app": "worker", "version": "v1"}));
    let old_hash = get_atr(&fake, NS, "pdb").unwrap().status.unwrap().targets[0]
        .last_applied_hash
        .clone();

    let mut changed = dep.clone();
    changed["spec"]["selector"]["matchLabels"] = json!({"app": "worker", "track": "stable"});
    fake.insert(changed);
    reconcile(&fake, &ctx, NS, "pdb").await.unwrap();
    let after = copies(&fake, PDBS, NS)[&name]["spec"]["selector"]["matchLabels"].clone();
    assert_eq!(
        after,
        json!({"app": "worker", "track": "stable"}),
        "the old key is dropped (we applied it before, nobody else owns it)"
    );
    let new_hash = get_atr(&fake, NS, "pdb").unwrap().status.unwrap().targets[0]
        .last_applied_hash
        .clone();
    assert_ne!(old_hash, new_hash);
}

#[tokio::test]
async fn drift_in_a_copy_is_repaired_on_the_next_reconcile() {
    let (fake, ctx) = setup().await;
    add_deployment(&fake, NS, "worker-v1", "worker", Some("v1"));
    add_atr(&fake, NS, "hpa", "worker", hpa_object());
    reconcile(&fake, &ctx, NS, "hpa").await.unwrap();
    let name = "worker-v1-hpa-243004dd".to_string();
    let hpas: Api<kube::api::DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        NS,
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("autoscaling", "v2", "HorizontalPodAutoscaler"),
            HPAS,
        ),
    );
    // Someone edits a field we own.
    hpas.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"maxReplicas": 99}})),
    )
    .await
    .unwrap();
    reconcile(&fake, &ctx, NS, "hpa").await.unwrap();
    assert_eq!(copies(&fake, HPAS, NS)[&name]["spec"]["maxReplicas"], 10);

    // Someone deletes the copy.
    fake.set_garbage_collection(false);
    let hpas = hpa_api(&ctx);
    hpas.delete(&name, &DeleteParams::default()).await.unwrap();
    assert!(copies(&fake, HPAS, NS).is_empty());
    reconcile(&fake, &ctx, NS, "hpa").await.unwrap();
    assert!(copies(&fake, HPAS, NS).contains_key(&name));
}

#[tokio::test]
async fn a_kind_change_deletes_the_old_kinds_copies() {
    let (fake, ctx) = setup().await;
    add_deployment(&fake, NS, "worker-v1", "worker", Some("v1"));
    add_deployment(&fake, NS, "worker-v2", "worker", Some("v2"));
    add_atr(&fake, NS, "guard", "worker", hpa_object());
    reconcile(&fake, &ctx, NS, "guard").await.unwrap();
    assert_eq!(copies(&fake, HPAS, NS).len(), 2);
    let atr = get_atr(&fake, NS, "guard").unwrap();
    assert_eq!(
        atr.metadata.annotations.unwrap()[attached::APPLIED_KINDS_ANNOTATION],
        r#"["autoscaling/v2, Kind=HorizontalPodAutoscaler"]"#
    );

    let atrs: Api<AttachedResource> = Api::namespaced(ctx.client.clone(), NS);
    atrs.patch(
        "guard",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"object": pdb_object()}})),
    )
    .await
    .unwrap();
    reconcile(&fake, &ctx, NS, "guard").await.unwrap();
    assert!(
        copies(&fake, HPAS, NS).is_empty(),
        "old kind's copies deleted"
    );
    assert_eq!(copies(&fake, PDBS, NS).len(), 2);
    let atr = get_atr(&fake, NS, "guard").unwrap();
    assert_eq!(
        atr.metadata.annotations.clone().unwrap()[attached::APPLIED_KINDS_ANNOTATION],
        r#"["policy/v1, Kind=PodDisruptionBudget"]"#
    );
    assert_eq!(atr.status.unwrap().observed_generation, Some(2));

    // And now nothing to do.
    fake.clear_requests();
    reconcile(&fake, &ctx, NS, "guard").await.unwrap();
    assert_eq!(fake.write_count(), 0, "{:?}", fake.writes());
}

// ---------------------------------------------------------------------------------------
// Deletion
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn deleting_the_attached_resource_deletes_its_copies_then_the_finalizer() {
    let (fake, ctx) = setup().await;
    add_deployment(&fake, NS, "worker-v1", "worker", Some("v1"));
    add_deployment(&fake, NS, "worker-v2", "worker", Some("v2"));
    add_atr(&fake, NS, "hpa", "worker", hpa_object());
    add_atr(&fake, NS, "keep", "worker", pdb_object());
    reconcile(&fake, &ctx, NS, "hpa").await.unwrap();
    reconcile(&fake, &ctx, NS, "keep").await.unwrap();
    assert_eq!(copies(&fake, HPAS, NS).len(), 2);

    let atrs: Api<AttachedResource> = Api::namespaced(ctx.client.clone(), NS);
    atrs.delete("hpa", &DeleteParams::default()).await.unwrap();
    let pending = get_atr(&fake, NS, "hpa").expect("held by the finalizer");
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert!(
        copies(&fake, HPAS, NS).len() == 2,
        "Deployments still exist: no GC"
    );

    let action = attached::reconcile(Arc::new(pending), ctx.clone())
        .await
        .expect("cleanup succeeds");
    assert_eq!(
        format!("{action:?}"),
        format!("{:?}", kube::runtime::controller::Action::await_change())
    );
    assert!(copies(&fake, HPAS, NS).is_empty());
    assert!(
        get_atr(&fake, NS, "hpa").is_none(),
        "finalizer removed, object gone"
    );
    assert_eq!(
        copies(&fake, PDBS, NS).len(),
        2,
        "another resource's copies stay"
    );
}

#[tokio::test]
async fn cleanup_failure_keeps_the_finalizer_and_retries() {
    let (fake, ctx) = setup().await;
    add_deployment(&fake, NS, "worker-v1", "worker", Some("v1"));
    add_atr(&fake, NS, "hpa", "worker", hpa_object());
    reconcile(&fake, &ctx, NS, "hpa").await.unwrap();
    let name = "worker-v1-hpa-243004dd".to_string();
    let atrs: Api<AttachedResource> = Api::namespaced(ctx.client.clone(), NS);
    atrs.delete("hpa", &DeleteParams::default()).await.unwrap();

    let path = format!("/apis/autoscaling/v2/namespaces/{NS}/{HPAS}/{name}");
    fake.fail(&path, Fault::Status(500, "etcd is sad".into()), Some(1));
    let err = reconcile(&fake, &ctx, NS, "hpa").await.unwrap_err();
    assert!(err.to_string().contains("etcd is sad"), "{err}");
    assert!(get_atr(&fake, NS, "hpa").is_some(), "finalizer still there");

    reconcile(&fake, &ctx, NS, "hpa").await.unwrap();
    assert!(get_atr(&fake, NS, "hpa").is_none());
    assert!(copies(&fake, HPAS, NS).is_empty());
}

// ---------------------------------------------------------------------------------------
// Failures
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_apply_failure_on_one_target_does_not_block_the_others() {
    // A name no other test uses: the backoff is per object, process-wide.
    let (fake, ctx) = setup().await;
    for v in ["v1", "v2", "v3"] {
        add_deployment(&fake, NS, &format!("worker-{v}"), "worker", Some(v));
    }
    add_atr(&fake, NS, "backoff-hpa", "worker", hpa_object());
    let bad = "worker-v2-backoff-hpa-ec783563".to_string();
    fake.fail(
        &format!("/apis/autoscaling/v2/namespaces/{NS}/{HPAS}/{bad}"),
        Fault::Status(422, "quota exceeded for horizontalpodautoscalers".into()),
        None,
    );
    let err = reconcile(&fake, &ctx, NS, "backoff-hpa").await.unwrap_err();
    assert!(err.to_string().contains("worker-v2"), "{err}");
    assert!(err.to_string().contains("quota exceeded"), "{err}");

    let hpas = copies(&fake, HPAS, NS);
    assert_eq!(hpas.len(), 2);
    assert!(!hpas.contains_key(&bad));
    let atr = get_atr(&fake, NS, "backoff-hpa").unwrap();
    let st = atr
        .status
        .clone()
        .expect("status written despite the failure");
    let by_dep: BTreeMap<_, _> = st
        .targets
        .iter()
        .map(|t| (t.deployment.as_str(), t))
        .collect();
    assert!(by_dep["worker-v1"].applied && by_dep["worker-v3"].applied);
    assert!(!by_dep["worker-v2"].applied);
    assert!(by_dep["worker-v2"].message.contains("quota exceeded"));
    assert!(by_dep["worker-v2"].last_applied_hash.is_empty());
    let (status, reason, message) = ready(&atr);
    assert_eq!((status.as_str(), reason.as_str()), ("False", "ApplyFailed"));
    assert!(
        message.starts_with("1 of 3 target(s) failed: worker-v2:"),
        "{message}"
    );
    assert_eq!(counter(&ctx, "error"), 1);

    // The error policy: exponential backoff and a Warning Event on the AttachedResource.
    let obj = Arc::new(atr.clone());
    let a1 = attached::error_policy(obj.clone(), &err, ctx.clone());
    let a2 = attached::error_policy(obj.clone(), &err, ctx.clone());
    assert_eq!(
        format!("{a1:?}"),
        format!(
            "{:?}",
            kube::runtime::controller::Action::requeue(Duration::from_secs(1))
        )
    );
    assert_eq!(
        format!("{a2:?}"),
        format!(
            "{:?}",
            kube::runtime::controller::Action::requeue(Duration::from_secs(2))
        )
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let event = loop {
        let evs = fake.list_all("events");
        if let Some(e) = evs
            .into_iter()
            .find(|e| e["regarding"]["name"] == "backoff-hpa")
        {
            break e;
        }
        assert!(Instant::now() < deadline, "no Event published");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "ReconcileFailed");
    assert_eq!(event["regarding"]["kind"], "AttachedResource");
    assert!(event["note"].as_str().unwrap().contains("quota exceeded"));

    // Fixed: everything applies, the backoff resets.
    fake.clear_faults();
    reconcile(&fake, &ctx, NS, "backoff-hpa").await.unwrap();
    assert_eq!(copies(&fake, HPAS, NS).len(), 3);
    assert_eq!(
        ready(&get_atr(&fake, NS, "backoff-hpa").unwrap()).1,
        "AllTargetsApplied"
    );
    let a3 = attached::error_policy(obj, &err, ctx.clone());
    assert_eq!(
        format!("{a3:?}"),
        format!(
            "{:?}",
            kube::runtime::controller::Action::requeue(Duration::from_secs(1))
        )
    );
}

#[tokio::test]
async fn an_unknown_kind_fails_that_resource_only() {
    let (fake, ctx) = setup().await;
    add_deployment(&fake, NS, "worker-v1", "worker", Some("v1"));
    add_atr(
        &fake,
        NS,
        "scaler",
        "worker",
        json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
               "spec": {"scaleTargetRef": {}}}),
    );
    add_atr(&fake, NS, "hpa", "worker", hpa_object());
    let err = reconcile(&fake, &ctx, NS, "scaler").await.unwrap_err();
    reconcile(&fake, &ctx, NS, "hpa")
        .await
        .expect("the other resource is fine");
    assert_eq!(copies(&fake, HPAS, NS).len(), 1);

    let atr = get_atr(&fake, NS, "scaler").unwrap();
    let st = atr.status.clone().unwrap();
    assert_eq!(st.targets.len(), 1);
    assert!(!st.targets[0].applied);
    assert!(
        st.targets[0].message.contains("keda.sh/v1alpha1"),
        "{}",
        st.targets[0].message
    );
    assert!(err.to_string().contains("keda.sh/v1alpha1"), "{err}");
    assert_eq!(ready(&atr).1, "ApplyFailed");
    // Finalizer is there; deleting works although the kind is unknown (nothing to clean).
    let atrs: Api<AttachedResource> = Api::namespaced(ctx.client.clone(), NS);
    atrs.delete("scaler", &DeleteParams::default())
        .await
        .unwrap();
    reconcile(&fake, &ctx, NS, "scaler").await.unwrap();
    assert!(get_atr(&fake, NS, "scaler").is_none());

    // Once the CRD is installed, a reconcile applies it: discovery asks again once the miss
    // it remembers (a few seconds) expires, as the error policy's backoff retries would.
    add_atr(
        &fake,
        NS,
        "scaler",
        "worker",
        json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
               "spec": {"scaleTargetRef": {}}}),
    );
    fake.add_resource(
        "keda.sh",
        "v1alpha1",
        "ScaledObject",
        "scaledobjects",
        true,
        fake_apiserver::ALL_VERBS,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while reconcile(&fake, &ctx, NS, "scaler").await.is_err() {
        assert!(Instant::now() < deadline, "the new kind was never found");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(copies(&fake, "scaledobjects", NS).len(), 1);
}

#[tokio::test]
async fn a_render_failure_is_per_target() {
    let (fake, ctx) = setup().await;
    add_deployment(&fake, NS, "worker-v1", "worker", Some("v1"));
    // A Deployment selecting by matchExpressions only: no labels to copy.
    let mut odd = deployment_json(NS, "worker-v2", "worker", Some("v2"));
    odd["spec"]["selector"] =
        json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["worker"]}]});
    fake.insert(odd);
    add_atr(&fake, NS, "pdb", "worker", pdb_object());
    let err = reconcile(&fake, &ctx, NS, "pdb").await.unwrap_err();
    assert!(err.to_string().contains("worker-v2"), "{err}");
    assert_eq!(copies(&fake, PDBS, NS).len(), 1);
    let st = get_atr(&fake, NS, "pdb").unwrap().status.unwrap();
    let v2 = st
        .targets
        .iter()
        .find(|t| t.deployment == "worker-v2")
        .unwrap();
    assert!(
        v2.message.contains("no spec.selector.matchLabels"),
        "{}",
        v2.message
    );
}

// ---------------------------------------------------------------------------------------
// Idempotence and API calls
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_no_op_reconcile_writes_nothing() {
    let (fake, ctx) = setup().await;
    for v in ["v1", "v2", "v3"] {
        add_deployment(&fake, NS, &format!("worker-{v}"), "worker", Some(v));
    }
    add_atr(&fake, NS, "hpa", "worker", hpa_object());

    fake.clear_requests();
    reconcile(&fake, &ctx, NS, "hpa").await.unwrap();
    let first = fake.requests();
    let first_writes = first.iter().filter(|r| r.is_write()).count();
    // finalizer, 3 applies, status
    assert_eq!(first_writes, 5, "{first:#?}");

    let before = get_atr(&fake, NS, "hpa").unwrap();
    for _ in 0..3 {
        fake.clear_requests();
        reconcile(&fake, &ctx, NS, "hpa").await.unwrap();
        assert_eq!(fake.write_count(), 0, "{:#?}", fake.writes());
    }
    let noop = fake.requests();
    let after = get_atr(&fake, NS, "hpa").unwrap();
    assert_eq!(
        before.metadata.resource_version, after.metadata.resource_version,
        "not even a no-op write"
    );
    assert_eq!(
        before.status.unwrap().conditions[0].last_transition_time,
        after.status.unwrap().conditions[0].last_transition_time
    );
    eprintln!(
        "API calls per reconcile (1 AttachedResource x 3 versions): first {} ({} writes): {:?}; no-op {} (0 writes): {:?}",
        first.len(),
        first_writes,
        first.iter().map(|r| format!("{} {}", r.method, r.path)).collect::<Vec<_>>(),
        noop.len(),
        noop.iter().map(|r| format!("{} {}", r.method, r.path)).collect::<Vec<_>>()
    );
    // No-op: list Deployments + list copies (discovery is cached).
    assert_eq!(noop.len(), 2);
}

#[tokio::test]
async fn a_status_change_keeps_the_transition_time_only_while_the_status_holds() {
    let (fake, ctx) = setup().await;
    add_deployment(&fake, NS, "worker-v1", "worker", Some("v1"));
    add_atr(&fake, NS, "hpa", "worker", hpa_object());
    reconcile(&fake, &ctx, NS, "hpa").await.unwrap();
    let t0 = get_atr(&fake, NS, "hpa")
        .unwrap()
        .status
        .unwrap()
        .conditions[0]
        .last_transition_time
        .clone();
    // Seed an old transition time to tell "kept" from "stamped now".
    let atrs: Api<AttachedResource> = Api::namespaced(ctx.client.clone(), NS);
    let mut st = get_atr(&fake, NS, "hpa").unwrap().status.unwrap();
    st.conditions[0].last_transition_time = Some("2020-01-01T00:00:00Z".into());
    atrs.patch_status(
        "hpa",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": st})),
    )
    .await
    .unwrap();
    assert!(t0.is_some());

    // A second version: status changes (targets), Ready stays True → time kept.
    add_deployment(&fake, NS, "worker-v2", "worker", Some("v2"));
    reconcile(&fake, &ctx, NS, "hpa").await.unwrap();
    let st = get_atr(&fake, NS, "hpa").unwrap().status.unwrap();
    assert_eq!(st.targets.len(), 2);
    assert_eq!(
        st.conditions[0].last_transition_time.as_deref(),
        Some("2020-01-01T00:00:00Z")
    );

    // Ready flips to False → stamped now. (Delete v2's copy so it must be re-applied, and
    // make that apply fail.)
    let bad = "worker-v2-hpa-97f3b47f".to_string();
    fake.set_garbage_collection(false);
    let hpas: Api<kube::api::DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        NS,
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("autoscaling", "v2", "HorizontalPodAutoscaler"),
            HPAS,
        ),
    );
    hpas.delete(&bad, &DeleteParams::default()).await.unwrap();
    fake.fail(
        &format!("/apis/autoscaling/v2/namespaces/{NS}/{HPAS}/{bad}"),
        Fault::Status(500, "boom".into()),
        None,
    );
    reconcile(&fake, &ctx, NS, "hpa").await.unwrap_err();
    let c = &get_atr(&fake, NS, "hpa")
        .unwrap()
        .status
        .unwrap()
        .conditions[0];
    assert_eq!(c.status, "False");
    assert_ne!(
        c.last_transition_time.as_deref(),
        Some("2020-01-01T00:00:00Z")
    );
}

// ---------------------------------------------------------------------------------------
// Rendering (pure)
// ---------------------------------------------------------------------------------------

fn target(dep: &str, version: &str) -> Target {
    Target {
        deployment: dep.into(),
        uid: "uid-123".into(),
        version: version.into(),
        match_labels: BTreeMap::from([
            ("app".to_string(), "web".to_string()),
            ("version".to_string(), version.to_string()),
        ]),
    }
}

#[rstest]
#[case::empty_object(json!({}))]
#[case::null(Value::Null)]
fn render_fills_both_sentinels_names_labels_and_owner(#[case] sentinel: Value) {
    let object = json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"labels": {"tether.dev/version": "user-tries-to-override", "x": "{{ .WorkloadName }}"}},
        "spec": {"selector": {"matchLabels": sentinel.clone()}, "minAvailable": "{{ .Version }}"},
        "status": {"ignored": true}
    });
    let out = render_copy(&object, "web-pdb", "shop", "web", &target("web-v2", "v2")).unwrap();
    assert_eq!(
        out,
        json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {
                "name": "web-v2-web-pdb-be570e86",
                "namespace": "shop",
                "labels": {
                    "x": "web",
                    "tether.dev/attached-resource": "web-pdb",
                    "tether.dev/workload": "web",
                    "tether.dev/version": "v2"
                },
                "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "Deployment", "name": "web-v2",
                    "uid": "uid-123", "controller": true, "blockOwnerDeletion": true
                }]
            },
            "spec": {"selector": {"matchLabels": {"app": "web", "version": "v2"}}, "minAvailable": "v2"}
        }),
        "sentinel {sentinel}"
    );
}

#[test]
fn render_scale_target_ref_sentinels_and_absent_fields() {
    // The sentinels themselves: render_fills_in_every_scale_target_ref_sentinel.
    let t = target("api-v1", "v1");
    // Absent: left alone (no scaleTargetRef, no selector invented).
    let object = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"v": "{{ .Version }}"}});
    let out = render_copy(&object, "cm", "ns", "api", &t).unwrap();
    assert_eq!(out["data"], json!({"v": "v1"}));
    assert!(out.get("spec").is_none());
    // A selector without matchLabels is left alone too.
    let object = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                        "spec": {"selector": {"matchExpressions": []}}});
    let out = render_copy(&object, "p", "ns", "api", &t).unwrap();
    assert_eq!(out["spec"]["selector"], json!({"matchExpressions": []}));
}

#[test]
fn render_errors_name_the_problem() {
    let t = target("api-v1", "v1");
    let object = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"v": "{{ .Nope }}"}});
    let err = render_copy(&object, "cm", "ns", "api", &t).unwrap_err();
    assert!(matches!(err, RenderFailure::Placeholder(_)));
    assert!(
        err.to_string()
            .starts_with("spec.object.data.v: unknown placeholder"),
        "{err}"
    );

    let mut no_labels = t.clone();
    no_labels.match_labels.clear();
    let object = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                        "spec": {"selector": {"matchLabels": {}}}});
    let err = render_copy(&object, "p", "ns", "api", &no_labels).unwrap_err();
    assert_eq!(err, RenderFailure::NoMatchLabels("api-v1".into()));
    assert_eq!(
        render_copy(&json!("x"), "p", "ns", "api", &t).unwrap_err(),
        RenderFailure::NotAnObject
    );
}

#[test]
fn names_follow_spec_4_and_differ_per_version() {
    let a = render_copy(
        &hpa_object(),
        "worker-hpa",
        "payments",
        "payments-worker",
        &target("payments-worker-v2", "v2"),
    )
    .unwrap();
    assert_eq!(
        a["metadata"]["name"],
        "payments-worker-v2-worker-hpa-40a40f25"
    );
    let long = "checkout-frontend-canary-blue-green-east";
    let b = render_copy(&hpa_object(), "hpa", "ns", "checkout", &target(long, "v1")).unwrap();
    let c = render_copy(&hpa_object(), "hpa", "ns", "checkout", &target(long, "v2")).unwrap();
    assert_eq!(
        b["metadata"]["name"],
        "checkout-frontend-canary-blue-green-ea-6a9b60a5"
    );
    assert_eq!(
        c["metadata"]["name"],
        "checkout-frontend-canary-blue-green-ea-50cf037c"
    );
}

// ---------------------------------------------------------------------------------------
// The Controller end to end
// ---------------------------------------------------------------------------------------

async fn wait_for<F: Fn() -> bool>(what: &str, f: F) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn run_reconciles_watched_objects_and_deployment_changes_then_shuts_down() {
    let fake = FakeApiServer::start().await;
    let ctx = context(&fake, Duration::from_secs(300)).await;
    add_deployment(&fake, NS, "worker-v1", "worker", Some("v1"));
    add_atr(&fake, NS, "hpa", "worker", hpa_object());
    add_atr(&fake, "other", "hpa", "worker", hpa_object());

    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(attached::run(ctx.clone(), async move {
        let _ = rx.await;
    }));

    wait_for("the first copy", || copies(&fake, HPAS, NS).len() == 1).await;
    wait_for("the Ready status", || {
        get_atr(&fake, NS, "hpa")
            .and_then(|a| a.status)
            .is_some_and(|s| s.conditions.iter().any(|c| c.status == "True"))
    })
    .await;

    // A new Deployment of the workload triggers the AttachedResource through the watch.
    add_deployment(&fake, NS, "worker-v2", "worker", Some("v2"));
    wait_for("the second version's copy", || {
        copies(&fake, HPAS, NS).len() == 2
    })
    .await;
    // ... and only in its namespace: the AttachedResource in "other" has no targets.
    assert!(copies(&fake, HPAS, "other").is_empty());

    // A new AttachedResource is picked up.
    add_atr(&fake, NS, "pdb", "worker", pdb_object());
    wait_for("the PDB copies", || copies(&fake, PDBS, NS).len() == 2).await;

    // Deleting one goes through the finalizer.
    let atrs: Api<AttachedResource> = Api::namespaced(ctx.client.clone(), NS);
    atrs.delete("pdb", &DeleteParams::default()).await.unwrap();
    wait_for("the PDB cleanup", || {
        copies(&fake, PDBS, NS).is_empty() && get_atr(&fake, NS, "pdb").is_none()
    })
    .await;
    assert!(counter(&ctx, "success") >= 4);

    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("run returns after shutdown")
        .unwrap();
}

#[tokio::test]
async fn run_resyncs_to_repair_drift() {
    let fake = FakeApiServer::start().await;
    let ctx = context(&fake, Duration::from_millis(200)).await;
    add_deployment(&fake, NS, "worker-v1", "worker", Some("v1"));
    add_atr(&fake, NS, "hpa", "worker", hpa_object());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(attached::run(ctx.clone(), async move {
        let _ = rx.await;
    }));
    let name = "worker-v1-hpa-243004dd".to_string();
    wait_for("the copy", || copies(&fake, HPAS, NS).contains_key(&name)).await;
    // Copies are not watched: only the periodic resync can notice this.
    fake.set_garbage_collection(false);
    let mut edited = copies(&fake, HPAS, NS)[&name].clone();
    edited["apiVersion"] = json!("autoscaling/v2");
    edited["kind"] = json!("HorizontalPodAutoscaler");
    edited["spec"]["maxReplicas"] = json!(1);
    // A spec edit moves the generation, as the API server does on every spec change
    // (`insert` stores the object as given).
    let generation = edited["metadata"]["generation"].as_i64().unwrap();
    edited["metadata"]["generation"] = json!(generation + 1);
    fake.insert(edited);
    wait_for("the drift repair", || {
        copies(&fake, HPAS, NS)[&name]["spec"]["maxReplicas"] == 10
    })
    .await;
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("run returns after shutdown")
        .unwrap();
}

/// Requests tether made that list copies of `name` (label selector) in `ns`.
fn copy_lists(fake: &FakeApiServer, ns: &str, name: &str) -> usize {
    let selector = format!("{ATTACHED_LABEL}={name}");
    fake.requests_matching(
        "GET",
        &format!("/apis/autoscaling/v2/namespaces/{ns}/{HPAS}"),
    )
    .iter()
    .filter(|r| r.query_param("labelSelector").as_deref() == Some(selector.as_str()))
    .count()
}

/// Issue 14: after a restart every object is reconciled once with no per-object Deployment
/// LIST (targets come from the controller's Deployment watch), and a Deployment event
/// reconciles only the AttachedResources whose copies it changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_and_a_version_change_reconcile_only_what_they_affect() {
    let fake = FakeApiServer::start().await;
    for ns in ["a", "b"] {
        for v in ["v1", "v2"] {
            add_deployment(&fake, ns, &format!("worker-{v}"), "worker", Some(v));
        }
        for i in 0..5 {
            add_atr(&fake, ns, &format!("hpa-{i}"), "worker", hpa_object());
        }
    }
    let all_ready = |fake: &FakeApiServer| {
        ["a", "b"].iter().all(|ns| {
            (0..5).all(|i| {
                get_atr(fake, ns, &format!("hpa-{i}"))
                    .and_then(|a| a.status)
                    .is_some_and(|s| {
                        s.targets.len() == 2
                            && s.conditions
                                .iter()
                                .any(|c| c.type_ == "Ready" && c.status == "True")
                    })
            })
        })
    };

    // First run: converge, then stop.
    let ctx = context(&fake, Duration::from_secs(3600)).await;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let first = tokio::spawn(attached::run(ctx.clone(), async move {
        let _ = rx.await;
    }));
    wait_for("the first pass", || {
        copies(&fake, HPAS, "a").len() == 10
            && copies(&fake, HPAS, "b").len() == 10
            && all_ready(&fake)
    })
    .await;
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), first)
        .await
        .expect("run returns after shutdown")
        .unwrap();

    // Restart: a new process (new context), everything converged.
    fake.clear_requests();
    let writes = fake.write_count();
    let ctx = context(&fake, Duration::from_secs(3600)).await;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let second = tokio::spawn(attached::run(ctx.clone(), async move {
        let _ = rx.await;
    }));
    wait_for("the restart's pass", || counter(&ctx, "success") >= 10).await;
    assert_eq!(fake.write_count(), writes, "a no-op pass writes nothing");
    for ns in ["a", "b"] {
        let per_object =
            fake.requests_matching("GET", &format!("/apis/apps/v1/namespaces/{ns}/deployments"));
        assert!(
            per_object.is_empty(),
            "reconciles listed Deployments: {per_object:?}"
        );
    }

    // A change no copy depends on (replicas) in b, then a version change in a.
    let admin = fake.client().await;
    let deps = |ns: &str| -> Api<k8s_openapi::api::apps::v1::Deployment> {
        Api::namespaced(admin.clone(), ns)
    };
    let mark = fake.requests().len();
    let lists = |ns: &str| -> usize {
        (0..5)
            .map(|i| copy_lists(&fake, ns, &format!("hpa-{i}")))
            .sum()
    };
    let (a_lists, b_lists) = (lists("a"), lists("b"));
    deps("b")
        .patch(
            "worker-v1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .expect("patch replicas");
    deps("a")
        .patch(
            "worker-v2",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {VERSION_LABEL: "next"}}})),
        )
        .await
        .expect("patch the version");
    let version_copies = |v: &str| {
        copies(&fake, HPAS, "a")
            .values()
            .filter(|o| o["metadata"]["labels"][VERSION_LABEL] == v)
            .count()
    };
    wait_for("the version change", || {
        version_copies("next") == 5
            && version_copies("v2") == 0
            && (0..5).all(|i| {
                get_atr(&fake, "a", &format!("hpa-{i}"))
                    .and_then(|a| a.status)
                    .is_some_and(|s| s.targets.iter().any(|t| t.version == "next"))
            })
    })
    .await;
    // b's objects were not reconciled: no copy LIST for any of them since the mark (the
    // replicas event came before a's, so its reconciles would have started first).
    assert_eq!(lists("b"), b_lists, "b's AttachedResources were reconciled");
    // a's: one reconcile each for the change, and at most one more each for their own
    // status write; no per-object Deployment LIST.
    let a_change = lists("a") - a_lists;
    assert!(
        (5..=10).contains(&a_change),
        "{a_change} copy LISTs in a for 5 objects"
    );
    let deployment_lists = fake.requests()[mark..]
        .iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/apis/apps/v1/namespaces/"))
        .count();
    assert_eq!(deployment_lists, 0);

    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("run returns after shutdown")
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// Scale (timed, ignored by default)
// ---------------------------------------------------------------------------------------

fn hpa_api(ctx: &Context) -> Api<kube::api::DynamicObject> {
    Api::namespaced_with(
        ctx.client.clone(),
        NS,
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("autoscaling", "v2", "HorizontalPodAutoscaler"),
            HPAS,
        ),
    )
}

/// Reconciles `n` AttachedResources × 3 versions, `concurrency` at a time, twice (first
/// apply, then no-op); prints wall time and API calls of each pass.
async fn scale_run(n: usize, concurrency: usize) {
    use futures::StreamExt;
    let (fake, ctx) = setup().await;
    for i in 0..n {
        let w = format!("w{i}");
        for v in ["v1", "v2", "v3"] {
            add_deployment(&fake, NS, &format!("{w}-{v}"), &w, Some(v));
        }
        add_atr(&fake, NS, &format!("atr{i}"), &w, hpa_object());
    }
    let mut report = Vec::new();
    for pass in ["first", "no-op"] {
        let objs: Vec<AttachedResource> = (0..n)
            .map(|i| get_atr(&fake, NS, &format!("atr{i}")).unwrap())
            .collect();
        fake.clear_requests();
        let started = Instant::now();
        let results: Vec<_> = futures::stream::iter(objs)
            .map(|o| attached::reconcile(Arc::new(o), ctx.clone()))
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let took = started.elapsed();
        assert!(results.iter().all(Result::is_ok));
        let calls = fake.requests().len();
        let writes = fake.write_count();
        if pass == "no-op" {
            assert_eq!(writes, 0);
        }
        report.push(format!(
            "{pass} pass {took:.2?} ({calls} API calls, {writes} writes)"
        ));
    }
    assert_eq!(copies(&fake, HPAS, NS).len(), 3 * n);
    eprintln!(
        "scale: {n} AttachedResources x 3 versions, concurrency {concurrency}: {}",
        report.join("; ")
    );
}

/// `cargo test --release --test controller_attached -- --ignored --nocapture scale`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing run: 1,000 AttachedResources x 3 versions"]
async fn scale_1000_attached_resources_by_3_versions() {
    scale_run(1000, 1).await;
    scale_run(1000, 16).await;
}

/// The same path, small enough for every CI run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_smoke_20_by_3() {
    scale_run(20, 4).await;
}

// ---------------------------------------------------------------------------------------
// Label values (issue 11 defect 4)
// ---------------------------------------------------------------------------------------

/// A Deployment name of 83 characters (no `tether.dev/version` label, so it is the version).
const LONG_DEPLOYMENT: &str =
    "payments-worker-release-2026-11-30-build-4f1c2a9e-canary-blue-green-east-1.internal";
/// An AttachedResource name of 91 characters.
const LONG_ATR: &str =
    "payments-worker-horizontal-pod-autoscaler-with-a-name-long-enough-to-exceed-the-label-limit";
// Golden values, computed independently of tether with coreutils:
//   printf '%s' "$LONG_DEPLOYMENT" | sha256sum | cut -c1-8   -> eec0debe
//   printf '%s' "$LONG_ATR" | sha256sum | cut -c1-8          -> 972792eb
// and the first 54 characters of each value, trailing '-' / '.' / '_' removed.
const LONG_DEPLOYMENT_LABEL: &str =
    "payments-worker-release-2026-11-30-build-4f1c2a9e-cana-eec0debe";
const LONG_ATR_LABEL: &str = "payments-worker-horizontal-pod-autoscaler-with-a-name-972792eb";

fn assert_valid_label_values(obj: &Value) {
    for (k, v) in obj["metadata"]["labels"].as_object().expect("labels") {
        let v = v.as_str().expect("string label value");
        assert!(
            tether::naming::is_label_value(v),
            "label {k}={v:?} ({} characters) is not a valid label value",
            v.len()
        );
    }
}

#[test]
fn render_shortens_label_values_over_63_characters_with_a_hash() {
    let object = json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"labels": {"release": "{{ .Version }}", "team": "payments"}},
        "spec": {"scaleTargetRef": {}, "minReplicas": 1, "maxReplicas": 3}
    });
    let t = Target {
        deployment: LONG_DEPLOYMENT.into(),
        uid: "uid-1".into(),
        version: LONG_DEPLOYMENT.into(),
        match_labels: BTreeMap::from([("app".to_string(), "w".to_string())]),
    };
    let out = render_copy(&object, LONG_ATR, "payments", "worker", &t).unwrap();
    assert_valid_label_values(&out);
    let labels = &out["metadata"]["labels"];
    assert_eq!(labels[ATTACHED_LABEL], LONG_ATR_LABEL);
    assert_eq!(labels[VERSION_LABEL], LONG_DEPLOYMENT_LABEL);
    assert_eq!(
        labels["tether.dev/workload"], "worker",
        "short values are kept"
    );
    assert_eq!(labels["team"], "payments");
    assert_eq!(
        labels["release"], LONG_DEPLOYMENT_LABEL,
        "a placeholder rendered into a label value is shortened the same way"
    );
    // Names and references keep the full names: only label values are limited to 63.
    assert_eq!(out["spec"]["scaleTargetRef"]["name"], LONG_DEPLOYMENT);
    assert_eq!(
        out["metadata"]["ownerReferences"][0]["name"],
        LONG_DEPLOYMENT
    );
}

#[tokio::test]
async fn long_names_give_valid_labels_and_the_copy_is_found_again() {
    let (fake, ctx) = setup().await;
    add_deployment(&fake, NS, LONG_DEPLOYMENT, "worker", None);
    add_atr(&fake, NS, LONG_ATR, "worker", hpa_object());
    reconcile(&fake, &ctx, NS, LONG_ATR).await.unwrap();
    let hpas = copies(&fake, HPAS, NS);
    assert_eq!(hpas.len(), 1);
    let copy = hpas.values().next().unwrap();
    assert_valid_label_values(copy);
    assert_eq!(copy["metadata"]["labels"][ATTACHED_LABEL], LONG_ATR_LABEL);
    assert_eq!(
        copy["metadata"]["labels"][VERSION_LABEL],
        LONG_DEPLOYMENT_LABEL
    );
    // The copy is found by its (shortened) label: the next reconcile writes nothing and does
    // not mistake it for a stale copy.
    fake.clear_requests();
    reconcile(&fake, &ctx, NS, LONG_ATR).await.unwrap();
    assert_eq!(fake.write_count(), 0, "{:#?}", fake.writes());
    assert_eq!(copies(&fake, HPAS, NS).len(), 1);
}

// ---------------------------------------------------------------------------------------
// Bounded state (issue 11 defect 10)
// ---------------------------------------------------------------------------------------

/// An AttachedResource that failed (so it has a backoff entry) and is then deleted while
/// no reconcile is due (it never got its finalizer) must not keep its entry: the controller
/// drops entries of objects that no longer exist. A live failing object keeps its entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_entries_of_deleted_objects_are_dropped() {
    let fake = FakeApiServer::start().await;
    let client = fake.client().await;
    let ctx = Arc::new(Context::new(
        client.clone(),
        Metrics::new(),
        Arc::new(ApiResolver::new(client)),
        Some("test".into()),
        Settings {
            prune_every: Duration::from_millis(100),
            ..Settings::default()
        },
    ));
    add_deployment(&fake, NS, "worker-v1", "worker", Some("v1"));
    // "doomed" cannot even get its finalizer; "bad" fails on every reconcile (unknown kind).
    let doomed_path = format!("/apis/tether.dev/v1alpha1/namespaces/{NS}/attachedresources/doomed");
    fake.fail(&doomed_path, Fault::Status(500, "etcd is sad".into()), None);
    add_atr(&fake, NS, "doomed", "worker", hpa_object());
    add_atr(
        &fake,
        NS,
        "bad",
        "worker",
        json!({"apiVersion": "example.org/v1", "kind": "Nope", "spec": {}}),
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(attached::run(ctx.clone(), async move {
        let _ = rx.await;
    }));
    // Three failures of "doomed": its next retry is 8 s away.
    wait_for("three failed reconciles of doomed", || {
        fake.requests_matching("PATCH", &doomed_path).len() >= 3
    })
    .await;
    let doomed = format!("AttachedResource/{NS}/doomed");
    let bad = format!("AttachedResource/{NS}/bad");
    assert!(ctx.backoff.contains(&doomed));
    fake.clear_faults();
    let atrs: Api<AttachedResource> = Api::namespaced(ctx.client.clone(), NS);
    atrs.delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        get_atr(&fake, NS, "doomed").is_none(),
        "no finalizer: gone at once"
    );
    wait_for("the deleted object's backoff entry to go", || {
        !ctx.backoff.contains(&doomed)
    })
    .await;
    assert!(
        ctx.backoff.contains(&bad),
        "an object that still exists and still fails keeps its backoff"
    );
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("run returns after shutdown")
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// Idempotence against what the API server returns (issue 11 defect 1)
// ---------------------------------------------------------------------------------------

/// The API server stores normalised values (a quantity `"1000m"` comes back as `"1"`) and a
/// Deployment changes all the time (status, labels): none of that may make a converged
/// reconcile write. Prints the write calls per no-op reconcile.
#[tokio::test]
async fn normalised_copies_status_patches_label_edits_and_resyncs_write_nothing() {
    let (fake, ctx) = setup().await;
    let dep = add_deployment(&fake, NS, "worker-v1", "worker", Some("v1"));
    let object = json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "spec": {
            "scaleTargetRef": {}, "minReplicas": 1, "maxReplicas": 4,
            "metrics": [{"type": "Pods", "pods": {
                "metric": {"name": "inflight"},
                "target": {"type": "AverageValue", "averageValue": "1000m"}}}]
        }
    });
    add_atr(&fake, NS, "hpa", "worker", object);
    reconcile(&fake, &ctx, NS, "hpa").await.unwrap();
    let name = "worker-v1-hpa-243004dd".to_string();
    let mut stored = copies(&fake, HPAS, NS)[&name].clone();
    assert!(
        stored["metadata"]["annotations"][APPLIED_HASH_ANNOTATION].is_string(),
        "the copy carries the hash it was applied with: {stored}"
    );
    // What a real API server keeps: the quantity normalised, defaults filled in. Not an edit:
    // the generation stays.
    stored["apiVersion"] = json!("autoscaling/v2");
    stored["kind"] = json!("HorizontalPodAutoscaler");
    stored["spec"]["metrics"][0]["pods"]["target"]["averageValue"] = json!("1");
    stored["spec"]["behavior"] = json!({"scaleUp": {"stabilizationWindowSeconds": 0}});
    fake.insert(stored);

    let mut per_reconcile = Vec::new();
    let noop = |what: &'static str| {
        let fake = &fake;
        let ctx = ctx.clone();
        async move {
            fake.clear_requests();
            reconcile(fake, &ctx, NS, "hpa").await.unwrap();
            let writes = fake.writes();
            assert!(writes.is_empty(), "{what}: {writes:#?}");
            (what, writes.len())
        }
    };
    per_reconcile.push(noop("normalised copy").await);
    // The Deployment's status moves (a rollout), then someone labels it.
    let mut d = dep.clone();
    d["status"] =
        json!({"observedGeneration": 2, "replicas": 3, "readyReplicas": 2, "updatedReplicas": 3});
    fake.insert(d.clone());
    per_reconcile.push(noop("Deployment status patch").await);
    d["metadata"]["labels"]["team"] = json!("payments");
    fake.insert(d);
    per_reconcile.push(noop("Deployment label edit").await);
    per_reconcile.push(noop("resync").await);
    eprintln!("write calls per no-op reconcile: {per_reconcile:?}");
}

/// The reference a typed Go client writes for an unset `ScaleTargetRef` (its zero value,
/// `kind` and `name` empty, `apiVersion` omitted) is a "fill this in" sentinel like `{}` and
/// `null`: each copy points at its own Deployment.
#[rstest]
#[case::typed_zero_value(json!({"kind": "", "name": ""}))]
#[case::typed_zero_value_with_api_version(json!({"apiVersion": "", "kind": "", "name": ""}))]
#[case::empty_object(json!({}))]
#[case::null(json!(null))]
fn render_fills_in_every_scale_target_ref_sentinel(#[case] sentinel: Value) {
    let object = json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "spec": {"scaleTargetRef": sentinel, "minReplicas": 1, "maxReplicas": 3}
    });
    let t = Target {
        deployment: "worker-v1".into(),
        uid: "uid-1".into(),
        version: "v1".into(),
        match_labels: BTreeMap::from([("app".to_string(), "worker".to_string())]),
    };
    let out = render_copy(&object, "hpa", NS, "worker", &t).unwrap();
    assert_eq!(
        out["spec"]["scaleTargetRef"],
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "worker-v1"})
    );
}

/// The "copy up to date" decision, table-driven: only what the API server preserves
/// verbatim counts (annotation, recorded generation, owner, tether's labels); spec values,
/// apiVersion/kind and server-added fields never do. Each case edits the live copy as a LIST
/// returns it, then decides against the rendered hash `h1` unless it names another.
#[rstest]
#[case::as_listed_by_the_server(|_: &mut Value| {}, "h1", Some(3), true)]
#[case::another_rendered_hash(|_: &mut Value| {}, "h2", Some(3), false)]
#[case::generation_moved_by_a_spec_edit(|_: &mut Value| {}, "h1", Some(2), false)]
#[case::no_generation_recorded_yet(|_: &mut Value| {}, "h1", None, false)]
#[case::annotation_removed(
    |v: &mut Value| v["metadata"]["annotations"] = json!({}),
    "h1",
    Some(3),
    false
)]
#[case::owner_replaced(
    |v: &mut Value| v["metadata"]["ownerReferences"][0]["uid"] = json!("other"),
    "h1",
    Some(3),
    false
)]
#[case::tethers_label_changed(
    |v: &mut Value| v["metadata"]["labels"][VERSION_LABEL] = json!("v9"),
    "h1",
    Some(3),
    false
)]
#[case::being_deleted(
    |v: &mut Value| v["metadata"]["deletionTimestamp"] = json!("2026-11-30T12:00:00Z"),
    "h1",
    Some(3),
    false
)]
fn copy_up_to_date_decides_from_what_the_server_preserves(
    #[case] edit: fn(&mut Value),
    #[case] hash: &str,
    #[case] generation: Option<i64>,
    #[case] want: bool,
) {
    let rendered = json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "c", "labels": {ATTACHED_LABEL: "hpa", VERSION_LABEL: "v1"}},
        "spec": {"maxReplicas": 10, "metrics": [{"target": {"averageValue": "1000m"}}]}
    });
    // As a LIST returns it: no apiVersion/kind, normalised values, server fields.
    let mut live = json!({
        "metadata": {
            "name": "c", "generation": 3, "resourceVersion": "77", "uid": "u",
            "labels": {ATTACHED_LABEL: "hpa", VERSION_LABEL: "v1", "added-by-someone": "x"},
            "annotations": {APPLIED_HASH_ANNOTATION: "h1"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "d",
                                 "uid": "dep-uid", "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {"maxReplicas": 10, "metrics": [{"target": {"averageValue": "1"}}],
                 "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0}}},
        "status": {"currentReplicas": 2}
    });
    edit(&mut live);
    let obj: kube::api::DynamicObject = serde_json::from_value(live).unwrap();
    assert_eq!(
        attached::copy_up_to_date(&obj, &rendered, hash, generation, "dep-uid"),
        want
    );
}
