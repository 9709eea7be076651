-- Helpers every script of the index starts with (oidc-logout layout v2, docs/redis-schema.md).

-- The encoding of keys and fields: every byte outside A-Z a-z 0-9 - . _ ~ as %XX (upper case).
local function enc(s)
  if not string.find(s, '[^A-Za-z0-9%-%._~]') then return s end
  return (string.gsub(s, '[^A-Za-z0-9%-%._~]', function(c) return string.format('%%%02X', string.byte(c)) end))
end
-- Extend a key's expiry to at least ms milliseconds from now (never shorten it).
local function extend(key, ms)
  local t = redis.call('PTTL', key)
  if t >= 0 and t < ms then redis.call('PEXPIRE', key, ms) end
  if t == -1 then redis.call('PEXPIRE', key, ms) end
end
-- Merge the marker `field` = '<from> <until>' into hash h (indexed by expiry in sorted set z):
-- each number the later of the new and any held value, a few expired markers pruned on the
-- way, and announced on `channel` as '<eiss> <field> <from> <until>'. Logout markers (x) and
-- access-token denylist markers (deny) are both written here, and only here.
local function marker(h, z, field, from, untl, now, channel, eiss)
  local old = redis.call('ZRANGEBYSCORE', z, '-inf', now, 'LIMIT', 0, 64)
  if #old > 0 then
    redis.call('HDEL', h, unpack(old))
    redis.call('ZREM', z, unpack(old))
  end
  local held = redis.call('HGET', h, field)
  if held then
    local f, u = string.match(held, '^(%d+) (%d+)$')
    if f then
      from = math.max(from, tonumber(f))
      untl = math.max(untl, tonumber(u))
    end
  end
  if untl <= now then return end
  local value = string.format('%d %d', from, untl)
  redis.call('HSET', h, field, value)
  redis.call('ZADD', z, untl, field)
  extend(h, (untl - now) * 1000)
  extend(z, (untl - now) * 1000)
  redis.call('PUBLISH', channel, eiss .. ' ' .. field .. ' ' .. value)
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
-- Drop the expired entries among a few random fields of a bucket: a user with a thousand
-- sessions registers in constant time. `live` says whether a value is still live.
local function prune(h, now, live)
  local sample = redis.call('HRANDFIELD', h, 3, 'WITHVALUES')
  for i = 1, #sample, 2 do
    if not live(sample[i + 1], now) then redis.call('HDEL', h, sample[i]) end
  end
end
local function live_entry(v, now)
  local _, u = entry(v)
  return u > now
end
-- A user's customer record: '<enc customer> <until>'.
local function customer_entry(v)
  local c, u = string.match(v, '^(%S+) (%d+)$')
  return c, tonumber(u) or 0
end
local function live_customer(v, now)
  local _, u = customer_entry(v)
  return u > now
end
-- Whether a live marker in hash x covers a session (id, sub, sid, auth).
local function covered(x, eid, esub, esid, auth, now)
  local f = {'id:' .. eid, 'sub:' .. esub}
  if esid ~= '' then
    table.insert(f, 'sid:' .. esid)
    table.insert(f, 'ss:' .. esid .. ':' .. esub)
  else
    table.insert(f, 'ns:' .. esub)
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
