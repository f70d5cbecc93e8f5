-- A replica that left grants unread in its mailbox (dead, or stalled): its record lapses now,
-- so its waiters are dropped instead of granted (a replica that was only stalled learns that
-- its record had lapsed at its next script, and queues its waiters again), and the slots of
-- the grants it did not read are handed to the next waiters.
-- ARGV: P, replica, grant_ttl_ms, candidates (count, backend, slots…), then backend, lease
-- pairs. Returns {loads…, "|", grants…}.
local replica, grant_ttl = ARGV[2], tonumber(ARGV[3])
local cands = read_candidates(4)
local now = now_ms()
local k = P .. 'r:' .. replica
local reach = string.match(redis.call('GET', k) or '', '^%d+(,.*)$') or ','
redis.call('SET', k, '0' .. reach, 'PX', 60000)
for i = 5 + 2 * #cands, #ARGV, 2 do
  redis.call('ZREM', lease_key(ARGV[i]), ARGV[i + 1])
end
local grants, out = pump(now, cands, grant_ttl)  -- out: the loads, then grants
out[#out + 1] = '|'
for _, g in ipairs(grants) do out[#out + 1] = g end
return out
