//! Kubernetes' escalation rules for RBAC objects, applied to the *requesting user* of an
//! AttachedResource that carries a Role or RoleBinding (SECURITY.md, "RBAC kinds").
//!
//! The API server checks escalation against whoever creates an RBAC object: creating a Role
//! needs `escalate` on roles or holding every permission it grants; creating a binding needs
//! `bind` on the referenced role or holding its permissions. tether creates the copies, so
//! the API server would check tether's account, not the user's: tether would lend its own
//! rights. This module says what to ask about the user instead; the caller runs the access
//! reviews. RBAC kinds are banned by default, so this only matters after an explicit opt-in.
//!
//! Choices (stricter than Kubernetes where it matters, never looser):
//! - A permission is checked by one access review per (apiGroup, resource, verb, name), with
//!   `*` passed through: RBAC matches a requested `*` only against a granted `*`, which is
//!   exactly "holds every permission" for wildcards.
//! - A `resourceNames` entry with a placeholder (rendered per Deployment version later) is
//!   checked without a name, i.e. for every name.
//! - Bindings need `bind`; holding the referenced role's permissions is not accepted instead,
//!   because checking that would need tether to read every Role and ClusterRole.
//! - At most [`MAX_GRANTS`] permissions are checked one by one; a Role granting more passes
//!   only with `escalate`.

use crate::borrowed_json::Value;

use super::{quote_short, Violation};

/// The API group of the RBAC kinds.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// At most this many access reviews for one Role's permissions (each is a call to the API
/// server on a cold cache).
pub const MAX_GRANTS: usize = 64;

/// One permission a Role grants, as access-review attributes (namespace comes from the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub group: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub verb: String,
    pub name: Option<String>,
}

/// What the user must be allowed, besides `create`/`update` on the kind itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EscalationCheck {
    /// A Role: `escalate` on roles in the namespace, or every one of `grants`.
    /// `too_many` is set (and `grants` empty) when the Role grants more than [`MAX_GRANTS`].
    Role {
        grants: Vec<Grant>,
        too_many: Option<usize>,
    },
    /// A RoleBinding: `bind` on the referenced role (`roles` or `clusterroles`).
    Bind {
        role_resource: String,
        role_name: String,
    },
}

/// The escalation check for an attached object of `group`/`kind`, or `None` for kinds
/// without one. Malformed rules or references are violations with their field path (the API
/// server would reject them too, but only after tether admitted the AttachedResource).
pub fn escalation_check(
    group: &str,
    kind: &str,
    object: &Value,
) -> Result<Option<EscalationCheck>, Vec<Violation>> {
    if group != RBAC_GROUP {
        return Ok(None);
    }
    match kind {
        "Role" => role_check(object).map(Some),
        "RoleBinding" => binding_check(object).map(Some),
        // Cluster-scoped kinds never get this far (rule 7).
        _ => Ok(None),
    }
}

fn has_placeholder(s: &str) -> bool {
    s.contains("{{")
}

/// Reads a rule's string list; `None` (with a violation) when it is not a list of strings.
fn strings(
    rule: &crate::borrowed_json::Map<'_>,
    key: &str,
    path: &str,
    out: &mut Vec<Violation>,
) -> Option<Vec<String>> {
    match rule.get(key) {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(Value::Array(items)) => {
            let mut v = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(s) => v.push(s.to_string()),
                    None => {
                        out.push(Violation::malformed(
                            format!("{path}.{key}[{i}]"),
                            "must be a string",
                        ));
                        return None;
                    }
                }
            }
            Some(v)
        }
        Some(_) => {
            out.push(Violation::malformed(
                format!("{path}.{key}"),
                "must be a list of strings",
            ));
            None
        }
    }
}

fn role_check(object: &Value) -> Result<EscalationCheck, Vec<Violation>> {
    let mut out = Vec::new();
    let rules = match object.get("rules") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(r)) => r.as_slice(),
        Some(_) => {
            return Err(vec![Violation::malformed(
                "spec.object.rules",
                "must be a list of PolicyRules",
            )])
        }
    };
    let mut grants = Vec::new();
    let mut total: usize = 0;
    for (i, rule) in rules.iter().enumerate() {
        let path = format!("spec.object.rules[{i}]");
        let Some(rule) = rule.as_object() else {
            out.push(Violation::malformed(
                path,
                "must be an object (a PolicyRule)",
            ));
            continue;
        };
        let (Some(groups), Some(resources), Some(verbs), Some(names), Some(urls)) = (
            strings(rule, "apiGroups", &path, &mut out),
            strings(rule, "resources", &path, &mut out),
            strings(rule, "verbs", &path, &mut out),
            strings(rule, "resourceNames", &path, &mut out),
            strings(rule, "nonResourceURLs", &path, &mut out),
        ) else {
            continue;
        };
        if !urls.is_empty() {
            out.push(Violation::malformed(
                format!("{path}.nonResourceURLs"),
                "only ClusterRoles can grant nonResourceURLs; remove it",
            ));
            continue;
        }
        for (key, list) in [
            ("apiGroups", &groups),
            ("resources", &resources),
            ("verbs", &verbs),
        ] {
            if let Some(bad) = list.iter().find(|s| has_placeholder(s)) {
                out.push(Violation::forbidden(
                    format!("{path}.{key}"),
                    format!(
                        "{} holds a placeholder: tether checks what a Role grants before it \
                         renders one, so placeholders are allowed only in resourceNames",
                        quote_short(bad, 60)
                    ),
                ));
            }
        }
        // An empty list grants nothing (the API server requires verbs, and a rule without
        // groups or resources matches no request).
        let name_count = names.len().max(1);
        total = total.saturating_add(
            groups
                .len()
                .saturating_mul(resources.len())
                .saturating_mul(verbs.len())
                .saturating_mul(name_count),
        );
        if total > MAX_GRANTS {
            continue;
        }
        let names: Vec<Option<String>> =
            if names.is_empty() || names.iter().any(|n| has_placeholder(n)) {
                vec![None]
            } else {
                names.into_iter().map(Some).collect()
            };
        for g in &groups {
            for r in &resources {
                let (resource, subresource) = match r.split_once('/') {
                    Some((res, sub)) => (res.to_string(), Some(sub.to_string())),
                    None => (r.clone(), None),
                };
                for v in &verbs {
                    for n in &names {
                        let grant = Grant {
                            group: g.clone(),
                            resource: resource.clone(),
                            subresource: subresource.clone(),
                            verb: v.clone(),
                            name: n.clone(),
                        };
                        if !grants.contains(&grant) {
                            grants.push(grant);
                        }
                    }
                }
            }
        }
    }
    if !out.is_empty() {
        return Err(out);
    }
    if total > MAX_GRANTS {
        return Ok(EscalationCheck::Role {
            grants: Vec::new(),
            too_many: Some(total),
        });
    }
    Ok(EscalationCheck::Role {
        grants,
        too_many: None,
    })
}

fn binding_check(object: &Value) -> Result<EscalationCheck, Vec<Violation>> {
    let role_ref = object.get("roleRef");
    let Some(role_ref) = role_ref.and_then(Value::as_object) else {
        return Err(vec![Violation::malformed(
            "spec.object.roleRef",
            "required: {apiGroup: rbac.authorization.k8s.io, kind: Role or ClusterRole, name: ...}",
        )]);
    };
    let mut out = Vec::new();
    match role_ref.get("apiGroup").and_then(Value::as_str) {
        Some(RBAC_GROUP) => {}
        _ => out.push(Violation::malformed(
            "spec.object.roleRef.apiGroup",
            "must be \"rbac.authorization.k8s.io\"",
        )),
    }
    let resource = match role_ref.get("kind").and_then(Value::as_str) {
        Some("Role") => Some("roles"),
        Some("ClusterRole") => Some("clusterroles"),
        _ => {
            out.push(Violation::malformed(
                "spec.object.roleRef.kind",
                "must be \"Role\" or \"ClusterRole\"",
            ));
            None
        }
    };
    let name = match role_ref.get("name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() && !has_placeholder(n) => Some(n),
        Some(n) if has_placeholder(n) => {
            out.push(Violation::forbidden(
                "spec.object.roleRef.name",
                "must name one role, not a placeholder: tether checks bind on it before it renders",
            ));
            None
        }
        _ => {
            out.push(Violation::malformed("spec.object.roleRef.name", "required"));
            None
        }
    };
    match (resource, name) {
        (Some(r), Some(n)) if out.is_empty() => Ok(EscalationCheck::Bind {
            role_resource: r.to_string(),
            role_name: n.to_string(),
        }),
        _ => Err(out),
    }
}

#[cfg(test)]
mod tests;
