//! Arbitrary bytes as a connection receives them, in arbitrary reads: the head scan that
//! refuses `Content-Length` with `Transfer-Encoding` must never panic, and must find the same
//! thing however the bytes are split.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let whole = oidc_logout::fuzz::scan_heads(&[data]);
    let split: Vec<&[u8]> = data.chunks(3).collect();
    assert_eq!(whole, oidc_logout::fuzz::scan_heads(&split));
});
