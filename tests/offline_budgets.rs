//! Issue 13, item 6: offline inputs are bounded. `tether check` refuses deep flow nesting
//! before the (quadratic) YAML parser sees it, `tether review` and `check` refuse inputs over
//! `--max-input-bytes`, `review` refuses bodies over the JSON value cap, and a deeply nested
//! `--rbac-file` stops `serve` at start-up with a message naming the file. Timings of the
//! full-size inputs are in bench/RESULTS.md (bench/attack/run.sh offline).

mod common;

use std::process::{Command, Output, Stdio};

use common::*;

fn tether(args: &[&str]) -> Output {
    Command::new(tether_bin())
        .args(args)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn check_refuses_deep_flow_nesting_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("nested.yaml");
    let d = 50_000;
    std::fs::write(
        &f,
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\ndata: {{a: {}{}}}\n",
            "[".repeat(d),
            "]".repeat(d)
        ),
    )
    .unwrap();
    let o = tether(&["check", "-f", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(
        stderr(&o).trim_end(),
        format!(
            "tether check: {}: line 4: flow collections ([ ], {{ }}) nested deeper than 128 levels; tether refuses such YAML before parsing it",
            f.display()
        )
    );
}

#[test]
fn review_and_check_refuse_input_over_the_size_cap() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("review.json");
    std::fs::write(&f, unhandled_review("cap")).unwrap();
    let path = f.to_str().unwrap();
    let o = tether(&["review", "-f", path, "--max-input-bytes", "100"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o).trim_end(),
        format!("tether review: cannot read {path}: input is larger than 100 bytes (--max-input-bytes, env TETHER_MAX_INPUT_BYTES); raise the limit or split the input")
    );
    let o = tether(&["check", "-f", path, "--max-input-bytes", "100"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("input is larger than 100 bytes (--max-input-bytes"),
        "{}",
        stderr(&o)
    );
    // Within the cap: answered.
    let o = tether(&["review", "-f", path]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"uid\":\"cap\""));
}

#[test]
fn review_refuses_more_json_values_than_the_server_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("zeros.json");
    std::fs::write(&f, attack::zeros_review("z", 300_000)).unwrap();
    let o = tether(&["review", "-f", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o)
            .contains("holds about 300048 JSON values; tether accepts at most 131072 per review"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn serve_stops_on_a_deeply_nested_rbac_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("rbac.yaml");
    std::fs::write(
        &f,
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: x}}\nrules: {}\n",
            "[".repeat(100_000)
        ),
    )
    .unwrap();
    let certs = dir.path().join("certs");
    let o = tether(&[
        "serve",
        "--standalone",
        "--dev-certs-dir",
        certs.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--rbac-file",
        f.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!(
            "--rbac-file {}: RBAC file: line 4: flow collections ([ ], {{ }}) nested deeper than 128 levels",
            f.display()
        )),
        "{}",
        stderr(&o)
    );
}
