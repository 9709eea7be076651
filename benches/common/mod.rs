//! What the benchmarks share: a redis-server of their own, the built-in OP, free ports, and the
//! receiver binary started as a separate process. Everything is killed on drop.

#![allow(dead_code)] // each benchmark uses part of it

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oidc_logout::test_op::{SigningAlg, SigningKey, TestOp};

/// A child process killed on drop.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A redis-server without persistence on a free loopback port, and its URL.
pub fn redis_server() -> (Killed, String) {
    let port = free_port();
    let server = Killed(
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)"),
    );
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (server, format!("redis://127.0.0.1:{port}/"))
}

/// The built-in OP served on a free loopback port with one key of `alg`.
pub async fn op(alg: SigningAlg) -> (Arc<TestOp>, Arc<SigningKey>, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("addr"));
    let key = Arc::new(SigningKey::generate(alg).expect("key"));
    let op = TestOp::new(issuer.clone(), vec![Arc::clone(&key)]);
    let router = op.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (op, key, issuer)
}

/// Start `oidc-logout serve` (the release binary) with `configure`'s settings on a free port;
/// returns it and its back-channel logout URL once it answers.
pub async fn receiver(configure: impl FnOnce(&mut Command)) -> (Killed, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    // BENCH_RECEIVER_BIN runs another build (an earlier commit's) for a side-by-side figure.
    let binary = std::env::var_os("BENCH_RECEIVER_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_oidc-logout").into());
    let mut command = Command::new(binary);
    command
        .arg("serve")
        .env("OIDC_LOGOUT_LISTEN", &listen)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    configure(&mut command);
    let receiver = Killed(command.spawn().expect("receiver binary"));
    let url = format!("http://{listen}/backchannel-logout");
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if http.get(&url).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (receiver, url)
}

/// The `p`th percentile (nearest rank) of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let n = sorted.len();
    if n == 0 {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}
