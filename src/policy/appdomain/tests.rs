use super::*;
use serde_json::Value;

// The rules read borrowed JSON (`crate::borrowed_json`); these tests write objects with
// `json!`. Each shim runs the rule of the same name on the borrowed form.
use crate::borrowed_json::Value as Doc;

type Holders<'h> = &'h dyn Fn(&str) -> Vec<Holder>;

fn mutate(
    obj: &Value,
    settings: &DomainSettings,
    holders_of: Holders<'_>,
    myself: (&str, &str),
) -> Result<Mutation, Vec<Violation>> {
    super::mutate(&obj.into(), settings, holders_of, myself)
}

fn mutate_update(
    obj: &Value,
    old: &Value,
    settings: &DomainSettings,
    holders_of: Holders<'_>,
    myself: (&str, &str),
) -> Result<Mutation, Vec<Violation>> {
    super::mutate_update(&obj.into(), &old.into(), settings, holders_of, myself)
}

fn validate(
    obj: &Value,
    old: Option<&Value>,
    settings: &DomainSettings,
    holders_of: Holders<'_>,
    myself: (&str, &str),
) -> Outcome {
    let old = old.map(Doc::from);
    super::validate(&obj.into(), old.as_ref(), settings, holders_of, myself)
}

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
    crate::table_test::each(cases, |(obj, want)| {
        match validate(&obj, None, &s, &none, ("ns", "a")) {
            Outcome::Denied(v) => {
                let (_, msg) = crate::policy::summarize(&v);
                assert!(msg.contains(want), "{want:?} not in {msg:?}");
            }
            other => panic!("{obj}: {other:?}"),
        }
    });
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
    let Outcome::Denied(v) = validate(&changed, Some(&old), &moved_root, &none, ("ns", "a")) else {
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
