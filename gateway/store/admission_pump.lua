-- Hand free slots to waiters without releasing anything: when a backend becomes ready,
-- when the store is back after an outage, and now and then, so leases expired by a dead
-- replica reach the queue. Also keeps the calling replica's record alive (a replica with
-- waiters pumps every upkeep tick).
-- ARGV: P, grant_ttl_ms, replica, alive_ttl_ms, candidates.
-- Returns {1 if the replica's record had lapsed (its waiters may have been dropped) else 0,
-- queued, loads…, "|", grants…}.
local grant_ttl, replica, alive_ttl = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local cands = read_candidates(5)
local now = now_ms()
local lapsed = note_replica(replica, cands, now, alive_ttl)
local grants, counts = pump(now, cands, grant_ttl)
local out = { lapsed and 1 or 0, tonumber(redis.call('GET', P .. 'q:n')) or 0 }
for _, n in ipairs(counts) do out[#out + 1] = n end
out[#out + 1] = '|'
for _, g in ipairs(grants) do out[#out + 1] = g end
return out
