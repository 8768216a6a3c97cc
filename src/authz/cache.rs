//! A short-lived cache of access review answers, with concurrent identical reviews collapsed
//! into one call.
//!
//! Admission bursts (a `kubectl apply -f dir/` of fifty objects) ask the same five questions
//! fifty times within a second; the API server should see them once. Allowed and denied
//! answers have separate TTLs (a grant should take effect quickly, so a deny is usually cached
//! for less); errors are never cached, so an API server hiccup is retried on the next request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

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

struct State {
    entries: RwLock<HashMap<Key, (AccessDecision, Instant)>>,
    inflight: Mutex<HashMap<Key, Pending>>,
    allowed_ttl: Duration,
    denied_ttl: Duration,
}

impl State {
    fn finish(&self, key: &Key, result: &Result<AccessDecision, AuthzError>) {
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
                    entries.retain(|_, (_, exp)| *exp > now);
                    if entries.len() >= MAX_ENTRIES {
                        entries.clear();
                    }
                }
                entries.insert(key.clone(), (d.clone(), Instant::now() + ttl));
            }
        }
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

pub struct CachedReviewer {
    inner: Arc<dyn AccessReviewer>,
    state: Arc<State>,
    metrics: Metrics,
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
            }),
            metrics,
        }
    }

    /// Counts one answer and records how long the caller waited for it.
    fn count(
        &self,
        role: Role,
        result: &Result<AccessDecision, AuthzError>,
        cache: &str,
        started: Instant,
    ) {
        let r = match result {
            Ok(d) if d.allowed => "allowed",
            Ok(_) => "denied",
            Err(_) => "error",
        };
        let labels = [role.as_str(), r, cache];
        self.metrics.access_reviews.with_label_values(&labels).inc();
        self.metrics
            .access_review_duration
            .with_label_values(&labels)
            .observe(started.elapsed().as_secs_f64());
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
        let started = Instant::now();
        if self.state.allowed_ttl.is_zero() && self.state.denied_ttl.is_zero() {
            // Caching off (offline evaluation is already local and exact): no key, no
            // single-flight bookkeeping.
            let r = self.inner.review(who, attrs).await;
            self.count(role, &r, "miss", started);
            return r;
        }
        {
            let probe = (who, attrs);
            let entries = self.state.entries.read().unwrap_or_else(|p| p.into_inner());
            if let Some((d, exp)) = entries.get(&probe as &dyn KeyView) {
                if *exp > Instant::now() {
                    let r = Ok(d.clone());
                    self.count(role, &r, "hit", started);
                    return r;
                }
            }
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
                        state.finish(&k, &r);
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
        self.count(role, &r, cache, started);
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
}
