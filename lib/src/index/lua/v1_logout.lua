-- Layout version 1, unchanged, for a receiver that ends v1 sessions while applications move.
-- KEYS: jti, index (sid or sub set), marker, deny hash, deny expiry set. ARGV: mode, iat, sub,
-- jti_ttl_ms, marker_ttl_ms, session prefix, sid prefix, sub prefix, now, has_jti, deny field,
-- deny lifetime (s), deny channel, encoded issuer, deny issued until (s).
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
  local revoked = tonumber(ARGV[15])
  marker(KEYS[4], KEYS[5], ARGV[11], revoked, revoked + tonumber(ARGV[12]), tonumber(ARGV[9]), ARGV[13], ARGV[14])
end
return ended
