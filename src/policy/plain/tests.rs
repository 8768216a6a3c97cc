use super::*;
use serde_json::Value;

// The rules read borrowed JSON (`crate::borrowed_json`); these tests write objects with
// `json!`. Each shim runs the rule of the same name on the borrowed form.

fn plan_injection(group: &str, kind: &str, obj: &Value) -> Result<InjectionPlan, Vec<Violation>> {
    super::plan_injection(group, kind, &obj.into())
}

fn inject(
    group: &str,
    kind: &str,
    obj: &Value,
    namespace: &str,
    selector: Option<&BTreeMap<String, String>>,
) -> Result<Mutation, Vec<Violation>> {
    super::inject(group, kind, &obj.into(), namespace, selector)
}
use crate::policy::Severity;
use proptest::prelude::*;
use serde_json::json;

/// `(field, severity)` of each violation.
type Found = Vec<(String, Severity)>;
/// `(group, kind, spec, scale_ref, selector)`.
type PlanRow = (
    &'static str,
    &'static str,
    Option<Value>,
    Option<&'static str>,
    bool,
);

fn labelled(spec: Option<Value>) -> Value {
    let mut obj =
        json!({"metadata": {"name": "x", "labels": {"tether.dev/target": "web", "team": "a"}}});
    if let (Some(spec), Some(map)) = (spec, obj.as_object_mut()) {
        map.insert("spec".into(), spec);
    }
    obj
}

fn web_ref() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"})
}

fn selector() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app".to_string(), "web".to_string()),
        ("tier".to_string(), "fe".to_string()),
    ])
}

fn selector_json() -> Value {
    json!({"app": "web", "tier": "fe"})
}

/// Applies `inject` and returns the patched object (or the violations' fields).
fn run(group: &str, kind: &str, obj: &Value) -> Result<(Value, Vec<String>), Found> {
    let sel = selector();
    match inject(group, kind, obj, "shop", Some(&sel)) {
        Ok(m) => {
            let mut doc = obj.clone();
            json_patch::patch(&mut doc, &m.patch).expect("patch must apply");
            Ok((doc, m.warnings))
        }
        Err(vs) => Err(vs.into_iter().map(|v| (v.field, v.severity)).collect()),
    }
}

#[test]
fn target_fields_table() {
    let cases = [
        (
            "autoscaling",
            "HorizontalPodAutoscaler",
            Some("scaleTargetRef"),
            false,
            true,
        ),
        (
            "keda.sh",
            "ScaledObject",
            Some("scaleTargetRef"),
            false,
            true,
        ),
        (
            "autoscaling.k8s.io",
            "VerticalPodAutoscaler",
            Some("targetRef"),
            false,
            true,
        ),
        ("policy", "PodDisruptionBudget", None, true, true),
        (
            "policy",
            "poddisruptionbudget",
            Some("scaleTargetRef"),
            true,
            false,
        ),
        ("keda.sh", "ScaledJob", Some("scaleTargetRef"), true, false),
        ("", "ConfigMap", Some("scaleTargetRef"), true, false),
    ];
    crate::table_test::each(cases, |(g, k, scale_ref, selector, known)| {
        assert_eq!(
            target_fields(g, k),
            TargetFields {
                scale_ref,
                selector,
                known
            },
            "{g} {k}"
        );
    });
}

#[test]
fn hpa_scale_target_ref_table() {
    let warn = vec!["tether: set spec.scaleTargetRef to Deployment \"web\"".to_string()];
    let cases: Vec<(Option<Value>, Value, Vec<String>)> = vec![
        // spec absent / null: created.
        (None, json!({"scaleTargetRef": web_ref()}), warn.clone()),
        (
            Some(json!(null)),
            json!({"scaleTargetRef": web_ref()}),
            warn.clone(),
        ),
        // field absent, null, {}, empty or missing name: filled.
        (
            Some(json!({"maxReplicas": 3})),
            json!({"maxReplicas": 3, "scaleTargetRef": web_ref()}),
            warn.clone(),
        ),
        (
            Some(json!({"scaleTargetRef": null})),
            json!({"scaleTargetRef": web_ref()}),
            warn.clone(),
        ),
        (
            Some(json!({"scaleTargetRef": {}})),
            json!({"scaleTargetRef": web_ref()}),
            warn.clone(),
        ),
        (
            Some(json!({"scaleTargetRef": {"name": ""}})),
            json!({"scaleTargetRef": web_ref()}),
            warn.clone(),
        ),
        (
            Some(json!({"scaleTargetRef": {"name": null}})),
            json!({"scaleTargetRef": web_ref()}),
            warn.clone(),
        ),
        (
            Some(json!({"scaleTargetRef": {"kind": "StatefulSet", "apiVersion": "apps/v1"}})),
            json!({"scaleTargetRef": web_ref()}),
            warn.clone(),
        ),
        // A name set: left alone.
        (
            Some(
                json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db"}}),
            ),
            json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db"}}),
            vec![],
        ),
        // An HPA has no selector to fill, even when asked.
        (
            Some(json!({"scaleTargetRef": {"name": "x"}, "selector": {"matchLabels": {}}})),
            json!({"scaleTargetRef": {"name": "x"}, "selector": {"matchLabels": {}}}),
            vec![],
        ),
    ];
    crate::table_test::each(cases, |(spec, want_spec, want_warnings)| {
        let obj = labelled(spec.clone());
        let (doc, warnings) = run("autoscaling", "HorizontalPodAutoscaler", &obj).unwrap();
        let mut want = obj.clone();
        want["spec"] = want_spec;
        assert_eq!(doc, want, "{spec:?}");
        assert_eq!(warnings, want_warnings, "{spec:?}");
        // Idempotent: a second pass changes nothing.
        let again = inject("autoscaling", "HorizontalPodAutoscaler", &doc, "shop", None).unwrap();
        assert!(again.is_empty(), "{doc}");
    });
}

#[test]
fn keda_and_vpa() {
    let obj = labelled(Some(json!({"scaleTargetRef": {}, "minReplicaCount": 0})));
    let (doc, _) = run("keda.sh", "ScaledObject", &obj).unwrap();
    assert_eq!(
        doc["spec"],
        json!({"scaleTargetRef": web_ref(), "minReplicaCount": 0})
    );

    let obj = labelled(Some(json!({"updatePolicy": {"updateMode": "Auto"}})));
    let (doc, warnings) = run("autoscaling.k8s.io", "VerticalPodAutoscaler", &obj).unwrap();
    assert_eq!(
        doc["spec"],
        json!({"targetRef": web_ref(), "updatePolicy": {"updateMode": "Auto"}})
    );
    assert_eq!(
        warnings,
        vec!["tether: set spec.targetRef to Deployment \"web\""]
    );
    // A VPA's scaleTargetRef means nothing to tether.
    let obj = labelled(Some(
        json!({"targetRef": {"name": "db"}, "scaleTargetRef": {}}),
    ));
    let (doc, _) = run("autoscaling.k8s.io", "VerticalPodAutoscaler", &obj).unwrap();
    assert_eq!(doc, obj);
}

#[test]
fn pdb_selector_table() {
    let warn = vec![
        "tether: set spec.selector.matchLabels to Deployment \"web\"'s selector app=web,tier=fe"
            .to_string(),
    ];
    let filled = json!({"matchLabels": selector_json()});
    let cases: Vec<(Option<Value>, Value, Vec<String>)> = vec![
        (None, json!({"selector": filled}), warn.clone()),
        (Some(json!(null)), json!({"selector": filled}), warn.clone()),
        (
            Some(json!({"maxUnavailable": 1})),
            json!({"maxUnavailable": 1, "selector": filled}),
            warn.clone(),
        ),
        (
            Some(json!({"selector": null})),
            json!({"selector": filled}),
            warn.clone(),
        ),
        (
            Some(json!({"selector": {}})),
            json!({"selector": filled}),
            warn.clone(),
        ),
        (
            Some(json!({"selector": {"matchLabels": null}})),
            json!({"selector": filled}),
            warn.clone(),
        ),
        (
            Some(json!({"selector": {"matchLabels": {}}})),
            json!({"selector": filled}),
            warn.clone(),
        ),
        (
            Some(
                json!({"selector": {"matchLabels": {}, "matchExpressions": [{"key": "a", "operator": "Exists"}]}}),
            ),
            json!({"selector": {"matchLabels": selector_json(), "matchExpressions": [{"key": "a", "operator": "Exists"}]}}),
            warn.clone(),
        ),
        (
            Some(json!({"selector": {"matchExpressions": []}})),
            json!({"selector": {"matchLabels": selector_json(), "matchExpressions": []}}),
            warn.clone(),
        ),
        // The user's own selector: left alone.
        (
            Some(json!({"selector": {"matchLabels": {"app": "other"}}})),
            json!({"selector": {"matchLabels": {"app": "other"}}}),
            vec![],
        ),
        (
            Some(json!({"selector": {"matchExpressions": [{"key": "a", "operator": "Exists"}]}})),
            json!({"selector": {"matchExpressions": [{"key": "a", "operator": "Exists"}]}}),
            vec![],
        ),
    ];
    crate::table_test::each(cases, |(spec, want_spec, want_warnings)| {
        let obj = labelled(spec.clone());
        let (doc, warnings) = run("policy", "PodDisruptionBudget", &obj).unwrap();
        let mut want = obj.clone();
        want["spec"] = want_spec;
        assert_eq!(doc, want, "{spec:?}");
        assert_eq!(warnings, want_warnings, "{spec:?}");
        let sel = selector();
        assert!(
            inject("policy", "PodDisruptionBudget", &doc, "shop", Some(&sel))
                .unwrap()
                .is_empty()
        );
    });
}

#[test]
fn generic_kinds_only_explicit_sentinels() {
    let cases: Vec<(Option<Value>, Option<Value>)> = vec![
        // (spec, expected spec after; None = unchanged)
        (None, None),
        (Some(json!({})), None),
        (Some(json!({"selector": {}})), None),
        (Some(json!({"selector": null})), None),
        (Some(json!({"scaleTargetRef": {"name": "x"}})), None),
        (Some(json!({"scaleTargetRef": "x"})), None),
        (Some(json!({"selector": {"matchLabels": "x"}})), None),
        (Some(json!({"selector": "app=web"})), None),
        (Some(json!("weird")), None),
        (
            Some(json!({"scaleTargetRef": {}})),
            Some(json!({"scaleTargetRef": web_ref()})),
        ),
        (
            Some(json!({"scaleTargetRef": null})),
            Some(json!({"scaleTargetRef": web_ref()})),
        ),
        (
            Some(json!({"scaleTargetRef": {"name": ""}})),
            Some(json!({"scaleTargetRef": web_ref()})),
        ),
        (
            Some(json!({"selector": {"matchLabels": {}}})),
            Some(json!({"selector": {"matchLabels": selector_json()}})),
        ),
        (
            Some(json!({"selector": {"matchLabels": null}, "scaleTargetRef": {}})),
            Some(
                json!({"selector": {"matchLabels": selector_json()}, "scaleTargetRef": web_ref()}),
            ),
        ),
    ];
    crate::table_test::each(cases, |(spec, want_spec)| {
        let obj = labelled(spec.clone());
        let (doc, warnings) = run("example.com", "Widget", &obj).unwrap();
        match want_spec {
            None => {
                assert_eq!(doc, obj, "{spec:?}");
                assert!(warnings.is_empty());
            }
            Some(s) => {
                let mut want = obj.clone();
                want["spec"] = s;
                assert_eq!(doc, want, "{spec:?}");
                assert!(!warnings.is_empty());
            }
        }
    });
}

#[test]
fn known_kind_shape_errors() {
    let cases: Vec<(&str, &str, Value, Found)> = vec![
        (
            "autoscaling",
            "HorizontalPodAutoscaler",
            json!("x"),
            vec![("spec".into(), Severity::Malformed)],
        ),
        (
            "autoscaling",
            "HorizontalPodAutoscaler",
            json!([]),
            vec![("spec".into(), Severity::Malformed)],
        ),
        (
            "autoscaling",
            "HorizontalPodAutoscaler",
            json!({"scaleTargetRef": ["web"]}),
            vec![("spec.scaleTargetRef".into(), Severity::Malformed)],
        ),
        (
            "autoscaling",
            "HorizontalPodAutoscaler",
            json!({"scaleTargetRef": "web"}),
            vec![("spec.scaleTargetRef".into(), Severity::Malformed)],
        ),
        (
            "autoscaling",
            "HorizontalPodAutoscaler",
            json!({"scaleTargetRef": {"name": 3}}),
            vec![("spec.scaleTargetRef.name".into(), Severity::Malformed)],
        ),
        (
            "autoscaling.k8s.io",
            "VerticalPodAutoscaler",
            json!({"targetRef": "web"}),
            vec![("spec.targetRef".into(), Severity::Malformed)],
        ),
        (
            "policy",
            "PodDisruptionBudget",
            json!({"selector": "app=web"}),
            vec![("spec.selector".into(), Severity::Malformed)],
        ),
        (
            "policy",
            "PodDisruptionBudget",
            json!({"selector": {"matchLabels": ["app"]}}),
            vec![("spec.selector.matchLabels".into(), Severity::Malformed)],
        ),
    ];
    crate::table_test::each(cases, |(g, k, spec, want)| {
        let obj = labelled(Some(spec.clone()));
        assert_eq!(run(g, k, &obj).unwrap_err(), want, "{spec}");
    });
    let obj = labelled(Some(json!({"scaleTargetRef": "web"})));
    assert_eq!(
        plan_injection("autoscaling", "HorizontalPodAutoscaler", &obj).unwrap_err()[0].to_string(),
        "spec.scaleTargetRef: must be an object like {apiVersion: apps/v1, kind: Deployment, \
         name: <name>}, got \"web\": fix it, or remove it to have tether fill it in"
    );
}

#[test]
fn target_label_table() {
    let field = "metadata.labels[\"tether.dev/target\"]".to_string();
    let cases: Vec<(Value, Result<&str, ()>)> = vec![
        (json!("web"), Ok("web")),
        (json!("web.v2"), Ok("web.v2")),
        (json!(""), Err(())),
        (json!("Web"), Err(())),
        (json!("web_1"), Err(())),
        (json!("-web"), Err(())),
        (json!(7), Err(())),
    ];
    crate::table_test::each(cases, |(value, want)| {
        let obj = json!({"metadata": {"labels": {"tether.dev/target": value}}, "spec": {}});
        let got = plan_injection("autoscaling", "HorizontalPodAutoscaler", &obj);
        match want {
            Ok(t) => assert_eq!(got.unwrap().target, t),
            Err(()) => {
                let vs = got.unwrap_err();
                assert_eq!(vs.len(), 1, "{value}");
                assert_eq!(vs[0].field, field);
                assert_eq!(vs[0].severity, Severity::Malformed);
            }
        }
    });
    let obj = json!({"metadata": {"labels": {"tether.dev/target": "Web"}}});
    assert_eq!(
        plan_injection("autoscaling", "HorizontalPodAutoscaler", &obj).unwrap_err()[0].to_string(),
        "metadata.labels[\"tether.dev/target\"]: \"Web\" is not a valid Deployment name: use \
         lowercase letters, digits, '-' and '.', starting and ending with a letter or digit; \
         set it to the name of the Deployment to target"
    );
    // Bad label and bad shape: both reported.
    let obj =
        json!({"metadata": {"labels": {"tether.dev/target": ""}}, "spec": {"scaleTargetRef": 1}});
    let vs = plan_injection("autoscaling", "HorizontalPodAutoscaler", &obj).unwrap_err();
    assert_eq!(
        vs.iter().map(|v| v.field.as_str()).collect::<Vec<_>>(),
        vec![
            "metadata.labels[\"tether.dev/target\"]",
            "spec.scaleTargetRef"
        ]
    );
}

#[test]
fn unlabelled_objects_are_untouched() {
    for obj in [
        json!({}),
        json!({"metadata": {}}),
        json!({"metadata": {"labels": {"a": "b"}}}),
    ] {
        let plan = plan_injection("policy", "PodDisruptionBudget", &obj).unwrap();
        assert!(plan.is_empty());
        assert!(inject("policy", "PodDisruptionBudget", &obj, "shop", None)
            .unwrap()
            .is_empty());
    }
}

#[test]
fn plan_table() {
    let cases: Vec<PlanRow> = vec![
        (
            "autoscaling",
            "HorizontalPodAutoscaler",
            None,
            Some("scaleTargetRef"),
            false,
        ),
        (
            "autoscaling",
            "HorizontalPodAutoscaler",
            Some(json!({"scaleTargetRef": {"name": "a"}})),
            None,
            false,
        ),
        ("policy", "PodDisruptionBudget", None, None, true),
        (
            "policy",
            "PodDisruptionBudget",
            Some(json!({"selector": {"matchLabels": {"a": "b"}}})),
            None,
            false,
        ),
        ("x.io", "Thing", None, None, false),
        (
            "x.io",
            "Thing",
            Some(json!({"selector": {"matchLabels": {}}})),
            None,
            true,
        ),
    ];
    crate::table_test::each(cases, |(g, k, spec, scale_ref, selector)| {
        let plan = plan_injection(g, k, &labelled(spec.clone())).unwrap();
        assert_eq!(
            plan,
            InjectionPlan {
                target: "web".into(),
                scale_ref,
                selector
            },
            "{g} {k} {spec:?}"
        );
    });
}

#[test]
fn missing_deployment() {
    let obj = labelled(Some(json!({"maxUnavailable": 1})));
    let vs = inject("policy", "PodDisruptionBudget", &obj, "shop", None).unwrap_err();
    assert_eq!(vs.len(), 1);
    assert_eq!(vs[0].severity, Severity::Forbidden);
    assert_eq!(
        vs[0].to_string(),
        "metadata.labels[\"tether.dev/target\"]: Deployment \"shop/web\" not found: tether \
         copies its spec.selector.matchLabels into spec.selector.matchLabels; create the \
         Deployment first (or fix the label), or set spec.selector.matchLabels yourself"
    );
    // An HPA does not need the Deployment to exist.
    let obj = labelled(None);
    assert!(inject("autoscaling", "HorizontalPodAutoscaler", &obj, "shop", None).is_ok());
    // A Deployment that selects with matchExpressions only has nothing to copy.
    let empty = BTreeMap::new();
    let vs = inject(
        "policy",
        "PodDisruptionBudget",
        &labelled(None),
        "",
        Some(&empty),
    )
    .unwrap_err();
    assert_eq!(
        vs[0].to_string(),
        "metadata.labels[\"tether.dev/target\"]: Deployment \"web\" has no \
         spec.selector.matchLabels to copy (it selects with matchExpressions only); set \
         spec.selector yourself"
    );
}

#[test]
fn patch_paths_are_exact() {
    let sel = selector();
    let m = inject(
        "policy",
        "PodDisruptionBudget",
        &labelled(Some(json!({"selector": {}}))),
        "shop",
        Some(&sel),
    )
    .unwrap();
    assert_eq!(
        serde_json::to_value(&m.patch).unwrap(),
        json!([{"op": "add", "path": "/spec/selector/matchLabels", "value": selector_json()}])
    );
    let m = inject(
        "x.io",
        "Thing",
        &labelled(Some(
            json!({"scaleTargetRef": null, "selector": {"matchLabels": null}}),
        )),
        "shop",
        Some(&sel),
    )
    .unwrap();
    assert_eq!(
        serde_json::to_value(&m.patch).unwrap(),
        json!([
            {"op": "add", "path": "/spec/scaleTargetRef", "value": web_ref()},
            {"op": "add", "path": "/spec/selector/matchLabels", "value": selector_json()}
        ])
    );
    assert_eq!(m.warnings.len(), 2);
}

#[test]
fn warnings_are_single_short_lines() {
    let mut sel = BTreeMap::new();
    sel.insert("a\nb".to_string(), "x".repeat(300));
    let m = inject(
        "policy",
        "PodDisruptionBudget",
        &labelled(None),
        "shop",
        Some(&sel),
    )
    .unwrap();
    assert_eq!(m.warnings.len(), 1);
    let w = &m.warnings[0];
    assert!(!w.chars().any(char::is_control), "{w}");
    assert_eq!(w.chars().count(), WARNING_MAX);
    assert!(w.ends_with('…'));
}

fn ref_value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(json!(null))),
        Just(Some(json!({}))),
        Just(Some(json!({"name": ""}))),
        Just(Some(json!({"name": "db", "kind": "StatefulSet"}))),
        Just(Some(json!("web"))),
    ]
}

fn selector_value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(json!(null))),
        Just(Some(json!({}))),
        Just(Some(json!({"matchLabels": null}))),
        Just(Some(json!({"matchLabels": {}}))),
        Just(Some(json!({"matchLabels": {"a": "b"}}))),
        Just(Some(
            json!({"matchExpressions": [{"key": "a", "operator": "Exists"}]})
        )),
        Just(Some(json!({"matchLabels": "x"}))),
        Just(Some(json!("app=web"))),
    ]
}

fn spec_value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(json!(null))),
        Just(Some(json!([]))),
        (ref_value(), ref_value(), selector_value()).prop_map(|(r, t, s)| {
            let mut m = Map::new();
            m.insert("maxReplicas".into(), json!(3));
            for (k, v) in [("scaleTargetRef", r), ("targetRef", t), ("selector", s)] {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            }
            Some(Value::Object(m))
        }),
    ]
}

proptest! {
    /// Whatever the shape: either a deny, or a patch that applies to the object, only
    /// touches `spec`, and leaves nothing to do on a second pass.
    #[test]
    fn inject_patches_apply_and_are_idempotent(
        spec in spec_value(),
        which in 0usize..5,
        found in any::<bool>(),
    ) {
        let (g, k) = [
            ("autoscaling", "HorizontalPodAutoscaler"),
            ("keda.sh", "ScaledObject"),
            ("autoscaling.k8s.io", "VerticalPodAutoscaler"),
            ("policy", "PodDisruptionBudget"),
            ("example.com", "Widget"),
        ][which];
        let obj = labelled(spec);
        let sel = selector();
        let sel = found.then_some(&sel);
        if let Ok(m) = inject(g, k, &obj, "shop", sel) {
            let mut doc = obj.clone();
            prop_assert!(json_patch::patch(&mut doc, &m.patch).is_ok());
            prop_assert_eq!(&doc["metadata"], &obj["metadata"]);
            prop_assert!(m.warnings.len() >= m.patch.0.len());
            prop_assert_eq!(m.warnings.is_empty(), m.patch.0.is_empty());
            let again = inject(g, k, &doc, "shop", sel);
            prop_assert!(again.is_ok_and(|m| m.is_empty()), "{}", doc);
        }
    }
}
