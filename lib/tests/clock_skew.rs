//! One clock for the view: an application instance whose clock runs 90 s ahead of Redis's, or
//! 90 s behind, honours a logout another instance wrote at once, and stops honouring its marker
//! when Redis's clock says it expired, within a second — not 90 s early (a session a logout
//! ended would come back) nor 90 s late.
//!
//! The instance's clock is moved with the hidden `sys::skew_clock_for_tests`, which moves every
//! reading of the clock in this process (this test binary holds this one test only, so nothing
//! else runs on the moved clock); Redis and the writing instance's scripts keep the real time.

mod common;

use std::time::{Duration, Instant};

use common::RedisServer;
use oidc_logout::index::{
    IndexSettings, Logout, RedisIndex, SessionIndex, SessionKey, SessionState, Target,
};

/// Redis's time, in milliseconds.
async fn redis_ms(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(conn).await.expect("TIME");
    secs * 1000 + micros / 1000
}

async fn scenario(redis: &RedisServer, skew_ms: i64, prefix: &str) {
    oidc_logout::sys::skew_clock_for_tests(skew_ms);
    let client = redis::Client::open(redis.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let settings = IndexSettings::default()
        .with_prefix(prefix)
        .with_marker_ttl(Duration::from_secs(3));
    // The instance whose clock is off reads through its view; another writes the logout.
    let reader = RedisIndex::connect(&redis.url(), settings.clone())
        .await
        .expect("reader");
    let writer = RedisIndex::connect(&redis.url(), settings)
        .await
        .expect("writer");
    let issuer = "https://op.example";
    // A session the view is asked about; it is not registered, so that the logout's marker
    // lives marker_ttl (3 s) rather than past a registered session's end.
    let now = redis_ms(&mut conn).await / 1000;
    let key = SessionKey {
        issuer,
        session_id: "s1",
        sub: "alice",
        sid: Some("op-1"),
        auth_time: now - 10,
    };
    let until = |want: SessionState, within: Duration| {
        let reader = &reader;
        async move {
            let deadline = Instant::now() + within;
            loop {
                if reader.known_state(&key) == Some(want) {
                    return true;
                }
                if Instant::now() > deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert!(
        until(SessionState::Active, Duration::from_secs(5)).await,
        "skew {skew_ms} ms: the view follows the issuer"
    );

    let logout = Logout {
        issuer,
        target: Target::Sub { sub: "alice" },
        issued_at: redis_ms(&mut conn).await / 1000,
        jti: None,
        deny: None,
        sid_logout: Default::default(),
    };
    writer.logout(&logout).await.expect("logout");
    assert!(
        until(SessionState::Ended, Duration::from_secs(1)).await,
        "skew {skew_ms} ms: the logout is honoured at once"
    );
    let markers: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(format!("{prefix}v2:{{https%3A%2F%2Fop.example}}:x"))
        .query_async(&mut conn)
        .await
        .expect("markers");
    let expires_at: u64 = markers
        .iter()
        .find(|(field, _)| field == "sub:alice")
        .and_then(|(_, value)| value.split(' ').nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("the logout's marker: {markers:?}"));

    // Honoured while Redis's clock says the marker lives; forgotten when it expires, ±1 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    let forgotten_at = loop {
        let state = reader.known_state(&key);
        let at = redis_ms(&mut conn).await;
        if state == Some(SessionState::Active) {
            break at;
        }
        assert!(
            Instant::now() < deadline,
            "skew {skew_ms} ms: the marker expired at {expires_at} (Redis's clock) and the \
             view still honours it at {at} ms"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let expiry_ms = i128::from(expires_at) * 1000;
    let off = i128::from(forgotten_at) - expiry_ms;
    assert!(
        (-1000..=1000).contains(&off),
        "skew {skew_ms} ms: the view forgot the marker {off} ms from its expiry on Redis's clock"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_with_a_skewed_clock_agrees_with_redis_on_markers() {
    let redis = RedisServer::start();
    scenario(&redis, 90_000, "ahead:").await;
    scenario(&redis, -90_000, "behind:").await;
    scenario(&redis, 0, "right:").await;
    oidc_logout::sys::skew_clock_for_tests(0);
}
