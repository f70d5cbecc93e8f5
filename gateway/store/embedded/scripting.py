"""The Lua side: scripts compiled once and cached by SHA1, run with ``KEYS``/``ARGV``, their
``redis.call`` bound straight to the keyspace's command handlers, their replies converted as
Redis converts them.

- **The runtime** is lupa's LuaJIT 2.1 (``lupa.luajit21``) where lupa's build has it, else
  its Lua 5.1 (``lupa.lua51``). Redis embeds PUC Lua 5.1; LuaJIT speaks the same language
  (5.1's, with its ``bit`` library, which Redis carries too) and runs the gateway's scripts
  in ~20% less of the core (``loadtest/results/memory-store.md``); every store test and the
  differential suite run on both. ``runtime.lua`` beside this module sets it up and takes out
  what a Redis script cannot reach (``python``, ``jit``, ``io``, ``os``, ``require``, files).
- **Globals.** A script runs in an environment whose writes raise Redis 7's "Attempt to
  modify a readonly table" (one metatable on a proxy: reads cost one ``__index`` hop, writes
  of new names fail), and reading a global that does not exist raises Redis's "Script
  attempted to access nonexistent global variable"; a ``rawset`` past the proxy is caught
  after the script and answered as an error. Unlike Redis, the library tables themselves
  (``string``, ``redis``…) are not frozen.
- **TIME without a crossing.** Every script of the gateway asks for ``TIME`` once; the
  runtime answers it in Lua with the time read as the script started (as Redis's own clock
  moves on during a script by what the script took, microseconds).
- **One crossing per call.** ``redis.call(...)`` is a Lua function that calls
  :meth:`Scripts.call` in Python and turns what comes back into Redis's Lua value: an
  integer or a string as is, nil as ``false``, an array as a table (Python returns it as a
  tuple ``(True, items…)``, unpacked onto the Lua stack by lupa), a status as ``{ok=…}``, an
  error as ``{err=…}`` — raised by ``call``, returned by ``pcall``. The script's own reply is
  flattened in Lua into one tuple (markers ``true, n`` before an array's ``n`` items) and
  read back in Python in one pass, so no Lua table is walked from Python.
- **Replies** follow Redis: numbers truncated to integers, ``true`` → 1, ``false``/nil → nil,
  a table read as an array up to its first nil, ``{err=…}``/``{ok=…}``; argument numbers are
  written with ``%.17g``. Errors carry Redis 7's `` script: <sha>, on @user_script:<line>.``,
  but for an error raised by ``return redis.call(...)``: there ``redis.call``, a Lua function
  here and a C one in Redis, was a tail call, which takes the script's frame (and its line)
  off Lua's stack, so the message ends at the digest.
"""

from __future__ import annotations

import hashlib
import math
import time
from importlib import resources
from typing import Any

import lupa.lua51

try:
    import lupa.luajit21 as luajit21
except ImportError:  # a lupa build without LuaJIT (it bundles it on the common platforms)
    luajit21 = None

from gateway.store.embedded.keyspace import Handler, Keyspace
from gateway.store.embedded.values import CommandError, Status, parse_int

__all__ = ["LUA_RUNTIMES", "Scripts"]

#: lupa's runtime modules this process can run scripts on, the one used by default first.
LUA_RUNTIMES: dict[str, Any] = {
    name: module for name, module in (("luajit", luajit21), ("lua51", lupa.lua51)) if module
}

#: Distinct scripts kept compiled (the gateway has about a dozen); the oldest goes first, so a
#: client sending ever new texts with ``EVAL`` cannot grow memory without bound.
CACHED_SCRIPTS = 1000
#: Arguments or reply items past which lupa's stack is not used (Lua's C stack holds ~8000).
STACK_ITEMS = 4000
_INT64 = 2**63
#: Integers below this are written by ``%.17g`` with all their digits.
_EXACT = 10**17
_BAD_ARGUMENT = b"ERR Lua redis lib command arguments must be strings or integers"
_UNKNOWN = b"ERR Unknown Redis command called from script"
_NOT_ALLOWED = b"ERR This Redis command is not allowed from script"
_NOT_IN_SCRIPTS = frozenset({b"EVAL", b"EVALSHA", b"EVAL_RO", b"EVALSHA_RO", b"SCRIPT", b"BLPOP"})
_ARITY = b"ERR Wrong number of args calling Redis command from script"


def _lua_number(value: Any) -> bytes:
    return b"%.17g" % value


def _reply_integer(value: int | float) -> int:
    """A Lua number as Redis replies it: ``(long long)`` of the double."""
    if type(value) is float:
        if not math.isfinite(value) or not -_INT64 <= value < _INT64:
            return -_INT64
        return int(value)
    return int(value) if -_INT64 <= value < _INT64 else -_INT64


class Scripts:
    """The script cache and the Lua runtime that runs its scripts against ``keyspace``."""

    def __init__(
        self,
        keyspace: Keyspace,
        commands: dict[bytes, tuple[Handler, int]],
        runtime: str | None = None,
    ) -> None:
        self.keyspace = keyspace
        self.commands = commands
        #: Which of :data:`LUA_RUNTIMES` runs the scripts.
        self.runtime = runtime or next(iter(LUA_RUNTIMES))
        self.lua: Any = LUA_RUNTIMES[self.runtime].LuaRuntime(
            encoding=None, unpack_returned_tuples=True, register_eval=False, register_builtins=False
        )
        setup = resources.files(__package__).joinpath("runtime.lua").read_bytes()
        self._compile, self._run, self._run_table = self.lua.execute(
            setup, self.call, _sha1hex, STACK_ITEMS
        )
        #: Lowercase hex digest (bytes) → the compiled function.
        self._cached: dict[bytes, Any] = {}
        #: Scripts compiled so far (the tests read it: one compilation per text).
        self.compilations = 0

    # -- the cache ----------------------------------------------------------------------

    def load(self, text: bytes) -> str:
        """Compile ``text`` (once) and cache it; its SHA1."""
        sha = hashlib.sha1(text).hexdigest()
        digest = sha.encode()
        if digest not in self._cached:
            compiled = self._compile(text)
            if type(compiled) is tuple:
                message = compiled[1].decode(errors="replace")
                raise CommandError(f"ERR Error compiling script (new function): {message}")
            if len(self._cached) >= CACHED_SCRIPTS:
                del self._cached[next(iter(self._cached))]
            self._cached[digest] = compiled
            self.compilations += 1
        return sha

    def exists(self, sha: bytes) -> bool:
        return sha.lower() in self._cached

    def flush(self) -> None:
        self._cached.clear()

    # -- running ------------------------------------------------------------------------

    def evalsha(self, sha: bytes, numkeys: bytes, args: tuple[bytes, ...]) -> Any:
        function = self._cached.get(sha)
        if function is None:
            sha = sha.lower()
            function = self._cached.get(sha)
            if function is None:
                raise CommandError("NOSCRIPT No matching script. Please use EVAL.")
        return self._call(function, sha, numkeys, args)

    def eval(self, text: bytes, numkeys: bytes, args: tuple[bytes, ...]) -> Any:
        digest = self.load(text).encode()
        return self._call(self._cached[digest], digest, numkeys, args)

    def _call(self, function: Any, sha: bytes, numkeys: bytes, args: tuple[bytes, ...]) -> Any:
        count = int(numkeys) if numkeys.isdigit() and len(numkeys) < 10 else parse_int(numkeys)
        if count > len(args):
            raise CommandError("ERR Number of keys can't be greater than number of args")
        if count < 0:
            raise CommandError("ERR Number of keys can't be negative")
        micros = time.time_ns() // 1000  # the script's TIME (runtime.lua)
        if len(args) > STACK_ITEMS:
            table = self.lua.table_from(list(args))
            result = self._run_table(function, sha, micros, count, table)
        else:
            result = self._run(function, sha, micros, count, *args)
        kind = type(result)
        if kind is tuple:
            if result[0] is None:  # a long reply, left in its Lua table
                table, n = result[1], result[2]
                result = tuple(table[i] for i in range(1, n + 1))
            reply, _ = _read(result, 0)
            if isinstance(reply, CommandError):
                raise reply
            return reply
        if kind is bytes:
            return result
        if result is False or result is None:
            return None
        return _reply_integer(result)

    # -- redis.call ---------------------------------------------------------------------

    def call(self, name: Any = None, *args: Any) -> Any:
        """``redis.call``/``redis.pcall`` from Lua: the handler's reply in the shape the Lua
        wrapper rebuilds (see the module docstring), or ``(False, message)`` for an error."""
        if type(name) is not bytes:
            if name is None:
                return False, b"ERR Please specify at least one argument for this redis lib call"
            if type(name) not in (int, float):
                return False, _BAD_ARGUMENT
            name = _lua_number(name)
        spec = self.commands.get(name) or self.commands.get(name.upper())
        if spec is None:
            return False, _NOT_ALLOWED if name.upper() in _NOT_IN_SCRIPTS else _UNKNOWN
        handler, arity = spec
        given = len(args) + 1
        if (given != arity) if arity > 0 else (given < -arity):
            return False, _ARITY
        for arg in args:
            if type(arg) is not bytes:
                converted = _command_args(args)
                if converted is None:
                    return False, _BAD_ARGUMENT
                args = converted
                break
        try:
            reply = handler(self.keyspace, args)
        except CommandError as exc:
            return False, exc.message.encode()
        kind = type(reply)
        if kind is int or kind is bytes:
            return reply
        if reply is None:
            return False
        if kind is list:
            if len(reply) < STACK_ITEMS:
                for item in reply:
                    if type(item) is not bytes:
                        break
                else:
                    return (True, *reply)
                if list not in map(type, reply):  # nils (as false) and integers
                    return (True, *[False if x is None else x for x in reply])
            return self._table(reply)
        if kind is Status:
            return None, bytes(reply)
        return reply

    def _table(self, reply: list[Any]) -> Any:
        """An array reply as a Lua table (nested, long, or with nils in it)."""
        items = [False if x is None else self._table(x) if type(x) is list else x for x in reply]
        return self.lua.table_from(items)


def _command_args(args: tuple[Any, ...]) -> tuple[bytes, ...] | None:
    """A command's arguments from Lua as Redis takes them — strings as they are, numbers in
    ``%.17g`` — or ``None`` when one is neither."""
    converted = []
    for arg in args:
        kind = type(arg)
        if kind is bytes:
            converted.append(arg)
        elif kind is int and -_EXACT < arg < _EXACT:
            converted.append(b"%d" % arg)  # what %.17g writes for such an integer
        elif kind is int or kind is float:
            converted.append(b"%.17g" % arg)
        else:
            return None
    return tuple(converted)


def _sha1hex(text: Any) -> bytes:
    data = text if isinstance(text, bytes) else _lua_number(text)
    return hashlib.sha1(data).hexdigest().encode()


def _read(values: tuple[Any, ...], i: int) -> tuple[Any, int]:
    """The reply flattened in Lua at ``values[i:]``, and the index after it."""
    value = values[i]
    if value is True:
        count = values[i + 1]
        if count == -1:
            return values[i + 2], i + 3
        if count == -2:
            return CommandError(values[i + 2].decode(errors="replace")), i + 3
        items, i = [], i + 2
        for _ in range(count):
            item, i = _read(values, i)
            items.append(item)
        return items, i
    if value is False or value is None:
        return None, i + 1
    if type(value) is bytes:
        return value, i + 1
    return _reply_integer(value), i + 1
