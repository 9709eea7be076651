//! `oidc-logout sessions …` and `oidc-logout revoke …`: what the admin API does, run against
//! Redis directly by an operator with shell access. Same settings as `serve` (config file and
//! environment), same [`Revoker`], same audit lines; refresh tokens are revoked before the
//! command exits rather than in the background.

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use oidc_logout::config::Settings;
use oidc_logout::provider::{Provider, http_client};
use oidc_logout::revoke::Revoker;
use oidc_logout::rp::RefreshTokenRevocation;
use oidc_logout::store::RedisIndex;
use serde_json::json;

use crate::{ServeArgs, load_settings};

#[derive(Subcommand)]
pub enum SessionsCommand {
    /// List a user's live sessions as JSON (client, created, last seen, authentication time).
    List(UserArgs),
    /// End one session by its id.
    End(SessionArgs),
    /// End a user's sessions: all of them, or those of the given clients.
    EndUser(EndUserArgs),
}

#[derive(Args)]
pub struct UserArgs {
    /// The issuer, as configured.
    #[arg(value_name = "ISSUER")]
    user_issuer: String,
    /// The user (`sub`).
    sub: String,
    #[command(flatten)]
    settings: ServeArgs,
}

#[derive(Args)]
pub struct SessionArgs {
    /// The issuer, as configured.
    #[arg(value_name = "ISSUER")]
    user_issuer: String,
    /// The application's session id.
    session_id: String,
    #[command(flatten)]
    settings: ServeArgs,
}

#[derive(Args)]
pub struct EndUserArgs {
    /// The issuer, as configured.
    #[arg(value_name = "ISSUER")]
    user_issuer: String,
    /// The user (`sub`).
    sub: String,
    /// Only the sessions of this client (repeat for several); default: every session.
    #[arg(long = "client")]
    clients: Vec<String>,
    #[command(flatten)]
    settings: ServeArgs,
}

/// The Redis index with the configured issuers, and the refresh-token revocation of the issuers
/// whose OP could be reached.
async fn connect(
    settings: &Settings,
) -> Result<(Revoker<RedisIndex>, RefreshTokenRevocation<RedisIndex>)> {
    let target = settings.redis.as_ref().context(
        "these commands work on the shared Redis index: set OIDC_LOGOUT_REDIS_URL (or redis_url)",
    )?;
    let index = RedisIndex::connect_to(target, settings.index.clone())
        .await
        .with_context(|| format!("cannot connect to Redis at {}", target.redacted()))?;
    let mut revoker = Revoker::new(index.clone());
    let mut revocation = RefreshTokenRevocation::new(index);
    let http = http_client()?;
    for issuer in &settings.issuers {
        revoker = revoker.with_issuer(issuer.policy.issuer.clone(), issuer.access_token_lifetime);
        let Some(clients) = &issuer.revocation else {
            continue;
        };
        match Provider::discover(&issuer.policy.issuer, http.clone(), issuer.provider.clone()).await
        {
            Ok(provider) => revocation = revocation.with_issuer(provider, clients.clone()),
            Err(error) => tracing::warn!(
                issuer = %issuer.policy.issuer, %error,
                "cannot reach the OP: refresh tokens of ended sessions will not be revoked"
            ),
        }
    }
    Ok((revoker, revocation))
}

fn operator() -> String {
    std::env::var("USER").unwrap_or_else(|_| "unknown".into())
}

async fn finish(
    revocation: &RefreshTokenRevocation<RedisIndex>,
    issuer: &str,
    ended: &[String],
    mut out: serde_json::Value,
) -> Result<()> {
    let report = revocation.revoke_now(issuer, ended).await?;
    if let Some(map) = out.as_object_mut() {
        map.insert("refresh_tokens_revoked".into(), report.revoked.into());
        map.insert("refresh_tokens_failed".into(), report.failed.into());
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

pub async fn sessions(command: SessionsCommand) -> Result<()> {
    match command {
        SessionsCommand::List(args) => {
            let settings = load_settings(args.settings)?;
            let (revoker, _) = connect(&settings).await?;
            let sessions = revoker.sessions(&args.user_issuer, &args.sub).await?;
            tracing::info!(target: "oidc_logout::audit", by = %operator(), action = "list", issuer = %args.user_issuer, sub = %args.sub, sessions = sessions.len(), "admin action (cli)");
            let out = json!({ "issuer": args.user_issuer, "sub": args.sub, "sessions": sessions });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
        SessionsCommand::End(args) => {
            let settings = load_settings(args.settings)?;
            let (revoker, revocation) = connect(&settings).await?;
            let ended = revoker
                .end_session(&args.user_issuer, &args.session_id)
                .await?;
            tracing::info!(target: "oidc_logout::audit", by = %operator(), action = "end_session", issuer = %args.user_issuer, session_id = %args.session_id, ended, "admin action (cli)");
            let ids = if ended {
                vec![args.session_id.clone()]
            } else {
                Vec::new()
            };
            finish(
                &revocation,
                &args.user_issuer,
                &ids,
                json!({ "ended": ended }),
            )
            .await
        }
        SessionsCommand::EndUser(args) => {
            let settings = load_settings(args.settings)?;
            let (revoker, revocation) = connect(&settings).await?;
            let ended = if args.clients.is_empty() {
                revoker
                    .end_all_sessions(&args.user_issuer, &args.sub)
                    .await?
            } else {
                revoker
                    .end_client_sessions(&args.user_issuer, &args.sub, &args.clients)
                    .await?
            };
            tracing::info!(target: "oidc_logout::audit", by = %operator(), action = "end_sessions", issuer = %args.user_issuer, sub = %args.sub, clients = ?args.clients, ended = ended.len(), "admin action (cli)");
            finish(
                &revocation,
                &args.user_issuer,
                &ended,
                json!({ "ended": ended }),
            )
            .await
        }
    }
}

/// `oidc-logout revoke ISSUER SUB`.
pub async fn revoke(args: UserArgs) -> Result<()> {
    let settings = load_settings(args.settings)?;
    let (revoker, revocation) = connect(&settings).await?;
    let ended = revoker.revoke_user(&args.user_issuer, &args.sub).await?;
    tracing::info!(target: "oidc_logout::audit", by = %operator(), action = "revoke_user", issuer = %args.user_issuer, sub = %args.sub, ended = ended.len(), "admin action (cli)");
    finish(
        &revocation,
        &args.user_issuer,
        &ended,
        json!({ "ended": ended, "revoked": true }),
    )
    .await
}
