//! Layout version 1, kept only so that a receiver can end the sessions applications of an
//! older release registered there, while they move to version 2 (`IndexSettings::legacy_v1`,
//! `docs/redis-schema.md`, "Moving from v1"). Nothing registers in version 1 any more; reading
//! a version 1 session is part of [`LUA_STATE`](super::redis) (same hash tag, same script).
//!
//! These are the version 1 scripts as they were, unchanged, so that the two releases agree.

use redis::Script;

use super::connection::RedisConnection;
use super::keys::{V1Keys, decode_component, encode_component};
use super::redis::{deny_field, millis, script};
use super::{IndexSettings, Logout, OrUnavailable as _, SessionInfo, StoreError, Target};

/// KEYS: jti, index (sid or sub set), marker, deny hash, deny expiry set. ARGV: mode, iat, sub,
/// jti_ttl_ms, marker_ttl_ms, session prefix, sid prefix, sub prefix, now, has_jti, deny field,
/// deny lifetime (s), deny channel, encoded issuer, deny issued until (s).
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
  -- The access-token denylist marker of this sid (sub), in version 1's hash.
  deny(KEYS[4], KEYS[5], ARGV[11], tonumber(ARGV[15]), tonumber(ARGV[12]), tonumber(ARGV[9]), ARGV[13], ARGV[14])
end
return ended
"#;

/// KEYS: session. ARGV: member, sid prefix, sub prefix, now, tombstone_ttl_ms.
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

/// The version 1 scripts a migrating receiver runs.
pub(super) struct Scripts {
    logout: Script,
    end_session: Script,
    sessions: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            logout: script(LUA_LOGOUT),
            end_session: script(LUA_END_SESSION),
            sessions: script(LUA_SESSIONS),
        }
    }

    /// End the version 1 sessions a logout names, with its version 1 markers and denylist
    /// marker (for API instances of the older release); no jti (version 2 keeps it).
    pub(super) async fn logout(
        &self,
        conn: &mut RedisConnection,
        settings: &IndexSettings,
        l: &Logout<'_>,
    ) -> Result<Vec<String>, StoreError> {
        let k = V1Keys::new(&settings.prefix, l.issuer);
        let (mode, index, marker, sub) = match l.target {
            Target::Sid { sid, sub: None } => ("sid", k.sid(sid), k.sid_marker(sid), ""),
            Target::Sid {
                sid,
                sub: Some(sub),
            } => ("sidsub", k.sid(sid), k.sid_marker(sid), sub),
            Target::Sub { sub } => ("sub", k.sub(sub), k.sub_marker(sub), sub),
        };
        let (deny_from, deny_secs) = l
            .deny
            .map_or((0, 0), |d| (d.issued_until, d.lifetime.as_secs().max(1)));
        let mut inv = self.logout.prepare_invoke();
        inv.key(k.session("")) // the jti key: unused without a jti, any key of the slot
            .key(index)
            .key(marker)
            .key(k.deny())
            .key(k.deny_expiry())
            .arg(mode)
            .arg(l.issued_at)
            .arg(sub)
            .arg(1)
            .arg(millis(settings.marker_ttl))
            .arg(k.session_prefix())
            .arg(k.sid_prefix())
            .arg(k.sub_prefix())
            .arg(crate::sys::unix_now())
            .arg("0")
            .arg(deny_field(l))
            .arg(deny_secs)
            .arg(format!("{}v1:deny", settings.prefix))
            .arg(encode_component(l.issuer))
            .arg(deny_from);
        let reply: Vec<String> = inv.invoke_async(conn).await.or_unavailable()?;
        match reply.split_first() {
            Some((status, members)) if status == "ok" => {
                Ok(members.iter().map(|m| decode_component(m)).collect())
            }
            _ => Err(StoreError::Unexpected(format!(
                "v1 logout script returned {reply:?}"
            ))),
        }
    }

    /// End one version 1 session by id.
    pub(super) async fn end_session(
        &self,
        conn: &mut RedisConnection,
        settings: &IndexSettings,
        issuer: &str,
        session_id: &str,
    ) -> Result<bool, StoreError> {
        let k = V1Keys::new(&settings.prefix, issuer);
        let mut inv = self.end_session.prepare_invoke();
        inv.key(k.session(session_id))
            .arg(encode_component(session_id))
            .arg(k.sid_prefix())
            .arg(k.sub_prefix())
            .arg(crate::sys::unix_now())
            .arg(millis(settings.marker_ttl));
        let ended: i64 = inv.invoke_async(conn).await.or_unavailable()?;
        Ok(ended == 1)
    }

    /// The live version 1 sessions of a user.
    pub(super) async fn sessions(
        &self,
        conn: &mut RedisConnection,
        settings: &IndexSettings,
        issuer: &str,
        sub: &str,
    ) -> Result<Vec<SessionInfo>, StoreError> {
        let k = V1Keys::new(&settings.prefix, issuer);
        let mut inv = self.sessions.prepare_invoke();
        inv.key(k.sub(sub)).arg(k.session_prefix()).arg(sub);
        let rows: Vec<(String, String, u64, u64, u64)> =
            inv.invoke_async(conn).await.or_unavailable()?;
        Ok(rows
            .into_iter()
            .map(|(member, sid, auth_time, _created, _seen)| SessionInfo {
                session_id: decode_component(&member),
                sid: (!sid.is_empty()).then_some(sid),
                auth_time,
                indexed_until: 0,
            })
            .collect())
    }
}
