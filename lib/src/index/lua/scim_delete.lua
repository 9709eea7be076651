-- Delete a provisioned user and free its names and its sub (see scim_write.lua for the keys).
-- KEYS: the user's key. ARGV: base, ns, id, the JSON the caller read, its folded userName,
-- externalId ('' none) and sub.
-- Returns 'done', 'gone' (no such user) or 'stale' (it changed since the caller read it).
local base, ns, id, read = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local cur = redis.call('GET', KEYS[1])
if not cur then return 'gone' end
if cur ~= read then return 'stale' end
local function free(key, holder)
  if redis.call('GET', key) == holder then redis.call('DEL', key) end
end
free(base .. ns .. 'n:' .. enc(ARGV[5]), id)
if ARGV[6] ~= '' then free(base .. ns .. 'e:' .. enc(ARGV[6]), id) end
free(base .. 'scim-sub:' .. enc(ARGV[7]), ns .. ' ' .. id)
redis.call('DEL', KEYS[1])
redis.call('ZREM', base .. ns .. 'all:', id)
return 'done'
