//! The session index contract, run against both backends: Redis (a real redis-server) and memory.

#[macro_use]
mod common;

use std::time::Duration;

use common::{RedisServer, now};
use oidc_logout::index::{
    IndexSettings, Logout, LogoutOutcome, RecordStore, RedisIndex, Registration, SessionIndex,
    SessionRecord, SessionState, Target,
};

const ISS: &str = "https://op.example/realms/a b";

fn record(id: &str, sub: &str, sid: Option<&str>, auth_time: u64) -> SessionRecord {
    SessionRecord {
        session_id: id.into(),
        issuer: ISS.into(),
        sub: sub.into(),
        sid: sid.map(Into::into),
        auth_time,
        ttl: Duration::from_secs(600),
    }
}

fn logout<'a>(target: Target<'a>, issued_at: u64, jti: Option<&'static str>) -> Logout<'a> {
    Logout {
        issuer: ISS,
        target,
        issued_at,
        jti: jti.map(|j| (j, (now() + 60) * 1000)),
        deny: None,
    }
}

async fn registered<S: SessionIndex>(s: &S, r: SessionRecord) {
    assert_eq!(
        s.register(&r).await.expect("register"),
        Registration::Registered,
        "{r:?}"
    );
}

async fn state<S: SessionIndex>(s: &S, id: &str) -> SessionState {
    s.state(ISS, id).await.expect("state")
}

async fn ended_count<S: SessionIndex>(s: &S, l: Logout<'_>) -> u64 {
    match s.logout(&l).await.expect("logout") {
        LogoutOutcome::Applied { ended } => ended.len() as u64,
        other => panic!("unexpected {other:?}"),
    }
}

async fn ended_session_cannot_be_saved_back<S: SessionIndex>(s: S) {
    let t = now();
    registered(&s, record("s1", "alice", Some("sid-1"), t - 10)).await;
    assert_eq!(state(&s, "s1").await, SessionState::Active);
    assert_eq!(
        ended_count(
            &s,
            logout(
                Target::Sid {
                    sid: "sid-1",
                    sub: None
                },
                t,
                None
            )
        )
        .await,
        1
    );
    assert_eq!(state(&s, "s1").await, SessionState::Ended);
    // An in-flight request saves the session again after the logout.
    let again = s
        .register(&record("s1", "alice", Some("sid-1"), t - 10))
        .await
        .expect("register");
    assert_eq!(again, Registration::LoggedOut);
    assert_eq!(state(&s, "s1").await, SessionState::Ended);
    // Even re-registered with a new auth time, an ended id stays ended.
    let again = s
        .register(&record("s1", "alice", Some("sid-9"), t + 100))
        .await
        .expect("register");
    assert_eq!(again, Registration::LoggedOut);
}

async fn end_session_by_id_leaves_a_tombstone<S: SessionIndex>(s: S) {
    let t = now();
    registered(&s, record("s1", "alice", Some("sid-1"), t)).await;
    assert!(s.end_session(ISS, "s1").await.expect("end"));
    assert!(
        !s.end_session(ISS, "s1").await.expect("end twice"),
        "second end is a no-op"
    );
    assert_eq!(state(&s, "s1").await, SessionState::Ended);
    assert!(!s.end_session(ISS, "never-seen").await.expect("end unknown"));
    let late = s
        .register(&record("never-seen", "alice", None, t))
        .await
        .expect("register");
    assert_eq!(
        late,
        Registration::LoggedOut,
        "a save after the app's own logout must not revive it"
    );
    // The sub index no longer lists the ended session.
    assert_eq!(
        ended_count(&s, logout(Target::Sub { sub: "alice" }, t + 1, None)).await,
        0
    );
}

async fn late_registration_is_refused_by_sid_and_sub_markers<S: SessionIndex>(s: S) {
    let t = now();
    ended_count(
        &s,
        logout(
            Target::Sid {
                sid: "sid-1",
                sub: None,
            },
            t,
            None,
        ),
    )
    .await;
    let late = s
        .register(&record("s1", "alice", Some("sid-1"), t - 5))
        .await
        .expect("register");
    assert_eq!(
        late,
        Registration::LoggedOut,
        "login callback in flight during the sid logout"
    );
    assert_eq!(state(&s, "s1").await, SessionState::Ended);
    registered(&s, record("s2", "alice", Some("sid-1"), t + 1)).await;

    ended_count(&s, logout(Target::Sub { sub: "bob" }, t, None)).await;
    let late = s
        .register(&record("s3", "bob", Some("sid-7"), t))
        .await
        .expect("register");
    assert_eq!(
        late,
        Registration::LoggedOut,
        "auth_time equal to the logout's iat is covered"
    );
    registered(&s, record("s4", "bob", Some("sid-8"), t + 1)).await;

    // A sid+sub logout covers only that user on that sid.
    ended_count(
        &s,
        logout(
            Target::Sid {
                sid: "sid-5",
                sub: Some("carol"),
            },
            t,
            None,
        ),
    )
    .await;
    let late = s
        .register(&record("s5", "carol", Some("sid-5"), t - 1))
        .await
        .expect("register");
    assert_eq!(late, Registration::LoggedOut);
    registered(&s, record("s6", "dave", Some("sid-5"), t - 1)).await;
}

async fn logouts_spare_newer_sessions_and_other_users<S: SessionIndex>(s: S) {
    let t = now();
    registered(&s, record("old", "alice", Some("sid-1"), t - 100)).await;
    registered(&s, record("new", "alice", Some("sid-1"), t + 50)).await;
    registered(&s, record("mallory", "mallory", Some("sid-1"), t - 100)).await;
    let l = logout(
        Target::Sid {
            sid: "sid-1",
            sub: Some("alice"),
        },
        t,
        Some("jti-1"),
    );
    assert_eq!(ended_count(&s, l).await, 1);
    assert_eq!(state(&s, "old").await, SessionState::Ended);
    assert_eq!(state(&s, "new").await, SessionState::Active);
    assert_eq!(state(&s, "mallory").await, SessionState::Active);
    assert_eq!(s.logout(&l).await.expect("replay"), LogoutOutcome::Replayed);
    // Same jti string at another issuer is another token.
    let other = Logout {
        issuer: "https://other",
        ..l
    };
    assert_eq!(
        s.logout(&other).await.expect("other issuer"),
        LogoutOutcome::Applied { ended: vec![] }
    );
}

async fn re_registration_moves_the_index<S: SessionIndex>(s: S) {
    let t = now();
    registered(&s, record("s1", "alice", Some("sid-old"), t - 10)).await;
    // The user re-authenticated in the same app session: new sid, new auth time.
    registered(&s, record("s1", "alice", Some("sid-new"), t - 5)).await;
    assert_eq!(
        ended_count(
            &s,
            logout(
                Target::Sid {
                    sid: "sid-old",
                    sub: None
                },
                t,
                None
            )
        )
        .await,
        0
    );
    assert_eq!(state(&s, "s1").await, SessionState::Active);
    assert_eq!(
        ended_count(
            &s,
            logout(
                Target::Sid {
                    sid: "sid-new",
                    sub: None
                },
                t,
                None
            )
        )
        .await,
        1
    );
}

async fn many_sessions_of_one_user<S: SessionIndex>(s: S) {
    let t = now();
    for i in 0..1000 {
        registered(
            &s,
            record(&format!("s{i}"), "busy", Some(&format!("sid-{i}")), t - 1),
        )
        .await;
    }
    assert_eq!(
        ended_count(&s, logout(Target::Sub { sub: "busy" }, t, None)).await,
        1000
    );
    assert_eq!(state(&s, "s999").await, SessionState::Ended);
}

/// A logout by sub leaves its sessions in their sid sets (Redis); a later logout by one of those
/// sids must neither report them again nor miss the sessions that are still live.
async fn a_sid_logout_after_a_sub_logout_ends_only_what_is_still_live<S: SessionIndex>(s: S) {
    let t = now();
    registered(&s, record("a1", "alice", Some("sid-1"), t - 10)).await;
    registered(&s, record("a2", "alice", Some("sid-2"), t - 10)).await;
    registered(&s, record("b1", "bob", Some("sid-1"), t - 10)).await;
    let by_sub = logout(Target::Sub { sub: "alice" }, t - 5, None);
    assert_eq!(ended_count(&s, by_sub).await, 2);
    let sid = |sid| Target::Sid { sid, sub: None };
    assert_eq!(ended_count(&s, logout(sid("sid-1"), t - 4, None)).await, 1);
    assert_eq!(state(&s, "b1").await, SessionState::Ended);
    // A new login into the same OP session after the logouts, then its own logout.
    registered(&s, record("a3", "alice", Some("sid-2"), t - 3)).await;
    assert_eq!(ended_count(&s, logout(sid("sid-2"), t - 2, None)).await, 1);
    assert_eq!(state(&s, "a3").await, SessionState::Ended);
    assert_eq!(ended_count(&s, logout(sid("sid-2"), t - 1, None)).await, 0);
}

async fn sessions_expire<S: SessionIndex>(s: S) {
    let mut r = record("short", "alice", Some("sid-1"), now());
    r.ttl = Duration::from_millis(300);
    registered(&s, r).await;
    assert_eq!(state(&s, "short").await, SessionState::Active);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(state(&s, "short").await, SessionState::Unknown);
}

async fn records_are_read_back_in_one_batch_in_order<S: SessionIndex + RecordStore>(s: S) {
    let ttl = Duration::from_secs(60);
    s.put_record("a", b"first", ttl).await.expect("put");
    s.put_record("c:{x}", b"third", ttl).await.expect("put");
    let ids = ["a", "b", "c:{x}"].map(str::to_owned);
    let found = s.get_records(&ids).await.expect("get");
    assert_eq!(
        found,
        vec![Some(b"first".to_vec()), None, Some(b"third".to_vec())]
    );
    assert_eq!(
        s.get_records(&[]).await.expect("get"),
        Vec::<Option<Vec<u8>>>::new()
    );
}

/// What an operator lists for a user: live sessions only, with when each was created and last
/// saved; a re-registration (a save) keeps `created` and moves `seen`.
async fn a_users_live_sessions_are_listed<S: SessionIndex>(s: S) {
    let t = now();
    registered(&s, record("a1", "alice", Some("op-1"), t - 20)).await;
    registered(&s, record("a2", "alice", None, t - 10)).await;
    registered(&s, record("b1", "bob", Some("op-1"), t - 5)).await;
    let listed = s.sessions(ISS, "alice").await.expect("sessions");
    let ids: Vec<_> = listed.iter().map(|i| i.session_id.as_str()).collect();
    assert_eq!(
        ids,
        ["a1", "a2"],
        "oldest authentication first, other users left out"
    );
    assert_eq!(listed[0].sid.as_deref(), Some("op-1"));
    assert_eq!(listed[1].sid, None);
    assert_eq!(listed[0].auth_time, t - 20);
    assert!(listed[0].created >= t && listed[0].seen >= listed[0].created);
    let created = listed[0].created;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    registered(&s, record("a1", "alice", Some("op-1"), t - 20)).await;
    let again = s.sessions(ISS, "alice").await.expect("sessions");
    assert_eq!(again[0].created, created, "a save keeps the creation time");
    assert!(again[0].seen > created, "and moves last seen");
    assert!(s.end_session(ISS, "a2").await.expect("end"));
    assert_eq!(s.sessions(ISS, "alice").await.expect("sessions").len(), 1);
    assert_eq!(
        ended_count(&s, logout(Target::Sub { sub: "alice" }, t, None)).await,
        1
    );
    assert!(s.sessions(ISS, "alice").await.expect("sessions").is_empty());
    assert!(
        s.sessions(ISS, "nobody")
            .await
            .expect("sessions")
            .is_empty()
    );
}

both_backends!(
    a_users_live_sessions_are_listed,
    records_are_read_back_in_one_batch_in_order,
    ended_session_cannot_be_saved_back,
    end_session_by_id_leaves_a_tombstone,
    late_registration_is_refused_by_sid_and_sub_markers,
    logouts_spare_newer_sessions_and_other_users,
    re_registration_moves_the_index,
    many_sessions_of_one_user,
    a_sid_logout_after_a_sub_logout_ends_only_what_is_still_live,
    sessions_expire,
);

#[tokio::test]
async fn redis_layout_matches_the_documented_schema() {
    let server = RedisServer::start();
    let index = RedisIndex::connect(&server.url(), IndexSettings::default())
        .await
        .expect("connect");
    registered(
        &index,
        record("id:1", "alice|x", Some("sid 1"), 1_700_000_000),
    )
    .await;
    let client = ::redis::Client::open(server.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let mut keys: Vec<String> = ::redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .expect("keys");
    keys.sort();
    let tag = "oidc-logout:v1:{https%3A%2F%2Fop.example%2Frealms%2Fa%20b}";
    assert_eq!(
        keys,
        [
            format!("{tag}:s:id%3A1"),
            format!("{tag}:sid:sid%201"),
            format!("{tag}:sub:alice%7Cx")
        ]
    );
    let fields: std::collections::HashMap<String, String> = ::redis::cmd("HGETALL")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .expect("hash");
    assert_eq!(fields.get("sub").map(String::as_str), Some("alice|x"));
    assert_eq!(fields.get("sid").map(String::as_str), Some("sid 1"));
    assert_eq!(fields.get("auth").map(String::as_str), Some("1700000000"));
    let score: f64 = ::redis::cmd("ZSCORE")
        .arg(&keys[1])
        .arg("id%3A1")
        .query_async(&mut conn)
        .await
        .expect("score");
    assert!((score - 1_700_000_000.0).abs() < 1.0);
}
