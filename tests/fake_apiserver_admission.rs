//! The fake API server runs the admission chain as kube-apiserver does: it POSTs
//! AdmissionReviews over HTTPS/HTTP-1.1 to webhooks registered by stored
//! Mutating/ValidatingWebhookConfigurations, applies JSON patches, enforces denials,
//! failurePolicy and response checks, and turns warnings into `Warning` headers. The webhook
//! here is a scripted HTTPS server in this test, with its own CA and a
//! `hook.test-ns.svc` certificate.

#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use fake_apiserver::{FakeApiServer, Identity};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

const ALICE: &str = "alice-token-0123456789";

/// What the scripted webhook saw of one call.
#[derive(Clone, Debug)]
struct Seen {
    path_and_query: String,
    version: hyper::Version,
    alpn: Option<Vec<u8>>,
    host: String,
    content_type: String,
    user_agent: String,
    review: Value,
}

type Responder = Arc<dyn Fn(&str, &Value) -> Value + Send + Sync>;

struct Hook {
    addr: SocketAddr,
    ca_b64: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Hook {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// An HTTPS webhook server for `hook.test-ns.svc` (and `localhost`) offering h2 and http/1.1; `respond` gets
/// the path and the review and returns the whole reply body.
async fn start_hook(respond: Responder) -> Hook {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![
        "hook.test-ns.svc".to_string(),
        "localhost".to_string(),
    ])
    .unwrap()
    .signed_by(&key, &issuer)
    .unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, seen, respond) = (acceptor.clone(), seen2.clone(), respond.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (seen, respond, alpn) = (seen.clone(), respond.clone(), alpn.clone());
                        async move {
                            let h = |n: &str| {
                                req.headers()
                                    .get(n)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_string()
                            };
                            let (host, content_type, user_agent) =
                                (h("host"), h("content-type"), h("user-agent"));
                            let version = req.version();
                            let path_and_query = req
                                .uri()
                                .path_and_query()
                                .map(|p| p.to_string())
                                .unwrap_or_default();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let review: Value = serde_json::from_slice(&body).unwrap();
                            let reply = respond(&path_and_query, &review);
                            seen.lock().unwrap().push(Seen {
                                path_and_query,
                                version,
                                alpn,
                                host,
                                content_type,
                                user_agent,
                                review,
                            });
                            let mut resp = hyper::Response::new(Full::new(Bytes::from(
                                serde_json::to_vec(&reply).unwrap(),
                            )));
                            if let Some(code) = reply.get("__http_status").and_then(Value::as_u64) {
                                *resp.status_mut() =
                                    hyper::StatusCode::from_u16(code as u16).unwrap();
                            }
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    Hook {
        addr,
        ca_b64: base64::engine::general_purpose::STANDARD.encode(ca.pem()),
        seen,
    }
}

fn reply(review: &Value, response: Value) -> Value {
    let mut r = response;
    r["uid"] = review["request"]["uid"].clone();
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": r})
}

fn patch_b64(ops: Value) -> String {
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&ops).unwrap())
}

/// A webhook entry for configmaps, pointing at the scripted hook.
fn webhook(name: &str, path: &str, hook: &Hook, extra: Value) -> Value {
    let mut w = json!({
        "name": name, "admissionReviewVersions": ["v1"], "sideEffects": "None", "timeoutSeconds": 5,
        "clientConfig": {"service": {"name": "hook", "namespace": "test-ns", "path": path, "port": 443}, "caBundle": hook.ca_b64},
        "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}]},
        "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"], "operations": ["CREATE", "UPDATE", "DELETE"], "scope": "Namespaced"}],
    });
    if let (Value::Object(w), Value::Object(e)) = (&mut w, extra) {
        w.extend(e);
    }
    w
}

async fn setup(hook: &Hook, mutating: Vec<Value>, validating: Vec<Value>) -> FakeApiServer {
    let fake = FakeApiServer::start().await;
    fake.set_service_endpoint("test-ns", "hook", 443, hook.addr);
    fake.add_token(ALICE, Identity::user("alice", &["devs"]));
    fake.load_yaml(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: all}\nrules: [{apiGroups: ['*'], resources: ['*'], verbs: ['*']}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: alice-all}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: all}\nsubjects: [{kind: User, name: alice}]\n",
    );
    for ns in ["ns", "kube-system"] {
        fake.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
    }
    if !mutating.is_empty() {
        fake.insert(json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration", "metadata": {"name": "m"}, "webhooks": mutating}));
    }
    if !validating.is_empty() {
        fake.insert(json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration", "metadata": {"name": "v"}, "webhooks": validating}));
    }
    fake
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"app": "x"}}, "data": {"k": "v"}}),
    )
    .unwrap()
}

fn status_of(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn create_update_delete_reviews_are_shaped_like_the_apiservers_and_patches_apply() {
    let responder: Responder = Arc::new(|path, review| {
        if path.starts_with("/mutate") && review["request"]["operation"] == "CREATE" {
            reply(
                review,
                json!({"allowed": true, "patchType": "JSONPatch",
                "patch": patch_b64(json!([{"op": "add", "path": "/metadata/labels/mutated", "value": "yes"}]))}),
            )
        } else {
            reply(review, json!({"allowed": true}))
        }
    });
    let hook = start_hook(responder).await;
    let fake = setup(
        &hook,
        vec![webhook("m.test.dev", "mutate", &hook, json!({}))],
        vec![webhook("v.test.dev", "/validate/", &hook, json!({}))],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(fake.client_for(ALICE).await, "ns");
    let created = cms
        .create(
            &PostParams {
                field_manager: Some("kubectl-create".into()),
                ..Default::default()
            },
            &cm("c"),
        )
        .await
        .unwrap();
    assert_eq!(
        created.metadata.labels.as_ref().unwrap()["mutated"],
        "yes",
        "the patch is stored"
    );

    let seen = hook.seen();
    assert_eq!(seen.len(), 2);
    let (m, v) = (&seen[0], &seen[1]);
    assert_eq!(m.path_and_query, "/mutate?timeout=5s");
    assert_eq!(
        v.path_and_query, "/validate?timeout=5s",
        "path.Join drops the trailing slash"
    );
    for s in [m, v] {
        assert_eq!(s.version, hyper::Version::HTTP_11);
        assert_eq!(
            s.alpn.as_deref(),
            Some(&b"http/1.1"[..]),
            "HTTP/1.1 even though the server offers h2"
        );
        assert_eq!(s.host, "hook.test-ns.svc:443");
        assert_eq!(s.content_type, "application/json");
        assert_eq!(s.user_agent, "kube-apiserver-admission");
        assert_eq!(s.review["apiVersion"], "admission.k8s.io/v1");
        let r = &s.review["request"];
        assert_eq!(r["operation"], "CREATE");
        assert_eq!(
            r["kind"],
            json!({"group": "", "version": "v1", "kind": "ConfigMap"})
        );
        assert_eq!(
            r["requestResource"],
            json!({"group": "", "version": "v1", "resource": "configmaps"})
        );
        assert_eq!(
            (r["name"].as_str(), r["namespace"].as_str()),
            (Some("c"), Some("ns"))
        );
        assert_eq!(
            r["userInfo"],
            json!({"username": "alice", "uid": "uid-alice", "groups": ["devs", "system:authenticated"]})
        );
        assert!(
            r.get("oldObject").is_some_and(Value::is_null),
            "oldObject key present as null"
        );
        assert_eq!(r["dryRun"], false);
        assert_eq!(
            r["options"],
            json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl-create"})
        );
        assert_eq!(r["object"]["apiVersion"], "v1");
        assert_eq!(r["object"]["kind"], "ConfigMap");
    }
    let (mr, vr) = (&m.review["request"], &v.review["request"]);
    assert_ne!(mr["uid"], vr["uid"], "a fresh uid per call");
    assert_ne!(
        mr["uid"].as_str(),
        created.metadata.uid.as_deref(),
        "not the object uid"
    );
    assert!(
        mr["object"]["metadata"].get("uid").is_none()
            && mr["object"]["metadata"].get("creationTimestamp").is_none(),
        "mutating CREATE sees no uid/creationTimestamp: {}",
        mr["object"]
    );
    assert_eq!(
        vr["object"]["metadata"]["uid"].as_str(),
        created.metadata.uid.as_deref(),
        "validating sees the final object"
    );
    assert_eq!(vr["object"]["metadata"]["labels"]["mutated"], "yes");

    // UPDATE (a merge patch) carries oldObject and UpdateOptions.
    cms.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await
    .unwrap();
    let before = hook.seen().len();
    cms.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "3"}})),
    )
    .await
    .unwrap();
    let seen = hook.seen();
    let upd = &seen[before..];
    assert_eq!(upd.len(), 2, "mutating and validating");
    let r = &upd[0].review["request"];
    assert_eq!(r["operation"], "UPDATE");
    assert_eq!(r["options"]["kind"], "UpdateOptions");
    assert_eq!(r["oldObject"]["data"]["k"], "2");
    assert_eq!(r["object"]["data"]["k"], "3");

    // DELETE: object null, oldObject the stored object, DeleteOptions; then gone.
    let before = hook.seen().len();
    cms.delete("c", &DeleteParams::background()).await.unwrap();
    let seen = hook.seen();
    let del: Vec<&Seen> = seen[before..].iter().collect();
    assert_eq!(del.len(), 2);
    let r = &del[1].review["request"];
    assert_eq!(r["operation"], "DELETE");
    assert!(r.get("object").is_some_and(Value::is_null));
    assert_eq!(r["oldObject"]["data"]["k"], "3");
    assert_eq!(
        r["options"],
        json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1", "propagationPolicy": "Background"})
    );
    assert!(fake.list_all("configmaps").is_empty());
    assert_eq!(
        fake.admission_calls().len(),
        hook.seen().len(),
        "every call is in the fake's log"
    );
}

#[tokio::test]
async fn denials_keep_code_and_reason_and_nothing_is_stored() {
    let responder: Responder = Arc::new(|_, review| {
        let name = review["request"]["name"].as_str().unwrap_or("");
        match name {
            "forbidden" => reply(
                review,
                json!({"allowed": false, "status": {"code": 403, "reason": "Forbidden", "message": "kind Deployment is not attachable"}}),
            ),
            "plain" => reply(
                review,
                json!({"allowed": false, "status": {"message": "no"}, "warnings": ["careful"]}),
            ),
            "silent" => reply(review, json!({"allowed": false})),
            _ => reply(
                review,
                json!({"allowed": true, "warnings": ["w1", "w1", "say \"x\""]}),
            ),
        }
    });
    let hook = start_hook(responder).await;
    let fake = setup(
        &hook,
        vec![],
        vec![webhook("v.test.dev", "/validate", &hook, json!({}))],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(fake.client_for(ALICE).await, "ns");

    let s = status_of(
        cms.create(&PostParams::default(), &cm("forbidden"))
            .await
            .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        s.message,
        "admission webhook \"v.test.dev\" denied the request: kind Deployment is not attachable"
    );
    let s = status_of(
        cms.create(&PostParams::default(), &cm("plain"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (s.code, s.reason.as_str()),
        (400, ""),
        "code < 400 becomes 400, no reason invented"
    );
    assert_eq!(
        s.message,
        "admission webhook \"v.test.dev\" denied the request: no"
    );
    let s = status_of(
        cms.create(&PostParams::default(), &cm("silent"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        s.message,
        "admission webhook \"v.test.dev\" denied the request without explanation"
    );
    assert!(fake.list_all("configmaps").is_empty());

    // Warnings come back as Warning headers, deduplicated, quotes escaped.
    let client = fake.client_for(ALICE).await;
    let req = hyper::Request::builder()
        .method("POST")
        .uri("/api/v1/namespaces/ns/configmaps")
        .header("content-type", "application/json")
        .body(kube::client::Body::from(
            serde_json::to_vec(&cm("ok")).unwrap(),
        ))
        .unwrap();
    let resp = client.send(req).await.unwrap();
    assert_eq!(resp.status(), 201);
    let warnings: Vec<&str> = resp
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(warnings, ["299 - \"w1\"", "299 - \"say \\\"x\\\"\""]);
}

#[tokio::test]
async fn failure_policy_response_checks_and_selectors() {
    let responder: Responder = Arc::new(|_, review| {
        let name = review["request"]["name"].as_str().unwrap_or("");
        match name {
            "bad-uid" => {
                json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"uid": "nope", "allowed": true}})
            }
            "no-kind" => json!({"response": {"uid": review["request"]["uid"], "allowed": true}}),
            "boom" => json!({"__http_status": 500}),
            "bad-patch" => reply(
                review,
                json!({"allowed": true, "patchType": "JSONPatch", "patch": patch_b64(json!([{"op": "replace", "path": "/nope/x", "value": 1}]))}),
            ),
            _ => reply(review, json!({"allowed": true})),
        }
    });
    let hook = start_hook(responder).await;
    let fake = setup(
        &hook,
        vec![webhook(
            "m.test.dev",
            "/m",
            &hook,
            json!({"failurePolicy": "Ignore"}),
        )],
        vec![webhook(
            "v.test.dev",
            "/v",
            &hook,
            json!({"objectSelector": {"matchLabels": {"app": "x"}}}),
        )],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(fake.client_for(ALICE).await, "ns");
    let s = status_of(
        cms.create(&PostParams::default(), &cm("bad-uid"))
            .await
            .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (500, "InternalError"));
    assert_eq!(s.message, "Internal error occurred: failed calling webhook \"v.test.dev\": received invalid webhook response: expected response.uid=\"".to_string()
        + fake.admission_calls().last().unwrap().review["request"]["uid"].as_str().unwrap() + "\", got \"nope\"");
    let s = status_of(
        cms.create(&PostParams::default(), &cm("no-kind"))
            .await
            .unwrap_err(),
    );
    assert!(s.message.ends_with("received invalid webhook response: expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got , Kind="), "{}", s.message);
    let s = status_of(
        cms.create(&PostParams::default(), &cm("boom"))
            .await
            .unwrap_err(),
    );
    assert!(
        s.message.contains(
            "failed calling webhook \"v.test.dev\": failed to call webhook: an error on the server"
        ),
        "{}",
        s.message
    );
    // A patch that does not apply is a 500 even under failurePolicy Ignore.
    let s = status_of(
        cms.create(&PostParams::default(), &cm("bad-patch"))
            .await
            .unwrap_err(),
    );
    assert_eq!(s.code, 500, "{}", s.message);
    assert!(fake.list_all("configmaps").is_empty());

    // objectSelector: an object without app=x is not sent to the validating webhook.
    let before = hook.seen().len();
    let unlabelled: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "bad-uid"}})).unwrap();
    cms.create(&PostParams::default(), &unlabelled)
        .await
        .unwrap();
    assert_eq!(
        hook.seen().len(),
        before + 1,
        "only the mutating webhook (no selector) was called"
    );

    // namespaceSelector: kube-system is excluded by both webhooks.
    let before = hook.seen().len();
    let sys: Api<ConfigMap> = Api::namespaced(fake.client_for(ALICE).await, "kube-system");
    sys.create(&PostParams::default(), &cm("bad-uid"))
        .await
        .unwrap();
    assert_eq!(hook.seen().len(), before);
    // A namespace that does not exist: 404 for matching webhooks.
    let ghost: Api<ConfigMap> = Api::namespaced(fake.client_for(ALICE).await, "ghost");
    let s = status_of(
        ghost
            .create(&PostParams::default(), &cm("x"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (s.code, s.message.as_str()),
        (404, "namespaces \"ghost\" not found")
    );

    // An unreachable webhook: Fail -> 500 naming the URL; the Ignore one is skipped.
    fake.set_service_endpoint("test-ns", "hook", 443, "127.0.0.1:1".parse().unwrap());
    let s = status_of(
        cms.create(&PostParams::default(), &cm("ok"))
            .await
            .unwrap_err(),
    );
    assert_eq!(s.message, "Internal error occurred: failed calling webhook \"v.test.dev\": failed to call webhook: Post \"https://hook.test-ns.svc:443/v?timeout=5s\": dial tcp 127.0.0.1:1: connect: connection refused");
    let calls = fake.admission_calls();
    let m = &calls[calls.len() - 2];
    assert_eq!(
        (m.webhook.as_str(), m.response.is_none()),
        ("m.test.dev", true),
        "the Ignore webhook failed and was skipped"
    );
}

#[tokio::test]
async fn dry_run_and_side_effects() {
    let responder: Responder = Arc::new(|_, review| reply(review, json!({"allowed": true})));
    let hook = start_hook(responder).await;
    let fake = setup(
        &hook,
        vec![],
        vec![webhook(
            "v.test.dev",
            "/v",
            &hook,
            json!({"sideEffects": "Unknown"}),
        )],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(fake.client_for(ALICE).await, "ns");
    let s = status_of(
        cms.create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &cm("d"),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        (s.code, s.message.as_str()),
        (
            400,
            "admission webhook \"v.test.dev\" does not support dry run"
        )
    );
    assert!(hook.seen().is_empty());

    let fake = setup(
        &hook,
        vec![],
        vec![webhook(
            "v.test.dev",
            "/v",
            &hook,
            json!({"sideEffects": "NoneOnDryRun"}),
        )],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(fake.client_for(ALICE).await, "ns");
    cms.create(
        &PostParams {
            dry_run: true,
            ..Default::default()
        },
        &cm("d"),
    )
    .await
    .unwrap();
    let seen = hook.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].review["request"]["dryRun"], true);
    assert_eq!(
        seen[0].review["request"]["options"]["dryRun"],
        json!(["All"])
    );
    assert!(
        fake.list_all("configmaps").is_empty(),
        "a dry run stores nothing"
    );
}

#[tokio::test]
async fn a_patch_that_loses_a_race_during_admission_is_retried_a_put_gets_409() {
    let fake_slot: Arc<std::sync::OnceLock<Arc<FakeApiServer>>> = Arc::default();
    let raced = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (slot, flag) = (fake_slot.clone(), raced.clone());
    // The first UPDATE seen makes a concurrent write to the same object.
    let responder: Responder = Arc::new(move |_, review| {
        if review["request"]["operation"] == "UPDATE"
            && !flag.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            let mut other = review["request"]["oldObject"].clone();
            other["data"]["raced"] = json!("yes");
            other["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("resourceVersion");
            slot.get().unwrap().insert(other);
        }
        reply(review, json!({"allowed": true}))
    });
    let hook = start_hook(responder).await;
    let fake = Arc::new(
        setup(
            &hook,
            vec![],
            vec![webhook("v.test.dev", "/v", &hook, json!({}))],
        )
        .await,
    );
    let _ = fake_slot.set(fake.clone());
    let cms: Api<ConfigMap> = Api::namespaced(fake.client_for(ALICE).await, "ns");
    cms.create(&PostParams::default(), &cm("c")).await.unwrap();

    let patched = cms
        .patch(
            "c",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"mine": "1"}})),
        )
        .await
        .unwrap();
    let data = patched.data.unwrap();
    assert_eq!(
        (data["raced"].as_str(), data["mine"].as_str()),
        ("yes", "1"),
        "re-applied on the newer object"
    );
    assert_eq!(hook.seen().len(), 3, "create, the lost UPDATE, its retry");

    // A PUT carries its resourceVersion: it gets the 409.
    raced.store(false, std::sync::atomic::Ordering::SeqCst);
    let mut current = cms.get("c").await.unwrap();
    current
        .data
        .as_mut()
        .unwrap()
        .insert("put".into(), "1".into());
    let s = status_of(
        cms.replace("c", &PostParams::default(), &current)
            .await
            .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert_eq!(s.message, "Operation cannot be fulfilled on configmaps \"c\": the object has been modified; please apply your changes to the latest version and try again");
}

#[tokio::test]
async fn if_needed_webhooks_are_reinvoked_once_after_a_later_webhook_changed_the_object() {
    let responder: Responder = Arc::new(|path, review| {
        if path.starts_with("/b")
            && review["request"]["object"]["metadata"]["labels"]
                .get("b")
                .is_none()
        {
            reply(
                review,
                json!({"allowed": true, "patchType": "JSONPatch",
                "patch": patch_b64(json!([{"op": "add", "path": "/metadata/labels/b", "value": "1"}]))}),
            )
        } else {
            reply(review, json!({"allowed": true}))
        }
    });
    let hook = start_hook(responder).await;
    for (policy, want_a_calls) in [("IfNeeded", 2), ("Never", 1)] {
        let fake = setup(
            &hook,
            vec![
                webhook(
                    "a.test.dev",
                    "/a",
                    &hook,
                    json!({"reinvocationPolicy": policy}),
                ),
                webhook("b.test.dev", "/b", &hook, json!({})),
            ],
            vec![],
        )
        .await;
        let cms: Api<ConfigMap> = Api::namespaced(fake.client_for(ALICE).await, "ns");
        let created = cms.create(&PostParams::default(), &cm("c")).await.unwrap();
        assert_eq!(created.metadata.labels.unwrap()["b"], "1");
        let calls: Vec<String> = fake
            .admission_calls()
            .iter()
            .map(|c| c.webhook.clone())
            .collect();
        let a_calls = calls.iter().filter(|w| *w == "a.test.dev").count();
        assert_eq!(a_calls, want_a_calls, "{policy}: {calls:?}");
        if policy == "IfNeeded" {
            assert_eq!(calls, ["a.test.dev", "b.test.dev", "a.test.dev"]);
            let last = fake.admission_calls().pop().unwrap();
            assert_eq!(
                last.review["request"]["object"]["metadata"]["labels"]["b"], "1",
                "reinvoked with the changed object"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_untrusted_certificates_are_call_failures() {
    let responder: Responder = Arc::new(|_, review| {
        if review["request"]["name"] == "slow" {
            std::thread::sleep(std::time::Duration::from_millis(1500));
        }
        reply(review, json!({"allowed": true}))
    });
    let hook = start_hook(responder).await;
    let fake = setup(
        &hook,
        vec![],
        vec![webhook(
            "v.test.dev",
            "/v",
            &hook,
            json!({"timeoutSeconds": 1}),
        )],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(fake.client_for(ALICE).await, "ns");
    let s = status_of(
        cms.create(&PostParams::default(), &cm("slow"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        s.message,
        "Internal error occurred: failed calling webhook \"v.test.dev\": failed to call webhook: Post \"https://hook.test-ns.svc:443/v?timeout=1s\": context deadline exceeded"
    );

    // A caBundle that did not sign the webhook's certificate.
    let mut other = webhook("v.test.dev", "/v", &hook, json!({}));
    other["clientConfig"]["caBundle"] =
        json!(base64::engine::general_purpose::STANDARD.encode(fake.ca_pem()));
    fake.insert(json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration", "metadata": {"name": "v"}, "webhooks": [other]}));
    let s = status_of(
        cms.create(&PostParams::default(), &cm("fast"))
            .await
            .unwrap_err(),
    );
    assert!(
        s.message.starts_with("Internal error occurred: failed calling webhook \"v.test.dev\": failed to call webhook: Post \"https://hook.test-ns.svc:443/v?timeout=5s\": tls: failed to verify certificate: x509: "),
        "{}",
        s.message
    );
    assert!(fake.list_all("configmaps").is_empty());
}

#[tokio::test]
async fn generated_names_are_given_after_mutating_and_before_validating_admission() {
    let responder: Responder = Arc::new(|_, review| reply(review, json!({"allowed": true})));
    let hook = start_hook(responder).await;
    let fake = setup(
        &hook,
        vec![webhook("m.test.dev", "/m", &hook, json!({}))],
        vec![webhook("v.test.dev", "/v", &hook, json!({}))],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(fake.client_for(ALICE).await, "ns");
    let obj: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "gen-"}})).unwrap();
    let created = cms.create(&PostParams::default(), &obj).await.unwrap();
    let name = created.metadata.name.unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
    let seen = hook.seen();
    let (m, v) = (&seen[0].review["request"], &seen[1].review["request"]);
    assert!(m.get("name").is_none(), "{m}");
    assert!(m["object"]["metadata"].get("name").is_none());
    assert_eq!(m["object"]["metadata"]["generateName"], "gen-");
    assert_eq!(v["name"].as_str(), Some(name.as_str()));
    assert_eq!(
        v["object"]["metadata"]["name"].as_str(),
        Some(name.as_str())
    );
}

#[tokio::test]
async fn validation_runs_after_mutating_and_before_validating_webhooks() {
    // The mutating webhook repairs "fixme" objects and breaks "breakme" ones.
    let responder: Responder = Arc::new(|path, review| {
        let name = review["request"]["name"].as_str().unwrap_or("");
        let value = match (path.starts_with("/m"), name) {
            (true, "fixme") => Some("ok"),
            (true, "breakme") => Some("not a valid label value!"),
            _ => None,
        };
        match value {
            Some(v) => reply(
                review,
                json!({"allowed": true, "patchType": "JSONPatch",
                "patch": patch_b64(json!([{"op": "replace", "path": "/metadata/labels/app", "value": v}]))}),
            ),
            None => reply(review, json!({"allowed": true})),
        }
    });
    let hook = start_hook(responder).await;
    let fake = setup(
        &hook,
        vec![webhook("m.test.dev", "/m", &hook, json!({}))],
        vec![webhook("v.test.dev", "/v", &hook, json!({}))],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(fake.client_for(ALICE).await, "ns");
    let with_label = |name: &str, v: &str| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {"app": v}}})).unwrap()
    };
    // Invalid as sent, valid once mutated: admitted.
    let fixed = cms
        .create(&PostParams::default(), &with_label("fixme", "-bad-"))
        .await
        .unwrap();
    assert_eq!(fixed.metadata.labels.unwrap()["app"], "ok");
    // Valid as sent, invalid once mutated: 422, and the validating webhook never sees it.
    fake.clear_admission_calls();
    let s = status_of(
        cms.create(&PostParams::default(), &with_label("breakme", "fine"))
            .await
            .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    assert!(s.message.starts_with("ConfigMap \"breakme\" is invalid: metadata.labels: Invalid value: \"not a valid label value!\""), "{}", s.message);
    let called: Vec<String> = fake
        .admission_calls()
        .iter()
        .map(|c| c.webhook.clone())
        .collect();
    assert_eq!(called, ["m.test.dev"]);
}

#[tokio::test]
async fn url_webhooks_are_called_on_loopback_only() {
    let responder: Responder = Arc::new(|_, review| reply(review, json!({"allowed": true})));
    let hook = start_hook(responder).await;
    let by_url = |url: String| {
        let mut w = webhook("v.test.dev", "", &hook, json!({}));
        w["clientConfig"] = json!({"url": url, "caBundle": hook.ca_b64});
        w
    };
    let fake = setup(
        &hook,
        vec![],
        vec![by_url(format!("https://localhost:{}/u", hook.addr.port()))],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(fake.client_for(ALICE).await, "ns");
    cms.create(&PostParams::default(), &cm("a")).await.unwrap();
    let seen = hook.seen();
    assert_eq!(seen[0].path_and_query, "/u?timeout=5s");
    assert_eq!(seen[0].host, format!("localhost:{}", hook.addr.port()));

    // A non-loopback host is never dialled.
    let fake = setup(
        &hook,
        vec![],
        vec![by_url("https://webhook.example.com/u".into())],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(fake.client_for(ALICE).await, "ns");
    let s = status_of(
        cms.create(&PostParams::default(), &cm("b"))
            .await
            .unwrap_err(),
    );
    assert_eq!(s.message, "Internal error occurred: failed calling webhook \"v.test.dev\": failed to call webhook: Post \"https://webhook.example.com/u?timeout=5s\": dial tcp: lookup webhook.example.com: no such host");
    assert_eq!(hook.seen().len(), 1);
}
