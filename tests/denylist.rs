//! The access-token denylist with a real Redis, the built-in OP and several API instances in one
//! test: a logout through the receiver makes every instance refuse the user's access tokens.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use common::{Harness, RedisServer, now, serve};
use oidc_logout::denylist::sync::{self, DenylistSettings};
use oidc_logout::denylist::{
    AccessTokenValidator, Denylist, DenylistLayer, FailMode, RevocationClaims,
};
use oidc_logout::provider::{Provider, http_client};
use oidc_logout::test_op::random_id;
use serde_json::{Value, json};

const API: &str = "orders-api";

/// An access token of the harness's OP for [`API`].
fn access_token(h: &Harness, sub: &str, sid: Option<&str>, iat: u64) -> String {
    let mut claims = json!({
        "iss": h.op.issuer(), "aud": API, "sub": sub, "iat": iat, "exp": iat + 600,
        "jti": random_id(12).expect("jti"), "scope": "orders:read",
    });
    if let (Some(sid), Some(map)) = (sid, claims.as_object_mut()) {
        map.insert("sid".into(), sid.into());
    }
    h.op.sign_with(&h.op.key, &[("typ", Value::from("at+jwt"))], &claims)
}

/// An API instance: its own denylist following Redis, the validating layer, one route.
async fn api_instance(h: &Harness, settings: DenylistSettings) -> (String, Denylist) {
    let denylist = sync::start(settings).await.expect("denylist");
    let provider = Provider::discover(
        h.op.issuer(),
        http_client().expect("client"),
        common::provider_settings(),
    )
    .await
    .expect("discovery");
    let validator =
        AccessTokenValidator::new().with_issuer(provider, &[API], &[oidc_logout::Algorithm::RS256]);
    let app = Router::new()
        .route(
            "/orders",
            get(
                |axum::Extension(claims): axum::Extension<RevocationClaims>| async move {
                    claims.sub.unwrap_or_default()
                },
            ),
        )
        .layer(DenylistLayer::validating(denylist.clone(), validator));
    (serve(app).await, denylist)
}

fn settings(h: &Harness) -> DenylistSettings {
    DenylistSettings::new(h.redis.url(), vec![h.op.issuer().to_owned()])
}

/// GET /orders with the token: (status, WWW-Authenticate).
async fn call(base: &str, token: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .get(format!("{base}/orders"))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (response.status().as_u16(), challenge)
}

/// Poll until the API answers `status` (the marker travels over pub/sub); panics after 5 s.
async fn until(base: &str, token: &str, status: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (got, challenge) = call(base, token).await;
        if got == status {
            return challenge;
        }
        assert!(
            Instant::now() < deadline,
            "{base}: still {got}, expected {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_is_refused_on_every_instance_and_a_new_login_is_not() {
    let h = Harness::start().await;
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(api_instance(&h, settings(&h)).await);
    }
    let issued = now() - 10;
    let alice = access_token(&h, "alice", Some("op-sid-1"), issued);
    let bob = access_token(&h, "bob", Some("op-sid-2"), issued);
    for (base, _) in &instances {
        assert_eq!(call(base, &alice).await.0, 200);
    }
    // No Bearer token, a garbage one, one for another API: refused before the denylist.
    let (base, _) = &instances[0];
    let no_token = reqwest::Client::new()
        .get(format!("{base}/orders"))
        .send()
        .await
        .expect("request");
    assert_eq!(no_token.status().as_u16(), 401);
    assert_eq!(no_token.headers()["www-authenticate"], "Bearer");
    assert_eq!(call(base, "not.a.jwt").await.0, 401);

    // The OP logs out alice's session through the receiver.
    let logout = h.op.sign(&h.op.claims(None, Some("op-sid-1")));
    assert_eq!(h.post(&logout).await.status, 200);
    for (base, _) in &instances {
        let challenge = until(base, &alice, 401).await;
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        assert!(challenge.contains("session"), "{challenge}");
        assert_eq!(
            call(base, &bob).await.0,
            200,
            "another session is untouched"
        );
    }
    // Alice logs in again: tokens issued after the logout work.
    let fresh = access_token(&h, "alice", Some("op-sid-3"), now() + 1);
    for (base, _) in &instances {
        assert_eq!(call(base, &fresh).await.0, 200);
    }
    // Bob is logged out everywhere (by sub): every token of his issued before is refused.
    let logout = h.op.sign(&h.op.claims(Some("bob"), None));
    assert_eq!(h.post(&logout).await.status, 200);
    for (base, _) in &instances {
        let challenge = until(base, &bob, 401).await;
        assert!(challenge.contains("user"), "{challenge}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markers_expire_with_the_access_token_lifetime() {
    use oidc_logout::inputs::backchannel::{PATH, Receiver};
    let h = Harness::start().await;
    // A receiver whose issuer's access tokens live 2 s.
    let core = oidc_logout::Core::builder(h.index.clone())
        .issuer_with_lifetime(h.op.issuer(), Some(Duration::from_secs(2)))
        .build();
    let receiver =
        Receiver::new(core).with_issuer(Arc::clone(&h.provider), common::policy(h.op.issuer()));
    let url = format!("{}{PATH}", serve(receiver.into_router()).await);
    let (base, denylist) = api_instance(&h, settings(&h)).await;
    let token = access_token(&h, "carol", Some("op-sid-9"), now() - 1);
    let logout = h.op.sign(&h.op.claims(None, Some("op-sid-9")));
    let reply = common::post_form(&h.http, &url, &[("logout_token", &logout)]).await;
    assert_eq!(reply.status, 200);
    until(&base, &token, 401).await;
    assert_eq!(denylist.len(), 1);
    // After the lifetime no token the marker covered can be valid at the OP any more; this one
    // (with a longer exp than the issuer would give) shows the marker is gone.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(call(&base, &token).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_subscription_catches_up_on_what_it_missed() {
    let h = Harness::start().await;
    let (base, denylist) = api_instance(&h, settings(&h)).await;
    let token = access_token(&h, "dave", Some("op-sid-4"), now() - 5);
    assert_eq!(call(&base, &token).await.0, 200);
    let client = redis::Client::open(h.redis.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let channel = sync::channel("oidc-logout:");
    // Kill the subscription and publish while nobody listens.
    let mut published_unheard = false;
    for _ in 0..20 {
        let _: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut conn)
            .await
            .expect("client kill");
        let (_, listeners): (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channel)
            .query_async(&mut conn)
            .await
            .expect("numsub");
        if listeners == 0 {
            let logout = h.op.sign(&h.op.claims(None, Some("op-sid-4")));
            assert_eq!(h.post(&logout).await.status, 200);
            published_unheard = true;
            break;
        }
    }
    assert!(
        published_unheard,
        "could not publish while the subscription was down"
    );
    // The instance resubscribes, reloads, and refuses the token.
    until(&base, &token, 401).await;
    assert!(denylist.in_sync());
    assert!(
        denylist.counters().1 >= 2,
        "a reload happened after the first load"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_sync_fails_closed_or_open_as_configured() {
    let mut h = Harness::start().await;
    let mut closed = settings(&h);
    closed.max_unsynced = Duration::from_millis(300);
    let mut open = closed.clone();
    open.fail_mode = FailMode::Open;
    let (closed_base, closed_list) = api_instance(&h, closed).await;
    let (open_base, _) = api_instance(&h, open).await;
    let token = access_token(&h, "erin", None, now() - 5);
    assert_eq!(call(&closed_base, &token).await.0, 200);
    tokio::task::block_in_place(|| h.redis.stop());
    let deadline = Instant::now() + Duration::from_secs(5);
    while closed_list
        .unsynced_for()
        .is_none_or(|gap| gap < Duration::from_millis(400))
    {
        assert!(Instant::now() < deadline, "the outage was not noticed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(call(&closed_base, &token).await.0, 503, "fail closed");
    assert_eq!(call(&open_base, &token).await.0, 200, "fail open");
    assert!(closed_list.unsynced_checks() >= 1, "counted");
    tokio::task::block_in_place(|| h.redis.restart());
    until(&closed_base, &token, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_the_apps_own_validation() {
    let redis = RedisServer::start();
    let issuer = "https://op.example/realms/x";
    let denylist = sync::start(DenylistSettings::new(redis.url(), vec![issuer.to_owned()]))
        .await
        .expect("denylist");
    denylist.apply(
        issuer,
        oidc_logout::denylist::Kind::Sub,
        "frank",
        oidc_logout::denylist::Marker {
            revoked_at: now(),
            expires_at: now() + 60,
        },
    );
    // The app's own middleware validated a token and put its claims in the extensions.
    let app = Router::new()
        .route("/orders", get(|| async { "ok" }))
        .layer(DenylistLayer::after_validation(denylist))
        .layer(axum::middleware::from_fn(
            move |mut request: axum::extract::Request, next: axum::middleware::Next| async move {
                if let Some(sub) = request.headers().get("x-validated-sub").cloned() {
                    request.extensions_mut().insert(RevocationClaims {
                        issuer: issuer.to_owned(),
                        sub: sub.to_str().ok().map(str::to_owned),
                        sid: None,
                        jti: None,
                        issued_at: now() - 30,
                    });
                }
                next.run(request).await
            },
        ));
    let base = serve(app).await;
    let get_as = |sub: Option<&'static str>| {
        let mut request = reqwest::Client::new().get(format!("{base}/orders"));
        if let Some(sub) = sub {
            request = request.header("x-validated-sub", sub);
        }
        request.send()
    };
    assert_eq!(get_as(Some("grace")).await.expect("get").status(), 200);
    assert_eq!(get_as(Some("frank")).await.expect("get").status(), 401);
    assert_eq!(
        get_as(None).await.expect("get").status(),
        401,
        "no claims: refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_api_refuses_a_logged_out_users_token() {
    let h = Harness::start().await;
    let mut command = std::process::Command::new(common::example("api"));
    command
        .env("OIDC_LOGOUT_ISSUER", h.op.issuer())
        .env("OIDC_LOGOUT_REDIS_URL", h.redis.url())
        .env("API_AUDIENCE", API)
        .env("API_LISTEN", "127.0.0.1:0")
        .env("API_METRICS_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info");
    let api = common::Proc::spawn("example api", command);
    let metrics_line = api.wait_for("metrics on http://");
    let metrics = metrics_line
        .split("metrics on ")
        .nth(1)
        .expect("metrics URL")
        .trim()
        .to_owned();
    let line = api.wait_for("API on http://");
    let base = line
        .split("API on ")
        .nth(1)
        .and_then(|url| url.trim().strip_suffix("/orders"))
        .expect("API URL")
        .to_owned();
    let token = access_token(&h, "alice", Some("op-sid-7"), now() - 5);
    let response = reqwest::Client::new()
        .get(format!("{base}/orders"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.text().await.expect("body"), "orders of alice\n");
    let logout = h.op.sign(&h.op.claims(None, Some("op-sid-7")));
    assert_eq!(h.post(&logout).await.status, 200);
    let challenge = until(&base, &token, 401).await;
    assert!(challenge.contains("session"), "{challenge}");

    // What an operator of the API sees: in sync, one marker, one refusal for revocation.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let page = reqwest::get(&metrics)
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    for line in [
        "oidc_logout_denylist_unsynced_seconds 0",
        "oidc_logout_denylist_markers 1",
        "oidc_logout_denylist_refusals_total{reason=\"revoked\"} 1",
    ] {
        assert!(
            page.lines().any(|l| l == line),
            "{line} missing from:\n{page}"
        );
    }
}
