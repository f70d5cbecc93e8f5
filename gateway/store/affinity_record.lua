-- Record that a backend (and slot) now holds a prompt prefix: every entry of its chain maps
-- to the backend, with a TTL; the model's index keeps at most ARGV[4] entries, oldest evicted.
-- KEYS: the model's index ZSET, then one entry HASH per chain entry.
-- ARGV: backend, slot, ttl (ms), max entries, entry key prefix, then the entry ids.
-- Returns how many entries were evicted for the bound.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local backend, slot = ARGV[1], ARGV[2]
local ttl, cap, prefix = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]

local scored = {}
for i = 2, #KEYS do
  redis.call('HSET', KEYS[i], backend, slot)
  redis.call('PEXPIRE', KEYS[i], ttl)
  scored[#scored + 1] = now
  scored[#scored + 1] = ARGV[4 + i]
end
local added = 0
if #scored > 0 then
  added = redis.call('ZADD', KEYS[1], unpack(scored))  -- the whole chain in one call
end

-- When the index grew: forget what has expired, then the oldest entries beyond the bound.
-- (An index that did not grow stays within it; its expired members, whose entries have
-- expired on their own, wait for the next growth: lookups read the entries, not the index.)
local excess = 0
if added > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
  excess = redis.call('ZCARD', KEYS[1]) - cap
end
if excess > 0 then
  local old = redis.call('ZRANGE', KEYS[1], 0, excess - 1)
  for _, id in ipairs(old) do
    redis.call('DEL', prefix .. id)
  end
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, excess - 1)
else
  excess = 0
end
redis.call('PEXPIRE', KEYS[1], ttl)
return excess
