//! The fake API server behaves as kube-apiserver where tether's correctness depends on it:
//! LIST items of built-in kinds have no apiVersion/kind, values are stored canonicalised and
//! defaulted, names and labels are validated (422 with causes), label-selector watches turn
//! objects leaving/entering the selector into DELETED/ADDED, and LIST pages with
//! `limit`/`continue`. Driven through the real `kube` client over TLS.

#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;

use fake_apiserver::FakeApiServer;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube::ResourceExt;
use serde_json::{json, Value};

/// A raw GET through the kube client (to see the JSON exactly as served).
async fn get_json(client: &kube::Client, path: &str) -> Value {
    let req = hyper::Request::builder()
        .uri(path)
        .body(Vec::new())
        .unwrap();
    client.request::<Value>(req).await.unwrap()
}

async fn post_json(
    client: &kube::Client,
    path: &str,
    body: Value,
) -> Result<Value, kube::core::Status> {
    let req = hyper::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    match client.request::<Value>(req).await {
        Ok(v) => Ok(v),
        Err(kube::Error::Api(s)) => Err(*s),
        Err(e) => panic!("transport error: {e}"),
    }
}

fn ar(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

#[tokio::test]
async fn list_items_of_built_ins_carry_no_type_but_custom_resources_and_gets_do() {
    let fake = FakeApiServer::start().await;
    let client = fake.client().await;
    fake.insert(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1", "namespace": "ns"}}));
    fake.insert(json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "h", "namespace": "ns"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"}, "maxReplicas": 2}}));
    fake.insert(
        json!({"apiVersion": "tether.dev/v1alpha1", "kind": "AttachedResource",
        "metadata": {"name": "a", "namespace": "ns"}, "spec": {}}),
    );

    for (path, kind, api_version) in [
        ("/api/v1/namespaces/ns/configmaps", "ConfigMapList", "v1"),
        (
            "/apis/autoscaling/v2/namespaces/ns/horizontalpodautoscalers",
            "HorizontalPodAutoscalerList",
            "autoscaling/v2",
        ),
    ] {
        let list = get_json(&client, path).await;
        assert_eq!(
            (list["kind"].as_str(), list["apiVersion"].as_str()),
            (Some(kind), Some(api_version))
        );
        let item = &list["items"][0];
        assert!(
            item.get("apiVersion").is_none() && item.get("kind").is_none(),
            "{path}: {item}"
        );
        assert!(item["metadata"]["name"].is_string());
    }
    let list = get_json(
        &client,
        "/apis/tether.dev/v1alpha1/namespaces/ns/attachedresources",
    )
    .await;
    assert_eq!(list["items"][0]["apiVersion"], "tether.dev/v1alpha1");
    assert_eq!(list["items"][0]["kind"], "AttachedResource");
    let one = get_json(&client, "/api/v1/namespaces/ns/configmaps/c1").await;
    assert_eq!(
        (one["apiVersion"].as_str(), one["kind"].as_str()),
        (Some("v1"), Some("ConfigMap"))
    );

    // Typed clients still decode such lists (as they do against a real cluster).
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "ns");
    assert_eq!(
        cms.list(&ListParams::default()).await.unwrap().items[0].name_any(),
        "c1"
    );
}

#[tokio::test]
async fn writes_are_defaulted_and_canonicalised_like_the_apiserver() {
    let fake = FakeApiServer::start().await;
    let client = fake.client().await;
    let hpa = post_json(&client, "/apis/autoscaling/v2/namespaces/ns/horizontalpodautoscalers", json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "h", "labels": {}, "annotations": null},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 4,
                 "metrics": [{"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "1024Mi"}}},
                             {"type": "Pods", "pods": {"metric": {"name": "rps"}, "target": {"type": "AverageValue", "averageValue": "0.5"}}}],
                 "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}
    })).await.unwrap();
    assert_eq!(hpa["spec"]["minReplicas"], 1, "defaulted");
    assert_eq!(
        hpa["spec"]["metrics"][0]["resource"]["target"]["averageValue"],
        "1Gi"
    );
    assert_eq!(
        hpa["spec"]["metrics"][1]["pods"]["target"]["averageValue"],
        "500m"
    );
    assert_eq!(
        hpa["spec"]["behavior"]["scaleDown"],
        json!({"stabilizationWindowSeconds": 60, "selectPolicy": "Max",
        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]})
    );
    assert_eq!(
        hpa["spec"]["behavior"]["scaleUp"]["policies"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert!(
        hpa["metadata"].get("labels").is_none() && hpa["metadata"].get("annotations").is_none()
    );

    // A merge patch goes through the same decoding: "1000m" is stored as "1".
    let hpas = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        "ns",
        &ar(
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
        ),
    );
    let patched = hpas.patch("h", &PatchParams::default(), &Patch::Merge(json!({"spec": {"metrics": [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "AverageValue", "averageValue": "1000m"}}}]}}))).await.unwrap();
    assert_eq!(
        patched.data["spec"]["metrics"][0]["resource"]["target"]["averageValue"],
        "1"
    );

    let d = post_json(&client, "/apis/apps/v1/namespaces/ns/deployments", json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx:1.27", "resources": {"requests": {"cpu": "1000m", "memory": "0.5Gi"}, "limits": {"cpu": 2}}}]}}}
    })).await.unwrap();
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["resources"],
        json!({"requests": {"cpu": "1", "memory": "512Mi"}, "limits": {"cpu": "2"}})
    );
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(
        d["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
    );

    // Int-or-string: a percentage string and an int are kept as sent.
    for (name, v) in [("pct", json!("50%")), ("int", json!(3))] {
        let pdb = post_json(
            &client,
            "/apis/policy/v1/namespaces/ns/poddisruptionbudgets",
            json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name},
            "spec": {"minAvailable": v, "selector": {"matchLabels": {"app": "web"}}}}),
        )
        .await
        .unwrap();
        assert_eq!(pdb["spec"]["minAvailable"], v);
    }
    // A custom resource's embedded object is not touched.
    let atr = post_json(
        &client,
        "/apis/tether.dev/v1alpha1/namespaces/ns/attachedresources",
        json!({
        "apiVersion": "tether.dev/v1alpha1", "kind": "AttachedResource", "metadata": {"name": "a"},
        "spec": {"object": {"spec": {"q": "1000m", "n": null}}}}),
    )
    .await
    .unwrap();
    assert_eq!(
        atr["spec"]["object"]["spec"],
        json!({"q": "1000m", "n": null})
    );
}

#[tokio::test]
async fn invalid_names_labels_and_values_get_422_with_causes_and_bad_types_400() {
    let fake = FakeApiServer::start().await;
    let client = fake.client().await;
    let long = "v".repeat(64);
    let s = post_json(&client, "/api/v1/namespaces/ns/configmaps", json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"tether.dev/version": long}}})).await.unwrap_err();
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    assert_eq!(s.message, format!("ConfigMap \"c\" is invalid: metadata.labels: Invalid value: \"{long}\": must be no more than 63 characters"));
    let d = s.details.unwrap();
    assert_eq!((d.kind.as_str(), d.name.as_str()), ("ConfigMap", "c"));
    assert_eq!(d.causes.len(), 1);
    assert_eq!(d.causes[0].field, "metadata.labels");
    assert_eq!(d.causes[0].reason, "FieldValueInvalid");

    let s = post_json(&client, "/apis/apps/v1/namespaces/ns/deployments", json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "Web_1"},
        "spec": {"selector": {"matchLabels": {"app": "w"}}, "template": {"metadata": {"labels": {"app": "-bad-"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}
    })).await.unwrap_err();
    assert_eq!(s.code, 422);
    assert!(s.message.starts_with("Deployment.apps \"Web_1\" is invalid: [metadata.name: Invalid value: \"Web_1\": a lowercase RFC 1123 subdomain"), "{}", s.message);
    let fields: Vec<String> = s
        .details
        .unwrap()
        .causes
        .iter()
        .map(|c| c.field.clone())
        .collect();
    assert_eq!(fields, ["metadata.name", "spec.template.metadata.labels"]);

    let s = post_json(&client, "/apis/policy/v1/namespaces/ns/poddisruptionbudgets", json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "p"}, "spec": {"minAvailable": "3"}})).await.unwrap_err();
    assert_eq!(s.code, 422);
    assert!(
        s.message
            .contains("spec.minAvailable: Invalid value: \"3\": a valid percent string"),
        "{}",
        s.message
    );

    let s = post_json(&client, "/apis/autoscaling/v2/namespaces/ns/horizontalpodautoscalers", json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
        "spec": {"scaleTargetRef": null, "maxReplicas": 3}})).await.unwrap_err();
    assert_eq!(s.code, 422);
    assert_eq!(s.message, "HorizontalPodAutoscaler.autoscaling \"h\" is invalid: [spec.scaleTargetRef.kind: Required value, spec.scaleTargetRef.name: Required value]");

    let s = post_json(&client, "/apis/autoscaling/v2/namespaces/ns/horizontalpodautoscalers", json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "d"}, "maxReplicas": "3"}})).await.unwrap_err();
    assert_eq!((s.code, s.reason.as_str()), (400, "BadRequest"));
    assert!(s.message.starts_with("HorizontalPodAutoscaler in version \"v2\" cannot be handled as a HorizontalPodAutoscaler"), "{}", s.message);

    // Updates are validated too; nothing was stored by the failed writes.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "ns");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "ok"}})).unwrap(),
    )
    .await
    .unwrap();
    let err = cms
        .patch(
            "ok",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b c"}}})),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 422),
        "{err:?}"
    );
    assert_eq!(fake.list_all("configmaps").len(), 1);
    assert!(fake.list_all("deployments").is_empty());
}

#[tokio::test]
async fn selector_watches_see_objects_leave_as_deleted_and_enter_as_added() {
    let fake = FakeApiServer::start().await;
    let client = fake.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "ns");
    let mk = |labels: Value| {
        serde_json::from_value::<ConfigMap>(
            json!({"metadata": {"name": "c", "labels": labels}, "data": {"k": "1"}}),
        )
        .unwrap()
    };
    let start_rv = fake.resource_version().to_string();
    let mut events = cms
        .watch(&WatchParams::default().labels("app=web"), &start_rv)
        .await
        .unwrap()
        .boxed();

    cms.create(&PostParams::default(), &mk(json!({"app": "web"})))
        .await
        .unwrap();
    let left = cms
        .patch(
            "c",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app": "db"}}, "data": {"k": "2"}})),
        )
        .await
        .unwrap();
    cms.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "3"}})),
    )
    .await
    .unwrap();
    let back = cms
        .patch(
            "c",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app": "web"}}})),
        )
        .await
        .unwrap();

    let mut seen = Vec::new();
    while seen.len() < 3 {
        match events.try_next().await.unwrap().unwrap() {
            WatchEvent::Added(o) => seen.push(("ADDED", o)),
            WatchEvent::Modified(o) => seen.push(("MODIFIED", o)),
            WatchEvent::Deleted(o) => seen.push(("DELETED", o)),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("{e:?}"),
        }
    }
    let kinds: Vec<&str> = seen.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, ["ADDED", "DELETED", "ADDED"]);
    let deleted = &seen[1].1;
    // The previous state (still matching the selector), at the new resourceVersion.
    assert_eq!(deleted.labels()["app"], "web");
    assert_eq!(deleted.data.as_ref().unwrap()["k"], "1");
    assert_eq!(deleted.resource_version(), left.resource_version());
    assert_eq!(seen[2].1.data.as_ref().unwrap()["k"], "3");
    assert_eq!(seen[2].1.resource_version(), back.resource_version());

    // Replaying the same history from a resourceVersion gives the same events.
    let mut replay = cms
        .watch(
            &WatchParams::default().labels("app=web").timeout(1),
            &start_rv,
        )
        .await
        .unwrap()
        .boxed();
    let mut kinds = Vec::new();
    while let Some(ev) = replay.next().await {
        kinds.push(match ev.unwrap() {
            WatchEvent::Added(_) => "ADDED",
            WatchEvent::Modified(_) => "MODIFIED",
            WatchEvent::Deleted(_) => "DELETED",
            _ => "OTHER",
        });
    }
    assert_eq!(kinds, ["ADDED", "DELETED", "ADDED"]);
}

#[tokio::test]
async fn lists_page_with_limit_and_continue() {
    let fake = FakeApiServer::start().await;
    let client = fake.client().await;
    for name in ["e", "a", "d", "b", "c"] {
        fake.insert(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns"}}));
    }
    fake.insert(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other", "namespace": "zz"}}));
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "ns");
    let first = cms.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(
        first.items.iter().map(|c| c.name_any()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(first.metadata.remaining_item_count, Some(3));
    let token = first.metadata.continue_.clone().unwrap();
    let second = cms
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(
        second
            .items
            .iter()
            .map(|c| c.name_any())
            .collect::<Vec<_>>(),
        ["c", "d"]
    );
    assert_eq!(
        second.metadata.resource_version,
        first.metadata.resource_version
    );
    let third = cms
        .list(
            &ListParams::default()
                .limit(2)
                .continue_token(second.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(
        third.items.iter().map(|c| c.name_any()).collect::<Vec<_>>(),
        ["e"]
    );
    assert!(third.metadata.continue_.is_none());
    // An exact fit leaves no continue token.
    let all = cms.list(&ListParams::default().limit(5)).await.unwrap();
    assert_eq!(
        (all.items.len(), all.metadata.continue_.as_deref()),
        (5, None)
    );
    // All namespaces, paged: the other namespace comes last.
    let every: Api<ConfigMap> = Api::all(client.clone());
    let names: Vec<String> = every
        .list(&ListParams::default().limit(4))
        .await
        .unwrap()
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    assert_eq!(names, ["a", "b", "c", "d"]);
    // kube's pager (what reflectors use) walks every page.
    let paged: Vec<String> = kube::runtime::watcher::watcher(
        cms.clone(),
        kube::runtime::watcher::Config::default().page_size(2),
    )
    .take(7)
    .filter_map(|e| async move {
        match e {
            Ok(kube::runtime::watcher::Event::InitApply(o)) => Some(o.name_any()),
            _ => None,
        }
    })
    .collect()
    .await;
    assert_eq!(paged, ["a", "b", "c", "d", "e"]);

    let bad = cms
        .list(&ListParams::default().continue_token("not-a-token"))
        .await
        .unwrap_err();
    assert!(
        matches!(bad, kube::Error::Api(ref s) if s.code == 400),
        "{bad:?}"
    );
    fake.insert(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "f", "namespace": "ns"}}));
    fake.compact_watch_history();
    let gone = cms
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap_err();
    assert!(
        matches!(gone, kube::Error::Api(ref s) if s.code == 410 && s.reason == "Expired"),
        "{gone:?}"
    );
}
