//! What the targets share: one Ed25519 key of a fixed issuer, its decoding key, and a policy.

#![allow(dead_code)] // each target uses part of it

use std::sync::OnceLock;

use jsonwebtoken::DecodingKey;
use oidc_logout::logout_token::{Policy, UnverifiedToken};
use oidc_logout::test_op::{SigningAlg, SigningKey};

pub const ISSUER: &str = "https://op.example.com";
pub const NOW: u64 = 1_800_000_000;

pub struct Fixture {
    pub key: SigningKey,
    pub decoding: DecodingKey,
    pub policy: Policy,
}

pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let key = SigningKey::generate(SigningAlg::EdDsa).expect("key");
        let jwk = serde_json::from_value(key.public_jwk()).expect("jwk");
        let decoding = DecodingKey::from_jwk(&jwk).expect("decoding key");
        let policy = Policy::new(ISSUER, "app")
            .algorithms(&[jsonwebtoken::Algorithm::EdDSA])
            .trusted_audience("api");
        Fixture {
            key,
            decoding,
            policy,
        }
    })
}

/// Parse and verify as the receiver does; must never panic, whatever the token.
pub fn check(token: &str) {
    let f = fixture();
    if let Ok(unverified) = UnverifiedToken::parse(token) {
        let _ = unverified.issuer();
        let _ = unverified.kid();
        if let Ok(valid) = unverified.verify([&f.decoding], &f.policy, NOW) {
            // What passed obeys the rules: the fixed issuer, a user or a session, a jti, issued
            // no later than the leeway allows and still acceptable now.
            assert_eq!(valid.issuer, ISSUER);
            assert!(valid.sub.is_some() || valid.sid.is_some());
            assert!(!valid.jti.is_empty());
            assert!(valid.issued_at <= NOW + 30);
            assert!(valid.acceptable_until >= NOW);
            let _ = valid.to_logout();
            assert!(valid.remember_until_ms() > valid.acceptable_until * 1000);
        }
    }
}
