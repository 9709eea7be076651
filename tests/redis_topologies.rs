//! The receiver, the session store and the access-token denylist on Redis as production runs
//! it, each started here as plain processes: a 3-primary Cluster, a primary and replica behind
//! a Sentinel (with a failover), and TLS with an ACL user through the binary.

mod common;

use std::time::{Duration, Instant};

use common::topologies::{Cluster, Sentinel, TlsRedis};
use common::{CLIENT, Op, command, endpoint, now, policy, post_form, serve, start};
use oidc_logout::denylist::sync::{self, DenylistSettings};
use oidc_logout::denylist::{Denylist, Refusal, TokenFacts};
use oidc_logout::index::{
    IndexSettings, RecordStore, RedisIndex, RedisTarget, SessionRecord, SessionState,
};
use oidc_logout::inputs::backchannel::{PATH, Receiver};
use oidc_logout::provider::{Provider, http_client};
use oidc_logout::session_store::{Login, OidcSessionStore};
use secrecy::SecretString;
use tower_sessions::SessionStore;
use tower_sessions::session::Id;

/// Two issuers (their keys hash to different slots), one receiver for both, one denylist.
struct Setup {
    a: Op,
    b: Op,
    index: RedisIndex,
    store: OidcSessionStore<RedisIndex>,
    url: String,
    denylist: Denylist,
}

async fn setup(target: &RedisTarget) -> Setup {
    let (a, b) = (Op::start().await, Op::start().await);
    let index = RedisIndex::connect_to(target, IndexSettings::default())
        .await
        .expect("connect");
    let core = oidc_logout::Core::builder(index.clone())
        .issuer(a.issuer())
        .issuer(b.issuer())
        .build();
    let mut receiver = Receiver::new(core);
    for op in [&a, &b] {
        let provider = Provider::discover(
            op.issuer(),
            http_client().expect("client"),
            common::provider_settings(),
        )
        .await
        .expect("discovery");
        receiver = receiver.with_issuer(provider, policy(op.issuer()));
    }
    let url = format!("{}{PATH}", serve(receiver.into_router()).await);
    let mut settings = DenylistSettings::new(
        "redis://unused/",
        vec![a.issuer().to_owned(), b.issuer().to_owned()],
    );
    settings.redis = target.clone();
    let denylist = sync::start(settings).await.expect("denylist");
    Setup {
        store: OidcSessionStore::new(index.clone()),
        a,
        b,
        index,
        url,
        denylist,
    }
}

impl Setup {
    /// An application session through the tower-sessions store; returns its id.
    async fn app_login(&self, op: &Op, sub: &str, sid: &str) -> Id {
        let login = Login {
            issuer: op.issuer().to_owned(),
            sub: sub.to_owned(),
            client_id: None,
            sid: Some(sid.to_owned()),
            auth_time: now() - 5,
            logged_in_at: now() - 5,
            policy: None,
            id_token: None,
            refresh_token: None,
            access_token: None,
            customer: None,
        };
        let id = common::store_login(&self.store, &login).await;
        id.parse().expect("a session id")
    }

    async fn loaded(&self, id: &Id) -> bool {
        self.store.load(id).await.expect("load").is_some()
    }

    async fn logout(&self, op: &Op, sub: Option<&str>, sid: Option<&str>) -> (u16, String) {
        let token = op.sign(&op.claims(sub, sid));
        let reply = post_form(
            &reqwest::Client::new(),
            &self.url,
            &[("logout_token", &token)],
        )
        .await;
        (reply.status, reply.body)
    }

    /// Wait (up to 5 s) until the denylist refuses a token of `op` naming `sub`/`sid`.
    async fn refused(&self, op: &Op, sub: Option<&str>, sid: Option<&str>) -> bool {
        let facts = TokenFacts {
            issuer: op.issuer(),
            sub,
            sid,
            jti: None,
            issued_at: now() - 10,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if matches!(
                self.denylist.check(&facts),
                Err(Refusal::SessionEnded | Refusal::UserRevoked)
            ) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Logout by sid and by sub, the replay cache, the session store (records on other slots than
/// the index) and the denylist.
async fn everything_works_on(target: &RedisTarget) {
    let s = setup(target).await;
    let alice_1 = s.app_login(&s.a, "alice", "op-sid-1").await;
    let alice_2 = s.app_login(&s.a, "alice", "op-sid-2").await;
    let bob = [
        s.app_login(&s.b, "bob", "b-1").await,
        s.app_login(&s.b, "bob", "b-2").await,
        s.app_login(&s.b, "bob", "b-3").await,
    ];
    let carol = s.app_login(&s.b, "carol", "c-1").await;
    let ids: Vec<String> = [&alice_1, &alice_2, &carol]
        .iter()
        .map(|id| id.to_string())
        .chain(["never-created".to_owned()])
        .collect();
    let found = s
        .index
        .get_records(&ids)
        .await
        .expect("records on several slots");
    assert_eq!(
        found.iter().map(Option::is_some).collect::<Vec<_>>(),
        [true, true, true, false]
    );

    let token = s.a.sign(&s.a.claims(None, Some("op-sid-1")));
    let http = reqwest::Client::new();
    let reply = post_form(&http, &s.url, &[("logout_token", &token)]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(!s.loaded(&alice_1).await, "logged out by sid");
    assert!(
        s.loaded(&alice_2).await,
        "another OP session of the same user"
    );
    let replay = post_form(&http, &s.url, &[("logout_token", &token)]).await;
    assert_eq!(replay.status, 400, "replay: {}", replay.body);
    assert!(replay.body.contains("already"), "{}", replay.body);
    assert!(s.refused(&s.a, Some("alice"), Some("op-sid-1")).await);
    assert!(
        s.denylist
            .check(&TokenFacts {
                issuer: s.a.issuer(),
                sub: Some("alice"),
                sid: Some("op-sid-2"),
                jti: None,
                issued_at: now() - 10,
            })
            .is_ok(),
        "the other session's tokens still pass"
    );

    assert_eq!(s.logout(&s.b, Some("bob"), None).await.0, 200);
    for id in &bob {
        assert!(!s.loaded(id).await, "every session of bob ended");
    }
    assert!(s.loaded(&carol).await, "another user of the same issuer");
    assert!(s.refused(&s.b, Some("bob"), None).await);

    // A login after the logout is live, and a session registered late is born ended.
    let late = SessionRecord {
        session_id: "late".into(),
        issuer: s.b.issuer().into(),
        sub: "bob".into(),
        sid: Some("b-9".into()),
        auth_time: now() - 60,
        ttl: Duration::from_secs(600),
        customer: None,
    };
    common::register(&s.index, &late).await;
    assert_eq!(
        common::state_of(&s.index, s.b.issuer(), "late").await,
        SessionState::Ended
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_of_three_primaries() {
    let cluster = Cluster::start();
    let target = RedisTarget::parse("cluster", &cluster.urls(), None).expect("target");
    everything_works_on(&target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_and_a_failover() {
    let mut sentinel = Sentinel::start();
    let target = RedisTarget::Sentinel {
        sentinels: vec![SecretString::from(sentinel.url())],
        master: "mymaster".into(),
    };
    everything_works_on(&target).await;

    // The primary dies; the sentinel promotes the replica; the receiver follows it.
    let s = setup(&target).await;
    let before = s.app_login(&s.a, "dave", "d-1").await;
    sentinel.fail_over();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut answers = Vec::new();
    loop {
        let (status, body) = s.logout(&s.a, None, Some("d-1")).await;
        answers.push(status);
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "a failover is a retryable outage: {body}");
        assert!(Instant::now() < deadline, "no recovery: {answers:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!s.loaded(&before).await, "ended on the new primary");
    let after = s.app_login(&s.a, "dave", "d-2").await;
    assert!(s.loaded(&after).await);
    assert!(
        s.refused(&s.a, None, Some("d-1")).await,
        "the denylist follows too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_an_acl_user_through_the_binary() {
    let redis = TlsRedis::start();
    let op = Op::start().await;
    let ca = redis.ca.display().to_string();
    let tls_url = redis.tls_url();
    let env = [
        ("OIDC_LOGOUT_ISSUER", op.issuer()),
        ("OIDC_LOGOUT_CLIENT_ID", CLIENT),
        ("OIDC_LOGOUT_REDIS_URL", tls_url.as_str()),
        ("OIDC_LOGOUT_LISTEN", "127.0.0.1:0"),
        ("SSL_CERT_FILE", ca.as_str()),
    ];
    let running = start(&["serve"], &env);
    let endpoint = endpoint(&running);
    let index = RedisIndex::connect(&redis.plain_url(), IndexSettings::default())
        .await
        .expect("plain connection for the test's own setup");
    common::register(
        &index,
        &SessionRecord {
            session_id: "tls-session".into(),
            issuer: op.issuer().into(),
            sub: "erin".into(),
            sid: Some("e-1".into()),
            auth_time: now() - 5,
            ttl: Duration::from_secs(600),
            customer: None,
        },
    )
    .await;
    let token = op.sign(&op.claims(None, Some("e-1")));
    let reply = post_form(
        &reqwest::Client::new(),
        &endpoint,
        &[("logout_token", &token)],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        common::state_of(&index, op.issuer(), "tls-session").await,
        SessionState::Ended
    );
    drop(running);

    // The certificate is checked: another CA is refused, and so is a wrong password, each
    // with a message that names Redis and hides the password.
    let other = redis.other_ca().display().to_string();
    let mut wrong_ca = env;
    wrong_ca[4] = ("SSL_CERT_FILE", other.as_str());
    let output = command(&["serve"], &wrong_ca).output().expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("cannot connect to Redis"), "{stderr}");
    assert!(!stderr.contains(TlsRedis::PASSWORD), "{stderr}");
    let bad_password = tls_url.replace(TlsRedis::PASSWORD, "wrong-password");
    let mut wrong_password = env;
    wrong_password[2] = ("OIDC_LOGOUT_REDIS_URL", bad_password.as_str());
    let output = command(&["serve"], &wrong_password).output().expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("cannot connect to Redis"), "{stderr}");
    assert!(!stderr.contains("wrong-password"), "{stderr}");
}
