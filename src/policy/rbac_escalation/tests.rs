use super::*;
use serde_json::json;

/// The rule reads borrowed JSON (`crate::borrowed_json`); these tests write objects with
/// `json!`.
fn escalation_check(
    group: &str,
    kind: &str,
    object: &serde_json::Value,
) -> Result<Option<EscalationCheck>, Vec<Violation>> {
    super::escalation_check(group, kind, &object.into())
}

fn grant(group: &str, resource: &str, sub: Option<&str>, verb: &str, name: Option<&str>) -> Grant {
    Grant {
        group: group.into(),
        resource: resource.into(),
        subresource: sub.map(Into::into),
        verb: verb.into(),
        name: name.map(Into::into),
    }
}

#[test]
fn other_kinds_have_no_check() {
    let cases = [
        ("autoscaling", "HorizontalPodAutoscaler"),
        ("", "Role"),
        ("example.com", "RoleBinding"),
        (RBAC_GROUP, "ClusterRole"),
    ];
    let failed: Vec<String> = cases
        .iter()
        .filter(|(g, k)| escalation_check(g, k, &json!({})) != Ok(None))
        .map(|(g, k)| format!("{g}/{k}"))
        .collect();
    assert!(failed.is_empty(), "expected no check for {failed:?}");
}

#[test]
fn role_grants_expand_per_group_resource_verb_name() {
    let role = json!({"rules": [
        {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]},
        {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"],
         "resourceNames": ["a", "b"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
         "resourceNames": ["{{ .DeploymentName }}-creds"]},
        // Duplicates are asked once.
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}
    ]});
    let want = vec![
        grant("", "pods", None, "get", None),
        grant("", "pods", None, "list", None),
        grant("", "pods", Some("log"), "get", None),
        grant("", "pods", Some("log"), "list", None),
        grant("*", "*", None, "*", None),
        grant("", "configmaps", None, "get", Some("a")),
        grant("", "configmaps", None, "get", Some("b")),
        grant("", "secrets", None, "get", None),
    ];
    assert_eq!(
        escalation_check(RBAC_GROUP, "Role", &role),
        Ok(Some(EscalationCheck::Role {
            grants: want,
            too_many: None
        }))
    );
}

#[test]
fn role_over_the_grant_budget_needs_escalate() {
    // 3 groups x 5 resources x 5 verbs = 75 > 64.
    let role = json!({"rules": [{
        "apiGroups": ["", "apps", "batch"],
        "resources": ["a", "b", "c", "d", "e"],
        "verbs": ["get", "list", "watch", "create", "delete"]
    }]});
    assert_eq!(
        escalation_check(RBAC_GROUP, "Role", &role),
        Ok(Some(EscalationCheck::Role {
            grants: vec![],
            too_many: Some(75)
        }))
    );
}

#[test]
fn malformed_roles_name_the_field() {
    let cases = [
        (
            json!({"rules": "all"}),
            "spec.object.rules: must be a list of PolicyRules",
        ),
        (
            json!({"rules": [1]}),
            "spec.object.rules[0]: must be an object (a PolicyRule)",
        ),
        (
            json!({"rules": [{"verbs": "get"}]}),
            "spec.object.rules[0].verbs: must be a list of strings",
        ),
        (
            json!({"rules": [{"verbs": ["get", 7]}]}),
            "spec.object.rules[0].verbs[1]: must be a string",
        ),
        (
            json!({"rules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]}),
            "spec.object.rules[0].nonResourceURLs: only ClusterRoles can grant \
             nonResourceURLs; remove it",
        ),
        (
            json!({"rules": [{"apiGroups": [""], "resources": ["{{ .Version }}"], "verbs": ["get"]}]}),
            "spec.object.rules[0].resources: \"{{ .Version }}\" holds a placeholder: tether \
             checks what a Role grants before it renders one, so placeholders are allowed \
             only in resourceNames",
        ),
    ];
    let mut failed = Vec::new();
    crate::table_test::each(cases, |(role, want)| {
        let got = escalation_check(RBAC_GROUP, "Role", &role);
        let msgs = match &got {
            Err(vs) => vs.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
            Ok(_) => vec![],
        };
        if msgs != [want.to_string()] {
            failed.push(format!("{role}: got {got:?}, want {want:?}"));
        }
    });
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn bindings_need_bind_on_the_referenced_role() {
    let ok = [
        (
            json!({"roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "cluster-admin"}}),
            "clusterroles",
            "cluster-admin",
        ),
        (
            json!({"roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": "reader"}}),
            "roles",
            "reader",
        ),
    ];
    for (obj, res, name) in ok {
        assert_eq!(
            escalation_check(RBAC_GROUP, "RoleBinding", &obj),
            Ok(Some(EscalationCheck::Bind {
                role_resource: res.into(),
                role_name: name.into()
            })),
            "{obj}"
        );
    }
    let bad = [
        (json!({}), "spec.object.roleRef: required: {apiGroup: rbac.authorization.k8s.io, kind: Role or ClusterRole, name: ...}"),
        (json!({"roleRef": {"apiGroup": "x", "kind": "Role", "name": "r"}}),
         "spec.object.roleRef.apiGroup: must be \"rbac.authorization.k8s.io\""),
        (json!({"roleRef": {"apiGroup": RBAC_GROUP, "kind": "Group", "name": "r"}}),
         "spec.object.roleRef.kind: must be \"Role\" or \"ClusterRole\""),
        (json!({"roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": ""}}),
         "spec.object.roleRef.name: required"),
        (json!({"roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": "{{ .Version }}"}}),
         "spec.object.roleRef.name: must name one role, not a placeholder: tether checks bind on it before it renders"),
    ];
    let mut failed = Vec::new();
    for (obj, want) in bad {
        let got = escalation_check(RBAC_GROUP, "RoleBinding", &obj);
        let msgs = match &got {
            Err(vs) => vs.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
            Ok(_) => vec![],
        };
        if msgs != [want.to_string()] {
            failed.push(format!("{obj}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
