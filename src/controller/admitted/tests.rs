use super::*;
use crate::crd::TargetStatus;

fn skip() -> SkipNamespaces {
    SkipNamespaces::new(&["kube-system", " ", "ops"], "tether-system")
}

#[test]
fn skip_namespaces_always_include_tethers_own() {
    let s = skip();
    assert_eq!(
        s.iter().collect::<Vec<_>>(),
        ["kube-system", "ops", "tether-system"]
    );
    assert!(SkipNamespaces::new::<&str>(&[], "t").contains("t"));
}

#[test]
fn decision_table() {
    let kind_v = vec![Violation::forbidden(
        "spec.object.kind",
        "kind \"HorizontalPodAutoscaler\" may not be attached",
    )];
    let spec_v = vec![Violation::forbidden(
        "spec.object.spec.scaleTargetRef",
        "must be {}",
    )];
    let denied = vec![
        AccessAnswer::Allowed,
        AccessAnswer::Denied("delete horizontalpodautoscalers.autoscaling".into()),
    ];
    let failed = vec![AccessAnswer::Failed("timed out".into())];
    let ok = vec![AccessAnswer::Allowed; 5];
    let s = skip();
    type Row<'a> = (
        &'a str,
        Result<(), StampError>,
        &'a [Violation],
        &'a [AccessAnswer],
        &'a str,
    );
    let rows: Vec<Row> = vec![
        // Skipped namespaces win over everything, even a valid object.
        ("kube-system", Ok(()), &[], &ok, "Skip"),
        (
            "tether-system",
            Err(StampError::Missing),
            &kind_v,
            &[],
            "Skip",
        ),
        ("ops", Ok(()), &[], &denied, "Skip"),
        // The stamp comes before the kind rules.
        (
            "payments",
            Err(StampError::Missing),
            &kind_v,
            &[],
            "NotAdmitted",
        ),
        (
            "payments",
            Err(StampError::Mismatch),
            &[],
            &[],
            "StampMismatch",
        ),
        (
            "payments",
            Err(StampError::Malformed),
            &[],
            &[],
            "StampMismatch",
        ),
        (
            "payments",
            Err(StampError::UnknownKey("k1".into())),
            &[],
            &ok,
            "StampKeyRetired",
        ),
        // The kind rules before tether's access.
        ("payments", Ok(()), &kind_v, &denied, "KindNotAllowed"),
        ("payments", Ok(()), &spec_v, &[], "SpecNotAllowed"),
        ("payments", Ok(()), &[], &denied, "TetherForbidden"),
        // A denial outranks a review that could not run; a failure alone retries.
        ("payments", Ok(()), &[], &failed, "Retry"),
        ("payments", Ok(()), &[], &ok, "Act"),
        ("payments", Ok(()), &[], &[], "Act"),
    ];
    for (ns, stamp, violations, access, want) in rows {
        let got = decide(&Facts {
            namespace: ns,
            skip: &s,
            stamp: stamp.clone(),
            violations,
            access,
        });
        let label = match &got {
            Gate::Skip => "Skip",
            Gate::Act => "Act",
            Gate::Retry(_) => "Retry",
            Gate::Deny(d) => d.reason,
        };
        assert_eq!(label, want, "{ns} {stamp:?} {violations:?} {access:?}");
    }
}

#[test]
fn messages_say_why_and_what_to_do() {
    let s = skip();
    let msg = |stamp, violations: &[Violation], access: &[AccessAnswer]| match decide(&Facts {
        namespace: "payments",
        skip: &s,
        stamp,
        violations,
        access,
    }) {
        Gate::Deny(d) => d.message,
        other => panic!("{other:?}"),
    };
    let m = msg(Err(StampError::Missing), &[], &[]);
    assert!(m.contains("never reviewed"), "{m}");
    assert!(
        m.contains("kubectl annotate attachedresource <name> -n payments tether.dev/review=<now> --overwrite"),
        "{m}"
    );
    let m = msg(Err(StampError::UnknownKey("k1".into())), &[], &[]);
    assert!(m.contains("stamp key \"k1\""), "{m}");
    let m = msg(
        Ok(()),
        &[Violation::forbidden("spec.object.kind", "banned")],
        &[],
    );
    assert!(m.contains("spec.object.kind: banned"), "{m}");
    let m = msg(
        Ok(()),
        &[],
        &[AccessAnswer::Denied(
            "patch horizontalpodautoscalers.autoscaling in namespace \"payments\"".into(),
        )],
    );
    assert!(
        m.starts_with("tether's own service account may not patch horizontalpodautoscalers.autoscaling in namespace \"payments\""),
        "{m}"
    );
}

#[test]
fn denied_status_keeps_targets_and_says_what_was_left() {
    let target = TargetStatus {
        deployment: "w-v1".into(),
        version: "v1".into(),
        resource_name: "w-v1-scaler".into(),
        applied: true,
        message: String::new(),
        last_applied_hash: "h".into(),
        copy_generation: Some(1),
    };
    let old = AttachedResourceStatus {
        observed_generation: Some(1),
        targets: vec![target.clone()],
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "AllTargetsApplied".into(),
            message: "1 of 1 target(s) applied".into(),
            last_transition_time: Some("2026-01-01T00:00:00Z".into()),
            observed_generation: Some(1),
        }],
    };
    let d = Denial {
        reason: REASON_KIND_NOT_ALLOWED,
        message: "banned".into(),
    };
    let s1 = denied_status(&old, &d, 2, Some(1), "2026-02-02T00:00:00Z");
    assert_eq!(s1.targets, vec![target]);
    let ready = s1.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    let pd = s1
        .conditions
        .iter()
        .find(|c| c.type_ == POLICY_DENIED)
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "KindNotAllowed")
    );
    assert_eq!(
        (pd.status.as_str(), pd.reason.as_str()),
        ("True", "KindNotAllowed")
    );
    assert_eq!(
        pd.message,
        "tether refuses to act on it: banned; 2 existing copies left in place, not updated"
    );
    assert_eq!(
        ready.last_transition_time.as_deref(),
        Some("2026-02-02T00:00:00Z")
    );
    assert!(denial_changed(&old, &s1));
    // The same refusal again: identical status (no write), no new Event.
    let s2 = denied_status(&s1, &d, 2, Some(1), "2026-03-03T00:00:00Z");
    assert_eq!(s2, s1);
    assert!(!denial_changed(&s1, &s2));
    let s0 = denied_status(&old, &d, 0, Some(1), "t");
    assert!(s0.conditions[1].message.ends_with("; no copies exist"));
}
