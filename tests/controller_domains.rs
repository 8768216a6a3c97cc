//! The AppDomain → Knative DomainMapping reconciler (SPEC 6.2) against the fake API server:
//! `reconcile` called directly for each rule, and `run` driven end-to-end through watches.

#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;

use std::sync::Arc;
use std::time::Duration;

use fake_apiserver::{FakeApiServer, Fault};
use kube::api::{Api, DeleteParams};
use kube::runtime::controller::Action;
use serde_json::{json, Value};
use tether::controller::domains::{self, reasons};
use tether::controller::{Context, Settings};
use tether::crd::{AppDomain, Condition};
use tether::discovery::ApiResolver;
use tether::metrics::Metrics;

const NS: &str = "ext-runner";
const CDC_GROUP: &str = "networking.internal.knative.dev";
const KN_GROUP: &str = "serving.knative.dev";

async fn fake() -> FakeApiServer {
    let fake = FakeApiServer::start().await;
    fake.add_knative_resources();
    fake
}

async fn context(fake: &FakeApiServer, auto_create: bool) -> Arc<Context> {
    let client = fake.client().await;
    Arc::new(Context::new(
        client.clone(),
        Metrics::new(),
        Arc::new(ApiResolver::new(client)),
        Some("test".into()),
        Settings {
            auto_create_domain_claims: auto_create,
            resync: Duration::from_secs(300),
            ..Settings::default()
        },
    ))
}

fn domain_of(name: &str) -> String {
    format!("{name}--invoicing.apps.example.com")
}

/// Seeds an AppDomain `name` in `ns` (domain `<name>--invoicing.apps.example.com`, Knative
/// Service `runner`).
fn seed_appdomain(fake: &FakeApiServer, ns: &str, name: &str) {
    fake.insert(json!({
        "apiVersion": "tether.dev/v1alpha1",
        "kind": "AppDomain",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "tenantId": name,
            "extensionId": "invoicing",
            "serviceRef": {"name": "runner"},
            "domain": domain_of(name),
        },
    }));
}

fn seed_ksvc(fake: &FakeApiServer, ns: &str, name: &str) {
    fake.insert(json!({
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"template": {"spec": {"containers": [{"image": "example.com/runner"}]}}},
    }));
}

fn seed_claim(fake: &FakeApiServer, domain: &str, ns: &str, labels: Value) {
    fake.insert(json!({
        "apiVersion": "networking.internal.knative.dev/v1alpha1",
        "kind": "ClusterDomainClaim",
        "metadata": {"name": domain, "labels": labels},
        "spec": {"namespace": ns},
    }));
}

fn claim(fake: &FakeApiServer, domain: &str) -> Option<Value> {
    fake.get(CDC_GROUP, "v1alpha1", "clusterdomainclaims", None, domain)
}

fn mapping(fake: &FakeApiServer, ns: &str, domain: &str) -> Option<Value> {
    fake.get(KN_GROUP, "v1beta1", "domainmappings", Some(ns), domain)
}

async fn get_apd(ctx: &Context, ns: &str, name: &str) -> Option<AppDomain> {
    Api::<AppDomain>::namespaced(ctx.client.clone(), ns)
        .get_opt(name)
        .await
        .expect("GET AppDomain")
}

/// Reconciles the AppDomain as it is now stored (as a watch would hand it over).
async fn reconcile(ctx: &Arc<Context>, ns: &str, name: &str) -> Result<Action, domains::Error> {
    let obj = get_apd(ctx, ns, name).await.expect("AppDomain exists");
    domains::reconcile(Arc::new(obj), ctx.clone()).await
}

/// Reconciles until a reconcile writes nothing (at most 5 rounds), then returns the AppDomain.
/// The first reconcile adds the finalizer and goes on with the patched object, so this is
/// usually 2 rounds; the last round proves idempotence (SPEC 6: nothing to change, nothing
/// written).
async fn settle(fake: &FakeApiServer, ctx: &Arc<Context>, ns: &str, name: &str) -> AppDomain {
    for _ in 0..5 {
        fake.clear_requests();
        reconcile(ctx, ns, name).await.expect("reconcile succeeds");
        if fake.write_count() == 0 {
            return get_apd(ctx, ns, name).await.unwrap();
        }
    }
    panic!(
        "reconcile of {ns}/{name} keeps writing: {:?}",
        fake.writes()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect::<Vec<_>>()
    );
}

fn condition(apd: &AppDomain, type_: &str) -> Condition {
    let status = apd.status.as_ref().expect("status written");
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {:?}", status.conditions))
        .clone()
}

fn events_for(fake: &FakeApiServer, name: &str) -> Vec<Value> {
    fake.list_all("events")
        .into_iter()
        .filter(|e| e["regarding"]["name"] == name)
        .collect()
}

fn counter(ctx: &Context, result: &str) -> u64 {
    ctx.metrics
        .reconcile_total
        .with_label_values(&[domains::NAME, result])
        .get()
}

#[tokio::test]
async fn missing_knative_service_sets_service_ready_false_and_stops() {
    let fake = fake().await;
    let ctx = context(&fake, true).await;
    seed_appdomain(&fake, NS, "nosvc");

    let apd = settle(&fake, &ctx, NS, "nosvc").await;
    let svc = condition(&apd, "ServiceReady");
    assert_eq!(
        (svc.status.as_str(), svc.reason.as_str()),
        ("False", reasons::SERVICE_NOT_FOUND)
    );
    assert!(
        svc.message.contains(&format!("{NS}/runner")) && svc.message.contains("deploy it"),
        "message names the Service and what to do: {}",
        svc.message
    );
    let ready = condition(&apd, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", reasons::SERVICE_NOT_FOUND)
    );
    assert_eq!(condition(&apd, "DomainClaimed").status, "Unknown");
    assert_eq!(condition(&apd, "DomainMappingReady").status, "Unknown");
    assert!(ready.last_transition_time.is_some());
    let status = apd.status.as_ref().unwrap();
    assert_eq!(status.domain, domain_of("nosvc"));
    assert_eq!(status.observed_generation, Some(1));
    assert!(status.url.is_empty());
    assert!(
        apd.metadata
            .finalizers
            .as_deref()
            .unwrap_or_default()
            .contains(&"tether.dev/cleanup".to_string()),
        "finalizer added"
    );
    // Stopped at step 1: no claim, no mapping, even with auto-create on.
    assert!(claim(&fake, &domain_of("nosvc")).is_none());
    assert!(mapping(&fake, NS, &domain_of("nosvc")).is_none());
    // One Warning event telling the user, emitted once (not on the unchanged reconcile).
    let evs = events_for(&fake, "nosvc");
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(evs[0]["type"], "Warning");
    assert_eq!(evs[0]["reason"], reasons::SERVICE_NOT_FOUND);
    assert!(counter(&ctx, "success") >= 2);
    assert_eq!(counter(&ctx, "error"), 0);
}

#[tokio::test]
async fn missing_claim_without_auto_create_gives_an_applicable_manifest() {
    let fake = fake().await;
    let ctx = context(&fake, false).await;
    seed_ksvc(&fake, NS, "runner");
    seed_appdomain(&fake, NS, "manual");
    let domain = domain_of("manual");

    let apd = settle(&fake, &ctx, NS, "manual").await;
    assert_eq!(condition(&apd, "ServiceReady").status, "True");
    let claimed = condition(&apd, "DomainClaimed");
    assert_eq!(
        (claimed.status.as_str(), claimed.reason.as_str()),
        ("False", reasons::DOMAIN_CLAIM_MISSING)
    );
    assert!(claimed.message.contains("--auto-create-domain-claims"));
    assert_eq!(
        condition(&apd, "Ready").reason,
        reasons::DOMAIN_CLAIM_MISSING
    );
    assert!(
        claim(&fake, &domain).is_none(),
        "no claim without auto-create"
    );
    assert!(
        mapping(&fake, NS, &domain).is_none(),
        "no mapping before the claim"
    );

    // The message ends with a manifest that parses as the right ClusterDomainClaim.
    let at = claimed
        .message
        .find("apiVersion:")
        .expect("manifest in the message");
    let manifest: Value =
        serde_yaml_ng::from_str(&claimed.message[at..]).expect("manifest is YAML");
    assert_eq!(
        manifest,
        json!({
            "apiVersion": "networking.internal.knative.dev/v1alpha1",
            "kind": "ClusterDomainClaim",
            "metadata": {"name": domain},
            "spec": {"namespace": NS},
        })
    );

    // An administrator applies it: the next reconcile sees the claim and maps the domain.
    fake.insert(manifest);
    let apd = settle(&fake, &ctx, NS, "manual").await;
    let claimed = condition(&apd, "DomainClaimed");
    assert_eq!(
        (claimed.status.as_str(), claimed.reason.as_str()),
        ("True", reasons::DOMAIN_CLAIMED)
    );
    assert!(mapping(&fake, NS, &domain).is_some());

    // Deleting the AppDomain leaves the administrator's claim alone.
    Api::<AppDomain>::namespaced(ctx.client.clone(), NS)
        .delete("manual", &DeleteParams::default())
        .await
        .unwrap();
    reconcile(&ctx, NS, "manual").await.unwrap();
    assert!(
        get_apd(&ctx, NS, "manual").await.is_none(),
        "finalizer removed"
    );
    assert!(
        claim(&fake, &domain).is_some(),
        "a claim tether did not create survives"
    );
}

#[tokio::test]
async fn auto_create_makes_the_claim_then_the_mapping() {
    let fake = fake().await;
    let ctx = context(&fake, true).await;
    seed_ksvc(&fake, NS, "runner");
    seed_appdomain(&fake, NS, "auto");
    let domain = domain_of("auto");

    fake.clear_requests();
    reconcile(&ctx, NS, "auto").await.unwrap();
    let writes: Vec<(String, String)> = fake
        .writes()
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    let pos = |method: &str, suffix: &str| {
        writes
            .iter()
            .position(|(m, p)| m == method && p.ends_with(suffix))
            .unwrap_or_else(|| panic!("no {method} …{suffix} in {writes:?}"))
    };
    let finalizer = pos("PATCH", "/appdomains/auto");
    let create_claim = pos("POST", "/clusterdomainclaims");
    let apply = pos("PATCH", &format!("/domainmappings/{domain}"));
    let status = pos("PATCH", "/appdomains/auto/status");
    assert!(
        finalizer < create_claim && create_claim < apply && apply < status,
        "finalizer, claim, mapping, status: {writes:?}"
    );
    let applies = fake.requests_matching(
        "PATCH",
        &format!("/apis/{KN_GROUP}/v1beta1/namespaces/{NS}/domainmappings/"),
    );
    assert_eq!(applies.len(), 1);
    assert_eq!(
        applies[0].query_param("fieldManager").as_deref(),
        Some("tether/ext-runner/auto")
    );
    assert_eq!(
        applies[0].content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );

    let c = claim(&fake, &domain).expect("claim created");
    assert_eq!(c["spec"]["namespace"], NS);
    assert_eq!(
        c["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "tether"
    );
    assert_eq!(
        c["metadata"]["labels"]["tether.dev/appdomain"],
        "ext-runner.auto"
    );

    let apd = get_apd(&ctx, NS, "auto").await.unwrap();
    let dm = mapping(&fake, NS, &domain).expect("mapping applied");
    assert_eq!(
        dm["spec"]["ref"],
        json!({"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "runner"})
    );
    let owners = dm["metadata"]["ownerReferences"].as_array().unwrap();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0]["kind"], "AppDomain");
    assert_eq!(owners[0]["apiVersion"], "tether.dev/v1alpha1");
    assert_eq!(owners[0]["name"], "auto");
    assert_eq!(owners[0]["uid"], json!(apd.metadata.uid.clone().unwrap()));
    assert_eq!(owners[0]["controller"], true);

    assert_eq!(condition(&apd, "DomainClaimed").status, "True");
    let dmr = condition(&apd, "DomainMappingReady");
    assert_eq!(
        (dmr.status.as_str(), dmr.reason.as_str()),
        ("Unknown", reasons::DOMAIN_MAPPING_PENDING)
    );
    assert_eq!(condition(&apd, "Ready").status, "Unknown");

    // Steady state: the next reconcile writes nothing (no create, no apply, no status).
    fake.clear_requests();
    reconcile(&ctx, NS, "auto").await.unwrap();
    assert_eq!(fake.write_count(), 0, "{:?}", fake.writes());

    // Drift is repaired: someone points the mapping elsewhere; tether re-applies.
    let mut drifted = mapping(&fake, NS, &domain).unwrap();
    drifted["spec"]["ref"]["name"] = json!("other");
    fake.insert(drifted);
    fake.clear_requests();
    reconcile(&ctx, NS, "auto").await.unwrap();
    assert_eq!(fake.write_count(), 1, "one apply: {:?}", fake.writes());
    assert_eq!(
        mapping(&fake, NS, &domain).unwrap()["spec"]["ref"]["name"],
        "runner"
    );
}

#[tokio::test]
async fn claim_held_by_another_namespace_is_domain_already_claimed() {
    let fake = fake().await;
    let ctx = context(&fake, true).await;
    seed_ksvc(&fake, NS, "runner");
    seed_appdomain(&fake, NS, "taken");
    let domain = domain_of("taken");
    // tether's claim, but for another namespace: neither ours to use nor to delete.
    seed_claim(
        &fake,
        &domain,
        "someone-else",
        json!({"app.kubernetes.io/managed-by": "tether"}),
    );

    let apd = settle(&fake, &ctx, NS, "taken").await;
    let claimed = condition(&apd, "DomainClaimed");
    assert_eq!(
        (claimed.status.as_str(), claimed.reason.as_str()),
        ("False", reasons::DOMAIN_ALREADY_CLAIMED)
    );
    assert!(
        claimed.message.contains("someone-else"),
        "{}",
        claimed.message
    );
    assert_eq!(
        condition(&apd, "Ready").reason,
        reasons::DOMAIN_ALREADY_CLAIMED
    );
    assert!(mapping(&fake, NS, &domain).is_none());
    assert_eq!(
        claim(&fake, &domain).unwrap()["spec"]["namespace"],
        "someone-else"
    );

    Api::<AppDomain>::namespaced(ctx.client.clone(), NS)
        .delete("taken", &DeleteParams::default())
        .await
        .unwrap();
    reconcile(&ctx, NS, "taken").await.unwrap();
    assert!(get_apd(&ctx, NS, "taken").await.is_none());
    assert_eq!(
        claim(&fake, &domain).expect("other namespace's claim survives")["spec"]["namespace"],
        "someone-else"
    );
}

#[tokio::test]
async fn ready_mapping_makes_the_appdomain_ready_with_its_url() {
    let fake = fake().await;
    let ctx = context(&fake, true).await;
    seed_ksvc(&fake, NS, "runner");
    seed_appdomain(&fake, NS, "live");
    let domain = domain_of("live");
    settle(&fake, &ctx, NS, "live").await;

    // Knative reconciles the mapping: not ready first, then ready.
    let mut dm = mapping(&fake, NS, &domain).unwrap();
    dm["status"] = json!({
        "conditions": [{"type": "Ready", "status": "False", "reason": "CertificateNotReady", "message": "waiting for the certificate"}],
    });
    fake.insert(dm.clone());
    let apd = settle(&fake, &ctx, NS, "live").await;
    let dmr = condition(&apd, "DomainMappingReady");
    assert_eq!(
        (dmr.status.as_str(), dmr.reason.as_str()),
        ("False", "CertificateNotReady")
    );
    assert!(dmr.message.contains("waiting for the certificate"));
    assert_eq!(condition(&apd, "Ready").reason, "CertificateNotReady");

    let url = format!("https://{domain}");
    dm["status"] = json!({
        "url": url,
        "conditions": [{"type": "Ready", "status": "True"}],
    });
    fake.insert(dm);
    let apd = settle(&fake, &ctx, NS, "live").await;
    let status = apd.status.as_ref().unwrap();
    assert_eq!(status.url, url);
    assert_eq!(status.domain, domain);
    assert_eq!(status.observed_generation, Some(1));
    for t in [
        "ServiceReady",
        "DomainClaimed",
        "DomainMappingReady",
        "Ready",
    ] {
        let c = condition(&apd, t);
        assert_eq!(c.status, "True", "{t}: {c:?}");
        assert!(!c.reason.is_empty() && !c.message.is_empty(), "{t}: {c:?}");
    }
    assert!(condition(&apd, "Ready").message.contains(&url));
    let normal: Vec<_> = events_for(&fake, "live")
        .into_iter()
        .filter(|e| e["type"] == "Normal")
        .collect();
    assert_eq!(normal.len(), 1, "{normal:?}");
    assert_eq!(normal[0]["reason"], "Ready");

    // Nothing changes → nothing written, no event.
    fake.clear_requests();
    reconcile(&ctx, NS, "live").await.unwrap();
    assert_eq!(fake.write_count(), 0, "{:?}", fake.writes());
}

#[tokio::test]
async fn delete_removes_tethers_claim_but_not_one_still_in_use() {
    let fake = fake().await;
    let ctx = context(&fake, true).await;
    seed_ksvc(&fake, NS, "runner");
    seed_appdomain(&fake, NS, "gone");
    let domain = domain_of("gone");
    settle(&fake, &ctx, NS, "gone").await;
    assert!(claim(&fake, &domain).is_some());
    assert!(mapping(&fake, NS, &domain).is_some());

    // A second AppDomain in the namespace with the same domain (same id pair): deleting the
    // first must not pull the claim from under the second.
    fake.insert(json!({
        "apiVersion": "tether.dev/v1alpha1",
        "kind": "AppDomain",
        "metadata": {"name": "twin", "namespace": NS},
        "spec": {"tenantId": "gone", "extensionId": "invoicing", "serviceRef": {"name": "runner"}, "domain": domain},
    }));
    settle(&fake, &ctx, NS, "twin").await;

    let api = Api::<AppDomain>::namespaced(ctx.client.clone(), NS);
    api.delete("gone", &DeleteParams::default()).await.unwrap();
    reconcile(&ctx, NS, "gone").await.unwrap();
    assert!(
        get_apd(&ctx, NS, "gone").await.is_none(),
        "finalizer removed"
    );
    assert!(
        claim(&fake, &domain).is_some(),
        "the twin still uses the claim"
    );

    let claim_uid = claim(&fake, &domain).unwrap()["metadata"]["uid"].clone();
    api.delete("twin", &DeleteParams::default()).await.unwrap();
    fake.clear_requests();
    reconcile(&ctx, NS, "twin").await.unwrap();
    assert!(get_apd(&ctx, NS, "twin").await.is_none());
    assert!(
        claim(&fake, &domain).is_none(),
        "tether's claim deleted with the last user"
    );
    let deletes = fake.requests_matching("DELETE", &format!("/apis/{CDC_GROUP}/"));
    assert_eq!(deletes.len(), 1);
    assert_eq!(
        deletes[0].body.as_ref().unwrap()["preconditions"]["uid"],
        claim_uid,
        "deleted with a uid precondition (never a claim recreated in between)"
    );
    // The mappings went with their owners (owner-reference GC).
    assert!(mapping(&fake, NS, &domain).is_none());
}

#[tokio::test]
async fn api_failure_is_an_error_in_status_event_and_metrics_with_backoff() {
    let fake = fake().await;
    let ctx = context(&fake, true).await;
    seed_ksvc(&fake, NS, "runner");
    seed_appdomain(&fake, NS, "flaky");
    fake.fail(
        &format!("/apis/{KN_GROUP}/v1/namespaces/{NS}/services/runner"),
        Fault::Status(500, "etcd is on fire".into()),
        Some(2),
    );

    let err = reconcile(&ctx, NS, "flaky").await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("Knative Service ext-runner/runner") && text.contains("etcd is on fire"),
        "{text}"
    );
    let apd = get_apd(&ctx, NS, "flaky").await.unwrap();
    let ready = condition(&apd, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", reasons::RECONCILE_ERROR)
    );
    assert!(ready.message.contains("etcd is on fire"));
    let warn: Vec<_> = events_for(&fake, "flaky")
        .into_iter()
        .filter(|e| e["reason"] == reasons::RECONCILE_ERROR)
        .collect();
    assert_eq!(warn.len(), 1);
    assert_eq!(warn[0]["type"], "Warning");
    assert_eq!(counter(&ctx, "error"), 1);

    // Backoff doubles per object and resets after a success.
    let obj = Arc::new(apd);
    assert_eq!(
        domains::error_policy(obj.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(1))
    );
    let err2 = reconcile(&ctx, NS, "flaky").await.unwrap_err();
    assert_eq!(
        domains::error_policy(obj.clone(), &err2, ctx.clone()),
        Action::requeue(Duration::from_secs(2))
    );
    assert_eq!(counter(&ctx, "error"), 2);

    // The fault is spent: the next reconcile succeeds and clears the error.
    let apd = settle(&fake, &ctx, NS, "flaky").await;
    assert_ne!(condition(&apd, "Ready").reason, reasons::RECONCILE_ERROR);
    assert_eq!(
        domains::error_policy(obj, &err2, ctx.clone()),
        Action::requeue(Duration::from_secs(1)),
        "backoff reset by the success"
    );
}

#[tokio::test]
async fn empty_domain_is_reported_not_reconciled() {
    let fake = fake().await;
    let ctx = context(&fake, true).await;
    seed_ksvc(&fake, NS, "runner");
    fake.insert(json!({
        "apiVersion": "tether.dev/v1alpha1",
        "kind": "AppDomain",
        "metadata": {"name": "nodomain", "namespace": NS},
        "spec": {"tenantId": "t", "extensionId": "e", "serviceRef": {"name": "runner"}},
    }));
    let apd = settle(&fake, &ctx, NS, "nodomain").await;
    let ready = condition(&apd, "Ready");
    assert_eq!(ready.reason, reasons::DOMAIN_NOT_SET);
    assert!(ready.message.contains("webhook"));
    assert!(fake.list_all("clusterdomainclaims").is_empty());
    assert!(fake.list_all("domainmappings").is_empty());
}

#[tokio::test]
async fn mapping_controlled_by_something_else_is_left_alone() {
    let fake = fake().await;
    fake.set_garbage_collection(false);
    let ctx = context(&fake, true).await;
    seed_ksvc(&fake, NS, "runner");
    seed_appdomain(&fake, NS, "clash");
    let domain = domain_of("clash");
    let foreign = json!({
        "apiVersion": "serving.knative.dev/v1beta1",
        "kind": "DomainMapping",
        "metadata": {
            "name": domain,
            "namespace": NS,
            "ownerReferences": [{"apiVersion": "example.com/v1", "kind": "Site", "name": "legacy", "uid": "u-legacy", "controller": true}],
        },
        "spec": {"ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "legacy"}},
    });
    fake.insert(foreign);

    let apd = settle(&fake, &ctx, NS, "clash").await;
    let dmr = condition(&apd, "DomainMappingReady");
    assert_eq!(
        (dmr.status.as_str(), dmr.reason.as_str()),
        ("False", reasons::DOMAIN_MAPPING_CONFLICT)
    );
    assert!(dmr.message.contains("Site \"legacy\""), "{}", dmr.message);
    let dm = mapping(&fake, NS, &domain).unwrap();
    assert_eq!(dm["spec"]["ref"]["name"], "legacy", "not taken over");
    assert!(fake
        .requests_matching("PATCH", &format!("/apis/{KN_GROUP}/v1beta1/"))
        .is_empty());
}

#[tokio::test]
async fn run_waits_for_knative_and_still_stops_on_shutdown() {
    let fake = FakeApiServer::start().await; // no Knative resources
    let ctx = context(&fake, true).await;
    seed_appdomain(&fake, NS, "early");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(domains::run(ctx.clone(), async move {
        let _ = stop_rx.await;
    }));
    // Wait for the event: run has asked discovery for Knative Serving (and was told no).
    eventually("the Knative discovery probe", || {
        !fake
            .requests_matching("GET", "/apis/serving.knative.dev/")
            .is_empty()
    })
    .await;
    assert!(!task.is_finished());
    assert_eq!(counter(&ctx, "success") + counter(&ctx, "error"), 0);
    assert_eq!(fake.write_count(), 0, "{:?}", fake.writes());
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("run returns after shutdown while waiting for Knative")
        .unwrap();
}

#[test]
fn appdomain_label_value_is_readable_or_hashed() {
    assert_eq!(domains::appdomain_label_value("ns", "app"), "ns.app");
    let longest = "a".repeat(60);
    assert_eq!(
        domains::appdomain_label_value("ns", &longest),
        format!("ns.{longest}"),
        "63 characters still fit"
    );
    // "ns." + 61 = 64 characters: the first 32 hex characters of SHA-256 of "ns/<name>".
    // Golden, from coreutils (more cases in tests/naming_golden.rs):
    //   printf '%s' "ns/$(printf 'a%.0s' $(seq 61))" | sha256sum | cut -c1-32
    assert_eq!(
        domains::appdomain_label_value("ns", &"a".repeat(61)),
        "77a61124e02c46f189ed1fe351dfe028"
    );
}

/// Polls `check` every 50 ms for up to 20 s.
async fn eventually<F>(what: &str, mut check: F)
where
    F: FnMut() -> bool,
{
    for _ in 0..400 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

fn stored_condition(fake: &FakeApiServer, name: &str, type_: &str) -> Option<(String, String)> {
    let apd = fake.get("tether.dev", "v1alpha1", "appdomains", Some(NS), name)?;
    apd["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or("").to_string(),
                c["reason"].as_str().unwrap_or("").to_string(),
            )
        })
}

#[tokio::test]
async fn run_reconciles_through_watches_end_to_end() {
    let fake = fake().await;
    let ctx = context(&fake, false).await;
    seed_appdomain(&fake, NS, "e2e");
    let domain = domain_of("e2e");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(domains::run(ctx.clone(), async move {
        let _ = stop_rx.await;
    }));

    // No Knative Service yet.
    eventually("ServiceNotFound", || {
        stored_condition(&fake, "e2e", "Ready")
            == Some(("False".into(), reasons::SERVICE_NOT_FOUND.into()))
    })
    .await;
    // The Service appears (watched): on to the claim, which is missing (no auto-create).
    seed_ksvc(&fake, NS, "runner");
    eventually("DomainClaimMissing", || {
        stored_condition(&fake, "e2e", "Ready")
            == Some(("False".into(), reasons::DOMAIN_CLAIM_MISSING.into()))
    })
    .await;
    // An administrator claims the domain (claims are watched): the mapping is applied.
    seed_claim(&fake, &domain, NS, json!({}));
    eventually("DomainMapping applied", || {
        mapping(&fake, NS, &domain).is_some()
    })
    .await;
    eventually("DomainMappingPending", || {
        stored_condition(&fake, "e2e", "DomainMappingReady")
            == Some(("Unknown".into(), reasons::DOMAIN_MAPPING_PENDING.into()))
    })
    .await;
    // Knative marks the mapping Ready (owned objects are watched): the AppDomain follows.
    let mut dm = mapping(&fake, NS, &domain).unwrap();
    dm["status"] = json!({"url": format!("https://{domain}"), "conditions": [{"type": "Ready", "status": "True"}]});
    fake.insert(dm);
    eventually("Ready", || {
        stored_condition(&fake, "e2e", "Ready") == Some(("True".into(), "Ready".into()))
    })
    .await;
    let url = fake
        .get("tether.dev", "v1alpha1", "appdomains", Some(NS), "e2e")
        .unwrap()["status"]["url"]
        .clone();
    assert_eq!(url, json!(format!("https://{domain}")));

    // Deleting goes through the finalizer; the administrator's claim stays.
    Api::<AppDomain>::namespaced(ctx.client.clone(), NS)
        .delete("e2e", &DeleteParams::default())
        .await
        .unwrap();
    eventually("AppDomain gone", || {
        fake.get("tether.dev", "v1alpha1", "appdomains", Some(NS), "e2e")
            .is_none()
    })
    .await;
    assert!(claim(&fake, &domain).is_some());
    assert!(counter(&ctx, "success") >= 4);

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("run returns after shutdown")
        .unwrap();
}
