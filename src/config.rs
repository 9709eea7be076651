//! Settings: a TOML file for several issuers and clients, overridden by environment and flags,
//! validated into typed settings with messages that name the key to fix.
//!
//! Validation happens once, at startup; everything downstream takes the typed result and never
//! re-checks. Durations are whole seconds (`*_secs` keys) so the file needs no unit syntax.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use reqwest::Url;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use crate::logout_token::{Policy, parse_algorithm};
use crate::provider::ProviderSettings;
use crate::rp::Client;
use crate::store::{IndexSettings, RedisTarget};

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// How long in-flight requests may take to finish after SIGTERM, unless set.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("{other:?} is not a log format; use text or json")),
        }
    }
}

impl LogFormat {
    /// The name, as in the settings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

/// A setting is wrong; the message says which and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this program (unknown key, wrong type).
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message, which names the key.
        message: String,
    },
    /// A value is not acceptable.
    #[error("setting `{key}`: {message}")]
    Invalid {
        /// The key, as in the file (`issuers[0].clients`) or the environment variable.
        key: String,
        /// What is wrong and what to do.
        message: String,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// The config file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `host:port` to listen on.
    pub listen: Option<String>,
    /// Redis URL, or comma-separated node URLs for a Cluster or the sentinels; absent means the
    /// in-memory index.
    pub redis_url: Option<String>,
    /// `standalone` (default), `cluster` or `sentinel`.
    pub redis_mode: Option<String>,
    /// The master name the sentinels monitor (default `mymaster`).
    pub redis_sentinel_master: Option<String>,
    /// `host:port` for `/metrics`, `/healthz` and `/readyz`; absent: no such listener.
    pub metrics_listen: Option<String>,
    /// `text` (default) or `json`.
    pub log_format: Option<String>,
    /// Seconds in-flight requests may take to finish after SIGTERM (default 30).
    pub shutdown_grace_secs: Option<u64>,
    /// Bearer tokens of the admin API; none: the admin API is off.
    #[serde(default)]
    pub admin_tokens: Vec<SecretString>,
    /// `host:port` of a listener of its own for the admin API; absent: on the main listener.
    pub admin_listen: Option<String>,
    /// Prefix of every Redis key.
    pub key_prefix: Option<String>,
    /// How long logout markers refuse late registrations, in seconds.
    pub marker_ttl_secs: Option<u64>,
    /// Allow `http://` issuers on non-loopback hosts.
    pub allow_insecure_http: Option<bool>,
    /// The trusted issuers.
    #[serde(default)]
    pub issuers: Vec<IssuerFile>,
    /// Shared Signals transmitters whose Security Event Tokens are accepted.
    #[serde(default)]
    pub transmitters: Vec<TransmitterFile>,
    /// FusionAuth webhooks.
    pub fusionauth: Option<FusionAuthFile>,
}

/// The `[fusionauth]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FusionAuthFile {
    /// HMAC secrets of the webhook signing key (none: RSA/EC signatures only, verified with the
    /// tenants' issuers' keys).
    #[serde(default)]
    pub hmac_secrets: Vec<SecretString>,
    /// FusionAuth tenants and their OIDC issuers.
    #[serde(default)]
    pub tenants: Vec<FusionAuthTenantFile>,
    /// User action ids or names that prevent login: their `user.action` start revokes the user.
    #[serde(default)]
    pub lock_actions: Vec<String>,
}

/// One FusionAuth tenant.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FusionAuthTenantFile {
    /// FusionAuth's tenant id.
    pub tenant_id: String,
    /// The tenant's OIDC issuer, as in `[[issuers]]`.
    pub issuer: String,
}

/// FusionAuth webhooks, validated.
#[derive(Debug, Clone)]
pub struct FusionAuthSettings {
    /// HMAC secrets.
    pub hmac_secrets: Vec<SecretString>,
    /// (tenant id, issuer).
    pub tenants: Vec<(String, String)>,
    /// Locking user actions.
    pub lock_actions: Vec<String>,
}

/// One `[[transmitters]]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransmitterFile {
    /// The transmitter's issuer (`iss` of its SETs); keys from
    /// `<issuer>/.well-known/ssf-configuration`.
    pub issuer: String,
    /// The `aud` values of SETs meant for this receiver.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Algorithms its SETs may use (default `["RS256"]`).
    pub algorithms: Option<Vec<String>>,
    /// The configured issuer whose sessions `opaque`, `email` and `session` subjects name
    /// (default: the transmitter's issuer).
    pub subject_issuer: Option<String>,
    /// An `email` subject is the user's `sub` (default false: such subjects are refused).
    #[serde(default)]
    pub email_is_sub: bool,
}

/// A Shared Signals transmitter, validated.
#[derive(Debug, Clone)]
pub struct TransmitterSettings {
    /// Its issuer identifier.
    pub issuer: String,
    /// The `aud` values naming this receiver.
    pub audiences: Vec<String>,
    /// Allowed algorithms.
    pub algorithms: Vec<Algorithm>,
    /// The issuer of the sessions its subjects name.
    pub subject_issuer: String,
    /// Whether `email` subjects are `sub`s.
    pub email_is_sub: bool,
    /// How its keys are fetched.
    pub provider: ProviderSettings,
}

/// One `[[issuers]]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerFile {
    /// The issuer identifier, exactly as in its tokens.
    pub issuer: String,
    /// This receiver's client ids at the issuer.
    #[serde(default)]
    pub clients: Vec<ClientEntry>,
    /// Algorithms the clients registered (`id_token_signed_response_alg`); default `["RS256"]`.
    pub algorithms: Option<Vec<String>>,
    /// Audiences besides the clients that may appear in `aud`.
    #[serde(default)]
    pub trusted_audiences: Vec<String>,
    /// How old a token's `iat` may be, in seconds (default 300).
    pub max_token_age_secs: Option<u64>,
    /// Clock skew allowed, in seconds (default 30).
    pub clock_leeway_secs: Option<u64>,
    /// Accept tokens without `exp` (Ory Hydra 2.x, Keycloak before 23.0.4, older Authentik,
    /// LemonLDAP::NG).
    #[serde(default)]
    pub accept_missing_exp: bool,
    /// Minimum seconds between JWKS fetches caused by unknown `kid`s (default 10).
    pub jwks_refetch_cooldown_secs: Option<u64>,
    /// Seconds after which keys are refetched in the background (default 3600).
    pub jwks_max_age_secs: Option<u64>,
    /// Revoke the refresh tokens held by the sessions a logout ends (default true).
    pub revoke_refresh_tokens: Option<bool>,
    /// How long this issuer's access tokens can live, in seconds: each logout's access-token
    /// denylist marker lasts that long (default 3600; 0 writes no markers).
    pub access_token_lifetime_secs: Option<u64>,
}

/// A client: its id, or its id with its own algorithms and secret.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ClientEntry {
    /// `"my-app"`: uses the issuer's algorithms; a public client for revocation.
    Id(String),
    /// `{ id = "my-app", algorithms = ["ES256"], secret = "…" }`.
    Full {
        /// The client id.
        id: String,
        /// Its registered algorithms (default: the issuer's).
        algorithms: Option<Vec<String>>,
        /// Its secret, to authenticate refresh-token revocation (`client_secret_basic`).
        secret: Option<SecretString>,
    },
}

/// Settings given by flags or environment; they override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `OIDC_LOGOUT_LISTEN`.
    pub listen: Option<String>,
    /// `OIDC_LOGOUT_REDIS_URL`.
    pub redis_url: Option<SecretString>,
    /// `OIDC_LOGOUT_REDIS_MODE`.
    pub redis_mode: Option<String>,
    /// `OIDC_LOGOUT_REDIS_SENTINEL_MASTER`.
    pub redis_sentinel_master: Option<String>,
    /// `OIDC_LOGOUT_METRICS_LISTEN`.
    pub metrics_listen: Option<String>,
    /// `OIDC_LOGOUT_LOG_FORMAT`.
    pub log_format: Option<String>,
    /// `OIDC_LOGOUT_ADMIN_TOKENS`, comma-separated; added to the file's.
    pub admin_tokens: Option<SecretString>,
    /// `OIDC_LOGOUT_ADMIN_LISTEN`.
    pub admin_listen: Option<String>,
    /// `OIDC_LOGOUT_KEY_PREFIX`.
    pub key_prefix: Option<String>,
    /// `OIDC_LOGOUT_ISSUER`.
    pub issuer: Option<String>,
    /// `OIDC_LOGOUT_CLIENT_ID`.
    pub client_id: Option<String>,
    /// `OIDC_LOGOUT_CLIENT_SECRET`, for refresh-token revocation.
    pub client_secret: Option<SecretString>,
    /// `OIDC_LOGOUT_ALGORITHMS`, comma-separated.
    pub algorithms: Option<String>,
    /// `OIDC_LOGOUT_ALLOW_INSECURE_HTTP`.
    pub allow_insecure_http: Option<bool>,
}

/// One trusted issuer, validated.
#[derive(Debug, Clone)]
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
}

/// Everything the receiver needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Where to serve metrics and health checks, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// How logs are written.
    pub log_format: LogFormat,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// The admin API's bearer tokens; empty: the admin API is off.
    pub admin_tokens: Vec<SecretString>,
    /// The admin API's own listener; `None`: the main listener (when tokens are set).
    pub admin_listen: Option<SocketAddr>,
    /// Shared Signals transmitters; none: no Shared Signals endpoint.
    pub transmitters: Vec<TransmitterSettings>,
    /// FusionAuth webhooks; `None`: no webhook endpoint.
    pub fusionauth: Option<FusionAuthSettings>,
    /// Where Redis is; `None` means the in-memory index.
    pub redis: Option<RedisTarget>,
    /// Index settings.
    pub index: IndexSettings,
    /// The trusted issuers.
    pub issuers: Vec<IssuerSettings>,
    /// Things worth a warning at startup (plain http on loopback, in-memory store).
    pub warnings: Vec<String>,
}

/// Whether `url` may be used: `https`, or `http` on a loopback host, or `http` anywhere when
/// `allow_insecure_http`. Returns `Ok(true)` when it is plain http (worth a warning).
pub fn check_transport(url: &Url, allow_insecure_http: bool) -> Result<bool, String> {
    match url.scheme() {
        "https" => Ok(false),
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if loopback || allow_insecure_http {
                Ok(true)
            } else {
                Err(format!(
                    "{url} uses plain http on a non-loopback host; use https, or set \
                     OIDC_LOGOUT_ALLOW_INSECURE_HTTP=true if it is on a private network"
                ))
            }
        }
        other => Err(format!("{url}: scheme {other} is not supported; use https")),
    }
}

fn parse_algorithms(key: &str, names: &[String]) -> Result<Vec<Algorithm>, ConfigError> {
    if names.is_empty() {
        return Err(invalid(key, "at least one algorithm is required"));
    }
    names
        .iter()
        .map(|name| {
            parse_algorithm(name.trim()).ok_or_else(|| {
                invalid(
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

fn secs(value: Option<u64>, default: u64, key: &str) -> Result<Duration, ConfigError> {
    match value.unwrap_or(default) {
        0 => Err(invalid(key, "must be at least 1 second")),
        n => Ok(Duration::from_secs(n)),
    }
}

impl Settings {
    /// Read the optional file, apply the overrides and validate.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Self, ConfigError> {
        let config = match file {
            None => FileConfig::default(),
            Some(path) => {
                let display = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: display.clone(),
                    source,
                })?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: display,
                    message: e.to_string(),
                })?
            }
        };
        Self::from_parts(config, overrides)
    }

    /// Validate a parsed file with overrides applied.
    pub fn from_parts(mut config: FileConfig, o: Overrides) -> Result<Self, ConfigError> {
        let mut warnings = Vec::new();
        let allow_insecure_http = o
            .allow_insecure_http
            .or(config.allow_insecure_http)
            .unwrap_or(false);
        match (o.issuer, o.client_id) {
            (Some(issuer), client) => {
                let clients: Vec<ClientEntry> = client
                    .into_iter()
                    .map(|id| ClientEntry::Full {
                        id,
                        algorithms: None,
                        secret: o.client_secret.clone(),
                    })
                    .collect();
                if let Some(existing) = config.issuers.iter_mut().find(|i| i.issuer == issuer) {
                    existing.clients.extend(clients);
                } else {
                    config.issuers.push(IssuerFile {
                        issuer,
                        clients,
                        ..IssuerFile::default()
                    });
                }
                if let Some(algs) = &o.algorithms {
                    let algs: Vec<String> = algs.split(',').map(|s| s.trim().to_owned()).collect();
                    if let Some(last) = config.issuers.last_mut() {
                        last.algorithms = Some(algs);
                    }
                }
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "OIDC_LOGOUT_CLIENT_ID",
                    "a client id needs an issuer: set OIDC_LOGOUT_ISSUER (or --issuer) too",
                ));
            }
            (None, None) => {}
        }
        if config.issuers.is_empty() {
            return Err(invalid(
                "issuers",
                "no issuer configured: set OIDC_LOGOUT_ISSUER and OIDC_LOGOUT_CLIENT_ID, or add \
                 [[issuers]] to the config file",
            ));
        }
        let mut issuers = Vec::with_capacity(config.issuers.len());
        for (i, file) in config.issuers.into_iter().enumerate() {
            let key = |name: &str| format!("issuers[{i}].{name}");
            let url = Url::parse(&file.issuer).map_err(|e| {
                invalid(
                    key("issuer"),
                    format!("{:?} is not a URL: {e}", file.issuer),
                )
            })?;
            if url.query().is_some() || url.fragment().is_some() {
                return Err(invalid(key("issuer"), "an issuer has no query or fragment"));
            }
            if check_transport(&url, allow_insecure_http).map_err(|m| invalid(key("issuer"), m))? {
                warnings.push(format!("issuer {} uses plain http", file.issuer));
            }
            if issuers
                .iter()
                .any(|s: &IssuerSettings| s.policy.issuer == file.issuer)
            {
                return Err(invalid(
                    key("issuer"),
                    format!("{} is configured twice", file.issuer),
                ));
            }
            let default_algs = match &file.algorithms {
                Some(names) => parse_algorithms(&key("algorithms"), names)?,
                None => vec![Algorithm::RS256],
            };
            if file.clients.is_empty() {
                return Err(invalid(
                    key("clients"),
                    "at least one client id is required (OIDC_LOGOUT_CLIENT_ID)",
                ));
            }
            let mut clients = Vec::new();
            let mut revocation_clients = Vec::new();
            for (c, entry) in file.clients.into_iter().enumerate() {
                let (id, algs, secret) = match entry {
                    ClientEntry::Id(id) => (id, default_algs.clone(), None),
                    ClientEntry::Full {
                        id,
                        algorithms: None,
                        secret,
                    } => (id, default_algs.clone(), secret),
                    ClientEntry::Full {
                        id,
                        algorithms: Some(algorithms),
                        secret,
                    } => (
                        id,
                        parse_algorithms(&key(&format!("clients[{c}].algorithms")), &algorithms)?,
                        secret,
                    ),
                };
                if id.trim().is_empty() {
                    return Err(invalid(
                        key(&format!("clients[{c}]")),
                        "a client id cannot be empty",
                    ));
                }
                revocation_clients.push(Client {
                    id: id.clone(),
                    secret,
                    post_logout_redirect_uri: None,
                });
                clients.push((id, algs));
            }
            let policy = Policy {
                issuer: file.issuer,
                clients,
                trusted_audiences: file.trusted_audiences,
                max_age: secs(file.max_token_age_secs, 300, &key("max_token_age_secs"))?,
                leeway: Duration::from_secs(file.clock_leeway_secs.unwrap_or(30)),
                accept_missing_exp: file.accept_missing_exp,
            };
            let provider = ProviderSettings {
                refetch_cooldown: secs(
                    file.jwks_refetch_cooldown_secs,
                    10,
                    &key("jwks_refetch_cooldown_secs"),
                )?,
                max_key_age: secs(file.jwks_max_age_secs, 3600, &key("jwks_max_age_secs"))?,
                allow_insecure_http,
            };
            let revocation = file
                .revoke_refresh_tokens
                .unwrap_or(true)
                .then_some(revocation_clients);
            let lifetime = file
                .access_token_lifetime_secs
                .unwrap_or(crate::receiver::DEFAULT_ACCESS_TOKEN_LIFETIME.as_secs());
            issuers.push(IssuerSettings {
                policy,
                provider,
                revocation,
                access_token_lifetime: (lifetime > 0).then(|| Duration::from_secs(lifetime)),
            });
        }
        let listen_text = o
            .listen
            .or(config.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = listen_text.parse().map_err(|_| {
            invalid(
                "listen",
                format!("{listen_text:?} is not host:port, e.g. {DEFAULT_LISTEN}"),
            )
        })?;
        let prefix = o
            .key_prefix
            .or(config.key_prefix)
            .unwrap_or_else(|| IndexSettings::default().prefix);
        if prefix.contains(['{', '}']) {
            return Err(invalid(
                "key_prefix",
                "must not contain { or } (they would change the Redis Cluster hash tag)",
            ));
        }
        let marker_ttl = secs(config.marker_ttl_secs, 86_400, "marker_ttl_secs")?;
        let redis_url = o.redis_url.or(config.redis_url.map(SecretString::from));
        let redis_mode = o
            .redis_mode
            .or(config.redis_mode)
            .unwrap_or_else(|| "standalone".to_owned());
        if !["standalone", "cluster", "sentinel"].contains(&redis_mode.as_str()) {
            return Err(invalid(
                "redis_mode",
                format!("{redis_mode:?} is not a Redis mode; use standalone, cluster or sentinel"),
            ));
        }
        let master = o.redis_sentinel_master.or(config.redis_sentinel_master);
        let redis = match &redis_url {
            Some(urls) => Some(
                RedisTarget::parse(&redis_mode, urls.expose_secret(), master.as_deref())
                    .map_err(|m| invalid("redis_url", m))?,
            ),
            None => {
                warnings.push(
                    "no Redis configured (OIDC_LOGOUT_REDIS_URL): using the in-memory index, \
                     which only this process sees"
                        .to_owned(),
                );
                None
            }
        };
        let metrics_listen = match o.metrics_listen.or(config.metrics_listen) {
            None => None,
            Some(text) if text.trim().is_empty() => None,
            Some(text) => Some(text.parse().map_err(|_| {
                invalid(
                    "metrics_listen",
                    format!("{text:?} is not host:port, e.g. 127.0.0.1:9090"),
                )
            })?),
        };
        let log_format = match o.log_format.or(config.log_format) {
            None => LogFormat::default(),
            Some(text) => text.parse().map_err(|m| invalid("log_format", m))?,
        };
        let shutdown_grace = config
            .shutdown_grace_secs
            .map_or(DEFAULT_SHUTDOWN_GRACE, Duration::from_secs);
        let mut admin_tokens = config.admin_tokens;
        if let Some(list) = &o.admin_tokens {
            admin_tokens.extend(
                list.expose_secret()
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(SecretString::from),
            );
        }
        if let Some(short) = admin_tokens
            .iter()
            .position(|t| t.expose_secret().len() < 32)
        {
            return Err(invalid(
                format!("admin_tokens[{short}]"),
                "an admin token must be at least 32 characters (e.g. `openssl rand -hex 32`)",
            ));
        }
        let admin_listen = match o.admin_listen.or(config.admin_listen) {
            None => None,
            Some(text) => Some(text.parse().map_err(|_| {
                invalid(
                    "admin_listen",
                    format!("{text:?} is not host:port, e.g. 127.0.0.1:9091"),
                )
            })?),
        };
        let mut transmitters = Vec::new();
        for (i, file) in config.transmitters.into_iter().enumerate() {
            let key = |name: &str| format!("transmitters[{i}].{name}");
            let url = Url::parse(&file.issuer).map_err(|e| {
                invalid(
                    key("issuer"),
                    format!("{:?} is not a URL: {e}", file.issuer),
                )
            })?;
            if check_transport(&url, allow_insecure_http).map_err(|m| invalid(key("issuer"), m))? {
                warnings.push(format!("transmitter {} uses plain http", file.issuer));
            }
            if file.audiences.is_empty() {
                return Err(invalid(
                    key("audiences"),
                    "at least one audience is required: the aud its SETs carry for this receiver",
                ));
            }
            let algorithms = match &file.algorithms {
                Some(names) => parse_algorithms(&key("algorithms"), names)?,
                None => vec![Algorithm::RS256],
            };
            let subject_issuer = file
                .subject_issuer
                .clone()
                .unwrap_or_else(|| file.issuer.clone());
            if !issuers
                .iter()
                .any(|s: &IssuerSettings| s.policy.issuer == subject_issuer)
            {
                return Err(invalid(
                    key("subject_issuer"),
                    format!(
                        "{subject_issuer} is not a configured issuer: set subject_issuer to the \
                         [[issuers]] entry whose sessions this transmitter's subjects name"
                    ),
                ));
            }
            transmitters.push(TransmitterSettings {
                issuer: file.issuer,
                audiences: file.audiences,
                algorithms,
                subject_issuer,
                email_is_sub: file.email_is_sub,
                provider: ProviderSettings {
                    allow_insecure_http,
                    ..ProviderSettings::default()
                },
            });
        }
        let fusionauth = match config.fusionauth {
            None => None,
            Some(file) => {
                if file.tenants.is_empty() {
                    return Err(invalid(
                        "fusionauth.tenants",
                        "at least one tenant is required: { tenant_id = \"…\", issuer = \"…\" }",
                    ));
                }
                let mut tenants = Vec::new();
                for (i, t) in file.tenants.into_iter().enumerate() {
                    if !issuers
                        .iter()
                        .any(|s: &IssuerSettings| s.policy.issuer == t.issuer)
                    {
                        return Err(invalid(
                            format!("fusionauth.tenants[{i}].issuer"),
                            format!(
                                "{} is not a configured issuer (add it to [[issuers]])",
                                t.issuer
                            ),
                        ));
                    }
                    if t.tenant_id.trim().is_empty() {
                        return Err(invalid(
                            format!("fusionauth.tenants[{i}].tenant_id"),
                            "cannot be empty",
                        ));
                    }
                    tenants.push((t.tenant_id, t.issuer));
                }
                if let Some(short) = file
                    .hmac_secrets
                    .iter()
                    .position(|s| s.expose_secret().len() < 32)
                {
                    return Err(invalid(
                        format!("fusionauth.hmac_secrets[{short}]"),
                        "an HMAC secret must be at least 32 characters",
                    ));
                }
                Some(FusionAuthSettings {
                    hmac_secrets: file.hmac_secrets,
                    tenants,
                    lock_actions: file.lock_actions,
                })
            }
        };
        if admin_listen.is_some() && admin_tokens.is_empty() {
            warnings
                .push("admin_listen is set but no admin_tokens: the admin API stays off".into());
        }
        Ok(Self {
            listen,
            metrics_listen,
            log_format,
            shutdown_grace,
            admin_tokens,
            admin_listen,
            transmitters,
            fusionauth,
            redis,
            index: IndexSettings { prefix, marker_ttl },
            issuers,
            warnings,
        })
    }
}

impl Settings {
    /// The effective settings as a TOML config file, secrets shown as `***`: what
    /// `oidc-logout check-config` prints. It parses back into the same settings (bar the secrets).
    pub fn to_redacted_toml(&self) -> String {
        use toml::{Table, Value};
        let int = |d: Duration| Value::Integer(i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let strings = |v: Vec<String>| Value::Array(v.into_iter().map(Value::String).collect());
        let mut top = Table::new();
        top.insert("listen".into(), Value::String(self.listen.to_string()));
        if let Some(addr) = self.metrics_listen {
            top.insert("metrics_listen".into(), Value::String(addr.to_string()));
        }
        top.insert("log_format".into(), self.log_format.as_str().into());
        top.insert("shutdown_grace_secs".into(), int(self.shutdown_grace));
        if !self.admin_tokens.is_empty() {
            let hidden = vec!["***".to_owned(); self.admin_tokens.len()];
            top.insert("admin_tokens".into(), strings(hidden));
        }
        if let Some(addr) = self.admin_listen {
            top.insert("admin_listen".into(), Value::String(addr.to_string()));
        }
        if let Some(redis) = &self.redis {
            let urls = match redis {
                RedisTarget::Single(url) => vec![url],
                RedisTarget::Cluster(urls)
                | RedisTarget::Sentinel {
                    sentinels: urls, ..
                } => urls.iter().collect(),
            };
            let urls: Vec<String> = urls
                .into_iter()
                .map(|u| crate::store::redact_url(u.expose_secret()))
                .collect();
            top.insert("redis_url".into(), Value::String(urls.join(",")));
            top.insert("redis_mode".into(), redis.mode().into());
            if let RedisTarget::Sentinel { master, .. } = redis {
                top.insert("redis_sentinel_master".into(), master.as_str().into());
            }
        }
        top.insert("key_prefix".into(), self.index.prefix.as_str().into());
        top.insert("marker_ttl_secs".into(), int(self.index.marker_ttl));
        let allow_http = self.issuers.iter().any(|i| i.provider.allow_insecure_http);
        top.insert("allow_insecure_http".into(), Value::Boolean(allow_http));
        let issuers = self.issuers.iter().map(|i| {
            let mut t = Table::new();
            let p = &i.policy;
            t.insert("issuer".into(), p.issuer.as_str().into());
            let clients = p.clients.iter().map(|(id, algs)| {
                let mut c = Table::new();
                c.insert("id".into(), id.as_str().into());
                c.insert(
                    "algorithms".into(),
                    strings(algs.iter().map(|a| format!("{a:?}")).collect()),
                );
                let has_secret = i
                    .revocation
                    .iter()
                    .flatten()
                    .any(|r| &r.id == id && r.secret.is_some());
                if has_secret {
                    c.insert("secret".into(), "***".into());
                }
                Value::Table(c)
            });
            t.insert("clients".into(), Value::Array(clients.collect()));
            t.insert(
                "trusted_audiences".into(),
                strings(p.trusted_audiences.clone()),
            );
            t.insert("max_token_age_secs".into(), int(p.max_age));
            t.insert("clock_leeway_secs".into(), int(p.leeway));
            t.insert(
                "accept_missing_exp".into(),
                Value::Boolean(p.accept_missing_exp),
            );
            t.insert(
                "jwks_refetch_cooldown_secs".into(),
                int(i.provider.refetch_cooldown),
            );
            t.insert("jwks_max_age_secs".into(), int(i.provider.max_key_age));
            t.insert(
                "revoke_refresh_tokens".into(),
                Value::Boolean(i.revocation.is_some()),
            );
            t.insert(
                "access_token_lifetime_secs".into(),
                int(i.access_token_lifetime.unwrap_or_default()),
            );
            Value::Table(t)
        });
        top.insert("issuers".into(), Value::Array(issuers.collect()));
        if let Some(fa) = &self.fusionauth {
            let mut table = Table::new();
            table.insert(
                "hmac_secrets".into(),
                strings(vec!["***".to_owned(); fa.hmac_secrets.len()]),
            );
            let tenants = fa.tenants.iter().map(|(id, issuer)| {
                let mut t = Table::new();
                t.insert("tenant_id".into(), id.as_str().into());
                t.insert("issuer".into(), issuer.as_str().into());
                Value::Table(t)
            });
            table.insert("tenants".into(), Value::Array(tenants.collect()));
            table.insert("lock_actions".into(), strings(fa.lock_actions.clone()));
            top.insert("fusionauth".into(), Value::Table(table));
        }
        if !self.transmitters.is_empty() {
            let transmitters = self.transmitters.iter().map(|t| {
                let mut table = Table::new();
                table.insert("issuer".into(), t.issuer.as_str().into());
                table.insert("audiences".into(), strings(t.audiences.clone()));
                table.insert(
                    "algorithms".into(),
                    strings(t.algorithms.iter().map(|a| format!("{a:?}")).collect()),
                );
                table.insert("subject_issuer".into(), t.subject_issuer.as_str().into());
                table.insert("email_is_sub".into(), Value::Boolean(t.email_is_sub));
                Value::Table(table)
            });
            top.insert("transmitters".into(), Value::Array(transmitters.collect()));
        }
        top.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overrides(issuer: &str, client: &str) -> Overrides {
        Overrides {
            issuer: Some(issuer.into()),
            client_id: Some(client.into()),
            ..Overrides::default()
        }
    }

    fn error(config: &str, o: Overrides) -> String {
        let file: FileConfig = match toml::from_str(config) {
            Ok(f) => f,
            Err(e) => return e.to_string(),
        };
        match Settings::from_parts(file, o) {
            Ok(_) => "accepted".into(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn environment_alone_is_enough() {
        let s = Settings::from_parts(
            FileConfig::default(),
            overrides("https://op.example", "app"),
        )
        .expect("valid");
        assert_eq!(s.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(
            s.issuers[0].policy.clients,
            vec![("app".to_owned(), vec![Algorithm::RS256])]
        );
        assert!(s.warnings.iter().any(|w| w.contains("in-memory")));
    }

    #[test]
    fn http_issuer_only_on_loopback_or_when_allowed() {
        assert_eq!(
            error("", overrides("http://127.0.0.2:9000", "a")),
            "accepted"
        );
        assert_eq!(error("", overrides("http://localhost", "a")), "accepted");
        assert_eq!(error("", overrides("http://[::1]:8", "a")), "accepted");
        let e = error("", overrides("http://op.internal", "a"));
        assert!(e.contains("OIDC_LOGOUT_ALLOW_INSECURE_HTTP"), "{e}");
        let allowed = Overrides {
            allow_insecure_http: Some(true),
            ..overrides("http://op.internal", "a")
        };
        assert_eq!(error("", allowed), "accepted");
    }

    #[test]
    fn bad_settings_name_their_key() {
        let e = error("", Overrides::default());
        assert!(e.contains("OIDC_LOGOUT_ISSUER"), "{e}");
        let e = error(
            "[[issuers]]\nissuer = \"https://a\"\n",
            Overrides::default(),
        );
        assert!(e.contains("issuers[0].clients"), "{e}");
        let e = error(
            "[[issuers]]\nissuer = \"https://a\"\nclients = [\"x\"]\nalgorithms = [\"HS256\"]\n",
            Overrides::default(),
        );
        assert!(
            e.contains("issuers[0].algorithms") && e.contains("HMAC"),
            "{e}"
        );
        let e = error(
            "[[issuers]]\nissuer = \"https://a\"\nclients = [\"x\"]\nmax_token_age = 3\n",
            Overrides::default(),
        );
        assert!(e.contains("max_token_age"), "{e}");
        let e = error("key_prefix = \"a{b}\"\n", overrides("https://a", "b"));
        assert!(e.contains("key_prefix"), "{e}");
        let e = error(
            "",
            Overrides {
                listen: Some("nowhere".into()),
                ..overrides("https://a", "b")
            },
        );
        assert!(e.contains("listen"), "{e}");
        let e = error(
            "",
            Overrides {
                client_id: Some("x".into()),
                ..Overrides::default()
            },
        );
        assert!(e.contains("OIDC_LOGOUT_ISSUER"), "{e}");
    }

    #[test]
    fn file_with_several_issuers_and_per_client_algorithms() {
        let file: FileConfig = toml::from_str(
            r#"
            redis_url = "redis://127.0.0.1/"
            [[issuers]]
            issuer = "https://a.example"
            clients = ["one", { id = "two", algorithms = ["ES256", "EdDSA"] }]
            [[issuers]]
            issuer = "https://b.example"
            clients = ["three"]
            accept_missing_exp = true
            "#,
        )
        .expect("parses");
        let s = Settings::from_parts(file, overrides("https://b.example", "four")).expect("valid");
        assert_eq!(s.issuers.len(), 2);
        assert_eq!(
            s.issuers[0].policy.clients[1].1,
            vec![Algorithm::ES256, Algorithm::EdDSA]
        );
        let b = &s.issuers[1].policy;
        assert!(b.accept_missing_exp);
        assert_eq!(
            b.clients.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
            ["three", "four"]
        );
        assert!(matches!(s.redis, Some(RedisTarget::Single(_))));
    }
}
