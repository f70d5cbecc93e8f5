"""The server: one keyspace, its command table, its scripts, and the clients blocked in
``BLPOP``. :meth:`Server.execute` runs one command to completion, synchronously — nothing
else runs in this process meanwhile, so a script is atomic as on Redis — and then hands
whatever was pushed to the clients waiting for it, oldest first."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence
from typing import Any

from gateway.store.embedded import hashes, keyspace, lists, sets, strings, zsets
from gateway.store.embedded.keyspace import Handler, Keyspace, Reply, now_ms
from gateway.store.embedded.scripting import Scripts
from gateway.store.embedded.values import OK, SYNTAX, CommandError

__all__ = ["COMMANDS", "Server"]

#: Every command a client or a script may send (beside EVAL, EVALSHA, SCRIPT and BLPOP).
COMMANDS: dict[bytes, tuple[Handler, int]] = {
    **keyspace.COMMANDS,
    **strings.COMMANDS,
    **hashes.COMMANDS,
    **zsets.COMMANDS,
    **sets.COMMANDS,
    **lists.COMMANDS,
}
#: How often (ms) a slice of the keys with a TTL is checked for expiry.
SWEEP_EVERY_MS = 100


class Server:
    def __init__(self, runtime: str | None = None) -> None:
        """``runtime``: which of ``scripting.LUA_RUNTIMES`` runs the scripts (the default:
        LuaJIT where lupa has it)."""
        self.keyspace = Keyspace()
        self.scripts = Scripts(self.keyspace, COMMANDS, runtime)
        #: List key → futures of the clients blocked on it, oldest first.
        self.blocked: dict[bytes, collections.deque[asyncio.Future[list[bytes]]]] = {}
        self._next_sweep = 0

    def execute(self, args: Sequence[bytes]) -> Reply:
        """Run one command (``args[0]`` its name); its reply, or :class:`CommandError`."""
        ks = self.keyspace
        ks.now = now = now_ms()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_EVERY_MS
            ks.sweep()
        name = args[0].upper()
        try:
            if name == b"EVALSHA" or name == b"EVAL":
                if len(args) < 3:
                    raise _arity(name)
                run = self.scripts.evalsha if name == b"EVALSHA" else self.scripts.eval
                return run(args[1], args[2], tuple(args[3:]))
            if name == b"SCRIPT":
                return self._script(args[1:])
            spec = COMMANDS.get(name)
            if spec is None:
                given = "".join(f"'{a.decode(errors='replace')}' " for a in args[1:])
                raise CommandError(
                    f"ERR unknown command '{args[0].decode(errors='replace')}', "
                    f"with args beginning with: {given}"
                )
            handler, arity = spec
            if (len(args) != arity) if arity > 0 else (len(args) < -arity):
                raise _arity(name)
            return handler(ks, tuple(args[1:]))
        finally:
            if ks.pushed:
                self._serve_blocked()

    def _script(self, args: Sequence[bytes]) -> Reply:
        sub = args[0].upper() if args else b""
        if sub == b"LOAD" and len(args) == 2:
            return self.scripts.load(args[1]).encode()
        if sub == b"EXISTS" and len(args) > 1:
            return [int(self.scripts.exists(sha)) for sha in args[1:]]
        if sub == b"FLUSH" and len(args) <= 2:
            if len(args) == 2 and args[1].upper() not in (b"ASYNC", b"SYNC"):
                raise CommandError(SYNTAX)
            self.scripts.flush()
            return OK
        if sub in (b"LOAD", b"EXISTS", b"FLUSH"):
            raise CommandError(
                f"ERR wrong number of arguments for 'script|{sub.decode().lower()}' command"
            )
        raise CommandError(
            f"ERR unknown subcommand '{args[0].decode(errors='replace') if args else ''}'. "
            "Try SCRIPT HELP."
        )

    # -- BLPOP --------------------------------------------------------------------------

    def pop_first(self, keys: Sequence[bytes]) -> list[bytes] | None:
        """``[key, element]`` off the first of ``keys`` holding a list, or ``None``."""
        self.keyspace.now = now_ms()
        for key in keys:
            element = lists.pop(self.keyspace, key)
            if element is not None:
                return [key, element]
        return None

    def block(self, keys: Sequence[bytes], waiter: asyncio.Future[list[bytes]]) -> None:
        for key in keys:
            self.blocked.setdefault(key, collections.deque()).append(waiter)

    def unblock(self, keys: Sequence[bytes], waiter: asyncio.Future[list[bytes]]) -> None:
        for key in keys:
            waiters = self.blocked.get(key)
            if waiters is not None:
                if waiter in waiters:
                    waiters.remove(waiter)
                if not waiters:
                    del self.blocked[key]

    def give_back(self, key: bytes, element: bytes) -> None:
        """An element handed to a client that was cancelled before it took it: back at the
        head of its list, for the next client."""
        self.keyspace.now = now_ms()
        lists.COMMANDS[b"LPUSH"][0](self.keyspace, (key, element))
        self._serve_blocked()

    def _serve_blocked(self) -> None:
        ks = self.keyspace
        pushed, ks.pushed = ks.pushed, set()
        for key in pushed:
            waiters = self.blocked.get(key)
            while waiters:
                waiter = waiters[0]
                if waiter.done():  # timed out or cancelled, not yet unblocked
                    waiters.popleft()
                    continue
                if type(ks.lookup(key)) is not collections.deque:
                    break
                element: Any = lists.pop(ks, key)
                waiters.popleft()
                waiter.set_result([key, element])
            if not waiters:
                self.blocked.pop(key, None)


def _arity(name: bytes) -> CommandError:
    return CommandError(
        f"ERR wrong number of arguments for '{name.decode(errors='replace').lower()}' command"
    )
