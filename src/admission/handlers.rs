//! Routing by `request.kind` to the handler for that kind.

use super::review::AdmissionRequest;
use super::{Decision, Webhook};

/// The per-kind handlers and what they consult.
#[derive(Default)]
pub struct Handlers {}

impl Handlers {
    pub async fn decide(&self, _webhook: Webhook, _req: &AdmissionRequest) -> Decision {
        // A kind tether does not handle was routed to us: allow it unchanged (the webhook
        // configuration decides what reaches us; this only happens when it is too broad).
        Decision::allow("unhandled_kind")
    }
}
