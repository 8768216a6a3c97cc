//! Admission policy: the pure rules behind tether's webhooks (SPEC 3.1, 5, 5.1–5.3).
//!
//! Everything here takes objects as [`crate::borrowed_json::Value`] (exactly what the API
//! server sends, borrowed from the review; owned `serde_json::Value`s convert with `From`)
//! and returns data: [`Violation`]s to deny with, or a [`Mutation`] (JSON Patch + warnings)
//! to apply. Anything that needs the cluster (API discovery, access reviews, reading a
//! Deployment) is done by the caller, which passes the results in. That keeps every rule
//! unit-testable and lets `tether check` answer offline exactly what the webhook would.
//!
//! - [`attached`]: validating and mutating `AttachedResource` (SPEC 5.1, 5.2).
//! - [`placeholders`]: the four `{{ .X }}` placeholders of SPEC 3.1.
//! - [`plain`]: mutating plain objects labelled `tether.dev/target` (SPEC 5.3).

use std::fmt;

use crate::borrowed_json::Value;

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
    fn matches(&self, kind: &Folded<'_>, group: Option<&Folded<'_>>) -> bool {
        kind.is(&self.kind)
            && match (&self.group, group) {
                (None, _) => true,
                (Some(want), Some(got)) => got.is(want),
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

    /// Whether `kind` (of any API group) may be attached; see [`KindPolicy::check_in`].
    pub fn check(&self, kind: &str) -> Result<(), String> {
        self.check_in(kind, None)
    }

    /// Whether `kind` of API `group` (`""` for the core group; `None` when the apiVersion
    /// could not be parsed) may be attached. The error names the kind and the setting that
    /// governs it, so the user knows whom to ask.
    pub fn check_in(&self, kind: &str, group: Option<&str>) -> Result<(), String> {
        let trimmed = kind.trim();
        let lower = Folded::new(trimmed);
        let group = group.map(|g| Folded::new(g.trim()));
        let group = group.as_ref();
        // Echo at most a short prefix of what the user sent (built only for a deny).
        let shown = || quote_short(trimmed, 80);
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
                let shown = shown();
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
            let why = if RBAC_KINDS.iter().any(|k| lower.is(k)) {
                "RBAC objects grant rights, and tether would create them with its own \
                 account; create it yourself with kubectl, or ask your platform team to opt in \
                 (tether then checks escalate/bind for you)"
            } else {
                "workloads cannot be attached, attach a resource that refers to the workload \
                 instead, or ask your platform team to change the setting"
            };
            let shown = shown();
            return Err(format!(
                "kind {shown} may not be attached: it is in --banned-kinds{entry_note} \
                 (env BANNED_KINDS); {why}"
            ));
        }
        Ok(())
    }
}

/// User text to compare with the lowercased configuration, as `s.to_lowercase()` would
/// compare, without that copy for ASCII (kinds and API groups always are): the allowed
/// path of every review asks this about 20 times.
enum Folded<'a> {
    Ascii(&'a str),
    Lowered(String),
}

impl Folded<'_> {
    fn new(s: &str) -> Folded<'_> {
        if s.is_ascii() {
            Folded::Ascii(s)
        } else {
            Folded::Lowered(s.to_lowercase())
        }
    }

    /// Whether the text, lowercased, is `lower` (itself the output of `to_lowercase`, so
    /// without ASCII capitals: ignoring ASCII case then only folds the user's side).
    fn is(&self, lower: &str) -> bool {
        match self {
            Folded::Ascii(s) => s.eq_ignore_ascii_case(lower),
            Folded::Lowered(s) => s == lower,
        }
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
        crate::json_escape::push_quoted_str(path, key);
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

/// `v` at a path of object keys: `Value::pointer` without its cost (it parses the pointer
/// and unescapes every segment into a new `String`), for the fixed paths of the hot rules.
pub fn at<'v, 'a>(v: &'v Value<'a>, path: &[&str]) -> Option<&'v Value<'a>> {
    path.iter().try_fold(v, |v, key| v.get(key))
}

/// `None` for absent and `null`, which every rule treats alike.
pub(crate) fn present<'v, 'a>(v: Option<&'v Value<'a>>) -> Option<&'v Value<'a>> {
    v.filter(|v| !v.is_null())
}

// One copy of the name syntax checks, in `naming`, and of the message quoting, in `text`.
pub(crate) use crate::naming::{is_dns1123_label, is_dns1123_subdomain, is_label_value};
pub use crate::text::quote_short;
pub(crate) use crate::text::show_value;

#[cfg(test)]
mod tests;
