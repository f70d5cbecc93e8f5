-- The longest recorded prefix of a chain, per backend, in one round trip.
-- KEYS: one entry HASH per chain entry, in chain order.
-- ARGV: the depth each entry covers, in the same order.
-- Returns a flat list: backend, depth, slot, backend, depth, slot, ...
local seen, found = {}, {}
for i = #KEYS, 1, -1 do
  local homes = redis.call('HGETALL', KEYS[i])
  for j = 1, #homes, 2 do
    local backend = homes[j]
    if not seen[backend] then
      seen[backend] = true
      found[#found + 1] = backend
      found[#found + 1] = ARGV[i]
      found[#found + 1] = homes[j + 1]
    end
  end
end
return found
