//! The custom resources (SPEC 3), generated from these types by kube's `CustomResource`
//! derive. `tether crds` prints them; the copies in `charts/tether/crds/` and
//! `webhook-config/` are generated from it and a test fails when they drift.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Kubernetes-style condition.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Attach one object to every version of a workload.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "tether.dev",
    version = "v1alpha1",
    kind = "AttachedResource",
    namespaced,
    shortname = "atr",
    status = "AttachedResourceStatus",
    printcolumn = r#"{"name":"Workload","type":"string","jsonPath":".spec.workloadRef.name"}"#,
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".spec.object.kind"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AttachedResourceSpec {
    /// The workload whose versions (Deployments labelled tether.dev/workload=<name>) each get
    /// a copy. Immutable.
    pub workload_ref: WorkloadRef,
    /// The object to attach, any namespaced kind. `spec.scaleTargetRef: {}` and
    /// `spec.selector.matchLabels: {}` ask tether to fill those in per version.
    #[schemars(schema_with = "preserve_unknown_object")]
    pub object: serde_json::Value,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
pub struct WorkloadRef {
    /// The workload name (value of the tether.dev/workload label on its Deployments).
    pub name: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttachedResourceStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub targets: Vec<TargetStatus>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetStatus {
    pub deployment: String,
    pub version: String,
    pub resource_name: String,
    pub applied: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_applied_hash: String,
    /// The copy's `metadata.generation` right after tether applied it: a later spec change
    /// by anyone moves it, so the next reconcile re-applies (drift repair).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_generation: Option<i64>,
}

/// A per-install application domain served by a Knative Service.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "tether.dev",
    version = "v1alpha1",
    kind = "AppDomain",
    namespaced,
    shortname = "apd",
    status = "AppDomainStatus",
    printcolumn = r#"{"name":"Domain","type":"string","jsonPath":".spec.domain"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AppDomainSpec {
    /// Tenant id (a UUID or a name). Immutable.
    pub tenant_id: String,
    /// Extension id. Immutable.
    pub extension_id: String,
    /// The Knative Service in this namespace that serves the domain.
    #[serde(default)]
    pub service_ref: ServiceRef,
    /// Filled in by tether's mutating webhook. Immutable.
    #[serde(default)]
    pub domain: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
pub struct ServiceRef {
    #[serde(default)]
    pub name: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppDomainStatus {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

fn preserve_unknown_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// Both CRDs as a multi-document YAML stream.
pub fn crds_yaml() -> Result<String, serde_yaml_ng::Error> {
    use kube::CustomResourceExt;
    let mut out = String::from("# Generated by `tether crds`; do not edit.\n");
    for crd in [AttachedResource::crd(), AppDomain::crd()] {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn crds_have_names_scopes_status_and_columns() {
        let atr = serde_json::to_value(AttachedResource::crd()).unwrap();
        assert_eq!(atr["metadata"]["name"], "attachedresources.tether.dev");
        assert_eq!(atr["spec"]["scope"], "Namespaced");
        assert_eq!(atr["spec"]["names"]["shortNames"][0], "atr");
        let v = &atr["spec"]["versions"][0];
        assert_eq!(v["subresources"]["status"], serde_json::json!({}));
        let obj = &v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["object"];
        assert_eq!(obj["x-kubernetes-preserve-unknown-fields"], true);
        let cols: Vec<_> = v["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(cols, ["Workload", "Kind", "Ready", "Age"]);
        let apd = serde_json::to_value(AppDomain::crd()).unwrap();
        assert_eq!(apd["spec"]["names"]["shortNames"][0], "apd");
        assert!(
            crds_yaml()
                .unwrap()
                .matches("kind: CustomResourceDefinition")
                .count()
                == 2
        );
    }
}
