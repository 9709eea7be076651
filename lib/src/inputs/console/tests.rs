//! The console's guarantees that the browser test does not reach, attacked in process over the
//! memory index: a token sign-in dies with its token or its scope, a customer's administrator
//! finds no other customer's SCIM user, and an action outside their scope is refused, not shown
//! as done.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use secrecy::SecretString;
use tower::ServiceExt as _;

use super::config::ConsoleSettings;
use super::{Parts, ScimOwner, router};
use crate::core::{Core, Scope};
use crate::index::{
    IndexSettings, MemoryDirectory, MemoryIndex, Owner, ScimUser, SessionIndex as _, SessionRecord,
    UserDirectory as _,
};
use crate::sys::unix_now;

const ISS: &str = "https://op.example";
const TOKEN: &str = "console-test-token-0123456789abcdef012345";
const OTHER: &str = "another-console-token-0123456789abcdef0123";

struct Rig {
    index: MemoryIndex,
    directory: MemoryDirectory,
    settings: ConsoleSettings,
}

impl Rig {
    fn new() -> Self {
        let settings = ConsoleSettings {
            secure_cookies: false,
            ..ConsoleSettings::default()
        };
        Self {
            index: MemoryIndex::new(IndexSettings::default()),
            directory: MemoryDirectory::new(),
            settings,
        }
    }

    /// The console with these tokens, on the rig's index and directory.
    fn console(&self, tokens: &[(&str, Scope)]) -> Router {
        let secrets: Vec<SecretString> =
            tokens.iter().map(|(t, _)| SecretString::from(*t)).collect();
        let parts = Parts {
            core: Core::builder(self.index.clone()).issuer(ISS).build(),
            directory: self.directory.clone(),
            http: reqwest::Client::new(),
            settings: &self.settings,
            tokens: secrets
                .iter()
                .zip(tokens)
                .map(|(s, (_, scope))| (s, scope.clone()))
                .collect(),
            scim: ["acme", "globex"]
                .iter()
                .map(|c| ScimOwner {
                    issuer: ISS.into(),
                    client: (*c).into(),
                    customer: Some((*c).into()),
                })
                .collect(),
            issuers: vec![ISS.into()],
        };
        router(parts)
    }
}

async fn call(console: &Router, request: Request<Body>) -> (StatusCode, Vec<String>, String) {
    let response = console.clone().oneshot(request).await.expect("an answer");
    let status = response.status();
    let cookies = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next().map(str::to_owned))
        .collect();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    (
        status,
        cookies,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn get(path: &str, cookie: &str) -> Request<Body> {
    Request::get(path)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap_or_default()
}

fn post(path: &str, cookie: &str, form: &str) -> Request<Body> {
    Request::post(path)
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form.to_owned()))
        .unwrap_or_default()
}

/// The value of the first hidden `csrf` field of a page.
fn csrf(page: &str) -> String {
    page.split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_owned()
}

/// Sign in with `token`: the signed-in cookie and the forms' CSRF token.
async fn sign_in(console: &Router, token: &str) -> (String, String) {
    let (_, cookies, page) = call(console, get("/console/sign-in", "")).await;
    let pre = cookies.join("; ");
    let form = format!("csrf={}&token={token}", csrf(&page));
    let (status, cookies, _) = call(console, post("/console/sign-in/token", &pre, &form)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let signed = cookies
        .into_iter()
        .find(|c| c.starts_with("oidc_logout_console="))
        .unwrap_or_default();
    let (status, _, page) = call(console, get("/console", &signed)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    (signed.clone(), csrf(&page))
}

#[tokio::test]
async fn a_token_sign_in_dies_with_its_token_or_its_scope() {
    let rig = Rig::new();
    let everything = rig.console(&[(TOKEN, Scope::any_issuer())]);
    let (cookie, _) = sign_in(&everything, TOKEN).await;
    // The same store, the token gone (rotated): the cookie opens nothing.
    let rotated = rig.console(&[(OTHER, Scope::any_issuer())]);
    let (status, _, _) = call(&rotated, get("/console", &cookie)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // The token kept but narrowed to one customer: nor does it.
    let narrowed = rig.console(&[(TOKEN, Scope::issuer(ISS).with_customer(Some("acme".into())))]);
    let (status, _, _) = call(&narrowed, get("/console", &cookie)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // Unchanged, it still does.
    let (status, _, _) = call(&everything, get("/console", &cookie)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_customers_administrator_finds_and_revokes_only_that_customers_users() {
    let rig = Rig::new();
    // A globex user, provisioned by globex's SCIM client, with a live session of globex.
    let at = unix_now();
    let user = ScimUser::new(
        "u-1".into(),
        "mallory@globex.example".into(),
        None,
        true,
        "mallory".into(),
        at,
    );
    let owner = Owner {
        issuer: ISS,
        client: "globex",
    };
    assert!(rig.directory.create(owner, &user).await.is_ok());
    let session = SessionRecord {
        session_id: "globex-session".into(),
        issuer: ISS.into(),
        sub: "mallory".into(),
        sid: None,
        auth_time: at - 60,
        ttl: Duration::from_secs(600),
        customer: Some("globex".into()),
    };
    assert!(rig.index.register(&session).await.is_ok());

    let acme = rig.console(&[(TOKEN, Scope::issuer(ISS).with_customer(Some("acme".into())))]);
    let (cookie, csrf) = sign_in(&acme, TOKEN).await;
    for q in ["mallory%40globex.example", "mallory", "globex-session"] {
        let (status, _, page) = call(&acme, get(&format!("/console?q={q}"), &cookie)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("No user matches"), "{q}: {page}");
    }
    let form = format!(
        "csrf={csrf}&action=revoke&issuer={}&sub=mallory&confirmed=yes",
        "https%3A%2F%2Fop.example"
    );
    let (status, _, page) = call(&acme, post("/console/act", &cookie, &form)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert!(!page.contains("Revoked"), "{page}");
    let live = rig.index.sessions(ISS, "mallory").await.unwrap_or_default();
    assert_eq!(live.len(), 1, "the other customer's session stays");
}
