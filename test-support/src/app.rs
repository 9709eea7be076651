//! The one test application: what an application's OIDC callback, "who am I" page and logout
//! button do to its session, over tower-sessions 0.15. Tests add their own layers (the session
//! store, `SessionDetails`, revalidation) and routes (`OwnSessions`, a receiver).
//!
//! - `GET /login?sub=…` records a login as a callback would (`Login::save_to`, which rotates the
//!   id); optional `sid`, `client`, `policy`, `customer`, `refresh`, `access`, `id_token`,
//!   `auth_ago` (seconds since the user authenticated, default 5) and `iss` (default: the
//!   issuer the app was built for);
//! - `GET /me` answers 200 with the user's `sub`, or 401;
//! - `POST /logout` (and `GET`, for scripted browsers) ends the session (`flush`), as the
//!   application's own logout does through the session store.

use axum::Router;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::get;
use oidc_logout::session_store::{Login, TokenSecret};
use serde::Deserialize;
use tower_sessions::Session;

use crate::now;

#[derive(Deserialize)]
struct LoginQuery {
    iss: Option<String>,
    sub: Option<String>,
    sid: Option<String>,
    client: Option<String>,
    policy: Option<String>,
    customer: Option<String>,
    refresh: Option<String>,
    access: Option<String>,
    id_token: Option<String>,
    auth_ago: Option<u64>,
}

/// The login a `/login` query describes, for `issuer` unless it names another.
fn login(issuer: &str, q: LoginQuery) -> Login {
    Login {
        issuer: q.iss.unwrap_or_else(|| issuer.to_owned()),
        sub: q.sub.unwrap_or_else(|| "alice".into()),
        client_id: q.client,
        sid: q.sid,
        auth_time: now() - q.auth_ago.unwrap_or(5),
        logged_in_at: now(),
        policy: q.policy,
        customer: q.customer,
        id_token: q.id_token.map(TokenSecret::new),
        refresh_token: q.refresh.map(TokenSecret::new),
        access_token: q.access.map(TokenSecret::new),
    }
}

/// `/login`, `/me` and `/logout` of an application of `issuer`.
pub fn routes(issuer: &str) -> Router {
    let issuer = issuer.to_owned();
    Router::new()
        .route(
            "/login",
            get(
                move |session: Session, Query(q): Query<LoginQuery>| async move {
                    login(&issuer, q)
                        .save_to(&session)
                        .await
                        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
                    Ok::<_, StatusCode>("logged in")
                },
            ),
        )
        .route(
            "/me",
            get(|session: Session| async move {
                match Login::from_session(&session).await {
                    Ok(Some(login)) => Ok(login.sub),
                    _ => Err(StatusCode::UNAUTHORIZED),
                }
            }),
        )
        .route("/logout", get(logout).post(logout))
}

async fn logout(session: Session) -> StatusCode {
    match session.flush().await {
        Ok(()) => StatusCode::OK,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}
