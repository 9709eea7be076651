//! In a real browser: headless Chromium, driven over WebDriver (chromedriver), logs in to two
//! instances of `examples/app` at an OP on another site than the applications (the OP at
//! `http://localhost:P`, the applications at `http://127.0.0.1:A`, as with any hosted IdP),
//! presses the logout button in one, and finds the other logged out; and the session cookie the
//! browser holds is `HttpOnly` and `SameSite=Lax`. Once with the test OP, once with
//! node-oidc-provider.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`./scripts/test` installs them). Without
//! them each test says so on stderr, in capitals, and returns without checking anything.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{Proc, free_port};
use oidc_logout::test_op::{Client, SigningAlg, SigningKey, TestOp};
use serde_json::{Value, json};

/// The few WebDriver (W3C) commands these tests need, over plain HTTP to chromedriver.
struct Driver {
    http: reqwest::Client,
    session: String,
    _chromedriver: Proc,
}

impl Driver {
    /// A headless Chromium session, or why there cannot be one.
    async fn start() -> Result<Self, String> {
        for tool in ["chromium", "chromedriver"] {
            if Command::new(tool).arg("--version").output().is_err() {
                return Err(format!(
                    "{tool} is not installed (Debian: apt-get install chromium chromium-driver)"
                ));
            }
        }
        let port = free_port();
        let mut command = Command::new("chromedriver");
        command.arg(format!("--port={port}"));
        let chromedriver = Proc::spawn("chromedriver", command);
        chromedriver.wait_for("started successfully");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
            },
        }}});
        let answer: Value = serde_json::from_str(
            &http
                .post(format!("{base}/session"))
                .body(capabilities.to_string())
                .send()
                .await
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        let session = answer["value"]["sessionId"]
            .as_str()
            .ok_or_else(|| format!("chromedriver would not start a session: {answer}"))?;
        Ok(Self {
            http,
            session: format!("{base}/session/{session}"),
            _chromedriver: chromedriver,
        })
    }

    async fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        match self.try_command(method, path, body).await {
            Ok(value) => value,
            Err(answer) => panic!("WebDriver {method} {path}: {answer}"),
        }
    }

    /// A command whose WebDriver error is the caller's to judge (a page in mid-navigation has
    /// no body yet).
    async fn try_command(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Value> {
        let url = format!("{}{path}", self.session);
        let request = match method {
            "GET" => self.http.get(url),
            _ => self
                .http
                .post(url)
                .body(body.unwrap_or_else(|| json!({})).to_string()),
        };
        let text = request
            .send()
            .await
            .expect("chromedriver answers")
            .text()
            .await
            .expect("body");
        let answer: Value = serde_json::from_str(&text).expect("JSON");
        if answer["value"].get("error").is_some() {
            return Err(answer);
        }
        Ok(answer["value"].clone())
    }

    async fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn url(&self) -> String {
        self.command("GET", "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The page's text; empty while a navigation has not given it a body yet.
    async fn text(&self) -> String {
        let Ok(element) = self
            .try_command(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": "body"})),
            )
            .await
        else {
            return String::new();
        };
        let Some(body) = element
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
        else {
            return String::new();
        };
        self.try_command("GET", &format!("/element/{body}/text"), None)
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    async fn find(&self, css: &str) -> String {
        let element = self
            .command(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        element
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .expect("an element")
            .to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.command(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.command("POST", &format!("/element/{element}/click"), None)
            .await;
    }

    async fn cookies(&self) -> Vec<Value> {
        self.command("GET", "/cookie", None)
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Wait (a few seconds at most) until the page's text holds `needle`.
    async fn until_text(&self, needle: &str) -> String {
        let mut text = String::new();
        for _ in 0..50 {
            text = self.text().await;
            if text.contains(needle) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{needle:?} never showed at {}: {text}", self.url().await);
    }

    async fn quit(&self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

fn skipped(why: &str) {
    eprintln!("SKIPPED: NO BROWSER TEST RAN: {why}");
}

struct App {
    base: String,
    cookie: String,
    _proc: Proc,
}

/// `examples/app` for client `id` of `issuer`, its sessions in this process only.
fn start_app(id: &str, issuer: &str, port: u16) -> App {
    let base = format!("http://127.0.0.1:{port}");
    let cookie = format!("{}_session", id.replace('-', "_"));
    let mut command = Command::new(common::example("app"));
    command
        .env("OIDC_LOGOUT_ISSUER", issuer)
        .env("OIDC_LOGOUT_CLIENT_ID", id)
        .env("OIDC_LOGOUT_CLIENT_SECRET", format!("{id}-secret"))
        .env("APP_LISTEN", format!("127.0.0.1:{port}"))
        .env("APP_BASE_URL", &base)
        .env("APP_SESSION_COOKIE", &cookie)
        .env("RUST_LOG", "info");
    let proc = Proc::spawn("app", command);
    proc.wait_for("app listening on");
    App {
        base,
        cookie,
        _proc: proc,
    }
}

/// The session cookie the browser holds for `app`: HttpOnly, SameSite=Lax.
async fn check_cookie(driver: &Driver, app: &App) {
    let cookies = driver.cookies().await;
    let session = cookies
        .iter()
        .find(|c| c["name"] == app.cookie.as_str())
        .unwrap_or_else(|| panic!("no {} cookie: {cookies:?}", app.cookie));
    assert_eq!(session["httpOnly"], true, "{session}");
    assert_eq!(session["sameSite"], "Lax", "{session}");
}

/// Log in, SSO into the second app (`sso`: what the OP asks then, if anything), log out in the
/// first: the second shows the user logged out.
async fn the_flow(
    driver: &Driver,
    apps: &[App; 2],
    log_in: impl AsyncFn(&Driver),
    sso: impl AsyncFn(&Driver),
) {
    driver.goto(&format!("{}/login", apps[0].base)).await;
    log_in(driver).await;
    driver.until_text("Logged in as alice").await;
    assert!(driver.url().await.starts_with(&apps[0].base));
    check_cookie(driver, &apps[0]).await;
    driver.goto(&format!("{}/login", apps[1].base)).await;
    sso(driver).await;
    driver.until_text("Logged in as alice").await;
    check_cookie(driver, &apps[1]).await;
    // The logout button of the first app.
    driver.goto(&format!("{}/", apps[0].base)).await;
    driver.click("form[action='/logout'] button").await;
}

async fn after_logout(driver: &Driver, apps: &[App; 2]) {
    driver.until_text("You are logged out").await;
    assert!(
        driver
            .url()
            .await
            .starts_with(&format!("{}/logged-out", apps[0].base))
    );
    driver.goto(&format!("{}/", apps[1].base)).await;
    driver.until_text("Not logged in").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_logs_in_across_sites_at_the_test_op_and_one_logout_reaches_both_apps() {
    let driver = match Driver::start().await {
        Ok(driver) => driver,
        Err(why) => return skipped(&why),
    };
    // The OP on another site than the applications: localhost against 127.0.0.1.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let issuer = format!(
        "http://localhost:{}",
        listener.local_addr().expect("addr").port()
    );
    let key = SigningKey::generate(SigningAlg::Rs256).expect("key");
    let op = TestOp::new(issuer.clone(), vec![Arc::new(key)]);
    let router = op.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let ports = [free_port(), free_port()];
    for (i, port) in ports.iter().enumerate() {
        let id = format!("app-{}", i + 1);
        op.register_client(Client::new(
            &id,
            format!("{id}-secret"),
            format!("http://127.0.0.1:{port}"),
        ));
    }
    let apps = [
        start_app("app-1", &issuer, ports[0]),
        start_app("app-2", &issuer, ports[1]),
    ];
    the_flow(
        &driver,
        &apps,
        async |driver: &Driver| {
            assert!(driver.url().await.starts_with(&issuer));
            driver.type_into("input[name=username]", "alice").await;
            driver.click("button[type=submit]").await;
        },
        async |_: &Driver| {},
    )
    .await;
    after_logout(&driver, &apps).await;
    driver.quit().await;
}

/// node-oidc-provider's consent pages (one per client and grant), until the application answers.
async fn consent(driver: &Driver) {
    for _ in 0..50 {
        let url = driver.url().await;
        if !url.contains("/interaction/") {
            break;
        }
        if driver.text().await.contains("Continue") {
            driver.click("button[type=submit]").await;
            // One click per page: wait for the navigation it starts.
            for _ in 0..50 {
                if driver.url().await != url {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn op_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_logs_in_across_sites_at_node_oidc_provider_and_one_logout_reaches_both_apps() {
    let driver = match Driver::start().await {
        Ok(driver) => driver,
        Err(why) => return skipped(&why),
    };
    if !op_dir().join("node_modules/oidc-provider").exists() {
        return skipped("node-oidc-provider is not installed (./scripts/test runs npm ci)");
    }
    let op_port = free_port();
    let issuer = format!("http://localhost:{op_port}");
    let ports = [free_port(), free_port()];
    let clients: Vec<Value> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let base = format!("http://127.0.0.1:{port}");
            json!({
                "client_id": format!("app-{}", i + 1),
                "client_secret": format!("app-{}-secret", i + 1),
                "redirect_uris": [format!("{base}/callback")],
                "post_logout_redirect_uris": [format!("{base}/logged-out")],
                "backchannel_logout_uri": format!("{base}/backchannel-logout"),
                "backchannel_logout_session_required": true,
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
            })
        })
        .collect();
    let mut command = Command::new("node");
    command
        .arg(op_dir().join("op.mjs"))
        .env("OP_PORT", op_port.to_string())
        .env("OP_ISSUER", &issuer)
        .env("OP_CLIENTS", Value::from(clients).to_string());
    let op = Proc::spawn("node-oidc-provider", command);
    op.wait_for("ready ");
    let apps = [
        start_app("app-1", &issuer, ports[0]),
        start_app("app-2", &issuer, ports[1]),
    ];
    the_flow(
        &driver,
        &apps,
        async |driver: &Driver| {
            assert!(driver.url().await.starts_with(&issuer));
            driver.type_into("input[name=login]", "alice").await;
            driver.type_into("input[name=password]", "any").await;
            driver.click("button[type=submit]").await;
            consent(driver).await;
        },
        consent,
    )
    .await;
    // node-oidc-provider asks to confirm the logout.
    driver.until_text("sign").await;
    driver.click("button[name=logout][value=yes]").await;
    after_logout(&driver, &apps).await;
    op.wait_for("backchannel.success app-2 alice");
    driver.quit().await;
}
