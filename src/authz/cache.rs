//! A short-lived cache of access review answers, with concurrent identical reviews collapsed
//! into one call.
//!
//! Admission bursts (a `kubectl apply -f dir/` of fifty objects) ask the same five questions
//! fifty times within a second; the API server should see them once. Allowed and denied
//! answers have separate TTLs (a grant should take effect quickly, so a deny is usually cached
//! for less); errors are never cached, so an API server hiccup is retried on the next request.
//!
//! tether's own permissions (role [`Role::Tether`]: the same five questions per attached kind
//! and namespace) are also refreshed in the background: every half allowed-TTL a task re-asks
//! the allowed answers that were read within the last allowed TTL, so a kind in use never pays
//! a round trip for them (an answer nobody reads is dropped at most two TTLs after its last
//! read). A refresh only ever renews an answer with a fresh one: a failed refresh
//! leaves the old answer to expire at its TTL (the next request asks again and fails closed
//! if the API server still cannot answer), a deny replaces the allow at once, and nothing is
//! allowed on an answer older than the allowed TTL. Denials and user answers are not
//! refreshed. At most [`MAX_REFRESH`] answers are re-asked per round, [`REFRESH_CONCURRENCY`]
//! at a time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Weak;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

// tokio's clock, so tests can drive the refresh with a paused clock.
use tokio::time::Instant;

use futures::future::{BoxFuture, FutureExt, Shared};

use super::{AccessDecision, AccessReviewer, AuthzError, Identity, ResourceAttributes, Role};
use crate::metrics::Metrics;

type Key = (Identity, ResourceAttributes);

/// Lets the cache be probed with borrowed parts: a hit (the hot path: five checks per
/// admission request) clones nothing. The owned tuple hashes its fields in order, exactly
/// as `dyn KeyView` does below, so both forms find the same entry.
trait KeyView {
    fn parts(&self) -> (&Identity, &ResourceAttributes);
}

impl KeyView for Key {
    fn parts(&self) -> (&Identity, &ResourceAttributes) {
        (&self.0, &self.1)
    }
}

impl KeyView for (&Identity, &ResourceAttributes) {
    fn parts(&self) -> (&Identity, &ResourceAttributes) {
        (self.0, self.1)
    }
}

impl<'a> std::borrow::Borrow<dyn KeyView + 'a> for Key {
    fn borrow(&self) -> &(dyn KeyView + 'a) {
        self
    }
}

impl std::hash::Hash for dyn KeyView + '_ {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let (i, a) = self.parts();
        i.hash(state);
        a.hash(state);
    }
}

impl PartialEq for dyn KeyView + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn KeyView + '_ {}
type Pending = Shared<BoxFuture<'static, Result<AccessDecision, AuthzError>>>;

/// Bounds memory when many distinct users hit the webhook.
const MAX_ENTRIES: usize = 16_384;
/// tether's own answers re-asked per background round, at most.
pub const MAX_REFRESH: usize = 1024;
/// Background re-asks in flight at once.
pub const REFRESH_CONCURRENCY: usize = 8;

struct Entry {
    decision: AccessDecision,
    expires: Instant,
    role: Role,
    /// When it was last read (ms since the cache's epoch): only answers in use are renewed.
    last_used: AtomicU64,
}

struct State {
    entries: RwLock<HashMap<Key, Entry>>,
    inflight: Mutex<HashMap<Key, Pending>>,
    allowed_ttl: Duration,
    denied_ttl: Duration,
    epoch: Instant,
}

impl State {
    fn finish(&self, role: Role, key: &Key, result: &Result<AccessDecision, AuthzError>) {
        self.store(role, key, result, self.now_ms());
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    fn store(
        &self,
        role: Role,
        key: &Key,
        result: &Result<AccessDecision, AuthzError>,
        last_used: u64,
    ) {
        if let Ok(d) = result {
            let ttl = if d.allowed {
                self.allowed_ttl
            } else {
                self.denied_ttl
            };
            if !ttl.is_zero() {
                let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
                if entries.len() >= MAX_ENTRIES {
                    let now = Instant::now();
                    entries.retain(|_, e| e.expires > now);
                    if entries.len() >= MAX_ENTRIES {
                        entries.clear();
                    }
                }
                entries.insert(
                    key.clone(),
                    Entry {
                        decision: d.clone(),
                        expires: Instant::now() + ttl,
                        role,
                        last_used: AtomicU64::new(last_used),
                    },
                );
            }
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// tether's unexpired allowed answers read within the last allowed TTL, with when.
    fn due_for_refresh(&self) -> Vec<(Key, u64)> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let recent = self
            .now_ms()
            .saturating_sub(self.allowed_ttl.as_millis() as u64);
        entries
            .iter()
            .filter(|(_, e)| e.role == Role::Tether && e.decision.allowed && e.expires > now)
            .filter_map(|(k, e)| {
                let used = e.last_used.load(Ordering::Relaxed);
                (used >= recent).then(|| (k.clone(), used))
            })
            .take(MAX_REFRESH)
            .collect()
    }
}

/// One background round every `every`, until the cache is dropped.
async fn refresh_loop(
    state: Weak<State>,
    inner: Arc<dyn AccessReviewer>,
    metrics: Metrics,
    every: Duration,
) {
    use futures::StreamExt;
    loop {
        tokio::time::sleep(every).await;
        let Some(st) = state.upgrade() else { return };
        let due = st.due_for_refresh();
        futures::stream::iter(due)
            .for_each_concurrent(REFRESH_CONCURRENCY, |(key, used)| {
                let (st, inner, metrics) = (&st, &inner, &metrics);
                async move {
                    let r = inner.review(&key.0, &key.1).await;
                    // A renewal is not a read: the answer keeps its last read time.
                    st.store(Role::Tether, &key, &r, used);
                    count(metrics, Role::Tether, &r, "refresh");
                }
            })
            .await;
    }
}

fn count(metrics: &Metrics, role: Role, result: &Result<AccessDecision, AuthzError>, cache: &str) {
    let r = match result {
        Ok(d) if d.allowed => "allowed",
        Ok(_) => "denied",
        Err(_) => "error",
    };
    metrics
        .access_reviews
        .with_label_values(&[role.as_str(), r, cache])
        .inc();
}

pub struct CachedReviewer {
    inner: Arc<dyn AccessReviewer>,
    state: Arc<State>,
    metrics: Metrics,
    /// Started by the first answer about tether's own permissions (inside the runtime).
    refresher: std::sync::OnceLock<tokio::task::JoinHandle<()>>,
}

impl Drop for CachedReviewer {
    fn drop(&mut self) {
        if let Some(h) = self.refresher.get() {
            h.abort();
        }
    }
}

impl CachedReviewer {
    pub fn new(
        inner: Arc<dyn AccessReviewer>,
        allowed_ttl: Duration,
        denied_ttl: Duration,
        metrics: Metrics,
    ) -> Self {
        Self {
            inner,
            state: Arc::new(State {
                entries: RwLock::new(HashMap::new()),
                inflight: Mutex::new(HashMap::new()),
                allowed_ttl,
                denied_ttl,
                epoch: Instant::now(),
            }),
            metrics,
            refresher: std::sync::OnceLock::new(),
        }
    }

    fn count(&self, role: Role, result: &Result<AccessDecision, AuthzError>, cache: &str) {
        count(&self.metrics, role, result, cache)
    }

    fn start_refresher(&self) {
        if self.state.allowed_ttl.is_zero() || self.refresher.get().is_some() {
            return;
        }
        let every = self.state.allowed_ttl / 2;
        let _ = self.refresher.get_or_init(|| {
            tokio::spawn(refresh_loop(
                Arc::downgrade(&self.state),
                self.inner.clone(),
                self.metrics.clone(),
                every,
            ))
        });
    }

    /// Reviews currently running (each at most once per distinct question).
    pub fn in_flight(&self) -> usize {
        self.state
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Answers currently cached (expired ones included until they are swept).
    pub fn cached(&self) -> usize {
        self.state
            .entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    pub async fn review(
        &self,
        role: Role,
        who: &Identity,
        attrs: &ResourceAttributes,
    ) -> Result<AccessDecision, AuthzError> {
        if self.state.allowed_ttl.is_zero() && self.state.denied_ttl.is_zero() {
            // Caching off (offline evaluation is already local and exact): no key, no
            // single-flight bookkeeping.
            let r = self.inner.review(who, attrs).await;
            self.count(role, &r, "miss");
            return r;
        }
        {
            let probe = (who, attrs);
            let entries = self.state.entries.read().unwrap_or_else(|p| p.into_inner());
            if let Some(e) = entries.get(&probe as &dyn KeyView) {
                if e.expires > Instant::now() {
                    e.last_used
                        .fetch_max(self.state.now_ms(), Ordering::Relaxed);
                    let r = Ok(e.decision.clone());
                    self.count(role, &r, "hit");
                    return r;
                }
            }
        }
        if role == Role::Tether {
            self.start_refresher();
        }
        let key: Key = (who.clone(), attrs.clone());
        let (pending, cache) = {
            let mut inflight = self
                .state
                .inflight
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match inflight.get(&key) {
                Some(p) => (p.clone(), "shared"),
                None => {
                    let inner = self.inner.clone();
                    let state = self.state.clone();
                    let k = key.clone();
                    // The review runs as its own task and records its own result, so it
                    // completes, fills the cache and leaves the in-flight map even when every
                    // caller gave up (its deadline passed). The inner reviewer bounds its own
                    // time (the SubjectAccessReview timeout), so the task always ends.
                    let task = tokio::spawn(async move {
                        let r = inner.review(&k.0, &k.1).await;
                        state.finish(role, &k, &r);
                        r
                    });
                    let fut = async move {
                        task.await.unwrap_or_else(|e| {
                            Err(AuthzError::Failed(format!(
                                "the access review task failed: {e}"
                            )))
                        })
                    }
                    .boxed()
                    .shared();
                    inflight.insert(key, fut.clone());
                    (fut, "miss")
                }
            }
        };
        let r = pending.await;
        self.count(role, &r, cache);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting {
        calls: AtomicUsize,
        answer: Result<AccessDecision, AuthzError>,
        delay: Duration,
    }

    #[async_trait]
    impl AccessReviewer for Counting {
        async fn review(
            &self,
            _w: &Identity,
            _a: &ResourceAttributes,
        ) -> Result<AccessDecision, AuthzError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            self.answer.clone()
        }
    }

    fn attrs(verb: &str) -> ResourceAttributes {
        ResourceAttributes {
            verb: verb.into(),
            group: "autoscaling".into(),
            version: "v2".into(),
            resource: "horizontalpodautoscalers".into(),
            subresource: None,
            namespace: Some("payments".into()),
            name: None,
        }
    }

    fn setup(
        answer: Result<AccessDecision, AuthzError>,
        delay_ms: u64,
        allowed_ttl: u64,
        denied_ttl: u64,
    ) -> (Arc<Counting>, CachedReviewer, Metrics) {
        let inner = Arc::new(Counting {
            calls: AtomicUsize::new(0),
            answer,
            delay: Duration::from_millis(delay_ms),
        });
        let m = Metrics::new();
        let c = CachedReviewer::new(
            inner.clone(),
            Duration::from_millis(allowed_ttl),
            Duration::from_millis(denied_ttl),
            m.clone(),
        );
        (inner, c, m)
    }

    fn yes() -> Result<AccessDecision, AuthzError> {
        Ok(AccessDecision {
            allowed: true,
            reason: String::new(),
        })
    }

    #[tokio::test]
    async fn concurrent_identical_reviews_make_one_call_then_hit() {
        let (inner, c, m) = setup(yes(), 50, 10_000, 10_000);
        let who = Identity::service_account("t", "t");
        let a = attrs("create");
        let all =
            futures::future::join_all((0..20).map(|_| c.review(Role::Tether, &who, &a))).await;
        assert!(all.iter().all(|r| r.as_ref().unwrap().allowed));
        assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
        c.review(Role::Tether, &who, &a).await.unwrap();
        assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
        let v = |cache: &str| {
            m.access_reviews
                .with_label_values(&["tether", "allowed", cache])
                .get()
        };
        assert_eq!((v("miss"), v("shared"), v("hit")), (1, 19, 1));
        // A different question is a different key.
        c.review(Role::Tether, &who, &attrs("delete"))
            .await
            .unwrap();
        assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn errors_are_never_cached_and_ttls_expire() {
        let (inner, c, m) = setup(Err(AuthzError::Failed("boom".into())), 0, 10_000, 10_000);
        let who = Identity::default();
        assert!(c.review(Role::User, &who, &attrs("create")).await.is_err());
        assert!(c.review(Role::User, &who, &attrs("create")).await.is_err());
        assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
        assert_eq!(
            m.access_reviews
                .with_label_values(&["user", "error", "miss"])
                .get(),
            2
        );

        let no = Ok(AccessDecision {
            allowed: false,
            reason: "no".into(),
        });
        let (inner, c, _) = setup(no, 0, 10_000, 30);
        c.review(Role::User, &who, &attrs("create")).await.unwrap();
        c.review(Role::User, &who, &attrs("create")).await.unwrap();
        assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(60)).await;
        c.review(Role::User, &who, &attrs("create")).await.unwrap();
        assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_cancelled_first_caller_still_fills_the_cache() {
        let (inner, c, m) = setup(yes(), 40, 10_000, 10_000);
        let who = Identity::default();
        let a = attrs("get");
        // The only caller gives up (its budget ran out) long before the review answers.
        let gave_up =
            tokio::time::timeout(Duration::from_millis(5), c.review(Role::User, &who, &a)).await;
        assert!(gave_up.is_err(), "the review must outlive the caller here");
        // Nobody asks again: the review still runs to completion on its own, fills the
        // cache and leaves nothing in flight (issue 11 defect 7: the entry used to stay in
        // the in-flight map forever, holding a future nobody polled).
        let deadline = Instant::now() + Duration::from_secs(10);
        while c.in_flight() > 0 {
            assert!(
                Instant::now() < deadline,
                "the in-flight entry was never removed"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(c.cached(), 1, "the answer was cached");
        assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
        // The next caller is answered from the cache, without another call.
        c.review(Role::User, &who, &a).await.unwrap();
        assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
        assert_eq!(
            m.access_reviews
                .with_label_values(&["user", "allowed", "hit"])
                .get(),
            1
        );
    }

    #[tokio::test]
    async fn a_second_caller_joins_the_review_a_cancelled_caller_started() {
        let (inner, c, _) = setup(yes(), 40, 10_000, 10_000);
        let who = Identity::default();
        let a = attrs("list");
        let _ =
            tokio::time::timeout(Duration::from_millis(5), c.review(Role::User, &who, &a)).await;
        c.review(Role::User, &who, &a).await.unwrap();
        assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
        assert_eq!(c.in_flight(), 0);
    }

    /// A reviewer whose answer the test changes between calls.
    struct Switch {
        calls: AtomicUsize,
        /// Calls for the user (`Identity::default()`).
        user_calls: AtomicUsize,
        answer: Mutex<Result<AccessDecision, AuthzError>>,
    }

    #[async_trait]
    impl AccessReviewer for Switch {
        async fn review(
            &self,
            _w: &Identity,
            _a: &ResourceAttributes,
        ) -> Result<AccessDecision, AuthzError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if _w.user.is_empty() {
                self.user_calls.fetch_add(1, Ordering::SeqCst);
            }
            self.answer.lock().unwrap().clone()
        }
    }

    /// Allowed TTL 1000 ms (rounds every 500 ms), denied TTL 200 ms.
    fn switch() -> (Arc<Switch>, CachedReviewer, Metrics) {
        let inner = Arc::new(Switch {
            calls: AtomicUsize::new(0),
            user_calls: AtomicUsize::new(0),
            answer: Mutex::new(yes()),
        });
        let m = Metrics::new();
        let c = CachedReviewer::new(
            inner.clone(),
            Duration::from_millis(1000),
            Duration::from_millis(200),
            m.clone(),
        );
        (inner, c, m)
    }

    async fn at(ms: u64, start: Instant) {
        tokio::time::sleep_until(start + Duration::from_millis(ms)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn own_answers_in_use_are_refreshed_without_a_request() {
        let (inner, c, m) = switch();
        let t0 = Instant::now();
        let who = Identity::service_account("t", "t");
        let a = attrs("create");
        c.review(Role::Tether, &who, &a).await.unwrap();
        assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
        // No request between: the round at 500 ms asks again on its own.
        at(600, t0).await;
        assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
        let refreshed = m
            .access_reviews
            .with_label_values(&["tether", "allowed", "refresh"]);
        assert_eq!(refreshed.get(), 1);
        // Rounds at 500 and 1000 ms renewed it (read at 0 ms, within a TTL): past the first
        // answer's TTL the renewed one answers, with no round trip.
        at(1200, t0).await;
        assert!(c.review(Role::Tether, &who, &a).await.unwrap().allowed);
        assert_eq!(inner.calls.load(Ordering::SeqCst), 3);
        // Read at 1200 ms: renewed at 1500 and 2000 ms, not at 2500 (no read within a TTL),
        // so it expires at 3000 ms and the next read asks again.
        at(2600, t0).await;
        assert_eq!(inner.calls.load(Ordering::SeqCst), 5);
        assert_eq!(refreshed.get(), 4);
        at(3100, t0).await;
        c.review(Role::Tether, &who, &a).await.unwrap();
        assert_eq!(
            inner.calls.load(Ordering::SeqCst),
            6,
            "expired: asked again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_never_extends_an_allow_beyond_its_ttl() {
        let (inner, c, _) = switch();
        let t0 = Instant::now();
        let who = Identity::service_account("t", "t");
        let a = attrs("patch");
        c.review(Role::Tether, &who, &a).await.unwrap();
        *inner.answer.lock().unwrap() = Err(AuthzError::Failed("down".into()));
        at(600, t0).await;
        assert_eq!(inner.calls.load(Ordering::SeqCst), 2, "the round asked");
        // Within the TTL of the last answer that was given: still allowed (documented).
        at(900, t0).await;
        assert!(c.review(Role::Tether, &who, &a).await.unwrap().allowed);
        // Past it: asked again, and the error is the answer (the caller fails closed).
        at(1100, t0).await;
        assert!(c.review(Role::Tether, &who, &a).await.is_err());
        assert_eq!(inner.calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refreshed_deny_replaces_the_allow_at_once() {
        let (inner, c, _) = switch();
        let t0 = Instant::now();
        let who = Identity::service_account("t", "t");
        let a = attrs("delete");
        c.review(Role::Tether, &who, &a).await.unwrap();
        *inner.answer.lock().unwrap() = Ok(AccessDecision {
            allowed: false,
            reason: "revoked".into(),
        });
        at(600, t0).await;
        let d = c.review(Role::Tether, &who, &a).await.unwrap();
        assert!(!d.allowed, "the allow cached at 0 ms is gone");
        assert_eq!(
            inner.calls.load(Ordering::SeqCst),
            2,
            "answered by the refresh"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn user_answers_are_not_refreshed() {
        let (inner, c, _) = switch();
        let t0 = Instant::now();
        // The refresher runs (tether's answer is renewed) but leaves the user's alone.
        c.review(
            Role::Tether,
            &Identity::service_account("t", "t"),
            &attrs("get"),
        )
        .await
        .unwrap();
        c.review(Role::User, &Identity::default(), &attrs("create"))
            .await
            .unwrap();
        at(1600, t0).await;
        assert_eq!(inner.user_calls.load(Ordering::SeqCst), 1);
        assert!(
            inner.calls.load(Ordering::SeqCst) > 2,
            "tether's was renewed"
        );
    }
}
