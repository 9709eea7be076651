//! The reconnecting connection to one Redis server, with this crate's timeouts: what a single
//! server and each primary Sentinel names are reached through.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError};

/// How long connecting and each answer may take before the call fails.
pub(super) const TIMEOUT: Duration = Duration::from_secs(2);

/// A connection to `client`'s server that reconnects by itself, failing fast meanwhile.
pub(super) async fn manager(client: Client) -> Result<ConnectionManager, RedisError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_with_config(client, config).await
}
