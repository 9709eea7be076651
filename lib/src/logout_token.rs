//! Logout tokens: decode and validate, to the letter of Back-Channel Logout 1.0 (errata set 1).
//!
//! Pure code, no I/O. Validation is two steps because the key depends on the token:
//! [`UnverifiedToken::parse`] checks the shape and the header (the shared [`jose`](crate::jose)
//! rules) and tells the caller which issuer and key it claims; [`UnverifiedToken::verify`] checks
//! that the algorithm is one the named clients registered, the signature with the keys the caller
//! looked up, then every claim rule against a [`Policy`], each failure with its own [`Rejection`].

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use crate::index::{Logout, SidLogout, Target};
pub use crate::jose::parse_algorithm;
use crate::jose::{JoseError, Jws, Rules, numeric_date};

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

/// What the logout tokens of one issuer must satisfy. Build it with [`Policy::new`].
#[derive(Debug, Clone)]
#[non_exhaustive]
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

impl Policy {
    /// The defaults for `issuer`'s tokens to `client_id`: RS256 (what a client registers when it
    /// registers nothing), `iat` at most 300 s old, 30 s of clock leeway, `exp` required.
    pub fn new(issuer: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            clients: vec![(client_id.into(), vec![Algorithm::RS256])],
            trusted_audiences: Vec::new(),
            max_age: Duration::from_secs(300),
            leeway: Duration::from_secs(30),
            accept_missing_exp: false,
        }
    }

    /// The algorithms the first client registered (`id_token_signed_response_alg`).
    #[must_use]
    pub fn algorithms(mut self, algorithms: &[Algorithm]) -> Self {
        if let Some((_, algs)) = self.clients.first_mut() {
            *algs = algorithms.to_vec();
        }
        self
    }

    /// Another client of this receiver at the issuer, with its registered algorithms.
    #[must_use]
    pub fn client(mut self, id: impl Into<String>, algorithms: &[Algorithm]) -> Self {
        self.clients.push((id.into(), algorithms.to_vec()));
        self
    }

    /// An audience besides the clients that may appear in `aud`.
    #[must_use]
    pub fn trusted_audience(mut self, audience: impl Into<String>) -> Self {
        self.trusted_audiences.push(audience.into());
        self
    }

    /// How old `iat` may be.
    #[must_use]
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Clock skew allowed on `iat`, `exp` and `nbf`.
    #[must_use]
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Accept tokens without `exp` (Ory Hydra 2.x, Keycloak before 23.0.4, older Authentik,
    /// LemonLDAP::NG): their age is then bounded by `iat` only.
    #[must_use]
    pub fn accept_missing_exp(mut self, accept: bool) -> Self {
        self.accept_missing_exp = accept;
        self
    }
}

/// A token whose shape and header were checked, and whose signature and claims were not.
#[derive(Debug)]
pub struct UnverifiedToken<'a> {
    jws: Jws<'a>,
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
    /// Every claim of the verified token, as the OP sent them (for after-logout hooks: an
    /// OP's own claims, `events`, `aud`).
    pub claims: Map<String, Value>,
}

/// How long past the last acceptable second a `jti` is remembered, for receivers sharing the
/// Redis whose clocks disagree with this one's.
const CLOCK_MARGIN_MS: u64 = 60_000;

impl LogoutToken {
    /// Until when (milliseconds since the epoch, this process's clock) the token's `jti` must
    /// be remembered so that a replay is refused: the token is accepted while `now`, in whole
    /// seconds, is at most [`acceptable_until`](Self::acceptable_until), that is until the
    /// clock reaches `acceptable_until + 1` s; a minute more covers receivers whose clocks
    /// disagree. By construction, not by arithmetic that happens to line up: the memory
    /// outlives acceptance.
    pub fn remember_until_ms(&self) -> u64 {
        self.acceptable_until
            .saturating_add(1)
            .saturating_mul(1000)
            .saturating_add(CLOCK_MARGIN_MS)
    }

    /// The store operation this token asks for (without a denylist marker: the core adds the
    /// issuer's).
    pub fn to_logout(&self) -> Logout<'_> {
        let target = match (&self.sid, &self.sub) {
            (Some(sid), sub) => Target::Sid {
                sid,
                sub: sub.as_deref(),
            },
            (None, Some(sub)) => Target::Sub { sub },
            // verify() refuses a token with neither; an empty sid matches no session.
            (None, None) => Target::Sid { sid: "", sub: None },
        };
        Logout {
            issuer: &self.issuer,
            target,
            issued_at: self.issued_at,
            jti: Some((&self.jti, self.remember_until_ms())),
            deny: None,
            sid_logout: SidLogout::default(),
        }
    }
}

/// The header rules of a logout token: no `typ`, `JWT` (Keycloak before 25) or `logout+jwt`
/// (RECOMMENDED by §2.4); public-key algorithms only.
const RULES: Rules = Rules {
    max_bytes: MAX_TOKEN_BYTES,
    types: &["jwt", "logout+jwt"],
    untyped: true,
    hmac: false,
};

impl From<JoseError> for Rejection {
    fn from(error: JoseError) -> Self {
        match error {
            JoseError::TooLarge => Self::TooLarge,
            JoseError::Malformed(what) => Self::Malformed(what),
            JoseError::UnsupportedAlgorithm => Self::UnsupportedAlgorithm,
            JoseError::AlgorithmNotAllowed => Self::AlgorithmNotAllowed,
            JoseError::KeyInHeader(name) => Self::KeyInHeader(name),
            JoseError::CriticalHeader => Self::CriticalHeader,
            JoseError::WrongType => Self::WrongType,
            JoseError::UnknownKey => Self::UnknownKey,
            JoseError::BadSignature => Self::BadSignature,
        }
    }
}

impl<'a> UnverifiedToken<'a> {
    /// Check the token's size, shape and header, and decode its claims.
    pub fn parse(token: &'a str) -> Result<Self, Rejection> {
        Ok(Self {
            jws: Jws::parse(token, &RULES)?,
        })
    }

    /// The `iss` the token claims, to choose whose keys verify it. Not yet verified.
    pub fn issuer(&self) -> Result<&str, Rejection> {
        match self.jws.claims().get("iss") {
            Some(Value::String(iss)) => Ok(iss),
            None => Err(Rejection::MissingClaim("iss")),
            Some(_) => Err(Rejection::InvalidClaim("iss")),
        }
    }

    /// The `kid` of the header, if any.
    pub fn kid(&self) -> Option<&str> {
        self.jws.kid()
    }

    /// The header's `alg`.
    pub fn algorithm(&self) -> Algorithm {
        self.jws.algorithm()
    }

    /// Verify the signature with one of `keys` (the issuer's keys that match the token's `kid`
    /// and algorithm), then every claim against `policy` at time `now` (seconds since the epoch).
    /// The algorithm must be one every client named in `aud` registered.
    pub fn verify<'k>(
        self,
        keys: impl IntoIterator<Item = &'k DecodingKey>,
        policy: &Policy,
        now: u64,
    ) -> Result<LogoutToken, Rejection> {
        let pinned = check_audience(self.jws.claims(), policy)?;
        if !pinned
            .iter()
            .all(|algs| algs.contains(&self.jws.algorithm()))
        {
            return Err(Rejection::AlgorithmNotAllowed);
        }
        self.jws.verify_with(keys)?;
        check_claims(self.jws.into_claims(), policy, now)
    }
}

/// `aud` names at least one configured client and nothing untrusted; returns the algorithms
/// each named client registered.
fn check_audience<'p>(
    claims: &Map<String, Value>,
    policy: &'p Policy,
) -> Result<Vec<&'p [Algorithm]>, Rejection> {
    let named: Vec<&str> = match claims.get("aud") {
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

/// Every claim rule of §2.4 and §2.6 after the signature: `iss`, `iat`, `exp`, `nbf`, `nonce`,
/// `events`, `jti`, `sub`/`sid`.
fn check_claims(
    claims: Map<String, Value>,
    policy: &Policy,
    now: u64,
) -> Result<LogoutToken, Rejection> {
    let issuer = match claims.get("iss") {
        None => return Err(Rejection::MissingClaim("iss")),
        Some(Value::String(iss)) if *iss == policy.issuer => iss.clone(),
        Some(Value::String(_)) => return Err(Rejection::IssuerMismatch),
        Some(_) => return Err(Rejection::InvalidClaim("iss")),
    };
    let leeway = policy.leeway.as_secs();
    let iat = date(&claims, "iat")?.ok_or(Rejection::MissingClaim("iat"))?;
    if iat > now.saturating_add(leeway) {
        return Err(Rejection::IssuedInFuture);
    }
    let oldest_until = iat.saturating_add(policy.max_age.as_secs());
    if now > oldest_until {
        return Err(Rejection::TooOld);
    }
    let acceptable_until = match date(&claims, "exp")? {
        Some(exp) if exp.saturating_add(leeway) <= now => return Err(Rejection::Expired),
        Some(exp) => oldest_until.min(exp.saturating_add(leeway)),
        None if policy.accept_missing_exp => oldest_until,
        None => return Err(Rejection::MissingClaim("exp")),
    };
    if let Some(nbf) = date(&claims, "nbf")?
        && nbf > now.saturating_add(leeway)
    {
        return Err(Rejection::NotYetValid);
    }
    if claims.contains_key("nonce") {
        return Err(Rejection::NoncePresent);
    }
    match claims.get("events") {
        Some(Value::Object(events)) => match events.get(BACKCHANNEL_LOGOUT_EVENT) {
            Some(Value::Object(_)) => {}
            _ => return Err(Rejection::MissingEvent),
        },
        None => return Err(Rejection::MissingClaim("events")),
        Some(_) => return Err(Rejection::InvalidClaim("events")),
    }
    let jti = string_claim(&claims, "jti")?.ok_or(Rejection::MissingClaim("jti"))?;
    let sub = string_claim(&claims, "sub")?;
    let sid = string_claim(&claims, "sid")?;
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
        claims,
    })
}

fn date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<u64>, Rejection> {
    numeric_date(claims, name).map_err(|()| Rejection::InvalidClaim(name))
}

/// A string claim that, when present, is not empty.
fn string_claim(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, Rejection> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(Rejection::InvalidClaim(name)),
    }
}

#[cfg(test)]
mod tests {
    //! One fast test per [`Rejection`]: the header rules through [`UnverifiedToken::parse`], the
    //! audience and pinning through [`check_audience`], the claim rules through [`check_claims`].
    //! The black-box tests (lib/tests/receiver.rs) cover the same over HTTP with real signatures.

    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;

    fn policy() -> Policy {
        Policy::new("https://op", "app")
            .client("es-app", &[Algorithm::ES256])
            .trusted_audience("https://op/extra")
    }

    fn valid() -> Value {
        json!({
            "iss": "https://op", "aud": "app", "iat": NOW - 5, "exp": NOW + 120, "jti": "j1",
            "sid": "s1", "sub": "u1",
            "events": { BACKCHANNEL_LOGOUT_EVENT: {} },
        })
    }

    fn claims(change: impl FnOnce(&mut Map<String, Value>)) -> Result<LogoutToken, Rejection> {
        let mut claims = valid().as_object().cloned().unwrap_or_default();
        change(&mut claims);
        check_claims(claims, &policy(), NOW)
    }

    fn unsigned(header: Value, claims: &Value) -> String {
        let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!("{}.{}.c2lnbmF0dXJl", b64(&header), b64(claims))
    }

    fn parsed(header: Value) -> Result<(), Rejection> {
        UnverifiedToken::parse(&unsigned(header, &valid())).map(|_| ())
    }

    #[test]
    fn a_valid_token_names_its_sessions() {
        let token = claims(|_| {}).unwrap();
        assert_eq!(token.issuer, "https://op");
        assert_eq!(token.sid.as_deref(), Some("s1"));
        assert_eq!(token.sub.as_deref(), Some("u1"));
        assert_eq!(token.issued_at, NOW - 5);
        // The earlier of iat + max_age and exp + leeway.
        assert_eq!(token.acceptable_until, NOW + 120 + 30);
    }

    #[test]
    fn header_rejections() {
        assert_eq!(
            UnverifiedToken::parse(&"a".repeat(MAX_TOKEN_BYTES + 1)).err(),
            Some(Rejection::TooLarge)
        );
        assert!(matches!(
            UnverifiedToken::parse("not.a-token").err(),
            Some(Rejection::Malformed(_))
        ));
        assert_eq!(
            parsed(json!({"alg": "none"})),
            Err(Rejection::UnsupportedAlgorithm)
        );
        assert_eq!(
            parsed(json!({"alg": "HS256"})),
            Err(Rejection::UnsupportedAlgorithm)
        );
        assert_eq!(
            parsed(json!({"alg": "RS256", "jwk": {}})),
            Err(Rejection::KeyInHeader("jwk"))
        );
        assert_eq!(
            parsed(json!({"alg": "RS256", "crit": ["x"], "x": 1})),
            Err(Rejection::CriticalHeader)
        );
        for typ in ["at+jwt", "secevent+jwt", "dpop+jwt"] {
            assert_eq!(
                parsed(json!({"alg": "RS256", "typ": typ})),
                Err(Rejection::WrongType),
                "{typ}"
            );
        }
        for typ in ["JWT", "logout+jwt", "application/logout+jwt"] {
            assert_eq!(parsed(json!({"alg": "RS256", "typ": typ})), Ok(()), "{typ}");
        }
    }

    #[test]
    fn issuer_is_read_before_verification() {
        let token = unsigned(json!({"alg": "RS256"}), &json!({"iss": ["a"]}));
        let parsed = UnverifiedToken::parse(&token).unwrap();
        assert_eq!(parsed.issuer(), Err(Rejection::InvalidClaim("iss")));
        let token = unsigned(json!({"alg": "RS256", "kid": "k"}), &json!({}));
        let parsed = UnverifiedToken::parse(&token).unwrap();
        assert_eq!(parsed.issuer(), Err(Rejection::MissingClaim("iss")));
        assert_eq!(parsed.kid(), Some("k"));
        assert_eq!(parsed.algorithm(), Algorithm::RS256);
    }

    #[test]
    fn audience_and_algorithm_pinning() {
        let with_aud = |aud: Value, alg: &str| {
            let mut claims = valid();
            claims["aud"] = aud;
            let token = unsigned(json!({ "alg": alg }), &claims);
            UnverifiedToken::parse(&token)?.verify([], &policy(), NOW)
        };
        assert_eq!(
            with_aud(json!("other"), "RS256"),
            Err(Rejection::AudienceMismatch)
        );
        assert_eq!(
            with_aud(json!(["app", "evil"]), "RS256"),
            Err(Rejection::UntrustedAudience)
        );
        assert_eq!(
            with_aud(json!([]), "RS256"),
            Err(Rejection::InvalidClaim("aud"))
        );
        assert_eq!(
            with_aud(json!(["app", 1]), "RS256"),
            Err(Rejection::InvalidClaim("aud"))
        );
        // A validly published ES256 key must not verify a token for a client pinned to RS256.
        assert_eq!(
            with_aud(json!("app"), "ES256"),
            Err(Rejection::AlgorithmNotAllowed)
        );
        assert_eq!(
            with_aud(json!(["app", "es-app"]), "RS256"),
            Err(Rejection::AlgorithmNotAllowed)
        );
        // Audience and algorithm fine, but no key to verify with.
        assert_eq!(
            with_aud(json!(["app", "https://op/extra"]), "RS256"),
            Err(Rejection::UnknownKey)
        );
        let mut no_aud = valid();
        no_aud.as_object_mut().map(|c| c.remove("aud"));
        let token = unsigned(json!({"alg": "RS256"}), &no_aud);
        assert_eq!(
            UnverifiedToken::parse(&token)
                .unwrap()
                .verify([], &policy(), NOW),
            Err(Rejection::MissingClaim("aud"))
        );
    }

    #[test]
    fn a_signature_that_does_not_verify() {
        let key = DecodingKey::from_rsa_components(
            "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw",
            "AQAB",
        )
        .unwrap();
        let token = unsigned(json!({"alg": "RS256"}), &valid());
        assert_eq!(
            UnverifiedToken::parse(&token)
                .unwrap()
                .verify([&key], &policy(), NOW),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn claim_rejections() {
        // (expected, claim, new value; None removes the claim)
        let cases = [
            (Rejection::MissingClaim("iss"), "iss", None),
            (Rejection::IssuerMismatch, "iss", Some(json!("https://op/"))),
            (
                Rejection::InvalidClaim("iss"),
                "iss",
                Some(json!(["https://op"])),
            ),
            (Rejection::MissingClaim("iat"), "iat", None),
            (Rejection::InvalidClaim("iat"), "iat", Some(json!("1"))),
            (Rejection::IssuedInFuture, "iat", Some(json!(NOW + 31))),
            (Rejection::TooOld, "iat", Some(json!(NOW - 301))),
            (Rejection::Expired, "exp", Some(json!(NOW - 30))),
            (Rejection::MissingClaim("exp"), "exp", None),
            (Rejection::InvalidClaim("exp"), "exp", Some(json!(-1))),
            (Rejection::NotYetValid, "nbf", Some(json!(NOW + 31))),
            (Rejection::NoncePresent, "nonce", Some(json!("n"))),
            (Rejection::MissingClaim("events"), "events", None),
            (Rejection::InvalidClaim("events"), "events", Some(json!([]))),
            (
                Rejection::MissingEvent,
                "events",
                Some(json!({"https://schemas.openid.net/event/backchannel-logout": {}})),
            ),
            (
                Rejection::MissingEvent,
                "events",
                Some(json!({ BACKCHANNEL_LOGOUT_EVENT: "yes" })),
            ),
            (Rejection::MissingClaim("jti"), "jti", None),
            (Rejection::InvalidClaim("jti"), "jti", Some(json!(""))),
            (Rejection::InvalidClaim("sid"), "sid", Some(json!(7))),
            (Rejection::InvalidClaim("sub"), "sub", Some(json!(null))),
        ];
        for (expected, claim, value) in cases {
            let got = claims(|c| {
                match value {
                    Some(v) => c.insert(claim.into(), v),
                    None => c.remove(claim),
                };
            });
            assert_eq!(got.err(), Some(expected.clone()), "{expected:?}");
            assert!(!expected.reason().is_empty());
        }
        let neither = claims(|c| {
            c.remove("sid");
            c.remove("sub");
        });
        assert_eq!(neither.err(), Some(Rejection::NoSubject));
    }

    #[test]
    fn leeway_bounds_and_missing_exp() {
        assert!(claims(|c| drop(c.insert("iat".into(), json!(NOW + 30)))).is_ok());
        assert!(claims(|c| drop(c.insert("iat".into(), json!(NOW - 300)))).is_ok());
        let short = claims(|c| drop(c.insert("exp".into(), json!(NOW + 10)))).unwrap();
        assert_eq!(short.acceptable_until, NOW + 10 + 30);
        let mut lax = valid().as_object().cloned().unwrap_or_default();
        lax.remove("exp");
        let token = check_claims(lax, &policy().accept_missing_exp(true), NOW).unwrap();
        assert_eq!(token.acceptable_until, NOW - 5 + 300);
        // Only sub: every session of the user; only sid: the OP session.
        let only_sub = claims(|c| drop(c.remove("sid"))).unwrap();
        assert!(only_sub.sid.is_none() && only_sub.sub.is_some());
        // Unknown claims are ignored (§2.4).
        assert!(claims(|c| drop(c.insert("extra".into(), json!({"a": 1})))).is_ok());
    }

    #[test]
    fn replay_is_a_rejection_with_its_own_reason() {
        assert_eq!(Rejection::Replayed.reason(), "replayed");
        assert_eq!(Rejection::UnknownIssuer.reason(), "unknown_issuer");
    }
}
