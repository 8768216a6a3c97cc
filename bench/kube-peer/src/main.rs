//! `kube-peer --listen ADDR --cert FILE --key FILE`: the kube-rs `admission_controller`
//! example's handler behind axum-server + rustls. POST /mutate and /validate take an
//! `AdmissionReview<DynamicObject>`, deny an object labelled `illegal`, otherwise answer
//! allowed with a patch adding the label `admission: modified-by-admission-controller`, and
//! log one line per request as the example does. GET /readyz answers 200.

use std::error::Error;
use std::net::SocketAddr;

use axum::routing::{get, post};
use axum::{Json, Router};
use axum_server::tls_rustls::RustlsConfig;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::core::{DynamicObject, Resource, ResourceExt};
use tracing::{info, warn};

async fn mutate_handler(
    Json(body): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    // Parse the AdmissionReview into the AdmissionRequest, as the example does.
    let req: AdmissionRequest<_> = match body.try_into() {
        Ok(req) => req,
        Err(err) => {
            warn!("invalid request: {}", err);
            return Json(AdmissionResponse::invalid(err.to_string()).into_review());
        }
    };
    let mut res = AdmissionResponse::from(&req);
    if let Some(obj) = req.object {
        let name = obj.name_any();
        res = match mutate(res.clone(), &obj) {
            Ok(res) => {
                info!("accepted: {:?} on resource {}", req.operation, name);
                res
            }
            Err(err) => {
                warn!("denied: {:?} on {} ({})", req.operation, name, err);
                res.deny(err.to_string())
            }
        };
    }
    Json(res.into_review())
}

// The example's mutation: reject an `illegal` label, add one label otherwise.
fn mutate(
    res: AdmissionResponse,
    obj: &DynamicObject,
) -> Result<AdmissionResponse, Box<dyn Error>> {
    if obj.labels().contains_key("illegal") {
        return Err("Resource contained 'illegal' label".into());
    }
    let mut patches = Vec::new();
    if obj.meta().labels.is_none() {
        patches.push(json_patch::PatchOperation::Add(json_patch::AddOperation {
            path: jsonptr::PointerBuf::from_tokens(["metadata", "labels"]),
            value: serde_json::json!({}),
        }));
    }
    patches.push(json_patch::PatchOperation::Add(json_patch::AddOperation {
        path: jsonptr::PointerBuf::from_tokens(["metadata", "labels", "admission"]),
        value: serde_json::Value::String("modified-by-admission-controller".into()),
    }));
    Ok(res.with_patch(json_patch::Patch(patches))?)
}

fn arg(args: &[String], name: &str) -> Result<String, String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .ok_or_else(|| {
            format!("missing {name} VALUE; usage: kube-peer --listen ADDR --cert FILE --key FILE")
        })
}

#[tokio::main]
async fn main() -> Result<(), String> {
    tracing_subscriber::fmt::init();
    let args: Vec<String> = std::env::args().collect();
    let listen: SocketAddr = arg(&args, "--listen")?
        .parse()
        .map_err(|e| format!("--listen: {e}"))?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = RustlsConfig::from_pem_file(arg(&args, "--cert")?, arg(&args, "--key")?)
        .await
        .map_err(|e| format!("--cert/--key: {e}"))?;
    let app = Router::new()
        .route("/mutate", post(mutate_handler))
        .route("/validate", post(mutate_handler))
        .route("/readyz", get(|| async { "ready\n" }));
    axum_server::bind_rustls(listen, tls)
        .serve(app.into_make_service())
        .await
        .map_err(|e| format!("serve {listen}: {e}"))
}
