-- A replica's grant mailbox (KEYS[1]), taken whole if it still holds ARGV[1]: a grant posted
-- long enough ago that a live replica would have read it (its grant loop waits on the mailbox
-- with BLPOP), so this one is dead or stalled. Returns the entries taken, oldest first, or {}
-- if that grant was read (the replica reads its mailbox; so it read every older grant too).
local entries = redis.call('LRANGE', KEYS[1], 0, -1)
for _, entry in ipairs(entries) do
  if entry == ARGV[1] then
    redis.call('DEL', KEYS[1])
    return entries
  end
end
return {}
