//! An axum application that already had OpenID Connect login (openidconnect, authorization code
//! with PKCE) and sessions in Redis (tower-sessions-redis-store), after adopting oidc-logout: a
//! logout at the OP, or in any other application of the same OP, ends its sessions, and its
//! logout button logs the user out at the OP too. `docs/adopting.md` shows the change from
//! `examples/existing_app_before.rs`, line by line.
//!
//! Settings as `examples/app.rs` takes them: `OIDC_LOGOUT_ISSUER`, `OIDC_LOGOUT_CLIENT_ID`,
//! `OIDC_LOGOUT_CLIENT_SECRET`, `OIDC_LOGOUT_REDIS_URL`, `APP_LISTEN`, `APP_BASE_URL`,
//! `APP_SESSION_COOKIE`. Register `<APP_BASE_URL>/callback` as redirect URI,
//! `<APP_BASE_URL>/logged-out` as post-logout redirect URI and
//! `<APP_BASE_URL>/backchannel-logout` as back-channel logout URI at the OP.
//!
//! ```sh
//! cargo run --example existing_app --features oidc-logout/openidconnect,oidc-logout/tower-sessions-014
//! ```

// This repository builds two tower-sessions versions; an application has one.
use tower_sessions_014 as tower_sessions;

use anyhow::{Context as _, Result};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use oidc_logout::index::{IndexSettings, RedisIndex};
use oidc_logout::rp::{self, RelyingParty};
use oidc_logout::session_store::LogoutAware;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, HttpRequest, HttpResponse, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, TokenResponse as _,
};
use serde::{Deserialize, Serialize};
use tower_sessions::cookie::SameSite;
use tower_sessions::{Session, SessionManagerLayer};
use tower_sessions_redis_store::RedisStore;
use tower_sessions_redis_store::fred::prelude::{ClientLike as _, Config, Pool};

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

#[derive(Clone)]
struct App {
    client: Client,
    http: Http,
    rp: RelyingParty,
}

/// openidconnect's HTTP client on the application's reqwest.
#[derive(Clone)]
struct Http(reqwest::Client);

impl<'c> openidconnect::AsyncHttpClient<'c> for Http {
    type Error = reqwest::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<HttpResponse, reqwest::Error>> + Send + 'c>,
    >;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let response = self.0.execute(request.try_into()?).await?;
            let mut out = HttpResponse::new(Vec::new());
            *out.status_mut() = response.status();
            *out.headers_mut() = response.headers().clone();
            *out.body_mut() = response.bytes().await?.to_vec();
            Ok(out)
        })
    }
}

#[derive(Serialize, Deserialize)]
struct Pending {
    state: String,
    nonce: String,
    verifier: String,
}

#[derive(Deserialize)]
struct Callback {
    code: String,
    state: String,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn failed(message: impl std::fmt::Display) -> Response {
    (StatusCode::BAD_REQUEST, format!("{message}")).into_response()
}

async fn home(session: Session) -> Html<String> {
    Html(match session.get::<String>("user").await.ok().flatten() {
        Some(user) => format!(
            "<p>Logged in as {user}</p><form method=post action=/logout><button>Log out</button></form>"
        ),
        None => "<p>Not logged in.</p><a href=/login>Log in</a>".into(),
    })
}

async fn login(State(app): State<App>, session: Session) -> Response {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = app
        .client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("offline_access".into()))
        .add_extra_param("prompt", "consent")
        .set_pkce_challenge(challenge)
        .url();
    let pending = Pending {
        state: state.secret().clone(),
        nonce: nonce.secret().clone(),
        verifier: verifier.secret().clone(),
    };
    match session.insert("pending", pending).await {
        Ok(()) => Redirect::to(url.as_str()).into_response(),
        Err(e) => failed(e),
    }
}

async fn callback(
    State(app): State<App>,
    session: Session,
    Query(cb): Query<Callback>,
) -> Response {
    let pending: Option<Pending> = session.remove("pending").await.ok().flatten();
    let Some(pending) = pending.filter(|p| p.state == cb.state) else {
        return failed("no such login in progress; start again");
    };
    let exchange = match app.client.exchange_code(AuthorizationCode::new(cb.code)) {
        Ok(request) => request.set_pkce_verifier(PkceCodeVerifier::new(pending.verifier)),
        Err(e) => return failed(e),
    };
    let token = match exchange.request_async(&app.http).await {
        Ok(token) => token,
        Err(e) => return failed(e),
    };
    let Some(id_token) = token.id_token() else {
        return failed("no ID token");
    };
    let nonce = Nonce::new(pending.nonce);
    let user = match id_token.claims(&app.client.id_token_verifier(), &nonce) {
        Ok(claims) => claims.subject().to_string(),
        Err(e) => return failed(e),
    };
    let login = match app.rp.login(&token, &nonce).await {
        Ok(login) => login,
        Err(e) => return failed(e),
    };
    if let Err(e) = login.save_to(&session).await {
        return failed(e);
    }
    match session.insert("user", user).await {
        Ok(()) => Redirect::to("/").into_response(),
        Err(e) => failed(e),
    }
}

async fn me(session: Session) -> StatusCode {
    match session.get::<String>("user").await {
        Ok(Some(_)) => StatusCode::OK,
        _ => StatusCode::UNAUTHORIZED,
    }
}

async fn logout(State(app): State<App>, session: Session) -> Response {
    match app.rp.logout(&session).await {
        Ok(done) => Redirect::to(done.redirect.as_deref().unwrap_or("/")).into_response(),
        Err(e) => failed(e),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    // Logs at info (RUST_LOG overrides); tower-sessions' warning for a cookie whose session is
    // gone kept to errors.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,tower_sessions_core::session=error".into());
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let issuer = env("OIDC_LOGOUT_ISSUER").context("set OIDC_LOGOUT_ISSUER")?;
    let client_id = env("OIDC_LOGOUT_CLIENT_ID").context("set OIDC_LOGOUT_CLIENT_ID")?;
    let secret = env("OIDC_LOGOUT_CLIENT_SECRET").context("set OIDC_LOGOUT_CLIENT_SECRET")?;
    let redis_url = env("OIDC_LOGOUT_REDIS_URL").context("set OIDC_LOGOUT_REDIS_URL")?;
    let listen = env("APP_LISTEN").unwrap_or_else(|| "127.0.0.1:3000".into());
    let base_url = env("APP_BASE_URL").unwrap_or_else(|| "http://127.0.0.1:3000".into());
    let cookie = env("APP_SESSION_COOKIE").unwrap_or_else(|| "id".into());

    let http = Http(
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
    );
    let redirect = RedirectUrl::new(format!("{base_url}/callback"))?;
    let rp = RelyingParty::discover(&issuer, &client_id, Some(secret.clone().into()), &redirect);
    let rp = rp.await.context("discovery")?;
    let rp = rp.with_post_logout_redirect_uri(&format!("{base_url}/logged-out"))?;
    let metadata = CoreProviderMetadata::discover_async(IssuerUrl::new(issuer)?, &http);
    let metadata = metadata.await.context("discovery")?;
    let (id, secret) = (ClientId::new(client_id), Some(ClientSecret::new(secret)));
    let client =
        CoreClient::from_provider_metadata(metadata, id, secret).set_redirect_uri(redirect);

    let pool = Pool::new(Config::from_url(&redis_url)?, None, None, None, 2)?;
    pool.init().await.context("cannot connect to Redis")?;
    let index = RedisIndex::connect(&redis_url, IndexSettings::default()).await?;
    let store = LogoutAware::wrap(RedisStore::new(pool), index.clone());
    let receiver = rp.receiver(rp.core(index)).into_router();
    let layer = SessionManagerLayer::new(store)
        .with_secure(false)
        .with_same_site(SameSite::Lax)
        .with_name(cookie);
    let router = Router::new()
        .route("/", get(home))
        .route("/login", get(login))
        .route("/callback", get(callback))
        .route("/me", get(me))
        .route("/logout", post(logout))
        .route("/logged-out", get(rp::logged_out::<Session>))
        .with_state(App { client, http, rp })
        .layer(layer);
    let router = router.merge(receiver);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("app listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router).await?;
    Ok(())
}
