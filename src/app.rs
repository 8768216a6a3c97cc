//! Wiring: turns parsed command lines into running servers (`serve`) or offline answers
//! (`review`). Kept apart from `cli` so the flag definitions stay readable.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use crate::admission::Admission;
use crate::appdomains::{StaticDomains, WatchedAppDomains};
use crate::authz::cache::CachedReviewer;
use crate::authz::sar::SarReviewer;
use crate::authz::AccessReviewer;
use crate::cli::ServeArgs;
use crate::config::PolicyConfig;
use crate::controller::admitted::SkipNamespaces;
use crate::controller::leader::LeaderConfig;
use crate::controller::{Context as ControllerContext, Enabled, ReconcilePolicy, Settings};
use crate::discovery::{ApiResolver, KindResolver};
use crate::metrics::Metrics;
use crate::server::{AdmissionServer, MetricsServer, TransportOptions};
use crate::stamp::KeyRing;
use crate::tls::CertStore;
use crate::workloads::WatchedDeployments;

// Handler wiring shared with `offline` lives in `wiring`; re-exported for existing callers.
pub use crate::wiring::{offline_handlers, standalone_warning};

pub fn run_serve(args: ServeArgs) -> ExitCode {
    // Held to the end: dropping it writes out the queued log lines.
    let log = crate::logging::init(args.log_format, &args.log_level);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tether serve: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Our message plus its direct cause ("no cluster configuration: <why>"); the
            // deeper causes repeat what the direct one already says.
            // Each OS error once: skip the cause when our message already quotes it.
            let msg = match e.chain().nth(1) {
                Some(cause) if !e.to_string().contains(&cause.to_string()) => {
                    format!("{e}: {cause}")
                }
                _ => e.to_string(),
            };
            tracing::error!(error = %msg, "tether serve failed");
            // The log lines first (they are written in batches), so that this plain
            // message is the last thing on stderr.
            drop(log);
            eprintln!("tether serve: {msg}");
            ExitCode::from(1)
        }
    }
}

/// The transport budgets from the flags, checked to fit together.
pub fn transport_options(args: &ServeArgs) -> anyhow::Result<TransportOptions> {
    let opts = TransportOptions {
        max_connections: args.max_connections.max(1),
        max_connections_per_peer: args.max_connections_per_peer,
        handshake_timeout: args.tls_handshake_timeout,
        header_read_timeout: args.read_timeout,
        body_read_timeout: args.read_timeout,
        idle_timeout: args.idle_timeout,
        requests: crate::budget::RequestLimits {
            max_requests: args.max_requests,
            max_requests_per_peer: args.max_requests_per_peer,
            max_bytes: args.max_inflight_bytes,
            max_bytes_per_peer: args.max_inflight_bytes_per_peer,
        },
        max_json_values: args.max_json_values,
        metrics_max_connections: args.metrics_max_connections.max(1),
        shutdown_delay: args.shutdown_delay,
        shutdown_grace: args.shutdown_grace,
        ..TransportOptions::default()
    };
    opts.validate().map_err(anyhow::Error::msg)?;
    Ok(opts)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    // Configuration first: a bad flag stops start-up before anything touches files.
    let policy = PolicyConfig::from_args(&args.policy)?;
    let (banned, allowed, empty_ban_list) = crate::config::describe_kind_policy(&args.policy);
    if let Some(w) = empty_ban_list {
        tracing::warn!("{w}");
    }
    tracing::info!(
        banned_kinds = %banned,
        allowed_kinds = %allowed,
        mode = if args.standalone { "standalone" } else { "cluster" },
        rbac_file = args.policy.rbac_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        domain_root = args.policy.domain_root.as_deref().unwrap_or(""),
        version = crate::cli::LONG_VERSION,
        "policy in effect"
    );
    let opts = transport_options(&args)?;
    let enabled = Enabled::parse(&args.controllers).map_err(anyhow::Error::msg)?;
    crate::config::require_domain_root(enabled.domains, args.standalone, &policy.domains)?;
    let metrics = Metrics::new();
    let (cert, key, _) = match (args.standalone, &args.tls_cert, &args.tls_key) {
        (_, Some(c), Some(k)) => (c.clone(), k.clone(), None),
        (true, None, None) => {
            let (c, k, created) = crate::certs::ensure_dev_certs(&args.dev_certs_dir)?;
            if created {
                tracing::info!(dir = %args.dev_certs_dir.display(), "created dev CA and localhost certificate");
            }
            (c, k, None)
        }
        (true, _, _) => anyhow::bail!(
            "--tls-cert and --tls-key go together; give both, or neither to use the dev certificate"
        ),
        (false, c, k) => {
            let (c, k) = (
                c.clone().unwrap_or_else(|| "/tls/tls.crt".into()),
                k.clone().unwrap_or_else(|| "/tls/tls.key".into()),
            );
            if args.tls_cert.is_none() && !c.exists() {
                anyhow::bail!(
                    "no serving certificate at {} (the default --tls-cert); to try tether on this machine, run `tether serve --standalone` (dev certificates, no cluster); to run it in a cluster, install the Helm chart (charts/tether), which mounts one; or pass --tls-cert and --tls-key",
                    c.display()
                );
            }
            (c, k, None::<String>)
        }
    };
    let mode_warning: Option<String> = None;
    let store = Arc::new(CertStore::open(&cert, &key, metrics.clone())?);
    let client_ca = match &args.client_ca {
        Some(path) => {
            let v = crate::tls::client_verifier(path)?;
            tracing::info!(client_ca = %path.display(), "admission callers must present a client certificate");
            Some(v)
        }
        None => None,
    };
    let tls = store.server_config(client_ca)?;
    let (handlers, mode_warning, cluster) = if args.standalone {
        let (mut h, w) = offline_handlers(
            policy,
            Arc::new(crate::workloads::StaticDeployments::default()),
            Arc::new(StaticDomains::default()),
            &metrics,
        );
        tracing::warn!("{w}");
        if let Some(dir) = &args.admission_keys {
            h.stamps = Some(Arc::new(KeyRing::from_dir(dir)?));
        }
        (h, Some(w), None)
    } else {
        let config = kube::Config::infer().await.context(
            "no Kubernetes cluster configuration found (in-cluster service account or KUBECONFIG); to try tether without a cluster, run `tether serve --standalone`; to run it in a cluster, install the Helm chart (charts/tether)",
        )?;
        let lease_client = lease_client(config.clone())?;
        let client = rate_limited_client(config, &args)?;
        // Without keys the controller could not tell admitted objects from unchecked ones.
        let keys_dir = args
            .admission_keys
            .clone()
            .unwrap_or_else(|| "/admission-keys".into());
        let stamps = Arc::new(KeyRing::from_dir(&keys_dir).map_err(|e| {
            anyhow::anyhow!(
                "{e}; in a cluster tether needs admission-stamp keys (the chart mounts the Secret \
                 <release>-admission-keys there; without the chart, mount a Secret holding one \
                 key of at least 32 random bytes and pass its directory as --admission-keys)"
            )
        })?);
        tracing::info!(keys = ?stamps.ids(), "admission-stamp keys loaded");
        let (watched, run) = WatchedDeployments::start(client.clone());
        tokio::spawn(run);
        let watched = Arc::new(watched);
        let (domains, run) = WatchedAppDomains::start(client.clone());
        tokio::spawn(run);
        let domains = Arc::new(domains);
        let inner: Arc<dyn AccessReviewer> =
            Arc::new(SarReviewer::new(client.clone(), args.access_review_timeout));
        let resolver: Arc<dyn KindResolver> =
            Arc::new(ApiResolver::new(client.clone()).with_metrics(metrics.clone()));
        let reviewer = Arc::new(CachedReviewer::new(
            inner,
            args.access_review_cache_ttl,
            // A grant should take effect quickly: denials are cached for a fifth as long.
            args.access_review_cache_ttl / 5,
            metrics.clone(),
        ));
        let reconcile_policy = ReconcilePolicy {
            keys: stamps.clone(),
            kinds: policy.kinds.clone(),
            reviewer: reviewer.clone(),
            tether: policy.tether.clone(),
            skip: SkipNamespaces::new(&args.skip_namespaces, &args.policy.pod_namespace),
        };
        tracing::info!(
            skip_namespaces = ?reconcile_policy.skip.iter().collect::<Vec<_>>(),
            "the controller skips the namespaces the webhooks skip"
        );
        let h = crate::wiring::handlers(
            policy,
            resolver.clone(),
            reviewer,
            watched.clone(),
            domains.clone(),
            Some(stamps.clone()),
        );
        let cluster = Cluster {
            client,
            lease_client,
            policy: reconcile_policy,
            resolver,
            deployments: watched,
            appdomains: domains,
        };
        (h, mode_warning, Some(cluster))
    };
    let admission = Admission::new(metrics.clone(), handlers, mode_warning);

    let ready = Arc::new(AtomicBool::new(false));
    let (trigger, signal) = crate::shutdown::channel();
    let msrv = MetricsServer::bind(
        args.metrics_listen,
        metrics.clone(),
        ready.clone(),
        opts.clone(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("--metrics-listen {}: {e}", args.metrics_listen))?;
    let server = AdmissionServer::bind(args.listen, tls, admission, ready.clone(), opts)
        .await
        .map_err(|e| anyhow::anyhow!("--listen {}: {e}", args.listen))?;
    let listen = server.local_addr()?;
    let metrics_listen = msrv.local_addr()?;
    let watcher = tokio::spawn(
        store
            .clone()
            .watch(args.tls_reload_interval, signal.clone()),
    );
    let admission_task = tokio::spawn(server.run(signal.clone()));
    let metrics_task = tokio::spawn(msrv.run(signal.clone()));
    let mut controllers = None;
    if let Some(c) = cluster {
        // Injection and domain allocation read the caches: not ready until they are.
        tracing::info!("waiting for the Deployment and AppDomain caches to sync");
        tokio::join!(
            c.deployments.wait_until_ready(),
            c.appdomains.wait_until_ready()
        );
        if enabled.any() {
            controllers = Some(tokio::spawn(run_controllers(
                Clients {
                    api: c.client.clone(),
                    lease: c.lease_client.clone(),
                },
                c.resolver.clone(),
                c.policy,
                metrics.clone(),
                &args,
                enabled,
                signal.clone(),
            )));
        }
    }
    ready.store(true, Ordering::Release);
    tracing::info!(
        %listen,
        %metrics_listen,
        standalone = args.standalone,
        startup_ms = started.elapsed().as_secs_f64() * 1000.0,
        "tether ready"
    );

    wait_for_termination().await;
    ready.store(false, Ordering::Release);
    tracing::info!(
        delay_ms = args.shutdown_delay.as_millis() as u64,
        "shutting down: unready, draining in-flight requests"
    );
    if !args.shutdown_delay.is_zero() {
        tokio::time::sleep(args.shutdown_delay).await;
    }
    trigger.fire();
    let _ = admission_task.await;
    let _ = metrics_task.await;
    let _ = watcher.await;
    if let Some(c) = controllers {
        let _ = c.await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// What serving in a cluster keeps around besides the handlers.
struct Cluster {
    client: kube::Client,
    /// The Lease's client, outside the shared rate-limit bucket ([`lease_client`]).
    lease_client: kube::Client,
    policy: ReconcilePolicy,
    resolver: Arc<dyn KindResolver>,
    deployments: Arc<WatchedDeployments>,
    appdomains: Arc<WatchedAppDomains>,
}

/// The reconcilers' client (rate-limited) and the Lease's (its own bucket, [`lease_client`]).
struct Clients {
    api: kube::Client,
    lease: kube::Client,
}

/// Runs the enabled reconcilers: under the Lease with `--leader-elect`, else directly.
fn run_controllers(
    clients: Clients,
    resolver: Arc<dyn KindResolver>,
    policy: ReconcilePolicy,
    metrics: Metrics,
    args: &ServeArgs,
    enabled: Enabled,
    shutdown: crate::shutdown::Signal,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    // Outside a pod there is no name; the process id keeps two local runs apart.
    let identity = args
        .pod_name
        .clone()
        .unwrap_or_else(|| format!("tether-{}", std::process::id()));
    let settings = Settings {
        auto_create_domain_claims: args.auto_create_domain_claims,
        resync: args.resync_interval,
        ..Settings::default()
    };
    let ctx = Arc::new(
        ControllerContext::new(
            clients.api.clone(),
            metrics.clone(),
            resolver,
            Some(identity.clone()),
            settings,
        )
        .with_policy(policy),
    );
    let leader = args.leader_elect.then(|| LeaderConfig {
        namespace: args.policy.pod_namespace.clone(),
        lease_name: args.lease_name.clone(),
        identity,
        duration_s: args.lease_duration.as_secs().max(1),
        grace_s: (args.lease_duration.as_secs() / 3).max(1),
    });
    async move {
        match leader {
            Some(cfg) => {
                let work = |stop| crate::controller::run_enabled(ctx.clone(), enabled, stop);
                if let Err(e) =
                    crate::controller::leader::lead(clients.lease, cfg, metrics, shutdown, work)
                        .await
                {
                    tracing::error!(error = %e, "leader election failed; this replica no longer reconciles");
                }
            }
            None => {
                let work = |stop| crate::controller::run_enabled(ctx.clone(), enabled, stop);
                crate::controller::leader::run_unelected(metrics, shutdown, work).await;
            }
        }
    }
}

async fn wait_for_termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The leader-election Lease's client: its own small bucket ([`crate::kube_rate::LEASE_LIMITS`]),
/// not the shared one, so renewals never queue behind throttled reconcile traffic (which
/// would lose the Lease exactly when tether is busiest; see [`crate::kube_rate`]).
fn lease_client(config: kube::Config) -> anyhow::Result<kube::Client> {
    limited_client(config, crate::kube_rate::LEASE_LIMITS, "for the Lease ")
}

/// A Kubernetes client whose every request takes a token from its own bucket of `limits`.
fn limited_client(
    config: kube::Config,
    limits: crate::kube_rate::Limits,
    purpose: &str,
) -> anyhow::Result<kube::Client> {
    Ok(kube::client::ClientBuilder::try_from(config)
        .with_context(|| {
            format!("cannot build the Kubernetes client {purpose}from the cluster configuration")
        })?
        .with_layer(&crate::kube_rate::RateLimitLayer::new(limits))
        .build())
}

/// The Kubernetes client, every request through the client-side rate limit
/// (`--kube-api-qps`, `--kube-api-burst`; [`crate::kube_rate`]).
fn rate_limited_client(config: kube::Config, args: &ServeArgs) -> anyhow::Result<kube::Client> {
    let limits = crate::kube_rate::Limits {
        qps: std::num::NonZeroU32::new(args.kube_api_qps)
            .context("--kube-api-qps must be at least 1")?,
        burst: std::num::NonZeroU32::new(args.kube_api_burst)
            .context("--kube-api-burst must be at least 1")?,
        max_wait: crate::kube_rate::DEFAULT_MAX_WAIT,
    };
    tracing::info!(
        qps = args.kube_api_qps,
        burst = args.kube_api_burst,
        "Kubernetes API client rate limit"
    );
    limited_client(config, limits, "")
}
