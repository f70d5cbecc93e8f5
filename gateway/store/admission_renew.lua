-- The upkeep's heartbeat: extend the leases that are still running (only those that still
-- exist: XX), keep the replica's record alive, and clear the candidates' expired leases
-- out (the scripts count only live ones; this keeps a dead replica's from piling up).
-- ARGV: P, lease_ttl_ms, alive_ttl_ms, replica, candidates (count, backend, slots…), then
-- backend, lease pairs. Returns {leases still held, 1 if the replica's record had lapsed
-- (its waiters may have been dropped: the replica queues them again) else 0}.
local ttl, alive_ttl, replica = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local cands = read_candidates(5)
local now = now_ms()
local lapsed = note_replica(replica, cands, now, alive_ttl)
for _, c in ipairs(cands) do
  redis.call('ZREMRANGEBYSCORE', lease_key(c[1]), '-inf', now)
end
local held = 0
for i = 6 + 2 * #cands, #ARGV, 2 do
  held = held + redis.call('ZADD', lease_key(ARGV[i]), 'XX', 'CH', now + ttl, ARGV[i + 1])
end
return { held, lapsed and 1 or 0 }
