-- Shared by the admission scripts (prepended to each when it is loaded).
-- Every key lives under one model's hash tag: P = "lg:{model}:" (ARGV[1]).
--   P.."leases:"..backend   ZSET lease id -> expiry (ms)     requests in flight on a backend
--   P.."q:keys"             ZSET api key id -> finish tag     which key is served next
--   P.."q:k:"..key_id       ZSET waiter id -> priority/seq     one key's waiters, in order
--   P.."w:"..waiter         HASH replica, deadline, exclude, cost, weight
--   P.."q:n" / P.."q:seq"   STRING waiters queued / a sequence for FIFO order
--   P.."ft"                 HASH key id -> last finish tag, and VT -> the virtual time
--   P.."r:"..replica        STRING "<alive until ms>,<backend>,<backend>,"  a replica's record:
--                           its heartbeat and the backends its waiters can be granted

local P = ARGV[1]
-- The virtual time's field in the finish-tag hash, read and written with a key's tag in one
-- call (no key id starts with '#': they are "key_<hex>" and "anonymous").
local VT = '#vt'

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function lease_key(backend)
  return P .. 'leases:' .. backend
end

-- Live leases on a backend: those not past their expiry (a replica that died stopped
-- renewing its own). One read; the heartbeat's renew script clears the expired ones out.
local function live(backend, now)
  return redis.call('ZCOUNT', lease_key(backend), '(' .. now, '+inf')
end

-- Give a key's head waiter its weighted-fair-queueing tag, or drop the key if it has none.
local function retag(key_id)
  local head = redis.call('ZRANGE', P .. 'q:k:' .. key_id, 0, 0)[1]
  if not head then
    redis.call('ZREM', P .. 'q:keys', key_id)
    return
  end
  local w = redis.call('HMGET', P .. 'w:' .. head, 'cost', 'weight')
  local cost, weight = tonumber(w[1]) or 1, tonumber(w[2]) or 1
  local t = redis.call('HMGET', P .. 'ft', VT, key_id)
  local vt, ft = tonumber(t[1]) or 0, tonumber(t[2]) or 0
  redis.call('ZADD', P .. 'q:keys', math.max(vt, ft) + cost / weight, key_id)
end

local function drop_waiter(key_id, waiter)
  redis.call('ZREM', P .. 'q:k:' .. key_id, waiter)
  redis.call('DEL', P .. 'w:' .. waiter)
  redis.call('DECR', P .. 'q:n')
end

-- Candidates from ARGV, starting at index i: a count, then backend and slot-count pairs.
local function read_candidates(i)
  local n = tonumber(ARGV[i])
  local cands = {}
  for j = 1, n do
    cands[j] = { ARGV[i + 2 * j - 1], tonumber(ARGV[i + 2 * j]) }
  end
  return cands
end

-- A replica's record: until when it counts as alive (ms) and the backends it can use, as
-- ",a,b," for a plain find. Every script a replica runs for the model moves the lapse to
-- ``now + alive_ttl`` (a few upkeep ticks, at most half the lease TTL): a replica with waiters
-- pumps every tick, so its record lapses a few seconds after it dies — before its leases do,
-- and before many of the slots its survivors free have gone to its dead waiters. A record
-- that had lapsed is started again (its replica is alive). Returns true if there was no live
-- record before (its waiters may have been dropped: the replica queues them again).
local function note_replica(replica, cands, now, alive_ttl)
  local k = P .. 'r:' .. replica
  local names = {}
  for i, c in ipairs(cands) do names[i] = c[1] end
  -- Kept a minute past its lapse, so a replica that stalled learns that it had lapsed. (SET's
  -- GET answers the record it replaced.)
  local old = redis.call('SET', k, (now + alive_ttl) .. ',' .. table.concat(names, ',') .. ',',
    'PX', alive_ttl + 60000, 'GET')
  return (old and tonumber(string.match(old, '^(%d+)')) or 0) <= now
end

-- The backends a live replica can use (",a,b,"), or nil if its record is gone or lapsed.
local function reach_of(replica, now)
  local rec = redis.call('GET', P .. 'r:' .. replica)
  if not rec then return nil end
  local until_ms, reach = string.match(rec, '^(%d+)(,.*)$')
  if not until_ms or tonumber(until_ms) <= now then return nil end
  return reach
end

--: Waiters of one key looked at per turn: past a head that cannot use any free slot (its
--: replica does not reach that backend, or it was excluded there), so a key's requests from
--: another replica are not stuck behind it while the slot stays idle.
local SCAN = 16

-- Hand free slots to waiters, the key with the smallest finish tag first; within a key, the
-- first waiter (by priority, then FIFO) that may use a free slot: its replica is alive and
-- reaches that backend, and the backend is not one it excluded. Waiters past their deadline
-- or of a dead replica are dropped on the way. Returns a flat list of grants (replica,
-- waiter (= lease id), backend for each) and the leases per candidate after them: what
-- ``loads`` would count, known here without asking again.
local function pump(now, cands, grant_ttl)
  local grants = {}
  local room = {}
  local any = false
  for i, c in ipairs(cands) do
    room[i] = c[2] - live(c[1], now)
    if room[i] > 0 then any = true end
  end
  local blocked = {}
  local reach = {}  -- replica -> its backends (false: dead), read once per call
  local steps = 0
  while any and steps < 512 do
    steps = steps + 1
    local entries = redis.call('ZRANGE', P .. 'q:keys', 0, 31, 'WITHSCORES')
    local key_id, tag
    for j = 1, #entries, 2 do
      if not blocked[entries[j]] then
        key_id, tag = entries[j], tonumber(entries[j + 1])
        break
      end
    end
    if not key_id then break end
    local waiters = redis.call('ZRANGE', P .. 'q:k:' .. key_id, 0, SCAN - 1)
    local chosen, target, replica
    local dropped = false
    for _, waiter in ipairs(waiters) do
      local info = redis.call('HMGET', P .. 'w:' .. waiter, 'replica', 'deadline', 'exclude')
      local rep = info[1]
      if rep and reach[rep] == nil then
        reach[rep] = reach_of(rep, now) or false
      end
      if not rep or tonumber(info[2]) < now or not reach[rep] then
        -- Gone, past its deadline (its replica answered 503), or its replica died.
        drop_waiter(key_id, waiter)
        dropped = true
      else
        local excluded = ',' .. (info[3] or '') .. ','
        for i, c in ipairs(cands) do
          local name = ',' .. c[1] .. ','
          if room[i] > 0 and string.find(reach[rep], name, 1, true)
              and not string.find(excluded, name, 1, true) then
            target = i
            break
          end
        end
        if target then
          chosen, replica = waiter, rep
          break
        end
      end
    end
    if not chosen then
      if dropped then
        retag(key_id)  -- look at this key again: its head changed
      else
        blocked[key_id] = true  -- none of its first waiters may go where there is room
      end
    else
      redis.call('ZADD', lease_key(cands[target][1]), now + grant_ttl, chosen)
      room[target] = room[target] - 1
      drop_waiter(key_id, chosen)
      redis.call('HSET', P .. 'ft', VT, tag, key_id, tag)
      retag(key_id)
      grants[#grants + 1] = replica
      grants[#grants + 1] = chosen
      grants[#grants + 1] = cands[target][1]
      any = false
      for i = 1, #cands do
        if room[i] > 0 then any = true end
      end
    end
  end
  local counts = {}
  for i, c in ipairs(cands) do counts[i] = c[2] - room[i] end
  return grants, counts
end

-- Leases per candidate after the change, for the routing snapshot.
local function loads(cands, now)
  local out = {}
  for i, c in ipairs(cands) do
    out[i] = live(c[1], now)
  end
  return out
end
