//! tether installed as the chart installs it, in front of the fake API server: the chart's
//! rendered RBAC (`webhook-config/clusterrole.yaml`, `role.yaml`), namespace and service
//! account; tether's real `serve` running as its service account
//! (`system:serviceaccount:tether-system:tether`, authorised only by that RBAC); and the
//! chart's webhook configurations (`mutatingwebhookconfiguration.yaml`,
//! `validatingwebhookconfiguration.yaml`) with the caBundle of tether's serving certificate,
//! so every matching write through the fake is admitted by tether over HTTPS.
//!
//! A test crate that uses it declares `mod common;` and the fake as `mod fake_apiserver;`:
//!
//! ```text
//! mod common;
//! #[path = "support/fake_apiserver.rs"]
//! mod fake_apiserver;
//! #[path = "support/tether_cluster.rs"]
//! mod tether_cluster;
//! ```
#![allow(dead_code)]

use std::path::PathBuf;

use crate::common::Server;
use crate::fake_apiserver::{parse_yaml_docs, FakeApiServer, Identity};
use serde_json::{json, Value};

pub const TETHER_NAMESPACE: &str = "tether-system";
pub const TETHER_SA: &str = "tether";
/// tether's service account as a username.
pub const TETHER_USER: &str = "system:serviceaccount:tether-system:tether";
/// The DNS name the webhook configurations' Service reference gives tether's certificate.
pub const WEBHOOK_DNS: &str = "tether.tether-system.svc";
pub const TETHER_SA_TOKEN: &str = "tether-sa-token-0123456789abcdef";
/// `alice` (group `devs`): may do anything with tether's kinds and the attachable kinds,
/// in every namespace, and nothing else.
pub const ALICE_TOKEN: &str = "alice-token-0123456789abcdef";
pub const ALICE: &str = "alice";

/// A file of the chart's rendered output.
pub fn chart_file(name: &str) -> String {
    let path = format!("{}/webhook-config/{name}", env!("CARGO_MANIFEST_DIR"));
    match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) => panic!("reading {path}: {e}"),
    }
}

/// The chart's objects a cluster needs before tether starts: namespace, service account,
/// ClusterRole/Role and their bindings; namespaces `default`, `kube-system`; tokens for
/// tether's service account and alice (with her grants). Access reviews are answered from
/// RBAC (no test rule).
pub async fn fake_with_chart_rbac() -> FakeApiServer {
    let fake = FakeApiServer::start().await;
    for f in [
        "namespace.yaml",
        "serviceaccount.yaml",
        "clusterrole.yaml",
        "role.yaml",
    ] {
        fake.load_yaml(&chart_file(f));
    }
    for ns in ["default", "kube-system"] {
        fake.insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
    }
    fake.load_yaml(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: tether-user}
rules:
  - apiGroups: [tether.dev]
    resources: [attachedresources, appdomains]
    verbs: ["*"]
  - apiGroups: [autoscaling]
    resources: [horizontalpodautoscalers]
    verbs: ["*"]
  - apiGroups: [policy]
    resources: [poddisruptionbudgets]
    verbs: ["*"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: alice-tether-user}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: tether-user}
subjects: [{kind: User, name: alice}]
"#,
    );
    fake.add_token(
        TETHER_SA_TOKEN,
        Identity::service_account(TETHER_NAMESPACE, TETHER_SA),
    );
    fake.add_token(ALICE_TOKEN, Identity::user(ALICE, &["devs"]));
    fake.answer_access_reviews_from_rbac();
    fake
}

/// Stores the chart's webhook configurations with `ca_pem` as every webhook's caBundle and
/// points Service `tether-system/tether:443` at `tether`.
pub fn register_webhooks(fake: &FakeApiServer, ca_pem: &[u8], tether: std::net::SocketAddr) {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    for f in [
        "mutatingwebhookconfiguration.yaml",
        "validatingwebhookconfiguration.yaml",
    ] {
        for mut doc in parse_yaml_docs(&chart_file(f)) {
            if let Some(hooks) = doc.get_mut("webhooks").and_then(Value::as_array_mut) {
                for h in hooks {
                    h["clientConfig"]["caBundle"] = json!(ca);
                }
            }
            fake.insert(doc);
        }
    }
    fake.set_service_endpoint(TETHER_NAMESPACE, TETHER_SA, 443, tether);
}

/// The fake, tether's `serve` and the kubeconfig it runs with.
pub struct TetherCluster {
    pub fake: FakeApiServer,
    pub tether: Server,
    /// KUBECONFIG of tether's service account.
    pub sa_kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl TetherCluster {
    /// [`fake_with_chart_rbac`], then [`Self::start_on`].
    pub async fn start(extra: &[&str]) -> TetherCluster {
        Self::start_on(fake_with_chart_rbac().await, extra).await
    }

    /// Starts `tether serve` as its service account against `fake` (flags: its identity,
    /// pod name `tether-0`, then `extra`, e.g. `--controllers attached`), waits until it is
    /// ready, and registers the chart's webhooks pointing at it. Prepare `fake` first for
    /// what must exist before tether's discovery runs (e.g. `add_knative_resources()` for
    /// the domains controller, edited RBAC, `enforce_owner_references_permission(true)`).
    pub async fn start_on(fake: FakeApiServer, extra: &[&str]) -> TetherCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let sa_kubeconfig =
            fake.write_kubeconfig_for(dir.path(), "tether.kubeconfig", TETHER_SA_TOKEN);
        let mut args = vec![
            "--pod-namespace",
            TETHER_NAMESPACE,
            "--service-account-name",
            TETHER_SA,
            "--pod-name",
            "tether-0",
        ];
        args.extend_from_slice(extra);
        let tether = tokio::task::block_in_place(|| {
            Server::start_cluster_with_dns(&sa_kubeconfig, &[WEBHOOK_DNS], &args)
        });
        register_webhooks(&fake, &tether.ca, tether.addr);
        TetherCluster {
            fake,
            tether,
            sa_kubeconfig,
            _dir: dir,
        }
    }

    /// A client as the admin (`system:masters`).
    pub async fn admin(&self) -> kube::Client {
        self.fake.client().await
    }

    /// A client as alice.
    pub async fn alice(&self) -> kube::Client {
        self.fake.client_for(ALICE_TOKEN).await
    }

    /// Creates a namespace (labelled `kubernetes.io/metadata.name` by the fake).
    pub fn add_namespace(&self, name: &str) {
        self.fake
            .insert(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}));
    }
}
