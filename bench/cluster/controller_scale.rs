//! Controller scale (issue 14): the AttachedResource controller against the fake API server,
//! at 1k, 3k and 10k AttachedResources x 3 Deployment versions over 100 namespaces, with a
//! fixed delay on every API call. A benchmark, not a test: CI never runs it.
//!
//!     cargo bench --bench controller_scale -- [--sizes 1000,3000,10000] [--namespaces 100]
//!                                             [--versions 3] [--call-delay-ms 1]
//!
//! For each size: the objects are stored directly (AttachedResources stamped with the test
//! key, as the webhooks would have), tether's real `serve --controllers attached` (release
//! build) starts as its service account under the chart's RBAC, with the chart's webhooks
//! registered, and
//!   - start-up: spawn to ready (the readiness endpoint answers 200);
//!   - first pass: until every copy exists and every AttachedResource is Ready;
//!   - no-op pass: tether restarts and reconciles everything again (all already converged);
//!     done when its reconcile counter reaches the object count;
//!   - one version changes: one Deployment's `tether.dev/version` label changes, so the copies
//!     of that Deployment's AttachedResources are replaced; done when all the new copies exist
//!     and every old one is gone.
//!
//! Each phase prints its time, the write calls tether made (copies: the attached kind;
//! bookkeeping: AttachedResources and their status; other), tether's peak RSS (VmHWM), all
//! API calls tether made, and its successful reconciles.

#[path = "../../tests/common/mod.rs"]
mod common;
// Its unit-test modules' imports are unused outside `cargo test`.
#[allow(unused_imports)]
#[path = "../../tests/support/fake_apiserver.rs"]
mod fake_apiserver;
#[path = "../../tests/support/tether_cluster.rs"]
mod tether_cluster;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tether_cluster::{fake_with_chart_rbac, TetherCluster};

// The chart's lease duration: a restart releases the Lease (SIGTERM), so the next process
// leads at once anyway, while a 2 s lease was lost under the 10k no-op pass's CPU load on
// a shared 2-core machine, restarting the controllers (10 000 more reconciles in the
// version-change phase); `leader` in the output counts such transitions.
const ARGS: [&str; 6] = [
    "--controllers",
    "attached",
    "--lease-duration",
    "15s",
    "--resync-interval",
    "1h",
];

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

fn num(name: &str, default: &str) -> u64 {
    let v = arg(name, default);
    v.parse()
        .unwrap_or_else(|_| panic!("{name}: not a number: {v}"))
}

fn deployment(ns: &str, version: &str) -> Value {
    let name = format!("worker-{version}");
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns,
                     "labels": {"tether.dev/workload": "worker", "tether.dev/version": version}},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}}
    })
}

fn attached(ns: &str, i: u64) -> Value {
    common::stamped(json!({
        "apiVersion": "tether.dev/v1alpha1", "kind": "AttachedResource",
        "metadata": {"name": format!("scaler-{i}"), "namespace": ns},
        "spec": {"workloadRef": {"name": "worker"},
                 "object": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                            "spec": {"scaleTargetRef": {}, "minReplicas": 1, "maxReplicas": 3}}}
    }))
}

fn peak_rss_mb(s: &common::Server) -> f64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", s.child.id())).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[derive(Default, Debug)]
struct Writes {
    copies: usize,
    bookkeeping: usize,
    other: usize,
    /// The other writes by method and resource (path without names), most frequent first.
    other_kinds: Vec<(String, usize)>,
}

fn writes_since(fake: &fake_apiserver::FakeApiServer, from: usize) -> Writes {
    let mut w = Writes::default();
    for r in fake.writes().into_iter().skip(from) {
        if r.path.contains("/horizontalpodautoscalers") {
            w.copies += 1;
        } else if r.path.contains("/attachedresources") {
            w.bookkeeping += 1;
        } else {
            w.other += 1;
            let key = format!("{} {}", r.method, resource_of(&r.path));
            match w.other_kinds.iter_mut().find(|(k, _)| *k == key) {
                Some((_, n)) => *n += 1,
                None => w.other_kinds.push((key, 1)),
            }
        }
    }
    w.other_kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
    w
}

fn ready(v: &Value) -> bool {
    v.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

async fn wait(what: &str, limit: Duration, c: &TetherCluster, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            c.tether.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn leader_transitions(s: &common::Server) -> f64 {
    common::metric_value(&s.metrics(), "tether_leader_transitions_total").unwrap_or(0.0)
}

fn reconciles(s: &common::Server) -> f64 {
    common::metric_value(
        &s.metrics(),
        "tether_reconcile_total{controller=\"attached\",result=\"success\"}",
    )
    .unwrap_or(0.0)
}

struct Phase {
    name: &'static str,
    secs: f64,
    writes: Writes,
    rss_mb: f64,
    /// API calls tether made in the phase (reads and writes; access reviews included).
    calls: usize,
    /// Successful reconciles counted by tether in the phase (the no-op pass's process
    /// restarts the count).
    reconciles: f64,
    /// Leader transitions of the process so far (1: took the Lease once, never lost it).
    leader: f64,
    /// Where the phase's time went (printed under its row).
    notes: Vec<String>,
}

/// The resource of an API path: `/api/v1/namespaces/NS/RESOURCE[/NAME…]` or
/// `/apis/G/V/namespaces/NS/RESOURCE…`; the last segment for a path without a namespace.
fn resource_of(path: &str) -> &str {
    let segs: Vec<&str> = path.split('/').collect();
    segs.iter()
        .position(|s| *s == "namespaces")
        .and_then(|i| segs.get(i + 2))
        .or(segs.last())
        .copied()
        .unwrap_or("")
}

/// tether's calls among `requests`, by method and resource (names left out), most frequent
/// first.
fn calls_by_kind(requests: &[fake_apiserver::Recorded]) -> Vec<(String, usize)> {
    let mut kinds: Vec<(String, usize)> = Vec::new();
    for r in requests {
        if r.user != tether_cluster::TETHER_USER {
            continue;
        }
        let resource = resource_of(&r.path);
        let watch = if r.query.contains("watch=true") {
            " watch"
        } else {
            ""
        };
        let key = format!("{} {resource}{watch}", r.method);
        match kinds.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => kinds.push((key, 1)),
        }
    }
    kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
    kinds
}

/// Milestones of a phase that started at `t0` (request `from` on), in seconds after `t0`:
/// the first and last call by tether, the first and last copy write, the last
/// AttachedResource write.
fn milestones(fake: &fake_apiserver::FakeApiServer, from: usize, t0: Instant) -> String {
    let reqs: Vec<_> = fake.requests().into_iter().skip(from).collect();
    let secs = |r: Option<&fake_apiserver::Recorded>| {
        r.map_or("-".to_string(), |r| {
            format!("{:.3}", r.at.saturating_duration_since(t0).as_secs_f64())
        })
    };
    let tether = |r: &&fake_apiserver::Recorded| r.user == tether_cluster::TETHER_USER;
    let copy = |r: &&fake_apiserver::Recorded| {
        tether(r) && r.is_write() && r.path.contains("/horizontalpodautoscalers")
    };
    let ar = |r: &&fake_apiserver::Recorded| {
        tether(r) && r.is_write() && r.path.contains("/attachedresources")
    };
    format!(
        "tether calls {}..{} s, copy writes {}..{} s, last AttachedResource write {} s",
        secs(reqs.iter().find(tether)),
        secs(reqs.iter().rev().find(tether)),
        secs(reqs.iter().find(copy)),
        secs(reqs.iter().rev().find(copy)),
        secs(reqs.iter().rev().find(ar)),
    )
}

fn tether_calls(fake: &fake_apiserver::FakeApiServer) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.user == tether_cluster::TETHER_USER)
        .count()
}

async fn size(n: u64, namespaces: u64, versions: u64, delay: Duration) -> (f64, Vec<Phase>) {
    let fake = fake_with_chart_rbac().await;
    let per_ns = n / namespaces;
    for k in 0..namespaces {
        let ns = format!("ns-{k:03}");
        fake.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
        for v in 1..=versions {
            fake.insert(deployment(&ns, &format!("v{v}")));
        }
        for i in 0..per_ns {
            fake.insert(attached(&ns, i));
        }
    }
    let total = (per_ns * namespaces) as usize;
    let copies = total * versions as usize;
    fake.set_call_delay(delay);
    let mut phases = Vec::new();

    let t = Instant::now();
    let c = TetherCluster::start_on(fake, &ARGS).await;
    let startup = t.elapsed().as_secs_f64();
    let limit = Duration::from_secs(1800);
    // The Ready scan reads every AttachedResource's status under the fake's store lock (the
    // one every request of tether's needs): only once the copies are all there, and then per
    // namespace, so a poll never holds the store for a walk over everything.
    let namespaces_ready = std::cell::Cell::new(0u64);
    wait("the first pass", limit, &c, || {
        if c.fake
            .count("autoscaling", "horizontalpodautoscalers", |_| true)
            != copies
        {
            return false;
        }
        while namespaces_ready.get() < namespaces {
            let ns = format!("ns-{:03}", namespaces_ready.get());
            let want = c
                .fake
                .count_in("tether.dev", "attachedresources", &ns, |_| true);
            if c.fake
                .count_in("tether.dev", "attachedresources", &ns, ready)
                != want
            {
                return false;
            }
            namespaces_ready.set(namespaces_ready.get() + 1);
        }
        true
    })
    .await;
    phases.push(Phase {
        name: "first pass",
        secs: t.elapsed().as_secs_f64(),
        writes: writes_since(&c.fake, 0),
        rss_mb: peak_rss_mb(&c.tether),
        calls: tether_calls(&c.fake),
        reconciles: reconciles(&c.tether),
        leader: leader_transitions(&c.tether),
        notes: Vec::new(),
    });

    // No-op: a new process reconciles everything, already converged.
    let TetherCluster {
        fake, mut tether, ..
    } = c;
    // Gracefully, so the lease is released rather than waited out.
    tether.signal(libc::SIGTERM);
    tether.wait_exit(Duration::from_secs(60));
    drop(tether);
    let before = fake.write_count();
    let calls_before = tether_calls(&fake);
    let t = Instant::now();
    let c = TetherCluster::start_on(fake, &ARGS).await;
    wait("the no-op pass", limit, &c, || {
        reconciles(&c.tether) >= total as f64
    })
    .await;
    phases.push(Phase {
        name: "no-op pass (restart)",
        secs: t.elapsed().as_secs_f64(),
        writes: writes_since(&c.fake, before),
        rss_mb: peak_rss_mb(&c.tether),
        calls: tether_calls(&c.fake) - calls_before,
        reconciles: reconciles(&c.tether),
        leader: leader_transitions(&c.tether),
        notes: Vec::new(),
    });

    // One Deployment changes version: its copies are replaced.
    let before = c.fake.write_count();
    let requests_before = c.fake.requests().len();
    let gc_before = c.fake.gc_stats();
    let reconciles_before = reconciles(&c.tether);
    let ns = "ns-000";
    let old = format!("v{versions}");
    let t = Instant::now();
    let client = c.admin().await;
    let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(client, ns);
    deployments
        .patch(
            &format!("worker-{old}"),
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                json!({"metadata": {"labels": {"tether.dev/version": "next"}}}),
            ),
        )
        .await
        .expect("patch the Deployment");
    // Only ns-000 changes: its copies are counted (a range of the fake's store), not all
    // namespaces' (a walk over every copy under the store lock, every poll).
    let version_is = |v: &str| {
        let v = json!(v);
        move |o: &Value| o.pointer("/metadata/labels/tether.dev~1version") == Some(&v)
    };
    // (seconds, reconciles so far in the phase) whenever the count moved, and the time the
    // completion checks themselves took.
    let mut progress: Vec<(f64, f64)> = Vec::new();
    let mut checking = Duration::ZERO;
    let mut checks = 0u32;
    wait("the version change", limit, &c, || {
        let r = reconciles(&c.tether) - reconciles_before;
        if progress.last().is_none_or(|p| p.1 != r) {
            progress.push((t.elapsed().as_secs_f64(), r));
        }
        let started = Instant::now();
        checks += 1;
        let done = c.fake.count_in(
            "autoscaling",
            "horizontalpodautoscalers",
            ns,
            version_is("next"),
        ) == per_ns as usize
            && c.fake.count_in(
                "autoscaling",
                "horizontalpodautoscalers",
                ns,
                version_is(&old),
            ) == 0;
        checking += started.elapsed();
        done
    })
    .await;
    let secs = t.elapsed().as_secs_f64();
    let mut notes = vec![
        format!(
            "{} (done seen at {secs:.3} s)",
            milestones(&c.fake, requests_before, t)
        ),
        format!(
            "completion checks: {checks}, {:.3} s in all; garbage collections: {}, {:.3} s in all",
            checking.as_secs_f64(),
            c.fake.gc_stats().0 - gc_before.0,
            (c.fake.gc_stats().1 - gc_before.1).as_secs_f64(),
        ),
        format!(
            "reconciles (s, count): {:?}",
            progress
                .iter()
                .map(|(s, n)| format!("{s:.2}:{n}"))
                .collect::<Vec<_>>()
        ),
    ];
    // The AttachedResources' status follows the copies: let it land, to count its writes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // One snapshot for the count and its breakdown: tether's background access-review
    // refresh (every 5 s, about 500 reviews at 100 namespaces) must not land between them.
    let requests = c.fake.requests();
    let phase_requests = requests.get(requests_before..).unwrap_or_default();
    notes.push(format!("calls: {:?}", calls_by_kind(phase_requests)));
    phases.push(Phase {
        name: "one version changes",
        secs,
        writes: writes_since(&c.fake, before),
        rss_mb: peak_rss_mb(&c.tether),
        calls: phase_requests
            .iter()
            .filter(|r| r.user == tether_cluster::TETHER_USER)
            .count(),
        reconciles: reconciles(&c.tether) - reconciles_before,
        leader: leader_transitions(&c.tether),
        notes,
    });
    (startup, phases)
}

fn main() {
    let sizes: Vec<u64> = arg("--sizes", "1000,3000,10000")
        .split(',')
        .map(|s| s.parse().expect("--sizes: numbers"))
        .collect();
    let namespaces = num("--namespaces", "100");
    let versions = num("--versions", "3");
    let delay = Duration::from_millis(num("--call-delay-ms", "1"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "{:>6} {:<22} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8} {:>6}",
        "ARs",
        "phase",
        "seconds",
        "µs/AR",
        "copies",
        "bookkp",
        "other",
        "peak MB",
        "calls",
        "reconc",
        "leader"
    );
    for n in sizes {
        let (startup, phases) = rt.block_on(size(n, namespaces, versions, delay));
        println!("{n:>6} {:<22} {startup:>8.2}", "start-up to ready");
        for p in phases {
            println!(
                "{n:>6} {:<22} {:>8.2} {:>8.0} {:>8} {:>8} {:>8} {:>9.1} {:>8} {:>8.0} {:>6.0}",
                p.name,
                p.secs,
                p.secs * 1e6 / n as f64,
                p.writes.copies,
                p.writes.bookkeeping,
                p.writes.other,
                p.rss_mb,
                p.calls,
                p.reconciles,
                p.leader
            );
            if !p.writes.other_kinds.is_empty() {
                println!("{:>6}   other writes: {:?}", "", p.writes.other_kinds);
            }
            for note in &p.notes {
                println!("{:>6}   {note}", "");
            }
        }
    }
}
