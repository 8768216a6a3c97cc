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

/// The fake with the chart's RBAC, two versions of workload `worker` in `payments`, and
/// `ars` AttachedResources of it (two copies each to create).
async fn seeded(ars: usize) -> fake_apiserver::FakeApiServer {
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
    for i in 0..ars {
        fake.insert(common::stamped(json!({
            "apiVersion": "tether.dev/v1alpha1", "kind": "AttachedResource",
            "metadata": {"name": format!("scaler-{i}"), "namespace": "payments"},
            "spec": {"workloadRef": {"name": "worker"},
                     "object": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                                "spec": {"scaleTargetRef": {}, "minReplicas": 1, "maxReplicas": 3}}}
        })));
    }
    fake
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_sees_tether_requests_at_most_at_the_configured_rate() {
    // Ten objects: a first pass of about six calls each, far more than the window needs.
    let fake = seeded(10).await;
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

/// The Lease writes (acquire, renewals) tether sent so far, in order.
fn lease_writes(fake: &fake_apiserver::FakeApiServer) -> Vec<fake_apiserver::Recorded> {
    fake.requests()
        .into_iter()
        .filter(|r| r.user == TETHER_USER && r.is_write() && r.path.contains("/leases/"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_renewals_do_not_wait_behind_throttled_reconcile_traffic() {
    // Forty objects (about 250 calls) at 2 calls/s: the shared bucket stays saturated far
    // longer than the window below.
    const ARS: usize = 40;
    const LEASE: Duration = Duration::from_secs(6);
    let c = TetherCluster::start_on(
        seeded(ARS).await,
        &[
            "--controllers",
            "attached",
            "--kube-api-qps",
            "2",
            "--kube-api-burst",
            "1",
            "--lease-duration",
            "6s",
        ],
    )
    .await;

    // The acquisition and four renewals (one every two thirds of the lease).
    const WRITES: usize = 5;
    let deadline = Instant::now() + Duration::from_secs(120);
    while lease_writes(&c.fake).len() < WRITES {
        assert!(
            Instant::now() < deadline,
            "the Lease was not renewed under throttled reconcile traffic: {} writes\n{}",
            lease_writes(&c.fake).len(),
            c.tether.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let leases = lease_writes(&c.fake);
    let (first, last) = (leases[0].at, leases[WRITES - 1].at);

    // The reconciles were throttled all along: work was still pending at the last renewal,
    // and tether's other calls in the window came no faster than 2/s (plus the burst and
    // the calls already on the wire when it opened).
    let copies = c
        .fake
        .count("autoscaling", "horizontalpodautoscalers", |_| true);
    assert!(
        copies < 2 * ARS,
        "the first pass ended early: {copies} copies"
    );
    let others = c
        .fake
        .requests()
        .iter()
        .filter(|r| r.user == TETHER_USER && !r.path.contains("/leases/"))
        .filter(|r| r.at >= first && r.at <= last)
        .count();
    let window = last.duration_since(first).as_secs_f64();
    assert!(
        others as f64 <= 2.0 * window + 4.0,
        "{others} calls in {window:.1} s: the bucket did not limit the reconciles"
    );

    // Every renewal arrived within the lease duration of the one before, the Lease is still
    // tether-0's, and leadership never changed hands.
    for pair in leases.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(
            gap < LEASE,
            "a renewal came {gap:?} after the previous one (lease {LEASE:?})\n{}",
            c.tether.logs()
        );
    }
    let lease = c
        .fake
        .get(
            "coordination.k8s.io",
            "v1",
            "leases",
            Some(tether_cluster::TETHER_NAMESPACE),
            "tether-controller",
        )
        .expect("the Lease");
    assert_eq!(lease["spec"]["holderIdentity"], "tether-0");
    assert_eq!(
        common::metric_value(&c.tether.metrics(), "tether_leader_transitions_total"),
        Some(1.0),
        "{}",
        c.tether.logs()
    );
    let logs = c.tether.logs();
    assert!(
        !logs.contains("lost the controller lease") && !logs.contains("leader election stopped"),
        "{logs}"
    );
}
