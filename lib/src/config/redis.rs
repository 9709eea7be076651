//! Where Redis is and how the index lays its keys out there.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Check, ConfigError, RedisUrls, Secret};
use crate::index::{DEFAULT_SENTINEL_MASTER, IndexSettings, RedisTarget};
use crate::session_store::TokenKeys;

/// Redis, as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct RedisConfig {
    /// Redis URL, or comma-separated node URLs for a Cluster or the sentinels; absent: the
    /// in-memory index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<RedisUrls>,
    /// `standalone` (default), `cluster` or `sentinel`.
    pub redis_mode: String,
    /// The master name the sentinels monitor.
    pub redis_sentinel_master: String,
    /// Prefix of every Redis key.
    pub key_prefix: String,
    /// How long logout markers refuse late registrations, in seconds.
    pub marker_ttl_secs: u64,
    /// Also end and read sessions of the version 1 layout (`docs/redis-schema.md`, "Moving
    /// from v1").
    pub redis_legacy_v1: bool,
    /// The keys that seal the tokens in the applications' session records (comma-separated
    /// base64, newest first): the receiver opens refresh tokens with them to revoke them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_keys: Option<Secret>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        let index = IndexSettings::default();
        Self {
            redis_url: None,
            redis_mode: "standalone".to_owned(),
            redis_sentinel_master: DEFAULT_SENTINEL_MASTER.to_owned(),
            key_prefix: index.prefix,
            marker_ttl_secs: index.marker_ttl.as_secs(),
            redis_legacy_v1: index.legacy_v1,
            token_keys: None,
        }
    }
}

impl RedisConfig {
    /// Check the URLs, mode and key prefix.
    pub fn validate(
        &self,
        check: &mut Check<'_>,
    ) -> Result<(Option<RedisTarget>, IndexSettings), ConfigError> {
        if self.key_prefix.contains(['{', '}']) {
            return Err(check.invalid(
                "key_prefix",
                "must not contain { or } (they would change the Redis Cluster hash tag)",
            ));
        }
        if self.marker_ttl_secs == 0 {
            return Err(check.invalid("marker_ttl_secs", "must be at least 1 second"));
        }
        let mode = self.redis_mode.trim();
        if !["standalone", "cluster", "sentinel"].contains(&mode) {
            return Err(check.invalid(
                "redis_mode",
                format!("{mode:?} is not a Redis mode; use standalone, cluster or sentinel"),
            ));
        }
        let target = match &self.redis_url {
            Some(urls) => Some(
                RedisTarget::parse(mode, urls.expose(), Some(&self.redis_sentinel_master))
                    .map_err(|m| check.invalid("redis_url", m))?,
            ),
            None => {
                let variable = check.suggest("redis_url", "redis_url");
                check.warn(format!(
                    "no Redis configured ({variable}): using the in-memory index, which only \
                     this process sees"
                ));
                None
            }
        };
        let index = IndexSettings::default()
            .with_prefix(self.key_prefix.clone())
            .with_marker_ttl(Duration::from_secs(self.marker_ttl_secs))
            .with_legacy_v1(self.redis_legacy_v1);
        Ok((target, index))
    }

    /// The keys that open the applications' sealed tokens, if given.
    pub fn token_keys(&self, check: &mut Check<'_>) -> Result<Option<TokenKeys>, ConfigError> {
        self.token_keys
            .as_ref()
            .map(|keys| {
                TokenKeys::parse(keys.expose())
                    .map_err(|e| check.invalid("token_keys", e.to_string()))
            })
            .transpose()
    }
}
