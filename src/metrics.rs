//! Prometheus metrics (SPEC 8).
//!
//! Every family is registered once, in [`Metrics::new`], on a private registry: a test or a
//! bench can build as many servers as it likes without "duplicate registration" errors.
//! Label values are bounded: kinds outside the handled set are reported as `other`, reasons
//! come from `&'static str` constants, never from names or uids.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The metric families of SPEC 8, plus `tether_leader`.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub admission_requests: IntCounterVec,
    pub admission_duration: HistogramVec,
    pub access_reviews: IntCounterVec,
    pub reconcile_total: IntCounterVec,
    pub reconcile_duration: HistogramVec,
    /// `tether_policy_denied_total{controller,reason}`: reconciles refused by
    /// reconcile-time policy (reasons are `&'static str` constants).
    pub policy_denied: IntCounterVec,
    pub tls_expiry: prometheus::Gauge,
    pub tls_reloads: IntCounterVec,
    pub build_info: IntGaugeVec,
    pub leader: IntGauge,
    /// Connections holding a slot, by listener (`admission`, `metrics`).
    pub connections_open: IntGaugeVec,
    /// Connections refused at accept, by listener and reason (`cap`, `per_peer`).
    pub connections_rejected: IntCounterVec,
    /// Connections closed by tether, by listener and reason (`idle`: idle timeout;
    /// `evicted`: idle, and its slot was needed for a new connection).
    pub connections_closed: IntCounterVec,
    /// Failed TLS handshakes on the admission port, by coarse reason.
    pub tls_handshake_failures: IntCounterVec,
    /// Admission requests answered 503/429/413 for a budget, by reason.
    pub requests_rejected: IntCounterVec,
    /// Admission requests being served now.
    pub requests_in_flight: IntGauge,
    /// Bytes of the in-flight budget held now (bodies plus estimated parse cost).
    pub inflight_bytes: IntGauge,
    /// Cached children for the hot path: looking a child up by label values hashes the values
    /// and takes a lock each time, which a histogram per request does not need.
    admission_duration_mutate: Histogram,
    admission_duration_validate: Histogram,
}

/// Admission latencies sit between tens of microseconds (pure decisions) and seconds (an
/// access review against a slow API server), so the buckets span both.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// Listener label values.
pub const LISTENERS: [&str; 2] = ["admission", "metrics"];
/// `reason` values of `tether_tls_handshake_failures_total`.
pub const HANDSHAKE_FAILURES: [&str; 4] = ["timeout", "eof", "protocol", "io"];
/// `reason` values of `tether_requests_rejected_total`.
pub const REQUEST_REJECTIONS: [&str; 5] = [
    "concurrency",
    "peer_concurrency",
    "memory",
    "peer_memory",
    "json_values",
];

const RECONCILE_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let admission_requests = IntCounterVec::new(
            Opts::new(
                "tether_admission_requests_total",
                "Admission requests answered, by webhook path, operation, kind, decision and reason.",
            ),
            &["webhook", "operation", "kind", "decision", "reason"],
        )
        .expect("static metric definition");
        let admission_duration = HistogramVec::new(
            HistogramOpts::new(
                "tether_admission_duration_seconds",
                "Time from a parsed AdmissionReview to its answer, by webhook path.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["webhook"],
        )
        .expect("static metric definition");
        let access_reviews = IntCounterVec::new(
            Opts::new(
                "tether_access_reviews_total",
                "Access reviews, by identity (user or tether), result and cache outcome.",
            ),
            &["identity", "result", "cache"],
        )
        .expect("static metric definition");
        let reconcile_total = IntCounterVec::new(
            Opts::new(
                "tether_reconcile_total",
                "Reconciles, by controller and result.",
            ),
            &["controller", "result"],
        )
        .expect("static metric definition");
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new(
                "tether_reconcile_duration_seconds",
                "Reconcile duration, by controller.",
            )
            .buckets(RECONCILE_BUCKETS.to_vec()),
            &["controller"],
        )
        .expect("static metric definition");
        let tls_expiry = prometheus::Gauge::new(
            "tether_tls_certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate currently in use, as a Unix timestamp.",
        )
        .expect("static metric definition");
        let tls_reloads = IntCounterVec::new(
            Opts::new(
                "tether_tls_reloads_total",
                "Serving certificate reloads after the files changed, by result.",
            ),
            &["result"],
        )
        .expect("static metric definition");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "tether_build_info",
                "Build information; the value is always 1.",
            ),
            &["version"],
        )
        .expect("static metric definition");
        let leader = IntGauge::new(
            "tether_leader",
            "1 when this replica holds the controller lease and reconciles, else 0.",
        )
        .expect("static metric definition");

        let policy_denied = IntCounterVec::new(
            Opts::new(
                "tether_policy_denied_total",
                "Reconciles refused by reconcile-time policy, by controller and reason.",
            ),
            &["controller", "reason"],
        )
        .expect("static metric definition");
        let connections_open = IntGaugeVec::new(
            Opts::new(
                "tether_connections_open",
                "Connections holding a slot, by listener.",
            ),
            &["listener"],
        )
        .expect("static metric definition");
        let connections_rejected = IntCounterVec::new(
            Opts::new(
                "tether_connections_rejected_total",
                "Connections closed at accept because no slot could be freed, by listener and reason (cap, per_peer).",
            ),
            &["listener", "reason"],
        )
        .expect("static metric definition");
        let connections_closed = IntCounterVec::new(
            Opts::new(
                "tether_connections_closed_total",
                "Connections closed by tether, by listener and reason (idle: idle timeout; evicted: idle and its slot was given to a new connection).",
            ),
            &["listener", "reason"],
        )
        .expect("static metric definition");
        let tls_handshake_failures = IntCounterVec::new(
            Opts::new(
                "tether_tls_handshake_failures_total",
                "Failed TLS handshakes on the admission port, by reason (timeout, eof, protocol, io).",
            ),
            &["reason"],
        )
        .expect("static metric definition");
        let requests_rejected = IntCounterVec::new(
            Opts::new(
                "tether_requests_rejected_total",
                "Admission requests refused for a budget, by reason (concurrency, peer_concurrency, memory, peer_memory, json_values).",
            ),
            &["reason"],
        )
        .expect("static metric definition");
        let requests_in_flight = IntGauge::new(
            "tether_requests_in_flight",
            "Admission requests being served now.",
        )
        .expect("static metric definition");
        let inflight_bytes = IntGauge::new(
            "tether_inflight_bytes",
            "Bytes of the in-flight budget held now: request bodies plus the estimated cost of parsing them.",
        )
        .expect("static metric definition");

        for c in [
            Box::new(admission_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(connections_open.clone()),
            Box::new(connections_rejected.clone()),
            Box::new(connections_closed.clone()),
            Box::new(tls_handshake_failures.clone()),
            Box::new(requests_rejected.clone()),
            Box::new(requests_in_flight.clone()),
            Box::new(inflight_bytes.clone()),
            Box::new(admission_duration.clone()),
            Box::new(access_reviews.clone()),
            Box::new(reconcile_total.clone()),
            Box::new(reconcile_duration.clone()),
            Box::new(tls_expiry.clone()),
            Box::new(tls_reloads.clone()),
            Box::new(build_info.clone()),
            Box::new(leader.clone()),
            Box::new(policy_denied.clone()),
            crate::logging::dropped_lines_collector(),
        ] {
            registry
                .register(c)
                .expect("each family is registered exactly once");
        }
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        // Pre-create the children whose absence would hide a zero: an alert on
        // `rate(tether_tls_reloads_total{result="error"}[5m]) > 0` needs the series to exist.
        for r in ["success", "error"] {
            tls_reloads.with_label_values(&[r]);
        }
        for l in LISTENERS {
            connections_open.with_label_values(&[l]);
            for r in ["cap", "per_peer"] {
                connections_rejected.with_label_values(&[l, r]);
            }
            for r in ["idle", "evicted"] {
                connections_closed.with_label_values(&[l, r]);
            }
        }
        for r in HANDSHAKE_FAILURES {
            tls_handshake_failures.with_label_values(&[r]);
        }
        for r in REQUEST_REJECTIONS {
            requests_rejected.with_label_values(&[r]);
        }
        let admission_duration_mutate = admission_duration.with_label_values(&["mutate"]);
        let admission_duration_validate = admission_duration.with_label_values(&["validate"]);
        Metrics {
            registry,
            admission_requests,
            admission_duration,
            access_reviews,
            reconcile_total,
            reconcile_duration,
            tls_expiry,
            tls_reloads,
            build_info,
            leader,
            policy_denied,
            connections_open,
            connections_rejected,
            connections_closed,
            tls_handshake_failures,
            requests_rejected,
            requests_in_flight,
            inflight_bytes,
            admission_duration_mutate,
            admission_duration_validate,
        }
    }

    /// Duration histogram for a webhook path without a label lookup.
    pub fn duration_for(&self, webhook: crate::webhook::Webhook) -> &Histogram {
        match webhook {
            crate::webhook::Webhook::Mutate => &self.admission_duration_mutate,
            crate::webhook::Webhook::Validate => &self.admission_duration_validate,
        }
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        let mut buf = Vec::with_capacity(8 * 1024);
        let encoder = TextEncoder::new();
        // Encoding our own well-formed families into a Vec cannot fail.
        if encoder.encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_with_bounded_labels() {
        let m = Metrics::new();
        m.admission_requests
            .with_label_values(&["validate", "CREATE", "AttachedResource", "denied", "policy"])
            .inc();
        m.duration_for(crate::webhook::Webhook::Mutate)
            .observe(0.001);
        let text = m.render();
        assert!(
            text.contains("tether_build_info{version=\"0.1.0\"} 1"),
            "{text}"
        );
        assert!(text.contains("tether_admission_requests_total{decision=\"denied\",kind=\"AttachedResource\",operation=\"CREATE\",reason=\"policy\",webhook=\"validate\"} 1"), "{text}");
        assert!(
            text.contains(
                "tether_admission_duration_seconds_bucket{webhook=\"mutate\",le=\"0.001\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("tether_tls_reloads_total{result=\"error\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn two_instances_do_not_collide() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.leader.set(1);
        assert!(b.render().contains("tether_leader 0"));
    }
}
