//! The admission stamp (SECURITY.md): in cluster mode the mutating webhook stamps every
//! AttachedResource it admits with an HMAC of namespace, name and spec, and an UPDATE that
//! leaves spec unchanged skips the checks only when the old object was stamped (or is being
//! deleted). The real binary against the fake API server, over TLS.

mod common;
#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;

use base64::Engine;
use common::*;
use fake_apiserver::FakeApiServer;
use serde_json::{json, Value};

/// HMAC-SHA256 of the stamp message for `payments/worker-hpa` with [`hpa_spec`], key
/// `TEST_STAMP_KEY`, computed independently:
/// `printf 'tether.dev/admitted v1\n8:payments\n10:worker-hpa\n{"object":{"apiVersion":"autoscaling/v2","kind":"HorizontalPodAutoscaler","spec":{"maxReplicas":3,"scaleTargetRef":{}}},"workloadRef":{"name":"payments-worker"}}' | openssl dgst -sha256 -hmac test-admission-stamp-key-0123456789abcdef -binary | base64 | tr '+/' '-_' | tr -d =`
const GOLDEN_STAMP: &str = "v1:k1:q8U3p7HgM3wO8V7C6u6dHMkGseoeYzPLKcMdbLeepa4";

struct Env {
    fake: FakeApiServer,
    server: Server,
    _dir: tempfile::TempDir,
}

async fn setup() -> Env {
    let fake = FakeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.write_kubeconfig(dir.path());
    let args = [
        "--controllers",
        "none",
        "--pod-namespace",
        "tether-system",
        "--service-account-name",
        "tether",
    ];
    let server = tokio::task::block_in_place(|| Server::start_cluster(&kubeconfig, &args));
    Env {
        fake,
        server,
        _dir: dir,
    }
}

fn hpa_spec() -> Value {
    json!({
        "workloadRef": {"name": "payments-worker"},
        "object": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                   "spec": {"scaleTargetRef": {}, "maxReplicas": 3}}
    })
}

fn atr(annotations: Option<Value>) -> Value {
    let mut o = json!({
        "apiVersion": "tether.dev/v1alpha1", "kind": "AttachedResource",
        "metadata": {"name": "worker-hpa", "namespace": "payments",
                     "labels": {"tether.dev/workload": "payments-worker"}},
        "spec": hpa_spec()
    });
    if let Some(a) = annotations {
        o["metadata"]["annotations"] = a;
    }
    o
}

fn atr_review(uid: &str, op: &str, object: Value, old: Option<Value>) -> Value {
    review(
        uid,
        "tether.dev",
        "v1alpha1",
        "AttachedResource",
        "attachedresources",
        op,
        "payments",
        Some(object),
        old,
    )
}

fn patch_ops(resp: &Value) -> Value {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(resp["patch"].as_str().expect("a patch"))
        .unwrap();
    serde_json::from_slice(&raw).unwrap()
}

fn sar_count(fake: &FakeApiServer) -> usize {
    fake.requests_matching("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews")
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mutating_webhook_stamps_what_it_admits() {
    let env = setup().await;
    // No annotations yet: the patch creates the map.
    let m = post(
        &env.server,
        "/mutate?timeout=10s",
        &atr_review("m1", "CREATE", atr(None), None),
    )
    .await;
    assert_eq!(m["allowed"], true, "{m}");
    assert_eq!(
        patch_ops(&m),
        json!([{"op": "add", "path": "/metadata/annotations",
                "value": {"tether.dev/admitted": GOLDEN_STAMP}}])
    );
    // A user-supplied (forged) stamp is overwritten; other annotations stay.
    let forged = atr(Some(
        json!({"team": "payments", "tether.dev/admitted": "v1:k1:AAAA"}),
    ));
    let m = post(
        &env.server,
        "/mutate?timeout=10s",
        &atr_review("m2", "CREATE", forged, None),
    )
    .await;
    assert_eq!(
        patch_ops(&m),
        json!([{"op": "add", "path": "/metadata/annotations/tether.dev~1admitted",
                "value": GOLDEN_STAMP}])
    );
    // Already carrying its own stamp: nothing to change.
    let stamped = atr(Some(json!({"tether.dev/admitted": GOLDEN_STAMP})));
    let m = post(
        &env.server,
        "/mutate?timeout=10s",
        &atr_review("m3", "CREATE", stamped, None),
    )
    .await;
    assert!(m.get("patch").is_none(), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_stamped_or_deleting_objects_skip_the_checks_on_metadata_updates() {
    let env = setup().await;
    let stamped = atr(Some(json!({"tether.dev/admitted": GOLDEN_STAMP})));

    // (what, old object, expected audit reason: `spec_unchanged` is the shortcut, `allowed`
    // means every check ran, access reviews included)
    let unstamped = atr(None);
    let mut forged = atr(Some(json!({"tether.dev/admitted": "v1:k1:AAAA"})));
    forged["metadata"]["labels"]["x"] = json!("y");
    let mut deleting = atr(None);
    deleting["metadata"]["deletionTimestamp"] = json!("2026-11-30T12:00:00Z");
    deleting["metadata"]["finalizers"] = json!(["tether.dev/cleanup"]);
    let cases = [
        ("stamped", stamped.clone(), "spec_unchanged"),
        ("never stamped", unstamped, "allowed"),
        ("forged stamp", forged, "allowed"),
        ("being deleted", deleting, "spec_unchanged"),
    ];
    let mut failed = Vec::new();
    for (i, (what, old, reason)) in cases.into_iter().enumerate() {
        let mut new = old.clone();
        new["metadata"]["labels"]["team"] = json!("payments");
        let v = post(
            &env.server,
            "/validate?timeout=10s",
            &atr_review(&format!("u{i}"), "UPDATE", new, Some(old)),
        )
        .await;
        if v["allowed"] != true || v["auditAnnotations"]["reason"] != reason {
            failed.push(format!(
                "{what}: allowed={} reason={}, want reason {reason}",
                v["allowed"], v["auditAnnotations"]["reason"]
            ));
        }
    }
    // The full checks really asked the API server (the first unstamped case; later ones hit
    // the access-review cache).
    assert!(
        sar_count(&env.fake) >= 5,
        "{} access reviews",
        sar_count(&env.fake)
    );
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn cluster_mode_without_keys_names_the_flag_and_the_chart() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fake = rt.block_on(FakeApiServer::start());
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.write_kubeconfig(dir.path());
    make_certs(dir.path(), &["localhost"]);
    let out = std::process::Command::new(tether_bin())
        .args(["serve", "--log-format", "text", "--listen", "127.0.0.1:0"])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .arg("--tls-cert")
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.path().join("tls.key"))
        .arg("--admission-keys")
        .arg(dir.path().join("no-such-dir"))
        // The domains controller's own requirement (--domain-root) is checked first.
        .args(["--domain-root", "apps.example.com"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or("");
    assert!(
        last.starts_with("tether serve: --admission-keys ")
            && last.contains("no-such-dir: No such file or directory")
            && last.contains("the chart mounts the Secret <release>-admission-keys"),
        "{err}"
    );
}
