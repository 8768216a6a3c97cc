//! `tether serve` in a (fake) cluster runs the controllers under the Lease: two replicas,
//! one leader that fans AttachedResources out, and a hand-over when the leader stops.

mod common;
#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;

use std::time::{Duration, Instant};

use common::*;
use fake_apiserver::FakeApiServer;
use serde_json::json;

fn leader_of(s: &Server) -> Option<f64> {
    metric_value(&s.metrics(), "tether_leader")
}

async fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn deployment(name: &str, version: &str) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "payments", "uid": format!("uid-{name}"),
                     "labels": {"tether.dev/workload": "worker", "tether.dev/version": version}},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_reconciles_and_hands_over() {
    let fake = FakeApiServer::start().await;
    fake.set_garbage_collection(false);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.write_kubeconfig(dir.path());
    let start = |pod: &str| {
        let args = [
            "--controllers",
            "attached",
            "--pod-name",
            pod,
            "--pod-namespace",
            "tether-system",
            "--lease-duration",
            "2s",
        ];
        tokio::task::block_in_place(|| Server::start_cluster(&kubeconfig, &args))
    };
    let mut replicas = vec![start("replica-a"), start("replica-b")];
    wait_for("one leader", Duration::from_secs(15), || {
        replicas.iter().any(|r| leader_of(r) == Some(1.0))
    })
    .await;
    let lead = replicas
        .iter()
        .position(|r| leader_of(r) == Some(1.0))
        .unwrap();
    let mut first = replicas.remove(lead);
    let second = replicas.pop().unwrap();
    assert_eq!(leader_of(&second), Some(0.0), "two leaders");

    fake.insert(deployment("worker-v1", "v1"));
    // Stored straight into the fake (no webhooks here), so stamped as the webhook would.
    fake.insert(stamped(json!({
        "apiVersion": "tether.dev/v1alpha1", "kind": "AttachedResource",
        "metadata": {"name": "worker-hpa", "namespace": "payments"},
        "spec": {"workloadRef": {"name": "worker"},
                 "object": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                            "spec": {"scaleTargetRef": {}, "minReplicas": 1, "maxReplicas": 3}}}
    })));
    let copies = |fake: &FakeApiServer| -> Vec<String> {
        let mut v: Vec<String> = fake
            .list_all("horizontalpodautoscalers")
            .iter()
            .map(|h| {
                h["spec"]["scaleTargetRef"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        v.sort();
        v
    };
    wait_for(
        "the leader to create the copy",
        Duration::from_secs(15),
        || copies(&fake) == ["worker-v1"],
    )
    .await;
    let m = first.metrics();
    assert!(
        metric_value(
            &m,
            r#"tether_reconcile_total{controller="attached",result="success"}"#
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{m}"
    );
    // The series exists from start-up (so alerts see a 0), and stays 0 on the follower.
    assert_eq!(
        metric_value(
            &second.metrics(),
            r#"tether_reconcile_total{controller="attached",result="success"}"#
        ),
        Some(0.0),
        "the follower reconciled"
    );

    // The leader shuts down cleanly: it releases the Lease and the other replica takes over.
    first.signal(libc::SIGTERM);
    assert!(
        tokio::task::block_in_place(|| first.wait_exit(Duration::from_secs(15)))
            .unwrap()
            .success()
    );
    wait_for(
        "the second replica to lead",
        Duration::from_secs(20),
        || leader_of(&second) == Some(1.0),
    )
    .await;
    // tether_leader_transitions_total counts the hand-over on the replica that took over.
    assert_eq!(
        metric_value(&second.metrics(), "tether_leader_transitions_total"),
        Some(1.0)
    );
    fake.insert(deployment("worker-v2", "v2"));
    wait_for(
        "the new leader to fan out to v2",
        Duration::from_secs(15),
        || copies(&fake) == ["worker-v1", "worker-v2"],
    )
    .await;
}
