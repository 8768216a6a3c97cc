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

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use thiserror::Error;

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

// ---------------------------------------------------------------------------------------
// DNS-1123 and label-value checks
// ---------------------------------------------------------------------------------------

fn is_lower_alnum(b: u8) -> bool {
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
fn is_label_shape(s: &str) -> bool {
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
    !s.is_empty() && s.len() <= MAX_DNS1123_SUBDOMAIN_LEN && s.split('.').all(is_label_shape)
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
const LABEL_PREFIX_LEN: usize = MAX_LABEL_VALUE_LEN - 1 - ATTACHED_HASH_LEN;

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
    let prefix =
        cut_ascii(&sanitised, LABEL_PREFIX_LEN).trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if prefix.is_empty() {
        h8
    } else {
        format!("{prefix}-{h8}")
    }
}

/// What is wrong with a would-be DNS host name, first problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostProblem {
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
fn host_problem(s: &str) -> Option<HostProblem> {
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

/// `s` for an error message: Debug-quoting escapes control characters (warnings and
/// messages must stay on one line), and long input is cut.
fn shown(s: &str) -> String {
    // Through `text::clean`: control characters become spaces, so a `{:?}` quote of the
    // result cannot grow six-fold (`\u{19}`) past the message budget (found by fuzzing).
    crate::text::clean(s, MAX_QUOTED_LEN + 1).into_owned()
}

// ---------------------------------------------------------------------------------------
// Attached copy names
// ---------------------------------------------------------------------------------------

fn sha256_hex_prefix(input: &[u8], len: usize) -> String {
    let mut h = hex::encode(Sha256::digest(input));
    h.truncate(len);
    h
}

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

fn attached_prefix(deployment: &str, attached_resource: &str) -> String {
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
    cut_ascii(start, MAX_ATTACHED_PREFIX_LEN)
        .trim_end_matches('-')
        .to_string()
}

/// The first `len` bytes of `s`, or all of `s`; never splits a character.
fn cut_ascii(s: &str, len: usize) -> &str {
    let mut end = len.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

// ---------------------------------------------------------------------------------------
// App domains
// ---------------------------------------------------------------------------------------

/// Normalises a tenant or extension id before any domain is computed from it (SPEC §4):
/// trim surrounding whitespace, ASCII-lowercase, remove one pair of surrounding `{...}`
/// braces, remove a `urn:uuid:` prefix, trim again.
///
/// A UUID written in the 32-hex "simple" form (no dashes) is rewritten to the canonical
/// 8-4-4-4-12 form, so every common spelling of one UUID (upper case, braced, URN,
/// without dashes) normalises to the same string and gives the same domain, plain and
/// disambiguated. The normalised id is also what the hashes are computed over.
///
/// ```
/// use tether::naming::normalize_id;
/// let canonical = "3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c";
/// assert_eq!(normalize_id(" {3F2A9C1E-7B4D-4E0A-9C55-1D2E3F4A5B6C} "), canonical);
/// assert_eq!(normalize_id("urn:uuid:3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c"), canonical);
/// assert_eq!(normalize_id("3f2a9c1e7b4d4e0a9c551d2e3f4a5b6c"), canonical);
/// assert_eq!(normalize_id("  Invoicing Pro "), "invoicing pro");
/// ```
#[must_use]
pub fn normalize_id(id: &str) -> String {
    let lower = id.trim().to_ascii_lowercase();
    let unbraced = lower
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(&lower);
    let unprefixed = unbraced.strip_prefix(URN_UUID_PREFIX).unwrap_or(unbraced);
    let trimmed = unprefixed.trim();
    canonical_uuid(trimmed).unwrap_or_else(|| trimmed.to_string())
}

/// `s` as a canonical lowercase 8-4-4-4-12 UUID, when it is a UUID in that form or the
/// 32-hex simple form. Version and variant bits are not checked: any hex in that shape
/// is an id somebody chose, and its first 8 hex characters are as good a name as any.
fn canonical_uuid(s: &str) -> Option<String> {
    let is_hex = |c: u8| c.is_ascii_digit() || (b'a'..=b'f').contains(&c);
    let b = s.as_bytes();
    match b.len() {
        36 => {
            let shape_ok = b.iter().enumerate().all(|(i, &c)| match i {
                8 | 13 | 18 | 23 => c == b'-',
                _ => is_hex(c),
            });
            shape_ok.then(|| s.to_string())
        }
        32 if b.iter().all(|&c| is_hex(c)) => Some(format!(
            "{}-{}-{}-{}-{}",
            &s[0..8],
            &s[8..12],
            &s[12..16],
            &s[16..20],
            &s[20..32]
        )),
        _ => None,
    }
}

/// The slug of a normalised id: each run of characters outside `[a-z0-9]` becomes one
/// `-`, no leading or trailing `-`, cut to 12 characters and again no trailing `-`.
/// A slug never contains `--`.
fn slug(normalized: &str) -> String {
    let mut out = String::with_capacity(normalized.len().min(4 * SLUG_PART_LEN));
    let mut pending_dash = false;
    for c in normalized.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            if pending_dash && !out.is_empty() {
                out.push('-');
            }
            pending_dash = false;
            out.push(c);
            if out.len() >= SLUG_PART_LEN {
                break;
            }
        } else {
            pending_dash = true;
        }
    }
    cut_ascii(&out, SLUG_PART_LEN)
        .trim_end_matches('-')
        .to_string()
}

/// How a [`DomainPart`] was derived from its id, for `tether domain -v`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartKind {
    /// The normalised id is a UUID; the part is its first 8 hex characters.
    Uuid,
    /// The part is the first 12 characters of the id's slug.
    Slug,
    /// The slug (kept here, possibly empty) had fewer than 3 characters, so the part is the
    /// first 8 hex characters of SHA-256 of the normalised id.
    HashFallback { slug: String },
}

/// One half (`t` or `e`) of an app domain's first label, with how it was derived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainPart {
    /// The id after [`normalize_id`].
    pub normalized_id: String,
    /// The 3–12 character part: a DNS-1123 label that never contains `--`.
    pub part: String,
    /// Why the part is what it is.
    pub kind: PartKind,
}

impl fmt::Display for DomainPart {
    /// One line explaining the part, e.g. for `tether domain -v`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = shown(&self.normalized_id);
        match &self.kind {
            PartKind::Uuid => write!(
                f,
                "{}: first 8 hex characters of the UUID {id:?}",
                self.part
            ),
            PartKind::Slug => write!(
                f,
                "{}: slug of {id:?} (first 12 characters at most)",
                self.part
            ),
            PartKind::HashFallback { slug } => write!(
                f,
                "{}: first 8 hex characters of SHA-256 of {id:?}, because its slug {slug:?} is shorter than 3 characters",
                self.part
            ),
        }
    }
}

/// The part (`t` or `e`) an id contributes to its app domain's first label (SPEC §4).
///
/// After [`normalize_id`]: a UUID gives its first 8 hex characters; otherwise the first
/// 12 characters of the slug (runs outside `[a-z0-9]` become one `-`, no `-` at either
/// end, also after the cut). When that leaves fewer than 3 characters (empty,
/// non-ASCII-only or very short ids), the part is the first 8 hex characters of SHA-256
/// of the **normalised** id instead: a 1–2 character part would make labels such as
/// `ab--x` (reserved by RFC 5891) or `xn--x` (an IDNA label).
///
/// Total: empty ids get a part too (`e3b0c442`, the hash of ""); rejecting them is the
/// validating webhook's job.
///
/// ```
/// use tether::naming::{domain_part, PartKind};
/// assert_eq!(domain_part("3F2A9C1E-7B4D-4E0A-9C55-1D2E3F4A5B6C").part, "3f2a9c1e");
/// assert_eq!(domain_part("Invoicing Pro Suite").part, "invoicing-pr");
/// let short = domain_part("xn");
/// assert_eq!(short.part, "ce482786");
/// assert_eq!(short.kind, PartKind::HashFallback { slug: "xn".into() });
/// ```
#[must_use]
pub fn domain_part(id: &str) -> DomainPart {
    let normalized_id = normalize_id(id);
    if canonical_uuid(&normalized_id).is_some() {
        return DomainPart {
            part: cut_ascii(&normalized_id, UUID_PART_LEN).to_string(),
            normalized_id,
            kind: PartKind::Uuid,
        };
    }
    let slug = slug(&normalized_id);
    if slug.len() >= MIN_PART_LEN {
        return DomainPart {
            normalized_id,
            part: slug,
            kind: PartKind::Slug,
        };
    }
    DomainPart {
        part: sha256_hex_prefix(normalized_id.as_bytes(), HASH_PART_LEN),
        normalized_id,
        kind: PartKind::HashFallback { slug },
    }
}

/// A validated `--domain-root`: lowercase, no trailing dot, at least two labels, each a
/// DNS-1123 label, at most [`MAX_DOMAIN_ROOT_LEN`] characters so that every computed
/// domain is a valid DNS-1123 subdomain. Parse it once at start-up; every domain function
/// takes it, so an invalid root cannot reach them.
///
/// ```
/// use tether::naming::DomainRoot;
/// assert_eq!(DomainRoot::parse("apps.example.com").unwrap().as_str(), "apps.example.com");
/// let err = DomainRoot::parse("Apps.Example.com").unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     r#"domain root "Apps.Example.com" has uppercase letters; write it in lowercase: "apps.example.com""#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DomainRoot(String);

impl DomainRoot {
    /// Validates `s` as a domain root.
    ///
    /// # Errors
    /// A [`NamingError`] naming the first problem found and its fix, e.g.
    /// [`NamingError::UppercaseRoot`] with the lowercase form to use instead.
    pub fn parse(s: &str) -> Result<DomainRoot, NamingError> {
        let root = || shown(s);
        if let Some(problem) = host_problem(s) {
            return Err(match problem {
                HostProblem::Empty => NamingError::EmptyRoot,
                HostProblem::Uppercase => NamingError::UppercaseRoot {
                    root: root(),
                    suggestion: shown(s.to_ascii_lowercase().trim_end_matches('.')),
                },
                HostProblem::TrailingDot => NamingError::TrailingDotRoot {
                    root: root(),
                    suggestion: shown(s.trim_end_matches('.')),
                },
                HostProblem::BadCharacter(character) => NamingError::InvalidRootCharacter {
                    root: root(),
                    character,
                },
                HostProblem::EmptyLabel => NamingError::EmptyRootLabel { root: root() },
                HostProblem::LabelEdge(label) => NamingError::InvalidRootLabel {
                    root: root(),
                    label: shown(&label),
                    problem: "starts or ends with '-'",
                },
                HostProblem::LabelTooLong(label) => NamingError::InvalidRootLabel {
                    root: root(),
                    label: shown(&label),
                    problem: "is longer than 63 characters",
                },
                HostProblem::TooLong(len) => NamingError::RootTooLong {
                    root: root(),
                    len,
                    max: MAX_DOMAIN_ROOT_LEN,
                },
            });
        }
        if !s.contains('.') {
            return Err(NamingError::SingleLabelRoot {
                root: root(),
                suggestion: shown(&format!("apps.{s}")),
            });
        }
        if s.len() > MAX_DOMAIN_ROOT_LEN {
            return Err(NamingError::RootTooLong {
                root: root(),
                len: s.len(),
                max: MAX_DOMAIN_ROOT_LEN,
            });
        }
        Ok(DomainRoot(s.to_string()))
    }

    /// The root as written, e.g. `apps.example.com`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for DomainRoot {
    type Err = NamingError;
    /// Same as [`DomainRoot::parse`]; lets `clap` parse `--domain-root` directly.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DomainRoot::parse(s)
    }
}

impl fmt::Display for DomainRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for DomainRoot {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The first label of the plain app domain: `{t}--{e}`.
fn plain_label(tenant_id: &str, extension_id: &str) -> String {
    format!(
        "{}--{}",
        domain_part(tenant_id).part,
        domain_part(extension_id).part
    )
}

/// The plain app domain for an install: `{t}--{e}.{root}` (SPEC §4), with `t` and `e`
/// from [`domain_part`]. Both parts have at least 3 characters and never contain `--`, so
/// the first label has exactly one `--`, at index 3 or later: it is never `ab--`-shaped
/// (reserved) or `xn--`-shaped (IDNA).
///
/// Two installs can compute the same plain domain (UUIDs sharing their first 8 hex
/// characters, slugs that truncate alike); the admission code then uses
/// [`disambiguated_app_domain`].
///
/// ```
/// use tether::naming::{app_domain, DomainRoot};
/// let root = DomainRoot::parse("apps.example.com").unwrap();
/// assert_eq!(
///     app_domain("3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c", "invoicing-pro", &root),
///     "3f2a9c1e--invoicing-pr.apps.example.com"
/// );
/// ```
#[must_use]
pub fn app_domain(tenant_id: &str, extension_id: &str, root: &DomainRoot) -> String {
    format!("{}.{}", plain_label(tenant_id, extension_id), root.as_str())
}

/// The 6 hex characters that tell apart installs whose plain domains coincide: the first
/// 6 hex characters of SHA-256 over the normalised id pair, encoded without ambiguity as
/// `"{len(t)}:{t}{len(e)}:{e}"` (lengths in bytes, decimal; `t`, `e` the normalised ids).
/// A separator alone would not do: ids may contain any character, including the
/// separator.
///
/// ```
/// use tether::naming::disambiguator;
/// // SHA-256("4:acme13:invoicing-pro")
/// assert_eq!(disambiguator("ACME", "invoicing-pro"), "a7a57c");
/// ```
#[must_use]
pub fn disambiguator(tenant_id: &str, extension_id: &str) -> String {
    let t = normalize_id(tenant_id);
    let e = normalize_id(extension_id);
    let input = format!("{}:{t}{}:{e}", t.len(), e.len());
    sha256_hex_prefix(input.as_bytes(), DISAMBIGUATOR_LEN)
}

/// The disambiguated app domain: `{t}--{e}-{h6}.{root}`, with `h6` from
/// [`disambiguator`]. Used when the plain form is already held by a different
/// (tenantId, extensionId). It always differs from the plain form (its first label is 7
/// characters longer).
///
/// ```
/// use tether::naming::{app_domain, disambiguated_app_domain, DomainRoot};
/// let root = DomainRoot::parse("apps.example.com").unwrap();
/// // UUIDv7 ids minted close together share their first 8 hex characters ...
/// let a = "01890a5d-ac96-774b-bcce-b302099a8057";
/// let b = "01890a5d-ac97-7c3e-9d1f-5e2a4b6c8d90";
/// assert_eq!(app_domain(a, "crm", &root), app_domain(b, "crm", &root));
/// // ... and only the disambiguated form tells them apart.
/// assert_eq!(disambiguated_app_domain(a, "crm", &root), "01890a5d--crm-e4aec1.apps.example.com");
/// assert_eq!(disambiguated_app_domain(b, "crm", &root), "01890a5d--crm-69f28b.apps.example.com");
/// ```
#[must_use]
pub fn disambiguated_app_domain(tenant_id: &str, extension_id: &str, root: &DomainRoot) -> String {
    format!(
        "{}-{}.{}",
        plain_label(tenant_id, extension_id),
        disambiguator(tenant_id, extension_id),
        root.as_str()
    )
}

/// Whether `domain` is exactly the plain or the disambiguated app domain computed for the
/// ids. It recomputes both and compares; it never parses `domain` back into ids (the
/// mapping is not invertible: slugs are cut and UUIDs shortened).
///
/// ```
/// use tether::naming::{is_computed_domain, DomainRoot};
/// let root = DomainRoot::parse("apps.example.com").unwrap();
/// assert!(is_computed_domain("acme--crm.apps.example.com", "acme", "crm", &root));
/// assert!(!is_computed_domain("acme--crm.apps.example.com", "acme", "erp", &root));
/// ```
#[must_use]
pub fn is_computed_domain(
    domain: &str,
    tenant_id: &str,
    extension_id: &str,
    root: &DomainRoot,
) -> bool {
    domain == app_domain(tenant_id, extension_id, root)
        || domain == disambiguated_app_domain(tenant_id, extension_id, root)
}

/// Outcome of [`check_domain`] for a valid domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainCheck {
    /// Valid, nothing to report.
    Valid,
    /// Valid but worth a one-line admission warning (longer than 63 characters).
    ValidWithWarning(String),
}

impl DomainCheck {
    /// The warning, if any.
    #[must_use]
    pub fn warning(&self) -> Option<&str> {
        match self {
            DomainCheck::Valid => None,
            DomainCheck::ValidWithWarning(w) => Some(w),
        }
    }
}

/// Checks a domain (e.g. `spec.domain`) as SPEC §4 asks: an error unless it is a valid
/// DNS-1123 subdomain whose labels are at most 63 characters (a host name); a warning,
/// not an error, when it is longer than 63 characters, because downstream it becomes a
/// certificate name and a label value, where 63 is the limit.
///
/// # Errors
/// [`NamingError::InvalidDomain`] naming the first problem; the quoted domain is cut to
/// 80 characters and escaped, so the message stays one short line.
///
/// ```
/// use tether::naming::{check_domain, DomainCheck};
/// assert_eq!(check_domain("acme--crm.apps.example.com"), Ok(DomainCheck::Valid));
/// assert!(check_domain("acme--crm.apps.example.com.").is_err());
/// ```
pub fn check_domain(domain: &str) -> Result<DomainCheck, NamingError> {
    if let Some(problem) = host_problem(domain) {
        let problem = match problem {
            HostProblem::Empty => "it is empty".to_string(),
            HostProblem::TooLong(len) => {
                format!(
                    "it is {len} characters long, over the limit of {MAX_DNS1123_SUBDOMAIN_LEN}"
                )
            }
            HostProblem::Uppercase => "it has uppercase letters; use lowercase".to_string(),
            HostProblem::TrailingDot => "it ends with a dot; drop the trailing dot".to_string(),
            HostProblem::BadCharacter(c) => format!(
                "it contains {c:?}; only lowercase letters, digits, '-' and '.' are allowed"
            ),
            HostProblem::EmptyLabel => {
                "it has an empty label (a leading dot or two dots in a row)".to_string()
            }
            HostProblem::LabelEdge(label) => format!(
                "label {:?} starts or ends with '-'; labels start and end with a letter or digit",
                shown(&label)
            ),
            HostProblem::LabelTooLong(label) => format!(
                "label {:?} is longer than {MAX_DNS1123_LABEL_LEN} characters",
                shown(&label)
            ),
        };
        return Err(NamingError::InvalidDomain {
            domain: shown(domain),
            problem,
        });
    }
    if domain.len() > DOMAIN_WARNING_LEN {
        return Ok(DomainCheck::ValidWithWarning(format!(
            "domain {domain:?} is {} characters long; over {DOMAIN_WARNING_LEN} it cannot be a certificate common name or a label value downstream (a shorter --domain-root avoids this)",
            domain.len()
        )));
    }
    Ok(DomainCheck::Valid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A root of exactly `len` characters made of 63-character labels (and a shorter last one).
    fn root_of_len(len: usize) -> String {
        let mut s = String::new();
        while s.len() + 64 < len {
            s.push_str(&"a".repeat(63));
            s.push('.');
        }
        s.push_str(&"b".repeat(len - s.len()));
        s
    }

    fn root(s: &str) -> DomainRoot {
        DomainRoot::parse(s).unwrap()
    }

    fn h(input: &str, n: usize) -> String {
        sha256_hex_prefix(input.as_bytes(), n)
    }

    // ----- label values (issue 11 defect 4) -----

    /// Golden values computed independently of this code with coreutils, e.g.
    /// `printf '%s' 'a b' | sha256sum | cut -c1-8` -> c8687a08.
    #[test]
    fn label_values_are_kept_or_shortened_with_a_hash() {
        let long =
            "payments-worker-release-2026-11-30-build-4f1c2a9e-canary-blue-green-east-1.internal";
        let cases: &[(&str, &str)] = &[
            ("", ""),
            ("v1.2_rc-3", "v1.2_rc-3"),
            (&"a".repeat(63), &"a".repeat(63)),
            (
                long,
                "payments-worker-release-2026-11-30-build-4f1c2a9e-cana-eec0debe",
            ),
            ("a b", "a-b-c8687a08"),
            ("ÄÖÜ", "1eccaaf0"),
            ("-x-", "x-c6cf95e5"),
        ];
        for (input, want) in cases {
            let got = label_value(input);
            assert_eq!(&got, want, "{input:?}");
            assert!(is_label_value(&got), "{got:?}");
        }
    }

    // ----- DNS-1123 helpers -----

    #[test]
    fn dns1123_label_table() {
        let long63 = "a".repeat(63);
        let long64 = "a".repeat(64);
        let cases: &[(&str, bool)] = &[
            ("a", true),
            ("0", true),
            ("a-b", true),
            ("a--b", true),
            ("123", true),
            (&long63, true),
            ("", false),
            (&long64, false),
            ("-a", false),
            ("a-", false),
            ("A", false),
            ("a.b", false),
            ("a_b", false),
            ("a b", false),
            ("é", false),
        ];
        for (s, want) in cases {
            assert_eq!(is_dns1123_label(s), *want, "{s:?}");
        }
    }

    #[test]
    fn dns1123_subdomain_table() {
        let long_label = "a".repeat(64); // Kubernetes does not limit labels here
        let l253 = format!("{}.{}", "a".repeat(126), "b".repeat(126));
        let l254 = format!("{}.{}", "a".repeat(126), "b".repeat(127));
        let cases: &[(&str, bool)] = &[
            ("a", true),
            ("a.b", true),
            ("a-1.b-2.c", true),
            (&long_label, true),
            (&l253, true),
            (&l254, false),
            ("", false),
            (".", false),
            ("a.", false),
            (".a", false),
            ("a..b", false),
            ("-a.b", false),
            ("a.b-", false),
            ("a.-b", false),
            ("A.b", false),
            ("a_b.c", false),
        ];
        for (s, want) in cases {
            assert_eq!(is_dns1123_subdomain(s), *want, "{s:?}");
        }
    }

    #[test]
    fn label_value_table() {
        let l63 = "a".repeat(63);
        let l64 = "a".repeat(64);
        let cases: &[(&str, bool)] = &[
            ("", true),
            ("a", true),
            ("A", true),
            ("v1.2_rc-3", true),
            ("a..b", true),
            ("a__b", true),
            (&l63, true),
            (&l64, false),
            ("-a", false),
            ("a-", false),
            ("_a", false),
            ("a.", false),
            ("a b", false),
            ("a/b", false),
            ("é", false),
        ];
        for (s, want) in cases {
            assert_eq!(is_label_value(s), *want, "{s:?}");
        }
    }

    // ----- attached names -----

    #[test]
    fn attached_name_table() {
        let cases: &[(&str, &str, &str, &str, String)] = &[
            (
                "payments-worker-v2",
                "worker-hpa",
                "payments-worker",
                "v2",
                format!(
                    "payments-worker-v2-worker-hpa-{}",
                    h("payments-worker/worker-hpa/v2", 8)
                ),
            ),
            // lowercased; a run of other characters becomes one '-'
            (
                "Web.App",
                "HPA__x",
                "w",
                "v",
                format!("web-app-hpa-x-{}", h("w/HPA__x/v", 8)),
            ),
            // existing '-' are kept as they are (the spec replaces only other characters)
            ("a-_b", "c", "w", "v", format!("a--b-c-{}", h("w/c/v", 8))),
            // non-ASCII is outside [a-z0-9-]
            ("dé", "x", "w", "v", format!("d--x-{}", h("w/x/v", 8))),
            // cut to 38 characters
            (
                &"d".repeat(50),
                "x",
                "w",
                "v",
                format!("{}-{}", "d".repeat(38), h("w/x/v", 8)),
            ),
            // '-' at the cut is removed: 37 d's then "-x" → cut at 38 ends in '-'
            (
                &"d".repeat(37),
                "xyz",
                "w",
                "v",
                format!("{}-{}", "d".repeat(37), h("w/xyz/v", 8)),
            ),
            // beyond the spec: leading '-' removed, empty prefix → just h8
            ("", "hpa", "w", "v", format!("hpa-{}", h("w/hpa/v", 8))),
            ("..a", "b", "w", "v", format!("a-b-{}", h("w/b/v", 8))),
            ("", "", "w", "v", h("w//v", 8)),
            ("日本", "語", "w", "v", h("w/語/v", 8)),
        ];
        for (dep, atr, wl, ver, want) in cases {
            let got = attached_name(dep, atr, wl, ver);
            assert_eq!(&got, want, "{dep:?} {atr:?} {wl:?} {ver:?}");
            assert!(got.len() <= MAX_ATTACHED_NAME_LEN);
            assert!(is_dns1123_label(&got), "{got:?}");
        }
    }

    #[test]
    fn attached_names_differ_when_prefixes_cut_alike() {
        let dep = "a-very-long-deployment-name-that-gets-cut-somewhere";
        let n1 = attached_name(dep, "hpa", "wl", "v1");
        let n2 = attached_name(dep, "hpa", "wl", "v2");
        let n3 = attached_name(dep, "pdb", "wl", "v1");
        assert_eq!(n1[..38], n2[..38]);
        assert_eq!(n1[..38], n3[..38]);
        assert_ne!(n1, n2);
        assert_ne!(n1, n3);
        assert_ne!(n2, n3);
        assert_eq!(
            n1,
            format!(
                "a-very-long-deployment-name-that-gets-{}",
                h("wl/hpa/v1", 8)
            )
        );
    }

    // ----- normalisation, UUIDs, slugs, parts -----

    #[test]
    fn normalize_id_table() {
        let u = "3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c";
        let cases: &[(&str, &str)] = &[
            (u, u),
            ("3F2A9C1E-7B4D-4E0A-9C55-1D2E3F4A5B6C", u),
            ("{3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c}", u),
            ("  {3F2A9C1E-7B4D-4E0A-9C55-1D2E3F4A5B6C}\n", u),
            ("urn:uuid:3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c", u),
            ("URN:UUID:3F2A9C1E-7B4D-4E0A-9C55-1D2E3F4A5B6C", u),
            ("{urn:uuid:3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c}", u),
            ("3f2a9c1e7b4d4e0a9c551d2e3f4a5b6c", u),
            ("{ 3F2A9C1E7B4D4E0A9C551D2E3F4A5B6C }", u),
            ("Acme Corp", "acme corp"),
            ("{acme}", "acme"),
            ("{acme", "{acme"),
            ("acme}", "acme}"),
            ("urn:uuid:acme", "acme"),
            ("x-urn:uuid:acme", "x-urn:uuid:acme"),
            ("   ", ""),
            ("", ""),
            ("ÄB", "Äb"), // ASCII-only lowercasing
        ];
        for (id, want) in cases {
            assert_eq!(normalize_id(id), *want, "{id:?}");
        }
    }

    #[test]
    fn canonical_uuid_table() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "00000000-0000-0000-0000-000000000000",
                Some("00000000-0000-0000-0000-000000000000"),
            ),
            (
                "0123456789abcdef0123456789abcdef",
                Some("01234567-89ab-cdef-0123-456789abcdef"),
            ),
            ("0123456789abcdef0123456789abcdeg", None),
            ("0123456789abcdef0123456789abcde", None),
            ("3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6", None),
            ("3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6cc", None),
            ("3f2a9c1e07b4d-4e0a-9c55-1d2e3f4a5b6c", None),
            ("3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6g", None),
            ("3f2a9c1e_7b4d_4e0a_9c55_1d2e3f4a5b6c", None),
            ("3F2A9C1E-7B4D-4E0A-9C55-1D2E3F4A5B6C", None), // expects normalised input
        ];
        for (s, want) in cases {
            assert_eq!(canonical_uuid(s).as_deref(), *want, "{s:?}");
        }
    }

    #[test]
    fn domain_part_table() {
        use PartKind::*;
        let fb = |slug: &str| HashFallback { slug: slug.into() };
        let cases: Vec<(&str, String, PartKind)> = vec![
            // UUIDs in every spelling → first 8 hex
            (
                "3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c",
                "3f2a9c1e".into(),
                Uuid,
            ),
            (
                "3F2A9C1E-7B4D-4E0A-9C55-1D2E3F4A5B6C",
                "3f2a9c1e".into(),
                Uuid,
            ),
            (
                "{3F2A9C1E-7B4D-4E0A-9C55-1D2E3F4A5B6C}",
                "3f2a9c1e".into(),
                Uuid,
            ),
            (
                "urn:uuid:3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c",
                "3f2a9c1e".into(),
                Uuid,
            ),
            ("3f2a9c1e7b4d4e0a9c551d2e3f4a5b6c", "3f2a9c1e".into(), Uuid),
            // slugs
            ("invoicing-pro", "invoicing-pr".into(), Slug),
            ("Acme", "acme".into(), Slug),
            ("  Acme  Corp!! ", "acme-corp".into(), Slug),
            ("--a__b--", "a-b".into(), Slug),
            ("abcdefghijkl", "abcdefghijkl".into(), Slug),
            ("abcdefghijklmnop", "abcdefghijkl".into(), Slug),
            // trailing separator at the cut
            ("abcdefghijk-x", "abcdefghijk".into(), Slug),
            ("abcdefghijk..x", "abcdefghijk".into(), Slug),
            ("abc", "abc".into(), Slug),
            ("a-b", "a-b".into(), Slug),
            ("日本acme", "acme".into(), Slug),
            ("café-crème", "caf-cr-me".into(), Slug),
            ("xn--abc", "xn-abc".into(), Slug),
            // not a UUID (wrong length): slug
            ("3f2a9c1e-7b4d-4e0a-9c55", "3f2a9c1e-7b4".into(), Slug),
            // too short → hash of the normalised id
            ("a", h("a", 8), fb("a")),
            ("AB", h("ab", 8), fb("ab")),
            ("xn", h("xn", 8), fb("xn")),
            ("a.b", "a-b".into(), Slug),
            ("a.", h("a.", 8), fb("a")),
            ("{ab}", h("ab", 8), fb("ab")),
            ("日本", h("日本", 8), fb("")),
            ("", h("", 8), fb("")),
            ("   ", h("", 8), fb("")),
            ("---", h("---", 8), fb("")),
        ];
        for (id, part, kind) in cases {
            let got = domain_part(id);
            assert_eq!(got.part, part, "{id:?}");
            assert_eq!(got.kind, kind, "{id:?}");
            assert_eq!(got.normalized_id, normalize_id(id));
            assert!(is_dns1123_label(&got.part) && !got.part.contains("--"));
            assert!((3..=12).contains(&got.part.len()));
        }
        assert_eq!(h("", 8), "e3b0c442");
    }

    #[test]
    fn domain_part_display() {
        assert_eq!(
            domain_part("{3F2A9C1E-7B4D-4E0A-9C55-1D2E3F4A5B6C}").to_string(),
            r#"3f2a9c1e: first 8 hex characters of the UUID "3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c""#
        );
        assert_eq!(
            domain_part("Invoicing Pro").to_string(),
            r#"invoicing-pr: slug of "invoicing pro" (first 12 characters at most)"#
        );
        assert_eq!(
            domain_part("日本").to_string(),
            format!(
                r#"{}: first 8 hex characters of SHA-256 of "日本", because its slug "" is shorter than 3 characters"#,
                h("日本", 8)
            )
        );
    }

    // ----- domains -----

    #[test]
    fn app_domain_table() {
        let r = root("apps.example.com");
        let u = "3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c";
        let cases: Vec<(&str, &str, String)> = vec![
            (
                u,
                "invoicing-pro",
                "3f2a9c1e--invoicing-pr.apps.example.com".into(),
            ),
            (
                "{3F2A9C1E-7B4D-4E0A-9C55-1D2E3F4A5B6C}",
                "CRM",
                "3f2a9c1e--crm.apps.example.com".into(),
            ),
            ("acme", "x", format!("acme--{}.apps.example.com", h("x", 8))),
            ("", "", "e3b0c442--e3b0c442.apps.example.com".into()),
            (
                "日本",
                "ab",
                format!("{}--{}.apps.example.com", h("日本", 8), h("ab", 8)),
            ),
        ];
        for (t, e, want) in cases {
            assert_eq!(app_domain(t, e, &r), want, "{t:?} {e:?}");
            let d = disambiguated_app_domain(t, e, &r);
            let (label, rest) = want.split_once('.').unwrap();
            assert_eq!(d, format!("{label}-{}.{rest}", disambiguator(t, e)));
        }
    }

    #[test]
    fn disambiguator_input_is_length_prefixed_normalised_pair() {
        assert_eq!(
            disambiguator("ACME", "invoicing-pro"),
            h("4:acme13:invoicing-pro", 6)
        );
        assert_eq!(
            disambiguator("{3F2A9C1E7B4D4E0A9C551D2E3F4A5B6C}", "crm"),
            h("36:3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c3:crm", 6)
        );
        // a separator-based encoding would collide on these pairs; lengths keep them apart
        assert_ne!(disambiguator("a\nb", "c"), disambiguator("a", "b\nc"));
        assert_ne!(disambiguator("ab", "c"), disambiguator("a", "bc"));
        // order matters
        assert_ne!(disambiguator("acme", "crm"), disambiguator("crm", "acme"));
    }

    #[test]
    fn collisions_share_plain_domain_but_not_disambiguated() {
        let r = root("apps.example.com");
        type Pair<'a> = (&'a str, &'a str);
        let pairs: &[(Pair, Pair)] = &[
            // UUIDv7-style ids sharing their first 8 hex
            (
                ("01890a5d-ac96-774b-bcce-b302099a8057", "crm"),
                ("01890a5d-ac97-7c3e-9d1f-5e2a4b6c8d90", "crm"),
            ),
            // slugs that truncate to the same 12 characters
            (
                ("acme", "invoicing-professional"),
                ("acme", "invoicing-pro"),
            ),
            (("acme", "invoicing pro"), ("acme", "Invoicing_Pro")),
        ];
        for ((t1, e1), (t2, e2)) in pairs {
            assert_eq!(app_domain(t1, e1, &r), app_domain(t2, e2, &r));
            assert_ne!(
                disambiguated_app_domain(t1, e1, &r),
                disambiguated_app_domain(t2, e2, &r)
            );
            assert!(!is_computed_domain(
                &disambiguated_app_domain(t1, e1, &r),
                t2,
                e2,
                &r
            ));
        }
        // one UUID, any spelling → same domains (no collision with itself)
        let spellings = [
            "3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c",
            "{3F2A9C1E-7B4D-4E0A-9C55-1D2E3F4A5B6C}",
            "urn:uuid:3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c",
            "3f2a9c1e7b4d4e0a9c551d2e3f4a5b6c",
        ];
        for s in spellings {
            assert_eq!(
                disambiguated_app_domain(s, "crm", &r),
                disambiguated_app_domain(spellings[0], "crm", &r)
            );
        }
    }

    #[test]
    fn is_computed_domain_table() {
        let r = root("apps.example.com");
        let dis = disambiguated_app_domain("acme", "crm", &r);
        let cases: Vec<(String, bool)> = vec![
            ("acme--crm.apps.example.com".into(), true),
            (dis.clone(), true),
            ("ACME--crm.apps.example.com".into(), false),
            ("acme--crm.apps.example.com.".into(), false),
            ("acme--crm.example.com".into(), false),
            ("acme--crm-000000.apps.example.com".into(), false),
            (format!("{dis}x"), false),
            ("".into(), false),
        ];
        for (d, want) in cases {
            assert_eq!(is_computed_domain(&d, "acme", "crm", &r), want, "{d:?}");
        }
        // the ids are normalised the same way on both sides
        assert!(is_computed_domain(
            "acme--crm.apps.example.com",
            " ACME ",
            "{crm}",
            &r
        ));
    }

    #[test]
    fn domain_root_accepts() {
        let max = root_of_len(MAX_DOMAIN_ROOT_LEN);
        assert_eq!(max.len(), 219);
        for s in [
            "example.com",
            "apps.example.com",
            "a.b",
            "xn--p1ai.ru",
            "1.2",
            &max,
        ] {
            let r = DomainRoot::parse(s).unwrap();
            assert_eq!(r.as_str(), s);
            assert_eq!(r.to_string(), s);
            assert_eq!(s.parse::<DomainRoot>().unwrap(), r);
        }
        assert_eq!(MAX_DOMAIN_ROOT_LEN, 219);
    }

    #[test]
    fn domain_root_rejects() {
        let long_label = format!("{}.com", "a".repeat(64));
        let too_long = root_of_len(MAX_DOMAIN_ROOT_LEN + 1);
        let way_too_long = ["abc"; 70].join(".");
        let cases: Vec<(&str, &str)> = vec![
            (
                "",
                r#"domain root is empty; set it to the DNS zone app domains are created under, e.g. "apps.example.com""#,
            ),
            (
                "Example.com",
                r#"domain root "Example.com" has uppercase letters; write it in lowercase: "example.com""#,
            ),
            (
                "Example.com.",
                r#"domain root "Example.com." has uppercase letters; write it in lowercase: "example.com""#,
            ),
            (
                "example.com.",
                r#"domain root "example.com." ends with a dot; drop the trailing dot: "example.com""#,
            ),
            (
                "com",
                r#"domain root "com" has a single label; use at least two, e.g. "apps.com""#,
            ),
            (
                "-a.com",
                r#"domain root "-a.com": label "-a" starts or ends with '-'; each label is 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit"#,
            ),
            (
                "a-.com",
                r#"domain root "a-.com": label "a-" starts or ends with '-'; each label is 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit"#,
            ),
            (
                "a..com",
                r#"domain root "a..com" has an empty label (a leading dot or two dots in a row); remove the extra dot"#,
            ),
            (
                ".a.com",
                r#"domain root ".a.com" has an empty label (a leading dot or two dots in a row); remove the extra dot"#,
            ),
            (
                ".",
                r#"domain root "." has an empty label (a leading dot or two dots in a row); remove the extra dot"#,
            ),
            (
                "a_b.com",
                r#"domain root "a_b.com" contains '_'; use only lowercase letters, digits, '-' and '.'"#,
            ),
            (
                " example.com",
                r#"domain root " example.com" contains ' '; use only lowercase letters, digits, '-' and '.'"#,
            ),
            (
                "exa\nmple.com",
                r#"domain root "exa mple.com" contains '\n'; use only lowercase letters, digits, '-' and '.'"#,
            ),
            (
                "https://example.com",
                r#"domain root "https://example.com" contains ':'; use only lowercase letters, digits, '-' and '.'"#,
            ),
            (
                "bücher.de",
                r#"domain root "bücher.de" contains 'ü'; use only lowercase letters, digits, '-' and '.'"#,
            ),
        ];
        for (s, want) in cases {
            assert_eq!(DomainRoot::parse(s).unwrap_err().to_string(), want, "{s:?}");
        }
        assert!(matches!(
            DomainRoot::parse(&long_label),
            Err(NamingError::InvalidRootLabel {
                problem: "is longer than 63 characters",
                ..
            })
        ));
        assert_eq!(
            DomainRoot::parse(&too_long),
            Err(NamingError::RootTooLong {
                root: shown(&too_long),
                len: 220,
                max: 219
            })
        );
        assert!(DomainRoot::parse(&too_long).unwrap_err().to_string().contains(
            "is 220 characters long; at most 219 fit, leaving room for the app label within the 253-character DNS limit"
        ));
        assert!(matches!(
            DomainRoot::parse(&way_too_long),
            Err(NamingError::RootTooLong {
                len: 279,
                max: 219,
                ..
            })
        ));
    }

    #[test]
    fn check_domain_table() {
        let r63 = format!("{}.example.com", "a".repeat(63 - 12));
        let r64 = format!("{}.example.com", "a".repeat(64 - 12));
        let long_label = format!("{}.com", "a".repeat(64));
        let l254 = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(62),
        ]
        .join(".");
        let ok: Vec<(&str, Option<String>)> = vec![
            ("acme--crm.apps.example.com", None),
            ("a", None),
            (&r63, None),
            (
                &r64,
                Some(format!(
                    "domain {r64:?} is 64 characters long; over 63 it cannot be a certificate common name or a label value downstream (a shorter --domain-root avoids this)"
                )),
            ),
        ];
        for (d, want) in ok {
            let got = check_domain(d).unwrap();
            assert_eq!(got.warning().map(str::to_string), want, "{d:?}");
        }
        let bad: Vec<(&str, &str)> = vec![
            ("", "it is empty"),
            ("Acme.com", "it has uppercase letters; use lowercase"),
            ("acme.com.", "it ends with a dot; drop the trailing dot"),
            ("a_b.com", "it contains '_'; only lowercase letters, digits, '-' and '.' are allowed"),
            ("a..com", "it has an empty label (a leading dot or two dots in a row)"),
            ("-a.com", "label \"-a\" starts or ends with '-'; labels start and end with a letter or digit"),
            (&long_label, "label \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" is longer than 63 characters"),
            (&l254, "it is 254 characters long, over the limit of 253"),
        ];
        for (d, problem) in bad {
            assert_eq!(
                check_domain(d),
                Err(NamingError::InvalidDomain {
                    domain: shown(d),
                    problem: problem.into()
                }),
                "{d:?}"
            );
        }
        // error messages stay one line and bounded even for hostile input
        let hostile = format!("a\n{}", "x".repeat(10_000));
        let msg = check_domain(&hostile).unwrap_err().to_string();
        assert!(!msg.contains('\n') && msg.len() < 300, "{msg}");
    }

    #[test]
    fn computed_domain_with_long_root_warns() {
        let r = root("tenants.eu-west-1.apps.platform.internal.example.com");
        let d = app_domain("3f2a9c1e-7b4d-4e0a-9c55-1d2e3f4a5b6c", "invoicing-pro", &r);
        assert_eq!(
            d,
            "3f2a9c1e--invoicing-pr.tenants.eu-west-1.apps.platform.internal.example.com"
        );
        assert!(check_domain(&d).unwrap().warning().is_some());
        // the longest root still gives valid domains
        let max = root(&root_of_len(MAX_DOMAIN_ROOT_LEN));
        let d = disambiguated_app_domain("abcdefghijklmnop", "qrstuvwxyzabcd", &max);
        assert_eq!(d.len(), MAX_DNS1123_SUBDOMAIN_LEN);
        assert!(check_domain(&d).is_ok());
    }

    #[test]
    fn root_errors_stay_short_with_control_characters() {
        // Found by the naming fuzz target: 118 U+0019 quoted with `{:?}` grew to `\u{19}`
        // each and the error past 1 KiB.
        let root = format!("id'\0{}UUUUi-.com", "\u{19}".repeat(200));
        let msg = DomainRoot::parse(&root).unwrap_err().to_string();
        assert!(msg.len() < 1024, "{} bytes: {msg}", msg.len());
        assert!(!msg.contains("\\u{19}"), "{msg}");
    }

    #[test]
    fn shown_cuts_on_char_boundary() {
        assert_eq!(shown("abc"), "abc");
        let s = "é".repeat(100);
        assert_eq!(shown(&s), format!("{}…", "é".repeat(80)));
    }

    // ----- property tests -----

    fn k8s_name() -> impl Strategy<Value = String> {
        "[a-z0-9]([a-z0-9.-]{0,60}[a-z0-9])?"
    }

    fn any_id() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "\\PC{0,40}",
            "[ a-zA-Z0-9_.{}:-]{0,30}",
            "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
            "\\{?(urn:uuid:)?[0-9a-fA-F]{32}\\}?",
            "(xn|ab|a|)",
        ]
    }

    fn valid_root() -> impl Strategy<Value = String> {
        proptest::collection::vec("[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", 2..5)
            .prop_map(|labels| labels.join("."))
    }

    proptest! {
        #[test]
        fn label_value_is_always_a_valid_label_value(s in "\\PC{0,300}") {
            let v = label_value(&s);
            prop_assert!(is_label_value(&v), "{:?} -> {:?}", s, v);
            if is_label_value(&s) {
                prop_assert_eq!(v, s);
            }
        }
    }

    proptest! {
        #[test]
        fn attached_name_is_short_valid_deterministic(
            dep in prop_oneof![k8s_name(), any::<String>()],
            atr in prop_oneof![k8s_name(), any::<String>()],
            wl in any::<String>(),
            ver in any::<String>(),
        ) {
            let n = attached_name(&dep, &atr, &wl, &ver);
            prop_assert!(n.len() <= MAX_ATTACHED_NAME_LEN, "{}", n);
            prop_assert!(is_dns1123_label(&n), "{:?}", n);
            prop_assert_eq!(&n, &attached_name(&dep, &atr, &wl, &ver));
            let h8 = h(&format!("{wl}/{atr}/{ver}"), 8);
            prop_assert!(n.ends_with(&h8));
        }

        #[test]
        fn distinct_triples_give_distinct_attached_names(
            dep in k8s_name(),
            a in (k8s_name(), k8s_name(), "[a-zA-Z0-9._-]{1,20}"),
            b in (k8s_name(), k8s_name(), "[a-zA-Z0-9._-]{1,20}"),
        ) {
            prop_assume!(a != b);
            // the same deployment name, so prefixes often coincide: the hash tells them apart
            prop_assert_ne!(attached_name(&dep, &a.1, &a.0, &a.2), attached_name(&dep, &b.1, &b.0, &b.2));
        }

        #[test]
        fn domain_part_is_a_short_label_without_double_dash(id in any_id()) {
            let p = domain_part(&id);
            prop_assert!((MIN_PART_LEN..=SLUG_PART_LEN).contains(&p.part.len()), "{:?}", p);
            prop_assert!(is_dns1123_label(&p.part), "{:?}", p);
            prop_assert!(!p.part.contains("--"), "{:?}", p);
            prop_assert_eq!(&p, &domain_part(&id));
            prop_assert_eq!(normalize_id(&p.normalized_id), p.normalized_id.clone());
        }

        /// Asserted for every generated (tenant, extension, root): both forms are valid
        /// lowercase DNS-1123 subdomains with labels ≤ 63 (check_domain passes); their first
        /// label contains "--" exactly once, at byte index ≥ 3 (so it is neither `ab--`- nor
        /// `xn--`-shaped: chars 2..4 are never "--"); deterministic; plain ≠ disambiguated;
        /// the disambiguated first label is the plain one + "-" + 6 hex; both are
        /// recognised by is_computed_domain. Root labels are the operator's and not checked.
        #[test]
        fn app_domains_are_valid_and_well_shaped(t in any_id(), e in any_id(), r in valid_root()) {
            let r = DomainRoot::parse(&r).unwrap();
            let plain = app_domain(&t, &e, &r);
            let dis = disambiguated_app_domain(&t, &e, &r);
            for d in [&plain, &dis] {
                prop_assert!(is_dns1123_subdomain(d), "{}", d);
                prop_assert!(check_domain(d).is_ok(), "{}", d);
                prop_assert_eq!(d.to_ascii_lowercase(), d.clone());
                let (first, rest) = d.split_once('.').unwrap();
                prop_assert_eq!(rest, r.as_str());
                prop_assert_eq!(first.matches("--").count(), 1, "{}", first);
                let at = first.find("--").unwrap();
                prop_assert!(at >= 3, "{}", first);
                prop_assert_ne!(first.get(2..4), Some("--"));
                prop_assert!(is_computed_domain(d, &t, &e, &r));
            }
            prop_assert_ne!(&plain, &dis);
            prop_assert_eq!(&plain, &app_domain(&t, &e, &r));
            prop_assert_eq!(&dis, &disambiguated_app_domain(&t, &e, &r));
            let plain_first = plain.split_once('.').unwrap().0;
            let dis_first = dis.split_once('.').unwrap().0;
            prop_assert_eq!(dis_first, format!("{plain_first}-{}", disambiguator(&t, &e)));
            prop_assert!(disambiguator(&t, &e).bytes().all(|b| b.is_ascii_hexdigit()));
        }

        #[test]
        fn distinct_normalised_pairs_give_distinct_disambiguated_domains(
            a in (any_id(), any_id()), b in (any_id(), any_id()),
        ) {
            let na = (normalize_id(&a.0), normalize_id(&a.1));
            let nb = (normalize_id(&b.0), normalize_id(&b.1));
            prop_assume!(na != nb);
            let r = root("apps.example.com");
            prop_assert_ne!(disambiguated_app_domain(&a.0, &a.1, &r), disambiguated_app_domain(&b.0, &b.1, &r));
        }

        #[test]
        fn uuid_spellings_normalise_alike(u in "[0-9a-f]{32}", upper in any::<bool>(), dashes in any::<bool>(), braces in any::<bool>(), urn in any::<bool>()) {
            let canonical = format!("{}-{}-{}-{}-{}", &u[0..8], &u[8..12], &u[12..16], &u[16..20], &u[20..]);
            let mut s = if dashes { canonical.clone() } else { u.clone() };
            if upper { s = s.to_ascii_uppercase(); }
            if urn { s = format!("urn:uuid:{s}"); }
            if braces { s = format!("{{{s}}}"); }
            let p = domain_part(&s);
            prop_assert_eq!(p.normalized_id, canonical);
            prop_assert_eq!(p.kind, PartKind::Uuid);
            prop_assert_eq!(p.part, u[..8].to_string());
        }

        #[test]
        fn domain_root_parse_accepts_only_valid_roots(s in prop_oneof![valid_root(), any::<String>(), "[a-zA-Z0-9.-]{0,30}"]) {
            match DomainRoot::parse(&s) {
                Ok(r) => {
                    prop_assert_eq!(r.as_str(), s.as_str());
                    prop_assert!(is_dns1123_subdomain(&s));
                    prop_assert!(s.contains('.'));
                    prop_assert!(s.len() <= MAX_DOMAIN_ROOT_LEN);
                    prop_assert!(s.split('.').all(is_dns1123_label));
                }
                Err(e) => {
                    let msg = e.to_string();
                    prop_assert!(!msg.chars().any(char::is_control), "{}", msg);
                }
            }
        }

        #[test]
        fn valid_roots_parse(s in valid_root()) {
            prop_assert!(DomainRoot::parse(&s).is_ok());
        }

        #[test]
        fn label_checks_agree(s in "[a-z0-9-]{0,70}") {
            prop_assert_eq!(is_dns1123_label(&s), is_dns1123_subdomain(&s) && s.len() <= 63);
            if is_dns1123_label(&s) {
                prop_assert!(is_label_value(&s));
            }
        }
    }
}
