//! The session index contract, run against both backends: Redis (a real redis-server) and memory.

#[macro_use]
mod common;

use std::time::Duration;

use common::{RedisServer, now};
use oidc_logout::index::{
    IndexSettings, Logout, LogoutOutcome, RecordStore, RedisIndex, Registration, SessionIndex,
    SessionRecord, SessionState, StoreError, Target,
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
        customer: None,
    }
}

fn logout<'a>(target: Target<'a>, issued_at: u64, jti: Option<&'static str>) -> Logout<'a> {
    Logout {
        issuer: ISS,
        target,
        issued_at,
        jti: jti.map(|j| (j, (now() + 60) * 1000)),
        deny: None,
        sid_logout: Default::default(),
    }
}

async fn registered<S: SessionIndex>(s: &S, r: &SessionRecord) {
    assert_eq!(
        s.register(r).await.expect("register"),
        Registration::Registered,
        "{r:?}"
    );
}

async fn refused<S: SessionIndex>(s: &S, r: &SessionRecord) {
    assert_eq!(
        s.register(r).await.expect("register"),
        Registration::LoggedOut,
        "{r:?}"
    );
}

/// What the index says of the session `r` registered, asked of Redis (or memory) and of the
/// in-memory view alike: they must agree whenever the view answers.
async fn state<S: SessionIndex>(s: &S, r: &SessionRecord) -> SessionState {
    let asked = s.state(&r.key()).await.expect("state");
    if let Some(known) = s.known_state(&r.key())
        && asked != SessionState::Unknown
    {
        assert_eq!(known, asked, "the in-memory view agrees with the index");
    }
    asked
}

async fn ended_count<S: SessionIndex>(s: &S, l: Logout<'_>) -> u64 {
    match s.logout(&l).await.expect("logout") {
        LogoutOutcome::Applied { ended } => ended.len() as u64,
        other => panic!("unexpected {other:?}"),
    }
}

fn sid(sid: &str) -> Target<'_> {
    Target::Sid { sid, sub: None }
}

async fn ended_session_cannot_be_saved_back<S: SessionIndex>(s: S) {
    let t = now();
    let s1 = record("s1", "alice", Some("sid-1"), t - 10);
    registered(&s, &s1).await;
    assert_eq!(state(&s, &s1).await, SessionState::Active);
    assert_eq!(ended_count(&s, logout(sid("sid-1"), t, None)).await, 1);
    assert_eq!(state(&s, &s1).await, SessionState::Ended);
    // An in-flight request saves the session again after the logout.
    refused(&s, &s1).await;
    assert_eq!(state(&s, &s1).await, SessionState::Ended);
    // Re-registered with a new auth time, it is a new login: the logout does not cover it.
    registered(&s, &record("s1", "alice", Some("sid-9"), t + 100)).await;
}

async fn end_session_by_id_leaves_a_marker<S: SessionIndex>(s: S) {
    let t = now();
    let s1 = record("s1", "alice", Some("sid-1"), t);
    registered(&s, &s1).await;
    assert!(s.end_session(ISS, "s1", Some("alice")).await.expect("end"));
    assert!(
        !s.end_session(ISS, "s1", Some("alice"))
            .await
            .expect("end twice"),
        "second end is a no-op"
    );
    assert_eq!(state(&s, &s1).await, SessionState::Ended);
    refused(&s, &record("s1", "alice", Some("sid-1"), t + 100)).await;
    // Without the sub (an operator who knows only the id): ended all the same.
    let s2 = record("s2", "alice", None, t);
    registered(&s, &s2).await;
    assert!(!s.end_session(ISS, "s2", None).await.expect("end by id"));
    assert_eq!(state(&s, &s2).await, SessionState::Ended);
    assert!(
        s.sessions(ISS, "alice").await.expect("list").is_empty(),
        "nor is it listed"
    );
    assert!(
        !s.end_session(ISS, "never-seen", Some("alice"))
            .await
            .expect("end unknown")
    );
    refused(&s, &record("never-seen", "alice", None, t)).await;
    // The user's entries no longer hold the ended sessions.
    assert_eq!(
        ended_count(&s, logout(Target::Sub { sub: "alice" }, t + 1, None)).await,
        1,
        "only s2's stale entry, ended by id without its user, is left to end"
    );
}

async fn late_registration_is_refused_by_sid_and_sub_markers<S: SessionIndex>(s: S) {
    let t = now();
    ended_count(&s, logout(sid("sid-1"), t, None)).await;
    let late = record("s1", "alice", Some("sid-1"), t - 5);
    refused(&s, &late).await;
    assert_eq!(state(&s, &late).await, SessionState::Ended);
    registered(&s, &record("s2", "alice", Some("sid-1"), t + 1)).await;

    ended_count(&s, logout(Target::Sub { sub: "bob" }, t, None)).await;
    // auth_time equal to the logout's iat is covered.
    refused(&s, &record("s3", "bob", Some("sid-7"), t)).await;
    registered(&s, &record("s4", "bob", Some("sid-8"), t + 1)).await;

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
    refused(&s, &record("s5", "carol", Some("sid-5"), t - 1)).await;
    registered(&s, &record("s6", "dave", Some("sid-5"), t - 1)).await;
}

async fn logouts_spare_newer_sessions_and_other_users<S: SessionIndex>(s: S) {
    let t = now();
    let old = record("old", "alice", Some("sid-1"), t - 100);
    let new = record("new", "alice", Some("sid-1"), t + 50);
    let mallory = record("mallory", "mallory", Some("sid-1"), t - 100);
    for r in [&old, &new, &mallory] {
        registered(&s, r).await;
    }
    let l = logout(
        Target::Sid {
            sid: "sid-1",
            sub: Some("alice"),
        },
        t,
        Some("jti-1"),
    );
    assert_eq!(ended_count(&s, l).await, 1);
    assert_eq!(state(&s, &old).await, SessionState::Ended);
    assert_eq!(state(&s, &new).await, SessionState::Active);
    assert_eq!(state(&s, &mallory).await, SessionState::Active);
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
    registered(&s, &record("s1", "alice", Some("sid-old"), t - 10)).await;
    // The user re-authenticated in the same app session: new sid, new auth time.
    let again = record("s1", "alice", Some("sid-new"), t - 5);
    registered(&s, &again).await;
    assert_eq!(ended_count(&s, logout(sid("sid-old"), t, None)).await, 0);
    assert_eq!(state(&s, &again).await, SessionState::Active);
    assert_eq!(ended_count(&s, logout(sid("sid-new"), t, None)).await, 1);
}

async fn many_sessions_of_one_user<S: SessionIndex>(s: S) {
    let t = now();
    let sessions: Vec<SessionRecord> = (0..1000)
        .map(|i| record(&format!("s{i}"), "busy", Some(&format!("sid-{i}")), t - 1))
        .collect();
    for r in &sessions {
        registered(&s, r).await;
    }
    assert_eq!(
        ended_count(&s, logout(Target::Sub { sub: "busy" }, t, None)).await,
        1000
    );
    assert_eq!(state(&s, &sessions[999]).await, SessionState::Ended);
    // Their OP sessions are forgotten with them: a logout of one ends nothing more.
    assert_eq!(ended_count(&s, logout(sid("sid-7"), t, None)).await, 0);
}

/// A logout by sub ends the user's sessions in every OP session; a later logout by one of those
/// sids must neither report them again nor miss the sessions that are still live.
async fn a_sid_logout_after_a_sub_logout_ends_only_what_is_still_live<S: SessionIndex>(s: S) {
    let t = now();
    registered(&s, &record("a1", "alice", Some("sid-1"), t - 10)).await;
    registered(&s, &record("a2", "alice", Some("sid-2"), t - 10)).await;
    let b1 = record("b1", "bob", Some("sid-1"), t - 10);
    registered(&s, &b1).await;
    let by_sub = logout(Target::Sub { sub: "alice" }, t - 5, None);
    assert_eq!(ended_count(&s, by_sub).await, 2);
    assert_eq!(ended_count(&s, logout(sid("sid-1"), t - 4, None)).await, 1);
    assert_eq!(state(&s, &b1).await, SessionState::Ended);
    // A new login into the same OP session after the logouts, then its own logout.
    let a3 = record("a3", "alice", Some("sid-2"), t - 3);
    registered(&s, &a3).await;
    assert_eq!(ended_count(&s, logout(sid("sid-2"), t - 2, None)).await, 1);
    assert_eq!(state(&s, &a3).await, SessionState::Ended);
    assert_eq!(ended_count(&s, logout(sid("sid-2"), t - 1, None)).await, 0);
}

async fn sessions_expire<S: SessionIndex>(s: S) {
    let mut r = record("short", "alice", Some("sid-1"), now());
    r.ttl = Duration::from_secs(1);
    registered(&s, &r).await;
    assert_eq!(state(&s, &r).await, SessionState::Active);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(state(&s, &r).await, SessionState::Unknown);
    assert!(s.sessions(ISS, "alice").await.expect("list").is_empty());
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

/// What an operator lists for a user: live sessions only, with until when the index keeps each;
/// a re-registration (the application extending the session) moves that.
async fn a_users_live_sessions_are_listed<S: SessionIndex>(s: S) {
    let t = now();
    registered(&s, &record("a1", "alice", Some("op-1"), t - 20)).await;
    registered(&s, &record("a2", "alice", None, t - 10)).await;
    registered(&s, &record("b1", "bob", Some("op-1"), t - 5)).await;
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
    assert!((t + 599..=t + 602).contains(&listed[0].indexed_until));
    let mut longer = record("a1", "alice", Some("op-1"), t - 20);
    longer.ttl = Duration::from_secs(3600);
    registered(&s, &longer).await;
    let again = s.sessions(ISS, "alice").await.expect("sessions");
    assert!(
        again[0].indexed_until >= t + 3599,
        "a re-registration extends it"
    );
    assert!(s.end_session(ISS, "a2", Some("alice")).await.expect("end"));
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

/// Sessions of users whose sub lands in the same bucket, and OP sessions shared between users,
/// stay apart: a logout ends exactly what it names.
async fn users_sharing_a_bucket_stay_apart<S: SessionIndex>(s: S) {
    let t = now();
    // Subs whose encoded forms share the first hex digits of SHA-1 are rare; enough subs make
    // some share a bucket, and every one is logged out alone.
    let users: Vec<String> = (0..300).map(|i| format!("user-{i}")).collect();
    let sessions: Vec<SessionRecord> = users
        .iter()
        .map(|u| record(&format!("{u}-s"), u, Some("shared-op"), t - 1))
        .collect();
    for r in &sessions {
        registered(&s, r).await;
    }
    let target = Target::Sid {
        sid: "shared-op",
        sub: Some("user-7"),
    };
    assert_eq!(ended_count(&s, logout(target, t, None)).await, 1);
    assert_eq!(state(&s, &sessions[7]).await, SessionState::Ended);
    assert_eq!(state(&s, &sessions[8]).await, SessionState::Active);
    assert_eq!(
        ended_count(&s, logout(Target::Sub { sub: "user-9" }, t, None)).await,
        1
    );
    assert_eq!(state(&s, &sessions[10]).await, SessionState::Active);
    assert_eq!(
        ended_count(&s, logout(sid("shared-op"), t, None)).await,
        298
    );
    for r in &sessions {
        assert_eq!(state(&s, r).await, SessionState::Ended, "{}", r.session_id);
    }
}

/// A record that names no one is refused and writes nothing: an empty key would gather
/// unrelated sessions under it.
async fn records_naming_no_one_are_refused<S: SessionIndex>(s: S) {
    let t = now();
    let mut empty_sub = record("s-1", "", Some("op-1"), t - 1);
    let mut empty_sid = record("s-2", "alice", Some(""), t - 1);
    let empty_id = record("", "alice", Some("op-1"), t - 1);
    for r in [&empty_sub, &empty_sid, &empty_id] {
        assert!(
            matches!(s.register(r).await, Err(StoreError::Invalid(_))),
            "{r:?}"
        );
    }
    assert!(s.sessions(ISS, "alice").await.expect("list").is_empty());
    // The same sessions with their names are indexed as usual.
    empty_sub.sub = "bob".into();
    empty_sid.sid = None;
    registered(&s, &empty_sub).await;
    registered(&s, &empty_sid).await;
}

/// Registering a session again with a shorter lifetime never shortens its index entry: a
/// record written with the longer one may still be in the application's store.
async fn re_registration_never_shortens_an_entry<S: SessionIndex>(s: S) {
    let t = now();
    let mut r = record("s-1", "alice", Some("op-1"), t - 1);
    r.ttl = Duration::from_secs(3600);
    registered(&s, &r).await;
    r.ttl = Duration::from_secs(60);
    registered(&s, &r).await;
    let listed = s.sessions(ISS, "alice").await.expect("list");
    assert_eq!(listed.len(), 1);
    assert!(listed[0].indexed_until >= t + 3600, "{listed:?}");
}

common::both_backends!(
    records_naming_no_one_are_refused,
    re_registration_never_shortens_an_entry,
    a_users_live_sessions_are_listed,
    records_are_read_back_in_one_batch_in_order,
    ended_session_cannot_be_saved_back,
    end_session_by_id_leaves_a_marker,
    users_sharing_a_bucket_stay_apart,
    late_registration_is_refused_by_sid_and_sub_markers,
    logouts_spare_newer_sessions_and_other_users,
    re_registration_moves_the_index,
    many_sessions_of_one_user,
    a_sid_logout_after_a_sub_logout_ends_only_what_is_still_live,
    sessions_expire,
);

/// The first four hex digits of SHA-1: a bucket, computed here independently of the library.
fn bucket(encoded: &str) -> String {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        encoded.as_bytes(),
    );
    format!("{:02x}{:02x}", digest.as_ref()[0], digest.as_ref()[1])
}

async fn raw(server: &RedisServer) -> ::redis::aio::MultiplexedConnection {
    ::redis::Client::open(server.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("conn")
}

async fn all_keys(conn: &mut ::redis::aio::MultiplexedConnection) -> Vec<String> {
    let mut keys: Vec<String> = ::redis::cmd("KEYS")
        .arg("*")
        .query_async(conn)
        .await
        .expect("keys");
    keys.sort();
    keys
}

async fn hash(
    conn: &mut ::redis::aio::MultiplexedConnection,
    key: &str,
) -> std::collections::BTreeMap<String, String> {
    ::redis::cmd("HGETALL")
        .arg(key)
        .query_async(conn)
        .await
        .expect("hash")
}

const TAG: &str = "oidc-logout:v2:{https%3A%2F%2Fop.example%2Frealms%2Fa%20b}";

#[tokio::test]
async fn redis_layout_matches_the_documented_schema() {
    let server = RedisServer::start();
    let index = RedisIndex::connect(&server.url(), IndexSettings::default())
        .await
        .expect("connect");
    let mut conn = raw(&server).await;
    let t = now();
    let mut r = record("id:1", "alice|x", Some("sid 1"), 1_700_000_000);
    r.ttl = Duration::from_secs(600);
    registered(&index, &r).await;
    let (users, sids) = (
        format!("{TAG}:u:{}", bucket("alice%7Cx")),
        format!("{TAG}:i:{}", bucket("sid%201")),
    );
    let mut expected = vec![users.clone(), sids.clone()];
    expected.sort();
    assert_eq!(all_keys(&mut conn).await, expected);
    let entries = hash(&mut conn, &users).await;
    let value = &entries["alice%7Cx id%3A1"];
    let (auth, rest) = value.split_once(' ').expect("auth");
    let (until, entry_sid) = rest.split_once(' ').expect("until");
    assert_eq!(auth, "1700000000");
    let until: u64 = until.parse().expect("until");
    assert!((t + 600..=t + 602).contains(&until), "{until}");
    assert_eq!(entry_sid, "sid%201");
    assert_eq!(hash(&mut conn, &sids).await["sid%201"], "alice%7Cx");

    // The logout leaves its marker, announced on the channel, and nothing of the session.
    let mut pubsub = ::redis::Client::open(server.url())
        .expect("client")
        .get_async_pubsub()
        .await
        .expect("pubsub");
    pubsub
        .subscribe("oidc-logout:v2:ended")
        .await
        .expect("subscribe");
    let l = logout(sid("sid 1"), 1_700_000_100, None);
    assert_eq!(ended_count(&index, l).await, 1);
    let markers = hash(&mut conn, &format!("{TAG}:x")).await;
    let (iat, expires) = markers["sid:sid%201"].split_once(' ').expect("marker");
    assert_eq!(iat, "1700000100");
    let expires: u64 = expires.parse().expect("expires");
    assert!(expires >= t + 24 * 3600, "at least marker_ttl");
    let mut expected = vec![format!("{TAG}:x"), format!("{TAG}:xx")];
    expected.sort();
    assert_eq!(
        all_keys(&mut conn).await,
        expected,
        "the entry and the sid are gone"
    );
    let message = tokio::time::timeout(
        Duration::from_secs(2),
        futures_util::StreamExt::next(&mut pubsub.on_message()),
    )
    .await
    .expect("announced")
    .expect("message");
    let payload: String = message.get_payload().expect("payload");
    assert_eq!(
        payload,
        format!("https%3A%2F%2Fop.example%2Frealms%2Fa%20b sid:sid%201 1700000100 {expires}")
    );
}

/// A v1 session as a release before v2 registered it (`docs/redis-schema.md`, version 1).
async fn v1_session(
    conn: &mut ::redis::aio::MultiplexedConnection,
    id: &str,
    sub: &str,
    sid: &str,
    auth: u64,
) {
    let tag = "oidc-logout:v1:{https%3A%2F%2Fop.example%2Frealms%2Fa%20b}";
    let _: () = ::redis::pipe()
        .cmd("HSET")
        .arg(format!("{tag}:s:{id}"))
        .arg(&[("sub", sub), ("sid", sid)])
        .arg("auth")
        .arg(auth)
        .ignore()
        .cmd("PEXPIRE")
        .arg(format!("{tag}:s:{id}"))
        .arg(600_000)
        .ignore()
        .cmd("ZADD")
        .arg(format!("{tag}:sid:{sid}"))
        .arg(auth)
        .arg(id)
        .ignore()
        .cmd("ZADD")
        .arg(format!("{tag}:sub:{sub}"))
        .arg(auth)
        .arg(id)
        .ignore()
        .query_async(conn)
        .await
        .expect("v1 session");
}

/// During a move from v1 (`legacy_v1`), sessions registered by the older release are read and
/// ended like the new ones; without it, v1 is not looked at.
#[tokio::test]
async fn a_migrating_index_reads_and_ends_v1_sessions() {
    let server = RedisServer::start();
    let mut conn = raw(&server).await;
    let t = now();
    v1_session(&mut conn, "old-1", "alice", "op-1", t - 100).await;
    v1_session(&mut conn, "old-2", "alice", "op-2", t - 100).await;
    v1_session(&mut conn, "old-3", "bob", "op-3", t - 100).await;
    let plain = RedisIndex::connect(&server.url(), IndexSettings::default())
        .await
        .expect("connect");
    let migrating =
        RedisIndex::connect(&server.url(), IndexSettings::default().with_legacy_v1(true))
            .await
            .expect("connect");
    let old1 = record("old-1", "alice", Some("op-1"), t - 100);
    let old2 = record("old-2", "alice", Some("op-2"), t - 100);
    let old3 = record("old-3", "bob", Some("op-3"), t - 100);
    assert_eq!(state(&plain, &old1).await, SessionState::Unknown);
    assert_eq!(state(&migrating, &old1).await, SessionState::Active);
    let listed = migrating.sessions(ISS, "alice").await.expect("list");
    assert_eq!(listed.len(), 2, "v1 sessions are listed");
    // A new session of the same user, in v2.
    let new = record("new-1", "alice", Some("op-4"), t - 50);
    registered(&migrating, &new).await;
    assert_eq!(
        ended_count(&migrating, logout(sid("op-1"), t, None)).await,
        1
    );
    assert_eq!(state(&migrating, &old1).await, SessionState::Ended);
    // A token applied once is refused as a replay before the v1 step runs again.
    let l = logout(sid("op-9"), t, Some("jti-1"));
    assert!(matches!(
        migrating.logout(&l).await,
        Ok(LogoutOutcome::Applied { .. })
    ));
    let v1_marker = "oidc-logout:v1:{https%3A%2F%2Fop.example%2Frealms%2Fa%20b}:xsid:op-9";
    assert!(
        !hash(&mut conn, v1_marker).await.is_empty(),
        "the first delivery marked v1 too"
    );
    // Take the v1 marker away: a replay that ran the v1 step again would write it back.
    let _: () = ::redis::cmd("DEL")
        .arg(v1_marker)
        .query_async(&mut conn)
        .await
        .expect("DEL");
    assert_eq!(
        migrating.logout(&l).await.expect("replay"),
        LogoutOutcome::Replayed
    );
    assert!(hash(&mut conn, v1_marker).await.is_empty());
    let v1_hash = hash(
        &mut conn,
        "oidc-logout:v1:{https%3A%2F%2Fop.example%2Frealms%2Fa%20b}:s:old-1",
    )
    .await;
    assert!(
        v1_hash.contains_key("ended"),
        "ended in v1 too, for v1 readers"
    );
    assert_eq!(
        ended_count(&migrating, logout(Target::Sub { sub: "alice" }, t, None)).await,
        2,
        "old-2 (v1) and new-1 (v2)"
    );
    assert_eq!(state(&migrating, &old2).await, SessionState::Ended);
    assert_eq!(state(&migrating, &new).await, SessionState::Ended);
    // Ending one session by id reaches v1 as well.
    assert!(
        migrating
            .end_session(ISS, "old-3", Some("bob"))
            .await
            .expect("end")
    );
    assert_eq!(state(&migrating, &old3).await, SessionState::Ended);
    // A v1 session that a v2 application saves is registered in v2 from then on.
    v1_session(&mut conn, "old-4", "carol", "op-5", t - 10).await;
    let old4 = record("old-4", "carol", Some("op-5"), t - 10);
    registered(&migrating, &old4).await;
    assert_eq!(state(&plain, &old4).await, SessionState::Active);
}

/// A logout of a user with many OP sessions stays fast: past 16 of them, the user is left listed
/// in those OP sessions' fields, and forgotten later — by a logout of such an OP session (which
/// still ends exactly its live sessions) or by registrations' sampling.
#[tokio::test]
async fn a_user_with_many_op_sessions_is_forgotten_in_them_later() {
    let server = RedisServer::start();
    let index = RedisIndex::connect(&server.url(), IndexSettings::default())
        .await
        .expect("connect");
    let mut conn = raw(&server).await;
    let t = now();
    let sids: Vec<String> = (0..20).map(|i| format!("op-{i}")).collect();
    let sessions: Vec<SessionRecord> = sids
        .iter()
        .enumerate()
        .map(|(i, sid)| record(&format!("s-{i}"), "alice", Some(sid), t - 10))
        .collect();
    for r in &sessions {
        registered(&index, r).await;
    }
    assert_eq!(
        ended_count(&index, logout(Target::Sub { sub: "alice" }, t, None)).await,
        20
    );
    let field = format!("{TAG}:i:{}", bucket("op-3"));
    assert_eq!(
        hash(&mut conn, &field)
            .await
            .get("op-3")
            .map(String::as_str),
        Some("alice")
    );
    // Bob joins OP session op-3 (after the logout); its logout ends bob's session only, and
    // alice is no longer listed in it.
    let bob = record("bob-1", "bob", Some("op-3"), t + 1);
    registered(&index, &bob).await;
    assert_eq!(
        ended_count(&index, logout(sid("op-3"), t + 1, None)).await,
        1
    );
    assert_eq!(state(&index, &bob).await, SessionState::Ended);
    assert_eq!(hash(&mut conn, &field).await.get("op-3"), None);
    for r in &sessions {
        assert_eq!(state(&index, r).await, SessionState::Ended);
    }
}

/// While migrating, a logout's denylist marker is written in both layouts' deny hashes (API
/// instances of the older release read version 1's).
#[tokio::test]
async fn a_migrating_logout_writes_the_denylist_marker_in_both_layouts() {
    let server = RedisServer::start();
    let migrating =
        RedisIndex::connect(&server.url(), IndexSettings::default().with_legacy_v1(true))
            .await
            .expect("connect");
    let mut conn = raw(&server).await;
    let t = now();
    let mut l = logout(sid("op-7"), t, None);
    l.deny = Some(oidc_logout::index::Deny {
        issued_until: t,
        lifetime: Duration::from_secs(600),
    });
    migrating.logout(&l).await.expect("logout");
    let expected = format!("{t} {}", t + 600);
    for key in [
        "oidc-logout:v1:{https%3A%2F%2Fop.example%2Frealms%2Fa%20b}:deny",
        "oidc-logout:v2:{https%3A%2F%2Fop.example%2Frealms%2Fa%20b}:deny",
    ] {
        let deny = hash(&mut conn, key).await;
        assert_eq!(deny.get("sid:op-7"), Some(&expected), "{key}: {deny:?}");
    }
}
