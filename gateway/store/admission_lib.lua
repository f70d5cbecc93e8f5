-- Shared by the admission scripts (prepended to each when it is loaded).
-- Every key lives under one model's hash tag: P = "lg:{model}:" (ARGV[1]).
--   P.."leases:"..backend   ZSET lease id -> expiry (ms)     requests in flight on a backend
--   P.."q:keys"             ZSET api key id -> finish tag     which key is served next
--   P.."q:k:"..key_id       ZSET waiter id -> priority/seq     one key's waiters, in order
--   P.."w:"..waiter         HASH replica, deadline, exclude, cost, weight
--   P.."q:n" / P.."q:seq"   STRING waiters queued / a sequence for FIFO order
--   P.."vt" / P.."ft"       STRING virtual time / HASH key id -> last finish tag

local P = ARGV[1]

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function lease_key(backend)
  return P .. 'leases:' .. backend
end

-- Live leases on a backend, once the expired ones (a replica that died) are gone.
local function live(backend, now)
  local k = lease_key(backend)
  redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
  return redis.call('ZCARD', k)
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
  local vt = tonumber(redis.call('GET', P .. 'vt')) or 0
  local ft = tonumber(redis.call('HGET', P .. 'ft', key_id)) or 0
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

-- Hand free slots to waiters, the key with the smallest finish tag first. Returns a flat
-- list of grants: replica, waiter (= lease id), backend for each.
local function pump(now, cands, grant_ttl)
  local grants = {}
  local room = {}
  local any = false
  for i, c in ipairs(cands) do
    room[i] = c[2] - live(c[1], now)
    if room[i] > 0 then any = true end
  end
  local blocked = {}
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
    local head = redis.call('ZRANGE', P .. 'q:k:' .. key_id, 0, 0)[1]
    if not head then
      redis.call('ZREM', P .. 'q:keys', key_id)
    else
      local info = redis.call('HMGET', P .. 'w:' .. head, 'replica', 'deadline', 'exclude')
      if not info[1] or tonumber(info[2]) < now then
        drop_waiter(key_id, head)  -- gone, or past its deadline: its replica answered 503
        retag(key_id)
      else
        local excluded = ',' .. (info[3] or '') .. ','
        local target
        for i, c in ipairs(cands) do
          if room[i] > 0 and not string.find(excluded, ',' .. c[1] .. ',', 1, true) then
            target = i
            break
          end
        end
        if not target then
          blocked[key_id] = true  -- its head may not go where there is room
        else
          redis.call('ZADD', lease_key(cands[target][1]), now + grant_ttl, head)
          room[target] = room[target] - 1
          drop_waiter(key_id, head)
          redis.call('SET', P .. 'vt', tag)
          redis.call('HSET', P .. 'ft', key_id, tag)
          retag(key_id)
          grants[#grants + 1] = info[1]
          grants[#grants + 1] = head
          grants[#grants + 1] = cands[target][1]
          any = false
          for i = 1, #cands do
            if room[i] > 0 then any = true end
          end
        end
      end
    end
  end
  return grants
end

-- Leases per candidate after the change, for the routing snapshot.
local function loads(cands, now)
  local out = {}
  for i, c in ipairs(cands) do
    out[i] = redis.call('ZCARD', lease_key(c[1]))
  end
  return out
end
