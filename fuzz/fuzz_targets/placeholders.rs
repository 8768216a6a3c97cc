//! (c) Placeholder validation and rendering (`tether::policy::placeholders`).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tether::policy::placeholders::{render, render_value, validate, PlaceholderError, Vars};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    /// Built from fragments so that well-formed and nearly well-formed placeholders are
    /// common; `raw` adds arbitrary text between them.
    fragments: Vec<Fragment<'a>>,
    deployment_name: &'a str,
    version: &'a str,
    namespace: &'a str,
    workload_name: &'a str,
}

#[derive(Debug, Arbitrary)]
enum Fragment<'a> {
    Open,
    Close,
    Space,
    Tab,
    Dot,
    Name(u8),
    Raw(&'a str),
}

const NAMES: [&str; 10] = [
    ".DeploymentName",
    ".Version",
    ".Namespace",
    ".WorkloadName",
    ".version",
    "DeploymentName",
    "- .Version",
    ".Foo",
    "{",
    "}",
];

fuzz_target!(|input: Input<'_>| {
    let mut s = String::new();
    for f in &input.fragments {
        match f {
            Fragment::Open => s.push_str("{{"),
            Fragment::Close => s.push_str("}}"),
            Fragment::Space => s.push(' '),
            Fragment::Tab => s.push('\t'),
            Fragment::Dot => s.push('.'),
            Fragment::Name(i) => s.push_str(NAMES[*i as usize % NAMES.len()]),
            Fragment::Raw(r) => s.push_str(r),
        }
    }
    let vars = Vars {
        deployment_name: input.deployment_name,
        version: input.version,
        namespace: input.namespace,
        workload_name: input.workload_name,
    };
    let checked = validate(&s);
    let rendered = render(&s, &vars);
    // validate and render agree on every input.
    match (&checked, &rendered) {
        (Ok(()), Ok(out)) => {
            // No "{{" means nothing to substitute.
            if !s.contains("{{") {
                assert_eq!(out.as_ref(), s.as_str());
            }
            assert_eq!(
                Some(out.as_ref()),
                reference(&s, &vars).as_deref(),
                "render differs from the reference for {s:?}"
            );
        }
        (Err(_), Err(_)) if reference(&s, &vars).is_some() => {
            panic!("render refuses {s:?}, which the reference accepts")
        }
        (Err(a), Err(b)) => {
            assert_eq!(a, b, "validate and render report different errors");
            let offset = match a {
                PlaceholderError::Unknown { offset, text, .. } => {
                    assert!(text.starts_with("{{") && text.ends_with("}}"), "{text:?}");
                    *offset
                }
                PlaceholderError::Unclosed { offset } => *offset,
            };
            // The offset points at the "{{" that starts the problem.
            assert_eq!(
                s.get(offset..offset + 2),
                Some("{{"),
                "offset {offset} in {s:?}"
            );
            let msg = a.to_string();
            assert!(!msg.is_empty());
            // Messages quote at most a bounded prefix of the input.
            assert!(msg.len() < 600, "message of {} bytes", msg.len());
        }
        _ => panic!("validate {checked:?} but render {rendered:?} for {s:?}"),
    }
    // The same string inside a JSON document renders the same way, with its path on error.
    let doc = serde_json::json!({"a": [1, {"b": s}], "k": null});
    match (render_value(&doc, &vars), &rendered) {
        (Ok(v), Ok(out)) => assert_eq!(v["a"][1]["b"].as_str(), Some(out.as_ref())),
        (Err(e), Err(err)) => {
            assert_eq!(&e.error, err);
            assert_eq!(e.path, "a[1].b");
        }
        (a, b) => panic!("render_value {a:?} but render {b:?}"),
    }
});

/// A deliberately naive second implementation of the documented syntax (module docs of
/// `tether::policy::placeholders`): every `{{` opens, the first `}}` after it closes, the
/// inside trimmed of spaces and tabs must be one of the four names; `None` on any error.
fn reference(s: &str, vars: &Vars<'_>) -> Option<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let close = after.find("}}")?;
        let value = match after[..close].trim_matches(|c| c == ' ' || c == '\t') {
            ".DeploymentName" => vars.deployment_name,
            ".Version" => vars.version,
            ".Namespace" => vars.namespace,
            ".WorkloadName" => vars.workload_name,
            _ => return None,
        };
        out.push_str(value);
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Some(out)
}
