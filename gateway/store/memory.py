"""``memory://``: the store in this process — fakeredis running the gateway's Lua scripts,
with each script compiled once instead of on every call.

Stock fakeredis (2.41) spends most of a script call on two things the gateway does not need:
its ``EVAL`` hands the script's *text* to ``LuaRuntime.execute``, which parses and compiles
it again on every call (~3.5 KB for a limits script), and then runs
``collectgarbage()`` — a *full* Lua collection, whose cost grows with everything the
interpreter holds — after every call. Together that was ~69% of a gateway's core serving
``memory://``. After those, the next cost is fakeredis's check for scripts that set globals:
before every ``redis.call`` it copies the names of all ~40 Lua globals into a Python set.

What this module changes, and nothing else of fakeredis's ``EVAL`` (KEYS/ARGV tables, the
RESP2 replies, the error messages and how they are wrapped, the current-socket pointer, the
refusal of scripts that set globals all stay fakeredis's own code):

- :class:`CompiledScripts` stands in for the server's Lua runtime. ``execute(text)`` calls
  the function compiled from ``text`` the first time it was seen (a bounded cache), and the
  full collection after each script is one incremental step (``collectgarbage("step", 0)``)
  — Lua's own incremental collector paces the rest, so memory stays bounded (tested over
  20,000 calls in ``tests/store/test_memory.py``).
- :class:`MemorySocket` checks for new globals with one Lua loop over the globals table
  (no Python set per ``redis.call``); only when it finds one does fakeredis's own check run,
  which refuses the script with fakeredis's message and drops the globals.

**The fakeredis internals this depends on** (hence the ``fakeredis`` range pinned in
``pyproject.toml``; ``tests/store`` runs every store test against a real Redis and against
this, and ``test_memory.py`` fails if a script is compiled more than once):

- ``ScriptingCommandsMixin.eval`` calls ``lua_runtime.execute(script)`` and then
  ``lua_runtime.execute("collectgarbage()")``, where ``lua_runtime`` is what
  ``_get_server_runtime(server)`` returns and stores as ``server._lua_runtime``;
- ``_get_server_runtime`` leaves the names a script may see as a global in
  ``server._lua_expected_globals``;
- ``_lua_redis_call(lua_runtime, expected_globals, op, *args)`` is what ``redis.call`` and
  ``redis.pcall`` reach, with ``_check_for_lua_globals`` as its first step. Its body is
  copied below, with its helpers (``decode_command_bytes``, ``COMMANDS_WITH_SUB``,
  ``_convert_redis_arg``);
- ``scripting_mixin.LUA_MODULE`` is the lupa module (Lua 5.1) whose errors it raises;
- ``FakeBaseAsyncConnection._connect`` builds the ``AsyncFakeSocket`` with its reader and
  writer (``FakeReader``, ``FakeWriter``) from the connection's ``_server``, ``db``,
  ``_client_class``, ``_lua_modules`` and ``_client_info``; ``aioredis.FakeRedis`` takes the
  connection class as ``connection_class``.

**What it does not reach, and the alternative.** With this, a request's store traffic costs
the gateway's core ~40% less than before, but still about three times what ``redis://`` costs it
(``loadtest/results/memory-store.md``). What is left is fakeredis's general command machinery
behind each of the ~70 ``redis.call`` a request's scripts make (~12 µs each here, against
~8 µs for a whole call, script included, in ``redis-server``), and no adapter can remove
it. An in-process store of our own would be needed for that. It could take one of two
shapes:

- Lua kept, with ``redis.call`` bound straight to Python dicts (strings, hashes and sorted
  sets with expiry, ~20 commands, plus the part of the redis-py client API the gateway uses):
  ~400 lines.
- The scripts written again in Python: ~1,000 lines kept in step with the ``.lua`` files by
  hand, where a drift is a limit or a lease that holds on one store and not on the other.

Either would drop fakeredis, and have to pass ``tests/store``, which runs against real Redis
too.
"""

from __future__ import annotations

from typing import Any

from fakeredis import FakeServer, aioredis
from fakeredis import _msgs as msgs
from fakeredis._commands import COMMANDS_WITH_SUB
from fakeredis._helpers import SimpleError, decode_command_bytes
from fakeredis.commands_mixins.scripting_mixin import (
    LUA_MODULE,
    _check_for_lua_globals,
    _convert_redis_arg,
)

__all__ = ["CompiledScripts", "MemoryConnection", "MemorySocket"]

#: Distinct script texts kept compiled; the gateway has about a dozen, so this only bounds a
#: client that sends ever new texts with ``EVAL``.
COMPILED_SCRIPTS = 256
#: What fakeredis's ``EVAL`` runs after each script: a full collection.
_FULL_COLLECTION = "collectgarbage()"
#: Lua: given the globals a script may see, a function answering whether the globals table
#: holds any other name. The table and ``next`` are captured here, so a script that replaces
#: ``_G`` or ``next`` cannot hide a global from the check.
_NEW_GLOBALS_CHECK = b"""
local expected = ...
local globals, next = _G, next
return function()
  for name in next, globals do
    if expected[name] == nil then return true end
  end
  return false
end
"""


class CompiledScripts:
    """The server's Lua runtime, with ``execute`` of a script's text calling the function
    compiled from it once, and the full collection after each script one incremental step.
    Every other attribute is the runtime's own."""

    def __init__(self, runtime: Any, expected_globals: set[Any]) -> None:
        self._runtime = runtime
        self._compiled: dict[bytes | str, Any] = {}
        #: Captured now: a script may rebind the global ``collectgarbage``.
        self._collect = runtime.globals().collectgarbage
        expected = runtime.table_from({name: True for name in expected_globals})
        self.has_new_globals = runtime.execute(_NEW_GLOBALS_CHECK, expected)
        #: Scripts compiled so far (the tests read it: one compilation per text).
        self.compilations = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runtime, name)

    def execute(self, code: bytes | str, *args: Any) -> Any:
        if code == _FULL_COLLECTION:
            self._collect(b"step", 0)
            return None
        function = self._compiled.get(code)
        if function is None:
            function = self._compile(code)
        return function(*args)

    def _compile(self, code: bytes | str) -> Any:
        try:
            function = self._runtime.compile(code)
        except LUA_MODULE.LuaSyntaxError:  # the Lua 5.1 module's class, not lupa's default
            # lupa words a syntax error differently from ``compile`` than from ``execute``;
            # ``execute`` fails on the same text as it loads it (nothing runs), in the words
            # fakeredis's EVAL wraps.
            return self._runtime.execute(code)
        if len(self._compiled) >= COMPILED_SCRIPTS:
            del self._compiled[next(iter(self._compiled))]  # the oldest
        self._compiled[code] = function
        self.compilations += 1
        return function


class MemorySocket(aioredis.AsyncFakeSocket):
    """fakeredis's socket, its server's Lua runtime a :class:`CompiledScripts`, its
    ``redis.call`` checking for new globals in Lua first."""

    def _get_server_runtime(self, server: FakeServer) -> Any:
        runtime = super()._get_server_runtime(server)
        if not isinstance(runtime, CompiledScripts):
            s: Any = server
            runtime = s._lua_runtime = CompiledScripts(runtime, s._lua_expected_globals)
        return runtime

    def _lua_redis_call(
        self, lua_runtime: Any, expected_globals: set[Any], op: bytes, *args: Any
    ) -> Any:
        """fakeredis's ``_lua_redis_call`` line for line, but for its first step: the
        globals are checked in Lua, and fakeredis's own check (its refusal, its message, its
        clean-up) runs only when that finds a new one."""
        runtime: Any = self._server._lua_runtime  # type: ignore[attr-defined]
        if runtime.has_new_globals():
            _check_for_lua_globals(lua_runtime, expected_globals)  # raises
        cmd = decode_command_bytes(op)
        if cmd in COMMANDS_WITH_SUB and args:
            # A container command: its subcommand is part of the name it is registered under.
            cmd += " " + decode_command_bytes(_convert_redis_arg(args[0]))
            args = args[1:]
        func, sig = self._name_to_func(cmd)
        if func is None:
            raise SimpleError(msgs.WRONG_ARGS_MSG7)
        new_args = [_convert_redis_arg(arg) for arg in args]
        result = self._run_command(func, sig, new_args, True)
        return self._convert_redis_result(lua_runtime, result)


class MemoryConnection(aioredis.FakeAsyncRedisConnection):
    """fakeredis's async connection, its socket a :class:`MemorySocket`: what
    ``aioredis.FakeRedis(connection_class=MemoryConnection)`` opens."""

    async def _connect(self) -> None:
        # FakeBaseAsyncConnection._connect, with the socket class replaced.
        server: Any = self._server
        if not server.connected:
            raise self._connection_error_class(msgs.CONNECTION_ERROR_MSG)
        self._sock = MemorySocket(
            server,
            self.db,
            client_class=self._client_class,
            lua_modules=self._lua_modules,
            client_info=self._client_info,
        )
        self._reader = aioredis.FakeReader(self._sock)
        self._writer = aioredis.FakeWriter(self._sock)
