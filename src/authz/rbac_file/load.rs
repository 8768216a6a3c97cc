//! Loading: YAML documents and Lists into validated roles and bindings, then the indexed
//! [`RbacFile`](super::RbacFile). Aggregation is in `aggregate`.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject,
};
use serde_json::Value;

use super::aggregate::{compile_selectors, Selector};
use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum RoleKind {
    Role,
    ClusterRole,
}

impl RoleKind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            RoleKind::Role => "Role",
            RoleKind::ClusterRole => "ClusterRole",
        }
    }
}

/// A Role or ClusterRole as loaded.
#[derive(Debug)]
pub(super) struct LoadedRole {
    pub(super) kind: RoleKind,
    pub(super) namespace: String, // empty for ClusterRoles
    pub(super) name: String,
    pub(super) labels: BTreeMap<String, String>,
    pub(super) rules: Vec<Rule>,
    pub(super) aggregation: Option<Vec<Selector>>,
}

/// A resolved subject: a user name (service accounts become their user name) or a group.
#[derive(Debug)]
pub(super) enum SubjectKey {
    User(String),
    Group(String),
}

/// A RoleBinding or ClusterRoleBinding as loaded.
#[derive(Debug)]
pub(super) struct LoadedBinding {
    /// `None` for a ClusterRoleBinding.
    pub(super) namespace: Option<String>,
    pub(super) name: String,
    pub(super) role_kind: RoleKind,
    pub(super) role_name: String,
    pub(super) subjects: Vec<SubjectKey>,
}

impl LoadedBinding {
    pub(super) fn describe(&self) -> String {
        match &self.namespace {
            None => format!("ClusterRoleBinding/{}", self.name),
            Some(ns) => format!("RoleBinding/{} in namespace {ns}", self.name),
        }
    }
}

/// Accumulates objects across documents; roles and bindings are resolved in `finish` because
/// a binding may come before its role in the file.
#[derive(Default)]
pub(super) struct Loader {
    pub(super) roles: Vec<LoadedRole>,
    pub(super) role_index: HashMap<(RoleKind, String, String), usize>,
    pub(super) bindings: Vec<LoadedBinding>,
    pub(super) binding_index: HashMap<(Option<String>, String), usize>,
    pub(super) warnings: Vec<String>,
    pub(super) objects: usize,
}

/// Context for field errors of one object.
pub(super) struct ObjCtx<'a> {
    pub(super) at: Location,
    pub(super) kind: &'a str,
    pub(super) name: &'a str,
}

impl ObjCtx<'_> {
    pub(super) fn err(
        &self,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> RbacFileError {
        RbacFileError::InvalidField {
            at: self.at,
            kind: self.kind.to_string(),
            name: self.name.to_string(),
            field: field.into(),
            message: message.into(),
        }
    }
}

pub(super) fn value_kind(v: &Value) -> &'static str {
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
    pub(super) fn load_document(
        &mut self,
        document: usize,
        value: Value,
    ) -> Result<(), RbacFileError> {
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

    pub(super) fn finish(mut self) -> Result<RbacFile, RbacFileError> {
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
}

pub(super) fn in_ns(ns: &str) -> String {
    if ns.is_empty() {
        String::new()
    } else {
        format!(" in namespace {ns}")
    }
}

pub(super) fn object_kind(at: Location, value: &Value) -> Result<String, RbacFileError> {
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
pub(super) fn typed<T: serde::de::DeserializeOwned>(
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

pub(super) fn required_name(ctx: &ObjCtx<'_>) -> Result<String, RbacFileError> {
    if ctx.name.is_empty() {
        Err(ctx.err("metadata.name", "required"))
    } else {
        Ok(ctx.name.to_string())
    }
}

pub(super) fn required_namespace(
    ctx: &ObjCtx<'_>,
    ns: Option<&str>,
) -> Result<String, RbacFileError> {
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
pub(super) fn compile_rules(
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

pub(super) fn role_ref(
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
pub(super) fn compile_subjects(
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
