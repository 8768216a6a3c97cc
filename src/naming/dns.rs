//! DNS-1123 names and label values: the Kubernetes syntax checks, and making any string a
//! valid label value.

use super::*;

// ---------------------------------------------------------------------------------------
// DNS-1123 and label-value checks
// ---------------------------------------------------------------------------------------

pub(super) fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// Whether `s` is a DNS-1123 label: 1–63 characters of `[a-z0-9-]`, starting and ending
/// with a letter or digit (Kubernetes `IsDNS1123Label`).
///
/// ```
/// use tether::naming::is_dns1123_label;
/// assert!(is_dns1123_label("payments-worker"));
/// assert!(!is_dns1123_label("Payments")); // lowercase only
/// assert!(!is_dns1123_label("a.b")); // a label, not a subdomain
/// ```
#[must_use]
pub fn is_dns1123_label(s: &str) -> bool {
    s.len() <= MAX_DNS1123_LABEL_LEN && is_label_shape(s)
}

/// Non-empty, `[a-z0-9-]`, alphanumeric at both ends; no length limit.
pub(super) fn is_label_shape(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&first), Some(&last)) => {
            is_lower_alnum(first)
                && is_lower_alnum(last)
                && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
        }
        _ => false,
    }
}

/// Whether `s` is a DNS-1123 subdomain as Kubernetes checks object names
/// (`IsDNS1123Subdomain`): at most 253 characters, dot-separated non-empty labels of
/// `[a-z0-9-]` that start and end with a letter or digit.
///
/// Like Kubernetes, this does **not** limit each label to 63 characters; [`check_domain`]
/// does, because app domains are real host names.
///
/// ```
/// use tether::naming::is_dns1123_subdomain;
/// assert!(is_dns1123_subdomain("acme--invoicing.apps.example.com"));
/// assert!(!is_dns1123_subdomain("example.com.")); // no trailing dot
/// assert!(!is_dns1123_subdomain("a..b"));
/// ```
#[must_use]
pub fn is_dns1123_subdomain(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > MAX_DNS1123_SUBDOMAIN_LEN {
        return false;
    }
    // One pass over the bytes (every admission request checks a few API groups): a label
    // may not start with `-` or `.` (empty), nor end with `-` or be empty before a dot.
    let mut prev = b'.';
    for &c in b {
        let ok = match c {
            b'-' => prev != b'.',
            b'.' => is_lower_alnum(prev),
            c => is_lower_alnum(c),
        };
        if !ok {
            return false;
        }
        prev = c;
    }
    is_lower_alnum(prev)
}

/// Whether `s` is a valid Kubernetes label value: empty, or at most 63 characters of
/// `[A-Za-z0-9._-]` starting and ending with a letter or digit.
///
/// ```
/// use tether::naming::is_label_value;
/// assert!(is_label_value("")); // empty is allowed
/// assert!(is_label_value("v1.2_rc-3"));
/// assert!(!is_label_value("-v1"));
/// ```
#[must_use]
pub fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    let inner_ok = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.');
    match (b.first(), b.last()) {
        (None, _) | (_, None) => true,
        (Some(first), Some(last)) => {
            b.len() <= MAX_LABEL_VALUE_LEN
                && first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter().all(inner_ok)
        }
    }
}

/// Characters of the readable prefix kept by [`label_value`]: 54 + `-` + 8 hex = 63.
pub(super) const LABEL_PREFIX_LEN: usize = MAX_LABEL_VALUE_LEN - 1 - ATTACHED_HASH_LEN;

/// `s` as a valid label value (the labels tether writes on copies, SPEC 6.1): unchanged when
/// it already is one; otherwise `{prefix}-{h8}`, at most 63 characters, where `h8` is the
/// first 8 hex characters of SHA-256 of the whole of `s` (so distinct values stay distinct)
/// and `prefix` is `s` with each character outside `[A-Za-z0-9._-]` replaced by `-`, cut to
/// 54 characters, with non-alphanumeric characters trimmed from both ends (just `h8` when
/// nothing is left).
///
/// ```
/// use tether::naming::label_value;
/// assert_eq!(label_value("payments-worker-v2"), "payments-worker-v2");
/// // An 83-character Deployment name used as the version label:
/// // printf '%s' "$name" | sha256sum | cut -c1-8  ->  eec0debe
/// assert_eq!(
///     label_value("payments-worker-release-2026-11-30-build-4f1c2a9e-canary-blue-green-east-1.internal"),
///     "payments-worker-release-2026-11-30-build-4f1c2a9e-cana-eec0debe"
/// );
/// ```
#[must_use]
pub fn label_value(s: &str) -> String {
    if is_label_value(s) {
        return s.to_string();
    }
    let h8 = sha256_hex_prefix(s.as_bytes(), ATTACHED_HASH_LEN);
    let sanitised: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let prefix = crate::text::cut_bytes(&sanitised, LABEL_PREFIX_LEN)
        .trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if prefix.is_empty() {
        h8
    } else {
        format!("{prefix}-{h8}")
    }
}

/// What is wrong with a would-be DNS host name, first problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum HostProblem {
    Empty,
    TooLong(usize),
    Uppercase,
    TrailingDot,
    BadCharacter(char),
    EmptyLabel,
    LabelEdge(String),
    LabelTooLong(String),
}

/// DNS-1123 subdomain with the DNS 63-character label limit, reporting the first problem.
pub(super) fn host_problem(s: &str) -> Option<HostProblem> {
    if s.is_empty() {
        return Some(HostProblem::Empty);
    }
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Some(HostProblem::Uppercase);
    }
    if s.ends_with('.') && !s.trim_end_matches('.').is_empty() {
        return Some(HostProblem::TrailingDot);
    }
    if let Some(c) = s
        .chars()
        .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'))
    {
        return Some(HostProblem::BadCharacter(c));
    }
    for label in s.split('.') {
        if label.is_empty() {
            return Some(HostProblem::EmptyLabel);
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some(HostProblem::LabelEdge(label.to_string()));
        }
        if label.len() > MAX_DNS1123_LABEL_LEN {
            return Some(HostProblem::LabelTooLong(label.to_string()));
        }
    }
    if s.len() > MAX_DNS1123_SUBDOMAIN_LEN {
        return Some(HostProblem::TooLong(s.len()));
    }
    None
}
