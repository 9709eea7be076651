//! The Redis backend of the session index: the index applications and receivers share.
//!
//! Each operation is one Lua script over the keys of a single issuer (one hash tag, see
//! [`keys`](super::keys)), so it is atomic on a single Redis and on a Cluster alike. The scripts
//! percent-encode inside Lua exactly as [`encode_component`](super::encode_component) does and
//! compute buckets with `redis.sha1hex` exactly as [`bucket`](super::bucket) does, so that they
//! can derive the keys of related sessions from what is stored.
//!
//! Layout version 2 (`docs/redis-schema.md`): a session is one field `<enc sub> <enc id>` of its
//! user's bucket hash `u:<bucket(enc sub)>`, value `<auth> <until> <enc sid>`; an OP session is
//! one field `<enc sid>` of `i:<bucket(enc sid)>`, value its users' encoded subs. What a logout
//! ended is remembered by its marker (`x`), which the scripts check before registering and
//! publish for the applications' in-memory view.

use std::time::Duration;

use secrecy::SecretString;

use super::connection::{RedisConnection, RedisTarget};
use super::follower::Follower;
use super::keys::{
    IssuerKeys, V1Keys, activity_key, decode_component, encode_component, ended_channel, record_key,
};
use super::lua::{Scripts, also, also_field, deny_field, millis};
use super::markers;
use super::{
    EventClaim, IndexSettings, Logout, LogoutOutcome, OrUnavailable as _, RecordStore,
    Registration, SessionIndex, SessionInfo, SessionKey, SessionRecord, SessionState, StoreError,
    Target,
};

/// The session index in Redis. Clones share one multiplexed connection that reconnects by
/// itself; while Redis is unreachable every call fails fast with [`StoreError::Unavailable`].
///
/// The first [`known_state`](SessionIndex::known_state) call starts following the logout
/// markers' channel, so that application instances answer "is this session ended?" from memory;
/// a receiver that never asks never follows.
#[derive(Clone)]
pub struct RedisIndex {
    conn: RedisConnection,
    settings: IndexSettings,
    shared: std::sync::Arc<Shared>,
}

struct Shared {
    target: RedisTarget,
    scripts: Scripts,
    v1: Option<super::legacy_v1::LegacyV1>,
    follower: std::sync::OnceLock<Follower>,
}

impl std::fmt::Debug for RedisIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisIndex")
            .field("prefix", &self.settings.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisIndex {
    /// Connect to one Redis (`redis://`, `rediss://` or `unix://` URL) and check that it answers.
    pub async fn connect(url: &str, settings: IndexSettings) -> Result<Self, StoreError> {
        Self::connect_to(&RedisTarget::Single(SecretString::from(url)), settings).await
    }

    /// Connect to Redis in any shape (one server, Cluster, Sentinel) and check that it answers.
    pub async fn connect_to(
        target: &RedisTarget,
        settings: IndexSettings,
    ) -> Result<Self, StoreError> {
        let conn = target.connect().await?;
        let shared = std::sync::Arc::new(Shared {
            target: target.clone(),
            scripts: Scripts::new(),
            v1: settings.legacy_v1.then(super::legacy_v1::LegacyV1::new),
            follower: std::sync::OnceLock::new(),
        });
        keep_alive(conn.clone(), std::sync::Arc::downgrade(&shared));
        Ok(Self {
            conn,
            settings,
            shared,
        })
    }

    fn keys(&self, issuer: &str) -> IssuerKeys {
        IssuerKeys::new(&self.settings.prefix, issuer)
    }

    /// The version 1 session key to consult too, when migrating (`""` otherwise).
    fn v1_session(&self, issuer: &str, session_id: &str) -> String {
        if self.settings.legacy_v1 {
            V1Keys::new(&self.settings.prefix, issuer).session(session_id)
        } else {
            String::new()
        }
    }

    /// `<prefix>v2:{<iss>}:`: every key of the issuer starts with it (one hash tag).
    #[cfg(feature = "scim")]
    pub(super) fn issuer_base(&self, issuer: &str) -> String {
        self.keys(issuer).base().to_owned()
    }

    /// A handle on the shared connection.
    #[cfg(feature = "scim")]
    pub(super) fn connection(&self) -> RedisConnection {
        self.conn.clone()
    }

    /// The scripts, compiled once.
    #[cfg(feature = "scim")]
    pub(super) fn scripts(&self) -> &Scripts {
        &self.shared.scripts
    }

    /// A marker this instance has just written, for its own view of logouts (if it follows
    /// them): a request that follows a logout here sees it at once.
    fn wrote(&self, issuer: &str, field: &str, iat: u64) {
        if let Some(follower) = self.shared.follower.get() {
            follower.wrote(issuer, field, iat, self.settings.marker_ttl);
        }
    }

    /// The follower of logout markers, started on first use (inside a Tokio runtime).
    fn follower(&self) -> Option<&Follower> {
        if let Some(follower) = self.shared.follower.get() {
            return Some(follower);
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        Some(self.shared.follower.get_or_init(|| {
            Follower::start(
                &runtime,
                self.shared.target.clone(),
                self.settings.prefix.clone(),
                self.settings.max_staleness,
            )
        }))
    }
}

impl RedisIndex {
    /// Run the event script: `verb` the claim of `key`.
    async fn event(
        &self,
        issuer: &str,
        key: &str,
        verb: &str,
        keep: Duration,
    ) -> Result<String, StoreError> {
        let mut inv = self.shared.scripts.event.prepare_invoke();
        inv.key(self.keys(issuer).event(key))
            .arg(verb)
            .arg(millis(keep));
        inv.invoke_async(&mut self.conn.clone())
            .await
            .or_unavailable()
    }
}

/// Ping Redis every second while any clone of the index lives. A command on a connection that
/// broke while idle (Redis restarted) fails, and is not sent again (a logout script that ran
/// would come back as a replay); the ping finds the break first, so the connection has been
/// re-established by the time the next logout arrives.
fn keep_alive(mut conn: RedisConnection, alive: std::sync::Weak<Shared>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while alive.strong_count() > 0 {
            every.tick().await;
            let ping: Result<(), _> = redis::cmd("PING").query_async(&mut conn).await;
            if let Err(error) = ping {
                tracing::debug!(%error, "Redis keep-alive ping failed; reconnecting");
            }
        }
    });
}

impl SessionIndex for RedisIndex {
    async fn register(&self, s: &SessionRecord) -> Result<Registration, StoreError> {
        super::check_record(s)?;
        let k = self.keys(&s.issuer);
        let esub = encode_component(&s.sub);
        let mut inv = self.shared.scripts.register.prepare_invoke();
        inv.key(k.markers())
            .key(k.user_bucket(&esub))
            .key(k.customer_bucket(&esub))
            .arg(k.base())
            .arg(&esub)
            .arg(s.sid.as_deref().map(encode_component).unwrap_or_default())
            .arg(s.auth_time)
            .arg(super::ceil_secs(s.ttl))
            .arg(encode_component(&s.session_id))
            .arg(self.v1_session(&s.issuer, &s.session_id))
            .arg(
                s.customer
                    .as_deref()
                    .map(encode_component)
                    .unwrap_or_default(),
            )
            .arg(self.settings.marker_ttl.as_secs().max(1));
        let registered: i64 = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .or_unavailable()?;
        Ok(if registered > 0 {
            Registration::Registered
        } else {
            Registration::LoggedOut
        })
    }

    async fn logout(&self, l: &Logout<'_>) -> Result<LogoutOutcome, StoreError> {
        // While migrating, end the sessions of the old layout first: it keeps no jti, so if
        // this step succeeds and the next fails, the OP's retry runs both again.
        let k = self.keys(l.issuer);
        let mut ended_v1 = Vec::new();
        if let Some(v1) = &self.shared.v1 {
            // A replay must not run the old layout's step again (its denylist marker would
            // be written anew).
            if let Some((jti, _)) = l.jti {
                let seen: bool = redis::cmd("EXISTS")
                    .arg(k.jti(jti))
                    .query_async(&mut self.conn.clone())
                    .await
                    .or_unavailable()?;
                if seen {
                    return Ok(LogoutOutcome::Replayed);
                }
            }
            ended_v1 = v1.logout(&mut self.conn.clone(), &self.settings, l).await?;
        }
        let (mode, sub, sid) = match l.target {
            Target::Sid { sid, sub: None } => ("sid", "", sid),
            Target::Sid {
                sid,
                sub: Some(sub),
            } => ("sidsub", sub, sid),
            Target::Sub { sub } => ("sub", sub, ""),
        };
        let (deny_from, deny_secs) = l
            .deny
            .map_or((0, 0), |d| (d.issued_until, d.lifetime.as_secs().max(1)));
        let (jti_key, jti_ttl, has_jti) = match l.jti {
            Some((jti, until_ms)) => (
                k.jti(jti),
                super::millis_until(until_ms, crate::sys::unix_now_ms()),
                "1",
            ),
            None => (k.jti(""), 1, "0"),
        };
        let mut inv = self.shared.scripts.logout.prepare_invoke();
        inv.key(jti_key)
            .key(k.markers())
            .key(k.marker_expiry())
            .key(k.deny())
            .key(k.deny_expiry())
            .arg(mode)
            .arg(l.issued_at)
            .arg(encode_component(sub))
            .arg(encode_component(sid))
            .arg(jti_ttl)
            .arg(self.settings.marker_ttl.as_secs().max(1))
            .arg(k.base())
            .arg(has_jti)
            .arg(deny_field(l))
            .arg(deny_secs)
            .arg(super::deny_channel(&self.settings.prefix))
            .arg(encode_component(l.issuer))
            .arg(deny_from)
            .arg(ended_channel(&self.settings.prefix))
            .arg(also(l));
        let reply: Vec<String> = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .or_unavailable()?;
        match reply.split_first() {
            Some((status, members)) if status == "ok" => {
                let field = match l.target {
                    Target::Sid { sid, sub: None } => markers::sid_field(sid),
                    Target::Sid {
                        sid,
                        sub: Some(sub),
                    } => markers::sid_sub_field(sid, sub),
                    Target::Sub { sub } => markers::sub_field(sub),
                };
                self.wrote(l.issuer, &field, l.issued_at);
                // The markers for the users beyond the OP session, when the token names the
                // user (otherwise they come with their messages).
                if let Some(field) = also_field(l) {
                    self.wrote(l.issuer, &field, l.issued_at);
                }
                let mut ended: Vec<String> = members.iter().map(|m| decode_component(m)).collect();
                for id in ended_v1 {
                    if !ended.contains(&id) {
                        ended.push(id);
                    }
                }
                Ok(LogoutOutcome::Applied { ended })
            }
            Some((status, _)) if status == "replay" => Ok(LogoutOutcome::Replayed),
            _ => Err(StoreError::Unexpected(format!(
                "logout script returned {reply:?}"
            ))),
        }
    }

    async fn end_session(
        &self,
        issuer: &str,
        session_id: &str,
        sub: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut ended_v1 = false;
        if let Some(v1) = &self.shared.v1 {
            ended_v1 = v1
                .end_session(&mut self.conn.clone(), &self.settings, issuer, session_id)
                .await?;
        }
        let k = self.keys(issuer);
        let mut inv = self.shared.scripts.end_session.prepare_invoke();
        inv.key(k.markers())
            .key(k.marker_expiry())
            .arg(k.base())
            .arg(encode_component(session_id))
            .arg(sub.map(encode_component).unwrap_or_default())
            .arg(self.settings.marker_ttl.as_secs().max(1))
            .arg(ended_channel(&self.settings.prefix))
            .arg(encode_component(issuer));
        let ended: i64 = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .or_unavailable()?;
        self.wrote(
            issuer,
            &markers::id_field(session_id),
            crate::sys::unix_now(),
        );
        Ok(ended == 1 || ended_v1)
    }

    async fn state(&self, s: &SessionKey<'_>) -> Result<SessionState, StoreError> {
        let k = self.keys(s.issuer);
        let esub = encode_component(s.sub);
        let mut inv = self.shared.scripts.state.prepare_invoke();
        inv.key(k.markers())
            .key(k.user_bucket(&esub))
            .arg(&esub)
            .arg(s.sid.map(encode_component).unwrap_or_default())
            .arg(s.auth_time)
            .arg(encode_component(s.session_id))
            .arg(self.v1_session(s.issuer, s.session_id));
        let state: String = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .or_unavailable()?;
        match state.as_str() {
            "active" => Ok(SessionState::Active),
            "ended" => Ok(SessionState::Ended),
            "unknown" => Ok(SessionState::Unknown),
            other => Err(StoreError::Unexpected(format!(
                "state script returned {other:?}"
            ))),
        }
    }

    fn known_state(&self, session: &SessionKey<'_>) -> Option<SessionState> {
        self.follower()?.known_state(session)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let pong: String = redis::cmd("PING")
            .query_async(&mut self.conn.clone())
            .await
            .or_unavailable()?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(StoreError::Unexpected(format!("PING answered {pong:?}")))
        }
    }

    async fn claim(&self, issuer: &str, name: &str, ttl: Duration) -> Result<bool, StoreError> {
        let taken: Option<String> = redis::cmd("SET")
            .arg(self.keys(issuer).lease(name))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl).max(1))
            .query_async(&mut self.conn.clone())
            .await
            .or_unavailable()?;
        Ok(taken.is_some())
    }

    async fn leased(&self, issuer: &str, name: &str) -> Result<bool, StoreError> {
        redis::cmd("EXISTS")
            .arg(self.keys(issuer).lease(name))
            .query_async(&mut self.conn.clone())
            .await
            .or_unavailable()
    }

    async fn claim_event(
        &self,
        issuer: &str,
        key: &str,
        lease: Duration,
    ) -> Result<EventClaim, StoreError> {
        match self.event(issuer, key, "claim", lease).await?.as_str() {
            "claimed" => Ok(EventClaim::Claimed),
            "busy" => Ok(EventClaim::Busy),
            "done" => Ok(EventClaim::Done),
            other => Err(StoreError::Unexpected(format!(
                "event script returned {other:?}"
            ))),
        }
    }

    async fn finish_event(&self, issuer: &str, key: &str, ttl: Duration) -> Result<(), StoreError> {
        self.event(issuer, key, "finish", ttl).await.map(drop)
    }

    async fn release_event(&self, issuer: &str, key: &str) -> Result<(), StoreError> {
        self.event(issuer, key, "release", Duration::ZERO)
            .await
            .map(drop)
    }

    async fn customer_of(&self, issuer: &str, sub: &str) -> Result<Option<String>, StoreError> {
        let esub = encode_component(sub);
        let mut inv = self.shared.scripts.customer.prepare_invoke();
        inv.key(self.keys(issuer).customer_bucket(&esub)).arg(&esub);
        let customer: Option<String> = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .or_unavailable()?;
        Ok(customer.map(|c| decode_component(&c)))
    }

    async fn op_session_users(&self, issuer: &str, sid: &str) -> Result<Vec<String>, StoreError> {
        let esid = encode_component(sid);
        let users: Option<String> = redis::cmd("HGET")
            .arg(self.keys(issuer).op_session_bucket(&esid))
            .arg(&esid)
            .query_async(&mut self.conn.clone())
            .await
            .or_unavailable()?;
        Ok(users
            .unwrap_or_default()
            .split_whitespace()
            .map(decode_component)
            .collect())
    }

    async fn sessions(&self, issuer: &str, sub: &str) -> Result<Vec<SessionInfo>, StoreError> {
        let k = self.keys(issuer);
        let esub = encode_component(sub);
        let mut inv = self.shared.scripts.sessions.prepare_invoke();
        inv.key(k.markers()).key(k.user_bucket(&esub)).arg(&esub);
        let rows: Vec<(String, String, u64, u64)> = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .or_unavailable()?;
        let mut found: Vec<SessionInfo> = rows
            .into_iter()
            .map(|(id, sid, auth_time, until)| SessionInfo {
                session_id: decode_component(&id),
                sid: (!sid.is_empty()).then(|| decode_component(&sid)),
                auth_time,
                indexed_until: until,
            })
            .collect();
        if let Some(v1) = &self.shared.v1 {
            for old in v1
                .sessions(&mut self.conn.clone(), &self.settings, issuer, sub)
                .await?
            {
                if !found.iter().any(|s| s.session_id == old.session_id) {
                    found.push(old);
                }
            }
        }
        found.sort_by(|a, b| (a.auth_time, &a.session_id).cmp(&(b.auth_time, &b.session_id)));
        Ok(found)
    }

    async fn record_activity(&self, entry: &[u8], keep: usize) -> Result<(), StoreError> {
        redis::cmd("XADD")
            .arg(activity_key(&self.settings.prefix))
            .arg("MAXLEN")
            .arg("~")
            .arg(keep)
            .arg("*")
            .arg("e")
            .arg(entry)
            .query_async::<String>(&mut self.conn.clone())
            .await
            .or_unavailable()
            .map(drop)
    }

    async fn activity(&self, count: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        // XREVRANGE key + - COUNT n: [[id, [field, value, …]], …], newest first.
        let rows: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XREVRANGE")
            .arg(activity_key(&self.settings.prefix))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.conn.clone())
            .await
            .or_unavailable()?;
        Ok(rows
            .into_iter()
            .filter_map(|(_, fields)| fields.into_iter().nth(1))
            .collect())
    }
}

impl RecordStore for RedisIndex {
    async fn create_record(
        &self,
        id: &str,
        data: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let stored: Option<String> = redis::cmd("SET")
            .arg(record_key(&self.settings.prefix, id))
            .arg(data)
            .arg("PX")
            .arg(millis(ttl))
            .arg("NX")
            .query_async(&mut self.conn.clone())
            .await
            .or_unavailable()?;
        Ok(stored.is_some())
    }

    async fn put_record(&self, id: &str, data: &[u8], ttl: Duration) -> Result<(), StoreError> {
        redis::cmd("SET")
            .arg(record_key(&self.settings.prefix, id))
            .arg(data)
            .arg("PX")
            .arg(millis(ttl))
            .query_async::<()>(&mut self.conn.clone())
            .await
            .or_unavailable()?;
        Ok(())
    }

    async fn put_record_unless_newer(
        &self,
        id: &str,
        data: &[u8],
        ttl: Duration,
        generation: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.shared
            .scripts
            .put_record
            .key(record_key(&self.settings.prefix, id))
            .arg(data)
            .arg(millis(ttl))
            .arg(generation)
            .invoke_async(&mut self.conn.clone())
            .await
            .or_unavailable()
    }

    async fn get_record(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        redis::cmd("GET")
            .arg(record_key(&self.settings.prefix, id))
            .query_async(&mut self.conn.clone())
            .await
            .or_unavailable()
    }

    async fn get_records(&self, ids: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // One MGET: on a Cluster the client splits it by slot (each record has a tag of its
        // own) and sends the parts to their nodes at once.
        let mut mget = redis::cmd("MGET");
        for id in ids {
            mget.arg(record_key(&self.settings.prefix, id));
        }
        mget.query_async(&mut self.conn.clone())
            .await
            .or_unavailable()
    }

    async fn delete_record(&self, id: &str) -> Result<(), StoreError> {
        redis::cmd("DEL")
            .arg(record_key(&self.settings.prefix, id))
            .query_async::<()>(&mut self.conn.clone())
            .await
            .or_unavailable()?;
        Ok(())
    }
}
