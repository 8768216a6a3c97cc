//! `promtool check metrics` on a live scrape of the metrics listener (SPEC 8).
//! promtool comes from the Debian package `prometheus` (scripts/test.sh installs it).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_scrape_passes_promtool() {
    let s = Server::start(&[]);
    let mut h1 = H1::connect(s.addr, &s.ca).await;
    for i in 0..3 {
        h1.send(request(
            "POST",
            "/validate",
            Some("application/json"),
            unhandled_review(&format!("u{i}")),
        ))
        .await;
    }
    h1.send(request(
        "POST",
        "/mutate",
        Some("application/json"),
        b"junk".to_vec(),
    ))
    .await;
    let scrape = s.metrics();
    assert!(
        scrape.contains("tether_admission_duration_seconds_bucket"),
        "{scrape}"
    );
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(
            "promtool not found: install the Debian package `prometheus` (scripts/test.sh does)",
        );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{report}\n--- scrape ---\n{scrape}"
    );
    assert!(report.trim().is_empty(), "promtool reported:\n{report}");
}
