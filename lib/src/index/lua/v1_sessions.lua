-- Layout version 1: a user's live sessions. Read-only.
-- KEYS: sub set. ARGV: session prefix, sub.
local out = {}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local h = redis.call('HMGET', ARGV[1] .. m, 'sub', 'sid', 'auth', 'ended', 'created', 'seen')
  if h[1] == ARGV[2] and not h[4] then
    table.insert(out, {m, h[2] or '', h[3] or '0', h[5] or '0', h[6] or '0'})
  end
end
return out
