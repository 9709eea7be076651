//! The whole flow on one machine, with the test OP as the identity provider: two instances of
//! `examples/app` log a user in through the OP's login page (the second by single sign-on),
//! and the logout button in one reaches the other through the OP's end-session endpoint and
//! back-channel logout. Once with the OP in-process (`TestOp::start_local`, what an
//! application's own tests use) and once as `oidc-logout op serve --client … --user …`; and the
//! OP's refusals of bad authorization and token requests.

mod common;

use std::process::Command;
use std::sync::Arc;

use common::{Proc, RedisServer, free_port};
use oidc_logout::test_op::{Browser, Client, TestOp};
use serde_json::Value;

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

struct App {
    id: String,
    base: String,
    _proc: Proc,
}

/// `examples/app` as client `id` of `issuer`, on its own port, sessions in `redis_url`.
fn start_app(id: &str, issuer: &str, redis_url: &str) -> (Client, App) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = Client::new(id, format!("{id}-secret"), &base);
    let mut command = Command::new(common::example("app"));
    command
        .env("OIDC_LOGOUT_ISSUER", issuer)
        .env("OIDC_LOGOUT_CLIENT_ID", id)
        .env("OIDC_LOGOUT_CLIENT_SECRET", format!("{id}-secret"))
        .env("OIDC_LOGOUT_REDIS_URL", redis_url)
        .env("APP_LISTEN", format!("127.0.0.1:{port}"))
        .env("APP_BASE_URL", &base)
        .env(
            "APP_SESSION_COOKIE",
            format!("{}_session", id.replace('-', "_")),
        )
        .env("RUST_LOG", "info");
    (
        client,
        App {
            id: id.into(),
            base,
            _proc: Proc::spawn("app", command),
        },
    )
}

fn wait_listening(app: &App) {
    app._proc.wait_for("app listening on");
}

async fn me(browser: &mut Browser, app: &App) -> (u16, Value) {
    let page = browser.get(&format!("{}/me", app.base)).await.expect("me");
    (
        page.status,
        serde_json::from_str(&page.body).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_apps_log_in_at_the_test_op_and_one_logout_reaches_both() {
    let redis = RedisServer::start();
    let (op, issuer) = TestOp::start_local().await.expect("the test OP");
    let (client_1, app_1) = start_app("app-1", &issuer, &redis.url());
    let (client_2, app_2) = start_app("app-2", &issuer, &redis.url());
    op.register_client(client_1);
    op.register_client(client_2);
    wait_listening(&app_1);
    wait_listening(&app_2);

    let mut alice = Browser::new().expect("browser");
    let page = alice
        .log_in(&format!("{}/login", app_1.base), "alice")
        .await
        .expect("login");
    assert!(
        page.body.contains("Logged in as alice"),
        "{}: {}",
        page.url,
        page.body
    );
    // The second app: single sign-on, no login page.
    let page = alice
        .get(&format!("{}/login", app_2.base))
        .await
        .expect("sso");
    assert!(
        page.body.contains("Logged in as alice"),
        "{}: {}",
        page.url,
        page.body
    );
    let (status, who) = me(&mut alice, &app_2).await;
    assert_eq!(status, 200);
    assert_eq!(who["sub"], "alice");
    let sid = who["sid"].as_str().expect("the ID token's sid").to_owned();
    assert_eq!(op.op_sessions(), vec![(sid.clone(), "alice".to_owned())]);
    let mut bob = Browser::new().expect("browser");
    bob.log_in(&format!("{}/login", app_2.base), "bob")
        .await
        .expect("login");
    assert_eq!(me(&mut bob, &app_2).await.0, 200);

    // The logout button in app 1: its session ends, the OP ends alice's OP session and tells
    // app 2 over the back channel before the browser comes back.
    let page = alice
        .post_form(&format!("{}/logout", app_1.base), &[])
        .await
        .expect("logout");
    assert!(
        page.url.starts_with(&format!("{}/logged-out", app_1.base)),
        "{}",
        page.url
    );
    assert!(page.body.contains("You are logged out"), "{}", page.body);
    assert_eq!(me(&mut alice, &app_1).await.0, 401);
    assert_eq!(
        me(&mut alice, &app_2).await.0,
        401,
        "app 2 heard it from the OP"
    );
    assert_eq!(me(&mut bob, &app_2).await.0, 200, "bob is untouched");
    assert!(op.op_sessions().iter().all(|(s, _)| *s != sid));
    // Logging in again needs the login page: the OP session is gone.
    let page = alice
        .get(&format!("{}/login", app_1.base))
        .await
        .expect("login");
    assert!(page.body.contains("name=\"username\""), "{}", page.body);
    let _ = (app_1.id, app_2.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn op_serve_with_clients_and_a_fixed_user() {
    let redis = RedisServer::start();
    let op_port = free_port();
    let issuer = format!("http://127.0.0.1:{op_port}");
    let keys = std::env::temp_dir().join(format!("op-keys-{op_port}.json"));
    let (client_1, app_1) = start_app("app-1", &issuer, &redis.url());
    let (client_2, app_2) = start_app("app-2", &issuer, &redis.url());
    let spec = |c: &Client| format!("{}:{}@{}", c.id, c.secret, c.base_url);
    let (spec_1, spec_2) = (spec(&client_1), spec(&client_2));
    let keys_arg = keys.to_string_lossy().into_owned();
    let listen = format!("127.0.0.1:{op_port}");
    let op = common::start(
        &[
            "op", "serve", "--listen", &listen, "--keys", &keys_arg, "--client", &spec_1,
            "--client", &spec_2, "--user", "carol",
        ],
        &[],
    );
    op.wait_for("discovery");
    wait_listening(&app_1);
    wait_listening(&app_2);
    let mut browser = Browser::new().expect("browser");
    for app in [&app_1, &app_2] {
        let page = browser
            .get(&format!("{}/login", app.base))
            .await
            .expect("login");
        assert!(
            page.body.contains("Logged in as carol"),
            "{}: {}",
            page.url,
            page.body
        );
        assert_eq!(me(&mut browser, app).await.0, 200);
    }
    // A logout at the OP's own end-session endpoint (the user logs out at the IdP) reaches
    // both applications over the back channel.
    let page = browser
        .get(&format!("{issuer}/session/end"))
        .await
        .expect("end session");
    assert_eq!(page.status, 200);
    assert_eq!(me(&mut browser, &app_1).await.0, 401);
    assert_eq!(me(&mut browser, &app_2).await.0, 401);
    let _ = std::fs::remove_file(keys);
}

/// The OP refuses what a careful OP refuses: unknown clients, foreign redirect URIs, requests
/// without PKCE, a wrong verifier, a code used twice.
#[tokio::test]
async fn the_test_op_refuses_bad_authorization_and_token_requests() {
    let (op, issuer) = TestOp::start_local().await.expect("the test OP");
    op.register_client(Client::new("app", "secret", "http://127.0.0.1:1"));
    op.set_auto_user(Some("alice".into()));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let authorize = |params: &[(&str, &str)]| {
        reqwest::Url::parse_with_params(&format!("{issuer}/auth"), params).expect("url")
    };
    let verifier = "a-verifier-of-enough-length-0123456789abcdef";
    use base64::Engine as _;
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()),
    );
    let good = [
        ("response_type", "code"),
        ("client_id", "app"),
        ("redirect_uri", "http://127.0.0.1:1/callback"),
        ("scope", "openid offline_access"),
        ("state", "s-1"),
        ("nonce", "n-1"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let location = |response: &reqwest::Response| {
        response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_default()
    };
    let unknown = [
        ("client_id", "nobody"),
        ("redirect_uri", "http://127.0.0.1:1/callback"),
    ];
    let answer = http.get(authorize(&unknown)).send().await.expect("answer");
    assert_eq!(answer.status(), 400);
    let mut foreign = good;
    foreign[2] = ("redirect_uri", "http://127.0.0.1:10/callback");
    let answer = http.get(authorize(&foreign)).send().await.expect("answer");
    assert_eq!(
        answer.status(),
        400,
        "a redirect URI outside the client's base URL"
    );
    let mut plain = good;
    plain[7] = ("code_challenge_method", "plain");
    let answer = http.get(authorize(&plain)).send().await.expect("answer");
    assert!(
        location(&answer).contains("error=invalid_request"),
        "{}",
        location(&answer)
    );

    let answer = http.get(authorize(&good)).send().await.expect("answer");
    let cookie = answer
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("the OP's session cookie")
        .to_owned();
    let back = reqwest::Url::parse(&location(&answer)).expect("redirect");
    let code = back
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a code");
    assert!(back.query_pairs().any(|(k, v)| k == "state" && v == "s-1"));
    // With the OP session: prompt=none answers at once; prompt=login and a max_age the
    // session is older than ask again (here: the fixed user logs in again, a new session).
    op.set_auto_user(None);
    let with_session = |extra: (&'static str, &'static str)| {
        let mut params = good.to_vec();
        params.push(extra);
        http.get(authorize(&params))
            .header("cookie", cookie.clone())
            .send()
    };
    let silent = with_session(("prompt", "none")).await.expect("answer");
    assert!(location(&silent).contains("code="), "{}", location(&silent));
    let without = http
        .get(authorize(
            &[good.as_slice(), &[("prompt", "none")]].concat(),
        ))
        .send()
        .await
        .expect("answer");
    assert!(location(&without).contains("error=login_required"));
    let forced = with_session(("prompt", "login")).await.expect("answer");
    assert_eq!(forced.status(), 200);
    assert!(
        forced
            .text()
            .await
            .unwrap_or_default()
            .contains("name=\"username\"")
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let too_old = with_session(("max_age", "0")).await.expect("answer");
    assert!(
        too_old
            .text()
            .await
            .unwrap_or_default()
            .contains("name=\"username\"")
    );
    let young_enough = with_session(("max_age", "3600")).await.expect("answer");
    assert!(location(&young_enough).contains("code="));
    op.set_auto_user(Some("alice".into()));
    let exchange = |code: &str, verifier: &str| {
        http.post(format!("{issuer}/token"))
            .basic_auth("app", Some("secret"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", "http://127.0.0.1:1/callback"),
                ("code_verifier", verifier),
            ]))
            .send()
    };
    let wrong = exchange(&code, "another-verifier-0123456789abcdef0123")
        .await
        .expect("answer");
    assert_eq!(wrong.status(), 400, "a wrong PKCE verifier");
    // The code was used up by that attempt: the right verifier is too late.
    let late = exchange(&code, verifier).await.expect("answer");
    assert_eq!(late.status(), 400);
    // A fresh code, exchanged right: ID token with sid and auth_time, JWT access token,
    // refresh token; the code cannot be used again.
    let answer = http.get(authorize(&good)).send().await.expect("answer");
    let back = reqwest::Url::parse(&location(&answer)).expect("redirect");
    let code = back
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a code");
    let text = exchange(&code, verifier)
        .await
        .expect("answer")
        .text()
        .await
        .expect("tokens");
    let tokens: Value = serde_json::from_str(&text).expect("JSON tokens");
    let claims = |token: &str| -> Value {
        let payload = token.split('.').nth(1).unwrap_or_default();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap_or_default(),
        )
        .unwrap_or(Value::Null)
    };
    let id = claims(tokens["id_token"].as_str().expect("id token"));
    assert_eq!(
        (id["sub"].as_str(), id["nonce"].as_str()),
        (Some("alice"), Some("n-1"))
    );
    assert!(id["sid"].is_string() && id["auth_time"].is_u64(), "{id}");
    let access = claims(tokens["access_token"].as_str().expect("access token"));
    assert_eq!(access["sub"], "alice");
    let refresh = tokens["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_owned();
    assert_eq!(
        exchange(&code, verifier).await.expect("answer").status(),
        400
    );
    // Refresh tokens rotate: the old one is used up.
    let refresh_with = |token: String| {
        http.post(format!("{issuer}/token"))
            .basic_auth("app", Some("secret"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", token.as_str()),
            ]))
            .send()
    };
    let rotated = refresh_with(refresh.clone()).await.expect("answer");
    assert_eq!(rotated.status(), 200);
    assert_eq!(refresh_with(refresh).await.expect("answer").status(), 400);
    let _ = Arc::clone(&op);
}
