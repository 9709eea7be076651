//! Load: distinct valid logouts, each ending a live session, fired at the release binary
//! (`oidc-logout serve`) with a real redis-server and the built-in OP, all on this machine.
//! Prints logouts/s, latency percentiles, receiver and Redis CPU per logout, the time to end
//! 1,000 sessions of one user, and receiver peak RSS.
//!
//! Run: `cargo bench --bench load` (options after `--`):
//! - `--connections 1,16,64`, `--logouts 20000` per connection count, `--alg RS256|ES256|EdDSA`;
//! - `--fanout 1000` sessions of one user ended by one `sub` logout (`--fanout 0` to skip),
//!   repeated `--fanout-users 20` times;
//! - `--log info|warn` (receiver log level), `--receiver-threads N` (its `TOKIO_WORKER_THREADS`),
//!   `--revocation off` (no refresh-token revocation hook: `revoke_refresh_tokens = false`),
//!   `--metrics on` (the receiver records Prometheus metrics on a metrics listener);
//! - `--soak 600 --rate 4000`: instead of the above, a steady load for 600 s at 4,000 logouts/s
//!   (EdDSA, signed on the fly), printing rate, latency, receiver RSS and Redis memory every 10 s.
//!
//! `BENCH_RECEIVER_BIN=/path/to/oidc-logout` runs another build of the receiver (an earlier
//! commit's) with the same load, for before/after figures.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Killed, now};
use oidc_logout::index::{IndexSettings, RedisIndex, SessionIndex, SessionRecord, SessionState};
use oidc_logout::test_op::forge::{self, Subject};
use oidc_logout::test_op::send::{self, LoadReport};
use oidc_logout::test_op::{SigningAlg, SigningKey, TestOp};

const CLIENT: &str = "load-app";

struct Options {
    connections: Vec<usize>,
    logouts: usize,
    alg: SigningAlg,
    fanout: usize,
    fanout_users: usize,
    log: String,
    receiver_threads: Option<String>,
    soak: Option<u64>,
    rate: f64,
    revocation: bool,
    metrics: bool,
}

fn options() -> Options {
    let mut o = Options {
        connections: vec![16],
        logouts: 20_000,
        alg: SigningAlg::Rs256,
        fanout: 1000,
        fanout_users: 20,
        log: "info".into(),
        receiver_threads: None,
        soak: None,
        rate: 4000.0,
        revocation: true,
        metrics: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        let mut takes_value = true;
        match args[i].as_str() {
            "--connections" => {
                o.connections = value
                    .split(',')
                    .filter_map(|c| c.trim().parse().ok())
                    .collect();
            }
            "--logouts" => o.logouts = value.parse().expect("--logouts N"),
            "--alg" => o.alg = value.parse().expect("--alg RS256|PS256|ES256|ES384|EdDSA"),
            "--fanout" => o.fanout = value.parse().expect("--fanout N"),
            "--fanout-users" => o.fanout_users = value.parse().expect("--fanout-users N"),
            "--log" => o.log = value,
            "--receiver-threads" => o.receiver_threads = Some(value),
            "--soak" => o.soak = Some(value.parse().expect("--soak SECONDS")),
            "--rate" => o.rate = value.parse().expect("--rate PER_SECOND"),
            "--revocation" => o.revocation = value != "off",
            "--metrics" => o.metrics = value == "on",
            _ => takes_value = false, // cargo bench passes --bench
        }
        i += 1 + usize::from(takes_value);
    }
    o
}

/// utime + stime of a process, in seconds (Linux /proc; clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_comm = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of stat are utime and stime; after the comm they are at 11 and 12.
    (ticks(11) + ticks(12)) / 100.0
}

/// A line of /proc/<pid>/status in KiB (`VmHWM:` peak RSS, `VmRSS:` current RSS).
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

struct Rig {
    redis: Killed,
    receiver: Killed,
    _op: Arc<TestOp>,
    key: Arc<SigningKey>,
    issuer: String,
    url: String,
    index: RedisIndex,
    redis_url: String,
}

async fn start(o: &Options) -> Rig {
    let (redis, redis_url) = common::redis_server();
    let (op, key, issuer) = common::op(o.alg).await;
    // The issuer in a config file, to be able to turn refresh-token revocation off.
    let config = std::env::temp_dir().join(format!("oidc-logout-load-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        format!(
            "[[issuers]]\nissuer = \"{issuer}\"\nclients = [\"{CLIENT}\"]\n\
             algorithms = [\"{}\"]\nrevoke_refresh_tokens = {}\n",
            o.alg.name(),
            o.revocation
        ),
    )
    .expect("config file");
    let (receiver, url) = common::receiver(|c| {
        c.arg("--config")
            .arg(&config)
            .env("OIDC_LOGOUT_REDIS_URL", &redis_url)
            .env("RUST_LOG", &o.log);
        if let Some(threads) = &o.receiver_threads {
            c.env("TOKIO_WORKER_THREADS", threads);
        }
        if o.metrics {
            let addr = format!("127.0.0.1:{}", common::free_port());
            c.env("OIDC_LOGOUT_METRICS_LISTEN", addr);
        }
    })
    .await;
    let index = RedisIndex::connect(&redis_url, IndexSettings::default())
        .await
        .expect("redis");
    Rig {
        redis,
        receiver,
        _op: op,
        key,
        issuer,
        url,
        index,
        redis_url,
    }
}

fn record(issuer: &str, session: String, sub: String, sid: Option<String>) -> SessionRecord {
    SessionRecord {
        session_id: session,
        issuer: issuer.to_owned(),
        sub,
        sid,
        auth_time: now() - 5,
        ttl: Duration::from_secs(3600),
        customer: None,
    }
}

/// Register `records` over 64 concurrent Redis calls; returns them.
async fn register_all(index: &RedisIndex, records: Vec<SessionRecord>) -> Arc<Vec<SessionRecord>> {
    let records = Arc::new(records);
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..64 {
        let (index, records) = (index.clone(), Arc::clone(&records));
        tasks.spawn(async move {
            for r in records.iter().skip(lane).step_by(64) {
                index.register(r).await.expect("register");
            }
        });
    }
    tasks.join_all().await;
    records
}

/// Sign one token per subject on two threads.
fn sign_all(rig: &Rig, subjects: &[(Option<String>, Option<String>)]) -> Vec<String> {
    std::thread::scope(|s| {
        let workers: Vec<_> = subjects
            .chunks(subjects.len().div_ceil(2).max(1))
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|(sub, sid)| {
                            let who = Subject {
                                issuer: &rig.issuer,
                                audience: CLIENT,
                                sub: sub.as_deref(),
                                sid: sid.as_deref(),
                            };
                            forge::valid(&rig.key, &who).expect("sign")
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("signer"))
            .collect()
    })
}

async fn throughput(o: &Options, rig: &Rig) {
    let total = o.logouts * o.connections.len();
    eprintln!(
        "registering {total} sessions and signing {total} {} logout tokens...",
        o.alg
    );
    let records = (0..total)
        .map(|i| {
            let sid = Some(format!("sid-{i}"));
            record(
                &rig.issuer,
                format!("session-{i}"),
                format!("user-{i}"),
                sid,
            )
        })
        .collect();
    let records = register_all(&rig.index, records).await;
    let subjects: Vec<_> = (0..total)
        .map(|i| (None, Some(format!("sid-{i}"))))
        .collect();
    let tokens = sign_all(rig, &subjects);

    println!(
        "oidc-logout load: {} logouts by sid, each ending a live session; receiver log level {}",
        o.alg, o.log
    );
    println!(
        "{:>5} {:>9} {:>10} {:>9} {:>9} {:>9} {:>14} {:>12}",
        "conns", "logouts", "logouts/s", "p50", "p99", "p999", "receiver CPU", "redis CPU"
    );
    for (round, &connections) in o.connections.iter().enumerate() {
        let range = round * o.logouts..(round + 1) * o.logouts;
        let batch = Arc::new(tokens[range.clone()].to_vec());
        let (pid_r, pid_s) = (rig.receiver.0.id(), rig.redis.0.id());
        let (cpu_r, cpu_s) = (cpu_seconds(pid_r), cpu_seconds(pid_s));
        let report = send::load(&rig.url, batch, connections).await;
        let n = report.sent() as f64;
        let (cpu_r, cpu_s) = (cpu_seconds(pid_r) - cpu_r, cpu_seconds(pid_s) - cpu_s);
        let failures = report.sent() - report.count(200);
        println!(
            "{:>5} {:>9} {:>10.0} {:>9.2?} {:>9.2?} {:>9.2?} {:>11.1} µs {:>9.1} µs{}",
            connections,
            report.sent(),
            report.rate(),
            report.percentile(50.0),
            report.percentile(99.0),
            report.percentile(99.9),
            cpu_r / n * 1e6,
            cpu_s / n * 1e6,
            if failures > 0 {
                format!("  ({failures} not 200!)")
            } else {
                String::new()
            },
        );
        let last = &records[range.end - 1];
        let state = rig.index.state(&last.key()).await.expect("state");
        assert_eq!(
            state,
            SessionState::Ended,
            "the logouts ended their sessions"
        );
    }
}

/// One user with `o.fanout` live sessions (each its own sid), logged out by `sub`: the time from
/// sending the token to the receiver's 200, which it sends after all of them are ended.
async fn fanout(o: &Options, rig: &Rig) {
    eprintln!(
        "registering {} users with {} sessions each...",
        o.fanout_users, o.fanout
    );
    let records = (0..o.fanout_users)
        .flat_map(|u| {
            (0..o.fanout).map(move |s| (format!("fan-{u}-{s}"), format!("fan-user-{u}"), s))
        })
        .map(|(session, sub, s)| record(&rig.issuer, session, sub, Some(format!("fan-sid-{s}"))))
        .collect();
    let records = register_all(&rig.index, records).await;
    let subjects: Vec<_> = (0..o.fanout_users)
        .map(|u| (Some(format!("fan-user-{u}")), None))
        .collect();
    let tokens = sign_all(rig, &subjects);
    let http = reqwest::Client::new();
    let mut times = Vec::new();
    for (u, token) in tokens.iter().enumerate() {
        let reply = send::post(&http, &rig.url, token).await.expect("post");
        assert_eq!(reply.status, 200, "{}", reply.body);
        times.push(reply.elapsed);
        for s in [0, o.fanout - 1] {
            let state = rig.index.state(&records[u * o.fanout + s].key()).await;
            assert_eq!(state.expect("state"), SessionState::Ended);
        }
    }
    let report = LoadReport {
        latencies: {
            times.sort_unstable();
            times
        },
        ..LoadReport::default()
    };
    println!(
        "one user with {} live sessions, logged out by sub ({} users): p50 {:.2?}, max {:.2?} \
         from request to 200 (all sessions ended)",
        o.fanout,
        o.fanout_users,
        report.percentile(50.0),
        report.latencies.last().copied().unwrap_or_default(),
    );
}

/// Redis `used_memory` in bytes.
async fn redis_memory(url: &str) -> u64 {
    let Ok(client) = redis::Client::open(url) else {
        return 0;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return 0;
    };
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A steady load at `o.rate` logouts/s for `seconds`: 16 connections, each registering a session
/// and then logging it out on a fixed schedule, tokens signed on the fly.
async fn soak(o: &Options, rig: Arc<Rig>, seconds: u64) {
    const CONNECTIONS: usize = 16;
    let interval: Arc<Mutex<(Vec<Duration>, usize)>> = Arc::default();
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let period = Duration::from_secs_f64(CONNECTIONS as f64 / o.rate);
    println!(
        "soak: {} logouts/s ({}), {CONNECTIONS} connections, {seconds} s; every 10 s:",
        o.rate, o.alg
    );
    println!(
        "{:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12} {:>12}",
        "time", "logouts", "rate/s", "p50", "p99", "p999", "max", "receiver RSS", "redis mem"
    );
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..CONNECTIONS {
        let (rig, interval) = (Arc::clone(&rig), Arc::clone(&interval));
        workers.spawn(async move {
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("client");
            let offset = period.mul_f64(w as f64 / CONNECTIONS as f64);
            let mut next = tokio::time::Instant::now() + offset;
            let mut i = 0u64;
            while Instant::now() < end {
                tokio::time::sleep_until(next).await;
                next += period;
                let (session, sid) = (format!("soak-{w}-{i}"), format!("soak-sid-{w}-{i}"));
                i += 1;
                let r = record(
                    &rig.issuer,
                    session,
                    format!("soak-user-{w}"),
                    Some(sid.clone()),
                );
                rig.index.register(&r).await.expect("register");
                let who = Subject {
                    issuer: &rig.issuer,
                    audience: CLIENT,
                    sub: None,
                    sid: Some(&sid),
                };
                let token = forge::valid(&rig.key, &who).expect("sign");
                let outcome = send::post(&http, &rig.url, &token).await;
                let mut stats = interval.lock().expect("stats");
                match outcome {
                    Ok(reply) if reply.status == 200 => stats.0.push(reply.elapsed),
                    _ => stats.1 += 1,
                }
            }
        });
    }
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(10),
        Duration::from_secs(10),
    );
    let mut last = Instant::now();
    while Instant::now() < end + Duration::from_secs(1) {
        tick.tick().await;
        let (mut latencies, failures) = std::mem::take(&mut *interval.lock().expect("stats"));
        latencies.sort_unstable();
        let elapsed = last.elapsed();
        last = Instant::now();
        let report = LoadReport {
            latencies,
            ..LoadReport::default()
        };
        println!(
            "{:>5}s {:>9} {:>9.0} {:>9.2?} {:>9.2?} {:>9.2?} {:>9.2?} {:>9} KiB {:>8} KiB{}",
            started.elapsed().as_secs(),
            report.latencies.len(),
            report.latencies.len() as f64 / elapsed.as_secs_f64(),
            report.percentile(50.0),
            report.percentile(99.0),
            report.percentile(99.9),
            report.latencies.last().copied().unwrap_or_default(),
            status_kib(rig.receiver.0.id(), "VmRSS:"),
            redis_memory(&rig.redis_url).await / 1024,
            if failures > 0 {
                format!("  ({failures} not 200!)")
            } else {
                String::new()
            },
        );
    }
    workers.join_all().await;
}

// The load generator runs on one thread so that it takes as little CPU from the receiver and
// Redis as it can.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut o = options();
    if let Some(seconds) = o.soak {
        if o.alg == SigningAlg::Rs256 {
            // RSA signing (~1 ms) is too slow to sign thousands of tokens a second on the fly.
            o.alg = SigningAlg::EdDsa;
        }
        let rig = Arc::new(start(&o).await);
        soak(&o, Arc::clone(&rig), seconds).await;
        println!(
            "receiver peak RSS: {} KiB",
            status_kib(rig.receiver.0.id(), "VmHWM:")
        );
        return;
    }
    let rig = start(&o).await;
    throughput(&o, &rig).await;
    if o.fanout > 0 {
        fanout(&o, &rig).await;
    }
    println!(
        "receiver peak RSS: {} KiB",
        status_kib(rig.receiver.0.id(), "VmHWM:")
    );
}
