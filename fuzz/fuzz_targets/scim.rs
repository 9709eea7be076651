//! An arbitrary SCIM request part: `<filter or attribute path>\0<JSON body>`. The filter parser,
//! the attribute-path lookup, the User resource reader and the PATCH applier each refuse or read
//! it, never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(2, |&b| b == 0);
    let (Some(filter), Some(body)) = (parts.next(), parts.next()) else {
        return;
    };
    let Ok(filter) = std::str::from_utf8(filter) else {
        return;
    };
    oidc_logout::fuzz::scim(filter, body);
});
