//! Resolving an apiVersion/kind to its resource plural and scope (SPEC 5.1 rule 7).
//!
//! In a cluster, [`ApiResolver`] asks API discovery for the group/version's resource list and
//! caches it (bounded, [`DiscoveryLimits`]); a miss is remembered only briefly, so a CRD
//! installed a few seconds ago is found while a burst of reviews naming an unknown kind
//! costs one discovery call. Offline, [`BuiltinResolver`] answers from a table of common resources.

pub mod builtin;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
pub use builtin::ResourceInfo;
use thiserror::Error;

use crate::text::quote_short;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ResolveError {
    /// The kind does not exist (in the cluster, or in the built-in table offline).
    #[error("{0}")]
    Unknown(String),
    /// Discovery itself failed; callers fail closed with 500.
    #[error("API discovery for {api_version} failed: {detail}")]
    Failed { api_version: String, detail: String },
}

#[async_trait]
pub trait KindResolver: Send + Sync {
    async fn resolve(
        &self,
        group: &str,
        version: &str,
        kind: &str,
    ) -> Result<Arc<ResourceInfo>, ResolveError>;
}

/// `group/version`, or just `version` for the core group.
pub fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// Offline resolution from the built-in table.
pub struct BuiltinResolver;

#[async_trait]
impl KindResolver for BuiltinResolver {
    async fn resolve(
        &self,
        group: &str,
        version: &str,
        kind: &str,
    ) -> Result<Arc<ResourceInfo>, ResolveError> {
        builtin::lookup_shared(group, version, kind)
            .map_err(|e| ResolveError::Unknown(e.to_string()))
    }
}

/// Bounds of [`ApiResolver`]'s cache.
#[derive(Debug, Clone, Copy)]
pub struct DiscoveryLimits {
    /// How long a group/version's resource list answers a kind it contains.
    pub fresh_for: Duration,
    /// How long a miss (unknown group/version, or a kind its list lacks) is answered from
    /// the cache. Short, so a CRD installed a moment ago is found soon; non-zero, so a burst
    /// of reviews naming an unknown apiVersion costs one discovery call, not one each.
    pub miss_ttl: Duration,
    /// Most group/versions kept; the oldest is evicted beyond it. Every distinct apiVersion a
    /// caller names would otherwise stay in memory forever.
    pub max_group_versions: usize,
}

impl Default for DiscoveryLimits {
    fn default() -> Self {
        Self {
            fresh_for: Duration::from_secs(300),
            miss_ttl: Duration::from_secs(5),
            max_group_versions: 512,
        }
    }
}

/// Longest API group a cluster can serve (a DNS-1123 subdomain) and longest version (a
/// DNS-1123 label). Anything longer is answered without asking the API server.
const MAX_GROUP_LEN: usize = 253;
const MAX_VERSION_LEN: usize = 63;
/// Concurrent first lookups of one group/version wait for a single discovery call; the
/// locks are striped by group/version so unrelated lookups rarely wait on each other.
const FETCH_STRIPES: usize = 16;

/// API discovery through the Kubernetes client, cached per group/version with a bound
/// ([`DiscoveryLimits`]).
pub struct ApiResolver {
    client: kube::Client,
    cache: RwLock<HashMap<String, (Kinds, Instant)>>,
    fetching: [tokio::sync::Mutex<()>; FETCH_STRIPES],
    limits: DiscoveryLimits,
    /// Counts discovery calls (`tether_discovery_requests_total`) when set.
    metrics: Option<crate::metrics::Metrics>,
}

/// A group/version's kinds, shared with every answer given from them.
type Kinds = Vec<Arc<ResourceInfo>>;

/// What the cache knows about a kind.
enum Cached {
    Found(Arc<ResourceInfo>),
    /// A recent answer without the kind: (the list, for hints).
    Missing(Kinds),
}

impl ApiResolver {
    pub fn new(client: kube::Client) -> Self {
        Self::with_limits(client, DiscoveryLimits::default())
    }

    pub fn with_limits(client: kube::Client, limits: DiscoveryLimits) -> Self {
        Self {
            client,
            cache: RwLock::new(HashMap::new()),
            fetching: std::array::from_fn(|_| tokio::sync::Mutex::new(())),
            limits,
            metrics: None,
        }
    }

    /// Counts every discovery call in `tether_discovery_requests_total{result}`.
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn count(&self, result: &'static str) {
        if let Some(m) = &self.metrics {
            m.discovery_requests.with_label_values(&[result]).inc();
        }
    }

    /// Group/versions currently cached (at most `max_group_versions`).
    pub fn cached_group_versions(&self) -> usize {
        self.cache.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn cached(&self, gv: &str, kind: &str) -> Option<Cached> {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        let (list, at) = cache.get(gv)?;
        let age = at.elapsed();
        match list.iter().find(|r| r.kind == kind) {
            Some(hit) if age <= self.limits.fresh_for => Some(Cached::Found(hit.clone())),
            None if age <= self.limits.miss_ttl => Some(Cached::Missing(list.clone())),
            _ => None,
        }
    }

    fn store(&self, gv: String, list: Kinds) {
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        let max = self.limits.max_group_versions.max(1);
        if !cache.contains_key(&gv) && cache.len() >= max {
            let fresh_for = self.limits.fresh_for;
            cache.retain(|_, (_, at)| at.elapsed() <= fresh_for);
            while cache.len() >= max {
                let Some(oldest) = cache
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                cache.remove(&oldest);
            }
        }
        cache.insert(gv, (list, Instant::now()));
    }

    fn stripe(&self, gv: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        gv.hash(&mut h);
        &self.fetching[(h.finish() as usize) % FETCH_STRIPES]
    }

    async fn fetch(&self, group: &str, version: &str) -> Result<Kinds, ResolveError> {
        let gv = api_version(group, version);
        let listed = if group.is_empty() {
            self.client.list_core_api_resources(version).await
        } else {
            self.client.list_api_group_resources(&gv).await
        };
        let list = match listed {
            Ok(l) => {
                self.count("success");
                l
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                self.count("not_found");
                return Ok(Vec::new());
            }
            Err(e) => {
                self.count("error");
                return Err(ResolveError::Failed {
                    api_version: gv,
                    detail: e.to_string(),
                });
            }
        };
        Ok(list
            .resources
            .into_iter()
            // "deployments/scale" and friends are subresources, not kinds of their own.
            .filter(|r| !r.name.contains('/'))
            .map(|r| {
                Arc::new(ResourceInfo {
                    group: group.to_string(),
                    version: version.to_string(),
                    kind: r.kind,
                    plural: r.name,
                    namespaced: r.namespaced,
                })
            })
            .collect())
    }
}

/// The Unknown error for a kind missing from `list` (the group/version's resources).
fn not_served(list: &[Arc<ResourceInfo>], gv: &str, kind: &str) -> ResolveError {
    let (kind_shown, gv_shown) = (quote_short(kind, 80), quote_short(gv, 80));
    if list.is_empty() {
        return ResolveError::Unknown(format!("the cluster does not serve apiVersion {gv_shown} (looked up kind {kind_shown} through API discovery); install the CRD or fix apiVersion"));
    }
    let hint = list
        .iter()
        .find(|r| r.kind.eq_ignore_ascii_case(kind))
        .map(|r| {
            format!(
                "; did you mean kind {:?} (kinds are case-sensitive)?",
                r.kind
            )
        });
    ResolveError::Unknown(format!(
        "the cluster serves no kind {kind_shown} in apiVersion {gv_shown} (looked up through API discovery){}",
        hint.unwrap_or_default()
    ))
}

#[async_trait]
impl KindResolver for ApiResolver {
    async fn resolve(
        &self,
        group: &str,
        version: &str,
        kind: &str,
    ) -> Result<Arc<ResourceInfo>, ResolveError> {
        let gv = api_version(group, version);
        if group.len() > MAX_GROUP_LEN || version.len() > MAX_VERSION_LEN {
            // No cluster can serve it: answer without a discovery call or a cache entry.
            return Err(not_served(&[], &gv, kind));
        }
        let answer = |c: Cached| match c {
            Cached::Found(info) => Ok(info),
            Cached::Missing(list) => Err(not_served(&list, &gv, kind)),
        };
        if let Some(c) = self.cached(&gv, kind) {
            return answer(c);
        }
        // One discovery call per group/version at a time; whoever waited finds its answer.
        let _fetching = self.stripe(&gv).lock().await;
        if let Some(c) = self.cached(&gv, kind) {
            return answer(c);
        }
        let list = self.fetch(group, version).await?;
        let found = list.iter().find(|r| r.kind == kind).cloned();
        let result = found.ok_or_else(|| not_served(&list, &gv, kind));
        self.store(gv.clone(), list);
        result
    }
}
