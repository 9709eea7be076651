-- Layout version 1: end one session by id.
-- KEYS: session. ARGV: member, sid prefix, sub prefix, now, tombstone_ttl_ms.
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
