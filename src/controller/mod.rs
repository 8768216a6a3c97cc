//! The companion controller (SPEC 6): one reconciler per custom resource, in the shape of
//! kube-runtime's `Controller` (a shared [`Context`], `Action::requeue`, an error policy with
//! per-object exponential backoff), run only by the replica that holds the Lease.
//!
//! Shared by the reconcilers: [`conditions`] (time stamps, `lastTransitionTime` carry-over)
//! and [`measure`] (the reconcile metrics, a Drop guard).
//!
//! Finalizers are written by hand, not with `kube::runtime::finalizer`, because that helper
//! adds the finalizer (a write) *before* it calls the reconciler, and tether must not write
//! first in two cases: an AttachedResource in a namespace the webhooks skip gets no write at
//! all, and one refused by the reconcile-time policy gate gets only its refusal status, never
//! a finalizer (SECURITY.md, "Reconcile-time policy"). The AttachedResource finalizer is also
//! added in the same resourceVersion-guarded patch that records the applied kinds, which
//! cleanup relies on; `finalizer` would make that two writes. Both reconcilers guard their
//! finalizer patches (resourceVersion, or a JSON-patch `test` of the entry removed), which
//! is what `finalizer` does too.

pub mod admitted;
pub mod attached;
pub mod conditions;
pub mod domains;
pub mod leader;
pub mod measure;

/// Objects each controller reconciles at once. A reconcile makes a few API calls one after
/// another, so this bounds tether's requests in flight (and the memory they hold at 10k
/// objects) to what the API server's priority and fairness gives a workload controller,
/// instead of starting every object's reconcile at once after a restart (bench/RESULTS.md).
pub const RECONCILE_CONCURRENCY: u16 = 16;

/// kube-runtime's controller settings with [`RECONCILE_CONCURRENCY`].
pub fn controller_config() -> kube::runtime::controller::Config {
    kube::runtime::controller::Config::default().concurrency(RECONCILE_CONCURRENCY)
}

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::Store;

use crate::authz::cache::CachedReviewer;
use crate::authz::Identity;
use crate::discovery::KindResolver;
use crate::metrics::Metrics;
use crate::policy::KindPolicy;
use crate::shutdown::Signal;
use crate::stamp::KeyRing;

/// Shared by every reconciler.
pub struct Context {
    pub client: kube::Client,
    pub metrics: Metrics,
    /// apiVersion/kind → resource plural and scope (the same discovery admission uses).
    pub resolver: Arc<dyn KindResolver>,
    pub recorder: Recorder,
    pub settings: Settings,
    /// Failure counts for the error policies' exponential backoff (keys carry the kind).
    pub backoff: Backoff,
    /// Reconcile-time policy ([`admitted`]). `tether serve` always sets it in a cluster;
    /// `None` (only tests that exercise rendering and applying) checks nothing.
    pub policy: Option<Arc<ReconcilePolicy>>,
    /// What the AttachedResource reconciler applied last to each copy.
    pub applied: attached::AppliedMemo,
}

/// What the AttachedResource reconciler re-checks before it acts with tether's rights
/// (SECURITY.md, "Reconcile-time policy").
pub struct ReconcilePolicy {
    /// The admission-stamp keys (the same ring the mutating webhook signs with).
    pub keys: Arc<KeyRing>,
    /// The current ban/allow lists.
    pub kinds: KindPolicy,
    /// The admission handlers' cached reviewer, so tether's own reviews are shared.
    pub reviewer: Arc<CachedReviewer>,
    /// tether's service account.
    pub tether: Identity<'static>,
    /// The namespaces the webhooks skip.
    pub skip: admitted::SkipNamespaces,
}

impl Context {
    pub fn new(
        client: kube::Client,
        metrics: Metrics,
        resolver: Arc<dyn KindResolver>,
        instance: Option<String>,
        settings: Settings,
    ) -> Self {
        let reporter = Reporter {
            controller: "tether".into(),
            instance,
        };
        let backoff = Backoff::with_metrics(&metrics);
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            resolver,
            settings,
            backoff,
            policy: None,
            applied: attached::AppliedMemo::default(),
        }
    }

    /// Turns reconcile-time policy on.
    pub fn with_policy(mut self, policy: ReconcilePolicy) -> Self {
        self.policy = Some(Arc::new(policy));
        self
    }
}

impl Context {
    /// The shared half of every error policy: count the failure, log it, and requeue after
    /// the object's backoff. `key` is "Kind/ns/name".
    pub fn requeue_failed(
        &self,
        controller: &str,
        key: &str,
        err: &dyn std::fmt::Display,
    ) -> kube::runtime::controller::Action {
        let delay = self.backoff.failed(key);
        tracing::warn!(
            controller,
            object = key,
            error = %err,
            retry_in_s = delay.as_secs(),
            "reconcile failed"
        );
        kube::runtime::controller::Action::requeue(delay)
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// `--auto-create-domain-claims`.
    pub auto_create_domain_claims: bool,
    /// Periodic requeue of healthy objects, so drift in what we manage is repaired.
    pub resync: Duration,
    /// How often backoff entries of objects that no longer exist are dropped.
    pub prune_every: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            auto_create_domain_claims: false,
            resync: Duration::from_secs(300),
            prune_every: Duration::from_secs(30),
        }
    }
}

/// Per-object exponential backoff for failed reconciles: 1 s, 2 s, 4 s, … capped at 5 min,
/// reset on success. kube-runtime's error policy returns one `Action` per error, so the
/// attempt count has to live here. Its entries are the objects waiting for a retry, which
/// it publishes as `tether_reconcile_queue_depth{controller}` when built with metrics
/// (kube-runtime's own scheduler queue is not observable from outside).
#[derive(Default)]
pub struct Backoff {
    entries: Mutex<HashMap<String, u32>>,
    depth: Option<prometheus::IntGaugeVec>,
}

const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// The `controller` label of a backoff key ("Kind/ns/name").
pub fn controller_of(key: &str) -> Option<&'static str> {
    match key.split('/').next() {
        Some("AttachedResource") => Some("attached"),
        Some("AppDomain") => Some("domains"),
        _ => None,
    }
}

impl Backoff {
    pub fn new() -> Self {
        Self::default()
    }

    /// A backoff that keeps `tether_reconcile_queue_depth` up to date.
    pub fn with_metrics(metrics: &Metrics) -> Self {
        Self {
            entries: Mutex::default(),
            depth: Some(metrics.reconcile_queue_depth.clone()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Recounts the waiting objects per controller (the map holds only failing objects).
    fn publish(&self, m: &HashMap<String, u32>) {
        let Some(depth) = &self.depth else { return };
        for c in crate::metrics::CONTROLLERS {
            let n = m.keys().filter(|k| controller_of(k) == Some(c)).count();
            depth.with_label_values(&[c]).set(n as i64);
        }
    }

    /// Records a failure of `key` ("kind/ns/name") and returns how long to wait.
    pub fn failed(&self, key: &str) -> Duration {
        let mut m = self.lock();
        let n = m.entry(key.to_string()).or_insert(0);
        let delay = Duration::from_secs(1u64 << (*n).min(16)).min(BACKOFF_CAP);
        *n = n.saturating_add(1);
        self.publish(&m);
        delay
    }

    pub fn succeeded(&self, key: &str) {
        let mut m = self.lock();
        if m.remove(key).is_some() {
            self.publish(&m);
        }
    }

    /// Objects with a failure count.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the entries whose key starts with `prefix` ("Kind/") but is not in `live`:
    /// objects that were deleted while a retry was pending are never reconciled again, so
    /// nothing else would clear them. Returns how many went.
    pub fn retain_live(&self, prefix: &str, live: &HashSet<String>) -> usize {
        let mut m = self.lock();
        let before = m.len();
        m.retain(|k, _| !k.starts_with(prefix) || live.contains(k));
        let dropped = before - m.len();
        if dropped > 0 {
            self.publish(&m);
        }
        dropped
    }

    pub fn contains(&self, key: &str) -> bool {
        self.lock().contains_key(key)
    }
}

/// Every `ctx.settings.prune_every`, drops the backoff entries of `prefix` ("Kind/") objects
/// that are no longer in the controller's `store` (they were deleted). Runs until dropped.
pub async fn prune_backoff<K>(
    ctx: Arc<Context>,
    store: Store<K>,
    prefix: &'static str,
    key: fn(&K) -> String,
) where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    if store.wait_until_ready().await.is_err() {
        return;
    }
    let mut tick = tokio::time::interval(ctx.settings.prune_every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let live: HashSet<String> = store.state().iter().map(|o| key(o)).collect();
        let dropped = ctx.backoff.retain_live(prefix, &live);
        if dropped > 0 {
            tracing::debug!(
                kind = prefix,
                dropped,
                "dropped backoff entries of deleted objects"
            );
        }
    }
}

/// Which reconcilers to run (`--controllers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Enabled {
    pub attached: bool,
    pub domains: bool,
}

impl Enabled {
    /// Parses `--controllers` entries: `attached`, `domains`, or `none`.
    pub fn parse(items: &[String]) -> Result<Self, String> {
        let mut e = Enabled::default();
        for raw in items {
            match raw.trim() {
                "" => {}
                "attached" => e.attached = true,
                "domains" => e.domains = true,
                "none" => return Ok(Enabled::default()),
                other => {
                    return Err(format!(
                        "--controllers (env TETHER_CONTROLLERS): unknown controller {other:?}; use attached, domains, both comma-separated, or none"
                    ))
                }
            }
        }
        Ok(e)
    }

    pub fn any(self) -> bool {
        self.attached || self.domains
    }
}

/// Runs the enabled reconcilers until `stop` fires.
pub async fn run_enabled(ctx: Arc<Context>, enabled: Enabled, stop: Signal) {
    let a = {
        let (ctx, stop) = (ctx.clone(), stop.clone());
        async move {
            if enabled.attached {
                attached::run(ctx, async move { stop.wait().await }).await;
            }
        }
    };
    let d = {
        let (ctx, stop) = (ctx.clone(), stop.clone());
        async move {
            if enabled.domains {
                domains::run(ctx, async move { stop.wait().await }).await;
            }
        }
    };
    tokio::join!(a, d);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let b = Backoff::new();
        let d: Vec<u64> = (0..12).map(|_| b.failed("k").as_secs()).collect();
        assert_eq!(d, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(b.failed("other").as_secs(), 1);
        b.succeeded("k");
        assert_eq!(b.failed("k").as_secs(), 1);
    }

    #[test]
    fn retain_live_drops_only_missing_objects_of_one_kind() {
        let b = Backoff::new();
        for k in ["A/ns/live", "A/ns/gone", "B/ns/gone"] {
            b.failed(k);
        }
        let live = HashSet::from(["A/ns/live".to_string()]);
        assert_eq!(b.retain_live("A/", &live), 1);
        assert!(b.contains("A/ns/live") && !b.contains("A/ns/gone") && b.contains("B/ns/gone"));
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn queue_depth_counts_waiting_objects_per_controller() {
        let m = Metrics::new();
        let b = Backoff::with_metrics(&m);
        let depth = |c: &str| m.reconcile_queue_depth.with_label_values(&[c]).get();
        b.failed("AttachedResource/ns/a");
        b.failed("AttachedResource/ns/a");
        b.failed("AttachedResource/ns/b");
        b.failed("AppDomain/ns/d");
        assert_eq!((depth("attached"), depth("domains")), (2, 1));
        b.succeeded("AttachedResource/ns/a");
        assert_eq!((depth("attached"), depth("domains")), (1, 1));
        b.retain_live("AppDomain/", &HashSet::new());
        assert_eq!((depth("attached"), depth("domains")), (1, 0));
        assert!(m
            .render()
            .contains("tether_reconcile_queue_depth{controller=\"attached\"} 1"));
    }

    #[test]
    fn backoff_keys_map_to_controller_labels() {
        for (key, want) in [
            ("AttachedResource/ns/x", Some("attached")),
            ("AppDomain/ns/x", Some("domains")),
            ("Deployment/ns/x", None),
            ("", None),
        ] {
            assert_eq!(controller_of(key), want, "{key}");
        }
    }

    #[test]
    fn controllers_flag() {
        let s = |v: &[&str]| Enabled::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            s(&["attached", "domains"]).unwrap(),
            Enabled {
                attached: true,
                domains: true
            }
        );
        assert_eq!(s(&["none"]).unwrap(), Enabled::default());
        assert_eq!(
            s(&["domains"]).unwrap(),
            Enabled {
                attached: false,
                domains: true
            }
        );
        assert!(s(&["attached", "bogus"])
            .unwrap_err()
            .contains("unknown controller \"bogus\""));
    }
}
