//! Per-call latency of the in-process decision (issue 7 target: p99 ≤ 50 µs for the typical
//! AttachedResource without access reviews). Criterion reports means; this records every
//! call and prints percentiles. Run with `cargo bench --bench latency`.
//!
//! `TETHER_LAT_ITERS` (default 200000) sets the measured calls per case; the profile in
//! bench/RESULTS.md runs this binary under callgrind with a small value.

use std::hint::black_box;
use std::time::{Duration, Instant};

use tether::admission::{Admission, Webhook};
use tether::policy::validate_spec;

mod common;
use common::*;

struct Stats {
    p50: Duration,
    p90: Duration,
    p99: Duration,
    p999: Duration,
    max: Duration,
    mean: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    let total: Duration = v.iter().sum();
    Stats {
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        p999: at(0.999),
        max: *v.last().expect("at least one sample"),
        mean: total / v.len() as u32,
    }
}

fn us(d: Duration) -> String {
    format!("{:.2}", d.as_nanos() as f64 / 1000.0)
}

fn print(name: &str, s: &Stats) {
    println!(
        "{name:<44} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        us(s.mean),
        us(s.p50),
        us(s.p90),
        us(s.p99),
        us(s.p999),
        us(s.max)
    );
}

fn measure_review(
    rt: &tokio::runtime::Runtime,
    adm: &Admission,
    webhook: Webhook,
    body: &str,
    iters: usize,
) -> Stats {
    rt.block_on(async {
        let warmup = (iters / 10).max(100);
        for _ in 0..warmup {
            black_box(adm.review(webhook, body.as_bytes(), BUDGET).await.ok());
        }
        let mut samples = Vec::with_capacity(iters);
        for _ in 0..iters {
            let t = Instant::now();
            let a = adm
                .review(webhook, black_box(body.as_bytes()), BUDGET)
                .await
                .expect("valid review");
            samples.push(t.elapsed());
            black_box(a);
        }
        stats(samples)
    })
}

fn main() {
    // `cargo bench` passes `--bench`; without it (`cargo test --benches`) this is a quick
    // smoke run. A filter argument is not supported (all cases run).
    let benching = std::env::args().any(|a| a == "--bench");
    let iters: usize = std::env::var("TETHER_LAT_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if benching { 200_000 } else { 1_000 });
    let only_review = std::env::var_os("TETHER_LAT_ONLY_REVIEW").is_some();
    let rt = runtime();
    let adm = offline_admission();
    check_fixtures(&rt, &adm);

    println!(
        "per-call latency in µs, {iters} calls per case (after {} warm-up calls)",
        (iters / 10).max(100)
    );
    println!(
        "{:<44} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "case", "mean", "p50", "p90", "p99", "p99.9", "max"
    );
    let typical = measure_review(&rt, &adm, Webhook::Validate, ATTACHED_CREATE, iters);
    print("review validate attached (typical, no log)", &typical);
    if only_review {
        return;
    }
    let cases = [
        (
            "review validate attached 3 violations",
            Webhook::Validate,
            ATTACHED_INVALID,
        ),
        (
            "review mutate attached (label)",
            Webhook::Mutate,
            ATTACHED_CREATE,
        ),
        ("review mutate labelled HPA", Webhook::Mutate, HPA_MUTATE),
        ("review mutate AppDomain", Webhook::Mutate, APPDOMAIN_MUTATE),
    ];
    for (name, webhook, body) in cases {
        print(name, &measure_review(&rt, &adm, webhook, body, iters));
    }
    print(
        "review validate attached 200KB",
        &measure_review(
            &rt,
            &adm,
            Webhook::Validate,
            ATTACHED_200K,
            (iters / 100).max(200),
        ),
    );

    // Cluster mode's access reviews with the cache warm (issue 7: within 10 % of the path
    // without reviews; here standalone's uncached allow-all is the reference).
    let cached = cached_sar_admission();
    let warm = measure_review(&rt, &cached, Webhook::Validate, ATTACHED_CREATE, iters);
    print("review validate attached, warm SAR cache", &warm);

    // The server logs every decision as JSON (SPEC 8); the same subscriber, writing to a
    // sink, shows what that costs per call.
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::sink)
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .finish();
    let logged = tracing::subscriber::with_default(subscriber, || {
        measure_review(&rt, &adm, Webhook::Validate, ATTACHED_CREATE, iters)
    });
    print("review validate attached + JSON log (sink)", &logged);

    let kinds = default_policy().kinds;
    let spec = spec_of(ATTACHED_CREATE);
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        let v = validate_spec(Some(black_box(&spec)), &kinds);
        samples.push(t.elapsed());
        black_box(v);
    }
    print("validate_spec only (typical)", &stats(samples));

    println!(
        "warm SAR cache vs standalone allow-all: p50 {:.3}x, mean {:.3}x",
        warm.p50.as_secs_f64() / typical.p50.as_secs_f64(),
        warm.mean.as_secs_f64() / typical.mean.as_secs_f64()
    );
    let target = Duration::from_micros(50);
    println!(
        "target: in-process decision p99 <= 50 µs (typical AttachedResource): {} (p99 {} µs without logging, {} µs with JSON logging)",
        if typical.p99 <= target && logged.p99 <= target { "MET" } else { "NOT MET" },
        us(typical.p99),
        us(logged.p99)
    );
}
