-- Extend leases that are still running (only those that still exist: XX).
-- ARGV: P, lease_ttl_ms, then backend, lease pairs. Returns how many were still held.
local ttl = tonumber(ARGV[2])
local now = now_ms()
local held = 0
for i = 3, #ARGV, 2 do
  held = held + redis.call('ZADD', lease_key(ARGV[i]), 'XX', 'CH', now + ttl, ARGV[i + 1])
end
return held
