//! The fake API server's LIST pages start where the previous page ended (an ordered-map
//! range, not a walk from the start): every object of the kind and namespace comes back
//! exactly once, in (namespace, name) order, with nothing from neighbouring kinds or
//! namespaces, whatever the page size and selector.

#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;

use fake_apiserver::FakeApiServer;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams};
use kube::ResourceExt;
use serde_json::json;

const NAMESPACES: [&str; 4] = ["a", "b", "bb", "c"];

/// ConfigMaps cm-0..cm-6 in each namespace (odd ones labelled `odd=yes`), and Secrets with
/// the same names beside them (a neighbouring kind in the same map).
async fn seeded() -> FakeApiServer {
    let fake = FakeApiServer::start().await;
    for ns in NAMESPACES {
        for i in 0..7 {
            let mut labels = json!({});
            if i % 2 == 1 {
                labels["odd"] = json!("yes");
            }
            fake.insert(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("cm-{i}"), "namespace": ns, "labels": labels}}));
            fake.insert(json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": format!("cm-{i}"), "namespace": ns}}));
        }
    }
    fake
}

/// Pages through `api` with `limit` per page; ("ns/name" in order, remainingItemCount of
/// the first page, pages).
async fn page_all<K>(api: &Api<K>, lp: ListParams) -> (Vec<String>, Option<i64>, usize)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    let mut first_remaining = None;
    let mut pages = 0;
    let mut lp = lp;
    loop {
        let page = api.list(&lp).await.expect("list");
        pages += 1;
        if pages == 1 {
            first_remaining = page.metadata.remaining_item_count;
        }
        out.extend(
            page.items
                .iter()
                .map(|o| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any())),
        );
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = lp.continue_token(&c),
            None => return (out, first_remaining, pages),
        }
        assert!(pages < 100, "paging does not end");
    }
}

/// (page size, selector, namespace, expected names, remainingItemCount after page one, pages)
type Case = (
    u32,
    Option<&'static str>,
    Option<&'static str>,
    Vec<String>,
    Option<i64>,
    usize,
);

fn expected(namespaces: &[&str], only_odd: bool) -> Vec<String> {
    let mut v = Vec::new();
    for ns in namespaces {
        for i in 0..7 {
            if !only_odd || i % 2 == 1 {
                v.push(format!("{ns}/cm-{i}"));
            }
        }
    }
    v
}

#[tokio::test]
async fn paged_lists_return_each_object_once_in_order() {
    let fake = seeded().await;
    let client = fake.client().await;
    let all: Api<ConfigMap> = Api::all(client.clone());
    let cases: Vec<Case> = vec![
        (3, None, None, expected(&NAMESPACES, false), Some(25), 10),
        (28, None, None, expected(&NAMESPACES, false), None, 1),
        (27, None, None, expected(&NAMESPACES, false), Some(1), 2),
        (2, None, Some("b"), expected(&["b"], false), Some(5), 4),
        (7, None, Some("bb"), expected(&["bb"], false), None, 1),
        // A selected list has no remainingItemCount (the API server cannot know it cheaply).
        (
            3,
            Some("odd=yes"),
            None,
            expected(&NAMESPACES, true),
            None,
            4,
        ),
        (
            1,
            Some("odd=yes"),
            Some("c"),
            expected(&["c"], true),
            None,
            3,
        ),
    ];
    for (limit, selector, ns, want, remaining, pages) in cases {
        let api = match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => all.clone(),
        };
        let mut lp = ListParams::default().limit(limit);
        if let Some(s) = selector {
            lp = lp.labels(s);
        }
        let got = page_all(&api, lp).await;
        assert_eq!(
            got,
            (want, remaining, pages),
            "limit {limit}, selector {selector:?}, namespace {ns:?}"
        );
    }
    // The neighbouring kind is listed on its own, just as completely.
    let secrets: Api<Secret> = Api::all(client);
    let (names, _, _) = page_all(&secrets, ListParams::default().limit(5)).await;
    assert_eq!(names, expected(&NAMESPACES, false));
}
