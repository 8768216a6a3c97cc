//! `tether-baseline --listen ADDR --cert FILE --key FILE [--parse-review | --skim-review]`:
//! answers every
//! POST with
//! `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":<uid>,"allowed":true}}`
//! over TLS (ALPN h2 and http/1.1), and GET /readyz with 200. The floor tether is compared to.
//!
//! By default it reads nothing but `request.uid`. With `--parse-review` it first parses the
//! whole body into a `serde_json::Value`, the way most webhooks read a review, and takes the
//! uid from that: the floor for a webhook that has to look at the object (bench/load
//! `--parse-floor`). With `--skim-review` it first makes serde_json's cheapest pass over the
//! whole body, into `IgnoredAny` (every byte checked, nothing built), then answers as by
//! default: what the parse alone costs any webhook that must reject malformed JSON.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

#[derive(Deserialize)]
struct ReviewIn<'a> {
    #[serde(borrow)]
    request: RequestIn<'a>,
}

#[derive(Deserialize)]
struct RequestIn<'a> {
    #[serde(borrow)]
    uid: std::borrow::Cow<'a, str>,
}

#[derive(Serialize)]
struct ReviewOut<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
}

fn bad_request(e: impl std::fmt::Display) -> Response {
    (
        StatusCode::BAD_REQUEST,
        format!("not an AdmissionReview: {e}\n"),
    )
        .into_response()
}

/// Reads only `request.uid`.
async fn admit(body: Bytes) -> Response {
    match serde_json::from_slice::<ReviewIn<'_>>(&body) {
        Ok(review) => answer(&review.request.uid),
        Err(e) => bad_request(e),
    }
}

/// Parses the whole review into a `serde_json::Value` first (`--parse-review`).
async fn admit_parsed(body: Bytes) -> Response {
    let review: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad_request(e),
    };
    match review.pointer("/request/uid").and_then(|u| u.as_str()) {
        Some(uid) => answer(uid),
        None => bad_request("no request.uid"),
    }
}

/// One pass over the whole body that builds nothing, then as [`admit`] (`--skim-review`).
/// UTF-8 checked once, then `from_str`, as tether reads a review.
async fn admit_skimmed(body: Bytes) -> Response {
    let skimmed = std::str::from_utf8(&body)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str::<IgnoredAny>(s).map_err(|e| e.to_string()));
    if let Err(e) = skimmed {
        return bad_request(e);
    }
    admit(body).await
}

fn answer(uid: &str) -> Response {
    let out = ReviewOut {
        api_version: "admission.k8s.io/v1",
        kind: "AdmissionReview",
        response: ResponseOut { uid, allowed: true },
    };
    let bytes = serde_json::to_vec(&out).unwrap_or_default();
    let mut r = Response::new(axum::body::Body::from(bytes));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn arg(args: &[String], name: &str) -> Result<String, String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .ok_or_else(|| {
            format!(
                "missing {name} VALUE; usage: tether-baseline --listen ADDR --cert FILE --key FILE [--parse-review | --skim-review]"
            )
        })
}

fn tls_config(cert: &str, key: &str) -> Result<Arc<rustls::ServerConfig>, String> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--cert {cert}: {e}"))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("--key {key}: {e}"))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| format!("certificate and key: {e}"))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let listen: SocketAddr = arg(&args, "--listen")?
        .parse()
        .map_err(|e| format!("--listen: {e}"))?;
    let tls = TlsAcceptor::from(tls_config(&arg(&args, "--cert")?, &arg(&args, "--key")?)?);
    let app = if args.iter().any(|a| a == "--parse-review") {
        Router::new()
            .route("/mutate", post(admit_parsed))
            .route("/validate", post(admit_parsed))
    } else if args.iter().any(|a| a == "--skim-review") {
        Router::new()
            .route("/mutate", post(admit_skimmed))
            .route("/validate", post(admit_skimmed))
    } else {
        Router::new()
            .route("/mutate", post(admit))
            .route("/validate", post(admit))
    };
    let app = app.route("/readyz", get(|| async { "ready\n" }));
    let service = TowerToHyperService::new(app);
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("--listen {listen}: {e}"))?;
    // SIGTERM ends the process through `main`'s return, so exit handlers run (a PGO or
    // coverage profile is written then; the default action would skip them).
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("SIGTERM handler: {e}"))?;
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(_) => continue,
            },
            _ = term.recv() => return Ok(()),
        };
        let _ = tcp.set_nodelay(true);
        let (tls, service, builder) = (tls.clone(), service.clone(), builder.clone());
        tokio::spawn(async move {
            if let Ok(stream) = tls.accept(tcp).await {
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            }
        });
    }
}
