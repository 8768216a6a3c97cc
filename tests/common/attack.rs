//! Attack primitives for the budget tests (tests/budgets.rs) and the bounded attack runner
//! (bench/attack/attack.rs, driven by bench/attack/run.sh). Loopback only; every primitive either
//! finishes by itself or holds a connection that is released when its handle is dropped.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

pub type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// A client TLS configuration trusting `ca_pem` only, offering `alpn`.
pub fn client_cfg(ca_pem: &[u8], alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem).flatten() {
        let _ = roots.add(c);
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// A TCP connection from a chosen loopback source address (127.0.0.2 plays the API server,
/// 127.0.0.1 the attacker: they are different peers to tether).
pub async fn tcp_from(src: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = match src {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    sock.bind(SocketAddr::new(src, 0))?;
    sock.connect(addr).await
}

pub async fn tls_from(
    src: IpAddr,
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
) -> std::io::Result<Tls> {
    let tcp = tcp_from(src, addr).await?;
    let name = ServerName::try_from("localhost").expect("static name");
    tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
}

/// A ConfigMap AdmissionReview (a kind tether allows without looking further).
pub fn valid_review_body(uid: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
            "resource": {"group": "", "version": "v1", "resource": "configmaps"},
            "name": "c", "namespace": "default", "operation": "CREATE",
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}},
            "oldObject": null, "dryRun": false
        }
    }))
    .expect("static JSON")
}

fn post(path: &str, body: Vec<u8>) -> hyper::Request<Full<Bytes>> {
    hyper::Request::builder()
        .method("POST")
        .uri(format!("{path}?timeout=10s"))
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static request")
}

/// One valid review on a fresh HTTP/1.1 connection from `src`, as the API server sends it:
/// the HTTP status and the time from connect to the full answer.
pub async fn valid_review(
    src: IpAddr,
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    uid: &str,
) -> Result<(u16, Duration), String> {
    let started = Instant::now();
    let tls = tls_from(src, addr, cfg)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut send, conn) = http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let r = send
        .send_request(post("/validate", valid_review_body(uid)))
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = r.status().as_u16();
    let body = r
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    if status == 200 && !body.windows(uid.len()).any(|w| w == uid.as_bytes()) {
        return Err(format!(
            "answer without the uid: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    Ok((status, started.elapsed()))
}

/// An HTTP/2 connection that does nothing after its handshake (hyper answers PINGs). Held
/// while the returned sender lives.
pub async fn idle_h2(
    src: IpAddr,
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
) -> Option<http2::SendRequest<Full<Bytes>>> {
    let tls = tls_from(src, addr, cfg).await.ok()?;
    let (send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(send)
}

/// A TCP connection that never sends a ClientHello.
pub async fn silent(src: IpAddr, addr: SocketAddr) -> Option<TcpStream> {
    tcp_from(src, addr).await.ok()
}

type Chunks = mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>;
type SlowBody = StreamBody<tokio_stream_shim::Receiver>;

/// A minimal `Stream` over an mpsc receiver, so no extra crate is needed.
pub mod tokio_stream_shim {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use hyper::body::Frame;
    use tokio::sync::mpsc;

    pub struct Receiver(pub mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>);

    impl futures::Stream for Receiver {
        type Item = Result<Frame<Bytes>, std::io::Error>;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.0.poll_recv(cx)
        }
    }
}

/// What holds unfinished request bodies open: drop it to let them go.
#[derive(Default)]
pub struct Held {
    senders: Vec<Chunks>,
    h2: Vec<http2::SendRequest<SlowBody>>,
    streams: Vec<Tls>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Answers that came back while the bodies were unfinished (e.g. 429/503), by status.
    pub early: Arc<std::sync::Mutex<Vec<u16>>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[allow(clippy::too_many_arguments)]
/// `conns` HTTP/2 connections × `streams` requests each, every body `sent` bytes of a
/// `declared` total (no Content-Length when `declared` is None) and never finished.
pub async fn unfinished_h2_bodies(
    src: IpAddr,
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    conns: usize,
    streams: usize,
    declared: Option<usize>,
    sent: usize,
    held: &mut Held,
) {
    for _ in 0..conns {
        let Ok(tls) = tls_from(src, addr, cfg.clone()).await else {
            continue;
        };
        let Ok((send, conn)) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await
        else {
            continue;
        };
        held.tasks.push(tokio::spawn(async move {
            let _ = conn.await;
        }));
        for _ in 0..streams {
            let (tx, rx) = mpsc::channel(4);
            let mut b = hyper::Request::builder()
                .method("POST")
                .uri("/validate?timeout=10s")
                .header("content-type", "application/json");
            if let Some(d) = declared {
                b = b.header("content-length", d.to_string());
            }
            let Ok(req) = b.body(StreamBody::new(tokio_stream_shim::Receiver(rx))) else {
                continue;
            };
            let mut s = send.clone();
            let early = held.early.clone();
            held.tasks.push(tokio::spawn(async move {
                if s.ready().await.is_err() {
                    return;
                }
                if let Ok(r) = s.send_request(req).await {
                    if let Ok(mut g) = early.lock() {
                        g.push(r.status().as_u16());
                    }
                }
            }));
            let chunk = Bytes::from(vec![b' '; 64 * 1024]);
            let mut left = sent;
            let txc = tx.clone();
            held.tasks.push(tokio::spawn(async move {
                while left > 0 {
                    let n = left.min(chunk.len());
                    if txc.send(Ok(Frame::data(chunk.slice(..n)))).await.is_err() {
                        return;
                    }
                    left -= n;
                }
            }));
            held.senders.push(tx);
        }
        held.h2.push(send);
    }
}

/// `conns` HTTP/1.1 connections, each with a request declaring `declared` body bytes and
/// sending `sent` of them, then nothing.
pub async fn unfinished_h1_bodies(
    src: IpAddr,
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    conns: usize,
    declared: usize,
    sent: usize,
    held: &mut Held,
) {
    let head = format!(
        "POST /validate?timeout=10s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    );
    let body = vec![b' '; sent];
    for _ in 0..conns {
        let Ok(mut tls) = tls_from(src, addr, cfg.clone()).await else {
            continue;
        };
        if tls.write_all(head.as_bytes()).await.is_err() || tls.write_all(&body).await.is_err() {
            continue;
        }
        let _ = tls.flush().await;
        held.streams.push(tls);
    }
}

/// `n` copies of `body` posted at once, each on its own connection; the statuses.
pub async fn concurrent_posts(
    src: IpAddr,
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    body: Bytes,
    n: usize,
) -> Vec<u16> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let cfg = cfg.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let tls = tls_from(src, addr, cfg).await.ok()?;
            let (mut send, conn) = http1::handshake(TokioIo::new(tls)).await.ok()?;
            tokio::spawn(conn);
            let r = send
                .send_request(post("/validate", body.to_vec()))
                .await
                .ok()?;
            let st = r.status().as_u16();
            let _ = r.into_body().collect().await;
            Some(st)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.ok().flatten().unwrap_or(0));
    }
    out
}

/// A review whose object holds `values` zeros in one array: the cheapest bytes for the most
/// parsed values (`[0,0,…]`, the issue's amplification body).
pub fn zeros_review(uid: &str, values: usize) -> Vec<u8> {
    let mut zeros = String::with_capacity(values * 2 + 2);
    zeros.push('[');
    for i in 0..values {
        if i > 0 {
            zeros.push(',');
        }
        zeros.push('0');
    }
    zeros.push(']');
    format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"{uid}","kind":{{"group":"","version":"v1","kind":"ConfigMap"}},"resource":{{"group":"","version":"v1","resource":"configmaps"}},"name":"c","namespace":"default","operation":"CREATE","userInfo":{{"username":"alice"}},"object":{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"c"}},"zeros":{zeros}}},"oldObject":null}}}}"#
    )
    .into_bytes()
}

/// A value from `/proc/<pid>/status` in KiB (`VmHWM`: peak RSS; `VmRSS`: now).
pub fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU seconds (user + system) used so far by process `pid` (`"self"`: this process), from
/// `/proc/<pid>/stat`; `None` when it cannot be read.
pub fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at its closing ')':
    // utime and stime are fields 14 and 15 of the whole line.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / hz.max(1.0))
}

/// Open file descriptors of `pid`.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}
