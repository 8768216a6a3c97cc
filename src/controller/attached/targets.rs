//! The target Deployments of every workload, kept from the controller's one Deployment watch,
//! and which workloads' AttachedResources a Deployment event concerns.
//!
//! Why not a LIST per reconcile and a trigger per Deployment event, as before: at 10k
//! AttachedResources every no-op reconcile paid a Deployment LIST, and every Deployment
//! event (status updates several times per rollout, every object again on each relist or
//! restart) requeued all the AttachedResources of its workload. After a restart that
//! queued the whole namespace's objects a second time behind the first pass, so a version
//! change waited for tens of thousands of no-op reconciles (bench/RESULTS.md, #14). Here:
//!   - a Deployment event triggers its workload only when something a copy is rendered
//!     from changed (name, uid, version label, selector labels, workload label, being
//!     deleted), and both the old and the new workload when the workload label moved;
//!   - the first listing triggers nothing: every AttachedResource is reconciled once on
//!     start anyway, and those reconciles wait until this index holds that listing;
//!   - a relist triggers only the Deployments that changed or vanished meanwhile.
//!
//! Pure state: [`Index::apply`] takes a watch event and returns the workloads to reconcile.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::watcher::Event;
use kube::ResourceExt;

use super::render::Target;
use crate::policy::attached::WORKLOAD_LABEL;

/// A workload: (namespace, `tether.dev/workload` value).
pub type Workload = (String, String);

/// What the reconciler reads from one Deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    workload: String,
    /// `None` without a name or uid (never for a stored Deployment).
    target: Option<Target>,
    deleting: bool,
}

impl Fingerprint {
    fn of(d: &Deployment) -> Self {
        Self {
            workload: workload_of(d),
            target: Target::from_deployment(d),
            deleting: d.metadata.deletion_timestamp.is_some(),
        }
    }
}

fn workload_of(d: &Deployment) -> String {
    d.labels().get(WORKLOAD_LABEL).cloned().unwrap_or_default()
}

fn key_of(d: &Deployment) -> (String, String) {
    (d.namespace().unwrap_or_default(), d.name_any())
}

/// The Deployments labelled `tether.dev/workload`, by namespace and workload.
#[derive(Debug, Default)]
pub struct Index {
    deployments: HashMap<(String, String), Fingerprint>,
    /// (namespace, workload) → Deployment names.
    by_workload: HashMap<Workload, BTreeSet<String>>,
    /// Keys seen since the current relist began (`Some` between Init and InitDone).
    relist: Option<HashSet<(String, String)>>,
    /// A first listing completed.
    synced: bool,
}

impl Index {
    /// Whether a complete listing has been applied (targets can be read).
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// Applies one watch event; returns the workloads whose AttachedResources must be
    /// reconciled because of it (each once, sorted).
    pub fn apply(&mut self, event: Event<Deployment>) -> Vec<Workload> {
        let mut touched = BTreeSet::new();
        match event {
            Event::Init => self.relist = Some(HashSet::new()),
            Event::InitApply(d) => {
                if let Some(seen) = &mut self.relist {
                    seen.insert(key_of(&d));
                }
                self.upsert(&d, &mut touched);
            }
            Event::InitDone => {
                if let Some(seen) = self.relist.take() {
                    let gone: Vec<(String, String)> = self
                        .deployments
                        .keys()
                        .filter(|k| !seen.contains(*k))
                        .cloned()
                        .collect();
                    for key in gone {
                        self.remove(&key, &mut touched);
                    }
                }
                self.synced = true;
            }
            Event::Apply(d) => self.upsert(&d, &mut touched),
            Event::Delete(d) => {
                let key = key_of(&d);
                self.remove(&key, &mut touched);
                // The event's object may carry a workload label the index never saw.
                let workload = workload_of(&d);
                if !workload.is_empty() && self.synced {
                    touched.insert((key.0, workload));
                }
            }
        }
        touched.into_iter().collect()
    }

    fn upsert(&mut self, d: &Deployment, touched: &mut BTreeSet<Workload>) {
        let key = key_of(d);
        let fp = Fingerprint::of(d);
        let previous = self.deployments.insert(key.clone(), fp.clone());
        if previous.as_ref() == Some(&fp) {
            return;
        }
        if let Some(prev) = &previous {
            self.unlink(&key, &prev.workload);
            if self.synced {
                touched.insert((key.0.clone(), prev.workload.clone()));
            }
        }
        self.by_workload
            .entry((key.0.clone(), fp.workload.clone()))
            .or_default()
            .insert(key.1.clone());
        if self.synced {
            touched.insert((key.0, fp.workload));
        }
    }

    fn remove(&mut self, key: &(String, String), touched: &mut BTreeSet<Workload>) {
        if let Some(prev) = self.deployments.remove(key) {
            self.unlink(key, &prev.workload);
            if self.synced {
                touched.insert((key.0.clone(), prev.workload));
            }
        }
    }

    fn unlink(&mut self, key: &(String, String), workload: &str) {
        let w = (key.0.clone(), workload.to_string());
        if let Some(names) = self.by_workload.get_mut(&w) {
            names.remove(&key.1);
            if names.is_empty() {
                self.by_workload.remove(&w);
            }
        }
    }

    /// The targets of `workload` in `namespace`: Deployments not being deleted, by name.
    pub fn targets(&self, namespace: &str, workload: &str) -> Vec<Target> {
        let Some(names) = self
            .by_workload
            .get(&(namespace.to_string(), workload.to_string()))
        else {
            return Vec::new();
        };
        let mut by_name: BTreeMap<&str, Target> = BTreeMap::new();
        for name in names {
            let Some(fp) = self.deployments.get(&(namespace.to_string(), name.clone())) else {
                continue;
            };
            if let (false, Some(t)) = (fp.deleting, &fp.target) {
                by_name.insert(name, t.clone());
            }
        }
        by_name.into_values().collect()
    }

    /// Deployments held.
    pub fn len(&self) -> usize {
        self.deployments.len()
    }

    pub fn is_empty(&self) -> bool {
        self.deployments.is_empty()
    }
}

/// The index shared by the watch task (writer) and the reconciles (readers).
#[derive(Debug)]
pub struct Shared {
    index: std::sync::Mutex<Index>,
    synced: tokio::sync::watch::Sender<bool>,
}

/// The Deployment watch had not listed once within the wait (RBAC, API server down).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the Deployment watch (label {WORKLOAD_LABEL}) has not completed its first listing after {0:?}; check tether's list/watch permission on deployments.apps")]
pub struct NotSynced(pub Duration);

impl Default for Shared {
    fn default() -> Self {
        Self {
            index: std::sync::Mutex::default(),
            synced: tokio::sync::watch::channel(false).0,
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        // Every mutation leaves the index consistent, so a poisoned lock is still usable.
        self.index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// [`Index::apply`], then wakes the reconciles waiting for the first listing.
    pub fn apply(&self, event: Event<Deployment>) -> Vec<Workload> {
        let (touched, synced) = {
            let mut ix = self.lock();
            let t = ix.apply(event);
            (t, ix.synced())
        };
        if synced {
            self.synced
                .send_if_modified(|s| !std::mem::replace(s, true));
        }
        touched
    }

    /// The targets of a workload, once the first listing is in (waiting at most `wait`).
    pub async fn targets(
        &self,
        namespace: &str,
        workload: &str,
        wait: Duration,
    ) -> Result<Vec<Target>, NotSynced> {
        let mut rx = self.synced.subscribe();
        let synced = matches!(
            tokio::time::timeout(wait, rx.wait_for(|s| *s)).await,
            Ok(Ok(_))
        );
        if synced {
            Ok(self.lock().targets(namespace, workload))
        } else {
            Err(NotSynced(wait))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dep(ns: &str, name: &str, workload: &str, version: &str) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"),
                         "labels": {"tether.dev/workload": workload, "tether.dev/version": version}},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}}}
        }))
        .expect("a Deployment")
    }

    fn with_replicas(mut d: Deployment, n: i32) -> Deployment {
        if let Some(s) = d.spec.as_mut() {
            s.replicas = Some(n);
        }
        d
    }

    fn deleting(d: Deployment) -> Deployment {
        let mut v = serde_json::to_value(d).expect("serialises");
        v["metadata"]["deletionTimestamp"] = json!("2026-11-30T00:00:00Z");
        serde_json::from_value(v).expect("a Deployment")
    }

    fn w(ns: &str, workload: &str) -> Workload {
        (ns.to_string(), workload.to_string())
    }

    fn synced_with(deps: &[Deployment]) -> Index {
        let mut ix = Index::default();
        assert!(ix.apply(Event::Init).is_empty());
        for d in deps {
            assert!(
                ix.apply(Event::InitApply(d.clone())).is_empty(),
                "the first listing triggers nothing"
            );
        }
        assert!(ix.apply(Event::InitDone).is_empty());
        assert!(ix.synced());
        ix
    }

    #[test]
    fn events_trigger_only_the_workloads_whose_copies_change() {
        let a1 = dep("ns", "a-v1", "a", "v1");
        let a2 = dep("ns", "a-v2", "a", "v2");
        let b1 = dep("other", "b-v1", "b", "v1");
        let base = [a1.clone(), a2.clone(), b1.clone()];
        crate::table_test::each(
            [
                ("the same object again", Event::Apply(a1.clone()), vec![]),
                (
                    "a status-like change (replicas)",
                    Event::Apply(with_replicas(a1.clone(), 7)),
                    vec![],
                ),
                (
                    "version label changes",
                    Event::Apply(dep("ns", "a-v1", "a", "next")),
                    vec![w("ns", "a")],
                ),
                (
                    "workload label moves: old and new workload",
                    Event::Apply(dep("ns", "a-v1", "c", "v1")),
                    vec![w("ns", "a"), w("ns", "c")],
                ),
                (
                    "a new Deployment",
                    Event::Apply(dep("other", "b-v2", "b", "v2")),
                    vec![w("other", "b")],
                ),
                (
                    "deletion starts",
                    Event::Apply(deleting(b1.clone())),
                    vec![w("other", "b")],
                ),
                ("deleted", Event::Delete(a2.clone()), vec![w("ns", "a")]),
                (
                    "deleted while the index never saw it",
                    Event::Delete(dep("ns", "x", "x", "v1")),
                    vec![w("ns", "x")],
                ),
            ],
            |(name, event, want)| {
                let mut ix = synced_with(&base);
                assert_eq!(ix.apply(event), want, "{name}");
            },
        );
    }

    #[test]
    fn a_relist_triggers_only_what_changed_or_vanished() {
        let a1 = dep("ns", "a-v1", "a", "v1");
        let a2 = dep("ns", "a-v2", "a", "v2");
        let b1 = dep("ns", "b-v1", "b", "v1");
        let c1 = dep("ns", "c-v1", "c", "v1");
        let mut ix = synced_with(&[a1.clone(), a2.clone(), b1.clone()]);
        assert!(ix.apply(Event::Init).is_empty());
        // a1 unchanged (status only), a2 missing (deleted during the gap), b1 relabelled, c1 new.
        assert!(ix
            .apply(Event::InitApply(with_replicas(a1.clone(), 3)))
            .is_empty());
        assert_eq!(
            ix.apply(Event::InitApply(dep("ns", "b-v1", "b", "v9"))),
            vec![w("ns", "b")]
        );
        assert_eq!(ix.apply(Event::InitApply(c1)), vec![w("ns", "c")]);
        assert_eq!(ix.apply(Event::InitDone), vec![w("ns", "a")]);
        let names = |ix: &Index, ns: &str, wl: &str| -> Vec<String> {
            ix.targets(ns, wl)
                .into_iter()
                .map(|t| t.deployment)
                .collect()
        };
        assert_eq!(names(&ix, "ns", "a"), ["a-v1"]);
        assert_eq!(ix.targets("ns", "b")[0].version, "v9");
        assert_eq!(ix.len(), 3);
    }

    #[test]
    fn targets_are_by_name_without_the_ones_being_deleted() {
        let ix = synced_with(&[
            dep("ns", "web-b", "web", "v2"),
            dep("ns", "web-a", "web", "v1"),
            deleting(dep("ns", "web-c", "web", "v3")),
            dep("ns", "api", "api", "v1"),
            dep("elsewhere", "web-z", "web", "v1"),
        ]);
        let t = ix.targets("ns", "web");
        let got: Vec<(&str, &str)> = t
            .iter()
            .map(|t| (t.deployment.as_str(), t.version.as_str()))
            .collect();
        assert_eq!(got, [("web-a", "v1"), ("web-b", "v2")]);
        assert_eq!(t[0].uid, "uid-web-a");
        assert!(ix.targets("ns", "nothing").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn reconciles_wait_for_the_first_listing_and_give_up_with_a_clear_error() {
        let shared = std::sync::Arc::new(Shared::default());
        let err = shared
            .targets("ns", "web", Duration::from_secs(30))
            .await
            .expect_err("never listed");
        assert!(err
            .to_string()
            .contains("has not completed its first listing after 30s"));
        let waiting = {
            let s = shared.clone();
            tokio::spawn(async move { s.targets("ns", "web", Duration::from_secs(30)).await })
        };
        shared.apply(Event::Init);
        shared.apply(Event::InitApply(dep("ns", "web-a", "web", "v1")));
        shared.apply(Event::InitDone);
        let got = waiting.await.expect("task").expect("synced");
        assert_eq!(got.len(), 1);
    }
}
