//! Serving TLS: rustls configuration with a certificate that is reloaded from disk.
//!
//! cert-manager writes the serving certificate into a Secret; the kubelet projects it into the
//! pod through an atomic `..data` symlink swap, so a file watcher on the visible paths sees no
//! event on the files themselves. We therefore poll: every `interval` we read both files
//! (following symlinks anew), and when their bytes differ from what we last saw we parse and
//! verify the pair and swap it in. A pair that is unreadable, unparsable or whose key does not
//! match the certificate is rejected, the old certificate stays in use, and the failure is
//! logged and counted once per distinct content (so a broken Secret does not flood the logs).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::metrics::Metrics;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {what} file {path}: {source}; check --tls-cert/--tls-key (env TETHER_TLS_CERT/TETHER_TLS_KEY) and the mounted Secret")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no PEM CERTIFICATE block found; the file must hold the serving certificate (and its chain) in PEM form")]
    NoCertificate { path: PathBuf },
    #[error("{path}: invalid PEM certificate: {detail}")]
    BadCertificate { path: PathBuf, detail: String },
    #[error("{path}: no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {detail}")]
    BadKey { path: PathBuf, detail: String },
    #[error("{key}: the private key does not match the certificate in {cert}; replace both files together")]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("{path}: certificate cannot be parsed as X.509: {detail}")]
    X509 { path: PathBuf, detail: String },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("--client-ca {path}: {detail}; give a PEM file with the CA certificate(s) that sign the API server's client certificate")]
    ClientCa { path: PathBuf, detail: String },
}

/// The verifier for `--client-ca`: every caller of the admission port must present a
/// certificate chain to one of these CAs (kube-apiserver presents one through its admission
/// kubeconfig). Without it, anyone who can reach the port may ask for access reviews run
/// with tether's credentials.
pub fn client_verifier(
    path: &Path,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let err = |detail: String| TlsError::ClientCa {
        path: path.to_owned(),
        detail,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| err(format!("invalid PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| err(format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(err("no PEM CERTIFICATE block found".into()));
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| err(e.to_string()))
}

/// A verified certificate chain + key, with the leaf's expiry.
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    /// notAfter of the leaf certificate, seconds since the Unix epoch.
    pub not_after: i64,
}

/// The crypto provider we serve with. ring keeps the build free of cmake/NASM and statically
/// linkable.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses and verifies a PEM certificate chain and private key.
pub fn load_pair_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
) -> Result<LoadedCert, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::BadCertificate {
            path: cert_path.to_owned(),
            detail: e.to_string(),
        })?;
    let Some(leaf) = certs.first() else {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_owned(),
        });
    };
    let (_, parsed) =
        x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| TlsError::X509 {
            path: cert_path.to_owned(),
            detail: e.to_string(),
        })?;
    let not_after = parsed.validity().not_after.timestamp();
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::BadKey {
        path: key_path.to_owned(),
        detail: e.to_string(),
    })?;
    let provider = provider();
    let signing_key =
        provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError::BadKey {
                path: key_path.to_owned(),
                detail: e.to_string(),
            })?;
    let certified = CertifiedKey::new(certs, signing_key);
    // keys_match compares the certificate's SubjectPublicKeyInfo with the key's: a mismatched
    // pair would otherwise only fail at the first handshake.
    certified.keys_match().map_err(|_| TlsError::Mismatch {
        cert: cert_path.to_owned(),
        key: key_path.to_owned(),
    })?;
    Ok(LoadedCert {
        key: Arc::new(certified),
        not_after,
    })
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// Reads both files; returns their content digest too, so the watcher can tell "changed".
/// Certificate bytes, key bytes, and a digest of both.
type PairFiles = (Vec<u8>, Vec<u8>, [u8; 32]);

fn read_pair(cert: &Path, key: &Path) -> Result<PairFiles, TlsError> {
    let c = read("certificate", cert)?;
    let k = read("private key", key)?;
    let mut h = Sha256::new();
    h.update((c.len() as u64).to_le_bytes());
    h.update(&c);
    h.update(&k);
    Ok((c, k, h.finalize().into()))
}

/// A `ResolvesServerCert` whose certificate can be swapped while serving. Handshakes already
/// in progress keep the `Arc` they took; new handshakes get the new certificate.
#[derive(Debug)]
pub struct ReloadingResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadingResolver {
    fn new(key: Arc<CertifiedKey>) -> Self {
        Self {
            current: RwLock::new(key),
        }
    }

    fn set(&self, key: Arc<CertifiedKey>) {
        // A poisoned lock only means a writer panicked mid-assignment of an Arc, which cannot
        // leave it half-written; keep serving.
        let mut guard = self.current.write().unwrap_or_else(|p| p.into_inner());
        *guard = key;
    }

    fn get(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl ResolvesServerCert for ReloadingResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// The serving certificate source: files on disk, watched.
pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    resolver: Arc<ReloadingResolver>,
    last_digest: std::sync::Mutex<[u8; 32]>,
    metrics: Metrics,
}

impl CertStore {
    /// Loads the pair once; a failure here is fatal at start-up (nothing to fall back to).
    pub fn open(cert_path: &Path, key_path: &Path, metrics: Metrics) -> Result<Self, TlsError> {
        let (c, k, digest) = read_pair(cert_path, key_path)?;
        let loaded = load_pair_from_pem(&c, &k, cert_path, key_path)?;
        metrics.tls_expiry.set(loaded.not_after as f64);
        Ok(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            resolver: Arc::new(ReloadingResolver::new(loaded.key)),
            last_digest: std::sync::Mutex::new(digest),
            metrics,
        })
    }

    /// rustls server configuration: TLS 1.2 and 1.3 only, ALPN h2 then http/1.1.
    /// With `client_ca`, callers must present a certificate it verifies (`--client-ca`).
    pub fn server_config(
        &self,
        client_ca: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
        let builder = match client_ca {
            Some(verifier) => builder.with_client_cert_verifier(verifier),
            None => builder.with_no_client_auth(),
        };
        let mut cfg = builder.with_cert_resolver(self.resolver.clone());
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// Checks the files once. Returns `Ok(true)` when a new pair was loaded, `Ok(false)` when
    /// nothing changed, and the error when changed files could not be used (old pair kept).
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        // A read error gets a digest of its own text, so a missing file is reported once,
        // like a broken pair, and not at every poll.
        let (content, digest) = match read_pair(&self.cert_path, &self.key_path) {
            Ok((c, k, d)) => (Ok((c, k)), d),
            Err(e) => {
                let d: [u8; 32] = Sha256::digest(e.to_string().as_bytes()).into();
                (Err(e), d)
            }
        };
        {
            let mut last = self.last_digest.lock().unwrap_or_else(|p| p.into_inner());
            if *last == digest {
                return Ok(false);
            }
            // Remember the content even when it is bad: we retry as soon as it changes again.
            *last = digest;
        }
        match content.and_then(|(c, k)| load_pair_from_pem(&c, &k, &self.cert_path, &self.key_path))
        {
            Ok(loaded) => {
                self.resolver.set(loaded.key);
                self.metrics.tls_expiry.set(loaded.not_after as f64);
                self.metrics
                    .tls_reloads
                    .with_label_values(&["success"])
                    .inc();
                tracing::info!(
                    cert = %self.cert_path.display(),
                    not_after = loaded.not_after,
                    "serving certificate reloaded"
                );
                Ok(true)
            }
            Err(e) => {
                self.metrics.tls_reloads.with_label_values(&["error"]).inc();
                tracing::error!(error = %e, "serving certificate not reloaded; keeping the previous one");
                Err(e)
            }
        }
    }

    /// Polls the files until `shutdown` resolves.
    pub async fn watch(self: Arc<Self>, interval: Duration, shutdown: crate::shutdown::Signal) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick fires at once; the pair was just loaded
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait() => return,
            }
            let this = self.clone();
            // File reads and key parsing are blocking work; keep them off the reactor.
            let _ = tokio::task::spawn_blocking(move || this.reload_if_changed()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dns: &str) -> (String, String) {
        let g = crate::certs::generate(&[dns.to_string()], 30).unwrap();
        (g.tls_crt, g.tls_key)
    }

    #[test]
    fn loads_matching_pair_and_rejects_mismatch() {
        let (c1, k1) = pair("a.example");
        let (_c2, k2) = pair("b.example");
        let p = Path::new("x");
        let ok = load_pair_from_pem(c1.as_bytes(), k1.as_bytes(), p, p).unwrap();
        assert!(ok.not_after > 1_700_000_000);
        let err = load_pair_from_pem(c1.as_bytes(), k2.as_bytes(), p, p)
            .err()
            .unwrap();
        assert!(matches!(err, TlsError::Mismatch { .. }), "{err}");
        let err = load_pair_from_pem(b"junk", k1.as_bytes(), p, p)
            .err()
            .unwrap();
        assert!(err.to_string().contains("no PEM CERTIFICATE"), "{err}");
        let err = load_pair_from_pem(c1.as_bytes(), b"junk", p, p)
            .err()
            .unwrap();
        assert!(err.to_string().contains("no usable private key"), "{err}");
    }

    #[test]
    fn reload_keeps_old_pair_on_bad_files_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let (c1, k1) = pair("a.example");
        let cp = dir.path().join("tls.crt");
        let kp = dir.path().join("tls.key");
        std::fs::write(&cp, &c1).unwrap();
        std::fs::write(&kp, &k1).unwrap();
        let m = Metrics::new();
        let store = CertStore::open(&cp, &kp, m.clone()).unwrap();
        let before = store.resolver.get();
        assert!(!store.reload_if_changed().unwrap());
        std::fs::write(&cp, "broken").unwrap();
        assert!(store.reload_if_changed().is_err());
        assert!(Arc::ptr_eq(&before, &store.resolver.get()));
        // Same broken content again: not re-reported.
        assert!(!store.reload_if_changed().unwrap());
        assert_eq!(m.tls_reloads.with_label_values(&["error"]).get(), 1);
        let (c2, k2) = pair("b.example");
        std::fs::write(&kp, &k2).unwrap();
        std::fs::write(&cp, &c2).unwrap();
        assert!(store.reload_if_changed().unwrap());
        assert!(!Arc::ptr_eq(&before, &store.resolver.get()));
        assert_eq!(m.tls_reloads.with_label_values(&["success"]).get(), 1);
    }
}
