//! The logout-aware session store in a real axum app behind tower-sessions' layer, over three
//! stores an application may already have — this crate's (Redis and memory backends),
//! tower-sessions' `MemoryStore`, and `tower-sessions-redis-store` (fred, tower-sessions 0.14) —
//! each with the index on a real redis-server: logins are indexed, back-channel logouts end
//! them, ended sessions never come back, a login after a logout survives its replay, sessions
//! from before the switch keep working, per-issuer policy holds, and a request of a logged-in
//! session costs no index command.

#[macro_use]
mod common;

use std::time::Duration;

use common::{Browser, Op, RedisServer, now, post_form, serve};
use oidc_logout::index::{
    IndexSettings, MemoryIndex, RecordStore, RedisIndex, SessionIndex, SessionState,
};
use oidc_logout::inputs::backchannel::PATH;
use oidc_logout::provider::{Provider, http_client};
use oidc_logout::session_store::{LogoutAware, OidcSessionStore, SessionPolicy};
use serde::Deserialize;

#[derive(Deserialize)]
struct LoginParams {
    sub: String,
    sid: Option<String>,
    /// The authentication time, seconds ago (default 1).
    ago: Option<u64>,
}

/// Redis command counts from `INFO commandstats`.
async fn command_counts(url: &str) -> std::collections::HashMap<String, u64> {
    let mut conn = redis::Client::open(url)
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .expect("INFO");
    info.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("cmdstat_")?;
            let (name, stats) = rest.split_once(':')?;
            let calls = stats.split(',').find_map(|s| s.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

fn delta(
    before: &std::collections::HashMap<String, u64>,
    after: &std::collections::HashMap<String, u64>,
    name: &str,
) -> u64 {
    after.get(name).copied().unwrap_or(0) - before.get(name).copied().unwrap_or(0)
}

/// The scenarios, for one tower-sessions version (`$ts`), one way to build the store over an
/// index, and one index.
macro_rules! scenarios {
    ($module:ident, $ts:ident, redis_index, $store:expr) => {
        scenarios!(@all $module, $ts, redis_index, $store, {
            #[tokio::test]
                async fn a_logged_in_request_runs_no_index_command() {
                    let s = setup(None).await;
                    let mut alice = Browser::new(&s.app);
                    assert_eq!(alice.get("/login?sub=alice&sid=op-1").await.0, 200);
                    // Let the instance's view of logouts catch up with this issuer.
                    for _ in 0..20 {
                        alice.get("/me").await;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    let before = command_counts(&s.redis.url()).await;
                    for _ in 0..20 {
                        assert_eq!(alice.get("/count").await.0, 200);
                    }
                    let after = command_counts(&s.redis.url()).await;
                    for script in ["evalsha", "eval", "hget", "hmget"] {
                        assert_eq!(
                            delta(&before, &after, script),
                            0,
                            "{script}: loads and saves of an unchanged login ask the index nothing"
                        );
                    }
                    s.logout(None, Some("op-1")).await;
                    assert_eq!(alice.get("/me").await.0, 401, "and a logout still ends it");
                }

        });
    };
    ($module:ident, $ts:ident, $index:ident, $store:expr) => {
        scenarios!(@all $module, $ts, $index, $store, {});
    };
    (@all $module:ident, $ts:ident, $index:ident, $store:expr, { $($redis_only:tt)* }) => {
        mod $module {
            use super::*;
            use axum::Router;
            use axum::extract::Query;
            use axum::http::StatusCode;
            use axum::routing::get;
            use oidc_logout::session_store::{LOGIN_KEY, Login};
            use $ts::{Session, SessionManagerLayer, SessionStore};

            /// A minimal app: `/login` records a login as an OIDC callback would, `/me` says
            /// who is logged in, `/count` keeps other session data, `/logout` ends the session.
            fn app<S: SessionStore + Clone>(store: S, issuer: String) -> Router {
                Router::new()
                    .route(
                        "/login",
                        get(move |session: Session, Query(p): Query<LoginParams>| async move {
                            let login = Login {
                                issuer: issuer.clone(),
                                sub: p.sub,
                                client_id: None,
                                sid: p.sid,
                                auth_time: now() - p.ago.unwrap_or(1),
                                logged_in_at: now(),
                                policy: None,
                                id_token: None,
                                refresh_token: None,
                                access_token: None,
                                customer: None,
                            };
                            login
                                .save_to(&session)
                                .await
                                .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
                            Ok::<_, StatusCode>("logged in")
                        }),
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
                            let n: u64 =
                                session.get("count").await.ok().flatten().unwrap_or(0) + 1;
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

            struct Setup<S, B> {
                op: Op,
                /// Kept running for the test; the Redis-only scenarios read its counters.
                #[allow(dead_code)]
                redis: RedisServer,
                index: B,
                store: S,
                app: String,
                receiver: String,
            }

            async fn setup(
                policy: Option<SessionPolicy>,
            ) -> Setup<impl SessionStore + Clone, impl SessionIndex + RecordStore + std::fmt::Debug> {
                let redis = RedisServer::start();
                let op = Op::start().await;
                let index = $index(&redis).await;
                let mut store = $store(index.clone(), redis.url()).await;
                if let Some(policy) = policy {
                    store = store.with_policy(op.issuer(), policy);
                }
                let app = serve(app(store.clone(), op.issuer().to_owned())).await;
                let provider = Provider::discover(
                    op.issuer(),
                    http_client().expect("client"),
                    common::provider_settings(),
                )
                .await
                .expect("discovery");
                let receiver =
                    common::receiver(index.clone(), provider, common::policy(op.issuer()));
                let receiver = format!("{}{PATH}", serve(receiver.into_router()).await);
                Setup {
                    op,
                    redis,
                    index,
                    store,
                    app,
                    receiver,
                }
            }

            impl<S, B> Setup<S, B> {
                /// POST a logout token; its status.
                async fn post(&self, token: &str) -> u16 {
                    post_form(
                        &reqwest::Client::new(),
                        &self.receiver,
                        &[("logout_token", token)],
                    )
                    .await
                    .status
                }

                async fn logout(&self, sub: Option<&str>, sid: Option<&str>) {
                    let token = self.op.sign(&self.op.claims(sub, sid));
                    assert_eq!(self.post(&token).await, 200);
                }
            }

            fn id_of(browser: &Browser) -> $ts::session::Id {
                browser.session_id().parse().expect("session id")
            }

            #[tokio::test]
            async fn back_channel_logout_ends_the_app_session() {
                let s = setup(None).await;
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
                assert_eq!(alice.get("/me").await.0, 401, "sid logout must end the session");
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

            #[tokio::test]
            async fn an_ended_session_is_never_saved_back() {
                let s = setup(None).await;
                let mut alice = Browser::new(&s.app);
                assert_eq!(alice.get("/login?sub=alice&sid=op-1").await.0, 200);
                let id = id_of(&alice);
                // An in-flight request loaded the session before the logout and saves it after.
                let in_flight = s.store.load(&id).await.expect("load").expect("live session");
                s.logout(None, Some("op-1")).await;
                s.store.save(&in_flight).await.expect("save");
                assert!(
                    s.store.load(&id).await.expect("load").is_none(),
                    "the logout must win"
                );
                assert_eq!(alice.get("/me").await.0, 401);
                // An in-flight login callback that registers after the logout is refused too.
                let mut late = in_flight.clone();
                late.id = $ts::session::Id::default();
                late.data.remove(oidc_logout::session_store::INDEXED_KEY);
                s.store.create(&mut late).await.expect("create");
                assert!(s.store.load(&late.id).await.expect("load").is_none());
            }

            #[tokio::test]
            async fn a_login_after_a_logout_survives_its_replay() {
                let s = setup(None).await;
                let mut alice = Browser::new(&s.app);
                assert_eq!(alice.get("/login?sub=alice&sid=op-1&ago=30").await.0, 200);
                let mut claims = s.op.claims(None, Some("op-1"));
                claims["iat"] = (now() - 20).into();
                let token = s.op.sign(&claims);
                assert_eq!(s.post(&token).await, 200);
                assert_eq!(alice.get("/me").await.0, 401);
                // The user logs in again into the same OP session (authenticated after the
                // logout); the same token is delivered again, and a copy with another jti.
                assert_eq!(alice.get("/login?sub=alice&sid=op-1&ago=10").await.0, 200);
                assert_eq!(s.post(&token).await, 400, "a replay is refused");
                claims["jti"] = "another-delivery".into();
                assert_eq!(s.post(&s.op.sign(&claims)).await, 200);
                assert_eq!(
                    alice.get("/me").await,
                    (200, "alice op-1".into()),
                    "the new login survives"
                );
            }

            #[tokio::test]
            async fn the_apps_own_logout_ends_the_index_entry() {
                let s = setup(None).await;
                let mut alice = Browser::new(&s.app);
                assert_eq!(alice.get("/login?sub=alice&sid=op-1").await.0, 200);
                let cookie = alice.cookie.clone().expect("session cookie");
                let id = alice.session_id();
                let in_flight = s.store.load(&id_of(&alice)).await.expect("load").expect("live");
                assert_eq!(alice.get("/logout").await.0, 200);
                let key = oidc_logout::index::SessionKey {
                    issuer: s.op.issuer(),
                    session_id: &id,
                    sub: "alice",
                    sid: Some("op-1"),
                    auth_time: now() - 1,
                };
                assert_eq!(s.index.state(&key).await.expect("state"), SessionState::Ended);
                // A request in flight during the logout saves the session back: still ended.
                // (tower-sessions-redis-store refuses to save a session that no longer exists,
                // with an error; the others write it: either way it must not come back.)
                let _ = s.store.save(&in_flight).await;
                let mut replayed = Browser::new(&s.app);
                replayed.cookie = Some(cookie);
                assert_eq!(replayed.get("/me").await.0, 401, "the old cookie must not work");
            }

            #[tokio::test]
            async fn create_never_overwrites() {
                let s = setup(None).await;
                let mut alice = Browser::new(&s.app);
                assert_eq!(alice.get("/login?sub=alice&sid=op-1").await.0, 200);
                let id = id_of(&alice);
                let mut record = s.store.load(&id).await.expect("load").expect("live");
                record.data.remove(LOGIN_KEY);
                // The store picks another id, or (tower-sessions-redis-store, which cannot
                // read Redis's answer to a refused SET NX) fails: never overwrites.
                if s.store.create(&mut record).await.is_ok() {
                    assert_ne!(record.id, id, "create must pick another id instead of overwriting");
                }
                assert_eq!(alice.get("/me").await, (200, "alice op-1".into()));
            }

            #[tokio::test]
            async fn sessions_from_before_the_switch_keep_working_until_a_login() {
                let s = setup(None).await;
                // A session the application made before it wrapped its store: its own data,
                // no Login. Saved through the wrapper (which passes it through untouched).
                let mut old = $ts::session::Record {
                    id: $ts::session::Id::default(),
                    data: [("user".to_owned(), serde_json::json!("alice"))].into(),
                    expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
                };
                s.store.create(&mut old).await.expect("create");
                let mut browser = Browser::new(&s.app);
                browser.cookie = Some(format!("id={}", old.id));
                assert_eq!(browser.get("/count").await, (200, "1".into()), "it loads");
                s.logout(Some("alice"), None).await;
                assert_eq!(
                    browser.get("/count").await,
                    (200, "2".into()),
                    "a logout cannot reach it: nothing says whose it is"
                );
                let loaded = s.store.load(&old.id).await.expect("load").expect("live");
                assert_eq!(loaded.data["user"], "alice", "its data is the application's");
                // The user logs in (after the logout): from then on the session is
                // logout-aware.
                tokio::time::sleep(Duration::from_millis(1100)).await;
                assert_eq!(browser.get("/login?sub=alice&sid=op-9&ago=0").await.0, 200);
                assert_eq!(browser.get("/count").await, (200, "3".into()));
                s.logout(Some("alice"), None).await;
                assert_eq!(browser.get("/me").await.0, 401);
            }

            #[tokio::test]
            async fn issuer_policy_limits_idle_and_absolute_lifetime() {
                // Stores keep expiries in whole seconds (tower-sessions-redis-store truncates):
                // the timings leave a second of room.
                let policy = SessionPolicy::default()
                    .with_idle_timeout(Duration::from_secs(2))
                    .with_absolute_lifetime(Duration::from_secs(5));
                let s = setup(Some(policy)).await;
                let mut idle = Browser::new(&s.app);
                let mut busy = Browser::new(&s.app);
                assert_eq!(idle.get("/login?sub=alice&sid=op-1").await.0, 200);
                assert_eq!(busy.get("/login?sub=bob&sid=op-2").await.0, 200);
                for _ in 0..6 {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    assert_eq!(busy.get("/count").await.0, 200);
                }
                assert_eq!(idle.get("/me").await.0, 401, "idle longer than 2 s");
                assert_eq!(busy.get("/me").await.0, 200, "active, within the absolute lifetime");
                for _ in 0..3 {
                    tokio::time::sleep(Duration::from_millis(1000)).await;
                    busy.get("/count").await;
                }
                assert_eq!(
                    busy.get("/me").await.0,
                    401,
                    "past the 5 s absolute lifetime"
                );
            }

            $($redis_only)*
        }
    };
}

async fn redis_index(redis: &RedisServer) -> RedisIndex {
    common::index_on(redis).await
}

async fn memory_index(_redis: &RedisServer) -> MemoryIndex {
    MemoryIndex::new(IndexSettings::default())
}

// This crate's own store, on Redis and on the memory backend.
scenarios!(
    own_store_on_redis,
    tower_sessions,
    redis_index,
    |index: RedisIndex, _url: String| async move { OidcSessionStore::new(index) }
);
scenarios!(
    own_store_in_memory,
    tower_sessions,
    memory_index,
    |index: MemoryIndex, _url: String| async move { OidcSessionStore::new(index) }
);
// tower-sessions' MemoryStore, with the index in Redis.
scenarios!(
    memory_store,
    tower_sessions,
    redis_index,
    |index: RedisIndex, _url: String| async move {
        LogoutAware::wrap(tower_sessions::MemoryStore::default(), index)
    }
);
// tower-sessions-redis-store 0.16 (fred, tower-sessions 0.14), on the same Redis as the index.
scenarios!(
    redis_store,
    tower_sessions_014,
    redis_index,
    |index: RedisIndex, url: String| async move {
        use ::tower_sessions_redis_store::fred::prelude::{ClientLike as _, Config, Pool};
        let config = Config::from_url(&url).expect("fred config");
        let pool = Pool::new(config, None, None, None, 2).expect("fred pool");
        pool.init().await.expect("fred connects");
        LogoutAware::wrap(::tower_sessions_redis_store::RedisStore::new(pool), index)
    }
);

/// `update_in` carries new tokens of the same login; a different login must go through
/// `save_to`, which rotates the session id (against fixation) and registers it afresh.
#[tokio::test]
async fn update_in_refuses_another_login() {
    use oidc_logout::session_store::{Login, TokenSecret};
    let session = tower_sessions::Session::new(
        None,
        std::sync::Arc::new(tower_sessions::MemoryStore::default()),
        None,
    );
    let login = Login {
        issuer: "https://op.example".into(),
        sub: "alice".into(),
        client_id: None,
        sid: Some("op-1".into()),
        auth_time: now() - 60,
        logged_in_at: now() - 60,
        policy: None,
        id_token: None,
        refresh_token: Some(TokenSecret::new("r1")),
        access_token: None,
        customer: None,
    };
    assert!(
        login.update_in(&session).await.is_err(),
        "no login to update yet"
    );
    login.save_to(&session).await.expect("a new login");
    let mut refreshed = login.clone();
    refreshed.refresh_token = Some(TokenSecret::new("r2"));
    refreshed
        .update_in(&session)
        .await
        .expect("same login, new tokens");
    let kept = Login::from_session(&session)
        .await
        .expect("read")
        .expect("login");
    assert_eq!(
        kept.refresh_token.map(|t| t.expose().to_owned()).as_deref(),
        Some("r2")
    );
    for other in [
        Login {
            sub: "mallory".into(),
            ..login.clone()
        },
        Login {
            sid: Some("op-2".into()),
            ..login.clone()
        },
        Login {
            auth_time: login.auth_time + 1,
            ..login.clone()
        },
        Login {
            issuer: "https://other.example".into(),
            ..login.clone()
        },
    ] {
        assert!(other.update_in(&session).await.is_err(), "{other:?}");
    }
    let kept = Login::from_session(&session)
        .await
        .expect("read")
        .expect("login");
    assert_eq!(kept.sub, "alice", "a refused update changes nothing");
}

/// tower-sessions creates the session that follows a `flush` under the id of the one it
/// deleted; the wrapper gives it a fresh one, so that an ended session's id (and a cookie stolen
/// with it) never names another session.
#[tokio::test]
async fn a_session_after_a_flush_gets_a_fresh_id() {
    use std::sync::Arc;
    use tower_sessions::{MemoryStore, Session};
    let index = oidc_logout::MemoryIndex::new(Default::default());
    let store = Arc::new(oidc_logout::LogoutAware::wrap(
        MemoryStore::default(),
        index,
    ));
    let session = Session::new(None, store.clone(), None);
    session.insert("n", 1).await.expect("insert");
    session.save().await.expect("save");
    let first = session.id().expect("an id");
    session.flush().await.expect("flush");
    session
        .insert("state", "after the logout")
        .await
        .expect("insert");
    session.save().await.expect("save");
    let second = session.id().expect("an id");
    assert_ne!(first, second, "the ended session's id was reused");
    let again = Session::new(Some(first), store, None);
    assert_eq!(again.get::<String>("state").await.expect("load"), None);
}
