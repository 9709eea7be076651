//! Where the service listens: the main listener (back-channel logout and the other inputs),
//! the metrics listener and the admin API's own listener; the limits every listener enforces
//! (docs/exposing.md); and how long shutdown may take.

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
    /// Seconds a request's headers may take to arrive, counted from when the connection is
    /// ready for a request (so also how long a connection may sit without sending one).
    pub header_read_timeout_secs: u64,
    /// Seconds a request's body may take to arrive after its headers, in total.
    pub body_read_timeout_secs: u64,
    /// Seconds a kept-alive connection may stay idle between requests.
    pub idle_timeout_secs: u64,
    /// Connections the main listener holds open at once; 0: the process's file-descriptor
    /// limit less a reserve (for Redis, key fetches and the other listeners).
    pub max_connections: u64,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_owned(),
            metrics_listen: None,
            admin_listen: None,
            shutdown_grace_secs: DEFAULT_SHUTDOWN_GRACE.as_secs(),
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 10,
            idle_timeout_secs: 10,
            max_connections: 0,
        }
    }
}

/// What every listener enforces on its connections (see docs/exposing.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// A request's headers must arrive within this, counted from when the connection is ready
    /// for a request.
    pub header_read_timeout: Duration,
    /// A request's body must arrive within this after its headers.
    pub body_read_timeout: Duration,
    /// A kept-alive connection idle this long is closed.
    pub idle_timeout: Duration,
    /// Connections of the main listener at once; `None`: from the file-descriptor limit.
    pub max_connections: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            max_connections: None,
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
    /// What every listener enforces on its connections.
    pub limits: Limits,
}

impl Default for Listeners {
    fn default() -> Self {
        Self {
            main: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics: None,
            admin: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            limits: Limits::default(),
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
        let seconds = |key: &str, value: u64| {
            if value == 0 {
                Err(check.invalid(key, "must be at least 1 second"))
            } else {
                Ok(Duration::from_secs(value))
            }
        };
        let limits = Limits {
            header_read_timeout: seconds(
                "header_read_timeout_secs",
                self.header_read_timeout_secs,
            )?,
            body_read_timeout: seconds("body_read_timeout_secs", self.body_read_timeout_secs)?,
            idle_timeout: seconds("idle_timeout_secs", self.idle_timeout_secs)?,
            max_connections: match self.max_connections {
                0 => None,
                n => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            },
        };
        Ok(Listeners {
            main: address("listen", &self.listen, DEFAULT_LISTEN)?,
            metrics: optional("metrics_listen", &self.metrics_listen, "127.0.0.1:9090")?,
            admin: optional("admin_listen", &self.admin_listen, "127.0.0.1:9091")?,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            limits,
        })
    }
}
