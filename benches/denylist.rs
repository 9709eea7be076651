//! The access-token denylist: the per-request check with 100,000 markers loaded (criterion), and
//! the propagation delay from the receiver's `200` to the first refusal on each of three API
//! instances (a real redis-server, the release receiver binary, three in-process denylists each
//! with its own subscription).
//!
//! Run: `cargo bench --bench denylist` (`-- --logouts N` for the propagation part, default 500).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::Criterion;
use oidc_logout::denylist::sync::{self, DenylistSettings};
use oidc_logout::denylist::{Denylist, FailMode, Kind, Marker, TokenFacts};
use oidc_logout::op::forge::{self, Subject};
use oidc_logout::op::{SigningAlg, SigningKey, TestOp, send};

const ISSUER: &str = "https://op.example.com/realms/bench";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

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

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let n = sorted.len();
    if n == 0 {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

async fn propagation(logouts: usize) {
    let port = free_port();
    let _redis = Killed(
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)"),
    );
    let redis_url = format!("redis://127.0.0.1:{port}/");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let op_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let issuer = format!("http://{}", op_listener.local_addr().expect("addr"));
    let key = Arc::new(SigningKey::generate(SigningAlg::Rs256).expect("key"));
    let op = TestOp::new(issuer.clone(), vec![Arc::clone(&key)]);
    let router = op.router();
    tokio::spawn(async move { axum::serve(op_listener, router).await });
    let listen = format!("127.0.0.1:{}", free_port());
    let _receiver = Killed(
        Command::new(env!("CARGO_BIN_EXE_oidc-logout"))
            .arg("serve")
            .env("OIDC_LOGOUT_ISSUER", &issuer)
            .env("OIDC_LOGOUT_CLIENT_ID", "app")
            .env("OIDC_LOGOUT_REDIS_URL", &redis_url)
            .env("OIDC_LOGOUT_LISTEN", &listen)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("receiver binary"),
    );
    let url = format!("http://{listen}/backchannel-logout");
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if http.get(&url).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    let mut logouts = 500;
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--logouts") {
        logouts = args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .expect("--logouts N");
    }
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
