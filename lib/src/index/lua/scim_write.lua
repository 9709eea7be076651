-- Create or change a provisioned (SCIM) user, atomically with its uniqueness rules.
-- Keys are derived from the issuer's base (one hash tag): `<ns>u:<id>` the user's JSON,
-- `<ns>n:<folded userName>` and `<ns>e:<externalId>` the client's names (their user's id),
-- `<ns>all:` its users by creation, and `scim-sub:<sub>` the one client's user holding an OIDC
-- sub across the issuer ('<ns> <id>'). `<ns>` is the client's namespace ('scim:' or
-- 'scim@<enc name>:').
-- KEYS: the user's key. ARGV: base, ns, mode ('create' | 'replace'), id, new JSON, the JSON the
-- caller read ('' when creating), new folded userName, new externalId ('' none), new sub, old
-- folded userName, old externalId, old sub, creation time (s).
-- Returns 'done'; 'taken' (another user of the client has the name), 'claimed' (another
-- client's user has the sub), 'gone' (no such user) or 'stale' (the user changed since the
-- caller read it): then nothing was written.
local base, ns, mode, id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local json, read = ARGV[5], ARGV[6]
local name, ext, sub = ARGV[7], ARGV[8], ARGV[9]
local oname, oext, osub = ARGV[10], ARGV[11], ARGV[12]
local cur = redis.call('GET', KEYS[1])
if mode == 'create' then
  if cur then return 'taken' end
else
  if not cur then return 'gone' end
  if cur ~= read then return 'stale' end
end
local nkey = base .. ns .. 'n:' .. enc(name)
local holder = redis.call('GET', nkey)
if holder and holder ~= id then return 'taken' end
local ekey = base .. ns .. 'e:' .. enc(ext)
if ext ~= '' then
  local h = redis.call('GET', ekey)
  if h and h ~= id then return 'taken' end
end
local me = ns .. ' ' .. id
local skey = base .. 'scim-sub:' .. enc(sub)
local owner = redis.call('GET', skey)
if owner and owner ~= me then return 'claimed' end
if mode == 'replace' then
  local onkey = base .. ns .. 'n:' .. enc(oname)
  if onkey ~= nkey and redis.call('GET', onkey) == id then redis.call('DEL', onkey) end
  local oekey = base .. ns .. 'e:' .. enc(oext)
  if oext ~= '' and oekey ~= ekey and redis.call('GET', oekey) == id then redis.call('DEL', oekey) end
  local oskey = base .. 'scim-sub:' .. enc(osub)
  if oskey ~= skey and redis.call('GET', oskey) == me then redis.call('DEL', oskey) end
end
redis.call('SET', KEYS[1], json)
redis.call('SET', nkey, id)
if ext ~= '' then redis.call('SET', ekey, id) end
redis.call('SET', skey, me)
redis.call('ZADD', base .. ns .. 'all:', tonumber(ARGV[13]), id)
return 'done'
