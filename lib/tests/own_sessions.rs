//! Session details and a user's own sessions, over HTTP with a real redis-server: what each
//! session records (client, policy, last seen, user agent and address behind a trusted proxy),
//! what the admin's list shows, and the router a user lists and ends their other sessions with.

mod common;

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use common::{RedisServer, index_on, now};
use oidc_logout::Core;
use oidc_logout::index::RedisIndex;
use oidc_logout::session_store::{OidcSessionStore, OwnSessions, SessionDetails};
use serde_json::{Value, json};
use tower_sessions::{Session, SessionManagerLayer};

const ISS: &str = "https://idp.example.com";

fn app(index: RedisIndex) -> Router {
    let details = SessionDetails::new()
        .with_client_details()
        .with_trusted_proxy("127.0.0.0/8")
        .expect("network");
    common::app::routes(ISS)
        .nest(
            "/account/sessions",
            OwnSessions::new(Core::builder(index.clone()).issuer(ISS).build()).router::<Session>(),
        )
        .layer(details.layer::<Session>())
        .layer(SessionManagerLayer::new(OidcSessionStore::new(index)).with_secure(false))
}

/// Serve with the peer address known (`ConnectInfo`), as the address needs.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    format!("http://{addr}")
}

/// A browser on one device: a cookie, a user agent, an address its proxy reports.
struct Device {
    base: String,
    cookie: Option<String>,
    agent: &'static str,
    address: &'static str,
}

impl Device {
    fn new(base: &str, agent: &'static str, address: &'static str) -> Self {
        Self {
            base: base.into(),
            cookie: None,
            agent,
            address,
        }
    }

    async fn send(&mut self, method: &str, path: &str, body: Option<(&str, &str)>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", self.base))
            .header("user-agent", self.agent)
            .header("x-forwarded-for", self.address);
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        if let Some((kind, body)) = body {
            request = request.header("content-type", kind).body(body.to_owned());
        }
        let response = request.send().await.expect("answer");
        if let Some(set) = response
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
        {
            self.cookie = set.split(';').next().map(str::to_owned);
        }
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&mut self, path: &str) -> (u16, Value) {
        self.send("GET", path, None).await
    }

    async fn post_json(&mut self, path: &str, body: Value) -> (u16, Value) {
        self.send("POST", path, Some(("application/json", &body.to_string())))
            .await
    }

    fn session_id(&self) -> String {
        self.cookie
            .as_deref()
            .and_then(|c| c.split('=').nth(1))
            .unwrap_or_default()
            .to_owned()
    }
}

#[tokio::test]
async fn a_user_sees_and_ends_their_own_sessions_and_no_one_elses() {
    let redis = RedisServer::start();
    let index = index_on(&redis).await;
    let base = serve(app(index.clone())).await;
    let mut laptop = Device::new(&base, "Laptop Browser", "203.0.113.7");
    let mut phone = Device::new(&base, "Phone Browser", "198.51.100.9");
    let mut bob = Device::new(&base, "Bob Browser", "192.0.2.1");
    for (device, sub) in [
        (&mut laptop, "alice"),
        (&mut phone, "alice"),
        (&mut bob, "bob"),
    ] {
        assert_eq!(
            device
                .get(&format!("/login?sub={sub}&client=web&policy=acme"))
                .await
                .0,
            200
        );
        // A request after login records the device (the login's own request saved the login).
        assert_eq!(device.get("/me").await.0, 200);
    }

    let (status, listed) = laptop.get("/account/sessions").await;
    assert_eq!(status, 200, "{listed}");
    let sessions = listed["sessions"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        sessions.len(),
        2,
        "alice's two sessions, not bob's: {listed}"
    );
    let text = listed.to_string();
    for id in [laptop.session_id(), phone.session_id(), bob.session_id()] {
        assert!(!text.contains(&id), "session ids are never listed: {text}");
    }
    let current: Vec<&Value> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["user_agent"], "Laptop Browser");
    assert_eq!(
        current[0]["address"], "203.0.113.7",
        "from the trusted proxy's header"
    );
    assert_eq!(current[0]["policy"], "acme");
    assert_eq!(current[0]["client_id"], "web");
    assert!(current[0]["last_seen"].as_u64().unwrap_or(0) >= now() - 5);
    let phone_entry = sessions
        .iter()
        .find(|s| s["user_agent"] == "Phone Browser")
        .expect("the phone");
    let phone_handle = phone_entry["session"].as_str().expect("handle").to_owned();

    // The admin's list shows the same details, with the ids.
    let core = Core::builder(index.clone()).issuer(ISS).build();
    let admin = core
        .sessions(&common::operator(), ISS, "alice")
        .await
        .expect("list");
    let phone_view = admin
        .iter()
        .find(|v| v.session_id == phone.session_id())
        .expect("phone");
    assert_eq!(phone_view.user_agent.as_deref(), Some("Phone Browser"));
    assert_eq!(phone_view.address.as_deref(), Some("198.51.100.9"));
    assert_eq!(phone_view.policy.as_deref(), Some("acme"));

    // Bob's handle is not Alice's to end; a form post (cross-site) is refused outright.
    let (_, bobs) = bob.get("/account/sessions").await;
    let bob_handle = bobs["sessions"][0]["session"]
        .as_str()
        .expect("handle")
        .to_owned();
    let (status, _) = laptop
        .post_json("/account/sessions/end", json!({"session": bob_handle}))
        .await;
    assert_eq!(status, 404);
    let (status, _) = laptop
        .send(
            "POST",
            "/account/sessions/end",
            Some((
                "application/x-www-form-urlencoded",
                &format!("session={phone_handle}"),
            )),
        )
        .await;
    assert_eq!(status, 415);
    assert_eq!(phone.get("/me").await.0, 200, "refusals change nothing");

    let (status, answer) = laptop
        .post_json("/account/sessions/end", json!({"session": phone_handle}))
        .await;
    assert_eq!((status, &answer["ended"]), (200, &json!(true)), "{answer}");
    assert_eq!(phone.get("/me").await.0, 401, "the phone is logged out");
    assert_eq!(laptop.get("/me").await.0, 200, "the laptop is not");
    assert_eq!(bob.get("/me").await.0, 200, "nor is bob");

    // Two more devices; "log out everywhere else" ends both and keeps this one.
    let mut tablet = Device::new(&base, "Tablet", "198.51.100.10");
    let mut desktop = Device::new(&base, "Desktop", "198.51.100.11");
    for device in [&mut tablet, &mut desktop] {
        device.get("/login?sub=alice&client=web&policy=acme").await;
    }
    let (status, answer) = laptop
        .post_json("/account/sessions/end-others", json!({}))
        .await;
    assert_eq!((status, &answer["ended"]), (200, &json!(2)), "{answer}");
    assert_eq!(tablet.get("/me").await.0, 401);
    assert_eq!(desktop.get("/me").await.0, 401);
    assert_eq!(laptop.get("/me").await.0, 200);
    assert_eq!(bob.get("/me").await.0, 200);

    // Ending the current session is a local logout.
    let (_, listed) = laptop.get("/account/sessions").await;
    let own = listed["sessions"][0]["session"]
        .as_str()
        .expect("handle")
        .to_owned();
    let (status, _) = laptop
        .post_json("/account/sessions/end", json!({"session": own}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(laptop.get("/me").await.0, 401);
    let (status, _) = laptop.get("/account/sessions").await;
    assert_eq!(status, 401, "not logged in: nothing to list");
}

#[tokio::test]
async fn an_untrusted_peer_cannot_choose_its_recorded_address() {
    let redis = RedisServer::start();
    let index = index_on(&redis).await;
    // Only 10.0.0.0/8 is trusted: the test client on 127.0.0.1 is not a proxy.
    let details = SessionDetails::new()
        .with_client_details()
        .with_trusted_proxy("10.0.0.0/8")
        .expect("network");
    let router = common::app::routes(ISS)
        .route("/ping", get(|| async { "pong" }))
        .layer(details.layer::<Session>())
        .layer(SessionManagerLayer::new(OidcSessionStore::new(index.clone())).with_secure(false));
    let base = serve(router).await;
    let mut device = Device::new(&base, "Forger", "203.0.113.99");
    device.get("/login").await;
    device.get("/ping").await;
    let core = Core::builder(index).issuer(ISS).build();
    let views = core
        .sessions(&common::operator(), ISS, "alice")
        .await
        .expect("list");
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].address.as_deref(), Some("127.0.0.1"));
}
