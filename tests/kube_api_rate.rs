//! `--kube-api-qps` / `--kube-api-burst` reach tether's Kubernetes client: the fake API
//! server sees tether's requests arrive no faster than the limit.

mod common;
#[allow(unused_imports)]
#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;
#[path = "support/tether_cluster.rs"]
mod tether_cluster;

use std::time::{Duration, Instant};

use serde_json::json;
use tether_cluster::{fake_with_chart_rbac, TetherCluster, TETHER_USER};

fn tether_requests(fake: &fake_apiserver::FakeApiServer) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.user == TETHER_USER)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_sees_tether_requests_at_most_at_the_configured_rate() {
    let fake = fake_with_chart_rbac().await;
    fake.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "payments"}}));
    for v in ["v1", "v2"] {
        fake.insert(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": format!("worker-{v}"), "namespace": "payments",
                         "labels": {"tether.dev/workload": "worker", "tether.dev/version": v}},
            "spec": {"selector": {"matchLabels": {"app": v}},
                     "template": {"metadata": {"labels": {"app": v}}}}
        }));
    }
    // Ten objects: a first pass of about six calls each, far more than the window needs.
    for i in 0..10 {
        fake.insert(common::stamped(json!({
            "apiVersion": "tether.dev/v1alpha1", "kind": "AttachedResource",
            "metadata": {"name": format!("scaler-{i}"), "namespace": "payments"},
            "spec": {"workloadRef": {"name": "worker"},
                     "object": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                                "spec": {"scaleTargetRef": {}, "minReplicas": 1, "maxReplicas": 3}}}
        })));
    }
    let c = TetherCluster::start_on(
        fake,
        &[
            "--controllers",
            "attached",
            "--kube-api-qps",
            "20",
            "--kube-api-burst",
            "1",
        ],
    )
    .await;
    assert!(
        c.tether.logs().contains("Kubernetes API client rate limit"),
        "{}",
        c.tether.logs()
    );

    // From now on, 30 more requests: with 20/s and a burst of 1, the 30th cannot arrive
    // before 29 x 50 ms after the first token available now (minus at most two tokens
    // taken just before and still on the wire).
    const MORE: usize = 30;
    let (start, before) = (Instant::now(), tether_requests(&c.fake));
    let deadline = start + Duration::from_secs(60);
    while tether_requests(&c.fake) < before + MORE {
        assert!(
            Instant::now() < deadline,
            "tether stopped sending requests\n{}",
            c.tether.logs()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = start.elapsed();
    let floor = Duration::from_millis(50) * (MORE as u32 - 3);
    assert!(
        took >= floor,
        "{MORE} requests in {took:?}: faster than 20/s (at least {floor:?})"
    );
    // And the work still completes under the limit.
    let deadline = Instant::now() + Duration::from_secs(60);
    while c
        .fake
        .count("autoscaling", "horizontalpodautoscalers", |_| true)
        < 20
    {
        assert!(
            Instant::now() < deadline,
            "first pass did not finish\n{}",
            c.tether.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
