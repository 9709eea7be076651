//! A refresh never loses to a stale save. Requests that loaded a session before a refresh rotated
//! its refresh token, and save it after, must not write the spent token back: the test OP, like
//! Okta, Auth0 and Keycloak, revokes the whole token family when a rotated refresh token is
//! presented again, which would log the user out everywhere for nothing.
//!
//! Each trial makes the stale save happen for certain: three requests load the session and wait;
//! a refresh rotates the token and saves; then the three change the session and save. The next
//! trial's refresh spends whatever the store holds.

mod common;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use common::{Browser, Op, RedisServer, index_on, now, serve};
use oidc_logout::LogoutAware;
use oidc_logout::index::{IndexSettings, MemoryIndex};
use oidc_logout::rp::{self, RelyingParty};
use oidc_logout::session_store::{Login, OidcSessionStore, TokenKeys, TokenSecret};
use secrecy::SecretString;
use tokio::sync::Semaphore;
use tower_sessions::{Session, SessionManagerLayer, SessionStore};

const APP: &str = "app";
const TRIALS: usize = 200;
const STALE: u32 = 3;

/// Where the test holds the stale requests: each adds a permit to `loaded` once it has loaded
/// the session, then waits for a permit of `go` before it changes the session.
#[derive(Clone)]
struct Gate {
    loaded: Arc<Semaphore>,
    go: Arc<Semaphore>,
}

#[derive(Clone)]
struct App {
    rp: RelyingParty,
    gate: Gate,
}

fn app<S: SessionStore + Clone>(store: S, rp: RelyingParty, gate: Gate) -> Router {
    Router::new()
        .route(
            "/login",
            get(
                |State(app): State<App>,
                 session: Session,
                 Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    let login = Login {
                        issuer: app.rp.provider().issuer().to_owned(),
                        sub: "alice".into(),
                        client_id: Some(APP.into()),
                        sid: Some("op-sid".into()),
                        auth_time: now() - 60,
                        logged_in_at: now(),
                        policy: None,
                        customer: None,
                        id_token: None,
                        refresh_token: q.get("refresh").cloned().map(TokenSecret::new),
                        access_token: None,
                    };
                    login
                        .save_to(&session)
                        .await
                        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
                    Ok::<_, StatusCode>("logged in")
                },
            ),
        )
        .route(
            "/refresh",
            get(|State(app): State<App>, session: Session| async move {
                match app.rp.refresh(&session).await {
                    Ok(rp::Refreshed::Refreshed) => "refreshed".to_owned(),
                    Ok(other) => format!("{other:?}"),
                    Err(e) => format!("error {e}"),
                }
            }),
        )
        .route(
            "/touch",
            get(|State(app): State<App>, session: Session| async move {
                // Load the session now (tower-sessions loads it on first use)...
                let seen: u64 = session.get("seen").await.ok().flatten().unwrap_or(0);
                app.gate.loaded.add_permits(1);
                // ...and change it once the refresh has saved.
                let Ok(permit) = app.gate.go.acquire().await else {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                };
                permit.forget();
                match session.insert("seen", seen + 1).await {
                    Ok(()) => StatusCode::OK,
                    Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
                }
            }),
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
        .with_state(App { rp, gate })
        .layer(SessionManagerLayer::new(store).with_secure(false))
}

async fn relying_party(op: &Op) -> RelyingParty {
    RelyingParty::discover_with(
        op.issuer(),
        APP,
        Some(SecretString::from("secret")),
        "http://127.0.0.1:3000/callback",
        common::provider_settings(),
    )
    .await
    .expect("discovery")
}

fn keys() -> TokenKeys {
    TokenKeys::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").expect("key")
}

/// Run the trials against `store`; every refresh must rotate, and no token be reused.
async fn trials<S: SessionStore + Clone>(op: Op, rp: RelyingParty, store: S) {
    let gate = Gate {
        loaded: Arc::new(Semaphore::new(0)),
        go: Arc::new(Semaphore::new(0)),
    };
    let base = serve(app(store, rp, gate.clone())).await;
    let mut browser = Browser::new(&base);
    let first = op.op.issue_refresh_token().expect("token");
    assert_eq!(browser.get(&format!("/login?refresh={first}")).await.0, 200);
    for trial in 0..TRIALS {
        let stale: Vec<_> = (0..STALE)
            .map(|_| {
                let (http, url, cookie) = (
                    browser.http.clone(),
                    format!("{base}/touch"),
                    browser.cookie.clone().unwrap_or_default(),
                );
                tokio::spawn(async move {
                    let answer = http.get(url).header("cookie", cookie).send().await;
                    answer.map(|r| r.status().as_u16()).unwrap_or(0)
                })
            })
            .collect();
        gate.loaded
            .acquire_many(STALE)
            .await
            .expect("the stale requests load the session")
            .forget();
        let (status, refreshed) = browser.get("/refresh").await;
        assert_eq!(
            (status, refreshed.as_str()),
            (200, "refreshed"),
            "trial {trial}: the refresh token the store held was refused (reuses detected: {})",
            op.op.refresh_token_reuses()
        );
        gate.go.add_permits(STALE as usize);
        for request in stale {
            assert_eq!(request.await.expect("request task"), 200, "trial {trial}");
        }
    }
    assert_eq!(
        op.op.refresh_token_reuses(),
        0,
        "no refresh token was reused"
    );
    assert_eq!(browser.get("/me").await, (200, "alice".into()));
    let (_, seen) = browser.get("/refresh").await;
    assert_eq!(
        seen, "refreshed",
        "the last rotated token is the one stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn this_crates_store_on_redis_keeps_the_newer_tokens() {
    let redis = RedisServer::start();
    let op = Op::start().await;
    let rp = relying_party(&op).await.with_token_keys(keys());
    let store = OidcSessionStore::new(index_on(&redis).await).with_token_keys(keys());
    trials(op, rp, store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn this_crates_store_in_memory_keeps_the_newer_tokens() {
    let op = Op::start().await;
    let rp = relying_party(&op).await;
    let store = OidcSessionStore::new(MemoryIndex::new(IndexSettings::default()));
    trials(op, rp, store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrapped_store_keeps_the_newer_tokens() {
    let redis = RedisServer::start();
    let op = Op::start().await;
    let rp = relying_party(&op).await.with_token_keys(keys());
    let store = LogoutAware::wrap(
        tower_sessions::MemoryStore::default(),
        index_on(&redis).await,
    )
    .with_token_keys(keys());
    trials(op, rp, store).await;
}

/// The test OP's reuse detection itself: a rotated token presented again is refused and
/// revokes its successor too.
#[tokio::test]
async fn the_test_op_revokes_the_family_of_a_reused_refresh_token() {
    let op = Op::start().await;
    let token = op.op.issue_refresh_token().expect("token");
    let grant = |refresh: String| {
        let url = format!("{}/token", op.issuer());
        async move {
            let answer = reqwest::Client::new()
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("grant_type=refresh_token&refresh_token={refresh}"))
                .send()
                .await
                .expect("OP answers");
            let text = answer.text().await.expect("body");
            serde_json::from_str::<serde_json::Value>(&text).expect("JSON")
        }
    };
    let first = grant(token.clone()).await;
    let next = first["refresh_token"].as_str().expect("rotated").to_owned();
    assert_eq!(grant(token).await["error"], "invalid_grant", "reused");
    assert_eq!(op.op.refresh_token_reuses(), 1);
    assert_eq!(
        grant(next).await["error"],
        "invalid_grant",
        "the family is revoked"
    );
}
