//! The session index: which application sessions belong to which (issuer, sid) and (issuer, sub),
//! and which of them a logout has ended.
//!
//! Applications [`register`](SessionIndex::register) each session as a user logs in; the receiver
//! ends sessions with [`logout`](SessionIndex::logout). Two rules make a logout race-proof, and
//! both backends ([`RedisIndex`], [`MemoryIndex`]) implement them the same way:
//!
//! - A logout issued at time `T` ends every matching session authenticated at or before `T`, and
//!   leaves a marker so that such a session registered *later* (a login callback that was in
//!   flight) is refused. A session authenticated after `T` survives a replay or late delivery.
//! - An ended session stays ended for as long as it could have lived: the logout's
//!   marker outlives every session it ended, so a save by an in-flight request cannot
//!   bring one back.
//!
//! Because the markers alone say whether a session is ended, an application instance can answer
//! that from memory: [`SessionIndex::known_state`] does, where the backend keeps the markers
//! current (the memory backend always; the Redis backend by following the markers' channel).
//!
//! The `jti` of a logout token is recorded in the same atomic step that ends the sessions, so a
//! token is either fully applied and remembered, or neither: an OP retry after a failure is
//! processed, a replay after a success is refused.

#[cfg(feature = "redis")]
mod connection;
#[cfg(feature = "scim")]
pub(crate) mod directory;
#[cfg(feature = "redis")]
mod follower;
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
mod keys;
#[cfg(feature = "redis")]
mod legacy_v1;
#[cfg(feature = "redis")]
mod lua;
#[cfg(feature = "redis")]
mod managed;
mod markers;
mod memory;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis-sentinel")]
mod sentinel;

use std::future::Future;
use std::time::Duration;

#[cfg(feature = "redis")]
#[cfg(feature = "denylist")]
pub(crate) use connection::RedisConnection;
#[cfg(feature = "redis")]
pub use connection::RedisTarget;
#[cfg(feature = "redis")]
#[doc(hidden)]
pub use connection::{DEFAULT_SENTINEL_MASTER, redact_url};
// The SCIM input's user directory: how it is kept is the input's business.
#[cfg(feature = "scim")]
#[doc(hidden)]
pub use directory::{Found, Lookup, MemoryDirectory, Owner, ScimUser, UserDirectory, Written};
#[cfg(feature = "denylist")]
pub(crate) use keys::decode_component;
// The key layout's helpers: docs/redis-schema.md is the contract for other languages.
#[doc(hidden)]
pub use keys::{
    BUCKET_HEX, IssuerKeys, LAYOUT_VERSION, bucket, deny_channel, encode_component, ended_channel,
};
pub use memory::MemoryIndex;
#[cfg(feature = "redis")]
pub use redis::RedisIndex;

/// An application session as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The application's own session id (e.g. the tower-sessions id). Unique within the issuer.
    pub session_id: String,
    /// The issuer that authenticated the user (the ID token's `iss`).
    pub issuer: String,
    /// The user (the ID token's `sub`).
    pub sub: String,
    /// The OP session (the ID token's `sid`), when the OP sends one.
    pub sid: Option<String>,
    /// When the user authenticated at the OP, in seconds since the epoch (the ID token's
    /// `auth_time`, or its `iat` when the OP does not send `auth_time`).
    pub auth_time: u64,
    /// How long the session may live; the index forgets it after that.
    pub ttl: Duration,
    /// The customer the login belongs to, when the application's rules decided one
    /// ([`Policies`](crate::session_store::Policies)): senders scoped to a customer act only on
    /// the users of theirs. The index remembers a user's customer for as long as its sessions
    /// live, and [`IndexSettings::marker_ttl`] longer.
    pub customer: Option<String>,
}

impl SessionRecord {
    /// What identifies this session to [`SessionIndex::state`].
    pub fn key(&self) -> SessionKey<'_> {
        SessionKey {
            issuer: &self.issuer,
            session_id: &self.session_id,
            sub: &self.sub,
            sid: self.sid.as_deref(),
            auth_time: self.auth_time,
        }
    }
}

/// A registered session as a reader knows it (from the login its record holds): enough to find
/// its index entry and the logouts that would cover it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionKey<'a> {
    /// The issuer that authenticated the user.
    pub issuer: &'a str,
    /// The application's session id.
    pub session_id: &'a str,
    /// The user.
    pub sub: &'a str,
    /// The OP session, when the OP sent one.
    pub sid: Option<&'a str>,
    /// When the user authenticated, seconds since the epoch.
    pub auth_time: u64,
}

/// Which sessions a logout names (Back-Channel Logout §2.4, §2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Target<'a> {
    /// The sessions of (issuer, sid); with `sub`, only those whose user is `sub`.
    Sid {
        /// The OP session id.
        sid: &'a str,
        /// The user, when the token names one too.
        sub: Option<&'a str>,
    },
    /// Every session of (issuer, sub).
    Sub {
        /// The user.
        sub: &'a str,
    },
}

/// A logout to apply: who, which sessions, as of when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Logout<'a> {
    /// The issuer whose sessions are meant.
    pub issuer: &'a str,
    /// The sessions.
    pub target: Target<'a>,
    /// When the logout happened at the OP (the token's `iat`), seconds since the epoch.
    /// Sessions authenticated after this instant are not touched.
    pub issued_at: u64,
    /// The token id to remember, and until when (milliseconds since the epoch on this
    /// process's clock), so the same token is applied once only: see
    /// [`LogoutToken::remember_until_ms`](crate::logout_token::LogoutToken::remember_until_ms).
    pub jti: Option<(&'a str, u64)>,
    /// The access-token denylist marker to write for the logout's sid (or sub), if any. The
    /// memory backend keeps no markers (the denylist follows Redis).
    pub deny: Option<Deny>,
    /// What a [`Target::Sid`] logout ends besides the OP session's sessions (the issuer's
    /// setting); nothing for a [`Target::Sub`] one.
    pub sid_logout: SidLogout,
}

/// What a logout naming an OP session (`sid`) ends, per issuer. The users it reaches beyond
/// the OP session are the token's `sub`, or when it names none, every user the index lists in
/// that OP session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SidLogout {
    /// The sessions of that OP session only, as Back-Channel Logout §2.7 says (the default).
    #[default]
    Session,
    /// Those, and the same user's sessions registered without a `sid` (an OP that left it out
    /// of some ID tokens): a logout never passes them by.
    SessionAndSidless,
    /// Every session of the user, in every OP session (Duende's
    /// `BackchannelLogoutAllUserSessions`).
    User,
}

impl SidLogout {
    /// The setting's name, as written in the settings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::SessionAndSidless => "session_and_sidless",
            Self::User => "user",
        }
    }
}

/// An access-token denylist marker: tokens of the subject issued at or before `issued_until`
/// are refused for `lifetime` after it (as long as an access token of the issuer can live).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deny {
    /// Tokens with `iat` up to this (seconds since the epoch) are refused: the logout token's
    /// `iat`, or for a revocation that comes from no token, now plus the allowed clock skew.
    pub issued_until: u64,
    /// How long after `issued_until` the marker lasts.
    pub lifetime: Duration,
}

/// Whole seconds covering `d`, at least 1: an index entry outlives the session it registers.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs()
        .saturating_add(u64::from(d.subsec_nanos() > 0))
        .max(1)
}

/// Milliseconds from `now_ms` until `until_ms`, at least 1 (for a key's relative expiry).
pub(crate) fn millis_until(until_ms: u64, now_ms: u64) -> u64 {
    until_ms.saturating_sub(now_ms).max(1)
}

/// What [`SessionIndex::logout`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogoutOutcome {
    /// The logout was applied; these live sessions were ended (none when none was known).
    Applied {
        /// The ids of the sessions ended by this call.
        ended: Vec<String>,
    },
    /// The `jti` was applied before; nothing was changed.
    Replayed,
}

/// What [`SessionIndex::register`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Registration {
    /// The session is indexed and live.
    Registered,
    /// A logout already covers this session (it was ended, or its OP session or user was logged
    /// out at or after its authentication time). The application must treat the user as logged
    /// out.
    LoggedOut,
}

/// What [`SessionIndex::claim_event`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[doc(hidden)]
pub enum EventClaim {
    /// Nobody applied it yet: it is this caller's to apply.
    Claimed,
    /// Another delivery of it is being applied right now.
    Busy,
    /// It was applied before.
    Done,
}

/// A live session of a user, as [`SessionIndex::sessions`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The application's session id.
    pub session_id: String,
    /// The OP session, when the OP sent one.
    pub sid: Option<String>,
    /// When the user authenticated at the OP, seconds since the epoch.
    pub auth_time: u64,
    /// Until when the index keeps the session (seconds since the epoch) unless its application
    /// extends it: at least as long as the session can live.
    pub indexed_until: u64,
}

/// What the index knows of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionState {
    /// Registered and not ended.
    Active,
    /// Ended by a logout; stays so until its lifetime is over.
    Ended,
    /// Never registered, or its lifetime is over.
    Unknown,
}

/// Why the index could not do what was asked. Nothing is acknowledged on error: the caller must
/// assume the operation did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend (Redis) could not be reached or answered with an error. The message is the
    /// backend's; it is not repeated as a `source`, so an error chain prints it once.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// The backend answered something this version does not understand (a layout mismatch).
    #[error("session store answered unexpectedly: {0}")]
    Unexpected(String),
    /// The session record cannot be indexed (an empty issuer, user or session id, or an
    /// empty `sid`, which names no OP session): nothing was written.
    #[error("session record refused: {0}")]
    Invalid(&'static str),
}

/// Refuse a record that names no one: an empty key would gather unrelated sessions under it.
/// An OP that sends `"sid": ""` sends no OP session; the caller maps it to `None` first.
pub(crate) fn check_record(s: &SessionRecord) -> Result<(), StoreError> {
    if s.issuer.is_empty() {
        return Err(StoreError::Invalid("empty issuer"));
    }
    if s.sub.is_empty() {
        return Err(StoreError::Invalid("empty sub"));
    }
    if s.session_id.is_empty() {
        return Err(StoreError::Invalid("empty session id"));
    }
    if s.sid.as_deref() == Some("") {
        return Err(StoreError::Invalid("empty sid"));
    }
    if s.customer.as_deref() == Some("") {
        return Err(StoreError::Invalid("empty customer"));
    }
    Ok(())
}

/// Turns Redis errors into [`StoreError`]s inside the crate, keeping only their message: no type
/// of the `redis` crate is part of this API (not even through a `From` impl).
#[cfg(feature = "redis")]
pub(crate) trait OrUnavailable<T> {
    /// The result, with a Redis error as [`StoreError::Unavailable`].
    fn or_unavailable(self) -> Result<T, StoreError>;
}

#[cfg(feature = "redis")]
impl<T> OrUnavailable<T> for Result<T, ::redis::RedisError> {
    fn or_unavailable(self) -> Result<T, StoreError> {
        self.map_err(|error| StoreError::Unavailable(error.to_string()))
    }
}

/// The operations applications and receivers share. Both backends are cheap to clone and share
/// their state between clones.
pub trait SessionIndex: Clone + Send + Sync + 'static {
    /// Index a session under (issuer, sid) and (issuer, sub). Registering the same id again
    /// updates it (for example after the user re-authenticated), unless it was ended.
    fn register(
        &self,
        session: &SessionRecord,
    ) -> impl Future<Output = Result<Registration, StoreError>> + Send;

    /// End the sessions a logout names, atomically with recording its `jti`.
    fn logout(
        &self,
        logout: &Logout<'_>,
    ) -> impl Future<Output = Result<LogoutOutcome, StoreError>> + Send;

    /// End one session by its id (the application's own logout button). Returns whether a live
    /// session was ended. Leaves a marker for the id even when the session is unknown (for the
    /// session's lifetime, or `marker_ttl`), so that a save in flight cannot bring it back. The
    /// `sub` finds the index entry to remove; without it (an operator who knows only the id) the
    /// entry stays until it expires, ended by the marker, and the answer is `false`.
    fn end_session(
        &self,
        issuer: &str,
        session_id: &str,
        sub: Option<&str>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Whether a session is live, ended, or unknown, asking the backend (one round trip).
    fn state(
        &self,
        session: &SessionKey<'_>,
    ) -> impl Future<Output = Result<SessionState, StoreError>> + Send;

    /// Whether a session that was registered and has not expired is ended, answered from this
    /// process's memory without a round trip: `Some(Ended)` or `Some(Active)` when the backend's
    /// view of logouts is current (within its staleness bound), `None` when it cannot say and
    /// [`state`](Self::state) must be asked. The memory backend always answers; the Redis backend
    /// answers once it follows the issuer's markers (it starts following on the first call).
    fn known_state(&self, session: &SessionKey<'_>) -> Option<SessionState> {
        let _ = session;
        None
    }

    /// Check that the backend answers (for startup and readiness).
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Take the lease `name` of `issuer` for `ttl` unless someone holds it; `true` when taken.
    /// Instances use it so that one of them at a time does a piece of work (one revalidation of
    /// a session at the OP). A lease is not given back: it runs out.
    fn claim(
        &self,
        issuer: &str,
        name: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Whether someone holds the lease `name` of `issuer`.
    fn leased(
        &self,
        issuer: &str,
        name: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Claim an event: `key` names it within `issuer` (the core namespaces it by sender). The
    /// claim holds for `lease` unless [finished](Self::finish_event) or
    /// [released](Self::release_event) before, so that a process that dies while applying it
    /// does not block the sender's retry for long.
    fn claim_event(
        &self,
        issuer: &str,
        key: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<EventClaim, StoreError>> + Send;

    /// Remember a claimed event as applied, for `ttl`.
    fn finish_event(
        &self,
        issuer: &str,
        key: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Give a claim back after a failure, so that the sender's retry applies the event.
    fn release_event(
        &self,
        issuer: &str,
        key: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The customer a user last logged in as (see [`SessionRecord::customer`]), while the
    /// index remembers it.
    fn customer_of(
        &self,
        issuer: &str,
        sub: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// The users with a session in the OP session `sid`.
    fn op_session_users(
        &self,
        issuer: &str,
        sid: &str,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// The live sessions of (issuer, sub), oldest authentication first.
    fn sessions(
        &self,
        issuer: &str,
        sub: &str,
    ) -> impl Future<Output = Result<Vec<SessionInfo>, StoreError>> + Send;

    /// Append `entry` to the activity list (the core's audit entries, for the console),
    /// keeping about the latest `keep`. Backends that keep none accept and drop it.
    fn record_activity(
        &self,
        entry: &[u8],
        keep: usize,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = (entry, keep);
        std::future::ready(Ok(()))
    }

    /// The latest `count` entries of the activity list, newest first.
    fn activity(
        &self,
        count: usize,
    ) -> impl Future<Output = Result<Vec<Vec<u8>>, StoreError>> + Send {
        let _ = count;
        std::future::ready(Ok(Vec::new()))
    }
}

/// Where application session data lives: opaque bytes under the application's session id, with
/// an expiry. The [`session_store`](crate::session_store) keeps tower-sessions records here; the
/// index decides whether a record may still be used.
pub trait RecordStore: Clone + Send + Sync + 'static {
    /// Store `data` under `id` only if no record has that id. Returns whether it was stored.
    fn create_record(
        &self,
        id: &str,
        data: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Store `data` under `id`, replacing any record.
    fn put_record(
        &self,
        id: &str,
        data: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Store `data` under `id` unless the record stored there holds a later `generation` of
    /// its login (the count of [`Login::update_in`](crate::session_store::Login::update_in)):
    /// then nothing is written and the stored record is returned. A refresh's new tokens are
    /// never replaced by the older ones of a request that loaded the session before it.
    fn put_record_unless_newer(
        &self,
        id: &str,
        data: &[u8],
        ttl: Duration,
        generation: u64,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;

    /// The record under `id`, if it exists and has not expired.
    fn get_record(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;

    /// The records under `ids`, in order, in one round trip (`None` for each missing one).
    fn get_records(
        &self,
        ids: &[String],
    ) -> impl Future<Output = Result<Vec<Option<Vec<u8>>>, StoreError>> + Send;

    /// Remove the record under `id`.
    fn delete_record(&self, id: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The generation of the login a stored record holds (0 for none): the field `generation` of
/// `data["oidc_logout.login"]`, as `lua/put_record.lua` reads it.
pub(crate) fn stored_generation(record: &[u8]) -> u64 {
    #[derive(serde::Deserialize)]
    struct Record {
        data: Data,
    }
    #[derive(serde::Deserialize)]
    struct Data {
        #[serde(rename = "oidc_logout.login")]
        login: Option<Login>,
    }
    #[derive(serde::Deserialize)]
    struct Login {
        #[serde(default)]
        generation: u64,
    }
    serde_json::from_slice::<Record>(record)
        .ok()
        .and_then(|r| r.data.login)
        .map_or(0, |l| l.generation)
}

/// Settings both backends share. Start from [`Default`] and change what differs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IndexSettings {
    /// Prepended to every Redis key (default `oidc-logout:`). Must not contain `{` or `}`.
    pub prefix: String,
    /// How long a logout's marker refuses late registrations of the sessions it covers, and how
    /// long the marker of a session ended by id lasts when its lifetime is unknown. A marker
    /// always outlives the sessions it ended; this is its least lifetime.
    pub marker_ttl: Duration,
    /// Also end sessions in the version 1 layout, and read them when a session is not found in
    /// version 2, while applications move from an older release (`docs/redis-schema.md`,
    /// "Moving from v1"). Off by default.
    pub legacy_v1: bool,
    /// How stale the in-memory view of logouts may be before [`SessionIndex::known_state`]
    /// stops answering and readers ask Redis (default 1 s). It bounds how long a logout that
    /// did not reach an instance (a silently broken connection) can go unnoticed there.
    pub max_staleness: Duration,
}

impl IndexSettings {
    /// Prepend `prefix` to every Redis key (no `{` or `}`).
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long logout markers refuse late registrations, at least.
    #[must_use]
    pub fn with_marker_ttl(mut self, ttl: Duration) -> Self {
        self.marker_ttl = ttl;
        self
    }

    /// Keep serving the version 1 layout during a migration (see [`legacy_v1`](Self::legacy_v1)).
    #[must_use]
    pub fn with_legacy_v1(mut self, on: bool) -> Self {
        self.legacy_v1 = on;
        self
    }

    /// How stale the in-memory view of logouts may become before readers ask Redis.
    #[must_use]
    pub fn with_max_staleness(mut self, staleness: Duration) -> Self {
        self.max_staleness = staleness;
        self
    }
}

impl Default for IndexSettings {
    fn default() -> Self {
        Self {
            prefix: "oidc-logout:".to_owned(),
            marker_ttl: Duration::from_secs(24 * 3600),
            legacy_v1: false,
            max_staleness: Duration::from_secs(1),
        }
    }
}
