//! `oidc-logout sessions …` and `oidc-logout revoke …`: what the admin API does, run against
//! Redis directly by an operator with shell access. Same settings as `serve` (file, environment,
//! flags), the same [`Core`], the same audit lines; refresh tokens are revoked before the
//! command exits rather than in the background.

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use oidc_logout::Core;
use oidc_logout::config::Config;
use oidc_logout::core::{Action, DEFAULT_ACCESS_TOKEN_LIFETIME, Event, Outcome, Scope, Sender};
use oidc_logout::index::RedisIndex;
use oidc_logout::provider::{Provider, http_client};
use oidc_logout::rp::RefreshTokenRevocation;
use serde_json::json;

use crate::SettingsArgs;

#[derive(Subcommand)]
pub(crate) enum SessionsCommand {
    /// List a user's live sessions as JSON (client, login and authentication times).
    List(UserArgs),
    /// End one session by its id.
    End(SessionArgs),
    /// End a user's sessions: all of them, or those of the given clients.
    EndUser(EndUserArgs),
}

#[derive(Args)]
pub(crate) struct UserArgs {
    /// The issuer whose user it is (as configured, if issuers are configured).
    #[arg(value_name = "ISSUER")]
    user_issuer: String,
    /// The user (`sub`); may start with `-`.
    #[arg(allow_hyphen_values = true)]
    sub: String,
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Args)]
pub(crate) struct SessionArgs {
    /// The issuer whose session it is (as configured, if issuers are configured).
    #[arg(value_name = "ISSUER")]
    user_issuer: String,
    /// The application's session id; may start with `-` (ids are base64url).
    #[arg(allow_hyphen_values = true)]
    session_id: String,
    /// The session's user, to find its index entry when its record is not in oidc-logout's
    /// store (the session is ended either way).
    #[arg(long, allow_hyphen_values = true)]
    sub: Option<String>,
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Args)]
pub(crate) struct EndUserArgs {
    #[command(flatten)]
    user: UserArgs,
    /// Only the sessions of this client (repeat for several); default: every session.
    #[arg(long = "client")]
    clients: Vec<String>,
}

/// The core over the Redis index, for `issuer`, and the refresh-token revocation of its
/// sessions when its clients are configured and its OP can be reached.
async fn connect(
    settings: &SettingsArgs,
    issuer: &str,
) -> Result<(Core<RedisIndex>, RefreshTokenRevocation<RedisIndex>)> {
    let (config, origins) = Config::load(&settings.sources())?;
    let configured = !config.issuers.is_empty() || config.issuer.issuer.is_some();
    let admin = config.validate_for_admin(&origins, issuer)?;
    let lifetime = match &admin.issuer {
        Some(settings) => settings.access_token_lifetime,
        None if configured => bail!(
            "unknown issuer {issuer}: it is not one of the configured issuers (check the spelling)"
        ),
        None => Some(DEFAULT_ACCESS_TOKEN_LIFETIME),
    };
    let index = RedisIndex::connect_to(&admin.redis, admin.index.clone())
        .await
        .with_context(|| format!("cannot connect to Redis at {}", admin.redis.redacted()))?;
    let core = Core::builder(index.clone())
        .issuer_with_lifetime(issuer, lifetime)
        .build();
    let mut revocation = RefreshTokenRevocation::new(index);
    if let Some(keys) = admin.token_keys {
        revocation = revocation.with_token_keys(keys);
    }
    if let Some(settings) = admin.issuer
        && let Some(clients) = settings.revocation
    {
        match Provider::discover(issuer, http_client()?, settings.provider).await {
            Ok(provider) => revocation = revocation.with_issuer(provider, clients),
            Err(error) => tracing::warn!(
                issuer, %error,
                "cannot reach the OP: refresh tokens of ended sessions will not be revoked"
            ),
        }
    }
    Ok((core, revocation))
}

/// The operator running the command: the core's sender, acting on every configured issuer.
fn operator() -> Sender {
    let name = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    Sender::new("cli", name, Scope::any_issuer())
}

/// Apply one action as the operator.
async fn act(core: &Core<RedisIndex>, action: Action) -> Result<Outcome> {
    Ok(core.apply(Event::new(operator(), vec![action])).await?)
}

/// Revoke the refresh tokens of the `ended` sessions, then print `out` with the counts.
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

pub(crate) async fn sessions(command: SessionsCommand) -> Result<()> {
    match command {
        SessionsCommand::List(args) => {
            let (core, _) = connect(&args.settings, &args.user_issuer).await?;
            let sessions = core
                .sessions(&operator(), &args.user_issuer, &args.sub)
                .await?;
            let out = json!({ "issuer": args.user_issuer, "sub": args.sub, "sessions": sessions });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
        SessionsCommand::End(args) => {
            let (core, revocation) = connect(&args.settings, &args.user_issuer).await?;
            let end = Action::EndSession {
                issuer: args.user_issuer.clone(),
                session_id: args.session_id.clone(),
                sub: args.sub.clone(),
            };
            let ids = act(&core, end).await?.ended_ids();
            let out = json!({ "ended": !ids.is_empty() });
            finish(&revocation, &args.user_issuer, &ids, out).await
        }
        SessionsCommand::EndUser(EndUserArgs { user, clients }) => {
            let (core, revocation) = connect(&user.settings, &user.user_issuer).await?;
            let end = Action::EndUserSessions {
                issuer: user.user_issuer.clone(),
                sub: user.sub.clone(),
                clients: (!clients.is_empty()).then_some(clients),
            };
            let ended = act(&core, end).await?.ended_ids();
            finish(
                &revocation,
                &user.user_issuer,
                &ended,
                json!({ "ended": ended }),
            )
            .await
        }
    }
}

/// `oidc-logout revoke ISSUER SUB`.
pub(crate) async fn revoke(args: UserArgs) -> Result<()> {
    let (core, revocation) = connect(&args.settings, &args.user_issuer).await?;
    let revoke = Action::RevokeUser {
        issuer: args.user_issuer.clone(),
        sub: args.sub.clone(),
    };
    let ended = act(&core, revoke).await?.ended_ids();
    let out = json!({ "ended": ended, "revoked": true });
    finish(&revocation, &args.user_issuer, &ended, out).await
}
