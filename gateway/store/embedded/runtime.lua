-- The Lua side of memory:// (gateway/store/embedded/scripting.py): the sandbox the gateway's
-- scripts run in, redis.call/pcall and the redis.* helpers, and the runner that sets
-- KEYS/ARGV, calls a compiled script under an error handler and flattens its reply.
-- Loaded once per store; returns compile, run and run_table.
local call_python, sha1hex, STACK_ITEMS = ...
local G = _G
local loadstring, setfenv, xpcall, type = loadstring, setfenv, xpcall, type
local select, unpack, error, next = select, unpack, error, next
local tostring, setmetatable, getinfo = tostring, setmetatable, debug.getinfo
local sub, find, gsub = string.sub, string.find, string.gsub
for _, name in ipairs({'python', 'jit', 'io', 'os', 'package', 'require', 'module', 'dofile',
                       'loadfile', 'load', 'print', 'newproxy', 'gcinfo'}) do
  G[name] = nil
end

setmetatable(G, {
  __index = function(_, name)
    error("Script attempted to access nonexistent global variable '" .. tostring(name) .. "'", 2)
  end,
  __metatable = false,
})
local env = {}
env._G = env
setmetatable(env, {
  __index = G,
  __newindex = function(_, name)
    error('Attempt to modify a readonly table', 2)
  end,
  __metatable = false,
})

local function reply(first, second, ...)
  if first == true then return {second, ...} end
  if first == false then
    if second == nil then return false end
    return nil, second
  end
  if first == nil then return {ok = second} end
  return first
end

-- The time (µs) read by Python as it started the running script, TIME's reply: every script
-- of the gateway asks for it once, and answering here saves that call its crossing. (A double
-- holds today's microseconds exactly: they stay below 2^53 until the year 2255.)
local clock = 0
local format, floor = string.format, math.floor
local function time()
  local s = floor(clock / 1000000)
  return {format('%d', s), format('%d', clock - s * 1000000)}
end

local redis = {}
G.redis = redis
function redis.call(name, ...)
  if name == 'TIME' and select('#', ...) == 0 then return time() end
  local value, err = reply(call_python(name, ...))
  if err ~= nil then error({err = err}) end
  return value
end
function redis.pcall(name, ...)
  if name == 'TIME' and select('#', ...) == 0 then return time() end
  local value, err = reply(call_python(name, ...))
  if err ~= nil then return {err = err} end
  return value
end
function redis.error_reply(msg)
  if type(msg) ~= 'string' then return {err = 'ERR wrong number or type of arguments'} end
  if sub(msg, 1, 1) == '-' then msg = sub(msg, 2) end
  if not find(msg, ' ', 1, true) then msg = 'ERR ' .. msg end
  return {err = (gsub(msg, '[\r\n]+$', ''))}
end
function redis.status_reply(msg)
  if type(msg) ~= 'string' then return {err = 'ERR wrong number or type of arguments'} end
  return {ok = msg}
end
function redis.sha1hex(text) return sha1hex(text) end
function redis.log() end
function redis.replicate_commands() return true end
function redis.set_repl() end
redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING = 0, 1, 2, 3
redis.REPL_NONE, redis.REPL_AOF, redis.REPL_SLAVE, redis.REPL_ALL = 0, 1, 2, 3
redis.REPL_REPLICA = 2

local function on_error(err)
  if type(err) ~= 'table' or type(err.err) ~= 'string' then
    err = {err = 'ERR ' .. tostring(err)}
  end
  for level = 2, 32 do
    local info = getinfo(level, 'Sl')
    if not info then break end
    if info.source == '@user_script' then err.line = info.currentline break end
  end
  return err
end

local function flatten(v, out, n)
  local t = type(v)
  if t == 'string' or t == 'number' then
    n = n + 1; out[n] = v
  elseif t == 'table' then
    local e, s = v.err, v.ok
    if type(e) == 'string' then
      out[n + 1], out[n + 2], out[n + 3] = true, -2, e; n = n + 3
    elseif type(s) == 'string' then
      out[n + 1], out[n + 2], out[n + 3] = true, -1, s; n = n + 3
    else
      local count = 0
      while v[count + 1] ~= nil do count = count + 1 end
      out[n + 1], out[n + 2] = true, count; n = n + 2
      for i = 1, count do n = flatten(v[i], out, n) end
    end
  elseif v == true then
    n = n + 1; out[n] = 1
  else
    n = n + 1; out[n] = false
  end
  return n
end

local function leaked()
  local name = next(env)
  if name == '_G' then name = next(env, name) end
  if name == nil then return nil end
  for k in next, env do if k ~= '_G' then env[k] = nil end end
  return name
end

local function execute(fn, sha, keys, argv)
  G.KEYS, G.ARGV = keys, argv
  local ok, result = xpcall(fn, on_error)
  local name = leaked()
  if name ~= nil then
    ok, result = false, {err = 'ERR Attempt to modify a readonly table: ' .. tostring(name)}
  end
  if not ok then
    local msg = result.err .. ' script: ' .. sha
    if result.line then msg = msg .. ', on @user_script:' .. result.line .. '.' end
    return true, -2, msg
  end
  local t = type(result)
  if t == 'string' or t == 'number' then return result end
  if t ~= 'table' then return result == true and 1 or false end
  local out = {}
  local n = flatten(result, out, 0)
  if n > STACK_ITEMS then return nil, out, n end
  return unpack(out, 1, n)
end

local function run(fn, sha, micros, nkeys, ...)
  clock = micros
  local argv = {select(nkeys + 1, ...)}
  local keys = {...}
  for i = #keys, nkeys + 1, -1 do keys[i] = nil end
  return execute(fn, sha, keys, argv)
end

local function run_table(fn, sha, micros, nkeys, all)
  clock = micros
  local keys, argv = {}, {}
  for i = 1, nkeys do keys[i] = all[i] end
  for i = nkeys + 1, #all do argv[i - nkeys] = all[i] end
  return execute(fn, sha, keys, argv)
end

local function compile(text)
  local fn, err = loadstring(text, '@user_script')
  if not fn then return nil, err end
  setfenv(fn, env)
  return fn
end

return compile, run, run_table
