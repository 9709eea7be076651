//! The console's own sessions. Before sign-in there is no server state at all: the sign-in page
//! sets a short-lived cookie holding a CSRF token for the token form and, once an OIDC sign-in
//! starts, its `state`, `nonce` and PKCE verifier (nothing an attacker could use: it is the
//! browser's own, and `HttpOnly`). A sign-in creates a record in the index's record store under
//! `console:<random id>` for the sign-in's lifetime, named by a second cookie; it holds who
//! signed in, with what scope, and the CSRF token every form carries. Both cookies are
//! `HttpOnly`, `SameSite=Strict`, limited to `/console`, and `Secure` with the `__Secure-` name
//! prefix unless `console.secure_cookies = false` (a console reached over plain http on
//! loopback). Signing out deletes the record, so a copied cookie dies with it.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use headers::{Cookie, HeaderMapExt as _};
use serde::{Deserialize, Serialize};

use crate::core::{Scope, Sender};
use crate::index::{RecordStore, StoreError};
use crate::sys::{random_id, secrets_equal, unix_now};

/// The signed-in session's cookie (`__Secure-` first when the cookies are `Secure`, so that no
/// plain-http page or sibling domain can set it).
pub(super) const COOKIE: &str = "oidc_logout_console";
/// The cookie of a sign-in in progress (likewise).
pub(super) const PRE_COOKIE: &str = "oidc_logout_console_signin";
/// How long a sign-in may take (the OP's login page included).
const PRE_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// Where both cookies are sent.
const PATH: &str = "/console";
/// Records of console sessions are kept under ids with this prefix.
const RECORD_PREFIX: &str = "console:";

/// Who signed in, and what they may act on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Admin {
    /// How the audit line and the activity name them: `oidc:<sub at the OP>` or
    /// `token:<the token's fingerprint>`.
    pub(super) name: String,
    /// How the pages name them (the OP's `preferred_username` or e-mail, or `name`).
    pub(super) display: String,
    /// The fingerprint of the admin token they signed in with: the sign-in lasts only while
    /// that token is configured, with the same scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) token: Option<String>,
    /// Their issuer (`None`: every configured issuer).
    pub(super) issuer: Option<String>,
    /// Their customer, for a scoped token.
    pub(super) customer: Option<String>,
}

impl Admin {
    /// The sender the console's actions are made as.
    pub(super) fn sender(&self) -> Sender {
        let scope = match &self.issuer {
            Some(issuer) => Scope::issuer(issuer.clone()).with_customer(self.customer.clone()),
            None => Scope::any_issuer(),
        };
        Sender::new("console", self.name.clone(), scope)
    }
}

/// A signed-in session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Signed {
    pub(super) admin: Admin,
    /// Every form's CSRF token.
    pub(super) csrf: String,
    /// Until when it lasts, seconds since the epoch.
    until: u64,
}

impl Signed {
    /// Whether a form's `csrf` field is this session's token.
    pub(super) fn csrf_matches(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| secrets_equal(p.as_bytes(), self.csrf.as_bytes()))
    }
}

/// A sign-in in progress, as its cookie holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Pending {
    /// The token form's CSRF token.
    pub(super) csrf: String,
    /// The OIDC sign-in started, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) oidc: Option<PendingOidc>,
    /// Until when it is good, seconds since the epoch.
    until: u64,
}

/// An OIDC sign-in started: what the callback checks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct PendingOidc {
    pub(super) state: String,
    pub(super) nonce: String,
    pub(super) verifier: String,
}

/// The randomness failed: nothing can be signed in.
#[derive(Debug, thiserror::Error)]
pub(super) enum SessionError {
    #[error("the system's random number generator failed")]
    Random,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The console's sessions, in `store`.
#[derive(Clone)]
pub(super) struct Sessions<S> {
    store: S,
    lifetime: Duration,
    /// Whether cookies are `Secure` (the console is reached over https).
    pub(super) secure: bool,
}

impl<S: RecordStore> Sessions<S> {
    pub(super) fn new(store: S, lifetime: Duration, secure: bool) -> Self {
        Self {
            store,
            lifetime,
            secure,
        }
    }

    /// The signed-in session the request's cookie names, if it is live; with its id.
    pub(super) async fn signed_in(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<(String, Signed)>, StoreError> {
        let Some(id) = cookie(headers, COOKIE, self.secure).filter(|id| plausible_id(id)) else {
            return Ok(None);
        };
        let Some(bytes) = self.store.get_record(&record_id(&id)).await? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice::<Signed>(&bytes)
            .ok()
            .filter(|s| s.until > unix_now())
            .map(|s| (id, s)))
    }

    /// Sign `admin` in: a new record, and the cookie naming it.
    pub(super) async fn sign_in(&self, admin: Admin) -> Result<HeaderValue, SessionError> {
        let signed = Signed {
            admin,
            csrf: random_id(32).map_err(|_| SessionError::Random)?,
            until: unix_now() + self.lifetime.as_secs(),
        };
        let bytes =
            serde_json::to_vec(&signed).map_err(|e| StoreError::Unexpected(e.to_string()))?;
        loop {
            let id = random_id(32).map_err(|_| SessionError::Random)?;
            if self
                .store
                .create_record(&record_id(&id), &bytes, self.lifetime)
                .await?
            {
                return Ok(set_cookie(COOKIE, &id, self.lifetime, self.secure));
            }
        }
    }

    /// Sign the session `id` out.
    pub(super) async fn sign_out(&self, id: &str) -> Result<(), StoreError> {
        self.store.delete_record(&record_id(id)).await
    }
}

/// The sign-in in progress the request's cookie holds, if it is still good.
pub(super) fn pending(headers: &HeaderMap, secure: bool) -> Option<Pending> {
    let raw = cookie(headers, PRE_COOKIE, secure)?;
    if raw.len() > 1024 {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
    serde_json::from_slice::<Pending>(&bytes)
        .ok()
        .filter(|p| p.until > unix_now())
}

/// A new sign-in in progress (keeping `csrf` when the browser has one), and its cookie.
pub(super) fn start(
    kept: Option<Pending>,
    oidc: Option<PendingOidc>,
    secure: bool,
) -> Result<(Pending, HeaderValue), SessionError> {
    let csrf = match kept {
        Some(kept) => kept.csrf,
        None => random_id(32).map_err(|_| SessionError::Random)?,
    };
    let pending = Pending {
        csrf,
        oidc,
        until: unix_now() + PRE_LIFETIME.as_secs(),
    };
    let value = serde_json::to_vec(&pending).map_err(|e| StoreError::Unexpected(e.to_string()))?;
    let cookie = set_cookie(
        PRE_COOKIE,
        &URL_SAFE_NO_PAD.encode(value),
        PRE_LIFETIME,
        secure,
    );
    Ok((pending, cookie))
}

/// A `Set-Cookie` value that removes cookie `name`.
pub(super) fn clear(name: &str, secure: bool) -> HeaderValue {
    set_cookie(name, "", Duration::ZERO, secure)
}

/// A cookie's name as sent: `__Secure-<name>` when the cookies are `Secure`.
pub(super) fn cookie_name(name: &str, secure: bool) -> String {
    if secure {
        format!("__Secure-{name}")
    } else {
        name.to_owned()
    }
}

fn set_cookie(name: &str, value: &str, lifetime: Duration, secure: bool) -> HeaderValue {
    let name = cookie_name(name, secure);
    let secure = if secure { "; Secure" } else { "" };
    // Values are base64url: always a valid header value.
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={PATH}; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
        lifetime.as_secs()
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

fn cookie(headers: &HeaderMap, name: &str, secure: bool) -> Option<String> {
    let name = cookie_name(name, secure);
    headers
        .typed_get::<Cookie>()
        .and_then(|c| c.get(&name).map(str::to_owned))
}

fn record_id(id: &str) -> String {
    format!("{RECORD_PREFIX}{id}")
}

/// A session id as this module makes them: 43 base64url characters.
fn plausible_id(id: &str) -> bool {
    id.len() == 43
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
