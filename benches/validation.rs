//! Token validation cost per algorithm: parse + signature + every claim rule, with a cached key
//! (as the receiver does). Run: `cargo bench --bench validation`.

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::Jwk;
use oidc_logout::logout_token::{Policy, UnverifiedToken, parse_algorithm};
use oidc_logout::test_op::{SigningAlg, SigningKey, logout_claims};

fn bench(c: &mut Criterion) {
    let issuer = "https://op.example.com/realms/bench";
    let mut group = c.benchmark_group("validate_logout_token");
    for alg in [
        SigningAlg::Rs256,
        SigningAlg::Ps256,
        SigningAlg::Es256,
        SigningAlg::Es384,
        SigningAlg::EdDsa,
    ] {
        let key = SigningKey::generate(alg).expect("key");
        let claims = logout_claims(issuer, "app", Some("user-1"), Some("sid-1")).expect("claims");
        let now = claims["iat"].as_u64().expect("iat");
        let header = serde_json::Map::from_iter([("typ".to_owned(), "logout+jwt".into())]);
        let token = key.sign(&header, &claims).expect("sign");
        let jwk: Jwk = serde_json::from_value(key.public_jwk()).expect("jwk");
        let decoding = DecodingKey::from_jwk(&jwk).expect("decoding key");
        let policy =
            Policy::new(issuer, "app").algorithms(&[parse_algorithm(alg.name()).expect("alg")]);
        // Sanity: the benchmarked path accepts the token.
        UnverifiedToken::parse(&token)
            .and_then(|t| t.verify([&decoding], &policy, now))
            .expect("valid");
        group.bench_function(alg.name(), |b| {
            b.iter(|| {
                UnverifiedToken::parse(&token).and_then(|t| t.verify([&decoding], &policy, now))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
