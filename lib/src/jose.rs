//! Compact JWS (RFC 7515) as every signed token here arrives: logout tokens, Security Event
//! Tokens, FusionAuth signature JWTs and the access tokens the denylist layer validates.
//!
//! One splitter, one header check and one signature check serve them all, so a rule such as
//! "refuse an unknown `crit`" holds for every input at once. [`Jws::parse`] checks the size and
//! shape, decodes header and claims, and applies the header [`Rules`]: a supported algorithm
//! (`none` never; HMAC only where the rules allow it), no key named or embedded in the header
//! (`jku`, `x5u`, `jwk`, `x5c`: keys come only from configuration or the issuer's `jwks_uri`), no
//! `crit` (no JWS extension is understood here, so RFC 7515 §4.1.11 says refuse), and a `typ`
//! the token kind accepts. [`Jws::verify`] checks the signature with the keys of a [`KeySet`].
//! What the claims mean is each token kind's business.
//!
//! jsonwebtoken is used for the cryptography only (`jsonwebtoken::crypto::verify`, and JWK
//! decoding): its `Validation` does not check `crit`, `typ`, `iat` or `jti`, accepts `iss` as an
//! array, extra audiences, and HMAC by default.

use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

/// Why a compact JWS was refused before its claims were looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoseError {
    /// Longer than the token kind allows.
    #[error("the token is too large")]
    TooLarge,
    /// Not three base64url parts, or a part is not the JSON object it must be.
    #[error("the token is malformed: {0}")]
    Malformed(&'static str),
    /// `alg` is `none`, HMAC where it is not allowed, or not a signature algorithm implemented
    /// here.
    #[error("the signing algorithm is not supported")]
    UnsupportedAlgorithm,
    /// `alg` is supported but not one the sender registered.
    #[error("the signing algorithm is not the one registered")]
    AlgorithmNotAllowed,
    /// The header names or embeds a key.
    #[error("header parameter {0} is not accepted")]
    KeyInHeader(&'static str),
    /// The header has `crit`.
    #[error("critical header parameters are not supported")]
    CriticalHeader,
    /// `typ` says the token is another kind of token.
    #[error("the token type is not accepted here")]
    WrongType,
    /// No configured or published key matches the token's `kid` and algorithm.
    #[error("no matching signing key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the signature is invalid")]
    BadSignature,
}

/// The signature algorithms of public keys accepted anywhere. `none` and HMAC are never among
/// them.
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

fn parse_hmac(name: &str) -> Option<Algorithm> {
    match name {
        "HS256" => Some(Algorithm::HS256),
        "HS384" => Some(Algorithm::HS384),
        "HS512" => Some(Algorithm::HS512),
        _ => None,
    }
}

/// Whether `alg` is an HMAC algorithm.
pub fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// What a token kind accepts in the header.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// The longest token, in bytes.
    pub max_bytes: usize,
    /// The `typ` values accepted, lower case, without `application/` (RFC 7515 §4.1.9 compares
    /// case-insensitively and lets the prefix be omitted).
    pub types: &'static [&'static str],
    /// Whether a token without `typ` is accepted.
    pub untyped: bool,
    /// Whether HMAC algorithms are accepted (only with configured shared secrets).
    pub hmac: bool,
}

/// A token whose shape and header passed the [`Rules`], and whose signature has not been
/// checked yet: nothing in it may be trusted except to find the keys that verify it.
#[derive(Debug)]
pub struct Jws<'a> {
    signing_input: &'a str,
    signature: &'a str,
    alg: Algorithm,
    kid: Option<String>,
    claims: Map<String, Value>,
}

fn decode_object(part: &str, what: &'static str) -> Result<Map<String, Value>, JoseError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JoseError::Malformed(what))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JoseError::Malformed(what)),
    }
}

const NOT_COMPACT: &str = "not a signed JWT (JWS compact serialization)";

impl<'a> Jws<'a> {
    /// Split `token`, decode header and claims, and apply `rules` to the header.
    pub fn parse(token: &'a str, rules: &Rules) -> Result<Self, JoseError> {
        if token.len() > rules.max_bytes {
            return Err(JoseError::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JoseError::Malformed(NOT_COMPACT));
        };
        if signature.is_empty() {
            // An unsecured JWS (`alg: none`).
            return Err(JoseError::UnsupportedAlgorithm);
        }
        let header_json = decode_object(header, "header is not a base64url JSON object")?;
        let alg = match header_json.get("alg") {
            Some(Value::String(name)) => parse_algorithm(name)
                .or_else(|| parse_hmac(name).filter(|_| rules.hmac))
                .ok_or(JoseError::UnsupportedAlgorithm)?,
            _ => return Err(JoseError::Malformed("header has no alg")),
        };
        for name in ["jku", "x5u", "jwk", "x5c"] {
            if header_json.contains_key(name) {
                return Err(JoseError::KeyInHeader(name));
            }
        }
        if header_json.contains_key("crit") {
            return Err(JoseError::CriticalHeader);
        }
        match header_json.get("typ") {
            None if rules.untyped => {}
            Some(Value::String(typ)) if type_accepted(typ, rules.types) => {}
            _ => return Err(JoseError::WrongType),
        }
        let kid = match header_json.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(JoseError::Malformed("kid is not a string")),
        };
        let claims = decode_object(payload, "claims are not a base64url JSON object")?;
        let signing_input = token
            .get(..header.len() + 1 + payload.len())
            .ok_or(JoseError::Malformed(NOT_COMPACT))?;
        Ok(Self {
            signing_input,
            signature,
            alg,
            kid,
            claims,
        })
    }

    /// The header's `alg`.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The header's `kid`, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The claims, not yet verified.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// A string claim, not yet verified (to pick whose keys verify the token).
    pub fn unverified_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// Refuse an algorithm the sender did not register.
    pub fn require_algorithm(&self, allowed: &[Algorithm]) -> Result<(), JoseError> {
        if allowed.contains(&self.alg) {
            Ok(())
        } else {
            Err(JoseError::AlgorithmNotAllowed)
        }
    }

    /// Verify the signature with one of `keys` (already chosen for this token's algorithm).
    /// [`UnknownKey`](JoseError::UnknownKey) when there is none to try.
    pub fn verify_with<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k DecodingKey>,
    ) -> Result<(), JoseError> {
        let mut any_key = false;
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
                return Ok(());
            }
        }
        Err(if any_key {
            JoseError::BadSignature
        } else {
            JoseError::UnknownKey
        })
    }

    /// Verify the signature with the keys of `keys` matching the token's `kid` and algorithm.
    pub fn verify(&self, keys: &KeySet) -> Result<(), JoseError> {
        self.verify_with(keys.matching(self.kid(), self.alg))
    }

    /// The claims, once the signature verified.
    pub fn into_claims(self) -> Map<String, Value> {
        self.claims
    }
}

fn type_accepted(typ: &str, accepted: &[&str]) -> bool {
    let lower = typ.to_ascii_lowercase();
    let short = lower.strip_prefix("application/").unwrap_or(&lower);
    accepted.contains(&short)
}

/// A NumericDate claim (RFC 7519 §2) as whole seconds: `Ok(None)` when absent, an error when it
/// is not a non-negative JSON number. Fractions are truncated.
pub(crate) fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, ()> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) => Ok(Some(v)),
            None => match n.as_f64() {
                Some(f) if (0.0..1e15).contains(&f) => {
                    // Truncation is the intent: NumericDate seconds, fraction dropped.
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    Ok(Some(f as u64))
                }
                _ => Err(()),
            },
        },
        Some(_) => Err(()),
    }
}

/// Whether `aud` (a string or an array of strings) names at least one of `accepted`.
#[cfg(any(
    feature = "shared-signals",
    feature = "denylist",
    feature = "universal-logout"
))]
pub(crate) fn audience_names_one_of(claims: &Map<String, Value>, accepted: &[String]) -> bool {
    match claims.get("aud") {
        Some(Value::String(aud)) => accepted.contains(aud),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|aud| accepted.iter().any(|a| a == aud)),
        _ => false,
    }
}

/// One verification key.
#[derive(Clone)]
struct Key {
    kid: Option<String>,
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

/// A set of verification keys, each with the algorithms it may verify: an issuer's published
/// keys, decoded once per fetch.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Vec<Key>,
    fetched_at: Option<Instant>,
    /// The JWKS document as published, for verifiers that read keys themselves.
    document: Arc<Value>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| (&k.kid, &k.algorithms)))
            .finish()
    }
}

impl KeySet {
    /// The signature keys of a JWKS document (`{"keys": [...]}`). Entries that are not public
    /// signature keys of a supported type are skipped, never turned into a verifier: `use`
    /// other than `sig`, `key_ops` without `verify`, symmetric (`oct`) keys, an `alg` outside
    /// the key's family, unknown types and curves, malformed members.
    pub fn from_jwks(document: &Value) -> Option<Self> {
        let Some(Value::Array(entries)) = document.get("keys") else {
            return None;
        };
        let keys = entries
            .iter()
            .filter_map(|entry| serde_json::from_value::<Jwk>(entry.clone()).ok())
            .filter_map(|jwk| usable_key(&jwk))
            .collect();
        Some(Self {
            keys,
            fetched_at: Some(Instant::now()),
            document: Arc::new(document.clone()),
        })
    }

    /// The keys that may verify a token with this `kid` (any key, when the token has none) and
    /// algorithm.
    pub fn matching<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a DecodingKey> + 'a {
        self.keys
            .iter()
            .filter(move |k| {
                k.algorithms.contains(&alg) && (kid.is_none() || k.kid.as_deref() == kid)
            })
            .map(|k| &k.key)
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is usable.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// When the keys were fetched (`None` for an empty default set).
    pub fn fetched_at(&self) -> Option<Instant> {
        self.fetched_at
    }

    /// The JWKS document the keys came from (`null` for an empty default set).
    pub fn document(&self) -> &Value {
        &self.document
    }
}

const RSA_FAMILY: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

fn usable_key(jwk: &Jwk) -> Option<Key> {
    let common = &jwk.common;
    if common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    if common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return None;
    }
    let family: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA_FAMILY,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            &[Algorithm::EdDSA]
        }
        // Symmetric keys would become HMAC verifiers; other types are not supported.
        _ => return None,
    };
    let algorithms = match common.key_algorithm {
        None => family.to_vec(),
        Some(declared) => {
            let alg = key_algorithm(declared)?;
            if !family.contains(&alg) {
                return None;
            }
            vec![alg]
        }
    };
    Some(Key {
        kid: common.key_id.clone(),
        algorithms,
        key: DecodingKey::from_jwk(jwk).ok()?,
    })
}

fn key_algorithm(declared: KeyAlgorithm) -> Option<Algorithm> {
    Some(match declared {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RULES: Rules = Rules {
        max_bytes: 1024,
        types: &["jwt", "logout+jwt"],
        untyped: true,
        hmac: false,
    };

    fn b64(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    fn token(header: Value) -> String {
        format!("{}.{}.c2ln", b64(&header), b64(&json!({"iss": "x"})))
    }

    fn parse(header: Value) -> Result<Algorithm, JoseError> {
        let t = token(header);
        Jws::parse(&t, &RULES).map(|j| j.algorithm())
    }

    #[test]
    fn header_rules() {
        assert_eq!(parse(json!({"alg": "ES256"})), Ok(Algorithm::ES256));
        assert_eq!(
            parse(json!({"alg": "RS256", "typ": "Application/Logout+JWT"})),
            Ok(Algorithm::RS256)
        );
        assert_eq!(
            parse(json!({"alg": "none"})),
            Err(JoseError::UnsupportedAlgorithm)
        );
        assert_eq!(
            parse(json!({"alg": "HS256"})),
            Err(JoseError::UnsupportedAlgorithm)
        );
        assert_eq!(
            parse(json!({"typ": "JWT"})),
            Err(JoseError::Malformed("header has no alg"))
        );
        for name in ["jku", "x5u", "jwk", "x5c"] {
            assert_eq!(
                parse(json!({"alg": "RS256", name: "x"})),
                Err(JoseError::KeyInHeader(name))
            );
        }
        assert_eq!(
            parse(json!({"alg": "RS256", "crit": ["exp"]})),
            Err(JoseError::CriticalHeader)
        );
        assert_eq!(
            parse(json!({"alg": "RS256", "typ": "at+jwt"})),
            Err(JoseError::WrongType)
        );
        assert_eq!(
            parse(json!({"alg": "RS256", "typ": 1})),
            Err(JoseError::WrongType)
        );
        assert_eq!(
            parse(json!({"alg": "RS256", "kid": 1})),
            Err(JoseError::Malformed("kid is not a string"))
        );
        let hmac = Rules {
            hmac: true,
            ..RULES
        };
        let t = token(json!({"alg": "HS256"}));
        assert_eq!(
            Jws::parse(&t, &hmac).map(|j| j.algorithm()),
            Ok(Algorithm::HS256)
        );
        let required = Rules {
            untyped: false,
            types: &["secevent+jwt"],
            ..RULES
        };
        let t = token(json!({"alg": "RS256"}));
        assert_eq!(
            Jws::parse(&t, &required).map(|j| j.algorithm()),
            Err(JoseError::WrongType)
        );
    }

    #[test]
    fn shapes() {
        let rules = &RULES;
        assert_eq!(
            Jws::parse("a.b", rules).err(),
            Some(JoseError::Malformed(NOT_COMPACT))
        );
        assert_eq!(
            Jws::parse("a.b.c.d", rules).err(),
            Some(JoseError::Malformed(NOT_COMPACT))
        );
        let unsigned = format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&json!({})));
        assert_eq!(
            Jws::parse(&unsigned, rules).err(),
            Some(JoseError::UnsupportedAlgorithm)
        );
        assert_eq!(
            Jws::parse(&"a".repeat(1025), rules).err(),
            Some(JoseError::TooLarge)
        );
        let not_object = format!(
            "{}.{}.c2ln",
            b64(&json!({"alg": "RS256"})),
            b64(&json!([1]))
        );
        assert_eq!(
            Jws::parse(&not_object, rules).err(),
            Some(JoseError::Malformed(
                "claims are not a base64url JSON object"
            ))
        );
    }

    #[test]
    fn numeric_dates() {
        let claims = json!({"a": 10, "b": 10.9, "c": -1, "d": "10", "e": 1e300});
        let claims = claims.as_object().unwrap();
        assert_eq!(numeric_date(claims, "a"), Ok(Some(10)));
        assert_eq!(numeric_date(claims, "b"), Ok(Some(10)));
        assert_eq!(numeric_date(claims, "z"), Ok(None));
        for bad in ["c", "d", "e"] {
            assert_eq!(numeric_date(claims, bad), Err(()), "{bad}");
        }
    }

    #[test]
    fn only_public_signature_keys_become_verifiers() {
        let rsa = json!({"kty": "RSA", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"});
        let with = |extra: Value| {
            let mut key = rsa.clone();
            for (k, v) in extra.as_object().unwrap() {
                key[k] = v.clone();
            }
            KeySet::from_jwks(&json!({ "keys": [key] })).unwrap().len()
        };
        assert_eq!(with(json!({})), 1);
        assert_eq!(with(json!({"use": "sig", "alg": "PS256"})), 1);
        assert_eq!(with(json!({"use": "enc"})), 0);
        assert_eq!(with(json!({"key_ops": ["encrypt"]})), 0);
        assert_eq!(with(json!({"alg": "ES256"})), 0, "alg outside the family");
        assert_eq!(with(json!({"alg": "HS256"})), 0);
        let oct = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]});
        assert!(KeySet::from_jwks(&oct).unwrap().is_empty());
        let broken = json!({"keys": [{"kty": "EC", "crv": "P-256"}, 7]});
        assert!(KeySet::from_jwks(&broken).unwrap().is_empty());
        assert!(KeySet::from_jwks(&json!({})).is_none());
    }
}
