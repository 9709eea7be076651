-- Apply an event once: claim, finish or release its id (namespaced by sender).
-- KEYS: the event's key. ARGV: 'claim' | 'finish' | 'release', time to keep (ms).
-- claim: 'done' when it was applied, 'busy' while another delivery applies it, else
-- 'claimed' (held for the time given, so that a crash frees it). finish: kept as done.
-- release: a failed attempt gives its claim back, so the sender's retry applies it.
local v = redis.call('GET', KEYS[1])
if ARGV[1] == 'claim' then
  if v == 'done' then return 'done' end
  if v then return 'busy' end
  redis.call('SET', KEYS[1], 'busy', 'PX', ARGV[2])
  return 'claimed'
elseif ARGV[1] == 'finish' then
  redis.call('SET', KEYS[1], 'done', 'PX', ARGV[2])
  return 'done'
else
  if v == 'busy' then redis.call('DEL', KEYS[1]) end
  return 'released'
end
