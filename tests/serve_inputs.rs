//! The command serves the inputs its settings configure: SCIM from `OIDC_LOGOUT_SCIM_TOKENS`,
//! Universal Logout from a `[[universal_logout]]` table, Shared Signals from `[[transmitters]]`
//! (each input's own protocol is tested in `lib/tests`).

mod common;

use common::CLIENT;
use common::signals::{SET_AUDIENCE as AUDIENCE, Transmitter as Idp, event, iss_sub, push};
use common::{
    Op, RedisServer, endpoint, index_on, now, signals::post_json as post,
    signals::scim_call as call, signals::scim_deactivate as deactivate, signals::scim_user as user,
    start, state_of_record as state,
};
use oidc_logout::index::{SessionIndex, SessionRecord, SessionState};
use oidc_logout::inputs::scim;
use oidc_logout::inputs::shared_signals::{ACCOUNT_DISABLED, PATH};
use oidc_logout::inputs::universal_logout;
use serde_json::json;
use std::time::Duration;

const TOKEN: &str = "scim-token-of-tenant-a-0123456789abcdef";
/// The application's client id at the Okta org.
const UL_CLIENT: &str = "0oa1universal2logout";

fn record(id: &str, sub: &str, auth_time: u64) -> SessionRecord {
    common::session("https://idp.example.com/tenant-a", id, sub, auth_time)
}

/// `oidc-logout serve` with `OIDC_LOGOUT_SCIM_TOKENS`: the endpoint on the main listener for
/// the issuer given by environment; a short token stops startup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_serves_scim_when_tokens_are_configured() {
    let redis = RedisServer::start();
    let op = common::Op::start().await;
    let redis_url = redis.url();
    let running = start(
        &["serve"],
        &[
            ("OIDC_LOGOUT_ISSUER", op.issuer()),
            ("OIDC_LOGOUT_CLIENT_ID", common::CLIENT),
            ("OIDC_LOGOUT_REDIS_URL", &redis_url),
            ("OIDC_LOGOUT_LISTEN", "127.0.0.1:0"),
            ("OIDC_LOGOUT_SCIM_TOKENS", TOKEN),
        ],
    );
    let receiver = endpoint(&running);
    let base = receiver.replace("/backchannel-logout", scim::PREFIX);
    let index = index_on(&redis).await;
    let session = SessionRecord {
        issuer: op.issuer().into(),
        ..record("laptop", "alice-ext", now() - 60)
    };
    index.register(&session).await.expect("register");
    let (status, answer, _) = call(
        "POST",
        &format!("{base}/Users"),
        Some(TOKEN),
        Some(&user("alice", "alice-ext")),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let id = answer["id"].as_str().expect("id");
    let (status, _, _) = call(
        "PATCH",
        &format!("{base}/Users/{id}"),
        Some(TOKEN),
        Some(&deactivate()),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(state(&index, &session).await, SessionState::Ended);
    let (status, _, _) = call("GET", &format!("{base}/Users/{id}"), None, None).await;
    assert_eq!(status, 401);

    let failure = common::failure(
        &["serve"],
        &[
            ("OIDC_LOGOUT_ISSUER", op.issuer()),
            ("OIDC_LOGOUT_CLIENT_ID", common::CLIENT),
            ("OIDC_LOGOUT_REDIS_URL", &redis_url),
            ("OIDC_LOGOUT_LISTEN", "127.0.0.1:0"),
            ("OIDC_LOGOUT_SCIM_TOKENS", "short"),
        ],
    );
    assert!(failure.contains("OIDC_LOGOUT_SCIM_TOKENS"), "{failure}");
    assert!(failure.contains("32 characters"), "{failure}");
    assert!(
        !failure.contains("short"),
        "the token is not echoed: {failure}"
    );
}

/// `oidc-logout serve` with a `[[universal_logout]]` table: the endpoint on the main listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_serves_universal_logout_when_configured() {
    let redis = RedisServer::start();
    let op = Op::start().await;
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}{}", universal_logout::PATH);
    let dir = std::env::temp_dir().join(format!("ul-{port}"));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("oidc-logout.toml");
    std::fs::write(
        &file,
        format!(
            "[[universal_logout]]\nissuer = \"{}\"\nclient_id = \"{UL_CLIENT}\"\naudience = \"{url}\"\n",
            op.issuer()
        ),
    )
    .expect("config");
    let path = file.to_string_lossy().into_owned();
    let redis_url = redis.url();
    let listen = format!("127.0.0.1:{port}");
    let running = common::start(
        &["serve", "--config", &path],
        &[
            ("OIDC_LOGOUT_ISSUER", op.issuer()),
            ("OIDC_LOGOUT_CLIENT_ID", common::CLIENT),
            ("OIDC_LOGOUT_REDIS_URL", &redis_url),
            ("OIDC_LOGOUT_LISTEN", &listen),
        ],
    );
    running.wait_for("Universal Logout at");
    common::endpoint(&running);
    let index = index_on(&redis).await;
    let alice = common::session(op.issuer(), "laptop", "alice", now() - 60);
    index.register(&alice).await.expect("register");
    let token = op.sign_with(
        &op.key,
        &[("typ", "global-token-revocation+jwt".into())],
        &json!({"jti": "j-1", "iss": op.issuer(), "sub": UL_CLIENT, "aud": url,
                "exp": now() + 300, "nbf": now() - 300, "iat": now()}),
    );
    let body = json!({"sub_id": {"format": "iss_sub", "iss": op.issuer(), "sub": "alice"}});
    assert_eq!(post(&url, Some(&token), &body.to_string()).await, 204);
    assert_eq!(state(&index, &alice).await, SessionState::Ended);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_receives_sets_from_a_configured_transmitter() {
    let redis = RedisServer::start();
    let idp = Idp::start().await;
    let dir = common::topologies::TempDir::new("ssf-config");
    let config = dir.0.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[[issuers]]\nissuer = \"{iss}\"\nclients = [\"{CLIENT}\"]\n\
             [[transmitters]]\nissuer = \"{iss}\"\naudiences = [\"{AUDIENCE}\"]\n",
            iss = idp.issuer()
        ),
    )
    .expect("config");
    let redis_url = redis.url();
    let running = start(
        &["serve", "--config", &config.display().to_string()],
        &[
            ("OIDC_LOGOUT_REDIS_URL", &redis_url),
            ("OIDC_LOGOUT_LISTEN", "127.0.0.1:0"),
        ],
    );
    let endpoint = common::endpoint(&running);
    let url = endpoint.replace("/backchannel-logout", PATH);
    let index = index_on(&redis).await;
    common::register(
        &index,
        &SessionRecord {
            session_id: "dave-1".into(),
            issuer: idp.issuer().into(),
            sub: "dave".into(),
            sid: None,
            auth_time: now() - 30,
            ttl: Duration::from_secs(600),
            customer: None,
        },
    )
    .await;
    let set = idp.sign(&idp.set(event(ACCOUNT_DISABLED), Some(iss_sub(idp.issuer(), "dave"))));
    let (status, body) = push(&url, "application/secevent+jwt", &set).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        common::state_of(&index, idp.issuer(), "dave-1").await,
        SessionState::Ended
    );
}
