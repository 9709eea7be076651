//! Logout tokens as an OP sends them, and as an attacker or a buggy OP would: the valid claim set,
//! and one [`Defect`] at a time that a receiver must refuse.
//!
//! Each defect breaks exactly one rule of Back-Channel Logout 1.0 §2.6 (or of JWS), so a receiver
//! that answers 200 to one of them has a named hole.

use aws_lc_rs::hmac;
use serde_json::{Map, Value, json};

use super::keys::{CryptoError, SigningAlg, SigningKey, b64, random_id};
use crate::logout_token::BACKCHANNEL_LOGOUT_EVENT;

use crate::sys::unix_now;

/// The claims of a typical logout token: `iss`, `aud`, `iat`, `exp` (iat + 120 s), a random
/// `jti`, `events`, and the given `sub`/`sid`.
pub fn logout_claims(
    issuer: &str,
    audience: &str,
    sub: Option<&str>,
    sid: Option<&str>,
) -> Result<Value, CryptoError> {
    let now = unix_now();
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

/// One way a logout token can be wrong. A receiver must answer 400 to each (for
/// [`Defect::Replay`]: 200 to the first delivery, 400 to the second).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Defect {
    /// `exp` two and a half minutes ago.
    Expired,
    /// `iat` ten minutes from now.
    IssuedInFuture,
    /// `iat` a day ago, `exp` still in the future: outside any sane freshness window.
    TooOld,
    /// A byte of the signature flipped.
    BadSignature,
    /// Signed by a key the OP never published, under the published `kid`.
    ForeignKey,
    /// A `kid` the OP does not publish.
    UnknownKid,
    /// `alg: none` and no signature.
    AlgNone,
    /// `alg: HS256`, keyed with the audience (HMAC is not for logout tokens here).
    Hmac,
    /// Signed by an attacker's key embedded in the header as `jwk`.
    EmbeddedKey,
    /// A `crit` header naming an extension.
    CriticalHeader,
    /// `typ: at+jwt`: an access token is not a logout token.
    WrongType,
    /// `iss` of another issuer.
    WrongIssuer,
    /// `aud` of another client.
    WrongAudience,
    /// No `events` claim.
    MissingEvents,
    /// `events` with the `https` spelling of the member.
    WrongEvent,
    /// A `nonce` claim, which logout tokens must not have.
    Nonce,
    /// Neither `sub` nor `sid`.
    NoSubject,
    /// No `jti`.
    MissingJti,
    /// No `iat`.
    MissingIat,
    /// Not a JWS at all.
    Malformed,
    /// A valid token delivered twice.
    Replay,
}

impl Defect {
    /// Every defect, in the order `--broken all` sends them.
    pub const ALL: [Self; 21] = [
        Self::Expired,
        Self::IssuedInFuture,
        Self::TooOld,
        Self::BadSignature,
        Self::ForeignKey,
        Self::UnknownKid,
        Self::AlgNone,
        Self::Hmac,
        Self::EmbeddedKey,
        Self::CriticalHeader,
        Self::WrongType,
        Self::WrongIssuer,
        Self::WrongAudience,
        Self::MissingEvents,
        Self::WrongEvent,
        Self::Nonce,
        Self::NoSubject,
        Self::MissingJti,
        Self::MissingIat,
        Self::Malformed,
        Self::Replay,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::IssuedInFuture => "issued-in-future",
            Self::TooOld => "too-old",
            Self::BadSignature => "bad-signature",
            Self::ForeignKey => "foreign-key",
            Self::UnknownKid => "unknown-kid",
            Self::AlgNone => "alg-none",
            Self::Hmac => "hmac",
            Self::EmbeddedKey => "embedded-key",
            Self::CriticalHeader => "crit",
            Self::WrongType => "wrong-typ",
            Self::WrongIssuer => "wrong-iss",
            Self::WrongAudience => "wrong-aud",
            Self::MissingEvents => "no-events",
            Self::WrongEvent => "wrong-event",
            Self::Nonce => "nonce",
            Self::NoSubject => "no-sub-no-sid",
            Self::MissingJti => "no-jti",
            Self::MissingIat => "no-iat",
            Self::Malformed => "malformed",
            Self::Replay => "replay",
        }
    }
}

impl std::fmt::Display for Defect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The name is not one of [`Defect::ALL`].
#[derive(Debug, thiserror::Error)]
#[error("unknown defect {0:?}; one of: {list}", list = Defect::ALL.map(Defect::name).join(", "))]
pub struct UnknownDefect(String);

impl std::str::FromStr for Defect {
    type Err = UnknownDefect;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|d| d.name() == name)
            .ok_or_else(|| UnknownDefect(name.to_owned()))
    }
}

/// What a token says: who it is from and for, and whom it logs out.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    /// `iss`.
    pub issuer: &'a str,
    /// `aud`: the receiver's client id.
    pub audience: &'a str,
    /// `sub`, if any.
    pub sub: Option<&'a str>,
    /// `sid`, if any.
    pub sid: Option<&'a str>,
}

/// The header every token gets: `typ: logout+jwt` (alg and kid come from the key).
fn logout_header() -> Map<String, Value> {
    Map::from_iter([("typ".to_owned(), "logout+jwt".into())])
}

/// A valid logout token for `subject`, signed with `key`.
pub fn valid(key: &SigningKey, subject: &Subject<'_>) -> Result<String, CryptoError> {
    let claims = logout_claims(subject.issuer, subject.audience, subject.sub, subject.sid)?;
    key.sign(&logout_header(), &claims)
}

/// A token for `subject` signed with `key` that has exactly `defect`. For [`Defect::Replay`] it
/// is a valid token (the defect is in sending it twice).
pub fn broken(
    key: &SigningKey,
    subject: &Subject<'_>,
    defect: Defect,
) -> Result<String, CryptoError> {
    let mut claims = logout_claims(subject.issuer, subject.audience, subject.sub, subject.sid)?;
    let mut header = logout_header();
    let now = unix_now();
    let Some(map) = claims.as_object_mut() else {
        return Err(CryptoError("claims are not an object"));
    };
    match defect {
        Defect::Expired => {
            map.insert("iat".into(), (now.saturating_sub(160)).into());
            map.insert("exp".into(), (now.saturating_sub(150)).into());
        }
        Defect::IssuedInFuture => {
            map.insert("iat".into(), (now + 600).into());
            map.insert("exp".into(), (now + 720).into());
        }
        Defect::TooOld => {
            map.insert("iat".into(), (now.saturating_sub(86_400)).into());
        }
        Defect::BadSignature => {
            let token = key.sign(&header, &claims)?;
            return Ok(flip_signature_byte(&token));
        }
        Defect::ForeignKey => {
            let intruder = SigningKey::generate(key.alg())?;
            header.insert("kid".into(), key.kid().into());
            return intruder.sign(&header, &claims);
        }
        Defect::UnknownKid => {
            header.insert("kid".into(), random_id(12)?.into());
        }
        Defect::AlgNone => {
            return Ok(unsigned(
                &json!({ "alg": "none", "typ": "logout+jwt" }),
                &claims,
                b"",
            ));
        }
        Defect::Hmac => {
            let header = json!({ "alg": "HS256", "typ": "logout+jwt" });
            let input = signing_input(&header, &claims);
            let secret = hmac::Key::new(hmac::HMAC_SHA256, subject.audience.as_bytes());
            let tag = hmac::sign(&secret, input.as_bytes());
            return Ok(format!("{input}.{}", b64(tag.as_ref())));
        }
        Defect::EmbeddedKey => {
            let intruder = SigningKey::generate(key.alg())?;
            header.insert("jwk".into(), intruder.public_jwk());
            header.insert("kid".into(), intruder.kid().into());
            return intruder.sign(&header, &claims);
        }
        Defect::CriticalHeader => {
            header.insert("crit".into(), json!(["exp-extension"]));
            header.insert("exp-extension".into(), true.into());
        }
        Defect::WrongType => {
            header.insert("typ".into(), "at+jwt".into());
        }
        Defect::WrongIssuer => {
            let other = format!("{}/other-tenant", subject.issuer.trim_end_matches('/'));
            map.insert("iss".into(), other.into());
        }
        Defect::WrongAudience => {
            map.insert("aud".into(), format!("not-{}", subject.audience).into());
        }
        Defect::MissingEvents => {
            map.remove("events");
        }
        Defect::WrongEvent => {
            let https = BACKCHANNEL_LOGOUT_EVENT.replacen("http:", "https:", 1);
            map.insert("events".into(), json!({ https: {} }));
        }
        Defect::Nonce => {
            map.insert("nonce".into(), random_id(8)?.into());
        }
        Defect::NoSubject => {
            map.remove("sub");
            map.remove("sid");
        }
        Defect::MissingJti => {
            map.remove("jti");
        }
        Defect::MissingIat => {
            map.remove("iat");
        }
        Defect::Malformed => return Ok("this.is-not-a.jws".into()),
        Defect::Replay => {}
    }
    key.sign(&header, &claims)
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

fn unsigned(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!("{}.{}", signing_input(header, claims), b64(signature))
}

/// The token with the first byte of its signature inverted.
fn flip_signature_byte(token: &str) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let Some((input, signature)) = token.rsplit_once('.') else {
        return token.to_owned();
    };
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap_or_default();
    if let Some(first) = bytes.first_mut() {
        *first ^= 0xff;
    }
    format!("{input}.{}", b64(&bytes))
}

/// The algorithms `oidc-logout op serve` publishes a key for when not told otherwise.
pub const DEFAULT_ALGORITHMS: [SigningAlg; 3] =
    [SigningAlg::Rs256, SigningAlg::Es256, SigningAlg::EdDsa];
