//! App domains (SPEC §4): id normalisation, the domain root, plain and disambiguated
//! domains, and the `spec.domain` check.

use std::fmt;
use std::str::FromStr;

use super::dns::{host_problem, HostProblem};
use super::*;

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
pub(super) fn canonical_uuid(s: &str) -> Option<String> {
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
pub(super) fn slug(normalized: &str) -> String {
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
    crate::text::cut_bytes(&out, SLUG_PART_LEN)
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
            part: crate::text::cut_bytes(&normalized_id, UUID_PART_LEN).to_string(),
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
pub(super) fn plain_label(tenant_id: &str, extension_id: &str) -> String {
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
