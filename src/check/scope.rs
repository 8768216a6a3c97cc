//! Which webhooks the API server would call for an object, from the same settings as the
//! chart's webhook configurations: tether's two kinds go to both webhooks, the `plainKinds`
//! go to the mutating one when labelled `tether.dev/target`, and nothing in a skipped
//! namespace goes anywhere. Pure: data in, a decision out.

use std::collections::BTreeSet;

use serde_json::Value;

/// A `plainKinds` entry of the chart: the API group and plural the mutating webhook matches
/// (with `matchPolicy: Equivalent`, any version of it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlainKind {
    pub api_group: String,
    #[serde(default)]
    pub api_version: String,
    pub resource: String,
}

/// The chart's default `plainKinds` (a test keeps them equal to charts/tether/values.yaml).
pub fn default_plain_kinds() -> Vec<PlainKind> {
    [
        ("autoscaling", "v2", "horizontalpodautoscalers"),
        ("policy", "v1", "poddisruptionbudgets"),
        ("keda.sh", "v1alpha1", "scaledobjects"),
        ("autoscaling.k8s.io", "v1", "verticalpodautoscalers"),
    ]
    .into_iter()
    .map(|(g, v, r)| PlainKind {
        api_group: g.into(),
        api_version: v.into(),
        resource: r.into(),
    })
    .collect()
}

/// What the webhook configurations match.
#[derive(Debug, Clone, PartialEq)]
pub struct Scope {
    /// Namespaces no webhook sees (kube-system, the release namespace, excludeNamespaces).
    pub skip_namespaces: BTreeSet<String>,
    pub plain_kinds: Vec<PlainKind>,
}

/// Where the API server would send the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Mutating then validating webhook (AttachedResource, AppDomain).
    Both,
    /// Mutating webhook only (a labelled plain kind).
    MutateOnly,
    /// No webhook: the reason says why.
    Skipped(String),
}

pub const GROUP: &str = "tether.dev";
pub const VERSION: &str = "v1alpha1";
pub const KINDS: [&str; 2] = ["AttachedResource", "AppDomain"];

impl Scope {
    /// `plural` is the object's resource name (from discovery), when known.
    pub fn route(&self, obj: &Value, namespace: &str, plural: Option<&str>) -> Route {
        let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let (group, version) = av.split_once('/').unwrap_or(("", av));
        if self.skip_namespaces.contains(namespace) {
            return Route::Skipped(format!(
                "namespace {namespace:?} is excluded by the webhook configurations' namespaceSelector (kube-system, tether's own namespace and namespaceSelector.excludeNamespaces); tether never sees it"
            ));
        }
        if group == GROUP {
            if KINDS.contains(&kind) {
                if version == VERSION {
                    return Route::Both;
                }
                return Route::Skipped(format!(
                    "{GROUP} serves {kind} as {VERSION} only, not {version:?}: the API server would refuse the object; use apiVersion: {GROUP}/{VERSION}"
                ));
            }
            return Route::Skipped(format!(
                "{GROUP} has no kind {kind:?}{}: the API server would refuse the object",
                suggest(kind, &KINDS)
                    .map(|s| format!(" (did you mean {s}?)"))
                    .unwrap_or_default()
            ));
        }
        if let Some(s) = suggest(kind, &KINDS) {
            return Route::Skipped(format!(
                "kind {kind:?} ({av}) is not sent to tether; did you mean {s} ({GROUP}/{VERSION})?"
            ));
        }
        let plain = plural.and_then(|p| {
            self.plain_kinds
                .iter()
                .find(|k| k.api_group == group && k.resource == p)
        });
        match plain {
            Some(_) => {
                if obj
                    .pointer("/metadata/labels")
                    .and_then(Value::as_object)
                    .is_some_and(|l| l.contains_key(crate::policy::plain::TARGET_LABEL))
                {
                    Route::MutateOnly
                } else {
                    Route::Skipped(format!(
                        "no {} label: the mutating webhook's objectSelector does not match",
                        crate::policy::plain::TARGET_LABEL
                    ))
                }
            }
            None => Route::Skipped(format!(
                "{kind} ({}) is not in tether's webhook rules (AttachedResource, AppDomain, and plainKinds with the {} label)",
                if av.is_empty() { "no apiVersion" } else { av },
                crate::policy::plain::TARGET_LABEL
            )),
        }
    }
}

/// The closest candidate to a misspelt name, if close enough to be a typo.
pub fn suggest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    if name.is_empty() {
        return None;
    }
    candidates
        .iter()
        .filter(|c| **c != name)
        .map(|c| {
            (
                strsim::jaro_winkler(&name.to_ascii_lowercase(), &c.to_ascii_lowercase()),
                *c,
            )
        })
        .filter(|(score, _)| *score >= 0.9)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope() -> Scope {
        Scope {
            skip_namespaces: ["kube-system".to_string(), "tether-system".to_string()].into(),
            plain_kinds: default_plain_kinds(),
        }
    }

    #[test]
    fn routes() {
        let s = scope();
        let cases: Vec<(Value, &str, Option<&str>, &str)> = vec![
            (json!({"apiVersion": "tether.dev/v1alpha1", "kind": "AttachedResource"}), "a", None, "both"),
            (json!({"apiVersion": "tether.dev/v1alpha1", "kind": "AppDomain"}), "a", None, "both"),
            (json!({"apiVersion": "tether.dev/v1alpha1", "kind": "AttachedResourse"}), "a", None,
             "tether.dev has no kind \"AttachedResourse\" (did you mean AttachedResource?): the API server would refuse the object"),
            (json!({"apiVersion": "tether.dev/v1", "kind": "AppDomain"}), "a", None,
             "tether.dev serves AppDomain as v1alpha1 only, not \"v1\": the API server would refuse the object; use apiVersion: tether.dev/v1alpha1"),
            (json!({"apiVersion": "v1", "kind": "Attachedresource"}), "a", None,
             "kind \"Attachedresource\" (v1) is not sent to tether; did you mean AttachedResource (tether.dev/v1alpha1)?"),
            (json!({"apiVersion": "tether.dev/v1alpha1", "kind": "AttachedResource"}), "kube-system", None,
             "namespace \"kube-system\" is excluded by the webhook configurations' namespaceSelector (kube-system, tether's own namespace and namespaceSelector.excludeNamespaces); tether never sees it"),
            (json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"labels": {"tether.dev/target": "web"}}}),
             "a", Some("horizontalpodautoscalers"), "mutate"),
            (json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"labels": {"tether.dev/target": "web"}}}),
             "a", Some("horizontalpodautoscalers"), "mutate"),
            (json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler"}), "a", Some("horizontalpodautoscalers"),
             "no tether.dev/target label: the mutating webhook's objectSelector does not match"),
            (json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"labels": {"tether.dev/target": "web"}}}), "a", Some("configmaps"),
             "ConfigMap (v1) is not in tether's webhook rules (AttachedResource, AppDomain, and plainKinds with the tether.dev/target label)"),
        ];
        crate::table_test::each(cases, |(obj, ns, plural, want)| {
            let got = match s.route(&obj, ns, plural) {
                Route::Both => "both".to_string(),
                Route::MutateOnly => "mutate".to_string(),
                Route::Skipped(r) => r,
            };
            assert_eq!(got, want, "{obj}");
        });
    }

    #[test]
    fn default_plain_kinds_are_the_charts() {
        let text = include_str!("../../charts/tether/values.yaml");
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).unwrap();
        let chart: Vec<PlainKind> = serde_yaml_ng::from_value(v["plainKinds"].clone()).unwrap();
        assert_eq!(chart, default_plain_kinds());
    }
}
