//! FusionAuth webhooks with a real Redis: events shaped like FusionAuth's, signed as it signs
//! them (`X-FusionAuth-Signature-JWT` over the body's SHA-256, with an HMAC key or an RSA key its
//! JWKS publishes), revoke users and end sessions; duplicates, unsigned, mis-signed, unknown and
//! malformed events change nothing.

mod common;

use std::time::Duration;

use common::signals::{fusionauth_event, fusionauth_hmac_signature, fusionauth_key_signature};
use common::{Op, RedisServer, index_on, now, serve};
use oidc_logout::Core;
use oidc_logout::index::{RedisIndex, SessionState};
use oidc_logout::inputs::fusionauth::{FusionAuthReceiver, PATH, Tenant};
use oidc_logout::provider::{Provider, http_client};
use oidc_logout::session_store::{Login, OidcSessionStore};
use oidc_logout::test_op::{SigningAlg, SigningKey};
use secrecy::SecretString;
use serde_json::{Value, json};

const SECRET: &str = "fusionauth-webhook-hmac-secret-0123456789";
const TENANT: &str = "30663132-6464-6665-3032-326466613934";
const LOCK: &str = "c6ba8b55-6b6f-4a5a-9a1d-4e0b4f4a0a11";

fn webhook(kind: &str, fields: Value) -> String {
    fusionauth_event(kind, TENANT, fields)
}

fn hmac_signature(body: &str, secret: &str, extra: Value) -> String {
    fusionauth_hmac_signature(body, secret, extra)
}

struct Setup {
    redis: RedisServer,
    op: Op,
    index: RedisIndex,
    store: OidcSessionStore<RedisIndex>,
    url: String,
}

async fn setup() -> Setup {
    let redis = RedisServer::start();
    let op = Op::start().await;
    let index = index_on(&redis).await;
    let provider = Provider::discover(
        op.issuer(),
        http_client().expect("http"),
        common::provider_settings(),
    )
    .await
    .expect("discovery");
    let core = Core::builder(index.clone())
        .issuer_with_lifetime(op.issuer(), Some(Duration::from_secs(600)))
        .build();
    let receiver =
        FusionAuthReceiver::new(core, &[SecretString::from(SECRET)], vec![LOCK.to_owned()])
            .with_tenant(Tenant::new(TENANT, provider));
    let url = format!("{}{PATH}", serve(receiver.into_router()).await);
    Setup {
        store: OidcSessionStore::new(index.clone()),
        redis,
        op,
        index,
        url,
    }
}

impl Setup {
    async fn login(&self, sub: &str, client: &str) -> String {
        self.login_at(sub, client, now() - 30).await
    }

    async fn login_at(&self, sub: &str, client: &str, auth_time: u64) -> String {
        let login = Login {
            issuer: self.op.issuer().to_owned(),
            sub: sub.to_owned(),
            client_id: Some(client.to_owned()),
            sid: None,
            auth_time,
            logged_in_at: auth_time,
            policy: None,
            id_token: None,
            refresh_token: None,
            access_token: None,
            customer: None,
        };
        common::store_login(&self.store, &login).await
    }

    async fn state(&self, id: &str) -> SessionState {
        common::state_of(&self.index, self.op.issuer(), id).await
    }

    async fn post(&self, body: &str, signature: Option<&str>) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(signature) = signature {
            request = request.header("X-FusionAuth-Signature-JWT", signature);
        }
        let response = request.send().await.expect("POST");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn signed(&self, body: &str) -> (u16, Value) {
        self.post(body, Some(&hmac_signature(body, SECRET, json!({}))))
            .await
    }

    async fn markers(&self) -> std::collections::HashMap<String, String> {
        common::deny_markers(&self.redis, self.op.issuer()).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_revoke_users_and_end_sessions() {
    let s = setup().await;
    let alice = s.login("alice", "web").await;
    let bob = s.login("bob", "web").await;
    let carol = s.login("carol", "web").await;
    let dave_web = s.login("dave", "web").await;
    let dave_mobile = s.login("dave", "mobile").await;
    let erin = s.login("erin", "web").await;

    let deactivate = webhook(
        "user.deactivate",
        json!({ "user": { "id": "alice", "active": false } }),
    );
    assert_eq!(s.signed(&deactivate).await.0, 200);
    assert_eq!(s.state(&alice).await, SessionState::Ended);
    assert!(s.markers().await.contains_key("sub:alice"));
    // Delivered again after alice logged in anew: the new session survives.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let alice_again = s.login_at("alice", "web", now()).await;
    assert_eq!(s.signed(&deactivate).await.0, 200);
    assert_eq!(
        s.state(&alice_again).await,
        SessionState::Active,
        "a duplicate changes nothing"
    );

    // A locking user action, signed with the RSA key the tenant's issuer publishes.
    let lock = webhook(
        "user.action",
        json!({ "action": "Lock", "actionId": LOCK, "actioneeUserId": "bob", "phase": "start" }),
    );
    assert_eq!(
        s.post(&lock, Some(&fusionauth_key_signature(&lock, &s.op.key)))
            .await
            .0,
        200
    );
    assert_eq!(s.state(&bob).await, SessionState::Ended);
    // A user action that does not lock, or one that ends: nothing.
    let warn = webhook(
        "user.action",
        json!({ "action": "Warn", "actionId": "another-action", "actioneeUserId": "carol", "phase": "start" }),
    );
    assert_eq!(s.signed(&warn).await.0, 200);
    let unlock = webhook(
        "user.action",
        json!({ "action": "Lock", "actionId": LOCK, "actioneeUserId": "carol", "phase": "end" }),
    );
    assert_eq!(s.signed(&unlock).await.0, 200);
    assert_eq!(s.state(&carol).await, SessionState::Active);

    // One application's refresh tokens: that client's sessions end.
    let app = webhook(
        "jwt.refresh-token.revoke",
        json!({ "userId": "dave", "applicationId": "mobile" }),
    );
    assert_eq!(s.signed(&app).await.0, 200);
    assert_eq!(s.state(&dave_mobile).await, SessionState::Ended);
    assert_eq!(s.state(&dave_web).await, SessionState::Active);
    let all = webhook(
        "jwt.refresh-token.revoke",
        json!({ "userId": "dave", "user": { "id": "dave" } }),
    );
    assert_eq!(s.signed(&all).await.0, 200);
    assert_eq!(s.state(&dave_web).await, SessionState::Ended);

    let delete = webhook("user.delete", json!({ "user": { "id": "erin" } }));
    assert_eq!(s.signed(&delete).await.0, 200);
    assert_eq!(s.state(&erin).await, SessionState::Ended);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_mis_signed_unknown_and_malformed_events_change_nothing() {
    let s = setup().await;
    let frank = s.login("frank", "web").await;
    let body = webhook("user.deactivate", json!({ "user": { "id": "frank" } }));
    let other_key = SigningKey::generate(SigningAlg::Rs256).expect("key");
    let cases: Vec<(&str, String, Option<String>, u16)> = vec![
        ("unsigned", body.clone(), None, 401),
        (
            "wrong secret",
            body.clone(),
            Some(hmac_signature(
                &body,
                "not-the-secret-not-the-secret-000000",
                json!({}),
            )),
            401,
        ),
        (
            "signed over another body",
            body.replace("frank", "frank "),
            Some(hmac_signature(&body, SECRET, json!({}))),
            401,
        ),
        (
            "expired signature",
            body.clone(),
            Some(hmac_signature(&body, SECRET, json!({ "exp": now() - 60 }))),
            401,
        ),
        (
            "RSA key it does not publish",
            body.clone(),
            Some(fusionauth_key_signature(&body, &other_key)),
            401,
        ),
        ("not a JWT", body.clone(), Some("garbage".to_owned()), 401),
        (
            "unknown tenant",
            body.replace(TENANT, "another-tenant"),
            None,
            400,
        ),
        (
            "unknown event type",
            webhook("user.login.success", json!({ "user": { "id": "frank" } })),
            None,
            400,
        ),
        ("not JSON", "{not json".to_owned(), None, 400),
        (
            "no event",
            json!({ "user": { "id": "frank" } }).to_string(),
            None,
            400,
        ),
        ("no user", webhook("user.deactivate", json!({})), None, 400),
    ];
    for (what, body, signature, status) in cases {
        let signature = signature.or_else(|| Some(hmac_signature(&body, SECRET, json!({}))));
        let signature = if what == "unsigned" { None } else { signature };
        let (got, answer) = s.post(&body, signature.as_deref()).await;
        assert_eq!(got, status, "{what}: {answer}");
        assert!(
            answer["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{what}: {answer}"
        );
    }
    assert_eq!(
        s.state(&frank).await,
        SessionState::Active,
        "nothing changed"
    );
    assert!(s.markers().await.is_empty());
    assert_eq!(
        s.signed(&body).await.0,
        200,
        "the genuine event still works"
    );
    assert_eq!(s.state(&frank).await, SessionState::Ended);
}
