//! Admission: review in, decision, review out.
//!
//! [`Admission::review`] is the whole path for one HTTP body: parse (see [`review`]), route
//! by `request.kind` to the handler for that kind, time it, count it, log it, and serialise
//! the answer. The HTTP layer (`server`) only deals with transport concerns.

pub mod decision;
pub mod handlers;
pub mod review;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::Metrics;
pub use decision::Decision;
use review::{AdmissionRequest, EnvelopeError};

// A leaf module, so that `metrics` can name the paths without importing `admission`.
pub use crate::webhook::Webhook;

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

#[async_trait::async_trait]
impl crate::server::Reviews for Admission {
    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    async fn review(
        &self,
        webhook: Webhook,
        body: &[u8],
        budget: Duration,
    ) -> Result<Vec<u8>, String> {
        Admission::review(self, webhook, body, budget)
            .await
            .map(|a| a.body)
            .map_err(|e| e.to_string())
    }
}

impl Admission {
    pub fn new(
        metrics: Metrics,
        handlers: handlers::Handlers,
        mode_warning: Option<String>,
    ) -> Arc<Self> {
        // Sanitised once here rather than on every response.
        let mode_warning = mode_warning
            .map(|w| review::sanitize_warnings(vec![w]))
            .and_then(|mut v| v.pop());
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
        // tokio's clock, so the deadline below is this same reading plus the budget: one
        // clock read, and the budget covers the parse too.
        let start = Instant::now();
        let parsed = review::parse(body)?;
        let uid = parsed.uid;
        let decision = match &parsed.request {
            Ok(req) => match self.decide_within(webhook, req, start + budget).await {
                Some(d) => d,
                None => Decision::internal(
                    "timeout",
                    format!(
                        "tether could not decide within {} ms (an access review or the API server is slow); try again, and check tether's logs and the API server's health",
                        budget.as_millis()
                    ),
                ),
            },
            Err(e) => Decision::malformed("malformed_request", e.to_string()),
        };
        let elapsed = start.elapsed();
        // Borrowed from the request: the log line and labels cost no copies.
        let ident = parsed.request.as_deref().ok().map(RequestIdent::from);
        let ident = ident.unwrap_or_default();
        self.metrics
            .admission_requests
            .with_label_values(&[
                webhook.as_str(),
                ident.operation,
                ident.kind_label,
                decision.metric_decision_label(),
                decision.metric_reason,
            ])
            .inc();
        self.metrics
            .duration_for(webhook)
            .observe(elapsed.as_secs_f64());
        // Every user-supplied field is cut and cleaned (see `text`); borrowed when clean.
        use crate::text::{clean, field, MAX_MESSAGE};
        tracing::info!(
            uid = field(&uid).as_ref(),
            webhook = webhook.as_str(),
            kind = field(ident.kind).as_ref(),
            namespace = field(ident.namespace).as_ref(),
            name = field(&ident.name).as_ref(),
            operation = ident.operation,
            user = field(ident.user).as_ref(),
            dry_run = ident.dry_run,
            decision = decision.decision_label(),
            reason = decision.metric_reason,
            // Not `message`: that key holds the event name ("admission decision") in JSON.
            deny_message = clean(&decision.message, MAX_MESSAGE).as_ref(),
            duration_us = elapsed.as_micros() as u64,
            "admission decision"
        );
        let allowed = decision.allowed;
        // One allocation, sized for a typical answer (an allowed one with the standalone
        // warning is ~400 bytes), instead of growing from empty.
        let mut body = Vec::with_capacity(512);
        if decision
            .write_review(&uid, self.mode_warning.as_deref(), &mut body)
            .is_err()
        {
            body = b"{}".to_vec();
        }
        Ok(Answer { body, allowed })
    }

    /// [`Admission::decide`] by `deadline`; `None` past it. Most decisions need nothing from
    /// the network (cached or local answers): they are taken in one poll, before a timer is
    /// armed, and pay nothing for the timeout.
    async fn decide_within(
        &self,
        webhook: Webhook,
        req: &AdmissionRequest<'_>,
        deadline: Instant,
    ) -> Option<Decision> {
        let mut decide = std::pin::pin!(self.decide(webhook, req));
        if let std::task::Poll::Ready(d) = futures::poll!(decide.as_mut()) {
            return Some(d);
        }
        tokio::time::timeout_at(deadline, decide).await.ok()
    }

    /// Routes a parsed request to the handler for its kind.
    pub async fn decide(&self, webhook: Webhook, req: &AdmissionRequest<'_>) -> Decision {
        self.handlers.decide(webhook, req).await
    }
}

/// What the decision log line and the metric labels say about a request.
struct RequestIdent<'a> {
    kind: &'a str,
    kind_label: &'static str,
    operation: &'static str,
    namespace: &'a str,
    name: std::borrow::Cow<'a, str>,
    user: &'a str,
    dry_run: bool,
}

impl Default for RequestIdent<'_> {
    fn default() -> Self {
        RequestIdent {
            kind: "",
            kind_label: "unknown",
            operation: "unknown",
            namespace: "",
            name: "".into(),
            user: "",
            dry_run: false,
        }
    }
}

impl<'a> From<&'a AdmissionRequest<'_>> for RequestIdent<'a> {
    fn from(r: &'a AdmissionRequest) -> Self {
        let name = if r.name.is_empty() {
            // On CREATE with generateName the name is not known yet.
            r.object
                .as_ref()
                .and_then(|o| o.pointer("/metadata/generateName"))
                .and_then(|v| v.as_str())
                .map(|g| format!("{g}*").into())
                .unwrap_or_default()
        } else {
            std::borrow::Cow::Borrowed(&*r.name)
        };
        RequestIdent {
            kind: &r.kind.kind,
            kind_label: kind_label(&r.kind.group, &r.kind.kind),
            operation: operation_label(r),
            namespace: r.namespace.as_deref().unwrap_or_default(),
            name,
            user: &r.user_info.username,
            dry_run: r.dry_run,
        }
    }
}

fn operation_label(r: &AdmissionRequest<'_>) -> &'static str {
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
