//! The forward-auth check (`/v1/check` on `gateway_listen`) against the in-process
//! `DenylistLayer` it shares its code with: each one's latency per token (p50, p99) with 100,000
//! markers loaded, a bare loopback round trip of the same request to the same listener
//! (`/healthz`, bearer header included) for what the network and HTTP cost, and the time from a back-channel logout's `200` to the check's first
//! `401` (what a gateway sees: nginx and Caddy ask the check for every request).
//!
//! Run: `cargo bench --bench check` (`CHECK_REQUESTS=N`, default 20,000; `CHECK_LOGOUTS=N`,
//! default 300). Real redis-server, the release receiver binary, loopback HTTP.

mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use common::{now, percentile};
use oidc_logout::denylist::sync::{self, DenylistSettings};
use oidc_logout::denylist::{AccessTokenValidator, DenylistLayer};
use oidc_logout::test_op::forge::{self, Subject};
use oidc_logout::test_op::{SigningAlg, SigningKey, send};
use oidc_logout::{Algorithm, Provider, ProviderSettings, http_client};
use serde_json::{Map, Value, json};
use tower::ServiceExt as _;

fn count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn access_token(key: &SigningKey, issuer: &str, sub: &str, sid: &str) -> String {
    let mut header = Map::new();
    header.insert("typ".into(), Value::from("at+jwt"));
    let claims = json!({
        "iss": issuer, "sub": sub, "sid": sid, "aud": "orders-api",
        "iat": now() - 5, "exp": now() + 3600,
    });
    key.sign(&header, &claims).expect("sign")
}

fn summary(mut times: Vec<Duration>) -> String {
    times.sort_unstable();
    format!(
        "p50 {:.1?}, p99 {:.1?}",
        percentile(&times, 50.0),
        percentile(&times, 99.0)
    )
}

/// Callers at once in the "under load" part.
const CALLERS: usize = 16;

/// What is called under load.
#[derive(Clone, Copy)]
enum Kind {
    Layer,
    Check,
    RoundTrip,
}

#[derive(Clone)]
struct Target {
    api: axum::Router,
    http: reqwest::Client,
    check: String,
    healthz: String,
    token: String,
}

async fn one(target: &Target, kind: Kind) -> u16 {
    match kind {
        Kind::Layer => {
            let request = Request::get("/")
                .header("authorization", format!("Bearer {}", target.token))
                .body(Body::empty())
                .expect("request");
            let answer = target.api.clone().oneshot(request).await.expect("answer");
            answer.status().as_u16()
        }
        Kind::Check => {
            let answer = target
                .http
                .get(&target.check)
                .bearer_auth(&target.token)
                .send();
            answer.await.expect("check").status().as_u16()
        }
        Kind::RoundTrip => {
            // The same request as the check's (its bearer header too), to a handler that reads
            // nothing: what loopback HTTP costs for it.
            let answer = target
                .http
                .get(&target.healthz)
                .bearer_auth(&target.token)
                .send()
                .await;
            answer.expect("healthz").status().as_u16()
        }
    }
}

/// `CALLERS` tasks calling `kind` `per_caller` times each: latency percentiles and the rate.
async fn under_load(target: &Target, kind: Kind, per_caller: usize) -> String {
    let started = Instant::now();
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let target = target.clone();
            tokio::spawn(async move {
                let mut times = Vec::with_capacity(per_caller);
                for _ in 0..per_caller {
                    let began = Instant::now();
                    let status = one(&target, kind).await;
                    times.push(began.elapsed());
                    assert_eq!(status, 200);
                }
                times
            })
        })
        .collect();
    let mut all = Vec::new();
    for caller in callers {
        all.extend(caller.await.expect("caller"));
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    format!("{}, {rate:.0}/s", summary(all))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let requests = count("CHECK_REQUESTS", 20_000);
    let logouts = count("CHECK_LOGOUTS", 300);
    let (_redis, redis_url) = common::redis_server();
    let (_op, key, issuer) = common::op(SigningAlg::Rs256).await;
    // 100,000 markers, as in the denylist bench, written as the receiver writes them, before
    // the receiver and the layer load them.
    let mut redis = redis::Client::open(redis_url.as_str())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let deny = oidc_logout::index::IssuerKeys::new("oidc-logout:", &issuer).deny();
    let value = format!("{} {}", now() - 100, now() + 3600);
    for chunk in (0..100_000).collect::<Vec<u32>>().chunks(10_000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("HSET")
                .arg(&deny)
                .arg(format!("sub:bench-user-{i:08}"))
                .arg(&value)
                .ignore();
        }
        let () = pipe.query_async(&mut redis).await.expect("markers");
    }

    let gateway = format!("127.0.0.1:{}", common::free_port());
    let settings = std::env::temp_dir().join(format!(
        "oidc-logout-bench-check-{}.toml",
        common::free_port()
    ));
    std::fs::write(&settings, "[check]\naudiences = [\"orders-api\"]\n").expect("settings");
    let (_receiver, url) = common::receiver(|c| {
        c.arg("--config")
            .arg(&settings)
            .env("OIDC_LOGOUT_ISSUER", &issuer)
            .env("OIDC_LOGOUT_CLIENT_ID", "app")
            .env("OIDC_LOGOUT_REDIS_URL", &redis_url)
            .env("OIDC_LOGOUT_GATEWAY_LISTEN", &gateway)
            .env("RUST_LOG", "warn");
    })
    .await;

    // The in-process layer, on the same markers (its own subscription) and keys.
    let keys = Provider::discover(
        &issuer,
        http_client().expect("http"),
        ProviderSettings::default(),
    )
    .await
    .expect("keys");
    let validator =
        AccessTokenValidator::new().with_issuer(keys, &["orders-api"], &[Algorithm::RS256]);
    let denylist = sync::start(DenylistSettings::new(
        redis_url.clone(),
        vec![issuer.clone()],
    ))
    .await
    .expect("denylist");
    let api = axum::Router::new()
        .route("/", axum::routing::get(|| async { "ok" }))
        .layer(DenylistLayer::validating(denylist, validator));
    let token = access_token(&key, &issuer, "alice", "op-alice");
    let http = reqwest::Client::new();
    let check = format!("http://{gateway}/v1/check");
    let target = Target {
        api,
        http: http.clone(),
        check: check.clone(),
        healthz: format!("http://{gateway}/healthz"),
        token,
    };

    // One at a time: the layer in process, the check over loopback, and a bare round trip to
    // the same listener.
    println!("{requests} tokens each, one at a time, 100,000 markers loaded:");
    for (name, kind) in [
        (
            "in-process DenylistLayer (RS256 verify + lookup)",
            Kind::Layer,
        ),
        ("/v1/check over loopback HTTP", Kind::Check),
        (
            "loopback round trip to the same listener (/healthz)",
            Kind::RoundTrip,
        ),
    ] {
        let mut times = Vec::with_capacity(requests);
        for _ in 0..requests {
            let began = Instant::now();
            let status = one(&target, kind).await;
            times.push(began.elapsed());
            assert_eq!(status, 200);
        }
        println!("  {name}: {}", summary(times));
    }

    // Under load: 16 callers at once (a gateway's workers), about as many tokens.
    let per_caller = requests / CALLERS;
    println!(
        "{CALLERS} callers at once, {} tokens in all:",
        per_caller * CALLERS
    );
    println!(
        "  in-process DenylistLayer: {}",
        under_load(&target, Kind::Layer, per_caller).await
    );
    println!(
        "  /v1/check over loopback HTTP: {}",
        under_load(&target, Kind::Check, per_caller).await
    );
    println!(
        "  loopback round trip (/healthz): {}",
        under_load(&target, Kind::RoundTrip, per_caller).await
    );

    // From a logout's 200 to the check's first 401.
    let mut delays = Vec::with_capacity(logouts);
    for i in 0..logouts {
        let (sub, sid) = (format!("user-{i}"), format!("op-session-{i}"));
        let token = access_token(&key, &issuer, &sub, &sid);
        let who = Subject {
            issuer: &issuer,
            audience: "app",
            sub: None,
            sid: Some(&sid),
        };
        let logout = forge::valid(&key, &who).expect("sign");
        let reply = send::post(&http, &url, &logout).await.expect("post");
        assert_eq!(reply.status, 200, "{}", reply.body);
        let answered = Instant::now();
        loop {
            let status = http
                .get(&check)
                .bearer_auth(&token)
                .send()
                .await
                .expect("check")
                .status();
            if status == 401 {
                delays.push(answered.elapsed());
                break;
            }
            assert!(answered.elapsed() < Duration::from_secs(5), "never refused");
        }
    }
    println!(
        "from a back-channel logout's 200 to the check's first 401, {logouts} logouts: {}",
        summary(delays)
    );
    let _ = std::fs::remove_file(&settings);
}
