//! Unknown fields in tether's own kinds, as kubectl's strict field validation reports them:
//! the object is walked against the CRD's OpenAPI schema (the one `tether crds` prints).

use kube::CustomResourceExt;
use serde_json::Value;

use crate::crd::{AppDomain, AttachedResource};

/// The `openAPIV3Schema` of one of tether's kinds.
fn schema_of(kind: &str) -> Option<Value> {
    let crd = match kind {
        "AttachedResource" => AttachedResource::crd(),
        "AppDomain" => AppDomain::crd(),
        _ => return None,
    };
    let v = serde_json::to_value(crd).ok()?;
    v.pointer("/spec/versions/0/schema/openAPIV3Schema")
        .cloned()
}

/// `spec.workloadref: unknown field, did you mean workloadRef?` lines, at most `max`.
pub fn unknown_fields(kind: &str, obj: &Value, max: usize) -> Vec<(String, String)> {
    let Some(schema) = schema_of(kind) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let Some(map) = obj.as_object() else {
        return out;
    };
    let props = schema.get("properties").and_then(Value::as_object);
    for (k, v) in map {
        // Every object has these; metadata is checked by the API server itself.
        if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        match props.and_then(|p| p.get(k)) {
            Some(s) => walk(s, v, k, &mut out, max),
            None => push(&mut out, max, k, props),
        }
    }
    out
}

fn push(
    out: &mut Vec<(String, String)>,
    max: usize,
    path: &str,
    props: Option<&serde_json::Map<String, Value>>,
) {
    if out.len() >= max {
        return;
    }
    let name = path.rsplit('.').next().unwrap_or(path);
    let known: Vec<&str> = props
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let hint = super::scope::suggest(name, &known)
        .map(|s| format!(", did you mean {s}?"))
        .unwrap_or_else(|| {
            if known.is_empty() {
                String::new()
            } else {
                format!(" (known fields: {})", known.join(", "))
            }
        });
    out.push((path.to_string(), format!("unknown field{hint}")));
}

fn walk(schema: &Value, v: &Value, at: &str, out: &mut Vec<(String, String)>, max: usize) {
    if out.len() >= max
        || schema
            .get("x-kubernetes-preserve-unknown-fields")
            .and_then(Value::as_bool)
            == Some(true)
    {
        return;
    }
    match v {
        Value::Object(map) => {
            let Some(props) = schema.get("properties").and_then(Value::as_object) else {
                return; // a free-form map (additionalProperties): any key goes
            };
            for (k, child) in map {
                let path = format!("{at}.{k}");
                match props.get(k) {
                    Some(s) => walk(s, child, &path, out, max),
                    None => push(out, max, &path, Some(props)),
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(s, item, &format!("{at}[{i}]"), out, max);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_named_with_a_suggestion() {
        let obj = json!({"apiVersion": "tether.dev/v1alpha1", "kind": "AttachedResource",
            "metadata": {"name": "x", "whatever": 1},
            "spec": {"workloadref": {"name": "w"}, "object": {"anything": {"goes": 1}}},
            "stauts": {}});
        assert_eq!(
            unknown_fields("AttachedResource", &obj, 10),
            vec![
                (
                    "spec.workloadref".to_string(),
                    "unknown field, did you mean workloadRef?".to_string()
                ),
                (
                    "stauts".to_string(),
                    "unknown field, did you mean status?".to_string()
                ),
            ]
        );
        let obj = json!({"spec": {"tenantId": "t", "extensionId": "e", "serviceRef": {"nmae": "r"}, "zzz": 1}});
        assert_eq!(
            unknown_fields("AppDomain", &obj, 10),
            vec![
                (
                    "spec.serviceRef.nmae".to_string(),
                    "unknown field, did you mean name?".to_string()
                ),
                (
                    "spec.zzz".to_string(),
                    "unknown field (known fields: domain, extensionId, serviceRef, tenantId)"
                        .to_string()
                ),
            ]
        );
        assert!(unknown_fields("ConfigMap", &obj, 10).is_empty());
    }
}
