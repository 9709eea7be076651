//! Arbitrary header and claims, correctly signed: reaches every claim rule behind the signature.
//! The input is `<header JSON>\0<claims JSON>`.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(2, |&b| b == 0);
    let (Some(header), Some(claims)) = (parts.next(), parts.next()) else {
        return;
    };
    let Ok(serde_json::Value::Object(header)) = serde_json::from_slice(header) else {
        return;
    };
    let Ok(claims) = serde_json::from_slice::<serde_json::Value>(claims) else {
        return;
    };
    let f = common::fixture();
    if let Ok(token) = f.key.sign(&header, &claims) {
        common::check(&token);
    }
});
