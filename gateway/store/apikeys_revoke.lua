-- Revoke an API key: drop the index from its hash (so the secret finds nothing any more) and
-- mark the record revoked, keeping it for the record. Revoking twice changes nothing.
-- KEYS: record.
-- ARGV: prefix of hash-index keys (same hash tag as the record).
-- Returns the record's fields, or 'missing'.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 'missing'
end
local revoked = redis.call('HGET', KEYS[1], 'revoked_at')
if not revoked or revoked == 'null' then
  local sha = redis.call('HGET', KEYS[1], 'sha256')
  if sha then
    redis.call('DEL', ARGV[1] .. sha)
  end
  redis.call('HSET', KEYS[1], 'revoked_at', redis.call('TIME')[1])
end
return redis.call('HGETALL', KEYS[1])
