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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::Deserialize;
use serde_json::Value;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessQuery<'a> {
    /// User name, e.g. `alice` or `system:serviceaccount:tether:tether`.
    pub user: &'a str,
    /// All groups of the user, including implicit ones.
    pub groups: &'a [String],
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

/// The answer to an [`AccessQuery`], with a reason fit for a denial message or a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RbacDecision {
    /// Whether some binding grants the request.
    pub allowed: bool,
    /// Which binding and role allowed it, or what was not granted.
    pub reason: String,
}

/// Where in the file an object is: 1-based document number (documents are separated by
/// `---`; a leading `---` opens document 1, and empty documents count), plus the index in
/// `items` when the object is inside a List.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// 1-based YAML document number.
    pub document: usize,
    /// 0-based index in the List's `items`, when inside a List.
    pub item: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.item {
            None => write!(f, "document {}", self.document),
            Some(i) => write!(f, "document {}, items[{i}]", self.document),
        }
    }
}

/// Why an RBAC file could not be loaded. Each variant says where (document, List item), what
/// (kind and name) and, for invalid objects, which field, so the operator can fix the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RbacFileError {
    /// The file is beyond what tether evaluates (nesting depth, aggregation size).
    #[error("RBAC file: {what}; simplify the file")]
    TooLarge {
        /// What limit, with its value.
        what: String,
    },
    /// The text is not YAML (the message carries line and column).
    #[error("RBAC file, document {document}: not valid YAML: {message}")]
    Yaml {
        /// 1-based document number.
        document: usize,
        /// Parser message.
        message: String,
    },
    /// A document (or List item) that is not a mapping.
    #[error(
        "RBAC file, {at}: expected a Kubernetes object (a mapping with apiVersion and kind), \
         found {found}; {ACCEPTED}"
    )]
    NotAnObject {
        /// Where.
        at: Location,
        /// What was found instead (`a sequence`, `a string`, ...).
        found: &'static str,
    },
    /// An object without a `kind`.
    #[error("RBAC file, {at}: missing `kind`; {ACCEPTED}")]
    MissingKind {
        /// Where.
        at: Location,
    },
    /// An object of a kind this file cannot hold.
    #[error(
        "RBAC file, {at}: unsupported kind {kind:?}{}; {ACCEPTED}",
        named(name)
    )]
    UnknownKind {
        /// Where.
        at: Location,
        /// The kind found.
        kind: String,
        /// `metadata.name`, when there is one.
        name: Option<String>,
    },
    /// An RBAC object with a missing, mistyped or invalid field.
    #[error("RBAC file, {at}: {kind} {name:?}: field `{field}`: {message}")]
    InvalidField {
        /// Where.
        at: Location,
        /// Kind of the object.
        kind: String,
        /// `metadata.name` of the object (empty when missing).
        name: String,
        /// Field path, e.g. `rules[0].verbs`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

fn named(name: &Option<String>) -> String {
    match name {
        Some(n) => format!(" (named {n:?})"),
        None => String::new(),
    }
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
    fn allows(&self, q: &AccessQuery<'_>) -> bool {
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

/// One `matchExpressions` requirement.
#[derive(Debug, Clone)]
enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A compiled label selector (aggregation rules).
#[derive(Debug, Clone)]
struct Selector {
    match_labels: Vec<(String, String)>,
    requirements: Vec<Requirement>,
}

impl Selector {
    /// Kubernetes label selector semantics; the empty selector matches everything.
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.requirements.iter().all(|r| match r {
                Requirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
                Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
                Requirement::Exists(k) => labels.contains_key(k),
                Requirement::DoesNotExist(k) => !labels.contains_key(k),
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum RoleKind {
    Role,
    ClusterRole,
}

impl RoleKind {
    fn as_str(self) -> &'static str {
        match self {
            RoleKind::Role => "Role",
            RoleKind::ClusterRole => "ClusterRole",
        }
    }
}

/// A Role or ClusterRole as loaded.
#[derive(Debug)]
struct LoadedRole {
    kind: RoleKind,
    namespace: String, // empty for ClusterRoles
    name: String,
    labels: BTreeMap<String, String>,
    rules: Vec<Rule>,
    aggregation: Option<Vec<Selector>>,
}

/// A resolved subject: a user name (service accounts become their user name) or a group.
#[derive(Debug)]
enum SubjectKey {
    User(String),
    Group(String),
}

/// A RoleBinding or ClusterRoleBinding as loaded.
#[derive(Debug)]
struct LoadedBinding {
    /// `None` for a ClusterRoleBinding.
    namespace: Option<String>,
    name: String,
    role_kind: RoleKind,
    role_name: String,
    subjects: Vec<SubjectKey>,
}

impl LoadedBinding {
    fn describe(&self) -> String {
        match &self.namespace {
            None => format!("ClusterRoleBinding/{}", self.name),
            Some(ns) => format!("RoleBinding/{} in namespace {ns}", self.name),
        }
    }
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
/// let mut q = AccessQuery {
///     user: "alice", groups: &[], verb: "create", group: "autoscaling",
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
    pub fn check(&self, q: &AccessQuery<'_>) -> RbacDecision {
        let mut best: Option<usize> = None;
        let mut any_binding = false;
        let lists = self.by_user.get(q.user).into_iter().chain(
            q.groups
                .iter()
                .filter_map(|g| self.by_group.get(g.as_str())),
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
fn deny_reason(q: &AccessQuery<'_>, any_binding: bool) -> String {
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

/// Accumulates objects across documents; roles and bindings are resolved in `finish` because
/// a binding may come before its role in the file.
#[derive(Default)]
struct Loader {
    roles: Vec<LoadedRole>,
    role_index: HashMap<(RoleKind, String, String), usize>,
    bindings: Vec<LoadedBinding>,
    binding_index: HashMap<(Option<String>, String), usize>,
    warnings: Vec<String>,
    objects: usize,
}

/// Context for field errors of one object.
struct ObjCtx<'a> {
    at: Location,
    kind: &'a str,
    name: &'a str,
}

impl ObjCtx<'_> {
    fn err(&self, field: impl Into<String>, message: impl Into<String>) -> RbacFileError {
        RbacFileError::InvalidField {
            at: self.at,
            kind: self.kind.to_string(),
            name: self.name.to_string(),
            field: field.into(),
            message: message.into(),
        }
    }
}

fn value_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}

impl Loader {
    fn load_document(&mut self, document: usize, value: Value) -> Result<(), RbacFileError> {
        if value.is_null() {
            return Ok(()); // empty document, e.g. a leading or trailing `---`
        }
        let at = Location {
            document,
            item: None,
        };
        let kind = object_kind(at, &value)?;
        let list_item_kind = match kind.as_str() {
            "List" => Some(None),
            "RoleList" => Some(Some("Role")),
            "ClusterRoleList" => Some(Some("ClusterRole")),
            "RoleBindingList" => Some(Some("RoleBinding")),
            "ClusterRoleBindingList" => Some(Some("ClusterRoleBinding")),
            _ => None,
        };
        let Some(default_kind) = list_item_kind else {
            return self.load_object(at, &kind, value);
        };
        let list = ObjCtx {
            at,
            kind: &kind,
            name: "",
        };
        let items = match value.get("items") {
            None | Some(Value::Null) => return Ok(()),
            Some(Value::Array(items)) => items,
            Some(other) => {
                return Err(list.err(
                    "items",
                    format!("expected a sequence, found {}", value_kind(other)),
                ))
            }
        };
        for (i, item) in items.iter().enumerate() {
            let at = Location {
                document,
                item: Some(i),
            };
            let mut item = item.clone();
            if let (Some(default_kind), Value::Object(map)) = (default_kind, &mut item) {
                if !map.contains_key("kind") {
                    map.insert("kind".into(), Value::String(default_kind.into()));
                }
            }
            let item_kind = object_kind(at, &item)?;
            if item_kind.ends_with("List") {
                return Err(RbacFileError::UnknownKind {
                    at,
                    kind: item_kind,
                    name: None,
                });
            }
            self.load_object(at, &item_kind, item)?;
        }
        Ok(())
    }

    fn load_object(&mut self, at: Location, kind: &str, value: Value) -> Result<(), RbacFileError> {
        let name = value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let ctx = ObjCtx {
            at,
            kind,
            name: &name,
        };
        self.objects += 1;
        match value.get("apiVersion") {
            None => {} // API list items carry none; the kind says enough
            Some(Value::String(v)) if v == RBAC_API_VERSION => {}
            Some(other) if is_rbac_kind(kind) => {
                return Err(ctx.err(
                    "apiVersion",
                    format!("unsupported {other}; use \"{RBAC_API_VERSION}\""),
                ))
            }
            Some(_) => {}
        }
        match kind {
            "Role" => {
                let role: Role = typed(&ctx, value)?;
                let namespace = required_namespace(&ctx, role.metadata.namespace.as_deref())?;
                let rules = compile_rules(&ctx, role.rules.as_deref(), true)?;
                self.add_role(LoadedRole {
                    kind: RoleKind::Role,
                    namespace,
                    name: required_name(&ctx)?,
                    labels: role.metadata.labels.unwrap_or_default(),
                    rules,
                    aggregation: None,
                });
            }
            "ClusterRole" => {
                let role: ClusterRole = typed(&ctx, value)?;
                let rules = compile_rules(&ctx, role.rules.as_deref(), false)?;
                let aggregation = match &role.aggregation_rule {
                    None => None,
                    Some(agg) => Some(compile_selectors(
                        &ctx,
                        agg.cluster_role_selectors.as_deref().unwrap_or(&[]),
                    )?),
                };
                self.add_role(LoadedRole {
                    kind: RoleKind::ClusterRole,
                    namespace: String::new(),
                    name: required_name(&ctx)?,
                    labels: role.metadata.labels.unwrap_or_default(),
                    rules,
                    aggregation,
                });
            }
            "RoleBinding" => {
                let b: RoleBinding = typed(&ctx, value)?;
                let namespace = required_namespace(&ctx, b.metadata.namespace.as_deref())?;
                let role_kind = role_ref(
                    &ctx,
                    &b.role_ref.api_group,
                    &b.role_ref.kind,
                    &b.role_ref.name,
                    true,
                )?;
                let subjects = compile_subjects(&ctx, b.subjects.as_deref(), Some(&namespace))?;
                self.add_binding(LoadedBinding {
                    namespace: Some(namespace),
                    name: required_name(&ctx)?,
                    role_kind,
                    role_name: b.role_ref.name,
                    subjects,
                });
            }
            "ClusterRoleBinding" => {
                let b: ClusterRoleBinding = typed(&ctx, value)?;
                let role_kind = role_ref(
                    &ctx,
                    &b.role_ref.api_group,
                    &b.role_ref.kind,
                    &b.role_ref.name,
                    false,
                )?;
                let subjects = compile_subjects(&ctx, b.subjects.as_deref(), None)?;
                self.add_binding(LoadedBinding {
                    namespace: None,
                    name: required_name(&ctx)?,
                    role_kind,
                    role_name: b.role_ref.name,
                    subjects,
                });
            }
            _ => {
                return Err(RbacFileError::UnknownKind {
                    at,
                    kind: kind.to_string(),
                    name: (!name.is_empty()).then_some(name),
                })
            }
        }
        Ok(())
    }

    fn add_role(&mut self, role: LoadedRole) {
        let key = (role.kind, role.namespace.clone(), role.name.clone());
        if let Some(&idx) = self.role_index.get(&key) {
            self.warnings.push(format!(
                "{}/{}{} appears more than once; the last one is used",
                role.kind.as_str(),
                role.name,
                in_ns(&role.namespace)
            ));
            if let Some(slot) = self.roles.get_mut(idx) {
                *slot = role;
            }
        } else {
            self.role_index.insert(key, self.roles.len());
            self.roles.push(role);
        }
    }

    fn add_binding(&mut self, binding: LoadedBinding) {
        let key = (binding.namespace.clone(), binding.name.clone());
        if let Some(&idx) = self.binding_index.get(&key) {
            self.warnings.push(format!(
                "{} appears more than once; the last one is used",
                binding.describe()
            ));
            if let Some(slot) = self.bindings.get_mut(idx) {
                *slot = binding;
            }
        } else {
            self.binding_index.insert(key, self.bindings.len());
            self.bindings.push(binding);
        }
    }

    fn finish(mut self) -> Result<RbacFile, RbacFileError> {
        if self.objects == 0 {
            self.warnings
                .push("the RBAC file holds no objects; every access check will be denied".into());
        }
        let rule_sets = self.aggregate()?;

        // ClusterRoleBindings first, as the RBAC authorizer visits them.
        let order = self
            .bindings
            .iter()
            .filter(|b| b.namespace.is_none())
            .chain(self.bindings.iter().filter(|b| b.namespace.is_some()));
        let mut out = RbacFile {
            rule_sets,
            warnings: self.warnings,
            ..RbacFile::default()
        };
        for b in order {
            let ns = match (b.role_kind, &b.namespace) {
                (RoleKind::Role, Some(ns)) => ns.clone(),
                _ => String::new(),
            };
            let key = (b.role_kind, ns, b.role_name.clone());
            let Some(&role_idx) = self.role_index.get(&key) else {
                out.warnings.push(format!(
                    "{} refers to {}/{}, which is not in the RBAC file{}; it grants nothing",
                    b.describe(),
                    b.role_kind.as_str(),
                    b.role_name,
                    match (b.role_kind, &b.namespace) {
                        (RoleKind::Role, Some(ns)) => format!(" (in namespace {ns})"),
                        _ => String::new(),
                    }
                ));
                continue;
            };
            let idx = out.grants.len();
            out.grants.push(Grant {
                namespace: b.namespace.clone(),
                rules: role_idx,
                label: format!(
                    "{} ({}/{})",
                    b.describe(),
                    b.role_kind.as_str(),
                    b.role_name
                ),
            });
            for s in &b.subjects {
                let (map, key) = match s {
                    SubjectKey::User(u) => (&mut out.by_user, u),
                    SubjectKey::Group(g) => (&mut out.by_group, g),
                };
                let list = map.entry(key.clone()).or_default();
                if list.last() != Some(&idx) {
                    list.push(idx);
                }
            }
        }
        Ok(out)
    }

    /// Effective rules per role index: own rules, or for aggregated ClusterRoles the union of
    /// the rules of every other ClusterRole their selectors match, transitively (an
    /// aggregated role may select another aggregated role), as the aggregation controller
    /// reaches in steady state.
    ///
    /// Linear in the file plus the result (issue 13: the earlier fixed-point loop with
    /// `Vec::contains` was quadratic, 580 KB took over a minute): rules are interned, each
    /// selector finds its candidates through a label index, and new rules flow along the
    /// "selected by" edges from a work list, each (role, rule) pair once.
    fn aggregate(&mut self) -> Result<Vec<Vec<Rule>>, RbacFileError> {
        // Intern rules: equal rules share an id, so sets compare ids, not vectors of strings.
        let mut ids: HashMap<&Rule, usize> = HashMap::new();
        let mut table: Vec<&Rule> = Vec::new();
        let mut own: Vec<Vec<usize>> = Vec::with_capacity(self.roles.len());
        for r in &self.roles {
            own.push(
                r.rules
                    .iter()
                    .map(|rule| {
                        *ids.entry(rule).or_insert_with(|| {
                            table.push(rule);
                            table.len() - 1
                        })
                    })
                    .collect(),
            );
        }
        let cluster_roles: Vec<usize> = (0..self.roles.len())
            .filter(|&i| self.roles[i].kind == RoleKind::ClusterRole)
            .collect();
        // (label key, value) → ClusterRoles carrying it.
        let mut by_label: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
        for &m in &cluster_roles {
            for (k, v) in &self.roles[m].labels {
                by_label.entry((k, v)).or_default().push(m);
            }
        }
        // selected_by[m]: the aggregated roles whose selectors match m.
        let mut selected_by: Vec<Vec<usize>> = vec![Vec::new(); self.roles.len()];
        let mut selected_any = vec![false; self.roles.len()];
        let mut stamp = vec![usize::MAX; self.roles.len()];
        for &a in &cluster_roles {
            let Some(selectors) = self.roles[a].aggregation.as_ref() else {
                continue;
            };
            for sel in selectors {
                // A selector with matchLabels only looks at roles carrying its first label.
                let candidates: &[usize] = match sel.match_labels.first() {
                    Some((k, v)) => by_label
                        .get(&(k.as_str(), v.as_str()))
                        .map_or(&[][..], Vec::as_slice),
                    None => &cluster_roles,
                };
                for &m in candidates {
                    if m == a || stamp[m] == a || !sel.matches(&self.roles[m].labels) {
                        continue;
                    }
                    stamp[m] = a;
                    selected_by[m].push(a);
                    selected_any[a] = true;
                }
            }
        }
        // Propagate: every rule a role has flows to the aggregated roles selecting it.
        let aggregated: Vec<bool> = self.roles.iter().map(|r| r.aggregation.is_some()).collect();
        let mut sets: Vec<Vec<usize>> = own
            .iter()
            .enumerate()
            .map(|(i, o)| if aggregated[i] { Vec::new() } else { o.clone() })
            .collect();
        let mut seen: Vec<HashSet<usize>> = vec![HashSet::new(); self.roles.len()];
        let mut work: Vec<(usize, usize)> = Vec::new();
        for &m in &cluster_roles {
            if !aggregated[m] {
                work.extend(sets[m].iter().map(|&r| (m, r)));
            }
        }
        let mut total = 0usize;
        while let Some((m, r)) = work.pop() {
            for &a in &selected_by[m] {
                if seen[a].insert(r) {
                    total += 1;
                    if total > MAX_AGGREGATED_RULES {
                        return Err(RbacFileError::TooLarge {
                            what: format!(
                                "role aggregation gives more than {MAX_AGGREGATED_RULES} rules in all"
                            ),
                        });
                    }
                    sets[a].push(r);
                    work.push((a, r));
                }
            }
        }
        for &a in &cluster_roles {
            if !aggregated[a] {
                continue;
            }
            let role = &self.roles[a];
            if !selected_any[a] {
                self.warnings.push(format!(
                    "ClusterRole/{} has an aggregationRule that selects no ClusterRole in the \
                     RBAC file; it grants nothing",
                    role.name
                ));
            }
            let dropped = own[a].iter().filter(|r| !seen[a].contains(r)).count();
            if dropped > 0 {
                self.warnings.push(format!(
                    "ClusterRole/{} has an aggregationRule, so its rules are replaced by those of \
                     the ClusterRoles it selects (as the aggregation controller does); {dropped} \
                     rule(s) written in it are ignored",
                    role.name
                ));
            }
        }
        Ok(sets
            .into_iter()
            .map(|set| set.into_iter().map(|r| table[r].clone()).collect())
            .collect())
    }
}

/// Most rules all aggregated ClusterRoles may hold together (each selected rule counted
/// once per role that aggregates it): a bound on the work and memory of aggregation.
pub const MAX_AGGREGATED_RULES: usize = 1_000_000;

fn in_ns(ns: &str) -> String {
    if ns.is_empty() {
        String::new()
    } else {
        format!(" in namespace {ns}")
    }
}

fn object_kind(at: Location, value: &Value) -> Result<String, RbacFileError> {
    let Value::Object(map) = value else {
        return Err(RbacFileError::NotAnObject {
            at,
            found: value_kind(value),
        });
    };
    match map.get("kind") {
        Some(Value::String(k)) if !k.is_empty() => Ok(k.clone()),
        _ => Err(RbacFileError::MissingKind { at }),
    }
}

/// Deserializes into a k8s-openapi type, reporting the path of a mistyped field.
fn typed<T: serde::de::DeserializeOwned>(
    ctx: &ObjCtx<'_>,
    value: Value,
) -> Result<T, RbacFileError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "(top level)".to_string()
        } else {
            path
        };
        ctx.err(field, e.into_inner().to_string())
    })
}

fn required_name(ctx: &ObjCtx<'_>) -> Result<String, RbacFileError> {
    if ctx.name.is_empty() {
        Err(ctx.err("metadata.name", "required"))
    } else {
        Ok(ctx.name.to_string())
    }
}

fn required_namespace(ctx: &ObjCtx<'_>, ns: Option<&str>) -> Result<String, RbacFileError> {
    match ns {
        Some(ns) if !ns.is_empty() => Ok(ns.to_string()),
        _ => Err(ctx.err(
            "metadata.namespace",
            format!(
                "required for a {} (the RBAC file is read without a kubectl context, so there is \
                 no default namespace)",
                ctx.kind
            ),
        )),
    }
}

/// Validates rules as the API server does and keeps the resource rules.
fn compile_rules(
    ctx: &ObjCtx<'_>,
    rules: Option<&[PolicyRule]>,
    namespaced: bool,
) -> Result<Vec<Rule>, RbacFileError> {
    let mut out = Vec::new();
    for (i, r) in rules.unwrap_or(&[]).iter().enumerate() {
        let field = |f: &str| format!("rules[{i}].{f}");
        if r.verbs.is_empty() {
            return Err(ctx.err(field("verbs"), "required: at least one verb, or \"*\""));
        }
        let api_groups = r.api_groups.clone().unwrap_or_default();
        let resources = r.resources.clone().unwrap_or_default();
        let urls = r.non_resource_urls.as_deref().unwrap_or(&[]);
        if !urls.is_empty() {
            if namespaced {
                return Err(ctx.err(
                    field("nonResourceURLs"),
                    "a namespaced Role cannot grant non-resource URLs; use a ClusterRole",
                ));
            }
            if !api_groups.is_empty() || !resources.is_empty() {
                return Err(ctx.err(
                    field("nonResourceURLs"),
                    "cannot be combined with apiGroups or resources; write two rules",
                ));
            }
            continue; // never matches a resource request
        }
        if api_groups.is_empty() {
            return Err(ctx.err(
                field("apiGroups"),
                "required for a resource rule: list the groups, \"\" for the core group, or \"*\"",
            ));
        }
        if resources.is_empty() {
            return Err(ctx.err(
                field("resources"),
                "required for a resource rule: list the resources, or \"*\"",
            ));
        }
        out.push(Rule {
            verbs: r.verbs.clone(),
            api_groups,
            resources,
            resource_names: r.resource_names.clone().unwrap_or_default(),
        });
    }
    Ok(out)
}

fn compile_selectors(
    ctx: &ObjCtx<'_>,
    selectors: &[LabelSelector],
) -> Result<Vec<Selector>, RbacFileError> {
    let mut out = Vec::new();
    for (i, sel) in selectors.iter().enumerate() {
        let mut requirements = Vec::new();
        for (j, e) in sel
            .match_expressions
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            let field = |f: &str| {
                format!("aggregationRule.clusterRoleSelectors[{i}].matchExpressions[{j}].{f}")
            };
            let values = e.values.clone().unwrap_or_default();
            let req = match e.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(ctx.err(
                        field("values"),
                        format!("must be non-empty for operator {}", e.operator),
                    ))
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(ctx.err(
                        field("values"),
                        format!("must be empty for operator {}", e.operator),
                    ))
                }
                "In" => Requirement::In(e.key.clone(), values),
                "NotIn" => Requirement::NotIn(e.key.clone(), values),
                "Exists" => Requirement::Exists(e.key.clone()),
                "DoesNotExist" => Requirement::DoesNotExist(e.key.clone()),
                other => {
                    return Err(ctx.err(
                        field("operator"),
                        format!("unsupported {other:?}; use In, NotIn, Exists or DoesNotExist"),
                    ))
                }
            };
            requirements.push(req);
        }
        out.push(Selector {
            match_labels: sel
                .match_labels
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            requirements,
        });
    }
    Ok(out)
}

fn role_ref(
    ctx: &ObjCtx<'_>,
    api_group: &str,
    kind: &str,
    name: &str,
    namespaced_binding: bool,
) -> Result<RoleKind, RbacFileError> {
    if !api_group.is_empty() && api_group != RBAC_GROUP {
        return Err(ctx.err(
            "roleRef.apiGroup",
            format!("unsupported {api_group:?}; use {RBAC_GROUP:?}"),
        ));
    }
    let role_kind = match (kind, namespaced_binding) {
        ("ClusterRole", _) => RoleKind::ClusterRole,
        ("Role", true) => RoleKind::Role,
        ("Role", false) => {
            return Err(ctx.err(
                "roleRef.kind",
                "a ClusterRoleBinding can only refer to a ClusterRole",
            ))
        }
        (other, true) => {
            return Err(ctx.err(
                "roleRef.kind",
                format!("unsupported {other:?}; use Role or ClusterRole"),
            ))
        }
        (other, false) => {
            return Err(ctx.err(
                "roleRef.kind",
                format!("unsupported {other:?}; use ClusterRole"),
            ))
        }
    };
    if name.is_empty() {
        return Err(ctx.err("roleRef.name", "required"));
    }
    Ok(role_kind)
}

/// Resolves subjects; a service account becomes the user name the API server gives it.
/// `binding_ns` is the RoleBinding's namespace (the default for a service account subject),
/// `None` for a ClusterRoleBinding.
fn compile_subjects(
    ctx: &ObjCtx<'_>,
    subjects: Option<&[Subject]>,
    binding_ns: Option<&str>,
) -> Result<Vec<SubjectKey>, RbacFileError> {
    let mut out = Vec::new();
    for (i, s) in subjects.unwrap_or(&[]).iter().enumerate() {
        let field = |f: &str| format!("subjects[{i}].{f}");
        let api_group = s.api_group.as_deref().unwrap_or("");
        if s.name.is_empty() {
            return Err(ctx.err(field("name"), "required"));
        }
        let key = match s.kind.as_str() {
            "User" | "Group" => {
                if !api_group.is_empty() && api_group != RBAC_GROUP {
                    return Err(ctx.err(
                        field("apiGroup"),
                        format!(
                            "unsupported {api_group:?} for a {}; use {RBAC_GROUP:?}",
                            s.kind
                        ),
                    ));
                }
                if s.kind == "User" {
                    SubjectKey::User(s.name.clone())
                } else {
                    SubjectKey::Group(s.name.clone())
                }
            }
            "ServiceAccount" => {
                if !api_group.is_empty() {
                    return Err(ctx.err(
                        field("apiGroup"),
                        format!("must be empty for a ServiceAccount, found {api_group:?}"),
                    ));
                }
                let ns = match (s.namespace.as_deref().filter(|n| !n.is_empty()), binding_ns) {
                    (Some(ns), _) => ns,
                    (None, Some(ns)) => ns,
                    (None, None) => {
                        return Err(ctx.err(
                            field("namespace"),
                            "required for a ServiceAccount subject of a ClusterRoleBinding",
                        ))
                    }
                };
                SubjectKey::User(format!("system:serviceaccount:{ns}:{}", s.name))
            }
            "" => return Err(ctx.err(field("kind"), "required: User, Group or ServiceAccount")),
            other => {
                return Err(ctx.err(
                    field("kind"),
                    format!("unsupported {other:?}; use User, Group or ServiceAccount"),
                ))
            }
        };
        out.push(key);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
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
        for (what, rule, query, want) in cases {
            let rbac =
                RbacFile::parse(&cluster_wide(rule)).unwrap_or_else(|e| panic!("{what}: {e}"));
            let d = rbac.check(&query);
            assert_eq!(d.allowed, want, "{what}: {}", d.reason);
            if want {
                assert_eq!(
                    d.reason, "allowed by ClusterRoleBinding/b (ClusterRole/r)",
                    "{what}"
                );
            }
        }
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
        let role_payments =
            format!("{HDR_R}metadata: {{name: edit, namespace: payments}}\n{rule}\n");
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
        for (name, query, want, reason) in cases {
            let d = file(name).check(&query);
            assert_eq!(
                d,
                RbacDecision {
                    allowed: want,
                    reason: reason.into()
                },
                "{name}"
            );
        }
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
        for (selector, (want_hpa, want_pdb)) in cases {
            let rbac = RbacFile::parse(&aggregated_file(selector, "")).unwrap();
            assert_eq!(rbac.check(&hpa).allowed, want_hpa, "{selector} hpa");
            assert_eq!(rbac.check(&pdb).allowed, want_pdb, "{selector} pdb");
            if want_hpa {
                assert_eq!(
                    rbac.check(&hpa).reason,
                    "allowed by ClusterRoleBinding/b (ClusterRole/agg)"
                );
            }
        }
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
        for (yaml, want) in cases {
            let err = RbacFile::parse(&yaml).map(|_| ()).unwrap_err().to_string();
            if want.ends_with(": ") {
                assert!(err.starts_with(want), "{err}");
            } else {
                assert_eq!(err, want, "{yaml}");
            }
        }
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
}
