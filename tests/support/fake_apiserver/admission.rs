//! The admission chain as kube-apiserver runs it for the webhooks registered by stored
//! `MutatingWebhookConfiguration` / `ValidatingWebhookConfiguration` objects:
//! decode+default -> mutating webhooks (one at a time, configuration-name then list order,
//! JSON Patch applied, `IfNeeded` reinvocation) -> validation (422) -> validating webhooks
//! (all called, the first error in list order wins) -> storage.
//!
//! Calls are real HTTPS POSTs over HTTP/1.1 (ALPN `http/1.1` only) with the webhook's
//! `caBundle` as the only trust root and `ServerName` `<svc>.<ns>.svc` for service
//! references; a service resolves to the loopback address a test registered with
//! [`super::FakeApiServer::set_service_endpoint`]. A `clientConfig.url` must name a loopback
//! host. Nothing ever leaves 127.0.0.1/::1.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use serde_json::{json, Map, Value};

use super::{
    meta, meta_str, with_type, ApiError, Ctx, Identity, Mode, Op, Outcome, Planned, Shared, State,
    Update,
};

/// One admission webhook call, as recorded by the fake (see
/// [`super::FakeApiServer::admission_calls`]).
#[derive(Clone, Debug, PartialEq)]
pub struct AdmissionCall {
    /// The webhook's `name`.
    pub webhook: String,
    pub mutating: bool,
    /// The URL posted to, e.g. `https://tether.tether-system.svc:443/mutate?timeout=10s`.
    pub url: String,
    /// The AdmissionReview sent.
    pub review: Value,
    /// The AdmissionReview answered (`None` when the call failed).
    pub response: Option<Value>,
    /// Why the call failed (the `ErrCallingWebhook` reason), if it did.
    pub error: Option<String>,
}

/// A webhook entry of a configuration, with where it came from.
#[derive(Clone, Debug)]
pub(super) struct Hook {
    pub config: String,
    pub spec: Value,
}

impl Hook {
    fn name(&self) -> &str {
        self.spec.get("name").and_then(Value::as_str).unwrap_or("")
    }
    fn str_field<'a>(&'a self, f: &str, default: &'a str) -> &'a str {
        self.spec.get(f).and_then(Value::as_str).unwrap_or(default)
    }
    fn fail_closed(&self) -> bool {
        self.str_field("failurePolicy", "Fail") != "Ignore"
    }
}

/// Webhooks of every stored configuration of a kind, ordered by configuration name, then
/// list position (`mutating_webhook_manager.go`).
pub(super) fn hooks(st: &State, plural: &str) -> Vec<Hook> {
    let mut out = Vec::new();
    for (_, stored) in st.scan("admissionregistration.k8s.io", plural, None) {
        let config = meta_str(&stored.obj, "name").unwrap_or("").to_string();
        for spec in stored
            .obj
            .get("webhooks")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            out.push(Hook {
                config: config.clone(),
                spec: spec.clone(),
            });
        }
    }
    out
}

/// What a webhook is matched against (upstream `admission.Attributes`).
#[derive(Clone, Debug)]
pub(super) struct Attrs {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub resource: String,
    pub subresource: String,
    pub operation: &'static str,
    pub namespace: String,
    pub name: String,
    pub namespaced: bool,
    pub object: Option<Value>,
    pub old_object: Option<Value>,
}

fn str_list(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// One `rules[]` entry (`rules.Matcher`): operations, groups, versions, resources with
/// `*`, `*/*`, `x/*`, `*/y` forms, and scope.
pub(super) fn rule_matches(rule: &Value, a: &Attrs) -> bool {
    let has = |field: &str, want: &str| {
        str_list(rule.get(field))
            .iter()
            .any(|x| *x == "*" || *x == want)
    };
    let resource_ok = str_list(rule.get("resources")).iter().any(|r| {
        let (res, sub) = r.split_once('/').unwrap_or((r, ""));
        if a.subresource.is_empty() {
            sub.is_empty() && (res == "*" || res == a.resource)
        } else {
            (res == "*" || res == a.resource) && (sub == "*" || sub == a.subresource)
        }
    });
    let scope_ok = match rule.get("scope").and_then(Value::as_str).unwrap_or("*") {
        "Namespaced" => a.namespaced,
        "Cluster" => !a.namespaced,
        _ => true,
    };
    has("operations", a.operation)
        && has("apiGroups", &a.group)
        && has("apiVersions", &a.version)
        && resource_ok
        && scope_ok
}

/// A metav1.LabelSelector (`matchLabels` + `matchExpressions`); absent or `{}` matches all.
pub(super) fn selector_matches(
    sel: Option<&Value>,
    labels: Option<&Map<String, Value>>,
) -> Result<bool, String> {
    let Some(sel) = sel.filter(|s| !s.is_null()) else {
        return Ok(true);
    };
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    if let Some(ml) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in ml {
            if get(k) != v.as_str() {
                return Ok(false);
            }
        }
    }
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let values = str_list(e.get("values"));
        let actual = get(key);
        let ok = match e.get("operator").and_then(Value::as_str).unwrap_or("") {
            "In" => actual.is_some_and(|x| values.contains(&x)),
            "NotIn" => actual.is_none_or(|x| !values.contains(&x)),
            "Exists" => actual.is_some(),
            "DoesNotExist" => actual.is_none(),
            other => return Err(format!("{other:?} is not a valid label selector operator")),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn labels_of(obj: Option<&Value>) -> Option<&Map<String, Value>> {
    obj.and_then(meta)
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
}

/// The namespace's labels, as the namespace matcher sees them.
#[derive(Clone, Debug)]
pub(super) enum NsLabels {
    /// Cluster-scoped, not a Namespace: namespaceSelector always matches.
    NotApplicable,
    Labels(Map<String, Value>),
    /// The request's namespace does not exist (404 for webhooks whose rules match).
    Missing,
}

/// `ShouldCallHook`: namespaceSelector, objectSelector, rules; selector/namespace errors
/// only count for webhooks whose rules match. `matchConditions` (CEL) are not evaluated:
/// a webhook that has them is an error, so a test never silently skips them.
pub(super) fn should_call(hook: &Hook, a: &Attrs, ns: &NsLabels) -> Result<bool, ApiError> {
    let rules_match = hook
        .spec
        .get("rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|r| rule_matches(r, a));
    if !rules_match {
        return Ok(false);
    }
    let ns_sel = hook.spec.get("namespaceSelector");
    let ns_ok = match ns {
        NsLabels::NotApplicable => Ok(true),
        NsLabels::Labels(l) => selector_matches(ns_sel, Some(l)),
        NsLabels::Missing => {
            return Err(ApiError::new(
                404,
                "NotFound",
                format!("namespaces {:?} not found", a.namespace),
            ))
        }
    };
    let obj_sel = hook.spec.get("objectSelector");
    let obj_ok = selector_matches(obj_sel, labels_of(a.object.as_ref()))
        .and_then(|n| Ok(n || selector_matches(obj_sel, labels_of(a.old_object.as_ref()))?));
    let bad = |e: String| {
        ApiError::new(
            500,
            "InternalError",
            format!("Internal error occurred: {e}"),
        )
    };
    if hook
        .spec
        .get("matchConditions")
        .and_then(Value::as_array)
        .is_some_and(|m| !m.is_empty())
    {
        return Err(ApiError::new(
            500,
            "InternalError",
            format!(
                "fake apiserver: matchConditions of webhook {:?} are not supported",
                hook.name()
            ),
        ));
    }
    Ok(ns_ok.map_err(bad)? && obj_ok.map_err(bad)?)
}

/// The `request` of an AdmissionReview v1 (`CreateV1AdmissionReview`).
pub(super) fn review(
    uid: &str,
    a: &Attrs,
    user: &Identity,
    dry_run: bool,
    options: Value,
) -> Value {
    let mut user_info = Map::new();
    if !user.username.is_empty() {
        user_info.insert("username".into(), json!(user.username));
    }
    if !user.uid.is_empty() {
        user_info.insert("uid".into(), json!(user.uid));
    }
    if !user.groups.is_empty() {
        user_info.insert("groups".into(), json!(user.groups));
    }
    if !user.extra.is_empty() {
        user_info.insert("extra".into(), json!(user.extra));
    }
    let gvk = json!({"group": a.group, "version": a.version, "kind": a.kind});
    let gvr = json!({"group": a.group, "version": a.version, "resource": a.resource});
    let mut req = json!({
        "uid": uid,
        "kind": gvk, "resource": gvr,
        "requestKind": gvk, "requestResource": gvr,
        "operation": a.operation,
        "userInfo": user_info,
        "object": a.object, "oldObject": a.old_object,
        "dryRun": dry_run,
        "options": options,
    });
    let m = super::ensure_object(&mut req);
    if !a.subresource.is_empty() {
        m.insert("subResource".into(), json!(a.subresource));
        m.insert("requestSubResource".into(), json!(a.subresource));
    }
    if !a.name.is_empty() {
        m.insert("name".into(), json!(a.name));
    }
    if !a.namespace.is_empty() {
        m.insert("namespace".into(), json!(a.namespace));
    }
    json!({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": req})
}

/// CreateOptions / UpdateOptions / DeleteOptions as the apiserver passes them on.
fn options(op: Op, ctx: &Ctx) -> Value {
    let mut o = Map::new();
    let kind = match op {
        Op::Create => "CreateOptions",
        Op::Update => "UpdateOptions",
        Op::Delete => "DeleteOptions",
    };
    o.insert("kind".into(), json!(kind));
    o.insert("apiVersion".into(), json!("meta.k8s.io/v1"));
    if ctx.dry_run() {
        o.insert("dryRun".into(), json!(["All"]));
    }
    if op == Op::Delete {
        for f in ["propagationPolicy", "gracePeriodSeconds", "preconditions"] {
            if let Some(v) = ctx.body.as_ref().and_then(|b| b.get(f)) {
                o.insert(f.into(), v.clone());
            }
        }
        if let Some(p) = ctx.query.get("propagationPolicy") {
            o.insert("propagationPolicy".into(), json!(p));
        }
    } else {
        for f in ["fieldManager", "fieldValidation"] {
            if let Some(v) = ctx.query.get(f) {
                o.insert(f.into(), json!(v));
            }
        }
    }
    Value::Object(o)
}

/// A fresh random UUID v4 (per call, never the object uid).
fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    rand_fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn rand_fill(buf: &mut [u8]) {
    if rustls::crypto::ring::default_provider()
        .secure_random
        .fill(buf)
        .is_err()
    {
        // Never happens with ring; a counter keeps uids distinct anyway.
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = N
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .to_be_bytes();
        buf[..8].copy_from_slice(&n);
    }
}

/// Where a webhook is posted: the URL as printed in errors, where to connect, the TLS server
/// name and the Host header.
struct Target {
    url: String,
    connect: Option<SocketAddr>,
    server_name: String,
    host: String,
    path_and_query: String,
}

fn target(hook: &Hook, st: &State, timeout_s: u64) -> Result<Target, String> {
    let cc = hook
        .spec
        .get("clientConfig")
        .cloned()
        .unwrap_or(Value::Null);
    if let Some(svc) = cc.get("service") {
        let name = svc.get("name").and_then(Value::as_str).unwrap_or("");
        let ns = svc.get("namespace").and_then(Value::as_str).unwrap_or("");
        let port = svc.get("port").and_then(Value::as_u64).unwrap_or(443) as u16;
        let raw_path = svc.get("path").and_then(Value::as_str).unwrap_or("");
        // path.Join("/", p): "" -> "/", trailing "/" dropped, duplicate slashes collapsed.
        let joined: Vec<&str> = raw_path.split('/').filter(|s| !s.is_empty()).collect();
        let path = format!("/{}", joined.join("/"));
        let host = format!("{name}.{ns}.svc");
        let path_and_query = format!("{path}?timeout={timeout_s}s");
        return Ok(Target {
            url: format!("https://{host}:{port}{path_and_query}"),
            connect: st
                .endpoints
                .get(&(ns.to_string(), name.to_string(), port))
                .copied(),
            server_name: host.clone(),
            host: format!("{host}:{port}"),
            path_and_query,
        });
    }
    let url = cc.get("url").and_then(Value::as_str).unwrap_or("");
    let rest = url.strip_prefix("https://").ok_or_else(|| {
        format!(
            "webhook {:?}: clientConfig.url must be https: {url:?}",
            hook.name()
        )
    })?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = split_host_port(authority);
    let ip = match host.as_str() {
        "localhost" => Some(std::net::IpAddr::from([127, 0, 0, 1])),
        h => h
            .parse::<std::net::IpAddr>()
            .ok()
            .filter(|ip| ip.is_loopback()),
    };
    let path = if path.is_empty() { "/" } else { path };
    let path_and_query = format!("{path}?timeout={timeout_s}s");
    Ok(Target {
        url: format!("https://{authority}{path_and_query}"),
        connect: ip.map(|ip| SocketAddr::new(ip, port)),
        server_name: host,
        host: authority.to_string(),
        path_and_query,
    })
}

/// `host[:port]` or `[v6][:port]` of a URL authority; the port defaults to 443.
fn split_host_port(authority: &str) -> (String, u16) {
    let port = |p: &str| p.parse::<u16>().unwrap_or(443);
    if let Some(rest) = authority.strip_prefix('[') {
        let (h, tail) = rest.split_once(']').unwrap_or((rest, ""));
        return (h.to_string(), tail.strip_prefix(':').map_or(443, port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), port(p)),
        None => (authority.to_string(), 443),
    }
}

/// POSTs a review; `Err` is the `failed to call webhook: ...` reason.
async fn post(hook: &Hook, t: &Target, body: Vec<u8>, timeout: Duration) -> Result<Bytes, String> {
    let fail = |e: String| format!("failed to call webhook: Post \"{}\": {e}", t.url);
    let Some(addr) = t.connect else {
        return Err(fail(format!(
            "dial tcp: lookup {}: no such host",
            t.server_name
        )));
    };
    let ca_b64 = hook
        .spec
        .pointer("/clientConfig/caBundle")
        .and_then(Value::as_str)
        .unwrap_or("");
    let ca = base64::engine::general_purpose::STANDARD
        .decode(ca_b64)
        .unwrap_or_default();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(&ca).flatten() {
        let _ = roots.add(c);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // HTTP/1.1 only (kubernetes/kubernetes#75791).
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let server_name = rustls_pki_types::ServerName::try_from(t.server_name.clone())
        .map_err(|e| fail(e.to_string()))?;
    let call = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::ConnectionRefused {
                format!("dial tcp {addr}: connect: connection refused")
            } else {
                format!("dial tcp {addr}: {e}")
            }
        })?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("tls: failed to verify certificate: x509: {e}"))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .method("POST")
            .uri(&t.path_and_query)
            .header("host", &t.host)
            .header("content-type", "application/json")
            .header("accept", "application/json, */*")
            .header("user-agent", "kube-apiserver-admission")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
        let code = resp.status().as_u16();
        // A budget on what a webhook may answer.
        let limited = http_body_util::Limited::new(resp.into_body(), 8 << 20);
        let bytes = limited
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if (200..=206).contains(&code) {
            return Ok(Ok(bytes));
        }
        let status: Option<Value> = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .filter(|v| v.get("kind") == Some(&json!("Status")));
        // Not a transport error: client-go's message has no `Post "<url>": ` prefix.
        Ok(Err(
            match (
                status.and_then(|s| s.get("message").and_then(Value::as_str).map(str::to_string)),
                code,
            ) {
                (Some(m), _) => m,
                (None, 404) => "the server could not find the requested resource".to_string(),
                (None, _) => format!(
                    "an error on the server ({:?}) has prevented the request from succeeding",
                    String::from_utf8_lossy(&bytes)
                ),
            },
        ))
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(Ok(bytes))) => Ok(bytes),
        Ok(Ok(Err(server_said))) => Err(format!("failed to call webhook: {server_said}")),
        Ok(Err(transport)) => Err(fail(transport)),
        Err(_) => Err(fail("context deadline exceeded".into())),
    }
}

/// What a webhook answered, once checked (`VerifyAdmissionResponse`).
struct Answer {
    allowed: bool,
    status: Option<Value>,
    patch: Option<Vec<u8>>,
    warnings: Vec<String>,
}

fn verify(raw: &[u8], uid: &str, mutating: bool) -> Result<Answer, String> {
    let invalid = |m: String| format!("received invalid webhook response: {m}");
    let v: Value = serde_json::from_slice(raw)
        .map_err(|e| format!("received invalid webhook response: {e}"))?;
    let api_version = v.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
    if api_version != "admission.k8s.io/v1" || kind != "AdmissionReview" {
        return Err(invalid(format!(
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {api_version}, Kind={kind}"
        )));
    }
    let Some(resp) = v.get("response").filter(|r| r.is_object()) else {
        return Err(invalid("webhook response was absent".into()));
    };
    let got = resp.get("uid").and_then(Value::as_str).unwrap_or("");
    if got != uid {
        return Err(invalid(format!(
            "expected response.uid={uid:?}, got {got:?}"
        )));
    }
    let patch = resp.get("patch").and_then(Value::as_str);
    let patch_type = resp.get("patchType").and_then(Value::as_str);
    let patch = match (mutating, patch, patch_type) {
        (false, Some(_), _) => {
            return Err(invalid(
                "validating webhook may not return response.patch".into(),
            ))
        }
        (false, _, Some(_)) => {
            return Err(invalid(
                "validating webhook may not return response.patchType".into(),
            ))
        }
        (true, Some(_), None) => {
            return Err(invalid(
                "webhook returned response.patch but not response.patchType".into(),
            ))
        }
        (true, None, Some(_)) => {
            return Err(invalid(
                "webhook returned response.patchType but not response.patch".into(),
            ))
        }
        (true, Some(p), Some("JSONPatch")) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(p)
                .map_err(|e| invalid(format!("illegal base64 data in response.patch: {e}")))?,
        ),
        (true, Some(_), Some(other)) => return Err(format!("unsupported patch type {other:?}")),
        _ => None,
    };
    Ok(Answer {
        allowed: resp
            .get("allowed")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        status: resp.get("status").cloned(),
        patch,
        warnings: str_list(resp.get("warnings"))
            .into_iter()
            .map(str::to_string)
            .collect(),
    })
}

/// `ToStatusErr`: a denial as the API error the client gets.
fn denial(name: &str, status: Option<&Value>) -> ApiError {
    let s = status.cloned().unwrap_or(Value::Null);
    let code = s.get("code").and_then(Value::as_u64).unwrap_or(0);
    let code = if code < 400 { 400 } else { code as u16 };
    let msg = s.get("message").and_then(Value::as_str).unwrap_or("");
    let reason = s.get("reason").and_then(Value::as_str).unwrap_or("");
    let message = if !msg.is_empty() {
        format!("admission webhook {name:?} denied the request: {msg}")
    } else if !reason.is_empty() {
        format!("admission webhook {name:?} denied the request: {reason}")
    } else {
        format!("admission webhook {name:?} denied the request without explanation")
    };
    let mut e = ApiError::new(code, "", message);
    e.reason_text = Some(reason.to_string());
    e.details = s.get("details").cloned();
    e
}

fn calling_error(name: &str, reason: &str) -> ApiError {
    ApiError::new(
        500,
        "InternalError",
        format!("Internal error occurred: failed calling webhook {name:?}: {reason}"),
    )
}

/// Upstream's warning budget (pkg/endpoints/filters/warning.go): deduplicated, control
/// characters dropped, 4096 runes in all, then each cut to 256 runes.
fn add_warning(warnings: &mut Vec<String>, w: &str) {
    if w.chars().any(char::is_control) || warnings.iter().any(|x| x == w) {
        return;
    }
    let total: usize = warnings.iter().map(|x| x.chars().count()).sum();
    if total + w.chars().count() > 4096 {
        for x in warnings.iter_mut() {
            *x = x.chars().take(256).collect();
        }
        let total: usize = warnings.iter().map(|x| x.chars().count()).sum();
        let cut: String = w.chars().take(256).collect();
        if total + cut.chars().count() <= 4096 {
            warnings.push(cut);
        }
        return;
    }
    warnings.push(w.to_string());
}

/// The header value for a warning: `299 - "<text>"` with `"` and `\` escaped.
pub(super) fn warning_header(w: &str) -> String {
    let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
    format!("299 - \"{escaped}\"")
}

/// Groups/resources never sent to webhooks (configurations themselves, review objects).
fn exempt(group: &str, resource: &str) -> bool {
    (group == "admissionregistration.k8s.io")
        || (group == "authorization.k8s.io")
        || (group == "authentication.k8s.io")
        || resource == "tokenreviews"
}

/// Runs one write through admission. `None` when this request is not a write admission
/// sees (the caller routes it normally). A PATCH without a resourceVersion precondition that
/// lost a race between admission and storage is run again (admission included), as the
/// apiserver's guaranteed update retries it; anything else gets the 409.
pub(super) async fn admit(shared: &Arc<Shared>, ctx: &Ctx) -> Option<(Outcome, Vec<String>)> {
    let precondition = ctx
        .body
        .as_ref()
        .and_then(|b| b.pointer("/metadata/resourceVersion"))
        .is_some_and(|rv| rv.as_str().is_some_and(|s| !s.is_empty()));
    let retryable = ctx.method == "PATCH" && !precondition;
    for _ in 0..4 {
        let result = admit_once(shared, ctx).await;
        let lost_race = matches!(&result, Some((Outcome::Json { code: 409, body, .. }, _))
            if body["reason"] == "Conflict"
                && body["message"].as_str().is_some_and(|m| m.starts_with("Operation cannot be fulfilled")));
        if !(retryable && lost_race) {
            return result;
        }
    }
    admit_once(shared, ctx).await
}

async fn admit_once(shared: &Arc<Shared>, ctx: &Ctx) -> Option<(Outcome, Vec<String>)> {
    let mut plan_ctx = ctx.clone();
    plan_ctx.plan = true;
    let (outcome, planned, mutating, validating) = {
        let mut st = shared.lock();
        st.plan = None;
        let outcome = super::route_as(&mut st, &plan_ctx);
        let planned = st.plan.take();
        (
            outcome,
            planned,
            hooks(&st, "mutatingwebhookconfigurations"),
            hooks(&st, "validatingwebhookconfigurations"),
        )
    };
    let Some(planned) = planned else {
        // Not a write (or it failed before admission: 404, 400, ...).
        return Some((outcome, Vec::new()));
    };
    let def = planned.def.clone();
    if exempt(&def.group, &def.plural) || (mutating.is_empty() && validating.is_empty()) {
        let mut st = shared.lock();
        return Some((finish(&mut st, ctx, planned), Vec::new()));
    }
    let dry_run = ctx.dry_run();
    let op = planned.op;
    let mut attrs = Attrs {
        group: def.group.clone(),
        version: def.version.clone(),
        kind: def.kind.clone(),
        resource: def.plural.clone(),
        subresource: if planned.status_only {
            "status".into()
        } else {
            String::new()
        },
        operation: match op {
            Op::Create => "CREATE",
            Op::Update => "UPDATE",
            Op::Delete => "DELETE",
        },
        namespace: planned.key.namespace.clone(),
        name: planned.key.name.clone(),
        namespaced: def.namespaced,
        object: None,
        old_object: planned.old.as_ref().map(|o| with_type(o.obj.clone(), &def)),
    };
    if def.group.is_empty() && def.plural == "namespaces" {
        attrs.namespace = planned.key.name.clone();
    }
    let mut obj = match op {
        Op::Delete => None,
        Op::Create => {
            // Mutating CREATE sees the decoded, defaulted object without the fields the
            // store sets after admission.
            let mut o = planned.stored.obj.clone();
            let m = super::meta_mut(&mut o);
            for f in ["uid", "creationTimestamp", "generation", "resourceVersion"] {
                m.remove(f);
            }
            // A generateName'd object gets its name after mutating admission.
            let named = ctx
                .body
                .as_ref()
                .and_then(|b| b.pointer("/metadata/name"))
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            if !named && ctx.method == "POST" {
                m.remove("name");
                attrs.name = String::new();
            }
            Some(o)
        }
        Op::Update => Some(planned.stored.obj.clone()),
    };
    let user = ctx.user.clone();
    let mut warnings = Vec::new();
    let options = options(op, ctx);

    // --- mutating, one at a time; IfNeeded webhooks once more if the object changed ------
    let mut after_own_run: BTreeMap<usize, Option<Value>> = BTreeMap::new();
    for round in 0..2 {
        let changed_since_round0 =
            round == 1 && after_own_run.values().any(|v| v.as_ref() != obj.as_ref());
        if round == 1 && !changed_since_round0 {
            break;
        }
        for (i, hook) in mutating.iter().enumerate() {
            if round == 1
                && (hook.str_field("reinvocationPolicy", "Never") != "IfNeeded"
                    || !after_own_run.contains_key(&i)
                    || after_own_run
                        .get(&i)
                        .is_some_and(|v| v.as_ref() == obj.as_ref()))
            {
                continue;
            }
            attrs.object = obj.clone();
            let ns = ns_labels(shared, &attrs);
            match should_call(hook, &attrs, &ns) {
                Err(e) => return Some((e.into(), warnings)),
                Ok(false) => continue,
                Ok(true) => {}
            }
            if let Some(e) = dry_run_refusal(hook, dry_run) {
                return Some((e.into(), warnings));
            }
            match call(shared, hook, true, &attrs, &user, dry_run, options.clone()).await {
                Err(reason) => {
                    if hook.fail_closed() {
                        return Some((calling_error(hook.name(), &reason).into(), warnings));
                    }
                }
                Ok(answer) => {
                    answer
                        .warnings
                        .iter()
                        .for_each(|w| add_warning(&mut warnings, w));
                    if !answer.allowed {
                        return Some((
                            denial(hook.name(), answer.status.as_ref()).into(),
                            warnings,
                        ));
                    }
                    if let Some(p) = answer.patch {
                        if let Err(e) = apply_patch(&def, &mut obj, &p, hook.name()) {
                            return Some((e.into(), warnings));
                        }
                    }
                }
            }
            if round == 0 {
                after_own_run.insert(i, obj.clone());
            }
        }
    }

    // --- validation (422) on the mutated object ------------------------------------------
    let planned = {
        let mut st = shared.lock();
        st.actor = Some(ctx.user.clone());
        let finalised = finalise(&mut st, &planned, obj.clone());
        st.actor = None;
        match finalised {
            Ok(p) => p,
            Err(e) => return Some((e.into(), warnings)),
        }
    };
    attrs.object = match op {
        Op::Delete => None,
        _ => Some(with_type(planned.stored.obj.clone(), &def)),
    };
    attrs.name = planned.key.name.clone();

    // --- validating: all called, first error in list order wins ----------------------------
    let ns = ns_labels(shared, &attrs);
    let mut calls = Vec::new();
    for hook in &validating {
        match should_call(hook, &attrs, &ns) {
            Err(e) => return Some((e.into(), warnings)),
            Ok(false) => continue,
            Ok(true) => {}
        }
        if let Some(e) = dry_run_refusal(hook, dry_run) {
            return Some((e.into(), warnings));
        }
        let (attrs, user, options) = (&attrs, &user, options.clone());
        calls.push(async move {
            (
                hook,
                call(shared, hook, false, attrs, user, dry_run, options).await,
            )
        });
    }
    let results = futures::future::join_all(calls).await;
    let mut first_err: Option<ApiError> = None;
    for (hook, result) in results {
        let err = match result {
            Err(reason) if hook.fail_closed() => Some(calling_error(hook.name(), &reason)),
            Err(_) => None,
            Ok(answer) => {
                answer
                    .warnings
                    .iter()
                    .for_each(|w| add_warning(&mut warnings, w));
                (!answer.allowed).then(|| denial(hook.name(), answer.status.as_ref()))
            }
        };
        if first_err.is_none() {
            first_err = err;
        }
    }
    if let Some(e) = first_err {
        return Some((e.into(), warnings));
    }
    let mut st = shared.lock();
    Some((finish(&mut st, ctx, planned), warnings))
}

fn dry_run_refusal(hook: &Hook, dry_run: bool) -> Option<ApiError> {
    let side_effects = hook.str_field("sideEffects", "Unknown");
    (dry_run && !matches!(side_effects, "None" | "NoneOnDryRun")).then(|| {
        ApiError::new(
            400,
            "BadRequest",
            format!(
                "admission webhook {:?} does not support dry run",
                hook.name()
            ),
        )
    })
}

fn ns_labels(shared: &Arc<Shared>, a: &Attrs) -> NsLabels {
    if a.group.is_empty() && a.resource == "namespaces" {
        let own = labels_of(a.object.as_ref()).or(labels_of(a.old_object.as_ref()));
        return NsLabels::Labels(own.cloned().unwrap_or_default());
    }
    if !a.namespaced {
        return NsLabels::NotApplicable;
    }
    let st = shared.lock();
    let key = super::ObjKey::new("", "namespaces", "", &a.namespace);
    match st.objects.get(&key) {
        None => NsLabels::Missing,
        Some(s) => NsLabels::Labels(labels_of(Some(&s.obj)).cloned().unwrap_or_default()),
    }
}

/// Applies a webhook's JSON patch; any failure is a 500 whatever the failurePolicy.
fn apply_patch(
    def: &super::ResourceDef,
    obj: &mut Option<Value>,
    patch: &[u8],
    name: &str,
) -> Result<(), ApiError> {
    let internal = |m: String| {
        ApiError::new(
            500,
            "InternalError",
            format!("Internal error occurred: {m}"),
        )
    };
    let p: json_patch::Patch = serde_json::from_slice(patch).map_err(|e| {
        internal(format!(
            "received undecodable patch in webhook response: {e}"
        ))
    })?;
    if p.0.is_empty() {
        return Ok(());
    }
    let Some(o) = obj.as_mut() else {
        return Err(internal(format!(
            "admission webhook {name:?} attempted to modify the object, which is not supported for this operation"
        )));
    };
    json_patch::patch(o, &p).map_err(|e| internal(e.to_string()))?;
    // The patched object is decoded (and defaulted) again.
    super::decode(def, o).map_err(|e| internal(e.message))
}

/// One webhook call, recorded in the fake's admission log.
async fn call(
    shared: &Arc<Shared>,
    hook: &Hook,
    mutating: bool,
    a: &Attrs,
    user: &Identity,
    dry_run: bool,
    options: Value,
) -> Result<Answer, String> {
    let timeout_s = hook
        .spec
        .get("timeoutSeconds")
        .and_then(Value::as_u64)
        .unwrap_or(10)
        .clamp(1, 30);
    let uid = uuid_v4();
    let review = review(&uid, a, user, dry_run, options);
    let t = {
        let st = shared.lock();
        target(hook, &st, timeout_s)
    };
    let mut record = AdmissionCall {
        webhook: hook.name().to_string(),
        mutating,
        url: t.as_ref().map(|t| t.url.clone()).unwrap_or_default(),
        review: review.clone(),
        response: None,
        error: None,
    };
    let result = match t {
        Err(e) => Err(e),
        Ok(t) => {
            let body = serde_json::to_vec(&review).unwrap_or_default();
            match post(hook, &t, body, Duration::from_secs(timeout_s)).await {
                Err(e) => Err(e),
                Ok(bytes) => {
                    record.response = serde_json::from_slice(&bytes).ok();
                    verify(&bytes, &uid, mutating)
                }
            }
        }
    };
    record.error = result.as_ref().err().cloned();
    shared.lock().admission_log.push(record);
    result
}

/// Validation of the mutated object (`Mode::Finalise`).
fn finalise(st: &mut State, planned: &Planned, obj: Option<Value>) -> Result<Planned, ApiError> {
    let def = &planned.def;
    st.plan = None;
    match (planned.op, obj) {
        (Op::Delete, _) | (_, None) => return Ok(planned.clone()),
        (Op::Create, Some(o)) => {
            let ns = def.namespaced.then_some(planned.key.namespace.as_str());
            st.create(def, ns, o, Mode::Finalise, planned.stored.applied.clone())?;
        }
        (Op::Update, Some(o)) => {
            let upd = Update {
                def,
                key: &planned.key,
                status_only: planned.status_only,
                mode: Mode::Finalise,
                applied: Some(planned.stored.applied.clone()),
                applied_status: Some(planned.stored.applied_status.clone()),
            };
            st.update(upd, o)?;
        }
    }
    st.plan
        .take()
        .ok_or_else(|| ApiError::new(500, "InternalError", "fake apiserver: no plan recorded"))
}

/// Stores the plan (or, for `?dryRun=All`, only answers with it).
fn finish(st: &mut State, ctx: &Ctx, planned: Planned) -> Outcome {
    let op = planned.op;
    let def = planned.def.clone();
    let result = if ctx.dry_run() {
        Ok(with_type(planned.stored.obj.clone(), &def))
    } else {
        st.commit(planned)
    };
    match (result, op) {
        (Ok(o), Op::Create) => Outcome::created(o),
        (Ok(o), _) => Outcome::ok(o),
        (Err(e), _) => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(op: &'static str, resource: &str, sub: &str, namespaced: bool) -> Attrs {
        Attrs {
            group: "tether.dev".into(),
            version: "v1alpha1".into(),
            kind: "AttachedResource".into(),
            resource: resource.into(),
            subresource: sub.into(),
            operation: op,
            namespace: "ns".into(),
            name: "n".into(),
            namespaced,
            object: Some(json!({"metadata": {"labels": {"a": "1"}}})),
            old_object: Some(json!({"metadata": {"labels": {"b": "2"}}})),
        }
    }

    #[test]
    fn rules_match_operations_groups_resources_subresources_and_scope() {
        let r = |resources: Value, scope: &str| json!({"apiGroups": ["tether.dev"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"], "resources": resources, "scope": scope});
        let cases: &[(Value, &str, &'static str, &str, &str, bool, bool)] = &[
            (
                json!(["attachedresources"]),
                "*",
                "CREATE",
                "attachedresources",
                "",
                true,
                true,
            ),
            (
                json!(["attachedresources"]),
                "*",
                "DELETE",
                "attachedresources",
                "",
                true,
                false,
            ),
            (
                json!(["attachedresources"]),
                "*",
                "UPDATE",
                "attachedresources",
                "status",
                true,
                false,
            ),
            (
                json!(["attachedresources/*"]),
                "*",
                "UPDATE",
                "attachedresources",
                "status",
                true,
                true,
            ),
            (
                json!(["*/status"]),
                "*",
                "UPDATE",
                "attachedresources",
                "status",
                true,
                true,
            ),
            (
                json!(["*/status"]),
                "*",
                "UPDATE",
                "attachedresources",
                "",
                true,
                false,
            ),
            (json!(["*"]), "*", "UPDATE", "appdomains", "", true, true),
            (
                json!(["*"]),
                "*",
                "UPDATE",
                "appdomains",
                "status",
                true,
                false,
            ),
            (
                json!(["*/*"]),
                "*",
                "UPDATE",
                "appdomains",
                "status",
                true,
                true,
            ),
            (
                json!(["attachedresources"]),
                "Namespaced",
                "CREATE",
                "attachedresources",
                "",
                false,
                false,
            ),
            (
                json!(["attachedresources"]),
                "Cluster",
                "CREATE",
                "attachedresources",
                "",
                false,
                true,
            ),
        ];
        for (resources, scope, op, res, sub, namespaced, want) in cases {
            assert_eq!(
                rule_matches(
                    &r(resources.clone(), scope),
                    &attrs(op, res, sub, *namespaced)
                ),
                *want,
                "{resources} {scope} {op} {res}/{sub}"
            );
        }
        let other_group = json!({"apiGroups": ["apps"], "apiVersions": ["*"], "operations": ["*"], "resources": ["*"]});
        assert!(!rule_matches(
            &other_group,
            &attrs("CREATE", "attachedresources", "", true)
        ));
    }

    #[test]
    fn selectors_and_namespace_matching() {
        let l = |v: Value| v.as_object().cloned().unwrap();
        let sel = json!({"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}]});
        assert!(selector_matches(
            Some(&sel),
            Some(&l(json!({"kubernetes.io/metadata.name": "default"})))
        )
        .unwrap());
        assert!(!selector_matches(
            Some(&sel),
            Some(&l(json!({"kubernetes.io/metadata.name": "kube-system"})))
        )
        .unwrap());
        assert!(
            selector_matches(Some(&sel), None).unwrap(),
            "NotIn matches a missing key"
        );
        assert!(selector_matches(None, None).unwrap());
        assert!(selector_matches(Some(&json!({})), None).unwrap());
        let ml = json!({"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "t", "operator": "Exists"}]});
        assert!(selector_matches(Some(&ml), Some(&l(json!({"a": "1", "t": ""})))).unwrap());
        assert!(!selector_matches(Some(&ml), Some(&l(json!({"a": "1"})))).unwrap());
        assert!(selector_matches(
            Some(&json!({"matchExpressions": [{"key": "x", "operator": "Bad"}]})),
            None
        )
        .is_err());

        let hook = |spec: Value| Hook {
            config: "c".into(),
            spec,
        };
        let rules = json!([{"apiGroups": ["*"], "apiVersions": ["*"], "operations": ["*"], "resources": ["*"]}]);
        let a = attrs("CREATE", "attachedresources", "", true);
        // objectSelector: the new OR the old object's labels.
        for (sel, want) in [("a", true), ("b", true), ("c", false)] {
            let h = hook(
                json!({"name": "h.x.y", "rules": rules, "objectSelector": {"matchExpressions": [{"key": sel, "operator": "Exists"}]}}),
            );
            assert_eq!(
                should_call(&h, &a, &NsLabels::NotApplicable).unwrap(),
                want,
                "{sel}"
            );
        }
        let h = hook(
            json!({"name": "h.x.y", "rules": rules, "namespaceSelector": {"matchLabels": {"team": "x"}}}),
        );
        assert!(!should_call(&h, &a, &NsLabels::Labels(Map::new())).unwrap());
        assert!(should_call(&h, &a, &NsLabels::Labels(l(json!({"team": "x"})))).unwrap());
        assert_eq!(
            should_call(&h, &a, &NsLabels::Missing).unwrap_err().code,
            404
        );
        let no_rules = hook(
            json!({"name": "h.x.y", "rules": [], "namespaceSelector": {"matchLabels": {"team": "x"}}}),
        );
        assert!(
            !should_call(&no_rules, &a, &NsLabels::Missing).unwrap(),
            "a missing namespace only matters to matching webhooks"
        );
    }

    #[test]
    fn responses_are_verified_and_denials_shaped() {
        let ok = |resp: Value| {
            serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": resp})).unwrap()
        };
        assert!(
            verify(&ok(json!({"uid": "u", "allowed": true})), "u", true)
                .unwrap()
                .allowed
        );
        assert_eq!(
            verify(&ok(json!({"uid": "x", "allowed": true})), "u", true)
                .err()
                .unwrap(),
            "received invalid webhook response: expected response.uid=\"u\", got \"x\""
        );
        assert_eq!(verify(br#"{"response":{"uid":"u","allowed":true}}"#, "u", true).err().unwrap(), "received invalid webhook response: expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got , Kind=");
        assert_eq!(
            verify(
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
                "u",
                true
            )
            .err()
            .unwrap(),
            "received invalid webhook response: webhook response was absent"
        );
        assert!(verify(
            &ok(json!({"uid": "u", "allowed": true, "patch": "W10="})),
            "u",
            true
        )
        .err()
        .unwrap()
        .contains("not response.patchType"));
        assert!(verify(
            &ok(json!({"uid": "u", "allowed": true, "patch": "W10=", "patchType": "JSONPatch"})),
            "u",
            false
        )
        .err()
        .unwrap()
        .contains("validating webhook may not return response.patch"));
        assert_eq!(
            verify(
                &ok(json!({"uid": "u", "allowed": true, "patch": "W10=", "patchType": "Merge"})),
                "u",
                true
            )
            .err()
            .unwrap(),
            "unsupported patch type \"Merge\""
        );
        assert_eq!(
            verify(
                &ok(
                    json!({"uid": "u", "allowed": true, "patch": "W10=", "patchType": "JSONPatch"})
                ),
                "u",
                true
            )
            .unwrap()
            .patch
            .unwrap(),
            b"[]"
        );

        let d = denial(
            "v.x.y",
            Some(&json!({"code": 403, "reason": "Forbidden", "message": "no"})),
        );
        assert_eq!(
            (d.code, d.message.as_str(), d.reason_text.as_deref()),
            (
                403,
                "admission webhook \"v.x.y\" denied the request: no",
                Some("Forbidden")
            )
        );
        let d = denial("v.x.y", Some(&json!({"code": 200, "message": "m"})));
        assert_eq!((d.code, d.reason_text.as_deref()), (400, Some("")));
        assert_eq!(
            denial("v.x.y", None).message,
            "admission webhook \"v.x.y\" denied the request without explanation"
        );

        let mut w = Vec::new();
        add_warning(&mut w, "a");
        add_warning(&mut w, "a");
        add_warning(&mut w, "bad\u{7}");
        assert_eq!(w, ["a"]);
        assert_eq!(warning_header("say \"hi\""), "299 - \"say \\\"hi\\\"\"");
        assert_eq!(
            split_host_port("127.0.0.1:8443"),
            ("127.0.0.1".into(), 8443)
        );
        assert_eq!(split_host_port("localhost"), ("localhost".into(), 443));
        assert_eq!(split_host_port("[::1]:9443"), ("::1".into(), 9443));
        assert_eq!(split_host_port("[::1]"), ("::1".into(), 443));
        let id = uuid_v4();
        assert_eq!((id.len(), &id[14..15]), (36, "4"));
        assert_ne!(uuid_v4(), id);
    }
}
