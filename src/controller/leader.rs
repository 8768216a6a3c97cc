//! Leader election through a `coordination.k8s.io/v1` Lease (kube-lease-manager): every
//! replica serves admission; only the lease holder reconciles. Losing the lease stops the
//! reconcilers at once (their shutdown signal fires), and `tether_leader` shows who leads.

use std::future::Future;

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

/// Runs `work(stop)` each time this replica becomes leader, firing `stop` when the lease is
/// lost; returns (releasing the lease) when `shutdown` fires.
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
    let manager = LeaseManagerBuilder::new(client, cfg.lease_name.clone())
        .with_namespace(cfg.namespace.clone())
        .with_identity(cfg.identity.clone())
        .with_duration(cfg.duration_s)
        .with_grace(cfg.grace_s)
        .build()
        .await?;
    let (mut rx, task) = manager.watch().await;
    metrics.leader.set(0);
    loop {
        // Wait to lead (or to be told to stop).
        while !*rx.borrow_and_update() {
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return finish(task).await;
                    }
                }
                _ = shutdown.wait() => {
                    drop(rx);
                    return finish(task).await;
                }
            }
        }
        metrics.leader.set(1);
        tracing::info!(identity = %cfg.identity, lease = %cfg.lease_name, "acquired the controller lease; reconciling");
        let (trigger, stop) = shutdown::channel();
        let work_fut = work(stop);
        tokio::pin!(work_fut);
        let mut work_done = false;
        loop {
            tokio::select! {
                _ = &mut work_fut, if !work_done => { work_done = true; }
                changed = rx.changed() => {
                    if changed.is_err() || !*rx.borrow_and_update() {
                        tracing::warn!(identity = %cfg.identity, "lost the controller lease; stopping reconcilers");
                        break;
                    }
                }
                _ = shutdown.wait() => break,
            }
        }
        trigger.fire();
        if !work_done {
            work_fut.await;
        }
        metrics.leader.set(0);
        if shutdown.is_fired() {
            // Dropping the receiver makes the manager release the lease: the next replica
            // takes over at once instead of after the lease expires.
            drop(rx);
            return finish(task).await;
        }
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
