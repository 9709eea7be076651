//! Load: distinct valid logouts, each ending a live session, fired at the release binary
//! (`oidc-logout serve`) with a real redis-server and the built-in OP, all on this machine.
//! Prints logouts/s, latency percentiles, and receiver and Redis CPU per logout.
//!
//! Run: `cargo bench --bench load` (options after `--`: `--connections 1,16,64`,
//! `--logouts 20000` per run, `--log info|warn`, `--receiver-threads N` for the receiver's
//! `TOKIO_WORKER_THREADS`).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use oidc_logout::op::{SigningAlg, SigningKey, TestOp, logout_claims};
use oidc_logout::store::{IndexSettings, RedisIndex, SessionIndex, SessionRecord, SessionState};

const CLIENT: &str = "load-app";

struct Options {
    connections: Vec<usize>,
    logouts: usize,
    log: String,
    receiver_threads: Option<String>,
}

fn options() -> Options {
    let mut o = Options {
        connections: vec![16],
        logouts: 20_000,
        log: "info".into(),
        receiver_threads: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--connections" => {
                o.connections = value
                    .split(',')
                    .filter_map(|c| c.trim().parse().ok())
                    .collect();
                i += 1;
            }
            "--logouts" => {
                o.logouts = value.parse().unwrap_or(o.logouts);
                i += 1;
            }
            "--log" => {
                o.log = value;
                i += 1;
            }
            "--receiver-threads" => {
                o.receiver_threads = Some(value);
                i += 1;
            }
            _ => {} // cargo bench passes --bench
        }
        i += 1;
    }
    o
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

// The load generator runs on one thread so that it takes as little CPU from the receiver and
// Redis as it can.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let o = options();
    let total: usize = o.logouts * o.connections.len();

    let redis_port = free_port();
    let redis = Killed(
        Command::new("redis-server")
            .args([
                "--port",
                &redis_port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)"),
    );
    let redis_url = format!("redis://127.0.0.1:{redis_port}/");
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
    let mut receiver = Command::new(env!("CARGO_BIN_EXE_oidc-logout"));
    if let Some(threads) = &o.receiver_threads {
        receiver.env("TOKIO_WORKER_THREADS", threads);
    }
    let receiver = Killed(
        receiver
            .arg("serve")
            .env("OIDC_LOGOUT_ISSUER", &issuer)
            .env("OIDC_LOGOUT_CLIENT_ID", CLIENT)
            .env("OIDC_LOGOUT_REDIS_URL", &redis_url)
            .env("OIDC_LOGOUT_LISTEN", &listen)
            .env("RUST_LOG", &o.log)
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

    eprintln!("registering {total} sessions and signing {total} RS256 logout tokens...");
    let index = RedisIndex::connect(&redis_url, IndexSettings::default())
        .await
        .expect("redis");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut registrations = tokio::task::JoinSet::new();
    for chunk in 0..64 {
        let (index, issuer) = (index.clone(), issuer.clone());
        registrations.spawn(async move {
            for i in (chunk..total).step_by(64) {
                let record = SessionRecord {
                    session_id: format!("session-{i}"),
                    issuer: issuer.clone(),
                    sub: format!("user-{i}"),
                    sid: Some(format!("sid-{i}")),
                    auth_time: now - 5,
                    ttl: Duration::from_secs(3600),
                };
                index.register(&record).await.expect("register");
            }
        });
    }
    registrations.join_all().await;
    let tokens: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|w| {
                let (key, issuer) = (&key, &issuer);
                s.spawn(move || {
                    (w..total)
                        .step_by(2)
                        .map(|i| {
                            let mut claims =
                                logout_claims(issuer, CLIENT, None, Some(&format!("sid-{i}")))
                                    .expect("claims");
                            claims["exp"] = (now + 3600).into();
                            (i, key.sign(&serde_json::Map::new(), &claims).expect("sign"))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<(usize, String)> = workers
            .into_iter()
            .flat_map(|w| w.join().expect("signer"))
            .collect();
        all.sort_by_key(|(i, _)| *i);
        all.into_iter().map(|(_, t)| t).collect()
    });

    println!(
        "oidc-logout load: RS256 logouts by sid, each ending a live session; receiver log level {}",
        o.log
    );
    println!(
        "{:>5} {:>9} {:>10} {:>9} {:>9} {:>9} {:>14} {:>12}",
        "conns", "logouts", "logouts/s", "p50", "p99", "p999", "receiver CPU", "redis CPU"
    );
    let mut offset = 0;
    for &connections in &o.connections {
        let batch: Arc<Vec<String>> = Arc::new(tokens[offset..offset + o.logouts].to_vec());
        offset += o.logouts;
        let (cpu_r, cpu_s) = (cpu_seconds(receiver.0.id()), cpu_seconds(redis.0.id()));
        let started = Instant::now();
        let mut workers = tokio::task::JoinSet::new();
        for w in 0..connections {
            let (batch, url) = (Arc::clone(&batch), url.clone());
            workers.spawn(async move {
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .build()
                    .expect("client");
                let mut latencies = Vec::new();
                let mut failures = 0usize;
                for token in batch.iter().skip(w).step_by(connections) {
                    let body = format!("logout_token={token}");
                    let t = Instant::now();
                    let ok = client
                        .post(&url)
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(body)
                        .send()
                        .await
                        .map(|r| r.status().as_u16() == 200)
                        .unwrap_or(false);
                    latencies.push(t.elapsed());
                    failures += usize::from(!ok);
                }
                (latencies, failures)
            });
        }
        let mut latencies = Vec::with_capacity(o.logouts);
        let mut failures = 0;
        for (l, f) in workers.join_all().await {
            latencies.extend(l);
            failures += f;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let (cpu_r, cpu_s) = (
            cpu_seconds(receiver.0.id()) - cpu_r,
            cpu_seconds(redis.0.id()) - cpu_s,
        );
        latencies.sort();
        let n = latencies.len() as f64;
        println!(
            "{:>5} {:>9} {:>10.0} {:>9.2?} {:>9.2?} {:>9.2?} {:>11.1} µs {:>9.1} µs{}",
            connections,
            latencies.len(),
            n / elapsed,
            percentile(&latencies, 50.0),
            percentile(&latencies, 99.0),
            percentile(&latencies, 99.9),
            cpu_r / n * 1e6,
            cpu_s / n * 1e6,
            if failures > 0 {
                format!("  ({failures} not 200!)")
            } else {
                String::new()
            },
        );
        let last = format!("session-{}", offset - 1);
        let state = index.state(&issuer, &last).await.expect("state");
        assert_eq!(
            state,
            SessionState::Ended,
            "the logouts must have ended their sessions"
        );
    }
    println!("receiver peak RSS: {} KiB", peak_rss_kib(receiver.0.id()));
}
