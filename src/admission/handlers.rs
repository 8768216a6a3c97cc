//! Routing by `request.kind` to the handler for that kind, and the handlers themselves: they
//! gather what the pure rules in `policy` need (discovery, access reviews, Deployments) and
//! turn the rules' violations into a [`Decision`].

use std::borrow::Cow;
use std::sync::Arc;

use crate::borrowed_json::Value;
use kube::core::admission::Operation;

use super::review::AdmissionRequest;
use super::{Decision, Webhook};
use crate::appdomains::DomainHolders;
use crate::authz::cache::CachedReviewer;
use crate::authz::{AccessDecision, AuthzError, Held, Identity, ResourceAttributes, Role};
use crate::discovery::{api_version, KindResolver, ResolveError, ResourceInfo};
use crate::policy::appdomain::{self, DomainSettings, Holder, Outcome};
use crate::policy::rbac_escalation::{self, EscalationCheck};
use crate::policy::{self, attached, plain, KindPolicy, Violation};
use crate::stamp::{KeyRing, Subject, STAMP_ANNOTATION};
use crate::workloads::{DeploymentSelectors, Lookup};

/// The per-kind handlers and what they consult.
pub struct Handlers {
    pub kinds: KindPolicy,
    pub resolver: Arc<dyn KindResolver>,
    pub reviewer: Arc<CachedReviewer>,
    /// tether's own service account (SPEC 5.1 item 8).
    pub tether: Identity<'static>,
    pub deployments: Arc<dyn DeploymentSelectors>,
    pub domains: DomainSettings,
    pub appdomains: Arc<dyn DomainHolders>,
    /// Admission-stamp keys (cluster mode): the mutating webhook stamps what it admits, and
    /// the controller acts only on stamped objects.
    pub stamps: Option<Arc<KeyRing>>,
}

pub use crate::policy::attached::TETHER_VERBS;

impl Handlers {
    pub async fn decide(&self, webhook: Webhook, req: &AdmissionRequest<'_>) -> Decision {
        match (webhook, &*req.kind.group, &*req.kind.kind) {
            (Webhook::Validate, "tether.dev", "AttachedResource") => {
                self.validate_attached(req).await
            }
            (Webhook::Mutate, "tether.dev", "AttachedResource") => self.mutate_attached(req),
            (Webhook::Validate, "tether.dev", "AppDomain") => self.validate_appdomain(req).await,
            (Webhook::Mutate, "tether.dev", "AppDomain") => self.mutate_appdomain(req),
            (Webhook::Mutate, _, _) if has_target_label(req) => self.mutate_plain(req),
            // A kind tether does not handle was routed to us: allow it unchanged (the webhook
            // configuration decides what reaches us; this only happens when it is too broad).
            _ => Decision::allow("unhandled_kind"),
        }
    }

    /// SPEC 5.1.
    async fn validate_attached(&self, req: &AdmissionRequest<'_>) -> Decision {
        let ns = req.namespace.as_deref().unwrap_or_default();
        if matches!(req.operation, Operation::Delete) {
            return self.validate_attached_delete(req, ns).await;
        }
        let Some(obj) = req.object.as_ref() else {
            return Decision::malformed(
                "missing_object",
                "request.object: missing; the API server sends the object on CREATE and UPDATE",
            );
        };
        let is_update = matches!(req.operation, Operation::Update);
        let mut violations = Vec::new();
        if is_update {
            let Some(old) = req.old_object.as_ref() else {
                return Decision::malformed(
                    "missing_object",
                    "request.oldObject: missing; the API server sends it on UPDATE",
                );
            };
            violations.extend(attached::validate_update(old, obj));
            // An update that leaves spec alone (labels, finalizers, the controller's own
            // bookkeeping, deletion) attaches nothing new: re-checking it against policy that
            // changed since would only make the object impossible to clean up. With stamps,
            // only an object that was admitted before (valid stamp) or is being deleted skips
            // the checks: the mutating webhook stamps this update, so an object that was never
            // checked (a namespace the webhooks skipped, an outage under Ignore) gets the full
            // review here first.
            if violations.is_empty()
                && old.get("spec") == obj.get("spec")
                && (self.was_admitted(old, ns) || is_deleting(old))
            {
                return Decision::allow("spec_unchanged");
            }
        }
        let spec = obj.get("spec");
        violations.extend(attached::validate_spec(spec, &self.kinds));
        // Rule 7: only when apiVersion/kind parsed; discovery of a malformed kind means nothing.
        let mut resource = None;
        if let Some(gvk) = spec.and_then(attached::object_gvk) {
            match self.resolver.resolve(gvk.group, gvk.version, gvk.kind).await {
                Ok(info) if info.namespaced => resource = Some(info),
                Ok(info) => violations.push(Violation::forbidden(
                    "spec.object.kind",
                    format!(
                        "{} ({}{}) is cluster-scoped; only namespaced kinds can be attached",
                        gvk.kind,
                        info.plural,
                        if info.group.is_empty() { String::new() } else { format!(".{}", info.group) }
                    ),
                )),
                Err(ResolveError::Unknown(msg)) => {
                    violations.push(Violation::malformed("spec.object.kind", msg))
                }
                Err(e @ ResolveError::Failed { .. }) => {
                    return Decision::internal(
                        "discovery_failed",
                        format!(
                            "spec.object.kind: cannot resolve {} {:?}: {e}; tether fails closed, try again",
                            api_version(gvk.group, gvk.version),
                            gvk.kind
                        ),
                    )
                }
            }
        }
        // RBAC kinds (attachable only after an explicit opt-in): what the API server would
        // check against the creator, which would be tether.
        let mut escalation = None;
        if let (Some(info), Some(object)) = (&resource, spec.and_then(|s| s.get("object"))) {
            match rbac_escalation::escalation_check(&info.group, &info.kind, object) {
                Ok(check) => escalation = check,
                Err(vs) => violations.extend(vs),
            }
        }
        if !violations.is_empty() {
            return deny_violations(&violations);
        }
        let Some(resource) = resource else {
            return Decision::malformed("malformed_object", "spec.object: apiVersion/kind missing");
        };
        // Rule 8: the user may create/update that resource; tether may manage it.
        let user_verb = if is_update { "update" } else { "create" };
        let user = identity_of(req);
        let mut checks: Vec<(Role, &Identity<'_>, ResourceAttributes<'_>)> =
            Vec::with_capacity(1 + TETHER_VERBS.len());
        checks.push((Role::User, &user, attrs(user_verb, &resource, ns)));
        for verb in TETHER_VERBS {
            checks.push((Role::Tether, &self.tether, attrs(verb, &resource, ns)));
        }
        let decision = self.run_access_checks(&checks).await;
        match escalation {
            Some(check) if decision.allowed => {
                self.check_escalation(&user, &resource.kind, ns, check)
                    .await
            }
            _ => decision,
        }
    }

    /// The user may create what an attached Role grants or a RoleBinding binds, by
    /// Kubernetes' own rules ([`rbac_escalation`]).
    async fn check_escalation(
        &self,
        user: &Identity<'_>,
        kind: &str,
        ns: &str,
        check: EscalationCheck,
    ) -> Decision {
        let rbac = |verb: &str, resource: &str, name: Option<&str>| ResourceAttributes {
            verb: verb.to_string().into(),
            group: rbac_escalation::RBAC_GROUP.into(),
            version: "v1".into(),
            resource: resource.to_string().into(),
            subresource: None,
            namespace: Some(ns.into()),
            name: name.map(|n| n.to_string().into()),
        };
        let (shortcut, grants, too_many) = match check {
            EscalationCheck::Bind {
                role_resource,
                role_name,
            } => {
                let a = rbac("bind", &role_resource, Some(&role_name));
                return match self.reviewer.review(Role::User, user, &a).await {
                    Ok(AccessDecision { allowed: true, .. }) => Decision::allow("allowed"),
                    Ok(_) => Decision::forbidden(
                        "escalation_denied",
                        format!(
                            "spec.object.roleRef: {} may not {a}, which Kubernetes requires \
                             to create this {kind}; tether creates the copies with its own \
                             account, so it checks the rule for you: ask for the bind verb on \
                             that role (holding the role's permissions is not accepted instead)",
                            who(Role::User, user)
                        ),
                    ),
                    Err(e) => Decision::internal(
                        "access_review_failed",
                        review_failed(Role::User, user, &a, &e),
                    ),
                };
            }
            EscalationCheck::Role { grants, too_many } => {
                (rbac("escalate", "roles", None), grants, too_many)
            }
        };
        match self.reviewer.review(Role::User, user, &shortcut).await {
            Ok(AccessDecision { allowed: true, .. }) => return Decision::allow("allowed"),
            Ok(_) => {}
            Err(e) => {
                return Decision::internal(
                    "access_review_failed",
                    review_failed(Role::User, user, &shortcut, &e),
                )
            }
        }
        if let Some(n) = too_many {
            return Decision::forbidden(
                "escalation_denied",
                format!(
                    "spec.object.rules: this {kind} grants {n} permissions, more than the {} \
                     tether checks one by one, and {} may not {shortcut}; split the {kind}, or \
                     ask for the escalate verb on roles",
                    rbac_escalation::MAX_GRANTS,
                    who(Role::User, user)
                ),
            );
        }
        let asked: Vec<ResourceAttributes> = grants
            .into_iter()
            .map(|g| ResourceAttributes {
                verb: g.verb.into(),
                group: g.group.into(),
                version: "".into(),
                resource: g.resource.into(),
                subresource: g.subresource.map(Into::into),
                namespace: Some(ns.into()),
                name: g.name.map(Into::into),
            })
            .collect();
        let answers = futures::future::join_all(
            asked
                .iter()
                .map(|a| self.reviewer.review(Role::User, user, a)),
        )
        .await;
        let mut missing = Vec::new();
        for (a, answer) in asked.iter().zip(answers) {
            match answer {
                Ok(AccessDecision { allowed: true, .. }) => {}
                Ok(_) => missing.push(a.to_string()),
                Err(e) => {
                    return Decision::internal(
                        "access_review_failed",
                        review_failed(Role::User, user, a, &e),
                    )
                }
            }
        }
        if missing.is_empty() {
            return Decision::allow("allowed");
        }
        const SHOWN: usize = 5;
        let more = missing.len().saturating_sub(SHOWN);
        missing.truncate(SHOWN);
        let more = if more > 0 {
            format!(" …and {more} more")
        } else {
            String::new()
        };
        Decision::forbidden(
            "escalation_denied",
            format!(
                "spec.object.rules: this {kind} grants permissions {} does not hold ({}{more}), \
                 and it may not {shortcut}; Kubernetes requires one or the other to create a \
                 {kind}, and tether creates the copies with its own account, so it checks the \
                 rule for you: attach a {kind} within your own permissions, or ask for the \
                 escalate verb on roles",
                who(Role::User, user),
                missing.join("; ")
            ),
        )
    }

    /// SPEC 5.1 item 10: the user may delete the attached kind in the namespace.
    async fn validate_attached_delete(&self, req: &AdmissionRequest<'_>, ns: &str) -> Decision {
        let Some(old) = req.old_object.as_ref() else {
            return Decision::malformed(
                "missing_object",
                "request.oldObject: missing; the API server sends it on DELETE",
            );
        };
        let Some(gvk) = old.get("spec").and_then(attached::object_gvk) else {
            // Nothing valid was ever attached by this object; deleting it removes nothing.
            return Decision::allow("delete_nothing_attached");
        };
        let resource = match self
            .resolver
            .resolve(gvk.group, gvk.version, gvk.kind)
            .await
        {
            Ok(info) => info,
            // The kind is gone from the cluster, so no copies of it can exist: allow, or the
            // AttachedResource could never be deleted.
            Err(ResolveError::Unknown(_)) => {
                return Decision::allow("delete_kind_gone").with_warnings(vec![format!(
                    "tether: {} {} is no longer served; no copies to delete",
                    api_version(gvk.group, gvk.version),
                    gvk.kind
                )])
            }
            Err(e) => {
                return Decision::internal(
                    "discovery_failed",
                    format!("spec.object.kind: {e}; tether fails closed, try again"),
                )
            }
        };
        let user = identity_of(req);
        self.run_access_checks(&[(Role::User, &user, attrs("delete", &resource, ns))])
            .await
    }

    async fn run_access_checks(
        &self,
        checks: &[(Role, &Identity<'_>, ResourceAttributes<'_>)],
    ) -> Decision {
        // Answers at hand (cached, or evaluated locally) first, without a future each; the
        // rest are asked all at once, so the user's and tether's reviews still overlap.
        let mut answers = self.reviewer.review_all_now(checks);
        if answers.iter().any(Option::is_none) {
            let asked = futures::future::join_all(
                checks
                    .iter()
                    .zip(&answers)
                    .filter(|(_, now)| now.is_none())
                    .map(|((role, who, a), _)| self.reviewer.review(*role, who, a)),
            )
            .await;
            let mut asked = asked.into_iter();
            for slot in answers.iter_mut().filter(|now| now.is_none()) {
                *slot = asked.next();
            }
        }
        let mut denied = Vec::new();
        let mut failed = Vec::new();
        for ((role, who, a), answer) in checks.iter().zip(answers) {
            // Every slot was filled above; an empty one fails closed all the same.
            let answer = answer.unwrap_or_else(|| {
                Err(AuthzError::Failed(
                    "the access review gave no answer".into(),
                ))
            });
            match answer {
                Ok(AccessDecision { allowed: true, .. }) => {}
                Ok(AccessDecision { reason, .. }) => {
                    tracing::info!(
                        identity = role.as_str(),
                        check = %a,
                        authorizer_reason = %reason,
                        "access review denied"
                    );
                    denied.push(missing_permission(*role, who, a))
                }
                Err(e) => failed.push(review_failed(*role, who, a, &e)),
            }
        }
        if !failed.is_empty() {
            return Decision::internal("access_review_failed", failed.join("; "));
        }
        if !denied.is_empty() {
            return Decision::forbidden("access_denied", denied.join("; "));
        }
        Decision::allow("allowed")
    }

    /// SPEC 5.2, and the admission stamp (SECURITY.md): the label, plus an HMAC of what is
    /// being admitted. Validation runs after this, so a stored stamp means both webhooks ran.
    fn mutate_attached(&self, req: &AdmissionRequest<'_>) -> Decision {
        if matches!(req.operation, Operation::Delete) {
            return Decision::allow("no_mutation");
        }
        let Some(obj) = req.object.as_ref() else {
            return Decision::allow("no_object");
        };
        let mut m = attached::workload_label_patch(obj);
        let ns = req.namespace.as_deref().unwrap_or_default();
        if let (Some(keys), Some(subject)) = (&self.stamps, Subject::of(obj, ns)) {
            let stamp = keys.sign(&subject);
            if stamp_of(obj) != Some(stamp.as_str()) {
                // Without a metadata object the label patch creates it: build on its result
                // (rare, so the copy is fine) rather than add `/metadata` twice.
                let add = if obj.get("metadata").is_some_and(Value::is_object) || m.is_empty() {
                    annotation_patch(obj, STAMP_ANNOTATION, stamp)
                } else {
                    let mut labelled = obj.to_json();
                    match json_patch::patch(&mut labelled, &m.patch) {
                        Ok(()) => annotation_patch(&(&labelled).into(), STAMP_ANNOTATION, stamp),
                        Err(_) => annotation_patch(obj, STAMP_ANNOTATION, stamp),
                    }
                };
                m.patch.0.extend(add.0);
            }
        }
        if m.is_empty() {
            return Decision::allow("no_mutation");
        }
        Decision::allow("labelled")
            .with_patch(m.patch)
            .with_warnings(m.warnings)
    }

    /// Whether `old` carries a valid stamp (always false without keys: standalone mode has
    /// no controller, and keeps the old metadata-only shortcut via [`Handlers::stamps`]
    /// being `None`).
    fn was_admitted(&self, old: &Value, ns: &str) -> bool {
        let Some(keys) = &self.stamps else {
            return true;
        };
        Subject::of(old, ns).is_some_and(|s| keys.verify(&s, stamp_of(old)).is_ok())
    }

    fn holders(&self) -> impl Fn(&str) -> Vec<Holder> + '_ {
        |d: &str| self.appdomains.holders(d)
    }

    /// SPEC 5.4 mutation: fill `spec.domain` and the default `spec.serviceRef` on CREATE;
    /// restore an emptied `spec.domain` (and service name) from `oldObject` on UPDATE, so
    /// re-applying the creating manifest is a no-op.
    fn mutate_appdomain(&self, req: &AdmissionRequest<'_>) -> Decision {
        let Some(obj) = req.object.as_ref() else {
            return Decision::allow("no_object");
        };
        let ns = req.namespace.as_deref().unwrap_or_default();
        let myself = (ns, &*req.name);
        let mutated = match (&req.operation, req.old_object.as_ref()) {
            (Operation::Create, _) => {
                appdomain::mutate(obj, &self.domains, &self.holders(), myself)
            }
            (Operation::Update, Some(old)) => {
                appdomain::mutate_update(obj, old, &self.domains, &self.holders(), myself)
            }
            _ => return Decision::allow("no_mutation"),
        };
        match mutated {
            Ok(m) if m.is_empty() => Decision::allow("no_mutation"),
            Ok(m) => Decision::allow("domain_assigned")
                .with_patch(m.patch)
                .with_warnings(m.warnings),
            Err(v) => deny_violations(&v),
        }
    }

    /// SPEC 5.4 validation.
    async fn validate_appdomain(&self, req: &AdmissionRequest<'_>) -> Decision {
        if matches!(req.operation, Operation::Delete | Operation::Connect) {
            return Decision::allow("no_validation");
        }
        let Some(obj) = req.object.as_ref() else {
            return Decision::malformed(
                "missing_object",
                "request.object: missing; the API server sends the object on CREATE and UPDATE",
            );
        };
        let ns = req.namespace.as_deref().unwrap_or_default();
        let old = if matches!(req.operation, Operation::Update) {
            req.old_object.as_ref()
        } else {
            None
        };
        let warnings =
            match appdomain::validate(obj, old, &self.domains, &self.holders(), (ns, &*req.name)) {
                Outcome::Allowed { warnings } => warnings,
                Outcome::Denied(v) => return deny_violations(&v),
                Outcome::Conflict(msg) => return Decision::conflict("domain_conflict", msg),
            };
        // Spec unchanged (finalizers, labels): nothing new is asked of the user either.
        if old.is_some_and(|o| appdomain::spec_unchanged(obj, o)) {
            return Decision::allow("spec_unchanged");
        }
        // Item 4: the user may create the DomainMapping tether will create on their behalf.
        let user = identity_of(req);
        let mapping = ResourceInfo {
            group: "serving.knative.dev".into(),
            version: "v1beta1".into(),
            kind: "DomainMapping".into(),
            plural: "domainmappings".into(),
            namespaced: true,
        };
        self.run_access_checks(&[(Role::User, &user, attrs("create", &mapping, ns))])
            .await
            .with_warnings(warnings)
    }

    /// SPEC 5.3.
    fn mutate_plain(&self, req: &AdmissionRequest<'_>) -> Decision {
        let Some(obj) = req.object.as_ref() else {
            return Decision::allow("no_object");
        };
        let group = &*req.kind.group;
        let kind = &*req.kind.kind;
        let ns = req.namespace.as_deref().unwrap_or_default();
        let plan = match plain::plan_injection(group, kind, obj) {
            Ok(p) => p,
            Err(v) => return deny_violations(&v),
        };
        if plan.is_empty() {
            return Decision::allow("nothing_to_inject");
        }
        let selector =
            if plan.selector {
                match self.deployments.selector(ns, &plan.target) {
                    Lookup::Found(s) => Some(s),
                    Lookup::NotFound => None,
                    Lookup::NotReady => return Decision::internal(
                        "cache_not_ready",
                        "tether's Deployment cache is still loading; try again in a few seconds",
                    ),
                }
            } else {
                None
            };
        match plain::inject(group, kind, obj, ns, selector.as_ref()) {
            Ok(m) => Decision::allow("injected")
                .with_patch(m.patch)
                .with_warnings(m.warnings),
            Err(v) => deny_violations(&v),
        }
    }
}

/// SPEC 5.2: label the AttachedResource with its workload.
fn is_deleting(obj: &Value) -> bool {
    policy::at(obj, &["metadata", "deletionTimestamp"]).is_some_and(|t| !t.is_null())
}

fn stamp_of<'v>(obj: &'v Value<'_>) -> Option<&'v str> {
    obj.get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(STAMP_ANNOTATION))
        .and_then(Value::as_str)
}

fn has_target_label(req: &AdmissionRequest<'_>) -> bool {
    req.object
        .as_ref()
        .and_then(|o| policy::at(o, &["metadata", "labels"]))
        .and_then(Value::as_object)
        .is_some_and(|l| l.contains_key(plain::TARGET_LABEL))
}

fn deny_violations(v: &[Violation]) -> Decision {
    // `summarize` already answers 400 when any violation is malformed.
    match policy::summarize(v) {
        (400, message) => Decision::malformed("malformed_object", message),
        (_, message) => Decision::forbidden("policy", message),
    }
}

fn identity_of<'a>(req: &'a AdmissionRequest<'_>) -> Identity<'a> {
    let u = &req.user_info;
    Identity {
        user: Cow::Borrowed(&u.username),
        uid: u.uid.as_deref().map(Into::into),
        groups: Held::Borrowed(u.groups.as_slice()),
        extra: Held::Borrowed(&u.extra),
    }
}

fn attrs<'a>(verb: &'a str, r: &'a ResourceInfo, ns: &'a str) -> ResourceAttributes<'a> {
    ResourceAttributes {
        verb: verb.into(),
        group: r.group.as_str().into(),
        version: r.version.as_str().into(),
        resource: r.plural.as_str().into(),
        subresource: None,
        namespace: Some(ns.into()),
        name: None,
    }
}

fn who(role: Role, id: &Identity<'_>) -> String {
    match role {
        Role::User => format!("user {:?}", id.user),
        Role::Tether => format!("tether's service account {:?}", id.user),
    }
}

/// The deny text for a missing permission: who, the verb and resource (what Kubernetes
/// itself says in a 403), and the rule that asked. The authorizer's reason stays out of it:
/// it can name roles and bindings, which Kubernetes does not show a denied user either (it is
/// logged instead).
fn missing_permission(role: Role, id: &Identity<'_>, a: &ResourceAttributes<'_>) -> String {
    let rule = match role {
        Role::User => {
            "an AttachedResource needs the permission it asks tether to use: ask a cluster \
             admin for that permission, or attach a kind you may manage"
        }
        Role::Tether => {
            "tether needs create, delete, get, list and patch on every kind it copies: add the \
             kind to the chart's attachableKinds (RBAC) or ask the platform team"
        }
    };
    format!("{} may not {a}; {rule}", who(role, id))
}

fn review_failed(
    role: Role,
    id: &Identity<'_>,
    a: &ResourceAttributes<'_>,
    e: &AuthzError,
) -> String {
    format!(
        "could not check whether {} may {a}: {e}; tether fails closed, try again",
        who(role, id)
    )
}

/// A JSON Patch that sets one annotation, creating `metadata.annotations` when absent.
fn annotation_patch(obj: &Value, key: &str, value: String) -> json_patch::Patch {
    use json_patch::jsonptr::PointerBuf;
    use json_patch::{AddOperation, PatchOperation};
    let has_annotations =
        policy::at(obj, &["metadata", "annotations"]).is_some_and(Value::is_object);
    let has_metadata = obj.get("metadata").is_some_and(Value::is_object);
    let op = if has_annotations {
        AddOperation {
            path: PointerBuf::from_tokens(["metadata", "annotations", key]),
            value: serde_json::Value::String(value),
        }
    } else if has_metadata {
        AddOperation {
            path: PointerBuf::from_tokens(["metadata", "annotations"]),
            value: serde_json::json!({ key: value }),
        }
    } else {
        AddOperation {
            path: PointerBuf::from_tokens(["metadata"]),
            value: serde_json::json!({"annotations": { key: value }}),
        }
    };
    json_patch::Patch(vec![PatchOperation::Add(op)])
}
