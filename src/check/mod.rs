//! `tether check`: decide every object of a set of manifests offline as a CREATE, with the
//! server's code (`Admission::review`) and the cluster's routing (which webhooks see what).
//!
//! Exit codes: 0 every object passed (allowed, or not sent to tether), 1 any deny (or any
//! skip with `--fail-on-skip`), 2 a usage or input error.

pub mod fields;
pub mod manifest;
pub mod report;
pub mod scope;
pub mod values;

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde::Serialize;
use serde_json::Value;

use crate::admission::review::AdmissionReviewOut;
use crate::admission::{Admission, Webhook};
use crate::appdomains::StaticDomains;
use crate::cli::CheckArgs;
use crate::config::PolicyConfig;
use crate::metrics::Metrics;
use crate::workloads::StaticDeployments;
use manifest::Sourced;
use scope::{Route, Scope};

/// One object's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Allowed without warnings.
    Pass,
    /// Denied (by tether, or by strict field validation before tether).
    Fail,
    /// Allowed, with warnings.
    Warn,
    /// Not sent to tether (kind not in the webhook rules, or a skipped namespace).
    Skip,
    /// Not a readable Kubernetes object (no kind, apiVersion or name).
    Error,
}

/// One broken rule, as in the deny message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    pub field: String,
    pub message: String,
    /// The deny's HTTP status code (400 malformed, 403 forbidden, 409 conflict).
    pub code: u16,
}

/// One object's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    /// `file#document`.
    pub source: String,
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// `Kind namespace/name`, for people.
    pub object: String,
    pub decision: Decision,
    pub allowed: bool,
    /// 200 when allowed, else the deny's status code.
    pub code: u16,
    /// The deny message as `kubectl apply` would show it, or why the object was skipped.
    pub message: String,
    pub violations: Vec<Violation>,
    pub warnings: Vec<String>,
    /// The JSON Patch operations the mutating webhook returned.
    pub patch: Vec<Value>,
    /// The object as it would be stored (mutations applied); not serialized, see --mutated.
    #[serde(skip)]
    pub mutated: Value,
}

/// Counts per decision, for the summary line.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub objects: usize,
    pub pass: usize,
    pub fail: usize,
    pub warn: usize,
    pub skip: usize,
    pub error: usize,
}

impl Summary {
    pub fn of(results: &[CheckResult]) -> Self {
        let mut s = Summary {
            objects: results.len(),
            ..Summary::default()
        };
        for r in results {
            *match r.decision {
                Decision::Pass => &mut s.pass,
                Decision::Fail => &mut s.fail,
                Decision::Warn => &mut s.warn,
                Decision::Skip => &mut s.skip,
                Decision::Error => &mut s.error,
            } += 1;
        }
        s
    }

    /// 2 on any error, 1 on any fail (or skip when `fail_on_skip`), else 0.
    pub fn exit_code(&self, fail_on_skip: bool) -> u8 {
        if self.error > 0 {
            2
        } else if self.fail > 0 || (fail_on_skip && self.skip > 0) {
            1
        } else {
            0
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} object{}: {} pass, {} fail, {} warn, {} skip, {} error",
            self.objects,
            if self.objects == 1 { "" } else { "s" },
            self.pass,
            self.fail,
            self.warn,
            self.skip,
            self.error
        )
    }
}

/// Splits a deny message (`field: message; field: message`) into its violations. A `"; "`
/// starts a new violation only when a field path and `": "` follow, since messages may
/// themselves contain `"; "`.
pub fn split_violations(message: &str, code: u16) -> Vec<Violation> {
    let mut parts: Vec<String> = Vec::new();
    for seg in message.split("; ") {
        match (parts.last_mut(), field_of(seg)) {
            (Some(last), None) => {
                last.push_str("; ");
                last.push_str(seg);
            }
            _ => parts.push(seg.to_string()),
        }
    }
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .map(|p| match field_of(&p) {
            Some(field) => Violation {
                message: p[field.len() + 2..].to_string(),
                field: field.to_string(),
                code,
            },
            None => Violation {
                field: String::new(),
                message: p,
                code,
            },
        })
        .collect()
}

/// The `field` of `field: message`, when the text starts with a path such as
/// `spec.object.metadata.labels["a/b"]` or `…and 3 more` is not one.
fn field_of(seg: &str) -> Option<&str> {
    let (head, _) = seg.split_once(": ")?;
    let ok = !head.is_empty()
        && head.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && !head.contains(' ')
        && head
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-[]\"/*".contains(c));
    ok.then_some(head)
}

fn str_at<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("")
}

/// Decides every object as the API server would route it: not sent when the webhook rules
/// do not match; else the mutating webhook, its patch applied, then (for tether's kinds) the
/// validating webhook on the result.
pub async fn check_objects(
    admission: &Admission,
    scope: &Scope,
    objects: &[Sourced],
    default_ns: &str,
    user: &str,
    groups: &[String],
    on_admitted: &dyn Fn(&Value),
) -> Vec<CheckResult> {
    let mut results = Vec::with_capacity(objects.len());
    for (i, s) in objects.iter().enumerate() {
        let obj = &s.object;
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(default_ns)
            .to_string();
        let (av, kind, name) = (
            str_at(obj, "/apiVersion"),
            str_at(obj, "/kind"),
            str_at(obj, "/metadata/name"),
        );
        let mut r = CheckResult {
            source: s.source.clone(),
            api_version: av.into(),
            kind: kind.into(),
            namespace: ns.clone(),
            name: name.into(),
            object: format!(
                "{} {ns}/{}",
                if kind.is_empty() { "<no kind>" } else { kind },
                if name.is_empty() { "<no name>" } else { name }
            ),
            decision: Decision::Pass,
            allowed: true,
            code: 200,
            message: String::new(),
            violations: Vec::new(),
            warnings: Vec::new(),
            patch: Vec::new(),
            mutated: obj.clone(),
        };
        let missing: Vec<&str> = [("apiVersion", av), ("kind", kind), ("metadata.name", name)]
            .into_iter()
            .filter(|(_, v)| v.is_empty())
            .map(|(f, _)| f)
            .collect();
        if !missing.is_empty() {
            r.decision = Decision::Error;
            r.allowed = false;
            r.code = 400;
            r.message = format!(
                "not a Kubernetes object: {} missing (generateName is not supported offline)",
                missing.join(", ")
            );
            results.push(r);
            continue;
        }
        let plural = crate::discovery::builtin::lookup(av, kind)
            .ok()
            .map(|x| x.plural);
        let route = scope.route(obj, &ns, plural.as_deref());
        let webhooks: &[Webhook] = match &route {
            Route::Both => &[Webhook::Mutate, Webhook::Validate],
            Route::MutateOnly => &[Webhook::Mutate],
            Route::Skipped(reason) => {
                r.decision = Decision::Skip;
                r.message = reason.clone();
                results.push(r);
                continue;
            }
        };
        // Strict field validation runs in the API server before any webhook.
        let unknown = fields::unknown_fields(kind, obj, crate::policy::MAX_LISTED);
        if !unknown.is_empty() {
            r.violations = unknown
                .into_iter()
                .map(|(field, message)| Violation {
                    field,
                    message,
                    code: 400,
                })
                .collect();
            r.message = r
                .violations
                .iter()
                .map(|v| format!("{}: {}", v.field, v.message))
                .collect::<Vec<_>>()
                .join("; ");
            r.decision = Decision::Fail;
            r.allowed = false;
            r.code = 400;
            results.push(r);
            continue;
        }
        let uid = format!("tether-check-{}", i + 1);
        let mut current = obj.clone();
        let mut mutate_warnings = Vec::new();
        let mut warnings = Vec::new();
        let mut outcome = None;
        for webhook in webhooks {
            let review = crate::offline::create_review(&uid, &current, &ns, user, groups);
            let body = serde_json::to_vec(&review).unwrap_or_default();
            let answer = match admission
                .review(*webhook, &body, Duration::from_secs(10))
                .await
            {
                Ok(a) => a,
                Err(e) => {
                    outcome = Some((400, e.to_string()));
                    break;
                }
            };
            let out: AdmissionReviewOut = match serde_json::from_slice(&answer.body) {
                Ok(o) => o,
                Err(e) => {
                    outcome = Some((500, format!("unreadable answer: {e}")));
                    break;
                }
            };
            let resp = out.response;
            if *webhook == Webhook::Mutate {
                mutate_warnings.extend(resp.warnings);
            } else {
                warnings.extend(resp.warnings);
            }
            if !resp.allowed {
                let st = resp.status.unwrap_or_default();
                outcome = Some((st.code, st.message));
                break;
            }
            if let Some(p) = resp.patch {
                let ops: Vec<Value> = base64::engine::general_purpose::STANDARD
                    .decode(p)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                if let Ok(patch) =
                    serde_json::from_value::<json_patch::Patch>(Value::Array(ops.clone()))
                {
                    if let Err(e) = json_patch::patch(&mut current, &patch) {
                        outcome = Some((500, format!("tether's own patch does not apply: {e}")));
                        break;
                    }
                }
                r.patch.extend(ops);
            }
        }
        match outcome {
            None => {
                // As the API server would have stored it, mutations applied.
                on_admitted(&current);
                warnings.extend(mutate_warnings);
                r.mutated = current;
            }
            Some((code, message)) => {
                // A denied object is not stored: the mutation and its warnings are moot.
                r.patch.clear();
                r.allowed = false;
                r.code = code;
                r.violations = split_violations(&message, code);
                r.message = message;
                r.decision = Decision::Fail;
            }
        }
        warnings.sort();
        warnings.dedup();
        r.warnings = warnings;
        if r.decision == Decision::Pass && !r.warnings.is_empty() {
            r.decision = Decision::Warn;
        }
        results.push(r);
    }
    results
}

fn deployments_in(objects: &[Sourced], default_ns: &str) -> StaticDeployments {
    let mut d = StaticDeployments::default();
    for o in objects.iter().map(|s| &s.object) {
        if o.get("kind").and_then(Value::as_str) != Some("Deployment") {
            continue;
        }
        let (Some(name), Some(labels)) = (
            o.pointer("/metadata/name").and_then(Value::as_str),
            o.pointer("/spec/selector/matchLabels")
                .and_then(Value::as_object),
        ) else {
            continue;
        };
        let ns = o
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(default_ns);
        let labels: BTreeMap<String, String> = labels
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
            .collect();
        d.insert(ns, name, labels);
    }
    d
}

/// The webhook scope and policy flags, with `--values` applied under explicit flags.
fn settings(args: &CheckArgs) -> Result<(crate::cli::PolicyArgs, Scope), String> {
    let mut policy = args.policy.clone();
    let mut skip: BTreeSet<String> = args
        .skip_namespaces
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let mut plain_kinds = scope::default_plain_kinds();
    if let Some(path) = &args.values {
        let v = values::read(path)?;
        let given = |id: &str| args.explicit.contains(id);
        if let (false, Some(l)) = (given("banned_kinds"), values::non_empty(&v.banned_kinds)) {
            policy.banned_kinds = l;
        }
        if let (false, Some(l)) = (given("allowed_kinds"), values::non_empty(&v.allowed_kinds)) {
            policy.allowed_kinds = Some(l);
        }
        if let (false, Some(l)) = (
            given("reserved_names"),
            values::non_empty(&v.reserved_names),
        ) {
            policy.reserved_names = l;
        }
        if let (false, Some(d)) = (
            given("domain_root"),
            v.domain_root.filter(|d| !d.is_empty()),
        ) {
            policy.domain_root = Some(d);
        }
        if let (false, Some(d)) = (
            given("runner_kservice"),
            v.runner_kservice.filter(|d| !d.is_empty()),
        ) {
            policy.runner_kservice = d;
        }
        if let Some(p) = v.plain_kinds {
            plain_kinds = p;
        }
        if let Some(ns) = v.namespace_selector {
            skip.extend(ns.exclude_namespaces);
        }
    }
    // The chart always excludes kube-system and its own (release) namespace.
    skip.insert("kube-system".into());
    skip.insert(policy.pod_namespace.clone());
    Ok((
        policy,
        Scope {
            skip_namespaces: skip,
            plain_kinds,
        },
    ))
}

/// `tether check`.
pub fn run_check(args: CheckArgs) -> ExitCode {
    let objects = match manifest::read_all(&args.file, args.max_input_bytes) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("tether check: {e}");
            return ExitCode::from(2);
        }
    };
    let (policy, scope) = match settings(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tether check: {e}");
            return ExitCode::from(2);
        }
    };
    let cfg = match PolicyConfig::from_args(&policy) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tether check: {e}");
            return ExitCode::from(2);
        }
    };
    let metrics = Metrics::new();
    let deployments = deployments_in(&objects, &args.namespace);
    let domains = Arc::new(StaticDomains::default());
    let (handlers, note) =
        crate::wiring::offline_handlers(cfg, Arc::new(deployments), domains.clone(), &metrics);
    let admission = Admission::new(metrics, handlers, None);
    let mut groups = args.groups.clone();
    if !groups.iter().any(|g| g == "system:authenticated") {
        groups.push("system:authenticated".into());
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tether check: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let results = rt.block_on(check_objects(
        &admission,
        &scope,
        &objects,
        &args.namespace,
        &args.user,
        &groups,
        &|stored: &Value| {
            if let Some((domain, holder)) =
                crate::policy::appdomain::Holder::from_object(&stored.into())
            {
                domains.insert(domain, holder);
            }
        },
    ));
    let summary = Summary::of(&results);
    let text = report::render(args.output, args.mutated, &note, &summary, &results);
    // stdout carries only the output proper (it may be piped to jq or kubectl); the note
    // and, when not in the table, the summary go to stderr.
    if args.output != crate::cli::OutputFormat::Json || args.mutated {
        eprintln!("note: {note}");
    }
    report::write_stdout(&text);
    if args.output != crate::cli::OutputFormat::Table || args.mutated {
        eprintln!("{summary}");
    }
    ExitCode::from(summary.exit_code(args.fail_on_skip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_messages_split_into_violations() {
        let m = "spec.object.kind: kind \"Deployment\" may not be attached: it is in --banned-kinds (env BANNED_KINDS); workloads cannot be attached; spec.object.metadata.name: must not be set; metadata.labels[\"tether.dev/workload\"]: wrong; …and 3 more";
        let v = split_violations(m, 403);
        let got: Vec<(&str, &str)> = v
            .iter()
            .map(|v| (v.field.as_str(), v.message.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("spec.object.kind", "kind \"Deployment\" may not be attached: it is in --banned-kinds (env BANNED_KINDS); workloads cannot be attached"),
                ("spec.object.metadata.name", "must not be set"),
                ("metadata.labels[\"tether.dev/workload\"]", "wrong; …and 3 more"),
            ]
        );
        assert_eq!(
            split_violations("user \"bob\" may not create x", 403)[0].field,
            ""
        );
    }

    #[test]
    fn exit_codes() {
        let s = |fail, skip, error| Summary {
            fail,
            skip,
            error,
            ..Summary::default()
        };
        assert_eq!(s(0, 0, 0).exit_code(false), 0);
        assert_eq!(s(0, 1, 0).exit_code(false), 0);
        assert_eq!(s(0, 1, 0).exit_code(true), 1);
        assert_eq!(s(1, 0, 0).exit_code(false), 1);
        assert_eq!(s(1, 0, 1).exit_code(false), 2);
        assert_eq!(
            Summary {
                objects: 5,
                pass: 1,
                fail: 1,
                warn: 1,
                skip: 1,
                error: 1
            }
            .to_string(),
            "5 objects: 1 pass, 1 fail, 1 warn, 1 skip, 1 error"
        );
    }
}
