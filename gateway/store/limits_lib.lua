-- Shared by the limits scripts (prepended to each when it is loaded): Redis's clock, token
-- buckets that refill continuously over a minute, and UTC calendar periods for budgets.

local WINDOW = 60000
local DAY = 86400000
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- A bucket holds up to `cap` tokens and refills at cap per minute; absent means full.
local function level(key, cap)
  local s = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens, ts = tonumber(s[1]), tonumber(s[2])
  if not tokens or not ts then
    return cap
  end
  return math.min(cap, tokens + math.max(0, now - ts) * cap / WINDOW)
end

-- Milliseconds until a bucket at `tokens` holds `want` tokens.
local function wait_for(cap, tokens, want)
  if tokens >= want then
    return 0
  end
  return math.ceil((want - tokens) * WINDOW / cap)
end

-- Store a bucket's level; a bucket that would be full again is deleted when it is.
local function set_level(key, cap, tokens)
  local full = wait_for(cap, tokens, cap)
  if full <= 0 then
    redis.call('DEL', key)
    return
  end
  redis.call('HSET', key, 'tokens', tostring(tokens), 'ts', tostring(now))
  redis.call('PEXPIRE', key, full + 1000)
end

local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

-- The UTC day (yyyymmdd) and month (yyyymm) of a time in ms, and ms until each ends.
local function calendar(ms)
  local days = math.floor(ms / DAY)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  local ny, nm = y, m + 1
  if nm == 13 then ny, nm = y + 1, 1 end
  return y * 10000 + m * 100 + d, y * 100 + m,
    (days + 1) * DAY - ms, days_from_civil(ny, nm, 1) * DAY - ms
end
