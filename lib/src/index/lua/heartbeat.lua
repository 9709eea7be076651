-- Announce a heartbeat on the markers' channel, from the node that owns the issuer's slot, with
-- that node's time in milliseconds appended: followers learn Redis's clock from it.
-- KEYS[1]: the issuer's marker hash (for the slot only). ARGV: channel, message.
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('PUBLISH', ARGV[1], ARGV[2] .. ' ' .. string.format('%d', ms))
return 1
