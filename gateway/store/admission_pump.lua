-- Hand free slots to waiters without releasing anything: when a backend becomes ready,
-- when the store is back after an outage, and now and then, so leases expired by a dead
-- replica reach the queue. Also updates the calling replica's record (the backends it can
-- use; not its heartbeat).
-- ARGV: P, grant_ttl_ms, replica, lease_ttl_ms, candidates.
-- Returns {queued, loads…, "|", grants…}.
local grant_ttl, replica, lease_ttl = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local cands = read_candidates(5)
local now = now_ms()
note_replica(replica, cands, now, lease_ttl, false)
local grants = pump(now, cands, grant_ttl)
local out = { tonumber(redis.call('GET', P .. 'q:n')) or 0 }
for _, n in ipairs(loads(cands, now)) do out[#out + 1] = n end
out[#out + 1] = '|'
for _, g in ipairs(grants) do out[#out + 1] = g end
return out
