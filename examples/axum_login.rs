//! An axum-login 0.18 application whose users log in at the OpenID Provider, and which the OP
//! logs out: `AuthSession::login` beside the [`Login`] oidc-logout records, both in one
//! tower-sessions 0.14 session. A back-channel logout ends the session (axum-login then finds no
//! user), and the logout button logs the user out at the OP and in every other application.
//! docs/adopting.md, "axum-login", walks through it; `tests/axum_login.rs` runs it.
//!
//! Settings as `examples/app.rs` takes them: `OIDC_LOGOUT_ISSUER`, `OIDC_LOGOUT_CLIENT_ID`,
//! `OIDC_LOGOUT_CLIENT_SECRET`, `OIDC_LOGOUT_REDIS_URL`, `APP_LISTEN`, `APP_BASE_URL`. Register
//! `<APP_BASE_URL>/callback` as redirect URI, `<APP_BASE_URL>/logged-out` as post-logout redirect
//! URI and `<APP_BASE_URL>/backchannel-logout` as back-channel logout URI at the OP.
//!
//! ```sh
//! cargo run --example axum_login --features oidc-logout/openidconnect
//! ```

// This repository builds two tower-sessions versions; an axum-login application has 0.14.
use tower_sessions_014 as tower_sessions;

use std::convert::Infallible;

use anyhow::{Context as _, Result};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_login::{AuthManagerLayerBuilder, AuthSession, AuthUser, AuthnBackend, UserId};
use oidc_logout::index::IndexSettings;
use oidc_logout::rp::{self, Callback, RelyingParty, RpError};
use oidc_logout::session_store::Login;
use oidc_logout::{OidcSessionStore, ProviderSettings, RedisIndex};
use tower_sessions::cookie::SameSite;
use tower_sessions::{Session, SessionManagerLayer};

/// The application's user: who the OP said logged in.
#[derive(Clone, Debug)]
struct User {
    sub: String,
}

impl AuthUser for User {
    type Id = String;

    fn id(&self) -> String {
        self.sub.clone()
    }

    fn session_auth_hash(&self) -> &[u8] {
        self.sub.as_bytes()
    }
}

/// axum-login's backend: the OP authenticates, so the credentials are the verified [`Login`].
#[derive(Clone)]
struct Backend;

impl AuthnBackend for Backend {
    type User = User;
    type Credentials = Login;
    type Error = Infallible;

    async fn authenticate(&self, login: Login) -> Result<Option<User>, Infallible> {
        Ok(Some(User { sub: login.sub }))
    }

    async fn get_user(&self, sub: &UserId<Self>) -> Result<Option<User>, Infallible> {
        Ok(Some(User { sub: sub.clone() }))
    }
}

type Auth = AuthSession<Backend>;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

async fn home(auth: Auth) -> String {
    match auth.user {
        Some(user) => format!("Logged in as {}", user.sub),
        None => "Not logged in".into(),
    }
}

async fn me(auth: Auth) -> Result<String, StatusCode> {
    auth.user.map(|u| u.sub).ok_or(StatusCode::UNAUTHORIZED)
}

async fn login(State(rp): State<RelyingParty>, session: Session) -> Result<Redirect, RpError> {
    Ok(Redirect::to(
        &rp.begin_login(&session, &["offline_access"]).await?,
    ))
}

/// The login is recorded for oidc-logout, then axum-login's user beside it.
async fn callback(
    State(rp): State<RelyingParty>,
    mut auth: Auth,
    Query(back): Query<Callback>,
) -> Result<Redirect, Response> {
    let login = rp
        .finish_login(&auth.session, &back)
        .await
        .map_err(IntoResponse::into_response)?;
    let Ok(Some(user)) = auth.authenticate(login).await else {
        return Err(StatusCode::UNAUTHORIZED.into_response());
    };
    auth.login(&user)
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE.into_response())?;
    Ok(Redirect::to("/"))
}

/// The logout button: logged out at the OP and everywhere. `rp.logout` ends the whole session,
/// axum-login's user with it (calling `auth.logout()` after it would also drop the `state` the
/// return from the OP is checked against).
async fn logout(State(rp): State<RelyingParty>, auth: Auth) -> Result<Redirect, RpError> {
    let done = rp.logout(&auth.session).await?;
    Ok(Redirect::to(done.redirect.as_deref().unwrap_or("/")))
}

#[tokio::main]
async fn main() -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,tower_sessions_core::session=error".into());
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let issuer = env("OIDC_LOGOUT_ISSUER").context("set OIDC_LOGOUT_ISSUER")?;
    let client_id = env("OIDC_LOGOUT_CLIENT_ID").context("set OIDC_LOGOUT_CLIENT_ID")?;
    let secret = env("OIDC_LOGOUT_CLIENT_SECRET").map(Into::into);
    let redis_url = env("OIDC_LOGOUT_REDIS_URL").context("set OIDC_LOGOUT_REDIS_URL")?;
    let listen = env("APP_LISTEN").unwrap_or_else(|| "127.0.0.1:3000".into());
    let base_url = env("APP_BASE_URL").unwrap_or_else(|| "http://127.0.0.1:3000".into());

    let settings = ProviderSettings::default().with_allow_insecure_http(true);
    let callback_url = format!("{base_url}/callback");
    let rp = RelyingParty::discover_with(&issuer, &client_id, secret, &callback_url, settings)
        .await
        .context("discovery")?
        .with_post_logout_redirect_uri(&format!("{base_url}/logged-out"))?;
    let index = RedisIndex::connect(&redis_url, IndexSettings::default()).await?;
    let core = rp.core(index.clone());
    let store = OidcSessionStore::new(index).with_core(core.clone());
    let sessions = SessionManagerLayer::new(store)
        .with_secure(base_url.starts_with("https://"))
        .with_same_site(SameSite::Lax);
    let auth = AuthManagerLayerBuilder::new(Backend, sessions).build();
    let router = Router::new()
        .route("/", get(home))
        .route("/me", get(me))
        .route("/login", get(login))
        .route("/callback", get(callback))
        .route("/logout", post(logout))
        .route("/logged-out", get(rp::logged_out::<Session>))
        .with_state(rp.clone())
        .layer(auth)
        .merge(rp.receiver(core).into_router());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("app listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router).await?;
    Ok(())
}
