//! The Redis backend of the session index: the index applications and receivers share.
//!
//! Each operation is one Lua script over the keys of a single issuer (one hash tag, see
//! [`keys`](super::keys)), so it is atomic on a single Redis and on a Cluster alike. The scripts
//! percent-encode inside Lua exactly as [`encode_component`](super::encode_component) does, so
//! that they can derive the keys of related sessions from what is stored.

use std::time::Duration;

use redis::Script;
use secrecy::SecretString;

use super::connection::{RedisConnection, RedisTarget};
use super::keys::{IssuerKeys, decode_component, encode_component, record_key};
use super::{
    IndexSettings, Logout, LogoutOutcome, OrUnavailable as _, RecordStore, Registration,
    SessionIndex, SessionInfo, SessionRecord, SessionState, StoreError, Target,
};

/// Lua helper shared by the scripts: the same encoding as `encode_component`.
const LUA_ENCODE: &str = r#"
local function enc(s)
  if not string.find(s, '[^A-Za-z0-9%-%._~]') then return s end
  return (string.gsub(s, '[^A-Za-z0-9%-%._~]', function(c) return string.format('%%%02X', string.byte(c)) end))
end
local function extend(key, ms)
  local t = redis.call('PTTL', key)
  if t >= 0 and t < ms then redis.call('PEXPIRE', key, ms) end
  if t == -1 then redis.call('PEXPIRE', key, ms) end
end
"#;

/// KEYS: jti, index (sid or sub set), marker, deny hash, deny expiry set. ARGV: mode, iat, sub,
/// jti_ttl_ms, marker_ttl_ms, session prefix, sid prefix, sub prefix, now, has_jti, deny field
/// (empty: no denylist marker), deny lifetime (s), deny channel, encoded issuer, deny issued
/// until (s: tokens issued up to it are refused).
/// Returns `{'ok', <encoded ids of the sessions ended>...}`, or `{'replay'}` when the jti was
/// seen before.
const LUA_LOGOUT: &str = r#"
if ARGV[10] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then return {'replay'} end
local mode, iat, sub = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local ended = {'ok'}
-- Every member of the index set up to iat leaves it (ended, or stale), except in 'sidsub' mode
-- where sessions of other users stay: those are removed in one call after the loop. A logout by
-- sub leaves the ended sessions in their sid sets: each would cost a call per session, and any
-- later logout or registration touching that sid skips and removes such members.
local bulk = mode ~= 'sidsub'
local members = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', iat)
for _, m in ipairs(members) do
  local sk = ARGV[6] .. m
  local h = redis.call('HMGET', sk, 'sub', 'sid', 'ended')
  if not h[1] then
    if not bulk then redis.call('ZREM', KEYS[2], m) end
  elseif bulk or h[1] == sub then
    if not h[3] then
      redis.call('HSET', sk, 'ended', ARGV[9])
      table.insert(ended, m)
    end
    if mode ~= 'sub' then
      local subkey = ARGV[8] .. enc(h[1])
      if subkey ~= KEYS[2] then redis.call('ZREM', subkey, m) end
      if h[2] then
        local sidkey = ARGV[7] .. enc(h[2])
        if not (bulk and sidkey == KEYS[2]) then redis.call('ZREM', sidkey, m) end
      end
    elseif h[1] ~= sub then
      redis.call('ZREM', ARGV[8] .. enc(h[1]), m)
    end
  end
end
if bulk and #members > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', iat) end
local mttl = tonumber(ARGV[5])
if mode == 'sub' then
  local cur = tonumber(redis.call('GET', KEYS[3]) or '-1')
  if iat > cur then redis.call('SET', KEYS[3], iat, 'PX', mttl) else extend(KEYS[3], mttl) end
else
  local field = '*'
  if mode == 'sidsub' then field = 's:' .. sub end
  local cur = tonumber(redis.call('HGET', KEYS[3], field) or '-1')
  if iat > cur then redis.call('HSET', KEYS[3], field, iat) end
  extend(KEYS[3], mttl)
end
if ARGV[10] == '1' then redis.call('SET', KEYS[1], '1', 'PX', ARGV[4]) end
if ARGV[11] ~= '' then
  -- The access-token denylist marker: tokens of this sid (sub) issued up to iat are refused
  -- until iat + lifetime. Prune a few expired markers on the way.
  local field, now = ARGV[11], tonumber(ARGV[9])
  local old = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, 64)
  if #old > 0 then
    redis.call('HDEL', KEYS[4], unpack(old))
    redis.call('ZREM', KEYS[5], unpack(old))
  end
  local revoked = tonumber(ARGV[15])
  local expires = revoked + tonumber(ARGV[12])
  local held = redis.call('HGET', KEYS[4], field)
  if held then
    local r, e = string.match(held, '^(%d+) (%d+)$')
    if r then
      revoked = math.max(revoked, tonumber(r))
      expires = math.max(expires, tonumber(e))
    end
  end
  if expires > now then
    local value = string.format('%d %d', revoked, expires)
    redis.call('HSET', KEYS[4], field, value)
    redis.call('ZADD', KEYS[5], expires, field)
    extend(KEYS[4], (expires - now) * 1000)
    extend(KEYS[5], (expires - now) * 1000)
    redis.call('PUBLISH', ARGV[13], ARGV[14] .. ' ' .. field .. ' ' .. value)
  end
end
return ended
"#;

/// KEYS: session, sub set, sid set, sub marker, sid marker. ARGV: sub, sid, has_sid, auth,
/// ttl_ms, member, sid prefix, sub prefix, now.
/// Returns 1 when registered, 0 when a logout already covers the session.
const LUA_REGISTER: &str = r#"
local sub, sid, has_sid, auth, ttl = ARGV[1], ARGV[2], ARGV[3] == '1', tonumber(ARGV[4]), tonumber(ARGV[5])
local old = redis.call('HMGET', KEYS[1], 'ended', 'sub', 'sid', 'created')
if old[1] then return 0 end
local created = old[4] or ARGV[9]
local covered = false
local xs = redis.call('GET', KEYS[4])
if xs and tonumber(xs) >= auth then covered = true end
if has_sid and not covered then
  local x = redis.call('HMGET', KEYS[5], '*', 's:' .. sub)
  for i = 1, 2 do
    if x[i] and tonumber(x[i]) >= auth then covered = true end
  end
end
if old[2] and old[2] ~= sub then redis.call('ZREM', ARGV[8] .. enc(old[2]), ARGV[6]) end
if old[3] and ((not has_sid) or old[3] ~= sid) then redis.call('ZREM', ARGV[7] .. enc(old[3]), ARGV[6]) end
redis.call('DEL', KEYS[1])
if covered then
  redis.call('HSET', KEYS[1], 'sub', sub, 'auth', auth, 'ended', ARGV[9])
  if has_sid then redis.call('HSET', KEYS[1], 'sid', sid) end
  redis.call('PEXPIRE', KEYS[1], ttl)
  return 0
end
redis.call('HSET', KEYS[1], 'sub', sub, 'auth', auth, 'created', created, 'seen', ARGV[9])
if has_sid then redis.call('HSET', KEYS[1], 'sid', sid) end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], auth, ARGV[6])
extend(KEYS[2], ttl)
if has_sid then
  redis.call('ZADD', KEYS[3], auth, ARGV[6])
  extend(KEYS[3], ttl)
end
return 1
"#;

/// KEYS: session. ARGV: member, sid prefix, sub prefix, now, tombstone_ttl_ms.
/// Returns 1 when a live session was ended.
const LUA_END_SESSION: &str = r#"
local h = redis.call('HMGET', KEYS[1], 'sub', 'sid', 'ended')
if h[3] then return 0 end
redis.call('HSET', KEYS[1], 'ended', ARGV[4])
if not h[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return 0
end
redis.call('ZREM', ARGV[3] .. enc(h[1]), ARGV[1])
if h[2] then redis.call('ZREM', ARGV[2] .. enc(h[2]), ARGV[1]) end
return 1
"#;

/// KEYS: sub set. ARGV: session prefix, sub. Read-only.
/// Returns, per live session of the user: encoded id, sid ('' when none), auth, created, seen.
const LUA_SESSIONS: &str = r#"
local out = {}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local h = redis.call('HMGET', ARGV[1] .. m, 'sub', 'sid', 'auth', 'ended', 'created', 'seen')
  if h[1] == ARGV[2] and not h[4] then
    table.insert(out, {m, h[2] or '', h[3] or '0', h[5] or '0', h[6] or '0'})
  end
end
return out
"#;

/// The session index in Redis. Clones share one multiplexed connection that reconnects by
/// itself; while Redis is unreachable every call fails fast with [`StoreError::Unavailable`].
#[derive(Clone)]
pub struct RedisIndex {
    conn: RedisConnection,
    settings: IndexSettings,
    scripts: std::sync::Arc<Scripts>,
}

struct Scripts {
    logout: Script,
    register: Script,
    end_session: Script,
    sessions: Script,
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
        let script = |body: &str| Script::new(&format!("{LUA_ENCODE}\n{body}"));
        let scripts = std::sync::Arc::new(Scripts {
            logout: script(LUA_LOGOUT),
            register: script(LUA_REGISTER),
            end_session: script(LUA_END_SESSION),
            sessions: script(LUA_SESSIONS),
        });
        keep_alive(conn.clone(), std::sync::Arc::downgrade(&scripts));
        Ok(Self {
            conn,
            settings,
            scripts,
        })
    }

    fn keys(&self, issuer: &str) -> IssuerKeys {
        IssuerKeys::new(&self.settings.prefix, issuer)
    }
}

/// Ping Redis every second while any clone of the index lives. A command on a connection that
/// broke while idle (Redis restarted) fails, and is not sent again (a logout script that ran
/// would come back as a replay); the ping finds the break first, so the connection has been
/// re-established by the time the next logout arrives.
fn keep_alive(mut conn: RedisConnection, alive: std::sync::Weak<Scripts>) {
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

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl SessionIndex for RedisIndex {
    async fn register(&self, s: &SessionRecord) -> Result<Registration, StoreError> {
        let k = self.keys(&s.issuer);
        let sid = s.sid.as_deref().unwrap_or("");
        let has_sid = s.sid.is_some();
        let mut inv = self.scripts.register.prepare_invoke();
        inv.key(k.session(&s.session_id))
            .key(k.sub(&s.sub))
            // Without a sid, the sid keys are placeholders in the same slot that are never touched.
            .key(k.sid(sid))
            .key(k.sub_marker(&s.sub))
            .key(k.sid_marker(sid))
            .arg(&s.sub)
            .arg(sid)
            .arg(if has_sid { "1" } else { "0" })
            .arg(s.auth_time)
            .arg(millis(s.ttl))
            .arg(encode_component(&s.session_id))
            .arg(k.sid_prefix())
            .arg(k.sub_prefix())
            .arg(crate::sys::unix_now());
        let registered: i64 = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .or_unavailable()?;
        Ok(match registered {
            1 => Registration::Registered,
            _ => Registration::LoggedOut,
        })
    }

    async fn logout(&self, l: &Logout<'_>) -> Result<LogoutOutcome, StoreError> {
        let k = self.keys(l.issuer);
        let (mode, index, marker, sub) = match l.target {
            Target::Sid { sid, sub: None } => ("sid", k.sid(sid), k.sid_marker(sid), ""),
            Target::Sid {
                sid,
                sub: Some(sub),
            } => ("sidsub", k.sid(sid), k.sid_marker(sid), sub),
            Target::Sub { sub } => ("sub", k.sub(sub), k.sub_marker(sub), sub),
        };
        // A sid belongs to one user, so a (sid, sub) logout denies the sid's tokens.
        let deny_field = match (l.deny, l.target) {
            (None, _) => String::new(),
            (Some(_), Target::Sid { sid, .. }) => format!("sid:{}", encode_component(sid)),
            (Some(_), Target::Sub { sub }) => format!("sub:{}", encode_component(sub)),
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
        let mut inv = self.scripts.logout.prepare_invoke();
        inv.key(jti_key)
            .key(index)
            .key(marker)
            .key(k.deny())
            .key(k.deny_expiry())
            .arg(mode)
            .arg(l.issued_at)
            .arg(sub)
            .arg(jti_ttl)
            .arg(millis(self.settings.marker_ttl))
            .arg(k.session_prefix())
            .arg(k.sid_prefix())
            .arg(k.sub_prefix())
            .arg(crate::sys::unix_now())
            .arg(has_jti)
            .arg(deny_field)
            .arg(deny_secs)
            .arg(super::deny_channel(&self.settings.prefix))
            .arg(encode_component(l.issuer))
            .arg(deny_from);
        let reply: Vec<String> = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .or_unavailable()?;
        match reply.split_first() {
            Some((status, members)) if status == "ok" => Ok(LogoutOutcome::Applied {
                ended: members.iter().map(|m| decode_component(m)).collect(),
            }),
            Some((status, _)) if status == "replay" => Ok(LogoutOutcome::Replayed),
            _ => Err(StoreError::Unexpected(format!(
                "logout script returned {reply:?}"
            ))),
        }
    }

    async fn end_session(&self, issuer: &str, session_id: &str) -> Result<bool, StoreError> {
        let k = self.keys(issuer);
        let mut inv = self.scripts.end_session.prepare_invoke();
        inv.key(k.session(session_id))
            .arg(encode_component(session_id))
            .arg(k.sid_prefix())
            .arg(k.sub_prefix())
            .arg(crate::sys::unix_now())
            .arg(millis(self.settings.marker_ttl));
        let ended: i64 = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .or_unavailable()?;
        Ok(ended == 1)
    }

    async fn state(&self, issuer: &str, session_id: &str) -> Result<SessionState, StoreError> {
        let key = self.keys(issuer).session(session_id);
        let (sub, ended): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(key)
            .arg("sub")
            .arg("ended")
            .query_async(&mut self.conn.clone())
            .await
            .or_unavailable()?;
        Ok(match (sub, ended) {
            (_, Some(_)) => SessionState::Ended,
            (Some(_), None) => SessionState::Active,
            (None, None) => SessionState::Unknown,
        })
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

    async fn event_seen(&self, issuer: &str, id: &str) -> Result<bool, StoreError> {
        let found: bool = redis::cmd("EXISTS")
            .arg(self.keys(issuer).event(id))
            .query_async(&mut self.conn.clone())
            .await
            .or_unavailable()?;
        Ok(found)
    }

    async fn remember_event(
        &self,
        issuer: &str,
        id: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        redis::cmd("SET")
            .arg(self.keys(issuer).event(id))
            .arg("1")
            .arg("PX")
            .arg(millis(ttl))
            .query_async::<()>(&mut self.conn.clone())
            .await
            .or_unavailable()?;
        Ok(())
    }

    async fn sessions(&self, issuer: &str, sub: &str) -> Result<Vec<SessionInfo>, StoreError> {
        let k = self.keys(issuer);
        let mut inv = self.scripts.sessions.prepare_invoke();
        inv.key(k.sub(sub)).arg(k.session_prefix()).arg(sub);
        let rows: Vec<(String, String, u64, u64, u64)> = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .or_unavailable()?;
        Ok(rows
            .into_iter()
            .map(|(member, sid, auth_time, created, seen)| SessionInfo {
                session_id: decode_component(&member),
                sid: (!sid.is_empty()).then_some(sid),
                auth_time,
                created,
                seen,
            })
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
