//! Local RBAC evaluation for offline mode (SPEC 7: `--standalone --rbac-file`, `tether review`,
//! `tether check`).
//!
//! Without a cluster there is no SubjectAccessReview to ask, so the access checks of SPEC 5.1
//! items 8 and 10 and 5.4 item 4 are answered from a YAML file of Roles, ClusterRoles,
//! RoleBindings and ClusterRoleBindings, with the same semantics as the Kubernetes RBAC
//! authorizer: the answer a CI pipeline gets offline should be the answer the cluster gives.
//!
//! The file is parsed, validated and indexed once ([`RbacFile::parse`]); a query
//! ([`RbacFile::check`]) does no YAML work: it looks up the bindings of the user and of each
//! group in hash maps and walks only those, because in standalone mode it runs for every
//! admission request.
//!
//! Choices where Kubernetes leaves room (written down as SPEC asks):
//! - Objects the API server would reject (a rule without verbs, a resource rule without
//!   apiGroups or resources, a subject of an unknown kind, a Role without a namespace, ...) are
//!   parse errors: such an object cannot exist in a cluster, so the file is an operator mistake.
//!   There is no kubectl context here, so a Role or RoleBinding must name its namespace.
//! - A binding whose roleRef names a role missing from the file is *not* an error (Kubernetes
//!   accepts it too); it grants nothing and is listed in [`RbacFile::warnings`].
//! - The same object twice (same kind, namespace and name): the later one wins, as with
//!   `kubectl apply -f`, and a warning says so.
//! - A ServiceAccount subject without a namespace in a RoleBinding means the binding's
//!   namespace (what the RBAC authorizer does); in a ClusterRoleBinding it is an error.
//! - Aggregated ClusterRoles get exactly the rules of the ClusterRoles their selectors match
//!   (transitively, like the aggregation controller in steady state); rules written in the
//!   aggregated role itself are replaced, as the controller would replace them, with a warning
//!   when that drops something. `matchLabels` and all four `matchExpressions` operators
//!   (`In`, `NotIn`, `Exists`, `DoesNotExist`) are supported; an empty selector matches every
//!   ClusterRole.
//! - Only RBAC is evaluated: the `system:masters` group, which a real API server lets through
//!   before RBAC is consulted, gets nothing unless the file binds it.
//! - `nonResourceURLs` rules are kept out of resource checks (they never match a resource).
//! - Besides `kind: List`, the typed lists `kubectl`/the API produce (`RoleList`,
//!   `ClusterRoleList`, `RoleBindingList`, `ClusterRoleBindingList`) are accepted; their items
//!   may omit `kind`/`apiVersion`, as API list responses do.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

mod aggregate;
mod error;
mod load;
#[cfg(test)]
mod tests;

pub use aggregate::MAX_AGGREGATED_RULES;
pub use error::{Location, RbacFileError};
use load::Loader;

/// The API group of every RBAC object and of `User`/`Group` subjects and role refs.
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// The only RBAC version a current API server serves (v1beta1 was removed in 1.22).
const RBAC_API_VERSION: &str = "rbac.authorization.k8s.io/v1";

fn is_rbac_kind(kind: &str) -> bool {
    matches!(
        kind,
        "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding"
    )
}

/// What the file may contain, quoted in every "wrong kind" error.
const ACCEPTED: &str = "accepted kinds: Role, ClusterRole, RoleBinding, ClusterRoleBinding \
(rbac.authorization.k8s.io/v1), and List of them";

/// One access question, the offline equivalent of a SubjectAccessReview's `resourceAttributes`
/// plus the user.
///
/// `groups` must already contain the implicit groups the API server would add (for example
/// `system:authenticated`, or `system:serviceaccounts` for a service account): RBAC matches a
/// group subject only against groups that are actually listed here.
///
/// ```
/// use tether::authz::rbac_file::AccessQuery;
/// let groups = vec!["system:authenticated".to_string()];
/// // "may alice create HPAs in namespace payments?" (a create has no name yet)
/// let q = AccessQuery {
///     user: "alice",
///     groups: &groups,
///     verb: "create",
///     group: "autoscaling",
///     resource: "horizontalpodautoscalers",
///     subresource: None,
///     namespace: Some("payments"),
///     name: None,
/// };
/// assert_eq!(q.verb, "create");
/// ```
#[derive(Debug, PartialEq, Eq)]
pub struct AccessQuery<'a, G = String> {
    /// User name, e.g. `alice` or `system:serviceaccount:tether:tether`.
    pub user: &'a str,
    /// All groups of the user, including implicit ones: `String`s, or the `Cow`s of a
    /// request's `userInfo` as they were parsed.
    pub groups: &'a [G],
    /// Kubernetes verb: `create`, `update`, `patch`, `get`, `delete`, ...
    pub verb: &'a str,
    /// API group; `""` for the core group.
    pub group: &'a str,
    /// Resource plural, e.g. `deployments`.
    pub resource: &'a str,
    /// Subresource, e.g. `status`; `None` (or `Some("")`) for the resource itself.
    pub subresource: Option<&'a str>,
    /// Namespace; `None` for a cluster-scoped request.
    pub namespace: Option<&'a str>,
    /// Object name; `None` when there is none (a create, a list).
    pub name: Option<&'a str>,
}

// By hand: derived, they would ask `G: Clone`, which a borrowed slice does not need.
impl<G> Clone for AccessQuery<'_, G> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<G> Copy for AccessQuery<'_, G> {}

/// The answer to an [`AccessQuery`], with a reason fit for a denial message or a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RbacDecision {
    /// Whether some binding grants the request.
    pub allowed: bool,
    /// Which binding and role allowed it, or what was not granted.
    pub reason: String,
}

/// A resource rule, reduced to what matching needs. `nonResourceURLs`-only rules are dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Rule {
    verbs: Vec<String>,
    api_groups: Vec<String>,
    resources: Vec<String>,
    resource_names: Vec<String>,
}

impl Rule {
    /// Kubernetes `RuleAllows` for a resource request.
    fn allows<G>(&self, q: &AccessQuery<'_, G>) -> bool {
        contains_or_star(&self.verbs, q.verb)
            && contains_or_star(&self.api_groups, q.group)
            && self.resource_matches(q.resource, q.subresource.filter(|s| !s.is_empty()))
            && (self.resource_names.is_empty() || {
                let name = q.name.unwrap_or("");
                self.resource_names.iter().any(|n| n == name)
            })
    }

    /// Kubernetes `ResourceMatches`: `*` matches everything (subresources too),
    /// `res/sub` matches exactly, `*/sub` matches that subresource of any resource. `pods` does
    /// not match `pods/log`.
    fn resource_matches(&self, resource: &str, subresource: Option<&str>) -> bool {
        self.resources.iter().any(|r| {
            if r == "*" {
                return true;
            }
            match subresource {
                None => r == resource,
                Some(sub) => match r.split_once('/') {
                    Some((res, s)) => s == sub && (res == resource || res == "*"),
                    None => false,
                },
            }
        })
    }
}

fn contains_or_star(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == "*" || v == value)
}

/// What a binding grants, resolved at load time.
#[derive(Debug, Clone)]
struct Grant {
    /// `None`: every namespace and cluster-scoped requests (ClusterRoleBinding).
    namespace: Option<String>,
    /// Index into `RbacFile::rule_sets`.
    rules: usize,
    /// `ClusterRoleBinding/x (ClusterRole/y)`, for the reason.
    label: String,
}

/// An RBAC file, parsed and indexed for fast [`check`](RbacFile::check)s.
///
/// ```
/// use tether::authz::rbac_file::{AccessQuery, RbacFile};
/// let rbac = RbacFile::parse(
///     r#"
/// apiVersion: rbac.authorization.k8s.io/v1
/// kind: ClusterRole
/// metadata: {name: hpa-editor}
/// rules:
/// - {apiGroups: [autoscaling], resources: [horizontalpodautoscalers], verbs: [create, update]}
/// ---
/// apiVersion: rbac.authorization.k8s.io/v1
/// kind: RoleBinding
/// metadata: {name: alice-hpa, namespace: payments}
/// roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: hpa-editor}
/// subjects: [{kind: User, name: alice}]
/// "#,
/// )
/// .unwrap();
/// let no_groups: &[String] = &[];
/// let mut q = AccessQuery {
///     user: "alice", groups: no_groups, verb: "create", group: "autoscaling",
///     resource: "horizontalpodautoscalers", subresource: None,
///     namespace: Some("payments"), name: None,
/// };
/// let d = rbac.check(&q);
/// assert!(d.allowed);
/// assert_eq!(d.reason, "allowed by RoleBinding/alice-hpa in namespace payments (ClusterRole/hpa-editor)");
/// // A RoleBinding grants a ClusterRole's rules only in its own namespace.
/// q.namespace = Some("billing");
/// assert_eq!(
///     rbac.check(&q).reason,
///     "no rule grants create on autoscaling/horizontalpodautoscalers in namespace billing"
/// );
/// ```
#[derive(Debug, Clone, Default)]
pub struct RbacFile {
    /// Effective rules per role (aggregation applied), shared by every grant of that role.
    rule_sets: Vec<Vec<Rule>>,
    /// ClusterRoleBinding grants first, then RoleBinding grants, each in file order: the
    /// order the RBAC authorizer visits them, so the reason names the same binding.
    grants: Vec<Grant>,
    /// User name (service accounts as `system:serviceaccount:<ns>:<name>`) → grant indices,
    /// ascending.
    by_user: HashMap<String, Vec<usize>>,
    /// Group name → grant indices, ascending.
    by_group: HashMap<String, Vec<usize>>,
    warnings: Vec<String>,
}

impl RbacFile {
    /// Parses a multi-document YAML RBAC file, validates every object as the API server would,
    /// resolves role references and aggregation, and indexes the grants by subject.
    ///
    /// Errors name the document, the kind and name of the object and the field:
    ///
    /// ```
    /// use tether::authz::rbac_file::RbacFile;
    /// let err = RbacFile::parse("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n").unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "RBAC file, document 1: unsupported kind \"ConfigMap\" (named \"x\"); accepted kinds: \
    ///      Role, ClusterRole, RoleBinding, ClusterRoleBinding (rbac.authorization.k8s.io/v1), \
    ///      and List of them"
    /// );
    /// ```
    pub fn parse(yaml: &str) -> Result<RbacFile, RbacFileError> {
        // The YAML parser is quadratic in flow nesting depth; refuse deep input first.
        crate::budget::yaml_flow_depth(yaml, crate::budget::MAX_YAML_DEPTH).map_err(|e| {
            RbacFileError::TooLarge {
                what: e.to_string(),
            }
        })?;
        let mut loader = Loader::default();
        for (i, doc) in serde_yaml_ng::Deserializer::from_str(yaml).enumerate() {
            let document = i + 1;
            let value = Value::deserialize(doc).map_err(|e| RbacFileError::Yaml {
                document,
                message: e.to_string(),
            })?;
            loader.load_document(document, value)?;
        }
        loader.finish()
    }

    /// Non-fatal findings for the operator, one line each: bindings to roles that are not in
    /// the file (they grant nothing, as in Kubernetes), duplicate objects, aggregation that
    /// drops or selects nothing, an empty file.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Answers one access question with Kubernetes RBAC semantics: allowed when any binding
    /// that names the user, the user's service account identity or one of `groups`, and that
    /// applies to the namespace, refers to a role with a rule matching the request.
    pub fn check<G: AsRef<str>>(&self, q: &AccessQuery<'_, G>) -> RbacDecision {
        let mut best: Option<usize> = None;
        let mut any_binding = false;
        let lists = self.by_user.get(q.user).into_iter().chain(
            q.groups
                .iter()
                .filter_map(|g| self.by_group.get(g.as_ref())),
        );
        for list in lists {
            any_binding = true;
            for &idx in list {
                if best.is_some_and(|b| b <= idx) {
                    break; // lists are ascending; nothing earlier left in this one
                }
                let Some(grant) = self.grants.get(idx) else {
                    continue;
                };
                let in_scope = match &grant.namespace {
                    None => true,
                    Some(ns) => q.namespace == Some(ns.as_str()),
                };
                if in_scope
                    && self
                        .rule_sets
                        .get(grant.rules)
                        .is_some_and(|rules| rules.iter().any(|r| r.allows(q)))
                {
                    best = Some(idx);
                }
            }
        }
        if let Some(grant) = best.and_then(|b| self.grants.get(b)) {
            return RbacDecision {
                allowed: true,
                reason: format!("allowed by {}", grant.label),
            };
        }
        RbacDecision {
            allowed: false,
            reason: deny_reason(q, any_binding),
        }
    }
}

/// `no rule grants create on autoscaling/horizontalpodautoscalers in namespace payments`.
fn deny_reason<G>(q: &AccessQuery<'_, G>, any_binding: bool) -> String {
    let mut s = format!("no rule grants {} on ", q.verb);
    if !q.group.is_empty() {
        s.push_str(q.group);
        s.push('/');
    }
    s.push_str(q.resource);
    if let Some(sub) = q.subresource.filter(|s| !s.is_empty()) {
        s.push('/');
        s.push_str(sub);
    }
    if let Some(name) = q.name {
        s.push_str(&format!(" named {name:?}"));
    }
    match q.namespace {
        Some(ns) => s.push_str(&format!(" in namespace {ns}")),
        None => s.push_str(" cluster-wide"),
    }
    if !any_binding {
        s.push_str(&format!(
            "; no binding in the RBAC file names user {:?} or its groups",
            q.user
        ));
    }
    s
}
