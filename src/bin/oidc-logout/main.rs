//! The `oidc-logout` binary: parses the command line, wires the library's parts, nothing else.

#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand};
use oidc_logout::config::{IssuerSettings, Overrides, Settings};
use oidc_logout::logout_token::Policy;
use oidc_logout::op::{KeyFile, SigningAlg, SigningKey, TestOp, logout_claims, random_id};
use oidc_logout::provider::{Provider, ProviderSettings, http_client};
use oidc_logout::receiver::{AfterLogout, PATH, Receiver};
use oidc_logout::rp::RefreshTokenRevocation;
use oidc_logout::store::{
    IndexSettings, MemoryIndex, RedisIndex, SessionIndex, SessionRecord, SessionState,
};
use secrecy::{ExposeSecret as _, SecretString};
use tokio::net::TcpListener;

mod op;

#[derive(Parser)]
#[command(version, about = "OpenID Connect Back-Channel Logout receiver")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve POST /backchannel-logout for the configured issuers.
    Serve(ServeArgs),
    /// Try it with nothing else installed: a built-in issuer, the receiver, one session, and a
    /// ready-to-send signed logout for it.
    Demo(DemoArgs),
    /// A test OP for integrators: serve discovery and keys, send signed logout tokens (valid,
    /// broken, or as a load) to any receiver.
    #[command(subcommand)]
    Op(op::OpCommand),
}

#[derive(Args)]
struct ServeArgs {
    /// TOML file with several issuers and per-issuer settings (see docs/configuration.md).
    #[arg(long, env = "OIDC_LOGOUT_CONFIG")]
    config: Option<PathBuf>,
    /// Issuer URL; discovery is read from <issuer>/.well-known/openid-configuration.
    #[arg(long, env = "OIDC_LOGOUT_ISSUER")]
    issuer: Option<String>,
    /// This receiver's client id at the issuer (the logout token's audience).
    #[arg(long, env = "OIDC_LOGOUT_CLIENT_ID")]
    client_id: Option<String>,
    /// The client's secret, to revoke the refresh tokens of ended sessions (confidential clients).
    #[arg(long, env = "OIDC_LOGOUT_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
    /// Algorithms the client registered, comma-separated (default RS256).
    #[arg(long, env = "OIDC_LOGOUT_ALGORITHMS")]
    algorithms: Option<String>,
    /// Redis URL (redis://, rediss://); absent: in-memory index for this process only.
    #[arg(long, env = "OIDC_LOGOUT_REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// Prefix of every Redis key (default "oidc-logout:").
    #[arg(long, env = "OIDC_LOGOUT_KEY_PREFIX")]
    key_prefix: Option<String>,
    /// host:port to listen on (default 127.0.0.1:8080).
    #[arg(long, env = "OIDC_LOGOUT_LISTEN")]
    listen: Option<String>,
    /// Accept http:// issuers on non-loopback hosts (containers on a private network).
    #[arg(long, env = "OIDC_LOGOUT_ALLOW_INSECURE_HTTP")]
    allow_insecure_http: Option<bool>,
}

#[derive(Args)]
struct DemoArgs {
    /// host:port for the receiver.
    #[arg(long, env = "OIDC_LOGOUT_LISTEN", default_value = oidc_logout::config::DEFAULT_LISTEN)]
    listen: String,
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run_cli().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // One line with every cause, without a backtrace: this is for operators.
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run_cli() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(args).await,
        Command::Demo(args) => demo(args).await,
        Command::Op(command) => op::run(command).await,
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    let overrides = Overrides {
        listen: args.listen,
        redis_url: args.redis_url.map(SecretString::from),
        key_prefix: args.key_prefix,
        issuer: args.issuer,
        client_id: args.client_id,
        client_secret: args.client_secret.map(SecretString::from),
        algorithms: args.algorithms,
        allow_insecure_http: args.allow_insecure_http,
    };
    let settings = Settings::load(args.config.as_deref(), overrides)?;
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    let http = http_client().context("cannot build the HTTP client")?;
    let mut trusted = Vec::new();
    let mut revocation_clients = Vec::new();
    for IssuerSettings {
        policy,
        provider,
        revocation,
        access_token_lifetime,
    } in &settings.issuers
    {
        let keys = Provider::discover(&policy.issuer, http.clone(), provider.clone())
            .await
            .with_context(|| {
                format!(
                    "cannot load issuer {}: check the issuer URL (OIDC_LOGOUT_ISSUER) and that the \
                     OP is reachable from here",
                    policy.issuer
                )
            })?;
        if let Some(clients) = revocation {
            revocation_clients.push((Arc::clone(&keys), clients.clone()));
        }
        trusted.push((keys, policy.clone(), *access_token_lifetime));
    }
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {} (OIDC_LOGOUT_LISTEN)", settings.listen))?;
    match &settings.redis_url {
        Some(url) => {
            let index = RedisIndex::connect(url.expose_secret(), settings.index.clone())
                .await
                .context("cannot connect to Redis (OIDC_LOGOUT_REDIS_URL): is it running and is the URL right?")?;
            // Applications' session records live in the same Redis: revoke their refresh tokens.
            let revocation = revocation_clients.into_iter().fold(
                RefreshTokenRevocation::new(index.clone()),
                |r, (keys, clients)| r.with_issuer(keys, clients),
            );
            run(listener, index, trusted, Some(Arc::new(revocation))).await
        }
        // No application shares an in-memory index with a standalone receiver: nothing to revoke.
        None => {
            run(
                listener,
                MemoryIndex::new(settings.index.clone()),
                trusted,
                None,
            )
            .await
        }
    }
}

async fn run<S: SessionIndex>(
    listener: TcpListener,
    index: S,
    trusted: Vec<(Arc<Provider>, Policy, Option<Duration>)>,
    after_logout: Option<Arc<dyn AfterLogout>>,
) -> Result<()> {
    let mut receiver =
        trusted
            .into_iter()
            .fold(Receiver::new(index), |r, (keys, policy, lifetime)| {
                let issuer = policy.issuer.clone();
                r.with_issuer(keys, policy)
                    .with_access_token_lifetime(&issuer, lifetime)
            });
    if let Some(hook) = after_logout {
        receiver = receiver.with_after_logout(hook);
    }
    let addr = listener.local_addr()?;
    tracing::info!("listening on http://{addr}{PATH}");
    // Answers are one small write each: send them at once rather than after the peer's ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, receiver.into_router())
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("server failed")
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing in-flight logouts");
}

async fn demo(args: DemoArgs) -> Result<()> {
    const CLIENT: &str = "demo-app";
    // The built-in issuer on a free loopback port.
    let op_listener = TcpListener::bind("127.0.0.1:0").await?;
    let issuer = format!("http://{}", op_listener.local_addr()?);
    let key = Arc::new(SigningKey::generate(SigningAlg::Rs256)?);
    let op = TestOp::new(issuer.clone(), vec![Arc::clone(&key)]);
    let op_router = op.router();
    tokio::spawn(async move { axum::serve(op_listener, op_router).await });

    let listener = TcpListener::bind(&args.listen).await.with_context(|| {
        format!(
            "cannot listen on {} (use --listen 127.0.0.1:<free port>)",
            args.listen
        )
    })?;
    let endpoint = format!("http://{}{PATH}", listener.local_addr()?);
    let keys = Provider::discover(&issuer, http_client()?, ProviderSettings::default()).await?;
    let policy = Policy {
        issuer: issuer.clone(),
        clients: vec![(CLIENT.to_owned(), vec![oidc_logout::Algorithm::RS256])],
        trusted_audiences: Vec::new(),
        max_age: Duration::from_secs(3600),
        leeway: Duration::from_secs(30),
        accept_missing_exp: false,
    };
    let index = MemoryIndex::new(IndexSettings::default());
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let (session_id, sid) = (random_id(16)?, random_id(12)?);
    index
        .register(&SessionRecord {
            session_id: session_id.clone(),
            issuer: issuer.clone(),
            sub: "demo-user".into(),
            sid: Some(sid.clone()),
            auth_time: now.saturating_sub(1),
            ttl: Duration::from_secs(3600),
        })
        .await?;
    let mut claims = logout_claims(&issuer, CLIENT, Some("demo-user"), Some(&sid))?;
    if let Some(map) = claims.as_object_mut() {
        map.insert("exp".into(), (now + 3600).into());
    }
    let token = key.sign(
        &serde_json::Map::from_iter([("typ".into(), "logout+jwt".into())]),
        &claims,
    )?;

    println!("oidc-logout demo");
    println!("  built-in issuer : {issuer}  (client id {CLIENT}, RS256)");
    println!("  receiver        : {endpoint}  (in-memory index)");
    println!("  live session    : {session_id}  (sub demo-user, sid {sid})");
    println!();
    println!("End that session as the OP would, from another terminal (valid for an hour):");
    println!();
    println!("curl -i {endpoint} -d logout_token={token}");
    println!();
    println!("Expect HTTP 200 and the session ended; the same command again gets 400 (replay).");
    // The same key in a key file, so the test OP's sender can sign fresh tokens for this issuer.
    let key_file =
        std::env::temp_dir().join(format!("oidc-logout-demo-{}.json", std::process::id()));
    let saved = SigningKey::from_pkcs8(key.alg(), key.kid().to_owned(), &key.to_pkcs8()?)
        .map(|copy| KeyFile {
            issuer: issuer.clone(),
            keys: vec![copy],
        })
        .map_err(anyhow::Error::from)
        .and_then(|file| Ok(file.save(&key_file)?));
    if saved.is_ok() {
        let exe = std::env::current_exe().unwrap_or_else(|_| "oidc-logout".into());
        println!();
        println!("Or sign fresh tokens (valid, or --broken all) with the test OP's sender:");
        println!();
        println!(
            "{} op send --keys {} --to {endpoint} --aud {CLIENT} --sid {sid}",
            exe.display(),
            key_file.display()
        );
    }

    let watcher = index.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if let Ok(SessionState::Ended) = watcher.state(&issuer, &session_id).await {
                println!("session {session_id} ended by the back-channel logout");
                return;
            }
        }
    });
    let served = run(listener, index, vec![(keys, policy, None)], None).await;
    let _ = std::fs::remove_file(&key_file);
    served
}
