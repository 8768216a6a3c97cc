//! A benchmark, not a test (ignored in the normal run): the admission path over TLS with
//! access reviews answered from a warm cache (cluster mode against the fake API server)
//! versus standalone mode (no access-review round trips), under the same in-process
//! HTTP/1.1 keep-alive load. Run:
//!   cargo test --release --test bench_cached_sar -- --ignored --nocapture

mod common;
#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;

use std::time::{Duration, Instant};

use common::*;
use fake_apiserver::FakeApiServer;

const CONNECTIONS: usize = 32;
const SECONDS: u64 = 8;

async fn drive(s: &Server, body: &[u8]) -> (f64, f64, f64, usize) {
    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (addr, ca, body) = (s.addr, s.ca.clone(), body.to_vec());
        tasks.push(tokio::spawn(async move {
            let mut c = H1::connect(addr, &ca).await;
            let mut lat = Vec::new();
            let mut errors = 0usize;
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = c
                    .send(request(
                        "POST",
                        "/validate?timeout=10s",
                        Some("application/json"),
                        body.clone(),
                    ))
                    .await;
                if r.status != 200 || !r.text().contains("\"allowed\":true") {
                    errors += 1;
                }
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    all.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    (
        all.len() as f64 / SECONDS as f64,
        pct(0.5),
        pct(0.99),
        errors,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly with --ignored --nocapture"]
async fn warm_access_review_cache_vs_no_review_path() {
    let body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/bench/fixtures/attached-create.json"
    ))
    .unwrap();
    let standalone = Server::start(&[]);
    let (rps_s, p50_s, p99_s, err_s) = drive(&standalone, &body).await;
    drop(standalone);

    let fake = FakeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.write_kubeconfig(dir.path());
    let cluster = tokio::task::block_in_place(|| {
        Server::start_cluster(
            &kubeconfig,
            &["--controllers", "none", "--access-review-cache-ttl", "60s"],
        )
    });
    // Warm the discovery and access-review caches.
    let _ = drive_once(&cluster, &body).await;
    fake.clear_requests();
    let (rps_c, p50_c, p99_c, err_c) = drive(&cluster, &body).await;
    let sars = fake
        .requests_matching("POST", "/apis/authorization.k8s.io")
        .len();
    println!("connections {CONNECTIONS}, {SECONDS} s each, HTTP/1.1 keep-alive, validate AttachedResource");
    println!("standalone (no access-review round trips): {rps_s:.0} req/s, p50 {p50_s:.3} ms, p99 {p99_s:.3} ms, errors {err_s}");
    println!("cluster, warm cache:                      {rps_c:.0} req/s, p50 {p50_c:.3} ms, p99 {p99_c:.3} ms, errors {err_c}, SARs sent during the run {sars}");
    println!(
        "warm-cache / no-review: req/s {:.3}x, p50 {:.3}x, p99 {:.3}x",
        rps_c / rps_s,
        p50_c / p50_s,
        p99_c / p99_s
    );
    assert_eq!(err_s + err_c, 0);
    assert_eq!(sars, 0, "the cache was not warm");
}

async fn drive_once(s: &Server, body: &[u8]) -> u16 {
    let mut c = H1::connect(s.addr, &s.ca).await;
    c.send(request(
        "POST",
        "/validate?timeout=10s",
        Some("application/json"),
        body.to_vec(),
    ))
    .await
    .status
}
