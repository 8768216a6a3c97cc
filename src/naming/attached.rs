//! Attached copy names (SPEC §4).

use super::*;

// ---------------------------------------------------------------------------------------
// Attached copy names
// ---------------------------------------------------------------------------------------

/// Name of the copy of `AttachedResource` `attached_resource` rendered for `deployment`
/// (workload `workload`, version `version`): `{prefix}-{h8}`, at most 47 characters
/// (SPEC §4).
///
/// - `h8` = first 8 hex characters of SHA-256 of `"{workload}/{attached_resource}/{version}"`.
///   The hash, not the prefix, carries the identity: distinct triples give distinct names
///   even when long prefixes are cut to the same string. (`/` cannot occur in a workload
///   name, an object name or a label value, so the join is unambiguous for real inputs.)
/// - `prefix` = `"{deployment}-{attached_resource}"`, ASCII-lowercased, each run of
///   characters outside `[a-z0-9-]` replaced by one `-`, cut to 38 characters, trailing
///   `-` removed. It is there for humans (`kubectl get` shows what the copy belongs to).
///
/// **Beyond the spec** (never triggered by valid Kubernetes names, which start with a
/// letter or digit): leading `-` are also removed from the prefix, before the cut, so the
/// result is always a valid DNS-1123 label; and when the prefix is empty after
/// sanitising (e.g. both names are empty or all non-ASCII) the name is just `h8`, which is
/// itself a valid label, rather than `-{h8}`.
///
/// ```
/// use tether::naming::attached_name;
/// assert_eq!(
///     attached_name("payments-worker-v2", "worker-hpa", "payments-worker", "v2"),
///     "payments-worker-v2-worker-hpa-40a40f25"
/// );
/// // Long names are cut, but the hash keeps the copies apart.
/// let long = "checkout-frontend-canary-blue-green-east";
/// assert_eq!(attached_name(long, "hpa", "checkout", "v1"), "checkout-frontend-canary-blue-green-ea-6a9b60a5");
/// assert_eq!(attached_name(long, "hpa", "checkout", "v2"), "checkout-frontend-canary-blue-green-ea-50cf037c");
/// ```
#[must_use]
pub fn attached_name(
    deployment: &str,
    attached_resource: &str,
    workload: &str,
    version: &str,
) -> String {
    let h8 = sha256_hex_prefix(
        format!("{workload}/{attached_resource}/{version}").as_bytes(),
        ATTACHED_HASH_LEN,
    );
    let prefix = attached_prefix(deployment, attached_resource);
    if prefix.is_empty() {
        h8
    } else {
        format!("{prefix}-{h8}")
    }
}

pub(super) fn attached_prefix(deployment: &str, attached_resource: &str) -> String {
    let joined = format!("{deployment}-{attached_resource}");
    let mut sanitised = String::with_capacity(joined.len());
    let mut in_run = false;
    for c in joined.chars().map(|c| c.to_ascii_lowercase()) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
            sanitised.push(c);
            in_run = false;
        } else if !in_run {
            sanitised.push('-');
            in_run = true;
        }
    }
    let start = sanitised.trim_start_matches('-');
    crate::text::cut_bytes(start, MAX_ATTACHED_PREFIX_LEN)
        .trim_end_matches('-')
        .to_string()
}
