//! The console in a real browser: `oidc-logout serve` with Redis and node-oidc-provider (on
//! another site, `localhost` against the console's `127.0.0.1`, as a hosted IdP is), driven by
//! headless Chromium. Sign-in with a break-glass admin token and through the OP (an
//! administrator by the `groups` claim; another user refused), a search for a user with two
//! sessions, ending one (the other stays, in Redis), revoking the user (the denylist marker in
//! Redis), the activity page showing both; and the refusals: every page before sign-in, a form
//! without its CSRF token, a wrong token. With `CONSOLE_SCREENSHOTS=<dir>` it saves the
//! screenshots of docs/console.md there.
//!
//! Needs Debian's `chromium` and `chromium-driver` and the test OP's Node packages
//! (`./scripts/test` installs them); without them it says so and checks nothing.

mod browser_support;
mod common;

use std::path::PathBuf;
use std::process::Command;

use browser_support::{Driver, consent, op_dir, skipped};
use common::{Proc, RedisServer, deny_markers, free_port, index_on, now, start};
use oidc_logout::SessionIndex as _;
use oidc_logout::session_store::{Login, OidcSessionStore};
use serde_json::json;

const TOKEN: &str = "console-break-glass-0123456789abcdef0123";
const SCIM_TOKEN: &str = "scim-client-token-0123456789abcdef012345";

/// A live session of `sub` in application `client`, as the session store writes it.
async fn login(
    store: &OidcSessionStore<oidc_logout::RedisIndex>,
    issuer: &str,
    sub: &str,
    client: &str,
) -> String {
    let login = Login {
        issuer: issuer.to_owned(),
        sub: sub.to_owned(),
        client_id: Some(client.to_owned()),
        sid: Some(format!("op-{sub}-{client}")),
        auth_time: now() - 600,
        logged_in_at: now() - 600,
        policy: None,
        id_token: None,
        refresh_token: None,
        access_token: None,
        customer: None,
    };
    common::store_login(store, &login).await
}

struct Setup {
    redis: RedisServer,
    _op: Proc,
    serve: Proc,
    console: String,
    main: String,
    issuer: String,
}

/// Redis, node-oidc-provider with the console's client, and `oidc-logout serve` with the
/// console on its admin listener.
fn set_up(redis: RedisServer) -> Setup {
    let op_port = free_port();
    let admin_port = free_port();
    let main_port = free_port();
    let issuer = format!("http://localhost:{op_port}");
    let console = format!("http://127.0.0.1:{admin_port}");
    let clients = json!([{
        "client_id": "console",
        "client_secret": "console-secret",
        "redirect_uris": [format!("{console}/console/callback")],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
    }]);
    let mut command = Command::new("node");
    command
        .arg(op_dir().join("op.mjs"))
        .env("OP_PORT", op_port.to_string())
        .env("OP_ISSUER", &issuer)
        .env("OP_CLIENTS", clients.to_string());
    let op = Proc::spawn("node-oidc-provider", command);
    op.wait_for("ready ");
    let config = std::env::temp_dir().join(format!("oidc-logout-console-{admin_port}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"listen = "127.0.0.1:{main_port}"
admin_listen = "127.0.0.1:{admin_port}"
redis_url = "{redis}"
admin_tokens = ["{TOKEN}"]

[[issuers]]
issuer = "{issuer}"
clients = ["app-1", "app-2"]

[[scim]]
issuer = "{issuer}"
tokens = ["{SCIM_TOKEN}"]

[console]
issuer = "{issuer}"
client_id = "console"
client_secret = "console-secret"
redirect_uri = "{console}/console/callback"
admin_values = ["oidc-logout-admins"]
# Plain http on loopback: no Secure cookies (a real console is behind https).
secure_cookies = false
"#,
            redis = redis.url()
        ),
    )
    .expect("write the settings");
    let serve = start(&["serve", "--config", &config.to_string_lossy()], &[]);
    serve.wait_for("admin API on http://");
    Setup {
        redis,
        _op: op,
        serve,
        console,
        main: format!("http://127.0.0.1:{main_port}"),
        issuer,
    }
}

fn screenshots() -> Option<PathBuf> {
    std::env::var_os("CONSOLE_SCREENSHOTS").map(PathBuf::from)
}

async fn shoot(driver: &Driver, name: &str) {
    if let Some(dir) = screenshots() {
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        driver.screenshot(&dir.join(format!("{name}.png"))).await;
    }
}

/// The status and `Location` of a request without following redirects.
async fn status_of(request: reqwest::RequestBuilder) -> (u16, String) {
    let response = request.send().await.expect("the console answers");
    let location = response
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (response.status().as_u16(), location)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_finds_a_user_ends_a_session_revokes_them_and_sees_it_in_the_activity() {
    let driver = match Driver::start().await {
        Ok(driver) => driver,
        Err(why) => return skipped(&why),
    };
    if !op_dir().join("node_modules/oidc-provider").exists() {
        return skipped("node-oidc-provider is not installed (./scripts/test runs npm ci)");
    }
    let redis = RedisServer::start();
    let index = index_on(&redis).await;
    let store = OidcSessionStore::new(index.clone());
    let setup = set_up(redis);
    let (console, issuer) = (&setup.console, &setup.issuer);
    let first = login(&store, issuer, "bob", "app-1").await;
    let second = login(&store, issuer, "bob", "app-2").await;
    login(&store, issuer, "carol", "app-1").await;

    // Before sign-in, every page sends to the sign-in page and every form is refused.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    for page in [
        "/console",
        "/console?q=bob",
        "/console/user?issuer=x&sub=bob",
        "/console/activity",
    ] {
        let (status, location) = status_of(http.get(format!("{console}{page}"))).await;
        assert_eq!(
            (status, location.as_str()),
            (303, "/console/sign-in"),
            "{page}"
        );
    }
    for form in ["/console/act", "/console/sign-out"] {
        let (status, _) = status_of(
            http.post(format!("{console}{form}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("action=revoke&issuer={issuer}&sub=bob")),
        )
        .await;
        assert_eq!(status, 403, "{form}");
    }
    // The sign-in page's headers: no framing, no script, no caching.
    let page = http
        .get(format!("{console}/console/sign-in"))
        .send()
        .await
        .expect("sign-in page");
    let header = |name: &str| {
        page.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(header("content-security-policy").contains("frame-ancestors 'none'"));
    assert!(!header("content-security-policy").contains("script-src"));
    assert_eq!(header("x-frame-options"), "DENY");
    assert_eq!(header("cache-control"), "no-store");

    // A wrong token is refused; the right one signs in.
    driver.window(1280, 800).await;
    driver.goto(&format!("{console}/console")).await;
    driver.until_text("Admin token").await;
    shoot(&driver, "sign-in").await;
    driver
        .type_into("input[name=token]", "not-the-token-0123456789abcdef0123456")
        .await;
    driver
        .click("form[action='/console/sign-in/token'] button")
        .await;
    driver.until_text("The token is not accepted").await;
    driver.type_into("input[name=token]", TOKEN).await;
    driver
        .click("form[action='/console/sign-in/token'] button")
        .await;
    driver.until_text("Find a user").await;
    let cookies = driver.cookies().await;
    let cookie = cookies
        .iter()
        .find(|c| c["name"] == "oidc_logout_console")
        .unwrap_or_else(|| panic!("no console cookie: {cookies:?}"));
    assert_eq!(cookie["httpOnly"], true, "{cookie}");
    assert_eq!(cookie["sameSite"], "Strict", "{cookie}");

    // Found by a session id, and by the e-mail a SCIM client provisioned as userName.
    let created = http
        .post(format!("{}/scim/v2/Users", setup.main))
        .bearer_auth(SCIM_TOKEN)
        .header("content-type", "application/scim+json")
        .body(
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "bob@example.com",
                "externalId": "bob",
                "active": true,
            })
            .to_string(),
        )
        .send()
        .await
        .expect("SCIM create");
    assert_eq!(created.status().as_u16(), 201);
    driver
        .goto(&format!("{console}/console?q={}", percent(&first)))
        .await;
    let text = driver.until_text("session id").await;
    assert!(text.contains("bob"), "{text}");
    driver
        .goto(&format!("{console}/console?q=BOB%40example.com"))
        .await;
    let text = driver.until_text("userName at SCIM").await;
    assert!(
        text.contains("bob") && text.contains("userName at SCIM 2"),
        "{text}"
    );
    driver.goto(&format!("{console}/console?q=nobody")).await;
    driver.until_text("No user matches").await;

    // Search, and the user's page: two sessions, in two applications.
    driver.goto(&format!("{console}/console")).await;
    driver.type_into("input[name=q]", "bob").await;
    driver.click("form.search button").await;
    let text = driver.until_text(issuer).await;
    // One match: bob, found as a `sub`, with two live sessions.
    assert!(text.contains("bob") && text.contains("sub 2"), "{text}");
    assert!(!text.contains("carol"), "{text}");
    shoot(&driver, "search").await;
    driver.click("td a").await;
    let text = driver.until_text("Revoke everywhere").await;
    assert!(text.contains("app-1") && text.contains("app-2"), "{text}");
    assert!(
        !text.contains(&first) && !text.contains(&second),
        "session ids are shown: {text}"
    );
    shoot(&driver, "user").await;

    // A form without the CSRF token is refused, with the session's own cookie.
    let (status, _) = status_of(
        http.post(format!("{console}/console/act"))
            .header(
                "cookie",
                format!(
                    "oidc_logout_console={}",
                    cookie["value"].as_str().unwrap_or_default()
                ),
            )
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "action=revoke&issuer={}&sub=bob&confirmed=yes",
                percent(issuer)
            )),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        index.sessions(issuer, "bob").await.expect("sessions").len(),
        2
    );
    assert!(deny_markers(&setup.redis, issuer).await.is_empty());

    // End one session: asked to confirm, then done; the other stays.
    driver.click("tbody tr:first-child form button").await;
    driver.until_text("Yes, do it").await;
    shoot(&driver, "confirm").await;
    driver.click("button.danger").await;
    driver.until_text("Ended 1 session").await;
    let left = index.sessions(issuer, "bob").await.expect("sessions");
    assert_eq!(left.len(), 1, "{left:?}");
    let (ended, kept) = if left[0].session_id == first {
        (&second, &first)
    } else {
        (&first, &second)
    };
    assert_eq!(&left[0].session_id, kept);
    assert_eq!(
        common::state_of(&index, issuer, ended).await,
        oidc_logout::index::SessionState::Ended
    );

    // Revoke everywhere: the other session ends and the denylist marker is written.
    driver.click("form button.danger").await;
    driver.until_text("Revoke bob everywhere?").await;
    driver.click("button.danger").await;
    driver.until_text("Revoked the user everywhere").await;
    assert!(
        index
            .sessions(issuer, "bob")
            .await
            .expect("sessions")
            .is_empty()
    );
    assert_eq!(
        index
            .sessions(issuer, "carol")
            .await
            .expect("sessions")
            .len(),
        1
    );
    let markers = deny_markers(&setup.redis, issuer).await;
    assert!(markers.keys().any(|k| k.contains("bob")), "{markers:?}");

    // The activity page shows both, made through the console by this token.
    driver.goto(&format!("{console}/console/activity")).await;
    let text = driver.until_text("revoke_user").await;
    assert!(text.contains("end_session"), "{text}");
    assert!(
        text.contains("console") && text.contains("token:"),
        "{text}"
    );
    shoot(&driver, "activity").await;

    // Sign out: the cookie no longer opens anything.
    driver.goto(&format!("{console}/console")).await;
    driver.click("form.who button").await;
    driver.until_text("Admin token").await;
    let (status, _) = status_of(http.get(format!("{console}/console/activity")).header(
        "cookie",
        format!(
            "oidc_logout_console={}",
            cookie["value"].as_str().unwrap_or_default()
        ),
    ))
    .await;
    assert_eq!(status, 303);

    // Through the OP: a user outside the group is refused; an administrator signs in.
    driver.click("a.primary").await;
    sign_in_at_op(&driver, issuer, "alice").await;
    driver.until_text("not a console administrator").await;
    driver
        .goto(&format!("{issuer}/.well-known/openid-configuration"))
        .await;
    driver.delete_cookies().await;
    driver.goto(&format!("{console}/console/sign-in")).await;
    driver.click("a.primary").await;
    sign_in_at_op(&driver, issuer, "admin-dana").await;
    let text = driver.until_text("Find a user").await;
    assert!(text.contains("admin-dana@example.com"), "{text}");
    driver.quit().await;

    // What was typed into the search is in no log line: not the session ids (only the audit
    // line of the session that was ended names its id, once it is worthless), not the address.
    let logs: Vec<String> = setup
        .serve
        .drain()
        .into_iter()
        .filter(|l| !l.contains("action=end_session"))
        .collect();
    assert!(
        logs.iter().any(|l| l.contains("sessions listed")),
        "{logs:?}"
    );
    for typed in [first.as_str(), second.as_str(), "BOB@example.com", "nobody"] {
        assert!(
            !logs.iter().any(|l| l.contains(typed)),
            "{typed} logged: {logs:?}"
        );
    }
}

/// node-oidc-provider's login and consent for `user`.
async fn sign_in_at_op(driver: &Driver, issuer: &str, user: &str) {
    for _ in 0..100 {
        if driver.url().await.starts_with(issuer) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        driver.url().await.starts_with(issuer),
        "{}",
        driver.url().await
    );
    driver.until_text("Sign").await;
    driver.type_into("input[name=login]", user).await;
    driver.type_into("input[name=password]", "any").await;
    driver.click("button[type=submit]").await;
    consent(driver).await;
}

fn percent(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
