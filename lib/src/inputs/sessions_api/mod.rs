//! The sessions API (`/v1/sessions` on `gateway_listen`): the session index for applications
//! in any language (docs/any-stack.md, docs/sessions-api.yaml). An application registers a
//! session after login, asks for its state on each request (or as often as its bound allows),
//! and ends it at its own logout; the OP's logouts, the admin API, SCIM and every other input
//! end it like a session of the Rust store, through the same index.
//!
//! Each application authenticates with bearer tokens of its own (checked from the headers before
//! the body is read) and is a sender scoped to its issuer and, optionally, one customer. Its
//! session ids are kept under its name (`app:<name>:<id>` in the index), so no application can
//! see or end another's. The rules are the Rust store's: a registration that a logout already
//! covers is refused (`409`, the user must log in again); a registration naming the id it
//! replaces ends that one (an id rotation after login); ending goes through
//! [`Core::apply`](crate::core::Core::apply).

pub mod config;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use headers::authorization::Bearer;
use headers::{Authorization, HeaderMapExt as _};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::bearer::BearerTokens;
use crate::core::{Action, Core, Event, Scope, Sender};
use crate::index::{
    RecordStore, Registration, SessionIndex, SessionKey, SessionRecord, SessionState,
};
use crate::response::{self, Protocol, Refusal};
use crate::sys::unix_now;

/// Where the API is mounted.
pub const PREFIX: &str = "/v1/sessions";

/// The largest request body read, in bytes.
const MAX_BODY_BYTES: usize = 16 * 1024;
/// The longest session lifetime accepted: 30 days.
const MAX_LIFETIME_SECS: u64 = 30 * 24 * 3600;
/// The longest id, `sub` or `sid` accepted.
const MAX_TEXT: usize = 512;

/// The application a request comes from.
#[derive(Clone)]
struct Caller(Arc<Sender>);

/// What an application's token grants: its name and scope.
#[derive(Clone)]
struct Grant {
    name: String,
    scope: Scope,
}

struct Api<S> {
    core: Core<S>,
}

/// What the API keeps beside the index entry, to answer for an id alone.
#[derive(Serialize, Deserialize)]
struct Kept {
    sub: String,
    sid: Option<String>,
    auth_time: u64,
}

/// The index's id of an application's session.
fn indexed_id(app: &str, session_id: &str) -> String {
    format!("app:{app}:{session_id}")
}

/// The record kept beside it.
fn kept_id(indexed: &str) -> String {
    format!("api-session:{indexed}")
}

/// The sessions API's router for these applications (`(name, tokens, scope)`).
pub(crate) fn router<S: SessionIndex + RecordStore>(
    core: Core<S>,
    applications: &[config::ApplicationSettings],
) -> Router {
    let tokens = applications.iter().flat_map(|app| {
        let scope = Scope::issuer(app.issuer.clone()).with_customer(app.customer.clone());
        app.tokens.iter().map(move |t| {
            (
                t,
                Grant {
                    name: app.name.clone(),
                    scope: scope.clone(),
                },
            )
        })
    });
    let tokens = Arc::new(BearerTokens::new(tokens));
    let routes = Router::new()
        .route(PREFIX, post(register::<S>))
        .route(
            &format!("{PREFIX}/{{id}}"),
            get(state::<S>).delete(end::<S>),
        )
        .with_state(Arc::new(Api { core }))
        .route_layer(axum::middleware::from_fn_with_state(tokens, authenticate));
    response::protect(routes, MAX_BODY_BYTES, Protocol::OAuth)
}

async fn authenticate(
    State(tokens): State<Arc<BearerTokens<Grant>>>,
    mut request: Request,
    next: Next,
) -> Response {
    let found = request
        .headers()
        .typed_get::<Authorization<Bearer>>()
        .and_then(|Authorization(bearer)| tokens.find(bearer.token()));
    let Some((_fingerprint, grant)) = found else {
        crate::telemetry::refused_unauthenticated("sessions_api", "wrong_token");
        return Refusal::unauthenticated(
            Some("unauthorized"),
            "an application's bearer token is required",
            true,
        )
        .render(Protocol::OAuth);
    };
    let sender = Sender::new("sessions_api", grant.name, grant.scope);
    request.extensions_mut().insert(Caller(Arc::new(sender)));
    next.run(request).await
}

fn answer(status: StatusCode, body: &serde_json::Value) -> Response {
    response::json(status, body)
}

fn invalid(description: &'static str) -> Response {
    Refusal::invalid(description).render(Protocol::OAuth)
}

/// `POST /v1/sessions`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Register {
    /// The issuer; the application's when absent.
    issuer: Option<String>,
    sub: String,
    sid: Option<String>,
    auth_time: u64,
    session_id: String,
    lifetime_secs: u64,
    /// The id this session replaces (rotated after login): it is ended.
    previous_session_id: Option<String>,
}

fn text_ok(value: &str) -> bool {
    !value.is_empty() && value.len() <= MAX_TEXT && !value.chars().any(char::is_control)
}

async fn register<S: SessionIndex + RecordStore>(
    State(api): State<Arc<Api<S>>>,
    axum::Extension(Caller(app)): axum::Extension<Caller>,
    bytes: Bytes,
) -> Response {
    let Ok(request) = serde_json::from_slice::<Register>(&bytes) else {
        return invalid(
            "the body must be a JSON object with sub, auth_time, session_id and lifetime_secs \
             (and optionally issuer, sid, previous_session_id)",
        );
    };
    let own = app.scope().the_issuer().unwrap_or_default().to_owned();
    let issuer = request.issuer.clone().unwrap_or_else(|| own.clone());
    let texts_ok = [Some(&request.sub), Some(&request.session_id)]
        .into_iter()
        .chain([request.sid.as_ref(), request.previous_session_id.as_ref()])
        .flatten()
        .all(|t| text_ok(t));
    if !texts_ok
        || request.lifetime_secs == 0
        || request.lifetime_secs > MAX_LIFETIME_SECS
        || request.auth_time > unix_now().saturating_add(60)
    {
        return invalid(
            "sub, session_id, sid and previous_session_id must be 1 to 512 printable characters, \
             lifetime_secs 1 to 2592000, auth_time not in the future",
        );
    }
    if issuer != own {
        return Refusal::from(crate::core::CoreError::OutOfScope).render(Protocol::OAuth);
    }
    let id = indexed_id(app.name(), &request.session_id);
    if let Some(previous) = &request.previous_session_id {
        let end = Action::EndSession {
            issuer: issuer.clone(),
            session_id: indexed_id(app.name(), previous),
            sub: Some(request.sub.clone()),
        };
        if let Err(error) = api.core.apply(Event::new((*app).clone(), vec![end])).await {
            return Refusal::from(error).render(Protocol::OAuth);
        }
    }
    let record = SessionRecord {
        session_id: id.clone(),
        issuer: issuer.clone(),
        sub: request.sub.clone(),
        sid: request.sid.clone(),
        auth_time: request.auth_time,
        ttl: Duration::from_secs(request.lifetime_secs),
        customer: app.scope().customer().map(str::to_owned),
    };
    let index = api.core.index();
    match index.register(&record).await {
        Ok(Registration::Registered) => {}
        Ok(Registration::LoggedOut) => {
            return answer(
                StatusCode::CONFLICT,
                &json!({
                    "error": "logged_out",
                    "error_description": "a logout already covers this session: log the user in again",
                    "state": "ended",
                }),
            );
        }
        Err(error) => return Refusal::from(error).render(Protocol::OAuth),
    }
    let kept = Kept {
        sub: request.sub,
        sid: request.sid,
        auth_time: request.auth_time,
    };
    let stored = match serde_json::to_vec(&kept) {
        Ok(bytes) => index.put_record(&kept_id(&id), &bytes, record.ttl).await,
        Err(e) => Err(crate::index::StoreError::Unexpected(e.to_string())),
    };
    if let Err(error) = stored {
        return Refusal::from(error).render(Protocol::OAuth);
    }
    answer(
        StatusCode::CREATED,
        &json!({"session_id": request.session_id, "state": "live"}),
    )
}

/// The index's id of the application's session `session_id`, and what the API kept of it if it
/// still lives; a malformed id, or a store that fails, is the answer.
async fn kept<S: SessionIndex + RecordStore>(
    api: &Api<S>,
    app: &Sender,
    session_id: &str,
) -> Result<(String, Option<Kept>), Response> {
    if !text_ok(session_id) {
        return Err(invalid(
            "the session id must be 1 to 512 printable characters",
        ));
    }
    let indexed = indexed_id(app.name(), session_id);
    match api.core.index().get_record(&kept_id(&indexed)).await {
        Ok(found) => {
            let kept = found.and_then(|bytes: Vec<u8>| serde_json::from_slice(&bytes).ok());
            Ok((indexed, kept))
        }
        Err(error) => Err(Refusal::from(error).render(Protocol::OAuth)),
    }
}

/// `GET /v1/sessions/{id}`: `live`, `ended` (a logout, a revocation or the application's own
/// logout ended it) or `unknown` (never registered, or its lifetime is over).
async fn state<S: SessionIndex + RecordStore>(
    State(api): State<Arc<Api<S>>>,
    axum::Extension(Caller(app)): axum::Extension<Caller>,
    Path(session_id): Path<String>,
) -> Response {
    let (indexed, kept) = match kept(&api, &app, &session_id).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let issuer = app.scope().the_issuer().unwrap_or_default();
    let state = match &kept {
        None => SessionState::Unknown,
        Some(kept) => {
            let key = SessionKey {
                issuer,
                session_id: &indexed,
                sub: &kept.sub,
                sid: kept.sid.as_deref(),
                auth_time: kept.auth_time,
            };
            let index = api.core.index();
            match index.known_state(&key) {
                Some(state) => state,
                None => match index.state(&key).await {
                    Ok(state) => state,
                    Err(error) => {
                        return Refusal::from(error).render(Protocol::OAuth);
                    }
                },
            }
        }
    };
    let (label, why) = match state {
        SessionState::Active => ("live", None),
        SessionState::Ended => (
            "ended",
            Some("ended by a logout at the OP, a revocation or the application's own logout"),
        ),
        _ => (
            "unknown",
            Some("never registered here, or its lifetime is over"),
        ),
    };
    answer(
        StatusCode::OK,
        &json!({"session_id": session_id, "state": label, "reason": why}),
    )
}

/// `DELETE /v1/sessions/{id}`: the application's own logout.
async fn end<S: SessionIndex + RecordStore>(
    State(api): State<Arc<Api<S>>>,
    axum::Extension(Caller(app)): axum::Extension<Caller>,
    Path(session_id): Path<String>,
) -> Response {
    let (indexed, kept) = match kept(&api, &app, &session_id).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    // Nothing registered under this id by this application (or its lifetime is over).
    let Some(kept) = kept else {
        return answer(
            StatusCode::OK,
            &json!({"session_id": session_id, "ended": false, "state": "unknown"}),
        );
    };
    let end = Action::EndSession {
        issuer: app.scope().the_issuer().unwrap_or_default().to_owned(),
        session_id: indexed,
        sub: Some(kept.sub),
    };
    match api.core.apply(Event::new((*app).clone(), vec![end])).await {
        Ok(outcome) => answer(
            StatusCode::OK,
            &json!({"session_id": session_id, "ended": outcome.ended() > 0, "state": "ended"}),
        ),
        Err(error) => Refusal::from(error).render(Protocol::OAuth),
    }
}

/// The API on the gateway listener, when applications are configured.
pub(crate) fn mount<S, D>(m: &super::Mount<'_, S, D>) -> Option<super::Mounted>
where
    S: SessionIndex + RecordStore,
{
    let applications = &m.settings.inputs.applications;
    if applications.is_empty() || m.settings.listeners.gateway.is_none() {
        return None;
    }
    tracing::info!(
        applications = applications.len(),
        "sessions API under {PREFIX}"
    );
    Some(super::Mounted {
        router: router(m.core.clone(), applications),
        place: super::Place::Gateway,
        health: None,
    })
}
