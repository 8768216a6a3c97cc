//! Names tether computes (SPEC §4): attached copy names, app domains, and the
//! DNS-1123 / label-value checks the policy code reuses.
//!
//! Everything here is a pure function of its inputs: the same ids always give the same
//! name, so the webhook, the controller and `tether domain` agree without talking to each
//! other, and nothing ever has to parse a name back into the ids it came from.
//!
//! Case mapping is ASCII-only throughout ([`str::to_ascii_lowercase`]): Unicode case
//! mapping depends on the Unicode version and maps a few non-ASCII characters onto ASCII
//! ones (the Kelvin sign `K` lowercases to `k`), which would make names drift between
//! builds. Non-ASCII characters are left alone and then, like any other character outside
//! the allowed set, become a `-` separator.

use sha2::{Digest, Sha256};
use thiserror::Error;

mod attached;
mod dns;
mod domain;
#[cfg(test)]
mod tests;

pub use attached::attached_name;
pub use dns::{is_dns1123_label, is_dns1123_subdomain, is_label_value, label_value};
pub use domain::{
    app_domain, check_domain, disambiguated_app_domain, disambiguator, domain_part,
    is_computed_domain, normalize_id, DomainCheck, DomainPart, DomainRoot, PartKind,
};

/// Longest attached copy name: safe for every kind, including those whose pod names are
/// derived from the object name (SPEC §4).
pub const MAX_ATTACHED_NAME_LEN: usize = 47;
/// Longest prefix (`{deployment}-{attachedResource}`, sanitised) of an attached copy name.
pub const MAX_ATTACHED_PREFIX_LEN: usize = 38;
/// Longest DNS-1123 label (RFC 1123).
pub const MAX_DNS1123_LABEL_LEN: usize = 63;
/// Longest DNS-1123 subdomain (RFC 1123).
pub const MAX_DNS1123_SUBDOMAIN_LEN: usize = 253;
/// Longest Kubernetes label value.
pub const MAX_LABEL_VALUE_LEN: usize = 63;
/// Domains longer than this are admitted with a warning: downstream they become a
/// certificate common name and a label value, both limited to 63 characters.
pub const DOMAIN_WARNING_LEN: usize = 63;
/// Longest first label tether computes: `{t}--{e}-{h6}` with 12-character parts.
pub const MAX_APP_LABEL_LEN: usize = SLUG_PART_LEN + 2 + SLUG_PART_LEN + 1 + DISAMBIGUATOR_LEN;
/// Longest accepted `--domain-root`: every computed domain (`{label}.{root}`) then fits
/// the 253-character DNS-1123 subdomain limit.
pub const MAX_DOMAIN_ROOT_LEN: usize = MAX_DNS1123_SUBDOMAIN_LEN - MAX_APP_LABEL_LEN - 1;

const ATTACHED_HASH_LEN: usize = 8;
const UUID_PART_LEN: usize = 8;
const SLUG_PART_LEN: usize = 12;
const MIN_PART_LEN: usize = 3;
const HASH_PART_LEN: usize = 8;
const DISAMBIGUATOR_LEN: usize = 6;
const URN_UUID_PREFIX: &str = "urn:uuid:";
/// Input strings quoted in error messages are cut to this many characters, so a
/// hostile `spec.domain` cannot blow up a denial message.
const MAX_QUOTED_LEN: usize = 80;

/// Why a name or a domain root was rejected. The messages are shown to operators (at
/// start-up for `--domain-root`) and to `kubectl` users, so each one names the problem and
/// the fix, on one line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NamingError {
    /// `--domain-root` is empty.
    #[error("domain root is empty; set it to the DNS zone app domains are created under, e.g. \"apps.example.com\"")]
    EmptyRoot,
    /// The root has uppercase letters; `suggestion` is the lowercase form.
    #[error("domain root {root:?} has uppercase letters; write it in lowercase: {suggestion:?}")]
    UppercaseRoot { root: String, suggestion: String },
    /// The root is written as an absolute name (`example.com.`).
    #[error("domain root {root:?} ends with a dot; drop the trailing dot: {suggestion:?}")]
    TrailingDotRoot { root: String, suggestion: String },
    /// The root has a character that cannot occur in a DNS-1123 subdomain.
    #[error("domain root {root:?} contains {character:?}; use only lowercase letters, digits, '-' and '.'")]
    InvalidRootCharacter { root: String, character: char },
    /// The root has an empty label (leading dot or two dots in a row).
    #[error("domain root {root:?} has an empty label (a leading dot or two dots in a row); remove the extra dot")]
    EmptyRootLabel { root: String },
    /// One label of the root is not a DNS-1123 label.
    #[error("domain root {root:?}: label {label:?} {problem}; each label is 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit")]
    InvalidRootLabel {
        root: String,
        label: String,
        problem: &'static str,
    },
    /// The root is a single label such as `com`.
    #[error("domain root {root:?} has a single label; use at least two, e.g. {suggestion:?}")]
    SingleLabelRoot { root: String, suggestion: String },
    /// The root leaves no room for the app label within 253 characters.
    #[error("domain root {root:?} is {len} characters long; at most {max} fit, leaving room for the app label within the 253-character DNS limit")]
    RootTooLong {
        root: String,
        len: usize,
        max: usize,
    },
    /// A domain (e.g. `spec.domain`) is not a valid DNS-1123 subdomain.
    #[error("domain {domain:?} is not a valid DNS-1123 subdomain: {problem}")]
    InvalidDomain { domain: String, problem: String },
}

/// First `len` hex characters of SHA-256 of `input`: the hash every computed name carries.
pub(crate) fn sha256_hex_prefix(input: &[u8], len: usize) -> String {
    let mut h = hex::encode(Sha256::digest(input));
    h.truncate(len);
    h
}

/// `s` for an error message: Debug-quoting escapes control characters (warnings and
/// messages must stay on one line), and long input is cut.
pub(crate) fn shown(s: &str) -> String {
    // Through `text::clean`: control characters become spaces, so a `{:?}` quote of the
    // result cannot grow six-fold (`\u{19}`) past the message budget (found by fuzzing).
    crate::text::clean(s, MAX_QUOTED_LEN + 1).into_owned()
}
