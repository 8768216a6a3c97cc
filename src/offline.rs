//! Offline answers (SPEC 7): `tether review` and `tether check`, decided by exactly the code
//! the server runs (`Admission::review`), with standalone handlers: kinds from the built-in
//! table, access reviews from `--rbac-file` (or allowed, with a warning).

use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::admission::{Admission, Webhook};
use crate::appdomains::StaticDomains;
use crate::cli::{ReviewArgs, WebhookArg};
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
            let mut out: Value = match serde_json::from_slice(&answer.body) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("tether review: unreadable answer: {e}");
                    return ExitCode::from(2);
                }
            };
            if args.decode_patch {
                decode_patch(&mut out);
            }
            println!("{out}");
            let allowed = out.pointer("/response/allowed").and_then(Value::as_bool) == Some(true);
            if allowed || args.exit_zero {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("tether review: {e}");
            ExitCode::from(2)
        }
    }
}

/// Splits a manifest (multi-document YAML, JSON, `kind: List`) into objects, read as
/// kubectl reads YAML (see [`crate::check::manifest`]).
pub fn parse_manifest(text: &str) -> Result<Vec<Value>, String> {
    crate::check::manifest::parse_manifest(text).map(|v| v.into_iter().map(|(_, o)| o).collect())
}

/// Replaces `response.patch` (base64) with the JSON Patch operations it holds.
pub fn decode_patch(review: &mut Value) {
    use base64::Engine;
    let Some(p) = review.pointer_mut("/response/patch") else {
        return;
    };
    let ops = p
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|raw| serde_json::from_slice::<Value>(&raw).ok());
    if let Some(ops) = ops {
        *p = ops;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
