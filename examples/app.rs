//! A small web application that logs users in with OpenID Connect and is logged out everywhere
//! by its OP: what an application writes to use oidc-logout, and no more. Login with PKCE,
//! sessions in the shared session store, the back-channel receiver at `/backchannel-logout`, a
//! logout button.
//!
//! Run it against your OP (register `http://127.0.0.1:3000/callback` as redirect URI,
//! `http://127.0.0.1:3000/logged-out` as post-logout redirect URI and
//! `http://127.0.0.1:3000/backchannel-logout` as back-channel logout URI):
//!
//! ```sh
//! OIDC_LOGOUT_ISSUER=https://login.example.com OIDC_LOGOUT_CLIENT_ID=app \
//! OIDC_LOGOUT_CLIENT_SECRET=secret OIDC_LOGOUT_REDIS_URL=redis://127.0.0.1/ \
//! cargo run --example app --features oidc-logout/openidconnect
//! ```
//!
//! Without `OIDC_LOGOUT_REDIS_URL` sessions live in this process only; with
//! `OIDC_LOGOUT_REDIS_MODE=cluster` or `sentinel` it takes node or sentinel URLs, comma-separated.
//! `APP_LISTEN` (default `127.0.0.1:3000`) and `APP_BASE_URL` (default `http://127.0.0.1:3000`)
//! set where it runs; `APP_SESSION_COOKIE` (default `app_session`) names its cookie. With the
//! receiver running as a separate `oidc-logout serve` on the same Redis, set `APP_RECEIVER=off`
//! and register that one as the back-channel logout URI instead. `APP_SESSION_POLICIES` names a
//! TOML file of session policies and the rules that choose them per login
//! (`oidc_logout::session_store::PoliciesConfig`; docs/deprovisioning.md). `APP_TOKEN_KEYS`
//! (comma-separated base64 keys of 32 bytes, newest first; `openssl rand -base64 32` makes one)
//! seals the ID, access and refresh tokens in the session records: without it they are stored
//! as the OP gave them (docs/adopting.md, "Tokens at rest").

use anyhow::{Context as _, Result};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use oidc_logout::OidcSessionStore;
use oidc_logout::index::{
    IndexSettings, MemoryIndex, RecordStore, RedisIndex, RedisTarget, SessionIndex,
};
use oidc_logout::provider::ProviderSettings;
use oidc_logout::rp::{Callback, RelyingParty, RpError, check_logout_state};
use oidc_logout::session_store::{
    LoggedIn, OwnSessions, Policies, PoliciesConfig, SessionDetails, TokenKeys,
};
use secrecy::SecretString;
use serde::Deserialize;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Session, SessionManagerLayer};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A page with a status; never shows secrets.
fn page(status: StatusCode, message: &str) -> Response {
    let body = format!("<!doctype html><p>{message}</p><p><a href=\"/\">home</a></p>");
    (status, Html(body)).into_response()
}

async fn home(user: Option<LoggedIn>) -> Html<String> {
    Html(match user {
        Some(user) => format!(
            "<!doctype html><p>Logged in as {}</p>\
             <form method=\"post\" action=\"/logout\"><button>Log out</button></form>",
            user.sub
        ),
        None => "<!doctype html><p>Not logged in.</p><a href=\"/login\">Log in</a>".into(),
    })
}

async fn login(State(rp): State<RelyingParty>, session: Session) -> Result<Redirect, RpError> {
    let url = rp.begin_login(&session, &["offline_access"]).await?;
    Ok(Redirect::to(&url))
}

async fn callback(
    State(rp): State<RelyingParty>,
    session: Session,
    Query(callback): Query<Callback>,
) -> Result<Redirect, RpError> {
    rp.finish_login(&session, &callback).await?;
    Ok(Redirect::to("/"))
}

async fn me(user: LoggedIn) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "sub": user.sub, "sid": user.sid }))
}

async fn logout(State(rp): State<RelyingParty>, session: Session) -> Result<Redirect, RpError> {
    let done = rp.logout(&session).await?;
    Ok(Redirect::to(done.redirect.as_deref().unwrap_or("/")))
}

#[derive(Deserialize)]
struct Back {
    state: Option<String>,
}

async fn logged_out(session: Session, Query(back): Query<Back>) -> Result<Response, RpError> {
    Ok(
        match check_logout_state(&session, back.state.as_deref()).await? {
            true => page(StatusCode::OK, "You are logged out."),
            false => page(
                StatusCode::BAD_REQUEST,
                "unexpected logout response (state does not match)",
            ),
        },
    )
}

fn routes<B>(rp: RelyingParty, index: B, cookie: String, secure: bool) -> Router
where
    B: SessionIndex + RecordStore + std::fmt::Debug,
{
    // One core: every way a session ends (the OP's logout, the logout button, the user's own
    // session list, a refused revalidation) goes through it and revokes refresh tokens.
    let core = rp.core(index.clone());
    let mut store = OidcSessionStore::new(index)
        .with_core(core.clone())
        .with_policies(rp.policies().clone());
    if let Some(keys) = rp.token_keys() {
        store = store.with_token_keys(keys.clone());
    }
    let mut router = Router::new()
        .route("/", get(home))
        .route("/login", get(login))
        .route("/callback", get(callback))
        .route("/me", get(me))
        .route("/logout", post(logout))
        .route("/logged-out", get(logged_out))
        .with_state(rp.clone())
        // Where else am I logged in? GET /account/sessions, POST …/end, …/end-others.
        .nest(
            "/account/sessions",
            OwnSessions::new(core.clone()).router::<Session>(),
        )
        .layer(SessionDetails::new().layer::<Session>())
        .layer(rp.revalidation(core.clone()).layer::<Session>())
        .layer(
            SessionManagerLayer::new(store)
                .with_secure(secure)
                // Lax: the OP's redirects back (callback, return from logout) come from
                // another site, and must carry the session that holds the login's state.
                .with_same_site(SameSite::Lax)
                .with_name(cookie),
        );
    if env("APP_RECEIVER").as_deref() != Some("off") {
        router = router.merge(rp.receiver(core).into_router());
    }
    router
}

/// Session policies from the TOML file `APP_SESSION_POLICIES` names; none without it.
fn policies() -> Result<Policies> {
    let Some(path) = env("APP_SESSION_POLICIES") else {
        return Ok(Policies::default());
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let config: PoliciesConfig = toml::from_str(&text).with_context(|| path.clone())?;
    Policies::from_config(config).with_context(|| path)
}

/// The OP's discovery, waiting up to 30 s for the OP to answer (it may be starting too, as in
/// a `docker compose up` or a test).
async fn discover(
    issuer: &str,
    client_id: &str,
    secret: Option<SecretString>,
    redirect_uri: &str,
) -> Result<RelyingParty> {
    let settings = ProviderSettings::default().with_allow_insecure_http(true);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let found = RelyingParty::discover_with(
            issuer,
            client_id,
            secret.clone(),
            redirect_uri,
            settings.clone(),
        )
        .await;
        match found {
            Ok(rp) => return Ok(rp),
            Err(error) if std::time::Instant::now() < deadline => {
                tracing::info!(%error, "waiting for the OP at {issuer}");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(error) => {
                return Err(error).with_context(|| format!("cannot load issuer {issuer}"));
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    // The receiver's and the store's lines at info (`RUST_LOG` overrides). tower-sessions warns
    // of "possibly suspicious activity" whenever a cookie names a session that is not in the
    // store, which is every cookie of a session a logout ended: kept to errors.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,tower_sessions_core::session=error")
            }),
        )
        .init();
    let issuer =
        env("OIDC_LOGOUT_ISSUER").context("set OIDC_LOGOUT_ISSUER to your OP's issuer URL")?;
    let client_id = env("OIDC_LOGOUT_CLIENT_ID").context("set OIDC_LOGOUT_CLIENT_ID")?;
    let secret = env("OIDC_LOGOUT_CLIENT_SECRET").map(SecretString::from);
    let listen = env("APP_LISTEN").unwrap_or_else(|| "127.0.0.1:3000".into());
    let base_url = env("APP_BASE_URL").unwrap_or_else(|| "http://127.0.0.1:3000".into());
    let cookie = env("APP_SESSION_COOKIE").unwrap_or_else(|| "app_session".into());

    let rp = discover(&issuer, &client_id, secret, &format!("{base_url}/callback"))
        .await?
        .with_post_logout_redirect_uri(&format!("{base_url}/logged-out"))?
        .with_policies(policies()?);
    let rp = match env("APP_TOKEN_KEYS") {
        Some(keys) => rp.with_token_keys(TokenKeys::parse(&keys).context("APP_TOKEN_KEYS")?),
        None => {
            tracing::warn!("no APP_TOKEN_KEYS: tokens are stored in the session records unsealed");
            rp
        }
    };
    let secure = base_url.starts_with("https://");
    let router = match env("OIDC_LOGOUT_REDIS_URL") {
        Some(urls) => {
            let mode = env("OIDC_LOGOUT_REDIS_MODE").unwrap_or_else(|| "standalone".into());
            let master = env("OIDC_LOGOUT_REDIS_SENTINEL_MASTER");
            let target = RedisTarget::parse(&mode, &urls, master.as_deref())
                .map_err(|m| anyhow::anyhow!("OIDC_LOGOUT_REDIS_URL: {m}"))?;
            let index = RedisIndex::connect_to(&target, IndexSettings::default())
                .await
                .with_context(|| format!("cannot connect to Redis at {}", target.redacted()))?;
            routes(rp, index, cookie, secure)
        }
        None => {
            tracing::warn!("no OIDC_LOGOUT_REDIS_URL: sessions live in this process only");
            routes(
                rp,
                MemoryIndex::new(IndexSettings::default()),
                cookie,
                secure,
            )
        }
    };
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (APP_LISTEN)"))?;
    tracing::info!("app listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router).await?;
    Ok(())
}
