//! `--domain-root` is required while the domains controller runs (issue 11 defect 11): the
//! real binary, against the fake API server, refuses to start without it and says which flag
//! and which chart value to set; with the controller off, or with a root, it starts.

mod common;
#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fake_apiserver::FakeApiServer;

#[derive(Debug)]
enum Outcome {
    /// Exited with this code and stderr.
    Exited(Option<i32>, String),
    /// Logged "tether ready" (then it was stopped).
    Ready,
}

/// Runs `tether serve` against the fake until it exits or logs that it is ready.
fn serve(kubeconfig: &std::path::Path, extra: &[&str]) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path(), &["localhost"]);
    let err_path = dir.path().join("stderr");
    // Cluster mode also needs admission-stamp keys (as the chart mounts them).
    let keys = dir.path().join("admission-keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("k1"), TEST_STAMP_KEY).unwrap();
    let mut child = Command::new(tether_bin())
        .arg("serve")
        .arg("--admission-keys")
        .arg(&keys)
        .arg("--tls-cert")
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.path().join("tls.key"))
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .args(["--log-format", "text", "--pod-namespace", "tether-system"])
        .args(extra)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("EXT_DOMAIN_ROOT")
        .env_remove("TETHER_CONTROLLERS")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Outcome::Exited(st.code(), std::fs::read_to_string(&err_path).unwrap());
        }
        let err = std::fs::read_to_string(&err_path).unwrap_or_default();
        if err.contains("tether ready") {
            let _ = child.kill();
            let _ = child.wait();
            return Outcome::Ready;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tether {extra:?} neither exited nor became ready: {err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_domains_controller_without_a_domain_root_refuses_to_start() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fake = rt.block_on(FakeApiServer::start());
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.write_kubeconfig(dir.path());

    // Default controllers (attached,domains), no root: exit 1 at once, naming the flag, its
    // environment variable and the chart value.
    for extra in [&[][..], &["--controllers", "domains"][..]] {
        let Outcome::Exited(code, err) = serve(&kubeconfig, extra) else {
            panic!("tether {extra:?} started without --domain-root")
        };
        assert_eq!(code, Some(1), "{err}");
        // The plain line; the log line may follow it (the log writer is asynchronous).
        let last = err
            .lines()
            .find(|l| l.starts_with("tether serve: "))
            .unwrap_or("");
        assert!(
            last.starts_with("tether serve: --domain-root (env EXT_DOMAIN_ROOT) is required"),
            "{err}"
        );
        assert!(last.contains("Helm value domainRoot"), "{last}");
        assert!(last.contains("--controllers"), "{last}");
    }

    // With the domains controller off, no root is needed; with a root, it starts.
    for extra in [
        &["--controllers", "attached"][..],
        &["--domain-root", "apps.example.com"][..],
    ] {
        let got = serve(&kubeconfig, extra);
        assert!(matches!(got, Outcome::Ready), "tether {extra:?}: {got:?}");
    }
}
