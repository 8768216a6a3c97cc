//! Wiring: turns parsed command lines into running servers (`serve`) or offline answers
//! (`review`). Kept apart from `cli` so the flag definitions stay readable.

use std::io::Read;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::admission::handlers::Handlers;
use crate::admission::{Admission, Webhook};
use crate::cli::{ReviewArgs, ServeArgs, WebhookArg};
use crate::metrics::Metrics;
use crate::server::{AdmissionServer, MetricsServer, TransportOptions};
use crate::tls::CertStore;

/// The warning on every response in standalone mode (SPEC 7).
pub const STANDALONE_WARNING: &str =
    "tether runs standalone (no cluster): kinds resolve from a built-in table and access reviews from the local RBAC file or are allowed";

pub fn run_serve(args: ServeArgs) -> ExitCode {
    crate::logging::init(args.log_format);
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
            tracing::error!(error = %e, "tether serve failed");
            eprintln!("tether serve: {e}");
            ExitCode::from(1)
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let metrics = Metrics::new();
    let (cert, key, mode_warning) = match (args.standalone, &args.tls_cert, &args.tls_key) {
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
        (false, c, k) => (
            c.clone().unwrap_or_else(|| "/tls/tls.crt".into()),
            k.clone().unwrap_or_else(|| "/tls/tls.key".into()),
            None::<String>,
        ),
    };
    let mode_warning = if args.standalone {
        tracing::warn!("{STANDALONE_WARNING}");
        Some(STANDALONE_WARNING.to_string())
    } else {
        mode_warning
    };
    let store = Arc::new(CertStore::open(&cert, &key, metrics.clone())?);
    let tls = store.server_config()?;
    let handlers = Handlers::default();
    let admission = Admission::new(metrics.clone(), handlers, mode_warning);

    let ready = Arc::new(AtomicBool::new(false));
    let (trigger, signal) = crate::shutdown::channel();
    let opts = TransportOptions {
        max_connections: args.max_connections.max(1),
        shutdown_delay: args.shutdown_delay,
        shutdown_grace: args.shutdown_grace,
        ..TransportOptions::default()
    };
    let server = AdmissionServer::bind(args.listen, tls, admission, ready.clone(), opts)
        .await
        .map_err(|e| anyhow::anyhow!("--listen {}: {e}", args.listen))?;
    let msrv = MetricsServer::bind(args.metrics_listen, metrics.clone(), ready.clone())
        .await
        .map_err(|e| anyhow::anyhow!("--metrics-listen {}: {e}", args.metrics_listen))?;
    let listen = server.local_addr()?;
    let metrics_listen = msrv.local_addr()?;
    let watcher = tokio::spawn(
        store
            .clone()
            .watch(args.tls_reload_interval, signal.clone()),
    );
    let admission_task = tokio::spawn(server.run(signal.clone()));
    let metrics_task = tokio::spawn(msrv.run(signal.clone()));
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
    tracing::info!("stopped");
    Ok(())
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

/// `tether review`: AdmissionReview in, AdmissionReview out, decided offline.
pub fn run_review(args: ReviewArgs) -> ExitCode {
    let mut body = Vec::new();
    let read = if args.file == "-" {
        std::io::stdin().read_to_end(&mut body).map(|_| ())
    } else {
        std::fs::read(&args.file).map(|b| body = b)
    };
    if let Err(e) = read {
        eprintln!("tether review: cannot read {}: {e}", args.file);
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tether review: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let admission = Admission::new(
        Metrics::new(),
        Handlers::default(),
        Some(STANDALONE_WARNING.to_string()),
    );
    let webhook = match args.webhook {
        WebhookArg::Mutate => Webhook::Mutate,
        WebhookArg::Validate => Webhook::Validate,
    };
    match rt.block_on(admission.review(webhook, &body, Duration::from_secs(10))) {
        Ok(answer) => {
            println!("{}", String::from_utf8_lossy(&answer.body));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tether review: {e}");
            ExitCode::from(2)
        }
    }
}
