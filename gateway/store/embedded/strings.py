"""String commands: ``GET``, ``SET`` (``NX``/``XX``/``EX``/``PX``/``EXAT``/``PXAT``/``KEEPTTL``/
``GET``), ``SETNX``, ``MGET``, ``MSET``, ``INCR``/``DECR``/``INCRBY``/``DECRBY``. A string is
kept as ``bytes``; a counter too (Redis answers ``GET`` of a counter with its digits)."""

from __future__ import annotations

from gateway.store.embedded.keyspace import Handler, Keyspace
from gateway.store.embedded.values import (
    NOT_INTEGER,
    OK,
    SYNTAX,
    CommandError,
    Status,
    parse_int,
)

__all__ = ["COMMANDS"]


def _get(ks: Keyspace, args: tuple[bytes, ...]) -> bytes | None:
    value: bytes | None = ks.typed(args[0], bytes)
    return value


def _set(ks: Keyspace, args: tuple[bytes, ...]) -> Status | bytes | None:
    key, value, *options = args
    condition, deadline, keep_ttl, get, i = None, None, False, False, 0
    while i < len(options):
        option = options[i].upper()
        if option in (b"NX", b"XX") and condition in (None, option):
            condition = option
        elif option == b"KEEPTTL" and deadline is None:
            keep_ttl = True
        elif option == b"GET":
            get = True
        elif option in (b"EX", b"PX", b"EXAT", b"PXAT") and not keep_ttl and deadline is None:
            if i + 1 >= len(options):
                raise CommandError(SYNTAX)
            i += 1
            amount = parse_int(options[i])
            if amount <= 0:
                raise CommandError("ERR invalid expire time in 'set' command")
            scale = 1000 if option in (b"EX", b"EXAT") else 1
            deadline = amount * scale + (ks.now if option in (b"EX", b"PX") else 0)
        else:
            raise CommandError(SYNTAX)
        i += 1
    old = ks.typed(key, bytes) if get else ks.lookup(key)
    if (condition == b"NX" and old is not None) or (condition == b"XX" and old is None):
        return old if get else None
    ttl = ks.expires.get(key) if keep_ttl else None
    ks.delete(key)
    ks.data[key] = value
    if deadline is not None:
        ks.expires[key] = deadline
    elif ttl is not None:
        ks.expires[key] = ttl
    return old if get else OK


def _setnx(ks: Keyspace, args: tuple[bytes, ...]) -> int:
    return int(_set(ks, (args[0], args[1], b"NX")) is not None)


def _mget(ks: Keyspace, args: tuple[bytes, ...]) -> list[bytes | None]:
    values = [ks.lookup(key) for key in args]
    return [value if type(value) is bytes else None for value in values]


def _mset(ks: Keyspace, args: tuple[bytes, ...]) -> Status:
    if len(args) % 2:
        raise CommandError("ERR wrong number of arguments for 'mset' command")
    for i in range(0, len(args), 2):
        ks.delete(args[i])
        ks.data[args[i]] = args[i + 1]
    return OK


def _incr_by(ks: Keyspace, key: bytes, amount: int) -> int:
    old = ks.typed(key, bytes)
    number = (parse_int(old) if old is not None else 0) + amount
    if not -(2**63) <= number < 2**63:
        raise CommandError("ERR increment or decrement would overflow")
    ks.data[key] = b"%d" % number  # the TTL stays, as in Redis
    return number


COMMANDS: dict[bytes, tuple[Handler, int]] = {
    b"GET": (_get, 2),
    b"SET": (_set, -3),
    b"SETNX": (_setnx, 3),
    b"MGET": (_mget, -2),
    b"MSET": (_mset, -3),
    b"INCR": (lambda ks, a: _incr_by(ks, a[0], 1), 2),
    b"DECR": (lambda ks, a: _incr_by(ks, a[0], -1), 2),
    b"INCRBY": (lambda ks, a: _incr_by(ks, a[0], parse_int(a[1], NOT_INTEGER)), 3),
    b"DECRBY": (lambda ks, a: _incr_by(ks, a[0], -parse_int(a[1], NOT_INTEGER)), 3),
}
