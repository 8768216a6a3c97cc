//! A **fake** Kubernetes API server for tether's integration tests.
//!
//! There is no kube-apiserver on the test machines, yet tether's cluster code (discovery,
//! SubjectAccessReviews, reflectors, controllers doing CRUD / watch / server-side apply /
//! finalizers) must be exercised with the *real* `kube` 5 client. This module serves enough of
//! the Kubernetes REST API over real TLS on `127.0.0.1` (never any other address) for that:
//!
//! * legacy discovery (`/api`, `/api/v1`, `/apis`, `/apis/{g}`, `/apis/{g}/{v}`) and aggregated
//!   discovery (`Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`),
//!   from a resource table that tests may change at runtime ([`FakeApiServer::add_resource`]);
//! * a generic in-memory object store for every resource in that table: GET, LIST (label and
//!   field selectors), WATCH (newline-delimited JSON events from a resourceVersion), POST, PUT,
//!   PATCH (merge, JSON, strategic-as-merge, server-side apply), DELETE (finalizers, owner GC),
//!   DELETE collection, and the `/status` subresource;
//! * bearer-token identities ([`FakeApiServer::add_token`], [`Identity`]) and the admission
//!   chain (webhooks registered by stored webhook configurations, see below);
//! * RBAC (`fake_apiserver/rbac.rs`): every request of an identity outside `system:masters`
//!   is authorised from the stored Role/ClusterRole/(Cluster)RoleBinding objects (403 with
//!   upstream's wording otherwise, see [`FakeApiServer::forbidden`]);
//! * SubjectAccessReviews answered by a test-set rule ([`FakeApiServer::set_access_rule`];
//!   allow-all by default) or from the RBAC objects
//!   ([`FakeApiServer::answer_access_reviews_from_rbac`]);
//! * a request log and fault injection ([`FakeApiServer::fail`]).
//!
//! Errors are real `metav1.Status` bodies so `kube::Error::Api` parses them.
//!
//! Layout: this file holds the handle, connection plumbing, the store and routing;
//! `fake_apiserver/` one file per concern: `normalise.rs` (decode, defaults, canonical
//! values, 422 validation), `admission.rs` (webhook chain), `rbac.rs` (authorizer),
//! `patch.rs` (patch types, server-side apply), `selectors.rs`, `watch.rs`, `discovery.rs`,
//! `gc.rs` (the owner index the garbage collector reads), `labels.rs` (the label index an
//! equality selector reads: a LIST, WATCH or DELETE-collection costs what it selects, not
//! the namespace).
//!
//! # Simplifications (deliberate; grow them when a test needs more)
//! * **Strategic merge patch** is applied as a JSON merge patch (RFC 7386): lists are replaced
//!   whole, never merged by key.
//! * **Server-side apply** keeps, per object and per field manager, the last applied
//!   configuration. Ownership is coarse: a manager owns the leaf paths of its last applied config
//!   (lists are atomic leaves). Re-applying without a field it applied before removes that field
//!   unless another manager's applied config still has it; a different value for a leaf another
//!   manager applied is a 409 conflict unless `force=true` (which takes ownership). Writes by
//!   PUT/merge/JSON patch are not tracked as owners. `managedFields` is not populated (neither
//!   in stored objects nor in what webhooks see). The body must be JSON (which `kube` sends;
//!   JSON is YAML). Applied configs keep the values as sent, so a quantity applied as
//!   `"1000m"` (stored as `"1"`) is disowned by the next non-apply write.
//! * **Generation** bumps when anything outside `metadata` (and outside `status` for resources
//!   with the status subresource) changes.
//! * **Watch**: all history is kept (unless [`FakeApiServer::compact_watch_history`] is called,
//!   after which older resourceVersions get a 410 `Expired` ERROR event). A label-selector
//!   watch sees an update that makes an object leave the selector as DELETED with the previous
//!   state, and one that makes it enter as ADDED (as the watch cache does). No periodic
//!   bookmarks; `sendInitialEvents=true` is supported (ADDED events, then the
//!   initial-events-end BOOKMARK).
//! * **Owner-reference GC**: when an object goes away, dependents none of whose owners still
//!   exist are deleted (background propagation; `propagationPolicy: Orphan` skips it). No
//!   foreground deletion, no `orphan` finalizer. Deleting a namespace does not empty it.
//! * **LIST** pages with `limit`/`continue`; a later page continues after the last key in the
//!   *current* store rather than a snapshot (a token older than a compaction gets 410).
//!   `resourceVersionMatch` is ignored. Items of built-in kinds carry no apiVersion/kind.
//! * **Decoding and validation** (`fake_apiserver/normalise.rs`): built-ins lose nulls and
//!   empty metadata maps, quantities are canonicalised, int32/int-or-string fields must have
//!   the right JSON type (400), HPA and Deployment defaults are filled in; names, label keys
//!   and values, annotation keys, PDB/HPA/Deployment basics are validated (422 with causes).
//!   Other kinds' defaults and validation rules are not modelled; CRD schemas are not applied
//!   (no pruning, no OpenAPI defaults, no CEL); `fieldValidation=Strict` is not enforced
//!   (unknown fields are kept, not refused).
//! * **RBAC**: non-resource requests other than discovery/version/health paths (granted to
//!   every authenticated identity, as bootstrap policy does) are refused to non-admins; no
//!   impersonation, no ABAC/webhook authorizers, no escalation checks on writes of
//!   roles/bindings, aggregation one level deep and computed at request time (no controller
//!   writes aggregated rules back). Only the bootstrap grants named above exist: tests load
//!   the rest (e.g. the chart's ClusterRole).
//! * **In-tree admission plugins**: only OwnerReferencesPermissionEnforcement, off by default
//!   ([`FakeApiServer::enforce_owner_references_permission`]); no NamespaceLifecycle (writes
//!   into a namespace that does not exist succeed unless a matching webhook needs its
//!   labels), no LimitRanger/ResourceQuota/PodSecurity.
//! * **Admission** (`fake_apiserver/admission.rs`): stored Mutating/ValidatingWebhookConfigurations
//!   are called for create/update/patch/apply/delete (not delete-collection) of every
//!   resource except admissionregistration and review objects: HTTPS, HTTP/1.1, caBundle as
//!   the only root, `?timeout=Ns`, fresh uid, userInfo of the caller, CREATE/UPDATE/DELETE
//!   objects and options, rules/namespaceSelector/objectSelector matching, JSON patch,
//!   IfNeeded reinvocation, response checks, failurePolicy, denial codes, warnings as
//!   headers, dryRun vs sideEffects. Services resolve only through
//!   [`FakeApiServer::set_service_endpoint`]. Not modelled: `matchPolicy: Equivalent` across
//!   versions (one version per resource here), `matchConditions` (a webhook having them
//!   fails the request), v1beta1 reviews, CONNECT, Retry-After retries, audit annotations,
//!   admission-kubeconfig credentials, connection reuse (every call is a new TLS connection;
//!   upstream keeps them alive), validation of the webhook configurations themselves
//!   (e.g. `sideEffects: Some` is stored, not refused). Validating webhooks are called
//!   concurrently and the first error *in list order* (not arrival order) wins, so results
//!   are deterministic. A PATCH without a resourceVersion that lost a race between admission
//!   and storage is re-run, admission included (up to 5 times); a PUT or a precondition gets
//!   409 Conflict.
#![allow(dead_code)]

#[path = "fake_apiserver/admission.rs"]
mod admission;
#[path = "fake_apiserver/discovery.rs"]
mod discovery;
#[path = "fake_apiserver/gc.rs"]
mod gc;
#[path = "fake_apiserver/labels.rs"]
mod labels;
#[path = "fake_apiserver/normalise.rs"]
pub mod normalise;
#[path = "fake_apiserver/patch.rs"]
mod patch;
#[path = "fake_apiserver/rbac.rs"]
pub mod rbac;
#[path = "fake_apiserver/selectors.rs"]
mod selectors;
#[path = "fake_apiserver/watch.rs"]
mod watch;

pub use admission::AdmissionCall;
use discovery::*;
use patch::*;
use selectors::*;
use watch::*;

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Map, Value};
use tokio::sync::broadcast;

/// The admin bearer token (in [`FakeApiServer::kubeconfig_yaml`]): user `kubernetes-admin`
/// in `system:masters`, which RBAC never restricts. Other tokens are added with
/// [`FakeApiServer::add_token`]; an unknown token gets 401.
pub const FAKE_TOKEN: &str = "fake-apiserver-token-0123456789";

/// Who a request is from (`user.Info`): what admission reviews carry as `userInfo` and what
/// RBAC evaluates.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Identity {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl Identity {
    /// A user in `groups` plus `system:authenticated` (as every authenticator adds it).
    pub fn user(username: &str, groups: &[&str]) -> Self {
        let mut g: Vec<String> = groups.iter().map(|s| s.to_string()).collect();
        g.push("system:authenticated".into());
        Identity {
            username: username.into(),
            uid: format!("uid-{username}"),
            groups: g,
            extra: BTreeMap::new(),
        }
    }

    /// `system:serviceaccount:<ns>:<name>` with groups `system:serviceaccounts`,
    /// `system:serviceaccounts:<ns>` and `system:authenticated`.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        Identity {
            username: format!("system:serviceaccount:{namespace}:{name}"),
            uid: format!("uid-sa-{namespace}-{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ],
            extra: BTreeMap::new(),
        }
    }

    /// The identity of [`FAKE_TOKEN`].
    pub fn admin() -> Self {
        Identity::user("kubernetes-admin", &["system:masters"])
    }

    /// In `system:masters`: RBAC is not consulted (as the apiserver's superuser authorizer).
    pub fn is_superuser(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters")
    }
}

/// Content type of aggregated discovery responses (what kube 5 asks for first in
/// `Discovery::run_aggregated`).
const AGGREGATED_CT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/// One request as the fake saw it, in arrival order.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    pub method: String,
    /// Path without the query string, e.g. `/apis/apps/v1/namespaces/ns/deployments/web`.
    pub path: String,
    /// Raw query string (still percent-encoded), `""` when absent.
    pub query: String,
    pub content_type: Option<String>,
    /// Body parsed as JSON; a non-JSON body is kept as a JSON string; `None` when empty.
    pub body: Option<Value>,
    /// The authenticated username (`""` when the token was unknown).
    pub user: String,
    /// When the request arrived (body read, before any configured delay).
    pub at: std::time::Instant,
    /// Where a request that reached the store spent its time (for benches; `None` for one
    /// answered before: unauthenticated, faulted, forbidden or refused by a webhook).
    pub timing: Option<Timing>,
}

/// Where one request's time went inside the fake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Arrival until its response was built (configured delay and webhook calls included;
    /// for a watch, until the stream was set up).
    pub served: Duration,
    /// Waiting for the store lock to route it; `None` for a write that went through
    /// admission, which takes the lock several times ([`FakeApiServer::store_lock_stats`]
    /// has the totals).
    pub lock_wait: Option<Duration>,
    /// Routing it with the store lock held, the store's own work (`None` as `lock_wait`).
    pub locked: Option<Duration>,
    /// Admission: the write's plan, the webhook calls and its commit.
    pub admission: Duration,
}

impl Recorded {
    /// Decoded value of one query parameter, e.g. `fieldManager` of an apply.
    pub fn query_param(&self, key: &str) -> Option<String> {
        parse_query(&self.query).remove(key)
    }

    /// A mutating call: POST/PUT/PATCH/DELETE, except access/token reviews (which are POSTs
    /// that change nothing, so "no writes" assertions stay meaningful next to SARs).
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE")
            && !self.path.ends_with("accessreviews")
            && !self.path.ends_with("tokenreviews")
    }
}

/// The answer a SubjectAccessReview gets (its `status`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessAnswer {
    pub allowed: bool,
    pub denied: bool,
    pub reason: String,
}

impl AccessAnswer {
    pub fn allow(reason: &str) -> Self {
        AccessAnswer {
            allowed: true,
            denied: false,
            reason: reason.to_string(),
        }
    }
    pub fn deny(reason: &str) -> Self {
        AccessAnswer {
            allowed: false,
            denied: true,
            reason: reason.to_string(),
        }
    }
    /// Neither allowed nor explicitly denied (what RBAC says when no rule matches).
    pub fn no_opinion(reason: &str) -> Self {
        AccessAnswer {
            allowed: false,
            denied: false,
            reason: reason.to_string(),
        }
    }
}

/// A failure injected for requests whose path starts with a prefix.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Answer with this HTTP code and a metav1 Status carrying the message.
    Status(u16, String),
    /// Wait this long, then handle the request normally (for client timeouts).
    Stall(Duration),
    /// Drop the connection without answering.
    Close,
}

/// One row of the fake's discovery table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceDef {
    /// `""` for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub namespaced: bool,
    pub verbs: Vec<String>,
    /// Has a `/status` subresource: main-resource writes keep the stored status and
    /// `/status` writes change only the status.
    pub status_subresource: bool,
    /// Served by kube-apiserver itself (core and `*.k8s.io`-style groups such as apps,
    /// autoscaling, policy), not a CRD: LIST items carry no apiVersion/kind and writes are
    /// decoded, defaulted and canonicalised as typed objects (see `normalise.rs`).
    /// Set from the group by [`ResourceDef::new`]; change with [`ResourceDef::custom`].
    pub builtin: bool,
}

impl ResourceDef {
    pub fn new(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        ResourceDef {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
            plural: plural.to_string(),
            namespaced,
            verbs: ALL_VERBS.iter().map(|v| v.to_string()).collect(),
            status_subresource: false,
            builtin: normalise::is_builtin_group(group),
        }
    }

    /// Marks the resource as a custom resource (a CRD) whatever its group, e.g. VPA in
    /// `autoscaling.k8s.io`.
    pub fn custom(mut self) -> Self {
        self.builtin = false;
        self
    }

    pub fn with_status(mut self) -> Self {
        self.status_subresource = true;
        self
    }

    pub fn with_verbs(mut self, verbs: &[&str]) -> Self {
        self.verbs = verbs.iter().map(|v| v.to_string()).collect();
        self
    }

    /// `v1` for core, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural` or `plural.group`, as apiserver messages name resources.
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    fn has_verb(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }
}

/// Every verb of a normal read-write resource.
pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// The resources a fresh fake serves.
pub fn default_resources() -> Vec<ResourceDef> {
    let rd = ResourceDef::new;
    vec![
        rd("", "v1", "Pod", "pods", true).with_status(),
        rd("", "v1", "ConfigMap", "configmaps", true),
        rd("", "v1", "Secret", "secrets", true),
        rd("", "v1", "ServiceAccount", "serviceaccounts", true),
        rd("", "v1", "Service", "services", true).with_status(),
        rd("", "v1", "Namespace", "namespaces", false).with_status(),
        rd("", "v1", "Event", "events", true),
        rd("apps", "v1", "Deployment", "deployments", true).with_status(),
        rd("apps", "v1", "StatefulSet", "statefulsets", true).with_status(),
        rd("apps", "v1", "DaemonSet", "daemonsets", true).with_status(),
        rd(
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            true,
        )
        .with_status(),
        rd(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            true,
        )
        .with_status(),
        rd(
            "tether.dev",
            "v1alpha1",
            "AttachedResource",
            "attachedresources",
            true,
        )
        .with_status(),
        rd("tether.dev", "v1alpha1", "AppDomain", "appdomains", true).with_status(),
        rd(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            false,
        ),
        rd(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
        ),
        rd("rbac.authorization.k8s.io", "v1", "Role", "roles", true),
        rd(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            true,
        ),
        rd("coordination.k8s.io", "v1", "Lease", "leases", true),
        rd(
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
            false,
        ),
        rd(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            false,
        ),
        rd("events.k8s.io", "v1", "Event", "events", true),
        rd(
            "authorization.k8s.io",
            "v1",
            "SubjectAccessReview",
            "subjectaccessreviews",
            false,
        )
        .with_verbs(&["create"]),
        rd(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            false,
        )
        .with_verbs(&["create"]),
        rd(
            "authorization.k8s.io",
            "v1",
            "LocalSubjectAccessReview",
            "localsubjectaccessreviews",
            true,
        )
        .with_verbs(&["create"]),
    ]
}

/// The Knative resources tether's AppDomain controller talks to (not served by default, as on
/// a cluster without Knative): add them with [`FakeApiServer::add_knative_resources`].
pub fn knative_resources() -> Vec<ResourceDef> {
    vec![
        ResourceDef::new("serving.knative.dev", "v1", "Service", "services", true).with_status(),
        ResourceDef::new(
            "serving.knative.dev",
            "v1beta1",
            "DomainMapping",
            "domainmappings",
            true,
        )
        .with_status(),
        ResourceDef::new(
            "networking.internal.knative.dev",
            "v1alpha1",
            "ClusterDomainClaim",
            "clusterdomainclaims",
            false,
        ),
    ]
}

type AccessRule = Arc<dyn Fn(&Value) -> AccessAnswer + Send + Sync>;

// ---------------------------------------------------------------------------------------------
// The server handle
// ---------------------------------------------------------------------------------------------

/// A running fake API server. Dropping it (or [`FakeApiServer::stop`]) shuts it down and drops
/// every open connection, watches included.
pub struct FakeApiServer {
    addr: SocketAddr,
    ca_pem: String,
    shared: Arc<Shared>,
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl FakeApiServer {
    /// Starts on `127.0.0.1:0` with a fresh CA and a `localhost`/`127.0.0.1` certificate.
    ///
    /// Panics when it cannot (test support: a failure to start is a failed test).
    pub async fn start() -> FakeApiServer {
        match Self::try_start().await {
            Ok(s) => s,
            Err(e) => panic!("fake apiserver failed to start: {e}"),
        }
    }

    pub async fn try_start() -> Result<FakeApiServer, Box<dyn std::error::Error + Send + Sync>> {
        let (ca_pem, tls_config) = make_tls()?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (events_tx, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(events_tx)),
            delays: Mutex::new(Delays::default()),
            reviews_in_flight: Mutex::new(Vec::new()),
            reviews_together: Mutex::new(Vec::new()),
            lock_stats: LockStats::default(),
        });
        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(accept_loop(
            listener,
            tokio_rustls::TlsAcceptor::from(Arc::new(tls_config)),
            shared.clone(),
            shutdown_rx,
        ));
        Ok(FakeApiServer {
            addr,
            ca_pem,
            shared,
            shutdown,
        })
    }

    /// Every request waits this long before it is answered (a real API server's round trip;
    /// for scale benches). Access reviews use [`Self::set_access_review_delay`] instead.
    pub fn set_call_delay(&self, d: Duration) {
        lock_or_recover(&self.shared.delays).call = d;
    }

    /// Every SubjectAccessReview (and self/local one) waits this long before it is answered.
    pub fn set_access_review_delay(&self, d: Duration) {
        lock_or_recover(&self.shared.delays).access_review = d;
    }

    /// The distinct sets of subjects (`spec.user`, or the caller for a self review) of access
    /// reviews that were being answered at the same moment, each set sorted. With an
    /// access-review delay, reviews sent concurrently show up here together; reviews sent one
    /// after the other never do.
    pub fn access_reviews_seen_together(&self) -> Vec<Vec<String>> {
        lock_or_recover(&self.shared.reviews_together).clone()
    }

    /// Forgets what [`Self::access_reviews_seen_together`] recorded.
    pub fn clear_access_reviews_seen_together(&self) {
        lock_or_recover(&self.shared.reviews_together).clear();
    }

    /// Stops accepting and drops all connections (idempotent).
    pub fn stop(&self) {
        let _ = self.shutdown.send(true);
    }

    /// `https://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// PEM of the CA that signed the serving certificate.
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    /// A kubeconfig (context `fake`, namespace `default`) with the CA embedded and
    /// [`FAKE_TOKEN`] as bearer token.
    pub fn kubeconfig_yaml(&self) -> String {
        self.kubeconfig_yaml_for(FAKE_TOKEN)
    }

    /// A kubeconfig like [`Self::kubeconfig_yaml`] authenticating with `token` (see
    /// [`Self::add_token`]).
    pub fn kubeconfig_yaml_for(&self, token: &str) -> String {
        let ca = base64::engine::general_purpose::STANDARD.encode(self.ca_pem.as_bytes());
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\nusers:\n- name: fake\n  user:\n    token: {token}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\n",
            url = self.url()
        )
    }

    /// Writes [`Self::kubeconfig_yaml_for`] to `dir/<file>`.
    pub fn write_kubeconfig_for(&self, dir: &Path, file: &str, token: &str) -> PathBuf {
        let path = dir.join(file);
        if let Err(e) = std::fs::write(&path, self.kubeconfig_yaml_for(token)) {
            panic!("writing {}: {e}", path.display());
        }
        path
    }

    /// A `kube::Client` authenticating with `token`.
    pub async fn client_for(&self, token: &str) -> kube::Client {
        let kc = match kube::config::Kubeconfig::from_yaml(&self.kubeconfig_yaml_for(token)) {
            Ok(kc) => kc,
            Err(e) => panic!("fake kubeconfig does not parse: {e}"),
        };
        let config = match kube::Config::from_custom_kubeconfig(kc, &Default::default()).await {
            Ok(c) => c,
            Err(e) => panic!("fake kubeconfig gives no config: {e}"),
        };
        match kube::Client::try_from(config) {
            Ok(c) => c,
            Err(e) => panic!("kube client for the fake: {e}"),
        }
    }

    // --- identities ------------------------------------------------------------------------

    /// Accepts `token` as `identity` from now on (replacing what it meant before).
    pub fn add_token(&self, token: &str, identity: Identity) {
        self.shared
            .lock()
            .tokens
            .insert(token.to_string(), identity);
    }

    // --- admission -------------------------------------------------------------------------

    /// Where webhook calls to Service `namespace/name:port` go (a loopback address of the
    /// webhook server under test). Unregistered services fail like an unresolvable host.
    pub fn set_service_endpoint(&self, namespace: &str, name: &str, port: u16, addr: SocketAddr) {
        assert!(
            addr.ip().is_loopback(),
            "webhook endpoints must be loopback, got {addr}"
        );
        self.shared
            .lock()
            .endpoints
            .insert((namespace.to_string(), name.to_string(), port), addr);
    }

    /// Every admission webhook call made so far, in order.
    pub fn admission_calls(&self) -> Vec<AdmissionCall> {
        self.shared.lock().admission_log.clone()
    }

    pub fn clear_admission_calls(&self) {
        self.shared.lock().admission_log.clear();
    }

    /// Stores every object of a multi-document YAML text (as [`Self::insert`]: no admission,
    /// no RBAC), in order; empty documents are skipped. Returns the stored objects.
    pub fn load_yaml(&self, yaml: &str) -> Vec<Value> {
        parse_yaml_docs(yaml)
            .into_iter()
            .map(|doc| self.insert(doc))
            .collect()
    }

    /// Writes [`Self::kubeconfig_yaml`] to `dir/kubeconfig` (for a `KUBECONFIG` env var).
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        if let Err(e) = std::fs::write(&path, self.kubeconfig_yaml()) {
            panic!("writing {}: {e}", path.display());
        }
        path
    }

    /// The `kube::Config` the kubeconfig yields (tests tweak timeouts on it).
    pub async fn config(&self) -> kube::Config {
        let kc = match kube::config::Kubeconfig::from_yaml(&self.kubeconfig_yaml()) {
            Ok(kc) => kc,
            Err(e) => panic!("fake kubeconfig does not parse: {e}"),
        };
        match kube::Config::from_custom_kubeconfig(kc, &Default::default()).await {
            Ok(c) => c,
            Err(e) => panic!("fake kubeconfig gives no config: {e}"),
        }
    }

    /// A real `kube::Client` for this fake.
    pub async fn client(&self) -> kube::Client {
        match kube::Client::try_from(self.config().await) {
            Ok(c) => c,
            Err(e) => panic!("kube client for the fake: {e}"),
        }
    }

    // --- request log ---------------------------------------------------------------------

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    /// Requests with this method (`""` = any) whose path starts with `path_prefix`.
    pub fn requests_matching(&self, method: &str, path_prefix: &str) -> Vec<Recorded> {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| {
                (method.is_empty() || r.method == method) && r.path.starts_with(path_prefix)
            })
            .cloned()
            .collect()
    }

    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    /// Mutating requests seen (see [`Recorded::is_write`]).
    pub fn writes(&self) -> Vec<Recorded> {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.is_write())
            .cloned()
            .collect()
    }

    pub fn write_count(&self) -> usize {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.is_write())
            .count()
    }

    // --- discovery table -----------------------------------------------------------------

    /// Adds (or replaces, by group/version/plural) a resource; the next discovery call sees it.
    pub fn add_resource(
        &self,
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        namespaced: bool,
        verbs: &[&str],
    ) {
        self.add_resource_def(
            ResourceDef::new(group, version, kind, plural, namespaced).with_verbs(verbs),
        );
    }

    pub fn add_resource_def(&self, def: ResourceDef) {
        let mut st = self.shared.lock();
        st.resources.retain(|r| {
            !(r.group == def.group && r.version == def.version && r.plural == def.plural)
        });
        st.resources.push(def);
    }

    /// Removes a resource from discovery (its stored objects stay, unreachable).
    pub fn remove_resource(&self, group: &str, version: &str, plural: &str) {
        self.shared
            .lock()
            .resources
            .retain(|r| !(r.group == group && r.version == version && r.plural == plural));
    }

    pub fn add_knative_resources(&self) {
        for def in knative_resources() {
            self.add_resource_def(def);
        }
    }

    pub fn resources(&self) -> Vec<ResourceDef> {
        self.shared.lock().resources.clone()
    }

    // --- access reviews and faults -------------------------------------------------------

    /// Sets how SubjectAccessReviews (and self/local ones) are answered; the closure gets the
    /// review's `spec`. Default: allow everything (so tests that do not care about access
    /// need no RBAC objects); [`Self::answer_access_reviews_from_rbac`] undoes it.
    pub fn set_access_rule<F>(&self, rule: F)
    where
        F: Fn(&Value) -> AccessAnswer + Send + Sync + 'static,
    {
        self.shared.lock().access_rule = Some(Arc::new(rule));
    }

    /// Drops the test rule: SubjectAccessReviews are answered from the stored RBAC objects
    /// (`status.allowed` and an upstream-style `reason`; 422 for a spec naming nobody or not
    /// exactly one kind of attributes), as kube-apiserver's RBAC authorizer would.
    pub fn answer_access_reviews_from_rbac(&self) {
        self.shared.lock().access_rule = None;
    }

    /// What RBAC over the stored objects decides for `identity` (superusers always allowed).
    /// `namespace`/`name` may be `""`; `resource` may be `plural/subresource`.
    pub fn rbac_allows(
        &self,
        identity: &Identity,
        verb: &str,
        group: &str,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> bool {
        let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
        let req = rbac::Request {
            verb: verb.into(),
            resource: Some(rbac::ResourceAttrs {
                group: group.into(),
                resource: resource.into(),
                subresource: subresource.into(),
                namespace: namespace.into(),
                name: name.into(),
            }),
            path: String::new(),
        };
        rbac::authorize(&self.shared.lock().rbac_objects(), identity, &req).allowed
    }

    /// Turns the OwnerReferencesPermissionEnforcement admission plugin on or off (off by
    /// default, as in kube-apiserver; on in OpenShift). With it, a non-admin identity that
    /// sets `blockOwnerDeletion: true` on an owner reference needs `update` on the owner's
    /// `<plural>/finalizers`, and one that changes ownerReferences at all needs `delete` on
    /// the object.
    pub fn enforce_owner_references_permission(&self, on: bool) {
        self.shared.lock().owner_refs_enforced = on;
    }

    /// Requests answered 403 by RBAC so far (method, path, message), in order.
    pub fn forbidden(&self) -> Vec<(String, String, String)> {
        self.shared.lock().forbidden_log.clone()
    }

    /// Injects `fault` for requests whose path starts with `path_prefix`, `times` times
    /// (`None` = until [`Self::clear_faults`]). Earlier-registered faults win.
    pub fn fail(&self, path_prefix: &str, fault: Fault, times: Option<usize>) {
        self.shared.lock().faults.push(FaultRule {
            prefix: path_prefix.to_string(),
            fault,
            remaining: times,
        });
    }

    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    // --- store seeding and inspection ----------------------------------------------------

    /// Stores `obj` (resource found from apiVersion/kind) as if created, status included,
    /// overwriting any object of that name; watchers see ADDED/MODIFIED. Missing uid,
    /// creationTimestamp, generation and (namespaced) namespace=`default` are filled in.
    /// Panics on an unknown kind or a nameless object; see [`Self::try_insert`].
    pub fn insert(&self, obj: Value) -> Value {
        match self.try_insert(obj) {
            Ok(v) => v,
            Err(e) => panic!("fake apiserver insert: {e}"),
        }
    }

    pub fn try_insert(&self, obj: Value) -> Result<Value, String> {
        self.shared.lock().seed(obj)
    }

    /// A stored object, with `apiVersion` set to `group/version`.
    pub fn get(
        &self,
        group: &str,
        version: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let key = ObjKey::new(group, plural, namespace.unwrap_or(""), name);
        let mut obj = self.shared.lock().objects.get(&key)?.obj.clone();
        let api_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        ensure_object(&mut obj).insert("apiVersion".into(), Value::String(api_version));
        Some(obj)
    }

    /// Every stored object of this plural, in any group, ordered by group/namespace/name.
    /// How many stored objects of `group`/`plural` satisfy `pred` (an index range, no copies).
    pub fn count(&self, group: &str, plural: &str, pred: impl Fn(&Value) -> bool) -> usize {
        self.shared
            .lock()
            .scan(group, plural, None)
            .filter(|(_, s)| pred(&s.obj))
            .count()
    }

    /// [`Self::count`] in one namespace: a range of the store as big as that namespace's
    /// objects of this resource, so a caller polling it does not hold the store (and every
    /// request waiting for it) for a walk over all namespaces.
    pub fn count_in(
        &self,
        group: &str,
        plural: &str,
        namespace: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> usize {
        self.shared
            .lock()
            .scan(group, plural, Some(namespace))
            .filter(|(_, s)| pred(&s.obj))
            .count()
    }

    /// How many objects the garbage collector's owner index has looked at so far (a count of
    /// its work, for tests: a deletion costs its own dependents, not the store's size).
    pub fn gc_work(&self) -> u64 {
        self.shared.lock().gc_assessed()
    }

    /// Stored objects and watch-history records that LISTs, WATCH starts and
    /// DELETE-collections looked at so far (for tests: what a request reads, against what it
    /// returns).
    pub fn read_work(&self) -> u64 {
        self.shared.lock().examined.get()
    }

    /// The store lock so far: times taken, time waited for it and time held, in all (every
    /// request takes it at least twice; for benches).
    pub fn store_lock_stats(&self) -> (u64, Duration, Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &self.shared.lock_stats;
        (
            s.taken.load(Relaxed),
            Duration::from_nanos(s.waited_ns.load(Relaxed)),
            Duration::from_nanos(s.held_ns.load(Relaxed)),
        )
    }

    /// Owner-reference garbage collections run so far and the time they took in all (each
    /// holds the store).
    pub fn gc_stats(&self) -> (u64, Duration) {
        let st = self.shared.lock();
        (st.gc_runs, st.gc_spent)
    }

    pub fn list_all(&self, plural: &str) -> Vec<Value> {
        self.shared
            .lock()
            .objects
            .iter()
            .filter(|(k, _)| k.plural == plural)
            .map(|(_, s)| s.obj.clone())
            .collect()
    }

    /// Turns owner-reference garbage collection on or off (on by default). Off helps tests
    /// that seed dependents whose owners they never create: with it on, the next deletion of
    /// anything removes such dependents, as the real GC would.
    pub fn set_garbage_collection(&self, on: bool) {
        self.shared.lock().gc_enabled = on;
    }

    /// The last resourceVersion handed out.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

    /// Forgets watch history: watches from an older resourceVersion get 410 Expired (to test
    /// re-list paths).
    pub fn compact_watch_history(&self) {
        let mut st = self.shared.lock();
        st.history.clear();
        st.compacted_rv = st.rv;
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// TLS and connection plumbing
// ---------------------------------------------------------------------------------------------

/// Makes a CA and a serving certificate for `localhost` and `127.0.0.1`.
fn make_tls() -> Result<(String, rustls::ServerConfig), Box<dyn std::error::Error + Send + Sync>> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "fake-apiserver-ca");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate()?;
    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "fake-apiserver");
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;

    // An explicit provider: the process may link more than one, and then the default panics.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((ca_cert.pem(), config))
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let Ok((tcp, _peer)) = accepted else { continue };
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        let mut conn_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |req| handle(shared.clone(), req));
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            // Dropping the connection future closes the socket and any streaming watch body.
            tokio::select! {
                _ = conn => {}
                _ = conn_shutdown.wait_for(|stop| *stop) => {}
            }
        });
    }
}

type RespBody = UnsyncBoxBody<Bytes, Infallible>;

/// Returned by the service to make hyper drop the connection unanswered ([`Fault::Close`]).
#[derive(Debug)]
struct FakeClose;

impl std::fmt::Display for FakeClose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fake apiserver: injected connection close")
    }
}

impl std::error::Error for FakeClose {}

/// What the request router decided.
enum Outcome {
    Json {
        code: u16,
        body: Value,
        content_type: &'static str,
    },
    Watch(Box<WatchSetup>),
}

impl Outcome {
    fn ok(body: Value) -> Self {
        Outcome::Json {
            code: 200,
            body,
            content_type: "application/json",
        }
    }
    fn created(body: Value) -> Self {
        Outcome::Json {
            code: 201,
            body,
            content_type: "application/json",
        }
    }
}

impl From<ApiError> for Outcome {
    fn from(e: ApiError) -> Self {
        Outcome::Json {
            code: e.code,
            body: e.to_status(),
            content_type: "application/json",
        }
    }
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<RespBody>, FakeClose> {
    let (parts, body) = req.into_parts();
    let raw = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let header = |name: hyper::header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let ctx = Ctx {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parse_query(parts.uri.query().unwrap_or("")),
        content_type: header(hyper::header::CONTENT_TYPE).unwrap_or_default(),
        accept: header(hyper::header::ACCEPT).unwrap_or_default(),
        body: if raw.is_empty() {
            None
        } else {
            Some(
                serde_json::from_slice(&raw)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned())),
            )
        },
        plan: false,
        user: Identity::default(),
    };
    let mut ctx = ctx;
    let token = header(hyper::header::AUTHORIZATION)
        .and_then(|h| h.strip_prefix("Bearer ").map(str::to_string));
    let arrived = std::time::Instant::now();
    let (fault, identity, has_webhooks, seq) = {
        let mut st = shared.lock();
        let seq = st.requests.len();
        let identity = token.and_then(|t| st.tokens.get(&t).cloned());
        st.requests.push(Recorded {
            method: ctx.method.clone(),
            path: ctx.path.clone(),
            query: parts.uri.query().unwrap_or("").to_string(),
            content_type: header(hyper::header::CONTENT_TYPE),
            body: ctx.body.clone(),
            user: identity
                .as_ref()
                .map(|i| i.username.clone())
                .unwrap_or_default(),
            at: arrived,
            timing: None,
        });
        let has_webhooks = st
            .scan(
                "admissionregistration.k8s.io",
                "mutatingwebhookconfigurations",
                None,
            )
            .chain(st.scan(
                "admissionregistration.k8s.io",
                "validatingwebhookconfigurations",
                None,
            ))
            .next()
            .is_some();
        (st.take_fault(&ctx.path), identity, has_webhooks, seq)
    };
    match fault {
        Some(Fault::Close) => return Err(FakeClose),
        Some(Fault::Stall(d)) => tokio::time::sleep(d).await,
        Some(Fault::Status(code, message)) => {
            return Ok(outcome_response(
                ApiError::new(code, reason_for_code(code), message).into(),
            ));
        }
        None => {}
    }
    let Some(identity) = identity else {
        return Ok(outcome_response(
            ApiError::new(401, "Unauthorized", "Unauthorized").into(),
        ));
    };
    ctx.user = identity;
    let _review = if ctx.path.ends_with("subjectaccessreviews") && ctx.method == "POST" {
        let subject = ctx
            .body
            .as_ref()
            .and_then(|b| b.pointer("/spec/user"))
            .and_then(Value::as_str)
            .unwrap_or(&ctx.user.username)
            .to_string();
        let guard = InFlightReview::enter(shared.clone(), subject);
        let d = lock_or_recover(&shared.delays).access_review;
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
        Some(guard)
    } else {
        let d = lock_or_recover(&shared.delays).call;
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
        None
    };
    {
        let mut st = shared.lock();
        if let Err(e) = authorize_request(&st, &ctx) {
            st.forbidden_log
                .push((ctx.method.clone(), ctx.path.clone(), e.message.clone()));
            return Ok(outcome_response(e.into()));
        }
    }
    let admitting = std::time::Instant::now();
    if has_webhooks && ctx.method != "GET" {
        if let Some((outcome, warnings)) = admission::admit(&shared, &ctx).await {
            // It took the store lock more than once: only the totals say how long.
            let timing = Timing {
                served: arrived.elapsed(),
                lock_wait: None,
                locked: None,
                admission: admitting.elapsed(),
            };
            let mut st = shared.lock();
            if let Some(r) = st.requests.get_mut(seq).filter(|r| r.at == arrived) {
                r.timing = Some(timing);
            }
            drop(st);
            return Ok(outcome_response_with(outcome, &warnings));
        }
    }
    let admission = admitting.elapsed();
    let waiting = std::time::Instant::now();
    let mut st = shared.lock();
    let locking = std::time::Instant::now();
    let outcome = route_as(&mut st, &ctx);
    let timing = Timing {
        served: arrived.elapsed(),
        lock_wait: Some(locking.duration_since(waiting)),
        locked: Some(locking.elapsed()),
        admission,
    };
    // The log may have been cleared since: only this request's own entry is annotated.
    if let Some(r) = st.requests.get_mut(seq).filter(|r| r.at == arrived) {
        r.timing = Some(timing);
    }
    drop(st);
    Ok(outcome_response(outcome))
}

fn lock_or_recover<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An access review being answered: registered on entry, gone when the answer is sent.
struct InFlightReview {
    shared: Arc<Shared>,
    subject: String,
}

impl InFlightReview {
    fn enter(shared: Arc<Shared>, subject: String) -> Self {
        {
            let mut now = lock_or_recover(&shared.reviews_in_flight);
            now.push(subject.clone());
            if now.len() > 1 {
                let mut set = now.clone();
                set.sort();
                set.dedup();
                let mut seen = lock_or_recover(&shared.reviews_together);
                if !seen.contains(&set) {
                    seen.push(set);
                }
            }
        }
        InFlightReview { shared, subject }
    }
}

impl Drop for InFlightReview {
    fn drop(&mut self) {
        let mut now = lock_or_recover(&self.shared.reviews_in_flight);
        if let Some(i) = now.iter().position(|s| *s == self.subject) {
            now.remove(i);
        }
    }
}

fn outcome_response(outcome: Outcome) -> Response<RespBody> {
    outcome_response_with(outcome, &[])
}

/// The HTTP response, with one `Warning: 299 - "..."` header per admission warning.
fn outcome_response_with(outcome: Outcome, warnings: &[String]) -> Response<RespBody> {
    let mut resp = outcome_response_plain(outcome);
    for w in warnings {
        if let Ok(v) = hyper::header::HeaderValue::from_str(&admission::warning_header(w)) {
            resp.headers_mut().append(hyper::header::WARNING, v);
        }
    }
    resp
}

fn outcome_response_plain(outcome: Outcome) -> Response<RespBody> {
    match outcome {
        Outcome::Json {
            code,
            body,
            content_type,
        } => {
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            let mut resp = Response::new(Full::new(Bytes::from(bytes)).boxed_unsync());
            *resp.status_mut() =
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
                resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
            }
            resp
        }
        Outcome::Watch(setup) => {
            let stream = futures::stream::unfold(setup, |mut s| async move {
                s.next_line()
                    .await
                    .map(|line| (Ok::<_, Infallible>(Frame::data(line)), s))
            });
            let mut resp = Response::new(StreamBody::new(stream).boxed_unsync());
            resp.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            resp
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shared state
// ---------------------------------------------------------------------------------------------

struct Shared {
    state: Mutex<State>,
    /// Latency the fake adds, like a real API server's: see [`FakeApiServer::set_call_delay`].
    delays: Mutex<Delays>,
    /// Access reviews being answered now, by requesting user (after their delay started).
    reviews_in_flight: Mutex<Vec<String>>,
    /// Sets of users whose access reviews were in flight at the same moment (each set once).
    reviews_together: Mutex<Vec<Vec<String>>>,
    /// The store lock's use: [`FakeApiServer::store_lock_stats`].
    lock_stats: LockStats,
}

/// How often the store lock was taken, and how long it was waited for and held in all.
#[derive(Default)]
struct LockStats {
    taken: std::sync::atomic::AtomicU64,
    waited_ns: std::sync::atomic::AtomicU64,
    held_ns: std::sync::atomic::AtomicU64,
}

/// The store, locked: every request serialises on it, so the time it is held bounds the
/// fake's throughput (counted into [`LockStats`] when dropped).
struct StoreGuard<'a> {
    guard: MutexGuard<'a, State>,
    stats: &'a LockStats,
    since: std::time::Instant,
}

impl std::ops::Deref for StoreGuard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.guard
    }
}

impl std::ops::DerefMut for StoreGuard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.guard
    }
}

impl Drop for StoreGuard<'_> {
    fn drop(&mut self) {
        let held = u64::try_from(self.since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.stats
            .held_ns
            .fetch_add(held, std::sync::atomic::Ordering::Relaxed);
    }
}

#[derive(Clone, Copy, Default)]
struct Delays {
    call: Duration,
    access_review: Duration,
}

impl Shared {
    /// Never held across an await. A panic elsewhere must not wedge other tests' assertions.
    fn lock(&self) -> StoreGuard<'_> {
        use std::sync::atomic::Ordering::Relaxed;
        let asked = std::time::Instant::now();
        let guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let since = std::time::Instant::now();
        let waited = u64::try_from(since.duration_since(asked).as_nanos()).unwrap_or(u64::MAX);
        self.lock_stats.taken.fetch_add(1, Relaxed);
        self.lock_stats.waited_ns.fetch_add(waited, Relaxed);
        StoreGuard {
            guard,
            stats: &self.lock_stats,
            since,
        }
    }
}

struct FaultRule {
    prefix: String,
    fault: Fault,
    remaining: Option<usize>,
}

/// Store key: objects are shared by all versions of a group's resource.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ObjKey {
    group: String,
    plural: String,
    /// `""` for cluster-scoped objects.
    namespace: String,
    name: String,
}

impl ObjKey {
    fn new(group: &str, plural: &str, namespace: &str, name: &str) -> Self {
        ObjKey {
            group: group.into(),
            plural: plural.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Stored {
    obj: Value,
    /// Server-side apply: last applied config per field manager (main resource).
    applied: BTreeMap<String, Value>,
    /// The same for applies to `/status`.
    applied_status: BTreeMap<String, Value>,
}

/// One change, as watchers see it.
#[derive(Debug)]
struct WatchRec {
    rv: u64,
    group: String,
    plural: String,
    namespace: String,
    kind: &'static str,
    object: Value,
    /// For MODIFIED: the state before, so a selector watch can tell an object that left
    /// (DELETED with this state) or entered (ADDED).
    prev: Option<Value>,
}

struct State {
    resources: Vec<ResourceDef>,
    objects: BTreeMap<ObjKey, Stored>,
    rv: u64,
    uid_counter: u64,
    history: Vec<Arc<WatchRec>>,
    /// Watches from a resourceVersion below this get 410.
    compacted_rv: u64,
    requests: Vec<Recorded>,
    faults: Vec<FaultRule>,
    /// `None`: access reviews are answered from the stored RBAC objects.
    access_rule: Option<AccessRule>,
    events_tx: broadcast::Sender<Arc<WatchRec>>,
    /// Owner-reference garbage collection on (default) or off.
    gc_enabled: bool,
    /// Collections run, and the time spent in them ([`FakeApiServer::gc_stats`]).
    gc_runs: u64,
    gc_spent: Duration,
    /// Which objects' owners are all gone, kept on every store change (`fake_apiserver/gc.rs`).
    owner_index: gc::OwnerIndex,
    /// Which objects carry which label, kept on every store change (`fake_apiserver/labels.rs`).
    label_index: labels::LabelIndex,
    /// Stored objects and history records LISTs, WATCHes and DELETE-collections looked at
    /// ([`FakeApiServer::read_work`]); a `Cell` because they read the store through `&State`.
    examined: std::cell::Cell<u64>,
    /// The write the last `Mode::Plan`/`Mode::Finalise` request computed.
    plan: Option<Planned>,
    /// Bearer token -> identity.
    tokens: BTreeMap<String, Identity>,
    /// Where a Service (namespace, name, port) is reached, for webhook calls.
    endpoints: BTreeMap<(String, String, u16), SocketAddr>,
    /// Every admission webhook call, in order.
    admission_log: Vec<AdmissionCall>,
    /// Requests RBAC refused: (method, path, message).
    forbidden_log: Vec<(String, String, String)>,
    /// Who the write being routed is from (`None` for seeding).
    actor: Option<Identity>,
    /// The OwnerReferencesPermissionEnforcement admission plugin is on.
    owner_refs_enforced: bool,
}

impl State {
    fn new(events_tx: broadcast::Sender<Arc<WatchRec>>) -> Self {
        State {
            resources: default_resources(),
            objects: BTreeMap::new(),
            rv: 1000,
            uid_counter: 0,
            history: Vec::new(),
            compacted_rv: 0,
            requests: Vec::new(),
            faults: Vec::new(),
            access_rule: Some(Arc::new(|_| {
                AccessAnswer::allow("fake-apiserver: allow-all")
            })),
            events_tx,
            gc_enabled: true,
            gc_runs: 0,
            gc_spent: Duration::ZERO,
            owner_index: gc::OwnerIndex::default(),
            label_index: labels::LabelIndex::default(),
            examined: std::cell::Cell::new(0),
            plan: None,
            tokens: BTreeMap::from([(FAKE_TOKEN.to_string(), Identity::admin())]),
            endpoints: BTreeMap::new(),
            admission_log: Vec::new(),
            forbidden_log: Vec::new(),
            actor: None,
            owner_refs_enforced: false,
        }
    }

    fn take_fault(&mut self, path: &str) -> Option<Fault> {
        let idx = self
            .faults
            .iter()
            .position(|f| path.starts_with(&f.prefix) && f.remaining != Some(0))?;
        let rule = &mut self.faults[idx];
        if let Some(n) = rule.remaining.as_mut() {
            *n -= 1;
        }
        Some(rule.fault.clone())
    }

    fn find_plural(&self, group: &str, version: &str, plural: &str) -> Option<ResourceDef> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    }

    fn find_kind(&self, api_version: &str, kind: &str) -> Option<ResourceDef> {
        let (group, version) = split_api_version(api_version);
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.kind == kind)
            .cloned()
    }

    /// Objects of one resource (optionally one namespace) in (namespace, name) order: a range
    /// of the ordered store, not a scan of everything.
    fn scan<'a>(
        &'a self,
        group: &str,
        plural: &str,
        namespace: Option<&str>,
    ) -> impl Iterator<Item = (&'a ObjKey, &'a Stored)> + 'a {
        self.scan_after(group, plural, namespace, None)
    }

    /// [`Self::scan`] from just after `after` (namespace, name): a LIST page starts where the
    /// previous one ended, found in the ordered map instead of walked to, so paging through n
    /// objects costs O(n log n), not O(n²/limit).
    fn scan_after<'a>(
        &'a self,
        group: &str,
        plural: &str,
        namespace: Option<&str>,
        after: Option<(&str, &str)>,
    ) -> impl Iterator<Item = (&'a ObjKey, &'a Stored)> + 'a {
        use std::ops::Bound;
        let start = ObjKey::new(group, plural, namespace.unwrap_or(""), "");
        let lower = match after.map(|(ns, name)| ObjKey::new(group, plural, ns, name)) {
            Some(a) if a >= start => Bound::Excluded(a),
            _ => Bound::Included(start),
        };
        let (group, plural) = (group.to_string(), plural.to_string());
        let namespace = namespace.map(str::to_string);
        self.objects
            .range((lower, Bound::Unbounded))
            .take_while(move |(k, _)| {
                k.group == group
                    && k.plural == plural
                    && namespace.as_ref().is_none_or(|ns| &k.namespace == ns)
            })
    }

    /// The OwnerReferencesPermissionEnforcement admission plugin
    /// (plugin/pkg/admission/gc): a non-superuser who changes an object's ownerReferences
    /// must be allowed to delete the object, and one who sets `blockOwnerDeletion: true` on a
    /// reference must be allowed to `update` the owner's `finalizers` subresource. 403
    /// Forbidden otherwise, worded as upstream.
    fn check_owner_references(
        &self,
        def: &ResourceDef,
        namespace: &str,
        name: &str,
        old: Option<&Value>,
        new: &Value,
    ) -> Result<(), ApiError> {
        let Some(user) = self
            .actor
            .as_ref()
            .filter(|u| self.owner_refs_enforced && !u.is_superuser())
        else {
            return Ok(());
        };
        let refs = |o: Option<&Value>| -> Vec<Value> {
            o.and_then(meta)
                .and_then(|m| m.get("ownerReferences"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let (old_refs, new_refs) = (refs(old), refs(Some(new)));
        if old_refs == new_refs {
            return Ok(());
        }
        let objects = self.rbac_objects();
        let forbidden = |msg: String| {
            let qualified = def.qualified();
            let mut e = ApiError::new(
                403,
                "Forbidden",
                format!("{qualified} {name:?} is forbidden: {msg}"),
            );
            e.details = Some(json!({"name": name, "group": def.group, "kind": def.plural}));
            e
        };
        let may = |verb: &str, group: &str, resource: &str, sub: &str, ns: &str, n: &str| {
            let req = rbac::Request {
                verb: verb.into(),
                resource: Some(rbac::ResourceAttrs {
                    group: group.into(),
                    resource: resource.into(),
                    subresource: sub.into(),
                    namespace: ns.into(),
                    name: n.into(),
                }),
                path: String::new(),
            };
            rbac::authorize(&objects, user, &req).allowed
        };
        if !may("delete", &def.group, &def.plural, "", namespace, name) {
            return Err(forbidden(
                "cannot set an ownerRef on a resource you can't delete: , <nil>".into(),
            ));
        }
        let blocking = |r: &Value| r.get("blockOwnerDeletion") == Some(&json!(true));
        let newly_blocking: Vec<&Value> = new_refs
            .iter()
            .filter(|r| blocking(r))
            .filter(|r| {
                !old_refs
                    .iter()
                    .any(|o| o.get("uid") == r.get("uid") && blocking(o))
            })
            .collect();
        if newly_blocking.is_empty() || may("update", "*", "*", "finalizers", "", "") {
            return Ok(());
        }
        for r in newly_blocking {
            let s = |f: &str| r.get(f).and_then(Value::as_str).unwrap_or("").to_string();
            let (api_version, kind) = (s("apiVersion"), s("kind"));
            let Some(owner) = self.find_kind(&api_version, &kind) else {
                return Err(forbidden(format!(
                    "cannot set blockOwnerDeletion in this case because cannot find RESTMapping for APIVersion {api_version} Kind {kind}: no matches for kind {kind:?} in version {api_version:?}"
                )));
            };
            let owner_ns = if owner.namespaced { namespace } else { "" };
            if !may(
                "update",
                &owner.group,
                &owner.plural,
                "finalizers",
                owner_ns,
                &s("name"),
            ) {
                return Err(forbidden(format!(
                    "cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't set finalizers on: {}",
                    go_owner_reference(r)
                )));
            }
        }
        Ok(())
    }

    /// Every stored Role, ClusterRole, RoleBinding and ClusterRoleBinding.
    fn rbac_objects(&self) -> Vec<Value> {
        [
            "roles",
            "clusterroles",
            "rolebindings",
            "clusterrolebindings",
        ]
        .iter()
        .flat_map(|p| self.scan("rbac.authorization.k8s.io", p, None))
        .map(|(_, s)| s.obj.clone())
        .collect()
    }

    fn next_uid(&mut self) -> String {
        self.uid_counter += 1;
        format!("fa4e0000-0000-4000-8000-{:012x}", self.uid_counter)
    }

    /// Stores `obj` under a fresh resourceVersion and tells watchers.
    fn put(&mut self, key: ObjKey, mut stored: Stored, event: &'static str) -> Value {
        self.rv += 1;
        meta_mut(&mut stored.obj)
            .insert("resourceVersion".into(), Value::String(self.rv.to_string()));
        let obj = stored.obj.clone();
        let prev = self.store_insert(&key, stored).map(|s| s.obj);
        self.emit(&key, event, obj.clone(), prev);
        obj
    }

    fn emit(&mut self, key: &ObjKey, kind: &'static str, object: Value, prev: Option<Value>) {
        let rec = Arc::new(WatchRec {
            rv: self.rv,
            group: key.group.clone(),
            plural: key.plural.clone(),
            namespace: key.namespace.clone(),
            kind,
            object,
            prev,
        });
        self.history.push(rec.clone());
        // No receivers is fine.
        let _ = self.events_tx.send(rec);
    }

    /// Removes an object for good (DELETED to watchers), then collects its orphans.
    fn remove(&mut self, key: &ObjKey, gc: bool) -> Option<Value> {
        let stored = self.store_remove(key)?;
        self.rv += 1;
        let mut obj = stored.obj;
        meta_mut(&mut obj).insert("resourceVersion".into(), Value::String(self.rv.to_string()));
        self.emit(key, "DELETED", obj.clone(), None);
        if gc && self.gc_enabled {
            let started = std::time::Instant::now();
            self.collect_garbage();
            self.gc_runs += 1;
            self.gc_spent += started.elapsed();
        }
        Some(obj)
    }

    /// Deletes (or, with finalizers, marks for deletion) every object with owner references
    /// none of which still exists. Repeats until nothing changes. The orphans come from the
    /// owner index, not a walk over the store.
    fn collect_garbage(&mut self) {
        loop {
            let orphans: Vec<ObjKey> = self
                .owner_index
                .orphans()
                .filter(|k| {
                    self.objects.get(k).is_some_and(|s| {
                        meta(&s.obj)
                            .and_then(|m| m.get("deletionTimestamp"))
                            .is_none()
                    })
                })
                .cloned()
                .collect();
            if orphans.is_empty() {
                return;
            }
            for key in orphans {
                self.delete_or_mark(&key, false);
            }
        }
    }

    /// Every write to the store goes through here or [`Self::store_remove`], which keep the
    /// owner and label indexes in step.
    fn store_insert(&mut self, key: &ObjKey, stored: Stored) -> Option<Stored> {
        let prev = self.objects.insert(key.clone(), stored);
        let new = self.objects.get(key).map(|s| &s.obj);
        let old = prev.as_ref().map(|p| &p.obj);
        self.owner_index.changed(key, old, new);
        self.label_index.changed(key, old, new);
        prev
    }

    fn store_remove(&mut self, key: &ObjKey) -> Option<Stored> {
        let prev = self.objects.remove(key)?;
        self.owner_index.changed(key, Some(&prev.obj), None);
        self.label_index.changed(key, Some(&prev.obj), None);
        Some(prev)
    }

    /// The objects `filter` selects in (namespace, name) order, from just after `after`: the
    /// label index's objects for the selector's first equality requirement when it has one,
    /// else a range of the store (the resource, or its namespace); either way each object
    /// looked at is counted and the whole filter applied.
    fn select<'a>(
        &'a self,
        filter: &'a Filter,
        after: Option<(&str, &str)>,
    ) -> Box<dyn Iterator<Item = (&'a ObjKey, &'a Stored)> + 'a> {
        let counted = move |_: &(&ObjKey, &Stored)| self.examined.set(self.examined.get() + 1);
        let selected = move |(k, s): &(&ObjKey, &Stored)| {
            filter.matches(&k.group, &k.plural, &k.namespace, &s.obj)
        };
        let equal = filter.labels.iter().find_map(|r| match r {
            LabelReq::Eq(k, v) => Some((k.as_str(), v.as_str())),
            _ => None,
        });
        let namespace = filter.namespace.as_deref();
        match equal {
            Some(label) => Box::new(
                self.label_index
                    .labelled(&filter.group, &filter.plural, label, namespace, after)
                    .filter_map(move |(ns, name)| {
                        self.objects.get_key_value(&ObjKey::new(
                            &filter.group,
                            &filter.plural,
                            ns,
                            name,
                        ))
                    })
                    .inspect(counted)
                    .filter(selected),
            ),
            None => Box::new(
                self.scan_after(&filter.group, &filter.plural, namespace, after)
                    .inspect(counted)
                    .filter(selected),
            ),
        }
    }

    /// Orphan assessments the owner index made so far (see [`FakeApiServer::gc_work`]).
    fn gc_assessed(&self) -> u64 {
        self.owner_index.assessed()
    }

    /// DELETE semantics: with finalizers set deletionTimestamp (MODIFIED), else remove.
    fn delete_or_mark(&mut self, key: &ObjKey, gc: bool) -> Option<Value> {
        let stored = self.objects.get(key)?.clone();
        if finalizers(&stored.obj).is_empty() {
            return self.remove(key, gc);
        }
        if meta(&stored.obj)
            .and_then(|m| m.get("deletionTimestamp"))
            .is_some()
        {
            return Some(stored.obj);
        }
        let mut next = stored;
        let m = meta_mut(&mut next.obj);
        m.insert("deletionTimestamp".into(), Value::String(now_rfc3339()));
        m.insert("deletionGracePeriodSeconds".into(), json!(0));
        Some(self.put(key.clone(), next, "MODIFIED"))
    }

    /// [`FakeApiServer::insert`].
    fn seed(&mut self, mut obj: Value) -> Result<Value, String> {
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let kind = obj
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let def = self
            .find_kind(&api_version, &kind)
            .ok_or_else(|| format!("no resource for apiVersion {api_version:?} kind {kind:?}"))?;
        let name = meta_str(&obj, "name").unwrap_or("").to_string();
        if name.is_empty() {
            return Err("metadata.name is required".into());
        }
        decode(&def, &mut obj).map_err(|e| e.message)?;
        let uid = self.next_uid();
        let m = meta_mut(&mut obj);
        let namespace = if def.namespaced {
            let ns = m
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_string();
            m.insert("namespace".into(), Value::String(ns.clone()));
            ns
        } else {
            m.remove("namespace");
            String::new()
        };
        m.entry("uid").or_insert(Value::String(uid));
        m.entry("creationTimestamp")
            .or_insert(Value::String(now_rfc3339()));
        m.entry("generation").or_insert(json!(1));
        let key = ObjKey::new(&def.group, &def.plural, &namespace, &name);
        let event = if self.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let stored = Stored {
            obj,
            ..Default::default()
        };
        Ok(self.put(key, stored, event))
    }

    // --- writes used by the REST handlers ------------------------------------------------

    /// POST: validates and stores a new object.
    fn create(
        &mut self,
        def: &ResourceDef,
        namespace: Option<&str>,
        mut obj: Value,
        mode: Mode,
        applied: BTreeMap<String, Value>,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be an object",
            ));
        }
        decode(def, &mut obj)?;
        let m = meta_mut(&mut obj);
        if m.get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
        {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let mut name = m
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            let Some(prefix) = m.get("generateName").and_then(Value::as_str) else {
                return Err(ApiError::invalid(
                    def,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                ));
            };
            name = format!("{prefix}{}", generated_suffix(self.uid_counter + 1));
        }
        let ns = match (def.namespaced, namespace) {
            (true, Some(ns)) => {
                if let Some(body_ns) = m.get("namespace").and_then(Value::as_str) {
                    if body_ns != ns {
                        return Err(ApiError::bad_request(
                            "the namespace of the provided object does not match the namespace sent on the request",
                        ));
                    }
                }
                m.insert("namespace".into(), Value::String(ns.to_string()));
                ns.to_string()
            }
            (false, _) => {
                m.remove("namespace");
                String::new()
            }
            (true, None) => return Err(ApiError::not_found_path()),
        };
        let key = ObjKey::new(&def.group, &def.plural, &ns, &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(def, &name));
        }
        let uid = self.next_uid();
        let m = meta_mut(&mut obj);
        m.insert("name".into(), Value::String(name.clone()));
        m.insert("uid".into(), Value::String(uid));
        m.insert("creationTimestamp".into(), Value::String(now_rfc3339()));
        m.insert("generation".into(), json!(1));
        m.remove("deletionTimestamp");
        m.remove("deletionGracePeriodSeconds");
        m.remove("managedFields");
        set_type(&mut obj, def);
        if def.status_subresource {
            ensure_object(&mut obj).remove("status");
        }
        if mode != Mode::Plan {
            check_valid(def, &obj)?;
            self.check_owner_references(def, &ns, &name, None, &obj)?;
        }
        let stored = Stored {
            obj,
            applied,
            applied_status: BTreeMap::new(),
        };
        match mode {
            Mode::DryRun => Ok(stored.obj),
            Mode::Plan | Mode::Finalise => Ok(self.record_plan(Planned {
                op: Op::Create,
                def: def.clone(),
                key,
                stored,
                old: None,
                orphan: false,
                status_only: false,
            })),
            Mode::Commit => self.commit_create(def, key, stored),
        }
    }

    /// Stores a planned new object (AlreadyExists if the name was taken meanwhile).
    fn commit_create(
        &mut self,
        def: &ResourceDef,
        key: ObjKey,
        stored: Stored,
    ) -> Result<Value, ApiError> {
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(def, &key.name));
        }
        Ok(self.put(key, stored, "ADDED"))
    }

    fn record_plan(&mut self, plan: Planned) -> Value {
        let obj = plan.stored.obj.clone();
        self.plan = Some(plan);
        obj
    }

    /// Stores a planned write: the object must still be the one the plan started from
    /// (else 409 Conflict, as a guaranteed update whose precondition failed).
    fn commit(&mut self, plan: Planned) -> Result<Value, ApiError> {
        let Planned {
            op,
            def,
            key,
            stored,
            old,
            orphan,
            ..
        } = plan;
        if op == Op::Create {
            return self.commit_create(&def, key, stored);
        }
        let Some(current) = self.objects.get(&key).cloned() else {
            return Err(ApiError::not_found(&def, &key.name));
        };
        let old = old.unwrap_or_default();
        if meta_str(&current.obj, "resourceVersion") != meta_str(&old.obj, "resourceVersion") {
            return Err(ApiError::conflict(&def, &key.name));
        }
        match op {
            Op::Delete => self
                .delete_or_mark(&key, !orphan)
                .map(|o| with_type(o, &def))
                .ok_or_else(|| ApiError::not_found(&def, &key.name)),
            _ => self.commit_update(&def, &key, stored, current),
        }
    }

    /// The tail of an update: removal when the last finalizer goes, no-op detection, store.
    fn commit_update(
        &mut self,
        def: &ResourceDef,
        key: &ObjKey,
        stored: Stored,
        old: Stored,
    ) -> Result<Value, ApiError> {
        let deleting = meta(&old.obj)
            .and_then(|m| m.get("deletionTimestamp"))
            .is_some();
        if deleting && finalizers(&stored.obj).is_empty() {
            self.store_insert(key, stored);
            return self
                .remove(key, true)
                .ok_or_else(|| ApiError::not_found(def, &key.name));
        }
        if stored.obj == old.obj {
            // A no-op write changes nothing, not even the resourceVersion (as the apiserver).
            self.store_insert(key, stored);
            return Ok(old.obj);
        }
        Ok(self.put(key.clone(), stored, "MODIFIED"))
    }

    /// PUT/PATCH/apply on an existing object: `new` is the full intended object.
    fn update(&mut self, upd: Update<'_>, mut new: Value) -> Result<Value, ApiError> {
        let Update {
            def,
            key,
            status_only,
            mode,
            applied,
            applied_status,
        } = upd;
        let Some(old) = self.objects.get(key).cloned() else {
            return Err(ApiError::not_found(def, &key.name));
        };
        if !new.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be an object",
            ));
        }
        if let Some(body_name) = meta_str(&new, "name") {
            if body_name != key.name {
                return Err(ApiError::bad_request(&format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({})",
                    key.name
                )));
            }
        }
        let old_rv = meta_str(&old.obj, "resourceVersion")
            .unwrap_or("")
            .to_string();
        if let Some(rv) = meta_str(&new, "resourceVersion") {
            if !rv.is_empty() && rv != old_rv {
                return Err(ApiError::conflict(def, &key.name));
            }
        }
        decode(def, &mut new)?;
        if status_only {
            let mut merged = old.obj.clone();
            match new.get("status").cloned() {
                Some(s) => ensure_object(&mut merged).insert("status".into(), s),
                None => ensure_object(&mut merged).remove("status"),
            };
            new = merged;
        } else {
            let old_meta = meta(&old.obj).cloned().unwrap_or_default();
            let m = meta_mut(&mut new);
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match old_meta.get(f) {
                    Some(v) => m.insert(f.into(), v.clone()),
                    None => m.remove(f),
                };
            }
            m.insert("name".into(), Value::String(key.name.clone()));
            if def.namespaced {
                m.insert("namespace".into(), Value::String(key.namespace.clone()));
            } else {
                m.remove("namespace");
            }
            m.remove("managedFields");
            if def.status_subresource {
                match old.obj.get("status").cloned() {
                    Some(s) => ensure_object(&mut new).insert("status".into(), s),
                    None => ensure_object(&mut new).remove("status"),
                };
            }
        }
        set_type(&mut new, def);
        meta_mut(&mut new).insert("resourceVersion".into(), Value::String(old_rv));

        let deleting = meta(&old.obj)
            .and_then(|m| m.get("deletionTimestamp"))
            .is_some();
        if deleting {
            let old_f = finalizers(&old.obj);
            if finalizers(&new).iter().any(|f| !old_f.contains(f)) {
                return Err(ApiError::invalid(
                    def,
                    &key.name,
                    "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted",
                ));
            }
        }
        let generation = meta(&old.obj)
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64)
            .unwrap_or(1);
        if spec_part(&old.obj, def) != spec_part(&new, def) {
            meta_mut(&mut new).insert("generation".into(), json!(generation + 1));
        }
        if mode != Mode::Plan {
            check_valid(def, &new)?;
            self.check_owner_references(def, &key.namespace, &key.name, Some(&old.obj), &new)?;
        }
        // A non-apply write (PUT, merge/strategic/JSON patch) takes ownership of what it
        // changed, as the apiserver's Update operation does: apply managers lose those fields,
        // so a later apply by another manager does not conflict on them.
        let stored = Stored {
            applied: applied.unwrap_or_else(|| disown_changed(&old.applied, &new)),
            applied_status: applied_status
                .unwrap_or_else(|| disown_changed(&old.applied_status, &new)),
            obj: new,
        };
        match mode {
            Mode::DryRun => Ok(stored.obj),
            Mode::Plan | Mode::Finalise => Ok(self.record_plan(Planned {
                op: Op::Update,
                def: def.clone(),
                key: key.clone(),
                stored,
                old: Some(old),
                orphan: false,
                status_only,
            })),
            Mode::Commit => self.commit_update(def, key, stored, old),
        }
    }
}

/// How far a write goes. Writes that admission webhooks see run twice: in `Plan` (decode,
/// default, no validation, nothing stored: the object mutating webhooks get) and, with the
/// mutated object, in `Finalise` (validated, nothing stored: what validating webhooks get);
/// then [`State::commit`] stores the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Commit,
    /// `?dryRun=All`: everything but storing.
    DryRun,
    Plan,
    Finalise,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Create,
    Update,
    Delete,
}

/// A write computed but not stored (see [`Mode`]).
#[derive(Clone, Debug)]
struct Planned {
    op: Op,
    def: ResourceDef,
    key: ObjKey,
    /// The object to store (for Delete: the stored object).
    stored: Stored,
    /// The stored object the write started from (Update, Delete).
    old: Option<Stored>,
    /// Delete with `propagationPolicy: Orphan`.
    orphan: bool,
    /// A write to the `/status` subresource.
    status_only: bool,
}

/// Decode + default + canonicalise, as the apiserver does before admission (400 when the
/// body does not decode into the kind's type).
fn decode(def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
    if !def.builtin {
        return Ok(());
    }
    normalise::normalise(&def.group, &def.kind, obj).map_err(|e| {
        ApiError::bad_request(&format!(
            "{kind} in version \"{v}\" cannot be handled as a {kind}: {msg}",
            kind = def.kind,
            v = def.version,
            msg = e.0
        ))
    })
}

/// Strategy validation: 422 Invalid with `details.causes`.
fn check_valid(def: &ResourceDef, obj: &Value) -> Result<(), ApiError> {
    let errs = normalise::validate(&def.group, &def.kind, obj);
    if errs.is_empty() {
        return Ok(());
    }
    let name = meta_str(obj, "name").unwrap_or("");
    Err(ApiError::invalid_fields(def, name, &errs))
}

/// Arguments of [`State::update`].
struct Update<'a> {
    def: &'a ResourceDef,
    key: &'a ObjKey,
    status_only: bool,
    mode: Mode,
    applied: Option<BTreeMap<String, Value>>,
    applied_status: Option<BTreeMap<String, Value>>,
}

// ---------------------------------------------------------------------------------------------
// Errors as metav1.Status
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
struct ApiError {
    code: u16,
    reason: &'static str,
    /// A reason passed through from elsewhere (a webhook's denial); wins over `reason`.
    reason_text: Option<String>,
    message: String,
    details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            reason_text: None,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, def: &ResourceDef, name: &str) -> Self {
        self.details = Some(json!({"name": name, "group": def.group, "kind": def.plural}));
        self
    }

    fn bad_request(message: &str) -> Self {
        Self::new(400, "BadRequest", message)
    }

    fn not_found(def: &ResourceDef, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} {name:?} not found", def.qualified()),
        )
        .with_details(def, name)
    }

    fn not_found_path() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    fn already_exists(def: &ResourceDef, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} {name:?} already exists", def.qualified()),
        )
        .with_details(def, name)
    }

    fn conflict(def: &ResourceDef, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {name:?}: the object has been modified; please apply your changes to the latest version and try again",
                def.qualified()
            ),
        )
        .with_details(def, name)
    }

    /// `<Kind>[.<group>] "<name>" is invalid: <message>` (apimachinery `NewInvalid`), details
    /// naming the Kind (not the plural) as upstream does for Invalid.
    fn invalid(def: &ResourceDef, name: &str, message: &str) -> Self {
        let qualified = if def.group.is_empty() {
            def.kind.clone()
        } else {
            format!("{}.{}", def.kind, def.group)
        };
        let mut e = Self::new(
            422,
            "Invalid",
            format!("{qualified} {name:?} is invalid: {message}"),
        );
        e.details = Some(json!({"name": name, "group": def.group, "kind": def.kind}));
        e
    }

    /// [`Self::invalid`] from field errors: one error is inlined, several are `[a, b]`, and
    /// every error is a `details.causes` entry.
    fn invalid_fields(def: &ResourceDef, name: &str, errs: &[normalise::FieldErr]) -> Self {
        let lines: Vec<String> = errs.iter().map(normalise::FieldErr::line).collect();
        let message = if lines.len() == 1 {
            lines[0].clone()
        } else {
            format!("[{}]", lines.join(", "))
        };
        let mut e = Self::invalid(def, name, &message);
        let causes: Vec<Value> = errs
            .iter()
            .map(|f| json!({"reason": f.reason, "message": f.message, "field": f.field}))
            .collect();
        if let Some(d) = e.details.as_mut() {
            ensure_object(d).insert("causes".into(), Value::Array(causes));
        }
        e
    }

    fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason_text.as_deref().unwrap_or(self.reason),
            "code": self.code,
        });
        if s["reason"] == "" {
            ensure_object(&mut s).remove("reason");
        }
        if let Some(d) = &self.details {
            ensure_object(&mut s).insert("details".into(), d.clone());
        }
        s
    }
}

/// The metav1 StatusReason apiservers use for an HTTP code (for injected faults).
fn reason_for_code(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Expired",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}

// ---------------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
struct Ctx {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    content_type: String,
    accept: String,
    body: Option<Value>,
    /// Set by the admission path to plan a write instead of storing it.
    plan: bool,
    /// Who sent it.
    user: Identity,
}

impl Ctx {
    fn mode(&self) -> Mode {
        if self.plan {
            Mode::Plan
        } else if self.dry_run() {
            Mode::DryRun
        } else {
            Mode::Commit
        }
    }
    fn flag(&self, key: &str) -> bool {
        matches!(self.query.get(key).map(String::as_str), Some("true" | "1"))
    }
    fn dry_run(&self) -> bool {
        self.query.get("dryRun").is_some_and(|v| v == "All")
    }
}

/// [`route`] with the caller recorded as the acting identity (for in-tree admission checks
/// such as [`State::check_owner_references`]).
fn route_as(st: &mut State, ctx: &Ctx) -> Outcome {
    st.actor = Some(ctx.user.clone());
    let outcome = route(st, ctx);
    st.actor = None;
    outcome
}

fn route(st: &mut State, ctx: &Ctx) -> Outcome {
    let segs: Vec<&str> = ctx.path.split('/').filter(|s| !s.is_empty()).collect();
    let get = ctx.method == "GET";
    let aggregated = ctx.accept.contains("g=apidiscovery.k8s.io");
    match segs.as_slice() {
        ["version"] if get => Outcome::ok(json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "gitCommit": "fake",
            "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24",
            "compiler": "gc", "platform": "linux/amd64"
        })),
        ["api"] if get && aggregated => aggregated_discovery(st, true),
        ["api"] if get => Outcome::ok(json!({
            "kind": "APIVersions",
            "versions": versions_of(st, ""),
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:443"}],
        })),
        ["apis"] if get && aggregated => aggregated_discovery(st, false),
        ["apis"] if get => {
            let groups: Vec<Value> = group_names(st).iter().map(|g| api_group(st, g)).collect();
            Outcome::ok(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
        ["apis", group] if get => {
            if versions_of(st, group).is_empty() {
                ApiError::not_found_path().into()
            } else {
                Outcome::ok(api_group(st, group))
            }
        }
        ["api", version] if get => resource_list(st, "", version),
        ["apis", group, version] if get => resource_list(st, group, version),
        ["api", version, rest @ ..] => resource_request(st, ctx, "", version, rest),
        ["apis", group, version, rest @ ..] => resource_request(st, ctx, group, version, rest),
        _ => ApiError::not_found_path().into(),
    }
}

/// A parsed resource URL.
struct Target {
    def: ResourceDef,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_target(st: &State, group: &str, version: &str, rest: &[&str]) -> Option<Target> {
    let namespaced_def = |plural: &str| {
        st.find_plural(group, version, plural)
            .filter(|d| d.namespaced)
    };
    let t = |def: ResourceDef, ns: Option<&str>, name: Option<&&str>, sub: Option<&&str>| Target {
        def,
        namespace: ns.map(str::to_string),
        name: name.map(|s| s.to_string()),
        sub: sub.map(|s| s.to_string()),
    };
    match rest {
        ["namespaces", ns, plural, tail @ ..] if tail.len() <= 2 => {
            if let Some(def) = namespaced_def(plural) {
                return Some(t(def, Some(ns), tail.first(), tail.get(1)));
            }
            // `/api/v1/namespaces/{name}/status` is the namespace's own subresource.
            let def = st
                .find_plural(group, version, "namespaces")
                .filter(|d| !d.namespaced)?;
            (tail.is_empty()).then(|| t(def, None, Some(ns), Some(plural)))
        }
        [plural, tail @ ..] if tail.len() <= 2 => {
            let def = st.find_plural(group, version, plural)?;
            if def.namespaced && !tail.is_empty() {
                return None; // a namespaced object needs its namespace in the path
            }
            Some(t(def, None, tail.first(), tail.get(1)))
        }
        _ => None,
    }
}

fn resource_request(
    st: &mut State,
    ctx: &Ctx,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Outcome {
    let Some(target) = parse_target(st, group, version, rest) else {
        return ApiError::not_found_path().into();
    };
    let def = &target.def;
    if def.group == "authorization.k8s.io" && def.plural.ends_with("accessreviews") {
        if ctx.method != "POST" || target.name.is_some() {
            return ApiError::method_not_allowed().into();
        }
        return access_review(st, ctx, def);
    }
    let verb = match (ctx.method.as_str(), &target.name) {
        ("GET", None) if ctx.flag("watch") => "watch",
        ("GET", None) => "list",
        ("POST", None) => "create",
        ("DELETE", None) => "deletecollection",
        ("GET", Some(_)) => "get",
        ("PUT", Some(_)) => "update",
        ("PATCH", Some(_)) => "patch",
        ("DELETE", Some(_)) => "delete",
        _ => return ApiError::method_not_allowed().into(),
    };
    if !def.has_verb(verb) {
        return ApiError::method_not_allowed().into();
    }
    let status_only = match target.sub.as_deref() {
        None => false,
        Some("status") if def.status_subresource && matches!(verb, "get" | "update" | "patch") => {
            true
        }
        Some(_) => return ApiError::not_found_path().into(),
    };
    let ns = target.namespace.as_deref();
    match (verb, target.name.as_deref()) {
        ("list", _) => list(st, ctx, def, ns),
        ("watch", _) => watch(st, ctx, def, ns),
        ("deletecollection", _) => delete_collection(st, ctx, def, ns),
        ("create", _) => {
            let body = ctx.body.clone().unwrap_or(Value::Null);
            match st.create(def, ns, body, ctx.mode(), BTreeMap::new()) {
                Ok(obj) => Outcome::created(obj),
                Err(e) => e.into(),
            }
        }
        (_, Some(name)) => {
            let key = ObjKey::new(&def.group, &def.plural, ns.unwrap_or(""), name);
            let res = match verb {
                "get" => st
                    .objects
                    .get(&key)
                    .map(|s| with_type(s.obj.clone(), def))
                    .ok_or_else(|| ApiError::not_found(def, name)),
                "update" => {
                    let upd = Update {
                        def,
                        key: &key,
                        status_only,
                        mode: ctx.mode(),
                        applied: None,
                        applied_status: None,
                    };
                    st.update(upd, ctx.body.clone().unwrap_or(Value::Null))
                }
                "patch" => return patch(st, ctx, def, &key, status_only),
                _ => delete(st, ctx, def, &key),
            };
            match res {
                Ok(obj) => Outcome::ok(obj),
                Err(e) => e.into(),
            }
        }
        _ => ApiError::method_not_allowed().into(),
    }
}

fn access_review(st: &mut State, ctx: &Ctx, def: &ResourceDef) -> Outcome {
    let Some(mut review) = ctx.body.clone().filter(Value::is_object) else {
        return ApiError::bad_request("the body of the request must be a review object").into();
    };
    let spec = review.get("spec").cloned().unwrap_or(Value::Null);
    let answer = match st.access_rule.clone() {
        Some(rule) => rule(&spec),
        None => match rbac_review(st, ctx, def, &spec) {
            Ok(a) => a,
            Err(e) => return e.into(),
        },
    };
    let mut status = json!({"allowed": answer.allowed});
    if answer.denied {
        ensure_object(&mut status).insert("denied".into(), json!(true));
    }
    if !answer.reason.is_empty() {
        ensure_object(&mut status).insert("reason".into(), json!(answer.reason));
    }
    set_type(&mut review, def);
    ensure_object(&mut review).insert("status".into(), status);
    Outcome::created(review)
}

/// Answers a (self/local) SubjectAccessReview from the stored RBAC objects, validating the
/// spec as the apiserver does (422 when it asks about nobody or not exactly one kind of
/// attributes).
fn rbac_review(
    st: &State,
    ctx: &Ctx,
    def: &ResourceDef,
    spec: &Value,
) -> Result<AccessAnswer, ApiError> {
    let self_review = def.plural == "selfsubjectaccessreviews";
    let ra = spec.get("resourceAttributes").filter(|v| v.is_object());
    let nra = spec.get("nonResourceAttributes").filter(|v| v.is_object());
    let invalid = |m: &str| ApiError::invalid(def, "", m);
    if ra.is_some() == nra.is_some() {
        return Err(invalid(
            "spec.resourceAttributes: Invalid value: exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ));
    }
    let user = if self_review {
        ctx.user.clone()
    } else {
        let username = spec
            .get("user")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let groups: Vec<String> = spec
            .get("groups")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if username.is_empty() && groups.is_empty() {
            return Err(invalid(
                "spec.user: Invalid value: \"\": at least one of user or group must be specified",
            ));
        }
        Identity {
            username,
            uid: spec
                .get("uid")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            groups,
            extra: BTreeMap::new(),
        }
    };
    let s = |v: Option<&Value>, f: &str| {
        v.and_then(|x| x.get(f))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let req = match ra {
        Some(_) => rbac::Request {
            verb: s(ra, "verb"),
            resource: Some(rbac::ResourceAttrs {
                group: s(ra, "group"),
                resource: s(ra, "resource"),
                subresource: s(ra, "subresource"),
                namespace: s(ra, "namespace"),
                name: s(ra, "name"),
            }),
            path: String::new(),
        },
        None => rbac::Request {
            verb: s(nra, "verb"),
            resource: None,
            path: s(nra, "path"),
        },
    };
    let d = rbac::authorize(&st.rbac_objects(), &user, &req);
    Ok(AccessAnswer {
        allowed: d.allowed,
        denied: false,
        reason: d.reason,
    })
}

/// The RBAC request a REST call makes (`RequestInfo`), `None` when the path is not one the
/// fake serves (it then 404s anyway).
fn request_attributes(st: &State, ctx: &Ctx) -> Option<rbac::Request> {
    let segs: Vec<&str> = ctx.path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] if !rest.is_empty() => ("", *v, rest),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => (*g, *v, rest),
        _ => {
            return Some(rbac::Request {
                verb: ctx.method.to_lowercase(),
                resource: None,
                path: ctx.path.clone(),
            })
        }
    };
    let t = parse_target(st, group, version, rest)?;
    let verb = match (ctx.method.as_str(), &t.name) {
        ("GET", None) if ctx.flag("watch") => "watch",
        ("GET", None) => "list",
        ("POST", _) => "create",
        ("DELETE", None) => "deletecollection",
        ("GET", Some(_)) => "get",
        ("PUT", Some(_)) => "update",
        ("PATCH", Some(_)) => "patch",
        ("DELETE", Some(_)) => "delete",
        (m, _) => {
            return Some(rbac::Request {
                verb: m.to_lowercase(),
                ..Default::default()
            })
        }
    };
    // A namespace's own requests are in that namespace.
    let namespace = if t.def.group.is_empty() && t.def.plural == "namespaces" {
        t.name.clone().unwrap_or_default()
    } else {
        t.namespace.clone().unwrap_or_default()
    };
    Some(rbac::Request {
        verb: verb.into(),
        resource: Some(rbac::ResourceAttrs {
            group: t.def.group.clone(),
            resource: t.def.plural.clone(),
            subresource: t.sub.clone().unwrap_or_default(),
            namespace,
            name: t.name.clone().unwrap_or_default(),
        }),
        path: ctx.path.clone(),
    })
}

/// RBAC for a request by a non-superuser: 403 Forbidden as the apiserver writes it. A
/// server-side apply that would create the object also needs `create`.
fn authorize_request(st: &State, ctx: &Ctx) -> Result<(), ApiError> {
    if ctx.user.is_superuser() {
        return Ok(());
    }
    let Some(req) = request_attributes(st, ctx) else {
        return Ok(());
    };
    let objects = st.rbac_objects();
    let mut checks = vec![req.clone()];
    let applies = ctx.content_type.starts_with("application/apply-patch");
    if let (true, "patch", Some(r)) = (applies, req.verb.as_str(), &req.resource) {
        let key = ObjKey::new(&r.group, &r.resource, &r.namespace, &r.name);
        if r.subresource.is_empty() && !st.objects.contains_key(&key) {
            checks.push(rbac::Request {
                verb: "create".into(),
                ..req.clone()
            });
        }
    }
    for check in checks {
        if !rbac::authorize(&objects, &ctx.user, &check).allowed {
            let mut e = ApiError::new(403, "Forbidden", rbac::forbidden_message(&ctx.user, &check));
            if let Some(r) = &check.resource {
                e.details = Some(json!({"name": r.name, "group": r.group, "kind": r.resource}));
            }
            return Err(e);
        }
    }
    Ok(())
}

/// An OwnerReference as Go's generated `String()` prints it.
fn go_owner_reference(r: &Value) -> String {
    let s = |f: &str| r.get(f).and_then(Value::as_str).unwrap_or("").to_string();
    let b = |f: &str| match r.get(f).and_then(Value::as_bool) {
        Some(v) => format!("*{v}"),
        None => "nil".to_string(),
    };
    format!(
        "&OwnerReference{{Kind:{},Name:{},UID:{},APIVersion:{},Controller:{},BlockOwnerDeletion:{},}}",
        s("kind"),
        s("name"),
        s("uid"),
        s("apiVersion"),
        b("controller"),
        b("blockOwnerDeletion")
    )
}

/// LIST, with `limit`/`continue` paging. Items of built-in kinds carry no apiVersion/kind
/// (kube-apiserver omits them; the list has them); custom resources keep them.
///
/// The continue token is base64 JSON `{"v":"meta.k8s.io/v1","rv":N,"start":"ns/name"}` like
/// the apiserver's; later pages continue *after* `start` in the current store (not a
/// snapshot at `rv`), and a token whose `rv` predates [`FakeApiServer::compact_watch_history`]
/// gets 410 Expired.
fn list(st: &State, ctx: &Ctx, def: &ResourceDef, ns: Option<&str>) -> Outcome {
    let filter = match Filter::from_ctx(ctx, def, ns) {
        Ok(f) => f,
        Err(e) => return e.into(),
    };
    let limit = match ctx.query.get("limit").map(|l| l.parse::<usize>()) {
        None => None,
        Some(Ok(0)) => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            return ApiError::bad_request("limit: Invalid value: must be a non-negative integer")
                .into()
        }
    };
    let (list_rv, after) = match ctx.query.get("continue").filter(|c| !c.is_empty()) {
        None => (st.rv, None),
        Some(token) => match decode_continue(token) {
            None => {
                return ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)").into()
            }
            Some((rv, _)) if rv < st.compacted_rv => {
                return ApiError::new(410, "Expired", "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.").into()
            }
            Some((rv, start)) => (rv, Some(start)),
        },
    };
    let mut matching = st.select(
        &filter,
        after.as_ref().map(|a| (a.0.as_str(), a.1.as_str())),
    );
    let mut items = Vec::new();
    let mut last: Option<&ObjKey> = None;
    for (k, s) in matching.by_ref() {
        if limit.is_some_and(|l| items.len() >= l) {
            // One more exists: hand out a continue token.
            break;
        }
        items.push(list_item(s.obj.clone(), def));
        last = Some(k);
    }
    let mut metadata = json!({"resourceVersion": list_rv.to_string()});
    let after_last = |l: &ObjKey| {
        st.scan_after(
            &def.group,
            &def.plural,
            ns,
            Some((l.namespace.as_str(), l.name.as_str())),
        )
    };
    let more = limit.is_some_and(|l| items.len() >= l)
        && last.is_some_and(|l| {
            st.select(&filter, Some((l.namespace.as_str(), l.name.as_str())))
                .next()
                .is_some()
        });
    if more {
        if let Some(l) = last {
            let m = ensure_object(&mut metadata);
            m.insert(
                "continue".into(),
                json!(encode_continue(list_rv, &l.namespace, &l.name)),
            );
            if filter.labels.is_empty() && filter.fields.is_empty() {
                let remaining = after_last(l).count();
                m.insert("remainingItemCount".into(), json!(remaining));
            }
        }
    }
    Outcome::ok(json!({
        "kind": format!("{}List", def.kind),
        "apiVersion": def.api_version(),
        "metadata": metadata,
        "items": items,
    }))
}

/// An object as a LIST item: built-ins lose apiVersion/kind, custom resources keep them.
fn list_item(obj: Value, def: &ResourceDef) -> Value {
    if def.builtin {
        let mut obj = obj;
        if let Value::Object(m) = &mut obj {
            m.remove("apiVersion");
            m.remove("kind");
        }
        obj
    } else {
        with_type(obj, def)
    }
}

fn encode_continue(rv: u64, namespace: &str, name: &str) -> String {
    let start = if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}/{name}")
    };
    let raw = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start}).to_string();
    base64::engine::general_purpose::URL_SAFE.encode(raw)
}

/// `(rv, (namespace, name))` of a continue token.
fn decode_continue(token: &str) -> Option<(u64, (String, String))> {
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(token))
        .ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    if v.get("v")? != "meta.k8s.io/v1" {
        return None;
    }
    let rv = v.get("rv")?.as_u64()?;
    let start = v.get("start")?.as_str()?;
    let (ns, name) = start.split_once('/').unwrap_or(("", start));
    Some((rv, (ns.to_string(), name.to_string())))
}

fn delete(st: &mut State, ctx: &Ctx, def: &ResourceDef, key: &ObjKey) -> Result<Value, ApiError> {
    let Some(stored) = st.objects.get(key) else {
        return Err(ApiError::not_found(def, &key.name));
    };
    let pre = ctx.body.as_ref().and_then(|b| b.get("preconditions"));
    for (field, meta_field) in [("uid", "uid"), ("resourceVersion", "resourceVersion")] {
        if let Some(want) = pre.and_then(|p| p.get(field)).and_then(Value::as_str) {
            if meta_str(&stored.obj, meta_field) != Some(want) {
                return Err(ApiError::conflict(def, &key.name));
            }
        }
    }
    if ctx.dry_run() && !ctx.plan {
        return Ok(with_type(stored.obj.clone(), def));
    }
    let orphan = ctx
        .body
        .as_ref()
        .and_then(|b| b.get("propagationPolicy"))
        .and_then(Value::as_str)
        == Some("Orphan")
        || ctx
            .query
            .get("propagationPolicy")
            .is_some_and(|p| p == "Orphan");
    if ctx.plan {
        let old = stored.clone();
        return Ok(st.record_plan(Planned {
            op: Op::Delete,
            def: def.clone(),
            key: key.clone(),
            stored: old.clone(),
            old: Some(old),
            orphan,
            status_only: false,
        }));
    }
    st.delete_or_mark(key, !orphan)
        .map(|o| with_type(o, def))
        .ok_or_else(|| ApiError::not_found(def, &key.name))
}

fn delete_collection(st: &mut State, ctx: &Ctx, def: &ResourceDef, ns: Option<&str>) -> Outcome {
    let filter = match Filter::from_ctx(ctx, def, ns) {
        Ok(f) => f,
        Err(e) => return e.into(),
    };
    let keys: Vec<ObjKey> = st.select(&filter, None).map(|(k, _)| k.clone()).collect();
    let items: Vec<Value> = if ctx.dry_run() {
        keys.iter()
            .filter_map(|k| st.objects.get(k).map(|s| s.obj.clone()))
            .collect()
    } else {
        keys.iter()
            .filter_map(|k| st.delete_or_mark(k, true))
            .collect()
    };
    Outcome::ok(json!({
        "kind": format!("{}List", def.kind),
        "apiVersion": def.api_version(),
        "metadata": {"resourceVersion": st.rv.to_string()},
        "items": items.into_iter().map(|o| with_type(o, def)).collect::<Vec<_>>(),
    }))
}

// ---------------------------------------------------------------------------------------------
// Small JSON and text helpers
// ---------------------------------------------------------------------------------------------

/// The objects of a multi-document YAML text (empty documents skipped). Panics on bad YAML
/// (test support: a broken fixture is a failed test).
pub fn parse_yaml_docs(yaml: &str) -> Vec<Value> {
    use serde::Deserialize as _;
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|doc| match Value::deserialize(doc) {
            Ok(v) => v,
            Err(e) => panic!("bad YAML document: {e}"),
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

fn ensure_object(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("made an object just above"),
    }
}

fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj).and_then(|m| m.get(field)).and_then(Value::as_str)
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    let root = ensure_object(obj);
    ensure_object(root.entry("metadata").or_insert(Value::Null))
}

fn finalizers(obj: &Value) -> Vec<String> {
    meta(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn owner_uids(obj: &Value) -> Vec<String> {
    meta(obj)
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|o| o.get("uid").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn set_type(obj: &mut Value, def: &ResourceDef) {
    let m = ensure_object(obj);
    m.insert("apiVersion".into(), Value::String(def.api_version()));
    m.insert("kind".into(), Value::String(def.kind.clone()));
}

fn with_type(mut obj: Value, def: &ResourceDef) -> Value {
    set_type(&mut obj, def);
    obj
}

/// What a generation bump looks at: everything but metadata (and status when it is a
/// subresource) and the type fields.
fn spec_part(obj: &Value, def: &ResourceDef) -> Value {
    let mut v = obj.clone();
    if let Value::Object(m) = &mut v {
        for f in ["metadata", "apiVersion", "kind"] {
            m.remove(f);
        }
        if def.status_subresource {
            m.remove("status");
        }
    }
    v
}

/// Lowercase RFC 1123 subdomain, as names of most resources must be.
fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Five characters from `[a-z0-9]`, deterministic per counter (for generateName).
fn generated_suffix(n: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut x = n.wrapping_mul(2_654_435_761).wrapping_add(97);
    (0..5)
        .map(|_| {
            let c = ALPHABET[(x % ALPHABET.len() as u64) as usize] as char;
            x /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Decodes a query string into a map (last value of a repeated key wins).
fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Unit tests of the pure helpers (they run in every test binary that includes this file; they
// take milliseconds). The HTTP behaviour is tested in `tests/fake_apiserver_selftest.rs`.
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod unit_tests {
    use super::*;

    fn labels(v: Value) -> Value {
        json!({"metadata": {"labels": v}})
    }

    #[test]
    fn label_selectors_parse_and_match() {
        let obj = labels(json!({"app": "web", "tier": "front"}));
        let cases: &[(&str, bool)] = &[
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app=db", false),
            ("app!=db", true),
            ("app!=web", false),
            ("app", true),
            ("missing", false),
            ("!missing", true),
            ("!app", false),
            ("app in (db, web)", true),
            ("app in (db)", false),
            ("app notin (db)", true),
            ("app notin (web,db)", false),
            ("missing notin (x)", true),
            ("app=web,tier=front", true),
            ("app=web,tier=back", false),
            ("app in (a,web),tier", true),
        ];
        for (sel, want) in cases {
            let reqs = parse_label_selector(sel).unwrap();
            let l = meta(&obj)
                .and_then(|m| m.get("labels"))
                .and_then(Value::as_object);
            assert_eq!(
                reqs.iter().all(|r| label_matches(r, l)),
                *want,
                "selector {sel:?}"
            );
        }
        assert_eq!(
            parse_label_selector("a in (x,y),b").unwrap(),
            vec![
                LabelReq::In("a".into(), vec!["x".into(), "y".into()]),
                LabelReq::Exists("b".into())
            ]
        );
        assert!(parse_label_selector("a in x").is_err());
        assert!(parse_label_selector("=x").is_err());
        assert!(parse_label_selector("a b").is_err());
    }

    #[test]
    fn field_selectors_parse_and_match() {
        let obj = json!({"metadata": {"name": "n1", "namespace": "ns"}, "spec": {"replicas": 2}});
        let cases: &[(&str, bool)] = &[
            ("metadata.name=n1", true),
            ("metadata.name==n1", true),
            ("metadata.name=n2", false),
            ("metadata.name!=n2", true),
            ("metadata.namespace=ns,metadata.name=n1", true),
            ("spec.replicas=2", true),
            ("spec.missing=", true),
        ];
        for (sel, want) in cases {
            let reqs = parse_field_selector(sel).unwrap();
            assert_eq!(
                reqs.iter().all(|r| field_matches(r, &obj)),
                *want,
                "selector {sel:?}"
            );
        }
        assert!(parse_field_selector("metadata.name").is_err());
    }

    #[test]
    fn query_strings_are_percent_decoded() {
        let q = parse_query("labelSelector=app%3Dweb%2Ctier&watch=true&x=a+b&bad=%zz&trail=%4");
        assert_eq!(q["labelSelector"], "app=web,tier");
        assert_eq!(q["watch"], "true");
        assert_eq!(q["x"], "a b");
        assert_eq!(q["bad"], "%zz");
        assert_eq!(q["trail"], "%4");
        assert!(parse_query("").is_empty());
    }

    #[test]
    fn leaf_paths_and_path_edits() {
        let v = json!({"a": {"b": 1, "c": [1, 2], "e": {}}, "d": "x"});
        let got: Vec<String> = leaf_paths(&v).iter().map(|(p, _)| dotted(p)).collect();
        assert_eq!(got, [".a.b", ".a.c", ".a.e", ".d"]);
        let path = vec!["a".to_string(), "b".to_string()];
        assert_eq!(get_path(&v, &path), Some(&json!(1)));
        let mut w = v.clone();
        remove_path(&mut w, &path);
        assert_eq!(w, json!({"a": {"c": [1, 2], "e": {}}, "d": "x"}));
        remove_path(&mut w, &["zz".to_string(), "y".to_string()]);
        assert_eq!(get_path(&w, &["d".to_string()]), Some(&json!("x")));
        assert_eq!(
            owned_part(
                &json!({"apiVersion": "v1", "kind": "K", "metadata": {"name": "n", "labels": {"a": "b"}}})
            ),
            json!({"metadata": {"labels": {"a": "b"}}})
        );
    }

    #[test]
    fn names_and_generated_suffixes() {
        for (name, ok) in [
            ("a", true),
            ("a-b.c", true),
            ("A", false),
            ("-a", false),
            ("a..b", false),
            ("", false),
        ] {
            assert_eq!(is_valid_name(name), ok, "{name:?}");
        }
        let s = generated_suffix(1);
        assert_eq!(s.len(), 5);
        assert_ne!(s, generated_suffix(2));
        assert!(is_valid_name(&format!("x-{s}")));
    }

    #[test]
    fn urls_parse_into_targets() {
        let (tx, _) = broadcast::channel(1);
        let st = State::new(tx);
        let t = |g: &str, v: &str, rest: &[&str]| {
            parse_target(&st, g, v, rest).map(|t| (t.def.plural, t.namespace, t.name, t.sub))
        };
        let s = |x: &str| Some(x.to_string());
        assert_eq!(
            t("apps", "v1", &["namespaces", "n", "deployments"]),
            Some(("deployments".into(), s("n"), None, None))
        );
        assert_eq!(
            t(
                "apps",
                "v1",
                &["namespaces", "n", "deployments", "d", "status"]
            ),
            Some(("deployments".into(), s("n"), s("d"), s("status")))
        );
        assert_eq!(
            t("apps", "v1", &["deployments"]),
            Some(("deployments".into(), None, None, None))
        );
        assert_eq!(
            t("apps", "v1", &["deployments", "d"]),
            None,
            "namespaced object without namespace"
        );
        assert_eq!(
            t("", "v1", &["namespaces"]),
            Some(("namespaces".into(), None, None, None))
        );
        assert_eq!(
            t("", "v1", &["namespaces", "n"]),
            Some(("namespaces".into(), None, s("n"), None))
        );
        assert_eq!(
            t("", "v1", &["namespaces", "n", "status"]),
            Some(("namespaces".into(), None, s("n"), s("status")))
        );
        assert_eq!(
            t("", "v1", &["namespaces", "n", "pods", "p"]),
            Some(("pods".into(), s("n"), s("p"), None))
        );
        assert_eq!(t("nope", "v1", &["things"]), None);
        assert_eq!(
            t(
                "apps",
                "v1",
                &["namespaces", "n", "deployments", "d", "status", "x"]
            ),
            None
        );
    }

    #[test]
    fn status_bodies_are_metav1_status() {
        let def = ResourceDef::new("apps", "v1", "Deployment", "deployments", true);
        let s = ApiError::conflict(&def, "web").to_status();
        assert_eq!(s["kind"], "Status");
        assert_eq!(s["status"], "Failure");
        assert_eq!(s["reason"], "Conflict");
        assert_eq!(s["code"], 409);
        assert_eq!(
            s["details"],
            json!({"name": "web", "group": "apps", "kind": "deployments"})
        );
        let s =
            ApiError::not_found(&ResourceDef::new("", "v1", "Pod", "pods", true), "p").to_status();
        assert_eq!(s["message"], "pods \"p\" not found");
        assert_eq!(reason_for_code(429), "TooManyRequests");
        assert_eq!(reason_for_code(418), "Unknown");
    }

    #[test]
    fn generation_ignores_metadata_and_subresource_status() {
        let with = ResourceDef::new("g", "v1", "K", "ks", true).with_status();
        let without = ResourceDef::new("g", "v1", "K", "ks", true);
        let a = json!({"metadata": {"name": "a"}, "spec": {"x": 1}, "status": {"s": 1}});
        let b = json!({"metadata": {"name": "a", "labels": {"l": "v"}}, "spec": {"x": 1}, "status": {"s": 2}});
        assert_eq!(spec_part(&a, &with), spec_part(&b, &with));
        assert_ne!(spec_part(&a, &without), spec_part(&b, &without));
    }

    #[test]
    fn faults_count_down_and_match_by_prefix() {
        let (tx, _) = broadcast::channel(1);
        let mut st = State::new(tx);
        st.faults.push(FaultRule {
            prefix: "/api/v1".into(),
            fault: Fault::Close,
            remaining: Some(2),
        });
        st.faults.push(FaultRule {
            prefix: "/apis".into(),
            fault: Fault::Status(500, "x".into()),
            remaining: None,
        });
        assert_eq!(st.take_fault("/api/v1/pods"), Some(Fault::Close));
        assert_eq!(
            st.take_fault("/apis/apps"),
            Some(Fault::Status(500, "x".into()))
        );
        assert_eq!(st.take_fault("/api/v1/pods"), Some(Fault::Close));
        assert_eq!(st.take_fault("/api/v1/pods"), None);
        assert_eq!(st.take_fault("/version"), None);
        assert_eq!(
            st.take_fault("/apis/apps"),
            Some(Fault::Status(500, "x".into()))
        );
    }
}
