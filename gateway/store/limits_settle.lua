-- Settle a finished request: correct the tpm bucket and the day's and month's usage from the
-- estimate to the real count (either way), and take the request out of those in flight.
-- KEYS: the rpm and tpm buckets' hash, in-flight set, budget hash (all tagged by the key's id).
-- ARGV: tpm (0 = no limit), estimated tokens, actual tokens, request id ("<admitted ms>-…"),
--       1 if the key counts requests in flight (max concurrency) else 0, 1 if it has a daily
--       or monthly budget else 0: what the admit script charged, and so what is corrected;
--       rpm (0 = no limit: its bucket is written back as it stands).
-- Usage is corrected only in the day and month the request was admitted in.
if ARGV[5] == '1' then
  redis.call('ZREM', KEYS[2], ARGV[4])
end
local tpm = tonumber(ARGV[1])
local delta = tonumber(ARGV[3]) - tonumber(ARGV[2])
if delta == 0 then
  return 1
end
if tpm > 0 then
  local rpm = tonumber(ARGV[7])
  local rpm_level, tpm_level = levels(KEYS[1], rpm, tpm)
  set_levels(KEYS[1], rpm, rpm_level, tpm, math.min(tpm, tpm_level - delta))
end
local admitted = ARGV[6] == '1' and tonumber(string.match(ARGV[4], '^(%d+)-'))
if admitted then
  local day, month = calendar(admitted)
  local b = redis.call('HMGET', KEYS[3], 'day', 'day_used', 'month', 'month_used')
  if tonumber(b[1]) == day then
    redis.call('HSET', KEYS[3], 'day_used', math.max(0, (tonumber(b[2]) or 0) + delta))
  end
  if tonumber(b[3]) == month then
    redis.call('HSET', KEYS[3], 'month_used', math.max(0, (tonumber(b[4]) or 0) + delta))
  end
end
return 1
