//! The axum extractors for the request's login, over HTTP: `LoggedIn` answers 401 without a
//! login, `LoggedInPage` sends the browser to the login page, `Option<LoggedIn>` is optional,
//! a session a logout ended has no login, and a router without the session layer is a 500
//! that says nothing more.

mod common;

use axum::routing::get;
use axum::{Extension, Router};
use common::{Browser, now, serve};
use oidc_logout::core::{Action, Event, Scope, Sender};
use oidc_logout::index::{IndexSettings, MemoryIndex};
use oidc_logout::session_store::{
    LoggedIn, LoggedInPage, Login, LoginPage, OidcSessionStore, SessionError,
};
use tower_sessions::{Session, SessionManagerLayer};

const ISSUER: &str = "https://op.example";

fn login() -> Login {
    Login {
        issuer: ISSUER.into(),
        sub: "alice".into(),
        client_id: None,
        sid: Some("op-1".into()),
        auth_time: now() - 60,
        logged_in_at: now(),
        policy: None,
        customer: None,
        id_token: None,
        refresh_token: None,
        access_token: None,
    }
}

fn routes() -> Router {
    Router::new()
        .route(
            "/login",
            get(|session: Session| async move {
                login().save_to(&session).await?;
                Ok::<_, SessionError>("logged in")
            }),
        )
        .route(
            "/api/me",
            get(|user: LoggedIn| async move { user.sub.clone() }),
        )
        .route(
            "/account",
            get(|user: LoggedInPage| async move { format!("account of {}", user.sub) }),
        )
        .route(
            "/",
            get(|user: Option<LoggedIn>| async move {
                user.map_or_else(|| "welcome".to_owned(), |u| format!("hello {}", u.sub))
            }),
        )
}

#[tokio::test]
async fn the_login_is_required_optional_or_sends_the_browser_to_log_in() {
    let index = MemoryIndex::new(IndexSettings::default());
    let store = OidcSessionStore::new(index.clone());
    let core = common::core(index, ISSUER);
    let app = routes()
        .layer(Extension(LoginPage::new("/auth/start")))
        .layer(SessionManagerLayer::new(store).with_secure(false));
    let base = serve(app).await;
    let mut browser = Browser::new(&base);

    assert_eq!(browser.get("/api/me").await, (401, "log in first".into()));
    assert_eq!(browser.get("/").await, (200, "welcome".into()));
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(format!("{base}/account"))
        .send()
        .await
        .expect("answer");
    assert_eq!(redirect.status(), 303);
    assert_eq!(redirect.headers()["location"], "/auth/start");

    assert_eq!(browser.get("/login").await.0, 200);
    assert_eq!(browser.get("/api/me").await, (200, "alice".into()));
    assert_eq!(browser.get("/").await, (200, "hello alice".into()));
    assert_eq!(
        browser.get("/account").await,
        (200, "account of alice".into())
    );

    // A logout (here the OP's, of the user) ends the session: no login any more.
    let op = Sender::new("test", "op", Scope::issuer(ISSUER));
    let revoke = Action::EndUserSessions {
        issuer: ISSUER.into(),
        sub: "alice".into(),
        clients: None,
    };
    core.apply(Event::new(op, vec![revoke]))
        .await
        .expect("logout");
    assert_eq!(browser.get("/api/me").await.0, 401);
    assert_eq!(browser.get("/").await, (200, "welcome".into()));
}

#[tokio::test]
async fn without_the_session_layer_the_answer_is_a_bare_500() {
    let base = serve(routes()).await;
    let mut browser = Browser::new(&base);
    assert_eq!(browser.get("/api/me").await, (500, "server error".into()));
}
