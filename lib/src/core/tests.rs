//! The core's rules, over the memory index: scope (issuer, user, customer), exactly-once per
//! sender, hooks, "as of now". Every input relies on these; each is attacked through the inputs
//! in `lib/tests`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::index::{IndexSettings, MemoryIndex, Registration, SessionRecord, SessionState};

const ISS: &str = "https://op.example";

fn index() -> MemoryIndex {
    MemoryIndex::new(IndexSettings::default())
}

fn session(id: &str, sub: &str, sid: &str, customer: Option<&str>) -> SessionRecord {
    SessionRecord {
        session_id: id.into(),
        issuer: ISS.into(),
        sub: sub.into(),
        sid: Some(sid.into()),
        auth_time: unix_now() - 60,
        ttl: Duration::from_secs(600),
        customer: customer.map(Into::into),
    }
}

async fn register(index: &MemoryIndex, s: &SessionRecord) {
    assert_eq!(index.register(s).await.ok(), Some(Registration::Registered));
}

async fn state(index: &MemoryIndex, s: &SessionRecord) -> SessionState {
    index.state(&s.key()).await.unwrap_or(SessionState::Unknown)
}

fn revoke(sub: &str) -> Action {
    Action::RevokeUser {
        issuer: ISS.into(),
        sub: sub.into(),
    }
}

fn sender(scope: Scope) -> Sender {
    Sender::new("test", "sender", scope)
}

/// Records what the hooks are called with.
#[derive(Default)]
struct Recorder(Mutex<Vec<(String, Vec<String>)>>);

impl AfterLogout for Recorder {
    fn sessions_ended(&self, ended: &Ended<'_>) {
        if let Ok(mut calls) = self.0.lock() {
            calls.push((ended.issuer.to_owned(), ended.session_ids.to_vec()));
        }
    }
}

#[tokio::test]
async fn an_issuer_outside_the_scope_is_refused_before_anything_happens() {
    let index = index();
    let alice = session("a", "alice", "s1", None);
    register(&index, &alice).await;
    let core = Core::builder(index.clone())
        .issuer(ISS)
        .issuer("https://other.example")
        .build();
    let other = sender(Scope::issuer("https://other.example"));
    // The whole event is refused, the action on the sender's own issuer too.
    let both = vec![
        Action::RevokeUser {
            issuer: "https://other.example".into(),
            sub: "bob".into(),
        },
        revoke("alice"),
    ];
    assert!(matches!(
        core.apply(Event::new(other, both)).await,
        Err(CoreError::OutOfScope)
    ));
    assert_eq!(state(&index, &alice).await, SessionState::Active);
    // An operator's scope covers the configured issuers only.
    let operator = sender(Scope::any_issuer());
    let unknown = Action::RevokeUser {
        issuer: "https://unknown.example".into(),
        sub: "alice".into(),
    };
    assert!(matches!(
        core.apply(Event::new(operator, vec![unknown])).await,
        Err(CoreError::UnknownIssuer)
    ));
}

#[tokio::test]
async fn a_user_scope_reaches_that_user_only() {
    let index = index();
    let (alice, bob) = (
        session("a", "alice", "s1", None),
        session("b", "bob", "s2", None),
    );
    register(&index, &alice).await;
    register(&index, &bob).await;
    let core = Core::builder(index.clone()).build();
    let as_alice = sender(Scope::user(ISS, "alice"));
    let end_bob = Action::EndSession {
        issuer: ISS.into(),
        session_id: "b".into(),
        sub: Some("bob".into()),
    };
    assert!(matches!(
        core.apply(Event::new(as_alice.clone(), vec![end_bob]))
            .await,
        Err(CoreError::OutOfScope)
    ));
    let whole_op_session = Action::RevokeOpSession {
        issuer: ISS.into(),
        sid: "s1".into(),
    };
    assert!(matches!(
        core.apply(Event::new(as_alice.clone(), vec![whole_op_session]))
            .await,
        Err(CoreError::OutOfScope)
    ));
    let end_own = Action::EndSession {
        issuer: ISS.into(),
        session_id: "a".into(),
        sub: Some("alice".into()),
    };
    let outcome = core.apply(Event::new(as_alice, vec![end_own])).await;
    assert_eq!(outcome.ok().map(|o| o.ended()), Some(1));
    assert_eq!(state(&index, &bob).await, SessionState::Active);
}

#[tokio::test]
async fn a_customer_scope_reaches_only_that_customers_users() {
    let index = index();
    let acme = session("a", "alice", "s1", Some("acme"));
    let globex = session("g", "gina", "s2", Some("globex"));
    let nobody = session("n", "nadia", "s3", None);
    for s in [&acme, &globex, &nobody] {
        register(&index, s).await;
    }
    let hooks = Arc::new(Recorder::default());
    let core = Core::builder(index.clone())
        .issuer(ISS)
        .after_logout(hooks.clone())
        .build();
    let globex_sender = sender(Scope::issuer(ISS).with_customer(Some("globex".into())));
    // Another customer's user, and a user of no customer: nothing done, nothing written.
    for sub in ["alice", "nadia", "never-seen"] {
        let outcome = core
            .apply(Event::new(globex_sender.clone(), vec![revoke(sub)]))
            .await
            .ok();
        assert_eq!(
            outcome,
            Some(Outcome::Applied(vec![Done {
                ended: Vec::new(),
                out_of_scope: true
            }])),
            "{sub}"
        );
    }
    assert_eq!(state(&index, &acme).await, SessionState::Active);
    assert_eq!(state(&index, &nobody).await, SessionState::Active);
    // No marker either: alice's next login (authenticated before now) registers.
    let later = SessionRecord {
        session_id: "a2".into(),
        ..acme.clone()
    };
    register(&index, &later).await;
    // Its own customer's user is revoked.
    let outcome = core
        .apply(Event::new(globex_sender, vec![revoke("gina")]))
        .await;
    assert_eq!(outcome.ok().map(|o| o.ended()), Some(1));
    assert_eq!(state(&index, &globex).await, SessionState::Ended);
    let calls = hooks.0.lock().map(|c| c.clone()).unwrap_or_default();
    assert_eq!(calls, vec![(ISS.to_owned(), vec!["g".to_owned()])]);
}

#[tokio::test]
async fn an_op_session_is_ended_only_for_the_customers_users_in_it() {
    let index = index();
    let theirs = session("a", "alice", "shared", Some("acme"));
    let other = session("g", "gina", "shared", Some("globex"));
    register(&index, &theirs).await;
    register(&index, &other).await;
    let core = Core::builder(index.clone()).issuer(ISS).build();
    let acme = sender(Scope::issuer(ISS).with_customer(Some("acme".into())));
    let end = Action::RevokeOpSession {
        issuer: ISS.into(),
        sid: "shared".into(),
    };
    let outcome = core.apply(Event::new(acme, vec![end])).await.ok();
    assert_eq!(outcome.map(|o| o.ended_ids()), Some(vec!["a".to_owned()]));
    assert_eq!(state(&index, &theirs).await, SessionState::Ended);
    assert_eq!(state(&index, &other).await, SessionState::Active);
}

#[tokio::test]
async fn an_event_is_applied_once_per_sender() {
    let index = index();
    let core = Core::builder(index.clone()).issuer(ISS).build();
    let first = Sender::new("shared-signals", "transmitter-1", Scope::issuer(ISS));
    let second = Sender::new("shared-signals", "transmitter-2", Scope::issuer(ISS));
    let alice = session("a", "alice", "s1", None);
    register(&index, &alice).await;
    let event = |from: &Sender| Event::new(from.clone(), vec![revoke("alice")]).with_id("evt-1");
    assert_eq!(
        core.apply(event(&first)).await.ok().map(|o| o.ended()),
        Some(1)
    );
    assert_eq!(
        core.apply(event(&first)).await.ok(),
        Some(Outcome::Duplicate)
    );
    // Another sender's event with the same id is its own.
    assert!(matches!(
        core.apply(event(&second)).await,
        Ok(Outcome::Applied(_))
    ));
    // An id needs a sender of one issuer to be kept under.
    let operator = sender(Scope::any_issuer());
    assert!(matches!(
        core.apply(Event::new(operator, vec![revoke("alice")]).with_id("x"))
            .await,
        Err(CoreError::Invalid(_))
    ));
}

#[tokio::test]
async fn a_single_use_id_is_spent_even_by_a_refused_event() {
    let core = Core::builder(index())
        .issuer(ISS)
        .issuer("https://other.example")
        .build();
    let org = Sender::new("universal-logout", "org app", Scope::issuer(ISS));
    let elsewhere = Action::RevokeUser {
        issuer: "https://other.example".into(),
        sub: "alice".into(),
    };
    let refused = Event::new(org.clone(), vec![elsewhere]).with_single_use_id("jti-1");
    assert!(matches!(
        core.apply(refused).await,
        Err(CoreError::OutOfScope)
    ));
    let replay = Event::new(org, vec![revoke("alice")]).with_single_use_id("jti-1");
    assert_eq!(core.apply(replay).await.ok(), Some(Outcome::Duplicate));
}

#[tokio::test]
async fn a_claim_given_back_lets_the_retry_apply_the_event() {
    let index = index();
    let lease = Duration::from_secs(30);
    assert_eq!(
        index.claim_event(ISS, "k", lease).await.ok(),
        Some(EventClaim::Claimed)
    );
    assert_eq!(
        index.claim_event(ISS, "k", lease).await.ok(),
        Some(EventClaim::Busy)
    );
    assert!(index.release_event(ISS, "k").await.is_ok());
    assert_eq!(
        index.claim_event(ISS, "k", lease).await.ok(),
        Some(EventClaim::Claimed)
    );
    assert!(index.finish_event(ISS, "k", lease).await.is_ok());
    assert!(index.release_event(ISS, "k").await.is_ok());
    assert_eq!(
        index.claim_event(ISS, "k", lease).await.ok(),
        Some(EventClaim::Done),
        "a finished event is not given back"
    );
}

#[tokio::test]
async fn as_of_now_a_later_login_survives() {
    let index = index();
    let core = Core::builder(index.clone()).issuer(ISS).build();
    let later = SessionRecord {
        auth_time: unix_now() + 120,
        ..session("late", "alice", "s9", None)
    };
    register(&index, &later).await;
    let outcome = core
        .apply(Event::new(
            sender(Scope::any_issuer()),
            vec![revoke("alice")],
        ))
        .await;
    assert_eq!(outcome.ok().map(|o| o.ended()), Some(0));
    assert_eq!(state(&index, &later).await, SessionState::Active);
}

#[tokio::test]
async fn empty_names_are_refused() {
    let core = Core::builder(index()).issuer(ISS).build();
    for action in [
        revoke(""),
        Action::EndSession {
            issuer: ISS.into(),
            session_id: String::new(),
            sub: Some("alice".into()),
        },
        Action::RevokeOpSession {
            issuer: ISS.into(),
            sid: String::new(),
        },
    ] {
        assert!(matches!(
            core.apply(Event::new(sender(Scope::any_issuer()), vec![action]))
                .await,
            Err(CoreError::Invalid(_))
        ));
    }
}

#[tokio::test]
async fn every_event_is_in_the_activity_newest_first_as_its_viewer_may_see_it() {
    let index = index();
    let core = Core::builder(index.clone())
        .issuer(ISS)
        .issuer("https://other.example")
        .build();
    let s = session("the-session-id", "alice", "op-1", None);
    register(&index, &s).await;
    let ops = Sender::new("admin", "ops", Scope::any_issuer());
    let end = Action::EndSession {
        issuer: ISS.into(),
        session_id: s.session_id.clone(),
        sub: Some("alice".into()),
    };
    assert_eq!(
        core.apply(Event::new(ops.clone(), vec![end]))
            .await
            .map(|o| o.ended())
            .ok(),
        Some(1)
    );
    let other = Action::RevokeUser {
        issuer: "https://other.example".into(),
        sub: "bob".into(),
    };
    assert!(
        core.apply(Event::new(ops.clone(), vec![other]))
            .await
            .is_ok()
    );
    let refused = Event::new(
        sender(Scope::issuer("https://other.example")),
        vec![revoke("carol")],
    );
    assert!(core.apply(refused).await.is_err());

    let all = core.activity(&ops, 10).await.unwrap_or_default();
    let summary: Vec<(&str, &str, &str, usize)> = all
        .iter()
        .map(|a| {
            (
                a.action.as_str(),
                a.whom.as_str(),
                a.outcome.as_str(),
                a.ended,
            )
        })
        .collect();
    let handle = session_handle("the-session-id");
    assert_eq!(
        summary,
        [
            ("revoke_user", "carol", "out_of_scope", 0),
            ("revoke_user", "bob", "no_session", 0),
            (
                "end_session",
                &*format!("alice (session {handle})"),
                "applied",
                1
            ),
        ]
    );
    assert!(all.iter().all(|a| !a.whom.contains("the-session-id")));
    // One scoped to an issuer sees that issuer's; one scoped to a customer only its own.
    let scoped = core
        .activity(&sender(Scope::issuer("https://other.example")), 10)
        .await
        .unwrap_or_default();
    assert_eq!(scoped.len(), 1, "{scoped:?}");
    assert_eq!(scoped[0].whom, "bob");
    let help_desk = Scope::issuer(ISS).with_customer(Some("acme".into()));
    let help_desk = Sender::new("console", "help-desk", help_desk);
    assert!(
        core.activity(&help_desk, 10)
            .await
            .unwrap_or_default()
            .is_empty()
    );
    let same = sender(Scope::issuer(ISS).with_customer(Some("acme".into())));
    let own = core.activity(&same, 10).await.unwrap_or_default();
    assert_eq!(own.len(), 1, "the sender's own entry: {own:?}");
    assert_eq!(core.activity(&ops, 1).await.unwrap_or_default().len(), 1);
}
