"""Hash commands: ``HSET``/``HMSET``, ``HSETNX``, ``HGET``, ``HMGET``, ``HGETALL``, ``HDEL``,
``HEXISTS``, ``HLEN``, ``HKEYS``, ``HVALS``, ``HINCRBY``. A hash is a ``dict``, which keeps
fields in insertion order — the order Redis answers ``HGETALL`` in for a small hash."""

from __future__ import annotations

from gateway.store.embedded.keyspace import Handler, Keyspace
from gateway.store.embedded.values import OK, CommandError, Status, parse_int

__all__ = ["COMMANDS"]


def _hash(ks: Keyspace, key: bytes) -> dict[bytes, bytes] | None:
    value: dict[bytes, bytes] | None = ks.typed(key, dict)
    return value


def _hash_for_write(ks: Keyspace, key: bytes) -> dict[bytes, bytes]:
    value = _hash(ks, key)
    if value is None:
        value = ks.data[key] = {}
    return value


def _hset(ks: Keyspace, args: tuple[bytes, ...]) -> int:
    if len(args) % 2 == 0:
        raise CommandError("ERR wrong number of arguments for 'hset' command")
    fields = _hash_for_write(ks, args[0])
    before = len(fields)
    for i in range(1, len(args), 2):
        fields[args[i]] = args[i + 1]
    return len(fields) - before


def _hmset(ks: Keyspace, args: tuple[bytes, ...]) -> Status:
    if len(args) % 2 == 0:
        raise CommandError("ERR wrong number of arguments for 'hmset' command")
    _hset(ks, args)
    return OK


def _hsetnx(ks: Keyspace, args: tuple[bytes, ...]) -> int:
    fields = _hash_for_write(ks, args[0])
    if args[1] in fields:
        return 0
    fields[args[1]] = args[2]
    return 1


def _hget(ks: Keyspace, args: tuple[bytes, ...]) -> bytes | None:
    fields = _hash(ks, args[0])
    return None if fields is None else fields.get(args[1])


def _hmget(ks: Keyspace, args: tuple[bytes, ...]) -> list[bytes | None]:
    fields = _hash(ks, args[0])
    if fields is None:
        return [None] * (len(args) - 1)
    return [fields.get(name) for name in args[1:]]


def _hgetall(ks: Keyspace, args: tuple[bytes, ...]) -> list[bytes]:
    fields = _hash(ks, args[0])
    return [] if fields is None else [item for pair in fields.items() for item in pair]


def _hdel(ks: Keyspace, args: tuple[bytes, ...]) -> int:
    fields = _hash(ks, args[0])
    if fields is None:
        return 0
    removed = sum(fields.pop(name, None) is not None for name in args[1:])
    if not fields:
        ks.delete(args[0])
    return removed


def _read(ks: Keyspace, key: bytes) -> dict[bytes, bytes]:
    return _hash(ks, key) or {}


def _hincrby(ks: Keyspace, args: tuple[bytes, ...]) -> int:
    amount = parse_int(args[2])
    fields = _hash_for_write(ks, args[0])
    old = fields.get(args[1])
    number = (parse_int(old, "ERR hash value is not an integer") if old is not None else 0) + amount
    if not -(2**63) <= number < 2**63:
        raise CommandError("ERR increment or decrement would overflow")
    fields[args[1]] = b"%d" % number
    return number


COMMANDS: dict[bytes, tuple[Handler, int]] = {
    b"HSET": (_hset, -4),
    b"HMSET": (_hmset, -4),
    b"HSETNX": (_hsetnx, 4),
    b"HGET": (_hget, 3),
    b"HMGET": (_hmget, -3),
    b"HGETALL": (_hgetall, 2),
    b"HDEL": (_hdel, -3),
    b"HEXISTS": (lambda ks, a: int(a[1] in _read(ks, a[0])), 3),
    b"HLEN": (lambda ks, a: len(_read(ks, a[0])), 2),
    b"HKEYS": (lambda ks, a: list(_read(ks, a[0])), 2),
    b"HVALS": (lambda ks, a: list(_read(ks, a[0]).values()), 2),
    b"HINCRBY": (_hincrby, 4),
}
