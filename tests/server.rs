//! Transport end-to-end: the real binary over real TLS with HTTP/1.1 and HTTP/2 clients.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uid_is_echoed_over_http1_keepalive_and_http2() {
    let s = Server::start(&[]);
    let mut h1 = H1::connect(s.addr, &s.ca).await;
    for i in 0..5 {
        let uid = format!("uid-h1-{i}");
        let r = h1
            .send(request(
                "POST",
                "/validate?timeout=10s",
                Some("application/json"),
                unhandled_review(&uid),
            ))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(v["kind"], "AdmissionReview");
        assert_eq!(v["response"]["uid"], uid.as_str());
        assert_eq!(v["response"]["allowed"], true);
        assert!(v["response"].get("patch").is_none());
    }
    let h2 = H2::connect(s.addr, &s.ca).await;
    // Concurrent streams on one HTTP/2 connection each get their own uid back.
    let futs = (0..16).map(|i| {
        let h2 = &h2;
        async move {
            let uid = format!("uid-h2-{i}");
            let r = h2
                .send(request(
                    "POST",
                    "/mutate?timeout=10s",
                    Some("application/json"),
                    unhandled_review(&uid),
                ))
                .await;
            assert_eq!(r.status, 200);
            assert_eq!(r.json()["response"]["uid"], uid.as_str());
        }
    });
    futures::future::join_all(futs).await;
    // Unknown kinds are allowed and counted.
    let m = s.metrics();
    assert_eq!(
        metric_value(
            &m,
            r#"tether_admission_requests_total{decision="allowed",kind="other",operation="CREATE",reason="unhandled_kind",webhook="validate"}"#
        ),
        Some(5.0),
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            r#"tether_admission_requests_total{decision="allowed",kind="other",operation="CREATE",reason="unhandled_kind",webhook="mutate"}"#
        ),
        Some(16.0),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_clear_statuses_and_never_kill_the_server() {
    let s = Server::start(&[]);
    let mut h1 = H1::connect(s.addr, &s.ca).await;
    let json_ct = Some("application/json");
    // (method, path, content type, body, expected status, expected message fragment)
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("POST", "/validate", json_ct, b"this is not json".to_vec(), 400, "not valid JSON"),
        ("POST", "/validate", json_ct, b"[1,2]".to_vec(), 400, "not a JSON object"),
        (
            "POST",
            "/validate",
            json_ct,
            br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"a"}}"#.to_vec(),
            400,
            "only speaks admission.k8s.io/v1",
        ),
        (
            "POST",
            "/mutate",
            json_ct,
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
            400,
            "request is missing",
        ),
        ("GET", "/validate", None, vec![], 405, "method GET is not allowed here; use POST"),
        ("PUT", "/mutate", json_ct, unhandled_review("x"), 405, "use POST"),
        ("POST", "/validate", Some("text/plain"), unhandled_review("x"), 415, "send application/json"),
        ("POST", "/validate", None, unhandled_review("x"), 415, "content type \"none\""),
        ("POST", "/nope", json_ct, unhandled_review("x"), 404, "not found"),
        ("POST", "/healthz", None, vec![], 405, "use GET"),
    ];
    // All cases go over one keep-alive connection (a bad request must not cost the client
    // its connection), and every case reports its own failure instead of stopping the table.
    let mut failed = Vec::new();
    for (method, path, ct, body, want, fragment) in cases {
        let r = h1.send(request(method, path, ct, body)).await;
        let ctype = r
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if r.status != want || !r.text().contains(fragment) {
            failed.push(format!(
                "{method} {path}: {} {:?}, want {want} containing {fragment:?}",
                r.status,
                r.text()
            ));
        }
        if !ctype.starts_with("text/plain") {
            failed.push(format!("{method} {path}: content type {ctype:?}"));
        }
        if want == 405 && r.headers.get("allow").is_none() {
            failed.push(format!("{method} {path}: 405 without Allow"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    // 4 MiB bodies: declared by Content-Length (refused before reading) and chunked without a
    // length (refused once 3 MiB have arrived). The server answers 413 and closes; the client
    // may see its own write fail, so read the answer off a raw connection.
    let big = vec![b' '; 4 * 1024 * 1024];
    let head = format!(
        "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        big.len()
    );
    let answer = raw_exchange(&s, head.as_bytes(), &big).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("larger than 3145728 bytes (3 MiB)"),
        "{answer}"
    );
    let parts: Vec<&[u8]> = big.chunks(64 * 1024).collect();
    let head = "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    let answer = raw_exchange(&s, head.as_bytes(), &chunked(&parts)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // A request that is a v1 review but has a broken field is answered with its uid (the API
    // server shows our message) rather than with an HTTP error.
    let mut bad = review(
        "uid-bad-op",
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        "CREATE",
        "default",
        None,
        None,
    );
    bad["request"]["operation"] = json!("EXPLODE");
    bad["request"]["userInfo"]["groups"] = json!("not-a-list");
    let r = h1
        .send(request(
            "POST",
            "/validate",
            json_ct,
            serde_json::to_vec(&bad).unwrap(),
        ))
        .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["response"]["uid"], "uid-bad-op");
    assert_eq!(v["response"]["allowed"], false);
    assert_eq!(v["response"]["status"]["code"], 400);
    assert!(
        v["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .starts_with("request.operation:"),
        "{v}"
    );
    // Still alive and serving on a fresh connection, both protocols.
    let h2 = H2::connect(s.addr, &s.ca).await;
    let r = h2.send(request("GET", "/healthz", None, vec![])).await;
    assert_eq!((r.status, r.text().trim()), (200, "ok"));
    let mut h1b = H1::connect(s.addr, &s.ca).await;
    let r = h1b
        .send(request(
            "POST",
            "/validate",
            json_ct,
            unhandled_review("after"),
        ))
        .await;
    assert_eq!(r.json()["response"]["uid"], "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_port_serves_only_metrics_and_health() {
    let s = Server::start(&[]);
    assert_eq!(plain_get(s.metrics_addr, "/healthz").unwrap().0, 200);
    assert_eq!(plain_get(s.metrics_addr, "/readyz").unwrap().0, 200);
    assert_eq!(plain_get(s.metrics_addr, "/validate").unwrap().0, 404);
    let m = s.metrics();
    for family in [
        "tether_build_info{commit=",
        "tether_tls_certificate_expiry_timestamp_seconds",
        "tether_tls_reloads_total{result=\"success\"} 0",
    ] {
        assert!(m.contains(family), "missing {family} in\n{m}");
    }
    let expiry = metric_value(&m, "tether_tls_certificate_expiry_timestamp_seconds").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // `tether certs` default validity is 365 days.
    assert!(
        (expiry - now - 365.0 * 86_400.0).abs() < 86_400.0,
        "{expiry}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_says_so_in_every_response_and_in_logs() {
    let s = Server::start(&[]);
    let mut h1 = H1::connect(s.addr, &s.ca).await;
    let r = h1
        .send(request(
            "POST",
            "/validate",
            Some("application/json"),
            unhandled_review("u"),
        ))
        .await;
    let w = r.json()["response"]["warnings"].clone();
    assert!(
        w.as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("standalone")),
        "{w}"
    );
    assert!(s
        .logs_when(|l| l.contains("runs standalone"))
        .contains("runs standalone"));
}

/// Replaces the served pair the way the kubelet updates a projected Secret: new files in a new
/// directory, then an atomic swap of the `..data` symlink the visible paths point through.
fn kubelet_swap(root: &std::path::Path, crt: &[u8], key: &[u8], gen: u32) {
    let dir = root.join(format!("..data_{gen}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tls.crt"), crt).unwrap();
    std::fs::write(dir.join("tls.key"), key).unwrap();
    let tmp = root.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(dir.file_name().unwrap(), &tmp).unwrap();
    std::fs::rename(&tmp, root.join("..data")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_through_symlink_swap_and_bad_pair_keeps_old() {
    // Lay out a kubelet-style secret volume and serve from it.
    let vol = tempfile::tempdir().unwrap();
    let gen1 = vol.path().join("gen1");
    let ca1 = make_certs(&gen1, &["localhost"]);
    kubelet_swap(
        vol.path(),
        &std::fs::read(gen1.join("tls.crt")).unwrap(),
        &std::fs::read(gen1.join("tls.key")).unwrap(),
        1,
    );
    std::os::unix::fs::symlink("..data/tls.crt", vol.path().join("tls.crt")).unwrap();
    std::os::unix::fs::symlink("..data/tls.key", vol.path().join("tls.key")).unwrap();
    let crt = vol.path().join("tls.crt");
    let key = vol.path().join("tls.key");
    let mut s = Server::start(&[
        "--tls-cert",
        crt.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    // Standalone serves its dev certs by default; this server must use the files we gave it.
    let mut old = H1::connect(s.addr, &ca1).await;
    let served1 = old.leaf.clone();
    assert_eq!(
        served1,
        pem_leaf(&std::fs::read(gen1.join("tls.crt")).unwrap())
    );

    // Rotate to a new pair under a new CA.
    let gen2 = vol.path().join("gen2");
    let ca2 = make_certs(&gen2, &["localhost"]);
    kubelet_swap(
        vol.path(),
        &std::fs::read(gen2.join("tls.crt")).unwrap(),
        &std::fs::read(gen2.join("tls.key")).unwrap(),
        2,
    );
    let served2 = wait_for_leaf(&s, &ca2, |leaf| leaf != served1).await;
    assert_eq!(
        served2,
        pem_leaf(&std::fs::read(gen2.join("tls.crt")).unwrap())
    );
    // The connection made before the rotation is unharmed.
    let r = old
        .send(request(
            "POST",
            "/validate",
            Some("application/json"),
            unhandled_review("old-conn"),
        ))
        .await;
    assert_eq!(r.json()["response"]["uid"], "old-conn");

    // A broken replacement (key of another pair) is refused; the current pair stays.
    let gen3 = vol.path().join("gen3");
    make_certs(&gen3, &["localhost"]);
    kubelet_swap(
        vol.path(),
        &std::fs::read(gen2.join("tls.crt")).unwrap(),
        &std::fs::read(gen3.join("tls.key")).unwrap(),
        3,
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = s.metrics();
        if metric_value(&m, r#"tether_tls_reloads_total{result="error"}"#) == Some(1.0) {
            assert_eq!(
                metric_value(&m, r#"tether_tls_reloads_total{result="success"}"#),
                Some(1.0)
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no reload error counted:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let still = H1::connect(s.addr, &ca2).await;
    assert_eq!(still.leaf, served2);
    assert!(
        s.logs_when(|l| l.contains("does not match the certificate"))
            .contains("does not match the certificate"),
        "{}",
        s.logs()
    );
    s.signal(libc::SIGTERM);
    assert!(s.wait_exit(Duration::from_secs(10)).unwrap().success());
}

fn pem_leaf(pem: &[u8]) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_slice_iter(pem)
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

async fn wait_for_leaf(s: &Server, ca: &[u8], pred: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        // Connect with a config that trusts the new CA only once it is being served.
        let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        let c = tokio_rustls::TlsConnector::from(client_config(ca, &[b"http/1.1"]));
        if let Ok(tls) = c
            .connect(
                rustls_pki_types::ServerName::try_from("localhost").unwrap(),
                tcp,
            )
            .await
        {
            let leaf = peer_leaf(&tls);
            if pred(&leaf) {
                return leaf;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "new certificate not served in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_unready_and_drains_in_flight_requests() {
    let mut s = Server::start(&["--shutdown-delay", "600ms", "--shutdown-grace", "10s"]);
    // Start a request whose body we hold back, so it is in flight when SIGTERM arrives.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = tls_connect(s.addr, s.tls_config(&[b"http/1.1"])).await;
    let body = unhandled_review("in-flight");
    let head = format!(
        "POST /validate?timeout=10s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&body[..10]).await.unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    s.signal(libc::SIGTERM);
    // During the shutdown delay, readiness reports unready while requests are still served.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok((503, _)) = plain_get(s.metrics_addr, "/readyz") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never turned unready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tls.write_all(&body[10..]).await.unwrap();
    tls.flush().await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tls.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if String::from_utf8_lossy(&buf).contains("\"uid\":\"in-flight\"") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"uid\":\"in-flight\""), "{text}");
    drop(tls);
    let st = s
        .wait_exit(Duration::from_secs(15))
        .expect("exits after draining");
    assert!(st.success(), "{st}");
    assert!(s.logs().contains("stopped"));
}

/// Over HTTP/1.1 a body in one frame is read without a copy and a body in several is gathered
/// (server.rs, `read_body`); over HTTP/2 every body is gathered. All must give the same
/// answer. Chunked transfer encoding makes hyper hand each chunk over as its own frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_in_one_frame_or_in_many_gets_the_same_answer() {
    let s = Server::start(&[]);
    let body = unhandled_review("uid-frames");
    let one = format!(
        "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let answer_one = raw_exchange(&s, one.as_bytes(), &body).await;
    // Uneven pieces, one of a single byte, so no frame boundary falls on a JSON token's.
    let pieces = chunked(&[&body[..1], &body[1..100], &body[100..]]);
    let many = "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    let answer_many = raw_exchange(&s, many.as_bytes(), &pieces).await;
    let review_of = |answer: &str| -> serde_json::Value {
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let (_, json) = answer.split_once("\r\n\r\n").expect("a head and a body");
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {answer}"))
    };
    let (r1, rn) = (review_of(&answer_one), review_of(&answer_many));
    assert_eq!(r1["response"]["uid"], "uid-frames", "{r1}");
    assert_eq!(r1["response"]["allowed"], true, "{r1}");
    assert_eq!(r1, rn);
    // Over HTTP/2 a body is always gathered (so that streams cannot pin read buffers): the
    // same answer again.
    let h2 = H2::connect(s.addr, &s.ca).await;
    let r = h2
        .send(request("POST", "/validate", Some("application/json"), body))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), r1);
}

/// `parts` in HTTP/1.1 chunked transfer encoding, each part one chunk, then the last chunk.
fn chunked(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Writes `head` and as much of `body` as the server takes, then reads the answer.
async fn raw_exchange(s: &Server, head: &[u8], body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = tls_connect(s.addr, s.tls_config(&[b"http/1.1"])).await;
    tls.write_all(head).await.unwrap();
    for part in body.chunks(256 * 1024) {
        if tls.write_all(part).await.is_err() {
            break;
        }
    }
    let _ = tls.flush().await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

#[test]
fn serve_without_a_cluster_says_how_to_run_standalone() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path(), &["localhost"]);
    let out = std::process::Command::new(tether_bin())
        .args([
            "serve",
            "--log-format",
            "text",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--domain-root",
            "apps.example.com",
        ])
        .arg("--tls-cert")
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.path().join("tls.key"))
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    // The plain line; the log line may follow it (the log writer is asynchronous).
    let last = err
        .lines()
        .find(|l| l.starts_with("tether serve: "))
        .unwrap_or("");
    assert!(
        last.starts_with("tether serve: no Kubernetes cluster configuration found"),
        "{err}"
    );
    assert!(
        last.contains("run `tether serve --standalone`")
            && last.contains("/nonexistent/kubeconfig"),
        "{last}"
    );
    // Bad flags name the flag.
    let out = std::process::Command::new(tether_bin())
        .args(["serve", "--standalone", "--controllers", "bogus"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("--controllers (env TETHER_CONTROLLERS): unknown controller \"bogus\""));
}
