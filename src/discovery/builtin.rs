//! Built-in resource table for offline mode (SPEC 7: `--standalone`, `tether review`,
//! `tether check`).
//!
//! Check 7 of SPEC 5.1 resolves an attached object's apiVersion/kind to a resource plural and a
//! scope through API discovery. Without a cluster there is no discovery, so this table gives the
//! same answer for the common built-in kinds and the CRDs tether users attach (KEDA, VPA,
//! Prometheus Operator, Knative, cert-manager) and tether's own. A kind missing here is denied
//! offline with a message that says the table was consulted, and the hint points at the likely
//! mistake (wrong case, removed version, wrong group).
//!
//! Kinds are case-sensitive, as in Kubernetes: `horizontalpodautoscaler` is not a kind, even
//! though `kubectl get` accepts it as a resource name.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

/// One entry of the built-in table: what API discovery reports for a kind in a group/version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltinResource {
    /// API group, `""` for the core group.
    pub group: &'static str,
    /// Version, e.g. `v1`.
    pub version: &'static str,
    /// Kind, case as served.
    pub kind: &'static str,
    /// Resource plural (the URL path segment and the RBAC resource).
    pub plural: &'static str,
    /// Namespaced (`true`) or cluster-scoped.
    pub namespaced: bool,
    /// kubectl short names, used only for hints.
    pub short_names: &'static [&'static str],
}

impl BuiltinResource {
    /// The `apiVersion` string: `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Owned copy, shaped like a discovery answer.
    pub fn to_info(&self) -> ResourceInfo {
        ResourceInfo {
            group: self.group.to_string(),
            version: self.version.to_string(),
            kind: self.kind.to_string(),
            plural: self.plural.to_string(),
            namespaced: self.namespaced,
        }
    }
}

/// A resolved kind: what [`lookup`] returns, the same fields a discovery client gives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceInfo {
    /// API group, `""` for the core group.
    pub group: String,
    /// Version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Resource plural.
    pub plural: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
}

impl From<&BuiltinResource> for ResourceInfo {
    fn from(r: &BuiltinResource) -> Self {
        r.to_info()
    }
}

/// The kind is not in the built-in table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// Unknown apiVersion/kind; `hint` names the likely intended kind or apiVersion.
    #[error(
        "kind {} in apiVersion {} is not in tether's built-in resource table \
         (used without a cluster){}",
        crate::text::quote_short(kind, 80),
        crate::text::quote_short(api_version, 80),
        hint.as_deref().map(|h| format!("; {h}")).unwrap_or_default()
    )]
    UnknownKind {
        /// The apiVersion looked up.
        api_version: String,
        /// The kind looked up.
        kind: String,
        /// What was probably meant, when something close exists.
        hint: Option<String>,
    },
}

/// A namespaced entry of the table.
const fn ns(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    short_names: &'static [&'static str],
) -> BuiltinResource {
    BuiltinResource {
        group,
        version,
        kind,
        plural,
        namespaced: true,
        short_names,
    }
}

/// A cluster-scoped entry of the table.
const fn cluster(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    short_names: &'static [&'static str],
) -> BuiltinResource {
    BuiltinResource {
        namespaced: false,
        ..ns(group, version, kind, plural, short_names)
    }
}

/// The table. Built-in entries are checked against k8s-openapi (the generated API types) in
/// the tests; CRD entries follow the projects' published CRDs.
#[rustfmt::skip]
static TABLE: &[BuiltinResource] = &[
    // core/v1
    ns("", "v1", "Pod", "pods", &["po"]),
    ns("", "v1", "PodTemplate", "podtemplates", &[]),
    ns("", "v1", "Service", "services", &["svc"]),
    ns("", "v1", "ConfigMap", "configmaps", &["cm"]),
    ns("", "v1", "Secret", "secrets", &[]),
    ns("", "v1", "ServiceAccount", "serviceaccounts", &["sa"]),
    ns("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", &["pvc"]),
    ns("", "v1", "Endpoints", "endpoints", &["ep"]),
    ns("", "v1", "Event", "events", &["ev"]),
    ns("", "v1", "LimitRange", "limitranges", &["limits"]),
    ns("", "v1", "ResourceQuota", "resourcequotas", &["quota"]),
    ns("", "v1", "ReplicationController", "replicationcontrollers", &["rc"]),
    cluster("", "v1", "Namespace", "namespaces", &["ns"]),
    cluster("", "v1", "Node", "nodes", &["no"]),
    cluster("", "v1", "PersistentVolume", "persistentvolumes", &["pv"]),
    // apps/v1
    ns("apps", "v1", "Deployment", "deployments", &["deploy"]),
    ns("apps", "v1", "StatefulSet", "statefulsets", &["sts"]),
    ns("apps", "v1", "DaemonSet", "daemonsets", &["ds"]),
    ns("apps", "v1", "ReplicaSet", "replicasets", &["rs"]),
    ns("apps", "v1", "ControllerRevision", "controllerrevisions", &[]),
    // batch/v1
    ns("batch", "v1", "Job", "jobs", &[]),
    ns("batch", "v1", "CronJob", "cronjobs", &["cj"]),
    // autoscaling
    ns("autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers", &["hpa"]),
    ns("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", &["hpa"]),
    // policy/v1
    ns("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", &["pdb"]),
    // networking.k8s.io/v1
    ns("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", &["netpol"]),
    ns("networking.k8s.io", "v1", "Ingress", "ingresses", &["ing"]),
    cluster("networking.k8s.io", "v1", "IngressClass", "ingressclasses", &[]),
    // rbac.authorization.k8s.io/v1
    ns("rbac.authorization.k8s.io", "v1", "Role", "roles", &[]),
    ns("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", &[]),
    cluster("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", &[]),
    cluster("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", &[]),
    // scheduling, storage
    cluster("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", &["pc"]),
    cluster("storage.k8s.io", "v1", "StorageClass", "storageclasses", &["sc"]),
    // admissionregistration.k8s.io/v1
    cluster("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration", "mutatingwebhookconfigurations", &[]),
    cluster("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration", "validatingwebhookconfigurations", &[]),
    cluster("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicy", "validatingadmissionpolicies", &[]),
    cluster("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicyBinding", "validatingadmissionpolicybindings", &[]),
    // apiextensions.k8s.io/v1
    cluster("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", &["crd", "crds"]),
    // coordination, discovery, events
    ns("coordination.k8s.io", "v1", "Lease", "leases", &[]),
    ns("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", &[]),
    ns("events.k8s.io", "v1", "Event", "events", &["ev"]),
    // Vertical Pod Autoscaler
    ns("autoscaling.k8s.io", "v1", "VerticalPodAutoscaler", "verticalpodautoscalers", &["vpa"]),
    // KEDA
    ns("keda.sh", "v1alpha1", "ScaledObject", "scaledobjects", &["so"]),
    ns("keda.sh", "v1alpha1", "ScaledJob", "scaledjobs", &["sj"]),
    ns("keda.sh", "v1alpha1", "TriggerAuthentication", "triggerauthentications", &["ta", "triggerauth"]),
    cluster("keda.sh", "v1alpha1", "ClusterTriggerAuthentication", "clustertriggerauthentications", &["cta", "clustertriggerauth"]),
    // Prometheus Operator
    ns("monitoring.coreos.com", "v1", "ServiceMonitor", "servicemonitors", &["smon"]),
    ns("monitoring.coreos.com", "v1", "PodMonitor", "podmonitors", &["pmon"]),
    ns("monitoring.coreos.com", "v1", "PrometheusRule", "prometheusrules", &["promrule"]),
    // Knative
    ns("serving.knative.dev", "v1", "Service", "services", &["kservice", "ksvc"]),
    ns("serving.knative.dev", "v1", "Configuration", "configurations", &["config", "cfg"]),
    ns("serving.knative.dev", "v1", "Route", "routes", &["rt"]),
    ns("serving.knative.dev", "v1", "Revision", "revisions", &["rev"]),
    ns("serving.knative.dev", "v1beta1", "DomainMapping", "domainmappings", &["dm"]),
    cluster("networking.internal.knative.dev", "v1alpha1", "ClusterDomainClaim", "clusterdomainclaims", &["cdc"]),
    // cert-manager
    ns("cert-manager.io", "v1", "Certificate", "certificates", &["cert", "certs"]),
    ns("cert-manager.io", "v1", "CertificateRequest", "certificaterequests", &["cr", "crs"]),
    ns("cert-manager.io", "v1", "Issuer", "issuers", &[]),
    cluster("cert-manager.io", "v1", "ClusterIssuer", "clusterissuers", &[]),
    // tether
    ns("tether.dev", "v1alpha1", "AttachedResource", "attachedresources", &["atr"]),
    ns("tether.dev", "v1alpha1", "AppDomain", "appdomains", &["apd"]),
];

/// Every entry of the built-in table (for docs and tests).
pub fn all() -> &'static [BuiltinResource] {
    TABLE
}

/// Splits an apiVersion into group and version: `v1` → (`""`, `v1`), `apps/v1` →
/// (`apps`, `v1`). `None` for anything else (empty, two slashes, empty parts).
fn split_api_version(api_version: &str) -> Option<(&str, &str)> {
    match api_version.split_once('/') {
        None if !api_version.is_empty() => Some(("", api_version)),
        Some((g, v)) if !g.is_empty() && !v.is_empty() && !v.contains('/') => Some((g, v)),
        _ => None,
    }
}

/// Resolves apiVersion/kind to resource plural and scope, as discovery would.
///
/// ```
/// use tether::discovery::builtin::lookup;
/// let hpa = lookup("autoscaling/v2", "HorizontalPodAutoscaler").unwrap();
/// assert_eq!((hpa.plural.as_str(), hpa.namespaced), ("horizontalpodautoscalers", true));
///
/// // Kinds are case-sensitive; the error says what was probably meant.
/// let err = lookup("autoscaling/v2beta2", "horizontalPodAutoscaler").unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "kind \"horizontalPodAutoscaler\" in apiVersion \"autoscaling/v2beta2\" is not in tether's \
///      built-in resource table (used without a cluster); did you mean kind \
///      \"HorizontalPodAutoscaler\" (kinds are case-sensitive) with apiVersion \"autoscaling/v1\" \
///      or \"autoscaling/v2\"?"
/// );
/// ```
pub fn lookup(api_version: &str, kind: &str) -> Result<ResourceInfo, LookupError> {
    if let Some((group, version)) = split_api_version(api_version) {
        if let Some(entry) = find(group, version, kind) {
            return Ok(entry.to_info());
        }
    }
    Err(LookupError::UnknownKind {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        hint: hint(api_version, kind),
    })
}

/// [`lookup`] for an apiVersion already split into group (`""` for the core group) and
/// version, as the resolver has it: the same answer and error, without joining and
/// splitting the apiVersion again on the way in.
pub fn lookup_parts(group: &str, version: &str, kind: &str) -> Result<ResourceInfo, LookupError> {
    // A table entry has no slash in its group or version and a non-empty version, so
    // whatever it matches here, `lookup` of the joined apiVersion matches too; a miss (or an
    // error) is `lookup`'s, word for word.
    match find(group, version, kind) {
        Some(entry) => Ok(entry.to_info()),
        None => lookup(&super::api_version(group, version), kind),
    }
}

/// [`lookup_parts`] answered from one shared copy per table entry, built on first use: the
/// standalone resolver asks on every admission request, and an owned answer is four
/// allocations each time.
pub fn lookup_shared(
    group: &str,
    version: &str,
    kind: &str,
) -> Result<Arc<ResourceInfo>, LookupError> {
    static SHARED: OnceLock<Vec<Arc<ResourceInfo>>> = OnceLock::new();
    match position(group, version, kind) {
        Some(i) => {
            let shared =
                SHARED.get_or_init(|| TABLE.iter().map(|r| Arc::new(r.to_info())).collect());
            Ok(Arc::clone(&shared[i]))
        }
        None => lookup_parts(group, version, kind).map(Arc::new),
    }
}

fn find(group: &str, version: &str, kind: &str) -> Option<&'static BuiltinResource> {
    position(group, version, kind).map(|i| &TABLE[i])
}

/// Index of the entry for `group`/`version`/`kind`, from a hash index built on first use:
/// the standalone resolver asks on every admission request, and a scan compared strings in
/// up to all 62 entries of the table, most of them cold in the CPU's cache.
fn position(group: &str, version: &str, kind: &str) -> Option<usize> {
    type Index =
        HashMap<(&'static str, &'static str, &'static str), usize, foldhash::fast::FixedState>;
    static INDEX: OnceLock<Index> = OnceLock::new();
    let index: &HashMap<(&str, &str, &str), usize, _> = INDEX.get_or_init(|| {
        let mut m = Index::with_capacity_and_hasher(TABLE.len(), Default::default());
        for (i, r) in TABLE.iter().enumerate() {
            // The first entry wins, as the scan it replaces did.
            m.entry((r.group, r.version, r.kind)).or_insert(i);
        }
        m
    });
    index.get(&(group, version, kind)).copied()
}

/// What the user probably meant: entries whose kind equals `kind` ignoring case, or whose
/// plural or short name equals it (people write `hpa` or `deployments` as a kind). Entries in
/// the requested group are preferred, so a wrong version of `autoscaling` suggests the
/// `autoscaling` versions rather than every group with a kind of that name.
fn hint(api_version: &str, kind: &str) -> Option<String> {
    let (group, version) = split_api_version(api_version).unwrap_or(("", ""));
    let similar = |r: &&BuiltinResource| {
        r.kind.eq_ignore_ascii_case(kind)
            || r.plural.eq_ignore_ascii_case(kind)
            || r.short_names.iter().any(|s| s.eq_ignore_ascii_case(kind))
    };
    let candidates: Vec<&BuiltinResource> = {
        let same_group: Vec<_> = TABLE
            .iter()
            .filter(similar)
            .filter(|r| r.group == group)
            .collect();
        if same_group.is_empty() {
            TABLE.iter().filter(similar).collect()
        } else {
            same_group
        }
    };
    let first = candidates.first()?;
    let mut parts = Vec::new();
    if first.kind != kind {
        let why = if first.kind.eq_ignore_ascii_case(kind) {
            "kinds are case-sensitive"
        } else {
            "manifests name the kind, not the resource"
        };
        parts.push(format!("kind {:?} ({why})", first.kind));
    }
    let in_requested_version = candidates
        .iter()
        .any(|r| r.group == group && r.version == version);
    if !in_requested_version {
        let mut versions: Vec<String> = Vec::new();
        for r in &candidates {
            let v = format!("{:?}", r.api_version());
            if !versions.contains(&v) {
                versions.push(v);
            }
        }
        parts.push(format!("apiVersion {}", versions.join(" or ")));
    }
    Some(format!("did you mean {}?", parts.join(" with ")))
}

impl fmt::Display for ResourceInfo {
    /// `horizontalpodautoscalers.autoscaling/v2 (namespaced)`, as in messages that say what
    /// was looked up.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scope = if self.namespaced {
            "namespaced"
        } else {
            "cluster-scoped"
        };
        if self.group.is_empty() {
            write!(f, "{}/{} ({scope})", self.plural, self.version)
        } else {
            write!(
                f,
                "{}.{}/{} ({scope})",
                self.plural, self.group, self.version
            )
        }
    }
}

#[cfg(test)]
mod tests;
