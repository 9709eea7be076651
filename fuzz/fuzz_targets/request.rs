//! An arbitrary request as the receiver reads it: `<Content-Type>\n<body>`. Extracting the token
//! from the form body and then validating it must refuse without panicking.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (content_type, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (Some(&data[..i]), &data[i + 1..]),
        None => (None, data),
    };
    if let Ok(token) = oidc_logout::inputs::backchannel::request_token(content_type, body) {
        common::check(&token);
    }
});
