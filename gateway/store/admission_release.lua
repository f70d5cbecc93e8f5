-- Give a lease back and hand the freed slot (and any other free one) to the next waiters.
-- ARGV: P, backend, lease, grant_ttl_ms, candidates (count, backend, slots…)
-- Returns {loads…, "|", grants…} (replica, waiter, backend per grant).
local backend, lease, grant_ttl = ARGV[2], ARGV[3], tonumber(ARGV[4])
local cands = read_candidates(5)
local now = now_ms()
redis.call('ZREM', lease_key(backend), lease)
local grants, out = pump(now, cands, grant_ttl)  -- out: the loads, then grants
out[#out + 1] = '|'
for _, g in ipairs(grants) do out[#out + 1] = g end
return out
