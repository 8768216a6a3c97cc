//! Admission policy: the pure rules behind tether's webhooks (SPEC 3.1, 5, 5.1–5.3).
//!
//! Everything here takes objects as `serde_json::Value` (exactly what the API server sends)
//! and returns data: [`Violation`]s to deny with, or a [`Mutation`] (JSON Patch + warnings)
//! to apply. Anything that needs the cluster (API discovery, access reviews, reading a
//! Deployment) is done by the caller, which passes the results in. That keeps every rule
//! unit-testable and lets `tether check` answer offline exactly what the webhook would.
//!
//! - [`attached`]: validating and mutating `AttachedResource` (SPEC 5.1, 5.2).
//! - [`placeholders`]: the four `{{ .X }}` placeholders of SPEC 3.1.
//! - [`plain`]: mutating plain objects labelled `tether.dev/target` (SPEC 5.3).

use std::fmt;

pub mod appdomain;
pub mod attached;
pub mod placeholders;
pub mod plain;
pub mod rbac_escalation;

pub use attached::{
    object_gvk, parse_api_version, validate_spec, validate_update, workload_label_patch, Gvk,
    WORKLOAD_LABEL,
};
pub use placeholders::{render, render_value, PlaceholderError, RenderError, Vars};
pub use plain::{inject, plan_injection, target_fields, InjectionPlan, TargetFields, TARGET_LABEL};

/// How bad a [`Violation`] is; decides the `status.code` of the deny.
///
/// The distinction matters to users: 400 says "your manifest is broken, fix its shape",
/// 403 says "your manifest is well formed but tether's policy does not allow it".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    /// The object is not well formed (missing field, wrong type, bad syntax): HTTP 400.
    Malformed,
    /// The object is well formed but not permitted by policy: HTTP 403.
    Forbidden,
}

impl Severity {
    /// The `status.code` for a deny of this severity.
    ///
    /// ```
    /// # use tether::policy::Severity;
    /// assert_eq!(Severity::Malformed.code(), 400);
    /// assert_eq!(Severity::Forbidden.code(), 403);
    /// ```
    pub fn code(self) -> u16 {
        match self {
            Severity::Malformed => 400,
            Severity::Forbidden => 403,
        }
    }

    /// The `status.reason` (a Kubernetes `metav1.StatusReason`) for a deny of this severity.
    pub fn reason(self) -> &'static str {
        match self {
            Severity::Malformed => "BadRequest",
            Severity::Forbidden => "Forbidden",
        }
    }
}

/// One broken rule, tied to the field that breaks it.
///
/// `field` is a path in kubectl style (`spec.object.spec.metrics[0].resource.name`,
/// `metadata.labels["tether.dev/target"]`); `message` says what is wrong *and what to do*,
/// because it is all a user sees in `kubectl apply` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Field path, e.g. `spec.object.metadata.name`.
    pub field: String,
    /// What is wrong and how to fix it, e.g. `must not be set: tether names each copy itself; remove it`.
    pub message: String,
    /// Decides the response code.
    pub severity: Severity,
}

impl Violation {
    /// A [`Severity::Malformed`] violation.
    pub fn malformed(field: impl Into<String>, message: impl Into<String>) -> Self {
        Violation {
            field: field.into(),
            message: message.into(),
            severity: Severity::Malformed,
        }
    }

    /// A [`Severity::Forbidden`] violation.
    pub fn forbidden(field: impl Into<String>, message: impl Into<String>) -> Self {
        Violation {
            field: field.into(),
            message: message.into(),
            severity: Severity::Forbidden,
        }
    }
}

impl fmt::Display for Violation {
    /// `field: message`, the form SPEC 5 asks for in deny messages.
    ///
    /// ```
    /// # use tether::policy::Violation;
    /// let v = Violation::forbidden("spec.object.metadata.name", "must not be set");
    /// assert_eq!(v.to_string(), "spec.object.metadata.name: must not be set");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for Violation {}

/// How many violations a deny message lists before "…and N more".
pub const MAX_LISTED: usize = 20;

/// Turns violations into a deny: `(status.code, message)`.
///
/// The code is 400 when any violation is [`Severity::Malformed`] (a broken manifest must be
/// fixed before policy even matters), else 403. The message lists **every** violation, in the
/// order given, joined by `"; "`, so one `kubectl apply` shows everything to fix.
/// An empty slice gives `(200, "")`: nothing to deny.
///
/// ```
/// # use tether::policy::{summarize, Violation};
/// let vs = [
///     Violation::forbidden("spec.object.kind", "kind Pod is banned"),
///     Violation::malformed("spec.object.apiVersion", "required"),
/// ];
/// assert_eq!(
///     summarize(&vs),
///     (400, "spec.object.kind: kind Pod is banned; spec.object.apiVersion: required".to_string())
/// );
/// ```
pub fn summarize(violations: &[Violation]) -> (u16, String) {
    // Bounded: an object with a million broken strings must not produce a message of
    // megabytes (the API server, kubectl and our logs all carry it).
    if violations.len() > MAX_LISTED {
        let (code, head) = summarize(&violations[..MAX_LISTED]);
        let code = if violations.iter().any(|v| v.severity == Severity::Malformed) {
            400
        } else {
            code
        };
        return (
            code,
            format!("{head}; …and {} more", violations.len() - MAX_LISTED),
        );
    }
    if violations.is_empty() {
        return (200, String::new());
    }
    let code = if violations.iter().any(|v| v.severity == Severity::Malformed) {
        Severity::Malformed.code()
    } else {
        Severity::Forbidden.code()
    };
    let message = violations
        .iter()
        // Each one bounded, so one huge quote cannot crowd out the others (see `text`).
        .map(|v| crate::text::clean_owned(v.to_string(), crate::text::MAX_VIOLATION))
        .collect::<Vec<_>>()
        .join("; ");
    (code, message)
}

/// The result of a mutating webhook: a JSON Patch (RFC 6902) valid against the object as
/// received, plus one short warning line per change for `response.warnings`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mutation {
    /// Operations to send as `response.patch` (empty: send no patch).
    pub patch: json_patch::Patch,
    /// One line per change, no control characters, short (the API server keeps 4096
    /// characters of warnings in all and drops those with newlines).
    pub warnings: Vec<String>,
}

impl Mutation {
    /// True when there is nothing to patch.
    pub fn is_empty(&self) -> bool {
        self.patch.0.is_empty()
    }
}

/// The kinds that may be attached (SPEC 5.1 rule 3), built from configuration.
///
/// Kinds are compared case-insensitively after trimming surrounding whitespace, on both
/// sides: a configured `" deployment"` bans `Deployment`, and an object with kind
/// `" Deployment "` is still banned (whitespace must never be a way around the deny-list).
/// Empty entries (from `"a,,b"` or a trailing comma) are ignored.
///
/// Two modes:
/// - deny-list (default): every kind passes except the banned ones;
/// - allow-list (`allowed` is `Some` with at least one entry): only the allowed kinds pass,
///   and the deny-list **still applies** on top. An allow-list with no non-empty entries
///   (e.g. `ALLOWED_KINDS=""`) counts as not set, because an empty environment variable
///   almost always means "unset", not "deny everything".
///
/// ```
/// # use tether::policy::KindPolicy;
/// let p = KindPolicy::default();
/// assert!(p.check("HorizontalPodAutoscaler").is_ok());
/// assert!(p.check("deployment").is_err());
///
/// let p = KindPolicy::new(["Pod"], Some(["HorizontalPodAutoscaler", "Pod"]));
/// assert!(p.check("horizontalpodautoscaler").is_ok());
/// assert!(p.check("Pod").is_err()); // allowed, but the deny-list still applies
/// assert!(p.check("PodDisruptionBudget").is_err()); // not in the allow-list
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindPolicy {
    banned: Vec<KindEntry>,
    allowed: Option<Vec<KindEntry>>,
}

/// One entry of `--banned-kinds` / `--allowed-kinds`: `Kind` (any API group) or
/// `Kind.group` (only that group, e.g. `Service.serving.knative.dev`, which must not ban the
/// core `Service`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct KindEntry {
    /// Lowercased kind.
    kind: String,
    /// Lowercased API group; `None` matches every group.
    group: Option<String>,
    /// As configured, trimmed: what messages show.
    shown: String,
}

impl KindEntry {
    fn matches(&self, kind: &str, group: Option<&str>) -> bool {
        self.kind == kind
            && match (&self.group, group) {
                (None, _) => true,
                (Some(want), Some(got)) => want == got,
                // The group is unknown (a malformed apiVersion, which rule 1 reports): a
                // group-qualified entry cannot be ruled out, so it matches (fail closed).
                (Some(_), None) => true,
            }
    }
}

/// The default deny-list of SPEC 5.1 rule 3: kinds whose copies would run pods or grant
/// rights with tether's own account (SECURITY.md, "The default ban list" says why each).
/// Attaching one of them is an explicit opt-in: remove it from `--banned-kinds`.
pub const DEFAULT_BANNED_KINDS: [&str; 16] = [
    // Workloads: tether must not copy them per Deployment version.
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "ReplicationController",
    "Job",
    "CronJob",
    "Pod",
    // Workloads outside the core API (group-qualified so core kinds of the same name pass).
    "Service.serving.knative.dev",
    "Configuration.serving.knative.dev",
    "Revision.serving.knative.dev",
    "ScaledJob.keda.sh",
    // RBAC: the API server checks escalation against the creator, which would be tether.
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
];

/// Kinds that grant rights: their deny message says so instead of calling them workloads.
const RBAC_KINDS: [&str; 4] = ["role", "rolebinding", "clusterrole", "clusterrolebinding"];

impl Default for KindPolicy {
    /// Deny-list mode with [`DEFAULT_BANNED_KINDS`].
    fn default() -> Self {
        KindPolicy::new(DEFAULT_BANNED_KINDS, None::<[&str; 0]>)
    }
}

fn normalize_kinds<I, S>(kinds: I) -> Vec<KindEntry>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out: Vec<KindEntry> = Vec::new();
    for k in kinds {
        let trimmed = k.as_ref().trim();
        if trimmed.is_empty() {
            continue;
        }
        let lower = trimmed.to_lowercase();
        // Kinds contain no dots, so the first dot starts the group.
        let (kind, group) = match lower.split_once('.') {
            Some((k, g)) => (k.to_string(), Some(g.to_string())),
            None => (lower, None),
        };
        let entry = KindEntry {
            kind,
            group,
            shown: trimmed.to_string(),
        };
        if !out
            .iter()
            .any(|e| e.kind == entry.kind && e.group == entry.group)
        {
            out.push(entry);
        }
    }
    out
}

impl KindPolicy {
    /// Builds a policy from the configured lists (`--banned-kinds`, `--allowed-kinds`).
    pub fn new<B, BS, A, AS>(banned: B, allowed: Option<A>) -> Self
    where
        B: IntoIterator<Item = BS>,
        BS: AsRef<str>,
        A: IntoIterator<Item = AS>,
        AS: AsRef<str>,
    {
        let allowed = allowed.map(normalize_kinds).filter(|a| !a.is_empty());
        KindPolicy {
            banned: normalize_kinds(banned),
            allowed,
        }
    }

    /// Splits a comma-separated setting (`BANNED_KINDS="Pod, Job"`) into entries.
    ///
    /// ```
    /// # use tether::policy::KindPolicy;
    /// assert_eq!(KindPolicy::split_list(" Pod, Job ,,"), vec!["Pod", "Job"]);
    /// ```
    pub fn split_list(csv: &str) -> Vec<String> {
        csv.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Whether `kind` (of any API group) may be attached; see [`KindPolicy::check_in`].
    pub fn check(&self, kind: &str) -> Result<(), String> {
        self.check_in(kind, None)
    }

    /// Whether `kind` of API `group` (`""` for the core group; `None` when the apiVersion
    /// could not be parsed) may be attached. The error names the kind and the setting that
    /// governs it, so the user knows whom to ask.
    pub fn check_in(&self, kind: &str, group: Option<&str>) -> Result<(), String> {
        let trimmed = kind.trim();
        let lower = trimmed.to_lowercase();
        let group = group.map(|g| g.trim().to_lowercase());
        let group = group.as_deref();
        // Echo at most a short prefix of what the user sent.
        let shown = quote_short(trimmed, 80);
        if let Some(allowed) = &self.allowed {
            // An unknown group cannot prove a group-qualified allow entry: not allowed.
            let ok = allowed
                .iter()
                .any(|e| e.matches(&lower, group) && (e.group.is_none() || group.is_some()));
            if !ok {
                let list = allowed
                    .iter()
                    .map(|e| e.shown.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(format!(
                    "kind {shown} may not be attached: only the kinds in --allowed-kinds \
                     (env ALLOWED_KINDS) are attachable here ({list}); attach one of those, \
                     or ask your platform team to allow {shown}"
                ));
            }
        }
        if let Some(entry) = self.banned.iter().find(|e| e.matches(&lower, group)) {
            let entry_note = if entry.group.is_some() {
                format!(" (as {:?})", entry.shown)
            } else {
                String::new()
            };
            let why = if RBAC_KINDS.contains(&lower.as_str()) {
                "RBAC objects grant rights, and tether would create them with its own \
                 account; create it yourself with kubectl, or ask your platform team to opt in \
                 (tether then checks escalate/bind for you)"
            } else {
                "workloads cannot be attached, attach a resource that refers to the workload \
                 instead, or ask your platform team to change the setting"
            };
            return Err(format!(
                "kind {shown} may not be attached: it is in --banned-kinds{entry_note} \
                 (env BANNED_KINDS); {why}"
            ));
        }
        Ok(())
    }

    /// True in allow-list mode.
    pub fn is_allow_list(&self) -> bool {
        self.allowed.is_some()
    }
}

// ----- shared helpers for the submodules (field paths and name syntax) -----

/// Appends an object key to a kubectl-style field path: `a.b` for plain keys,
/// `a["tether.dev/x"]` for keys with other characters (dots would make the path ambiguous).
pub(crate) fn push_key(path: &mut String, key: &str) {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
    } else {
        path.push('[');
        // A JSON string literal: quotes and control characters come out escaped.
        path.push_str(&serde_json::Value::String(key.to_string()).to_string());
        path.push(']');
    }
}

/// Appends an array index to a field path: `a[3]`.
pub(crate) fn push_index(path: &mut String, index: usize) {
    path.push('[');
    path.push_str(&index.to_string());
    path.push(']');
}

/// A field path from a list of keys (`["spec", "object", "kind"]` → `spec.object.kind`).
pub(crate) fn path_of(keys: &[&str]) -> String {
    let mut p = String::new();
    for k in keys {
        push_key(&mut p, k);
    }
    p
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// RFC 1123 label as Kubernetes checks it: at most 63 of `[a-z0-9-]`, alphanumeric at both ends.
pub(crate) fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
        && b.first().copied().is_some_and(is_lower_alnum)
        && b.last().copied().is_some_and(is_lower_alnum)
}

/// RFC 1123 subdomain as Kubernetes checks it (names of most objects, e.g. Deployments):
/// at most 253 characters, dot-separated parts of `[a-z0-9-]` that start and end
/// alphanumeric. (Kubernetes does not limit the parts to 63 here, so neither do we.)
pub(crate) fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
                && b.first().copied().is_some_and(is_lower_alnum)
                && b.last().copied().is_some_and(is_lower_alnum)
        })
}

/// A Kubernetes label value: empty, or at most 63 of `[A-Za-z0-9._-]`, alphanumeric at both ends.
pub(crate) fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() {
        return true;
    }
    b.len() <= 63
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// A string quoted for a message, cut to `max` characters so one absurd value cannot bloat
/// a deny message; control characters come out escaped.
pub fn quote_short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        format!("{s:?}")
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut:?}…")
    }
}

/// A JSON value rendered for a message (compact, cut to a sane length).
pub(crate) fn show_value(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.chars().count() <= 60 {
        s
    } else {
        let cut: String = s.chars().take(60).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_codes_and_reasons() {
        assert_eq!(Severity::Malformed.code(), 400);
        assert_eq!(Severity::Forbidden.code(), 403);
        assert_eq!(Severity::Malformed.reason(), "BadRequest");
        assert_eq!(Severity::Forbidden.reason(), "Forbidden");
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
        for (vs, code, msg) in cases {
            assert_eq!(summarize(&vs), (code, msg.to_string()), "{vs:?}");
        }
    }

    #[test]
    fn kind_policy_deny_list_default() {
        let p = KindPolicy::default();
        assert!(!p.is_allow_list());
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
        for (kind, ok) in cases {
            assert_eq!(p.check(kind).is_ok(), ok, "{kind:?}");
        }
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
        assert!(p.is_allow_list());
        let cases = [
            ("HorizontalPodAutoscaler", true),
            (" horizontalPodAutoscaler ", true),
            ("Pod", false),                 // allowed but banned
            ("Job", false),                 // allowed but banned
            ("PodDisruptionBudget", false), // not allowed
            ("Deployment", false),          // not allowed (default deny-list replaced)
        ];
        for (kind, ok) in cases {
            assert_eq!(p.check(kind).is_ok(), ok, "{kind:?}");
        }
        assert!(p.check("Pod").unwrap_err().contains("--banned-kinds"));
        assert!(p
            .check("PodDisruptionBudget")
            .unwrap_err()
            .contains("--allowed-kinds"));
    }

    #[test]
    fn kind_policy_empty_allow_list_is_unset() {
        let p = KindPolicy::new(["Pod"], Some(["", "  "]));
        assert!(!p.is_allow_list());
        assert!(p.check("ConfigMap").is_ok());
        assert!(p.check("Pod").is_err());
        // An empty deny-list bans nothing.
        let p = KindPolicy::new(Vec::<&str>::new(), None::<Vec<&str>>);
        assert!(p.check("Pod").is_ok());
    }

    #[test]
    fn split_list_table() {
        let cases: [(&str, &[&str]); 4] = [
            ("", &[]),
            ("Pod", &["Pod"]),
            (" Pod , Job,,", &["Pod", "Job"]),
            (",", &[]),
        ];
        for (csv, want) in cases {
            assert_eq!(KindPolicy::split_list(csv), want, "{csv:?}");
        }
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

    #[test]
    fn name_syntax_table() {
        // (input, dns1123 label, dns1123 subdomain, label value)
        let long63 = "a".repeat(63);
        let long64 = "a".repeat(64);
        let long253 = format!("{}.{}", "a".repeat(126), "b".repeat(126));
        let long254 = format!("{}.{}", "a".repeat(127), "b".repeat(126));
        let cases: Vec<(&str, bool, bool, bool)> = vec![
            ("", false, false, true),
            ("web", true, true, true),
            ("web-1", true, true, true),
            ("web.v1", false, true, true),
            ("Web", false, false, true),
            ("web_1", false, false, true),
            ("-web", false, false, false),
            ("web-", false, false, false),
            ("web.", false, false, false),
            (".web", false, false, false),
            ("a..b", false, false, true),
            ("a.-b", false, false, true),
            ("a b", false, false, false),
            ("wéb", false, false, false),
            (&long63, true, true, true),
            (&long64, false, true, false),
            (&long253, false, true, false),
            (&long254, false, false, false),
        ];
        for (s, label, sub, value) in cases {
            assert_eq!(is_dns1123_label(s), label, "label {s:?}");
            assert_eq!(is_dns1123_subdomain(s), sub, "subdomain {s:?}");
            assert_eq!(is_label_value(s), value, "label value {s:?}");
        }
    }

    #[test]
    fn quote_and_show() {
        assert_eq!(quote_short("ab", 5), "\"ab\"");
        assert_eq!(quote_short("a\nb", 5), "\"a\\nb\"");
        assert_eq!(quote_short("abcdef", 3), "\"abc\"…");
        assert_eq!(show_value(&serde_json::json!([1])), "[1]");
        assert_eq!(
            show_value(&serde_json::json!("x".repeat(70))),
            format!("\"{}…", "x".repeat(59))
        );
    }
}
