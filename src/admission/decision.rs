//! A decision and its translation into an AdmissionResponse.

use base64::Engine;
use kube::core::response::StatusSummary;
use kube::core::Status;

use super::review::{sanitize_warnings_within, AdmissionResponse, AnswerParts, MAX_WARNINGS_TOTAL};

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
        let audit = self.audit_annotations();
        let allowed = self.allowed;
        let Body {
            status,
            patch,
            mut warnings,
        } = self.into_body(mode_warning);
        warnings.extend(mode_warning.map(str::to_string));
        AdmissionResponse {
            uid,
            allowed,
            status,
            patch_type: patch.as_ref().map(|_| PATCH_TYPE.to_string()),
            patch,
            audit_annotations: audit
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            warnings,
        }
    }

    /// Appends the AdmissionReview answer: the bytes `into_response(uid, mode_warning)`
    /// writes (tested), from borrowed parts (the audit annotations are static, the mode
    /// warning and the uid are not copied). Every admission request's answer is written so.
    pub fn write_review(
        self,
        uid: &str,
        mode_warning: Option<&str>,
        out: &mut Vec<u8>,
    ) -> serde_json::Result<()> {
        let audit = self.audit_annotations();
        let allowed = self.allowed;
        let Body {
            status,
            patch,
            warnings,
        } = self.into_body(mode_warning);
        AnswerParts {
            uid,
            allowed,
            status: status.as_ref(),
            patch: patch.as_deref(),
            patch_type: patch.as_ref().map(|_| PATCH_TYPE),
            audit_annotations: audit.into_iter(),
            warnings: warnings.iter().map(String::as_str).chain(mode_warning),
        }
        .write_review(out)
    }

    /// `decision` and `reason`, in key order.
    fn audit_annotations(&self) -> [(&'static str, &'static str); 2] {
        [
            ("decision", self.decision_label()),
            ("reason", self.metric_reason),
        ]
    }

    /// The status (denials), the patch (base64), and the decision's own warnings, cut to
    /// leave room for `mode_warning`.
    fn into_body(self, mode_warning: Option<&str>) -> Body {
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
        let patch = match (&self.patch, self.allowed) {
            (Some(p), true) => serde_json::to_vec(p)
                .ok()
                .map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes)),
            _ => None,
        };
        let reserve = mode_warning.map_or(0, str::len);
        let warnings =
            sanitize_warnings_within(self.warnings, MAX_WARNINGS_TOTAL.saturating_sub(reserve));
        Body {
            status,
            patch,
            warnings,
        }
    }
}

/// What [`Decision::into_body`] gives.
struct Body {
    status: Option<Status>,
    patch: Option<String>,
    warnings: Vec<String>,
}

/// The `patchType` of every patch tether sends.
const PATCH_TYPE: &str = "JSONPatch";

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
    fn the_answer_written_from_parts_is_the_owned_response_written() {
        let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
            {"op": "add", "path": "/metadata/labels/a", "value": "b"}
        ]))
        .unwrap();
        let long = "w".repeat(5000);
        let cases = [
            ("allowed", Decision::allow("allowed")),
            (
                "allowed with warnings",
                Decision::allow("allowed").with_warnings(vec!["one".into(), "two \"q\"".into()]),
            ),
            (
                "allowed, warning over the total",
                Decision::allow("allowed").with_warnings(vec![long]),
            ),
            ("patched", Decision::allow("injected").with_patch(patch)),
            (
                "denied, message to clean",
                Decision::forbidden("banned_kind", "line one\nline \"two\" \u{7}"),
            ),
            ("error", Decision::internal("timeout", "slow")),
        ];
        for (name, d) in cases {
            for uid in ["u-1", "quote\"and\\slash"] {
                for mode in [None, Some("standalone: access reviews are not evaluated")] {
                    let mut owned = Vec::new();
                    d.clone()
                        .into_response(uid.into(), mode)
                        .write_review(&mut owned)
                        .unwrap();
                    let mut parts = Vec::new();
                    d.clone().write_review(uid, mode, &mut parts).unwrap();
                    assert_eq!(
                        String::from_utf8(parts).unwrap(),
                        String::from_utf8(owned).unwrap(),
                        "{name}, uid {uid:?}, mode warning {mode:?}"
                    );
                }
            }
        }
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
