//! A decision and its translation into an AdmissionResponse.

use std::collections::BTreeMap;

use base64::Engine;
use kube::core::response::StatusSummary;
use kube::core::Status;

use super::review::{sanitize_warnings_within, AdmissionResponse, MAX_WARNINGS_TOTAL};

/// What a handler decided. `metric_reason` is a bounded label value (a constant), `message`
/// is for humans and may name objects.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    /// HTTP-style status code of a deny: 400 malformed, 403 policy, 409 conflict, 500 internal.
    pub code: u16,
    pub message: String,
    pub metric_reason: &'static str,
    pub patch: Option<json_patch::Patch>,
    pub warnings: Vec<String>,
}

impl Decision {
    pub fn allow(metric_reason: &'static str) -> Self {
        Self {
            allowed: true,
            code: 200,
            message: String::new(),
            metric_reason,
            patch: None,
            warnings: Vec::new(),
        }
    }

    fn deny(code: u16, metric_reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            allowed: false,
            code,
            message: message.into(),
            metric_reason,
            patch: None,
            warnings: Vec::new(),
        }
    }

    /// 403: the object is well-formed but not permitted.
    pub fn forbidden(metric_reason: &'static str, message: impl Into<String>) -> Self {
        Self::deny(403, metric_reason, message)
    }

    /// 400: the object (or the review) is malformed.
    pub fn malformed(metric_reason: &'static str, message: impl Into<String>) -> Self {
        Self::deny(400, metric_reason, message)
    }

    /// 409: conflicts with another object.
    pub fn conflict(metric_reason: &'static str, message: impl Into<String>) -> Self {
        Self::deny(409, metric_reason, message)
    }

    /// 500: tether could not decide (fail closed).
    pub fn internal(metric_reason: &'static str, message: impl Into<String>) -> Self {
        Self::deny(500, metric_reason, message)
    }

    pub fn with_patch(mut self, patch: json_patch::Patch) -> Self {
        self.patch = if patch.0.is_empty() {
            None
        } else {
            Some(patch)
        };
        self
    }

    pub fn with_warnings(mut self, warnings: Vec<String>) -> Self {
        self.warnings.extend(warnings);
        self
    }

    pub fn decision_label(&self) -> &'static str {
        if self.allowed {
            "allowed"
        } else {
            "denied"
        }
    }

    /// The `decision` label of `tether_admission_requests_total`: a deny because tether
    /// could not decide (code 500: an access review, discovery or the budget failed) is
    /// `error`, so the error ratio an operator alerts on is not mixed with policy denials.
    pub fn metric_decision_label(&self) -> &'static str {
        match (self.allowed, self.code) {
            (true, _) => "allowed",
            (false, c) if c >= 500 => "error",
            (false, _) => "denied",
        }
    }

    /// The Kubernetes `StatusReason` for a deny code.
    pub fn status_reason(&self) -> &'static str {
        match self.code {
            400 => "BadRequest",
            403 => "Forbidden",
            409 => "Conflict",
            _ => "InternalError",
        }
    }

    /// Builds the response. Audit annotation keys are bare (`decision`, `reason`): the API
    /// server prefixes each with the webhook's name (e.g.
    /// `attachedresources.validate.tether.dev/decision`), and rejects keys that already
    /// contain a `/`. `mode_warning` must already be clean (sanitised once at start-up).
    pub fn into_response(self, uid: String, mode_warning: Option<&str>) -> AdmissionResponse {
        let mut audit = BTreeMap::new();
        audit.insert("decision".to_string(), self.decision_label().to_string());
        audit.insert("reason".to_string(), self.metric_reason.to_string());
        let status = if self.allowed {
            None
        } else {
            Some(Status {
                status: Some(StatusSummary::Failure),
                code: self.code,
                // Messages quote the input: one line, bounded (see `text`).
                message: crate::text::clean(&self.message, crate::text::MAX_MESSAGE).into_owned(),
                reason: self.status_reason().to_string(),
                metadata: None,
                details: None,
            })
        };
        let (patch, patch_type) = match (&self.patch, self.allowed) {
            (Some(p), true) => match serde_json::to_vec(p) {
                Ok(bytes) => (
                    Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
                    Some("JSONPatch".to_string()),
                ),
                Err(_) => (None, None),
            },
            _ => (None, None),
        };
        let reserve = mode_warning.map_or(0, str::len);
        let mut warnings =
            sanitize_warnings_within(self.warnings, MAX_WARNINGS_TOTAL.saturating_sub(reserve));
        if let Some(w) = mode_warning {
            warnings.push(w.to_string());
        }
        AdmissionResponse {
            uid,
            allowed: self.allowed,
            status,
            patch,
            patch_type,
            audit_annotations: audit,
            warnings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_carries_code_reason_and_message() {
        let r = Decision::forbidden("banned_kind", "spec.object.kind: Deployment is banned")
            .into_response("u1".into(), Some("standalone"));
        assert_eq!(r.uid, "u1");
        assert!(!r.allowed);
        let s = r.status.unwrap();
        assert_eq!(s.code, 403);
        assert_eq!(s.reason, "Forbidden");
        assert_eq!(s.message, "spec.object.kind: Deployment is banned");
        assert_eq!(r.audit_annotations["decision"], "denied");
        assert_eq!(r.audit_annotations["reason"], "banned_kind");
        assert_eq!(r.warnings, vec!["standalone"]);
        assert!(r.patch.is_none());
    }

    #[test]
    fn allow_with_patch_is_base64_json_patch() {
        let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
            {"op": "add", "path": "/metadata/labels", "value": {"a": "b"}}
        ]))
        .unwrap();
        let r = Decision::allow("injected")
            .with_patch(patch)
            .into_response("u2".into(), None);
        assert!(r.allowed && r.status.is_none());
        assert_eq!(r.patch_type.as_deref(), Some("JSONPatch"));
        let raw = base64::engine::general_purpose::STANDARD
            .decode(r.patch.unwrap())
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(v[0]["path"], "/metadata/labels");
        // An empty patch is no patch at all.
        let r = Decision::allow("x")
            .with_patch(json_patch::Patch(vec![]))
            .into_response("u".into(), None);
        assert!(r.patch.is_none() && r.patch_type.is_none());
    }

    #[test]
    fn metric_decision_separates_errors_from_denials() {
        for (d, label) in [
            (Decision::allow("r"), "allowed"),
            (Decision::malformed("r", "m"), "denied"),
            (Decision::forbidden("r", "m"), "denied"),
            (Decision::conflict("r", "m"), "denied"),
            (Decision::internal("r", "m"), "error"),
        ] {
            assert_eq!(d.metric_decision_label(), label);
        }
    }

    #[test]
    fn codes_map_to_status_reasons() {
        for (d, reason) in [
            (Decision::malformed("r", "m"), "BadRequest"),
            (Decision::forbidden("r", "m"), "Forbidden"),
            (Decision::conflict("r", "m"), "Conflict"),
            (Decision::internal("r", "m"), "InternalError"),
        ] {
            assert_eq!(d.status_reason(), reason);
        }
    }
}
