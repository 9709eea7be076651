//! Settings: a TOML file, then environment variables, then command-line flags, validated by
//! concern into the typed [`Settings`] a [`Server`](crate::server::Server) runs.
//!
//! [`Config`] is the one raw shape: the file format, and what environment and flags override.
//! Each concern validates its own part — [`listeners`], [`redis`], [`issuers`], and each input
//! its own section ([`InputsConfig`]) — with messages naming what the user actually wrote: the
//! flag (`--listen`), the variable (`OIDC_LOGOUT_LISTEN`) or the file key (`issuers[0].clients`
//! in the file). `check-config`
//! prints the effective [`Config`] through serde, secrets as `***`, so it cannot drift from the
//! format it prints. Durations are whole seconds (`*_secs` keys).
//!
//! Every top-level setting has a flag `--x-y` and a variable `OIDC_LOGOUT_X_Y` ([`FLAGS`]); an
//! `OIDC_LOGOUT_*` variable that is not one of them stops startup, naming it, so a misspelt
//! variable is never silently ignored.

// The parts of the settings, each validated by its concern; reached through `Config` and
// `Settings`, not part of the API on their own.
#[doc(hidden)]
pub mod issuers;
#[doc(hidden)]
pub mod listeners;
#[doc(hidden)]
pub mod redis;
mod secret;
#[doc(hidden)]
pub mod senders;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[doc(hidden)]
pub use crate::inputs::{InputsConfig, InputsSettings};
#[doc(hidden)]
pub use issuers::{ClientConfig, IssuerConfig, IssuerSettings, SingleIssuer};
#[doc(hidden)]
pub use listeners::{
    DEFAULT_LISTEN, DEFAULT_SHUTDOWN_GRACE, Limits, ListenerConfig, Listeners, Networks,
};
#[doc(hidden)]
pub use redis::RedisConfig;
#[doc(hidden)]
pub use secret::{RedisUrls, Secret};

use crate::index::{IndexSettings, RedisTarget};

/// The prefix of every environment variable.
#[doc(hidden)]
pub const ENV_PREFIX: &str = "OIDC_LOGOUT_";

/// Variables with the prefix that are not settings of `serve` but are used by other parts of
/// the project (the test OP's key file, the scripts' binary); they are not an error.
const OTHER_VARIABLES: &[&str] = &["OIDC_LOGOUT_OP_KEYS", "OIDC_LOGOUT_BIN"];

/// What kind of value a flag or variable takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[doc(hidden)]
pub enum Kind {
    /// A string.
    Text,
    /// A secret string (never printed).
    Secret,
    /// `true` or `false` (also `1`/`0`, `yes`/`no`, `on`/`off`); a bare flag means `true`.
    Bool,
    /// Whole seconds.
    Seconds,
    /// A whole number.
    Count,
    /// A comma-separated list.
    List,
    /// A comma-separated list of secrets, added to the file's.
    SecretList,
}

/// A setting offered as a flag and an environment variable.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
#[doc(hidden)]
pub struct Flag {
    /// The key in the file (and the flag and variable, spelled their way).
    pub key: &'static str,
    /// Its value.
    pub kind: Kind,
    /// One line of help.
    pub help: &'static str,
}

impl Flag {
    const fn new(key: &'static str, kind: Kind, help: &'static str) -> Self {
        Self { key, kind, help }
    }

    /// The flag, `--x-y`.
    pub fn long(&self) -> String {
        flag_name(self.key)
    }

    /// The environment variable, `OIDC_LOGOUT_X_Y`.
    pub fn env(&self) -> String {
        env_name(self.key)
    }
}

fn flag_name(key: &str) -> String {
    format!("--{}", key.replace('_', "-"))
}

fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_ascii_uppercase())
}

/// Every setting that has a flag and a variable (docs/configuration.md lists them too).
#[doc(hidden)]
pub const FLAGS: &[Flag] = &[
    Flag::new(
        "issuer",
        Kind::Text,
        "Issuer URL; discovery is read from <issuer>/.well-known/openid-configuration",
    ),
    Flag::new(
        "client_id",
        Kind::Text,
        "This receiver's client id at the issuer (the logout token's audience)",
    ),
    Flag::new(
        "client_secret",
        Kind::Secret,
        "The client's secret, to revoke the refresh tokens of ended sessions",
    ),
    Flag::new(
        "algorithms",
        Kind::List,
        "Algorithms the client registered, comma-separated (default RS256)",
    ),
    Flag::new(
        "sid_logout",
        Kind::Text,
        "What a logout naming an OP session ends: session (default), session_and_sidless or user",
    ),
    Flag::new(
        "redis_url",
        Kind::Secret,
        "Redis URL (redis://, rediss://), or comma-separated node or sentinel URLs; absent: in-memory index",
    ),
    Flag::new(
        "token_keys",
        Kind::Secret,
        "Keys the applications seal session tokens with (comma-separated base64, newest first), to revoke refresh tokens",
    ),
    Flag::new(
        "redis_mode",
        Kind::Text,
        "standalone (default), cluster or sentinel",
    ),
    Flag::new(
        "redis_sentinel_master",
        Kind::Text,
        "The master name the sentinels monitor (default mymaster)",
    ),
    Flag::new(
        "key_prefix",
        Kind::Text,
        "Prefix of every Redis key (default oidc-logout:)",
    ),
    Flag::new(
        "marker_ttl_secs",
        Kind::Seconds,
        "How long a logout refuses late registrations of its sessions (default 86400)",
    ),
    Flag::new(
        "redis_legacy_v1",
        Kind::Bool,
        "Also end and read sessions of the version 1 index layout, while applications move (default false)",
    ),
    Flag::new(
        "listen",
        Kind::Text,
        "host:port to listen on (default 127.0.0.1:8080)",
    ),
    Flag::new(
        "metrics_listen",
        Kind::Text,
        "host:port serving /metrics, /healthz and /readyz; absent: none",
    ),
    Flag::new(
        "admin_listen",
        Kind::Text,
        "host:port of the admin API's own listener; absent: the main listener",
    ),
    Flag::new(
        "gateway_listen",
        Kind::Text,
        "host:port of the gateways' listener, with the forward-auth check /v1/check; absent: none",
    ),
    Flag::new(
        "admin_tokens",
        Kind::SecretList,
        "Bearer tokens of the admin API, comma-separated (32+ characters each); none: off",
    ),
    Flag::new(
        "scim_tokens",
        Kind::SecretList,
        "Bearer tokens of a SCIM client for the issuer given by --issuer, comma-separated (32+ characters each); none: off",
    ),
    Flag::new(
        "shutdown_grace_secs",
        Kind::Seconds,
        "Seconds in-flight requests may take to finish after SIGTERM (default 30)",
    ),
    Flag::new(
        "header_read_timeout_secs",
        Kind::Seconds,
        "Seconds a request's headers may take, from when the connection is ready for one (default 10)",
    ),
    Flag::new(
        "body_read_timeout_secs",
        Kind::Seconds,
        "Seconds a request's body may take to arrive after its headers (default 10)",
    ),
    Flag::new(
        "idle_timeout_secs",
        Kind::Seconds,
        "Seconds a kept-alive connection may stay idle (default 10)",
    ),
    Flag::new(
        "max_connections",
        Kind::Count,
        "Connections the main listener holds at once (default 0: from the file-descriptor limit)",
    ),
    Flag::new(
        "min_data_rate",
        Kind::Count,
        "Bytes a second a request's head and body must arrive at after the grace (default 500; 0: none)",
    ),
    Flag::new(
        "rate_grace_secs",
        Kind::Seconds,
        "Seconds a request may take before the minimum data rate applies (default 1)",
    ),
    Flag::new(
        "max_connections_per_source",
        Kind::Count,
        "Connections one source address may hold at once (default 64; 0: no limit)",
    ),
    Flag::new(
        "trusted_senders",
        Kind::List,
        "Networks of the OPs and other senders, comma-separated: capacity of their own, never shed for others",
    ),
    Flag::new(
        "reserved_connections",
        Kind::Count,
        "Connections only trusted senders may hold (default 0: a tenth of the cap when trusted senders are set)",
    ),
    Flag::new(
        "trusted_proxies",
        Kind::List,
        "Networks of reverse proxies in front, comma-separated: exempt from the per-source limit",
    ),
    Flag::new(
        "clock_skew_secs",
        Kind::Seconds,
        "How far an OP's clock may be ahead: revocations from no token refuse tokens issued up to this long after them (default 30)",
    ),
    Flag::new(
        "log_format",
        Kind::Text,
        "Log lines as text (default) or json",
    ),
    Flag::new(
        "allow_insecure_http",
        Kind::Bool,
        "Accept http:// issuers on non-loopback hosts (containers on a private network)",
    ),
];

/// Where a setting's value came from, to name it the way the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    File(PathBuf),
    Env(String),
    Flag(String),
}

/// Where each top-level key's value came from (absent: a default, or the file).
#[derive(Debug, Clone, Default)]
pub struct Origins {
    file: Option<PathBuf>,
    keys: HashMap<String, Origin>,
}

impl Origins {
    /// How to name `key` (a top-level key, or a path like `issuers[0].clients`) to the user.
    pub fn name(&self, key: &str) -> String {
        let top = key.split(['.', '[']).next().unwrap_or(key);
        match self.keys.get(top) {
            Some(Origin::Env(var)) => var.clone(),
            Some(Origin::Flag(flag)) => flag.clone(),
            Some(Origin::File(path)) => format!("`{key}` in {}", path.display()),
            None if top == key && FLAGS.iter().any(|f| f.key == key) => {
                format!("{} or {}", flag_name(key), env_name(key))
            }
            None => match &self.file {
                Some(path) => format!("`{key}` in {}", path.display()),
                None => format!("`{key}`"),
            },
        }
    }
}

/// A setting is wrong; the message says which and how to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// An `OIDC_LOGOUT_*` variable that is no setting.
    #[error(
        "{0} is not a setting of oidc-logout (misspelt?); the variables are listed in docs/configuration.md"
    )]
    UnknownVariable(String),
    /// A value is not acceptable.
    #[error("{setting}: {message}")]
    Invalid {
        /// The setting as the user wrote it: flag, variable, or key in the file.
        setting: String,
        /// What is wrong and what to do.
        message: String,
    },
}

/// Whoever validates a part of the settings: names keys by their origin, collects warnings.
#[derive(Debug)]
#[doc(hidden)]
pub struct Check<'a> {
    origins: &'a Origins,
    warnings: Vec<String>,
}

impl<'a> Check<'a> {
    /// A check naming keys as `origins` says, for tests of one part's validation.
    #[cfg(test)]
    pub(crate) fn for_tests(origins: &'a Origins) -> Self {
        Self {
            origins,
            warnings: Vec::new(),
        }
    }

    /// An error about `key`.
    pub fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            setting: self.origins.name(key),
            message: message.into(),
        }
    }

    /// A warning for startup and `check-config`.
    pub fn warn(&mut self, warning: impl Into<String>) {
        self.warnings.push(warning.into());
    }

    /// The name of `key` as the user wrote it.
    pub fn name(&self, key: &str) -> String {
        self.origins.name(key)
    }

    /// How the user would set the top-level `key`, in the style they used for `like` (flag,
    /// variable or file); both flag and variable when `like` came from neither.
    pub fn suggest(&self, key: &str, like: &str) -> String {
        match self.origins.keys.get(like) {
            Some(Origin::Env(_)) => format!("{}=…", env_name(key)),
            Some(Origin::Flag(_)) => flag_name(key),
            Some(Origin::File(_)) => format!("`{key}` in the config file"),
            None => format!("{} (or {})", flag_name(key), env_name(key)),
        }
    }
}

/// Everything the file may hold; environment and flags override its top-level keys. Fields
/// with a default hold it, so the effective settings print in full.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Config {
    /// Where to listen.
    #[serde(flatten)]
    pub listeners: ListenerConfig,
    /// Where Redis is.
    #[serde(flatten)]
    pub redis: RedisConfig,
    /// `text` (default) or `json`.
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// Accept `http://` issuers, transmitters and `jwks_uri`s on non-loopback hosts.
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// How far an OP's clock may be ahead of this one, in seconds: revocations that come from
    /// no token refuse access tokens issued up to this long after them.
    #[serde(default = "default_clock_skew")]
    pub clock_skew_secs: u64,
    /// One issuer and client given by `issuer`, `client_id`, ... (flags and environment).
    #[serde(flatten)]
    pub issuer: SingleIssuer,
    /// The trusted issuers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub issuers: Vec<IssuerConfig>,
    /// Every input's own section (`admin_tokens`, `[[transmitters]]`, `[fusionauth]`,
    /// `[[scim]]`, `[[universal_logout]]`, ...).
    #[serde(flatten)]
    pub inputs: InputsConfig,
    /// Keys no part knows: refused at validation (serde cannot deny unknown fields next to
    /// flattened ones).
    #[serde(flatten, skip_serializing)]
    unknown: BTreeMap<String, toml::Value>,
}

fn default_log_format() -> String {
    "text".into()
}

fn default_clock_skew() -> u64 {
    crate::core::DEFAULT_CLOCK_SKEW.as_secs()
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Where settings come from: the file, then environment variables, then flags.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The TOML file, if any.
    pub file: Option<PathBuf>,
    /// The environment, as `(name, value)`; only `OIDC_LOGOUT_*` variables are looked at.
    pub env: Vec<(String, String)>,
    /// Flags given, as `(key, value)` with the key spelled as in the file (`client_id`); a
    /// bare boolean flag has the value `true`.
    pub flags: Vec<(String, String)>,
}

impl Sources {
    /// The file and this process's environment, no flags.
    pub fn from_env(file: Option<PathBuf>) -> Self {
        Self {
            file,
            env: std::env::vars().collect(),
            flags: Vec::new(),
        }
    }
}

/// Everything validated: what a [`Server`](crate::server::Server) runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Settings {
    /// Where to listen and how long shutdown may take.
    pub listeners: Listeners,
    /// How logs are written.
    pub log_format: LogFormat,
    /// Where Redis is; `None` means the in-memory index.
    pub redis: Option<RedisTarget>,
    /// Index settings.
    pub index: IndexSettings,
    /// The trusted issuers.
    pub issuers: Vec<IssuerSettings>,
    /// Every input's settings; an input whose section is empty is off.
    pub inputs: InputsSettings,
    /// How far an OP's clock may be ahead of this one.
    pub clock_skew: std::time::Duration,
    /// The keys that open the tokens the applications sealed in their session records.
    pub token_keys: Option<crate::session_store::TokenKeys>,
    /// Things worth a warning at startup (plain http, in-memory store).
    pub warnings: Vec<String>,
    effective: Config,
    origins: Origins,
}

impl Config {
    /// Read the file (if any), then apply the environment and the flags, remembering where
    /// each top-level value came from.
    pub fn load(sources: &Sources) -> Result<(Self, Origins), ConfigError> {
        let mut origins = Origins {
            file: sources.file.clone(),
            keys: HashMap::new(),
        };
        let mut table = match &sources.file {
            None => toml::Table::new(),
            Some(path) => read_file(path)?,
        };
        if let Some(path) = &sources.file {
            for key in table.keys() {
                origins.keys.insert(key.clone(), Origin::File(path.clone()));
            }
        }
        for (name, value) in &sources.env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if rest == "CONFIG" || OTHER_VARIABLES.contains(&name.as_str()) {
                continue;
            }
            let flag = FLAGS
                .iter()
                .find(|f| f.env() == *name)
                .ok_or_else(|| ConfigError::UnknownVariable(name.clone()))?;
            set(&mut table, flag, value, name)?;
            origins
                .keys
                .insert(flag.key.to_owned(), Origin::Env(name.clone()));
        }
        for (key, value) in &sources.flags {
            let flag = FLAGS
                .iter()
                .find(|f| f.key == key)
                .ok_or_else(|| ConfigError::Invalid {
                    setting: flag_name(key),
                    message: "not a flag of this command".into(),
                })?;
            set(&mut table, flag, value, &flag.long())?;
            origins
                .keys
                .insert(flag.key.to_owned(), Origin::Flag(flag.long()));
        }
        let config = Self::deserialize(table).map_err(|e| ConfigError::Parse {
            path: sources.file.as_deref().map_or_else(
                || "(environment and flags)".into(),
                |p| p.display().to_string(),
            ),
            message: e.to_string(),
        })?;
        Ok((config, origins))
    }

    /// Validate every part. `origins` names the keys in messages.
    pub fn validate(self, origins: &Origins) -> Result<Settings, ConfigError> {
        let mut check = Check {
            origins,
            warnings: Vec::new(),
        };
        if let Some(key) = self.unknown.keys().next() {
            return Err(check.invalid(key, "is not a setting (misspelt?)"));
        }
        let log_format = match self.log_format.trim().to_ascii_lowercase().as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => return Err(check.invalid("log_format", "use text or json")),
        };
        let listeners = self.listeners.validate(&mut check)?;
        let (redis, index) = self.redis.validate(&mut check)?;
        let token_keys = self.redis.token_keys(&mut check)?;
        let issuers = issuers::validate(
            &self.issuer,
            &self.issuers,
            self.allow_insecure_http,
            &mut check,
        )?;
        let inputs = self.inputs.validate(
            self.issuer.issuer.as_deref(),
            &issuers,
            self.allow_insecure_http,
            &mut check,
        )?;
        if listeners.gateway.is_some() && redis.is_none() {
            return Err(check.invalid(
                "gateway_listen",
                "the forward-auth check follows the denylist in Redis: set redis_url too",
            ));
        }
        if !inputs.applications.is_empty() && listeners.gateway.is_none() {
            return Err(check.invalid(
                "applications",
                "the sessions API is served on gateway_listen: set it too",
            ));
        }
        if listeners.admin.is_some() && inputs.admin.is_empty() {
            check.warn("admin_listen is set but no admin_tokens: the admin API stays off");
        }
        Ok(Settings {
            listeners,
            log_format,
            redis,
            index,
            issuers,
            inputs,
            clock_skew: std::time::Duration::from_secs(self.clock_skew_secs),
            token_keys,
            warnings: check.warnings,
            effective: self,
            origins: origins.clone(),
        })
    }
}

/// What the admin commands (`oidc-logout sessions`, `revoke`) need: the shared Redis index, and
/// what the settings say about the issuer they act on, when they name it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AdminCommandSettings {
    /// Where Redis is.
    pub redis: RedisTarget,
    /// Index settings.
    pub index: IndexSettings,
    /// The issuer's settings, when it is configured (its denylist lifetime, the clients that
    /// revoke its refresh tokens).
    pub issuer: Option<IssuerSettings>,
    /// The keys that open the tokens the applications sealed in their session records.
    pub token_keys: Option<crate::session_store::TokenKeys>,
}

impl Config {
    /// Validate what the admin commands need to act on `issuer`'s sessions in Redis. An issuer
    /// that is not configured is acted on with the defaults.
    pub fn validate_for_admin(
        self,
        origins: &Origins,
        issuer: &str,
    ) -> Result<AdminCommandSettings, ConfigError> {
        let mut check = Check {
            origins,
            warnings: Vec::new(),
        };
        if let Some(key) = self.unknown.keys().next() {
            return Err(check.invalid(key, "is not a setting (misspelt?)"));
        }
        let (redis, index) = self.redis.validate(&mut check)?;
        let token_keys = self.redis.token_keys(&mut check)?;
        let Some(redis) = redis else {
            return Err(check.invalid(
                "redis_url",
                "these commands work on the shared Redis index: set it to the receiver's Redis",
            ));
        };
        let configured = self.issuer.issuer.is_some() || !self.issuers.is_empty();
        let issuer = if configured {
            issuers::validate(
                &self.issuer,
                &self.issuers,
                self.allow_insecure_http,
                &mut check,
            )?
            .into_iter()
            .find(|i| i.policy.issuer == issuer)
        } else {
            None
        };
        Ok(AdminCommandSettings {
            redis,
            index,
            issuer,
            token_keys,
        })
    }
}

impl Settings {
    /// Read, merge and validate the settings from `sources`.
    pub fn load(sources: &Sources) -> Result<Self, ConfigError> {
        let (config, origins) = Config::load(sources)?;
        config.validate(&origins)
    }

    /// How to name a setting in a message: the flag, variable or file key the value came from.
    pub fn name(&self, key: &str) -> String {
        self.origins.name(key)
    }

    /// The effective settings as a config file, secrets as `***` (Redis URLs with only the
    /// password hidden): what `oidc-logout check-config` prints. With the secrets filled in,
    /// it is a config file for the same settings.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string(&self.effective)
            .unwrap_or_else(|e| format!("# the settings cannot be written as TOML: {e}\n"))
    }
}

fn read_file(path: &Path) -> Result<toml::Table, ConfigError> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: display.clone(),
        source,
    })?;
    let parse = |e: toml::de::Error| ConfigError::Parse {
        path: display.clone(),
        message: e.to_string(),
    };
    // Parsed as settings first, so that a wrong type is reported with its key and line.
    toml::from_str::<Config>(&text).map_err(parse)?;
    toml::from_str(&text).map_err(parse)
}

/// Put a flag's or variable's value into the table, typed by its kind; `named` is how the
/// user wrote it, for the message when the value is wrong.
fn set(table: &mut toml::Table, flag: &Flag, value: &str, named: &str) -> Result<(), ConfigError> {
    let invalid = |message: &str| ConfigError::Invalid {
        setting: named.to_owned(),
        message: message.to_owned(),
    };
    let list = || {
        value
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| toml::Value::String(v.to_owned()))
            .collect::<Vec<_>>()
    };
    let typed = match flag.kind {
        Kind::Text | Kind::Secret => toml::Value::String(value.to_owned()),
        Kind::Bool => toml::Value::Boolean(
            parse_bool(value).ok_or_else(|| invalid("is not a boolean; use true or false"))?,
        ),
        Kind::Seconds | Kind::Count => {
            let number: i64 = value
                .trim()
                .parse()
                .ok()
                .filter(|s| *s >= 0)
                .ok_or_else(|| {
                    invalid(if flag.kind == Kind::Seconds {
                        "is not a whole number of seconds"
                    } else {
                        "is not a whole number"
                    })
                })?;
            toml::Value::Integer(number)
        }
        Kind::List => toml::Value::Array(list()),
        Kind::SecretList => {
            // Added to the file's list, not replacing it.
            let mut all = match table.remove(flag.key) {
                Some(toml::Value::Array(held)) => held,
                _ => Vec::new(),
            };
            all.extend(list());
            toml::Value::Array(all)
        }
    };
    table.insert(flag.key.to_owned(), typed);
    Ok(())
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Sources {
        Sources {
            file: None,
            env: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            flags: Vec::new(),
        }
    }

    fn from_file(toml: &str, more: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let dir = std::env::temp_dir().join(format!(
            "oidc-logout-config-{}-{}",
            std::process::id(),
            crate::sys::random_id(6).unwrap()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, toml).unwrap();
        let mut sources = env(more);
        sources.file = Some(path);
        Settings::load(&sources)
    }

    fn error(sources: &Sources) -> String {
        match Settings::load(sources) {
            Ok(_) => "accepted".into(),
            Err(e) => e.to_string(),
        }
    }

    const MINIMAL: &[(&str, &str)] = &[
        ("OIDC_LOGOUT_ISSUER", "https://op.example"),
        ("OIDC_LOGOUT_CLIENT_ID", "app"),
    ];

    #[test]
    fn environment_alone_is_enough() {
        let s = Settings::load(&env(MINIMAL)).unwrap();
        assert_eq!(s.listeners.main.to_string(), DEFAULT_LISTEN);
        assert_eq!(
            s.issuers[0].policy.clients,
            vec![("app".to_owned(), vec![jsonwebtoken::Algorithm::RS256])]
        );
        assert!(s.warnings.iter().any(|w| w.contains("in-memory")));
    }

    #[test]
    fn every_flag_has_a_variable_and_works_by_environment() {
        let mut vars: Vec<(String, String)> = MINIMAL
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        vars.extend([
            ("OIDC_LOGOUT_SHUTDOWN_GRACE_SECS".into(), "7".into()),
            ("OIDC_LOGOUT_MARKER_TTL_SECS".into(), "99".into()),
            ("OIDC_LOGOUT_ALLOW_INSECURE_HTTP".into(), "yes".into()),
            ("OIDC_LOGOUT_LOG_FORMAT".into(), "JSON".into()),
            ("OIDC_LOGOUT_ALGORITHMS".into(), "ES256, EdDSA".into()),
            ("OIDC_LOGOUT_OP_KEYS".into(), "keys.json".into()),
            ("PATH".into(), "/bin".into()),
        ]);
        let s = Settings::load(&Sources {
            env: vars,
            ..Sources::default()
        })
        .unwrap();
        assert_eq!(s.listeners.shutdown_grace.as_secs(), 7);
        assert_eq!(s.index.marker_ttl.as_secs(), 99);
        assert_eq!(s.log_format, LogFormat::Json);
        assert!(s.issuers[0].provider.allow_insecure_http);
        assert_eq!(
            s.issuers[0].policy.clients[0].1,
            vec![
                jsonwebtoken::Algorithm::ES256,
                jsonwebtoken::Algorithm::EdDSA
            ]
        );
        for flag in FLAGS {
            assert!(flag.env().starts_with(ENV_PREFIX) && flag.long().starts_with("--"));
        }
    }

    #[test]
    fn an_unknown_variable_stops_startup_naming_it() {
        let mut sources = env(MINIMAL);
        sources
            .env
            .push(("OIDC_LOGOUT_REDIS_ULR".into(), "redis://x".into()));
        assert_eq!(
            error(&sources),
            "OIDC_LOGOUT_REDIS_ULR is not a setting of oidc-logout (misspelt?); the variables \
             are listed in docs/configuration.md"
        );
    }

    #[test]
    fn errors_name_the_flag_the_variable_or_the_file_key() {
        let mut by_env = env(MINIMAL);
        by_env
            .env
            .push(("OIDC_LOGOUT_LISTEN".into(), "nowhere".into()));
        assert!(error(&by_env).starts_with("OIDC_LOGOUT_LISTEN: "));
        let mut by_flag = by_env.clone();
        by_flag.flags.push(("listen".into(), "nowhere".into()));
        assert!(
            error(&by_flag).starts_with("--listen: "),
            "{}",
            error(&by_flag)
        );
        let mut flag_issuer = Sources::default();
        flag_issuer
            .flags
            .push(("issuer".into(), "http://op.internal".into()));
        flag_issuer.flags.push(("client_id".into(), "a".into()));
        let e = error(&flag_issuer);
        assert!(
            e.starts_with("--issuer: ") && e.contains("--allow-insecure-http"),
            "{e}"
        );
        let e = error(&Sources::default());
        assert!(
            e.contains("--issuer") && e.contains("OIDC_LOGOUT_ISSUER"),
            "{e}"
        );
        let e = from_file("[[issuers]]\nissuer = \"https://a\"\n", &[])
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("`issuers[0].clients` in "), "{e}");
        let e = from_file("listen = 3\n", &[]).err().unwrap().to_string();
        assert!(e.contains("listen"), "{e}");
        let e = from_file("lissen = \"x\"\n", MINIMAL)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("`lissen`") && e.contains("not a setting"), "{e}");
        let mut bad_bool = env(MINIMAL);
        bad_bool
            .env
            .push(("OIDC_LOGOUT_ALLOW_INSECURE_HTTP".into(), "maybe".into()));
        assert!(error(&bad_bool).starts_with("OIDC_LOGOUT_ALLOW_INSECURE_HTTP: "));
    }

    #[test]
    fn token_keys_are_checked_and_never_printed() {
        let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let mut good = env(MINIMAL);
        good.env.push(("OIDC_LOGOUT_TOKEN_KEYS".into(), key.into()));
        let s = Settings::load(&good).unwrap();
        assert_eq!(s.token_keys.as_ref().map(|k| k.ids().count()), Some(1));
        assert!(!s.to_redacted_toml().contains(key));
        assert!(!format!("{s:?}").contains(key));
        let mut bad = env(MINIMAL);
        bad.env
            .push(("OIDC_LOGOUT_TOKEN_KEYS".into(), format!("{key},c2hvcnQ=")));
        let e = error(&bad);
        assert!(
            e.starts_with("OIDC_LOGOUT_TOKEN_KEYS: token key 2 is not 32 bytes"),
            "{e}"
        );
        assert!(!e.contains("c2hvcnQ="), "{e}");
    }

    #[test]
    fn http_issuer_only_on_loopback_or_when_allowed() {
        for issuer in [
            "http://127.0.0.2:9000",
            "http://localhost",
            "http://[::1]:8",
        ] {
            let s = Settings::load(&env(&[
                ("OIDC_LOGOUT_ISSUER", issuer),
                ("OIDC_LOGOUT_CLIENT_ID", "a"),
            ]));
            assert!(s.is_ok(), "{issuer}");
        }
        let refused = env(&[
            ("OIDC_LOGOUT_ISSUER", "http://op.internal"),
            ("OIDC_LOGOUT_CLIENT_ID", "a"),
        ]);
        assert!(error(&refused).contains("OIDC_LOGOUT_ALLOW_INSECURE_HTTP"));
        let mut allowed = refused.clone();
        allowed
            .flags
            .push(("allow_insecure_http".into(), "true".into()));
        assert_eq!(error(&allowed), "accepted");
    }

    #[test]
    fn file_with_several_issuers_and_per_client_algorithms() {
        let s = from_file(
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
            &[
                ("OIDC_LOGOUT_ISSUER", "https://b.example"),
                ("OIDC_LOGOUT_CLIENT_ID", "four"),
            ],
        )
        .unwrap();
        assert_eq!(s.issuers.len(), 2);
        assert_eq!(
            s.issuers[0].policy.clients[1].1,
            vec![
                jsonwebtoken::Algorithm::ES256,
                jsonwebtoken::Algorithm::EdDSA
            ]
        );
        let b = &s.issuers[1].policy;
        assert!(b.accept_missing_exp);
        assert_eq!(
            b.clients.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
            ["three", "four"]
        );
        assert!(matches!(s.redis, Some(RedisTarget::Single(_))));
    }

    #[test]
    fn check_config_output_parses_back_and_hides_secrets() {
        let s = from_file(
            r#"
            redis_url = "redis://user:hunter2@127.0.0.1/"
            admin_tokens = ["0123456789abcdef0123456789abcdef"]
            [[issuers]]
            issuer = "https://a.example"
            clients = [{ id = "one", secret = "client-secret-value" }]
            [fusionauth]
            hmac_secrets = ["0123456789abcdef0123456789abcdef-hmac"]
            tenants = [{ tenant_id = "t1", issuer = "https://a.example" }]
            "#,
            &[(
                "OIDC_LOGOUT_ADMIN_TOKENS",
                "fedcba9876543210fedcba9876543210",
            )],
        )
        .unwrap();
        let printed = s.to_redacted_toml();
        for secret in [
            "hunter2",
            "0123456789abcdef",
            "client-secret-value",
            "fedcba98",
        ] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        assert!(printed.contains("redis://user:***@127.0.0.1/"), "{printed}");
        assert!(printed.contains("max_token_age_secs = 300"), "{printed}");
        let back: Config = toml::from_str(&printed).unwrap();
        assert_eq!(back.inputs.admin_tokens.len(), 2);
        let again = back.validate(&Origins::default());
        // The redacted admin tokens are too short to be accepted: the secrets must be filled in.
        assert!(again.is_err());
    }
}
