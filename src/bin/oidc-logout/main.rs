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
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use oidc_logout::config::{FusionAuthSettings, IssuerSettings, LogFormat, Overrides, Settings};
use oidc_logout::fusionauth::{FusionAuthReceiver, Tenant};
use oidc_logout::logout_token::Policy;
use oidc_logout::op::{KeyFile, SigningAlg, SigningKey, TestOp, logout_claims, random_id};
use oidc_logout::ops;
use oidc_logout::provider::{Provider, ProviderSettings, http_client};
use oidc_logout::receiver::{AfterLogout, PATH, Receiver};
use oidc_logout::revoke::Revoker;
use oidc_logout::rp::RefreshTokenRevocation;
use oidc_logout::ssf::{SsfReceiver, Transmitter};
use oidc_logout::store::{
    IndexSettings, MemoryIndex, RecordStore, RedisIndex, SessionIndex, SessionRecord, SessionState,
};
use secrecy::SecretString;
use tokio::net::TcpListener;

mod admin;
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
    /// Print the effective settings (file, then environment, then flags) with secrets redacted,
    /// or fail naming the wrong setting. Contacts nothing.
    CheckConfig(ServeArgs),
    /// Try it with nothing else installed: a built-in issuer, the receiver, one session, and a
    /// ready-to-send signed logout for it.
    Demo(DemoArgs),
    /// A test OP for integrators: serve discovery and keys, send signed logout tokens (valid,
    /// broken, or as a load) to any receiver.
    #[command(subcommand)]
    Op(op::OpCommand),
    /// List and end users' sessions in the shared Redis index (as the admin API does).
    #[command(subcommand)]
    Sessions(admin::SessionsCommand),
    /// Revoke a user: end every session, write the access-token denylist marker, revoke the
    /// refresh tokens the sessions hold.
    Revoke(admin::UserArgs),
}

#[derive(Args)]
pub(crate) struct ServeArgs {
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
    /// Redis URL (redis://, rediss://), or comma-separated node URLs for a Cluster or the
    /// sentinels; absent: in-memory index for this process only.
    #[arg(long, env = "OIDC_LOGOUT_REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// standalone (default), cluster or sentinel.
    #[arg(long, env = "OIDC_LOGOUT_REDIS_MODE")]
    redis_mode: Option<String>,
    /// The master name the sentinels monitor (default mymaster).
    #[arg(long, env = "OIDC_LOGOUT_REDIS_SENTINEL_MASTER")]
    redis_sentinel_master: Option<String>,
    /// host:port serving /metrics (Prometheus), /healthz and /readyz; absent: none.
    #[arg(long, env = "OIDC_LOGOUT_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Log lines as text (default) or json.
    #[arg(long, env = "OIDC_LOGOUT_LOG_FORMAT")]
    log_format: Option<String>,
    /// Bearer tokens of the admin API, comma-separated (at least 32 characters each); none: off.
    #[arg(long, env = "OIDC_LOGOUT_ADMIN_TOKENS", hide_env_values = true)]
    admin_tokens: Option<String>,
    /// host:port of the admin API's own listener; absent: the main listener.
    #[arg(long, env = "OIDC_LOGOUT_ADMIN_LISTEN")]
    admin_listen: Option<String>,
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
    match Cli::parse().command {
        Command::Serve(args) => {
            let settings = load_settings(args)?;
            init_logs(settings.log_format);
            serve(settings).await
        }
        Command::CheckConfig(args) => check_config(args),
        Command::Demo(args) => {
            init_logs(LogFormat::Text);
            demo(args).await
        }
        Command::Op(command) => {
            init_logs(LogFormat::Text);
            op::run(command).await
        }
        Command::Sessions(command) => {
            init_logs(LogFormat::Text);
            admin::sessions(command).await
        }
        Command::Revoke(args) => {
            init_logs(LogFormat::Text);
            admin::revoke(args).await
        }
    }
}

/// Logs go to stderr, filtered by `RUST_LOG` (default `info`).
fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

pub(crate) fn load_settings(args: ServeArgs) -> Result<Settings> {
    let overrides = Overrides {
        listen: args.listen,
        redis_url: args.redis_url.map(SecretString::from),
        redis_mode: args.redis_mode,
        redis_sentinel_master: args.redis_sentinel_master,
        metrics_listen: args.metrics_listen,
        log_format: args.log_format,
        admin_tokens: args.admin_tokens.map(SecretString::from),
        admin_listen: args.admin_listen,
        key_prefix: args.key_prefix,
        issuer: args.issuer,
        client_id: args.client_id,
        client_secret: args.client_secret.map(SecretString::from),
        algorithms: args.algorithms,
        allow_insecure_http: args.allow_insecure_http,
    };
    Ok(Settings::load(args.config.as_deref(), overrides)?)
}

fn check_config(args: ServeArgs) -> Result<()> {
    let settings = load_settings(args)?;
    println!("# oidc-logout: effective settings (secrets shown as ***)");
    for warning in &settings.warnings {
        println!("# warning: {warning}");
    }
    print!("{}", settings.to_redacted_toml());
    Ok(())
}

async fn serve(settings: Settings) -> Result<()> {
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    // Before anything records a metric (the issuers' first JWKS fetches).
    let metrics = metrics_listener(settings.metrics_listen).await?;
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
    let mut transmitters = Vec::new();
    for t in &settings.transmitters {
        let provider = Provider::discover_at(
            &t.issuer,
            "ssf-configuration",
            http.clone(),
            t.provider.clone(),
        )
        .await
        .with_context(|| {
            format!(
                "cannot load Shared Signals transmitter {}: its \
                     /.well-known/ssf-configuration must be reachable from here",
                t.issuer
            )
        })?;
        transmitters.push(Transmitter {
            provider,
            audiences: t.audiences.clone(),
            algorithms: t.algorithms.clone(),
            subject_issuer: t.subject_issuer.clone(),
            email_is_sub: t.email_is_sub,
        });
    }
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {} (OIDC_LOGOUT_LISTEN)", settings.listen))?;
    let admin_listener = match (settings.admin_listen, settings.admin_tokens.is_empty()) {
        (Some(addr), false) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (OIDC_LOGOUT_ADMIN_LISTEN)"))?,
        ),
        _ => None,
    };
    let serving = Serving {
        listener,
        metrics,
        grace: settings.shutdown_grace,
        admin_tokens: settings.admin_tokens.clone(),
        admin_listener,
        transmitters,
        fusionauth: settings.fusionauth.clone(),
    };
    match &settings.redis {
        Some(target) => {
            let index = RedisIndex::connect_to(target, settings.index.clone())
                .await
                .with_context(|| format!("cannot connect to Redis at {} (OIDC_LOGOUT_REDIS_URL): is it running and is the URL right?", target.redacted()))?;
            // Applications' session records live in the same Redis: revoke their refresh tokens.
            let revocation = revocation_clients.into_iter().fold(
                RefreshTokenRevocation::new(index.clone()),
                |r, (keys, clients)| r.with_issuer(keys, clients),
            );
            run(serving, index, trusted, Some(Arc::new(revocation))).await
        }
        // No application shares an in-memory index with a standalone receiver: nothing to revoke.
        None => {
            run(
                serving,
                MemoryIndex::new(settings.index.clone()),
                trusted,
                None,
            )
            .await
        }
    }
}

/// Where to serve, and how long to wait for in-flight requests at shutdown.
struct Serving {
    listener: TcpListener,
    metrics: Option<(TcpListener, PrometheusHandle)>,
    grace: Duration,
    /// The admin API's tokens (none: no admin API) and its own listener, if any.
    admin_tokens: Vec<SecretString>,
    admin_listener: Option<TcpListener>,
    /// Shared Signals transmitters (none: no Shared Signals endpoint).
    transmitters: Vec<Transmitter>,
    /// FusionAuth webhooks, if configured.
    fusionauth: Option<FusionAuthSettings>,
}

/// Bind the metrics listener and install the Prometheus recorder, when one is configured.
async fn metrics_listener(
    addr: Option<std::net::SocketAddr>,
) -> Result<Option<(TcpListener, PrometheusHandle)>> {
    let Some(addr) = addr else { return Ok(None) };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (OIDC_LOGOUT_METRICS_LISTEN)"))?;
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(ops::REQUEST_DURATION.to_owned()),
            ops::LATENCY_BUCKETS,
        )
        .context("metrics buckets")?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    Ok(Some((listener, handle)))
}

async fn run<S: SessionIndex + RecordStore>(
    serving: Serving,
    index: S,
    trusted: Vec<(Arc<Provider>, Policy, Option<Duration>)>,
    after_logout: Option<Arc<dyn AfterLogout>>,
) -> Result<()> {
    // The admin API and the Shared Signals receiver end sessions through one revoker, with the
    // same index and hook as the receiver.
    let mut revoker = trusted
        .iter()
        .fold(Revoker::new(index.clone()), |r, (_, p, l)| {
            r.with_issuer(p.issuer.clone(), *l)
        });
    if let Some(hook) = &after_logout {
        revoker = revoker.with_after_logout(Arc::clone(hook));
    }
    let revoker = Arc::new(revoker);
    let admin = (!serving.admin_tokens.is_empty()).then(|| {
        oidc_logout::admin::router(Arc::clone(&revoker), &serving.admin_tokens)
            .layer(axum::middleware::from_fn(ops::observe))
    });
    let ssf = (!serving.transmitters.is_empty()).then(|| {
        serving
            .transmitters
            .into_iter()
            .fold(SsfReceiver::new(Arc::clone(&revoker)), |r, t| {
                r.with_transmitter(t)
            })
            .into_router()
    });
    let fusionauth = serving.fusionauth.map(|fa| {
        let mut webhooks =
            FusionAuthReceiver::new(Arc::clone(&revoker), &fa.hmac_secrets, fa.lock_actions);
        for (tenant_id, issuer) in fa.tenants {
            // Validated: every tenant's issuer is a trusted one.
            if let Some((provider, ..)) = trusted.iter().find(|(_, p, _)| p.issuer == issuer) {
                webhooks = webhooks.with_tenant(Tenant {
                    tenant_id,
                    provider: Arc::clone(provider),
                });
            }
        }
        webhooks.into_router()
    });
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
    let (logout, health) = receiver.into_routers();
    let mut app = logout.merge(health.clone());
    for extra in [ssf, fusionauth].into_iter().flatten() {
        app = app.merge(extra);
    }
    let mut app = app.layer(axum::middleware::from_fn(ops::observe));
    let addr = serving.listener.local_addr()?;
    tracing::info!("listening on http://{addr}{PATH}");
    let mut admin_own = None;
    match (admin, serving.admin_listener) {
        (Some(router), Some(listener)) => {
            tracing::info!(
                "admin API on http://{}{}",
                listener.local_addr()?,
                oidc_logout::admin::PREFIX
            );
            admin_own = Some((listener, router));
        }
        (Some(router), None) => {
            tracing::info!(
                "admin API on the main listener under {}",
                oidc_logout::admin::PREFIX
            );
            app = app.merge(router);
        }
        (None, _) => {}
    }
    // One signal stops every listener; each then finishes its in-flight requests.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    // Answers are one small write each: send them at once rather than after the peer's ACK.
    let listener = axum::serve::ListenerExt::tap_io(serving.listener, |tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    });
    let main = axum::serve(listener, app).with_graceful_shutdown(until_stopped(stopped.clone()));
    let metrics = async {
        let Some((listener, handle)) = serving.metrics else {
            return Ok(());
        };
        tracing::info!(
            "metrics and health on http://{}/metrics",
            listener.local_addr()?
        );
        let router = axum::Router::new()
            .route(
                "/metrics",
                axum::routing::get(move || std::future::ready(handle.render())),
            )
            .merge(health);
        axum::serve(listener, router)
            .with_graceful_shutdown(until_stopped(stopped.clone()))
            .await
    };
    let admin = async {
        let Some((listener, router)) = admin_own else {
            return Ok(());
        };
        axum::serve(listener, router)
            .with_graceful_shutdown(until_stopped(stopped.clone()))
            .await
    };
    let grace = serving.grace;
    let deadline = async {
        until_stopped(stopped.clone()).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        ((main, metrics), admin) = futures_util::future::join(futures_util::future::join(main.into_future(), metrics), admin) => {
            main.context("server failed")?;
            metrics.context("metrics server failed")?;
            admin.context("admin server failed")?;
            tracing::info!("stopped");
            Ok(())
        }
        () = deadline => {
            tracing::warn!("requests still running {grace:?} after the shutdown signal; exiting anyway");
            Ok(())
        }
    }
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
    let serving = Serving {
        listener,
        metrics: None,
        grace: oidc_logout::config::DEFAULT_SHUTDOWN_GRACE,
        admin_tokens: Vec::new(),
        admin_listener: None,
        transmitters: Vec::new(),
        fusionauth: None,
    };
    let served = run(serving, index, vec![(keys, policy, None)], None).await;
    let _ = std::fs::remove_file(&key_file);
    served
}
