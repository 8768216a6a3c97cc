use super::*;
use k8s_openapi::{NamespaceResourceScope, Resource};
use std::any::TypeId;

#[test]
fn lookup_table() {
    #[rustfmt::skip]
    let cases: &[(&str, &str, &str, &str, bool)] = &[
        ("v1", "Pod", "", "pods", true),
        ("v1", "Namespace", "", "namespaces", false),
        ("v1", "Event", "", "events", true),
        ("events.k8s.io/v1", "Event", "events.k8s.io", "events", true),
        ("apps/v1", "Deployment", "apps", "deployments", true),
        ("autoscaling/v1", "HorizontalPodAutoscaler", "autoscaling", "horizontalpodautoscalers", true),
        ("autoscaling/v2", "HorizontalPodAutoscaler", "autoscaling", "horizontalpodautoscalers", true),
        ("policy/v1", "PodDisruptionBudget", "policy", "poddisruptionbudgets", true),
        ("networking.k8s.io/v1", "IngressClass", "networking.k8s.io", "ingressclasses", false),
        ("rbac.authorization.k8s.io/v1", "ClusterRole", "rbac.authorization.k8s.io", "clusterroles", false),
        ("autoscaling.k8s.io/v1", "VerticalPodAutoscaler", "autoscaling.k8s.io", "verticalpodautoscalers", true),
        ("keda.sh/v1alpha1", "ScaledObject", "keda.sh", "scaledobjects", true),
        ("keda.sh/v1alpha1", "ClusterTriggerAuthentication", "keda.sh", "clustertriggerauthentications", false),
        ("monitoring.coreos.com/v1", "PrometheusRule", "monitoring.coreos.com", "prometheusrules", true),
        ("serving.knative.dev/v1", "Service", "serving.knative.dev", "services", true),
        ("serving.knative.dev/v1beta1", "DomainMapping", "serving.knative.dev", "domainmappings", true),
        ("networking.internal.knative.dev/v1alpha1", "ClusterDomainClaim", "networking.internal.knative.dev", "clusterdomainclaims", false),
        ("cert-manager.io/v1", "ClusterIssuer", "cert-manager.io", "clusterissuers", false),
        ("cert-manager.io/v1", "Certificate", "cert-manager.io", "certificates", true),
        ("tether.dev/v1alpha1", "AttachedResource", "tether.dev", "attachedresources", true),
        ("tether.dev/v1alpha1", "AppDomain", "tether.dev", "appdomains", true),
    ];
    crate::table_test::each(cases, |&(api_version, kind, group, plural, namespaced)| {
        let got = lookup(api_version, kind).unwrap_or_else(|e| panic!("{e}"));
        let version = api_version.rsplit('/').next().unwrap();
        assert_eq!(
            got,
            ResourceInfo {
                group: group.into(),
                version: version.into(),
                kind: kind.into(),
                plural: plural.into(),
                namespaced,
            },
            "{api_version} {kind}"
        );
    });
}

#[test]
fn hint_table() {
    #[rustfmt::skip]
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("autoscaling/v2", "horizontalpodautoscaler", Some("did you mean kind \"HorizontalPodAutoscaler\" (kinds are case-sensitive)?")),
        ("autoscaling/v2beta2", "HorizontalPodAutoscaler", Some("did you mean apiVersion \"autoscaling/v1\" or \"autoscaling/v2\"?")),
        ("autoscaling/v3", "hpa", Some("did you mean kind \"HorizontalPodAutoscaler\" (manifests name the kind, not the resource) with apiVersion \"autoscaling/v1\" or \"autoscaling/v2\"?")),
        ("policy/v1beta1", "PodDisruptionBudget", Some("did you mean apiVersion \"policy/v1\"?")),
        ("batch/v1beta1", "CronJob", Some("did you mean apiVersion \"batch/v1\"?")),
        ("v1", "Deployment", Some("did you mean apiVersion \"apps/v1\"?")),
        ("extensions/v1beta1", "Ingress", Some("did you mean apiVersion \"networking.k8s.io/v1\"?")),
        ("apps/v1", "deployments", Some("did you mean kind \"Deployment\" (manifests name the kind, not the resource)?")),
        ("apps/v1", "DEPLOYMENT", Some("did you mean kind \"Deployment\" (kinds are case-sensitive)?")),
        // Same-group candidates win: the core Service, not Knative's.
        ("v2", "Service", Some("did you mean apiVersion \"v1\"?")),
        ("serving.knative.dev/v2", "Service", Some("did you mean apiVersion \"serving.knative.dev/v1\"?")),
        // Group unknown, kind exists in two groups: both are offered.
        ("example.com/v1", "Service", Some("did you mean apiVersion \"v1\" or \"serving.knative.dev/v1\"?")),
        ("tether.dev/v1", "atr", Some("did you mean kind \"AttachedResource\" (manifests name the kind, not the resource) with apiVersion \"tether.dev/v1alpha1\"?")),
        ("", "Pod", Some("did you mean apiVersion \"v1\"?")),
        ("a/b/c", "Pod", Some("did you mean apiVersion \"v1\"?")),
        ("example.com/v1", "Widget", None),
        ("v1", "", None),
    ];
    crate::table_test::each(cases, |&(api_version, kind, want)| {
        let err = lookup(api_version, kind).unwrap_err();
        assert_eq!(
            err,
            LookupError::UnknownKind {
                api_version: api_version.into(),
                kind: kind.into(),
                hint: want.map(String::from),
            },
            "{api_version} {kind}"
        );
    });
}

#[test]
fn error_message() {
    assert_eq!(
        lookup("example.com/v1", "Widget").unwrap_err().to_string(),
        "kind \"Widget\" in apiVersion \"example.com/v1\" is not in tether's built-in \
         resource table (used without a cluster)"
    );
    assert_eq!(
        lookup("v1", "pod").unwrap_err().to_string(),
        "kind \"pod\" in apiVersion \"v1\" is not in tether's built-in resource table (used \
         without a cluster); did you mean kind \"Pod\" (kinds are case-sensitive)?"
    );
}

#[test]
fn display() {
    assert_eq!(
        lookup("autoscaling/v2", "HorizontalPodAutoscaler")
            .unwrap()
            .to_string(),
        "horizontalpodautoscalers.autoscaling/v2 (namespaced)"
    );
    assert_eq!(
        lookup("v1", "Node").unwrap().to_string(),
        "nodes/v1 (cluster-scoped)"
    );
}

#[test]
fn table_is_well_formed() {
    for (i, r) in all().iter().enumerate() {
        let id = format!("{} {}", r.api_version(), r.kind);
        assert!(!r.version.is_empty() && !r.kind.is_empty(), "{id}");
        assert_eq!(r.plural, r.plural.to_ascii_lowercase(), "{id}");
        assert!(r.kind.starts_with(|c: char| c.is_ascii_uppercase()), "{id}");
        assert!(
            all()[..i]
                .iter()
                .all(|o| (o.group, o.version, o.kind) != (r.group, r.version, r.kind)),
            "duplicate {id}"
        );
        // One plural per group/version, as discovery guarantees.
        assert!(
            all()[..i]
                .iter()
                .all(|o| (o.group, o.version, o.plural) != (r.group, r.version, r.plural)),
            "duplicate plural {id}"
        );
        assert_eq!(lookup(&r.api_version(), r.kind), Ok(r.to_info()), "{id}");
        // The shared answers come from the hash index: every entry is found, and as itself.
        let shared = lookup_shared(r.group, r.version, r.kind).map(|i| (*i).clone());
        assert_eq!(shared, Ok(r.to_info()), "{id}");
    }
    assert!(all().len() >= 60);
}

/// The built-in kinds agree with k8s-openapi, which is generated from the Kubernetes
/// OpenAPI spec: same plural, same scope.
#[test]
fn builtin_entries_match_k8s_openapi() {
    fn check<T: Resource + 'static>() -> String {
        let namespaced = TypeId::of::<T::Scope>() == TypeId::of::<NamespaceResourceScope>();
        let got = lookup(T::API_VERSION, T::KIND).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (
                got.group.as_str(),
                got.version.as_str(),
                got.plural.as_str(),
                got.namespaced
            ),
            (T::GROUP, T::VERSION, T::URL_PATH_SEGMENT, namespaced),
            "{} {}",
            T::API_VERSION,
            T::KIND
        );
        format!("{} {}", T::API_VERSION, T::KIND)
    }
    use k8s_openapi::api::{
        admissionregistration::v1 as adm, apps::v1 as apps, autoscaling::v1 as as1,
        autoscaling::v2 as as2, batch::v1 as batch, coordination::v1 as coord, core::v1 as core,
        discovery::v1 as disc, events::v1 as events, networking::v1 as net, policy::v1 as policy,
        rbac::v1 as rbac, scheduling::v1 as sched, storage::v1 as storage,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
    let checked = [
        check::<core::Pod>(),
        check::<core::PodTemplate>(),
        check::<core::Service>(),
        check::<core::ConfigMap>(),
        check::<core::Secret>(),
        check::<core::ServiceAccount>(),
        check::<core::PersistentVolumeClaim>(),
        check::<core::Endpoints>(),
        check::<core::Event>(),
        check::<core::LimitRange>(),
        check::<core::ResourceQuota>(),
        check::<core::ReplicationController>(),
        check::<core::Namespace>(),
        check::<core::Node>(),
        check::<core::PersistentVolume>(),
        check::<apps::Deployment>(),
        check::<apps::StatefulSet>(),
        check::<apps::DaemonSet>(),
        check::<apps::ReplicaSet>(),
        check::<apps::ControllerRevision>(),
        check::<batch::Job>(),
        check::<batch::CronJob>(),
        check::<as1::HorizontalPodAutoscaler>(),
        check::<as2::HorizontalPodAutoscaler>(),
        check::<policy::PodDisruptionBudget>(),
        check::<net::NetworkPolicy>(),
        check::<net::Ingress>(),
        check::<net::IngressClass>(),
        check::<rbac::Role>(),
        check::<rbac::RoleBinding>(),
        check::<rbac::ClusterRole>(),
        check::<rbac::ClusterRoleBinding>(),
        check::<sched::PriorityClass>(),
        check::<storage::StorageClass>(),
        check::<adm::MutatingWebhookConfiguration>(),
        check::<adm::ValidatingWebhookConfiguration>(),
        check::<adm::ValidatingAdmissionPolicy>(),
        check::<adm::ValidatingAdmissionPolicyBinding>(),
        check::<apiext::CustomResourceDefinition>(),
        check::<coord::Lease>(),
        check::<disc::EndpointSlice>(),
        check::<events::Event>(),
    ];
    // Every built-in (k8s.io or core) entry of the table is covered above.
    for r in all() {
        let builtin = r.group.is_empty()
            || (r.group.ends_with(".k8s.io") && r.group != "autoscaling.k8s.io")
            || !r.group.contains('.');
        if builtin {
            let id = format!("{} {}", r.api_version(), r.kind);
            assert!(
                checked.contains(&id),
                "{id} not checked against k8s-openapi"
            );
        }
    }
}

#[test]
fn lookup_parts_answers_as_lookup_of_the_joined_api_version() {
    let mut rows: Vec<(&str, &str, &str)> =
        all().iter().map(|r| (r.group, r.version, r.kind)).collect();
    rows.extend([
        ("", "apps/v1", "Deployment"),
        ("apps", "", "Deployment"),
        ("", "", "Pod"),
        ("apps/v1", "", "Deployment"),
        ("autoscaling", "v2beta2", "horizontalPodAutoscaler"),
        ("", "v1", "pods"),
        ("a/b", "c", "Pod"),
        ("é", "v1", "Pod"),
    ]);
    crate::table_test::each(rows, |(group, version, kind)| {
        let joined = crate::discovery::api_version(group, version);
        assert_eq!(
            lookup_parts(group, version, kind),
            lookup(&joined, kind),
            "{group:?} {version:?} {kind:?}"
        );
        // The shared answer is the same answer, and the same copy every time.
        let shared = lookup_shared(group, version, kind);
        assert_eq!(
            shared.as_deref().map_err(Clone::clone),
            lookup(&joined, kind).as_ref().map_err(Clone::clone),
            "shared {group:?} {version:?} {kind:?}"
        );
        let entry = all()
            .iter()
            .any(|r| (r.group, r.version, r.kind) == (group, version, kind));
        if entry {
            let (Ok(a), Ok(b)) = (&shared, &lookup_shared(group, version, kind)) else {
                panic!("{group:?} {version:?} {kind:?}: a table entry is not found");
            };
            assert!(
                std::sync::Arc::ptr_eq(a, b),
                "{group:?} {version:?} {kind:?}"
            );
        }
    });
}
