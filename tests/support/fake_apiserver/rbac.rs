//! A small RBAC authorizer over the Role/ClusterRole/RoleBinding/ClusterRoleBinding objects
//! stored in the fake, written for the tests (independent of tether's own evaluator).
//!
//! Modelled: verbs, apiGroups, resources with `x/y` subresources, `*` and `*/y`,
//! resourceNames, nonResourceURLs (exact and `prefix*`), ClusterRole `aggregationRule`
//! (one level), User/Group/ServiceAccount subjects, `system:masters` as superuser, and the
//! bootstrap grants every authenticated identity has (discovery paths, self access reviews).
//! Reasons read as upstream's: `RBAC: allowed by ClusterRoleBinding "b" of ClusterRole "r" to
//! User "alice"`.

use serde_json::Value;

use super::Identity;

/// What is being asked (`authorizer.Attributes`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub verb: String,
    /// `None` for a non-resource request (then `path` counts).
    pub resource: Option<ResourceAttrs>,
    pub path: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceAttrs {
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}

/// The decision; `reason` is empty when nothing allowed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
}

fn strs(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn name_of(v: &Value) -> &str {
    v.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn ns_of(v: &Value) -> &str {
    v.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// One policy rule against a request (`RuleAllows`).
pub fn rule_allows(rule: &Value, req: &Request) -> bool {
    let verbs = strs(rule.get("verbs"));
    if !verbs.iter().any(|v| *v == "*" || *v == req.verb) {
        return false;
    }
    let Some(r) = &req.resource else {
        return strs(rule.get("nonResourceURLs")).iter().any(|u| {
            *u == "*"
                || *u == req.path
                || u.strip_suffix('*').is_some_and(|p| req.path.starts_with(p))
        });
    };
    if !strs(rule.get("apiGroups"))
        .iter()
        .any(|g| *g == "*" || *g == r.group)
    {
        return false;
    }
    let combined = if r.subresource.is_empty() {
        r.resource.clone()
    } else {
        format!("{}/{}", r.resource, r.subresource)
    };
    let resource_ok = strs(rule.get("resources")).iter().any(|x| {
        *x == "*"
            || *x == combined
            || (!r.subresource.is_empty() && x.strip_prefix("*/") == Some(r.subresource.as_str()))
    });
    if !resource_ok {
        return false;
    }
    let names = strs(rule.get("resourceNames"));
    names.is_empty() || names.contains(&r.name.as_str())
}

/// Does a binding subject name this identity (`appliesToUser`)?
fn subject_applies(subject: &Value, binding_ns: &str, user: &Identity) -> bool {
    let kind = subject.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = subject.get("name").and_then(Value::as_str).unwrap_or("");
    match kind {
        "User" => user.username == name,
        "Group" => user.groups.iter().any(|g| g == name),
        "ServiceAccount" => {
            let ns = subject
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_ns);
            user.username == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

fn describe_subject(subject: &Value, binding_ns: &str) -> String {
    let kind = subject.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = subject.get("name").and_then(Value::as_str).unwrap_or("");
    if kind == "ServiceAccount" {
        let ns = subject
            .get("namespace")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .unwrap_or(binding_ns);
        return format!("{kind} {:?}", format!("{name}/{ns}"));
    }
    format!("{kind} {name:?}")
}

/// Rules of a ClusterRole, with those of the ClusterRoles its aggregationRule selects.
fn cluster_role_rules<'a>(role: &'a Value, all: &'a [Value]) -> Vec<&'a Value> {
    let mut rules: Vec<&Value> = role
        .get("rules")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let selectors = role
        .pointer("/aggregationRule/clusterRoleSelectors")
        .and_then(Value::as_array);
    for sel in selectors.into_iter().flatten() {
        for other in all
            .iter()
            .filter(|o| o.get("kind") == Some(&"ClusterRole".into()))
        {
            let labels = other.pointer("/metadata/labels").and_then(Value::as_object);
            if !std::ptr::eq(other, role)
                && super::admission::selector_matches(Some(sel), labels).unwrap_or(false)
            {
                rules.extend(
                    other
                        .get("rules")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten(),
                );
            }
        }
    }
    rules
}

/// Bootstrap policy every authenticated identity has (system:discovery,
/// system:public-info-viewer, system:basic-user).
fn bootstrap_allows(req: &Request, user: &Identity) -> bool {
    if !user.groups.iter().any(|g| g == "system:authenticated") {
        return false;
    }
    match &req.resource {
        None => {
            req.verb == "get"
                && [
                    "/api", "/apis", "/version", "/openapi", "/healthz", "/livez", "/readyz",
                ]
                .iter()
                .any(|p| req.path == *p || req.path.starts_with(&format!("{p}/")))
        }
        Some(r) => {
            req.verb == "create"
                && r.group == "authorization.k8s.io"
                && matches!(
                    r.resource.as_str(),
                    "selfsubjectaccessreviews" | "selfsubjectrulesreviews"
                )
        }
    }
}

/// Evaluates `req` for `user` against the stored RBAC objects (any kind mix, as stored).
pub fn authorize(objects: &[Value], user: &Identity, req: &Request) -> Decision {
    if user.is_superuser() {
        return Decision {
            allowed: true,
            reason: String::new(),
        };
    }
    if bootstrap_allows(req, user) {
        return Decision {
            allowed: true,
            reason: "RBAC: allowed by bootstrap policy".into(),
        };
    }
    let of_kind = |k: &'static str| {
        objects
            .iter()
            .filter(move |o| o.get("kind").and_then(Value::as_str) == Some(k))
    };
    let find_role = |kind: &str, ns: &str, name: &str| {
        objects.iter().find(|o| {
            o.get("kind") == Some(&kind.into())
                && name_of(o) == name
                && (kind == "ClusterRole" || ns_of(o) == ns)
        })
    };
    let namespace = req
        .resource
        .as_ref()
        .map(|r| r.namespace.as_str())
        .unwrap_or("");
    let bindings = of_kind("ClusterRoleBinding")
        .chain(of_kind("RoleBinding").filter(|b| !namespace.is_empty() && ns_of(b) == namespace));
    for b in bindings {
        let cluster = b.get("kind") == Some(&"ClusterRoleBinding".into());
        let bns = ns_of(b);
        let Some(subject) = b
            .get("subjects")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|s| subject_applies(s, bns, user))
        else {
            continue;
        };
        let role_kind = b
            .pointer("/roleRef/kind")
            .and_then(Value::as_str)
            .unwrap_or("");
        let role_name = b
            .pointer("/roleRef/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        if cluster && role_kind != "ClusterRole" {
            continue;
        }
        let Some(role) = find_role(role_kind, bns, role_name) else {
            continue;
        };
        let rules = if role_kind == "ClusterRole" {
            cluster_role_rules(role, objects)
        } else {
            role.get("rules")
                .and_then(Value::as_array)
                .map(|a| a.iter().collect())
                .unwrap_or_default()
        };
        // Non-resource URLs are only granted through ClusterRoleBindings.
        if req.resource.is_none() && !cluster {
            continue;
        }
        if rules.iter().any(|r| rule_allows(r, req)) {
            let binding = if cluster {
                format!("ClusterRoleBinding {:?}", name_of(b))
            } else {
                format!("RoleBinding {:?}", format!("{}/{bns}", name_of(b)))
            };
            return Decision {
                allowed: true,
                reason: format!(
                    "RBAC: allowed by {binding} of {role_kind} {role_name:?} to {}",
                    describe_subject(subject, bns)
                ),
            };
        }
    }
    Decision {
        allowed: false,
        reason: String::new(),
    }
}

/// The 403 message upstream writes (`forbiddenMessage` + `NewForbidden`).
pub fn forbidden_message(user: &Identity, req: &Request) -> String {
    let Some(r) = &req.resource else {
        return format!(
            "forbidden: User {:?} cannot {} path {:?}",
            user.username, req.verb, req.path
        );
    };
    let resource = if r.subresource.is_empty() {
        r.resource.clone()
    } else {
        format!("{}/{}", r.resource, r.subresource)
    };
    let qualified = if r.group.is_empty() {
        r.resource.clone()
    } else {
        format!("{}.{}", r.resource, r.group)
    };
    let scope = if r.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace {:?}", r.namespace)
    };
    let what = format!(
        "User {:?} cannot {} resource {resource:?} in API group {:?} {scope}",
        user.username, req.verb, r.group
    );
    if r.name.is_empty() {
        format!("{qualified} is forbidden: {what}")
    } else {
        format!("{qualified} {:?} is forbidden: {what}", r.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn res(verb: &str, group: &str, resource: &str, sub: &str, ns: &str, name: &str) -> Request {
        Request {
            verb: verb.into(),
            resource: Some(ResourceAttrs {
                group: group.into(),
                resource: resource.into(),
                subresource: sub.into(),
                namespace: ns.into(),
                name: name.into(),
            }),
            path: String::new(),
        }
    }

    #[test]
    fn rules_match_verbs_groups_resources_subresources_and_names() {
        let rule = json!({"apiGroups": ["apps"], "resources": ["deployments", "deployments/status", "*/scale"], "verbs": ["get", "patch"]});
        let cases = [
            (res("get", "apps", "deployments", "", "ns", "d"), true),
            (res("list", "apps", "deployments", "", "ns", ""), false),
            (res("get", "", "deployments", "", "ns", "d"), false),
            (
                res("patch", "apps", "deployments", "status", "ns", "d"),
                true,
            ),
            (
                res("patch", "apps", "deployments", "finalizers", "ns", "d"),
                false,
            ),
            (
                res("patch", "apps", "statefulsets", "scale", "ns", "s"),
                true,
            ),
            (res("get", "apps", "statefulsets", "", "ns", "s"), false),
        ];
        for (req, want) in &cases {
            assert_eq!(rule_allows(&rule, req), *want, "{req:?}");
        }
        let named = json!({"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["tether-controller"], "verbs": ["get", "update"]});
        assert!(rule_allows(
            &named,
            &res(
                "get",
                "coordination.k8s.io",
                "leases",
                "",
                "ns",
                "tether-controller"
            )
        ));
        assert!(!rule_allows(
            &named,
            &res("get", "coordination.k8s.io", "leases", "", "ns", "other")
        ));
        assert!(!rule_allows(
            &named,
            &res("create", "coordination.k8s.io", "leases", "", "ns", "")
        ));
        let star = json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]});
        assert!(rule_allows(
            &star,
            &res("delete", "x.io", "things", "status", "", "t")
        ));
        let urls = json!({"nonResourceURLs": ["/metrics", "/logs/*"], "verbs": ["get"]});
        let nr = |p: &str| Request {
            verb: "get".into(),
            resource: None,
            path: p.into(),
        };
        assert!(
            rule_allows(&urls, &nr("/metrics"))
                && rule_allows(&urls, &nr("/logs/a"))
                && !rule_allows(&urls, &nr("/other"))
        );
    }

    #[test]
    fn bindings_subjects_roles_and_reasons() {
        let objects = vec![
            json!({"kind": "ClusterRole", "metadata": {"name": "tether"}, "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["list"]}]}),
            json!({"kind": "ClusterRoleBinding", "metadata": {"name": "tether"}, "roleRef": {"kind": "ClusterRole", "name": "tether"},
                   "subjects": [{"kind": "ServiceAccount", "name": "tether", "namespace": "tether-system"}]}),
            json!({"kind": "Role", "metadata": {"name": "le", "namespace": "tether-system"}, "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]}]}),
            json!({"kind": "RoleBinding", "metadata": {"name": "le", "namespace": "tether-system"}, "roleRef": {"kind": "Role", "name": "le"},
                   "subjects": [{"kind": "ServiceAccount", "name": "tether"}]}),
            json!({"kind": "ClusterRole", "metadata": {"name": "edit"}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "edit"}}]}}),
            json!({"kind": "ClusterRole", "metadata": {"name": "edit-part", "labels": {"agg": "edit"}}, "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}]}),
            json!({"kind": "RoleBinding", "metadata": {"name": "devs-edit", "namespace": "ns"}, "roleRef": {"kind": "ClusterRole", "name": "edit"},
                   "subjects": [{"kind": "Group", "name": "devs"}]}),
        ];
        let sa = Identity::service_account("tether-system", "tether");
        let alice = Identity::user("alice", &["devs"]);
        let d = authorize(
            &objects,
            &sa,
            &res("list", "apps", "deployments", "", "", ""),
        );
        assert_eq!(d, Decision { allowed: true, reason: "RBAC: allowed by ClusterRoleBinding \"tether\" of ClusterRole \"tether\" to ServiceAccount \"tether/tether-system\"".into() });
        assert!(
            !authorize(
                &objects,
                &sa,
                &res("watch", "apps", "deployments", "", "", "")
            )
            .allowed
        );
        let d = authorize(
            &objects,
            &sa,
            &res(
                "create",
                "coordination.k8s.io",
                "leases",
                "",
                "tether-system",
                "",
            ),
        );
        assert_eq!(d.reason, "RBAC: allowed by RoleBinding \"le/tether-system\" of Role \"le\" to ServiceAccount \"tether/tether-system\"");
        assert!(
            !authorize(
                &objects,
                &sa,
                &res("create", "coordination.k8s.io", "leases", "", "default", "")
            )
            .allowed,
            "a Role binds in its namespace only"
        );
        assert!(
            authorize(
                &objects,
                &alice,
                &res("delete", "", "configmaps", "", "ns", "c")
            )
            .allowed,
            "aggregated ClusterRole via RoleBinding"
        );
        assert!(
            !authorize(
                &objects,
                &alice,
                &res("delete", "", "configmaps", "", "other", "c")
            )
            .allowed
        );
        assert!(
            !authorize(&objects, &alice, &res("list", "", "configmaps", "", "", "")).allowed,
            "not cluster-wide"
        );
        assert!(
            authorize(
                &objects,
                &Identity::admin(),
                &res("delete", "x", "y", "", "", "")
            )
            .allowed
        );
        assert!(
            authorize(
                &objects,
                &alice,
                &Request {
                    verb: "get".into(),
                    resource: None,
                    path: "/apis/apps/v1".into()
                }
            )
            .allowed,
            "discovery"
        );
        assert!(
            authorize(
                &objects,
                &alice,
                &res(
                    "create",
                    "authorization.k8s.io",
                    "selfsubjectaccessreviews",
                    "",
                    "",
                    ""
                )
            )
            .allowed
        );
        assert!(
            !authorize(
                &objects,
                &alice,
                &res(
                    "create",
                    "authorization.k8s.io",
                    "subjectaccessreviews",
                    "",
                    "",
                    ""
                )
            )
            .allowed
        );
    }

    #[test]
    fn forbidden_messages_read_like_the_apiservers() {
        let u = Identity::user("alice", &[]);
        assert_eq!(forbidden_message(&u, &res("create", "", "pods", "", "default", "p")),
            "pods \"p\" is forbidden: User \"alice\" cannot create resource \"pods\" in API group \"\" in the namespace \"default\"");
        assert_eq!(forbidden_message(&u, &res("list", "apps", "deployments", "", "", "")),
            "deployments.apps is forbidden: User \"alice\" cannot list resource \"deployments\" in API group \"apps\" at the cluster scope");
        assert_eq!(forbidden_message(&u, &res("patch", "tether.dev", "appdomains", "status", "ns", "a")),
            "appdomains.tether.dev \"a\" is forbidden: User \"alice\" cannot patch resource \"appdomains/status\" in API group \"tether.dev\" in the namespace \"ns\"");
    }
}
