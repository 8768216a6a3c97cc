//! Shared set-up for the benches: the AdmissionReview fixtures (bench/fixtures, written by
//! bench/fixtures/gen.py) and an `Admission` wired exactly as `tether review` wires it
//! (standalone handlers: built-in kinds, access reviews allowed, no cluster).
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use serde_json::Value;
use tether::admission::{Admission, Webhook};
use tether::appdomains::StaticDomains;
use tether::authz::cache::CachedReviewer;
use tether::authz::{AccessDecision, AccessReviewer, AuthzError, Identity, ResourceAttributes};
use tether::cli::PolicyArgs;
use tether::config::PolicyConfig;
use tether::metrics::Metrics;
use tether::workloads::StaticDeployments;

pub const ATTACHED_CREATE: &str = include_str!("../../bench/fixtures/attached-create.json");
pub const ATTACHED_INVALID: &str = include_str!("../../bench/fixtures/attached-invalid.json");
pub const ATTACHED_200K: &str = include_str!("../../bench/fixtures/attached-200k.json");
pub const HPA_MUTATE: &str = include_str!("../../bench/fixtures/hpa-mutate.json");
pub const APPDOMAIN_MUTATE: &str = include_str!("../../bench/fixtures/appdomain-mutate.json");

/// The time budget `Admission::review` gets, as with `?timeout=10s`.
pub const BUDGET: Duration = Duration::from_millis(9750);

#[derive(Parser)]
struct PolicyOnly {
    #[command(flatten)]
    policy: PolicyArgs,
}

/// The default policy plus a domain root (`tether review --domain-root apps.example.com`),
/// without which AppDomains are denied.
pub fn default_policy() -> PolicyConfig {
    let args = PolicyOnly::try_parse_from(["bench", "--domain-root", "apps.example.com"])
        .expect("policy flags parse");
    PolicyConfig::from_args(&args.policy).expect("default policy is valid")
}

/// Stands in for the API server's SubjectAccessReview: allows, after a 1 ms round trip.
pub struct SlowAllow;

#[async_trait::async_trait]
impl AccessReviewer for SlowAllow {
    async fn review(
        &self,
        _who: &Identity<'_>,
        _attrs: &ResourceAttributes<'_>,
    ) -> Result<AccessDecision, AuthzError> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok(AccessDecision {
            allowed: true,
            reason: "".into(),
        })
    }
}

/// An `Admission` whose access reviews go through the cache as in cluster mode
/// (`--access-review-cache-ttl`, here 60 s) to [`SlowAllow`]; warm it before measuring.
pub fn cached_sar_admission() -> Arc<Admission> {
    let metrics = Metrics::new();
    let (mut handlers, _) = tether::app::offline_handlers(
        default_policy(),
        Arc::new(StaticDeployments::default()),
        Arc::new(StaticDomains::default()),
        &metrics,
    );
    handlers.reviewer = Arc::new(CachedReviewer::new(
        Arc::new(SlowAllow),
        Duration::from_secs(60),
        Duration::from_secs(12),
        metrics.clone(),
    ));
    Admission::new(metrics, handlers, None)
}

/// An `Admission` as `tether review` / `serve --standalone` builds it.
pub fn offline_admission() -> Arc<Admission> {
    let metrics = Metrics::new();
    let (handlers, warning) = tether::app::offline_handlers(
        default_policy(),
        Arc::new(StaticDeployments::default()),
        Arc::new(StaticDomains::default()),
        &metrics,
    );
    Admission::new(metrics, handlers, Some(warning))
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The `request.object.spec` of a fixture.
pub fn spec_of(review: &str) -> tether::borrowed_json::Value<'static> {
    let v: Value = serde_json::from_str(review).expect("fixture is JSON");
    v.pointer("/request/object/spec")
        .cloned()
        .expect("fixture has request.object.spec")
        .into()
}

/// The `request.object` of a fixture.
pub fn object_of(review: &str) -> Value {
    let v: Value = serde_json::from_str(review).expect("fixture is JSON");
    v.pointer("/request/object")
        .cloned()
        .expect("fixture has request.object")
}

/// Runs one review and returns the answer body as a JSON value (for sanity checks).
pub fn answer(
    rt: &tokio::runtime::Runtime,
    adm: &Admission,
    webhook: Webhook,
    body: &str,
) -> Value {
    let a = rt
        .block_on(adm.review(webhook, body.as_bytes(), BUDGET))
        .expect("fixture is a valid AdmissionReview");
    serde_json::from_slice(&a.body).expect("answer is JSON")
}

/// Fails loudly when a fixture no longer takes the path a bench claims to measure.
pub fn check_fixtures(rt: &tokio::runtime::Runtime, adm: &Admission) {
    let a = answer(rt, adm, Webhook::Validate, ATTACHED_CREATE);
    assert_eq!(a["response"]["allowed"], true, "attached-create: {a}");
    let a = answer(rt, adm, Webhook::Validate, ATTACHED_INVALID);
    assert_eq!(a["response"]["allowed"], false, "attached-invalid: {a}");
    let msg = a["response"]["status"]["message"].as_str().unwrap_or("");
    assert!(
        msg.matches("; ").count() >= 2,
        "attached-invalid should have 3 violations: {msg}"
    );
    let a = answer(rt, adm, Webhook::Mutate, HPA_MUTATE);
    assert!(a["response"]["patch"].is_string(), "hpa-mutate: {a}");
    let a = answer(rt, adm, Webhook::Mutate, APPDOMAIN_MUTATE);
    assert!(a["response"]["patch"].is_string(), "appdomain-mutate: {a}");
    let a = answer(rt, adm, Webhook::Validate, ATTACHED_200K);
    assert_eq!(a["response"]["allowed"], true, "attached-200k: {a}");
}
