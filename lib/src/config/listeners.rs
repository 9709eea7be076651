//! Where the service listens: the main listener (back-channel logout and the other inputs),
//! the metrics listener and the admin API's own listener, and how long shutdown may take.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Check, ConfigError};

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// How long in-flight requests may take to finish after SIGTERM, unless set.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The listeners, as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ListenerConfig {
    /// `host:port` of `POST /backchannel-logout` and the other inputs.
    pub listen: String,
    /// `host:port` for `/metrics`, `/healthz` and `/readyz`; absent: no such listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
    /// `host:port` of a listener of its own for the admin API; absent: the main listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_listen: Option<String>,
    /// Seconds in-flight requests may take to finish after SIGTERM.
    pub shutdown_grace_secs: u64,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_owned(),
            metrics_listen: None,
            admin_listen: None,
            shutdown_grace_secs: DEFAULT_SHUTDOWN_GRACE.as_secs(),
        }
    }
}

/// The listeners, validated.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Listeners {
    /// The main listener.
    pub main: SocketAddr,
    /// The metrics and health listener, if any.
    pub metrics: Option<SocketAddr>,
    /// The admin API's own listener; `None`: the main listener (when tokens are set).
    pub admin: Option<SocketAddr>,
    /// How long in-flight requests may take to finish after the shutdown signal.
    pub shutdown_grace: Duration,
}

impl Default for Listeners {
    fn default() -> Self {
        Self {
            main: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics: None,
            admin: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

impl ListenerConfig {
    /// Check the addresses.
    pub fn validate(&self, check: &mut Check<'_>) -> Result<Listeners, ConfigError> {
        let address = |key: &str, text: &str, example: &str| -> Result<SocketAddr, ConfigError> {
            text.trim().parse().map_err(|_| {
                check.invalid(key, format!("{text:?} is not host:port, e.g. {example}"))
            })
        };
        let optional = |key: &str, text: &Option<String>, example: &str| match text {
            Some(t) if !t.trim().is_empty() => address(key, t, example).map(Some),
            _ => Ok(None),
        };
        Ok(Listeners {
            main: address("listen", &self.listen, DEFAULT_LISTEN)?,
            metrics: optional("metrics_listen", &self.metrics_listen, "127.0.0.1:9090")?,
            admin: optional("admin_listen", &self.admin_listen, "127.0.0.1:9091")?,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
        })
    }
}
