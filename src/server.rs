//! The listeners: HTTPS admission (HTTP/1.1 and HTTP/2 on one port) and plain-HTTP metrics.
//!
//! Transport rules (SPEC 5): wrong method 405, wrong content type 415, body over 3 MiB 413,
//! a body that is not a v1 AdmissionReview 400, each with a plain-text reason.
//!
//! Budgets (issue 13), so that no peer can starve or bloat the webhook:
//! - connections: a slot table per listener (see `conns`): a full listener closes its
//!   longest-idle connection to take a new one, refuses at once only when every connection is
//!   serving a request, and caps connections per peer; idle connections (between HTTP/1.1
//!   requests, HTTP/2 with no open stream, or still in the TLS handshake) are closed after
//!   `--idle-timeout`; the TLS handshake has its own short timeout;
//! - requests: a concurrent-request limit and a byte budget for bodies plus their estimated
//!   parse cost, in all and per peer (see `budget`); a request that does not fit gets 503
//!   (429 when its peer holds too much) with `Retry-After` at once, instead of buffering;
//!   a body with more JSON values than `--max-json-values` gets 413 before it is parsed.
//!   HTTP/2 streams per connection and flow-control windows are sized so that what a peer
//!   may send before we read is small next to the budget;
//! - slow clients: header and body read timeouts; a request head is timed from its first
//!   byte by the connection's watcher (`Conn::head_overdue`), not by hyper.
//!
//! On shutdown `/readyz` turns unready first, then listeners stop accepting and in-flight
//! requests finish within a grace period.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::budget::{
    json_cost, json_values_bound, Budget, Over, RequestLimits, Ticket, VALUE_COST,
};
use crate::conns::{Admitted, Conn, ConnLimits, ConnTable, WarnEvery};
use crate::metrics::Metrics;
use crate::shutdown::Signal;
use crate::webhook::Webhook;

/// Largest AdmissionReview body accepted (SPEC 5). The API server's own request limit is
/// 3 MiB for objects; a review carrying object and oldObject can approach that.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// HTTP/2 streams one connection may have open. A stream is a request: more than a peer's
/// share of the request budget would only be refused.
const H2_MAX_STREAMS: u32 = 32;
/// HTTP/2 flow-control windows: what a peer may send before we read it, buffered in the
/// HTTP/2 layer before our byte budget sees it (and pinning the read buffers it was cut
/// from). Small, because a peer can open many connections: the API server sends reviews
/// over HTTP/1.1, and 256 KiB per round trip is plenty for the rest.
const H2_STREAM_WINDOW: u32 = 64 * 1024;
const H2_CONN_WINDOW: u32 = 256 * 1024;

/// How often a "cap reached" warning may be logged.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Transport settings; defaults suit an in-cluster webhook.
#[derive(Debug, Clone)]
pub struct TransportOptions {
    pub max_connections: usize,
    /// Connections one peer address may hold; 0: no cap besides `max_connections`.
    pub max_connections_per_peer: usize,
    pub handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    /// A connection that serves no request this long is closed.
    pub idle_timeout: Duration,
    /// Requests in flight and the bytes they may hold.
    pub requests: RequestLimits,
    /// Most JSON values one review may hold (bounds the parse cost).
    pub max_json_values: usize,
    /// Connection cap of the metrics listener.
    pub metrics_max_connections: usize,
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
            max_connections_per_peer: 512,
            handshake_timeout: Duration::from_secs(3),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            requests: RequestLimits {
                max_requests: 256,
                max_requests_per_peer: 128,
                max_bytes: 48 * 1024 * 1024,
                max_bytes_per_peer: 32 * 1024 * 1024,
            },
            max_json_values: crate::budget::DEFAULT_MAX_VALUES,
            metrics_max_connections: 64,
            default_budget: Duration::from_secs(10),
            shutdown_delay: Duration::ZERO,
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

impl TransportOptions {
    /// Bytes the largest acceptable review needs from the budget: its body and the parse
    /// cost of `max_json_values`.
    pub fn largest_review_cost(&self) -> usize {
        MAX_BODY.saturating_add(self.max_json_values.saturating_mul(VALUE_COST))
    }

    /// Checks that the limits fit together; the message names the flags.
    pub fn validate(&self) -> Result<(), String> {
        let need = self.largest_review_cost();
        let peer_bytes = match self.requests.max_bytes_per_peer {
            0 => self.requests.max_bytes,
            n => n,
        };
        if peer_bytes < need || self.requests.max_bytes < need {
            return Err(format!(
                "--max-inflight-bytes ({}) and --max-inflight-bytes-per-peer ({}) must each be at least {need}: one 3 MiB review with --max-json-values {} values (at {VALUE_COST} bytes each) must fit",
                self.requests.max_bytes, peer_bytes, self.max_json_values
            ));
        }
        if self.requests.max_requests == 0 {
            return Err("--max-requests must be at least 1".into());
        }
        if self.requests.max_requests >= self.max_connections {
            return Err(format!(
                "--max-requests ({}) must be below --max-connections ({}), so that a full listener always has an idle connection to close for a new one",
                self.requests.max_requests, self.max_connections
            ));
        }
        for (flag, d) in [
            ("--tls-handshake-timeout", self.handshake_timeout),
            ("--read-timeout", self.header_read_timeout),
            ("--idle-timeout", self.idle_timeout),
        ] {
            if d.is_zero() {
                return Err(format!("{flag} must be more than 0"));
            }
        }
        Ok(())
    }
}

/// The peer address of the connection a request arrived on.
#[derive(Debug, Clone, Copy)]
struct Peer(IpAddr);

/// The admission router's state, behind one `Arc`: axum clones the state for every request.
type AppState = Arc<Shared>;

struct Shared {
    admission: Arc<dyn Reviews>,
    ready: Arc<AtomicBool>,
    opts: Arc<TransportOptions>,
    budget: Arc<Budget>,
    metrics: Metrics,
    warn: Arc<WarnEvery>,
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
            post(|s, r| admit(Webhook::Mutate, s, r))
                .fallback(|m: Method| async move { method_not_allowed_response(m, "POST") }),
        )
        .route(
            "/validate",
            post(|s, r| admit(Webhook::Validate, s, r))
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
    // On the bytes: the media type before any `;` parameters, compared without case. (As
    // text, the UTF-8 check and the `split` searcher cost more than the comparison.)
    headers.get(header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        let media = v.iter().position(|&b| b == b';').map_or(v, |i| &v[..i]);
        media.trim_ascii().eq_ignore_ascii_case(b"application/json")
    })
}

/// 503 (or 429 for one peer over its share) with `Retry-After`, counted and, at most every
/// few seconds, logged.
fn over_budget(s: &AppState, over: Over, peer: IpAddr) -> Response {
    s.metrics
        .requests_rejected
        .with_label_values(&[over.label()])
        .inc();
    let l = s.budget.limits();
    let why = match over {
        Over::Requests => format!(
            "tether is serving its limit of {} requests (--max-requests)",
            l.max_requests
        ),
        Over::PeerRequests => format!(
            "this client is already sending {} requests at once (--max-requests-per-peer)",
            l.max_requests_per_peer
        ),
        Over::Bytes => format!(
            "the request bodies in flight would exceed {} bytes (--max-inflight-bytes)",
            l.max_bytes
        ),
        Over::PeerBytes => format!(
            "this client's request bodies in flight would exceed {} bytes (--max-inflight-bytes-per-peer)",
            l.max_bytes_per_peer
        ),
    };
    if let Some(held_back) = s.warn.check() {
        let (requests, bytes) = s.budget.in_flight();
        tracing::warn!(
            %peer,
            reason = over.label(),
            requests_in_flight = requests,
            inflight_bytes = bytes,
            similar_not_logged = held_back,
            "request refused: {why}"
        );
    }
    let (status, retry) = if over.per_peer() {
        (StatusCode::TOO_MANY_REQUESTS, "1")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "1")
    };
    let mut r = text(status, format!("{why}; retry shortly"));
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(retry));
    r
}

/// Updates the in-flight gauges from the budget (cheap: one short lock).
fn publish_in_flight(s: &AppState) {
    let (requests, bytes) = s.budget.in_flight();
    s.metrics.requests_in_flight.set(requests as i64);
    s.metrics.inflight_bytes.set(bytes as i64);
}

/// A request body as it arrives, and what the request's head says about it.
struct BodyIn {
    body: Body,
    /// `Content-Length`, when the head gives one.
    declared: Option<u64>,
    /// Keep a body that arrives in one frame as the connection read it (see [`read_body`]).
    keep_one_frame: bool,
}

/// Reads the body into memory, taking budget for each chunk before keeping it.
async fn read_body(
    s: &AppState,
    ticket: &mut Ticket,
    peer: IpAddr,
    BodyIn {
        body,
        declared,
        keep_one_frame,
    }: BodyIn,
) -> Result<Bytes, Response> {
    // A declared length is reserved up front, so a body that will not fit is refused before
    // a byte of it is read.
    if let Some(len) = declared {
        ticket
            .reserve_total(len as usize)
            .map_err(|o| over_budget(s, o, peer))?;
    }
    // Over HTTP/1.1, a body that arrives as one frame (nearly every review) is kept as hyper
    // handed it, a slice of the connection's read buffer, as axum's `Bytes` extractor does:
    // copying it into a fresh buffer wrote every byte again to memory no cache held. That
    // slice keeps the whole buffer allocated, which costs nothing there: the connection
    // reads its next request only after this one is answered. Over HTTP/2 every stream in
    // flight could hold a buffer of its own, far larger than the bytes the budget counts, so
    // HTTP/2 bodies, and bodies in several frames, are gathered into `buf`.
    let mut first: Option<Bytes> = None;
    let mut reserved = declared.unwrap_or(0) as usize;
    // Sized to the declared length that was reserved, so a gathered body is allocated once.
    let mut buf: Vec<u8> = if keep_one_frame {
        Vec::new() // sized when a second frame comes, below
    } else {
        Vec::with_capacity(reserved)
    };
    let mut body = body;
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                text(
                    StatusCode::BAD_REQUEST,
                    format!("could not read request body: {e}"),
                )
            })?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            if data.is_empty() {
                continue;
            }
            let held = first.as_ref().map_or(buf.len(), Bytes::len);
            let total = held + data.len();
            if total > MAX_BODY {
                return Err(too_large());
            }
            if keep_one_frame && first.is_none() && buf.is_empty() {
                if total > reserved {
                    ticket
                        .reserve_total(total)
                        .map_err(|o| over_budget(s, o, peer))?;
                    reserved = total;
                }
                first = Some(data);
                continue;
            }
            if let Some(f) = first.take() {
                // The reservation covers the declared length or the first frame.
                buf = Vec::with_capacity(reserved.max(f.len()));
                buf.extend_from_slice(&f);
            }
            if total > buf.capacity() {
                // The budget pays for what is allocated, not what is filled: grow by half
                // (not double) and reserve exactly that, so many half-sent bodies cannot
                // hold twice the budget in spare capacity.
                let cap = (buf.capacity() + buf.capacity() / 2)
                    .clamp(64 * 1024, MAX_BODY)
                    .max(total);
                ticket
                    .reserve_total(cap)
                    .map_err(|o| over_budget(s, o, peer))?;
                buf.reserve_exact(cap - buf.len());
            }
            buf.extend_from_slice(&data);
        }
        Ok(())
    };
    match tokio::time::timeout(s.opts.body_read_timeout, read).await {
        Err(_) => Err(text(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "request body not received within {} s (--read-timeout)",
                s.opts.body_read_timeout.as_secs()
            ),
        )),
        Ok(Err(r)) => Err(r),
        Ok(Ok(())) => Ok(first.unwrap_or_else(|| Bytes::from(buf))),
    }
}

/// Takes the request whole and reads headers, query and peer by reference: axum's
/// `HeaderMap` and `RawQuery` extractors would copy them for every review.
async fn admit(webhook: Webhook, State(s): State<AppState>, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let peer = parts
        .extensions
        .get::<Peer>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.0);
    let headers = &parts.headers;
    if !is_json(headers) {
        let got = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none");
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "content type {:?} is not supported; send application/json",
                crate::text::clean(got, crate::text::MAX_FIELD)
            ),
        );
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY as u64) {
        return too_large();
    }
    let mut ticket = match s.budget.admit(peer) {
        Ok(t) => t,
        Err(o) => return over_budget(&s, o, peer),
    };
    publish_in_flight(&s);
    let query = parts.uri.query();
    let body = BodyIn {
        body,
        declared,
        keep_one_frame: parts.version < Version::HTTP_2,
    };
    let answer = admit_within(webhook, &s, &mut ticket, peer, query, body).await;
    drop(ticket);
    publish_in_flight(&s);
    answer
}

async fn admit_within(
    webhook: Webhook,
    s: &AppState,
    ticket: &mut Ticket,
    peer: IpAddr,
    query: Option<&str>,
    body: BodyIn,
) -> Response {
    let bytes = match read_body(s, ticket, peer, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    // Parsing multiplies memory by up to ~40 for bodies of tiny values (`[0,0,…]`): count
    // the values first, refuse what is over the per-review cap, and budget the rest. The
    // cheap upper bound settles it for nearly every review; the exact count (which has to
    // walk every string) runs only when the bound is over the cap or does not fit.
    let bound = json_values_bound(&bytes);
    let fits_bound =
        bound <= s.opts.max_json_values && ticket.grow(bound.saturating_mul(VALUE_COST)).is_ok();
    if !fits_bound {
        let values = json_cost(&bytes).values;
        if values > s.opts.max_json_values {
            s.metrics
                .requests_rejected
                .with_label_values(&["json_values"])
                .inc();
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body holds about {values} JSON values; tether accepts at most {} per review (--max-json-values)",
                    s.opts.max_json_values
                ),
            );
        }
        if let Err(o) = ticket.grow(values.saturating_mul(VALUE_COST)) {
            return over_budget(s, o, peer);
        }
    }
    publish_in_flight(s);
    let budget = budget_from_query(query, s.opts.default_budget);
    match s.admission.review(webhook, &bytes, budget).await {
        Ok(body) => {
            let mut r = Response::new(Body::from(body));
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

/// Coarse, bounded reason of a failed TLS handshake (a value of
/// [`crate::metrics::HANDSHAKE_FAILURES`]).
fn handshake_failure(e: &std::io::Error) -> &'static str {
    use rustls::AlertDescription as A;
    // rustls reports its own errors as InvalidData wrapping a `rustls::Error`.
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return match tls {
            // The client does not trust our certificate: the classic wrong `caBundle` (or a
            // certificate for another name). A caBundle holding an older CA of the same name
            // fails the signature check, which clients report as DecryptError.
            rustls::Error::AlertReceived(
                A::DecryptError
                | A::BadCertificate
                | A::UnknownCA
                | A::CertificateUnknown
                | A::CertificateExpired
                | A::CertificateRevoked
                | A::UnsupportedCertificate
                | A::AccessDenied,
            ) => "peer_rejected_certificate",
            // `--client-ca`: the client's certificate is missing or not from that CA.
            rustls::Error::NoCertificatesPresented | rustls::Error::InvalidCertificate(_) => {
                "client_certificate"
            }
            // Not TLS at all, e.g. plain HTTP sent to the HTTPS port.
            rustls::Error::InvalidMessage(_) => "not_tls",
            _ => "protocol",
        };
    }
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof
        | std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::ConnectionAborted
        | std::io::ErrorKind::BrokenPipe => "eof",
        std::io::ErrorKind::InvalidData => "protocol",
        _ => "io",
    }
}

/// One listener's accept loop and connection handling, shared by both listeners.
struct Listener {
    name: &'static str,
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
    table: Arc<ConnTable>,
    handshake_timeout: Duration,
    timeouts: ConnTimeouts,
    metrics: Metrics,
    warn: Arc<WarnEvery>,
}

impl Listener {
    /// Accepts until the future is dropped. Connections are watched by `graceful`.
    async fn accept_loop(
        &self,
        builder: Arc<auto::Builder<TokioExecutor>>,
        router: Router,
        graceful: &GracefulShutdown,
    ) {
        let open = self
            .metrics
            .connections_open
            .with_label_values(&[self.name]);
        loop {
            let (tcp, peer) = match self.tcp.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    if let Some(n) = self.warn.check() {
                        tracing::warn!(listener = self.name, error = %e, similar_not_logged = n, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let slot = match self.table.admit(peer.ip()) {
                Ok((slot, how)) => {
                    if how == Admitted::Evicted {
                        self.metrics
                            .connections_closed
                            .with_label_values(&[self.name, "evicted"])
                            .inc();
                    }
                    slot
                }
                Err(refused) => {
                    self.metrics
                        .connections_rejected
                        .with_label_values(&[self.name, refused.label()])
                        .inc();
                    if let Some(n) = self.warn.check() {
                        let l = self.table.limits();
                        tracing::warn!(
                            listener = self.name,
                            %peer,
                            reason = refused.label(),
                            max_connections = l.max,
                            max_connections_per_peer = l.max_per_peer,
                            similar_not_logged = n,
                            "connection refused: every connection slot is serving a request"
                        );
                    }
                    // Closing now tells the client at once; leaving it in the kernel's
                    // accept queue would make it wait for a slot.
                    drop(tcp);
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let conn = slot.conn().clone();
            let tls = self.tls.clone();
            let builder = builder.clone();
            let watcher = graceful.watcher();
            let router = router.clone();
            let handshake_timeout = self.handshake_timeout;
            let timeouts = self.timeouts;
            let metrics = self.metrics.clone();
            let name = self.name;
            let open = open.clone();
            tokio::spawn(async move {
                open.inc();
                let _slot = slot;
                let counted = Counted {
                    listener: name,
                    metrics: metrics.clone(),
                };
                let closed = match tls {
                    None => {
                        serve_io(tcp, &conn, &builder, router, watcher, timeouts, counted).await
                    }
                    Some(acceptor) => {
                        let handshake =
                            tokio::time::timeout(handshake_timeout, acceptor.accept(tcp));
                        let tls = tokio::select! {
                            r = handshake => r,
                            _ = conn.evicted() => {
                                open.dec();
                                metrics.tls_handshake_failures.with_label_values(&["timeout"]).inc();
                                return;
                            }
                        };
                        match tls {
                            Ok(Ok(s)) => {
                                serve_io(s, &conn, &builder, router, watcher, timeouts, counted)
                                    .await
                            }
                            Ok(Err(e)) => {
                                let reason = handshake_failure(&e);
                                metrics
                                    .tls_handshake_failures
                                    .with_label_values(&[reason])
                                    .inc();
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                None
                            }
                            Err(_) => {
                                metrics
                                    .tls_handshake_failures
                                    .with_label_values(&["timeout"])
                                    .inc();
                                tracing::debug!(%peer, "TLS handshake timed out");
                                None
                            }
                        }
                    }
                };
                match closed {
                    Some(Closed::Idle) => metrics
                        .connections_closed
                        .with_label_values(&[name, "idle"])
                        .inc(),
                    // A request that never arrived whole: a transport rejection, as hyper's
                    // own header timeout was.
                    Some(Closed::HeaderTimeout) => metrics.reject(name, "timeout"),
                    None => {}
                }
                open.dec();
            });
        }
    }
}

/// Where a connection counts its transport rejections.
struct Counted {
    listener: &'static str,
    metrics: Metrics,
}

/// The transport rejection behind an error that ended a connection, if it was one: the
/// HTTP layer answers a malformed request (400/431) by itself, without calling a handler.
/// (A request head that does not arrive in time is the watcher's; see [`Closed`].)
fn connection_error_reason(e: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let e = e.downcast_ref::<hyper::Error>()?;
    if e.is_parse() || e.is_parse_too_large() || e.is_parse_version_h2() {
        Some("bad_http")
    } else {
        None
    }
}

/// Serves HTTP on one connection until it ends, is evicted, stays idle too long or sends a
/// request head too slowly. Returns why tether closed it, if it did (not for eviction,
/// which the table counts).
async fn serve_io<I>(
    io: I,
    conn: &Arc<Conn>,
    builder: &auto::Builder<TokioExecutor>,
    router: Router,
    watcher: hyper_util::server::graceful::Watcher,
    timeouts: ConnTimeouts,
    counted: Counted,
) -> Option<Closed>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let c = conn.clone();
    // One `Arc` clone per request, not a clone of every metric handle.
    let metrics = Arc::new(counted.metrics.clone());
    let listener = counted.listener;
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        // Busy from the moment hyper hands us a request until its response is ready: a
        // busy connection is never evicted nor closed for idleness.
        let busy = c.begin();
        req.extensions_mut().insert(Peer(c.peer()));
        let mut router = router.clone();
        let metrics = metrics.clone();
        async move {
            // A Router is always ready (its `poll_ready` returns `Ready`), so `call` directly.
            let r = tower_service::Service::call(&mut router, req).await;
            drop(busy);
            let r: Result<Response, Infallible> = r;
            // Every error answer, whichever handler or fallback wrote it, is counted here.
            if let Ok(resp) = &r {
                if let Some(reason) = crate::metrics::rejection_reason(resp.status().as_u16()) {
                    metrics.reject(listener, reason);
                }
            }
            r
        }
    });
    let io = HeadWatch {
        io,
        conn: conn.clone(),
        preface: PrefaceSeen::Matched(0),
    };
    let conn_served = builder
        .serve_connection(TokioIo::new(io), service)
        .into_owned();
    let conn_served = watcher.watch(conn_served);
    // Eviction, idleness and a request head that does not complete are watched by a task
    // of their own, which sleeps until one of them happens. Polled beside the connection,
    // their timers and notification were polled again every time the connection woke
    // (several times per request), and hyper's own header timeout set and dropped a timer
    // for every request.
    let (closing_tx, mut closing) = tokio::sync::oneshot::channel();
    let watch = {
        let conn = conn.clone();
        AbortOnDrop(tokio::spawn(async move {
            let why = tokio::select! {
                _ = conn.evicted() => None,
                _ = conn.idle_for(timeouts.idle) => Some(Closed::Idle),
                _ = conn.head_overdue(timeouts.header) => Some(Closed::HeaderTimeout),
            };
            let _ = closing_tx.send(why);
        }))
    };
    let closed = tokio::select! {
        biased;
        r = conn_served => {
            if let Err(e) = r {
                if let Some(reason) = connection_error_reason(&*e) {
                    counted.metrics.reject(counted.listener, reason);
                }
                tracing::debug!(peer = %conn.peer(), error = %e, "connection ended with an error");
            }
            None
        }
        // The sender only goes away with the task (a panic): the connection is then served
        // to its end without an idle timeout, never cut short.
        Ok(why) = &mut closing => why,
    };
    drop(watch);
    closed
}

/// Why tether closed a connection that was still open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    /// It served nothing for `--idle-timeout`.
    Idle,
    /// A request head began and was not complete within `--read-timeout`.
    HeaderTimeout,
}

/// The per-connection timeouts the watcher enforces.
#[derive(Debug, Clone, Copy)]
struct ConnTimeouts {
    idle: Duration,
    header: Duration,
}

/// What an HTTP/2 connection sends first. Its frames (pings, settings, window updates)
/// arrive between requests and are not a request head.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How far a connection's first bytes match the HTTP/2 preface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PrefaceSeen {
    /// The first `n` bytes match so far.
    Matched(usize),
    /// HTTP/1.1 (or not HTTP): bytes between requests are the next request's head.
    No,
    /// HTTP/2: hyper bounds header blocks and streams itself.
    Yes,
}

/// The connection's byte stream, telling its [`Conn`] when bytes arrive, so that the
/// watcher can time a request head from its first byte (see [`Conn::head_overdue`]).
struct HeadWatch<I> {
    io: I,
    conn: Arc<Conn>,
    preface: PrefaceSeen,
}

impl<I> HeadWatch<I> {
    fn arrived(&mut self, bytes: &[u8]) {
        match self.preface {
            PrefaceSeen::Yes => return,
            PrefaceSeen::No => {}
            PrefaceSeen::Matched(n) => {
                let want = &H2_PREFACE[n..];
                let take = want.len().min(bytes.len());
                if bytes[..take] != want[..take] {
                    self.preface = PrefaceSeen::No;
                } else if n + take == H2_PREFACE.len() {
                    self.preface = PrefaceSeen::Yes;
                    // Earlier pieces of the preface were flagged as a head; they were not.
                    self.conn.not_a_head();
                    return;
                } else {
                    self.preface = PrefaceSeen::Matched(n + take);
                }
            }
        }
        // Until the preface is complete, its pieces count as a head: a peer that stops
        // half-way is timed like any other slow head.
        self.conn.bytes_arrived();
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for HeadWatch<I> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let this = &mut *self;
            this.arrived(&buf.filled()[before..]);
        }
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for HeadWatch<I> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Aborts a task when dropped: the connection's watcher ends with the connection.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // The header timeout is the connection watcher's (`Conn::head_overdue`): hyper's
        // starts a timer for every request, and runs it while a keep-alive connection is
        // idle, closing it long before `--idle-timeout`.
        .header_read_timeout(None)
        .keep_alive(true)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONN_WINDOW)
        .max_header_list_size(64 * 1024)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    builder
}

/// What the admission listener serves (implemented by `admission::Admission`). Declared here
/// so that the listener, infrastructure, does not import the domain it serves.
#[async_trait::async_trait]
pub trait Reviews: Send + Sync + 'static {
    /// The metrics the listener records into.
    fn metrics(&self) -> &Metrics;
    /// The response AdmissionReview body for one request body, or why the body is not an
    /// AdmissionReview (answered as 400 with that text).
    async fn review(
        &self,
        webhook: Webhook,
        body: &[u8],
        budget: Duration,
    ) -> Result<Vec<u8>, String>;
}

/// A bound admission listener, ready to serve.
pub struct AdmissionServer {
    listener: Listener,
    state: AppState,
}

impl AdmissionServer {
    pub async fn bind(
        addr: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
        admission: Arc<dyn Reviews>,
        ready: Arc<AtomicBool>,
        opts: TransportOptions,
    ) -> std::io::Result<Self> {
        let tcp = TcpListener::bind(addr).await?;
        let metrics = admission.metrics().clone();
        metrics
            .connections_max
            .with_label_values(&["admission"])
            .set(opts.max_connections as i64);
        let warn = Arc::new(WarnEvery::new(WARN_EVERY));
        let listener = Listener {
            name: "admission",
            tcp,
            tls: Some(TlsAcceptor::from(tls)),
            table: ConnTable::new(ConnLimits {
                max: opts.max_connections,
                max_per_peer: opts.max_connections_per_peer,
            }),
            handshake_timeout: opts.handshake_timeout,
            timeouts: ConnTimeouts {
                idle: opts.idle_timeout,
                header: opts.header_read_timeout,
            },
            metrics: metrics.clone(),
            warn: warn.clone(),
        };
        Ok(Self {
            listener,
            state: Arc::new(Shared {
                admission,
                ready,
                budget: Budget::new(opts.requests),
                opts: Arc::new(opts),
                metrics,
                warn,
            }),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.tcp.local_addr()
    }

    /// Serves until `shutdown` fires, then drains (see module docs).
    pub async fn run(self, shutdown: Signal) {
        let opts = self.state.opts.clone();
        let ready = self.state.ready.clone();
        let builder = Arc::new(http_builder());
        let graceful = GracefulShutdown::new();
        let router = router(self.state);
        tokio::select! {
            _ = self.listener.accept_loop(builder, router, &graceful) => {}
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

/// The plain-HTTP metrics listener: `/metrics`, `/healthz`, `/readyz` and nothing else. It
/// has its own small slot table (`--metrics-max-connections`) with the same eviction of idle
/// connections and the same timeouts, so kubelet probes are served here whatever happens on
/// the admission port, and idle connections here cannot use up file descriptors.
pub struct MetricsServer {
    listener: Listener,
    metrics: Metrics,
    ready: Arc<AtomicBool>,
    opts: TransportOptions,
}

impl MetricsServer {
    pub async fn bind(
        addr: SocketAddr,
        metrics: Metrics,
        ready: Arc<AtomicBool>,
        opts: TransportOptions,
    ) -> std::io::Result<Self> {
        metrics
            .connections_max
            .with_label_values(&["metrics"])
            .set(opts.metrics_max_connections as i64);
        let listener = Listener {
            name: "metrics",
            tcp: TcpListener::bind(addr).await?,
            tls: None,
            table: ConnTable::new(ConnLimits {
                max: opts.metrics_max_connections,
                max_per_peer: 0,
            }),
            handshake_timeout: opts.handshake_timeout,
            timeouts: ConnTimeouts {
                idle: opts.idle_timeout,
                header: opts.header_read_timeout,
            },
            metrics: metrics.clone(),
            warn: Arc::new(WarnEvery::new(WARN_EVERY)),
        };
        Ok(Self {
            listener,
            metrics,
            ready,
            opts,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.tcp.local_addr()
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
        let builder = Arc::new(http_builder());
        let graceful = GracefulShutdown::new();
        tokio::select! {
            _ = self.listener.accept_loop(builder, app, &graceful) => {}
            _ = shutdown.wait() => {}
        }
        drop(self.listener);
        let _ = tokio::time::timeout(self.opts.shutdown_grace, graceful.shutdown()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a head is pending after each read of `reads`, on a fresh connection.
    fn pending_after(reads: &[&[u8]]) -> Vec<bool> {
        let t = ConnTable::new(ConnLimits {
            max: 1,
            max_per_peer: 0,
        });
        let (slot, _) = t.admit(IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
        let mut w = HeadWatch {
            io: (),
            conn: slot.conn().clone(),
            preface: PrefaceSeen::Matched(0),
        };
        reads
            .iter()
            .map(|r| {
                w.arrived(r);
                w.conn.head_pending()
            })
            .collect()
    }

    #[test]
    fn bytes_between_requests_are_a_head_unless_the_connection_is_http2() {
        // (case, the reads, a head pending after each)
        type Case<'a> = (&'a str, &'a [&'a [u8]], &'a [bool]);
        let cases: &[Case] = &[
            (
                "an HTTP/1.1 head",
                &[b"POST /validate HTTP/1.1\r\n"],
                &[true],
            ),
            (
                "a head starting like the preface",
                &[b"PRI", b"X"],
                &[true, true],
            ),
            (
                "the HTTP/2 preface at once",
                &[H2_PREFACE, b"\0\0\0\x04"],
                &[false, false],
            ),
            (
                "the preface in pieces",
                &[b"PRI * HTTP", b"/2.0\r\n\r\nSM\r\n\r\n"],
                &[true, false],
            ),
            (
                "a preface that stops half-way",
                &[b"PRI * HTTP/2.0\r\n"],
                &[true],
            ),
        ];
        for (name, reads, want) in cases {
            assert_eq!(pending_after(reads), *want, "{name}");
        }
    }

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
        assert!(!is_json(&HeaderMap::new()), "no content type");
        let cases: &[(&[u8], bool)] = &[
            (b"application/json", true),
            (b"application/json; charset=utf-8", true),
            (b"Application/JSON;charset=utf-8", true),
            (b" application/json ; q=1", true),
            (b"application/json;", true),
            (b"text/plain", false),
            (b"application/jsonx", false),
            (b"application/json-patch+json", false),
            (b"application/yaml; x=application/json", false),
            (b"; application/json", false),
            (b"", false),
            (b"application/js\xffon", false),
        ];
        crate::table_test::each(cases.iter().copied(), |(value, want)| {
            let mut h = HeaderMap::new();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_bytes(value).unwrap(),
            );
            assert_eq!(is_json(&h), want, "{:?}", String::from_utf8_lossy(value));
        });
    }
}
