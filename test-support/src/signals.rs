//! Other senders of revocations, as the tests play them: a Shared Signals transmitter (an IdP
//! serving OIDC discovery, `/.well-known/ssf-configuration` and a JWKS) signing SETs, and
//! FusionAuth's webhook signature.

use std::sync::Arc;

use aws_lc_rs::{digest, hmac};
use axum::Router;
use axum::routing::get;
use base64::Engine as _;
use oidc_logout::test_op::{SigningAlg, SigningKey, TestOp, random_id};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

use crate::now;

/// The `aud` the test transmitters put in their SETs.
pub const SET_AUDIENCE: &str = "https://receiver.example/";

/// An IdP that is also a Shared Signals transmitter.
pub struct Transmitter {
    pub op: Arc<TestOp>,
    pub key: Arc<SigningKey>,
}

impl Transmitter {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let issuer = format!("http://{}", listener.local_addr().expect("addr"));
        let key = Arc::new(SigningKey::generate(SigningAlg::Rs256).expect("key"));
        let op = TestOp::new(issuer.clone(), vec![Arc::clone(&key)]);
        let ssf = json!({ "issuer": issuer, "jwks_uri": format!("{issuer}/jwks"),
            "delivery_methods_supported": ["urn:ietf:rfc:8935"] });
        let router = op.router().merge(Router::new().route(
            "/.well-known/ssf-configuration",
            get(move || async move { axum::Json(ssf) }),
        ));
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { op, key }
    }

    pub fn issuer(&self) -> &str {
        self.op.issuer()
    }

    /// SET claims with these events and `sub_id`.
    pub fn set(&self, events: Value, sub_id: Option<Value>) -> Value {
        let mut claims = json!({
            "iss": self.issuer(), "aud": SET_AUDIENCE, "iat": now(),
            "jti": random_id(12).expect("jti"), "events": events,
        });
        if let (Some(sub_id), Some(map)) = (sub_id, claims.as_object_mut()) {
            map.insert("sub_id".into(), sub_id);
        }
        claims
    }

    /// Signed with the published key, header `typ: secevent+jwt`.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with(&self.key, &[("typ", json!("secevent+jwt"))], claims)
    }

    pub fn sign_with(&self, key: &SigningKey, header: &[(&str, Value)], claims: &Value) -> String {
        super::sign_with(key, header, claims)
    }
}

/// `{kind: {"event_timestamp": now}}`.
pub fn event(kind: &str) -> Value {
    json!({ kind: { "event_timestamp": now() } })
}

/// An `iss_sub` subject.
pub fn iss_sub(iss: &str, sub: &str) -> Value {
    json!({ "format": "iss_sub", "iss": iss, "sub": sub })
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn body_hash(body: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(digest::digest(&digest::SHA256, body.as_bytes()))
}

/// The `X-FusionAuth-Signature-JWT` FusionAuth sends with an HMAC key: a JWT whose
/// `request_body_sha256` is the body's hash, plus `extra` claims.
pub fn fusionauth_hmac_signature(body: &str, secret: &str, extra: Value) -> String {
    let mut claims =
        json!({ "request_body_sha256": body_hash(body), "iat": now(), "exp": now() + 60 });
    if let (Some(map), Value::Object(extra)) = (claims.as_object_mut(), extra) {
        map.extend(extra);
    }
    let input = format!(
        "{}.{}",
        b64(json!({"alg": "HS256", "typ": "JWT", "kid": "webhook-key"})
            .to_string()
            .as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    format!(
        "{input}.{}",
        b64(hmac::sign(&key, input.as_bytes()).as_ref())
    )
}

/// The same signed with an RSA or EC key (one the tenant's issuer publishes, or not).
pub fn fusionauth_key_signature(body: &str, key: &SigningKey) -> String {
    let claims = json!({ "request_body_sha256": body_hash(body), "iat": now(), "exp": now() + 60 });
    key.sign(&Map::from_iter([("typ".into(), json!("JWT"))]), &claims)
        .expect("sign")
}

/// A FusionAuth webhook body: `{"event": {type, id, createInstant, tenantId, ...fields}}`.
pub fn fusionauth_event(kind: &str, tenant: &str, fields: Value) -> String {
    let mut event = json!({
        "type": kind, "id": random_id(12).expect("id"), "createInstant": now() * 1000,
        "tenantId": tenant,
    });
    if let (Some(map), Value::Object(extra)) = (event.as_object_mut(), fields) {
        map.extend(extra);
    }
    json!({ "event": event }).to_string()
}

/// The admin API token of [`every_input`].
pub const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef0123456789abcdef";
/// The FusionAuth HMAC secret of [`every_input`].
pub const HMAC: &str = "fusionauth-webhook-hmac-secret-0123456789";
/// The FusionAuth tenant of [`every_input`] (its issuer is the OP's).
pub const TENANT: &str = "tenant-1";

/// Redis, the OP, a transmitter, and a config file (in `dir`) that turns every input on: the
/// OP's and the transmitter's issuers (the OP's logout tokens acceptable for `max_age` s), the
/// transmitter, FusionAuth with [`HMAC`] and [`TENANT`], the admin API with [`ADMIN_TOKEN`],
/// listening on a free port. Returns the file's path.
pub async fn every_input(
    dir: &std::path::Path,
    max_age: u64,
) -> (
    super::RedisServer,
    super::Op,
    Transmitter,
    std::path::PathBuf,
) {
    let redis = super::RedisServer::start();
    let (op, idp) = (super::Op::start().await, Transmitter::start().await);
    let path = dir.join("config.toml");
    let config = format!(
        r#"
        listen = "127.0.0.1:0"
        redis_url = "{redis}"
        admin_tokens = ["{ADMIN_TOKEN}"]
        [[issuers]]
        issuer = "{op}"
        clients = ["{client}"]
        max_token_age_secs = {max_age}
        [[issuers]]
        issuer = "{idp}"
        clients = ["{client}"]
        [[transmitters]]
        issuer = "{idp}"
        audiences = ["{SET_AUDIENCE}"]
        [fusionauth]
        hmac_secrets = ["{HMAC}"]
        tenants = [{{ tenant_id = "{TENANT}", issuer = "{op}" }}]
        "#,
        redis = redis.url(),
        op = op.issuer(),
        idp = idp.issuer(),
        client = super::CLIENT,
    );
    std::fs::write(&path, config).expect("config");
    (redis, op, idp, path)
}

// SCIM, as a provisioning client calls it.

/// A SCIM request with a bearer token and a body; the status, the JSON answer and the headers.
pub async fn scim_call(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/scim+json")
            .body(body.to_owned());
    }
    let response = request.send().await.expect("answer");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        headers,
    )
}

/// An active SCIM User with this `userName` and `externalId`.
pub fn scim_user(name: &str, external: &str) -> String {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "externalId": external,
        "active": true,
    })
    .to_string()
}

/// A SCIM PATCH that deactivates the user.
pub fn scim_deactivate() -> String {
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "active", "value": false}],
    })
    .to_string()
}

/// POST a JSON body with an optional bearer token; the status.
pub async fn post_json(url: &str, token: Option<&str>, body: &str) -> u16 {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("answer").status().as_u16()
}

/// POST `body` as `content_type` (a SET push, RFC 8935); the status and the JSON answer (or
/// its text).
pub async fn push(url: &str, content_type: &str, body: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body.to_owned())
        .send()
        .await
        .expect("POST");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}
