//! Shared set-up and invariants for the fuzz targets (see README.md).
//!
//! Every admission target runs `Admission::review`, the exact path the server runs, with the
//! offline handlers of `tether serve --standalone` on a current-thread tokio runtime that is
//! created once per process. Two configurations are fuzzed side by side: one whose access
//! reviews are answered from an RBAC file (so the deny paths run), one that allows every
//! access review (so inputs reach the end of the allow path).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use tether::admission::review::{self, EnvelopeError};
use tether::admission::{Admission, Answer, Webhook};
use tether::appdomains::StaticDomains;
use tether::authz::rbac_file::RbacFile;
use tether::cli::PolicyArgs;
use tether::config::PolicyConfig;
use tether::metrics::Metrics;
use tether::workloads::StaticDeployments;

/// The RBAC file of the RBAC-backed configuration, shared with the tests
/// (`tests/fixtures/rbac.yaml`): users in group `devs` and tether's service account may
/// manage HPAs and PDBs in `payments` (`devs` also NetworkPolicies); nobody else may do
/// anything.
pub const RBAC: &str = include_str!("../../tests/fixtures/rbac.yaml");

/// The budget given to every review; offline handlers never come close to it.
pub const BUDGET: Duration = Duration::from_secs(10);

pub struct Env {
    pub rt: tokio::runtime::Runtime,
    /// Access reviews from [`RBAC`].
    pub rbac: Arc<Admission>,
    /// Access reviews all allowed (standalone without `--rbac-file`).
    pub open: Arc<Admission>,
}

fn policy_args() -> PolicyArgs {
    PolicyArgs {
        banned_kinds: tether::policy::DEFAULT_BANNED_KINDS
            .iter()
            .map(|k| k.to_string())
            .collect(),
        allowed_kinds: None,
        domain_root: Some("apps.example.com".into()),
        runner_kservice: "runner".into(),
        reserved_names: vec!["www".into(), "api".into()],
        rbac_file: None,
        pod_namespace: "tether-system".into(),
        service_account_name: "tether".into(),
    }
}

fn admission(rbac: Option<RbacFile>) -> Arc<Admission> {
    let mut cfg = PolicyConfig::from_args(&policy_args()).expect("fuzz policy config is valid");
    cfg.rbac = rbac;
    let mut deployments = StaticDeployments::default();
    deployments.insert(
        "payments",
        "web-v2",
        BTreeMap::from([("app".to_string(), "web".to_string())]),
    );
    let metrics = Metrics::new();
    let (handlers, warning) = tether::app::offline_handlers(
        cfg,
        Arc::new(deployments),
        Arc::new(StaticDomains::default()),
        &metrics,
    );
    Admission::new(metrics, handlers, Some(warning))
}

/// The process-wide environment, built on first use.
pub fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| Env {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime"),
        rbac: admission(Some(RbacFile::parse(RBAC).expect("fuzz RBAC file parses"))),
        open: admission(None),
    })
}

/// Runs `body` through both webhooks of both configurations and checks every answer.
pub fn review_all(body: &[u8]) {
    let env = env();
    for adm in [&env.rbac, &env.open] {
        for webhook in [Webhook::Mutate, Webhook::Validate] {
            let out = env.rt.block_on(adm.review(webhook, body, BUDGET));
            check_answer(webhook, body, out);
        }
    }
}

/// The invariants every answer must keep, whatever the input:
/// - an `Err` is exactly what `review::parse` says about the envelope (HTTP 400 text);
/// - an `Ok` is a v1 AdmissionReview echoing the request's uid, `allowed` agrees with
///   [`Answer::allowed`], a deny carries a known code, a reason and a non-empty message;
/// - a request that could not be parsed is never allowed (fail closed) and gets a 400 naming
///   the `request.` field;
/// - a patch is only sent on an allow, decodes to an RFC 6902 patch, and applies to the
///   object it was computed for (else the API server would fail the request opaquely).
pub fn check_answer(webhook: Webhook, body: &[u8], out: Result<Answer, EnvelopeError>) {
    let parsed = review::parse(body);
    let answer = match out {
        Err(e) => {
            assert!(!e.to_string().is_empty(), "empty envelope error");
            assert_eq!(parsed.err(), Some(e), "review() and parse() disagree");
            return;
        }
        Ok(a) => a,
    };
    let parsed = parsed.expect("review() answered but parse() refuses the envelope");
    let v: Value = serde_json::from_slice(&answer.body).expect("answer is JSON");
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["kind"], "AdmissionReview");
    let r = &v["response"];
    assert_eq!(
        r["uid"].as_str(),
        Some(&*parsed.uid),
        "uid not echoed"
    );
    assert_eq!(r["allowed"].as_bool(), Some(answer.allowed));
    if !answer.allowed {
        let code = r["status"]["code"]
            .as_u64()
            .expect("deny without status.code");
        assert!(
            matches!(code, 400 | 403 | 409 | 500),
            "unexpected deny code {code}"
        );
        let msg = r["status"]["message"].as_str().unwrap_or_default();
        assert!(!msg.trim().is_empty(), "deny without a message: {r}");
        assert!(r.get("patch").is_none(), "patch on a deny");
    }
    let req = match parsed.request {
        Err(e) => {
            assert!(!answer.allowed, "unparseable request allowed: {e}");
            assert_eq!(r["status"]["code"], 400);
            let msg = r["status"]["message"].as_str().unwrap_or_default();
            assert!(msg.starts_with("request."), "{msg}");
            return;
        }
        Ok(req) => req,
    };
    if let Some(p) = r.get("patch").and_then(Value::as_str) {
        assert_eq!(webhook, Webhook::Mutate, "validate webhook sent a patch");
        assert_eq!(r["patchType"], "JSONPatch");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(p)
            .expect("patch is base64");
        let patch: json_patch::Patch = serde_json::from_slice(&raw).expect("patch is JSON Patch");
        let mut obj = req
            .object
            .as_ref()
            .map(tether::borrowed_json::Value::to_json)
            .expect("a patch for a request without an object");
        if let Err(e) = json_patch::patch(&mut obj, &patch) {
            panic!(
                "tether's patch does not apply to the object it was computed for: {e}\npatch: {}\nobject: {}",
                String::from_utf8_lossy(&raw),
                req.object.as_ref().map(ToString::to_string).unwrap_or_default()
            );
        }
    }
}
