-- End the sessions a logout names, write its marker (and denylist marker), remember its jti.
-- KEYS: jti, markers, marker expiry, deny hash, deny expiry.
-- ARGV: mode (sid, sidsub, sub), iat, enc sub, enc sid, jti ttl (ms), marker ttl (s), base,
-- has jti, deny field ('' for no denylist marker), deny lifetime (s), deny channel, enc
-- issuer, deny issued until (s), ended channel, what else a sid logout ends ('' nothing, 'ns'
-- the users' sessions without a sid, 'user' every session of the users). Time is Redis's
-- (`TIME`).
-- Returns {'ok', <encoded ids of the sessions ended>...}, or {'replay'} when the jti was seen.
if ARGV[8] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then return {'replay'} end
local mode, iat, esub, esid, also = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[15]
local mttl, base, now = tonumber(ARGV[6]), ARGV[7], clock()
local ended, latest = {'ok'}, 0
-- End the entries of one user authenticated up to iat (only those of one OP session when
-- only_sid is given), and drop the OP sessions none of its entries uses any more.
local function end_user(u, only_sid)
  local ub = base .. 'u:' .. bucket(u)
  local pre = u .. ' '
  local all = redis.call('HGETALL', ub)
  local touched, kept, gone = {}, {}, {}
  for i = 1, #all, 2 do
    local f, v = all[i], all[i + 1]
    if string.sub(f, 1, #pre) == pre then
      local a, t, s = entry(v)
      if t <= now then
        table.insert(gone, f)
        touched[s] = true
      elseif (only_sid == nil or s == only_sid) and a <= iat then
        table.insert(gone, f)
        table.insert(ended, string.sub(f, #pre + 1))
        if t > latest then latest = t end
        touched[s] = true
      else
        kept[s] = true
      end
    end
  end
  -- One HDEL per 500 fields rather than one per field.
  for i = 1, #gone, 500 do
    redis.call('HDEL', ub, unpack(gone, i, math.min(i + 499, #gone)))
  end
  -- Forget the user in the OP sessions it no longer uses: at once for up to 16 of them (a user's
  -- few devices); beyond that (a user with a thousand sessions) the cleanup is left to later
  -- registrations' sampling and to logouts of those OP sessions, so that the logout stays fast.
  local unused = {}
  for s in pairs(touched) do
    if s ~= '' and not kept[s] then table.insert(unused, s) end
  end
  if #unused <= 16 then
    for _, s in ipairs(unused) do sid_remove(base, s, u) end
  end
  -- A user listed in the OP session without a live entry in it (expired): forget it.
  if only_sid and only_sid ~= '' and not touched[only_sid] and not kept[only_sid] then
    sid_remove(base, only_sid, u)
  end
end
local fields = {}
if mode == 'sub' then
  end_user(esub, nil)
  fields[1] = 'sub:' .. esub
else
  -- The users the logout reaches: the token's sub, or every user listed in the OP session.
  local named = {}
  local users = redis.call('HGET', base .. 'i:' .. bucket(esid), esid)
  if users then
    for w in string.gmatch(users, '%S+') do
      if mode == 'sid' or w == esub then
        end_user(w, esid)
        named[w] = true
      end
    end
  end
  if mode == 'sid' then fields[1] = 'sid:' .. esid else fields[1] = 'ss:' .. esid .. ':' .. esub end
  if mode == 'sidsub' then named[esub] = true end
  -- The issuer's setting: also the users' sessions without a sid, or all their sessions.
  if also == 'ns' or also == 'user' then
    for w in pairs(named) do
      if also == 'ns' then
        end_user(w, '')
        table.insert(fields, 'ns:' .. w)
      else
        end_user(w, nil)
        table.insert(fields, 'sub:' .. w)
      end
    end
  end
end
-- The markers outlive every session they ended (a record saved by a request in flight lives no
-- longer than its entry would have), and refuse late registrations for marker_ttl at least.
for _, field in ipairs(fields) do
  marker(KEYS[2], KEYS[3], field, iat, math.max(now + mttl, latest + 60), now, ARGV[14], ARGV[12])
end
if ARGV[8] == '1' then redis.call('SET', KEYS[1], '1', 'PX', ARGV[5]) end
if ARGV[9] ~= '' then
  -- The access-token denylist marker of this sid (sub).
  local revoked = tonumber(ARGV[13])
  marker(KEYS[4], KEYS[5], ARGV[9], revoked, revoked + tonumber(ARGV[10]), now, ARGV[11], ARGV[12])
end
return ended
