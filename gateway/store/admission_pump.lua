-- Hand free slots to waiters without releasing anything: when a backend becomes ready,
-- and now and then, so leases expired by a dead replica reach the queue.
-- ARGV: P, grant_ttl_ms, candidates. Returns {queued, loads…, "|", grants…}.
local grant_ttl = tonumber(ARGV[2])
local cands = read_candidates(3)
local now = now_ms()
local grants = pump(now, cands, grant_ttl)
local out = { tonumber(redis.call('GET', P .. 'q:n')) or 0 }
for _, n in ipairs(loads(cands, now)) do out[#out + 1] = n end
out[#out + 1] = '|'
for _, g in ipairs(grants) do out[#out + 1] = g end
return out
