//! What a logged-in request costs in the session store, side by side on one redis-server, and
//! how fast a logout reaches every application instance's sessions.
//!
//! 1. **Hot path**: `SESSION_OPS` (default 20,000) sequential loads, then saves, of one
//!    logged-in session, through tower-sessions-redis-store 0.16 (fred) alone and wrapped in
//!    `LogoutAware`, this crate's `OidcSessionStore` (and on its memory backend, which shows what
//!    decoding the JSON record costs), and tower-sessions' `MemoryStore` alone and wrapped (its
//!    index in Redis). The stores take turns in 20 rounds, so that the machine's drift hits them
//!    alike. Prints p50/p99/mean and the Redis commands per operation from `INFO commandstats`
//!    (the background `PING`s of connections excluded; the logout view's heartbeats, a few
//!    `PUBLISH`es a second, round to zero per operation). A save stores what
//!    the layer would: the loaded record with a new expiry.
//! 2. **Propagation**: `PROPAGATION_LOGOUTS` (default 500) back-channel logouts through the
//!    release receiver binary, each ending a session that three application instances (three
//!    `OidcSessionStore`s, each with its own connection and view) share: the time from the
//!    receiver's `200` to the moment each instance's load returns none.
//!
//! Run: `cargo bench --bench sessions`.

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{now, percentile};
use oidc_logout::index::{IndexSettings, RedisIndex};
use oidc_logout::session_store::{
    LOGIN_KEY, Login, LogoutAware, OidcSessionStore, TokenKeys, TokenSecret,
};
use oidc_logout::test_op::forge::{self, Subject};
use oidc_logout::test_op::{SigningAlg, send};
use time::OffsetDateTime;

const ISSUER: &str = "https://op.example.com/realms/bench";

/// What a logged-in session holds: the login, and a little application data.
fn session_data(issuer: &str, sub: &str, sid: &str) -> HashMap<String, serde_json::Value> {
    session_data_with(issuer, sub, sid, false)
}

/// A token of about `len` bytes, shaped like a JWT.
fn token(len: usize) -> Option<TokenSecret> {
    Some(TokenSecret::new(format!("eyJ{}", "x".repeat(len))))
}

/// A session's data; with `tokens`, its login holds an ID token, an access token (about 1 KB
/// each, as Keycloak's and Entra's are) and a refresh token.
fn session_data_with(
    issuer: &str,
    sub: &str,
    sid: &str,
    tokens: bool,
) -> HashMap<String, serde_json::Value> {
    let login = Login {
        issuer: issuer.into(),
        sub: sub.into(),
        client_id: Some("app".into()),
        sid: Some(sid.into()),
        auth_time: now() - 60,
        logged_in_at: now() - 60,
        policy: None,
        id_token: if tokens { token(900) } else { None },
        refresh_token: if tokens { token(700) } else { None },
        access_token: if tokens { token(1000) } else { None },
        customer: None,
    };
    HashMap::from([
        (
            LOGIN_KEY.to_owned(),
            serde_json::to_value(login).expect("login"),
        ),
        ("cart".to_owned(), serde_json::json!({ "items": [1, 2, 3] })),
        ("csrf".to_owned(), serde_json::json!("q3v1b0c9e8d7")),
    ])
}

async fn command_counts(url: &str) -> HashMap<String, u64> {
    let mut conn = redis::Client::open(url)
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .expect("INFO");
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.split(',').find_map(|s| s.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

/// Commands per operation between two readings, by command, without background PINGs and the
/// readings' own INFO.
fn per_op(before: &HashMap<String, u64>, after: &HashMap<String, u64>, ops: usize) -> String {
    let mut parts: Vec<String> = after
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "ping" | "info"))
        .filter_map(|(name, calls)| {
            let delta = calls.saturating_sub(before.get(name).copied().unwrap_or(0));
            #[allow(clippy::cast_precision_loss)]
            let each = delta as f64 / ops as f64;
            (each >= 0.005).then(|| format!("{name} {each:.2}"))
        })
        .collect();
    parts.sort();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

fn summary(mut times: Vec<Duration>) -> String {
    times.sort_unstable();
    let mean = times.iter().sum::<Duration>() / u32::try_from(times.len().max(1)).unwrap_or(1);
    format!(
        "p50 {:>6.1} µs  p99 {:>6.1} µs  mean {:>6.1} µs",
        percentile(&times, 50.0).as_secs_f64() * 1e6,
        percentile(&times, 99.0).as_secs_f64() * 1e6,
        mean.as_secs_f64() * 1e6
    )
}

type Step = Box<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// One store under measurement: a load and a save of its logged-in session.
struct Measured {
    label: &'static str,
    load: Step,
    save: Step,
}

/// A [`Measured`] store for a store of one tower-sessions version.
macro_rules! subject {
    ($name:ident, $ts:ident) => {
        async fn $name<S: $ts::session_store::SessionStore>(
            label: &'static str,
            store: S,
            tokens: bool,
        ) -> Measured {
            use $ts::session::{Id, Record};
            let store = Arc::new(store);
            let mut record = Record {
                id: Id::default(),
                data: session_data_with(ISSUER, "alice", "op-1", tokens),
                expiry_date: OffsetDateTime::now_utc() + time::Duration::days(14),
            };
            store.create(&mut record).await.expect("create");
            let id = record.id;
            // Warm up: connections, and the logout view following the issuer.
            for _ in 0..200 {
                store.load(&id).await.expect("load").expect("live");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let loaded = Arc::new(store.load(&id).await.expect("load").expect("live"));
            let loader = Arc::clone(&store);
            Measured {
                label,
                load: Box::new(move || {
                    let store = Arc::clone(&loader);
                    Box::pin(async move {
                        let found = store.load(&id).await.expect("load");
                        assert!(found.is_some(), "the session must load");
                    })
                }),
                save: Box::new(move || {
                    let (store, loaded) = (Arc::clone(&store), Arc::clone(&loaded));
                    Box::pin(async move {
                        // What the layer saves: the loaded record with a new expiry.
                        let mut record = (*loaded).clone();
                        record.expiry_date = OffsetDateTime::now_utc() + time::Duration::days(14);
                        store.save(&record).await.expect("save");
                    })
                }),
            }
        }
    };
}

subject!(subject_015, tower_sessions);
subject!(subject_014, tower_sessions_014);

async fn fred_store(
    url: &str,
) -> tower_sessions_redis_store::RedisStore<tower_sessions_redis_store::fred::prelude::Pool> {
    use tower_sessions_redis_store::fred::prelude::{ClientLike as _, Config, Pool};
    let pool =
        Pool::new(Config::from_url(url).expect("config"), None, None, None, 1).expect("pool");
    pool.init().await.expect("fred connects");
    tower_sessions_redis_store::RedisStore::new(pool)
}

async fn index(url: &str) -> RedisIndex {
    RedisIndex::connect(url, IndexSettings::default())
        .await
        .expect("connect")
}

/// Time `step` `ops` times.
async fn timed(step: &Step, ops: usize, into: &mut Vec<Duration>) {
    for _ in 0..ops {
        let started = Instant::now();
        step().await;
        into.push(started.elapsed());
    }
}

async fn hot_paths(ops: usize) {
    let (_redis, url) = common::redis_server();
    let subjects = vec![
        subject_014(
            "tower-sessions-redis-store 0.16",
            fred_store(&url).await,
            false,
        )
        .await,
        subject_014(
            "LogoutAware<tower-sessions-redis-store>",
            LogoutAware::wrap(fred_store(&url).await, index(&url).await),
            false,
        )
        .await,
        subject_015(
            "OidcSessionStore (this crate's)",
            OidcSessionStore::new(index(&url).await),
            false,
        )
        .await,
        subject_015(
            "OidcSessionStore on the memory backend (no network)",
            OidcSessionStore::new(oidc_logout::index::MemoryIndex::new(
                IndexSettings::default(),
            )),
            false,
        )
        .await,
        subject_015(
            "tower-sessions MemoryStore",
            tower_sessions::MemoryStore::default(),
            false,
        )
        .await,
        subject_015(
            "LogoutAware<MemoryStore> (index in Redis)",
            LogoutAware::wrap(tower_sessions::MemoryStore::default(), index(&url).await),
            false,
        )
        .await,
        subject_015(
            "OidcSessionStore, a login with ID, access and refresh tokens",
            OidcSessionStore::new(index(&url).await),
            true,
        )
        .await,
        subject_015(
            "OidcSessionStore, the same tokens sealed",
            OidcSessionStore::new(index(&url).await).with_token_keys(
                TokenKeys::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").expect("key"),
            ),
            true,
        )
        .await,
    ];
    // Commands per operation, one store at a time (the counters are the server's).
    let mut commands = Vec::new();
    for subject in &subjects {
        let before = command_counts(&url).await;
        timed(&subject.load, 1000, &mut Vec::new()).await;
        let between = command_counts(&url).await;
        timed(&subject.save, 1000, &mut Vec::new()).await;
        let after = command_counts(&url).await;
        commands.push((
            per_op(&before, &between, 1000),
            per_op(&between, &after, 1000),
        ));
    }
    // Times, the stores interleaved in rounds so that the machine's drift hits them alike.
    let rounds = 20;
    let mut loads = vec![Vec::with_capacity(ops); subjects.len()];
    let mut saves = vec![Vec::with_capacity(ops); subjects.len()];
    for _ in 0..rounds {
        for (i, subject) in subjects.iter().enumerate() {
            timed(&subject.load, ops / rounds, &mut loads[i]).await;
            timed(&subject.save, ops / rounds, &mut saves[i]).await;
        }
    }
    println!(
        "hot path: {ops} loads and {ops} saves of one logged-in session per store, interleaved \
         in {rounds} rounds, one redis-server"
    );
    for (i, subject) in subjects.iter().enumerate() {
        println!("{}", subject.label);
        println!(
            "  load  {}  Redis per load: {}",
            summary(std::mem::take(&mut loads[i])),
            commands[i].0
        );
        println!(
            "  save  {}  Redis per save: {}",
            summary(std::mem::take(&mut saves[i])),
            commands[i].1
        );
    }
}

async fn propagation(logouts: usize) {
    use tower_sessions::SessionStore as _;
    use tower_sessions::session::{Id, Record};
    let (_redis, url) = common::redis_server();
    let (_op, key, issuer) = common::op(SigningAlg::Rs256).await;
    let (_receiver, receiver) = common::receiver(|c| {
        c.env("OIDC_LOGOUT_ISSUER", &issuer)
            .env("OIDC_LOGOUT_CLIENT_ID", "app")
            .env("OIDC_LOGOUT_REDIS_URL", &url)
            .env("RUST_LOG", "warn");
    })
    .await;
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(OidcSessionStore::new(index(&url).await));
    }
    let mut sessions = Vec::with_capacity(logouts);
    for i in 0..logouts {
        let mut record = Record {
            id: Id::default(),
            data: session_data(&issuer, &format!("user-{i}"), &format!("op-session-{i}")),
            expiry_date: OffsetDateTime::now_utc() + time::Duration::hours(1),
        };
        instances[0].create(&mut record).await.expect("create");
        sessions.push(record.id);
    }
    // Every instance has loaded a session of the issuer, so its view follows it.
    for instance in &instances {
        for _ in 0..50 {
            instance.load(&sessions[0]).await.expect("load");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let tokens: Vec<String> = (0..logouts)
        .map(|i| {
            let sid = format!("op-session-{i}");
            let who = Subject {
                issuer: &issuer,
                audience: "app",
                sub: None,
                sid: Some(&sid),
            };
            forge::valid(&key, &who).expect("sign")
        })
        .collect();
    let http = reqwest::Client::new();
    let (mut delays, mut before_the_200) = (Vec::with_capacity(logouts * 3), 0);
    for (id, token) in sessions.iter().zip(&tokens) {
        let reply = send::post(&http, &receiver, token).await.expect("post");
        assert_eq!(reply.status, 200, "{}", reply.body);
        let answered = Instant::now();
        for instance in &instances {
            if instance.load(id).await.expect("load").is_none() {
                before_the_200 += 1;
                delays.push(answered.elapsed());
                continue;
            }
            loop {
                tokio::task::yield_now().await;
                if instance.load(id).await.expect("load").is_none() {
                    delays.push(answered.elapsed());
                    break;
                }
                assert!(answered.elapsed() < Duration::from_secs(5), "never ended");
            }
        }
    }
    delays.sort_unstable();
    println!(
        "propagation from the receiver's 200 to a load returning none, {logouts} logouts x 3 \
         instances: p50 {:.2?}, p99 {:.2?}, max {:.2?} ({before_the_200} ended at the first load \
         after the 200)",
        percentile(&delays, 50.0),
        percentile(&delays, 99.0),
        delays.last().copied().unwrap_or_default(),
    );
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is read from the command line.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(hot_paths(env_or("SESSION_OPS", 20_000)));
    runtime.block_on(propagation(env_or("PROPAGATION_LOGOUTS", 500)));
}
