//! The access-token denylist: the per-request check with 100,000 markers loaded (criterion), and
//! the propagation delay from the receiver's `200` to the first refusal on each of three API
//! instances (a real redis-server, the release receiver binary, three in-process denylists each
//! with its own subscription).
//!
//! Run: `cargo bench --bench denylist` (`PROPAGATION_LOGOUTS=N` for the propagation part's size,
//! default 500).

mod common;

use std::time::{Duration, Instant};

use common::{now, percentile};
use criterion::Criterion;
use oidc_logout::denylist::sync::{self, DenylistSettings};
use oidc_logout::denylist::{Denylist, FailMode, Kind, Marker, TokenFacts};
use oidc_logout::test_op::forge::{self, Subject};
use oidc_logout::test_op::{SigningAlg, send};

const ISSUER: &str = "https://op.example.com/realms/bench";

fn check(c: &mut Criterion) {
    let denylist = Denylist::new(FailMode::Open, Duration::from_secs(10));
    let t = now();
    let marker = Marker {
        revoked_at: t,
        expires_at: t + 3600,
    };
    for i in 0..50_000 {
        denylist.apply(ISSUER, Kind::Sid, &format!("op-session-{i:08}"), marker);
        denylist.apply(ISSUER, Kind::Sub, &format!("user-{i:08}-f3a9c2"), marker);
    }
    assert_eq!(denylist.len(), 100_000);
    let mut group = c.benchmark_group("denylist_check_100k_markers");
    let allowed = TokenFacts {
        issuer: ISSUER,
        sub: Some("user-99999999-f3a9c2"),
        sid: Some("op-session-99999999"),
        jti: Some("4f1c2a9e-7d3b-4c55-9a8e-0b6f2d1e3c4a"),
        issued_at: t - 10,
    };
    assert!(denylist.check(&allowed).is_ok());
    group.bench_function("allowed", |b| b.iter(|| denylist.check(&allowed)));
    let refused = TokenFacts {
        sid: Some("op-session-00012345"),
        ..allowed
    };
    assert!(denylist.check(&refused).is_err());
    group.bench_function("refused", |b| b.iter(|| denylist.check(&refused)));
    group.finish();
}

async fn propagation(logouts: usize) {
    let (_redis, redis_url) = common::redis_server();
    let (_op, key, issuer) = common::op(SigningAlg::Rs256).await;
    let (_receiver, url) = common::receiver(|c| {
        c.env("OIDC_LOGOUT_ISSUER", &issuer)
            .env("OIDC_LOGOUT_CLIENT_ID", "app")
            .env("OIDC_LOGOUT_REDIS_URL", &redis_url)
            .env("RUST_LOG", "warn");
    })
    .await;
    let http = reqwest::Client::new();
    let mut instances = Vec::new();
    for _ in 0..3 {
        let settings = DenylistSettings::new(redis_url.clone(), vec![issuer.clone()]);
        instances.push(sync::start(settings).await.expect("denylist"));
    }
    let sids: Vec<String> = (0..logouts).map(|i| format!("op-session-{i}")).collect();
    let tokens: Vec<String> = sids
        .iter()
        .map(|sid| {
            let who = Subject {
                issuer: &issuer,
                audience: "app",
                sub: None,
                sid: Some(sid),
            };
            forge::valid(&key, &who).expect("sign")
        })
        .collect();
    let issued_before = now() - 1;
    let mut delays = Vec::with_capacity(logouts * 3);
    let mut before_the_200 = 0;
    for (sid, token) in sids.iter().zip(&tokens) {
        let facts = TokenFacts {
            issuer: &issuer,
            sub: Some("someone"),
            sid: Some(sid),
            jti: None,
            issued_at: issued_before,
        };
        let reply = send::post(&http, &url, token).await.expect("post");
        assert_eq!(reply.status, 200, "{}", reply.body);
        let answered = Instant::now();
        for denylist in &instances {
            if denylist.check(&facts).is_err() {
                before_the_200 += 1;
                delays.push(Duration::ZERO);
                continue;
            }
            loop {
                tokio::task::yield_now().await;
                if denylist.check(&facts).is_err() {
                    delays.push(answered.elapsed());
                    break;
                }
                assert!(answered.elapsed() < Duration::from_secs(5), "never refused");
            }
        }
    }
    delays.sort_unstable();
    println!(
        "propagation from the receiver's 200 to the first refusal, {logouts} logouts x 3 \
         instances: p50 {:.2?}, p99 {:.2?}, max {:.2?} ({before_the_200} already refused when \
         the 200 arrived)",
        percentile(&delays, 50.0),
        percentile(&delays, 99.0),
        delays.last().copied().unwrap_or_default(),
    );
}

fn main() {
    // Criterion owns the command line; the propagation run's size comes from the environment.
    let logouts = std::env::var("PROPAGATION_LOGOUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let mut c = Criterion::default().configure_from_args();
    check(&mut c);
    c.final_summary();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(propagation(logouts));
}
