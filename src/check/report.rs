//! `tether check` output: a table for people (one line per violation, warning and patch
//! operation, then a summary line), JSON or YAML for tools, or the mutated objects.

use std::io::Write;

use serde_json::{json, Value};

use super::{CheckResult, Decision, Summary};
use crate::cli::OutputFormat;

/// The whole output as text.
pub fn render(
    format: OutputFormat,
    mutated: bool,
    note: &str,
    summary: &Summary,
    results: &[CheckResult],
) -> String {
    if mutated {
        return mutated_yaml(results);
    }
    match format {
        OutputFormat::Table => table(results, summary),
        OutputFormat::Json => {
            let doc = json!({"note": note, "summary": summary, "results": results});
            serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
        }
        OutputFormat::Yaml => {
            let doc = json!({"note": note, "summary": summary, "results": results});
            serde_yaml_ng::to_string(&doc).unwrap_or_default()
        }
    }
}

/// The objects the API server would store, mutations applied, as one YAML stream (like
/// `gator expand` or `kyverno apply -o`); denied objects and unreadable ones are left out.
pub fn mutated_yaml(results: &[CheckResult]) -> String {
    let mut out = String::new();
    for r in results {
        if matches!(r.decision, Decision::Fail | Decision::Error) {
            continue;
        }
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&r.mutated).unwrap_or_default());
    }
    out
}

/// Writes to stdout; a closed pipe (`| head`) ends the output quietly instead of panicking.
pub fn write_stdout(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// A plain, aligned table: one row per object, then one line per violation, warning and
/// patch operation; a summary line at the end.
pub fn table(results: &[CheckResult], summary: &Summary) -> String {
    let w = results
        .iter()
        .map(|r| r.object.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let mut out = format!("{:<w$}  {:<11}  DETAILS\n", "OBJECT", "DECISION");
    for r in results {
        let decision = match r.decision {
            Decision::Pass | Decision::Warn => "allowed".to_string(),
            Decision::Fail => format!("denied({})", r.code),
            Decision::Skip => "skipped".to_string(),
            Decision::Error => "error".to_string(),
        };
        let mut details: Vec<String> = Vec::new();
        if r.violations.is_empty() {
            if !r.message.is_empty() {
                details.push(r.message.clone());
            }
        } else {
            for v in &r.violations {
                details.push(if v.field.is_empty() {
                    v.message.clone()
                } else {
                    format!("{}: {}", v.field, v.message)
                });
            }
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
            let (o, dec) = if i == 0 {
                (r.object.as_str(), decision.as_str())
            } else {
                ("", "")
            };
            out.push_str(format!("{o:<w$}  {dec:<11}  {d}").trim_end());
            out.push('\n');
        }
    }
    out.push_str(&summary.to_string());
    out.push('\n');
    out
}
