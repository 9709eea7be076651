-- Store a session record (this crate's store), unless the record stored under its key holds a
-- later generation of the same login: a save by a request that loaded the session before a
-- refresh rotated its tokens. Then nothing is written and the stored record is returned, for the
-- caller to keep its newer login and try again.
-- KEYS[1] the record (d:{id}); ARGV[1] the record, ARGV[2] its lifetime in milliseconds,
-- ARGV[3] the generation of the login it holds.
local stored = redis.call('GET', KEYS[1])
if stored then
  local ok, record = pcall(cjson.decode, stored)
  if ok and type(record) == 'table' and type(record.data) == 'table' then
    local login = record.data['oidc_logout.login']
    if type(login) == 'table' and (tonumber(login.generation) or 0) > tonumber(ARGV[3]) then
      return stored
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
