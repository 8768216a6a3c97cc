//! Issue 16, the cluster half: metrics that need an API server (access-review latency,
//! discovery calls, leader transitions, reconcile queue depth) on a real scrape of
//! `tether serve` behind the fake API server, and the Grafana dashboard checked against that
//! scrape: every PromQL expression parses (`promtool check rules` on a temporary rules file)
//! and names only metric families tether exports.

mod common;
#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;
#[path = "support/tether_cluster.rs"]
mod tether_cluster;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::metric_value;
use fake_apiserver::{FakeApiServer, Fault};
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{json, Value};
use tether::controller::{attached, Context, Settings};
use tether::discovery::{ApiResolver, KindResolver};
use tether::metrics::Metrics;
use tether_cluster::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const NS: &str = "payments";

async fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn deployment(name: &str, version: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "uid": format!("uid-{name}"),
                     "labels": {"tether.dev/workload": "worker", "tether.dev/version": version}},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}}
    })
}

/// The metric names a PromQL expression reads: identifiers outside label matchers, range
/// brackets, strings and grouping lists that are not functions, aggregations or keywords.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Operators, and aggregations (which may be followed by `by (...)` instead of `(`).
    const KEYWORDS: [&str; 28] = [
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "inf",
        "nan",
        "atan2",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut skip_group = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while i < chars.len() && chars[i] != close {
                    i += 1;
                }
                i += 1;
            }
            '(' if skip_group => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                skip_group = false;
                i += 1;
            }
            c if c.is_ascii_digit() || c == '.' => {
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '.' || chars[i] == '_')
                {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace());
                let lower = word.to_ascii_lowercase();
                if matches!(
                    lower.as_str(),
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                ) {
                    skip_group = true;
                } else if next != Some(&'(') && !KEYWORDS.contains(&lower.as_str()) {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[test]
fn metric_names_are_found_in_promql() {
    for (expr, want) in [
        (
            r#"sum by (webhook, decision) (rate(tether_admission_requests_total{job=~".*"}[5m]))"#,
            &["tether_admission_requests_total"][..],
        ),
        (
            r#"histogram_quantile(0.99, sum by (cache, le) (rate(tether_access_review_duration_seconds_bucket{job=~"a|b"}[5m])))"#,
            &["tether_access_review_duration_seconds_bucket"],
        ),
        (
            r#"sum(rate(x_total{cache=~"hit|shared"}[1m])) / sum(rate(y_total[1m])) > bool 0.5 and on (job) up"#,
            &["up", "x_total", "y_total"],
        ),
        ("min(a) - time()", &["a"]),
        ("vector(10)", &[]),
        (
            "changes(process_start_time_seconds[30m]) > 2 and on (job, instance) tether_build_info",
            &["process_start_time_seconds", "tether_build_info"],
        ),
    ] {
        let got: Vec<String> = metric_names(expr).into_iter().collect();
        assert_eq!(got, want, "{expr}");
    }
}

/// Families of a text exposition, with the series names a histogram or summary adds.
fn exported_names(scrape: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in scrape.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut it = rest.split_whitespace();
        let (Some(name), Some(kind)) = (it.next(), it.next()) else {
            continue;
        };
        names.insert(name.to_string());
        match kind {
            "histogram" => {
                for s in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{s}"));
                }
            }
            "summary" => {
                for s in ["_sum", "_count"] {
                    names.insert(format!("{name}{s}"));
                }
            }
            _ => {}
        }
    }
    names
}

/// Every expression of the dashboard's panels, with Grafana's variables replaced by what
/// Grafana would put there.
fn dashboard_exprs() -> Vec<(String, String)> {
    let path = format!("{ROOT}/charts/tether/files/dashboard.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut out = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("every target has an expr");
            let concrete = expr
                .replace("$__rate_interval", "2m")
                .replace("$timeout", "10")
                .replace("$job", ".*");
            assert!(!concrete.contains('$'), "unknown variable in {expr}");
            out.push((panel["title"].as_str().unwrap().to_string(), concrete));
        }
    }
    out
}

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect(
            "promtool not found: install the Debian package `prometheus` (scripts/test.sh does)",
        );
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// tether in a cluster, as the chart runs it: leader elected, an AttachedResource admitted
/// (access reviews) and reconciled (discovery). The scrape then has every family the
/// dashboard and the alerts read, and the dashboard's queries are checked against it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_scrape_has_the_new_metrics_and_covers_the_dashboard() {
    let c = TetherCluster::start(&["--controllers", "attached", "--lease-duration", "2s"]).await;
    let leader = || metric_value(&c.tether.metrics(), "tether_leader") == Some(1.0);
    wait_until("leadership", Duration::from_secs(30), leader).await;
    c.add_namespace(NS);
    c.fake.insert(deployment("worker-v1", "v1"));
    let atrs = Api::<DynamicObject>::namespaced_with(
        c.alice().await,
        NS,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("tether.dev", "v1alpha1", "AttachedResource"),
            "attachedresources",
        ),
    );
    for name in ["guard-a", "guard-b"] {
        let atr: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "tether.dev/v1alpha1", "kind": "AttachedResource",
            "metadata": {"name": name},
            "spec": {"workloadRef": {"name": "worker"},
                     "object": {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                                "spec": {"maxUnavailable": 1}}}
        }))
        .unwrap();
        atrs.create(&PostParams::default(), &atr)
            .await
            .unwrap_or_else(|e| panic!("create {name}: {e}\n{}", c.tether.logs()));
    }
    wait_until("two copies", Duration::from_secs(30), || {
        c.fake.list_all("poddisruptionbudgets").len() == 2
    })
    .await;
    // A scrape gathers one metric family after another. While the controller still works
    // (its status writes queue another pass, which asks tether's five questions again from
    // the cache), the access-review counter and histogram can be read a few reviews apart.
    // Take the first scrape in which every series agrees; a real mismatch never does.
    let mut m = String::new();
    wait_until(
        "a scrape where access-review counts and durations agree",
        Duration::from_secs(30),
        || {
            m = c.tether.metrics();
            review_series_agree(&m)
        },
    )
    .await;

    // Leader: acquired once, no other change.
    assert_eq!(
        metric_value(&m, "tether_leader_transitions_total"),
        Some(1.0)
    );
    // Access reviews: the user's first review of each question is a miss; the second
    // AttachedResource asks tether's own questions again, answered from the cache.
    let count = |labels: &str| {
        metric_value(
            &m,
            &format!("tether_access_review_duration_seconds_count{{{labels}}}"),
        )
        .unwrap_or(0.0)
    };
    assert!(
        count(r#"cache="miss",identity="user",result="allowed""#) >= 1.0,
        "{m}"
    );
    assert!(
        count(r#"cache="hit",identity="tether",result="allowed""#) >= 1.0,
        "{m}"
    );
    // The histogram's count agrees with the access-review counter, series by series.
    for line in m
        .lines()
        .filter(|l| l.starts_with("tether_access_reviews_total{"))
    {
        let (series, v) = line.rsplit_once(' ').unwrap();
        let labels = series.trim_start_matches("tether_access_reviews_total");
        assert_eq!(
            metric_value(
                &m,
                &format!("tether_access_review_duration_seconds_count{labels}")
            ),
            v.parse().ok(),
            "{line}"
        );
    }
    // Discovery: the policy/v1 resource list was fetched, and nothing failed.
    assert!(
        metric_value(&m, r#"tether_discovery_requests_total{result="success"}"#).unwrap_or(0.0)
            >= 1.0,
        "{m}"
    );
    assert_eq!(
        metric_value(&m, r#"tether_discovery_requests_total{result="error"}"#),
        Some(0.0)
    );
    assert_eq!(
        metric_value(&m, r#"tether_reconcile_queue_depth{controller="attached"}"#),
        Some(0.0)
    );

    // The scrape is still clean for promtool.
    let (ok, report) = promtool(&["check", "metrics"], Some(&m));
    assert!(
        ok && report.trim().is_empty(),
        "promtool check metrics:\n{report}"
    );

    // The dashboard: every expression parses and reads only what tether exports.
    let exported = exported_names(&m);
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 20, "{} expressions", exprs.len());
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (title, expr)) in exprs.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard:expr_{i}\n        expr: {}\n",
            serde_json::to_string(expr).unwrap()
        ));
        let names = metric_names(expr);
        let unknown: Vec<&String> = names.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "panel {title:?}: {expr} reads {unknown:?}, which tether does not export"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-rules.yaml");
    std::fs::write(&file, &rules).unwrap();
    let (ok, report) = promtool(&["check", "rules", file.to_str().unwrap()], None);
    assert!(ok, "dashboard PromQL does not parse:\n{report}\n{rules}");
    assert!(
        report.contains(&format!("SUCCESS: {} rules found", exprs.len())),
        "{report}"
    );

    // The alert rules read only what tether exports too.
    let alerts: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(format!("{ROOT}/charts/tether/files/alerts.yaml")).unwrap(),
    )
    .unwrap();
    for rule in alerts["groups"][0]["rules"].as_array().unwrap() {
        let expr = rule["expr"].as_str().unwrap();
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{expr}");
        let unknown: Vec<&String> = names.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "alert {}: reads {unknown:?}",
            rule["alert"]
        );
    }
}

/// Reconcile queue depth and discovery counters, in process: a copy whose writes fail
/// leaves its AttachedResource waiting for a retry (depth 1) until the API recovers (0);
/// discovery failures and 404s are counted apart from successes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_depth_and_discovery_follow_api_faults() {
    let fake = FakeApiServer::start().await;
    fake.set_garbage_collection(false);
    let client = fake.client().await;
    let metrics = Metrics::new();

    // Discovery: one failure, then success; an unknown group is a 404.
    let resolver = ApiResolver::new(client.clone()).with_metrics(metrics.clone());
    fake.fail(
        "/apis/autoscaling/v2",
        Fault::Status(500, "etcdserver: request timed out".into()),
        Some(1),
    );
    let discovery = |r: &str| metrics.discovery_requests.with_label_values(&[r]).get();
    assert!(resolver
        .resolve("autoscaling", "v2", "HorizontalPodAutoscaler")
        .await
        .is_err());
    assert_eq!(discovery("error"), 1);
    let hpa = resolver
        .resolve("autoscaling", "v2", "HorizontalPodAutoscaler")
        .await
        .expect("found after the fault");
    assert_eq!(hpa.plural, "horizontalpodautoscalers");
    assert_eq!(discovery("success"), 1);
    assert!(resolver
        .resolve("nothing.example.com", "v1", "Thing")
        .await
        .is_err());
    assert_eq!(discovery("not_found"), 1);
    // Cached: asking again costs no call.
    resolver
        .resolve("autoscaling", "v2", "HorizontalPodAutoscaler")
        .await
        .unwrap();
    assert_eq!(
        (
            discovery("success"),
            discovery("error"),
            discovery("not_found")
        ),
        (1, 1, 1)
    );

    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics.clone(),
        Arc::new(ApiResolver::new(client).with_metrics(metrics.clone())),
        Some("test".into()),
        Settings::default(),
    ));
    fake.insert(deployment("worker-v1", "v1"));
    fake.insert(json!({
        "apiVersion": "tether.dev/v1alpha1", "kind": "AttachedResource",
        "metadata": {"name": "hpa", "namespace": NS},
        "spec": {"workloadRef": {"name": "worker"},
                 "object": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                            "spec": {"scaleTargetRef": {}, "minReplicas": 1, "maxReplicas": 4}}}
    }));
    // Writes of the copy fail (3 times: retries back off 1 s, 2 s) and then succeed.
    fake.fail(
        &format!("/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers"),
        Fault::Status(500, "etcdserver: leader changed".into()),
        Some(3),
    );
    let depth = || {
        metrics
            .reconcile_queue_depth
            .with_label_values(&["attached"])
            .get()
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(attached::run(ctx.clone(), async move {
        let _ = rx.await;
    }));
    wait_until(
        "a failed reconcile waiting for retry",
        Duration::from_secs(20),
        || depth() == 1,
    )
    .await;
    assert!(
        metrics
            .reconcile_total
            .with_label_values(&["attached", "error"])
            .get()
            >= 1
    );
    wait_until("the retry to succeed", Duration::from_secs(30), || {
        depth() == 0 && fake.list_all("horizontalpodautoscalers").len() == 1
    })
    .await;
    assert!(metrics
        .render()
        .contains("tether_reconcile_queue_depth{controller=\"attached\"} 0"));
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap();
}

/// Every `tether_access_reviews_total` series has the same value as the duration
/// histogram's `_count` with the same labels.
fn review_series_agree(m: &str) -> bool {
    m.lines()
        .filter(|l| l.starts_with("tether_access_reviews_total{"))
        .all(|line| {
            let Some((series, v)) = line.rsplit_once(' ') else {
                return false;
            };
            let labels = series.trim_start_matches("tether_access_reviews_total");
            metric_value(
                m,
                &format!("tether_access_review_duration_seconds_count{labels}"),
            ) == v.parse().ok()
        })
}
