//! Reconcile-time policy (SPEC 6; SECURITY.md, "Reconcile-time policy"): may the
//! AttachedResource reconciler act on this object with tether's own rights?
//!
//! The reconciler gathers the facts (the namespace, the stamp's verification against the
//! current keys, the kind rules 5.1.1–5.1.7 against the current configuration, tether's own
//! access reviews of 5.1.8) and [`decide`] turns them into a [`Gate`], in this order:
//!
//! 1. a namespace the webhooks skip → [`Gate::Skip`]: nothing is written at all;
//! 2. a stamp that does not verify → [`Gate::Deny`] (`NotAdmitted`, `StampMismatch`,
//!    `StampKeyRetired`);
//! 3. a kind rule violated → `KindNotAllowed` (ban/allow list, scope) or `SpecNotAllowed`;
//! 4. tether may not do one of its verbs → `TetherForbidden`; a review that could not run
//!    → [`Gate::Retry`] (transient: no status change, the reconcile fails and backs off).
//!
//! Everything here is pure: data in, decision out.

use std::collections::BTreeSet;

use crate::crd::{AttachedResourceStatus, Condition};
use crate::policy::Violation;
use crate::stamp::StampError;

/// The condition type of a refusal.
pub const POLICY_DENIED: &str = "PolicyDenied";
/// Bounded reasons besides [`StampError::reason`].
pub const REASON_KIND_NOT_ALLOWED: &str = "KindNotAllowed";
pub const REASON_SPEC_NOT_ALLOWED: &str = "SpecNotAllowed";
pub const REASON_TETHER_FORBIDDEN: &str = "TetherForbidden";

/// The namespaces the webhooks skip, so the controller skips them too: the configured ones
/// plus tether's own namespace, always.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkipNamespaces(BTreeSet<String>);

impl SkipNamespaces {
    /// `configured` (`--skip-namespaces`; blanks ignored) plus `own` (POD_NAMESPACE).
    pub fn new<S: AsRef<str>>(configured: &[S], own: &str) -> Self {
        let mut set: BTreeSet<String> = configured
            .iter()
            .map(|s| s.as_ref().trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        set.insert(own.to_string());
        SkipNamespaces(set)
    }

    pub fn contains(&self, ns: &str) -> bool {
        self.0.contains(ns)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

/// One of tether's own access reviews, answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessAnswer {
    Allowed,
    /// Denied; the text is the question ("create horizontalpodautoscalers.autoscaling in
    /// namespace \"payments\"").
    Denied(String),
    /// The review could not run; the text says why.
    Failed(String),
}

/// What the reconciler found out, in the order it checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts<'a> {
    pub namespace: &'a str,
    pub skip: &'a SkipNamespaces,
    /// `KeyRing::verify` of the stored stamp.
    pub stamp: Result<(), StampError>,
    /// Violations of 5.1.1–5.1.6 and, when the kind resolved to a cluster-scoped resource,
    /// 5.1.7.
    pub violations: &'a [Violation],
    /// tether's own reviews (empty when not asked: an earlier check failed, or the kind is
    /// unknown to discovery, which the reconciler reports as before).
    pub access: &'a [AccessAnswer],
}

/// A refusal: a bounded reason (condition reason and metric label) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub reason: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// A namespace the webhooks skip: no copies, no writes.
    Skip,
    /// Refused: report it, touch no copy.
    Deny(Denial),
    /// A check could not be answered: touch nothing, try again later.
    Retry(String),
    /// Act.
    Act,
}

/// The fix for an object the webhooks never reviewed (or reviewed under other keys).
fn re_review_hint(namespace: &str) -> String {
    format!(
        "re-apply it, or run `kubectl annotate attachedresource <name> -n {namespace} \
         tether.dev/review=<now> --overwrite`, so tether's webhooks review it"
    )
}

/// Decides, in the documented order.
pub fn decide(f: &Facts<'_>) -> Gate {
    if f.skip.contains(f.namespace) {
        return Gate::Skip;
    }
    if let Err(e) = &f.stamp {
        let why = match e {
            StampError::Missing => "tether's admission webhooks never reviewed this object \
                 (it was stored while they were not called: not registered, an outage under \
                 failurePolicy Ignore, or created before tether stamped objects)"
                .to_string(),
            StampError::UnknownKey(id) => format!(
                "it was admitted under stamp key {id:?}, which tether no longer has (the key \
                 was rotated out)"
            ),
            StampError::Malformed | StampError::Mismatch => "its admission stamp does not \
                 match its namespace, name and spec (the spec changed without a review, or the \
                 stamp was copied from another object)"
                .to_string(),
            StampError::Keys { why, .. } => why.clone(),
        };
        return Gate::Deny(Denial {
            reason: e.reason(),
            message: format!("{why}; {}", re_review_hint(f.namespace)),
        });
    }
    if !f.violations.is_empty() {
        let kind_level = f
            .violations
            .iter()
            .any(|v| v.field == "spec.object.kind" || v.field == "spec.object.apiVersion");
        let list: Vec<String> = f
            .violations
            .iter()
            .map(|v| format!("{}: {}", v.field, v.message))
            .collect();
        return Gate::Deny(Denial {
            reason: if kind_level {
                REASON_KIND_NOT_ALLOWED
            } else {
                REASON_SPEC_NOT_ALLOWED
            },
            message: format!(
                "the current policy refuses it: {}; change the spec (or ask the platform team \
                 about the policy)",
                list.join("; ")
            ),
        });
    }
    let failed: Vec<&str> = f
        .access
        .iter()
        .filter_map(|a| match a {
            AccessAnswer::Failed(m) => Some(m.as_str()),
            _ => None,
        })
        .collect();
    let denied: Vec<&str> = f
        .access
        .iter()
        .filter_map(|a| match a {
            AccessAnswer::Denied(q) => Some(q.as_str()),
            _ => None,
        })
        .collect();
    if !denied.is_empty() {
        return Gate::Deny(Denial {
            reason: REASON_TETHER_FORBIDDEN,
            message: format!(
                "tether's own service account may not {}; a cluster admin must grant it (the \
                 chart's ClusterRole), or remove this AttachedResource",
                denied.join(", ")
            ),
        });
    }
    if !failed.is_empty() {
        return Gate::Retry(format!(
            "tether's own access review could not run: {}",
            failed.join("; ")
        ));
    }
    Gate::Act
}

/// The status of a refused object: `PolicyDenied` True and `Ready` False with the denial's
/// reason; the message says how many existing copies were left in place. The target entries
/// stay as they were (those copies are untouched). `now` stamps conditions that changed.
pub fn denied_status(
    old: &AttachedResourceStatus,
    denial: &Denial,
    existing_copies: usize,
    generation: Option<i64>,
    now: &str,
) -> AttachedResourceStatus {
    let left = match existing_copies {
        0 => "no copies exist".to_string(),
        1 => "1 existing copy left in place, not updated".to_string(),
        n => format!("{n} existing copies left in place, not updated"),
    };
    let message = crate::text::cut_bytes_marked(
        &format!("tether refuses to act on it: {}; {left}", denial.message),
        2048,
    );
    let cond = |type_: &str, status: &str| {
        let new = Condition {
            type_: type_.into(),
            status: status.into(),
            reason: denial.reason.into(),
            message: message.clone(),
            last_transition_time: None,
            observed_generation: generation,
        };
        super::conditions::carry_transition_time(new, &old.conditions, now)
    };
    let mut conditions: Vec<Condition> = old
        .conditions
        .iter()
        .filter(|c| c.type_ != "Ready" && c.type_ != POLICY_DENIED)
        .cloned()
        .collect();
    conditions.push(cond("Ready", "False"));
    conditions.push(cond(POLICY_DENIED, "True"));
    AttachedResourceStatus {
        observed_generation: generation,
        targets: old.targets.clone(),
        conditions,
    }
}

/// Whether going from `old` to `new` is a new or changed refusal (worth a Warning Event).
pub fn denial_changed(old: &AttachedResourceStatus, new: &AttachedResourceStatus) -> bool {
    let find = |s: &AttachedResourceStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == POLICY_DENIED)
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    };
    find(old) != find(new)
}

#[cfg(test)]
mod tests;
