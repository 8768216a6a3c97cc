//! Discovery documents: legacy (`/api`, `/apis`, `/apis/g/v`) and aggregated.

use super::*;

/// Groups in first-registration order (core excluded).
pub(super) fn group_names(st: &State) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in st.resources.iter().filter(|r| !r.group.is_empty()) {
        if !out.contains(&r.group) {
            out.push(r.group.clone());
        }
    }
    out
}

/// Versions of a group in first-registration order; the first is the preferred one.
pub(super) fn versions_of(st: &State, group: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in st.resources.iter().filter(|r| r.group == group) {
        if !out.contains(&r.version) {
            out.push(r.version.clone());
        }
    }
    out
}

pub(super) fn api_group(st: &State, group: &str) -> Value {
    let versions: Vec<Value> = versions_of(st, group)
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "kind": "APIGroup", "apiVersion": "v1", "name": group,
        "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
        "versions": versions,
    })
}

pub(super) fn resource_list(st: &State, group: &str, version: &str) -> Outcome {
    let defs: Vec<&ResourceDef> = st
        .resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if defs.is_empty() {
        return ApiError::not_found_path().into();
    }
    let mut resources = Vec::new();
    for d in defs {
        resources.push(json!({
            "name": d.plural, "singularName": d.kind.to_lowercase(), "namespaced": d.namespaced,
            "kind": d.kind, "verbs": d.verbs,
        }));
        if d.status_subresource {
            resources.push(json!({
                "name": format!("{}/status", d.plural), "singularName": "", "namespaced": d.namespaced,
                "kind": d.kind, "verbs": ["get", "patch", "update"],
            }));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Outcome::ok(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// `GET /api` or `/apis` with the aggregated-discovery Accept header.
pub(super) fn aggregated_discovery(st: &State, core: bool) -> Outcome {
    let groups = if core {
        vec![String::new()]
    } else {
        group_names(st)
    };
    let items: Vec<Value> = groups
        .iter()
        .map(|g| {
            let versions: Vec<Value> = versions_of(st, g)
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = st
                        .resources
                        .iter()
                        .filter(|r| &r.group == g && &r.version == v)
                        .map(|r| {
                            let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
                            let subs: Vec<Value> = if r.status_subresource {
                                vec![json!({"subresource": "status", "responseKind": gvk, "verbs": ["get", "patch", "update"]})]
                            } else {
                                vec![]
                            };
                            json!({
                                "resource": r.plural, "responseKind": gvk,
                                "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                                "singularResource": r.kind.to_lowercase(), "verbs": r.verbs,
                                "subresources": subs,
                            })
                        })
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": g}, "versions": versions})
        })
        .collect();
    Outcome::Json {
        code: 200,
        body: json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items}),
        content_type: AGGREGATED_CT,
    }
}
