//! An arbitrary FusionAuth webhook: `<signature claims JSON>\0<body>`, the claims signed with
//! the fixture's HMAC secret (so the body checks behind the signature are reached). Refused or
//! handled, never a panic; and nothing unsigned gets past `authenticate`.
#![no_main]

use std::sync::OnceLock;

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use oidc_logout::fuzz::{HMAC_SECRET, fusionauth, fusionauth_webhook};

const NOW: u64 = 1_800_000_000;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(2, |&b| b == 0);
    let (Some(claims), Some(body)) = (parts.next(), parts.next()) else {
        return;
    };
    let Ok(claims) = std::str::from_utf8(claims) else {
        return;
    };
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let key = hmac::Key::new(hmac::HMAC_SHA256, HMAC_SECRET.as_bytes());
    let signed = format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(hmac::sign(&key, input.as_bytes()).as_ref())
    );
    let receiver = fusionauth();
    runtime().block_on(async {
        let _ = fusionauth_webhook(&receiver, &signed, body, NOW).await;
        // The same claims unsigned must not authenticate.
        let unsigned = format!("{input}.AAAA");
        assert!(fusionauth_webhook(&receiver, &unsigned, body, NOW).await.is_err());
    });
});
