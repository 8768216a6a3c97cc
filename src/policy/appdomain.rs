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

use serde_json::{json, Value};

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
fn ids(obj: &Value) -> Result<(&str, &str), Vec<Violation>> {
    let mut v = Vec::new();
    let mut get = |field: &str, ptr: &str| match obj.pointer(ptr) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.as_str()),
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
    m.patch = serde_json::from_value(Value::Array(ops)).unwrap_or_default();
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
        patch: serde_json::from_value(Value::Array(ops)).unwrap_or_default(),
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
mod tests {
    use super::*;

    fn settings() -> DomainSettings {
        DomainSettings {
            root: Some(DomainRoot::parse("apps.example.com").unwrap()),
            reserved: vec!["www".into(), "api".into(), "admin".into()],
            runner_kservice: "runner".into(),
        }
    }

    fn apd(ns: &str, name: &str, t: &str, e: &str, domain: &str) -> Value {
        json!({"apiVersion": "tether.dev/v1alpha1", "kind": "AppDomain",
               "metadata": {"name": name, "namespace": ns},
               "spec": {"tenantId": t, "extensionId": e, "domain": domain}})
    }

    const T: &str = "3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c";

    fn none(_: &str) -> Vec<Holder> {
        vec![]
    }

    #[test]
    fn mutation_fills_domain_and_service() {
        let obj = apd("ns", "a", T, "invoicing-pro", "");
        let m = mutate(&obj, &settings(), &none, ("ns", "a")).unwrap();
        let mut out = obj.clone();
        json_patch::patch(&mut out, &m.patch).unwrap();
        assert_eq!(
            out["spec"]["domain"],
            "3f2a9c1e--invoicing-pr.apps.example.com"
        );
        assert_eq!(out["spec"]["serviceRef"], json!({"name": "runner"}));
        assert_eq!(m.warnings.len(), 2);
        // Nothing to do a second time.
        let again = mutate(&out, &settings(), &none, ("ns", "a")).unwrap();
        assert!(again.is_empty());
    }

    #[test]
    fn mutation_disambiguates_when_another_pair_holds_the_plain_domain() {
        let plain = "3f2a9c1e--invoicing-pr.apps.example.com";
        let other = |d: &str| {
            if d == plain {
                vec![Holder {
                    namespace: "x".into(),
                    name: "y".into(),
                    tenant_id: "3f2a9c1e-0000-4000-8000-000000000000".into(),
                    extension_id: "invoicing-pro".into(),
                }]
            } else {
                vec![]
            }
        };
        let obj = apd("ns", "a", T, "invoicing-pro", "");
        let m = mutate(&obj, &settings(), &other, ("ns", "a")).unwrap();
        let d = m.patch.0[0].clone();
        let v = serde_json::to_value(d).unwrap();
        let domain = v["value"].as_str().unwrap();
        assert_ne!(domain, plain);
        assert!(
            domain.starts_with("3f2a9c1e--invoicing-pr-") && domain.ends_with(".apps.example.com"),
            "{domain}"
        );
        // The same pair elsewhere (e.g. its own earlier object) is not a conflict.
        let same = |_: &str| {
            vec![Holder {
                namespace: "z".into(),
                name: "q".into(),
                tenant_id: T.to_uppercase(),
                extension_id: "Invoicing-Pro".into(),
            }]
        };
        let m = mutate(&obj, &settings(), &same, ("ns", "a")).unwrap();
        assert_eq!(serde_json::to_value(&m.patch.0[0]).unwrap()["value"], plain);
    }

    #[test]
    fn validation_table() {
        let s = settings();
        let plain = "3f2a9c1e--invoicing-pr.apps.example.com";
        let ok = apd("ns", "a", T, "invoicing-pro", plain);
        assert_eq!(
            validate(&ok, None, &s, &none, ("ns", "a")),
            Outcome::Allowed { warnings: vec![] }
        );
        let cases: Vec<(Value, &str)> = vec![
            (
                apd("ns", "a", "", "invoicing-pro", plain),
                "spec.tenantId: required",
            ),
            (
                json!({"metadata": {"name": "a"}, "spec": {"tenantId": T}}),
                "spec.extensionId: required",
            ),
            (
                apd("ns", "a", T, "invoicing-pro", "evil.apps.example.com"),
                "spec.domain: \"evil.apps.example.com\" is not the domain computed",
            ),
            (
                apd(
                    "ns",
                    "a",
                    "www",
                    "invoicing-pro",
                    "www--invoicing-pr.apps.example.com",
                ),
                "spec.tenantId: gives the domain part \"www\", which is reserved",
            ),
        ];
        for (obj, want) in cases {
            match validate(&obj, None, &s, &none, ("ns", "a")) {
                Outcome::Denied(v) => {
                    let (_, msg) = crate::policy::summarize(&v);
                    assert!(msg.contains(want), "{want:?} not in {msg:?}");
                }
                other => panic!("{obj}: {other:?}"),
            }
        }
        // Immutability on UPDATE.
        let old = ok.clone();
        let mut new = ok.clone();
        new["spec"]["extensionId"] = json!("other");
        let Outcome::Denied(v) = validate(&new, Some(&old), &s, &none, ("ns", "a")) else {
            panic!()
        };
        assert!(v
            .iter()
            .any(|x| x.field == "spec.extensionId" && x.message.contains("immutable")));
        // Conflict with another pair holding the domain: 409 naming the holder.
        let holder = |_: &str| {
            vec![Holder {
                namespace: "other-ns".into(),
                name: "theirs".into(),
                tenant_id: "3f2a9c1e-ffff-4fff-8fff-ffffffffffff".into(),
                extension_id: "invoicing-pro".into(),
            }]
        };
        match validate(&ok, None, &s, &holder, ("ns", "a")) {
            Outcome::Conflict(m) => assert!(m.contains("AppDomain other-ns/theirs"), "{m}"),
            o => panic!("{o:?}"),
        }
        // ... but not with itself (UPDATE sees its own stored object).
        let me = |_: &str| {
            vec![Holder {
                namespace: "ns".into(),
                name: "a".into(),
                tenant_id: "different".into(),
                extension_id: "x".into(),
            }]
        };
        assert!(matches!(
            validate(&ok, None, &s, &me, ("ns", "a")),
            Outcome::Allowed { .. }
        ));
        // No root configured.
        let s2 = DomainSettings {
            root: None,
            ..settings()
        };
        let Outcome::Denied(v) = validate(&ok, None, &s2, &none, ("ns", "a")) else {
            panic!()
        };
        assert!(v[0].message.contains("--domain-root"));
    }

    #[test]
    fn long_domains_are_admitted_with_a_warning() {
        let root =
            DomainRoot::parse("a-very-long-platform-subdomain.customer-applications.example.com")
                .unwrap();
        let s = DomainSettings {
            root: Some(root.clone()),
            ..settings()
        };
        let d = app_domain(T, "invoicing-pro", &root);
        assert!(d.len() > 63);
        match validate(
            &apd("ns", "a", T, "invoicing-pro", &d),
            None,
            &s,
            &none,
            ("ns", "a"),
        ) {
            Outcome::Allowed { warnings } => assert!(warnings[0].contains("63"), "{warnings:?}"),
            o => panic!("{o:?}"),
        }
    }
    /// Issue 11 defect 3: an UPDATE that leaves `spec` unchanged (tether's finalizer removal,
    /// a label) gets the immutability checks only: not the domain computation (the root may
    /// have changed), not the reserved names, not the holder check (a race may have let two
    /// id pairs hold one domain). A spec change still gets every rule.
    #[test]
    fn an_update_that_leaves_spec_alone_is_checked_for_immutability_only() {
        let plain = "3f2a9c1e--invoicing-pr.apps.example.com";
        let old = apd("ns", "a", T, "invoicing-pro", plain);
        let mut new = old.clone();
        new["metadata"]["finalizers"] = json!([]);
        let moved_root = DomainSettings {
            root: Some(DomainRoot::parse("apps.example.net").unwrap()),
            reserved: vec!["invoicing-pr".into()],
            runner_kservice: "runner".into(),
        };
        let racer = |_: &str| {
            vec![Holder {
                namespace: "other-ns".into(),
                name: "theirs".into(),
                tenant_id: "3f2a9c1e-ffff-4fff-8fff-ffffffffffff".into(),
                extension_id: "invoicing-pro".into(),
            }]
        };
        let no_root = DomainSettings {
            root: None,
            ..settings()
        };
        for (what, s, holders) in [
            (
                "root and reserved names changed",
                &moved_root,
                &none as &dyn Fn(&str) -> Vec<Holder>,
            ),
            ("another id pair holds the domain", &settings(), &racer),
            ("no root configured", &no_root, &none),
        ] {
            assert_eq!(
                validate(&new, Some(&old), s, holders, ("ns", "a")),
                Outcome::Allowed { warnings: vec![] },
                "{what}"
            );
        }
        // A spec change under the moved root meets every rule.
        let mut changed = new.clone();
        changed["spec"]["serviceRef"] = json!({"name": "runner-v2"});
        let Outcome::Denied(v) = validate(&changed, Some(&old), &moved_root, &none, ("ns", "a"))
        else {
            panic!("a spec change must be validated in full")
        };
        let (_, msg) = crate::policy::summarize(&v);
        assert!(msg.contains("not the domain computed"), "{msg}");
        assert!(msg.contains("reserved"), "{msg}");
    }

    /// Issue 11 defect 2 (SPEC 5.4 Mutating UPDATE): an empty or absent `spec.domain` (and
    /// `spec.serviceRef.name`) is restored from `oldObject`, so re-applying the manifest that
    /// created the AppDomain is a no-op.
    #[test]
    fn update_mutation_restores_the_domain_from_the_old_object() {
        let plain = "3f2a9c1e--invoicing-pr.apps.example.com";
        let mut old = apd("ns", "a", T, "invoicing-pro", plain);
        old["spec"]["serviceRef"] = json!({"name": "custom"});
        let mut emptied = old.clone();
        emptied["spec"]["domain"] = json!("");
        emptied["spec"]["serviceRef"]["name"] = json!("");
        let mut absent = old.clone();
        absent["spec"].as_object_mut().unwrap().remove("domain");
        absent["spec"].as_object_mut().unwrap().remove("serviceRef");
        let mut nulled = old.clone();
        nulled["spec"]["domain"] = Value::Null;
        // Even under another root, the stored domain comes back: it is not recomputed.
        let moved = DomainSettings {
            root: Some(DomainRoot::parse("apps.example.net").unwrap()),
            ..settings()
        };
        for (what, obj) in [("empty", emptied), ("absent", absent), ("null", nulled)] {
            let m = mutate_update(&obj, &old, &moved, &none, ("ns", "a")).unwrap();
            let mut out = obj.clone();
            json_patch::patch(&mut out, &m.patch).unwrap();
            assert_eq!(out["spec"], old["spec"], "{what}");
        }
        // Nothing to restore: no patch.
        let m = mutate_update(&old, &old, &settings(), &none, ("ns", "a")).unwrap();
        assert!(m.is_empty());
        // A different domain is left for validation to refuse as immutable.
        let mut other = old.clone();
        other["spec"]["domain"] = json!("x--y.apps.example.com");
        assert!(mutate_update(&other, &old, &settings(), &none, ("ns", "a"))
            .unwrap()
            .is_empty());
    }
}
