-- The customer a user logged in as, while it is remembered. Read-only.
-- KEYS: customer bucket. ARGV: enc sub. Returns the encoded customer, or false.
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return false end
local c, u = customer_entry(v)
if c and u > clock() then return c end
return false
