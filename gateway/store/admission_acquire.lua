-- Acquire a slot lease, or queue for one.
-- ARGV: P, key_id, waiter, replica, weight, cost, priority, timeout_ms, bound,
--       grant_ttl_ms, lease_ttl_ms, alive_ttl_ms, exclude (comma list), only_free (1|0),
--       candidates (count, backend, slots…)
-- The candidates are every ready backend of the model this replica can use (the routing
-- policy's choice first): they become the replica's record, which pumps on any replica
-- read to grant this waiter only a backend its replica can use.
-- The waiter joins its key's queue and the queue is pumped at once: with free slots and
-- no one ahead of it (by fair order), it is granted in the same call (with no one waiting at
-- all, without joining the queue: the same outcome in fewer calls). Returns
-- {status, backend or position, queued, 1 if the replica's record had lapsed (its other
-- waiters may have been dropped) else 0, loads…, "|", grants…}; status granted|queued|full.
-- With only_free, the waiter is granted only as when no one waits (a free slot, an empty
-- queue) and never queued: otherwise status busy, and nothing changed but the replica's
-- record. The request path asks so beside the limits check, before knowing its verdict
-- (docs/admission.md, "One round trip").
-- Running it twice for one waiter (a retry after a broken connection) is harmless: a
-- waiter that already holds a lease gets it back, one already queued stays in its place.
local key_id, waiter, replica = ARGV[2], ARGV[3], ARGV[4]
local weight, cost, priority = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local timeout, bound = tonumber(ARGV[8]), tonumber(ARGV[9])
local grant_ttl, lease_ttl = tonumber(ARGV[10]), tonumber(ARGV[11])
local alive_ttl, exclude = tonumber(ARGV[12]), ARGV[13]
local only_free = ARGV[14] == '1'
local cands = read_candidates(15)
local now = now_ms()

local lapsed

-- counts (leases per candidate) and queued (waiters queued): passed when this call already
-- knows them, else read here.
local function reply(status, detail, grants, counts, queued)
  queued = queued or tonumber(redis.call('GET', P .. 'q:n')) or 0
  local out = { status, detail, queued, lapsed and 1 or 0 }
  for _, n in ipairs(counts or loads(cands, now)) do out[#out + 1] = n end
  out[#out + 1] = '|'
  for _, g in ipairs(grants) do out[#out + 1] = g end
  return out
end

lapsed = note_replica(replica, cands, now, alive_ttl)
for _, c in ipairs(cands) do
  local expiry = redis.call('ZSCORE', lease_key(c[1]), waiter)
  if expiry and tonumber(expiry) > now then
    redis.call('ZADD', lease_key(c[1]), 'XX', now + lease_ttl, waiter)
    return reply('granted', c[1], {})
  end
end
-- With no one queued this waiter is not queued either (a waiter's hash and its count in
-- q:n come and go together): the usual case asks no more.
local queued = tonumber(redis.call('GET', P .. 'q:n')) or 0
local already = queued > 0 and redis.call('EXISTS', P .. 'w:' .. waiter) == 1
if not already and queued == 0 and bound > 0 then
  -- No one waits: do what joining the queue and pumping it would do for this waiter alone,
  -- in a third of the calls (the usual case). The pump would grant the first candidate with
  -- a free slot that the waiter did not exclude (having purged every candidate's expired
  -- leases to count them) and move the key's finish tag and the virtual time on by
  -- cost / weight; nothing else in the queue changes, as nothing else is in it.
  local excluded, free, counts = ',' .. exclude .. ',', nil, {}
  for i, c in ipairs(cands) do
    counts[i] = live(c[1], now)
    if not free and c[2] > counts[i] and not string.find(excluded, ',' .. c[1] .. ',', 1, true)
    then
      free = i
    end
  end
  if free then
    local t = redis.call('HMGET', P .. 'ft', VT, key_id)
    local tag = math.max(tonumber(t[1]) or 0, tonumber(t[2]) or 0) + cost / weight
    redis.call('HSET', P .. 'ft', VT, tag, key_id, tag)
    redis.call('ZADD', lease_key(cands[free][1]), now + lease_ttl, waiter)
    counts[free] = counts[free] + 1
    return reply('granted', cands[free][1], {}, counts, 0)
  end
  if only_free then
    return reply('busy', '', {}, counts, 0)
  end
end
if only_free then
  return reply('busy', '', {}, nil, queued)
end
local grants = {}
if not already and queued >= bound then
  -- Full: but slots may have freed without a release (expired leases), so pump first.
  grants = pump(now, cands, grant_ttl)
  queued = tonumber(redis.call('GET', P .. 'q:n')) or 0
  if queued >= bound then
    -- Still full. A flooding key must not lock the others out of the queue: if some key
    -- holds more waiters than this one's key would with this request, its newest waiter
    -- makes room (and is refused: a grant with no backend); otherwise this request is.
    local mine = redis.call('ZCARD', P .. 'q:k:' .. key_id)
    local victim_key, most = nil, mine + 1
    for _, other in ipairs(redis.call('ZRANGE', P .. 'q:keys', 0, -1)) do
      local n = redis.call('ZCARD', P .. 'q:k:' .. other)
      if other ~= key_id and n > most then
        victim_key, most = other, n
      end
    end
    if not victim_key then
      return reply('full', queued, grants)
    end
    local victim = redis.call('ZRANGE', P .. 'q:k:' .. victim_key, -1, -1)[1]
    local victim_replica = redis.call('HGET', P .. 'w:' .. victim, 'replica')
    drop_waiter(victim_key, victim)
    if victim_replica then
      grants[#grants + 1] = victim_replica
      grants[#grants + 1] = victim
      grants[#grants + 1] = ''
    end
  end
end

if not already then
  local q = P .. 'q:k:' .. key_id
  local seq = redis.call('INCR', P .. 'q:seq')
  -- Higher priority first within the key; FIFO within a priority.
  redis.call('ZADD', q, -priority * 1e12 + seq, waiter)
  local w = P .. 'w:' .. waiter
  redis.call('HSET', w, 'replica', replica, 'deadline', now + timeout, 'exclude', exclude,
    'cost', cost, 'weight', weight)
  redis.call('PEXPIRE', w, timeout + 60000)
  redis.call('INCR', P .. 'q:n')
  if redis.call('ZRANGE', q, 0, 0)[1] == waiter then
    retag(key_id)
  end
end

local more, counts = pump(now, cands, grant_ttl)
for _, g in ipairs(more) do grants[#grants + 1] = g end
local mine
local others = {}
for i = 1, #grants, 3 do
  if grants[i + 1] == waiter then
    mine = grants[i + 2]
  else
    others[#others + 1] = grants[i]
    others[#others + 1] = grants[i + 1]
    others[#others + 1] = grants[i + 2]
  end
end
if mine then
  redis.call('ZADD', lease_key(mine), 'XX', now + lease_ttl, waiter)  -- (no new lease)
  return reply('granted', mine, others, counts)
end
local queued_now = redis.call('GET', P .. 'q:n')
return reply('queued', queued_now, others, counts, tonumber(queued_now) or 0)
