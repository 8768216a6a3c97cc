//! Issue 13: hostile clients cannot starve or bloat the webhook. Each attack of the issue,
//! scaled down (small caps), against the real binary on loopback: the attacker connects
//! from 127.0.0.1, the honest client (the API server's part) from 127.0.0.2, and the honest
//! review must be answered while the attack still runs. Timings and peak memory at the
//! chart's defaults are measured by bench/attack/run.sh (bench/RESULTS.md), not asserted here,
//! except the memory ceiling, which is a budget, not a speed.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use common::attack::*;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ATTACKER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
const HONEST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

/// The honest review must come back 200 well within the API server's 10 s (the issue saw
/// 18–35 s); the bound here only catches a hang, speed is in bench/RESULTS.md.
async fn honest_review_is_answered(s: &Server, uid: &str) {
    let cfg = s.tls_config(&[b"http/1.1"]);
    let r = tokio::time::timeout(
        Duration::from_secs(8),
        valid_review(HONEST, s.addr, cfg, uid),
    )
    .await
    .unwrap_or_else(|_| panic!("honest review {uid} not answered within 8 s"));
    let (status, _took) = r.unwrap_or_else(|e| panic!("honest review {uid}: {e}"));
    assert_eq!(status, 200, "honest review {uid}");
}

fn metric(s: &Server, series: &str) -> f64 {
    metric_value(&s.metrics(), series).unwrap_or_else(|| panic!("no series {series}"))
}

/// Polls the metrics until `series` reaches `at_least` (or fails after 10 s).
async fn wait_metric(s: &Server, series: &str, at_least: f64) -> f64 {
    wait_metric_where(s, series, ">=", at_least, |v| v >= at_least).await
}

/// Polls the metrics until `series` is at most `at_most` (or fails after 10 s).
async fn wait_metric_at_most(s: &Server, series: &str, at_most: f64) -> f64 {
    wait_metric_where(s, series, "<=", at_most, |v| v <= at_most).await
}

/// The polling loop of the two above: `ok` says when `series` (0 while absent) is there.
async fn wait_metric_where(
    s: &Server,
    series: &str,
    op: &str,
    bound: f64,
    ok: impl Fn(f64) -> bool,
) -> f64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v = metric_value(&s.metrics(), series).unwrap_or(0.0);
        if ok(v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} stayed at {v}, expected {op} {bound}\n{}",
            s.metrics()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn peak_rss_mib(s: &Server) -> f64 {
    let mib = proc_kib(s.child.id(), "VmHWM").expect("VmHWM readable") as f64 / 1024.0;
    eprintln!("server peak RSS (VmHWM): {mib:.1} MiB");
    mib
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_give_their_slots_to_new_clients() {
    let s = Server::start(&["--max-connections", "16", "--max-requests", "8"]);
    let cfg = s.tls_config(&[b"h2"]);
    // Issue item 1: more idle HTTP/2 connections than slots, all kept (they answer PINGs).
    let mut idle = Vec::new();
    for _ in 0..24 {
        if let Some(c) = idle_h2(ATTACKER, s.addr, cfg.clone()).await {
            idle.push(c);
        }
    }
    assert!(idle.len() >= 16, "only {} attack connections", idle.len());
    honest_review_is_answered(&s, "after-idle-h2").await;
    let evicted = metric(
        &s,
        "tether_connections_closed_total{listener=\"admission\",reason=\"evicted\"}",
    );
    assert!(evicted >= 9.0, "evicted {evicted}");
    // Evicted connections' tasks end just after their slots were given away.
    wait_metric_at_most(&s, "tether_connections_open{listener=\"admission\"}", 16.0).await;
    assert_eq!(
        metric(
            &s,
            "tether_connections_rejected_total{listener=\"admission\",reason=\"cap\"}"
        ),
        0.0
    );
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_without_a_client_hello_are_evicted_and_time_out() {
    let s = Server::start(&[
        "--max-connections",
        "16",
        "--max-requests",
        "8",
        "--tls-handshake-timeout",
        "1s",
    ]);
    // Issue item 2: silent connections beyond the cap.
    let mut silent_conns = Vec::new();
    for _ in 0..40 {
        if let Some(c) = silent(ATTACKER, s.addr).await {
            silent_conns.push(c);
        }
    }
    honest_review_is_answered(&s, "after-silent").await;
    // The ones that kept their slot are cut at the handshake timeout, and counted.
    wait_metric(
        &s,
        "tether_tls_handshake_failures_total{reason=\"timeout\"}",
        1.0,
    )
    .await;
    let mut last = silent_conns.pop().expect("connected");
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut last, &mut buf),
    )
    .await
    .expect("silent connection still open after the handshake timeout");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let s = Server::start(&["--idle-timeout", "1s"]);
    // HTTP/1.1 keep-alive after one request.
    let mut h1 = H1::connect(s.addr, &s.ca).await;
    let r = h1.send(request("GET", "/healthz", None, vec![])).await;
    assert_eq!(r.status, 200);
    // HTTP/2 with no stream ever opened.
    let h2 = idle_h2(ATTACKER, s.addr, s.tls_config(&[b"h2"]))
        .await
        .expect("h2");
    wait_metric(
        &s,
        "tether_connections_closed_total{listener=\"admission\",reason=\"idle\"}",
        2.0,
    )
    .await;
    // Both clients see their connection closed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !(h1.send.is_closed() && h2.is_closed()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "clients not told of the close"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The header timeout runs from a request head's first byte: keep-alive connections that
/// wait between requests are the idle timeout's, whatever the protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_header_timeout_cuts_slow_heads_and_leaves_waiting_connections_alone() {
    let s = Server::start(&["--read-timeout", "1s", "--idle-timeout", "60s"]);
    let timeouts = r#"tether_transport_rejections_total{listener="admission",reason="timeout"}"#;
    let before = metric(&s, timeouts);
    let mut h1 = H1::connect(s.addr, &s.ca).await;
    assert_eq!(
        h1.send(request("GET", "/healthz", None, vec![]))
            .await
            .status,
        200
    );
    let h2 = idle_h2(ATTACKER, s.addr, s.tls_config(&[b"h2"]))
        .await
        .expect("h2");
    // A head that starts and never ends is cut about 1 s after its first byte (the watcher
    // samples every quarter of the timeout).
    let mut slow = tls_connect(s.addr, s.tls_config(&[b"http/1.1"])).await;
    let started = tokio::time::Instant::now();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    slow.flush().await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf))
        .await
        .expect("slow head still open 5 s after its first byte");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );
    wait_metric(&s, timeouts, before + 1.0).await;
    // Three header timeouts later, the waiting connections are still open and serve.
    // (Nothing to wait on here: the claim is that nothing happens for this long.)
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !h2.is_closed(),
        "idle HTTP/2 connection closed by the header timeout"
    );
    assert_eq!(
        h1.send(request("GET", "/healthz", None, vec![]))
            .await
            .status,
        200
    );
    assert_eq!(metric(&s, timeouts), before + 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_http2_bodies_are_bounded_by_the_byte_budget() {
    let s = Server::start(&[]);
    let cfg = s.tls_config(&[b"h2"]);
    let mut held = Held::default();
    // Issue item 3, first half: HTTP/2 streams with unfinished 3 MiB bodies, with and
    // without a declared length (8 × 32 streams in all, the issue's 256).
    unfinished_h2_bodies(
        ATTACKER,
        s.addr,
        cfg.clone(),
        4,
        32,
        Some(3 << 20),
        1 << 20,
        &mut held,
    )
    .await;
    unfinished_h2_bodies(
        ATTACKER,
        s.addr,
        cfg.clone(),
        4,
        32,
        None,
        2 << 20,
        &mut held,
    )
    .await;
    // Refusals come back while the bodies are still unfinished.
    wait_metric(
        &s,
        "tether_requests_rejected_total{reason=\"peer_memory\"}",
        1.0,
    )
    .await;
    honest_review_is_answered(&s, "during-h2-bodies").await;
    let held_bytes = metric(&s, "tether_inflight_bytes");
    assert!(held_bytes <= (32 << 20) as f64 + 1e6, "{held_bytes}");
    let early = held.early.lock().unwrap().clone();
    assert!(early.contains(&429), "no 429 among {early:?}");
    let peak = peak_rss_mib(&s);
    assert!(peak < 128.0, "peak RSS {peak:.1} MiB");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_http1_bodies_are_bounded_by_the_budgets() {
    let s = Server::start(&[]);
    let mut held = Held::default();
    // Issue item 3, second half: 100 HTTP/1.1 connections with unfinished 3 MiB bodies.
    unfinished_h1_bodies(
        ATTACKER,
        s.addr,
        s.tls_config(&[b"http/1.1"]),
        100,
        3 << 20,
        1 << 20,
        &mut held,
    )
    .await;
    wait_metric(
        &s,
        "tether_requests_rejected_total{reason=\"peer_memory\"}",
        1.0,
    )
    .await;
    honest_review_is_answered(&s, "during-h1-bodies").await;
    let peak = peak_rss_mib(&s);
    assert!(peak < 128.0, "peak RSS {peak:.1} MiB");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parse_amplification_is_refused_or_budgeted() {
    let s = Server::start(&[]);
    let cfg = s.tls_config(&[b"http/1.1"]);
    // Issue item 3, last part: a 3 MiB review of `[0,0,…]`, four at once: 413 before parsing.
    let huge = Bytes::from(zeros_review("zeros", 1_500_000));
    assert!(huge.len() <= 3 << 20);
    let statuses = concurrent_posts(ATTACKER, s.addr, cfg.clone(), huge, 4).await;
    assert_eq!(statuses, vec![413; 4]);
    assert_eq!(
        metric(&s, "tether_requests_rejected_total{reason=\"json_values\"}"),
        4.0
    );
    // Just under the value cap: parsed, within the byte budget (some wait their turn: 503).
    let big = Bytes::from(zeros_review("under-cap", 120_000));
    let statuses = concurrent_posts(ATTACKER, s.addr, cfg.clone(), big, 6).await;
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(
        statuses.iter().all(|st| [200, 429, 503].contains(st)),
        "{statuses:?}"
    );
    honest_review_is_answered(&s, "after-parse").await;
    let peak = peak_rss_mib(&s);
    assert!(peak < 128.0, "peak RSS {peak:.1} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_concurrency_limit_get_503_with_retry_after() {
    let s = Server::start(&[
        "--max-connections",
        "16",
        "--max-requests",
        "4",
        "--max-requests-per-peer",
        "3",
    ]);
    let mut held = Held::default();
    // Three requests from one peer hold their tickets (bodies never finish).
    unfinished_h1_bodies(
        ATTACKER,
        s.addr,
        s.tls_config(&[b"http/1.1"]),
        3,
        1000,
        10,
        &mut held,
    )
    .await;
    wait_metric(&s, "tether_requests_in_flight", 3.0).await;
    // The same peer's fourth: 429 at once, with Retry-After and a reason naming the flag.
    let mut h1 = H1::connect(s.addr, &s.ca).await;
    let r = h1
        .send(request(
            "POST",
            "/validate",
            Some("application/json"),
            valid_review_body("fourth"),
        ))
        .await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.headers["retry-after"], "1");
    assert!(r.text().contains("--max-requests-per-peer"), "{}", r.text());
    // Another peer still fits (4th of 4); the 5th request overall gets 503.
    honest_review_is_answered(&s, "other-peer").await;
    let mut more = Held::default();
    unfinished_h1_bodies(
        HONEST,
        s.addr,
        s.tls_config(&[b"http/1.1"]),
        1,
        1000,
        10,
        &mut more,
    )
    .await;
    wait_metric(&s, "tether_requests_in_flight", 4.0).await;
    let cfg = s.tls_config(&[b"http/1.1"]);
    let (status, _) = valid_review(HONEST, s.addr, cfg, "fifth").await.unwrap();
    assert_eq!(status, 503);
    assert_eq!(
        metric(&s, "tether_requests_rejected_total{reason=\"concurrency\"}"),
        1.0
    );
    assert_eq!(
        metric(
            &s,
            "tether_requests_rejected_total{reason=\"peer_concurrency\"}"
        ),
        1.0
    );
    // The cap was logged at warn, once for both refusals (rate-limited).
    let warns = s
        .logs_when(|l| l.contains("request refused"))
        .lines()
        .filter(|l| l.contains("\"WARN\"") && l.contains("request refused"))
        .count();
    assert_eq!(warns, 1, "{}", s.logs());
    drop((held, more));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_listener_is_capped_and_still_answers_probes() {
    let s = Server::start(&["--metrics-max-connections", "8"]);
    // Issue item 4: many idle connections to the metrics port.
    let mut idle = Vec::new();
    for _ in 0..200 {
        if let Some(c) = silent(ATTACKER, s.metrics_addr).await {
            idle.push(c);
        }
    }
    // Probes are served (each takes an idle connection's slot), fds stay bounded.
    for _ in 0..5 {
        let (code, body) = plain_get(s.metrics_addr, "/readyz").unwrap();
        assert_eq!((code, body.as_str()), (200, "ready\n"));
    }
    // A connection's slot goes to the newcomer at once; its task ends (closing the socket
    // and counting it closed) a moment later, on its own wake-up.
    wait_metric_at_most(&s, "tether_connections_open{listener=\"metrics\"}", 8.0).await;
    let fds = open_fds(s.child.id());
    assert!(fds < 100, "{fds} file descriptors open");
    honest_review_is_answered(&s, "metrics-attack").await;
    drop(idle);
}

/// The server budgets with a cheap upper bound of the JSON values (every `{ [ , :` byte,
/// strings included) and counts exactly only when the bound does not fit: a review whose
/// strings are full of commas is over the cap by the bound but not by the exact count, and
/// must be parsed, not refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_value_cap_refuses_on_the_exact_count_not_the_bound() {
    let s = Server::start(&["--max-json-values", "100"]);
    let cfg = s.tls_config(&[b"http/1.1"]);
    let commas = ",".repeat(5_000);
    let body = format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"commas","kind":{{"group":"","version":"v1","kind":"ConfigMap"}},"resource":{{"group":"","version":"v1","resource":"configmaps"}},"name":"c","namespace":"default","operation":"CREATE","userInfo":{{"username":"alice"}},"object":{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"c"}},"data":{{"k":"{commas}"}}}},"oldObject":null}}}}"#
    );
    let statuses = concurrent_posts(ATTACKER, s.addr, cfg.clone(), Bytes::from(body), 1).await;
    assert_eq!(statuses, vec![200]);
    // 150 values by the exact count: refused, and counted.
    let over = Bytes::from(zeros_review("over", 150));
    let statuses = concurrent_posts(ATTACKER, s.addr, cfg, over, 1).await;
    assert_eq!(statuses, vec![413]);
    assert_eq!(
        metric(&s, "tether_requests_rejected_total{reason=\"json_values\"}"),
        1.0
    );
}

/// A review takes its own size from the byte budget, over HTTP/1.1 (its one frame kept as
/// read) and over HTTP/2 (gathered into a buffer of its declared length; server.rs,
/// `read_body`), not a 64 KiB minimum: with one 3 MiB body held and under 64 KiB of the
/// budget left, both are still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_review_takes_only_its_size_from_the_byte_budget() {
    // The smallest budgets the server accepts for --max-json-values 400 (one 3 MiB body and
    // 400 values at 128 bytes), plus 4 KiB for the whole server: 55 KiB left beside the body.
    let need = (3 << 20) + 400 * 128;
    let (all, per_peer) = ((need + 4096).to_string(), need.to_string());
    let s = Server::start(&[
        "--max-json-values",
        "400",
        "--max-inflight-bytes",
        &all,
        "--max-inflight-bytes-per-peer",
        &per_peer,
    ]);
    let mut held = Held::default();
    unfinished_h1_bodies(
        ATTACKER,
        s.addr,
        s.tls_config(&[b"http/1.1"]),
        1,
        3 << 20,
        1,
        &mut held,
    )
    .await;
    // The declared length is reserved in the same poll that counts the request in flight.
    wait_metric(&s, "tether_requests_in_flight", 1.0).await;
    honest_review_is_answered(&s, "h1-beside-a-held-body").await;
    let h2 = H2::connect(s.addr, &s.ca).await;
    let r = h2
        .send(request(
            "POST",
            "/validate?timeout=10s",
            Some("application/json"),
            unhandled_review("h2-beside-a-held-body"),
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    drop(held);
}
