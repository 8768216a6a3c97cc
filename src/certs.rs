//! Certificate generation for `tether certs` and `tether serve --standalone` (rcgen).
//!
//! We mint a private CA and a serving certificate signed by it, the same shape cert-manager's
//! CA issuer produces: the API server trusts the CA (the webhook's `caBundle`), and the serving
//! certificate can be rotated under it. The CA private key is deliberately not written: a CA
//! key left on disk could mint certificates for any name, and re-running the command is cheap.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CertsError {
    #[error(
        "--dns: at least one DNS name is needed (for a webhook Service: <service>.<namespace>.svc)"
    )]
    NoNames,
    #[error("--dns {name:?}: not a valid DNS name or IP address ({detail})")]
    BadName { name: String, detail: String },
    #[error("--days must be between 1 and 3650, got {0}")]
    BadDays(u32),
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}; check that --out is a writable directory")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// PEM outputs of one generation.
pub struct Generated {
    pub ca_crt: String,
    pub tls_crt: String,
    pub tls_key: String,
}

// Hand-written so a debug print never shows the private key.
impl std::fmt::Debug for Generated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generated")
            .field("ca_crt", &self.ca_crt)
            .field("tls_crt", &self.tls_crt)
            .field("tls_key", &"<redacted>")
            .finish()
    }
}

impl Generated {
    /// The CA certificate base64-encoded, as a webhook configuration's `caBundle` wants it.
    pub fn ca_bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.ca_crt.as_bytes())
    }
}

fn san(name: &str) -> Result<SanType, CertsError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let bad = |detail: &str| CertsError::BadName {
        name: name.to_string(),
        detail: detail.to_string(),
    };
    // Wildcards are allowed in the leftmost label only, as X.509 name matching allows.
    let check = name.strip_prefix("*.").unwrap_or(name);
    if check.is_empty()
        || check.len() > 253
        || !check.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
    {
        return Err(bad(
            "use lowercase labels of letters, digits and '-', separated by dots",
        ));
    }
    let ia5 = name
        .to_ascii_lowercase()
        .try_into()
        .map_err(|e: rcgen::Error| bad(&e.to_string()))?;
    Ok(SanType::DnsName(ia5))
}

/// Generates a CA and a serving certificate for `names` (DNS names or IP addresses), valid
/// for `days` days from now.
pub fn generate(names: &[String], days: u32) -> Result<Generated, CertsError> {
    if names.is_empty() {
        return Err(CertsError::NoNames);
    }
    if !(1..=3650).contains(&days) {
        return Err(CertsError::BadDays(days));
    }
    let sans = names
        .iter()
        .map(|n| san(n))
        .collect::<Result<Vec<_>, _>>()?;
    let now = time::OffsetDateTime::now_utc();
    // Backdate a little: clocks in a cluster are rarely in perfect agreement.
    let not_before = now - time::Duration::minutes(5);
    let not_after = now + time::Duration::days(i64::from(days));

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "tether webhook CA");
    dn.push(DnType::OrganizationName, "tether");
    ca.distinguished_name = dn;
    ca.not_before = not_before;
    // The CA outlives the leaf so a leaf can be re-issued under the same caBundle.
    ca.not_after = now + time::Duration::days(i64::from(days) * 2);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let leaf_key = KeyPair::generate()?;
    let mut leaf = CertificateParams::default();
    leaf.subject_alt_names = sans;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names[0].as_str());
    leaf.distinguished_name = dn;
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = not_before;
    leaf.not_after = not_after;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;

    Ok(Generated {
        ca_crt: ca_cert.pem(),
        tls_crt: leaf_cert.pem(),
        tls_key: leaf_key.serialize_pem(),
    })
}

/// Writes `ca.crt`, `tls.crt` and `tls.key` (mode 0600) into `dir`, creating it.
pub fn write(dir: &Path, g: &Generated) -> Result<(), CertsError> {
    let werr = |path: &Path| {
        let path = path.to_owned();
        move |source| CertsError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(werr(dir))?;
    for (name, content, private) in [
        ("ca.crt", &g.ca_crt, false),
        ("tls.crt", &g.tls_crt, false),
        ("tls.key", &g.tls_key, true),
    ] {
        let path = dir.join(name);
        write_file(&path, content.as_bytes(), private).map_err(werr(&path))?;
    }
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// For `--standalone`: the dev CA and a localhost certificate under `dir`, created when absent.
/// Returns (cert path, key path, created?).
pub fn ensure_dev_certs(dir: &Path) -> Result<(PathBuf, PathBuf, bool), CertsError> {
    let crt = dir.join("tls.crt");
    let key = dir.join("tls.key");
    if crt.exists() && key.exists() && dir.join("ca.crt").exists() {
        return Ok((crt, key, false));
    }
    let g = generate(
        &[
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ],
        365,
    )?;
    write(dir, &g)?;
    Ok((crt, key, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_input_with_field_names() {
        assert!(generate(&[], 30).unwrap_err().to_string().contains("--dns"));
        let e = generate(&["bad name".into()], 30).unwrap_err().to_string();
        assert!(e.contains("--dns \"bad name\""), "{e}");
        assert!(generate(&["a.b".into()], 0)
            .unwrap_err()
            .to_string()
            .contains("--days"));
    }

    #[test]
    fn leaf_is_signed_by_ca_and_carries_names() {
        let g = generate(&["svc.ns.svc".into(), "127.0.0.1".into()], 10).unwrap();
        let ca_der = rustls_pki_types::CertificateDer::from_pem_slice(g.ca_crt.as_bytes());
        use rustls_pki_types::pem::PemObject;
        let ca_der = ca_der.unwrap();
        let leaf_der =
            rustls_pki_types::CertificateDer::from_pem_slice(g.tls_crt.as_bytes()).unwrap();
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        let (_, leaf) = x509_parser::parse_x509_certificate(&leaf_der).unwrap();
        assert!(ca.is_ca());
        assert!(!leaf.is_ca());
        assert_eq!(leaf.issuer(), ca.subject());
        leaf.verify_signature(Some(ca.public_key())).unwrap();
        let sans = leaf.subject_alternative_name().unwrap().unwrap();
        let text = format!("{:?}", sans.value.general_names);
        assert!(
            text.contains("svc.ns.svc") && text.contains("IPAddress([127, 0, 0, 1])"),
            "{text}"
        );
        let days = (leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp())
            / 86_400;
        assert_eq!(days, 10);
        assert!(!g.ca_bundle().is_empty());
    }
}
