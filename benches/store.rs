//! Session index operations, one at a time, on both backends: what an application pays per login
//! (`register`) and per request (`state`), and what a logout costs in the store (`logout` of one
//! session by sid, of 1,000 sessions of one user by sub). The Redis backend talks to a real
//! redis-server on a free loopback port, so its figures are round trips.
//!
//! Run: `cargo bench --bench store`.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::now;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use oidc_logout::index::{
    IndexSettings, Logout, MemoryIndex, RedisIndex, SessionIndex, SessionRecord, Target,
};
use tokio::runtime::Runtime;

const ISSUER: &str = "https://op.example.com/realms/bench";

/// A name no earlier iteration used, so every measured call does real work.
fn fresh(what: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{what}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn record(sub: &str, sid: &str) -> SessionRecord {
    SessionRecord {
        session_id: fresh("session"),
        issuer: ISSUER.into(),
        sub: sub.into(),
        sid: Some(sid.into()),
        auth_time: now() - 5,
        ttl: Duration::from_secs(3600),
        customer: None,
    }
}

fn logout<'a>(target: Target<'a>, jti: &'a str) -> Logout<'a> {
    Logout {
        issuer: ISSUER,
        target,
        issued_at: now(),
        jti: Some((jti, (now() + 300) * 1000)),
        deny: None,
        sid_logout: Default::default(),
    }
}

fn bench_backend<S: SessionIndex>(c: &mut Criterion, rt: &Runtime, name: &str, index: &S) {
    let mut group = c.benchmark_group("store");
    group.bench_function(BenchmarkId::new("register", name), |b| {
        b.iter_custom(|iters| {
            let records: Vec<_> = (0..iters)
                .map(|_| record(&fresh("user"), &fresh("sid")))
                .collect();
            rt.block_on(async {
                let started = Instant::now();
                for r in &records {
                    index.register(r).await.expect("register");
                }
                started.elapsed()
            })
        })
    });
    group.bench_function(BenchmarkId::new("state", name), |b| {
        let r = record("state-user", "state-sid");
        rt.block_on(index.register(&r)).expect("register");
        b.iter(|| rt.block_on(index.state(&r.key())).expect("state"))
    });
    group.bench_function(BenchmarkId::new("logout_sid_1_session", name), |b| {
        b.iter_custom(|iters| {
            let records: Vec<_> = (0..iters)
                .map(|_| record(&fresh("user"), &fresh("sid")))
                .collect();
            let jtis: Vec<_> = (0..iters).map(|_| fresh("jti")).collect();
            rt.block_on(async {
                for r in &records {
                    index.register(r).await.expect("register");
                }
                let started = Instant::now();
                for (r, jti) in records.iter().zip(&jtis) {
                    let sid = r.sid.as_deref().unwrap_or_default();
                    let target = Target::Sid { sid, sub: None };
                    index.logout(&logout(target, jti)).await.expect("logout");
                }
                started.elapsed()
            })
        })
    });
    group.sample_size(10);
    group.bench_function(BenchmarkId::new("logout_sub_1000_sessions", name), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let user = fresh("user");
                let records: Vec<_> = (0..1000).map(|_| record(&user, &fresh("sid"))).collect();
                let jti = fresh("jti");
                total += rt.block_on(async {
                    for r in &records {
                        index.register(r).await.expect("register");
                    }
                    let started = Instant::now();
                    let outcome = index
                        .logout(&logout(Target::Sub { sub: &user }, &jti))
                        .await
                        .expect("logout");
                    let elapsed = started.elapsed();
                    assert!(
                        matches!(outcome, oidc_logout::index::LogoutOutcome::Applied { ended } if ended.len() == 1000)
                    );
                    elapsed
                });
            }
            total
        })
    });
    group.finish();
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    bench_backend(
        c,
        &rt,
        "memory",
        &MemoryIndex::new(IndexSettings::default()),
    );

    let (_server, url) = common::redis_server();
    let index = rt.block_on(async {
        for _ in 0..50 {
            if let Ok(index) = RedisIndex::connect(&url, IndexSettings::default()).await {
                return index;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("redis-server did not start on {url}");
    });
    bench_backend(c, &rt, "redis", &index);
}

criterion_group!(benches, bench);
criterion_main!(benches);
