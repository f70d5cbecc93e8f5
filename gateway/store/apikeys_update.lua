-- Change fields of an API key that exists and is not revoked.
-- KEYS: record.
-- ARGV: field, JSON value pairs.
-- Returns the record's fields after the change, or 'missing' / 'revoked'.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 'missing'
end
local revoked = redis.call('HGET', KEYS[1], 'revoked_at')
if revoked and revoked ~= 'null' then
  return 'revoked'
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return redis.call('HGETALL', KEYS[1])
