//! Who holds which app domain (SPEC 5.4 item 3): a watched cache of AppDomains across all
//! namespaces in a cluster, the manifest's AppDomains offline.

use std::collections::HashMap;
use std::sync::RwLock;

use kube::{Api, Client};

use crate::watched::Watched;

use crate::crd::AppDomain;
use crate::policy::appdomain::Holder;

pub trait DomainHolders: Send + Sync {
    /// Every AppDomain whose `spec.domain` is `domain`.
    fn holders(&self, domain: &str) -> Vec<Holder>;
}

/// AppDomains known offline: `tether check` adds each AppDomain it admits, so a later object
/// in the same manifest sees it as the cluster would.
#[derive(Default)]
pub struct StaticDomains(RwLock<HashMap<String, Vec<Holder>>>);

impl StaticDomains {
    pub fn insert(&self, domain: String, holder: Holder) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(domain)
            .or_default()
            .push(holder);
    }
}

impl DomainHolders for StaticDomains {
    fn holders(&self, domain: &str) -> Vec<Holder> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(domain)
            .cloned()
            .unwrap_or_default()
    }
}

/// A watched cache of all AppDomains. Lookups scan it: AppDomains number in the thousands
/// at most, and a scan of Arcs is microseconds.
pub struct WatchedAppDomains(Watched<AppDomain>);

impl WatchedAppDomains {
    pub fn start(client: Client) -> (Self, impl std::future::Future<Output = ()> + Send) {
        let (w, fut) = Watched::start(Api::all(client), "AppDomain", |a: &mut AppDomain| {
            a.metadata.managed_fields = None;
        });
        (Self(w), fut)
    }

    pub async fn wait_until_ready(&self) {
        self.0.wait_until_ready().await
    }
}

impl DomainHolders for WatchedAppDomains {
    fn holders(&self, domain: &str) -> Vec<Holder> {
        self.0
            .store()
            .state()
            .iter()
            .filter(|a| a.spec.domain == domain)
            .map(|a| Holder {
                namespace: a.metadata.namespace.clone().unwrap_or_default(),
                name: a.metadata.name.clone().unwrap_or_default(),
                tenant_id: a.spec.tenant_id.clone(),
                extension_id: a.spec.extension_id.clone(),
            })
            .collect()
    }
}
