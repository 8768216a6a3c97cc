//! Leader election against the fake API server: one Lease, two replicas; only one reconciles,
//! and the other takes over when the first stops renewing (crash) or releases (shutdown).

#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_apiserver::{FakeApiServer, Fault};
use tether::controller::leader::{lead, LeaderConfig};
use tether::metrics::Metrics;
use tether::shutdown;

/// Everything tether logs in this test process (one global subscriber, installed once).
fn captured_logs() -> &'static std::sync::Mutex<Vec<u8>> {
    static LOGS: std::sync::OnceLock<&'static std::sync::Mutex<Vec<u8>>> =
        std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let buf: &'static std::sync::Mutex<Vec<u8>> =
            Box::leak(Box::new(std::sync::Mutex::new(Vec::new())));
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || LogWriter(buf))
            .try_init();
        buf
    })
}

struct LogWriter(&'static std::sync::Mutex<Vec<u8>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs_text() -> String {
    String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned()
}

fn cfg(identity: &str) -> LeaderConfig {
    LeaderConfig {
        namespace: "tether-system".into(),
        lease_name: "tether-controller".into(),
        identity: identity.into(),
        duration_s: 2,
        grace_s: 1,
    }
}

/// Starts a replica whose "reconcilers" count themselves in `active` while they run.
fn replica(
    client: kube::Client,
    id: &str,
    active: Arc<AtomicUsize>,
    metrics: Metrics,
) -> (shutdown::Trigger, tokio::task::JoinHandle<()>) {
    let (trigger, signal) = shutdown::channel();
    let c = cfg(id);
    let task = tokio::spawn(async move {
        let work = |stop: shutdown::Signal| {
            let active = active.clone();
            async move {
                active.fetch_add(1, Ordering::SeqCst);
                stop.wait().await;
                active.fetch_sub(1, Ordering::SeqCst);
            }
        };
        lead(client, c, metrics, signal, work).await.unwrap();
    });
    (trigger, task)
}

async fn wait_for(what: &str, limit: Duration, f: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_takeover_after_expiry_and_after_release() {
    let fake = FakeApiServer::start().await;
    let client = fake.client().await;
    // A replica that died while holding the lease: it never renews again.
    let now = chrono_now();
    fake.insert(serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "tether-controller", "namespace": "tether-system"},
        "spec": {"holderIdentity": "replica-dead", "leaseDurationSeconds": 2, "acquireTime": now, "renewTime": now, "leaseTransitions": 0}
    }));
    let seeded = Instant::now();
    let a_active = Arc::new(AtomicUsize::new(0));
    let ma = Metrics::new();
    let (ta, task_a) = replica(client.clone(), "replica-a", a_active.clone(), ma.clone());
    wait_for(
        "a to take over the dead replica's lease",
        Duration::from_secs(15),
        || a_active.load(Ordering::SeqCst) == 1,
    )
    .await;
    assert!(
        seeded.elapsed() >= Duration::from_secs(2),
        "took over a lease that had not expired"
    );
    assert_eq!(ma.leader.get(), 1);

    // b must not lead while a renews.
    let b_active = Arc::new(AtomicUsize::new(0));
    let mb = Metrics::new();
    let b_started = k8s_openapi::jiff::Timestamp::now();
    let (_tb, _task_b) = replica(client.clone(), "replica-b", b_active.clone(), mb.clone());
    // The event that proves it: a renews the Lease at a time when a lease b saw at its start
    // would have expired (duration 2 s + grace 1 s), and b never led at any look until then.
    let expired_for_b = b_started + k8s_openapi::jiff::SignedDuration::from_secs(3);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert_eq!(b_active.load(Ordering::SeqCst), 0, "b led while a renews");
        assert_eq!(mb.leader.get(), 0);
        let lease = fake
            .get(
                "coordination.k8s.io",
                "v1",
                "leases",
                Some("tether-system"),
                "tether-controller",
            )
            .expect("the Lease exists");
        assert_eq!(lease["spec"]["holderIdentity"], "replica-a");
        let renewed: Option<k8s_openapi::jiff::Timestamp> = lease["spec"]["renewTime"]
            .as_str()
            .and_then(|t| t.parse().ok());
        if renewed.is_some_and(|t| t > expired_for_b) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a did not renew past b's expiry: {lease}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // a shuts down: its reconcilers stop, it releases, and b leads without waiting for expiry.
    ta.fire();
    task_a.await.unwrap();
    assert_eq!(
        a_active.load(Ordering::SeqCst),
        0,
        "a's reconcilers stopped"
    );
    assert_eq!(ma.leader.get(), 0);
    let released = Instant::now();
    wait_for("b to lead", Duration::from_secs(15), || {
        b_active.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(mb.leader.get(), 1);
    eprintln!("takeover after release: {:?}", released.elapsed());
}

/// Issue 11 defect 6: the reconcilers' future ending while this replica holds the Lease (a
/// controller stream that ended, say) must not leave a leader that reconciles nothing:
/// `tether_leader` drops to 0, the Lease is released, and the reconcilers start again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcilers_that_end_while_leading_are_restarted_and_the_gauge_tells() {
    captured_logs();
    let fake = FakeApiServer::start().await;
    let client = fake.client().await;
    let starts = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicUsize::new(0));
    let metrics = Metrics::new();
    let (trigger, signal) = shutdown::channel();
    let task = {
        let (starts, running, metrics) = (starts.clone(), running.clone(), metrics.clone());
        tokio::spawn(async move {
            let work = |stop: shutdown::Signal| {
                let (starts, running) = (starts.clone(), running.clone());
                async move {
                    // The first run ends on its own at once; later runs behave.
                    if starts.fetch_add(1, Ordering::SeqCst) == 0 {
                        return;
                    }
                    running.fetch_add(1, Ordering::SeqCst);
                    stop.wait().await;
                    running.fetch_sub(1, Ordering::SeqCst);
                }
            };
            lead(client, cfg("replica-a"), metrics, signal, work).await
        })
    };
    wait_for(
        "the gauge to say this replica no longer leads",
        Duration::from_secs(15),
        || starts.load(Ordering::SeqCst) == 1 && metrics.leader.get() == 0,
    )
    .await;
    wait_for(
        "the reconcilers to be started again, leading",
        Duration::from_secs(20),
        || running.load(Ordering::SeqCst) == 1 && metrics.leader.get() == 1,
    )
    .await;
    assert_eq!(starts.load(Ordering::SeqCst), 2);
    // ... and the log says what happened, at ERROR.
    let logs = logs_text();
    let line = logs
        .lines()
        .find(|l| l.contains("the reconcilers stopped while this replica held the lease"))
        .unwrap_or_else(|| panic!("no log line about the stopped reconcilers:\n{logs}"));
    assert!(line.contains("ERROR"), "{line}");
    assert!(
        line.contains(
            "leader election stopped; this replica does not reconcile until it starts over"
        ),
        "{line}"
    );
    let lease = fake
        .get(
            "coordination.k8s.io",
            "v1",
            "leases",
            Some("tether-system"),
            "tether-controller",
        )
        .expect("the Lease exists");
    assert_eq!(lease["spec"]["holderIdentity"], "replica-a");
    trigger.fire();
    let r = tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("lead returns after shutdown")
        .unwrap();
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(metrics.leader.get(), 0);
}

/// Issue 11 defect 6: a lease manager that fails (here: the API server refuses the Lease
/// requests for a while) is retried with backoff instead of leaving a replica that never
/// leads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_manager_errors_are_retried_until_the_replica_leads() {
    let fake = FakeApiServer::start().await;
    let client = fake.client().await;
    fake.fail(
        "/apis/coordination.k8s.io",
        Fault::Status(500, "etcdserver: leader changed".into()),
        Some(2),
    );
    let active = Arc::new(AtomicUsize::new(0));
    let metrics = Metrics::new();
    let (trigger, task) = replica(client, "replica-a", active.clone(), metrics.clone());
    wait_for(
        "the replica to lead despite the errors",
        Duration::from_secs(30),
        || active.load(Ordering::SeqCst) == 1,
    )
    .await;
    assert_eq!(metrics.leader.get(), 1);
    assert!(
        fake.requests_matching("", "/apis/coordination.k8s.io")
            .len()
            >= 3,
        "the failed requests were retried"
    );
    trigger.fire();
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("lead returns after shutdown")
        .unwrap();
}

/// Issue 11 defect 6: a lease manager whose renewals keep failing (here: the API server
/// answers 500 to every Lease request) only retries them and still reports this replica as
/// leader; the watchdog notices that the renewal cannot be confirmed within the lease
/// duration, stops the reconcilers and drops `tether_leader` to 0 (another replica may hold
/// the Lease by now), then leads again once the API server answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_cannot_be_renewed_stops_the_reconcilers() {
    let fake = FakeApiServer::start().await;
    let client = fake.client().await;
    let active = Arc::new(AtomicUsize::new(0));
    let metrics = Metrics::new();
    let (trigger, task) = replica(client, "replica-a", active.clone(), metrics.clone());
    wait_for("the replica to lead", Duration::from_secs(15), || {
        active.load(Ordering::SeqCst) == 1
    })
    .await;
    let failing = Instant::now();
    fake.fail(
        "/apis/coordination.k8s.io",
        Fault::Status(500, "etcdserver: request timed out".into()),
        None,
    );
    wait_for(
        "the reconcilers to stop once the renewal cannot be confirmed",
        Duration::from_secs(15),
        || active.load(Ordering::SeqCst) == 0 && metrics.leader.get() == 0,
    )
    .await;
    assert!(
        failing.elapsed() >= Duration::from_secs(1),
        "stopped before the lease could have expired"
    );
    fake.clear_faults();
    wait_for("the replica to lead again", Duration::from_secs(30), || {
        active.load(Ordering::SeqCst) == 1 && metrics.leader.get() == 1
    })
    .await;
    trigger.fire();
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("lead returns after shutdown")
        .unwrap();
}

fn chrono_now() -> String {
    // Microsecond precision, as Lease MicroTime: a whole-second timestamp would backdate the
    // renewal by up to a second and let the lease expire early.
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}
