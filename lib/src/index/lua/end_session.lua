-- End one session by its id (the application's own logout, an administrator, the user).
-- KEYS: markers, marker expiry. ARGV: base, enc id, enc sub ('' when unknown), marker ttl (s),
-- ended channel, enc issuer.
-- Returns 1 when a live session was ended.
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
marker(KEYS[1], KEYS[2], 'id:' .. eid, now, exp, now, ARGV[5], ARGV[6])
return found
