//! AppDomain → Knative DomainMapping reconciler (SPEC 6.2).
//!
//! For each AppDomain (whose `spec.domain` the mutating webhook filled in), in order:
//!
//! 1. the Knative Service `serving.knative.dev/v1` `services/<spec.serviceRef.name>` must exist
//!    in the namespace, else `ServiceReady=False` (`ServiceNotFound`) and stop;
//! 2. the cluster-scoped `networking.internal.knative.dev/v1alpha1` ClusterDomainClaim named
//!    `<domain>` must assign the domain to the AppDomain's namespace. Missing: with
//!    `--auto-create-domain-claims` tether creates it (labelled
//!    `app.kubernetes.io/managed-by=tether`, `tether.dev/appdomain=<ns>.<name>`; an
//!    AlreadyExists naming the same namespace counts as success), without it
//!    `DomainClaimed=False` (`DomainClaimMissing`) with a ready-to-apply manifest in the
//!    message. Held by another namespace: `DomainClaimed=False` (`DomainAlreadyClaimed`);
//! 3. the `serving.knative.dev/v1beta1` DomainMapping `<domain>` is server-side applied
//!    (field manager `tether/<ns>/<name>`, `spec.ref` → the Knative Service, controller owner
//!    reference → the AppDomain), skipped when the existing mapping already has all of that;
//! 4. the mapping's `Ready` condition and `status.url` are copied into the AppDomain status
//!    (`ServiceReady`, `DomainClaimed`, `DomainMappingReady`, `Ready`, `domain`, `url`,
//!    `observedGeneration`), written only when something changed.
//!
//! Finalizer `tether.dev/cleanup`: deleting the AppDomain deletes the ClusterDomainClaim
//! tether created (managed-by label *and* `spec.namespace` == this namespace), and only when no
//! other live AppDomain in the namespace still uses the same domain (two AppDomains with the
//! same id pair compute the same domain). A claim somebody else made is never touched. The
//! DomainMapping goes with the AppDomain through its owner reference (Kubernetes GC).
//!
//! Outcomes the user has to act on (Service missing, claim missing or held elsewhere, a
//! mapping controlled by something else) are not errors: the reconcile succeeds, the status
//! says what to do, a Warning Event is emitted when the `Ready` reason changes, and the object
//! is looked at again on the periodic resync or when a watched object changes (Knative
//! Services, claims and owned mappings are watched). API failures are errors: the status shows
//! `Ready=False` (`ReconcileError`), a Warning Event is emitted, and the object is requeued
//! with per-object exponential backoff.
//!
//! Idempotence: a reconcile with nothing to change performs no write at all (no finalizer
//! patch, no claim create, no apply, no status patch, no Event).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, Preconditions,
};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, Controller};
use kube::{Resource, ResourceExt};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::conditions::{carry_transition_times, now_rfc3339};
use super::measure::ReconcileMeasurer;
use super::Context;
use crate::crd::{AppDomain, AppDomainStatus, Condition};

mod claim;
mod mapping;
mod status;

pub use claim::claim_manifest;
use claim::*;
use mapping::*;
use status::*;

/// Metric label `controller`.
pub const NAME: &str = "domains";
/// Finalizer that guards claim cleanup.
pub const FINALIZER: &str = "tether.dev/cleanup";
/// Label marking objects tether created.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "tether";
/// Label naming the AppDomain (`<ns>.<name>`, or a hash when that is not a valid label value)
/// a claim or mapping was made for.
pub const APPDOMAIN_LABEL: &str = "tether.dev/appdomain";

/// Condition types in the order they are written.
pub const SERVICE_READY: &str = "ServiceReady";
pub const DOMAIN_CLAIMED: &str = "DomainClaimed";
pub const DOMAIN_MAPPING_READY: &str = "DomainMappingReady";
pub const READY: &str = "Ready";

/// Condition reasons.
pub mod reasons {
    pub const SERVICE_FOUND: &str = "ServiceFound";
    pub const SERVICE_NOT_FOUND: &str = "ServiceNotFound";
    pub const DOMAIN_CLAIMED: &str = "DomainClaimed";
    pub const DOMAIN_CLAIM_MISSING: &str = "DomainClaimMissing";
    pub const DOMAIN_ALREADY_CLAIMED: &str = "DomainAlreadyClaimed";
    pub const DOMAIN_MAPPING_CONFLICT: &str = "DomainMappingConflict";
    pub const DOMAIN_MAPPING_PENDING: &str = "DomainMappingPending";
    pub const DOMAIN_MAPPING_READY: &str = "DomainMappingReady";
    pub const DOMAIN_MAPPING_NOT_READY: &str = "DomainMappingNotReady";
    pub const DOMAIN_NOT_SET: &str = "DomainNotSet";
    pub const NOT_CHECKED: &str = "NotChecked";
    pub const READY: &str = "Ready";
    pub const RECONCILE_ERROR: &str = "ReconcileError";
}

/// Knative Service (`serving.knative.dev/v1`, namespaced).
pub fn knative_service_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("serving.knative.dev", "v1", "Service"),
        "services",
    )
}

/// DomainMapping (`serving.knative.dev/v1beta1`, namespaced).
pub fn domain_mapping_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("serving.knative.dev", "v1beta1", "DomainMapping"),
        "domainmappings",
    )
}

/// ClusterDomainClaim (`networking.internal.knative.dev/v1alpha1`, cluster-scoped).
pub fn cluster_domain_claim_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            "networking.internal.knative.dev",
            "v1alpha1",
            "ClusterDomainClaim",
        ),
        "clusterdomainclaims",
    )
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed; `action` says which (verb, kind, object).
    #[error("{action}: {}", describe(.source))]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    /// The object is not namespaced or has no name/uid (a watch never yields such an object).
    #[error("AppDomain is missing metadata.{0}")]
    MissingMetadata(&'static str),
}

/// A kube error for a status message or an Event: the API server's own words for API errors
/// (`kube::Error`'s Display appends the whole Status struct), the Display otherwise.
fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => {
            format!("{} ({} {})", s.message, s.code, s.reason)
        }
        other => other.to_string(),
    }
}

fn kube_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Kube { action, source }
}

fn backoff_key(obj: &AppDomain) -> String {
    format!(
        "AppDomain/{}/{}",
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

/// Field manager for server-side apply: `tether/<namespace>/<name>`.
pub fn field_manager(namespace: &str, name: &str) -> String {
    format!("tether/{namespace}/{name}")
}

/// Value of [`APPDOMAIN_LABEL`]: `<ns>.<name>` when that is a valid label value (at most 63
/// characters), else the first 32 hex characters of SHA-256 of `<ns>/<name>`.
pub fn appdomain_label_value(namespace: &str, name: &str) -> String {
    let plain = format!("{namespace}.{name}");
    if !plain.is_empty() && crate::naming::is_label_value(&plain) {
        return plain;
    }
    let digest = Sha256::digest(format!("{namespace}/{name}").as_bytes());
    hex::encode(digest)[..32].to_string()
}

/// Reconciles one AppDomain. Counts `tether_reconcile_total{controller="domains"}` and
/// observes `tether_reconcile_duration_seconds`; on failure also shows the error in status and
/// emits a Warning Event before returning it (kube-runtime's error policy cannot await).
pub async fn reconcile(obj: Arc<AppDomain>, ctx: Arc<Context>) -> Result<Action, Error> {
    let measure = ReconcileMeasurer::start(&ctx.metrics, NAME);
    let result = reconcile_inner(&obj, &ctx).await;
    let outcome = match &result {
        Ok(_) => {
            ctx.backoff.succeeded(&backoff_key(&obj));
            "success"
        }
        Err(e) => {
            report_failure(&obj, &ctx, e).await;
            "error"
        }
    };
    measure.count(outcome == "success");
    result
}

/// Requeues a failed AppDomain with per-object exponential backoff (1 s, 2 s, … 5 min).
pub fn error_policy(obj: Arc<AppDomain>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.requeue_failed(NAME, &backoff_key(&obj), err)
}

async fn reconcile_inner(obj: &AppDomain, ctx: &Context) -> Result<Action, Error> {
    let ns = obj.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let name = obj
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingMetadata("name"))?;
    let api: Api<AppDomain> = Api::namespaced(ctx.client.clone(), &ns);

    // A namespace the webhooks skip: nothing there was reviewed (the domain may be anyone's),
    // so tether claims and maps nothing and writes nothing, as for AttachedResources.
    if let Some(policy) = &ctx.policy {
        if policy.skip.contains(&ns) {
            tracing::debug!(
                controller = "domains",
                namespace = %ns,
                name = %name,
                "namespace skipped by tether's webhooks: not reconciled"
            );
            return Ok(Action::requeue(ctx.settings.resync));
        }
    }

    if obj.meta().deletion_timestamp.is_some() {
        if let Some(idx) = obj.finalizers().iter().position(|f| f == FINALIZER) {
            cleanup(obj, &ns, ctx).await?;
            remove_finalizer(&api, &name, idx).await?;
            tracing::info!(controller = NAME, object = %format!("{ns}/{name}"), "cleaned up; finalizer removed");
        }
        return Ok(Action::await_change());
    }

    // The finalizer goes on before anything is created that needs cleaning up.
    let added;
    let obj: &AppDomain = if obj.finalizers().iter().any(|f| f == FINALIZER) {
        obj
    } else {
        added = add_finalizer(&api, obj, &name).await?;
        &added
    };

    let outcome = if obj.spec.domain.trim().is_empty() {
        let c = cond(
            SERVICE_READY,
            "Unknown",
            reasons::DOMAIN_NOT_SET,
            "spec.domain is empty: tether's mutating webhook fills it in when the AppDomain is created; check that the webhook is installed (MutatingWebhookConfiguration) and recreate the AppDomain",
        );
        Outcome {
            claim: Outcome::not_checked(DOMAIN_CLAIMED, SERVICE_READY),
            mapping: Outcome::not_checked(DOMAIN_MAPPING_READY, DOMAIN_CLAIMED),
            service: c,
            url: String::new(),
        }
    } else {
        converge(obj, &ns, &name, ctx).await?
    };

    let new_status = AppDomainStatus {
        domain: obj.spec.domain.clone(),
        url: outcome.url.clone(),
        observed_generation: obj.meta().generation,
        conditions: Vec::new(),
    };
    let old = obj.status.clone().unwrap_or_default();
    let new_status = AppDomainStatus {
        conditions: carry_transition_times(outcome.conditions(), &old.conditions, &now_rfc3339()),
        ..new_status
    };
    if new_status != old {
        write_status(&api, &name, &new_status).await?;
        announce_ready_change(obj, ctx, &old, &new_status).await;
    }
    Ok(Action::requeue(ctx.settings.resync))
}

/// Steps 1–4 of SPEC 6.2 for an AppDomain with a domain.
async fn converge(obj: &AppDomain, ns: &str, name: &str, ctx: &Context) -> Result<Outcome, Error> {
    let domain = obj.spec.domain.trim();
    let svc = obj.spec.service_ref.name.trim();

    // 1. The Knative Service.
    let service = if svc.is_empty() {
        Some(cond(
            SERVICE_READY,
            "False",
            reasons::SERVICE_NOT_FOUND,
            "spec.serviceRef.name is empty: set it to the Knative Service (serving.knative.dev/v1) in this namespace that serves the domain",
        ))
    } else {
        let ksvc: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), ns, &knative_service_resource());
        let found = ksvc.get_opt(svc).await.map_err(kube_err(format!(
            "getting Knative Service {ns}/{svc} (services.serving.knative.dev)"
        )))?;
        match found {
            Some(_) => None,
            None => Some(cond(
                SERVICE_READY,
                "False",
                reasons::SERVICE_NOT_FOUND,
                format!(
                    "Knative Service {ns}/{svc} (serving.knative.dev/v1) does not exist: deploy it, or point spec.serviceRef.name at the Knative Service that should serve {domain}"
                ),
            )),
        }
    };
    if let Some(service) = service {
        return Ok(Outcome {
            service,
            claim: Outcome::not_checked(DOMAIN_CLAIMED, SERVICE_READY),
            mapping: Outcome::not_checked(DOMAIN_MAPPING_READY, DOMAIN_CLAIMED),
            url: String::new(),
        });
    }
    let service = cond(
        SERVICE_READY,
        "True",
        reasons::SERVICE_FOUND,
        format!("Knative Service {ns}/{svc} exists"),
    );

    // 2. The ClusterDomainClaim.
    let claim = ensure_claim(domain, ns, name, ctx).await?;
    if claim.status != "True" {
        return Ok(Outcome {
            service,
            claim,
            mapping: Outcome::not_checked(DOMAIN_MAPPING_READY, DOMAIN_CLAIMED),
            url: String::new(),
        });
    }

    // 3. and 4. The DomainMapping and its status.
    let (mapping, url) = ensure_mapping(obj, domain, ns, name, svc, ctx).await?;
    Ok(Outcome {
        service,
        claim,
        mapping,
        url,
    })
}

/// Deletes the ClusterDomainClaim tether created for this namespace's domain, unless another
/// live AppDomain in the namespace still uses that domain.
async fn cleanup(obj: &AppDomain, ns: &str, ctx: &Context) -> Result<(), Error> {
    let domain = obj.spec.domain.trim();
    if domain.is_empty() {
        return Ok(());
    }
    let api: Api<DynamicObject> =
        Api::all_with(ctx.client.clone(), &cluster_domain_claim_resource());
    let Some(claim) = api
        .get_opt(domain)
        .await
        .map_err(kube_err(format!("getting ClusterDomainClaim {domain}")))?
    else {
        return Ok(());
    };
    if !is_tethers(&claim) || claim_namespace(&claim) != ns {
        tracing::info!(
            controller = NAME,
            domain,
            namespace = ns,
            "ClusterDomainClaim is not tether's claim for this namespace; leaving it"
        );
        return Ok(());
    }
    let siblings: Api<AppDomain> = Api::namespaced(ctx.client.clone(), ns);
    let others = siblings
        .list(&ListParams::default())
        .await
        .map_err(kube_err(format!("listing AppDomains in {ns}")))?;
    let my_uid = obj.meta().uid.as_deref();
    if let Some(sibling) = others.items.iter().find(|a| {
        a.meta().uid.as_deref() != my_uid
            && a.meta().deletion_timestamp.is_none()
            && a.spec.domain.trim() == domain
    }) {
        tracing::info!(controller = NAME, domain, namespace = ns, sibling = %sibling.name_any(), "ClusterDomainClaim still used by another AppDomain; keeping it");
        return Ok(());
    }
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: claim.meta().uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(domain, &dp).await {
        Ok(_) => {
            tracing::info!(
                controller = NAME,
                domain,
                namespace = ns,
                "deleted ClusterDomainClaim"
            );
            Ok(())
        }
        // Gone already, or replaced by a different claim (uid precondition): not ours to delete.
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(Error::Kube {
            action: format!("deleting ClusterDomainClaim {domain}"),
            source: e,
        }),
    }
}

async fn add_finalizer(
    api: &Api<AppDomain>,
    obj: &AppDomain,
    name: &str,
) -> Result<AppDomain, Error> {
    // A JSON patch guarded by a test of the resourceVersion: it fails (and is retried)
    // instead of clobbering a finalizer someone added concurrently. (Not a test of
    // `/metadata/finalizers` against null: JSON patch implementations disagree on whether a
    // missing member equals null.)
    let rv = obj
        .meta()
        .resource_version
        .clone()
        .ok_or(Error::MissingMetadata("resourceVersion"))?;
    let patch: json_patch::Patch = serde_json::from_value(if obj.finalizers().is_empty() {
        json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ])
    } else {
        json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
        ])
    })
    .expect("static JSON patch shape");
    api.patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .map_err(kube_err(format!(
            "adding finalizer {FINALIZER} to AppDomain {name}"
        )))
}

async fn remove_finalizer(api: &Api<AppDomain>, name: &str, idx: usize) -> Result<(), Error> {
    let path = format!("/metadata/finalizers/{idx}");
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": path, "value": FINALIZER},
        {"op": "remove", "path": path},
    ]))
    .expect("static JSON patch shape");
    match api
        .patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::Kube {
            action: format!("removing finalizer {FINALIZER} from AppDomain {name}"),
            source: e,
        }),
    }
}

/// Whether the Knative kinds this controller needs are served; `Err` says what is missing.
async fn knative_served(ctx: &Context) -> Result<(), String> {
    for ar in [
        knative_service_resource(),
        domain_mapping_resource(),
        cluster_domain_claim_resource(),
    ] {
        ctx.resolver
            .resolve(&ar.group, &ar.version, &ar.kind)
            .await
            .map_err(|e| format!("{} {}: {e}", ar.api_version, ar.kind))?;
    }
    Ok(())
}

/// Period of the "is Knative installed yet?" check while it is not.
const KNATIVE_POLL: Duration = Duration::from_secs(60);

/// Runs the AppDomain controller until `shutdown` resolves: watches AppDomains, the
/// DomainMappings they own, ClusterDomainClaims (mapped to the AppDomains whose
/// `spec.domain` is the claim's name) and Knative Services (mapped to the AppDomains in that
/// namespace whose `serviceRef` names them); healthy objects are requeued every
/// `settings.resync`. Waits (checking every minute) while Knative Serving is not installed.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let shutdown = shutdown.shared();
    loop {
        match knative_served(&ctx).await {
            Ok(()) => break,
            Err(why) => {
                tracing::warn!(controller = NAME, missing = %why, "Knative Serving is not available; AppDomains are not reconciled until it is (checking again in 60 s)");
                tokio::select! {
                    _ = shutdown.clone() => return,
                    _ = tokio::time::sleep(KNATIVE_POLL) => {}
                }
            }
        }
    }

    let client = ctx.client.clone();
    let controller = Controller::new(
        Api::<AppDomain>::all(client.clone()),
        watcher::Config::default(),
    )
    .with_config(super::controller_config());
    let pruner = super::prune_backoff(
        ctx.clone(),
        controller.store(),
        "AppDomain/",
        |a: &AppDomain| backoff_key(a),
    );
    let by_domain = controller.store();
    let by_service = controller.store();
    let dm = domain_mapping_resource();
    let cdc = cluster_domain_claim_resource();
    let ksvc = knative_service_resource();
    tracing::info!(controller = NAME, "starting");
    let running = controller
        .owns_with(
            Api::<DynamicObject>::all_with(client.clone(), &dm),
            dm,
            watcher::Config::default(),
        )
        .watches_with(
            Api::<DynamicObject>::all_with(client.clone(), &cdc),
            cdc,
            watcher::Config::default(),
            move |claim: DynamicObject| {
                let name = claim.name_any();
                by_domain
                    .state()
                    .iter()
                    .filter(|a| a.spec.domain.trim() == name)
                    .map(|a| ObjectRef::from_obj(&**a))
                    .collect::<Vec<_>>()
            },
        )
        .watches_with(
            Api::<DynamicObject>::all_with(client.clone(), &ksvc),
            ksvc,
            watcher::Config::default(),
            move |svc: DynamicObject| {
                let (ns, name) = (svc.namespace(), svc.name_any());
                by_service
                    .state()
                    .iter()
                    .filter(|a| a.namespace() == ns && a.spec.service_ref.name.trim() == name)
                    .map(|a| ObjectRef::from_obj(&**a))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(controller = NAME, object = %obj, "reconciled"),
                Err(e) => tracing::debug!(controller = NAME, error = %e, "controller event"),
            }
        });
    // The pruner only ends if the store's writer went away, i.e. the controller ended too.
    tokio::select! {
        _ = running => {}
        _ = pruner => {}
    }
    tracing::info!(controller = NAME, "stopped");
}
