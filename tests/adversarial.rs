//! Adversarial inputs (issue 8): each gets a clear deny or an HTTP 400 naming the problem,
//! never a panic, a hang or an echo of megabytes. Decided in-process through
//! `Admission::review` (the exact path the server runs) and, for a few, through the real
//! server over TLS; plus the cheap transport cases (plaintext to the TLS port, old TLS
//! versions, oversized headers, slowloris, the connection cap).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rstest::rstest;
use serde_json::{json, Value};
use tether::admission::{Admission, Webhook};
use tether::appdomains::StaticDomains;
use tether::authz::rbac_file::RbacFile;
use tether::cli::PolicyArgs;
use tether::config::PolicyConfig;
use tether::metrics::Metrics;
use tether::workloads::StaticDeployments;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The RBAC fixture shared with tests/admission_attached.rs and the fuzz targets.
const RBAC: &str = include_str!("fixtures/rbac.yaml");

/// Every answer, allow or deny, stays below this: a deny names the problem, it does not
/// echo the input back (the message is also logged at info level).
const MAX_ANSWER: usize = 64 * 1024;

/// The in-process admission path with the standalone handlers and the RBAC file above.
fn admission() -> Arc<Admission> {
    admission_with(|_, _| {})
}

/// [`admission`], with its handlers adjusted first (given the metrics they count into).
fn admission_with(
    adjust: impl FnOnce(&mut tether::admission::handlers::Handlers, &Metrics),
) -> Arc<Admission> {
    let args = PolicyArgs {
        banned_kinds: vec!["Deployment".into(), "Pod".into(), "Job".into()],
        allowed_kinds: None,
        domain_root: None,
        runner_kservice: "runner".into(),
        reserved_names: vec![],
        rbac_file: None,
        pod_namespace: "tether-system".into(),
        service_account_name: "tether".into(),
    };
    let mut cfg = PolicyConfig::from_args(&args).unwrap();
    cfg.rbac = Some(RbacFile::parse(RBAC).unwrap());
    let mut deployments = StaticDeployments::default();
    deployments.insert(
        "payments",
        "web",
        BTreeMap::from([("app".to_string(), "web".to_string())]),
    );
    let metrics = Metrics::new();
    let (mut handlers, warning) = tether::app::offline_handlers(
        cfg,
        Arc::new(deployments),
        Arc::new(StaticDomains::default()),
        &metrics,
    );
    adjust(&mut handlers, &metrics);
    Admission::new(metrics, handlers, Some(warning))
}

/// What came back: an HTTP 400 text, or a review answer.
#[derive(Debug)]
enum Outcome {
    Http400(String),
    Review {
        allowed: bool,
        code: u64,
        message: String,
    },
}

impl Outcome {
    fn deny(&self) -> (u64, &str) {
        match self {
            Outcome::Review {
                allowed: false,
                code,
                message,
            } => (*code, message),
            other => panic!("expected a deny, got {other:?}"),
        }
    }
    fn http400(&self) -> &str {
        match self {
            Outcome::Http400(t) => t,
            other => panic!("expected HTTP 400, got {other:?}"),
        }
    }
}

/// Decides `body` in-process within a bounded time; checks the uid echo and the answer size.
async fn decide(adm: &Admission, webhook: Webhook, body: &[u8]) -> Outcome {
    let started = Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        adm.review(webhook, body, Duration::from_secs(5)),
    )
    .await
    .expect("review hung");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "review took {:?}",
        started.elapsed()
    );
    match out {
        Err(e) => {
            let t = e.to_string();
            assert!(t.len() < MAX_ANSWER, "400 text of {} bytes", t.len());
            Outcome::Http400(t)
        }
        Ok(a) => {
            assert!(
                a.body.len() < MAX_ANSWER,
                "answer of {} bytes echoes the input: {}…",
                a.body.len(),
                String::from_utf8_lossy(&a.body[..400])
            );
            let v: Value = serde_json::from_slice(&a.body).unwrap();
            let r = &v["response"];
            assert_eq!(r["uid"], "adv", "uid echoed");
            assert_eq!(r["allowed"].as_bool(), Some(a.allowed));
            Outcome::Review {
                allowed: a.allowed,
                code: r["status"]["code"].as_u64().unwrap_or(200),
                message: r["status"]["message"].as_str().unwrap_or("").to_string(),
            }
        }
    }
}

/// The start of a long message, for assertion output.
fn head(s: &str) -> String {
    s.chars().take(300).collect()
}

fn hpa() -> Value {
    json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "spec": {"scaleTargetRef": {}, "minReplicas": 2, "maxReplicas": 10}
    })
}

fn atr(object: Value) -> Value {
    json!({
        "apiVersion": "tether.dev/v1alpha1",
        "kind": "AttachedResource",
        "metadata": {"name": "a", "namespace": "payments"},
        "spec": {"workloadRef": {"name": "web"}, "object": object}
    })
}

/// An AttachedResource CREATE review by alice (group devs) in payments.
fn atr_review(object: Value) -> Value {
    review(
        "adv",
        "tether.dev",
        "v1alpha1",
        "AttachedResource",
        "attachedresources",
        "CREATE",
        "payments",
        Some(atr(object)),
        None,
    )
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// `atr_review(hpa())` serialised, with the JSON text `token` spliced in place of the string
/// `"@@"` (for numbers and escapes a `Value` cannot hold).
fn with_token(object: Value, token: &str) -> Vec<u8> {
    let text = serde_json::to_string(&atr_review(object)).unwrap();
    assert!(text.contains("\"@@\""));
    text.replacen("\"@@\"", token, 1).into_bytes()
}

fn hpa_with_min(min: Value) -> Value {
    let mut o = hpa();
    o["spec"]["minReplicas"] = min;
    o
}

#[tokio::test]
async fn baseline_is_allowed() {
    let adm = admission();
    let out = decide(&adm, Webhook::Validate, &bytes(&atr_review(hpa()))).await;
    assert!(
        matches!(out, Outcome::Review { allowed: true, .. }),
        "{out:?}"
    );
}

/// An API server that never answers an access review.
struct NeverAnswers;

#[async_trait::async_trait]
impl tether::authz::AccessReviewer for NeverAnswers {
    async fn review(
        &self,
        _who: &tether::authz::Identity<'_>,
        _attrs: &tether::authz::ResourceAttributes<'_>,
    ) -> Result<tether::authz::AccessDecision, tether::authz::AuthzError> {
        std::future::pending().await
    }
}

/// The decision's own budget (the review's `?timeout=`): a decision that waits on an access
/// review past it is denied with a 500 that says so, within the budget, not left hanging.
/// (Most decisions are taken in one poll before any timer is armed; this one is not.)
#[tokio::test]
async fn a_decision_past_its_budget_is_denied_500_in_time() {
    let adm = admission_with(|handlers, metrics| {
        handlers.reviewer = Arc::new(tether::authz::cache::CachedReviewer::new(
            Arc::new(NeverAnswers),
            Duration::from_secs(60),
            Duration::from_secs(10),
            metrics.clone(),
        ));
    });
    let body = bytes(&atr_review(hpa()));
    let started = Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        adm.review(Webhook::Validate, &body, Duration::from_millis(200)),
    )
    .await
    .expect("the review outlived its budget")
    .expect("a review answer");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(5),
        "answered after {waited:?}"
    );
    assert!(!answer.allowed);
    let v: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(v["response"]["status"]["code"], 500, "{v}");
    let message = v["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("tether could not decide within 200 ms"),
        "{message}"
    );
}

#[tokio::test]
async fn deep_nesting_is_a_400_not_a_stack_overflow() {
    let adm = admission();
    // 100k '[' as the whole body: serde_json stops at depth 128.
    let body = vec![b'['; 100_000];
    let out = decide(&adm, Webhook::Validate, &body).await;
    let t = out.http400();
    assert!(
        t.starts_with("body is not valid JSON: recursion limit exceeded"),
        "{t}"
    );

    // 100k '[' inside spec.object (an unterminated document: the parser must give up on
    // depth before it notices the missing brackets).
    let mut body = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"adv","object":"#.to_vec();
    body.extend(std::iter::repeat_n(b'[', 100_000));
    let out = decide(&adm, Webhook::Validate, &body).await;
    assert!(out.http400().contains("not valid JSON"), "{out:?}");

    // Well-formed but 200 deep inside spec.object: the envelope is fine (the uid is known),
    // the request is not: a 400 answer naming request.object.
    let mut deep = json!(1);
    for _ in 0..200 {
        deep = json!([deep]);
    }
    let mut obj = hpa();
    obj["spec"]["metrics"] = deep;
    for webhook in [Webhook::Validate, Webhook::Mutate] {
        let out = decide(&adm, webhook, &bytes(&atr_review(obj.clone()))).await;
        let (code, msg) = out.deny();
        assert_eq!(code, 400, "{msg}");
        assert!(msg.starts_with("request.object"), "{msg}");
        assert!(msg.contains("recursion limit exceeded"), "{msg}");
    }
}

#[tokio::test]
async fn huge_kind_string_is_denied_without_echoing_it() {
    let adm = admission();
    // 2.5 MiB string as the kind: not in the built-in table. The deny must name the field
    // without quoting 2.5 MiB back (the message is also logged at info level).
    let mut o = hpa();
    o["kind"] = json!("K".repeat(2_500_000));
    let out = decide(&adm, Webhook::Validate, &bytes(&atr_review(o))).await;
    let (code, msg) = out.deny();
    assert_eq!(code, 400);
    assert!(msg.starts_with("spec.object.kind: "), "{}", head(msg));
}

#[tokio::test]
async fn huge_array_as_scale_target_ref_is_denied() {
    let adm = admission();
    // 300k-element array as scaleTargetRef: tether's field, only {} or null.
    let mut o = hpa();
    o["spec"]["scaleTargetRef"] = json!(vec![0; 300_000]);
    let out = decide(&adm, Webhook::Validate, &bytes(&atr_review(o))).await;
    let (code, msg) = out.deny();
    assert_eq!(code, 403);
    assert!(
        msg.starts_with("spec.object.spec.scaleTargetRef: tether owns this field"),
        "{}",
        head(msg)
    );
}

#[tokio::test]
async fn huge_string_as_min_replicas_is_denied() {
    let adm = admission();
    let o = hpa_with_min(json!("9".repeat(2_000_000)));
    let out = decide(&adm, Webhook::Validate, &bytes(&atr_review(o))).await;
    let (code, msg) = out.deny();
    assert_eq!(code, 400);
    assert!(
        msg.starts_with("spec.object.spec.minReplicas: "),
        "{}",
        head(msg)
    );
}

#[tokio::test]
async fn many_bad_placeholders_give_a_bounded_message() {
    let adm = admission();
    // 200k strings with a bad placeholder each (1.2 MiB): one violation per string, but
    // the message must stay bounded.
    let mut o = hpa();
    o["spec"]["metrics"] = json!(vec!["{{"; 200_000]);
    let out = decide(&adm, Webhook::Validate, &bytes(&atr_review(o))).await;
    let (code, msg) = out.deny();
    assert_eq!(code, 400);
    assert!(
        msg.starts_with("spec.object.spec.metrics[0]: unclosed \"{{\""),
        "{}",
        head(msg)
    );
}

#[tokio::test]
async fn huge_harmless_annotation_is_allowed() {
    let adm = admission();
    // A huge but harmless annotation is just data: allowed (and not echoed).
    let mut o = hpa();
    o["metadata"] = json!({"annotations": {"note": "x".repeat(2_500_000)}});
    let out = decide(&adm, Webhook::Validate, &bytes(&atr_review(o))).await;
    assert!(
        matches!(out, Outcome::Review { allowed: true, .. }),
        "{out:?}"
    );
}

#[tokio::test]
async fn duplicate_keys() {
    let adm = admission();
    // In the envelope: serde refuses duplicate fields of a struct.
    let body = br#"{"apiVersion":"admission.k8s.io/v1","apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"adv"}}"#;
    let t = decide(&adm, Webhook::Validate, body)
        .await
        .http400()
        .to_string();
    assert!(t.contains("duplicate field `apiVersion`"), "{t}");

    // In the request: answered with the uid, naming the field.
    let text = serde_json::to_string(&atr_review(hpa())).unwrap();
    let dup_op = text.replacen(
        "\"operation\":\"CREATE\"",
        "\"operation\":\"CREATE\",\"operation\":\"DELETE\"",
        1,
    );
    assert_ne!(dup_op, text);
    let (code, msg) = decide(&adm, Webhook::Validate, dup_op.as_bytes())
        .await
        .deny()
        .clone_parts();
    assert_eq!(code, 400);
    assert!(msg.contains("duplicate field `operation`"), "{msg}");

    // Inside the object the last key wins, as in the API server's decoder: a Deployment
    // smuggled after an HPA kind is what would be stored, and is what gets denied.
    let text = serde_json::to_string(&atr_review(hpa())).unwrap();
    let smuggled = text.replacen(
        "\"kind\":\"HorizontalPodAutoscaler\"",
        "\"kind\":\"HorizontalPodAutoscaler\",\"kind\":\"Deployment\"",
        1,
    );
    assert_ne!(smuggled, text);
    let out = decide(&adm, Webhook::Validate, smuggled.as_bytes()).await;
    let (code, msg) = out.deny();
    // 400: besides being banned, autoscaling/v2 serves no Deployment.
    assert_eq!(code, 400);
    assert!(
        msg.starts_with("spec.object.kind: kind \"Deployment\" may not be attached"),
        "{msg}"
    );
}

trait CloneParts {
    fn clone_parts(self) -> (u64, String);
}
impl CloneParts for (u64, &str) {
    fn clone_parts(self) -> (u64, String) {
        (self.0, self.1.to_string())
    }
}

#[tokio::test]
async fn non_utf8_and_bad_escapes() {
    let adm = admission();
    let mut body = bytes(&atr_review(hpa()));
    let at = body.windows(5).position(|w| w == b"alice").unwrap();
    body[at] = 0xff;
    let t = decide(&adm, Webhook::Validate, &body)
        .await
        .http400()
        .to_string();
    assert!(
        t.starts_with("body is not valid JSON: invalid unicode code point"),
        "{t}"
    );

    // A lone surrogate escape inside the object: the envelope is fine, the request is not.
    let o = hpa_with_min(json!("@@"));
    let body = with_token(o, r#""\ud800""#);
    let (code, msg) = decide(&adm, Webhook::Validate, &body)
        .await
        .deny()
        .clone_parts();
    assert_eq!(code, 400);
    assert!(
        msg.starts_with(
            "request.object.spec.object.spec.minReplicas: unexpected end of hex escape"
        ),
        "{msg}"
    );
}

#[tokio::test]
async fn numbers_out_of_range_and_wrong_types_for_min_replicas() {
    let adm = admission();
    // 1e400 does not fit an f64: the request cannot be read.
    let out = decide(
        &adm,
        Webhook::Validate,
        &with_token(hpa_with_min(json!("@@")), "1e400"),
    )
    .await;
    let (code, msg) = out.deny();
    assert_eq!(code, 400);
    assert!(msg.starts_with("request.object"), "{msg}");
    assert!(msg.contains("number out of range"), "{msg}");

    // 2^64 is a positive whole number: SPEC rule 4 only forbids 0, so tether admits it (the
    // API server's schema for the copy, an int32, is what refuses it later). -2^63-1 is
    // negative: Malformed.
    let out = decide(
        &adm,
        Webhook::Validate,
        &with_token(hpa_with_min(json!("@@")), "18446744073709551616"),
    )
    .await;
    assert!(
        matches!(out, Outcome::Review { allowed: true, .. }),
        "{out:?}"
    );
    let out = decide(
        &adm,
        Webhook::Validate,
        &with_token(hpa_with_min(json!("@@")), "-9223372036854775809"),
    )
    .await;
    let (code, msg) = out.deny();
    assert_eq!(code, 400, "{msg}");
    assert!(msg.starts_with("spec.object.spec.minReplicas: "), "{msg}");

    // Out-of-range numbers where the request has typed fields.
    let mut r = atr_review(hpa());
    r["request"]["dryRun"] = json!("@@");
    let text = serde_json::to_string(&r)
        .unwrap()
        .replacen("\"@@\"", "18446744073709551616", 1);
    let (code, msg) = decide(&adm, Webhook::Validate, text.as_bytes())
        .await
        .deny()
        .clone_parts();
    assert_eq!(code, 400);
    assert!(msg.starts_with("request.dryRun: invalid type"), "{msg}");
}

/// -0 and -0.0 are zero: Forbidden by rule 4 (written as raw JSON number tokens).
#[rstest]
#[case("-0")]
#[case("-0.0")]
#[case("0.0")]
#[tokio::test]
async fn min_replicas_spelled_as_zero_is_forbidden(#[case] tok: &str) {
    let adm = admission();
    let out = decide(
        &adm,
        Webhook::Validate,
        &with_token(hpa_with_min(json!("@@")), tok),
    )
    .await;
    let (code, msg) = out.deny();
    assert_eq!(code, 403, "{tok}: {msg}");
    assert!(
        msg.starts_with("spec.object.spec.minReplicas: "),
        "{tok}: {msg}"
    );
}

/// Strings, fractions, negatives, booleans, objects: Malformed, naming the field.
#[rstest]
#[case::numeric_string(json!("2"))]
#[case::zero_string(json!("0"))]
#[case::fraction(json!(1.5))]
#[case::negative(json!(-1))]
#[case::boolean(json!(true))]
#[case::object(json!({"n": 2}))]
#[case::array(json!([2]))]
#[tokio::test]
async fn min_replicas_of_the_wrong_type_is_malformed(#[case] bad: Value) {
    let adm = admission();
    let out = decide(
        &adm,
        Webhook::Validate,
        &bytes(&atr_review(hpa_with_min(bad.clone()))),
    )
    .await;
    let (code, msg) = out.deny();
    assert_eq!(code, 400, "{bad}: {msg}");
    assert!(
        msg.starts_with("spec.object.spec.minReplicas: "),
        "{bad}: {msg}"
    );
}

/// Banned kinds are matched case-insensitively and after trimming whitespace. Only the exact
/// spelling is also a kind apps/v1 serves; the others are Malformed as well (discovery is
/// exact), so they answer 400 and say the kind is not in the resource table.
#[rstest]
#[case::exact("Deployment", 403)]
#[case::lowercase("deployment", 400)]
#[case::uppercase("DEPLOYMENT", 400)]
#[case::leading_space(" Deployment", 400)]
#[case::trailing_tab("Deployment\t", 400)]
#[case::mixed_case("dEpLoYmEnT", 400)]
#[tokio::test]
async fn banned_kinds_match_whatever_the_case(#[case] kind: &str, #[case] want: u64) {
    let adm = admission();
    let mut o = hpa();
    o["kind"] = json!(kind);
    o["apiVersion"] = json!("apps/v1");
    let (code, msg) = decide(&adm, Webhook::Validate, &bytes(&atr_review(o)))
        .await
        .deny()
        .clone_parts();
    let banned = format!(
        "spec.object.kind: kind {:?} may not be attached: it is in --banned-kinds",
        kind.trim()
    );
    assert!(msg.starts_with(&banned), "{kind:?}: {msg}");
    assert_eq!(code, want, "{kind:?}: {msg}");
    if want == 400 {
        assert!(
            msg.contains("is not in tether's built-in resource table"),
            "{kind:?}: {msg}"
        );
    }
}

#[tokio::test]
async fn scale_target_ref_as_array_and_odd_kinds() {
    let adm = admission();
    let mut o = hpa();
    o["spec"]["scaleTargetRef"] = json!([]);
    let (code, msg) = decide(&adm, Webhook::Validate, &bytes(&atr_review(o)))
        .await
        .deny()
        .clone_parts();
    assert_eq!(code, 403);
    assert!(msg.starts_with("spec.object.spec.scaleTargetRef: tether owns this field, so it may only be {} or null (got [])"), "{msg}");

    // Not banned but oddly cased: discovery is case-sensitive and says what was meant.
    let mut o = hpa();
    o["kind"] = json!("horizontalpodautoscaler");
    let (code, msg) = decide(&adm, Webhook::Validate, &bytes(&atr_review(o)))
        .await
        .deny()
        .clone_parts();
    assert_eq!(code, 400, "{msg}");
    assert!(
        msg.starts_with("spec.object.kind: kind \"horizontalpodautoscaler\""),
        "{msg}"
    );
    assert!(msg.contains("HorizontalPodAutoscaler"), "{msg}");
    // Whitespace only.
    let mut o = hpa();
    o["kind"] = json!(" \t ");
    let (code, msg) = decide(&adm, Webhook::Validate, &bytes(&atr_review(o)))
        .await
        .deny()
        .clone_parts();
    assert_eq!(code, 400, "{msg}");
    assert!(msg.starts_with("spec.object.kind: required"), "{msg}");

    // The review's own kind with odd casing is not tether's kind: routed as unhandled
    // (allowed unchanged), never decided as if it were an AttachedResource.
    let mut r = atr_review(hpa());
    r["request"]["kind"]["kind"] = json!("attachedresource");
    let out = decide(&adm, Webhook::Validate, &bytes(&r)).await;
    assert!(
        matches!(out, Outcome::Review { allowed: true, .. }),
        "{out:?}"
    );
}

#[rstest]
#[case::unclosed_at_start("{{ .Version", "unclosed \"{{\" at byte 0")]
#[case::unclosed_after_text("x-{{ .Version }", "unclosed \"{{\" at byte 2")]
#[case::nested("{{ {{ .Version }} }}", "unknown placeholder")]
#[case::empty("{{}}", "unknown placeholder \"{{}}\" at byte 0")]
#[case::wrong_case("{{ .version }}", "did you mean {{ .Version }}?")]
#[tokio::test]
async fn unbalanced_placeholders(#[case] value: &str, #[case] fragment: &str) {
    let adm = admission();
    let mut o = hpa();
    o["metadata"] = json!({"labels": {"v": value}});
    let (code, msg) = decide(&adm, Webhook::Validate, &bytes(&atr_review(o)))
        .await
        .deny()
        .clone_parts();
    assert_eq!(code, 400, "{value:?}: {msg}");
    assert!(
        msg.starts_with("spec.object.metadata.labels.v: "),
        "{value:?}: {msg}"
    );
    assert!(msg.contains(fragment), "{value:?}: {msg}");
}

#[tokio::test]
async fn closing_braces_alone_are_plain_text() {
    let adm = admission();
    // A "}}" that closes nothing is plain text.
    let mut o = hpa();
    o["metadata"] = json!({"annotations": {"j": "{\"a\":{\"b\":1}}"}});
    let out = decide(&adm, Webhook::Validate, &bytes(&atr_review(o))).await;
    assert!(
        matches!(out, Outcome::Review { allowed: true, .. }),
        "{out:?}"
    );
}

#[tokio::test]
async fn user_info_with_many_groups_or_huge_extra() {
    let adm = admission();
    // 10,000 groups, "devs" last: the RBAC evaluation still finds the binding.
    let mut r = atr_review(hpa());
    let mut groups: Vec<String> = (0..10_000).map(|i| format!("g{i}")).collect();
    groups.push("devs".into());
    r["request"]["userInfo"]["groups"] = json!(groups);
    let out = decide(&adm, Webhook::Validate, &bytes(&r)).await;
    assert!(
        matches!(out, Outcome::Review { allowed: true, .. }),
        "{out:?}"
    );
    // Without "devs": denied, naming the user, verb and resource; the groups are not echoed.
    groups.pop();
    r["request"]["userInfo"]["groups"] = json!(groups);
    let (code, msg) = decide(&adm, Webhook::Validate, &bytes(&r))
        .await
        .deny()
        .clone_parts();
    assert_eq!(code, 403);
    assert!(msg.starts_with("user \"alice\" may not create"), "{msg}");
    assert!(msg.contains("horizontalpodautoscalers"), "{msg}");

    // A 1 MiB extra value is carried (SPEC: extra goes to the access review) and not echoed.
    let mut r = atr_review(hpa());
    r["request"]["userInfo"]["extra"] = json!({"scopes": ["s".repeat(1 << 20)]});
    let out = decide(&adm, Webhook::Validate, &bytes(&r)).await;
    assert!(
        matches!(out, Outcome::Review { allowed: true, .. }),
        "{out:?}"
    );
    // Groups of the wrong type: a 400 naming the field.
    r["request"]["userInfo"]["groups"] = json!([1, 2]);
    let (code, msg) = decide(&adm, Webhook::Validate, &bytes(&r))
        .await
        .deny()
        .clone_parts();
    assert_eq!(code, 400);
    assert!(
        msg.starts_with("request.userInfo.groups[0]: invalid type: integer"),
        "{msg}"
    );
    r["request"]["userInfo"]["extra"] = json!({"scopes": "not-a-list"});
    r["request"]["userInfo"]["groups"] = json!([]);
    let (code, msg) = decide(&adm, Webhook::Validate, &bytes(&r))
        .await
        .deny()
        .clone_parts();
    assert_eq!(code, 400);
    assert!(
        msg.starts_with("request.userInfo.extra.scopes: invalid type"),
        "{msg}"
    );
}

#[tokio::test]
async fn huge_strings_in_typed_request_fields_are_not_echoed() {
    let adm = admission();
    let mut r = atr_review(hpa());
    r["request"]["operation"] = json!("X".repeat(1 << 20));
    let (code, msg) = decide(&adm, Webhook::Validate, &bytes(&r))
        .await
        .deny()
        .clone_parts();
    assert_eq!(code, 400);
    assert!(
        msg.starts_with("request.operation: unknown variant"),
        "{}",
        head(&msg)
    );
}

// ---------------------------------------------------------------------------------------
// Through the real server over TLS
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversarial_bodies_over_tls() {
    let s = Server::start(&[]);
    // Deep nesting: HTTP 400 with serde's reason.
    let r = post_raw(&s, "/validate", vec![b'['; 100_000]).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text()
            .starts_with("body is not valid JSON: recursion limit exceeded"),
        "{}",
        r.text()
    );
    // Non-UTF-8.
    let mut body = bytes(&atr_review(hpa()));
    let at = body.windows(5).position(|w| w == b"alice").unwrap();
    body[at] = 0xff;
    let r = post_raw(&s, "/mutate", body).await;
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("invalid unicode code point"),
        "{}",
        r.text()
    );
    // scaleTargetRef as an array: a 403 review answer with the uid.
    let mut o = hpa();
    o["spec"]["scaleTargetRef"] = json!(["x"]);
    let r = post_raw(&s, "/validate", bytes(&atr_review(o))).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["response"]["uid"], "adv");
    assert_eq!(v["response"]["allowed"], false);
    assert_eq!(v["response"]["status"]["code"], 403);
    assert!(v["response"]["status"]["message"]
        .as_str()
        .unwrap()
        .starts_with("spec.object.spec.scaleTargetRef:"));
    // minReplicas as a string, 1e400: 400 answers with the uid.
    let r = post_raw(
        &s,
        "/validate",
        bytes(&atr_review(hpa_with_min(json!("2")))),
    )
    .await;
    assert_eq!(r.json()["response"]["status"]["code"], 400);
    let r = post_raw(
        &s,
        "/validate",
        with_token(hpa_with_min(json!("@@")), "1e400"),
    )
    .await;
    let v = r.json();
    assert_eq!(v["response"]["status"]["code"], 400);
    assert!(v["response"]["status"]["message"]
        .as_str()
        .unwrap()
        .contains("number out of range"));
    // 10,000 groups (well within 3 MiB).
    let mut rv = atr_review(hpa());
    rv["request"]["userInfo"]["groups"] = json!((0..10_000)
        .map(|i| format!("group-{i}"))
        .collect::<Vec<_>>());
    let r = post_raw(&s, "/validate", bytes(&rv)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["response"]["uid"], "adv");
    // Still healthy.
    let h2 = H2::connect(s.addr, &s.ca).await;
    let r = h2.send(request("GET", "/healthz", None, vec![])).await;
    assert_eq!(r.status, 200);
}

// ---------------------------------------------------------------------------------------
// Transport
// ---------------------------------------------------------------------------------------

/// Reads until EOF or `limit`; returns what arrived and whether the peer closed.
async fn read_until_close(s: &mut (impl AsyncReadExt + Unpin), limit: Duration) -> (Vec<u8>, bool) {
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Err(_) => return (buf, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (buf, true),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_http_to_the_tls_port_gets_no_http_answer() {
    let s = Server::start(&[]);
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
        .await
        .unwrap();
    let (got, closed) = read_until_close(&mut tcp, Duration::from_secs(5)).await;
    assert!(closed, "connection left open");
    assert!(
        !got.starts_with(b"HTTP/"),
        "plaintext got an HTTP answer: {:?}",
        String::from_utf8_lossy(&got)
    );
    // At most a TLS alert record (content type 21), never application data.
    if let Some(&first) = got.first() {
        assert_eq!(first, 21, "unexpected bytes {got:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_0_and_1_1_are_refused() {
    let s = Server::start(&[]);
    let ca = s.certs.join("ca.crt");
    let mut tried = 0;
    for flag in ["-tls1", "-tls1_1"] {
        let out = std::process::Command::new("openssl")
            .args([
                "s_client",
                flag,
                "-connect",
                &s.addr.to_string(),
                "-servername",
                "localhost",
                // OpenSSL 3 only offers TLS 1.0/1.1 at security level 0.
                "-cipher",
                "DEFAULT:@SECLEVEL=0",
            ])
            .arg("-CAfile")
            .arg(&ca)
            .stdin(std::process::Stdio::null())
            .output();
        let out =
            out.expect("openssl not found: scripts/test.sh installs the Debian package `openssl`");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if text.contains("unknown option") || text.contains("no protocols available") {
            // This OpenSSL build cannot even offer the old version (OpenSSL 3 at security
            // level 1+); nothing to learn from it.
            eprintln!(
                "openssl {flag}: cannot offer it locally: {}",
                text.lines().next().unwrap_or("")
            );
            continue;
        }
        tried += 1;
        assert!(!out.status.success(), "openssl {flag} connected: {text}");
        // The server answered the old ClientHello with an alert (rustls: protocol_version).
        assert!(text.contains("alert"), "{flag}: {text}");
        assert!(
            !text.contains("Cipher is ") || text.contains("Cipher is (NONE)"),
            "{flag}: {text}"
        );
    }
    // The same tool speaks TLS 1.2 to us, so a refusal above is the server's doing.
    let out = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-tls1_2",
            "-connect",
            &s.addr.to_string(),
            "-servername",
            "localhost",
        ])
        .arg("-CAfile")
        .arg(&ca)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Protocol  : TLSv1.2") || text.contains("TLSv1.2"),
        "{text}"
    );
    // No silent pass: both old versions must really have been offered and refused.
    assert_eq!(
        tried, 2,
        "this openssl could not offer TLS 1.0/1.1, so nothing was checked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_rejected_and_server_survives() {
    let s = Server::start(&[]);
    let mut tls = tls_connect(s.addr, s.tls_config(&[b"http/1.1"])).await;
    let mut head = String::from("GET /healthz HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..200 {
        head.push_str(&format!("X-Pad-{i}: {}\r\n", "a".repeat(1000)));
    }
    head.push_str("\r\n");
    let _ = tls.write_all(head.as_bytes()).await;
    let (got, closed) = read_until_close(&mut tls, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(closed, "connection with 200 KB of headers left open");
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 431"),
        "{text}"
    );
    // A fresh client is served.
    let mut h1 = H1::connect(s.addr, &s.ca).await;
    let r = h1.send(request("GET", "/healthz", None, vec![])).await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_does_not_block_others_and_is_closed_after_the_header_timeout() {
    let s = Server::start(&[]);
    let started = Instant::now();
    let mut slow = tls_connect(s.addr, s.tls_config(&[b"http/1.1"])).await;
    slow.write_all(b"POST /validate HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    // Trickle a header byte every 500 ms in the background until the server hangs up.
    let trickle = tokio::spawn(async move {
        for i in 0..60 {
            let line = format!("X-{i}: y\r\n");
            if slow.write_all(line.as_bytes()).await.is_err() || slow.flush().await.is_err() {
                return (Instant::now(), true);
            }
            let mut b = [0u8; 64];
            match tokio::time::timeout(Duration::from_millis(500), slow.read(&mut b)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return (Instant::now(), true),
                Ok(Ok(_)) => return (Instant::now(), true), // an error answer, then close
                Err(_) => {}
            }
        }
        (Instant::now(), false)
    });
    // Meanwhile others are served promptly, for as long as the slowloris connection is open
    // (the loop ends on that event; the pause only paces the requests).
    let mut served = 0;
    while !trickle.is_finished() {
        let t = Instant::now();
        let mut h1 = H1::connect(s.addr, &s.ca).await;
        let r = h1
            .send(request(
                "POST",
                "/validate",
                Some("application/json"),
                unhandled_review("other"),
            ))
            .await;
        assert_eq!(r.status, 200);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        served += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        served > 0,
        "no request was served while the slowloris connection was open"
    );
    let (closed_at, closed) = trickle.await.unwrap();
    assert!(closed, "slowloris connection still open after 30 s");
    let after = closed_at - started;
    // `--read-timeout` is 10 s by default, timed from the head's first byte and sampled
    // every 2.5 s.
    assert!(
        after >= Duration::from_secs(9) && after < Duration::from_secs(15),
        "closed after {after:?}"
    );
}

// The connection cap and the other budgets of issue 13 are in tests/budgets.rs.
