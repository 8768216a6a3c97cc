//! The label index: which stored objects carry a label `key=value`, per resource, in
//! (namespace, name) order.
//!
//! A LIST, WATCH or DELETE-collection whose label selector has an equality requirement reads
//! the objects this index names for it instead of every object of the resource (or of the
//! namespace), then applies the whole selector to each, as before: the result and its order
//! are the scan's. The controller-scale bench lists each AttachedResource's copies by label in
//! a namespace holding three copies per AttachedResource of that namespace, so a scan made
//! each of those LISTs cost O(objects in the namespace) under the store lock, and the no-op
//! pass O(n²/namespaces).

use std::collections::BTreeSet;
use std::ops::Bound;

use serde_json::Value;

use super::{meta, ObjKey};

/// One (resource, label, object) fact. Ordered by resource, label key and value, then
/// namespace and name: one label's objects are a contiguous, ordered range.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    group: String,
    plural: String,
    key: String,
    value: String,
    namespace: String,
    name: String,
}

#[derive(Debug, Default)]
pub(super) struct LabelIndex {
    entries: BTreeSet<Entry>,
}

/// The string-valued labels of an object (a selector matches only those).
fn labels_of(obj: &Value) -> Vec<(&str, &str)> {
    meta(obj)
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .map(|l| {
            l.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.as_str(), v)))
                .collect()
        })
        .unwrap_or_default()
}

impl LabelIndex {
    /// The object under `key` went from `old` to `new` (`None`: absent).
    pub(super) fn changed(&mut self, key: &ObjKey, old: Option<&Value>, new: Option<&Value>) {
        let old = old.map(labels_of).unwrap_or_default();
        let new = new.map(labels_of).unwrap_or_default();
        let entry = |(k, v): &(&str, &str)| Entry {
            group: key.group.clone(),
            plural: key.plural.clone(),
            key: (*k).to_string(),
            value: (*v).to_string(),
            namespace: key.namespace.clone(),
            name: key.name.clone(),
        };
        for gone in old.iter().filter(|l| !new.contains(l)) {
            self.entries.remove(&entry(gone));
        }
        for added in new.iter().filter(|l| !old.contains(l)) {
            self.entries.insert(entry(added));
        }
    }

    /// The (namespace, name) of the objects of `group`/`plural` labelled `key=value` (in one
    /// namespace when `namespace` is given), in order, from just after `after`.
    pub(super) fn labelled<'a>(
        &'a self,
        group: &str,
        plural: &str,
        (key, value): (&str, &str),
        namespace: Option<&str>,
        after: Option<(&str, &str)>,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let at = |ns: &str, name: &str| Entry {
            group: group.to_string(),
            plural: plural.to_string(),
            key: key.to_string(),
            value: value.to_string(),
            namespace: ns.to_string(),
            name: name.to_string(),
        };
        let start = at(namespace.unwrap_or(""), "");
        let lower = match after.map(|(ns, name)| at(ns, name)) {
            Some(a) if a >= start => Bound::Excluded(a),
            _ => Bound::Included(start.clone()),
        };
        let namespace = namespace.map(str::to_string);
        self.entries
            .range((lower, Bound::Unbounded))
            .take_while(move |e| {
                e.group == start.group
                    && e.plural == start.plural
                    && e.key == start.key
                    && e.value == start.value
                    && namespace.as_ref().is_none_or(|ns| &e.namespace == ns)
            })
            .map(|e| (e.namespace.as_str(), e.name.as_str()))
    }

    /// Entries held (for tests: the index follows the store).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cm(labels: Value) -> Value {
        json!({"metadata": {"name": "a", "namespace": "ns", "labels": labels}})
    }

    #[test]
    fn entries_follow_relabels_and_removals_and_ranges_stay_in_their_label_and_namespace() {
        let mut ix = LabelIndex::default();
        let a = ObjKey::new("", "configmaps", "ns", "a");
        let b = ObjKey::new("", "configmaps", "ns", "b");
        let c = ObjKey::new("", "configmaps", "other", "c");
        let pod = ObjKey::new("", "pods", "ns", "a");
        ix.changed(&a, None, Some(&cm(json!({"app": "web", "tier": "front"}))));
        ix.changed(&b, None, Some(&cm(json!({"app": "web", "n": 1}))));
        ix.changed(&c, None, Some(&cm(json!({"app": "web"}))));
        ix.changed(&pod, None, Some(&cm(json!({"app": "web"}))));
        assert_eq!(ix.len(), 5, "string-valued labels only");
        let web = |ix: &LabelIndex, ns: Option<&str>, after: Option<(&str, &str)>| -> Vec<String> {
            ix.labelled("", "configmaps", ("app", "web"), ns, after)
                .map(|(ns, name)| format!("{ns}/{name}"))
                .collect()
        };
        assert_eq!(web(&ix, Some("ns"), None), ["ns/a", "ns/b"]);
        assert_eq!(web(&ix, None, None), ["ns/a", "ns/b", "other/c"]);
        assert_eq!(web(&ix, None, Some(("ns", "a"))), ["ns/b", "other/c"]);
        assert_eq!(
            web(&ix, Some("ns"), Some(("ns", "b"))),
            Vec::<String>::new()
        );

        ix.changed(
            &a,
            Some(&cm(json!({"app": "web", "tier": "front"}))),
            Some(&cm(json!({"app": "db", "tier": "front"}))),
        );
        assert_eq!(web(&ix, Some("ns"), None), ["ns/b"]);
        ix.changed(&b, Some(&cm(json!({"app": "web", "n": 1}))), None);
        assert_eq!(web(&ix, None, None), ["other/c"]);
        assert_eq!(ix.len(), 4);
    }
}
