//! What a logout naming an OP session ends, per the issuer's `sid_logout` setting, through the
//! receiver over HTTP with signed tokens, on a real Redis (and the memory index):
//!
//! - `session` (the spec's default): that OP session's sessions only;
//! - `session_and_sidless`: also the user's sessions registered without a `sid` (an OP that left
//!   it out of an ID token), which a logout naming the `sid` would otherwise pass by;
//! - `user`: every session of the user.
//!
//! Another user is never touched, a late registration the logout covers is refused, and the
//! after-logout hook gets the verified token's claims.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{CLIENT, Op, RedisServer, index_on, now, post_form, provider_settings, serve};
use oidc_logout::core::{AfterLogout, Ended, SidLogout};
use oidc_logout::index::{
    IndexSettings, MemoryIndex, RecordStore, Registration, SessionIndex, SessionRecord,
    SessionState,
};
use oidc_logout::inputs::backchannel::{PATH, Receiver};
use oidc_logout::{Core, Provider};
use serde_json::Value;

/// The claims each hook call carried, and the sessions it ended.
#[derive(Default)]
struct Hook(Mutex<Vec<(Vec<String>, Option<Value>)>>);

impl AfterLogout for Hook {
    fn sessions_ended(&self, ended: &Ended<'_>) {
        let claims = ended.token.map(|t| Value::Object(t.claims.clone()));
        if let Ok(mut calls) = self.0.lock() {
            calls.push((ended.session_ids.to_vec(), claims));
        }
    }
}

struct World<S> {
    op: Op,
    index: S,
    url: String,
    hook: Arc<Hook>,
}

async fn world<S: SessionIndex + RecordStore>(index: S, mode: SidLogout) -> World<S> {
    let op = Op::start().await;
    let provider = Provider::discover(
        op.issuer(),
        oidc_logout::provider::http_client().expect("client"),
        provider_settings(),
    )
    .await
    .expect("discovery");
    let hook = Arc::new(Hook::default());
    let core = Core::builder(index.clone())
        .issuer(op.issuer())
        .sid_logout(op.issuer(), mode)
        .after_logout(Arc::clone(&hook) as Arc<dyn AfterLogout>)
        .build();
    let receiver = Receiver::new(core).with_issuer(provider, common::policy(op.issuer()));
    let url = format!("{}{PATH}", serve(receiver.into_router()).await);
    World {
        op,
        index,
        url,
        hook,
    }
}

impl<S: SessionIndex + RecordStore> World<S> {
    async fn login(&self, id: &str, sub: &str, sid: Option<&str>, auth_time: u64) -> Registration {
        let record = SessionRecord {
            session_id: id.into(),
            issuer: self.op.issuer().into(),
            sub: sub.into(),
            sid: sid.map(str::to_owned),
            auth_time,
            ttl: Duration::from_secs(3600),
            customer: None,
        };
        common::register(&self.index, &record).await
    }

    async fn logout(&self, sub: Option<&str>, sid: &str) {
        let mut claims = self.op.claims(sub, Some(sid));
        claims["acme_reason"] = "disabled by an admin".into();
        let token = self.op.sign(&claims);
        let reply = post_form(
            &reqwest::Client::new(),
            &self.url,
            &[("logout_token", &token)],
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }

    async fn state(&self, id: &str) -> SessionState {
        common::state_of(&self.index, self.op.issuer(), id).await
    }

    /// The states of the sessions, in order.
    async fn states(&self, ids: &[&str]) -> Vec<SessionState> {
        let mut states = Vec::new();
        for id in ids {
            states.push(self.state(id).await);
        }
        states
    }
}

use SessionState::{Active, Ended as Gone};

/// Alice in OP session op-1 (a1), without a sid (a2), in OP session op-2 (a3); Bob without a
/// sid (b1) and in op-1's neighbour op-3 (b2). The OP logs Alice out of op-1, naming her
/// (`named_sub`) or not.
async fn scenario<S: SessionIndex + RecordStore>(
    index: S,
    mode: SidLogout,
    named_sub: bool,
    want_alice: [SessionState; 3],
) {
    let w = world(index, mode).await;
    let t = now() - 60;
    for (id, sub, sid) in [
        ("a1", "alice", Some("op-1")),
        ("a2", "alice", None),
        ("a3", "alice", Some("op-2")),
        ("b1", "bob", None),
        ("b2", "bob", Some("op-3")),
    ] {
        assert_eq!(w.login(id, sub, sid, t).await, Registration::Registered);
    }
    w.logout(named_sub.then_some("alice"), "op-1").await;
    assert_eq!(
        w.states(&["a1", "a2", "a3"]).await,
        want_alice,
        "{mode:?}, sub named: {named_sub}"
    );
    assert_eq!(
        w.states(&["b1", "b2"]).await,
        [Active, Active],
        "{mode:?}: another user is untouched"
    );
    // A registration the logout covers (a request in flight with an older login) is refused;
    // a later login is not.
    let late = w.login("late", "alice", None, t).await;
    let covered = want_alice[1] == Gone;
    assert_eq!(
        late == Registration::LoggedOut,
        covered,
        "{mode:?}: a late sid-less registration"
    );
    assert_eq!(
        w.login("fresh", "alice", None, now() + 5).await,
        Registration::Registered
    );
    // The hook saw what ended, with the token's claims (an OP's own claim too).
    let calls = w.hook.0.lock().map(|c| c.clone()).unwrap_or_default();
    let [(ended, Some(claims))] = calls.as_slice() else {
        panic!("one hook call with the token's claims: {calls:?}");
    };
    let want: usize = want_alice.iter().filter(|s| **s == Gone).count();
    assert_eq!(ended.len(), want, "{ended:?}");
    assert_eq!(claims["acme_reason"], "disabled by an admin");
    assert_eq!(claims["sid"], "op-1");
    assert_eq!(claims["aud"], CLIENT);
}

macro_rules! modes {
    ($backend:ident, $index:expr) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn session_ends_that_op_session_only() {
                let (_redis, index) = $index.await;
                scenario(index, SidLogout::Session, true, [Gone, Active, Active]).await;
            }

            #[tokio::test]
            async fn session_and_sidless_also_ends_the_users_sessions_without_a_sid() {
                let (_redis, index) = $index.await;
                scenario(
                    index,
                    SidLogout::SessionAndSidless,
                    true,
                    [Gone, Gone, Active],
                )
                .await;
            }

            #[tokio::test]
            async fn session_and_sidless_finds_the_user_in_the_op_session_without_a_sub() {
                let (_redis, index) = $index.await;
                scenario(
                    index,
                    SidLogout::SessionAndSidless,
                    false,
                    [Gone, Gone, Active],
                )
                .await;
            }

            #[tokio::test]
            async fn user_ends_every_session_of_the_user() {
                let (_redis, index) = $index.await;
                scenario(index, SidLogout::User, true, [Gone, Gone, Gone]).await;
            }

            #[tokio::test]
            async fn user_finds_the_user_in_the_op_session_without_a_sub() {
                let (_redis, index) = $index.await;
                scenario(index, SidLogout::User, false, [Gone, Gone, Gone]).await;
            }
        }
    };
}

async fn on_redis() -> (Option<RedisServer>, oidc_logout::RedisIndex) {
    let redis = RedisServer::start();
    let index = index_on(&redis).await;
    (Some(redis), index)
}

async fn in_memory() -> (Option<RedisServer>, MemoryIndex) {
    (None, MemoryIndex::new(IndexSettings::default()))
}

modes!(redis, on_redis());
modes!(memory, in_memory());

/// The instance's in-memory view agrees with Redis: a sid-less session a logout ended is
/// refused from memory too.
#[tokio::test]
async fn the_view_knows_sidless_sessions_are_ended() {
    let (_redis, index) = on_redis().await;
    let w = world(index, SidLogout::SessionAndSidless).await;
    let t = now() - 60;
    w.login("a1", "alice", Some("op-1"), t).await;
    w.login("a2", "alice", None, t).await;
    let key = oidc_logout::index::SessionKey {
        issuer: w.op.issuer(),
        session_id: "a2",
        sub: "alice",
        sid: None,
        auth_time: t,
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while w.index.known_state(&key) != Some(Active) {
        assert!(std::time::Instant::now() < deadline, "the view follows");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    w.logout(Some("alice"), "op-1").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while w.index.known_state(&key) != Some(Gone) {
        assert!(
            std::time::Instant::now() < deadline,
            "the view ends the sid-less session"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
