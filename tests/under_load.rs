//! Issue 8: certificate rotation and graceful shutdown while clients keep the server busy.
//! Bounded: a few client tasks for a few seconds, loopback only.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

/// Lays out a kubelet-style Secret volume (`..data` symlink) and returns the visible paths.
fn kubelet_swap(
    root: &std::path::Path,
    from: &std::path::Path,
    key_from: &std::path::Path,
    gen: u32,
) {
    let dir = root.join(format!("..data_{gen}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(from.join("tls.crt"), dir.join("tls.crt")).unwrap();
    std::fs::copy(key_from.join("tls.key"), dir.join("tls.key")).unwrap();
    let tmp = root.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(dir.file_name().unwrap(), &tmp).unwrap();
    std::fs::rename(&tmp, root.join("..data")).unwrap();
}

#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    failed: AtomicUsize,
    new_cert_seen: AtomicBool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_fails_no_request() {
    let vol = tempfile::tempdir().unwrap();
    let (g1, g2, g3) = (
        vol.path().join("g1"),
        vol.path().join("g2"),
        vol.path().join("g3"),
    );
    let mut ca = make_certs(&g1, &["localhost"]);
    ca.extend(make_certs(&g2, &["localhost"]));
    make_certs(&g3, &["localhost"]);
    kubelet_swap(vol.path(), &g1, &g1, 1);
    std::os::unix::fs::symlink("..data/tls.crt", vol.path().join("tls.crt")).unwrap();
    std::os::unix::fs::symlink("..data/tls.key", vol.path().join("tls.key")).unwrap();
    let crt = vol.path().join("tls.crt");
    let key = vol.path().join("tls.key");
    let s = Server::start(&[
        "--tls-cert",
        crt.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let new_leaf = {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::pem_slice_iter(
            &std::fs::read(g2.join("tls.crt")).unwrap(),
        )
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
    };
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for worker in 0..6 {
        let (tally, stop, ca, addr, new_leaf) = (
            tally.clone(),
            stop.clone(),
            ca.clone(),
            s.addr,
            new_leaf.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                // Half the workers reconnect every few requests, to see new certificates.
                let mut c = H1::connect(addr, &ca).await;
                if c.leaf == new_leaf {
                    tally.new_cert_seen.store(true, Ordering::Relaxed);
                }
                for _ in 0..if worker % 2 == 0 { 5 } else { 200 } {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    i += 1;
                    let uid = format!("w{worker}-{i}");
                    let r = c
                        .send(request(
                            "POST",
                            "/validate?timeout=10s",
                            Some("application/json"),
                            unhandled_review(&uid),
                        ))
                        .await;
                    if r.status == 200 && r.json()["response"]["uid"] == uid.as_str() {
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        tally.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    // Each step waits for the event it is about, not for a fixed time: load flowing, the
    // reload counted and the new certificate seen by a client, requests answered after it.
    let ok = || tally.ok.load(Ordering::Relaxed);
    let reloads = |result: &str| {
        metric_value(
            &s.metrics(),
            &format!(r#"tether_tls_reloads_total{{result="{result}"}}"#),
        )
    };
    wait_until("the load to flow", || ok() > 0).await;
    kubelet_swap(vol.path(), &g2, &g2, 2);
    wait_until("the rotation to be loaded and served", || {
        reloads("success") == Some(1.0) && tally.new_cert_seen.load(Ordering::Relaxed)
    })
    .await;
    let mark = ok();
    wait_until("requests answered after the rotation", || ok() > mark).await;
    // A broken pair (certificate of g2, key of g3) must be refused while traffic flows.
    kubelet_swap(vol.path(), &g2, &g3, 3);
    wait_until("the broken pair to be refused", || {
        reloads("error") == Some(1.0)
    })
    .await;
    let mark = ok();
    wait_until("requests answered after the refused pair", || ok() > mark).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let ok = tally.ok.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    eprintln!("rotation under load: {ok} ok, {failed} failed");
    // Every request sent was answered correctly (200 with its own uid).
    assert_eq!(failed, 0);
    // Exactly one reload of each kind: nothing was reloaded twice or refused spuriously.
    let m = s.metrics();
    assert_eq!(
        metric_value(&m, r#"tether_tls_reloads_total{result="success"}"#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_value(&m, r#"tether_tls_reloads_total{result="error"}"#),
        Some(1.0),
        "{m}"
    );
    // The good rotated certificate is still the one served.
    let c = H1::connect(s.addr, &ca).await;
    assert_eq!(c.leaf, new_leaf);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_fails_no_accepted_request() {
    let mut s = Server::start(&["--shutdown-delay", "1s", "--shutdown-grace", "10s"]);
    let tally = Arc::new(Tally::default());
    let refused_after_close = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let (tally, stop, ca, addr, refused) = (
            tally.clone(),
            stop.clone(),
            s.ca.clone(),
            s.addr,
            refused_after_close.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            'outer: while !stop.load(Ordering::Relaxed) {
                // A load balancer would stop sending to an unready pod; new connections after
                // the listener closed are refused, which is "not accepted", not a failure.
                let Some(mut c) = try_h1(addr, &ca).await else {
                    refused.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                for _ in 0..20 {
                    if stop.load(Ordering::Relaxed) {
                        break 'outer;
                    }
                    i += 1;
                    let uid = format!("s{worker}-{i}");
                    c.send.ready().await.ok();
                    if c.send.is_closed() {
                        // The server closed this idle keep-alive connection while draining:
                        // nothing was sent on it.
                        continue 'outer;
                    }
                    match c
                        .send
                        .send_request(request(
                            "POST",
                            "/validate",
                            Some("application/json"),
                            unhandled_review(&uid),
                        ))
                        .await
                    {
                        Ok(resp) if resp.status() == 200 => {
                            tally.ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {
                            tally.failed.fetch_add(1, Ordering::Relaxed);
                        }
                        // hyper reports a request the server never read (closed before it was
                        // accepted) as canceled; anything else is a failed accepted request.
                        Err(e) if e.is_canceled() || e.is_closed() => continue 'outer,
                        Err(_) => {
                            tally.failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }));
    }
    wait_until("the load to flow", || tally.ok.load(Ordering::Relaxed) > 0).await;
    let before = tally.ok.load(Ordering::Relaxed);
    // The endpoints controller: once /readyz says unready, traffic stops arriving a little
    // later (propagation). Here "a little later" is the observable event that matters: a
    // request answered after /readyz turned unready, i.e. during the shutdown delay. The
    // task returns whether that happened within the delay (1 s) and a generous margin.
    let lb = {
        let (stop, metrics_addr, tally) = (stop.clone(), s.metrics_addr, tally.clone());
        tokio::spawn(async move {
            loop {
                let r = tokio::task::spawn_blocking(move || plain_get(metrics_addr, "/readyz"))
                    .await
                    .unwrap();
                if !matches!(r, Ok((200, _))) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            let at_unready = tally.ok.load(Ordering::Relaxed);
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut served_while_unready = false;
            while Instant::now() < deadline {
                if tally.ok.load(Ordering::Relaxed) > at_unready {
                    served_while_unready = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            stop.store(true, Ordering::Relaxed);
            served_while_unready
        })
    };
    s.signal(libc::SIGTERM);
    let t0 = Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let st = s.wait_exit(Duration::from_secs(15));
        (st, s)
    });
    let (st, _s) = status.await.unwrap();
    let served_while_unready = lb.await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let st = st.expect("exited");
    assert!(st.success(), "{st}");
    let ok = tally.ok.load(Ordering::Relaxed);
    eprintln!(
        "shutdown under load: {before} ok before SIGTERM, {ok} ok in all, exit after {:?}",
        t0.elapsed()
    );
    assert!(
        served_while_unready,
        "no request was answered after /readyz turned unready (during the shutdown delay)"
    );
    assert_eq!(tally.failed.load(Ordering::Relaxed), 0);
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "listener closed before the shutdown delay"
    );
}

/// Polls `f` every 20 ms until it holds; fails after 20 s naming `what`.
async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An HTTP/1.1 connection, or None when the server no longer accepts (refused, or reset
/// while still in the kernel's backlog when the listener closed).
async fn try_h1(addr: std::net::SocketAddr, ca: &[u8]) -> Option<H1> {
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let connector = tokio_rustls::TlsConnector::from(client_config(ca, &[b"http/1.1"]));
    let tls = connector
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").ok()?,
            tcp,
        )
        .await
        .ok()?;
    let leaf = peer_leaf(&tls);
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(H1 { send, leaf })
}
