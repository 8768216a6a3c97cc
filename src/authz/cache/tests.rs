use super::*;
use async_trait::async_trait;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts calls; when `gate` is set, each call waits for a permit, so a test decides when a
/// review answers instead of racing a sleep against it.
struct Counting {
    calls: AtomicUsize,
    answer: Result<AccessDecision, AuthzError>,
    gate: Option<Arc<tokio::sync::Semaphore>>,
}

#[async_trait]
impl AccessReviewer for Counting {
    async fn review(
        &self,
        _w: &Identity,
        _a: &ResourceAttributes,
    ) -> Result<AccessDecision, AuthzError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(gate) = &self.gate {
            gate.acquire().await.expect("gate never closed").forget();
        }
        self.answer.clone()
    }
}

fn attrs(verb: &str) -> ResourceAttributes {
    ResourceAttributes {
        verb: verb.into(),
        group: "autoscaling".into(),
        version: "v2".into(),
        resource: "horizontalpodautoscalers".into(),
        subresource: None,
        namespace: Some("payments".into()),
        name: None,
    }
}

/// A closed gate: reviews wait until the test adds permits.
fn closed_gate() -> Option<Arc<tokio::sync::Semaphore>> {
    Some(Arc::new(tokio::sync::Semaphore::new(0)))
}

fn setup(
    answer: Result<AccessDecision, AuthzError>,
    gate: Option<Arc<tokio::sync::Semaphore>>,
    allowed_ttl: u64,
    denied_ttl: u64,
) -> (Arc<Counting>, CachedReviewer, Metrics) {
    let inner = Arc::new(Counting {
        calls: AtomicUsize::new(0),
        answer,
        gate,
    });
    let m = Metrics::new();
    let c = CachedReviewer::new(
        inner.clone(),
        Duration::from_millis(allowed_ttl),
        Duration::from_millis(denied_ttl),
        m.clone(),
    );
    (inner, c, m)
}

fn yes() -> Result<AccessDecision, AuthzError> {
    Ok(AccessDecision {
        allowed: true,
        reason: String::new(),
    })
}

#[tokio::test]
async fn concurrent_identical_reviews_make_one_call_then_hit() {
    let gate = closed_gate();
    let (inner, c, m) = setup(yes(), gate.clone(), 10_000, 10_000);
    let who = Identity::service_account("t", "t");
    let a = attrs("create");
    // `join!` polls the 20 reviews first (all of them find or start the one review, which
    // waits at the gate), then opens the gate.
    let (all, ()) = tokio::join!(
        futures::future::join_all((0..20).map(|_| c.review(Role::Tether, &who, &a))),
        async { gate.as_ref().unwrap().add_permits(1) }
    );
    assert!(all.iter().all(|r| r.as_ref().unwrap().allowed));
    assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
    c.review(Role::Tether, &who, &a).await.unwrap();
    assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
    let v = |cache: &str| {
        m.access_reviews
            .with_label_values(&["tether", "allowed", cache])
            .get()
    };
    assert_eq!((v("miss"), v("shared"), v("hit")), (1, 19, 1));
    // A different question is a different key.
    gate.as_ref().unwrap().add_permits(1);
    c.review(Role::Tether, &who, &attrs("delete"))
        .await
        .unwrap();
    assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn errors_are_never_cached_and_ttls_expire() {
    let (inner, c, m) = setup(Err(AuthzError::Failed("boom".into())), None, 10_000, 10_000);
    let who = Identity::default();
    assert!(c.review(Role::User, &who, &attrs("create")).await.is_err());
    assert!(c.review(Role::User, &who, &attrs("create")).await.is_err());
    assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        m.access_reviews
            .with_label_values(&["user", "error", "miss"])
            .get(),
        2
    );

    let no = Ok(AccessDecision {
        allowed: false,
        reason: "no".into(),
    });
    let ttl = Duration::from_millis(500);
    let (inner, c, _) = setup(no, None, 10_000, ttl.as_millis() as u64);
    let first = Instant::now();
    c.review(Role::User, &who, &attrs("create")).await.unwrap();
    c.review(Role::User, &who, &attrs("create")).await.unwrap();
    // Only a stall longer than the TTL between the two calls could make the second a miss.
    if first.elapsed() < ttl {
        assert_eq!(
            inner.calls.load(Ordering::SeqCst),
            1,
            "the denial was cached"
        );
    }
    // The entry expires: wait for the observable event (a new call to the reviewer) rather
    // than sleeping a fixed time and hoping the clock moved far enough.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = inner.calls.load(Ordering::SeqCst);
        c.review(Role::User, &who, &attrs("create")).await.unwrap();
        if inner.calls.load(Ordering::SeqCst) > before {
            break;
        }
        assert!(Instant::now() < deadline, "the cached denial never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(first.elapsed() >= ttl, "re-reviewed before the TTL ran out");
}

#[tokio::test]
async fn a_cancelled_first_caller_still_fills_the_cache() {
    let gate = closed_gate();
    let (inner, c, m) = setup(yes(), gate.clone(), 10_000, 10_000);
    let who = Identity::default();
    let a = attrs("get");
    // The only caller gives up (its budget ran out) while the review waits at the gate.
    let gave_up =
        tokio::time::timeout(Duration::from_millis(5), c.review(Role::User, &who, &a)).await;
    assert!(gave_up.is_err(), "the review must outlive the caller here");
    assert_eq!(c.in_flight(), 1);
    gate.as_ref().unwrap().add_permits(1);
    // Nobody asks again: the review still runs to completion on its own, fills the
    // cache and leaves nothing in flight (issue 11 defect 7: the entry used to stay in
    // the in-flight map forever, holding a future nobody polled).
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.in_flight() > 0 {
        assert!(
            Instant::now() < deadline,
            "the in-flight entry was never removed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(c.cached(), 1, "the answer was cached");
    assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
    // The next caller is answered from the cache, without another call.
    c.review(Role::User, &who, &a).await.unwrap();
    assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        m.access_reviews
            .with_label_values(&["user", "allowed", "hit"])
            .get(),
        1
    );
}

#[tokio::test]
async fn a_second_caller_joins_the_review_a_cancelled_caller_started() {
    let gate = closed_gate();
    let (inner, c, _) = setup(yes(), gate.clone(), 10_000, 10_000);
    let who = Identity::default();
    let a = attrs("list");
    let gave_up =
        tokio::time::timeout(Duration::from_millis(5), c.review(Role::User, &who, &a)).await;
    assert!(gave_up.is_err(), "the review waits at the gate");
    assert_eq!(c.in_flight(), 1, "the abandoned review is still running");
    // On this single-threaded test runtime the review cannot finish before the second
    // caller is polled: it joins the running review.
    let (second, ()) = tokio::join!(c.review(Role::User, &who, &a), async {
        gate.as_ref().unwrap().add_permits(1)
    });
    second.unwrap();
    assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
    assert_eq!(c.in_flight(), 0);
}
