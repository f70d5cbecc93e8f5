-- Create an API key, all or nothing: its record, the index from its secret's SHA-256 to its
-- id, and its place in the set of ids. The creation time is Redis's own.
-- KEYS: record, hash index, id set.
-- ARGV: id, SHA-256 hex, then field, JSON value pairs.
-- Returns the creation time (unix seconds), or -1 when the id or the hash is taken.
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then
  return -1
end
local created = tonumber(redis.call('TIME')[1])
redis.call('HSET', KEYS[1], 'sha256', ARGV[2], 'created', tostring(created), unpack(ARGV, 3))
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
return created
