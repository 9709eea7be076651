//! End to end with a real OpenID Provider: node-oidc-provider (npm, certified) on loopback, the
//! example app (`examples/app.rs`) as separate processes for separate clients, a real Redis, and
//! an HTTP client with a cookie jar playing the browser through the OP's login form.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Proc, RedisServer};
use serde_json::{Value, json};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn op_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider")
}

/// node-oidc-provider with `clients`, on a free port.
fn start_op(port: u16, clients: &Value) -> Proc {
    start_op_with(port, clients, &[])
}

/// The same, with more of its settings (`OP_TAMPER_CLIENT`, `OP_PRINT_TOKENS`: op.mjs).
fn start_op_with(port: u16, clients: &Value, env: &[(&str, &str)]) -> Proc {
    let dir = op_dir();
    if !dir.join("node_modules/oidc-provider").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .unwrap_or_else(|e| {
                panic!("npm is needed for the end-to-end tests (install Node.js 20+): {e}")
            });
        assert!(status.success(), "npm ci in tests/oidc-provider failed");
    }
    let mut command = Command::new("node");
    command
        .arg(dir.join("op.mjs"))
        .env("OP_PORT", port.to_string())
        .env("OP_ISSUER", format!("http://127.0.0.1:{port}"))
        .env("OP_CLIENTS", clients.to_string());
    command.envs(env.iter().copied());
    let op = Proc::spawn("node-oidc-provider", command);
    op.wait_for("ready ");
    op
}

struct AppSpec {
    client_id: &'static str,
    port: u16,
    embedded_receiver: bool,
}

/// `examples/existing_app.rs` or its `_before` version: an application that adopts oidc-logout
/// (or has not yet), on tower-sessions-redis-store.
struct ExistingApp {
    spec: AppSpec,
    example: &'static str,
}

impl AppSpec {
    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn client_metadata(&self, backchannel_logout_uri: &str, session_required: bool) -> Value {
        json!({
            "client_id": self.client_id,
            "client_secret": format!("{}-secret", self.client_id),
            "redirect_uris": [format!("{}/callback", self.base())],
            "post_logout_redirect_uris": [format!("{}/logged-out", self.base())],
            "backchannel_logout_uri": backchannel_logout_uri,
            "backchannel_logout_session_required": session_required,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        })
    }

    fn start(&self, issuer: &str, redis_url: &str) -> Proc {
        self.start_example("app", issuer, redis_url)
    }

    fn start_example(&self, example: &'static str, issuer: &str, redis_url: &str) -> Proc {
        self.start_example_with(example, issuer, redis_url, &[])
    }

    fn start_example_with(
        &self,
        example: &'static str,
        issuer: &str,
        redis_url: &str,
        env: &[(&str, &str)],
    ) -> Proc {
        let mut command = Command::new(common::example(example));
        command.envs(env.iter().copied());
        command
            .env("OIDC_LOGOUT_ISSUER", issuer)
            .env("OIDC_LOGOUT_CLIENT_ID", self.client_id)
            .env(
                "OIDC_LOGOUT_CLIENT_SECRET",
                format!("{}-secret", self.client_id),
            )
            .env("OIDC_LOGOUT_REDIS_URL", redis_url)
            .env("APP_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("APP_BASE_URL", self.base())
            .env(
                "APP_SESSION_COOKIE",
                format!("{}_session", self.client_id.replace('-', "_")),
            )
            .env(
                "APP_RECEIVER",
                if self.embedded_receiver { "on" } else { "off" },
            )
            .env("RUST_LOG", "info");
        let app = Proc::spawn(example, command);
        app.wait_for("app listening on");
        app
    }
}

/// A browser: a cookie jar shared by every site on 127.0.0.1 (as real browsers share cookies
/// across ports), redirects followed by hand so every hop is visible.
struct Browser {
    http: reqwest::Client,
}

struct Page {
    url: String,
    status: u16,
    body: String,
}

impl Browser {
    fn new() -> Self {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Self { http }
    }

    async fn follow(&self, mut response: reqwest::Response) -> Page {
        for _ in 0..20 {
            let url = response.url().clone();
            if !response.status().is_redirection() {
                let status = response.status().as_u16();
                return Page {
                    url: url.to_string(),
                    status,
                    body: response.text().await.unwrap_or_default(),
                };
            }
            let location = response
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url.join(l).ok())
                .expect("redirect with a location");
            response = self
                .http
                .get(location)
                .send()
                .await
                .expect("redirect target answers");
        }
        panic!("too many redirects");
    }

    async fn get(&self, url: &str) -> Page {
        let response = self.http.get(url).send().await.expect("request");
        self.follow(response).await
    }

    async fn post(&self, url: &str, form: &[(&str, &str)]) -> Page {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let response = self
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("request");
        self.follow(response).await
    }

    /// Log in to the app at `base` as `sub` through the OP's login and consent forms.
    async fn login(&self, base: &str, sub: &str) {
        let page = self.login_page(base, sub).await;
        assert_eq!(page.status, 200, "{}: {}", page.url, page.body);
        assert!(
            page.body.contains(&format!("Logged in as {sub}")),
            "{}: {}",
            page.url,
            page.body
        );
    }

    /// Go through the OP's forms as `sub`; the app's answer to the callback.
    async fn login_page(&self, base: &str, sub: &str) -> Page {
        let mut page = self.get(&format!("{base}/login")).await;
        for _ in 0..4 {
            if page.url.starts_with(base) {
                break;
            }
            assert_eq!(page.status, 200, "OP page {}: {}", page.url, page.body);
            let action = attribute(&page.body, "action").expect("a form on the OP page");
            let action = reqwest::Url::parse(&page.url)
                .and_then(|u| u.join(&action))
                .expect("form action");
            page = if page.body.contains("name=\"login\"") {
                self.post(
                    action.as_str(),
                    &[("prompt", "login"), ("login", sub), ("password", "any")],
                )
                .await
            } else {
                self.post(action.as_str(), &[("prompt", "consent")]).await
            };
        }
        page
    }

    /// Press the app's logout button and confirm at the OP ("Yes, sign me out").
    async fn logout(&self, base: &str) -> Page {
        let page = self.post(&format!("{base}/logout"), &[]).await;
        assert_eq!(page.status, 200, "{}: {}", page.url, page.body);
        let action = attribute(&page.body, "action").expect("the OP's logout form");
        let xsrf = value_of(&page.body, "xsrf").expect("xsrf");
        let action = reqwest::Url::parse(&page.url)
            .and_then(|u| u.join(&action))
            .expect("action");
        self.post(action.as_str(), &[("xsrf", &xsrf), ("logout", "yes")])
            .await
    }

    async fn me(&self, base: &str) -> u16 {
        self.get(&format!("{base}/me")).await.status
    }
}

/// The first `name="…"` attribute value in an HTML page.
fn attribute(html: &str, name: &str) -> Option<String> {
    let start = html.find(&format!("{name}=\""))? + name.len() + 2;
    let end = html[start..].find('"')? + start;
    Some(html[start..end].replace("&amp;", "&"))
}

/// The value of the hidden input named `name`.
fn value_of(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    attribute(&html[at..], "value")
}

/// (sub, client id, refresh token) of every app session in Redis.
async fn refresh_tokens_in_redis(redis: &RedisServer) -> Vec<(String, String, String)> {
    let client = ::redis::Client::open(redis.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg("oidc-logout:v1:d:*")
        .query_async(&mut conn)
        .await
        .expect("keys");
    let mut tokens = Vec::new();
    for key in keys {
        let data: String = ::redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("record");
        let record: Value = serde_json::from_str(&data).expect("record json");
        let login = &record["data"]["oidc_logout.login"];
        if let (Some(sub), Some(client), Some(token)) = (
            login["sub"].as_str(),
            login["client_id"].as_str(),
            login["refresh_token"].as_str(),
        ) {
            tokens.push((sub.to_owned(), client.to_owned(), token.to_owned()));
        }
    }
    tokens
}

async fn refresh_grant(op_port: u16, client_id: &str, refresh_token: &str) -> Value {
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{op_port}/token"))
        .basic_auth(client_id, Some(format!("{client_id}-secret")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs([
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token),
                ])
                .finish(),
        )
        .send()
        .await
        .expect("token endpoint");
    let text = response.text().await.unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_button_in_one_app_logs_the_user_out_of_the_other() {
    let redis = RedisServer::start();
    let op_port = free_port();
    let issuer = format!("http://127.0.0.1:{op_port}");
    let app1 = AppSpec {
        client_id: "app-1",
        port: free_port(),
        embedded_receiver: true,
    };
    let app2 = AppSpec {
        client_id: "app-2",
        port: free_port(),
        embedded_receiver: true,
    };
    let clients = json!([
        app1.client_metadata(&format!("{}/backchannel-logout", app1.base()), true),
        app2.client_metadata(&format!("{}/backchannel-logout", app2.base()), true),
    ]);
    let op = start_op(op_port, &clients);
    let (_a1, _a2) = (
        app1.start(&issuer, &redis.url()),
        app2.start(&issuer, &redis.url()),
    );

    let alice = Browser::new();
    alice.login(&app1.base(), "alice").await;
    alice.login(&app2.base(), "alice").await;
    let bob = Browser::new();
    bob.login(&app1.base(), "bob").await;
    bob.login(&app2.base(), "bob").await;
    for base in [app1.base(), app2.base()] {
        assert_eq!(alice.me(&base).await, 200);
        assert_eq!(bob.me(&base).await, 200);
    }
    let before = refresh_tokens_in_redis(&redis).await;
    assert_eq!(before.len(), 4, "every app session holds a refresh token");

    // 1. Alice presses logout in app 1 and confirms at the OP.
    let back = alice.logout(&app1.base()).await;
    assert_eq!(back.status, 200, "{}: {}", back.url, back.body);
    assert!(
        back.url.starts_with(&format!("{}/logged-out", app1.base())),
        "{}",
        back.url
    );
    assert!(back.body.contains("You are logged out"), "{}", back.body);
    op.wait_for("backchannel.success app-2 alice");
    assert_eq!(alice.me(&app1.base()).await, 401);
    // App 2 ended its session from the OP's back-channel logout alone.
    assert_eq!(alice.me(&app2.base()).await, 401);
    // 2. Bob is untouched, in both apps.
    assert_eq!(bob.me(&app1.base()).await, 200);
    assert_eq!(bob.me(&app2.base()).await, 200);
    // Alice's refresh tokens are dead at the OP; Bob's still work.
    for (sub, client, token) in &before {
        let answer = refresh_grant(op_port, client, token).await;
        if sub == "alice" {
            assert_eq!(
                answer["error"], "invalid_grant",
                "alice's {client} refresh token: {answer}"
            );
        } else {
            assert!(
                answer.get("access_token").is_some(),
                "bob's {client} refresh token: {answer}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_logout_through_the_standalone_receiver_ends_every_session_of_the_user() {
    let redis = RedisServer::start();
    let op_port = free_port();
    let issuer = format!("http://127.0.0.1:{op_port}");
    let receiver_port = free_port();
    let app = AppSpec {
        client_id: "app-3",
        port: free_port(),
        embedded_receiver: false,
    };
    // Session not required: the OP's logout token names only `sub`.
    let clients = json!([app.client_metadata(
        &format!("http://127.0.0.1:{receiver_port}/backchannel-logout"),
        false
    )]);
    let op = start_op(op_port, &clients);
    let _app = app.start(&issuer, &redis.url());
    let mut receiver = Command::new(env!("CARGO_BIN_EXE_oidc-logout"));
    receiver
        .arg("serve")
        .env("OIDC_LOGOUT_ISSUER", &issuer)
        .env("OIDC_LOGOUT_CLIENT_ID", "app-3")
        .env("OIDC_LOGOUT_CLIENT_SECRET", "app-3-secret")
        .env("OIDC_LOGOUT_REDIS_URL", redis.url())
        .env("OIDC_LOGOUT_LISTEN", format!("127.0.0.1:{receiver_port}"));
    let receiver = Proc::spawn("oidc-logout serve", receiver);
    receiver.wait_for("listening on");

    // Alice on her laptop and her phone: two OP sessions, two app sessions.
    let (laptop, phone, carol) = (Browser::new(), Browser::new(), Browser::new());
    laptop.login(&app.base(), "alice").await;
    phone.login(&app.base(), "alice").await;
    carol.login(&app.base(), "carol").await;
    assert_eq!(phone.me(&app.base()).await, 200);

    let back = laptop.logout(&app.base()).await;
    assert_eq!(back.status, 200, "{}: {}", back.url, back.body);
    op.wait_for("backchannel.success app-3 alice");
    receiver.wait_for("logout applied");
    assert_eq!(laptop.me(&app.base()).await, 401);
    assert_eq!(
        phone.me(&app.base()).await,
        401,
        "a sub logout ends every session of the user"
    );
    assert_eq!(carol.me(&app.base()).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_callbacks_get_a_clear_error_and_no_session() {
    let mut redis = RedisServer::start();
    let op_port = free_port();
    let issuer = format!("http://127.0.0.1:{op_port}");
    let app = AppSpec {
        client_id: "app-5",
        port: free_port(),
        embedded_receiver: true,
    };
    let tampered = AppSpec {
        client_id: "app-6",
        port: free_port(),
        embedded_receiver: true,
    };
    let clients = json!([
        app.client_metadata(&format!("{}/backchannel-logout", app.base()), true),
        tampered.client_metadata(&format!("{}/backchannel-logout", tampered.base()), true),
    ]);
    let _op = start_op_with(op_port, &clients, &[("OP_TAMPER_CLIENT", "app-6")]);
    let _app = app.start(&issuer, &redis.url());
    let _tampered = tampered.start(&issuer, &redis.url());
    // An ID token whose signature does not verify is refused, and nobody is logged in.
    let victim = Browser::new();
    let page = victim.login_page(&tampered.base(), "mallory").await;
    assert_eq!(page.status, 400, "{}: {}", page.url, page.body);
    assert!(
        page.body.contains("the ID token is invalid"),
        "{}",
        page.body
    );
    assert_eq!(victim.me(&tampered.base()).await, 401);
    let browser = Browser::new();
    // No login in progress in this session.
    let page = browser
        .get(&format!("{}/callback?code=abc&state=xyz", app.base()))
        .await;
    assert_eq!(page.status, 400);
    assert!(page.body.contains("no login in progress"), "{}", page.body);
    // A login in progress, but the state does not match.
    let start = browser
        .http
        .get(format!("{}/login", app.base()))
        .send()
        .await
        .expect("login");
    assert!(start.status().is_redirection());
    let page = browser
        .get(&format!("{}/callback?code=abc&state=forged", app.base()))
        .await;
    assert_eq!(page.status, 400);
    assert!(page.body.contains("state does not match"), "{}", page.body);
    assert_eq!(browser.me(&app.base()).await, 401);
    // A real login whose callback is then replayed (reused code) does not log anyone in twice.
    let replay = Browser::new();
    let mut page = replay.get(&format!("{}/login", app.base())).await;
    let mut callback = None;
    for _ in 0..4 {
        let action = attribute(&page.body, "action").expect("form");
        let action = reqwest::Url::parse(&page.url)
            .and_then(|u| u.join(&action))
            .expect("action");
        let form: Vec<(&str, &str)> = if page.body.contains("name=\"login\"") {
            vec![("prompt", "login"), ("login", "dave"), ("password", "x")]
        } else {
            vec![("prompt", "consent")]
        };
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut response = replay
            .http
            .post(action.as_str())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("submit");
        // Follow by hand until the hop to the app's callback, and keep that URL.
        while response.status().is_redirection() {
            let location = response
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let next = response.url().join(&location).expect("location");
            if next
                .as_str()
                .starts_with(&format!("{}/callback", app.base()))
            {
                callback = Some(next.to_string());
                break;
            }
            response = replay.http.get(next).send().await.expect("hop");
        }
        if callback.is_some() {
            break;
        }
        page = replay.follow(response).await;
    }
    let callback = callback.expect("the OP redirects to the callback");
    assert!(
        replay
            .get(&callback)
            .await
            .body
            .contains("Logged in as dave")
    );
    // The same browser starts a new login and brings back the code it already used.
    let start = replay
        .http
        .get(format!("{}/login", app.base()))
        .send()
        .await
        .expect("login");
    let to_op = start
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let new_state = reqwest::Url::parse(&to_op)
        .ok()
        .and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "state")
                .map(|(_, v)| v.into_owned())
        })
        .expect("state in the authorization request");
    let old_code = reqwest::Url::parse(&callback)
        .ok()
        .and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "code")
                .map(|(_, v)| v.into_owned())
        })
        .expect("code");
    let page = replay
        .get(&format!(
            "{}/callback?code={old_code}&state={new_state}",
            app.base()
        ))
        .await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("the code was refused"), "{}", page.body);
    let again = Browser::new();
    let page = again.get(&callback).await;
    assert_eq!(
        page.status, 400,
        "a code used by another browser: {}",
        page.body
    );
    assert_eq!(again.me(&app.base()).await, 401);
    // Redis goes away: a clear 503, no half-written session; back when Redis is.
    redis.stop();
    assert_eq!(replay.me(&app.base()).await, 503);
    let page = Browser::new().get(&format!("{}/login", app.base())).await;
    assert!(page.status >= 500, "{}: {}", page.status, page.body);
    redis.restart();
    let fresh = Browser::new();
    for _ in 0..50 {
        if fresh.me(&app.base()).await == 401 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fresh.login(&app.base(), "erin").await;
    assert_eq!(fresh.me(&app.base()).await, 200);
}

/// Issue 7's inputs end to end: a FusionAuth-shaped webhook and a CAEP SET, each received by the
/// standalone receiver, end a live session of the example app (logged in through the real OP)
/// and make an API's denylist refuse that user's access tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_and_a_caep_event_end_app_sessions_and_deny_their_tokens() {
    use common::signals::{
        SET_AUDIENCE, Transmitter, event, fusionauth_event, fusionauth_hmac_signature, iss_sub,
    };
    use oidc_logout::denylist::TokenFacts;
    use oidc_logout::denylist::sync::{self, DenylistSettings};

    const SECRET: &str = "e2e-fusionauth-hmac-secret-0123456789abcdef";
    let redis = RedisServer::start();
    let op_port = free_port();
    let issuer = format!("http://127.0.0.1:{op_port}");
    let receiver_port = free_port();
    let app = AppSpec {
        client_id: "app-5",
        port: free_port(),
        embedded_receiver: false,
    };
    let clients = json!([app.client_metadata(
        &format!("http://127.0.0.1:{receiver_port}/backchannel-logout"),
        true
    )]);
    let _op = start_op(op_port, &clients);
    let _app = app.start(&issuer, &redis.url());
    let transmitter = Transmitter::start().await;
    let dir = common::topologies::TempDir::new("e2e-signals");
    let config = dir.0.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[[issuers]]\nissuer = \"{issuer}\"\nclients = [{{ id = \"app-5\", secret = \"app-5-secret\" }}]\n\
             access_token_lifetime_secs = 600\n\
             [[transmitters]]\nissuer = \"{}\"\naudiences = [\"{SET_AUDIENCE}\"]\nsubject_issuer = \"{issuer}\"\n\
             [fusionauth]\nhmac_secrets = [\"{SECRET}\"]\ntenants = [{{ tenant_id = \"tenant-1\", issuer = \"{issuer}\" }}]\n",
            transmitter.issuer()
        ),
    )
    .expect("config");
    let mut receiver = Command::new(env!("CARGO_BIN_EXE_oidc-logout"));
    receiver
        .args(["serve", "--config"])
        .arg(&config)
        .env("OIDC_LOGOUT_REDIS_URL", redis.url())
        .env("OIDC_LOGOUT_LISTEN", format!("127.0.0.1:{receiver_port}"));
    let receiver = Proc::spawn("oidc-logout serve", receiver);
    receiver.wait_for("listening on");
    let base = format!("http://127.0.0.1:{receiver_port}");
    let denylist = sync::start(DenylistSettings::new(redis.url(), vec![issuer.clone()]))
        .await
        .expect("denylist");

    let (alice, bob, carol) = (Browser::new(), Browser::new(), Browser::new());
    alice.login(&app.base(), "alice").await;
    bob.login(&app.base(), "bob").await;
    carol.login(&app.base(), "carol").await;
    // What an API knows of each user's access token after validating it.
    let issued = common::now() - 1;
    let token = |sub: &'static str| TokenFacts {
        issuer: &issuer,
        sub: Some(sub),
        sid: None,
        jti: None,
        issued_at: issued,
    };
    assert!(denylist.check(&token("alice")).is_ok());

    // FusionAuth deactivates alice.
    let body = fusionauth_event(
        "user.deactivate",
        "tenant-1",
        json!({ "user": { "id": "alice" } }),
    );
    let response = reqwest::Client::new()
        .post(format!("{base}/webhooks/fusionauth"))
        .header("content-type", "application/json")
        .header(
            "X-FusionAuth-Signature-JWT",
            fusionauth_hmac_signature(&body, SECRET, json!({})),
        )
        .body(body)
        .send()
        .await
        .expect("webhook");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        alice.me(&app.base()).await,
        401,
        "alice's app session ended"
    );
    assert!(
        until_refused(&denylist, &token("alice")).await,
        "and her access tokens are refused"
    );

    // A CAEP transmitter revokes bob's sessions.
    let set = transmitter.sign(&transmitter.set(
        event(oidc_logout::inputs::shared_signals::SESSION_REVOKED),
        Some(iss_sub(&issuer, "bob")),
    ));
    let response = reqwest::Client::new()
        .post(format!("{base}/shared-signals/events"))
        .header("content-type", "application/secevent+jwt")
        .body(set)
        .send()
        .await
        .expect("SET");
    assert_eq!(response.status().as_u16(), 202);
    assert_eq!(bob.me(&app.base()).await, 401, "bob's app session ended");
    assert!(
        until_refused(&denylist, &token("bob")).await,
        "and his access tokens are refused"
    );

    assert_eq!(carol.me(&app.base()).await, 200, "nobody else");
    assert!(denylist.check(&token("carol")).is_ok());
}

/// Whether the denylist refuses the token's user within 5 s (markers travel over pub/sub).
async fn until_refused(
    denylist: &oidc_logout::denylist::Denylist,
    token: &oidc_logout::denylist::TokenFacts<'_>,
) -> bool {
    for _ in 0..100 {
        if denylist.check(token) == Err(oidc_logout::denylist::Refusal::UserRevoked) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

impl ExistingApp {
    fn start(&self, issuer: &str, redis_url: &str) -> Proc {
        self.spec.start_example(self.example, issuer, redis_url)
    }
}

/// The adoption guide's promise (`docs/adopting.md`): an application on tower-sessions-redis-store
/// that adds oidc-logout is logged out when the user logs out in another application of the
/// OP, and its own logout button logs the user out everywhere; the same application before the
/// change is not.
#[tokio::test]
async fn an_existing_app_that_adopts_oidc_logout_is_logged_out_everywhere() {
    let redis = RedisServer::start();
    let op_port = free_port();
    let issuer = format!("http://127.0.0.1:{op_port}");
    let app = AppSpec {
        client_id: "app-1",
        port: free_port(),
        embedded_receiver: true,
    };
    let adopted = ExistingApp {
        spec: AppSpec {
            client_id: "existing-app",
            port: free_port(),
            embedded_receiver: true,
        },
        example: "existing_app",
    };
    let before = ExistingApp {
        spec: AppSpec {
            client_id: "app-before",
            port: free_port(),
            embedded_receiver: true,
        },
        example: "existing_app_before",
    };
    let backchannel = |spec: &AppSpec| format!("{}/backchannel-logout", spec.base());
    let clients = json!([
        app.client_metadata(&backchannel(&app), true),
        adopted
            .spec
            .client_metadata(&backchannel(&adopted.spec), true),
        before
            .spec
            .client_metadata(&backchannel(&before.spec), true),
    ]);
    let op = start_op(op_port, &clients);
    let _running = (
        app.start(&issuer, &redis.url()),
        adopted.start(&issuer, &redis.url()),
        before.start(&issuer, &redis.url()),
    );
    let bases = [app.base(), adopted.spec.base(), before.spec.base()];

    // Alice logs out in the other application: the adopted one ends her session, the one
    // before the change does not.
    let alice = Browser::new();
    for base in &bases {
        alice.login(base, "alice").await;
        assert_eq!(alice.me(base).await, 200, "{base}");
    }
    let back = alice.logout(&app.base()).await;
    assert_eq!(back.status, 200, "{}: {}", back.url, back.body);
    op.wait_for("backchannel.success existing-app alice");
    assert_eq!(alice.me(&app.base()).await, 401);
    assert_eq!(
        alice.me(&adopted.spec.base()).await,
        401,
        "logged out by the OP"
    );
    assert_eq!(
        alice.me(&before.spec.base()).await,
        200,
        "without oidc-logout the OP cannot reach it"
    );

    // Bob presses the adopted application's logout button: he is logged out at the OP, and so
    // in the other application.
    let bob = Browser::new();
    for base in &bases[..2] {
        bob.login(base, "bob").await;
    }
    let back = bob.logout(&adopted.spec.base()).await;
    assert_eq!(back.status, 200, "{}: {}", back.url, back.body);
    assert_eq!(
        back.url,
        format!("{}/", adopted.spec.base()),
        "the browser comes back from the OP's logout to the application's home"
    );
    op.wait_for("backchannel.success app-1 bob");
    assert_eq!(bob.me(&adopted.spec.base()).await, 401);
    assert_eq!(bob.me(&app.base()).await, 401, "logged out everywhere");
}

/// A user disabled at the OP with no push at all (no back-channel logout, webhook or event):
/// under their customer's policy (chosen by the ID token's `tid`), `revalidate_after = 2`, the
/// first request after 2 s finds the OP refusing their refresh token and is refused. A user of
/// another customer, under the default policy, is untouched and makes no OP call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_disabled_at_the_op_without_a_push_loses_access_after_revalidate_after() {
    let redis = RedisServer::start();
    let op_port = free_port();
    let issuer = format!("http://127.0.0.1:{op_port}");
    let app = AppSpec {
        client_id: "app-1",
        port: free_port(),
        embedded_receiver: true,
    };
    let clients = json!([app.client_metadata(&format!("{}/backchannel-logout", app.base()), true)]);
    let op = start_op(op_port, &clients);
    let dir = std::env::temp_dir().join(format!("policies-{}", free_port()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("policies.toml");
    std::fs::write(
        &file,
        "[policies.acme]\nrevalidate_after_secs = 2\n\n\
         [[rules]]\npolicy = \"acme\"\nclaims = { tid = \"acme\" }\n",
    )
    .expect("policies file");
    let path = file.to_string_lossy().into_owned();
    let _app = app.start_example_with(
        "app",
        &issuer,
        &redis.url(),
        &[("APP_SESSION_POLICIES", path.as_str())],
    );

    let alice = Browser::new();
    alice.login(&app.base(), "alice.acme").await;
    let bob = Browser::new();
    bob.login(&app.base(), "bob.globex").await;
    assert_eq!(alice.me(&app.base()).await, 200);
    assert_eq!(bob.me(&app.base()).await, 200);

    // Both are disabled at the OP; nothing is pushed to the application.
    for sub in ["alice.acme", "bob.globex"] {
        let answer = reqwest::Client::new()
            .post(format!("{issuer}/_test/disable?sub={sub}"))
            .send()
            .await
            .expect("OP answers");
        assert!(answer.status().is_success());
    }
    op.drain();
    assert_eq!(
        alice.me(&app.base()).await,
        200,
        "within revalidate_after the session is served without asking the OP"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        alice.me(&app.base()).await,
        401,
        "the first request after revalidate_after finds the user disabled"
    );
    assert_eq!(
        alice.me(&app.base()).await,
        401,
        "and the session stays ended"
    );
    assert_eq!(
        bob.me(&app.base()).await,
        200,
        "the default policy does not revalidate"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls: Vec<String> = op
        .drain()
        .into_iter()
        .filter(|l| l.contains("op-call"))
        .collect();
    assert!(
        calls.iter().any(|l| l.contains("refresh alice.acme")),
        "{calls:?}"
    );
    assert!(
        !calls.iter().any(|l| l.contains("bob.globex")),
        "another customer's session made no OP call: {calls:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// The bound against node-oidc-provider stopped (SIGSTOP: connections accepted, never
/// answered), as an OP that hangs: with `revalidate_after = 2`, `unreachable = "closed"` and a
/// grace of 3 s, bursts of seven parallel requests are served within the grace and never after
/// it; once the OP runs again the session is confirmed and served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_op_cannot_stretch_the_bound() {
    let redis = RedisServer::start();
    let op_port = free_port();
    let issuer = format!("http://127.0.0.1:{op_port}");
    let app = AppSpec {
        client_id: "app-1",
        port: free_port(),
        embedded_receiver: true,
    };
    let clients = json!([app.client_metadata(&format!("{}/backchannel-logout", app.base()), true)]);
    let op = start_op(op_port, &clients);
    let dir = std::env::temp_dir().join(format!("bound-{}", free_port()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("policies.toml");
    std::fs::write(
        &file,
        "[default]\nrevalidate_after_secs = 2\nunreachable = \"closed\"\nunreachable_grace_secs = 3\n",
    )
    .expect("policies file");
    let path = file.to_string_lossy().into_owned();
    let _app = app.start_example_with(
        "app",
        &issuer,
        &redis.url(),
        &[("APP_SESSION_POLICIES", path.as_str())],
    );
    let alice = Browser::new();
    let t0 = Instant::now();
    alice.login(&app.base(), "alice").await;
    assert_eq!(alice.me(&app.base()).await, 200);
    op.signal("STOP");
    let mut answers = Vec::new();
    for at in [3_500, 6_500, 12_000] {
        tokio::time::sleep_until((t0 + Duration::from_millis(at)).into()).await;
        let burst = (0..7).map(|_| async {
            let status = alice.me(&app.base()).await;
            (t0.elapsed(), status)
        });
        answers.extend(futures_util::future::join_all(burst).await);
    }
    op.signal("CONT");
    // The login took its time too: the bound counts from before it, with a second of slack.
    let late: Vec<_> = answers
        .iter()
        .filter(|(at, status)| *status == 200 && *at > Duration::from_secs(6))
        .collect();
    assert!(
        late.is_empty(),
        "served past the bound: {late:?} (all {answers:?})"
    );
    assert!(
        answers.iter().any(|(_, status)| *status == 503),
        "{answers:?}"
    );
    tokio::time::sleep_until((t0 + Duration::from_millis(15_000)).into()).await;
    assert_eq!(
        alice.me(&app.base()).await,
        200,
        "confirmed once the OP answers"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Every value in Redis, as text: strings, hashes, sets, sorted sets and lists.
async fn redis_dump(redis: &RedisServer) -> Vec<(String, String)> {
    let client = ::redis::Client::open(redis.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .expect("keys");
    let mut dump = Vec::new();
    for key in keys {
        let kind: String = ::redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("type");
        let read = match kind.as_str() {
            "string" => ::redis::cmd("GET").arg(&key).clone(),
            "hash" => ::redis::cmd("HGETALL").arg(&key).clone(),
            "set" => ::redis::cmd("SMEMBERS").arg(&key).clone(),
            "zset" => ::redis::cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .clone(),
            "list" => ::redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).clone(),
            // Gone since KEYS (expired), or a stream: read as whatever it holds.
            _ => continue,
        };
        let value: ::redis::Value = read.query_async(&mut conn).await.expect("value");
        dump.push((key, format!("{value:?}")));
    }
    dump
}

/// With `APP_TOKEN_KEYS` the application's session records hold every token sealed: after a
/// login and a refresh, no Redis value contains any token the OP issued, the sealed fields say
/// so, and the tokens still work (the refresh used the sealed refresh token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_at_rest_are_sealed_with_app_token_keys() {
    let redis = RedisServer::start();
    let op_port = free_port();
    let issuer = format!("http://127.0.0.1:{op_port}");
    let app = AppSpec {
        client_id: "app-1",
        port: free_port(),
        embedded_receiver: true,
    };
    let clients = json!([app.client_metadata(&format!("{}/backchannel-logout", app.base()), true)]);
    let op = start_op_with(op_port, &clients, &[("OP_PRINT_TOKENS", "1")]);
    let dir = std::env::temp_dir().join(format!("sealed-{}", free_port()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("policies.toml");
    std::fs::write(
        &file,
        "[policies.acme]\nrevalidate_after_secs = 1\n\n\
         [[rules]]\npolicy = \"acme\"\nclaims = { tid = \"acme\" }\n",
    )
    .expect("policies file");
    let path = file.to_string_lossy().into_owned();
    let _app = app.start_example_with(
        "app",
        &issuer,
        &redis.url(),
        &[
            ("APP_SESSION_POLICIES", path.as_str()),
            (
                "APP_TOKEN_KEYS",
                "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=,\
                 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            ),
        ],
    );

    let alice = Browser::new();
    alice.login(&app.base(), "alice.acme").await;
    assert_eq!(alice.me(&app.base()).await, 200);
    // Past revalidate_after the next request refreshes with the stored refresh token.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(alice.me(&app.base()).await, 200);
    let issued: Vec<String> = op
        .lines_until("op-call refresh alice.acme 200")
        .iter()
        .filter_map(|l| l.split_once("op-issued ").map(|(_, rest)| rest.to_owned()))
        .filter_map(|rest| rest.split_once(' ').map(|(_, token)| token.to_owned()))
        .collect();
    assert!(
        issued.len() >= 5,
        "the OP issued an ID, access and refresh token at login and again at the refresh: {}",
        issued.len()
    );
    let dump = redis_dump(&redis).await;
    for (key, value) in &dump {
        for token in &issued {
            assert!(
                !value.contains(token.as_str()),
                "{key} holds a token the OP issued in the clear"
            );
        }
    }
    let records: Vec<&(String, String)> = dump.iter().filter(|(k, _)| k.contains(":d:")).collect();
    assert!(!records.is_empty(), "the session record is in Redis");
    for (key, value) in records {
        assert!(
            value.contains("sealed:v1:"),
            "{key}: the record's tokens are sealed"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}
