//! Offline answers (SPEC 7): `tether review` and `tether check`, decided by exactly the code
//! the server runs (`Admission::review`), with standalone handlers: kinds from the built-in
//! table, access reviews from `--rbac-file` (or allowed, with a warning).

use std::collections::BTreeMap;
use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde::Serialize;
use serde_json::{json, Value};

use crate::admission::review::AdmissionReviewOut;
use crate::admission::{Admission, Webhook};
use crate::appdomains::StaticDomains;
use crate::cli::{CheckArgs, OutputFormat, ReviewArgs, WebhookArg};
use crate::config::PolicyConfig;
use crate::metrics::Metrics;
use crate::workloads::StaticDeployments;

/// Reads the input, refusing more than `max` bytes without holding more than that: a 30 MB
/// input must not cost its size several times over in memory before anyone says no.
fn read_input(file: &str, max: usize) -> std::io::Result<Vec<u8>> {
    let limit = max as u64 + 1;
    let mut body = Vec::new();
    if file == "-" {
        std::io::stdin().lock().take(limit).read_to_end(&mut body)?;
    } else {
        std::fs::File::open(file)?
            .take(limit)
            .read_to_end(&mut body)?;
    }
    if body.len() > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("input is larger than {max} bytes (--max-input-bytes, env TETHER_MAX_INPUT_BYTES); raise the limit or split the input"),
        ));
    }
    Ok(body)
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// `tether review`: AdmissionReview in, AdmissionReview out. Exit 0 with an answer (allowed
/// or not), 2 when the input is not a v1 AdmissionReview or the flags are wrong.
pub fn run_review(args: ReviewArgs) -> ExitCode {
    let body = match read_input(&args.file, args.max_input_bytes) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("tether review: cannot read {}: {e}", args.file);
            return ExitCode::from(2);
        }
    };
    // Same parse budget as the server: count the values before building them.
    let values = crate::budget::json_cost(&body).values;
    if values > crate::budget::DEFAULT_MAX_VALUES {
        eprintln!(
            "tether review: {}: holds about {values} JSON values; tether accepts at most {} per review (the server's --max-json-values default)",
            args.file,
            crate::budget::DEFAULT_MAX_VALUES
        );
        return ExitCode::from(2);
    }
    let cfg = match PolicyConfig::from_args(&args.policy) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tether review: {e}");
            return ExitCode::from(2);
        }
    };
    let metrics = Metrics::new();
    let (handlers, warning) = crate::wiring::offline_handlers(
        cfg,
        Arc::new(StaticDeployments::default()),
        Arc::new(StaticDomains::default()),
        &metrics,
    );
    let admission = Admission::new(metrics, handlers, Some(warning));
    let webhook = match args.webhook {
        WebhookArg::Mutate => Webhook::Mutate,
        WebhookArg::Validate => Webhook::Validate,
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tether review: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(admission.review(webhook, &body, Duration::from_secs(10))) {
        Ok(answer) => {
            println!("{}", String::from_utf8_lossy(&answer.body));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tether review: {e}");
            ExitCode::from(2)
        }
    }
}

/// One object's outcome in `tether check`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CheckResult {
    /// `Kind namespace/name`.
    pub object: String,
    pub allowed: bool,
    /// 200 when allowed, else the deny's status code.
    pub code: u16,
    pub message: String,
    pub warnings: Vec<String>,
    /// The JSON Patch operations the mutating webhook returned.
    pub patch: Vec<Value>,
}

/// Splits a manifest (multi-document YAML, JSON, `kind: List`) into objects.
pub fn parse_manifest(text: &str) -> Result<Vec<Value>, String> {
    use serde::Deserialize;
    // The YAML parser is quadratic in flow nesting depth: refuse deep input in linear time.
    crate::budget::yaml_flow_depth(text, crate::budget::MAX_YAML_DEPTH)
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let v = Value::deserialize(doc).map_err(|e| format!("document {}: {e}", i + 1))?;
        match v {
            Value::Null => continue,
            Value::Object(ref m) if m.get("kind").and_then(Value::as_str) == Some("List") => {
                let items = m
                    .get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                out.extend(items);
            }
            Value::Object(_) => out.push(v),
            other => {
                return Err(format!(
                    "document {}: expected a Kubernetes object (a mapping), found {}",
                    i + 1,
                    match other {
                        Value::Array(_) => "a list",
                        Value::String(_) => "a string",
                        _ => "a scalar",
                    }
                ))
            }
        }
    }
    Ok(out)
}

fn split_api_version(av: &str) -> (&str, &str) {
    match av.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", av),
    }
}

/// The AdmissionReview the API server would send for creating `obj` as `user`.
pub fn create_review(
    uid: &str,
    obj: &Value,
    namespace: &str,
    user: &str,
    groups: &[String],
) -> Value {
    let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let (group, version) = split_api_version(av);
    let plural = crate::discovery::builtin::lookup(av, kind)
        .map(|r| r.plural)
        .unwrap_or_else(|_| format!("{}s", kind.to_ascii_lowercase()));
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut obj = obj.clone();
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.entry("namespace").or_insert_with(|| json!(namespace));
    }
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": plural},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "requestResource": {"group": group, "version": version, "resource": plural},
            "name": name,
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": user, "groups": groups},
            "object": obj,
            "oldObject": null,
            "dryRun": true,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
}

/// Decides every object of a manifest as the API server would route it: mutating webhook
/// first, its patch applied, then the validating webhook on the result.
pub async fn check_objects(
    admission: &Admission,
    objects: &[Value],
    default_ns: &str,
    user: &str,
    groups: &[String],
    on_admitted: &dyn Fn(&Value),
) -> Vec<CheckResult> {
    let mut results = Vec::with_capacity(objects.len());
    for (i, obj) in objects.iter().enumerate() {
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(default_ns)
            .to_string();
        let kind = obj
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("<no kind>");
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("<no name>");
        let label = format!("{kind} {ns}/{name}");
        let uid = format!("tether-check-{}", i + 1);
        let mut current = obj.clone();
        let mut warnings = Vec::new();
        let mut patch_ops = Vec::new();
        let mut outcome = None;
        for webhook in [Webhook::Mutate, Webhook::Validate] {
            let review = create_review(&uid, &current, &ns, user, groups);
            let body = serde_json::to_vec(&review).unwrap_or_default();
            let answer = match admission
                .review(webhook, &body, Duration::from_secs(10))
                .await
            {
                Ok(a) => a,
                Err(e) => {
                    outcome = Some((false, 400, e.to_string()));
                    break;
                }
            };
            let out: AdmissionReviewOut = match serde_json::from_slice(&answer.body) {
                Ok(o) => o,
                Err(e) => {
                    outcome = Some((false, 500, format!("unreadable answer: {e}")));
                    break;
                }
            };
            let r = out.response;
            warnings.extend(r.warnings);
            if !r.allowed {
                let s = r.status.unwrap_or_default();
                outcome = Some((false, s.code, s.message));
                break;
            }
            if let Some(p) = r.patch {
                let ops: Vec<Value> = base64::engine::general_purpose::STANDARD
                    .decode(p)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                if let Ok(patch) =
                    serde_json::from_value::<json_patch::Patch>(Value::Array(ops.clone()))
                {
                    if let Err(e) = json_patch::patch(&mut current, &patch) {
                        outcome = Some((
                            false,
                            500,
                            format!("tether's own patch does not apply: {e}"),
                        ));
                        break;
                    }
                }
                patch_ops.extend(ops);
            }
        }
        let (allowed, code, message) = outcome.unwrap_or((true, 200, String::new()));
        if allowed {
            // As the API server would have stored it, mutations applied.
            on_admitted(&current);
        } else {
            // A denied object is not stored, so the mutation that preceded the deny is moot.
            patch_ops.clear();
        }
        warnings.sort();
        warnings.dedup();
        results.push(CheckResult {
            object: label,
            allowed,
            code,
            message,
            warnings,
            patch: patch_ops,
        });
    }
    results
}

fn deployments_in(objects: &[Value], default_ns: &str) -> StaticDeployments {
    let mut d = StaticDeployments::default();
    for o in objects {
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

/// `tether check`: exit 0 when everything is allowed, 1 when anything is denied, 2 on bad input.
pub fn run_check(args: CheckArgs) -> ExitCode {
    let text = match read_input(&args.file, args.max_input_bytes) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => {
            eprintln!("tether check: cannot read {}: {e}", args.file);
            return ExitCode::from(2);
        }
    };
    let objects = match parse_manifest(&text) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("tether check: {}: {e}", args.file);
            return ExitCode::from(2);
        }
    };
    let cfg = match PolicyConfig::from_args(&args.policy) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tether check: {e}");
            return ExitCode::from(2);
        }
    };
    let metrics = Metrics::new();
    let deployments = deployments_in(&objects, &args.namespace);
    let domains = Arc::new(StaticDomains::default());
    let (handlers, warning) =
        crate::wiring::offline_handlers(cfg, Arc::new(deployments), domains.clone(), &metrics);
    let admission = Admission::new(metrics, handlers, None);
    let mut groups = args.groups.clone();
    if !groups.iter().any(|g| g == "system:authenticated") {
        groups.push("system:authenticated".into());
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tether check: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let results = rt.block_on(check_objects(
        &admission,
        &objects,
        &args.namespace,
        &args.user,
        &groups,
        &|stored: &Value| {
            if let Some((domain, holder)) = crate::policy::appdomain::Holder::from_object(stored) {
                domains.insert(domain, holder);
            }
        },
    ));
    match args.output {
        OutputFormat::Json => {
            let doc = json!({"note": warning, "results": results});
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
        OutputFormat::Table => {
            eprintln!("note: {warning}");
            print!("{}", table(&results));
        }
    }
    if results.iter().any(|r| !r.allowed) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// A plain, aligned table: one row per object, then its message, warnings and patch lines.
pub fn table(results: &[CheckResult]) -> String {
    let w = results
        .iter()
        .map(|r| r.object.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let mut out = format!("{:<w$}  {:<11}  DETAILS\n", "OBJECT", "DECISION");
    for r in results {
        let decision = if r.allowed {
            "allowed".to_string()
        } else {
            format!("denied({})", r.code)
        };
        let mut details: Vec<String> = Vec::new();
        if !r.message.is_empty() {
            details.push(r.message.clone());
        }
        for p in &r.patch {
            details.push(format!(
                "patch: {} {}",
                p.get("op").and_then(Value::as_str).unwrap_or("?"),
                p.get("path").and_then(Value::as_str).unwrap_or("?")
            ));
        }
        for wn in &r.warnings {
            details.push(format!("warning: {wn}"));
        }
        if details.is_empty() {
            details.push("-".into());
        }
        for (i, d) in details.iter().enumerate() {
            if i == 0 {
                out.push_str(&format!("{:<w$}  {:<11}  {d}\n", r.object, decision));
            } else {
                out.push_str(&format!("{:<w$}  {:<11}  {d}\n", "", ""));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_split_into_objects() {
        let objs = parse_manifest(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\nkind: List\napiVersion: v1\nitems:\n- {apiVersion: v1, kind: Secret, metadata: {name: b}}\n",
        )
        .unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[1]["kind"], "Secret");
        let e = parse_manifest("- a\n- b\n").unwrap_err();
        assert_eq!(
            e,
            "document 1: expected a Kubernetes object (a mapping), found a list"
        );
        assert!(parse_manifest("a: [")
            .unwrap_err()
            .starts_with("document 1: "));
    }

    #[test]
    fn review_names_the_resource_plural() {
        let r = create_review(
            "u",
            &json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"}}),
            "ns",
            "bob",
            &[],
        );
        assert_eq!(
            r["request"]["resource"]["resource"],
            "horizontalpodautoscalers"
        );
        assert_eq!(r["request"]["object"]["metadata"]["namespace"], "ns");
    }
}
