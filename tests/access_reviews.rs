//! Issue 14, the cluster path: on a cold AttachedResource admission the user's access review
//! and tether's own five run at the same time (one round trip, not two), a warm admission asks
//! nothing, and tether's own answers are renewed in the background, with no request, as the
//! fake API server (which delays every access review) observes.

mod common;
#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;
#[path = "support/tether_cluster.rs"]
mod tether_cluster;

use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;
use tether_cluster::*;

const NS: &str = "shop";
const SAR_PATH: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";

fn subjects(c: &TetherCluster) -> Vec<String> {
    c.fake
        .requests_matching("POST", SAR_PATH)
        .iter()
        .map(|r| {
            r.body
                .as_ref()
                .and_then(|b| b.pointer("/spec/user"))
                .and_then(|u| u.as_str())
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

async fn create(c: &TetherCluster, name: &str) {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("tether.dev", "v1alpha1", "AttachedResource"),
        "attachedresources",
    );
    let atrs = Api::<DynamicObject>::namespaced_with(c.alice().await, NS, &ar);
    let atr: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "tether.dev/v1alpha1", "kind": "AttachedResource",
        "metadata": {"name": name},
        "spec": {"workloadRef": {"name": "worker"},
                 "object": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                            "spec": {"scaleTargetRef": {}, "minReplicas": 1, "maxReplicas": 3}}}
    }))
    .unwrap();
    atrs.create(&PostParams::default(), &atr)
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e}\n{}", c.tether.logs()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_own_reviews_run_together_and_own_ones_renew_in_the_background() {
    let c =
        TetherCluster::start(&["--controllers", "none", "--access-review-cache-ttl", "2s"]).await;
    c.add_namespace(NS);
    // Reviews sent one after another never overlap at the fake; concurrent ones always do.
    c.fake.set_access_review_delay(Duration::from_millis(300));
    c.fake.clear_requests();
    c.fake.clear_access_reviews_seen_together();

    create(&c, "cold").await;
    let mut cold = subjects(&c);
    cold.sort();
    let mut want = vec![TETHER_USER.to_string(); 5];
    want.insert(0, ALICE.to_string());
    assert_eq!(
        cold, want,
        "one review for alice (create), five for tether's verbs"
    );
    assert!(
        c.fake
            .access_reviews_seen_together()
            .contains(&vec![ALICE.to_string(), TETHER_USER.to_string()]),
        "alice's and tether's reviews were never in flight together: {:?}",
        c.fake.access_reviews_seen_together()
    );

    // Warm: the same questions again are answered from the cache.
    c.fake.clear_requests();
    create(&c, "warm").await;
    assert!(
        !subjects(&c).iter().any(|s| s == ALICE),
        "a warm admission asked again: {:?}",
        subjects(&c)
    );

    // No request from here on: tether's own answers (read within the TTL) are re-asked on
    // their own, every half TTL.
    c.fake.clear_requests();
    let calls = c.fake.admission_calls().len();
    let deadline = Instant::now() + Duration::from_secs(20);
    while subjects(&c).iter().filter(|s| *s == TETHER_USER).count() < 5 {
        assert!(
            Instant::now() < deadline,
            "no background refresh: {:?}\n{}",
            subjects(&c),
            c.tether.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        c.fake.admission_calls().len(),
        calls,
        "nothing was admitted meanwhile"
    );
    assert!(
        !subjects(&c).iter().any(|s| s == ALICE),
        "user answers are not refreshed"
    );
}
