//! Where Deployments' selector labels come from (SPEC 5.3): a watched cache in a cluster, the
//! manifest itself offline (`tether check`). Never a GET per admission request.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(BTreeMap<String, String>),
    NotFound,
    /// The cache has not finished its first list yet.
    NotReady,
}

pub trait DeploymentSelectors: Send + Sync {
    fn selector(&self, namespace: &str, name: &str) -> Lookup;
}

/// Deployments known up front (offline: the Deployments in the checked manifest).
#[derive(Default)]
pub struct StaticDeployments(HashMap<(String, String), BTreeMap<String, String>>);

impl StaticDeployments {
    pub fn insert(&mut self, namespace: &str, name: &str, labels: BTreeMap<String, String>) {
        self.0
            .insert((namespace.to_string(), name.to_string()), labels);
    }
}

impl DeploymentSelectors for StaticDeployments {
    fn selector(&self, namespace: &str, name: &str) -> Lookup {
        match self.0.get(&(namespace.to_string(), name.to_string())) {
            Some(l) => Lookup::Found(l.clone()),
            None => Lookup::NotFound,
        }
    }
}

/// A reflector over all Deployments, slimmed to what we read (name, namespace, selector):
/// pod templates are most of a Deployment's size and we never look at them.
pub struct WatchedDeployments {
    store: Store<Deployment>,
    ready: Arc<AtomicBool>,
    synced: tokio::sync::watch::Receiver<bool>,
}

impl WatchedDeployments {
    /// Returns the cache and the future that keeps it up to date (spawn it).
    pub fn start(client: Client) -> (Self, impl std::future::Future<Output = ()> + Send) {
        let (reader, writer) = reflector::store();
        let api: Api<Deployment> = Api::all(client);
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .map_ok(|ev| {
                ev.modify(|d| {
                    d.metadata.managed_fields = None;
                    d.metadata.annotations = None;
                    d.status = None;
                    if let Some(spec) = d.spec.as_mut() {
                        spec.template = Default::default();
                    }
                })
            });
        let reflect = reflector::reflector(writer, stream).for_each(|r| async move {
            if let Err(e) = r {
                tracing::warn!(error = %e, "Deployment watch error; retrying with backoff");
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
                    tracing::info!("Deployment cache synced");
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
}

impl DeploymentSelectors for WatchedDeployments {
    fn selector(&self, namespace: &str, name: &str) -> Lookup {
        if !self.ready.load(Ordering::Acquire) {
            return Lookup::NotReady;
        }
        match self.store.get(&ObjectRef::new(name).within(namespace)) {
            Some(d) => Lookup::Found(
                d.spec
                    .as_ref()
                    .and_then(|s| s.selector.match_labels.clone())
                    .unwrap_or_default(),
            ),
            None => Lookup::NotFound,
        }
    }
}
