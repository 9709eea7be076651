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
//!
//! **Whose clock?** Redis's. A marker's expiry is Redis's time (the scripts read `TIME`), so the
//! view judges it by Redis's time too, whatever this machine's clock says: the heartbeat script
//! adds Redis's time to each heartbeat, and the follower keeps the offset between the two clocks
//! (Redis's time minus the middle of the heartbeat's round trip, within half of it; read with
//! `TIME` when the subscription starts). An instance whose clock runs a minute behind or ahead
//! ends and forgets markers when every other instance and Redis do. Freshness is measured on
//! this machine's clock alone (a heartbeat's send and return), so it needs no offset.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::StreamExt as _;

use super::connection::{RedisConnection, RedisTarget};
use super::keys::{IssuerKeys, decode_component, encode_component, ended_channel};
use super::markers::{Marker, Markers};
use super::{OrUnavailable as _, SessionKey, SessionState, StoreError};
use crate::sys::unix_now_ms;

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
    /// Redis's clock minus this machine's, in milliseconds.
    offset_ms: AtomicI64,
}

impl Shared {
    /// Redis's time now, in seconds: what a marker's expiry is compared with.
    fn redis_now(&self) -> u64 {
        redis_time_ms(unix_now_ms(), self.offset_ms.load(Ordering::Relaxed)) / 1000
    }

    /// Learn the offset from Redis's time `redis_ms`, read between `sent_ms` and `back_ms` on
    /// this machine's clock.
    fn learn_offset(&self, sent_ms: u64, redis_ms: u64, back_ms: u64) {
        if let Some(offset) = offset_of(sent_ms, redis_ms, back_ms) {
            self.offset_ms.store(offset, Ordering::Relaxed);
        }
    }
}

/// This machine's time `local_ms` on Redis's clock.
fn redis_time_ms(local_ms: u64, offset_ms: i64) -> u64 {
    local_ms.saturating_add_signed(offset_ms)
}

/// The offset of Redis's clock from this machine's, from Redis's time `redis_ms` read between
/// `sent_ms` and `back_ms`: taken at the middle of the round trip, so off by at most half of
/// it. `None` for a reading that makes no sense (it came back before it left, or after so long
/// that it says little).
fn offset_of(sent_ms: u64, redis_ms: u64, back_ms: u64) -> Option<i64> {
    let round_trip = back_ms.checked_sub(sent_ms)?;
    if round_trip > 2_000 {
        return None;
    }
    let middle = i128::from(sent_ms) + i128::from(round_trip / 2);
    i64::try_from(i128::from(redis_ms) - middle).ok()
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
            offset_ms: AtomicI64::new(0),
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
                return Some(
                    if followed.markers.covers(session, self.shared.redis_now()) {
                        SessionState::Ended
                    } else {
                        SessionState::Active
                    },
                );
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
    /// A marker this instance has just written (issued at `iat`, living at least `ttl`): apply
    /// it now, ahead of its message, so that the instance reads its own logouts at once. (The
    /// message brings the stored expiry.)
    pub(super) fn wrote(&self, issuer: &str, field: &str, iat: u64, ttl: Duration) {
        let now = self.shared.redis_now();
        let marker = Marker {
            iat,
            expires_at: now.saturating_add(ttl.as_secs().max(1)),
        };
        if let Some(followed) = write(&self.shared.issuers).get_mut(issuer) {
            followed.markers.apply(field, marker, now);
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
    read_redis_time(view, &mut conn).await?;
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
                    // The script adds Redis's time.
                    let message = format!(
                        "{} hb:{} {now}",
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
                let now = view.redis_now();
                for followed in write(&view.issuers).values_mut() {
                    followed.markers.prune(now);
                }
            }
        }
    }
}

/// Publish one heartbeat from where the issuer's markers are published (on a Cluster, the
/// issuer's slot), through the script that adds Redis's time to it.
async fn send_heartbeat(
    conn: &mut RedisConnection,
    script: &redis::Script,
    prefix: &str,
    issuer: &str,
    channel: &str,
    message: String,
) -> redis::RedisResult<()> {
    let _: i64 = script
        .key(IssuerKeys::new(prefix, issuer).markers())
        .arg(channel)
        .arg(message)
        .invoke_async(conn)
        .await?;
    Ok(())
}

/// Read Redis's time once, to know the offset before the first heartbeat is back.
async fn read_redis_time(view: &Shared, conn: &mut RedisConnection) -> Result<(), StoreError> {
    let sent = unix_now_ms();
    let (secs, micros): (u64, u64) = redis::cmd("TIME")
        .query_async(conn)
        .await
        .or_unavailable()?;
    let back = unix_now_ms();
    view.learn_offset(
        sent,
        secs.saturating_mul(1000).saturating_add(micros / 1000),
        back,
    );
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
        let markers = Markers::from_fields(fields, view.redis_now());
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
/// `<encoded issuer> hb:<nonce> <sent ms> <Redis's time in ms>`.
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
    let own_heartbeat = field.strip_prefix("hb:").map(|nonce| nonce == view.nonce);
    if own_heartbeat == Some(true) {
        // `iat` is when it left, `expires_at` Redis's time as it passed.
        view.learn_offset(marker.iat, marker.expires_at, unix_now_ms());
    }
    let now = view.redis_now();
    let mut issuers = write(&view.issuers);
    let Some(followed) = issuers.get_mut(&issuer) else {
        return;
    };
    match own_heartbeat {
        Some(true) => followed.fresh_as_of_ms = followed.fresh_as_of_ms.max(marker.iat),
        Some(false) => {}
        None => followed.markers.apply(field, marker, now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_is_taken_at_the_middle_of_the_round_trip() {
        // Redis's clock a minute ahead; read 4 ms after sending, answered 6 ms later.
        assert_eq!(offset_of(1_000, 61_004, 1_010), Some(59_999));
        // A minute behind.
        assert_eq!(offset_of(100_000, 40_002, 100_004), Some(-60_000));
        assert_eq!(offset_of(10, 5, 9), None, "back before it left");
        assert_eq!(
            offset_of(0, 5, 10_000),
            None,
            "a round trip too long to say much"
        );
        assert_eq!(redis_time_ms(1_000, -400), 600);
        assert_eq!(redis_time_ms(100, -400), 0);
    }
}
