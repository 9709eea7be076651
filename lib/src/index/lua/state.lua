-- Whether a session is live. Read-only.
-- KEYS: markers, user bucket. ARGV: enc sub, enc sid, auth, enc id, v1 session key (''
-- unless migrating). Returns 'active', 'ended' or 'unknown'.
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
