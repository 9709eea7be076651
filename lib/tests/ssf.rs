//! The Shared Signals push receiver with a real Redis and a transmitter served over HTTP
//! (`/.well-known/ssf-configuration` and a JWKS): CAEP session-revoked and RISC account-disabled
//! end sessions and write denylist markers, duplicates and verification events are answered 202,
//! and every malformed, mis-signed or unmappable SET is refused with its RFC 8935 code and
//! changes nothing. The last test runs the binary from a config file.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::signals::{SET_AUDIENCE, Transmitter as Idp, event, iss_sub};
use common::{RedisServer, index_on, now, serve};
use oidc_logout::Core;
use oidc_logout::index::{RedisIndex, SessionRecord, SessionState};
use oidc_logout::inputs::shared_signals::{
    ACCOUNT_DISABLED, PATH, SESSION_REVOKED, SsfReceiver, Transmitter, VERIFICATION,
};
use oidc_logout::provider::{Provider, http_client};
use oidc_logout::test_op::{SigningAlg, SigningKey};
use serde_json::{Map, Value, json};

const AUDIENCE: &str = SET_AUDIENCE;

use common::signals::push;

struct Setup {
    redis: RedisServer,
    idp: Idp,
    index: RedisIndex,
    url: String,
}

async fn setup() -> Setup {
    let redis = RedisServer::start();
    let idp = Idp::start().await;
    let index = index_on(&redis).await;
    let provider = Provider::discover_at(
        idp.issuer(),
        "ssf-configuration",
        http_client().expect("http"),
        common::provider_settings(),
    )
    .await
    .expect("ssf-configuration");
    let core = Core::builder(index.clone())
        .issuer_with_lifetime(idp.issuer(), Some(Duration::from_secs(600)))
        .build();
    let receiver = SsfReceiver::new(core)
        .with_transmitter(Transmitter::new(provider, vec![AUDIENCE.to_owned()]));
    let url = format!("{}{PATH}", serve(receiver.into_router()).await);
    Setup {
        redis,
        idp,
        index,
        url,
    }
}

impl Setup {
    async fn login(&self, id: &str, sub: &str, sid: &str) {
        common::register(
            &self.index,
            &SessionRecord {
                session_id: id.into(),
                issuer: self.idp.issuer().into(),
                sub: sub.into(),
                sid: Some(sid.into()),
                auth_time: now() - 30,
                ttl: Duration::from_secs(600),
                customer: None,
            },
        )
        .await;
    }

    async fn state(&self, id: &str) -> SessionState {
        common::state_of(&self.index, self.idp.issuer(), id).await
    }

    async fn send(&self, token: &str) -> (u16, Value) {
        push(&self.url, "application/secevent+jwt", token).await
    }

    async fn markers(&self) -> std::collections::HashMap<String, String> {
        common::deny_markers(&self.redis, self.idp.issuer()).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caep_and_risc_events_end_sessions_and_write_denylist_markers() {
    let s = setup().await;
    s.login("alice-1", "alice", "op-1").await;
    s.login("alice-2", "alice", "op-2").await;
    s.login("bob-1", "bob", "op-3").await;
    let iss = s.idp.issuer().to_owned();

    // CAEP session-revoked for one OP session of alice (complex subject: user + session).
    let one_session = s.idp.sign(&s.idp.set(
        event(SESSION_REVOKED),
        Some(json!({ "user": iss_sub(&iss, "alice"), "session": { "format": "opaque", "id": "op-1" } })),
    ));
    assert_eq!(
        s.send(&one_session).await,
        (202, Value::String(String::new()))
    );
    assert_eq!(s.state("alice-1").await, SessionState::Ended);
    assert_eq!(
        s.state("alice-2").await,
        SessionState::Active,
        "another OP session"
    );
    assert!(s.markers().await.contains_key("sid:op-1"));
    // Alice logs in again into that OP session; then the same SET is delivered again: 202, and
    // the new login survives (applying it again "as of now" would end it).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    common::register(
        &s.index,
        &SessionRecord {
            session_id: "alice-3".into(),
            issuer: iss.clone(),
            sub: "alice".into(),
            sid: Some("op-1".into()),
            auth_time: now(),
            ttl: Duration::from_secs(600),
            customer: None,
        },
    )
    .await;
    assert_eq!(s.send(&one_session).await.0, 202);
    assert_eq!(
        s.state("alice-3").await,
        SessionState::Active,
        "a duplicate changes nothing"
    );
    assert_eq!(s.state("alice-2").await, SessionState::Active);

    // RISC account-disabled: the user is revoked.
    let disabled = s.idp.sign(
        &s.idp
            .set(event(ACCOUNT_DISABLED), Some(iss_sub(&iss, "bob"))),
    );
    assert_eq!(s.send(&disabled).await.0, 202);
    assert_eq!(s.state("bob-1").await, SessionState::Ended);
    assert!(s.markers().await.contains_key("sub:bob"));

    // CAEP session-revoked naming the user (opaque id = sub, older drafts' `subject` member).
    let all = s.idp.sign(&s.idp.set(
        json!({ SESSION_REVOKED: { "subject": { "format": "opaque", "id": "alice" } } }),
        None,
    ));
    assert_eq!(s.send(&all).await.0, 202);
    assert_eq!(s.state("alice-2").await, SessionState::Ended);
    assert!(s.markers().await.contains_key("sub:alice"));

    // The transmitter rotates its key: the receiver fetches the new one and accepts the SET.
    let rotated = Arc::new(SigningKey::generate(SigningAlg::Rs256).expect("key"));
    s.idp
        .op
        .publish(vec![Arc::clone(&s.idp.key), Arc::clone(&rotated)]);
    s.login("gina-1", "gina", "op-7").await;
    let after_rotation = s.idp.sign_with(
        &rotated,
        &[("typ", json!("secevent+jwt"))],
        &s.idp
            .set(event(ACCOUNT_DISABLED), Some(iss_sub(&iss, "gina"))),
    );
    let (status, body) = s.send(&after_rotation).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(s.state("gina-1").await, SessionState::Ended);

    // A verification event, and an event type this receiver does not act on: acknowledged.
    let verification = s
        .idp
        .sign(&s.idp.set(json!({ VERIFICATION: { "state": "abc" } }), None));
    assert_eq!(s.send(&verification).await.0, 202);
    let other = s.idp.sign(&s.idp.set(
        event("https://schemas.openid.net/secevent/caep/event-type/credential-change"),
        Some(iss_sub(&iss, "carol")),
    ));
    assert_eq!(s.send(&other).await.0, 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sets_are_refused_with_their_code_and_change_nothing() {
    let s = setup().await;
    s.login("carol-1", "carol", "op-9").await;
    let iss = s.idp.issuer().to_owned();
    let good = || {
        s.idp
            .set(event(ACCOUNT_DISABLED), Some(iss_sub(&iss, "carol")))
    };
    let with = |change: &dyn Fn(&mut Map<String, Value>)| {
        let mut claims = good();
        if let Some(map) = claims.as_object_mut() {
            change(map);
        }
        claims
    };
    let other_key = SigningKey::generate(SigningAlg::Rs256).expect("key");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "typ JWT",
            s.idp
                .sign_with(&s.idp.key, &[("typ", json!("JWT"))], &good()),
            "invalid_request",
        ),
        (
            "exp present",
            s.idp.sign(&with(&|m| {
                m.insert("exp".into(), json!(now() + 60));
            })),
            "invalid_request",
        ),
        (
            "other audience",
            s.idp.sign(&with(&|m| {
                m.insert("aud".into(), json!("https://someone-else/"));
            })),
            "invalid_audience",
        ),
        (
            "unknown issuer",
            s.idp.sign(&with(&|m| {
                m.insert("iss".into(), json!("https://elsewhere.example"));
            })),
            "invalid_issuer",
        ),
        (
            "signed by another key",
            s.idp.sign_with(
                &other_key,
                &[
                    ("typ", json!("secevent+jwt")),
                    ("kid", json!(s.idp.key.kid())),
                ],
                &good(),
            ),
            "invalid_key",
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "secevent+jwt"})),
                b64(&good())
            ),
            "invalid_key",
        ),
        (
            "no jti",
            s.idp.sign(&with(&|m| {
                m.remove("jti");
            })),
            "invalid_request",
        ),
        (
            "iat in the future",
            s.idp.sign(&with(&|m| {
                m.insert("iat".into(), json!(now() + 3600));
            })),
            "invalid_request",
        ),
        (
            "no events",
            s.idp.sign(&with(&|m| {
                m.insert("events".into(), json!({}));
            })),
            "invalid_request",
        ),
        (
            "email subject",
            s.idp.sign(&with(&|m| {
                m.insert(
                    "sub_id".into(),
                    json!({"format": "email", "email": "carol@example.com"}),
                );
            })),
            "invalid_request",
        ),
        (
            "subject of an unconfigured issuer",
            s.idp.sign(&with(&|m| {
                m.insert(
                    "sub_id".into(),
                    iss_sub("https://elsewhere.example", "carol"),
                );
            })),
            // A transmitter acts only on the issuer it is configured for.
            "access_denied",
        ),
        (
            "no subject",
            s.idp.sign(&with(&|m| {
                m.remove("sub_id");
            })),
            "invalid_request",
        ),
        ("not a JWT", "hello".to_owned(), "invalid_request"),
    ];
    for (what, token, code) in &cases {
        let (status, body) = s.send(token).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(body["err"], json!(code), "{what}: {body}");
        assert!(
            body["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{what}: {body}"
        );
    }
    let (status, body) = push(&s.url, "application/jwt", &s.idp.sign(&good())).await;
    assert_eq!(
        (status, &body["err"]),
        (400, &json!("invalid_request")),
        "wrong content type"
    );
    assert_eq!(
        s.state("carol-1").await,
        SessionState::Active,
        "nothing changed"
    );
    assert!(s.markers().await.is_empty());
    // And the good one still works afterwards.
    assert_eq!(s.send(&s.idp.sign(&good())).await.0, 202);
    assert_eq!(s.state("carol-1").await, SessionState::Ended);
}

fn b64(value: &Value) -> String {
    common::signals::b64(value.to_string().as_bytes())
}
