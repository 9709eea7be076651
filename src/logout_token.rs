//! Logout tokens: decode and validate, to the letter of Back-Channel Logout 1.0 (errata set 1).
//!
//! Pure code, no I/O. Validation is two steps because the key depends on the token:
//! [`UnverifiedToken::parse`] checks the shape, the header and that the claims are JSON, and tells
//! the caller which issuer and key it claims; [`UnverifiedToken::verify`] checks the signature with
//! the keys the caller looked up, then every claim rule against a [`Policy`]. jsonwebtoken is used
//! only for the signature: it does not check `crit`, `typ`, `iat` or `jti`, accepts `iss` as an
//! array and extra audiences, so the header and claims are checked here, each failure with its
//! own [`Rejection`].

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use crate::store::{Logout, Target};

/// The event member a logout token must carry (`http`, not `https`).
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// The longest token accepted, in bytes. Real logout tokens are well under 2 KiB.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Why a logout token was refused. The `Display` text is what the OP gets as
/// `error_description`; it never echoes token content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The token is longer than [`MAX_TOKEN_BYTES`].
    #[error("logout_token is too large")]
    TooLarge,
    /// Not three base64url parts, or a part is not the JSON object it must be.
    #[error("logout_token is malformed: {0}")]
    Malformed(&'static str),
    /// `alg` is `none`, HMAC, or not a signature algorithm this receiver implements.
    #[error("signing algorithm is not supported")]
    UnsupportedAlgorithm,
    /// `alg` is a supported algorithm but not one this client registered.
    #[error("signing algorithm is not the one registered for this client")]
    AlgorithmNotAllowed,
    /// The header names or embeds a key (`jku`, `x5u`, `jwk`, `x5c`); keys come only from the
    /// issuer's `jwks_uri`.
    #[error("header parameter {0} is not accepted")]
    KeyInHeader(&'static str),
    /// The header has `crit`: this receiver understands no JWS extension.
    #[error("critical header parameters are not supported")]
    CriticalHeader,
    /// `typ` says the token is something other than a logout token or a plain JWT.
    #[error("token type is not a logout token")]
    WrongType,
    /// `iss` is not an issuer this receiver is configured for.
    #[error("issuer is not trusted")]
    UnknownIssuer,
    /// No key of the issuer matches the token's `kid` and algorithm, even after a refresh.
    #[error("no matching signing key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("signature is invalid")]
    BadSignature,
    /// A required claim is absent.
    #[error("claim {0} is missing")]
    MissingClaim(&'static str),
    /// A claim has the wrong type or an empty value.
    #[error("claim {0} is invalid")]
    InvalidClaim(&'static str),
    /// `iss` differs from the issuer whose keys verified the token.
    #[error("issuer does not match")]
    IssuerMismatch,
    /// `aud` does not name this client.
    #[error("audience does not include this client")]
    AudienceMismatch,
    /// `aud` names an audience this client does not trust.
    #[error("audience includes an untrusted party")]
    UntrustedAudience,
    /// `iat` is later than now (beyond the clock leeway).
    #[error("token is issued in the future")]
    IssuedInFuture,
    /// `iat` is older than the configured window.
    #[error("token is too old")]
    TooOld,
    /// `exp` is in the past (beyond the clock leeway).
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future (beyond the clock leeway).
    #[error("token is not yet valid")]
    NotYetValid,
    /// `events` lacks the back-channel logout event, or its value is not an object.
    #[error("events claim does not contain the back-channel logout event")]
    MissingEvent,
    /// `nonce` is present; logout tokens must not carry one.
    #[error("nonce must not be present")]
    NoncePresent,
    /// Neither `sub` nor `sid` is present.
    #[error("token names neither sub nor sid")]
    NoSubject,
    /// The token was accepted before (same `jti`).
    #[error("token was already used")]
    Replayed,
}

impl Rejection {
    /// A stable, short name for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::Malformed(_) => "malformed",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::KeyInHeader(_) => "key_in_header",
            Self::CriticalHeader => "critical_header",
            Self::WrongType => "wrong_type",
            Self::UnknownIssuer => "unknown_issuer",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::MissingClaim(_) => "missing_claim",
            Self::InvalidClaim(_) => "invalid_claim",
            Self::IssuerMismatch => "issuer_mismatch",
            Self::AudienceMismatch => "audience_mismatch",
            Self::UntrustedAudience => "untrusted_audience",
            Self::IssuedInFuture => "issued_in_future",
            Self::TooOld => "too_old",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::MissingEvent => "missing_event",
            Self::NoncePresent => "nonce_present",
            Self::NoSubject => "no_subject",
            Self::Replayed => "replayed",
        }
    }
}

/// The signature algorithms a logout token may use. `none` and HMAC are never among them.
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

/// What one client of one issuer accepts.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The issuer, compared exactly with `iss`.
    pub issuer: String,
    /// The client ids of this receiver at the issuer, each with the algorithms it registered
    /// (`id_token_signed_response_alg`). `aud` must name at least one of them.
    pub clients: Vec<(String, Vec<Algorithm>)>,
    /// Other audiences that may appear in `aud` besides the clients.
    pub trusted_audiences: Vec<String>,
    /// How old `iat` may be.
    pub max_age: Duration,
    /// Clock skew allowed on `iat`, `exp` and `nbf`.
    pub leeway: Duration,
    /// Accept a token without `exp` (some OPs omit it); its age is then bounded by `iat` only.
    pub accept_missing_exp: bool,
}

/// A token whose shape and header were checked, and whose signature and claims were not.
#[derive(Debug)]
pub struct UnverifiedToken<'a> {
    signing_input: &'a str,
    signature: &'a str,
    alg: Algorithm,
    kid: Option<String>,
    claims: Map<String, Value>,
}

/// A validated logout token: what the OP asked to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutToken {
    /// `iss`.
    pub issuer: String,
    /// `sub`, when present.
    pub sub: Option<String>,
    /// `sid`, when present.
    pub sid: Option<String>,
    /// `jti`.
    pub jti: String,
    /// `iat`, seconds since the epoch.
    pub issued_at: u64,
    /// Until when (seconds since the epoch) this token could still be accepted; its `jti` must
    /// be remembered at least that long.
    pub acceptable_until: u64,
}

impl LogoutToken {
    /// The store operation this token asks for, remembering its `jti` as of `now`.
    pub fn to_logout(&self, now: u64) -> Logout<'_> {
        let target = match (&self.sid, &self.sub) {
            (Some(sid), sub) => Target::Sid {
                sid,
                sub: sub.as_deref(),
            },
            (None, Some(sub)) => Target::Sub { sub },
            // verify() refuses a token with neither; an empty sid matches no session.
            (None, None) => Target::Sid { sid: "", sub: None },
        };
        let ttl = self.acceptable_until.saturating_sub(now).max(1);
        Logout {
            issuer: &self.issuer,
            target,
            issued_at: self.issued_at,
            jti: Some((&self.jti, Duration::from_secs(ttl))),
            deny_for: None,
        }
    }
}

fn decode_json_object(part: &str, what: &'static str) -> Result<Map<String, Value>, Rejection> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Rejection::Malformed(what))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Rejection::Malformed(what)),
    }
}

/// Whether a `typ` value allows the token to be a logout token (RFC 7515 §4.1.9: compare
/// case-insensitively, `application/` may be omitted).
fn acceptable_type(typ: &str) -> bool {
    let lower = typ.to_ascii_lowercase();
    let short = lower.strip_prefix("application/").unwrap_or(&lower);
    matches!(short, "jwt" | "logout+jwt")
}

impl<'a> UnverifiedToken<'a> {
    /// Check the token's size, shape and header, and decode its claims.
    pub fn parse(token: &'a str) -> Result<Self, Rejection> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Rejection::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Rejection::Malformed(
                "not a signed JWT (JWS compact serialization)",
            ));
        };
        if signature.is_empty() {
            return Err(Rejection::UnsupportedAlgorithm);
        }
        let header_json = decode_json_object(header, "header is not a base64url JSON object")?;
        let alg = match header_json.get("alg") {
            Some(Value::String(name)) => {
                parse_algorithm(name).ok_or(Rejection::UnsupportedAlgorithm)?
            }
            _ => return Err(Rejection::Malformed("header has no alg")),
        };
        for name in ["jku", "x5u", "jwk", "x5c"] {
            if header_json.contains_key(name) {
                return Err(Rejection::KeyInHeader(name));
            }
        }
        if header_json.contains_key("crit") {
            return Err(Rejection::CriticalHeader);
        }
        match header_json.get("typ") {
            None => {}
            Some(Value::String(typ)) if acceptable_type(typ) => {}
            Some(_) => return Err(Rejection::WrongType),
        }
        let kid = match header_json.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(Rejection::Malformed("kid is not a string")),
        };
        let claims = decode_json_object(payload, "claims are not a base64url JSON object")?;
        let signing_input =
            token
                .get(..header.len() + 1 + payload.len())
                .ok_or(Rejection::Malformed(
                    "not a signed JWT (JWS compact serialization)",
                ))?;
        Ok(Self {
            signing_input,
            signature,
            alg,
            kid,
            claims,
        })
    }

    /// The `iss` the token claims, to choose whose keys verify it. Not yet verified.
    pub fn issuer(&self) -> Result<&str, Rejection> {
        match self.claims.get("iss") {
            Some(Value::String(iss)) => Ok(iss),
            None => Err(Rejection::MissingClaim("iss")),
            Some(_) => Err(Rejection::InvalidClaim("iss")),
        }
    }

    /// The `kid` of the header, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The header's `alg`.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Verify the signature with one of `keys` (the issuer's keys that match the token's `kid`
    /// and algorithm), then every claim against `policy` at time `now` (seconds since the epoch).
    pub fn verify<'k>(
        self,
        keys: impl IntoIterator<Item = &'k DecodingKey>,
        policy: &Policy,
        now: u64,
    ) -> Result<LogoutToken, Rejection> {
        let audiences = self.check_audience(policy)?;
        let pinned = audiences.iter().all(|algs| algs.contains(&self.alg));
        if !pinned {
            return Err(Rejection::AlgorithmNotAllowed);
        }
        let mut any_key = false;
        let mut verified = false;
        for key in keys {
            any_key = true;
            if jsonwebtoken::crypto::verify(
                self.signature,
                self.signing_input.as_bytes(),
                key,
                self.alg,
            )
            .unwrap_or(false)
            {
                verified = true;
                break;
            }
        }
        if !any_key {
            return Err(Rejection::UnknownKey);
        }
        if !verified {
            return Err(Rejection::BadSignature);
        }
        self.check_claims(policy, now)
    }

    /// `aud` names at least one configured client and nothing untrusted; returns the
    /// algorithms each named client accepts.
    fn check_audience<'p>(&self, policy: &'p Policy) -> Result<Vec<&'p [Algorithm]>, Rejection> {
        let named: Vec<&str> = match self.claims.get("aud") {
            None => return Err(Rejection::MissingClaim("aud")),
            Some(Value::String(aud)) => vec![aud.as_str()],
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .map(|v| v.as_str().ok_or(Rejection::InvalidClaim("aud")))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(Rejection::InvalidClaim("aud")),
        };
        let mut clients = Vec::new();
        let mut untrusted = false;
        for aud in named {
            if let Some((_, algs)) = policy.clients.iter().find(|(id, _)| id == aud) {
                clients.push(algs.as_slice());
            } else if !policy.trusted_audiences.iter().any(|t| t == aud) {
                untrusted = true;
            }
        }
        if clients.is_empty() {
            return Err(Rejection::AudienceMismatch);
        }
        if untrusted {
            return Err(Rejection::UntrustedAudience);
        }
        Ok(clients)
    }

    fn check_claims(mut self, policy: &Policy, now: u64) -> Result<LogoutToken, Rejection> {
        let issuer = match self.claims.get("iss") {
            None => return Err(Rejection::MissingClaim("iss")),
            Some(Value::String(iss)) if *iss == policy.issuer => iss.clone(),
            Some(Value::String(_)) => return Err(Rejection::IssuerMismatch),
            Some(_) => return Err(Rejection::InvalidClaim("iss")),
        };
        let leeway = policy.leeway.as_secs();
        let iat = numeric_date(&self.claims, "iat")?.ok_or(Rejection::MissingClaim("iat"))?;
        if iat > now.saturating_add(leeway) {
            return Err(Rejection::IssuedInFuture);
        }
        let oldest_until = iat.saturating_add(policy.max_age.as_secs());
        if now > oldest_until {
            return Err(Rejection::TooOld);
        }
        let exp = numeric_date(&self.claims, "exp")?;
        let acceptable_until = match exp {
            Some(exp) if exp.saturating_add(leeway) <= now => return Err(Rejection::Expired),
            Some(exp) => oldest_until.min(exp.saturating_add(leeway)),
            None if policy.accept_missing_exp => oldest_until,
            None => return Err(Rejection::MissingClaim("exp")),
        };
        if let Some(nbf) = numeric_date(&self.claims, "nbf")?
            && nbf > now.saturating_add(leeway)
        {
            return Err(Rejection::NotYetValid);
        }
        if self.claims.contains_key("nonce") {
            return Err(Rejection::NoncePresent);
        }
        match self.claims.get("events") {
            Some(Value::Object(events)) => match events.get(BACKCHANNEL_LOGOUT_EVENT) {
                Some(Value::Object(_)) => {}
                _ => return Err(Rejection::MissingEvent),
            },
            None => return Err(Rejection::MissingClaim("events")),
            Some(_) => return Err(Rejection::InvalidClaim("events")),
        }
        let jti = take_string(&mut self.claims, "jti")?.ok_or(Rejection::MissingClaim("jti"))?;
        let sub = take_string(&mut self.claims, "sub")?;
        let sid = take_string(&mut self.claims, "sid")?;
        if sub.is_none() && sid.is_none() {
            return Err(Rejection::NoSubject);
        }
        Ok(LogoutToken {
            issuer,
            sub,
            sid,
            jti,
            issued_at: iat,
            acceptable_until,
        })
    }
}

/// A NumericDate claim (RFC 7519 §2): a non-negative JSON number; fractions are truncated.
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<u64>, Rejection> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(v) = n.as_u64() {
                Ok(Some(v))
            } else {
                match n.as_f64() {
                    Some(f) if (0.0..1e15).contains(&f) => {
                        // Truncation is the intent: NumericDate seconds, fraction dropped.
                        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                        Ok(Some(f as u64))
                    }
                    _ => Err(Rejection::InvalidClaim(name)),
                }
            }
        }
        Some(_) => Err(Rejection::InvalidClaim(name)),
    }
}

/// A string claim that, when present, is not empty.
fn take_string(
    claims: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, Rejection> {
    match claims.remove(name) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
        Some(_) => Err(Rejection::InvalidClaim(name)),
    }
}
