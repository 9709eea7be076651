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

use redis::Script;
use secrecy::SecretString;

use super::connection::{RedisConnection, RedisTarget};
use super::follower::Follower;
use super::keys::{
    IssuerKeys, V1Keys, decode_component, encode_component, ended_channel, record_key,
};
use super::markers::{self, Marker};
use super::{
    IndexSettings, Logout, LogoutOutcome, OrUnavailable as _, RecordStore, Registration,
    SessionIndex, SessionInfo, SessionKey, SessionRecord, SessionState, StoreError, Target,
};

/// Lua helpers shared by the scripts: the encoding of `encode_component`, buckets, entries.
pub(super) const LUA_HELPERS: &str = r#"
local function enc(s)
  if not string.find(s, '[^A-Za-z0-9%-%._~]') then return s end
  return (string.gsub(s, '[^A-Za-z0-9%-%._~]', function(c) return string.format('%%%02X', string.byte(c)) end))
end
local function extend(key, ms)
  local t = redis.call('PTTL', key)
  if t >= 0 and t < ms then redis.call('PEXPIRE', key, ms) end
  if t == -1 then redis.call('PEXPIRE', key, ms) end
end
-- The access-token denylist marker `field` of hash `h` (by expiry in sorted set `z`): tokens
-- issued up to `revoked` are refused until `revoked + lifetime`, each the later of the new and
-- any held value; a few expired markers are pruned on the way; published as
-- `<eiss> <field> <revoked> <expires>` on `channel`.
local function deny(h, z, field, revoked, lifetime, now, channel, eiss)
  local old = redis.call('ZRANGEBYSCORE', z, '-inf', now, 'LIMIT', 0, 64)
  if #old > 0 then
    redis.call('HDEL', h, unpack(old))
    redis.call('ZREM', z, unpack(old))
  end
  local expires = revoked + lifetime
  local held = redis.call('HGET', h, field)
  if held then
    local r, e = string.match(held, '^(%d+) (%d+)$')
    if r then
      revoked = math.max(revoked, tonumber(r))
      expires = math.max(expires, tonumber(e))
    end
  end
  if expires > now then
    local value = string.format('%d %d', revoked, expires)
    redis.call('HSET', h, field, value)
    redis.call('ZADD', z, expires, field)
    extend(h, (expires - now) * 1000)
    extend(z, (expires - now) * 1000)
    redis.call('PUBLISH', channel, eiss .. ' ' .. field .. ' ' .. value)
  end
end
local function bucket(e) return string.sub(redis.sha1hex(e), 1, 4) end
-- Redis's clock, so that every instance prunes and expires by the same time.
local function clock() return tonumber(redis.call('TIME')[1]) end
-- An entry's value: '<auth> <until>' or '<auth> <until> <enc sid>'.
local function entry(v)
  local a, u, s = string.match(v, '^(%d+) (%d+) ?(%S*)$')
  return tonumber(a) or 0, tonumber(u) or 0, s or ''
end
-- Remove one user from an OP session's list of users.
local function sid_remove(base, esid, esub)
  local k = base .. 'i:' .. bucket(esid)
  local cur = redis.call('HGET', k, esid)
  if not cur then return end
  local rest = {}
  for w in string.gmatch(cur, '%S+') do if w ~= esub then table.insert(rest, w) end end
  if #rest == 0 then redis.call('HDEL', k, esid) else redis.call('HSET', k, esid, table.concat(rest, ' ')) end
end
-- Whether the user (encoded) has a live entry in OP session esid.
local function uses_sid(base, esub, esid, now)
  local pre = esub .. ' '
  local all = redis.call('HGETALL', base .. 'u:' .. bucket(esub))
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, #pre) == pre then
      local _, u, s = entry(all[i + 1])
      if s == esid and u > now then return true end
    end
  end
  return false
end
-- Check a few OP sessions of an i: bucket, and forget the users that no longer have a live
-- entry in them (their sessions expired without a logout).
local function prune_sids(k, base, now)
  local sample = redis.call('HRANDFIELD', k, 2, 'WITHVALUES')
  for i = 1, #sample, 2 do
    for w in string.gmatch(sample[i + 1], '%S+') do
      -- Checking reads the user's bucket: skipped for a crowded one (a user with hundreds of
      -- sessions), whose listings wait for a logout of the OP session or the bucket's expiry.
      if redis.call('HLEN', base .. 'u:' .. bucket(w)) <= 512
        and not uses_sid(base, w, sample[i], now) then
        sid_remove(base, sample[i], w)
      end
    end
  end
end
-- Drop the expired entries of a user bucket, and the OP sessions no live entry uses any more.
-- Returns the bucket's fields and values as read (after the drop, expired ones are gone).
local function prune(base, ub, now)
  -- A few random fields, not the whole bucket: a user with a thousand sessions registers in
  -- constant time. Expired entries are dropped as they are met (and by every logout of the
  -- user); the OP sessions they leave listed are forgotten lazily (see prune_sids).
  local sample = redis.call('HRANDFIELD', ub, 3, 'WITHVALUES')
  for i = 1, #sample, 2 do
    local _, u = entry(sample[i + 1])
    if u <= now then redis.call('HDEL', ub, sample[i]) end
  end
end
-- Whether a live marker in hash x covers a session (id, sub, sid, auth).
local function covered(x, eid, esub, esid, auth, now)
  local f = {'id:' .. eid, 'sub:' .. esub}
  if esid ~= '' then
    table.insert(f, 'sid:' .. esid)
    table.insert(f, 'ss:' .. esid .. ':' .. esub)
  end
  local m = redis.call('HMGET', x, unpack(f))
  for i = 1, #f do
    if m[i] then
      local iat, exp = string.match(m[i], '^(%d+) (%d+)$')
      if iat and tonumber(exp) > now and (i == 1 or tonumber(iat) >= auth) then return true end
    end
  end
  return false
end
-- Write (merge) a marker, prune a few expired ones, and announce it.
local function mark(x, xx, field, iat, exp, now, channel, eiss)
  local held = redis.call('HGET', x, field)
  if held then
    local i, e = string.match(held, '^(%d+) (%d+)$')
    if i then
      iat = math.max(iat, tonumber(i))
      exp = math.max(exp, tonumber(e))
    end
  end
  local value = string.format('%d %d', iat, exp)
  redis.call('HSET', x, field, value)
  redis.call('ZADD', xx, exp, field)
  extend(x, (exp - now) * 1000)
  extend(xx, (exp - now) * 1000)
  local old = redis.call('ZRANGEBYSCORE', xx, '-inf', now, 'LIMIT', 0, 64)
  if #old > 0 then
    redis.call('HDEL', x, unpack(old))
    redis.call('ZREM', xx, unpack(old))
  end
  redis.call('PUBLISH', channel, eiss .. ' ' .. field .. ' ' .. value)
end
"#;

/// KEYS: markers, user bucket. ARGV: base, enc sub, enc sid ('' for none), auth, lifetime (s),
/// enc id, v1 session key ('' unless migrating).
/// Returns the entry's `until` when registered, 0 when a logout already covers the session.
const LUA_REGISTER: &str = r#"
local base, esub, esid, auth, ttl, eid = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local now = clock()
if covered(KEYS[1], eid, esub, esid, auth, now) then return 0 end
if ARGV[7] ~= '' and redis.call('HGET', ARGV[7], 'ended') then return 0 end
local ub, field = KEYS[2], esub .. ' ' .. eid
prune(base, ub, now)
local untl, old = now + ttl, nil
local held = redis.call('HGET', ub, field)
if held then
  local _, t, s = entry(held)
  -- Never shorten an entry: a record written with the longer lifetime may be in the store.
  if t > untl then untl = t end
  old = s
end
local value = auth .. ' ' .. untl
if esid ~= '' then value = value .. ' ' .. esid end
redis.call('HSET', ub, field, value)
extend(ub, (untl - now) * 1000)
-- The session moved to another OP session (rare): forget the user in the old one unless
-- another live entry of the user is in it.
if old and old ~= '' and old ~= esid and not uses_sid(base, esub, old, now) then
  sid_remove(base, old, esub)
end
if esid ~= '' then
  local k = base .. 'i:' .. bucket(esid)
  local cur = redis.call('HGET', k, esid)
  local present = false
  if cur then
    for w in string.gmatch(cur, '%S+') do if w == esub then present = true end end
  end
  if not cur then
    redis.call('HSET', k, esid, esub)
  elseif not present then
    redis.call('HSET', k, esid, cur .. ' ' .. esub)
  end
  extend(k, (untl - now) * 1000)
  prune_sids(k, base, now)
end
return untl
"#;

/// KEYS: jti, markers, marker expiry, deny hash, deny expiry. ARGV: mode (sid, sidsub, sub),
/// iat, enc sub, enc sid, jti ttl (ms), marker ttl (s), base, has jti, deny field ('' for no
/// denylist marker), deny lifetime (s), deny channel, enc issuer, deny issued until (s), ended
/// channel. Time is Redis's (`TIME`), the same for every instance.
/// Returns `{'ok', <encoded ids of the sessions ended>...}`, or `{'replay'}` when the jti was
/// seen before.
const LUA_LOGOUT: &str = r#"
if ARGV[8] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then return {'replay'} end
local mode, iat, esub, esid = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local mttl, base, now = tonumber(ARGV[6]), ARGV[7], clock()
local ended, latest = {'ok'}, 0
-- End the entries of one user authenticated up to iat (only those of one OP session when
-- only_sid is given), and drop the OP sessions none of its entries uses any more.
local function end_user(u, only_sid)
  local ub = base .. 'u:' .. bucket(u)
  local pre = u .. ' '
  local all = redis.call('HGETALL', ub)
  local touched, kept, gone = {}, {}, {}
  for i = 1, #all, 2 do
    local f, v = all[i], all[i + 1]
    if string.sub(f, 1, #pre) == pre then
      local a, t, s = entry(v)
      if t <= now then
        table.insert(gone, f)
        touched[s] = true
      elseif (only_sid == nil or s == only_sid) and a <= iat then
        table.insert(gone, f)
        table.insert(ended, string.sub(f, #pre + 1))
        if t > latest then latest = t end
        touched[s] = true
      else
        kept[s] = true
      end
    end
  end
  -- One HDEL per 500 fields rather than one per field.
  for i = 1, #gone, 500 do
    redis.call('HDEL', ub, unpack(gone, i, math.min(i + 499, #gone)))
  end
  -- Forget the user in the OP sessions it no longer uses: at once for up to 16 of them (a user's
  -- few devices); beyond that (a user with a thousand sessions) the cleanup is left to later
  -- registrations' sampling and to logouts of those OP sessions, so that the logout stays fast.
  local unused = {}
  for s in pairs(touched) do
    if s ~= '' and not kept[s] then table.insert(unused, s) end
  end
  if #unused <= 16 then
    for _, s in ipairs(unused) do sid_remove(base, s, u) end
  end
  -- A user listed in the OP session without a live entry in it (expired): forget it.
  if only_sid and not touched[only_sid] and not kept[only_sid] then sid_remove(base, only_sid, u) end
end
local field
if mode == 'sub' then
  end_user(esub, nil)
  field = 'sub:' .. esub
else
  local users = redis.call('HGET', base .. 'i:' .. bucket(esid), esid)
  if users then
    for w in string.gmatch(users, '%S+') do
      if mode == 'sid' or w == esub then end_user(w, esid) end
    end
  end
  if mode == 'sid' then field = 'sid:' .. esid else field = 'ss:' .. esid .. ':' .. esub end
end
-- The marker outlives every session it ended (a record saved by a request in flight lives no
-- longer than its entry would have), and refuses late registrations for marker_ttl at least.
mark(KEYS[2], KEYS[3], field, iat, math.max(now + mttl, latest + 60), now, ARGV[14], ARGV[12])
if ARGV[8] == '1' then redis.call('SET', KEYS[1], '1', 'PX', ARGV[5]) end
if ARGV[9] ~= '' then
  -- The access-token denylist marker of this sid (sub).
  deny(KEYS[4], KEYS[5], ARGV[9], tonumber(ARGV[13]), tonumber(ARGV[10]), now, ARGV[11], ARGV[12])
end
return ended
"#;

/// KEYS: markers, marker expiry. ARGV: base, enc id, enc sub ('' when unknown), marker ttl (s),
/// ended channel, enc issuer.
/// Returns 1 when a live session was ended.
const LUA_END_SESSION: &str = r#"
local base, eid, esub, now = ARGV[1], ARGV[2], ARGV[3], clock()
local found, latest = 0, 0
if esub ~= '' then
  local ub = base .. 'u:' .. bucket(esub)
  local f = esub .. ' ' .. eid
  local v = redis.call('HGET', ub, f)
  if v then
    local _, t, s = entry(v)
    redis.call('HDEL', ub, f)
    if t > now then found, latest = 1, t end
    if s ~= '' then
      local used = false
      local pre = esub .. ' '
      local all = redis.call('HGETALL', ub)
      for i = 1, #all, 2 do
        local _, _, o = entry(all[i + 1])
        if o == s and string.sub(all[i], 1, #pre) == pre then used = true end
      end
      if not used then sid_remove(base, s, esub) end
    end
  end
end
local exp = math.max(now + tonumber(ARGV[4]), latest + 60)
mark(KEYS[1], KEYS[2], 'id:' .. eid, now, exp, now, ARGV[5], ARGV[6])
return found
"#;

/// KEYS: markers, user bucket. ARGV: enc sub, enc sid, auth, enc id, v1 session key (''
/// unless migrating). Read-only. Returns 'active', 'ended' or 'unknown'.
const LUA_STATE: &str = r#"
local esub, esid, auth, eid, now = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], clock()
if covered(KEYS[1], eid, esub, esid, auth, now) then return 'ended' end
local v = redis.call('HGET', KEYS[2], esub .. ' ' .. eid)
if v then
  local _, t = entry(v)
  if t > now then return 'active' end
end
if ARGV[5] ~= '' then
  local h = redis.call('HMGET', ARGV[5], 'sub', 'ended')
  if h[2] then return 'ended' end
  if h[1] then return 'active' end
end
return 'unknown'
"#;

/// KEYS: markers, user bucket. ARGV: enc sub. Read-only.
/// Returns, per live session of the user: encoded id, encoded sid ('' when none), auth, until.
const LUA_SESSIONS: &str = r#"
local pre, now = ARGV[1] .. ' ', clock()
local all = redis.call('HGETALL', KEYS[2])
local out = {}
for i = 1, #all, 2 do
  local f = all[i]
  if string.sub(f, 1, #pre) == pre then
    local a, t, s = entry(all[i + 1])
    local eid = string.sub(f, #pre + 1)
    if t > now and not redis.call('HGET', KEYS[1], 'id:' .. eid) then
      table.insert(out, {eid, s, a, t})
    end
  end
end
return out
"#;

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
    logout: Script,
    register: Script,
    end_session: Script,
    state: Script,
    sessions: Script,
    v1: Option<super::legacy_v1::Scripts>,
    follower: std::sync::OnceLock<Follower>,
}

impl std::fmt::Debug for RedisIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisIndex")
            .field("prefix", &self.settings.prefix)
            .finish_non_exhaustive()
    }
}

/// A script: the shared helpers, then `body`.
pub(super) fn script(body: &str) -> Script {
    Script::new(&format!("{LUA_HELPERS}\n{body}"))
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
            logout: script(LUA_LOGOUT),
            register: script(LUA_REGISTER),
            end_session: script(LUA_END_SESSION),
            state: script(LUA_STATE),
            sessions: script(LUA_SESSIONS),
            v1: settings.legacy_v1.then(super::legacy_v1::Scripts::new),
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

    /// A marker this instance has just written, for its own view of logouts (if it follows
    /// them): a request that follows a logout here sees it at once.
    fn wrote(&self, issuer: &str, field: &str, iat: u64) {
        if let Some(follower) = self.shared.follower.get() {
            let expires_at =
                crate::sys::unix_now().saturating_add(self.settings.marker_ttl.as_secs().max(1));
            follower.wrote(issuer, field, Marker { iat, expires_at });
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

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl SessionIndex for RedisIndex {
    async fn register(&self, s: &SessionRecord) -> Result<Registration, StoreError> {
        super::check_record(s)?;
        let k = self.keys(&s.issuer);
        let esub = encode_component(&s.sub);
        let mut inv = self.shared.register.prepare_invoke();
        inv.key(k.markers())
            .key(k.user_bucket(&esub))
            .arg(k.base())
            .arg(&esub)
            .arg(s.sid.as_deref().map(encode_component).unwrap_or_default())
            .arg(s.auth_time)
            .arg(super::ceil_secs(s.ttl))
            .arg(encode_component(&s.session_id))
            .arg(self.v1_session(&s.issuer, &s.session_id));
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
        let mut inv = self.shared.logout.prepare_invoke();
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
            .arg(ended_channel(&self.settings.prefix));
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
        let mut inv = self.shared.end_session.prepare_invoke();
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
        let mut inv = self.shared.state.prepare_invoke();
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
        let esub = encode_component(sub);
        let mut inv = self.shared.sessions.prepare_invoke();
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
}

/// The denylist field a logout writes (`""` for none). A sid belongs to one user, so a
/// (sid, sub) logout denies the sid's tokens.
pub(super) fn deny_field(l: &Logout<'_>) -> String {
    match (l.deny, l.target) {
        (None, _) => String::new(),
        (Some(_), Target::Sid { sid, .. }) => format!("sid:{}", encode_component(sid)),
        (Some(_), Target::Sub { sub }) => format!("sub:{}", encode_component(sub)),
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
