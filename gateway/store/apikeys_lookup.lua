-- Find an API key by its secret's SHA-256 in one round trip.
-- KEYS: hash index.
-- ARGV: prefix of record keys (same hash tag as the index).
-- Returns the record's fields, or nil when the hash is unknown.
local id = redis.call('GET', KEYS[1])
if not id then
  return false
end
return redis.call('HGETALL', ARGV[1] .. id)
