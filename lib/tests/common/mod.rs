//! The library's integration tests: what every test shares (`oidc-logout-test-support`).

#![allow(unused_imports)]

pub use oidc_logout_test_support::*;
