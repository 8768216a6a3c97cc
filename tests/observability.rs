//! Issue 16: what an operator sees. Each metric is checked on a real scrape of the real binary
//! after provoking the event it counts; the alert rules pass `promtool check rules` and their
//! unit tests (`promtool test rules`); every PromQL expression of the Grafana dashboard parses
//! and names only metrics a live tether exports (see also `tests/observability_cluster.rs`).
//! promtool comes from the Debian package `prometheus` (scripts/test.sh installs it).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(ROOT)
        .output()
        .expect(
            "promtool not found: install the Debian package `prometheus` (scripts/test.sh does)",
        );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `tether_transport_rejections_total` by (listener, reason).
fn rejections(scrape: &str) -> BTreeMap<(String, String), f64> {
    let mut m = BTreeMap::new();
    for line in scrape.lines() {
        let Some(rest) = line.strip_prefix("tether_transport_rejections_total{") else {
            continue;
        };
        let (labels, value) = rest.split_once("} ").expect("a sample line");
        let label = |k: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=\"")))
                .and_then(|v| v.strip_suffix('"'))
                .expect("label present")
                .to_string()
        };
        m.insert((label("listener"), label("reason")), value.parse().unwrap());
    }
    m
}

/// Sends raw bytes over one TLS connection and reads until the server closes it (or 15 s);
/// returns the HTTP status, 0 when no response came.
async fn raw(s: &Server, bytes: &[u8]) -> u16 {
    let mut tls = tls_connect(s.addr, s.tls_config(&[b"http/1.1"])).await;
    tls.write_all(bytes).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), tls.read_to_end(&mut buf)).await;
    status_of(&buf)
}

fn status_of(buf: &[u8]) -> u16 {
    let head = String::from_utf8_lossy(&buf[..buf.len().min(64)]).into_owned();
    head.strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// One request with `Connection: close`.
fn http(method: &str, path: &str, ctype: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(ct) = ctype {
        r.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    r.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut v = r.into_bytes();
    v.extend_from_slice(body);
    v
}

async fn wait_for(s: &Server, series: &str, at_least: f64) -> f64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let m = s.metrics();
        let v = metric_value(&m, series).unwrap_or(0.0);
        if v >= at_least {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            let family = series.split('{').next().unwrap_or(series);
            let seen: Vec<&str> = m.lines().filter(|l| l.starts_with(family)).collect();
            panic!(
                "{series} stayed at {v}, expected >= {at_least}; the family:\n{}",
                seen.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

const JSON: Option<&str> = Some("application/json");

/// The issue's complaint: of about 80 malformed requests, one showed up in metrics. Here 80
/// malformed requests of every kind are sent, each answered with its status (or dropped by
/// the HTTP layer), and every single one is counted under its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_request_is_counted_by_reason() {
    let s = Server::start(&[
        "--max-requests",
        "1",
        "--max-json-values",
        "1000",
        "--read-timeout",
        "2s",
    ]);
    let review = unhandled_review("ok");
    let many_values = format!("[{}0]", "0,".repeat(4999)).into_bytes();
    let four_mib = |path: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 4194304\r\n\r\n"
        )
        .into_bytes()
    };
    // (request bytes, expected status, reason)
    let mut table: Vec<(Vec<u8>, u16, &str)> = Vec::new();
    for (m, p) in [
        ("GET", "/"),
        ("GET", "/foo"),
        ("POST", "/foo"),
        ("GET", "/mutate/x"),
        ("POST", "/validate/"),
        ("GET", "/metrics"),
        ("GET", "/admission"),
        ("POST", "/apis/admission.k8s.io/v1"),
        ("GET", "/favicon.ico"),
        ("PUT", "/x"),
        ("DELETE", "/"),
        ("GET", "/%2e%2e/etc/passwd"),
        ("POST", "/MUTATE"),
        ("GET", "/readyz/x"),
        ("GET", "/healthy"),
    ] {
        table.push((http(m, p, JSON, &review), 404, "not_found"));
    }
    for (m, p) in [
        ("GET", "/mutate"),
        ("PUT", "/mutate"),
        ("DELETE", "/mutate"),
        ("PATCH", "/mutate"),
        ("GET", "/validate"),
        ("PUT", "/validate"),
        ("DELETE", "/validate"),
        ("PATCH", "/validate"),
        ("POST", "/healthz"),
        ("POST", "/readyz"),
        ("PUT", "/healthz"),
        ("DELETE", "/readyz"),
        ("OPTIONS", "/validate"),
        ("PATCH", "/healthz"),
        ("PUT", "/readyz"),
    ] {
        table.push((http(m, p, JSON, &review), 405, "method"));
    }
    for (p, ct) in [
        ("/validate", None),
        ("/validate", Some("text/plain")),
        ("/validate", Some("application/xml")),
        ("/validate", Some("application/x-www-form-urlencoded")),
        ("/validate", Some("multipart/form-data; boundary=x")),
        ("/validate", Some("application/jsonx")),
        ("/validate", Some("text/json")),
        ("/validate", Some("application/yaml")),
        ("/mutate", None),
        ("/mutate", Some("text/plain")),
    ] {
        table.push((http("POST", p, ct, &review), 415, "content_type"));
    }
    for p in ["/mutate", "/validate", "/mutate", "/validate"] {
        table.push((four_mib(p), 413, "too_large"));
    }
    for p in ["/mutate", "/validate"] {
        table.push((http("POST", p, JSON, &many_values), 413, "too_large"));
    }
    for body in [
        &b""[..],
        b"{",
        b"null",
        b"[]",
        b"not json",
        b"123",
        b"\"string\"",
        b"{\"kind\":\"Pod\"}",
        b"{\"apiVersion\":\"admission.k8s.io/v1beta1\",\"kind\":\"AdmissionReview\"}",
        b"\xff\xfe\xfd",
        b"{\"a\":",
        b"[1,2",
        b"{}",
        b"{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\"}",
        b"true",
        b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":7}",
    ] {
        table.push((http("POST", "/validate", JSON, body), 400, "bad_json"));
    }
    // Not HTTP/1.1 at all: the HTTP layer answers 400 (431 for a huge header) by itself.
    for bytes in [
        b"GARBAGE\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n".to_vec(),
        b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec(),
        b"\x00\x01\x02\x03\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n".to_vec(),
        format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(70_000)
        )
        .into_bytes(),
    ] {
        table.push((bytes, 0, "bad_http"));
    }

    let before = rejections(&s.metrics());
    let mut want: BTreeMap<&str, f64> = BTreeMap::new();
    for (i, (bytes, status, reason)) in table.iter().enumerate() {
        let got = raw(&s, bytes).await;
        if *status != 0 {
            assert_eq!(
                got,
                *status,
                "request {i} ({reason}): {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(120)])
            );
        } else {
            assert!(
                got == 0 || got >= 400,
                "request {i} ({reason}) was answered {got}"
            );
        }
        *want.entry(reason).or_default() += 1.0;
    }

    // Timeouts and budgets: one request whose body never completes holds the only request
    // slot (--max-requests 1) until --read-timeout; meanwhile 10 more are refused (503).
    let mut held = tls_connect(s.addr, s.tls_config(&[b"http/1.1"])).await;
    held.write_all(
        b"POST /validate HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"apiVer",
    )
    .await
    .unwrap();
    wait_for(&s, "tether_requests_in_flight", 1.0).await;
    for _ in 0..10 {
        assert_eq!(
            raw(&s, &http("POST", "/validate", JSON, &review)).await,
            503
        );
        *want.entry("over_budget").or_default() += 1.0;
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), held.read_to_end(&mut buf)).await;
    assert_eq!(status_of(&buf), 408, "{}", String::from_utf8_lossy(&buf));
    *want.entry("timeout").or_default() += 1.0;
    // A request head that never completes is cut after --read-timeout.
    let got = raw(&s, b"POST /validate HTTP/1.1\r\nHost: localhost\r\n").await;
    assert!(got == 0 || got == 408, "header timeout answered {got}");
    *want.entry("timeout").or_default() += 1.0;

    // The metrics port counts its own.
    assert_eq!(plain_get(s.metrics_addr, "/nope").unwrap().0, 404);
    assert_eq!(plain_get(s.metrics_addr, "/mutate").unwrap().0, 404);

    let sent: f64 = want.values().sum();
    assert_eq!(sent, 80.0, "the issue's ~80 malformed requests");
    // The last rejection (header timeout) is counted when the connection ends; wait for it.
    wait_for(
        &s,
        r#"tether_transport_rejections_total{listener="admission",reason="timeout"}"#,
        before[&("admission".to_string(), "timeout".to_string())] + 2.0,
    )
    .await;
    let after = rejections(&s.metrics());
    let mut got: BTreeMap<&str, f64> = BTreeMap::new();
    for ((listener, reason), v) in &after {
        let d = v - before
            .get(&(listener.clone(), reason.clone()))
            .unwrap_or(&0.0);
        if listener == "admission" && d != 0.0 {
            got.insert(
                tether::metrics::TRANSPORT_REJECTIONS
                    .iter()
                    .find(|r| *r == reason)
                    .expect("a known reason"),
                d,
            );
        }
    }
    assert_eq!(got, want, "admission rejections by reason");
    let metrics_404 = after[&("metrics".to_string(), "not_found".to_string())]
        - before[&("metrics".to_string(), "not_found".to_string())];
    assert_eq!(metrics_404, 2.0);
    // Successful requests are not rejections: a valid review after all this adds nothing.
    assert_eq!(
        raw(&s, &http("POST", "/validate", JSON, &review)).await,
        200
    );
    assert_eq!(rejections(&s.metrics()), after);
}

/// TLS handshake failures by coarse reason, including the one behind a wrong `caBundle`:
/// a client that does not trust tether's certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshake_failures_are_counted_by_reason() {
    let s = Server::start(&[]);
    let series = |r: &str| format!("tether_tls_handshake_failures_total{{reason=\"{r}\"}}");
    let other = tempfile::tempdir().unwrap();
    let other_ca = make_certs(other.path(), &["localhost"]);

    // Wrong CA (the API server's caBundle is not tether's CA): here another CA of the same
    // name, as after regenerating a self-signed CA.
    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let r = tokio_rustls::TlsConnector::from(client_config(&other_ca, &[b"http/1.1"]))
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await;
    assert!(r.is_err(), "a client trusting another CA must fail");
    wait_for(&s, &series("peer_rejected_certificate"), 1.0).await;

    // Right CA, wrong name (the Service name is not on the certificate).
    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let r = tokio_rustls::TlsConnector::from(s.tls_config(&[b"http/1.1"]))
        .connect(
            rustls_pki_types::ServerName::try_from("tether.elsewhere.svc").unwrap(),
            tcp,
        )
        .await;
    assert!(r.is_err(), "a certificate for another name must be refused");
    wait_for(&s, &series("peer_rejected_certificate"), 2.0).await;

    // Plain HTTP on the HTTPS port.
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut buf)).await;
    wait_for(&s, &series("not_tls"), 1.0).await;

    // Connect and hang up.
    drop(tokio::net::TcpStream::connect(s.addr).await.unwrap());
    wait_for(&s, &series("eof"), 1.0).await;

    let m = s.metrics();
    assert_eq!(
        metric_value(&m, &series("peer_rejected_certificate")),
        Some(2.0)
    );
    assert_eq!(metric_value(&m, &series("not_tls")), Some(1.0));
    assert_eq!(metric_value(&m, &series("eof")), Some(1.0));
    assert_eq!(metric_value(&m, &series("client_certificate")), Some(0.0));
    assert_eq!(metric_value(&m, &series("timeout")), Some(0.0));

    // --client-ca: a caller without a client certificate.
    let ca_file = s.certs.join("ca.crt");
    let strict = Server::start(&["--client-ca", ca_file.to_str().unwrap()]);
    let tcp = tokio::net::TcpStream::connect(strict.addr).await.unwrap();
    if let Ok(mut t) = tokio_rustls::TlsConnector::from(strict.tls_config(&[b"http/1.1"]))
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
    {
        // TLS 1.3: the client finishes first and learns of the refusal on its first read.
        let _ = t
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let mut b = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), t.read_to_end(&mut b)).await;
    }
    wait_for(&strict, &series("client_certificate"), 1.0).await;
}

/// `tether_build_info{version,commit,rust_version}`, the process collector, and the
/// connection caps the dashboard draws open connections against.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_has_build_info_process_metrics_and_caps() {
    let s = Server::start(&[
        "--max-connections",
        "300",
        "--metrics-max-connections",
        "40",
    ]);
    let m = s.metrics();
    let info = m
        .lines()
        .find(|l| l.starts_with("tether_build_info{"))
        .unwrap_or_else(|| panic!("no tether_build_info in\n{m}"));
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(ROOT)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    // Built in a git checkout: the commit tether was built from (HEAD, unless a commit was
    // made since the build); outside git, "unknown".
    let got_commit = info
        .split("commit=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap();
    match commit {
        Some(c) => assert!(
            got_commit.len() == 12 && got_commit.chars().all(|ch| ch.is_ascii_hexdigit()),
            "commit label {got_commit:?} (HEAD is {c})"
        ),
        None => assert_eq!(got_commit, "unknown"),
    }
    assert!(info.contains("version=\"0.1.0\""), "{info}");
    let rustc = std::process::Command::new(std::env::var("RUSTC").unwrap_or("rustc".into()))
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    let rust_version = info
        .split("rust_version=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap();
    assert!(
        rust_version.split('.').count() == 3 && rustc.contains(rust_version),
        "rust_version {rust_version:?}, rustc says {rustc:?}"
    );
    assert!(info.ends_with(" 1"), "{info}");

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let start = metric_value(&m, "process_start_time_seconds").expect("process_start_time_seconds");
    assert!(
        start <= now + 1.0 && start > now - 300.0,
        "start {start}, now {now}"
    );
    let rss = metric_value(&m, "process_resident_memory_bytes").expect("RSS");
    let pid_rss = tether_rss_bytes(s.child.id());
    assert!(
        rss > 1e6 && (rss - pid_rss).abs() < 64e6,
        "rss {rss} vs /proc {pid_rss}"
    );
    assert!(metric_value(&m, "process_open_fds").expect("fds") >= 3.0);
    assert!(metric_value(&m, "process_max_fds").expect("max fds") > 0.0);
    assert!(metric_value(&m, "process_cpu_seconds_total").is_some());
    assert_eq!(
        metric_value(&m, r#"tether_connections_max{listener="admission"}"#),
        Some(300.0)
    );
    assert_eq!(
        metric_value(&m, r#"tether_connections_max{listener="metrics"}"#),
        Some(40.0)
    );
    // Open connections: one held on the admission port shows up.
    let _h1 = H1::connect(s.addr, &s.ca).await;
    wait_for(&s, r#"tether_connections_open{listener="admission"}"#, 1.0).await;
}

fn tether_rss_bytes(pid: u32) -> f64 {
    common::attack::proc_kib(pid, "VmRSS").expect("VmRSS") as f64 * 1024.0
}

/// The alert rules: `promtool check rules`, then the unit tests (each alert fires on the
/// synthetic series that should trip it and stays quiet on those that should not), then
/// every alert's annotations and its runbook section.
#[test]
fn alert_rules_pass_promtool_and_link_the_runbook() {
    let rules = "charts/tether/files/alerts.yaml";
    let (ok, out) = promtool(&["check", "rules", rules]);
    assert!(ok, "promtool check rules:\n{out}");
    assert!(out.contains("SUCCESS: 7 rules found"), "{out}");
    let (ok, out) = promtool(&["test", "rules", "tests/alerts/alerts_test.yaml"]);
    assert!(ok, "promtool test rules:\n{out}");

    let doc: serde_json::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(Path::new(ROOT).join(rules)).unwrap())
            .unwrap();
    let runbook = std::fs::read_to_string(Path::new(ROOT).join("docs/runbook.md")).unwrap();
    let tests: serde_json::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(Path::new(ROOT).join("tests/alerts/alerts_test.yaml")).unwrap(),
    )
    .unwrap();
    let mut names = Vec::new();
    for rule in doc["groups"][0]["rules"].as_array().unwrap() {
        let name = rule["alert"].as_str().unwrap();
        names.push(name);
        for a in ["summary", "description", "runbook_url"] {
            assert!(
                rule["annotations"][a]
                    .as_str()
                    .is_some_and(|v| !v.is_empty()),
                "{name}: no {a}"
            );
        }
        let anchor = format!("docs/runbook.md#{}", name.to_lowercase());
        assert_eq!(
            rule["annotations"]["runbook_url"],
            anchor.as_str(),
            "{name}"
        );
        assert!(
            runbook.contains(&format!("\n## {name}\n")),
            "docs/runbook.md has no section for {name}"
        );
        // At least one unit test where it fires and one where it stays quiet.
        let cases: Vec<&serde_json::Value> = tests["tests"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|t| t["alert_rule_test"].as_array().unwrap())
            .filter(|c| c["alertname"] == name)
            .collect();
        assert!(
            cases
                .iter()
                .any(|c| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty())),
            "{name}: no unit test where it fires"
        );
        assert!(
            cases
                .iter()
                .any(|c| c["exp_alerts"].as_array().is_some_and(|a| a.is_empty())),
            "{name}: no unit test where it stays quiet"
        );
    }
    assert_eq!(
        names,
        [
            "TetherWebhookErrors",
            "TetherWebhookLatencyNearTimeout",
            "TetherCertificateExpiringSoon",
            "TetherNoLeader",
            "TetherReconcileErrors",
            "TetherAccessReviewsFailing",
            "TetherRestarting",
        ]
    );
}
