//! Any stack behind a gateway: nginx (`auth_request`) and Caddy (`forward_auth`), from Debian's
//! packages, in front of a small Python API (`examples/any-stack/`), both asking
//! `oidc-logout serve`'s forward-auth check (`/v1/check` on `gateway_listen`) about every
//! request, with a real Redis and the built-in OP. A valid access token passes with its
//! identity; a missing or forged one is refused with a challenge; a back-channel logout, an admin
//! revoke and a SCIM deactivation each make both gateways refuse the user's token (the time from
//! the revocation's 200 to the first refusal is printed; `benches/check.rs` measures it); and
//! when Redis goes away the check fails closed.
//!
//! Needs nginx, caddy and python3 (`./scripts/test` installs them); without them it says so on
//! stderr, in capitals, and checks nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{CLIENT, Op, Proc, RedisServer, endpoint, free_port, now, start};
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "gateway-admin-token-0123456789abcdef0123";
const SCIM_TOKEN: &str = "gateway-scim-token-0123456789abcdef01234";
const APP_TOKEN: &str = "python-app-token-0123456789abcdef0123456";

fn any_stack() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/any-stack")
}

/// `examples/any-stack/<name>` with its placeholders filled, written into `dir`.
fn config(name: &str, dir: &Path, fill: &[(&str, String)]) -> PathBuf {
    let mut text = std::fs::read_to_string(any_stack().join(name)).expect("the example config");
    for (placeholder, value) in fill {
        text = text.replace(placeholder, value);
    }
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the config");
    path
}

/// Wait until `port` on loopback accepts connections; `proc`'s output shows if it never does.
async fn listening(port: u16, proc: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "nothing listens on {port}: {:?}",
            proc.drain()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The Python application.
struct App {
    base: String,
    _proc: Proc,
}

impl App {
    /// Log `sub` in (as its OIDC login would, with the OP session `op-<sub>`): a client holding
    /// the session cookie, and the login's status.
    async fn log_in(&self, sub: &str, auth_time: u64) -> (reqwest::Client, u16) {
        let browser = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .expect("client");
        let status = browser
            .post(format!("{}/login", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("sub={sub}&sid=op-{sub}&auth_time={auth_time}"))
            .send()
            .await
            .expect("the app answers")
            .status()
            .as_u16();
        (browser, status)
    }

    async fn me(&self, browser: &reqwest::Client) -> u16 {
        browser
            .get(format!("{}/me", self.base))
            .send()
            .await
            .expect("the app answers")
            .status()
            .as_u16()
    }

    /// Wait until the app sees `browser`'s session ended (`/me` answers 401).
    async fn until_ended(&self, browser: &reqwest::Client, what: &str) -> Duration {
        let started = Instant::now();
        loop {
            match self.me(browser).await {
                401 => return started.elapsed(),
                200 => {}
                other => panic!("{what}: the app answered {other}"),
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{what}: the app still sees the session live"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

struct Gateway {
    name: &'static str,
    base: String,
    _proc: Proc,
}

/// An access token of `sub` for the API, issued a few seconds ago.
fn access_token(op: &Op, sub: &str) -> String {
    let claims = json!({
        "iss": op.issuer(),
        "sub": sub,
        "sid": format!("op-{sub}"),
        "aud": "orders-api",
        "iat": now() - 5,
        "exp": now() + 600,
        "jti": format!("at-{sub}-{}", now()),
    });
    op.sign_with(&op.key, &[("typ", Value::from("at+jwt"))], &claims)
}

async fn call(http: &reqwest::Client, url: &str, token: Option<&str>) -> (u16, String, String) {
    let mut request = http.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the gateway answers");
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, challenge, response.text().await.unwrap_or_default())
}

/// Wait until every gateway refuses `token` (401); returns how long the slowest took.
async fn until_refused(http: &reqwest::Client, gateways: &[Gateway], token: &str) -> Duration {
    let started = Instant::now();
    for gateway in gateways {
        loop {
            let (status, _, body) =
                call(http, &format!("{}/orders", gateway.base), Some(token)).await;
            if status == 401 {
                break;
            }
            assert_eq!(status, 200, "{}: {body}", gateway.name);
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{} still lets the revoked token through",
                gateway.name
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    started.elapsed()
}

fn missing_tools() -> Option<String> {
    for tool in ["nginx", "caddy", "python3"] {
        let found = Command::new(tool)
            .arg(if tool == "nginx" { "-v" } else { "--version" })
            .output()
            .is_ok();
        if !found {
            return Some(format!(
                "{tool} is not installed (Debian: apt-get install nginx caddy python3)"
            ));
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_and_caddy_refuse_a_revoked_users_token_at_a_python_api() {
    if let Some(why) = missing_tools() {
        eprintln!("SKIPPED: NO GATEWAY TEST RAN: {why}");
        return;
    }
    let mut redis = RedisServer::start();
    let op = Op::start().await;
    let dir = std::env::temp_dir().join(format!("oidc-logout-gateway-{}", free_port()));
    std::fs::create_dir_all(&dir).expect("temp dir");

    // The API, written in Python.
    let api_port = free_port();
    let mut command = Command::new("python3");
    command
        .arg(any_stack().join("api.py"))
        .env("API_PORT", api_port.to_string());
    let api = Proc::spawn("api.py", command);
    api.wait_for("api listening");

    // The receiver, with the check on its gateway listener.
    let check_port = free_port();
    let settings = dir.join("oidc-logout.toml");
    std::fs::write(
        &settings,
        format!(
            "[check]\naudiences = [\"orders-api\"]\nmax_unsynced_secs = 1\n\n\
             [[applications]]\nname = \"shop\"\ntokens = [\"{APP_TOKEN}\"]\nissuer = \"{}\"\n",
            op.issuer()
        ),
    )
    .expect("settings");
    let redis_url = redis.url();
    let check = format!("127.0.0.1:{check_port}");
    let running = start(
        &["serve", "--config", &settings.to_string_lossy()],
        &[
            ("OIDC_LOGOUT_ISSUER", op.issuer()),
            ("OIDC_LOGOUT_CLIENT_ID", CLIENT),
            ("OIDC_LOGOUT_REDIS_URL", &redis_url),
            ("OIDC_LOGOUT_LISTEN", "127.0.0.1:0"),
            ("OIDC_LOGOUT_GATEWAY_LISTEN", &check),
            ("OIDC_LOGOUT_ADMIN_TOKENS", ADMIN_TOKEN),
            ("OIDC_LOGOUT_SCIM_TOKENS", SCIM_TOKEN),
        ],
    );
    let receiver = endpoint(&running);
    running.wait_for("forward-auth check on");

    // The application, in Python too, keeping its sessions through the sessions API.
    let app_port = free_port();
    let mut command = Command::new("python3");
    command
        .arg(any_stack().join("app.py"))
        .env("APP_PORT", app_port.to_string())
        .env("SESSIONS_API", format!("http://{check}"))
        .env("APP_TOKEN", APP_TOKEN);
    let app = Proc::spawn("app.py", command);
    app.wait_for("app listening");
    let app = App {
        base: format!("http://127.0.0.1:{app_port}"),
        _proc: app,
    };
    let main = receiver.trim_end_matches("/backchannel-logout").to_owned();

    // nginx and Caddy in front of the API.
    let api_address = format!("127.0.0.1:{api_port}");
    let (nginx_port, caddy_port) = (free_port(), free_port());
    let nginx_conf = config(
        "nginx.conf",
        &dir,
        &[
            ("@LISTEN@", format!("127.0.0.1:{nginx_port}")),
            ("@CHECK@", check.clone()),
            ("@API@", api_address.clone()),
            ("@PREFIX@", dir.to_string_lossy().into_owned()),
        ],
    );
    let mut command = Command::new("nginx");
    command.arg("-p").arg(&dir).arg("-c").arg(&nginx_conf);
    let nginx = Proc::spawn("nginx", command);
    listening(nginx_port, &nginx).await;
    let caddyfile = config(
        "Caddyfile",
        &dir,
        &[
            ("@LISTEN@", format!("127.0.0.1:{caddy_port}")),
            ("@CHECK@", check.clone()),
            ("@API@", api_address),
        ],
    );
    let mut command = Command::new("caddy");
    command
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&caddyfile)
        .env("XDG_DATA_HOME", &dir)
        .env("XDG_CONFIG_HOME", &dir);
    let caddy = Proc::spawn("caddy", command);
    listening(caddy_port, &caddy).await;
    let gateways = [
        Gateway {
            name: "nginx",
            base: format!("http://127.0.0.1:{nginx_port}"),
            _proc: nginx,
        },
        Gateway {
            name: "caddy",
            base: format!("http://127.0.0.1:{caddy_port}"),
            _proc: caddy,
        },
    ];
    let http = reqwest::Client::new();

    // A valid token passes with its identity; none, a forged one, or one for another audience
    // do not, and the refusal carries the check's challenge.
    let alice = access_token(&op, "alice");
    let mut for_another_api: Value = json!({
        "iss": op.issuer(), "sub": "alice", "aud": "billing-api", "iat": now(), "exp": now() + 600,
    });
    let other = op.sign_with(&op.key, &[("typ", Value::from("at+jwt"))], &for_another_api);
    for_another_api["aud"] = "orders-api".into();
    let forged = {
        let genuine = op.sign_with(&op.key, &[("typ", Value::from("at+jwt"))], &for_another_api);
        let mut parts: Vec<&str> = genuine.split('.').collect();
        let payload = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            json!({"iss": op.issuer(), "sub": "mallory", "aud": "orders-api", "exp": now() + 600})
                .to_string(),
        );
        parts[1] = &payload;
        parts.join(".")
    };
    for gateway in &gateways {
        let url = format!("{}/orders", gateway.base);
        let (status, _, body) = call(&http, &url, Some(&alice)).await;
        assert_eq!(status, 200, "{}: {body}", gateway.name);
        let body: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(body["orders_of"], "alice", "{}", gateway.name);
        assert_eq!(body["sid"], "op-alice", "{}", gateway.name);
        let (status, challenge, _) = call(&http, &url, None).await;
        assert_eq!(
            (status, challenge.as_str()),
            (401, "Bearer"),
            "{}",
            gateway.name
        );
        for (what, token) in [("forged", &forged), ("another API's", &other)] {
            let (status, challenge, _) = call(&http, &url, Some(token)).await;
            assert_eq!(status, 401, "{}: a {what} token", gateway.name);
            assert!(
                challenge.contains("invalid_token"),
                "{}: {challenge}",
                gateway.name
            );
        }
    }

    // Each user also has a session in the Python application.
    let sessions = [
        app.log_in("alice", now() - 10).await,
        app.log_in("bob", now() - 10).await,
        app.log_in("carol", now() - 10).await,
    ];
    for (browser, status) in &sessions {
        assert_eq!(*status, 200);
        assert_eq!(app.me(browser).await, 200);
    }

    // A back-channel logout of alice.
    let logout = op.sign(&op.claims(Some("alice"), None));
    let answer = http
        .post(&receiver)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("logout_token={logout}"))
        .send()
        .await
        .expect("logout");
    assert_eq!(answer.status(), 200);
    let took = until_refused(&http, &gateways, &alice).await;
    eprintln!("back-channel logout: refused at both gateways {took:?} after the 200");
    let took = app.until_ended(&sessions[0].0, "back-channel logout").await;
    eprintln!("back-channel logout: the Python app saw its session ended {took:?} later");
    // A late registration of a session the logout covers is refused: log in again.
    assert_eq!(app.log_in("alice", now() - 10).await.1, 401);
    let (again, status) = app.log_in("alice", now() + 1).await;
    assert_eq!((status, app.me(&again).await), (200, 200));
    // The application's own logout ends it.
    let out = again
        .post(format!("{}/logout", app.base))
        .send()
        .await
        .expect("logout");
    assert_eq!(out.status(), 200);
    assert_eq!(app.me(&again).await, 401);

    // An admin revoke of bob.
    let bob = access_token(&op, "bob");
    assert_eq!(
        call(&http, &format!("{}/orders", gateways[0].base), Some(&bob))
            .await
            .0,
        200
    );
    let answer = http
        .post(format!("{main}/admin/v1/users/revoke"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(json!({"issuer": op.issuer(), "sub": "bob"}).to_string())
        .send()
        .await
        .expect("revoke");
    assert_eq!(answer.status(), 200);
    let took = until_refused(&http, &gateways, &bob).await;
    eprintln!("admin revoke: refused at both gateways {took:?} after the 200");
    app.until_ended(&sessions[1].0, "admin revoke").await;

    // A SCIM deactivation of carol.
    let carol = access_token(&op, "carol");
    assert_eq!(
        call(&http, &format!("{}/orders", gateways[1].base), Some(&carol))
            .await
            .0,
        200
    );
    let created: Value = serde_json::from_str(
        &http
            .post(format!("{main}/scim/v2/Users"))
            .bearer_auth(SCIM_TOKEN)
            .header("content-type", "application/scim+json")
            .body(
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                   "userName": "carol@example.com", "externalId": "carol", "active": true})
                .to_string(),
            )
            .send()
            .await
            .expect("SCIM create")
            .text()
            .await
            .expect("SCIM user"),
    )
    .expect("a SCIM user");
    let id = created["id"].as_str().expect("an id");
    let answer = http
        .patch(format!("{main}/scim/v2/Users/{id}"))
        .bearer_auth(SCIM_TOKEN)
        .header("content-type", "application/scim+json")
        .body(
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                   "Operations": [{"op": "replace", "path": "active", "value": false}]})
            .to_string(),
        )
        .send()
        .await
        .expect("SCIM deactivate");
    assert_eq!(answer.status(), 200);
    let took = until_refused(&http, &gateways, &carol).await;
    eprintln!("SCIM deactivation: refused at both gateways {took:?} after the 200");
    app.until_ended(&sessions[2].0, "SCIM deactivation").await;

    // Redis goes away: once the view has been out of sync for a second, nothing passes.
    let dave = access_token(&op, "dave");
    assert_eq!(
        call(&http, &format!("{}/orders", gateways[0].base), Some(&dave))
            .await
            .0,
        200
    );
    redis.stop();
    let deadline = Instant::now() + Duration::from_secs(20);
    for gateway in &gateways {
        loop {
            let (status, _, _) =
                call(&http, &format!("{}/orders", gateway.base), Some(&dave)).await;
            if status >= 500 {
                break;
            }
            assert_eq!(status, 200, "{}", gateway.name);
            assert!(
                Instant::now() < deadline,
                "{} still lets tokens through without Redis",
                gateway.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    drop(api);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_denylist_mode_the_check_only_looks_tokens_up() {
    let redis = RedisServer::start();
    let op = Op::start().await;
    let check = format!("127.0.0.1:{}", free_port());
    let settings = std::env::temp_dir().join(format!("oidc-logout-check-{}.toml", free_port()));
    std::fs::write(&settings, "[check]\nmode = \"denylist\"\n").expect("settings");
    let redis_url = redis.url();
    let running = start(
        &["serve", "--config", &settings.to_string_lossy()],
        &[
            ("OIDC_LOGOUT_ISSUER", op.issuer()),
            ("OIDC_LOGOUT_CLIENT_ID", CLIENT),
            ("OIDC_LOGOUT_REDIS_URL", &redis_url),
            ("OIDC_LOGOUT_LISTEN", "127.0.0.1:0"),
            ("OIDC_LOGOUT_GATEWAY_LISTEN", &check),
            ("OIDC_LOGOUT_ADMIN_TOKENS", ADMIN_TOKEN),
        ],
    );
    let receiver = endpoint(&running);
    running.wait_for("forward-auth check on");
    let main = receiver.trim_end_matches("/backchannel-logout").to_owned();
    let url = format!("http://{check}/v1/check");
    let http = reqwest::Client::new();
    // The API verifies tokens itself: here a token is only looked up, so its signature does
    // not matter, and nothing vouches for its identity (no identity headers).
    let unsigned = |issuer: &str, sub: &str| {
        let encode = |v: Value| {
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                v.to_string(),
            )
        };
        format!(
            "{}.{}.c2ln",
            encode(json!({"alg": "RS256", "typ": "at+jwt"})),
            encode(json!({"iss": issuer, "sub": sub, "iat": now() - 5, "exp": now() + 600}))
        )
    };
    let erin = unsigned(op.issuer(), "erin");
    let answer = http
        .get(&url)
        .bearer_auth(&erin)
        .send()
        .await
        .expect("check");
    assert_eq!(answer.status(), 200);
    assert!(answer.headers().get("x-auth-sub").is_none());
    // Another issuer's token, or none, is refused.
    let elsewhere = unsigned("https://elsewhere.example", "erin");
    let answer = http
        .get(&url)
        .bearer_auth(&elsewhere)
        .send()
        .await
        .expect("check");
    assert_eq!(answer.status(), 401);
    assert_eq!(http.get(&url).send().await.expect("check").status(), 401);
    // Revoked: refused.
    let revoked = http
        .post(format!("{main}/admin/v1/users/revoke"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(json!({"issuer": op.issuer(), "sub": "erin"}).to_string())
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), 200);
    let started = Instant::now();
    loop {
        let status = http
            .get(&url)
            .bearer_auth(&erin)
            .send()
            .await
            .expect("check")
            .status();
        if status == 401 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "still allowed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = std::fs::remove_file(&settings);
}
