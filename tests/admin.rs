//! The admin API of `oidc-logout serve` and the `sessions` / `revoke` commands, against a real
//! Redis and the built-in OP: listing a user's sessions, ending one, some clients' or all,
//! revoking a user (denylist marker, refresh token revoked at the OP), and the refusals.

mod common;

use std::time::{Duration, Instant};

use common::{CLIENT, Op, RedisServer, command, endpoint, failure, index_on, now, start};
use oidc_logout::index::{RedisIndex, SessionState};
use oidc_logout::session_store::{Login, OidcSessionStore, TokenSecret};
use serde_json::{Value, json};

const TOKEN: &str = "admin-token-0123456789abcdef0123456789abcdef";

/// A session of `sub` logged in through `client`, as the session store writes it.
async fn login(
    store: &OidcSessionStore<RedisIndex>,
    issuer: &str,
    sub: &str,
    client: &str,
    refresh_token: Option<&str>,
) -> String {
    let login = Login {
        issuer: issuer.to_owned(),
        sub: sub.to_owned(),
        client_id: Some(client.to_owned()),
        sid: Some(format!("op-{sub}-{client}")),
        auth_time: now() - 60,
        logged_in_at: now() - 60,
        policy: None,
        id_token: None,
        refresh_token: refresh_token.map(TokenSecret::new),
        access_token: None,
        customer: None,
    };
    common::store_login(store, &login).await
}

async fn call(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let http = reqwest::Client::new();
    let mut request = match method {
        "GET" => http.get(url),
        _ => http.post(url),
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

use common::deny_markers as markers;

/// The issuer's logout markers (the index's, not the denylist's).
async fn logout_markers(
    redis: &RedisServer,
    issuer: &str,
) -> std::collections::HashMap<String, String> {
    let deny = oidc_logout::index::IssuerKeys::new("oidc-logout:", issuer).deny();
    let key = format!("{}x", deny.trim_end_matches("deny"));
    let mut conn = redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    redis::cmd("HGETALL")
        .arg(key)
        .query_async(&mut conn)
        .await
        .expect("HGETALL")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_lists_ends_and_revokes() {
    let redis = RedisServer::start();
    let op = Op::start().await;
    let issuer = op.issuer().to_owned();
    let redis_url = redis.url();
    let mut running = start(
        &["serve"],
        &[
            ("OIDC_LOGOUT_ISSUER", &issuer),
            ("OIDC_LOGOUT_CLIENT_ID", CLIENT),
            ("OIDC_LOGOUT_REDIS_URL", &redis_url),
            ("OIDC_LOGOUT_LISTEN", "127.0.0.1:0"),
            (
                "OIDC_LOGOUT_ADMIN_TOKENS",
                &format!("another-token-that-is-long-enough-000000,{TOKEN}"),
            ),
            ("OIDC_LOGOUT_ADMIN_LISTEN", "127.0.0.1:0"),
        ],
    );
    let receiver = endpoint(&running);
    let line = running.wait_for("admin API on http://");
    let admin = line
        .split("admin API on ")
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_owned();
    let index = index_on(&redis).await;
    let store = OidcSessionStore::new(index.clone());
    let web_1 = login(&store, &issuer, "alice", "web", None).await;
    let mobile = login(&store, &issuer, "alice", "mobile", None).await;
    let web_2 = login(
        &store,
        &issuer,
        "alice",
        CLIENT,
        Some("alice-refresh-token"),
    )
    .await;
    let bob = login(&store, &issuer, "bob", "web", None).await;
    let state = |id: String| {
        let (index, issuer) = (index.clone(), issuer.clone());
        async move { common::state_of(&index, &issuer, &id).await }
    };

    // Refused without the token, with a wrong one, for an unknown issuer, for a bad body.
    let list = format!(
        "{admin}/sessions?issuer={}&sub=alice",
        percent_encode(&issuer)
    );
    let (status, _) = call("GET", &list, None, None).await;
    assert_eq!(status, 401);
    let (status, _) = call(
        "GET",
        &list,
        Some("admin-token-0123456789abcdef0123456789abcdeX"),
        None,
    )
    .await;
    assert_eq!(status, 401);
    let revoke = format!("{admin}/users/revoke");
    let (status, body) = call(
        "POST",
        &revoke,
        Some(TOKEN),
        Some(json!({"issuer": "https://elsewhere", "sub": "alice"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown issuer")
    );
    let (status, body) = call(
        "POST",
        &revoke,
        Some(TOKEN),
        Some(json!({"issuer": issuer, "user": "alice"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = call(
        "POST",
        &revoke,
        None,
        Some(json!({"issuer": issuer, "sub": "alice"})),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        state(web_1.clone()).await,
        SessionState::Active,
        "refusals change nothing"
    );
    assert!(markers(&redis, &issuer).await.is_empty());
    // The admin API is not on the main listener when it has its own.
    let main_admin = receiver.replace("/backchannel-logout", "/admin/v1/users/revoke");
    let (status, _) = call(
        "POST",
        &main_admin,
        Some(TOKEN),
        Some(json!({"issuer": issuer, "sub": "alice"})),
    )
    .await;
    assert_eq!(status, 404);

    let (status, body) = call("GET", &list, Some(TOKEN), None).await;
    assert_eq!(status, 200, "{body}");
    let sessions = body["sessions"].as_array().cloned().unwrap_or_default();
    assert_eq!(sessions.len(), 3, "{body}");
    let clients: Vec<&str> = sessions
        .iter()
        .filter_map(|s| s["client_id"].as_str())
        .collect();
    for client in ["web", "mobile", CLIENT] {
        assert!(clients.contains(&client), "{clients:?}");
    }
    for s in &sessions {
        assert!(
            s["logged_in_at"].as_u64().unwrap_or(0) >= now() - 120,
            "{s}"
        );
        assert!(s["indexed_until"].as_u64().unwrap_or(0) > now(), "{s}");
        let auth = s["auth_time"].as_u64().unwrap_or(0);
        assert!((now() - 120..=now() - 59).contains(&auth), "{s}");
    }

    let (status, body) = call(
        "POST",
        &format!("{admin}/sessions/end"),
        Some(TOKEN),
        Some(json!({"issuer": issuer, "session_id": web_1})),
    )
    .await;
    assert_eq!((status, &body["ended"]), (200, &json!(true)), "{body}");
    assert_eq!(state(web_1.clone()).await, SessionState::Ended);
    // An id whose user cannot be found: the caller must name the sub; nothing is written.
    let (status, body) = call(
        "POST",
        &format!("{admin}/sessions/end"),
        Some(TOKEN),
        Some(json!({"issuer": issuer, "session_id": "not-in-this-store"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("sub"), "{body}");
    assert!(
        !logout_markers(&redis, &issuer)
            .await
            .contains_key("id:not-in-this-store"),
        "a refusal marks nothing"
    );

    let (status, body) = call(
        "POST",
        &format!("{admin}/users/end-sessions"),
        Some(TOKEN),
        Some(json!({"issuer": issuer, "sub": "alice", "clients": ["mobile"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ended"], json!([mobile]));
    assert_eq!(
        state(web_2.clone()).await,
        SessionState::Active,
        "another client's session stays"
    );
    assert!(
        markers(&redis, &issuer).await.is_empty(),
        "ending sessions writes no denylist marker"
    );

    let (status, body) = call(
        "POST",
        &revoke,
        Some(TOKEN),
        Some(json!({"issuer": issuer, "sub": "alice"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ended"], json!([web_2]));
    assert_eq!(state(web_2.clone()).await, SessionState::Ended);
    assert_eq!(
        state(bob.clone()).await,
        SessionState::Active,
        "other users untouched"
    );
    assert!(
        markers(&redis, &issuer).await.contains_key("sub:alice"),
        "the denylist marker"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !op
        .op
        .revoked()
        .iter()
        .any(|(token, _)| token == "alice-refresh-token")
    {
        assert!(
            Instant::now() < deadline,
            "the refresh token was not revoked at the OP"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    running.signal("TERM");
    assert!(running.wait_exit(Duration::from_secs(10)).is_some());
    let logs = running.drain().join("\n");
    for action in ["list", "end_session", "end_sessions", "revoke_user"] {
        assert!(
            logs.contains(&format!("action=\"{action}\""))
                || logs.contains(&format!("action={action}")),
            "no audit line for {action}:\n{logs}"
        );
    }
    assert!(logs.contains("wrong token refused"), "{logs}");
    assert!(!logs.contains(TOKEN), "the token reached the logs");
}

fn percent_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sessions_and_revoke_commands_work_on_redis_directly() {
    let redis = RedisServer::start();
    let op = Op::start().await;
    let issuer = op.issuer().to_owned();
    let redis_url = redis.url();
    let index = index_on(&redis).await;
    let store = OidcSessionStore::new(index.clone());
    let carol_web = login(&store, &issuer, "carol", "web", None).await;
    let carol_cli = login(&store, &issuer, "carol", CLIENT, Some("carol-refresh")).await;
    let dave = login(&store, &issuer, "dave", "web", None).await;
    let env = [
        ("OIDC_LOGOUT_ISSUER", issuer.as_str()),
        ("OIDC_LOGOUT_CLIENT_ID", CLIENT),
        ("OIDC_LOGOUT_REDIS_URL", redis_url.as_str()),
    ];
    let run = |args: &[&str]| {
        let output = command(args, &env).output().expect("run");
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let json: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
        (json, String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let (listed, _) = run(&["sessions", "list", &issuer, "carol"]);
    assert_eq!(
        listed["sessions"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );

    let (ended, _) = run(&["sessions", "end-user", &issuer, "carol", "--client", "web"]);
    assert_eq!(ended["ended"], json!([carol_web]));
    let (ended, audit) = run(&["revoke", &issuer, "carol"]);
    assert_eq!(ended["ended"], json!([carol_cli]));
    assert_eq!(ended["refresh_tokens_revoked"], json!(1), "{ended}");
    assert!(op.op.revoked().iter().any(|(t, _)| t == "carol-refresh"));
    assert!(audit.contains("revoke_user"), "{audit}");
    assert!(markers(&redis, &issuer).await.contains_key("sub:carol"));
    let (ended, _) = run(&["sessions", "end", &issuer, &dave]);
    assert_eq!(ended["ended"], json!(true));
    assert_eq!(
        common::state_of(&index, &issuer, &dave).await,
        SessionState::Ended
    );

    let stderr = failure(&["revoke", "https://elsewhere", "carol"], &env);
    assert!(stderr.contains("unknown issuer"), "{stderr}");
    // With only Redis configured, the issuer on the command line is the one acted on.
    let output = command(&["sessions", "list", &issuer, "dave"], &env[2..])
        .output()
        .expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_eq!(listed["issuer"], json!(issuer));
    let stderr = failure(&["sessions", "list", &issuer, "carol"], &env[..2]);
    assert!(stderr.contains("OIDC_LOGOUT_REDIS_URL"), "{stderr}");
}
