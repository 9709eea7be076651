//! The access-token denylist: what makes a logged-out or disabled user's still-valid JWT access
//! tokens useless at every API instance within a second.
//!
//! Each ending of sessions by the receiver writes a revocation *marker* to Redis in the same
//! script that ends them (`docs/redis-schema.md`): "tokens of (issuer, sid) issued at or before
//! T", "tokens of (issuer, sub) issued at or before T", or "the token (issuer, jti)". A marker
//! lives as long as an access token of that issuer can (`access_token_lifetime`) and is announced
//! on a Redis channel. A [`Denylist`] keeps every live marker in memory, so [`Denylist::check`] is
//! a few hash lookups with no network round trip; [`sync`] keeps it current from the channel and
//! reloads everything after a dropped subscription, and [`layer`] is the tower layer that refuses
//! requests with it.

pub mod layer;
pub mod sync;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

pub use layer::{AccessTokenValidator, DenylistLayer, RevocationClaims};
pub use sync::DenylistSettings;

/// What a marker revokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[doc(hidden)]
pub enum Kind {
    /// Tokens of one OP session (`sid`).
    Sid,
    /// Tokens of one user (`sub`).
    Sub,
    /// One token (`jti`).
    Jti,
}

impl Kind {
    /// The prefix of the marker's field name in Redis.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Sid => "sid",
            Self::Sub => "sub",
            Self::Jti => "jti",
        }
    }

    fn parse(prefix: &str) -> Option<Self> {
        match prefix {
            "sid" => Some(Self::Sid),
            "sub" => Some(Self::Sub),
            "jti" => Some(Self::Jti),
            _ => None,
        }
    }
}

/// One revocation: tokens issued at or before `revoked_at` are refused until `expires_at` (both
/// seconds since the epoch, on the OP's clock for `revoked_at`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[doc(hidden)]
pub struct Marker {
    /// Tokens with `iat` up to this are refused.
    pub revoked_at: u64,
    /// After this, no token the marker covers can still be valid: the marker is forgotten.
    pub expires_at: u64,
}

impl Marker {
    /// The later of two markers for the same subject.
    fn merge(self, other: Self) -> Self {
        Self {
            revoked_at: self.revoked_at.max(other.revoked_at),
            expires_at: self.expires_at.max(other.expires_at),
        }
    }
}

/// The claims of an access token that the denylist looks at.
#[derive(Debug, Clone, Copy)]
pub struct TokenFacts<'a> {
    /// `iss`.
    pub issuer: &'a str,
    /// `sub`, if any.
    pub sub: Option<&'a str>,
    /// `sid`, if any (Keycloak, Auth0 and others put it in access tokens).
    pub sid: Option<&'a str>,
    /// `jti`, if any.
    pub jti: Option<&'a str>,
    /// `iat`; a token without one counts as issued at 0, so any marker covers it.
    pub issued_at: u64,
}

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Its OP session was logged out after it was issued.
    #[error("the session of this token was ended")]
    SessionEnded,
    /// Its user was logged out everywhere or disabled after it was issued.
    #[error("the user of this token was logged out or disabled")]
    UserRevoked,
    /// The token itself was revoked.
    #[error("this token was revoked")]
    TokenRevoked,
    /// This instance cannot confirm it has every revocation, for longer than allowed, and is
    /// configured to fail closed.
    #[error("revocations cannot be confirmed right now")]
    NotInSync,
}

/// What an instance does while it cannot confirm it is in sync with Redis for longer than
/// [`DenylistSettings::max_unsynced`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailMode {
    /// Refuse every token (503): no revoked token slips through, and nothing works.
    Closed,
    /// Check against the markers it has: tokens revoked during the gap may pass.
    Open,
}

/// Markers of one kind by subject. foldhash rather than SipHash: the check is a few lookups per
/// request, and the keys come from signed logouts, not from the requests.
type Map = HashMap<Box<str>, Marker, foldhash::fast::RandomState>;

#[derive(Debug, Default)]
struct IssuerMarkers {
    sid: Map,
    sub: Map,
    jti: Map,
}

impl IssuerMarkers {
    fn map(&mut self, kind: Kind) -> &mut Map {
        match kind {
            Kind::Sid => &mut self.sid,
            Kind::Sub => &mut self.sub,
            Kind::Jti => &mut self.jti,
        }
    }

    fn len(&self) -> usize {
        self.sid.len() + self.sub.len() + self.jti.len()
    }
}

/// The live markers of every issuer, in memory, plus whether they are known to be complete.
/// Cheap to clone; clones share everything.
#[derive(Debug, Clone)]
pub struct Denylist {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    markers: RwLock<HashMap<Box<str>, IssuerMarkers, foldhash::fast::RandomState>>,
    fail_mode: FailMode,
    max_unsynced: Duration,
    /// Set while the subscription is up and the last reload succeeded.
    in_sync: AtomicBool,
    /// Milliseconds since `epoch` at which the instance last lost sync.
    unsynced_since_ms: AtomicU64,
    epoch: Instant,
    /// Markers applied from the channel or a reload.
    applied: AtomicU64,
    /// Full reloads (the first load included).
    reloads: AtomicU64,
    /// Checks decided while out of sync for longer than allowed (refused or let through,
    /// depending on the fail mode).
    unsynced_checks: AtomicU64,
}

impl Denylist {
    /// An empty denylist, not yet in sync: [`sync::start`] fills it and keeps it current. Until
    /// then (and whenever sync is lost for longer than `max_unsynced`) `fail_mode` decides.
    pub fn new(fail_mode: FailMode, max_unsynced: Duration) -> Self {
        let epoch = Instant::now();
        Self {
            shared: Arc::new(Shared {
                markers: RwLock::default(),
                fail_mode,
                max_unsynced,
                in_sync: AtomicBool::new(false),
                unsynced_since_ms: AtomicU64::new(0),
                epoch,
                applied: AtomicU64::new(0),
                reloads: AtomicU64::new(0),
                unsynced_checks: AtomicU64::new(0),
            }),
        }
    }

    /// Whether `token` may be used now.
    pub fn check(&self, token: &TokenFacts<'_>) -> Result<(), Refusal> {
        // The clock is read only when a marker matches: most checks find none.
        self.check_with(token, crate::sys::unix_now)
    }

    /// [`check`](Self::check) as of `now` (seconds since the epoch).
    pub fn check_at(&self, token: &TokenFacts<'_>, now: u64) -> Result<(), Refusal> {
        self.check_with(token, || now)
    }

    fn check_with(&self, token: &TokenFacts<'_>, now: impl Fn() -> u64) -> Result<(), Refusal> {
        if self.sync_lost_too_long() {
            self.shared.unsynced_checks.fetch_add(1, Ordering::Relaxed);
            if self.shared.fail_mode == FailMode::Closed {
                return Err(Refusal::NotInSync);
            }
        }
        let markers = self
            .shared
            .markers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(issuer) = markers.get(token.issuer) else {
            return Ok(());
        };
        let covers = |map: &Map, key: Option<&str>, any_age: bool| {
            if map.is_empty() {
                return false;
            }
            key.and_then(|k| map.get(k)).is_some_and(|m| {
                (any_age || token.issued_at <= m.revoked_at) && m.expires_at > now()
            })
        };
        if covers(&issuer.jti, token.jti, true) {
            return Err(Refusal::TokenRevoked);
        }
        if covers(&issuer.sid, token.sid, false) {
            return Err(Refusal::SessionEnded);
        }
        if covers(&issuer.sub, token.sub, false) {
            return Err(Refusal::UserRevoked);
        }
        Ok(())
    }

    /// Add a marker (merging with one already held for the same subject).
    pub fn apply(&self, issuer: &str, kind: Kind, value: &str, marker: Marker) {
        let mut markers = self
            .shared
            .markers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let map = markers.entry(issuer.into()).or_default().map(kind);
        let merged = map.get(value).map_or(marker, |held| held.merge(marker));
        map.insert(value.into(), merged);
        self.shared.applied.fetch_add(1, Ordering::Relaxed);
    }

    /// Replace one issuer's markers by a full snapshot, keeping any held marker that is later
    /// (one applied from the channel while the snapshot was being read).
    pub fn replace_issuer(&self, issuer: &str, snapshot: Vec<(Kind, String, Marker)>) {
        let mut fresh = IssuerMarkers::default();
        for (kind, value, marker) in snapshot {
            let map = fresh.map(kind);
            let merged = map
                .get(value.as_str())
                .map_or(marker, |held| held.merge(marker));
            map.insert(value.into_boxed_str(), merged);
        }
        let mut markers = self
            .shared
            .markers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(held) = markers.get(issuer) {
            for kind in [Kind::Sid, Kind::Sub, Kind::Jti] {
                let held_map = match kind {
                    Kind::Sid => &held.sid,
                    Kind::Sub => &held.sub,
                    Kind::Jti => &held.jti,
                };
                for (value, marker) in held_map {
                    let map = fresh.map(kind);
                    let merged = map.get(value).map_or(*marker, |m| m.merge(*marker));
                    map.insert(value.clone(), merged);
                }
            }
        }
        markers.insert(issuer.into(), fresh);
    }

    /// Forget markers that expired before `now`.
    pub fn prune(&self, now: u64) {
        let mut markers = self
            .shared
            .markers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for issuer in markers.values_mut() {
            for kind in [Kind::Sid, Kind::Sub, Kind::Jti] {
                issuer.map(kind).retain(|_, m| m.expires_at > now);
            }
        }
        markers.retain(|_, issuer| issuer.len() > 0);
    }

    /// How many markers are held.
    pub fn len(&self) -> usize {
        self.shared
            .markers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .map(IssuerMarkers::len)
            .sum()
    }

    /// Whether no marker is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the subscription is up and the last reload succeeded.
    pub fn in_sync(&self) -> bool {
        self.shared.in_sync.load(Ordering::Acquire)
    }

    /// How long this instance has been unable to confirm it is in sync (`None` when in sync).
    pub fn unsynced_for(&self) -> Option<Duration> {
        if self.in_sync() {
            return None;
        }
        let since = Duration::from_millis(self.shared.unsynced_since_ms.load(Ordering::Acquire));
        Some(self.shared.epoch.elapsed().saturating_sub(since))
    }

    /// Markers applied so far, and full reloads done.
    pub fn counters(&self) -> (u64, u64) {
        (
            self.shared.applied.load(Ordering::Relaxed),
            self.shared.reloads.load(Ordering::Relaxed),
        )
    }

    /// Checks decided while out of sync for longer than `max_unsynced`: refused when failing
    /// closed, let through unconfirmed when failing open. Watch it: it should stay at zero.
    pub fn unsynced_checks(&self) -> u64 {
        self.shared.unsynced_checks.load(Ordering::Relaxed)
    }

    /// Whether the gap in sync is longer than `max_unsynced` (the fail mode applies).
    pub fn sync_lost_too_long(&self) -> bool {
        self.unsynced_for()
            .is_some_and(|gap| gap > self.shared.max_unsynced)
    }

    pub(crate) fn set_in_sync(&self) {
        self.shared.reloads.fetch_add(1, Ordering::Relaxed);
        self.shared.in_sync.store(true, Ordering::Release);
    }

    pub(crate) fn set_unsynced(&self) {
        if self.shared.in_sync.swap(false, Ordering::AcqRel) {
            let now = u64::try_from(self.shared.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.shared.unsynced_since_ms.store(now, Ordering::Release);
        }
    }
}

/// Parse a marker field `<kind>:<encoded value>` and value `<revoked_at> <expires_at>`.
pub(crate) fn parse_marker(field: &str, value: &str) -> Option<(Kind, String, Marker)> {
    let (kind, encoded) = field.split_once(':')?;
    let kind = Kind::parse(kind)?;
    let (revoked_at, expires_at) = value.split_once(' ')?;
    Some((
        kind,
        crate::index::decode_component(encoded),
        Marker {
            revoked_at: revoked_at.parse().ok()?,
            expires_at: expires_at.parse().ok()?,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(sub: &'a str, sid: Option<&'a str>, iat: u64) -> TokenFacts<'a> {
        TokenFacts {
            issuer: "iss",
            sub: Some(sub),
            sid,
            jti: Some("j"),
            issued_at: iat,
        }
    }

    #[test]
    fn markers_refuse_older_tokens_until_they_expire() {
        let d = Denylist::new(FailMode::Open, Duration::from_secs(5));
        let m = Marker {
            revoked_at: 100,
            expires_at: 200,
        };
        d.apply("iss", Kind::Sid, "s1", m);
        d.apply("iss", Kind::Sub, "bob", m);
        assert_eq!(
            d.check_at(&facts("alice", Some("s1"), 100), 150),
            Err(Refusal::SessionEnded)
        );
        assert_eq!(d.check_at(&facts("alice", Some("s1"), 101), 150), Ok(()));
        assert_eq!(d.check_at(&facts("alice", Some("s2"), 50), 150), Ok(()));
        assert_eq!(
            d.check_at(&facts("bob", None, 99), 150),
            Err(Refusal::UserRevoked)
        );
        assert_eq!(d.check_at(&facts("bob", None, 99), 200), Ok(()), "expired");
        d.apply("iss", Kind::Jti, "j", m);
        assert_eq!(
            d.check_at(&facts("carol", None, 150), 150),
            Err(Refusal::TokenRevoked)
        );
        d.prune(200);
        assert!(d.is_empty());
    }

    #[test]
    fn fail_closed_refuses_after_the_bound_only() {
        let d = Denylist::new(FailMode::Closed, Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(d.check_at(&facts("a", None, 1), 2), Err(Refusal::NotInSync));
        d.set_in_sync();
        assert_eq!(d.check_at(&facts("a", None, 1), 2), Ok(()));
        let open = Denylist::new(FailMode::Open, Duration::ZERO);
        assert_eq!(open.check_at(&facts("a", None, 1), 2), Ok(()));
    }

    #[test]
    fn marker_fields_parse() {
        let (kind, value, marker) = parse_marker("sub:a%20b", "10 20").unwrap();
        assert_eq!((kind, value.as_str()), (Kind::Sub, "a b"));
        assert_eq!(
            marker,
            Marker {
                revoked_at: 10,
                expires_at: 20
            }
        );
        assert!(parse_marker("nope:x", "1 2").is_none());
        assert!(parse_marker("sid:x", "1").is_none());
    }
}
