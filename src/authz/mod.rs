//! Access reviews: may this identity do this verb on this resource? (SPEC 5.1 items 8, 10;
//! 5.4 item 4.)
//!
//! [`AccessReviewer`] has three implementations: [`sar::SarReviewer`] asks the API server
//! (SubjectAccessReview), [`RbacFileReviewer`] evaluates an RBAC file offline, and
//! [`AllowAll`] allows everything (standalone without an RBAC file, which says so in every
//! response). [`cache::CachedReviewer`] sits in front of any of them.

pub mod cache;
pub mod rbac_file;
pub mod sar;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use thiserror::Error;

/// `userInfo.extra`: more about the user (scopes, the credential's id), as the
/// authenticator gave it.
pub type Extra<'a> = BTreeMap<Cow<'a, str>, Vec<Cow<'a, str>>>;

/// Who is asking: the requesting user (from `request.userInfo`, borrowed from the request
/// body: six access checks per admission request copy nothing) or tether's own service
/// account. The cache keeps an owned copy ([`Identity::to_owned_static`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Identity<'a> {
    pub user: Cow<'a, str>,
    pub uid: Option<Cow<'a, str>>,
    pub groups: Held<'a, [Cow<'a, str>], Vec<Cow<'a, str>>>,
    pub extra: Held<'a, Extra<'a>, Extra<'a>>,
}

/// A `Cow` for parts that hold `Cow`s themselves. `Cow<'a, [Cow<'a, str>]>` names the owned
/// form through `ToOwned`, which makes the type invariant in `'a`: an identity borrowed from
/// one request could then not be probed against the cache's `'static` keys. This one is
/// covariant. It compares and hashes as the value it holds, borrowed or owned alike.
pub enum Held<'a, B: ?Sized, O> {
    Borrowed(&'a B),
    Owned(O),
}

impl<B: ?Sized, O: std::borrow::Borrow<B>> std::ops::Deref for Held<'_, B, O> {
    type Target = B;
    fn deref(&self) -> &B {
        match self {
            Held::Borrowed(b) => b,
            Held::Owned(o) => o.borrow(),
        }
    }
}

impl<B: ?Sized, O: Clone> Clone for Held<'_, B, O> {
    fn clone(&self) -> Self {
        match self {
            Held::Borrowed(b) => Held::Borrowed(b),
            Held::Owned(o) => Held::Owned(o.clone()),
        }
    }
}

impl<B: ?Sized, O: Default> Default for Held<'_, B, O> {
    fn default() -> Self {
        Held::Owned(O::default())
    }
}

impl<B: ?Sized + fmt::Debug, O: std::borrow::Borrow<B>> fmt::Debug for Held<'_, B, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl<B: ?Sized + PartialEq, O: std::borrow::Borrow<B>> PartialEq for Held<'_, B, O> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<B: ?Sized + Eq, O: std::borrow::Borrow<B>> Eq for Held<'_, B, O> {}

impl<B: ?Sized + std::hash::Hash, O: std::borrow::Borrow<B>> std::hash::Hash for Held<'_, B, O> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (**self).hash(state)
    }
}

impl Identity<'_> {
    /// tether's service account, with the groups the API server gives every service account.
    pub fn service_account(namespace: &str, name: &str) -> Identity<'static> {
        Identity {
            user: format!("system:serviceaccount:{namespace}:{name}").into(),
            uid: None,
            groups: Held::Owned(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}").into(),
                "system:authenticated".into(),
            ]),
            extra: Held::Owned(Extra::new()),
        }
    }

    /// The same identity, owning its parts (a cache key outlives the request).
    pub fn to_owned_static(&self) -> Identity<'static> {
        fn own(s: &str) -> Cow<'static, str> {
            Cow::Owned(s.to_string())
        }
        Identity {
            user: Cow::Owned(self.user.to_string()),
            uid: self.uid.as_ref().map(|u| Cow::Owned(u.to_string())),
            groups: Held::Owned(self.groups.iter().map(|g| own(g)).collect()),
            extra: Held::Owned(
                self.extra
                    .iter()
                    .map(|(k, vs)| (own(k), vs.iter().map(|v| own(v)).collect()))
                    .collect(),
            ),
        }
    }
}

/// Which of the two identities a review is for; a bounded metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    User,
    Tether,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Tether => "tether",
        }
    }
}

/// The resource half of a SubjectAccessReview. Borrowed where it can be: an admission
/// request asks six of these about one resource and namespace, and a cache hit should copy
/// nothing; the cache keeps an owned copy ([`ResourceAttributes::to_owned_static`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceAttributes<'a> {
    pub verb: Cow<'a, str>,
    pub group: Cow<'a, str>,
    pub version: Cow<'a, str>,
    pub resource: Cow<'a, str>,
    /// `log` of `pods/log`; `None` for the resource itself.
    pub subresource: Option<Cow<'a, str>>,
    pub namespace: Option<Cow<'a, str>>,
    pub name: Option<Cow<'a, str>>,
}

impl ResourceAttributes<'_> {
    /// The same question, owning its text (a cache key outlives the request).
    pub fn to_owned_static(&self) -> ResourceAttributes<'static> {
        let own = |s: &Cow<'_, str>| Cow::Owned(s.to_string());
        ResourceAttributes {
            verb: own(&self.verb),
            group: own(&self.group),
            version: own(&self.version),
            resource: own(&self.resource),
            subresource: self.subresource.as_ref().map(own),
            namespace: self.namespace.as_ref().map(own),
            name: self.name.as_ref().map(own),
        }
    }
}

impl fmt::Display for ResourceAttributes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let resource = match &self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.to_string(),
        };
        let res = if self.group.is_empty() {
            resource
        } else {
            format!("{resource}.{}", self.group)
        };
        write!(f, "{} {res}", self.verb)?;
        if let Some(n) = &self.name {
            write!(f, " {n:?}")?;
        }
        match &self.namespace {
            Some(ns) => write!(f, " in namespace {ns:?}"),
            None => write!(f, " cluster-wide"),
        }
    }
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessDecision {
    pub allowed: bool,
    /// The authorizer's reason, if it gave one. Shared, so that a cached answer is handed
    /// out (five or six times per admission request) without copying it.
    pub reason: std::sync::Arc<str>,
}

/// The review could not be answered; callers fail closed (deny with 500).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum AuthzError {
    #[error("the access review could not run: {0}")]
    Failed(String),
    #[error("the access review timed out after {0} ms")]
    Timeout(u64),
}

#[async_trait]
pub trait AccessReviewer: Send + Sync {
    async fn review(
        &self,
        who: &Identity<'_>,
        attrs: &ResourceAttributes<'_>,
    ) -> Result<AccessDecision, AuthzError>;

    /// The same answer as [`AccessReviewer::review`] without waiting, from a reviewer that
    /// evaluates locally; `None` from one that must ask (the caller then awaits `review`).
    /// Spares the local reviewers a boxed future per check.
    fn review_now(
        &self,
        _who: &Identity<'_>,
        _attrs: &ResourceAttributes<'_>,
    ) -> Option<Result<AccessDecision, AuthzError>> {
        None
    }
}

/// Standalone without an RBAC file: everything is allowed, and the standalone warning on
/// every response says so.
pub struct AllowAll;

impl AllowAll {
    fn answer() -> AccessDecision {
        static REASON: std::sync::LazyLock<std::sync::Arc<str>> = std::sync::LazyLock::new(|| {
            "standalone without --rbac-file: access reviews are not evaluated".into()
        });
        AccessDecision {
            allowed: true,
            reason: REASON.clone(),
        }
    }
}

#[async_trait]
impl AccessReviewer for AllowAll {
    async fn review(
        &self,
        _who: &Identity<'_>,
        _attrs: &ResourceAttributes<'_>,
    ) -> Result<AccessDecision, AuthzError> {
        Ok(Self::answer())
    }

    fn review_now(
        &self,
        _who: &Identity<'_>,
        _attrs: &ResourceAttributes<'_>,
    ) -> Option<Result<AccessDecision, AuthzError>> {
        Some(Ok(Self::answer()))
    }
}

/// Offline access reviews from an RBAC file.
pub struct RbacFileReviewer(pub rbac_file::RbacFile);

impl RbacFileReviewer {
    fn answer(&self, who: &Identity<'_>, attrs: &ResourceAttributes<'_>) -> AccessDecision {
        let d = self.0.check(&rbac_file::AccessQuery {
            user: &who.user,
            groups: &who.groups[..],
            verb: &attrs.verb,
            group: &attrs.group,
            resource: &attrs.resource,
            subresource: attrs.subresource.as_deref(),
            namespace: attrs.namespace.as_deref(),
            name: attrs.name.as_deref(),
        });
        AccessDecision {
            allowed: d.allowed,
            reason: d.reason.into(),
        }
    }
}

#[async_trait]
impl AccessReviewer for RbacFileReviewer {
    async fn review(
        &self,
        who: &Identity<'_>,
        attrs: &ResourceAttributes<'_>,
    ) -> Result<AccessDecision, AuthzError> {
        Ok(self.answer(who, attrs))
    }

    fn review_now(
        &self,
        who: &Identity<'_>,
        attrs: &ResourceAttributes<'_>,
    ) -> Option<Result<AccessDecision, AuthzError>> {
        Some(Ok(self.answer(who, attrs)))
    }
}
