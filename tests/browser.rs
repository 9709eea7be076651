//! In a real browser: headless Chromium, driven over WebDriver (chromedriver), logs in to two
//! instances of `examples/app` at an OP on another site than the applications (the OP at
//! `http://localhost:P`, the applications at `http://127.0.0.1:A`, as with any hosted IdP),
//! presses the logout button in one, and finds the other logged out; and the session cookie the
//! browser holds is `HttpOnly` and `SameSite=Lax`. Once with the test OP, once with
//! node-oidc-provider.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`./scripts/test` installs them). Without
//! them each test says so on stderr, in capitals, and returns without checking anything.

mod browser_support;
mod common;

use std::process::Command;
use std::sync::Arc;

use browser_support::{Driver, consent, op_dir, skipped};
use common::{Proc, free_port};
use oidc_logout::test_op::{Client, SigningAlg, SigningKey, TestOp};
use serde_json::{Value, json};

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
