-- Keep a long request counted as in flight: push its expiry to now + ttl.
-- KEYS: in-flight set. ARGV: request id, expiry (ms).
-- Returns 1, or 0 when the request is no longer in the set (settled already).
local ttl = tonumber(ARGV[2])
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
