//! An application instance's in-memory view of logouts (`SessionIndex::known_state` on Redis):
//! it learns a logout written by another process within moments, and when it cannot be sure it
//! is current — its subscription dropped, Redis went away — it stops answering within its
//! staleness bound, so that readers ask Redis (and fail closed) instead of trusting it.

mod common;

use std::time::{Duration, Instant};

use common::{RedisServer, now};
use oidc_logout::index::{
    IndexSettings, Logout, RedisIndex, SessionIndex, SessionRecord, SessionState, Target,
};

const ISS: &str = "https://op.example";

fn record(id: &str, sub: &str, sid: &str) -> SessionRecord {
    SessionRecord {
        session_id: id.into(),
        issuer: ISS.into(),
        sub: sub.into(),
        sid: Some(sid.into()),
        auth_time: now() - 10,
        ttl: Duration::from_secs(600),
        customer: None,
    }
}

async fn instance(redis: &RedisServer, staleness: Duration) -> RedisIndex {
    RedisIndex::connect(
        &redis.url(),
        IndexSettings::default().with_max_staleness(staleness),
    )
    .await
    .expect("connect")
}

/// Ask until the view answers something other than `skip`, for at most `limit`.
async fn known_within(
    index: &RedisIndex,
    session: &SessionRecord,
    limit: Duration,
    done: impl Fn(Option<SessionState>) -> bool,
) -> Option<SessionState> {
    let start = Instant::now();
    loop {
        let known = index.known_state(&session.key());
        if done(known) || start.elapsed() > limit {
            return known;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn end_sid(receiver: &RedisIndex, sid: &str) {
    receiver
        .logout(&Logout {
            issuer: ISS,
            target: Target::Sid { sid, sub: None },
            issued_at: now(),
            jti: None,
            deny: None,
            sid_logout: Default::default(),
        })
        .await
        .expect("logout");
}

#[tokio::test]
async fn another_instance_learns_a_logout_from_memory() {
    let redis = RedisServer::start();
    let receiver = instance(&redis, Duration::from_secs(1)).await;
    let app = instance(&redis, Duration::from_secs(1)).await;
    let alice = record("s-alice", "alice", "op-1");
    let bob = record("s-bob", "bob", "op-2");
    for r in [&alice, &bob] {
        app.register(r).await.expect("register");
    }
    assert_eq!(
        known_within(&app, &alice, Duration::from_secs(3), |k| k.is_some()).await,
        Some(SessionState::Active),
        "the view follows the issuer after the first question"
    );
    end_sid(&receiver, "op-1").await;
    assert_eq!(
        known_within(&app, &alice, Duration::from_secs(2), |k| k
            == Some(SessionState::Ended))
        .await,
        Some(SessionState::Ended)
    );
    assert_eq!(app.known_state(&bob.key()), Some(SessionState::Active));
    // Ending a session by id reaches the view too.
    receiver
        .end_session(ISS, "s-bob", Some("bob"))
        .await
        .expect("end");
    assert_eq!(
        known_within(&app, &bob, Duration::from_secs(2), |k| k
            == Some(SessionState::Ended))
        .await,
        Some(SessionState::Ended)
    );
}

#[tokio::test]
async fn a_view_that_lost_its_subscription_stops_answering_then_catches_up() {
    let redis = RedisServer::start();
    let staleness = Duration::from_millis(300);
    let receiver = instance(&redis, staleness).await;
    let app = instance(&redis, staleness).await;
    let alice = record("s-alice", "alice", "op-1");
    app.register(&alice).await.expect("register");
    assert_eq!(
        known_within(&app, &alice, Duration::from_secs(3), |k| k.is_some()).await,
        Some(SessionState::Active)
    );
    // Redis drops every subscriber; the logout is published while nobody listens.
    let mut admin = redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut admin)
        .await
        .expect("kill subscribers");
    end_sid(&receiver, "op-1").await;
    // Within its staleness bound the view no longer says "active": it says nothing (ask
    // Redis) or, back in sync after reading the markers again, "ended".
    tokio::time::sleep(staleness + Duration::from_millis(100)).await;
    assert_ne!(app.known_state(&alice.key()), Some(SessionState::Active));
    assert_eq!(
        app.state(&alice.key()).await.expect("state"),
        SessionState::Ended,
        "Redis, asked instead, knows"
    );
    assert_eq!(
        known_within(&app, &alice, Duration::from_secs(3), |k| k
            == Some(SessionState::Ended))
        .await,
        Some(SessionState::Ended),
        "after resubscribing it read the marker it missed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_without_redis_stops_answering() {
    let mut redis = RedisServer::start();
    let staleness = Duration::from_millis(300);
    let app = instance(&redis, staleness).await;
    let alice = record("s-alice", "alice", "op-1");
    app.register(&alice).await.expect("register");
    assert_eq!(
        known_within(&app, &alice, Duration::from_secs(3), |k| k.is_some()).await,
        Some(SessionState::Active)
    );
    tokio::task::block_in_place(|| redis.stop());
    tokio::time::sleep(staleness * 2 + Duration::from_millis(200)).await;
    assert_eq!(
        app.known_state(&alice.key()),
        None,
        "no answer from memory once it cannot confirm it is current"
    );
    assert!(
        app.state(&alice.key()).await.is_err(),
        "and asking Redis fails: the store fails closed"
    );
}

/// With no logouts at all, the view stays current past its bound: its heartbeats, published
/// where the issuer's markers are, come back and move its freshness on.
#[tokio::test]
async fn an_idle_view_stays_current_through_its_heartbeats() {
    let redis = RedisServer::start();
    let staleness = Duration::from_millis(300);
    let app = instance(&redis, staleness).await;
    let alice = record("s-alice", "alice", "op-1");
    app.register(&alice).await.expect("register");
    assert_eq!(
        known_within(&app, &alice, Duration::from_secs(3), |k| k.is_some()).await,
        Some(SessionState::Active)
    );
    for _ in 0..5 {
        tokio::time::sleep(staleness).await;
        assert_eq!(app.known_state(&alice.key()), Some(SessionState::Active));
    }
}

/// The instance that applies a logout sees it in its own view at once, before the message
/// comes back from Redis.
#[tokio::test]
async fn an_instance_reads_its_own_logouts_at_once() {
    let redis = RedisServer::start();
    let app = instance(&redis, Duration::from_secs(1)).await;
    let alice = record("s-alice", "alice", "op-1");
    let bob = record("s-bob", "bob", "op-2");
    for r in [&alice, &bob] {
        app.register(r).await.expect("register");
    }
    assert_eq!(
        known_within(&app, &alice, Duration::from_secs(3), |k| k.is_some()).await,
        Some(SessionState::Active)
    );
    end_sid(&app, "op-1").await;
    assert_eq!(app.known_state(&alice.key()), Some(SessionState::Ended));
    app.end_session(ISS, "s-bob", Some("bob"))
        .await
        .expect("end");
    assert_eq!(app.known_state(&bob.key()), Some(SessionState::Ended));
}
