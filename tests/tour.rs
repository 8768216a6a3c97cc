//! The README's tour, with the real `curl` and the real `tether review`.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

fn example(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn curl(s: &Server, args: &[&str]) -> String {
    let ca = s.certs.join("ca.crt");
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body", "--cacert", ca.to_str().unwrap()])
        .args(args)
        .output()
        .expect("curl is installed (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn readme_curl_tour_works() {
    let s = Server::start(&[]);
    let url = format!("https://localhost:{}/validate?timeout=10s", s.addr.port());
    let ok: Value = serde_json::from_str(&curl(
        &s,
        &[
            "-H",
            "Content-Type: application/json",
            "--data",
            &format!("@{}", example("reviews/attached-create.json")),
            &url,
        ],
    ))
    .unwrap();
    assert_eq!(
        ok["response"]["uid"],
        "5d2e6f0a-3b1c-4d7e-9f10-2a3b4c5d6e7f"
    );
    assert_eq!(ok["response"]["allowed"], true);
    let denied: Value = serde_json::from_str(&curl(
        &s,
        &[
            "-H",
            "Content-Type: application/json",
            "--data",
            &format!("@{}", example("reviews/attached-denied.json")),
            &url,
        ],
    ))
    .unwrap();
    assert_eq!(denied["response"]["allowed"], false);
    assert_eq!(denied["response"]["status"]["code"], 403);
    let msg = denied["response"]["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("spec.object.kind:") && msg.contains("spec.object.metadata.name:"),
        "{msg}"
    );
    let ready = curl(
        &s,
        &[&format!("https://localhost:{}/readyz", s.addr.port())],
    );
    assert_eq!(ready.trim(), "ready");
    // HTTP/2 with curl as well.
    let h2 = Command::new("curl")
        .args([
            "-sS",
            "--http2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version}",
            "--cacert",
        ])
        .arg(s.certs.join("ca.crt"))
        .arg(format!("https://localhost:{}/healthz", s.addr.port()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&h2.stdout), "2");
    let metrics = curl(
        &s,
        &[&format!(
            "http://127.0.0.1:{}/metrics",
            s.metrics_addr.port()
        )],
    );
    assert!(metrics.contains("tether_admission_requests_total{decision=\"denied\",kind=\"AttachedResource\",operation=\"CREATE\",reason=\"policy\",webhook=\"validate\"} 1"), "{metrics}");
}

#[test]
fn review_command_answers_offline_like_the_server() {
    let run = |file: &str, extra: &[&str]| {
        let out = Command::new(tether_bin())
            .arg("review")
            .arg("-f")
            .arg(example(file))
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            serde_json::from_slice::<Value>(&out.stdout).ok(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, v, _) = run("reviews/attached-create.json", &[]);
    assert_eq!(code, Some(0));
    assert_eq!(v.unwrap()["response"]["allowed"], true);
    let (code, v, _) = run("reviews/attached-denied.json", &[]);
    assert_eq!(code, Some(1), "a deny exits 1, as `check` does");
    assert_eq!(v.unwrap()["response"]["status"]["code"], 403);
    let (code, _, _) = run("reviews/attached-denied.json", &["--exit-zero"]);
    assert_eq!(code, Some(0), "--exit-zero: the behaviour before issue 15");
    let (_, v, _) = run("reviews/attached-create.json", &["--webhook", "mutate"]);
    assert_eq!(v.unwrap()["response"]["patchType"], "JSONPatch");
    let (code, _, err) = run("attached-hpa.yaml", &[]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("tether review: body is not valid JSON"),
        "{err}"
    );
}
