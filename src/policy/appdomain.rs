//! AppDomain admission rules (SPEC 5.4), as pure functions.
//!
//! The cluster's AppDomains are the allocation table: the caller passes the current holders
//! of a domain (from a watched cache, or the manifest offline) and these functions decide.
//! Ids are compared after [`normalize_id`], so `{3F2A…}` and `3f2a…` are the same tenant.
//!
//! Known limit, by construction of admission webhooks: two CREATEs for different id pairs
//! that compute the same domain and arrive within the cache's propagation delay can both be
//! admitted. The ClusterDomainClaim (cluster-scoped, named after the domain) that the
//! controller creates is the real lock; the loser shows `DomainClaimed=False`.

use crate::borrowed_json::Value;
use serde_json::json;

use super::{Mutation, Violation};
use crate::naming::{
    app_domain, check_domain, disambiguated_app_domain, domain_part, normalize_id, DomainRoot,
};

/// Settings from configuration.
#[derive(Debug, Clone)]
pub struct DomainSettings {
    /// `--domain-root`; AppDomains are refused while it is unset.
    pub root: Option<DomainRoot>,
    /// `--reserved-names`, lowercased.
    pub reserved: Vec<String>,
    /// `--runner-kservice`, the default `spec.serviceRef.name`.
    pub runner_kservice: String,
}

/// An AppDomain that holds a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub namespace: String,
    pub name: String,
    pub tenant_id: String,
    pub extension_id: String,
}

impl Holder {
    /// The holder described by an AppDomain object, if it has a domain.
    pub fn from_object(obj: &Value) -> Option<(String, Holder)> {
        let domain = str_at(obj, "/spec/domain")?;
        if domain.is_empty() {
            return None;
        }
        Some((
            domain.to_string(),
            Holder {
                namespace: str_at(obj, "/metadata/namespace")
                    .unwrap_or_default()
                    .to_string(),
                name: str_at(obj, "/metadata/name")
                    .unwrap_or_default()
                    .to_string(),
                tenant_id: str_at(obj, "/spec/tenantId")
                    .unwrap_or_default()
                    .to_string(),
                extension_id: str_at(obj, "/spec/extensionId")
                    .unwrap_or_default()
                    .to_string(),
            },
        ))
    }

    fn same_pair(&self, tenant: &str, extension: &str) -> bool {
        normalize_id(&self.tenant_id) == normalize_id(tenant)
            && normalize_id(&self.extension_id) == normalize_id(extension)
    }
}

/// What the validating webhook decides.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Allowed {
        warnings: Vec<String>,
    },
    Denied(Vec<Violation>),
    /// 409: the domain is held by another id pair.
    Conflict(String),
}

fn str_at<'a>(obj: &'a Value, ptr: &str) -> Option<&'a str> {
    obj.pointer(ptr).and_then(Value::as_str)
}

/// The ids, or violations naming the missing ones.
fn ids<'v>(obj: &'v Value<'_>) -> Result<(&'v str, &'v str), Vec<Violation>> {
    let mut v = Vec::new();
    let mut get = |field: &str, ptr: &str| match obj.pointer(ptr) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.as_ref()),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            v.push(Violation::malformed(
                field,
                "required: set it to the id (a UUID or a name) this domain is for",
            ));
            None
        }
        Some(_) => {
            v.push(Violation::malformed(field, "must be a string"));
            None
        }
    };
    let t = get("spec.tenantId", "/spec/tenantId");
    let e = get("spec.extensionId", "/spec/extensionId");
    match (t, e) {
        (Some(t), Some(e)) => Ok((t, e)),
        _ => Err(v),
    }
}

fn no_root() -> Violation {
    Violation::forbidden(
        "spec.domain",
        "tether has no --domain-root (env EXT_DOMAIN_ROOT) configured, so it cannot allocate app domains; ask your platform team to set it",
    )
}

/// The domain to allocate: the plain form, or the disambiguated one when a different id pair
/// already holds the plain form.
pub fn allocate(
    tenant: &str,
    extension: &str,
    root: &DomainRoot,
    holders_of: &dyn Fn(&str) -> Vec<Holder>,
    myself: (&str, &str),
) -> String {
    let plain = app_domain(tenant, extension, root);
    let taken = holders_of(&plain).iter().any(|h| {
        (h.namespace.as_str(), h.name.as_str()) != myself && !h.same_pair(tenant, extension)
    });
    if taken {
        disambiguated_app_domain(tenant, extension, root)
    } else {
        plain
    }
}

/// SPEC 5.4 mutation (CREATE): fill `spec.domain` and a default `spec.serviceRef.name`.
pub fn mutate(
    obj: &Value,
    settings: &DomainSettings,
    holders_of: &dyn Fn(&str) -> Vec<Holder>,
    myself: (&str, &str),
) -> Result<Mutation, Vec<Violation>> {
    let mut m = Mutation::default();
    let mut ops = Vec::new();
    let spec_missing = !obj.get("spec").is_some_and(Value::is_object);
    if spec_missing {
        // Validation explains what is missing; a patch against a missing spec would fail.
        return Ok(m);
    }
    let domain_empty = matches!(obj.pointer("/spec/domain"), None | Some(Value::Null))
        || str_at(obj, "/spec/domain") == Some("");
    if domain_empty {
        if let Ok((t, e)) = ids(obj) {
            let Some(root) = &settings.root else {
                return Err(vec![no_root()]);
            };
            let d = allocate(t, e, root, holders_of, myself);
            m.warnings.push(format!("tether: set spec.domain to {d}"));
            ops.push(json!({"op": "add", "path": "/spec/domain", "value": d}));
        }
    }
    let svc = obj.pointer("/spec/serviceRef");
    let svc_name_empty = matches!(svc.and_then(|s| s.get("name")), None | Some(Value::Null))
        || svc.and_then(|s| s.get("name")).and_then(Value::as_str) == Some("");
    if svc_name_empty {
        let name = settings.runner_kservice.clone();
        match svc {
            Some(Value::Object(_)) => {
                ops.push(json!({"op": "add", "path": "/spec/serviceRef/name", "value": name}))
            }
            _ => {
                ops.push(json!({"op": "add", "path": "/spec/serviceRef", "value": {"name": name}}))
            }
        }
        m.warnings.push(format!(
            "tether: set spec.serviceRef.name to {:?} (the default Knative Service)",
            settings.runner_kservice
        ));
    }
    m.patch = serde_json::from_value(serde_json::Value::Array(ops)).unwrap_or_default();
    Ok(m)
}

/// Whether an UPDATE leaves `spec` as it was.
pub fn spec_unchanged(obj: &Value, old: &Value) -> bool {
    obj.get("spec") == old.get("spec")
}

/// `None`, `null` or `""`.
fn is_unset(v: Option<&Value>) -> bool {
    matches!(v, None | Some(Value::Null)) || v.and_then(Value::as_str) == Some("")
}

/// SPEC 5.4 mutation (UPDATE): an empty or absent `spec.domain` is restored from `old`, so
/// re-applying the manifest that created the AppDomain (`domain: ""`, client- or server-side)
/// changes nothing; likewise an empty `spec.serviceRef.name` (the stored name, else the
/// default). The stored domain is never recomputed (the root may have changed since). A
/// different non-empty domain is left alone for validation to refuse as immutable.
pub fn mutate_update(
    obj: &Value,
    old: &Value,
    settings: &DomainSettings,
    holders_of: &dyn Fn(&str) -> Vec<Holder>,
    myself: (&str, &str),
) -> Result<Mutation, Vec<Violation>> {
    if !obj.get("spec").is_some_and(Value::is_object) {
        return Ok(Mutation::default());
    }
    let stored = |ptr: &str| {
        old.pointer(ptr)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    if is_unset(obj.pointer("/spec/domain")) && stored("/spec/domain").is_none() {
        // Nothing to restore (never admitted with a domain): allocate as on CREATE.
        return mutate(obj, settings, holders_of, myself);
    }
    let mut ops = Vec::new();
    if is_unset(obj.pointer("/spec/domain")) {
        if let Some(d) = stored("/spec/domain") {
            ops.push(json!({"op": "add", "path": "/spec/domain", "value": d}));
        }
    }
    let svc = obj.pointer("/spec/serviceRef");
    if is_unset(svc.and_then(|s| s.get("name"))) {
        let name =
            stored("/spec/serviceRef/name").unwrap_or_else(|| settings.runner_kservice.clone());
        match svc {
            Some(Value::Object(_)) => {
                ops.push(json!({"op": "add", "path": "/spec/serviceRef/name", "value": name}))
            }
            _ => {
                ops.push(json!({"op": "add", "path": "/spec/serviceRef", "value": {"name": name}}))
            }
        }
    }
    Ok(Mutation {
        patch: serde_json::from_value(serde_json::Value::Array(ops)).unwrap_or_default(),
        ..Mutation::default()
    })
}

/// SPEC 5.4 validation items 1, 2, 3 and 5 (the access review, item 4, is the caller's).
pub fn validate(
    obj: &Value,
    old: Option<&Value>,
    settings: &DomainSettings,
    holders_of: &dyn Fn(&str) -> Vec<Holder>,
    myself: (&str, &str),
) -> Outcome {
    let mut violations = Vec::new();
    if let Some(old) = old {
        for (field, ptr) in [
            ("spec.tenantId", "/spec/tenantId"),
            ("spec.extensionId", "/spec/extensionId"),
            ("spec.domain", "/spec/domain"),
        ] {
            if old.pointer(ptr) != obj.pointer(ptr) {
                violations.push(Violation::forbidden(
                    field,
                    "is immutable: delete this AppDomain and create a new one to change it",
                ));
            }
        }
        // An UPDATE that leaves spec alone (tether's finalizer removal, labels, status)
        // allocates nothing: re-checking it against a --domain-root or --reserved-names
        // changed since, or against a holder that won a race, would only strand the object
        // in Terminating. Immutability is all there is to check.
        if violations.is_empty() && spec_unchanged(obj, old) {
            return Outcome::Allowed { warnings: vec![] };
        }
    }
    let (tenant, extension) = match ids(obj) {
        Ok(x) => x,
        Err(v) => {
            violations.extend(v);
            return Outcome::Denied(violations);
        }
    };
    let Some(root) = &settings.root else {
        violations.push(no_root());
        return Outcome::Denied(violations);
    };
    let plain = app_domain(tenant, extension, root);
    let alt = disambiguated_app_domain(tenant, extension, root);
    let domain = str_at(obj, "/spec/domain").unwrap_or_default();
    let mut warnings = Vec::new();
    if domain != plain && domain != alt {
        violations.push(Violation::forbidden(
            "spec.domain",
            format!(
                "{} is not the domain computed for this tenantId and extensionId; leave it empty and tether fills in {plain:?} (or {alt:?} when that is taken)",
                crate::text::quoted(domain)
            ),
        ));
    } else {
        match check_domain(domain) {
            Ok(c) => warnings.extend(c.warning().map(|w| format!("tether: {w}"))),
            Err(e) => violations.push(Violation::malformed("spec.domain", e.to_string())),
        }
    }
    for (field, id) in [("spec.tenantId", tenant), ("spec.extensionId", extension)] {
        let part = domain_part(id).part;
        if settings.reserved.contains(&part) {
            violations.push(Violation::forbidden(
                field,
                format!(
                    "gives the domain part {part:?}, which is reserved (--reserved-names); use another id"
                ),
            ));
        }
    }
    if !violations.is_empty() {
        return Outcome::Denied(violations);
    }
    if let Some(h) = holders_of(domain).into_iter().find(|h| {
        (h.namespace.as_str(), h.name.as_str()) != myself && !h.same_pair(tenant, extension)
    }) {
        return Outcome::Conflict(format!(
            "spec.domain: {domain:?} is already held by AppDomain {}/{} (tenantId {:?}, extensionId {:?}); delete this object and create it again with an empty spec.domain to get the disambiguated domain {alt:?}",
            h.namespace, h.name, h.tenant_id, h.extension_id
        ));
    }
    Outcome::Allowed { warnings }
}

#[cfg(test)]
mod tests;
