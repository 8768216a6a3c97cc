use super::*;
use crate::authz::{Extra, Held};
use async_trait::async_trait;
use std::borrow::Cow;
use std::hash::BuildHasher;
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
        _w: &Identity<'_>,
        _a: &ResourceAttributes<'_>,
    ) -> Result<AccessDecision, AuthzError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(gate) = &self.gate {
            gate.acquire().await.expect("gate never closed").forget();
        }
        self.answer.clone()
    }
}

fn attrs(verb: &str) -> ResourceAttributes<'_> {
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
        reason: "".into(),
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

/// A reviewer whose answer the test changes between calls.
struct Switch {
    calls: AtomicUsize,
    /// Calls for the user (`Identity::default()`).
    user_calls: AtomicUsize,
    answer: Mutex<Result<AccessDecision, AuthzError>>,
}

#[async_trait]
impl AccessReviewer for Switch {
    async fn review(
        &self,
        _w: &Identity<'_>,
        _a: &ResourceAttributes<'_>,
    ) -> Result<AccessDecision, AuthzError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if _w.user.is_empty() {
            self.user_calls.fetch_add(1, Ordering::SeqCst);
        }
        self.answer.lock().unwrap().clone()
    }
}

/// Allowed TTL 1000 ms (rounds every 500 ms), denied TTL 200 ms.
fn switch() -> (Arc<Switch>, CachedReviewer, Metrics) {
    let inner = Arc::new(Switch {
        calls: AtomicUsize::new(0),
        user_calls: AtomicUsize::new(0),
        answer: Mutex::new(yes()),
    });
    let m = Metrics::new();
    let c = CachedReviewer::new(
        inner.clone(),
        Duration::from_millis(1000),
        Duration::from_millis(200),
        m.clone(),
    );
    (inner, c, m)
}

async fn at(ms: u64, start: Instant) {
    tokio::time::sleep_until(start + Duration::from_millis(ms)).await;
}

#[tokio::test(start_paused = true)]
async fn own_answers_in_use_are_refreshed_without_a_request() {
    let (inner, c, m) = switch();
    let t0 = Instant::now();
    let who = Identity::service_account("t", "t");
    let a = attrs("create");
    c.review(Role::Tether, &who, &a).await.unwrap();
    assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
    // No request between: the round at 500 ms asks again on its own.
    at(600, t0).await;
    assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
    let refreshed = m
        .access_reviews
        .with_label_values(&["tether", "allowed", "refresh"]);
    assert_eq!(refreshed.get(), 1);
    // Rounds at 500 and 1000 ms renewed it (read at 0 ms, within a TTL): past the first
    // answer's TTL the renewed one answers, with no round trip.
    at(1200, t0).await;
    assert!(c.review(Role::Tether, &who, &a).await.unwrap().allowed);
    assert_eq!(inner.calls.load(Ordering::SeqCst), 3);
    // Read at 1200 ms: renewed at 1500 and 2000 ms, not at 2500 (no read within a TTL),
    // so it expires at 3000 ms and the next read asks again.
    at(2600, t0).await;
    assert_eq!(inner.calls.load(Ordering::SeqCst), 5);
    assert_eq!(refreshed.get(), 4);
    at(3100, t0).await;
    c.review(Role::Tether, &who, &a).await.unwrap();
    assert_eq!(
        inner.calls.load(Ordering::SeqCst),
        6,
        "expired: asked again"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_never_extends_an_allow_beyond_its_ttl() {
    let (inner, c, _) = switch();
    let t0 = Instant::now();
    let who = Identity::service_account("t", "t");
    let a = attrs("patch");
    c.review(Role::Tether, &who, &a).await.unwrap();
    *inner.answer.lock().unwrap() = Err(AuthzError::Failed("down".into()));
    at(600, t0).await;
    assert_eq!(inner.calls.load(Ordering::SeqCst), 2, "the round asked");
    // Within the TTL of the last answer that was given: still allowed (documented).
    at(900, t0).await;
    assert!(c.review(Role::Tether, &who, &a).await.unwrap().allowed);
    // Past it: asked again, and the error is the answer (the caller fails closed).
    at(1100, t0).await;
    assert!(c.review(Role::Tether, &who, &a).await.is_err());
    assert_eq!(inner.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn a_refreshed_deny_replaces_the_allow_at_once() {
    let (inner, c, _) = switch();
    let t0 = Instant::now();
    let who = Identity::service_account("t", "t");
    let a = attrs("delete");
    c.review(Role::Tether, &who, &a).await.unwrap();
    *inner.answer.lock().unwrap() = Ok(AccessDecision {
        allowed: false,
        reason: "revoked".into(),
    });
    at(600, t0).await;
    let d = c.review(Role::Tether, &who, &a).await.unwrap();
    assert!(!d.allowed, "the allow cached at 0 ms is gone");
    assert_eq!(
        inner.calls.load(Ordering::SeqCst),
        2,
        "answered by the refresh"
    );
}

#[tokio::test(start_paused = true)]
async fn user_answers_are_not_refreshed() {
    let (inner, c, _) = switch();
    let t0 = Instant::now();
    // The refresher runs (tether's answer is renewed) but leaves the user's alone.
    c.review(
        Role::Tether,
        &Identity::service_account("t", "t"),
        &attrs("get"),
    )
    .await
    .unwrap();
    c.review(Role::User, &Identity::default(), &attrs("create"))
        .await
        .unwrap();
    at(1600, t0).await;
    assert_eq!(inner.user_calls.load(Ordering::SeqCst), 1);
    assert!(
        inner.calls.load(Ordering::SeqCst) > 2,
        "tether's was renewed"
    );
}

#[tokio::test]
async fn review_metrics_count_each_label_set_under_its_own_labels_and_add_no_other_series() {
    use prometheus::core::Collector;
    let series = |m: &Metrics| {
        (
            m.access_reviews.collect()[0].get_metric().len(),
            m.access_review_duration.collect()[0].get_metric().len(),
        )
    };
    let m = Metrics::new();
    let rm = ReviewMetrics::new(m.clone());
    rm.count(Role::User, &yes(), Source::Hit);
    // Only the label set counted is exported, as with a lookup per review.
    assert_eq!(series(&m), (1, 0));

    let m = Metrics::new();
    let rm = ReviewMetrics::new(m.clone());
    let no = Ok(AccessDecision {
        allowed: false,
        reason: "no".into(),
    });
    let answers = [
        ("allowed", yes()),
        ("denied", no),
        ("error", Err(AuthzError::Timeout(5))),
    ];
    // Each label set is counted a different number of times, so crossed wires would show.
    let mut want = Vec::new();
    let mut times = 0;
    for role in [Role::User, Role::Tether] {
        for (result, answer) in &answers {
            for source in Source::ALL {
                times += 1;
                for _ in 0..times {
                    if source == Source::Refresh {
                        rm.count(role, answer, source);
                    } else {
                        rm.count_timed(role, answer, source, Instant::now());
                    }
                }
                want.push(([role.as_str(), *result, source.as_str()], times));
            }
        }
    }
    assert_eq!(series(&m), (LABEL_SETS, 18));
    for (labels, times) in want {
        assert_eq!(m.access_reviews.with_label_values(&labels).get(), times);
        let timed = m
            .access_review_duration
            .with_label_values(&labels)
            .get_sample_count();
        let want_timed = if labels[2] == "refresh" { 0 } else { times };
        assert_eq!(timed, want_timed, "{labels:?}");
    }
}

/// `review_all_now` for one check.
fn at_hand(
    c: &CachedReviewer,
    role: Role,
    who: &Identity<'_>,
    a: &ResourceAttributes<'_>,
) -> Option<Result<AccessDecision, AuthzError>> {
    c.review_all_now(&[(role, who, a.clone())]).pop().flatten()
}

#[tokio::test]
async fn answers_at_hand_come_without_waiting_and_are_counted_as_review_would() {
    let who = Identity::default();
    let a = attrs("create");
    let v = |m: &Metrics, role: &str, cache: &str| {
        m.access_reviews
            .with_label_values(&[role, "allowed", cache])
            .get()
    };
    // Caching on: nothing at hand until an answer is cached, then a hit.
    let (inner, c, m) = setup(yes(), None, 10_000, 10_000);
    assert!(at_hand(&c, Role::User, &who, &a).is_none());
    assert_eq!(v(&m, "user", "miss") + v(&m, "user", "hit"), 0);
    c.review(Role::User, &who, &a).await.unwrap();
    let now = at_hand(&c, Role::User, &who, &a).expect("cached");
    assert!(now.unwrap().allowed);
    assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
    assert_eq!((v(&m, "user", "miss"), v(&m, "user", "hit")), (1, 1));
    // A batch: each check answered in order, at hand or not; only the answered ones are
    // counted (and timed), once each.
    let other = attrs("delete");
    let batch = c.review_all_now(&[
        (Role::User, &who, a.clone()),
        (Role::User, &who, other),
        (Role::User, &who, a.clone()),
    ]);
    assert_eq!(
        batch.iter().map(Option::is_some).collect::<Vec<_>>(),
        [true, false, true]
    );
    assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
    assert_eq!((v(&m, "user", "miss"), v(&m, "user", "hit")), (1, 3));
    let seconds = m
        .access_review_duration
        .with_label_values(&["user", "allowed", "hit"]);
    assert_eq!(seconds.get_sample_count(), 3);
    // Caching off, a reviewer that must ask: nothing at hand, nothing counted.
    let (inner, c, m) = setup(yes(), None, 0, 0);
    assert!(at_hand(&c, Role::Tether, &who, &a).is_none());
    assert_eq!(inner.calls.load(Ordering::SeqCst), 0);
    assert_eq!(v(&m, "tether", "miss"), 0);
    // Caching off, a local reviewer: answered now, counted as the miss `review` counts.
    let m = Metrics::new();
    let c = CachedReviewer::new(
        Arc::new(crate::authz::AllowAll),
        Duration::ZERO,
        Duration::ZERO,
        m.clone(),
    );
    let now = at_hand(&c, Role::Tether, &who, &a).expect("local");
    assert_eq!(now, c.review(Role::Tether, &who, &a).await);
    assert_eq!(v(&m, "tether", "miss"), 2);
    let seconds = m
        .access_review_duration
        .with_label_values(&["tether", "allowed", "miss"]);
    assert_eq!(seconds.get_sample_count(), 2);
}

#[tokio::test]
async fn a_user_borrowed_from_one_request_hits_the_answer_kept_for_another() {
    let (inner, c, _m) = setup(yes(), None, 10_000, 10_000);
    // Two requests' userInfo: equal text in separate buffers, as two bodies would hold it.
    let parts = |extra_value: &str| {
        let groups: Vec<Cow<'static, str>> = vec![
            "devs".to_string().into(),
            "system:authenticated".to_string().into(),
        ];
        let extra: Extra<'static> = [(
            Cow::Owned("scopes".to_string()),
            vec![Cow::Owned(extra_value.to_string())],
        )]
        .into();
        (groups, extra)
    };
    fn user<'a>((groups, extra): &'a (Vec<Cow<'static, str>>, Extra<'static>)) -> Identity<'a> {
        Identity {
            user: "alice".into(),
            uid: Some("u-1".into()),
            groups: Held::Borrowed(groups.as_slice()),
            extra: Held::Borrowed(extra),
        }
    }
    let (first, second, other) = (parts("a"), parts("a"), parts("b"));
    c.review(Role::User, &user(&first), &attrs("create"))
        .await
        .unwrap();
    drop(first);
    let probes = [(Role::User, &user(&second), attrs("create"))];
    let hit = c.review_all_now(&probes);
    assert!(matches!(hit.as_slice(), [Some(Ok(_))]), "{hit:?}");
    assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
    // Another `extra` value is another user as far as access is concerned.
    let probes = [(Role::User, &user(&other), attrs("create"))];
    assert!(matches!(c.review_all_now(&probes).as_slice(), [None]));
    // And the owned copy the cache keeps equals (and hashes as) the borrowed original.
    let who = user(&second);
    let kept = who.to_owned_static();
    assert_eq!(kept, who);
    assert!(matches!(kept.groups, Held::Owned(_)) && matches!(kept.extra, Held::Owned(_)));
    let hash = |i: &Identity<'_>| foldhash::quality::FixedState::with_seed(7).hash_one(i);
    assert_eq!(hash(&kept), hash(&who));
}
