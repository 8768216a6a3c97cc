//! Client-side rate limit on tether's Kubernetes client: a token bucket (QPS, burst) as a
//! tower layer under `kube::Client`, so every request tether makes (reconciles, watches when
//! they open, Events, access reviews, discovery) takes a token before it is sent. A watch
//! holds no token while it streams.
//!
//! The leader-election Lease has a client and a bucket of its own ([`LEASE_LIMITS`]): were
//! its renewals to take tokens from the shared bucket, a throttled flood of reconcile
//! calls (the very case the limit is for) would queue them, and once a renewal waited past
//! the lease duration the Lease would pass to another replica, which then starts the same
//! flood over. The Lease makes a handful of calls per lease duration, so its own small
//! bucket still bounds it.
//!
//! The bucket is governor's GCRA. A request that would wait longer than its budget fails at
//! once with [`RateLimited`] (the callers retry with backoff) instead of queueing without
//! bound behind a flood.
//!
//! Why a client-side limit at all, when reconciles are already capped at a fixed
//! concurrency: a relist storm or a bug that requeues in a loop would otherwise turn into as
//! many calls as the API server answers; the limit keeps tether's worst case a known rate.

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// Default `--kube-api-qps`.
pub const DEFAULT_QPS: u32 = 1000;
/// Default `--kube-api-burst`.
pub const DEFAULT_BURST: u32 = 2000;
/// Longest a request waits for its token before it fails.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(10);

/// The Lease's own bucket (see the module docs): a renewal (a read and a write) two thirds
/// into the lease duration and a watchdog read every third of it stay under 10 calls per
/// second even at a 1 s lease; a renewal that cannot go out within a second is better
/// retried by the lease manager than queued.
pub const LEASE_LIMITS: Limits = Limits {
    qps: NonZeroU32::new(10).expect("non-zero"),
    burst: NonZeroU32::new(20).expect("non-zero"),
    max_wait: Duration::from_secs(1),
};

/// The limit's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Sustained requests per second.
    pub qps: NonZeroU32,
    /// Requests that may be sent at once after an idle period.
    pub burst: NonZeroU32,
    /// A request that would wait longer than this fails instead.
    pub max_wait: Duration,
}

/// A request was refused by the client-side rate limit.
#[derive(Debug, thiserror::Error)]
#[error(
    "client-side Kubernetes API rate limit ({qps} requests/s, burst {burst}): this request \
     would wait more than {max_wait:?} for its turn, so it was not sent; raise --kube-api-qps \
     / --kube-api-burst if tether's normal load needs more"
)]
pub struct RateLimited {
    pub qps: u32,
    pub burst: u32,
    pub max_wait: Duration,
}

/// tokio's clock as governor's, so the bucket follows tokio's (pausable) time.
#[derive(Debug, Clone)]
struct TokioClock {
    start: tokio::time::Instant,
}

impl Clock for TokioClock {
    // governor implements its `Reference` for Duration: time since `start`.
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

/// One token bucket, shared by every clone of the client.
pub struct Bucket {
    limiter: RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>,
    clock: TokioClock,
    limits: Limits,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket")
            .field("limits", &self.limits)
            .finish()
    }
}

impl Bucket {
    pub fn new(limits: Limits) -> Self {
        let clock = TokioClock {
            start: tokio::time::Instant::now(),
        };
        let quota = Quota::per_second(limits.qps).allow_burst(limits.burst);
        Self {
            limiter: RateLimiter::direct_with_clock(quota, clock.clone()),
            clock,
            limits,
        }
    }

    /// Waits until a token is free and takes it, or fails when that would take longer than
    /// `max_wait` from the call.
    pub async fn acquire(&self) -> Result<(), RateLimited> {
        let deadline = tokio::time::Instant::now() + self.limits.max_wait;
        loop {
            let wait = match self.limiter.check() {
                Ok(()) => return Ok(()),
                Err(not_until) => not_until.wait_time_from(self.clock.now()),
            };
            let at = tokio::time::Instant::now() + wait;
            if at > deadline {
                return Err(RateLimited {
                    qps: self.limits.qps.get(),
                    burst: self.limits.burst.get(),
                    max_wait: self.limits.max_wait,
                });
            }
            // Another waiter may take the token first; then this one waits again.
            tokio::time::sleep_until(at).await;
        }
    }
}

/// The tower layer: `kube::client::ClientBuilder::with_layer(&RateLimitLayer::new(limits))`.
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    bucket: Arc<Bucket>,
}

impl RateLimitLayer {
    pub fn new(limits: Limits) -> Self {
        Self {
            bucket: Arc::new(Bucket::new(limits)),
        }
    }
}

impl<S> tower_layer::Layer<S> for RateLimitLayer {
    type Service = RateLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            bucket: self.bucket.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RateLimitService<S> {
    inner: S,
    bucket: Arc<Bucket>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, Req> tower_service::Service<Req> for RateLimitService<S>
where
    S: tower_service::Service<Req>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        // The inner future (hyper's) sends nothing until it is polled, so the request leaves
        // only after its token is taken; waiting here instead of in poll_ready keeps kube's
        // Buffer worker free for requests that do not wait.
        let sent = self.inner.call(req);
        let bucket = self.bucket.clone();
        Box::pin(async move {
            bucket.acquire().await?;
            sent.await.map_err(Into::into)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(qps: u32, burst: u32, max_wait: Duration) -> Limits {
        Limits {
            qps: NonZeroU32::new(qps).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
            max_wait,
        }
    }

    /// The offsets (from the start) at which `n` back-to-back acquires got their token.
    async fn grant_times(bucket: &Bucket, n: usize) -> Vec<Duration> {
        let start = tokio::time::Instant::now();
        let mut at = Vec::new();
        for _ in 0..n {
            bucket.acquire().await.expect("within the wait budget");
            at.push(start.elapsed());
        }
        at
    }

    #[tokio::test(start_paused = true)]
    async fn burst_then_steady_rate() {
        let bucket = Bucket::new(limits(10, 5, Duration::from_secs(60)));
        let at = grant_times(&bucket, 8).await;
        let ms: Vec<u128> = at.iter().map(Duration::as_millis).collect();
        // Five at once (the burst), then one every 100 ms (10/s).
        assert_eq!(ms, [0, 0, 0, 0, 0, 100, 200, 300]);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_refills_the_burst_but_not_beyond() {
        let bucket = Bucket::new(limits(10, 3, Duration::from_secs(60)));
        grant_times(&bucket, 3).await;
        // Far longer than the 300 ms refill: still only 3 at once.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let ms: Vec<u128> = grant_times(&bucket, 5)
            .await
            .iter()
            .map(Duration::as_millis)
            .collect();
        assert_eq!(ms, [0, 0, 0, 100, 200]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_would_wait_too_long_fails_at_once() {
        let bucket = Bucket::new(limits(1, 1, Duration::from_millis(500)));
        bucket.acquire().await.expect("the burst token");
        let start = tokio::time::Instant::now();
        let err = bucket.acquire().await.expect_err("next token is 1 s away");
        assert_eq!(start.elapsed(), Duration::ZERO, "failed without waiting");
        assert_eq!(
            err.to_string(),
            "client-side Kubernetes API rate limit (1 requests/s, burst 1): this request would \
             wait more than 500ms for its turn, so it was not sent; raise --kube-api-qps / \
             --kube-api-burst if tether's normal load needs more"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_waiters_share_the_rate() {
        let bucket = Arc::new(Bucket::new(limits(20, 2, Duration::from_secs(60))));
        let start = tokio::time::Instant::now();
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let b = bucket.clone();
                tokio::spawn(async move {
                    b.acquire().await.expect("within budget");
                    start.elapsed()
                })
            })
            .collect();
        let mut ms = Vec::new();
        for t in tasks {
            ms.push(t.await.expect("task").as_millis());
        }
        ms.sort();
        assert_eq!(ms, [0, 0, 50, 100, 150, 200]);
    }
}
