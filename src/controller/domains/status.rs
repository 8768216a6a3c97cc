//! AppDomain status: the conditions a reconcile arrives at, writing them, and the Events
//! that announce a change of `Ready` or a failure.

use super::*;

pub(super) fn cond(
    type_: &str,
    status: &str,
    reason: &str,
    message: impl Into<String>,
) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: message.into(),
        last_transition_time: None,
        observed_generation: None,
    }
}

/// What the reconcile found, before it becomes conditions.
pub(super) struct Outcome {
    pub(super) service: Condition,
    pub(super) claim: Condition,
    pub(super) mapping: Condition,
    pub(super) url: String,
}

impl Outcome {
    pub(super) fn not_checked(type_: &str, after: &str) -> Condition {
        cond(
            type_,
            "Unknown",
            reasons::NOT_CHECKED,
            format!("not checked until {after} is True"),
        )
    }

    /// `Ready` is True when the three others are; otherwise it carries the first failing
    /// condition's reason and message, so `kubectl get apd` shows what to fix.
    pub(super) fn conditions(self) -> Vec<Condition> {
        let ready = match [&self.service, &self.claim, &self.mapping]
            .into_iter()
            .find(|c| c.status != "True")
        {
            None => cond(
                READY,
                "True",
                reasons::READY,
                if self.url.is_empty() {
                    "the DomainMapping is Ready".to_string()
                } else {
                    format!("{} is served by the Knative Service", self.url)
                },
            ),
            Some(c) => cond(
                READY,
                if c.status == "False" {
                    "False"
                } else {
                    "Unknown"
                },
                &c.reason,
                c.message.clone(),
            ),
        };
        vec![self.service, self.claim, self.mapping, ready]
    }
}

/// Status as a merge patch; empty `domain`/`url`/`observedGeneration` are sent as `null` so a
/// value that went away is removed rather than left behind.
pub(super) async fn write_status(
    api: &Api<AppDomain>,
    name: &str,
    status: &AppDomainStatus,
) -> Result<(), Error> {
    let mut body = serde_json::to_value(status).unwrap_or_else(|_| json!({}));
    if let Some(m) = body.as_object_mut() {
        for k in ["domain", "url", "observedGeneration"] {
            m.entry(k).or_insert(Value::Null);
        }
    }
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": body })),
    )
    .await
    .map_err(kube_err(format!("writing status of AppDomain {name}")))?;
    Ok(())
}

pub(super) fn ready_of(status: &AppDomainStatus) -> Option<&Condition> {
    status.conditions.iter().find(|c| c.type_ == READY)
}

/// Emits an Event when `Ready` changed status or reason: Normal when it became True, Warning
/// otherwise (so `kubectl describe apd` shows what to fix).
pub(super) async fn announce_ready_change(
    obj: &AppDomain,
    ctx: &Context,
    old: &AppDomainStatus,
    new: &AppDomainStatus,
) {
    let Some(now) = ready_of(new) else { return };
    let before = ready_of(old);
    if before.is_some_and(|b| b.status == now.status && b.reason == now.reason) {
        return;
    }
    let type_ = if now.status == "True" {
        EventType::Normal
    } else {
        EventType::Warning
    };
    publish(obj, ctx, type_, &now.reason, "Reconcile", &now.message).await;
}

/// Shows a failed reconcile in the status (`Ready=False`, `ReconcileError`, written only when
/// it changes) and as a Warning Event; best effort (the API may be what failed).
pub(super) async fn report_failure(obj: &AppDomain, ctx: &Context, err: &Error) {
    let message = err.to_string();
    publish(
        obj,
        ctx,
        EventType::Warning,
        reasons::RECONCILE_ERROR,
        "Reconcile",
        &message,
    )
    .await;
    if obj.meta().deletion_timestamp.is_some() {
        return;
    }
    let (Some(ns), Some(name)) = (obj.namespace(), obj.meta().name.clone()) else {
        return;
    };
    let old = obj.status.clone().unwrap_or_default();
    let mut conds: Vec<Condition> = old
        .conditions
        .iter()
        .filter(|c| c.type_ != READY)
        .cloned()
        .collect();
    conds.push(cond(READY, "False", reasons::RECONCILE_ERROR, message));
    let new = AppDomainStatus {
        conditions: carry_transition_times(conds, &old.conditions, &now_rfc3339()),
        ..old.clone()
    };
    if new != old {
        let api: Api<AppDomain> = Api::namespaced(ctx.client.clone(), &ns);
        if let Err(e) = write_status(&api, &name, &new).await {
            tracing::debug!(controller = NAME, error = %e, "could not record the failure in status");
        }
    }
}

pub(super) async fn publish(
    obj: &AppDomain,
    ctx: &Context,
    type_: EventType,
    reason: &str,
    action: &str,
    note: &str,
) {
    let mut reference: ObjectReference = obj.object_ref(&());
    // The recorder deduplicates on the whole reference: a changing resourceVersion would
    // defeat that.
    reference.resource_version = None;
    // Events API limits: reason ≤ 128 bytes, note ≤ 1 kB.
    let ev = Event {
        type_,
        reason: crate::text::cut_bytes(reason, 128).to_string(),
        note: Some(crate::text::cut_bytes(note, 1024).to_string()),
        action: action.to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &reference).await {
        tracing::warn!(controller = NAME, object = %backoff_key(obj), error = %e, "could not publish an Event");
    }
}
