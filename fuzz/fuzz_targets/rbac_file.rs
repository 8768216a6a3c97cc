//! (e) RBAC-file evaluation (`tether::authz::rbac_file`): parsing arbitrary text, and parsing
//! structure-aware files (Roles, ClusterRoles with aggregation, bindings) followed by access
//! checks whose answers must be deterministic and monotonic in the groups.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use tether::authz::rbac_file::{AccessQuery, RbacFile};

const GROUPS: [&str; 5] = ["", "*", "autoscaling", "apps", "policy"];
const RESOURCES: [&str; 6] = [
    "*",
    "horizontalpodautoscalers",
    "deployments",
    "pods",
    "pods/status",
    "*/scale",
];
const VERBS: [&str; 5] = ["*", "create", "get", "delete", "patch"];
const NAMES: [&str; 4] = ["a", "b", "system:authenticated", "tether"];
const NAMESPACES: [&str; 3] = ["payments", "billing", "tether-system"];

fn pick<'a>(table: &[&'a str], i: u8) -> &'a str {
    table[i as usize % table.len()]
}

#[derive(Debug, Arbitrary)]
enum Input<'a> {
    Raw(&'a str),
    Structured(Structured),
}

#[derive(Debug, Arbitrary)]
struct Structured {
    docs: Vec<Doc>,
    /// Wrap all documents in one `kind: List` instead of `---` separated documents.
    as_list: bool,
    query: Query,
    extra_group: u8,
}

#[derive(Debug, Arbitrary)]
struct Query {
    user: u8,
    groups: Vec<u8>,
    verb: u8,
    group: u8,
    resource: u8,
    subresource: Option<u8>,
    namespace: Option<u8>,
    name: Option<u8>,
}

#[derive(Debug, Arbitrary)]
struct Rule {
    api_groups: Vec<u8>,
    resources: Vec<u8>,
    verbs: Vec<u8>,
    resource_names: Option<Vec<u8>>,
}

#[derive(Debug, Arbitrary)]
enum Subject {
    User(u8),
    Group(u8),
    ServiceAccount(u8, Option<u8>),
}

#[derive(Debug, Arbitrary)]
enum Doc {
    Role {
        name: u8,
        namespace: u8,
        rules: Vec<Rule>,
    },
    ClusterRole {
        name: u8,
        labels: Vec<(u8, u8)>,
        aggregate: Option<Vec<(u8, u8)>>,
        rules: Vec<Rule>,
    },
    RoleBinding {
        name: u8,
        namespace: u8,
        cluster_role: bool,
        role: u8,
        subjects: Vec<Subject>,
    },
    ClusterRoleBinding {
        name: u8,
        role: u8,
        subjects: Vec<Subject>,
    },
}

fn rule(r: &Rule) -> Value {
    let mut v = json!({
        "apiGroups": r.api_groups.iter().map(|&i| pick(&GROUPS, i)).collect::<Vec<_>>(),
        "resources": r.resources.iter().map(|&i| pick(&RESOURCES, i)).collect::<Vec<_>>(),
        "verbs": r.verbs.iter().map(|&i| pick(&VERBS, i)).collect::<Vec<_>>(),
    });
    if let Some(n) = &r.resource_names {
        v["resourceNames"] = json!(n.iter().map(|&i| pick(&NAMES, i)).collect::<Vec<_>>());
    }
    v
}

fn subject(s: &Subject) -> Value {
    match s {
        Subject::User(n) => {
            json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": pick(&NAMES, *n)})
        }
        Subject::Group(n) => {
            json!({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": pick(&NAMES, *n)})
        }
        Subject::ServiceAccount(n, ns) => {
            let mut v = json!({"kind": "ServiceAccount", "name": pick(&NAMES, *n)});
            if let Some(ns) = ns {
                v["namespace"] = json!(pick(&NAMESPACES, *ns));
            }
            v
        }
    }
}

fn labels(l: &[(u8, u8)]) -> Value {
    let m: serde_json::Map<String, Value> = l
        .iter()
        .map(|&(k, v)| (format!("k{}", k % 3), json!(format!("v{}", v % 2))))
        .collect();
    Value::Object(m)
}

fn doc(d: &Doc) -> Value {
    let av = "rbac.authorization.k8s.io/v1";
    let rr = "rbac.authorization.k8s.io";
    match d {
        Doc::Role {
            name,
            namespace,
            rules,
        } => json!({
            "apiVersion": av, "kind": "Role",
            "metadata": {"name": format!("r{}", name % 4), "namespace": pick(&NAMESPACES, *namespace)},
            "rules": rules.iter().map(rule).collect::<Vec<_>>(),
        }),
        Doc::ClusterRole {
            name,
            labels: l,
            aggregate,
            rules,
        } => {
            let mut v = json!({
                "apiVersion": av, "kind": "ClusterRole",
                "metadata": {"name": format!("r{}", name % 4), "labels": labels(l)},
                "rules": rules.iter().map(rule).collect::<Vec<_>>(),
            });
            if let Some(sel) = aggregate {
                v["aggregationRule"] =
                    json!({"clusterRoleSelectors": [{"matchLabels": labels(sel)}]});
            }
            v
        }
        Doc::RoleBinding {
            name,
            namespace,
            cluster_role,
            role,
            subjects,
        } => json!({
            "apiVersion": av, "kind": "RoleBinding",
            "metadata": {"name": format!("b{}", name % 4), "namespace": pick(&NAMESPACES, *namespace)},
            "roleRef": {"apiGroup": rr, "kind": if *cluster_role {"ClusterRole"} else {"Role"}, "name": format!("r{}", role % 4)},
            "subjects": subjects.iter().map(subject).collect::<Vec<_>>(),
        }),
        Doc::ClusterRoleBinding {
            name,
            role,
            subjects,
        } => json!({
            "apiVersion": av, "kind": "ClusterRoleBinding",
            "metadata": {"name": format!("b{}", name % 4)},
            "roleRef": {"apiGroup": rr, "kind": "ClusterRole", "name": format!("r{}", role % 4)},
            "subjects": subjects.iter().map(subject).collect::<Vec<_>>(),
        }),
    }
}

fuzz_target!(|input: Input<'_>| {
    let s = match input {
        Input::Raw(text) => {
            // Arbitrary text: an error or a file, never a panic; no empty messages.
            match RbacFile::parse(text) {
                Ok(f) => {
                    for w in f.warnings() {
                        assert!(!w.is_empty());
                    }
                }
                Err(e) => assert!(!e.to_string().is_empty()),
            }
            return;
        }
        Input::Structured(s) => s,
    };
    let docs: Vec<Value> = s.docs.iter().map(doc).collect();
    let text = if s.as_list {
        json!({"apiVersion": "v1", "kind": "List", "items": docs}).to_string()
    } else {
        docs.iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    let file = match RbacFile::parse(&text) {
        Ok(f) => f,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let q = &s.query;
    let groups: Vec<String> = q
        .groups
        .iter()
        .map(|&g| pick(&NAMES, g).to_string())
        .collect();
    let user = match q.user % 3 {
        0 => pick(&NAMES, q.user / 3).to_string(),
        1 => format!(
            "system:serviceaccount:{}:{}",
            pick(&NAMESPACES, q.user / 3),
            pick(&NAMES, q.user / 7)
        ),
        _ => String::new(),
    };
    let query = AccessQuery {
        user: &user,
        groups: &groups,
        verb: pick(&VERBS[1..], q.verb),
        group: pick(&GROUPS[..], q.group).trim_start_matches('*'),
        resource: pick(
            &["horizontalpodautoscalers", "deployments", "pods"],
            q.resource,
        ),
        subresource: q.subresource.map(|i| pick(&["", "status", "scale"], i)),
        namespace: q.namespace.map(|i| pick(&NAMESPACES, i)),
        name: q.name.map(|i| pick(&NAMES, i)),
    };
    let first = file.check(&query);
    assert_eq!(first, file.check(&query), "check is not deterministic");
    if first.allowed {
        assert!(
            !first.reason.is_empty(),
            "allowed without naming the binding"
        );
    }
    // RBAC only grants: one more group can never take a permission away.
    let mut more_groups = groups.clone();
    more_groups.push(pick(&NAMES, s.extra_group).to_string());
    let more = AccessQuery {
        groups: &more_groups,
        ..query
    };
    let second = file.check(&more);
    if first.allowed {
        assert!(
            second.allowed,
            "adding group {:?} removed a permission: {} / {}\nfile:\n{text}",
            more_groups.last(),
            first.reason,
            second.reason
        );
    }
});
