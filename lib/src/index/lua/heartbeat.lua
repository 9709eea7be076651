-- Announce a heartbeat on the markers' channel, from the node that owns the issuer's slot.
-- ARGV: channel, message.
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
