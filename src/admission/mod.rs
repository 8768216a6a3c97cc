//! Admission: review in, decision, review out.
//!
//! [`Admission::review`] is the whole path for one HTTP body: parse (see [`review`]), route
//! by `request.kind` to the handler for that kind, time it, count it, log it, and serialise
//! the answer. The HTTP layer (`server`) only deals with transport concerns.

pub mod decision;
pub mod handlers;
pub mod review;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics::Metrics;
pub use decision::Decision;
use review::{AdmissionRequest, AdmissionResponse, AdmissionReviewOut, EnvelopeError};

/// Which webhook path a review arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Webhook {
    Mutate,
    Validate,
}

impl Webhook {
    pub fn as_str(self) -> &'static str {
        match self {
            Webhook::Mutate => "mutate",
            Webhook::Validate => "validate",
        }
    }
}

/// Everything a decision may consult. Built once at start-up and shared by all requests.
pub struct Admission {
    pub metrics: Metrics,
    pub handlers: handlers::Handlers,
    /// A warning added to every response, e.g. that tether runs standalone (SPEC 7).
    pub mode_warning: Option<String>,
}

/// The outcome of one review, ready to be written to the wire.
pub struct Answer {
    pub body: Vec<u8>,
    pub allowed: bool,
}

impl Admission {
    pub fn new(
        metrics: Metrics,
        handlers: handlers::Handlers,
        mode_warning: Option<String>,
    ) -> Arc<Self> {
        Arc::new(Self {
            metrics,
            handlers,
            mode_warning,
        })
    }

    /// Answers one AdmissionReview body. `budget` is how long we may take: past it we deny
    /// with code 500 rather than let the API server time out on us (fail closed, but with a
    /// message the user can read).
    pub async fn review(
        &self,
        webhook: Webhook,
        body: &[u8],
        budget: Duration,
    ) -> Result<Answer, EnvelopeError> {
        let start = Instant::now();
        let parsed = review::parse(body)?;
        let uid = parsed.uid;
        let (decision, op, kind_label, ident) = match parsed.request {
            Ok(req) => {
                let decision = match tokio::time::timeout(budget, self.decide(webhook, &req)).await
                {
                    Ok(d) => d,
                    Err(_) => Decision::internal(
                        "timeout",
                        format!(
                            "tether could not decide within {} ms (an access review or the API server is slow); try again, and check tether's logs and the API server's health",
                            budget.as_millis()
                        ),
                    ),
                };
                let ident = RequestIdent::from(&req);
                (
                    decision,
                    operation_label(&req),
                    kind_label(&req.kind.group, &req.kind.kind),
                    ident,
                )
            }
            Err(e) => (
                Decision::malformed("malformed_request", e.to_string()),
                "unknown",
                "unknown",
                RequestIdent::default(),
            ),
        };
        let elapsed = start.elapsed();
        self.metrics
            .admission_requests
            .with_label_values(&[
                webhook.as_str(),
                op,
                kind_label,
                decision.decision_label(),
                decision.metric_reason,
            ])
            .inc();
        self.metrics
            .duration_for(webhook)
            .observe(elapsed.as_secs_f64());
        tracing::info!(
            uid = %uid,
            webhook = webhook.as_str(),
            kind = %ident.kind,
            namespace = %ident.namespace,
            name = %ident.name,
            operation = op,
            user = %ident.user,
            dry_run = ident.dry_run,
            decision = decision.decision_label(),
            reason = decision.metric_reason,
            message = %decision.message,
            duration_us = elapsed.as_micros() as u64,
            "admission decision"
        );
        let allowed = decision.allowed;
        let response = decision.into_response(uid, self.mode_warning.as_deref());
        let body = serde_json::to_vec(&AdmissionReviewOut::new(response))
            .unwrap_or_else(|_| b"{}".to_vec());
        Ok(Answer { body, allowed })
    }

    /// Routes a parsed request to the handler for its kind.
    pub async fn decide(&self, webhook: Webhook, req: &AdmissionRequest) -> Decision {
        self.handlers.decide(webhook, req).await
    }
}

/// Builds an answer for a uid without a decision path (used by tests and the CLI).
pub fn response_for(uid: &str, decision: Decision) -> AdmissionResponse {
    decision.into_response(uid.to_string(), None)
}

#[derive(Default)]
struct RequestIdent {
    kind: String,
    namespace: String,
    name: String,
    user: String,
    dry_run: bool,
}

impl From<&AdmissionRequest> for RequestIdent {
    fn from(r: &AdmissionRequest) -> Self {
        let name = if r.name.is_empty() {
            // On CREATE with generateName the name is not known yet.
            r.object
                .as_ref()
                .and_then(|o| o.pointer("/metadata/generateName"))
                .and_then(|v| v.as_str())
                .map(|g| format!("{g}*"))
                .unwrap_or_default()
        } else {
            r.name.clone()
        };
        RequestIdent {
            kind: r.kind.kind.clone(),
            namespace: r.namespace.clone().unwrap_or_default(),
            name,
            user: r.user_info.username.clone(),
            dry_run: r.dry_run,
        }
    }
}

fn operation_label(r: &AdmissionRequest) -> &'static str {
    use kube::core::admission::Operation;
    match r.operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// Bounded `kind` label values: the kinds tether handles, `other` for the rest.
pub fn kind_label(group: &str, kind: &str) -> &'static str {
    match (group, kind) {
        ("tether.dev", "AttachedResource") => "AttachedResource",
        ("tether.dev", "AppDomain") => "AppDomain",
        ("autoscaling", "HorizontalPodAutoscaler") => "HorizontalPodAutoscaler",
        ("policy", "PodDisruptionBudget") => "PodDisruptionBudget",
        ("keda.sh", "ScaledObject") => "ScaledObject",
        ("autoscaling.k8s.io", "VerticalPodAutoscaler") => "VerticalPodAutoscaler",
        _ => "other",
    }
}
