//! The cluster path of an AttachedResource admission (issue 14): how many access reviews a
//! cold admission sends and how long it takes, as a multiple of the API server's delay per
//! access review, and the same warm. A benchmark, not a test: CI never runs it.
//!
//!     cargo bench --bench cluster_path -- [--delay-ms 2] [--cold 30] [--warm 300]
//!         [--tether-bin target/pgo/tether] [--hold SECS --hold-dir DIR]
//!
//! `--hold SECS --hold-dir DIR` keeps the cluster up for SECS after the warm admissions of the
//! run without delay, for a load tool to drive tether's warm cluster path: DIR gets `addr`
//! (tether's host:port), `ca.crt`, `pid` (tether's process id), `review.json` (a warm
//! admission's body, for `/validate`) and `fixture.json` (bench/load's review, as alice in
//! the same warm namespace).
//!
//! `--tether-bin` measures another build of tether (the PGO build the image ships) instead of
//! cargo's release build. tether's CPU time per warm admission is read from `/proc` around
//! the warm admissions; it needs a few thousand of them (`--warm 20000`) to rise well above
//! the clock's 10 ms tick.
//!
//! tether's real `serve` (release build) runs as its service account under the chart's RBAC
//! against the fake API server in tests/support, which answers every SubjectAccessReview
//! after `--delay-ms`. Each cold admission is an AttachedResource CREATE review for alice in a
//! namespace never seen before (nothing cached: alice's review and tether's five are all
//! sent), POSTed to /validate over one HTTP/1.1 keep-alive TLS connection as the API server
//! would; warm ones repeat namespaces already seen. The same is measured with no delay, so
//! the delay's share is `(latency - latency without delay) / delay`.

#[path = "../../tests/common/mod.rs"]
mod common;
// Its unit-test modules' imports are unused outside `cargo test`.
#[allow(unused_imports)]
#[path = "../../tests/support/fake_apiserver.rs"]
mod fake_apiserver;
#[path = "../../tests/support/tether_cluster.rs"]
mod tether_cluster;

use std::time::{Duration, Instant};

use common::{request, H1};
use serde_json::json;
use tether_cluster::TetherCluster;

const SAR_PATH: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: not a number: {v}"))
        })
        .unwrap_or(default)
}

fn review_in(ns: &str, uid: &str) -> Vec<u8> {
    let obj = json!({
        "apiVersion": "tether.dev/v1alpha1", "kind": "AttachedResource",
        "metadata": {"name": "scaler", "namespace": ns},
        "spec": {"workloadRef": {"name": "worker"},
                 "object": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                            "spec": {"scaleTargetRef": {}, "minReplicas": 1, "maxReplicas": 3}}}
    });
    let r = common::review(
        uid,
        "tether.dev",
        "v1alpha1",
        "AttachedResource",
        "attachedresources",
        "CREATE",
        ns,
        Some(obj),
        None,
    );
    serde_json::to_vec(&r).expect("serialisable")
}

/// `bench/load`'s review (bench/fixtures/attached-create.json: kubectl's annotation and
/// managedFields included) as alice in namespace `ns`, whom the chart's RBAC in the fake lets
/// create it: the same bytes as the standalone load, answered on the cluster path.
fn fixture_in(ns: &str) -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/bench/fixtures/attached-create.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut r: serde_json::Value = serde_json::from_str(&text).expect("the fixture is JSON");
    r["request"]["namespace"] = json!(ns);
    r["request"]["object"]["metadata"]["namespace"] = json!(ns);
    r["request"]["userInfo"] =
        json!({"username": tether_cluster::ALICE, "groups": ["devs", "system:authenticated"]});
    serde_json::to_vec(&r).expect("serialisable")
}

/// One admission: (latency, access reviews the fake received meanwhile).
async fn admit(c: &TetherCluster, h1: &mut H1, ns: &str, uid: &str) -> (Duration, usize) {
    let before = c.fake.requests_matching("POST", SAR_PATH).len();
    let body = review_in(ns, uid);
    let t = Instant::now();
    let r = h1
        .send(request(
            "POST",
            "/validate?timeout=10s",
            Some("application/json"),
            body,
        ))
        .await;
    let lat = t.elapsed();
    let v = r.json();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(v["response"]["allowed"], true, "{v}\n{}", c.tether.logs());
    (
        lat,
        c.fake.requests_matching("POST", SAR_PATH).len() - before,
    )
}

fn pct(v: &mut [Duration], q: f64) -> Duration {
    v.sort();
    v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One SubjectAccessReview sent straight to the fake (as the admin): what one review round
/// trip costs a client, the fake's timer granularity and handling included.
async fn one_review(c: &TetherCluster) -> Duration {
    use k8s_openapi::api::authorization::v1::SubjectAccessReview;
    let api: kube::Api<SubjectAccessReview> = kube::Api::all(c.admin().await);
    let sar: SubjectAccessReview = serde_json::from_value(json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "alice", "groups": ["devs"],
                 "resourceAttributes": {"verb": "create", "group": "autoscaling",
                                        "resource": "horizontalpodautoscalers",
                                        "namespace": "probe"}}
    }))
    .expect("a valid review");
    let t = Instant::now();
    api.create(&kube::api::PostParams::default(), &sar)
        .await
        .expect("the fake answers");
    t.elapsed()
}

struct Run {
    /// Direct review round trips (see [`one_review`]).
    review: Vec<Duration>,
    cold: Vec<Duration>,
    cold_reviews: Vec<usize>,
    warm: Vec<Duration>,
    warm_reviews: usize,
    /// tether's CPU time (user + system) over the warm admissions.
    warm_cpu: Duration,
}

/// User + system CPU time of process `pid` so far.
fn cpu_time(pid: u32) -> Duration {
    let secs = common::attack::cpu_secs(&pid.to_string())
        .unwrap_or_else(|| panic!("/proc/{pid}/stat: not readable"));
    Duration::from_secs_f64(secs)
}

/// Where and how long to keep the cluster up after the warm admissions (`--hold`).
struct Hold {
    secs: u64,
    dir: std::path::PathBuf,
}

async fn run(delay: Duration, cold: u64, warm: u64, hold: Option<&Hold>) -> Run {
    let c = TetherCluster::start(&["--controllers", "none"]).await;
    let mut h1 = H1::connect(c.tether.addr, &c.tether.ca).await;
    // Discovery and the connection warm up outside the measurement.
    admit(&c, &mut h1, "warm-up", "w").await;
    c.fake.set_access_review_delay(delay);
    let mut out = Run {
        review: Vec::new(),
        cold: Vec::new(),
        cold_reviews: Vec::new(),
        warm: Vec::new(),
        warm_reviews: 0,
        warm_cpu: Duration::ZERO,
    };
    one_review(&c).await;
    for _ in 0..cold {
        out.review.push(one_review(&c).await);
    }
    for i in 0..cold {
        let (lat, n) = admit(&c, &mut h1, &format!("cold-{i}"), &format!("c{i}")).await;
        out.cold.push(lat);
        out.cold_reviews.push(n);
    }
    let cpu_before = cpu_time(c.tether.child.id());
    for i in 0..warm {
        let ns = format!("cold-{}", i % cold.max(1));
        let (lat, n) = admit(&c, &mut h1, &ns, &format!("w{i}")).await;
        out.warm.push(lat);
        out.warm_reviews += n;
    }
    out.warm_cpu = cpu_time(c.tether.child.id()) - cpu_before;
    if let Some(h) = hold {
        let write = |name: &str, bytes: &[u8]| {
            let path = h.dir.join(name);
            std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        };
        write("review.json", &review_in("cold-0", "load"));
        write("fixture.json", &fixture_in("cold-0"));
        write("ca.crt", &c.tether.ca);
        write("pid", c.tether.child.id().to_string().as_bytes());
        // Last: a load tool waits for this file.
        write("addr", c.tether.addr.to_string().as_bytes());
        println!("holding the cluster for {} s (--hold)", h.secs);
        tokio::time::sleep(Duration::from_secs(h.secs)).await;
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--tether-bin") {
        let path = args
            .get(i + 1)
            .unwrap_or_else(|| panic!("--tether-bin: missing PATH (a tether binary)"));
        common::use_tether_bin(path);
    }
    let hold = args.iter().position(|a| a == "--hold-dir").map(|i| {
        let dir = args
            .get(i + 1)
            .unwrap_or_else(|| panic!("--hold-dir: missing DIR"));
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("--hold-dir {dir}: {e}"));
        Hold {
            secs: arg("--hold", 60),
            dir: dir.into(),
        }
    });
    let delay_ms = arg("--delay-ms", 2);
    let cold = arg("--cold", 30);
    let warm = arg("--warm", 300);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let delay = Duration::from_millis(delay_ms);
        let mut base = run(Duration::ZERO, cold, warm, hold.as_ref()).await;
        let mut with = run(delay, cold, warm, None).await;
        let (b50, w50) = (pct(&mut base.cold, 0.5), pct(&mut with.cold, 0.5));
        let mut reviews = with.cold_reviews.clone();
        reviews.sort();
        println!(
            "cold AttachedResource admission ({cold} namespaces, access-review delay {delay_ms} ms):"
        );
        println!(
            "  access reviews sent per admission: median {}, min {}, max {}",
            reviews[reviews.len() / 2],
            reviews[0],
            reviews[reviews.len() - 1]
        );
        println!(
            "  latency p50 {:.3} ms, p90 {:.3} ms (no delay: p50 {:.3} ms)",
            ms(w50),
            ms(pct(&mut with.cold, 0.9)),
            ms(b50)
        );
        let (r0, r1) = (pct(&mut base.review, 0.5), pct(&mut with.review, 0.5));
        println!(
            "  one access review sent alone: p50 {:.3} ms (no delay: {:.3} ms), so one round trip of delay costs {:.3} ms",
            ms(r1),
            ms(r0),
            ms(r1) - ms(r0)
        );
        println!(
            "  the delay's share of a cold admission: (p50 - p50 without delay) / (one review's cost) = {:.2} round trips \
             (/ the nominal delay: {:.2}); p50 / nominal delay = {:.2}",
            (ms(w50) - ms(b50)) / (ms(r1) - ms(r0)).max(0.001),
            (ms(w50) - ms(b50)) / delay_ms.max(1) as f64,
            ms(w50) / delay_ms.max(1) as f64
        );
        println!("warm ({warm} admissions over the same namespaces):");
        println!(
            "  access reviews sent: {}; latency p50 {:.3} ms, p99 {:.3} ms (no delay: p50 {:.3} ms)",
            with.warm_reviews,
            ms(pct(&mut with.warm, 0.5)),
            ms(pct(&mut with.warm, 0.99)),
            ms(pct(&mut base.warm, 0.5))
        );
        let per = |r: &Run| r.warm_cpu.as_secs_f64() * 1e6 / warm.max(1) as f64;
        println!(
            "  tether CPU per warm admission: {:.1} µs (no delay: {:.1} µs)",
            per(&with),
            per(&base)
        );
        println!("tether binary: {}", common::tether_bin());
    });
}
