//! `--client-ca` (SECURITY.md, "Who may call"): with it, a caller of the admission port must
//! present a client certificate from that CA, as kube-apiserver does through its admission
//! kubeconfig. The real binary over real TLS: no certificate and a certificate from another CA
//! get no answer; the right one gets a review back; probes on the metrics port are unaffected.

mod common;

use std::sync::Arc;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rstest::rstest;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Ca {
    params: CertificateParams,
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    Ca {
        params: p,
        cert,
        key,
    }
}

/// A client certificate for `kube-apiserver`, signed by `ca`: (chain PEM, key PEM).
fn client_cert(ca: &Ca) -> (String, String) {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "kube-apiserver");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let issuer = rcgen::Issuer::from_params(&ca.params, &ca.key);
    let cert = p.signed_by(&key, &issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn tls_client(server_ca: &[u8], client: Option<&(String, String)>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(server_ca) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut cfg = match client {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(chain.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// Sends one review over HTTP/1.1 and returns the response's status line, or the error that
/// ended the exchange (a refused client certificate ends it during or right after the
/// handshake, depending on the TLS version).
async fn call(s: &Server, cfg: Arc<rustls::ClientConfig>) -> Result<String, String> {
    let tcp = tokio::net::TcpStream::connect(s.addr)
        .await
        .map_err(|e| e.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let body = serde_json::to_vec(&review(
        "c1",
        "tether.dev",
        "v1alpha1",
        "AttachedResource",
        "attachedresources",
        "DELETE",
        "payments",
        None,
        None,
    ))
    .unwrap();
    let head = format!(
        "POST /validate?timeout=10s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    tls.write_all(&body)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut out = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tls.read_to_end(&mut out),
    )
    .await
    .map_err(|_| "no answer in 10 s".to_string())?;
    read.map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&out);
    match text.lines().next() {
        Some(line) if !line.is_empty() => Ok(line.to_string()),
        _ => Err("closed without an answer".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_callers_with_a_certificate_from_the_client_ca_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = ca("apiserver-client-ca");
    let other = ca("someone-else");
    let ca_file = dir.path().join("client-ca.crt");
    std::fs::write(&ca_file, trusted.cert.pem()).unwrap();
    let s =
        tokio::task::block_in_place(|| Server::start(&["--client-ca", ca_file.to_str().unwrap()]));

    let good = client_cert(&trusted);
    assert_eq!(
        call(&s, tls_client(&s.ca, Some(&good))).await,
        Ok("HTTP/1.1 200 OK".to_string())
    );
    for (what, cfg) in [
        ("no client certificate", tls_client(&s.ca, None)),
        (
            "a certificate from another CA",
            tls_client(&s.ca, Some(&client_cert(&other))),
        ),
    ] {
        let got = call(&s, cfg).await;
        assert!(got.is_err(), "{what}: answered {got:?}");
    }
    // Probes are plain HTTP on the metrics port and need no certificate.
    assert_eq!(plain_get(s.metrics_addr, "/readyz").unwrap().0, 200);
}

/// `contents` is written to `ca.pem` first, unless `None` (the file is then missing).
#[rstest]
#[case::not_pem(Some("not a certificate\n"), "no PEM CERTIFICATE block found")]
#[case::missing(None, "No such file or directory")]
fn an_unusable_client_ca_file_names_the_flag(#[case] contents: Option<&str>, #[case] want: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    if let Some(c) = contents {
        std::fs::write(&path, c).unwrap();
    }
    let out = std::process::Command::new(tether_bin())
        .args(["serve", "--standalone", "--listen", "127.0.0.1:0"])
        .args(["--metrics-listen", "127.0.0.1:0", "--dev-certs-dir"])
        .arg(dir.path().join("dev"))
        .arg("--client-ca")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("--client-ca {}: ", path.display())) && err.contains(want),
        "{err}"
    );
}
