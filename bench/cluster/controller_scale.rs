//! Controller scale (issue 14): the AttachedResource controller against the fake API server,
//! at 1k, 3k and 10k AttachedResources x 3 Deployment versions over 100 namespaces, with a
//! fixed delay on every API call. A benchmark, not a test: CI never runs it.
//!
//!     cargo bench --bench controller_scale -- [--sizes 1000,3000,10000] [--namespaces 100]
//!                                             [--versions 3] [--call-delay-ms 1]
//!                                             [--kube-api-qps N]
//!
//! `--kube-api-qps N` runs tether with `--kube-api-qps N --kube-api-burst N` (its client-side
//! rate limit); without it, tether's defaults apply.
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
//! API calls tether made, and its successful reconciles. Under the first and no-op passes:
//! the CPU tether and the bench (the fake API server) used, tether's calls per kind with the
//! fake's mean time per call (served, store lock held, lock waited, webhooks), and tether's
//! calls per second (a flat rate at `--kube-api-qps` means the client-side limit paced it).

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

/// tether's flags: [`ARGS`], plus `--kube-api-qps`/`--kube-api-burst` when the bench was
/// given `--kube-api-qps N` (both set to N; without it tether's defaults apply).
fn tether_args() -> Vec<String> {
    let mut args: Vec<String> = ARGS.iter().map(|a| a.to_string()).collect();
    let qps = arg("--kube-api-qps", "");
    if !qps.is_empty() {
        args.extend([
            "--kube-api-qps".into(),
            qps.clone(),
            "--kube-api-burst".into(),
            qps,
        ]);
    }
    args
}

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

/// CPU seconds used so far by process `pid` (`"self"`: the bench, which runs the fake API
/// server); 0 when `/proc` cannot be read.
fn cpu_secs(pid: &str) -> f64 {
    common::attack::cpu_secs(pid).unwrap_or(0.0)
}

/// CPU used in a phase: tether's and the bench's (the fake API server and the polls).
struct Cpu {
    tether_pid: String,
    tether: f64,
    bench: f64,
    /// The fake's store lock so far ([`fake_apiserver::FakeApiServer::store_lock_stats`]).
    lock: (u64, Duration, Duration),
}

impl Cpu {
    fn start(s: &common::Server, fake: &fake_apiserver::FakeApiServer) -> Cpu {
        let tether_pid = s.child.id().to_string();
        Cpu {
            tether: cpu_secs(&tether_pid),
            bench: cpu_secs("self"),
            tether_pid,
            lock: fake.store_lock_stats(),
        }
    }

    fn note(&self, wall: f64, fake: &fake_apiserver::FakeApiServer) -> String {
        let tether = cpu_secs(&self.tether_pid) - self.tether;
        let bench = cpu_secs("self") - self.bench;
        let lock = fake.store_lock_stats();
        format!(
            "CPU: tether {tether:.2} s, bench and fake {bench:.2} s, in {wall:.2} s wall; \
             the fake's store lock taken {} times, held {:.2} s, waited for {:.2} s",
            lock.0 - self.lock.0,
            (lock.2 - self.lock.2).as_secs_f64(),
            (lock.1 - self.lock.1).as_secs_f64(),
        )
    }
}

/// Where tether's calls of a phase went: per kind, the count and the fake's mean time to
/// serve one (delay included), to route it under the store lock and to wait for that lock;
/// and tether's calls per second (1 s buckets from its first call), to show whether the
/// client-side rate limit paced it.
fn profile(requests: &[fake_apiserver::Recorded]) -> Vec<String> {
    let tether: Vec<_> = requests
        .iter()
        .filter(|r| r.user == tether_cluster::TETHER_USER)
        .collect();
    #[derive(Default)]
    struct Kind {
        calls: usize,
        /// Calls with a timing, and their served and webhook time.
        timed: usize,
        served: Duration,
        admission: Duration,
        /// Calls routed under one take of the store lock, and their hold and wait.
        routed: usize,
        locked: Duration,
        waited: Duration,
    }
    let mut kinds: Vec<(String, Kind)> = Vec::new();
    for r in &tether {
        let watch = if r.query.contains("watch=true") {
            " watch"
        } else {
            ""
        };
        let key = format!("{} {}{watch}", r.method, resource_of(&r.path));
        let i = match kinds.iter().position(|k| k.0 == key) {
            Some(i) => i,
            None => {
                kinds.push((key, Kind::default()));
                kinds.len() - 1
            }
        };
        let k = &mut kinds[i].1;
        k.calls += 1;
        if let Some(t) = r.timing {
            k.timed += 1;
            k.served += t.served;
            k.admission += t.admission;
            if let (Some(held), Some(waited)) = (t.locked, t.lock_wait) {
                k.routed += 1;
                k.locked += held;
                k.waited += waited;
            }
        }
    }
    kinds.sort_by_key(|k| std::cmp::Reverse(k.1.calls));
    let mean = |d: Duration, n: usize| d.as_secs_f64() * 1e6 / n.max(1) as f64;
    let mut notes: Vec<String> = kinds
        .iter()
        .take(8)
        .map(|(key, k)| {
            let lock = if k.routed > 0 {
                format!(
                    "store lock held {:.1}, waited {:.1}",
                    mean(k.locked, k.routed),
                    mean(k.waited, k.routed)
                )
            } else {
                "store lock taken several times (in the totals)".to_string()
            };
            format!(
                "{key}: {} calls, mean µs served {:.0}, {lock}, webhooks {:.0}",
                k.calls,
                mean(k.served, k.timed),
                mean(k.admission, k.timed)
            )
        })
        .collect();
    if let Some(first) = tether.first() {
        let mut per_sec: Vec<usize> = Vec::new();
        for r in &tether {
            let s = r.at.saturating_duration_since(first.at).as_secs() as usize;
            if per_sec.len() <= s {
                per_sec.resize(s + 1, 0);
            }
            per_sec[s] += 1;
        }
        let full = &per_sec[..per_sec.len().saturating_sub(1).max(1)];
        let mut sorted = full.to_vec();
        sorted.sort_unstable();
        notes.push(format!(
            "tether calls per second (whole seconds): median {}, max {}, over {} s",
            sorted[sorted.len() / 2],
            sorted[sorted.len() - 1],
            full.len()
        ));
    }
    notes
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
    let args = tether_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
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
    fake.set_call_delay(delay);
    let mut phases = Vec::new();

    let t = Instant::now();
    let bench_cpu = cpu_secs("self");
    let c = TetherCluster::start_on(fake, &args).await;
    let startup = t.elapsed().as_secs_f64();
    let mut cpu = Cpu::start(&c.tether, &c.fake);
    cpu.bench = bench_cpu;
    let limit = Duration::from_secs(1800);
    // Both checks read the fake's store under its lock (the one every request of tether's
    // needs), so they go one namespace at a time and never look at a finished namespace
    // again: a poll never walks everything (a count of all copies every 100 ms made the
    // polls' work grow with n² over a pass), and the Ready scan starts once the copies are
    // all there.
    let per_ns_copies = (per_ns * versions) as usize;
    let namespaces_copied = std::cell::Cell::new(0u64);
    let namespaces_ready = std::cell::Cell::new(0u64);
    wait("the first pass", limit, &c, || {
        while namespaces_copied.get() < namespaces {
            let ns = format!("ns-{:03}", namespaces_copied.get());
            if c.fake
                .count_in("autoscaling", "horizontalpodautoscalers", &ns, |_| true)
                != per_ns_copies
            {
                return false;
            }
            namespaces_copied.set(namespaces_copied.get() + 1);
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
    let secs = t.elapsed().as_secs_f64();
    let mut notes = vec![cpu.note(secs, &c.fake)];
    notes.extend(profile(&c.fake.requests()));
    phases.push(Phase {
        name: "first pass",
        secs,
        writes: writes_since(&c.fake, 0),
        rss_mb: peak_rss_mb(&c.tether),
        calls: tether_calls(&c.fake),
        reconciles: reconciles(&c.tether),
        leader: leader_transitions(&c.tether),
        notes,
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
    let requests_before = fake.requests().len();
    let t = Instant::now();
    let bench_cpu = cpu_secs("self");
    let c = TetherCluster::start_on(fake, &args).await;
    let mut cpu = Cpu::start(&c.tether, &c.fake);
    cpu.bench = bench_cpu;
    wait("the no-op pass", limit, &c, || {
        reconciles(&c.tether) >= total as f64
    })
    .await;
    let secs = t.elapsed().as_secs_f64();
    let mut notes = vec![cpu.note(secs, &c.fake)];
    let requests = c.fake.requests();
    notes.extend(profile(requests.get(requests_before..).unwrap_or_default()));
    phases.push(Phase {
        name: "no-op pass (restart)",
        secs,
        writes: writes_since(&c.fake, before),
        rss_mb: peak_rss_mb(&c.tether),
        calls: tether_calls(&c.fake) - calls_before,
        reconciles: reconciles(&c.tether),
        leader: leader_transitions(&c.tether),
        notes,
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
