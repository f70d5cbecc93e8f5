"""List commands: ``RPUSH``, ``LPUSH``, ``LPOP``, ``RPOP`` (with a count), ``LLEN``,
``LRANGE``, ``LINDEX``. A list is a ``deque``. A push records the key in
:attr:`Keyspace.pushed`, so the server can hand the new elements to clients blocked in
``BLPOP`` once the command (or the whole script) that pushed them is done — as Redis does."""

from __future__ import annotations

import collections
from typing import Any

from gateway.store.embedded.keyspace import Handler, Keyspace
from gateway.store.embedded.values import CommandError, parse_int

__all__ = ["COMMANDS", "pop"]


def _list(ks: Keyspace, key: bytes) -> collections.deque[bytes] | None:
    value: collections.deque[bytes] | None = ks.typed(key, collections.deque)
    return value


def _push(ks: Keyspace, args: tuple[bytes, ...], left: bool) -> int:
    items = _list(ks, args[0])
    if items is None:
        items = ks.data[args[0]] = collections.deque()
    if left:
        items.extendleft(args[1:])
    else:
        items.extend(args[1:])
    ks.pushed.add(args[0])
    return len(items)


def pop(ks: Keyspace, key: bytes, left: bool = True) -> bytes | None:
    """One element off the list at ``key`` (gone once empty), or ``None``."""
    items = _list(ks, key)
    if items is None:
        return None
    item = items.popleft() if left else items.pop()
    if not items:
        ks.delete(key)
    return item


def _pop(ks: Keyspace, args: tuple[bytes, ...], left: bool) -> Any:
    if len(args) == 1:
        return pop(ks, args[0], left)
    if len(args) > 2:
        raise CommandError("ERR syntax error")
    count = parse_int(args[1], "ERR value is out of range, must be positive")
    if count < 0:
        raise CommandError("ERR value is out of range, must be positive")
    items = _list(ks, args[0])
    if items is None:
        return None
    taken = [pop(ks, args[0], left) for _ in range(min(count, len(items)))]
    return taken


def _lrange(ks: Keyspace, args: tuple[bytes, ...]) -> list[bytes]:
    start, stop = parse_int(args[1]), parse_int(args[2])
    items = list(_list(ks, args[0]) or ())
    length = len(items)
    start = max(0, start + length) if start < 0 else start
    stop = stop + length if stop < 0 else stop
    return items[start : stop + 1]


def _lindex(ks: Keyspace, args: tuple[bytes, ...]) -> bytes | None:
    index = parse_int(args[1])
    items = _list(ks, args[0]) or collections.deque()
    return items[index] if -len(items) <= index < len(items) else None


COMMANDS: dict[bytes, tuple[Handler, int]] = {
    b"RPUSH": (lambda ks, a: _push(ks, a, False), -3),
    b"LPUSH": (lambda ks, a: _push(ks, a, True), -3),
    b"LPOP": (lambda ks, a: _pop(ks, a, True), -2),
    b"RPOP": (lambda ks, a: _pop(ks, a, False), -2),
    b"LLEN": (lambda ks, a: len(_list(ks, a[0]) or ()), 2),
    b"LRANGE": (_lrange, 4),
    b"LINDEX": (_lindex, 3),
}
