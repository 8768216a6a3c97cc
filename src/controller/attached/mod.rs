//! The AttachedResource reconciler (SPEC 6, 6.1): one copy of `spec.object` per version of
//! the workload.
//!
//! For an AttachedResource `atr` in namespace `ns` with `spec.workloadRef.name: w`:
//!
//! 0. **Reconcile-time policy** ([`super::admitted`], when `ctx.policy` is set, as it always
//!    is in `tether serve`): in a namespace the webhooks skip nothing at all is written; an
//!    object whose stamp, kind rules or tether's own access fail gets `PolicyDenied` and no
//!    copy is created, updated or deleted. Deletion cleanup (1) runs for refused objects.
//! 1. **Finalizer.** `tether.dev/cleanup` is added on the first reconcile; when the object is
//!    being deleted, every copy (of every kind it ever had, see 5) is deleted, then the
//!    finalizer is removed.
//! 2. **Targets.** The Deployments in `ns` labelled `tether.dev/workload=w` and not being
//!    deleted, by name. The version is the `tether.dev/version` label, else the name.
//! 3. **Render** ([`render_copy`]): placeholders; `spec.scaleTargetRef: {}`/`null` → the
//!    Deployment; `spec.selector.matchLabels: {}`/`null` → the Deployment's selector labels;
//!    the name from [`crate::naming::attached_name`]; labels `tether.dev/attached-resource`,
//!    `tether.dev/workload`, `tether.dev/version` over the object's own; an owner reference to
//!    the Deployment (so the garbage collector removes the copy with its version).
//! 4. **Apply** with server-side apply (field manager `tether/<ns>/<atr>`, force), the copy
//!    annotated `tether.dev/applied-hash: <hash of the rendered object>` ([`content_hash`]),
//!    unless the hash equals the target's `lastAppliedHash` in status and the live copy is
//!    still what was applied ([`copy_up_to_date`]: same hash annotation, the
//!    `metadata.generation` recorded in status after the apply, owner reference, labels).
//!    Only what the API server preserves verbatim is compared — list items come back without
//!    apiVersion/kind and with normalised values — so a no-op reconcile writes nothing, while
//!    a spec edit by anyone (it moves the generation) is repaired on the next reconcile.
//!    Existence and drift come from one LIST of the copies (label
//!    `tether.dev/attached-resource=<atr>`, shortened like every label value, see
//!    [`crate::naming::label_value`]), not a GET per target.
//! 5. **Prune.** Copies whose Deployment is no longer a target are deleted. `spec.object`'s
//!    kind may change (only `workloadRef` is immutable), and the status has no field for the
//!    kind, so the kinds that may have copies are recorded in the annotation
//!    `tether.dev/applied-kinds` on the AttachedResource (written before the first apply of a
//!    new kind, shrunk once the old kind's copies are gone); copies of a kind no longer in
//!    `spec.object` are deleted.
//! 6. **Status** (status subresource, merge patch): `observedGeneration`, one `targets[]` entry
//!    per Deployment, and `Ready` (`AllTargetsApplied`, `ApplyFailed` naming the failing
//!    targets, or `NoTargets`). Written only when it differs from the stored status; the
//!    condition keeps its `lastTransitionTime` while its status, reason and message stay.
//!
//! A failing target (render error, apply error) is recorded in its status entry and the
//! others still proceed; the reconcile then returns an error, so [`error_policy`] requeues
//! it with per-object exponential backoff, emits a Warning Event and logs. A reconcile with
//! nothing to change makes no write call at all (reads: one LIST of copies, discovery while
//! its cache is cold; under [`run`] the Deployments come from its watch, see [`targets`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, Controller, WatchStreamExt};
use kube::{Resource, ResourceExt};
use serde_json::{json, Value};

use super::admitted::{self, AccessAnswer, Denial, Facts, Gate};
use super::conditions::{carry_transition_time, now_rfc3339};
use super::measure::ReconcileMeasurer;
use super::{Context, ReconcilePolicy};
use crate::crd::{AttachedResource, AttachedResourceStatus, Condition, TargetStatus};
use crate::discovery::ResolveError;
use crate::policy::attached::WORKLOAD_LABEL;

/// Metric label `controller` of this reconciler.
pub const NAME: &str = "attached";
/// Finalizer that makes deleting an AttachedResource delete its copies first.
pub const FINALIZER: &str = "tether.dev/cleanup";
/// Label on every copy: the name of the AttachedResource it came from.
pub const ATTACHED_LABEL: &str = "tether.dev/attached-resource";
/// Label on Deployments (and copies): the workload version.
pub const VERSION_LABEL: &str = "tether.dev/version";
/// Annotation on the AttachedResource: the `apiVersion, Kind=Kind` pairs that may have copies
/// (a JSON array of strings), so a kind change can find and delete the old kind's copies.
pub const APPLIED_KINDS_ANNOTATION: &str = "tether.dev/applied-kinds";
/// Annotation on every copy: the [`content_hash`] of the object tether rendered and applied.
pub const APPLIED_HASH_ANNOTATION: &str = "tether.dev/applied-hash";
/// The `Ready` condition's reasons (SPEC 3.1).
pub const REASON_APPLIED: &str = "AllTargetsApplied";
pub const REASON_FAILED: &str = "ApplyFailed";
pub const REASON_NO_TARGETS: &str = "NoTargets";

/// Why a reconcile failed. Every message names the object or target concerned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The watched object lacks a name or namespace (never for a real AttachedResource).
    #[error("AttachedResource without metadata.{0}")]
    MissingMetadata(&'static str),
    /// Adding or removing the finalizer, or updating the applied-kinds annotation, failed.
    #[error("AttachedResource {namespace}/{name}: updating metadata ({what}) failed: {source}")]
    Metadata {
        namespace: String,
        name: String,
        what: &'static str,
        #[source]
        source: kube::Error,
    },
    /// Listing the target Deployments failed.
    #[error("listing Deployments labelled {WORKLOAD_LABEL}={workload} in namespace {namespace} failed: {source}")]
    ListDeployments {
        namespace: String,
        workload: String,
        #[source]
        source: kube::Error,
    },
    /// The Deployment watch never completed its first listing, so the targets are unknown.
    #[error("AttachedResource {namespace}/{name}: {source}")]
    TargetsUnknown {
        namespace: String,
        name: String,
        #[source]
        source: targets::NotSynced,
    },
    /// Listing the existing copies failed.
    #[error("listing {kind} copies labelled {ATTACHED_LABEL}={name} in namespace {namespace} failed: {source}")]
    ListCopies {
        namespace: String,
        name: String,
        kind: String,
        #[source]
        source: kube::Error,
    },
    /// One or more targets could not be applied, or stale copies could not be deleted.
    /// The status has the per-target details.
    #[error("AttachedResource {namespace}/{name}: {}", .failures.join("; "))]
    Targets {
        namespace: String,
        name: String,
        failures: Vec<String>,
    },
    /// Deleting copies while the AttachedResource is being deleted failed.
    #[error("AttachedResource {namespace}/{name}: cleanup before deletion failed: {}", .failures.join("; "))]
    Cleanup {
        namespace: String,
        name: String,
        failures: Vec<String>,
    },
    /// A reconcile-time policy check could not be answered (e.g. an access review timed
    /// out); nothing was changed.
    #[error("AttachedResource {namespace}/{name}: {message}; nothing was changed, retrying")]
    PolicyCheck {
        namespace: String,
        name: String,
        message: String,
    },
    /// Writing the status failed.
    #[error("AttachedResource {namespace}/{name}: writing status failed: {source}")]
    Status {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

mod render;
pub mod targets;

/// What this replica applied last to each copy ("apiVersion/Kind/ns/name" → hash and
/// generation), consulted with the AttachedResource's status: a reconcile triggered by
/// tether's own write can read a status from the store that predates that write, and would
/// otherwise re-apply every copy once more. Bounded: when full it is cleared, which only
/// costs re-applies (the status remains the durable record).
#[derive(Default)]
pub struct AppliedMemo {
    entries: std::sync::Mutex<HashMap<String, (String, Option<i64>)>>,
}

/// Most copies remembered (about 100 bytes each).
const APPLIED_MEMO_MAX: usize = 200_000;

impl AppliedMemo {
    fn get(&self, key: &str) -> Option<(String, Option<i64>)> {
        self.lock().get(key).cloned()
    }

    fn record(&self, key: String, hash: &str, generation: Option<i64>) {
        let mut entries = self.lock();
        if entries.len() >= APPLIED_MEMO_MAX && !entries.contains_key(&key) {
            entries.clear();
        }
        entries.insert(key, (hash.to_string(), generation));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Option<i64>)>> {
        // A panic while holding it leaves a map that is still consistent.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

use render::set_annotation;
pub use render::{
    already_applied, content_hash, copy_up_to_date, ready_condition, render_copy, RenderFailure,
    Target,
};

// ---------------------------------------------------------------------------------------
// Reconcile
// ---------------------------------------------------------------------------------------

fn backoff_key(obj: &AttachedResource) -> String {
    format!(
        "AttachedResource/{}/{}",
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

/// Reconciles one AttachedResource. Records `tether_reconcile_total` and
/// `tether_reconcile_duration_seconds`; resets the object's backoff on success.
///
/// Reads the targets with a Deployment LIST; [`run`] reads them from its Deployment watch.
pub async fn reconcile(obj: Arc<AttachedResource>, ctx: Arc<Context>) -> Result<Action, Error> {
    reconcile_with(obj, ctx, None).await
}

/// How long a reconcile waits for the Deployment watch's first listing.
const TARGETS_SYNC_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

async fn reconcile_with(
    obj: Arc<AttachedResource>,
    ctx: Arc<Context>,
    index: Option<Arc<targets::Shared>>,
) -> Result<Action, Error> {
    let measure = ReconcileMeasurer::start(&ctx.metrics, NAME);
    let result = reconcile_inner(&obj, &ctx, index.as_deref()).await;
    measure.count(result.is_ok());
    if result.is_ok() {
        ctx.backoff.succeeded(&backoff_key(&obj));
    }
    result
}

/// Requeues with per-object exponential backoff, logs, and emits a Warning Event on the
/// AttachedResource (in the background: the error policy cannot wait).
pub fn error_policy(obj: Arc<AttachedResource>, err: &Error, ctx: Arc<Context>) -> Action {
    let action = ctx.requeue_failed(NAME, &backoff_key(&obj), err);
    let reference = obj.object_ref(&());
    let note = crate::text::cut_bytes_marked(&err.to_string(), 1000);
    let recorder = ctx.recorder.clone();
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(async move {
            let ev = Event {
                type_: EventType::Warning,
                reason: "ReconcileFailed".into(),
                note: Some(note),
                action: "Reconcile".into(),
                secondary: None,
            };
            if let Err(e) = recorder.publish(&ev, &reference).await {
                tracing::warn!(controller = NAME, error = %e, "could not publish the Event");
            }
        });
    }
    action
}

/// What `spec.object` resolved to.
struct Kind {
    /// `apiVersion, Kind=Kind`: the entry in the applied-kinds annotation.
    key: String,
    resource: ApiResource,
}

fn kind_key(api_version: &str, kind: &str) -> String {
    format!("{api_version}, Kind={kind}")
}

fn parse_kind_key(key: &str) -> Option<(&str, &str)> {
    key.split_once(", Kind=")
}

fn applied_kinds(obj: &AttachedResource) -> BTreeSet<String> {
    obj.annotations()
        .get(APPLIED_KINDS_ANNOTATION)
        .and_then(|s| serde_json::from_str::<Vec<String>>(s).ok())
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// Why `spec.object`'s kind could not be resolved.
#[derive(Debug, Clone)]
enum KindProblem {
    /// Discovery does not know it (no CRD, wrong name): nothing of it can exist.
    Unknown(String),
    /// A cluster-scoped kind (5.1.7): a policy refusal, not a failure.
    ClusterScoped(String),
    /// Malformed, or discovery failed.
    Other(String),
}

impl KindProblem {
    fn message(&self) -> &str {
        match self {
            KindProblem::Unknown(m) | KindProblem::ClusterScoped(m) | KindProblem::Other(m) => m,
        }
    }
}

/// Resolves `apiVersion`/`kind` through discovery to a namespaced resource.
async fn resolve(ctx: &Context, object: &Value) -> Result<Kind, KindProblem> {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if api_version.is_empty() || kind.is_empty() {
        return Err(KindProblem::Other(
            "spec.object needs a non-empty apiVersion and kind".into(),
        ));
    }
    let Some((group, version)) = crate::policy::parse_api_version(api_version) else {
        return Err(KindProblem::Other(format!(
            "spec.object.apiVersion {api_version:?} is not <version> or <group>/<version>"
        )));
    };
    let info = ctx
        .resolver
        .resolve(group, version, kind)
        .await
        .map_err(|e| match e {
            ResolveError::Unknown(m) => KindProblem::Unknown(m),
            e @ ResolveError::Failed { .. } => KindProblem::Other(e.to_string()),
        })?;
    if !info.namespaced {
        return Err(KindProblem::ClusterScoped(format!(
            "{kind} ({api_version}) is cluster-scoped; only namespaced kinds can be attached"
        )));
    }
    let gvk = GroupVersionKind::gvk(&info.group, &info.version, &info.kind);
    Ok(Kind {
        key: kind_key(api_version, kind),
        resource: ApiResource::from_gvk_with_plural(&gvk, &info.plural),
    })
}

fn copies_api(ctx: &Context, ns: &str, ar: &ApiResource) -> Api<DynamicObject> {
    Api::namespaced_with(ctx.client.clone(), ns, ar)
}

async fn list_copies(
    ctx: &Context,
    ns: &str,
    name: &str,
    ar: &ApiResource,
) -> Result<Vec<DynamicObject>, Error> {
    let lp = ListParams::default().labels(&format!(
        "{ATTACHED_LABEL}={}",
        crate::naming::label_value(name)
    ));
    copies_api(ctx, ns, ar)
        .list(&lp)
        .await
        .map(|l| l.items)
        .map_err(|source| Error::ListCopies {
            namespace: ns.into(),
            name: name.into(),
            kind: ar.kind.clone(),
            source,
        })
}

/// Deletes a copy; a copy that is already gone counts as deleted.
async fn delete_copy(api: &Api<DynamicObject>, name: &str) -> Result<(), kube::Error> {
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

fn is_deleting(d: &Deployment) -> bool {
    d.metadata.deletion_timestamp.is_some()
}

async fn patch_metadata(
    api: &Api<AttachedResource>,
    obj: &AttachedResource,
    what: &'static str,
    metadata: Value,
) -> Result<(), Error> {
    let mut metadata = metadata;
    if let Some(m) = metadata.as_object_mut() {
        // Optimistic concurrency when the finalizer list is replaced whole (a merge patch
        // replaces lists): a concurrent change by someone else is a 409, retried.
        if m.contains_key("finalizers") {
            if let Some(rv) = obj.resource_version() {
                m.insert("resourceVersion".into(), Value::String(rv));
            }
        }
    }
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": metadata })),
    )
    .await
    .map(|_| ())
    .map_err(|source| Error::Metadata {
        namespace: obj.namespace().unwrap_or_default(),
        name: obj.name_any(),
        what,
        source,
    })
}

/// Merge-patches `status` of AttachedResource `ns/name`.
async fn write_status(
    atrs: &Api<AttachedResource>,
    ns: &str,
    name: &str,
    status: &AttachedResourceStatus,
) -> Result<(), Error> {
    atrs.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .map(|_| ())
    .map_err(|source| Error::Status {
        namespace: ns.to_string(),
        name: name.to_string(),
        source,
    })
}

async fn reconcile_inner(
    obj: &AttachedResource,
    ctx: &Context,
    index: Option<&targets::Shared>,
) -> Result<Action, Error> {
    let ns = obj.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let name = obj
        .metadata
        .name
        .clone()
        .ok_or(Error::MissingMetadata("name"))?;
    let atrs: Api<AttachedResource> = Api::namespaced(ctx.client.clone(), &ns);
    let has_finalizer = obj.finalizers().iter().any(|f| f == FINALIZER);

    // A namespace the webhooks skip: nothing was reviewed there, so nothing is written there,
    // not even the status or the finalizer's removal.
    if let Some(policy) = &ctx.policy {
        if policy.skip.contains(&ns) {
            tracing::debug!(
                controller = NAME,
                namespace = %ns,
                name = %name,
                "namespace skipped by tether's webhooks: not reconciled"
            );
            // Costs no API call; the resync keeps the behaviour observable and uniform.
            return Ok(Action::requeue(ctx.settings.resync));
        }
    }

    if obj.metadata.deletion_timestamp.is_some() {
        // Deleting the copies is what the user asked for by deleting the AttachedResource,
        // so it runs for refused objects too (SECURITY.md, "Reconcile-time policy").
        if has_finalizer {
            cleanup(obj, ctx, &atrs, &ns, &name).await?;
        }
        return Ok(Action::await_change());
    }

    let workload = obj.spec.workload_ref.name.clone();
    let resolved = resolve(ctx, &obj.spec.object).await;
    if let Some(policy) = &ctx.policy {
        match gate(obj, policy, &ns, &name, &resolved).await {
            Gate::Act => {}
            // Skipped namespaces returned above.
            Gate::Skip => return Ok(Action::await_change()),
            Gate::Retry(message) => {
                return Err(Error::PolicyCheck {
                    namespace: ns,
                    name,
                    message,
                })
            }
            Gate::Deny(denial) => return refuse(obj, ctx, &atrs, &ns, &name, denial).await,
        }
    }
    let mut recorded = applied_kinds(obj);

    // Finalizer and applied-kinds annotation, in one write, before any copy exists.
    let mut want_kinds = recorded.clone();
    if let Ok(k) = &resolved {
        want_kinds.insert(k.key.clone());
    }
    if !has_finalizer || want_kinds != recorded {
        let mut finalizers = obj.finalizers().to_vec();
        if !has_finalizer {
            finalizers.push(FINALIZER.into());
        }
        let mut meta = json!({ "finalizers": finalizers });
        if want_kinds != recorded {
            meta["annotations"] = json!({
                APPLIED_KINDS_ANNOTATION: serde_json::to_string(&want_kinds.iter().collect::<Vec<_>>()).unwrap_or_default()
            });
        }
        let what = if has_finalizer {
            "recording applied kinds"
        } else {
            "adding the finalizer"
        };
        patch_metadata(&atrs, obj, what, meta).await?;
        recorded = want_kinds;
    }

    // Targets: from the controller's Deployment watch, or a LIST without one.
    let mut targets: Vec<Target> = match index {
        Some(index) => index
            .targets(&ns, &workload, TARGETS_SYNC_WAIT)
            .await
            .map_err(|source| Error::TargetsUnknown {
                namespace: ns.clone(),
                name: name.clone(),
                source,
            })?,
        None => {
            let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
            let lp = ListParams::default().labels(&format!("{WORKLOAD_LABEL}={workload}"));
            deployments
                .list(&lp)
                .await
                .map_err(|source| Error::ListDeployments {
                    namespace: ns.clone(),
                    workload: workload.clone(),
                    source,
                })?
                .items
                .iter()
                .filter(|d| !is_deleting(d))
                .filter_map(Target::from_deployment)
                .collect()
        }
    };
    targets.sort_by(|a, b| a.deployment.cmp(&b.deployment));

    let old_status = obj.status.clone().unwrap_or_default();
    let old_applied: HashMap<&str, (&str, Option<i64>)> = old_status
        .targets
        .iter()
        .map(|t| {
            (
                t.resource_name.as_str(),
                (t.last_applied_hash.as_str(), t.copy_generation),
            )
        })
        .collect();
    let mut extra_failures: Vec<String> = Vec::new();
    let mut entries: Vec<TargetStatus> = Vec::with_capacity(targets.len());

    match &resolved {
        Err(problem) => {
            let msg = problem.message().to_string();
            for t in &targets {
                entries.push(TargetStatus {
                    deployment: t.deployment.clone(),
                    version: t.version.clone(),
                    resource_name: crate::naming::attached_name(
                        &t.deployment,
                        &name,
                        &workload,
                        &t.version,
                    ),
                    applied: false,
                    message: msg.clone(),
                    last_applied_hash: String::new(),
                    copy_generation: None,
                });
            }
            if targets.is_empty() {
                extra_failures.push(msg);
            }
        }
        Ok(kind) => {
            let api = copies_api(ctx, &ns, &kind.resource);
            let existing: HashMap<String, DynamicObject> =
                list_copies(ctx, &ns, &name, &kind.resource)
                    .await?
                    .into_iter()
                    .map(|o| (o.name_any(), o))
                    .collect();
            let manager = format!("tether/{ns}/{name}");
            let pp = PatchParams::apply(&manager).force();
            let mut wanted: BTreeSet<String> = BTreeSet::new();
            for t in &targets {
                let resource_name =
                    crate::naming::attached_name(&t.deployment, &name, &workload, &t.version);
                wanted.insert(resource_name.clone());
                let mut entry = TargetStatus {
                    deployment: t.deployment.clone(),
                    version: t.version.clone(),
                    resource_name: resource_name.clone(),
                    applied: false,
                    message: String::new(),
                    last_applied_hash: String::new(),
                    copy_generation: None,
                };
                match render_copy(&obj.spec.object, &name, &ns, &workload, t) {
                    Err(e) => entry.message = e.to_string(),
                    Ok(rendered) => {
                        let hash = content_hash(&rendered);
                        let memo_key = format!(
                            "{}/{}/{ns}/{resource_name}",
                            kind.resource.api_version, kind.resource.kind
                        );
                        let memo = ctx.applied.get(&memo_key);
                        let unchanged = already_applied(
                            &[
                                old_applied.get(resource_name.as_str()).copied(),
                                memo.as_ref().map(|(h, g)| (h.as_str(), *g)),
                            ],
                            existing.get(&resource_name),
                            &rendered,
                            &hash,
                            &t.uid,
                        );
                        if let Some(generation) = unchanged {
                            entry.applied = true;
                            entry.last_applied_hash = hash;
                            entry.copy_generation = generation;
                        } else {
                            let mut body = rendered;
                            body["apiVersion"] = json!(kind.resource.api_version);
                            body["kind"] = json!(kind.resource.kind);
                            set_annotation(&mut body, APPLIED_HASH_ANNOTATION, &hash);
                            match api.patch(&resource_name, &pp, &Patch::Apply(&body)).await {
                                Ok(applied) => {
                                    ctx.applied.record(
                                        memo_key,
                                        &hash,
                                        applied.metadata.generation,
                                    );
                                    entry.applied = true;
                                    entry.last_applied_hash = hash;
                                    entry.copy_generation = applied.metadata.generation;
                                }
                                Err(e) => {
                                    entry.message = format!(
                                        "server-side apply of {} {resource_name} failed: {}",
                                        kind.resource.kind,
                                        api_error_text(&e)
                                    )
                                }
                            }
                        }
                    }
                }
                entries.push(entry);
            }
            // Copies whose Deployment is no longer a target.
            for stale in existing.keys().filter(|n| !wanted.contains(*n)) {
                if let Err(e) = delete_copy(&api, stale).await {
                    extra_failures.push(format!(
                        "deleting stale {} {stale} failed: {}",
                        kind.resource.kind,
                        api_error_text(&e)
                    ));
                }
            }
            // Copies of kinds spec.object no longer has.
            let mut still: BTreeSet<String> = BTreeSet::from([kind.key.clone()]);
            for old in recorded.iter().filter(|k| **k != kind.key) {
                match delete_all_of_kind(ctx, &ns, &name, old).await {
                    Ok(()) => {}
                    Err(msg) => {
                        extra_failures.push(msg);
                        still.insert(old.clone());
                    }
                }
            }
            if still != recorded {
                let meta = json!({ "annotations": {
                    APPLIED_KINDS_ANNOTATION: serde_json::to_string(&still.iter().collect::<Vec<_>>()).unwrap_or_default()
                }});
                if let Err(e) = patch_metadata(&atrs, obj, "recording applied kinds", meta).await {
                    extra_failures.push(e.to_string());
                }
            }
        }
    }

    // Status.
    let ready = carry_transition_time(
        ready_condition(
            &entries,
            &extra_failures,
            &ns,
            &workload,
            obj.metadata.generation,
        ),
        &old_status.conditions,
        &now_rfc3339(),
    );
    // A pass that acts clears an earlier refusal.
    let mut conditions: Vec<Condition> = old_status
        .conditions
        .iter()
        .filter(|c| c.type_ != "Ready" && c.type_ != admitted::POLICY_DENIED)
        .cloned()
        .collect();
    conditions.push(ready);
    let new_status = AttachedResourceStatus {
        observed_generation: obj.metadata.generation,
        targets: entries,
        conditions,
    };
    if new_status != old_status {
        write_status(&atrs, &ns, &name, &new_status).await?;
    }

    let failures: Vec<String> = new_status
        .targets
        .iter()
        .filter(|t| !t.applied)
        .map(|t| format!("target {}: {}", t.deployment, t.message))
        .chain(extra_failures)
        .collect();
    if failures.is_empty() {
        Ok(Action::requeue(ctx.settings.resync))
    } else {
        Err(Error::Targets {
            namespace: ns,
            name,
            failures,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Reconcile-time policy
// ---------------------------------------------------------------------------------------

/// The stamp check: the stored spec under `metadata.name`, or under `metadata.generateName`
/// when the object was created with one (the webhook saw only the prefix).
fn verify_stamp(
    obj: &AttachedResource,
    policy: &ReconcilePolicy,
    ns: &str,
    name: &str,
) -> Result<(), crate::stamp::StampError> {
    use crate::stamp::{StampError, Subject, STAMP_ANNOTATION};
    let spec: crate::borrowed_json::Value<'_> = serde_json::to_value(&obj.spec)
        .map_err(|_| StampError::Malformed)?
        .into();
    let stamp = obj.annotations().get(STAMP_ANNOTATION).map(String::as_str);
    let by_name = policy.keys.verify(
        &Subject {
            namespace: ns,
            name,
            spec: &spec,
        },
        stamp,
    );
    match (&by_name, obj.metadata.generate_name.as_deref()) {
        (Err(StampError::Mismatch), Some(prefix)) if !prefix.is_empty() => policy.keys.verify(
            &Subject {
                namespace: ns,
                name: prefix,
                spec: &spec,
            },
            stamp,
        ),
        _ => by_name,
    }
}

/// Gathers the facts of [`admitted::decide`], asking only what the earlier checks let
/// through (no access review for an object whose stamp fails).
async fn gate(
    obj: &AttachedResource,
    policy: &ReconcilePolicy,
    ns: &str,
    name: &str,
    resolved: &Result<Kind, KindProblem>,
) -> Gate {
    let stamp = verify_stamp(obj, policy, ns, name);
    let mut violations = Vec::new();
    let mut access = Vec::new();
    if stamp.is_ok() {
        let spec = serde_json::to_value(&obj.spec).unwrap_or(Value::Null);
        violations = crate::policy::attached::validate_spec(Some(&spec.into()), &policy.kinds);
        if let Err(KindProblem::ClusterScoped(m)) = resolved {
            violations.push(crate::policy::Violation::forbidden(
                "spec.object.kind",
                m.clone(),
            ));
        }
        if let (true, Ok(kind)) = (violations.is_empty(), resolved) {
            let questions: Vec<crate::authz::ResourceAttributes> =
                crate::policy::attached::TETHER_VERBS
                    .iter()
                    .map(|verb| crate::authz::ResourceAttributes {
                        verb: (*verb).into(),
                        group: kind.resource.group.as_str().into(),
                        version: kind.resource.version.as_str().into(),
                        resource: kind.resource.plural.as_str().into(),
                        subresource: None,
                        namespace: Some(ns.into()),
                        name: None,
                    })
                    .collect();
            let answers = futures::future::join_all(questions.iter().map(|q| {
                policy
                    .reviewer
                    .review(crate::authz::Role::Tether, &policy.tether, q)
            }))
            .await;
            access = questions
                .iter()
                .zip(answers)
                .map(|(q, a)| match a {
                    Ok(d) if d.allowed => AccessAnswer::Allowed,
                    Ok(_) => AccessAnswer::Denied(q.to_string()),
                    Err(e) => AccessAnswer::Failed(format!("{q}: {e}")),
                })
                .collect();
        }
    }
    admitted::decide(&Facts {
        namespace: ns,
        skip: &policy.skip,
        stamp,
        violations: &violations,
        access: &access,
    })
}

/// How many copies exist, of every kind recorded in the applied-kinds annotation (reads
/// only; a kind that cannot be listed counts as none).
async fn count_copies(ctx: &Context, ns: &str, name: &str, obj: &AttachedResource) -> usize {
    let mut n = 0;
    for key in applied_kinds(obj) {
        let Some((api_version, kind)) = parse_kind_key(&key) else {
            continue;
        };
        if let Ok(k) = resolve(ctx, &json!({"apiVersion": api_version, "kind": kind})).await {
            if let Ok(copies) = list_copies(ctx, ns, name, &k.resource).await {
                n += copies.len();
            }
        }
    }
    n
}

/// Reports a refusal: the status (only when it changed), a Warning Event (only when the
/// refusal is new or different), the metric (every refused pass). No copy is touched.
async fn refuse(
    obj: &AttachedResource,
    ctx: &Context,
    atrs: &Api<AttachedResource>,
    ns: &str,
    name: &str,
    denial: Denial,
) -> Result<Action, Error> {
    ctx.metrics
        .policy_denied
        .with_label_values(&[NAME, denial.reason])
        .inc();
    let existing = count_copies(ctx, ns, name, obj).await;
    let old = obj.status.clone().unwrap_or_default();
    let new = admitted::denied_status(
        &old,
        &denial,
        existing,
        obj.metadata.generation,
        &now_rfc3339(),
    );
    if new != old {
        write_status(atrs, ns, name, &new).await?;
    }
    if admitted::denial_changed(&old, &new) {
        tracing::warn!(
            controller = NAME,
            namespace = %ns,
            name = %name,
            reason = denial.reason,
            "refused by reconcile-time policy; no copies touched"
        );
        let note = new
            .conditions
            .iter()
            .find(|c| c.type_ == admitted::POLICY_DENIED)
            .map(|c| crate::text::cut_bytes_marked(&c.message, 1000));
        let ev = Event {
            type_: EventType::Warning,
            reason: admitted::POLICY_DENIED.into(),
            note,
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(controller = NAME, error = %e, "could not publish the Event");
        }
    }
    // Refusals are re-evaluated at every resync: a policy change or a re-review lifts them.
    Ok(Action::requeue(ctx.settings.resync))
}

/// The message of an API error without kube's wrapping.
fn api_error_text(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
        other => other.to_string(),
    }
}

/// Deletes every copy of the kind recorded as `key` (`apiVersion, Kind=Kind`).
async fn delete_all_of_kind(ctx: &Context, ns: &str, name: &str, key: &str) -> Result<(), String> {
    let Some((api_version, kind)) = parse_kind_key(key) else {
        // An entry we cannot read was not written by us; forget it.
        return Ok(());
    };
    let object = json!({"apiVersion": api_version, "kind": kind});
    let resolved = match resolve(ctx, &object).await {
        Ok(k) => k,
        // The kind is no longer served: its objects went with it.
        Err(KindProblem::Unknown(_)) => return Ok(()),
        Err(KindProblem::ClusterScoped(m) | KindProblem::Other(m)) => {
            return Err(format!("cleaning up {key} copies: {m}"))
        }
    };
    let api = copies_api(ctx, ns, &resolved.resource);
    let copies = list_copies(ctx, ns, name, &resolved.resource)
        .await
        .map_err(|e| e.to_string())?;
    let mut errors = Vec::new();
    for c in copies {
        if let Err(e) = delete_copy(&api, &c.name_any()).await {
            errors.push(format!(
                "deleting {kind} {} failed: {}",
                c.name_any(),
                api_error_text(&e)
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Deletes every copy (current and recorded kinds), then removes the finalizer.
async fn cleanup(
    obj: &AttachedResource,
    ctx: &Context,
    atrs: &Api<AttachedResource>,
    ns: &str,
    name: &str,
) -> Result<(), Error> {
    let mut kinds = applied_kinds(obj);
    let mut failures = Vec::new();
    match resolve(ctx, &obj.spec.object).await {
        Ok(k) => {
            kinds.insert(k.key);
        }
        // An unknown kind has no copies to delete (none could be created, or the CRD and its
        // objects are gone); anything else is a real failure.
        Err(KindProblem::Unknown(_)) => {}
        Err(KindProblem::ClusterScoped(m) | KindProblem::Other(m)) => failures.push(m),
    }
    for key in &kinds {
        if let Err(m) = delete_all_of_kind(ctx, ns, name, key).await {
            failures.push(m);
        }
    }
    if !failures.is_empty() {
        return Err(Error::Cleanup {
            namespace: ns.into(),
            name: name.into(),
            failures,
        });
    }
    let remaining: Vec<String> = obj
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    patch_metadata(
        atrs,
        obj,
        "removing the finalizer",
        json!({ "finalizers": remaining }),
    )
    .await
}

// ---------------------------------------------------------------------------------------
// Controller
// ---------------------------------------------------------------------------------------

/// Runs the AttachedResource controller until `shutdown` resolves: watches AttachedResources,
/// and Deployments labelled `tether.dev/workload` (mapped to the AttachedResources of that
/// workload in that namespace, from the controller's own store); every healthy object is
/// requeued after `ctx.settings.resync`.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let atrs: Api<AttachedResource> = Api::all(ctx.client.clone());
    let deployments: Api<Deployment> = Api::all(ctx.client.clone());
    let controller =
        Controller::new(atrs, watcher::Config::default()).with_config(super::controller_config());
    let store = controller.store();
    let pruner = super::prune_backoff(
        ctx.clone(),
        controller.store(),
        "AttachedResource/",
        |a: &AttachedResource| backoff_key(a),
    );
    // One Deployment watch feeds the targets index (read by the reconciles) and the triggers:
    // the AttachedResources of each workload a Deployment event changed (targets.rs says why
    // only those).
    let index = Arc::new(targets::Shared::default());
    let triggers = {
        let index = index.clone();
        watcher(deployments, watcher::Config::default().labels(WORKLOAD_LABEL))
            .default_backoff()
            .filter_map(move |event| {
                let refs = match event {
                    Ok(event) => {
                        let workloads = index.apply(event);
                        attached_to(&store, &workloads)
                    }
                    Err(e) => {
                        tracing::warn!(controller = NAME, error = %e, "Deployment watch failed; retrying");
                        Vec::new()
                    }
                };
                futures::future::ready(Some(futures::stream::iter(refs)))
            })
            .flatten()
    };
    let running = controller
        .reconcile_on(triggers)
        .graceful_shutdown_on(shutdown)
        .run(
            move |obj, ctx| reconcile_with(obj, ctx, Some(index.clone())),
            error_policy,
            ctx,
        )
        .for_each(|res| async move {
            match res {
                Ok((o, _)) => tracing::debug!(controller = NAME, object = %o, "reconciled"),
                Err(kube::runtime::controller::Error::ReconcilerFailed(_, o)) => {
                    tracing::debug!(controller = NAME, object = %o, "reconcile failed (requeued)")
                }
                Err(e) => tracing::warn!(controller = NAME, error = %e, "controller error"),
            }
        });
    tokio::select! {
        _ = running => {}
        _ = pruner => {}
    }
}

/// The AttachedResources (from the controller's store) of the given workloads.
fn attached_to(
    store: &kube::runtime::reflector::Store<AttachedResource>,
    workloads: &[targets::Workload],
) -> Vec<ObjectRef<AttachedResource>> {
    if workloads.is_empty() {
        return Vec::new();
    }
    store
        .state()
        .into_iter()
        .filter(|a| {
            let ns = a.namespace().unwrap_or_default();
            workloads
                .iter()
                .any(|(wns, wl)| *wns == ns && *wl == a.spec.workload_ref.name)
        })
        .map(|a| ObjectRef::from_obj(&*a))
        .collect()
}
