//! Status helpers every reconciler shares: the time stamp format of `lastTransitionTime`, and
//! carrying it over from the previous status when a condition's status did not change
//! (Kubernetes API conventions: the time of the last *transition*, not of the last write).

use crate::crd::Condition;

/// Now, as Kubernetes writes `metav1.Time` (`2026-11-30T17:05:00Z`, whole seconds, UTC).
pub fn now_rfc3339() -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", now)
        .unwrap_or_else(|_| now.to_string())
}

/// `new` with `lastTransitionTime` taken from the condition of the same type in `old` when its
/// status is unchanged and it has one; `now` otherwise.
pub fn carry_transition_time(mut new: Condition, old: &[Condition], now: &str) -> Condition {
    new.last_transition_time = match old.iter().find(|o| o.type_ == new.type_) {
        Some(o) if o.status == new.status && o.last_transition_time.is_some() => {
            o.last_transition_time.clone()
        }
        _ => Some(now.to_string()),
    };
    new
}

/// [`carry_transition_time`] for each of `conds`.
pub fn carry_transition_times(
    conds: Vec<Condition>,
    old: &[Condition],
    now: &str,
) -> Vec<Condition> {
    conds
        .into_iter()
        .map(|c| carry_transition_time(c, old, now))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn c(type_: &str, status: &str, ltt: Option<&str>) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: "R".into(),
            message: "m".into(),
            last_transition_time: ltt.map(str::to_string),
            observed_generation: None,
        }
    }

    #[rstest]
    #[case::unchanged_keeps_old_time(
        c("Ready", "True", Some("2026-01-01T00:00:00Z")),
        "2026-01-01T00:00:00Z"
    )]
    #[case::changed_status_stamps_now(c("Ready", "False", Some("2026-01-01T00:00:00Z")), "NOW")]
    #[case::old_without_time_stamps_now(c("Ready", "True", None), "NOW")]
    #[case::other_type_stamps_now(c("Other", "True", Some("2026-01-01T00:00:00Z")), "NOW")]
    fn transition_time(#[case] old: Condition, #[case] want: &str) {
        let got = carry_transition_time(c("Ready", "True", None), &[old], "NOW");
        assert_eq!(got.last_transition_time.as_deref(), Some(want));
    }

    #[test]
    fn now_is_whole_seconds_utc() {
        let now = now_rfc3339();
        // 2026-11-30T17:05:00Z
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.ends_with('Z') && now.as_bytes()[10] == b'T', "{now}");
    }
}
