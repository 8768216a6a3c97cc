//! SPEC 5.4 through the real server (standalone, over TLS): the AppDomain manifest of SPEC 3.2
//! (`domain: ""`) can be applied again and again, client- and server-side (issue 11 defect 2),
//! and an UPDATE that leaves `spec` alone — tether's own finalizer removal — is checked for
//! immutability only, so a changed `--domain-root` or `--reserved-names` never strands an
//! AppDomain in Terminating (defect 3).

mod common;

use base64::Engine;
use common::*;
use serde_json::{json, Value};

const T: &str = "3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c";
/// `tether domain --tenant 3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c --extension invoicing-pro
/// --root apps.example.com` (SPEC 4: the UUID's first 8 hex characters, the slug's first 12).
const DOMAIN: &str = "3f2a9c1e--invoicing-pr.apps.example.com";

/// The SPEC 3.2 manifest, as `kubectl apply` sends it.
fn manifest() -> Value {
    json!({
        "apiVersion": "tether.dev/v1alpha1",
        "kind": "AppDomain",
        "metadata": {"name": "acme-invoicing", "namespace": "ext-runner"},
        "spec": {
            "tenantId": T,
            "extensionId": "invoicing-pro",
            "serviceRef": {"name": "runner"},
            "domain": ""
        }
    })
}

fn apd_review(uid: &str, op: &str, obj: Option<Value>, old: Option<Value>) -> Value {
    review(
        uid,
        "tether.dev",
        "v1alpha1",
        "AppDomain",
        "appdomains",
        op,
        "ext-runner",
        obj,
        old,
    )
}

async fn post(s: &Server, path: &str, body: &Value) -> Value {
    common::post(s, &format!("{path}?timeout=10s"), body).await
}

/// Applies the response's JSON Patch (if any) to `obj`, as the API server does.
fn patched(obj: &Value, resp: &Value) -> Value {
    let Some(p) = resp["patch"].as_str() else {
        return obj.clone();
    };
    assert_eq!(resp["patchType"], "JSONPatch");
    let raw = base64::engine::general_purpose::STANDARD.decode(p).unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&raw).unwrap();
    let mut out = obj.clone();
    json_patch::patch(&mut out, &patch).unwrap();
    out
}

/// Mutate then validate, as the API server runs admission; returns the object it would
/// store, or the denial.
async fn admit(
    s: &Server,
    uid: &str,
    op: &str,
    obj: Value,
    old: Option<Value>,
) -> Result<Value, Value> {
    let m = post(
        s,
        "/mutate",
        &apd_review(uid, op, Some(obj.clone()), old.clone()),
    )
    .await;
    if m["allowed"] != true {
        return Err(m);
    }
    let obj = patched(&obj, &m);
    let v = post(s, "/validate", &apd_review(uid, op, Some(obj.clone()), old)).await;
    if v["allowed"] != true {
        return Err(v);
    }
    Ok(obj)
}

/// What the API server stores after a CREATE: identity and bookkeeping added.
fn stored_after_create(mut obj: Value) -> Value {
    obj["metadata"]["uid"] = json!("0b7d3a52-1c1e-4a5b-9d55-6f7e8a9b0c1d");
    obj["metadata"]["resourceVersion"] = json!("1");
    obj["metadata"]["generation"] = json!(1);
    obj["metadata"]["creationTimestamp"] = json!("2026-11-30T12:00:00Z");
    obj["metadata"]["finalizers"] = json!(["tether.dev/cleanup"]);
    obj
}

fn start(root: &str, reserved: &str) -> Server {
    Server::start(&["--domain-root", root, "--reserved-names", reserved])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spec_manifest_can_be_applied_again_client_and_server_side() {
    let s = start("apps.example.com", "www,api");
    let created = admit(&s, "c1", "CREATE", manifest(), None)
        .await
        .expect("the first apply is admitted");
    assert_eq!(created["spec"]["domain"], DOMAIN);
    let stored = stored_after_create(created);

    // Client-side `kubectl apply` again: the three-way merge patch sets spec.domain back to
    // "" (the manifest's value), so the UPDATE carries domain "".
    let mut client_side = stored.clone();
    json_patch::merge(&mut client_side, &json!({"spec": {"domain": ""}}));
    assert_eq!(client_side["spec"]["domain"], "");
    let after = admit(&s, "u1", "UPDATE", client_side, Some(stored.clone()))
        .await
        .unwrap_or_else(|d| panic!("client-side re-apply denied: {d}"));
    assert_eq!(
        after["spec"], stored["spec"],
        "re-applying the same manifest changes nothing"
    );

    // `kubectl apply --server-side` again: the applied configuration owns spec.domain = "".
    let mut server_side = stored.clone();
    server_side["spec"]["domain"] = json!("");
    server_side["metadata"]["managedFields"] = json!([{
        "manager": "kubectl", "operation": "Apply", "apiVersion": "tether.dev/v1alpha1",
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {"f:domain": {}, "f:extensionId": {}, "f:serviceRef": {"f:name": {}}, "f:tenantId": {}}}
    }]);
    let after = admit(&s, "u2", "UPDATE", server_side, Some(stored.clone()))
        .await
        .unwrap_or_else(|d| panic!("server-side re-apply denied: {d}"));
    assert_eq!(after["spec"], stored["spec"]);

    // A manifest without spec.domain (or serviceRef) at all, applied server-side after one
    // that had them: the fields are absent from the UPDATE and restored from oldObject.
    let mut absent = stored.clone();
    let spec = absent["spec"].as_object_mut().unwrap();
    spec.remove("domain");
    spec.remove("serviceRef");
    let after = admit(&s, "u3", "UPDATE", absent, Some(stored.clone()))
        .await
        .unwrap_or_else(|d| panic!("re-apply without domain denied: {d}"));
    assert_eq!(after["spec"], stored["spec"]);

    // Changing the domain to something else is still refused as immutable.
    let mut changed = stored.clone();
    changed["spec"]["domain"] = json!("other--invoicing-pr.apps.example.com");
    let denied = admit(&s, "u4", "UPDATE", changed, Some(stored.clone()))
        .await
        .expect_err("a different domain is an immutable change");
    let msg = denied["status"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("spec.domain: is immutable"), "{denied}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizer_removal_passes_after_the_root_and_reserved_names_change() {
    // Created while the root was apps.example.com and "invoicing-pr" was not reserved...
    let s = start("apps.example.com", "www");
    let stored = stored_after_create(
        admit(&s, "c1", "CREATE", manifest(), None)
            .await
            .expect("created"),
    );
    drop(s);
    // ...then the platform moves the root and reserves the extension's part.
    let s = start("apps.example.net", "www,invoicing-pr");
    let mut deleting = stored.clone();
    deleting["metadata"]["deletionTimestamp"] = json!("2026-11-30T13:00:00Z");
    // The controller removes its finalizer: an UPDATE that leaves spec alone.
    let mut released = deleting.clone();
    released["metadata"]["finalizers"] = json!([]);
    let v = post(
        &s,
        "/validate",
        &apd_review("f1", "UPDATE", Some(released), Some(deleting)),
    )
    .await;
    assert_eq!(v["allowed"], true, "finalizer removal must pass: {v}");
    // A label edit passes too; a spec change is still checked against today's policy.
    let mut labelled = stored.clone();
    labelled["metadata"]["labels"] = json!({"team": "billing"});
    let v = post(
        &s,
        "/validate",
        &apd_review("f2", "UPDATE", Some(labelled), Some(stored.clone())),
    )
    .await;
    assert_eq!(v["allowed"], true, "{v}");
    let mut moved = stored.clone();
    moved["spec"]["serviceRef"]["name"] = json!("runner-v2");
    let v = post(
        &s,
        "/validate",
        &apd_review("f3", "UPDATE", Some(moved), Some(stored)),
    )
    .await;
    assert_eq!(
        v["allowed"], false,
        "a spec change meets the new policy: {v}"
    );
    let msg = v["status"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("reserved"), "{msg}");
}
