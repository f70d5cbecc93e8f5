-- A waiter gives up (deadline, or its client went away): leave the queue.
-- ARGV: P, key_id, waiter. Returns 1 if it was still waiting, 0 if it had been granted
-- meanwhile (the grant is on its way and will be given back by the replica).
local key_id, waiter = ARGV[2], ARGV[3]
local q = P .. 'q:k:' .. key_id
local was_head = redis.call('ZRANGE', q, 0, 0)[1] == waiter
if redis.call('ZREM', q, waiter) == 0 then
  return 0
end
redis.call('DEL', P .. 'w:' .. waiter)
redis.call('DECR', P .. 'q:n')
if was_head then
  retag(key_id)
end
return 1
