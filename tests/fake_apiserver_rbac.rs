//! The fake API server authorises every request of a non-admin identity with RBAC evaluated
//! from the Role/ClusterRole/(Cluster)RoleBinding objects it stores (here: the chart's
//! rendered ones in webhook-config/), answers 403 as kube-apiserver words it, and answers
//! SubjectAccessReviews from the same objects.

#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;

use fake_apiserver::{AccessAnswer, FakeApiServer, Identity};
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{json, Value};

const SA_TOKEN: &str = "tether-sa-token-0123456789";
const ALICE: &str = "alice-token-0123456789";

async fn chart_rbac() -> FakeApiServer {
    let fake = FakeApiServer::start().await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/webhook-config/");
    for f in ["clusterrole.yaml", "role.yaml"] {
        fake.load_yaml(&std::fs::read_to_string(format!("{dir}{f}")).unwrap());
    }
    fake.add_token(
        SA_TOKEN,
        Identity::service_account("tether-system", "tether"),
    );
    fake.add_token(ALICE, Identity::user("alice", &["devs"]));
    fake
}

fn status_of(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn the_chart_rbac_grants_what_it_lists_and_403s_the_rest() {
    let fake = chart_rbac().await;
    let sa = fake.client_for(SA_TOKEN).await;
    let deployments = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("apps", "v1", "Deployment"),
        "deployments",
    );
    Api::<DynamicObject>::all_with(sa.clone(), &deployments)
        .list(&ListParams::default())
        .await
        .unwrap();

    let cms: Api<ConfigMap> = Api::namespaced(sa.clone(), "payments");
    let s = status_of(cms.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
    assert_eq!(s.message, "configmaps is forbidden: User \"system:serviceaccount:tether-system:tether\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"payments\"");
    let s = status_of(cms.get("c").await.unwrap_err());
    assert_eq!(s.message, "configmaps \"c\" is forbidden: User \"system:serviceaccount:tether-system:tether\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"payments\"");

    // The leader-election Role: create anywhere in tether-system, get/patch only the named Lease.
    let leases: Api<Lease> = Api::namespaced(sa.clone(), "tether-system");
    let lease = |name: &str| {
        serde_json::from_value::<Lease>(
            json!({"metadata": {"name": name}, "spec": {"holderIdentity": "a"}}),
        )
        .unwrap()
    };
    leases
        .create(&PostParams::default(), &lease("tether-controller"))
        .await
        .unwrap();
    leases.get("tether-controller").await.unwrap();
    leases.patch("tether-controller", &PatchParams::apply("tether").force(), &Patch::Apply(json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": {"holderIdentity": "b"}}))).await.unwrap();
    leases
        .create(&PostParams::default(), &lease("other"))
        .await
        .unwrap();
    let s = status_of(leases.get("other").await.unwrap_err());
    assert_eq!(s.message, "leases.coordination.k8s.io \"other\" is forbidden: User \"system:serviceaccount:tether-system:tether\" cannot get resource \"leases\" in API group \"coordination.k8s.io\" in the namespace \"tether-system\"");
    let elsewhere: Api<Lease> = Api::namespaced(sa.clone(), "default");
    assert_eq!(
        status_of(
            elsewhere
                .create(&PostParams::default(), &lease("tether-controller"))
                .await
                .unwrap_err()
        )
        .code,
        403
    );

    // Status subresource grants are separate from the main resource.
    let atrs = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("tether.dev", "v1alpha1", "AttachedResource"),
        "attachedresources",
    );
    fake.insert(json!({"apiVersion": "tether.dev/v1alpha1", "kind": "AttachedResource", "metadata": {"name": "a", "namespace": "payments"}, "spec": {}}));
    let api = Api::<DynamicObject>::namespaced_with(sa.clone(), "payments", &atrs);
    api.patch_status(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"x": 1}})),
    )
    .await
    .unwrap();
    let s = status_of(api.create(&PostParams::default(), &serde_json::from_value(json!({"apiVersion": "tether.dev/v1alpha1", "kind": "AttachedResource", "metadata": {"name": "b"}, "spec": {}})).unwrap()).await.unwrap_err());
    assert_eq!(s.code, 403);
    // Server-side apply that creates needs create too: the chart grants HPAs create+patch.
    let hpas = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("autoscaling", "v2", "HorizontalPodAutoscaler"),
        "horizontalpodautoscalers",
    );
    Api::<DynamicObject>::namespaced_with(sa.clone(), "payments", &hpas)
        .patch(
            "h",
            &PatchParams::apply("tether").force(),
            &Patch::Apply(
                json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "d"}, "maxReplicas": 2}}),
            ),
        )
        .await
        .unwrap();
    // ... and the PDB of nobody's: alice has no grants at all.
    let alice: Api<ConfigMap> = Api::namespaced(fake.client_for(ALICE).await, "payments");
    assert_eq!(
        status_of(alice.list(&ListParams::default()).await.unwrap_err()).code,
        403
    );
    assert!(fake
        .forbidden()
        .iter()
        .any(|(m, p, _)| m == "GET" && p == "/api/v1/namespaces/payments/configmaps"));
    // Discovery works for any authenticated identity; the admin is never restricted.
    kube::discovery::Discovery::new(fake.client_for(ALICE).await)
        .run()
        .await
        .unwrap();
    Api::<ConfigMap>::namespaced(fake.client().await, "payments")
        .list(&ListParams::default())
        .await
        .unwrap();
    // Removing a grant takes effect at once.
    assert!(fake.rbac_allows(
        &Identity::service_account("tether-system", "tether"),
        "list",
        "apps",
        "deployments",
        "",
        ""
    ));
    let mut role = fake
        .get(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            None,
            "tether",
        )
        .unwrap();
    role["rules"] = Value::Array(
        role["rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["resources"] != json!(["deployments"]))
            .cloned()
            .collect(),
    );
    fake.insert(role);
    let s = status_of(
        Api::<DynamicObject>::all_with(sa, &deployments)
            .list(&ListParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(s.message, "deployments.apps is forbidden: User \"system:serviceaccount:tether-system:tether\" cannot list resource \"deployments\" in API group \"apps\" at the cluster scope");
}

#[tokio::test]
async fn subject_access_reviews_are_answered_from_rbac_when_no_rule_is_set() {
    let fake = chart_rbac().await;
    fake.answer_access_reviews_from_rbac();
    let sa = fake.client_for(SA_TOKEN).await;
    let reviews: Api<SubjectAccessReview> = Api::all(sa.clone());
    let ask = |user: &str, verb: &str, resource: &str| -> SubjectAccessReview {
        serde_json::from_value(json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": user, "groups": ["system:authenticated"], "extra": {"k": ["v"]},
                     "resourceAttributes": {"namespace": "payments", "verb": verb, "group": "autoscaling", "version": "v2", "resource": resource, "name": "h"}}})).unwrap()
    };
    let r = reviews
        .create(
            &PostParams::default(),
            &ask(
                "system:serviceaccount:tether-system:tether",
                "delete",
                "horizontalpodautoscalers",
            ),
        )
        .await
        .unwrap();
    let status = r.status.unwrap();
    assert!(status.allowed);
    assert_eq!(status.reason.as_deref(), Some("RBAC: allowed by ClusterRoleBinding \"tether\" of ClusterRole \"tether\" to ServiceAccount \"tether/tether-system\""));
    assert_eq!(
        r.spec.resource_attributes.unwrap().name.as_deref(),
        Some("h"),
        "spec echoed"
    );
    assert_eq!(r.spec.extra.unwrap()["k"], ["v"]);
    let r = reviews
        .create(
            &PostParams::default(),
            &ask(
                "system:serviceaccount:tether-system:tether",
                "update",
                "horizontalpodautoscalers",
            ),
        )
        .await
        .unwrap();
    let status = r.status.unwrap();
    assert!(
        !status.allowed && status.denied.is_none(),
        "no opinion: neither allowed nor denied"
    );
    let r = reviews
        .create(
            &PostParams::default(),
            &ask("alice", "get", "horizontalpodautoscalers"),
        )
        .await
        .unwrap();
    assert!(!r.status.unwrap().allowed);

    let nobody: SubjectAccessReview = serde_json::from_value(
        json!({"spec": {"resourceAttributes": {"verb": "get", "resource": "pods"}}}),
    )
    .unwrap();
    assert_eq!(
        status_of(
            reviews
                .create(&PostParams::default(), &nobody)
                .await
                .unwrap_err()
        )
        .code,
        422
    );

    // Alice may not create SubjectAccessReviews at all (the chart grants it to tether only).
    let as_alice: Api<SubjectAccessReview> = Api::all(fake.client_for(ALICE).await);
    assert_eq!(
        status_of(
            as_alice
                .create(&PostParams::default(), &ask("alice", "get", "pods"))
                .await
                .unwrap_err()
        )
        .code,
        403
    );

    // A test rule still wins when set.
    fake.set_access_rule(|_| AccessAnswer::deny("rule"));
    let r = reviews
        .create(
            &PostParams::default(),
            &ask(
                "system:serviceaccount:tether-system:tether",
                "delete",
                "horizontalpodautoscalers",
            ),
        )
        .await
        .unwrap();
    assert_eq!(r.status.unwrap().denied, Some(true));
}

#[tokio::test]
async fn owner_references_permission_enforcement_needs_finalizers_on_the_owner() {
    // The chart grants update on deployments/finalizers (issue 11 defect 5); to see the
    // plugin refuse, tether's account starts here without that one rule, and gets it back
    // below.
    let fake = FakeApiServer::start().await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/webhook-config/");
    for f in ["clusterrole.yaml", "role.yaml"] {
        for mut doc in
            fake_apiserver::parse_yaml_docs(&std::fs::read_to_string(format!("{dir}{f}")).unwrap())
        {
            if let Some(rules) = doc.get_mut("rules").and_then(|r| r.as_array_mut()) {
                rules.retain(|r| r["resources"] != json!(["deployments/finalizers"]));
            }
            fake.insert(doc);
        }
    }
    fake.add_token(
        SA_TOKEN,
        Identity::service_account("tether-system", "tether"),
    );
    let owner = fake.insert(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "worker-v1", "namespace": "payments"},
        "spec": {"selector": {"matchLabels": {"app": "w"}}, "template": {"metadata": {"labels": {"app": "w"}}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}}}}));
    let uid = owner["metadata"]["uid"].as_str().unwrap().to_string();
    let pdb = |name: &str, block: bool| -> DynamicObject {
        serde_json::from_value(json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "worker-v1",
                "uid": uid, "controller": true, "blockOwnerDeletion": block}]},
            "spec": {"maxUnavailable": 1}})).unwrap()
    };
    let pdbs = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("policy", "v1", "PodDisruptionBudget"),
        "poddisruptionbudgets",
    );
    let api =
        Api::<DynamicObject>::namespaced_with(fake.client_for(SA_TOKEN).await, "payments", &pdbs);

    // Off (the kube-apiserver default): the chart's grants suffice.
    api.create(&PostParams::default(), &pdb("off", true))
        .await
        .unwrap();

    fake.enforce_owner_references_permission(true);
    let s = status_of(
        api.create(&PostParams::default(), &pdb("on", true))
            .await
            .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
    assert_eq!(s.message, format!("poddisruptionbudgets.policy \"on\" is forbidden: cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't set finalizers on: &OwnerReference{{Kind:Deployment,Name:worker-v1,UID:{uid},APIVersion:apps/v1,Controller:*true,BlockOwnerDeletion:*true,}}"));
    // Without blockOwnerDeletion the owner's finalizers do not matter.
    api.create(&PostParams::default(), &pdb("nonblocking", false))
        .await
        .unwrap();
    // Server-side apply goes through the same check.
    let applied = api
        .patch(
            "applied",
            &PatchParams::apply("tether").force(),
            &Patch::Apply(serde_json::to_value(pdb("applied", true)).unwrap()),
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(applied).code, 403);

    // Granting update on deployments/finalizers makes it pass.
    fake.load_yaml("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: fin}\nrules: [{apiGroups: [apps], resources: [deployments/finalizers], verbs: [update]}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: fin}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: fin}\nsubjects: [{kind: ServiceAccount, name: tether, namespace: tether-system}]\n");
    api.create(&PostParams::default(), &pdb("on", true))
        .await
        .unwrap();

    // Changing ownerReferences at all needs delete on the object: the chart's Role has no
    // delete on Leases.
    let leases: Api<Lease> = Api::namespaced(fake.client_for(SA_TOKEN).await, "tether-system");
    leases
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "tether-controller"}})).unwrap(),
        )
        .await
        .unwrap();
    let s = status_of(
        leases
            .patch(
                "tether-controller",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "u"}]}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(s.message, "leases.coordination.k8s.io \"tether-controller\" is forbidden: cannot set an ownerRef on a resource you can't delete: , <nil>");
    // The admin is never restricted.
    Api::<DynamicObject>::namespaced_with(fake.client().await, "payments", &pdbs)
        .create(&PostParams::default(), &pdb("admin", true))
        .await
        .unwrap();
}
