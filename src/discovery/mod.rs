//! Resolving an apiVersion/kind to its resource plural and scope (SPEC 5.1 rule 7).
//!
//! In a cluster, [`ApiResolver`] asks API discovery for the group/version's resource list and
//! caches it; a miss always asks again, so a CRD installed a minute ago is found on the next
//! request. Offline, [`BuiltinResolver`] answers from a table of common resources.

pub mod builtin;

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use async_trait::async_trait;
pub use builtin::ResourceInfo;
use thiserror::Error;

use crate::policy::quote_short;

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
    ) -> Result<ResourceInfo, ResolveError>;
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
    ) -> Result<ResourceInfo, ResolveError> {
        builtin::lookup(&api_version(group, version), kind)
            .map_err(|e| ResolveError::Unknown(e.to_string()))
    }
}

/// How long a group/version's resource list is trusted before a hit refreshes it too.
const FRESH_FOR: Duration = Duration::from_secs(300);

/// API discovery through the Kubernetes client, cached per group/version.
pub struct ApiResolver {
    client: kube::Client,
    cache: RwLock<HashMap<String, (Vec<ResourceInfo>, Instant)>>,
}

impl ApiResolver {
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            cache: RwLock::new(HashMap::new()),
        }
    }

    fn cached(&self, gv: &str, kind: &str) -> Option<ResourceInfo> {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        let (list, at) = cache.get(gv)?;
        if at.elapsed() > FRESH_FOR {
            return None;
        }
        list.iter().find(|r| r.kind == kind).cloned()
    }

    async fn fetch(&self, group: &str, version: &str) -> Result<Vec<ResourceInfo>, ResolveError> {
        let gv = api_version(group, version);
        let listed = if group.is_empty() {
            self.client.list_core_api_resources(version).await
        } else {
            self.client.list_api_group_resources(&gv).await
        };
        let list = match listed {
            Ok(l) => l,
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Vec::new()),
            Err(e) => {
                return Err(ResolveError::Failed {
                    api_version: gv,
                    detail: e.to_string(),
                })
            }
        };
        Ok(list
            .resources
            .into_iter()
            // "deployments/scale" and friends are subresources, not kinds of their own.
            .filter(|r| !r.name.contains('/'))
            .map(|r| ResourceInfo {
                group: group.to_string(),
                version: version.to_string(),
                kind: r.kind,
                plural: r.name,
                namespaced: r.namespaced,
            })
            .collect())
    }
}

#[async_trait]
impl KindResolver for ApiResolver {
    async fn resolve(
        &self,
        group: &str,
        version: &str,
        kind: &str,
    ) -> Result<ResourceInfo, ResolveError> {
        let gv = api_version(group, version);
        let (kind_shown, gv_shown) = (quote_short(kind, 80), quote_short(&gv, 80));
        if let Some(hit) = self.cached(&gv, kind) {
            return Ok(hit);
        }
        let list = self.fetch(group, version).await?;
        let found = list.iter().find(|r| r.kind == kind).cloned();
        let hint = list
            .iter()
            .find(|r| r.kind.eq_ignore_ascii_case(kind))
            .map(|r| {
                format!(
                    "; did you mean kind {:?} (kinds are case-sensitive)?",
                    r.kind
                )
            });
        let served = list.len();
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(gv.clone(), (list, Instant::now()));
        found.ok_or_else(|| {
            ResolveError::Unknown(if served == 0 {
                format!("the cluster does not serve apiVersion {gv_shown} (looked up kind {kind_shown} through API discovery); install the CRD or fix apiVersion")
            } else {
                format!(
                    "the cluster serves no kind {kind_shown} in apiVersion {gv_shown} (looked up through API discovery){}",
                    hint.unwrap_or_default()
                )
            })
        })
    }
}
