//! Arbitrary Security Event Token claims, as if their signature verified: every claim rule and
//! every subject shape of the Shared Signals receiver must refuse or map without panicking, and
//! what it accepts must act only on the transmitter's own issuer.
#![no_main]

use oidc_logout::fuzz::{ISSUER, set_claims};
use oidc_logout::inputs::shared_signals::Action;

const NOW: u64 = 1_800_000_000;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(serde_json::Value::Object(claims)) = serde_json::from_slice(data) else {
        return;
    };
    if let Ok(set) = set_claims(&claims, NOW) {
        for action in &set.actions {
            match action {
                Action::OpSession { issuer, .. } | Action::User { issuer, .. } => {
                    assert_eq!(issuer, ISSUER, "a SET acted on another issuer");
                }
                _ => {}
            }
        }
    }
});
