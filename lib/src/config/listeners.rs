//! Where the service listens: the main listener (back-channel logout and the other inputs),
//! the metrics listener and the admin API's own listener; the limits every listener enforces
//! (docs/exposing.md); and how long shutdown may take.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Check, ConfigError};
use crate::net::Network;

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
    /// `host:port` of the gateways' listener (`/v1/check`); absent: no such listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_listen: Option<String>,
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
    /// Bytes a second a request's head and body must arrive at, after `rate_grace_secs`
    /// (Apache's `MinRate`): a slower sender is cut off. 0: no minimum rate.
    pub min_data_rate: u64,
    /// Seconds a request may take before the minimum rate applies (each byte extends it by
    /// 1/`min_data_rate` s).
    pub rate_grace_secs: u64,
    /// Connections one source address may hold open at once (nginx's `limit_conn`); a new one
    /// beyond it takes the place of that source's slowest. 0: no limit. Trusted senders and
    /// trusted proxies are exempt.
    pub max_connections_per_source: u64,
    /// Networks of the senders whose deliveries matter most (the OPs): their connections may
    /// use `reserved_connections` no other source can, and never give their place to others.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trusted_senders: Vec<String>,
    /// Connections of the main listener only trusted senders may hold; 0: a tenth of
    /// `max_connections` when trusted senders are set.
    pub reserved_connections: u64,
    /// Networks of reverse proxies in front of the listeners: many clients share their
    /// address, so they are exempt from `max_connections_per_source` (limit per client there).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<String>,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_owned(),
            metrics_listen: None,
            admin_listen: None,
            gateway_listen: None,
            shutdown_grace_secs: DEFAULT_SHUTDOWN_GRACE.as_secs(),
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 10,
            idle_timeout_secs: 10,
            max_connections: 0,
            min_data_rate: DEFAULT_MIN_DATA_RATE,
            rate_grace_secs: DEFAULT_RATE_GRACE.as_secs(),
            max_connections_per_source: DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
            trusted_senders: Vec::new(),
            reserved_connections: 0,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Bytes a second a request must arrive at after the grace, unless set.
pub const DEFAULT_MIN_DATA_RATE: u64 = 500;

/// How long a request may take before the minimum rate applies, unless set.
pub const DEFAULT_RATE_GRACE: Duration = Duration::from_secs(1);

/// Connections one source may hold open at once, unless set.
pub const DEFAULT_MAX_CONNECTIONS_PER_SOURCE: u64 = 64;

/// Networks, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Networks(Arc<[Network]>);

impl Networks {
    /// Whether `ip` is in one of them.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What every listener enforces on its connections (see docs/exposing.md).
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Bytes a second a request's head and body must arrive at after `rate_grace`; 0: none.
    pub min_data_rate: u64,
    /// How long a request may take before the minimum rate applies.
    pub rate_grace: Duration,
    /// Connections one source may hold at once; `None`: no limit.
    pub max_connections_per_source: Option<usize>,
    /// Senders with reserved capacity.
    pub trusted_senders: Networks,
    /// Connections only trusted senders may hold; `None`: a tenth of the cap when there are
    /// trusted senders.
    pub reserved_connections: Option<usize>,
    /// Reverse proxies, exempt from the per-source limit.
    pub trusted_proxies: Networks,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            max_connections: None,
            min_data_rate: DEFAULT_MIN_DATA_RATE,
            rate_grace: DEFAULT_RATE_GRACE,
            max_connections_per_source: usize::try_from(DEFAULT_MAX_CONNECTIONS_PER_SOURCE).ok(),
            trusted_senders: Networks::default(),
            reserved_connections: None,
            trusted_proxies: Networks::default(),
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
    /// The gateways' listener (the forward-auth check), if any.
    pub gateway: Option<SocketAddr>,
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
            gateway: None,
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
        let count = |value: u64| match value {
            0 => None,
            n => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        };
        let networks = |key: &str, written: &[String]| -> Result<Networks, ConfigError> {
            written
                .iter()
                .map(|n| {
                    Network::parse(n.trim()).ok_or_else(|| {
                        check.invalid(
                            key,
                            format!("{n:?} is not an IP address or network (a.b.c.d/n)"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|all| Networks(all.into()))
        };
        let limits = Limits {
            header_read_timeout: seconds(
                "header_read_timeout_secs",
                self.header_read_timeout_secs,
            )?,
            body_read_timeout: seconds("body_read_timeout_secs", self.body_read_timeout_secs)?,
            idle_timeout: seconds("idle_timeout_secs", self.idle_timeout_secs)?,
            max_connections: count(self.max_connections),
            min_data_rate: self.min_data_rate,
            rate_grace: seconds("rate_grace_secs", self.rate_grace_secs)?,
            max_connections_per_source: count(self.max_connections_per_source),
            trusted_senders: networks("trusted_senders", &self.trusted_senders)?,
            reserved_connections: count(self.reserved_connections),
            trusted_proxies: networks("trusted_proxies", &self.trusted_proxies)?,
        };
        Ok(Listeners {
            main: address("listen", &self.listen, DEFAULT_LISTEN)?,
            metrics: optional("metrics_listen", &self.metrics_listen, "127.0.0.1:9090")?,
            admin: optional("admin_listen", &self.admin_listen, "127.0.0.1:9091")?,
            gateway: optional("gateway_listen", &self.gateway_listen, "127.0.0.1:8081")?,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            limits,
        })
    }
}
