//! The trusted issuers and this receiver's clients at each: `[[issuers]]` in the file, plus one
//! issuer and client given by `issuer`, `client_id`, `client_secret` and `algorithms` (the way
//! flags and environment give them).

use std::time::Duration;

use jsonwebtoken::Algorithm;
use reqwest::Url;
use serde::{Deserialize, Serialize};

use super::{Check, ConfigError, Secret};
use crate::core::{DEFAULT_ACCESS_TOKEN_LIFETIME, SidLogout};
use crate::jose::parse_algorithm;
use crate::logout_token::Policy;
use crate::provider::{ProviderSettings, check_transport};
use crate::rp::Client;

/// One issuer and client given as top-level settings (flags, environment).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct SingleIssuer {
    /// The issuer identifier; added to `[[issuers]]` (or merged into the entry with the same
    /// issuer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// This receiver's client id at that issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The client's secret, for refresh-token revocation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Secret>,
    /// The algorithms the client registered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithms: Option<Vec<String>>,
    /// What a logout naming an OP session ends at that issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid_logout: Option<SidLogout>,
}

/// One `[[issuers]]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct IssuerConfig {
    /// The issuer identifier, exactly as in its tokens.
    pub issuer: String,
    /// This receiver's client ids at the issuer.
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    /// Algorithms the clients registered (`id_token_signed_response_alg`).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Audiences besides the clients that may appear in `aud`.
    #[serde(default)]
    pub trusted_audiences: Vec<String>,
    /// How old a token's `iat` may be, in seconds.
    #[serde(default = "default_max_token_age")]
    pub max_token_age_secs: u64,
    /// Clock skew allowed, in seconds.
    #[serde(default = "default_leeway")]
    pub clock_leeway_secs: u64,
    /// Accept tokens without `exp` (Ory Hydra 2.x, Keycloak before 23.0.4, older Authentik,
    /// LemonLDAP::NG).
    #[serde(default)]
    pub accept_missing_exp: bool,
    /// Minimum seconds between JWKS fetches caused by unknown `kid`s.
    #[serde(default = "default_cooldown")]
    pub jwks_refetch_cooldown_secs: u64,
    /// Seconds after which keys are refetched in the background.
    #[serde(default = "default_key_age")]
    pub jwks_max_age_secs: u64,
    /// Revoke the refresh tokens held by the sessions a logout ends.
    #[serde(default = "yes")]
    pub revoke_refresh_tokens: bool,
    /// How long this issuer's access tokens can live, in seconds: each logout's access-token
    /// denylist marker lasts that long (0 writes no markers).
    #[serde(default = "default_access_token_lifetime")]
    pub access_token_lifetime_secs: u64,
    /// What a logout naming an OP session (`sid`) ends: `session` (that session's sessions,
    /// the default), `session_and_sidless` (also the user's sessions registered without a
    /// `sid`) or `user` (every session of the user).
    #[serde(default)]
    pub sid_logout: SidLogout,
}

impl IssuerConfig {
    /// An issuer with the defaults and no client yet.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            clients: Vec::new(),
            algorithms: default_algorithms(),
            trusted_audiences: Vec::new(),
            max_token_age_secs: default_max_token_age(),
            clock_leeway_secs: default_leeway(),
            accept_missing_exp: false,
            jwks_refetch_cooldown_secs: default_cooldown(),
            jwks_max_age_secs: default_key_age(),
            revoke_refresh_tokens: true,
            access_token_lifetime_secs: default_access_token_lifetime(),
            sid_logout: SidLogout::default(),
        }
    }
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".into()]
}
fn default_max_token_age() -> u64 {
    300
}
fn default_leeway() -> u64 {
    30
}
fn default_cooldown() -> u64 {
    10
}
fn default_key_age() -> u64 {
    3600
}
fn yes() -> bool {
    true
}
fn default_access_token_lifetime() -> u64 {
    DEFAULT_ACCESS_TOKEN_LIFETIME.as_secs()
}

/// A client: its id, or its id with its own algorithms and secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum ClientConfig {
    /// `"my-app"`: uses the issuer's algorithms; a public client for revocation.
    Id(String),
    /// `{ id = "my-app", algorithms = ["ES256"], secret = "…" }`.
    Full {
        /// The client id.
        id: String,
        /// Its registered algorithms (default: the issuer's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        algorithms: Option<Vec<String>>,
        /// Its secret, to authenticate refresh-token revocation (`client_secret_basic`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<Secret>,
    },
}

/// One trusted issuer, validated.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IssuerSettings {
    /// What its tokens must satisfy.
    pub policy: Policy,
    /// How its keys are fetched.
    pub provider: ProviderSettings,
    /// The clients to authenticate as when revoking the refresh tokens of ended sessions;
    /// `None` when revocation is turned off for this issuer.
    pub revocation: Option<Vec<Client>>,
    /// How long its logouts' access-token denylist markers last; `None`: no markers.
    pub access_token_lifetime: Option<Duration>,
    /// What a logout naming an OP session ends.
    pub sid_logout: SidLogout,
}

/// How the keys of one issuer entry are named in messages: its file keys, or the top-level
/// settings it came from.
struct Keys {
    from_settings: bool,
    index: usize,
}

impl Keys {
    fn of(&self, field: &str) -> String {
        if self.from_settings {
            match field {
                "clients" => "client_id".into(),
                "issuer" | "algorithms" | "sid_logout" => field.into(),
                _ => format!("issuers[{}].{field}", self.index),
            }
        } else {
            format!("issuers[{}].{field}", self.index)
        }
    }
}

/// Validate the issuers: the file's, with the single issuer of the top-level settings added
/// (or merged into the entry with the same issuer).
pub fn validate(
    single: &SingleIssuer,
    file: &[IssuerConfig],
    allow_insecure_http: bool,
    check: &mut Check<'_>,
) -> Result<Vec<IssuerSettings>, ConfigError> {
    let mut entries: Vec<(IssuerConfig, Keys)> = file
        .iter()
        .enumerate()
        .map(|(index, e)| {
            let keys = Keys {
                from_settings: false,
                index,
            };
            (e.clone(), keys)
        })
        .collect();
    match (&single.issuer, &single.client_id) {
        (Some(issuer), client) => {
            if let Some(algorithms) = &single.algorithms {
                parse_algorithms("algorithms", algorithms, check)?;
            }
            let clients = client.iter().map(|id| ClientConfig::Full {
                id: id.clone(),
                algorithms: single.algorithms.clone(),
                secret: single.client_secret.clone(),
            });
            if !entries.iter().any(|(e, _)| e.issuer == *issuer) {
                let keys = Keys {
                    from_settings: true,
                    index: entries.len(),
                };
                entries.push((IssuerConfig::new(issuer.clone()), keys));
            }
            for (entry, _) in entries.iter_mut().filter(|(e, _)| e.issuer == *issuer) {
                entry.clients.extend(clients.clone());
                if let Some(mode) = single.sid_logout {
                    entry.sid_logout = mode;
                }
            }
        }
        (None, Some(_)) => {
            let issuer = check.suggest("issuer", "client_id");
            return Err(check.invalid(
                "client_id",
                format!("a client id needs an issuer: set {issuer} too"),
            ));
        }
        (None, None) => {}
    }
    if entries.is_empty() {
        return Err(check.invalid(
            "issuers",
            "no issuer configured: set --issuer and --client-id (OIDC_LOGOUT_ISSUER and \
             OIDC_LOGOUT_CLIENT_ID), or add [[issuers]] to the config file",
        ));
    }
    let mut issuers: Vec<IssuerSettings> = Vec::with_capacity(entries.len());
    for (entry, keys) in &entries {
        if issuers.iter().any(|s| s.policy.issuer == entry.issuer) {
            return Err(check.invalid(
                &keys.of("issuer"),
                format!("{} is configured twice", entry.issuer),
            ));
        }
        issuers.push(validate_issuer(entry, keys, allow_insecure_http, check)?);
    }
    Ok(issuers)
}

fn validate_issuer(
    entry: &IssuerConfig,
    keys: &Keys,
    allow_insecure_http: bool,
    check: &mut Check<'_>,
) -> Result<IssuerSettings, ConfigError> {
    let key = |field: &str| keys.of(field);
    let url = Url::parse(&entry.issuer).map_err(|e| {
        check.invalid(
            &key("issuer"),
            format!("{:?} is not a URL: {e}", entry.issuer),
        )
    })?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(check.invalid(&key("issuer"), "an issuer has no query or fragment"));
    }
    let plain_http = check_transport(&url, allow_insecure_http).map_err(|_| {
        let allow = check.suggest("allow_insecure_http", &key("issuer"));
        check.invalid(
            &key("issuer"),
            format!(
                "{url} uses plain http on a non-loopback host; use https, or set {allow} if \
                 it is on a private network"
            ),
        )
    })?;
    if plain_http {
        check.warn(format!("issuer {} uses plain http", entry.issuer));
    }
    let issuer_algorithms = parse_algorithms(&key("algorithms"), &entry.algorithms, check)?;
    if entry.clients.is_empty() {
        return Err(check.invalid(
            &key("clients"),
            "at least one client id is required (the logout token's audience)",
        ));
    }
    let mut clients = Vec::new();
    let mut revocation = Vec::new();
    for (c, client) in entry.clients.iter().enumerate() {
        let (id, algorithms, secret) = match client {
            ClientConfig::Id(id) => (id, issuer_algorithms.clone(), None),
            ClientConfig::Full {
                id,
                algorithms,
                secret,
            } => {
                let algorithms = match algorithms {
                    Some(names) => {
                        parse_algorithms(&key(&format!("clients[{c}].algorithms")), names, check)?
                    }
                    None => issuer_algorithms.clone(),
                };
                (id, algorithms, secret.as_ref())
            }
        };
        if id.trim().is_empty() {
            return Err(check.invalid(&key("clients"), "a client id cannot be empty"));
        }
        revocation.push(Client::new(id.clone()).with_secret(secret.map(Secret::to_secret_string)));
        clients.push((id.clone(), algorithms));
    }
    if entry.max_token_age_secs == 0 {
        return Err(check.invalid(&key("max_token_age_secs"), "must be at least 1 second"));
    }
    for (field, value) in [
        (
            "jwks_refetch_cooldown_secs",
            entry.jwks_refetch_cooldown_secs,
        ),
        ("jwks_max_age_secs", entry.jwks_max_age_secs),
    ] {
        if value == 0 {
            return Err(check.invalid(&key(field), "must be at least 1 second"));
        }
    }
    let mut policy = Policy::new(entry.issuer.clone(), String::new())
        .max_age(Duration::from_secs(entry.max_token_age_secs))
        .leeway(Duration::from_secs(entry.clock_leeway_secs))
        .accept_missing_exp(entry.accept_missing_exp);
    policy.clients = clients;
    policy
        .trusted_audiences
        .clone_from(&entry.trusted_audiences);
    let provider = ProviderSettings::default()
        .with_refetch_cooldown(Duration::from_secs(entry.jwks_refetch_cooldown_secs))
        .with_max_key_age(Duration::from_secs(entry.jwks_max_age_secs))
        .with_allow_insecure_http(allow_insecure_http);
    let lifetime = entry.access_token_lifetime_secs;
    Ok(IssuerSettings {
        policy,
        provider,
        revocation: entry.revoke_refresh_tokens.then_some(revocation),
        access_token_lifetime: (lifetime > 0).then(|| Duration::from_secs(lifetime)),
        sid_logout: entry.sid_logout,
    })
}

/// Algorithm names to algorithms; `none` and HMAC are never accepted.
pub(crate) fn parse_algorithms(
    key: &str,
    names: &[String],
    check: &Check<'_>,
) -> Result<Vec<Algorithm>, ConfigError> {
    if names.is_empty() {
        return Err(check.invalid(key, "at least one algorithm is required"));
    }
    names
        .iter()
        .map(|name| {
            parse_algorithm(name.trim()).ok_or_else(|| {
                check.invalid(
                    key,
                    format!(
                        "{name:?} is not supported; use RS256, RS384, RS512, PS256, PS384, PS512, \
                         ES256, ES384 or EdDSA (none and HMAC are never accepted)"
                    ),
                )
            })
        })
        .collect()
}
