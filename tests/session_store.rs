//! The tower-sessions store in a real axum app behind tower-sessions' layer, on both backends:
//! logins are indexed, back-channel logouts end them, ended sessions never come back, and the
//! per-issuer lifetime policy holds.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::get;
use common::{Browser, Op, now, post_form, serve};
use oidc_logout::index::{RecordStore, SessionIndex};
use oidc_logout::inputs::backchannel::PATH;
use oidc_logout::provider::{Provider, http_client};
use oidc_logout::session_store::{LOGIN_KEY, Login, OidcSessionStore, SessionPolicy, TokenSecret};
use serde::Deserialize;
use tower_sessions::{Session, SessionManagerLayer, SessionStore};

#[derive(Deserialize)]
struct LoginParams {
    sub: String,
    sid: Option<String>,
}

/// A minimal app: `/login` records a login as an OIDC callback would, `/me` says who is logged
/// in, `/count` keeps other session data, `/logout` ends the session.
fn app<B>(store: OidcSessionStore<B>, issuer: String) -> Router
where
    B: SessionIndex + RecordStore + std::fmt::Debug,
{
    Router::new()
        .route(
            "/login",
            get(
                move |session: Session, Query(p): Query<LoginParams>| async move {
                    let login = Login {
                        issuer: issuer.clone(),
                        sub: p.sub,
                        client_id: None,
                        sid: p.sid,
                        auth_time: now() - 1,
                        logged_in_at: now(),
                        id_token: None,
                        refresh_token: Some(TokenSecret::new("refresh-secret-value")),
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
            "/me",
            get(|session: Session| async move {
                match Login::from_session(&session).await {
                    Ok(Some(login)) => {
                        Ok(format!("{} {}", login.sub, login.sid.unwrap_or_default()))
                    }
                    _ => Err(StatusCode::UNAUTHORIZED),
                }
            }),
        )
        .route(
            "/count",
            get(|session: Session| async move {
                let n: u64 = session.get("count").await.ok().flatten().unwrap_or(0) + 1;
                session
                    .insert("count", n)
                    .await
                    .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
                Ok::<_, StatusCode>(n.to_string())
            }),
        )
        .route(
            "/logout",
            get(|session: Session| async move {
                session
                    .flush()
                    .await
                    .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
                Ok::<_, StatusCode>("bye")
            }),
        )
        .layer(SessionManagerLayer::new(store).with_secure(false))
}

struct Setup<B> {
    op: Op,
    store: OidcSessionStore<B>,
    app: String,
    receiver: String,
}

async fn setup<B>(
    backend: B,
    adjust: impl FnOnce(OidcSessionStore<B>, &str) -> OidcSessionStore<B>,
) -> Setup<B>
where
    B: SessionIndex + RecordStore + std::fmt::Debug,
{
    let op = Op::start().await;
    let store = adjust(OidcSessionStore::new(backend.clone()), op.issuer());
    let app = serve(app(store.clone(), op.issuer().to_owned())).await;
    let provider = Provider::discover(
        op.issuer(),
        http_client().expect("client"),
        common::provider_settings(),
    )
    .await
    .expect("discovery");
    let receiver = common::receiver(backend, Arc::clone(&provider), common::policy(op.issuer()));
    let receiver = format!("{}{PATH}", serve(receiver.into_router()).await);
    Setup {
        op,
        store,
        app,
        receiver,
    }
}

impl<B> Setup<B> {
    async fn logout(&self, sub: Option<&str>, sid: Option<&str>) {
        let token = self.op.sign(&self.op.claims(sub, sid));
        let reply = post_form(
            &reqwest::Client::new(),
            &self.receiver,
            &[("logout_token", &token)],
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
}

async fn back_channel_logout_ends_the_app_session<B>(backend: B)
where
    B: SessionIndex + RecordStore + std::fmt::Debug,
{
    let s = setup(backend, |store, _| store).await;
    let mut alice = Browser::new(&s.app);
    let mut alice_phone = Browser::new(&s.app);
    let mut bob = Browser::new(&s.app);
    assert_eq!(alice.get("/count").await, (200, "1".into()));
    assert_eq!(alice.get("/login?sub=alice&sid=op-1").await.0, 200);
    assert_eq!(alice_phone.get("/login?sub=alice&sid=op-2").await.0, 200);
    assert_eq!(bob.get("/login?sub=bob&sid=op-3").await.0, 200);
    assert_eq!(alice.get("/me").await, (200, "alice op-1".into()));
    // Other session data survives the login (and its id rotation).
    assert_eq!(alice.get("/count").await, (200, "2".into()));
    s.logout(None, Some("op-1")).await;
    assert_eq!(
        alice.get("/me").await.0,
        401,
        "sid logout must end the session"
    );
    assert_eq!(
        alice_phone.get("/me").await.0,
        200,
        "another OP session of the same user"
    );
    s.logout(Some("alice"), None).await;
    assert_eq!(
        alice_phone.get("/me").await.0,
        401,
        "sub logout ends every session of the user"
    );
    assert_eq!(bob.get("/me").await, (200, "bob op-3".into()));
}

async fn an_ended_session_is_never_saved_back<B>(backend: B)
where
    B: SessionIndex + RecordStore + std::fmt::Debug,
{
    let s = setup(backend, |store, _| store).await;
    let mut alice = Browser::new(&s.app);
    assert_eq!(alice.get("/login?sub=alice&sid=op-1").await.0, 200);
    let cookie = alice.cookie.clone().expect("session cookie");
    let id: tower_sessions::session::Id = cookie
        .split('=')
        .nth(1)
        .unwrap_or_default()
        .parse()
        .expect("session id");
    // An in-flight request loaded the session before the logout and saves it afterwards.
    let in_flight = s
        .store
        .load(&id)
        .await
        .expect("load")
        .expect("live session");
    s.logout(None, Some("op-1")).await;
    s.store.save(&in_flight).await.expect("save");
    assert!(
        s.store.load(&id).await.expect("load").is_none(),
        "the logout must win"
    );
    assert_eq!(alice.get("/me").await.0, 401);
}

async fn the_apps_own_logout_ends_the_index_entry<B>(backend: B)
where
    B: SessionIndex + RecordStore + std::fmt::Debug,
{
    let s = setup(backend.clone(), |store, _| store).await;
    let mut alice = Browser::new(&s.app);
    assert_eq!(alice.get("/login?sub=alice&sid=op-1").await.0, 200);
    let cookie = alice.cookie.clone().expect("session cookie");
    let id = cookie.split('=').nth(1).unwrap_or_default().to_owned();
    assert_eq!(alice.get("/logout").await.0, 200);
    let state = common::state_of(&backend, s.op.issuer(), &id).await;
    assert_eq!(state, oidc_logout::index::SessionState::Ended);
    let mut replayed = Browser::new(&s.app);
    replayed.cookie = Some(cookie);
    assert_eq!(
        replayed.get("/me").await.0,
        401,
        "the old cookie must not work"
    );
}

async fn create_never_overwrites_and_secrets_stay_out_of_debug<B>(backend: B)
where
    B: SessionIndex + RecordStore + std::fmt::Debug,
{
    let s = setup(backend, |store, _| store).await;
    let mut alice = Browser::new(&s.app);
    assert_eq!(alice.get("/login?sub=alice&sid=op-1").await.0, 200);
    let cookie = alice.cookie.clone().expect("session cookie");
    let id: tower_sessions::session::Id = cookie
        .split('=')
        .nth(1)
        .unwrap_or_default()
        .parse()
        .expect("id");
    let mut record = s.store.load(&id).await.expect("load").expect("live");
    record.data.remove(LOGIN_KEY);
    s.store.create(&mut record).await.expect("create");
    assert_ne!(
        record.id, id,
        "create must pick another id instead of overwriting"
    );
    assert_eq!(alice.get("/me").await, (200, "alice op-1".into()));
    let login = Login {
        issuer: "i".into(),
        sub: "s".into(),
        client_id: None,
        sid: None,
        auth_time: 0,
        logged_in_at: 0,
        id_token: Some(TokenSecret::new("id-token-secret")),
        refresh_token: Some(TokenSecret::new("refresh-secret")),
        access_token: None,
    };
    let printed = format!("{login:?}");
    assert!(!printed.contains("secret"), "{printed}");
}

async fn issuer_policy_limits_idle_and_absolute_lifetime<B>(backend: B)
where
    B: SessionIndex + RecordStore + std::fmt::Debug,
{
    let s = setup(backend, |store, issuer| {
        store.with_policy(
            issuer,
            SessionPolicy::default()
                .with_idle_timeout(Duration::from_millis(1500))
                .with_absolute_lifetime(Duration::from_secs(4)),
        )
    })
    .await;
    let mut idle = Browser::new(&s.app);
    let mut busy = Browser::new(&s.app);
    assert_eq!(idle.get("/login?sub=alice&sid=op-1").await.0, 200);
    assert_eq!(busy.get("/login?sub=bob&sid=op-2").await.0, 200);
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(busy.get("/count").await.0, 200);
    }
    assert_eq!(idle.get("/me").await.0, 401, "idle longer than 1.5 s");
    assert_eq!(
        busy.get("/me").await.0,
        200,
        "active, within the absolute lifetime"
    );
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        busy.get("/count").await;
    }
    assert_eq!(
        busy.get("/me").await.0,
        401,
        "past the 4 s absolute lifetime (whole seconds)"
    );
}

both_backends!(
    back_channel_logout_ends_the_app_session,
    an_ended_session_is_never_saved_back,
    the_apps_own_logout_ends_the_index_entry,
    create_never_overwrites_and_secrets_stay_out_of_debug,
    issuer_policy_limits_idle_and_absolute_lifetime,
);
