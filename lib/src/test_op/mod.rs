//! A minimal OpenID Provider that signs logout tokens, for integrators, the demo and the tests.
//!
//! [`TestOp`] serves discovery, a JWKS, revocation, refresh and userinfo endpoints, and logs
//! users in: the authorization code flow with PKCE and RP-Initiated Logout with back-channel
//! logout to its clients (see [`Client`]); [`keys`] holds its signing keys and the key file;
//! [`forge`] builds valid and deliberately broken logout tokens; [`send`] posts them to a
//! receiver, one at a time or as a load. `oidc-logout op` exposes all of it on the command line.
//! Any user name logs in: it is not an OP for real users.

mod browser;
#[doc(hidden)]
pub mod forge;
#[doc(hidden)]
pub mod keys;
mod login;
#[doc(hidden)]
pub mod send;

pub use browser::{Browser, BrowserError, Page};
#[doc(hidden)]
pub use forge::{Defect, logout_claims};
#[doc(hidden)]
pub use keys::{CryptoError, KeyFile, random_id};
pub use keys::{SigningAlg, SigningKey};
pub use login::Client;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

/// What the JWKS endpoint serves; tests switch it to simulate a broken OP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwksMode {
    /// The published keys.
    Normal,
    /// HTTP 500.
    Error,
    /// 200 with a body that is not JSON.
    Garbage,
    /// The published keys, after this long.
    Slow(std::time::Duration),
}

/// What the revocation endpoint answers; tests switch it to simulate an OP in trouble.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RevocationMode {
    /// 200: revoked.
    Normal,
    /// 503 with `Retry-After: 1`.
    Unavailable,
}

/// The built-in OP: an issuer URL, its published keys and its discovery endpoints.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use oidc_logout::test_op::{Client, TestOp};
///
/// // An OpenID Provider on a free loopback port, for an application's own tests.
/// let (op, issuer) = TestOp::start_local().await?;
/// op.register_client(Client::new("app", "app-secret", "http://127.0.0.1:3000"));
/// op.set_auto_user(Some("alice".into())); // every login is alice's, without a form
/// let discovery = reqwest::get(format!("{issuer}/.well-known/openid-configuration")).await?;
/// assert!(discovery.status().is_success());
/// # Ok(()) }
/// ```
pub struct TestOp {
    issuer: String,
    published: RwLock<Vec<Arc<SigningKey>>>,
    jwks_requests: AtomicU64,
    jwks_mode: RwLock<JwksMode>,
    advertise_backchannel: AtomicBool,
    revoked: std::sync::Mutex<Vec<(String, Option<String>)>>,
    revocation_mode: RwLock<RevocationMode>,
    refresh_tokens: std::sync::Mutex<RefreshTokens>,
    /// Refresh tokens presented again after their rotation (each revoked its family).
    reuses: AtomicU64,
    refresh_id_token: RwLock<Option<String>>,
    /// Access tokens the userinfo endpoint accepts, and whose they are.
    access_tokens: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// Whether the token and userinfo endpoints answer 503 (an OP that cannot be reached).
    down: AtomicBool,
    /// Refresh and userinfo requests answered so far.
    user_requests: AtomicU64,
    /// Clients, OP sessions, codes and grants of the login flow.
    logins: std::sync::Mutex<login::Logins>,
}

impl std::fmt::Debug for TestOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestOp")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
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
            reuses: AtomicU64::new(0),
            refresh_id_token: RwLock::new(None),
            access_tokens: std::sync::Mutex::default(),
            down: AtomicBool::new(false),
            user_requests: AtomicU64::new(0),
            logins: std::sync::Mutex::default(),
        })
    }

    /// The ID token the refresh grant returns from now on (`None`: none, the default). Tests
    /// sign it as they need: valid, or for another user, audience or key.
    pub fn set_refresh_id_token(&self, id_token: Option<String>) {
        *self
            .refresh_id_token
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = id_token;
    }

    /// An OP with a fresh RS256 key, served on a free loopback port in this runtime, for an
    /// application's own tests; returns it and its issuer URL. Register the application with
    /// [`register_client`](Self::register_client) and log users in with a [`Browser`].
    pub async fn start_local() -> Result<(Arc<Self>, String), std::io::Error> {
        let key = SigningKey::generate(SigningAlg::Rs256)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let issuer = format!("http://{}", listener.local_addr()?);
        let op = Self::new(issuer.clone(), vec![Arc::new(key)]);
        let router = op.router();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Ok((op, issuer))
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

    /// Issue a refresh token the token endpoint will accept (once: it rotates), the first of a
    /// family: presenting a rotated token again revokes every token of its family, as Okta,
    /// Auth0 and Keycloak do when they detect reuse.
    pub fn issue_refresh_token(&self) -> Result<String, CryptoError> {
        let token = random_id(24)?;
        self.refresh_tokens().issue(token.clone(), token.clone());
        Ok(token)
    }

    /// How many times a rotated refresh token was presented again (each revoked its family).
    pub fn refresh_token_reuses(&self) -> u64 {
        self.reuses.load(Ordering::Relaxed)
    }

    fn refresh_token_reused(&self) {
        self.reuses.fetch_add(1, Ordering::Relaxed);
    }

    fn refresh_tokens(&self) -> std::sync::MutexGuard<'_, RefreshTokens> {
        self.refresh_tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Issue an access token of `sub` that the userinfo endpoint accepts (until
    /// [`disable`](Self::disable)).
    pub fn issue_access_token(&self, sub: &str) -> Result<String, CryptoError> {
        let token = random_id(24)?;
        self.access_tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(token.clone(), sub.to_owned());
        Ok(token)
    }

    /// Disable a user as an administrator would, pushing nothing: their access tokens stop
    /// working at the userinfo endpoint. (Refresh tokens are not tied to users here: forget a
    /// refresh token by never issuing it.)
    pub fn disable(&self, sub: &str) {
        self.access_tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, owner| owner != sub);
    }

    /// Make the token and userinfo endpoints answer 503 (`true`) or work again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Relaxed);
    }

    /// How many refresh and userinfo requests reached the OP.
    pub fn user_requests(&self) -> u64 {
        self.user_requests.load(Ordering::Relaxed)
    }

    /// How many times the JWKS was requested.
    pub fn jwks_requests(&self) -> u64 {
        self.jwks_requests.load(Ordering::Relaxed)
    }

    /// The discovery document.
    pub fn discovery(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "authorization_endpoint": format!("{}/auth", self.issuer.trim_end_matches('/')),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "jwks_uri": format!("{}/jwks", self.issuer.trim_end_matches('/')),
            "end_session_endpoint": format!("{}/session/end", self.issuer.trim_end_matches('/')),
            "revocation_endpoint": format!("{}/token/revocation", self.issuer.trim_end_matches('/')),
            "token_endpoint": format!("{}/token", self.issuer.trim_end_matches('/')),
            "userinfo_endpoint": format!("{}/userinfo", self.issuer.trim_end_matches('/')),
            "id_token_signing_alg_values_supported": ["RS256", "PS256", "ES256", "ES384", "EdDSA"],
            "scopes_supported": ["openid", "offline_access"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "claims_supported": ["sub", "sid", "auth_time", "nonce"],
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
            .route("/userinfo", get(userinfo_endpoint))
            .route("/auth", get(login::authorize).post(login::login_form))
            .route("/session/end", get(login::end_session))
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
        JwksMode::Slow(delay) => {
            tokio::time::sleep(delay).await;
            axum::Json(op.jwks()).into_response()
        }
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
    op.refresh_tokens().live.remove(&token);
    login::revoke_grant(&op, &token);
    let mut revoked = op
        .revoked
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if revoked.len() >= login::MAX_PENDING {
        revoked.clear();
    }
    revoked.push((token, auth));
    StatusCode::OK.into_response()
}

/// Userinfo for a bearer access token the OP issued: `{"sub": …}`, or 401.
async fn userinfo_endpoint(
    State(op): State<Arc<TestOp>>,
    headers: axum::http::HeaderMap,
) -> Response {
    op.user_requests.fetch_add(1, Ordering::Relaxed);
    if op.down.load(Ordering::Relaxed) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let owner = token.and_then(|t| {
        op.access_tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(t)
            .cloned()
    });
    match owner {
        Some(sub) => axum::Json(json!({ "sub": sub })).into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            [(
                axum::http::header::WWW_AUTHENTICATE,
                "Bearer error=\"invalid_token\"",
            )],
        )
            .into_response(),
    }
}

fn invalid_grant() -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "error": "invalid_grant" })),
    )
        .into_response()
}

/// The refresh tokens issued outside the login flow ([`TestOp::issue_refresh_token`]), each with
/// the family (the first token) it rotated from.
#[derive(Debug, Default)]
struct RefreshTokens {
    live: std::collections::HashMap<String, String>,
    spent: std::collections::HashMap<String, String>,
}

/// What presenting a refresh token did.
enum Spent {
    /// It was live: it is spent now; its successor joins this family.
    Rotated(String),
    /// It was spent already: its whole family is revoked.
    Reused,
}

impl RefreshTokens {
    fn issue(&mut self, token: String, family: String) {
        if self.live.len() >= login::MAX_PENDING {
            self.live.clear();
        }
        self.live.insert(token, family);
    }

    fn spend(&mut self, token: String) -> Option<Spent> {
        if let Some(family) = self.live.remove(&token) {
            if self.spent.len() >= login::MAX_PENDING {
                self.spent.clear();
            }
            self.spent.insert(token, family.clone());
            return Some(Spent::Rotated(family));
        }
        let family = self.spent.get(&token)?.clone();
        self.live.retain(|_, f| *f != family);
        Some(Spent::Reused)
    }
}

/// The refresh-token grant only: a known refresh token is rotated; a rotated one presented
/// again revokes its family; anything else is `invalid_grant`.
async fn token_endpoint(
    State(op): State<Arc<TestOp>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    op.user_requests.fetch_add(1, Ordering::Relaxed);
    if op.down.load(Ordering::Relaxed) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let form: std::collections::HashMap<String, String> = form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if let Some(answer) = login::code_grant(&op, &headers, &form) {
        return answer;
    }
    if let Some(answer) = login::refresh_grant(&op, &headers, &form) {
        return answer;
    }
    let mut grant = None;
    let mut refresh = None;
    for (k, v) in form_urlencoded::parse(&body) {
        match k.as_ref() {
            "grant_type" => grant = Some(v.into_owned()),
            "refresh_token" => refresh = Some(v.into_owned()),
            _ => {}
        }
    }
    if grant.as_deref() != Some("refresh_token") {
        return invalid_grant();
    }
    let spent = refresh.and_then(|t| op.refresh_tokens().spend(t));
    let family = match spent {
        Some(Spent::Rotated(family)) => family,
        Some(Spent::Reused) => {
            op.refresh_token_reused();
            return invalid_grant();
        }
        None => return invalid_grant(),
    };
    let id_token = op
        .refresh_id_token
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    match (random_id(24), random_id(24)) {
        (Ok(refresh_token), Ok(access_token)) => {
            op.refresh_tokens().issue(refresh_token.clone(), family);
            let mut answer = json!({
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": 300,
                "refresh_token": refresh_token,
            });
            if let (Some(id_token), Some(map)) = (id_token, answer.as_object_mut()) {
                map.insert("id_token".into(), id_token.into());
            }
            axum::Json(answer).into_response()
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
