//! Issue 13, item 5: no unbounded echo. User-supplied strings reach `status.message`, the
//! plain-text 400s and the decision log line cut to a fixed length and without control
//! characters (through `tether::text`), whatever their size. Through the real server, so the
//! log line checked is the one tether writes.

mod common;

use common::*;
use serde_json::{json, Value};

/// The longest deny message tether sends (characters).
const MAX_MESSAGE: usize = 8 * 1024;

fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}')
}

fn appdomain(domain: &str) -> Value {
    review(
        "apd-uid",
        "tether.dev",
        "v1alpha1",
        "AppDomain",
        "appdomains",
        "CREATE",
        "payments",
        Some(json!({
            "apiVersion": "tether.dev/v1alpha1", "kind": "AppDomain",
            "metadata": {"name": "shop", "namespace": "payments"},
            "spec": {"tenantId": "acme", "extensionId": "shop", "domain": domain}
        })),
        None,
    )
}

/// Every decision log line is bounded and one line; returns them once `n` are written.
fn decision_lines(s: &Server, n: usize) -> Vec<Value> {
    let logs = s.logs_when(|l| l.matches("\"admission decision\"").count() >= n);
    let mut out = Vec::new();
    for line in logs.lines() {
        assert!(line.len() < 32 * 1024, "log line of {} bytes", line.len());
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if line.contains("\"admission decision\"") {
            for (k, f) in v.as_object().unwrap() {
                if let Some(t) = f.as_str() {
                    assert!(!t.chars().any(is_unsafe), "{k} has control characters");
                }
            }
            out.push(v);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_and_hostile_strings_are_cut_and_cleaned() {
    let s = Server::start(&["--domain-root", "apps.example.com"]);

    // A 2 MB spec.domain: denied, quoting at most a few hundred characters of it, and the
    // message still says what to do.
    let r = post_raw(
        &s,
        "/validate",
        serde_json::to_vec(&appdomain(&"d".repeat(2_000_000))).unwrap(),
    )
    .await;
    let v = r.json();
    assert_eq!(v["response"]["uid"], "apd-uid");
    assert_eq!(v["response"]["allowed"], false);
    let msg = v["response"]["status"]["message"].as_str().unwrap();
    assert!(msg.chars().count() <= MAX_MESSAGE, "{}", msg.len());
    assert!(msg.len() < 2048, "{} bytes", msg.len());
    assert!(msg.starts_with("spec.domain: \"ddd"), "{msg}");
    assert!(msg.contains("…\" is not the domain computed"), "{msg}");
    assert!(msg.contains("leave it empty and tether fills in"), "{msg}");

    // 2.5 MB username, name and uid (one at a time: the body cap is 3 MiB). The uid is
    // echoed in full in the answer (the API server requires it), never in the log.
    let big = "u".repeat(2_500_000);
    for (field, ptr) in [
        ("username", "/request/userInfo/username"),
        ("name", "/request/name"),
        ("uid", "/request/uid"),
    ] {
        let mut rv: Value = serde_json::from_slice(&unhandled_review("small-uid")).unwrap();
        *rv.pointer_mut(ptr).unwrap() = json!(big);
        let r = post_raw(&s, "/validate", serde_json::to_vec(&rv).unwrap()).await;
        assert_eq!(r.status, 200, "{field}");
        let v = r.json();
        assert_eq!(v["response"]["allowed"], true, "{field}");
        if field == "uid" {
            assert_eq!(v["response"]["uid"].as_str().unwrap().len(), big.len());
        }
    }

    // Control characters in request.operation and in a userInfo.extra key: the 400 deny
    // names the field without them.
    let mut rv: Value = serde_json::from_slice(&unhandled_review("ctl-op")).unwrap();
    rv["request"]["operation"] = json!("CRE\nATE\u{1b}[31m\u{0}\u{2028}x");
    let r = post_raw(&s, "/validate", serde_json::to_vec(&rv).unwrap()).await;
    let v = r.json();
    assert_eq!(v["response"]["status"]["code"], 400);
    let msg = v["response"]["status"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("request.operation: unknown variant"),
        "{msg}"
    );
    assert!(!msg.chars().any(is_unsafe), "{msg:?}");

    let mut rv: Value = serde_json::from_slice(&unhandled_review("ctl-extra")).unwrap();
    rv["request"]["userInfo"]["extra"] =
        json!({"evil\u{1b}]0;pwned\u{7}\n\u{2029}key": "not-a-list"});
    let r = post_raw(&s, "/validate", serde_json::to_vec(&rv).unwrap()).await;
    let v = r.json();
    assert_eq!(v["response"]["status"]["code"], 400);
    let msg = v["response"]["status"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("request.userInfo.extra.evil ]0;pwned"),
        "{msg:?}"
    );
    assert!(!msg.chars().any(is_unsafe), "{msg:?}");

    // A plain-text 400 (not a v1 review) quoting a hostile apiVersion.
    let body = format!(
        r#"{{"apiVersion":"v1{}\u001b\n","kind":"AdmissionReview","request":{{"uid":"x"}}}}"#,
        "v".repeat(1_000_000)
    );
    let r = post_raw(&s, "/validate", body.into_bytes()).await;
    assert_eq!(r.status, 400);
    let t = r.text();
    assert!(t.len() < 1024, "{} bytes", t.len());
    assert!(!t.trim_end().chars().any(is_unsafe), "{t:?}");

    // The log: one bounded, clean line per decision; the huge fields are cut.
    let lines = decision_lines(&s, 6);
    assert_eq!(lines.len(), 6, "{}", s.logs());
    for l in &lines {
        for f in ["uid", "name", "user", "deny_message"] {
            let n = l[f].as_str().unwrap_or("").chars().count();
            assert!(n <= MAX_MESSAGE, "{f}: {n}");
        }
        for f in ["uid", "name", "user"] {
            assert!(l[f].as_str().unwrap_or("").chars().count() <= 256, "{f}");
        }
    }
}
