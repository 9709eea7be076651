//! The admin API: list a user's sessions, end one session, the sessions of some clients or all
//! of them, or revoke a user (sessions, denylist marker, refresh tokens), over HTTP with JSON.
//!
//! Off unless tokens are configured. Every request must carry one of them as a bearer token,
//! checked from the headers before the body is read; the comparison is of SHA-256 digests in
//! constant time, so neither the content nor the length of a configured token leaks through
//! timing. A token is the sender: named by a short fingerprint (never the token itself), acting
//! on every configured issuer or, for a scoped token, on one issuer and optionally one
//! customer's users. The work is the [`Core`]'s, the path every input takes, and so is the
//! audit line.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use headers::authorization::Bearer;
use headers::{Authorization, HeaderMapExt as _};
use secrecy::SecretString;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::core::{Action, Core, Event, Scope, Sender};
use crate::index::{RecordStore, SessionIndex};
use crate::inputs::bearer::BearerTokens;
use crate::response::{self, Protocol, Refusal};

#[cfg(feature = "server")]
#[doc(hidden)]
pub mod config;

/// Where the admin API is mounted.
#[doc(hidden)]
pub const PREFIX: &str = "/admin/v1";

/// The largest request body read, in bytes (requests are a few short strings).
#[doc(hidden)]
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Who made a request: the sender its token is.
#[derive(Clone)]
struct Caller(Arc<Sender>);

struct Admin<S> {
    core: Core<S>,
}

/// The admin router (paths under [`PREFIX`]), accepting any of `tokens` as bearer token, each
/// acting on every issuer the core is configured for. With no tokens it refuses every request.
pub fn router<S: SessionIndex + RecordStore>(core: Core<S>, tokens: &[SecretString]) -> Router {
    scoped_router(core, tokens.iter().map(|t| (t, Scope::any_issuer())))
}

/// The admin router for tokens each with its own scope (one issuer, optionally a customer).
#[doc(hidden)]
pub fn scoped_router<'a, S: SessionIndex + RecordStore>(
    core: Core<S>,
    tokens: impl IntoIterator<Item = (&'a SecretString, Scope)>,
) -> Router {
    let tokens = Arc::new(BearerTokens::new(tokens));
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
    State(tokens): State<Arc<BearerTokens<Scope>>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(Authorization(bearer)) = request.headers().typed_get::<Authorization<Bearer>>() else {
        return unauthorized("a bearer token is required");
    };
    let Some((fingerprint, scope)) = tokens.find(bearer.token()) else {
        crate::telemetry::refused_unauthenticated("admin", "wrong_token");
        return unauthorized("the bearer token is not accepted");
    };
    let sender = Sender::new("admin", fingerprint, scope);
    request.extensions_mut().insert(Caller(Arc::new(sender)));
    next.run(request).await
}

fn unauthorized(description: &'static str) -> Response {
    Refusal::unauthenticated(Some("unauthorized"), description, true).render(Protocol::OAuth)
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

/// A refusal as this API answers it.
fn failed(refusal: impl Into<Refusal>) -> Response {
    refusal.into().render(Protocol::OAuth)
}

/// Apply `actions` as the caller's event.
async fn act<S: SessionIndex + RecordStore>(
    admin: &Admin<S>,
    by: &Sender,
    actions: Vec<Action>,
) -> Result<crate::core::Outcome, Refusal> {
    Ok(admin.core.apply(Event::new(by.clone(), actions)).await?)
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
            return failed(Refusal::invalid(
                "query parameters issuer and sub are required",
            ));
        }
    };
    match admin.core.sessions(&by, &user.issuer, &user.sub).await {
        Ok(sessions) => ok(json!({ "issuer": user.issuer, "sub": user.sub, "sessions": sessions })),
        Err(error) => failed(error),
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
        Err(why) => return failed(Refusal::invalid(why)),
    };
    let end = Action::EndSession {
        issuer: request.issuer,
        session_id: request.session_id,
        sub: request.sub,
    };
    match act(&admin, &by, vec![end]).await {
        Ok(outcome) => ok(json!({ "ended": outcome.ended() > 0 })),
        Err(refusal) => failed(refusal),
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
        Err(why) => return failed(Refusal::invalid(why)),
    };
    let end = Action::EndUserSessions {
        issuer: request.issuer,
        sub: request.sub,
        clients: request.clients,
    };
    match act(&admin, &by, vec![end]).await {
        Ok(outcome) => ok(json!({ "ended": outcome.ended_ids() })),
        Err(refusal) => failed(refusal),
    }
}

async fn revoke<S: SessionIndex + RecordStore>(
    State(admin): State<Arc<Admin<S>>>,
    axum::Extension(Caller(by)): axum::Extension<Caller>,
    bytes: Bytes,
) -> Response {
    let request: User = match body(&bytes) {
        Ok(request) => request,
        Err(why) => return failed(Refusal::invalid(why)),
    };
    let revoke = Action::RevokeUser {
        issuer: request.issuer,
        sub: request.sub,
    };
    match act(&admin, &by, vec![revoke]).await {
        Ok(outcome) => ok(json!({ "ended": outcome.ended_ids(), "revoked": true })),
        Err(refusal) => failed(refusal),
    }
}

/// The admin API of the library server, on the admin listener; off without tokens.
#[cfg(feature = "server")]
pub(crate) fn mount<S, D>(m: &super::Mount<'_, S, D>) -> Option<super::Mounted>
where
    S: SessionIndex + RecordStore,
{
    let tokens = &m.settings.inputs.admin;
    if tokens.is_empty() {
        return None;
    }
    let scoped = tokens.iter().map(|t| (&t.token, t.scope()));
    Some(super::Mounted {
        router: scoped_router(m.core.clone(), scoped),
        place: super::Place::Admin,
        health: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_objects_holding_what_they_must() {
        assert!(body::<User>(br#"{"issuer": "i", "sub": "s"}"#).is_ok());
        for bad in [
            &br#"["i", "s"]"#[..],
            br#"{"issuer": "", "sub": "s"}"#,
            br#"{"issuer": "i"}"#,
            br#"{"issuer": "i", "sub": "s", "extra": 1}"#,
            b"not json",
        ] {
            assert!(
                body::<User>(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(body::<UserSessions>(br#"{"issuer": "i", "sub": "s", "clients": []}"#).is_err());
        assert!(body::<OneSession>(br#"{"issuer": "i", "session_id": "x", "sub": ""}"#).is_err());
    }
}
