//! `tether check` (offline) on the examples, and proof that it decides exactly as the server.

mod common;

use std::process::Command;

use common::*;
use serde_json::{json, Value};

fn check(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(tether_bin())
        .arg("check")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn example(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn valid_examples_pass_and_invalid_ones_fail_with_reasons() {
    let (code, out, err) = check(&["-f", &example("attached-hpa.yaml")]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out.lines().filter(|l| l.contains(" allowed ")).count(),
        2,
        "{out}"
    );
    assert!(err.contains("access reviews are NOT evaluated"), "{err}");

    let (code, out, _) = check(&["-f", &example("attached-invalid.yaml")]);
    assert_eq!(code, 1, "{out}");
    for f in [
        "AttachedResource payments/sneaky-deployment  denied(403)",
        "spec.object.metadata.name: must not be set",
        "AttachedResource payments/broken-hpa         denied(400)",
        "spec.object.spec.minReplicas: must not be 0",
        "spec.object.spec.scaleTargetRef: tether owns this field",
        "unknown placeholder \"{{ .Team }}\"",
        "AttachedResource payments/cluster-role       denied(403)",
        "cluster-scoped",
    ] {
        assert!(out.contains(f), "{f:?} not in\n{out}");
    }
    // A denied object shows no patch: it would not be stored.
    assert!(!out.contains("patch:"), "{out}");

    // With an RBAC file, who asks matters.
    let rbac = example("rbac.yaml");
    let (code, out, _) = check(&[
        "-f",
        &example("attached-hpa.yaml"),
        "--rbac-file",
        &rbac,
        "--user",
        "bob",
    ]);
    assert_eq!(code, 1);
    assert!(
        out.contains("user \"bob\" may not create horizontalpodautoscalers.autoscaling"),
        "{out}"
    );
    let (code, out, _) = check(&[
        "-f",
        &example("attached-hpa.yaml"),
        "--rbac-file",
        &rbac,
        "--user",
        "alice",
        "--group",
        "payments-devs",
    ]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn labelled_targets_get_patches_from_the_manifests_deployment() {
    let (code, out, err) = check(&["-f", &example("labelled-targets.yaml"), "-o", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    let hpa = &results[1];
    assert_eq!(hpa["object"], "HorizontalPodAutoscaler shop/web");
    assert_eq!(
        hpa["patch"],
        json!([{"op": "add", "path": "/spec/scaleTargetRef", "value": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}}])
    );
    let pdb = &results[2];
    assert_eq!(pdb["patch"][0]["path"], "/spec/selector");
    assert_eq!(
        pdb["patch"][0]["value"],
        json!({"matchLabels": {"app": "web", "tier": "frontend"}})
    );
}

#[test]
fn bad_input_gets_a_clear_error_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "- just\n- a list\n").unwrap();
    let (code, _, err) = check(&["-f", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("document 1: expected a Kubernetes object"),
        "{err}"
    );
    let (code, _, err) = check(&["-f", "/nonexistent.yaml"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read /nonexistent.yaml"), "{err}");
    let (code, _, err) = check(&[
        "-f",
        &example("attached-hpa.yaml"),
        "--rbac-file",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("--rbac-file"), "{err}");
}

/// Offline `check` and the server answer every example object identically.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_decides_exactly_as_the_server() {
    let rbac = example("rbac.yaml");
    let s = Server::start(&["--rbac-file", &rbac]);
    for (user, groups) in [("alice", vec!["payments-devs"]), ("bob", vec![])] {
        for file in ["attached-hpa.yaml", "attached-invalid.yaml"] {
            let mut args = vec![
                "-f".to_string(),
                example(file),
                "-o".into(),
                "json".into(),
                "--rbac-file".into(),
                rbac.clone(),
                "--user".into(),
                user.into(),
            ];
            for g in &groups {
                args.push("--group".into());
                args.push(g.to_string());
            }
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let (_, out, err) = check(&argv);
            let offline: Value =
                serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
            let objects =
                tether::offline::parse_manifest(&std::fs::read_to_string(example(file)).unwrap())
                    .unwrap();
            let mut all_groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
            all_groups.push("system:authenticated".into());
            for (i, obj) in objects.iter().enumerate() {
                let o = &offline["results"][i];
                let ns = obj["metadata"]["namespace"].as_str().unwrap();
                let uid = format!("parity-{i}");
                let mut h1 = H1::connect(s.addr, &s.ca).await;
                // Mutate, apply the patch, validate: the API server's order.
                let rv = tether::offline::create_review(&uid, obj, ns, user, &all_groups);
                let m = h1
                    .send(request(
                        "POST",
                        "/mutate",
                        Some("application/json"),
                        serde_json::to_vec(&rv).unwrap(),
                    ))
                    .await
                    .json();
                let mut current = obj.clone();
                if let Some(p) = m["response"]["patch"].as_str() {
                    use base64::Engine;
                    let raw = base64::engine::general_purpose::STANDARD.decode(p).unwrap();
                    let patch: json_patch::Patch = serde_json::from_slice(&raw).unwrap();
                    json_patch::patch(&mut current, &patch).unwrap();
                }
                let rv = tether::offline::create_review(&uid, &current, ns, user, &all_groups);
                let v = h1
                    .send(request(
                        "POST",
                        "/validate",
                        Some("application/json"),
                        serde_json::to_vec(&rv).unwrap(),
                    ))
                    .await
                    .json();
                let server_allowed = v["response"]["allowed"].as_bool().unwrap();
                assert_eq!(
                    o["allowed"].as_bool().unwrap(),
                    server_allowed,
                    "{file} #{i} as {user}: {o} vs {v}"
                );
                if !server_allowed {
                    assert_eq!(o["code"], v["response"]["status"]["code"], "{file} #{i}");
                    assert_eq!(
                        o["message"], v["response"]["status"]["message"],
                        "{file} #{i}"
                    );
                }
            }
        }
    }
}

#[test]
fn appdomains_are_allocated_in_order_and_conflicts_are_409() {
    let (code, out, err) = check(&[
        "-f",
        &example("appdomains.yaml"),
        "--domain-root",
        "apps.example.com",
        "-o",
        "json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let first = &v["results"][0]["patch"];
    assert_eq!(
        first[0],
        json!({"op": "add", "path": "/spec/domain", "value": "018f3a2b--invoicing-pr.apps.example.com"})
    );
    assert_eq!(
        first[1],
        json!({"op": "add", "path": "/spec/serviceRef", "value": {"name": "runner"}})
    );
    // Same plain domain, different tenant: the second install gets the disambiguated form.
    // Golden: printf '%s' '36:018f3a2b-9999-7e0a-9c55-aaaaaaaaaaaa13:invoicing-pro' | sha256sum | cut -c1-6
    assert_eq!(
        v["results"][1]["patch"][0]["value"],
        "018f3a2b--invoicing-pr-7a6f00.apps.example.com"
    );

    // A third object claiming the first one's domain outright is a 409 naming the holder.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("m.yaml");
    let mut text = std::fs::read_to_string(example("appdomains.yaml")).unwrap();
    text.push_str("---\napiVersion: tether.dev/v1alpha1\nkind: AppDomain\nmetadata: {name: squatter, namespace: elsewhere}\nspec:\n  tenantId: 018f3a2b-0000-7000-8000-000000000000\n  extensionId: invoicing-pro\n  domain: 018f3a2b--invoicing-pr.apps.example.com\n");
    std::fs::write(&f, text).unwrap();
    let (code, out, _) = check(&[
        "-f",
        f.to_str().unwrap(),
        "--domain-root",
        "apps.example.com",
        "-o",
        "json",
    ]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    let third = &v["results"][2];
    assert_eq!(third["code"], 409, "{third}");
    assert!(
        third["message"]
            .as_str()
            .unwrap()
            .contains("already held by AppDomain ext-runner/acme-invoicing"),
        "{third}"
    );
}
