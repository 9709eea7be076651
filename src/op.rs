//! A minimal OpenID Provider that signs logout tokens: discovery, a JWKS and signing keys.
//!
//! It is what `oidc-logout demo` runs so the receiver can be tried with nothing else installed,
//! and what the integration tests verify against. It signs with aws-lc-rs directly rather than
//! through jsonwebtoken, so the receiver's verification is checked against an independent
//! implementation. It is not an OP for real logins.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{self as sig, KeyPair as _};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use crate::logout_token::BACKCHANNEL_LOGOUT_EVENT;

/// Key generation or signing failed inside aws-lc-rs.
#[derive(Debug, thiserror::Error)]
#[error("cryptographic operation failed: {0}")]
pub struct CryptoError(&'static str);

/// The algorithms the built-in OP can sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit key.
    Rs256,
    /// RSASSA-PSS with SHA-256, 2048-bit key.
    Ps256,
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// ECDSA P-384 with SHA-384.
    Es384,
    /// Ed25519.
    EdDsa,
}

impl SigningAlg {
    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Ps256 => "PS256",
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::EdDsa => "EdDSA",
        }
    }
}

enum Pair {
    Rsa(sig::RsaKeyPair, &'static dyn sig::RsaEncoding),
    Ec(sig::EcdsaKeyPair),
    Ed(sig::Ed25519KeyPair),
}

/// A signing key with its `kid` and algorithm.
pub struct SigningKey {
    kid: String,
    alg: SigningAlg,
    pair: Pair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish()
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A random URL-safe string of `bytes` random bytes.
pub fn random_id(bytes: usize) -> Result<String, CryptoError> {
    let mut buf = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| CryptoError("random"))?;
    Ok(b64(&buf))
}

impl SigningKey {
    /// A fresh key pair with a random `kid`.
    pub fn generate(alg: SigningAlg) -> Result<Self, CryptoError> {
        let pair = match alg {
            SigningAlg::Rs256 | SigningAlg::Ps256 => {
                let pair = sig::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .map_err(|_| CryptoError("RSA key generation"))?;
                let padding: &'static dyn sig::RsaEncoding = if alg == SigningAlg::Rs256 {
                    &sig::RSA_PKCS1_SHA256
                } else {
                    &sig::RSA_PSS_SHA256
                };
                Pair::Rsa(pair, padding)
            }
            SigningAlg::Es256 | SigningAlg::Es384 => {
                let curve = if alg == SigningAlg::Es256 {
                    &sig::ECDSA_P256_SHA256_FIXED_SIGNING
                } else {
                    &sig::ECDSA_P384_SHA384_FIXED_SIGNING
                };
                Pair::Ec(
                    sig::EcdsaKeyPair::generate(curve)
                        .map_err(|_| CryptoError("EC key generation"))?,
                )
            }
            SigningAlg::EdDsa => Pair::Ed(
                sig::Ed25519KeyPair::generate()
                    .map_err(|_| CryptoError("Ed25519 key generation"))?,
            ),
        };
        Ok(Self {
            kid: random_id(12)?,
            alg,
            pair,
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm.
    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    /// The public key as a JWK (with `kid`, `alg` and `use: sig`).
    pub fn public_jwk(&self) -> Value {
        let mut jwk = match &self.pair {
            Pair::Rsa(pair, _) => {
                let public = pair.public_key();
                json!({
                    "kty": "RSA",
                    "n": b64(public.modulus().big_endian_without_leading_zero()),
                    "e": b64(public.exponent().big_endian_without_leading_zero()),
                })
            }
            Pair::Ec(pair) => {
                // Uncompressed point: 0x04 || x || y.
                let coordinates = pair.public_key().as_ref().get(1..).unwrap_or_default();
                let (x, y) = coordinates.split_at(coordinates.len() / 2);
                let crv = if self.alg == SigningAlg::Es256 {
                    "P-256"
                } else {
                    "P-384"
                };
                json!({ "kty": "EC", "crv": crv, "x": b64(x), "y": b64(y) })
            }
            Pair::Ed(pair) => {
                json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref()) })
            }
        };
        if let Some(map) = jwk.as_object_mut() {
            map.insert("kid".into(), self.kid.clone().into());
            map.insert("alg".into(), self.alg.name().into());
            map.insert("use".into(), "sig".into());
        }
        jwk
    }

    /// Sign `claims` as a compact JWS. The header gets `alg` and `kid` unless `header` sets them
    /// (tests use that to forge headers).
    pub fn sign(&self, header: &Map<String, Value>, claims: &Value) -> Result<String, CryptoError> {
        let mut full = Map::new();
        full.insert("alg".into(), self.alg.name().into());
        full.insert("kid".into(), self.kid.clone().into());
        for (k, v) in header {
            if v.is_null() {
                full.remove(k);
            } else {
                full.insert(k.clone(), v.clone());
            }
        }
        let input = format!(
            "{}.{}",
            b64(Value::Object(full).to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = self.sign_bytes(input.as_bytes())?;
        Ok(format!("{input}.{}", b64(&signature)))
    }

    fn sign_bytes(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Rsa(pair, padding) => {
                let mut out = vec![0; pair.public_modulus_len()];
                pair.sign(*padding, &rng, message, &mut out)
                    .map_err(|_| CryptoError("RSA sign"))?;
                Ok(out)
            }
            Pair::Ec(pair) => Ok(pair
                .sign(&rng, message)
                .map_err(|_| CryptoError("ECDSA sign"))?
                .as_ref()
                .to_vec()),
            Pair::Ed(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }
}

/// What the JWKS endpoint serves; tests switch it to simulate a broken OP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwksMode {
    /// The published keys.
    Normal,
    /// HTTP 500.
    Error,
    /// 200 with a body that is not JSON.
    Garbage,
}

/// What the revocation endpoint answers; tests switch it to simulate an OP in trouble.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationMode {
    /// 200: revoked.
    Normal,
    /// 503 with `Retry-After: 1`.
    Unavailable,
}

/// The built-in OP: an issuer URL, its published keys and its discovery endpoints.
pub struct TestOp {
    issuer: String,
    published: RwLock<Vec<Arc<SigningKey>>>,
    jwks_requests: AtomicU64,
    jwks_mode: RwLock<JwksMode>,
    advertise_backchannel: AtomicBool,
    revoked: std::sync::Mutex<Vec<(String, Option<String>)>>,
    revocation_mode: RwLock<RevocationMode>,
    refresh_tokens: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for TestOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestOp")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// The claims of a typical logout token: `iss`, `aud`, `iat`, `exp` (iat + 120 s), a random
/// `jti`, `events`, and the given `sub`/`sid`.
pub fn logout_claims(
    issuer: &str,
    audience: &str,
    sub: Option<&str>,
    sid: Option<&str>,
) -> Result<Value, CryptoError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut claims = json!({
        "iss": issuer,
        "aud": audience,
        "iat": now,
        "exp": now + 120,
        "jti": random_id(16)?,
        "events": { BACKCHANNEL_LOGOUT_EVENT: {} },
    });
    if let Some(map) = claims.as_object_mut() {
        if let Some(sub) = sub {
            map.insert("sub".into(), sub.into());
        }
        if let Some(sid) = sid {
            map.insert("sid".into(), sid.into());
        }
    }
    Ok(claims)
}

impl TestOp {
    /// An OP for `issuer` (the URL it will be served at) publishing `keys`.
    pub fn new(issuer: impl Into<String>, keys: Vec<Arc<SigningKey>>) -> Arc<Self> {
        Arc::new(Self {
            issuer: issuer.into(),
            published: RwLock::new(keys),
            jwks_requests: AtomicU64::new(0),
            jwks_mode: RwLock::new(JwksMode::Normal),
            advertise_backchannel: AtomicBool::new(true),
            revoked: std::sync::Mutex::default(),
            revocation_mode: RwLock::new(RevocationMode::Normal),
            refresh_tokens: std::sync::Mutex::default(),
        })
    }

    /// The issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Replace the published keys (key rotation).
    pub fn publish(&self, keys: Vec<Arc<SigningKey>>) {
        *self
            .published
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
    }

    /// Change what the JWKS endpoint answers.
    pub fn set_jwks_mode(&self, mode: JwksMode) {
        *self
            .jwks_mode
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = mode;
    }

    /// Change what the revocation endpoint answers.
    pub fn set_revocation_mode(&self, mode: RevocationMode) {
        *self
            .revocation_mode
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = mode;
    }

    /// The tokens revoked so far, each with the `Authorization` header it came with.
    pub fn revoked(&self) -> Vec<(String, Option<String>)> {
        self.revoked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Issue a refresh token the token endpoint will accept (once: it rotates).
    pub fn issue_refresh_token(&self) -> Result<String, CryptoError> {
        let token = random_id(24)?;
        self.refresh_tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(token.clone());
        Ok(token)
    }

    /// How many times the JWKS was requested.
    pub fn jwks_requests(&self) -> u64 {
        self.jwks_requests.load(Ordering::Relaxed)
    }

    /// The discovery document.
    pub fn discovery(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{}/jwks", self.issuer.trim_end_matches('/')),
            "end_session_endpoint": format!("{}/session/end", self.issuer.trim_end_matches('/')),
            "revocation_endpoint": format!("{}/token/revocation", self.issuer.trim_end_matches('/')),
            "token_endpoint": format!("{}/token", self.issuer.trim_end_matches('/')),
            "id_token_signing_alg_values_supported": ["RS256", "PS256", "ES256", "ES384", "EdDSA"],
            "backchannel_logout_supported": self.advertise_backchannel.load(Ordering::Relaxed),
            "backchannel_logout_session_supported": true,
        })
    }

    /// The JWKS document.
    pub fn jwks(&self) -> Value {
        let keys = self
            .published
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        json!({ "keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>() })
    }

    /// The router serving `/.well-known/openid-configuration` and `/jwks`; the issuer URL must
    /// be where this is served.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(|State(op): State<Arc<Self>>| async move { axum::Json(op.discovery()) }),
            )
            .route("/jwks", get(jwks_endpoint))
            .route(
                "/token/revocation",
                axum::routing::post(revocation_endpoint),
            )
            .route("/token", axum::routing::post(token_endpoint))
            .with_state(Arc::clone(self))
    }
}

async fn jwks_endpoint(State(op): State<Arc<TestOp>>) -> Response {
    op.jwks_requests.fetch_add(1, Ordering::Relaxed);
    let mode = *op
        .jwks_mode
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match mode {
        JwksMode::Normal => axum::Json(op.jwks()).into_response(),
        JwksMode::Error => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        JwksMode::Garbage => (StatusCode::OK, "<html>not json").into_response(),
    }
}

async fn revocation_endpoint(
    State(op): State<Arc<TestOp>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mode = *op
        .revocation_mode
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if mode == RevocationMode::Unavailable {
        return (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "1")]).into_response();
    }
    let token = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned());
    let Some(token) = token else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": "invalid_request" })),
        )
            .into_response();
    };
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    op.refresh_tokens
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&token);
    op.revoked
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push((token, auth));
    StatusCode::OK.into_response()
}

/// The refresh-token grant only: a known refresh token is rotated; anything else is
/// `invalid_grant`.
async fn token_endpoint(State(op): State<Arc<TestOp>>, body: axum::body::Bytes) -> Response {
    let mut grant = None;
    let mut refresh = None;
    for (k, v) in form_urlencoded::parse(&body) {
        match k.as_ref() {
            "grant_type" => grant = Some(v.into_owned()),
            "refresh_token" => refresh = Some(v.into_owned()),
            _ => {}
        }
    }
    let known = refresh.is_some_and(|t| {
        op.refresh_tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&t)
    });
    if grant.as_deref() != Some("refresh_token") || !known {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": "invalid_grant" })),
        )
            .into_response();
    }
    match (op.issue_refresh_token(), random_id(24)) {
        (Ok(refresh_token), Ok(access_token)) => axum::Json(json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 300,
            "refresh_token": refresh_token,
        }))
        .into_response(),
        _ => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
