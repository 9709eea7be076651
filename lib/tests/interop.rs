//! Logout tokens shaped like what real OPs send (`tests/fixtures/interop/*.json`, each naming
//! its source): each is signed by an OP served at the same issuer path, posted as that OP posts
//! it, and must end the session it names in Redis. Fixtures that need a setting (no `exp`) must
//! also be refused without it, so the setting is known to be the reason.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use common::{RedisServer, index_on, now, serve};
use oidc_logout::index::{SessionRecord, SessionState};
use oidc_logout::inputs::backchannel::PATH;
use oidc_logout::logout_token::Policy;
use oidc_logout::provider::{Provider, http_client};
use oidc_logout::test_op::{SigningAlg, SigningKey, TestOp, random_id};
use serde_json::{Map, Value};
use tokio::net::TcpListener;

const CLIENT: &str = "interop-client";

/// Replace `{issuer}`, `{client}`, `{jti}`, `{now}` and `{now+N}` in string values.
fn fill(value: &Value, issuer: &str, jti: &str) -> Value {
    match value {
        Value::String(s) => match s.as_str() {
            "{issuer}" => issuer.into(),
            "{client}" => CLIENT.into(),
            "{jti}" => jti.into(),
            "{now}" => now().into(),
            other => match other
                .strip_prefix("{now+")
                .and_then(|rest| rest.strip_suffix('}'))
                .and_then(|n| n.parse::<u64>().ok())
            {
                Some(n) => (now() + n).into(),
                None => value.clone(),
            },
        },
        Value::Array(items) => items.iter().map(|v| fill(v, issuer, jti)).collect(),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), fill(v, issuer, jti)))
                .collect(),
        ),
        other => other.clone(),
    }
}

struct Fixture {
    name: String,
    json: Value,
}

fn fixtures() -> Vec<Fixture> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/interop");
    let mut all: Vec<Fixture> = std::fs::read_dir(&dir)
        .expect("fixtures directory")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| Fixture {
            name: path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            json: serde_json::from_str(&std::fs::read_to_string(&path).expect("read"))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        })
        .collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(all.len() >= 6, "fixtures missing from {}", dir.display());
    all
}

/// An OP serving discovery and keys under the fixture's issuer path.
async fn op_at(path: &str, alg: SigningAlg) -> (Arc<TestOp>, Arc<SigningKey>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let issuer = format!("{base}{path}");
    let key = Arc::new(SigningKey::generate(alg).expect("key"));
    let op = TestOp::new(issuer, vec![Arc::clone(&key)]);
    let router = match path.trim_end_matches('/') {
        "" => op.router(),
        prefix => Router::new().nest(prefix, op.router()),
    };
    tokio::spawn(async move { axum::serve(listener, router).await });
    (op, key)
}

/// POST the token as the OP does; (status, body).
async fn post(url: &str, content_type: &str, token: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(format!("logout_token={token}"))
        .send()
        .await
        .expect("POST");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_shaped_like_each_op_end_their_sessions() {
    let redis = RedisServer::start();
    let index = index_on(&redis).await;
    for fixture in fixtures() {
        let f = &fixture.json;
        let name = &fixture.name;
        let text = |key: &str| f[key].as_str().unwrap_or_default().to_owned();
        let alg: SigningAlg = text("alg").parse().expect("alg");
        let (op, key) = op_at(&text("issuer_path"), alg).await;
        let issuer = op.issuer().to_owned();
        let accept_missing_exp = f["settings"]["accept_missing_exp"]
            .as_bool()
            .unwrap_or(false);
        let policy = |accept_missing_exp: bool| {
            Policy::new(issuer.clone(), CLIENT)
                .algorithms(&[oidc_logout::logout_token::parse_algorithm(alg.name()).expect("alg")])
                .accept_missing_exp(accept_missing_exp)
        };
        let provider = Provider::discover(
            &issuer,
            http_client().expect("client"),
            common::provider_settings(),
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: discovery at {issuer}: {e}"));
        let receiver = |accept_missing_exp| {
            common::receiver(
                index.clone(),
                Arc::clone(&provider),
                policy(accept_missing_exp),
            )
            .into_router()
        };
        let url = format!("{}{PATH}", serve(receiver(accept_missing_exp)).await);

        let header: Map<String, Value> = f["header"].as_object().cloned().unwrap_or_default();
        let sign = || {
            let claims = fill(&f["claims"], &issuer, &random_id(12).expect("jti"));
            (key.sign(&header, &claims).expect("sign"), claims)
        };
        let (token, claims) = sign();
        let session_id = format!("{name}-session");
        let session = SessionRecord {
            session_id: session_id.clone(),
            issuer: issuer.clone(),
            sub: claims["sub"].as_str().unwrap_or("someone").to_owned(),
            sid: claims["sid"].as_str().map(str::to_owned),
            auth_time: now() - 30,
            ttl: Duration::from_secs(600),
            customer: None,
        };
        common::register(&index, &session).await;

        if accept_missing_exp {
            let strict = format!("{}{PATH}", serve(receiver(false)).await);
            let (status, body) = post(&strict, &text("content_type"), &sign().0).await;
            assert_eq!(status, 400, "{name}: refused without accept_missing_exp");
            assert!(body.contains("exp"), "{name}: {body}");
            assert_eq!(
                common::state_of(&index, &issuer, &session_id).await,
                SessionState::Active,
                "{name}: a refused token changes nothing"
            );
        }
        let (status, body) = post(&url, &text("content_type"), &token).await;
        assert_eq!(status, 200, "{name} ({}): {body}", text("op"));
        assert_eq!(
            common::state_of(&index, &issuer, &session_id).await,
            SessionState::Ended,
            "{name}: the session it names is ended"
        );
        let (status, _) = post(&url, &text("content_type"), &token).await;
        assert_eq!(status, 400, "{name}: the same token again is a replay");
    }
}
