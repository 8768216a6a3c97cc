//! Building the admission handlers from configuration: one place for `serve` (in a cluster or
//! standalone) and the offline commands `review` and `check`, so `offline` does not depend on
//! `app` (the server process) for it.

use std::sync::Arc;
use std::time::Duration;

use crate::admission::handlers::Handlers;
use crate::appdomains::DomainHolders;
use crate::authz::cache::CachedReviewer;
use crate::authz::{AccessReviewer, AllowAll, RbacFileReviewer};
use crate::config::PolicyConfig;
use crate::discovery::{BuiltinResolver, KindResolver};
use crate::metrics::Metrics;
use crate::stamp::KeyRing;
use crate::workloads::DeploymentSelectors;

/// The warning on every response in standalone mode (SPEC 7), which says how access reviews
/// are answered.
pub fn standalone_warning(rbac_file: bool) -> String {
    if rbac_file {
        "tether runs standalone (no cluster): kinds resolve from a built-in table, access reviews from --rbac-file".into()
    } else {
        "tether runs standalone (no cluster): kinds resolve from a built-in table and access reviews are NOT evaluated (all allowed); pass --rbac-file to evaluate them".into()
    }
}

/// The handlers for `policy` with the given kind resolver, access reviewer, watched (or
/// static) Deployments and AppDomains, and stamp keys (`None` offline: nothing is stamped).
/// `policy.rbac` is not used here: it has already become `reviewer`.
pub fn handlers(
    policy: PolicyConfig,
    resolver: Arc<dyn KindResolver>,
    reviewer: Arc<CachedReviewer>,
    deployments: Arc<dyn DeploymentSelectors>,
    appdomains: Arc<dyn DomainHolders>,
    stamps: Option<Arc<KeyRing>>,
) -> Handlers {
    Handlers {
        kinds: policy.kinds,
        resolver,
        reviewer,
        tether: policy.tether,
        deployments,
        domains: policy.domains,
        appdomains,
        stamps,
    }
}

/// Handlers for offline use (`serve --standalone`, `review`, `check`), with the standalone
/// warning to add to every response.
pub fn offline_handlers(
    mut cfg: PolicyConfig,
    deployments: Arc<dyn DeploymentSelectors>,
    appdomains: Arc<dyn DomainHolders>,
    metrics: &Metrics,
) -> (Handlers, String) {
    let warning = standalone_warning(cfg.rbac.is_some());
    let inner: Arc<dyn AccessReviewer> = match cfg.rbac.take() {
        Some(f) => Arc::new(RbacFileReviewer(f)),
        None => Arc::new(AllowAll),
    };
    // Local evaluation is cheap and exact: no caching needed.
    let reviewer = Arc::new(CachedReviewer::new(
        inner,
        Duration::ZERO,
        Duration::ZERO,
        metrics.clone(),
    ));
    let handlers = handlers(
        cfg,
        Arc::new(BuiltinResolver),
        reviewer,
        deployments,
        appdomains,
        None,
    );
    (handlers, warning)
}
