//! Tokens sealed at rest: the ID, access and refresh tokens of a session's [`Login`](super::Login)
//! are encrypted (AES-256-GCM) before the record reaches the store, and opened when it is
//! loaded, so that a dump, a replica, a backup or a `MONITOR` of the store shows no token.
//!
//! A sealed value is `sealed:v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`. The key id
//! (8 hex digits derived from the key) says which of the [`TokenKeys`] opens it, so keys can be
//! rotated: the first key seals, every key opens. The associated data binds a value to its field
//! and its login's issuer and subject: a sealed refresh token copied into another user's record
//! does not open there. A value without the prefix is a token written before sealing was turned
//! on: it is read as is, and sealed at the session's next save.

use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value};

/// The fields of a recorded login that hold a token.
pub(crate) const TOKEN_FIELDS: [&str; 3] = ["id_token", "refresh_token", "access_token"];

/// What every sealed value starts with.
const PREFIX: &str = "sealed:";

/// The format this version writes.
const VERSION: &str = "v1";

/// Bytes in a key (AES-256).
const KEY_LEN: usize = 32;

/// The keys that seal the tokens kept in session records: the first seals, every one opens.
/// Cheap to clone; its `Debug` shows the key ids only.
///
/// ```
/// use oidc_logout::session_store::TokenKeys;
///
/// // `openssl rand -base64 32` makes a key; the new one first, the old ones after it.
/// let keys = TokenKeys::parse(
///     "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=,AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
/// )?;
/// assert_eq!(keys.ids().count(), 2);
/// assert!(TokenKeys::parse("too-short").is_err());
/// # Ok::<(), oidc_logout::session_store::TokenKeyError>(())
/// ```
#[derive(Clone)]
pub struct TokenKeys(Arc<Keys>);

struct Keys {
    /// The first key: it seals.
    sealing: TokenKey,
    /// The older keys: they only open.
    older: Vec<TokenKey>,
}

impl Keys {
    fn all(&self) -> impl Iterator<Item = &TokenKey> {
        std::iter::once(&self.sealing).chain(&self.older)
    }
}

struct TokenKey {
    id: String,
    key: RandomizedNonceKey,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.ids()).finish()
    }
}

/// Keys that cannot be used; the message says why, never what the key was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenKeyError {
    /// No key given.
    #[error("no token key given: give at least one (`openssl rand -base64 32` makes one)")]
    Empty,
    /// A key that is not base64 of 32 bytes.
    #[error("token key {position} is not 32 bytes of base64 (`openssl rand -base64 32` makes one)")]
    Malformed {
        /// Which key in the list (from 1).
        position: usize,
    },
    /// The same key twice.
    #[error("token key {position} is given twice")]
    Repeated {
        /// Which key in the list (from 1).
        position: usize,
    },
    /// The cryptographic library refused the key.
    #[error("token key {position} cannot be used for AES-256-GCM")]
    Unusable {
        /// Which key in the list (from 1).
        position: usize,
    },
}

/// A sealed value that could not be opened (or a value that could not be sealed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SealError {
    #[error("sealed with key {0}, which is not one of the token keys")]
    UnknownKey(String),
    #[error("not a sealed value of a known format")]
    Malformed,
    #[error("the sealed value does not open with its key (altered, or moved from another login)")]
    Altered,
    #[error("the system's random number generator failed")]
    Random,
}

impl TokenKeys {
    /// Keys from a comma-separated list of base64 keys (32 bytes each), newest first: the form of
    /// the `token_keys` setting and of `APP_TOKEN_KEYS`. `openssl rand -base64 32` makes a key.
    pub fn parse(list: &str) -> Result<Self, TokenKeyError> {
        let mut keys: Vec<TokenKey> = Vec::new();
        for (n, text) in list
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .enumerate()
        {
            let position = n + 1;
            let bytes = decode_key(text).ok_or(TokenKeyError::Malformed { position })?;
            let id = key_id(&bytes);
            if keys.iter().any(|k| k.id == id) {
                return Err(TokenKeyError::Repeated { position });
            }
            let key = RandomizedNonceKey::new(&AES_256_GCM, &bytes)
                .map_err(|_| TokenKeyError::Unusable { position })?;
            keys.push(TokenKey { id, key });
        }
        let mut keys = keys.into_iter();
        let sealing = keys.next().ok_or(TokenKeyError::Empty)?;
        Ok(Self(Arc::new(Keys {
            sealing,
            older: keys.collect(),
        })))
    }

    /// The key ids, newest first (the first seals): what to compare across instances.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.0.all().map(|k| k.id.as_str())
    }

    /// Seal `token`, the `field` of `issuer`'s `sub`'s login.
    pub(crate) fn seal(
        &self,
        field: &str,
        issuer: &str,
        sub: &str,
        token: &str,
    ) -> Result<String, SealError> {
        let key = &self.0.sealing;
        let mut data = token.as_bytes().to_vec();
        let nonce = key
            .key
            .seal_in_place_append_tag(Aad::from(context(field, issuer, sub)), &mut data)
            .map_err(|_| SealError::Random)?;
        let mut out = Vec::with_capacity(NONCE_LEN + data.len());
        out.extend_from_slice(nonce.as_ref());
        out.extend_from_slice(&data);
        Ok(format!(
            "{PREFIX}{VERSION}:{}:{}",
            key.id,
            URL_SAFE_NO_PAD.encode(out)
        ))
    }

    /// Open `value`, a sealed `field` of `issuer`'s `sub`'s login.
    pub(crate) fn open(
        &self,
        field: &str,
        issuer: &str,
        sub: &str,
        value: &str,
    ) -> Result<String, SealError> {
        let rest = value
            .strip_prefix(PREFIX)
            .and_then(|r| r.strip_prefix(VERSION))
            .and_then(|r| r.strip_prefix(':'))
            .ok_or(SealError::Malformed)?;
        let (id, body) = rest.split_once(':').ok_or(SealError::Malformed)?;
        let key = self
            .0
            .all()
            .find(|k| k.id == id)
            .ok_or_else(|| SealError::UnknownKey(printable_id(id)))?;
        let mut bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SealError::Malformed)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::Malformed);
        }
        let mut data = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| SealError::Malformed)?;
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(context(field, issuer, sub)), &mut data)
            .map_err(|_| SealError::Altered)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SealError::Altered)
    }

    /// The recorded login `login` (a [`Login`](super::Login) as JSON) with every token sealed,
    /// or `None` when it holds no token in the clear (nothing to write differently).
    pub(crate) fn seal_login(&self, login: &Value) -> Result<Option<Value>, SealError> {
        let Some(fields) = login.as_object() else {
            return Ok(None);
        };
        let clear = |field: &str| {
            fields
                .get(field)
                .and_then(Value::as_str)
                .filter(|v| !is_sealed(v))
        };
        if !TOKEN_FIELDS.iter().any(|f| clear(f).is_some()) {
            return Ok(None);
        }
        let (issuer, sub) = owner(fields);
        let mut sealed = fields.clone();
        for field in TOKEN_FIELDS {
            if let Some(token) = clear(field) {
                let value = self.seal(field, issuer, sub, token)?;
                sealed.insert(field.to_owned(), Value::String(value));
            }
        }
        Ok(Some(Value::Object(sealed)))
    }
}

/// Open the sealed tokens of a recorded login in place. A token that does not open (sealed with
/// a key no longer configured, or altered) is dropped, with a warning: the session goes on
/// without it, as one whose OP gave no such token.
pub(crate) fn open_login(keys: Option<&TokenKeys>, login: &mut Value) {
    let Some(fields) = login.as_object_mut() else {
        return;
    };
    if !TOKEN_FIELDS.iter().any(|f| {
        fields
            .get(*f)
            .and_then(Value::as_str)
            .is_some_and(is_sealed)
    }) {
        return;
    }
    let (issuer, sub) = owner(fields);
    let (issuer, sub) = (issuer.to_owned(), sub.to_owned());
    for field in TOKEN_FIELDS {
        let Some(value) = fields
            .get(field)
            .and_then(Value::as_str)
            .filter(|v| is_sealed(v))
        else {
            continue;
        };
        let opened = match keys {
            Some(keys) => keys.open(field, &issuer, &sub, value),
            None => Err(SealError::UnknownKey(
                "(no token keys are configured)".to_owned(),
            )),
        };
        match opened {
            Ok(token) => {
                fields.insert(field.to_owned(), Value::String(token));
            }
            Err(error) => {
                tracing::warn!(field, %error, "a session's sealed token cannot be opened; dropping it");
                fields.remove(field);
            }
        }
    }
}

/// Open the sealed refresh token of a login read from a stored record (for its revocation); one
/// that does not open is dropped, with a warning.
#[cfg(feature = "rp")]
pub(crate) fn open_refresh_token(keys: Option<&TokenKeys>, login: &mut super::Login) {
    let Some(token) = login
        .refresh_token
        .as_ref()
        .filter(|t| is_sealed(t.expose()))
    else {
        return;
    };
    let field = "refresh_token";
    let opened = match keys {
        Some(keys) => keys.open(field, &login.issuer, &login.sub, token.expose()),
        None => Err(SealError::UnknownKey(
            "(no token keys are configured)".to_owned(),
        )),
    };
    login.refresh_token = match opened {
        Ok(token) => Some(super::TokenSecret::new(token)),
        Err(error) => {
            tracing::warn!(field, %error, "an ended session's sealed refresh token cannot be opened; it is not revoked");
            None
        }
    };
}

/// Whether a stored token value is sealed.
pub(crate) fn is_sealed(value: &str) -> bool {
    value.starts_with(PREFIX)
}

fn owner(fields: &Map<String, Value>) -> (&str, &str) {
    let text = |k: &str| fields.get(k).and_then(Value::as_str).unwrap_or_default();
    (text("issuer"), text("sub"))
}

/// The associated data of a sealed field: the field and whose login it belongs to, each
/// length-prefixed so that no two (field, issuer, sub) share one encoding.
fn context(field: &str, issuer: &str, sub: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(32 + field.len() + issuer.len() + sub.len());
    aad.extend_from_slice(b"oidc-logout token v1");
    for part in [field, issuer, sub] {
        aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

fn decode_key(text: &str) -> Option<[u8; KEY_LEN]> {
    let bytes = STANDARD
        .decode(text)
        .or_else(|_| STANDARD_NO_PAD.decode(text))
        .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
        .ok()?;
    bytes.try_into().ok()
}

/// A key's id: the first 4 bytes of SHA-256 over a label and the key, in hex. It names the key
/// in sealed values and logs without revealing it.
fn key_id(key: &[u8; KEY_LEN]) -> String {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    context.update(b"oidc-logout token key id");
    context.update(key);
    let digest = context.finish();
    digest
        .as_ref()
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A key id read from a stored value, fit to print (it comes from the store, not from us).
fn printable_id(id: &str) -> String {
    if id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        id.to_owned()
    } else {
        "(malformed)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const B: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

    #[test]
    fn a_sealed_token_opens_only_as_the_same_field_of_the_same_login() {
        let keys = TokenKeys::parse(A).unwrap();
        let sealed = keys
            .seal("refresh_token", "https://op", "alice", "rt-1")
            .unwrap();
        assert!(sealed.starts_with("sealed:v1:"));
        assert!(!sealed.contains("rt-1"));
        assert_eq!(
            keys.open("refresh_token", "https://op", "alice", &sealed),
            Ok("rt-1".to_owned())
        );
        for (field, issuer, sub) in [
            ("access_token", "https://op", "alice"),
            ("refresh_token", "https://op", "bob"),
            ("refresh_token", "https://other", "alice"),
        ] {
            assert_eq!(
                keys.open(field, issuer, sub, &sealed),
                Err(SealError::Altered)
            );
        }
        // Each seal draws its own nonce.
        assert_ne!(
            sealed,
            keys.seal("refresh_token", "https://op", "alice", "rt-1")
                .unwrap()
        );
    }

    #[test]
    fn rotation_seals_with_the_first_key_and_opens_with_any() {
        let old = TokenKeys::parse(A).unwrap();
        let rotated = TokenKeys::parse(&format!("{B}, {A}")).unwrap();
        let before = old.seal("id_token", "i", "s", "t").unwrap();
        assert_eq!(rotated.open("id_token", "i", "s", &before), Ok("t".into()));
        let after = rotated.seal("id_token", "i", "s", "t").unwrap();
        assert!(matches!(
            old.open("id_token", "i", "s", &after),
            Err(SealError::UnknownKey(_))
        ));
        assert_eq!(rotated.ids().count(), 2);
        assert!(!format!("{rotated:?}").contains(A));
    }

    #[test]
    fn an_altered_or_malformed_value_does_not_open() {
        let keys = TokenKeys::parse(A).unwrap();
        let sealed = keys.seal("id_token", "i", "s", "token").unwrap();
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 2;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert_eq!(
            keys.open("id_token", "i", "s", &altered),
            Err(SealError::Altered)
        );
        for bad in [
            "sealed:v2:x:y",
            "sealed:v1:nocolon",
            "sealed:v1:00000000:!!!",
            "plain",
        ] {
            assert!(keys.open("id_token", "i", "s", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_keys_are_refused_without_echoing_them() {
        assert_eq!(TokenKeys::parse(" , ").unwrap_err(), TokenKeyError::Empty);
        let short = "c2hvcnQ=";
        let error = TokenKeys::parse(&format!("{A},{short}")).unwrap_err();
        assert_eq!(error, TokenKeyError::Malformed { position: 2 });
        assert!(!error.to_string().contains(short));
        assert_eq!(
            TokenKeys::parse(&format!("{A},{A}")).unwrap_err(),
            TokenKeyError::Repeated { position: 2 }
        );
    }

    #[test]
    fn a_login_is_sealed_whole_and_opened_back() {
        let keys = TokenKeys::parse(A).unwrap();
        let login = serde_json::json!({
            "issuer": "https://op", "sub": "alice", "sid": "s1", "auth_time": 1,
            "logged_in_at": 1, "id_token": "eyJ.id", "refresh_token": "rt", "access_token": "at"
        });
        let sealed = keys.seal_login(&login).unwrap().unwrap();
        let text = sealed.to_string();
        assert!(!text.contains("eyJ.id") && !text.contains("\"rt\"") && !text.contains("\"at\""));
        assert_eq!(keys.seal_login(&sealed).unwrap(), None, "sealed once");
        let mut opened = sealed.clone();
        open_login(Some(&keys), &mut opened);
        assert_eq!(opened, login);
        // Without the key, the tokens are dropped and the login stays.
        let mut dropped = sealed;
        open_login(None, &mut dropped);
        assert_eq!(dropped.get("sub"), Some(&Value::from("alice")));
        assert!(TOKEN_FIELDS.iter().all(|f| dropped.get(f).is_none()));
        // A login written before sealing reads as is.
        let mut legacy = login.clone();
        open_login(Some(&keys), &mut legacy);
        assert_eq!(legacy, login);
    }
}
