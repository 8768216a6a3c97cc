//! The listeners: HTTPS admission (HTTP/1.1 and HTTP/2 on one port) and plain-HTTP metrics.
//!
//! Transport rules (SPEC 5): wrong method 405, wrong content type 415, body over 3 MiB 413,
//! a body that is not a v1 AdmissionReview 400, each with a plain-text reason. Slow clients are
//! bounded by a handshake timeout, a header read timeout and a body read timeout; the number
//! of open connections is capped. On shutdown `/readyz` turns unready first, then listeners
//! stop accepting and in-flight requests finish within a grace period.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::{BodyExt, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::admission::{Admission, Webhook};
use crate::metrics::Metrics;
use crate::shutdown::Signal;

/// Largest AdmissionReview body accepted (SPEC 5). The API server's own request limit is
/// 3 MiB for objects; a review carrying object and oldObject can approach that.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Transport settings; defaults suit an in-cluster webhook.
#[derive(Debug, Clone)]
pub struct TransportOptions {
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    /// Used when the API server sends no `?timeout=`; it always does.
    pub default_budget: Duration,
    /// How long after SIGTERM we keep accepting while `/readyz` reports unready, so that
    /// endpoints controllers and load balancers stop sending us traffic first.
    pub shutdown_delay: Duration,
    /// How long in-flight requests get to finish after we stop accepting.
    pub shutdown_grace: Duration,
}

impl Default for TransportOptions {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            default_budget: Duration::from_secs(10),
            shutdown_delay: Duration::ZERO,
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

#[derive(Clone)]
struct AppState {
    admission: Arc<Admission>,
    ready: Arc<AtomicBool>,
    opts: Arc<TransportOptions>,
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut msg = msg.into();
    msg.push('\n');
    let mut r = (status, msg).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The admission router (also used in-process by tests and benches).
fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/mutate",
            post(|s, q, h, b| admit(Webhook::Mutate, s, q, h, b))
                .fallback(|m: Method| async move { method_not_allowed_response(m, "POST") }),
        )
        .route(
            "/validate",
            post(|s, q, h, b| admit(Webhook::Validate, s, q, h, b))
                .fallback(|m: Method| async move { method_not_allowed_response(m, "POST") }),
        )
        .route(
            "/healthz",
            get(healthz).fallback(|m: Method| async move { method_not_allowed_response(m, "GET") }),
        )
        .route(
            "/readyz",
            get(readyz).fallback(|m: Method| async move { method_not_allowed_response(m, "GET") }),
        )
        .fallback(|| async {
            text(
                StatusCode::NOT_FOUND,
                "not found: tether serves POST /mutate, POST /validate, GET /healthz, GET /readyz",
            )
        })
        .with_state(state)
}

fn method_not_allowed_response(m: Method, allow: &'static str) -> Response {
    let mut r = text(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {m} is not allowed here; use {allow}"),
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

async fn healthz() -> Response {
    text(StatusCode::OK, "ok")
}

async fn readyz(State(s): State<AppState>) -> Response {
    ready_response(&s.ready)
}

/// `/readyz` on both listeners.
fn ready_response(ready: &AtomicBool) -> Response {
    if ready.load(Ordering::Acquire) {
        text(StatusCode::OK, "ready")
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// The budget for one review: the API server's `?timeout=` minus a margin for the trip back,
/// so a slow access review yields our own clear deny instead of the API server's timeout.
pub fn budget_from_query(query: Option<&str>, default: Duration) -> Duration {
    let requested = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|kv| kv.strip_prefix("timeout="))
        .find_map(|v| humantime::parse_duration(v).ok())
        .unwrap_or(default);
    let margin = Duration::from_millis(250);
    requested
        .saturating_sub(margin)
        .clamp(Duration::from_millis(100), Duration::from_secs(30))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().eq_ignore_ascii_case("application/json"))
        .unwrap_or(false)
}

async fn admit(
    webhook: Webhook,
    State(s): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !is_json(&headers) {
        let got = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none");
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content type {got:?} is not supported; send application/json"),
        );
    }
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > MAX_BODY as u64 {
            return too_large();
        }
    }
    let collected = tokio::time::timeout(
        s.opts.body_read_timeout,
        Limited::new(body, MAX_BODY).collect(),
    )
    .await;
    let bytes: Bytes = match collected {
        Err(_) => {
            return text(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "request body not received within {} s",
                    s.opts.body_read_timeout.as_secs()
                ),
            )
        }
        Ok(Err(e)) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return too_large();
            }
            return text(
                StatusCode::BAD_REQUEST,
                format!("could not read request body: {e}"),
            );
        }
        Ok(Ok(c)) => c.to_bytes(),
    };
    let budget = budget_from_query(query.as_deref(), s.opts.default_budget);
    match s.admission.review(webhook, &bytes, budget).await {
        Ok(answer) => {
            let mut r = Response::new(Body::from(answer.body));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => text(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

fn too_large() -> Response {
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body is larger than {MAX_BODY} bytes (3 MiB)"),
    )
}

/// A bound admission listener, ready to serve.
pub struct AdmissionServer {
    listener: TcpListener,
    tls: TlsAcceptor,
    state: AppState,
}

impl AdmissionServer {
    pub async fn bind(
        addr: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
        admission: Arc<Admission>,
        ready: Arc<AtomicBool>,
        opts: TransportOptions,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Self {
            listener,
            tls: TlsAcceptor::from(tls),
            state: AppState {
                admission,
                ready,
                opts: Arc::new(opts),
            },
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` fires, then drains (see module docs).
    pub async fn run(self, shutdown: Signal) {
        let opts = self.state.opts.clone();
        let ready = self.state.ready.clone();
        let service = TowerToHyperService::new(router(self.state));
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(opts.header_read_timeout)
            .keep_alive(true)
            .max_buf_size(64 * 1024);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(256)
            .max_header_list_size(64 * 1024)
            .keep_alive_interval(Some(Duration::from_secs(30)));
        let builder = Arc::new(builder);
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let limit = Arc::new(Semaphore::new(opts.max_connections));

        let accepting = async {
            loop {
                let permit = match limit.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => return,
                };
                let (tcp, peer) = match self.listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = self.tls.clone();
                let service = service.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                let handshake_timeout = opts.handshake_timeout;
                tokio::spawn(async move {
                    let _permit = permit;
                    let tls =
                        match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let conn = builder
                        .serve_connection(TokioIo::new(tls), service)
                        .into_owned();
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
        };
        tokio::select! {
            _ = accepting => {}
            _ = shutdown.wait() => {}
        }
        // Accepting is over in both branches: the select dropped the accept loop.
        ready.store(false, Ordering::Release);
        drop(self.listener);
        if tokio::time::timeout(opts.shutdown_grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                grace_s = opts.shutdown_grace.as_secs(),
                "connections still open after the shutdown grace period; closing them"
            );
        }
    }
}

/// The plain-HTTP metrics listener: `/metrics`, `/healthz`, `/readyz` and nothing else.
pub struct MetricsServer {
    listener: TcpListener,
    metrics: Metrics,
    ready: Arc<AtomicBool>,
}

impl MetricsServer {
    pub async fn bind(
        addr: SocketAddr,
        metrics: Metrics,
        ready: Arc<AtomicBool>,
    ) -> std::io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
            metrics,
            ready,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub async fn run(self, shutdown: Signal) {
        let metrics = self.metrics.clone();
        let ready = self.ready.clone();
        let app = Router::new()
            .route(
                "/metrics",
                get(move || {
                    let m = metrics.clone();
                    async move {
                        let mut r = m.render().into_response();
                        r.headers_mut().insert(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                        );
                        r
                    }
                }),
            )
            .route("/healthz", get(healthz))
            .route(
                "/readyz",
                get(move || {
                    let ready = ready.clone();
                    async move { ready_response(&ready) }
                }),
            )
            .fallback(|| async {
                text(
                    StatusCode::NOT_FOUND,
                    "not found: this port serves GET /metrics, /healthz and /readyz",
                )
            });
        let _ = axum::serve(self.listener, app)
            .with_graceful_shutdown(async move { shutdown.wait().await })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_follows_the_api_servers_timeout() {
        let d = Duration::from_secs(10);
        assert_eq!(
            budget_from_query(Some("timeout=10s"), d),
            Duration::from_millis(9750)
        );
        assert_eq!(
            budget_from_query(Some("a=b&timeout=2s"), d),
            Duration::from_millis(1750)
        );
        assert_eq!(
            budget_from_query(Some("timeout=junk"), d),
            Duration::from_millis(9750)
        );
        assert_eq!(budget_from_query(None, d), Duration::from_millis(9750));
        assert_eq!(
            budget_from_query(Some("timeout=0s"), d),
            Duration::from_millis(100)
        );
        assert_eq!(
            budget_from_query(Some("timeout=5m"), d),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn content_type_check() {
        let mut h = HeaderMap::new();
        assert!(!is_json(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert!(is_json(&h));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(!is_json(&h));
    }
}
