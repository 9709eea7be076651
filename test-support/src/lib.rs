//! What the tests of oidc-logout share (the library's in `lib/tests`, the command's and the
//! whole system's in `tests`): a real `redis-server` on a free loopback port (and Cluster,
//! Sentinel, TLS in [`topologies`]), the built-in OP over real HTTP, receivers served on
//! loopback, child processes whose output a failure shows, the senders of the other inputs
//! ([`signals`]) and the one test application ([`app`]). Every server stops when its handle is
//! dropped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use oidc_logout::Core;
use oidc_logout::index::{
    IndexSettings, RecordStore, RedisIndex, Registration, SessionIndex, SessionKey, SessionRecord,
    SessionState,
};
use oidc_logout::inputs::backchannel::{PATH, Receiver};
use oidc_logout::logout_token::Policy;
use oidc_logout::provider::{Provider, ProviderSettings, http_client};
use oidc_logout::test_op::{SigningAlg, SigningKey, TestOp, logout_claims, random_id};
use serde_json::{Map, Value};
use tokio::net::TcpListener;

pub mod app;
pub mod faulty;
pub mod signals;
pub mod topologies;

pub const CLIENT: &str = "app-1";

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A loopback port free now, and never handed out before in this process: tests running in
/// parallel each get their own (the kernel may hand a released port out again at once).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let port = StdListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A `redis-server` of our own on a free loopback port, without persistence unless durable.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    /// With a data directory: an append-only file synced on every write, as a production Redis
    /// that must not lose acknowledged logouts runs.
    durable: Option<std::path::PathBuf>,
}

impl RedisServer {
    pub fn start() -> Self {
        let mut server = Self {
            port: free_port(),
            child: None,
            durable: None,
        };
        server.spawn_on_a_free_port();
        server
    }

    /// Start it; when its port was taken meanwhile (another process bound it between
    /// `free_port` and redis-server's bind: redis-server exits), on another free port.
    fn spawn_on_a_free_port(&mut self) {
        for _ in 0..5 {
            if self.try_spawn() {
                return;
            }
            self.port = free_port();
        }
        panic!("redis-server could not bind a free loopback port five times");
    }

    /// A server whose data survives [`stop`](Self::stop) (a crash: SIGKILL) and
    /// [`restart`](Self::restart): `appendonly yes`, `appendfsync always`.
    pub fn start_durable() -> Self {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("oidc-logout-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("redis data dir");
        let mut server = Self {
            port,
            child: None,
            durable: Some(dir),
        };
        server.spawn_on_a_free_port();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Start it on its port and wait until that port is answered by this very redis-server
    /// (its `INFO` names the child's pid); `false` when the child exited (the port was taken).
    fn try_spawn(&mut self) -> bool {
        let mut command = Command::new("redis-server");
        command
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--protected-mode", "no", "--loglevel", "warning"]);
        match &self.durable {
            Some(dir) => command
                .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
                .arg(dir),
            None => command.args(["--appendonly", "no"]),
        };
        let child = command
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}); install it with `apt-get install redis-server` or run .ci/run")
            });
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                self.child = None;
                return false;
            }
            if redis_pid(self.port) == Some(pid) {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kill the server (all data is lost: it has no persistence).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        assert!(
            self.try_spawn(),
            "redis-server could not start again on port {}: another process took it",
            self.port
        );
    }
}

/// The pid of the redis-server answering on `port`, if one answers (`INFO server`).
fn redis_pid(port: u16) -> Option<u32> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    stream.write_all(b"INFO server\r\n").ok()?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(11).any(|w| w == b"process_id:") || !answer.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    text.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = &self.durable {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Serve a router on a free loopback port; returns its base URL.
pub async fn serve(router: axum::Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

/// The built-in OP served over HTTP, with one RS256 key published.
pub struct Op {
    pub op: Arc<TestOp>,
    pub key: Arc<SigningKey>,
}

impl Op {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let issuer = format!("http://{}", listener.local_addr().expect("addr"));
        let key = Arc::new(SigningKey::generate(SigningAlg::Rs256).expect("RSA key"));
        let op = TestOp::new(issuer, vec![Arc::clone(&key)]);
        let router = op.router();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { op, key }
    }

    pub fn issuer(&self) -> &str {
        self.op.issuer()
    }

    /// Typical claims for `sub`/`sid`, audience [`CLIENT`].
    pub fn claims(&self, sub: Option<&str>, sid: Option<&str>) -> Value {
        logout_claims(self.issuer(), CLIENT, sub, sid).expect("claims")
    }

    /// Sign with the published key and the header `typ: logout+jwt`.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with(&self.key, &[("typ", "logout+jwt".into())], claims)
    }

    pub fn sign_with(&self, key: &SigningKey, header: &[(&str, Value)], claims: &Value) -> String {
        sign_with(key, header, claims)
    }
}

/// Sign `claims` with `key` and these header members (added to `alg` and `kid`).
pub fn sign_with(key: &SigningKey, header: &[(&str, Value)], claims: &Value) -> String {
    let header: Map<String, Value> = header
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    key.sign(&header, claims).expect("sign")
}

pub fn policy(issuer: &str) -> Policy {
    Policy::new(issuer, CLIENT).trusted_audience("trusted-api")
}

pub fn provider_settings() -> ProviderSettings {
    ProviderSettings::default().with_refetch_cooldown(Duration::from_secs(60))
}

/// The one core over `index`, knowing `issuer` (denylist markers of the default lifetime).
pub fn core<S: SessionIndex + RecordStore>(index: S, issuer: &str) -> Core<S> {
    Core::builder(index).issuer(issuer).build()
}

/// An operator acting on every issuer, for the core's read side.
pub fn operator() -> oidc_logout::core::Sender {
    oidc_logout::core::Sender::new("test", "operator", oidc_logout::core::Scope::any_issuer())
}

/// A back-channel receiver over `index` trusting `provider`'s issuer under `policy`.
pub fn receiver<S: SessionIndex + RecordStore>(
    index: S,
    provider: Arc<Provider>,
    policy: Policy,
) -> Receiver<S> {
    Receiver::new(core(index, &policy.issuer)).with_issuer(provider, policy)
}

/// Redis, the OP and one receiver on the Redis index.
pub struct Harness {
    pub redis: RedisServer,
    pub op: Op,
    pub index: RedisIndex,
    pub provider: Arc<Provider>,
    pub url: String,
    pub http: reqwest::Client,
}

/// A session of `sub` at `issuer` with the application id `id`, in the OP session `op-<id>`,
/// authenticated at `auth_time`, living an hour.
pub fn session(issuer: &str, id: &str, sub: &str, auth_time: u64) -> SessionRecord {
    SessionRecord {
        session_id: id.into(),
        issuer: issuer.into(),
        sub: sub.into(),
        sid: Some(format!("op-{id}")),
        auth_time,
        ttl: Duration::from_secs(3600),
        customer: None,
    }
}

/// What the index says of the session `record` registered.
pub async fn state_of_record<S: SessionIndex>(index: &S, record: &SessionRecord) -> SessionState {
    index.state(&record.key()).await.expect("state")
}

pub async fn index_on(redis: &RedisServer) -> RedisIndex {
    RedisIndex::connect(&redis.url(), IndexSettings::default())
        .await
        .expect("connect to test redis")
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Policy)) -> Self {
        let redis = RedisServer::start();
        let op = Op::start().await;
        let index = index_on(&redis).await;
        let provider = Provider::discover(
            op.issuer(),
            http_client().expect("client"),
            provider_settings(),
        )
        .await
        .expect("discovery");
        let mut policy = policy(op.issuer());
        adjust(&mut policy);
        let router = receiver(index.clone(), Arc::clone(&provider), policy).into_router();
        let url = format!("{}{PATH}", serve(router).await);
        Self {
            redis,
            op,
            index,
            provider,
            url,
            http: reqwest::Client::new(),
        }
    }

    /// Register a session authenticated `age` seconds ago; returns its id.
    pub async fn login(&self, sub: &str, sid: Option<&str>) -> String {
        self.login_at(sub, sid, now().saturating_sub(5)).await
    }

    pub async fn login_at(&self, sub: &str, sid: Option<&str>, auth_time: u64) -> String {
        let session_id = random_id(16).expect("id");
        let record = SessionRecord {
            session_id: session_id.clone(),
            issuer: self.op.issuer().to_owned(),
            sub: sub.to_owned(),
            sid: sid.map(str::to_owned),
            auth_time,
            ttl: Duration::from_secs(3600),
            customer: None,
        };
        assert_eq!(
            register(&self.index, &record).await,
            Registration::Registered
        );
        session_id
    }

    pub async fn state(&self, session_id: &str) -> SessionState {
        state_of(&self.index, self.op.issuer(), session_id).await
    }

    /// POST a form body with `logout_token`.
    pub async fn post(&self, token: &str) -> Reply {
        post_form(&self.http, &self.url, &[("logout_token", token)]).await
    }
}

pub struct Reply {
    pub status: u16,
    pub cache_control: Option<String>,
    pub retry_after: Option<String>,
    pub body: String,
}

impl Reply {
    /// The `error_description` of a 400 JSON body.
    pub fn description(&self) -> String {
        let json: Value = serde_json::from_str(&self.body).unwrap_or(Value::Null);
        assert_eq!(json["error"], "invalid_request", "body: {}", self.body);
        json["error_description"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

pub async fn send(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.expect("request reaches the receiver");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let cache_control = header("cache-control");
    let retry_after = header("retry-after");
    let status = response.status().as_u16();
    let body = response.text().await.expect("body");
    Reply {
        status,
        cache_control,
        retry_after,
        body,
    }
}

pub async fn post_form(http: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> Reply {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    send(
        http.post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body),
    )
    .await
}

/// One user's browser on one application: keeps that application's session cookie.
pub struct Browser {
    pub http: reqwest::Client,
    pub base: String,
    pub cookie: Option<String>,
}

impl Browser {
    pub fn new(base: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.to_owned(),
            cookie: None,
        }
    }

    /// GET `path`; returns status and body, and keeps any session cookie set.
    pub async fn get(&mut self, path: &str) -> (u16, String) {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        let response = request.send().await.expect("app answers");
        if let Some(set) = response
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
        {
            self.cookie = set.split(';').next().map(str::to_owned);
        }
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// The session id in the cookie.
    pub fn session_id(&self) -> String {
        self.cookie
            .as_deref()
            .and_then(|c| c.split('=').nth(1))
            .unwrap_or_default()
            .to_owned()
    }
}

/// A child process with its output lines; killed on drop.
pub struct Proc {
    child: Child,
    pub lines: mpsc::Receiver<String>,
    name: &'static str,
}

impl Proc {
    pub fn spawn(name: &'static str, mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let (tx, lines) = mpsc::channel();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Self { child, lines, name }
    }

    /// Send `signal` (e.g. `TERM`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Wait up to `limit` for the process to exit; its status, or `None` if still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every output line received so far.
    pub fn drain(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// Whether the process is still running (it has not exited or crashed).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The first line holding `needle`, waiting up to a minute; a failure shows every line
    /// the process wrote meanwhile (its stderr says why it did not start).
    pub fn wait_for(&self, needle: &str) -> String {
        self.lines_until(needle).pop().unwrap_or_default()
    }

    /// Every line up to and including the first holding `needle`, waiting up to a minute; a
    /// failure shows them.
    pub fn lines_until(&self, needle: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.contains(needle) => {
                    seen.push(line);
                    return seen;
                }
                Ok(line) => seen.push(line),
                Err(e) => panic!(
                    "{}: no line with {needle:?} ({e}); it wrote:\n{}",
                    self.name,
                    seen.join("\n")
                ),
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run each scenario (an `async fn(backend)`) once on the memory backend and once on a Redis
/// backend with a redis-server of its own, as `memory::<name>` and `redis::<name>` tests.
#[macro_export]
macro_rules! both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod memory {
            #[allow(unused_imports)]
            use super::*;
            $(#[tokio::test] async fn $scenario() {
                super::$scenario(oidc_logout::index::MemoryIndex::new(Default::default())).await;
            })*
        }
        mod redis {
            #[allow(unused_imports)]
            use super::*;
            $(#[tokio::test] async fn $scenario() {
                let server = $crate::RedisServer::start();
                super::$scenario($crate::index_on(&server).await).await;
            })*
        }
    };
}

// What the other inputs leave behind, read as an API or an application would.

/// The access-token denylist markers of `issuer` in `redis`, as the receiver wrote them
/// (field `sid:…` / `sub:…` → `revoked expires`).
pub async fn deny_markers(
    redis: &RedisServer,
    issuer: &str,
) -> std::collections::HashMap<String, String> {
    let mut conn = redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    redis::cmd("HGETALL")
        .arg(oidc_logout::index::IssuerKeys::new("oidc-logout:", issuer).deny())
        .query_async(&mut conn)
        .await
        .expect("HGETALL")
}

/// A session logged in through the session store, as an application creates it; its id.
pub async fn store_login<B>(
    store: &oidc_logout::session_store::OidcSessionStore<B>,
    login: &oidc_logout::session_store::Login,
) -> String
where
    B: SessionIndex + oidc_logout::index::RecordStore + std::fmt::Debug,
{
    use tower_sessions::SessionStore as _;
    let mut record = tower_sessions::session::Record {
        id: tower_sessions::session::Id::default(),
        data: std::collections::HashMap::from([(
            oidc_logout::session_store::LOGIN_KEY.to_owned(),
            serde_json::to_value(login).expect("login"),
        )]),
        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    };
    store.create(&mut record).await.expect("create");
    let id = record.id.to_string();
    // Remembered for [`state_of`]: the receiver's refresh-token revocation deletes the record
    // of a session it ended, in the background, and the state must not depend on that race.
    REGISTERED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(SessionRecord {
            session_id: id.clone(),
            issuer: login.issuer.clone(),
            sub: login.sub.clone(),
            sid: login.sid.clone(),
            auth_time: login.auth_time,
            ttl: std::time::Duration::from_secs(3600),
            customer: None,
        });
    id
}

/// The sessions this test binary registered directly in an index, so that [`state_of`] can name
/// them by id: the index finds a session from its login (user, OP session, authentication time),
/// as an application that holds the session's record does.
static REGISTERED: std::sync::Mutex<Vec<SessionRecord>> = std::sync::Mutex::new(Vec::new());

/// Register `record` in `index` as an application would, and remember it for [`state_of`].
pub async fn register<I: SessionIndex>(index: &I, record: &SessionRecord) -> Registration {
    remember(record);
    index.register(record).await.expect("register")
}

/// Remember a session registered some other way, for [`state_of`].
pub fn remember(record: &SessionRecord) {
    let mut known = REGISTERED.lock().unwrap_or_else(|e| e.into_inner());
    known.retain(|r| !(r.issuer == record.issuer && r.session_id == record.session_id));
    known.push(record.clone());
}

/// What the index says of session `id` of `issuer`: found from its registration in this test
/// ([`register`]) or, for a session an application created through the session store, from
/// the login its record holds.
pub async fn state_of<I: SessionIndex + RecordStore>(
    index: &I,
    issuer: &str,
    id: &str,
) -> SessionState {
    let remembered = REGISTERED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|r| r.issuer == issuer && r.session_id == id)
        .cloned();
    if let Some(record) = remembered {
        return index.state(&record.key()).await.expect("state");
    }
    let data = index.get_record(id).await.expect("record");
    let login = data
        .as_deref()
        .and_then(|d| serde_json::from_slice::<Value>(d).ok())
        .and_then(|r| {
            r["data"][oidc_logout::session_store::LOGIN_KEY]
                .as_object()
                .cloned()
        });
    let Some(login) = login else {
        // Neither registered here nor stored: what the index knows of an unknown id.
        let key = SessionKey {
            issuer,
            session_id: id,
            sub: "",
            sid: None,
            auth_time: u64::MAX,
        };
        return index.state(&key).await.expect("state");
    };
    let key = SessionKey {
        issuer,
        session_id: id,
        sub: login["sub"].as_str().unwrap_or_default(),
        sid: login["sid"].as_str(),
        auth_time: login["auth_time"].as_u64().unwrap_or_default(),
    };
    index.state(&key).await.expect("state")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_server_whose_port_is_taken_moves_to_another() {
        // Another process's listener on the port: redis-server cannot bind it and exits.
        let taken = StdListener::bind("127.0.0.1:0").expect("bind");
        let port = taken.local_addr().expect("addr").port();
        let mut server = RedisServer {
            port,
            child: None,
            durable: None,
        };
        assert!(!server.try_spawn(), "the taken port looked like ours");
        server.spawn_on_a_free_port();
        assert_ne!(server.port, port);
        assert!(redis_pid(server.port).is_some());
    }
}
