-- A user's live sessions. Read-only.
-- KEYS: markers, user bucket. ARGV: enc sub.
-- Returns, per live session: encoded id, encoded sid ('' when none), auth, until.
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
