//! The reconcile measurer: a guard that observes `tether_reconcile_duration_seconds` when it
//! is dropped, so every way out of a reconcile (including an early return or a cancelled
//! future) is timed, as kube-rs's controller-rs example does.

use std::time::Instant;

use crate::metrics::Metrics;

/// Times one reconcile of `controller`; see [`ReconcileMeasurer::start`].
pub struct ReconcileMeasurer<'a> {
    metrics: &'a Metrics,
    controller: &'static str,
    started: Instant,
}

impl<'a> ReconcileMeasurer<'a> {
    /// Starts the clock; the duration is observed on drop.
    pub fn start(metrics: &'a Metrics, controller: &'static str) -> Self {
        ReconcileMeasurer {
            metrics,
            controller,
            started: Instant::now(),
        }
    }

    /// Counts the reconcile in `tether_reconcile_total{controller,result}`.
    pub fn count(&self, ok: bool) {
        let result = if ok { "success" } else { "error" };
        self.metrics
            .reconcile_total
            .with_label_values(&[self.controller, result])
            .inc();
    }
}

impl Drop for ReconcileMeasurer<'_> {
    fn drop(&mut self) {
        self.metrics
            .reconcile_duration
            .with_label_values(&[self.controller])
            .observe(self.started.elapsed().as_secs_f64());
    }
}
