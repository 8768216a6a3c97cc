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
mod tests;
