//! The command line as a user meets it (issue 15): `check` never passes what it did not
//! check, answers as the cluster would, reads input as kubectl does, and every command
//! documents itself. Every test runs the real binary.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::*;
use serde_json::{json, Value};

/// Runs `tether ARGS` with `stdin` as standard input; (exit code, stdout, stderr).
fn run(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(tether_bin())
        .args(args)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // A command may exit without reading its input; a broken pipe is then fine.
    let _ = input.write_all(stdin.as_bytes());
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn example(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

const AR: &str = "apiVersion: tether.dev/v1alpha1\nkind: AttachedResource\n";
const HPA_SPEC: &str = "spec:\n  workloadRef: {name: web}\n  object:\n    apiVersion: autoscaling/v2\n    kind: HorizontalPodAutoscaler\n    spec: {minReplicas: 1, maxReplicas: 3, scaleTargetRef: {}}\n";

#[test]
fn misspelt_and_unhandled_kinds_are_skipped_not_allowed() {
    let input = format!(
        "apiVersion: tether.dev/v1alpha1\nkind: AttachedResourse\nmetadata: {{name: typo}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm}}\n---\n{AR}metadata: {{name: ok, labels: {{tether.dev/workload: web}}}}\n{HPA_SPEC}"
    );
    let (code, out, err) = run(&["check", "-f", "-"], &input);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        "OBJECT                         DECISION     DETAILS\n\
AttachedResourse default/typo  skipped      tether.dev has no kind \"AttachedResourse\" (did you mean AttachedResource?): the API server would refuse the object\n\
ConfigMap default/cm           skipped      ConfigMap (v1) is not in tether's webhook rules (AttachedResource, AppDomain, and plainKinds with the tether.dev/target label)\n\
AttachedResource default/ok    allowed      -\n\
3 objects: 1 pass, 0 fail, 0 warn, 2 skip, 0 error\n"
    );
    // Strict CI: anything not checked fails the run.
    let (code, _, _) = run(&["check", "-f", "-", "--fail-on-skip"], &input);
    assert_eq!(code, 1);
}

#[test]
fn empty_input_and_unreadable_objects_exit_2() {
    for input in [
        "",
        "---\n# only a comment\n---\n",
        "kind: List\napiVersion: v1\nitems: []\n",
    ] {
        let (code, out, err) = run(&["check", "-f", "-"], input);
        assert_eq!(code, 2, "{input:?}: {out}");
        assert_eq!(
            err.trim_end(),
            "tether check: no objects in the input (<stdin>); pass manifests with -f FILE, -f DIR or -f - (stdin)"
        );
    }
    let (code, out, _) = run(
        &["check", "-f", "-"],
        &format!("{AR}metadata: {{}}\n{HPA_SPEC}"),
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("error        not a Kubernetes object: metadata.name missing"),
        "{out}"
    );
    assert!(
        out.ends_with("1 object: 0 pass, 0 fail, 0 warn, 0 skip, 1 error\n"),
        "{out}"
    );
    // Usage errors are 2 as well.
    let (code, _, err) = run(&["check"], "");
    assert_eq!(code, 2, "{err}");
}

#[test]
fn exit_codes_are_0_pass_1_deny() {
    let (code, out, _) = run(&["check", "-f", &example("attached-hpa.yaml")], "");
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = run(&["check", "-f", &example("attached-invalid.yaml")], "");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.ends_with("3 objects: 0 pass, 3 fail, 0 warn, 0 skip, 0 error\n"),
        "{out}"
    );
    // Each violation on its own line; no mutating warning for objects then denied.
    assert!(out.contains(
        "AttachedResource payments/broken-hpa         denied(400)  spec.object.spec.minReplicas: must not be 0: attached resources may not scale a workload to zero; set it to 1 or more, or remove it\n                                                          spec.object.spec.scaleTargetRef: tether owns this field"
    ), "{out}");
    assert!(!out.contains("warning:"), "{out}");
}

#[test]
fn skipped_namespaces_and_policy_come_from_the_charts_values() {
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("values.yaml");
    std::fs::write(
        &values,
        "namespaceSelector:\n  excludeNamespaces: [legacy]\nbannedKinds: [HorizontalPodAutoscaler]\n",
    )
    .unwrap();
    let obj = |ns: &str| {
        format!("{AR}metadata: {{name: a, namespace: {ns}, labels: {{tether.dev/workload: web}}}}\n{HPA_SPEC}")
    };
    let input = [
        obj("legacy"),
        obj("tether-system"),
        obj("kube-system"),
        obj("shop"),
    ]
    .join("---\n");
    let v = values.to_str().unwrap();
    let (code, out, err) = run(&["check", "-f", "-", "--values", v, "-o", "json"], &input);
    assert_eq!(code, 1, "{out}{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    let decisions: Vec<&str> = doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["decision"].as_str().unwrap())
        .collect();
    assert_eq!(decisions, ["skip", "skip", "skip", "fail"]);
    assert_eq!(
        doc["results"][0]["message"],
        "namespace \"legacy\" is excluded by the webhook configurations' namespaceSelector (kube-system, tether's own namespace and namespaceSelector.excludeNamespaces); tether never sees it"
    );
    assert!(doc["results"][3]["message"]
        .as_str()
        .unwrap()
        .contains("kind \"HorizontalPodAutoscaler\" may not be attached: it is in --banned-kinds"));
    assert_eq!(
        doc["summary"],
        json!({"objects": 4, "pass": 0, "fail": 1, "warn": 0, "skip": 3, "error": 0})
    );
    // A flag given explicitly wins over the values file, as --set wins over -f in Helm.
    let (code, _, _) = run(
        &["check", "-f", "-", "--values", v, "--banned-kinds", "Pod"],
        &input,
    );
    assert_eq!(code, 0);
    // The chart's own values file reads, and gives the binary's defaults.
    let chart = format!("{}/charts/tether/values.yaml", env!("CARGO_MANIFEST_DIR"));
    let (code, out, _) = run(
        &[
            "check",
            "-f",
            &example("attached-invalid.yaml"),
            "--values",
            &chart,
        ],
        "",
    );
    assert_eq!(code, 1);
    assert!(
        out.ends_with("3 objects: 0 pass, 3 fail, 0 warn, 0 skip, 0 error\n"),
        "{out}"
    );
}

#[test]
fn yaml_is_read_as_kubectl_reads_it() {
    let (code, _, err) = run(
        &["check", "-f", "-"],
        &format!("{AR}metadata: {{name: a, name: b}}\n{HPA_SPEC}"),
    );
    assert_eq!(code, 2);
    assert!(
        err.starts_with(
            "tether check: <stdin>: document 1: metadata: duplicate entry with key \"name\""
        ),
        "{err}"
    );
    let (code, _, err) = run(
        &["check", "-f", "-"],
        &format!(
            "{AR}metadata: {{name: a}}\n{}",
            HPA_SPEC.replace("maxReplicas: 3", "maxReplicas: .inf")
        ),
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("document 1: spec.object.spec.maxReplicas: inf is not a number JSON can hold"),
        "{err}"
    );
    // Merge keys are applied before tether sees the object.
    let input = format!(
        "{AR}metadata: {{name: a, labels: {{tether.dev/workload: web}}}}\nspec:\n  workloadRef: {{name: web}}\n  object:\n    apiVersion: autoscaling/v2\n    kind: HorizontalPodAutoscaler\n    spec:\n      <<: {{minReplicas: 0, maxReplicas: 3}}\n      scaleTargetRef: {{}}\n"
    );
    let (code, out, _) = run(&["check", "-f", "-"], &input);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("spec.object.spec.minReplicas: must not be 0"),
        "{out}"
    );
}

#[test]
fn unknown_fields_in_tether_kinds_are_reported() {
    let input = format!(
        "{AR}metadata: {{name: a}}\n{}",
        HPA_SPEC.replace("workloadRef", "workloadref")
    );
    let (code, out, _) = run(&["check", "-f", "-"], &input);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out.lines().nth(1).unwrap(),
        "AttachedResource default/a  denied(400)  spec.workloadref: unknown field, did you mean workloadRef?"
    );
}

#[test]
fn inputs_files_directories_stdin_and_lists() {
    let dir = tempfile::tempdir().unwrap();
    let one =
        format!("{AR}metadata: {{name: one, labels: {{tether.dev/workload: web}}}}\n{HPA_SPEC}");
    std::fs::create_dir_all(dir.path().join("sub/deeper")).unwrap();
    std::fs::write(dir.path().join("a.yaml"), &one).unwrap();
    std::fs::write(dir.path().join("sub/b.yml"), one.replace("one", "two")).unwrap();
    std::fs::write(
        dir.path().join("sub/deeper/c.json"),
        json!({"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "three"}}]}).to_string(),
    )
    .unwrap();
    std::fs::write(dir.path().join("sub/notes.txt"), "not a manifest").unwrap();
    let extra = dir.path().join("extra.yaml.bak");
    std::fs::write(&extra, one.replace("one", "four")).unwrap();
    let d = dir.path().to_str().unwrap();
    let (code, out, err) = run(
        &[
            "check",
            "-f",
            d,
            "-f",
            extra.to_str().unwrap(),
            "-f",
            "-",
            "-o",
            "json",
        ],
        &one.replace("one", "five"),
    );
    assert_eq!(code, 0, "{out}{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    let got: Vec<(String, String)> = doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["source"].as_str().unwrap().replace(d, "DIR"),
                r["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("DIR/a.yaml#1", "one"),
        ("DIR/sub/b.yml#1", "two"),
        ("DIR/sub/deeper/c.json#1", "three"),
        ("DIR/extra.yaml.bak#1", "four"),
        ("<stdin>#1", "five"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn json_yaml_and_mutated_outputs() {
    let (code, out, err) = run(
        &[
            "check",
            "-f",
            &example("attached-invalid.yaml"),
            "-o",
            "json",
        ],
        "",
    );
    assert_eq!(code, 1, "{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    let r = &doc["results"][0];
    assert_eq!(
        (
            &r["apiVersion"],
            &r["kind"],
            &r["namespace"],
            &r["name"],
            &r["decision"]
        ),
        (
            &json!("tether.dev/v1alpha1"),
            &json!("AttachedResource"),
            &json!("payments"),
            &json!("sneaky-deployment"),
            &json!("fail")
        )
    );
    assert_eq!(
        r["violations"][1],
        json!({"field": "spec.object.metadata.name", "message": "must not be set: tether names each copy itself (one per Deployment version); remove it", "code": 403})
    );
    assert_eq!(r["warnings"], json!([]));
    // YAML carries the same document.
    let (_, yaml, _) = run(
        &[
            "check",
            "-f",
            &example("attached-invalid.yaml"),
            "-o",
            "yaml",
        ],
        "",
    );
    let from_yaml: Value = serde_yaml_ng::from_str(&yaml).unwrap();
    assert_eq!(from_yaml, doc);
    // --mutated: the objects as stored, patches applied (gator expand, kyverno apply -o).
    let (code, out, _) = run(
        &[
            "check",
            "-f",
            &example("labelled-targets.yaml"),
            "-o",
            "yaml",
            "--mutated",
        ],
        "",
    );
    assert_eq!(code, 0);
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&out)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    assert_eq!(docs.len(), 3);
    assert_eq!(
        docs[1]["spec"]["scaleTargetRef"],
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"})
    );
    assert_eq!(
        docs[2]["spec"]["selector"],
        json!({"matchLabels": {"app": "web", "tier": "frontend"}})
    );
}

#[test]
fn review_exits_1_on_deny_and_decodes_the_patch() {
    let (code, out, _) = run(
        &["review", "-f", &example("reviews/attached-denied.json")],
        "",
    );
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["response"]["allowed"],
        false
    );
    let (code, _, _) = run(
        &[
            "review",
            "-f",
            &example("reviews/attached-denied.json"),
            "--exit-zero",
        ],
        "",
    );
    assert_eq!(code, 0);
    let (code, out, _) = run(
        &[
            "review",
            "-f",
            &example("reviews/attached-create.json"),
            "--webhook",
            "mutate",
            "--decode-patch",
        ],
        "",
    );
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["response"]["patch"][0]["op"], "add", "{v}");
}

/// A pseudo-terminal: (the controlling side, the terminal side for a child).
fn pty() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    // SAFETY: plain libc calls on descriptors this function owns; each is checked.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(m >= 0);
        assert_eq!(libc::grantpt(m), 0);
        assert_eq!(libc::unlockpt(m), 0);
        let name = std::ffi::CStr::from_ptr(libc::ptsname(m)).to_owned();
        let s = libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
        assert!(s >= 0);
        (std::fs::File::from_raw_fd(m), std::fs::File::from_raw_fd(s))
    }
}

/// With a terminal on stdin and no -f, `review` shows its usage instead of waiting.
#[test]
fn review_on_a_terminal_prints_usage() {
    let (master, slave) = pty();
    let out = Command::new(tether_bin())
        .arg("review")
        .stdin(Stdio::from(slave))
        .output()
        .unwrap();
    drop(master);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Usage: tether review"), "{err}");
    assert!(
        err.contains("tether review: no input: pass -f FILE or pipe an AdmissionReview into it"),
        "{err}"
    );
}

/// Text logs on a terminal: coloured, unless NO_COLOR is set.
#[test]
fn text_logs_on_a_terminal_honour_no_color() {
    use std::io::Read;
    for (no_color, want_ansi) in [(None, true), (Some("1"), false)] {
        let dir = tempfile::tempdir().unwrap();
        let (mut master, slave) = pty();
        let mut cmd = Command::new(tether_bin());
        cmd.args([
            "serve",
            "--standalone",
            "--controllers",
            "none",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--log-format",
            "text",
        ])
        .arg("--dev-certs-dir")
        .arg(dir.path())
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(slave));
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains("tether ready") {
            let n = master.read(&mut buf).unwrap();
            assert!(n > 0, "terminal closed: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
        let _ = child.kill();
        let _ = child.wait();
        let text = String::from_utf8_lossy(&seen);
        assert_eq!(
            text.contains('\u{1b}'),
            want_ansi,
            "NO_COLOR={no_color:?}: {text:?}"
        );
    }
}

#[test]
fn certs_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (code, _, err) = run(&["certs", "--out", d, "--dns", "localhost"], "");
    assert_eq!(code, 0, "{err}");
    let ca = std::fs::read(dir.path().join("ca.crt")).unwrap();
    let (code, _, err) = run(&["certs", "--out", d, "--dns", "localhost"], "");
    assert_eq!(code, 2);
    assert!(
        err.contains("ca.crt")
            && err.contains(
                "already exist; a new CA would not be trusted by the caBundle in use. Pass --force"
            ),
        "{err}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("ca.crt")).unwrap(),
        ca,
        "untouched"
    );
    let (code, _, _) = run(&["certs", "--out", d, "--dns", "localhost", "--force"], "");
    assert_eq!(code, 0);
    assert_ne!(std::fs::read(dir.path().join("ca.crt")).unwrap(), ca);
}

#[test]
fn domain_applies_reserved_names_and_takes_domain_root() {
    let (code, out, _) = run(
        &[
            "domain",
            "--tenant",
            "acme",
            "--extension",
            "shop",
            "--domain-root",
            "apps.example.com",
        ],
        "",
    );
    assert_eq!((code, out.as_str()), (0, "acme--shop.apps.example.com\n"));
    let (code, out2, _) = run(
        &[
            "domain",
            "--tenant",
            "acme",
            "--extension",
            "shop",
            "--root",
            "apps.example.com",
        ],
        "",
    );
    assert_eq!((code, out2), (0, out));
    let (code, _, err) = run(
        &[
            "domain",
            "--tenant",
            "www",
            "--extension",
            "shop",
            "--root",
            "apps.example.com",
        ],
        "",
    );
    assert_eq!(code, 1);
    assert_eq!(
        err.trim_end(),
        "tether domain: --tenant \"www\" gives the domain part \"www\", which is reserved (--reserved-names, env TETHER_RESERVED_NAMES): the webhook would deny this AppDomain; use another id"
    );
}

#[test]
fn version_completion_and_help() {
    let (code, out, _) = run(&["version", "-o", "json"], "");
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(!v["gitCommit"].as_str().unwrap().is_empty());
    assert!(v["buildDate"].as_str().unwrap().ends_with('Z'), "{v}");
    let (_, text, _) = run(&["--version"], "");
    assert_eq!(
        text.trim_end(),
        format!(
            "tether {} (commit {}, built {})",
            v["version"].as_str().unwrap(),
            v["gitCommit"].as_str().unwrap(),
            v["buildDate"].as_str().unwrap()
        )
    );
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, _) = run(&["completion", shell], "");
        assert_eq!(code, 0);
        assert!(
            out.contains("fail-on-skip") && out.contains("tether"),
            "{shell}"
        );
    }
    for sub in [
        "serve",
        "review",
        "check",
        "crds",
        "certs",
        "domain",
        "version",
        "completion",
    ] {
        let (code, out, _) = run(&[sub, "--help"], "");
        assert_eq!(code, 0);
        for outside in ["../", "/work", "shared/", "SPEC"] {
            assert!(!out.contains(outside), "{sub} --help refers to {outside:?}");
        }
    }
    let (_, serve, _) = run(&["serve", "--help"], "");
    assert!(
        serve.contains("--log-level")
            && serve.contains("RUST_LOG")
            && serve.contains("[env: TETHER_LOG_LEVEL="),
        "{serve}"
    );
    let (_, check, _) = run(&["check", "--help"], "");
    assert!(
        check.contains("Exit codes: 0 every object passed"),
        "{check}"
    );
}

/// JSON log lines have one `message` key (the event), and the start-up line states the
/// policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_have_unique_keys_and_state_the_policy() {
    let s = Server::start(&[]);
    let body: Value = serde_json::from_str(
        &std::fs::read_to_string(example("reviews/attached-denied.json")).unwrap(),
    )
    .unwrap();
    let r = post(&s, "/validate", &body).await;
    assert_eq!(r["allowed"], false);
    let logs = s.logs_when(|l| l.contains("\"admission decision\""));
    let mut decisions = 0;
    for line in logs.lines() {
        assert_eq!(line.matches("\"message\":").count(), 1, "{line}");
        let v: Value = serde_json::from_str(line).unwrap();
        if v["message"] == "admission decision" {
            decisions += 1;
            assert!(
                v["deny_message"].as_str().unwrap().contains("spec."),
                "{line}"
            );
        }
    }
    assert_eq!(decisions, 1, "{logs}");
    let policy = logs
        .lines()
        .find(|l| l.contains("\"policy in effect\""))
        .expect("policy line");
    let v: Value = serde_json::from_str(policy).unwrap();
    assert_eq!(v["banned_kinds"], tether::cli::DEFAULT_BANNED_KINDS_CSV);
    assert_eq!(v["mode"], "standalone");
}

/// Text logs without a terminal have no colour codes; localhost works as a listen
/// address; an empty ban list is a start-up warning.
#[test]
fn text_logs_localhost_and_empty_ban_list() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(tether_bin())
        .args([
            "serve",
            "--standalone",
            "--controllers",
            "none",
            "--listen",
            "localhost:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--log-format",
            "text",
            "--banned-kinds=",
        ])
        .arg("--dev-certs-dir")
        .arg(dir.path())
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let ready = line.contains("tether ready");
        seen.push(line);
        if ready {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let all = seen.join("\n");
    assert!(!all.contains('\u{1b}'), "ANSI codes in {all}");
    assert!(
        all.contains("WARN") && all.contains("--banned-kinds (env BANNED_KINDS) is empty"),
        "{all}"
    );
    assert!(all.contains("banned_kinds=none"), "{all}");
    let ready = seen.last().unwrap();
    assert!(
        ready.contains("tether ready") && ready.contains("listen=127.0.0.1:"),
        "{ready}"
    );
    // --banned-kinds=none: the same policy, said explicitly, no warning.
    let (code, out, _) = run(
        &["check", "-f", "-", "--banned-kinds=none"],
        &format!(
            "{AR}metadata: {{name: a, labels: {{tether.dev/workload: web}}}}\n{}",
            HPA_SPEC.replace(
                "autoscaling/v2\n    kind: HorizontalPodAutoscaler",
                "v1\n    kind: Pod"
            )
        ),
    );
    assert_eq!(code, 0, "{out}");
}

#[test]
fn serve_without_cluster_or_certificates_says_what_to_do() {
    let (code, _, err) = run(
        &["serve", "--controllers", "none", "--log-format", "text"],
        "",
    );
    assert_eq!(code, 1);
    // The plain line (the JSON/text log line may come after it: the log writer is async).
    let last = err
        .lines()
        .find(|l| l.starts_with("tether serve: "))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        last.contains("tether serve --standalone") && last.contains("install the Helm chart"),
        "{err}"
    );
    let (code, _, err) = run(
        &[
            "serve",
            "--controllers",
            "none",
            "--tls-cert",
            "/nonexistent.crt",
            "--tls-key",
            "/nonexistent.key",
        ],
        "",
    );
    assert_eq!(code, 1);
    // The plain line (the JSON/text log line may come after it: the log writer is async).
    let last = err
        .lines()
        .find(|l| l.starts_with("tether serve: "))
        .unwrap_or_else(|| panic!("{err}"));
    assert_eq!(last.matches("os error 2").count(), 1, "{last}");
    // Certificates but no cluster: the same two ways forward.
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    make_certs(&certs, &["localhost"]);
    let out = Command::new(tether_bin())
        .args([
            "serve",
            "--controllers",
            "none",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .arg("--tls-cert")
        .arg(certs.join("tls.crt"))
        .arg("--tls-key")
        .arg(certs.join("tls.key"))
        .env_remove("KUBECONFIG")
        .env("HOME", dir.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    // The plain line (the JSON/text log line may come after it: the log writer is async).
    let last = err
        .lines()
        .find(|l| l.starts_with("tether serve: "))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        last.starts_with("tether serve: no Kubernetes cluster configuration found"),
        "{err}"
    );
    assert!(
        last.contains("tether serve --standalone") && last.contains("install the Helm chart"),
        "{err}"
    );
    let (code, _, err) = run(&["serve", "--listen", "tether.example:8443"], "");
    assert_eq!(code, 2);
    assert!(
        err.contains("use an IP address, e.g. 127.0.0.1:8443"),
        "{err}"
    );
}
