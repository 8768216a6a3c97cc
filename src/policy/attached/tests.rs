use super::*;
use serde_json::Value;

// The rules read borrowed JSON (`crate::borrowed_json`); these tests write objects with
// `json!`. Each shim runs the rule of the same name on the borrowed form.
use crate::borrowed_json::Value as Doc;

fn validate_spec(spec: Option<&Value>, kinds: &KindPolicy) -> Vec<Violation> {
    super::validate_spec(spec.map(Doc::from).as_ref(), kinds)
}

/// Owned, as the borrowed form lives only inside the shim.
fn object_gvk(spec: &Value) -> Option<(String, String, String)> {
    let doc = Doc::from(spec);
    super::object_gvk(&doc).map(|g| (g.group.into(), g.version.into(), g.kind.into()))
}

fn validate_update(old: &Value, new: &Value) -> Vec<Violation> {
    super::validate_update(&old.into(), &new.into())
}

fn workload_label_patch(obj: &Value) -> Mutation {
    super::workload_label_patch(&obj.into())
}
use crate::policy::{summarize, Severity};
use serde_json::json;

/// `(field, severity)` of each violation.
type Found = Vec<(String, Severity)>;

fn good_object() -> Value {
    json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "spec": {"scaleTargetRef": {}, "minReplicas": 2, "maxReplicas": 10}
    })
}

fn spec_with_object(object: Value) -> Value {
    json!({"workloadRef": {"name": "payments-worker"}, "object": object})
}

/// `(field, severity)` of each violation, for compact table assertions.
fn fields(spec: Option<&Value>) -> Found {
    validate_spec(spec, &KindPolicy::default())
        .into_iter()
        .map(|v| (v.field, v.severity))
        .collect()
}

fn m(f: &str) -> (String, Severity) {
    (f.to_string(), Severity::Malformed)
}

fn f(f: &str) -> (String, Severity) {
    (f.to_string(), Severity::Forbidden)
}

#[test]
fn good_spec_passes() {
    assert_eq!(fields(Some(&spec_with_object(good_object()))), vec![]);
    // The SPEC 3.1 example with null sentinel and the PDB/KEDA/VPA shapes.
    let cases = [
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
               "spec": {"scaleTargetRef": null, "maxReplicas": 3}}),
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
               "spec": {"selector": {"matchLabels": {}}, "maxUnavailable": 1}}),
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
               "spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "Exists"}]}}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"labels": {"v": "{{ .Version }}"}},
               "data": {"x": "{{.Namespace}}-{{ .WorkloadName }}-{{ .DeploymentName }}"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": null}}),
    ];
    crate::table_test::each(cases, |object| {
        assert_eq!(
            fields(Some(&spec_with_object(object.clone()))),
            vec![],
            "{object}"
        );
    });
}

#[test]
fn spec_shape_table() {
    let cases: Vec<(Option<Value>, Found)> = vec![
        (None, vec![m("spec.workloadRef.name"), m("spec.object")]),
        (
            Some(Value::Null),
            vec![m("spec.workloadRef.name"), m("spec.object")],
        ),
        (
            Some(json!({})),
            vec![m("spec.workloadRef.name"), m("spec.object")],
        ),
        (Some(json!("x")), vec![m("spec")]),
        (Some(json!([])), vec![m("spec")]),
        (
            Some(json!({"workloadRef": {"name": "w"}, "object": null})),
            vec![m("spec.object")],
        ),
        (
            Some(json!({"workloadRef": {"name": "w"}, "object": "HPA"})),
            vec![m("spec.object")],
        ),
        (
            Some(json!({"workloadRef": {"name": "w"}, "object": []})),
            vec![m("spec.object")],
        ),
        (
            Some(json!({"workloadRef": {"name": "w"}, "object": {}})),
            vec![m("spec.object.apiVersion"), m("spec.object.kind")],
        ),
    ];
    crate::table_test::each(cases, |(spec, want)| {
        assert_eq!(fields(spec.as_ref()), want, "{spec:?}");
    });
}

#[test]
fn workload_ref_table() {
    let long = "a".repeat(64);
    let cases: Vec<(Value, Found)> = vec![
        (json!(null), vec![m("spec.workloadRef.name")]),
        (json!({}), vec![m("spec.workloadRef.name")]),
        (json!({"name": null}), vec![m("spec.workloadRef.name")]),
        (json!({"name": ""}), vec![m("spec.workloadRef.name")]),
        (json!({"name": 5}), vec![m("spec.workloadRef.name")]),
        (
            json!({"name": "Payments"}),
            vec![m("spec.workloadRef.name")],
        ),
        (
            json!({"name": "pay_ments"}),
            vec![m("spec.workloadRef.name")],
        ),
        (json!({"name": "-pay"}), vec![m("spec.workloadRef.name")]),
        (json!({"name": "a..b"}), vec![m("spec.workloadRef.name")]),
        (json!({"name": long}), vec![m("spec.workloadRef.name")]),
        (json!("payments"), vec![m("spec.workloadRef")]),
        (json!({"name": "payments-worker"}), vec![]),
        (json!({"name": "payments.worker"}), vec![]),
        (json!({"name": "a".repeat(63)}), vec![]),
    ];
    crate::table_test::each(cases, |(wref, want)| {
        let spec = json!({"workloadRef": wref, "object": good_object()});
        assert_eq!(fields(Some(&spec)), want, "{wref}");
    });
    let spec = json!({"object": good_object()});
    assert_eq!(fields(Some(&spec)), vec![m("spec.workloadRef.name")]);
}

#[test]
fn workload_ref_messages() {
    let msg = |wref: Value| {
        let spec = json!({"workloadRef": wref, "object": good_object()});
        validate_spec(Some(&spec), &KindPolicy::default())[0].to_string()
    };
    assert_eq!(
        msg(json!({})),
        "spec.workloadRef.name: required: name the workload to attach to (the \
         tether.dev/workload label value of its Deployments)"
    );
    assert_eq!(
        msg(json!({"name": "Pay"})),
        "spec.workloadRef.name: \"Pay\" is not a valid workload name: use at most 63 \
         lowercase letters, digits, '-' and '.', starting and ending with a letter or \
         digit (it becomes the tether.dev/workload label value)"
    );
    assert!(msg(json!({"name": "a".repeat(64)})).contains("(64 characters)"));
    assert_eq!(
        msg(json!({"name": 5})),
        "spec.workloadRef.name: must be a string, got 5"
    );
    assert_eq!(
        msg(json!(["x"])),
        "spec.workloadRef: must be an object like {name: <workload>}, got [\"x\"]"
    );
}

#[test]
fn api_version_and_kind_table() {
    let cases: Vec<(Value, Value, Found)> = vec![
        (json!("v1"), json!("ConfigMap"), vec![]),
        (
            json!("autoscaling/v2"),
            json!("HorizontalPodAutoscaler"),
            vec![],
        ),
        (json!("keda.sh/v1alpha1"), json!("ScaledObject"), vec![]),
        (
            json!(null),
            json!("ConfigMap"),
            vec![m("spec.object.apiVersion")],
        ),
        (
            json!(""),
            json!("ConfigMap"),
            vec![m("spec.object.apiVersion")],
        ),
        (
            json!("a/b/c"),
            json!("ConfigMap"),
            vec![m("spec.object.apiVersion")],
        ),
        (
            json!("/v1"),
            json!("ConfigMap"),
            vec![m("spec.object.apiVersion")],
        ),
        (
            json!("apps/"),
            json!("ConfigMap"),
            vec![m("spec.object.apiVersion")],
        ),
        (
            json!("Apps/v1"),
            json!("ConfigMap"),
            vec![m("spec.object.apiVersion")],
        ),
        (
            json!(" v1"),
            json!("ConfigMap"),
            vec![m("spec.object.apiVersion")],
        ),
        (
            json!(2),
            json!("ConfigMap"),
            vec![m("spec.object.apiVersion")],
        ),
        (json!("v1"), json!(null), vec![m("spec.object.kind")]),
        (json!("v1"), json!(""), vec![m("spec.object.kind")]),
        (json!("v1"), json!("  "), vec![m("spec.object.kind")]),
        (json!("v1"), json!(["Pod"]), vec![m("spec.object.kind")]),
        (json!("v1"), json!("Pod"), vec![f("spec.object.kind")]),
        (json!("v1"), json!(" pod "), vec![f("spec.object.kind")]),
        (
            json!("apps/v1"),
            json!(" Deployment "),
            vec![f("spec.object.kind")],
        ),
        (
            json!("apps/v1"),
            json!("DEPLOYMENT"),
            vec![f("spec.object.kind")],
        ),
        (
            json!("batch/v1"),
            json!("CronJob"),
            vec![f("spec.object.kind")],
        ),
        // Not a kind, but not banned: discovery (rule 7, the caller's) rejects it.
        (json!("v1"), json!("  hpa "), vec![]),
        (
            json!(""),
            json!("Job"),
            vec![m("spec.object.apiVersion"), f("spec.object.kind")],
        ),
    ];
    crate::table_test::each(cases, |(api_version, kind, want)| {
        let mut object = json!({"apiVersion": api_version, "kind": kind});
        if let Some(map) = object.as_object_mut() {
            map.retain(|_, v| !v.is_null());
        }
        let spec = spec_with_object(object);
        assert_eq!(fields(Some(&spec)), want, "{api_version} {kind}");
    });
}

#[test]
fn api_version_message() {
    let spec = spec_with_object(json!({"apiVersion": "a/b/c", "kind": "X"}));
    assert_eq!(
        validate_spec(Some(&spec), &KindPolicy::default())[0].to_string(),
        "spec.object.apiVersion: \"a/b/c\" is not a valid apiVersion: write \"<version>\" \
         for the core group (e.g. \"v1\") or \"<group>/<version>\" (e.g. \"autoscaling/v2\")"
    );
}

#[test]
fn allow_list_mode() {
    let kinds = KindPolicy::new(["Pod"], Some(["HorizontalPodAutoscaler", "Pod"]));
    let check = |kind: &str| {
        let spec = spec_with_object(json!({"apiVersion": "v1", "kind": kind}));
        validate_spec(Some(&spec), &kinds)
            .into_iter()
            .map(|v| (v.field, v.severity))
            .collect::<Vec<_>>()
    };
    assert_eq!(check("horizontalpodautoscaler"), vec![]);
    assert_eq!(check("Pod"), vec![f("spec.object.kind")]);
    assert_eq!(check("ConfigMap"), vec![f("spec.object.kind")]);
}

#[test]
fn metadata_table() {
    let cases: Vec<(Value, Found)> = vec![
        (json!(null), vec![]),
        (json!({}), vec![]),
        (json!({"labels": {"a": "b"}, "annotations": {}}), vec![]),
        (json!({"name": null, "namespace": null}), vec![]),
        (json!({"name": "x"}), vec![f("spec.object.metadata.name")]),
        (json!({"name": ""}), vec![f("spec.object.metadata.name")]),
        (
            json!({"namespace": "other"}),
            vec![f("spec.object.metadata.namespace")],
        ),
        (
            json!({"generateName": "x-"}),
            vec![f("spec.object.metadata.generateName")],
        ),
        (
            json!({"namespace": "n", "name": "x"}),
            vec![
                f("spec.object.metadata.name"),
                f("spec.object.metadata.namespace"),
            ],
        ),
        (json!("x"), vec![m("spec.object.metadata")]),
    ];
    crate::table_test::each(cases, |(meta, want)| {
        let spec =
            spec_with_object(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}));
        assert_eq!(fields(Some(&spec)), want, "{meta}");
    });
}

#[test]
fn min_replicas_table() {
    let field = "spec.object.spec.minReplicas";
    let cases: Vec<(Value, Found)> = vec![
        (json!(null), vec![]),
        (json!(1), vec![]),
        (json!(2), vec![]),
        (json!(2.0), vec![]),
        (json!(u64::MAX), vec![]),
        (json!(0), vec![f(field)]),
        (json!(0.0), vec![f(field)]),
        (json!(-0.0), vec![f(field)]),
        (json!(-1), vec![m(field)]),
        (json!(-1.0), vec![m(field)]),
        (json!(0.5), vec![m(field)]),
        (json!(1.5), vec![m(field)]),
        (json!("0"), vec![m(field)]),
        (json!("2"), vec![m(field)]),
        (json!(true), vec![m(field)]),
        (json!(false), vec![m(field)]),
        (json!({}), vec![m(field)]),
        (json!([1]), vec![m(field)]),
    ];
    crate::table_test::each(cases, |(value, want)| {
        let spec = spec_with_object(json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "spec": {"minReplicas": value, "maxReplicas": 3}
        }));
        assert_eq!(fields(Some(&spec)), want, "{value}");
    });
    // Absent is fine too.
    let spec = spec_with_object(json!({"apiVersion": "v1", "kind": "X", "spec": {}}));
    assert_eq!(fields(Some(&spec)), vec![]);
}

#[test]
fn min_replicas_messages() {
    let msg = |value: Value| {
        let spec = spec_with_object(
            json!({"apiVersion": "v1", "kind": "X", "spec": {"minReplicas": value}}),
        );
        validate_spec(Some(&spec), &KindPolicy::default())[0].to_string()
    };
    assert_eq!(
        msg(json!(0)),
        "spec.object.spec.minReplicas: must not be 0: attached resources may not scale a \
         workload to zero; set it to 1 or more, or remove it"
    );
    assert_eq!(
        msg(json!("0")),
        "spec.object.spec.minReplicas: must be a whole number of at least 1, got \"0\""
    );
    assert_eq!(
        msg(json!(-1)),
        "spec.object.spec.minReplicas: must be a whole number of at least 1, got -1"
    );
}

#[test]
fn object_spec_shape() {
    for inner in [json!("x"), json!([]), json!(3)] {
        let spec = spec_with_object(json!({"apiVersion": "v1", "kind": "X", "spec": inner}));
        assert_eq!(fields(Some(&spec)), vec![m("spec.object.spec")], "{inner}");
    }
    let spec = spec_with_object(json!({"apiVersion": "v1", "kind": "X", "spec": null}));
    assert_eq!(fields(Some(&spec)), vec![]);
}

#[test]
fn scale_target_ref_sentinels() {
    let field = "spec.object.spec.scaleTargetRef";
    let cases: Vec<(Option<Value>, Found)> = vec![
        (None, vec![]),
        (Some(json!(null)), vec![]),
        (Some(json!({})), vec![]),
        // The zero value a typed Go client writes for an unset reference: "fill it in".
        (Some(json!({"kind": "", "name": ""})), vec![]),
        (
            Some(json!({"apiVersion": "", "kind": "", "name": ""})),
            vec![],
        ),
        (
            Some(json!({"kind": "", "name": "", "x": ""})),
            vec![f(field)],
        ),
        (
            Some(json!({"kind": "Deployment", "name": ""})),
            vec![f(field)],
        ),
        (Some(json!({"name": "web"})), vec![f(field)]),
        (Some(json!({"name": ""})), vec![f(field)]),
        (
            Some(json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"})),
            vec![f(field)],
        ),
        (Some(json!([])), vec![f(field)]),
        (Some(json!(["web"])), vec![f(field)]),
        (Some(json!("web")), vec![f(field)]),
        (Some(json!("")), vec![f(field)]),
        (Some(json!(0)), vec![f(field)]),
        (Some(json!(false)), vec![f(field)]),
    ];
    crate::table_test::each(cases, |(value, want)| {
        let mut inner = json!({"maxReplicas": 3});
        if let (Some(v), Some(map)) = (value.clone(), inner.as_object_mut()) {
            map.insert("scaleTargetRef".into(), v);
        }
        let spec = spec_with_object(json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "spec": inner
        }));
        assert_eq!(fields(Some(&spec)), want, "{value:?}");
    });
}

#[test]
fn match_labels_sentinels() {
    let field = "spec.object.spec.selector.matchLabels";
    let cases: Vec<(Value, Found)> = vec![
        (json!({}), vec![]),
        (json!(null), vec![]),
        (json!("app=web"), vec![]), // a string selector is some other kind's business
        (json!({"matchLabels": null}), vec![]),
        (json!({"matchLabels": {}}), vec![]),
        (
            json!({"matchExpressions": [{"key": "a", "operator": "Exists"}]}),
            vec![],
        ),
        (json!({"matchLabels": {}, "matchExpressions": []}), vec![]),
        (json!({"matchLabels": {"app": "web"}}), vec![f(field)]),
        (json!({"matchLabels": []}), vec![f(field)]),
        (json!({"matchLabels": "app=web"}), vec![f(field)]),
    ];
    crate::table_test::each(cases, |(selector, want)| {
        let spec = spec_with_object(json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "spec": {"selector": selector}
        }));
        assert_eq!(fields(Some(&spec)), want, "{selector}");
    });
    // Only spec.object.spec.selector is tether's: a nested one is left alone.
    let spec = spec_with_object(json!({
        "apiVersion": "v1", "kind": "X",
        "spec": {"template": {"selector": {"matchLabels": {"a": "b"}}}}
    }));
    assert_eq!(fields(Some(&spec)), vec![]);
}

#[test]
fn sentinel_messages_say_how_to_opt_in_and_out() {
    let spec = spec_with_object(json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "spec": {"scaleTargetRef": {"name": "web"}, "selector": {"matchLabels": {"a": "b"}}}
    }));
    let vs = validate_spec(Some(&spec), &KindPolicy::default());
    assert_eq!(
        vs.iter().map(Violation::to_string).collect::<Vec<_>>(),
        vec![
            "spec.object.spec.scaleTargetRef: tether owns this field, so it may only be {} \
             or null (got {\"name\":\"web\"}): set it to {} to have tether point it at each \
             target Deployment, or remove it to leave it unset",
            "spec.object.spec.selector.matchLabels: tether owns this field, so it may only \
             be {} or null (got {\"a\":\"b\"}): set it to {} to have tether fill in each \
             target Deployment's selector labels, or remove it to leave it unset",
        ]
    );
}

#[test]
fn placeholders_everywhere_with_paths() {
    let spec = spec_with_object(json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"labels": {"tether.dev/x": "{{ .Foo }}"}},
        "spec": {
            "maxReplicas": 3,
            "metrics": [
                {"resource": {"name": "cpu"}},
                {"resource": {"name": "{{ .Version"}}
            ]
        }
    }));
    let vs = validate_spec(Some(&spec), &KindPolicy::default());
    let got: Vec<_> = vs.iter().map(|v| (v.field.as_str(), v.severity)).collect();
    assert_eq!(
        got,
        vec![
            (
                "spec.object.metadata.labels[\"tether.dev/x\"]",
                Severity::Malformed
            ),
            (
                "spec.object.spec.metrics[1].resource.name",
                Severity::Malformed
            ),
        ]
    );
    assert!(vs[1].message.starts_with("unclosed \"{{\" at byte 0"));
    // Keys are not templates.
    let spec =
        spec_with_object(json!({"apiVersion": "v1", "kind": "X", "data": {"{{ .Foo }}": "x"}}));
    assert_eq!(fields(Some(&spec)), vec![]);
}

#[test]
fn every_violation_reported_and_summarized() {
    let spec = json!({
        "workloadRef": {"name": "Web"},
        "object": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "x"}
        }
    });
    let vs = validate_spec(Some(&spec), &KindPolicy::default());
    assert_eq!(vs.len(), 3);
    assert_eq!(
        summarize(&vs),
        (
            400,
            "spec.workloadRef.name: \"Web\" is not a valid workload name: use at most 63 \
             lowercase letters, digits, '-' and '.', starting and ending with a letter or \
             digit (it becomes the tether.dev/workload label value); spec.object.kind: kind \
             \"Deployment\" may not be attached: it is in --banned-kinds (env \
             BANNED_KINDS); workloads cannot be attached, attach a resource that refers to \
             the workload instead, or ask your platform team to change the setting; \
             spec.object.metadata.name: must not be set: tether names each copy itself \
             (one per Deployment version); remove it"
                .to_string()
        )
    );
    // Without the malformed one, the same deny is a 403.
    let spec = json!({
        "workloadRef": {"name": "web"},
        "object": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}}
    });
    assert_eq!(
        summarize(&validate_spec(Some(&spec), &KindPolicy::default())).0,
        403
    );
}

#[test]
fn parse_api_version_table() {
    let cases = [
        ("v1", Some(("", "v1"))),
        ("apps/v1", Some(("apps", "v1"))),
        ("autoscaling/v2", Some(("autoscaling", "v2"))),
        ("autoscaling.k8s.io/v1", Some(("autoscaling.k8s.io", "v1"))),
        ("keda.sh/v1alpha1", Some(("keda.sh", "v1alpha1"))),
        ("", None),
        ("/", None),
        ("/v1", None),
        ("apps/", None),
        ("a/b/c", None),
        ("V1", None),
        ("apps/V1", None),
        ("apps /v1", None),
        ("apps/v1 ", None),
        ("my_group/v1", None),
    ];
    crate::table_test::each(cases, |(s, want)| {
        assert_eq!(parse_api_version(s), want, "{s:?}");
    });
}

#[test]
fn object_gvk_table() {
    let gvk = |g: &str, v: &str, k: &str| Some((g.into(), v.into(), k.into()));
    let cases = [
        (
            json!({"object": {"apiVersion": "v1", "kind": "ConfigMap"}}),
            gvk("", "v1", "ConfigMap"),
        ),
        (
            json!({"object": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler"}}),
            gvk("autoscaling", "v2", "HorizontalPodAutoscaler"),
        ),
        (
            json!({"object": {"apiVersion": "a/b/c", "kind": "X"}}),
            None,
        ),
        (json!({"object": {"apiVersion": "v1", "kind": ""}}), None),
        (json!({"object": {"apiVersion": "v1"}}), None),
        (json!({"object": {"kind": "X"}}), None),
        (json!({"object": {"apiVersion": 1, "kind": "X"}}), None),
        (json!({}), None),
        (json!(null), None),
    ];
    crate::table_test::each(cases, |(spec, want)| {
        assert_eq!(object_gvk(&spec), want, "{spec}");
    });
}

#[test]
fn update_table() {
    let obj = |name: Value| json!({"spec": {"workloadRef": {"name": name}}});
    let cases: Vec<(Value, Value, Option<&str>)> = vec![
        (obj(json!("a")), obj(json!("a")), None),
        (json!({}), json!({}), None),
        (obj(json!(null)), json!({"spec": {}}), None),
        (
            obj(json!("a")),
            obj(json!("b")),
            Some(
                "spec.workloadRef.name: is immutable (was \"a\", now \"b\"): an \
                  AttachedResource belongs to one workload; to attach to another, delete \
                  this AttachedResource and create a new one",
            ),
        ),
        (
            obj(json!("a")),
            json!({"spec": {}}),
            Some(
                "spec.workloadRef.name: is immutable (was \"a\", now unset): an \
                  AttachedResource belongs to one workload; to attach to another, delete \
                  this AttachedResource and create a new one",
            ),
        ),
        (
            json!({"spec": {}}),
            obj(json!(5)),
            Some(
                "spec.workloadRef.name: is immutable (was unset, now 5): an \
                  AttachedResource belongs to one workload; to attach to another, delete \
                  this AttachedResource and create a new one",
            ),
        ),
    ];
    crate::table_test::each(cases, |(old, new, want)| {
        let got = validate_update(&old, &new);
        match want {
            None => assert_eq!(got, vec![], "{old} → {new}"),
            Some(msg) => {
                assert_eq!(got.len(), 1);
                assert_eq!(got[0].severity, Severity::Forbidden);
                assert_eq!(got[0].to_string(), msg);
            }
        }
    });
}

#[test]
fn workload_label_patch_table() {
    let wref = json!({"workloadRef": {"name": "web"}});
    let cases: Vec<(Value, Value, Vec<&str>)> = vec![
        (
            json!({"metadata": {"name": "a"}, "spec": wref}),
            json!([{"op": "add", "path": "/metadata/labels", "value": {"tether.dev/workload": "web"}}]),
            vec!["tether: set label tether.dev/workload=web"],
        ),
        (
            json!({"metadata": {"name": "a", "labels": null}, "spec": wref}),
            json!([{"op": "add", "path": "/metadata/labels", "value": {"tether.dev/workload": "web"}}]),
            vec!["tether: set label tether.dev/workload=web"],
        ),
        (
            json!({"spec": wref}),
            json!([{"op": "add", "path": "/metadata", "value": {"labels": {"tether.dev/workload": "web"}}}]),
            vec!["tether: set label tether.dev/workload=web"],
        ),
        (
            json!({"metadata": {"labels": {"team": "x"}}, "spec": wref}),
            json!([{"op": "add", "path": "/metadata/labels/tether.dev~1workload", "value": "web"}]),
            vec!["tether: set label tether.dev/workload=web"],
        ),
        (
            json!({"metadata": {"labels": {"tether.dev/workload": "old"}}, "spec": wref}),
            json!([{"op": "add", "path": "/metadata/labels/tether.dev~1workload", "value": "web"}]),
            vec!["tether: changed label tether.dev/workload from \"old\" to \"web\" to match spec.workloadRef.name"],
        ),
        (
            json!({"metadata": {"labels": {"tether.dev/workload": "web"}}, "spec": wref}),
            json!([]),
            vec![],
        ),
        // Nothing to label from: validation denies instead.
        (json!({"metadata": {}, "spec": {}}), json!([]), vec![]),
        (json!({"metadata": {}}), json!([]), vec![]),
        (json!({"metadata": {}, "spec": {"workloadRef": {"name": ""}}}), json!([]), vec![]),
        (json!({"metadata": {}, "spec": {"workloadRef": {"name": "Bad_Name"}}}), json!([]), vec![]),
        (json!({"metadata": {}, "spec": {"workloadRef": {"name": 3}}}), json!([]), vec![]),
        (json!({"metadata": {"labels": "x"}, "spec": wref}), json!([]), vec![]),
    ];
    crate::table_test::each(cases, |(obj, want_patch, want_warnings)| {
        let m = workload_label_patch(&obj);
        assert_eq!(serde_json::to_value(&m.patch).unwrap(), want_patch, "{obj}");
        assert_eq!(m.warnings, want_warnings, "{obj}");
        assert_eq!(m.is_empty(), want_warnings.is_empty());
        // The patch applies, and afterwards the label is right and nothing else changed.
        let mut doc = obj.clone();
        json_patch::patch(&mut doc, &m.patch).unwrap();
        if !m.is_empty() {
            assert_eq!(
                doc.pointer("/metadata/labels/tether.dev~1workload"),
                Some(&json!("web"))
            );
            assert_eq!(doc["spec"], obj["spec"]);
            assert!(workload_label_patch(&doc).is_empty(), "idempotent: {doc}");
        }
    });
}
