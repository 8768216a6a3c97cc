//! (a) AdmissionReview parsing and the full decision, on arbitrary bytes: both webhooks,
//! with access reviews from an RBAC file and with all access reviews allowed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tether_fuzz::review_all(data);
});
