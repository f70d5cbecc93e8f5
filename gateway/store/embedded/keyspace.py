"""The keyspace: every key's value in one dict, the keys with a TTL and their deadlines in
another, and the commands that act on keys whatever their type (``DEL``, ``EXISTS``,
``TYPE``, ``PEXPIRE`` and its kin, ``PTTL``, ``KEYS``, ``SCAN``, ``FLUSHDB``) plus ``TIME``
and ``PING``.

A key past its deadline is gone when next looked at (as in Redis); :meth:`Keyspace.sweep`
walks the keys with a TTL a slice at a time so that keys nobody looks at again are dropped
too and memory stays bounded. Expiry reads :attr:`Keyspace.now`, which the server sets once
per command or script — as Redis freezes the time for a script's whole run.
"""

from __future__ import annotations

import collections
import re
import time
from collections.abc import Callable
from typing import Any

from gateway.store.embedded.values import OK, SYNTAX, CommandError, Status, parse_int

__all__ = ["COMMANDS", "Handler", "Keyspace", "Reply", "glob_pattern"]

#: A command's reply: ``int``, ``bytes``, :class:`Status`, ``None`` (nil) or a list of them.
Reply = Any
Handler = Callable[["Keyspace", tuple[bytes, ...]], Reply]
#: Keys with a TTL checked per slice of :meth:`Keyspace.sweep`, and slices at most per call.
SWEEP_SLICE = 500
SWEEP_SLICES = 10


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Keyspace:
    def __init__(self) -> None:
        self.data: dict[bytes, Any] = {}
        #: Deadlines (ms since the epoch) of the keys that have one.
        self.expires: dict[bytes, int] = {}
        #: The time expiry is judged by, in ms: set by the server before each command/script.
        self.now = now_ms()
        #: Lists pushed to since the server last served its blocked clients.
        self.pushed: set[bytes] = set()
        self._sweep: list[bytes] = []

    def lookup(self, key: bytes) -> Any:
        """The key's value, or ``None`` for a key absent or past its deadline."""
        value = self.data.get(key)
        if value is not None and key in self.expires and self.expires[key] <= self.now:
            self.delete(key)
            return None
        return value

    def typed(self, key: bytes, kind: type) -> Any:
        value = self.lookup(key)
        if value is not None and type(value) is not kind:
            raise CommandError("WRONGTYPE Operation against a key holding the wrong kind of value")
        return value

    def delete(self, key: bytes) -> bool:
        self.expires.pop(key, None)
        return self.data.pop(key, None) is not None

    def sweep(self) -> int:
        """Drop the keys past their deadline among the next :data:`SWEEP_SLICE` with a TTL,
        and slice after slice (up to :data:`SWEEP_SLICES`) while over a quarter of a slice
        had expired — Redis's active expiry, in short; the number dropped."""
        dropped = 0
        for _ in range(SWEEP_SLICES):
            if not self._sweep:
                self._sweep = list(self.expires)
            batch, self._sweep = self._sweep[-SWEEP_SLICE:], self._sweep[:-SWEEP_SLICE]
            expired = [key for key in batch if self.expires.get(key, self.now + 1) <= self.now]
            for key in expired:
                self.delete(key)
            dropped += len(expired)
            if len(expired) * 4 <= len(batch) or not self._sweep:
                break
        return dropped

    def flush(self) -> None:
        self.data.clear()
        self.expires.clear()
        self._sweep = []


TYPE_NAMES: dict[type, bytes] = {
    bytes: b"string",
    dict: b"hash",
    set: b"set",
    collections.deque: b"list",
}


def type_name(value: Any) -> bytes:
    return TYPE_NAMES.get(type(value), b"zset")


def _del(ks: Keyspace, args: tuple[bytes, ...]) -> int:
    return sum(ks.lookup(key) is not None and ks.delete(key) for key in args)


def _exists(ks: Keyspace, args: tuple[bytes, ...]) -> int:
    return sum(ks.lookup(key) is not None for key in args)


def _type(ks: Keyspace, args: tuple[bytes, ...]) -> Status:
    value = ks.lookup(args[0])
    return Status(b"none" if value is None else type_name(value))


def _pexpire(ks: Keyspace, args: tuple[bytes, ...]) -> int:
    if len(args) > 2:
        return _expire_generic(ks, args, 1, False)
    key = args[0]  # the scripts' case: no flags
    deadline = parse_int(args[1]) + ks.now
    if ks.lookup(key) is None:
        return 0
    return _set_deadline(ks, key, deadline)


def _set_deadline(ks: Keyspace, key: bytes, deadline: int) -> int:
    """``key`` (which exists) expires at ``deadline``: at once if that has passed."""
    if deadline <= ks.now:
        ks.delete(key)
    else:
        ks.expires[key] = deadline
    return 1


def _expire_generic(ks: Keyspace, args: tuple[bytes, ...], scale: int, absolute: bool) -> int:
    key, amount, *flags = args
    deadline = parse_int(amount) * scale + (0 if absolute else ks.now)
    options = {flag.upper() for flag in flags}
    if not options <= {b"NX", b"XX", b"GT", b"LT"}:
        raise CommandError(f"ERR Unsupported option {flags[0].decode(errors='replace')}")
    if (b"NX" in options and len(options) > 1) or {b"GT", b"LT"} <= options:
        raise CommandError(
            "ERR NX and XX, GT or LT options at the same time are not compatible"
            if b"NX" in options
            else "ERR GT and LT options at the same time are not compatible"
        )
    if ks.lookup(key) is None:
        return 0
    current = ks.expires.get(key)
    if (
        (b"NX" in options and current is not None)
        or (b"XX" in options and current is None)
        or (b"GT" in options and (current is None or deadline <= current))
        or (b"LT" in options and current is not None and deadline >= current)
    ):
        return 0
    return _set_deadline(ks, key, deadline)


def _ttl_generic(ks: Keyspace, key: bytes, scale: int) -> int:
    if ks.lookup(key) is None:
        return -2
    deadline = ks.expires.get(key)
    if deadline is None:
        return -1
    left = max(0, deadline - ks.now)
    return (left + 500) // 1000 if scale == 1000 else left


def _persist(ks: Keyspace, args: tuple[bytes, ...]) -> int:
    return int(ks.lookup(args[0]) is not None and ks.expires.pop(args[0], None) is not None)


def glob_pattern(pattern: bytes) -> re.Pattern[bytes]:
    """Redis's glob (``*``, ``?``, ``[a-z]``, ``[^a]``, ``\\x``) as a regular expression."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i : i + 1]
        if c == b"*":
            out.append(b".*")
        elif c == b"?":
            out.append(b".")
        elif c == b"\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i : i + 1]))
        elif c == b"[" and (end := pattern.find(b"]", i + 2)) != -1:
            body = pattern[i + 1 : end]
            negate = body.startswith(b"^")
            body = body[1:] if negate else body
            out.append(b"[" + (b"^" if negate else b"") + body.replace(b"\\", b"\\\\") + b"]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile(b"".join(out), re.DOTALL)


def _live_keys(ks: Keyspace, pattern: bytes | None) -> list[bytes]:
    matcher = None if pattern in (None, b"*") else glob_pattern(pattern or b"")
    return [
        key
        for key in list(ks.data)
        if ks.lookup(key) is not None and (matcher is None or matcher.fullmatch(key))
    ]


def _keys(ks: Keyspace, args: tuple[bytes, ...]) -> list[bytes]:
    return _live_keys(ks, args[0])


def _scan(ks: Keyspace, args: tuple[bytes, ...]) -> list[Any]:
    """One pass answers every key (cursor 0 back): ``COUNT`` is only a hint in Redis too."""
    parse_int(args[0], "ERR invalid cursor")
    pattern, kind, rest = None, None, list(args[1:])
    while rest:
        option = rest.pop(0).upper()
        if not rest or option not in (b"MATCH", b"COUNT", b"TYPE"):
            raise CommandError(SYNTAX)
        value = rest.pop(0)
        if option == b"MATCH":
            pattern = value
        elif option == b"TYPE":
            kind = value.lower()
        elif parse_int(value) < 1:
            raise CommandError(SYNTAX)
    found = _live_keys(ks, pattern)
    if kind is not None:
        found = [key for key in found if type_name(ks.data[key]) == kind]
    return [b"0", found]


def _flush(ks: Keyspace, args: tuple[bytes, ...]) -> Status:
    if args and args[0].upper() not in (b"ASYNC", b"SYNC"):
        raise CommandError(SYNTAX)
    ks.flush()
    return OK


def _time(ks: Keyspace, args: tuple[bytes, ...]) -> list[bytes]:
    micros = time.time_ns() // 1000
    return [b"%d" % (micros // 1_000_000), b"%d" % (micros % 1_000_000)]


def _ping(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return args[0] if args else Status(b"PONG")


#: name → (handler, arity as Redis counts it: the name included, negative for "at least").
COMMANDS: dict[bytes, tuple[Handler, int]] = {
    b"DEL": (_del, -2),
    b"UNLINK": (_del, -2),
    b"EXISTS": (_exists, -2),
    b"TYPE": (_type, 2),
    b"PEXPIRE": (_pexpire, -3),
    b"EXPIRE": (lambda ks, a: _expire_generic(ks, a, 1000, False), -3),
    b"PEXPIREAT": (lambda ks, a: _expire_generic(ks, a, 1, True), -3),
    b"EXPIREAT": (lambda ks, a: _expire_generic(ks, a, 1000, True), -3),
    b"PTTL": (lambda ks, a: _ttl_generic(ks, a[0], 1), 2),
    b"TTL": (lambda ks, a: _ttl_generic(ks, a[0], 1000), 2),
    b"PERSIST": (_persist, 2),
    b"KEYS": (_keys, 2),
    b"SCAN": (_scan, -2),
    b"DBSIZE": (lambda ks, a: len(_live_keys(ks, None)), 1),
    b"FLUSHDB": (_flush, -1),
    b"FLUSHALL": (_flush, -1),
    b"TIME": (_time, 1),
    b"PING": (_ping, -1),
    b"ECHO": (lambda ks, a: a[0], 2),
}
