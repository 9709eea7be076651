//! Arbitrary bytes as a logout token: decoding, header checks and signature verification must
//! refuse without panicking.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(token) = std::str::from_utf8(data) {
        common::check(token);
    }
});
