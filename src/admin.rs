//! The admin API: list a user's sessions, end one session, the sessions of some clients or all
//! of them, or revoke a user (sessions, denylist marker, refresh tokens), over HTTP with JSON.
//!
//! Off unless tokens are configured. Every request must carry one of them as a bearer token;
//! the comparison is of SHA-256 digests in constant time, so neither the content nor the length
//! of a configured token leaks through timing. Every action is logged as an audit line (target
//! `oidc_logout::audit`) naming the token by a short fingerprint, never the token itself. The
//! work itself is the [`Revoker`]'s, the same path the other inputs use.

use std::sync::Arc;

use aws_lc_rs::digest;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde_json::json;

use crate::revoke::{RevokeError, Revoker};
use crate::store::{RecordStore, SessionIndex};

/// Where the admin API is mounted.
pub const PREFIX: &str = "/admin/v1";

/// A configured token: its digest, and a fingerprint that names it in audit lines.
struct Token {
    digest: Vec<u8>,
    fingerprint: String,
}

struct Admin<S> {
    revoker: Arc<Revoker<S>>,
    tokens: Vec<Token>,
}

/// The admin router (paths under [`PREFIX`]), accepting any of `tokens` as bearer token.
/// With no tokens it refuses every request.
pub fn router<S: SessionIndex + RecordStore>(
    revoker: Arc<Revoker<S>>,
    tokens: &[SecretString],
) -> Router {
    let tokens = tokens
        .iter()
        .map(|t| {
            let digest = digest::digest(&digest::SHA256, t.expose_secret().as_bytes());
            let fingerprint = digest
                .as_ref()
                .iter()
                .take(4)
                .map(|b| format!("{b:02x}"))
                .collect();
            Token {
                digest: digest.as_ref().to_vec(),
                fingerprint,
            }
        })
        .collect();
    let admin = Arc::new(Admin { revoker, tokens });
    Router::new()
        .route(&format!("{PREFIX}/sessions"), get(list::<S>))
        .route(&format!("{PREFIX}/sessions/end"), post(end_session::<S>))
        .route(
            &format!("{PREFIX}/users/end-sessions"),
            post(end_sessions::<S>),
        )
        .route(&format!("{PREFIX}/users/revoke"), post(revoke::<S>))
        .with_state(admin)
}

impl<S> Admin<S> {
    /// The fingerprint of the presented token, or why it is refused.
    fn authorize(&self, headers: &HeaderMap) -> Result<String, &'static str> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let Some(presented) = presented else {
            return Err("a bearer token is required");
        };
        let digest = digest::digest(&digest::SHA256, presented.as_bytes());
        // Compare with every token, so the time does not say which one (if any) matched.
        let mut found = None;
        for token in &self.tokens {
            if aws_lc_rs::constant_time::verify_slices_are_equal(digest.as_ref(), &token.digest)
                .is_ok()
            {
                found = Some(token.fingerprint.clone());
            }
        }
        found.ok_or_else(|| {
            tracing::warn!(target: "oidc_logout::audit", "admin request with a wrong token refused");
            "the bearer token is not accepted"
        })
    }
}

/// Why a request is refused before any work: small, so handlers can `?` it.
enum Reject {
    Unauthorized(&'static str),
    Invalid(String),
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        match self {
            Self::Unauthorized(why) => unauthorized(why),
            Self::Invalid(why) => bad_request(&why),
        }
    }
}

impl<S> Admin<S> {
    /// The caller's token fingerprint and the JSON body, or the refusal.
    fn accept<T: serde::de::DeserializeOwned>(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(String, T), Reject> {
        let by = self.authorize(headers).map_err(Reject::Unauthorized)?;
        let request = serde_json::from_slice(body)
            .map_err(|e| Reject::Invalid(format!("invalid JSON body: {e}")))?;
        Ok((by, request))
    }
}

fn unauthorized(description: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::WWW_AUTHENTICATE, "Bearer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        axum::Json(json!({ "error": "unauthorized", "error_description": description })),
    )
        .into_response()
}

fn bad_request(description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "error": "invalid_request", "error_description": description })),
    )
        .into_response()
}

fn failed(error: &RevokeError) -> Response {
    match error {
        RevokeError::UnknownIssuer(_) => bad_request(&error.to_string()),
        RevokeError::Store(store) => {
            tracing::error!(error = %store, "admin action failed: session store unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "5")],
                axum::Json(json!({
                    "error": "temporarily_unavailable",
                    "error_description": "the session store is unavailable; retry (every admin action is safe to repeat)",
                })),
            )
                .into_response()
        }
    }
}

fn ok(body: serde_json::Value) -> Response {
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct User {
    issuer: String,
    sub: String,
}

async fn list<S: SessionIndex + RecordStore>(
    State(admin): State<Arc<Admin<S>>>,
    headers: HeaderMap,
    query: Result<Query<User>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let by = match admin.authorize(&headers) {
        Ok(by) => by,
        Err(why) => return unauthorized(why),
    };
    let Ok(Query(user)) = query else {
        return bad_request("query parameters issuer and sub are required");
    };
    match admin.revoker.sessions(&user.issuer, &user.sub).await {
        Ok(sessions) => {
            tracing::info!(target: "oidc_logout::audit", token = %by, action = "list", issuer = %user.issuer, sub = %user.sub, sessions = sessions.len(), "admin action");
            ok(json!({ "issuer": user.issuer, "sub": user.sub, "sessions": sessions }))
        }
        Err(error) => failed(&error),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OneSession {
    issuer: String,
    session_id: String,
}

async fn end_session<S: SessionIndex + RecordStore>(
    State(admin): State<Arc<Admin<S>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (by, request): (String, OneSession) = match admin.accept(&headers, &body) {
        Ok(accepted) => accepted,
        Err(reject) => return reject.into_response(),
    };
    match admin
        .revoker
        .end_session(&request.issuer, &request.session_id)
        .await
    {
        Ok(ended) => {
            tracing::info!(target: "oidc_logout::audit", token = %by, action = "end_session", issuer = %request.issuer, session_id = %request.session_id, ended, "admin action");
            ok(json!({ "ended": ended }))
        }
        Err(error) => failed(&error),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserSessions {
    issuer: String,
    sub: String,
    /// Only the sessions of these clients; absent: every session.
    clients: Option<Vec<String>>,
}

async fn end_sessions<S: SessionIndex + RecordStore>(
    State(admin): State<Arc<Admin<S>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (by, request): (String, UserSessions) = match admin.accept(&headers, &body) {
        Ok(accepted) => accepted,
        Err(reject) => return reject.into_response(),
    };
    let result = match &request.clients {
        Some(clients) => {
            admin
                .revoker
                .end_client_sessions(&request.issuer, &request.sub, clients)
                .await
        }
        None => {
            admin
                .revoker
                .end_all_sessions(&request.issuer, &request.sub)
                .await
        }
    };
    match result {
        Ok(ended) => {
            tracing::info!(target: "oidc_logout::audit", token = %by, action = "end_sessions", issuer = %request.issuer, sub = %request.sub, clients = ?request.clients, ended = ended.len(), "admin action");
            ok(json!({ "ended": ended }))
        }
        Err(error) => failed(&error),
    }
}

async fn revoke<S: SessionIndex + RecordStore>(
    State(admin): State<Arc<Admin<S>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (by, request): (String, User) = match admin.accept(&headers, &body) {
        Ok(accepted) => accepted,
        Err(reject) => return reject.into_response(),
    };
    match admin
        .revoker
        .revoke_user(&request.issuer, &request.sub)
        .await
    {
        Ok(ended) => {
            tracing::info!(target: "oidc_logout::audit", token = %by, action = "revoke_user", issuer = %request.issuer, sub = %request.sub, ended = ended.len(), "admin action");
            ok(json!({ "ended": ended, "revoked": true }))
        }
        Err(error) => failed(&error),
    }
}
