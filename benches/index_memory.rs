//! How much Redis memory the session index takes per session, in the documented layout:
//! `INDEX_SESSIONS` sessions (default 1,000,000) registered through `RedisIndex` — three per
//! user, each in an OP session of its own, ids like tower-sessions' (22 characters), subs and
//! sids like Keycloak's (UUIDs), a Keycloak-like issuer — then `used_memory` before and after,
//! per session. Nothing else is in the Redis.
//!
//! Run: `cargo bench --bench index_memory` (`INDEX_SESSIONS=10000000` for ten million: about 3 GB
//! of RAM and a few minutes).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use oidc_logout::index::{IndexSettings, RedisIndex, SessionIndex, SessionRecord};
use oidc_logout::test_op::random_id;

const ISSUER: &str = "https://sso.example.com/realms/customer-portal-production";

async fn used_memory(url: &str) -> u64 {
    let mut conn = redis::Client::open(url)
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await
        .expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory")
}

/// A UUID-shaped random string, as Keycloak's subs and sids are.
fn uuid() -> String {
    let hex: String = random_id(24)
        .expect("random")
        .bytes()
        .map(|b| char::from(b"0123456789abcdef"[usize::from(b % 16)]))
        .take(32)
        .collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn main() {
    let sessions: usize = std::env::var("INDEX_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (_redis, url) = common::redis_server();
        let index = RedisIndex::connect(&url, IndexSettings::default())
            .await
            .expect("connect");
        let before = used_memory(&url).await;
        let started = Instant::now();
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let users = sessions.div_ceil(3);
        let mut lanes = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let (index, next) = (index.clone(), Arc::clone(&next));
            lanes.spawn(async move {
                loop {
                    let user = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if user >= users {
                        return;
                    }
                    let sub = uuid();
                    for _ in 0..3 {
                        let record = SessionRecord {
                            session_id: random_id(16).expect("random"),
                            issuer: ISSUER.into(),
                            sub: sub.clone(),
                            sid: Some(uuid()),
                            auth_time: common::now() - 60,
                            ttl: Duration::from_secs(8 * 3600),
                            customer: None,
                        };
                        index.register(&record).await.expect("register");
                    }
                }
            });
        }
        lanes.join_all().await;
        let after = used_memory(&url).await;
        let registered = users * 3;
        #[allow(clippy::cast_precision_loss)]
        let per_session = (after - before) as f64 / registered as f64;
        println!(
            "{registered} sessions ({users} users x 3, one sid each) registered in {:.0?}: \
             used_memory {} -> {} bytes, {per_session:.0} bytes per session",
            started.elapsed(),
            before,
            after
        );
    });
}
