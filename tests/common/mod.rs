//! Test harness: runs the real `tether` binary on loopback with certificates made by
//! `tether certs`, and talks to it with real TLS HTTP/1.1 and HTTP/2 clients (hyper on
//! tokio-rustls), trusting only the generated CA.
#![allow(dead_code)]

pub mod attack;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};

/// The admission-stamp key every cluster-mode test server gets (id `k1`).
pub const TEST_STAMP_KEY: &str = "test-admission-stamp-key-0123456789abcdef";

/// `obj` (an AttachedResource with metadata.namespace) with the admission stamp the
/// mutating webhook of a cluster-mode test server would write (key `k1`), for tests that
/// store objects straight into the fake.
pub fn stamped(mut obj: Value) -> Value {
    let ring = tether::stamp::KeyRing::new(vec![("k1".into(), TEST_STAMP_KEY.as_bytes().to_vec())])
        .expect("the test key is valid");
    let ns = obj["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    let stamp = {
        let view = tether::borrowed_json::Value::from(&obj);
        let subject = tether::stamp::Subject::of(&view, &ns).expect("an object with a spec");
        ring.sign(&subject)
    };
    obj["metadata"]["annotations"][tether::stamp::STAMP_ANNOTATION] = Value::String(stamp);
    obj
}

/// Another build of tether for the harness to run instead of cargo's (set by a benchmark's
/// `--tether-bin`, to measure the PGO build the image ships); tests never set it.
static TETHER_BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The tether binary the harness runs: cargo's build of this tree unless
/// [`use_tether_bin`] chose another.
pub fn tether_bin() -> &'static str {
    TETHER_BIN
        .get()
        .map_or(env!("CARGO_BIN_EXE_tether"), String::as_str)
}

/// Makes the harness run `path` instead of cargo's build (benchmarks only).
pub fn use_tether_bin(path: &str) {
    assert!(
        Path::new(path).is_file(),
        "--tether-bin {path}: no such file; build it first (e.g. bash scripts/build-pgo.sh)"
    );
    let _ = TETHER_BIN.set(path.to_string());
}

/// Runs `tether certs --out dir --dns ...` and returns the dir's ca.crt.
pub fn make_certs(dir: &Path, names: &[&str]) -> Vec<u8> {
    let mut cmd = Command::new(tether_bin());
    cmd.arg("certs").arg("--out").arg(dir);
    for n in names {
        cmd.arg("--dns").arg(n);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "tether certs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(dir.join("ca.crt")).unwrap()
}

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub certs: PathBuf,
    pub ca: Vec<u8>,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `tether serve --standalone` with certificates from `tether certs` placed where
    /// standalone mode looks for them (so it does not generate its own).
    pub fn start(extra: &[&str]) -> Server {
        Self::start_with_env(extra, &[])
    }

    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Server {
        Self::launch(None, extra, env, &[])
    }

    /// Starts `tether serve` against a (fake) cluster: KUBECONFIG points at it, the serving
    /// certificate comes from `tether certs`.
    pub fn start_cluster(kubeconfig: &Path, extra: &[&str]) -> Server {
        Self::launch(Some(kubeconfig), extra, &[], &[])
    }

    /// [`Self::start_cluster`] with more DNS names on the serving certificate, e.g.
    /// `tether.tether-system.svc` for an API server that calls it as a Service.
    pub fn start_cluster_with_dns(kubeconfig: &Path, dns: &[&str], extra: &[&str]) -> Server {
        Self::launch(Some(kubeconfig), extra, &[], dns)
    }

    fn launch(
        kubeconfig: Option<&Path>,
        extra: &[&str],
        env: &[(&str, &str)],
        more_dns: &[&str],
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        let mut names = vec!["localhost", "127.0.0.1"];
        names.extend_from_slice(more_dns);
        let ca = make_certs(&certs, &names);
        let log = dir.path().join("tether.log");
        let mut cmd = Command::new(tether_bin());
        cmd.arg("serve");
        match kubeconfig {
            None => {
                cmd.arg("--standalone").arg("--dev-certs-dir").arg(&certs);
            }
            Some(k) => {
                // Cluster mode needs admission-stamp keys (the chart mounts a Secret), unless
                // the test brings its own.
                if !extra.contains(&"--admission-keys") {
                    let keys = dir.path().join("admission-keys");
                    std::fs::create_dir_all(&keys).unwrap();
                    std::fs::write(keys.join("k1"), TEST_STAMP_KEY).unwrap();
                    cmd.arg("--admission-keys").arg(&keys);
                }
                cmd.env("KUBECONFIG", k)
                    .arg("--tls-cert")
                    .arg(certs.join("tls.crt"))
                    .arg("--tls-key")
                    .arg(certs.join("tls.key"));
            }
        }
        // Port 0 for both listeners: the kernel picks free ports at bind time, and the
        // addresses are read back from the "tether ready" log line (no bind-drop-rebind race).
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--metrics-listen")
            .arg("127.0.0.1:0")
            .arg("--tls-reload-interval")
            .arg("100ms")
            .arg("--log-format")
            .arg("json")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if kubeconfig.is_none() {
            cmd.env_remove("KUBECONFIG");
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let unbound: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut s = Server {
            child,
            addr: unbound,
            metrics_addr: unbound,
            certs,
            ca,
            log,
            _dir: dir,
        };
        (s.addr, s.metrics_addr) = s.wait_ready();
        s
    }

    /// Waits for the "tether ready" log line and returns the bound admission and metrics
    /// addresses it reports (fields `listen` and `metrics_listen`).
    fn wait_ready(&mut self) -> (SocketAddr, SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(addrs) = ready_addresses(&self.logs()) {
                return addrs;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("tether exited early ({st}): {}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("tether not ready in time: {}", self.logs());
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log once `done` holds for it (or after 20 s, for the caller's assertion to
    /// explain): tether writes its lines in batches, up to 20 ms after the event, so a test
    /// waits for the line it expects instead of reading the file at once.
    pub fn logs_when(&self, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let logs = self.logs();
            if done(&logs) || Instant::now() >= deadline {
                return logs;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn metrics(&self) -> String {
        plain_get(self.metrics_addr, "/metrics").unwrap().1
    }

    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn tls_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        client_config(&self.ca, alpn)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bound addresses from the JSON log line `tether serve` writes once ready:
/// `{"message":"tether ready","listen":"127.0.0.1:PORT","metrics_listen":"127.0.0.1:PORT",..}`.
pub fn ready_addresses(json_log: &str) -> Option<(SocketAddr, SocketAddr)> {
    json_log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "tether ready")
        .map(|v| {
            let addr = |field: &str| -> SocketAddr {
                v[field]
                    .as_str()
                    .and_then(|a| a.parse().ok())
                    .unwrap_or_else(|| panic!("ready line without a valid {field}: {v}"))
            };
            (addr("listen"), addr("metrics_listen"))
        })
}

/// A metric's value from a text exposition, by exact series text (`name{labels}`).
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Minimal HTTP/1.0 GET over plain TCP (the metrics port).
pub fn plain_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let code = buf
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Ok((code, body))
}

pub fn client_config(ca_pem: &[u8], alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

pub type TlsStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

pub async fn tls_connect(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>) -> TlsStream {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(cfg);
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// The DER of the leaf certificate the server presented.
pub fn peer_leaf(s: &TlsStream) -> Vec<u8> {
    s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

pub struct Resp {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn request(
    method: &str,
    path: &str,
    ctype: Option<&str>,
    body: Vec<u8>,
) -> hyper::Request<Full<Bytes>> {
    let mut b = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    if let Some(ct) = ctype {
        b = b.header("content-type", ct);
    }
    b.body(Full::new(Bytes::from(body))).unwrap()
}

/// An HTTP/1.1 keep-alive client connection.
pub struct H1 {
    pub send: http1::SendRequest<Full<Bytes>>,
    pub leaf: Vec<u8>,
}

impl H1 {
    pub async fn connect(addr: SocketAddr, ca: &[u8]) -> H1 {
        let tls = tls_connect(addr, client_config(ca, &[b"http/1.1"])).await;
        let leaf = peer_leaf(&tls);
        let (send, conn) = http1::handshake(TokioIo::new(tls)).await.unwrap();
        tokio::spawn(conn);
        H1 { send, leaf }
    }

    pub async fn send(&mut self, req: hyper::Request<Full<Bytes>>) -> Resp {
        self.send.ready().await.unwrap();
        let r = self.send.send_request(req).await.unwrap();
        collect(r).await
    }
}

/// An HTTP/2 client connection (ALPN h2).
pub struct H2 {
    pub send: http2::SendRequest<Full<Bytes>>,
}

impl H2 {
    pub async fn connect(addr: SocketAddr, ca: &[u8]) -> H2 {
        let tls = tls_connect(addr, client_config(ca, &[b"h2"])).await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        H2 { send }
    }

    pub async fn send(&self, req: hyper::Request<Full<Bytes>>) -> Resp {
        let mut s = self.send.clone();
        s.ready().await.unwrap();
        let r = s.send_request(req).await.unwrap();
        collect(r).await
    }
}

async fn collect(r: hyper::Response<hyper::body::Incoming>) -> Resp {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    Resp {
        status,
        headers,
        body,
    }
}

/// POSTs an AdmissionReview to `path` (with its query) over HTTP/1.1 and returns
/// `response`, asserting HTTP 200 and that the uid was echoed.
pub async fn post(s: &Server, path: &str, body: &Value) -> Value {
    let mut h1 = H1::connect(s.addr, &s.ca).await;
    let r = h1
        .send(request(
            "POST",
            path,
            Some("application/json"),
            serde_json::to_vec(body).unwrap(),
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["response"]["uid"], body["request"]["uid"], "uid echoed");
    v["response"].clone()
}

/// POSTs raw bytes as JSON to `path` (the API server's `?timeout=10s` added) over a fresh
/// HTTP/1.1 connection and returns the whole response, whatever its status; a server that
/// does not answer within 15 s fails the test.
pub async fn post_raw(s: &Server, path: &str, body: Vec<u8>) -> Resp {
    let mut h1 = H1::connect(s.addr, &s.ca).await;
    tokio::time::timeout(
        Duration::from_secs(15),
        h1.send(request(
            "POST",
            &format!("{path}?timeout=10s"),
            Some("application/json"),
            body,
        )),
    )
    .await
    .expect("server hung")
}

/// An AdmissionReview shaped like the API server's.
#[allow(clippy::too_many_arguments)]
pub fn review(
    uid: &str,
    group: &str,
    version: &str,
    kind: &str,
    resource: &str,
    operation: &str,
    namespace: &str,
    object: Option<Value>,
    old_object: Option<Value>,
) -> Value {
    let name = object
        .as_ref()
        .or(old_object.as_ref())
        .and_then(|o| o.pointer("/metadata/name"))
        .cloned()
        .unwrap_or(json!(""));
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "requestResource": {"group": group, "version": version, "resource": resource},
            "name": name,
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "alice", "uid": "alice-uid", "groups": ["devs", "system:authenticated"], "extra": {"scopes": ["view"]}},
            "object": object,
            "oldObject": old_object,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": if operation == "DELETE" {"DeleteOptions"} else if operation == "UPDATE" {"UpdateOptions"} else {"CreateOptions"}}
        }
    })
}

/// A ConfigMap review: a kind tether does not handle.
pub fn unhandled_review(uid: &str) -> Vec<u8> {
    serde_json::to_vec(&review(
        uid,
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        "CREATE",
        "default",
        Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}})),
        None,
    ))
    .unwrap()
}
