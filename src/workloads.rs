//! Where Deployments' selector labels come from (SPEC 5.3): a watched cache in a cluster, the
//! manifest itself offline (`tether check`). Never a GET per admission request.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client};

use crate::watched::Watched;

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

/// A watched cache of all Deployments, slimmed to what we read (name, namespace,
/// selector): pod templates are most of a Deployment's size and we never look at them.
pub struct WatchedDeployments(Watched<Deployment>);

fn slim(d: &mut Deployment) {
    d.metadata.managed_fields = None;
    d.metadata.annotations = None;
    d.status = None;
    if let Some(spec) = d.spec.as_mut() {
        spec.template = Default::default();
    }
}

impl WatchedDeployments {
    /// Returns the cache and the future that keeps it up to date (spawn it).
    pub fn start(client: Client) -> (Self, impl std::future::Future<Output = ()> + Send) {
        let (w, fut) = Watched::start(Api::all(client), "Deployment", slim);
        (Self(w), fut)
    }

    /// Resolves once the first list has been loaded.
    pub async fn wait_until_ready(&self) {
        self.0.wait_until_ready().await
    }
}

impl DeploymentSelectors for WatchedDeployments {
    fn selector(&self, namespace: &str, name: &str) -> Lookup {
        if !self.0.is_ready() {
            return Lookup::NotReady;
        }
        match self.0.store().get(&ObjectRef::new(name).within(namespace)) {
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
