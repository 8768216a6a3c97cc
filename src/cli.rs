//! Command line (SPEC 7). Every flag has an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::logging::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "tether",
    version = LONG_VERSION,
    about = "Admission webhook and controller: attach per-workload resources and app domains with kubectl apply"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the admission webhook (and, in a cluster, the controllers).
    Serve(Box<ServeArgs>),
    /// Offline: one AdmissionReview JSON in (file or stdin), the response AdmissionReview out.
    Review(ReviewArgs),
    /// Offline: decide every object of a manifest as a CREATE by a user; exit 1 on any deny.
    Check(CheckArgs),
    /// Print the CustomResourceDefinitions as YAML.
    Crds,
    /// Generate a CA and a serving certificate for bring-your-own-certificate installs.
    Certs(CertsArgs),
    /// Print the app domain computed for a tenant and extension id.
    Domain(DomainArgs),
    /// Print the version, git commit and build date.
    Version(VersionArgs),
    /// Print a shell completion script: tether completion bash > /etc/bash_completion.d/tether
    Completion(CompletionArgs),
}

/// Parses a duration like `10s`, `500ms`, `2m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e}; write a duration such as 10s, 500ms or 2m"))
}

/// Parses a count that must be at least 1 (a rate or a burst: 0 would stop every request).
pub fn parse_positive(s: &str) -> Result<u32, String> {
    match s.trim().parse::<i64>() {
        Ok(n) if n >= 1 && n <= i64::from(u32::MAX) => Ok(n as u32),
        Ok(n) if n < 1 => Err(format!(
            "{n} is not allowed: it must be at least 1 (0 or less would block every request)"
        )),
        Ok(_) => Err(format!("must be at most {}", u32::MAX)),
        Err(_) => Err(format!("{s:?} is not a whole number; write e.g. 100")),
    }
}

/// Parses a listen address: `IP:PORT`, `[IPv6]:PORT`, or `localhost:PORT` (127.0.0.1).
/// Other host names are refused rather than resolved: a name can map to several addresses.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Some(port) = s.strip_prefix("localhost:") {
        if let Ok(p) = port.parse::<u16>() {
            return Ok(SocketAddr::from(([127, 0, 0, 1], p)));
        }
    }
    Err(format!(
        "{s:?} is not IP:PORT; use an IP address, e.g. 127.0.0.1:8443 (this machine only), 0.0.0.0:8443 (all interfaces) or [::]:8443"
    ))
}

/// `--banned-kinds` default: [`crate::policy::DEFAULT_BANNED_KINDS`] joined (a test keeps
/// the two equal; clap needs a literal).
pub const DEFAULT_BANNED_KINDS_CSV: &str = "Deployment,StatefulSet,DaemonSet,ReplicaSet,\
ReplicationController,Job,CronJob,Pod,Service.serving.knative.dev,Configuration.serving.knative.dev,\
Revision.serving.knative.dev,ScaledJob.keda.sh,Role,RoleBinding,ClusterRole,ClusterRoleBinding";

/// Policy settings shared by `serve`, `review` and `check` (offline answers must match).
#[derive(Debug, Clone, Args)]
pub struct PolicyArgs {
    /// Kinds that may never be attached (compared case-insensitively): `Kind` for any API
    /// group, `Kind.group` for one group (e.g. `Service.serving.knative.dev`).
    #[arg(
        long,
        env = "BANNED_KINDS",
        value_delimiter = ',',
        default_value = DEFAULT_BANNED_KINDS_CSV
    )]
    pub banned_kinds: Vec<String>,
    /// When set, only these kinds may be attached (the deny-list still applies).
    #[arg(long, env = "ALLOWED_KINDS", value_delimiter = ',')]
    pub allowed_kinds: Option<Vec<String>>,
    /// Root domain for AppDomains, e.g. apps.example.com. Required by `serve` while the
    /// domains controller runs (--controllers includes domains).
    #[arg(long, env = "EXT_DOMAIN_ROOT")]
    pub domain_root: Option<String>,
    /// Default Knative Service for AppDomains whose spec.serviceRef.name is empty.
    #[arg(long, env = "RUNNER_KSERVICE", default_value = "runner")]
    pub runner_kservice: String,
    /// Names that may not be a tenant or extension part of an app domain.
    #[arg(
        long,
        env = "TETHER_RESERVED_NAMES",
        value_delimiter = ',',
        default_value = "www,api,admin,app,mail,ftp,ns,status,auth,login"
    )]
    pub reserved_names: Vec<String>,
    /// RBAC file (Roles, ClusterRoles, bindings) to answer access reviews offline.
    #[arg(long, env = "TETHER_RBAC_FILE")]
    pub rbac_file: Option<PathBuf>,
    /// Namespace of tether's service account (downward API in a pod).
    #[arg(long, env = "POD_NAMESPACE", default_value = "tether-system")]
    pub pod_namespace: String,
    /// tether's service account name (downward API in a pod).
    #[arg(long, env = "SERVICE_ACCOUNT_NAME", default_value = "tether")]
    pub service_account_name: String,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// HTTPS admission listener: IP:PORT (localhost means 127.0.0.1; port 0 picks a free
    /// port, logged in the ready line).
    #[arg(long, env = "TETHER_LISTEN", default_value = "0.0.0.0:8443", value_parser = parse_listen)]
    pub listen: SocketAddr,
    /// Plain-HTTP metrics listener (/metrics, /healthz, /readyz): IP:PORT.
    #[arg(long, env = "TETHER_METRICS_LISTEN", default_value = "0.0.0.0:9090", value_parser = parse_listen)]
    pub metrics_listen: SocketAddr,
    /// Serving certificate (PEM), reloaded when the file changes [default: /tls/tls.crt;
    /// with --standalone: <dev-certs-dir>/tls.crt].
    #[arg(long, env = "TETHER_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Serving key (PEM), reloaded when the file changes [default: /tls/tls.key; with
    /// --standalone: <dev-certs-dir>/tls.key].
    #[arg(long, env = "TETHER_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// How often the certificate files are checked for changes.
    #[arg(long, env = "TETHER_TLS_RELOAD_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub tls_reload_interval: Duration,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Create ClusterDomainClaims for AppDomains when missing.
    #[arg(long, env = "KNATIVE_AUTO_CREATE_CDC", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub auto_create_domain_claims: bool,
    /// Controllers to run: attached,domains or none.
    #[arg(
        long,
        env = "TETHER_CONTROLLERS",
        value_delimiter = ',',
        default_value = "attached,domains"
    )]
    pub controllers: Vec<String>,
    /// Use a Lease so only one replica reconciles.
    #[arg(long, env = "TETHER_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: bool,
    /// This replica's identity for leader election (downward API: metadata.name).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// Name of the coordination.k8s.io Lease in POD_NAMESPACE.
    #[arg(long, env = "TETHER_LEASE_NAME", default_value = "tether-controller")]
    pub lease_name: String,
    /// How long the Lease is valid without renewal; a crashed leader is replaced after this
    /// (plus a third of it as grace for clock skew). A clean shutdown releases it at once.
    #[arg(long, env = "TETHER_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// Namespaces tether's webhooks skip (the chart passes kube-system and
    /// namespaceSelector.excludeNamespaces); the controller does not act in them. tether's own
    /// namespace (POD_NAMESPACE) is always added.
    #[arg(
        long,
        env = "TETHER_SKIP_NAMESPACES",
        value_delimiter = ',',
        default_value = "kube-system"
    )]
    pub skip_namespaces: Vec<String>,
    /// How often healthy objects are reconciled again, repairing drift.
    #[arg(long, env = "TETHER_RESYNC_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub resync_interval: Duration,
    /// Client-side limit on tether's Kubernetes API requests per second (token bucket; every
    /// request counts, a watch when it opens). A request that would wait more than 10s for
    /// its turn fails and is retried with backoff. The default lets a 10k-object first pass
    /// (about 100 000 calls) through in under two minutes while staying far inside what API
    /// Priority and Fairness gives a service account (README, "Controller concurrency and API rate limit").
    #[arg(long, env = "TETHER_KUBE_API_QPS", default_value_t = crate::kube_rate::DEFAULT_QPS, value_parser = parse_positive)]
    pub kube_api_qps: u32,
    /// Requests that may go out at once above --kube-api-qps after an idle period (the token
    /// bucket's size).
    #[arg(long, env = "TETHER_KUBE_API_BURST", default_value_t = crate::kube_rate::DEFAULT_BURST, value_parser = parse_positive)]
    pub kube_api_burst: u32,
    /// Log format: json (one object per line, for clusters) or text (for people; no
    /// colours unless stderr is a terminal and NO_COLOR is unset).
    #[arg(long, env = "TETHER_LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,
    /// Log level or filter (error, warn, info, debug, trace, or a tracing filter such as
    /// info,tether=debug). RUST_LOG, when set, wins.
    #[arg(long, env = "TETHER_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Run without a cluster: dev certificates, built-in kinds, local RBAC (--rbac-file).
    #[arg(long, env = "TETHER_STANDALONE", default_value_t = false)]
    pub standalone: bool,
    /// Where --standalone keeps its dev CA and certificate.
    #[arg(long, env = "TETHER_DEV_CERTS_DIR", default_value = "certs/dev")]
    pub dev_certs_dir: PathBuf,
    /// Require every caller of the admission port to present a client certificate signed by
    /// a CA in this PEM file (kube-apiserver presents one through its admission kubeconfig;
    /// SECURITY.md, "Who may call"). Probes use the metrics port and are unaffected.
    #[arg(long, env = "TETHER_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// Directory of admission-stamp keys: a mounted Secret, every file one key of at least
    /// 32 bytes, its name the key id; the greatest id signs, all verify [default in a
    /// cluster: /admission-keys; standalone: no stamps]. See SECURITY.md, "The admission
    /// stamp".
    #[arg(long, env = "TETHER_ADMISSION_KEYS")]
    pub admission_keys: Option<PathBuf>,
    /// How long access review decisions are cached.
    #[arg(long, env = "TETHER_ACCESS_REVIEW_CACHE_TTL", default_value = "10s", value_parser = parse_duration)]
    pub access_review_cache_ttl: Duration,
    /// How long one SubjectAccessReview may take before it counts as failed (deny, 500).
    #[arg(long, env = "TETHER_ACCESS_REVIEW_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub access_review_timeout: Duration,
    /// Time a client gets for a request's HTTP/1.1 headers (from their first byte; checked
    /// every quarter of it) and for its body, each; slower clients are disconnected so they
    /// cannot hold connections (slowloris).
    #[arg(long, env = "TETHER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub read_timeout: Duration,
    /// Most connections held at once on the admission port. When full, the connection idle
    /// the longest is closed for a new one; only when all are serving a request is the new
    /// one refused (closed at once).
    #[arg(long, env = "TETHER_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Most connections one peer address may hold on the admission port (0: no cap besides
    /// --max-connections).
    #[arg(long, env = "TETHER_MAX_CONNECTIONS_PER_PEER", default_value_t = 512)]
    pub max_connections_per_peer: usize,
    /// Time a client gets to complete its TLS handshake.
    #[arg(long, env = "TETHER_TLS_HANDSHAKE_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    pub tls_handshake_timeout: Duration,
    /// A connection that serves no request this long is closed (HTTP/1.1 keep-alive between
    /// requests, HTTP/2 with no open stream), on both listeners.
    #[arg(long, env = "TETHER_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Most admission requests served at once; more get 503 with Retry-After. Must be below
    /// --max-connections.
    #[arg(long, env = "TETHER_MAX_REQUESTS", default_value_t = 256)]
    pub max_requests: usize,
    /// Most admission requests one peer address may have in flight; more get 429.
    #[arg(long, env = "TETHER_MAX_REQUESTS_PER_PEER", default_value_t = 128)]
    pub max_requests_per_peer: usize,
    /// Bytes all requests in flight may hold: bodies plus the estimated cost of parsing
    /// them (128 bytes per JSON value). A request that does not fit gets 503 with Retry-After.
    #[arg(long, env = "TETHER_MAX_INFLIGHT_BYTES", default_value_t = 48 * 1024 * 1024)]
    pub max_inflight_bytes: usize,
    /// The share of --max-inflight-bytes one peer address may hold; over it, 429.
    #[arg(long, env = "TETHER_MAX_INFLIGHT_BYTES_PER_PEER", default_value_t = 32 * 1024 * 1024)]
    pub max_inflight_bytes_per_peer: usize,
    /// Most JSON values (objects, arrays, members, elements) one review may hold; a body with
    /// more gets 413 before it is parsed.
    #[arg(long, env = "TETHER_MAX_JSON_VALUES", default_value_t = crate::budget::DEFAULT_MAX_VALUES)]
    pub max_json_values: usize,
    /// Most connections held at once on the metrics port (which also serves the probes).
    #[arg(long, env = "TETHER_METRICS_MAX_CONNECTIONS", default_value_t = 64)]
    pub metrics_max_connections: usize,
    /// After SIGTERM, keep serving (unready) this long before closing the listener.
    #[arg(long, env = "TETHER_SHUTDOWN_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,
    /// Time in-flight requests get to finish during shutdown.
    #[arg(long, env = "TETHER_SHUTDOWN_GRACE", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WebhookArg {
    Mutate,
    Validate,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 allowed, 1 denied (0 with --exit-zero), 2 a usage or input \
error (not a v1 AdmissionReview, unreadable file)."
)]
pub struct ReviewArgs {
    /// AdmissionReview JSON file, or - for standard input (on a terminal, prints this help
    /// instead of waiting).
    #[arg(
        short = 'f',
        long = "filename",
        env = "TETHER_REVIEW_FILENAME",
        default_value = "-"
    )]
    pub file: String,
    /// Which webhook path to answer as.
    #[arg(
        long,
        env = "TETHER_REVIEW_WEBHOOK",
        value_enum,
        default_value = "validate"
    )]
    pub webhook: WebhookArg,
    /// Exit 0 on a deny too (the behaviour before exit code 1 on deny).
    #[arg(long, env = "TETHER_REVIEW_EXIT_ZERO", default_value_t = false)]
    pub exit_zero: bool,
    /// Print response.patch as JSON Patch operations instead of base64 (for reading; the
    /// output is then no longer what the API server receives).
    #[arg(long, env = "TETHER_REVIEW_DECODE_PATCH", default_value_t = false)]
    pub decode_patch: bool,
    /// Largest input accepted, in bytes (the server's limit is 3 MiB).
    #[arg(long, env = "TETHER_MAX_INPUT_BYTES", default_value_t = 3 * 1024 * 1024)]
    pub max_input_bytes: usize,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 every object passed (allowed, or not sent to tether), 1 any \
object denied (or skipped, with --fail-on-skip), 2 a usage or input error (unreadable or empty \
input, duplicate YAML keys, .nan/.inf, an object without kind, apiVersion or name)."
)]
pub struct CheckArgs {
    /// Manifest file (multi-document YAML or JSON, `kind: List`), a directory (searched
    /// recursively for .yaml, .yml and .json), or - for standard input; repeatable.
    #[arg(
        short = 'f',
        long = "filename",
        env = "TETHER_CHECK_FILENAME",
        value_delimiter = ',',
        required = true
    )]
    pub file: Vec<String>,
    /// The user the objects are created as.
    #[arg(long, env = "TETHER_CHECK_USER", default_value = "tether-check")]
    pub user: String,
    /// Groups of that user (repeatable). system:authenticated is always added.
    #[arg(long = "group", env = "TETHER_CHECK_GROUPS", value_delimiter = ',')]
    pub groups: Vec<String>,
    /// Namespace for objects that do not set metadata.namespace.
    #[arg(
        short = 'n',
        long,
        env = "TETHER_CHECK_NAMESPACE",
        default_value = "default"
    )]
    pub namespace: String,
    /// Output: a table for people, or json / yaml with one entry per object (apiVersion,
    /// kind, namespace, name, decision, violations, warnings, patch) and a summary.
    #[arg(
        short = 'o',
        long,
        env = "TETHER_CHECK_OUTPUT",
        value_enum,
        default_value = "table"
    )]
    pub output: OutputFormat,
    /// Print the objects as they would be stored (mutations applied) as a YAML stream,
    /// instead of the results; denied objects are left out.
    #[arg(long, env = "TETHER_CHECK_MUTATED", default_value_t = false)]
    pub mutated: bool,
    /// Exit 1 when any object is skipped (not sent to tether), for strict CI.
    #[arg(long, env = "TETHER_CHECK_FAIL_ON_SKIP", default_value_t = false)]
    pub fail_on_skip: bool,
    /// A Helm values file for tether's chart (the one you install with): bannedKinds,
    /// allowedKinds, plainKinds, domainRoot, runnerKservice, reservedNames and
    /// namespaceSelector.excludeNamespaces apply as in the cluster; flags given on the
    /// command line or in the environment win.
    #[arg(long, env = "TETHER_CHECK_VALUES")]
    pub values: Option<PathBuf>,
    /// Namespaces the webhook configurations exclude (objects there are reported as
    /// skipped). kube-system and POD_NAMESPACE (tether's own) are always added.
    #[arg(
        long,
        env = "TETHER_SKIP_NAMESPACES",
        value_delimiter = ',',
        default_value = "kube-system"
    )]
    pub skip_namespaces: Vec<String>,
    /// Largest input accepted (all files together), in bytes.
    #[arg(long, env = "TETHER_MAX_INPUT_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_input_bytes: usize,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Argument ids given on the command line or in the environment (filled in by main,
    /// so that --values only replaces defaults).
    #[arg(skip)]
    pub explicit: std::collections::BTreeSet<String>,
}

#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Directory to write ca.crt, tls.crt and tls.key into.
    #[arg(long, env = "TETHER_CERTS_OUT")]
    pub out: PathBuf,
    /// DNS names (or IP addresses) of the serving certificate; repeatable.
    #[arg(
        long = "dns",
        env = "TETHER_CERTS_DNS",
        value_delimiter = ',',
        required = true
    )]
    pub dns: Vec<String>,
    /// Validity of the serving certificate in days (the CA gets twice as long).
    #[arg(long, env = "TETHER_CERTS_DAYS", default_value_t = 365)]
    pub days: u32,
    /// Overwrite an existing ca.crt, tls.crt or tls.key in --out (a new CA: every
    /// caBundle that trusted the old one must be updated).
    #[arg(long, env = "TETHER_CERTS_FORCE", default_value_t = false)]
    pub force: bool,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 the domain is valid, 1 the webhook would deny it (reserved \
name, invalid domain), 2 a usage error."
)]
pub struct DomainArgs {
    /// Tenant id (spec.tenantId of the AppDomain).
    #[arg(long, env = "TETHER_DOMAIN_TENANT")]
    pub tenant: String,
    /// Extension id (spec.extensionId of the AppDomain).
    #[arg(long, env = "TETHER_DOMAIN_EXTENSION")]
    pub extension: String,
    /// Root domain, e.g. apps.example.com (the same flag as `serve` and `check`).
    #[arg(long = "domain-root", visible_alias = "root", env = "EXT_DOMAIN_ROOT")]
    pub root: String,
    /// Names that may not be a tenant or extension part of an app domain.
    #[arg(
        long,
        env = "TETHER_RESERVED_NAMES",
        value_delimiter = ',',
        default_value = "www,api,admin,app,mail,ftp,ns,status,auth,login"
    )]
    pub reserved_names: Vec<String>,
    /// Explain how each part was derived.
    #[arg(short, long, env = "TETHER_DOMAIN_VERBOSE", default_value_t = false)]
    pub verbose: bool,
}

/// `tether version` output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VersionFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Output format.
    #[arg(
        short = 'o',
        long,
        env = "TETHER_VERSION_OUTPUT",
        value_enum,
        default_value = "text"
    )]
    pub output: VersionFormat,
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// Shell to print the completion script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Version, git commit and build date, set by build.rs.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const GIT_COMMIT: &str = env!("TETHER_BUILD_COMMIT");
pub const BUILD_DATE: &str = env!("TETHER_BUILD_DATE");
/// `--version` text.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("TETHER_BUILD_COMMIT"),
    ", built ",
    env!("TETHER_BUILD_DATE"),
    ")"
);

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// README: "every flag has an environment variable"; and every flag says what it does.
    #[test]
    fn every_flag_has_an_env_var_and_help() {
        let mut missing = Vec::new();
        let root = super::Cli::command();
        for sub in root.get_subcommands() {
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.is_positional() || matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_env().is_none() {
                    missing.push(format!("{} --{id}: no env", sub.get_name()));
                }
                if arg.get_help().is_none() {
                    missing.push(format!("{} --{id}: no help", sub.get_name()));
                }
            }
        }
        assert!(missing.is_empty(), "{missing:#?}");
    }

    #[test]
    fn listen_addresses() {
        for (input, want) in [
            ("127.0.0.1:8443", Ok("127.0.0.1:8443")),
            ("localhost:8443", Ok("127.0.0.1:8443")),
            ("[::1]:0", Ok("[::1]:0")),
        ] {
            assert_eq!(
                super::parse_listen(input).map(|a| a.to_string()),
                want.map(String::from)
            );
        }
        let e = super::parse_listen("example.com:8443").unwrap_err();
        assert!(e.contains("use an IP address, e.g. 127.0.0.1:8443"), "{e}");
    }

    #[test]
    fn kube_api_rate_flags() {
        use clap::Parser;
        let parse = |extra: &[&str]| {
            let mut argv = vec!["tether", "serve"];
            argv.extend_from_slice(extra);
            super::Cli::try_parse_from(argv).map(|c| match c.command {
                super::Command::Serve(a) => (a.kube_api_qps, a.kube_api_burst),
                _ => unreachable!("serve parses as serve"),
            })
        };
        assert_eq!(parse(&[]).unwrap(), (1000, 2000));
        assert_eq!(
            parse(&["--kube-api-qps", "50", "--kube-api-burst", "5"]).unwrap(),
            (50, 5)
        );
        for (flag, value, want) in [
            (
                "--kube-api-qps",
                "0",
                "0 is not allowed: it must be at least 1",
            ),
            (
                "--kube-api-burst",
                "-3",
                "-3 is not allowed: it must be at least 1",
            ),
            ("--kube-api-qps", "fast", "\"fast\" is not a whole number"),
        ] {
            // `--flag=-3`: a separate "-3" would read as an unknown short option.
            let e = parse(&[&format!("{flag}={value}")])
                .unwrap_err()
                .to_string();
            assert!(e.contains(flag) && e.contains(want), "{flag} {value}: {e}");
        }
    }

    #[test]
    fn banned_kinds_flag_default_is_the_policy_default() {
        assert_eq!(
            super::DEFAULT_BANNED_KINDS_CSV,
            crate::policy::DEFAULT_BANNED_KINDS.join(",")
        );
    }
}
