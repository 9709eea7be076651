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
//! sends `PING` on the subscribed connection. Redis answers in order, so when the `PONG` comes
//! back every marker published before the `PING` reached Redis has already arrived, and the task
//! applies those before it moves the view's *fresh as of* time to when it sent the `PING`. The
//! view answers only while that time is within `max_staleness` (default 1 s) of now; otherwise
//! — the connection broke, Redis stalled, the task fell behind — the caller asks Redis. So an
//! answer from memory reflects every logout Redis acknowledged more than `max_staleness` ago,
//! and in practice every logout acknowledged before the message crossed the network (about a
//! millisecond on one host).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::{FutureExt as _, StreamExt as _};

use super::connection::{RedisConnection, RedisTarget};
use super::keys::{IssuerKeys, decode_component, ended_channel};
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
    /// The markers of each issuer whose hash was read since the subscription started.
    issuers: RwLock<HashMap<String, Markers>>,
    /// Issuers asked about and not yet read.
    wanted: Mutex<HashSet<String>>,
    wake: tokio::sync::Notify,
    /// Milliseconds since the epoch as of which every published marker has been applied; 0
    /// while out of sync.
    fresh_as_of_ms: AtomicU64,
    max_staleness_ms: u64,
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
            fresh_as_of_ms: AtomicU64::new(0),
            max_staleness_ms: u64::try_from(max_staleness.as_millis()).unwrap_or(u64::MAX),
        });
        runtime.spawn(run(Arc::downgrade(&shared), target, prefix, max_staleness));
        Self { shared }
    }

    /// `Ended` or `Active` for a registered session, from memory; `None` when the view is not
    /// current or does not follow the session's issuer yet (it will from now on).
    pub(super) fn known_state(&self, session: &SessionKey<'_>) -> Option<SessionState> {
        let fresh = self.shared.fresh_as_of_ms.load(Ordering::Acquire);
        if fresh == 0 || unix_now_ms().saturating_sub(fresh) > self.shared.max_staleness_ms {
            return None;
        }
        {
            let issuers = read(&self.shared.issuers);
            if let Some(markers) = issuers.get(session.issuer) {
                return Some(if markers.covers(session, unix_now()) {
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
    let ping_every =
        (max_staleness / 4).clamp(Duration::from_millis(10), Duration::from_millis(200));
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(view) = shared.upgrade() else { return };
        match follow(&view, &target, &prefix, ping_every, max_staleness).await {
            Ok(()) => return,
            Err(error) => {
                view.fresh_as_of_ms.store(0, Ordering::Release);
                tracing::warn!(%error, "lost the logout markers' channel; sessions are checked in Redis until it is back");
            }
        }
        drop(view);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// One subscription's life: subscribe, read every followed issuer, then apply messages and keep
/// the freshness time moving. Returns `Ok` when the view is no longer used.
async fn follow(
    view: &Arc<Shared>,
    target: &RedisTarget,
    prefix: &str,
    ping_every: Duration,
    max_staleness: Duration,
) -> Result<(), StoreError> {
    let mut pubsub = target.pubsub().await?;
    pubsub
        .subscribe(ended_channel(prefix))
        .await
        .or_unavailable()?;
    let (mut sink, mut messages) = pubsub.split();
    let mut conn = target.connect().await?;
    // Everything read before this subscription may have missed messages: read it again.
    let followed: Vec<String> = read(&view.issuers).keys().cloned().collect();
    lock(&view.wanted).extend(followed);
    write(&view.issuers).clear();
    load_wanted(view, &mut conn, prefix).await?;
    let mut ping = tokio::time::interval(ping_every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
            _ = ping.tick() => {
                let sent = unix_now_ms();
                let pong: Result<Result<redis::Value, _>, _> =
                    tokio::time::timeout(max_staleness.max(Duration::from_millis(100)), sink.ping()).await;
                match pong {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => return Err(StoreError::Unavailable(error.to_string())),
                    Err(_) => return Err(StoreError::Unavailable("no answer to PING".into())),
                }
                // Markers published before the PING arrived before the PONG: apply them, then
                // the view is current as of when the PING left.
                while let Some(Some(message)) = messages.next().now_or_never() {
                    let payload: String = message.get_payload().unwrap_or_default();
                    apply(view, &payload);
                }
                view.fresh_as_of_ms.store(sent.max(1), Ordering::Release);
            }
            _ = prune.tick() => {
                let now = unix_now();
                for markers in write(&view.issuers).values_mut() {
                    markers.prune(now);
                }
            }
        }
    }
}

/// Read the marker hash of every issuer asked about since the last read.
async fn load_wanted(
    view: &Shared,
    conn: &mut RedisConnection,
    prefix: &str,
) -> Result<(), StoreError> {
    let wanted: Vec<String> = lock(&view.wanted).drain().collect();
    for issuer in wanted {
        let fields: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(IssuerKeys::new(prefix, &issuer).markers())
            .query_async(conn)
            .await
            .or_unavailable()
            .inspect_err(|_| {
                lock(&view.wanted).insert(issuer.clone());
            })?;
        let markers = Markers::from_fields(fields, unix_now());
        write(&view.issuers).insert(issuer, markers);
    }
    Ok(())
}

/// A published marker: `<encoded issuer> <field> <iat> <expires_at>`.
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
    if let Some(markers) = write(&view.issuers).get_mut(&issuer) {
        markers.apply(field, marker, unix_now());
    }
}
