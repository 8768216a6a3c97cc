use super::*;

#[test]
fn severity_codes() {
    assert_eq!(Severity::Malformed.code(), 400);
    assert_eq!(Severity::Forbidden.code(), 403);
}

#[test]
fn violation_display() {
    let v = Violation::malformed("spec.object", "required");
    assert_eq!(v.to_string(), "spec.object: required");
    assert_eq!(v.severity, Severity::Malformed);
}

#[test]
fn summarize_table() {
    let f = |m: &str| Violation::forbidden("a", m);
    let m = |m: &str| Violation::malformed("b", m);
    let cases: Vec<(Vec<Violation>, u16, &str)> = vec![
        (vec![], 200, ""),
        (vec![f("x")], 403, "a: x"),
        (vec![m("y")], 400, "b: y"),
        (vec![f("x"), f("z")], 403, "a: x; a: z"),
        (vec![f("x"), m("y")], 400, "a: x; b: y"),
        (vec![m("y"), f("x")], 400, "b: y; a: x"),
    ];
    crate::table_test::each(cases, |(vs, code, msg)| {
        assert_eq!(summarize(&vs), (code, msg.to_string()), "{vs:?}");
    });
}

#[test]
fn kind_policy_deny_list_default() {
    let p = KindPolicy::default();
    assert!(p.allowed.is_none());
    let cases = [
        ("Deployment", false),
        ("deployment", false),
        ("DEPLOYMENT", false),
        (" Deployment ", false),
        ("\tPod\n", false),
        ("StatefulSet", false),
        ("DaemonSet", false),
        ("ReplicaSet", false),
        ("ReplicationController", false),
        ("Job", false),
        ("cronjob", false),
        ("HorizontalPodAutoscaler", true),
        ("PodDisruptionBudget", true),
        ("Pods", true),
        ("", true),       // emptiness is rule 1's business, not the kind policy's
        ("  hpa ", true), // not a kind; discovery (rule 7) rejects it, not this list
    ];
    crate::table_test::each(cases, |(kind, ok)| {
        assert_eq!(p.check(kind).is_ok(), ok, "{kind:?}");
    });
}

#[test]
fn kind_policy_group_qualified_entries() {
    let default = KindPolicy::default();
    let allow = KindPolicy::new(
        Vec::<String>::new(),
        Some(["ScaledObject.keda.sh", "HorizontalPodAutoscaler"]),
    );
    let cases: [(&str, &KindPolicy, &str, Option<&str>, bool); 16] = [
        ("core Service passes", &default, "Service", Some(""), true),
        (
            "Knative Service banned",
            &default,
            "Service",
            Some("serving.knative.dev"),
            false,
        ),
        (
            "group case-insensitive",
            &default,
            "service",
            Some("Serving.Knative.Dev"),
            false,
        ),
        (
            "Knative Configuration",
            &default,
            "Configuration",
            Some("serving.knative.dev"),
            false,
        ),
        (
            "Knative Revision",
            &default,
            "Revision",
            Some("serving.knative.dev"),
            false,
        ),
        (
            "KEDA ScaledJob runs Jobs",
            &default,
            "ScaledJob",
            Some("keda.sh"),
            false,
        ),
        (
            "KEDA ScaledObject passes",
            &default,
            "ScaledObject",
            Some("keda.sh"),
            true,
        ),
        (
            "Role",
            &default,
            "Role",
            Some("rbac.authorization.k8s.io"),
            false,
        ),
        (
            "RoleBinding",
            &default,
            "rolebinding",
            Some("rbac.authorization.k8s.io"),
            false,
        ),
        (
            "unqualified entry, any group",
            &default,
            "Job",
            Some("example.com"),
            false,
        ),
        (
            "unknown group fails closed",
            &default,
            "Service",
            None,
            false,
        ),
        (
            "HPA passes",
            &default,
            "HorizontalPodAutoscaler",
            Some("autoscaling"),
            true,
        ),
        (
            "allow entry, its group",
            &allow,
            "ScaledObject",
            Some("keda.sh"),
            true,
        ),
        (
            "allow entry, other group",
            &allow,
            "ScaledObject",
            Some("other.io"),
            false,
        ),
        (
            "allow entry, unknown group",
            &allow,
            "ScaledObject",
            None,
            false,
        ),
        (
            "unqualified allow entry",
            &allow,
            "HorizontalPodAutoscaler",
            None,
            true,
        ),
    ];
    let failed: Vec<String> = cases
        .iter()
        .filter(|(_, p, kind, group, ok)| p.check_in(kind, *group).is_ok() != *ok)
        .map(|(what, p, kind, group, ok)| {
            format!(
                "{what}: check_in({kind:?}, {group:?}) = {:?}, want ok={ok}",
                p.check_in(kind, *group)
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} case(s) failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[test]
fn kind_policy_ban_messages_say_why() {
    let p = KindPolicy::default();
    assert_eq!(
        p.check_in("Service", Some("serving.knative.dev"))
            .unwrap_err(),
        "kind \"Service\" may not be attached: it is in --banned-kinds (as \
         \"Service.serving.knative.dev\") (env BANNED_KINDS); workloads cannot be attached, \
         attach a resource that refers to the workload instead, or ask your platform team \
         to change the setting"
    );
    assert_eq!(
        p.check_in("Role", Some("rbac.authorization.k8s.io"))
            .unwrap_err(),
        "kind \"Role\" may not be attached: it is in --banned-kinds (env BANNED_KINDS); \
         RBAC objects grant rights, and tether would create them with its own account; \
         create it yourself with kubectl, or ask your platform team to opt in (tether then \
         checks escalate/bind for you)"
    );
}

#[test]
fn kind_policy_messages() {
    let p = KindPolicy::default();
    assert_eq!(
        p.check(" pod ").unwrap_err(),
        "kind \"pod\" may not be attached: it is in --banned-kinds (env BANNED_KINDS); \
         workloads cannot be attached, attach a resource that refers to the workload \
         instead, or ask your platform team to change the setting"
    );
    let p = KindPolicy::new(
        Vec::<String>::new(),
        Some(vec![" HorizontalPodAutoscaler", "PodDisruptionBudget "]),
    );
    assert_eq!(
        p.check("ConfigMap").unwrap_err(),
        "kind \"ConfigMap\" may not be attached: only the kinds in --allowed-kinds (env \
         ALLOWED_KINDS) are attachable here (HorizontalPodAutoscaler, PodDisruptionBudget); \
         attach one of those, or ask your platform team to allow \"ConfigMap\""
    );
}

#[test]
fn kind_policy_allow_list_and_deny_list_together() {
    let p = KindPolicy::new(
        ["Pod", " job "],
        Some(["horizontalpodautoscaler", "Pod", "JOB", ""]),
    );
    assert!(p.allowed.is_some());
    let cases = [
        ("HorizontalPodAutoscaler", true),
        (" horizontalPodAutoscaler ", true),
        ("Pod", false),                 // allowed but banned
        ("Job", false),                 // allowed but banned
        ("PodDisruptionBudget", false), // not allowed
        ("Deployment", false),          // not allowed (default deny-list replaced)
    ];
    crate::table_test::each(cases, |(kind, ok)| {
        assert_eq!(p.check(kind).is_ok(), ok, "{kind:?}");
    });
    assert!(p.check("Pod").unwrap_err().contains("--banned-kinds"));
    assert!(p
        .check("PodDisruptionBudget")
        .unwrap_err()
        .contains("--allowed-kinds"));
}

#[test]
fn kind_policy_empty_allow_list_is_unset() {
    let p = KindPolicy::new(["Pod"], Some(["", "  "]));
    assert!(p.allowed.is_none());
    assert!(p.check("ConfigMap").is_ok());
    assert!(p.check("Pod").is_err());
    // An empty deny-list bans nothing.
    let p = KindPolicy::new(Vec::<&str>::new(), None::<Vec<&str>>);
    assert!(p.check("Pod").is_ok());
}

#[test]
fn field_paths() {
    let mut p = String::new();
    push_key(&mut p, "spec");
    push_key(&mut p, "metrics");
    push_index(&mut p, 0);
    push_key(&mut p, "resource");
    assert_eq!(p, "spec.metrics[0].resource");
    assert_eq!(
        path_of(&["metadata", "labels", "tether.dev/target"]),
        "metadata.labels[\"tether.dev/target\"]"
    );
    assert_eq!(path_of(&["a", ""]), "a[\"\"]");
    assert_eq!(path_of(&["a", "x\"y"]), "a[\"x\\\"y\"]");
    assert_eq!(path_of(&["my_key-1"]), "my_key-1");
}

/// `Folded::new(user).is(configured)` answers `user.to_lowercase() == configured` for
/// lowercased configuration, with and without the copy.
fn folded_is_to_lowercase_equality(user: &str, configured: &str) {
    let configured = configured.to_lowercase();
    assert_eq!(
        Folded::new(user).is(&configured),
        user.to_lowercase() == configured,
        "{user:?} vs {configured:?}"
    );
}

#[test]
fn folded_compares_as_to_lowercase_does() {
    let long = "A".repeat(300);
    let rows = [
        ("HorizontalPodAutoscaler", "horizontalpodautoscaler"),
        ("HorizontalPodAutoscaler", "HorizontalPodAutoscalers"),
        ("", ""),
        ("", "pod"),
        ("serving.knative.DEV", "Serving.Knative.dev"),
        (long.as_str(), long.as_str()),
        ("ÄPod", "äpod"),
        ("ÄPod", "apod"),
        // KELVIN SIGN lowercases to an ASCII 'k', on either side.
        ("\u{212A}ind", "kind"),
        ("Kind", "\u{212A}IND"),
        ("Kind", "Kïnd"),
    ];
    crate::table_test::each(rows, |(user, configured)| {
        folded_is_to_lowercase_equality(user, configured)
    });
}

proptest::proptest! {
    #[test]
    fn folded_is_to_lowercase_equality_for_any_text(
        user in "[a-zA-ZäÄ\u{212A}İ.]{0,6}",
        configured in "[a-zA-ZäÄ\u{212A}İ.]{0,6}",
    ) {
        folded_is_to_lowercase_equality(&user, &configured);
        folded_is_to_lowercase_equality(&user, &user.to_uppercase());
    }
}

#[test]
fn at_reads_what_pointer_reads_on_object_paths() {
    let v = serde_json::json!({
        "metadata": {"labels": {"tether.dev/target": "web"}, "deletionTimestamp": null},
        "spec": [1],
        "a/b": {"~c": 1}
    });
    let rows: Vec<(&[&str], &str, Option<serde_json::Value>)> = vec![
        (
            &["metadata", "labels", "tether.dev/target"],
            "/metadata/labels/tether.dev~1target",
            Some("web".into()),
        ),
        (
            &["metadata", "deletionTimestamp"],
            "/metadata/deletionTimestamp",
            Some(serde_json::Value::Null),
        ),
        (&["metadata", "missing"], "/metadata/missing", None),
        // Through a string or an array: nothing (object keys only).
        (
            &["metadata", "labels", "tether.dev/target", "x"],
            "/metadata/labels/tether.dev~1target/x",
            None,
        ),
        (&["spec", "0"], "", None),
        (&["a/b", "~c"], "/a~1b/~0c", Some(1.into())),
        (&[], "", Some(v.clone())),
    ];
    let doc = crate::borrowed_json::Value::from(&v);
    crate::table_test::each(rows, |(path, pointer, want)| {
        let got = at(&doc, path).map(crate::borrowed_json::Value::to_json);
        assert_eq!(got, want);
        if !pointer.is_empty() || path.is_empty() {
            assert_eq!(got.as_ref(), v.pointer(pointer));
        }
    });
}
