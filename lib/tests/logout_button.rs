//! The logout button and token refresh (the relying party on openidconnect) against the
//! built-in OP over HTTP: refresh token revoked with client authentication, local session and
//! index entry ended, RP-initiated logout redirect, `state` checked on return; an OP that cannot
//! revoke does not keep the user logged in; a refreshed ID token is kept only when it is valid
//! and names the session's user and authentication.

mod common;

use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use common::{Browser, Op, now, serve};
use oidc_logout::index::RecordStore as _;
use oidc_logout::index::{IndexSettings, MemoryIndex, SessionState};
use oidc_logout::inputs::backchannel::PATH;
use oidc_logout::rp::{self, RelyingParty, Revocation};
use oidc_logout::session_store::{Login, OidcSessionStore, TokenKeys, TokenSecret};
use oidc_logout::test_op::{RevocationMode, SigningAlg, SigningKey};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};
use tower_sessions::{Session, SessionManagerLayer};

/// The client the application is registered as (an id and secret that need encoding).
const APP: &str = "app 1";

#[derive(Deserialize)]
struct Back {
    state: Option<String>,
}

/// The ID token the session holds: authenticated at `AUTH_AGO` seconds ago, with a nonce.
const NONCE: &str = "nonce-of-the-login";

fn id_token_claims(op: &Op, auth_time: u64) -> Value {
    json!({
        "iss": op.issuer(),
        "sub": "alice",
        "aud": APP,
        "iat": now(),
        "exp": now() + 300,
        "auth_time": auth_time,
        "nonce": NONCE,
        "sid": "op-sid",
    })
}

fn sign_id_token(op: &Op, claims: &Value) -> String {
    op.sign_with(&op.key, &[("typ", "JWT".into())], claims)
}

fn app(
    store: OidcSessionStore<MemoryIndex>,
    relying_party: RelyingParty,
    id_token: String,
    auth_time: u64,
) -> Router {
    Router::new()
        .route(
            "/refresh",
            get(
                |State(rp): State<RelyingParty>, session: Session| async move {
                    match rp.refresh(&session).await {
                        Ok(rp::Refreshed::Refreshed) => "refreshed".to_owned(),
                        Ok(rp::Refreshed::LoggedOut) => "logged-out".to_owned(),
                        Ok(rp::Refreshed::Rejected(why)) => format!("rejected: {why}"),
                        Ok(other) => format!("{other:?}"),
                        Err(e) => format!("error {e}"),
                    }
                },
            ),
        )
        .route(
            "/login",
            get(
                move |State(rp): State<RelyingParty>,
                      session: Session,
                      Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    let login = Login {
                        issuer: rp.provider().issuer().to_owned(),
                        sub: "alice".into(),
                        client_id: Some(APP.into()),
                        sid: Some("op-sid".into()),
                        auth_time,
                        logged_in_at: now(),
                        policy: None,
                        id_token: Some(TokenSecret::new(id_token)),
                        refresh_token: Some(TokenSecret::new(
                            q.get("refresh")
                                .cloned()
                                .unwrap_or_else(|| "refresh-token-1".into()),
                        )),
                        access_token: None,
                        customer: None,
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
            "/me",
            get(|session: Session| async move {
                match Login::from_session(&session).await {
                    Ok(Some(login)) => Ok(login.sub),
                    _ => Err(StatusCode::UNAUTHORIZED),
                }
            }),
        )
        .route(
            "/id-token",
            get(|session: Session| async move {
                match Login::from_session(&session).await {
                    Ok(Some(login)) => Ok(login
                        .id_token
                        .map(|t| t.expose().to_owned())
                        .unwrap_or_default()),
                    _ => Err(StatusCode::UNAUTHORIZED),
                }
            }),
        )
        .route(
            "/logout",
            get(
                |State(rp): State<RelyingParty>, session: Session| async move {
                    let done = rp
                        .logout(&session)
                        .await
                        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
                    let revocation = match done.revocation {
                        Some(Revocation::Revoked) => "revoked",
                        Some(Revocation::Retry { .. }) => "retry",
                        Some(Revocation::Refused { .. }) => "refused",
                        Some(_) => "other",
                        None => "none",
                    };
                    Ok::<_, StatusCode>(format!(
                        "{revocation} {}",
                        done.redirect.unwrap_or_default()
                    ))
                },
            ),
        )
        .route(
            "/after-logout",
            get(|session: Session, Query(back): Query<Back>| async move {
                match rp::check_logout_state(&session, back.state.as_deref()).await {
                    Ok(true) => (StatusCode::OK, "logged out"),
                    _ => (StatusCode::BAD_REQUEST, "unexpected logout response"),
                }
            }),
        )
        .with_state(relying_party)
        .layer(SessionManagerLayer::new(store).with_secure(false))
}

async fn setup() -> (Op, MemoryIndex, Browser) {
    let (op, index, browser, _) = setup_with_receiver(true).await;
    (op, index, browser)
}

/// The app, plus a back-channel receiver on the same index that revokes refresh tokens of the
/// sessions it ends when `revoke` is set.
async fn setup_with_receiver(revoke: bool) -> (Op, MemoryIndex, Browser, String) {
    setup_sealed(revoke, None).await
}

/// The same, the store sealing the tokens with `keys` (and the receiver opening them).
async fn setup_sealed(revoke: bool, keys: Option<TokenKeys>) -> (Op, MemoryIndex, Browser, String) {
    let op = Op::start().await;
    let index = MemoryIndex::new(IndexSettings::default());
    let relying_party = RelyingParty::discover_with(
        op.issuer(),
        APP,
        Some(SecretString::from("s3cret:with/odd chars")),
        "http://127.0.0.1:3000/callback",
        common::provider_settings(),
    )
    .await
    .expect("discovery")
    .with_post_logout_redirect_uri("http://127.0.0.1:3000/after-logout")
    .expect("uri");
    let mut store = OidcSessionStore::new(index.clone());
    let relying_party = match keys {
        Some(keys) => {
            store = store.with_token_keys(keys.clone());
            relying_party.with_token_keys(keys)
        }
        None => relying_party,
    };
    let auth_time = now() - 60;
    let id_token = sign_id_token(&op, &id_token_claims(&op, auth_time));
    let base = serve(app(store, relying_party.clone(), id_token, auth_time)).await;
    let receiver = if revoke {
        relying_party.receiver(relying_party.core(index.clone()))
    } else {
        let core = oidc_logout::Core::builder(index.clone())
            .issuer(op.issuer())
            .build();
        oidc_logout::inputs::backchannel::Receiver::new(core).with_issuer(
            std::sync::Arc::clone(relying_party.provider()),
            oidc_logout::logout_token::Policy::new(op.issuer(), APP),
        )
    };
    let receiver = format!("{}{PATH}", serve(receiver.into_router()).await);
    (
        op,
        index,
        Browser {
            http: reqwest::Client::new(),
            base,
            cookie: None,
        },
        receiver,
    )
}

fn query(url: &str) -> std::collections::HashMap<String, String> {
    let parsed = reqwest::Url::parse(url).expect("redirect is a URL");
    parsed.query_pairs().into_owned().collect()
}

#[tokio::test]
async fn logout_button_revokes_ends_and_redirects() {
    let (op, index, mut browser) = setup().await;
    browser.get("/login").await;
    let session_id = browser
        .cookie
        .clone()
        .unwrap_or_default()
        .split('=')
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    assert_eq!(browser.get("/me").await, (200, "alice".into()));
    let (status, body) = browser.get("/logout").await;
    assert_eq!(status, 200);
    let (revocation, redirect) = body.split_once(' ').expect("outcome and redirect");
    assert_eq!(revocation, "revoked");
    // The OP received the refresh token, authenticated as the client (client_secret_basic).
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode("app+1:s3cret%3Awith%2Fodd+chars");
    assert_eq!(
        op.op.revoked(),
        vec![("refresh-token-1".to_owned(), Some(format!("Basic {basic}")))]
    );
    // RP-initiated logout redirect.
    assert!(
        redirect.starts_with(&format!("{}/session/end?", op.issuer())),
        "{redirect}"
    );
    let params = query(redirect);
    let hint = params.get("id_token_hint").cloned().unwrap_or_default();
    assert_eq!(hint.split('.').count(), 3, "the session's ID token: {hint}");
    assert_eq!(params.get("client_id").map(String::as_str), Some("app 1"));
    assert_eq!(
        params.get("post_logout_redirect_uri").map(String::as_str),
        Some("http://127.0.0.1:3000/after-logout")
    );
    let state = params.get("state").cloned().expect("state");
    // Local session and index entry are gone.
    assert_eq!(browser.get("/me").await.0, 401);
    assert_eq!(
        common::state_of(&index, op.issuer(), &session_id).await,
        SessionState::Ended
    );
    // The browser comes back: the wrong state is refused, and the right one works once.
    let mut attacker = Browser {
        http: reqwest::Client::new(),
        base: browser.base.clone(),
        cookie: None,
    };
    assert_eq!(
        attacker
            .get(&format!("/after-logout?state={state}"))
            .await
            .0,
        400
    );
    assert_eq!(browser.get("/after-logout?state=forged").await.0, 400);
}

#[tokio::test]
async fn the_right_state_is_accepted_once() {
    let (_op, _index, mut browser) = setup().await;
    browser.get("/login").await;
    let (_, body) = browser.get("/logout").await;
    let state = query(body.split_once(' ').expect("redirect").1)
        .get("state")
        .cloned()
        .expect("state");
    assert_eq!(
        browser.get(&format!("/after-logout?state={state}")).await.0,
        200
    );
    assert_eq!(
        browser.get(&format!("/after-logout?state={state}")).await.0,
        400,
        "state is single-use"
    );
}

#[tokio::test]
async fn an_op_that_cannot_revoke_does_not_keep_the_user_logged_in() {
    let (op, _index, mut browser) = setup().await;
    browser.get("/login").await;
    op.op.set_revocation_mode(RevocationMode::Unavailable);
    let (status, body) = browser.get("/logout").await;
    assert_eq!(status, 200);
    assert!(body.starts_with("retry "), "{body}");
    assert_eq!(
        browser.get("/me").await.0,
        401,
        "logged out locally although the OP said 503"
    );
    assert!(op.op.revoked().is_empty());
    // The OP recovers; the background retry revokes the token.
    op.op.set_revocation_mode(RevocationMode::Normal);
    for _ in 0..50 {
        if !op.op.revoked().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        op.op.revoked().first().map(|(t, _)| t.as_str()),
        Some("refresh-token-1")
    );
}

async fn back_channel_logout(op: &Op, receiver: &str) {
    let mut claims = op.claims(None, Some("op-sid"));
    claims["aud"] = APP.into();
    let token = op.sign(&claims);
    let reply = common::post_form(
        &reqwest::Client::new(),
        receiver,
        &[("logout_token", &token)],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test]
async fn a_back_channel_logout_revokes_the_sessions_refresh_token() {
    let (op, _index, mut browser, receiver) = setup_with_receiver(true).await;
    browser.get("/login").await;
    back_channel_logout(&op, &receiver).await;
    assert_eq!(browser.get("/me").await.0, 401);
    for _ in 0..50 {
        if !op.op.revoked().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        op.op.revoked().first().map(|(t, _)| t.as_str()),
        Some("refresh-token-1")
    );
}

#[tokio::test]
async fn a_back_channel_logout_revokes_the_refresh_token_of_every_session_it_ends() {
    let (op, _index, browser, receiver) = setup_with_receiver(true).await;
    let mut browsers = Vec::new();
    for i in 0..3 {
        let mut other = Browser {
            http: reqwest::Client::new(),
            base: browser.base.clone(),
            cookie: None,
        };
        other
            .get(&format!("/login?refresh=refresh-token-of-tab-{i}"))
            .await;
        browsers.push(other);
    }
    back_channel_logout(&op, &receiver).await;
    for b in &mut browsers {
        assert_eq!(b.get("/me").await.0, 401);
    }
    for _ in 0..50 {
        if op.op.revoked().len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut revoked: Vec<String> = op.op.revoked().into_iter().map(|(t, _)| t).collect();
    revoked.sort();
    assert_eq!(
        revoked,
        (0..3)
            .map(|i| format!("refresh-token-of-tab-{i}"))
            .collect::<Vec<_>>()
    );
}

/// The id of the session `browser`'s cookie names.
fn session_id(browser: &Browser) -> String {
    let cookie = browser.cookie.clone().unwrap_or_default();
    cookie.split('=').nth(1).unwrap_or_default().to_owned()
}

#[tokio::test]
async fn sealed_tokens_never_reach_the_store_yet_refresh_and_revocation_use_them() {
    let keys = TokenKeys::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").expect("key");
    let (op, index, mut browser, receiver) = setup_sealed(true, Some(keys)).await;
    let issued = op.op.issue_refresh_token().expect("token");
    browser.get(&format!("/login?refresh={issued}")).await;
    let stored = |index: MemoryIndex, id: String| async move {
        let record = index.get_record(&id).await.expect("store").expect("record");
        String::from_utf8(record).expect("JSON")
    };
    let record = stored(index.clone(), session_id(&browser)).await;
    let (_, id_token) = browser.get("/id-token").await;
    assert_eq!(id_token.split('.').count(), 3, "the app reads its ID token");
    for token in [issued.as_str(), id_token.as_str()] {
        assert!(!record.contains(token), "a token in the clear: {record}");
    }
    let login: Value = serde_json::from_str(&record).expect("record");
    let login = &login["data"]["oidc_logout.login"];
    for field in ["id_token", "refresh_token"] {
        let value = login[field].as_str().unwrap_or_default();
        assert!(value.starts_with("sealed:v1:"), "{field}: {value}");
    }
    // The app refreshes with the token it opened; the rotated one is sealed in turn.
    assert_eq!(browser.get("/refresh").await, (200, "refreshed".into()));
    let record = stored(index.clone(), session_id(&browser)).await;
    assert!(!record.contains(&issued), "{record}");
    let login: Value = serde_json::from_str(&record).expect("record");
    for field in ["id_token", "refresh_token", "access_token"] {
        let value = login["data"]["oidc_logout.login"][field].as_str();
        assert!(
            value.is_some_and(|v| v.starts_with("sealed:v1:")),
            "{field} after the refresh: {value:?}"
        );
    }
    // The receiver opens the current refresh token to revoke it.
    back_channel_logout(&op, &receiver).await;
    assert_eq!(browser.get("/me").await.0, 401);
    for _ in 0..50 {
        if !op.op.revoked().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let revoked = op.op.revoked();
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert!(
        !revoked[0].0.starts_with("sealed:"),
        "revoked the sealed value"
    );
    assert_ne!(revoked[0].0, issued, "the rotated token, not the first");
}

#[tokio::test]
async fn revocation_by_the_receiver_can_be_turned_off() {
    let (op, _index, mut browser, receiver) = setup_with_receiver(false).await;
    browser.get("/login").await;
    back_channel_logout(&op, &receiver).await;
    assert_eq!(browser.get("/me").await.0, 401);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(op.op.revoked().is_empty());
}

#[tokio::test]
async fn refresh_rotates_tokens_and_an_invalid_grant_ends_the_session() {
    let (op, _index, mut browser) = setup().await;
    let issued = op.op.issue_refresh_token().expect("token");
    browser.get(&format!("/login?refresh={issued}")).await;
    assert_eq!(browser.get("/refresh").await, (200, "refreshed".into()));
    assert_eq!(browser.get("/me").await.0, 200);
    // The rotated token works again...
    assert_eq!(browser.get("/refresh").await, (200, "refreshed".into()));
    // ...but a session whose refresh token the OP no longer honours (user disabled) ends.
    let mut other = Browser {
        http: reqwest::Client::new(),
        base: browser.base.clone(),
        cookie: None,
    };
    other.get("/login?refresh=revoked-or-unknown").await;
    assert_eq!(other.get("/me").await.0, 200);
    assert_eq!(other.get("/refresh").await, (200, "logged-out".into()));
    assert_eq!(other.get("/me").await.0, 401);
    assert_eq!(
        browser.get("/me").await.0,
        200,
        "the other session is untouched"
    );
}

/// The auth_time the session's login holds: the one in its stored ID token.
async fn session_auth_time(browser: &mut Browser) -> u64 {
    let (_, token) = browser.get("/id-token").await;
    let payload = token.split('.').nth(1).unwrap_or_default().to_owned();
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("payload");
    let claims: Value = serde_json::from_slice(&bytes).expect("claims");
    claims["auth_time"].as_u64().expect("auth_time")
}

/// A session with a refresh token the OP honours, and the OP set to return `id_token` with the
/// refreshed tokens.
async fn refreshing(id_token: impl FnOnce(&Op, u64) -> String) -> (Op, Browser) {
    let (op, _index, mut browser) = setup().await;
    let issued = op.op.issue_refresh_token().expect("token");
    browser.get(&format!("/login?refresh={issued}")).await;
    let auth_time = session_auth_time(&mut browser).await;
    op.op.set_refresh_id_token(Some(id_token(&op, auth_time)));
    (op, browser)
}

/// A refreshed ID token like the OP's original one: same user and authentication, a later
/// expiry, no nonce.
fn refreshed_claims(op: &Op, auth_time: u64) -> Value {
    let mut claims = id_token_claims(op, auth_time);
    claims["exp"] = (now() + 600).into();
    if let Some(map) = claims.as_object_mut() {
        map.remove("nonce");
    }
    claims
}

#[tokio::test]
async fn a_valid_refreshed_id_token_keeps_the_session_and_its_original_token() {
    // The original nonce is allowed (some OPs repeat it)...
    let (op, mut browser) = refreshing(|op, auth| {
        let mut claims = refreshed_claims(op, auth);
        claims["nonce"] = NONCE.into();
        sign_id_token(op, &claims)
    })
    .await;
    let (_, before) = browser.get("/id-token").await;
    assert_eq!(browser.get("/refresh").await, (200, "refreshed".into()));
    let (_, after) = browser.get("/id-token").await;
    assert_eq!(
        before, after,
        "the original ID token stays: later refreshes are compared with it"
    );
    assert_eq!(browser.get("/me").await.0, 200);
    // ...and so is none, as the spec prefers.
    let auth_time = session_auth_time(&mut browser).await;
    let claims = refreshed_claims(&op, auth_time);
    op.op
        .set_refresh_id_token(Some(sign_id_token(&op, &claims)));
    assert_eq!(browser.get("/refresh").await, (200, "refreshed".into()));
    // Later refreshes are still compared with the original: another authentication ends it.
    let claims = refreshed_claims(&op, auth_time + 1);
    op.op
        .set_refresh_id_token(Some(sign_id_token(&op, &claims)));
    let (status, body) = browser.get("/refresh").await;
    assert_eq!(status, 200);
    assert!(body.starts_with("rejected: "), "{body}");
    assert_eq!(browser.get("/me").await.0, 401, "the session ended");
}

/// Each way a refreshed ID token can be wrong ends the session (OpenID Connect Core §12.2).
async fn a_wrong_refreshed_id_token_ends_the_session(
    change: impl FnOnce(&Op, &mut Value) -> Option<SigningKey>,
) {
    let (_op, mut browser) = refreshing(|op, auth| {
        let mut claims = refreshed_claims(op, auth);
        match change(op, &mut claims) {
            Some(key) => op.sign_with(&key, &[("typ", "JWT".into())], &claims),
            None => sign_id_token(op, &claims),
        }
    })
    .await;
    let (status, body) = browser.get("/refresh").await;
    assert_eq!(status, 200);
    assert!(body.starts_with("rejected: "), "{body}");
    assert_eq!(browser.get("/me").await.0, 401, "the session ended");
}

#[tokio::test]
async fn a_refreshed_id_token_for_another_user_ends_the_session() {
    a_wrong_refreshed_id_token_ends_the_session(|_, c| {
        c["sub"] = "mallory".into();
        None
    })
    .await;
}

#[tokio::test]
async fn a_refreshed_id_token_for_another_client_ends_the_session() {
    a_wrong_refreshed_id_token_ends_the_session(|_, c| {
        c["aud"] = "another-app".into();
        None
    })
    .await;
}

#[tokio::test]
async fn a_refreshed_id_token_from_another_issuer_ends_the_session() {
    a_wrong_refreshed_id_token_ends_the_session(|_, c| {
        c["iss"] = "https://evil.example".into();
        None
    })
    .await;
}

#[tokio::test]
async fn a_refreshed_id_token_signed_by_another_key_ends_the_session() {
    a_wrong_refreshed_id_token_ends_the_session(|_, _| {
        Some(SigningKey::generate(SigningAlg::Rs256).expect("key"))
    })
    .await;
}

#[tokio::test]
async fn a_refreshed_id_token_of_another_authentication_ends_the_session() {
    a_wrong_refreshed_id_token_ends_the_session(|_, c| {
        c["auth_time"] = (now() - 5).into();
        None
    })
    .await;
}

#[tokio::test]
async fn a_refreshed_id_token_with_another_nonce_ends_the_session() {
    a_wrong_refreshed_id_token_ends_the_session(|_, c| {
        c["nonce"] = "another-nonce".into();
        None
    })
    .await;
}

#[tokio::test]
async fn an_expired_refreshed_id_token_ends_the_session() {
    a_wrong_refreshed_id_token_ends_the_session(|_, c| {
        c["exp"] = (now() - 600).into();
        None
    })
    .await;
}
