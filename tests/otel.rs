//! Traces over OTLP (the command's feature `otel`): `oidc-logout serve` exports a `request`
//! span per request, with its request id, status and outcome, and the core's action as a
//! `core.apply` child span, to an OTLP/HTTP (JSON) receiver this test starts on loopback, while
//! a real Redis and the built-in OP do the rest. Run by `./scripts/test` with `--features otel`.

#![cfg(feature = "otel")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use common::{CLIENT, Op, RedisServer, endpoint, index_on, start};
use serde_json::Value;

type Spans = Arc<Mutex<Vec<Value>>>;

/// An OTLP/HTTP trace receiver: keeps every span of every export it is sent.
async fn receiver() -> (String, Spans) {
    let spans: Spans = Arc::default();
    async fn export(State(spans): State<Spans>, body: Bytes) -> &'static str {
        let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let mut kept = spans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for resource in request["resourceSpans"].as_array().into_iter().flatten() {
            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                kept.extend(scope["spans"].as_array().into_iter().flatten().cloned());
            }
        }
        "{}"
    }
    let router = axum::Router::new()
        .route("/v1/traces", post(export))
        .with_state(spans.clone());
    (common::serve(router).await, spans)
}

/// A span attribute's value as text (OTLP JSON writes integers as strings or numbers).
fn attribute(span: &Value, key: &str) -> Option<String> {
    let value = &span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)?["value"];
    ["stringValue", "intValue", "boolValue"]
        .iter()
        .find_map(|kind| match &value[kind] {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_is_a_request_span_with_the_cores_action_inside() {
    let redis = RedisServer::start();
    let op = Op::start().await;
    let (collector, spans) = receiver().await;
    let redis_url = redis.url();
    let running = start(
        &["serve"],
        &[
            ("OIDC_LOGOUT_ISSUER", op.issuer()),
            ("OIDC_LOGOUT_CLIENT_ID", CLIENT),
            ("OIDC_LOGOUT_REDIS_URL", &redis_url),
            ("OIDC_LOGOUT_LISTEN", "127.0.0.1:0"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let receiver_url = endpoint(&running);
    let index = index_on(&redis).await;
    common::register(
        &index,
        &common::session(op.issuer(), "s-1", "alice", common::now() - 60),
    )
    .await;

    let http = reqwest::Client::new();
    let token = op.sign(&op.claims(Some("alice"), None));
    let answer = http
        .post(&receiver_url)
        .header("x-request-id", "req-traced-7")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("logout_token={token}"))
        .send()
        .await
        .expect("POST");
    assert_eq!(answer.status(), 200);
    let refused = http
        .post(&receiver_url)
        .header("x-request-id", "req-traced-8")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("logout_token=not-a-token")
        .send()
        .await
        .expect("POST");
    assert_eq!(refused.status(), 400);

    // The batch goes out within the schedule delay; wait for both requests' spans.
    let deadline = Instant::now() + Duration::from_secs(20);
    let find = |spans: &[Value], id: &str| {
        spans
            .iter()
            .find(|s| s["name"] == "request" && attribute(s, "request_id").as_deref() == Some(id))
            .cloned()
    };
    let (request, refused_request, all) = loop {
        let all = spans.lock().map(|s| s.clone()).unwrap_or_default();
        if let (Some(a), Some(b)) = (find(&all, "req-traced-7"), find(&all, "req-traced-8")) {
            break (a, b, all);
        }
        assert!(
            Instant::now() < deadline,
            "no request spans arrived: {all:?}\n{:?}",
            running.drain()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        attribute(&request, "outcome").as_deref(),
        Some("ok"),
        "{request}"
    );
    assert_eq!(
        attribute(&request, "status").as_deref(),
        Some("200"),
        "{request}"
    );
    assert_eq!(
        attribute(&refused_request, "outcome").as_deref(),
        Some("refused")
    );
    assert_eq!(
        attribute(&refused_request, "status").as_deref(),
        Some("400")
    );

    // The core's action: a child of the logout's request span, in the same trace.
    let action = all
        .iter()
        .find(|s| s["name"] == "core.apply" && s["parentSpanId"] == request["spanId"])
        .unwrap_or_else(|| panic!("no core.apply span under {request}: {all:?}"));
    assert_eq!(action["traceId"], request["traceId"]);
    assert_eq!(
        attribute(action, "input").as_deref(),
        Some("backchannel"),
        "{action}"
    );
    assert_eq!(
        attribute(action, "outcome").as_deref(),
        Some("applied"),
        "{action}"
    );
    assert_eq!(attribute(action, "ended").as_deref(), Some("1"), "{action}");
    // The refused request never reached the core.
    assert!(
        !all.iter()
            .any(|s| s["name"] == "core.apply" && s["parentSpanId"] == refused_request["spanId"])
    );
}
