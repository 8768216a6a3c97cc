//! The four placeholders of SPEC 3.1, usable in any string value of an attached object.
//!
//! Syntax, chosen to feel like Go templates (which users know from Helm) without being one:
//! - A placeholder is `{{`, optional spaces/tabs, one of `.DeploymentName`, `.Version`,
//!   `.Namespace`, `.WorkloadName` (case-sensitive, as in Go templates), optional
//!   spaces/tabs, `}}`. So `{{.Version}}`, `{{ .Version }}` and `{{  .Version\t}}` are all
//!   the same placeholder; `{{ . Version }}`, `{{ .version }}` and `{{- .Version }}` are errors.
//! - Every `{{` opens a placeholder; it closes at the first `}}` after it. Whatever lies in
//!   between must be one of the four, so `{{ .Foo }}`, `{{}}` and nesting
//!   (`{{ {{ .Version }} }}`) are errors, and a `{{` with no `}}` after it is an error.
//! - A `}}` that closes nothing is plain text. Closing braces are common in values that
//!   are not templates at all (JSON in an annotation: `{"a":{"b":1}}`), and rejecting them
//!   would buy nothing: the two readings cannot be confused once `{{` is strict.
//! - Substitution is one pass: substituted values are never scanned again, so the output
//!   does not depend on what the values contain.

use std::borrow::Cow;

use serde_json::Value;

use crate::borrowed_json::Value as Doc;

/// The placeholders, as users write them, for messages.
pub const ALLOWED: &str =
    "{{ .DeploymentName }}, {{ .Version }}, {{ .Namespace }}, {{ .WorkloadName }}";

/// Why a string's placeholders are not well formed. Offsets are byte offsets into the
/// string, pointing at the `{{` that starts the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceholderError {
    /// `{{ ... }}` holding something other than the four placeholders.
    #[error(
        "unknown placeholder {placeholder} at byte {offset}{hint}; the allowed placeholders \
         are {ALLOWED}",
        placeholder = crate::text::quote_short(.text, 60),
        hint = match .suggestion { Some(s) => format!(" (did you mean {s}?)"), None => String::new() }
    )]
    Unknown {
        /// The placeholder as written, braces included (may be long; cut in the message).
        text: String,
        /// Byte offset of its `{{`.
        offset: usize,
        /// A close match (`{{ .version }}` → `{{ .Version }}`), when there is one.
        suggestion: Option<&'static str>,
    },
    /// A `{{` with no `}}` after it.
    #[error(
        "unclosed \"{{{{\" at byte {offset}: close the placeholder with \"}}}}\"; the allowed \
         placeholders are {ALLOWED}"
    )]
    Unclosed {
        /// Byte offset of the `{{`.
        offset: usize,
    },
}

/// The values substituted for the placeholders, for one target Deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vars<'a> {
    /// `{{ .DeploymentName }}`: the target Deployment's name.
    pub deployment_name: &'a str,
    /// `{{ .Version }}`: its `tether.dev/version` label, or its name when the label is missing.
    pub version: &'a str,
    /// `{{ .Namespace }}`: the namespace of the AttachedResource (and of the Deployment).
    pub namespace: &'a str,
    /// `{{ .WorkloadName }}`: `spec.workloadRef.name`.
    pub workload_name: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    DeploymentName,
    Version,
    Namespace,
    WorkloadName,
}

impl Var {
    const ALL: [(Var, &'static str, &'static str); 4] = [
        (
            Var::DeploymentName,
            ".DeploymentName",
            "{{ .DeploymentName }}",
        ),
        (Var::Version, ".Version", "{{ .Version }}"),
        (Var::Namespace, ".Namespace", "{{ .Namespace }}"),
        (Var::WorkloadName, ".WorkloadName", "{{ .WorkloadName }}"),
    ];

    fn value<'a>(self, vars: &Vars<'a>) -> &'a str {
        match self {
            Var::DeploymentName => vars.deployment_name,
            Var::Version => vars.version,
            Var::Namespace => vars.namespace,
            Var::WorkloadName => vars.workload_name,
        }
    }
}

enum Segment<'s> {
    Text(&'s str),
    Placeholder(Var),
}

/// Where the first `{{` (`c` = `{`) or `}}` (`c` = `}`) starts in `s`. Same answer as
/// `str::find("{{")`, but `str::find` builds a Two-Way searcher on every call, which costs
/// more than the short strings of an object (every string of every review passes here).
fn find_double(s: &str, c: u8) -> Option<usize> {
    let b = s.as_bytes();
    let mut from = 0;
    while let Some(i) = memchr::memchr(c, b.get(from..)?) {
        let at = from + i;
        if b.get(at + 1) == Some(&c) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Splits `s` into text and placeholders, failing at the first malformed placeholder.
fn scan(s: &str) -> impl Iterator<Item = Result<Segment<'_>, PlaceholderError>> + '_ {
    let mut pos = 0usize;
    let mut done = false;
    let mut pending: Option<Var> = None;
    std::iter::from_fn(move || {
        if let Some(name) = pending.take() {
            return Some(Ok(Segment::Placeholder(name)));
        }
        if done {
            return None;
        }
        let rest = s.get(pos..)?;
        let Some(rel_open) = find_double(rest, b'{') else {
            done = true;
            return if rest.is_empty() {
                None
            } else {
                Some(Ok(Segment::Text(rest)))
            };
        };
        let open = pos + rel_open;
        let text = &rest[..rel_open];
        let inner_start = open + 2;
        let Some(rel_close) = s.get(inner_start..).and_then(|r| find_double(r, b'}')) else {
            done = true;
            return Some(Err(PlaceholderError::Unclosed { offset: open }));
        };
        let close = inner_start + rel_close;
        let inner = s.get(inner_start..close).unwrap_or_default();
        let trimmed = inner.trim_matches([' ', '\t']);
        match Var::ALL.iter().find(|(_, n, _)| *n == trimmed) {
            Some((name, _, _)) => {
                pos = close + 2;
                if text.is_empty() {
                    Some(Ok(Segment::Placeholder(*name)))
                } else {
                    pending = Some(*name);
                    Some(Ok(Segment::Text(text)))
                }
            }
            None => {
                done = true;
                let suggestion = Var::ALL
                    .iter()
                    .find(|(_, n, _)| {
                        let squeezed: String =
                            trimmed.chars().filter(|c| !c.is_whitespace()).collect();
                        squeezed.eq_ignore_ascii_case(n) || squeezed.eq_ignore_ascii_case(&n[1..])
                    })
                    .map(|(_, _, display)| *display);
                Some(Err(PlaceholderError::Unknown {
                    text: s.get(open..close + 2).unwrap_or_default().to_string(),
                    offset: open,
                    suggestion,
                }))
            }
        }
    })
}

/// Checks that every `{{ ... }}` in `s` is one of the four placeholders (SPEC 5.1 rule 6).
/// Reports the first problem only; fixing it and re-applying shows the next.
///
/// ```
/// use tether::policy::placeholders::validate;
/// assert!(validate("{{ .WorkloadName }}-{{.Version}}").is_ok());
/// assert!(validate("no placeholders } here }}").is_ok());
/// let err = validate("x-{{ .Foo }}").unwrap_err();
/// assert!(err.to_string().starts_with("unknown placeholder \"{{ .Foo }}\" at byte 2;"));
/// ```
pub fn validate(s: &str) -> Result<(), PlaceholderError> {
    if find_double(s, b'{').is_none() {
        return Ok(());
    }
    for seg in scan(s) {
        seg?;
    }
    Ok(())
}

/// Substitutes the placeholders in `s`. A string without `{{` is returned borrowed, so the
/// common case costs no allocation.
///
/// ```
/// use tether::policy::placeholders::{render, Vars};
/// let vars = Vars { deployment_name: "web-v2", version: "v2", namespace: "shop", workload_name: "web" };
/// assert_eq!(render("{{ .WorkloadName }}-{{.Version}}.{{ .Namespace }}", &vars).unwrap(), "web-v2.shop");
/// assert!(render("{{ .Version", &vars).is_err());
/// ```
pub fn render<'s>(s: &'s str, vars: &Vars<'_>) -> Result<Cow<'s, str>, PlaceholderError> {
    if find_double(s, b'{').is_none() {
        return Ok(Cow::Borrowed(s));
    }
    let mut out = String::with_capacity(s.len());
    for seg in scan(s) {
        match seg? {
            Segment::Text(t) => out.push_str(t),
            Segment::Placeholder(name) => out.push_str(name.value(vars)),
        }
    }
    Ok(Cow::Owned(out))
}

/// A placeholder error in a JSON document, with the field path of the offending string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{error}", if .path.is_empty() { String::new() } else { format!("{}: ", .path) })]
pub struct RenderError {
    /// Path of the string, relative to the rendered value (`spec.metrics[0].resource.name`);
    /// empty when the value itself is the string.
    pub path: String,
    /// What is wrong with it.
    pub error: PlaceholderError,
}

/// Renders every string value (not keys) in `v`, at any depth. Used by the controller to
/// render `spec.object` per target Deployment.
///
/// ```
/// use serde_json::json;
/// use tether::policy::placeholders::{render_value, Vars};
/// let vars = Vars { deployment_name: "web-v2", version: "v2", namespace: "shop", workload_name: "web" };
/// let out = render_value(&json!({"metadata": {"labels": {"v": "{{ .Version }}"}}, "n": 1}), &vars).unwrap();
/// assert_eq!(out, json!({"metadata": {"labels": {"v": "v2"}}, "n": 1}));
/// ```
pub fn render_value(v: &Value, vars: &Vars<'_>) -> Result<Value, RenderError> {
    let mut path = String::new();
    render_at(v, vars, &mut path)
}

fn render_at(v: &Value, vars: &Vars<'_>, path: &mut String) -> Result<Value, RenderError> {
    Ok(match v {
        Value::String(s) => match render(s, vars) {
            Ok(r) => Value::String(r.into_owned()),
            Err(error) => {
                return Err(RenderError {
                    path: path.clone(),
                    error,
                })
            }
        },
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                crate::policy::push_index(path, i);
                out.push(render_at(item, vars, path)?);
                path.truncate(len);
            }
            Value::Array(out)
        }
        Value::Object(map) => {
            let mut out = serde_json::Map::with_capacity(map.len());
            for (k, item) in map {
                let len = path.len();
                crate::policy::push_key(path, k);
                out.insert(k.clone(), render_at(item, vars, path)?);
                path.truncate(len);
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

/// Calls `f(path, error)` for every string value under `v` whose placeholders are not well
/// formed; `path` starts from `base`. Used by admission to report every bad string at once.
pub(crate) fn check_value(v: &Doc<'_>, base: &str, f: &mut dyn FnMut(&str, PlaceholderError)) {
    check_at(v, None, base, f);
}

/// One step from a value to a child: an object key or an array index.
#[derive(Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// Where a value sits: the steps from the root, as a chain of frames on the call stack. The
/// path string is built only for a bad string (almost every object has none), not for every
/// key visited.
struct Trail<'a> {
    parent: Option<&'a Trail<'a>>,
    step: Step<'a>,
}

impl Trail<'_> {
    fn write(&self, path: &mut String) {
        if let Some(parent) = self.parent {
            parent.write(path);
        }
        match self.step {
            Step::Key(k) => crate::policy::push_key(path, k),
            Step::Index(i) => crate::policy::push_index(path, i),
        }
    }
}

fn check_at(
    v: &Doc<'_>,
    trail: Option<&Trail<'_>>,
    base: &str,
    f: &mut dyn FnMut(&str, PlaceholderError),
) {
    match v {
        Doc::String(s) => {
            if let Err(e) = validate(s) {
                let mut path = base.to_string();
                if let Some(t) = trail {
                    t.write(&mut path);
                }
                f(&path, e);
            }
        }
        Doc::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let here = Trail {
                    parent: trail,
                    step: Step::Index(i),
                };
                check_at(item, Some(&here), base, f);
            }
        }
        Doc::Object(map) => {
            for (k, item) in map {
                let here = Trail {
                    parent: trail,
                    step: Step::Key(k),
                };
                check_at(item, Some(&here), base, f);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
