//! Keeping a [`Denylist`] current from Redis.
//!
//! One background task per denylist: subscribe to the marker channel, *then* read every
//! configured issuer's markers (so nothing published in between is missed: it arrives on the
//! channel, or is in what was read, or both), then apply each published marker as it comes. When
//! the subscription drops, the denylist is marked out of sync, and the task reconnects,
//! resubscribes and reads everything again. A full reload also runs every `reload_every` as a
//! safety net, and expired markers are pruned.

use std::time::Duration;

use futures_util::StreamExt as _;
use secrecy::SecretString;

use super::{Denylist, FailMode, parse_marker};
use crate::index::{
    IssuerKeys, OrUnavailable as _, RedisConnection, RedisTarget, StoreError, decode_component,
};
use crate::sys::unix_now;

/// How a denylist finds and follows the markers. Build it with [`DenylistSettings::new`] and
/// change the fields that differ.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DenylistSettings {
    /// The Redis the receiver writes to (one server, Cluster or Sentinel).
    pub redis: RedisTarget,
    /// The receiver's key prefix (default `oidc-logout:`).
    pub prefix: String,
    /// The issuers whose tokens this API accepts; markers of other issuers are ignored.
    pub issuers: Vec<String>,
    /// What to do while in-sync state cannot be confirmed for longer than `max_unsynced`.
    pub fail_mode: FailMode,
    /// How long a gap in sync is tolerated before `fail_mode` applies.
    pub max_unsynced: Duration,
    /// A full reload this often, even when the subscription looks healthy.
    pub reload_every: Duration,
}

impl DenylistSettings {
    /// Settings for one Redis server at `redis_url`, with the defaults: prefix `oidc-logout:`,
    /// fail closed after 10 s out of sync, a full reload every 60 s. Set `redis` for a Cluster
    /// or Sentinel.
    pub fn new(redis_url: impl Into<String>, issuers: Vec<String>) -> Self {
        Self {
            redis: RedisTarget::Single(SecretString::from(redis_url.into())),
            prefix: "oidc-logout:".into(),
            issuers,
            fail_mode: FailMode::Closed,
            max_unsynced: Duration::from_secs(10),
            reload_every: Duration::from_secs(60),
        }
    }
}

/// The channel denylist markers are published on, under a key prefix.
#[doc(hidden)]
pub use crate::index::deny_channel as channel;

/// Start following Redis: returns once the first full load succeeded (so a wrong URL fails
/// here), then keeps the denylist current in the background for as long as the runtime runs.
pub async fn start(settings: DenylistSettings) -> Result<Denylist, StoreError> {
    let denylist = Denylist::new(settings.fail_mode, settings.max_unsynced);
    let mut first = Follower::connect(&settings, &denylist).await?;
    let gauges = denylist.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            let unsynced = gauges.unsynced_for().map_or(0.0, |d| d.as_secs_f64());
            metrics::gauge!(crate::telemetry::DENYLIST_UNSYNCED).set(unsynced);
            #[allow(clippy::cast_precision_loss)] // a marker count fits an f64 exactly
            metrics::gauge!(crate::telemetry::DENYLIST_MARKERS).set(gauges.len() as f64);
        }
    });
    let background = denylist.clone();
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(50);
        loop {
            if let Err(error) = first.follow().await {
                tracing::warn!(%error, "denylist subscription lost; reconnecting");
            }
            background.set_unsynced();
            let mut over_bound = false;
            loop {
                tokio::time::sleep(backoff).await;
                match Follower::connect(&settings, &background).await {
                    Ok(follower) => {
                        tracing::info!("denylist back in sync");
                        first = follower;
                        backoff = Duration::from_millis(50);
                        break;
                    }
                    Err(error) => {
                        tracing::debug!(%error, "denylist cannot reach Redis");
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                }
                if !over_bound && background.sync_lost_too_long() {
                    over_bound = true;
                    match settings.fail_mode {
                        FailMode::Closed => tracing::error!(
                            "denylist out of sync for longer than {:?}: refusing every token (fail closed) until Redis is back",
                            settings.max_unsynced
                        ),
                        FailMode::Open => tracing::error!(
                            "denylist out of sync for longer than {:?}: tokens revoked meanwhile may pass (fail open) until Redis is back",
                            settings.max_unsynced
                        ),
                    }
                }
            }
        }
    });
    Ok(denylist)
}

/// A live subscription plus a connection for reloads.
struct Follower {
    messages: redis::aio::PubSubStream,
    conn: RedisConnection,
    settings: DenylistSettings,
    denylist: Denylist,
}

impl Follower {
    /// Subscribe, then load everything, then mark the denylist in sync.
    async fn connect(settings: &DenylistSettings, denylist: &Denylist) -> Result<Self, StoreError> {
        let mut pubsub = settings.redis.pubsub().await?;
        pubsub
            .subscribe(channel(&settings.prefix))
            .await
            .or_unavailable()?;
        let conn = settings.redis.connect().await?;
        let mut follower = Self {
            messages: pubsub.into_on_message(),
            conn,
            settings: settings.clone(),
            denylist: denylist.clone(),
        };
        follower.reload().await?;
        denylist.set_in_sync();
        Ok(follower)
    }

    async fn reload(&mut self) -> Result<(), StoreError> {
        for issuer in &self.settings.issuers {
            let keys = IssuerKeys::new(&self.settings.prefix, issuer);
            let fields: Vec<(String, String)> = redis::cmd("HGETALL")
                .arg(keys.deny())
                .query_async(&mut self.conn)
                .await
                .or_unavailable()?;
            let now = unix_now();
            let snapshot = fields
                .iter()
                .filter_map(|(field, value)| parse_marker(field, value))
                .filter(|(_, _, marker)| marker.expires_at > now)
                .collect();
            self.denylist.replace_issuer(issuer, snapshot);
        }
        Ok(())
    }

    /// Apply published markers until the subscription drops or a reload fails.
    async fn follow(&mut self) -> Result<(), StoreError> {
        let mut reload = tokio::time::interval(self.settings.reload_every);
        reload.tick().await;
        let mut prune = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                message = self.messages.next() => {
                    let Some(message) = message else {
                        return Err(StoreError::Unexpected("the subscription was closed".into()));
                    };
                    let payload: String = message.get_payload().unwrap_or_default();
                    self.apply(&payload);
                }
                _ = reload.tick() => self.reload().await?,
                _ = prune.tick() => self.denylist.prune(unix_now()),
            }
        }
    }

    /// A published marker: `<encoded issuer> <field> <revoked_at> <expires_at>`.
    fn apply(&self, payload: &str) {
        let mut parts = payload.splitn(3, ' ');
        let (Some(issuer), Some(field), Some(times)) = (parts.next(), parts.next(), parts.next())
        else {
            tracing::warn!("ignoring a malformed denylist message");
            return;
        };
        let issuer = decode_component(issuer);
        if !self.settings.issuers.contains(&issuer) {
            return;
        }
        match parse_marker(field, times) {
            Some((kind, value, marker)) => self.denylist.apply(&issuer, kind, &value, marker),
            None => tracing::warn!("ignoring a malformed denylist message"),
        }
    }
}
