//! Admission in cluster mode: the real binary, its Kubernetes client pointed at the fake API
//! server in tests/support (discovery, SubjectAccessReviews, watched Deployments and
//! AppDomains), over real TLS.

mod common;
#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;

use std::time::Duration;

use base64::Engine;
use common::*;
use fake_apiserver::{AccessAnswer, FakeApiServer, Fault};
use serde_json::{json, Value};

struct Env {
    fake: FakeApiServer,
    server: Server,
    _dir: tempfile::TempDir,
}

async fn setup(extra: &[&str]) -> Env {
    let fake = FakeApiServer::start().await;
    fake.add_knative_resources();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.write_kubeconfig(dir.path());
    let mut args = vec![
        "--controllers",
        "none",
        "--pod-namespace",
        "tether-system",
        "--service-account-name",
        "tether",
        "--domain-root",
        "apps.example.com",
    ];
    args.extend_from_slice(extra);
    let server = tokio::task::block_in_place(|| Server::start_cluster(&kubeconfig, &args));
    Env {
        fake,
        server,
        _dir: dir,
    }
}

fn atr_review(uid: &str, op: &str, object: Value) -> Value {
    let obj = json!({
        "apiVersion": "tether.dev/v1alpha1", "kind": "AttachedResource",
        "metadata": {"name": "worker-hpa", "namespace": "payments"},
        "spec": {"workloadRef": {"name": "payments-worker"}, "object": object}
    });
    let mut r = review(
        uid,
        "tether.dev",
        "v1alpha1",
        "AttachedResource",
        "attachedresources",
        op,
        "payments",
        Some(obj),
        None,
    );
    r["request"]["userInfo"] = json!({
        "username": "alice@example.com", "uid": "u-123",
        "groups": ["devs", "system:authenticated"],
        "extra": {"iam.gke.io/user-assertion": ["abc"], "scopes": ["a", "b"]}
    });
    r
}

fn hpa() -> Value {
    json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "spec": {"scaleTargetRef": {}, "maxReplicas": 3}})
}

fn sar_specs(fake: &FakeApiServer) -> Vec<Value> {
    fake.requests_matching("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews")
        .into_iter()
        .map(|r| r.body.unwrap()["spec"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_reviews_carry_the_full_identity_and_are_cached() {
    let env = setup(&[]).await;
    env.fake.clear_requests();
    let v = post(
        &env.server,
        "/validate?timeout=10s",
        &atr_review("s1", "CREATE", hpa()),
    )
    .await;
    assert_eq!(v["allowed"], true, "{v}");
    let mut specs = sar_specs(&env.fake);
    specs.sort_by_key(|s| {
        (
            s["user"].as_str().unwrap().to_string(),
            s["resourceAttributes"]["verb"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    });
    assert_eq!(specs.len(), 6, "{specs:#?}");
    assert_eq!(
        specs[0],
        json!({
            "user": "alice@example.com", "uid": "u-123",
            "groups": ["devs", "system:authenticated"],
            "extra": {"iam.gke.io/user-assertion": ["abc"], "scopes": ["a", "b"]},
            "resourceAttributes": {"verb": "create", "group": "autoscaling", "version": "v2", "resource": "horizontalpodautoscalers", "namespace": "payments"}
        })
    );
    let sa_groups = json!([
        "system:serviceaccounts",
        "system:serviceaccounts:tether-system",
        "system:authenticated"
    ]);
    let sa_verbs: Vec<&str> = specs[1..]
        .iter()
        .map(|s| s["resourceAttributes"]["verb"].as_str().unwrap())
        .collect();
    // Every verb the controller uses on copies (SPEC 5.1.8; issue 11 defect 8).
    assert_eq!(sa_verbs, ["create", "delete", "get", "list", "patch"]);
    for s in &specs[1..] {
        assert_eq!(s["user"], "system:serviceaccount:tether-system:tether");
        assert_eq!(s["groups"], sa_groups);
        assert!(s.get("extra").is_none() && s.get("uid").is_none(), "{s}");
        assert_eq!(
            s["resourceAttributes"]["resource"],
            "horizontalpodautoscalers"
        );
        assert_eq!(s["resourceAttributes"]["namespace"], "payments");
    }
    // The same request again is answered from the cache: no new reviews.
    env.fake.clear_requests();
    let v = post(
        &env.server,
        "/validate?timeout=10s",
        &atr_review("s2", "CREATE", hpa()),
    )
    .await;
    assert_eq!(v["allowed"], true);
    assert!(sar_specs(&env.fake).is_empty());
    let m = env.server.metrics();
    assert_eq!(
        metric_value(
            &m,
            r#"tether_access_reviews_total{cache="hit",identity="tether",result="allowed"}"#
        ),
        Some(5.0),
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            r#"tether_access_reviews_total{cache="miss",identity="user",result="allowed"}"#
        ),
        Some(1.0),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_service_account_verb_is_named() {
    let env = setup(&[]).await;
    env.fake.set_access_rule(|spec| {
        let sa = spec["user"] == "system:serviceaccount:tether-system:tether";
        if sa && spec["resourceAttributes"]["verb"] == "delete" {
            AccessAnswer::no_opinion("no RBAC rule grants it")
        } else {
            AccessAnswer::allow("ok")
        }
    });
    let v = post(
        &env.server,
        "/validate?timeout=10s",
        &atr_review("d1", "CREATE", hpa()),
    )
    .await;
    assert_eq!(v["allowed"], false);
    assert_eq!(v["status"]["code"], 403);
    let msg = v["status"]["message"].as_str().unwrap();
    assert!(msg.starts_with("tether's service account \"system:serviceaccount:tether-system:tether\" may not delete horizontalpodautoscalers.autoscaling in namespace \"payments\"; tether needs create, delete, get, list and patch on every kind it copies"), "{msg}");
    // The authorizer's reason (it can name roles and bindings) is logged, not shown.
    assert!(!msg.contains("no RBAC rule grants it"), "{msg}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !env.server.logs().contains("no RBAC rule grants it") {
        assert!(
            std::time::Instant::now() < deadline,
            "the authorizer's reason was not logged: {}",
            env.server.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!msg.contains("may not create"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_reviews_that_fail_deny_with_500_and_the_server_stays_responsive() {
    let env = setup(&[
        "--access-review-cache-ttl",
        "0s",
        "--access-review-timeout",
        "1s",
    ])
    .await;
    env.fake.fail(
        "/apis/authorization.k8s.io",
        Fault::Status(500, "etcd is on fire".into()),
        None,
    );
    let v = post(
        &env.server,
        "/validate?timeout=10s",
        &atr_review("f1", "CREATE", hpa()),
    )
    .await;
    assert_eq!(v["allowed"], false);
    assert_eq!(v["status"]["code"], 500);
    assert_eq!(v["status"]["reason"], "InternalError");
    let msg = v["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("could not check whether user \"alice@example.com\" may create"),
        "{msg}"
    );
    assert!(msg.contains("fails closed"), "{msg}");
    // An unreachable API server (connections dropped): also a 500, never an allow.
    env.fake.clear_faults();
    env.fake
        .fail("/apis/authorization.k8s.io", Fault::Close, None);
    let v = post(
        &env.server,
        "/validate?timeout=10s",
        &atr_review("f1b", "CREATE", hpa()),
    )
    .await;
    assert_eq!(v["allowed"], false);
    assert_eq!(v["status"]["code"], 500, "{v}");
    assert!(
        v["status"]["message"]
            .as_str()
            .unwrap()
            .contains("could not check whether"),
        "{v}"
    );
    // A stalled API server: we answer (deny, 500) within the API server's timeout.
    env.fake.clear_faults();
    env.fake.fail(
        "/apis/authorization.k8s.io",
        Fault::Stall(Duration::from_secs(30)),
        None,
    );
    let started = std::time::Instant::now();
    let v = post(
        &env.server,
        "/validate?timeout=2s",
        &atr_review("f2", "CREATE", hpa()),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(v["status"]["code"], 500, "{v}");
    assert!(
        v["status"]["message"]
            .as_str()
            .unwrap()
            .contains("timed out after 1000 ms"),
        "{v}"
    );
    // Meanwhile other requests are served.
    let mut h1 = H1::connect(env.server.addr, &env.server.ca).await;
    let r = h1.send(request("GET", "/healthz", None, vec![])).await;
    assert_eq!(r.status, 200);
    env.fake.clear_faults();
    // Reviews still in flight against the stalled server run out their own timeout first;
    // wait for the observable recovery (an allowed answer) rather than for that timeout.
    let v = post_until(&env, &atr_review("f3", "CREATE", hpa()), |v| {
        v["allowed"] == true
    })
    .await;
    assert_eq!(v["allowed"], true, "recovers once the API server does: {v}");
}

/// Posts `review` until `done` holds for the answer (or 20 s pass), returning the last answer.
async fn post_until(env: &Env, review: &Value, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let v = post(&env.server, "/validate?timeout=10s", review).await;
        if done(&v) || std::time::Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_finds_a_crd_installed_after_start_and_fails_closed() {
    let env = setup(&[]).await;
    let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"size": 3}});
    let v = post(
        &env.server,
        "/validate?timeout=10s",
        &atr_review("w1", "CREATE", widget.clone()),
    )
    .await;
    assert_eq!(v["status"]["code"], 400);
    let msg = v["status"]["message"].as_str().unwrap();
    assert!(msg.contains("spec.object.kind: the cluster does not serve apiVersion \"example.com/v1\" (looked up kind \"Widget\""), "{msg}");
    // The CRD is installed a minute later: the next request finds it.
    env.fake.add_resource(
        "example.com",
        "v1",
        "Widget",
        "widgets",
        true,
        &["create", "get", "list", "watch", "patch", "delete"],
    );
    // A miss is remembered for a few seconds (one discovery call per burst, not one per
    // review), so the CRD is found once that passes.
    let v = post_until(&env, &atr_review("w2", "CREATE", widget.clone()), |v| {
        v["allowed"] == true
    })
    .await;
    assert_eq!(v["allowed"], true, "{v}");
    // A cluster-scoped kind is refused with its resource named.
    env.fake
        .add_resource("example.com", "v1", "Gadget", "gadgets", false, &["create"]);
    let gadget = json!({"apiVersion": "example.com/v1", "kind": "Gadget"});
    let v = post_until(&env, &atr_review("w3", "CREATE", gadget), |v| {
        v["status"]["code"] != 400
    })
    .await;
    assert_eq!(v["status"]["code"], 403);
    assert!(
        v["status"]["message"]
            .as_str()
            .unwrap()
            .contains("Gadget (gadgets.example.com) is cluster-scoped"),
        "{v}"
    );
    // Discovery failing is a 500 naming the kind, never an allow.
    env.fake
        .fail("/apis/example.org", Fault::Status(500, "boom".into()), None);
    let thing = json!({"apiVersion": "example.org/v1", "kind": "Thing"});
    let v = post(
        &env.server,
        "/validate?timeout=10s",
        &atr_review("w4", "CREATE", thing),
    )
    .await;
    assert_eq!(v["status"]["code"], 500, "{v}");
    assert!(
        v["status"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot resolve example.org/v1 \"Thing\""),
        "{v}"
    );
}

fn apply_patch(obj: &Value, resp: &Value) -> Value {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(resp["patch"].as_str().unwrap())
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&raw).unwrap();
    let mut out = obj.clone();
    json_patch::patch(&mut out, &patch).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pdb_selector_comes_from_the_watched_deployment() {
    let env = setup(&[]).await;
    let pdb = json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"tether.dev/target": "web"}},
        "spec": {"minAvailable": 1}
    });
    let rv = review(
        "pdb1",
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        "CREATE",
        "shop",
        Some(pdb.clone()),
        None,
    );
    let v = post(&env.server, "/mutate?timeout=10s", &rv).await;
    assert_eq!(v["allowed"], false);
    assert!(
        v["status"]["message"]
            .as_str()
            .unwrap()
            .contains("\"shop/web\""),
        "{v}"
    );
    env.fake.insert(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
    }));
    // The watch delivers the Deployment to the cache shortly.
    let mut patched = None;
    for _ in 0..100 {
        let v = post(&env.server, "/mutate?timeout=10s", &rv).await;
        if v["allowed"] == true {
            patched = Some(apply_patch(&pdb, &v));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let patched = patched.expect("Deployment reached the cache");
    assert_eq!(
        patched["spec"]["selector"],
        json!({"matchLabels": {"app": "web"}})
    );
    // Served from the cache: no GET of the Deployment per request.
    assert!(env
        .fake
        .requests_matching("GET", "/apis/apps/v1/namespaces/shop/deployments/web")
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appdomain_conflicts_across_namespaces_and_disambiguation() {
    let env = setup(&[]).await;
    let plain = "018f3a2b--invoicing-pr.apps.example.com";
    env.fake.insert(json!({
        "apiVersion": "tether.dev/v1alpha1", "kind": "AppDomain",
        "metadata": {"name": "acme", "namespace": "tenant-a"},
        "spec": {"tenantId": "018f3a2b-7c4d-7e0a-9c55-1d2e3f4a5b6c", "extensionId": "invoicing-pro", "serviceRef": {"name": "runner"}, "domain": plain}
    }));
    let obj = json!({
        "apiVersion": "tether.dev/v1alpha1", "kind": "AppDomain",
        "metadata": {"name": "globex", "namespace": "tenant-b"},
        "spec": {"tenantId": "018f3a2b-9999-7e0a-9c55-aaaaaaaaaaaa", "extensionId": "invoicing-pro"}
    });
    let rv = review(
        "ad1",
        "tether.dev",
        "v1alpha1",
        "AppDomain",
        "appdomains",
        "CREATE",
        "tenant-b",
        Some(obj.clone()),
        None,
    );
    // Wait for the AppDomain cache to see the holder, then mutation disambiguates.
    let mut domain = String::new();
    for _ in 0..100 {
        let v = post(&env.server, "/mutate?timeout=10s", &rv).await;
        let patched = apply_patch(&obj, &v);
        domain = patched["spec"]["domain"].as_str().unwrap().to_string();
        if domain != plain {
            assert_eq!(patched["spec"]["serviceRef"], json!({"name": "runner"}));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Golden: printf '%s' '36:018f3a2b-9999-7e0a-9c55-aaaaaaaaaaaa13:invoicing-pro' | sha256sum | cut -c1-6
    assert_eq!(domain, "018f3a2b--invoicing-pr-7a6f00.apps.example.com");
    let mut mutated = obj.clone();
    mutated["spec"]["domain"] = json!(domain);
    mutated["spec"]["serviceRef"] = json!({"name": "runner"});
    let rv = review(
        "ad2",
        "tether.dev",
        "v1alpha1",
        "AppDomain",
        "appdomains",
        "CREATE",
        "tenant-b",
        Some(mutated.clone()),
        None,
    );
    let v = post(&env.server, "/validate?timeout=10s", &rv).await;
    assert_eq!(v["allowed"], true, "{v}");
    // Claiming the plain domain outright: 409 naming the holder.
    let mut squat = mutated.clone();
    squat["spec"]["domain"] = json!(plain);
    let rv = review(
        "ad3",
        "tether.dev",
        "v1alpha1",
        "AppDomain",
        "appdomains",
        "CREATE",
        "tenant-b",
        Some(squat),
        None,
    );
    let v = post(&env.server, "/validate?timeout=10s", &rv).await;
    assert_eq!(v["status"]["code"], 409, "{v}");
    assert_eq!(v["status"]["reason"], "Conflict");
    assert!(
        v["status"]["message"]
            .as_str()
            .unwrap()
            .contains("already held by AppDomain tenant-a/acme"),
        "{v}"
    );
    // The DomainMapping permission of the user is checked.
    let dm: Vec<Value> = env
        .fake
        .requests_matching("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews")
        .into_iter()
        .map(|r| r.body.unwrap()["spec"]["resourceAttributes"].clone())
        .filter(|a| a["resource"] == "domainmappings")
        .collect();
    assert_eq!(
        dm[0],
        json!({"verb": "create", "group": "serving.knative.dev", "version": "v1beta1", "resource": "domainmappings", "namespace": "tenant-b"})
    );
}
