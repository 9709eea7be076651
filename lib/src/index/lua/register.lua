-- Register (or extend) a session.
-- KEYS: markers, user bucket, customer bucket.
-- ARGV: base, enc sub, enc sid ('' for none), auth, lifetime (s), enc id, v1 session key (''
-- unless migrating), enc customer ('' for none), how long the user's customer is remembered
-- past the session (s).
-- Returns the entry's `until` when registered, 0 when a logout already covers the session.
local base, esub, esid, auth, ttl, eid = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local now = clock()
if covered(KEYS[1], eid, esub, esid, auth, now) then return 0 end
if ARGV[7] ~= '' and redis.call('HGET', ARGV[7], 'ended') then return 0 end
local ub, field = KEYS[2], esub .. ' ' .. eid
prune(ub, now, live_entry)
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
-- The user's customer, decided at login: what a sender scoped to a customer may touch. Kept
-- past the session, so that a user between sessions is still known as that customer's.
if ARGV[8] ~= '' then
  local ck = KEYS[3]
  prune(ck, now, live_customer)
  local cu = untl + tonumber(ARGV[9])
  local h = redis.call('HGET', ck, esub)
  if h then
    local _, t = customer_entry(h)
    if t > cu then cu = t end
  end
  redis.call('HSET', ck, esub, ARGV[8] .. ' ' .. cu)
  extend(ck, (cu - now) * 1000)
end
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
