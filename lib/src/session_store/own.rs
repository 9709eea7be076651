//! A user's own sessions: a router the application mounts (say under `/account/sessions`) so
//! that a logged-in user sees where else they are logged in and ends one session, or all but
//! the current one. Authenticated by the application's session (its [`Login`](super::Login));
//! the user is a sender of the [`Core`] scoped to themselves, so they only ever see and end
//! their own sessions at their issuer, and their ends run the core's hooks.
//!
//! Sessions are named by an opaque handle (a digest of the session id), never by the id itself:
//! a session id is what the session cookie holds, and listing it would hand every other
//! session's cookie to whatever script reads the page. The two `POST`s require a JSON body
//! (`Content-Type: application/json`), which a cross-site form cannot send.
//!
//! - `GET /` → `{"sessions": [{"session", "current", "client_id", "policy", "logged_in_at",
//!   "last_seen", "user_agent", "address", "auth_time"}]}` (details where the application
//!   records them and the sessions live in this crate's store);
//! - `POST /end` with `{"session": "<handle>"}` → `{"ended": true}`; ending the current session
//!   is a local logout;
//! - `POST /end-others` → `{"ended": <count>}`.

use std::sync::Arc;

use aws_lc_rs::digest;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{CHECK_KEY, CheckFacts, SessionAccess};
use crate::core::{Action, Core, Event, Scope, Sender};
use crate::index::{RecordStore, SessionIndex};
use crate::response::{Protocol, Refusal};

/// The largest request body read (a handle).
const MAX_BODY_BYTES: usize = 1024;

/// The user's own sessions, through `core` (over the index the session store registers in;
/// its after-logout hooks, such as refresh-token revocation, run for the sessions a user
/// ends). Build its router with [`router`](Self::router) (tower-sessions 0.15) inside the
/// session layer.
///
/// ```
/// use oidc_logout::session_store::OwnSessions;
/// use oidc_logout::{Core, MemoryIndex};
///
/// let core = Core::builder(MemoryIndex::default()).issuer("https://op.example").build();
/// // GET /account/sessions, POST /account/sessions/end and /end-others, behind the session layer.
/// let app: axum::Router = axum::Router::new()
///     .nest("/account/sessions", OwnSessions::new(core).router::<tower_sessions::Session>());
/// ```
#[derive(Debug)]
pub struct OwnSessions<I> {
    core: Core<I>,
}

impl<I: SessionIndex + RecordStore> OwnSessions<I> {
    /// The user's sessions, ended through `core`.
    pub fn new(core: Core<I>) -> Self {
        Self { core }
    }

    /// The router. `T` is the application's tower-sessions `Session` (0.14 or 0.15):
    /// `OwnSessions::new(core).router::<Session>()`.
    pub fn router<T: SessionAccess + Clone + 'static>(self) -> Router {
        self.router_for::<T>()
    }

    fn router_for<T: SessionAccess + Clone + 'static>(self) -> Router {
        let routes = Router::new()
            .route("/", get(list::<I, T>))
            .route("/end", post(end::<I, T>))
            .route("/end-others", post(end_others::<I, T>))
            .with_state(Arc::new(self));
        crate::response::protect(routes, MAX_BODY_BYTES, crate::response::Protocol::OAuth)
    }
}

/// The request's session, which must hold a login.
struct User<T> {
    session: T,
    issuer: String,
    sub: String,
    current: Option<String>,
}

impl<T> User<T> {
    /// The user as the core's sender: scoped to themselves.
    fn sender(&self) -> Sender {
        Sender::new(
            "own-sessions",
            "",
            Scope::user(self.issuer.clone(), self.sub.clone()),
        )
    }
}

impl<S: Send + Sync, T: SessionAccess + Clone + 'static> FromRequestParts<S> for User<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(session) = parts.extensions.get::<T>().cloned() else {
            return Err(failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the session layer is missing",
            ));
        };
        let facts = match session.get_value(CHECK_KEY).await {
            Ok(Some(value)) => CheckFacts::deserialize(value).ok(),
            Ok(None) => None,
            Err(_) => return Err(unavailable()),
        };
        let Some(facts) = facts else {
            return Err(failure(
                StatusCode::UNAUTHORIZED,
                "login_required",
                "log in to see your sessions",
            ));
        };
        Ok(Self {
            current: session.id(),
            issuer: facts.issuer.into_owned(),
            sub: facts.sub.into_owned(),
            session,
        })
    }
}

fn failure(status: StatusCode, code: &'static str, description: &'static str) -> Response {
    Refusal::new(status, Some(code), description).render(Protocol::OAuth)
}

fn unavailable() -> Response {
    Refusal::unavailable("the session store is unavailable; retry").render(Protocol::OAuth)
}

fn failed(refusal: impl Into<Refusal>) -> Response {
    refusal.into().render(Protocol::OAuth)
}

/// The opaque name of a session in these answers.
fn handle(session_id: &str) -> String {
    let digest = digest::digest(&digest::SHA256, session_id.as_bytes());
    digest
        .as_ref()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The user's live session ids.
async fn ids<I: SessionIndex + RecordStore, T>(
    core: &Core<I>,
    user: &User<T>,
) -> Result<Vec<String>, Refusal> {
    Ok(core
        .sessions(&user.sender(), &user.issuer, &user.sub)
        .await?
        .into_iter()
        .map(|s| s.session_id)
        .collect())
}

async fn list<I: SessionIndex + RecordStore, T: SessionAccess + Clone + 'static>(
    State(own): State<Arc<OwnSessions<I>>>,
    user: User<T>,
) -> Response {
    let views = match own
        .core
        .sessions(&user.sender(), &user.issuer, &user.sub)
        .await
    {
        Ok(views) => views,
        Err(error) => return failed(error),
    };
    let sessions: Vec<Value> = views
        .iter()
        .map(|view| {
            json!({
                "session": handle(&view.session_id),
                "current": user.current.as_deref() == Some(view.session_id.as_str()),
                "client_id": view.client_id,
                "policy": view.policy,
                "logged_in_at": view.logged_in_at,
                "last_seen": view.last_seen,
                "user_agent": view.user_agent,
                "address": view.address,
                "auth_time": view.auth_time,
            })
        })
        .collect();
    crate::response::json(StatusCode::OK, &json!({ "sessions": sessions }))
}

/// A JSON body: the two `POST`s refuse anything a cross-site form can send.
fn json_body(headers: &HeaderMap, bytes: &[u8]) -> Result<Value, Box<Response>> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(Box::new(failure(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            "send a JSON body (Content-Type: application/json)",
        )));
    }
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| {
            Box::new(failure(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the body must be a JSON object",
            ))
        })
}

/// End `victims` of the user through the core; returns how many were ended.
async fn end_ids<I: SessionIndex + RecordStore, T>(
    own: &OwnSessions<I>,
    user: &User<T>,
    victims: &[String],
) -> Result<usize, Refusal> {
    let actions = victims
        .iter()
        .map(|id| Action::EndSession {
            issuer: user.issuer.clone(),
            session_id: id.clone(),
            sub: Some(user.sub.clone()),
        })
        .collect();
    let outcome = own.core.apply(Event::new(user.sender(), actions)).await?;
    Ok(outcome.ended())
}

async fn end<I: SessionIndex + RecordStore, T: SessionAccess + Clone + 'static>(
    State(own): State<Arc<OwnSessions<I>>>,
    user: User<T>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let body = match json_body(&headers, &bytes) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let Some(wanted) = body.get("session").and_then(Value::as_str) else {
        return failure(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "name the session to end: {\"session\": \"<handle>\"}",
        );
    };
    let all = match ids(&own.core, &user).await {
        Ok(all) => all,
        Err(refusal) => return failed(refusal),
    };
    let Some(id) = all.into_iter().find(|id| handle(id) == wanted) else {
        return failure(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such session of yours",
        );
    };
    if let Err(refusal) = end_ids(&own, &user, std::slice::from_ref(&id)).await {
        return failed(refusal);
    }
    if user.current.as_deref() == Some(id.as_str()) && user.session.flush().await.is_err() {
        return unavailable();
    }
    crate::response::json(StatusCode::OK, &json!({ "ended": true }))
}

async fn end_others<I: SessionIndex + RecordStore, T: SessionAccess + Clone + 'static>(
    State(own): State<Arc<OwnSessions<I>>>,
    user: User<T>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    if let Err(response) = json_body(&headers, &bytes) {
        return *response;
    }
    let others: Vec<String> = match ids(&own.core, &user).await {
        Ok(all) => all
            .into_iter()
            .filter(|id| user.current.as_deref() != Some(id.as_str()))
            .collect(),
        Err(refusal) => return failed(refusal),
    };
    match end_ids(&own, &user, &others).await {
        Ok(count) => crate::response::json(StatusCode::OK, &json!({ "ended": count })),
        Err(refusal) => failed(refusal),
    }
}
