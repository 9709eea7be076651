//! The sessions API of `oidc-logout serve` (`/v1/sessions` on `gateway_listen`) over real HTTP
//! and Redis: applications are kept apart (one cannot see or end another's session of the same
//! id), a rotated id is ended, a back-channel logout ends an application's session, and what is
//! not authenticated or not well-formed changes nothing.

mod common;

use common::{CLIENT, Op, RedisServer, endpoint, free_port, now, start};
use serde_json::{Value, json};

const SHOP: &str = "shop-token-0123456789abcdef0123456789abcd";
const BLOG: &str = "blog-token-0123456789abcdef0123456789abcd";
const ACME_APP: &str = "acme-app-token-0123456789abcdef0123456789";
const GLOBEX_DESK: &str = "globex-help-desk-0123456789abcdef01234567";
const ACME_DESK: &str = "acme-help-desk-0123456789abcdef0123456789";

async fn call(method: &str, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let http = reqwest::Client::new();
    let mut request = match method {
        "GET" => http.get(url),
        "DELETE" => http.delete(url),
        _ => http.post(url),
    }
    .bearer_auth(token);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("the API answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn register(sub: &str, id: &str, previous: Option<&str>) -> Value {
    let mut body = json!({
        "sub": sub, "sid": format!("op-{sub}"), "auth_time": now() - 30,
        "session_id": id, "lifetime_secs": 3600,
    });
    if let Some(previous) = previous {
        body["previous_session_id"] = previous.into();
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applications_register_ask_and_end_their_own_sessions_only() {
    let redis = RedisServer::start();
    let op = Op::start().await;
    let gateway = format!("127.0.0.1:{}", free_port());
    let settings = std::env::temp_dir().join(format!("oidc-logout-sessions-{}.toml", free_port()));
    std::fs::write(
        &settings,
        format!(
            "[[applications]]\nname = \"shop\"\ntokens = [\"{SHOP}\"]\nissuer = \"{0}\"\n\n\
             [[applications]]\nname = \"blog\"\ntokens = [\"{BLOG}\"]\nissuer = \"{0}\"\n\n\
             [[applications]]\nname = \"acme\"\ntokens = [\"{ACME_APP}\"]\nissuer = \"{0}\"\n\
             customer = \"acme\"\n\n\
             [[admin]]\ntokens = [\"{GLOBEX_DESK}\"]\nissuer = \"{0}\"\ncustomer = \"globex\"\n\n\
             [[admin]]\ntokens = [\"{ACME_DESK}\"]\nissuer = \"{0}\"\ncustomer = \"acme\"\n",
            op.issuer()
        ),
    )
    .expect("settings");
    let redis_url = redis.url();
    let running = start(
        &["serve", "--config", &settings.to_string_lossy()],
        &[
            ("OIDC_LOGOUT_ISSUER", op.issuer()),
            ("OIDC_LOGOUT_CLIENT_ID", CLIENT),
            ("OIDC_LOGOUT_REDIS_URL", &redis_url),
            ("OIDC_LOGOUT_LISTEN", "127.0.0.1:0"),
            ("OIDC_LOGOUT_GATEWAY_LISTEN", &gateway),
        ],
    );
    let receiver = endpoint(&running);
    running.wait_for("forward-auth check on");
    let api = format!("http://{gateway}/v1/sessions");
    let state = |token: &'static str, id: &str| {
        let url = format!("{api}/{id}");
        async move { call("GET", &url, token, None).await.1["state"].clone() }
    };

    // Refused before anything happens: no token, a wrong one, a bad body, another issuer.
    assert_eq!(
        call(
            "POST",
            &api,
            "not-a-token-at-all",
            Some(register("a", "x", None))
        )
        .await
        .0,
        401
    );
    assert_eq!(
        call("POST", &api, SHOP, Some(json!({"sub": "a"}))).await.0,
        400
    );
    let mut elsewhere = register("a", "x", None);
    elsewhere["issuer"] = "https://another.example".into();
    assert_eq!(call("POST", &api, SHOP, Some(elsewhere)).await.0, 403);
    assert_eq!(state(SHOP, "x").await, "unknown");

    // Two applications, one session id each: kept apart.
    assert_eq!(
        call("POST", &api, SHOP, Some(register("alice", "s-1", None)))
            .await
            .0,
        201
    );
    assert_eq!(state(SHOP, "s-1").await, "live");
    assert_eq!(state(BLOG, "s-1").await, "unknown");
    let (status, ended) = call("DELETE", &format!("{api}/s-1"), BLOG, None).await;
    assert_eq!(
        (status, &ended["ended"]),
        (200, &Value::Bool(false)),
        "{ended}"
    );
    assert_eq!(state(SHOP, "s-1").await, "live");

    // An id rotation ends the old id.
    let rotated = register("alice", "s-2", Some("s-1"));
    assert_eq!(call("POST", &api, SHOP, Some(rotated)).await.0, 201);
    assert_eq!(state(SHOP, "s-1").await, "ended");
    assert_eq!(state(SHOP, "s-2").await, "live");

    // The OP's back-channel logout of alice ends the application's session.
    assert_eq!(
        call("POST", &api, BLOG, Some(register("alice", "b-1", None)))
            .await
            .0,
        201
    );
    let token = op.sign(&op.claims(Some("alice"), None));
    let answer = reqwest::Client::new()
        .post(&receiver)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("logout_token={token}"))
        .send()
        .await
        .expect("logout");
    assert_eq!(answer.status(), 200);
    assert_eq!(state(SHOP, "s-2").await, "ended");
    assert_eq!(state(BLOG, "b-1").await, "ended");
    // And its late registration is refused.
    let (status, body) = call("POST", &api, BLOG, Some(register("alice", "b-2", None))).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("logged_out")));

    // An application scoped to a customer registers its sessions as that customer's: another
    // customer's help desk cannot end them, its own can.
    assert_eq!(
        call("POST", &api, ACME_APP, Some(register("zoe", "a-1", None)))
            .await
            .0,
        201
    );
    let main = receiver.trim_end_matches("/backchannel-logout").to_owned();
    let revoke = format!("{main}/admin/v1/users/revoke");
    let zoe = json!({"issuer": op.issuer(), "sub": "zoe"});
    assert_eq!(
        call("POST", &revoke, GLOBEX_DESK, Some(zoe.clone()))
            .await
            .0,
        200
    );
    assert_eq!(state(ACME_APP, "a-1").await, "live");
    assert_eq!(call("POST", &revoke, ACME_DESK, Some(zoe)).await.0, 200);
    assert_eq!(state(ACME_APP, "a-1").await, "ended");
}
