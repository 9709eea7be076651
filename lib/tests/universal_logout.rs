//! Okta Universal Logout (Global Token Revocation): the requests of Okta's guide
//! (`tests/fixtures/universal_logout/okta.json`, naming its source), signed as the guide says by
//! the built-in OP standing in for the Okta org, over HTTP against a real redis-server with live
//! sessions. A valid request ends the user's sessions and no one else's and writes the
//! denylist marker; every wrong JWT gets 401 and changes nothing; a replay is refused.

mod common;

use std::sync::Arc;

use common::{Op, RedisServer, index_on, now};
use oidc_logout::Core;
use oidc_logout::index::{RedisIndex, SessionIndex, SessionRecord, SessionState};
use oidc_logout::inputs::universal_logout::{self, Sender};
use oidc_logout::provider::Provider;
use oidc_logout::test_op::{SigningAlg, SigningKey};
use serde_json::{Value, json};

const CLIENT: &str = "0oa1universal2logout";

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/universal_logout/okta.json")).expect("fixture")
}

struct Setup {
    op: Op,
    url: String,
    index: RedisIndex,
    _redis: RedisServer,
}

async fn setup(configure: impl FnOnce(Sender) -> Sender) -> Setup {
    let redis = RedisServer::start();
    let op = Op::start().await;
    let index = index_on(&redis).await;
    let core = Core::builder(index.clone()).issuer(op.issuer()).build();
    let provider = Provider::discover(
        op.issuer(),
        oidc_logout::provider::http_client().expect("http"),
        common::provider_settings(),
    )
    .await
    .expect("the org's keys");
    // The audience is the URL the org is configured with; the router is served below it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}{}",
        listener.local_addr().expect("addr"),
        universal_logout::PATH
    );
    let sender = configure(Sender::new(Arc::clone(&provider), CLIENT, &url));
    let router = universal_logout::router(core, vec![sender]);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Setup {
        op,
        url,
        index,
        _redis: redis,
    }
}

fn record(op: &Op, id: &str, sub: &str) -> SessionRecord {
    common::session(op.issuer(), id, sub, now() - 60)
}

use common::state_of_record as state;

/// The JWT as Okta's guide describes it.
fn claims(s: &Setup, jti: &str) -> Value {
    json!({
        "jti": jti,
        "iss": s.op.issuer(),
        "sub": CLIENT,
        "aud": s.url,
        "exp": now() + 300,
        "nbf": now() - 300,
        "iat": now(),
    })
}

fn sign(s: &Setup, claims: &Value) -> String {
    s.op.sign_with(
        &s.op.key,
        &[("typ", "global-token-revocation+jwt".into())],
        claims,
    )
}

/// The guide's body with the subject made one of this test's users.
fn iss_sub(s: &Setup, sub: &str) -> String {
    let mut body = fixture()["requests"]["iss_sub"].clone();
    body["sub_id"]["iss"] = s.op.issuer().into();
    body["sub_id"]["sub"] = sub.into();
    body.to_string()
}

use common::signals::post_json as post;

#[tokio::test]
async fn an_iss_sub_request_logs_the_user_out_everywhere_once() {
    let s = setup(|sender| sender).await;
    let alice = [
        record(&s.op, "laptop", "145234573"),
        record(&s.op, "phone", "145234573"),
    ];
    let bob = record(&s.op, "bob", "bob");
    for r in alice.iter().chain([&bob]) {
        s.index.register(r).await.expect("register");
    }
    let token = sign(&s, &claims(&s, "jti-1"));
    assert_eq!(
        post(&s.url, Some(&token), &iss_sub(&s, "145234573")).await,
        204
    );
    for r in &alice {
        assert_eq!(state(&s.index, r).await, SessionState::Ended);
    }
    assert_eq!(state(&s.index, &bob).await, SessionState::Active);
    let deny = common::deny_markers(&s._redis, s.op.issuer()).await;
    assert!(deny.contains_key("sub:145234573"), "{deny:?}");
    // The same JWT again, even for another user: refused, nothing done.
    assert_eq!(post(&s.url, Some(&token), &iss_sub(&s, "bob")).await, 401);
    assert_eq!(state(&s.index, &bob).await, SessionState::Active);
    // The older body key (`subject`) is read too.
    let older = json!({"subject": {"format": "iss_sub", "iss": s.op.issuer(), "sub": "bob"}});
    let token = sign(&s, &claims(&s, "jti-2"));
    assert_eq!(post(&s.url, Some(&token), &older.to_string()).await, 204);
    assert_eq!(state(&s.index, &bob).await, SessionState::Ended);
}

#[tokio::test]
async fn every_wrong_jwt_is_refused_and_changes_nothing() {
    let s = setup(|sender| sender).await;
    let alice = record(&s.op, "laptop", "alice");
    s.index.register(&alice).await.expect("register");
    let body = iss_sub(&s, "alice");
    let other_key = SigningKey::generate(SigningAlg::Rs256).expect("key");
    let changed = |change: &dyn Fn(&mut Value)| {
        let mut c = claims(&s, "jti-x");
        change(&mut c);
        sign(&s, &c)
    };
    let wrong: Vec<(&str, String)> = vec![
        (
            "wrong aud",
            changed(&|c| c["aud"] = "https://elsewhere.example/global-token-revocation".into()),
        ),
        (
            "aud with a query",
            changed(&|c| c["aud"] = format!("{}?x=1", s.url).into()),
        ),
        ("wrong sub", changed(&|c| c["sub"] = "another-app".into())),
        (
            "unknown iss",
            changed(&|c| c["iss"] = "https://other-org.okta.com".into()),
        ),
        ("expired", changed(&|c| c["exp"] = (now() - 120).into())),
        (
            "no exp",
            changed(&|c| {
                c.as_object_mut().map(|m| m.remove("exp"));
            }),
        ),
        (
            "not yet valid",
            changed(&|c| c["nbf"] = (now() + 600).into()),
        ),
        (
            "issued in the future",
            changed(&|c| c["iat"] = (now() + 600).into()),
        ),
        (
            "valid for a day",
            changed(&|c| c["exp"] = (now() + 86_400).into()),
        ),
        (
            "no jti",
            changed(&|c| {
                c.as_object_mut().map(|m| m.remove("jti"));
            }),
        ),
        (
            "another key",
            s.op.sign_with(
                &other_key,
                &[("typ", "global-token-revocation+jwt".into())],
                &claims(&s, "jti-y"),
            ),
        ),
        (
            "wrong typ",
            s.op.sign_with(&s.op.key, &[("typ", "JWT".into())], &claims(&s, "jti-z")),
        ),
        (
            "no typ",
            s.op.sign_with(&s.op.key, &[], &claims(&s, "jti-w")),
        ),
        ("not a JWT", "opaque-bearer-token".into()),
    ];
    for (what, token) in &wrong {
        assert_eq!(post(&s.url, Some(token), &body).await, 401, "{what}");
    }
    assert_eq!(post(&s.url, None, &body).await, 401, "no token");
    assert_eq!(state(&s.index, &alice).await, SessionState::Active);
    assert!(
        common::deny_markers(&s._redis, s.op.issuer())
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn subjects_are_checked_after_the_jwt() {
    let s = setup(|sender| sender).await;
    let alice = record(&s.op, "laptop", "user@example.com");
    s.index.register(&alice).await.expect("register");
    let mut n = 0;
    let mut token = || {
        n += 1;
        sign(&s, &claims(&s, &format!("jti-{n}")))
    };
    // The guide's email request: not mapped here, refused with 400.
    let email = fixture()["requests"]["email"].to_string();
    assert_eq!(post(&s.url, Some(&token()), &email).await, 400);
    // The guide's iss_sub request names another issuer than this org's: 403.
    let foreign = fixture()["requests"]["iss_sub"].to_string();
    assert_eq!(post(&s.url, Some(&token()), &foreign).await, 403);
    for body in [
        "",
        "[]",
        "{}",
        "{\"sub_id\": {\"format\": \"opaque\", \"id\": \"x\"}}",
        "{\"sub_id\": {\"format\": \"iss_sub\"}}",
    ] {
        assert_eq!(post(&s.url, Some(&token()), body).await, 400, "{body}");
    }
    assert_eq!(state(&s.index, &alice).await, SessionState::Active);
}

#[tokio::test]
async fn an_email_subject_is_the_sub_where_configured() {
    let s = setup(|sender| sender.with_email_is_sub(true)).await;
    let alice = record(&s.op, "laptop", "user@example.com");
    s.index.register(&alice).await.expect("register");
    let token = sign(&s, &claims(&s, "jti-email"));
    let email = fixture()["requests"]["email"].to_string();
    assert_eq!(post(&s.url, Some(&token), &email).await, 204);
    assert_eq!(state(&s.index, &alice).await, SessionState::Ended);
}

/// Two applications of one Okta org: the same keys and issuer, told apart by `sub` and `aud`.
#[tokio::test]
async fn two_applications_of_one_org_are_told_apart() {
    let redis = RedisServer::start();
    let op = Op::start().await;
    let index = index_on(&redis).await;
    let core = Core::builder(index.clone()).issuer(op.issuer()).build();
    let provider = Provider::discover(
        op.issuer(),
        oidc_logout::provider::http_client().expect("http"),
        common::provider_settings(),
    )
    .await
    .expect("keys");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let first = format!("{base}{}", universal_logout::PATH);
    let second = format!("https://second-app.example{}", universal_logout::PATH);
    let router = universal_logout::router(
        core,
        vec![
            Sender::new(Arc::clone(&provider), CLIENT, &first),
            Sender::new(provider, "0oa-second-app", &second),
        ],
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    let alice = record(&op, "laptop", "alice");
    index.register(&alice).await.expect("register");
    let token = op.sign_with(
        &op.key,
        &[("typ", "global-token-revocation+jwt".into())],
        &json!({"jti": "j-2", "iss": op.issuer(), "sub": "0oa-second-app", "aud": second,
                "exp": now() + 300, "nbf": now() - 300, "iat": now()}),
    );
    let body = json!({"sub_id": {"format": "iss_sub", "iss": op.issuer(), "sub": "alice"}});
    assert_eq!(post(&first, Some(&token), &body.to_string()).await, 204);
    assert_eq!(state(&index, &alice).await, SessionState::Ended);
}
