use super::*;

fn q<'a>(
    user: &'a str,
    groups: &'a [String],
    verb: &'a str,
    group: &'a str,
    resource: &'a str,
    namespace: Option<&'a str>,
) -> AccessQuery<'a> {
    AccessQuery {
        user,
        groups,
        verb,
        group,
        resource,
        subresource: None,
        namespace,
        name: None,
    }
}

const HDR_CR: &str = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\n";
const HDR_R: &str = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\n";
const HDR_RB: &str = "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n";
const HDR_CRB: &str = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\n";

/// ClusterRole `name` with one rule, bound cluster-wide to user alice.
fn cluster_wide(rule: &str) -> String {
    format!(
        "{HDR_CR}metadata: {{name: r}}\nrules:\n- {rule}\n---\n{HDR_CRB}metadata: {{name: b}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: r}}\n\
         subjects: [{{kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}}]\n"
    )
}

#[test]
fn rule_semantics_table() {
    let hpa = |verb: &'static str| AccessQuery {
        user: "alice",
        groups: &[],
        verb,
        group: "autoscaling",
        resource: "horizontalpodautoscalers",
        subresource: None,
        namespace: Some("payments"),
        name: None,
    };
    let base = hpa("create");
    let with_name = AccessQuery {
        verb: "get",
        name: Some("web"),
        ..base
    };
    let status = AccessQuery {
        verb: "update",
        subresource: Some("status"),
        name: Some("web"),
        ..base
    };
    let cluster = AccessQuery {
        namespace: None,
        ..base
    };
    let core_pods = AccessQuery {
        group: "",
        resource: "pods",
        ..base
    };
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, AccessQuery, bool)> = vec![
        ("exact match", "{apiGroups: [autoscaling], resources: [horizontalpodautoscalers], verbs: [create]}", base, true),
        ("verb mismatch", "{apiGroups: [autoscaling], resources: [horizontalpodautoscalers], verbs: [get]}", base, false),
        ("group mismatch", "{apiGroups: [apps], resources: [horizontalpodautoscalers], verbs: [create]}", base, false),
        ("resource mismatch", "{apiGroups: [autoscaling], resources: [deployments], verbs: [create]}", base, false),
        ("wildcard verbs", "{apiGroups: [autoscaling], resources: [horizontalpodautoscalers], verbs: ['*']}", base, true),
        ("wildcard groups", "{apiGroups: ['*'], resources: [horizontalpodautoscalers], verbs: [create]}", base, true),
        ("wildcard resources", "{apiGroups: [autoscaling], resources: ['*'], verbs: [create]}", base, true),
        ("all wildcards, cluster-scoped", "{apiGroups: ['*'], resources: ['*'], verbs: ['*']}", cluster, true),
        ("core group \"\"", "{apiGroups: [''], resources: [pods], verbs: [create]}", core_pods, true),
        ("core group rule does not match named group", "{apiGroups: [''], resources: [horizontalpodautoscalers], verbs: [create]}", base, false),
        ("verbs are case-sensitive", "{apiGroups: [autoscaling], resources: [horizontalpodautoscalers], verbs: [Create]}", base, false),
        ("resourceNames match", "{apiGroups: [autoscaling], resources: [horizontalpodautoscalers], resourceNames: [web], verbs: [get]}", with_name, true),
        ("resourceNames mismatch", "{apiGroups: [autoscaling], resources: [horizontalpodautoscalers], resourceNames: [api], verbs: [get]}", with_name, false),
        ("resourceNames never match a create (no name)", "{apiGroups: [autoscaling], resources: [horizontalpodautoscalers], resourceNames: [web], verbs: [create]}", base, false),
        ("resource does not cover its subresource", "{apiGroups: [autoscaling], resources: [horizontalpodautoscalers], verbs: [update]}", status, false),
        ("resource/subresource", "{apiGroups: [autoscaling], resources: [horizontalpodautoscalers/status], verbs: [update]}", status, true),
        ("resource/other-subresource", "{apiGroups: [autoscaling], resources: [horizontalpodautoscalers/scale], verbs: [update]}", status, false),
        ("*/subresource", "{apiGroups: [autoscaling], resources: ['*/status'], verbs: [update]}", status, true),
        ("*/subresource does not cover the resource", "{apiGroups: [autoscaling], resources: ['*/status'], verbs: [create]}", base, false),
        ("* covers subresources", "{apiGroups: [autoscaling], resources: ['*'], verbs: [update]}", status, true),
        ("subresource rule does not cover the resource", "{apiGroups: [autoscaling], resources: [horizontalpodautoscalers/status], verbs: [create]}", base, false),
        ("subresource with resourceNames", "{apiGroups: [autoscaling], resources: [horizontalpodautoscalers/status], resourceNames: [web], verbs: [update]}", status, true),
        ("nonResourceURLs ignored for resources", "{nonResourceURLs: ['*'], verbs: ['*']}", base, false),
    ];
    crate::table_test::each(cases, |(what, rule, query, want)| {
        let rbac = RbacFile::parse(&cluster_wide(rule)).unwrap_or_else(|e| panic!("{what}: {e}"));
        let d = rbac.check(&query);
        assert_eq!(d.allowed, want, "{what}: {}", d.reason);
        if want {
            assert_eq!(
                d.reason, "allowed by ClusterRoleBinding/b (ClusterRole/r)",
                "{what}"
            );
        }
    });
}

#[test]
fn binding_semantics_table() {
    let sa_groups: Vec<String> = vec![
        "system:serviceaccounts".into(),
        "system:serviceaccounts:tether".into(),
        "system:authenticated".into(),
    ];
    let devs: Vec<String> = vec!["devs".into(), "system:authenticated".into()];
    let authn: Vec<String> = vec!["system:authenticated".into()];
    let none: Vec<String> = vec![];
    let rule = "rules: [{apiGroups: ['*'], resources: ['*'], verbs: ['*']}]";
    let cr = format!("{HDR_CR}metadata: {{name: edit}}\n{rule}\n");
    let role_payments = format!("{HDR_R}metadata: {{name: edit, namespace: payments}}\n{rule}\n");
    let rb = |ns: &str, kind: &str, subjects: &str| {
        format!(
            "{HDR_RB}metadata: {{name: b, namespace: {ns}}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: {kind}, name: edit}}\n\
             subjects: {subjects}\n"
        )
    };
    let crb = |subjects: &str| {
        format!(
            "{HDR_CRB}metadata: {{name: b}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}}\n\
             subjects: {subjects}\n"
        )
    };
    let alice = "[{kind: User, name: alice}]";
    let files: Vec<(&str, String)> = vec![
        (
            "rb->cr",
            format!("{cr}---\n{}", rb("payments", "ClusterRole", alice)),
        ),
        (
            "rb->role same ns",
            format!("{role_payments}---\n{}", rb("payments", "Role", alice)),
        ),
        (
            "rb->role other ns",
            format!("{role_payments}---\n{}", rb("billing", "Role", alice)),
        ),
        ("crb", format!("{cr}---\n{}", crb(alice))),
        (
            "crb group",
            format!(
                "{cr}---\n{}",
                crb("[{kind: Group, name: devs, apiGroup: rbac.authorization.k8s.io}]")
            ),
        ),
        (
            "crb authenticated",
            format!(
                "{cr}---\n{}",
                crb("[{kind: Group, name: 'system:authenticated'}]")
            ),
        ),
        (
            "crb sa",
            format!(
                "{cr}---\n{}",
                crb("[{kind: ServiceAccount, name: tether, namespace: tether}]")
            ),
        ),
        (
            "rb sa default ns",
            format!(
                "{cr}---\n{}",
                rb(
                    "tether",
                    "ClusterRole",
                    "[{kind: ServiceAccount, name: tether}]"
                )
            ),
        ),
        (
            "crb sa group",
            format!(
                "{cr}---\n{}",
                crb("[{kind: Group, name: 'system:serviceaccounts:tether'}]")
            ),
        ),
        ("missing role", crb(alice)),
    ];
    let file = |name: &str| {
        let text = &files.iter().find(|(n, _)| *n == name).unwrap().1;
        RbacFile::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let sa = "system:serviceaccount:tether:tether";
    #[rustfmt::skip]
    let cases: Vec<(&str, AccessQuery, bool, &str)> = vec![
        ("rb->cr", q("alice", &none, "create", "apps", "deployments", Some("payments")), true, "allowed by RoleBinding/b in namespace payments (ClusterRole/edit)"),
        ("rb->cr", q("alice", &none, "create", "apps", "deployments", Some("billing")), false, "no rule grants create on apps/deployments in namespace billing"),
        ("rb->cr", q("alice", &none, "create", "", "namespaces", None), false, "no rule grants create on namespaces cluster-wide"),
        ("rb->cr", q("bob", &none, "create", "apps", "deployments", Some("payments")), false, "no rule grants create on apps/deployments in namespace payments; no binding in the RBAC file names user \"bob\" or its groups"),
        ("rb->role same ns", q("alice", &none, "get", "", "pods", Some("payments")), true, "allowed by RoleBinding/b in namespace payments (Role/edit)"),
        ("rb->role other ns", q("alice", &none, "get", "", "pods", Some("billing")), false, "no rule grants get on pods in namespace billing; no binding in the RBAC file names user \"alice\" or its groups"),
        ("rb->role other ns", q("alice", &none, "get", "", "pods", Some("payments")), false, "no rule grants get on pods in namespace payments; no binding in the RBAC file names user \"alice\" or its groups"),
        ("crb", q("alice", &none, "delete", "apps", "deployments", Some("anywhere")), true, "allowed by ClusterRoleBinding/b (ClusterRole/edit)"),
        ("crb", q("alice", &none, "create", "", "namespaces", None), true, "allowed by ClusterRoleBinding/b (ClusterRole/edit)"),
        ("crb group", q("carol", &devs, "create", "apps", "deployments", Some("x")), true, "allowed by ClusterRoleBinding/b (ClusterRole/edit)"),
        ("crb group", q("devs", &none, "create", "apps", "deployments", Some("x")), false, "no rule grants create on apps/deployments in namespace x; no binding in the RBAC file names user \"devs\" or its groups"),
        ("crb authenticated", q("carol", &authn, "get", "", "pods", Some("x")), true, "allowed by ClusterRoleBinding/b (ClusterRole/edit)"),
        ("crb authenticated", q("carol", &none, "get", "", "pods", Some("x")), false, "no rule grants get on pods in namespace x; no binding in the RBAC file names user \"carol\" or its groups"),
        ("crb sa", q(sa, &sa_groups, "patch", "autoscaling", "horizontalpodautoscalers", Some("payments")), true, "allowed by ClusterRoleBinding/b (ClusterRole/edit)"),
        ("crb sa", q("system:serviceaccount:other:tether", &none, "patch", "autoscaling", "horizontalpodautoscalers", Some("payments")), false, "no rule grants patch on autoscaling/horizontalpodautoscalers in namespace payments; no binding in the RBAC file names user \"system:serviceaccount:other:tether\" or its groups"),
        ("crb sa", q("tether", &none, "patch", "autoscaling", "horizontalpodautoscalers", Some("payments")), false, "no rule grants patch on autoscaling/horizontalpodautoscalers in namespace payments; no binding in the RBAC file names user \"tether\" or its groups"),
        ("rb sa default ns", q(sa, &none, "get", "", "pods", Some("tether")), true, "allowed by RoleBinding/b in namespace tether (ClusterRole/edit)"),
        ("crb sa group", q(sa, &sa_groups, "get", "", "pods", Some("x")), true, "allowed by ClusterRoleBinding/b (ClusterRole/edit)"),
        ("missing role", q("alice", &none, "get", "", "pods", Some("x")), false, "no rule grants get on pods in namespace x; no binding in the RBAC file names user \"alice\" or its groups"),
    ];
    crate::table_test::each(cases, |(name, query, want, reason)| {
        let d = file(name).check(&query);
        assert_eq!(
            d,
            RbacDecision {
                allowed: want,
                reason: reason.into()
            },
            "{name}"
        );
    });
    assert_eq!(
        file("rb->role other ns").warnings(),
        ["RoleBinding/b in namespace billing refers to Role/edit, which is not in the RBAC file (in namespace billing); it grants nothing"]
    );
    assert_eq!(
        file("missing role").warnings(),
        ["ClusterRoleBinding/b refers to ClusterRole/edit, which is not in the RBAC file; it grants nothing"]
    );
    assert!(file("crb").warnings().is_empty());
}

#[test]
fn deny_reason_names_subresource_and_name() {
    let rbac = RbacFile::parse(&cluster_wide(
        "{apiGroups: [''], resources: [pods], verbs: [get]}",
    ))
    .unwrap();
    let query = AccessQuery {
        subresource: Some("log"),
        name: Some("web-1"),
        ..q("alice", &[], "get", "", "pods", Some("x"))
    };
    assert_eq!(
        rbac.check(&query).reason,
        "no rule grants get on pods/log named \"web-1\" in namespace x"
    );
}

#[test]
fn cluster_role_bindings_are_reported_first() {
    let yaml = format!(
        "{HDR_CR}metadata: {{name: edit}}\nrules: [{{apiGroups: ['*'], resources: ['*'], verbs: ['*']}}]\n---\n\
         {HDR_RB}metadata: {{name: rb, namespace: x}}\nroleRef: {{kind: ClusterRole, name: edit}}\nsubjects: [{{kind: User, name: alice}}]\n---\n\
         {HDR_CRB}metadata: {{name: crb}}\nroleRef: {{kind: ClusterRole, name: edit}}\nsubjects: [{{kind: Group, name: g}}]\n"
    );
    let rbac = RbacFile::parse(&yaml).unwrap();
    let groups = vec!["g".to_string()];
    assert_eq!(
        rbac.check(&q("alice", &groups, "get", "", "pods", Some("x")))
            .reason,
        "allowed by ClusterRoleBinding/crb (ClusterRole/edit)"
    );
    assert_eq!(
        rbac.check(&q("alice", &[], "get", "", "pods", Some("x")))
            .reason,
        "allowed by RoleBinding/rb in namespace x (ClusterRole/edit)"
    );
}

fn aggregated_file(selector: &str, extra: &str) -> String {
    format!(
        "{HDR_CR}metadata: {{name: agg}}\naggregationRule:\n  clusterRoleSelectors:\n  - {selector}\nrules: []\n---\n\
         {HDR_CR}metadata: {{name: hpa, labels: {{tether.dev/aggregate-to-edit: 'true', tier: a}}}}\n\
         rules: [{{apiGroups: [autoscaling], resources: [horizontalpodautoscalers], verbs: [create]}}]\n---\n\
         {HDR_CR}metadata: {{name: pdb, labels: {{tier: b}}}}\n\
         rules: [{{apiGroups: [policy], resources: [poddisruptionbudgets], verbs: [create]}}]\n---\n\
         {HDR_CRB}metadata: {{name: b}}\nroleRef: {{kind: ClusterRole, name: agg}}\nsubjects: [{{kind: User, name: alice}}]\n{extra}"
    )
}

#[test]
fn aggregation_table() {
    let hpa = q(
        "alice",
        &[],
        "create",
        "autoscaling",
        "horizontalpodautoscalers",
        Some("x"),
    );
    let pdb = q(
        "alice",
        &[],
        "create",
        "policy",
        "poddisruptionbudgets",
        Some("x"),
    );
    #[rustfmt::skip]
    let cases: Vec<(&str, (bool, bool))> = vec![
        ("{matchLabels: {tether.dev/aggregate-to-edit: 'true'}}", (true, false)),
        ("{matchLabels: {tier: b}}", (false, true)),
        ("{matchLabels: {tier: c}}", (false, false)),
        ("{}", (true, true)),
        ("{matchExpressions: [{key: tier, operator: In, values: [a, b]}]}", (true, true)),
        ("{matchExpressions: [{key: tier, operator: NotIn, values: [a]}]}", (false, true)),
        ("{matchExpressions: [{key: tether.dev/aggregate-to-edit, operator: Exists}]}", (true, false)),
        ("{matchExpressions: [{key: tether.dev/aggregate-to-edit, operator: DoesNotExist}]}", (false, true)),
        ("{matchLabels: {tier: a}, matchExpressions: [{key: tier, operator: In, values: [b]}]}", (false, false)),
    ];
    crate::table_test::each(cases, |(selector, (want_hpa, want_pdb))| {
        let rbac = RbacFile::parse(&aggregated_file(selector, "")).unwrap();
        assert_eq!(rbac.check(&hpa).allowed, want_hpa, "{selector} hpa");
        assert_eq!(rbac.check(&pdb).allowed, want_pdb, "{selector} pdb");
        if want_hpa {
            assert_eq!(
                rbac.check(&hpa).reason,
                "allowed by ClusterRoleBinding/b (ClusterRole/agg)"
            );
        }
    });
}

#[test]
fn aggregation_is_transitive_and_replaces_own_rules() {
    // top aggregates mid (label level=mid); mid aggregates hpa (label tether.dev/aggregate-to-edit).
    let yaml = format!(
        "{HDR_CR}metadata: {{name: top}}\naggregationRule: {{clusterRoleSelectors: [{{matchLabels: {{level: mid}}}}]}}\n\
         rules: [{{apiGroups: [''], resources: [secrets], verbs: [get]}}]\n---\n\
         {HDR_CR}metadata: {{name: mid, labels: {{level: mid}}}}\naggregationRule: {{clusterRoleSelectors: [{{matchLabels: {{tether.dev/aggregate-to-edit: 'true'}}}}]}}\n---\n\
         {HDR_CR}metadata: {{name: hpa, labels: {{tether.dev/aggregate-to-edit: 'true'}}}}\n\
         rules: [{{apiGroups: [autoscaling], resources: [horizontalpodautoscalers], verbs: [create]}}]\n---\n\
         {HDR_CRB}metadata: {{name: b}}\nroleRef: {{kind: ClusterRole, name: top}}\nsubjects: [{{kind: User, name: alice}}]\n"
    );
    let rbac = RbacFile::parse(&yaml).unwrap();
    assert!(
        rbac.check(&q(
            "alice",
            &[],
            "create",
            "autoscaling",
            "horizontalpodautoscalers",
            Some("x")
        ))
        .allowed
    );
    assert!(
        !rbac
            .check(&q("alice", &[], "get", "", "secrets", Some("x")))
            .allowed
    );
    assert_eq!(
        rbac.warnings(),
        ["ClusterRole/top has an aggregationRule, so its rules are replaced by those of the ClusterRoles it selects (as the aggregation controller does); 1 rule(s) written in it are ignored"]
    );
}

#[test]
fn long_aggregation_chain_in_the_worst_order_resolves_fully() {
    // c-0000 selects c-0001, ..., the last selects the leaf: sorted order visits the
    // head first (a fixed-point loop needed one pass per link; issue 13).
    let n = 400;
    let mut yaml = String::new();
    for i in 0..n {
        yaml.push_str(&format!(
            "{HDR_CR}metadata: {{name: c-{i:04}, labels: {{level: 'l{i}'}}}}\naggregationRule: {{clusterRoleSelectors: [{{matchLabels: {{level: 'l{}'}}}}]}}\nrules: []\n---\n",
            i + 1
        ));
    }
    yaml.push_str(&format!(
        "{HDR_CR}metadata: {{name: leaf, labels: {{level: 'l{n}'}}}}\nrules: [{{apiGroups: [''], resources: [pods], verbs: [get]}}, {{apiGroups: [''], resources: [pods], verbs: [get]}}]\n---\n\
         {HDR_CRB}metadata: {{name: bind}}\nroleRef: {{kind: ClusterRole, name: c-0000}}\nsubjects: [{{kind: User, name: alice}}]\n"
    ));
    let rbac = RbacFile::parse(&yaml).unwrap();
    assert!(
        rbac.check(&q("alice", &[], "get", "", "pods", Some("x")))
            .allowed
    );
    assert!(
        !rbac
            .check(&q("alice", &[], "list", "", "pods", Some("x")))
            .allowed
    );
    // Equal rules are one rule: every aggregated role holds exactly one (the leaf keeps
    // its own two, as written).
    assert!(
        rbac.rule_sets[..n].iter().all(|s| s.len() == 1),
        "{:?}",
        rbac.rule_sets.iter().map(Vec::len).collect::<Vec<_>>()
    );
}

#[test]
fn deep_flow_nesting_is_refused_before_parsing() {
    let yaml = format!(
        "{HDR_CR}metadata: {{name: x}}\nrules: {}{}\n",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let e = RbacFile::parse(&yaml).unwrap_err().to_string();
    assert_eq!(e, "RBAC file: line 4: flow collections ([ ], { }) nested deeper than 128 levels; tether refuses such YAML before parsing it; simplify the file");
}

#[test]
fn aggregation_cycle_terminates() {
    let yaml = format!(
        "{HDR_CR}metadata: {{name: a, labels: {{x: a}}}}\naggregationRule: {{clusterRoleSelectors: [{{matchLabels: {{x: b}}}}, {{matchLabels: {{x: leaf}}}}]}}\n---\n\
         {HDR_CR}metadata: {{name: b, labels: {{x: b}}}}\naggregationRule: {{clusterRoleSelectors: [{{matchLabels: {{x: a}}}}]}}\n---\n\
         {HDR_CR}metadata: {{name: leaf, labels: {{x: leaf}}}}\nrules: [{{apiGroups: [''], resources: [pods], verbs: [get]}}]\n---\n\
         {HDR_CRB}metadata: {{name: bind}}\nroleRef: {{kind: ClusterRole, name: b}}\nsubjects: [{{kind: User, name: alice}}]\n"
    );
    let rbac = RbacFile::parse(&yaml).unwrap();
    assert!(
        rbac.check(&q("alice", &[], "get", "", "pods", Some("x")))
            .allowed
    );
}

#[test]
fn aggregation_selecting_nothing_warns() {
    let rbac = RbacFile::parse(&aggregated_file("{matchLabels: {tier: z}}", "")).unwrap();
    assert_eq!(
        rbac.warnings(),
        ["ClusterRole/agg has an aggregationRule that selects no ClusterRole in the RBAC file; it grants nothing"]
    );
}

#[test]
fn list_kinds() {
    let generic = "apiVersion: v1\nkind: List\nitems:\n\
        - {apiVersion: rbac.authorization.k8s.io/v1, kind: Role, metadata: {name: r, namespace: ns}, rules: [{apiGroups: [''], resources: [pods], verbs: [get]}]}\n\
        - {apiVersion: rbac.authorization.k8s.io/v1, kind: RoleBinding, metadata: {name: b, namespace: ns}, roleRef: {kind: Role, name: r}, subjects: [{kind: User, name: alice}]}\n";
    // API list responses omit kind/apiVersion on items.
    let typed_list = "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleList\nitems:\n\
        - {metadata: {name: r, namespace: ns}, rules: [{apiGroups: [''], resources: [pods], verbs: [get]}]}\n\
        ---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBindingList\nitems:\n\
        - {metadata: {name: b, namespace: ns}, roleRef: {kind: Role, name: r}, subjects: [{kind: User, name: alice}]}\n";
    let empty = "apiVersion: v1\nkind: List\nitems: []\n";
    for (what, yaml, want) in [
        ("List", generic, true),
        ("typed lists", typed_list, true),
        ("empty list", empty, false),
    ] {
        let rbac = RbacFile::parse(yaml).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(
            rbac.check(&q("alice", &[], "get", "", "pods", Some("ns")))
                .allowed,
            want,
            "{what}"
        );
    }
}

#[test]
fn empty_documents_and_files() {
    let rbac = RbacFile::parse("").unwrap();
    assert_eq!(
        rbac.warnings(),
        ["the RBAC file holds no objects; every access check will be denied"]
    );
    assert!(
        !rbac
            .check(&q("alice", &[], "get", "", "pods", Some("x")))
            .allowed
    );
    // Leading, repeated and trailing separators are fine.
    let yaml = format!(
        "---\n---\n{}---\n",
        cluster_wide("{apiGroups: [''], resources: [pods], verbs: [get]}")
    );
    let rbac = RbacFile::parse(&yaml).unwrap();
    assert!(
        rbac.check(&q("alice", &[], "get", "", "pods", Some("x")))
            .allowed
    );
    assert!(rbac.warnings().is_empty());
}

#[test]
fn duplicates_last_wins_with_warning() {
    let yaml = format!(
        "{}---\n{HDR_CR}metadata: {{name: r}}\nrules: [{{apiGroups: [''], resources: [secrets], verbs: [get]}}]\n",
        cluster_wide("{apiGroups: [''], resources: [pods], verbs: [get]}")
    );
    let rbac = RbacFile::parse(&yaml).unwrap();
    assert!(
        !rbac
            .check(&q("alice", &[], "get", "", "pods", Some("x")))
            .allowed
    );
    assert!(
        rbac.check(&q("alice", &[], "get", "", "secrets", Some("x")))
            .allowed
    );
    assert_eq!(
        rbac.warnings(),
        ["ClusterRole/r appears more than once; the last one is used"]
    );
}

#[test]
fn error_table() {
    let rb = |rest: &str| format!("{HDR_RB}metadata: {{name: b, namespace: ns}}\n{rest}");
    #[rustfmt::skip]
    let cases: Vec<(String, &str)> = vec![
        ("kind: Role\nmetadata: {name: [unclosed\n".into(),
         "RBAC file, document 1: not valid YAML: "),
        (format!("{}---\nkind: [a\n", cluster_wide("{apiGroups: [''], resources: [pods], verbs: [get]}")),
         "RBAC file, document 3: not valid YAML: "),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n".into(),
         "RBAC file, document 1: unsupported kind \"ConfigMap\" (named \"cm\"); accepted kinds: Role, ClusterRole, RoleBinding, ClusterRoleBinding (rbac.authorization.k8s.io/v1), and List of them"),
        ("---\n---\nkind: Pod\n".into(),
         "RBAC file, document 2: unsupported kind \"Pod\"; accepted kinds: Role, ClusterRole, RoleBinding, ClusterRoleBinding (rbac.authorization.k8s.io/v1), and List of them"),
        ("apiVersion: v1\nkind: List\nitems:\n- {kind: Role, metadata: {name: r, namespace: n}, rules: []}\n- {kind: Secret, metadata: {name: s}}\n".into(),
         "RBAC file, document 1, items[1]: unsupported kind \"Secret\" (named \"s\"); accepted kinds: Role, ClusterRole, RoleBinding, ClusterRoleBinding (rbac.authorization.k8s.io/v1), and List of them"),
        ("kind: List\nitems: [{kind: List, items: []}]\n".into(),
         "RBAC file, document 1, items[0]: unsupported kind \"List\"; accepted kinds: Role, ClusterRole, RoleBinding, ClusterRoleBinding (rbac.authorization.k8s.io/v1), and List of them"),
        ("kind: List\nitems: {}\n".into(),
         "RBAC file, document 1: List \"\": field `items`: expected a sequence, found a mapping"),
        ("metadata: {name: x}\n".into(),
         "RBAC file, document 1: missing `kind`; accepted kinds: Role, ClusterRole, RoleBinding, ClusterRoleBinding (rbac.authorization.k8s.io/v1), and List of them"),
        ("- a\n- b\n".into(),
         "RBAC file, document 1: expected a Kubernetes object (a mapping with apiVersion and kind), found a sequence; accepted kinds: Role, ClusterRole, RoleBinding, ClusterRoleBinding (rbac.authorization.k8s.io/v1), and List of them"),
        ("apiVersion: rbac.authorization.k8s.io/v1beta1\nkind: ClusterRole\nmetadata: {name: old}\n".into(),
         "RBAC file, document 1: ClusterRole \"old\": field `apiVersion`: unsupported \"rbac.authorization.k8s.io/v1beta1\"; use \"rbac.authorization.k8s.io/v1\""),
        (format!("{HDR_CR}metadata: {{name: r}}\nrules: [{{apiGroups: [''], resources: [pods], verbs: get}}]\n"),
         "RBAC file, document 1: ClusterRole \"r\": field `rules[0].verbs`: invalid type: string \"get\", expected a sequence"),
        (format!("{HDR_CR}metadata: {{name: r}}\nrules: [{{apiGroups: [''], resources: [pods]}}]\n"),
         "RBAC file, document 1: ClusterRole \"r\": field `rules[0].verbs`: required: at least one verb, or \"*\""),
        (format!("{HDR_CR}metadata: {{name: r}}\nrules: [{{resources: [pods], verbs: [get]}}]\n"),
         "RBAC file, document 1: ClusterRole \"r\": field `rules[0].apiGroups`: required for a resource rule: list the groups, \"\" for the core group, or \"*\""),
        (format!("{HDR_CR}metadata: {{name: r}}\nrules: [{{apiGroups: [''], verbs: [get]}}]\n"),
         "RBAC file, document 1: ClusterRole \"r\": field `rules[0].resources`: required for a resource rule: list the resources, or \"*\""),
        (format!("{HDR_CR}metadata: {{name: r}}\nrules: [{{nonResourceURLs: [/x], resources: [pods], verbs: [get]}}]\n"),
         "RBAC file, document 1: ClusterRole \"r\": field `rules[0].nonResourceURLs`: cannot be combined with apiGroups or resources; write two rules"),
        (format!("{HDR_R}metadata: {{name: r, namespace: n}}\nrules: [{{nonResourceURLs: [/x], verbs: [get]}}]\n"),
         "RBAC file, document 1: Role \"r\": field `rules[0].nonResourceURLs`: a namespaced Role cannot grant non-resource URLs; use a ClusterRole"),
        (format!("{HDR_R}metadata: {{name: r}}\nrules: []\n"),
         "RBAC file, document 1: Role \"r\": field `metadata.namespace`: required for a Role (the RBAC file is read without a kubectl context, so there is no default namespace)"),
        (format!("{HDR_CR}metadata: {{labels: {{a: b}}}}\n"),
         "RBAC file, document 1: ClusterRole \"\": field `metadata.name`: required"),
        (format!("{HDR_CR}metadata: {{name: r}}\naggregationRule: {{clusterRoleSelectors: [{{matchExpressions: [{{key: a, operator: Equals, values: [b]}}]}}]}}\n"),
         "RBAC file, document 1: ClusterRole \"r\": field `aggregationRule.clusterRoleSelectors[0].matchExpressions[0].operator`: unsupported \"Equals\"; use In, NotIn, Exists or DoesNotExist"),
        (format!("{HDR_CR}metadata: {{name: r}}\naggregationRule: {{clusterRoleSelectors: [{{matchExpressions: [{{key: a, operator: In}}]}}]}}\n"),
         "RBAC file, document 1: ClusterRole \"r\": field `aggregationRule.clusterRoleSelectors[0].matchExpressions[0].values`: must be non-empty for operator In"),
        (format!("{HDR_CR}metadata: {{name: r}}\naggregationRule: {{clusterRoleSelectors: [{{matchExpressions: [{{key: a, operator: Exists, values: [b]}}]}}]}}\n"),
         "RBAC file, document 1: ClusterRole \"r\": field `aggregationRule.clusterRoleSelectors[0].matchExpressions[0].values`: must be empty for operator Exists"),
        (rb("roleRef: {kind: Policy, name: r}\n"),
         "RBAC file, document 1: RoleBinding \"b\": field `roleRef.kind`: unsupported \"Policy\"; use Role or ClusterRole"),
        (rb("roleRef: {apiGroup: rbac.example.com, kind: Role, name: r}\n"),
         "RBAC file, document 1: RoleBinding \"b\": field `roleRef.apiGroup`: unsupported \"rbac.example.com\"; use \"rbac.authorization.k8s.io\""),
        (rb("roleRef: {kind: Role}\n"),
         "RBAC file, document 1: RoleBinding \"b\": field `roleRef.name`: required"),
        (format!("{HDR_CRB}metadata: {{name: b}}\nroleRef: {{kind: Role, name: r}}\n"),
         "RBAC file, document 1: ClusterRoleBinding \"b\": field `roleRef.kind`: a ClusterRoleBinding can only refer to a ClusterRole"),
        (format!("{HDR_CRB}metadata: {{name: b}}\nroleRef: {{kind: ClusterRole, name: r}}\nsubjects: [{{kind: ServiceAccount, name: sa}}]\n"),
         "RBAC file, document 1: ClusterRoleBinding \"b\": field `subjects[0].namespace`: required for a ServiceAccount subject of a ClusterRoleBinding"),
        (rb("roleRef: {kind: Role, name: r}\nsubjects: [{kind: User, name: a}, {kind: Team, name: t}]\n"),
         "RBAC file, document 1: RoleBinding \"b\": field `subjects[1].kind`: unsupported \"Team\"; use User, Group or ServiceAccount"),
        (rb("roleRef: {kind: Role, name: r}\nsubjects: [{name: a}]\n"),
         "RBAC file, document 1: RoleBinding \"b\": field `subjects[0].kind`: required: User, Group or ServiceAccount"),
        (rb("roleRef: {kind: Role, name: r}\nsubjects: [{kind: User}]\n"),
         "RBAC file, document 1: RoleBinding \"b\": field `subjects[0].name`: required"),
        (rb("roleRef: {kind: Role, name: r}\nsubjects: [{kind: ServiceAccount, name: s, apiGroup: rbac.authorization.k8s.io}]\n"),
         "RBAC file, document 1: RoleBinding \"b\": field `subjects[0].apiGroup`: must be empty for a ServiceAccount, found \"rbac.authorization.k8s.io\""),
        (rb("roleRef: {kind: Role, name: r}\nsubjects: [{kind: Group, name: g, apiGroup: example.com}]\n"),
         "RBAC file, document 1: RoleBinding \"b\": field `subjects[0].apiGroup`: unsupported \"example.com\" for a Group; use \"rbac.authorization.k8s.io\""),
        (format!("{HDR_RB}metadata: {{name: b}}\nroleRef: {{kind: Role, name: r}}\n"),
         "RBAC file, document 1: RoleBinding \"b\": field `metadata.namespace`: required for a RoleBinding (the RBAC file is read without a kubectl context, so there is no default namespace)"),
    ];
    crate::table_test::each(cases, |(yaml, want)| {
        let err = RbacFile::parse(&yaml).map(|_| ()).unwrap_err().to_string();
        if want.ends_with(": ") {
            assert!(err.starts_with(want), "{err}");
        } else {
            assert_eq!(err, want, "{yaml}");
        }
    });
}

#[test]
fn yaml_error_carries_line() {
    let err = RbacFile::parse("kind: Role\nmetadata: {name: [unclosed\n").unwrap_err();
    match err {
        RbacFileError::Yaml { document, message } => {
            assert_eq!(document, 1);
            assert!(message.contains("line"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
}
