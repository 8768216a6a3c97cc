//! API discovery as admission and the controller use it ([`ApiResolver`]) against the fake
//! API server: a burst of lookups of an unknown apiVersion costs one discovery call while the
//! miss is fresh, a CRD installed later is found once the miss expires, and the cache has a
//! bound however many distinct apiVersions callers name (issue 11 defect 9).

#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;

use std::time::{Duration, Instant};

use fake_apiserver::{FakeApiServer, ALL_VERBS};
use tether::discovery::{ApiResolver, DiscoveryLimits, KindResolver, ResolveError};

fn calls(fake: &FakeApiServer, path: &str) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == path)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_lookups_of_an_unknown_api_version_make_one_discovery_call() {
    let fake = FakeApiServer::start().await;
    let resolver = ApiResolver::new(fake.client().await);
    fake.clear_requests();
    for _ in 0..20 {
        let e = resolver.resolve("example.org", "v1", "Thing").await;
        assert!(matches!(e, Err(ResolveError::Unknown(_))), "{e:?}");
    }
    assert_eq!(
        calls(&fake, "/apis/example.org/v1"),
        1,
        "sequential lookups"
    );

    // Concurrent lookups of another unknown group/version share one call too.
    let all =
        futures::future::join_all((0..20).map(|_| resolver.resolve("example.net", "v2", "Thing")))
            .await;
    assert!(all
        .iter()
        .all(|r| matches!(r, Err(ResolveError::Unknown(_)))));
    assert_eq!(
        calls(&fake, "/apis/example.net/v2"),
        1,
        "concurrent lookups"
    );

    // A kind missing from a served group/version is a miss too.
    for _ in 0..10 {
        let e = resolver.resolve("autoscaling", "v2", "Autoscaler").await;
        assert!(matches!(e, Err(ResolveError::Unknown(_))), "{e:?}");
    }
    assert_eq!(calls(&fake, "/apis/autoscaling/v2"), 1, "unknown kind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crd_installed_after_a_miss_is_found_once_the_miss_expires() {
    let fake = FakeApiServer::start().await;
    let resolver = ApiResolver::with_limits(
        fake.client().await,
        DiscoveryLimits {
            miss_ttl: Duration::from_millis(300),
            ..DiscoveryLimits::default()
        },
    );
    assert!(resolver
        .resolve("example.com", "v1", "Widget")
        .await
        .is_err());
    let installed = Instant::now();
    fake.add_resource("example.com", "v1", "Widget", "widgets", true, ALL_VERBS);
    let deadline = installed + Duration::from_secs(10);
    let info = loop {
        match resolver.resolve("example.com", "v1", "Widget").await {
            Ok(info) => break info,
            Err(e) => {
                assert!(Instant::now() < deadline, "never found: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(info.plural, "widgets");
    assert!(
        installed.elapsed() >= Duration::from_millis(250),
        "the miss was answered from the cache while fresh"
    );
    // Hits do not ask again.
    fake.clear_requests();
    for _ in 0..5 {
        resolver
            .resolve("example.com", "v1", "Widget")
            .await
            .unwrap();
    }
    assert_eq!(calls(&fake, "/apis/example.com/v1"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_never_holds_more_than_its_bound() {
    let fake = FakeApiServer::start().await;
    let resolver = ApiResolver::with_limits(
        fake.client().await,
        DiscoveryLimits {
            max_group_versions: 8,
            ..DiscoveryLimits::default()
        },
    );
    for i in 0..40 {
        let _ = resolver
            .resolve(&format!("g{i}.example.org"), "v1", "Thing")
            .await;
        assert!(resolver.cached_group_versions() <= 8);
    }
    assert_eq!(resolver.cached_group_versions(), 8);
    // Known kinds still resolve (and are cached) after the churn.
    let hpa = resolver
        .resolve("autoscaling", "v2", "HorizontalPodAutoscaler")
        .await
        .unwrap();
    assert_eq!(hpa.plural, "horizontalpodautoscalers");
    assert!(resolver.cached_group_versions() <= 8);

    // A group or version no cluster could serve is refused without a call or an entry.
    fake.clear_requests();
    let long_group = format!("{}.example.org", "g".repeat(300));
    let e = resolver.resolve(&long_group, "v1", "Thing").await;
    assert!(matches!(e, Err(ResolveError::Unknown(_))), "{e:?}");
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
}
