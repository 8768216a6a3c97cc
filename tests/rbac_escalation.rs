//! Issue: tether must not lend its own rights through attached RBAC objects. The real server
//! (standalone, access reviews from an RBAC file) over TLS: a Role needs the user's `escalate`
//! or every permission it grants; a RoleBinding needs the user's `bind` on its role. RBAC
//! kinds are banned by default; these tests opt in with `--banned-kinds`.

mod common;

use common::*;
use serde_json::{json, Value};

/// alice (group devs) may create Roles, RoleBindings and HPAs in payments and read pods;
/// bob (group leads) may do the same and also escalate roles and bind cluster-admin there.
/// tether's account may manage all of them (as a broad install would), which is exactly why
/// its rights must not stand in for the user's.
const RBAC: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: attach-rbac}
rules:
  - apiGroups: [rbac.authorization.k8s.io]
    resources: [roles, rolebindings]
    verbs: [create, update, patch, get, list, delete]
  - apiGroups: [autoscaling]
    resources: [horizontalpodautoscalers]
    verbs: [create, update, patch, get, list, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: pod-reader}
rules:
  - apiGroups: [""]
    resources: [pods, pods/log]
    verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: tether-rbac}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: attach-rbac}
subjects:
  - {kind: ServiceAccount, name: tether, namespace: tether-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: devs, namespace: payments}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: attach-rbac}
subjects:
  - {kind: Group, apiGroup: rbac.authorization.k8s.io, name: devs}
  - {kind: Group, apiGroup: rbac.authorization.k8s.io, name: leads}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: devs-pods, namespace: payments}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pod-reader}
subjects:
  - {kind: Group, apiGroup: rbac.authorization.k8s.io, name: devs}
  - {kind: Group, apiGroup: rbac.authorization.k8s.io, name: leads}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: rbac-admin, namespace: payments}
rules:
  - apiGroups: [rbac.authorization.k8s.io]
    resources: [roles]
    verbs: [escalate]
  - apiGroups: [rbac.authorization.k8s.io]
    resources: [clusterroles]
    verbs: [bind]
    resourceNames: [cluster-admin]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: leads-rbac-admin, namespace: payments}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: rbac-admin}
subjects:
  - {kind: Group, apiGroup: rbac.authorization.k8s.io, name: leads}
"#;

/// The default ban list without its four RBAC kinds: the explicit opt-in.
const OPT_IN: &str = "Deployment,StatefulSet,DaemonSet,ReplicaSet,ReplicationController,Job,\
CronJob,Pod,ClusterRole,ClusterRoleBinding";

fn start(extra: &[&str]) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let rbac = dir.path().join("rbac.yaml");
    std::fs::write(&rbac, RBAC).unwrap();
    let mut args = vec!["--rbac-file", rbac.to_str().unwrap()];
    args.extend_from_slice(extra);
    (Server::start(&args), dir)
}

fn attach(uid: &str, user: &str, group: &str, object: Value) -> Value {
    let obj = json!({
        "apiVersion": "tether.dev/v1alpha1",
        "kind": "AttachedResource",
        "metadata": {"name": "rbac", "namespace": "payments", "uid": "11111111-2222-3333-4444-555555555555"},
        "spec": {"workloadRef": {"name": "payments-worker"}, "object": object}
    });
    let mut rv = review(
        uid,
        "tether.dev",
        "v1alpha1",
        "AttachedResource",
        "attachedresources",
        "CREATE",
        "payments",
        Some(obj),
        None,
    );
    rv["request"]["userInfo"] = json!({"username": user, "uid": format!("{user}-uid"), "groups": [group, "system:authenticated"]});
    rv
}

async fn validate(s: &Server, body: &Value) -> Value {
    common::post(s, "/validate?timeout=10s", body).await
}

fn role(rules: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "rules": rules})
}

fn binding(kind: &str, name: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "payments"}]
    })
}

fn everything() -> Value {
    json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_need_escalate_or_every_permission_they_grant() {
    let (s, _d) = start(&["--banned-kinds", OPT_IN]);
    // (what, user, group, attached object, allowed, message fragments)
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        Value,
        bool,
        Vec<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            "alice holds what the Role grants",
            "alice",
            "devs",
            role(
                json!([{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]}]),
            ),
            true,
            vec![],
        ),
        (
            "alice: * on * is escalation",
            "alice",
            "devs",
            role(everything()),
            false,
            vec![
                "spec.object.rules: this Role grants permissions user \"alice\" does not hold \
                 (* *.* in namespace \"payments\")",
                "may not escalate roles.rbac.authorization.k8s.io in namespace \"payments\"",
            ],
        ),
        (
            "alice: one permission beyond hers",
            "alice",
            "devs",
            role(json!([{"apiGroups": [""], "resources": ["pods", "secrets"], "verbs": ["get"]}])),
            false,
            vec!["(get secrets in namespace \"payments\")"],
        ),
        (
            "bob may escalate",
            "bob",
            "leads",
            role(everything()),
            true,
            vec![],
        ),
    ];
    let mut failed = Vec::new();
    for (i, (what, user, group, object, allowed, fragments)) in cases.into_iter().enumerate() {
        let v = validate(&s, &attach(&format!("r{i}"), user, group, object)).await;
        let msg = v["status"]["message"].as_str().unwrap_or("");
        if v["allowed"] != allowed {
            failed.push(format!("{what}: allowed={} ({msg})", v["allowed"]));
            continue;
        }
        if !allowed && v["status"]["code"] != 403 {
            failed.push(format!("{what}: code {} ({msg})", v["status"]["code"]));
        }
        for f in fragments {
            if !msg.contains(f) {
                failed.push(format!("{what}: message lacks {f:?}: {msg}"));
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bindings_need_bind_on_their_role() {
    let (s, _d) = start(&["--banned-kinds", OPT_IN]);
    let denied = validate(
        &s,
        &attach(
            "b1",
            "alice",
            "devs",
            binding("ClusterRole", "cluster-admin"),
        ),
    )
    .await;
    assert_eq!(denied["allowed"], false, "{denied}");
    assert_eq!(denied["status"]["code"], 403);
    assert_eq!(denied["auditAnnotations"]["reason"], "escalation_denied");
    let msg = denied["status"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with(
            "spec.object.roleRef: user \"alice\" may not bind \
             clusterroles.rbac.authorization.k8s.io \"cluster-admin\" in namespace \"payments\""
        ),
        "{msg}"
    );
    let allowed = validate(
        &s,
        &attach(
            "b2",
            "bob",
            "leads",
            binding("ClusterRole", "cluster-admin"),
        ),
    )
    .await;
    assert_eq!(allowed["allowed"], true, "{allowed}");
    // bob's bind is for cluster-admin only.
    let other = validate(
        &s,
        &attach("b3", "bob", "leads", binding("Role", "rbac-admin")),
    )
    .await;
    assert_eq!(other["allowed"], false, "{other}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_kinds_are_banned_by_default() {
    let (s, _d) = start(&[]);
    for (i, object) in [role(everything()), binding("ClusterRole", "cluster-admin")]
        .into_iter()
        .enumerate()
    {
        let kind = object["kind"].as_str().unwrap().to_string();
        // Even bob, who may escalate and bind, needs the platform's opt-in.
        let v = validate(&s, &attach(&format!("d{i}"), "bob", "leads", object)).await;
        assert_eq!(v["allowed"], false, "{v}");
        assert_eq!(v["status"]["code"], 403);
        let msg = v["status"]["message"].as_str().unwrap();
        assert!(
            msg.contains(&format!(
                "spec.object.kind: kind \"{kind}\" may not be attached: it is in --banned-kinds \
                 (env BANNED_KINDS); RBAC objects grant rights"
            )),
            "{msg}"
        );
    }
}
