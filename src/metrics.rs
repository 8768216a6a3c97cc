//! Prometheus metrics (SPEC 8).
//!
//! Every family is registered once, in [`Metrics::new`], on a private registry: a test or a
//! bench can build as many servers as it likes without "duplicate registration" errors.
//! Label values are bounded: kinds outside the handled set are reported as `other`, reasons
//! come from `&'static str` constants, never from names or uids.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
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
    /// Connection cap of each listener (`--max-connections`, `--metrics-max-connections`),
    /// so a dashboard can draw open connections against it.
    pub connections_max: IntGaugeVec,
    /// HTTP requests answered with an error status (or dropped by the HTTP layer), by
    /// listener and reason ([`TRANSPORT_REJECTIONS`]).
    pub transport_rejections: IntCounterVec,
    /// Access review latency as seen by the caller, by identity, result and cache outcome.
    pub access_review_duration: HistogramVec,
    /// API discovery calls, by result (`success`, `not_found`, `error`).
    pub discovery_requests: IntCounterVec,
    /// Changes of `tether_leader` (either way).
    pub leader_transitions: IntCounter,
    /// Objects waiting for a reconcile retry after a failure, by controller.
    pub reconcile_queue_depth: IntGaugeVec,
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
pub const HANDSHAKE_FAILURES: [&str; 7] = [
    "timeout",
    "eof",
    "peer_rejected_certificate",
    "client_certificate",
    "not_tls",
    "protocol",
    "io",
];
/// `reason` values of `tether_requests_rejected_total`.
pub const REQUEST_REJECTIONS: [&str; 5] = [
    "concurrency",
    "peer_concurrency",
    "memory",
    "peer_memory",
    "json_values",
];

/// `reason` values of `tether_transport_rejections_total`: one per way a request can fail
/// before (or instead of) an AdmissionReview decision. `bad_http` and `timeout` also cover
/// requests the HTTP layer itself refused or timed out (no handler ran).
pub const TRANSPORT_REJECTIONS: [&str; 9] = [
    "not_found",
    "method",
    "content_type",
    "too_large",
    "bad_json",
    "timeout",
    "over_budget",
    "bad_http",
    "other",
];

/// The transport rejection reason of an HTTP status tether answered with, `None` for a
/// success. Pure, so every status the routers can produce is covered by one table test.
pub fn rejection_reason(status: u16) -> Option<&'static str> {
    Some(match status {
        0..=399 => return None,
        400 => "bad_json",
        404 => "not_found",
        405 => "method",
        408 => "timeout",
        413 | 431 => "too_large",
        415 => "content_type",
        429 | 503 => "over_budget",
        _ => "other",
    })
}

/// `controller` values of the per-controller families.
pub const CONTROLLERS: [&str; 2] = ["attached", "domains"];

/// Access reviews take from microseconds (a cache hit) to the SubjectAccessReview timeout.
const ACCESS_REVIEW_BUCKETS: &[f64] = &[
    0.000_01, 0.000_1, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// `tether_build_info` labels, fixed at build time by `build.rs`.
pub const BUILD_VERSION: &str = env!("CARGO_PKG_VERSION");
pub const BUILD_COMMIT: &str = env!("TETHER_BUILD_COMMIT");
pub const BUILD_RUST_VERSION: &str = env!("TETHER_BUILD_RUSTC");

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
            &["version", "commit", "rust_version"],
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
                "Failed TLS handshakes on the admission port, by reason (timeout, eof, peer_rejected_certificate, client_certificate, not_tls, protocol, io).",
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

        let connections_max = IntGaugeVec::new(
            Opts::new(
                "tether_connections_max",
                "Connection cap of each listener (--max-connections, --metrics-max-connections).",
            ),
            &["listener"],
        )
        .expect("static metric definition");
        let transport_rejections = IntCounterVec::new(
            Opts::new(
                "tether_transport_rejections_total",
                "HTTP requests refused before or instead of an admission decision, by listener and reason (not_found, method, content_type, too_large, bad_json, timeout, over_budget, bad_http, other).",
            ),
            &["listener", "reason"],
        )
        .expect("static metric definition");
        let access_review_duration = HistogramVec::new(
            HistogramOpts::new(
                "tether_access_review_duration_seconds",
                "Access review latency seen by the caller, by identity (user, tether), result (allowed, denied, error) and cache (hit, miss, shared).",
            )
            .buckets(ACCESS_REVIEW_BUCKETS.to_vec()),
            &["identity", "result", "cache"],
        )
        .expect("static metric definition");
        let discovery_requests = IntCounterVec::new(
            Opts::new(
                "tether_discovery_requests_total",
                "API discovery calls for a group/version's resources, by result (success, not_found, error).",
            ),
            &["result"],
        )
        .expect("static metric definition");
        let leader_transitions = IntCounter::new(
            "tether_leader_transitions_total",
            "Times tether_leader changed value (became leader or stopped leading).",
        )
        .expect("static metric definition");
        let reconcile_queue_depth = IntGaugeVec::new(
            Opts::new(
                "tether_reconcile_queue_depth",
                "Objects waiting for a reconcile retry after a failed reconcile, by controller.",
            ),
            &["controller"],
        )
        .expect("static metric definition");

        for c in [
            Box::new(admission_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(connections_max.clone()),
            Box::new(transport_rejections.clone()),
            Box::new(access_review_duration.clone()),
            Box::new(discovery_requests.clone()),
            Box::new(leader_transitions.clone()),
            Box::new(reconcile_queue_depth.clone()),
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
            .with_label_values(&[BUILD_VERSION, BUILD_COMMIT, BUILD_RUST_VERSION])
            .set(1);
        register_process_collector(&registry);
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
        for l in LISTENERS {
            for r in TRANSPORT_REJECTIONS {
                transport_rejections.with_label_values(&[l, r]);
            }
        }
        for r in ["success", "not_found", "error"] {
            discovery_requests.with_label_values(&[r]);
        }
        for c in CONTROLLERS {
            reconcile_queue_depth.with_label_values(&[c]);
            // An alert on the error rate needs the series before the first failure.
            reconcile_total.with_label_values(&[c, "success"]);
            reconcile_total.with_label_values(&[c, "error"]);
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
            connections_max,
            transport_rejections,
            access_review_duration,
            discovery_requests,
            leader_transitions,
            reconcile_queue_depth,
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

    /// Sets `tether_leader`, counting a transition when the value changes.
    pub fn set_leader(&self, leading: bool) {
        let v = i64::from(leading);
        if self.leader.get() != v {
            self.leader.set(v);
            self.leader_transitions.inc();
        }
    }

    /// Counts one transport rejection (see [`rejection_reason`]).
    pub fn reject(&self, listener: &str, reason: &str) {
        self.transport_rejections
            .with_label_values(&[listener, reason])
            .inc();
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

/// Process metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// `process_open_fds`, `process_start_time_seconds`, ...) from /proc, on Linux only: the
/// prometheus crate's collector exists only there.
#[cfg(target_os = "linux")]
fn register_process_collector(registry: &Registry) {
    let pc = prometheus::process_collector::ProcessCollector::for_self();
    // Registering a fresh collector on a fresh registry cannot collide.
    let _ = registry.register(Box::new(pc));
}

#[cfg(not(target_os = "linux"))]
fn register_process_collector(_registry: &Registry) {}

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
        assert!(text.contains("tether_build_info{commit="), "{text}");
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
    fn every_error_status_has_a_rejection_reason() {
        for (status, want) in [
            (200, None),
            (204, None),
            (302, None),
            (400, Some("bad_json")),
            (404, Some("not_found")),
            (405, Some("method")),
            (408, Some("timeout")),
            (413, Some("too_large")),
            (431, Some("too_large")),
            (415, Some("content_type")),
            (429, Some("over_budget")),
            (503, Some("over_budget")),
            (500, Some("other")),
            (418, Some("other")),
        ] {
            assert_eq!(rejection_reason(status), want, "{status}");
            if let Some(r) = want {
                assert!(TRANSPORT_REJECTIONS.contains(&r), "{r}");
            }
        }
    }

    #[test]
    fn leader_transitions_count_changes_only() {
        let m = Metrics::new();
        m.set_leader(false);
        assert_eq!(m.leader_transitions.get(), 0);
        m.set_leader(true);
        m.set_leader(true);
        m.set_leader(false);
        assert_eq!(m.leader_transitions.get(), 2);
        assert!(m.render().contains("tether_leader_transitions_total 2"));
    }

    #[test]
    fn build_info_and_process_metrics_are_exported() {
        let text = Metrics::new().render();
        let line = format!(
            "tether_build_info{{commit=\"{BUILD_COMMIT}\",rust_version=\"{BUILD_RUST_VERSION}\",version=\"0.1.0\"}} 1"
        );
        assert!(text.contains(&line), "{text}");
        assert!(!BUILD_COMMIT.is_empty() && !BUILD_RUST_VERSION.is_empty());
        // rustc --version always has a dotted version; "unknown" only if rustc could not run.
        assert!(
            BUILD_RUST_VERSION.split('.').count() >= 3,
            "{BUILD_RUST_VERSION}"
        );
        #[cfg(target_os = "linux")]
        for family in [
            "process_start_time_seconds",
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
            "process_open_fds",
            "process_max_fds",
        ] {
            assert!(
                text.contains(&format!("\n{family} ")),
                "{family} missing: {text}"
            );
        }
    }

    #[test]
    fn two_instances_do_not_collide() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.leader.set(1);
        assert!(b.render().contains("tether_leader 0"));
    }
}
