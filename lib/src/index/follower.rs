//! An application instance's in-memory view of the logout markers in Redis, so that loading a
//! session asks Redis nothing.
//!
//! One background task per [`RedisIndex`](super::RedisIndex) that is asked: subscribe to the
//! markers' channel, *then* read the marker hash of each issuer asked about (so nothing published
//! in between is missed: it arrives on the channel, or is in what was read, or both), then apply
//! each published marker as it comes. An issuer is followed from the first time a session of it
//! is checked; until its markers are read, the view cannot answer for it.
//!
//! **How stale can an answer be?** Every 200 ms (or a quarter of the bound, if smaller) the task
//! publishes a heartbeat for each followed issuer on the markers' channel, through a script that
//! runs where that issuer's keys live, carrying the time it was sent. Every marker of the issuer
//! is published from that same place and messages from one place arrive in order (on one server,
//! and across a Cluster's bus alike), so when the heartbeat comes back every marker published
//! before it left has arrived and been applied: the issuer's view is *fresh as of* the time it
//! carries. Reading an issuer's marker hash makes it fresh as of when the read was sent. The view
//! answers for an issuer only while that time is within `max_staleness` (default 1 s) of now;
//! otherwise — the connection broke, Redis stalled, the task fell behind — the caller asks
//! Redis. When no heartbeat comes back for five times the bound, the task reconnects. So an
//! answer from memory reflects every logout Redis acknowledged more than `max_staleness` ago,
//! and in practice every logout acknowledged before the message crossed the network (about a
//! millisecond on one host). (A `PING` on the subscription would prove nothing on a Cluster,
//! where the subscribed node hears of another node's messages later.)

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::StreamExt as _;

use super::connection::{RedisConnection, RedisTarget};
use super::keys::{IssuerKeys, decode_component, encode_component, ended_channel};
use super::markers::{Marker, Markers};
use super::{OrUnavailable as _, SessionKey, SessionState, StoreError};
use crate::sys::{unix_now, unix_now_ms};

/// The view, shared between the task that keeps it and the sessions that read it.
#[derive(Debug)]
pub(super) struct Follower {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// The issuers whose hash was read since the subscription started.
    issuers: RwLock<HashMap<String, Followed>>,
    /// Issuers asked about and not yet read.
    wanted: Mutex<HashSet<String>>,
    wake: tokio::sync::Notify,
    /// What this follower's heartbeats carry, so that other instances' are told apart.
    nonce: String,
    max_staleness_ms: u64,
}

/// One followed issuer.
#[derive(Debug)]
struct Followed {
    markers: Markers,
    /// Milliseconds since the epoch as of which every marker of the issuer published so far
    /// has been applied.
    fresh_as_of_ms: u64,
}

impl Follower {
    /// Start following in the background on `runtime`.
    pub(super) fn start(
        runtime: &tokio::runtime::Handle,
        target: RedisTarget,
        prefix: String,
        max_staleness: Duration,
    ) -> Self {
        let shared = Arc::new(Shared {
            issuers: RwLock::default(),
            wanted: Mutex::default(),
            wake: tokio::sync::Notify::new(),
            nonce: nonce(),
            max_staleness_ms: u64::try_from(max_staleness.as_millis()).unwrap_or(u64::MAX),
        });
        runtime.spawn(run(Arc::downgrade(&shared), target, prefix, max_staleness));
        Self { shared }
    }

    /// `Ended` or `Active` for a registered session, from memory; `None` when the view is not
    /// current or does not follow the session's issuer yet (it will from now on).
    pub(super) fn known_state(&self, session: &SessionKey<'_>) -> Option<SessionState> {
        {
            let issuers = read(&self.shared.issuers);
            if let Some(followed) = issuers.get(session.issuer) {
                let age = unix_now_ms().saturating_sub(followed.fresh_as_of_ms);
                if age > self.shared.max_staleness_ms {
                    return None;
                }
                return Some(if followed.markers.covers(session, unix_now()) {
                    SessionState::Ended
                } else {
                    SessionState::Active
                });
            }
        }
        let newly = lock(&self.shared.wanted).insert(session.issuer.to_owned());
        if newly {
            self.shared.wake.notify_one();
        }
        None
    }
}

/// A random tag for this follower's heartbeats.
fn nonce() -> String {
    // Without randomness, the time tells instances apart well enough.
    crate::sys::random_id(9).unwrap_or_else(|_| unix_now_ms().to_string())
}

impl Follower {
    /// A marker this instance has just written: apply it now, ahead of its message, so that
    /// the instance reads its own logouts at once. (The message brings the stored expiry.)
    pub(super) fn wrote(&self, issuer: &str, field: &str, marker: Marker) {
        if let Some(followed) = write(&self.shared.issuers).get_mut(issuer) {
            followed.markers.apply(field, marker, unix_now());
        }
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn lock<T>(lock: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    lock.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Follow until every reader is gone, reconnecting with backoff.
async fn run(
    shared: std::sync::Weak<Shared>,
    target: RedisTarget,
    prefix: String,
    max_staleness: Duration,
) {
    let beat_every =
        (max_staleness / 4).clamp(Duration::from_millis(10), Duration::from_millis(200));
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(view) = shared.upgrade() else { return };
        match follow(&view, &target, &prefix, beat_every, max_staleness).await {
            Ok(()) => return,
            Err(error) => {
                // Nothing read on the lost subscription can be trusted any more.
                write(&view.issuers).clear();
                tracing::warn!(%error, "lost the logout markers' channel; sessions are checked in Redis until it is back");
            }
        }
        drop(view);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// One subscription's life: subscribe, read every followed issuer, then apply messages and send
/// heartbeats. Returns `Ok` when the view is no longer used.
async fn follow(
    view: &Arc<Shared>,
    target: &RedisTarget,
    prefix: &str,
    beat_every: Duration,
    max_staleness: Duration,
) -> Result<(), StoreError> {
    let channel = ended_channel(prefix);
    let mut pubsub = target.pubsub().await?;
    pubsub.subscribe(&channel).await.or_unavailable()?;
    let mut messages = pubsub.into_on_message();
    let mut conn = target.connect().await?;
    // Everything read before this subscription may have missed messages: read it again.
    let followed: Vec<String> = read(&view.issuers).keys().cloned().collect();
    lock(&view.wanted).extend(followed);
    write(&view.issuers).clear();
    load_wanted(view, &mut conn, prefix).await?;
    let heartbeat = super::lua::heartbeat();
    let give_up_ms = u64::try_from((max_staleness * 5).max(Duration::from_secs(1)).as_millis())
        .unwrap_or(u64::MAX);
    let mut beat = tokio::time::interval(beat_every);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut prune = tokio::time::interval(Duration::from_secs(30));
    loop {
        if Arc::strong_count(view) == 1 {
            // Only this task holds the view: every index clone is gone.
            return Ok(());
        }
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else {
                    return Err(StoreError::Unexpected("the subscription was closed".into()));
                };
                let payload: String = message.get_payload().unwrap_or_default();
                apply(view, &payload);
            }
            () = view.wake.notified() => load_wanted(view, &mut conn, prefix).await?,
            _ = beat.tick() => {
                let now = unix_now_ms();
                let issuers: Vec<(String, u64)> = read(&view.issuers)
                    .iter()
                    .map(|(issuer, f)| (issuer.clone(), f.fresh_as_of_ms))
                    .collect();
                for (issuer, fresh) in issuers {
                    if now.saturating_sub(fresh) > give_up_ms {
                        return Err(StoreError::Unavailable("no heartbeat came back".into()));
                    }
                    let message = format!(
                        "{} hb:{} {now} 0",
                        encode_component(&issuer),
                        view.nonce
                    );
                    let sent = tokio::time::timeout(
                        max_staleness.max(Duration::from_millis(100)),
                        send_heartbeat(&mut conn, &heartbeat, prefix, &issuer, &channel, message),
                    )
                    .await;
                    match sent {
                        Ok(Ok(_)) => {}
                        Ok(Err(error)) => return Err(StoreError::Unavailable(error.to_string())),
                        Err(_) => return Err(StoreError::Unavailable("no answer to a heartbeat".into())),
                    }
                }
            }
            _ = prune.tick() => {
                let now = unix_now();
                for followed in write(&view.issuers).values_mut() {
                    followed.markers.prune(now);
                }
            }
        }
    }
}

/// Publish one heartbeat from where the issuer's markers are published: on a Cluster, through a
/// script on the issuer's slot; elsewhere there is one place, and a plain `PUBLISH` will do.
async fn send_heartbeat(
    conn: &mut RedisConnection,
    script: &redis::Script,
    prefix: &str,
    issuer: &str,
    channel: &str,
    message: String,
) -> redis::RedisResult<()> {
    if conn.is_cluster() {
        let _: i64 = script
            .key(IssuerKeys::new(prefix, issuer).markers())
            .arg(channel)
            .arg(message)
            .invoke_async(conn)
            .await?;
    } else {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(message)
            .query_async(conn)
            .await?;
    }
    Ok(())
}

/// Read the marker hash of every issuer asked about since the last read.
async fn load_wanted(
    view: &Shared,
    conn: &mut RedisConnection,
    prefix: &str,
) -> Result<(), StoreError> {
    let wanted: Vec<String> = lock(&view.wanted).drain().collect();
    for issuer in wanted {
        // Every marker published before the read is in it.
        let sent = unix_now_ms();
        let fields: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(IssuerKeys::new(prefix, &issuer).markers())
            .query_async(conn)
            .await
            .or_unavailable()
            .inspect_err(|_| {
                lock(&view.wanted).insert(issuer.clone());
            })?;
        let markers = Markers::from_fields(fields, unix_now());
        write(&view.issuers).insert(
            issuer,
            Followed {
                markers,
                fresh_as_of_ms: sent,
            },
        );
    }
    Ok(())
}

/// A published marker: `<encoded issuer> <field> <iat> <expires_at>`; or a heartbeat,
/// `<encoded issuer> hb:<nonce> <sent ms> 0`.
fn apply(view: &Shared, payload: &str) {
    let mut parts = payload.splitn(3, ' ');
    let (Some(issuer), Some(field), Some(value)) = (parts.next(), parts.next(), parts.next())
    else {
        tracing::warn!("ignoring a malformed logout marker message");
        return;
    };
    let Some(marker) = Marker::parse(value) else {
        tracing::warn!("ignoring a malformed logout marker message");
        return;
    };
    let issuer = decode_component(issuer);
    let mut issuers = write(&view.issuers);
    let Some(followed) = issuers.get_mut(&issuer) else {
        return;
    };
    match field.strip_prefix("hb:") {
        Some(nonce) if nonce == view.nonce => {
            followed.fresh_as_of_ms = followed.fresh_as_of_ms.max(marker.iat);
        }
        Some(_) => {}
        None => followed.markers.apply(field, marker, unix_now()),
    }
}
