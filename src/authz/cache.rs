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
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

// tokio's clock, so tests can drive the refresh with a paused clock.
use tokio::time::Instant;

use futures::future::{BoxFuture, FutureExt, Shared};
use prometheus::{Histogram, IntCounter};

use super::{AccessDecision, AccessReviewer, AuthzError, Identity, ResourceAttributes, Role};
use crate::metrics::Metrics;

type Key = (Identity<'static>, ResourceAttributes<'static>);

/// foldhash, seeded per process: every admission request probes the map six times with a
/// key of a few hundred bytes, which cost SipHash (std's default) about 2 k instructions a
/// probe. foldhash is "minimally DoS-resistant"; here that suffices: keys are authenticated
/// identities and resolved kinds (not free text a caller picks), hash values never leave the
/// process, and the map is capped at [`MAX_ENTRIES`].
type Hasher = foldhash::quality::RandomState;

/// Lets the cache be probed with borrowed parts: a hit (the hot path: five checks per
/// admission request) clones nothing. The owned tuple hashes its fields in order, exactly
/// as `dyn KeyView` does below, so both forms find the same entry.
trait KeyView {
    fn parts(&self) -> (&Identity<'_>, &ResourceAttributes<'_>);
}

impl KeyView for Key {
    fn parts(&self) -> (&Identity<'_>, &ResourceAttributes<'_>) {
        (&self.0, &self.1)
    }
}

impl KeyView for (&Identity<'_>, &ResourceAttributes<'_>) {
    fn parts(&self) -> (&Identity<'_>, &ResourceAttributes<'_>) {
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
    entries: RwLock<HashMap<Key, Entry, Hasher>>,
    inflight: Mutex<HashMap<Key, Pending, Hasher>>,
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

    /// [`CachedReviewer::hit`] in `entries`, which the caller has locked.
    fn hit_in(
        &self,
        entries: &HashMap<Key, Entry, Hasher>,
        who: &Identity<'_>,
        attrs: &ResourceAttributes<'_>,
        started: Instant,
    ) -> Option<Result<AccessDecision, AuthzError>> {
        let probe = (who, attrs);
        let e = entries.get(&probe as &dyn KeyView)?;
        // `started` is now enough (a lookup takes microseconds): one clock read.
        if e.expires <= started {
            return None;
        }
        // Read first: under load the millisecond has nearly always been recorded already,
        // and a plain load leaves the entry's cache line shared between CPUs.
        let now = self.ms_at(started);
        if e.last_used.load(Ordering::Relaxed) < now {
            e.last_used.fetch_max(now, Ordering::Relaxed);
        }
        Some(Ok(e.decision.clone()))
    }

    fn now_ms(&self) -> u64 {
        self.ms_at(Instant::now())
    }

    fn ms_at(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_millis() as u64
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
    metrics: Arc<ReviewMetrics>,
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
                    metrics.count(Role::Tether, &r, Source::Refresh);
                }
            })
            .await;
    }
}

/// The `cache` label: how an answer was obtained. In [`Source::ALL`] order, so `as usize`
/// indexes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Hit,
    Miss,
    Shared,
    /// A background re-ask (counted, not timed: no caller waits for it).
    Refresh,
}

impl Source {
    const ALL: [Source; 4] = [Source::Hit, Source::Miss, Source::Shared, Source::Refresh];

    fn as_str(self) -> &'static str {
        match self {
            Source::Hit => "hit",
            Source::Miss => "miss",
            Source::Shared => "shared",
            Source::Refresh => "refresh",
        }
    }
}

const RESULTS: [&str; 3] = ["allowed", "denied", "error"];
const LABEL_SETS: usize = 2 * RESULTS.len() * Source::ALL.len();

fn result_index(result: &Result<AccessDecision, AuthzError>) -> usize {
    match result {
        Ok(d) if d.allowed => 0,
        Ok(_) => 1,
        Err(_) => 2,
    }
}

/// The children of `tether_access_reviews_total` and `tether_access_review_duration_seconds`
/// per (identity, result, cache) label set, each looked up in its vec on first use and kept.
/// A review then costs an index instead of hashing three labels and locking the vec, twice;
/// and as a child is made only when first counted, `/metrics` shows the same series as
/// looking it up every time would.
struct ReviewMetrics {
    metrics: Metrics,
    counters: [OnceLock<IntCounter>; LABEL_SETS],
    durations: [OnceLock<Histogram>; LABEL_SETS],
}

impl ReviewMetrics {
    fn new(metrics: Metrics) -> Self {
        Self {
            metrics,
            counters: std::array::from_fn(|_| OnceLock::new()),
            durations: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    fn labels(role: Role, result: usize, source: Source) -> (usize, [&'static str; 3]) {
        let r = match role {
            Role::User => 0,
            Role::Tether => 1,
        };
        (
            (r * RESULTS.len() + result) * Source::ALL.len() + source as usize,
            [role.as_str(), RESULTS[result], source.as_str()],
        )
    }

    /// Counts one answer.
    fn count(&self, role: Role, result: &Result<AccessDecision, AuthzError>, source: Source) {
        let (i, labels) = Self::labels(role, result_index(result), source);
        self.count_at(i, &labels);
    }

    fn count_at(&self, i: usize, labels: &[&str; 3]) {
        self.counters[i]
            .get_or_init(|| self.metrics.access_reviews.with_label_values(labels))
            .inc();
    }

    /// Counts one answer and records how long the caller waited for it.
    fn count_timed(
        &self,
        role: Role,
        result: &Result<AccessDecision, AuthzError>,
        source: Source,
        started: Instant,
    ) {
        self.count_waited(role, result, source, started.elapsed());
    }

    /// Counts one answer the caller waited `waited` for.
    fn count_waited(
        &self,
        role: Role,
        result: &Result<AccessDecision, AuthzError>,
        source: Source,
        waited: Duration,
    ) {
        let (i, labels) = Self::labels(role, result_index(result), source);
        self.count_at(i, &labels);
        self.durations[i]
            .get_or_init(|| {
                self.metrics
                    .access_review_duration
                    .with_label_values(&labels)
            })
            .observe(waited.as_secs_f64());
    }
}

pub struct CachedReviewer {
    inner: Arc<dyn AccessReviewer>,
    state: Arc<State>,
    metrics: Arc<ReviewMetrics>,
    /// Started by the first answer about tether's own permissions (inside the runtime).
    refresher: OnceLock<tokio::task::JoinHandle<()>>,
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
                entries: RwLock::new(HashMap::default()),
                inflight: Mutex::new(HashMap::default()),
                allowed_ttl,
                denied_ttl,
                epoch: Instant::now(),
            }),
            metrics: Arc::new(ReviewMetrics::new(metrics)),
            refresher: OnceLock::new(),
        }
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

    /// The answer to each check that is at hand without waiting, in order: a cached one,
    /// or (caching off) one the inner reviewer evaluates locally
    /// ([`AccessReviewer::review_now`]). Each is counted as [`CachedReviewer::review`] would
    /// count it; `None`: call `review` for that one. The clock is read twice for the lot,
    /// not twice per check (that was twelve reads per admission request, more instructions
    /// than the answers themselves when they are local): each answer is timed as the wait
    /// for the whole batch, which is what the caller waited before it could go on.
    pub fn review_all_now(
        &self,
        checks: &[(Role, &Identity<'_>, ResourceAttributes<'_>)],
    ) -> Vec<Option<Result<AccessDecision, AuthzError>>> {
        let started = Instant::now();
        let caching_off = self.caching_off();
        let answers: Vec<_> = if caching_off {
            checks
                .iter()
                .map(|(_, who, attrs)| self.inner.review_now(who, attrs))
                .collect()
        } else {
            // One read lock for the batch, not one per check.
            let entries = self.state.entries.read().unwrap_or_else(|p| p.into_inner());
            checks
                .iter()
                .map(|(_, who, attrs)| self.state.hit_in(&entries, who, attrs, started))
                .collect()
        };
        if answers.iter().any(Option::is_some) {
            let source = if caching_off {
                Source::Miss
            } else {
                Source::Hit
            };
            let waited = started.elapsed();
            for ((role, _, _), answer) in checks.iter().zip(&answers) {
                if let Some(r) = answer {
                    self.metrics.count_waited(*role, r, source, waited);
                }
            }
        }
        answers
    }

    fn caching_off(&self) -> bool {
        self.state.allowed_ttl.is_zero() && self.state.denied_ttl.is_zero()
    }

    /// The cached answer, if there is an unexpired one (not counted: the caller counts it
    /// as a hit).
    fn hit(
        &self,
        who: &Identity<'_>,
        attrs: &ResourceAttributes<'_>,
        started: Instant,
    ) -> Option<Result<AccessDecision, AuthzError>> {
        let entries = self.state.entries.read().unwrap_or_else(|p| p.into_inner());
        self.state.hit_in(&entries, who, attrs, started)
    }

    pub async fn review(
        &self,
        role: Role,
        who: &Identity<'_>,
        attrs: &ResourceAttributes<'_>,
    ) -> Result<AccessDecision, AuthzError> {
        let started = Instant::now();
        if self.caching_off() {
            // Caching off (offline evaluation is already local and exact): no key, no
            // single-flight bookkeeping.
            let r = self.inner.review(who, attrs).await;
            self.metrics.count_timed(role, &r, Source::Miss, started);
            return r;
        }
        if let Some(r) = self.hit(who, attrs, started) {
            self.metrics.count_timed(role, &r, Source::Hit, started);
            return r;
        }
        if role == Role::Tether {
            self.start_refresher();
        }
        let key: Key = (who.to_owned_static(), attrs.to_owned_static());
        let (pending, source) = {
            let mut inflight = self
                .state
                .inflight
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match inflight.get(&key) {
                Some(p) => (p.clone(), Source::Shared),
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
                    (fut, Source::Miss)
                }
            }
        };
        let r = pending.await;
        self.metrics.count_timed(role, &r, source, started);
        r
    }
}

#[cfg(test)]
mod tests;
