//! Where Redis is and how to talk to it: one server, a Cluster, or a primary found through
//! Sentinel, each behind one connection type the index and the denylist use alike.
//!
//! The index needs no more from a topology than single-key commands and Lua scripts whose keys
//! share one hash tag, so the three shapes differ only here. A single server and a Cluster use
//! the `redis` crate's reconnecting connections; Sentinel gets a thin wrapper of its own
//! ([`sentinel`](super::sentinel)). A Cluster needs the feature `redis-cluster`, Sentinel
//! `redis-sentinel` (both in `server` and `full`); a build without them refuses such a target
//! with a message naming the feature.
//!
//! TLS is `rediss://` in the URL; the server's certificate is checked against the system's
//! roots, or the file named by `SSL_CERT_FILE`. ACL users go in the URL as
//! `redis://user:password@host/`.

#[cfg(feature = "redis-sentinel")]
use std::sync::Arc;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Client, Cmd, IntoConnectionInfo as _, RedisFuture, Value};
use secrecy::{ExposeSecret as _, SecretString};

#[cfg(feature = "redis-cluster")]
use super::managed::TIMEOUT;
use super::managed::manager;
use super::{OrUnavailable as _, StoreError};

/// The sentinel service name used when none is configured.
pub const DEFAULT_SENTINEL_MASTER: &str = "mymaster";

/// Where Redis is. URLs hold passwords, hence secret.
#[derive(Clone)]
#[non_exhaustive]
pub enum RedisTarget {
    /// One server (or a managed endpoint that looks like one).
    Single(SecretString),
    /// A Redis Cluster, found through any of these nodes.
    Cluster(Vec<SecretString>),
    /// A primary found through these sentinels; the credentials and TLS of the sentinel URLs are
    /// used for the primary too.
    Sentinel {
        /// The sentinels.
        sentinels: Vec<SecretString>,
        /// The service (master) name the sentinels monitor.
        master: String,
    },
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl RedisTarget {
    /// A target from a mode (`standalone`, `cluster`, `sentinel`), a comma-separated list of
    /// URLs and, for Sentinel, the master name. The error says what is wrong.
    pub fn parse(mode: &str, urls: &str, master: Option<&str>) -> Result<Self, String> {
        let list: Vec<&str> = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        for url in &list {
            if let Err(error) = url.into_connection_info() {
                return Err(format!(
                    "{} is not a Redis URL ({error}); use redis://[user:password@]host:port/ or rediss://…",
                    redact_url(url)
                ));
            }
        }
        let secrets = || list.iter().map(|u| SecretString::from(*u)).collect();
        match (mode, list.as_slice()) {
            (_, []) => Err("no Redis URL given".into()),
            ("standalone", [one]) => Ok(Self::Single(SecretString::from(*one))),
            ("standalone", _) => Err(
                "several URLs need redis_mode = \"cluster\" or \"sentinel\"; standalone takes one"
                    .into(),
            ),
            ("cluster", _) => Ok(Self::Cluster(secrets())),
            ("sentinel", _) => Ok(Self::Sentinel {
                sentinels: secrets(),
                master: master.unwrap_or(DEFAULT_SENTINEL_MASTER).to_owned(),
            }),
            (other, _) => Err(format!(
                "{other:?} is not a Redis mode; use standalone, cluster or sentinel"
            )),
        }
    }

    /// The mode name, as in the settings.
    pub fn mode(&self) -> &'static str {
        match self {
            Self::Single(_) => "standalone",
            Self::Cluster(_) => "cluster",
            Self::Sentinel { .. } => "sentinel",
        }
    }

    /// The target with passwords replaced by `***`, for logs and `check-config`.
    pub fn redacted(&self) -> String {
        let list = |urls: &[SecretString]| {
            urls.iter()
                .map(|u| redact_url(u.expose_secret()))
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            Self::Single(url) => redact_url(url.expose_secret()),
            Self::Cluster(urls) => format!("cluster {}", list(urls)),
            Self::Sentinel { sentinels, master } => {
                format!("sentinel {} (master {master})", list(sentinels))
            }
        }
    }

    /// Open a connection that reconnects by itself, and check that Redis answers.
    pub(crate) async fn connect(&self) -> Result<RedisConnection, StoreError> {
        let conn = match self {
            Self::Single(url) => RedisConnection::Single(
                manager(Client::open(url.expose_secret()).or_unavailable()?)
                    .await
                    .or_unavailable()?,
            ),
            #[cfg(feature = "redis-cluster")]
            Self::Cluster(urls) => {
                let client =
                    redis::cluster::ClusterClient::builder(urls.iter().map(|u| u.expose_secret()))
                        .connection_timeout(TIMEOUT)
                        .response_timeout(TIMEOUT)
                        .retries(2)
                        .build()
                        .or_unavailable()?;
                RedisConnection::Cluster(client.get_async_connection().await.or_unavailable()?)
            }
            #[cfg(feature = "redis-sentinel")]
            Self::Sentinel { sentinels, master } => {
                RedisConnection::Sentinel(super::sentinel::connect(sentinels, master).await?)
            }
            #[allow(unreachable_patterns)]
            other => return Err(not_built(other)),
        };
        let mut ping = conn.clone();
        let _: () = redis::cmd("PING")
            .query_async(&mut ping)
            .await
            .or_unavailable()?;
        Ok(conn)
    }

    /// A pub/sub connection. Redis delivers a `PUBLISH` to subscribers on every node of a
    /// Cluster and on replicas, so any reachable node will do; with Sentinel, the primary.
    pub(crate) async fn pubsub(&self) -> Result<redis::aio::PubSub, StoreError> {
        match self {
            Self::Single(url) => Ok(Client::open(url.expose_secret())
                .or_unavailable()?
                .get_async_pubsub()
                .await
                .or_unavailable()?),
            #[cfg(feature = "redis-cluster")]
            Self::Cluster(urls) => {
                let mut last = None;
                for url in urls {
                    match Client::open(url.expose_secret())
                        .or_unavailable()?
                        .get_async_pubsub()
                        .await
                    {
                        Ok(pubsub) => return Ok(pubsub),
                        Err(error) => last = Some(error),
                    }
                }
                Err(last.map_or_else(
                    || StoreError::Unexpected("no cluster node to subscribe to".into()),
                    |error| StoreError::Unavailable(error.to_string()),
                ))
            }
            #[cfg(feature = "redis-sentinel")]
            Self::Sentinel { sentinels, master } => {
                super::sentinel::pubsub(sentinels, master).await
            }
            #[allow(unreachable_patterns)]
            other => Err(not_built(other)),
        }
    }
}

/// A topology this build cannot reach: which feature adds it.
#[cfg_attr(
    all(feature = "redis-cluster", feature = "redis-sentinel"),
    allow(dead_code)
)]
fn not_built(target: &RedisTarget) -> StoreError {
    let feature = match target {
        RedisTarget::Cluster(_) => "redis-cluster",
        _ => "redis-sentinel",
    };
    StoreError::Unexpected(format!(
        "this build cannot reach a Redis {}: enable the oidc-logout feature `{feature}`",
        target.mode()
    ))
}

/// `url` with its password (if any) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Setting a password fails only for URLs without a host, which have none to hide.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "<not a URL>".into(),
    }
}

/// A connection to Redis in any of its shapes. Clones share the underlying connections.
#[derive(Clone)]
pub(crate) enum RedisConnection {
    /// One server.
    Single(ConnectionManager),
    /// A Cluster: commands go to the node that holds their keys' slot.
    #[cfg(feature = "redis-cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
    /// The primary Sentinel names, re-resolved after a failover.
    #[cfg(feature = "redis-sentinel")]
    Sentinel(Arc<super::sentinel::Failover>),
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            #[cfg(feature = "redis-cluster")]
            Self::Cluster(conn) => conn.req_packed_command(cmd),
            #[cfg(feature = "redis-sentinel")]
            Self::Sentinel(failover) => failover.request(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "redis-cluster")]
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "redis-sentinel")]
            Self::Sentinel(failover) => failover.request_pipeline(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            #[cfg(feature = "redis-cluster")]
            Self::Cluster(conn) => conn.get_db(),
            #[cfg(feature = "redis-sentinel")]
            Self::Sentinel(failover) => failover.db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_redact() {
        let single = RedisTarget::parse("standalone", "redis://u:pw@127.0.0.1:6379/", None);
        assert!(matches!(single, Ok(RedisTarget::Single(_))));
        let shown = single.map(|t| t.redacted()).unwrap_or_default();
        assert_eq!(shown, "redis://u:***@127.0.0.1:6379/");
        assert!(!shown.contains("pw"));

        let cluster = RedisTarget::parse("cluster", "redis://a:1, redis://b:2", None);
        assert!(matches!(&cluster, Ok(RedisTarget::Cluster(urls)) if urls.len() == 2));

        let sentinel = RedisTarget::parse("sentinel", "redis://s:26379", Some("prod"));
        assert!(matches!(&sentinel, Ok(RedisTarget::Sentinel { master, .. }) if master == "prod"));

        for (mode, urls, wanted) in [
            ("standalone", "redis://a:1,redis://b:2", "several URLs"),
            ("standalone", "", "no Redis URL"),
            ("ring", "redis://a:1", "not a Redis mode"),
            ("standalone", "http://a:1", "not a Redis URL"),
        ] {
            let error = RedisTarget::parse(mode, urls, None)
                .err()
                .unwrap_or_default();
            assert!(error.contains(wanted), "{mode} {urls}: {error}");
        }
    }
}
