"""Replies in RESP3's shapes, for clients that speak it (redis-py 8's default): the commands
keep Redis's RESP2 replies, which is also what a script's ``redis.call`` sees (Redis runs
scripts in RESP2 whatever the client speaks), and a client's reply is reshaped here as
redis-server and hiredis would give it over RESP3 — a map as a ``dict``, a double as a
``float``, scores paired with their members."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["reshape"]


def _double(value: Any) -> Any:
    return None if value is None else float(value)


def _pairs(flat: list[bytes]) -> list[list[Any]]:
    return [[flat[i], float(flat[i + 1])] for i in range(0, len(flat), 2)]


def _scored(args: Sequence[bytes], reply: Any) -> Any:
    return _pairs(reply) if any(a.upper() == b"WITHSCORES" for a in args[3:]) else reply


def _popped(args: Sequence[bytes], reply: Any) -> Any:
    if len(args) > 2:  # with a count: one pair per member
        return _pairs(reply)
    return [reply[0], float(reply[1])] if reply else reply


_SHAPES: dict[bytes, Callable[[Sequence[bytes], Any], Any]] = {
    b"HGETALL": lambda args, r: dict(zip(r[::2], r[1::2], strict=True)),
    b"ZSCORE": lambda args, r: _double(r),
    b"ZINCRBY": lambda args, r: _double(r),
    b"ZADD": lambda args, r: float(r) if type(r) is bytes else r,
    b"ZMSCORE": lambda args, r: [_double(x) for x in r],
    b"ZRANGE": _scored,
    b"ZRANGEBYSCORE": _scored,
    b"ZREVRANGEBYSCORE": _scored,
    b"ZREVRANGE": _scored,
    b"ZPOPMIN": _popped,
    b"ZPOPMAX": _popped,
}


def reshape(args: Sequence[bytes], reply: Any) -> Any:
    """``reply`` to the command ``args`` as a RESP3 client reads it."""
    shape = _SHAPES.get(args[0].upper())
    return reply if shape is None else shape(args, reply)
