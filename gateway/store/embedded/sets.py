"""Set commands: ``SADD``, ``SREM``, ``SMEMBERS``, ``SISMEMBER``, ``SMISMEMBER``, ``SCARD``.
A set is a Python ``set`` (members in no particular order, as in Redis)."""

from __future__ import annotations

from gateway.store.embedded.keyspace import Handler, Keyspace

__all__ = ["COMMANDS"]


def _set(ks: Keyspace, key: bytes) -> set[bytes]:
    value: set[bytes] | None = ks.typed(key, set)
    return set() if value is None else value


def _sadd(ks: Keyspace, args: tuple[bytes, ...]) -> int:
    members = ks.typed(args[0], set)
    if members is None:
        members = ks.data[args[0]] = set()
    before = len(members)
    members.update(args[1:])
    return len(members) - before


def _srem(ks: Keyspace, args: tuple[bytes, ...]) -> int:
    members = _set(ks, args[0])
    before = len(members)
    members.difference_update(args[1:])
    if not members:
        ks.delete(args[0])
    return before - len(members)


COMMANDS: dict[bytes, tuple[Handler, int]] = {
    b"SADD": (_sadd, -3),
    b"SREM": (_srem, -3),
    b"SMEMBERS": (lambda ks, a: list(_set(ks, a[0])), 2),
    b"SISMEMBER": (lambda ks, a: int(a[1] in _set(ks, a[0])), 3),
    b"SMISMEMBER": (lambda ks, a: [int(m in _set(ks, a[0])) for m in a[1:]], -3),
    b"SCARD": (lambda ks, a: len(_set(ks, a[0])), 2),
}
