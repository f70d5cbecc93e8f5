-- Shared by the limits scripts (prepended to each when it is loaded): Redis's clock, token
-- buckets that refill continuously over a minute, and UTC calendar periods for budgets.

local WINDOW = 60000
local DAY = 86400000
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- A bucket holds up to `cap` tokens and refills at cap per minute; absent means full. A key's
-- two buckets (rpm, tpm) live in one hash, as of one time `ts`: one read and one write each.
local function refilled(tokens, ts, cap)
  tokens = tonumber(tokens)
  if not tokens or not ts then
    return cap
  end
  return math.min(cap, tokens + math.max(0, now - ts) * cap / WINDOW)
end

-- The rpm and tpm buckets' levels now (0 for a limit the key does not have).
local function levels(key, rpm, tpm)
  local s = redis.call('HMGET', key, 'rpm', 'tpm', 'ts')
  local ts = tonumber(s[3])
  return rpm > 0 and refilled(s[1], ts, rpm) or 0, tpm > 0 and refilled(s[2], ts, tpm) or 0
end

-- Milliseconds until a bucket at `tokens` holds `want` tokens.
local function wait_for(cap, tokens, want)
  if tokens >= want then
    return 0
  end
  return math.ceil((want - tokens) * WINDOW / cap)
end

-- Store both buckets' levels (a limit the key does not have as empty: full, should it get
-- one); the hash is deleted when both would be full again.
local function set_levels(key, rpm, rpm_level, tpm, tpm_level)
  local full = math.max(rpm > 0 and wait_for(rpm, rpm_level, rpm) or 0,
    tpm > 0 and wait_for(tpm, tpm_level, tpm) or 0)
  if full <= 0 then
    redis.call('DEL', key)
    return
  end
  redis.call('HSET', key, 'rpm', rpm > 0 and tostring(rpm_level) or '',
    'tpm', tpm > 0 and tostring(tpm_level) or '', 'ts', tostring(now))
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
