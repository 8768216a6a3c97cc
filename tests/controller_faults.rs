//! Issue 8: the fan-out controller under API faults — 409 conflicts, 429 throttling, 5xx and
//! dropped connections (watches included). It retries with backoff, loses no copy, makes no
//! duplicate, and converges once the API recovers.

#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_apiserver::{FakeApiServer, Fault};
use serde_json::json;
use tether::controller::{attached, Context, Settings};
use tether::discovery::ApiResolver;
use tether::metrics::Metrics;

const NS: &str = "payments";

fn deployment(name: &str, version: &str) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "uid": format!("uid-{name}"),
                     "labels": {"tether.dev/workload": "worker", "tether.dev/version": version}},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    })
}

/// The AttachedResource `hpa` as the fake stores it.
fn stored_ar(fake: &FakeApiServer) -> Option<serde_json::Value> {
    fake.get(
        "tether.dev",
        "v1alpha1",
        "attachedresources",
        Some(NS),
        "hpa",
    )
}

fn hpa_names(fake: &FakeApiServer) -> Vec<String> {
    let mut v: Vec<String> = fake
        .list_all("horizontalpodautoscalers")
        .iter()
        .map(|h| h["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_converges_through_conflicts_throttling_errors_and_dropped_watches() {
    let fake = FakeApiServer::start().await;
    fake.set_garbage_collection(false);
    let client = fake.client().await;
    let metrics = Metrics::new();
    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics.clone(),
        Arc::new(ApiResolver::new(client)),
        Some("test".into()),
        Settings {
            auto_create_domain_claims: false,
            resync: Duration::from_secs(300),
            ..Settings::default()
        },
    ));
    for (name, v) in [
        ("worker-v1", "v1"),
        ("worker-v2", "v2"),
        ("worker-v3", "v3"),
    ] {
        fake.insert(deployment(name, v));
    }
    fake.insert(json!({
        "apiVersion": "tether.dev/v1alpha1", "kind": "AttachedResource",
        "metadata": {"name": "hpa", "namespace": NS},
        "spec": {"workloadRef": {"name": "worker"},
                 "object": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                            "spec": {"scaleTargetRef": {}, "minReplicas": 1, "maxReplicas": 4}}}
    }));
    // Faults, each for a few calls: conflicts on applies, throttling on status writes, 5xx on
    // namespaced Deployment LISTs (which only a reconcile without the controller's watch
    // makes), and dropped connections on the AttachedResource list/watch.
    let hpas = format!("/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers/");
    fake.fail(
        &hpas,
        Fault::Status(
            409,
            "Operation cannot be fulfilled: the object has been modified".into(),
        ),
        Some(2),
    );
    fake.fail(
        "/apis/apps/v1/namespaces/payments/deployments",
        Fault::Status(500, "etcdserver: request timed out".into()),
        Some(2),
    );
    fake.fail(
        "/apis/tether.dev/v1alpha1/namespaces/payments/attachedresources/hpa/status",
        Fault::Status(429, "too many requests".into()),
        Some(3),
    );
    fake.fail(
        "/apis/tether.dev/v1alpha1/attachedresources",
        Fault::Close,
        Some(2),
    );

    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(attached::run(ctx.clone(), async move {
        let _ = rx.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(40);
    let names_at_convergence = loop {
        let names = hpa_names(&fake);
        let ready = stored_ar(&fake)
            .and_then(|a| a["status"]["conditions"].as_array().cloned())
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
        if names.len() == 3 && ready {
            break names;
        }
        assert!(
            Instant::now() < deadline,
            "did not converge: copies {names:?}, ready {ready}"
        );
        assert!(names.len() <= 3, "duplicate copies: {names:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Exactly one copy per version, each pointing at its own Deployment.
    let targets: Vec<String> = fake
        .list_all("horizontalpodautoscalers")
        .iter()
        .map(|h| {
            h["spec"]["scaleTargetRef"]["name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(targets, ["worker-v1", "worker-v2", "worker-v3"]);
    let errors = metrics
        .reconcile_total
        .with_label_values(&["attached", "error"])
        .get();
    assert!(errors >= 1, "the faults were never hit");
    // Once converged, the state is stable: a further reconcile, triggered by an edit of the
    // AttachedResource that does not concern the copies (an annotation), leaves the same
    // three. (A Deployment annotation no longer triggers one: nothing a copy is rendered
    // from changed.)
    let reconciled = || {
        metrics
            .reconcile_total
            .with_label_values(&["attached", "success"])
            .get()
    };
    let before = reconciled();
    let mut touched = stored_ar(&fake).expect("the AttachedResource");
    touched["metadata"]["annotations"]["example.com/touched"] = json!("yes");
    fake.insert(touched);
    let deadline = Instant::now() + Duration::from_secs(20);
    while reconciled() <= before {
        assert!(Instant::now() < deadline, "no reconcile after the touch");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(hpa_names(&fake), names_at_convergence);
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap();
}
