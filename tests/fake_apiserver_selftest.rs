//! Self-tests of the fake Kubernetes API server (`tests/support/fake_apiserver.rs`), driven by
//! the real `kube` 5 client over TLS, so the other integration tests can trust the fake.

#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;

use std::time::Duration;

use fake_apiserver::{AccessAnswer, FakeApiServer, Fault, ALL_VERBS};
use futures::StreamExt;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{self, Discovery, Scope};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::ResourceExt;
use serde_json::{json, Value};

fn cm(name: &str, labels: Value, data: Value) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": data,
    }))
    .unwrap()
}

fn api_code(err: kube::Error) -> (u16, String) {
    match err {
        kube::Error::Api(s) => (s.code, s.reason),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn appdomain_ar() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("tether.dev", "v1alpha1", "AppDomain"),
        "appdomains",
    )
}

fn dynamic(v: Value) -> DynamicObject {
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
async fn discovery_sees_a_resource_added_at_runtime_legacy_and_aggregated() {
    let fake = FakeApiServer::start().await;
    let client = fake.client().await;
    let widget = GroupVersionKind::gvk("example.com", "v1", "Widget");

    let d = Discovery::new(client.clone()).run().await.unwrap();
    let (ar, caps) = d
        .resolve_gvk(&GroupVersionKind::gvk(
            "tether.dev",
            "v1alpha1",
            "AppDomain",
        ))
        .unwrap();
    assert_eq!(ar.plural, "appdomains");
    assert_eq!(caps.scope, Scope::Namespaced);
    assert!(d.resolve_gvk(&widget).is_none());
    let (ns_ar, ns_caps) = d
        .resolve_gvk(&GroupVersionKind::gvk("", "v1", "Namespace"))
        .unwrap();
    assert_eq!(
        (ns_ar.plural.as_str(), ns_caps.scope),
        ("namespaces", Scope::Cluster)
    );

    fake.add_resource("example.com", "v1", "Widget", "widgets", false, ALL_VERBS);
    let d = Discovery::new(client.clone()).run().await.unwrap();
    let (ar, caps) = d.resolve_gvk(&widget).unwrap();
    assert_eq!(
        (ar.plural.as_str(), caps.scope),
        ("widgets", Scope::Cluster)
    );

    let agg = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .unwrap();
    let (ar, caps) = agg.resolve_gvk(&widget).unwrap();
    assert_eq!(
        (ar.plural.as_str(), caps.scope),
        ("widgets", Scope::Cluster)
    );
    let (ar, _) = agg
        .resolve_gvk(&GroupVersionKind::gvk("", "v1", "Pod"))
        .unwrap();
    assert_eq!(ar.plural, "pods");
    assert!(
        fake.requests_matching("GET", "/apis")
            .iter()
            .any(|r| r.path == "/apis"),
        "aggregated discovery asked /apis"
    );

    let (ar, caps) =
        discovery::pinned_kind(&client, &GroupVersionKind::gvk("apps", "v1", "Deployment"))
            .await
            .unwrap();
    assert_eq!(
        (ar.plural.as_str(), caps.scope),
        ("deployments", Scope::Namespaced)
    );
    assert!(
        caps.subresources.iter().any(|(s, _)| s.plural == "status"),
        "status subresource listed"
    );
    assert!(
        discovery::pinned_kind(&client, &GroupVersionKind::gvk("nope.dev", "v1", "Nope"))
            .await
            .is_err()
    );

    fake.remove_resource("example.com", "v1", "widgets");
    let d = Discovery::new(client).run().await.unwrap();
    assert!(d.resolve_gvk(&widget).is_none());
    assert_eq!(fake.write_count(), 0, "discovery writes nothing");
}

#[tokio::test]
async fn subject_access_reviews_answer_from_the_rule_and_are_recorded() {
    let fake = FakeApiServer::start().await;
    let api: Api<SubjectAccessReview> = Api::all(fake.client().await);
    let review = |verb: &str| SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some("alice".into()),
            groups: Some(vec!["team-a".into()]),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                resource: Some("deployments".into()),
                group: Some("apps".into()),
                namespace: Some("ns1".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };

    let allowed = api
        .create(&PostParams::default(), &review("get"))
        .await
        .unwrap();
    assert!(
        allowed.status.as_ref().unwrap().allowed,
        "default is allow-all"
    );

    fake.set_access_rule(|spec| {
        match spec
            .pointer("/resourceAttributes/verb")
            .and_then(Value::as_str)
        {
            Some("delete") => AccessAnswer::deny("no deleting"),
            Some("get") => AccessAnswer::allow("reads are fine"),
            _ => AccessAnswer::no_opinion(""),
        }
    });
    let denied = api
        .create(&PostParams::default(), &review("delete"))
        .await
        .unwrap();
    let st = denied.status.unwrap();
    assert_eq!(
        (st.allowed, st.denied, st.reason.as_deref()),
        (false, Some(true), Some("no deleting"))
    );
    let ok = api
        .create(&PostParams::default(), &review("get"))
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(
        (ok.allowed, ok.reason.as_deref()),
        (true, Some("reads are fine"))
    );
    let none = api
        .create(&PostParams::default(), &review("list"))
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!((none.allowed, none.denied), (false, None));

    let recorded =
        fake.requests_matching("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews");
    assert_eq!(recorded.len(), 4);
    let body = recorded[1].body.as_ref().unwrap();
    assert_eq!(body.pointer("/spec/user"), Some(&json!("alice")));
    assert_eq!(
        body.pointer("/spec/resourceAttributes/verb"),
        Some(&json!("delete"))
    );
    assert_eq!(fake.write_count(), 0, "reviews are not writes");
}

#[tokio::test]
async fn injected_faults_surface_as_client_errors() {
    let fake = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client().await, "default");
    let prefix = "/api/v1/namespaces/default/configmaps";

    fake.fail(prefix, Fault::Status(500, "boom".into()), Some(1));
    assert_eq!(
        api_code(api.list(&ListParams::default()).await.unwrap_err()),
        (500, "InternalError".into())
    );
    assert!(
        api.list(&ListParams::default()).await.is_ok(),
        "fault used up after one time"
    );

    // kube 5 retries 429/503/504 by itself (Config::default_retry): one 429 is invisible...
    fake.clear_requests();
    fake.fail(prefix, Fault::Status(429, "slow down".into()), Some(1));
    assert_eq!(
        api_code(api.get("x").await.unwrap_err()),
        (404, "NotFound".into())
    );
    assert_eq!(fake.requests().len(), 2, "the 429 was retried");
    // ...unless retries are off.
    let mut no_retry = fake.config().await;
    no_retry.default_retry = false;
    let no_retry_api: Api<ConfigMap> =
        Api::namespaced(kube::Client::try_from(no_retry).unwrap(), "default");
    fake.fail(prefix, Fault::Status(429, "slow down".into()), Some(1));
    assert_eq!(
        api_code(no_retry_api.get("x").await.unwrap_err()),
        (429, "TooManyRequests".into())
    );
    fake.fail(prefix, Fault::Status(409, "clash".into()), None);
    for _ in 0..2 {
        assert_eq!(api_code(api.get("x").await.unwrap_err()).0, 409);
    }
    fake.clear_faults();
    assert_eq!(
        api_code(api.get("x").await.unwrap_err()),
        (404, "NotFound".into())
    );

    fake.fail(prefix, Fault::Close, Some(1));
    match api.get("x").await {
        Err(kube::Error::Api(s)) => panic!("a closed connection is no API answer: {s:?}"),
        Err(_) => {}
        Ok(_) => panic!("closed connection must fail"),
    }

    let mut cfg = fake.config().await;
    cfg.read_timeout = Some(Duration::from_millis(300));
    let slow_api: Api<ConfigMap> = Api::namespaced(kube::Client::try_from(cfg).unwrap(), "default");
    fake.fail(prefix, Fault::Stall(Duration::from_secs(3)), Some(1));
    let started = std::time::Instant::now();
    let err = slow_api.list(&ListParams::default()).await.unwrap_err();
    assert!(
        !matches!(err, kube::Error::Api(_)),
        "a timeout, not an API error: {err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "timed out before the stall ended"
    );
}

#[tokio::test]
async fn crud_sets_metadata_and_answers_conflicts_with_status_bodies() {
    let fake = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client().await, "default");
    let pp = PostParams::default();

    let created = api
        .create(
            &pp,
            &cm("a", json!({"app": "web", "tier": "x"}), json!({"k": "1"})),
        )
        .await
        .unwrap();
    assert!(created.uid().is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(created.namespace().as_deref(), Some("default"));
    let rv1: u64 = created.resource_version().unwrap().parse().unwrap();

    assert_eq!(
        api_code(
            api.create(&pp, &cm("a", json!({}), json!({})))
                .await
                .unwrap_err()
        ),
        (409, "AlreadyExists".into())
    );
    api.create(&pp, &cm("b", json!({"app": "db"}), json!({})))
        .await
        .unwrap();
    api.create(&pp, &cm("c", json!({}), json!({})))
        .await
        .unwrap();

    let mut stale = api.get("a").await.unwrap();
    let mut fresh = stale.clone();
    fresh.data = Some([("k".to_string(), "2".to_string())].into());
    let replaced = api.replace("a", &pp, &fresh).await.unwrap();
    let rv2: u64 = replaced.resource_version().unwrap().parse().unwrap();
    assert!(rv2 > rv1);
    assert_eq!(replaced.uid(), created.uid(), "uid survives replace");
    stale.data = Some([("k".to_string(), "3".to_string())].into());
    let (code, reason) = api_code(api.replace("a", &pp, &stale).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert_eq!(api.get("a").await.unwrap().data.unwrap()["k"], "2");

    let names = |l: kube::core::ObjectList<ConfigMap>| {
        l.items.iter().map(|c| c.name_any()).collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("app=web"))
                .await
                .unwrap()
        ),
        ["a"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("app"))
                .await
                .unwrap()
        ),
        ["a", "b"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("!app"))
                .await
                .unwrap()
        ),
        ["c"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("app in (db,other)"))
                .await
                .unwrap()
        ),
        ["b"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("app=web,tier=y"))
                .await
                .unwrap()
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("metadata.name=c"))
                .await
                .unwrap()
        ),
        ["c"]
    );
    let list = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        list.metadata.resource_version.as_deref(),
        Some(fake.resource_version().to_string().as_str())
    );

    let other_ns: Api<ConfigMap> = Api::namespaced(fake.client().await, "other");
    assert!(other_ns
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
    let all: Api<ConfigMap> = Api::all(fake.client().await);
    assert_eq!(
        all.list(&ListParams::default()).await.unwrap().items.len(),
        3
    );

    api.delete("b", &DeleteParams::default()).await.unwrap();
    assert_eq!(
        api_code(api.get("b").await.unwrap_err()),
        (404, "NotFound".into())
    );
    assert_eq!(
        api_code(api.delete("b", &DeleteParams::default()).await.unwrap_err()).0,
        404
    );

    let writes = fake.writes();
    assert_eq!(
        writes.iter().map(|w| w.method.as_str()).collect::<Vec<_>>(),
        ["POST", "POST", "POST", "POST", "PUT", "PUT", "DELETE", "DELETE"]
    );
    assert_eq!(fake.list_all("configmaps").len(), 2);
    fake.clear_requests();
    assert_eq!(fake.write_count(), 0);
}

#[tokio::test]
async fn merge_json_strategic_and_apply_patches() {
    let fake = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client().await, "default");
    api.create(
        &PostParams::default(),
        &cm("p", json!({"a": "1"}), json!({"x": "1", "y": "2"})),
    )
    .await
    .unwrap();
    let pp = PatchParams::default();

    let merged = api
        .patch(
            "p",
            &pp,
            &Patch::Merge(json!({"data": {"x": null, "z": "3"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        merged.data.unwrap(),
        [
            ("y".to_string(), "2".to_string()),
            ("z".to_string(), "3".to_string())
        ]
        .into()
    );

    let ops: json_patch::Patch =
        serde_json::from_value(json!([{"op": "replace", "path": "/data/y", "value": "20"}]))
            .unwrap();
    let jp = api.patch("p", &pp, &Patch::<()>::Json(ops)).await.unwrap();
    assert_eq!(jp.data.as_ref().unwrap()["y"], "20");
    let bad: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/data/y", "value": "nope"}]))
            .unwrap();
    assert_eq!(
        api_code(
            api.patch("p", &pp, &Patch::<()>::Json(bad))
                .await
                .unwrap_err()
        )
        .0,
        422
    );

    let sm = api
        .patch(
            "p",
            &pp,
            &Patch::Strategic(json!({"metadata": {"labels": {"b": "2"}}})),
        )
        .await
        .unwrap();
    assert_eq!(sm.labels().len(), 2);

    // A resourceVersion in a merge patch is a precondition.
    let stale = json!({"metadata": {"resourceVersion": "1"}, "data": {"q": "1"}});
    assert_eq!(
        api_code(api.patch("p", &pp, &Patch::Merge(stale)).await.unwrap_err()),
        (409, "Conflict".into())
    );

    // Server-side apply: create, own, remove on omission, conflict, force.
    let apply = |m: &str| PatchParams::apply(m);
    let cfg = |data: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": data});
    let s = api
        .patch(
            "s",
            &apply("mgr-a"),
            &Patch::Apply(cfg(json!({"one": "1", "two": "2"}))),
        )
        .await
        .unwrap();
    assert_eq!(s.data.as_ref().unwrap().len(), 2);
    let s = api
        .patch(
            "s",
            &apply("mgr-a"),
            &Patch::Apply(cfg(json!({"one": "1"}))),
        )
        .await
        .unwrap();
    assert_eq!(
        s.data.unwrap(),
        [("one".to_string(), "1".to_string())].into(),
        "omitted field removed"
    );
    api.patch(
        "s",
        &apply("mgr-b"),
        &Patch::Apply(cfg(json!({"other": "b"}))),
    )
    .await
    .unwrap();
    let (code, reason) = api_code(
        api.patch(
            "s",
            &apply("mgr-b"),
            &Patch::Apply(cfg(json!({"one": "B"}))),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    let same = api
        .patch(
            "s",
            &apply("mgr-b"),
            &Patch::Apply(cfg(json!({"one": "1", "other": "b"}))),
        )
        .await
        .unwrap();
    assert_eq!(
        same.data.as_ref().unwrap().len(),
        2,
        "same value is shared ownership, no conflict"
    );
    let forced = api
        .patch(
            "s",
            &apply("mgr-b").force(),
            &Patch::Apply(cfg(json!({"one": "B", "other": "b"}))),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.as_ref().unwrap()["one"], "B");
    let rv = forced.resource_version();
    let again = api
        .patch(
            "s",
            &apply("mgr-b").force(),
            &Patch::Apply(cfg(json!({"one": "B", "other": "b"}))),
        )
        .await
        .unwrap();
    assert_eq!(
        again.resource_version(),
        rv,
        "an idempotent apply changes nothing"
    );
    assert_eq!(
        api_code(
            api.patch("s", &PatchParams::default(), &Patch::Apply(cfg(json!({}))))
                .await
                .unwrap_err()
        )
        .0,
        400,
        "apply needs a fieldManager"
    );

    let applies = fake.requests_matching("PATCH", "/api/v1/namespaces/default/configmaps/s");
    assert_eq!(
        applies[0].query_param("fieldManager").as_deref(),
        Some("mgr-a")
    );
    assert_eq!(
        applies[0].content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(applies[5].query_param("force").as_deref(), Some("true"));
}

#[tokio::test]
async fn finalizers_delay_deletion_until_removed() {
    let fake = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client().await, "default");
    let mut c = cm("f", json!({}), json!({}));
    c.metadata.finalizers = Some(vec!["tether.dev/cleanup".into()]);
    api.create(&PostParams::default(), &c).await.unwrap();

    api.delete("f", &DeleteParams::default()).await.unwrap();
    let marked = api.get("f").await.unwrap();
    assert!(
        marked.metadata.deletion_timestamp.is_some(),
        "marked, not gone"
    );
    let rv = marked.resource_version();
    api.delete("f", &DeleteParams::default()).await.unwrap();
    assert_eq!(
        api.get("f").await.unwrap().resource_version(),
        rv,
        "second delete is a no-op"
    );

    let add = json!({"metadata": {"finalizers": ["tether.dev/cleanup", "new/one"]}});
    assert_eq!(
        api_code(
            api.patch("f", &PatchParams::default(), &Patch::Merge(add))
                .await
                .unwrap_err()
        )
        .0,
        422
    );

    api.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(
        api_code(api.get("f").await.unwrap_err()).0,
        404,
        "gone once finalizers are cleared"
    );
}

#[tokio::test]
async fn status_subresource_is_separate_from_the_main_resource() {
    let fake = FakeApiServer::start().await;
    let api: Api<DynamicObject> = Api::namespaced_with(fake.client().await, "ns1", &appdomain_ar());
    let obj = dynamic(json!({
        "apiVersion": "tether.dev/v1alpha1", "kind": "AppDomain",
        "metadata": {"name": "d1"},
        "spec": {"tenantId": "t"}, "status": {"phase": "ignored-on-create"}
    }));
    let created = api.create(&PostParams::default(), &obj).await.unwrap();
    assert_eq!(created.data.get("status"), None, "status dropped on create");

    let st = api
        .patch_status(
            "d1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Ready"}, "spec": {"tenantId": "changed"}})),
        )
        .await
        .unwrap();
    assert_eq!(st.data["status"]["phase"], "Ready");
    assert_eq!(st.data["spec"]["tenantId"], "t", "status write leaves spec");
    assert_eq!(
        st.metadata.generation,
        Some(1),
        "status write leaves generation"
    );

    let main = api
        .patch(
            "d1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Hacked"}, "spec": {"tenantId": "u"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        main.data["status"]["phase"], "Ready",
        "main write keeps status"
    );
    assert_eq!(
        main.metadata.generation,
        Some(2),
        "spec change bumps generation"
    );

    let labelled = api
        .patch(
            "d1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"l": "v"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        labelled.metadata.generation,
        Some(2),
        "metadata change does not"
    );

    let mut replace = api.get_status("d1").await.unwrap();
    replace.data["status"] = json!({"phase": "Put"});
    let put = api
        .replace_status("d1", &PostParams::default(), &replace)
        .await
        .unwrap();
    assert_eq!(put.data["status"]["phase"], "Put");

    let applied = api
        .patch_status("d1", &PatchParams::apply("ctl").force(), &Patch::Apply(json!({
            "apiVersion": "tether.dev/v1alpha1", "kind": "AppDomain", "metadata": {"name": "d1"},
            "status": {"phase": "Applied"}
        })))
        .await
        .unwrap();
    assert_eq!(applied.data["status"]["phase"], "Applied");
    assert_eq!(applied.data["spec"]["tenantId"], "u");

    // ConfigMaps have no status subresource.
    let cms: Api<ConfigMap> = Api::namespaced(fake.client().await, "ns1");
    cms.create(&PostParams::default(), &cm("c", json!({}), json!({})))
        .await
        .unwrap();
    assert_eq!(api_code(cms.get_status("c").await.unwrap_err()).0, 404);
}

#[tokio::test]
async fn reflector_store_follows_adds_updates_and_deletes() {
    let fake = FakeApiServer::start().await;
    let client = fake.client().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(
        &PostParams::default(),
        &cm("pre", json!({"app": "r"}), json!({"v": "0"})),
    )
    .await
    .unwrap();

    let (reader, writer) = reflector::store::<ConfigMap>();
    let stream = reflector(
        writer,
        watcher(api.clone(), watcher::Config::default().labels("app=r")),
    )
    .applied_objects();
    let task = tokio::spawn(async move {
        futures::pin_mut!(stream);
        while stream.next().await.is_some() {}
    });
    reader.wait_until_ready().await.unwrap();

    async fn eventually(what: &str, f: impl Fn() -> bool) {
        for _ in 0..100 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out waiting for {what}");
    }
    let names = || {
        let mut v: Vec<String> = reader.state().iter().map(|c| c.name_any()).collect();
        v.sort();
        v
    };
    assert_eq!(names(), ["pre"]);

    api.create(
        &PostParams::default(),
        &cm("new", json!({"app": "r"}), json!({"v": "1"})),
    )
    .await
    .unwrap();
    api.create(
        &PostParams::default(),
        &cm("other", json!({"app": "x"}), json!({})),
    )
    .await
    .unwrap();
    eventually("ADDED", || names() == ["new", "pre"]).await;

    api.patch(
        "new",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    let data_of = |n: &str| {
        reader
            .state()
            .iter()
            .find(|c| c.name_any() == n)
            .and_then(|c| c.data.as_ref().and_then(|d| d.get("v").cloned()))
    };
    eventually("MODIFIED", || data_of("new").as_deref() == Some("2")).await;

    api.delete("pre", &DeleteParams::default()).await.unwrap();
    eventually("DELETED", || names() == ["new"]).await;
    task.abort();
}

#[tokio::test]
async fn raw_watch_resumes_from_a_resource_version_and_expires_after_compaction() {
    let fake = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client().await, "default");
    let first = api
        .create(&PostParams::default(), &cm("w1", json!({}), json!({})))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("w2", json!({}), json!({})))
        .await
        .unwrap();
    api.delete("w1", &DeleteParams::default()).await.unwrap();

    let rv = first.resource_version().unwrap();
    let stream = api
        .watch(&WatchParams::default().timeout(1), &rv)
        .await
        .unwrap();
    let events: Vec<String> = stream.map(|e| event_line(e.unwrap())).collect().await;
    assert_eq!(
        events,
        ["ADDED w2", "DELETED w1"],
        "history after rv, then closed by timeoutSeconds"
    );

    fake.compact_watch_history();
    let stream = api
        .watch(&WatchParams::default().timeout(1), &rv)
        .await
        .unwrap();
    let events: Vec<_> = stream.collect().await;
    assert!(matches!(events.as_slice(), [Ok(WatchEvent::Error(e))] if e.code == 410));
}

#[tokio::test]
async fn owner_references_are_garbage_collected() {
    let fake = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client().await, "default");
    let owner = api
        .create(&PostParams::default(), &cm("owner", json!({}), json!({})))
        .await
        .unwrap();
    let mut child = cm("child", json!({}), json!({}));
    child.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "owner".into(),
        uid: owner.uid().unwrap(),
        ..Default::default()
    }]);
    api.create(&PostParams::default(), &child).await.unwrap();
    let mut orphan = cm("orphan", json!({}), json!({}));
    orphan.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "never-created".into(),
        uid: "no-such-uid".into(),
        ..Default::default()
    }]);
    api.create(&PostParams::default(), &orphan).await.unwrap();

    fake.set_garbage_collection(false);
    api.create(&PostParams::default(), &cm("x", json!({}), json!({})))
        .await
        .unwrap();
    api.delete("x", &DeleteParams::default()).await.unwrap();
    assert!(api.get("orphan").await.is_ok(), "GC off keeps orphans");

    fake.set_garbage_collection(true);
    api.delete("owner", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_code(api.get("child").await.unwrap_err()).0, 404);
    assert_eq!(api_code(api.get("orphan").await.unwrap_err()).0, 404);
}

/// A LIST or WATCH with an equality label selector reads the objects carrying that label
/// (in its namespace), not every object of the resource or of the namespace; a watch resumed
/// from a resourceVersion reads the history after it, not the store or the older history.
/// Counted by the fake (`read_work`), never timed.
#[tokio::test]
async fn selected_lists_and_watches_read_what_they_select_not_the_store() {
    let fake = FakeApiServer::start().await;
    let labelled = |ns: &str, name: &str, labels: Value| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": name, "namespace": ns, "labels": labels}})
    };
    for i in 0..500 {
        fake.insert(labelled(
            "crowd",
            &format!("other-{i:03}"),
            json!({"app": "other"}),
        ));
    }
    for i in 0..200 {
        fake.insert(labelled(
            "elsewhere",
            &format!("web-{i:03}"),
            json!({"app": "web"}),
        ));
    }
    fake.insert(labelled(
        "crowd",
        "web-0",
        json!({"app": "web", "tier": "front"}),
    ));
    fake.insert(labelled("crowd", "web-1", json!({"app": "web"})));
    fake.insert(labelled("crowd", "web-2", json!({"app": "web"})));
    let client = fake.client().await;
    let crowd: Api<ConfigMap> = Api::namespaced(client.clone(), "crowd");
    let names = |l: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        l.items.iter().map(|c| c.name_any()).collect()
    };

    let before = fake.read_work();
    let web = crowd
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(names(web), ["web-0", "web-1", "web-2"]);
    assert_eq!(
        fake.read_work() - before,
        3,
        "the three labelled app=web in crowd"
    );

    let before = fake.read_work();
    let front = crowd
        .list(&ListParams::default().labels("app=web,tier=front"))
        .await
        .unwrap();
    assert_eq!(names(front), ["web-0"]);
    assert_eq!(
        fake.read_work() - before,
        3,
        "the first equality's objects, then the rest of the selector"
    );

    // Pages: each starts after the previous one's last object in the label's range.
    let before = fake.read_work();
    let page = crowd
        .list(&ListParams::default().labels("app=web").limit(2))
        .await
        .unwrap();
    let token = page.metadata.continue_.clone().unwrap();
    assert_eq!(names(page), ["web-0", "web-1"]);
    let rest = crowd
        .list(
            &ListParams::default()
                .labels("app=web")
                .limit(2)
                .continue_token(&token),
        )
        .await
        .unwrap();
    assert_eq!(rest.metadata.continue_.as_deref().unwrap_or(""), "");
    assert_eq!(names(rest), ["web-2"]);
    assert_eq!(
        fake.read_work() - before,
        5,
        "web-0..2, then web-2 twice (is there more? the next page)"
    );

    // All namespaces: the 203 labelled objects, in (namespace, name) order.
    let all: Api<ConfigMap> = Api::all(client.clone());
    let before = fake.read_work();
    let everywhere = names(
        all.list(&ListParams::default().labels("app=web"))
            .await
            .unwrap(),
    );
    assert_eq!(everywhere.len(), 203);
    assert_eq!(
        (everywhere[0].as_str(), everywhere[3].as_str()),
        ("web-0", "web-000")
    );
    assert_eq!(fake.read_work() - before, 203);

    // A selector without an equality reads the namespace, as before.
    let before = fake.read_work();
    let unlabelled = crowd
        .list(&ListParams::default().labels("!app"))
        .await
        .unwrap();
    assert!(unlabelled.items.is_empty());
    assert_eq!(
        fake.read_work() - before,
        503,
        "every object in crowd, none elsewhere"
    );

    // The index follows the store: a relabelled and a deleted object leave the selection.
    let rv = crowd
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    crowd
        .patch(
            "web-2",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app": "gone"}}})),
        )
        .await
        .unwrap();
    crowd
        .delete("web-0", &DeleteParams::default())
        .await
        .unwrap();
    let before = fake.read_work();
    let web = crowd
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(names(web), ["web-1"]);
    assert_eq!(fake.read_work() - before, 1);

    // A watch resumed from `rv` reads the two changes since, not the 700 objects' history.
    let before = fake.read_work();
    let events: Vec<String> = crowd
        .watch(&WatchParams::default().labels("app=web").timeout(1), &rv)
        .await
        .unwrap()
        .map(|e| event_line(e.unwrap()))
        .collect()
        .await;
    assert_eq!(
        events,
        ["DELETED web-2", "DELETED web-0"],
        "web-2 left the selector, web-0 was deleted"
    );
    assert_eq!(fake.read_work() - before, 2, "the history after rv");

    // A watch from "0" starts with the selected objects that exist now, and reads only them.
    let before = fake.read_work();
    let events: Vec<String> = crowd
        .watch(&WatchParams::default().labels("app=web").timeout(1), "0")
        .await
        .unwrap()
        .map(|e| event_line(e.unwrap()))
        .collect()
        .await;
    assert_eq!(events, ["ADDED web-1"]);
    assert_eq!(fake.read_work() - before, 1);
}

/// The garbage collector's cost per deletion is the deleted object's dependents, not the
/// store: deleting one of 500 dependents looks at that one object, deleting an owner looks at
/// it and its dependents (and still removes them, transitively, with finalizers honoured).
#[tokio::test]
async fn garbage_collection_costs_the_dependents_not_the_store() {
    let fake = FakeApiServer::start().await;
    let owner = fake.insert(json!({"apiVersion": "v1", "kind": "ConfigMap",
                                   "metadata": {"name": "owner", "namespace": "default"}}));
    let owner_ref = |name: &str, uid: &Value| json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": name, "uid": uid}]);
    let uid = owner["metadata"]["uid"].clone();
    for i in 0..500 {
        fake.insert(json!({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": format!("dep-{i}"), "namespace": "default",
                                        "ownerReferences": owner_ref("owner", &uid)}}));
    }
    // A grandchild, and a dependent whose finalizer must be honoured (marked, not removed).
    let dep0 = fake
        .get("", "v1", "configmaps", Some("default"), "dep-0")
        .unwrap();
    fake.insert(json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "grandchild", "namespace": "default",
                                    "ownerReferences": owner_ref("dep-0", &dep0["metadata"]["uid"])}}));
    fake.insert(json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "held", "namespace": "default",
                                    "finalizers": ["example.com/hold"],
                                    "ownerReferences": owner_ref("owner", &uid)}}));
    for i in 0..500 {
        fake.insert(json!({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": format!("other-{i}"), "namespace": "default"}}));
    }
    let api: Api<ConfigMap> = Api::namespaced(fake.client().await, "default");

    let before = fake.gc_work();
    api.delete("dep-400", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        fake.gc_work() - before,
        1,
        "one dependent deleted: itself assessed"
    );
    assert_eq!(fake.gc_stats().0, 1, "one collection ran");
    assert!(api.get("dep-401").await.is_ok());

    let before = fake.gc_work();
    api.delete("owner", &DeleteParams::default()).await.unwrap();
    // The owner and its 500 dependents when it went, each dependent again as it was removed
    // or marked, the grandchild when dep-0 went and when it went itself: a few per related
    // object, none for the 500 unrelated ones.
    let work = fake.gc_work() - before;
    assert!(
        work <= 3 * 502,
        "deleting the owner assessed {work} objects"
    );
    let left: Vec<String> = fake
        .list_all("configmaps")
        .iter()
        .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
        .filter(|n| !n.starts_with("other-"))
        .collect();
    assert_eq!(left, ["held"], "dependents and the grandchild are gone");
    let held = api.get("held").await.unwrap();
    assert!(
        held.metadata.deletion_timestamp.is_some(),
        "marked for deletion"
    );
    assert_eq!(fake.count("", "configmaps", |_| true), 501);
}

#[tokio::test]
async fn seeding_helpers_kubeconfig_and_auth() {
    let fake = FakeApiServer::start().await;
    let seeded = fake.insert(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "ns1"},
        "spec": {"replicas": 2}, "status": {"readyReplicas": 2}
    }));
    assert!(seeded.pointer("/metadata/uid").is_some());
    assert!(fake
        .try_insert(json!({"apiVersion": "x/v1", "kind": "Nope", "metadata": {"name": "n"}}))
        .is_err());
    let got = fake
        .get("apps", "v1", "deployments", Some("ns1"), "web")
        .unwrap();
    assert_eq!(got["status"]["readyReplicas"], 2, "seeding keeps status");
    assert!(fake
        .get("apps", "v1", "deployments", Some("ns2"), "web")
        .is_none());
    assert_eq!(fake.list_all("deployments").len(), 1);

    let dir = tempfile::tempdir().unwrap();
    let path = fake.write_kubeconfig(dir.path());
    let kc = kube::config::Kubeconfig::read_from(&path).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(kube::Client::try_from(cfg.clone()).unwrap(), "ns1");
    let d = deployments.get("web").await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(2));
    assert!(fake.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(fake.url().starts_with("https://127.0.0.1:"));

    let mut bad = cfg;
    bad.auth_info.token = Some("wrong".to_string().into());
    let unauth: Api<ConfigMap> = Api::namespaced(kube::Client::try_from(bad).unwrap(), "ns1");
    assert_eq!(
        api_code(unauth.list(&ListParams::default()).await.unwrap_err()).0,
        401
    );

    fake.stop();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let after: Api<ConfigMap> = Api::namespaced(fake.client().await, "ns1");
    assert!(
        after.list(&ListParams::default()).await.is_err(),
        "stopped server answers nothing"
    );
}

/// A watch event as one short line: `ADDED name`, `DELETED name`, `BOOKMARK`, `ERROR 410`.
fn event_line<K: kube::Resource>(e: WatchEvent<K>) -> String {
    match e {
        WatchEvent::Added(c) => format!("ADDED {}", c.name_any()),
        WatchEvent::Modified(c) => format!("MODIFIED {}", c.name_any()),
        WatchEvent::Deleted(c) => format!("DELETED {}", c.name_any()),
        WatchEvent::Bookmark(_) => "BOOKMARK".into(),
        WatchEvent::Error(e) => format!("ERROR {}", e.code),
    }
}
