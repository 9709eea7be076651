//! A primary found through Sentinel (feature `redis-sentinel`): the `redis` crate resolves the
//! primary once, so when a command fails in a way a failover causes (connection lost,
//! `READONLY` from a demoted primary) [`Failover`] asks the sentinels again and switches. It
//! never re-sends the failed command: a logout script that ran before the connection dropped
//! would be refused as a replay, so the caller sees the error (a 503 to the OP, which retries).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Cmd, ErrorKind, IntoConnectionInfo as _, RedisError, RedisFuture, Value};
use secrecy::{ExposeSecret as _, SecretString};

use super::managed::manager;
use super::{OrUnavailable as _, StoreError};

/// Connect to the primary the sentinels name for `master`.
pub(super) async fn connect(
    sentinels: &[SecretString],
    master: &str,
) -> Result<Arc<Failover>, StoreError> {
    let mut sentinel = sentinel_client(sentinels, master)?;
    let primary = manager(sentinel.async_get_client().await.or_unavailable()?)
        .await
        .or_unavailable()?;
    Ok(Arc::new(Failover {
        sentinel: tokio::sync::Mutex::new(sentinel),
        current: RwLock::new(primary),
        generation: AtomicU64::new(0),
    }))
}

/// A pub/sub connection to the primary the sentinels name.
pub(super) async fn pubsub(
    sentinels: &[SecretString],
    master: &str,
) -> Result<redis::aio::PubSub, StoreError> {
    let client = sentinel_client(sentinels, master)?
        .async_get_client()
        .await
        .or_unavailable()?;
    client.get_async_pubsub().await.or_unavailable()
}

fn sentinel_client(sentinels: &[SecretString], master: &str) -> Result<SentinelClient, StoreError> {
    let first = sentinels
        .first()
        .ok_or_else(|| StoreError::Unexpected("no sentinel given".into()))?;
    let info = first
        .expose_secret()
        .into_connection_info()
        .or_unavailable()?;
    let mut node = SentinelNodeConnectionInfo::default()
        .set_redis_connection_info(info.redis_settings().clone());
    if let redis::ConnectionAddr::TcpTls { insecure, .. } = info.addr() {
        node = node.set_tls_mode(if *insecure {
            redis::TlsMode::Insecure
        } else {
            redis::TlsMode::Secure
        });
    }
    SentinelClient::build(
        sentinels.iter().map(|s| s.expose_secret()).collect(),
        master,
        Some(node),
        SentinelServerType::Master,
    )
    .or_unavailable()
}

/// The Sentinel-resolved primary, and the sentinels to ask again.
pub(crate) struct Failover {
    sentinel: tokio::sync::Mutex<SentinelClient>,
    current: RwLock<ConnectionManager>,
    /// Bumped at each switch, so that callers that failed on the same old primary ask the
    /// sentinels once, not once each.
    generation: AtomicU64,
}

impl Failover {
    /// The current primary's connection and its generation.
    fn current(&self) -> (ConnectionManager, u64) {
        let generation = self.generation.load(Ordering::Acquire);
        let conn = match self.current.read() {
            Ok(conn) => conn.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        (conn, generation)
    }

    /// Ask the sentinels for the primary and switch to it, unless another caller already did
    /// since `failed_on` (the generation the failed call used).
    async fn rediscover(&self, error: &RedisError, failed_on: u64) {
        let mut sentinel = self.sentinel.lock().await;
        if self.generation.load(Ordering::Acquire) != failed_on {
            return;
        }
        tracing::warn!(%error, "Redis primary lost; asking the sentinels for the current one");
        match sentinel.async_get_client().await {
            Ok(client) => match manager(client).await {
                Ok(conn) => {
                    match self.current.write() {
                        Ok(mut current) => *current = conn,
                        Err(poisoned) => *poisoned.into_inner() = conn,
                    }
                    self.generation.fetch_add(1, Ordering::AcqRel);
                }
                Err(error) => tracing::warn!(%error, "cannot connect to the new Redis primary"),
            },
            Err(error) => tracing::warn!(%error, "the sentinels name no reachable primary"),
        }
    }
}

/// Whether an error means the primary may have moved.
fn primary_lost(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || matches!(
            error.kind(),
            ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
        )
}

impl Failover {
    /// Send one command to the current primary; on an error a failover causes, look for the
    /// new primary (the command is not sent again).
    pub(super) fn request<'a>(self: &'a Arc<Self>, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (mut conn, generation) = self.current();
            let result = conn.req_packed_command(cmd).await;
            if let Err(error) = &result
                && primary_lost(error)
            {
                self.rediscover(error, generation).await;
            }
            result
        })
    }

    /// The same for a pipeline.
    pub(super) fn request_pipeline<'a>(
        self: &'a Arc<Self>,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (mut conn, generation) = self.current();
            let result = conn.req_packed_commands(pipeline, offset, count).await;
            if let Err(error) = &result
                && primary_lost(error)
            {
                self.rediscover(error, generation).await;
            }
            result
        })
    }

    /// The database the primary's connection uses.
    pub(super) fn db(&self) -> i64 {
        self.current().0.get_db()
    }
}
