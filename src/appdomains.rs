//! Who holds which app domain (SPEC 5.4 item 3): a watched cache of AppDomains across all
//! namespaces in a cluster, the manifest's AppDomains offline.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};

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

/// A reflector over all AppDomains. Lookups scan the store: AppDomains number in the
/// thousands at most, and a scan of Arcs is microseconds.
pub struct WatchedAppDomains {
    store: Store<AppDomain>,
    ready: Arc<AtomicBool>,
    synced: tokio::sync::watch::Receiver<bool>,
}

impl WatchedAppDomains {
    pub fn start(client: Client) -> (Self, impl std::future::Future<Output = ()> + Send) {
        let (reader, writer) = reflector::store();
        let api: Api<AppDomain> = Api::all(client);
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        let reflect = reflector::reflector(writer, stream).for_each(|r| async move {
            if let Err(e) = r {
                tracing::warn!(error = %e, "AppDomain watch error; retrying with backoff");
            }
        });
        // Our own readiness signal: kube's `Store::wait_until_ready` serves one waiter well,
        // and both the startup gate and lookups need to know.
        let ready = Arc::new(AtomicBool::new(false));
        let (synced_tx, synced) = tokio::sync::watch::channel(false);
        let (r, flag) = (reader.clone(), ready.clone());
        let fut = async move {
            let mark = async move {
                if r.wait_until_ready().await.is_ok() {
                    tracing::info!("AppDomain cache synced");
                    flag.store(true, Ordering::Release);
                    let _ = synced_tx.send(true);
                }
            };
            tokio::join!(reflect, mark);
        };
        (
            Self {
                store: reader,
                ready,
                synced,
            },
            fut,
        )
    }

    /// Resolves once the first list has been loaded.
    pub async fn wait_until_ready(&self) {
        let mut rx = self.synced.clone();
        let _ = rx.wait_for(|v| *v).await;
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

impl DomainHolders for WatchedAppDomains {
    fn holders(&self, domain: &str) -> Vec<Holder> {
        self.store
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
