//! A resource server (API) whose access tokens stop working within a second of a logout or a
//! user being disabled at the OP: JWT validation and the access-token denylist in one layer.
//!
//! Run it next to a receiver (`oidc-logout serve`, or the `app` example) on the same Redis:
//!
//! ```sh
//! OIDC_LOGOUT_ISSUER=https://login.example.com OIDC_LOGOUT_REDIS_URL=redis://127.0.0.1/ \
//! API_AUDIENCE=orders-api cargo run --example api
//! curl -H "Authorization: Bearer $ACCESS_TOKEN" http://127.0.0.1:4000/orders
//! ```
//!
//! `API_AUDIENCE` is the `aud` its access tokens carry (the OP's resource or API identifier),
//! `OIDC_LOGOUT_ALGORITHMS` the OP's signing algorithms (default RS256), `API_LISTEN` where it
//! listens (default `127.0.0.1:4000`), `API_FAIL_OPEN=true` lets tokens through while the
//! denylist cannot confirm it is in sync (default: refuse with 503 after 10 s out of sync),
//! `OIDC_LOGOUT_REDIS_MODE` (`cluster`, `sentinel`) reads the Redis URLs as the receiver does,
//! `OIDC_LOGOUT_ALLOW_INSECURE_HTTP=true` accepts an `http://` issuer off loopback (containers),
//! and `API_METRICS_LISTEN` (e.g. `127.0.0.1:9091`) serves Prometheus `/metrics` with the
//! denylist's sync lag, marker count and refusals.

use anyhow::{Context as _, Result};
use axum::routing::get;
use axum::{Extension, Router};
use oidc_logout::denylist::sync::{self, DenylistSettings};
use oidc_logout::denylist::{AccessTokenValidator, DenylistLayer, FailMode, RevocationClaims};
use oidc_logout::index::RedisTarget;
use oidc_logout::logout_token::parse_algorithm;
use oidc_logout::provider::{Provider, ProviderSettings, http_client};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let issuer = env("OIDC_LOGOUT_ISSUER").context("set OIDC_LOGOUT_ISSUER")?;
    let redis_url = env("OIDC_LOGOUT_REDIS_URL")
        .context("set OIDC_LOGOUT_REDIS_URL: the denylist follows the receiver's Redis")?;
    let audience = env("API_AUDIENCE").context("set API_AUDIENCE (the aud of access tokens)")?;
    let algorithms = env("OIDC_LOGOUT_ALGORITHMS")
        .unwrap_or_else(|| "RS256".into())
        .split(',')
        .map(|name| {
            parse_algorithm(name.trim()).with_context(|| format!("unknown algorithm {name}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let listen = env("API_LISTEN").unwrap_or_else(|| "127.0.0.1:4000".into());
    if let Some(addr) = env("API_METRICS_LISTEN") {
        serve_metrics(&addr).await?;
    }

    // `http://` issuers off loopback only when asked (containers on a private network).
    let provider_settings = ProviderSettings::default().with_allow_insecure_http(
        env("OIDC_LOGOUT_ALLOW_INSECURE_HTTP").as_deref() == Some("true"),
    );
    let provider = Provider::discover(&issuer, http_client()?, provider_settings)
        .await
        .with_context(|| format!("cannot load issuer {issuer}"))?;
    let mut settings = DenylistSettings::new(redis_url.clone(), vec![issuer.clone()]);
    // One server, or a Cluster / Sentinel as the receiver takes them.
    let mode = env("OIDC_LOGOUT_REDIS_MODE").unwrap_or_else(|| "standalone".into());
    let master = env("OIDC_LOGOUT_REDIS_SENTINEL_MASTER");
    settings.redis = RedisTarget::parse(&mode, &redis_url, master.as_deref())
        .map_err(|m| anyhow::anyhow!("OIDC_LOGOUT_REDIS_URL: {m}"))?;
    if env("API_FAIL_OPEN").as_deref() == Some("true") {
        settings.fail_mode = FailMode::Open;
    }
    let denylist = sync::start(settings)
        .await
        .context("cannot follow the denylist in Redis")?;
    let validator = AccessTokenValidator::new().with_issuer(provider, &[&audience], &algorithms);

    let app = Router::new()
        .route(
            "/orders",
            get(
                |Extension(claims): Extension<RevocationClaims>| async move {
                    format!("orders of {}\n", claims.sub.unwrap_or_default())
                },
            ),
        )
        .layer(DenylistLayer::validating(denylist, validator));
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (API_LISTEN)"))?;
    tracing::info!("API on http://{}/orders", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

/// Prometheus `/metrics` on its own listener: the library records through the `metrics`
/// facade, this recorder exports.
async fn serve_metrics(addr: &str) -> Result<()> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (API_METRICS_LISTEN)"))?;
    tracing::info!("metrics on http://{}/metrics", listener.local_addr()?);
    let router = Router::new().route("/metrics", get(move || std::future::ready(handle.render())));
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(())
}
