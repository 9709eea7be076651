//! A small web application that logs users in with OpenID Connect and is logged out everywhere
//! by its OP: authorization code + PKCE (openidconnect), sessions in the shared session store,
//! the back-channel receiver mounted at `/backchannel-logout`, and a logout button.
//!
//! Run it against your OP (register `http://127.0.0.1:3000/callback` as redirect URI,
//! `http://127.0.0.1:3000/logged-out` as post-logout redirect URI and
//! `http://127.0.0.1:3000/backchannel-logout` as back-channel logout URI):
//!
//! ```sh
//! OIDC_LOGOUT_ISSUER=https://login.example.com OIDC_LOGOUT_CLIENT_ID=app \
//! OIDC_LOGOUT_CLIENT_SECRET=secret OIDC_LOGOUT_REDIS_URL=redis://127.0.0.1/ \
//! cargo run --example app
//! ```
//!
//! Without `OIDC_LOGOUT_REDIS_URL` sessions live in this process only; with
//! `OIDC_LOGOUT_REDIS_MODE=cluster` or `sentinel` it takes node or sentinel URLs, comma-separated. `APP_LISTEN` (default
//! `127.0.0.1:3000`) and `APP_BASE_URL` (default `http://127.0.0.1:3000`) set where it runs;
//! `APP_SESSION_COOKIE` (default `app_session`) names its cookie.
//! With the receiver running as a separate `oidc-logout serve` on the same Redis, set
//! `APP_RECEIVER=off` and register that one as the back-channel logout URI instead.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use oidc_logout::Core;
use oidc_logout::index::{
    IndexSettings, MemoryIndex, RecordStore, RedisIndex, RedisTarget, SessionIndex,
};
use oidc_logout::inputs::backchannel::Receiver;
use oidc_logout::logout_token::Policy;
use oidc_logout::provider::{Provider, ProviderSettings, http_client};
use oidc_logout::rp::{self, Client, RefreshTokenRevocation};
use oidc_logout::session_store::{Login, OidcSessionStore, TokenSecret};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, HttpRequest, HttpResponse, IssuerUrl,
    Nonce, OAuth2TokenResponse as _, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    TokenResponse as _,
};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use tower_sessions::{Session, SessionManagerLayer};

/// What the login redirect must find again in the callback.
const PENDING_KEY: &str = "app.pending_login";

#[derive(Serialize, Deserialize)]
struct PendingLogin {
    state: String,
    nonce: String,
    pkce_verifier: String,
}

struct App {
    metadata: CoreProviderMetadata,
    client_id: String,
    client_secret: Option<SecretString>,
    base_url: String,
    provider: Arc<Provider>,
    rp_client: Client,
    http: reqwest::Client,
    /// Browsers share cookies between ports of one host: two apps on 127.0.0.1 need two names.
    cookie_name: String,
}

type Shared = Arc<App>;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// openidconnect's HTTP client: the same reqwest client as the rest of the crate.
struct Http(reqwest::Client);

impl<'c> openidconnect::AsyncHttpClient<'c> for Http {
    type Error = reqwest::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<HttpResponse, reqwest::Error>> + Send + 'c>,
    >;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(send(&self.0, request))
    }
}

async fn send(
    http: &reqwest::Client,
    request: HttpRequest,
) -> Result<HttpResponse, reqwest::Error> {
    let response = http.execute(reqwest::Request::try_from(request)?).await?;
    let mut out = HttpResponse::new(Vec::new());
    *out.status_mut() = response.status();
    *out.headers_mut() = response.headers().clone();
    *out.body_mut() = response.bytes().await?.to_vec();
    Ok(out)
}

impl App {
    fn oidc(
        &self,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
    > {
        Ok(CoreClient::from_provider_metadata(
            self.metadata.clone(),
            ClientId::new(self.client_id.clone()),
            self.client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.expose_secret().to_owned())),
        )
        .set_redirect_uri(RedirectUrl::new(format!("{}/callback", self.base_url))?))
    }
}

/// An error page with a status; never shows secrets.
struct Page(StatusCode, String);

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        (
            self.0,
            Html(format!(
                "<!doctype html><p>{}</p><p><a href=\"/\">home</a></p>",
                self.1
            )),
        )
            .into_response()
    }
}

fn bad(status: StatusCode, message: impl Into<String>) -> Page {
    Page(status, message.into())
}

async fn home(session: Session) -> Html<String> {
    match Login::from_session(&session).await.ok().flatten() {
        Some(login) => Html(format!(
            "<!doctype html><p>Logged in as {}</p>\
             <form method=\"post\" action=\"/logout\"><button>Log out</button></form>",
            login.sub
        )),
        None => Html("<!doctype html><p>Not logged in.</p><a href=\"/login\">Log in</a>".into()),
    }
}

async fn login(State(app): State<Shared>, session: Session) -> Result<Redirect, Page> {
    let oidc = app
        .oidc()
        .map_err(|e| bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = oidc
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("offline_access".into()))
        .add_extra_param("prompt", "consent")
        .set_pkce_challenge(challenge)
        .url();
    let pending = PendingLogin {
        state: state.secret().clone(),
        nonce: nonce.secret().clone(),
        pkce_verifier: verifier.secret().clone(),
    };
    session
        .insert(PENDING_KEY, pending)
        .await
        .map_err(|_| bad(StatusCode::SERVICE_UNAVAILABLE, "session store unavailable"))?;
    Ok(Redirect::to(url.as_str()))
}

#[derive(Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

async fn callback(
    State(app): State<Shared>,
    session: Session,
    Query(cb): Query<Callback>,
) -> Result<Redirect, Page> {
    let pending: Option<PendingLogin> = session
        .remove(PENDING_KEY)
        .await
        .map_err(|_| bad(StatusCode::SERVICE_UNAVAILABLE, "session store unavailable"))?;
    let Some(pending) = pending else {
        return Err(bad(
            StatusCode::BAD_REQUEST,
            "no login in progress in this session; start again",
        ));
    };
    if let Some(error) = cb.error {
        return Err(bad(
            StatusCode::BAD_REQUEST,
            format!("the OP refused the login: {error}"),
        ));
    }
    if cb.state.as_deref() != Some(pending.state.as_str()) {
        return Err(bad(
            StatusCode::BAD_REQUEST,
            "state does not match this login; start again",
        ));
    }
    let Some(code) = cb.code else {
        return Err(bad(StatusCode::BAD_REQUEST, "no authorization code"));
    };
    let oidc = app
        .oidc()
        .map_err(|e| bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let http = Http(app.http.clone());
    let tokens = oidc
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier))
        .request_async(&http)
        .await
        .map_err(|e| {
            bad(
                StatusCode::BAD_REQUEST,
                format!("the code was refused: {e}"),
            )
        })?;
    let id_token = tokens
        .id_token()
        .ok_or_else(|| bad(StatusCode::BAD_GATEWAY, "the OP sent no ID token"))?;
    let claims = id_token
        .claims(&oidc.id_token_verifier(), &Nonce::new(pending.nonce))
        .map_err(|e| {
            bad(
                StatusCode::BAD_REQUEST,
                format!("the ID token is invalid: {e}"),
            )
        })?;
    // openidconnect's core claims have no `sid`; read it from the payload it just verified.
    let raw = id_token.to_string();
    let sid = raw
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, p).ok()
        })
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("sid").and_then(|s| s.as_str()).map(str::to_owned));
    let auth_time = claims.auth_time().unwrap_or_else(|| claims.issue_time());
    let login = Login {
        issuer: claims.issuer().to_string(),
        sub: claims.subject().to_string(),
        client_id: Some(app.client_id.clone()),
        sid,
        auth_time: u64::try_from(auth_time.timestamp()).unwrap_or(0),
        logged_in_at: unix_now(),
        id_token: Some(TokenSecret::new(raw)),
        refresh_token: tokens
            .refresh_token()
            .map(|t| TokenSecret::new(t.secret().clone())),
        access_token: Some(TokenSecret::new(tokens.access_token().secret().clone())),
    };
    login
        .save_to(&session)
        .await
        .map_err(|_| bad(StatusCode::SERVICE_UNAVAILABLE, "session store unavailable"))?;
    Ok(Redirect::to("/"))
}

async fn me(session: Session) -> Response {
    match Login::from_session(&session).await {
        Ok(Some(login)) => {
            axum::Json(serde_json::json!({ "sub": login.sub, "sid": login.sid })).into_response()
        }
        Ok(None) => StatusCode::UNAUTHORIZED.into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

async fn logout(State(app): State<Shared>, session: Session) -> Result<Redirect, Page> {
    let done = rp::logout(&session, &app.provider, &app.rp_client)
        .await
        .map_err(|_| bad(StatusCode::SERVICE_UNAVAILABLE, "session store unavailable"))?;
    if let Some(rp::Revocation::Retry { reason, .. }) = &done.revocation {
        tracing::warn!(%reason, "refresh token not revoked yet; retrying in the background");
    }
    Ok(Redirect::to(done.redirect.as_deref().unwrap_or("/")))
}

#[derive(Deserialize)]
struct LoggedOut {
    state: Option<String>,
}

async fn logged_out(
    session: Session,
    Query(back): Query<LoggedOut>,
) -> Result<Html<&'static str>, Page> {
    match rp::check_logout_state(&session, back.state.as_deref()).await {
        Ok(true) => Ok(Html(
            "<!doctype html><p>You are logged out.</p><a href=\"/\">home</a>",
        )),
        Ok(false) => Err(bad(
            StatusCode::BAD_REQUEST,
            "unexpected logout response (state does not match)",
        )),
        Err(_) => Err(bad(
            StatusCode::SERVICE_UNAVAILABLE,
            "session store unavailable",
        )),
    }
}

fn routes<B>(app: Shared, backend: B, with_receiver: bool) -> Router
where
    B: SessionIndex + RecordStore + std::fmt::Debug,
{
    let store = OidcSessionStore::new(backend.clone());
    let secure = app.base_url.starts_with("https://");
    let mut router = Router::new()
        .route("/", get(home))
        .route("/login", get(login))
        .route("/callback", get(callback))
        .route("/me", get(me))
        .route("/logout", post(logout))
        .route("/logged-out", get(logged_out))
        .with_state(Arc::clone(&app))
        .layer(
            SessionManagerLayer::new(store)
                .with_secure(secure)
                .with_name(app.cookie_name.clone()),
        );
    if with_receiver {
        let issuer = app.provider.issuer();
        let revocation = RefreshTokenRevocation::new(backend.clone())
            .with_issuer(Arc::clone(&app.provider), vec![app.rp_client.clone()]);
        let core = Core::builder(backend)
            .issuer(issuer)
            .after_logout(Arc::new(revocation))
            .build();
        let receiver = Receiver::new(core).with_issuer(
            Arc::clone(&app.provider),
            Policy::new(issuer, app.client_id.clone()),
        );
        router = router.merge(receiver.into_router());
    }
    router
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let issuer =
        env("OIDC_LOGOUT_ISSUER").context("set OIDC_LOGOUT_ISSUER to your OP's issuer URL")?;
    let client_id = env("OIDC_LOGOUT_CLIENT_ID").context("set OIDC_LOGOUT_CLIENT_ID")?;
    let client_secret = env("OIDC_LOGOUT_CLIENT_SECRET").map(SecretString::from);
    let listen = env("APP_LISTEN").unwrap_or_else(|| "127.0.0.1:3000".into());
    let base_url = env("APP_BASE_URL").unwrap_or_else(|| "http://127.0.0.1:3000".into());
    let with_receiver = env("APP_RECEIVER").as_deref() != Some("off");

    let http = http_client()?;
    let settings = ProviderSettings::default().with_allow_insecure_http(true);
    let provider = Provider::discover(&issuer, http.clone(), settings)
        .await
        .with_context(|| format!("cannot load issuer {issuer}"))?;
    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(issuer.clone())?, &Http(http.clone()))
            .await
            .with_context(|| format!("cannot read the discovery document of {issuer}"))?;
    let rp_client = Client::new(client_id.clone())
        .with_secret(client_secret.clone())
        .with_post_logout_redirect_uri(format!("{base_url}/logged-out"));
    let cookie_name = env("APP_SESSION_COOKIE").unwrap_or_else(|| "app_session".into());
    let app = Arc::new(App {
        metadata,
        client_id,
        client_secret,
        base_url,
        provider,
        rp_client,
        http,
        cookie_name,
    });

    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (APP_LISTEN)"))?;
    let addr = listener.local_addr()?;
    let router = match env("OIDC_LOGOUT_REDIS_URL") {
        Some(urls) => {
            // One server, or a Cluster / Sentinel as the receiver takes them.
            let mode = env("OIDC_LOGOUT_REDIS_MODE").unwrap_or_else(|| "standalone".into());
            let master = env("OIDC_LOGOUT_REDIS_SENTINEL_MASTER");
            let target = RedisTarget::parse(&mode, &urls, master.as_deref())
                .map_err(|m| anyhow::anyhow!("OIDC_LOGOUT_REDIS_URL: {m}"))?;
            let index = RedisIndex::connect_to(&target, IndexSettings::default())
                .await
                .with_context(|| format!("cannot connect to Redis at {}", target.redacted()))?;
            routes(app, index, with_receiver)
        }
        None => {
            tracing::warn!("no OIDC_LOGOUT_REDIS_URL: sessions live in this process only");
            routes(
                app,
                MemoryIndex::new(IndexSettings::default()),
                with_receiver,
            )
        }
    };
    tracing::info!("app listening on http://{addr}");
    axum::serve(listener, router).await?;
    Ok(())
}
