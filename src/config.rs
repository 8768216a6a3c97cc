//! Validated configuration, built from the command line (see `cli`).
//!
//! Flags are parsed by clap; here they are checked for meaning so that a mistake stops
//! start-up with a message naming the flag. Empty entries in comma-separated lists are
//! ignored (a trailing comma is harmless), and an allow-list with no entries means "unset".

use std::path::Path;

use thiserror::Error;

use crate::authz::rbac_file::RbacFile;
use crate::authz::Identity;
use crate::cli::PolicyArgs;
use crate::naming::DomainRoot;
use crate::policy::appdomain::DomainSettings;
use crate::policy::KindPolicy;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("--rbac-file {path}: {detail}")]
    RbacFile { path: String, detail: String },
    #[error("--domain-root (env EXT_DOMAIN_ROOT): {0}")]
    DomainRoot(String),
    #[error("--domain-root (env EXT_DOMAIN_ROOT) is required while the domains controller runs (--controllers includes domains): set it to the root under which app domains are allocated, e.g. apps.example.com (Helm value domainRoot), or leave domains out of --controllers")]
    DomainRootRequired,
    #[error("{flag} (env {env}): {problem}")]
    Invalid {
        flag: &'static str,
        env: &'static str,
        problem: String,
    },
}

/// The admission policy settings shared by `serve`, `review` and `check`.
pub struct PolicyConfig {
    pub kinds: KindPolicy,
    pub tether: Identity<'static>,
    pub rbac: Option<RbacFile>,
    pub domains: DomainSettings,
}

impl PolicyConfig {
    pub fn from_args(a: &PolicyArgs) -> Result<Self, ConfigError> {
        // `none` is the explicit way to ban nothing (an empty list is more likely a mistake).
        let banned: Vec<&String> = a
            .banned_kinds
            .iter()
            .filter(|k| !k.trim().eq_ignore_ascii_case("none"))
            .collect();
        let kinds = KindPolicy::new(banned, a.allowed_kinds.as_ref());
        let rbac = match &a.rbac_file {
            None => None,
            Some(p) => Some(load_rbac(p)?),
        };
        let domain_root = match a.domain_root.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(r) => {
                Some(DomainRoot::parse(r).map_err(|e| ConfigError::DomainRoot(e.to_string()))?)
            }
        };
        if a.pod_namespace.trim().is_empty() || a.service_account_name.trim().is_empty() {
            return Err(ConfigError::Invalid {
                flag: "--pod-namespace/--service-account-name",
                env: "POD_NAMESPACE/SERVICE_ACCOUNT_NAME",
                problem: "must not be empty; in a pod set them from the downward API (metadata.namespace, spec.serviceAccountName)".into(),
            });
        }
        let runner = a.runner_kservice.trim();
        if !crate::naming::is_dns1123_label(runner) {
            return Err(ConfigError::Invalid {
                flag: "--runner-kservice",
                env: "RUNNER_KSERVICE",
                problem: format!(
                    "{runner:?} is not a valid Knative Service name (a DNS-1123 label)"
                ),
            });
        }
        Ok(Self {
            kinds,
            tether: Identity::service_account(
                a.pod_namespace.trim(),
                a.service_account_name.trim(),
            ),
            rbac,
            domains: DomainSettings {
                root: domain_root,
                reserved: a
                    .reserved_names
                    .iter()
                    .map(|s| s.trim().to_ascii_lowercase())
                    .filter(|s| !s.is_empty())
                    .collect(),
                runner_kservice: runner.to_string(),
            },
        })
    }
}

/// The start-up account of the kind policy: `(ban list, allow list, warning)`. The warning
/// is set when the ban list is empty without the explicit `--banned-kinds=none`.
pub fn describe_kind_policy(a: &PolicyArgs) -> (String, String, Option<String>) {
    let list = |v: &[String]| {
        v.iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(",")
    };
    let banned = list(&a.banned_kinds);
    let allowed = a
        .allowed_kinds
        .as_deref()
        .map(list)
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "(any kind not banned)".into());
    let warning = banned.is_empty().then(|| {
        "--banned-kinds (env BANNED_KINDS) is empty: every kind may be attached, including Deployments, Pods and RBAC objects; pass --banned-kinds=none if that is intended, or remove the setting to get the default list".to_string()
    });
    let banned = if banned.is_empty() || banned.eq_ignore_ascii_case("none") {
        "none".to_string()
    } else {
        banned
    };
    (banned, allowed, warning)
}

/// Largest `--rbac-file` read.
pub const MAX_RBAC_FILE_BYTES: u64 = 16 * 1024 * 1024;

fn load_rbac(p: &Path) -> Result<RbacFile, ConfigError> {
    let err = |detail: String| ConfigError::RbacFile {
        path: p.display().to_string(),
        detail,
    };
    // Bounded like the other offline inputs: the file is parsed and indexed in memory.
    let size = std::fs::metadata(p).map_err(|e| err(e.to_string()))?.len();
    if size > MAX_RBAC_FILE_BYTES {
        return Err(err(format!(
            "{size} bytes is more than the {MAX_RBAC_FILE_BYTES} bytes tether reads from an RBAC file; keep only the roles and bindings the checks need"
        )));
    }
    let text = std::fs::read_to_string(p).map_err(|e| err(e.to_string()))?;
    let file = RbacFile::parse(&text).map_err(|e| err(e.to_string()))?;
    for w in file.warnings() {
        tracing::warn!(file = %p.display(), "{w}");
    }
    Ok(file)
}

/// With the domains controller running in a cluster, `--domain-root` is not optional:
/// without it every AppDomain would be denied and none reconciled, so start-up stops here.
pub fn require_domain_root(
    domains_controller: bool,
    standalone: bool,
    settings: &DomainSettings,
) -> Result<(), ConfigError> {
    if domains_controller && !standalone && settings.root.is_none() {
        return Err(ConfigError::DomainRootRequired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        p: PolicyArgs,
    }

    fn parse(args: &[&str]) -> Result<PolicyConfig, ConfigError> {
        let t = T::try_parse_from(std::iter::once("t").chain(args.iter().copied())).unwrap();
        PolicyConfig::from_args(&t.p)
    }

    #[test]
    fn the_domains_controller_needs_a_domain_root() {
        let none = parse(&[]).unwrap().domains;
        let some = parse(&["--domain-root", "apps.example.com"])
            .unwrap()
            .domains;
        let e = require_domain_root(true, false, &none)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--domain-root (env EXT_DOMAIN_ROOT) is required"),
            "{e}"
        );
        assert!(e.contains("Helm value domainRoot"), "{e}");
        assert!(require_domain_root(true, false, &some).is_ok());
        assert!(
            require_domain_root(false, false, &none).is_ok(),
            "controller off"
        );
        assert!(
            require_domain_root(true, true, &none).is_ok(),
            "standalone runs no controller"
        );
    }

    #[test]
    fn defaults_and_errors_name_the_flag() {
        let c = parse(&[]).unwrap();
        assert!(c.kinds.check("Deployment").is_err());
        assert!(c.kinds.check("HorizontalPodAutoscaler").is_ok());
        assert_eq!(c.tether.user, "system:serviceaccount:tether-system:tether");
        let c = parse(&[
            "--allowed-kinds",
            "HorizontalPodAutoscaler,",
            "--banned-kinds",
            "Pod",
        ])
        .unwrap();
        assert!(c.kinds.check("PodDisruptionBudget").is_err());
        // Deployment is no longer banned, but the allow-list does not name it.
        assert!(c.kinds.check("Deployment").is_err());
        assert!(c.kinds.check("horizontalpodautoscaler").is_ok());
        let e = parse(&["--domain-root", "Example.COM"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("--domain-root (env EXT_DOMAIN_ROOT): "),
            "{e}"
        );
        let e = parse(&["--rbac-file", "/nonexistent/rbac.yaml"])
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("--rbac-file /nonexistent/rbac.yaml: "), "{e}");
        let e = parse(&["--runner-kservice", "Bad_Name"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("--runner-kservice (env RUNNER_KSERVICE)"),
            "{e}"
        );
    }
}
