//! `tether check --values FILE`: the settings a Helm values file gives the webhook, so the
//! offline answer is the cluster's. Keys follow charts/tether/values.yaml; a key that is
//! absent or empty leaves the default, as the chart's `with` blocks do.

use serde::Deserialize;

use super::scope::PlainKind;

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChartValues {
    #[serde(default)]
    pub banned_kinds: Option<Vec<String>>,
    #[serde(default)]
    pub allowed_kinds: Option<Vec<String>>,
    #[serde(default)]
    pub plain_kinds: Option<Vec<PlainKind>>,
    #[serde(default)]
    pub domain_root: Option<String>,
    #[serde(default)]
    pub runner_kservice: Option<String>,
    #[serde(default)]
    pub reserved_names: Option<Vec<String>>,
    #[serde(default)]
    pub namespace_selector: Option<NamespaceSelector>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    #[serde(default)]
    pub exclude_namespaces: Vec<String>,
}

/// Reads a values file; unknown keys are the chart's business and ignored here.
pub fn read(path: &std::path::Path) -> Result<ChartValues, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--values {}: cannot read: {e}", path.display()))?;
    if text.trim().is_empty() {
        return Ok(ChartValues::default());
    }
    serde_yaml_ng::from_str(&text).map_err(|e| format!("--values {}: {e}", path.display()))
}

/// `Some(list)` when the list has entries (the chart's `with` treats an empty list as unset).
pub fn non_empty<T: Clone>(v: &Option<Vec<T>>) -> Option<Vec<T>> {
    v.as_ref().filter(|l| !l.is_empty()).cloned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_charts_own_values_file_reads() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/tether/values.yaml");
        let v = super::read(&path).unwrap();
        assert_eq!(
            v.plain_kinds.unwrap(),
            super::super::scope::default_plain_kinds()
        );
        assert_eq!(
            v.banned_kinds.unwrap().join(","),
            crate::cli::DEFAULT_BANNED_KINDS_CSV
        );
        assert_eq!(
            v.namespace_selector.unwrap().exclude_namespaces,
            Vec::<String>::new()
        );
    }
}
