use super::*;
use proptest::prelude::*;
use serde_json::json;

/// The check reads borrowed JSON (`crate::borrowed_json`); these tests write objects with
/// `json!`.
fn check_value(v: &Value, base: &str, f: &mut dyn FnMut(&str, PlaceholderError)) {
    super::check_value(&v.into(), base, f)
}

const VARS: Vars<'static> = Vars {
    deployment_name: "web-v2",
    version: "v2",
    namespace: "shop",
    workload_name: "web",
};

fn unknown(text: &str, offset: usize, suggestion: Option<&'static str>) -> PlaceholderError {
    PlaceholderError::Unknown {
        text: text.to_string(),
        offset,
        suggestion,
    }
}

#[test]
fn render_table() {
    let cases: Vec<(&str, Result<&str, PlaceholderError>)> = vec![
        ("", Ok("")),
        ("plain", Ok("plain")),
        ("{{ .DeploymentName }}", Ok("web-v2")),
        ("{{ .Version }}", Ok("v2")),
        ("{{ .Namespace }}", Ok("shop")),
        ("{{ .WorkloadName }}", Ok("web")),
        ("{{.Version}}", Ok("v2")),
        ("{{  .Version  }}", Ok("v2")),
        ("{{\t.Version\t}}", Ok("v2")),
        ("a{{.Version}}b{{ .Namespace }}c", Ok("av2bshopc")),
        ("{{.Version}}{{.Version}}", Ok("v2v2")),
        ("}}", Ok("}}")),
        ("a }} b", Ok("a }} b")),
        ("{\"a\":{\"b\":1}}", Ok("{\"a\":{\"b\":1}}")),
        ("{{ .Version }}}", Ok("v2}")),
        ("{ {.Version} }", Ok("{ {.Version} }")),
        ("{{ .Version", Err(PlaceholderError::Unclosed { offset: 0 })),
        (
            "ok {{.Version}} {{",
            Err(PlaceholderError::Unclosed { offset: 16 }),
        ),
        (
            "{{ .Version }",
            Err(PlaceholderError::Unclosed { offset: 0 }),
        ),
        ("x{{ .Foo }}", Err(unknown("{{ .Foo }}", 1, None))),
        ("{{}}", Err(unknown("{{}}", 0, None))),
        ("{{ }}", Err(unknown("{{ }}", 0, None))),
        (
            "{{ . Version }}",
            Err(unknown("{{ . Version }}", 0, Some("{{ .Version }}"))),
        ),
        (
            "{{ .version }}",
            Err(unknown("{{ .version }}", 0, Some("{{ .Version }}"))),
        ),
        (
            "{{ Namespace }}",
            Err(unknown("{{ Namespace }}", 0, Some("{{ .Namespace }}"))),
        ),
        ("{{- .Version }}", Err(unknown("{{- .Version }}", 0, None))),
        (
            "{{\n.Version}}",
            Err(unknown("{{\n.Version}}", 0, Some("{{ .Version }}"))),
        ),
        (
            "{{ {{ .Version }} }}",
            Err(unknown("{{ {{ .Version }}", 0, None)),
        ),
        ("{{{ .Version }}", Err(unknown("{{{ .Version }}", 0, None))),
        (
            "{{.Version}}{{ .Bad }}",
            Err(unknown("{{ .Bad }}", 12, None)),
        ),
        ("é{{.X}}", Err(unknown("{{.X}}", 2, None))),
    ];
    crate::table_test::each(cases, |(input, want)| {
        let got = render(input, &VARS);
        match want {
            Ok(s) => assert_eq!(got.as_deref(), Ok(s), "{input:?}"),
            Err(e) => {
                assert_eq!(got, Err(e.clone()), "{input:?}");
                assert_eq!(validate(input), Err(e), "{input:?}");
            }
        }
    });
}

#[test]
fn no_placeholder_is_borrowed() {
    assert!(matches!(
        render("plain }} text", &VARS),
        Ok(Cow::Borrowed(_))
    ));
    assert!(matches!(render("{{.Version}}", &VARS), Ok(Cow::Owned(_))));
}

#[test]
fn substituted_values_are_not_expanded_again() {
    let vars = Vars {
        version: "{{ .Namespace }}",
        ..VARS
    };
    assert_eq!(render("{{ .Version }}", &vars).unwrap(), "{{ .Namespace }}");
}

#[test]
fn error_messages() {
    assert_eq!(
        validate("x-{{ .Foo }}").unwrap_err().to_string(),
        "unknown placeholder \"{{ .Foo }}\" at byte 2; the allowed placeholders are \
         {{ .DeploymentName }}, {{ .Version }}, {{ .Namespace }}, {{ .WorkloadName }}"
    );
    assert_eq!(
        validate("{{ .version }}").unwrap_err().to_string(),
        "unknown placeholder \"{{ .version }}\" at byte 0 (did you mean {{ .Version }}?); \
         the allowed placeholders are {{ .DeploymentName }}, {{ .Version }}, \
         {{ .Namespace }}, {{ .WorkloadName }}"
    );
    assert_eq!(
        validate("ab{{ .Version").unwrap_err().to_string(),
        "unclosed \"{{\" at byte 2: close the placeholder with \"}}\"; the allowed \
         placeholders are {{ .DeploymentName }}, {{ .Version }}, {{ .Namespace }}, \
         {{ .WorkloadName }}"
    );
    // Long junk is cut in the message.
    let long = format!("{{{{{}}}}}", "x".repeat(500));
    let msg = validate(&long).unwrap_err().to_string();
    assert!(msg.len() < 250, "{msg}");
    assert!(msg.contains("…"), "{msg}");
}

#[test]
fn render_value_walks_strings_not_keys() {
    let v = json!({
        "{{ .Version }}": "{{ .Version }}",
        "list": ["{{.Namespace}}", 1, null, true, {"x": "{{ .DeploymentName }}"}],
        "n": 2.5
    });
    assert_eq!(
        render_value(&v, &VARS).unwrap(),
        json!({
            "{{ .Version }}": "v2",
            "list": ["shop", 1, null, true, {"x": "web-v2"}],
            "n": 2.5
        })
    );
    assert_eq!(
        render_value(&json!("{{.Version}}"), &VARS).unwrap(),
        json!("v2")
    );
}

#[test]
fn render_value_error_path() {
    let v = json!({"spec": {"metrics": [{"resource": {"name": "{{ .Foo }}"}}]}});
    let err = render_value(&v, &VARS).unwrap_err();
    assert_eq!(err.path, "spec.metrics[0].resource.name");
    assert_eq!(err.error, unknown("{{ .Foo }}", 0, None));
    assert!(err
        .to_string()
        .starts_with("spec.metrics[0].resource.name: unknown placeholder"));
    let err = render_value(&json!("{{"), &VARS).unwrap_err();
    assert_eq!(err.path, "");
    assert!(err.to_string().starts_with("unclosed"));
    let err = render_value(&json!({"a.b": ["ok", "{{"]}), &VARS).unwrap_err();
    assert_eq!(err.path, "[\"a.b\"][1]");
}

#[test]
fn check_value_reports_every_string() {
    let v = json!({"a": ["{{ .X }}", "ok", "{{"], "b": {"c": "{{.Y}}"}});
    let mut seen = Vec::new();
    check_value(&v, "spec.object", &mut |p, e| seen.push((p.to_string(), e)));
    assert_eq!(
        seen,
        vec![
            ("spec.object.a[0]".to_string(), unknown("{{ .X }}", 0, None)),
            (
                "spec.object.a[2]".to_string(),
                PlaceholderError::Unclosed { offset: 0 }
            ),
            ("spec.object.b.c".to_string(), unknown("{{.Y}}", 0, None)),
        ]
    );
}

#[test]
fn check_value_paths_quote_keys_and_start_from_the_base() {
    // (value, base, expected paths in order)
    let rows: [(Value, &str, &[&str]); 4] = [
        (json!("{{"), "spec.object", &["spec.object"]),
        (json!("{{"), "", &[""]),
        (
            json!({"a.b": [{"x y": "{{", "ok": "{{ .Version }}"}], "c": [[1, "{{ .v }}"]]}),
            "",
            &["[\"a.b\"][0][\"x y\"]", "c[0][1]"],
        ),
        (
            json!({"metadata": {"labels": {"app.kubernetes.io/name": "{{ x"}}}),
            "spec.object",
            &["spec.object.metadata.labels[\"app.kubernetes.io/name\"]"],
        ),
    ];
    crate::table_test::each(rows, |(v, base, want)| {
        let mut seen = Vec::new();
        check_value(&v, base, &mut |p, _| seen.push(p.to_string()));
        assert_eq!(seen, want, "value {v} from base {base:?}");
    });
}

fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{{".to_string()),
        Just("}}".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just(" ".to_string()),
        Just(".Version".to_string()),
        Just("{{ .Version }}".to_string()),
        Just("{{.Namespace}}".to_string()),
        Just("{{ .DeploymentName}}".to_string()),
        Just("{{ .WorkloadName }}".to_string()),
        "[a-zé\\-. ]{0,4}",
    ]
}

fn template() -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 0..10).prop_map(|v| v.concat())
}

#[test]
fn find_double_table() {
    for (s, open, close) in [
        ("", None, None),
        ("{", None, None),
        ("{{", Some(0), None),
        ("{{{", Some(0), None),
        ("a{b{{c}}", Some(3), Some(6)),
        ("}{}}{{", Some(4), Some(2)),
        ("é{{ü}}", Some(2), Some(6)),
    ] {
        assert_eq!(find_double(s, b'{'), open, "{{ in {s:?}");
        assert_eq!(find_double(s, b'}'), close, "}} in {s:?}");
    }
}

proptest! {
    #[test]
    fn find_double_agrees_with_str_find(s in "[{}a é]{0,24}") {
        prop_assert_eq!(find_double(&s, b'{'), s.find("{{"));
        prop_assert_eq!(find_double(&s, b'}'), s.find("}}"));
    }

    #[test]
    fn render_never_panics(s in any::<String>()) {
        let rendered = render(&s, &VARS);
        prop_assert_eq!(validate(&s).is_ok(), rendered.is_ok());
    }

    #[test]
    fn render_never_panics_on_brace_soup(s in template()) {
        let _ = render(&s, &VARS);
    }

    #[test]
    fn valid_means_renders_without_placeholders(s in template()) {
        if validate(&s).is_ok() {
            let out = render(&s, &VARS);
            prop_assert!(out.is_ok());
            let out = out.unwrap();
            for (_, _, p) in Var::ALL {
                prop_assert!(!out.contains(p));
            }
            prop_assert!(!out.contains("{{"));
        } else {
            prop_assert!(render(&s, &VARS).is_err());
        }
    }

    #[test]
    fn text_without_open_braces_is_unchanged(s in "[^{]*") {
        prop_assert_eq!(render(&s, &VARS).unwrap(), s.as_str());
    }
}
