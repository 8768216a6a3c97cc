//! Leader election through a `coordination.k8s.io/v1` Lease (kube-lease-manager): every
//! replica serves admission; only the lease holder reconciles. Losing the lease stops the
//! reconcilers at once (their shutdown signal fires), and `tether_leader` shows who leads.
//!
//! Nothing stops quietly: when the reconcilers end (or panic) while this replica holds the
//! Lease, or the lease manager fails — including renewals that keep failing, which the lease
//! manager only retries, so a watchdog reads the Lease every third of its duration and gives
//! up leading once it cannot confirm a renewal for a whole duration — the replica logs an
//! error, sets `tether_leader` to 0, releases the Lease (so another replica can take over),
//! and starts over after a backoff (1 s, doubling, at most 30 s). Only shutdown ends [`lead`]
//! and [`run_unelected`].

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures::FutureExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};

use crate::metrics::Metrics;
use crate::shutdown::{self, Signal};

#[derive(Debug, Clone)]
pub struct LeaderConfig {
    pub namespace: String,
    pub lease_name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// Seconds a lease is valid without renewal.
    pub duration_s: u64,
    /// Extra seconds others wait past expiry (clock skew).
    pub grace_s: u64,
}

/// Why one round of leading ended without a shutdown.
#[derive(Debug, thiserror::Error)]
pub enum LeadError {
    #[error("the lease manager failed: {0}")]
    Manager(#[from] LeaseManagerError),
    #[error("the lease manager stopped unexpectedly")]
    ManagerStopped,
    #[error("the reconcilers stopped while this replica held the lease")]
    WorkEnded,
    #[error("the reconcilers panicked")]
    WorkPanicked,
    #[error("the lease could not be confirmed as renewed for {0} s (the lease manager keeps failing); another replica may lead")]
    NotRenewed(u64),
}

const RESTART_MIN: Duration = Duration::from_secs(1);
const RESTART_MAX: Duration = Duration::from_secs(30);
/// A round that lasted this long was healthy: the next failure starts the backoff afresh.
const RESTART_RESET: Duration = Duration::from_secs(120);

/// Restart delays: doubling from [`RESTART_MIN`] to [`RESTART_MAX`], reset after a healthy run.
struct Restarts(Duration);

impl Restarts {
    fn new() -> Self {
        Restarts(RESTART_MIN)
    }

    fn next(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= RESTART_RESET {
            self.0 = RESTART_MIN;
        }
        let d = self.0;
        self.0 = (self.0 * 2).min(RESTART_MAX);
        d
    }
}

/// Runs `work(stop)` each time this replica becomes leader, firing `stop` when the lease is
/// lost; returns (releasing the lease) when `shutdown` fires. Failures are retried with
/// backoff (see the module docs), so the only `Ok` comes with shutdown and no `Err` is
/// returned today (the type is kept for callers that log one).
pub async fn lead<F, Fut>(
    client: kube::Client,
    cfg: LeaderConfig,
    metrics: Metrics,
    shutdown: Signal,
    work: F,
) -> Result<(), LeaseManagerError>
where
    F: Fn(Signal) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut restarts = Restarts::new();
    loop {
        let started = Instant::now();
        let result = lead_once(&client, &cfg, &metrics, &shutdown, &work).await;
        metrics.set_leader(false);
        let problem = match result {
            Ok(()) => return Ok(()),
            Err(p) => p,
        };
        if shutdown.is_fired() {
            return Ok(());
        }
        let delay = restarts.next(started.elapsed());
        tracing::error!(
            identity = %cfg.identity,
            lease = %cfg.lease_name,
            error = %problem,
            retry_in_ms = delay.as_millis() as u64,
            "leader election stopped; this replica does not reconcile until it starts over"
        );
        tokio::select! {
            _ = shutdown.wait() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Without leader election (`--leader-elect=false`): runs `work` until `shutdown`, starting
/// it again with backoff whenever it ends (or panics) on its own; `tether_leader` is 1 only
/// while it runs.
pub async fn run_unelected<F, Fut>(metrics: Metrics, shutdown: Signal, work: F)
where
    F: Fn(Signal) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut restarts = Restarts::new();
    loop {
        let started = Instant::now();
        metrics.set_leader(true);
        let panicked = AssertUnwindSafe(work(shutdown.clone()))
            .catch_unwind()
            .await
            .is_err();
        metrics.set_leader(false);
        if shutdown.is_fired() {
            return;
        }
        let delay = restarts.next(started.elapsed());
        let problem = if panicked {
            LeadError::WorkPanicked
        } else {
            LeadError::WorkEnded
        };
        tracing::error!(error = %problem, retry_in_ms = delay.as_millis() as u64, "reconcilers stopped; starting them again");
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Why leading ended.
enum Why {
    Lost,
    /// The watchdog could not confirm our renewal within the lease duration.
    NotRenewed,
    Shutdown,
    ManagerStopped,
    /// The reconcilers ended by themselves (`true`: they panicked).
    WorkEnded(bool),
}

/// One lease manager's lifetime: `Ok` on shutdown, `Err` when something stopped.
async fn lead_once<F, Fut>(
    client: &kube::Client,
    cfg: &LeaderConfig,
    metrics: &Metrics,
    shutdown: &Signal,
    work: &F,
) -> Result<(), LeadError>
where
    F: Fn(Signal) -> Fut,
    Fut: Future<Output = ()>,
{
    let manager = LeaseManagerBuilder::new(client.clone(), cfg.lease_name.clone())
        .with_namespace(cfg.namespace.clone())
        .with_identity(cfg.identity.clone())
        .with_duration(cfg.duration_s)
        .with_grace(cfg.grace_s)
        .build()
        .await?;
    let (mut rx, task) = manager.watch().await;
    metrics.set_leader(false);
    loop {
        // Wait to lead (or to be told to stop).
        while !*rx.borrow_and_update() {
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        finish(task).await?;
                        return Err(LeadError::ManagerStopped);
                    }
                }
                _ = shutdown.wait() => {
                    // Dropping the receiver makes the manager release the lease.
                    drop(rx);
                    finish(task).await?;
                    return Ok(());
                }
            }
        }
        metrics.set_leader(true);
        tracing::info!(identity = %cfg.identity, lease = %cfg.lease_name, "acquired the controller lease; reconciling");
        let (trigger, stop) = shutdown::channel();
        let work_fut = AssertUnwindSafe(work(stop)).catch_unwind();
        tokio::pin!(work_fut);
        // kube-lease-manager retries failed renewals internally and never reports that the
        // lease expired meanwhile; the watchdog reads the Lease itself so this replica stops
        // reconciling (and says so) once it can no longer show that it holds it.
        let leases: kube::Api<Lease> = kube::Api::namespaced(client.clone(), &cfg.namespace);
        let duration = Duration::from_secs(cfg.duration_s.max(1));
        let mut watchdog = tokio::time::interval((duration / 3).max(Duration::from_millis(200)));
        watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut confirmed = Instant::now();
        let why = loop {
            tokio::select! {
                done = &mut work_fut => break Why::WorkEnded(done.is_err()),
                _ = watchdog.tick() => {
                    match lease_state(&leases, cfg).await {
                        LeaseState::Ours => confirmed = Instant::now(),
                        LeaseState::Theirs => break Why::Lost,
                        LeaseState::Unknown if confirmed.elapsed() > duration => break Why::NotRenewed,
                        LeaseState::Unknown => {}
                    }
                }
                changed = rx.changed() => {
                    if changed.is_err() {
                        break Why::ManagerStopped;
                    }
                    if !*rx.borrow_and_update() {
                        break Why::Lost;
                    }
                }
                _ = shutdown.wait() => break Why::Shutdown,
            }
        };
        trigger.fire();
        if !matches!(why, Why::WorkEnded(_)) {
            let _ = work_fut.await;
        }
        metrics.set_leader(false);
        match why {
            Why::Lost => {
                tracing::warn!(identity = %cfg.identity, "lost the controller lease; reconcilers stopped");
            }
            Why::Shutdown => {
                // Released at once: the next replica takes over without waiting for expiry.
                drop(rx);
                finish(task).await?;
                return Ok(());
            }
            Why::ManagerStopped => {
                drop(rx);
                let _ = finish(task).await;
                return Err(LeadError::ManagerStopped);
            }
            Why::NotRenewed => {
                drop(rx);
                let _ = finish(task).await;
                return Err(LeadError::NotRenewed(duration.as_secs()));
            }
            Why::WorkEnded(panicked) => {
                // Release the lease so a healthy replica can lead while this one backs off.
                drop(rx);
                let _ = finish(task).await;
                return Err(if panicked {
                    LeadError::WorkPanicked
                } else {
                    LeadError::WorkEnded
                });
            }
        }
    }
}

/// What the Lease says about this replica.
enum LeaseState {
    /// Held by us and renewed within its duration.
    Ours,
    /// Held by someone else (or gone).
    Theirs,
    /// Expired while naming us, or unreadable: not confirmed.
    Unknown,
}

async fn lease_state(leases: &kube::Api<Lease>, cfg: &LeaderConfig) -> LeaseState {
    let lease = match leases.get_opt(&cfg.lease_name).await {
        Ok(Some(l)) => l,
        Ok(None) => return LeaseState::Theirs,
        Err(_) => return LeaseState::Unknown,
    };
    let Some(spec) = lease.spec else {
        return LeaseState::Theirs;
    };
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return LeaseState::Theirs;
    }
    let valid_for = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    let fresh = spec.renew_time.is_some_and(|t| {
        let age = k8s_openapi::jiff::Timestamp::now().duration_since(t.0);
        age.as_secs() < valid_for
    });
    if fresh {
        LeaseState::Ours
    } else {
        LeaseState::Unknown
    }
}

async fn finish(
    task: tokio::task::JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
) -> Result<(), LeaseManagerError> {
    match task.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(e) => {
            tracing::warn!(error = %e, "lease manager task ended abnormally");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_double_cap_and_reset_after_a_healthy_run() {
        let mut r = Restarts::new();
        let short = Duration::from_secs(1);
        let got: Vec<u64> = (0..7).map(|_| r.next(short).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(r.next(RESTART_RESET).as_secs(), 1);
        assert_eq!(r.next(short).as_secs(), 2);
    }
}
