//! A reflector-backed cache of one kind across all namespaces, with a readiness signal
//! that any number of waiters can share (kube's `Store::wait_until_ready` serves one waiter
//! well; the start-up gate and the lookups both need to know).

use std::fmt::Debug;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

pub struct Watched<K: Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    ready: Arc<AtomicBool>,
    synced: tokio::sync::watch::Receiver<bool>,
}

impl<K> Watched<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// Returns the cache and the future that keeps it up to date (spawn it). `slim` drops
    /// the parts of each object we never read, so the cache holds only what lookups need.
    pub fn start(
        api: Api<K>,
        what: &'static str,
        slim: fn(&mut K),
    ) -> (Self, impl Future<Output = ()> + Send) {
        let (reader, writer) = reflector::store();
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .map_ok(move |ev| ev.modify(slim));
        let reflect = reflector::reflector(writer, stream).for_each(move |r| {
            if let Err(e) = r {
                tracing::warn!(error = %e, "{what} watch error; retrying with backoff");
            }
            futures::future::ready(())
        });
        let ready = Arc::new(AtomicBool::new(false));
        let (synced_tx, synced) = tokio::sync::watch::channel(false);
        let (r, flag) = (reader.clone(), ready.clone());
        let fut = async move {
            let mark = async move {
                if r.wait_until_ready().await.is_ok() {
                    tracing::info!("{what} cache synced");
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

    pub fn store(&self) -> &Store<K> {
        &self.store
    }
}
