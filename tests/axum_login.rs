//! An axum-login 0.18 application (`examples/axum_login.rs`, a process of its own) against the
//! test OP over HTTP and a real Redis: the user axum-login logged in is logged out by a logout at
//! the OP (back-channel), and by the application's own logout button (which also ends the OP
//! session, so the browser is not logged straight back in).

mod common;

use std::process::Command;

use common::{Proc, RedisServer, free_port};
use oidc_logout::test_op::{Browser, Client, TestOp};

struct App {
    base: String,
    _proc: Proc,
}

fn start_app(issuer: &str, redis: &RedisServer) -> (Client, App) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = Client::new("login-app", "login-secret", &base);
    let mut command = Command::new(common::example("axum_login"));
    command
        .env("OIDC_LOGOUT_ISSUER", issuer)
        .env("OIDC_LOGOUT_CLIENT_ID", "login-app")
        .env("OIDC_LOGOUT_CLIENT_SECRET", "login-secret")
        .env("OIDC_LOGOUT_REDIS_URL", redis.url())
        .env("APP_LISTEN", format!("127.0.0.1:{port}"))
        .env("APP_BASE_URL", &base)
        .env("RUST_LOG", "info");
    let app = App {
        base,
        _proc: Proc::spawn("axum_login example", command),
    };
    app._proc.wait_for("app listening on");
    (client, app)
}

async fn me(browser: &mut Browser, app: &App) -> u16 {
    browser
        .get(&format!("{}/me", app.base))
        .await
        .expect("the app answers")
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_axum_login_user_is_logged_out_by_the_op_and_by_the_logout_button() {
    let redis = RedisServer::start();
    let (op, issuer) = TestOp::start_local().await.expect("the test OP");
    let (client, app) = start_app(&issuer, &redis);
    op.register_client(client);

    // Logged in through the OP: axum-login knows the user.
    let mut alice = Browser::new().expect("browser");
    let page = alice
        .log_in(&format!("{}/login", app.base), "alice")
        .await
        .expect("login");
    assert_eq!(
        (page.status, page.body.as_str()),
        (200, "Logged in as alice")
    );
    assert_eq!(me(&mut alice, &app).await, 200);

    // A logout at the OP reaches the application over the back channel.
    let end = alice
        .get(&format!("{issuer}/session/end"))
        .await
        .expect("end session");
    assert_eq!(end.status, 200, "{}", end.body);
    assert_eq!(
        me(&mut alice, &app).await,
        401,
        "axum-login's user is gone with the session"
    );

    // Logged in again, then out with the application's own button.
    let page = alice
        .log_in(&format!("{}/login", app.base), "alice")
        .await
        .expect("login again");
    assert_eq!(page.body, "Logged in as alice");
    assert_eq!(me(&mut alice, &app).await, 200);
    let back = alice
        .post_form(&format!("{}/logout", app.base), &[])
        .await
        .expect("logout");
    assert_eq!(back.status, 200, "{}: {}", back.url, back.body);
    assert_eq!(
        back.url,
        format!("{}/", app.base),
        "back from the OP's logout, at home"
    );
    assert_eq!(back.body, "Not logged in");
    assert_eq!(me(&mut alice, &app).await, 401);
    assert!(
        op.op_sessions().iter().all(|(_, sub)| sub != "alice"),
        "the OP session ended too: {:?}",
        op.op_sessions()
    );
}
