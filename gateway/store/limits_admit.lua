-- Admit one request of one API key: check every limit the key has and, only when all pass,
-- charge them all: one request off the rpm bucket, the estimated tokens off the tpm bucket and
-- onto the day's and month's usage, and the request into the set of those in flight.
-- KEYS: the rpm and tpm buckets' hash, in-flight set, budget hash (all tagged by the key's id).
-- ARGV: rpm, tpm, max concurrency, daily tokens, monthly tokens (0 = no limit),
--       estimated tokens, request id suffix, in-flight expiry (ms).
-- Returns {request id, retry after (ms), rpm remaining, rpm reset (ms), tpm remaining,
--          tpm reset (ms), in flight, day used, day reset (ms), month used, month reset (ms),
--          then the names of the limits that refused, if any}.
local rpm, tpm, max_conc = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local daily, monthly = tonumber(ARGV[4]), tonumber(ARGV[5])
local cost, ttl = tonumber(ARGV[6]), tonumber(ARGV[8])

local refused, retry = {}, 0
local function refuse(name, wait)
  refused[#refused + 1] = name
  retry = math.max(retry, wait)
end

local rpm_level, tpm_level = 0, 0
if rpm > 0 or tpm > 0 then
  rpm_level, tpm_level = levels(KEYS[1], rpm, tpm)
end
if rpm > 0 and rpm_level < 1 then refuse('rpm', wait_for(rpm, rpm_level, 1)) end
if tpm > 0 then
  -- A request larger than the whole minute waits for a full bucket and leaves it in debt.
  local want = math.min(cost, tpm)
  if tpm_level < want then refuse('tpm', wait_for(tpm, tpm_level, want)) end
end

local in_flight = 0
if max_conc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  in_flight = redis.call('ZCARD', KEYS[2])
  if in_flight >= max_conc then refuse('concurrency', 1000) end
end

local day_used, month_used, day_reset, month_reset = 0, 0, 0, 0
local today, this_month
if daily > 0 or monthly > 0 then
  today, this_month, day_reset, month_reset = calendar(now)
  local b = redis.call('HMGET', KEYS[3], 'day', 'day_used', 'month', 'month_used')
  if tonumber(b[1]) == today then day_used = tonumber(b[2]) or 0 end
  if tonumber(b[3]) == this_month then month_used = tonumber(b[4]) or 0 end
  if daily > 0 and day_used >= daily then refuse('daily', day_reset) end
  if monthly > 0 and month_used >= monthly then refuse('monthly', month_reset) end
end

local request_id = ''
if #refused == 0 then
  request_id = string.format('%d-%s', now, ARGV[7])
  if rpm > 0 or tpm > 0 then
    if rpm > 0 then rpm_level = rpm_level - 1 end
    if tpm > 0 then tpm_level = tpm_level - cost end
    set_levels(KEYS[1], rpm, rpm_level, tpm, tpm_level)
  end
  if max_conc > 0 then
    redis.call('ZADD', KEYS[2], now + ttl, request_id)
    if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
    in_flight = in_flight + 1
  end
  if daily > 0 or monthly > 0 then
    day_used, month_used = day_used + cost, month_used + cost
    redis.call('HSET', KEYS[3], 'day', today, 'day_used', day_used,
      'month', this_month, 'month_used', month_used)
    redis.call('PEXPIRE', KEYS[3], month_reset + DAY)
  end
end

local reply = {
  request_id, retry,
  math.max(0, math.floor(rpm_level)), rpm > 0 and wait_for(rpm, rpm_level, rpm) or 0,
  math.max(0, math.floor(tpm_level)), tpm > 0 and wait_for(tpm, tpm_level, tpm) or 0,
  in_flight, day_used, day_reset, month_used, month_reset,
}
for _, name in ipairs(refused) do reply[#reply + 1] = name end
return reply
