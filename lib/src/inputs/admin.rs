//! The admin API: list a user's sessions, end one session, the sessions of some clients or all
//! of them, or revoke a user (sessions, denylist marker, refresh tokens), over HTTP with JSON.
//!
//! Off unless tokens are configured. Every request must carry one of them as a bearer token,
//! checked from the headers before the body is read; the comparison is of SHA-256 digests in
//! constant time, so neither the content nor the length of a configured token leaks through
//! timing. Every action is logged as an audit line (target `oidc_logout::audit`) naming the token
//! by a short fingerprint, never the token itself. The work is the [`Core`]'s, the path every
//! input takes.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use headers::authorization::Bearer;
use headers::{Authorization, HeaderMapExt as _};
use secrecy::SecretString;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::core::{Core, CoreError};
use crate::index::{RecordStore, SessionIndex, StoreError};
use crate::inputs::bearer::BearerTokens;
use crate::response::{self, Protocol};

/// Where the admin API is mounted.
pub const PREFIX: &str = "/admin/v1";

/// The largest request body read, in bytes (requests are a few short strings).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Who made a request: the fingerprint of the token it presented.
#[derive(Clone)]
struct Caller(String);

struct Admin<S> {
    core: Core<S>,
}

/// The admin router (paths under [`PREFIX`]), accepting any of `tokens` as bearer token.
/// With no tokens it refuses every request.
pub fn router<S: SessionIndex + RecordStore>(core: Core<S>, tokens: &[SecretString]) -> Router {
    let tokens = Arc::new(BearerTokens::new(tokens.iter().map(|t| (t, ()))));
    let routes = Router::new()
        .route(&format!("{PREFIX}/sessions"), get(list::<S>))
        .route(&format!("{PREFIX}/sessions/end"), post(end_session::<S>))
        .route(
            &format!("{PREFIX}/users/end-sessions"),
            post(end_sessions::<S>),
        )
        .route(&format!("{PREFIX}/users/revoke"), post(revoke::<S>))
        .with_state(Arc::new(Admin { core }))
        // Inside the body limit, outside the handlers: no body is read before this passes.
        .route_layer(axum::middleware::from_fn_with_state(tokens, authenticate));
    response::protect(routes, MAX_BODY_BYTES, Protocol::OAuth)
}

/// Refuse a request without an accepted bearer token, before anything else happens.
async fn authenticate(
    State(tokens): State<Arc<BearerTokens<()>>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(Authorization(bearer)) = request.headers().typed_get::<Authorization<Bearer>>() else {
        return unauthorized("a bearer token is required");
    };
    let Some((fingerprint, ())) = tokens.find(bearer.token()) else {
        tracing::warn!(target: "oidc_logout::audit", "admin request with a wrong token refused");
        return unauthorized("the bearer token is not accepted");
    };
    request.extensions_mut().insert(Caller(fingerprint));
    next.run(request).await
}

fn unauthorized(description: &str) -> Response {
    let mut response = response::error(
        Protocol::OAuth,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        description,
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// A JSON object body of type `T` that holds what it must, or why not (for the 400).
fn body<T: DeserializeOwned + Validate>(bytes: &[u8]) -> Result<T, String> {
    // An object, not an array serde would also map onto the struct's fields in order.
    let object = match serde_json::from_slice(bytes) {
        Ok(serde_json::Value::Object(object)) => object,
        Ok(_) => return Err("the body must be a JSON object".into()),
        Err(e) => return Err(format!("invalid JSON body: {e}")),
    };
    let request: T = serde_json::from_value(serde_json::Value::Object(object))
        .map_err(|e| format!("invalid JSON body: {e}"))?;
    request.validate()?;
    Ok(request)
}

/// What a request must hold beyond its JSON shape.
trait Validate {
    fn validate(&self) -> Result<(), String>;
}

fn failed(error: &CoreError) -> Response {
    match error {
        CoreError::UnknownIssuer
        | CoreError::UserUnknown
        | CoreError::Unavailable(StoreError::Invalid(_)) => {
            response::invalid_request(Protocol::OAuth, &error.to_string())
        }
        CoreError::Unavailable(store) => {
            tracing::error!(error = %store, "admin action failed: session store unavailable");
            response::unavailable(
                Protocol::OAuth,
                "the session store is unavailable; retry (every admin action is safe to repeat)",
            )
        }
    }
}

fn ok(body: serde_json::Value) -> Response {
    response::json(StatusCode::OK, &body)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct User {
    issuer: String,
    sub: String,
}

impl Validate for User {
    fn validate(&self) -> Result<(), String> {
        if self.issuer.is_empty() || self.sub.is_empty() {
            return Err("issuer and sub must not be empty".into());
        }
        Ok(())
    }
}

async fn list<S: SessionIndex + RecordStore>(
    State(admin): State<Arc<Admin<S>>>,
    axum::Extension(Caller(by)): axum::Extension<Caller>,
    query: Result<Query<User>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let user = match query {
        Ok(Query(user)) if user.validate().is_ok() => user,
        _ => {
            return response::invalid_request(
                Protocol::OAuth,
                "query parameters issuer and sub are required",
            );
        }
    };
    match admin.core.sessions(&user.issuer, &user.sub).await {
        Ok(sessions) => {
            tracing::info!(target: "oidc_logout::audit", token = %by, action = "list", issuer = ?user.issuer, sub = ?user.sub, sessions = sessions.len(), "admin action");
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
    /// The session's user, to find its index entry when its record is not in this crate's store.
    sub: Option<String>,
}

impl Validate for OneSession {
    fn validate(&self) -> Result<(), String> {
        if self.issuer.is_empty()
            || self.session_id.is_empty()
            || self.sub.as_ref().is_some_and(String::is_empty)
        {
            return Err("issuer, session_id and sub (when given) must not be empty".into());
        }
        Ok(())
    }
}

async fn end_session<S: SessionIndex + RecordStore>(
    State(admin): State<Arc<Admin<S>>>,
    axum::Extension(Caller(by)): axum::Extension<Caller>,
    bytes: Bytes,
) -> Response {
    let request: OneSession = match body(&bytes) {
        Ok(request) => request,
        Err(why) => return response::invalid_request(Protocol::OAuth, &why),
    };
    match admin
        .core
        .end_session(&request.issuer, &request.session_id, request.sub.as_deref())
        .await
    {
        Ok(ended) => {
            tracing::info!(target: "oidc_logout::audit", token = %by, action = "end_session", issuer = ?request.issuer, session_id = ?request.session_id, ended, "admin action");
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

impl Validate for UserSessions {
    fn validate(&self) -> Result<(), String> {
        if self.issuer.is_empty() || self.sub.is_empty() {
            return Err("issuer and sub must not be empty".into());
        }
        if self
            .clients
            .as_ref()
            .is_some_and(|c| c.is_empty() || c.iter().any(String::is_empty))
        {
            return Err("clients, when given, must name at least one client".into());
        }
        Ok(())
    }
}

async fn end_sessions<S: SessionIndex + RecordStore>(
    State(admin): State<Arc<Admin<S>>>,
    axum::Extension(Caller(by)): axum::Extension<Caller>,
    bytes: Bytes,
) -> Response {
    let request: UserSessions = match body(&bytes) {
        Ok(request) => request,
        Err(why) => return response::invalid_request(Protocol::OAuth, &why),
    };
    let (issuer, sub) = (&request.issuer, &request.sub);
    let result = match &request.clients {
        Some(clients) => admin.core.end_client_sessions(issuer, sub, clients).await,
        None => admin.core.end_user_sessions(issuer, sub).await,
    };
    match result {
        Ok(ended) => {
            tracing::info!(target: "oidc_logout::audit", token = %by, action = "end_sessions", issuer = ?issuer, sub = ?sub, clients = ?request.clients, ended = ended.len(), "admin action");
            ok(json!({ "ended": ended }))
        }
        Err(error) => failed(&error),
    }
}

async fn revoke<S: SessionIndex + RecordStore>(
    State(admin): State<Arc<Admin<S>>>,
    axum::Extension(Caller(by)): axum::Extension<Caller>,
    bytes: Bytes,
) -> Response {
    let request: User = match body(&bytes) {
        Ok(request) => request,
        Err(why) => return response::invalid_request(Protocol::OAuth, &why),
    };
    match admin.core.revoke_user(&request.issuer, &request.sub).await {
        Ok(ended) => {
            tracing::info!(target: "oidc_logout::audit", token = %by, action = "revoke_user", issuer = ?request.issuer, sub = ?request.sub, ended = ended.len(), "admin action");
            ok(json!({ "ended": ended, "revoked": true }))
        }
        Err(error) => failed(&error),
    }
}
