//! SubjectAccessReviews against the API server.

use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes as SarResource, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};

use super::{AccessDecision, AccessReviewer, AuthzError, Identity, ResourceAttributes};

pub struct SarReviewer {
    api: Api<SubjectAccessReview>,
    timeout: Duration,
}

impl SarReviewer {
    pub fn new(client: Client, timeout: Duration) -> Self {
        Self {
            api: Api::all(client),
            timeout,
        }
    }
}

/// The SubjectAccessReview body for a question: every part of the identity (GKE and others
/// deny when `extra` is missing), and the resource attributes.
pub fn review_body(who: &Identity<'_>, attrs: &ResourceAttributes<'_>) -> SubjectAccessReview {
    SubjectAccessReview {
        metadata: Default::default(),
        spec: SubjectAccessReviewSpec {
            user: Some(who.user.to_string()),
            uid: who
                .uid
                .as_deref()
                .filter(|u| !u.is_empty())
                .map(str::to_string),
            groups: (!who.groups.is_empty())
                .then(|| who.groups.iter().map(|g| g.to_string()).collect()),
            extra: (!who.extra.is_empty()).then(|| {
                who.extra
                    .iter()
                    .map(|(k, vs)| (k.to_string(), vs.iter().map(|v| v.to_string()).collect()))
                    .collect()
            }),
            resource_attributes: Some(SarResource {
                verb: Some(attrs.verb.to_string()),
                group: Some(attrs.group.to_string()),
                version: Some(attrs.version.to_string()),
                resource: Some(attrs.resource.to_string()),
                subresource: attrs.subresource.as_deref().map(str::to_string),
                namespace: attrs.namespace.as_deref().map(str::to_string),
                name: attrs.name.as_deref().map(str::to_string),
                ..Default::default()
            }),
            non_resource_attributes: None,
        },
        status: None,
    }
}

#[async_trait]
impl AccessReviewer for SarReviewer {
    async fn review(
        &self,
        who: &Identity<'_>,
        attrs: &ResourceAttributes<'_>,
    ) -> Result<AccessDecision, AuthzError> {
        let body = review_body(who, attrs);
        let pp = PostParams::default();
        let call = self.api.create(&pp, &body);
        let created = match tokio::time::timeout(self.timeout, call).await {
            Err(_) => return Err(AuthzError::Timeout(self.timeout.as_millis() as u64)),
            Ok(Err(e)) => return Err(AuthzError::Failed(e.to_string())),
            Ok(Ok(r)) => r,
        };
        let Some(status) = created.status else {
            return Err(AuthzError::Failed(
                "the API server returned a SubjectAccessReview without status".into(),
            ));
        };
        let mut reason = status.reason.unwrap_or_default();
        if let Some(err) = status.evaluation_error.filter(|e| !e.is_empty()) {
            if !status.allowed {
                reason = if reason.is_empty() {
                    format!("evaluation error: {err}")
                } else {
                    format!("{reason}; evaluation error: {err}")
                };
            }
        }
        Ok(AccessDecision {
            allowed: status.allowed && !status.denied.unwrap_or(false),
            reason: reason.into(),
        })
    }
}
